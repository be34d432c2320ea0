//! `kubicluster create-vms`, `destroy`, `status`.

use anyhow::Result;

use super::Ctx;
use crate::cli::{CreateVmsArgs, DestroyArgs};
use crate::spec::{Cluster, HypervisorMode};
use crate::{lab, vms};

/// Plan, apply and wait; shared with `up`.
pub fn create(ctx: &mut Ctx, cluster: &Cluster, force: bool, dry_run: bool) -> Result<()> {
    super::converge::run_pipeline(
        ctx,
        cluster,
        super::converge::PipelineRun {
            title: "create-vms",
            steps: crate::steps::create_vms_steps(force),
            dry_run,
            allow_missing_binaries: false,
            concurrency: 0,
        },
    )?;
    if dry_run {
        ctx.printer.status("dry run: nothing changed");
    }
    Ok(())
}

pub fn run_create(ctx: &mut Ctx, args: &CreateVmsArgs) -> Result<()> {
    let mut ov = args.spec.overrides();
    ov.extra_nodes = args.nodes.clone();
    let (mut cluster, _) = crate::spec::resolve(args.spec.file.as_deref(), &ov, ctx.env)?;
    if !args.nodes.is_empty() {
        // Legacy positional nodes: only those VMs.
        let names: Vec<String> = args
            .nodes
            .iter()
            .filter_map(|s| s.split(',').next().map(str::to_string))
            .collect();
        cluster.nodes.retain(|n| names.contains(&n.name));
    }
    create(ctx, &cluster, args.force, args.dry_run)
}

pub fn run_destroy(ctx: &mut Ctx, args: &DestroyArgs) -> Result<()> {
    let (cluster, _) = ctx.cluster(&args.spec)?;
    let unknown: Vec<_> = args
        .nodes
        .iter()
        .filter(|n| cluster.node(n).is_none())
        .collect();
    if !unknown.is_empty() {
        return Err(crate::error::Failure::bad_input(format!(
            "not nodes of cluster {}: {unknown:?}",
            cluster.name
        ))
        .hint("`kubicluster status` lists the nodes")
        .into());
    }
    let lab_running =
        cluster.hypervisor.mode == HypervisorMode::Lab && lab::state(&cluster)?.is_some();
    if cluster.hypervisor.mode == HypervisorMode::Host || lab_running {
        let step = crate::steps::destroy_vms::DestroyVms {
            only: args.nodes.clone(),
        };
        super::converge::run_hypervisor(ctx, &cluster, "destroy", &[&step], args.dry_run)?;
        if args.dry_run {
            ctx.printer.status("dry run: nothing removed");
            return Ok(());
        }
    }
    if args.all {
        if cluster.hypervisor.mode == HypervisorMode::Lab && lab::down(&cluster)? {
            ctx.printer.status("destroy: lab removed");
        }
        let dir = cluster.cluster_dir();
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
            ctx.printer.status(&format!(
                "destroy: removed {} (PKI, keys, work files)",
                dir.display()
            ));
        }
    }
    Ok(())
}

