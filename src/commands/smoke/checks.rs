//! The checks of `kubicluster test`, in the order they run, grouped by what they exercise.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;

use super::*;

/// Every worker Ready; each kubelet refuses anonymous requests. The nodes as the API lists them.
pub(super) fn nodes_and_kubelets(
    c: &Client,
    cluster: &Cluster,
    out: &mut Vec<(String, Outcome)>,
) -> Result<Vec<serde_json::Value>> {
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
    Ok(items)
}

/// A pod under runc, and one under kata where a worker carries the kata label.
pub(super) fn runtimes(
    c: &Client,
    image: &str,
    items: &[serde_json::Value],
    out: &mut Vec<(String, Outcome)>,
) -> Result<()> {
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
    Ok(())
}

/// The `kubernetes` Service's name resolved through CoreDNS.
pub(super) fn dns(
    c: &Client,
    cluster: &Cluster,
    image: &str,
    out: &mut Vec<(String, Outcome)>,
) -> Result<()> {
    // DNS
    let fqdn = format!(
        "kubernetes.default.svc.{}",
        cluster.kubernetes.cluster_domain
    );
    let dns = (|| -> Result<String> {
        // CoreDNS was applied last by `up`: its image unpacked and its readiness probe passed
        // on an emulated CPU can take minutes.
        let ready = wait_dns_ready(c, Duration::from_secs(300))?;
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
    Ok(())
}

/// A web pod on every worker, behind one Service (NodePort, so also a ClusterIP): made first,
/// so they start while the runtime and DNS checks run (every pod start is slow on an emulated
/// worker); [`pod_network`] waits for them.
pub(super) fn start_web(c: &Client, cluster: &Cluster, image: &str) -> Result<()> {
    for w in cluster.workers().map(|w| w.name.as_str()) {
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
    Ok(())
}

/// The web pods ([`start_web`]) running, one on every worker; pods reaching each other across
/// workers, the Service by its DNS name, logs through the API. The first worker's name.
pub(super) fn pod_network(
    c: &Client,
    cluster: &Cluster,
    image: &str,
    out: &mut Vec<(String, Outcome)>,
) -> Result<String> {
    let workers: Vec<&str> = cluster.workers().map(|w| w.name.as_str()).collect();
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
        // Longer than the script's own worst case per target (24 tries of ≤ 10 s), so a
        // target that never answers is reported by the script, not by this wait.
        wait_pod(c, "client", &["Succeeded"], Duration::from_secs(300))?;
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
        // Every web pod behind the Service first (the EndpointSlice controller's part), so
        // what remains to wait for is kube-proxy's.
        wait_endpoints(c, NS, "web", workers.len(), Duration::from_secs(180))?;
        c.apply(&pod("svc-client", image, "runc", &http_get(&fqdn_web, 80)))?;
        wait_pod(c, "svc-client", &["Succeeded"], Duration::from_secs(300))?;
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
    Ok(first.to_string())
}

/// exec and port-forward into the web pod on `first`.
pub(super) fn streaming(c: &Client, first: &str, out: &mut Vec<(String, Outcome)>) -> Result<()> {
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
    Ok(())
}

/// The web Service's NodePort from the hypervisor.
pub(super) fn nodeport(
    c: &Client,
    cluster: &Cluster,
    first: &str,
    out: &mut Vec<(String, Outcome)>,
) -> Result<()> {
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
        // From the hypervisor, as a user would: in the lab, from inside its namespace. Tried
        // for a minute: the worker's kube-proxy may not have the port's rules yet.
        let agent = crate::net::agent(
            ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(10)))
                .build(),
        );
        crate::retry::until(Duration::from_secs(60), Duration::from_secs(3), || {
            let answer = (|| -> Result<String> {
                let mut r = agent
                    .get(&url)
                    .call()
                    .with_context(|| format!("GET {url}"))?;
                Ok(r.body_mut().read_to_string()?)
            })();
            match answer {
                Ok(text) if text.contains("kubicluster-smoke") => Ok(()),
                Ok(text) => Err(anyhow::anyhow!("{url} answered {text:?}").into()),
                Err(e) => Err(e.into()),
            }
        })?;
        Ok(url)
    });
    out.push((
        "a NodePort answers".into(),
        match nodeport {
            Ok(url) => Outcome::Pass(url),
            Err(e) => Outcome::Fail(format!("{e:#}")),
        },
    ));
    Ok(())
}
