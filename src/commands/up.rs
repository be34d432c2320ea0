//! `kubicluster up`: the whole pipeline, in order, every step on the engine, so a second `up`
//! changes nothing: (lab up) → [`crate::steps::hypervisor_pipeline`] (prepare_networks,
//! build_image, generate_pki, create_vms) → [`crate::steps::pipeline`] on the nodes
//! (controllers, then workers) → the smoke test.

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
            "[1/4] lab {}: namespace {}",
            if started { "started" } else { "running" },
            s.netns
        ));
    } else {
        ctx.printer.status(
            "[1/4] host mode (run `kubicluster prepare` once for packages, modules and sysctls)",
        );
    }
    // The hypervisor steps, in order; the last (the VMs) runs inside the lab namespace.
    let hv_steps = crate::steps::hypervisor_pipeline(args.force);
    let (here, vms): (Vec<&dyn HvStep>, Vec<&dyn HvStep>) = hv_steps
        .iter()
        .map(|s| s.as_ref())
        .partition(|s| s.id() != crate::engine::StepId::CreateVms);
    ctx.printer.status(&format!(
        "[2/4] hypervisor: {}",
        here.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")
    ));
    super::converge::run_hypervisor(ctx, &cluster, "up", &here, false)?;
    mark("hypervisor", &mut since);
    ctx.printer.status(&format!(
        "[3/4] {}",
        vms.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")
    ));
    super::vms::create(ctx, &cluster, args.force, false, &[])?;
    mark("VMs", &mut since);
    ctx.printer
        .status("[4/4] node steps: etcd, control plane, workers, pod network");
    let mut a = vec!["create-workers".to_string(), "--all-steps".to_string()];
    if args.allow_missing_binaries {
        a.push("--allow-missing-binaries".into());
    }
    if args.skip_test {
        a.push("--skip-test".into());
    }
    let report = super::converge::converge(
        ctx,
        &cluster,
        super::converge::Run {
            args: a,
            steps: crate::steps::pipeline(),
            dry_run: false,
            allow_missing_binaries: args.allow_missing_binaries,
            concurrency: 0,
            title: "up",
        },
    )?;
    // In lab mode the run (and its smoke test) happened inside the namespace.
    if let Some(report) = report {
        super::workers::smoke_after(ctx, &cluster, &report, args.skip_test)?;
    }
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
