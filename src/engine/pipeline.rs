//! The one pipeline: every step `up` runs, in order, each with the [`Target`] it acts on.
//! `up` runs the whole list once; `create-vms`, `cnc`, `create-controllers` and
//! `create-workers` (and the original's one-step subcommands) select steps of the same list by
//! [`StepId`], so there is one order and one place to add a capability: a step file and a line
//! in `steps::pipeline`.
//!
//! Two kinds of step share it. A [`Step`] declares each node's end state and the engine diffs
//! and applies it (files and units have content to compare); an [`HvStep`] reads libvirt
//! objects, the PKI or the hypervisor's settings itself and hands every change to the gate (a
//! VM or a certificate has no content to diff: a new certificate is never the same bytes). Both
//! report the same typed [`super::Change`]s through one [`super::Report`].

use std::sync::Arc;

use super::hv::HvStep;
use super::{Step, StepId};
use crate::spec::Cluster;

/// Where a step acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The hypervisor machine itself, without libvirt: its packages and settings, the PKI and
    /// the template image in the work dir.
    Local,
    /// libvirt's objects on the hypervisor: networks, the pool, the VMs.
    Hypervisor,
    /// The cluster's nodes over SSH, fanned out ([`Step::targets`] says which).
    Nodes,
}

/// One step of the pipeline.
#[derive(Clone)]
pub enum PipelineStep {
    /// Decides its changes itself and passes each through the gate.
    Gated(Arc<dyn HvStep>),
    /// Declares each node's end state; the engine diffs and applies it.
    Declared(Arc<dyn Step>),
}

impl PipelineStep {
    pub fn id(&self) -> StepId {
        match self {
            PipelineStep::Gated(s) => s.id(),
            PipelineStep::Declared(s) => s.id(),
        }
    }

    pub fn target(&self) -> Target {
        match self {
            PipelineStep::Gated(s) => s.target(),
            PipelineStep::Declared(_) => Target::Nodes,
        }
    }
}

/// The steps of `steps` whose ids are in `ids`, in pipeline order.
pub fn select(steps: Vec<PipelineStep>, ids: &[StepId]) -> Vec<PipelineStep> {
    steps
        .into_iter()
        .filter(|s| ids.contains(&s.id()))
        .collect()
}

/// The node steps of `steps`, in order.
pub fn declared(steps: &[PipelineStep]) -> Vec<Arc<dyn Step>> {
    steps
        .iter()
        .filter_map(|s| match s {
            PipelineStep::Declared(d) => Some(d.clone()),
            PipelineStep::Gated(_) => None,
        })
        .collect()
}

/// The hypervisor steps of `steps`, in order.
pub fn gated(steps: &[PipelineStep]) -> Vec<Arc<dyn HvStep>> {
    steps
        .iter()
        .filter_map(|s| match s {
            PipelineStep::Gated(g) => Some(g.clone()),
            PipelineStep::Declared(_) => None,
        })
        .collect()
}

/// Runs of consecutive steps of one kind, in order: how a runner walks the pipeline (the
/// hypervisor's steps on the calling thread, node steps fanned out over their nodes).
pub fn segments(steps: &[PipelineStep]) -> Vec<&[PipelineStep]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=steps.len() {
        let boundary = i == steps.len()
            || matches!(steps[i], PipelineStep::Gated(_))
                != matches!(steps[i - 1], PipelineStep::Gated(_));
        if boundary && start < i {
            out.push(&steps[start..i]);
            start = i;
        }
    }
    out
}

/// The nodes a selection of steps acts on (for a summary line).
pub fn node_count(steps: &[PipelineStep], cluster: &Cluster) -> usize {
    let mut names: Vec<&str> = declared(steps)
        .iter()
        .flat_map(|s| s.targets(cluster).into_iter().map(|n| n.name.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    names.len()
}

/// A node step narrowed to one node (a rolling operation works node by node: `upgrade`).
struct OnNode {
    inner: Arc<dyn Step>,
    node: String,
}

impl Step for OnNode {
    fn id(&self) -> StepId {
        self.inner.id()
    }
    fn targets<'c>(&self, cluster: &'c Cluster) -> Vec<&'c crate::spec::Node> {
        self.inner
            .targets(cluster)
            .into_iter()
            .filter(|n| n.name == self.node)
            .collect()
    }
    fn artifacts(&self, cluster: &Cluster) -> Vec<&'static str> {
        self.inner.artifacts(cluster)
    }
    fn facts(&self, cx: &super::Cx, node: &crate::spec::Node) -> Vec<super::FactQuery> {
        self.inner.facts(cx, node)
    }
    fn desired(&self, cx: &super::Cx, node: &crate::spec::Node) -> anyhow::Result<super::Desired> {
        self.inner.desired(cx, node)
    }
    fn verify(&self, cx: &super::Cx, node: &crate::spec::Node) -> anyhow::Result<()> {
        self.inner.verify(cx, node)
    }
    fn verify_unchanged(&self) -> bool {
        self.inner.verify_unchanged()
    }
    fn node_local(&self) -> bool {
        self.inner.node_local()
    }
}

/// The node steps of `steps` that act on `node`, each narrowed to it (the hypervisor's steps
/// and the steps for other nodes are left out).
pub fn on_node(steps: &[PipelineStep], cluster: &Cluster, node: &str) -> Vec<PipelineStep> {
    declared(steps)
        .into_iter()
        .map(|inner| -> Arc<dyn Step> {
            Arc::new(OnNode {
                inner,
                node: node.to_string(),
            })
        })
        .filter(|s| !s.targets(cluster).is_empty())
        .map(PipelineStep::Declared)
        .collect()
}
