//! Image archives for offline clusters (`spec.images`): the image names an OCI or docker archive
//! holds, read on the hypervisor so the engine can check, by name, whether containerd on a
//! worker already has them.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// containerd's normalised form: `busybox` → `docker.io/library/busybox:latest`.
pub fn normalize(name: &str) -> String {
    let (repo, tag) = match name.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r.to_string(), format!(":{t}")),
        _ if name.contains('@') => (name.to_string(), String::new()),
        _ => (name.to_string(), ":latest".to_string()),
    };
    let first = repo.split('/').next().unwrap_or("");
    let domain =
        repo.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = if domain {
        repo
    } else if repo.contains('/') {
        format!("docker.io/{repo}")
    } else {
        format!("docker.io/library/{repo}")
    };
    format!("{full}{tag}")
}

/// Names in an archive: OCI `index.json` (`io.containerd.image.name`, else a full
/// `org.opencontainers.image.ref.name`) or docker `manifest.json` (`RepoTags`).
/// `data` is the archive (read once by the caller, who also uploads it); `path` names it.
pub fn names(data: &[u8], path: &Path) -> Result<Vec<String>> {
    let mut ar = tar::Archive::new(data);
    let (mut index, mut manifest) = (None, None);
    for e in ar.entries().context("read the archive")? {
        let mut e = e.context("read the archive")?;
        let p = e.path()?.display().to_string();
        let p = p.trim_start_matches("./").to_string();
        if p == "index.json" || p == "manifest.json" {
            let mut s = String::new();
            e.read_to_string(&mut s)?;
            if p == "index.json" {
                index = Some(s);
            } else {
                manifest = Some(s);
            }
        }
    }
    let mut out = Vec::new();
    if let Some(m) = manifest {
        let v: serde_json::Value = serde_json::from_str(&m).context("manifest.json")?;
        for img in v.as_array().into_iter().flatten() {
            for t in img["RepoTags"].as_array().into_iter().flatten() {
                out.extend(t.as_str().map(normalize));
            }
        }
    }
    if out.is_empty()
        && let Some(i) = index
    {
        let v: serde_json::Value = serde_json::from_str(&i).context("index.json")?;
        for m in v["manifests"].as_array().into_iter().flatten() {
            let a = &m["annotations"];
            let name = a["io.containerd.image.name"].as_str().or_else(|| {
                a["org.opencontainers.image.ref.name"]
                    .as_str()
                    .filter(|r| r.contains('/') || r.contains(':'))
            });
            out.extend(name.map(normalize));
        }
    }
    out.sort();
    out.dedup();
    if out.is_empty() {
        bail!(
            "{}: no image name inside (an OCI archive needs an io.containerd.image.name annotation, a docker archive RepoTags)",
            path.display()
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn names_are_normalised_like_containerd() {
        assert_eq!(normalize("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(
            normalize("calico/node:v3.30.5"),
            "docker.io/calico/node:v3.30.5"
        );
        assert_eq!(
            normalize("registry.k8s.io/pause:3.10"),
            "registry.k8s.io/pause:3.10"
        );
        assert_eq!(normalize("localhost:5000/x/y"), "localhost:5000/x/y:latest");
    }
}
