//! Each node works through its own steps of the pipeline, in order, at its own pace (its lane).
//! A step that needs the cluster — every earlier step done on every node: etcd's members, the
//! API server — waits there for the other lanes (a barrier); a [`Step::node_local`] step does not.
//! So the workers install their container runtime and CNI while the controllers install etcd and
//! the control plane, and the kubelets start once the API server runs.
//!
//! A failure (or Ctrl-C) lets the steps in flight finish and starts no further step on any node,
//! as a step-by-step run would; a node that gives no answer within the deadline is reported and
//! no longer waited for (its work runs on to its end, never cut in half).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{Cx, Event, NodeReport, Options, Report, Step, work_one};
use crate::spec::Node;

/// Where every lane is: the index of the next step it will consider (`steps.len()` when done),
/// and what stops the run.
struct Board {
    at: Mutex<Lanes>,
    moved: Condvar,
}

#[derive(Default)]
struct Lanes {
    at: BTreeMap<String, usize>,
    /// The first step that failed: no lane starts a later one (the others of that step and of
    /// earlier ones still run, as in a step-by-step run).
    failed_at: Option<usize>,
    /// Ctrl-C: no lane starts anything.
    halted: bool,
}

impl Lanes {
    fn may_start(&self, index: usize) -> bool {
        !self.halted && self.failed_at.is_none_or(|f| index <= f)
    }
}

impl Board {
    fn set(&self, node: &str, index: usize) {
        let mut g = self.at.lock().expect("board lock");
        g.at.insert(node.to_string(), index);
        self.moved.notify_all();
    }

    fn failed(&self, index: usize) {
        let mut g = self.at.lock().expect("board lock");
        g.failed_at = Some(g.failed_at.map_or(index, |f| f.min(index)));
        self.moved.notify_all();
    }

    fn halt(&self) {
        self.at.lock().expect("board lock").halted = true;
        self.moved.notify_all();
    }

    /// May this lane start step `index`? For a barrier, first wait until every lane has
    /// passed every step before it.
    fn may_start(&self, index: usize, barrier: bool) -> bool {
        let mut g = self.at.lock().expect("board lock");
        loop {
            if !g.may_start(index) {
                return false;
            }
            if !barrier || g.at.values().all(|&at| at >= index) {
                return true;
            }
            g = self.moved.wait(g).expect("board lock");
        }
    }
}

enum Msg {
    Start(String, usize),
    Done(usize, NodeReport),
    Finished(String),
}

/// Every node some step of `steps` targets, once, in order of first appearance.
pub(super) fn nodes(cluster: &crate::spec::Cluster, steps: &[Arc<dyn Step>]) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for s in steps {
        for n in s.targets(cluster) {
            if !nodes.iter().any(|m| m.name == n.name) {
                nodes.push(n.clone());
            }
        }
    }
    nodes
}

