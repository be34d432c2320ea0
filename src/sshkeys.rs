//! SSH keys made on the hypervisor: the client key kubicluster logs in with, and one host key per
//! VM, generated before the VM first boots and handed to it through fw_cfg, so every VM's host key
//! is known (and pinned) before the first connection. Private keys are 0600.

use std::path::Path;

use anyhow::{Context, Result};
use rand_core::OsRng;
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, PublicKey};

use crate::fsutil;

/// Load the ed25519 private key at `path`, or create it (and `<path>.pub`).
pub fn ensure_key(path: &Path, comment: &str) -> Result<PrivateKey> {
    // One at a time: two hypervisors' threads must not both mint the client key.
    static MINTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = MINTING.lock().unwrap_or_else(|e| e.into_inner());
    if path.exists() {
        return PrivateKey::read_openssh_file(path)
            .with_context(|| format!("read SSH key {}", path.display()));
    }
    if let Some(dir) = path.parent() {
        fsutil::ensure_dir(dir, fsutil::PRIVATE_DIR)?;
    }
    let mut key =
        PrivateKey::random(&mut OsRng, Algorithm::Ed25519).context("generate ed25519 key")?;
    key.set_comment(comment);
    let pem = key.to_openssh(LineEnding::LF).context("encode SSH key")?;
    fsutil::write_atomic(path, pem.as_bytes(), fsutil::SECRET)?;
    let public = format!(
        "{}\n",
        key.public_key()
            .to_openssh()
            .context("encode SSH public key")?
    );
    fsutil::write_atomic(
        &path.with_extension("pub"),
        public.as_bytes(),
        fsutil::PUBLIC,
    )?;
    Ok(key)
}

/// `SHA256:…` as ssh-keygen prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The one-line OpenSSH form (`ssh-ed25519 AAAA… comment`).
pub fn public_line(key: &PublicKey) -> String {
    key.to_openssh().expect("ed25519 public keys encode")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_once_then_reuses() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ssh/id_ed25519");
        let a = ensure_key(&p, "kubicluster").unwrap();
        let b = ensure_key(&p, "kubicluster").unwrap();
        assert_eq!(a.public_key(), b.public_key());
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(p.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        let pubkey = std::fs::read_to_string(p.with_extension("pub")).unwrap();
        assert!(pubkey.starts_with("ssh-ed25519 ") && pubkey.trim_end().ends_with(" kubicluster"));
        assert!(fingerprint(a.public_key()).starts_with("SHA256:"));
    }
}
