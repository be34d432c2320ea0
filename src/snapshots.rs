//! Whole-cluster snapshots as kubicluster records them on the hypervisor:
//! `<workDir>/<cluster>/snapshots/<name>/snapshot.json` (0600 in a 0700 directory) names, per
//! node, the qcow2 layer that was frozen at that moment, next to the etcd snapshot taken just
//! before (`etcd.db`). The disk layers themselves live in the storage pool ([`crate::vms::snapshot`]).
//!
//! A revert in progress is recorded in `snapshots/.revert.json` (which snapshot, its stamp, and
//! the disks the VMs had before), so a killed revert is finished by the next one and the disks
//! of before are never deleted until a revert has succeeded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::error::Failure;
use crate::fsutil;
use crate::spec::Cluster;

const MANIFEST: &str = "snapshot.json";
const REVERT: &str = ".revert.json";
/// The etcd snapshot kept with a cluster snapshot.
pub const ETCD_FILE: &str = "etcd.db";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    /// RFC 3339, UTC.
    pub created: String,
    /// False while the disks are being frozen (or when that was interrupted): not revertable.
    pub complete: bool,
    /// Milliseconds the running VMs were paused.
    pub paused_ms: u64,
    /// Whether `etcd.db` (an etcd snapshot from just before) is kept with it.
    pub etcd: bool,
    /// Node → the disk layer frozen for this snapshot.
    pub layers: BTreeMap<String, PathBuf>,
}

/// A revert under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revert {
    pub name: String,
    pub stamp: String,
    /// Node → the disk it wrote to before the revert (kept until the revert succeeded).
    pub before: BTreeMap<String, PathBuf>,
}

pub fn root(cluster: &Cluster) -> PathBuf {
    cluster.cluster_dir().join("snapshots")
}

pub fn dir(cluster: &Cluster, name: &str) -> PathBuf {
    root(cluster).join(name)
}

/// Snapshot names: what a file name, a volume name and a shell word can all carry.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        return Ok(());
    }
    Err(
        Failure::bad_input(format!("{name:?} is not a snapshot name"))
            .hint("use up to 40 letters, digits, '-', '_' or '.', starting with a letter or digit")
            .into(),
    )
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    fsutil::ensure_dir(path.parent().expect("has a parent"), fsutil::PRIVATE_DIR)?;
    let text = serde_json::to_vec_pretty(value)?;
    fsutil::write_atomic(path, &text, fsutil::SECRET)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    match fsutil::read_optional(path)? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .with_context(|| format!("{}: not a kubicluster record", path.display())),
    }
}

pub fn save(cluster: &Cluster, m: &Manifest) -> Result<()> {
    write_json(&dir(cluster, &m.name).join(MANIFEST), m)
}

pub fn load(cluster: &Cluster, name: &str) -> Result<Option<Manifest>> {
    read_json(&dir(cluster, name).join(MANIFEST))
}

/// Every snapshot recorded, oldest first.
pub fn all(cluster: &Cluster) -> Result<Vec<Manifest>> {
    let rd = match std::fs::read_dir(root(cluster)) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !e.path().is_dir() {
            continue;
        }
        if let Some(m) = read_json::<Manifest>(&e.path().join(MANIFEST))? {
            out.push(m);
        }
    }
    out.sort_by(|a, b| (&a.created, &a.name).cmp(&(&b.created, &b.name)));
    Ok(out)
}

/// Remove a snapshot's record (its etcd snapshot included); its disk layers are the pool's.
pub fn forget(cluster: &Cluster, name: &str) -> Result<()> {
    let d = dir(cluster, name);
    if d.exists() {
        std::fs::remove_dir_all(&d).with_context(|| format!("remove {}", d.display()))?;
    }
    Ok(())
}

pub fn revert_in_progress(cluster: &Cluster) -> Result<Option<Revert>> {
    read_json(&root(cluster).join(REVERT))
}

pub fn begin_revert(cluster: &Cluster, r: &Revert) -> Result<()> {
    write_json(&root(cluster).join(REVERT), r)
}

pub fn end_revert(cluster: &Cluster) -> Result<()> {
    match std::fs::remove_file(root(cluster).join(REVERT)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Every disk layer a record still needs: each snapshot's (but `except`'s), and the disks of
/// before a revert that has not finished.
pub fn needed_layers(cluster: &Cluster, except: Option<&str>) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = all(cluster)?
        .into_iter()
        .filter(|m| Some(m.name.as_str()) != except)
        .flat_map(|m| m.layers.into_values())
        .collect();
    if let Some(r) = revert_in_progress(cluster)? {
        out.extend(r.before.into_values());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for ok in ["before-upgrade", "s1", "2026.12.04_a"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "a/b", "a b", "..", "x@y", &"a".repeat(41)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn records_round_trip_and_count_as_needed() {
        let (_tmp, cluster, _) = crate::vms::tests::setup();
        assert!(all(&cluster).unwrap().is_empty());
        let m = Manifest {
            name: "s1".into(),
            created: "2026-12-04T21:00:00Z".into(),
            complete: true,
            paused_ms: 120,
            etcd: true,
            layers: [("n1".to_string(), PathBuf::from("/pool/n1.qcow2"))].into(),
        };
        save(&cluster, &m).unwrap();
        assert_eq!(load(&cluster, "s1").unwrap(), Some(m.clone()));
        let mode = std::fs::metadata(dir(&cluster, "s1").join(MANIFEST)).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );
        begin_revert(
            &cluster,
            &Revert {
                name: "s1".into(),
                stamp: "x".into(),
                before: [("n1".to_string(), PathBuf::from("/pool/n1@a.qcow2"))].into(),
            },
        )
        .unwrap();
        // The revert record is not a snapshot, but its disks are needed.
        assert_eq!(all(&cluster).unwrap(), vec![m]);
        assert_eq!(
            needed_layers(&cluster, Some("s1")).unwrap(),
            vec![PathBuf::from("/pool/n1@a.qcow2")]
        );
        assert_eq!(
            needed_layers(&cluster, None).unwrap(),
            vec![
                PathBuf::from("/pool/n1.qcow2"),
                PathBuf::from("/pool/n1@a.qcow2")
            ]
        );
        end_revert(&cluster).unwrap();
        forget(&cluster, "s1").unwrap();
        assert!(needed_layers(&cluster, None).unwrap().is_empty());
    }
}
