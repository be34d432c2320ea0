//! `install_cni` — the CNI plugins in `/opt/cni/bin` (the original downloaded them and never
//! installed them) and the pod network's node side.
//!
//! With `networks.cni: bridge` (KTHW labs 09 and 11): each worker gets its /24 of the pod CIDR
//! ([`Cluster::pod_subnet`]) in a bridge + host-local conflist, and every node — controllers too,
//! so the API server reaches pods — routes the other workers' subnets via their cluster-network
//! addresses. The routes live in a oneshot unit (persisted across reboots, unlike KTHW's
//! `ip route add`); adding or removing a worker changes that unit on the other nodes and
//! restarts only it. With `calico`, calico's own `install-cni` writes the conflist; this step
//! installs the plugins and the loopback config.

use crate::engine::StepId;
use anyhow::{Context, Result, bail};

use crate::artifacts::Provided;
use crate::engine::{Blob, Cx, Desired, GuardedCmd, Step, UnitSpec};
use crate::host::Cmd;
use crate::render;
use crate::spec::{Cluster, Cni, Node, Role};

pub struct InstallCni;

pub const ROUTES_UNIT: &str = "kubicluster-pod-routes.service";
pub const BRIDGE_CONF: &str = "/etc/cni/net.d/10-bridge.conflist";
pub const LOOPBACK_CONF: &str = "/etc/cni/net.d/99-loopback.conf";

/// Where CNI configs and plugins live (containerd's config points there too).
pub fn cni_dirs(want: &mut Desired) {
    want.dir("/etc/cni", 0o755)
        .dir("/etc/cni/net.d", 0o755)
        .dir("/opt/cni", 0o755)
        .dir("/opt/cni/bin", 0o755);
}

#[derive(serde::Serialize)]
struct Route {
    subnet: String,
    via: String,
}

impl Step for InstallCni {
    fn id(&self) -> StepId {
        StepId::InstallCni
    }

    /// This node's files and units only: it runs while other nodes are still on earlier steps.
    fn node_local(&self) -> bool {
        true
    }

    fn artifacts(&self, _cluster: &Cluster) -> Vec<&'static str> {
        vec!["cni-plugins"]
    }

    fn targets<'c>(&self, cluster: &'c Cluster) -> Vec<&'c Node> {
        match cluster.cni {
            // Controllers too: their routes to the pod subnets (the API server reaches pods).
            Cni::Bridge => cluster
                .nodes
                .iter()
                .filter(|n| n.role != Role::LoadBalancer)
                .collect(),
            Cni::Calico => cluster.workers().collect(),
        }
    }

    fn desired(&self, cx: &Cx, node: &Node) -> Result<Desired> {
        let c = &cx.cluster;
        let mut want = Desired::default();
        if node.role == Role::Worker {
            super::require_binary(cx, "cni-plugins", "the CNI plugins are")?;
            cni_dirs(&mut want);
            let provided = cx.inputs.artifact("cni-plugins");
            super::install_artifact(&mut want, provided, &[]);
            if let Some(Provided::Debs { bin_dir, .. }) = provided {
                // Debian installs them elsewhere; link them where containerd, ctr and calico look.
                want.command(GuardedCmd {
                    what: format!("link the CNI plugins of {bin_dir} into /opt/cni/bin"),
                    check: Cmd::script(
                        // One `readlink` for all links (not one per plugin: forks are slow in
                        // emulated guests); a missing link prints nothing, so the lists differ.
                        r#"dir=$1; [ -e "$dir/bridge" ] || exit 1
want=$(printf '%s\n' "$dir"/*)
set --; for p in "$dir"/*; do set -- "$@" "/opt/cni/bin/${p##*/}"; done
[ "$(readlink -- "$@" 2>/dev/null)" = "$want" ]"#,
                        [bin_dir.as_str()],
                    ),
                    run: Cmd::script(
                        r#"for p in "$1"/*; do ln -sfn "$p" /opt/cni/bin/ || exit 1; done"#,
                        [bin_dir.as_str()],
                    ),
                    restarts: vec![],
                    after_units: false,
                });
            }
            want.file(
                LOOPBACK_CONF,
                Blob::new(include_str!("../../templates/worker/99-loopback.conf")),
                0o644,
                &[],
            );
            if c.cni == Cni::Bridge {
                let subnet = c
                    .pod_subnet(node)
                    .with_context(|| format!("{} has no pod subnet", node.name))?;
                want.file(
                    BRIDGE_CONF,
                    Blob::new(render::render(
                        "worker/10-bridge.conflist.j2",
                        &serde_json::json!({
                            "subnet": subnet.to_string(),
                            "mtu": c.networks.mtu,
                        }),
                    )?),
                    0o644,
                    &[],
                );
            }
        }
        if c.cni == Cni::Bridge {
            let routes: Vec<Route> = c
                .workers()
                .filter(|w| w.name != node.name)
                .filter_map(|w| {
                    c.pod_subnet(w).map(|s| Route {
                        subnet: s.to_string(),
                        via: w.cluster_ip.to_string(),
                    })
                })
                .collect();
            want.unit(UnitSpec::started(
                ROUTES_UNIT,
                Blob::new(render::render(
                    "worker/pod-routes.service.j2",
                    &serde_json::json!({
                        "cluster": c.name,
                        "pod_cidr": c.kubernetes.pod_cidr.to_string(),
                        "routes": routes,
                    }),
                )?),
            ));
        }
        Ok(want)
    }

    /// Every other worker's subnet is routed via that worker.
    fn verify(&self, cx: &Cx, node: &Node) -> Result<()> {
        let c = &cx.cluster;
        if c.cni != Cni::Bridge {
            return Ok(());
        }
        let o = cx
            .host(&node.name)?
            .run(&Cmd::new(["ip", "-4", "route", "show", "proto", "static"]))?;
        let table = o.stdout_text();
        for w in c.workers().filter(|w| w.name != node.name) {
            let Some(s) = c.pod_subnet(w) else { continue };
            let want = format!("{s} via {} ", w.cluster_ip);
            if !table.lines().any(|l| format!("{l} ").starts_with(&want)) {
                bail!(
                    "no route {want}on {} (ip route: {}); see systemctl status {ROUTES_UNIT}",
                    node.name,
                    table.trim()
                );
            }
        }
        Ok(())
    }
}
