//! The digest memo: the sha256 of the hypervisor's artifact files remembered by path and file
//! identity (size, inode, modification and change times), so an unchanged file of hundreds of
//! MiB is not read and hashed again on every run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::fsutil;

/// Where digests of the hypervisor's artifact files are remembered between runs (set once per
/// process by `up`, in the cluster's work dir: `artifact-digests`); unset, as in `plan` and the
/// dry runs, they are remembered for the process only and nothing is written.
static DIGEST_MEMO: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Remember artifact digests in `file` across runs (the first call wins).
pub fn remember_digests_in(file: PathBuf) {
    let _ = DIGEST_MEMO.set(file);
}

/// A file's identity: size, inode, modification and change times (nanoseconds). A write
/// changes the times; the change time cannot be set back by a user.
fn identity(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    m.is_file().then(|| {
        format!(
            "{}:{}:{}.{:09}:{}.{:09}",
            m.len(),
            m.ino(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec()
        )
    })
}

type Memo = BTreeMap<(PathBuf, String), String>;

/// The digests known by (path, identity): this process's, and the memo file's read once.
fn memo() -> std::sync::MutexGuard<'static, Option<Memo>> {
    static SEEN: std::sync::Mutex<Option<Memo>> = std::sync::Mutex::new(None);
    let mut g = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if g.is_none() {
        let text = DIGEST_MEMO
            .get()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .unwrap_or_default();
        *g = Some(parse_memo(&text));
    }
    g
}

/// The memo file: `<sha256> <identity> <path>` per line; a line that is not that is ignored.
pub(super) fn parse_memo(text: &str) -> Memo {
    let mut m = Memo::new();
    for l in text.lines() {
        let mut it = l.splitn(3, ' ');
        if let (Some(sha), Some(id), Some(p)) = (it.next(), it.next(), it.next())
            && sha.len() == 64
            && sha.bytes().all(|b| b.is_ascii_hexdigit())
        {
            m.insert((PathBuf::from(p), id.to_string()), sha.to_string());
        }
    }
    m
}

pub(super) fn format_memo(m: &Memo) -> String {
    m.iter()
        .map(|((p, id), sha)| format!("{sha} {id} {}\n", p.display()))
        .collect()
}

fn learn(path: &Path, id: String, sha: &str) {
    let mut g = memo();
    let m = g.as_mut().expect("loaded");
    // One entry per path: the newest identity.
    m.retain(|(p, _), _| p != path);
    m.insert((path.to_path_buf(), id), sha.to_string());
    if let Some(file) = DIGEST_MEMO.get()
        && let Err(e) = fsutil::write_atomic(file, format_memo(m).as_bytes(), fsutil::PUBLIC)
    {
        tracing::debug!("digest memo {}: {e:#}", file.display());
    }
}

/// Remember the digest of a file this process has just written with bytes of that digest, so
/// the next run takes it from the memo instead of reading and hashing it.
pub fn wrote(path: &Path, sha: &str) {
    if let Some(id) = identity(path) {
        learn(path, id, sha);
    }
}

/// Whether `path`'s digest is remembered for the file as it is now.
#[cfg(test)]
pub fn is_known(path: &Path) -> bool {
    identity(path).is_some_and(|id| known(path, &id).is_some())
}

fn known(path: &Path, id: &str) -> Option<String> {
    memo()
        .as_ref()
        .and_then(|m| m.get(&(path.to_path_buf(), id.to_string())).cloned())
}

/// A file as a [`Blob`](crate::blob::Blob) without reading it when its identity is remembered
/// (its bytes are read, and checked, when a node needs them); else read and hashed. `None`
/// when it does not exist.
pub fn blob_of(path: &Path) -> Result<Option<crate::blob::Blob>> {
    if let Some(id) = identity(path)
        && let Some(sha) = known(path, &id)
    {
        let len = id
            .split(':')
            .next()
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        return Ok(Some(crate::blob::Blob::from_file(
            path.to_path_buf(),
            len,
            sha,
        )));
    }
    Ok(read_with_digest(path)?.map(|(data, sha)| crate::blob::Blob::with_digest(data, sha)))
}

/// A file's SHA-256 without reading it when its identity is remembered (this run, or an
/// earlier one through the memo); else read and hashed. `None` when it does not exist.
pub fn digest_of(path: &Path) -> Result<Option<String>> {
    if let Some(sha) = identity(path).and_then(|id| known(path, &id)) {
        return Ok(Some(sha));
    }
    Ok(read_with_digest(path)?.map(|(_, sha)| sha))
}

/// A file's content and SHA-256, hashed once: a second read of the same file (the build's own
/// check, then each command's inputs, or the next run) is answered from what is remembered
/// while its identity (size, inode, modification and change times) is the same. `None` when
/// it does not exist.
pub fn read_with_digest(path: &Path) -> Result<Option<(Vec<u8>, String)>> {
    let before = identity(path);
    let Some(data) = fsutil::read_optional(path)? else {
        return Ok(None);
    };
    // Trusted only when nothing changed the file while it was read.
    let id = before.filter(|k| Some(k) == identity(path).as_ref());
    if let Some(sha) = id.as_deref().and_then(|id| known(path, id)) {
        return Ok(Some((data, sha)));
    }
    let sha = crate::blob::sha256_hex(&data);
    if let Some(id) = id {
        learn(path, id, &sha);
    }
    Ok(Some((data, sha)))
}
