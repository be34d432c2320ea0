//! Whole-cluster disk snapshots as qcow2 overlay chains, kept by kubicluster (no libvirt
//! snapshot metadata). A node's disk starts as `<node>.qcow2` over the template. Freezing it
//! for a snapshot switches the VM to a new overlay `<node>@<stamp>.qcow2` (libvirt's external
//! disk-only snapshot, live): the file it wrote to until then is never written again and is the
//! snapshot's layer. Reverting gives each VM a fresh overlay on that layer; layers are never
//! changed, so every snapshot stays revertable whichever one the cluster runs on. A layer is
//! deleted only when no VM's disk, no snapshot and no unfinished revert reaches it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::*;
use crate::engine::hv::{OnHost, on_host_error};

/// A volume that is one of `node`'s disk layers.
pub fn is_layer_of(node: &str, volume: &str) -> bool {
    volume == volume_name(node)
        || volume
            .strip_prefix(node)
            .and_then(|r| r.strip_prefix('@'))
            .is_some_and(|r| r.ends_with(".qcow2"))
}

/// The overlay a VM writes to after a snapshot or a revert made at `stamp`.
pub fn layer_name(node: &str, stamp: &str) -> String {
    format!("{node}@{stamp}.qcow2")
}

fn pool_dir(cluster: &Cluster, hv: &dyn Hypervisor) -> Result<PathBuf> {
    let pool = &cluster.hypervisor.storage_pool;
    Ok(hv
        .pool(pool)?
        .ok_or_else(|| {
            Failure::new(format!("storage pool {pool} does not exist"))
                .hint("`kubicluster up` makes it with the cluster's VMs")
        })?
        .path)
}

/// Each node's domain (ours) and the disk it writes to now.
pub fn current_disks(
    cluster: &Cluster,
    hv: &dyn Hypervisor,
) -> Result<Vec<(hypervisor::DomainInfo, PathBuf)>> {
    cluster
        .nodes
        .iter()
        .map(|n| {
            let d = own_domain(cluster, hv, &n.name)?;
            let disk = d
                .disk_path()
                .ok_or_else(|| anyhow::anyhow!("{}: its domain XML names no disk", n.name))?;
            Ok((d, disk))
        })
        .collect()
}

/// What [`freeze`] did.
#[derive(Debug, Default)]
pub struct Frozen {
    /// Node → the layer frozen (the disk it wrote to until now).
    pub layers: BTreeMap<String, PathBuf>,
    /// How long the running VMs were paused.
    pub paused: Duration,
}

/// The layers [`freeze`] would freeze: every node's current disk. Refuses a VM that is paused
/// or in any state but running and off.
pub fn layers_to_freeze(
    cluster: &Cluster,
    hv: &dyn Hypervisor,
) -> Result<BTreeMap<String, PathBuf>> {
    freezable(&current_disks(cluster, hv)?)
}

fn freezable(disks: &[(hypervisor::DomainInfo, PathBuf)]) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for (d, disk) in disks {
        if !matches!(d.state, VmState::Running | VmState::Off) {
            return Err(Failure::new(format!(
                "{}: the VM is {:?}, neither running nor off",
                d.name, d.state
            ))
            .hint("`kubicluster start` (or `stop`) the cluster first")
            .into());
        }
        out.insert(d.name.clone(), disk.clone());
    }
    Ok(out)
}

/// Freeze every VM's disk at one moment: pause the running VMs, switch each disk to a new
/// overlay, resume them (also after an error). Stopped VMs are switched as they are.
pub fn freeze(
    cluster: &Cluster,
    hv: &dyn Hypervisor,
    stamp: &str,
    gate: &mut Gate,
) -> Result<Frozen> {
    let host = OnHost {
        name: "",
        cluster,
        hv,
    };
    freeze_hosts(&[host], stamp, gate)
}

