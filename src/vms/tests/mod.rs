//! Planning, applying and destroying against the recording fake hypervisor.

use super::*;
use crate::hypervisor::fake::FakeHypervisor;
use crate::spec::{Overrides, resolve};

/// A work dir, a template image, the default cluster and a fake hypervisor.
pub(crate) fn setup() -> (tempfile::TempDir, Cluster, FakeHypervisor) {
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("template.qcow2");
    let mut bytes = b"QFI\xfb".to_vec();
    bytes.resize(4096, 0);
    std::fs::write(&image, bytes).unwrap();
    let ov = Overrides {
        work_dir: Some(tmp.path().join("work").display().to_string()),
        storage_dir: Some(tmp.path().join("pool").display().to_string()),
        image: Some(image.display().to_string()),
        memory_mib: Some(1024),
        ..Overrides::default()
    };
    let cluster = resolve(None, &ov, &|_| None).unwrap().0;
    (tmp, cluster, FakeHypervisor::new())
}

/// What `prepare_networks` does: the number of changes made.
fn infra(c: &Cluster, hv: &dyn Hypervisor) -> Result<usize> {
    let mut g = Gate::quiet(false);
    ensure_infra(c, hv, &mut g)?;
    Ok(g.changes.len())
}

fn actions(plan: &[Planned]) -> Vec<String> {
    plan.iter()
        .map(|p| format!("{}: {:?}", p.node, p.action))
        .collect()
}

/// `apply`, then what `create-vms` does once each VM answered SSH: mark it verified.
fn apply(c: &Cluster, hv: &dyn Hypervisor, p: &[Planned], kvm: bool) -> Result<Vec<String>> {
    let started = super::apply(c, hv, p, kvm, &mut Gate::quiet(false))?;
    write_known_hosts(c)?;
    for n in &started {
        mark_verified(c, n)?;
    }
    Ok(started)
}

#[test]
fn create_then_nothing_to_do() {
    let (_tmp, c, hv) = setup();
    assert_eq!(infra(&c, &hv).unwrap(), 4, "2 networks, pool, SSH key");
    assert!(
        infra(&c, &hv).unwrap() == 0,
        "second prepare changes nothing"
    );
    let plan = plan(&c, &hv, false).unwrap();
    assert!(
        plan.iter().all(|p| p.action == Action::Create),
        "{:?}",
        actions(&plan)
    );
    hv.clear_calls();
    let started = apply(&c, &hv, &plan, false).unwrap();
    assert_eq!(
        started,
        ["kubi-controller-01", "kubi-worker-01", "kubi-worker-02"]
    );
    let calls = hv.calls();
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.starts_with("define_domain"))
            .count(),
        3
    );
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.starts_with("start_domain"))
            .count(),
        3
    );
    assert!(calls.contains(&"create_volume kubicluster/kubi-worker-01.qcow2".to_string()));
    // each VM got its identity and a host key, and every key is pinned
    let id = std::fs::read_to_string(c.vm_dir("kubi-worker-01").join("identity")).unwrap();
    assert!(id.contains("HOSTNAME=kubi-worker-01\nETH0_ADDRESS=192.168.122.21/24\nETH0_GATEWAY=192.168.122.1\nETH1_ADDRESS=192.168.24.21/24\n"), "{id}");
    let known = std::fs::read_to_string(c.known_hosts()).unwrap();
    assert_eq!(known.lines().count(), 3);
    assert!(known.starts_with("kubi-controller-01,192.168.122.11 ssh-ed25519 "));

    hv.clear_calls();
    let again = super::plan(&c, &hv, false).unwrap();
    assert!(
        again.iter().all(|p| p.action == Action::Keep),
        "{:?}",
        actions(&again)
    );
    assert!(apply(&c, &hv, &again, false).unwrap().is_empty());
    assert!(
        hv.calls().is_empty(),
        "a second run changes nothing: {:?}",
        hv.calls()
    );
}

