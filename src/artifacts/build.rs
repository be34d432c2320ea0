//! `kubicluster artifacts build`: the cluster's binaries built on the hypervisor with the local Go
//! toolchain from the Go module proxy, the way kind's `build node-image` or a Kubernetes
//! developer's `make` does — for machines (like this project's lab) that can reach a module proxy
//! but not the release downloads, and for developers testing their own Kubernetes tree.
//!
//! Each build set pins one Kubernetes release with the etcd, crictl and CoreDNS that go with it.
//! Every Go module is committed under `go/` with its `go.sum` (so a build is reproducible and the
//! module proxy cannot hand over different code) and embedded in this binary; `go build` runs in a
//! copy of it under the cache directory. The output is the layout the `dir` source reads
//! (upstream file names, etcd as its release tarball) plus three OCI image archives (a pause
//! sandbox, CoreDNS, and a busybox test image when the host has busybox-static) and a `SHA256SUMS`
//! manifest. It is written to a temporary sibling and renamed into place, so a directory exists
//! whole or not at all; a later build that finds it complete and matching its manifest reuses it.

use std::path::{Path, PathBuf};

use std::time::Instant;

use anyhow::{Context, Result};

use super::go::Go;
use crate::error::Failure;
use crate::fsutil;
use crate::images::{LayerEntry, oci_archive};
pub use crate::spec::build_sets::*;

/// A Go module of the project's own, embedded: its directory under `go/` and its files.
pub struct GoModule {
    pub dir: &'static str,
    pub(super) files: &'static [(&'static str, &'static str)],
}

macro_rules! go_module {
    ($dir:literal, [$($f:literal),*]) => {
        GoModule {
            dir: $dir,
            files: &[$(($f, include_str!(concat!("../../go/", $dir, "/", $f)))),*],
        }
    };
}

/// The Go module of each etcd release a build set pins.
const ETCD_MODULES: &[(&str, GoModule)] = &[
    (
        "3.7.3",
        go_module!("etcd-v3.7.3", ["go.mod", "go.sum", "tools.go"]),
    ),
    (
        "3.6.16",
        go_module!("etcd-v3.6.16", ["go.mod", "go.sum", "tools.go"]),
    ),
];
const CRI_TOOLS: GoModule = go_module!("cri-tools-v1.37.0", ["go.mod", "go.sum", "tools.go"]);
const COREDNS: GoModule = go_module!("coredns-v1.15.0", ["go.mod", "go.sum", "main.go"]);
const PAUSE: GoModule = go_module!("pause", ["go.mod", "main.go"]);

/// The Go module of each Kubernetes release a build set pins (`spec::build_sets`).
const KUBERNETES_MODULES: &[(&str, GoModule)] = &[
    (
        "1.37.2",
        go_module!("kubernetes-v1.37.2", ["go.mod", "go.sum", "tools.go"]),
    ),
    (
        "1.36.3",
        go_module!("kubernetes-v1.36.3", ["go.mod", "go.sum", "tools.go"]),
    ),
    (
        "1.35.4",
        go_module!("kubernetes-v1.35.4", ["go.mod", "go.sum", "tools.go"]),
    ),
];

/// The embedded Go module that pins `set`'s etcd release.
fn etcd_module(set: &BuildSet) -> &'static GoModule {
    ETCD_MODULES
        .iter()
        .find(|(v, _)| *v == set.etcd)
        .map(|(_, m)| m)
        .expect("every build set's etcd has its module (tested)")
}

/// The embedded Go module that pins `set`'s Kubernetes release.
fn kubernetes_module(set: &BuildSet) -> &'static GoModule {
    KUBERNETES_MODULES
        .iter()
        .find(|(v, _)| *v == set.kubernetes)
        .map(|(_, m)| m)
        .expect("every build set has its module (tested)")
}

/// The Kubernetes components built, as `cmd/<name>` of k8s.io/kubernetes.
pub const KUBERNETES_BINARIES: &[&str] = &[
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
];

/// The catalogue's components a build provides.
pub const BUILT: &[&str] = &[
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
    "crictl",
];

/// What to build and where.
pub struct Request<'a> {
    pub set: &'a BuildSet,
    pub cache: PathBuf,
    /// A local Kubernetes checkout to build the Kubernetes components from instead.
    pub source: Option<PathBuf>,
    /// Rebuild even if a complete build is there.
    pub force: bool,
}

