//! Validation: the loose [`ClusterFile`] becomes a typed [`Cluster`], or every problem is reported
//! at once with its path and a hint. Nothing here touches the disk or the network.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;

use super::problem::{Problem, Problems};
use super::types::*;
use super::versions::{Version, supported};
use super::{
    Artifacts, Cluster, ComponentVersions, Host, Hypervisor, Kubernetes, NetworksResolved, Node,
};

pub mod endpoint;
mod hosts;
mod nodes;
mod sections;

/// RFC 1123 label: 1–63 of `[a-z0-9-]`, starting and ending alphanumeric.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Node names that would collide with the PKI's own file names.
/// The PKI file stems a node brings (`<stem>.pem`, `<stem>-key.pem`, `<stem>.kubeconfig`).
fn pki_stems(role: Role, name: &str) -> Vec<String> {
    match role {
        Role::Worker => vec![name.to_string()],
        Role::Controller => vec![format!("etcd-server-{name}"), format!("etcd-peer-{name}")],
        // haproxy passes TLS through: no certificate of its own.
        Role::LoadBalancer => Vec::new(),
    }
}

/// The file two stems would both write, if any (`w-key.pem` is both `w-key`'s cert and `w`'s key).
fn stem_clash(a: &str, b: &str) -> Option<String> {
    if a == b || a.strip_suffix("-key") == Some(b) {
        Some(format!("{a}.pem"))
    } else if b.strip_suffix("-key") == Some(a) {
        Some(format!("{b}.pem"))
    } else {
        None
    }
}

/// Linux interface names: 1–15 characters, no `/`, whitespace or `:`.
fn is_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}

struct Collector {
    problems: Vec<Problem>,
}

impl Collector {
    fn push(&mut self, p: Problem) {
        self.problems.push(p);
    }

    fn cidr(&mut self, path: &str, value: &str) -> Option<Ipv4Net> {
        match value.parse::<Ipv4Net>() {
            Ok(n) if n.network() != n.addr() => {
                self.push(
                    Problem::new(path, format!("{value} has host bits set"))
                        .hint(format!("did you mean {}?", n.trunc())),
                );
                None
            }
            Ok(n) if n.prefix_len() > 30 => {
                self.push(
                    Problem::new(path, format!("{value} is too small"))
                        .hint("use a prefix of /30 or shorter"),
                );
                None
            }
            Ok(n) => Some(n),
            Err(_) => {
                self.push(
                    Problem::new(path, format!("{value:?} is not an IPv4 CIDR"))
                        .hint("write it as ADDRESS/PREFIX, e.g. 192.168.24.0/24"),
                );
                None
            }
        }
    }

    fn ip(&mut self, path: &str, value: &str) -> Option<Ipv4Addr> {
        match value.parse::<Ipv4Addr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.push(
                    Problem::new(path, format!("{value:?} is not an IPv4 address"))
                        .hint("write it as four dot-separated numbers, e.g. 192.168.24.11"),
                );
                None
            }
        }
    }

    /// A node address must be a usable host address of `net` and not the hypervisor's `.1`.
    fn host_in(&mut self, path: &str, ip: Ipv4Addr, net: Option<Ipv4Net>, what: &str) {
        let Some(net) = net else { return };
        let gateway = net.hosts().next();
        if !net.contains(&ip) {
            self.push(
                Problem::new(path, format!("{ip} is outside the {what} {net}"))
                    .hint(format!("pick an address in {net}")),
            );
        } else if ip == net.network() || ip == net.broadcast() {
            self.push(
                Problem::new(
                    path,
                    format!("{ip} is the network or broadcast address of {net}"),
                )
                .hint("pick a host address"),
            );
        } else if Some(ip) == gateway {
            self.push(
                Problem::new(
                    path,
                    format!("{ip} is the hypervisor's own address on the {what}"),
                )
                .hint("the hypervisor uses the first host address; pick another"),
            );
        }
    }

    fn version(&mut self, component: &str, value: &str) -> Option<Version> {
        let s = supported(component);
        match s.check(value) {
            Ok(v) => Some(v),
            Err((msg, hint)) => {
                self.push(Problem::new(s.path, msg).hint(hint));
                None
            }
        }
    }
}

