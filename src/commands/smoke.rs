//! `kubicluster test`: KTHW's smoke checks (lab 12) through the API as the admin, each printed as
//! PASS/FAIL/SKIP with its reason: the API is ready; every worker is Ready; each kubelet answers an
//! anonymous request with 401 (over TLS checked against the cluster CA); a pod runs under runc, and
//! one under kata where a worker can run it; a web pod on every worker, and a pod on one worker
//! fetching from a pod on another (the pod network across nodes); a ClusterIP Service reached by
//! its DNS name (CoreDNS + kube-proxy); a container's logs read through the API (apiserver →
//! kubelet: its serving certificate and the RBAC); a command run with `exec` and a pod's port
//! reached with `port-forward` through the API (WebSocket streams, as kubectl does); the
//! `kubernetes` service resolved through CoreDNS; a NodePort answering from the hypervisor; a
//! Secret stored encrypted in etcd (read back through etcdctl on a controller: the value starts
//! with `k8s:enc:`).
//! Objects it creates live in the namespace `kubicluster-smoke`, deleted at the end.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::{Ctx, reach_nodes};
use crate::cli::SmokeArgs;
use crate::error::Failure;
use crate::host::Host;
use crate::kubeapi::Client;
use crate::retry::NotYet;
use crate::spec::Cluster;

const NS: &str = "kubicluster-smoke";

#[derive(Debug, PartialEq)]
pub enum Outcome {
    Pass(String),
    Fail(String),
    Skip(String),
}

/// Is an etcd value of a Secret encrypted by the API server (and with which provider)?
pub fn encrypted_prefix(value: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&value[..value.len().min(64)]).into_owned();
    let rest = text.strip_prefix("k8s:enc:")?;
    let mut parts = rest.split(':');
    let provider = parts.next()?.to_string();
    let version = parts.next()?;
    Some(format!("k8s:enc:{provider}:{version}"))
}

fn wait_pod(c: &Client, name: &str, want: &[&str], timeout: Duration) -> Result<String> {
    crate::retry::until(timeout, Duration::from_secs(2), || {
        let (s, body) = c
            .get(&format!("/api/v1/namespaces/{NS}/pods/{name}"))
            .map_err(NotYet::Stop)?;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let phase = v["status"]["phase"].as_str().unwrap_or("").to_string();
        if s == 200 && want.contains(&phase.as_str()) {
            return Ok(phase);
        }
        if phase == "Failed" {
            let log = logs(c, name).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(3).collect();
            return Err(NotYet::Stop(anyhow::anyhow!(
                "pod {name} failed{}",
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(
                        ": {}",
                        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                    )
                }
            )));
        }
        let why = v["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find_map(|c| c["message"].as_str()))
            .unwrap_or("no condition message");
        Err(anyhow::anyhow!(
            "pod {name} is {} after {} s: {why}",
            if phase.is_empty() {
                "not created"
            } else {
                &phase
            },
            timeout.as_secs()
        )
        .into())
    })
}

fn pod(name: &str, image: &str, runtime: &str, command: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": name}},
        "spec": {
            "runtimeClassName": runtime,
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": image, "command": ["sh", "-c", command]}]
        }
    })
}

/// A pod pinned to `node`, labelled `app`.
fn pod_on(name: &str, app: &str, node: &str, image: &str, command: &str) -> serde_json::Value {
    let mut p = pod(name, image, "runc", command);
    p["metadata"]["labels"]["app"] = json!(app);
    p["spec"]["nodeSelector"] = json!({"kubernetes.io/hostname": node});
    p
}

/// A web server answering `kubicluster-smoke <node>` on port 8080.
fn web_command(node: &str) -> String {
    format!(
        "mkdir -p /www && echo kubicluster-smoke {node} > /www/index.html && httpd -f -p 8080 -h /www"
    )
}

/// The namespace anew: wait for a previous run's to be gone, create it, wait for its default
/// ServiceAccount (made by the controller-manager; pods are refused before it exists).
fn fresh_namespace(c: &Client) -> Result<()> {
    let ns = format!("/api/v1/namespaces/{NS}");
    crate::retry::until(Duration::from_secs(180), Duration::from_secs(2), || {
        if c.get(&ns).map_err(NotYet::Stop)?.0 != 200 {
            return Ok(());
        }
        let _ = c.delete(&ns);
        Err(
            anyhow::anyhow!("namespace {NS} from an earlier run is still terminating after 180 s")
                .into(),
        )
    })?;
    c.apply(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}))?;
    crate::retry::until(Duration::from_secs(60), Duration::from_secs(1), || match c
        .get(&format!("{ns}/serviceaccounts/default"))
        .map_err(NotYet::Stop)?
        .0
    {
        200 => Ok(()),
        _ => Err(anyhow::anyhow!(
            "no ServiceAccount default in {NS} (is kube-controller-manager running?)"
        )
        .into()),
    })
}

