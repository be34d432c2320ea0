//! The cluster spec: one typed, validated [`Cluster`] built from the cluster file, command-line
//! flags and environment variables, with precedence flag > `KUBICLUSTER_*` env > the original
//! kubicluster's env vars > file > default.
//!
//! `types` is the file as written (loose strings), `validate` turns it into [`Cluster`] collecting
//! every problem, `overrides` applies flags and env. Nothing below this module prints or exits.

pub mod build_sets;
mod defaults;
mod overrides;
mod problem;
mod settings;
pub mod skew;
mod types;
mod validate;
pub mod versions;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;

pub use defaults::{
    DEFAULT_CLUSTER_NAME, ETCD_ELECTION_MS, ETCD_HEARTBEAT_MS, default_cluster_file,
    example_cluster_file,
};
pub use overrides::{Overrides, parse_node_spec};
pub use problem::{Problem, Problems};
pub use settings::{Artifacts, ComponentVersions, DEFAULT_HOST, Host, Hypervisor, Template};
pub use types::*;
pub use validate::{is_dns_label, validate};
pub use versions::Version;

/// The file looked for in the current directory when no `--file` is given.
pub const DEFAULT_FILE: &str = "kubicluster.yaml";

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read cluster file {}: {}", .path.display(), describe_io(.path, .error))]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(transparent)]
    Invalid(#[from] Problems),
}

impl SpecError {
    pub fn hint(&self) -> Option<String> {
        match self {
            SpecError::Read { .. } => Some(format!(
                "check the path, or run `kubicluster init` to write a {DEFAULT_FILE} (a cluster `up` made is remembered in <workDir>/<name>/{REMEMBERED})"
            )),
            SpecError::Parse { .. } => {
                Some("fix the YAML; `kubicluster init --stdout` shows a complete example".into())
            }
            SpecError::Invalid(_) => None,
        }
    }
}