/// The addresses and ranges read so far (None where a problem was recorded).
struct Nets {
    hypervisor: Option<Ipv4Net>,
    cluster: Option<Ipv4Net>,
    bridge: String,
}

struct KubeParts {
    version: Option<Version>,
    pod: Option<Ipv4Net>,
    service: Option<Ipv4Net>,
    dns: Option<Ipv4Addr>,
    lb_ip: Option<Ipv4Addr>,
}

struct NodeParts {
    nodes: Vec<Node>,
    cluster_ips: BTreeMap<Ipv4Addr, usize>,
    hv_ips: BTreeMap<Ipv4Addr, usize>,
}

/// Every section of the file, each checked by its own method; all problems are collected.
pub fn validate(file: &ClusterFile) -> Result<Cluster, Problems> {
    let mut c = Collector {
        problems: Vec::new(),
    };
    let spec = &file.spec;
    c.header(file);
    let nets = c.networks(spec);
    let k = c.kubernetes(spec);
    c.disjoint(&nets, &k);
    let n = c.nodes(spec, &nets, &k);
    let k = c.load_balancer_node(spec, k, &n);
    c.etcd(spec);
    c.pki(spec);
    c.versions(spec);
    c.artifacts(spec);
    c.images(spec);
    c.ssh(spec);
    c.hypervisor(spec, &nets, &n);
    c.hosts(spec);
    let vip = c.api_vip(spec, &nets, &k, &n);
    if !c.problems.is_empty() {
        return Err(Problems(c.problems));
    }
    Ok(resolve(file, nets, k, n, vip))
}

impl Collector {
    fn header(&mut self, file: &ClusterFile) {
        if file.api_version != API_VERSION {
            self.push(
                Problem::new(
                    "apiVersion",
                    format!("unknown apiVersion {:?}", file.api_version),
                )
                .hint(format!("use {API_VERSION}")),
            );
        }
        if file.kind != KIND {
            self.push(
                Problem::new("kind", format!("unknown kind {:?}", file.kind)).hint("use Cluster"),
            );
        }
        let name = &file.metadata.name;
        if !is_dns_label(name) {
            self.push(
            Problem::new("metadata.name", format!("{name:?} is not a valid cluster name"))
                .hint("use 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit"),
        );
        }
        let spec = &file.spec;
        if spec.work_dir.trim().is_empty() {
            self.push(Problem::new("spec.workDir", "is empty").hint("set a directory, e.g. work"));
        } else if let Ok(m) = std::fs::metadata(&spec.work_dir)
            && !m.is_dir()
        {
            self.push(
                Problem::new(
                    "spec.workDir",
                    format!("{} exists and is not a directory", spec.work_dir),
                )
                .hint("point --work-dir at a directory (it is created if missing)"),
            );
        }
    }

    fn networks(&mut self, spec: &ClusterSpec) -> Nets {
        let nets = &spec.networks;
        let hypervisor = self.cidr("spec.networks.hypervisor.cidr", &nets.hypervisor.cidr);
        let cluster = self.cidr("spec.networks.cluster.cidr", &nets.cluster.cidr);
        for (path, value) in [
            ("spec.networks.hypervisor.name", &nets.hypervisor.name),
            ("spec.networks.cluster.name", &nets.cluster.name),
        ] {
            if !is_dns_label(value) {
                self.push(
                    Problem::new(path, format!("{value:?} is not a valid network name"))
                        .hint("use lowercase letters, digits and '-'"),
                );
            }
        }
        let bridge = if nets.cluster.bridge.is_empty() {
            match nets.cluster.mode {
                ClusterNetMode::Isolated => "vmbr24dev".to_string(),
                ClusterNetMode::Bridged => "vmbr24".to_string(),
            }
        } else {
            nets.cluster.bridge.clone()
        };
        if let Some(mtu) = nets.cluster.mtu
            && !(1280..=9000).contains(&mtu)
        {
            self.push(
                Problem::new(
                    "spec.networks.cluster.mtu",
                    format!("{mtu} is outside 1280..9000"),
                )
                .hint("the cluster network's MTU: 1500 on a plain Ethernet, 1450 below a VXLAN on a 1500 network"),
            );
        }
        for (path, value) in [
            ("spec.networks.cluster.bridge", &bridge),
            (
                "spec.networks.cluster.bridgePort",
                &nets.cluster.bridge_port,
            ),
        ] {
            if !is_ifname(value) {
                self.push(
                    Problem::new(path, format!("{value:?} is not a valid interface name"))
                        .hint("use 1-15 characters without '/', ':' or spaces"),
                );
            }
        }

        Nets {
            hypervisor,
            cluster,
            bridge,
        }
    }

