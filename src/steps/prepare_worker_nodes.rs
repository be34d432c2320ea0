//! `prepare_worker_nodes` — KTHW lab 09's node preparation, kept: kernel modules for container
//! networking (`overlay`, `br_netfilter`) loaded now and at every boot, the bridge/forwarding
//! sysctls applied now and persisted, swap off (kubelet refuses to run with it) now and in
//! fstab, and the tools kube-proxy and the bridge plugin call (iptables, conntrack, socat) checked.
//! Nodes never download anything: a missing tool is an error that says how to get it.

use crate::engine::StepId;
use anyhow::Result;

use crate::engine::{Blob, Cx, Desired, GuardedCmd, Step};
use crate::host::Cmd;
use crate::spec::{Cluster, Node};

pub struct PrepareWorkerNodes;

/// Not `kubicluster.conf`: the template image's file of that name loads qemu_fw_cfg (identity).
pub const MODULES: &str = "/etc/modules-load.d/kubicluster-containers.conf";
pub const SYSCTL: &str = "/etc/sysctl.d/90-kubicluster.conf";
/// Programs the worker components call.
pub const TOOLS: [&str; 3] = ["iptables", "conntrack", "socat"];

impl Step for PrepareWorkerNodes {
    fn id(&self) -> StepId {
        StepId::PrepareWorkerNodes
    }

    /// This node's files and units only: it runs while other nodes are still on earlier steps.
    fn node_local(&self) -> bool {
        true
    }

    fn targets<'c>(&self, cluster: &'c Cluster) -> Vec<&'c Node> {
        cluster.workers().collect()
    }

    fn desired(&self, _cx: &Cx, _node: &Node) -> Result<Desired> {
        let mut want = Desired::default();
        want.dir("/etc/modules-load.d", 0o755)
            .dir("/etc/sysctl.d", 0o755);
        want.file(
            MODULES,
            Blob::new(include_str!("../../templates/worker/modules.conf")),
            0o644,
            &[],
        );
        want.file(
            SYSCTL,
            Blob::new(include_str!("../../templates/worker/sysctl.conf")),
            0o644,
            &[],
        );
        want.command(GuardedCmd {
            what: "load kernel modules overlay, br_netfilter".into(),
            check: Cmd::script(
                "[ -d /sys/module/overlay ] && [ -d /sys/module/br_netfilter ]",
                Vec::<String>::new(),
            ),
            run: Cmd::new(["modprobe", "-a", "overlay", "br_netfilter"]),
            restarts: vec![],
            after_units: false,
        });
        // The values the file sets, read back from /proc (not only "the file exists").
        want.command(GuardedCmd {
            what: format!("apply {SYSCTL}"),
            check: Cmd::script(
                // One awk for every key (no process per key: forks are slow in emulated guests).
                r#"[ -f "$1" ] && awk '
/^[a-z0-9_.-]+ *= */ { k = $0; sub(/ *=.*/, "", k); v = $0; sub(/^[^=]*= */, "", v)
  f = k; gsub(/\./, "/", f); f = "/proc/sys/" f; cur = ""
  if ((getline cur < f) <= 0 || cur != v) exit 1; close(f) }' "$1""#,
                [SYSCTL],
            ),
            run: Cmd::new(["sysctl", "-q", "-p", SYSCTL]),
            restarts: vec![],
            after_units: false,
        });
        want.command(GuardedCmd {
            what: "turn swap off (now and in /etc/fstab)".into(),
            check: Cmd::script(
                r#"awk 'NR > 1 { exit 1 }' /proc/swaps && ! grep -Eq '^[^#]\S*\s+\S+\s+swap\s' /etc/fstab"#,
                Vec::<String>::new(),
            ),
            run: Cmd::script(
                r#"swapoff -a && sed -i -E 's/^([^#]\S*\s+\S+\s+swap\s.*)$/# (kubicluster: kubelet needs swap off) \1/' /etc/fstab"#,
                Vec::<String>::new(),
            ),
            restarts: vec![],
            after_units: false,
        });
        want.command(GuardedCmd {
            what: format!("check for {}", TOOLS.join(", ")),
            check: Cmd::script(
                r#"for t in "$@"; do command -v "$t" >/dev/null || exit 1; done"#,
                TOOLS,
            ),
            run: Cmd::script(
                r#"missing=""; for t in "$@"; do command -v "$t" >/dev/null || missing="$missing $t"; done
echo "missing on this node:$missing; install the packages (apt-get install$missing) or rebuild the template (kubicluster image build --force)" >&2
exit 1"#,
                TOOLS,
            ),
            restarts: vec![],
            after_units: false,
        });
        Ok(want)
    }
}