/// An I/O error in words a user recognises (a symlink loop is not "No such file").
fn describe_io(path: &Path, e: &std::io::Error) -> String {
    let link = path
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink());
    match e.raw_os_error() {
        Some(2) if link => "a symbolic link to nothing (dangling)".into(),
        Some(40) => "symbolic link loop".into(),
        Some(21) => "is a directory, not a file".into(),
        _ => e.to_string(),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub role: Role,
    pub cluster_ip: Ipv4Addr,
    pub hypervisor_ip: Ipv4Addr,
    pub vcpus: u32,
    pub memory_mib: u32,
    /// The `spec.hypervisors` entry the file puts it on; None: placed by kubicluster.
    pub hypervisor: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NetworksResolved {
    pub hypervisor_name: String,
    pub hypervisor: Ipv4Net,
    pub cluster_name: String,
    pub cluster: Ipv4Net,
    pub mode: ClusterNetMode,
    pub bridge: String,
    pub bridge_port: String,
    /// The cluster NICs' and the bridge pod network's MTU; None: the default (1500).
    pub mtu: Option<u16>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Kubernetes {
    pub version: Version,
    pub pod_cidr: Ipv4Net,
    pub service_cidr: Ipv4Net,
    pub cluster_dns: Ipv4Addr,
    pub cluster_domain: String,
    pub api_server_lb_ip: Option<Ipv4Addr>,
    /// The virtual IP the controllers hold between them (keepalived), if any.
    pub api_server_vip: Option<Ipv4Addr>,
    /// The LB IP when set, else the virtual IP, else the first controller's cluster IP.
    pub api_server_ip: Ipv4Addr,
    pub api_server_port: u16,
}

impl Kubernetes {
    /// The `kubernetes` service's ClusterIP: the first host address of the service range.
    pub fn service_ip(&self) -> Ipv4Addr {
        self.service_cidr
            .hosts()
            .next()
            .expect("validated: service CIDR has hosts")
    }

    pub fn api_server_url(&self) -> String {
        format!("https://{}:{}", self.api_server_ip, self.api_server_port)
    }
}

/// A validated cluster: everything later commands need, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub name: String,
    pub work_dir: PathBuf,
    pub nodes: Vec<Node>,
    pub networks: NetworksResolved,
    pub kubernetes: Kubernetes,
    pub etcd: EtcdEntry,
    pub pki: PkiEntry,
    pub versions: ComponentVersions,
    pub ssh_user: String,
    pub ssh_port: u16,
    pub ssh_key: PathBuf,
    pub hypervisor: Hypervisor,
    /// The libvirt hosts the VMs run on (at least one; see [`crate::placement`]).
    pub hosts: Vec<Host>,
    pub artifacts: Artifacts,
    pub controller_manager: ControllerManagerEntry,
    pub cni: Cni,
    pub containerd: ContainerdEntry,
    pub images: Vec<PathBuf>,
    /// CoreDNS's image (the build's with the `build` source).
    pub coredns_image: String,
    /// The image `kubicluster test` runs its pods from, unless `--pod-image` says otherwise.
    pub test_image: String,
    /// The resolved spec in file form (what `validate` prints).
    pub file: ClusterFile,
}

impl Cluster {
    pub fn controllers(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.role == Role::Controller)
    }

    pub fn workers(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.role == Role::Worker)
    }

    /// The API's load-balancer VM (validation allows at most one).
    pub fn load_balancers(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.role == Role::LoadBalancer)
    }

    /// `<workDir>/<name>`: everything this cluster owns on the hypervisor.
    pub fn cluster_dir(&self) -> PathBuf {
        self.work_dir.join(&self.name)
    }

    /// `<workDir>/<name>/certs_and_configs` (the original's directory name).
    pub fn certs_dir(&self) -> PathBuf {
        self.cluster_dir().join("certs_and_configs")
    }

    /// The admin kubeconfig `cnc` writes (what kubicluster uses to talk to the API).
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.certs_dir().join("admin.kubeconfig")
    }

    /// `<workDir>/<name>/lab`: the private libvirtd's state in lab mode.
    pub fn lab_dir(&self) -> PathBuf {
        self.cluster_dir().join("lab")
    }

    /// Per-VM files kubicluster hands to libvirt (identity, host key, console log).
    pub fn vm_dir(&self, node: &str) -> PathBuf {
        self.cluster_dir().join("vms").join(node)
    }

    /// The template image (built by `kubicluster image build` unless set).
    pub fn image_path(&self) -> &Path {
        &self.hypervisor.image
    }

    /// Directory of the storage pool for VM disks.
    pub fn storage_dir(&self) -> &Path {
        &self.hypervisor.storage_dir
    }

    /// The cluster as one of its hypervisors sees it: that host's URI, pool and directory, and
    /// only the nodes placed there (`nodes`, in the file's order). The code that makes, reads
    /// and removes VMs works on one libvirt connection; a spread cluster runs it once per view.
    pub fn on_host(&self, host: &Host, nodes: &[&str]) -> Cluster {
        let mut view = self.clone();
        view.hypervisor.uri = host.uri.clone();
        view.hypervisor.storage_pool = host.storage_pool.clone();
        view.hypervisor.storage_dir = host.storage_dir.clone();
        view.nodes.retain(|n| nodes.contains(&n.name.as_str()));
        view.hosts = vec![host.clone()];
        view
    }

    /// `known_hosts` with every VM's pinned SSH host key.
    pub fn known_hosts(&self) -> PathBuf {
        self.cluster_dir().join("ssh").join("known_hosts")
    }

    /// A worker's pod subnet in bridge mode: the /24 of the pod CIDR numbered like the node's
    /// address on the cluster network (192.168.24.21 → 10.200.21.0/24 in 10.200.0.0/16). Derived
    /// from the node's own address, so adding or removing a worker never moves another's subnet.
    /// `None` when the pod CIDR has no /24 for that number (validation reports it).
    pub fn pod_subnet(&self, node: &Node) -> Option<Ipv4Net> {
        pod_subnet(
            self.networks.cluster,
            self.kubernetes.pod_cidr,
            node.cluster_ip,
        )
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

pub fn pod_subnet(cluster_net: Ipv4Net, pod_cidr: Ipv4Net, ip: Ipv4Addr) -> Option<Ipv4Net> {
    let index = u32::from(ip).checked_sub(u32::from(cluster_net.network()))?;
    let prefix = pod_cidr.prefix_len();
    if prefix > 24 || index >= 1u32 << (24 - prefix) {
        return None;
    }
    let base = u32::from(pod_cidr.network()) + (index << 8);
    Ipv4Net::new(Ipv4Addr::from(base), 24).ok()
}

/// Read and parse a cluster file. Unknown fields are returned as problems (all of them, with
/// their paths) rather than failing on the first; type errors stop parsing.
pub fn load(path: &Path) -> Result<(ClusterFile, Vec<Problem>), SpecError> {
    let bytes = std::fs::read(path).map_err(|error| SpecError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let upto = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = upto.iter().filter(|b| **b == b'\n').count() + 1;
        SpecError::Parse {
            path: path.to_path_buf(),
            message: format!("invalid UTF-8 at line {line}, byte {}", upto.len()),
        }
    })?;
    parse(&text).map_err(|message| SpecError::Parse {
        path: path.to_path_buf(),
        message,
    })
}

