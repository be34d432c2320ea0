//! Values from flags and the environment laid over the cluster file.
//!
//! Flags and `KUBICLUSTER_*` variables arrive already merged by clap (flag wins). The original
//! kubicluster's variables (`KUBERNETES_VERSION`, `WORKDIR`, `VCPUS`, ...) fill what is still unset.
//! Node flags (`--controller`/`--worker NAME,CLUSTER_IP,HYPERVISOR_IP`) replace the file's nodes.

use super::problem::Problem;
use super::types::*;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub name: Option<String>,
    pub work_dir: Option<String>,
    pub controllers: Vec<String>,
    pub workers: Vec<String>,
    /// The load-balancer node, with the node flags.
    pub load_balancer: Option<String>,
    pub api_server_lb_ip: Option<String>,
    pub api_server_vip: Option<String>,
    pub pod_cidr: Option<String>,
    pub service_cidr: Option<String>,
    pub cluster_dns: Option<String>,
    pub kubernetes_version: Option<String>,
    pub etcd_version: Option<String>,
    pub containerd_version: Option<String>,
    pub runc_version: Option<String>,
    pub kata_version: Option<String>,
    pub cni_plugins_version: Option<String>,
    pub calico_version: Option<String>,
    pub key_algorithm: Option<KeyAlgorithm>,
    pub vcpus: Option<u32>,
    pub memory_mib: Option<u32>,
    pub cluster_net_mode: Option<ClusterNetMode>,
    pub bridge: Option<String>,
    pub bridge_port: Option<String>,
    pub etcd_client_port: Option<u16>,
    pub etcd_peer_port: Option<u16>,
    pub etcd_cluster_token: Option<String>,
    pub lab: bool,
    /// Nodes added to the spec's list (the original's positional `create-vms NAME,IP,IP …`);
    /// the role is controller when the name contains "controller", worker otherwise.
    pub extra_nodes: Vec<String>,
    pub libvirt_uri: Option<String>,
    pub domain_type: Option<DomainTypeChoice>,
    pub storage_dir: Option<String>,
    pub image: Option<String>,
    pub boot_timeout_seconds: Option<u32>,
    pub disk_gib: Option<u32>,
    pub template_kind: Option<TemplateKind>,
    pub template_host_key: Option<String>,
    pub template_ip: Option<String>,
    pub template_cluster_ip: Option<String>,
    pub artifacts_source: Option<ArtifactSource>,
    pub artifacts_dir: Option<String>,
    pub allow_unverified_artifacts: bool,
    pub deb_suite: Option<String>,
    pub cni: Option<Cni>,
    pub default_runtime: Option<Runtime>,
    /// Every `*.tar` in it is added to `spec.images`.
    pub images_dir: Option<String>,
}

/// Parse `NAME,CLUSTER_IP,HYPERVISOR_IP` (the original's node format). Addresses and the name
/// are checked later by validation, with the rest of the spec.
pub fn parse_node_spec(s: &str, role: Role) -> Result<NodeEntry, String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    match parts.as_slice() {
        [name, cluster_ip, hypervisor_ip] if !name.is_empty() => Ok(NodeEntry {
            hypervisor: String::new(),
            name: name.to_string(),
            role,
            cluster_ip: cluster_ip.to_string(),
            hypervisor_ip: hypervisor_ip.to_string(),
            vcpus: None,
            memory_mib: None,
        }),
        _ => Err(format!("{s:?} is not NAME,CLUSTER_IP,HYPERVISOR_IP")),
    }
}