/// A shell command that fetches `http://host:port/` until the answer has `kubicluster-smoke`
/// (up to 6 tries, 5 s apart: a new Service reaches kube-proxy's rules after a moment) and
/// prints it. busybox's nc, not its wget: the static busybox's wget crashes looking up the
/// "http" service.
fn http_get(host: &str, port: u16) -> String {
    format!(
        "for i in 1 2 3 4 5 6; do a=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 10 {host} {port}); \
         case \"$a\" in *kubicluster-smoke*) echo \"$a\"; exit 0;; esac; sleep 5; done; \
         echo \"no answer from {host}:{port}: $a\"; exit 1"
    )
}

/// Wait until the kube-dns Service has a ready CoreDNS endpoint (its readiness probe passed);
/// how many are ready.
fn wait_dns_ready(c: &Client, timeout: Duration) -> Result<usize> {
    let path = "/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices\
                ?labelSelector=kubernetes.io%2Fservice-name%3Dkube-dns";
    crate::retry::until(timeout, Duration::from_secs(2), || {
        let (s, body) = c.get(path).map_err(NotYet::Stop)?;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let ready = v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|slice| slice["endpoints"].as_array().into_iter().flatten())
            .filter(|e| e["conditions"]["ready"] == true)
            .count();
        if s == 200 && ready > 0 {
            return Ok(ready);
        }
        Err(anyhow::anyhow!(
            "no CoreDNS endpoint is ready after {} s (HTTP {s}; see `kubicluster status` and the \
             coredns pods in kube-system)",
            timeout.as_secs()
        )
        .into())
    })
}

/// A pod's log, through the API (the apiserver fetches it from the kubelet).
fn logs(c: &Client, name: &str) -> Result<String> {
    let (s, body) = c.get(&format!("/api/v1/namespaces/{NS}/pods/{name}/log"))?;
    anyhow::ensure!(s == 200, "GET the log of {name}: HTTP {s}: {}", body.trim());
    Ok(body)
}

fn outcome<T>(r: Result<T>, pass: impl FnOnce(T) -> String) -> Outcome {
    match r {
        Ok(v) => Outcome::Pass(pass(v)),
        Err(e) => Outcome::Fail(format!("{e:#}")),
    }
}

