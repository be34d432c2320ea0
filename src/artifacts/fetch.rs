//! Downloads over HTTP(S) (ureq) into the downloads directory: streamed to a temp file, checked
//! against the expected sha256, then renamed into place, so a cached file is always a verified
//! one. A cached file whose digest matches the lock (or the expected digest) is used without any
//! network access.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, Result};

use super::catalog::SumFile;
use crate::blob::sha256_hex;
use crate::error::Failure;
use crate::fsutil;

fn unreachable(url: &str, e: impl std::fmt::Display) -> anyhow::Error {
    Failure::new(format!("cannot download {url}: {e}"))
        .hint("without internet access set spec.artifacts.source to dir (or deb) and put the files in spec.artifacts.dir under their upstream names")
        .into()
}

/// GET `url` into memory (small files: checksum lists).
pub fn get_small(url: &str) -> Result<Vec<u8>> {
    let mut resp = download_agent()
        .get(url)
        .call()
        .map_err(|e| unreachable(url, e))?;
    resp.body_mut()
        .with_config()
        .limit(4 << 20)
        .read_to_vec()
        .map_err(|e| unreachable(url, e))
}

/// The digest of `file` from the publisher's checksum file at `url`.
pub fn publisher_sha(url: &str, shape: SumFile, file: &str) -> Result<String> {
    let text = String::from_utf8_lossy(&get_small(url)?).into_owned();
    parse_sum(&text, shape, file).ok_or_else(|| {
        Failure::new(format!("{url} has no sha256 for {file}"))
            .hint("pin the digest in the cluster file: spec.artifacts.sha256")
            .into()
    })
}

pub fn parse_sum(text: &str, shape: SumFile, file: &str) -> Option<String> {
    let is_sha = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    match shape {
        SumFile::Single => text
            .split_whitespace()
            .next()
            .filter(|s| is_sha(s))
            .map(str::to_lowercase),
        SumFile::List => text.lines().find_map(|l| {
            let mut f = l.split_whitespace();
            let (sha, name) = (f.next()?, f.next()?);
            (is_sha(sha) && name.trim_start_matches('*') == file).then(|| sha.to_lowercase())
        }),
    }
}

/// The content of `dest` when it is cached and verified without any network access: it matches
/// the lock, or `known` (a pinned or configured digest). What a dry run uses; `None`: only a
/// download could tell.
pub fn cached(dest: &Path, locked: Option<&str>, known: Option<&str>) -> Result<Option<Vec<u8>>> {
    let Some(data) = fsutil::read_optional(dest)? else {
        return Ok(None);
    };
    let sha = sha256_hex(&data);
    let trusted = [locked, known]
        .into_iter()
        .flatten()
        .any(|want| want.eq_ignore_ascii_case(&sha));
    Ok(trusted.then_some(data))
}

/// The verified content of `dest`, downloading it from `url` when it is not cached (or no
/// longer matches). `locked` is the digest recorded before; `expected` is asked only when the
/// cache cannot be trusted by the lock alone.
pub fn ensure(
    dest: &Path,
    url: &str,
    expected: impl FnOnce() -> Result<String>,
    locked: Option<String>,
) -> Result<Vec<u8>> {
    if let Some(data) = fsutil::read_optional(dest)? {
        let sha = sha256_hex(&data);
        if locked.as_deref() == Some(sha.as_str()) {
            return Ok(data);
        }
    }
    let want = expected()?;
    if let Some(data) = fsutil::read_optional(dest)?
        && sha256_hex(&data).eq_ignore_ascii_case(&want)
    {
        return Ok(data);
    }
    let dir = dest.parent().context("download path has a directory")?;
    fsutil::ensure_dir(dir, 0o755)?;
    tracing::info!(url, "downloading");
    let resp = download_agent()
        .get(url)
        .call()
        .map_err(|e| unreachable(url, e))?;
    let tmp = dir.join(format!(
        ".{}.part-{}",
        dest.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("download"),
        std::process::id()
    ));
    let mut out =
        std::fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    let mut reader = resp.into_body().into_reader();
    let mut buf = vec![0u8; 256 * 1024];
    let mut data = Vec::new();
    loop {
        let n = reader.read(&mut buf).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            unreachable(url, e)
        })?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
        data.extend_from_slice(&buf[..n]);
    }
    out.sync_all()?;
    drop(out);
    let got = sha256_hex(&data);
    if !got.eq_ignore_ascii_case(&want) {
        let _ = std::fs::remove_file(&tmp);
        return Err(
            Failure::new(format!("{url}: sha256 is {got}, expected {want}"))
                .hint("the download is corrupt or not the published file; nothing was installed")
                .into(),
        );
    }
    std::fs::rename(&tmp, dest).with_context(|| format!("rename into {}", dest.display()))?;
    Ok(data)
}

/// Downloads leave the machine on purpose (the `upstream` source): the one place allowed to use
/// ureq's default connector, in this process's own network namespace, never the lab's.
#[allow(clippy::disallowed_methods)]
fn download_agent() -> ureq::Agent {
    ureq::Agent::new_with_defaults()
}
