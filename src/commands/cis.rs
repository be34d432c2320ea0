//! `kubicluster cis`: the CIS Kubernetes Benchmark's file and flag items on every running node
//! (see [`crate::cis`]), one PASS/FAIL/WAIVED line per item and node. Exit 1 when an item fails
//! that is not waived on purpose.

use std::time::Duration;

use anyhow::Result;

use super::{Ctx, reach_nodes};
use crate::cis::{self, Verdict};
use crate::cli::CisArgs;
use crate::error::Failure;
use crate::host::{Cmd, Host};

pub fn run(ctx: &mut Ctx, args: &CisArgs) -> Result<()> {
    let (cluster, _) = ctx.cluster(&args.spec)?;
    reach_nodes(&cluster)?;
    let answers = crate::par::map(&cluster.nodes, |n| {
        let host = crate::vms::connect(&cluster, n, Duration::from_secs(10))?;
        let gather = || -> anyhow::Result<Vec<cis::Finding>> {
            let o = host.run(&Cmd::script(cis::GATHER, Vec::<String>::new()))?;
            if !o.ok() {
                anyhow::bail!("{}: the checks' script failed: {}", n.name, o.tail(3));
            }
            Ok(cis::evaluate(n.role, &cis::parse(&o.stdout_text())))
        };
        // A component caught between a crash and systemd's restart (RestartSec=5) is looked
        // at again for up to 20 s before it counts as not running.
        let mut found = gather()?;
        let _ = crate::retry::until(Duration::from_secs(20), Duration::from_secs(5), || {
            if !found.iter().any(cis::Finding::not_running) {
                return Ok(());
            }
            found = gather().map_err(crate::retry::NotYet::Stop)?;
            Err(anyhow::anyhow!("a component is not running").into())
        });
        Ok::<_, anyhow::Error>(found)
    });
    let (mut pass, mut fail, mut waived) = (0, 0, 0);
    for (n, found) in cluster.nodes.iter().zip(answers) {
        let found = found.map_err(|e| {
            Failure::new(format!("cis: {e:#}"))
                .hint("the node must run and answer SSH: see `kubicluster status`")
        })?;
        for f in found {
            let line = match &f.verdict {
                Verdict::Pass(what) => {
                    pass += 1;
                    format!("PASS    {} {} — {what}", f.id, f.title)
                }
                Verdict::Fail(what) => {
                    fail += 1;
                    format!("FAIL    {} {} — {what}", f.id, f.title)
                }
                Verdict::Waived(what, why) => {
                    waived += 1;
                    format!("WAIVED  {} {} — {what}: {why}", f.id, f.title)
                }
            };
            ctx.printer.status(&format!("{}: {line}", n.name));
        }
    }
    let summary = format!("cis: {pass} pass, {fail} fail, {waived} waived on purpose");
    if fail > 0 {
        return Err(Failure::new(summary)
            .hint("see each FAIL line; `kubicluster up` puts kubicluster's files and units back")
            .into());
    }
    ctx.printer.status(&summary);
    Ok(())
}
