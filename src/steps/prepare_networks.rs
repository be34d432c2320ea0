//! `prepare_networks` (hypervisor): the libvirt NAT network, the cluster network (an isolated
//! libvirt network, or a check that the host bridge exists), the storage pool and the client
//! SSH key — the libvirt half of the original's `prepare`, run by `prepare`, `create-vms` and
//! `up`. Each is made (or started) only when missing (or stopped).

use crate::engine::StepId;
use anyhow::Result;

use crate::engine::hv::{Gate, HvStep, Hx};
use crate::vms;

pub struct PrepareNetworks;

impl HvStep for PrepareNetworks {
    fn id(&self) -> StepId {
        StepId::PrepareNetworks
    }

    fn run(&self, hx: &Hx, gate: &mut Gate) -> Result<()> {
        vms::ensure_infra(hx.cluster, hx.hv()?, gate)
    }
}
