//! The worker steps on FakeHosts: a second run changes nothing; adding a worker provisions it
//! and, on the other nodes, changes (and restarts) only the pod-routes unit; pod subnets of
//! existing workers never move; kata's absence is reported per worker.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::engine::{self, Change, Cx, Options, Report};
use crate::host::fake::FakeHost;
use crate::host::{Host, Output};
use crate::spec::{self, Cluster, Cni, Overrides};

fn cluster(dir: &std::path::Path, workers: u8) -> Cluster {
    let ov = Overrides {
        work_dir: Some(dir.display().to_string()),
        controllers: vec!["kubi-controller-01,192.168.24.11,192.168.122.11".into()],
        workers: (1..=workers)
            .map(|i| {
                format!(
                    "kubi-worker-{i:02},192.168.24.{},192.168.122.{}",
                    20 + i,
                    20 + i
                )
            })
            .collect(),
        cni: Some(Cni::Bridge),
        ..Overrides::default()
    };
    let c = spec::resolve(None, &ov, &|_| None).unwrap().0;
    crate::pki::generate(&c, &crate::pki::Options::default()).unwrap();
    c
}

fn out(status: i32, s: &str) -> Output {
    Output {
        status,
        stdout: s.as_bytes().to_vec(),
        stderr: Vec::new(),
    }
}

/// A fake node that answers like a worker without KVM, with the routes `c` wants.
fn fake(c: &Cluster, name: &str) -> FakeHost {
    let routes: String = c
        .workers()
        .filter(|w| w.name != name)
        .map(|w| {
            format!(
                "{} via {} dev ens4 proto static\n",
                c.pod_subnet(w).unwrap(),
                w.cluster_ip
            )
        })
        .collect();
    FakeHost::new(name).with(|s| {
        for d in [
            "/etc",
            "/etc/systemd",
            "/etc/systemd/system",
            "/var",
            "/var/lib",
            "/opt",
        ] {
            s.dirs.insert(d.into(), 0o755);
        }
        s.answers = vec![
            (
                "sh -c '[ -c /dev/kvm ]".into(),
                out(1, "no /dev/kvm in this VM\n"),
            ),
            ("sh -c '\"$1\" plugins ls".into(), out(0, "ok\n")),
            ("ip -4 route show proto static".into(), out(0, &routes)),
            (
                "/usr/local/bin/runc --version".into(),
                out(0, "runc version 1.3.3\n"),
            ),
        ];
    })
}

fn run(c: &Cluster, hosts: &BTreeMap<String, Arc<FakeHost>>) -> Report {
    let cx = Arc::new(Cx::new(
        c.clone(),
        hosts
            .iter()
            .map(|(k, v)| (k.clone(), v.clone() as Arc<dyn Host>))
            .collect(),
        super::Inputs {
            pki: super::Inputs::load_pki(c).unwrap(),
            ..Default::default()
        },
    ));
    let r = engine::run(cx, super::workers(None), &Options::default(), |_| {});
    assert!(r.failed().is_empty(), "{:?}", engine::failure_summary(&r));
    r
}

fn changes_on<'r>(r: &'r Report, node: &str) -> Vec<&'r Change> {
    r.nodes
        .iter()
        .filter(|n| n.node == node)
        .flat_map(|n| n.changes.iter())
        .collect()
}

#[test]
fn workers_converge_once_and_adding_one_touches_only_routes_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let c2 = cluster(tmp.path(), 2);
    let mut hosts: BTreeMap<String, Arc<FakeHost>> = c2
        .nodes
        .iter()
        .map(|n| (n.name.clone(), Arc::new(fake(&c2, &n.name))))
        .collect();
    let first = run(&c2, &hosts);
    assert!(first.changes() > 20, "{}", first.changes());
    let kata: Vec<_> = first
        .nodes
        .iter()
        .flat_map(|n| {
            n.not_started
                .iter()
                .map(move |(w, why)| (n.node.as_str(), w, why))
        })
        .filter(|(_, w, _)| *w == "kata")
        .collect();
    assert_eq!(
        kata.len(),
        2,
        "kata's fallback said once per worker: {kata:?}"
    );
    assert!(kata[0].2.contains("no /dev/kvm") && kata[0].2.contains("runc is the default"));
    let w1 = hosts["kubi-worker-01"]
        .file("/etc/containerd/config.toml")
        .unwrap();
    assert!(String::from_utf8_lossy(&w1.data).contains("default_runtime_name = \"runc\""));
    assert_eq!(
        hosts["kubi-worker-01"]
            .file("/var/lib/kubelet/kubelet-key.pem")
            .unwrap()
            .mode,
        0o600
    );
    let conflist = |h: &FakeHost| h.file("/etc/cni/net.d/10-bridge.conflist").unwrap().data;
    let before = conflist(&hosts["kubi-worker-02"]);
    assert!(String::from_utf8_lossy(&before).contains("10.200.22.0/24"));

    let second = run(&c2, &hosts);
    assert_eq!(second.changes(), 0, "a second run changes nothing");

    // A third worker: provisioned; elsewhere only the routes unit changes and restarts.
    let c3 = cluster(tmp.path(), 3);
    for n in &c3.nodes {
        let h = fake(&c3, &n.name);
        match hosts.get(&n.name) {
            Some(old) => old.state.lock().unwrap().answers = h.state.into_inner().unwrap().answers,
            None => {
                hosts.insert(n.name.clone(), Arc::new(h));
            }
        }
    }
    let third = run(&c3, &hosts);
    assert!(changes_on(&third, "kubi-worker-03").len() > 20);
    for n in ["kubi-controller-01", "kubi-worker-01", "kubi-worker-02"] {
        let ch: Vec<String> = changes_on(&third, n)
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert!(
            !ch.is_empty() && ch.iter()
                    .all(|c| c.contains("kubicluster-pod-routes") || c == "systemctl daemon-reload"),
            "{n}: {ch:?}"
        );
        let restarts: Vec<&String> = third
            .nodes
            .iter()
            .filter(|r| r.node == n)
            .flat_map(|r| r.restarts.iter())
            .collect();
        assert_eq!(restarts, ["kubicluster-pod-routes.service"], "{n}");
    }
    assert_eq!(
        conflist(&hosts["kubi-worker-02"]),
        before,
        "kubi-worker-02 keeps its subnet"
    );
}

