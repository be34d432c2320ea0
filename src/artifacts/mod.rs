//! Node binaries and packages, made ready on the hypervisor before anything is installed.
//!
//! Sources (`spec.artifacts.source`): `upstream` (downloaded once into `<workDir>/downloads/`,
//! verified against a pinned sha256, the cluster file's, or the publisher's checksum file),
//! `dir` (a local directory with the upstream file names, for offline use) and `deb` (Debian
//! packages of a configured suite, fetched with apt on the hypervisor and unpacked there, their
//! programs placed on the nodes as files;
//! components Debian does not carry, like the Kubernetes binaries, then come from `dir`).
//! Nodes never download anything, and neither does a dry run or `plan` ([`Fetch::Never`]: what
//! is cached is used, the rest is said as [`Provided::WouldDownload`]). The digest actually used is recorded in
//! `<workDir>/<cluster>/artifacts.lock`; a later run that sees another digest stops.

pub mod build;
pub mod catalog;
pub mod deb;
pub mod deb_files;
mod digests;
pub mod fetch;
mod go;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::blob::Blob;
use crate::error::Failure;
use crate::fsutil;
use crate::spec::{ArtifactSource, Cluster};
use catalog::Component;
pub use digests::{blob_of, digest_of, read_with_digest, remember_digests_in};
#[cfg(test)]
use digests::{format_memo, parse_memo};

/// A file to place on a node.
#[derive(Debug, Clone)]
pub struct NodeFile {
    pub path: String,
    pub mode: u32,
    pub blob: Blob,
}

/// A Debian package, unpacked on the hypervisor: its programs go to the nodes as files.
#[derive(Debug, Clone)]
pub struct DebPackage {
    pub package: String,
    pub version: String,
    pub file_name: String,
    /// The package file's sha256 (apt's signed index vouches for it).
    pub sha256: String,
    /// Its programs ([`deb_files::executables`]).
    pub files: Vec<NodeFile>,
}

/// How a component reaches the nodes.
#[derive(Debug, Clone)]
pub enum Provided {
    Files {
        files: Vec<NodeFile>,
        version: String,
    },
    Debs {
        debs: Vec<DebPackage>,
        bin_dir: String,
    },
    /// Cannot be had here: the reason names the files and where they would be looked for.
    Missing { reason: String, file: String },
    /// A dry run's answer for what only a download could provide: nothing was fetched; the
    /// text says what a real run would download (and from where).
    WouldDownload { what: String, file: String },
}

impl Provided {
    /// The version installed: the upstream version, or the (first) package's Debian version
    /// without its revision (`2.1.9~ds1-1` → `2.1.9`).
    pub fn version(&self) -> Option<String> {
        match self {
            Provided::Files { version, .. } => Some(version.clone()),
            Provided::Debs { debs, .. } => debs.first().map(|d| {
                let v = d.version.split(':').next_back().unwrap_or(&d.version);
                v.split(['~', '-', '+']).next().unwrap_or(v).to_string()
            }),
            Provided::Missing { .. } | Provided::WouldDownload { .. } => None,
        }
    }

    /// Why there are no files to install, if there are none: the reason it is missing, or
    /// what a real run would download.
    pub fn unavailable(&self) -> Option<String> {
        match self {
            Provided::Missing { reason, .. } => Some(reason.clone()),
            Provided::WouldDownload { what, .. } => Some(format!(
                "a real run would download {what}; a dry run downloads nothing"
            )),
            Provided::Files { .. } | Provided::Debs { .. } => None,
        }
    }

    /// Directory of the component's binaries on the node.
    pub fn bin_dir(&self) -> &str {
        match self {
            Provided::Debs { bin_dir, .. } => bin_dir,
            _ => "/usr/local/bin",
        }
    }
}

/// The lock: file name → sha256 used.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Lock(pub BTreeMap<String, String>);

impl Lock {
    pub fn path(cluster: &Cluster) -> PathBuf {
        cluster.cluster_dir().join("artifacts.lock")
    }