/// [`freeze`] over several hypervisors at one moment: the running VMs of every host are paused
/// before any disk is switched, and resumed after the last one (also after an error). Each
/// host's VMs get their overlays in its own pool; errors name the host when there are several.
pub fn freeze_hosts(hosts: &[OnHost], stamp: &str, gate: &mut Gate) -> Result<Frozen> {
    let several = hosts.len() > 1;
    let named = |h: &OnHost, e| on_host_error(several.then_some(h.name), e);
    let mut plan = Vec::new(); // (host, its pool's directory, its layers, its running VMs)
    for h in hosts {
        let prepared = (|| -> Result<_> {
            let dir = pool_dir(h.cluster, h.hv)?;
            let disks = current_disks(h.cluster, h.hv)?;
            let layers = freezable(&disks)?;
            let running: Vec<String> = disks
                .into_iter()
                .filter(|(d, _)| d.state == VmState::Running)
                .map(|(d, _)| d.name)
                .collect();
            Ok((dir, layers, running))
        })();
        let (dir, layers, running) = prepared.map_err(|e| named(h, e))?;
        plan.push((h, dir, layers, running));
    }
    let t = Instant::now();
    let mut paused: Vec<(&OnHost, &String)> = Vec::new();
    let mut switch = || -> Result<()> {
        for (h, _, _, running) in &plan {
            gate.on_host(several.then_some(h.name));
            for name in running {
                let r = gate.wet(vm_change(name, VmOp::Pause), || h.hv.suspend_domain(name));
                if r.map_err(|e| named(h, e))? {
                    paused.push((h, name));
                }
            }
        }
        for (h, dir, layers, _) in &plan {
            gate.on_host(several.then_some(h.name));
            for name in layers.keys() {
                let top = dir.join(layer_name(name, stamp));
                let op = VmOp::FreezeDisk {
                    overlay: top.display().to_string(),
                };
                gate.wet(vm_change(name, op), || h.hv.snapshot_disk(name, &top))
                    .map_err(|e| named(h, e))?;
            }
        }
        Ok(())
    };
    let result = switch();
    let mut resumed = Ok(());
    for (h, name) in &paused {
        gate.on_host(several.then_some(h.name));
        let r = gate.wet(vm_change(name, VmOp::Resume { why: None }), || {
            h.hv.resume_domain(name)
        });
        if let Err(e) = r
            && resumed.is_ok()
        {
            resumed = Err(named(h, e));
        }
    }
    let paused_for = t.elapsed();
    gate.on_host(None);
    result?;
    resumed?;
    let mut layers = BTreeMap::new();
    for (h, _, host_layers, _) in plan {
        if !gate.dry_run() {
            // libvirt made the overlays outside its storage API: let the pool see them.
            h.hv.refresh_pool(&h.cluster.hypervisor.storage_pool)
                .map_err(|e| named(h, e))?;
        }
        layers.extend(host_layers);
    }
    Ok(Frozen {
        layers,
        paused: paused_for,
    })
}

