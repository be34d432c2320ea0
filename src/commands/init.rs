//! `kubicluster init`: write a commented example cluster file (never over an existing one
//! without `--force`).

use anyhow::Result;
use serde::Serialize;

use super::Ctx;
use crate::cli::InitArgs;
use crate::error::Failure;
use crate::spec::{self, NodeEntry, Versions};
use crate::{fsutil, render};

#[derive(Serialize)]
struct Context<'a> {
    name: &'a str,
    work_dir: &'a str,
    vcpus: u32,
    memory_mib: u32,
    nodes: Vec<NodeView<'a>>,
    kubernetes_version: &'a str,
    versions: &'a Versions,
}

#[derive(Serialize)]
struct NodeView<'a> {
    name: &'a str,
    role: String,
    cluster_ip: &'a str,
    hypervisor_ip: &'a str,
}

impl<'a> From<&'a NodeEntry> for NodeView<'a> {
    fn from(n: &'a NodeEntry) -> Self {
        NodeView {
            name: &n.name,
            role: n.role.to_string(),
            cluster_ip: &n.cluster_ip,
            hypervisor_ip: &n.hypervisor_ip,
        }
    }
}

/// The example cluster file text for `controllers` + `workers` nodes.
pub fn example_text(controllers: u8, workers: u8) -> String {
    let file = spec::example_cluster_file(controllers, workers);
    let s = &file.spec;
    render::render(
        "cluster.yaml.j2",
        &Context {
            name: &file.metadata.name,
            work_dir: &s.work_dir,
            vcpus: s.node_defaults.vcpus,
            memory_mib: s.node_defaults.memory_mib,
            nodes: s.nodes.iter().map(NodeView::from).collect(),
            kubernetes_version: &s.kubernetes.version,
            versions: &s.versions,
        },
    )
    .expect("the embedded cluster template renders")
}

pub fn run(ctx: &mut Ctx, args: &InitArgs) -> Result<()> {
    let text = example_text(args.controllers, args.workers);
    if args.stdout {
        ctx.printer.result(&text);
        return Ok(());
    }
    if args.output.exists() && !args.force {
        return Err(
            Failure::bad_input(format!("{} already exists", args.output.display()))
                .hint("pass --force to overwrite it, or -o to write elsewhere")
                .into(),
        );
    }
    fsutil::write_atomic(&args.output, text.as_bytes(), fsutil::PUBLIC)?;
    ctx.printer.status(&format!(
        "wrote {} ({} controller(s), {} worker(s)); check it with `kubicluster validate --file {}`",
        args.output.display(),
        args.controllers,
        args.workers,
        args.output.display()
    ));
    Ok(())
}