    pub fn load(cluster: &Cluster) -> Result<Lock> {
        let p = Lock::path(cluster);
        let Some(bytes) = fsutil::read_optional(&p)? else {
            return Ok(Lock::default());
        };
        let text = String::from_utf8_lossy(&bytes);
        let mut m = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let mut f = line.split_whitespace();
            match (f.next(), f.next()) {
                (Some(sha), Some(name)) => m.insert(name.to_string(), sha.to_string()),
                _ => anyhow::bail!("{}: unreadable line {line:?}", p.display()),
            };
        }
        Ok(Lock(m))
    }

    pub fn save(&self, cluster: &Cluster) -> Result<()> {
        let mut text = String::from(
            "# sha256 of every artifact kubicluster installed for this cluster (sha256sum format).\n# A later run or node that sees another digest stops. Delete a line to accept a new file.\n",
        );
        for (name, sha) in &self.0 {
            text.push_str(&format!("{sha}  {name}\n"));
        }
        fsutil::ensure_dir(&cluster.cluster_dir(), fsutil::PRIVATE_DIR)?;
        fsutil::write_atomic(&Lock::path(cluster), text.as_bytes(), fsutil::PUBLIC)
    }

    /// Record `sha` for `name`, or fail if another digest was recorded before.
    pub fn check(&mut self, name: &str, sha: &str) -> Result<()> {
        match self.0.get(name) {
            Some(old) if old != sha => Err(Failure::new(format!(
                "{name}: sha256 {sha} differs from {old} recorded in artifacts.lock"
            ))
            .hint("the file changed since it was first installed; if that is intended, delete its line from artifacts.lock")
            .into()),
            Some(_) => Ok(()),
            None => {
                self.0.insert(name.to_string(), sha.to_string());
                Ok(())
            }
        }
    }
}

/// Does `c` come from Debian packages? With `deb`, whatever Debian carries; with `build`, what
/// `artifacts build` does not make.
pub fn from_deb(cluster: &Cluster, c: &Component) -> bool {
    !c.debs.is_empty()
        && match cluster.artifacts.source {
            ArtifactSource::Deb => true,
            ArtifactSource::Build => !build::BUILT.contains(&c.name),
            ArtifactSource::Upstream | ArtifactSource::Dir => false,
        }
}

pub fn downloads_dir(cluster: &Cluster) -> PathBuf {
    cluster.work_dir.join("downloads")
}

fn version_for(cluster: &Cluster, c: &Component) -> String {
    let v = &cluster.versions;
    match c.version_of {
        "kubernetes" => cluster.kubernetes.version,
        "etcd" => v.etcd,
        "containerd" => v.containerd,
        "runc" => v.runc,
        "cni-plugins" => v.cni_plugins,
        "calico" => v.calico,
        other => panic!("no version for {other}"),
    }
    .to_string()
}

/// The expected sha256 of an upstream file: the cluster file's, else the catalogue's.
fn expected_sha(cluster: &Cluster, c: &Component, version: &str, file: &str) -> Option<String> {
    cluster.artifacts.sha256.get(file).cloned().or_else(|| {
        c.pinned
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(_, s)| s.to_string())
    })
}

/// Turn an upstream file (a binary or a tarball) into node files.
/// The files `data` (whose digest is `sha`) puts on a node: itself, or members of its tar.gz.
fn unpack(c: &Component, version: &str, blob: Blob) -> Result<Vec<NodeFile>> {
    if c.members.is_empty() {
        return Ok(vec![NodeFile {
            path: c.dest.to_string(),
            mode: 0o755,
            blob,
        }]);
    }
    let data = blob.data()?;
    let mut want: BTreeMap<String, &str> = c
        .members
        .iter()
        .map(|(inside, dest)| (inside.replace("{v}", version), *dest))
        .collect();
    let mut out = Vec::new();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(data));
    for entry in ar.entries().context("read tar.gz")? {
        let mut e = entry.context("read tar entry")?;
        let raw = e.path().context("tar entry path")?.display().to_string();
        let path = raw.trim_start_matches("./").to_string();
        if let Some(dest) = want.remove(&path) {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut buf).context("read tar member")?;
            out.push(NodeFile {
                path: dest.to_string(),
                mode: 0o755,
                blob: Blob::new(buf),
            });
        }
    }
    anyhow::ensure!(
        want.is_empty(),
        "the archive lacks {:?}",
        want.keys().collect::<Vec<_>>()
    );
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Whether [`provide`] may fetch what is not cached (a real run), or must only look (a dry run
/// or `plan`: nothing is written, downloaded or fetched from any index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    Allowed,
    Never,
}

