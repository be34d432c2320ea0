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
        dry_run: args.dry_run,
        new_ca: args.new_ca,
        new_encryption_key: args.new_encryption_key,
    };
    let report = pki::generate(&cluster, &opts)?;
    ctx.printer.pki_report(&report);
    Ok(())
}