#[test]
fn drift_is_reported_and_force_recreates_keeping_the_host_key() {
    let (_tmp, mut c, hv) = setup();
    infra(&c, &hv).unwrap();
    let p = plan(&c, &hv, false).unwrap();
    apply(&c, &hv, &p, false).unwrap();
    let key_before =
        std::fs::read(c.vm_dir("kubi-worker-02").join("ssh_host_ed25519_key")).unwrap();
    c.nodes[2].memory_mib = 2048;
    let p = plan(&c, &hv, false).unwrap();
    assert_eq!(p[2].action, Action::Drift("memory 1024 → 2048 MiB".into()));
    assert_eq!(
        p[2].describe(),
        "kubi-worker-02: differs from the spec (memory 1024 → 2048 MiB); run with --force to recreate it"
    );
    hv.clear_calls();
    apply(&c, &hv, &p, false).unwrap();
    assert!(hv.calls().is_empty(), "drift alone changes nothing");
    let p = plan(&c, &hv, true).unwrap();
    assert!(matches!(p[2].action, Action::Recreate(_)));
    hv.clear_calls();
    apply(&c, &hv, &p[2..], false).unwrap();
    assert_eq!(
        hv.calls(),
        [
            "stop_domain kubi-worker-02",
            "undefine_domain kubi-worker-02",
            "delete_volume kubicluster/kubi-worker-02.host-key",
            "delete_volume kubicluster/kubi-worker-02.identity",
            "delete_volume kubicluster/kubi-worker-02.qcow2",
            // What it reads at boot goes through libvirt (a remote host has no access here).
            "create_volume kubicluster/kubi-worker-02.identity",
            "upload_volume kubicluster/kubi-worker-02.identity 250",
            "create_volume kubicluster/kubi-worker-02.host-key",
            "upload_volume kubicluster/kubi-worker-02.host-key 419",
            "create_volume kubicluster/kubi-worker-02.qcow2",
            "define_domain kubi-worker-02",
            "start_domain kubi-worker-02",
        ]
    );
    assert_eq!(
        hv.domain("kubi-worker-02").unwrap().unwrap().size(),
        Some((1, 2048))
    );
    assert_eq!(
        std::fs::read(c.vm_dir("kubi-worker-02").join("ssh_host_ed25519_key")).unwrap(),
        key_before
    );
}

/// A changed cluster-network MTU is a drift (libvirt cannot change a NIC's MTU live): named,
/// recreated with --force, then nothing to do.
#[test]
fn a_changed_cluster_mtu_is_a_drift() {
    let (_tmp, mut c, hv) = setup();
    infra(&c, &hv).unwrap();
    apply(&c, &hv, &plan(&c, &hv, false).unwrap(), false).unwrap();
    c.networks.mtu = Some(1450);
    let p = plan(&c, &hv, false).unwrap();
    assert_eq!(
        p[0].action,
        Action::Drift("cluster NIC MTU default → 1450".into())
    );
    apply(&c, &hv, &plan(&c, &hv, true).unwrap()[..1], false).unwrap();
    let d = hv.domain("kubi-controller-01").unwrap().unwrap();
    let mac = crate::hypervisor::mac_address(&c.name, "kubi-controller-01", 1);
    assert_eq!(d.nic_mtu(&mac), Some(1450));
    assert_eq!(
        d.nic_mtu(&crate::hypervisor::mac_address(
            &c.name,
            "kubi-controller-01",
            0
        )),
        None,
        "the management NIC keeps libvirt's default"
    );
    assert!(!matches!(
        plan(&c, &hv, false).unwrap()[0].action,
        Action::Drift(_)
    ));
}

#[test]
fn a_larger_disk_is_a_drift_and_a_smaller_one_is_not() {
    let (_tmp, mut c, hv) = setup();
    infra(&c, &hv).unwrap();
    apply(&c, &hv, &plan(&c, &hv, false).unwrap(), false).unwrap();
    c.hypervisor.disk_gib = 12;
    let p = plan(&c, &hv, false).unwrap();
    assert_eq!(p[0].action, Action::Drift("disk 8 → 12 GiB".into()));
    let p = plan(&c, &hv, true).unwrap();
    hv.clear_calls();
    apply(&c, &hv, &p[..1], false).unwrap();
    assert_eq!(
        hv.volume("kubicluster", "kubi-controller-01.qcow2")
            .unwrap()
            .unwrap()
            .capacity,
        12 << 30
    );
    c.hypervisor.disk_gib = 4;
    assert_eq!(
        actions(&plan(&c, &hv, false).unwrap()),
        [
            "kubi-controller-01: Keep",
            "kubi-worker-01: Keep",
            "kubi-worker-02: Keep"
        ],
        "disks are never shrunk"
    );
}

#[test]
fn a_stopped_vm_is_started() {
    let (_tmp, c, hv) = setup();
    infra(&c, &hv).unwrap();
    apply(&c, &hv, &plan(&c, &hv, false).unwrap(), false).unwrap();
    hv.stop_domain("kubi-worker-01").unwrap();
    let p = plan(&c, &hv, false).unwrap();
    assert_eq!(p[1].action, Action::Start);
    assert_eq!(p[0].action, Action::Keep);
}

