//! The steps, one file each, named as the original's subcommands. `up` is one literal, ordered
//! list, [`pipeline`]: on the hypervisor the networks, the image, the PKI and the VMs, then on
//! the nodes etcd, the control plane, the workers and the addons; the other commands select
//! from it. Hypervisor steps ([`crate::engine::hv::HvStep`]) pass each change through the
//! engine's gate; node steps ([`Step`]) declare each node's files and units for the engine to
//! diff.
//!
//! Steps get their inputs ([`Inputs`]: the PKI files read from the hypervisor's work dir and
//! the artifacts made ready there) from the command, so `desired` is a pure function of the
//! spec, the inputs and read-only facts from the nodes.

pub mod build_image;
pub mod create_vms;
pub mod destroy_vms;
pub mod generate_pki;
pub mod install_addons;
pub mod install_api_lb;
pub mod install_api_vip;
pub mod install_cni;
pub mod install_containerd;
pub mod install_control_plane;
pub mod install_etcd;
pub mod install_kubernetes_workers;
pub mod install_runc;
pub mod prepare_host;
pub mod prepare_networks;
pub mod prepare_worker_nodes;
pub mod readiness;
pub mod reset_etcd_data;
pub mod restore_etcd;
pub mod schedule_etcd_backup;
pub mod snapshot_etcd;

use std::sync::Arc;

use anyhow::Result;

use crate::artifacts::Provided;
use crate::engine::pipeline::{self, PipelineStep};
use crate::engine::{Blob, Desired, Step, StepId};
use crate::spec::Cluster;

pub use crate::engine::inputs::{ImageInput, Inputs};

/// Where `component`'s binaries are on the node: from the artifacts, or (for `render`, which
/// resolves none) where the configured source puts them.
pub fn bin_dir(cx: &crate::engine::Cx, component: &str) -> String {
    match cx.inputs.artifact(component) {
        Some(p @ (Provided::Files { .. } | Provided::Debs { .. })) => p.bin_dir().to_string(),
        _ => bin_dir_for(&cx.cluster, component),
    }
}

/// Where `component`'s binaries are, from the spec alone (no artifacts resolved).
pub fn bin_dir_for(cluster: &Cluster, component: &str) -> String {
    let c = crate::artifacts::catalog::find(component);
    if crate::artifacts::from_deb(cluster, &c) {
        c.deb_bin_dir.to_string()
    } else {
        "/usr/local/bin".into()
    }
}

/// Why a unit whose binary is `component` cannot be started, if it cannot.
pub fn missing_binary(cx: &crate::engine::Cx, component: &str) -> Option<String> {
    match cx.inputs.artifact(component) {
        Some(p) => p.unavailable().map(|reason| format!("no binary: {reason}")),
        None => Some("binaries not resolved (render)".into()),
    }
}

/// The admin's API client for a step's verification (at `server`, else the kubeconfig's), or
/// `None` where one of `components` had no binary: nothing was started that could answer.
pub fn admin_client_if_started(
    cx: &crate::engine::Cx,
    components: &[&str],
    server: Option<&str>,
) -> Result<Option<crate::kubeapi::Client>> {
    if components.iter().any(|c| missing_binary(cx, c).is_some()) {
        return Ok(None);
    }
    let admin = cx.inputs.pki("admin.kubeconfig")?;
    crate::kubeapi::Client::from_kubeconfig(&String::from_utf8_lossy(admin.data()?), server)
        .map(Some)
}

/// The API answers `/readyz` at `server` (an address in front of the controllers: the virtual
/// IP, the load balancer) within 90 s, where the control plane was started; `where_to_look`
/// ends the error.
pub fn api_ready_at(cx: &crate::engine::Cx, server: &str, where_to_look: &str) -> Result<()> {
    let components = install_control_plane::COMPONENTS;
    let Some(client) = admin_client_if_started(cx, &components, Some(server))? else {
        return Ok(());
    };
    client
        .wait_ready(std::time::Duration::from_secs(90))
        .map_err(|e| anyhow::anyhow!("the API at {server}: {e:#}; {where_to_look}"))
}

/// A worker cannot go without `component` (`what` in messages): an error when the run's
/// artifacts lack it (`render`, which resolves none, goes on; so does a dry run for what a real
/// run would download: it plans the rest and says what it would download).
pub fn require_binary(cx: &crate::engine::Cx, component: &str, what: &str) -> Result<()> {
    if let Some(Provided::WouldDownload { .. }) = cx.inputs.artifact(component) {
        return Ok(());
    }
    match missing_binary(cx, component) {
        Some(why) if cx.inputs.artifacts.is_some() => {
            anyhow::bail!("{what} needed on every worker and cannot be had: {why}")
        }
        _ => Ok(()),
    }
}

/// A component's binary (packages or files) and its unit `<component>.service`, which is
/// enabled and started only where the binary can be had (else installed, and said why not).
pub fn binary_unit(want: &mut Desired, cx: &crate::engine::Cx, component: &str, unit_file: Blob) {
    let unit = format!("{component}.service");
    install_artifact(want, cx.inputs.artifact(component), &[unit.as_str()]);
    let not_started = missing_binary(cx, component);
    want.unit(crate::engine::UnitSpec {
        name: unit,
        file: unit_file,
        enable: not_started.is_none(),
        start: not_started.is_none(),
        no_block: false,
        not_started,
        reload: false,
    });
}