impl Overrides {
    /// Fill unset fields from the original kubicluster's environment variables.
    fn with_legacy_env(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        problems: &mut Vec<Problem>,
    ) -> Overrides {
        let mut o = self.clone();
        let get = |k: &str| env(k).filter(|v| !v.is_empty());
        let fill = |slot: &mut Option<String>, k: &str| {
            if slot.is_none() {
                *slot = get(k);
            }
        };
        fill(&mut o.name, "CLUSTER_NAME");
        fill(&mut o.work_dir, "WORKDIR");
        fill(&mut o.api_server_lb_ip, "CONTROLLER_LB_IP");
        fill(&mut o.pod_cidr, "CLUSTER_CIDR");
        fill(&mut o.service_cidr, "CLUSTER_IP_RANGE");
        fill(&mut o.cluster_dns, "CLUSTER_DNS");
        fill(&mut o.kubernetes_version, "KUBERNETES_VERSION");
        fill(&mut o.etcd_version, "ETCD_VERSION");
        fill(&mut o.containerd_version, "CONTAINERD_VERSION");
        fill(&mut o.runc_version, "RUNC_VERSION");
        fill(&mut o.kata_version, "KATA_VERSION");
        fill(&mut o.cni_plugins_version, "CNI_PLUGINS_VERSION");
        fill(&mut o.calico_version, "CALICO_VERSION");
        fill(&mut o.bridge, "BRIDGE_INTERFACE");
        fill(&mut o.bridge_port, "BRIDGE_PORT");
        fill(&mut o.etcd_cluster_token, "ETCD_CLUSTER_TOKEN");
        fill(&mut o.storage_dir, "VIRT_STORAGE_DIR");
        // A number in range, or a problem naming the variable (never clamped).
        let mut number = |k: &str, max: u64| -> Option<u64> {
            let v = get(k)?;
            match v.parse::<u64>() {
                Ok(n) if n <= max => Some(n),
                Ok(_) => {
                    problems.push(
                        Problem::new(format!("${k}"), format!("{v} is out of range"))
                            .hint(format!("give a number from 0 to {max}, or unset {k}")),
                    );
                    None
                }
                Err(_) => {
                    problems.push(
                        Problem::new(format!("${k}"), format!("{v:?} is not a number"))
                            .hint(format!("unset {k} or give a whole number")),
                    );
                    None
                }
            }
        };
        if o.vcpus.is_none() {
            o.vcpus = number("VCPUS", u32::MAX.into()).map(|n| n as u32);
        }
        if o.memory_mib.is_none() {
            // The original's VMEM is in KiB.
            o.memory_mib =
                number("VMEM", u64::from(u32::MAX) * 1024).map(|kib| (kib / 1024) as u32);
        }
        if o.etcd_client_port.is_none() {
            o.etcd_client_port = number("ETCD_CLIENT_PORT", u16::MAX.into()).map(|n| n as u16);
        }
        if o.etcd_peer_port.is_none() {
            o.etcd_peer_port = number("ETCD_PEER_PORT", u16::MAX.into()).map(|n| n as u16);
        }
        if o.cluster_net_mode.is_none() && get("USE_DEV_VM_NET").as_deref() == Some("true") {
            o.cluster_net_mode = Some(ClusterNetMode::Isolated);
        }
        o
    }

