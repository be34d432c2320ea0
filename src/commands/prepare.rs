//! `kubicluster prepare`: ready the hypervisor — the steps `prepare_host` (packages, kernel
//! modules, sysctls; host mode) and `prepare_networks` (libvirt networks, storage pool, SSH
//! key). `--check` reports readiness and changes nothing; `--dry-run` lists the changes.

use anyhow::Result;

use super::{Ctx, connect};
use crate::cli::PrepareArgs;
use crate::engine::hv::HvStep;
use crate::error::Failure;
use crate::hypervisor::Hypervisor;
use crate::steps::prepare_host::{PrepareHost, readiness};
use crate::steps::prepare_networks::PrepareNetworks;

pub fn run(ctx: &mut Ctx, args: &PrepareArgs) -> Result<()> {
    let (cluster, _) = ctx.cluster(&args.spec)?;
    if args.check {
        let hv = connect(&cluster);
        let rows = readiness(
            &cluster,
            match &hv {
                Ok(h) => Ok(h as &dyn Hypervisor),
                Err(e) => Err(format!("{e:#}")),
            },
        );
        let mut text = String::new();
        for (what, state, blocking) in &rows {
            text.push_str(&format!(
                "{:<5} {what:<24} {state}\n",
                if *blocking { "FAIL" } else { "ok" }
            ));
        }
        ctx.printer.result(&text);
        let blocking = rows.iter().filter(|r| r.2).count();
        if blocking > 0 {
            return Err(
                Failure::new(format!("{blocking} blocking problem(s) on this hypervisor"))
                    .hint("see the FAIL lines above")
                    .into(),
            );
        }
        return Ok(());
    }
    let host = PrepareHost {
        template: args.template.clone().map(|t| (t, args.key.clone())),
        write_bridge_config: args.write_bridge_config,
    };
    let steps: [&dyn HvStep; 2] = [&host, &PrepareNetworks];
    let report = super::converge::run_hypervisor(ctx, &cluster, "prepare", &steps, args.dry_run)?;
    ctx.printer.status(&format!(
        "prepare: {}",
        match (report.changes(), args.dry_run) {
            (0, _) => "nothing to do".to_string(),
            (n, true) => format!("dry run, nothing changed: would make {n} change(s)"),
            (n, false) => format!("done, {n} change(s)"),
        }
    ));
    Ok(())
}
