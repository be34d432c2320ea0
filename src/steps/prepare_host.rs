//! `prepare_host` (hypervisor): the host half of the original's `prepare` — Debian packages
//! (apt, only what is missing; bookworm's QEMU pinned), kernel modules (loaded and persisted),
//! sysctls (bridge netfilter is left off on the hypervisor), and with `--write-bridge-config`
//! the ifupdown stanza of the cluster bridge. Also the original's `prepare TEMPLATE KEY`
//! (a hand-made template and its root key taken into the work dir). In lab mode only the
//! template part applies: the lab's libvirtd needs nothing from the host.
//! [`super::readiness`] is `prepare --check`: what is there, what blocks, changing nothing.

use crate::engine::StepId;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::engine::Change;
use crate::engine::Target;
use crate::engine::hv::{Gate, HvStep, Hx};
use crate::error::Failure;
use crate::fsutil;
use crate::spec::{Cluster, ClusterNetMode, HypervisorMode};

pub struct PrepareHost {
    /// The original's `prepare TEMPLATE KEY`.
    pub template: Option<(PathBuf, Option<PathBuf>)>,
    pub write_bridge_config: bool,
}

impl HvStep for PrepareHost {
    fn id(&self) -> StepId {
        StepId::PrepareHost
    }

    fn target(&self) -> Target {
        Target::Local
    }

    fn preflight(&self, cluster: &Cluster, dry_run: bool) -> Result<()> {
        if let Some((t, key)) = &self.template {
            read_template(t, key.as_deref())?;
        }
        if cluster.hypervisor.mode == HypervisorMode::Host && !dry_run && !fsutil::is_root() {
            return Err(Failure::new(
                "prepare changes the host (packages, modules, sysctls, libvirt)",
            )
            .hint("run it as root, or `prepare --check` to only look")
            .into());
        }
        Ok(())
    }

    fn run(&self, hx: &Hx, gate: &mut Gate) -> Result<()> {
        let cluster = hx.cluster;
        if let Some((t, key)) = &self.template {
            take_template(cluster, t, key.as_deref(), gate)?;
        }
        if cluster.hypervisor.mode != HypervisorMode::Host {
            return Ok(());
        }
        let missing = missing_packages();
        if !missing.is_empty() {
            gate.wet(
                Change::InstallPackages {
                    packages: missing.iter().map(|p| p.to_string()).collect(),
                },
                || install_packages(&missing),
            )?;
        }
        host_settings(gate)?;
        if self.write_bridge_config {
            write_bridge_config(cluster, gate)?;
        }
        Ok(())
    }
}

/// The template's bytes and its key's, or why not (bad input).
fn read_template(t: &Path, key: Option<&Path>) -> Result<(Vec<u8>, Vec<u8>, PathBuf)> {
    let bytes = std::fs::read(t).map_err(|e| {
        Failure::bad_input(format!("template {}: {e}", t.display()))
            .hint("give the path of a qcow2 image")
    })?;
    if !bytes.starts_with(b"QFI\xfb") {
        return Err(
            Failure::bad_input(format!("{} is not a qcow2 image", t.display()))
                .hint("only qcow2 templates are supported")
                .into(),
        );
    }
    let key = key.ok_or_else(|| {
        Failure::bad_input("a template needs its root SSH key")
            .hint("kubicluster prepare TEMPLATE.qcow2 KEY")
    })?;
    let key_bytes = std::fs::read(key)
        .map_err(|e| Failure::bad_input(format!("key {}: {e}", key.display())))?;
    Ok((bytes, key_bytes, key.to_path_buf()))
}

fn take_template(cluster: &Cluster, t: &Path, key: Option<&Path>, gate: &mut Gate) -> Result<()> {
    let (bytes, key_bytes, key) = read_template(t, key)?;
    let out = cluster.image_path();
    if fsutil::read_optional(out)?.as_deref() != Some(&bytes[..]) {
        gate.wet(
            Change::TakeFile {
                path: out.display().to_string(),
                from: t.display().to_string(),
                mode: "0644".into(),
            },
            || {
                fsutil::ensure_dir(out.parent().expect("has a parent"), 0o755)?;
                // A template kubicluster did not build: no kernel arguments of its own.
                crate::image::forget_boot_record(out)?;
                fsutil::write_atomic(out, &bytes, 0o644)
            },
        )?;
    }
    if fsutil::read_optional(&cluster.ssh_key)?.as_deref() != Some(&key_bytes[..]) {
        gate.wet(
            Change::TakeFile {
                path: cluster.ssh_key.display().to_string(),
                from: key.display().to_string(),
                mode: "0600".into(),
            },
            || {
                fsutil::ensure_dir(
                    cluster.ssh_key.parent().expect("has a parent"),
                    fsutil::PRIVATE_DIR,
                )?;
                fsutil::write_atomic(&cluster.ssh_key, &key_bytes, fsutil::SECRET)
            },
        )?;
    }
    Ok(())
}

const PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "qemu-utils",
    "libvirt-daemon-system",
    "libvirt-daemon-driver-qemu",
    "libvirt-clients",
    "dnsmasq-base",
    "iptables",
];
const MODULES: &[&str] = &["br_netfilter", "overlay", "vhost_net"];
const SYSCTLS: &[(&str, &str)] = &[
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv6.conf.all.forwarding", "1"),
    ("net.ipv6.conf.default.forwarding", "1"),
];

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("ok installed"))
        .unwrap_or(false)
}

fn sysctl_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

// The host facts `--check` reports and `prepare` acts on: one reading for both.
pub(super) fn missing_packages() -> Vec<&'static str> {
    PACKAGES.iter().filter(|p| !installed(p)).copied().collect()
}

