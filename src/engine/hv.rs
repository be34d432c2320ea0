//! Steps on the hypervisor itself — its packages and settings, libvirt's networks, pool and
//! VMs, the PKI in the work dir — in the vocabulary of the node steps: every mutation is a typed
//! [`Change`] that passes one [`Gate`] (k0sctl's `Wet`). On a dry run the gate records the
//! change and does nothing; on a real run it records it and does it. A step's code is the same
//! either way, so a dry run lists exactly what the real run does, and a second run lists
//! nothing. Reported like a node step, with the node [`HYPERVISOR`].
//!
//! Why not [`super::Step`]: those declare files and units that the engine diffs by content;
//! a VM, a network or a certificate has no content to diff (a new certificate is never the same
//! bytes), so these steps decide themselves what differs and hand each change to the gate.
//! The steps run in order on the calling thread; a step fans out itself where that pays (the
//! VMs boot and are waited for in parallel). A failing step ends the run with its own error
//! (its hint and exit code kept), after the lines of what it did.

use super::{StepId, Target};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Result;

use super::{Change, NodeReport, Report};
use crate::hypervisor::Hypervisor;
use crate::spec::Cluster;

/// The node name hypervisor steps report under.
pub const HYPERVISOR: &str = "hypervisor";

/// What hypervisor steps see.
pub struct Hx<'a> {
    /// The nodes on this hypervisor (the whole cluster when it has one hypervisor).
    pub cluster: &'a Cluster,
    /// Every node, whichever hypervisor it is on (what `known_hosts` lists).
    pub whole: &'a Cluster,
    /// The libvirt connection, for the steps that need one (the PKI does not).
    pub hv: Option<&'a dyn Hypervisor>,
}

impl Hx<'_> {
    pub fn hv(&self) -> Result<&dyn Hypervisor> {
        self.hv
            .ok_or_else(|| anyhow::anyhow!("no libvirt connection in this run"))
    }
}

/// Every mutation of a hypervisor step goes through here.
pub struct Gate<'a> {
    dry_run: bool,
    step: &'static str,
    cancel: Arc<AtomicBool>,
    say: Box<dyn FnMut(&str) + 'a>,
    /// `[hv2] ` before each change said, on a cluster over several hypervisors.
    tag: String,
    pub changes: Vec<Change>,
    pub applied: usize,
    /// (object, note): what was found and left alone (drift), said once.
    pub notes: Vec<(String, String)>,
}

impl<'a> Gate<'a> {
    pub fn new(dry_run: bool, say: impl FnMut(&str) + 'a) -> Self {
        Gate {
            dry_run,
            step: "",
            cancel: Arc::new(AtomicBool::new(false)),
            say: Box::new(say),
            tag: String::new(),
            changes: Vec::new(),
            applied: 0,
            notes: Vec::new(),
        }
    }

    /// A gate that prints nothing (tests, library callers).
    pub fn quiet(dry_run: bool) -> Gate<'static> {
        Gate::new(dry_run, |_| {})
    }

    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// Name the hypervisor the next changes are made on (`None`: one hypervisor, no name).
    pub fn on_host(&mut self, host: Option<&str>) {
        self.tag = host_tag(host);
    }

    /// Record `change` and, unless this is a dry run, do it. `Ok(true)` when it was done.
    /// After Ctrl-C nothing new starts.
    pub fn wet(&mut self, change: Change, apply: impl FnOnce() -> Result<()>) -> Result<bool> {
        anyhow::ensure!(
            !self.cancel.load(Ordering::SeqCst),
            "interrupted before: {change}"
        );
        tracing::info!(
            node = HYPERVISOR,
            step = self.step,
            dry_run = self.dry_run,
            "{change}"
        );
        (self.say)(&format!("  {}{change}", self.tag));
        self.changes.push(change);
        if self.dry_run {
            return Ok(false);
        }
        apply()?;
        self.applied += 1;
        Ok(true)
    }

    /// A change a library made through its own gate (the PKI's): recorded, said, counted.
    pub fn done(&mut self, change: Change) {
        tracing::info!(
            node = HYPERVISOR,
            step = self.step,
            dry_run = self.dry_run,
            "{change}"
        );
        self.changes.push(change);
        if !self.dry_run {
            self.applied += 1;
        }
    }

    /// Something found and deliberately left alone.
    pub fn note(&mut self, object: &str, text: impl Into<String>) {
        let text = text.into();
        tracing::warn!(node = HYPERVISOR, step = self.step, %object, "{text}");
        self.notes.push((object.to_string(), text));
    }

    /// A progress line that is not a change.
    pub fn say(&mut self, text: &str) {
        (self.say)(text);
    }
}

