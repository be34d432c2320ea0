//! What placement needs from each hypervisor: where this cluster's VMs already are, and how much
//! memory is left for new ones.

use super::*;
use crate::placement::Facts;

/// Memory kept for the host itself (libvirt, QEMU's own overhead, the OS) when counting what
/// is left for VMs.
pub const HOST_RESERVE_MIB: u64 = 1024;

/// What a host can still give VMs, MiB: its memory minus what its running VMs (`domains`,
/// anyone's) were given, minus [`HOST_RESERVE_MIB`]. None when libvirt cannot tell.
pub fn free_for_vms(
    hv: &dyn Hypervisor,
    domains: &[hypervisor::DomainInfo],
) -> Result<Option<u64>> {
    let given: u64 = domains
        .iter()
        .filter(|d| d.state == VmState::Running)
        .filter_map(|d| d.size().map(|(_, mib)| mib))
        .sum();
    Ok(hv
        .memory_mib()?
        .map(|total| total.saturating_sub(given).saturating_sub(HOST_RESERVE_MIB)))
}

/// What the cluster's hypervisor can give new VMs, MiB: this machine's MemAvailable when
/// libvirt runs here, a remote host's memory minus what its running VMs were given.
pub fn free_mib(cluster: &Cluster, hv: &dyn Hypervisor) -> Result<Option<u64>> {
    if hypervisor::is_remote(&cluster.hypervisor.uri) {
        free_for_vms(hv, &hv.domains()?)
    } else {
        Ok(available_mib())
    }
}

/// Read every host's domains and memory (the hosts in parallel): `existing` names the host of
/// each domain of this cluster; `free_mib` is the host's memory minus what its running VMs
/// (anyone's) were given, minus [`HOST_RESERVE_MIB`].
pub fn placement_facts(cluster: &Cluster, hosts: &[(&str, &dyn Hypervisor)]) -> Result<Facts> {
    let read =
        |(name, hv): &(&str, &dyn Hypervisor)| -> Result<(String, Vec<String>, Option<u64>)> {
            let domains = hv
                .domains()
                .with_context(|| format!("hypervisor {name} ({})", hv.describe()))?;
            let ours = domains
                .iter()
                .filter(|d| d.owner().as_deref() == Some(cluster.name.as_str()))
                .map(|d| d.name.clone())
                .collect();
            let free = free_for_vms(*hv, &domains)
                .with_context(|| format!("hypervisor {name} ({})", hv.describe()))?;
            Ok((name.to_string(), ours, free))
        };
    let mut facts = Facts::default();
    for r in par::map(hosts, read) {
        let (host, ours, free) = r?;
        for d in ours {
            if let Some(other) = facts.existing.insert(d.clone(), host.clone()) {
                return Err(Failure::new(format!(
                    "{d}: a VM of cluster {} is defined on two hypervisors, {other} and {host}",
                    cluster.name
                ))
                .hint("remove the one that is not in use with virsh undefine on its host; kubicluster will not guess")
                .into());
            }
        }
        if let Some(mib) = free {
            facts.free_mib.insert(host, mib);
        }
    }
    Ok(facts)
}
