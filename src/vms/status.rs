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

pub(crate) fn unit_states(h: &dyn crate::host::Host, units: &[&str]) -> Vec<(String, String, String)> {
    let Ok(o) = h.run(&crate::host::Cmd::script(crate::host::UNITS_SCRIPT, units)) else {
        return Vec::new();
    };
    o.stdout_text()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((
                f.next()?.to_string(),
                f.next()?.to_string(),
                f.next()?.to_string(),
            ))
        })
        .collect()
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
