//! Whole-cluster snapshots on the fake: freeze, revert, destroy, layer names.

use super::*;

fn disk_of(hv: &dyn Hypervisor, node: &str) -> std::path::PathBuf {
    hv.domain(node).unwrap().unwrap().disk_path().unwrap()
}

#[test]
fn a_snapshot_freezes_every_disk_while_the_vms_are_paused() {
    let (_tmp, c, hv) = made();
    hv.stop_domain("kubi-worker-02").unwrap(); // a stopped VM is frozen as it is
    let before = disk_of(&hv, "kubi-worker-01");
    hv.clear_calls();
    let frozen = snapshot::freeze(&c, &hv, "S1", &mut Gate::quiet(false)).unwrap();
    assert_eq!(frozen.layers["kubi-worker-01"], before);
    let calls = hv.calls();
    let at = |prefix: &str| calls.iter().position(|c| c.starts_with(prefix)).unwrap();
    // Every running VM is paused before the first disk switches and resumed after the last.
    assert!(at("suspend_domain kubi-worker-01") < at("snapshot_disk"));
    assert!(!calls.iter().any(|c| c == "suspend_domain kubi-worker-02"));
    let last_switch = calls
        .iter()
        .rposition(|c| c.starts_with("snapshot_disk"))
        .unwrap();
    assert!(last_switch < at("resume_domain"));
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.starts_with("snapshot_disk"))
            .count(),
        3
    );
    for n in ["kubi-controller-01", "kubi-worker-01"] {
        assert_eq!(
            hv.domain(n).unwrap().unwrap().state,
            VmState::Running,
            "{n}"
        );
    }
    let now = disk_of(&hv, "kubi-worker-01");
    assert_eq!(now.file_name().unwrap(), "kubi-worker-01@S1.qcow2");
    let top = hv
        .volume("kubicluster", "kubi-worker-01@S1.qcow2")
        .unwrap()
        .unwrap();
    assert_eq!(
        top.backing.as_ref(),
        Some(&before),
        "the old disk is the new one's backing"
    );
    // A dry run changes nothing.
    hv.clear_calls();
    snapshot::freeze(&c, &hv, "S2", &mut Gate::quiet(true)).unwrap();
    assert!(
        hv.calls().iter().all(|c| !c.contains("snapshot_disk")),
        "{:?}",
        hv.calls()
    );
}

#[test]
fn a_paused_vm_is_refused_before_anything_is_frozen() {
    let (_tmp, c, hv) = made();
    hv.pause("kubi-worker-02", "user");
    hv.clear_calls();
    let e = snapshot::freeze(&c, &hv, "S1", &mut Gate::quiet(false)).unwrap_err();
    assert!(format!("{e:#}").contains("kubi-worker-02"), "{e:#}");
    assert!(hv.calls().is_empty(), "{:?}", hv.calls());
}

