//! The local Go toolchain that `artifacts build` drives: found (`$KUBICLUSTER_GO`, `PATH`, Go's
//! own install directory), its version and module proxy read, `go build` run with the module
//! files read-only.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

use super::build::GoModule;
use crate::error::Failure;
use crate::fsutil;

/// The local Go toolchain.
pub(super) struct Go {
    pub(super) bin: PathBuf,
    pub(super) version: String,
    pub(super) proxy: String,
}

/// `$KUBICLUSTER_GO`, else `go` on PATH, else where Go's own tarball installs it.
pub(super) fn go_binary() -> PathBuf {
    if let Some(g) = std::env::var_os("KUBICLUSTER_GO").filter(|g| !g.is_empty()) {
        return PathBuf::from(g);
    }
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("go").is_file()));
    let fallback = Path::new("/usr/local/go/bin/go");
    if !on_path && fallback.is_file() {
        fallback.to_path_buf()
    } else {
        PathBuf::from("go")
    }
}

impl Go {
    pub(super) fn find() -> Result<Go> {
        let bin = go_binary();
        let out = Command::new(&bin)
            .args(["env", "GOVERSION", "GOPROXY"])
            .output();
        let out = match out {
            Ok(o) if o.status.success() => o,
            Ok(o) => {
                return Err(Failure::new(format!(
                    "the Go toolchain does not work: {}",
                    last_line(&o.stderr)
                ))
                .hint("check `go env`; kubicluster needs Go 1.26 or newer")
                .into());
            }
            Err(_) => {
                return Err(Failure::new(format!(
                    "no Go toolchain: {} cannot be run (looked at $KUBICLUSTER_GO, PATH and /usr/local/go/bin)",
                    bin.display()
                ))
                .hint("install Go 1.26 or newer (on PATH or in /usr/local/go/bin), or name it with KUBICLUSTER_GO")
                .into());
            }
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let version = lines.next().unwrap_or("").to_string();
        let proxy = lines.next().unwrap_or("").to_string();
        Ok(Go {
            bin,
            version,
            proxy,
        })
    }

    /// Write the embedded module under the cache, download what its go.sum pins.
    pub(super) fn module(&self, cache: &Path, m: &GoModule) -> Result<PathBuf> {
        let dir = cache.join("go").join(m.dir);
        fsutil::ensure_dir(&dir, 0o755)?;
        for (name, text) in m.files {
            fsutil::write_atomic(&dir.join(name), text.as_bytes(), fsutil::PUBLIC)?;
        }
        let o = self.cmd(&dir).args(["mod", "download"]).output()?;
        if !o.status.success() {
            return Err(Failure::new(format!(
                "cannot download the Go modules of go/{}: {}",
                m.dir,
                last_line(&o.stderr)
            ))
            .hint(format!(
                "the Go module proxy ({}) must be reachable, or the module cache filled; check GOPROXY and the network, then run again",
                self.proxy
            ))
            .into());
        }
        Ok(dir)
    }

    pub(super) fn cmd(&self, dir: &Path) -> Command {
        let mut c = Command::new(&self.bin);
        c.current_dir(dir)
            .env("CGO_ENABLED", "0")
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "-mod=readonly -buildvcs=false")
            .stdin(std::process::Stdio::null());
        c
    }

    pub(super) fn build(
        &self,
        dir: &Path,
        packages: &[String],
        ldflags: &str,
        out_dir: &Path,
    ) -> Result<()> {
        let o = self
            .cmd(dir)
            .args(["build", "-trimpath", &format!("-ldflags={ldflags}"), "-o"])
            .arg(format!("{}/", out_dir.display()))
            .args(packages)
            .output()?;
        if !o.status.success() {
            return Err(Failure::new(format!(
                "go build in {} failed: {}",
                dir.display(),
                last_line(&o.stderr)
            ))
            .hint("the whole output: run the same `go build` there; nothing was written to the artifacts directory")
            .into());
        }
        Ok(())
    }

    pub(super) fn build_one(
        &self,
        dir: &Path,
        package: &str,
        ldflags: &str,
        out: &Path,
    ) -> Result<()> {
        let o = self
            .cmd(dir)
            .args(["build", "-trimpath", &format!("-ldflags={ldflags}"), "-o"])
            .arg(out)
            .arg(package)
            .output()?;
        if !o.status.success() {
            return Err(Failure::new(format!(
                "go build {package} in {} failed: {}",
                dir.display(),
                last_line(&o.stderr)
            ))
            .hint("nothing was written to the artifacts directory")
            .into());
        }
        Ok(())
    }
}

pub(super) fn last_line(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(no output)")
        .to_string()
}
