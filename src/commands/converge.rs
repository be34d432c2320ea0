//! Running node steps on the engine, shared by `create-controllers`, `up` and `plan`: make the
//! inputs ready on the hypervisor (PKI files, artifacts — before anything changes anywhere),
//! enter the lab namespace if needed, take the cluster lock, connect to the nodes with pinned
//! host keys, run the steps, print progress and the summary, keep the journal.

use std::collections::BTreeMap;
use std::sync::Arc;

use std::time::Duration;

use anyhow::Result;

use super::hosts::Spread;
use super::{Ctx, reach_nodes};
use crate::artifacts::{self, Lock, Provided};
use crate::engine::hv::{HvStep, Hx};
use crate::engine::pipeline::{self, PipelineStep, Target};
use crate::engine::{self, Cx, Event, Report, Step, journal};
use crate::error::{Exit, Failure};
use crate::host::Host;
use crate::host::ssh::{SshHost, SshTarget};
use crate::spec::{Cluster, Node};
use crate::steps::{self, Inputs};
use crate::vms::pins;

pub struct Run<'a> {
    pub steps: Vec<Arc<dyn Step>>,
    pub dry_run: bool,
    pub allow_missing_binaries: bool,
    pub concurrency: usize,
    pub title: &'a str,
}

/// Every artifact the steps need, made ready on the hypervisor, and the digests they would add to
/// `artifacts.lock` (per artifact), recorded only once a node has installed them.
#[derive(Clone)]
pub struct Resolved {
    pub provided: BTreeMap<String, Provided>,
    pending: BTreeMap<String, Lock>,
}

/// Resolve every artifact the steps need; `Missing` ones are fatal unless allowed. A digest
/// that differs from the lock stops here, before anything changes anywhere.
pub fn resolve_artifacts(
    cluster: &Cluster,
    steps: &[Arc<dyn Step>],
    allow_missing: bool,
    fetch: artifacts::Fetch,
) -> Result<Resolved> {
    let started = std::time::Instant::now();
    let locked = Lock::load(cluster)?;
    let mut provided = BTreeMap::new();
    let mut pending = BTreeMap::new();
    let mut missing = Vec::new();
    for name in steps::artifacts_for(steps, cluster) {
        let mut lock = locked.clone();
        let p = artifacts::provide(cluster, &mut lock, name, fetch)?;
        if let Provided::Missing { reason, file } = &p {
            missing.push(format!("{name}: {reason} (file name: {file})"));
        }
        lock.0.retain(|file, _| !locked.0.contains_key(file));
        pending.insert(name.to_string(), lock);
        provided.insert(name.to_string(), p);
    }
    tracing::debug!(
        "artifacts resolved in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    if !missing.is_empty() && !allow_missing {
        return Err(Failure::new(format!(
            "these binaries cannot be had, nothing was changed:\n  {}",
            missing.join("\n  ")
        ))
        .hint("put them under their upstream names into a directory and pass --artifacts-dir DIR (spec.artifacts.dir), use --artifacts upstream with internet access, or pass --allow-missing-binaries to install every unit and config and start what can run")
        .into());
    }
    Ok(Resolved { provided, pending })
}

/// What a real run would download that a dry run did not (one line each).
pub fn would_download(provided: &BTreeMap<String, Provided>) -> Vec<String> {
    let mut out: Vec<String> = provided
        .values()
        .filter_map(|p| match p {
            Provided::WouldDownload { what, .. } => Some(what.clone()),
            _ => None,
        })
        .collect();
    out.dedup();
    out
}

/// Record in `artifacts.lock` the digests of what the steps that succeeded on at least one
/// node installed (a run that failed before reaching a node locks nothing).
fn lock_installed(
    cluster: &Cluster,
    steps: &[Arc<dyn Step>],
    report: &Report,
    pending: &BTreeMap<String, Lock>,
) -> Result<()> {
    let installed: Vec<Arc<dyn Step>> = steps
        .iter()
        .filter(|s| {
            report
                .nodes
                .iter()
                .any(|n| n.step == s.name() && n.error.is_none())
        })
        .cloned()
        .collect();
    let mut lock = Lock::load(cluster)?;
    let before = lock.clone();
    for name in steps::artifacts_for(&installed, cluster) {
        if let Some(new) = pending.get(name) {
            for (file, sha) in &new.0 {
                lock.0.entry(file.clone()).or_insert_with(|| sha.clone());
            }
        }
    }
    if lock != before {
        lock.save(cluster)?;
    }
    Ok(())
}