/// Make `name` ready for the nodes. Errors (bad checksum, unreachable URL, a file missing from
/// `dir`) come before anything is installed anywhere; `Missing` is returned only for
/// components that no configured source can provide (the caller decides whether that is fatal).
/// With [`Fetch::Never`] what is not cached comes back as [`Provided::WouldDownload`].
pub fn provide(cluster: &Cluster, lock: &mut Lock, name: &str, mode: Fetch) -> Result<Provided> {
    let c = catalog::find(name);
    let version = version_for(cluster, &c);
    let file = (c.file)(&version);
    let a = &cluster.artifacts;
    if from_deb(cluster, &c) {
        let suite = a.deb_suites.get(name).unwrap_or(&a.deb_suite);
        let mut debs = match deb::fetch(cluster, suite, c.debs, mode)? {
            deb::Got::Debs(debs) => debs,
            deb::Got::WouldDownload(what) => {
                return Ok(Provided::WouldDownload { what, file });
            }
        };
        for d in &mut debs {
            lock.check(&d.file_name, &d.sha256)?;
            if !c.deb_programs.is_empty() {
                d.files
                    .retain(|f| c.deb_programs.contains(&f.path.as_str()));
            }
        }
        if let Some(gone) = c
            .deb_programs
            .iter()
            .find(|p| !debs.iter().any(|d| d.files.iter().any(|f| f.path == **p)))
        {
            return Err(Failure::new(format!(
                "the Debian packages for {name} ({}) carry no {gone}",
                c.debs.join(", ")
            ))
            .hint("choose another suite for it (spec.artifacts.debSuites) or another source")
            .into());
        }
        return Ok(Provided::Debs {
            debs,
            bin_dir: c.deb_bin_dir.to_string(),
        });
    }
    // A local directory: `dir` source, or `deb` for what Debian does not carry.
    if a.source != ArtifactSource::Upstream {
        let Some(dir) = &a.dir else {
            return Ok(Provided::Missing {
                reason: format!(
                    "{name} {version} is not packaged in Debian and no artifacts.dir is set"
                ),
                file,
            });
        };
        let path = dir.join(&file);
        let Some(blob) = blob_of(&path)? else {
            return Ok(Provided::Missing {
                reason: if a.source == ArtifactSource::Build {
                    format!(
                        "{} does not exist (run `kubicluster artifacts build`)",
                        path.display()
                    )
                } else {
                    format!("{} does not exist", path.display())
                },
                file,
            });
        };
        let sha = blob.sha256.clone();
        let shown = path.display().to_string();
        // A build's binaries are not the published ones (other flags, another toolchain): the
        // catalogue's digests of the published files do not apply to them, the cluster file's do.
        let pinned = if a.source == ArtifactSource::Build {
            a.sha256.get(&file).cloned()
        } else {
            expected_sha(cluster, &c, &version, &file)
        };
        // The directory's SHA256SUMS (what `artifacts build` writes) vouches for its files.
        let listed = build::read_manifest(dir)?
            .and_then(|list| list.into_iter().find(|(n, _)| *n == file))
            .map(|(_, s)| s);
        for want in pinned.iter().chain(listed.iter()) {
            verify_sha(&shown, want, &sha)?;
        }
        if pinned.is_none() && listed.is_none() {
            if !a.allow_unverified {
                return Err(Failure::new(format!(
                    "{shown}: no known sha256 to verify it against (not pinned for {name} {version}, not in spec.artifacts.sha256, no SHA256SUMS line for it in {})",
                    dir.display()
                ))
                .hint(format!(
                    "add `{file}: <sha256>` under spec.artifacts.sha256, or a `<sha256>  {file}` line to {}/SHA256SUMS; to install it unverified pass --allow-unverified-artifacts",
                    dir.display()
                ))
                .into());
            }
            tracing::warn!("{shown}: UNVERIFIED (no known sha256; --allow-unverified-artifacts)");
        }
        let files = unpack(&c, &version, blob).with_context(|| shown.clone())?;
        check_executables(&shown, &files)?;
        lock.check(&lock_name(&file, &version), &sha)?;
        return Ok(Provided::Files { files, version });
    }
    let dest = downloads_dir(cluster).join(&file);
    let locked = lock.0.get(&lock_name(&file, &version)).cloned();
    let data = if mode == Fetch::Never {
        let pinned = expected_sha(cluster, &c, &version, &file);
        match fetch::cached(&dest, locked.as_deref(), pinned.as_deref())? {
            Some(data) => data,
            None => {
                let what = if dest.exists() {
                    format!(
                        "{file}: cached, but only the publisher's checksum file could verify it"
                    )
                } else {
                    format!("{file} from {}", (c.url)(&version))
                };
                return Ok(Provided::WouldDownload { what, file });
            }
        }
    } else {
        fetch::ensure(
            &dest,
            &(c.url)(&version),
            || match expected_sha(cluster, &c, &version, &file) {
                Some(s) => Ok(s),
                None => {
                    let (sum_url, shape) = c
                        .sum_url
                        .ok_or_else(|| anyhow::anyhow!("{name}: no checksum source"))?;
                    fetch::publisher_sha(&sum_url(&version), shape, &file)
                }
            },
            locked,
        )?
    };
    let sha = crate::blob::sha256_hex(&data);
    let shown = dest.display().to_string();
    let files = unpack(&c, &version, Blob::with_digest(data, sha.clone()))
        .with_context(|| shown.clone())?;
    check_executables(&shown, &files)?;
    lock.check(&lock_name(&file, &version), &sha)?;
    Ok(Provided::Files { files, version })
}

