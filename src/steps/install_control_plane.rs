//! `install_kubernetes_controllers` — KTHW lab 08 ("Bootstrapping the Kubernetes Control
//! Plane"): kube-apiserver, kube-controller-manager and kube-scheduler as systemd units, one flag
//! per line, flags valid for Kubernetes 1.30–1.33. Differences from KTHW: etcd over TLS with the
//! apiserver's own etcd client cert, `--service-cluster-ip-range` on the apiserver too (KTHW
//! forgets it), no `--runtime-config=api/all=true`, the front-proxy CA for aggregation, and the
//! cluster CA's private key stays on the hypervisor unless `controllerManager.csrSigning` is on.
//! Where a binary cannot be had and `--allow-missing-binaries` was given, its unit and configs
//! are installed but not enabled or started, and the report says so.

use crate::engine::StepId;
use anyhow::Result;

use crate::engine::{Blob, Cx, Desired, Step};
use crate::render;
use crate::spec::{Cluster, Node};

pub struct InstallControlPlane;

pub const COMPONENTS: [&str; 3] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];
const K: &str = "/var/lib/kubernetes";

#[derive(serde::Serialize)]
struct Ctx {
    cluster: String,
    ip: String,
    port: u16,
    etcd_servers: String,
    /// The first signs service-account tokens; every one is accepted.
    issuers: Vec<String>,
    service_cidr: String,
    pod_cidr: String,
    csr_signing: bool,
}

/// The service-account issuers: the API's address, and the first controller's where clients
/// reach the API elsewhere (a virtual IP or a load balancer added later): tokens issued before
/// the address changed stay valid until their pods get new ones.
fn issuers(c: &Cluster) -> Vec<String> {
    let k = &c.kubernetes;
    let mut out = vec![k.api_server_url()];
    if let Some(first) = c.controllers().next() {
        let direct = format!("https://{}:{}", first.cluster_ip, k.api_server_port);
        if !out.contains(&direct) {
            out.push(direct);
        }
    }
    out
}

impl Step for InstallControlPlane {
    fn id(&self) -> StepId {
        StepId::InstallKubernetesControllers
    }

    fn artifacts(&self, _cluster: &Cluster) -> Vec<&'static str> {
        COMPONENTS.to_vec()
    }

    fn targets<'c>(&self, cluster: &'c Cluster) -> Vec<&'c Node> {
        cluster.controllers().collect()
    }

    fn desired(&self, cx: &Cx, node: &Node) -> Result<Desired> {
        let c = &cx.cluster;
        let k = &c.kubernetes;
        const API: &str = "kube-apiserver.service";
        const KCM: &str = "kube-controller-manager.service";
        const SCHED: &str = "kube-scheduler.service";
        let sched = SCHED;
        let mut want = Desired::default();
        want.dir(K, 0o700)
            .dir("/etc/kubernetes", 0o755)
            .dir("/etc/kubernetes/config", 0o755)
            .dir("/var/log/kubernetes", 0o750);
        // Certificates: (file in certs_and_configs, units that read it).
        let public: &[(&str, &[&str])] = &[
            ("ca.pem", &[API, KCM]),
            ("kubernetes.pem", &[API]),
            ("service-accounts.pem", &[API]),
            ("etcd-ca.pem", &[API]),
            ("apiserver-etcd-client.pem", &[API]),
            ("apiserver-kubelet-client.pem", &[API]),
            ("front-proxy-ca.pem", &[API, KCM]),
            ("front-proxy-client.pem", &[API]),
        ];
        for (f, units) in public {
            want.file(&format!("{K}/{f}"), cx.inputs.pki(f)?, 0o600, units);
        }
        let mut secret: Vec<(&str, &[&str])> = vec![
            ("kubernetes-key.pem", &[API]),
            ("service-accounts-key.pem", &[API, KCM]),
            ("apiserver-etcd-client-key.pem", &[API]),
            ("apiserver-kubelet-client-key.pem", &[API]),
            ("front-proxy-client-key.pem", &[API]),
            ("encryption-config.yaml", &[API]),
            ("kube-controller-manager.kubeconfig", &[KCM]),
            ("kube-scheduler.kubeconfig", &[SCHED]),
        ];
        if c.controller_manager.csr_signing {
            secret.push(("ca-key.pem", &[KCM]));
        }
        for (f, units) in secret {
            want.secret(&format!("{K}/{f}"), cx.inputs.pki(f)?, units);
        }
        for (path, template) in [
            (
                "/etc/kubernetes/config/audit-policy.yaml",
                "controller/audit-policy.yaml.j2",
            ),
            (
                "/etc/kubernetes/config/admission.yaml",
                "controller/admission.yaml.j2",
            ),
        ] {
            want.file(
                path,
                Blob::new(render::render(template, &())?),
                0o600,
                &[API],
            );
        }
        want.file(
            "/etc/kubernetes/config/kube-scheduler.yaml",
            Blob::new(render::render("controller/kube-scheduler.yaml.j2", &())?),
            0o600,
            &[sched],
        );
        let etcd_servers: Vec<String> = c
            .controllers()
            .map(|m| super::install_etcd::client_url(c, m))
            .collect();
        let ctx = Ctx {
            cluster: c.name.clone(),
            ip: node.cluster_ip.to_string(),
            port: k.api_server_port,
            etcd_servers: etcd_servers.join(","),
            issuers: issuers(c),
            service_cidr: k.service_cidr.to_string(),
            pod_cidr: k.pod_cidr.to_string(),
            csr_signing: c.controller_manager.csr_signing,
        };
        for comp in COMPONENTS {
            let file = render::render(&format!("controller/{comp}.service.j2"), &ctx)?;
            super::binary_unit(&mut want, cx, comp, Blob::new(file));
        }
        Ok(want)
    }

    /// Where the control plane was started: the API server is ready (`/readyz`, which includes
    /// etcd) as the admin, and controller-manager and scheduler answer `/healthz`.
    fn verify(&self, cx: &Cx, node: &Node) -> Result<()> {
        let server = format!(
            "https://{}:{}",
            node.cluster_ip, cx.cluster.kubernetes.api_server_port
        );
        let Some(client) = super::admin_client_if_started(cx, &COMPONENTS, Some(&server))? else {
            return Ok(());
        };
        // Seconds on a real host; three API servers bootstrapping at once against a
        // three-member etcd on emulated CPUs took more than 180 s (their RBAC bootstrap).
        let timeout = std::time::Duration::from_secs(300);
        client.wait_ready(timeout)?;
        for (what, port) in [
            ("kube-controller-manager", 10257),
            ("kube-scheduler", 10259),
        ] {
            crate::kubeapi::wait_healthz(
                &format!("https://{}:{port}/healthz", node.cluster_ip),
                timeout,
            )
            .map_err(|e| {
                anyhow::anyhow!("{what}: {e:#}; see journalctl -u {what} on {}", node.name)
            })?;
        }
        Ok(())
    }
}
