//! `kubicluster validate`: resolve the spec and print it; every problem at once, exit 2.

use anyhow::Result;

use super::Ctx;
use crate::cli::SpecOnly;
use crate::spec;

pub fn run(ctx: &mut Ctx, args: &SpecOnly) -> Result<()> {
    let (cluster, source) = ctx.cluster(&args.spec)?;
    ctx.printer.result(&spec::to_yaml(&cluster.file));
    let controllers = cluster.controllers().count();
    let k = &cluster.kubernetes;
    if controllers > 1 && k.api_server_lb_ip.is_none() && k.api_server_vip.is_none() {
        ctx.printer.status(&format!(
            "warning: {controllers} controllers but spec.kubernetes.apiServerVIP is \"none\": every kubelet, kube-proxy and kubeconfig talks to the first controller ({}), so losing it loses the API for the whole cluster; leave apiServerVIP empty (a virtual IP the controllers hold) or set apiServerLoadBalancerIP to your load balancer",
            k.api_server_ip
        ));
    }
    if controllers == 2 {
        ctx.printer.status(
            "warning: 2 controllers: etcd's quorum needs both, so losing either stops the API whatever address clients use; three controllers survive losing one",
        );
    }
    if cluster.hosts.len() > 1 {
        // What the file alone decides (names, memoryMiB bounds); `plan` adds what the
        // hypervisors report (VMs that exist, free memory).
        let placed = crate::placement::place(&cluster, &Default::default())?;
        let how = ", from the file alone (`plan` asks the hypervisors)";
        super::print_placement(ctx, &cluster, how, &placed);
    }
    let lb = cluster
        .load_balancers()
        .next()
        .map(|n| {
            format!(
                ", load balancer {} (the API: {})",
                n.name,
                k.api_server_url()
            )
        })
        .unwrap_or_default();
    ctx.printer.status(&format!(
        "valid: cluster {} from {source}: {} controller(s), {} worker(s){lb}",
        cluster.name,
        cluster.controllers().count(),
        cluster.workers().count()
    ));
    Ok(())
}
