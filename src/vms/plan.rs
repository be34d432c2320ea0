//! The VM plan, read-only: per node create / start / verify / resume / keep / drift / recreate,
//! and the checks before anything is made (ownership, address clashes, pins, memory).

use super::*;

/// One planned change (or none) for a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create,
    Start,
    Keep,
    /// The domain differs from the spec; reported, applied only with `--force`.
    Drift(String),
    /// Stopped and differs from the spec: started as it is, the drift reported.
    StartDrifted(String),
    /// Running, but never confirmed answering SSH (an interrupted run): waited for and verified.
    Verify,
    /// Paused (the reason from libvirt): resumed, then verified. After an I/O error (the
    /// storage is full) it is resumed only once space is free again.
    Resume(String),
    Recreate(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub node: String,
    pub action: Action,
}

impl Action {
    /// What is done to the VM, as the plan says it.
    pub fn what(&self) -> String {
        match self {
            Action::Keep => "up to date".into(),
            Action::Drift(d) => {
                format!("differs from the spec ({d}); run with --force to recreate it")
            }
            _ => self.op().map(|o| o.to_string()).unwrap_or_default(),
        }
    }
}

impl Action {
    /// The change it makes, if it makes one (keeping a VM, or its drift without `--force`,
    /// changes nothing).
    pub fn op(&self) -> Option<VmOp> {
        Some(match self {
            Action::Create => VmOp::Create,
            Action::Start => VmOp::Start { drift: None },
            Action::StartDrifted(d) => VmOp::Start {
                drift: Some(d.clone()),
            },
            Action::Verify => VmOp::Verify,
            Action::Resume(why) => VmOp::Resume {
                why: Some(why.clone()),
            },
            Action::Recreate(why) => VmOp::Recreate { why: why.clone() },
            Action::Keep | Action::Drift(_) => return None,
        })
    }
}

impl Planned {
    pub fn describe(&self) -> String {
        format!("{}: {}", self.node, self.action.what())
    }
}

/// Refuse node addresses that another kubicluster cluster's VM on this hypervisor already uses.
pub(crate) fn check_address_clash(cluster: &Cluster, hv: &dyn Hypervisor) -> Result<()> {
    let mut clashes = Vec::new();
    for d in hv.domains()? {
        let Some(owner) = d.owner() else { continue };
        if owner == cluster.name {
            continue;
        }
        for ip in d.addresses() {
            if let Some(n) = cluster
                .nodes
                .iter()
                .find(|n| n.cluster_ip == ip || n.hypervisor_ip == ip)
            {
                clashes.push(format!(
                    "{}: {ip} is already used by VM {} of cluster {owner:?}",
                    n.name, d.name
                ));
            }
        }
    }
    if clashes.is_empty() {
        return Ok(());
    }
    Err(Failure::bad_input(clashes.join("; "))
        .hint("give the nodes other addresses, or destroy the other cluster's VMs")
        .into())
}

/// The pin store is the truth, and a pin that is not the key the VM was created with (recorded
/// in its libvirt metadata) is an error: somebody replaced it.
pub(crate) fn check_pin(cluster: &Cluster, d: &hypervisor::DomainInfo) -> Result<()> {
    let Some(recorded) = d.host_key_fingerprint() else {
        return Ok(()); // created before the fingerprint was recorded, or a legacy template
    };
    let current = crate::vms::pins::pinned(cluster, &d.name)?
        .map(|k| k.fingerprint(Default::default()).to_string());
    if current.as_deref() == Some(recorded.as_str()) {
        return Ok(());
    }
    Err(Failure::new(format!(
        "{}: the pinned host key ({}) is {}, not the key the VM was created with ({recorded})",
        d.name,
        crate::vms::pins::host_key_path(cluster, &d.name).display(),
        current.as_deref().unwrap_or("missing"),
    ))
    .hint("restore that file from a backup; or recreate the VM with `create-vms --force` (a new key is made and pinned)")
    .into())
}

/// `vms/<node>/verified`: the VM answered SSH with its pinned key and its identity checked out
/// since it was last started. Only then is a running VM "up to date".
pub(crate) fn verified_marker(cluster: &Cluster, node: &str) -> std::path::PathBuf {
    cluster.vm_dir(node).join("verified")
}

pub fn is_verified(cluster: &Cluster, node: &str) -> bool {
    verified_marker(cluster, node).is_file()
}

pub fn mark_verified(cluster: &Cluster, node: &str) -> Result<()> {
    fsutil::write_atomic(&verified_marker(cluster, node), b"", fsutil::PUBLIC)
}

pub(crate) fn forget_verified(cluster: &Cluster, node: &str) {
    let _ = std::fs::remove_file(verified_marker(cluster, node));
}