/// SSH to every node of `nodes` (pinned host keys). A dry run reads the nodes' digest caches on
/// the hypervisor but does not add to them.
fn connect_all(
    cluster: &Cluster,
    nodes: &[Node],
    dry_run: bool,
) -> Result<BTreeMap<String, Arc<dyn Host>>> {
    let targets: Vec<(Node, SshTarget)> = nodes
        .iter()
        .map(|n| {
            let mut t = pins::ssh_target(cluster, n, Duration::from_secs(10))?;
            t.digest_cache_read_only = dry_run;
            Ok((n.clone(), t))
        })
        .collect::<Result<_>>()?;
    let results = engine::fanout::map(
        targets,
        nodes.len(),
        Duration::from_secs(60),
        |(_, t)| SshHost::connect_retrying(t.clone(), 3),
        |_, _| {},
    );
    let mut hosts: BTreeMap<String, Arc<dyn Host>> = BTreeMap::new();
    let mut errors = Vec::new();
    let mut hint = None;
    for ((n, _), r) in results {
        match r {
            Ok(Ok(h)) => {
                hosts.insert(n.name.clone(), Arc::new(h));
            }
            Ok(Err(e)) => {
                hint = hint.or_else(|| e.hint());
                errors.push(format!("- {e}"));
            }
            Err(_) => errors.push(format!("- {}: no SSH connection within 60 s", n.name)),
        }
    }
    if !errors.is_empty() {
        let mut f = Failure::new(format!(
            "cannot reach {} node{}:\n{}",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            errors.join("\n")
        ));
        if let Some(h) = hint {
            f = f.hint(h);
        }
        return Err(f.into());
    }
    Ok(hosts)
}

/// A selection of the pipeline and how to run it.
pub struct PipelineRun<'a> {
    pub title: &'a str,
    pub steps: Vec<PipelineStep>,
    pub dry_run: bool,
    pub allow_missing_binaries: bool,
    pub concurrency: usize,
}

