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
    names_inside(data).map_err(|e| {
        // The reason may quote bytes of the file: only printable ASCII reaches the terminal.
        let reason: String = format!("{e:#}")
            .chars()
            .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' })
            .take(160)
            .collect();
        anyhow::anyhow!(
            "{}: not a readable image archive (an OCI or docker tar, as `ctr images export` or `docker save` write): {reason}",
            path.display()
        )
    })
}

fn names_inside(data: &[u8]) -> Result<Vec<String>> {
    anyhow::ensure!(!data.is_empty(), "the file is empty");
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
            "no image name inside (an OCI archive needs an io.containerd.image.name annotation, a docker archive RepoTags)"
        );
    }
    Ok(out)
}

/// One entry of an image layer.
pub enum LayerEntry<'a> {
    Dir(&'a str),
    File {
        path: &'a str,
        mode: u32,
        data: &'a [u8],
    },
    Symlink {
        path: &'a str,
        target: &'a str,
    },
}

/// A single-layer OCI image archive (what `ctr images import` takes), built without a registry
/// or a container tool: deterministic (no timestamps), so the same inputs give the same digests.
/// `name` is the full reference (`kubicluster.local/pause:v1.37.2`), stored as containerd's
/// `io.containerd.image.name` annotation; `entrypoint` and `cmd` go into the image config.
pub fn oci_archive(
    name: &str,
    entries: &[LayerEntry],
    entrypoint: &[&str],
    cmd: &[&str],
) -> Result<Vec<u8>> {
    use crate::blob::sha256_hex;
    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h
    }
    let mut layer = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            LayerEntry::Dir(p) => {
                let mut h = header(tar::EntryType::Directory, 0o755, 0);
                layer.append_data(
                    &mut h,
                    format!("{}/", p.trim_end_matches('/')),
                    std::io::empty(),
                )?
            }
            LayerEntry::File { path, mode, data } => {
                let mut h = header(tar::EntryType::Regular, *mode, data.len() as u64);
                layer.append_data(&mut h, path, *data)?
            }
            LayerEntry::Symlink { path, target } => {
                let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                layer.append_link(&mut h, path, target)?
            }
        }
    }
    let layer = layer.into_inner()?;
    let lsha = sha256_hex(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {
            "Entrypoint": entrypoint, "Cmd": cmd,
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
        },
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{lsha}")]}
    }))?;
    let csha = sha256_hex(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{csha}"), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": format!("sha256:{lsha}"), "size": layer.len()}]
    }))?;
    let msha = sha256_hex(&manifest);
    let tag = name.rsplit_once(':').map_or("latest", |(_, t)| t);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{msha}"), "size": manifest.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": tag
            }
        }]
    }))?;
    let mut archive = tar::Builder::new(Vec::new());
    let blobs: [(String, &[u8]); 5] = [
        ("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#),
        ("index.json".into(), &index),
        (format!("blobs/sha256/{msha}"), &manifest),
        (format!("blobs/sha256/{csha}"), &config),
        (format!("blobs/sha256/{lsha}"), &layer),
    ];
    for (path, data) in blobs {
        let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
        archive.append_data(&mut h, path, data)?;
    }
    Ok(archive.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_archive_is_named_and_no_raw_bytes_are_printed() {
        let p = Path::new("/images/broken.tar");
        let mut junk = vec![0xffu8, 0x1b, b'[', b'2', b'J', 0x07];
        junk.extend(std::iter::repeat_n(0x9bu8, 600));
        for data in [&b""[..], &junk[..], &b"not a tar at all, just text"[..]] {
            let e = format!("{:#}", names(data, p).unwrap_err());
            assert!(
                e.starts_with("/images/broken.tar: not a readable image archive"),
                "{e}"
            );
            assert!(
                e.chars().all(|c| c.is_ascii_graphic() || c == ' '),
                "only printable text: {e:?}"
            );
        }
    }

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

    #[test]
    fn an_oci_archive_names_its_image_and_is_reproducible() {
        let entries = [
            LayerEntry::Dir("bin"),
            LayerEntry::File {
                path: "bin/x",
                mode: 0o755,
                data: b"#!/bin/true\n",
            },
            LayerEntry::Symlink {
                path: "bin/y",
                target: "x",
            },
        ];
        let a = oci_archive("kubicluster.local/x:v1", &entries, &["/bin/x"], &[]).unwrap();
        let b = oci_archive("kubicluster.local/x:v1", &entries, &["/bin/x"], &[]).unwrap();
        assert_eq!(a, b, "same inputs, same bytes");
        assert_eq!(
            names(&a, Path::new("x.tar")).unwrap(),
            ["kubicluster.local/x:v1"]
        );
    }
}
