//! The programs of a Debian package, unpacked on the hypervisor: the nodes get them as plain
//! files, like built or downloaded binaries, and never run `dpkg` (its decompression, fsyncs and
//! triggers are slow in emulated guests, and the units and configuration are kubicluster's own).
//!
//! What is taken from a package: every regular file with an executable bit in its data archive
//! (hard links resolved). Documentation, manual pages, the package's own units and
//! configuration files are left out; symbolic links too (runc's package has one, `/usr/bin/runc`
//! to `/usr/sbin/runc`: the program itself is placed, and the units and containerd find it by
//! `/usr/sbin` on their path). Maintainer scripts are not run: what they would do that the cluster
//! needs (the etcd system user) the steps do themselves.
//!
//! Unpacked once per package file into `<cache>/unpacked/<file>/`, with a manifest (the
//! package's sha256, then `sha256 mode path` per program) written last: a later run reads the
//! programs from there (their digests checked against the manifest, through the digest memo),
//! and a half-written directory (a kill) is unpacked again.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::NodeFile;
use crate::blob::Blob;
use crate::error::Failure;
use crate::fsutil;

const MANIFEST: &str = "programs.sha256";

/// The executables of a `.deb` (its bytes), with their absolute paths and modes.
pub fn executables(deb: &[u8], what: &str) -> Result<Vec<NodeFile>> {
    let mut archive = ar::Archive::new(deb);
    while let Some(entry) = archive.next_entry() {
        let entry = entry.with_context(|| format!("{what}: not a Debian package (ar archive)"))?;
        let name = String::from_utf8_lossy(entry.header().identifier()).into_owned();
        let Some(compression) = name.strip_prefix("data.tar") else {
            continue;
        };
        let reader: Box<dyn Read + '_> = match compression {
            ".xz" => Box::new(liblzma::read::XzDecoder::new(entry)),
            ".gz" => Box::new(flate2::read::GzDecoder::new(entry)),
            "" => Box::new(entry),
            other => {
                return Err(Failure::new(format!(
                    "{what}: its data archive is compressed as {}, which kubicluster does not read",
                    other.trim_start_matches('.')
                ))
                .hint("use a suite whose packages use xz or gzip (Debian's do), or artifacts.source: dir")
                .into());
            }
        };
        return programs(reader, what);
    }
    bail!("{what}: no data.tar member (not a Debian binary package?)")
}

/// Regular files with an executable bit (and hard links to them) of a tar stream.
fn programs(reader: impl Read, what: &str) -> Result<Vec<NodeFile>> {
    let mut tar = tar::Archive::new(reader);
    let mut out: Vec<NodeFile> = Vec::new();
    let mut by_path: BTreeMap<String, usize> = BTreeMap::new();
    for entry in tar
        .entries()
        .with_context(|| format!("{what}: read data archive"))?
    {
        let mut entry = entry.with_context(|| format!("{what}: read data archive"))?;
        let path = absolute(&entry.path()?.to_string_lossy());
        let mode = entry.header().mode()? & 0o7777;
        let kind = entry.header().entry_type();
        if kind.is_file() && mode & 0o111 != 0 {
            let mut data = Vec::with_capacity(entry.size() as usize);
            entry
                .read_to_end(&mut data)
                .with_context(|| format!("{what}: read {path}"))?;
            by_path.insert(path.clone(), out.len());
            out.push(NodeFile {
                path,
                mode,
                blob: Blob::new(data),
            });
        } else if kind.is_hard_link()
            && let Some(target) = entry.link_name()?
            && let Some(&i) = by_path.get(&absolute(&target.to_string_lossy()))
        {
            let linked = out[i].clone();
            out.push(NodeFile { path, ..linked });
        }
    }
    Ok(out)
}

/// `./usr/bin/x` → `/usr/bin/x`.
fn absolute(p: &str) -> String {
    format!("/{}", p.trim_start_matches("./").trim_start_matches('/'))
}

