//! The nodes (names, addresses in their networks, roles, sizes, no clashes between them) and the
//! hypervisor they run on.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::super::Node;
use super::super::problem::Problem;
use super::super::types::*;
use super::{Collector, KubeParts, Nets, NodeParts, is_dns_label, pki_stems, stem_clash};

/// A load-balancer node's memory unless the file gives it some.
pub const LOAD_BALANCER_MIB: u32 = 512;

impl Collector {
    pub(super) fn nodes(&mut self, spec: &ClusterSpec, nets: &Nets, k: &KubeParts) -> NodeParts {
        let (cl_net, hv_net, pod_net) = (nets.cluster, nets.hypervisor, k.pod);
        // Nodes.
        let mut nodes = Vec::new();
        if spec.nodes.is_empty() {
            self.push(
            Problem::new("spec.nodes", "no nodes")
                .hint("add nodes to the cluster file or pass --controller/--worker NAME,CLUSTER_IP,HYPERVISOR_IP"),
        );
        } else if !spec.nodes.iter().any(|n| n.role == Role::Controller) {
            self.push(
            Problem::new("spec.nodes", "no controller")
                .hint("a cluster needs at least one node with role: controller (or --controller NAME,CLUSTER_IP,HYPERVISOR_IP)"),
        );
        }
        // Every file of the PKI belongs to exactly one owner: a node name must not make one of its
        // files (for its role) the same as a fixed file or another node's file.
        let mut stems: Vec<(String, String)> = crate::spec::RESERVED_FILE_NAMES
            .iter()
            .map(|r| (r.to_string(), format!("the cluster's {r} files")))
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        for (i, n) in spec.nodes.iter().enumerate() {
            if !is_dns_label(&n.name) || !seen.insert(n.name.as_str()) {
                continue; // reported below
            }
            let mine = pki_stems(n.role, &n.name);
            if let Some((file, owner)) = mine.iter().find_map(|m| {
                stems
                    .iter()
                    .find_map(|(o, owner)| stem_clash(m, o).map(|f| (f, owner.clone())))
            }) {
                self.push(
                    Problem::new(
                        format!("spec.nodes[{i}].name"),
                        format!(
                            "{:?} would make the PKI file {file}, which {owner} already use",
                            n.name
                        ),
                    )
                    .hint("pick another node name"),
                );
            }
            stems.extend(mine.into_iter().map(|m| (m, format!("node {}", n.name))));
        }
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        let mut cluster_ips: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
        let mut hv_ips: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
        for (i, n) in spec.nodes.iter().enumerate() {
            let at = |field: &str| format!("spec.nodes[{i}].{field}");
            if !is_dns_label(&n.name) {
                self.push(
                    Problem::new(at("name"), format!("{:?} is not a valid hostname", n.name)).hint(
                        "use 1-63 lowercase letters, digits or '-' (RFC 1123), e.g. kubi-worker-01",
                    ),
                );
            } else if let Some(first) = names.insert(&n.name, i) {
                self.push(
                    Problem::new(at("name"), format!("duplicate node name {:?}", n.name)).hint(
                        format!("spec.nodes[{first}] has the same name; names must be unique"),
                    ),
                );
            }
            let cip = self.ip(&at("clusterIP"), &n.cluster_ip);
            if let Some(ip) = cip {
                self.host_in(&at("clusterIP"), ip, cl_net, "cluster network");
                if let Some(first) = cluster_ips.insert(ip, i) {
                    self.push(
                        Problem::new(
                            at("clusterIP"),
                            format!("{ip} is already used by spec.nodes[{first}]"),
                        )
                        .hint("every node needs its own address"),
                    );
                }
            }
            let hip = self.ip(&at("hypervisorIP"), &n.hypervisor_ip);
            if let Some(ip) = hip {
                self.host_in(&at("hypervisorIP"), ip, hv_net, "hypervisor network");
                if let Some(first) = hv_ips.insert(ip, i) {
                    self.push(
                        Problem::new(
                            at("hypervisorIP"),
                            format!("{ip} is already used by spec.nodes[{first}]"),
                        )
                        .hint("every node needs its own address"),
                    );
                }
            }
            // A load balancer is small whatever the other nodes' defaults: haproxy alone.
            let lb = n.role == Role::LoadBalancer;
            let vcpus = n
                .vcpus
                .unwrap_or(if lb { 1 } else { spec.node_defaults.vcpus });
            if !(1..=256).contains(&vcpus) {
                self.push(Problem::new(at("vcpus"), format!("{vcpus} vCPUs")).hint("use 1 to 256"));
            }
            let memory_mib = n.memory_mib.unwrap_or(if lb {
                LOAD_BALANCER_MIB
            } else {
                spec.node_defaults.memory_mib
            });
            if memory_mib < 512 {
                self.push(
                    Problem::new(
                        at("memoryMiB"),
                        format!("{memory_mib} MiB is too little for a node"),
                    )
                    .hint("give a node at least 512 MiB (2048 or more for a controller)"),
                );
            } else if memory_mib > 4 << 20 {
                self.push(
                    Problem::new(
                        at("memoryMiB"),
                        format!("{memory_mib} MiB is more than any host has"),
                    )
                    .hint("memoryMiB is in MiB: 4096 is 4 GiB (the original's -m= is in KiB)"),
                );
            }
            if let (Some(ip), Some(cl), Some(pods)) = (cip, cl_net, pod_net)
                && spec.networks.cni == Cni::Bridge
                && n.role == Role::Worker
                && crate::spec::pod_subnet(cl, pods, ip).is_none()
            {
                self.push(
                Problem::new(
                    at("clusterIP"),
                    format!("{ip} has no /24 pod subnet in spec.kubernetes.podCIDR {pods}"),
                )
                .hint("with networks.cni bridge, worker N (Nth address of the cluster network) gets the Nth /24 of the pod CIDR: widen the pod CIDR (e.g. a /16)"),
            );
            }
            if let (Some(cluster_ip), Some(hypervisor_ip)) = (cip, hip) {
                nodes.push(Node {
                    name: n.name.clone(),
                    role: n.role,
                    cluster_ip,
                    hypervisor_ip,
                    vcpus,
                    memory_mib,
                    hypervisor: (!n.hypervisor.is_empty()).then(|| n.hypervisor.clone()),
                });
            }
        }

        NodeParts {
            nodes,
            cluster_ips,
            hv_ips,
        }
    }

