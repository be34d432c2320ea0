//! `kubicluster render [--out DIR] [NODE…]`: every file kubicluster would place on each node,
//! written to `DIR/<node>/<absolute path>` with the mode it gets there, the guarded commands to
//! `DIR/<node>/COMMANDS`, and every object applied through the Kubernetes API to
//! `DIR/api/<kind>-<name>.yaml`. Touches no host and no network: binaries are not fetched (and
//! not written); the PKI is read from the work dir. DIR is created 0700: it holds private keys.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};

use super::Ctx;
use crate::cli::RenderArgs;
use crate::engine::Cx;
use crate::error::Failure;
use crate::fsutil;
use crate::steps::{self, Inputs, install_addons};

fn write(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
    }
    fsutil::write_atomic(path, data, mode)
}

pub fn run(ctx: &mut Ctx, args: &RenderArgs) -> Result<()> {
    let (cluster, _) = ctx.cluster(&args.spec)?;
    let unknown: Vec<&String> = args
        .nodes
        .iter()
        .filter(|n| cluster.node(n).is_none())
        .collect();
    if !unknown.is_empty() {
        return Err(Failure::bad_input(format!(
            "not nodes of cluster {}: {unknown:?}",
            cluster.name
        ))
        .hint("`kubicluster validate` lists the nodes")
        .into());
    }
    let pki = Inputs::load_pki(&cluster)?;
    if pki.is_empty() {
        return Err(Failure::bad_input(format!("no PKI in {}", cluster.certs_dir().display()))
            .hint("run `kubicluster cnc` first (render reads the certificates, it never makes them)")
            .into());
    }
    let cx = Arc::new(Cx {
        cluster: cluster.clone(),
        hosts: BTreeMap::new(),
        inputs: Inputs {
            pki,
            artifacts: None,
            images: Vec::new(),
        },
        facts: Default::default(),
    });
    let out = &args.out;
    fsutil::ensure_dir(out, fsutil::PRIVATE_DIR)?;
    std::fs::set_permissions(out, std::fs::Permissions::from_mode(fsutil::PRIVATE_DIR))?;
    let mut files = 0;
    let mut nodes = Vec::new();
    for step in steps::pipeline() {
        for node in step.targets(&cluster) {
            if !args.nodes.is_empty() && !args.nodes.contains(&node.name) {
                continue;
            }
            let want = step.desired(&cx, node)?;
            let root = out.join(&node.name);
            for d in &want.dirs {
                std::fs::create_dir_all(root.join(d.path.trim_start_matches('/')))?;
            }
            for (path, mode, blob) in want.all_files() {
                write(&root.join(path.trim_start_matches('/')), &blob.data, mode)?;
                files += 1;
            }
            if !want.commands.is_empty() {
                let mut text = String::new();
                let p = root.join("COMMANDS");
                if let Some(old) = fsutil::read_optional(&p)? {
                    text.push_str(&String::from_utf8_lossy(&old));
                }
                for c in &want.commands {
                    text.push_str(&format!(
                        "# {} — {}\n# done when: {}\n{}\n\n",
                        step.name(),
                        c.what,
                        c.check,
                        c.run
                    ));
                }
                write(&p, text.as_bytes(), fsutil::PUBLIC)?;
            }
            if !nodes.contains(&node.name) {
                nodes.push(node.name.clone());
            }
        }
    }
    for (name, text) in install_addons::manifests(&cx)? {
        write(&out.join("api").join(name), text.as_bytes(), fsutil::PUBLIC)?;
        files += 1;
    }
    ctx.printer.status(&format!(
        "render: {files} file(s) for {} node(s) and the API in {} (mode 0700: it holds private keys); binaries are not included",
        nodes.len(),
        out.display()
    ));
    Ok(())
}
