//! `kubicluster snapshot create|list|revert|delete`: the whole cluster kept at one moment and
//! brought back to it. Create: an etcd snapshot first (kept with it), then every VM's disk
//! frozen while the running VMs are paused ([`vms::snapshot::freeze`]). Revert: every VM on a
//! fresh overlay over the snapshot's layer, started like `start` does, controllers first; the
//! disks of before are deleted only once every node is Ready again. Records: [`snapshots`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::{Ctx, connect, gate, reach_nodes};
use crate::cli::{OutputFormat, SnapshotAction, SnapshotArgs, SpecArgs};
use crate::error::Failure;
use crate::fsutil;
use crate::hypervisor::{Hypervisor, VmState};
use crate::snapshots::{self, Manifest};
use crate::spec::Cluster;
use crate::vms;

pub fn run(ctx: &mut Ctx, args: &SnapshotArgs) -> Result<()> {
    match &args.action {
        SnapshotAction::Create {
            snapshot: name,
            dry_run,
            spec,
        } => create(ctx, name, *dry_run, spec),
        SnapshotAction::List { output, spec } => list(ctx, *output, spec),
        SnapshotAction::Revert {
            snapshot: name,
            yes,
            dry_run,
            timeout,
            spec,
        } => revert(
            ctx,
            name,
            *yes,
            *dry_run,
            Duration::from_secs(*timeout),
            spec,
        ),
        SnapshotAction::Delete {
            snapshot: name,
            dry_run,
            spec,
        } => delete(ctx, name, *dry_run, spec),
    }
}

/// The named snapshot's record, or a clear error.
fn existing(cluster: &Cluster, name: &str) -> Result<Manifest> {
    snapshots::check_name(name)?;
    snapshots::load(cluster, name)?.ok_or_else(|| {
        Failure::bad_input(format!("cluster {} has no snapshot {name:?}", cluster.name))
            .hint("`kubicluster snapshot list` shows the snapshots")
            .into()
    })
}

fn create(ctx: &mut Ctx, name: &str, dry_run: bool, spec: &SpecArgs) -> Result<()> {
    snapshots::check_name(name)?;
    let (cluster, _) = ctx.cluster(spec)?;
    if snapshots::load(&cluster, name)?.is_some() {
        return Err(Failure::bad_input(format!(
            "cluster {} already has a snapshot {name:?}",
            cluster.name
        ))
        .hint(format!(
            "pick another name, or `kubicluster snapshot delete {name}` first"
        ))
        .into());
    }
    let hv = connect(&cluster)?;
    reach_nodes(&cluster)?;
    let _lock = super::lock(&cluster)?;
    let t = Instant::now();
    let layers = vms::snapshot::layers_to_freeze(&cluster, &hv)?;
    let controller_running = cluster
        .controllers()
        .any(|n| matches!(hv.domain(&n.name), Ok(Some(d)) if d.state == VmState::Running));
    let dir = snapshots::dir(&cluster, name);
    // etcd first: kept with the snapshot, a second way back for the cluster's state.
    let etcd = if !controller_running || !cluster.admin_kubeconfig().exists() {
        ctx.printer.status(
            "snapshot: no etcd snapshot (no controller running, or no cluster yet); the disks alone",
        );
        false
    } else if dry_run {
        ctx.printer.status(&format!(
            "snapshot: would save an etcd snapshot on the first controller and keep it as {}",
            dir.join(snapshots::ETCD_FILE).display()
        ));
        false
    } else {
        let path = super::etcd::take_backup(ctx, &cluster, "snapshot create")?;
        // Moved, not copied: it belongs to the snapshot, not to `etcd list`'s backups.
        fsutil::ensure_dir(&dir, fsutil::PRIVATE_DIR)?;
        std::fs::rename(&path, dir.join(snapshots::ETCD_FILE))?;
        true
    };
    let mut manifest = Manifest {
        name: name.to_string(),
        created: now_rfc3339(),
        complete: false,
        paused_ms: 0,
        etcd,
        layers,
    };
    if !dry_run {
        // Recorded before anything changes: an interrupted create shows as incomplete.
        snapshots::save(&cluster, &manifest)?;
    }
    let stamp = layer_stamp();
    let frozen = vms::snapshot::freeze(&cluster, &hv, &stamp, &mut gate(ctx, dry_run))?;
    if dry_run {
        ctx.printer
            .status("snapshot create: dry run, nothing changed");
        return Ok(());
    }
    manifest.complete = true;
    manifest.paused_ms = frozen.paused.as_millis() as u64;
    manifest.layers = frozen.layers;
    snapshots::save(&cluster, &manifest)?;
    ctx.printer.status(&format!(
        "snapshot {name}: {} VM disk(s) frozen{}, VMs paused {:.1} s; {:.0} s in all",
        manifest.layers.len(),
        if etcd { " after an etcd snapshot" } else { "" },
        frozen.paused.as_secs_f64(),
        t.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// The time part of new disk layers' names, to the millisecond: a snapshot and a revert in the
/// same second must not name their overlays alike.
fn layer_stamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!("{}.{:03}", super::stamp(), now.millisecond())
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// "5 min", "3 h", "2 d": how long ago `created` (RFC 3339) was.
fn age(created: &str) -> String {
    let Ok(t) =
        time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339)
    else {
        return "?".into();
    };
    let s = (time::OffsetDateTime::now_utc() - t).whole_seconds().max(0);
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s / 60),
        7200..172800 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86400),
    }
}

