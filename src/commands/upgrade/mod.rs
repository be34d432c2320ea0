//! `kubicluster upgrade --to VERSION`: Kubernetes upgraded one node at a time, in the order
//! Kubernetes' version-skew policy needs (kubeadm's documented procedure, done for the user):
//! the version the API server runs is checked against the target (one minor at a time, no
//! downgrade across minors); etcd, when the target comes with another release of it, moves
//! first, member by member ([`etcd`]); then each controller gets the new control plane and must answer
//! `/readyz` before the next; then each worker is cordoned and drained (PodDisruptionBudgets
//! respected: an eviction they refuse is retried until `--drain-timeout`), gets the new
//! kubelet and kube-proxy, must be Ready at the new version, and is uncordoned; the addons
//! last. Every node's change is the pipeline's own steps narrowed to that node, so `upgrade`
//! writes exactly what `up` with the new version would, and running it again changes nothing.
//!
//! Resuming: a worker kubicluster drained carries an annotation until it is uncordoned, and a
//! worker already Ready at the target is not drained again, so after a failure or Ctrl-C the
//! same command goes on where it stopped. The resolved spec is remembered at the new version
//! only once every node runs it.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::{Ctx, reach_nodes};
use crate::cli::UpgradeArgs;
use crate::error::Failure;
use crate::kubeapi::Client;
use crate::spec::{Cluster, Node, Role, Version, skew};

pub mod etcd;

/// On a node kubicluster cordoned for an upgrade (the target version), until it uncordons it.
const DRAINED: &str = "kubicluster.io/drained-for-upgrade";

pub fn run(ctx: &mut Ctx, args: &UpgradeArgs) -> Result<()> {
    let to: Version = args.to.parse().map_err(|e: String| {
        Failure::bad_input(format!("--to: {e}")).hint("give a Kubernetes release: --to 1.37.2")
    })?;
    let mut ov = args.spec.overrides();
    ov.kubernetes_version = Some(to.to_string());
    let (cluster, _) = crate::spec::resolve(args.spec.file.as_deref(), &ov, ctx.env)?;
    // The skew rules first on the cluster's record, before anything is reached (the API server
    // and every etcd member are asked again before anything changes).
    if let Some(f) = crate::spec::remembered(&cluster) {
        if let Ok(was) = f.spec.kubernetes.version.parse::<Version>() {
            kubernetes_allowed(was, to)?;
        }
        if let Ok(was) = f.spec.versions.etcd.parse::<Version>() {
            etcd::allowed(was, cluster.versions.etcd, "the cluster's record")?;
        }
    }
    let api = Client::admin(&cluster)?.ok_or_else(|| {
        Failure::new(format!("cluster {} has no admin kubeconfig", cluster.name))
            .hint("an upgrade needs a running cluster: `kubicluster up` makes one")
    })?;
    reach_nodes(&cluster)?;
    let from = api.version().map_err(|e| {
        Failure::new(format!("the API server does not answer: {e:#}")).hint(
            "an upgrade needs a running cluster: `kubicluster status` says what is down, `kubicluster start` starts a stopped one",
        )
    })?;
    let kind = kubernetes_allowed(from, to)?;
    let _lock = (!args.dry_run).then(|| super::lock(&cluster)).transpose()?;
    let holder = vip_holder(&cluster);
    let order: Vec<&Node> = control_planes(&cluster, holder.as_deref())
        .into_iter()
        .chain(cluster.workers())
        .collect();
    ctx.printer.status(&format!(
        "upgrade: the API server runs {from}; to {to} ({}), one node at a time: {}, then the addons{}",
        match kind {
            skew::Kind::Same => "the same version: what is not there yet",
            skew::Kind::Patch => "a patch release",
            skew::Kind::Minor => "the next minor release",
        },
        order
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(" → "),
        holder.map_or(String::new(), |h| format!(
            " ({h} holds the API's virtual IP: its control plane goes last, so the address moves once)"
        ))
    ));
    if !args.dry_run && cluster.artifacts.source == crate::spec::ArtifactSource::Build {
        super::artifacts::ensure_for(ctx.printer, &cluster, ctx.env)?;
    }
    let started = Instant::now();
    let mut times = etcd::roll(ctx, &cluster, args.dry_run)?
        .map(|t| vec![format!("etcd: {}", t.join(", "))])
        .unwrap_or_default();
    for (i, node) in order.iter().enumerate() {
        ctx.printer.status(&format!(
            "upgrade [{}/{}] {} ({})",
            i + 1,
            order.len(),
            node.name,
            node.role
        ));
        let t = Instant::now();
        let evicted = if args.dry_run {
            run_steps(ctx, &cluster, node, true)?;
            continue;
        } else if node.role == Role::Controller {
            run_steps(ctx, &cluster, node, false)?;
            controller_ready(&cluster, node, &api)?;
            None
        } else {
            Some(upgrade_worker(
                ctx,
                &cluster,
                node,
                &api,
                to,
                Duration::from_secs(args.drain_timeout),
            )?)
        };
        times.push(format!(
            "{} {:.0} s{}",
            node.name,
            t.elapsed().as_secs_f64(),
            match evicted {
                Some(Some(n)) => format!(" ({n} pod(s) evicted)"),
                Some(None) => " (already at the version: not drained)".into(),
                None => String::new(),
            }
        ));
    }
    let addons = crate::engine::pipeline::select(
        crate::steps::pipeline(false),
        &[crate::engine::StepId::InstallAddons],
    );
    converge_steps(ctx, &cluster, addons, args.dry_run)?;
    if args.dry_run {
        ctx.printer
            .status("upgrade: dry run, nothing changed (each node's plan above, in order)");
        return Ok(());
    }
    crate::spec::remember(&cluster)?;
    ctx.printer.status(&format!(
        "upgrade: every node runs Kubernetes {to} in {:.0} s: {}",
        started.elapsed().as_secs_f64(),
        times.join(", ")
    ));
    Ok(())
}

