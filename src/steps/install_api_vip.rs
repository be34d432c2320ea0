//! `install_api_vip` — the API's virtual IP (kubeadm's "keepalived" option for highly available
//! clusters, without haproxy): every controller runs keepalived, which holds
//! `spec.kubernetes.apiServerVIP` on one controller at a time, the one with the highest priority
//! whose API server answers on its port (a hung one does not). Certificates and every kubeconfig name that address, so
//! losing a controller costs its clients one VRRP failover (about 3 s), not the API.
//!
//! Without haproxy the address leads to one API server at a time: it fails over, it does not
//! spread load. keepalived comes with kubicluster's image (Debian's package); the step checks
//! it is there before it writes anything.

use anyhow::{Result, bail};

use crate::engine::{Blob, Cx, Desired, Fact, FactQuery, GuardedCmd, Step, StepId, UnitSpec};
use crate::host::Cmd;
use crate::render;
use crate::spec::{Cluster, Node};

pub struct InstallApiVip;

/// The unit that runs keepalived for the virtual IP.
pub const UNIT: &str = "kubicluster-vip.service";
const CONF: &str = "/etc/keepalived/kubicluster-vip.conf";
const CHECK: &str = "/etc/keepalived/kubicluster-check-apiserver";
const KEEPALIVED: &str = "/usr/sbin/keepalived";
/// The cluster network's interface in kubicluster's image.
pub const INTERFACE: &str = "eth1";

#[derive(serde::Serialize)]
struct Ctx {
    cluster: String,
    node: String,
    ip: String,
    peers: Vec<String>,
    vip: String,
    prefix: u8,
    interface: &'static str,
    vrid: u8,
    priority: u8,
    port: u16,
}

/// The VRRP router id: from the cluster's name, so two clusters on one network differ (they
/// speak unicast to their own controllers anyway).
pub fn router_id(cluster: &str) -> u8 {
    let h = cluster.bytes().fold(2166136261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16777619)
    });
    (h % 255 + 1) as u8
}

/// The first controller first: 200, 190, … (at least 1).
fn priority(cluster: &Cluster, node: &Node) -> u8 {
    let i = cluster
        .controllers()
        .position(|c| c.name == node.name)
        .unwrap_or(0);
    200u8
        .saturating_sub(10u8.saturating_mul(i.min(25) as u8))
        .max(1)
}

fn keepalived_present(node: &Node) -> FactQuery {
    FactQuery {
        key: format!("keepalived:{}", node.name),
        node: node.name.clone(),
        cmd: Cmd::new(["test", "-x", KEEPALIVED]),
        read: |ok, _| {
            Fact::check(ok, || {
                format!("{KEEPALIVED} is missing: the VM's image predates the API's virtual IP")
            })
        },
    }
}

/// No virtual IP: keepalived stopped and its unit and files removed, where they are.
fn none_left() -> Desired {
    let mut want = Desired::default();
    let unit_file = format!("/etc/systemd/system/{UNIT}");
    want.command(GuardedCmd {
        what: format!("stop {UNIT} and remove it (the cluster has no virtual IP)"),
        check: Cmd::new(["test", "!", "-e", unit_file.as_str()]),
        run: Cmd::script(
            r#"systemctl disable --now "$1" || true
rm -f "$2" "$3" "$4"
systemctl daemon-reload"#,
            [UNIT, unit_file.as_str(), CONF, CHECK],
        ),
        restarts: vec![],
        after_units: false,
    });
    want
}

impl Step for InstallApiVip {
    fn id(&self) -> StepId {
        StepId::InstallApiVip
    }

    /// Every controller: where the cluster has no virtual IP (any more), keepalived's unit
    /// and files are taken away if an earlier spec put them there.
    fn targets<'c>(&self, cluster: &'c Cluster) -> Vec<&'c Node> {
        cluster.controllers().collect()
    }

    fn facts(&self, cx: &Cx, node: &Node) -> Vec<FactQuery> {
        if cx.cluster.kubernetes.api_server_vip.is_some() && cx.hosts.contains_key(&node.name) {
            vec![keepalived_present(node)]
        } else {
            Vec::new()
        }
    }

    fn desired(&self, cx: &Cx, node: &Node) -> Result<Desired> {
        let c = &cx.cluster;
        let Some(vip) = c.kubernetes.api_server_vip else {
            return Ok(none_left());
        };
        if cx.hosts.contains_key(&node.name)
            && let Fact::Not(why) = cx.fact_of(&keepalived_present(node))?
        {
            bail!(
                "{}: {why}; rebuild the image (kubicluster image build --force) and recreate the controller, or set spec.kubernetes.apiServerVIP: none",
                node.name
            );
        }
        let ctx = Ctx {
            cluster: c.name.clone(),
            node: node.name.clone(),
            ip: node.cluster_ip.to_string(),
            peers: c
                .controllers()
                .filter(|p| p.name != node.name)
                .map(|p| p.cluster_ip.to_string())
                .collect(),
            vip: vip.to_string(),
            prefix: c.networks.cluster.prefix_len(),
            interface: INTERFACE,
            vrid: router_id(&c.name),
            priority: priority(c, node),
            port: c.kubernetes.api_server_port,
        };
        let mut want = Desired::default();
        want.dir("/etc/keepalived", 0o755);
        want.file(
            CONF,
            Blob::new(render::render("controller/kubicluster-vip.conf.j2", &ctx)?),
            0o600,
            &[UNIT],
        );
        want.file(
            CHECK,
            Blob::new(render::render(
                "controller/kubicluster-check-apiserver.j2",
                &ctx,
            )?),
            0o700,
            &[UNIT],
        );
        // Reloaded when its configuration changes (a controller added or removed): the holder
        // keeps the address, where a restart would move it.
        want.unit(
            UnitSpec::started(
                UNIT,
                Blob::new(render::render(
                    "controller/kubicluster-vip.service.j2",
                    &ctx,
                )?),
            )
            .reloaded(),
        );
        Ok(want)
    }

    /// The API answers `/readyz` at the virtual IP (whichever controller holds it).
    fn verify(&self, cx: &Cx, _node: &Node) -> Result<()> {
        let k = &cx.cluster.kubernetes;
        let Some(vip) = k.api_server_vip else {
            return Ok(());
        };
        let server = format!("https://{vip}:{}", k.api_server_port);
        super::api_ready_at(
            cx,
            &server,
            &format!("the virtual IP: see journalctl -u {UNIT} on the controllers"),
        )
    }
}