fn checks(
    c: &Client,
    cluster: &Cluster,
    image: &str,
    out: &mut Vec<(String, Outcome)>,
) -> Result<()> {
    // Nodes.
    let (_, body) = c.get("/api/v1/nodes")?;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let items = v["items"].as_array().cloned().unwrap_or_default();
    let ready = |name: &str| {
        items
            .iter()
            .any(|n| n["metadata"]["name"] == name && crate::kubeapi::node_ready(n))
    };
    let not_ready: Vec<String> = cluster
        .workers()
        .filter(|w| !ready(&w.name))
        .map(|w| w.name.clone())
        .collect();
    out.push((
        "every worker is Ready".into(),
        if not_ready.is_empty() {
            Outcome::Pass(format!("{} worker(s)", cluster.workers().count()))
        } else {
            Outcome::Fail(format!("not Ready: {}", not_ready.join(", ")))
        },
    ));
    // The kubelets' own API: no anonymous access (authentication.anonymous off, webhook
    // authorization), and their serving certificates are the cluster CA's, for their IP.
    let anonymous = (|| -> Result<String> {
        let ca = std::fs::read(cluster.certs_dir().join("ca.pem")).context("ca.pem")?;
        let mut seen = Vec::new();
        for w in cluster.workers() {
            let url = format!("https://{}:10250/pods", w.cluster_ip);
            let status = crate::kubeapi::anonymous_status(&url, &ca)?;
            anyhow::ensure!(
                status == 401,
                "{url} answered HTTP {status} to an anonymous GET"
            );
            seen.push(format!("{} 401", w.name));
        }
        Ok(seen.join(", "))
    })();
    out.push((
        "the kubelets refuse anonymous requests".into(),
        outcome(anonymous, |s| s),
    ));
    fresh_namespace(c)?;
    // runc
    c.apply(&pod("runc", image, "runc", "sleep 3600"))?;
    out.push((
        "a pod runs under runc".into(),
        match wait_pod(c, "runc", &["Running"], Duration::from_secs(180)) {
            Ok(_) => Outcome::Pass("Running".into()),
            Err(e) => Outcome::Fail(format!("{e:#}")),
        },
    ));
    // kata, where a worker carries the label
    let kata_nodes = items
        .iter()
        .filter(|n| n["metadata"]["labels"]["kubicluster.io/kata"] == "true")
        .count();
    out.push((
        "a pod runs under kata".into(),
        if kata_nodes == 0 {
            Outcome::Skip("no worker can run kata (see create-workers' report)".into())
        } else {
            c.apply(&pod("kata", image, "kata", "uname -r; sleep 3600"))?;
            match wait_pod(c, "kata", &["Running"], Duration::from_secs(240)) {
                Ok(_) => Outcome::Pass(format!("Running ({kata_nodes} kata worker(s))")),
                Err(e) => Outcome::Fail(format!("{e:#}")),
            }
        },
    ));
    // DNS
    let fqdn = format!(
        "kubernetes.default.svc.{}",
        cluster.kubernetes.cluster_domain
    );
    let dns = (|| -> Result<String> {
        let ready = wait_dns_ready(c, Duration::from_secs(180))?;
        // kube-proxy may still be writing the Service's rules: a few tries, as a user would.
        let cmd =
            format!("for i in 1 2 3 4 5 6; do nslookup {fqdn} && exit 0; sleep 5; done; exit 1");
        c.apply(&pod("dns", image, "runc", &cmd))?;
        wait_pod(c, "dns", &["Succeeded"], Duration::from_secs(180))?;
        Ok(format!(
            "nslookup answered ({}; {ready} CoreDNS endpoint(s) ready)",
            cluster.kubernetes.service_ip()
        ))
    })();
    out.push((
        format!("{fqdn} resolves through CoreDNS"),
        outcome(dns, |s| s),
    ));
    // A web pod on every worker, behind one Service (NodePort, so also a ClusterIP).
    let workers: Vec<&str> = cluster.workers().map(|w| w.name.as_str()).collect();
    for w in &workers {
        c.apply(&pod_on(
            &format!("web-{w}"),
            "web",
            w,
            image,
            &web_command(w),
        ))?;
    }
    c.apply(&json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
    }))?;
    let mut ips = Vec::new();
    let every = (|| -> Result<String> {
        for w in &workers {
            let name = format!("web-{w}");
            wait_pod(c, &name, &["Running"], Duration::from_secs(180))?;
            let (_, body) = c.get(&format!("/api/v1/namespaces/{NS}/pods/{name}"))?;
            let v: serde_json::Value = serde_json::from_str(&body)?;
            anyhow::ensure!(
                v["spec"]["nodeName"] == *w,
                "{name} runs on {}",
                v["spec"]["nodeName"]
            );
            ips.push((
                w.to_string(),
                v["status"]["podIP"].as_str().unwrap_or("").to_string(),
            ));
        }
        Ok(ips
            .iter()
            .map(|(w, ip)| format!("{w} {ip}"))
            .collect::<Vec<_>>()
            .join(", "))
    })();
    out.push(("a pod runs on every worker".into(), outcome(every, |s| s)));
    // From a pod on the first worker to the web pod on each other one, by pod IP; the
    // client's output read back through the API.
    let first = workers.first().copied().unwrap_or_default();
    let targets: Vec<&(String, String)> = ips.iter().filter(|(w, _)| w != first).collect();
    let cross = (|| -> Result<String> {
        anyhow::ensure!(!targets.is_empty(), "one worker only");
        let cmd = targets
            .iter()
            .map(|(_, ip)| http_get(ip, 8080))
            .collect::<Vec<_>>()
            .join(" && ");
        c.apply(&pod_on("client", "client", first, image, &cmd))?;
        wait_pod(c, "client", &["Succeeded"], Duration::from_secs(180))?;
        let text = logs(c, "client")?;
        for (w, _) in &targets {
            anyhow::ensure!(
                text.contains(&format!("kubicluster-smoke {w}")),
                "client read {text:?}"
            );
        }
        Ok(format!(
            "{first} → {} ({})",
            targets
                .iter()
                .map(|(w, ip)| format!("{w} {ip}"))
                .collect::<Vec<_>>()
                .join(", "),
            text.lines().count()
        ))
    })();
    let cross_ok = cross.is_ok();
    out.push((
        "pods reach each other across workers".into(),
        if targets.is_empty() && workers.len() < 2 {
            Outcome::Skip("one worker only".into())
        } else {
            outcome(cross, |s| s)
        },
    ));
    // The Service by its DNS name: CoreDNS answers, kube-proxy forwards the ClusterIP.
    let fqdn_web = format!("web.{NS}.svc.{}", cluster.kubernetes.cluster_domain);
    let svc: Result<String> = (|| {
        c.apply(&pod("svc-client", image, "runc", &http_get(&fqdn_web, 80)))?;
        wait_pod(c, "svc-client", &["Succeeded"], Duration::from_secs(180))?;
        let text = logs(c, "svc-client")?;
        let body = text.lines().rev().find(|l| l.contains("kubicluster-smoke"));
        let body = body.with_context(|| format!("read {text:?}"))?;
        Ok(format!("http://{fqdn_web}/ answered: {}", body.trim()))
    })();
    // Both clients' answers were read from their logs, through the API.
    let svc_ok = svc.is_ok();
    out.push((
        "a container's logs are read through the API (apiserver → kubelet)".into(),
        if cross_ok || svc_ok {
            Outcome::Pass("the client pods' output".into())
        } else {
            outcome(logs(c, "svc-client"), |t| {
                format!("{} line(s)", t.lines().count())
            })
        },
    ));
    out.push((
        "a ClusterIP Service answers through kube-proxy".into(),
        outcome(svc, |s| s),
    ));
    // exec and port-forward through the API (apiserver → kubelet streaming), into the web pod
    // on the first worker.
    let web = format!("web-{first}");
    let exec = (|| -> Result<String> {
        let o = c.exec(NS, &web, "c", &["cat", "/www/index.html"])?;
        let text = String::from_utf8_lossy(&o.stdout);
        anyhow::ensure!(
            o.code == 0 && text.contains("kubicluster-smoke"),
            "exit {}, stdout {text:?}, stderr {:?}",
            o.code,
            String::from_utf8_lossy(&o.stderr)
        );
        let o = c.exec(NS, &web, "c", &["sh", "-c", "exit 3"])?;
        anyhow::ensure!(o.code == 3, "`exit 3` came back as {}", o.code);
        Ok(format!("`cat /www/index.html` in {web}: {}", text.trim()))
    })();
    out.push((
        "a command runs in a container through the API (exec)".into(),
        outcome(exec, |s| s),
    ));
    let forward = (|| -> Result<String> {
        let answer = c.port_forward(NS, &web, 8080, b"GET / HTTP/1.0\r\n\r\n")?;
        let text = String::from_utf8_lossy(&answer);
        let body = text.lines().rev().find(|l| l.contains("kubicluster-smoke"));
        let body = body.with_context(|| format!("{web}:8080 answered {text:?}"))?;
        Ok(format!("{web}:8080 answered: {}", body.trim()))
    })();
    out.push((
        "a pod's port answers through the API (port-forward)".into(),
        outcome(forward, |s| s),
    ));
    // NodePort
    let nodeport = wait_pod(
        c,
        &format!("web-{first}"),
        &["Running"],
        Duration::from_secs(60),
    )
    .and_then(|_| {
        let (_, body) = c.get(&format!("/api/v1/namespaces/{NS}/services/web"))?;
        let v: serde_json::Value = serde_json::from_str(&body)?;
        let port = v["spec"]["ports"][0]["nodePort"]
            .as_u64()
            .context("no nodePort")?;
        let w = cluster.workers().next().context("no worker")?;
        let url = format!("http://{}:{port}/", w.cluster_ip);
        // From the hypervisor, as a user would: in the lab, from inside its namespace.
        let mut r = crate::net::agent(
            ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(10)))
                .build(),
        )
        .get(&url)
        .call()
        .with_context(|| format!("GET {url}"))?;
        let text = r.body_mut().read_to_string()?;
        anyhow::ensure!(
            text.contains("kubicluster-smoke"),
            "{url} answered {text:?}"
        );
        Ok(url)
    });
    out.push((
        "a NodePort answers".into(),
        match nodeport {
            Ok(url) => Outcome::Pass(url),
            Err(e) => Outcome::Fail(format!("{e:#}")),
        },
    ));
    // A Secret, encrypted at rest.
    c.apply(&json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "kubicluster-smoke", "namespace": NS},
        "stringData": {"k": "kubicluster"}
    }))?;
    out.push((
        "a Secret is stored encrypted in etcd".into(),
        secret_check(cluster),
    ));
    Ok(())
}

