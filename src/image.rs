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

/// What the template's kernel line adds for guests QEMU emulates (TCG). An emulated CPU does
/// not speculate, so the guest kernel's Spectre mitigations (retpolines, RSB filling, swapgs
/// barriers) protect nothing there and only cost time: a guest's fork/exec loop and a Go
/// program ran 9–12 % faster without them (measured under TCG on this project's lab host).
/// Never for KVM guests: there the host's CPU runs the guest's code.
pub const EMULATED_KERNEL_ARGS: &str = "mitigations=off";

/// The kernel arguments the template of `cluster` is built with: [`EMULATED_KERNEL_ARGS`] when
/// every VM of it is emulated (domain type `qemu`, chosen, or `auto` on a host whose KVM cannot
/// run guests and no other hypervisor that might), else none.
pub fn kernel_args(cluster: &crate::spec::Cluster) -> &'static str {
    use crate::spec::DomainTypeChoice;
    let emulated = match cluster.hypervisor.domain_type {
        DomainTypeChoice::Qemu => true,
        DomainTypeChoice::Kvm => false,
        DomainTypeChoice::Auto => {
            !crate::hypervisor::kvm_usable()
                && cluster
                    .hosts
                    .iter()
                    .all(|h| !crate::hypervisor::is_remote(&h.uri))
        }
    };
    if emulated { EMULATED_KERNEL_ARGS } else { "" }
}

/// The file beside a template that records the kernel arguments it was built with (absent: a
/// template kubicluster did not build, or built before this file existed: none).
pub fn boot_record(image: &Path) -> PathBuf {
    let mut name = image.as_os_str().to_owned();
    name.push(".kernel-args");
    PathBuf::from(name)
}

/// Whether the template at `image` was built for emulated guests only (see [`boot_record`]).
pub fn built_for_emulation(image: &Path) -> bool {
    std::fs::read_to_string(boot_record(image))
        .map(|s| s.split_whitespace().any(|a| a == EMULATED_KERNEL_ARGS))
        .unwrap_or(false)
}

/// Remove the record beside `image` (before the template is replaced by another).
pub fn forget_boot_record(image: &Path) -> Result<()> {
    let record = boot_record(image);
    match std::fs::remove_file(&record) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).context(format!("remove {}", record.display()))
        }
        _ => Ok(()),
    }
}

/// Build the template at `out` unless it exists (or `force`), its kernel line extended by
/// `kernel_args`. Returns true if it was built.
pub fn build(out: &Path, force: bool, kernel_args: &str) -> Result<bool> {
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
    // The record of the template being replaced goes first: a kill before the new one's is
    // written leaves none (the new template then counts as built for any guest).
    forget_boot_record(out)?;
    let status = Command::new("bash")
        .arg("-c")
        .arg(BUILD_SCRIPT)
        .env("OUT", out)
        .env("WORK", &work)
        .env("FILES", &files)
        .env("SOURCES", host_sources()?)
        .env("SIZE_GIB", "8")
        .env("KERNEL_ARGS", kernel_args)
        .status()
        .context("run the image recipe")?;
    let _ = std::fs::remove_dir_all(&work);
    if !status.success() {
        bail!("the image recipe failed ({status}); its output is above");
    }
    fsutil::write_atomic(
        &boot_record(out),
        format!("{kernel_args}\n").as_bytes(),
        0o644,
    )?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::DomainTypeChoice;

    /// Only a template every VM of which is emulated loses the mitigations.
    #[test]
    fn the_kernel_args_follow_the_guests_the_template_is_for() {
        let ov = crate::spec::Overrides::default();
        let mut c = crate::spec::resolve(None, &ov, &|_| None).unwrap().0;
        c.hypervisor.domain_type = DomainTypeChoice::Qemu;
        assert_eq!(kernel_args(&c), EMULATED_KERNEL_ARGS);
        c.hypervisor.domain_type = DomainTypeChoice::Kvm;
        assert_eq!(kernel_args(&c), "");
        // auto: this host decides, unless another host (perhaps with KVM) runs VMs too.
        c.hypervisor.domain_type = DomainTypeChoice::Auto;
        let here = if crate::hypervisor::kvm_usable() {
            ""
        } else {
            EMULATED_KERNEL_ARGS
        };
        assert_eq!(kernel_args(&c), here);
        c.hosts[0].uri = "qemu+ssh://root@hv2/system".into();
        assert_eq!(kernel_args(&c), "");
    }

    #[test]
    fn the_record_sits_beside_the_template() {
        assert_eq!(
            boot_record(Path::new("/x/kubicluster-bookworm.qcow2")),
            Path::new("/x/kubicluster-bookworm.qcow2.kernel-args")
        );
    }
}
