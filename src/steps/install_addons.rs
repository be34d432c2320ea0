//! `install_addons` — what the cluster needs through the API once an API server answers: the
//! apiserver→kubelet RBAC (KTHW lab 08), RuntimeClasses `runc` and `kata`, CoreDNS at the
//! cluster DNS address (the original had none), and with `networks.cni: calico` calico's
//! version-pinned manifest with the pod CIDR and the cluster network's interface filled in.
//!
//! The manifests are written to `/etc/kubernetes/addons/` on the first controller (so `render`,
//! `plan` and the node show exactly what is applied); after that, the hypervisor applies them
//! with server-side apply as the cluster admin (no kubectl). Where the API server cannot run
//! (no kube-apiserver binary), the step says the objects were not applied.

use crate::engine::StepId;
use anyhow::{Context, Result};

use crate::artifacts::Provided;
use crate::engine::{Blob, Cx, Desired, Fact, FactQuery, Step};
use crate::render;
use crate::spec::{Cluster, Cni, Node};

pub struct InstallAddons;

pub const DIR: &str = "/etc/kubernetes/addons";

/// Fill calico's manifest: the IPv4 pool = the pod CIDR (upstream leaves it commented out and
/// defaults to 192.168.0.0/16), and the node address taken from the cluster network (the VMs
/// have two NICs).
pub fn patch_calico(text: &str, cluster: &Cluster) -> Result<String> {
    let pool =
        "            # - name: CALICO_IPV4POOL_CIDR\n            #   value: \"192.168.0.0/16\"\n";
    anyhow::ensure!(
        text.contains(pool),
        "the calico manifest has no CALICO_IPV4POOL_CIDR block to fill (not calico.yaml of a 3.2x/3.3x release?)"
    );
    let auto = "            - name: IP\n              value: \"autodetect\"\n";
    anyhow::ensure!(
        text.contains(auto),
        "the calico manifest has no IP=autodetect setting to extend"
    );
    Ok(text
        .replace(
            pool,
            &format!(
                "            - name: CALICO_IPV4POOL_CIDR\n              value: \"{}\"\n",
                cluster.kubernetes.pod_cidr
            ),
        )
        .replace(
            auto,
            &format!(
                "{auto}            - name: IP_AUTODETECTION_METHOD\n              value: \"cidr={}\"\n",
                cluster.networks.cluster
            ),
        ))
}

/// Where kata is containerd's default runtime, calico's own pods (calico-node and
/// calico-kube-controllers) must run under runc: they need the host's network and kernel.
/// Every workload's pod template gets `runtimeClassName: runc`; other objects are kept as they are.
pub fn calico_under_runc(text: &str) -> Result<String> {
    let mut out = String::new();
    for mut obj in crate::kubeapi::documents(text)? {
        if matches!(
            obj["kind"].as_str(),
            Some("DaemonSet" | "Deployment" | "StatefulSet")
        ) {
            obj["spec"]["template"]["spec"]["runtimeClassName"] = serde_json::json!("runc");
        }
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&obj).context("calico manifest back to YAML")?);
    }
    Ok(out)
}

/// (file name, manifest) of every addon, in apply order.
pub fn manifests(cx: &Cx) -> Result<Vec<(String, String)>> {
    let c = &cx.cluster;
    let mut out = vec![
        (
            "10-apiserver-to-kubelet.yaml".to_string(),
            render::render(
                "controller/kube-apiserver-to-kubelet.yaml.j2",
                &serde_json::json!({ "user": "kube-apiserver-kubelet-client" }),
            )?,
        ),
        (
            "20-runtimeclasses.yaml".to_string(),
            render::render("addons/runtimeclasses.yaml.j2", &())?,
        ),
    ];
    if c.cni == Cni::Calico
        && let Some(Provided::Files { files, .. }) = cx.inputs.artifact("calico")
        && let Some(f) = files.first()
    {
        let text =
            String::from_utf8(f.blob.data()?.to_vec()).context("calico manifest is not UTF-8")?;
        let patched = patch_calico(&text, c)?;
        let patched = match c.containerd.default_runtime {
            // The seed's rule: calico cannot run under kata.
            crate::spec::Runtime::Kata => calico_under_runc(&patched)?,
            crate::spec::Runtime::Runc => patched,
        };
        out.push(("30-calico.yaml".into(), patched));
    }
    out.push((
        "40-coredns.yaml".to_string(),
        render::render(
            "addons/coredns.yaml.j2",
            &serde_json::json!({
                "cluster_domain": c.kubernetes.cluster_domain,
                "cluster_dns": c.kubernetes.cluster_dns.to_string(),
                "image": cx.cluster.coredns_image,
                // Fixed (not per worker count), so adding a worker does not touch CoreDNS.
                "replicas": 2,
            }),
        )?,
    ));
    Ok(out)
}

/// Why the addons cannot be applied in this run, if they cannot: no API server binary, or
/// (read from the controller) kube-apiserver not running there.
fn not_applicable(cx: &Cx, node: &Node) -> Result<Option<String>> {
    if cx.cluster.workers().next().is_none() {
        return Ok(Some("the cluster has no workers".into()));
    }
    if let Some(reason) = cx
        .inputs
        .artifact("kube-apiserver")
        .and_then(Provided::unavailable)
    {
        return Ok(Some(format!(
            "kube-apiserver is not started (no binary: {reason})"
        )));
    }
    if !cx.hosts.contains_key(&node.name) {
        return Ok(Some("no connection to the controller (render)".into()));
    }
    // Read once per step: `desired` and `verify` both ask.
    Ok(cx
        .fact_of(&apiserver_active(node))?
        .why_not()
        .map(str::to_string))
}

