//! `kubicluster create-controllers`: the controller slice of the pipeline (etcd, then the
//! control plane) on the engine. The original's subcommands pick one step: `install_etcd`,
//! `install_kubernetes_controllers`; `update_certs` and `update_configs` converge both (the
//! engine only rewrites what differs, so they are the same run).

use crate::engine::StepId;
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
    if args.force_etcd_data_reset && !args.yes {
        return Err(Failure::bad_input(
            "--force-etcd-data-reset (-fedr) starts etcd over: every object of the cluster is lost",
        )
        .hint("a snapshot is saved to the hypervisor and the old data moved aside first; pass --yes to go ahead")
        .into());
    }
    let only = match args.only {
        Some(ControllerPart::InstallEtcd) => Some(StepId::InstallEtcd),
        Some(ControllerPart::InstallKubernetesControllers) => {
            Some(StepId::InstallKubernetesControllers)
        }
        Some(ControllerPart::UpdateCerts | ControllerPart::UpdateConfigs) | None => None,
    };
    let mut steps = steps::controllers(only);
    if args.force_etcd_data_reset {
        // One stamp for the snapshot and every controller's data set aside.
        let stamp = super::stamp();
        let mut reset: Vec<std::sync::Arc<dyn crate::engine::Step>> = vec![
            std::sync::Arc::new(steps::snapshot_etcd::SnapshotEtcd {
                stamp: stamp.clone(),
            }),
            std::sync::Arc::new(steps::reset_etcd_data::ResetEtcdData { stamp }),
        ];
        reset.append(&mut steps);
        steps = reset;
    }
    // install_etcd alone never needs the Kubernetes binaries.
    converge(
        ctx,
        &cluster,
        Run {
            steps,
            dry_run: args.run.dry_run,
            allow_missing_binaries: args.run.allow_missing_binaries,
            concurrency: args.run.concurrency,
            title: "create-controllers",
        },
    )?;
    Ok(())
}