    fn kubernetes(&mut self, spec: &ClusterSpec) -> KubeParts {
        let k = &spec.kubernetes;
        let version = self.version("kubernetes", &k.version);
        let pod = self.cidr("spec.kubernetes.podCIDR", &k.pod_cidr);
        let service = self.cidr("spec.kubernetes.serviceCIDR", &k.service_cidr);
        let dns = self.ip("spec.kubernetes.clusterDNS", &k.cluster_dns);
        if let (Some(dns), Some(svc)) = (dns, service) {
            if !svc.contains(&dns) {
                self.push(
                    Problem::new(
                        "spec.kubernetes.clusterDNS",
                        format!("{dns} is outside the service CIDR {svc}"),
                    )
                    .hint(format!("pick an address in {svc}, e.g. its .10")),
                );
            } else if dns == svc.network() || dns == svc.broadcast() {
                self.push(
                    Problem::new(
                        "spec.kubernetes.clusterDNS",
                        format!("{dns} is the network or broadcast address of {svc}"),
                    )
                    .hint(format!("pick a host address in {svc}, e.g. its .10")),
                );
            } else if svc.hosts().next() == Some(dns) {
                self.push(
                    Problem::new(
                        "spec.kubernetes.clusterDNS",
                        format!("{dns} is the API service address of {svc}"),
                    )
                    .hint(
                        "the first service address belongs to the kubernetes service; pick another",
                    ),
                );
            }
        }
        if !is_dns_subdomain(&k.cluster_domain) {
            self.push(
                Problem::new(
                    "spec.kubernetes.clusterDomain",
                    format!("{:?} is not a DNS domain", k.cluster_domain),
                )
                .hint("e.g. cluster.local"),
            );
        }
        let lb_ip = if k.api_server_lb_ip.is_empty() {
            None
        } else {
            self.ip(
                "spec.kubernetes.apiServerLoadBalancerIP",
                &k.api_server_lb_ip,
            )
        };
        if k.api_server_port == 0 {
            self.push(
                Problem::new("spec.kubernetes.apiServerPort", "must not be 0")
                    .hint("the usual port is 6443"),
            );
        } else if [spec.etcd.client_port, spec.etcd.peer_port].contains(&k.api_server_port) {
            self.push(
                Problem::new(
                    "spec.kubernetes.apiServerPort",
                    format!(
                        "{} is also an etcd port; both run on every controller",
                        k.api_server_port
                    ),
                )
                .hint("use 6443 for the API server and 2379/2380 for etcd"),
            );
        }

        KubeParts {
            version,
            pod,
            service,
            dns,
            lb_ip,
        }
    }

    fn disjoint(&mut self, nets: &Nets, k: &KubeParts) {
        let ranges = [
            ("spec.networks.hypervisor.cidr", nets.hypervisor),
            ("spec.networks.cluster.cidr", nets.cluster),
            ("spec.kubernetes.podCIDR", k.pod),
            ("spec.kubernetes.serviceCIDR", k.service),
        ];
        for (i, (pa, a)) in ranges.iter().enumerate() {
            for (pb, b) in &ranges[i + 1..] {
                if let (Some(a), Some(b)) = (a, b)
                    && (a.contains(&b.network()) || b.contains(&a.network()))
                {
                    self.push(
                        Problem::new(*pb, format!("{b} overlaps {pa} ({a})"))
                            .hint("node, pod and service ranges must be disjoint"),
                    );
                }
            }
        }
    }
}

