//! `kubicluster prepare`: ready the hypervisor — the steps `prepare_host` (packages, kernel
//! modules, sysctls; host mode) and `prepare_networks` (libvirt networks, storage pool, SSH
//! key). `--check` reports readiness and changes nothing; `--dry-run` lists the changes.

use anyhow::Result;

use super::Ctx;
use crate::cli::PrepareArgs;
use crate::engine::hv::HvStep;
use crate::error::Failure;
use crate::steps::prepare_host::PrepareHost;
use crate::steps::prepare_networks::PrepareNetworks;
use crate::steps::readiness::{self, Checked};

pub fn run(ctx: &mut Ctx, args: &PrepareArgs) -> Result<()> {
    let (cluster, _) = ctx.cluster(&args.spec)?;
    if args.check {
        return check(ctx, &cluster);
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

/// `prepare --check`: every hypervisor asked in parallel (one that does not answer is a FAIL row
/// of its own, the others still reported), where the nodes go when there are several, and the
/// rows with FAIL or ok. Changes nothing.
fn check(ctx: &mut Ctx, cluster: &crate::spec::Cluster) -> Result<()> {
    let rows = if cluster.hosts.len() > 1 {
        let super::hosts::Answering { spread, lost, .. } = super::hosts::answering(cluster)?;
        if lost.is_empty() {
            spread.show(ctx, cluster);
        } else {
            ctx.printer.status(
                "placement: not known while a hypervisor does not answer (each one that answers is checked with the nodes whose VMs it has and those the file puts there)",
            );
        }
        let mut checked: Vec<Checked> = spread
            .on_hosts()
            .into_iter()
            .map(|h| Checked {
                name: h.name,
                cluster: h.cluster,
                hv: Ok(h.hv),
            })
            .collect();
        checked.extend(lost.iter().map(|(name, why)| Checked {
            name,
            cluster,
            hv: Err(format!("does not answer: {why}")),
        }));
        checked.sort_by_key(|c| cluster.hosts.iter().position(|h| h.name == c.name));
        readiness::readiness_over(cluster, &checked)
    } else {
        let hv = super::connect(cluster);
        readiness::readiness(
            cluster,
            match &hv {
                Ok(h) => Ok(h as &dyn crate::hypervisor::Hypervisor),
                Err(e) => Err(format!("{e:#}")),
            },
        )
    };
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(24);
    let mut text = String::new();
    for (what, state, blocking) in &rows {
        text.push_str(&format!(
            "{:<5} {what:<width$} {state}\n",
            if *blocking { "FAIL" } else { "ok" }
        ));
    }
    ctx.printer.result(&text);
    let blocking = rows.iter().filter(|r| r.2).count();
    if blocking > 0 {
        return Err(Failure::new(format!(
            "{blocking} blocking problem(s) on {}",
            if cluster.hosts.len() > 1 {
                "the hypervisors"
            } else {
                "this hypervisor"
            }
        ))
        .hint("see the FAIL lines above")
        .into());
    }
    Ok(())
}