pub(super) fn unloaded_modules() -> Vec<&'static str> {
    MODULES
        .iter()
        .filter(|m| !Path::new("/sys/module").join(m).exists())
        .copied()
        .collect()
}

pub(super) fn unset_sysctls() -> Vec<(&'static str, &'static str)> {
    SYSCTLS
        .iter()
        .filter(|(k, v)| {
            std::fs::read_to_string(sysctl_path(k))
                .map(|s| s.trim() != *v)
                .unwrap_or(true)
        })
        .copied()
        .collect()
}

fn install_packages(missing: &[&str]) -> Result<()> {
    let run = |args: &[&str]| -> Result<()> {
        let st = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("run apt-get")?;
        anyhow::ensure!(st.success(), "apt-get {} failed", args.join(" "));
        Ok(())
    };
    run(&["update", "-q"])?;
    // A newer qemu-utils (from backports) conflicts with bookworm's QEMU: pin bookworm's.
    let mut args = vec![
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "--allow-downgrades",
    ];
    let pinned: Vec<String> = missing
        .iter()
        .map(|p| {
            if *p == "qemu-utils" || *p == "qemu-system-x86" {
                format!("{p}/bookworm")
            } else {
                p.to_string()
            }
        })
        .collect();
    args.extend(pinned.iter().map(String::as_str));
    if !missing.contains(&"qemu-utils") && missing.contains(&"qemu-system-x86") {
        args.push("qemu-utils/bookworm");
    }
    run(&args)
}

/// A file of the hypervisor's own settings, written 0644.
fn host_file(path: &Path) -> Change {
    Change::WriteHostFile {
        path: path.display().to_string(),
        mode: "0644".into(),
    }
}

fn host_settings(gate: &mut Gate) -> Result<()> {
    let conf = MODULES.join("\n") + "\n";
    let path = Path::new("/etc/modules-load.d/kubicluster.conf");
    if fsutil::read_optional(path)?.as_deref() != Some(conf.as_bytes()) {
        gate.wet(host_file(path), || {
            fsutil::write_atomic(path, conf.as_bytes(), 0o644)
        })?;
    }
    for m in unloaded_modules() {
        gate.wet(
            Change::LoadModule {
                name: m.to_string(),
            },
            || {
                let st = Command::new("modprobe")
                    .arg(m)
                    .status()
                    .context("run modprobe")?;
                anyhow::ensure!(st.success(), "modprobe {m} failed");
                Ok(())
            },
        )?;
    }
    let text: String = SYSCTLS
        .iter()
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect();
    let path = Path::new("/etc/sysctl.d/90-kubicluster.conf");
    if fsutil::read_optional(path)?.as_deref() != Some(text.as_bytes()) {
        gate.wet(host_file(path), || {
            fsutil::write_atomic(path, text.as_bytes(), 0o644)
        })?;
    }
    for (k, v) in unset_sysctls() {
        let set = Change::SetSysctl {
            key: k.to_string(),
            value: v.to_string(),
        };
        gate.wet(set, || {
            std::fs::write(sysctl_path(k), v).with_context(|| format!("set {k}"))
        })?;
    }
    Ok(())
}

/// The ifupdown stanza for the cluster bridge in bridged mode (needs bridge-utils).
pub fn bridge_stanza(cluster: &Cluster) -> String {
    let net = cluster.networks.cluster;
    let gw = net.hosts().next().expect("validated");
    format!(
        "# written by kubicluster prepare --write-bridge-config\nauto {b}\niface {b} inet static\n    address {gw}/{p}\n    bridge-ports {port}\n    bridge-stp off\n    bridge-fd 0\n",
        b = cluster.networks.bridge,
        p = net.prefix_len(),
        port = cluster.networks.bridge_port
    )
}

fn write_bridge_config(cluster: &Cluster, gate: &mut Gate) -> Result<()> {
    if cluster.networks.mode != ClusterNetMode::Bridged {
        return Err(Failure::bad_input(
            "--write-bridge-config is for networks.cluster.mode: bridged",
        )
        .hint("pass --cluster-net-mode bridged, or drop the flag")
        .into());
    }
    let path = Path::new("/etc/network/interfaces.d")
        .join(format!("kubicluster-{}", cluster.networks.bridge));
    let text = bridge_stanza(cluster);
    match fsutil::read_optional(&path)? {
        Some(old) if old == text.as_bytes() => {}
        Some(_) => {
            return Err(Failure::new(format!("{} exists with other content", path.display()))
                .hint("compare it with the spec and remove it if kubicluster should write it again")
                .into());
        }
        None => {
            gate.wet(host_file(&path), || {
                fsutil::ensure_dir(path.parent().expect("has a parent"), 0o755)?;
                fsutil::write_atomic(&path, text.as_bytes(), 0o644)
            })?;
            gate.say(&format!(
                "  bring the bridge up with `ifup {}` (needs bridge-utils; moves {}'s address to the bridge)",
                cluster.networks.bridge,
                cluster.networks.bridge_port
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::spec::{ClusterNetMode, Overrides, resolve};

    #[test]
    fn bridge_stanza_matches_the_original_layout() {
        let ov = Overrides {
            cluster_net_mode: Some(ClusterNetMode::Bridged),
            ..Overrides::default()
        };
        let c = resolve(None, &ov, &|_| None).unwrap().0;
        assert_eq!(
            super::bridge_stanza(&c),
            "# written by kubicluster prepare --write-bridge-config\nauto vmbr24\niface vmbr24 inet static\n    address 192.168.24.1/24\n    bridge-ports eth1\n    bridge-stp off\n    bridge-fd 0\n"
        );
    }
}
