//! The `deb` source: Debian packages of a configured suite, fetched on the hypervisor with apt
//! under a private configuration (its own sources list, lists, cache and an empty dpkg status),
//! so the hypervisor's own apt setup is never changed, and unpacked there ([`super::deb_files`]):
//! the nodes get their programs as files. The archive is the one the hypervisor's
//! apt sources already use, unless `artifacts.debMirror` names another. apt verifies each
//! package against the suite's signed index; kubicluster records the digest in the lock.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::DebPackage;
use crate::error::Failure;
use crate::fsutil;
use crate::spec::Cluster;
use std::process::Command;

const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// The Debian archive URL the hypervisor's apt sources use for its release (not the security
/// archive), from deb822 `.sources` files or one-line `sources.list` entries.
pub fn host_mirror() -> Option<String> {
    let mut texts = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        texts.extend(paths.iter().filter_map(|p| std::fs::read_to_string(p).ok()));
    }
    texts.extend(std::fs::read_to_string("/etc/apt/sources.list").ok());
    mirror_from(&texts)
}

pub fn mirror_from(texts: &[String]) -> Option<String> {
    let debian = |uri: &str, suites: &str| {
        uri.trim_end_matches('/').ends_with("/debian")
            && suites.split_whitespace().any(|s| !s.contains("security"))
    };
    for t in texts {
        // deb822 stanzas
        for stanza in t.split("\n\n") {
            let field = |k: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
            };
            if let (Some(uris), Some(suites)) = (field("URIs:"), field("Suites:"))
                && let Some(uri) = uris.split_whitespace().find(|u| debian(u, &suites))
            {
                return Some(uri.to_string());
            }
        }
        // one-line form: deb [opts] URI SUITE COMPONENTS
        for l in t.lines().filter_map(|l| l.trim().strip_prefix("deb ")) {
            // Options, if any, are one bracketed group before the URI.
            let rest = match l.trim_start().strip_prefix('[') {
                Some(opts) => opts.split_once(']').map_or("", |(_, r)| r),
                None => l,
            };
            let words: Vec<&str> = rest.split_whitespace().collect();
            if let [uri, suite, ..] = words.as_slice()
                && debian(uri, suite)
            {
                return Some(uri.to_string());
            }
        }
    }
    None
}

struct Apt {
    dir: PathBuf,
    /// A dry run's view: nothing is written (no memo, no lists, no download).
    look_only: bool,
}

/// What [`fetch`] found.
pub enum Got {
    Debs(Vec<DebPackage>),
    /// Only a dry run gets this: what a real run would fetch.
    WouldDownload(String),
}

impl Apt {
    /// The private apt setup for `suite`, created unless `look_only` (then `None` when it is not
    /// there as it would be: a real run starts it afresh).
    fn new(cluster: &Cluster, suite: &str, look_only: bool) -> Result<Option<Apt>> {
        let a = &cluster.artifacts;
        let dir = super::downloads_dir(cluster).join(format!("deb-{suite}"));
        let mirror = match &a.deb_mirror {
            Some(m) => m.clone(),
            None => host_mirror().ok_or_else(|| {
                Failure::bad_input("no Debian archive found in this machine's apt sources")
                    .hint("set spec.artifacts.debMirror to the archive's URL")
            })?,
        };
        let sources = format!("deb [signed-by={KEYRING}] {mirror} {suite} main\n");
        let list = dir.join("sources.list");
        let apt = Apt {
            dir: dir.clone(),
            look_only,
        };
        if look_only {
            let ready = fsutil::read_optional(&list)?.as_deref() == Some(sources.as_bytes())
                && dir.join("status").exists();
            return Ok(ready.then_some(apt));
        }
        for d in ["lists/partial", "cache/archives/partial", "parts", "debs"] {
            fsutil::ensure_dir(&dir.join(d), 0o755)?;
        }
        if fsutil::read_optional(&list)?.as_deref() != Some(sources.as_bytes()) {
            fsutil::write_atomic(&list, sources.as_bytes(), fsutil::PUBLIC)?;
            let _ = std::fs::remove_dir_all(dir.join("lists"));
            fsutil::ensure_dir(&dir.join("lists/partial"), 0o755)?;
        }
        if !dir.join("status").exists() {
            fsutil::write_atomic(&dir.join("status"), b"", fsutil::PUBLIC)?;
        }
        Ok(Some(apt))
    }

    /// `tool` (apt-get, apt-cache) under the private configuration.
    fn cmd(&self, tool: &str) -> Command {
        let d = self.dir.display();
        let mut c = Command::new(tool);
        for o in [
            format!("Dir::Etc::SourceList={d}/sources.list"),
            format!("Dir::Etc::SourceParts={d}/parts"),
            format!("Dir::State::Lists={d}/lists"),
            format!("Dir::Cache={d}/cache"),
            format!("Dir::State::Status={d}/status"),
            "Debug::NoLocking=1".into(),
            "APT::Sandbox::User=root".into(),
        ] {
            c.arg("-o").arg(o);
        }
        c.stdin(std::process::Stdio::null());
        c
    }