/// The controllers in the order their control planes are upgraded: the file's order, the one
/// holding the API's virtual IP last. Its API server's restart takes keepalived down first,
/// which gives the address up at once; last, the address moves once, to an upgraded controller,
/// instead of once for every controller that holds it in turn.
pub fn control_planes<'c>(cluster: &'c Cluster, holder: Option<&str>) -> Vec<&'c Node> {
    let mut nodes: Vec<&Node> = cluster.controllers().collect();
    nodes.sort_by_key(|n| Some(n.name.as_str()) == holder); // stable: the file's order otherwise
    nodes
}

/// The controller holding the API's virtual IP, asked of each (`None` without a virtual IP, or
/// when none says it holds it).
fn vip_holder(cluster: &Cluster) -> Option<String> {
    let vip = cluster.kubernetes.api_server_vip?;
    cluster
        .controllers()
        .find(|c| {
            crate::vms::connect(cluster, c, Duration::from_secs(20))
                .ok()
                .and_then(|h| crate::vms::holds(&h, vip))
                == Some(true)
        })
        .map(|c| c.name.clone())
}

/// Kubernetes' skew rules for the cluster going `from` → `to`.
fn kubernetes_allowed(from: Version, to: Version) -> Result<skew::Kind> {
    skew::check(from, to).map_err(|r| {
        Failure::bad_input(format!("cannot upgrade from {from} to {to}: {}", r.rule))
            .hint(format!("from {from} an upgrade may go to {}", r.allowed))
            .into()
    })
}

/// `up` with another Kubernetes release than the one `cluster`'s API server runs would replace
/// it on every node at once (no drain, no order, no skew check): refused, pointing at
/// `upgrade`. A cluster whose API does not answer (not made yet, stopped) is not refused.
pub fn refuse_a_running_release(cluster: &Cluster) -> Result<()> {
    if cluster.hypervisor.mode == crate::spec::HypervisorMode::Lab
        && crate::lab::state(cluster)?.is_none()
    {
        return Ok(()); // no lab, no cluster running in it
    }
    reach_nodes(cluster)?;
    let Some(api) = Client::admin(cluster)? else {
        return Ok(());
    };
    let Ok(running) = api.version() else {
        return Ok(());
    };
    let wanted = cluster.kubernetes.version;
    if running == wanted {
        return refuse_another_etcd(cluster);
    }
    let hint = match skew::check(running, wanted) {
        Ok(_) => format!(
            "`kubicluster upgrade --to {wanted}` upgrades it node by node (drain, skew rules); or set spec.kubernetes.version: {running} to keep it"
        ),
        Err(r) => format!(
            "{} — keep spec.kubernetes.version: {running} (from {running} an upgrade may go to {})",
            r.rule, r.allowed
        ),
    };
    Err(Failure::bad_input(format!(
        "cluster {} runs Kubernetes {running}, the spec asks for {wanted}: `up` would replace it on every node at once",
        cluster.name
    ))
    .hint(hint)
    .into())
}

/// The same for etcd: `up` with another etcd than the running cluster's (as `up` or `upgrade`
/// last recorded it) would restart every member with it at once.
fn refuse_another_etcd(cluster: &Cluster) -> Result<()> {
    let Some(was) =
        crate::spec::remembered(cluster).and_then(|f| f.spec.versions.etcd.parse::<Version>().ok())
    else {
        return Ok(());
    };
    let wanted = cluster.versions.etcd;
    if was == wanted {
        return Ok(());
    }
    Err(Failure::bad_input(format!(
        "cluster {} runs etcd {was}, the spec asks for {wanted}: `up` would restart every member with it at once",
        cluster.name
    ))
    .hint(format!(
        "`kubicluster upgrade --to {}` moves etcd member by member; or set spec.versions.etcd: {was} to keep it",
        cluster.kubernetes.version
    ))
    .into())
}

