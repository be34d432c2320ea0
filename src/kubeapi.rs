//! A small Kubernetes API client for what kubicluster itself must do through the API (no
//! kubectl): wait for `/readyz`, server-side apply of manifests (RBAC, RuntimeClasses,
//! CoreDNS, calico), read objects (nodes), delete a Node. It authenticates with a kubeconfig's
//! embedded client certificate (the admin one) and trusts only that kubeconfig's CA.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use ureq::tls::{ClientCert, PemItem, RootCerts, TlsConfig};

use crate::pki::kubeconfig::Kubeconfig;

pub mod stream;

pub struct Client {
    agent: ureq::Agent,
    pub server: String,
    tls: stream::Tls,
}

fn pem_items(pem: &[u8]) -> Result<Vec<PemItem<'static>>> {
    ureq::tls::parse_pem(pem)
        .map(|i| i.map_err(|e| anyhow!("PEM: {e}")))
        .collect()
}

/// The certificates of a PEM text.
pub fn pem_certs(pem: &[u8]) -> Result<Vec<ureq::tls::Certificate<'static>>> {
    Ok(pem_items(pem)?
        .into_iter()
        .filter_map(|i| match i {
            PemItem::Certificate(c) => Some(c),
            _ => None,
        })
        .collect())
}

/// A Node's `Ready` condition when it is `True`.
fn ready_condition(node: &serde_json::Value) -> Option<&serde_json::Value> {
    node["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Does a Node object report `Ready=True`?
pub fn node_ready(node: &serde_json::Value) -> bool {
    ready_condition(node).is_some()
}

/// Does a Node report `Ready=True` from a heartbeat at or after `since` (a kubelet that posted
/// since then, not a status left over from before its VM stopped)?
pub fn node_ready_since(node: &serde_json::Value, since: time::OffsetDateTime) -> bool {
    ready_condition(node)
        .and_then(|c| c["lastHeartbeatTime"].as_str())
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .is_some_and(|t| t >= since)
}

/// Where time runs out for a call when the caller sets none.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

impl Client {
    /// From the admin kubeconfig `cnc` wrote for `cluster`; `None` if there is none yet.
    pub fn admin(cluster: &crate::spec::Cluster) -> Result<Option<Client>> {
        let path = cluster.admin_kubeconfig();
        match crate::fsutil::read_optional(&path)? {
            Some(b) => Ok(Some(Client::from_kubeconfig(
                &String::from_utf8_lossy(&b),
                None,
            )?)),
            None => Ok(None),
        }
    }

    /// From a kubeconfig's text; `server` overrides its server URL.
    pub fn from_kubeconfig(text: &str, server: Option<&str>) -> Result<Client> {
        let kc = Kubeconfig::from_yaml(text).map_err(|e| anyhow!("kubeconfig: {e}"))?;
        let cluster = kc.clusters.first().context("kubeconfig has no cluster")?;
        let user = kc.users.first().context("kubeconfig has no user")?;
        let b64 = |s: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .context("kubeconfig: bad base64")
        };
        let stream_tls = stream::Tls {
            ca_pem: b64(&cluster.cluster.certificate_authority_data)?,
            cert_pem: b64(&user.user.client_certificate_data)?,
            key_pem: b64(&user.user.client_key_data)?,
        };
        let roots = pem_certs(&stream_tls.ca_pem)?;
        let certs = pem_certs(&stream_tls.cert_pem)?;
        let key = pem_items(&stream_tls.key_pem)?
            .into_iter()
            .find_map(|i| match i {
                PemItem::PrivateKey(k) => Some(k),
                _ => None,
            })
            .context("kubeconfig: no client key")?;
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::new_with_certs(&roots))
            .client_cert(Some(ClientCert::new_with_certs(&certs, key)))
            .build();
        let agent = crate::net::agent(
            ureq::Agent::config_builder()
                .tls_config(tls)
                .http_status_as_error(false)
                .timeout_global(Some(CALL_TIMEOUT))
                .build(),
        );
        Ok(Client {
            agent,
            server: server
                .unwrap_or(&cluster.cluster.server)
                .trim_end_matches('/')
                .to_string(),
            tls: stream_tls,
        })
    }

    /// Run `command` in a container, through the API (as `kubectl exec`).
    pub fn exec(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
        command: &[&str],
    ) -> Result<stream::ExecOutput> {
        stream::exec(
            &self.server,
            &self.tls,
            ns,
            pod,
            container,
            command,
            CALL_TIMEOUT,
        )
    }

    /// One request to a pod's port through the API (as `kubectl port-forward`); the answer.
    pub fn port_forward(&self, ns: &str, pod: &str, port: u16, request: &[u8]) -> Result<Vec<u8>> {
        stream::port_forward(
            &self.server,
            &self.tls,
            ns,
            pod,
            port,
            request,
            CALL_TIMEOUT,
        )
    }

    /// (status, body) of a GET.
    pub fn get(&self, path: &str) -> Result<(u16, String)> {
        self.get_with_timeout(path, CALL_TIMEOUT)
    }

    /// A GET that gives up after `timeout` (status checks must not hang on a dead server).
    pub fn get_with_timeout(&self, path: &str, timeout: Duration) -> Result<(u16, String)> {
        let url = format!("{}{path}", self.server);
        let mut r = self
            .agent
            .get(&url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .call()
            .with_context(|| format!("GET {url}"))?;
        let status = r.status().as_u16();
        Ok((status, r.body_mut().read_to_string().unwrap_or_default()))
    }

    /// Is the API server ready (`/readyz` answers 200)?
    pub fn ready(&self) -> Result<()> {
        match self.get("/readyz")? {
            (200, _) => Ok(()),
            (s, body) => bail!("/readyz answered {s}: {}", body.trim()),
        }
    }

    /// `/readyz` in a few words, for `status`: "ready", "not ready: HTTP 500, failing etcd …"
    /// (the failing checks) or "no answer: …" (why), within `timeout`.
    pub fn readiness(&self, timeout: Duration) -> String {
        match self.get_with_timeout("/readyz?verbose", timeout) {
            Ok((200, _)) => "ready".into(),
            Ok((code, body)) => {
                let failed: Vec<&str> = failing_checks(&body)
                    .map(|l| l.split_whitespace().next().unwrap_or(l))
                    .collect();
                format!("not ready: HTTP {code}, failing {}", failed.join(" "))
            }
            Err(e) => match e.root_cause().to_string() {
                why if why.contains("timeout") => {
                    format!("no answer within {} s", timeout.as_secs_f32())
                }
                why => format!("no answer: {why}"),
            },
        }
    }

    /// Ready now, or — when the API server answers but is not ready (etcd slow for a moment
    /// after a start) — within `timeout`. One that does not answer at all is not waited for.
    pub fn ready_soon(&self, timeout: Duration) -> Result<()> {
        match self.get("/readyz")? {
            (200, _) => Ok(()),
            _ => self.wait_ready(timeout),
        }
    }

    /// Wait up to `timeout` for `/readyz`.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        crate::retry::until(timeout, Duration::from_secs(2), || Ok(self.ready()?)).map_err(
            |e: anyhow::Error| {
                e.context(format!(
                    "the API server at {} is not ready after {} s",
                    self.server,
                    timeout.as_secs()
                ))
            },
        )
    }

    /// Server-side apply of one object (field manager `kubicluster`, conflicts forced).
    pub fn apply(&self, obj: &serde_json::Value) -> Result<()> {
        let path = object_path(obj)?;
        let url = format!("{}{path}?fieldManager=kubicluster&force=true", self.server);
        let body = serde_json::to_vec(obj)?;
        let mut r = self
            .agent
            .patch(&url)
            .header("Content-Type", "application/apply-patch+yaml")
            .send(&body[..])
            .with_context(|| format!("PATCH {url}"))?;
        let status = r.status().as_u16();
        if !(200..300).contains(&status) {
            let text = r.body_mut().read_to_string().unwrap_or_default();
            bail!("apply {path}: HTTP {status}: {}", message(&text));
        }
        Ok(())
    }

    /// POST or PATCH (merge patch) a JSON body; (status, body).
    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<(u16, String)> {
        let url = format!("{}{path}", self.server);
        let data = serde_json::to_vec(body)?;
        let req = match method {
            "POST" => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json"),
            _ => self
                .agent
                .patch(&url)
                .header("Content-Type", "application/merge-patch+json"),
        };
        let mut r = req
            .send(&data[..])
            .with_context(|| format!("{method} {url}"))?;
        let status = r.status().as_u16();
        Ok((status, r.body_mut().read_to_string().unwrap_or_default()))
    }

    /// Drain `node` the way `kubectl drain` does: cordon, evict every pod that is not a
    /// DaemonSet's or a mirror pod, wait (up to `timeout`) until they are gone. Returns how many
    /// pods were evicted.
    pub fn drain(&self, node: &str, timeout: Duration) -> Result<usize> {
        let (s, b) = self.send(
            "PATCH",
            &format!("/api/v1/nodes/{node}"),
            &serde_json::json!({"spec": {"unschedulable": true}}),
        )?;
        if s == 404 {
            return Ok(0);
        }
        anyhow::ensure!(
            (200..300).contains(&s),
            "cordon {node}: HTTP {s}: {}",
            message(&b)
        );
        let list = format!("/api/v1/pods?fieldSelector=spec.nodeName%3D{node}");
        let evictable = |body: &str| -> Vec<(String, String)> {
            let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
            v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| {
                    let daemon = p["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|o| o.iter().any(|r| r["kind"] == "DaemonSet"));
                    let mirror =
                        p["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string();
                    !daemon && !mirror
                })
                .filter_map(|p| {
                    Some((
                        p["metadata"]["namespace"].as_str()?.to_string(),
                        p["metadata"]["name"].as_str()?.to_string(),
                    ))
                })
                .collect()
        };
        let (_, body) = self.get(&list)?;
        let pods = evictable(&body);
        let start = Instant::now();
        for (ns, name) in &pods {
            loop {
                let (s, b) = self.send(
                    "POST",
                    &format!("/api/v1/namespaces/{ns}/pods/{name}/eviction"),
                    &serde_json::json!({
                        "apiVersion": "policy/v1", "kind": "Eviction",
                        "metadata": {"name": name, "namespace": ns}
                    }),
                )?;
                let status: serde_json::Value = serde_json::from_str(&b).unwrap_or_default();
                let terminating = status["details"]["causes"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["reason"] == "NamespaceTerminating"));
                match s {
                    200..300 | 404 => break,
                    // Its namespace is being deleted (and the pod with it): delete it, as
                    // `kubectl drain` does, since an eviction cannot be created there.
                    403 if terminating => {
                        self.delete(&format!("/api/v1/namespaces/{ns}/pods/{name}"))?;
                        break;
                    }
                    // A PodDisruptionBudget says not now: try again, as `kubectl drain` does.
                    429 if start.elapsed() < timeout => {
                        std::thread::sleep(Duration::from_secs(5));
                    }
                    _ => bail!("evict {ns}/{name}: HTTP {s}: {}", message(&b)),
                }
            }
        }
        while !pods.is_empty() {
            let (_, body) = self.get(&list)?;
            if evictable(&body).is_empty() {
                break;
            }
            anyhow::ensure!(
                start.elapsed() < timeout,
                "pods on {node} are still terminating after {} s",
                timeout.as_secs()
            );
            std::thread::sleep(Duration::from_secs(2));
        }
        Ok(pods.len())
    }

    /// The release the API server runs (`/version`'s `gitVersion`, without a build suffix).
    pub fn version(&self) -> Result<crate::spec::Version> {
        let (status, body) = self.get("/version")?;
        anyhow::ensure!(status == 200, "/version answered HTTP {status}");
        let v: serde_json::Value = serde_json::from_str(&body)?;
        release_of(v["gitVersion"].as_str().unwrap_or_default())
    }

    /// Set (or with `None` remove) an annotation of Node `node`.
    pub fn annotate_node(&self, node: &str, key: &str, value: Option<&str>) -> Result<()> {
        let (s, b) = self.send(
            "PATCH",
            &format!("/api/v1/nodes/{node}"),
            &serde_json::json!({"metadata": {"annotations": {key: value}}}),
        )?;
        anyhow::ensure!(
            (200..300).contains(&s),
            "annotate {node}: HTTP {s}: {}",
            message(&b)
        );
        Ok(())
    }

    /// Uncordon `node` and remove its annotation `key`, only if it carries that annotation
    /// (what kubicluster cordoned; a node the user cordoned stays so). Whether it did.
    pub fn uncordon_if_annotated(&self, node: &str, key: &str) -> Result<bool> {
        let path = format!("/api/v1/nodes/{node}");
        let (s, b) = self.get(&path)?;
        anyhow::ensure!(s == 200, "GET {path}: HTTP {s}: {}", message(&b));
        let v: serde_json::Value = serde_json::from_str(&b)?;
        if !v["metadata"]["annotations"][key].is_string() {
            return Ok(false);
        }
        let (s, b) = self.send(
            "PATCH",
            &path,
            &serde_json::json!({
                "metadata": {"annotations": {key: null}},
                "spec": {"unschedulable": null}
            }),
        )?;
        anyhow::ensure!(
            (200..300).contains(&s),
            "uncordon {node}: HTTP {s}: {}",
            message(&b)
        );
        Ok(true)
    }

    /// DELETE; an object already gone is fine.
    pub fn delete(&self, path: &str) -> Result<()> {
        let url = format!("{}{path}", self.server);
        let mut r = self
            .agent
            .delete(&url)
            .call()
            .with_context(|| format!("DELETE {url}"))?;
        let status = r.status().as_u16();
        if status != 404 && !(200..300).contains(&status) {
            let text = r.body_mut().read_to_string().unwrap_or_default();
            bail!("delete {path}: HTTP {status}: {}", message(&text));
        }
        Ok(())
    }
}