    /// Runs `c`: (succeeded, stdout, the last lines of stderr and stdout for an error).
    fn output(c: &mut Command) -> Result<(bool, String, String)> {
        tracing::debug!("run {c:?}");
        let o = c
            .output()
            .with_context(|| format!("run {:?}", c.get_program()))?;
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let all = format!("{}{}", String::from_utf8_lossy(&o.stderr), out);
        let lines: Vec<&str> = all.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(5)..].join("\n");
        Ok((o.status.success(), out, tail))
    }

    fn run(&self, mut c: Command, what: &str) -> Result<String> {
        let (ok, out, tail) = Apt::output(&mut c)?;
        if !ok {
            return Err(Failure::new(format!("{what} failed: {tail}"))
                .hint("is the Debian archive reachable, and does the suite carry the package? (spec.artifacts.debSuite)")
                .into());
        }
        Ok(out)
    }

    fn update(&self) -> Result<()> {
        tracing::info!(dir = %self.dir.display(), "apt-get update (private lists)");
        let mut c = self.cmd("apt-get");
        c.arg("update");
        self.run(c, "apt-get update").map(|_| ())
    }

    /// (version, file name, sha256) of the candidate of `pkg`.
    /// apt-cache parses the whole suite index (about a second): its answer is kept next to the
    /// lists and reused until the lists change.
    fn show(&self, pkg: &str) -> Result<Option<(String, String, String)>> {
        let stamp = std::fs::metadata(self.dir.join("lists"))
            .and_then(|m| m.modified())
            .map(|t| format!("{t:?}"))
            .unwrap_or_default();
        let memo = self.dir.join(format!("show-{pkg}.txt"));
        let cached = fsutil::read_optional(&memo)?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .and_then(|t| t.strip_prefix(&format!("{stamp}\n")).map(str::to_string));
        let text = match cached {
            Some(t) => t,
            None => {
                let mut c = self.cmd("apt-cache");
                c.arg("show").arg("--no-all-versions").arg(pkg);
                let (ok, t, _) = Apt::output(&mut c)?;
                if !ok {
                    return Ok(None);
                }
                if !self.look_only {
                    fsutil::write_atomic(
                        &memo,
                        format!("{stamp}\n{t}").as_bytes(),
                        fsutil::PUBLIC,
                    )?;
                }
                t
            }
        };
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
        };
        Ok(
            match (field("Version:"), field("Filename:"), field("SHA256:")) {
                (Some(v), Some(f), Some(s)) => {
                    Some((v, f.rsplit('/').next().unwrap_or(&f).to_string(), s))
                }
                _ => None,
            },
        )
    }
}

/// Fetch `packages` of Debian `suite` (verified) into the cache and return them. With
/// [`Fetch::Never`](super::Fetch) only what is cached is returned; anything else is said.
pub fn fetch(cluster: &Cluster, suite: &str, packages: &[&str], mode: super::Fetch) -> Result<Got> {
    let look_only = mode == super::Fetch::Never;
    let would = |what: &str| {
        Ok(Got::WouldDownload(format!(
            "Debian {suite}: {what} ({})",
            packages.join(", ")
        )))
    };
    let Some(apt) = Apt::new(cluster, suite, look_only)? else {
        return would("the package index, then the packages");
    };
    let mut updated = false;
    let mut out = Vec::new();
    for pkg in packages {
        let mut info = apt.show(pkg)?;
        if info.is_none() && look_only {
            return would("the package index, then the packages");
        }
        if info.is_none() && !updated {
            apt.update()?;
            updated = true;
            info = apt.show(pkg)?;
        }
        let (version, file_name, sha) = info.ok_or_else(|| {
            Failure::new(format!("Debian {suite} has no package {pkg}"))
                .hint("choose another suite (spec.artifacts.debSuite) or another source")
        })?;
        let path = apt.dir.join("debs").join(&file_name);
        // The package file itself, verified (downloaded when it is not cached): read only when
        // its programs are not unpacked yet.
        let deb = || -> Result<Option<Vec<u8>>> {
            if let Some(d) =
                fsutil::read_optional(&path)?.filter(|d| crate::blob::sha256_hex(d) == sha)
            {
                return Ok(Some(d));
            }
            if look_only {
                return Ok(None);
            }
            // apt-get download writes into the current directory: run it from there.
            let get = |apt: &Apt| {
                let mut c = apt.cmd("apt-get");
                c.current_dir(apt.dir.join("debs"));
                c.arg("download").arg(format!("{pkg}={version}"));
                apt.run(c, &format!("apt-get download {pkg}={version}"))
            };
            if let Err(e) = get(&apt) {
                if updated {
                    return Err(e);
                }
                apt.update()?;
                updated = true;
                get(&apt)?;
            }
            let d = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
            super::verify_sha(
                &path.display().to_string(),
                &sha,
                &crate::blob::sha256_hex(&d),
            )?;
            Ok(Some(d))
        };
        let unpacked = apt.dir.join("unpacked");
        let Some(files) = super::deb_files::unpacked(&unpacked, &file_name, &sha, deb, look_only)?
        else {
            return would(&format!("{pkg} {version} and the others"));
        };
        out.push(DebPackage {
            package: pkg.to_string(),
            version,
            file_name,
            sha256: sha,
            files,
        });
    }
    Ok(Got::Debs(out))
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_release_archive_in_apt_sources() {
        let deb822 = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n".to_string();
        assert_eq!(
            super::mirror_from(&[deb822]).as_deref(),
            Some("http://mirror.example/debian")
        );
        let one = "deb [signed-by=/k.gpg] http://m.example/debian bookworm main\n".to_string();
        assert_eq!(
            super::mirror_from(&[one]).as_deref(),
            Some("http://m.example/debian")
        );
        let other = "deb https://packages.example/apt cloud-sdk main\n".to_string();
        assert_eq!(super::mirror_from(&[other]), None);
    }
}
