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

const DATA: &str = "/var/lib/etcd";

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
        want.dir("/var/backups", 0o755)
            .dir(super::snapshot_etcd::NODE_DIR, 0o700);
        let file = self.node_file();
        want.secret(&file, self.snapshot.clone(), &[]);
        let members: Vec<String> = c
            .controllers()
            .map(|m| format!("{}=https://{}:{}", m.name, m.cluster_ip, c.etcd.peer_port))
            .collect();
        let peer = format!("https://{}:{}", node.cluster_ip, c.etcd.peer_port);
        let aside = self.aside();
        let token = self.token(c);
        want.command(GuardedCmd {
            what: format!("restore etcd from the snapshot (old data to {aside})"),
            // Restored: this stamp's old data is aside and new data in place.
            check: Cmd::script(
                r#"[ -d "$1" ] && [ -d /var/lib/etcd/member ]"#,
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