/// The typed cluster, once every section checked out.
fn resolve(
    file: &ClusterFile,
    nets: Nets,
    k: KubeParts,
    n: NodeParts,
    vip: Option<Ipv4Addr>,
) -> Cluster {
    let spec = &file.spec;
    let name = &file.metadata.name;
    // Every Option below is Some: a None pushed a problem above.
    let (
        Some(hypervisor),
        Some(cluster),
        Some(pod_cidr),
        Some(service_cidr),
        Some(cluster_dns),
        Some(version),
    ) = (
        nets.hypervisor,
        nets.cluster,
        k.pod,
        k.service,
        k.dns,
        k.version,
    )
    else {
        unreachable!("a missing value always records a problem")
    };
    let (bridge, lb_ip, nodes) = (nets.bridge, k.lb_ip, n.nodes);
    let nets = &spec.networks;
    let k = &spec.kubernetes;
    let first_controller = nodes
        .iter()
        .find(|n| n.role == Role::Controller)
        .map(|n| n.cluster_ip)
        .expect("checked above: at least one controller");
    // Absolute, because libvirt gets paths below it (disks, fw_cfg files, console logs, sockets).
    let work_dir =
        std::path::absolute(&spec.work_dir).unwrap_or_else(|_| PathBuf::from(&spec.work_dir));
    let ssh_key = if spec.ssh.private_key.is_empty() {
        work_dir.join(name).join("ssh").join("id_ed25519")
    } else {
        PathBuf::from(&spec.ssh.private_key)
    };
    let mut vms = Hypervisor::resolve(&spec.hypervisor, &work_dir, &work_dir.join(name));
    let hosts = Host::resolve_all(&spec.hypervisors, &vms);
    if let [one] = hosts.as_slice() {
        // One entry in spec.hypervisors is the hypervisor: every command uses it.
        vms.uri = one.uri.clone();
        vms.storage_pool = one.storage_pool.clone();
        vms.storage_dir = one.storage_dir.clone();
    }
    let mut resolved = file.clone();
    resolved.spec.networks.cluster.bridge = bridge.clone();
    if let Some(vip) = vip {
        resolved.spec.kubernetes.api_server_vip = vip.to_string();
    }
    Cluster {
        name: name.clone(),
        work_dir,
        nodes,
        networks: NetworksResolved {
            hypervisor_name: nets.hypervisor.name.clone(),
            hypervisor,
            cluster_name: nets.cluster.name.clone(),
            cluster,
            mode: nets.cluster.mode,
            bridge,
            bridge_port: nets.cluster.bridge_port.clone(),
            mtu: nets.cluster.mtu,
        },
        kubernetes: Kubernetes {
            version,
            pod_cidr,
            service_cidr,
            cluster_dns,
            cluster_domain: k.cluster_domain.clone(),
            api_server_lb_ip: lb_ip,
            api_server_vip: vip,
            api_server_ip: lb_ip.or(vip).unwrap_or(first_controller),
            api_server_port: k.api_server_port,
        },
        etcd: spec.etcd.clone(),
        pki: spec.pki.clone(),
        versions: ComponentVersions::resolve(&spec.versions),
        ssh_user: spec.ssh.user.clone(),
        ssh_port: spec.ssh.port,
        ssh_key,
        hypervisor: vms,
        hosts,
        artifacts: Artifacts::resolve(&spec.artifacts),
        controller_manager: spec.controller_manager.clone(),
        cni: nets.cni,
        containerd: spec.containerd.clone(),
        images: spec.images.iter().map(PathBuf::from).collect(),
        coredns_image: super::types::DEFAULT_COREDNS_IMAGE.to_string(),
        test_image: super::types::DEFAULT_TEST_IMAGE.to_string(),
        file: resolved,
    }
}