/// Run `steps` lane by lane (see the module). `report.nodes` ends in pipeline order: by step,
/// then by the step's target order.
pub(super) fn run(
    cx: &Arc<Cx>,
    steps: &[Arc<dyn Step>],
    opts: &Options,
    progress: &mut dyn FnMut(Event),
    report: &mut Report,
) {
    let targets: Vec<Vec<Node>> = steps
        .iter()
        .map(|s| s.targets(&cx.cluster).into_iter().cloned().collect())
        .collect();
    let nodes = nodes(&cx.cluster, steps);
    let board = Arc::new(Board {
        at: Mutex::new(Lanes {
            at: nodes.iter().map(|n| (n.name.clone(), 0)).collect(),
            ..Lanes::default()
        }),
        moved: Condvar::new(),
    });
    let (tx, rx) = mpsc::channel();
    let rt = super::fanout::runtime();
    for node in &nodes {
        let (cx, steps, opts, board, tx) = (
            cx.clone(),
            steps.to_vec(),
            opts.clone(),
            board.clone(),
            tx.clone(),
        );
        let mine: Vec<bool> = targets
            .iter()
            .map(|t| t.iter().any(|n| n.name == node.name))
            .collect();
        let node = node.clone();
        rt.spawn_blocking(move || {
            let at = AtomicUsize::new(0);
            let lane = std::panic::AssertUnwindSafe(|| {
                lane(&cx, &steps, &mine, &node, &opts, &board, &tx, &at)
            });
            if let Err(panic) = std::panic::catch_unwind(lane) {
                // A bug, not the node: reported as that step's failure, never a hung run.
                let i = at.load(Ordering::SeqCst);
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let mut r = NodeReport::empty(steps[i].name(), &node.name);
                r.error = Some(format!("kubicluster panicked: {what}"));
                let _ = tx.send(Msg::Done(i, r));
                board.failed(i);
            }
            board.set(&node.name, steps.len());
            let _ = tx.send(Msg::Finished(node.name.clone()));
        });
    }
    drop(tx);

    let mut started = vec![false; steps.len()];
    let mut in_flight: BTreeMap<String, (usize, Instant)> = BTreeMap::new();
    let mut live: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let mut done: Vec<(usize, NodeReport)> = Vec::new();
    while !live.is_empty() {
        match rx.recv_timeout(Duration::from_millis(250)) {
            Ok(Msg::Start(node, i)) if live.contains(&node) => {
                if !started[i] {
                    started[i] = true;
                    progress(Event::StepStarted {
                        step: steps[i].name(),
                        index: i + 1,
                        of: steps.len(),
                        nodes: targets[i].len(),
                    });
                }
                in_flight.insert(node, (i, Instant::now()));
            }
            Ok(Msg::Done(i, r)) if live.contains(&r.node) => {
                in_flight.remove(&r.node);
                progress(Event::NodeDone(&r));
                done.push((i, r));
            }
            Ok(Msg::Finished(node)) => live.retain(|n| *n != node),
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let late: Vec<(String, usize)> = in_flight
                    .iter()
                    .filter(|(_, (_, t))| t.elapsed() > opts.deadline)
                    .map(|(n, (i, _))| (n.clone(), *i))
                    .collect();
                for (node, i) in late {
                    tracing::warn!(node = %node, "deadline passed");
                    let mut r = NodeReport::empty(steps[i].name(), &node);
                    r.error = Some(format!(
                        "no result within {} s (the node's work may still be running)",
                        opts.deadline.as_secs()
                    ));
                    progress(Event::NodeDone(&r));
                    done.push((i, r));
                    in_flight.remove(&node);
                    live.retain(|n| *n != node);
                    board.failed(i);
                    board.set(&node, steps.len());
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let order = |i: usize, node: &str| {
        let at = targets[i].iter().position(|n| n.name == node);
        (i, at.unwrap_or(usize::MAX))
    };
    done.sort_by_key(|(i, r)| order(*i, &r.node));
    report.nodes.extend(done.into_iter().map(|(_, r)| r));
    report.interrupted |= opts.cancel.load(Ordering::SeqCst);
}

/// One node's lane: its steps in order, waiting at each barrier for the other lanes. `at`: the
/// step it is on.
#[allow(clippy::too_many_arguments)]
fn lane(
    cx: &Cx,
    steps: &[Arc<dyn Step>],
    mine: &[bool],
    node: &Node,
    opts: &Options,
    board: &Board,
    tx: &mpsc::Sender<Msg>,
    at: &AtomicUsize,
) {
    for (i, step) in steps.iter().enumerate() {
        if !mine[i] {
            continue;
        }
        board.set(&node.name, i);
        if opts.cancel.load(Ordering::SeqCst) {
            board.halt();
            return;
        }
        if !board.may_start(i, !step.node_local()) {
            return;
        }
        cx.forget_facts_after_a_change();
        at.store(i, Ordering::SeqCst);
        let _ = tx.send(Msg::Start(node.name.clone(), i));
        let r = work_one(step.as_ref(), cx, node, opts);
        let failed = r.error.is_some();
        let _ = tx.send(Msg::Done(i, r));
        if failed {
            board.failed(i);
            return;
        }
    }
}

#[cfg(test)]
#[path = "lanes_tests.rs"]
mod tests;
