//! `kubicluster remove NODE`: take a worker out of the cluster — drained and deleted through
//! the API where one answers (said plainly where none does), its VM and disk destroyed, its
//! certificate, key and kubeconfig removed, and the node dropped from the cluster `up`
//! remembered (if it remembered one). The other nodes' routes (bridge mode) follow on the next `up`/`create-workers`.
//! Controllers are not removed this way: etcd membership changes go through create-controllers.

use std::time::Duration;

use anyhow::Result;

use super::Ctx;
use crate::cli::RemoveArgs;
use crate::error::Failure;
use crate::spec::{Role, Source};
use crate::vms;

pub fn run(ctx: &mut Ctx, args: &RemoveArgs) -> Result<()> {
    let (cluster, source) = ctx.cluster(&args.spec)?;
    let Some(node) = cluster.node(&args.node).cloned() else {
        return Err(Failure::bad_input(format!(
            "{} is not a node of cluster {}",
            args.node, cluster.name
        ))
        .hint("`kubicluster status` lists the nodes")
        .into());
    };
    if node.role == Role::Controller {
        return Err(Failure::bad_input(format!("{} is a controller", node.name))
            .hint("take it out of the cluster file and run `kubicluster create-controllers` (its etcd member is removed), then `kubicluster destroy NODE`")
            .into());
    }
    if node.role == Role::LoadBalancer {
        return Err(Failure::bad_input(format!("{} is the API's load balancer", node.name))
            .hint("every kubeconfig and the API server's certificate name its address: take it out of the cluster file and run `kubicluster up` (clients move to the controllers), then `kubicluster destroy NODE`")
            .into());
    }
    // Its hypervisor first (every one of a spread cluster): nothing is drained when its VM
    // could not be removed after.
    let spread = super::hosts::spread(&cluster)?;
    super::hosts::reach_all(&cluster, &spread)?;
    let _lock = super::lock(&cluster)?;
    // 1. The API: drain, then delete the Node object.
    let kc = std::fs::read_to_string(cluster.admin_kubeconfig()).ok();
    let api = kc
        .as_deref()
        .map(|k| crate::kubeapi::Client::from_kubeconfig(k, None))
        .transpose()?;
    // Never destroy an undrained node because /readyz failed once: an API server that answers
    // gets a minute to be ready (once, just after a snapshot's revert, etcd's check failed).
    match api
        .as_ref()
        .map(|c| (c, c.ready_soon(Duration::from_secs(60))))
    {
        Some((c, Ok(()))) => {
            let evicted = c.drain(&node.name, Duration::from_secs(120))?;
            c.delete(&format!("/api/v1/nodes/{}", node.name))?;
            ctx.printer.status(&format!(
                "remove: {} drained ({evicted} pod(s) evicted) and deleted from the API",
                node.name
            ));
        }
        Some((_, Err(e))) => ctx.printer.status(&format!(
            "remove: the API server does not answer ({e:#}): {} was NOT drained and its Node object is left",
            node.name
        )),
        None => ctx
            .printer
            .status("remove: no admin kubeconfig: nothing to drain through the API"),
    }
    // 2. The VM and its disk.
    let on = spread.on_hosts();
    let here = on
        .iter()
        .find(|h| h.cluster.node(&node.name).is_some())
        .expect("every node is placed");
    let mut gate = crate::engine::hv::Gate::quiet(false);
    let removed = vms::destroy(
        here.cluster,
        here.hv,
        std::slice::from_ref(&node.name),
        &mut gate,
    )?;
    ctx.printer.status(&format!(
        "remove: VM {}{}",
        if removed.is_empty() {
            "already absent".to_string()
        } else {
            format!("{} destroyed", removed.join(", "))
        },
        if spread.several() {
            format!(" on hypervisor {}", here.name)
        } else {
            String::new()
        }
    ));
    // 3. Its credentials.
    let mut gone = Vec::new();
    for f in [
        format!("{}.pem", node.name),
        format!("{}-key.pem", node.name),
        format!("{}.kubeconfig", node.name),
    ] {
        let p = cluster.certs_dir().join(&f);
        if p.exists() {
            std::fs::remove_file(&p)?;
            gone.push(f);
        }
    }
    ctx.printer.status(&format!(
        "remove: credentials removed: {}",
        if gone.is_empty() {
            "none left".into()
        } else {
            gone.join(", ")
        }
    ));
    // 4. The cluster as `up` remembered it.
    let mut left = cluster.clone();
    left.nodes.retain(|n| n.name != node.name);
    left.file.spec.nodes.retain(|n| n.name != node.name);
    if cluster.cluster_dir().join(crate::spec::REMEMBERED).exists() {
        crate::spec::remember(&left)?;
    }
    for w in crate::spec::shrink_warnings(&cluster.file, &left) {
        ctx.printer.status(&w);
    }
    let next = match source {
        Source::File(p) => {
            format!(
                "delete {} from {} and run `kubicluster up` so the other nodes drop its route",
                node.name,
                p.display()
            )
        }
        _ => format!(
            "take {} out of the cluster file if it is listed there, and run `kubicluster up` (or create-workers) so the other nodes drop its route",
            node.name
        ),
    };
    ctx.printer.status(&format!("remove: done; {next}"));
    Ok(())
}
