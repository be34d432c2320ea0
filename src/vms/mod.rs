//! The VMs of a cluster, the mechanics under the `prepare_networks`, `create_vms` and
//! `destroy_vms` steps: [`infra`] (networks, pool, SSH key, template volume), [`plan`] (read
//! only), [`lifecycle`] (create, start, resume, re-address, remove), [`wait`] (SSH with the
//! pinned key, identity verified), [`power`] (stop, start), [`snapshot`] (disk layers) and
//! [`status`]. Every mutation goes through the engine's
//! [`Gate`]. kubicluster only ever touches domains whose metadata names this cluster.

pub mod hosts;
pub mod infra;
pub mod lifecycle;
pub mod pins;
pub mod plan;
pub mod power;
pub mod snapshot;
pub mod status;
pub mod wait;

pub use hosts::*;
pub use infra::*;
pub use lifecycle::*;
pub use plan::*;
pub use power::*;
pub use status::*;
pub use wait::*;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use ssh_key::PublicKey;

pub use crate::engine::hv::Gate;
pub use crate::engine::{Change, VmOp};
use crate::error::Failure;
use crate::fsutil;
use crate::host::Host;
use crate::host::ssh::SshHost;
use crate::host::{Cmd, HostError};
use crate::hypervisor::{self, Hypervisor, VmFiles, VmState, VolumeInfo};
use crate::par;
use crate::spec::{Cluster, ClusterNetMode, Node};
use crate::sshkeys;

pub(crate) fn owned_by_us(cluster: &Cluster, d: &hypervisor::DomainInfo) -> Result<()> {
    match d.owner() {
        Some(o) if o == cluster.name => Ok(()),
        owner => Err(Failure::bad_input(format!(
            "{}: a libvirt domain with this name exists and belongs to {}",
            d.name,
            owner.map(|o| format!("kubicluster cluster {o:?}")).unwrap_or_else(|| "something else (no kubicluster metadata)".into())
        ))
        .hint("rename the node in the spec or remove that domain yourself; kubicluster never touches domains it did not create")
        .into()),
    }
}

/// The pinned host key of a node (generated on first use, kept across re-creation).
pub fn host_key(cluster: &Cluster, node: &str) -> Result<ssh_key::PrivateKey> {
    let files = VmFiles::for_node(cluster, node);
    sshkeys::ensure_key(&files.host_key, &format!("{node}@{}", cluster.name))
}

/// The host key a node must present, from the pin store (never minted here: reading a pin
/// must not create one; `create-vms` makes host keys before a VM first boots).
pub fn pinned_key(cluster: &Cluster, node: &str) -> Result<PublicKey> {
    crate::vms::pins::require(cluster, node)
}

/// `known_hosts`, rewritten from the pin store. Returns the nodes whose line there differed
/// from their pin (tampered or stale), so the caller can say so.
pub fn write_known_hosts(cluster: &Cluster) -> Result<Vec<String>> {
    static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    let mut text = String::new();
    for n in &cluster.nodes {
        let Ok(key) = pinned_key(cluster, &n.name) else {
            continue;
        };
        text.push_str(&format!(
            "{},{} {}\n",
            n.name,
            n.hypervisor_ip,
            sshkeys::public_line(&key)
        ));
    }
    let path = cluster.known_hosts();
    let old = fsutil::read_optional(&path)?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let mut differed = Vec::new();
    for want in text.lines() {
        let host = want.split(' ').next().unwrap_or_default();
        if let Some(have) = old.lines().find(|l| l.split(' ').next() == Some(host))
            && have != want
        {
            differed.push(host.split(',').next().unwrap_or(host).to_string());
        }
    }
    for n in &differed {
        tracing::warn!(node = %n, "known_hosts line differed from the pinned key; rewritten from the pin store");
    }
    if old != text {
        fsutil::ensure_dir(path.parent().expect("has a parent"), fsutil::PRIVATE_DIR)?;
        fsutil::write_atomic(&path, text.as_bytes(), fsutil::PUBLIC)?;
    }
    Ok(differed)
}

/// The disk size the spec asks for (`diskGiB`), in bytes.
pub(crate) fn disk_bytes(cluster: &Cluster) -> u64 {
    u64::from(cluster.hypervisor.disk_gib) << 30
}

/// The overlay volume of a node's VM in the storage pool.
pub(crate) fn volume_name(node: &str) -> String {
    format!("{node}.qcow2")
}

/// Whether `e` is (or wraps) a refused host key: decided on the type, never on the message.
pub fn is_key_mismatch(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<HostError>(),
            Some(HostError::HostKeyMismatch { .. })
        )
    })
}

/// The change `op` on the VM `vm`.
pub(crate) fn vm_change(vm: &str, op: VmOp) -> Change {
    Change::Vm {
        vm: vm.to_string(),
        op,
    }
}

#[cfg(test)]
pub(crate) mod tests;
