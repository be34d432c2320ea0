//! Waiting for VMs: each answers SSH with its pinned host key and reports the right hostname
//! and addresses; a VM that pauses on a full disk or powers off ends the wait at once, saying so.

use super::*;

/// Space needed on the storage before a VM paused by an I/O error is resumed.
pub(crate) const MIN_FREE_MIB: u64 = 256;

/// A VM paused after an I/O error: its disk's file system is full. Say where, and how much is
/// free; `Ok` once there is room again.
pub(crate) fn disk_space_or_explain(cluster: &Cluster, node: &str) -> Result<()> {
    let dir = cluster.storage_dir();
    match disk_full(node, dir, hypervisor::free_mib(dir)) {
        Some(f) => Err(f.into()),
        None => Ok(()),
    }
}

/// The error for a VM paused on a full disk, if the space free (MiB) is too little.
pub fn disk_full(node: &str, dir: &std::path::Path, free: Option<u64>) -> Option<Failure> {
    let free = free.filter(|f| *f < MIN_FREE_MIB)?;
    Some(
        Failure::new(format!(
            "{node}: the VM is paused after an I/O error: the file system of {} is full ({free} MiB free)",
            dir.display()
        ))
        .hint("free space there, then run the same command again: the VM is resumed where it stopped (no --force needed)"),
    )
}

/// Connect to a node over SSH, pinning its host key.
pub fn connect(cluster: &Cluster, n: &Node, timeout: Duration) -> Result<SshHost> {
    Ok(SshHost::connect(crate::vms::pins::ssh_target(
        cluster, n, timeout,
    )?)?)
}

/// What a VM reports about itself, checked against the spec.
pub fn verify(cluster: &Cluster, n: &Node, host: &dyn Host) -> Result<()> {
    let out = host.run(&Cmd::new(["sh", "-c", "hostname; ip -4 -o addr show"]))?;
    let text = out.stdout_text();
    let mut lines = text.lines();
    let name = lines.next().unwrap_or_default().trim();
    anyhow::ensure!(name == n.name, "{}: hostname is {name:?}", n.name);
    let addrs: String = lines.collect::<Vec<_>>().join("\n");
    for (ip, prefix) in [
        (n.hypervisor_ip, cluster.networks.hypervisor.prefix_len()),
        (n.cluster_ip, cluster.networks.cluster.prefix_len()),
    ] {
        anyhow::ensure!(
            addrs.contains(&format!("inet {ip}/{prefix}")),
            "{}: {ip}/{prefix} not configured:\n{addrs}",
            n.name
        );
    }
    Ok(())
}

pub(crate) fn console_tail(cluster: &Cluster, node: &str, lines: usize) -> String {
    let log = VmFiles::for_node(cluster, node).console_log;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Wait until `n` answers SSH with its pinned key and passes [`verify`]. A VM that pauses
/// meanwhile (an I/O error: a full disk; or its accelerator failing) or powers off ends the
/// wait at once, saying so.
pub fn wait_ready(
    cluster: &Cluster,
    hv: &dyn Hypervisor,
    n: &Node,
    timeout: Duration,
) -> Result<()> {
    use crate::retry::NotYet::Stop;
    crate::retry::until(timeout, Duration::from_secs(2), || {
        if let Some(d) = hv.domain(&n.name).map_err(Stop)? {
            match &d.state {
                VmState::Paused(why) if why == hypervisor::PAUSED_IO_ERROR => {
                    disk_space_or_explain(cluster, &n.name).map_err(Stop)?;
                    return Err(Stop(
                        Failure::new(format!(
                            "{}: the VM paused after an I/O error writing its disk",
                            n.name
                        ))
                        .hint(format!(
                            "check the storage under {}; run the same command again to resume it",
                            cluster.storage_dir().display()
                        ))
                        .into(),
                    ));
                }
                VmState::Paused(why) => {
                    return Err(Stop(
                        Failure::new(format!("{}: the VM is paused ({why}) while booting", n.name))
                            .hint("run the same command again to resume it; a VM paused as soon as it starts usually means its accelerator cannot run it (try spec.hypervisor.domainType: qemu)")
                            .into(),
                    ));
                }
                VmState::Off => {
                    return Err(Stop(
                        Failure::new(format!("{}: the VM powered off while booting", n.name))
                            .hint("see its console log; run the same command again to start it")
                            .into(),
                    ));
                }
                _ => {}
            }
        }
        match connect(cluster, n, Duration::from_secs(5)) {
            Ok(h) => verify(cluster, n, &h).map_err(Stop),
            Err(e) if is_key_mismatch(&e) => Err(Stop(e)),
            Err(e) => Err(e
                .context(format!(
                    "{}: no SSH answer within {} s",
                    n.name,
                    timeout.as_secs()
                ))
                .into()),
        }
    })
}

/// Wait for every started VM in parallel; a VM that times out is restarted once, then fails
/// with its console log.
pub fn wait_all(
    cluster: &Cluster,
    hv: &dyn Hypervisor,
    names: &[String],
) -> Result<Vec<(String, Duration)>> {
    let timeout = cluster.hypervisor.boot_timeout;
    let start = Instant::now();
    let results: Vec<(String, Result<Duration>)> = par::map(names, |name| {
        let n = cluster.node(name).expect("a cluster node");
        let first = wait_ready(cluster, hv, n, timeout);
        let r = match first {
            // A full disk is not cured by a restart.
            Err(e) if e.downcast_ref::<Failure>().is_some() => Err(e),
            Err(e) if !is_key_mismatch(&e) => {
                tracing::warn!(node = %n.name, "no SSH answer, restarting once: {e:#}");
                hv.stop_domain(&n.name)
                    .and_then(|_| hv.start_domain(&n.name))
                    .and_then(|_| wait_ready(cluster, hv, n, timeout))
            }
            other => other,
        };
        (n.name.clone(), r.map(|()| start.elapsed()))
    });
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(name, r)| {
            r.as_ref().err().map(|e| {
                format!(
                    "- {name}: {e:#}\n  console ({}), last lines:\n{}",
                    VmFiles::for_node(cluster, name).console_log.display(),
                    console_tail(cluster, name, 15)
                        .lines()
                        .map(|l| format!("    {l}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            })
        })
        .collect();
    if !failed.is_empty() {
        return Err(Failure::new(format!(
            "failed on {} VM(s):\n{}",
            failed.len(),
            failed.join("\n")
        ))
        .hint("see the console logs; raise hypervisor.bootTimeoutSeconds on a slow host")
        .into());
    }
    Ok(results
        .into_iter()
        .filter_map(|(name, r)| r.ok().map(|d| (name, d)))
        .collect())
}
