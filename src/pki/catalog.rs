//! The certificate and kubeconfig catalog as data: what `cnc` must produce for a cluster.
//!
//! Mirrors Kubernetes the Hard Way's certificate lab and the original kubicluster's file names,
//! and improves on the original's single shared `kubernetes.pem` with kubeadm's layout: a separate
//! etcd CA (so a kubelet or admin cert cannot talk to etcd and bypass RBAC), per-controller etcd
//! server and peer certs, dedicated apiserver→etcd and apiserver→kubelet client certs, and a
//! front-proxy CA + client cert for the aggregation layer.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use crate::spec::Cluster;

/// The three CAs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Authority {
    /// Signs every Kubernetes API identity and serving cert (`ca.pem`, as in the original).
    Kubernetes,
    /// Signs only etcd server/peer certs and etcd clients.
    Etcd,
    /// Signs the apiserver's aggregation-layer client cert.
    FrontProxy,
}

impl Authority {
    pub const ALL: [Authority; 3] = [
        Authority::Kubernetes,
        Authority::Etcd,
        Authority::FrontProxy,
    ];

    /// File base name: `<base>.pem`, `<base>-key.pem`.
    pub fn file(self) -> &'static str {
        match self {
            Authority::Kubernetes => "ca",
            Authority::Etcd => "etcd-ca",
            Authority::FrontProxy => "front-proxy-ca",
        }
    }

    /// Subject CN (and O) of the CA certificate.
    pub fn common_name(self) -> &'static str {
        match self {
            // The original's CA subject (CN and O "Kubicluster").
            Authority::Kubernetes => "Kubicluster",
            Authority::Etcd => "etcd-ca",
            Authority::FrontProxy => "front-proxy-ca",
        }
    }
}

/// What a certificate may be used for (extended key usage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
    ServerAndClient,
    /// A signing key pair (the service-account key): no extended key usage.
    Signing,
}

/// Which part of the PKI a file belongs to; `cnc` can be limited to some groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    Ca,
    Encryption,
    ApiServer,
    Etcd,
    FrontProxy,
    SystemComponents,
    Admin,
    Workers,
    Calico,
}

impl Group {
    pub const ALL: [Group; 9] = [
        Group::Ca,
        Group::Encryption,
        Group::ApiServer,
        Group::Etcd,
        Group::FrontProxy,
        Group::SystemComponents,
        Group::Admin,
        Group::Workers,
        Group::Calico,
    ];
}

/// One leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    /// File base name: `<file>.pem` and `<file>-key.pem`.
    pub file: String,
    pub issuer: Authority,
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: BTreeSet<String>,
    pub ip_addresses: BTreeSet<IpAddr>,
    pub usage: Usage,
    pub group: Group,
    /// Who presents or reads this certificate (documentation and `cnc` output).
    pub used_by: String,
}

/// One kubeconfig: `<file>.kubeconfig` embedding `<cert>.pem`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeconfigSpec {
    pub file: String,
    pub cert: String,
    pub user: String,
    pub server: String,
    pub group: Group,
}

fn leaf(
    file: impl Into<String>,
    issuer: Authority,
    cn: impl Into<String>,
    org: Option<&str>,
    usage: Usage,
    group: Group,
    used_by: impl Into<String>,
) -> CertSpec {
    CertSpec {
        file: file.into(),
        issuer,
        common_name: cn.into(),
        organizations: org.map(|o| vec![o.to_string()]).unwrap_or_default(),
        dns_names: BTreeSet::new(),
        ip_addresses: BTreeSet::new(),
        usage,
        group,
        used_by: used_by.into(),
    }
}

fn with_sans<'a>(
    mut c: CertSpec,
    dns: impl IntoIterator<Item = &'a str>,
    ips: impl IntoIterator<Item = Ipv4Addr>,
) -> CertSpec {
    c.dns_names.extend(dns.into_iter().map(str::to_string));
    c.ip_addresses.extend(ips.into_iter().map(IpAddr::V4));
    c
}

