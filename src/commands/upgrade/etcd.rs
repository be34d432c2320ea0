//! The etcd part of `upgrade`: when the target release comes with another etcd than the members
//! run, etcd moves first, one member at a time (etcd's documented rolling upgrade): a member's
//! binary is replaced and it is restarted, and it must answer at the new version with every
//! member healthy before the next one is touched. Followers go first; before the leader's turn,
//! leadership is handed to a member already upgraded (`etcdctl move-leader`), so the cluster
//! changes leader once, on purpose, instead of waiting out an election timeout. etcd keeps the
//! cluster at the oldest member's version until the last one runs the new release, then moves
//! its storage version forward; from there going back needs etcd's own downgrade procedure, so
//! the skew rules refuse a downgrade across minors (`spec::skew::check_etcd`).
//!
//! What the members run is asked of etcd itself (`endpoint status`), not of a record: after a
//! failure or Ctrl-C the same `upgrade` finds the members already moved and goes on with the rest.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Deserialize;

use super::super::Ctx;
use crate::error::Failure;
use crate::host::Host;
use crate::spec::{Cluster, Node, Version, skew};
use crate::steps::install_etcd::{client_url, loopback_etcdctl as ctl};

/// One member as `etcdctl endpoint status -w json` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The client URL it was asked at (its advertised one with `--cluster`).
    pub endpoint: String,
    pub id: u64,
    pub version: Version,
    pub leader: bool,
    /// etcd ≥ 3.6: the storage version, moved to the new minor once every member runs it.
    pub storage: Option<String>,
}

#[derive(Deserialize)]
struct RawEndpoint {
    #[serde(rename = "Endpoint")]
    endpoint: String,
    #[serde(rename = "Status")]
    status: RawStatus,
}

#[derive(Deserialize)]
struct RawStatus {
    header: RawHeader,
    version: String,
    leader: u64,
    #[serde(rename = "storageVersion", default)]
    storage_version: Option<String>,
}

#[derive(Deserialize)]
struct RawHeader {
    member_id: u64,
}

/// Read `etcdctl endpoint status -w json`: one entry per endpoint that answered.
pub fn parse_status(json: &str) -> Result<Vec<Member>> {
    let raw: Vec<RawEndpoint> =
        serde_json::from_str(json.trim()).context("etcdctl endpoint status: unreadable JSON")?;
    raw.into_iter()
        .map(|e| {
            Ok(Member {
                version: e
                    .status
                    .version
                    .parse()
                    .map_err(|m: String| anyhow::anyhow!("{}: {m}", e.endpoint))?,
                leader: e.status.leader == e.status.header.member_id,
                id: e.status.header.member_id,
                storage: e.status.storage_version.filter(|s| !s.is_empty()),
                endpoint: e.endpoint,
            })
        })
        .collect()
}

/// The controllers in the order they are upgraded: followers in the file's order, the leader
/// last (a controller etcd did not report keeps its place among the followers).
pub fn order<'c>(cluster: &'c Cluster, members: &[Member]) -> Vec<&'c Node> {
    let leads = |n: &Node| {
        let url = client_url(cluster, n);
        members.iter().any(|m| m.leader && m.endpoint == url)
    };
    let mut nodes: Vec<&Node> = cluster.controllers().collect();
    nodes.sort_by_key(|n| leads(n)); // stable: the file's order otherwise
    nodes
}

/// The controllers whose member is not among those that answered.
pub fn silent<'c>(cluster: &'c Cluster, members: &[Member]) -> Vec<&'c str> {
    cluster
        .controllers()
        .filter(|n| {
            let url = client_url(cluster, n);
            !members.iter().any(|m| m.endpoint == url)
        })
        .map(|n| n.name.as_str())
        .collect()
}

