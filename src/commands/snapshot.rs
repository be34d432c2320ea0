//! `kubicluster snapshot create|list|revert|delete`: the whole cluster kept at one moment and
//! brought back to it. Create: an etcd snapshot first (kept with it), then every VM's disk
//! frozen while the running VMs are paused ([`vms::snapshot::freeze`]). Revert: every VM on a
//! fresh overlay over the snapshot's layer, started like `start` does, controllers first; the
//! disks of before are deleted only once every node is Ready again. Records: [`snapshots`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::hosts::{self, Spread};
use super::{Ctx, gate};
use crate::cli::{OutputFormat, SnapshotAction, SnapshotArgs, SpecArgs};
use crate::error::Failure;
use crate::fsutil;
use crate::hypervisor::VmState;
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
    let spread = hosts::spread(&cluster)?;
    hosts::reach_all(&cluster, &spread)?;
    let _lock = super::lock(&cluster)?;
    let t = Instant::now();
    let mut layers = BTreeMap::new();
    let mut controller_running = false;
    for h in spread.on_hosts() {
        layers.extend(
            vms::snapshot::layers_to_freeze(h.cluster, h.hv)
                .map_err(|e| on_host(&spread, h.name, e))?,
        );
        controller_running |= h
            .cluster
            .controllers()
            .any(|n| matches!(h.hv.domain(&n.name), Ok(Some(d)) if d.state == VmState::Running));
    }
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
    let frozen = vms::snapshot::freeze_hosts(&spread.on_hosts(), &stamp, &mut gate(ctx, dry_run))?;
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
    /// Bytes the snapshot's own disk layers take on the hypervisors (unknown when one does
    /// not answer).
    layer_bytes: Option<u64>,
    etcd: bool,
    paused_ms: u64,
}

fn list(ctx: &mut Ctx, output: OutputFormat, spec: &SpecArgs) -> Result<()> {
    let (cluster, _) = ctx.cluster(spec)?;
    // "?" rather than a wrong size when a hypervisor does not answer (a stopped lab, a host down).
    let sizes = hosts::spread(&cluster)
        .ok()
        .and_then(|spread| node_volumes(&spread).ok());
    let rows: Vec<Row> = snapshots::all(&cluster)?
        .into_iter()
        .map(|m| Row {
            layer_bytes: sizes.as_ref().map(|sizes| {
                m.layers
                    .iter()
                    .filter_map(|(node, p)| sizes.get(&(node.clone(), p.clone())))
                    .sum()
            }),
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
            "{}\t{}\t{}\t{}\t{}\n",
            r.name,
            age(&r.created),
            r.layer_bytes
                .map(|b| format!("{:.0} MiB", b as f64 / 1048576.0))
                .unwrap_or_else(|| "?".into()),
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
    let spread = hosts::spread(&cluster)?;
    let have = node_volumes(&spread)?;
    if let Some((node, gone)) = m
        .layers
        .iter()
        .find(|(n, p)| !have.contains_key(&((*n).clone(), (*p).clone())))
    {
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
    hosts::reach_all(&cluster, &spread)?;
    let _lock = super::lock(&cluster)?;
    let t = Instant::now();
    let pending = snapshots::revert_in_progress(&cluster)?;
    let stamp = match &pending {
        Some(p) if p.name == name => p.stamp.clone(), // finish the interrupted one
        _ => layer_stamp(),
    };
    if !dry_run {
        let mut before: BTreeMap<String, PathBuf> = pending.map(|p| p.before).unwrap_or_default();
        for h in spread.on_hosts() {
            let disks = vms::snapshot::current_disks(h.cluster, h.hv)
                .map_err(|e| on_host(&spread, h.name, e))?;
            for (d, disk) in disks {
                before.entry(d.name).or_insert(disk);
            }
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
    // One host after the other; after a failure on one, the record of this revert lets
    // `snapshot revert NAME --yes` finish every host.
    for h in spread.on_hosts() {
        let mut gate = super::host_gate(ctx, dry_run, &spread, h.name);
        vms::snapshot::revert_disks(h.cluster, h.hv, &m.layers, &stamp, &mut gate)
            .map_err(|e| on_host(&spread, h.name, e))?;
    }
    let stages = super::lifecycle::bring_up(ctx, &cluster, &spread, timeout, dry_run)?;
    if dry_run {
        ctx.printer
            .status("snapshot revert: dry run, nothing changed");
        return Ok(());
    }
    snapshots::end_revert(&cluster)?;
    let needed = snapshots::needed_layers(&cluster, None)?;
    let freed = collect_garbage(ctx, &spread, &needed, false)?;
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
    let spread = hosts::spread(&cluster)?;
    let _lock = super::lock(&cluster)?;
    let needed = snapshots::needed_layers(&cluster, Some(name))?;
    let dir = snapshots::dir(&cluster, name);
    gate(ctx, dry_run).wet(
        crate::engine::Change::RemovePath {
            path: dir.display().to_string(),
            what: "the snapshot's record and etcd snapshot".into(),
        },
        || snapshots::forget(&cluster, name),
    )?;
    let freed = collect_garbage(ctx, &spread, &needed, dry_run)?;
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

/// `e` named by its hypervisor when the cluster has several.
fn on_host(spread: &Spread, host: &str, e: anyhow::Error) -> anyhow::Error {
    crate::engine::hv::on_host_error(spread.name(host), e)
}

/// [`vms::snapshot::collect_garbage`] on every hypervisor: each deletes its own nodes' layers.
fn collect_garbage(
    ctx: &mut Ctx,
    spread: &Spread,
    needed: &[PathBuf],
    dry_run: bool,
) -> Result<Vec<(String, u64)>> {
    let mut freed = Vec::new();
    for h in spread.on_hosts() {
        let mut gate = super::host_gate(ctx, dry_run, spread, h.name);
        freed.extend(
            vms::snapshot::collect_garbage(h.cluster, h.hv, needed, &mut gate)
                .map_err(|e| on_host(spread, h.name, e))?,
        );
    }
    Ok(freed)
}

/// Every volume of each hypervisor's pool, keyed by (node, path) for each node placed there
/// (a node's layer counts only on the hypervisor its VM is on), with the bytes it takes there.
fn node_volumes(spread: &Spread) -> Result<BTreeMap<(String, PathBuf), u64>> {
    let mut out = BTreeMap::new();
    for h in spread.on_hosts() {
        let pool = &h.cluster.hypervisor.storage_pool;
        let read = || -> Result<Vec<crate::hypervisor::VolumeInfo>> {
            if h.hv.pool(pool)?.is_none() {
                return Ok(Vec::new());
            }
            h.hv.refresh_pool(pool)?;
            h.hv.volumes(pool)
        };
        let volumes = read().map_err(|e| on_host(spread, h.name, e))?;
        for n in &h.cluster.nodes {
            for v in &volumes {
                out.insert((n.name.clone(), v.path.clone()), v.allocation);
            }
        }
    }
    Ok(out)
}
