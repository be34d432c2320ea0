use super::*;
use crate::spec::{self, ClusterNetMode, HostEntry, HypervisorMode};

/// `controllers` + `workers` nodes of 2048 MiB over hosts named by `hosts` (MiB bound each).
fn cluster(controllers: u8, workers: u8, hosts: &[(&str, Option<u64>)]) -> Cluster {
    let mut file = spec::example_cluster_file(controllers, workers);
    file.spec.hypervisor.mode = HypervisorMode::Host;
    file.spec.networks.cluster.mode = ClusterNetMode::Bridged;
    file.spec.node_defaults.memory_mib = 2048;
    file.spec.hypervisors = hosts
        .iter()
        .enumerate()
        .map(|(i, (name, mib))| HostEntry {
            name: name.to_string(),
            uri: format!("qemu+ssh://root@{name}/system?i={i}"),
            memory_mib: *mib,
            ..HostEntry::default()
        })
        .collect();
    spec::validate(&file).expect("a valid cluster")
}

fn hosts_of(placed: &[Placed]) -> Vec<(&str, &str)> {
    placed
        .iter()
        .map(|p| (p.node.as_str(), p.host.as_str()))
        .collect()
}

#[test]
fn one_hypervisor_takes_every_node() {
    let c = spec::validate(&spec::default_cluster_file()).unwrap();
    let placed = place(&c, &Facts::default()).unwrap();
    assert_eq!(placed.len(), 3);
    assert!(
        placed
            .iter()
            .all(|p| p.host == spec::DEFAULT_HOST && p.why == Why::Only)
    );
}

#[test]
fn controllers_spread_before_any_host_takes_a_second_one() {
    let c = cluster(3, 0, &[("hv1", None), ("hv2", None), ("hv3", None)]);
    let placed = place(&c, &Facts::default()).unwrap();
    assert_eq!(
        hosts_of(&placed),
        [
            ("kubi-controller-01", "hv1"),
            ("kubi-controller-02", "hv2"),
            ("kubi-controller-03", "hv3"),
        ]
    );
    assert!(placed.iter().all(|p| p.why == Why::Spread));
    // Three controllers on two hosts: one host takes two, but only after each has one.
    let c = cluster(3, 0, &[("hv1", None), ("hv2", None)]);
    let on: Vec<_> = place(&c, &Facts::default())
        .unwrap()
        .into_iter()
        .map(|p| p.host)
        .collect();
    assert_eq!(on, ["hv1", "hv2", "hv1"]);
}

#[test]
fn workers_go_where_the_most_memory_is_left() {
    // hv2 has room for three 2 GiB nodes, hv1 for one: the controller spreads to hv1 (first of
    // equals by controllers, then more room: hv2), the workers follow the memory.
    let c = cluster(1, 3, &[("hv1", Some(4096)), ("hv2", Some(8192))]);
    let placed = place(&c, &Facts::default()).unwrap();
    assert_eq!(
        hosts_of(&placed),
        [
            ("kubi-controller-01", "hv2"),
            ("kubi-worker-01", "hv2"),
            ("kubi-worker-02", "hv1"),
            ("kubi-worker-03", "hv2"),
        ]
    );
    assert_eq!(placed[1].why, Why::Memory);
    // libvirt's free memory bounds a host below its file bound.
    let facts = Facts {
        free_mib: [("hv2".to_string(), 1024)].into(),
        ..Facts::default()
    };
    let c = cluster(1, 1, &[("hv1", Some(4096)), ("hv2", Some(8192))]);
    assert_eq!(
        hosts_of(&place(&c, &facts).unwrap()),
        [("kubi-controller-01", "hv1"), ("kubi-worker-01", "hv1")]
    );
}

#[test]
fn unknown_memory_balances_by_node_count() {
    let c = cluster(1, 3, &[("hv1", None), ("hv2", None)]);
    let on: Vec<_> = place(&c, &Facts::default())
        .unwrap()
        .into_iter()
        .map(|p| p.host)
        .collect();
    assert_eq!(on, ["hv1", "hv2", "hv1", "hv2"]);
}

#[test]
fn an_existing_vm_stays_and_a_named_host_is_obeyed() {
    let mut c = cluster(2, 2, &[("hv1", None), ("hv2", None)]);
    c.nodes[3].hypervisor = Some("hv1".into());
    let facts = Facts {
        // controller-01 was made on hv2 (say, by a file that listed hv2 first).
        existing: [("kubi-controller-01".to_string(), "hv2".to_string())].into(),
        ..Facts::default()
    };
    let placed = place(&c, &facts).unwrap();
    assert_eq!(
        hosts_of(&placed),
        [
            ("kubi-controller-01", "hv2"),
            ("kubi-controller-02", "hv1"),
            ("kubi-worker-01", "hv2"),
            ("kubi-worker-02", "hv1"),
        ]
    );
    assert_eq!(placed[0].why, Why::Exists);
    assert_eq!(placed[3].why, Why::Named);
    // A VM the file names elsewhere is not moved: refused, with the way to move it.
    c.nodes[0].hypervisor = Some("hv1".into());
    let err = place(&c, &facts).unwrap_err();
    assert_eq!(
        err.message,
        "kubi-controller-01: its VM is on hypervisor hv2, but the cluster file names hv1"
    );
    assert!(
        err.hint
            .unwrap()
            .contains("kubicluster remove kubi-controller-01")
    );
    // A VM on a host the file no longer lists.
    c.nodes[0].hypervisor = None;
    let gone = Facts {
        existing: [("kubi-controller-01".to_string(), "hv9".to_string())].into(),
        ..Facts::default()
    };
    let err = place(&c, &gone).unwrap_err();
    assert!(
        err.message
            .contains("hv9, which the cluster file does not list"),
        "{}",
        err.message
    );
}

#[test]
fn nodes_that_cannot_fit_are_refused_before_anything_is_made() {
    // Two 2 GiB nodes on 3 GiB: the second has nowhere to go.
    let c = cluster(1, 1, &[("hv1", Some(3072))]);
    let err = place(&c, &Facts::default()).unwrap_err();
    assert_eq!(
        err.message,
        "kubi-worker-01: no hypervisor has the 2048 MiB it needs left (hv1 1024 MiB)"
    );
    assert_eq!(err.code, crate::error::EXIT_BAD_INPUT);
    // Named onto a host that is too small.
    let mut c = cluster(1, 1, &[("hv1", Some(8192)), ("hv2", Some(1024))]);
    c.nodes[1].hypervisor = Some("hv2".into());
    let err = place(&c, &Facts::default()).unwrap_err();
    assert_eq!(
        err.message,
        "kubi-worker-01: its 2048 MiB do not fit on hypervisor hv2 (1024 MiB left there)"
    );
    // An existing VM takes no new memory: a full host still keeps its VMs.
    let facts = Facts {
        existing: [("kubi-worker-01".to_string(), "hv2".to_string())].into(),
        free_mib: [("hv2".to_string(), 0)].into(),
    };
    let placed = place(&c, &facts).unwrap();
    assert_eq!(placed[1].host, "hv2");
}

#[test]
fn the_placement_reads_as_one_line_per_node() {
    let c = cluster(1, 1, &[("hv1", None), ("hv2", None)]);
    let lines = describe(&place(&c, &Facts::default()).unwrap());
    assert_eq!(
        lines,
        [
            "kubi-controller-01  on hv1 (controllers spread over the hypervisors)",
            "kubi-worker-01      on hv2 (the most memory left)",
        ]
    );
}