    pub(super) fn hypervisor(&mut self, spec: &ClusterSpec, nets: &Nets, n: &NodeParts) {
        let (cl_net, hv_net) = (nets.cluster, nets.hypervisor);
        let (cluster_ips, hv_ips) = (&n.cluster_ips, &n.hv_ips);
        // Hypervisor.
        let h = &spec.hypervisor;
        if h.uri.trim().is_empty() {
            self.push(Problem::new("spec.hypervisor.uri", "is empty").hint("e.g. qemu:///system"));
        }
        self.libvirt_transport("spec.hypervisor.uri", &h.uri);
        if !is_dns_label(&h.storage_pool) {
            self.push(
                Problem::new(
                    "spec.hypervisor.storagePool",
                    format!("{:?} is not a valid pool name", h.storage_pool),
                )
                .hint("use lowercase letters, digits and '-'"),
            );
        }
        if !["", "host-passthrough", "host-model", "maximum"].contains(&h.cpu_mode.as_str()) {
            self.push(
                Problem::new(
                    "spec.hypervisor.cpuMode",
                    format!("unknown CPU mode {:?}", h.cpu_mode),
                )
                .hint("use host-passthrough, host-model or maximum"),
            );
        }
        if h.disk_gib < 2 {
            self.push(
                Problem::new(
                    "spec.hypervisor.diskGiB",
                    format!("{} GiB is too small", h.disk_gib),
                )
                .hint("give at least 2 GiB"),
            );
        }
        if h.boot_timeout_seconds < 10 {
            self.push(
                Problem::new(
                    "spec.hypervisor.bootTimeoutSeconds",
                    format!("{} s is too short", h.boot_timeout_seconds),
                )
                .hint("under emulation (TCG) a boot takes a minute or more; the default is 300"),
            );
        }

        if h.template_kind == TemplateKind::Legacy {
            if h.template_host_key.is_empty() {
                self.push(
                Problem::new("spec.hypervisor.templateHostKey", "a legacy template needs its SSH host public key")
                    .hint("give the template's /etc/ssh/ssh_host_ed25519_key.pub (--template-host-key); kubicluster never trusts an unknown key"),
            );
            }
            let tip = self.ip("spec.hypervisor.templateIP", &h.template_ip);
            let tcip = self.ip("spec.hypervisor.templateClusterIP", &h.template_cluster_ip);
            if let Some(ip) = tip {
                self.host_in(
                    "spec.hypervisor.templateIP",
                    ip,
                    hv_net,
                    "hypervisor network",
                );
                if hv_ips.contains_key(&ip) {
                    self.push(
                        Problem::new(
                            "spec.hypervisor.templateIP",
                            format!("{ip} is also a node's address"),
                        )
                        .hint("the template address must stay free for re-addressing"),
                    );
                }
            }
            if let Some(ip) = tcip {
                self.host_in(
                    "spec.hypervisor.templateClusterIP",
                    ip,
                    cl_net,
                    "cluster network",
                );
                if cluster_ips.contains_key(&ip) {
                    self.push(
                        Problem::new(
                            "spec.hypervisor.templateClusterIP",
                            format!("{ip} is also a node's address"),
                        )
                        .hint("the template address must stay free for re-addressing"),
                    );
                }
            }
        }
    }
}