/// Every leaf certificate the cluster needs, in a stable order.
pub fn certificates(cluster: &Cluster) -> Vec<CertSpec> {
    use Authority::*;
    use Group as G;
    use Usage::*;
    let k = &cluster.kubernetes;
    let domain = &k.cluster_domain;
    let svc_fqdn = format!("kubernetes.default.svc.{domain}");
    let loopback = Ipv4Addr::LOCALHOST;

    let mut apiserver_dns = vec![
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        &svc_fqdn,
    ];
    let mut apiserver_ips = vec![loopback, k.service_ip()];
    for c in cluster.controllers() {
        apiserver_dns.push(&c.name);
        apiserver_ips.extend([c.cluster_ip, c.hypervisor_ip]);
    }
    // The original forgot the load-balancer address.
    apiserver_ips.extend(k.api_server_lb_ip);
    apiserver_ips.extend(k.api_server_vip);

    let mut out = vec![
        with_sans(
            leaf(
                "kubernetes",
                Kubernetes,
                "kubernetes",
                Some("Kubicluster"),
                Server,
                G::ApiServer,
                "kube-apiserver (serving)",
            ),
            apiserver_dns,
            apiserver_ips,
        ),
        leaf(
            "service-accounts",
            Kubernetes,
            "service-accounts",
            Some("Kubicluster"),
            Signing,
            G::ApiServer,
            "kube-apiserver (verify, sign), kube-controller-manager (sign) service-account tokens",
        ),
        leaf(
            "apiserver-kubelet-client",
            Kubernetes,
            "kube-apiserver-kubelet-client",
            None,
            Client,
            G::ApiServer,
            "kube-apiserver → kubelet (logs, exec); bound to system:kubelet-api-admin",
        ),
        leaf(
            "apiserver-etcd-client",
            Etcd,
            "kube-apiserver-etcd-client",
            None,
            Client,
            G::Etcd,
            "kube-apiserver → etcd",
        ),
    ];
    for c in cluster.controllers() {
        for (kind, who) in [
            ("server", "etcd (client port)"),
            ("peer", "etcd (peer port)"),
        ] {
            out.push(with_sans(
                leaf(
                    format!("etcd-{kind}-{}", c.name),
                    Etcd,
                    c.name.clone(),
                    None,
                    ServerAndClient,
                    G::Etcd,
                    format!("{who} on {}", c.name),
                ),
                ["localhost", c.name.as_str()],
                [loopback, c.cluster_ip, c.hypervisor_ip],
            ));
        }
    }
    out.extend([
        leaf(
            "front-proxy-client",
            FrontProxy,
            "front-proxy-client",
            None,
            Client,
            G::FrontProxy,
            "kube-apiserver → aggregated API servers",
        ),
        leaf(
            "kube-controller-manager",
            Kubernetes,
            "system:kube-controller-manager",
            Some("system:kube-controller-manager"),
            Client,
            G::SystemComponents,
            "kube-controller-manager",
        ),
        leaf(
            "kube-scheduler",
            Kubernetes,
            "system:kube-scheduler",
            Some("system:kube-scheduler"),
            Client,
            G::SystemComponents,
            "kube-scheduler",
        ),
        leaf(
            "kube-proxy",
            Kubernetes,
            "system:kube-proxy",
            Some("system:node-proxier"),
            Client,
            G::SystemComponents,
            "kube-proxy on every worker",
        ),
        leaf(
            "admin",
            Kubernetes,
            "admin",
            Some("system:masters"),
            Client,
            G::Admin,
            "the cluster admin (kubectl)",
        ),
        leaf(
            "calico-cni",
            Kubernetes,
            "calico-cni",
            Some("Kubicluster"),
            Client,
            G::Calico,
            "the calico CNI plugin on every worker",
        ),
    ]);
    for w in cluster.workers() {
        out.push(with_sans(
            leaf(
                w.name.clone(),
                Kubernetes,
                format!("system:node:{}", w.name),
                Some("system:nodes"),
                ServerAndClient,
                G::Workers,
                format!("kubelet on {} (client and serving)", w.name),
            ),
            [w.name.as_str()],
            [w.cluster_ip, w.hypervisor_ip],
        ));
    }
    out
}

/// Every kubeconfig the cluster needs.
pub fn kubeconfigs(cluster: &Cluster) -> Vec<KubeconfigSpec> {
    let external = cluster.kubernetes.api_server_url();
    let local = format!("https://127.0.0.1:{}", cluster.kubernetes.api_server_port);
    let kc = |file: &str, cert: &str, user: &str, server: &str, group| KubeconfigSpec {
        file: format!("{file}.kubeconfig"),
        cert: cert.to_string(),
        user: user.to_string(),
        server: server.to_string(),
        group,
    };
    let mut out = vec![
        kc("admin", "admin", "admin", &external, Group::Admin),
        kc(
            "kube-controller-manager",
            "kube-controller-manager",
            "kube-controller-manager",
            &local,
            Group::SystemComponents,
        ),
        kc(
            "kube-scheduler",
            "kube-scheduler",
            "kube-scheduler",
            &local,
            Group::SystemComponents,
        ),
        kc(
            "kube-proxy",
            "kube-proxy",
            "kube-proxy",
            &external,
            Group::SystemComponents,
        ),
        kc(
            "calico-cni",
            "calico-cni",
            "calico-cni",
            &external,
            Group::Calico,
        ),
    ];
    for w in cluster.workers() {
        out.push(kc(
            &w.name,
            &w.name,
            &format!("system:node:{}", w.name),
            &external,
            Group::Workers,
        ));
    }
    out
}
