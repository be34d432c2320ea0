//! The read-only view for `status`: each VM's state, SSH with the pinned key, the role's units.

use super::*;

/// One row of `status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeStatus {
    pub node: String,
    /// The hypervisor its VM is on (`default` for a cluster on one).
    pub hypervisor: String,
    pub role: String,
    pub vm: String,
    pub cluster_ip: String,
    pub hypervisor_ip: String,
    pub ssh: String,
    /// (unit, "enabled active" as systemctl says) for the role's units, when SSH answered.
    pub units: Vec<(String, String, String)>,
    /// Node readiness from the API ("Ready", "NotReady", "absent"), when the API answered.
    pub ready: Option<String>,
    /// Whether this controller holds the API's virtual IP, when there is one and SSH answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holds_vip: Option<bool>,
    /// This controller's own API server, asked at its own address (`/readyz`), when the
    /// cluster has several controllers behind one address: "ready", "not ready: …" (the
    /// failing checks) or "no answer: …" (why).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_server: Option<String>,
    /// The load balancer's view of each controller (haproxy's health check: "UP", "DOWN", …),
    /// when this node is the API's load balancer and its haproxy answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lb_servers: Option<Vec<(String, String)>>,
}

impl NodeStatus {
    /// A node whose VM could not be asked for (its hypervisor does not answer).
    pub fn unknown(n: &crate::spec::Node, hypervisor: &str) -> Self {
        NodeStatus {
            node: n.name.clone(),
            hypervisor: hypervisor.into(),
            role: n.role.to_string(),
            vm: "unknown".into(),
            cluster_ip: n.cluster_ip.to_string(),
            hypervisor_ip: n.hypervisor_ip.to_string(),
            ssh: "-".into(),
            units: Vec::new(),
            ready: None,
            holds_vip: None,
            api_server: None,
            lb_servers: None,
        }
    }
}

/// The units of a role, for `status`.
pub fn role_units(role: crate::spec::Role) -> &'static [&'static str] {
    match role {
        crate::spec::Role::Controller => &[
            "etcd.service",
            "kube-apiserver.service",
            "kube-controller-manager.service",
            "kube-scheduler.service",
        ],
        crate::spec::Role::Worker => &[
            "containerd.service",
            "kubelet.service",
            "kube-proxy.service",
        ],
        crate::spec::Role::LoadBalancer => &["kubicluster-api-lb.service"],
    }
}

/// keepalived's unit for the API's virtual IP and the interface it holds it on (the step
/// `install_api_vip` writes them; `vms` sits below `steps`).
const VIP_UNIT: &str = "kubicluster-vip.service";
const VIP_INTERFACE: &str = "eth1";

/// The units `status` reads on `node`: its role's, and keepalived's where it holds the API's
/// virtual IP.
pub fn node_units(cluster: &Cluster, node: &crate::spec::Node) -> Vec<&'static str> {
    let mut units = role_units(node.role).to_vec();
    if node.role == crate::spec::Role::Controller && cluster.kubernetes.api_server_vip.is_some() {
        units.push(VIP_UNIT);
    }
    units
}

/// `node`'s own API server's readiness as the admin whose kubeconfig is `admin` (5 s budget:
/// under TCG a busy one took more than 2 s just after another controller was lost), as
/// [`NodeStatus::api_server`] says it.
fn own_api_server(
    cluster: &Cluster,
    node: &crate::spec::Node,
    admin: &std::io::Result<String>,
) -> String {
    let server = format!(
        "https://{}:{}",
        node.cluster_ip, cluster.kubernetes.api_server_port
    );
    let client = match admin {
        Ok(kc) => crate::kubeapi::Client::from_kubeconfig(kc, Some(&server)),
        Err(e) => Err(anyhow::anyhow!("{e}")),
    };
    match client {
        Ok(c) => c.readiness(API_TIMEOUT),
        Err(e) => format!("not asked: {e:#}"),
    }
}

/// haproxy's statistics socket on the load balancer (the step `install_api_lb` configures it).
const LB_SOCKET: &str = "/run/kubicluster-api-lb/stats.sock";

/// Each API server behind the load balancer on `h` and its state in haproxy's eyes.
fn lb_servers(h: &dyn crate::host::Host) -> Option<Vec<(String, String)>> {
    let o = h
        .run(&crate::host::Cmd::script(
            r#"echo "show stat" | socat -t 2 stdio "unix-connect:$1""#,
            [LB_SOCKET],
        ))
        .ok()?;
    o.ok().then(|| parse_lb_stat(&o.stdout_text()))
}