/// One step on the hypervisor; one file per step under `steps/`.
pub trait HvStep: Sync {
    /// Which step it is.
    fn id(&self) -> StepId;
    /// `verb_noun`, like the node steps (`create_vms`).
    fn name(&self) -> &'static str {
        self.id().name()
    }
    /// What it acts on: [`Target::Local`] steps (the PKI, the image) need no libvirt
    /// connection, so `cnc` works with no lab running.
    fn target(&self) -> Target {
        Target::Hypervisor
    }
    /// Checks of the step's own inputs before anything is locked, connected or changed (bad
    /// input is refused with nothing touched).
    fn preflight(&self, _cluster: &Cluster, _dry_run: bool) -> Result<()> {
        Ok(())
    }
    /// Read what is, and pass every difference through `gate`; then wait for and check
    /// what was done (not on a dry run).
    fn run(&self, hx: &Hx, gate: &mut Gate) -> Result<()>;
}

/// Every step's [`HvStep::preflight`], before the run.
pub fn preflight(cluster: &Cluster, steps: &[&dyn HvStep], dry_run: bool) -> Result<()> {
    steps.iter().try_for_each(|s| s.preflight(cluster, dry_run))
}

/// Run `steps` in order. `say` gets every line the steps print; `cancel` stops new changes.
pub fn run(
    hx: &Hx,
    steps: &[&dyn HvStep],
    dry_run: bool,
    cancel: Arc<AtomicBool>,
    say: &mut dyn FnMut(&str),
) -> Result<Report> {
    let start = Instant::now();
    let mut report = Report {
        dry_run,
        ..Report::default()
    };
    for step in steps {
        let t = Instant::now();
        let mut gate = Gate::new(dry_run, &mut *say);
        gate.step = step.name();
        gate.cancel = cancel.clone();
        let result = step.run(hx, &mut gate);
        let mut r = NodeReport::empty(step.name(), HYPERVISOR);
        r.changes = std::mem::take(&mut gate.changes);
        r.applied = gate.applied;
        r.not_started = std::mem::take(&mut gate.notes);
        r.seconds = t.elapsed().as_secs_f64();
        drop(gate);
        result?;
        report.nodes.push(r);
        if cancel.load(Ordering::SeqCst) {
            report.interrupted = true;
            break;
        }
    }
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

/// `[hv2] ` before a line about a host of a cluster over several hypervisors (`None`: one
/// hypervisor, nothing).
pub fn host_tag(host: Option<&str>) -> String {
    host.map(|h| format!("[{h}] ")).unwrap_or_default()
}

/// `e` named by the hypervisor it came from (`None`: one hypervisor, nothing to name).
pub fn on_host_error(host: Option<&str>, e: anyhow::Error) -> anyhow::Error {
    match host {
        Some(h) => e.context(format!("hypervisor {h}")),
        None => e,
    }
}

/// One hypervisor of a cluster spread over several: its name, the cluster as it sees it
/// ([`Cluster::on_host`]) and its connection.
pub struct OnHost<'a> {
    pub name: &'a str,
    pub cluster: &'a Cluster,
    pub hv: &'a dyn Hypervisor,
}

