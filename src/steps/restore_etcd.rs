//! `restore_etcd` — `kubicluster etcd restore SNAPSHOT`: disaster recovery of the whole
//! cluster's state. On every controller: the control plane and etcd are stopped, the snapshot
//! (checked whole on the hypervisor first) is copied in, restored into a new data directory
//! with this cluster's members and a new cluster token, and swapped in; the old
//! `/var/lib/etcd` is moved to `/var/lib/etcd.restore-<stamp>`, never deleted. The
//! `install_etcd` and `install_kubernetes_controllers` steps that follow start etcd (every
//! member from the same snapshot, so they agree) and the control plane again, and
//! [`RestartAfterRestore`] restarts each worker's kubelet and kube-proxy so nothing keeps state
//! read before the restore.
//!
//! Re-running with the same stamp after a kill goes on where it stopped: a member counts as
//! restored once its data of this stamp is in place.

use anyhow::Result;

use crate::engine::{Blob, Cx, Desired, GuardedCmd, Step, StepId};
use crate::host::Cmd;
use crate::spec::{Cluster, Node};

pub struct RestoreEtcd {
    pub stamp: String,
    pub snapshot: Blob,
}

use super::install_etcd::{DATA, peer_url};

/// The units stopped before etcd's data is swapped (started again by the steps after).
const STOPPED: &str =
    "kube-apiserver.service kube-controller-manager.service kube-scheduler.service etcd.service";

impl RestoreEtcd {
    fn node_file(&self) -> String {
        format!(
            "{}/restore-{}.db",
            super::snapshot_etcd::NODE_DIR,
            self.stamp
        )
    }

    /// The token of the restored cluster: new, so no member of the old one can join it.
    pub fn token(&self, cluster: &Cluster) -> String {
        format!("{}-restore-{}", cluster.etcd.cluster_token, self.stamp)
    }

    pub fn aside(&self) -> String {
        format!("{DATA}.restore-{}", self.stamp)
    }
}

impl Step for RestoreEtcd {
    fn id(&self) -> StepId {
        StepId::RestoreEtcd
    }

    fn artifacts(&self, _cluster: &Cluster) -> Vec<&'static str> {
        vec!["etcd"]
    }

    fn targets<'c>(&self, cluster: &'c Cluster) -> Vec<&'c Node> {
        cluster.controllers().collect()
    }

    fn desired(&self, cx: &Cx, node: &Node) -> Result<Desired> {
        let c = &cx.cluster;
        let bin = super::bin_dir(cx, "etcd");
        let mut want = Desired::default();
        // etcdutl (etcd ≥ 3.5) with the other etcd binaries; no unit restarted for it here.
        super::install_artifact(&mut want, cx.inputs.artifact("etcd"), &[]);
        super::snapshot_etcd::node_dir(&mut want);
        let file = self.node_file();
        want.secret(&file, self.snapshot.clone(), &[]);
        let members: Vec<String> = c
            .controllers()
            .map(|m| format!("{}={}", m.name, peer_url(c, m)))
            .collect();
        let peer = peer_url(c, node);
        let aside = self.aside();
        let token = self.token(c);
        want.command(GuardedCmd {
            what: format!("restore etcd from the snapshot (old data to {aside})"),
            // Restored: this stamp's old data is aside and new data in place.
            check: Cmd::script(
                &format!(r#"[ -d "$1" ] && [ -d {DATA}/member ]"#),
                [aside.as_str()],
            ),
            run: Cmd::script(
                &format!(
                    r#"set -e
systemctl stop {STOPPED} 2>/dev/null || true
# The old data goes aside once; a partial restore of this stamp is ours to redo.
if [ -d "$1" ]; then rm -rf {DATA}; elif [ -d {DATA} ]; then mv {DATA} "$1"; else mkdir -p "$1"; fi
rm -rf {DATA}.restoring
if [ -x {bin}/etcdutl ]; then tool={bin}/etcdutl; else tool={bin}/etcdctl; fi
"$tool" snapshot restore "$2" --name "$3" --initial-cluster "$4" \
  --initial-cluster-token "$5" --initial-advertise-peer-urls "$6" --data-dir {DATA}.restoring >/dev/null
chmod 700 {DATA}.restoring
chown -R etcd:etcd {DATA}.restoring
mv {DATA}.restoring {DATA}"#
                ),
                [
                    aside.as_str(),
                    file.as_str(),
                    node.name.as_str(),
                    members.join(",").as_str(),
                    token.as_str(),
                    peer.as_str(),
                ],
            ),
            restarts: vec![],
            after_units: false,
        });
        Ok(want)
    }
}