/// The servers of the `kube-apiservers` backend in haproxy's `show stat` CSV, with their
/// status column ("UP", "DOWN", "UP 1/2" still up with a failed check, "DOWN 1/2" coming
/// back, "no check", …).
pub fn parse_lb_stat(csv: &str) -> Vec<(String, String)> {
    let mut header: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for line in csv.lines() {
        if let Some(h) = line.strip_prefix("# ") {
            header = h.split(',').collect();
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        let col = |name: &str| {
            header
                .iter()
                .position(|h| *h == name)
                .and_then(|i| f.get(i).copied())
        };
        if col("pxname") == Some("kube-apiservers")
            && let (Some(sv), Some(status)) = (col("svname"), col("status"))
            && sv != "BACKEND"
        {
            out.push((sv.to_string(), status.to_string()));
        }
    }
    out
}

/// Does `h` hold `vip` on the cluster network's interface? `None` when it could not say.
pub fn holds(h: &dyn crate::host::Host, vip: std::net::Ipv4Addr) -> Option<bool> {
    let o = h
        .run(&crate::host::Cmd::new([
            "ip",
            "-o",
            "-4",
            "addr",
            "show",
            "dev",
            VIP_INTERFACE,
        ]))
        .ok()?;
    o.ok()
        .then(|| o.stdout_text().contains(&format!(" {vip}/")))
}

pub(crate) fn unit_states(
    h: &dyn crate::host::Host,
    units: &[&str],
) -> Vec<(String, String, String)> {
    crate::host::read_units(h, units).unwrap_or_default()
}

/// How long `status` gives a running VM to answer SSH (TCP connect and handshake). 3 s was too
/// short on an emulated guest that is busy: the lab's controller, its API server just resumed
/// after `SIGSTOP`, was reported "no answer" (CI by hand, 2026-12-07) while it answered seconds later.
const SSH_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one API call of `status` may take. An emulated controller right after `up`'s smoke
/// test (its namespace being deleted) took over 3 s to list the Nodes through the virtual IP,
/// and `status` then said the API did not answer (a CI run of the Kubernetes lab tier).
pub const API_TIMEOUT: Duration = Duration::from_secs(10);

/// Every node of `cluster` on `hv`: its VM, then (at the same time on every running VM) SSH with
/// the pinned key, the units, the virtual IP, the load balancer's view, the controller's own
/// API server — a node's answer does not wait for another's.
pub fn status(cluster: &Cluster, hv: &dyn Hypervisor) -> Result<Vec<NodeStatus>> {
    // With several controllers each one's own API server is asked, as the admin.
    let several = cluster.controllers().count() > 1;
    let admin = several.then(|| std::fs::read_to_string(cluster.admin_kubeconfig()));
    let domains = cluster
        .nodes
        .iter()
        .map(|n| Ok((n, hv.domain(&n.name)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(crate::par::map(&domains, |(n, d)| {
        let n = *n;
        let vm = match d {
            None => "absent".to_string(),
            Some(d) if d.owner().as_deref() != Some(cluster.name.as_str()) => "foreign".into(),
            Some(d) => match &d.state {
                VmState::Running => "running".into(),
                VmState::Off => "off".into(),
                VmState::Paused(_) => "paused".into(),
                VmState::Other(s) => s.to_lowercase(),
            },
        };
        let mut units = Vec::new();
        let mut holds_vip = None;
        let mut lb = None;
        let ssh = if vm != "running" {
            "-".into()
        } else if crate::vms::pins::pinned(cluster, &n.name)
            .ok()
            .flatten()
            .is_none()
        {
            "NO PINNED KEY".into()
        } else {
            match connect(cluster, n, SSH_TIMEOUT).and_then(|h| {
                verify(cluster, n, &h)?;
                units = unit_states(&h, &node_units(cluster, n));
                if let Some(vip) = cluster.kubernetes.api_server_vip
                    && n.role == crate::spec::Role::Controller
                {
                    holds_vip = holds(&h, vip);
                }
                if n.role == crate::spec::Role::LoadBalancer {
                    lb = lb_servers(&h);
                }
                Ok(())
            }) {
                Ok(()) => "ok".into(),
                Err(e) if is_key_mismatch(&e) => "WRONG HOST KEY".into(),
                Err(_) => "no answer".into(),
            }
        };
        // Only where kubicluster started it (a controller without the binaries has its
        // unit installed, disabled).
        let api_server = admin
            .as_ref()
            .filter(|_| {
                units
                    .iter()
                    .any(|(u, e, _)| u == "kube-apiserver.service" && e == "enabled")
            })
            .map(|kc| own_api_server(cluster, n, kc));
        NodeStatus {
            node: n.name.clone(),
            hypervisor: cluster.hosts[0].name.clone(),
            role: n.role.to_string(),
            vm,
            cluster_ip: n.cluster_ip.to_string(),
            hypervisor_ip: n.hypervisor_ip.to_string(),
            ssh,
            units,
            ready: None,
            holds_vip,
            api_server,
            lb_servers: lb,
        }
    }))
}

/// What is wrong with each node, for `status` (empty = healthy): a VM not running, SSH not
/// answering with the pinned key, a unit kubicluster enabled that is not active,
/// a worker the API does not call Ready.
pub fn unhealthy(rows: &[NodeStatus]) -> Vec<String> {
    let mut unhealthy = Vec::new();
    for r in rows {
        if r.vm != "running" {
            unhealthy.push(format!("{} (VM {})", r.node, r.vm));
        } else if r.ssh != "ok" {
            unhealthy.push(format!("{} (SSH: {})", r.node, r.ssh));
        }
        // A unit kubicluster enabled must run; one it could not start (no binary) stays disabled.
        let down: Vec<&str> = r
            .units
            .iter()
            .filter(|(_, e, a)| e == "enabled" && a != "active")
            .map(|(u, _, _)| u.trim_end_matches(".service"))
            .collect();
        if !down.is_empty() {
            unhealthy.push(format!("{} ({} not active)", r.node, down.join(", ")));
        }
        // An API server that runs but does not answer ready (one that is not active is above).
        if let Some(a) = r.api_server.as_deref().filter(|a| *a != "ready")
            && !down.contains(&"kube-apiserver")
        {
            unhealthy.push(format!("{} (API server {a})", r.node));
        }
        // A load balancer with no API server behind it that its check calls up.
        if let Some(servers) = &r.lb_servers
            && !servers.iter().any(|(_, s)| s.starts_with("UP"))
        {
            unhealthy.push(format!("{} (no API server UP behind it)", r.node));
        }
        if r.role == "worker" && r.ready.as_deref().is_some_and(|s| s != "Ready") {
            unhealthy.push(format!(
                "{} (node {})",
                r.node,
                r.ready.as_deref().unwrap_or("")
            ));
        }
    }
    unhealthy
}

/// Which controllers hold the API's virtual IP, as `status` reports it: exactly one is
/// healthy; `None` where no controller answered SSH.
pub fn vip_holders(rows: &[NodeStatus]) -> Option<Vec<&str>> {
    let asked: Vec<&NodeStatus> = rows.iter().filter(|r| r.holds_vip.is_some()).collect();
    (!asked.is_empty()).then(|| {
        asked
            .iter()
            .filter(|r| r.holds_vip == Some(true))
            .map(|r| r.node.as_str())
            .collect()
    })
}

/// Node name → "Ready"/"NotReady", from the API as the admin (3 s budget).
pub fn node_readiness(
    cluster: &Cluster,
) -> std::result::Result<std::collections::BTreeMap<String, String>, String> {
    node_readiness_since(cluster, None)
}

/// [`node_readiness`], where with `since` a Ready status must come from a heartbeat at or
/// after it (after a restart, the Node may still show the Ready posted before).
pub fn node_readiness_since(
    cluster: &Cluster,
    since: Option<time::OffsetDateTime>,
) -> std::result::Result<std::collections::BTreeMap<String, String>, String> {
    let client = crate::kubeapi::Client::admin(cluster)
        .map_err(|e| format!("{e:#}"))?
        .ok_or("no admin kubeconfig")?;
    let (status, body) = client
        .get_with_timeout("/api/v1/nodes", API_TIMEOUT)
        .map_err(|e| format!("{e:#}"))?;
    if status != 200 {
        return Err(format!("GET /api/v1/nodes: HTTP {status}"));
    }
    let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    Ok(v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| {
            let name = n["metadata"]["name"].as_str()?.to_string();
            let ready = match since {
                Some(t) => crate::kubeapi::node_ready_since(n, t),
                None => crate::kubeapi::node_ready(n),
            };
            Some((name, if ready { "Ready" } else { "NotReady" }.to_string()))
        })
        .collect())
}

/// Kubernetes' own view, from the API as the admin ([`API_TIMEOUT`] per call): the server's version,
/// `/readyz`'s checks (etcd among them), each Node's readiness and kubelet version, and who
/// leads kube-controller-manager and kube-scheduler (their Leases, and how fresh they are).
pub fn kubernetes_view(cluster: &Cluster) -> std::result::Result<serde_json::Value, String> {
    let c = crate::kubeapi::Client::admin(cluster)
        .map_err(|e| format!("{e:#}"))?
        .ok_or("no admin kubeconfig")?;
    let get = |path: &str| -> std::result::Result<(u16, String), String> {
        c.get_with_timeout(path, API_TIMEOUT)
            .map_err(|e| format!("{e:#}"))
    };
    let json = |path: &str| -> std::result::Result<serde_json::Value, String> {
        match get(path)? {
            (200, b) => serde_json::from_str(&b).map_err(|e| e.to_string()),
            (s, _) => Err(format!("GET {path}: HTTP {s}")),
        }
    };
    let version = json("/version")?["gitVersion"].clone();
    let (code, body) = get("/readyz?verbose")?;
    let failed: Vec<String> = crate::kubeapi::failing_checks(&body)
        .map(str::to_string)
        .collect();
    let etcd = body.lines().any(|l| l.starts_with("[+]etcd ok"));
    let nodes: Vec<serde_json::Value> = json("/api/v1/nodes")?["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            serde_json::json!({
                "name": n["metadata"]["name"],
                "ready": crate::kubeapi::node_ready(n),
                "kubelet": n["status"]["nodeInfo"]["kubeletVersion"],
                "unschedulable": n["spec"]["unschedulable"].as_bool().unwrap_or(false),
            })
        })
        .collect();
    let mut leaders = serde_json::Map::new();
    for comp in ["kube-controller-manager", "kube-scheduler"] {
        let l = json(&format!(
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{comp}"
        ))
        .unwrap_or_default();
        let holder = l["spec"]["holderIdentity"].as_str().unwrap_or("");
        let age = l["spec"]["renewTime"]
            .as_str()
            .and_then(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            })
            .map(|t| (time::OffsetDateTime::now_utc() - t).whole_seconds());
        leaders.insert(
            comp.to_string(),
            serde_json::json!({
                "holder": holder.split('_').next().unwrap_or(""),
                "renewedSecondsAgo": age,
                // A leader renews every 2 s; 15 s is the default lease.
                "healthy": !holder.is_empty() && age.is_some_and(|a| a < 15),
            }),
        );
    }
    Ok(serde_json::json!({
        "version": version,
        "readyz": if code == 200 { "ok" } else { "failed" },
        "failedChecks": failed,
        "etcd": if etcd { "ok" } else { "failed" },
        "nodes": nodes,
        "leaders": leaders,
    }))
}

/// One line per fact of [`kubernetes_view`], for the text form of `status`.
pub fn kubernetes_lines(v: &serde_json::Value) -> Vec<String> {
    let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
    let ready = nodes.iter().filter(|n| n["ready"] == true).count();
    let mut lines = vec![format!(
        "kubernetes {}: /readyz {}{}, etcd {}, nodes Ready {ready}/{}",
        v["version"].as_str().unwrap_or("?"),
        v["readyz"].as_str().unwrap_or("?"),
        match v["failedChecks"].as_array() {
            Some(f) if !f.is_empty() => format!(
                " ({})",
                f.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => String::new(),
        },
        v["etcd"].as_str().unwrap_or("?"),
        nodes.len()
    )];
    for (comp, l) in v["leaders"].as_object().into_iter().flatten() {
        lines.push(format!(
            "  {comp}: {}",
            match (l["holder"].as_str(), l["renewedSecondsAgo"].as_i64()) {
                (Some(h), Some(a)) if !h.is_empty() => format!(
                    "leader {h}, renewed {a} s ago{}",
                    if l["healthy"] == true { "" } else { " (stale)" }
                ),
                _ => "no leader".to_string(),
            }
        ));
    }
    lines
}