#[derive(serde::Serialize)]
struct Row {
    name: String,
    created: String,
    complete: bool,
    /// Bytes the snapshot's own disk layers take on the hypervisor.
    layer_bytes: u64,
    etcd: bool,
    paused_ms: u64,
}

fn list(ctx: &mut Ctx, output: OutputFormat, spec: &SpecArgs) -> Result<()> {
    let (cluster, _) = ctx.cluster(spec)?;
    let rows: Vec<Row> = snapshots::all(&cluster)?
        .into_iter()
        .map(|m| Row {
            layer_bytes: m
                .layers
                .values()
                .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
                .sum(),
            name: m.name,
            created: m.created,
            complete: m.complete,
            etcd: m.etcd,
            paused_ms: m.paused_ms,
        })
        .collect();
    if let Some(r) = snapshots::revert_in_progress(&cluster)? {
        ctx.printer.status(&format!(
            "a revert to {} did not finish: `kubicluster snapshot revert {} --yes` completes it (the disks of before are kept until then)",
            r.name, r.name
        ));
    }
    if output == OutputFormat::Json {
        ctx.printer
            .result(&format!("{}\n", serde_json::to_string_pretty(&rows)?));
        return Ok(());
    }
    if rows.is_empty() {
        ctx.printer.status(&format!(
            "cluster {} has no snapshots (`kubicluster snapshot create NAME` makes one)",
            cluster.name
        ));
        return Ok(());
    }
    let mut text = "NAME\tAGE\tLAYERS\tETCD\tSTATE\n".to_string();
    for r in rows {
        text.push_str(&format!(
            "{}\t{}\t{:.0} MiB\t{}\t{}\n",
            r.name,
            age(&r.created),
            r.layer_bytes as f64 / 1048576.0,
            if r.etcd { "kept" } else { "-" },
            if r.complete {
                "complete"
            } else {
                "incomplete (creation interrupted: delete it)"
            }
        ));
    }
    ctx.printer.result(&text);
    Ok(())
}

