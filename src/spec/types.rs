//! The cluster file as the user writes it (`apiVersion: kubicluster.io/v1alpha1`, `kind: Cluster`).
//!
//! These types are deliberately *loose*: addresses, CIDRs and versions are plain strings so that one
//! pass of [`super::validate`] can report every problem at once with its path, instead of serde
//! stopping at the first bad value. The typed, checked form is [`super::Cluster`].

use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "kubicluster.io/v1alpha1";
pub const KIND: &str = "Cluster";

/// The whole cluster file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterFile {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    #[serde(default)]
    pub spec: ClusterSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ClusterSpec {
    /// Where generated files go; relative paths are taken from the current directory.
    pub work_dir: String,
    pub node_defaults: NodeDefaults,
    pub nodes: Vec<NodeEntry>,
    pub networks: Networks,
    pub kubernetes: KubernetesEntry,
    pub etcd: EtcdEntry,
    pub pki: PkiEntry,
    pub versions: Versions,
    pub ssh: SshEntry,
    pub hypervisor: HypervisorEntry,
    /// Several libvirt hosts for the VMs; empty = the one of `hypervisor` (named `default`).
    /// Each entry takes what it does not set from `hypervisor`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hypervisors: Vec<HostEntry>,
    pub artifacts: ArtifactsEntry,
    pub controller_manager: ControllerManagerEntry,
    pub containerd: ContainerdEntry,
    /// OCI or docker image archives (`.tar`) imported into containerd's `k8s.io` namespace on
    /// every worker, so a cluster can come up without a registry.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NodeDefaults {
    pub vcpus: u32,
    #[serde(rename = "memoryMiB")]
    pub memory_mib: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Controller,
    Worker,
    /// A small VM running haproxy in front of every controller's API server (kind's
    /// "external load balancer"): the API's address when the file has one.
    #[serde(rename = "loadbalancer")]
    LoadBalancer,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Controller => "controller",
            Role::Worker => "worker",
            Role::LoadBalancer => "loadbalancer",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeEntry {
    pub name: String,
    pub role: Role,
    /// Address on the cluster network (second NIC): etcd, apiserver, kubelet node IP, cert SANs.
    #[serde(rename = "clusterIP")]
    pub cluster_ip: String,
    /// Address on the hypervisor (NAT/management) network (first NIC): SSH.
    #[serde(rename = "hypervisorIP")]
    pub hypervisor_ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<u32>,
    #[serde(default, rename = "memoryMiB", skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u32>,
    /// The `spec.hypervisors` entry it runs on; empty = placed by kubicluster.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hypervisor: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Networks {
    pub hypervisor: HypervisorNet,
    pub cluster: ClusterNet,
    /// The pod network.
    pub cni: Cni,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cni {
    /// Calico's manifest (the original's choice), applied through the API.
    #[default]
    Calico,
    /// KTHW's way: a /24 of the pod CIDR per worker, bridge + host-local CNI configs, and routes
    /// between the nodes over the cluster network. No images needed.
    Bridge,
}

impl std::fmt::Display for Cni {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cni::Calico => "calico",
            Cni::Bridge => "bridge",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// Kata Containers (the original's default) where the worker has KVM; runc elsewhere.
    #[default]
    Kata,
    Runc,
}

impl std::fmt::Display for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Runtime::Kata => "kata",
            Runtime::Runc => "runc",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerdEntry {
    /// Runtime of pods without a `runtimeClassName`. Both get a RuntimeClass (`kata`, `runc`).
    pub default_runtime: Runtime,
    /// The pod sandbox image, pinned.
    pub sandbox_image: String,
}

pub const DEFAULT_SANDBOX_IMAGE: &str = "registry.k8s.io/pause:3.10";
/// CoreDNS's image where the artifacts do not bring one (the `build` source does).
pub const DEFAULT_COREDNS_IMAGE: &str = "registry.k8s.io/coredns/coredns:v1.12.0";
/// The image `kubicluster test` runs its pods from where the artifacts do not bring one.
pub const DEFAULT_TEST_IMAGE: &str = "docker.io/library/busybox:1.36";

impl Default for ContainerdEntry {
    fn default() -> Self {
        ContainerdEntry {
            default_runtime: Runtime::Kata,
            sandbox_image: DEFAULT_SANDBOX_IMAGE.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HypervisorNet {
    /// libvirt network name (NAT).
    pub name: String,
    pub cidr: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterNetMode {
    /// An isolated libvirt network on this host (the original's `-ndev`).
    Isolated,
    /// An existing host bridge, optionally with a physical port (the original's default).
    Bridged,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ClusterNet {
    /// libvirt network name in isolated mode.
    pub name: String,
    pub cidr: String,
    pub mode: ClusterNetMode,
    /// Bridge device; empty = `vmbr24dev` (isolated) or `vmbr24` (bridged).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub bridge: String,
    /// Physical port enslaved to the bridge in bridged mode.
    pub bridge_port: String,
    /// The MTU of the VMs' cluster NICs and of the bridge pod network (unset: 1500 as libvirt
    /// and the guest choose). Below a VXLAN that joins the hosts' bridges: 1450.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct KubernetesEntry {
    pub version: String,
    #[serde(rename = "podCIDR")]
    pub pod_cidr: String,
    #[serde(rename = "serviceCIDR")]
    pub service_cidr: String,
    #[serde(rename = "clusterDNS")]
    pub cluster_dns: String,
    pub cluster_domain: String,
    /// Address clients use for the API; empty = first controller's cluster IP.
    #[serde(
        rename = "apiServerLoadBalancerIP",
        skip_serializing_if = "String::is_empty"
    )]
    pub api_server_lb_ip: String,
    /// A virtual IP in the cluster network that one controller at a time holds (keepalived) for
    /// the API; empty = the network's tenth address when there are several controllers and no
    /// load balancer; `none` = no virtual IP.
    #[serde(rename = "apiServerVIP", skip_serializing_if = "String::is_empty")]
    pub api_server_vip: String,
    pub api_server_port: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EtcdEntry {
    pub client_port: u16,
    pub peer_port: u16,
    pub cluster_token: String,
    /// Raft's heartbeat, ms (etcd's default 100). Emulated (TCG) members starved of CPU
    /// need more, with the election timeout at ten times it.
    pub heartbeat_interval_ms: u32,
    /// How long a follower waits for a heartbeat before it calls an election, ms (etcd's 1000).
    pub election_timeout_ms: u32,
}

impl EtcdEntry {
    /// Raft's timing (heartbeat, election timeout) when it differs from etcd's own defaults:
    /// only then do the members' units name it.
    pub fn custom_timing(&self) -> Option<(u32, u32)> {
        let (hb, el) = (self.heartbeat_interval_ms, self.election_timeout_ms);
        (hb != super::ETCD_HEARTBEAT_MS || el != super::ETCD_ELECTION_MS).then_some((hb, el))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyAlgorithm {
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    #[serde(rename = "rsa-2048")]
    Rsa2048,
    #[serde(rename = "rsa-3072")]
    Rsa3072,
    #[serde(rename = "rsa-4096")]
    Rsa4096,
}

impl KeyAlgorithm {
    pub const ALL: [KeyAlgorithm; 4] = [
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Rsa3072,
        KeyAlgorithm::Rsa4096,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::Rsa2048 => "rsa-2048",
            KeyAlgorithm::Rsa3072 => "rsa-3072",
            KeyAlgorithm::Rsa4096 => "rsa-4096",
        }
    }
}

impl std::str::FromStr for KeyAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        KeyAlgorithm::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<_> = KeyAlgorithm::ALL.iter().map(|a| a.as_str()).collect();
                format!("unknown key algorithm {s:?} (one of: {})", all.join(", "))
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncryptionProvider {
    Secretbox,
    Aescbc,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PkiEntry {
    pub key_algorithm: KeyAlgorithm,
    pub ca_validity_days: u32,
    pub cert_validity_days: u32,
    /// A leaf that expires within this many days is re-issued by `cnc`.
    pub renew_before_days: u32,
    pub encryption_provider: EncryptionProvider,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Versions {
    pub etcd: String,
    pub containerd: String,
    pub runc: String,
    pub kata: String,
    pub cni_plugins: String,
    pub calico: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SshEntry {
    pub user: String,
    /// Private key for the VMs; empty = `<workDir>/<cluster>/ssh/id_ed25519` (created by `prepare`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub private_key: String,
    pub port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HypervisorMode {
    /// libvirt on this host at `uri`.
    Host,
    /// A private libvirtd in a network namespace kubicluster creates (`kubicluster lab up`).
    Lab,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DomainTypeChoice {
    /// kvm where /dev/kvm can run guests, qemu (TCG) otherwise.
    Auto,
    Kvm,
    Qemu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TemplateKind {
    /// Built by `kubicluster image build`: identity through fw_cfg, all VMs in parallel.
    Kubicluster,
    /// A hand-made template as the original expected (static template IPs): each clone is booted
    /// alone, re-addressed over SSH (template host key pinned), given its own host key, rebooted.
    Legacy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HypervisorEntry {
    pub mode: HypervisorMode,
    /// libvirt URI in host mode.
    pub uri: String,
    pub domain_type: DomainTypeChoice,
    /// libvirt `<cpu mode>`; empty = host-passthrough with kvm, maximum with qemu.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cpu_mode: String,
    /// libvirt storage pool (a directory) for VM disks.
    pub storage_pool: String,
    /// Directory of the pool; empty = /var/lib/libvirt/images (host) or inside the lab dir.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub storage_dir: String,
    /// Template image; empty = <workDir>/images/kubicluster-bookworm.qcow2 (`kubicluster image build`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image: String,
    /// Virtual size of each VM disk (an overlay on the template).
    #[serde(rename = "diskGiB")]
    pub disk_gib: u32,
    /// How long to wait for a VM to answer SSH after it was started.
    pub boot_timeout_seconds: u32,
    /// libvirt starts the cluster's VMs when it starts (the host boots); `false` leaves them
    /// off until `kubicluster start`.
    pub autostart: bool,
    pub template_kind: TemplateKind,
    /// Legacy templates: the template's SSH host public key (all clones boot with it).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub template_host_key: String,
    /// Legacy templates: the template's static address on the NAT net (the original's -tip).
    #[serde(rename = "templateIP")]
    pub template_ip: String,
    /// Legacy templates: its static address on the cluster net (the original's -tcip).
    #[serde(rename = "templateClusterIP")]
    pub template_cluster_ip: String,
}

/// One libvirt host of `spec.hypervisors`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HostEntry {
    pub name: String,
    /// libvirt URI (`qemu:///system`, `qemu+ssh://root@hv2/system`); empty = `hypervisor.uri`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uri: String,
    /// Storage pool there; empty = `hypervisor.storagePool`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub storage_pool: String,
    /// The pool's directory there; empty = `hypervisor.storageDir`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub storage_dir: String,
    /// Memory this cluster's VMs may take there, MiB; unset = what libvirt reports free.
    #[serde(rename = "memoryMiB", skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
}

/// Where node binaries and packages come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactSource {
    /// Downloaded once on the hypervisor from the publisher, checksum verified, then pushed.
    Upstream,
    /// Files with the upstream names in `artifacts.dir` (offline use).
    Dir,
    /// Debian packages of `debSuite`, fetched on the hypervisor with apt and unpacked there, their
    /// programs placed on the nodes as files (etcd, containerd, runc, CNI plugins); Kubernetes
    /// binaries still come from `dir`.
    Deb,
    /// What `kubicluster artifacts build` compiles from Go modules (the Kubernetes binaries,
    /// etcd, crictl, and the pause, CoreDNS and busybox images), the rest (containerd, runc, CNI
    /// plugins) as with `deb`. `up` builds first when needed; `dir` defaults to the build's output.
    Build,
}

impl std::fmt::Display for ArtifactSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ArtifactSource::Upstream => "upstream",
            ArtifactSource::Dir => "dir",
            ArtifactSource::Deb => "deb",
            ArtifactSource::Build => "build",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ArtifactsEntry {
    pub source: ArtifactSource,
    /// Local directory with upstream file names (`kube-apiserver`, `etcd-v3.5.24-linux-amd64.tar.gz`, …).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub dir: String,
    /// Debian suite for the `deb` source (trixie carries etcd 3.5, sid containerd 2.x).
    pub deb_suite: String,
    /// Suite per component where it differs from `debSuite` (containerd 2.x and CNI plugins 1.9
    /// from sid; runc from bookworm, since sid's needs a newer libc than a Debian 12 guest has).
    pub deb_suites: std::collections::BTreeMap<String, String>,
    /// Debian archive URL; empty = the one the hypervisor's own apt sources use.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub deb_mirror: String,
    /// sha256 per upstream file name, overriding the catalogue and the publisher's checksum file.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub sha256: std::collections::BTreeMap<String, String>,
    /// Install `dir` files that no digest vouches for (not pinned, not in `sha256`, not in the
    /// directory's SHA256SUMS); every run then says UNVERIFIED. Off: such a file is refused.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_unverified: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ControllerManagerEntry {
    /// Give kube-controller-manager the cluster CA's private key so it signs CSRs (kubelet
    /// serving-cert rotation, `kubectl certificate approve`). Off: the CA key never leaves the hypervisor.
    pub csr_signing: bool,
}
