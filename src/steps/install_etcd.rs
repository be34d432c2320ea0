//! `install_etcd` — KTHW lab 07 ("Bootstrapping the etcd Cluster"), with what KTHW leaves out:
//! TLS on client and peer ports with per-member certs from the etcd CA, one member per
//! controller, and correct membership. A cluster is bootstrapped (`new`) only while no
//! controller has data; a controller added later is `member add`ed through a running member and
//! starts `existing`; a controller taken out of the spec is `member remove`d through the first
//! member with data. The bootstrap settings live in `/etc/etcd/bootstrap.env`, written once and
//! never updated (etcd ignores them once it has data), so the unit stays identical on every
//! member and a re-run changes nothing. Data is never wiped.

use crate::engine::StepId;
use anyhow::Result;

use crate::engine::{Blob, Cx, Desired, Fact, FactQuery, GuardedCmd, Step, UnitSpec};
use crate::host::Cmd;
use crate::render;
use crate::spec::{Cluster, Node};

pub struct InstallEtcd;

/// etcd's data directory on a controller.
pub const DATA: &str = "/var/lib/etcd";
const UNIT: &str = "etcd.service";

#[derive(serde::Serialize)]
struct UnitCtx<'a> {
    cluster: &'a str,
    name: &'a str,
    ip: String,
    client_port: u16,
    peer_port: u16,
    bin_dir: &'a str,
    /// (heartbeat, election timeout) in ms where the spec differs from etcd's defaults.
    timing: Option<(u32, u32)>,
}

#[derive(serde::Serialize)]
struct BootstrapCtx {
    initial_cluster: String,
    state: &'static str,
    token: String,
}

pub fn peer_url(cluster: &Cluster, n: &Node) -> String {
    format!("https://{}:{}", n.cluster_ip, cluster.etcd.peer_port)
}

pub fn client_url(cluster: &Cluster, n: &Node) -> String {
    format!("https://{}:{}", n.cluster_ip, cluster.etcd.client_port)
}

/// A member's client URL as asked on its own controller.
fn loopback_url(cluster: &Cluster) -> String {
    format!("https://127.0.0.1:{}", cluster.etcd.client_port)
}

/// etcdctl on a controller, authenticated with that member's server cert (client usage too).
pub fn etcdctl(bin_dir: &str, endpoints: &str) -> Cmd {
    Cmd::new([
        format!("{bin_dir}/etcdctl"),
        format!("--endpoints={endpoints}"),
        "--cacert=/etc/etcd/etcd-ca.pem".into(),
        "--cert=/etc/etcd/server.pem".into(),
        "--key=/etc/etcd/server-key.pem".into(),
        "--dial-timeout=5s".into(),
    ])
}

/// etcdctl on a controller against its own member, outside a step (no artifacts at hand: the
/// binary where the cluster's source installs it).
pub fn loopback_etcdctl(cluster: &Cluster) -> Cmd {
    etcdctl(&super::bin_dir_for(cluster, "etcd"), &loopback_url(cluster))
}

/// etcdctl on a controller against its own member (loopback client URL).
pub fn local_etcdctl(cx: &Cx) -> Cmd {
    etcdctl(&bin_dir(cx), &loopback_url(&cx.cluster))
}

fn bin_dir(cx: &Cx) -> String {
    super::bin_dir(cx, "etcd")
}

/// Does controller `c` hold etcd data? One process (`test`), not a stat script: every process
/// is slow on an emulated guest.
fn has_data(c: &Node) -> FactQuery {
    FactQuery {
        key: format!("etcd-data:{}", c.name),
        node: c.name.clone(),
        cmd: Cmd::new(["test", "-d", &format!("{DATA}/member")]),
        read: |ok, _| Fact::check(ok, || "no etcd data".into()),
    }
}

/// The facts every controller's plan reads: which controllers hold data (the reachable ones).
fn data_facts(cx: &Cx) -> Vec<FactQuery> {
    cx.cluster
        .controllers()
        .filter(|c| cx.hosts.contains_key(&c.name))
        .map(has_data)
        .collect()
}

/// Which controllers already hold etcd data (read-only; once per step, not per node).
fn members_with_data(cx: &Cx) -> Result<Vec<Node>> {
    let mut out = Vec::new();
    for q in data_facts(cx) {
        if cx.fact_of(&q)?.holds() {
            out.push(cx.cluster.node(&q.node).expect("a controller").clone());
        }
    }
    Ok(out)
}

impl Step for InstallEtcd {
    fn id(&self) -> StepId {
        StepId::InstallEtcd
    }

