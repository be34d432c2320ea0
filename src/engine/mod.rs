//! The engine every node step runs on (KTHW's rhythm: copy files → install units →
//! daemon-reload/enable/start → verify, k0sctl's phases and `Wet` gate).
//!
//! A [`Step`] declares, per node, a [`Desired`] end state; [`run`] plans every target node of
//! every step (read-only), prints or applies exactly that plan, verifies, and reports per node.
//! Steps run in order; within a step the nodes fan out in parallel ([`fanout`]), errors are
//! collected per node (`failed on 2 nodes: …`) and the run stops after a step that failed
//! somewhere. A dry run plans and changes nothing, anywhere. Ctrl-C stops scheduling, lets the
//! change in flight finish, records where it stopped in the journal and exits 130.

pub mod change;
pub mod desired;
pub mod fanout;
pub mod hv;
pub mod inputs;
pub mod journal;
mod lanes;
pub mod pipeline;
pub mod plan;
pub mod prefetch;
pub mod step_id;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

pub use desired::{Blob, Desired, DirSpec, FileSpec, GuardedCmd, UnitSpec};
pub use pipeline::{PipelineStep, Target};
pub use plan::{Change, PkiOp, VmOp};
pub use step_id::StepId;

use crate::host::Host;
use crate::spec::{Cluster, Node};

/// What steps see: the cluster, the hosts of this run and step-independent inputs.
pub struct Cx {
    pub cluster: Cluster,
    pub hosts: BTreeMap<String, Arc<dyn Host>>,
    pub inputs: inputs::Inputs,
    /// Facts read from the nodes (which controllers hold etcd data, can a worker run kata),
    /// shared by a step's nodes; cleared when a step starts after a change was applied.
    pub facts: std::sync::Mutex<BTreeMap<String, Fact>>,
    /// What [`prefetch::prefetch`] read for the whole run, until the first change.
    pub prefetched: prefetch::Prefetched,
}

impl Cx {
    pub fn new(
        cluster: Cluster,
        hosts: BTreeMap<String, Arc<dyn Host>>,
        inputs: inputs::Inputs,
    ) -> Self {
        Cx {
            cluster,
            hosts,
            inputs,
            facts: Default::default(),
            prefetched: Default::default(),
        }
    }

    /// The fact `q` asks for: from what [`prefetch::prefetch`] read (every step's declared
    /// facts, one round trip per node), else read now on its node and kept like [`Cx::fact`].
    pub fn fact_of(&self, q: &FactQuery) -> Result<Fact> {
        self.fact(&q.key, || {
            let o = self.host(&q.node)?.run(&q.cmd)?;
            Ok((q.read)(o.ok(), &o.stdout_text()))
        })
    }

    /// A fact, read once per step: `read` runs only if no node of this step asked before.
    pub fn fact(&self, key: &str, read: impl FnOnce() -> Result<Fact>) -> Result<Fact> {
        if let Some(v) = self.facts.lock().expect("facts lock").get(key) {
            return Ok(v.clone());
        }
        let v = read()?;
        self.facts
            .lock()
            .expect("facts lock")
            .insert(key.to_string(), v.clone());
        Ok(v)
    }

    /// Facts read before any change of the run are still true; after one, a step reads again.
    fn forget_facts_after_a_change(&self) {
        if self.prefetched.changed() {
            self.facts.lock().expect("facts lock").clear();
        }
    }

    pub fn host(&self, node: &str) -> Result<&Arc<dyn Host>> {
        self.hosts
            .get(node)
            .ok_or_else(|| anyhow::anyhow!("{node}: no connection (not a target of this run)"))
    }
}

/// What a [`FactQuery`] found on its node: the fact holds, or it does not and why (the reason
/// is shown where a plan depends on it: "kube-apiserver is not running (inactive)").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Fact {
    Holds,
    Not(String),
}

impl Fact {
    /// From a check's outcome: `ok`, else not, for `why`.
    pub fn check(ok: bool, why: impl FnOnce() -> String) -> Fact {
        if ok { Fact::Holds } else { Fact::Not(why()) }
    }

    pub fn holds(&self) -> bool {
        *self == Fact::Holds
    }

    /// Why it does not hold (None: it holds).
    pub fn why_not(&self) -> Option<&str> {
        match self {
            Fact::Holds => None,
            Fact::Not(why) => Some(why),
        }
    }
}

/// A fact a step reads from a node to decide what it wants (is there etcd data, does the API
/// server run, can kata run): a command whose exit status and output make the answer. Declared
/// by [`Step::facts`], all of a run's facts are read before the first step, one round trip per
/// node, in parallel; [`Cx::fact_of`] answers from that.
#[derive(Clone)]
pub struct FactQuery {
    /// Names the fact in [`Cx`]'s facts (`etcd-data:kubi-controller-01`).
    pub key: String,
    /// The node it is read on.
    pub node: String,
    /// Read-only, no stdin, no secret (it runs in a batch).
    pub cmd: crate::host::Cmd,
    /// The answer from (exit status 0?, stdout).
    pub read: fn(bool, &str) -> Fact,
}

