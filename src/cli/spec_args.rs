//! The flags that override the cluster file (each also read from `KUBICLUSTER_<NAME>`) and
//! their translation into [`Overrides`].

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::spec::{
    ArtifactSource, ClusterNetMode, Cni, DomainTypeChoice, KeyAlgorithm, Overrides, Runtime,
    TemplateKind,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TmplKind {
    Kubicluster,
    Legacy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DomType {
    Auto,
    Kvm,
    Qemu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetMode {
    Isolated,
    Bridged,
}

/// Flags that override the cluster file. Each also reads `KUBICLUSTER_<NAME>`.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Cluster spec (override the cluster file)")]
pub struct SpecArgs {
    /// Cluster file [default: ./kubicluster.yaml if present, else the embedded default]. Legacy: -f FILE.
    #[arg(long, env = "KUBICLUSTER_FILE", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Cluster name. Legacy: -cl=NAME.
    #[arg(long, alias = "cluster", env = "KUBICLUSTER_NAME")]
    pub name: Option<String>,
    /// Work directory for generated files.
    #[arg(long, env = "KUBICLUSTER_WORK_DIR", value_name = "DIR")]
    pub work_dir: Option<String>,
    /// Controller NAME,CLUSTER_IP,HYPERVISOR_IP (repeatable; replaces the file's nodes). Legacy: -c.
    #[arg(
        long,
        alias = "controller-node",
        env = "KUBICLUSTER_CONTROLLERS",
        value_delimiter = ' ',
        value_name = "SPEC"
    )]
    pub controller: Vec<String>,
    /// Worker NAME,CLUSTER_IP,HYPERVISOR_IP (repeatable; replaces the file's nodes). Legacy: -w.
    #[arg(
        long,
        alias = "worker-node",
        env = "KUBICLUSTER_WORKERS",
        value_delimiter = ' ',
        value_name = "SPEC"
    )]
    pub worker: Vec<String>,
    /// The API's load-balancer VM (haproxy) NAME,CLUSTER_IP,HYPERVISOR_IP; with --controller or
    /// --worker (it is one of the nodes they give).
    #[arg(long, env = "KUBICLUSTER_LOADBALANCER", value_name = "SPEC")]
    pub loadbalancer: Option<String>,
    /// Address clients use to reach the API servers. Legacy: -clb.
    #[arg(long, env = "KUBICLUSTER_CONTROLLER_LB_IP", value_name = "IP")]
    pub controller_lb_ip: Option<String>,
    /// A virtual IP the controllers hold for the API (keepalived), or `none`; by default the
    /// cluster network's tenth address when there are several controllers.
    #[arg(long, env = "KUBICLUSTER_CONTROLLER_VIP", value_name = "IP|none")]
    pub controller_vip: Option<String>,
    /// Pod CIDR. Legacy: -cidr=.
    #[arg(
        long,
        alias = "cluster-cidr",
        env = "KUBICLUSTER_POD_CIDR",
        value_name = "CIDR"
    )]
    pub pod_cidr: Option<String>,
    /// Service CIDR.
    #[arg(long, env = "KUBICLUSTER_SERVICE_CIDR", value_name = "CIDR")]
    pub service_cidr: Option<String>,
    /// Cluster DNS service address.
    #[arg(long, env = "KUBICLUSTER_CLUSTER_DNS", value_name = "IP")]
    pub cluster_dns: Option<String>,
    /// Kubernetes version. Legacy: -kv=.
    #[arg(long, env = "KUBICLUSTER_KUBERNETES_VERSION", value_name = "V")]
    pub kubernetes_version: Option<String>,
    /// etcd version. Legacy: -ev=.
    #[arg(long, env = "KUBICLUSTER_ETCD_VERSION", value_name = "V")]
    pub etcd_version: Option<String>,
    /// containerd version. Legacy: -cdv=.
    #[arg(long, env = "KUBICLUSTER_CONTAINERD_VERSION", value_name = "V")]
    pub containerd_version: Option<String>,
    /// runc version. Legacy: -runcv=.
    #[arg(long, env = "KUBICLUSTER_RUNC_VERSION", value_name = "V")]
    pub runc_version: Option<String>,
    /// Kata Containers version. Legacy: -katav=.
    #[arg(long, env = "KUBICLUSTER_KATA_VERSION", value_name = "V")]
    pub kata_version: Option<String>,
    /// CNI plugins version. Legacy: -cnipv=.
    #[arg(long, env = "KUBICLUSTER_CNI_PLUGINS_VERSION", value_name = "V")]
    pub cni_plugins_version: Option<String>,
    /// Calico version. Legacy: -calicov=.
    #[arg(long, env = "KUBICLUSTER_CALICO_VERSION", value_name = "V")]
    pub calico_version: Option<String>,
    /// Key algorithm for new keys.
    #[arg(long, env = "KUBICLUSTER_KEY_ALGORITHM", value_name = "ALG",
          value_parser = ["ecdsa-p256", "rsa-2048", "rsa-3072", "rsa-4096"])]
    pub key_algorithm: Option<String>,
    /// Default vCPUs per VM. Legacy: -c=N.
    #[arg(long, env = "KUBICLUSTER_CPUS", value_name = "N")]
    pub cpus: Option<u32>,
    /// Default memory per VM in MiB.
    #[arg(long, env = "KUBICLUSTER_MEMORY_MIB", value_name = "MIB")]
    pub memory_mib: Option<u32>,
    /// Default memory per VM in KiB (the original's -m=); wins over --memory-mib.
    #[arg(long, hide = true, value_name = "KIB")]
    pub mem: Option<u64>,
    /// Cluster network mode.
    #[arg(
        long,
        value_enum,
        env = "KUBICLUSTER_CLUSTER_NET_MODE",
        value_name = "MODE"
    )]
    pub cluster_net_mode: Option<NetMode>,
    /// Isolated cluster network; appends "dev" to the bridge name (the original's -ndev).
    #[arg(long, conflicts_with = "cluster_net_mode")]
    pub cluster_net_dev: bool,
    /// Cluster network bridge. Legacy: -bi=.
    #[arg(long, env = "KUBICLUSTER_BRIDGE_INTERFACE", value_name = "BRIDGE")]
    pub bridge_interface: Option<String>,
    /// Physical port of the bridge (bridged mode). Legacy: -bp=.
    #[arg(long, env = "KUBICLUSTER_BRIDGE_PORT", value_name = "IF")]
    pub bridge_port: Option<String>,
    /// etcd client port. Legacy: -cp=.
    #[arg(
        long,
        alias = "client-port",
        env = "KUBICLUSTER_ETCD_CLIENT_PORT",
        value_name = "PORT"
    )]
    pub etcd_client_port: Option<u16>,
    /// etcd peer port. Legacy: -pp=.
    #[arg(
        long,
        alias = "peer-port",
        env = "KUBICLUSTER_ETCD_PEER_PORT",
        value_name = "PORT"
    )]
    pub etcd_peer_port: Option<u16>,
    /// Run against a private lab libvirtd in a network namespace (`kubicluster lab up`).
    #[arg(long, env = "KUBICLUSTER_LAB", value_parser = clap::builder::BoolishValueParser::new())]
    pub lab: bool,
    /// libvirt URI (host mode).
    #[arg(long, env = "KUBICLUSTER_LIBVIRT_URI", value_name = "URI")]
    pub libvirt_uri: Option<String>,
    /// Domain type: auto (kvm if usable, else qemu/TCG), kvm or qemu.
    #[arg(long, value_enum, env = "KUBICLUSTER_DOMAIN_TYPE", value_name = "TYPE")]
    pub domain_type: Option<DomType>,
    /// Directory of the VM disk pool. Legacy: -sd=.
    #[arg(long, env = "KUBICLUSTER_STORAGE_DIR", value_name = "DIR")]
    pub storage_dir: Option<String>,
    /// Template image (qcow2).
    #[arg(long, env = "KUBICLUSTER_IMAGE", value_name = "QCOW2")]
    pub image: Option<String>,
    /// Template kind: kubicluster (identity via fw_cfg) or legacy (re-addressed one by one).
    #[arg(
        long,
        value_enum,
        env = "KUBICLUSTER_TEMPLATE_KIND",
        value_name = "KIND"
    )]
    pub template_kind: Option<TmplKind>,
    /// Legacy template: its SSH host public key (pinned for the first connection).
    #[arg(long, env = "KUBICLUSTER_TEMPLATE_HOST_KEY", value_name = "PUB")]
    pub template_host_key: Option<String>,
    /// Legacy template: its static NAT-net address. Legacy: -tip=.
    #[arg(long, env = "KUBICLUSTER_TEMPLATE_IP", value_name = "IP")]
    pub template_ip: Option<String>,
    /// Legacy template: its static cluster-net address. Legacy: -tcip=.
    #[arg(long, env = "KUBICLUSTER_TEMPLATE_CLUSTER_IP", value_name = "IP")]
    pub template_cluster_ip: Option<String>,
    /// Seconds to wait for a VM to answer SSH.
    #[arg(long, env = "KUBICLUSTER_BOOT_TIMEOUT", value_name = "SECONDS")]
    pub boot_timeout: Option<u32>,
    /// Disk size of each VM in GiB (the root filesystem grows to it at boot).
    #[arg(long, env = "KUBICLUSTER_DISK_GIB", value_name = "GIB")]
    pub disk_gib: Option<u32>,
    /// etcd initial cluster token. Legacy: -t=.
    #[arg(
        long,
        alias = "cluster-token",
        env = "KUBICLUSTER_ETCD_CLUSTER_TOKEN",
        value_name = "TOKEN"
    )]
    pub etcd_cluster_token: Option<String>,
    /// Where node binaries come from: upstream (download + checksum), dir, deb (Debian packages),
    /// or build (`kubicluster artifacts build`: Kubernetes, etcd, images from Go modules; the rest deb).
    #[arg(long, value_enum, env = "KUBICLUSTER_ARTIFACTS", value_name = "SOURCE")]
    pub artifacts: Option<ArtifactsFrom>,
    /// Directory with binaries under their upstream names (offline; also Kubernetes binaries with deb).
    #[arg(long, env = "KUBICLUSTER_ARTIFACTS_DIR", value_name = "DIR")]
    pub artifacts_dir: Option<String>,
    /// Install files from --artifacts-dir that no digest vouches for (pinned, spec.artifacts.sha256
    /// or the directory's SHA256SUMS); each run says UNVERIFIED. Without it they are refused.
    #[arg(long, env = "KUBICLUSTER_ALLOW_UNVERIFIED_ARTIFACTS")]
    pub allow_unverified_artifacts: bool,
    /// Debian suite for the deb source (trixie: etcd 3.5; sid: containerd 2.x).
    #[arg(long, env = "KUBICLUSTER_DEB_SUITE", value_name = "SUITE")]
    pub deb_suite: Option<String>,
    /// Pod network: calico (manifest applied through the API) or bridge (per-worker subnets + routes).
    #[arg(long, value_enum, env = "KUBICLUSTER_CNI", value_name = "CNI")]
    pub cni: Option<CniChoice>,
    /// Runtime of pods without a runtimeClassName (kata falls back to runc where a worker has no KVM).
    #[arg(
        long,
        value_enum,
        env = "KUBICLUSTER_DEFAULT_RUNTIME",
        value_name = "RUNTIME"
    )]
    pub default_runtime: Option<RuntimeChoice>,
    /// Directory of image archives (*.tar, OCI or docker) to import on every worker.
    #[arg(long, env = "KUBICLUSTER_IMAGES_DIR", value_name = "DIR")]
    pub images_dir: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CniChoice {
    Calico,
    Bridge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuntimeChoice {
    Kata,
    Runc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArtifactsFrom {
    Upstream,
    Dir,
    Deb,
    Build,
}

impl SpecArgs {
    pub fn overrides(&self) -> Overrides {
        let mut bridge = self.bridge_interface.clone();
        let mut mode = self.cluster_net_mode.map(|m| match m {
            NetMode::Isolated => ClusterNetMode::Isolated,
            NetMode::Bridged => ClusterNetMode::Bridged,
        });
        if self.cluster_net_dev {
            mode = Some(ClusterNetMode::Isolated);
            // The original appended "dev" to the bridge name (whatever the flag order).
            bridge = bridge.map(|b| {
                if b.ends_with("dev") {
                    b
                } else {
                    format!("{b}dev")
                }
            });
        }
        Overrides {
            name: self.name.clone(),
            work_dir: self.work_dir.clone(),
            controllers: self.controller.clone(),
            workers: self.worker.clone(),
            load_balancer: self.loadbalancer.clone(),
            api_server_lb_ip: self.controller_lb_ip.clone(),
            api_server_vip: self.controller_vip.clone(),
            pod_cidr: self.pod_cidr.clone(),
            service_cidr: self.service_cidr.clone(),
            cluster_dns: self.cluster_dns.clone(),
            kubernetes_version: self.kubernetes_version.clone(),
            etcd_version: self.etcd_version.clone(),
            containerd_version: self.containerd_version.clone(),
            runc_version: self.runc_version.clone(),
            kata_version: self.kata_version.clone(),
            cni_plugins_version: self.cni_plugins_version.clone(),
            calico_version: self.calico_version.clone(),
            key_algorithm: self
                .key_algorithm
                .as_deref()
                .map(|a| a.parse::<KeyAlgorithm>().expect("clap checked the value")),
            vcpus: self.cpus,
            // The legacy -m= (KiB) is only ever a flag, so it wins over KUBICLUSTER_MEMORY_MIB.
            memory_mib: self
                .mem
                .map(|kib| u32::try_from(kib / 1024).unwrap_or(u32::MAX))
                .or(self.memory_mib),
            cluster_net_mode: mode,
            bridge,
            bridge_port: self.bridge_port.clone(),
            etcd_client_port: self.etcd_client_port,
            etcd_peer_port: self.etcd_peer_port,
            etcd_cluster_token: self.etcd_cluster_token.clone(),
            lab: self.lab,
            libvirt_uri: self.libvirt_uri.clone(),
            domain_type: self.domain_type.map(|t| match t {
                DomType::Auto => DomainTypeChoice::Auto,
                DomType::Kvm => DomainTypeChoice::Kvm,
                DomType::Qemu => DomainTypeChoice::Qemu,
            }),
            storage_dir: self.storage_dir.clone(),
            image: self.image.clone(),
            boot_timeout_seconds: self.boot_timeout,
            disk_gib: self.disk_gib,
            template_kind: self.template_kind.map(|k| match k {
                TmplKind::Kubicluster => TemplateKind::Kubicluster,
                TmplKind::Legacy => TemplateKind::Legacy,
            }),
            template_host_key: self.template_host_key.clone(),
            template_ip: self.template_ip.clone(),
            template_cluster_ip: self.template_cluster_ip.clone(),
            extra_nodes: Vec::new(),
            artifacts_source: self.artifacts.map(|a| match a {
                ArtifactsFrom::Upstream => ArtifactSource::Upstream,
                ArtifactsFrom::Dir => ArtifactSource::Dir,
                ArtifactsFrom::Deb => ArtifactSource::Deb,
                ArtifactsFrom::Build => ArtifactSource::Build,
            }),
            artifacts_dir: self.artifacts_dir.clone(),
            allow_unverified_artifacts: self.allow_unverified_artifacts,
            deb_suite: self.deb_suite.clone(),
            cni: self.cni.map(|c| match c {
                CniChoice::Calico => Cni::Calico,
                CniChoice::Bridge => Cni::Bridge,
            }),
            default_runtime: self.default_runtime.map(|r| match r {
                RuntimeChoice::Kata => Runtime::Kata,
                RuntimeChoice::Runc => Runtime::Runc,
            }),
            images_dir: self.images_dir.clone(),
        }
    }
}
