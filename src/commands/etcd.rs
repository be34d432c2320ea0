//! `kubicluster etcd backup|restore|list`: etcd snapshots on the hypervisor, and disaster
//! recovery of the whole cluster's state from one. Both are runs of the engine's steps
//! ([`steps::snapshot_etcd`], [`steps::restore_etcd`] followed by the controller steps), so a
//! dry run prints their plan and a killed run is completed by the next.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::Ctx;
use super::converge::{Run, converge};
use crate::backups;
use crate::cli::{EtcdAction, EtcdArgs, SpecArgs};
use crate::engine::{Blob, Step};
use crate::error::Failure;
use crate::spec::Cluster;
use crate::steps;

pub fn run(ctx: &mut Ctx, args: &EtcdArgs) -> Result<()> {
    match &args.action {
        EtcdAction::Backup {
            schedule: Some(calendar),
            spec,
            ..
        } => schedule(ctx, calendar, spec),
        EtcdAction::Backup {
            keep,
            schedule: None,
            spec,
        } => backup(ctx, *keep as usize, spec),
        EtcdAction::Restore {
            snapshot,
            yes,
            dry_run,
            spec,
        } => restore(ctx, snapshot, *yes, *dry_run, spec),
        EtcdAction::List { spec } => list(ctx, spec),
    }
}

fn cluster_with_controllers(ctx: &Ctx, spec: &SpecArgs) -> Result<Cluster> {
    let (cluster, _) = ctx.cluster(spec)?;
    if cluster.controllers().next().is_none() {
        return Err(
            Failure::bad_input("the cluster has no controllers, so no etcd")
                .hint("add nodes with role: controller to the cluster file")
                .into(),
        );
    }
    Ok(cluster)
}

/// Save an etcd snapshot on the first controller and copy it to the hypervisor's backups
/// (checked whole by the step's verify); returns where it is.
pub(super) fn take_backup(
    ctx: &mut Ctx,
    cluster: &Cluster,
    title: &'static str,
) -> Result<std::path::PathBuf> {
    let step = steps::snapshot_etcd::SnapshotEtcd {
        stamp: super::stamp(),
    };
    let path = step.local_path(cluster);
    converge(
        ctx,
        cluster,
        Run {
            steps: vec![Arc::new(step)],
            dry_run: false,
            allow_missing_binaries: false,
            concurrency: 0,
            title,
        },
    )?;
    Ok(path)
}

fn backup(ctx: &mut Ctx, keep: usize, spec: &SpecArgs) -> Result<()> {
    let cluster = cluster_with_controllers(ctx, spec)?;
    let path = take_backup(ctx, &cluster, "etcd backup")?;
    let size = std::fs::metadata(&path)?.len();
    let pruned = backups::prune(&cluster, keep)?;
    ctx.printer.status(&format!(
        "etcd backup: {} ({:.1} MiB, checked whole); {} kept{}",
        path.display(),
        size as f64 / 1048576.0,
        backups::list(&cluster)?.len(),
        if pruned.is_empty() {
            String::new()
        } else {
            format!(", {} older removed (--keep {keep})", pruned.len())
        }
    ));
    Ok(())
}

fn schedule(ctx: &mut Ctx, calendar: &str, spec: &SpecArgs) -> Result<()> {
    let cluster = cluster_with_controllers(ctx, spec)?;
    if calendar.trim().is_empty() || calendar.contains(['\n', '\r']) {
        return Err(Failure::bad_input(format!("--schedule {calendar:?} is not a calendar"))
            .hint("give a systemd calendar expression: hourly, daily, weekly, or like \"*-*-* 02:00\"")
            .into());
    }
    let node = cluster.controllers().next().expect("checked").name.clone();
    converge(
        ctx,
        &cluster,
        Run {
            steps: vec![Arc::new(steps::schedule_etcd_backup::ScheduleEtcdBackup {
                calendar: calendar.trim().to_string(),
            })],
            dry_run: false,
            allow_missing_binaries: false,
            concurrency: 0,
            title: "etcd backup --schedule",
        },
    )?;
    ctx.printer.status(&format!(
        "etcd backup: {} on {node} saves a snapshot {calendar} to {} (the newest {} kept there); `kubicluster etcd backup` copies them here",
        steps::schedule_etcd_backup::TIMER,
        steps::snapshot_etcd::NODE_DIR,
        steps::snapshot_etcd::NODE_KEEP
    ));
    Ok(())
}

fn list(ctx: &mut Ctx, spec: &SpecArgs) -> Result<()> {
    let (cluster, _) = ctx.cluster(spec)?;
    let all = backups::list(&cluster)?;
    if all.is_empty() {
        ctx.printer.status(&format!(
            "no etcd snapshots in {} (`kubicluster etcd backup` makes one)",
            backups::dir(&cluster).display()
        ));
    }
    for p in all {
        let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        ctx.printer.result(&format!(
            "{}\t{:.1} MiB\n",
            p.display(),
            size as f64 / 1048576.0
        ));
    }
    Ok(())
}

fn restore(
    ctx: &mut Ctx,
    snapshot: &std::path::Path,
    yes: bool,
    dry_run: bool,
    spec: &SpecArgs,
) -> Result<()> {
    let cluster = cluster_with_controllers(ctx, spec)?;
    let data = std::fs::read(snapshot).map_err(|e| {
        Failure::bad_input(format!("{}: {e}", snapshot.display()))
            .hint("`kubicluster etcd list` shows the snapshots kept on the hypervisor")
    })?;
    if let Err(e) = backups::verify(&data) {
        return Err(Failure::bad_input(format!(
            "{} is not a whole etcd snapshot: {e:#}",
            snapshot.display()
        ))
        .hint("give a file from `kubicluster etcd backup` (or `etcdctl snapshot save`), unchanged")
        .into());
    }
    if !yes && !dry_run {
        return Err(Failure::bad_input(format!(
            "restoring {} replaces the whole cluster's state: every change since the snapshot is undone",
            snapshot.display()
        ))
        .hint("each controller's current etcd data is kept aside (/var/lib/etcd.restore-<time>); pass --yes to go ahead, or --dry-run to see the plan")
        .into());
    }
    let t = Instant::now();
    let since = time::OffsetDateTime::now_utc() - time::Duration::seconds(5);
    let stamp = super::stamp();
    let restore = steps::restore_etcd::RestoreEtcd {
        stamp: stamp.clone(),
        snapshot: Blob::new(data),
    };
    let aside = restore.aside();
    let mut run: Vec<Arc<dyn Step>> = vec![Arc::new(restore)];
    run.extend(steps::controllers(None));
    run.push(Arc::new(steps::restore_etcd::RestartAfterRestore { stamp }));
    converge(
        ctx,
        &cluster,
        Run {
            steps: run,
            dry_run,
            allow_missing_binaries: false,
            concurrency: 0,
            title: "etcd restore",
        },
    )?;
    if dry_run {
        return Ok(());
    }
    if let Some(api) = crate::kubeapi::Client::admin(&cluster)? {
        api.wait_ready(Duration::from_secs(300))?;
        if cluster.workers().next().is_some() {
            super::workers::wait_workers_ready(&cluster, Duration::from_secs(300), Some(since))?;
        }
    }
    ctx.printer.status(&format!(
        "etcd restore: the cluster's state is that of {} ({:.0} s; API ready, every worker Ready); the data before is kept at {aside} on each controller",
        snapshot.display(),
        t.elapsed().as_secs_f64()
    ));
    Ok(())
}
