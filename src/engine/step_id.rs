//! Which step a step is: every step of kubicluster's pipelines by name, so selecting, ordering
//! and reporting steps never compares strings.

/// A step's identity; [`StepId::name`] is the `verb_noun` the original's subcommands use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StepId {
    // On the hypervisor.
    PrepareHost,
    PrepareNetworks,
    BuildImage,
    GeneratePki,
    CreateVms,
    DestroyVms,
    // On the nodes.
    InstallEtcd,
    InstallKubernetesControllers,
    InstallApiVip,
    InstallApiLoadBalancer,
    PrepareWorkerNodes,
    InstallRunc,
    InstallContainerd,
    InstallCni,
    InstallKubernetesWorkers,
    InstallAddons,
    SnapshotEtcd,
    ResetEtcdData,
    RestoreEtcd,
    RestartAfterRestore,
    ScheduleEtcdBackup,
    /// A step outside kubicluster's pipelines (tests, benchmarks).
    Custom(&'static str),
}

impl StepId {
    pub const fn name(self) -> &'static str {
        match self {
            StepId::PrepareHost => "prepare_host",
            StepId::PrepareNetworks => "prepare_networks",
            StepId::BuildImage => "build_image",
            StepId::GeneratePki => "generate_pki",
            StepId::CreateVms => "create_vms",
            StepId::DestroyVms => "destroy_vms",
            StepId::InstallEtcd => "install_etcd",
            StepId::InstallKubernetesControllers => "install_kubernetes_controllers",
            StepId::InstallApiVip => "install_api_vip",
            StepId::InstallApiLoadBalancer => "install_api_lb",
            StepId::PrepareWorkerNodes => "prepare_worker_nodes",
            StepId::InstallRunc => "install_runc",
            StepId::InstallContainerd => "install_containerd",
            StepId::InstallCni => "install_cni",
            StepId::InstallKubernetesWorkers => "install_kubernetes_workers",
            StepId::InstallAddons => "install_addons",
            StepId::SnapshotEtcd => "snapshot_etcd",
            StepId::ResetEtcdData => "reset_etcd_data",
            StepId::RestoreEtcd => "restore_etcd",
            StepId::RestartAfterRestore => "restart_after_restore",
            StepId::ScheduleEtcdBackup => "schedule_etcd_backup",
            StepId::Custom(name) => name,
        }
    }
}

impl std::fmt::Display for StepId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
