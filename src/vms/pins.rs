//! The pin store: the SSH host key each VM must present, kept in the cluster's work dir
//! (`vms/<node>/ssh_host_ed25519_key[.pub]`), and the OpenSSH `known_hosts` written from it.
//! Reading a pin never creates one: only `create-vms` mints host keys (before the VM first boots).

use std::path::PathBuf;

use anyhow::{Context, Result};
use ssh_key::{PrivateKey, PublicKey};

use crate::spec::Cluster;

/// The private host key file kubicluster generated for `node`.
pub fn host_key_path(cluster: &Cluster, node: &str) -> PathBuf {
    cluster.vm_dir(node).join("ssh_host_ed25519_key")
}

/// The pinned public host key of `node`, or `None` when there is no pin yet. The private key
/// (what the VM was given) wins over the `.pub` file when both exist.
pub fn pinned(cluster: &Cluster, node: &str) -> Result<Option<PublicKey>> {
    let private = host_key_path(cluster, node);
    if private.exists() {
        let k = PrivateKey::read_openssh_file(&private)
            .with_context(|| format!("{node}: read pinned host key {}", private.display()))?;
        return Ok(Some(k.public_key().clone()));
    }
    let public = private.with_extension("pub");
    if public.exists() {
        let k = PublicKey::read_openssh_file(&public)
            .with_context(|| format!("{node}: read pinned host key {}", public.display()))?;
        return Ok(Some(k));
    }
    Ok(None)
}

/// The pinned key, or an error saying the node has no pin (it was never created by kubicluster).
pub fn require(cluster: &Cluster, node: &str) -> Result<PublicKey> {
    pinned(cluster, node)?.ok_or_else(|| {
        crate::error::Failure::new(format!(
            "{node}: no pinned SSH host key in {}",
            cluster.vm_dir(node).display()
        ))
        .hint("create the VM with `kubicluster create-vms` first")
        .into()
    })
}

/// How to reach `node` over SSH: its hypervisor-net address, the cluster's SSH user and key,
/// and its pinned host key (required).
pub fn ssh_target(
    cluster: &Cluster,
    node: &crate::spec::Node,
    connect_timeout: std::time::Duration,
) -> Result<crate::host::ssh::SshTarget> {
    Ok(crate::host::ssh::SshTarget {
        name: node.name.clone(),
        addr: std::net::SocketAddr::new(node.hypervisor_ip.into(), cluster.ssh_port),
        user: cluster.ssh_user.clone(),
        key: cluster.ssh_key.clone(),
        pinned: require(cluster, &node.name)?,
        connect_timeout,
        digest_cache: Some(cluster.vm_dir(&node.name).join("digests")),
        digest_cache_read_only: false,
    })
}
