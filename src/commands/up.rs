//! `kubicluster up`: the whole pipeline, in order. Each stage is idempotent, so a second `up`
//! changes nothing: (lab up) → prepare → image build if missing → cnc → create-vms → the node
//! steps of [`crate::steps::pipeline`] on the engine (controllers, then workers).

use anyhow::Result;

use super::Ctx;
use crate::cli::UpArgs;
use crate::spec::HypervisorMode;
use crate::{image, lab, pki};

pub fn run(ctx: &mut Ctx, args: &UpArgs) -> Result<()> {
    let (cluster, source) = ctx.cluster(&args.spec)?;
    // Later commands (status, plan, destroy …) find this cluster without the flags.
    crate::spec::remember(&cluster)?;
    ctx.printer
        .status(&format!("up: cluster {} from {source}", cluster.name));
    if cluster.hypervisor.mode == HypervisorMode::Lab {
        let (s, started) = lab::up(&cluster)?;
        ctx.printer.status(&format!(
            "[1/6] lab {}: namespace {}",
            if started { "started" } else { "running" },
            s.netns
        ));
    } else {
        ctx.printer.status(
            "[1/6] host mode (run `kubicluster prepare` once for packages, modules and sysctls)",
        );
    }
    ctx.printer
        .status("[2/6] prepare: networks, storage pool, SSH key");
    super::prepare::ensure(ctx, &cluster)?;
    let path = cluster.image_path();
    ctx.printer
        .status(&format!("[3/6] image {}", path.display()));
    if image::build(&path, false)? {
        ctx.printer.status("  built");
    }
    ctx.printer.status("[4/6] cnc: certificates and configs");
    let report = pki::generate(&cluster, &pki::Options::default())?;
    let (created, changed, kept) = report.counts();
    ctx.printer.status(&format!(
        "  {created} created, {changed} re-issued or updated, {kept} kept in {}",
        report.dir.display()
    ));
    ctx.printer.status("[5/6] create-vms");
    super::vms::create(ctx, &cluster, args.force, false, &[])?;
    ctx.printer
        .status("[6/6] node steps: etcd, control plane, workers, pod network");
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
