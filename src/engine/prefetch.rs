//! One read per node for the whole run. Before the first step, [`prefetch`] gathers what every
//! step's plan will read on a node — its guards, its units, its paths — and reads it in one probe
//! (in parallel over the nodes). Each step's plan answers from that read for as long as nothing
//! has changed anywhere in the run; the first change applied on any node drops every prefetched
//! answer, and later steps read their nodes again as before. A converged cluster thus costs one
//! round trip per node instead of one per step and node, and the answers are never older than the
//! run's last change.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Cx, Step};
use crate::host::{Cmd, Probe, Stat};
use crate::spec::Node;

#[derive(Default)]
pub struct Prefetched {
    nodes: Mutex<BTreeMap<String, Answers>>,
    changed: AtomicBool,
}

#[derive(Default)]
struct Answers {
    checks: Vec<(Cmd, bool)>,
    units: BTreeMap<String, (String, String, String)>,
    stats: BTreeMap<String, Stat>,
}

impl Prefetched {
    /// A change is about to be applied somewhere: nothing read before may be trusted now.
    pub fn mark_changed(&self) {
        self.changed.store(true, Ordering::SeqCst);
        self.nodes.lock().expect("prefetch lock").clear();
    }

    /// Whether a change was applied (or begun) in this run.
    pub fn changed(&self) -> bool {
        self.changed.load(Ordering::SeqCst)
    }

    /// The probe of `node` for these inputs, if all of it was read before and nothing changed.
    pub fn probe(
        &self,
        node: &str,
        checks: &[Cmd],
        units: &[String],
        paths: &[String],
    ) -> Option<Probe> {
        if self.changed() {
            return None;
        }
        let nodes = self.nodes.lock().expect("prefetch lock");
        let a = nodes.get(node)?;
        Some(Probe {
            checks: checks
                .iter()
                .map(|c| a.checks.iter().find(|(k, _)| k == c).map(|(_, ok)| *ok))
                .collect::<Option<_>>()?,
            units: units
                .iter()
                .map(|u| a.units.get(u).cloned())
                .collect::<Option<_>>()?,
            stats: paths
                .iter()
                .map(|p| a.stats.get(p).cloned())
                .collect::<Option<_>>()?,
        })
    }

    fn store(&self, node: &str, checks: &[Cmd], paths: &[String], probe: Probe) {
        if self.changed() || probe.checks.len() != checks.len() || probe.stats.len() != paths.len()
        {
            return;
        }
        let answers = Answers {
            checks: checks.iter().cloned().zip(probe.checks).collect(),
            units: probe.units.into_iter().map(|u| (u.0.clone(), u)).collect(),
            stats: paths.iter().cloned().zip(probe.stats).collect(),
        };
        self.nodes
            .lock()
            .expect("prefetch lock")
            .insert(node.to_string(), answers);
    }
}

/// Every fact the steps declare, read in one round trip per node (the nodes in parallel) into
/// `cx`'s facts, before any step asks. A node that does not answer is left to be asked step by
/// step, where the error is reported.
pub fn prefetch_facts(cx: &Cx, steps: &[Arc<dyn Step>]) {
    let mut by_node: BTreeMap<String, Vec<super::FactQuery>> = BTreeMap::new();
    let mut seen: HashSet<String> = HashSet::new();
    for step in steps {
        for node in step.targets(&cx.cluster) {
            for q in step.facts(cx, node) {
                if cx.hosts.contains_key(&q.node) && seen.insert(q.key.clone()) {
                    by_node.entry(q.node.clone()).or_default().push(q);
                }
            }
        }
    }
    let groups: Vec<(String, Vec<super::FactQuery>)> = by_node.into_iter().collect();
    crate::par::map(&groups, |(node, queries)| {
        let Ok(host) = cx.host(node) else { return };
        let t = std::time::Instant::now();
        let cmds: Vec<Cmd> = queries.iter().map(|q| q.cmd.clone()).collect();
        match crate::host::run_all(host.as_ref(), &cmds) {
            Ok(outs) => {
                let mut facts = cx.facts.lock().expect("facts lock");
                for (q, (ok, out)) in queries.iter().zip(outs) {
                    facts.insert(q.key.clone(), (q.read)(ok, &out));
                }
                tracing::debug!(
                    node = %node,
                    "prefetch: {} facts read in {:.2} s",
                    queries.len(),
                    t.elapsed().as_secs_f64()
                );
            }
            Err(e) => tracing::debug!(node = %node, "prefetch facts: {e}"),
        }
    });
}

/// Read, in one probe per node, what every step in `steps` will plan from. Read-only; an error
/// (a node that does not answer, a step that cannot say what it wants) leaves that node to be
/// read step by step, where the error is reported.
pub fn prefetch(cx: &Cx, steps: &[Arc<dyn Step>]) {
    let nodes: Vec<&Node> = cx
        .cluster
        .nodes
        .iter()
        .filter(|n| cx.hosts.contains_key(&n.name))
        .collect();
    crate::par::map(&nodes, |node| {
        let mut checks: Vec<Cmd> = Vec::new();
        let mut units: Vec<String> = Vec::new();
        let mut paths: Vec<String> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        for step in steps {
            if !step
                .targets(&cx.cluster)
                .iter()
                .any(|n| n.name == node.name)
            {
                continue;
            }
            let Ok(want) = step.desired(cx, node) else {
                return;
            };
            let (c, u, p) = super::plan::probe_inputs(&want);
            for c in c {
                if !checks.contains(&c) {
                    checks.push(c);
                }
            }
            units.extend(u.into_iter().filter(|u| seen.insert(format!("u:{u}"))));
            paths.extend(p.into_iter().filter(|p| seen.insert(format!("p:{p}"))));
        }
        if checks.is_empty() && units.is_empty() && paths.is_empty() {
            return;
        }
        let Ok(host) = cx.host(&node.name) else {
            return;
        };
        let t = std::time::Instant::now();
        match host.probe(&checks, &units, &paths) {
            Ok(probe) => {
                tracing::debug!(
                    node = %node.name,
                    "prefetch: {} checks, {} units, {} paths read in {:.2} s",
                    checks.len(),
                    units.len(),
                    paths.len(),
                    t.elapsed().as_secs_f64()
                );
                cx.prefetched.store(&node.name, &checks, &paths, probe)
            }
            Err(e) => tracing::debug!(node = %node.name, "prefetch: {e}"),
        }
    });
}
