//! `kubicluster create-workers`: the worker slice of the pipeline on the engine (node
//! preparation, runc, containerd, CNI and pod network, kubelet and kube-proxy). The original's
//! subcommands pick one step. In bridge mode the controllers are targets too (routes to the
//! pod subnets).

use anyhow::Result;

use super::Ctx;
use super::converge::{Run, converge};
use crate::cli::CreateWorkersArgs;
use crate::error::Failure;
use crate::steps;

pub fn run(ctx: &mut Ctx, args: &CreateWorkersArgs) -> Result<()> {
    let (cluster, _) = ctx.cluster(&args.spec)?;
    if cluster.workers().next().is_none() {
        return Err(Failure::bad_input("the cluster has no workers")
            .hint("add nodes with role: worker to the cluster file, or pass -w NAME,CLUSTER_IP,HYPERVISOR_IP")
            .into());
    }
    let only = args.only.map(|p| p.step());
    converge(
        ctx,
        &cluster,
        Run {
            steps: steps::workers(only),
            dry_run: args.run.dry_run,
            allow_missing_binaries: args.run.allow_missing_binaries,
            concurrency: args.run.concurrency,
            title: "create-workers",
        },
    )?;
    Ok(())
}

/// Wait until every worker is Ready (with `since`: from a heartbeat at or after it); returns
/// how many workers and how long it took.
pub fn wait_workers_ready(
    cluster: &crate::spec::Cluster,
    timeout: std::time::Duration,
    since: Option<time::OffsetDateTime>,
) -> Result<(usize, std::time::Duration)> {
    let t = std::time::Instant::now();
    let want = cluster.workers().count();
    crate::retry::until(timeout, std::time::Duration::from_secs(2), || {
        let ready = crate::vms::node_readiness_since(cluster, since).unwrap_or_default();
        let n = cluster
            .workers()
            .filter(|w| ready.get(&w.name).is_some_and(|r| r == "Ready"))
            .count();
        if n == want {
            Ok(())
        } else {
            Err(format!(
                "only {n} of {want} workers Ready {} s later: {ready:?}",
                timeout.as_secs()
            )
            .into())
        }
    })
    .map_err(|why| {
        crate::error::Failure::new(why).hint(
            "`kubicluster status` shows each node's units; the kubelet's journal says why (journalctl -u kubelet)",
        )
    })?;
    Ok((want, t.elapsed()))
}

/// `up`'s last step: the smoke test, unless skipped or the API server cannot run.
pub fn smoke_after(
    ctx: &mut Ctx,
    cluster: &crate::spec::Cluster,
    report: &crate::engine::Report,
    skip: bool,
) -> Result<()> {
    if let Some((_, why)) = report
        .nodes
        .iter()
        .flat_map(|n| n.not_started.iter())
        .find(|(u, _)| u == "kube-apiserver.service")
    {
        ctx.printer.status(&format!(
            "up: smoke test (kubicluster test) NOT run: kube-apiserver is not started ({why})"
        ));
        return Ok(());
    }
    // A cluster "is up" when every node is Ready (kubeadm's and kind's `--wait`).
    let (want, took) = wait_workers_ready(cluster, std::time::Duration::from_secs(300), None)?;
    ctx.printer.status(&format!(
        "up: every node Ready ({want}/{want} workers), {:.0} s after the node steps ended",
        took.as_secs_f64()
    ));
    if skip {
        ctx.printer.status("up: smoke test skipped (--skip-test)");
        return Ok(());
    }
    ctx.printer.status("up: smoke test");
    let results = super::smoke::smoke(
        cluster,
        &cluster.test_image,
        std::time::Duration::from_secs(180),
    )?;
    super::smoke::report(ctx, &results)
}
