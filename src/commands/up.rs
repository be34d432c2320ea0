//! `kubicluster up`: the whole pipeline, in order, every step on the engine, so a second `up`
//! changes nothing: (lab up) → [`crate::steps::hypervisor_pipeline`] (prepare_networks,
//! build_image, generate_pki, create_vms) → [`crate::steps::pipeline`] on the nodes
//! (controllers, then workers) → every node Ready → the smoke test. One process, whatever the
//! mode: in the lab, connections to the VMs are opened inside its namespace ([`crate::net`]).

use anyhow::Result;

use super::Ctx;
use crate::cli::UpArgs;
use crate::engine::hv::HvStep;
use crate::lab;
use crate::spec::HypervisorMode;

pub fn run(ctx: &mut Ctx, args: &UpArgs) -> Result<()> {
    let (cluster, source) = ctx.cluster(&args.spec)?;
    let started = std::time::Instant::now();
    let mut stages: Vec<(&str, f64)> = Vec::new();
    let mut mark = |name: &'static str, since: &mut std::time::Instant| {
        stages.push((name, since.elapsed().as_secs_f64()));
        *since = std::time::Instant::now();
    };
    let mut since = std::time::Instant::now();
    // Later commands (status, plan, destroy …) find this cluster without the flags.
    crate::spec::remember(&cluster)?;
    ctx.printer
        .status(&format!("up: cluster {} from {source}", cluster.name));
    // Built binaries are made (or found complete) before anything else, outside the lab's
    // namespace (the module proxy is not reachable from inside).
    if cluster.artifacts.source == crate::spec::ArtifactSource::Build {
        super::artifacts::ensure(ctx.printer, &cluster, ctx.env, None, false)?;
        mark("artifacts", &mut since);
    }
    if cluster.hypervisor.mode == HypervisorMode::Lab {
        let (s, started) = lab::up(&cluster)?;
        ctx.printer.status(&format!(
            "[1/3] lab {}: namespace {}",
            if started { "started" } else { "running" },
            s.netns
        ));
    } else {
        ctx.printer.status(
            "[1/3] host mode (run `kubicluster prepare` once for packages, modules and sysctls)",
        );
    }
    // The hypervisor steps, in order, once (the VMs last); connections to the VMs are opened
    // inside the lab's namespace from here on; one lock for the whole run.
    super::reach_nodes(&cluster)?;
    let _lock = super::lock(&cluster)?;
    let hv_steps = crate::steps::hypervisor_pipeline(args.force);
    let hv_steps: Vec<&dyn HvStep> = hv_steps.iter().map(|s| s.as_ref()).collect();
    ctx.printer.status(&format!(
        "[2/3] hypervisor: {}",
        hv_steps
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    super::converge::run_hypervisor(ctx, &cluster, "up", &hv_steps, false)?;
    mark("hypervisor and VMs", &mut since);
    ctx.printer
        .status("[3/3] node steps: etcd, control plane, workers, pod network");
    let report = super::converge::converge(
        ctx,
        &cluster,
        super::converge::Run {
            steps: crate::steps::pipeline(),
            dry_run: false,
            allow_missing_binaries: args.allow_missing_binaries,
            concurrency: 0,
            title: "up",
        },
    )?;
    super::workers::smoke_after(ctx, &cluster, &report, args.skip_test)?;
    mark("node steps, readiness and test", &mut since);
    ctx.printer.status(&format!(
        "up: {:.0} s in all: {}",
        started.elapsed().as_secs_f64(),
        stages
            .iter()
            .map(|(n, s)| format!("{n} {s:.0} s"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    ctx.printer.status(&format!(
        "up: done; see `kubicluster status{}`",
        if cluster.hypervisor.mode == HypervisorMode::Lab {
            " --lab"
        } else {
            ""
        }
    ));
    Ok(())
}
