//! The read-only view for `status`: each VM's state, SSH with the pinned key, the role's units.

use super::*;

/// One row of `status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeStatus {
    pub node: String,
    pub role: String,
    pub vm: String,
    pub cluster_ip: String,
    pub hypervisor_ip: String,
    pub ssh: String,
    /// (unit, "enabled active" as systemctl says) for the role's units, when SSH answered.
    pub units: Vec<(String, String, String)>,
    /// Node readiness from the API ("Ready", "NotReady", "absent"), when the API answered.
    pub ready: Option<String>,
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
    }
}

pub(crate) fn unit_states(
    h: &dyn crate::host::Host,
    units: &[&str],
) -> Vec<(String, String, String)> {
    crate::host::read_units(h, units).unwrap_or_default()
}

pub fn status(cluster: &Cluster, hv: &dyn Hypervisor, probe_ssh: bool) -> Result<Vec<NodeStatus>> {
    cluster
        .nodes
        .iter()
        .map(|n| {
            let d = hv.domain(&n.name)?;
            let vm = match &d {
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
            let ssh = if !probe_ssh || vm != "running" {
                "-".into()
            } else if crate::host::pins::pinned(cluster, &n.name)
                .ok()
                .flatten()
                .is_none()
            {
                "NO PINNED KEY".into()
            } else {
                match connect(cluster, n, Duration::from_secs(3)).and_then(|h| {
                    verify(cluster, n, &h)?;
                    units = unit_states(&h, role_units(n.role));
                    Ok(())
                }) {
                    Ok(()) => "ok".into(),
                    Err(e) if is_key_mismatch(&e) => "WRONG HOST KEY".into(),
                    Err(_) => "no answer".into(),
                }
            };
            Ok(NodeStatus {
                node: n.name.clone(),
                role: n.role.to_string(),
                vm,
                cluster_ip: n.cluster_ip.to_string(),
                hypervisor_ip: n.hypervisor_ip.to_string(),
                ssh,
                units,
                ready: None,
            })
        })
        .collect()
}

/// What is wrong with each node, for `status` (empty = healthy): a VM not running, SSH not
/// answering with the pinned key (when probed), a unit kubicluster enabled that is not active,
/// a worker the API does not call Ready.
pub fn unhealthy(rows: &[NodeStatus], probe: bool) -> Vec<String> {
    let mut unhealthy = Vec::new();
    for r in rows {
        if r.vm != "running" {
            unhealthy.push(format!("{} (VM {})", r.node, r.vm));
        } else if probe && r.ssh != "ok" {
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

/// Node name → "Ready"/"NotReady", from the API as the admin (3 s budget).
pub fn node_readiness(
    cluster: &Cluster,
) -> std::result::Result<std::collections::BTreeMap<String, String>, String> {
    let client = crate::kubeapi::Client::admin(cluster)
        .map_err(|e| format!("{e:#}"))?
        .ok_or("no admin kubeconfig")?;
    let (status, body) = client
        .get_with_timeout("/api/v1/nodes", std::time::Duration::from_secs(3))
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
            let ready = crate::kubeapi::node_ready(n);
            Some((name, if ready { "Ready" } else { "NotReady" }.to_string()))
        })
        .collect())
}
