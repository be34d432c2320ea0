//! `kubicluster up`: the pipeline so far, in order. Each stage is idempotent, so a second `up`
//! changes nothing: (lab up) → prepare → image build if missing → cnc → create-vms → status.

use anyhow::Result;

use super::Ctx;
use crate::cli::UpArgs;
use crate::spec::HypervisorMode;
use crate::{image, lab, pki};

pub fn run(ctx: &mut Ctx, args: &UpArgs) -> Result<()> {
    let (cluster, source) = ctx.cluster(&args.spec)?;
    ctx.printer
        .status(&format!("up: cluster {} from {source}", cluster.name));
    if cluster.hypervisor.mode == HypervisorMode::Lab {
        let (s, started) = lab::up(&cluster)?;
        ctx.printer.status(&format!(
            "[1/5] lab {}: namespace {}",
            if started { "started" } else { "running" },
            s.netns
        ));
    } else {
        ctx.printer.status(
            "[1/5] host mode (run `kubicluster prepare` once for packages, modules and sysctls)",
        );
    }
    ctx.printer
        .status("[2/5] prepare: networks, storage pool, SSH key");
    super::prepare::ensure(ctx, &cluster)?;
    let path = cluster.image_path();
    ctx.printer
        .status(&format!("[3/5] image {}", path.display()));
    if image::build(&path, false)? {
        ctx.printer.status("  built");
    }
    ctx.printer.status("[4/5] cnc: certificates and configs");
    let report = pki::generate(&cluster, &pki::Options::default())?;
    let (created, changed, kept) = report.counts();
    ctx.printer.status(&format!(
        "  {created} created, {changed} re-issued or updated, {kept} kept in {}",
        report.dir.display()
    ));
    ctx.printer.status("[5/5] create-vms");
    super::vms::create(ctx, &cluster, args.force, false, &[])?;
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