/// What a build did.
pub struct Outcome {
    pub dir: PathBuf,
    pub reused: bool,
    /// (what, seconds) per part built.
    pub timings: Vec<(String, f64)>,
    pub files: Vec<(String, u64)>,
    pub notes: Vec<String>,
}

/// The manifest's name in an output directory.
pub const MANIFEST: &str = "SHA256SUMS";

/// Read a `sha256sum`-format manifest: (file, digest).
pub fn read_manifest(dir: &Path) -> Result<Option<Vec<(String, String)>>> {
    let Some(bytes) = fsutil::read_optional(&dir.join(MANIFEST))? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for line in String::from_utf8_lossy(&bytes).lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (sha, name) = line.split_once("  ").with_context(|| {
            format!("{}: unreadable line {line:?}", dir.join(MANIFEST).display())
        })?;
        out.push((name.to_string(), sha.to_string()));
    }
    Ok(Some(out))
}

/// What a build holds, first line of its `BUILD-INFO`: a build made by an older recipe (one
/// that lacked a file this one makes) is rebuilt, not reused.
const RECIPE: &str = "recipe 2: etcd tarball with etcd, etcdctl and etcdutl";

fn same_recipe(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("BUILD-INFO")).is_ok_and(|t| t.lines().next() == Some(RECIPE))
}

/// Does the build in `dir` hold `set`'s etcd? A build made while the set pinned another etcd
/// (1.37.2 came with 3.6.16 before kubeadm's pairing, 3.7) is rebuilt, not reused.
fn holds_etcd_of(dir: &Path, set: &BuildSet) -> Result<bool> {
    let tarball = etcd_tarball(set);
    Ok(read_manifest(dir)?.is_some_and(|l| l.iter().any(|(name, _)| *name == tarball)))
}

fn etcd_tarball(set: &BuildSet) -> String {
    format!("etcd-v{}-linux-amd64.tar.gz", set.etcd)
}

/// A build directory is complete when every file its manifest names is there with that digest.
pub fn verify_dir(dir: &Path) -> Result<bool> {
    let Some(list) = read_manifest(dir)? else {
        return Ok(false);
    };
    for (name, sha) in &list {
        let Some(got) = super::digest_of(&dir.join(name))? else {
            return Ok(false);
        };
        if got != *sha {
            return Ok(false);
        }
    }
    Ok(!list.is_empty())
}