#[test]
fn a_foreign_domain_is_never_touched() {
    let (_tmp, c, hv) = setup();
    infra(&c, &hv).unwrap();
    hv.define_domain("<domain type='kvm'><name>kubi-worker-01</name><memory>1024</memory><vcpu>1</vcpu></domain>").unwrap();
    hv.clear_calls();
    let err = plan(&c, &hv, true).unwrap_err();
    let f = err.downcast_ref::<Failure>().unwrap();
    assert_eq!(f.code, crate::error::EXIT_BAD_INPUT);
    assert_eq!(
        f.message,
        "kubi-worker-01: a libvirt domain with this name exists and belongs to something else (no kubicluster metadata)"
    );
    assert!(
        f.hint
            .as_deref()
            .unwrap()
            .contains("never touches domains it did not create")
    );
    let err = destroy(&c, &hv, &[], &mut Gate::quiet(false)).unwrap_err();
    assert!(err.to_string().contains("belongs to something else"));
    assert!(
        hv.calls().is_empty(),
        "nothing was changed: {:?}",
        hv.calls()
    );
    // another kubicluster cluster's domain is foreign too
    let mut other = c.clone();
    other.name = "other".into();
    let xml = hypervisor::domain_xml(
        &other,
        &other.nodes[0],
        Path::new("/d"),
        "qemu",
        "maximum",
        None,
    );
    hv.define_domain(&xml).unwrap();
    let err = destroy(
        &c,
        &hv,
        &["kubi-controller-01".into()],
        &mut Gate::quiet(false),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("belongs to kubicluster cluster \"other\""),
        "{err}"
    );
}

#[test]
fn destroy_removes_ours_and_their_disks() {
    let (_tmp, c, hv) = setup();
    infra(&c, &hv).unwrap();
    apply(&c, &hv, &plan(&c, &hv, false).unwrap(), false).unwrap();
    let removed = destroy(&c, &hv, &["kubi-worker-02".into()], &mut Gate::quiet(false)).unwrap();
    assert_eq!(removed, ["kubi-worker-02"]);
    assert!(hv.domain("kubi-worker-02").unwrap().is_none());
    assert!(
        hv.volume("kubicluster", "kubi-worker-02.qcow2")
            .unwrap()
            .is_none()
    );
    assert!(hv.domain("kubi-worker-01").unwrap().is_some());
    assert!(!c.vm_dir("kubi-worker-02").exists());
    let removed = destroy(&c, &hv, &[], &mut Gate::quiet(false)).unwrap();
    assert_eq!(removed, ["kubi-controller-01", "kubi-worker-01"]);
    assert!(hv.domains().unwrap().is_empty());
    assert!(!c.known_hosts().exists());
}

#[test]
fn a_stopped_vm_that_drifted_is_started_and_the_drift_reported() {
    let (_tmp, mut c, hv) = setup();
    infra(&c, &hv).unwrap();
    let p = plan(&c, &hv, false).unwrap();
    apply(&c, &hv, &p, false).unwrap();
    hv.stop_domain("kubi-worker-02").unwrap();
    c.nodes[2].memory_mib = 2048;
    let p = plan(&c, &hv, false).unwrap();
    assert_eq!(
        p[2].action,
        Action::StartDrifted("memory 1024 → 2048 MiB".into())
    );
    assert!(
        p[2].describe().contains("start (defined, not running)")
            && p[2].describe().contains("--force")
    );
    hv.clear_calls();
    apply(&c, &hv, &p, false).unwrap();
    assert_eq!(
        hv.calls(),
        ["start_domain kubi-worker-02"],
        "started as it is, not recreated"
    );
}

#[test]
fn a_running_vm_never_verified_is_waited_for_not_called_up_to_date() {
    let (_tmp, c, hv) = setup();
    infra(&c, &hv).unwrap();
    // Created and started, then the run was interrupted before the VMs answered.
    super::apply(
        &c,
        &hv,
        &plan(&c, &hv, false).unwrap(),
        false,
        &mut Gate::quiet(false),
    )
    .unwrap();
    let p = plan(&c, &hv, false).unwrap();
    assert!(
        p.iter().all(|x| x.action == Action::Verify),
        "{:?}",
        actions(&p)
    );
    assert!(p[0].describe().contains("not yet verified"));
    hv.clear_calls();
    let waited = super::apply(&c, &hv, &p, false, &mut Gate::quiet(false)).unwrap();
    assert_eq!(waited.len(), 3, "all are waited for and verified again");
    assert!(
        hv.calls().is_empty(),
        "nothing is restarted or recreated: {:?}",
        hv.calls()
    );
    for n in &waited {
        mark_verified(&c, n).unwrap();
    }
    assert!(
        plan(&c, &hv, false)
            .unwrap()
            .iter()
            .all(|x| x.action == Action::Keep)
    );
}

