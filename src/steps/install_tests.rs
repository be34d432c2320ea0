//! The node steps' installs on fakes and this machine's `sh`: a binary a dry run would download,
//! the offline images listed once, the sysctl guard against /proc, Debian packages as files.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::tests::{cluster, fake};
use crate::engine::Cx;
use crate::host::Host;
/// A worker cannot go without runc: a run whose artifacts lack it fails the step, but a dry run
/// for which a real run would download it plans the rest (the plan says what it would download).
#[test]
fn a_binary_a_dry_run_would_download_does_not_fail_its_plan() {
    use crate::artifacts::Provided;
    use crate::engine::Step;
    let d = tempfile::tempdir().unwrap();
    let c = cluster(d.path(), 1);
    let node = c.workers().next().unwrap().clone();
    let with = |p: Provided| {
        Cx::new(
            c.clone(),
            BTreeMap::new(),
            super::Inputs {
                artifacts: Some(BTreeMap::from([("runc".to_string(), p)])),
                ..Default::default()
            },
        )
    };
    let would = with(Provided::WouldDownload {
        what: "runc.amd64 from https://example.invalid/runc.amd64".into(),
        file: "runc.amd64".into(),
    });
    assert!(
        super::install_runc::InstallRunc
            .desired(&would, &node)
            .is_ok()
    );
    let missing = with(Provided::Missing {
        reason: "not in the directory".into(),
        file: "runc.amd64".into(),
    });
    let e = super::install_runc::InstallRunc
        .desired(&missing, &node)
        .unwrap_err();
    assert!(
        format!("{e:#}").contains("runc is needed on every worker"),
        "{e:#}"
    );
}

