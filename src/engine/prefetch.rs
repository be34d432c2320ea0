//! One read per node for the whole run. Before the first step, [`prefetch`] gathers what every
//! step's plan will read on a node — its guards, its units, its paths — and reads it in one probe
//! (in parallel over the nodes). Each step's plan answers from that read for as long as nothing
//! has changed anywhere in the run; the first change applied on any node drops every prefetched
//! answer, and later steps read their nodes again as before. A converged cluster thus costs one
//! round trip per node instead of one per step and node, and the answers are never older than the
//! run's last change.
//!
//! The facts the plans depend on (is there etcd data, can kata run) are read in that same round
//! trip when the last run's facts are remembered in the cluster's work dir
//! ([`prefetch_speculating`]): the probe is planned from them, and kept only if every fact read
//! fresh is still the same.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use std::path::{Path, PathBuf};

use super::{Cx, Fact, FactQuery, Step};
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

/// The facts every step of the run declares, each once, by the node they are read on.
fn fact_queries(cx: &Cx, steps: &[Arc<dyn Step>]) -> BTreeMap<String, Vec<FactQuery>> {
    let mut by_node: BTreeMap<String, Vec<FactQuery>> = BTreeMap::new();
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
    by_node
}

/// Every fact the steps declare, read in one round trip per node (the nodes in parallel) into
/// `cx`'s facts, before any step asks. A node that does not answer is left to be asked step by
/// step, where the error is reported.
pub fn prefetch_facts(cx: &Cx, steps: &[Arc<dyn Step>]) {
    let groups: Vec<(String, Vec<FactQuery>)> = fact_queries(cx, steps).into_iter().collect();
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

/// The facts of the run's steps as `cx` holds them now (for [`remember`]); `None` if one is
/// missing (a node did not answer).
pub fn current_facts(cx: &Cx, steps: &[Arc<dyn Step>]) -> Option<BTreeMap<String, Fact>> {
    let facts = cx.facts.lock().expect("facts lock");
    fact_queries(cx, steps)
        .values()
        .flatten()
        .map(|q| facts.get(&q.key).map(|v| (q.key.clone(), v.clone())))
        .collect()
}

/// Where a cluster keeps the facts its last run read.
fn memo_path(cluster_dir: &Path) -> PathBuf {
    cluster_dir.join("node-facts.json")
}

/// The facts the last run of this cluster read (empty when there are none, or unreadable: the
/// memo only ever saves a round trip).
pub fn remembered(cluster_dir: &Path) -> BTreeMap<String, Fact> {
    std::fs::read(memo_path(cluster_dir))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Keep `facts` for the next run (unless they are `before`, what the run found remembered).
pub fn remember(
    cluster_dir: &Path,
    facts: &BTreeMap<String, Fact>,
    before: &BTreeMap<String, Fact>,
) {
    if facts.is_empty() || before == facts {
        return;
    }
    let text = serde_json::to_vec_pretty(facts).unwrap_or_default();
    if let Err(e) =
        crate::fsutil::write_atomic(&memo_path(cluster_dir), &text, crate::fsutil::PUBLIC)
    {
        tracing::debug!("facts memo: {e:#}");
    }
}

/// The facts and the probe of every node in one round trip, planned from the facts the last
/// run read (`remembered`). The facts are read fresh in the same round trip; the probe's
/// answers are kept only when every fact is what was remembered (so every step's plan is the
/// one the probe was made for); otherwise they are dropped and the nodes probed again with the
/// fresh facts. Returns false, having done nothing, when a fact of this run is not remembered
/// (the caller reads facts, then probes).
pub fn prefetch_speculating(
    cx: &Cx,
    steps: &[Arc<dyn Step>],
    remembered: &BTreeMap<String, Fact>,
) -> bool {
    let groups = fact_queries(cx, steps);
    let all: Vec<&FactQuery> = groups.values().flatten().collect();
    if all.is_empty() || !all.iter().all(|q| remembered.contains_key(&q.key)) {
        return false;
    }
    {
        let mut facts = cx.facts.lock().expect("facts lock");
        for q in &all {
            facts.insert(q.key.clone(), remembered[&q.key].clone());
        }
    }
    let nodes = connected_nodes(cx);
    let results: Vec<Option<NodeRead>> = crate::par::map(&nodes, |node| {
        let reads: &[FactQuery] = groups.get(&node.name).map_or(&[], |v| v.as_slice());
        let inputs = probe_inputs(cx, steps, node);
        let (checks, units, paths) = inputs.clone().unwrap_or_default();
        if reads.is_empty() && checks.is_empty() && units.is_empty() && paths.is_empty() {
            return Some((Vec::new(), None));
        }
        let host = cx.host(&node.name).ok()?;
        let cmds: Vec<Cmd> = reads.iter().map(|q| q.cmd.clone()).collect();
        let t = std::time::Instant::now();
        match host.probe_reading(&cmds, &checks, &units, &paths) {
            Ok((outs, probe)) => {
                tracing::debug!(
                    node = %node.name,
                    "prefetch: {} facts, {} checks, {} units, {} paths read in {:.2} s",
                    reads.len(),
                    checks.len(),
                    units.len(),
                    paths.len(),
                    t.elapsed().as_secs_f64()
                );
                let fresh = reads
                    .iter()
                    .zip(outs)
                    .map(|(q, (ok, out))| (q.key.clone(), (q.read)(ok, &out)))
                    .collect();
                Some((fresh, inputs.map(|i| (i, probe))))
            }
            Err(e) => {
                tracing::debug!(node = %node.name, "prefetch: {e}");
                None
            }
        }
    });
    let mut fresh: BTreeMap<String, Fact> = BTreeMap::new();
    let mut probed = Vec::new();
    for (node, r) in nodes
        .iter()
        .zip(results)
        .filter_map(|(n, r)| r.map(|r| (n, r)))
    {
        fresh.extend(r.0);
        if let Some(p) = r.1 {
            probed.push((node.name.clone(), p));
        }
    }
    let same = all
        .iter()
        .all(|q| fresh.get(&q.key) == remembered.get(&q.key));
    {
        // Only facts read now stay; one a node did not answer is asked again by its step.
        let mut facts = cx.facts.lock().expect("facts lock");
        for q in &all {
            facts.remove(&q.key);
        }
        facts.extend(fresh);
    }
    if same {
        for (node, ((checks, _, paths), probe)) in probed {
            cx.prefetched.store(&node, &checks, &paths, probe);
        }
    } else {
        tracing::debug!("prefetch: facts changed since the last run; probing again");
        prefetch(cx, steps);
    }
    true
}

/// What every step in `steps` will probe on `node`: (checks, units, paths), each once; `None`
/// when a step cannot say what it wants there.
fn probe_inputs(cx: &Cx, steps: &[Arc<dyn Step>], node: &Node) -> Option<ProbeInputs> {
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
        let want = step.desired(cx, node).ok()?;
        let (c, u, p) = super::plan::probe_inputs(&want);
        for c in c {
            if !checks.contains(&c) {
                checks.push(c);
            }
        }
        units.extend(u.into_iter().filter(|u| seen.insert(format!("u:{u}"))));
        paths.extend(p.into_iter().filter(|p| seen.insert(format!("p:{p}"))));
    }
    Some((checks, units, paths))
}

type ProbeInputs = (Vec<Cmd>, Vec<String>, Vec<String>);

/// The nodes of the cluster this run is connected to.
fn connected_nodes(cx: &Cx) -> Vec<&Node> {
    cx.cluster
        .nodes
        .iter()
        .filter(|n| cx.hosts.contains_key(&n.name))
        .collect()
}

/// A node's facts read fresh (key, value), and its probe with what it was asked.
type NodeRead = (Vec<(String, Fact)>, Option<(ProbeInputs, Probe)>);

/// Read, in one probe per node, what every step in `steps` will plan from. Read-only; an error
/// (a node that does not answer, a step that cannot say what it wants) leaves that node to be
/// read step by step, where the error is reported.
pub fn prefetch(cx: &Cx, steps: &[Arc<dyn Step>]) {
    let nodes = connected_nodes(cx);
    crate::par::map(&nodes, |node| {
        let Some((checks, units, paths)) = probe_inputs(cx, steps, node) else {
            return;
        };
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
