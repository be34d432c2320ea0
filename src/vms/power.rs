//! Powering a cluster's VMs off and on without losing anything (`kubicluster stop` / `start`):
//! a clean shutdown through the guest (ACPI power button: systemd stops every unit, the
//! kubelet's graceful node shutdown stops the pods), powered off only when the guest does not
//! finish in time or with `--force`; disks, keys and state are kept.

use super::*;

/// How one VM went down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// The guest shut itself down after the power button (seconds it took).
    Clean(u64),
    /// Powered off at once (`--force`), or after the guest did not stop within the timeout.
    PoweredOff { timed_out: bool },
    /// It was not running.
    AlreadyOff,
}

impl Stopped {
    pub fn what(&self) -> String {
        match self {
            Stopped::Clean(s) => format!("shut down cleanly ({s} s)"),
            Stopped::PoweredOff { timed_out: true } => {
                "did not shut down in time: powered off".into()
            }
            Stopped::PoweredOff { timed_out: false } => "powered off (--force)".into(),
            Stopped::AlreadyOff => "already off".into(),
        }
    }
}

/// The cluster's domain called `name`, refused when it is missing or not ours.
pub(crate) fn own_domain(
    cluster: &Cluster,
    hv: &dyn Hypervisor,
    name: &str,
) -> Result<hypervisor::DomainInfo> {
    let d = hv.domain(name)?.ok_or_else(|| {
        Failure::new(format!("{name}: no VM of that name"))
            .hint("`kubicluster up` (or create-vms) makes the cluster's VMs")
    })?;
    owned_by_us(cluster, &d)?;
    Ok(d)
}

/// Shut the named VMs down together: the power button for each, then wait (polling libvirt)
/// until each is off; after `timeout` (or at once with `force`) power off what still runs.
pub fn shutdown(
    cluster: &Cluster,
    hv: &dyn Hypervisor,
    names: &[String],
    timeout: Duration,
    force: bool,
    gate: &mut Gate,
) -> Result<Vec<(String, Stopped)>> {
    let mut out = Vec::new();
    let mut waiting = Vec::new();
    for name in names {
        let d = own_domain(cluster, hv, name)?;
        match d.state {
            VmState::Off => out.push((name.clone(), Stopped::AlreadyOff)),
            // A paused guest cannot see the power button.
            VmState::Running if !force => {
                if gate.wet(vm_change(name, VmOp::ShutDown), || hv.shutdown_domain(name))? {
                    waiting.push(name.clone());
                }
            }
            _ => {
                gate.wet(vm_change(name, VmOp::PowerOff { after_s: None }), || {
                    hv.stop_domain(name)
                })?;
                out.push((name.clone(), Stopped::PoweredOff { timed_out: false }));
            }
        }
    }
    let start = Instant::now();
    while !waiting.is_empty() {
        let mut still = Vec::new();
        for name in waiting {
            match hv.domain(&name)?.map(|d| d.state) {
                Some(VmState::Running) | Some(VmState::Other(_)) => still.push(name),
                _ => out.push((name, Stopped::Clean(start.elapsed().as_secs()))),
            }
        }
        waiting = still;
        if waiting.is_empty() {
            break;
        }
        if start.elapsed() >= timeout {
            for name in waiting.drain(..) {
                let op = VmOp::PowerOff {
                    after_s: Some(timeout.as_secs()),
                };
                gate.wet(vm_change(&name, op), || hv.stop_domain(&name))?;
                out.push((name, Stopped::PoweredOff { timed_out: true }));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(out)
}

/// Start (or resume) the named VMs that are not running; returns those started, to be waited
/// for with [`wait_all`].
pub fn power_on(
    cluster: &Cluster,
    hv: &dyn Hypervisor,
    names: &[String],
    gate: &mut Gate,
) -> Result<Vec<String>> {
    let mut started = Vec::new();
    for name in names {
        let d = own_domain(cluster, hv, name)?;
        let done = match &d.state {
            VmState::Running => false,
            VmState::Paused(why) => {
                if why == hypervisor::PAUSED_IO_ERROR {
                    disk_space_or_explain(cluster, name)?;
                }
                gate.wet(vm_change(name, VmOp::Resume { why: None }), || {
                    hv.resume_domain(name)
                })?
            }
            _ => gate.wet(vm_change(name, VmOp::Start { drift: None }), || {
                hv.start_domain(name)
            })?,
        };
        if done {
            started.push(name.clone());
        }
    }
    Ok(started)
}
