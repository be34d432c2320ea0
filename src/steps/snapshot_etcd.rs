//! `snapshot_etcd` — before etcd data is reset (`create-controllers -fedr --yes`): an
//! `etcdctl snapshot save` on the first controller with data, copied to the hypervisor as
//! `<workDir>/<cluster>/backups/etcd-<stamp>.db` (0600), checked whole ([`crate::backups`]).
//! Also `kubicluster etcd backup`, which with it pulls the snapshots the scheduled backup
//! ([`super::schedule_etcd_backup`]) took on the node since. The node keeps its newest
//! [`NODE_KEEP`].

use crate::engine::StepId;
use anyhow::{Context, Result, bail};

use crate::engine::{Cx, Desired, GuardedCmd, Step};
use crate::host::Cmd;
use crate::spec::{Cluster, Node};

pub struct SnapshotEtcd {
    pub stamp: String,
}

pub const NODE_DIR: &str = "/var/backups/kubicluster";

/// Snapshots a controller keeps (the hypervisor keeps its own count: `etcd backup --keep`).
pub const NODE_KEEP: usize = 3;

/// The node's backup directory (0700 under /var/backups), for every step that writes there.
pub fn node_dir(want: &mut Desired) -> &mut Desired {
    want.dir("/var/backups", 0o755).dir(NODE_DIR, 0o700)
}

/// Shell that removes all but the newest [`NODE_KEEP`] snapshots on the node.
pub fn node_retention() -> String {
    format!(
        "ls -1 {NODE_DIR}/etcd-*.db 2>/dev/null | sort -r | tail -n +{} | xargs -r rm -f",
        NODE_KEEP + 1
    )
}

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
        let ctl = super::install_etcd::local_etcdctl(cx);
        let mut want = Desired::default();
        node_dir(&mut want);
        let path = self.node_path();
        want.command(GuardedCmd {
            what: format!("etcd snapshot save {path}"),
            check: Cmd::new(["test", "-s", path.as_str()]),
            run: Cmd::script(
                &format!(
                    "{} snapshot save \"$1.part\" && chmod 600 \"$1.part\" && mv \"$1.part\" \"$1\" && {}",
                    ctl.shell_line(),
                    node_retention()
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

    /// The snapshot is on the hypervisor, whole; so is every other snapshot the node holds
    /// (a scheduled backup's) that the hypervisor has not yet.
    fn verify(&self, cx: &Cx, node: &Node) -> Result<()> {
        let host = cx.host(&node.name)?;
        let listing = host.run(&Cmd::script(
            &format!("ls -1 {NODE_DIR}/ 2>/dev/null || true"),
            [] as [&str; 0],
        ))?;
        let ours = format!("etcd-{}.db", self.stamp);
        let mut names: Vec<String> = listing
            .stdout_text()
            .lines()
            .map(str::trim)
            .filter(|n| n.starts_with("etcd-") && n.ends_with(".db"))
            .map(str::to_string)
            .collect();
        if !names.contains(&ours) {
            names.push(ours.clone());
        }
        let dir = crate::backups::dir(&cx.cluster);
        crate::fsutil::ensure_dir(&dir, crate::fsutil::PRIVATE_DIR)?;
        for name in names {
            let local = dir.join(&name);
            if name != ours && local.exists() {
                continue;
            }
            let remote = format!("{NODE_DIR}/{name}");
            let data = host
                .read_file(&remote)?
                .with_context(|| format!("{}: {remote} is missing", node.name))?;
            if let Err(e) = crate::backups::verify(&data) {
                bail!("{}: the etcd snapshot {remote}: {e:#}", node.name);
            }
            crate::fsutil::write_atomic(&local, &data, crate::fsutil::SECRET)?;
            tracing::info!(path = %local.display(), bytes = data.len(), "etcd snapshot saved");
        }
        Ok(())
    }
}