#[test]
fn revert_puts_every_vm_on_the_snapshot_and_only_unused_layers_are_deleted() {
    let (_tmp, c, hv) = made();
    let frozen = snapshot::freeze(&c, &hv, "S1", &mut Gate::quiet(false)).unwrap();
    let after_s1 = disk_of(&hv, "kubi-worker-01"); // kubi-worker-01@S1.qcow2
    hv.clear_calls();
    let before =
        snapshot::revert_disks(&c, &hv, &frozen.layers, "R1", &mut Gate::quiet(false)).unwrap();
    assert_eq!(before["kubi-worker-01"], after_s1);
    for n in ["kubi-controller-01", "kubi-worker-01", "kubi-worker-02"] {
        let d = hv.domain(n).unwrap().unwrap();
        assert_eq!(d.state, VmState::Off, "{n} powered off for the revert");
        let disk = d.disk_path().unwrap();
        assert_eq!(
            disk.file_name().unwrap().to_str().unwrap(),
            format!("{n}@R1.qcow2")
        );
        let v = hv
            .volume("kubicluster", &format!("{n}@R1.qcow2"))
            .unwrap()
            .unwrap();
        assert_eq!(v.backing.as_ref(), Some(&frozen.layers[n]));
        assert!(
            !is_verified(&c, n),
            "{n} must answer SSH again before it counts"
        );
    }
    // A re-run with the same stamp (after a kill) finds nothing left to do.
    hv.clear_calls();
    let again =
        snapshot::revert_disks(&c, &hv, &frozen.layers, "R1", &mut Gate::quiet(false)).unwrap();
    assert!(
        again.is_empty() && hv.calls().is_empty(),
        "{:?}",
        hv.calls()
    );
    // The disks of before stay while a record needs them, and go once nothing does.
    let mut g = Gate::quiet(false);
    let all_before: Vec<_> = before.values().cloned().collect();
    let kept = snapshot::collect_garbage(&c, &hv, &all_before, &mut g).unwrap();
    assert!(kept.is_empty(), "{kept:?}");
    let needed: Vec<_> = frozen.layers.values().cloned().collect();
    let gone = snapshot::collect_garbage(&c, &hv, &needed, &mut Gate::quiet(false)).unwrap();
    let mut names: Vec<String> = gone.into_iter().map(|(n, _)| n).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "kubi-controller-01@S1.qcow2",
            "kubi-worker-01@S1.qcow2",
            "kubi-worker-02@S1.qcow2"
        ]
    );
    // With no snapshot left, a layer the VMs' disks build on is still kept; the template never
    // counts as ours.
    let gone = snapshot::collect_garbage(&c, &hv, &[], &mut Gate::quiet(false)).unwrap();
    assert!(gone.is_empty(), "{gone:?}");
    assert!(
        hv.volume("kubicluster", "kubi-worker-01.qcow2")
            .unwrap()
            .is_some()
    );
}

#[test]
fn a_revert_that_fails_half_way_gives_the_vms_changed_before_their_disks_back() {
    let (_tmp, c, hv) = made();
    let frozen = snapshot::freeze(&c, &hv, "S1", &mut Gate::quiet(false)).unwrap();
    let mut layers = frozen.layers.clone();
    // The second node's layer is gone (deleted by hand): the revert stops there.
    let gone = layers.get("kubi-worker-01").unwrap().clone();
    hv.delete_volume("kubicluster", gone.file_name().unwrap().to_str().unwrap())
        .unwrap();
    let e = snapshot::revert_disks(&c, &hv, &layers, "R1", &mut Gate::quiet(false)).unwrap_err();
    assert!(format!("{e:#}").contains("kubi-worker-01"), "{e:#}");
    assert_eq!(
        disk_of(&hv, "kubi-controller-01").file_name().unwrap(),
        "kubi-controller-01@S1.qcow2",
        "the first VM has its disk of before again"
    );
    layers.remove("kubi-worker-02");
    let e = snapshot::revert_disks(&c, &hv, &layers, "R2", &mut Gate::quiet(true)).unwrap_err();
    assert!(format!("{e:#}").contains("not in the snapshot"), "{e:#}");
}