/// The failing checks of a `/readyz?verbose` (or `/livez?verbose`) answer, each as the server
/// wrote it without its `[-]` ("etcd failed: reason withheld").
pub fn failing_checks(verbose: &str) -> impl Iterator<Item = &str> {
    verbose.lines().filter_map(|l| l.strip_prefix("[-]"))
}

/// `v1.37.2` (a build may add `-rc.0` or `+abc`): the release it is.
pub fn release_of(git_version: &str) -> Result<crate::spec::Version> {
    let release = git_version.split(['-', '+']).next().unwrap_or_default();
    release
        .parse()
        .map_err(|e: String| anyhow!("gitVersion {git_version:?}: {e}"))
}

/// GET `url` (a component's `/healthz` on its self-signed serving cert: not verified, as
/// kubeadm does) until it answers 200 `ok` or `timeout` passes.
pub fn wait_healthz(url: &str, timeout: Duration) -> Result<()> {
    let agent = crate::net::agent(
        ureq::Agent::config_builder()
            .tls_config(TlsConfig::builder().disable_verification(true).build())
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build(),
    );
    crate::retry::until(timeout, Duration::from_secs(2), || {
        match agent.get(url).call() {
            Ok(r) if r.status().as_u16() == 200 => Ok(()),
            Ok(mut r) => Err(format!(
                "HTTP {}: {}",
                r.status().as_u16(),
                r.body_mut().read_to_string().unwrap_or_default().trim()
            )
            .into()),
            Err(e) => Err(e.to_string().into()),
        }
    })
    .map_err(|last| anyhow::anyhow!("{url} is not healthy after {} s: {last}", timeout.as_secs()))
}