/// Does kube-apiserver run on `node` (and if not, why)?
fn apiserver_active(node: &Node) -> FactQuery {
    FactQuery {
        key: format!("apiserver-active:{}", node.name),
        node: node.name.clone(),
        cmd: crate::host::Cmd::new(["systemctl", "is-active", "kube-apiserver.service"]),
        read: |ok, out| {
            Fact::check(ok, || {
                format!("kube-apiserver is not running ({})", out.trim())
            })
        },
    }
}

impl Step for InstallAddons {
    fn id(&self) -> StepId {
        StepId::InstallAddons
    }

    fn artifacts(&self, cluster: &Cluster) -> Vec<&'static str> {
        match cluster.cni {
            crate::spec::Cni::Calico => vec!["calico"],
            crate::spec::Cni::Bridge => Vec::new(),
        }
    }

    fn targets<'c>(&self, cluster: &'c Cluster) -> Vec<&'c Node> {
        cluster.controllers().take(1).collect()
    }

    fn facts(&self, cx: &Cx, node: &Node) -> Vec<FactQuery> {
        if cx.hosts.contains_key(&node.name) {
            vec![apiserver_active(node)]
        } else {
            Vec::new()
        }
    }

    fn desired(&self, cx: &Cx, node: &Node) -> Result<Desired> {
        let mut want = Desired::default();
        want.dir("/etc/kubernetes", 0o755).dir(DIR, 0o755);
        for (name, text) in manifests(cx)? {
            want.file(&format!("{DIR}/{name}"), Blob::new(text), 0o644, &[]);
        }
        if cx.cluster.cni == Cni::Calico
            && let Some(reason) = cx.inputs.artifact("calico").and_then(Provided::unavailable)
        {
            want.note("calico", format!("manifest not available: {reason}"));
        }
        if let Some(why) = not_applicable(cx, node)? {
            want.note("addons", format!("not applied through the API: {why}"));
        }
        Ok(want)
    }

    fn verify_unchanged(&self) -> bool {
        true
    }

    /// Apply every manifest through the API (server-side apply), once the API server is ready.
    fn verify(&self, cx: &Cx, node: &Node) -> Result<()> {
        if not_applicable(cx, node)?.is_some() {
            return Ok(());
        }
        let admin = cx.inputs.pki("admin.kubeconfig")?;
        let client =
            crate::kubeapi::Client::from_kubeconfig(&String::from_utf8_lossy(admin.data()?), None)?;
        client.wait_ready(std::time::Duration::from_secs(180))?;
        for (name, text) in manifests(cx)? {
            for obj in crate::kubeapi::documents(&text)? {
                client
                    .apply(&obj)
                    .with_context(|| format!("applying {name}"))?;
            }
        }
        tracing::info!(server = %client.server, "addons applied");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    /// The two places of calico.yaml (v3.30.5, calico-node's env) the patch fills, verbatim.
    const SNIPPET: &str = "            # Auto-detect the BGP IP address.\n            - name: IP\n              value: \"autodetect\"\n            # Enable IPIP\n            - name: CALICO_IPV4POOL_IPIP\n              value: \"Always\"\n            # The default IPv4 pool to create on startup if none exists. Pod IPs will be\n            # chosen from this range. Changing this value after installation will have\n            # no effect. This should fall within `--cluster-cidr`.\n            # - name: CALICO_IPV4POOL_CIDR\n            #   value: \"192.168.0.0/16\"\n";

    #[test]
    fn calico_pods_run_under_runc() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: calico-config, namespace: kube-system}\ndata: {a: b}\n---\napiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: calico-node, namespace: kube-system}\nspec:\n  template:\n    spec:\n      hostNetwork: true\n      containers: [{name: calico-node, image: x}]\n";
        let out = super::calico_under_runc(text).unwrap();
        let docs = crate::kubeapi::documents(&out).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0]["data"]["a"], "b", "the ConfigMap is kept");
        assert!(docs[0]["spec"].is_null());
        assert_eq!(
            docs[1]["spec"]["template"]["spec"]["runtimeClassName"],
            "runc"
        );
        assert_eq!(docs[1]["spec"]["template"]["spec"]["hostNetwork"], true);
    }

    #[test]
    fn calico_gets_the_pod_cidr_and_the_cluster_network() {
        let d = std::env::temp_dir();
        let ov = crate::spec::Overrides {
            work_dir: Some(d.display().to_string()),
            ..Default::default()
        };
        let c = crate::spec::resolve(None, &ov, &|_| None).unwrap().0;
        let out = super::patch_calico(SNIPPET, &c).unwrap();
        assert!(
            out.contains(
                "            - name: CALICO_IPV4POOL_CIDR\n              value: \"10.200.0.0/16\"\n"
            ),
            "{out}"
        );
        assert!(
            out.contains("            - name: IP_AUTODETECTION_METHOD\n              value: \"cidr=192.168.24.0/24\"\n"),
            "{out}"
        );
        assert!(!out.contains("192.168.0.0/16"));
        assert!(
            super::patch_calico("kind: DaemonSet\n", &c).is_err(),
            "an unknown manifest is refused"
        );
    }
}