/// The programs of the package file `file_name` (digest `sha`), from the unpacked cache under
/// `dir` when it is complete and matches (the package itself is then not read), else unpacked
/// from the bytes `deb` gives — and written there unless `look_only` (a dry run writes
/// nothing). `None` when `deb` has none (a dry run that would have to download it).
pub fn unpacked(
    dir: &Path,
    file_name: &str,
    sha: &str,
    deb: impl FnOnce() -> Result<Option<Vec<u8>>>,
    look_only: bool,
) -> Result<Option<Vec<NodeFile>>> {
    let root = dir.join(file_name);
    if let Some(files) = read_cached(&root, sha)? {
        return Ok(Some(files));
    }
    let Some(bytes) = deb()? else {
        return Ok(None);
    };
    let files = executables(&bytes, file_name)?;
    if !look_only {
        write_cache(dir, file_name, sha, &files)?;
    }
    Ok(Some(files))
}

/// The cached programs, if the manifest is there, names this package and every file matches.
fn read_cached(root: &Path, sha: &str) -> Result<Option<Vec<NodeFile>>> {
    let Some(text) = fsutil::read_optional(&root.join(MANIFEST))? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&text);
    let mut lines = text.lines();
    if lines.next() != Some(&format!("deb {sha}")) {
        return Ok(None);
    }
    let mut files = Vec::new();
    for line in lines {
        let mut f = line.splitn(3, ' ');
        let (Some(want), Some(mode), Some(path)) = (f.next(), f.next(), f.next()) else {
            return Ok(None);
        };
        let Ok(mode) = u32::from_str_radix(mode, 8) else {
            return Ok(None);
        };
        match super::blob_of(&on_disk(root, path))? {
            Some(blob) if blob.sha256 == want => files.push(NodeFile {
                path: path.to_string(),
                mode,
                blob,
            }),
            _ => return Ok(None),
        }
    }
    Ok(Some(files))
}

