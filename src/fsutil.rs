//! File-system helpers with the guarantees kubicluster promises: writes are atomic (temp file in
//! the same directory + fsync + rename), files get an exact mode from the moment they exist
//! (secrets are never briefly world-readable), directories it creates are 0700 while those it did
//! not create keep their mode, writes through a symbolic link update its target, and a lock file stops
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

/// Make sure `dir` exists. The directories this creates (it and any missing parents) get
/// exactly `mode`; a directory that already exists is left as it is — kubicluster never changes
/// the mode of a directory it did not create (`~/.kube`, `/tmp`, the user's output directory).
/// A path that exists but is not a directory (a file, a dangling link) is an error saying so.
pub fn ensure_dir(dir: &Path, mode: u32) -> Result<()> {
    let mut missing = Vec::new();
    let mut p = dir;
    loop {
        match fs::metadata(p) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => anyhow::bail!("{} exists and is not a directory", p.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if fs::symlink_metadata(p).is_ok() {
                    anyhow::bail!(
                        "{} is a symbolic link to nothing (a dangling link)",
                        p.display()
                    );
                }
                missing.push(p);
                match p.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => p = parent,
                    _ => break,
                }
            }
            Err(e) => return Err(e).with_context(|| format!("inspect {}", p.display())),
        }
    }
    for d in missing.into_iter().rev() {
        match fs::create_dir(d) {
            Ok(()) => fs::set_permissions(d, fs::Permissions::from_mode(mode))
                .with_context(|| format!("set mode {mode:o} on {}", d.display()))?,
            // Made by someone else in the meantime: theirs, left alone.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => {
                return Err(e).with_context(|| format!("create directory {}", d.display()));
            }
        }
    }
    Ok(())
}

/// Where a write to `path` lands: a symbolic link is followed (to its final target, which may
/// not exist yet), so writing through a link updates the file it points at and keeps the link.
pub fn write_target(path: &Path) -> Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = fs::read_link(&p).with_context(|| format!("read link {}", p.display()))?;
                p = match p.parent() {
                    Some(dir) if to.is_relative() => dir.join(to),
                    _ => to,
                };
            }
            Ok(m) if m.is_dir() => anyhow::bail!("{} is a directory", p.display()),
            _ => return Ok(p),
        }
    }
    anyhow::bail!("{}: too many levels of symbolic links", path.display())
}

/// Write `data` to `path` atomically with exactly `mode`.
/// A symbolic link is followed: its target is replaced, the link stays.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let target = write_target(path)?;
    let path = target.as_path();
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    // Unique per write: two threads may write the same file (the last rename wins, whole).
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
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

    #[test]
    fn existing_directories_keep_their_mode_new_ones_get_it() {
        let d = tempfile::tempdir().unwrap();
        let theirs = d.path().join("theirs");
        fs::create_dir(&theirs).unwrap();
        fs::set_permissions(&theirs, fs::Permissions::from_mode(0o1777)).unwrap();
        ensure_dir(&theirs.join("a/b"), PRIVATE_DIR).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&theirs), 0o1777, "sticky bit and mode untouched");
        assert_eq!(mode(&theirs.join("a")), 0o700);
        assert_eq!(mode(&theirs.join("a/b")), 0o700);
        ensure_dir(&theirs, PRIVATE_DIR).unwrap();
        assert_eq!(mode(&theirs), 0o1777);
        // a file, a dangling link: said so
        fs::write(d.path().join("f"), b"x").unwrap();
        let e = ensure_dir(&d.path().join("f"), PRIVATE_DIR).unwrap_err();
        assert!(
            e.to_string().contains("exists and is not a directory"),
            "{e}"
        );
        std::os::unix::fs::symlink(d.path().join("nowhere"), d.path().join("dangling")).unwrap();
        let e = ensure_dir(&d.path().join("dangling"), PRIVATE_DIR).unwrap_err();
        assert!(e.to_string().contains("dangling link"), "{e}");
    }

    #[test]
    fn a_write_through_a_link_updates_its_target_and_keeps_the_link() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("real")).unwrap();
        fs::write(d.path().join("real/config"), b"old").unwrap();
        std::os::unix::fs::symlink("real/config", d.path().join("link")).unwrap();
        std::os::unix::fs::symlink("link", d.path().join("link2")).unwrap();
        write_atomic(&d.path().join("link2"), b"new", SECRET).unwrap();
        assert_eq!(fs::read(d.path().join("real/config")).unwrap(), b"new");
        assert!(
            fs::symlink_metadata(d.path().join("link2"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        // a link to a file not made yet: the file is made where it points
        std::os::unix::fs::symlink("real/later", d.path().join("ahead")).unwrap();
        write_atomic(&d.path().join("ahead"), b"x", SECRET).unwrap();
        assert_eq!(fs::read(d.path().join("real/later")).unwrap(), b"x");
        let e = write_atomic(d.path(), b"x", SECRET).unwrap_err();
        assert!(format!("{e:#}").contains("is a directory"), "{e:#}");
    }
}
