//! `kubicluster create-vms`, `destroy`, `status`.

use anyhow::Result;

use super::{Ctx, connect, reexec_in_lab};
use crate::cli::{CreateVmsArgs, DestroyArgs, SpecOnly};
use crate::hypervisor::{self, Hypervisor};
use crate::spec::{Cluster, HypervisorMode};
use crate::{lab, vms};

/// Plan, apply and wait; shared with `up`. `only` are the original's positional node specs (the
/// VMs to create), passed on when the command re-runs inside the lab.
pub fn create(
    ctx: &mut Ctx,
    cluster: &Cluster,
    force: bool,
    dry_run: bool,
    only: &[String],
) -> Result<()> {
    let mut args = vec!["create-vms"];
    args.extend(only.iter().map(String::as_str));
    if force {
        args.push("--force");
    }
    if dry_run {
        args.push("--dry-run");
    }
    if reexec_in_lab(cluster, &args)? {
        return Ok(());
    }
    let _lock = if dry_run { None } else { Some(lock(cluster)?) };
    let hv = connect(cluster)?;
    let plan = vms::plan(cluster, &hv, force)?;
    for p in &plan {
        ctx.printer.status(&format!("  {}", p.describe()));
    }
    if dry_run {
        ctx.printer.status("dry run: nothing changed");
        return Ok(());
    }
    vms::check_memory(cluster, &plan)?;
    for c in vms::ensure_infra(cluster, &hv)? {
        ctx.printer.status(&format!("  {c}"));
    }
    vms::check_addresses_free(cluster, &plan)?;
    let started = vms::apply(cluster, &hv, &plan, hypervisor::kvm_usable())?;
    if started.is_empty() {
        ctx.printer.status("create-vms: nothing to do");
        return Ok(());
    }
    ctx.printer.status(&format!(
        "create-vms: waiting for {} VM(s) to answer SSH: {}",
        started.len(),
        started.join(", ")
    ));
    for (name, took) in vms::wait_all(cluster, &hv, &started)? {
        vms::mark_verified(cluster, &name)?;
        ctx.printer.status(&format!(
            "  {name}: SSH answers with its pinned key, hostname and addresses verified ({} s)",
            took.as_secs()
        ));
    }
    ctx.printer.status(&format!(
        "create-vms: {} VM(s) up, host keys pinned in {}",
        started.len(),
        cluster.known_hosts().display()
    ));
    Ok(())
}

pub fn run_create(ctx: &mut Ctx, args: &CreateVmsArgs) -> Result<()> {
    let mut ov = args.spec.overrides();
    ov.extra_nodes = args.nodes.clone();
    let (mut cluster, _) = crate::spec::resolve(args.spec.file.as_deref(), &ov, ctx.env)?;
    if !args.nodes.is_empty() {
        // Legacy positional nodes: only those VMs.
        let names: Vec<String> = args
            .nodes
            .iter()
            .filter_map(|s| s.split(',').next().map(str::to_string))
            .collect();
        cluster.nodes.retain(|n| names.contains(&n.name));
    }
    create(ctx, &cluster, args.force, args.dry_run, &args.nodes)
}

pub fn run_destroy(ctx: &mut Ctx, args: &DestroyArgs) -> Result<()> {
    let (cluster, _) = ctx.cluster(&args.spec)?;
    let unknown: Vec<_> = args
        .nodes
        .iter()
        .filter(|n| cluster.node(n).is_none())
        .collect();
    if !unknown.is_empty() {
        return Err(crate::error::Failure::bad_input(format!(
            "not nodes of cluster {}: {unknown:?}",
            cluster.name
        ))
        .hint("`kubicluster status` lists the nodes")
        .into());
    }
    let lab_running =
        cluster.hypervisor.mode == HypervisorMode::Lab && lab::state(&cluster)?.is_some();
    if cluster.hypervisor.mode == HypervisorMode::Host || lab_running {
        let _lock = lock(&cluster)?;
        let hv = connect(&cluster)?;
        let removed = vms::destroy(&cluster, &hv, &args.nodes)?;
        ctx.printer.status(&format!(
            "destroy: removed {} VM(s) on {}: {}",
            removed.len(),
            hv.describe(),
            removed.join(", ")
        ));
    }
    if args.all {
        if cluster.hypervisor.mode == HypervisorMode::Lab && lab::down(&cluster)? {
            ctx.printer.status("destroy: lab removed");
        }
        let dir = cluster.cluster_dir();
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
            ctx.printer.status(&format!(
                "destroy: removed {} (PKI, keys, work files)",
                dir.display()
            ));
        }
    }
    Ok(())
}

pub fn run_status(ctx: &mut Ctx, args: &SpecOnly) -> Result<()> {
    let (cluster, _) = ctx.cluster(&args.spec)?;
    if reexec_in_lab(&cluster, &["status"])? {
        return Ok(());
    }
    let hv = connect(&cluster)?;
    let probe = cluster.hypervisor.mode == HypervisorMode::Host || lab::inside(&cluster);
    let rows = vms::status(&cluster, &hv, probe)?;
    let mut text = format!(
        "{:<20} {:<10} {:<9} {:<15} {:<15} {}\n",
        "NODE", "ROLE", "VM", "CLUSTER-IP", "HYPERVISOR-IP", "SSH"
    );
    let mut unhealthy = Vec::new();
    for r in &rows {
        text.push_str(&format!(
            "{:<20} {:<10} {:<9} {:<15} {:<15} {}\n",
            r.node, r.role, r.vm, r.cluster_ip, r.hypervisor_ip, r.ssh
        ));
        if r.vm != "running" {
            unhealthy.push(format!("{} (VM {})", r.node, r.vm));
        } else if probe && r.ssh != "ok" {
            unhealthy.push(format!("{} (SSH: {})", r.node, r.ssh));
        }
    }
    ctx.printer.result(&text);
    if !unhealthy.is_empty() {
        ctx.printer.status(&format!(
            "status: {} node(s) not healthy: {}",
            unhealthy.len(),
            unhealthy.join(", ")
        ));
        // 3: the command worked, the cluster is not healthy (documented in the README).
        return Err(crate::error::Exit(crate::error::EXIT_UNHEALTHY).into());
    }
    Ok(())
}

/// The cluster lock, for commands that change the cluster: a second run says who holds it.
pub fn lock(cluster: &Cluster) -> Result<crate::fsutil::DirLock> {
    crate::fsutil::ensure_dir(&cluster.cluster_dir(), crate::fsutil::PRIVATE_DIR)?;
    crate::fsutil::lock_dir(&cluster.cluster_dir()).map_err(|e| {
        crate::error::Failure::new(format!("{e:#}"))
            .hint("another kubicluster command is changing this cluster; wait for it to finish")
            .into()
    })
}