/// A file's name in `artifacts.lock`: with its version when the name has none (`kubelet` is
/// another file in every release: an upgrade brings a new one, a changed file of the same
/// release is still caught).
fn lock_name(file: &str, version: &str) -> String {
    if file.contains(version) {
        file.to_string()
    } else {
        format!("v{version}/{file}")
    }
}

/// ELF's machine number for the nodes' architecture (x86-64; kubicluster's nodes are amd64).
const NODE_MACHINE: u16 = 62;

/// Before anything is uploaded: every executable is a non-empty ELF file for the nodes'
/// architecture (not an HTML error page, an empty file, or another architecture's build).
pub fn check_executables(from: &str, files: &[NodeFile]) -> Result<()> {
    for f in files
        .iter()
        .filter(|f| f.mode & 0o111 != 0 && !f.path.is_empty())
    {
        let d = &f.blob.head(20)?;
        let what = if d.is_empty() {
            Some("is empty".to_string())
        } else if d.len() < 20 || &d[..4] != b"\x7fELF" {
            Some("is not an ELF executable".to_string())
        } else if d[4] != 2 || d[5] != 1 {
            Some("is not a 64-bit little-endian ELF executable".to_string())
        } else {
            let machine = u16::from_le_bytes([d[18], d[19]]);
            (machine != NODE_MACHINE)
                .then(|| format!("is built for ELF machine {machine}, not x86-64 (62)"))
        };
        if let Some(what) = what {
            let member = if from.ends_with(&f.path) {
                String::new()
            } else {
                format!(" ({})", f.path)
            };
            return Err(Failure::new(format!("{from}{member} {what}"))
                .hint("nothing was uploaded; replace the file with the release binary for linux/amd64 (or rebuild it with `kubicluster artifacts build --force`)")
                .into());
        }
    }
    Ok(())
}

pub fn verify_sha(what: &str, want: &str, got: &str) -> Result<()> {
    if want.eq_ignore_ascii_case(got) {
        Ok(())
    } else {
        Err(
            Failure::new(format!("{what}: sha256 is {got}, expected {want}"))
                .hint("the file is corrupt or not the published one; delete it and fetch it again")
                .into(),
        )
    }
}

#[cfg(test)]
mod tests;
