//! `kubicluster image build`: the Debian 12 template every VM is an overlay of. The recipe is a
//! shell script (templates/image/build-image.sh: mmdebstrap → ext4 from a directory → extlinux →
//! compressed qcow2) because it is a sequence of Debian tools; this module gives it its inputs.
//!
//! Identity: each clone learns its hostname, both static addresses, root's authorized key and its
//! own SSH host key at every boot from QEMU fw_cfg entries libvirt passes (`<sysinfo type='fwcfg'>`),
//! read by a oneshot unit before networking. No template IP, no re-addressing, no reboot; and
//! since kubicluster generated the host key, it is known before the first connection. fw_cfg was
//! chosen over SMBIOS (too short for a key) and a NoCloud seed (cloud-init is heavy under TCG).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::error::Failure;
use crate::fsutil;

const BUILD_SCRIPT: &str = include_str!("../templates/image/build-image.sh");
const IDENTITY_SCRIPT: &str = include_str!("../templates/image/kubicluster-identity.sh");
const IDENTITY_UNIT: &str = include_str!("../templates/image/kubicluster-identity.service");

/// Debian packages the recipe needs on the hypervisor.
pub const BUILD_PACKAGES: &[(&str, &str)] = &[
    ("mmdebstrap", "mmdebstrap"),
    ("sfdisk", "fdisk"),
    ("extlinux", "extlinux"),
    ("mkfs.ext4", "e2fsprogs"),
    ("qemu-img", "qemu-utils"),
];

/// The apt sources the host uses, handed to mmdebstrap (the VM gets the same mirror).
fn host_sources() -> Result<PathBuf> {
    ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .context("no apt sources on this host (/etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list)")
}

/// Build the template at `out` unless it exists (or `force`). Returns true if it was built.
pub fn build(out: &Path, force: bool) -> Result<bool> {
    if out.is_file() && !force {
        return Ok(false);
    }
    let missing: Vec<_> = BUILD_PACKAGES
        .iter()
        .filter(|(b, _)| !fsutil::find_program(b))
        .map(|(_, p)| *p)
        .collect();
    if !missing.is_empty() || !Path::new("/usr/lib/syslinux/mbr/mbr.bin").is_file() {
        return Err(
            Failure::new("building the image needs tools that are missing")
                .hint(format!(
                    "apt-get install {} syslinux-common",
                    missing.join(" ")
                ))
                .into(),
        );
    }
    let dir = out.parent().unwrap_or(Path::new("."));
    fsutil::ensure_dir(dir, 0o755)?;
    let work = dir.join(format!(".build-{}", std::process::id()));
    let files = work.join("files");
    fsutil::ensure_dir(&files, 0o755)?;
    fsutil::write_atomic(
        &files.join("kubicluster-identity.sh"),
        IDENTITY_SCRIPT.as_bytes(),
        0o755,
    )?;
    fsutil::write_atomic(
        &files.join("kubicluster-identity.service"),
        IDENTITY_UNIT.as_bytes(),
        0o644,
    )?;
    let status = Command::new("bash")
        .arg("-c")
        .arg(BUILD_SCRIPT)
        .env("OUT", out)
        .env("WORK", &work)
        .env("FILES", &files)
        .env("SOURCES", host_sources()?)
        .env("SIZE_GIB", "8")
        .status()
        .context("run the image recipe")?;
    let _ = std::fs::remove_dir_all(&work);
    if !status.success() {
        bail!("the image recipe failed ({status}); its output is above");
    }
    Ok(true)
}
