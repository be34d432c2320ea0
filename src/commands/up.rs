//! `kubicluster up`: the whole pipeline ([`crate::steps::pipeline`]), once, in order, every step
//! on the engine, so a second `up` changes nothing: (lab up) → prepare_networks, build_image,
//! generate_pki, create_vms on the hypervisor → etcd, the control plane, the workers and the
//! addons on the nodes → every node Ready → the smoke test. One process, whatever the
//! mode: in the lab, connections to the VMs are opened inside its namespace ([`crate::net`]).

use anyhow::Result;

use super::Ctx;
use crate::cli::UpArgs;
use crate::lab;
use crate::spec::HypervisorMode;

pub fn run(ctx: &mut Ctx, args: &UpArgs) -> Result<()> {
    let (cluster, source) = ctx.cluster(&args.spec)?;
    let started = std::time::Instant::now();
    let mut stages: Vec<(&str, f64)> = Vec::new();
    fn mark(stages: &mut Vec<(&str, f64)>, name: &'static str, since: &mut std::time::Instant) {
        stages.push((name, since.elapsed().as_secs_f64()));
        *since = std::time::Instant::now();
    }
    let mut since = std::time::Instant::now();
    ctx.printer
        .status(&format!("up: cluster {} from {source}", cluster.name));
    // `up` must not replace a running cluster's Kubernetes release on every node at once: a
    // cluster recorded at another release is checked against its API server first, before any
    // artifact is built or anything changes (`upgrade` goes node by node).
    if crate::spec::remembered_kubernetes_version(&cluster)
        .is_some_and(|v| v != cluster.kubernetes.version)
    {
        super::upgrade::refuse_a_running_release(&cluster)?;
    }
    // The artifacts' digests are remembered in the cluster's work dir by file identity, so a
    // second `up` does not hash hundreds of MB again (`up` has no dry run: `plan` writes nothing).
    crate::artifacts::remember_digests_in(cluster.cluster_dir().join("artifact-digests"));
    // Built binaries are made (or found complete) before anything else, outside the lab's
    // namespace (the module proxy is not reachable from inside).
    if cluster.artifacts.source == crate::spec::ArtifactSource::Build {
        super::artifacts::ensure_for(ctx.printer, &cluster, ctx.env)?;
        mark(&mut stages, "artifacts", &mut since);
    }
    super::warn_if_shrunk(ctx, &cluster);
    // Later commands (status, plan, destroy …) find this cluster without the flags.
    crate::spec::remember(&cluster)?;
    if cluster.hypervisor.mode == HypervisorMode::Lab {
        let (s, started) = lab::up(&cluster)?;
        ctx.printer.status(&format!(
            "[1/2] lab {}: namespace {}",
            if started { "started" } else { "running" },
            s.netns
        ));
    } else {
        ctx.printer.status(
            "[1/2] host mode (run `kubicluster prepare` once for packages, modules and sysctls)",
        );
    }
    // The whole pipeline, once: the hypervisor's steps (the VMs last), then the node steps;
    // connections to the VMs are opened inside the lab's namespace; one lock, one log.
    let steps = crate::steps::pipeline(args.force);
    ctx.printer.status(&format!(
        "[2/2] pipeline: {}",
        steps
            .iter()
            .map(|s| s.id().name())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let report = super::converge::run_pipeline(
        ctx,
        &cluster,
        super::converge::PipelineRun {
            title: "up",
            steps,
            dry_run: false,
            allow_missing_binaries: args.allow_missing_binaries,
            concurrency: 0,
        },
    )?;
    // Per step, the slowest hypervisor (several run each step at the same time).
    let mut per_step: std::collections::BTreeMap<&str, f64> = Default::default();
    for n in report
        .nodes
        .iter()
        .filter(|n| n.node.starts_with(crate::engine::hv::HYPERVISOR))
    {
        let s = per_step.entry(n.step.as_str()).or_default();
        *s = s.max(n.seconds);
    }
    let hv_seconds: f64 = per_step.values().sum();
    let pipeline_seconds = since.elapsed().as_secs_f64();
    stages.push(("hypervisor and VMs", hv_seconds));
    stages.push(("node steps", pipeline_seconds - hv_seconds));
    since = std::time::Instant::now();
    super::workers::smoke_after(ctx, &cluster, &report, args.skip_test)?;
    mark(&mut stages, "readiness and test", &mut since);
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