/// Parse cluster-file text (YAML). The YAML library is used only here.
pub fn parse(text: &str) -> Result<(ClusterFile, Vec<Problem>), String> {
    let mut unknown = Vec::new();
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let file: ClusterFile = serde_ignored::deserialize(de, |path| {
        unknown.push(
            Problem::new(bracket_indices(&path.to_string()), "unknown field")
                .hint("check the spelling; `kubicluster init --stdout` lists every field"),
        )
    })
    .map_err(|e| e.to_string())?;
    Ok((file, unknown))
}

/// `spec.nodes.0.x` → `spec.nodes[0].x`, the form validation uses.
fn bracket_indices(path: &str) -> String {
    let mut out = String::new();
    for seg in path.split('.') {
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

/// Serialize a cluster file to YAML.
pub fn to_yaml(file: &ClusterFile) -> String {
    serde_yaml_ng::to_string(file).expect("cluster file serializes")
}

/// Where the spec came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    /// `<workDir>/<name>/cluster.yaml`, written by `up`: how the cluster was made.
    Remembered(PathBuf),
    Flags,
    Embedded,
}

/// The file `up` leaves in the cluster's work dir, so later commands find the same cluster
/// (lab mode, sizes, sources) without repeating the flags. Flags and env still override it.
pub const REMEMBERED: &str = "cluster.yaml";

/// Record how the cluster was made (the resolved spec), for later commands.
pub fn remember(cluster: &Cluster) -> std::io::Result<()> {
    let dir = cluster.cluster_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(REMEMBERED);
    let tmp = dir.join(format!(".{REMEMBERED}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, to_yaml(&cluster.file))?;
    std::fs::rename(&tmp, path)
}

/// The spec `up` (or `upgrade`) last recorded for `cluster`, if any (and readable).
pub fn remembered(cluster: &Cluster) -> Option<ClusterFile> {
    load(&cluster.cluster_dir().join(REMEMBERED))
        .ok()
        .map(|(f, _)| f)
}

/// The Kubernetes release of the spec `up` (or `upgrade`) last recorded for `cluster`, if any.
pub fn remembered_kubernetes_version(cluster: &Cluster) -> Option<Version> {
    remembered(cluster)?.spec.kubernetes.version.parse().ok()
}

/// Warnings for a cluster that loses nodes against `was` (the spec `up` last recorded): the
/// node left alone in its role ("the last of its kind") and a role left with none.
pub fn shrink_warnings(was: &ClusterFile, now: &Cluster) -> Vec<String> {
    let mut out = Vec::new();
    for (role, what) in [(Role::Controller, "controller"), (Role::Worker, "worker")] {
        // (A load balancer is one node by design: removing it is not "the last of its kind".)
        let before = was.spec.nodes.iter().filter(|n| n.role == role).count();
        let left: Vec<&Node> = now.nodes.iter().filter(|n| n.role == role).collect();
        if left.len() >= before || left.len() > 1 {
            continue;
        }
        let consequence = match role {
            Role::Controller => "losing it loses etcd and the API",
            Role::Worker | Role::LoadBalancer => "losing it leaves no node for pods",
        };
        out.push(match left.first() {
            Some(n) => format!(
                "warning: {} is the last {what} of its kind (the cluster had {before}): {consequence}",
                n.name
            ),
            None => format!("warning: no {what} is left (the cluster had {before})"),
        });
    }
    out
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Remembered(p) => write!(f, "{} (as `up` made it)", p.display()),
            Source::Flags => f.write_str("command-line nodes"),
            Source::Embedded => f.write_str("embedded default (1 controller, 2 workers)"),
        }
    }
}

/// Build the cluster: pick the file (explicit, else `./kubicluster.yaml` if present, else the
/// embedded default, or no nodes at all when nodes come from flags), apply env and flags, validate.
/// `env` looks up environment variables (injected so tests need not touch the process env).
pub fn resolve(
    file: Option<&Path>,
    ov: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Cluster, Source), SpecError> {
    let nodes_from_flags = !ov.controllers.is_empty() || !ov.workers.is_empty();
    let implicit = Path::new(DEFAULT_FILE);
    let (mut base, mut problems, source) = match file {
        Some(p) => {
            let (f, unknown) = load(p)?;
            (f, unknown, Source::File(p.to_path_buf()))
        }
        // Present in any form (even a dangling link, a loop, a directory): it is the cluster
        // file, and an unreadable one is an error, never a silent fall back to the default.
        None if implicit.symlink_metadata().is_ok() => {
            let (f, unknown) = load(implicit)?;
            (f, unknown, Source::File(implicit.to_path_buf()))
        }
        None => {
            // The name and work dir from flags/env (or the defaults) locate a remembered spec.
            let mut probe = default_cluster_file();
            let _ = ov.apply(&mut probe, env);
            let remembered = Path::new(&probe.spec.work_dir)
                .join(&probe.metadata.name)
                .join(REMEMBERED);
            // As with ./kubicluster.yaml: present in any form, it is what `up` remembered, and
            // a directory, a dangling link or an unreadable file is an error naming it.
            if remembered.symlink_metadata().is_ok() {
                let (f, unknown) = load(&remembered)?;
                (f, unknown, Source::Remembered(remembered))
            } else if nodes_from_flags {
                (ClusterFile::default(), Vec::new(), Source::Flags)
            } else {
                (default_cluster_file(), Vec::new(), Source::Embedded)
            }
        }
    };
    problems.extend(ov.apply(&mut base, env));
    match validate(&base) {
        Ok(mut cluster) => {
            problems.extend(resolve_build_source(&mut cluster, env));
            if problems.is_empty() {
                Ok((cluster, source))
            } else {
                Err(Problems(problems).into())
            }
        }
        Err(Problems(more)) => {
            problems.extend(more);
            Err(Problems(problems).into())
        }
    }
}

/// The PKI's file base names that belong to the cluster, not to a node (`ca`, `admin`, …):
/// validation keeps node names off them, so a node's files never take one's place. The PKI's
/// catalogue is checked against this list by a test (`tests/pki.rs`).
pub const RESERVED_FILE_NAMES: &[&str] = &[
    "ca",
    "etcd-ca",
    "front-proxy-ca",
    "kubernetes",
    "service-accounts",
    "admin",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
    "calico-cni",
    "apiserver-kubelet-client",
    "apiserver-etcd-client",
    "front-proxy-client",
    "encryption-config",
];

/// The `build` source decides defaults the others leave to the file: the build's output
/// directory (under the cache dir, hence the environment), etcd's version (the build set's), the
/// image archives to import, and the sandbox, CoreDNS and test images (the local builds, where the
/// file keeps the registry defaults).
fn resolve_build_source(c: &mut Cluster, env: &dyn Fn(&str) -> Option<String>) -> Vec<Problem> {
    use self::build_sets as build;
    if c.artifacts.source != ArtifactSource::Build {
        return Vec::new();
    }
    let v = c.kubernetes.version.to_string();
    let Some(set) = build::set_for(&v) else {
        return vec![
            Problem::new(
                "spec.kubernetes.version",
                format!("kubernetes {v} has no pinned build (spec.artifacts.source is build)"),
            )
            .hint(format!(
                "choose one of {} (--kubernetes-version), or another artifacts source",
                build::versions()
            )),
        ];
    };
    // The build's output dir and pause image are derived from the release: a remembered spec
    // holds another release's (`up` records them resolved), and they follow the version here
    // (`upgrade`, a version flag); a dir or an image the user chose stays.
    let cache = build::cache_dir(env);
    let derived_dir = |d: &Path| {
        build::BUILD_SETS
            .iter()
            .any(|s| build::output_dir(&cache, s.kubernetes) == d)
    };
    if c.artifacts.dir.as_deref().is_none_or(derived_dir) {
        c.artifacts.dir = Some(build::output_dir(&cache, set.kubernetes));
    }
    let dir = c.artifacts.dir.clone().expect("just decided");
    if build::BUILD_SETS
        .iter()
        .any(|s| build::pause_image(s) == c.containerd.sandbox_image)
    {
        c.containerd.sandbox_image = build::pause_image(set);
    }
    c.versions.etcd = set.etcd.parse().expect("a build set's etcd is a version");
    for f in build::IMAGE_FILES {
        let p = dir.join(f);
        if !c.images.contains(&p) {
            c.images.push(p);
        }
    }
    if c.containerd.sandbox_image == types::DEFAULT_SANDBOX_IMAGE {
        c.containerd.sandbox_image = build::pause_image(set);
    }
    c.coredns_image = build::coredns_image(set);
    c.test_image = build::BUSYBOX_IMAGE.to_string();
    let s = &mut c.file.spec;
    s.artifacts.dir = dir.display().to_string();
    s.versions.etcd = c.versions.etcd.to_string();
    s.containerd.sandbox_image = c.containerd.sandbox_image.clone();
    Vec::new()
}

#[cfg(test)]
mod tests;