/// Build (or reuse) the artifacts of `req.set`. `progress` gets a line per part.
pub fn build(req: &Request, progress: &mut dyn FnMut(&str)) -> Result<Outcome> {
    let set = req.set;
    let out = output_dir(&req.cache, set.kubernetes);
    let out = match &req.source {
        Some(_) => out.with_file_name(format!("kubernetes-v{}-source", set.kubernetes)),
        None => out,
    };
    if !req.force
        && req.source.is_none()
        && verify_dir(&out)?
        && same_recipe(&out)
        && holds_etcd_of(&out, set)?
    {
        return Ok(Outcome {
            files: listing(&out)?,
            dir: out,
            reused: true,
            timings: Vec::new(),
            notes: Vec::new(),
        });
    }
    let go = Go::find()?;
    progress(&format!("go: {} (GOPROXY {})", go.version, go.proxy));
    let parent = out.parent().expect("output dir has a parent");
    fsutil::ensure_dir(parent, 0o755)?;
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        out.file_name().unwrap().to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    fsutil::ensure_dir(&tmp, 0o755)?;
    let cleanup = RemoveOnDrop(tmp.clone());
    let mut timings = Vec::new();
    let mut notes = Vec::new();
    let mut timed = |what: String, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        let t = Instant::now();
        f()?;
        let s = t.elapsed().as_secs_f64();
        progress(&format!("built {what} in {s:.0} s"));
        timings.push((what, s));
        Ok(())
    };

    // Kubernetes, from the pinned module or the user's checkout.
    let packages: Vec<String> = KUBERNETES_BINARIES
        .iter()
        .map(|b| format!("k8s.io/kubernetes/cmd/{b}"))
        .collect();
    let ldflags = kubernetes_ldflags(set.kubernetes);
    timed(format!("kubernetes v{}", set.kubernetes), &mut || {
        let dir = match &req.source {
            Some(src) => {
                anyhow::ensure!(
                    src.join("go.mod").is_file() && src.join("cmd/kube-apiserver").is_dir(),
                    Failure::bad_input(format!(
                        "{} is not a Kubernetes checkout (no go.mod and cmd/kube-apiserver)",
                        src.display()
                    ))
                    .hint("give the root of a k8s.io/kubernetes clone")
                );
                src.clone()
            }
            None => go.module(&req.cache, kubernetes_module(set))?,
        };
        go.build(&dir, &packages, &ldflags, &tmp)
    })?;
    // etcd, etcdctl and etcdutl, packed as the release tarball the catalogue reads.
    timed(format!("etcd v{}", set.etcd), &mut || {
        let dir = go.module(&req.cache, etcd_module(set))?;
        let bin = tmp.join(".etcd");
        fsutil::ensure_dir(&bin, 0o755)?;
        go.build_one(
            &dir,
            "go.etcd.io/etcd/server/v3",
            "-s -w",
            &bin.join("etcd"),
        )?;
        let top = format!("etcd-v{}-linux-amd64", set.etcd);
        let mut members = vec![(format!("{top}/etcd"), std::fs::read(bin.join("etcd"))?)];
        for tool in ["etcdctl", "etcdutl"] {
            go.build_one(
                &dir,
                &format!("go.etcd.io/etcd/{tool}/v3"),
                "-s -w",
                &bin.join(tool),
            )?;
            members.push((format!("{top}/{tool}"), std::fs::read(bin.join(tool))?));
        }
        let tgz = tarball(&members)?;
        std::fs::remove_dir_all(&bin)?;
        std::fs::write(tmp.join(etcd_tarball(set)), tgz)?;
        Ok(())
    })?;
    timed(format!("crictl v{}", set.crictl), &mut || {
        let dir = go.module(&req.cache, &CRI_TOOLS)?;
        let bin = tmp.join(".crictl");
        go.build_one(
            &dir,
            "sigs.k8s.io/cri-tools/cmd/crictl",
            &format!(
                "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=v{}",
                set.crictl
            ),
            &bin,
        )?;
        let tgz = tarball(&[("crictl".into(), std::fs::read(&bin)?)])?;
        std::fs::remove_file(&bin)?;
        std::fs::write(
            tmp.join(format!("crictl-v{}-linux-amd64.tar.gz", set.crictl)),
            tgz,
        )?;
        Ok(())
    })?;
    // The images: a pause sandbox, CoreDNS, and a busybox for the smoke test.
    timed("images (pause, CoreDNS, busybox)".into(), &mut || {
        let images = tmp.join("images");
        fsutil::ensure_dir(&images, 0o755)?;
        let scratch = tmp.join(".bin");
        fsutil::ensure_dir(&scratch, 0o755)?;
        let pause = go.module(&req.cache, &PAUSE)?;
        go.build_one(&pause, ".", "-s -w", &scratch.join("pause"))?;
        let coredns = go.module(&req.cache, &COREDNS)?;
        go.build_one(&coredns, ".", "-s -w", &scratch.join("coredns"))?;
        let data = std::fs::read(scratch.join("pause"))?;
        let entries = [LayerEntry::File {
            path: "pause",
            mode: 0o755,
            data: &data,
        }];
        std::fs::write(
            images.join("pause.tar"),
            oci_archive(&pause_image(set), &entries, &["/pause"], &[])?,
        )?;
        let data = std::fs::read(scratch.join("coredns"))?;
        let entries = [LayerEntry::File {
            path: "coredns",
            mode: 0o755,
            data: &data,
        }];
        std::fs::write(
            images.join("coredns.tar"),
            oci_archive(&coredns_image(set), &entries, &["/coredns"], &[])?,
        )?;
        std::fs::remove_dir_all(&scratch)?;
        match busybox_image()? {
            Some(tar) => std::fs::write(images.join("busybox.tar"), tar)?,
            None => notes.push(
                "no busybox test image: the host has no static /bin/busybox (apt-get install busybox-static)".into(),
            ),
        }
        Ok(())
    })?;

    // The manifest last, then the whole directory into place at once.
    let files = listing(&tmp)?;
    let mut manifest = String::new();
    for (name, _) in &files {
        let sha = crate::blob::sha256_hex(&std::fs::read(tmp.join(name))?);
        manifest.push_str(&format!("{sha}  {name}\n"));
    }
    std::fs::write(tmp.join(MANIFEST), manifest)?;
    std::fs::write(
        tmp.join("BUILD-INFO"),
        format!(
            "{RECIPE}\nkubernetes v{} ({})\netcd v{}\ncrictl v{}\ncoredns v{}\n{}\nCGO_ENABLED=0 -trimpath -ldflags=-s -w\n",
            set.kubernetes,
            match &req.source {
                Some(s) => format!("from {}", s.display()),
                None => format!("go/{}", kubernetes_module(set).dir),
            },
            set.etcd,
            set.crictl,
            set.coredns,
            go.version,
        ),
    )?;
    if out.exists() {
        let old = parent.join(format!(".old-{}", std::process::id()));
        std::fs::rename(&out, &old)?;
        std::fs::rename(&tmp, &out)?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&tmp, &out)
            .with_context(|| format!("move the build into {}", out.display()))?;
    }
    std::mem::forget(cleanup);
    Ok(Outcome {
        files: listing(&out)?,
        dir: out,
        reused: false,
        timings,
        notes,
    })
}