fn revert(
    ctx: &mut Ctx,
    name: &str,
    yes: bool,
    dry_run: bool,
    timeout: Duration,
    spec: &SpecArgs,
) -> Result<()> {
    let (cluster, _) = ctx.cluster(spec)?;
    let m = existing(&cluster, name)?;
    if !m.complete {
        return Err(Failure::bad_input(format!(
            "snapshot {name} is incomplete: its creation was interrupted"
        ))
        .hint(format!(
            "`kubicluster snapshot delete {name}`, then take a new one"
        ))
        .into());
    }
    if let Some(extra) = m.layers.keys().find(|n| cluster.node(n.as_str()).is_none()) {
        return Err(Failure::bad_input(format!(
            "snapshot {name} has node {extra}, which the cluster file no longer has"
        ))
        .hint("put the node back in the cluster file to revert to this snapshot")
        .into());
    }
    super::one_hypervisor(&cluster)?;
    let spread = super::hosts::spread(&cluster)?;
    let hv = &spread.hosts[0].2;
    let pool = &cluster.hypervisor.storage_pool;
    hv.refresh_pool(pool)?;
    let have: Vec<PathBuf> = hv.volumes(pool)?.into_iter().map(|v| v.path).collect();
    if let Some((node, gone)) = m.layers.iter().find(|(_, p)| !have.contains(p)) {
        return Err(Failure::new(format!(
            "snapshot {name}: the disk layer of {node} ({}) is gone",
            gone.display()
        ))
        .hint(format!(
            "the node was recreated or destroyed since; `kubicluster snapshot delete {name}`"
        ))
        .into());
    }
    if !yes && !dry_run {
        return Err(Failure::bad_input(format!(
            "reverting to {name} drops everything every node did since {}",
            m.created
        ))
        .hint("the disks of now are deleted once the revert succeeded; pass --yes to go ahead, or --dry-run to see the plan")
        .into());
    }
    reach_nodes(&cluster)?;
    let _lock = super::lock(&cluster)?;
    let t = Instant::now();
    let pending = snapshots::revert_in_progress(&cluster)?;
    let stamp = match &pending {
        Some(p) if p.name == name => p.stamp.clone(), // finish the interrupted one
        _ => layer_stamp(),
    };
    if !dry_run {
        let mut before: BTreeMap<String, PathBuf> = pending.map(|p| p.before).unwrap_or_default();
        for (d, disk) in vms::snapshot::current_disks(&cluster, hv)? {
            before.entry(d.name).or_insert(disk);
        }
        snapshots::begin_revert(
            &cluster,
            &snapshots::Revert {
                name: name.to_string(),
                stamp: stamp.clone(),
                before,
            },
        )?;
    }
    vms::snapshot::revert_disks(&cluster, hv, &m.layers, &stamp, &mut gate(ctx, dry_run))?;
    let stages = super::lifecycle::bring_up(ctx, &cluster, &spread, timeout, dry_run)?;
    if dry_run {
        ctx.printer
            .status("snapshot revert: dry run, nothing changed");
        return Ok(());
    }
    snapshots::end_revert(&cluster)?;
    let needed = snapshots::needed_layers(&cluster, None)?;
    let freed = vms::snapshot::collect_garbage(&cluster, hv, &needed, &mut gate(ctx, false))?;
    ctx.printer.status(&format!(
        "snapshot revert: cluster {} is at {name} ({}) again in {:.0} s ({}); {} disk layer(s) of before deleted",
        cluster.name,
        m.created,
        t.elapsed().as_secs_f64(),
        stages.join(", "),
        freed.len()
    ));
    Ok(())
}

fn delete(ctx: &mut Ctx, name: &str, dry_run: bool, spec: &SpecArgs) -> Result<()> {
    let (cluster, _) = ctx.cluster(spec)?;
    let m = existing(&cluster, name)?;
    let hv = connect(&cluster)?;
    let _lock = super::lock(&cluster)?;
    let needed = snapshots::needed_layers(&cluster, Some(name))?;
    let dir = snapshots::dir(&cluster, name);
    let freed = {
        let mut gate = gate(ctx, dry_run);
        gate.wet(
            crate::engine::Change::RemovePath {
                path: dir.display().to_string(),
                what: "the snapshot's record and etcd snapshot".into(),
            },
            || snapshots::forget(&cluster, name),
        )?;
        vms::snapshot::collect_garbage(&cluster, &hv, &needed, &mut gate)?
    };
    if dry_run {
        ctx.printer
            .status("snapshot delete: dry run, nothing changed");
        return Ok(());
    }
    let kept: Vec<&PathBuf> = m
        .layers
        .values()
        .filter(|p| {
            !freed
                .iter()
                .any(|(v, _)| p.file_name().and_then(|f| f.to_str()) == Some(v.as_str()))
        })
        .collect();
    let bytes: u64 = freed.iter().map(|(_, b)| b).sum();
    ctx.printer.status(&format!(
        "snapshot {name} deleted: {} disk layer(s) freed ({:.0} MiB){}",
        freed.len(),
        bytes as f64 / 1048576.0,
        if kept.is_empty() {
            String::new()
        } else {
            format!(
                "; {} kept because the VMs' disks (or later snapshots) build on them",
                kept.len()
            )
        }
    ));
    Ok(())
}
