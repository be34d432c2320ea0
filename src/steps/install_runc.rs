//! `install_runc` — the OCI runtime containerd starts containers with (KTHW lab 09 installs the
//! upstream binary; the `deb` source installs Debian's package). Verified by running it.

use crate::engine::StepId;
use anyhow::{Result, bail};

use crate::engine::{Cx, Desired, Step};
use crate::host::Cmd;
use crate::spec::{Cluster, Node};

pub struct InstallRunc;

/// The runc binary on the node.
pub fn runc_path(cx: &Cx) -> String {
    format!("{}/runc", super::bin_dir(cx, "runc"))
}

impl Step for InstallRunc {
    fn id(&self) -> StepId {
        StepId::InstallRunc
    }

    /// This node's files and units only: it runs while other nodes are still on earlier steps.
    fn node_local(&self) -> bool {
        true
    }

    fn artifacts(&self, _cluster: &Cluster) -> Vec<&'static str> {
        vec!["runc"]
    }

    fn targets<'c>(&self, cluster: &'c Cluster) -> Vec<&'c Node> {
        cluster.workers().collect()
    }

    fn desired(&self, cx: &Cx, _node: &Node) -> Result<Desired> {
        let mut want = Desired::default();
        super::install_artifact(&mut want, cx.inputs.artifact("runc"), &[]);
        super::require_binary(cx, "runc", "runc is")?;
        Ok(want)
    }

    fn verify(&self, cx: &Cx, node: &Node) -> Result<()> {
        let o = cx
            .host(&node.name)?
            .run(&Cmd::new([runc_path(cx), "--version".into()]))?;
        if !o.ok() || !o.stdout_text().starts_with("runc version") {
            bail!("{} --version failed: {}", runc_path(cx), o.tail(3));
        }
        Ok(())
    }
}