/// Where the program `path` of a package lives under its cache directory `root`.
fn on_disk(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// Write the programs into a fresh directory, the manifest last, then move it into place.
fn write_cache(dir: &Path, file_name: &str, sha: &str, files: &[NodeFile]) -> Result<()> {
    let tmp = dir.join(format!(".{file_name}.partial"));
    let root = dir.join(file_name);
    fsutil::ensure_dir(dir, 0o755)?;
    for old in [&tmp, &root] {
        if old.exists() {
            std::fs::remove_dir_all(old).with_context(|| format!("remove {}", old.display()))?;
        }
    }
    let mut manifest = format!("deb {sha}\n");
    for f in files {
        let p = on_disk(&tmp, &f.path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("create {}", parent.display()))?;
        }
        fsutil::write_atomic(&p, f.blob.data()?, f.mode & 0o755)?;
        manifest.push_str(&format!("{} {:o} {}\n", f.blob.sha256, f.mode, f.path));
    }
    fsutil::write_atomic(&tmp.join(MANIFEST), manifest.as_bytes(), fsutil::PUBLIC)?;
    std::fs::rename(&tmp, &root)
        .with_context(|| format!("rename {} to {}", tmp.display(), root.display()))?;
    // The next run takes the programs' digests from the memo instead of reading them.
    for f in files {
        super::digests::wrote(&on_disk(&root, &f.path), &f.blob.sha256);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Debian package: `debian-binary`, a control member and `data.tar<ext>` holding a
    /// program, a hard link to it, a document, a directory and a symbolic link.
    fn deb(ext: &str) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        let mut add = |path: &str, kind: tar::EntryType, mode: u32, data: &[u8], link: &str| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_size(data.len() as u64);
            if !link.is_empty() {
                h.set_link_name(link).unwrap();
            }
            tar.append_data(&mut h, path, data).unwrap();
        };
        add("./usr/", tar::EntryType::Directory, 0o755, b"", "");
        add(
            "./usr/bin/tool",
            tar::EntryType::Regular,
            0o755,
            b"#!tool",
            "",
        );
        add(
            "./usr/bin/tool2",
            tar::EntryType::Link,
            0o755,
            b"",
            "./usr/bin/tool",
        );
        add(
            "./usr/lib/x/helper",
            tar::EntryType::Regular,
            0o750,
            b"help",
            "",
        );
        add(
            "./usr/share/doc/t/README",
            tar::EntryType::Regular,
            0o644,
            b"doc",
            "",
        );
        add(
            "./usr/bin/alias",
            tar::EntryType::Symlink,
            0o777,
            b"",
            "tool",
        );
        let data = tar.into_inner().unwrap();
        let data = match ext {
            ".xz" => {
                let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
                std::io::Write::write_all(&mut e, &data).unwrap();
                e.finish().unwrap()
            }
            _ => data,
        };
        let mut ar = ar::Builder::new(Vec::new());
        for (name, body) in [
            ("debian-binary", b"2.0\n".to_vec()),
            ("control.tar", Vec::new()),
            (&*format!("data.tar{ext}"), data),
        ] {
            ar.append(
                &ar::Header::new(name.as_bytes().to_vec(), body.len() as u64),
                body.as_slice(),
            )
            .unwrap();
        }
        ar.into_inner().unwrap()
    }

    fn paths(files: &[NodeFile]) -> Vec<(String, u32, Vec<u8>)> {
        files
            .iter()
            .map(|f| (f.path.clone(), f.mode, f.blob.data().unwrap().to_vec()))
            .collect()
    }

    #[test]
    fn takes_the_programs_and_leaves_documents_and_links() {
        let want = vec![
            ("/usr/bin/tool".to_string(), 0o755, b"#!tool".to_vec()),
            ("/usr/bin/tool2".to_string(), 0o755, b"#!tool".to_vec()),
            ("/usr/lib/x/helper".to_string(), 0o750, b"help".to_vec()),
        ];
        assert_eq!(paths(&executables(&deb(".xz"), "t.deb").unwrap()), want);
        assert_eq!(paths(&executables(&deb(""), "t.deb").unwrap()), want);
        let err = executables(&deb(".zst"), "t.deb").unwrap_err().to_string();
        assert!(err.contains("compressed as zst"), "{err}");
        assert!(executables(b"not an archive", "t.deb").is_err());
    }

    #[test]
    fn unpacks_once_then_reads_the_cache_and_redoes_a_damaged_one() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("unpacked");
        let bytes = deb(".xz");
        let sha = crate::blob::sha256_hex(&bytes);
        // A dry run unpacks in memory and writes nothing.
        let dry = unpacked(&cache, "t.deb", &sha, || Ok(Some(bytes.clone())), true).unwrap();
        assert_eq!(dry.map(|f| f.len()), Some(3));
        assert!(!cache.exists());
        // Nothing to unpack from (a dry run that would download): said, nothing written.
        assert!(
            unpacked(&cache, "t.deb", &sha, || Ok(None), true)
                .unwrap()
                .is_none()
        );
        let first = unpacked(&cache, "t.deb", &sha, || Ok(Some(bytes.clone())), false)
            .unwrap()
            .unwrap();
        let tool = cache.join("t.deb/usr/bin/tool");
        assert_eq!(std::fs::read(&tool).unwrap(), b"#!tool");
        // Its digest is remembered as written: the next run does not read the program.
        assert!(crate::artifacts::digests::is_known(&tool));
        // Complete and matching: the package is not read again.
        let again = unpacked(&cache, "t.deb", &sha, || panic!("read the package"), false)
            .unwrap()
            .unwrap();
        assert_eq!(paths(&again), paths(&first));
        // Another package digest, or a program changed on disk: unpacked again.
        let redo = |what: &str| {
            let mut read = false;
            let files = unpacked(
                &cache,
                "t.deb",
                what,
                || {
                    read = true;
                    Ok(Some(bytes.clone()))
                },
                false,
            )
            .unwrap()
            .unwrap();
            assert_eq!(paths(&files), paths(&first));
            read
        };
        assert!(redo("0000"));
        assert!(redo(&sha));
        std::fs::write(&tool, b"changed").unwrap();
        assert!(redo(&sha));
        assert_eq!(std::fs::read(&tool).unwrap(), b"#!tool");
        // A kill before the manifest: the partial directory is redone.
        std::fs::remove_file(cache.join("t.deb").join(MANIFEST)).unwrap();
        assert!(redo(&sha));
        assert!(!redo(&sha));
    }
}
