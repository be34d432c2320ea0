//! `kubicluster cnc`: certificates and configs for the cluster (see [`crate::pki`]).

use anyhow::Result;

use super::Ctx;
use crate::cli::CncArgs;
use crate::pki;

pub fn run(ctx: &mut Ctx, args: &CncArgs) -> Result<()> {
    let (cluster, source) = ctx.cluster(&args.spec)?;
    ctx.printer.status(&format!(
        "cnc: cluster {} from {source} ({} controller(s), {} worker(s), {} keys)",
        cluster.name,
        cluster.controllers().count(),
        cluster.workers().count(),
        cluster.pki.key_algorithm.as_str()
    ));
    let opts = pki::Options {
        force: args.force,
        groups: args.only.iter().map(|p| (*p).into()).collect(),
        dry_run: false, // decided by the run's gate
        new_ca: args.new_ca,
        new_encryption_key: args.new_encryption_key,
    };
    let step = crate::steps::generate_pki::GeneratePki {
        opts,
        list_kept: true,
    };
    super::converge::run_hypervisor(ctx, &cluster, "cnc", &[&step], args.dry_run)?;
    Ok(())
}
