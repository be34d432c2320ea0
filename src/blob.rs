//! Content and its digest: the leaf every layer that moves bytes shares (the artifacts, the PKI,
//! the image archives, the engine and the transports) without depending on one another.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// sha256 of bytes, lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(data);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// File content with its sha256, shared cheaply between nodes (binaries are large). Content
/// read from a file whose digest is already known stays on disk until a node needs the bytes:
/// a run that changes nothing never reads hundreds of MB of binaries.
#[derive(Clone)]
pub struct Blob {
    pub sha256: String,
    content: Arc<Content>,
}

enum Content {
    Bytes(Vec<u8>),
    /// Read (and checked against the digest) on first use.
    File {
        path: PathBuf,
        len: u64,
        read: OnceLock<Vec<u8>>,
    },
}

impl Blob {
    pub fn new(data: impl Into<Vec<u8>>) -> Self {
        let data = data.into();
        Blob {
            sha256: sha256_hex(&data),
            content: Arc::new(Content::Bytes(data)),
        }
    }

    /// Content whose digest is already known (read with a digest memo, or checked against a
    /// manifest): not hashed again.
    pub fn with_digest(data: Vec<u8>, sha256: String) -> Self {
        Blob {
            sha256,
            content: Arc::new(Content::Bytes(data)),
        }
    }

    /// The `len` bytes of the file at `path`, whose digest is known to be `sha256`: read only
    /// when [`Blob::data`] is first asked for, and refused then if they are not that digest.
    pub fn from_file(path: PathBuf, len: u64, sha256: String) -> Self {
        Blob {
            sha256,
            content: Arc::new(Content::File {
                path,
                len,
                read: OnceLock::new(),
            }),
        }
    }

    /// The size in bytes (without reading a file).
    pub fn len(&self) -> u64 {
        match &*self.content {
            Content::Bytes(b) => b.len() as u64,
            Content::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes. A file is read once, and must still have the digest it was known by.
    pub fn data(&self) -> io::Result<&[u8]> {
        match &*self.content {
            Content::Bytes(b) => Ok(b),
            Content::File { path, read, .. } => {
                if let Some(b) = read.get() {
                    return Ok(b);
                }
                let b = std::fs::read(path).map_err(read_error(path))?;
                let got = sha256_hex(&b);
                if got != self.sha256 {
                    return Err(io::Error::other(format!(
                        "{} changed since it was checked (sha256 {got}, not {}); run the command again",
                        path.display(),
                        self.sha256
                    )));
                }
                Ok(read.get_or_init(|| b))
            }
        }
    }

    /// Up to `n` first bytes (a file's are read from disk, not the whole file).
    pub fn head(&self, n: usize) -> io::Result<Vec<u8>> {
        match &*self.content {
            Content::Bytes(b) => Ok(b[..n.min(b.len())].to_vec()),
            Content::File { path, read, .. } => {
                if let Some(b) = read.get() {
                    return Ok(b[..n.min(b.len())].to_vec());
                }
                use std::io::Read;
                let mut out = Vec::with_capacity(n);
                std::fs::File::open(path)
                    .and_then(|f| f.take(n as u64).read_to_end(&mut out))
                    .map_err(read_error(path))?;
                Ok(out)
            }
        }
    }
}

/// An I/O error that names the file read.
fn read_error(path: &std::path::Path) -> impl FnOnce(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("read {}: {e}", path.display()))
}

/// Two blobs are the same content when their digests are.
impl PartialEq for Blob {
    fn eq(&self, other: &Self) -> bool {
        self.sha256 == other.sha256
    }
}

impl Eq for Blob {}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Blob({} bytes, sha256 {})",
            self.len(),
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

    /// A file's blob reads nothing until asked; its head reads only the head; its bytes must
    /// still have the digest it was made with.
    #[test]
    fn a_file_blob_is_read_when_needed_and_checked() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("bin");
        std::fs::write(&p, b"abcdef").unwrap();
        let b = super::Blob::from_file(p.clone(), 6, super::sha256_hex(b"abcdef"));
        assert_eq!(b.len(), 6);
        assert_eq!(b.head(2).unwrap(), b"ab");
        assert_eq!(b, super::Blob::new(b"abcdef".to_vec()));
        std::fs::write(&p, b"abcdeX").unwrap();
        let e = b.data().unwrap_err().to_string();
        assert!(e.contains("changed since it was checked"), "{e}");
        std::fs::write(&p, b"abcdef").unwrap();
        assert_eq!(b.data().unwrap(), b"abcdef");
        std::fs::remove_file(&p).unwrap();
        assert_eq!(b.data().unwrap(), b"abcdef", "read once, kept");
    }
}