fn secret_check(cluster: &Cluster) -> Outcome {
    let Some(ctrl) = cluster.controllers().next() else {
        return Outcome::Skip("no controller".into());
    };
    let r = (|| -> Result<Outcome> {
        let h = crate::vms::connect(cluster, ctrl, Duration::from_secs(10))?;
        let mut cmd = crate::steps::install_etcd::etcdctl(
            &crate::steps::bin_dir_for(cluster, "etcd"),
            "https://127.0.0.1:2379",
        );
        cmd = cmd
            .arg("get")
            .arg(format!("/registry/secrets/{NS}/kubicluster-smoke"))
            .arg("--print-value-only");
        let o = h.run(&cmd)?;
        if !o.ok() {
            bail!("etcdctl get on {}: {}", ctrl.name, o.tail(3));
        }
        Ok(match encrypted_prefix(&o.stdout) {
            Some(p) => Outcome::Pass(format!("value starts with {p}")),
            None => Outcome::Fail(format!(
                "the value in etcd is not encrypted (starts with {:?})",
                String::from_utf8_lossy(&o.stdout[..o.stdout.len().min(20)])
            )),
        })
    })();
    r.unwrap_or_else(|e| Outcome::Fail(format!("{e:#}")))
}

pub fn run(ctx: &mut Ctx, args: &SmokeArgs) -> Result<()> {
    let (cluster, _) = ctx.cluster(&args.spec)?;
    let image = args.pod_image.as_deref().unwrap_or(&cluster.test_image);
    reach_nodes(&cluster)?;
    let results = smoke(&cluster, image, Duration::from_secs(args.wait_seconds))?;
    report(ctx, &results)
}