/// The HTTP status of a request made with no client certificate (the server's certificate is
/// checked against `ca_pem`): what an anonymous caller gets.
pub fn anonymous_status(url: &str, ca_pem: &[u8]) -> Result<u16> {
    let roots = pem_certs(ca_pem)?;
    let agent = crate::net::agent(
        ureq::Agent::config_builder()
            .tls_config(
                TlsConfig::builder()
                    .root_certs(RootCerts::new_with_certs(&roots))
                    .build(),
            )
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build(),
    );
    let r = agent
        .get(url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    Ok(r.status().as_u16())
}

/// A Status object's message, or the text.
fn message(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| text.trim().chars().take(300).collect())
}

/// Kinds that are not namespaced (of those kubicluster applies, and the common ones).
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "RuntimeClass",
    "PriorityClass",
    "StorageClass",
    "PersistentVolume",
    "APIService",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "IPPool",
    "FelixConfiguration",
    "BGPConfiguration",
    "ClusterInformation",
];

/// `Deployment` → `deployments`, `NetworkPolicy` → `networkpolicies`.
pub fn plural(kind: &str) -> String {
    let k = kind.to_lowercase();
    if k == "endpoints" {
        k
    } else if let Some(stem) = k.strip_suffix('y') {
        format!("{stem}ies")
    } else if k.ends_with('s') {
        format!("{k}es")
    } else {
        format!("{k}s")
    }
}