/// Read-only: what `apply` would do for each node.
pub fn plan(cluster: &Cluster, hv: &dyn Hypervisor, force: bool) -> Result<Vec<Planned>> {
    check_address_clash(cluster, hv)?;
    let mut out = Vec::new();
    for n in &cluster.nodes {
        let action = match hv.domain(&n.name)? {
            None => Action::Create,
            Some(d) => {
                owned_by_us(cluster, &d)?;
                check_pin(cluster, &d)?;
                let mut drift = Vec::new();
                if let Some((vcpus, mib)) = d.size() {
                    // Only what differs is named.
                    if vcpus != n.vcpus {
                        drift.push(format!("vcpus {vcpus} → {}", n.vcpus));
                    }
                    if mib != u64::from(n.memory_mib) {
                        drift.push(format!("memory {mib} → {} MiB", n.memory_mib));
                    }
                }
                // The cluster NIC's MTU (networks.cluster.mtu): libvirt cannot change it live.
                let mtu = d.nic_mtu(&hypervisor::mac_address(&cluster.name, &n.name, 1));
                if mtu != cluster.networks.mtu {
                    let say = |m: Option<u16>| m.map_or("default".to_string(), |m| m.to_string());
                    drift.push(format!(
                        "cluster NIC MTU {} → {}",
                        say(mtu),
                        say(cluster.networks.mtu)
                    ));
                }
                // A disk is never shrunk: only one smaller than diskGiB is a change.
                if let Some(v) =
                    hv.volume(&cluster.hypervisor.storage_pool, &volume_name(&n.name))?
                    && v.capacity < disk_bytes(cluster)
                {
                    drift.push(format!(
                        "disk {} → {} GiB",
                        v.capacity >> 30,
                        cluster.hypervisor.disk_gib
                    ));
                }
                let drift = (!drift.is_empty()).then(|| drift.join(", "));
                let running = d.state == VmState::Running;
                if let VmState::Paused(why) = &d.state
                    && !force
                {
                    out.push(Planned {
                        node: n.name.clone(),
                        action: Action::Resume(why.clone()),
                    });
                    continue;
                }
                match (drift, force) {
                    (Some(d), true) => Action::Recreate(d),
                    (None, true) => Action::Recreate("--force".into()),
                    (Some(d), false) if !running => Action::StartDrifted(d),
                    (Some(d), false) => Action::Drift(d),
                    (None, false) if !running => Action::Start,
                    (None, false) if !is_verified(cluster, &n.name) => Action::Verify,
                    (None, false) => Action::Keep,
                }
            }
        };
        out.push(Planned {
            node: n.name.clone(),
            action,
        });
    }
    Ok(out)
}

/// Free memory (MemAvailable) in MiB.
pub fn available_mib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? / 1024)
}

/// Refuse a plan whose new VMs need more memory than the host has free (this host's
/// MemAvailable; a remote host's memory minus what its running VMs were given).
pub fn check_memory(cluster: &Cluster, hv: &dyn Hypervisor, plan: &[Planned]) -> Result<()> {
    let need: u64 = plan
        .iter()
        .filter(|p| {
            matches!(
                p.action,
                Action::Create | Action::Recreate(_) | Action::Start | Action::StartDrifted(_)
            )
        })
        .filter_map(|p| cluster.node(&p.node))
        .map(|n| u64::from(n.memory_mib))
        .sum();
    if let Some(free) = free_mib(cluster, hv)?
        && need > free
    {
        return Err(Failure::bad_input(format!(
            "the VMs to start need {need} MiB of memory, the host has {free} MiB free"
        ))
        .hint("lower memoryMiB (nodeDefaults or per node) or free memory")
        .into());
    }
    Ok(())
}

pub(crate) fn tcp_connect(
    ip: Ipv4Addr,
    port: u16,
    secs: u64,
) -> std::io::Result<std::net::TcpStream> {
    crate::net::connect(&SocketAddr::new(ip.into(), port), Duration::from_secs(secs))
}

pub(crate) fn answers(ip: Ipv4Addr, port: u16) -> bool {
    tcp_connect(ip, port, 2).is_ok()
}

/// Whether a machine holds `ip`: anything that replies on `port` within a second, even with a
/// refusal. Silence or "unreachable" means free.
pub(crate) fn address_taken(ip: Ipv4Addr, port: u16) -> bool {
    match tcp_connect(ip, port, 1) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
    }
}

/// Refuse to create a VM whose address another machine already holds (kubicluster's own VMs are
/// recognised by their metadata before this; this catches everything else on the networks).
/// Run after the networks exist and before any VM is created; probes all addresses in parallel.
pub fn check_addresses_free(cluster: &Cluster, plan: &[Planned]) -> Result<()> {
    let probes: Vec<(&str, Ipv4Addr)> = plan
        .iter()
        .filter(|p| p.action == Action::Create)
        .filter_map(|p| cluster.node(&p.node))
        .flat_map(|n| {
            [
                (n.name.as_str(), n.hypervisor_ip),
                (n.name.as_str(), n.cluster_ip),
            ]
        })
        .collect();
    let port = cluster.ssh_port;
    let taken: Vec<String> = par::map(&probes, |&(name, ip)| {
        address_taken(ip, port).then(|| format!("{name}: {ip} already answers"))
    })
    .into_iter()
    .flatten()
    .collect();
    if taken.is_empty() {
        return Ok(());
    }
    Err(Failure::bad_input(format!(
        "{}; another machine uses the address",
        taken.join("; ")
    ))
    .hint("give the node a free address in the cluster file, or free that address")
    .into())
}
