//! Every hypervisor step on the recording fake hypervisor (and real files for the PKI): a dry
//! run lists exactly the changes the real run then makes, touches nothing (no hypervisor call
//! that changes anything, no file), and a second run right after lists nothing.
//! `create_vms` waits for SSH on the VMs' addresses, which these tests must not contact: its
//! plan and apply (everything before the wait) are checked through the same gate instead.

use anyhow::Result;

use super::build_image::BuildImage;
use super::destroy_vms::DestroyVms;
use super::generate_pki::GeneratePki;
use super::prepare_networks::PrepareNetworks;
use crate::engine::Report;
use crate::engine::hv::{self, Gate, HvStep, Hx};
use crate::hypervisor::Hypervisor;
use crate::hypervisor::fake::FakeHypervisor;
use crate::spec::Cluster;
use crate::vms;
use crate::vms::tests::setup;

fn run(c: &Cluster, hv: &FakeHypervisor, step: &dyn HvStep, dry_run: bool) -> Result<Report> {
    let hx = Hx {
        cluster: c,
        whole: c,
        hv: Some(hv),
    };
    hv::run(&hx, &[step], dry_run, Default::default(), &mut |_| {})
}

/// Mutating calls the fake recorded (reads are `domain`, `network`, … and not listed).
fn mutations(hv: &FakeHypervisor) -> Vec<String> {
    hv.calls()
        .into_iter()
        .filter(|c| {
            [
                "create", "define", "start", "stop", "undefine", "delete", "resume", "refresh",
            ]
            .iter()
            .any(|v| c.starts_with(v))
        })
        .collect()
}

/// Files under `dir`, recursively, with their contents.
fn tree(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(tree(&p));
            } else {
                out.push((
                    p.display().to_string(),
                    std::fs::read(&p).unwrap_or_default(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// The contract, for one step on a prepared state.
fn dry_predicts_real_then_nothing(c: &Cluster, hv: &FakeHypervisor, step: &dyn HvStep) {
    let root = c.work_dir.parent().unwrap().to_path_buf();
    let before = tree(&root);
    hv.clear_calls();
    let dry = run(c, hv, step, true).unwrap();
    assert_eq!(
        mutations(hv),
        Vec::<String>::new(),
        "{}: a dry run calls nothing that changes",
        step.name()
    );
    assert_eq!(
        tree(&root),
        before,
        "{}: a dry run writes nothing",
        step.name()
    );
    let real = run(c, hv, step, false).unwrap();
    assert!(
        real.changes() > 0,
        "{}: the test needs something to do",
        step.name()
    );
    assert_eq!(
        dry.nodes[0].changes,
        real.nodes[0].changes,
        "{}",
        step.name()
    );
    assert_eq!(real.nodes[0].applied, real.changes(), "{}", step.name());
    let again = run(c, hv, step, false).unwrap();
    assert_eq!(
        again.nodes[0].changes,
        Vec::new(),
        "{}: a second run changes nothing",
        step.name()
    );
}

#[test]
fn prepare_networks() {
    let (_tmp, c, hv) = setup();
    dry_predicts_real_then_nothing(&c, &hv, &PrepareNetworks);
    assert!(c.ssh_key.exists());
}

#[test]
fn generate_pki() {
    let (_tmp, c, hv) = setup();
    let step = GeneratePki {
        opts: Default::default(),
        list_kept: false,
    };
    dry_predicts_real_then_nothing(&c, &hv, &step);
    let mode = |f: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(c.certs_dir().join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("ca-key.pem"), 0o600);
    assert_eq!(mode("admin.kubeconfig"), 0o600);
}

#[test]
fn build_image_changes_nothing_when_the_image_is_there() {
    let (_tmp, c, hv) = setup();
    let r = run(&c, &hv, &BuildImage, true).unwrap();
    assert_eq!(r.changes(), 0);
    assert_eq!(run(&c, &hv, &BuildImage, false).unwrap().changes(), 0);
}

/// create_vms up to the wait: plan, then apply through the gate.
#[test]
fn create_vms_apply() {
    let (_tmp, c, hv) = setup();
    run(&c, &hv, &PrepareNetworks, false).unwrap();
    let plan = vms::plan(&c, &hv, false).unwrap();
    hv.clear_calls();
    let mut dry = Gate::quiet(true);
    assert!(
        vms::apply(&c, &hv, &plan, false, &mut dry)
            .unwrap()
            .is_empty()
    );
    assert_eq!(mutations(&hv), Vec::<String>::new());
    assert!(!c.vm_dir("kubi-worker-01").exists(), "no host key made");
    let mut real = Gate::quiet(false);
    let started = vms::apply(&c, &hv, &plan, false, &mut real).unwrap();
    assert_eq!(dry.changes, real.changes);
    assert_eq!(
        real.changes.len(),
        1 + c.nodes.len(),
        "the template volume, then one change per VM: {:?}",
        real.changes
    );
    assert_eq!(started.len(), c.nodes.len());
    for n in &started {
        vms::mark_verified(&c, n).unwrap();
    }
    let again = vms::plan(&c, &hv, false).unwrap();
    let mut g = Gate::quiet(false);
    vms::apply(&c, &hv, &again, false, &mut g).unwrap();
    assert_eq!(g.changes, Vec::new(), "verified VMs: nothing to do");
}

#[test]
fn destroy_vms() {
    let (_tmp, c, hv) = setup();
    run(&c, &hv, &PrepareNetworks, false).unwrap();
    let plan = vms::plan(&c, &hv, false).unwrap();
    vms::apply(&c, &hv, &plan, false, &mut Gate::quiet(false)).unwrap();
    vms::write_known_hosts(&c).unwrap();
    let step = DestroyVms { only: Vec::new() };
    dry_predicts_real_then_nothing(&c, &hv, &step);
    assert!(hv.domains().unwrap().is_empty());
    assert!(!c.known_hosts().exists());
}