/// The offline images are one guard: `ctr` lists the images once for all of them, and the run
/// imports only the archives whose images are missing (here with a stand-in `ctr` and real `sh`).
#[test]
fn images_are_listed_once_and_only_missing_ones_imported() {
    use crate::engine::Step;
    use crate::host::local::LocalHost;
    let d = tempfile::tempdir().unwrap();
    let c = cluster(d.path(), 1);
    let node = c.workers().next().unwrap().clone();
    let image = |file: &str, name: &str| super::ImageInput {
        file_name: file.into(),
        names: vec![name.into()],
        blob: crate::blob::Blob::new(file.as_bytes().to_vec()),
    };
    let pause = "kubicluster.local/pause:v1";
    let dns = "kubicluster.local/coredns:v1";
    let cx = Cx::new(
        c.clone(),
        BTreeMap::from([(
            node.name.clone(),
            Arc::new(fake(&c, &node.name)) as Arc<dyn Host>,
        )]),
        super::Inputs {
            images: vec![image("coredns.tar", dns), image("pause.tar", pause)],
            ..Default::default()
        },
    );
    let want = super::install_containerd::InstallContainerd
        .desired(&cx, &node)
        .unwrap();
    let imports: Vec<_> = want
        .commands
        .iter()
        .filter(|g| g.what.starts_with("import "))
        .collect();
    assert_eq!(imports.len(), 1, "one guard for every image");
    let g = imports[0];
    assert!(g.what.contains("pause.tar") && g.what.contains("coredns.tar"));
    let payloads: Vec<&str> = want
        .files
        .iter()
        .filter(|f| f.payload_of.as_deref() == Some(g.what.as_str()))
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(payloads.len(), 2, "both archives go only with the import");

    // A stand-in ctr: `images ls -q` prints `have`, `images import PATH` records PATH.
    let ctr = d.path().join("ctr");
    let have = d.path().join("have");
    let log = d.path().join("imported");
    std::fs::write(
        &ctr,
        format!(
            "#!/bin/sh\ncase \"$3 $4\" in\n\"images ls\") cat {} ;;\n\"images import\") echo \"$5\" >> {} ;;\nesac\n",
            have.display(),
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&ctr, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let with_fake_ctr = |cmd: &crate::host::Cmd| {
        let mut cmd = cmd.clone();
        for a in &mut cmd.argv {
            if a.value.ends_with("/ctr") {
                a.value = ctr.display().to_string();
            }
        }
        cmd
    };
    let local = LocalHost::new("hypervisor");
    let check = || local.run(&with_fake_ctr(&g.check)).unwrap().ok();
    std::fs::write(&have, format!("{pause}\n")).unwrap();
    assert!(!check(), "coredns is missing");
    assert!(local.run(&with_fake_ctr(&g.run)).unwrap().ok());
    let imported = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        imported.trim(),
        "/var/cache/kubicluster/images/coredns.tar",
        "only the missing archive imported"
    );
    std::fs::write(&have, format!("{pause}\n{dns}\n")).unwrap();
    assert!(check(), "every image there");
    std::fs::write(&have, "kubicluster.local/pause:v1-other\n").unwrap();
    assert!(!check(), "a name is matched whole, not as a prefix");
}

/// The sysctl guard reads every key the file sets back from /proc in one process (real `sh` and
/// this machine's /proc): a file matching the running values passes, one value off fails.
#[test]
fn the_sysctl_guard_compares_every_value_with_proc() {
    use crate::engine::Step;
    use crate::host::local::LocalHost;
    let d = tempfile::tempdir().unwrap();
    let c = cluster(d.path(), 1);
    let node = c.workers().next().unwrap().clone();
    let cx = Cx::new(c.clone(), BTreeMap::new(), super::Inputs::default());
    let want = super::prepare_worker_nodes::PrepareWorkerNodes
        .desired(&cx, &node)
        .unwrap();
    let g = want
        .commands
        .iter()
        .find(|g| g.what.starts_with("apply /etc/sysctl.d/"))
        .expect("the sysctl guard");
    let read = |k: &str| {
        std::fs::read_to_string(format!("/proc/sys/{}", k.replace('.', "/")))
            .unwrap()
            .trim_end()
            .to_string()
    };
    let conf = d.path().join("sysctl.conf");
    let check = |text: String| {
        std::fs::write(&conf, text).unwrap();
        let mut cmd = g.check.clone();
        let last = cmd.argv.last_mut().unwrap();
        last.value = conf.display().to_string();
        LocalHost::new("hypervisor").run(&cmd).unwrap().ok()
    };
    let (ostype, pid_max) = (read("kernel.ostype"), read("kernel.pid_max"));
    assert!(check(format!(
        "# comment\nkernel.ostype = {ostype}\nkernel.pid_max={pid_max}\n"
    )));
    assert!(!check(format!(
        "kernel.ostype = {ostype}\nkernel.pid_max = 1{pid_max}\n"
    )));
    assert!(!check("kernel.no_such_key = 1\n".into()));
    std::fs::remove_file(&conf).unwrap();
    let mut cmd = g.check.clone();
    cmd.argv.last_mut().unwrap().value = conf.display().to_string();
    assert!(
        !LocalHost::new("hypervisor").run(&cmd).unwrap().ok(),
        "no file"
    );
}

#[test]
fn debian_packages_reach_the_nodes_as_files_without_dpkg() {
    use crate::artifacts::{DebPackage, NodeFile, Provided};
    use crate::engine::{Blob, Desired};
    let file = |path: &str, data: &[u8]| NodeFile {
        path: path.into(),
        mode: 0o755,
        blob: Blob::new(data.to_vec()),
    };
    let provided = Provided::Debs {
        debs: vec![DebPackage {
            package: "containerd".into(),
            version: "2.1.9~ds1-5".into(),
            file_name: "containerd_2.1.9~ds1-5_amd64.deb".into(),
            sha256: "00".into(),
            files: vec![
                file("/usr/bin/containerd", b"c"),
                file("/usr/lib/cni/cni-bridge-fp", b"f"),
                file("/usr/lib/containerd/a/runc-fp", b"r"),
            ],
        }],
        bin_dir: "/usr/bin".into(),
    };
    let mut want = Desired::default();
    super::install_artifact(&mut want, Some(&provided), &["containerd.service"]);
    assert!(want.commands.is_empty(), "no dpkg: {:?}", want.commands);
    let dirs: Vec<&str> = want.dirs.iter().map(|d| d.path.as_str()).collect();
    // Parents created outermost first, the system's own directories left alone.
    assert_eq!(
        dirs,
        [
            "/usr/lib/cni",
            "/usr/lib/containerd",
            "/usr/lib/containerd/a"
        ]
    );
    let files: Vec<(&str, u32, &[u8], Vec<String>)> = want
        .files
        .iter()
        .map(|f| {
            (
                f.path.as_str(),
                f.mode,
                f.content.data().unwrap(),
                f.restarts.clone(),
            )
        })
        .collect();
    let restart = vec!["containerd.service".to_string()];
    assert_eq!(
        files,
        [
            ("/usr/bin/containerd", 0o755, &b"c"[..], restart.clone()),
            (
                "/usr/lib/cni/cni-bridge-fp",
                0o755,
                &b"f"[..],
                restart.clone()
            ),
            ("/usr/lib/containerd/a/runc-fp", 0o755, &b"r"[..], restart),
        ]
    );
    assert_eq!(provided.version().as_deref(), Some("2.1.9"));
}

/// With several controllers each runs keepalived for the API's virtual IP: VRRP by unicast to the
/// other controllers, the first controller's priority highest, the address on the cluster
/// network's interface, the health check on the API server's port. One controller: no step.
#[test]
fn keepalived_holds_the_virtual_ip_among_the_controllers() {
    use crate::engine::Step;
    use crate::steps::install_api_vip::{InstallApiVip, UNIT, router_id};
    let d = tempfile::tempdir().unwrap();
    let ov = crate::spec::Overrides {
        work_dir: Some(d.path().display().to_string()),
        controllers: (1..=3)
            .map(|i| format!("kubi-controller-{i:02},192.168.24.1{i},192.168.122.1{i}"))
            .collect(),
        workers: vec!["kubi-worker-01,192.168.24.21,192.168.122.21".into()],
        ..Default::default()
    };
    let c = crate::spec::resolve(None, &ov, &|_| None).unwrap().0;
    crate::pki::generate(&c, &crate::pki::Options::default()).unwrap();
    assert_eq!(InstallApiVip.targets(&c).len(), 3);
    let inputs = super::Inputs {
        pki: super::Inputs::load_pki(&c).unwrap(),
        ..Default::default()
    };
    let cx = Cx::new(c.clone(), BTreeMap::new(), inputs);
    let node = c.controllers().nth(1).unwrap();
    let want = InstallApiVip.desired(&cx, node).unwrap();
    let text = |path: &str| {
        let f = want.files.iter().find(|f| f.path == path).unwrap();
        (
            String::from_utf8(f.content.data().unwrap().to_vec()).unwrap(),
            f.mode,
        )
    };
    let (conf, mode) = text("/etc/keepalived/kubicluster-vip.conf");
    assert_eq!(mode, 0o600);
    for line in [
        "router_id kubi-controller-02",
        "state BACKUP",
        "nopreempt",
        "interface eth1",
        &format!("virtual_router_id {}", router_id(&c.name)),
        "priority 190",
        "unicast_src_ip 192.168.24.12",
        "192.168.24.11\n",
        "192.168.24.13\n",
        "192.168.24.10/24 dev eth1",
        "script \"/etc/keepalived/kubicluster-check-apiserver\"",
    ] {
        assert!(conf.contains(line), "{line:?} missing:\n{conf}");
    }
    assert!(
        !conf.contains("        192.168.24.12\n"),
        "not its own peer:\n{conf}"
    );
    let (check, mode) = text("/etc/keepalived/kubicluster-check-apiserver");
    assert_eq!(mode, 0o700);
    assert!(
        check.contains("/dev/tcp/127.0.0.1/6443") && check.contains("read -r -t 1.5"),
        "{check}"
    );
    let unit = want.units.iter().find(|u| u.name == UNIT).unwrap();
    let unit_text = String::from_utf8(unit.file.data().unwrap().to_vec()).unwrap();
    assert!(
        unit_text.contains("--use-file=/etc/keepalived/kubicluster-vip.conf")
            && unit.start
            && unit.reload,
        "{unit_text}"
    );
    // It goes with the local API server: stopped (first) and restarted with it, started with it.
    assert!(
        unit_text.contains("\nPartOf=kube-apiserver.service\n")
            && unit_text.contains("\nWantedBy=multi-user.target kube-apiserver.service\n"),
        "{unit_text}"
    );
    // The engine keeps both links (a unit enabled before its [Install] named the API server
    // is re-enabled).
    assert_eq!(
        unit.links(),
        [
            "/etc/systemd/system/multi-user.target.wants/kubicluster-vip.service",
            "/etc/systemd/system/kube-apiserver.service.wants/kubicluster-vip.service"
        ]
    );
    // The API server signs service-account tokens as the virtual IP and still accepts those
    // issued as the first controller, before there was one.
    let cp = crate::steps::install_control_plane::InstallControlPlane
        .desired(&cx, node)
        .unwrap();
    let api = cp
        .units
        .iter()
        .find(|u| u.name == "kube-apiserver.service")
        .unwrap();
    let api = String::from_utf8(api.file.data().unwrap().to_vec()).unwrap();
    assert!(
        api.contains("--service-account-issuer=https://192.168.24.10:6443 \\\n  --service-account-issuer=https://192.168.24.11:6443 \\\n"),
        "{api}"
    );
    // One controller with a virtual IP: no peers, VRRP's multicast adverts.
    let mut alone = super::tests::cluster(d.path(), 1);
    alone.kubernetes.api_server_vip = Some("192.168.24.10".parse().unwrap());
    let cx = Cx::new(alone.clone(), BTreeMap::new(), Default::default());
    let want = InstallApiVip
        .desired(&cx, alone.controllers().next().unwrap())
        .unwrap();
    let f = want
        .files
        .iter()
        .find(|f| f.path.ends_with(".conf"))
        .unwrap();
    let conf = String::from_utf8(f.content.data().unwrap().to_vec()).unwrap();
    assert!(
        !conf.contains("unicast_peer")
            && conf.contains(
                "advert_int 1\n    virtual_ipaddress {\n        192.168.24.10/24 dev eth1\n"
            ),
        "{conf}"
    );
    // One controller (or `none`): keepalived removed where an earlier spec installed it.
    let one = super::tests::cluster(d.path(), 1);
    let cx = Cx::new(one.clone(), BTreeMap::new(), Default::default());
    let want = InstallApiVip
        .desired(&cx, one.controllers().next().unwrap())
        .unwrap();
    assert!(want.files.is_empty() && want.units.is_empty());
    assert_eq!(want.commands.len(), 1);
    assert!(
        want.commands[0]
            .check
            .to_string()
            .contains("-e /etc/systemd/system/kubicluster-vip.service"),
        "{:?}",
        want.commands[0].check
    );
}

/// A load-balancer node runs haproxy in front of every controller: its configuration lists
/// each controller's API server with a `/readyz` check, the unit runs haproxy unprivileged and
/// is reloaded (not restarted) when the configuration changes. No other step touches the node.
#[test]
fn the_load_balancer_passes_the_api_on_to_every_controller() {
    use crate::engine::Step;
    use crate::steps::install_api_lb::{CONFIG, InstallApiLb, UNIT};
    let d = tempfile::tempdir().unwrap();
    let mut f = crate::spec::example_cluster_file(3, 1);
    f.spec.work_dir = d.path().display().to_string();
    f.spec.networks.cni = crate::spec::Cni::Bridge;
    f.spec.nodes.push(crate::spec::NodeEntry {
        hypervisor: String::new(),
        name: "kubi-lb".into(),
        role: crate::spec::Role::LoadBalancer,
        cluster_ip: "192.168.24.5".into(),
        hypervisor_ip: "192.168.122.5".into(),
        vcpus: None,
        memory_mib: None,
    });
    let c = crate::spec::validate(&f).unwrap();
    let lb = c.node("kubi-lb").unwrap();
    assert_eq!(
        InstallApiLb
            .targets(&c)
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>(),
        ["kubi-lb"]
    );
    for step in crate::steps::node_steps() {
        if step.id() != crate::engine::StepId::InstallApiLoadBalancer {
            assert!(
                !step.targets(&c).iter().any(|n| n.name == "kubi-lb"),
                "{} targets the load balancer",
                step.id()
            );
        }
    }
    let cx = Cx::new(c.clone(), BTreeMap::new(), super::Inputs::default());
    let want = InstallApiLb.desired(&cx, lb).unwrap();
    let f = want.files.iter().find(|f| f.path == CONFIG).unwrap();
    assert_eq!(f.mode, 0o644);
    let conf = String::from_utf8(f.content.data().unwrap().to_vec()).unwrap();
    for line in [
        "mode tcp",
        "bind *:6443",
        "balance leastconn",
        "http-check send meth GET uri /readyz",
        "http-check expect status 200",
        "check check-ssl verify none",
        "option redispatch 1",
        "server kubi-controller-01 192.168.24.11:6443\n",
        "server kubi-controller-02 192.168.24.12:6443\n",
        "server kubi-controller-03 192.168.24.13:6443\n",
        "stats socket /run/kubicluster-api-lb/stats.sock mode 600 level user",
    ] {
        assert!(conf.contains(line), "{line:?} missing:\n{conf}");
    }
    let unit = want.units.iter().find(|u| u.name == UNIT).unwrap();
    assert!(unit.reload && unit.enable && unit.start);
    let text = String::from_utf8(unit.file.data().unwrap().to_vec()).unwrap();
    for line in [
        "Type=notify",
        "User=haproxy",
        "ExecStart=/usr/sbin/haproxy -Ws -f /etc/haproxy/kubicluster-api-lb.cfg",
        "ExecReload=/bin/kill -USR2 $MAINPID",
        "CapabilityBoundingSet=\n",
    ] {
        assert!(text.contains(line), "{line:?} missing:\n{text}");
    }
}
