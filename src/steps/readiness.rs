//! `prepare --check`: what is there and what blocks, for this machine and for each hypervisor
//! of the cluster, changing nothing. What only this machine can say (packages, kernel modules,
//! sysctls, the template image, the work dir's disk) is read here; what a hypervisor has
//! (networks, the pool, CPU virtualisation and memory when it is remote) is asked of its libvirt.

use std::path::Path;

use super::prepare_host::{missing_packages, unloaded_modules, unset_sysctls};
use crate::hypervisor::{self, Hypervisor, VmState};
use crate::spec::{Cluster, ClusterNetMode, HypervisorMode};
use crate::vms;

/// One line of the readiness report: (what, state, blocking?).
pub type Row = (String, String, bool);

/// One hypervisor as `prepare --check` sees it: its name, the cluster as it sees it (its nodes
/// only), and its connection or why there is none.
pub struct Checked<'a> {
    pub name: &'a str,
    pub cluster: &'a Cluster,
    pub hv: Result<&'a dyn Hypervisor, String>,
}

/// The report for a cluster on one hypervisor (`hv`: its connection or why there is none).
pub fn readiness(cluster: &Cluster, hv: Result<&dyn Hypervisor, String>) -> Vec<Row> {
    let one = Checked {
        name: "",
        cluster,
        hv,
    };
    readiness_over(cluster, &[one])
}

/// The report for a cluster over its hypervisors: this machine's rows, each hypervisor's (named
/// `hv2: …` when there are several), then the work dir's.
pub fn readiness_over(whole: &Cluster, hosts: &[Checked]) -> Vec<Row> {
    let mut rows = Vec::new();
    if hosts
        .iter()
        .any(|h| !hypervisor::is_remote(&h.cluster.hypervisor.uri))
    {
        rows.extend(this_cpu(whole));
    }
    if whole.hypervisor.mode == HypervisorMode::Host {
        rows.extend(this_host());
    }
    for h in hosts {
        let named = |(what, state, blocking): Row| match hosts.len() {
            1 => (what, state, blocking),
            _ => (format!("{}: {what}", h.name), state, blocking),
        };
        rows.extend(on_hypervisor(h.cluster, &h.hv).into_iter().map(named));
    }
    rows.extend(work_dir(whole));
    rows
}

/// This machine's CPU virtualisation (what a local libvirt's VMs run with).
fn this_cpu(cluster: &Cluster) -> Vec<Row> {
    let kvm = hypervisor::kvm_usable();
    let (dtype, cpu) = hypervisor::domain_type(cluster, kvm);
    vec![
        (
            "CPU virtualisation".into(),
            if kvm {
                "usable: VMs run with kvm".into()
            } else {
                format!(
                    "not usable: VMs run under emulation ({dtype}, cpu {cpu}), several times slower"
                )
            },
            dtype == "kvm" && !kvm,
        ),
        (
            "/dev/kvm".into(),
            if Path::new("/dev/kvm").exists() {
                "present".into()
            } else {
                "absent".into()
            },
            false,
        ),
    ]
}

/// What `prepare` installs and sets on this machine (host mode).
fn this_host() -> Vec<Row> {
    let missing = missing_packages();
    let unloaded = unloaded_modules();
    let wrong: Vec<_> = unset_sysctls().into_iter().map(|(k, _)| k).collect();
    let said = |list: &[&str], ok: &str, not: &str| {
        if list.is_empty() {
            ok.to_string()
        } else {
            format!("{not}: {}", list.join(" "))
        }
    };
    vec![
        (
            "packages".into(),
            said(&missing, "installed", "missing"),
            !missing.is_empty(),
        ),
        (
            "kernel modules".into(),
            said(&unloaded, "loaded", "not loaded"),
            false,
        ),
        ("sysctls".into(), said(&wrong, "set", "not set"), false),
    ]
}