/// Put every VM on a new overlay over its layer in `layers` (the snapshot's), powered off: what
/// it wrote since is dropped from its disk (the files stay until [`collect_garbage`]). A VM already on
/// this revert's overlay (a re-run with the same `stamp`) is left alone. When one VM fails, the
/// VMs changed before it get their disks of before back. Returns the disks of before.
pub fn revert_disks(
    cluster: &Cluster,
    hv: &dyn Hypervisor,
    layers: &BTreeMap<String, PathBuf>,
    stamp: &str,
    gate: &mut Gate,
) -> Result<BTreeMap<String, PathBuf>> {
    let pool = cluster.hypervisor.storage_pool.clone();
    let mut before = BTreeMap::new();
    let mut changed: Vec<hypervisor::DomainInfo> = Vec::new();
    let volumes = hv.volumes(&pool)?;
    for (d, disk) in current_disks(cluster, hv)? {
        let layer = layers.get(&d.name).ok_or_else(|| {
            Failure::new(format!(
                "{}: not in the snapshot (added after it was taken)",
                d.name
            ))
            .hint("remove the node (`kubicluster remove`) or take a new snapshot")
        })?;
        let top = layer_name(&d.name, stamp);
        let on_top = disk.file_name().and_then(|f| f.to_str()) == Some(top.as_str());
        let top_volume = volumes.iter().find(|v| v.name == top);
        if on_top && top_volume.and_then(|v| v.backing.as_ref()) == Some(layer) {
            continue;
        }
        before.insert(d.name.clone(), disk.clone());
        let op = VmOp::RevertDisk {
            overlay: top.clone(),
        };
        let r = gate.wet(vm_change(&d.name, op), || {
            forget_verified(cluster, &d.name);
            hv.stop_domain(&d.name)?;
            if top_volume.is_some() {
                // Never a VM's disk: only what a killed run of this revert left unused.
                anyhow::ensure!(
                    !on_top,
                    "{top} is the VM's disk already, not over the snapshot's layer: not replaced"
                );
                hv.delete_volume(&pool, &top)?;
            }
            let capacity = disk_bytes(cluster).max(
                volumes
                    .iter()
                    .find(|v| &v.path == layer)
                    .map(|v| v.capacity)
                    .ok_or_else(|| anyhow::anyhow!("{}: the layer is gone", layer.display()))?,
            );
            let vol = hv.create_volume(
                &pool,
                &hypervisor::overlay_volume_xml(&top, capacity, layer),
            )?;
            hv.define_domain(&d.with_disk(&vol.path)?)
        });
        match r {
            Ok(_) => changed.push(d),
            Err(e) => {
                for old in &changed {
                    if let Err(back) = hv.define_domain(&old.xml) {
                        tracing::error!(node = %old.name, "could not put its disk of before back: {back:#}");
                    }
                }
                return Err(e.context(format!(
                    "revert stopped at {}; the VMs changed before it have their disks of before again",
                    d.name
                )));
            }
        }
    }
    Ok(before)
}

/// Delete the cluster's disk layers that nothing reaches: not a VM's disk, not `needed` (the
/// snapshots' layers and the disks of an unfinished revert), nor under any of them. Returns
/// each deleted volume with its size on disk.
pub fn collect_garbage(
    cluster: &Cluster,
    hv: &dyn Hypervisor,
    needed: &[PathBuf],
    gate: &mut Gate,
) -> Result<Vec<(String, u64)>> {
    let pool = &cluster.hypervisor.storage_pool;
    if hv.pool(pool)?.is_none() {
        return Ok(Vec::new());
    }
    hv.refresh_pool(pool)?;
    let volumes = hv.volumes(pool)?;
    let by_path: BTreeMap<&PathBuf, &VolumeInfo> = volumes.iter().map(|v| (&v.path, v)).collect();
    let mut roots: Vec<PathBuf> = needed.to_vec();
    for n in &cluster.nodes {
        if let Some(d) = hv.domain(&n.name)?
            && let Some(disk) = d.disk_path()
        {
            roots.push(disk);
        }
    }
    let mut reached = BTreeSet::new();
    for root in roots {
        let mut at = Some(root);
        while let Some(p) = at {
            if !reached.insert(p.clone()) {
                break;
            }
            at = by_path.get(&p).and_then(|v| v.backing.clone());
        }
    }
    let mut deleted = Vec::new();
    for v in &volumes {
        let ours = cluster.nodes.iter().any(|n| is_layer_of(&n.name, &v.name));
        if !ours || reached.contains(&v.path) {
            continue;
        }
        let size = v.allocation;
        let change = Change::DeleteLayer {
            volume: v.name.clone(),
            mib: size >> 20,
        };
        if gate.wet(change, || hv.delete_volume(pool, &v.name))? {
            deleted.push((v.name.clone(), size));
        }
    }
    Ok(deleted)
}
