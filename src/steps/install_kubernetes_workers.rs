//! `install_kubernetes_workers` — KTHW lab 09's kubelet and kube-proxy: a KubeletConfiguration
//! (webhook authn/authz, the cluster CA as client CA, containerd's socket, cluster DNS and
//! domain, systemd cgroups, the worker's own serving/client cert) and a KubeProxyConfiguration
//! (iptables mode, the pod CIDR), each with its kubeconfig. The node registers under its name
//! with its cluster-network address; where kata works it carries `kubicluster.io/kata=true`.
//! Without binaries (`--allow-missing-binaries`) the units and configs are installed, not started.

use crate::engine::StepId;
use anyhow::Result;

use crate::engine::{Cx, Desired, Step};
use crate::render;
use crate::spec::{Cluster, Cni, Node};

pub struct InstallKubernetesWorkers;

pub const COMPONENTS: [&str; 2] = ["kubelet", "kube-proxy"];
const KUBELET: &str = "kubelet.service";
const PROXY: &str = "kube-proxy.service";

impl Step for InstallKubernetesWorkers {
    fn id(&self) -> StepId {
        StepId::InstallKubernetesWorkers
    }

    fn artifacts(&self, _cluster: &Cluster) -> Vec<&'static str> {
        COMPONENTS.to_vec()
    }

    fn targets<'c>(&self, cluster: &'c Cluster) -> Vec<&'c Node> {
        cluster.workers().collect()
    }

    fn facts(&self, cx: &Cx, node: &Node) -> Vec<crate::engine::FactQuery> {
        super::install_containerd::kata_facts(cx, node)
    }

    fn desired(&self, cx: &Cx, node: &Node) -> Result<Desired> {
        let c = &cx.cluster;
        let k = &c.kubernetes;
        let mut want = Desired::default();
        want.dir("/var/lib/kubelet", 0o700)
            .dir("/var/lib/kube-proxy", 0o700);
        let pki = |f: &str| cx.inputs.pki(f);
        want.file("/var/lib/kubelet/ca.pem", pki("ca.pem")?, 0o600, &[KUBELET]);
        want.file(
            "/var/lib/kubelet/kubelet.pem",
            pki(&format!("{}.pem", node.name))?,
            0o600,
            &[KUBELET],
        );
        want.secret(
            "/var/lib/kubelet/kubelet-key.pem",
            pki(&format!("{}-key.pem", node.name))?,
            &[KUBELET],
        );
        want.secret(
            "/var/lib/kubelet/kubeconfig",
            pki(&format!("{}.kubeconfig", node.name))?,
            &[KUBELET],
        );
        want.secret(
            "/var/lib/kube-proxy/kubeconfig",
            pki("kube-proxy.kubeconfig")?,
            &[PROXY],
        );
        let pod_cidr = match c.cni {
            Cni::Bridge => c.pod_subnet(node).map(|s| s.to_string()),
            Cni::Calico => None,
        };
        want.file(
            "/var/lib/kubelet/kubelet-config.yaml",
            crate::engine::Blob::new(render::render(
                "worker/kubelet-config.yaml.j2",
                &serde_json::json!({
                    "cluster_domain": k.cluster_domain,
                    "cluster_dns": k.cluster_dns.to_string(),
                    "pod_cidr": pod_cidr,
                }),
            )?),
            0o600,
            &[KUBELET],
        );
        want.file(
            "/var/lib/kube-proxy/kube-proxy-config.yaml",
            crate::engine::Blob::new(render::render(
                "worker/kube-proxy-config.yaml.j2",
                &serde_json::json!({
                    "pod_cidr": k.pod_cidr.to_string(),
                    "name": node.name,
                }),
            )?),
            0o600,
            &[PROXY],
        );
        let kata = super::install_containerd::kata_usable(cx, node)?.is_ok();
        for comp in COMPONENTS {
            let file = render::render(
                &format!("worker/{comp}.service.j2"),
                &serde_json::json!({
                    "cluster": c.name,
                    "bin_dir": super::bin_dir(cx, comp),
                    "name": node.name,
                    "ip": node.cluster_ip.to_string(),
                    "labels": if kata { "kubicluster.io/kata=true" } else { "" },
                }),
            )?;
            super::binary_unit(&mut want, cx, comp, crate::engine::Blob::new(file));
        }
        Ok(want)
    }

    /// Where kubelet and kube-proxy were started: the kubelet registered its Node through the
    /// API (its client certificate, the Node authorizer), and kube-proxy answers its healthz.
    /// Readiness (the pod network, the runtime) is `up`'s wait, after every node step.
    fn verify(&self, cx: &Cx, node: &Node) -> Result<()> {
        let Some(client) = super::admin_client_if_started(cx, &COMPONENTS, None)? else {
            return Ok(());
        };
        let timeout = std::time::Duration::from_secs(180);
        let path = format!("/api/v1/nodes/{}", node.name);
        crate::retry::until(timeout, std::time::Duration::from_secs(3), || {
            match client.get(&path) {
                Ok((200, _)) => Ok(()),
                Ok((s, body)) => Err(format!("HTTP {s}: {}", body.trim()).into()),
                Err(e) => Err(format!("{e:#}").into()),
            }
        })
        .map_err(|last| {
            anyhow::anyhow!(
                "the kubelet on {} did not register its Node within {} s ({last}); see `journalctl -u kubelet` there",
                node.name,
                timeout.as_secs()
            )
        })?;
        crate::kubeapi::wait_healthz(
            &format!("http://{}:10256/healthz", node.cluster_ip),
            timeout,
        )
        .map_err(|e| anyhow::anyhow!("kube-proxy on {}: {e:#}", node.name))
    }
}
