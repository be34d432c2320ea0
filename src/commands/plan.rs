//! `kubicluster plan`: every pending change of the whole cluster, read-only — a dry run of every
//! step of `up`: the hypervisor steps (networks, image, the PKI `cnc` would create or re-issue,
//! the VMs `create-vms` would make, start or resume, and their drift) and every node step (what
//! the engine would write, run, enable, start or restart), per node in a stable order.
//! `--output json` prints one object; its `changes` is the total (0 = converged).

use crate::engine::StepId;
use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use super::Ctx;
use super::converge::{Run, converge_resolved, resolve_artifacts, would_download};
use crate::cli::{OutputFormat, PlanArgs};
use crate::engine::hv::HvStep;
use crate::hypervisor::Hypervisor;
use crate::{engine, steps};

#[derive(Debug, Serialize)]
struct PlanOut {
    cluster: String,
    changes: usize,
    /// What `up` would download (a plan downloads nothing).
    downloads: Vec<String>,
    /// Networks, pool, SSH key, template image.
    hypervisor: Vec<String>,
    pki: Vec<String>,
    vms: Vec<String>,
    nodes: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// Nodes whose steps could not be planned yet (their VM is not running).
    unplanned: Vec<String>,
    not_started: Vec<String>,
}

pub fn run(ctx: &mut Ctx, args: &PlanArgs) -> Result<()> {
    let (cluster, _) = ctx.cluster(&args.spec)?;
    super::warn_if_shrunk(ctx, &cluster);
    // The one pipeline, dry: its hypervisor steps, then (where the VMs run) its node steps.
    let pipeline = steps::pipeline(false);
    let all = engine::pipeline::declared(&pipeline);
    // Artifacts first: a bad digest stops the plan before anything else is read.
    let resolved = resolve_artifacts(&cluster, &all, true, crate::artifacts::Fetch::Never)?;
    let mut downloads = would_download(&resolved.provided);
    if cluster.artifacts.source == crate::spec::ArtifactSource::Build
        && !crate::artifacts::build::verify_dir(cluster.artifacts.build_dir())?
    {
        let set = super::artifacts::set_of(&cluster)?;
        downloads.insert(
            0,
            format!(
                "Go modules of kubernetes v{}, etcd v{}, crictl v{} and CoreDNS v{}, built into {} (`artifacts build`)",
                set.kubernetes,
                set.etcd,
                set.crictl,
                set.coredns,
                cluster.artifacts.build_dir().display()
            ),
        );
    }
    // Every hypervisor (the placement read from all of them), each node through its own.
    let spread = super::hosts::spread(&cluster)?;
    spread.show(ctx, &cluster);
    super::hosts::reach_all(&cluster, &spread)?;
    // The hypervisor steps, dry: what `up` would do before the nodes.
    let hv_steps = engine::pipeline::gated(&pipeline);
    let refs: Vec<&dyn HvStep> = hv_steps.iter().map(|s| s.as_ref()).collect();
    let hv_report = engine::hv::run_spread(
        &cluster,
        &spread.on_hosts(),
        &refs,
        true,
        Default::default(),
        &mut |_| {},
    )?;
    // Changes, and what a step found and leaves alone (a VM's drift) — pending too.
    let lines = |steps: &[StepId]| -> Vec<String> {
        hv_report
            .nodes
            .iter()
            .filter(|n| steps.iter().any(|s| s.name() == n.step))
            .flat_map(|n| {
                n.changes
                    .iter()
                    .map(|c| c.to_string())
                    .chain(n.not_started.iter().map(|(o, w)| format!("{o}: {w}")))
            })
            .collect()
    };
    let hypervisor_changes = lines(&[StepId::PrepareNetworks, StepId::BuildImage]);
    let pki_changes = lines(&[StepId::GeneratePki]);
    let vm_changes = lines(&[StepId::CreateVms]);
    let mut running: Vec<String> = Vec::new();
    for (_, _, hv) in &spread.hosts {
        running.extend(
            hv.domains()?
                .into_iter()
                .filter(|d| d.state == crate::hypervisor::VmState::Running)
                .map(|d| d.name),
        );
    }
    let unplanned: Vec<String> = cluster
        .controllers()
        .filter(|n| !running.contains(&n.name))
        .map(|n| n.name.clone())
        .collect();
    let mut out = PlanOut {
        cluster: cluster.name.clone(),
        changes: 0,
        downloads,
        hypervisor: hypervisor_changes,
        pki: pki_changes,
        vms: vm_changes,
        nodes: BTreeMap::new(),
        unplanned: unplanned.clone(),
        not_started: Vec::new(),
    };
    if unplanned.is_empty() {
        let r = converge_resolved(
            ctx,
            &cluster,
            Run {
                steps: all.clone(),
                dry_run: true,
                allow_missing_binaries: true,
                concurrency: 0,
                title: "plan",
            },
            resolved,
        )?;
        for n in &r.nodes {
            out.nodes.entry(n.node.clone()).or_default().insert(
                n.step.clone(),
                n.changes.iter().map(|c| c.to_string()).collect(),
            );
            for (u, why) in &n.not_started {
                out.not_started.push(format!("{u} on {}: {why}", n.node));
            }
        }
    }
    let node_changes: usize = out
        .nodes
        .values()
        .flat_map(|s| s.values())
        .map(Vec::len)
        .sum();
    // A node that cannot be planned yet has (at least) every step pending.
    out.changes = out.downloads.len()
        + out.hypervisor.len()
        + out.pki.len()
        + out.vms.len()
        + node_changes
        + out.unplanned.len() * all.len();
    match args.output {
        OutputFormat::Json => {
            ctx.printer
                .result(&format!("{}\n", serde_json::to_string_pretty(&out)?));
        }
        OutputFormat::Text => {
            let mut t = String::new();
            if !out.downloads.is_empty() {
                t.push_str(&format!(
                    "artifacts ({} to download; a plan downloads nothing)\n",
                    out.downloads.len()
                ));
                for d in &out.downloads {
                    t.push_str(&format!("  {d}\n"));
                }
            }
            t.push_str(&format!("hypervisor ({} pending)\n", out.hypervisor.len()));
            for c in &out.hypervisor {
                t.push_str(&format!("  {c}\n"));
            }
            t.push_str(&format!("PKI ({} pending)\n", out.pki.len()));
            for c in &out.pki {
                t.push_str(&format!("  {c}\n"));
            }
            t.push_str(&format!("VMs ({} pending)\n", out.vms.len()));
            for c in &out.vms {
                t.push_str(&format!("  {c}\n"));
            }
            for (node, steps) in &out.nodes {
                for (step, changes) in steps {
                    t.push_str(&format!("{node} {step} ({} pending)\n", changes.len()));
                    for c in changes {
                        t.push_str(&format!("  {c}\n"));
                    }
                }
            }
            for n in &out.unplanned {
                t.push_str(&format!(
                    "{n}: not planned (its VM is not running yet): every step pending\n"
                ));
            }
            t.push_str(&format!(
                "plan: {} pending change(s){}\n",
                out.changes,
                if out.changes == 0 { " (converged)" } else { "" }
            ));
            ctx.printer.result(&t);
        }
    }
    Ok(())
}