    /// Lay these values (plus legacy env) over `file`; returns problems with node flags or env.
    pub fn apply(
        &self,
        file: &mut ClusterFile,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<Problem> {
        let mut problems = Vec::new();
        let o = self.with_legacy_env(env, &mut problems);
        let set = |slot: &mut String, v: &Option<String>| {
            if let Some(v) = v {
                *slot = v.clone();
            }
        };
        set(&mut file.metadata.name, &o.name);
        let s = &mut file.spec;
        set(&mut s.work_dir, &o.work_dir);
        set(&mut s.kubernetes.api_server_lb_ip, &o.api_server_lb_ip);
        set(&mut s.kubernetes.api_server_vip, &o.api_server_vip);
        set(&mut s.kubernetes.pod_cidr, &o.pod_cidr);
        set(&mut s.kubernetes.service_cidr, &o.service_cidr);
        set(&mut s.kubernetes.cluster_dns, &o.cluster_dns);
        set(&mut s.kubernetes.version, &o.kubernetes_version);
        set(&mut s.versions.etcd, &o.etcd_version);
        set(&mut s.versions.containerd, &o.containerd_version);
        set(&mut s.versions.runc, &o.runc_version);
        set(&mut s.versions.kata, &o.kata_version);
        set(&mut s.versions.cni_plugins, &o.cni_plugins_version);
        set(&mut s.versions.calico, &o.calico_version);
        set(&mut s.networks.cluster.bridge, &o.bridge);
        set(&mut s.networks.cluster.bridge_port, &o.bridge_port);
        set(&mut s.etcd.cluster_token, &o.etcd_cluster_token);
        set(&mut s.hypervisor.uri, &o.libvirt_uri);
        set(&mut s.hypervisor.storage_dir, &o.storage_dir);
        set(&mut s.hypervisor.image, &o.image);
        set(&mut s.hypervisor.template_host_key, &o.template_host_key);
        set(&mut s.hypervisor.template_ip, &o.template_ip);
        set(
            &mut s.hypervisor.template_cluster_ip,
            &o.template_cluster_ip,
        );
        set(&mut s.artifacts.dir, &o.artifacts_dir);
        if o.allow_unverified_artifacts {
            s.artifacts.allow_unverified = true;
        }
        set(&mut s.artifacts.deb_suite, &o.deb_suite);
        if let Some(a) = o.artifacts_source {
            s.artifacts.source = a;
        }
        if let Some(c) = o.cni {
            s.networks.cni = c;
        }
        if let Some(r) = o.default_runtime {
            s.containerd.default_runtime = r;
        }
        if let Some(d) = &o.images_dir {
            match std::fs::read_dir(d) {
                Ok(rd) => {
                    let mut found: Vec<String> = rd
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|x| x == "tar"))
                        .map(|p| p.display().to_string())
                        .collect();
                    found.sort();
                    for f in found {
                        if !s.images.contains(&f) {
                            s.images.push(f);
                        }
                    }
                }
                Err(e) => problems.push(
                    Problem::new("--images-dir", format!("{d}: {e}"))
                        .hint("name a directory holding image archives (*.tar)"),
                ),
            }
        }
        if let Some(k) = o.template_kind {
            s.hypervisor.template_kind = k;
        }
        if o.lab {
            s.hypervisor.mode = HypervisorMode::Lab;
        }
        if let Some(t) = o.domain_type {
            s.hypervisor.domain_type = t;
        }
        if let Some(t) = o.boot_timeout_seconds {
            s.hypervisor.boot_timeout_seconds = t;
        }
        if let Some(g) = o.disk_gib {
            s.hypervisor.disk_gib = g;
        }
        if let Some(a) = o.key_algorithm {
            s.pki.key_algorithm = a;
        }
        if let Some(n) = o.vcpus {
            s.node_defaults.vcpus = n;
        }
        if let Some(n) = o.memory_mib {
            s.node_defaults.memory_mib = n;
        }
        if let Some(m) = o.cluster_net_mode {
            s.networks.cluster.mode = m;
        }
        if let Some(p) = o.etcd_client_port {
            s.etcd.client_port = p;
        }
        if let Some(p) = o.etcd_peer_port {
            s.etcd.peer_port = p;
        }
        if !o.controllers.is_empty() || !o.workers.is_empty() {
            s.nodes.clear();
            for (flag, role, specs) in [
                ("--controller", Role::Controller, o.controllers.as_slice()),
                ("--worker", Role::Worker, o.workers.as_slice()),
                (
                    "--loadbalancer",
                    Role::LoadBalancer,
                    o.load_balancer.as_slice(),
                ),
            ] {
                for spec in specs {
                    match parse_node_spec(spec, role) {
                        Ok(n) => s.nodes.push(n),
                        Err(e) => problems.push(
                            Problem::new(flag, e)
                                .hint("give NAME,CLUSTER_IP,HYPERVISOR_IP, e.g. kubi-worker-01,192.168.24.21,192.168.122.21"),
                        ),
                    }
                }
            }
        } else if o.load_balancer.is_some() {
            problems.push(
                Problem::new("--loadbalancer", "given without the other nodes")
                    .hint("name every node on the command line (--controller, --worker), or add the load balancer to the cluster file's nodes with role: loadbalancer"),
            );
        }
        for spec in &o.extra_nodes {
            let role = if spec
                .split(',')
                .next()
                .unwrap_or_default()
                .contains("controller")
            {
                Role::Controller
            } else {
                Role::Worker
            };
            match parse_node_spec(spec, role) {
                Ok(n)
                    if s.nodes.iter().any(|m| {
                        *m == n
                            || (m.name == n.name
                                && m.cluster_ip == n.cluster_ip
                                && m.hypervisor_ip == n.hypervisor_ip)
                    }) => {}
                Ok(n) => s.nodes.push(n),
                Err(e) => problems
                    .push(Problem::new("NODE", e).hint("give NAME,CLUSTER_IP,HYPERVISOR_IP")),
            }
        }
        problems
    }
}