/// One step of the pipeline; one file per step under `steps/`.
pub trait Step: Send + Sync {
    /// Which step it is.
    fn id(&self) -> StepId;
    /// `verb_noun`, as in the original's subcommands (`install_etcd`).
    fn name(&self) -> &'static str {
        self.id().name()
    }
    /// The nodes it acts on.
    fn targets<'c>(&self, cluster: &'c Cluster) -> Vec<&'c Node>;
    /// The catalogue components (`etcd`, `kubelet`, …) it installs, made ready on the
    /// hypervisor before any node changes.
    fn artifacts(&self, _cluster: &Cluster) -> Vec<&'static str> {
        Vec::new()
    }
    /// The facts [`Step::desired`] on `node` reads through [`Cx::fact_of`], so a run can read
    /// them all at once beforehand.
    fn facts(&self, _cx: &Cx, _node: &Node) -> Vec<FactQuery> {
        Vec::new()
    }
    /// What `node` should look like. May read facts from any host of `cx` (never write).
    fn desired(&self, cx: &Cx, node: &Node) -> Result<Desired>;
    /// After apply: is it really working? (KTHW's "Verification"). Not run on dry runs, nor
    /// on a node where the step changed nothing after a run that finished (see
    /// [`Options::reverify`]) unless [`Step::verify_unchanged`].
    fn verify(&self, _cx: &Cx, _node: &Node) -> Result<()> {
        Ok(())
    }
    /// Whether `verify` does work that must happen on every run (the addons' apply through
    /// the API, the snapshot copied to the hypervisor), not only a check.
    fn verify_unchanged(&self) -> bool {
        false
    }
    /// Whether a node may start this step as soon as its own earlier steps are done (it reads
    /// and changes that node only), rather than once every earlier step is done on every node
    /// (the default: etcd's membership, the API server, the kubelets need the cluster).
    fn node_local(&self) -> bool {
        false
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub dry_run: bool,
    /// Nodes worked on at once (0 = all).
    pub concurrency: usize,
    /// Per node and step.
    pub deadline: Duration,
    /// Set by Ctrl-C: no new work is scheduled, the change in flight finishes.
    pub cancel: Arc<AtomicBool>,
    /// Verify every node, changed or not (the previous run did not finish). Otherwise a node
    /// the step left unchanged was verified by the run that made it so, and `status` and
    /// `test` check health at any time.
    pub reverify: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dry_run: false,
            concurrency: 0,
            deadline: Duration::from_secs(1800),
            cancel: Arc::new(AtomicBool::new(false)),
            reverify: false,
        }
    }
}

/// What happened on one node in one step.
#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    pub step: String,
    pub node: String,
    pub changes: Vec<Change>,
    /// Changes actually applied (0 on a dry run).
    pub applied: usize,
    pub restarts: Vec<String>,
    /// Units installed but not started, with the reason.
    pub not_started: Vec<(String, String)>,
    pub error: Option<String>,
    pub seconds: f64,
}

impl NodeReport {
    pub fn empty(step: &str, node: &str) -> Self {
        NodeReport {
            step: step.to_string(),
            node: node.to_string(),
            changes: Vec::new(),
            applied: 0,
            restarts: Vec::new(),
            not_started: Vec::new(),
            error: None,
            seconds: 0.0,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub nodes: Vec<NodeReport>,
    pub interrupted: bool,
    pub seconds: f64,
}

impl Report {
    pub fn changes(&self) -> usize {
        self.nodes.iter().map(|n| n.changes.len()).sum()
    }
    pub fn restarts(&self) -> usize {
        self.nodes.iter().map(|n| n.restarts.len()).sum()
    }
    pub fn failed(&self) -> Vec<&NodeReport> {
        self.nodes.iter().filter(|n| n.error.is_some()).collect()
    }
}

/// Progress as it happens, for the printer (called on the calling thread).
pub enum Event<'a> {
    StepStarted {
        step: &'a str,
        index: usize,
        of: usize,
        nodes: usize,
    },
    NodeDone(&'a NodeReport),
}

fn work_one(step: &dyn Step, cx: &Cx, node: &Node, opts: &Options) -> NodeReport {
    let start = Instant::now();
    let mut r = NodeReport::empty(step.name(), &node.name);
    let result = (|| -> Result<()> {
        let want = step.desired(cx, node)?;
        r.not_started = want
            .units
            .iter()
            .filter_map(|u| u.not_started.clone().map(|why| (u.name.clone(), why)))
            .chain(want.notes.iter().cloned())
            .collect();
        let host = cx.host(&node.name)?;
        r.changes = plan::plan_with(host.as_ref(), &want, Some(&cx.prefetched))?;
        for c in &r.changes {
            tracing::info!(node = %node.name, step = step.name(), dry_run = opts.dry_run, "{c}");
        }
        if opts.dry_run {
            return Ok(());
        }
        if !r.changes.is_empty() {
            cx.prefetched.mark_changed();
        }
        r.applied = match plan::apply(host.as_ref(), &want, &r.changes, &opts.cancel) {
            Ok(n) => n,
            Err(plan::ApplyError::Cancelled { applied }) => {
                r.applied = applied;
                anyhow::bail!(
                    "interrupted after {applied} of {} change(s)",
                    r.changes.len()
                );
            }
            Err(plan::ApplyError::Host { applied, error }) => {
                r.applied = applied;
                return Err(error.into());
            }
        };
        r.restarts = r
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Restart { unit, .. } => Some(unit.clone()),
                _ => None,
            })
            .collect();
        if r.changes.is_empty() && !opts.reverify && !step.verify_unchanged() {
            tracing::debug!(node = %node.name, step = step.name(), "unchanged: not re-verified");
            return Ok(());
        }
        if step.verify_unchanged() {
            // Its verification does work (an apply, a copy): later steps read afresh.
            cx.prefetched.mark_changed();
        }
        step.verify(cx, node)
    })();
    if let Err(e) = result {
        r.error = Some(format!("{e:#}"));
    }
    r.seconds = start.elapsed().as_secs_f64();
    r
}