    fn artifacts(&self, _cluster: &Cluster) -> Vec<&'static str> {
        vec!["etcd"]
    }

    fn targets<'c>(&self, cluster: &'c Cluster) -> Vec<&'c Node> {
        cluster.controllers().collect()
    }

    fn facts(&self, cx: &Cx, _node: &Node) -> Vec<FactQuery> {
        data_facts(cx)
    }

    fn desired(&self, cx: &Cx, node: &Node) -> Result<Desired> {
        let c = &cx.cluster;
        let bin = bin_dir(cx);
        let mut want = Desired::default();
        want.dir("/etc/etcd", 0o700).dir(DATA, 0o700);
        // etcd runs as its own system user (the unit's User=); systemd gives it the data dir.
        want.command(GuardedCmd {
            what: "create the system user etcd".into(),
            check: Cmd::new(["getent", "passwd", "etcd"]),
            run: Cmd::new([
                "useradd",
                "--system",
                "--user-group",
                "--home-dir",
                DATA,
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                "etcd",
            ]),
            restarts: vec![UNIT.into()],
            after_units: false,
        });
        super::install_artifact(&mut want, cx.inputs.artifact("etcd"), &[UNIT]);
        want.file(
            "/etc/etcd/etcd-ca.pem",
            cx.inputs.pki("etcd-ca.pem")?,
            0o600,
            &[UNIT],
        );
        for (kind, file) in [("server", "server"), ("peer", "peer")] {
            let base = format!("etcd-{kind}-{}", node.name);
            want.file(
                &format!("/etc/etcd/{file}.pem"),
                cx.inputs.pki(&format!("{base}.pem"))?,
                0o600,
                &[UNIT],
            );
            want.secret(
                &format!("/etc/etcd/{file}-key.pem"),
                cx.inputs.pki(&format!("{base}-key.pem"))?,
                &[UNIT],
            );
        }
        // Membership: bootstrap together, or join what runs.
        let with_data = if cx.hosts.is_empty() {
            Vec::new()
        } else {
            members_with_data(cx)?
        };
        let joining = !with_data.is_empty() && !with_data.iter().any(|m| m.name == node.name);
        let members: Vec<Node> = if with_data.is_empty() {
            c.controllers().cloned().collect()
        } else {
            let mut m = with_data.clone();
            if joining {
                m.push(node.clone());
            }
            m
        };
        let initial: Vec<String> = members
            .iter()
            .map(|m| format!("{}={}", m.name, peer_url(c, m)))
            .collect();
        let env = render::render(
            "controller/etcd-bootstrap.env.j2",
            &BootstrapCtx {
                initial_cluster: initial.join(","),
                state: if joining { "existing" } else { "new" },
                token: c.etcd.cluster_token.clone(),
            },
        )?;
        want.file("/etc/etcd/bootstrap.env", Blob::new(env), 0o600, &[]);
        want.files.last_mut().expect("pushed").create_only = true;
        if joining {
            let endpoints: Vec<String> = with_data.iter().map(|m| client_url(c, m)).collect();
            let ctl = etcdctl(&bin, &endpoints.join(","));
            let peer = peer_url(c, node);
            let list = format!("{} member list", ctl.shell_line());
            want.command(GuardedCmd {
                what: format!(
                    "etcd member add {} {peer} (through {})",
                    node.name,
                    endpoints.join(",")
                ),
                check: Cmd::script(&format!("{list} | grep -qF -- \"$1\""), [&peer]),
                run: Cmd::script(
                    &format!(
                        "{list} | grep -qF -- \"$2\" || {} member add \"$1\" --peer-urls=\"$2\"",
                        ctl.shell_line()
                    ),
                    [node.name.as_str(), peer.as_str()],
                ),
                restarts: Vec::new(),
                after_units: false,
            });
        }
        // The first member with data removes members that are no longer controllers (a
        // controller taken out of the spec), so the quorum counts only real members.
        if with_data.first().is_some_and(|m| m.name == node.name) {
            let ctl = local_etcdctl(cx).shell_line();
            let allowed: Vec<String> = c.controllers().map(|m| peer_url(c, m)).collect();
            let scan = |act: &str| {
                format!(
                    "allowed=\" $* \"\n{ctl} member list | while IFS=', ' read -r id status name peer rest; do\n\
                     case \"$allowed\" in *\" $peer \"*) ;; *) {act} ;; esac; done"
                )
            };
            want.command(GuardedCmd {
                what: "etcd: remove members that are no longer controllers".into(),
                check: Cmd::script(&scan("exit 1"), &allowed),
                run: Cmd::script(
                    &scan(&format!(
                        "echo \"removing $name $peer\"; {ctl} member remove \"$id\" || exit 1"
                    )),
                    &allowed,
                ),
                restarts: Vec::new(),
                after_units: true,
            });
        }
        let unit = render::render(
            "controller/etcd.service.j2",
            &UnitCtx {
                cluster: &c.name,
                name: &node.name,
                ip: node.cluster_ip.to_string(),
                client_port: c.etcd.client_port,
                peer_port: c.etcd.peer_port,
                bin_dir: &bin,
                timing: c.etcd.custom_timing(),
            },
        )?;
        want.unit(UnitSpec {
            name: UNIT.into(),
            file: Blob::new(unit),
            enable: true,
            start: true,
            no_block: true,
            not_started: None,
            reload: false,
        });
        Ok(want)
    }

    fn verify(&self, cx: &Cx, node: &Node) -> Result<()> {
        let host = cx.host(&node.name)?;
        let ctl = local_etcdctl(cx);
        let health = ctl.arg("endpoint").arg("health");
        // An SSH failure ends the wait at once; an unhealthy answer is tried again.
        let mut last = None;
        crate::retry::until(
            std::time::Duration::from_secs(180),
            std::time::Duration::from_secs(2),
            || match host.run(&health) {
                Ok(o) if o.ok() => Ok(()),
                Ok(o) => {
                    last = Some(o);
                    Err(None.into())
                }
                Err(e) => Err(crate::retry::NotYet::Stop(Some(e))),
            },
        )
        .map_err(|e| match e {
            Some(e) => anyhow::Error::from(e),
            None => {
                let journal = host
                    .run(&Cmd::new(["journalctl", "-u", UNIT, "-n", "20", "--no-pager"]))
                    .map(|j| j.tail(20))
                    .unwrap_or_default();
                crate::error::Failure::new(format!(
                    "{}: etcd is not healthy after 180 s: {}\nlast journal lines of {UNIT}:\n{journal}",
                    node.name,
                    last.map(|o| o.tail(3)).unwrap_or_default()
                ))
                .hint("see `journalctl -u etcd` on the node; the other members must be up for a quorum")
                .into()
            }
        })?;
        tracing::info!(node = %node.name, "etcd healthy");
        Ok(())
    }
}
