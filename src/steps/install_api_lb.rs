//! `install_api_lb` — the API's load-balancer VM (kind's "external load balancer" for several
//! control-plane nodes, kubeadm's haproxy option): a node with role `loadbalancer` runs haproxy,
//! which passes each TLS connection to its address on to one controller's kube-apiserver —
//! the one with the fewest connections among those whose `/readyz` answers. Certificates and
//! every kubeconfig name its address (`spec::validate` makes it the API's), so a controller
//! lost or restarted costs its clients their open connections, not the API, and the load is
//! spread over every API server (a virtual IP leads to one at a time).
//!
//! The load balancer itself is one VM: losing it loses the API's address (use the controllers'
//! virtual IP for an address that survives any one VM). haproxy comes with kubicluster's image
//! (Debian's package, its own unit masked); the step checks it is there before it writes
//! anything.

use anyhow::{Result, bail};

use crate::engine::{Blob, Cx, Desired, Fact, FactQuery, Step, StepId, UnitSpec};
use crate::host::Cmd;
use crate::render;
use crate::spec::{Cluster, Node};

pub struct InstallApiLb;

/// The unit that runs haproxy for the API.
pub const UNIT: &str = "kubicluster-api-lb.service";
pub const CONFIG: &str = "/etc/haproxy/kubicluster-api-lb.cfg";
/// haproxy's statistics socket (read-only level): `status` asks it which controllers are up.
pub const SOCKET: &str = "/run/kubicluster-api-lb/stats.sock";
const HAPROXY: &str = "/usr/sbin/haproxy";

#[derive(serde::Serialize)]
struct Server {
    name: String,
    ip: String,
}

#[derive(serde::Serialize)]
struct Ctx {
    cluster: String,
    ip: String,
    bind: String,
    port: u16,
    config: &'static str,
    socket: String,
    servers: Vec<Server>,
}

fn haproxy_present(node: &Node) -> FactQuery {
    FactQuery {
        key: format!("haproxy:{}", node.name),
        node: node.name.clone(),
        cmd: Cmd::new(["test", "-x", HAPROXY]),
        read: |ok, _| {
            Fact::check(ok, || {
                format!("{HAPROXY} is missing: the VM's image predates the API's load balancer")
            })
        },
    }
}

/// What the configuration and the unit are rendered from: every controller a server, haproxy
/// listening on `bind` (every address of the VM: `*`) at the API's port, its statistics at
/// `socket`.
fn context(cluster: &Cluster, bind: &str, socket: &str) -> Ctx {
    let k = &cluster.kubernetes;
    Ctx {
        cluster: cluster.name.clone(),
        ip: k.api_server_ip.to_string(),
        bind: bind.to_string(),
        port: k.api_server_port,
        config: CONFIG,
        socket: socket.to_string(),
        servers: cluster
            .controllers()
            .map(|c| Server {
                name: c.name.clone(),
                ip: c.cluster_ip.to_string(),
            })
            .collect(),
    }
}

/// haproxy's configuration for `cluster`'s load balancer (see [`context`]).
pub fn config(cluster: &Cluster, bind: &str, socket: &str) -> Result<String> {
    Ok(render::render(
        "loadbalancer/kubicluster-api-lb.cfg.j2",
        &context(cluster, bind, socket),
    )?)
}

impl Step for InstallApiLb {
    fn id(&self) -> StepId {
        StepId::InstallApiLoadBalancer
    }

    fn targets<'c>(&self, cluster: &'c Cluster) -> Vec<&'c Node> {
        cluster.load_balancers().collect()
    }

    fn facts(&self, cx: &Cx, node: &Node) -> Vec<FactQuery> {
        if cx.hosts.contains_key(&node.name) {
            vec![haproxy_present(node)]
        } else {
            Vec::new()
        }
    }

    fn desired(&self, cx: &Cx, node: &Node) -> Result<Desired> {
        let c = &cx.cluster;
        if cx.hosts.contains_key(&node.name)
            && let Fact::Not(why) = cx.fact_of(&haproxy_present(node))?
        {
            bail!(
                "{}: {why}; rebuild the image (kubicluster image build --force), then `kubicluster destroy {}` and `kubicluster up` (it holds no state)",
                node.name,
                node.name
            );
        }
        let ctx = context(c, "*", SOCKET);
        let mut want = Desired::default();
        want.dir("/etc/haproxy", 0o755);
        want.file(
            CONFIG,
            Blob::new(render::render(
                "loadbalancer/kubicluster-api-lb.cfg.j2",
                &ctx,
            )?),
            0o644,
            &[UNIT],
        );
        // A controller added or removed: reloaded, so open connections to the others stay.
        want.unit(
            UnitSpec::started(
                UNIT,
                Blob::new(render::render(
                    "loadbalancer/kubicluster-api-lb.service.j2",
                    &ctx,
                )?),
            )
            .reloaded(),
        );
        Ok(want)
    }

    /// The API answers `/readyz` through the load balancer.
    fn verify(&self, cx: &Cx, node: &Node) -> Result<()> {
        let server = format!(
            "https://{}:{}",
            node.cluster_ip, cx.cluster.kubernetes.api_server_port
        );
        super::api_ready_at(
            cx,
            &server,
            &format!(
                "the load balancer: see journalctl -u {UNIT} on {}",
                node.name
            ),
        )
    }
}