/// Run `steps` in order over their target nodes. Returns the report; an `Err` only for
/// problems before any node was touched.
pub fn run(
    cx: Arc<Cx>,
    steps: Vec<Arc<dyn Step>>,
    opts: &Options,
    mut progress: impl FnMut(Event),
) -> Report {
    let start = Instant::now();
    let mut report = Report {
        dry_run: opts.dry_run,
        ..Report::default()
    };
    let of = steps.len();
    // Facts and probe in one round trip per node when the last run's facts are remembered
    // (and still true); else the facts first, then the probe.
    let cluster_dir = cx.cluster.cluster_dir();
    let remembered = prefetch::remembered(&cluster_dir);
    if !prefetch::prefetch_speculating(&cx, &steps, &remembered) {
        prefetch::prefetch_facts(&cx, &steps);
        prefetch::prefetch(&cx, &steps);
    }
    let all_steps = steps.clone();
    let nodes = lanes::nodes(&cx.cluster, &steps);
    // Every node at once: each works through its steps in its own lane. With fewer at once
    // (`--concurrency`), step by step, every node of a step before the next one.
    let lanes = opts.concurrency == 0 || opts.concurrency >= nodes.len();
    let steps = if lanes {
        lanes::run(&cx, &steps, opts, &mut progress, &mut report);
        Vec::new()
    } else {
        steps
    };
    for (index, step) in steps.into_iter().enumerate() {
        if opts.cancel.load(Ordering::SeqCst) {
            report.interrupted = true;
            break;
        }
        cx.forget_facts_after_a_change();
        let targets: Vec<Node> = step.targets(&cx.cluster).into_iter().cloned().collect();
        progress(Event::StepStarted {
            step: step.name(),
            index: index + 1,
            of,
            nodes: targets.len(),
        });
        let concurrency = if opts.concurrency == 0 {
            targets.len()
        } else {
            opts.concurrency
        };
        let (cx2, step2, opts2) = (cx.clone(), step.clone(), opts.clone());
        let results = fanout::map(
            targets,
            concurrency,
            opts.deadline,
            move |node| {
                if opts2.cancel.load(Ordering::SeqCst) {
                    let mut r = NodeReport::empty(step2.name(), &node.name);
                    r.error = Some("not started: interrupted".into());
                    return r;
                }
                work_one(step2.as_ref(), &cx2, node, &opts2)
            },
            |node, r| {
                if let Ok(nr) = r {
                    progress(Event::NodeDone(nr));
                } else {
                    tracing::warn!(node = %node.name, "deadline passed");
                }
            },
        );
        let mut failed = false;
        for (node, r) in results {
            let nr = r.unwrap_or_else(|d| {
                let mut r = NodeReport::empty(step.name(), &node.name);
                r.error = Some(format!(
                    "no result within {} s (the node's work may still be running)",
                    d.as_secs()
                ));
                r
            });
            failed |= nr.error.is_some();
            report.nodes.push(nr);
        }
        if opts.cancel.load(Ordering::SeqCst) {
            report.interrupted = true;
            break;
        }
        if failed {
            break;
        }
    }
    if !opts.dry_run {
        // For the next run's one round trip: the facts as this run leaves the nodes.
        if report.changes() > 0 {
            cx.facts.lock().expect("facts lock").clear();
            prefetch::prefetch_facts(&cx, &all_steps);
        }
        if let Some(facts) = prefetch::current_facts(&cx, &all_steps) {
            prefetch::remember(&cluster_dir, &facts, &remembered);
        }
    }
    report.seconds = start.elapsed().as_secs_f64();
    report
}

/// `failed on 2 nodes:\n- n1 (step): …` for the error that ends the command.
pub fn failure_summary(report: &Report) -> Option<String> {
    let failed = report.failed();
    if failed.is_empty() {
        return None;
    }
    let lines: Vec<String> = failed
        .iter()
        .map(|n| {
            format!(
                "- {} ({}): {}",
                n.node,
                n.step,
                n.error.as_deref().unwrap_or("")
            )
        })
        .collect();
    Some(format!(
        "failed on {} node{}:\n{}",
        failed.len(),
        if failed.len() == 1 { "" } else { "s" },
        lines.join("\n")
    ))
}

#[cfg(test)]
mod tests;
