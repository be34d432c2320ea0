//! `create_vms` (hypervisor): the original's `create-vms` — one VM per node, cloned from the
//! template as a qcow2 overlay, two NICs (NAT/management and cluster net), static addresses
//! and a host key made here and pinned before the first boot (or, for a hand-made template,
//! re-addressed one at a time). All VMs are made and started before any is waited for; then
//! each must answer SSH with its pinned key and report its hostname and addresses, and only
//! then is it "up to date" (a run stopped before that leaves it "not yet verified").
//! Drift (vcpus, memory, disk) is reported and left alone unless `--force`.

use crate::engine::StepId;
use anyhow::Result;

use crate::engine::hv::{Gate, HvStep, Hx};
use crate::hypervisor;
use crate::vms::{self, Action};

pub struct CreateVms {
    /// Recreate every VM (`--force`): a fresh disk, the pinned host key kept.
    pub force: bool,
}

impl HvStep for CreateVms {
    fn id(&self) -> StepId {
        StepId::CreateVms
    }

    fn run(&self, hx: &Hx, gate: &mut Gate) -> Result<()> {
        let (c, hv) = (hx.cluster, hx.hv()?);
        let plan = vms::plan(c, hv, self.force)?;
        for p in &plan {
            match &p.action {
                Action::Keep => gate.say(&format!("  {}", p.describe())),
                Action::Drift(_) => {
                    gate.say(&format!("  {}", p.describe()));
                    gate.note(&p.node, p.action.what());
                }
                _ => {}
            }
        }
        if !gate.dry_run() {
            // Before anything is made; the networks exist by now (prepare_networks).
            vms::check_memory(c, hv, &plan)?;
            vms::check_addresses_free(c, &plan)?;
        }
        let kvm = hypervisor::kvm_on(&c.hypervisor.uri, hv);
        let started = vms::apply(c, hv, &plan, kvm, gate)?;
        vms::converge_autostart(c, hv, gate)?;
        if gate.dry_run() {
            return Ok(());
        }
        // Every node's line, whichever hypervisor it is on.
        for n in vms::write_known_hosts(hx.whole)? {
            gate.say(&format!(
                "create-vms: the known_hosts line of {n} did not match its pinned key; rewritten from the pin store ({})",
                c.known_hosts().display()
            ));
        }
        if started.is_empty() {
            gate.say("create-vms: nothing to do");
            return Ok(());
        }
        gate.say(&format!(
            "create-vms: waiting for {} VM(s) to answer SSH: {}",
            started.len(),
            started.join(", ")
        ));
        for (name, took) in vms::wait_all(c, hv, &started)? {
            vms::mark_verified(c, &name)?;
            gate.say(&format!(
                "  {name}: SSH answers with its pinned key, hostname and addresses verified ({} s)",
                took.as_secs()
            ));
        }
        gate.say(&format!(
            "create-vms: {} VM(s) up, host keys pinned in {}",
            started.len(),
            c.known_hosts().display()
        ));
        Ok(())
    }
}
