//! `reset_etcd_data` — the original's `-fedr`, made safe: only with `--yes`, only after
//! [`super::snapshot_etcd`] saved a snapshot on the hypervisor, and nothing is deleted: on every
//! controller etcd is stopped, `/var/lib/etcd` moves to `/var/lib/etcd.reset-<stamp>` and the
//! bootstrap settings go, so the `install_etcd` step that follows bootstraps a new cluster.

use crate::engine::StepId;
use anyhow::Result;

use crate::engine::{Cx, Desired, GuardedCmd, Step};
use crate::host::Cmd;
use crate::spec::{Cluster, Node};

pub struct ResetEtcdData {
    pub stamp: String,
}

impl Step for ResetEtcdData {
    fn id(&self) -> StepId {
        StepId::ResetEtcdData
    }

    fn targets<'c>(&self, cluster: &'c Cluster) -> Vec<&'c Node> {
        cluster.controllers().collect()
    }

    fn desired(&self, _cx: &Cx, _node: &Node) -> Result<Desired> {
        let mut want = Desired::default();
        let aside = format!("/var/lib/etcd.reset-{}", self.stamp);
        want.command(GuardedCmd {
            what: format!("stop etcd and move /var/lib/etcd to {aside}"),
            // Done once the data of this reset is set aside (a re-run after a kill goes on).
            check: Cmd::script(r#"[ -d "$1" ] && [ ! -d /var/lib/etcd/member ]"#, [&aside]),
            run: Cmd::script(
                r#"systemctl stop etcd.service || true
if [ -d /var/lib/etcd ]; then mv /var/lib/etcd "$1"; else mkdir -p "$1"; fi
install -d -m 0700 /var/lib/etcd
rm -f /etc/etcd/bootstrap.env"#,
                [&aside],
            ),
            restarts: vec![],
            after_units: false,
        });
        Ok(want)
    }
}