#[test]
fn pod_subnets_follow_the_node_address_not_the_list_order() {
    let net: ipnet::Ipv4Net = "192.168.24.0/24".parse().unwrap();
    let pods: ipnet::Ipv4Net = "10.200.0.0/16".parse().unwrap();
    let at = |ip: &str| spec::pod_subnet(net, pods, ip.parse().unwrap()).map(|s| s.to_string());
    assert_eq!(at("192.168.24.21").as_deref(), Some("10.200.21.0/24"));
    assert_eq!(at("192.168.24.254").as_deref(), Some("10.200.254.0/24"));
    let small: ipnet::Ipv4Net = "10.200.0.0/20".parse().unwrap();
    assert_eq!(
        spec::pod_subnet(net, small, "192.168.24.15".parse().unwrap())
            .map(|s| s.to_string())
            .as_deref(),
        Some("10.200.15.0/24")
    );
    assert_eq!(
        spec::pod_subnet(net, small, "192.168.24.16".parse().unwrap()),
        None
    );
}

/// Each step names the artifacts it installs; the pipeline needs each once, in order, and
/// calico's manifest only with the calico pod network.
#[test]
fn the_pipeline_needs_each_artifact_once_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = cluster(tmp.path(), 1);
    let all = super::artifacts_for(&super::node_steps(), &c);
    assert_eq!(
        all,
        [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "runc",
            "containerd",
            "cni-plugins",
            "kubelet",
            "kube-proxy",
        ]
    );
    c.cni = Cni::Calico;
    assert_eq!(
        super::artifacts_for(&super::node_steps(), &c).last(),
        Some(&"calico")
    );
    assert_eq!(
        super::artifacts_for(
            &super::workers(Some(crate::engine::StepId::InstallRunc)),
            &c
        ),
        ["runc"]
    );
}

/// One pipeline: every step once, the hypervisor's (local files first where they need no
/// libvirt) before the nodes'; `create-vms`, `create-controllers` and `create-workers` are
/// selections of it in its order, and a runner walks it as two runs of one kind each.
#[test]
fn one_pipeline_every_command_selects_from_it() {
    use crate::engine::pipeline::{declared, segments};
    use crate::engine::{PipelineStep, StepId, Target};
    let all = super::pipeline(false);
    let ids: Vec<StepId> = all.iter().map(|s| s.id()).collect();
    let mut unique = ids.clone();
    unique.sort_by_key(|i| i.name());
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "every step once: {ids:?}");
    let targets: Vec<Target> = all.iter().map(|s| s.target()).collect();
    assert_eq!(
        targets,
        [
            vec![
                Target::Hypervisor,
                Target::Local,
                Target::Local,
                Target::Hypervisor
            ],
            vec![Target::Nodes; 8]
        ]
        .concat()
    );
    let runs = segments(&all);
    assert_eq!(runs.len(), 2);
    assert!(matches!(runs[0][0], PipelineStep::Gated(_)) && runs[0].len() == 4);
    let vms: Vec<StepId> = super::create_vms_steps(false)
        .iter()
        .map(|s| s.id())
        .collect();
    assert_eq!(vms, [StepId::PrepareNetworks, StepId::CreateVms]);
    let nodes: Vec<StepId> = declared(&all).iter().map(|s| s.id()).collect();
    let picked: Vec<StepId> = super::controllers(None)
        .iter()
        .chain(super::workers(None).iter())
        .map(|s| s.id())
        .collect();
    assert_eq!(
        picked, nodes,
        "controllers then workers: the node steps in order"
    );
    assert_eq!(
        super::workers(Some(StepId::InstallCni))
            .iter()
            .map(|s| s.id())
            .collect::<Vec<_>>(),
        [StepId::InstallCni]
    );
}

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
                f.content.data.as_slice(),
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