/// Packages or binaries, with the command that installs them.
pub fn install_artifact(want: &mut Desired, provided: Option<&Provided>, units: &[&str]) {
    match provided {
        Some(Provided::Files { files, .. }) => {
            for f in files {
                want.file(&f.path, f.blob.clone(), f.mode, units);
            }
        }
        Some(Provided::Debs { debs, .. }) => {
            // The packages' programs, unpacked on the hypervisor, at the paths Debian gives
            // them (a node that once ran dpkg for the same version already has these bytes).
            let standard = ["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/lib"];
            let mut dirs = std::collections::BTreeSet::new();
            for f in debs.iter().flat_map(|d| &d.files) {
                let mut parent = std::path::Path::new(&f.path).parent();
                let mut chain = Vec::new();
                while let Some(p) = parent.and_then(|p| p.to_str()) {
                    if p == "/" || standard.contains(&p) {
                        break;
                    }
                    chain.push(p.to_string());
                    parent = std::path::Path::new(p).parent();
                }
                for d in chain.into_iter().rev() {
                    if dirs.insert(d.clone()) {
                        want.dir(&d, 0o755);
                    }
                }
                want.file(&f.path, f.blob.clone(), f.mode, units);
            }
        }
        Some(Provided::Missing { .. } | Provided::WouldDownload { .. }) | None => {}
    }
}

/// Artifacts the steps need, each once, in the steps' order.
pub fn artifacts_for(steps: &[Arc<dyn Step>], cluster: &Cluster) -> Vec<&'static str> {
    let mut seen = std::collections::BTreeSet::new();
    steps
        .iter()
        .flat_map(|s| s.artifacts(cluster))
        .filter(|c| seen.insert(*c))
        .collect()
}

/// Every step of `up`, in order, once: on the hypervisor the networks, pool and key, the
/// template image if missing, the PKI and the VMs; then on the nodes etcd, the control plane,
/// the workers and the addons. `force_vms` recreates VMs that differ from the spec.
pub fn pipeline(force_vms: bool) -> Vec<PipelineStep> {
    use PipelineStep::{Declared, Gated};
    vec![
        Gated(Arc::new(prepare_networks::PrepareNetworks)),
        Gated(Arc::new(build_image::BuildImage)),
        Gated(Arc::new(generate_pki::GeneratePki {
            opts: Default::default(),
            list_kept: false,
        })),
        Gated(Arc::new(create_vms::CreateVms { force: force_vms })),
        Declared(Arc::new(install_etcd::InstallEtcd)),
        Declared(Arc::new(install_control_plane::InstallControlPlane)),
        Declared(Arc::new(install_api_vip::InstallApiVip)),
        Declared(Arc::new(install_api_lb::InstallApiLb)),
        Declared(Arc::new(prepare_worker_nodes::PrepareWorkerNodes)),
        Declared(Arc::new(install_runc::InstallRunc)),
        Declared(Arc::new(install_containerd::InstallContainerd)),
        Declared(Arc::new(install_cni::InstallCni)),
        Declared(Arc::new(
            install_kubernetes_workers::InstallKubernetesWorkers,
        )),
        Declared(Arc::new(install_addons::InstallAddons)),
    ]
}

/// The steps of `create-vms`: what the VMs stand on, then the VMs.
pub fn create_vms_steps(force: bool) -> Vec<PipelineStep> {
    pipeline::select(
        pipeline(force),
        &[StepId::PrepareNetworks, StepId::CreateVms],
    )
}

/// The node steps of the pipeline, in order.
pub fn node_steps() -> Vec<Arc<dyn Step>> {
    pipeline::declared(&pipeline(false))
}

/// What `upgrade` runs on one node, narrowed to it: every node step but etcd's (its version is
/// not Kubernetes') and the addons' (applied once at the end, through the API).
pub fn upgrade_steps(cluster: &Cluster, node: &str) -> Vec<PipelineStep> {
    let steps: Vec<PipelineStep> = pipeline(false)
        .into_iter()
        .filter(|s| !matches!(s.id(), StepId::InstallEtcd | StepId::InstallAddons))
        .collect();
    pipeline::on_node(&steps, cluster, node)
}

/// The controller steps (what `create-controllers` runs).
pub const CONTROLLER_STEPS: [StepId; 4] = [
    StepId::InstallEtcd,
    StepId::InstallKubernetesControllers,
    StepId::InstallApiVip,
    StepId::InstallApiLoadBalancer,
];

/// The steps of `create-workers`, or only one of them (a legacy subcommand).
pub fn workers(only: Option<StepId>) -> Vec<Arc<dyn Step>> {
    node_steps()
        .into_iter()
        .filter(|s| !CONTROLLER_STEPS.contains(&s.id()))
        .filter(|s| only.is_none_or(|o| o == s.id()))
        .collect()
}

/// The steps of `create-controllers`, or only one of them (a legacy subcommand).
pub fn controllers(only: Option<StepId>) -> Vec<Arc<dyn Step>> {
    node_steps()
        .into_iter()
        .filter(|s| CONTROLLER_STEPS.contains(&s.id()))
        .filter(|s| only.is_none_or(|o| o == s.id()))
        .collect()
}

#[cfg(test)]
mod hv_tests;
#[cfg(test)]
mod install_tests;
#[cfg(test)]
mod tests;
