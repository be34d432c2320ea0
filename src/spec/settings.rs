//! The resolved settings of the sections the file writes as loose strings: the hypervisor, the
//! artifact sources and the component versions. Every "empty means default" of the file is decided
//! here, once, so no consumer compares a string with `""` or parses a version or an address again.
//!
//! Built by `validate` only after every problem was checked, so the parses below cannot fail.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::types::{
    ArtifactSource, ArtifactsEntry, DomainTypeChoice, HostEntry, HypervisorEntry, HypervisorMode,
    TemplateKind, Versions,
};
use super::versions::Version;

/// The template the VMs are cloned from.
#[derive(Debug, Clone, PartialEq)]
pub enum Template {
    /// Built by `kubicluster image build`: identity through fw_cfg, all VMs in parallel.
    Kubicluster,
    /// A hand-made template (the original's): static addresses, its host key pinned.
    Legacy {
        /// The template's SSH host public key file.
        host_key: PathBuf,
        /// Its address on the NAT net (the original's -tip).
        ip: Ipv4Addr,
        /// Its address on the cluster net (the original's -tcip).
        cluster_ip: Ipv4Addr,
    },
}

/// Where and how the VMs run.
#[derive(Debug, Clone, PartialEq)]
pub struct Hypervisor {
    pub mode: HypervisorMode,
    /// libvirt URI in host mode.
    pub uri: String,
    pub domain_type: DomainTypeChoice,
    /// libvirt `<cpu mode>` the user chose; None: host-passthrough with kvm, maximum with qemu.
    pub cpu_mode: Option<String>,
    pub storage_pool: String,
    /// The pool's directory.
    pub storage_dir: PathBuf,
    /// The template image.
    pub image: PathBuf,
    pub disk_gib: u32,
    /// How long to wait for a VM to answer SSH after it was started.
    pub boot_timeout: Duration,
    pub autostart: bool,
    pub template: Template,
}

impl Hypervisor {
    /// `cluster_dir` is `<workDir>/<name>` (the lab's pool lives below it).
    pub(super) fn resolve(h: &HypervisorEntry, work_dir: &Path, cluster_dir: &Path) -> Self {
        let or = |s: &str, default: PathBuf| {
            if s.is_empty() {
                default
            } else {
                PathBuf::from(s)
            }
        };
        let pool_default = match h.mode {
            HypervisorMode::Lab => cluster_dir.join("lab").join("pool"),
            HypervisorMode::Host => PathBuf::from("/var/lib/libvirt/images"),
        };
        let template = match h.template_kind {
            TemplateKind::Kubicluster => Template::Kubicluster,
            TemplateKind::Legacy => Template::Legacy {
                host_key: PathBuf::from(&h.template_host_key),
                ip: h.template_ip.parse().expect("validated: templateIP"),
                cluster_ip: h
                    .template_cluster_ip
                    .parse()
                    .expect("validated: templateClusterIP"),
            },
        };
        Hypervisor {
            mode: h.mode,
            uri: h.uri.clone(),
            domain_type: h.domain_type,
            cpu_mode: (!h.cpu_mode.is_empty()).then(|| h.cpu_mode.clone()),
            storage_pool: h.storage_pool.clone(),
            storage_dir: or(&h.storage_dir, pool_default),
            image: or(
                &h.image,
                work_dir.join("images").join("kubicluster-bookworm.qcow2"),
            ),
            disk_gib: h.disk_gib,
            boot_timeout: Duration::from_secs(h.boot_timeout_seconds.into()),
            autostart: h.autostart,
            template,
        }
    }

    pub fn is_legacy(&self) -> bool {
        matches!(self.template, Template::Legacy { .. })
    }
}

/// One libvirt host the cluster's VMs run on (`spec.hypervisors`, or the one `spec.hypervisor`
/// names, called [`DEFAULT_HOST`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    pub name: String,
    pub uri: String,
    pub storage_pool: String,
    pub storage_dir: PathBuf,
    /// MiB this cluster's VMs may take there; None: what libvirt reports free.
    pub memory_mib: Option<u64>,
}

/// The name of the one hypervisor of a file without `spec.hypervisors`.
pub const DEFAULT_HOST: &str = "default";

impl Host {
    /// Every host of the file: `spec.hypervisors`, each completed from `hv`, or `hv` alone.
    pub(super) fn resolve_all(list: &[HostEntry], hv: &Hypervisor) -> Vec<Host> {
        if list.is_empty() {
            return vec![Host {
                name: DEFAULT_HOST.into(),
                uri: hv.uri.clone(),
                storage_pool: hv.storage_pool.clone(),
                storage_dir: hv.storage_dir.clone(),
                memory_mib: None,
            }];
        }
        let or = |s: &str, default: &str| if s.is_empty() { default } else { s }.to_string();
        list.iter()
            .map(|h| Host {
                name: h.name.clone(),
                uri: or(&h.uri, &hv.uri),
                storage_pool: or(&h.storage_pool, &hv.storage_pool),
                storage_dir: if h.storage_dir.is_empty() {
                    hv.storage_dir.clone()
                } else {
                    PathBuf::from(&h.storage_dir)
                },
                memory_mib: h.memory_mib,
            })
            .collect()
    }
}

/// Where node binaries and packages come from.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifacts {
    pub source: ArtifactSource,
    /// Files under their upstream names (the `dir` source, Kubernetes binaries for `deb`, the
    /// build's output for `build` — always set then).
    pub dir: Option<PathBuf>,
    /// Debian suite for packages, and where a component's differs.
    pub deb_suite: String,
    pub deb_suites: BTreeMap<String, String>,
    /// Debian archive URL; None: the one the hypervisor's own apt sources use.
    pub deb_mirror: Option<String>,
    /// sha256 per upstream file name, overriding the catalogue and the publisher's checksums.
    pub sha256: BTreeMap<String, String>,
    /// Install files no digest vouches for (each run then says UNVERIFIED).
    pub allow_unverified: bool,
}

impl Artifacts {
    /// The build's output directory (the `build` source always has one after resolving).
    pub fn build_dir(&self) -> &Path {
        self.dir
            .as_deref()
            .expect("resolved: the build source always has a directory")
    }

    pub(super) fn resolve(a: &ArtifactsEntry) -> Self {
        Artifacts {
            source: a.source,
            dir: (!a.dir.is_empty()).then(|| PathBuf::from(&a.dir)),
            deb_suite: a.deb_suite.clone(),
            deb_suites: a.deb_suites.clone(),
            deb_mirror: (!a.deb_mirror.is_empty()).then(|| a.deb_mirror.clone()),
            sha256: a.sha256.clone(),
            allow_unverified: a.allow_unverified,
        }
    }
}

/// The versions of the components besides Kubernetes (`spec.versions`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ComponentVersions {
    pub etcd: Version,
    pub containerd: Version,
    pub runc: Version,
    pub kata: Version,
    pub cni_plugins: Version,
    pub calico: Version,
}

impl ComponentVersions {
    pub(super) fn resolve(v: &Versions) -> Self {
        let p = |s: &str| -> Version { s.parse().expect("validated: spec.versions") };
        ComponentVersions {
            etcd: p(&v.etcd),
            containerd: p(&v.containerd),
            runc: p(&v.runc),
            kata: p(&v.kata),
            cni_plugins: p(&v.cni_plugins),
            calico: p(&v.calico),
        }
    }
}
