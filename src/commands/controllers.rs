//! `kubicluster create-controllers`: the controller slice of the pipeline (etcd, then the
//! control plane) on the engine. The original's subcommands pick one step: `install_etcd`,
//! `install_kubernetes_controllers`; `update_certs` and `update_configs` converge both (the
//! engine only rewrites what differs, so they are the same run).

use anyhow::Result;

use super::Ctx;
use super::converge::{Run, converge};
use crate::cli::{ControllerPart, CreateControllersArgs};
use crate::error::Failure;
use crate::steps;

pub fn run(ctx: &mut Ctx, args: &CreateControllersArgs) -> Result<()> {
    let (cluster, _) = ctx.cluster(&args.spec)?;
    if cluster.controllers().next().is_none() {
        return Err(Failure::bad_input("the cluster has no controllers")
            .hint("add nodes with role: controller to the cluster file, or pass -c NAME,CLUSTER_IP,HYPERVISOR_IP")
            .into());
    }
    if args.force_etcd_data_reset {
        return Err(Failure::bad_input("--force-etcd-data-reset (-fedr) is not available yet: kubicluster never wipes etcd data")
            .hint("to start over, `kubicluster destroy` the controllers and create them again")
            .into());
    }
    let only = match args.only {
        Some(ControllerPart::InstallEtcd) => Some("install_etcd"),
        Some(ControllerPart::InstallKubernetesControllers) => {
            Some("install_kubernetes_controllers")
        }
        Some(ControllerPart::UpdateCerts | ControllerPart::UpdateConfigs) | None => None,
    };
    let mut a = vec!["create-controllers".to_string()];
    if let Some(o) = only {
        a.push(o.to_string());
    }
    if args.dry_run {
        a.push("--dry-run".into());
    }
    if args.allow_missing_binaries {
        a.push("--allow-missing-binaries".into());
    }
    if args.concurrency > 0 {
        a.push(format!("--concurrency={}", args.concurrency));
    }
    // install_etcd alone never needs the Kubernetes binaries.
    converge(
        ctx,
        &cluster,
        Run {
            args: a,
            steps: steps::controllers(only),
            dry_run: args.dry_run,
            allow_missing_binaries: args.allow_missing_binaries,
            concurrency: args.concurrency,
            title: "create-controllers",
        },
    )?;
    Ok(())
}
