//! `kubicluster stop` and `kubicluster start`: the whole cluster powered down and back up with
//! its disks, keys and state kept. Stop: workers first (the kubelet's graceful node shutdown
//! stops their pods), then the controllers. Start: controllers first, until the API server is
//! ready (its `/readyz` includes etcd), then the workers, until each posts Ready again.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::Ctx;
use crate::cli::{StartArgs, StopArgs};
use crate::spec::{Cluster, Role};
use crate::vms;

fn names(cluster: &Cluster, role: Role) -> Vec<String> {
    cluster
        .nodes
        .iter()
        .filter(|n| n.role == role)
        .map(|n| n.name.clone())
        .collect()
}

pub fn run_stop(ctx: &mut Ctx, args: &StopArgs) -> Result<()> {
    let (cluster, _) = ctx.cluster(&args.spec)?;
    let spread = super::hosts::spread(&cluster)?;
    let _lock = super::lock(&cluster)?;
    let t = Instant::now();
    let timeout = Duration::from_secs(args.timeout);
    let mut down = 0;
    for (role, group) in [
        (Role::Worker, "workers"),
        (Role::Controller, "controllers"),
        (Role::LoadBalancer, "load balancer"),
    ] {
        if names(&cluster, role).is_empty() {
            continue;
        }
        ctx.printer.status(&format!("stop: {group}"));
        for h in spread.on_hosts() {
            let names = names(h.cluster, role);
            if names.is_empty() {
                continue;
            }
            let tag = tag(&spread, h.name);
            let stopped = vms::shutdown(
                h.cluster,
                h.hv,
                &names,
                timeout,
                args.force,
                &mut super::host_gate(ctx, args.dry_run, &spread, h.name),
            )?;
            for (name, how) in stopped {
                if how != vms::Stopped::AlreadyOff {
                    down += 1;
                }
                ctx.printer
                    .status(&format!("  {tag}{name}: {}", how.what()));
            }
        }
    }
    if args.dry_run {
        ctx.printer.status("stop: dry run, nothing changed");
        return Ok(());
    }
    ctx.printer.status(&format!(
        "stop: {down} VM(s) stopped in {:.0} s; disks and state kept; `kubicluster start` brings the cluster back",
        t.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// `[hv2] ` before a line about a node of a spread cluster (nothing on one hypervisor).
fn tag(spread: &super::hosts::Spread, host: &str) -> String {
    crate::engine::hv::host_tag(spread.name(host))
}

pub fn run_start(ctx: &mut Ctx, args: &StartArgs) -> Result<()> {
    let (cluster, _) = ctx.cluster(&args.spec)?;
    let spread = super::hosts::spread(&cluster)?;
    super::hosts::reach_all(&cluster, &spread)?;
    let _lock = super::lock(&cluster)?;
    let t = Instant::now();
    let stages = bring_up(
        ctx,
        &cluster,
        &spread,
        Duration::from_secs(args.timeout),
        args.dry_run,
    )?;
    if args.dry_run {
        ctx.printer.status("start: dry run, nothing changed");
        return Ok(());
    }
    ctx.printer.status(&format!(
        "start: cluster {} up in {:.0} s ({})",
        cluster.name,
        t.elapsed().as_secs_f64(),
        stages.join(", ")
    ));
    Ok(())
}

/// Start the cluster's VMs that are not running, controllers first, and wait: SSH with the
/// pinned key on every VM of a group, then `/readyz` (controllers), then every worker Ready from
/// a heartbeat after now. Returns the stages with their times, for the summary line.
/// (Booting every VM at once was measured no faster on a 2-core TCG host: 148 s against 146 s
/// for a snapshot revert.)
pub(super) fn bring_up(
    ctx: &mut Ctx,
    cluster: &Cluster,
    spread: &super::hosts::Spread,
    timeout: Duration,
    dry_run: bool,
) -> Result<Vec<String>> {
    let t = Instant::now();
    // Heartbeats from before this moment do not count as Ready.
    let since = time::OffsetDateTime::now_utc() - time::Duration::seconds(5);
    // Without an admin kubeconfig (no `cnc` yet) there is nothing to wait for but SSH.
    let api = crate::kubeapi::Client::admin(cluster)?;
    let mut stages = Vec::new();
    // The load balancer first: the API is waited for through it.
    for (role, group) in [
        (Role::LoadBalancer, "load balancer"),
        (Role::Controller, "controllers"),
        (Role::Worker, "workers"),
    ] {
        if names(cluster, role).is_empty() {
            continue;
        }
        ctx.printer.status(&format!("start: {group}"));
        // The group's VMs on every host first, then the waits (they boot meanwhile).
        for h in spread.on_hosts() {
            let names = names(h.cluster, role);
            if !names.is_empty() {
                vms::power_on(
                    h.cluster,
                    h.hv,
                    &names,
                    &mut super::host_gate(ctx, dry_run, spread, h.name),
                )?;
            }
        }
        if dry_run {
            continue;
        }
        // Every VM of the group, not only those started here: libvirt may have started some
        // (autostart, after the host rebooted) that have not finished booting.
        for h in spread.on_hosts() {
            let names = names(h.cluster, role);
            if names.is_empty() {
                continue;
            }
            let tag = tag(spread, h.name);
            for (name, took) in vms::wait_all(h.cluster, h.hv, &names)? {
                ctx.printer.status(&format!(
                    "  {tag}{name}: SSH answers with its pinned key ({} s)",
                    took.as_secs()
                ));
            }
        }
        stages.push(format!("{group} booted {:.0} s", t.elapsed().as_secs_f64()));
        let Some(api) = &api else {
            ctx.printer.status(&format!(
                "start: no admin kubeconfig: the readiness of the {group} was not waited for"
            ));
            continue;
        };
        match role {
            Role::Controller => {
                api.wait_ready(timeout)?;
                ctx.printer
                    .status("start: the API server is ready (/readyz, etcd included)");
                stages.push(format!("API ready {:.0} s", t.elapsed().as_secs_f64()));
            }
            // Its haproxy is up once its VM answers; the API behind it is the controllers'.
            Role::LoadBalancer => {}
            Role::Worker => {
                let (n, _) = super::workers::wait_workers_ready(cluster, timeout, Some(since))?;
                ctx.printer
                    .status(&format!("start: every worker Ready again ({n}/{n})"));
                stages.push(format!("workers Ready {:.0} s", t.elapsed().as_secs_f64()));
            }
        }
    }
    Ok(stages)
}
