//! etcd snapshots kept on the hypervisor (`<workDir>/<cluster>/backups/etcd-<stamp>.db`, 0600):
//! checked whole before they are kept or restored, listed newest first, pruned to a count.
//!
//! A snapshot from `etcdctl snapshot save` is etcd's bbolt database followed by the SHA-256 of
//! everything before it (what `etcdutl snapshot restore` checks); both are checked here, so a
//! truncated copy or another file is refused before anything on a node is touched.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use sha2::{Digest, Sha256};

use crate::spec::Cluster;

/// bbolt's magic number, in its meta page (page header of 16 bytes, then the magic).
const BOLT_MAGIC: u32 = 0xED0C_DAED;
const HASH_LEN: usize = 32;

/// Check that `data` is a whole etcd snapshot; returns the database's size in bytes.
pub fn verify(data: &[u8]) -> Result<usize> {
    if data.len() < 4096 + HASH_LEN {
        bail!("{} bytes: too small for an etcd snapshot", data.len());
    }
    let magic = u32::from_le_bytes(data[16..20].try_into().expect("4 bytes"));
    if magic != BOLT_MAGIC {
        bail!("not an etcd (bbolt) database: magic {magic:#x}");
    }
    let (db, hash) = data.split_at(data.len() - HASH_LEN);
    if Sha256::digest(db).as_slice() != hash {
        bail!("its SHA-256 trailer does not match: the file is truncated or changed");
    }
    Ok(db.len())
}

pub fn dir(cluster: &Cluster) -> PathBuf {
    cluster.cluster_dir().join("backups")
}

/// The cluster's etcd snapshots, newest first (their names sort by time).
pub fn list(cluster: &Cluster) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir(cluster)) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_snapshot_name(p))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    out.sort();
    out.reverse();
    Ok(out)
}

fn is_snapshot_name(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("etcd-") && n.ends_with(".db"))
}

/// Remove all but the `keep` newest snapshots; returns what was removed.
pub fn prune(cluster: &Cluster, keep: usize) -> Result<Vec<PathBuf>> {
    let mut gone = Vec::new();
    for p in list(cluster)?.into_iter().skip(keep) {
        std::fs::remove_file(&p)?;
        gone.push(p);
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal "snapshot": a page with bbolt's magic, then its SHA-256.
    fn fake_snapshot() -> Vec<u8> {
        let mut db = vec![0u8; 8192];
        db[16..20].copy_from_slice(&BOLT_MAGIC.to_le_bytes());
        let hash = Sha256::digest(&db);
        db.extend_from_slice(&hash);
        db
    }

    #[test]
    fn a_whole_snapshot_passes_and_a_damaged_one_is_refused() {
        let good = fake_snapshot();
        assert_eq!(verify(&good).unwrap(), 8192);
        let truncated = &good[..good.len() - 1];
        assert!(
            verify(truncated)
                .unwrap_err()
                .to_string()
                .contains("trailer")
        );
        let mut flipped = good.clone();
        flipped[100] ^= 1;
        assert!(
            verify(&flipped)
                .unwrap_err()
                .to_string()
                .contains("trailer")
        );
        let mut other = good.clone();
        other[16] = 0;
        assert!(verify(&other).unwrap_err().to_string().contains("bbolt"));
        assert!(
            verify(b"short")
                .unwrap_err()
                .to_string()
                .contains("too small")
        );
    }

    #[test]
    fn prune_keeps_the_newest() {
        let tmp = tempfile::tempdir().unwrap();
        let ov = crate::spec::Overrides {
            work_dir: Some(tmp.path().display().to_string()),
            ..Default::default()
        };
        let c = crate::spec::resolve(None, &ov, &|_| None).unwrap().0;
        let d = dir(&c);
        std::fs::create_dir_all(&d).unwrap();
        for s in ["20261201T000000", "20261203T000000", "20261202T000000"] {
            std::fs::write(d.join(format!("etcd-{s}.db")), b"x").unwrap();
        }
        std::fs::write(d.join("notes.txt"), b"mine").unwrap();
        let gone = prune(&c, 2).unwrap();
        assert_eq!(gone, vec![d.join("etcd-20261201T000000.db")]);
        let left: Vec<_> = list(&c).unwrap();
        assert_eq!(
            left,
            vec![
                d.join("etcd-20261203T000000.db"),
                d.join("etcd-20261202T000000.db")
            ]
        );
        assert!(d.join("notes.txt").exists(), "other files are left alone");
    }
}
