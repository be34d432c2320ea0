//! The per-run DEBUG log file: `<workDir>/<cluster>/logs/<time>-<command>.log`, the last 20 kept.
//! Every tracing event at debug level and above goes there (commands run on nodes, with secrets
//! redacted by [`crate::host::Cmd`]'s Display), whatever `-d` says for stderr. The file is
//! opened once the cluster is known; until then events go only to stderr.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Result;

use crate::fsutil;

static FILE: Mutex<Option<(File, PathBuf)>> = Mutex::new(None);

/// How many run logs are kept per cluster.
pub const KEEP: usize = 20;

/// A `MakeWriter` target for tracing-subscriber: writes to the open run log, if any.
pub struct Writer;

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some((f, _)) = FILE.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            f.write_all(buf)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if let Some((f, _)) = FILE.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            f.flush()?;
        }
        Ok(())
    }
}

/// Open this run's log under `cluster_dir/logs` and prune old ones. Returns its path. One log
/// per process: a second call (`up`'s node phase after its hypervisor phase) keeps the first.
pub fn open(cluster_dir: &Path, command: &str) -> Result<PathBuf> {
    if let Some(open) = current()
        && open.starts_with(cluster_dir)
    {
        return Ok(open);
    }
    let dir = cluster_dir.join("logs");
    fsutil::ensure_dir(&dir, fsutil::PRIVATE_DIR)?;
    let now = time::OffsetDateTime::now_utc();
    let name = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}-{}-{command}.log",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        std::process::id()
    );
    let path = dir.join(name);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    *FILE.lock().unwrap_or_else(|p| p.into_inner()) = Some((f, path.clone()));
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    if logs.len() > KEEP {
        for old in &logs[..logs.len() - KEEP] {
            let _ = std::fs::remove_file(old);
        }
    }
    Ok(path)
}

/// The open run log, for messages.
pub fn current() -> Option<PathBuf> {
    FILE.lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|(_, p)| p.clone())
}
