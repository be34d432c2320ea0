//! File-system helpers with the guarantees kubicluster promises: writes are atomic (temp file in
//! the same directory + fsync + rename), files get an exact mode from the moment they exist
//! (secrets are never briefly world-readable), owned directories are 0700, and a lock file stops
//! two runs on one cluster from interleaving.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Mode for private keys, kubeconfigs and the encryption config.
pub const SECRET: u32 = 0o600;
/// Mode for certificates and other public files.
pub const PUBLIC: u32 = 0o644;
/// Mode for directories kubicluster owns.
pub const PRIVATE_DIR: u32 = 0o700;

/// Create `dir` (and parents) and set it to `mode`.
pub fn ensure_dir(dir: &Path, mode: u32) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("create directory {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .with_context(|| format!("set mode {mode:o} on {}", dir.display()))
}

/// Write `data` to `path` atomically with exactly `mode`.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have narrowed the mode; set it exactly.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("write {}", path.display()))
}

/// Read a file if it exists.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

/// Are we root? (The owner of /proc/self is the effective user.)
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Is `program` on PATH (or in /usr/sbin, /sbin, which root's PATH may lack)?
pub fn find_program(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .any(|d| d.join(program).is_file())
}

/// An exclusive lock on `<dir>/.lock`, held until dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    pub path: PathBuf,
}

/// Take the lock or fail at once, naming the lock file.
pub fn lock_dir(dir: &Path) -> Result<DirLock> {
    let path = dir.join(".lock");
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(SECRET)
        .open(&path)
        .with_context(|| format!("open lock file {}", path.display()))?;
    // A short grace period: a lock just released can linger for a moment in a child process
    // that is between fork and exec.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(1000);
    loop {
        match file.try_lock() {
            Ok(()) => {
                // Say who holds it, for the run that finds it taken.
                let mut f = &file;
                let _ = f.set_len(0);
                let _ = writeln!(
                    f,
                    "pid {} ({})",
                    std::process::id(),
                    std::env::args().collect::<Vec<_>>().join(" ")
                );
                return Ok(DirLock { _file: file, path });
            }
            Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&path).unwrap_or_default();
                anyhow::bail!(
                    "another kubicluster run holds {}{} (wait for it to finish)",
                    path.display(),
                    match holder.trim() {
                        "" => String::new(),
                        h => format!(": {h}"),
                    }
                )
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("lock {}", path.display()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_atomically_with_exact_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k.pem");
        write_atomic(&p, b"one", SECRET).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        write_atomic(&p, b"two", PUBLIC).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        // no temp files left behind
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn second_lock_fails_while_first_is_held() {
        let d = tempfile::tempdir().unwrap();
        let first = lock_dir(d.path()).unwrap();
        let err = lock_dir(d.path()).unwrap_err().to_string();
        assert!(err.contains("another kubicluster run holds"), "{err}");
        drop(first);
        lock_dir(d.path()).unwrap();
    }
}
