//! `snapshot_etcd` — before etcd data is reset (`create-controllers -fedr --yes`): an
//! `etcdctl snapshot save` on the first controller with data, copied to the hypervisor as
//! `<workDir>/<cluster>/backups/etcd-<stamp>.db` (0600), checked whole ([`crate::backups`]).
//! Also `kubicluster etcd backup`. The node keeps only its latest snapshot.

use crate::engine::StepId;
use anyhow::{Context, Result, bail};

use crate::engine::{Cx, Desired, GuardedCmd, Step};
use crate::host::Cmd;
use crate::spec::{Cluster, Node};

pub struct SnapshotEtcd {
    pub stamp: String,
}

pub const NODE_DIR: &str = "/var/backups/kubicluster";

impl SnapshotEtcd {
    fn node_path(&self) -> String {
        format!("{NODE_DIR}/etcd-{}.db", self.stamp)
    }

    pub fn local_path(&self, cluster: &Cluster) -> std::path::PathBuf {
        cluster
            .cluster_dir()
            .join("backups")
            .join(format!("etcd-{}.db", self.stamp))
    }
}

impl Step for SnapshotEtcd {
    fn id(&self) -> StepId {
        StepId::SnapshotEtcd
    }

    fn artifacts(&self, _cluster: &Cluster) -> Vec<&'static str> {
        vec!["etcd"]
    }

    fn targets<'c>(&self, cluster: &'c Cluster) -> Vec<&'c Node> {
        cluster.controllers().take(1).collect()
    }

    fn desired(&self, cx: &Cx, _node: &Node) -> Result<Desired> {
        let c = &cx.cluster;
        let bin = super::bin_dir(cx, "etcd");
        let ctl = super::install_etcd::etcdctl(
            &bin,
            &format!("https://127.0.0.1:{}", c.etcd.client_port),
        );
        let mut want = Desired::default();
        want.dir("/var/backups", 0o755).dir(NODE_DIR, 0o700);
        let path = self.node_path();
        want.command(GuardedCmd {
            what: format!("etcd snapshot save {path}"),
            check: Cmd::new(["test", "-s", path.as_str()]),
            run: Cmd::script(
                &format!(
                    "{} snapshot save \"$1.part\" && chmod 600 \"$1.part\" && mv \"$1.part\" \"$1\" \
                     && find {NODE_DIR} -maxdepth 1 -name 'etcd-*.db' ! -path \"$1\" -delete",
                    ctl.shell_line()
                ),
                [path.as_str()],
            ),
            restarts: vec![],
            after_units: false,
        });
        Ok(want)
    }

    fn verify_unchanged(&self) -> bool {
        true
    }

    /// The snapshot is on the hypervisor, whole.
    fn verify(&self, cx: &Cx, node: &Node) -> Result<()> {
        let data = cx
            .host(&node.name)?
            .read_file(&self.node_path())?
            .with_context(|| format!("{}: {} is missing", node.name, self.node_path()))?;
        if let Err(e) = crate::backups::verify(&data) {
            bail!(
                "{}: the etcd snapshot {}: {e:#}",
                node.name,
                self.node_path()
            );
        }
        let local = self.local_path(&cx.cluster);
        crate::fsutil::ensure_dir(
            local.parent().expect("has a parent"),
            crate::fsutil::PRIVATE_DIR,
        )?;
        crate::fsutil::write_atomic(&local, &data, crate::fsutil::SECRET)?;
        tracing::info!(path = %local.display(), bytes = data.len(), "etcd snapshot saved");
        Ok(())
    }
}