/// Version stamps, as Kubernetes' own build sets them: without them every component reports
/// v0.0.0 (kubelets would register with that version, and version-skew checks go wrong).
pub fn kubernetes_ldflags(version: &str) -> String {
    let minor = version.split('.').nth(1).unwrap_or("0");
    let mut flags = String::from("-s -w");
    for pkg in [
        "k8s.io/component-base/version",
        "k8s.io/client-go/pkg/version",
    ] {
        for (k, v) in [
            ("gitVersion", format!("v{version}")),
            ("gitMajor", "1".to_string()),
            ("gitMinor", minor.to_string()),
            ("gitTreeState", "clean".to_string()),
            ("buildDate", "1970-01-01T00:00:00Z".to_string()),
        ] {
            flags.push_str(&format!(" -X {pkg}.{k}={v}"));
        }
    }
    flags
}

/// The files of a build directory (relative, sorted) and their sizes, the manifest excepted.
fn listing(dir: &Path) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for sub in ["", "images"] {
        let d = dir.join(sub);
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let e = e?;
            let name = e.file_name().to_string_lossy().to_string();
            let meta = e.metadata()?;
            if meta.is_file() && !name.starts_with('.') && name != MANIFEST && name != "BUILD-INFO"
            {
                let rel = if sub.is_empty() {
                    name
                } else {
                    format!("{sub}/{name}")
                };
                out.push((rel, meta.len()));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn tarball(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut t = tar::Builder::new(gz);
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o755);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        t.append_data(&mut h, name, data.as_slice())?;
    }
    Ok(t.into_inner()?.finish()?)
}

/// busybox-static's binary as a test image (sh, sleep, wget, nslookup, httpd, nc …), if the host
/// has it; a dynamically linked busybox would not run in an image with no libc.
fn busybox_image() -> Result<Option<Vec<u8>>> {
    let Some(data) = fsutil::read_optional(Path::new("/bin/busybox"))? else {
        return Ok(None);
    };
    // A static ELF has no PT_INTERP program header.
    if !is_static_elf(&data) {
        return Ok(None);
    }
    let applets = [
        "sh", "sleep", "cat", "echo", "ls", "wget", "nslookup", "httpd", "nc", "ip", "ping",
        "hostname", "uname", "env", "true", "mkdir",
    ];
    let links: Vec<String> = applets.iter().map(|a| format!("bin/{a}")).collect();
    let mut entries = vec![
        LayerEntry::Dir("bin"),
        LayerEntry::Dir("tmp"),
        LayerEntry::File {
            path: "bin/busybox",
            mode: 0o755,
            data: &data,
        },
    ];
    entries.extend(links.iter().map(|l| LayerEntry::Symlink {
        path: l,
        target: "busybox",
    }));
    Ok(Some(oci_archive(
        BUSYBOX_IMAGE,
        &entries,
        &[],
        &["/bin/sh"],
    )?))
}

fn is_static_elf(data: &[u8]) -> bool {
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let u64_at =
        |o: usize| u64::from_le_bytes(data[o..o + 8].try_into().unwrap_or([0; 8])) as usize;
    let (phoff, phentsize, phnum) = (u64_at(32), u16_at(54), u16_at(56));
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        o + 4 <= data.len() && u32::from_le_bytes(data[o..o + 4].try_into().unwrap()) != 3
    })
}

struct RemoveOnDrop(PathBuf);
impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
#[path = "build_tests.rs"]
mod tests;
