//! Content and its digest: the leaf every layer that moves bytes shares (the artifacts, the PKI,
//! the image archives, the engine and the transports) without depending on one another.

use std::sync::Arc;

/// sha256 of bytes, lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(data);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// File content with its sha256, shared cheaply between nodes (binaries are large).
#[derive(Clone, PartialEq, Eq)]
pub struct Blob {
    pub sha256: String,
    pub data: Arc<Vec<u8>>,
}

impl Blob {
    pub fn new(data: impl Into<Vec<u8>>) -> Self {
        let data = data.into();
        Blob {
            sha256: sha256_hex(&data),
            data: Arc::new(data),
        }
    }

    /// Content whose digest is already known (read with a digest memo, or checked against a
    /// manifest): not hashed again.
    pub fn with_digest(data: Vec<u8>, sha256: String) -> Self {
        Blob {
            sha256,
            data: Arc::new(data),
        }
    }
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Blob({} bytes, sha256 {})",
            self.data.len(),
            &self.sha256[..12]
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn digest_is_lowercase_hex_sha256() {
        assert_eq!(
            super::sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let b = super::Blob::new(b"abc".to_vec());
        assert_eq!(b.sha256, super::sha256_hex(b"abc"));
        assert_eq!(format!("{b:?}"), "Blob(3 bytes, sha256 ba7816bf8f01)");
    }
}
