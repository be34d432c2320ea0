//! `destroy_vms` (hypervisor): the named VMs (all of the cluster's by default), their disks and
//! their files (host key, identity); `known_hosts` too when all go. A domain that is not this
//! cluster's is refused before anything is removed. The PKI and the lab are `destroy --all`'s.

use crate::engine::StepId;
use anyhow::Result;

use crate::engine::hv::{Gate, HvStep, Hx};
use crate::vms;

pub struct DestroyVms {
    /// Node names; empty = every node of the cluster.
    pub only: Vec<String>,
}

impl HvStep for DestroyVms {
    fn id(&self) -> StepId {
        StepId::DestroyVms
    }

    fn run(&self, hx: &Hx, gate: &mut Gate) -> Result<()> {
        let hv = hx.hv()?;
        // On one of several hypervisors: the named nodes that are there.
        let only: Vec<String> = if self.only.is_empty() || hx.whole.hosts.len() < 2 {
            self.only.clone()
        } else {
            let here: Vec<String> = self
                .only
                .iter()
                .filter(|n| hx.cluster.node(n).is_some())
                .cloned()
                .collect();
            if here.is_empty() {
                return Ok(());
            }
            here
        };
        let removed = vms::destroy(hx.cluster, hv, &only, gate)?;
        if !gate.dry_run() {
            gate.say(&format!(
                "destroy: removed {} VM(s) on {}: {}",
                removed.len(),
                hv.describe(),
                removed.join(", ")
            ));
        }
        Ok(())
    }
}
