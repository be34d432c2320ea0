//! The worker steps on FakeHosts: a second run changes nothing; adding a worker provisions it
//! and, on the other nodes, changes (and restarts) only the pod-routes unit; pod subnets of
//! existing workers never move; kata's absence is reported per worker.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::engine::{self, Change, Cx, Options, Report};
use crate::host::fake::FakeHost;
use crate::host::{Host, Output};
use crate::spec::{self, Cluster, Cni, Overrides};

pub(super) fn cluster(dir: &std::path::Path, workers: u8) -> Cluster {
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
pub(super) fn fake(c: &Cluster, name: &str) -> FakeHost {
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
            vec![Target::Nodes; 10]
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

#[test]
fn an_upgrade_works_node_by_node_without_etcd_and_the_addons() {
    use crate::engine::StepId;
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(dir.path(), 2);
    let ids = |node: &str| -> Vec<StepId> {
        let steps = super::upgrade_steps(&c, node);
        for s in crate::engine::pipeline::declared(&steps) {
            let on: Vec<&str> = s.targets(&c).iter().map(|n| n.name.as_str()).collect();
            assert_eq!(on, [node], "{} narrowed to {node}", s.id().name());
        }
        steps.iter().map(|s| s.id()).collect()
    };
    assert_eq!(
        ids("kubi-controller-01"),
        [
            StepId::InstallKubernetesControllers,
            StepId::InstallApiVip,
            StepId::InstallCni
        ]
    );
    assert_eq!(
        ids("kubi-worker-02"),
        [
            StepId::PrepareWorkerNodes,
            StepId::InstallRunc,
            StepId::InstallContainerd,
            StepId::InstallCni,
            StepId::InstallKubernetesWorkers
        ]
    );
}

/// The bridge pod network takes the cluster network's MTU when one is set (valid JSON either
/// way; without it the plugin's default).
#[test]
fn the_bridge_pod_network_takes_the_cluster_mtu() {
    for (mtu, want) in [
        (serde_json::json!(1450), serde_json::json!(1450)),
        (serde_json::Value::Null, serde_json::Value::Null),
    ] {
        let text = crate::render::render(
            "worker/10-bridge.conflist.j2",
            &serde_json::json!({"subnet": "10.200.21.0/24", "mtu": mtu}),
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["plugins"][0]["mtu"], want, "{text}");
        assert_eq!(
            v["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.200.21.0/24"
        );
    }
}