#[test]
fn destroy_deletes_every_layer_and_the_snapshot_records() {
    let (_tmp, c, hv) = made();
    snapshot::freeze(&c, &hv, "S1", &mut Gate::quiet(false)).unwrap();
    crate::snapshots::save(
        &c,
        &crate::snapshots::Manifest {
            name: "s1".into(),
            created: "2026-12-04T21:00:00Z".into(),
            complete: true,
            paused_ms: 0,
            etcd: false,
            layers: Default::default(),
        },
    )
    .unwrap();
    destroy(&c, &hv, &[], &mut Gate::quiet(false)).unwrap();
    let left: Vec<String> = hv
        .volumes("kubicluster")
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .filter(|n| n.starts_with("kubi-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(!crate::snapshots::root(&c).exists());
}

#[test]
fn layer_names_belong_to_one_node() {
    assert!(snapshot::is_layer_of(
        "kubi-worker-01",
        "kubi-worker-01.qcow2"
    ));
    assert!(snapshot::is_layer_of(
        "kubi-worker-01",
        "kubi-worker-01@20261204T2100.qcow2"
    ));
    assert!(!snapshot::is_layer_of(
        "kubi-worker-01",
        "kubi-worker-010.qcow2"
    ));
    assert!(!snapshot::is_layer_of(
        "kubi-worker-01",
        "kubi-worker-010@x.qcow2"
    ));
    assert!(!snapshot::is_layer_of(
        "kubi-worker-01",
        "debian-13-kubicluster.qcow2"
    ));
}

#[test]
fn a_revert_never_replaces_a_vm_disk_that_has_its_overlay_name() {
    let (_tmp, c, hv) = made();
    let s1 = snapshot::freeze(&c, &hv, "A", &mut Gate::quiet(false)).unwrap();
    let s2 = snapshot::freeze(&c, &hv, "T", &mut Gate::quiet(false)).unwrap();
    // Back to s1 with the stamp of s2's new overlays: the VMs' disks have the names this revert
    // would give its own, but are not over s1's layers.
    let e = snapshot::revert_disks(&c, &hv, &s1.layers, "T", &mut Gate::quiet(false)).unwrap_err();
    assert!(
        format!("{e:#}").contains("is the VM's disk already"),
        "{e:#}"
    );
    for n in ["kubi-controller-01", "kubi-worker-01", "kubi-worker-02"] {
        let v = hv
            .volume("kubicluster", &format!("{n}@T.qcow2"))
            .unwrap()
            .unwrap();
        assert_eq!(v.backing.as_ref(), Some(&s2.layers[n]), "{n}: untouched");
    }
}

/// Over several hypervisors the moment is one: every host's running VMs are paused before the
/// first disk is switched on any host; a host that fails gets every VM resumed everywhere and
/// is named in the error.
#[test]
fn a_snapshot_over_two_hypervisors_pauses_both_before_any_disk_is_switched() {
    use crate::engine::hv::OnHost;
    let (_a, c, hv1) = made();
    let (_b, _, hv2) = made();
    let host = &c.hosts[0];
    let one = c.on_host(host, &["kubi-controller-01", "kubi-worker-01"]);
    let two = c.on_host(host, &["kubi-worker-02"]);
    let hosts = [
        OnHost {
            name: "hv1",
            cluster: &one,
            hv: &hv1,
        },
        OnHost {
            name: "hv2",
            cluster: &two,
            hv: &hv2,
        },
    ];
    hv1.clear_calls();
    hv2.clear_calls();
    let said = std::sync::Mutex::new(Vec::new());
    let frozen = snapshot::freeze_hosts(
        &hosts,
        "S1",
        &mut Gate::new(false, |l| said.lock().unwrap().push(l.to_string())),
    )
    .unwrap();
    assert_eq!(
        frozen.layers.keys().collect::<Vec<_>>(),
        ["kubi-controller-01", "kubi-worker-01", "kubi-worker-02"]
    );
    let said = said.into_inner().unwrap();
    let at = |s: &str| said.iter().position(|l| l.starts_with(s)).unwrap();
    assert!(at("  [hv2] kubi-worker-02: pause") < at("  [hv1] kubi-controller-01: freeze"));
    assert!(at("  [hv1] kubi-worker-01: pause") < at("  [hv1] kubi-controller-01: freeze"));
    // Each host was asked for its own VMs only.
    assert!(hv1.calls().iter().all(|c| !c.contains("kubi-worker-02")));
    assert!(
        hv2.calls()
            .iter()
            .all(|c| c.contains("kubi-worker-02") || !c.contains("kubi-"))
    );
    assert_eq!(
        disk_of(&hv2, "kubi-worker-02").file_name().unwrap(),
        "kubi-worker-02@S1.qcow2"
    );
    // hv2 cannot switch (its overlay's name is taken): every paused VM runs again, on both.
    hv2.create_volume(
        "kubicluster",
        &crate::hypervisor::file_volume_xml("kubi-worker-02@S2.qcow2", 1, 0o600),
    )
    .unwrap();
    let e = snapshot::freeze_hosts(&hosts, "S2", &mut Gate::quiet(false)).unwrap_err();
    assert!(format!("{e:#}").starts_with("hypervisor hv2: "), "{e:#}");
    for (hv, n) in [
        (&hv1, "kubi-controller-01"),
        (&hv1, "kubi-worker-01"),
        (&hv2, "kubi-worker-02"),
    ] {
        assert_eq!(
            hv.domain(n).unwrap().unwrap().state,
            VmState::Running,
            "{n}"
        );
    }
}
