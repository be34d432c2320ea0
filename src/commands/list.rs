//! `kubicluster list`: every cluster `up` made in the work dir (each remembered its spec in
//! `<workDir>/<name>/cluster.yaml`), with its state read from its hypervisor (running, stopped,
//! partial, not created) and where its API server is. Read-only.

use anyhow::Result;

use super::Ctx;
use crate::cli::{ListArgs, OutputFormat};
use crate::hypervisor::VmState;
use crate::spec::{self, Cluster, HypervisorMode};

#[derive(Debug, serde::Serialize)]
struct Row {
    name: String,
    mode: &'static str,
    state: String,
    nodes: usize,
    endpoint: String,
    dir: String,
}

/// What a cluster's VMs are doing, in a word or three.
fn state(cluster: &Cluster) -> String {
    if cluster.hypervisor.mode == HypervisorMode::Lab
        && matches!(crate::lab::state(cluster), Ok(None))
    {
        return "stopped (lab not running)".into();
    }
    let spread = match super::hosts::spread(cluster) {
        Ok(s) => s,
        Err(_) if cluster.hosts.len() > 1 => {
            return "unknown (a hypervisor does not answer)".into();
        }
        Err(_) => return format!("unknown (no libvirt at {})", cluster.hypervisor.uri),
    };
    let mut defined = 0;
    let mut running = 0;
    for h in spread.on_hosts() {
        for n in &h.cluster.nodes {
            if let Ok(Some(d)) = h.hv.domain(&n.name)
                && d.owner().as_deref() == Some(cluster.name.as_str())
            {
                defined += 1;
                if d.state == VmState::Running {
                    running += 1;
                }
            }
        }
    }
    let all = cluster.nodes.len();
    match (defined, running) {
        (0, _) => "not created".into(),
        (d, r) if r == all && d == all => format!("running {r}/{all}"),
        (d, 0) if d == all => "stopped".into(),
        (_, r) => format!("partial ({r}/{all} running)"),
    }
}

pub fn run(ctx: &mut Ctx, args: &ListArgs) -> Result<()> {
    let (here, _) = ctx.cluster(&args.spec)?;
    let mut rows = Vec::new();
    let mut dirs: Vec<std::path::PathBuf> = match std::fs::read_dir(&here.work_dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    dirs.sort();
    for dir in dirs {
        let file = dir.join(spec::REMEMBERED);
        if !file.is_file() {
            continue;
        }
        let row = match spec::resolve(Some(&file), &spec::Overrides::default(), &|_| None) {
            Ok((c, _)) => Row {
                mode: match c.hypervisor.mode {
                    HypervisorMode::Lab => "lab",
                    HypervisorMode::Host => "host",
                },
                state: state(&c),
                nodes: c.nodes.len(),
                endpoint: c.kubernetes.api_server_url(),
                dir: c.cluster_dir().display().to_string(),
                name: c.name,
            },
            Err(e) => Row {
                name: dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                mode: "?",
                state: format!(
                    "unreadable spec: {}",
                    e.to_string().lines().next().unwrap_or("")
                ),
                nodes: 0,
                endpoint: String::new(),
                dir: dir.display().to_string(),
            },
        };
        rows.push(row);
    }
    match args.output {
        OutputFormat::Json => ctx
            .printer
            .result(&format!("{}\n", serde_json::to_string_pretty(&rows)?)),
        OutputFormat::Text => {
            if rows.is_empty() {
                ctx.printer.status(&format!(
                    "no clusters in {} (`kubicluster up` makes one and remembers it there)",
                    here.work_dir.display()
                ));
                return Ok(());
            }
            let mut out = format!(
                "{:<16} {:<5} {:<38} {:>5}  {:<28} {}\n",
                "NAME", "MODE", "STATE", "NODES", "ENDPOINT", "DIR"
            );
            for r in &rows {
                out.push_str(&format!(
                    "{:<16} {:<5} {:<38} {:>5}  {:<28} {}\n",
                    r.name, r.mode, r.state, r.nodes, r.endpoint, r.dir
                ));
            }
            ctx.printer.result(&out);
        }
    }
    Ok(())
}
