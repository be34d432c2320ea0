//! `kubicluster validate`: resolve the spec and print it; every problem at once, exit 2.

use anyhow::Result;

use super::Ctx;
use crate::cli::SpecOnly;
use crate::spec;

pub fn run(ctx: &mut Ctx, args: &SpecOnly) -> Result<()> {
    let (cluster, source) = ctx.cluster(&args.spec)?;
    ctx.printer.result(&spec::to_yaml(&cluster.file));
    ctx.printer.status(&format!(
        "valid: cluster {} from {source}: {} controller(s), {} worker(s)",
        cluster.name,
        cluster.controllers().count(),
        cluster.workers().count()
    ));
    Ok(())
}
