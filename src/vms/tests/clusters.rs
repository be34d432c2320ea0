//! Two clusters on one hypervisor: side by side, their clashes named.

use super::*;

/// A second cluster on the same hypervisor, its nodes renamed with `prefix` and moved by
/// `offset` addresses (same networks, same pool and template).
fn second(c: &Cluster, name: &str, prefix: &str, offset: u8) -> Cluster {
    let mut b = c.clone();
    b.name = name.into();
    for n in &mut b.nodes {
        n.name = n.name.replacen("kubi-", prefix, 1);
        let bump = |ip: Ipv4Addr| {
            let o = ip.octets();
            Ipv4Addr::new(o[0], o[1], o[2], o[3] + offset)
        };
        n.cluster_ip = bump(n.cluster_ip);
        n.hypervisor_ip = bump(n.hypervisor_ip);
    }
    b
}

#[test]
fn two_clusters_live_side_by_side_and_clashes_are_named() {
    let (_tmp, a, hv) = made();
    // Same node names: refused, naming the owner.
    let same_names = second(&a, "beta", "kubi-", 100);
    let e = plan(&same_names, &hv, false).unwrap_err();
    assert!(
        format!("{e:#}").contains("kubi-controller-01: a libvirt domain with this name exists and belongs to kubicluster cluster \"kubicluster\""),
        "{e:#}"
    );
    // Same addresses: refused, naming the address and the VM that has it.
    let same_ips = second(&a, "beta", "beta-", 0);
    let e = plan(&same_ips, &hv, false).unwrap_err();
    assert!(
        format!("{e:#}").contains("beta-worker-01: 192.168.24.21 is already used by VM kubi-worker-01 of cluster \"kubicluster\""),
        "{e:#}"
    );
    // Its own names and addresses: made next to the first, which stays as it was.
    let b = second(&a, "beta", "beta-", 100);
    infra(&b, &hv).unwrap();
    hv.clear_calls();
    let started = apply(&b, &hv, &plan(&b, &hv, false).unwrap(), false).unwrap();
    assert_eq!(
        started,
        ["beta-controller-01", "beta-worker-01", "beta-worker-02"]
    );
    assert!(
        hv.calls().iter().all(|c| !c.contains("kubi-")),
        "{:?}",
        hv.calls()
    );
    assert!(
        plan(&a, &hv, false)
            .unwrap()
            .iter()
            .all(|p| p.action == Action::Keep)
    );
    // Snapshots, garbage collection and destroy of one never reach the other's disks.
    snapshot::freeze(&b, &hv, "S1", &mut Gate::quiet(false)).unwrap();
    snapshot::collect_garbage(&b, &hv, &[], &mut Gate::quiet(false)).unwrap();
    destroy(&b, &hv, &[], &mut Gate::quiet(false)).unwrap();
    let vols: Vec<String> = hv
        .volumes("kubicluster")
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .filter(|n| !n.starts_with("kubicluster-template"))
        .collect();
    assert_eq!(
        vols,
        [
            "kubi-controller-01.host-key",
            "kubi-controller-01.identity",
            "kubi-controller-01.qcow2",
            "kubi-worker-01.host-key",
            "kubi-worker-01.identity",
            "kubi-worker-01.qcow2",
            "kubi-worker-02.host-key",
            "kubi-worker-02.identity",
            "kubi-worker-02.qcow2"
        ]
    );
    assert!(
        plan(&a, &hv, false)
            .unwrap()
            .iter()
            .all(|p| p.action == Action::Keep)
    );
}