/// Run every check; the first (the API) gates the rest.
pub fn smoke(cluster: &Cluster, image: &str, wait: Duration) -> Result<Vec<(String, Outcome)>> {
    let c = Client::admin(cluster)?.ok_or_else(|| {
        Failure::bad_input(format!(
            "no admin kubeconfig ({} does not exist)",
            cluster.admin_kubeconfig().display()
        ))
        .hint("run `kubicluster cnc` first")
    })?;
    let mut out = Vec::new();
    match c.wait_ready(wait) {
        Ok(()) => out.push((
            "the API server is ready".into(),
            Outcome::Pass(c.server.clone()),
        )),
        Err(e) => {
            out.push((
                "the API server is ready".into(),
                Outcome::Fail(format!("{e:#}")),
            ));
            for name in [
                "every worker is Ready",
                "the kubelets refuse anonymous requests",
                "a pod runs under runc",
                "a pod runs under kata",
                "a pod runs on every worker",
                "pods reach each other across workers",
                "a container's logs are read through the API (apiserver → kubelet)",
                "a ClusterIP Service answers through kube-proxy",
                "a command runs in a container through the API (exec)",
                "a pod's port answers through the API (port-forward)",
                "the kubernetes service resolves through CoreDNS",
                "a NodePort answers",
                "a Secret is stored encrypted in etcd",
            ] {
                out.push((name.into(), Outcome::Skip("needs the API server".into())));
            }
            return Ok(out);
        }
    }
    if let Err(e) = checks(&c, cluster, image, &mut out) {
        out.push((
            "the smoke checks ran to the end".into(),
            Outcome::Fail(format!("{e:#}")),
        ));
    }
    let _ = c.delete(&format!("/api/v1/namespaces/{NS}"));
    Ok(out)
}

pub fn report(ctx: &mut Ctx, results: &[(String, Outcome)]) -> Result<()> {
    let mut failed = 0;
    for (name, o) in results {
        let line = match o {
            Outcome::Pass(why) => format!("PASS  {name}: {why}"),
            Outcome::Fail(why) => {
                failed += 1;
                format!("FAIL  {name}: {why}")
            }
            Outcome::Skip(why) => format!("SKIP  {name}: {why}"),
        };
        ctx.printer.status(&line);
    }
    if failed > 0 {
        return Err(Failure::new(format!("test: {failed} check(s) failed"))
            .hint("see each FAIL line; `kubicluster status` shows units and node readiness")
            .into());
    }
    ctx.printer.status("test: every check passed");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn etcd_values_of_encrypted_secrets_are_recognised() {
        assert_eq!(
            super::encrypted_prefix(b"k8s:enc:secretbox:v1:key1:\x00\x01garbage").as_deref(),
            Some("k8s:enc:secretbox:v1")
        );
        assert_eq!(
            super::encrypted_prefix(b"k8s\x00\x0a\x0dv1\x12\x06Secret"),
            None
        );
    }
}
