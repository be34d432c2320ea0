//! Lanes on FakeHosts: node-local steps of the workers run while a controller's barrier step is
//! still working; a barrier waits for every earlier step on every node; a failure starts no
//! later step anywhere.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::super::tests::{cluster, cx, fakes};
use super::super::*;
use super::{Board, Lanes};
use crate::spec::Role;

/// When each (step, node) began and ended, across the run.
type Times = Arc<Mutex<Vec<(&'static str, String, Instant, Instant)>>>;

struct Timed {
    id: &'static str,
    role: Option<Role>,
    local: bool,
    takes: Duration,
    fail_on: Option<&'static str>,
    times: Times,
}

impl Step for Timed {
    fn id(&self) -> StepId {
        StepId::Custom(self.id)
    }
    fn targets<'c>(&self, cluster: &'c Cluster) -> Vec<&'c Node> {
        cluster
            .nodes
            .iter()
            .filter(|n| self.role.is_none_or(|r| n.role == r))
            .collect()
    }
    fn desired(&self, _cx: &Cx, _node: &Node) -> Result<Desired> {
        Ok(Desired::default())
    }
    // The work is in `verify` (run on every run by `verify_unchanged`): `desired` is also
    // asked while the run plans its probes.
    fn verify(&self, _cx: &Cx, node: &Node) -> Result<()> {
        let t = Instant::now();
        std::thread::sleep(self.takes);
        self.times
            .lock()
            .unwrap()
            .push((self.id, node.name.clone(), t, Instant::now()));
        if self.fail_on == Some(node.name.as_str()) {
            anyhow::bail!("injected failure");
        }
        Ok(())
    }
    fn verify_unchanged(&self) -> bool {
        true
    }
    fn node_local(&self) -> bool {
        self.local
    }
}

fn step(
    id: &'static str,
    role: Option<Role>,
    local: bool,
    ms: u64,
    times: &Times,
) -> Arc<dyn Step> {
    Arc::new(Timed {
        id,
        role,
        local,
        takes: Duration::from_millis(ms),
        fail_on: None,
        times: times.clone(),
    })
}

fn span(times: &Times, id: &str) -> (Instant, Instant) {
    let t = times.lock().unwrap();
    let mine: Vec<_> = t.iter().filter(|(s, ..)| *s == id).collect();
    assert!(!mine.is_empty(), "{id} ran");
    (
        mine.iter().map(|(_, _, a, _)| *a).min().unwrap(),
        mine.iter().map(|(_, _, _, b)| *b).max().unwrap(),
    )
}

#[test]
fn workers_run_their_own_steps_while_the_controller_works_and_barriers_wait() {
    let c = cluster();
    let hosts = fakes(&c);
    let times: Times = Default::default();
    let steps = vec![
        step("control_plane", Some(Role::Controller), false, 800, &times),
        step("runtime", Some(Role::Worker), true, 50, &times),
        step("cni", None, true, 50, &times),
        step("kubelet", Some(Role::Worker), false, 10, &times),
    ];
    let mut started = Vec::new();
    let r = run(cx(&c, &hosts), steps, &Options::default(), |e| {
        if let Event::StepStarted { step, .. } = e {
            started.push(step.to_string());
        }
    });
    assert!(r.failed().is_empty(), "{:?}", r.failed());
    let (_, cp_end) = span(&times, "control_plane");
    let (_, rt_end) = span(&times, "runtime");
    assert!(
        rt_end < cp_end,
        "the workers' runtime was done before the control plane (800 ms against 50 ms)"
    );
    let (kubelet_start, _) = span(&times, "kubelet");
    let (_, cni_end) = span(&times, "cni");
    assert!(
        kubelet_start >= cp_end && kubelet_start >= cni_end,
        "the kubelets waited for every earlier step on every node"
    );
    assert_eq!(started.len(), 4, "each step announced once: {started:?}");
    // The report is in pipeline order, by step, then by the step's target order.
    let order: Vec<(&str, &str)> = r
        .nodes
        .iter()
        .map(|n| (n.step.as_str(), n.node.as_str()))
        .collect();
    let mut want = Vec::new();
    for s in ["control_plane", "runtime", "cni", "kubelet"] {
        for n in &c.nodes {
            let hit = match s {
                "control_plane" => n.role == Role::Controller,
                "runtime" | "kubelet" => n.role == Role::Worker,
                _ => true,
            };
            if hit {
                want.push((s, n.name.as_str()));
            }
        }
    }
    assert_eq!(order, want);
}