/// Run a selection of the pipeline once, in order — the runner of `up`: every step's preflight
/// and the artifacts of every node step (a bad digest, a missing binary) before anything
/// changes anywhere; then one lock and one log for the whole run; the hypervisor's steps on
/// this thread, the node steps fanned out over their nodes with the journal; one report.
pub fn run_pipeline(ctx: &mut Ctx, cluster: &Cluster, run: PipelineRun) -> Result<Report> {
    let gated = pipeline::gated(&run.steps);
    let gated_refs: Vec<&dyn HvStep> = gated.iter().map(|s| s.as_ref()).collect();
    engine::hv::preflight(cluster, &gated_refs, run.dry_run)?;
    let node_steps = pipeline::declared(&run.steps);
    let resolved = if node_steps.is_empty() {
        None
    } else {
        let fetch = if run.dry_run {
            artifacts::Fetch::Never
        } else {
            artifacts::Fetch::Allowed
        };
        Some(resolve_artifacts(
            cluster,
            &node_steps,
            run.allow_missing_binaries,
            fetch,
        )?)
    };
    // Every hypervisor connected once for the whole run; the nodes reached through them.
    let spread = connect_for(cluster, &gated_refs)?;
    if run.steps.iter().any(|s| s.target() != Target::Local) {
        match &spread {
            Some(s) => super::hosts::reach_all(cluster, s)?,
            None => reach_nodes(cluster)?,
        }
    }
    let _lock = if run.dry_run {
        None
    } else {
        Some(super::lock(cluster)?)
    };
    let started = std::time::Instant::now();
    let mut report = Report {
        dry_run: run.dry_run,
        ..Report::default()
    };
    for segment in pipeline::segments(&run.steps) {
        let part = match &segment[0] {
            PipelineStep::Gated(_) => {
                let steps = pipeline::gated(segment);
                let refs: Vec<&dyn HvStep> = steps.iter().map(|s| s.as_ref()).collect();
                hypervisor_steps(ctx, cluster, run.title, &refs, run.dry_run, spread.as_ref())?
            }
            PipelineStep::Declared(_) => converge_resolved(
                ctx,
                cluster,
                Run {
                    steps: pipeline::declared(segment),
                    dry_run: run.dry_run,
                    allow_missing_binaries: run.allow_missing_binaries,
                    concurrency: run.concurrency,
                    title: run.title,
                },
                resolved.clone().expect("resolved for the node steps"),
            )?,
        };
        report.nodes.extend(part.nodes);
        if part.interrupted {
            report.interrupted = true;
            break;
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Run hypervisor steps (`prepare`, `cnc`, `create-vms`, `destroy`) on the engine: their
/// preflight, every hypervisor connected when a step needs libvirt, then
/// [`hypervisor_steps`]. The caller has entered the lab if needed.
pub fn run_hypervisor(
    ctx: &mut Ctx,
    cluster: &Cluster,
    title: &str,
    steps: &[&dyn HvStep],
    dry_run: bool,
) -> Result<Report> {
    engine::hv::preflight(cluster, steps, dry_run)?;
    let spread = connect_for(cluster, steps)?;
    hypervisor_steps(ctx, cluster, title, steps, dry_run, spread.as_ref())
}

/// Every hypervisor of the cluster, connected and placed, when one of `steps` acts on libvirt
/// (the PKI and the image need none: `cnc` works with no lab running).
fn connect_for(cluster: &Cluster, steps: &[&dyn HvStep]) -> Result<Option<Spread>> {
    if steps
        .iter()
        .any(|s| s.target() == engine::Target::Hypervisor)
    {
        Ok(Some(super::hosts::spread(cluster)?))
    } else {
        Ok(None)
    }
}

/// Hypervisor steps whose preflight passed: the cluster lock unless a dry run, a log file,
/// every line through the printer; on every hypervisor of `spread` (none: local steps only).
fn hypervisor_steps(
    ctx: &mut Ctx,
    cluster: &Cluster,
    title: &str,
    steps: &[&dyn HvStep],
    dry_run: bool,
    spread: Option<&Spread>,
) -> Result<Report> {
    let _lock = if dry_run {
        None
    } else {
        Some(super::lock(cluster)?)
    };
    if !dry_run {
        let log = crate::logfile::open(&cluster.cluster_dir(), title)?;
        tracing::info!(log = %log.display(), "{title} started");
    }
    let Some(spread) = spread else {
        let hx = Hx {
            cluster,
            whole: cluster,
            hv: None,
        };
        let printer = &mut *ctx.printer;
        return engine::hv::run(&hx, steps, dry_run, crate::interrupt::flag(), &mut |l| {
            printer.status(l)
        });
    };
    spread.show(ctx, cluster);
    let printer = &mut *ctx.printer;
    engine::hv::run_spread(
        cluster,
        &spread.on_hosts(),
        steps,
        dry_run,
        crate::interrupt::flag(),
        &mut |l| printer.status(l),
    )
}

/// Run the steps: connect, lock, log, journal, progress and the summary. The artifacts are
/// resolved first, on the hypervisor, before anything changes anywhere.
pub fn converge(ctx: &mut Ctx, cluster: &Cluster, run: Run) -> Result<Report> {
    // A dry run looks at what is cached and says what it would download.
    let fetch = if run.dry_run {
        artifacts::Fetch::Never
    } else {
        artifacts::Fetch::Allowed
    };
    let resolved = resolve_artifacts(cluster, &run.steps, run.allow_missing_binaries, fetch)?;
    converge_resolved(ctx, cluster, run, resolved)
}

/// [`converge`] with the artifacts `run.steps` need already resolved (by [`resolve_artifacts`]).
pub fn converge_resolved(
    ctx: &mut Ctx,
    cluster: &Cluster,
    run: Run,
    resolved: Resolved,
) -> Result<Report> {
    let Resolved {
        provided: artifacts,
        pending,
    } = resolved;
    for what in would_download(&artifacts) {
        ctx.printer
            .status(&format!("{}: would download {what}", run.title));
    }
    reach_nodes(cluster)?;
    let _lock = if run.dry_run {
        None
    } else {
        Some(super::lock(cluster)?)
    };
    let dir = cluster.cluster_dir();
    if !run.dry_run {
        let log = crate::logfile::open(&dir, run.title)?;
        tracing::info!(log = %log.display(), "{} started", run.title);
    }
    let unfinished = journal::unfinished(&dir)?;
    if let Some(prev) = &unfinished {
        ctx.printer.status(&format!(
            "{}: the previous run ({}) stopped{}{}; every step re-reads its nodes, so this run re-verifies what was done and goes on from there",
            run.title,
            prev.command,
            prev.stopped_at.as_deref().map(|s| format!(" in {s}")).unwrap_or_default(),
            prev.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default(),
        ));
    }
    let mut nodes: Vec<Node> = Vec::new();
    for s in &run.steps {
        for n in s.targets(cluster) {
            if !nodes.iter().any(|m| m.name == n.name) {
                nodes.push(n.clone());
            }
        }
    }
    let mut j = journal::Journal {
        command: run.title.to_string(),
        pid: std::process::id(),
        ..Default::default()
    };
    if !run.dry_run {
        journal::write(&dir, &j)?;
    }
    ctx.printer.status(&format!(
        "{}: connecting to {} node(s)",
        run.title,
        nodes.len()
    ));
    // Image archives can be large: read them only for the step that imports them.
    let images = if run
        .steps
        .iter()
        .any(|s| s.id() == engine::StepId::InstallContainerd)
    {
        steps::ImageInput::load(cluster)?
    } else {
        Vec::new()
    };
    let hosts = connect_all(cluster, &nodes, run.dry_run)?;
    let cx = Arc::new(Cx::new(
        cluster.clone(),
        hosts,
        Inputs {
            pki: Inputs::load_pki(cluster)?,
            artifacts: Some(artifacts),
            images,
        },
    ));
    let opts = engine::Options {
        dry_run: run.dry_run,
        concurrency: run.concurrency,
        // After a run that stopped, everything is checked again.
        reverify: unfinished.is_some(),
        cancel: crate::interrupt::flag(),
        ..Default::default()
    };
    let graceful = crate::interrupt::graceful();
    let printer = &mut *ctx.printer;
    // Nodes work through their steps in lanes: a node's line names its step when the heading
    // above it is another step's.
    let mut heading = String::new();
    let report = engine::run(cx, run.steps.clone(), &opts, |ev| match ev {
        Event::StepStarted {
            step,
            index,
            of,
            nodes,
        } => {
            heading = step.to_string();
            printer.status(&format!("[{index}/{of}] {step} on {nodes} node(s)"))
        }
        Event::NodeDone(r) => printer.node_report(r, opts.dry_run, r.step != heading),
    });
    drop(graceful);
    // Journal: what finished, where it stopped.
    let mut by_step: Vec<(String, bool)> = Vec::new();
    for n in &report.nodes {
        match by_step.iter_mut().find(|(s, _)| *s == n.step) {
            Some((_, ok)) => *ok &= n.error.is_none(),
            None => by_step.push((n.step.clone(), n.error.is_none())),
        }
    }
    j.done = by_step
        .iter()
        .filter(|(_, ok)| *ok)
        .map(|(s, _)| s.clone())
        .collect();
    j.stopped_at = by_step.iter().find(|(_, ok)| !ok).map(|(s, _)| s.clone());
    j.finished = j.stopped_at.is_none() && !report.interrupted;
    if report.interrupted {
        j.reason = Some("interrupted (Ctrl-C)".into());
    } else if j.stopped_at.is_some() {
        j.reason = Some("failed".into());
    }
    if !run.dry_run {
        journal::write(&dir, &j)?;
        lock_installed(cluster, &run.steps, &report, &pending)?;
    }
    ctx.printer.run_summary(run.title, &report);
    if let Some(log) = crate::logfile::current() {
        ctx.printer
            .status(&format!("{}: log {}", run.title, log.display()));
    }
    if report.interrupted {
        ctx.printer.status(&format!(
            "{}: interrupted; the journal ({}) records where; run the command again to go on",
            run.title,
            journal::path(&dir).display()
        ));
        return Err(Exit(130).into());
    }
    if let Some(msg) = engine::failure_summary(&report) {
        return Err(Failure::new(msg)
            .hint("fix the cause on the node(s) named and run the command again; nodes that succeeded are not redone")
            .into());
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::NodeReport;

    /// artifacts.lock gets a digest only once a node installed the artifact: nothing for a run
    /// that reached no node, the etcd tarball's digest when install_etcd succeeded somewhere,
    /// nothing for a step that failed on every node.
    #[test]
    fn the_lock_records_only_what_a_node_installed() {
        let d = tempfile::tempdir().unwrap();
        let ov = crate::spec::Overrides {
            work_dir: Some(d.path().display().to_string()),
            ..Default::default()
        };
        let cluster = crate::spec::resolve(None, &ov, &|_| None).unwrap().0;
        let steps = steps::node_steps();
        let pending: BTreeMap<String, Lock> = [
            ("etcd", "etcd.tar.gz", "aa"),
            ("kube-apiserver", "kube-apiserver", "bb"),
        ]
        .into_iter()
        .map(|(n, f, s)| (n.to_string(), Lock([(f.to_string(), s.to_string())].into())))
        .collect();
        let mut report = Report {
            dry_run: false,
            nodes: Vec::new(),
            interrupted: false,
            seconds: 0.0,
        };
        lock_installed(&cluster, &steps, &report, &pending).unwrap();
        assert!(!Lock::path(&cluster).exists(), "no node reached: no lock");
        report
            .nodes
            .push(NodeReport::empty("install_etcd", "kubi-controller-01"));
        let mut failed = NodeReport::empty("install_kubernetes_controllers", "kubi-controller-01");
        failed.error = Some("upload failed".into());
        report.nodes.push(failed);
        lock_installed(&cluster, &steps, &report, &pending).unwrap();
        let lock = Lock::load(&cluster).unwrap();
        assert_eq!(
            lock.0,
            BTreeMap::from([("etcd.tar.gz".to_string(), "aa".to_string())])
        );
    }
}