/// What one hypervisor has for its nodes: libvirt, CPU virtualisation (a remote one's, from
/// libvirt), the networks, the pool, the bridge, the memory its nodes not running yet need.
fn on_hypervisor(cluster: &Cluster, hv: &Result<&dyn Hypervisor, String>) -> Vec<Row> {
    let hv = match hv {
        Ok(hv) => *hv,
        Err(e) => return vec![("libvirt".into(), e.clone(), true)],
    };
    let uri = &cluster.hypervisor.uri;
    let remote = hypervisor::is_remote(uri);
    let mut rows: Vec<Row> = vec![(
        "libvirt".into(),
        format!("reachable at {}", hv.describe()),
        false,
    )];
    if remote {
        let kvm = hypervisor::kvm_on(uri, hv);
        let (dtype, cpu) = hypervisor::domain_type(cluster, kvm);
        rows.push((
            "CPU virtualisation".into(),
            if kvm {
                "libvirt offers kvm there: VMs run with kvm".into()
            } else {
                format!("libvirt offers no kvm there: VMs run under emulation ({dtype}, cpu {cpu})")
            },
            dtype == "kvm" && !kvm,
        ));
    }
    for name in [
        &cluster.networks.hypervisor_name,
        &cluster.networks.cluster_name,
    ] {
        if name == &cluster.networks.cluster_name
            && cluster.networks.mode == ClusterNetMode::Bridged
        {
            continue;
        }
        let state = match hv.network(name) {
            Ok(Some(n)) if n.active => "active".to_string(),
            Ok(Some(_)) => "defined, inactive".into(),
            Ok(None) => "missing (prepare creates it)".into(),
            Err(e) => format!("error: {e:#}"),
        };
        rows.push((format!("network {name}"), state, false));
    }
    let pool = &cluster.hypervisor.storage_pool;
    let state = match hv.pool(pool) {
        Ok(Some(p)) => format!(
            "{} at {}",
            if p.active { "active" } else { "inactive" },
            p.path.display()
        ),
        Ok(None) => "missing (prepare creates it)".into(),
        Err(e) => format!("error: {e:#}"),
    };
    rows.push((format!("storage pool {pool}"), state, false));
    if cluster.networks.mode == ClusterNetMode::Bridged {
        let bridge = &cluster.networks.bridge;
        rows.push(if remote {
            (
                format!("bridge {bridge}"),
                "not checked (on the remote host; its VMs fail to start without it)".into(),
                false,
            )
        } else {
            let ok = Path::new("/sys/class/net")
                .join(bridge)
                .join("bridge")
                .exists();
            (
                format!("bridge {bridge}"),
                if ok { "present" } else { "missing" }.into(),
                !ok,
            )
        });
    }
    // The nodes whose VM runs already have their memory.
    let need: u64 = cluster
        .nodes
        .iter()
        .filter(|n| !matches!(hv.domain(&n.name), Ok(Some(d)) if d.state == VmState::Running))
        .map(|n| u64::from(n.memory_mib))
        .sum();
    rows.push(match vms::free_mib(cluster, hv).ok().flatten() {
        Some(free) => (
            "free memory".into(),
            format!("{free} MiB free, the VMs to start need {need} MiB"),
            need > free,
        ),
        None => (
            "free memory".into(),
            format!("unknown, the VMs to start need {need} MiB"),
            false,
        ),
    });
    rows
}

/// The template image and the work dir's free disk, on this machine.
fn work_dir(cluster: &Cluster) -> Vec<Row> {
    let image = cluster.image_path();
    // The work dir, or the nearest directory above it that exists yet.
    let disk = cluster
        .work_dir
        .ancestors()
        .find(|d| d.is_dir())
        .and_then(hypervisor::free_mib);
    vec![
        (
            "template image".into(),
            if image.is_file() {
                format!("{}", image.display())
            } else {
                format!("missing: {} (kubicluster image build)", image.display())
            },
            false,
        ),
        (
            "free disk (work dir)".into(),
            disk.map(|d| format!("{d} MiB"))
                .unwrap_or_else(|| "unknown".into()),
            disk.is_some_and(|d| d < 2048),
        ),
    ]
}