#[test]
fn a_failure_starts_no_later_barrier_step() {
    let c = cluster();
    let hosts = fakes(&c);
    let times: Times = Default::default();
    let controller = c.controllers().next().unwrap().name.clone();
    let failing: Arc<dyn Step> = Arc::new(Timed {
        id: "control_plane",
        role: Some(Role::Controller),
        local: false,
        takes: Duration::from_millis(10),
        fail_on: Some(Box::leak(controller.clone().into_boxed_str())),
        times: times.clone(),
    });
    let steps = vec![
        failing,
        step("runtime", Some(Role::Worker), true, 10, &times),
        step("kubelet", Some(Role::Worker), false, 10, &times),
    ];
    let r = run(cx(&c, &hosts), steps, &Options::default(), |_| {});
    let failed: Vec<&str> = r.failed().iter().map(|n| n.node.as_str()).collect();
    assert_eq!(failed, [controller.as_str()]);
    let ran: Vec<&str> = times.lock().unwrap().iter().map(|(s, ..)| *s).collect();
    assert!(
        !ran.contains(&"kubelet"),
        "the kubelets waited for the control plane, which failed: {ran:?}"
    );
    // Whatever node-local work had begun finished (it is recorded at its end) and is reported.
    let runtime = ran.iter().filter(|s| **s == "runtime").count();
    let reported = r.nodes.iter().filter(|n| n.step == "runtime").count();
    assert_eq!(runtime, reported, "{ran:?}");
}

/// After a failure at step f no lane starts a step past f; steps up to f (the failed one's
/// other nodes, earlier node-local ones) still may. Ctrl-C starts nothing.
#[test]
fn the_board_starts_nothing_past_a_failure_and_nothing_after_a_halt() {
    let board = Board {
        at: Mutex::new(Lanes {
            at: [("a".to_string(), 3), ("b".to_string(), 1)].into(),
            ..Lanes::default()
        }),
        moved: Condvar::new(),
    };
    assert!(board.may_start(1, true), "every lane is at 1 or past it");
    board.failed(2);
    board.failed(3);
    assert!(board.may_start(2, false) && board.may_start(1, false));
    assert!(!board.may_start(3, false), "past the first failure");
    board.halt();
    assert!(!board.may_start(0, false));
}

#[test]
fn with_fewer_nodes_at_once_steps_go_one_after_another() {
    let c = cluster();
    let hosts = fakes(&c);
    let times: Times = Default::default();
    let steps = vec![
        step("control_plane", Some(Role::Controller), false, 100, &times),
        step("runtime", Some(Role::Worker), true, 10, &times),
    ];
    let opts = Options {
        concurrency: 1,
        ..Default::default()
    };
    let r = run(cx(&c, &hosts), steps, &opts, |_| {});
    assert!(r.failed().is_empty());
    let (_, cp_end) = span(&times, "control_plane");
    let (rt_start, _) = span(&times, "runtime");
    assert!(rt_start >= cp_end, "step by step under --concurrency");
}

/// A step that panics on one node (a bug) is that node's failure: the run ends, reported.
struct Panics;

impl Step for Panics {
    fn id(&self) -> StepId {
        StepId::Custom("buggy")
    }
    fn targets<'c>(&self, cluster: &'c Cluster) -> Vec<&'c Node> {
        cluster.nodes.iter().collect()
    }
    fn desired(&self, _cx: &Cx, _node: &Node) -> Result<Desired> {
        Ok(Desired::default())
    }
    fn verify(&self, _cx: &Cx, node: &Node) -> Result<()> {
        if node.role == Role::Controller {
            panic!("a bug");
        }
        Ok(())
    }
    fn verify_unchanged(&self) -> bool {
        true
    }
}

#[test]
fn a_panicking_step_is_a_failure_not_a_hung_run() {
    let c = cluster();
    let hosts = fakes(&c);
    let times: Times = Default::default();
    let steps: Vec<Arc<dyn Step>> = vec![
        Arc::new(Panics),
        step("kubelet", Some(Role::Worker), false, 10, &times),
    ];
    let r = run(cx(&c, &hosts), steps, &Options::default(), |_| {});
    let failed: Vec<(&str, &str)> = r
        .failed()
        .iter()
        .map(|n| (n.step.as_str(), n.error.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(failed, [("buggy", "kubicluster panicked: a bug")]);
    assert!(times.lock().unwrap().is_empty(), "no later step started");
}