#[test]
fn a_paused_vm_is_resumed_not_started() {
    let (_tmp, c, hv) = setup();
    infra(&c, &hv).unwrap();
    apply(&c, &hv, &plan(&c, &hv, false).unwrap(), false).unwrap();
    hv.pause("kubi-worker-01", "paused by a user");
    let p = plan(&c, &hv, false).unwrap();
    assert_eq!(p[1].action, Action::Resume("paused by a user".into()));
    assert!(
        p[1].describe()
            .contains("resume (paused: paused by a user)")
    );
    hv.clear_calls();
    apply(&c, &hv, &p, false).unwrap();
    assert!(
        hv.calls()
            .iter()
            .any(|c| c == "resume_domain kubi-worker-01"),
        "{:?}",
        hv.calls()
    );
    assert!(
        !hv.calls().iter().any(|c| c.starts_with("start_domain")),
        "{:?}",
        hv.calls()
    );
    assert_eq!(
        hv.domain("kubi-worker-01").unwrap().unwrap().state,
        VmState::Running
    );
}

/// The cluster made (3 VMs running) on the fake, for the snapshot and two-cluster tests.
fn made() -> (tempfile::TempDir, Cluster, FakeHypervisor) {
    let (tmp, c, hv) = setup();
    infra(&c, &hv).unwrap();
    let p = plan(&c, &hv, false).unwrap();
    apply(&c, &hv, &p, false).unwrap();
    (tmp, c, hv)
}

mod clusters;
mod power;
mod refusals;
mod snapshots;

/// The template goes into the pool through libvirt's upload stream (a remote host has no
/// access to this one's files) and counts as there only once it arrived whole: a template
/// cut off by a kill is replaced, one copied in whole by an earlier version is kept and marked.
#[test]
fn the_template_is_uploaded_and_trusted_only_once_it_arrived_whole() {
    let (_tmp, c, hv) = setup();
    infra(&c, &hv).unwrap();
    let mut g = Gate::quiet(false);
    let v = template_volume(&c, &hv, &mut g).unwrap().unwrap();
    let image = std::fs::read(c.image_path()).unwrap();
    assert_eq!(std::fs::read(&v.path).unwrap(), image, "the bytes arrived");
    let calls = hv.calls();
    assert!(
        calls
            .iter()
            .any(|c| c == &format!("upload_volume kubicluster/{} 4096", v.name)),
        "{calls:?}"
    );
    let mark = v.name.replace(".qcow2", ".complete");
    assert!(
        calls.contains(&format!("create_volume kubicluster/{mark}")),
        "{calls:?}"
    );
    // Found whole with its mark: nothing is read or sent again.
    hv.clear_calls();
    assert_eq!(
        template_volume(&c, &hv, &mut Gate::quiet(false)).unwrap(),
        Some(v.clone())
    );
    assert!(hv.calls().is_empty(), "{:?}", hv.calls());
    // Cut off half-way (no mark, half the bytes): a dry run says it would copy it again,
    // the run replaces it.
    hv.delete_volume("kubicluster", &mark).unwrap();
    std::fs::write(&v.path, &image[..2048]).unwrap();
    let mut dry = Gate::quiet(true);
    assert_eq!(template_volume(&c, &hv, &mut dry).unwrap(), None);
    assert_eq!(dry.changes.len(), 1, "{:?}", dry.changes);
    assert_eq!(
        std::fs::read(&v.path).unwrap().len(),
        2048,
        "a dry run changes nothing"
    );
    hv.clear_calls();
    template_volume(&c, &hv, &mut Gate::quiet(false)).unwrap();
    assert_eq!(std::fs::read(&v.path).unwrap(), image);
    assert_eq!(
        hv.calls(),
        [
            format!("delete_volume kubicluster/{}", v.name),
            format!("create_volume kubicluster/{}", v.name),
            format!("upload_volume kubicluster/{} 4096", v.name),
            format!("create_volume kubicluster/{mark}"),
        ]
    );
    // Whole but unmarked (copied in by an earlier version, VMs may stand on it): kept, marked.
    hv.delete_volume("kubicluster", &mark).unwrap();
    hv.clear_calls();
    template_volume(&c, &hv, &mut Gate::quiet(false)).unwrap();
    assert_eq!(hv.calls(), [format!("create_volume kubicluster/{mark}")]);
}

/// A VM that is paused while kubicluster waits for it to boot (here: as if its accelerator
/// failed at once) ends the wait at once with the reason, instead of after the boot timeout.
#[test]
fn a_vm_paused_while_booting_ends_the_wait_at_once() {
    let (_tmp, c, hv) = setup();
    infra(&c, &hv).unwrap();
    let p = plan(&c, &hv, false).unwrap();
    super::apply(&c, &hv, &p, false, &mut Gate::quiet(false)).unwrap();
    hv.pause("kubi-worker-01", "unknown");
    let t0 = std::time::Instant::now();
    let n = c.node("kubi-worker-01").unwrap();
    let err = wait_ready(&c, &hv, n, Duration::from_secs(60)).unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(10));
    let f = err.downcast_ref::<Failure>().unwrap();
    assert_eq!(
        f.message,
        "kubi-worker-01: the VM is paused (unknown) while booting"
    );
    assert!(f.hint.as_deref().unwrap().contains("domainType: qemu"));
}