/// After a restore: each worker's kubelet and kube-proxy restarted once (per restore), so their
/// caches are read again from the restored state.
pub struct RestartAfterRestore {
    pub stamp: String,
}

impl Step for RestartAfterRestore {
    fn id(&self) -> StepId {
        StepId::RestartAfterRestore
    }

    fn targets<'c>(&self, cluster: &'c Cluster) -> Vec<&'c Node> {
        cluster.workers().collect()
    }

    fn desired(&self, _cx: &Cx, _node: &Node) -> Result<Desired> {
        let mut want = Desired::default();
        let marker = format!("/run/kubicluster/restored-{}", self.stamp);
        want.command(GuardedCmd {
            what: "restart kubelet and kube-proxy (state restored)".into(),
            check: Cmd::new(["test", "-e", marker.as_str()]),
            run: Cmd::script(
                r#"systemctl try-restart kubelet.service kube-proxy.service
mkdir -p /run/kubicluster && touch "$1""#,
                [marker.as_str()],
            ),
            restarts: vec![],
            after_units: false,
        });
        Ok(want)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Cx;

    fn three_controllers() -> Cluster {
        let ov = crate::spec::Overrides {
            work_dir: Some(std::env::temp_dir().display().to_string()),
            controllers: (1..=3)
                .map(|i| format!("kubi-controller-0{i},192.168.24.1{i},192.168.122.1{i}"))
                .collect(),
            workers: vec!["kubi-worker-01,192.168.24.21,192.168.122.21".into()],
            ..Default::default()
        };
        crate::spec::resolve(None, &ov, &|_| None).unwrap().0
    }

    #[test]
    fn every_member_is_restored_into_the_same_new_cluster_and_the_old_data_kept() {
        let c = three_controllers();
        let step = RestoreEtcd {
            stamp: "20261204T190000".into(),
            snapshot: Blob::new(b"snapshot".to_vec()),
        };
        assert_eq!(
            step.targets(&c)
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>(),
            [
                "kubi-controller-01",
                "kubi-controller-02",
                "kubi-controller-03"
            ]
        );
        let cx = Cx::new(c.clone(), Default::default(), Default::default());
        let members = "kubi-controller-01=https://192.168.24.11:2380,\
                       kubi-controller-02=https://192.168.24.12:2380,\
                       kubi-controller-03=https://192.168.24.13:2380";
        for node in step.targets(&c) {
            let want = step.desired(&cx, node).unwrap();
            let snap = want
                .files
                .iter()
                .find(|f| f.path == "/var/backups/kubicluster/restore-20261204T190000.db")
                .expect("the snapshot is copied to the node");
            assert!(snap.secret && snap.mode == 0o600, "{snap:?}");
            let [cmd] = &want.commands[..] else {
                panic!("one command: {:?}", want.commands)
            };
            let args: Vec<&str> = cmd.run.argv.iter().map(|a| a.value.as_str()).collect();
            // sh -c SCRIPT sh ASIDE SNAPSHOT NAME MEMBERS TOKEN PEER
            assert_eq!(
                &args[4..],
                [
                    "/var/lib/etcd.restore-20261204T190000",
                    "/var/backups/kubicluster/restore-20261204T190000.db",
                    node.name.as_str(),
                    members,
                    &format!("{}-restore-20261204T190000", c.etcd.cluster_token),
                    &format!("https://{}:2380", node.cluster_ip),
                ]
            );
            let script = args[2];
            assert!(
                script.contains(r#"mv /var/lib/etcd "$1""#),
                "old data moved aside: {script}"
            );
            // /var/lib/etcd is removed only once the data before is aside (a re-run's partial
            // output of this restore).
            assert!(
                script.contains(r#"if [ -d "$1" ]; then rm -rf /var/lib/etcd; elif"#),
                "{script}"
            );
            assert!(
                script.contains("kube-apiserver.service"),
                "the API server stops first"
            );
            let check: Vec<&str> = cmd.check.argv.iter().map(|a| a.value.as_str()).collect();
            assert_eq!(check[4], "/var/lib/etcd.restore-20261204T190000");
        }
    }
}