pub fn run_status(ctx: &mut Ctx, args: &crate::cli::StatusArgs) -> Result<()> {
    let (cluster, _) = ctx.cluster(&args.spec)?;
    let json = args.output == crate::cli::OutputFormat::Json;
    // Every hypervisor at once, each node through its own; one that does not answer is
    // reported, and the nodes that may be there are "unknown".
    let super::hosts::Answering {
        spread,
        lost,
        unknown,
    } = super::hosts::answering(&cluster)?;
    super::hosts::reach_all(&cluster, &spread)?;
    for (host, why) in &lost {
        ctx.printer
            .status(&format!("status: hypervisor {host} does not answer: {why}"));
    }
    let mut rows: Vec<vms::NodeStatus> = unknown
        .iter()
        .filter_map(|n| cluster.node(n))
        .map(|n| vms::NodeStatus::unknown(n, "?"))
        .collect();
    // Kubernetes' view through the API while the nodes are asked over SSH.
    let (per_host, (api, k8s)) = std::thread::scope(|s| {
        let view = s.spawn(|| {
            let api = vms::node_readiness(&cluster);
            let k8s = api
                .as_ref()
                .ok()
                .and_then(|_| vms::kubernetes_view(&cluster).ok());
            (api, k8s)
        });
        let per_host = crate::par::map(&spread.hosts, |(_, view, hv)| vms::status(view, hv));
        let view = view.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        (per_host, view)
    });
    for (r, (name, _, _)) in per_host.into_iter().zip(&spread.hosts) {
        rows.extend(anyhow::Context::with_context(r, || {
            format!("hypervisor {name}")
        })?);
    }
    rows.sort_by_key(|r| cluster.nodes.iter().position(|n| n.name == r.node));
    let spread_over = cluster.hosts.len() > 1;
    if let Ok(ready) = &api {
        // Controllers run no kubelet (as in KTHW): they are not Nodes.
        for r in rows.iter_mut().filter(|r| r.role == "worker") {
            r.ready = Some(
                ready
                    .get(&r.node)
                    .cloned()
                    .unwrap_or_else(|| "absent".into()),
            );
        }
    }
    let mut unhealthy = vms::unhealthy(&rows);
    unhealthy.extend(
        lost.iter()
            .map(|(host, _)| format!("hypervisor {host} (does not answer)")),
    );
    let vip = cluster.kubernetes.api_server_vip;
    let holders = vms::vip_holders(&rows);
    let vip_line = match (vip, &holders) {
        (Some(vip), Some(h)) if h.len() == 1 => {
            Some(format!("api: virtual IP {vip} held by {}", h[0]))
        }
        (Some(vip), Some(h)) => {
            let what = if h.is_empty() {
                "held by no controller".to_string()
            } else {
                format!("held by {} controllers at once ({})", h.len(), h.join(", "))
            };
            unhealthy.push(format!("virtual IP {vip} ({what})"));
            Some(format!("api: virtual IP {vip} {what}"))
        }
        _ => None,
    };
    if let Some(v) = &k8s {
        if v["readyz"] != "ok" {
            unhealthy.push("kube-apiserver (/readyz failed)".into());
        }
        for (comp, l) in v["leaders"].as_object().into_iter().flatten() {
            if l["healthy"] != true {
                unhealthy.push(format!("{comp} (no live leader)"));
            }
        }
    }
    if json {
        let v = serde_json::json!({
            "cluster": cluster.name,
            "api": {
                "server": cluster.kubernetes.api_server_url(),
                "virtualIP": vip,
                "virtualIPHolders": holders,
                "answers": api.is_ok(),
                "error": api.as_ref().err(),
            },
            "nodes": rows,
            "hypervisorsNotAnswering": lost
                .iter()
                .map(|(h, why)| serde_json::json!({"name": h, "error": why}))
                .collect::<Vec<_>>(),
            "kubernetes": k8s,
            "unhealthy": unhealthy,
        });
        ctx.printer
            .result(&format!("{}\n", serde_json::to_string_pretty(&v)?));
    } else {
        // The hypervisor's column only where there are several (one host: as it always was).
        let host = |h: &str| {
            if spread_over {
                format!("{h:<12} ")
            } else {
                String::new()
            }
        };
        let mut text = format!(
            "{:<20} {}{:<12} {:<9} {:<15} {:<15} {:<14} {:<8} {}\n",
            "NODE",
            host("HYPERVISOR"),
            "ROLE",
            "VM",
            "CLUSTER-IP",
            "HYPERVISOR-IP",
            "SSH",
            "READY",
            "UNITS"
        );
        for r in &rows {
            let units: Vec<String> = r
                .units
                .iter()
                .map(|(u, e, a)| {
                    let u = u.trim_end_matches(".service");
                    match (e.as_str(), a.as_str()) {
                        (_, "active") => format!("{u}=active"),
                        ("enabled", a) => format!("{u}={a}"),
                        ("not-found" | "unknown", _) => format!("{u}=absent"),
                        (e, _) => format!("{u}={e}"),
                    }
                })
                .collect();
            text.push_str(&format!(
                "{:<20} {}{:<12} {:<9} {:<15} {:<15} {:<14} {:<8} {}\n",
                r.node,
                host(&r.hypervisor),
                r.role,
                r.vm,
                r.cluster_ip,
                r.hypervisor_ip,
                r.ssh,
                r.ready.as_deref().unwrap_or("-"),
                if units.is_empty() {
                    "-".into()
                } else {
                    units.join(" ")
                }
            ));
        }
        if let Some(l) = &vip_line {
            text.push_str(l);
            text.push('\n');
        }
        let servers: Vec<String> = rows
            .iter()
            .filter_map(|r| Some(format!("{} {}", r.node, r.api_server.as_deref()?)))
            .collect();
        if !servers.is_empty() {
            text.push_str(&format!("api servers: {}\n", servers.join("; ")));
        }
        for r in &rows {
            if let Some(servers) = &r.lb_servers {
                let each: Vec<String> = servers.iter().map(|(n, s)| format!("{n} {s}")).collect();
                text.push_str(&format!(
                    "load balancer {}: {}\n",
                    r.node,
                    if each.is_empty() {
                        "no API server configured".into()
                    } else {
                        each.join("; ")
                    }
                ));
            }
        }
        for l in k8s.as_ref().map(vms::kubernetes_lines).unwrap_or_default() {
            text.push_str(&l);
            text.push('\n');
        }
        ctx.printer.result(&text);
        if let Err(e) = &api {
            ctx.printer.status(&format!(
                "status: no node readiness: the API server at {} does not answer ({e})",
                cluster.kubernetes.api_server_url()
            ));
        }
    }
    if !unhealthy.is_empty() {
        ctx.printer.status(&format!(
            "status: {} node(s) not healthy: {}",
            unhealthy.len(),
            unhealthy.join(", ")
        ));
        // 3: the command worked, the cluster is not healthy (documented in the README).
        return Err(crate::error::Exit(crate::error::EXIT_UNHEALTHY).into());
    }
    Ok(())
}