/// The pipeline's node steps but etcd's and the addons', narrowed to `node` (a plan only, with
/// `dry_run`).
fn run_steps(ctx: &mut Ctx, cluster: &Cluster, node: &Node, dry_run: bool) -> Result<()> {
    converge_steps(
        ctx,
        cluster,
        crate::steps::upgrade_steps(cluster, &node.name),
        dry_run,
    )
}

/// The pipeline's steps `ids` narrowed to `node` (a plan only, with `dry_run`).
fn run_on(
    ctx: &mut Ctx,
    cluster: &Cluster,
    node: &Node,
    ids: &[crate::engine::StepId],
    dry_run: bool,
) -> Result<()> {
    let steps = crate::engine::pipeline::select(crate::steps::pipeline(false), ids);
    converge_steps(
        ctx,
        cluster,
        crate::engine::pipeline::on_node(&steps, cluster, &node.name),
        dry_run,
    )
}

fn converge_steps(
    ctx: &mut Ctx,
    cluster: &Cluster,
    steps: Vec<crate::engine::pipeline::PipelineStep>,
    dry_run: bool,
) -> Result<()> {
    super::converge::run_pipeline(
        ctx,
        cluster,
        super::converge::PipelineRun {
            title: "upgrade",
            steps,
            dry_run,
            allow_missing_binaries: false,
            concurrency: 0,
        },
    )?;
    Ok(())
}

/// This controller's own API server answers `/readyz` (not only the load-balanced address).
fn controller_ready(cluster: &Cluster, node: &Node, api: &Client) -> Result<()> {
    let server = format!(
        "https://{}:{}",
        node.cluster_ip, cluster.kubernetes.api_server_port
    );
    let kc = std::fs::read_to_string(cluster.admin_kubeconfig())?;
    Client::from_kubeconfig(&kc, Some(&server))?
        .wait_ready(Duration::from_secs(180))
        .map_err(|e| {
            Failure::new(format!("{}: {e:#}", node.name))
                .hint("`journalctl -u kube-apiserver` on the controller says why; the other nodes were left as they are")
        })?;
    api.wait_ready(Duration::from_secs(60))
}

/// Drain (unless already at `to`), the node steps, Ready at `to`, uncordon. Returns how many
/// pods were evicted, `None` when the node was not drained.
fn upgrade_worker(
    ctx: &mut Ctx,
    cluster: &Cluster,
    node: &Node,
    api: &Client,
    to: Version,
    drain_timeout: Duration,
) -> Result<Option<usize>> {
    let path = format!("/api/v1/nodes/{}", node.name);
    let at_target = |api: &Client| -> Result<bool> {
        let (status, body) = api.get(&path)?;
        anyhow::ensure!(status == 200, "GET {path}: HTTP {status}");
        let v: serde_json::Value = serde_json::from_str(&body)?;
        Ok(crate::kubeapi::node_ready(&v)
            && v["status"]["nodeInfo"]["kubeletVersion"].as_str() == Some(&format!("v{to}")))
    };
    let evicted = if at_target(api)? {
        None
    } else {
        api.annotate_node(&node.name, DRAINED, Some(&to.to_string()))?;
        Some(api.drain(&node.name, drain_timeout).map_err(|e| {
            Failure::new(format!("drain {}: {e:#}", node.name)).hint(
                "a PodDisruptionBudget or a pod that does not stop holds it: fix that, or give more time with --drain-timeout, and run the same upgrade again (it goes on from here; the node stays cordoned)",
            )
        })?)
    };
    run_steps(ctx, cluster, node, false)?;
    crate::retry::until(
        Duration::from_secs(300),
        Duration::from_secs(2),
        || match at_target(api) {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!("{} is not Ready at v{to}", node.name).into()),
            Err(e) => Err(format!("{e:#}").into()),
        },
    )
    .map_err(|why| {
        Failure::new(format!("{why} after 300 s")).hint(
            "`journalctl -u kubelet` on the worker says why; it stays cordoned until the same upgrade runs again",
        )
    })?;
    // Uncordon only what kubicluster cordoned (a node the user cordoned stays so).
    if api.uncordon_if_annotated(&node.name, DRAINED)? {
        ctx.printer.status(&format!(
            "upgrade: {} Ready at v{to}, uncordoned",
            node.name
        ));
    }
    Ok(evicted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_controller_holding_the_virtual_ip_is_upgraded_last() {
        let c = etcd::tests::three();
        let names = |holder| -> Vec<String> {
            control_planes(&c, holder)
                .iter()
                .map(|n| n.name.clone())
                .collect()
        };
        assert_eq!(
            names(Some("kubi-controller-01")),
            [
                "kubi-controller-02",
                "kubi-controller-03",
                "kubi-controller-01"
            ]
        );
        assert_eq!(
            names(None),
            [
                "kubi-controller-01",
                "kubi-controller-02",
                "kubi-controller-03"
            ],
            "no holder found: the file's order"
        );
    }
}