/// The members' status asked through `host`: every member (`all`), or only its own. An
/// endpoint that does not answer is missing from the list (etcdctl still prints the others).
fn status(h: &dyn Host, cluster: &Cluster, all: bool) -> Result<Vec<Member>> {
    let mut cmd = ctl(cluster).arg("endpoint").arg("status");
    if all {
        cmd = cmd.arg("--cluster");
    }
    let o = h.run(&cmd.arg("-w").arg("json"))?;
    let text = o.stdout_text();
    if text.trim().is_empty() {
        anyhow::bail!("etcdctl endpoint status on {}: {}", h.name(), o.tail(3));
    }
    parse_status(&text)
}

fn healthy(h: &dyn Host, cluster: &Cluster) -> Result<bool> {
    let cmd = ctl(cluster).arg("endpoint").arg("health").arg("--cluster");
    Ok(h.run(&cmd)?.ok())
}

fn connect(cluster: &Cluster, node: &Node) -> Result<crate::host::ssh::SshHost> {
    crate::vms::connect(cluster, node, Duration::from_secs(20))
}

/// What every member runs, asked through the first controller that answers.
fn members(cluster: &Cluster) -> Result<Vec<Member>> {
    let mut last = None;
    for c in cluster.controllers() {
        match connect(cluster, c).and_then(|h| status(&h, cluster, true)) {
            Ok(m) if !m.is_empty() => return Ok(m),
            Ok(_) => last = Some(anyhow::anyhow!("{}: no member answered", c.name)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("the cluster has no controller")))
}

/// etcd's skew rules for `who` (a member, or the cluster as last recorded) going `from` → `to`.
pub fn allowed(from: Version, to: Version, who: &str) -> Result<()> {
    skew::check_etcd(from, to).map_err(|r| {
        Failure::bad_input(format!(
            "cannot move etcd from {from} to {to} ({who}): {}",
            r.rule
        ))
        .hint(format!(
            "keep etcd at an allowed release: {} (spec.versions.etcd, --etcd-version; with the build source, a Kubernetes release whose build set has it)",
            r.allowed
        ))
        .into()
    })
    .map(|_| ())
}

/// Move etcd to `cluster.versions.etcd` member by member (a plan only with `dry_run`).
/// Returns each member's time, or `None` when every member already runs that version.
pub fn roll(ctx: &mut Ctx, cluster: &Cluster, dry_run: bool) -> Result<Option<Vec<String>>> {
    let to = cluster.versions.etcd;
    let now = members(cluster).map_err(|e| {
        Failure::new(format!("etcd does not answer: {e:#}"))
            .hint("an upgrade needs every etcd member up: `kubicluster status` says which is down")
    })?;
    let silent = silent(cluster, &now);
    if !silent.is_empty() {
        return Err(Failure::new(format!(
            "etcd on {} does not answer: moving etcd one member at a time needs every other member healthy",
            silent.join(", ")
        ))
        .hint("`journalctl -u etcd` there says why (`kubicluster start` starts a stopped VM); nothing was changed, run the same upgrade again once it answers")
        .into());
    }
    if now.iter().all(|m| m.version == to) {
        return Ok(None);
    }
    for m in &now {
        allowed(m.version, to, &m.endpoint)?;
    }
    let order = order(cluster, &now);
    let mut from: Vec<Version> = now.iter().map(|m| m.version).collect();
    from.sort();
    from.dedup();
    let from: Vec<String> = from.iter().map(Version::to_string).collect();
    ctx.printer.status(&format!(
        "upgrade: etcd {} → {to} first, one member at a time (the leader last, leadership handed over first): {}",
        from.join(", "),
        order
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(" → ")
    ));
    let mut times = Vec::new();
    for (i, node) in order.iter().enumerate() {
        ctx.printer.status(&format!(
            "upgrade etcd [{}/{}] {}",
            i + 1,
            order.len(),
            node.name
        ));
        let t = Instant::now();
        if !dry_run {
            hand_over_leadership(ctx, cluster, node)?;
        }
        super::run_on(
            ctx,
            cluster,
            node,
            &[crate::engine::StepId::InstallEtcd],
            dry_run,
        )?;
        if !dry_run {
            wait_member(cluster, node, to)?;
            times.push(format!("{} {:.0} s", node.name, t.elapsed().as_secs_f64()));
        }
    }
    if !dry_run {
        ctx.printer.status(&format!(
            "upgrade: every etcd member runs {to}{}",
            storage(cluster, to)
        ));
    }
    Ok(Some(times))
}

/// If `node` leads, hand leadership to another member (one already at the target first). A
/// member just restarted can leave etcd slow to answer for a while (seen on TCG: the member
/// list timing out seconds after every member was healthy), so the hand-over is tried again
/// for up to a minute before the upgrade stops.
fn hand_over_leadership(ctx: &mut Ctx, cluster: &Cluster, node: &Node) -> Result<()> {
    let h = connect(cluster, node)?;
    let own = client_url(cluster, node);
    let to = cluster.versions.etcd;
    let attempt = || -> Result<Option<String>> {
        let all = status(&h, cluster, true)?;
        if !all.iter().any(|m| m.leader && m.endpoint == own) {
            return Ok(None);
        }
        let mut others: Vec<&Member> = all.iter().filter(|m| m.endpoint != own).collect();
        others.sort_by_key(|m| m.version != to);
        let Some(next) = others.first() else {
            return Ok(None); // a single member: it restarts, there is no one to lead meanwhile
        };
        let o = h.run(
            &ctl(cluster)
                .arg("move-leader")
                .arg(format!("{:x}", next.id)),
        )?;
        if !o.ok() {
            anyhow::bail!("etcdctl move-leader: {}", o.tail(3));
        }
        Ok(Some(next.endpoint.clone()))
    };
    let moved = crate::retry::until(Duration::from_secs(60), Duration::from_secs(3), || {
        attempt().map_err(crate::retry::NotYet::Again)
    })
    .map_err(|e| {
        Failure::new(format!(
            "{}: etcd leadership not handed over in 60 s: {e:#}",
            node.name
        ))
        .hint("`kubicluster status` says whether etcd is healthy; the members not yet upgraded were left as they are, and the same `upgrade` goes on from here")
    })?;
    if let Some(next) = moved {
        let to_name = cluster
            .controllers()
            .find(|n| client_url(cluster, n) == next)
            .map_or(next.as_str(), |n| n.name.as_str());
        ctx.printer.status(&format!(
            "upgrade: etcd leadership moved from {} to {to_name}",
            node.name
        ));
    }
    Ok(())
}

/// `node`'s member answers at `to` and every member is healthy (180 s).
fn wait_member(cluster: &Cluster, node: &Node, to: Version) -> Result<()> {
    let h = connect(cluster, node)?;
    let mut last = String::new();
    crate::retry::until(Duration::from_secs(180), Duration::from_secs(2), || {
        let r = (|| -> Result<Option<String>> {
            let own = status(&h, cluster, false)?;
            if !own.iter().any(|m| m.version == to) {
                let at: Vec<String> = own.iter().map(|m| m.version.to_string()).collect();
                return Ok(Some(format!("its member runs {}", at.join(", "))));
            }
            Ok((!healthy(&h, cluster)?).then(|| "not every member is healthy".to_string()))
        })();
        match r {
            Ok(None) => Ok(()),
            Ok(Some(why)) => {
                last = why;
                Err(crate::retry::NotYet::Again(()))
            }
            Err(e) => {
                last = format!("{e:#}");
                Err(crate::retry::NotYet::Again(()))
            }
        }
    })
    .map_err(|()| {
        Failure::new(format!(
            "{}: etcd not back at {to} after 180 s: {last}",
            node.name
        ))
        .hint("`journalctl -u etcd` on the controller says why; the members not yet upgraded were left as they are, and the same `upgrade` goes on from here")
        .into()
    })
}

/// ", storage version X" once etcd has moved it (it does so shortly after the last member).
fn storage(cluster: &Cluster, to: Version) -> String {
    let want = format!("{}.{}.0", to.major, to.minor);
    let mut seen = None;
    let _ = crate::retry::until(Duration::from_secs(30), Duration::from_secs(2), || {
        seen = members(cluster)
            .ok()
            .and_then(|m| m.into_iter().find_map(|m| m.storage));
        match &seen {
            Some(s) if *s == want => Ok(()),
            _ => Err(crate::retry::NotYet::Again(())),
        }
    });
    seen.map(|s| format!(", storage version {s}"))
        .unwrap_or_default()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// `endpoint status --cluster -w json` in etcdctl 3.7.3's shape (its output for one member,
    /// made three: the first upgraded, the second leading, the third without a storage version).
    const STATUS: &str = r#"[{"Endpoint":"https://192.168.24.11:2379","Status":{"header":{"cluster_id":324952591200643719,"member_id":3319814642761637952,"revision":9,"raft_term":3},"version":"3.7.3","dbSize":24576,"leader":17237436991929493444,"raftIndex":14,"raftTerm":3,"raftAppliedIndex":14,"dbSizeInUse":16384,"storageVersion":"3.6.0","dbSizeQuota":2147483648,"downgradeInfo":{}}},{"Endpoint":"https://192.168.24.12:2379","Status":{"header":{"cluster_id":324952591200643719,"member_id":17237436991929493444,"revision":9,"raft_term":3},"version":"3.6.16","dbSize":24576,"leader":17237436991929493444,"raftIndex":14,"raftTerm":3,"raftAppliedIndex":14,"dbSizeInUse":16384,"storageVersion":"3.6.0","dbSizeQuota":2147483648}},{"Endpoint":"https://192.168.24.13:2379","Status":{"header":{"cluster_id":324952591200643719,"member_id":42,"revision":9,"raft_term":3},"version":"3.6.16","dbSize":24576,"leader":17237436991929493444,"raftIndex":14,"raftTerm":3,"raftAppliedIndex":14,"dbSizeInUse":16384,"dbSizeQuota":2147483648}}]"#;

    /// Three controllers, kubi-controller-01 to -03.
    pub(in super::super) fn three() -> Cluster {
        let ov = crate::spec::Overrides {
            work_dir: Some(std::env::temp_dir().display().to_string()),
            controllers: (1..=3)
                .map(|i| format!("kubi-controller-0{i},192.168.24.1{i},192.168.122.1{i}"))
                .collect(),
            ..Default::default()
        };
        crate::spec::resolve(None, &ov, &|_| None).unwrap().0
    }

    #[test]
    fn the_status_is_read_member_by_member_with_the_leader_and_storage_version() {
        let m = parse_status(STATUS).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].version, "3.7.3".parse().unwrap());
        assert!(!m[0].leader && m[1].leader && !m[2].leader);
        assert_eq!(m[1].id, 17237436991929493444);
        assert_eq!(m[0].storage.as_deref(), Some("3.6.0"));
        assert_eq!(m[2].storage, None, "a member without the field");
        assert!(parse_status("Error: context deadline exceeded").is_err());
    }

    #[test]
    fn the_leader_goes_last_and_the_followers_keep_the_file_order() {
        let c = three();
        let m = parse_status(STATUS).unwrap();
        let names: Vec<&str> = order(&c, &m).iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "kubi-controller-01",
                "kubi-controller-03",
                "kubi-controller-02"
            ]
        );
        assert!(silent(&c, &m).is_empty(), "all three answered");
        assert_eq!(silent(&c, &m[1..]), ["kubi-controller-01"]);
        // No member reported (etcd down): the file's order.
        let names: Vec<&str> = order(&c, &[]).iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "kubi-controller-01",
                "kubi-controller-02",
                "kubi-controller-03"
            ]
        );
    }
}
