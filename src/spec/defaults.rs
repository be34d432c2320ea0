//! Defaults. They reproduce the original kubicluster layout (node names, the 192.168.122.0/24 NAT
//! net, the 192.168.24.0/24 cluster net, service and pod ranges) with current component versions:
//! the original's Kubernetes 1.18 stack no longer runs on a supported release.

use super::types::*;

pub const DEFAULT_CLUSTER_NAME: &str = "kubicluster";
pub const DEFAULT_WORK_DIR: &str = "work";

impl Default for ClusterFile {
    fn default() -> Self {
        ClusterFile {
            api_version: API_VERSION.to_string(),
            kind: KIND.to_string(),
            metadata: Metadata {
                name: DEFAULT_CLUSTER_NAME.to_string(),
            },
            spec: ClusterSpec::default(),
        }
    }
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            work_dir: DEFAULT_WORK_DIR.to_string(),
            node_defaults: NodeDefaults::default(),
            nodes: Vec::new(),
            networks: Networks::default(),
            kubernetes: KubernetesEntry::default(),
            etcd: EtcdEntry::default(),
            pki: PkiEntry::default(),
            versions: Versions::default(),
            ssh: SshEntry::default(),
            hypervisor: HypervisorEntry::default(),
            hypervisors: Vec::new(),
            artifacts: ArtifactsEntry::default(),
            controller_manager: ControllerManagerEntry::default(),
            containerd: ContainerdEntry::default(),
            images: Vec::new(),
        }
    }
}

impl Default for NodeDefaults {
    fn default() -> Self {
        NodeDefaults {
            vcpus: 1,
            memory_mib: 4096,
        }
    }
}

impl Default for HypervisorNet {
    fn default() -> Self {
        HypervisorNet {
            name: "default".into(),
            cidr: "192.168.122.0/24".into(),
        }
    }
}

impl Default for ClusterNet {
    fn default() -> Self {
        ClusterNet {
            name: "vm-cluster-net-dev".into(),
            cidr: "192.168.24.0/24".into(),
            mode: ClusterNetMode::Isolated,
            bridge: String::new(),
            bridge_port: "eth1".into(),
            mtu: None,
        }
    }
}

impl Default for KubernetesEntry {
    fn default() -> Self {
        KubernetesEntry {
            version: "1.37.2".into(),
            pod_cidr: "10.200.0.0/16".into(),
            service_cidr: "10.32.0.0/24".into(),
            cluster_dns: "10.32.0.10".into(),
            cluster_domain: "cluster.local".into(),
            api_server_lb_ip: String::new(),
            api_server_vip: String::new(),
            api_server_port: 6443,
        }
    }
}

/// etcd's own defaults: the unit names the timing only when the spec differs.
pub const ETCD_HEARTBEAT_MS: u32 = 100;
pub const ETCD_ELECTION_MS: u32 = 1000;

impl Default for EtcdEntry {
    fn default() -> Self {
        EtcdEntry {
            client_port: 2379,
            peer_port: 2380,
            cluster_token: "etcd-kubicluster".into(),
            heartbeat_interval_ms: ETCD_HEARTBEAT_MS,
            election_timeout_ms: ETCD_ELECTION_MS,
        }
    }
}

impl Default for PkiEntry {
    fn default() -> Self {
        PkiEntry {
            key_algorithm: KeyAlgorithm::EcdsaP256,
            ca_validity_days: 3650,
            cert_validity_days: 365,
            renew_before_days: 30,
            encryption_provider: EncryptionProvider::Secretbox,
        }
    }
}

impl Default for Versions {
    fn default() -> Self {
        Versions {
            etcd: "3.7.3".into(),
            containerd: "2.1.4".into(),
            runc: "1.3.3".into(),
            kata: "3.20.0".into(),
            cni_plugins: "1.7.1".into(),
            calico: "3.30.5".into(),
        }
    }
}

impl Default for SshEntry {
    fn default() -> Self {
        SshEntry {
            user: "root".into(),
            private_key: String::new(),
            port: 22,
        }
    }
}

/// The embedded default cluster: the original README's development layout,
/// one controller and two workers.
pub fn default_cluster_file() -> ClusterFile {
    example_cluster_file(1, 2)
}

/// A cluster file with `controllers` controllers and `workers` workers, named and addressed the way
/// the original kubicluster documented them (`kubi-controller-01,192.168.24.11,192.168.122.11`).
pub fn example_cluster_file(controllers: u8, workers: u8) -> ClusterFile {
    let mut file = ClusterFile::default();
    let node = |role: Role, prefix: &str, i: u8, base: u8| NodeEntry {
        hypervisor: String::new(),
        name: format!("kubi-{prefix}-{i:02}"),
        role,
        cluster_ip: format!("192.168.24.{}", base + i),
        hypervisor_ip: format!("192.168.122.{}", base + i),
        vcpus: None,
        memory_mib: None,
    };
    for i in 1..=controllers {
        file.spec
            .nodes
            .push(node(Role::Controller, "controller", i, 10));
    }
    for i in 1..=workers {
        file.spec.nodes.push(node(Role::Worker, "worker", i, 20));
    }
    file
}

impl Default for HypervisorEntry {
    fn default() -> Self {
        HypervisorEntry {
            mode: HypervisorMode::Host,
            uri: "qemu:///system".into(),
            domain_type: DomainTypeChoice::Auto,
            cpu_mode: String::new(),
            storage_pool: "kubicluster".into(),
            storage_dir: String::new(),
            image: String::new(),
            disk_gib: 8,
            boot_timeout_seconds: 300,
            autostart: true,
            template_kind: TemplateKind::Kubicluster,
            template_host_key: String::new(),
            template_ip: "192.168.122.254".into(),
            template_cluster_ip: "192.168.24.254".into(),
        }
    }
}

impl Default for ArtifactsEntry {
    fn default() -> Self {
        ArtifactsEntry {
            source: ArtifactSource::Upstream,
            dir: String::new(),
            deb_suite: "trixie".into(),
            deb_suites: [
                ("containerd", "sid"),
                ("cni-plugins", "sid"),
                ("runc", "bookworm"),
            ]
            .into_iter()
            .map(|(c, s)| (c.to_string(), s.to_string()))
            .collect(),
            deb_mirror: String::new(),
            sha256: Default::default(),
            allow_unverified: false,
        }
    }
}
