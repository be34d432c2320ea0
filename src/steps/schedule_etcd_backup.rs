//! `schedule_etcd_backup` — `kubicluster etcd backup --schedule CALENDAR`: a systemd timer on
//! the first controller that saves an etcd snapshot to `/var/backups/kubicluster/` (0600, the
//! newest few kept there). The next `kubicluster etcd backup` copies the ones the hypervisor
//! lacks to `<workDir>/<cluster>/backups/`, checked whole.

use anyhow::Result;

use super::snapshot_etcd::{NODE_DIR, node_retention};
use crate::engine::{Blob, Cx, Desired, Step, StepId, UnitSpec};
use crate::spec::{Cluster, Node};

pub struct ScheduleEtcdBackup {
    /// A systemd calendar expression (`hourly`, `daily`, `*-*-* 02:00`).
    pub calendar: String,
}

pub const SCRIPT: &str = "/usr/local/sbin/kubicluster-etcd-backup";
pub const SERVICE: &str = "kubicluster-etcd-backup.service";
pub const TIMER: &str = "kubicluster-etcd-backup.timer";

impl Step for ScheduleEtcdBackup {
    fn id(&self) -> StepId {
        StepId::ScheduleEtcdBackup
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
        super::snapshot_etcd::node_dir(&mut want).dir("/usr/local/sbin", 0o755);
        let script = format!(
            "#!/bin/sh\n# kubicluster: an etcd snapshot (run by {TIMER}); the newest few are kept.\nset -e\numask 077\n\
             f={NODE_DIR}/etcd-$(date -u +%Y%m%dT%H%M%S).db\n{} snapshot save \"$f.part\"\nmv \"$f.part\" \"$f\"\n{}\n",
            ctl.shell_line(),
            node_retention()
        );
        want.file(SCRIPT, Blob::new(script), 0o700, &[]);
        let service = format!(
            "[Unit]\nDescription=kubicluster: etcd snapshot to {NODE_DIR}\nAfter=etcd.service\nRequires=etcd.service\n\n\
             [Service]\nType=oneshot\nExecStart={SCRIPT}\n"
        );
        let timer = format!(
            "[Unit]\nDescription=kubicluster: etcd snapshot ({})\n\n[Timer]\nOnCalendar={}\nPersistent=true\nRandomizedDelaySec=60\n\n\
             [Install]\nWantedBy=timers.target\n",
            self.calendar, self.calendar
        );
        // The service runs only when the timer fires (or `systemctl start` by hand).
        want.unit(UnitSpec {
            name: SERVICE.into(),
            file: Blob::new(service),
            enable: false,
            start: false,
            no_block: false,
            not_started: None,
            reload: false,
        });
        want.unit(UnitSpec::started(TIMER, Blob::new(timer)));
        Ok(want)
    }
}
