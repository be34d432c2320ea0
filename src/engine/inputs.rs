//! What a run hands every node step besides the spec: the PKI files read from the hypervisor's
//! work dir, the artifacts made ready there and the image archives to import. Gathered by the
//! command before the first step, so a step's `desired` is a pure function of the spec, these
//! inputs and read-only facts from the nodes.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use crate::artifacts::Provided;
use crate::blob::Blob;
use crate::error::Failure;
use crate::spec::Cluster;

/// What the command hands every step.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Files of `<workDir>/<cluster>/certs_and_configs`, by file name.
    pub pki: BTreeMap<String, Blob>,
    /// Artifacts by component name; `None` for `render` (no network, no downloads): binaries
    /// are then left out and the source's binary directory is assumed.
    pub artifacts: Option<BTreeMap<String, Provided>>,
    /// `spec.images`, read on the hypervisor (empty for `render`).
    pub images: Vec<ImageInput>,
}

/// An image archive to import on the workers.
#[derive(Debug, Clone)]
pub struct ImageInput {
    pub file_name: String,
    /// Normalised names inside (what `ctr images ls -q` shows once imported).
    pub names: Vec<String>,
    pub blob: Blob,
}

impl ImageInput {
    pub fn load(cluster: &Cluster) -> Result<Vec<ImageInput>> {
        cluster
            .images
            .iter()
            .map(|p| {
                let (data, sha256) = crate::artifacts::read_with_digest(p)
                    .with_context(|| format!("read {}", p.display()))?
                    .ok_or_else(|| anyhow::anyhow!("{}: no such file", p.display()))?;
                Ok(ImageInput {
                    file_name: p
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "image.tar".into()),
                    names: crate::images::names(&data, p)?,
                    blob: Blob::with_digest(data, sha256),
                })
            })
            .collect()
    }
}

impl Inputs {
    pub fn pki(&self, file: &str) -> Result<Blob> {
        self.pki.get(file).cloned().ok_or_else(|| {
            Failure::new(format!(
                "{file} is missing from the cluster's certs_and_configs"
            ))
            .hint("run `kubicluster cnc` first")
            .into()
        })
    }

    pub fn artifact(&self, name: &str) -> Option<&Provided> {
        self.artifacts.as_ref().and_then(|a| a.get(name))
    }

    /// Read every file of the PKI directory (the CA keys stay there unless a step asks).
    pub fn load_pki(cluster: &Cluster) -> Result<BTreeMap<String, Blob>> {
        let dir = cluster.certs_dir();
        let mut out = BTreeMap::new();
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return Ok(out);
        };
        for e in rd {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type()?.is_file() && !name.starts_with('.') {
                out.insert(name, Blob::new(std::fs::read(e.path())?));
            }
        }
        Ok(out)
    }
}
