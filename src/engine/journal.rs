//! The run journal (`<workDir>/<cluster>/journal.json`): which command ran, which steps
//! finished and where a run stopped (failure or Ctrl-C). The next run reads it and says it goes
//! on from there; every step re-reads its nodes anyway, so what was done is re-verified, not
//! trusted. Written atomically after every step.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::fsutil;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    pub command: String,
    pub pid: u32,
    pub done: Vec<String>,
    /// The step that failed or was interrupted, and why.
    pub stopped_at: Option<String>,
    pub reason: Option<String>,
    pub finished: bool,
}

pub fn path(cluster_dir: &Path) -> PathBuf {
    cluster_dir.join("journal.json")
}

/// The previous run's journal, if it did not finish.
pub fn unfinished(cluster_dir: &Path) -> Result<Option<Journal>> {
    let p = path(cluster_dir);
    let Some(bytes) = fsutil::read_optional(&p)? else {
        return Ok(None);
    };
    let j: Journal = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "read run journal {} (delete it to start afresh)",
            p.display()
        )
    })?;
    Ok((!j.finished).then_some(j))
}

pub fn write(cluster_dir: &Path, j: &Journal) -> Result<()> {
    fsutil::ensure_dir(cluster_dir, fsutil::PRIVATE_DIR)?;
    let text = serde_json::to_vec_pretty(j).expect("journal serializes");
    fsutil::write_atomic(&path(cluster_dir), &text, fsutil::PUBLIC)
}