/// Run `steps` over every hypervisor of `whole`: a [`Target::Local`] step once, a hypervisor
/// step on every host at the same time (a VM boots on each while the others boot). Every line
/// is said with its host's name; a host that fails does not stop the others' step, and the
/// run ends after that step with the first failure, named by its host. One host: [`run`].
pub fn run_spread(
    whole: &Cluster,
    hosts: &[OnHost],
    steps: &[&dyn HvStep],
    dry_run: bool,
    cancel: Arc<AtomicBool>,
    say: &mut dyn FnMut(&str),
) -> Result<Report> {
    if let [one] = hosts {
        let hx = Hx {
            cluster: one.cluster,
            whole,
            hv: Some(one.hv),
        };
        return run(&hx, steps, dry_run, cancel, say);
    }
    let start = Instant::now();
    let mut report = Report {
        dry_run,
        ..Report::default()
    };
    for step in steps {
        let part = if step.target() == Target::Local {
            let hx = Hx {
                cluster: whole,
                whole,
                hv: None,
            };
            run(&hx, &[*step], dry_run, cancel.clone(), say)?
        } else {
            on_every_host(whole, hosts, *step, dry_run, &cancel, say)?
        };
        report.nodes.extend(part.nodes);
        if part.interrupted || cancel.load(Ordering::SeqCst) {
            report.interrupted = true;
            break;
        }
    }
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

/// One hypervisor step on every host in parallel; lines arrive as they are said.
fn on_every_host(
    whole: &Cluster,
    hosts: &[OnHost],
    step: &dyn HvStep,
    dry_run: bool,
    cancel: &Arc<AtomicBool>,
    say: &mut dyn FnMut(&str),
) -> Result<Report> {
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let results: Vec<(String, Result<Report>)> = std::thread::scope(|s| {
        let handles: Vec<_> = hosts
            .iter()
            .map(|h| {
                let tx = tx.clone();
                let cancel = cancel.clone();
                s.spawn(move || {
                    let hx = Hx {
                        cluster: h.cluster,
                        whole,
                        hv: Some(h.hv),
                    };
                    let mut say = |l: &str| {
                        let _ = tx.send(format!("{}{}", host_tag(Some(h.name)), l.trim_start()));
                    };
                    let mut r = run(&hx, &[step], dry_run, cancel, &mut say);
                    if let Ok(r) = &mut r {
                        for n in &mut r.nodes {
                            n.node = format!("{HYPERVISOR} {}", h.name);
                        }
                    }
                    (h.name.to_string(), r)
                })
            })
            .collect();
        drop(tx);
        for line in rx {
            say(&line);
        }
        handles
            .into_iter()
            .map(|h| h.join().expect("a hypervisor's thread panicked"))
            .collect()
    });
    let mut report = Report {
        dry_run,
        ..Report::default()
    };
    let mut first: Option<anyhow::Error> = None;
    for (name, r) in results {
        match r {
            Ok(r) => {
                report.nodes.extend(r.nodes);
                report.interrupted |= r.interrupted;
            }
            Err(e) => {
                say(&format!(
                    "{}{}: failed: {e:#}",
                    host_tag(Some(&name)),
                    step.name()
                ));
                let named = match crate::error::classify(&e) {
                    (_, Some(_)) => on_host_error(Some(&name), e),
                    // A lost connection, a libvirt error: say what the next run does.
                    (_, None) => e.context(
                        crate::error::Failure::new(format!("hypervisor {name}")).hint(
                            "the other hypervisors' part is done; once this one answers again, the same command completes what is missing",
                        ),
                    ),
                };
                first.get_or_insert(named);
            }
        }
    }
    match first {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Write `p` through the gate.
    fn touch(gate: &mut Gate, p: &std::path::Path) -> Result<()> {
        gate.wet(
            Change::WriteHostFile {
                path: p.display().to_string(),
                mode: "0644".into(),
            },
            || Ok(std::fs::write(p, b"x")?),
        )?;
        Ok(())
    }

    /// A step shaped like the real ones: one object that may need creating, through the gate.
    struct Touch(std::path::PathBuf);

    impl HvStep for Touch {
        fn id(&self) -> StepId {
            StepId::Custom("touch_file")
        }
        fn run(&self, _hx: &Hx, gate: &mut Gate) -> Result<()> {
            if !self.0.exists() {
                touch(gate, &self.0)?;
            } else {
                gate.say("up to date");
            }
            Ok(())
        }
    }

    fn cluster() -> Cluster {
        crate::spec::resolve(None, &Default::default(), &|_| None)
            .unwrap()
            .0
    }

    /// Run `Touch` on a fresh file with `f(hx, step)`.
    fn with_touch(f: impl FnOnce(&Hx, &Touch)) {
        let tmp = tempfile::tempdir().unwrap();
        let c = cluster();
        let hx = Hx {
            cluster: &c,
            whole: &c,
            hv: None,
        };
        f(&hx, &Touch(tmp.path().join("f")));
    }

    #[test]
    fn a_dry_run_predicts_the_run_and_a_second_run_changes_nothing() {
        with_touch(dry_then_real);
    }

    fn dry_then_real(hx: &Hx, step: &Touch) {
        let mut lines = Vec::new();
        let mut say = |l: &str| lines.push(l.to_string());
        let no = || Arc::new(AtomicBool::new(false));
        let dry = run(hx, &[step], true, no(), &mut say).unwrap();
        assert!(!step.0.exists(), "a dry run changes nothing");
        let real = run(hx, &[step], false, no(), &mut say).unwrap();
        assert_eq!(dry.nodes[0].changes, real.nodes[0].changes);
        assert_eq!((dry.nodes[0].applied, real.nodes[0].applied), (0, 1));
        assert!(step.0.exists());
        let again = run(hx, &[step], false, no(), &mut say).unwrap();
        assert_eq!(again.changes(), 0);
        assert_eq!(again.nodes[0].node, HYPERVISOR);
        assert_eq!(lines.last().map(String::as_str), Some("up to date"));
    }

    #[test]
    fn after_ctrl_c_nothing_new_starts() {
        with_touch(|hx, step| {
            let cancelled = Arc::new(AtomicBool::new(true));
            let e = run(hx, &[step], false, cancelled, &mut |_| {}).unwrap_err();
            assert!(format!("{e:#}").contains("interrupted before"), "{e:#}");
            assert!(!step.0.exists());
        });
    }

    /// Touches a file named after the host whose view it runs on; fails on the host `bad`
    /// while the flag is up (its connection lost).
    struct PerHost(std::path::PathBuf, AtomicBool);

    impl HvStep for PerHost {
        fn id(&self) -> StepId {
            StepId::Custom("touch_per_host")
        }
        fn run(&self, hx: &Hx, gate: &mut Gate) -> Result<()> {
            let host = &hx.cluster.hosts[0].name;
            anyhow::ensure!(
                host != "bad" || !self.1.load(Ordering::SeqCst),
                "this host is broken"
            );
            assert_eq!(hx.whole.hosts.len(), 3, "the whole cluster is seen too");
            let file = self.0.join(host);
            if !file.exists() {
                touch(gate, &file)?;
            }
            Ok(())
        }
    }

    #[test]
    fn a_spread_cluster_runs_each_step_on_every_host_and_one_failing_host_stops_no_other() {
        let tmp = tempfile::tempdir().unwrap();
        let mut whole = cluster();
        let first = whole.hosts[0].clone();
        let host = |name: &str| crate::spec::Host {
            name: name.into(),
            ..first.clone()
        };
        whole.hosts = vec![host("hv1"), host("bad"), host("hv2")];
        let views: Vec<Cluster> = whole.hosts.iter().map(|h| whole.on_host(h, &[])).collect();
        let hv = crate::hypervisor::fake::FakeHypervisor::new();
        let on: Vec<OnHost> = views
            .iter()
            .map(|v| OnHost {
                name: &v.hosts[0].name,
                cluster: v,
                hv: &hv,
            })
            .collect();
        let mut lines = Vec::new();
        let step = PerHost(tmp.path().to_path_buf(), AtomicBool::new(true));
        let e = run_spread(&whole, &on, &[&step], false, Default::default(), &mut |l| {
            lines.push(l.to_string())
        })
        .unwrap_err();
        assert_eq!(format!("{e:#}"), "hypervisor bad: this host is broken");
        assert!(
            crate::error::classify(&e)
                .1
                .is_some_and(|h| h.contains("completes what is missing")),
            "{e:#}"
        );
        assert!(tmp.path().join("hv1").exists() && tmp.path().join("hv2").exists());
        for want in [
            format!("[hv1] {}", tmp.path().join("hv1").display()),
            format!("[hv2] {}", tmp.path().join("hv2").display()),
            "[bad] touch_per_host: failed: this host is broken".to_string(),
        ] {
            assert!(
                lines.iter().any(|l| l.starts_with(&want)),
                "{want}: {lines:?}"
            );
        }
        // The host back: the next run does what it missed, and only that.
        step.1.store(false, Ordering::SeqCst);
        let r = run_spread(
            &whole,
            &on,
            &[&step],
            false,
            Default::default(),
            &mut |_| {},
        )
        .unwrap();
        let changed: Vec<(&str, usize)> = r
            .nodes
            .iter()
            .map(|n| (n.node.as_str(), n.applied))
            .filter(|(_, applied)| *applied > 0)
            .collect();
        assert_eq!(changed, [("hypervisor bad", 1)]);
        assert!(tmp.path().join("bad").exists());
        // Without the broken host: one report per host, named by it.
        let ok: Vec<OnHost> = on.into_iter().filter(|h| h.name != "bad").collect();
        let step = PerHost(tmp.path().join("again"), AtomicBool::new(false));
        std::fs::create_dir(&step.0).unwrap();
        let r = run_spread(
            &whole,
            &ok,
            &[&step],
            false,
            Default::default(),
            &mut |_| {},
        )
        .unwrap();
        let mut nodes: Vec<&str> = r.nodes.iter().map(|n| n.node.as_str()).collect();
        nodes.sort();
        assert_eq!(nodes, ["hypervisor hv1", "hypervisor hv2"]);
    }
}