/// The REST path of an object: `/apis/apps/v1/namespaces/kube-system/deployments/coredns`.
pub fn object_path(obj: &serde_json::Value) -> Result<String> {
    let api = obj["apiVersion"]
        .as_str()
        .context("object without apiVersion")?;
    let kind = obj["kind"].as_str().context("object without kind")?;
    let name = obj["metadata"]["name"]
        .as_str()
        .context("object without metadata.name")?;
    let base = if api.contains('/') {
        format!("/apis/{api}")
    } else {
        format!("/api/{api}")
    };
    let ns = if CLUSTER_SCOPED.contains(&kind) {
        String::new()
    } else {
        format!(
            "/namespaces/{}",
            obj["metadata"]["namespace"].as_str().unwrap_or("default")
        )
    };
    Ok(format!("{base}{ns}/{}/{name}", plural(kind)))
}

/// Split a multi-document YAML text into JSON objects (empty documents skipped; `List`s
/// flattened).
pub fn documents(text: &str) -> Result<Vec<serde_json::Value>> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let v = serde_json::Value::deserialize(doc).context("YAML document")?;
        if v.is_null() {
            continue;
        }
        if v["kind"] == "List" {
            out.extend(v["items"].as_array().cloned().unwrap_or_default());
        } else {
            out.push(v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
