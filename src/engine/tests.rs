//! Engine behaviour on FakeHosts: a dry run predicts the real run exactly and changes nothing,
//! a second run plans nothing, only units whose inputs changed restart, one failing node is
//! reported while the others finish, and a cancelled run leaves what it did consistent.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::*;
use crate::host::fake::FakeHost;
use crate::host::{Cmd, Host};
use crate::spec::Cluster;

/// A step shaped like a real one: a dir, a config, a secret, a unit, a guarded command.
struct Demo {
    config: String,
}

impl Step for Demo {
    fn id(&self) -> StepId {
        StepId::Custom("install_demo")
    }
    fn targets<'c>(&self, cluster: &'c Cluster) -> Vec<&'c Node> {
        cluster.nodes.iter().collect()
    }
    fn desired(&self, _cx: &Cx, node: &Node) -> Result<Desired> {
        let mut d = Desired::default();
        d.dir("/etc/demo", 0o700)
            .file(
                "/etc/demo/demo.conf",
                Blob::new(format!("{}\nnode={}\n", self.config, node.name)),
                0o644,
                &["demo.service"],
            )
            .secret("/etc/demo/key.pem", Blob::new("KEY"), &["demo.service"])
            .file(
                "/etc/demo/other.conf",
                Blob::new("other"),
                0o644,
                &["other.service"],
            )
            .command(GuardedCmd {
                what: "install demo package".into(),
                check: Cmd::new(["test", "-e", "/usr/bin/demo"]),
                run: Cmd::new(["dpkg", "-i", "/tmp/demo.deb"]),
                restarts: vec![],
                after_units: false,
            })
            .unit(UnitSpec {
                name: "demo.service".into(),
                file: Blob::new("[Service]\nExecStart=/usr/bin/demo\n"),
                enable: true,
                start: true,
                no_block: false,
                not_started: None,
                reload: false,
            })
            .unit(UnitSpec {
                name: "other.service".into(),
                file: Blob::new("[Service]\nExecStart=/usr/bin/other\n"),
                enable: true,
                start: true,
                no_block: false,
                not_started: None,
                reload: false,
            });
        Ok(d)
    }
}

pub(super) fn cluster() -> Cluster {
    let d = std::env::temp_dir();
    let ov = crate::spec::Overrides {
        work_dir: Some(d.display().to_string()),
        ..Default::default()
    };
    crate::spec::resolve(None, &ov, &|_| None).unwrap().0
}

/// FakeHosts with `/etc` and the guard's package "installed" after dpkg ran.
pub(super) fn fakes(c: &Cluster) -> BTreeMap<String, Arc<FakeHost>> {
    c.nodes
        .iter()
        .map(|n| {
            let h = FakeHost::new(&n.name).with(|s| {
                s.dirs.insert("/etc".into(), 0o755);
                s.dirs.insert("/etc/systemd/system".into(), 0o755);
                s.dirs.insert("/etc/systemd".into(), 0o755);
            });
            (n.name.clone(), Arc::new(h))
        })
        .collect()
}

pub(super) fn cx(c: &Cluster, hosts: &BTreeMap<String, Arc<FakeHost>>) -> Arc<Cx> {
    Arc::new(Cx::new(
        c.clone(),
        hosts
            .iter()
            .map(|(k, v)| (k.clone(), v.clone() as Arc<dyn Host>))
            .collect(),
        Default::default(),
    ))
}

fn run_demo(
    c: &Cluster,
    hosts: &BTreeMap<String, Arc<FakeHost>>,
    config: &str,
    dry: bool,
) -> Report {
    let opts = Options {
        dry_run: dry,
        ..Default::default()
    };
    run(
        cx(c, hosts),
        vec![Arc::new(Demo {
            config: config.into(),
        })],
        &opts,
        |_| {},
    )
}

fn writes(log: &[String]) -> Vec<&String> {
    log.iter()
        .filter(|l| {
            l.starts_with("write ")
                || (l.starts_with("run ")
                    && !l.contains("systemctl show")
                    && !l.starts_with("run test"))
        })
        .collect()
}

#[test]
fn dry_run_predicts_the_run_changes_nothing_and_a_second_run_plans_nothing() {
    let c = cluster();
    let hosts = fakes(&c);
    for h in hosts.values() {
        h.state.lock().unwrap().answers.push((
            "test -e /usr/bin/demo".into(),
            crate::host::Output {
                status: 1,
                ..Default::default()
            },
        ));
    }
    let dry = run_demo(&c, &hosts, "a=1", true);
    for h in hosts.values() {
        let log = h.take_log();
        assert!(
            writes(&log).is_empty(),
            "a dry run changes nothing: {log:?}"
        );
        assert!(h.file("/etc/demo/demo.conf").is_none());
    }
    let real = run_demo(&c, &hosts, "a=1", false);
    assert!(real.failed().is_empty(), "{:?}", real.failed());
    for (d, r) in dry.nodes.iter().zip(&real.nodes) {
        assert_eq!(
            d.changes, r.changes,
            "the dry run listed exactly what the run did"
        );
        assert_eq!(r.applied, r.changes.len());
    }
    let first = &real.nodes[0].changes;
    assert_eq!(
        first.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        [
            "create dir /etc/demo (0700)",
            "write /etc/demo/demo.conf (0644): missing",
            "write /etc/demo/key.pem (0600, secret): missing",
            "write /etc/demo/other.conf (0644): missing",
            "write /etc/systemd/system/demo.service (0600): missing",
            "write /etc/systemd/system/other.service (0600): missing",
            "run: install demo package",
            "systemctl daemon-reload",
            "enable demo.service",
            "enable other.service",
            "start demo.service",
            "start other.service",
        ]
    );
    for h in hosts.values() {
        assert_eq!(h.file("/etc/demo/key.pem").unwrap().mode, 0o600);
        assert!(h.is_active("demo.service") && h.is_active("other.service"));
        let log = h.take_log();
        assert_eq!(
            log.iter()
                .filter(|l| *l == "run systemctl daemon-reload")
                .count(),
            1,
            "one daemon-reload per node"
        );
        // Both units enabled in one call (each `systemctl enable` reloads systemd: seconds on
        // an emulated guest).
        assert!(
            log.contains(&"run systemctl enable demo.service other.service".to_string()),
            "{log:?}"
        );
        assert!(!log.contains(&"run systemctl enable demo.service".to_string()));
    }
    // The package is installed now: its guard holds.
    for h in hosts.values() {
        h.state.lock().unwrap().answers.clear();
    }
    let again = run_demo(&c, &hosts, "a=1", false);
    assert_eq!(again.changes(), 0, "{:?}", again.nodes);
    for h in hosts.values() {
        let log = h.take_log();
        assert!(
            writes(&log).is_empty(),
            "nothing rewritten or restarted: {log:?}"
        );
    }
}

#[test]
fn only_units_whose_inputs_changed_restart() {
    let c = cluster();
    let hosts = fakes(&c);
    run_demo(&c, &hosts, "a=1", false);
    for h in hosts.values() {
        h.take_log();
    }
    let r = run_demo(&c, &hosts, "a=2", false);
    for n in &r.nodes {
        assert_eq!(n.restarts, ["demo.service"], "{:?}", n.changes);
        assert!(n.changes.contains(&Change::Restart {
            unit: "demo.service".into(),
            because: vec!["/etc/demo/demo.conf".into()]
        }));
        assert!(
            !n.changes.contains(&Change::DaemonReload),
            "no unit file changed"
        );
    }
    for h in hosts.values() {
        let log = h.take_log();
        assert!(log.contains(&"run systemctl restart demo.service".to_string()));
        assert!(
            !log.iter().any(|l| l.contains("restart other.service")),
            "{log:?}"
        );
        assert!(
            !log.iter().any(|l| l == "write /etc/demo/key.pem"),
            "unchanged files are not uploaded"
        );
    }
}

/// A unit that takes in its configuration with `systemctl reload` (keepalived's way).
struct Reloading {
    config: &'static str,
    exec: &'static str,
}

impl Step for Reloading {
    fn id(&self) -> StepId {
        StepId::Custom("install_reloading")
    }
    fn targets<'c>(&self, cluster: &'c Cluster) -> Vec<&'c Node> {
        cluster.nodes.iter().collect()
    }
    fn desired(&self, _cx: &Cx, _node: &Node) -> Result<Desired> {
        let mut d = Desired::default();
        d.file("/etc/r.conf", Blob::new(self.config), 0o600, &["r.service"])
            .unit(
                UnitSpec::started(
                    "r.service",
                    Blob::new(format!("[Service]\nExecStart={}\n", self.exec)),
                )
                .reloaded(),
            );
        Ok(d)
    }
}

#[test]
fn a_reloading_unit_is_reloaded_for_its_files_and_restarted_for_its_unit_file() {
    let c = cluster();
    let hosts = fakes(&c);
    let go = |config, exec| {
        for h in hosts.values() {
            h.take_log();
        }
        let r = run(
            cx(&c, &hosts),
            vec![Arc::new(Reloading { config, exec })],
            &Options::default(),
            |_| {},
        );
        assert!(r.failed().is_empty(), "{:?}", r.failed());
        let logs: Vec<Vec<String>> = hosts.values().map(|h| h.take_log()).collect();
        (r, logs)
    };
    let (first, _) = go("a", "/usr/sbin/r");
    assert!(
        first
            .nodes
            .iter()
            .all(|n| n.changes.contains(&Change::Start {
                unit: "r.service".into()
            }))
    );
    // Its configuration changed: reloaded, not restarted.
    let (r, logs) = go("b", "/usr/sbin/r");
    for n in &r.nodes {
        assert!(n.restarts.is_empty(), "{:?}", n.changes);
        assert!(
            n.changes.contains(&Change::Reload {
                unit: "r.service".into(),
                because: vec!["/etc/r.conf".into()]
            }),
            "{:?}",
            n.changes
        );
    }
    for log in &logs {
        assert!(
            log.contains(&"run systemctl reload r.service".to_string()),
            "{log:?}"
        );
        assert!(
            !log.iter().any(|l| l.contains("systemctl restart")),
            "{log:?}"
        );
    }
    // Its unit file changed (with or without the configuration): a reload cannot take that in.
    for (config, exec) in [("b", "/usr/sbin/r -v"), ("c", "/usr/sbin/r")] {
        let (r, logs) = go(config, exec);
        for n in &r.nodes {
            assert_eq!(n.restarts, ["r.service"], "{:?}", n.changes);
            assert!(n.changes.contains(&Change::DaemonReload), "{:?}", n.changes);
        }
        for log in &logs {
            assert!(
                log.contains(&"run systemctl restart r.service".to_string()),
                "{log:?}"
            );
            assert!(
                !log.iter().any(|l| l.contains("systemctl reload")),
                "{log:?}"
            );
        }
    }
    let (again, _) = go("c", "/usr/sbin/r");
    assert!(again.nodes.iter().all(|n| n.changes.is_empty()));
}

#[test]
fn a_failing_node_is_reported_and_the_others_finish() {
    let c = cluster();
    let hosts = fakes(&c);
    let bad = c.nodes[1].name.clone();
    hosts[&bad].state.lock().unwrap().fail_on = Some("systemctl enable".into());
    let r = run_demo(&c, &hosts, "a=1", false);
    let failed: Vec<&str> = r.failed().iter().map(|n| n.node.as_str()).collect();
    assert_eq!(failed, [bad.as_str()]);
    let msg = failure_summary(&r).unwrap();
    assert!(msg.starts_with("failed on 1 node:\n- "), "{msg}");
    assert!(
        msg.contains(&bad)
            && msg.contains("systemctl enable demo.service")
            && msg.contains("injected failure"),
        "{msg}"
    );
    for n in c.nodes.iter().filter(|n| n.name != bad) {
        assert!(
            hosts[&n.name].is_active("demo.service"),
            "{} finished",
            n.name
        );
    }
}

#[test]
fn a_cancelled_run_stops_between_changes_and_the_next_run_completes() {
    let c = cluster();
    let hosts = fakes(&c);
    let opts = Options::default();
    opts.cancel.store(true, Ordering::SeqCst);
    let r = run(
        cx(&c, &hosts),
        vec![Arc::new(Demo { config: "x".into() })],
        &opts,
        |_| {},
    );
    assert!(r.interrupted);
    for h in hosts.values() {
        assert!(
            h.file("/etc/demo/demo.conf").is_none(),
            "nothing started after Ctrl-C"
        );
    }
    let again = run_demo(&c, &hosts, "x", false);
    assert!(again.failed().is_empty() && !again.interrupted);
    assert!(hosts.values().all(|h| h.is_active("demo.service")));
}

#[test]
fn unreachable_nodes_are_named() {
    let c = cluster();
    let hosts = fakes(&c);
    for h in hosts.values() {
        h.state.lock().unwrap().unreachable = true;
    }
    let r = run_demo(&c, &hosts, "a", false);
    assert_eq!(r.failed().len(), c.nodes.len());
    let msg = failure_summary(&r).unwrap();
    assert!(
        msg.starts_with(&format!("failed on {} nodes:", c.nodes.len())),
        "{msg}"
    );
    assert!(msg.contains("cannot reach"), "{msg}");
}

/// Counts its verifications; `always` = [`Step::verify_unchanged`].
struct Counted {
    always: bool,
    verified: std::sync::atomic::AtomicUsize,
}

impl Step for Counted {
    fn id(&self) -> StepId {
        StepId::Custom("install_counted")
    }
    fn targets<'c>(&self, cluster: &'c Cluster) -> Vec<&'c Node> {
        cluster.nodes.iter().take(1).collect()
    }
    fn desired(&self, _cx: &Cx, _node: &Node) -> Result<Desired> {
        let mut d = Desired::default();
        d.file("/etc/counted.conf", Blob::new("x"), 0o644, &[]);
        Ok(d)
    }
    fn verify(&self, _cx: &Cx, _node: &Node) -> Result<()> {
        self.verified.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn verify_unchanged(&self) -> bool {
        self.always
    }
}

#[test]
fn an_unchanged_node_is_verified_only_after_a_run_that_stopped() {
    let c = cluster();
    let hosts = fakes(&c);
    for always in [false, true] {
        let step = Arc::new(Counted {
            always,
            verified: Default::default(),
        });
        let go = |reverify: bool| {
            let opts = Options {
                reverify,
                ..Default::default()
            };
            run(cx(&c, &hosts), vec![step.clone()], &opts, |_| {})
        };
        let n = || step.verified.load(Ordering::SeqCst);
        let first = go(false);
        assert_eq!((first.changes(), n()), (if always { 0 } else { 1 }, 1));
        assert_eq!(go(false).changes(), 0);
        assert_eq!(n(), if always { 2 } else { 1 }, "no change: no re-check");
        go(true);
        assert_eq!(
            n(),
            if always { 3 } else { 2 },
            "after a stopped run: checked"
        );
    }
}

/// A second step with its own files and unit, for runs of several steps.
struct Second;

impl Step for Second {
    fn id(&self) -> StepId {
        StepId::Custom("install_second")
    }
    fn targets<'c>(&self, cluster: &'c Cluster) -> Vec<&'c Node> {
        cluster.nodes.iter().collect()
    }
    fn desired(&self, _cx: &Cx, _node: &Node) -> Result<Desired> {
        let mut d = Desired::default();
        d.dir("/etc/second", 0o755)
            .file(
                "/etc/second/s.conf",
                Blob::new("s"),
                0o644,
                &["second.service"],
            )
            .unit(UnitSpec {
                name: "second.service".into(),
                file: Blob::new("[Service]\nExecStart=/usr/bin/second\n"),
                enable: true,
                start: true,
                no_block: false,
                not_started: None,
                reload: false,
            });
        Ok(d)
    }
}

fn reads(log: &[String]) -> usize {
    log.iter().filter(|l| l.starts_with("stat ")).count()
}

#[test]
fn a_converged_run_reads_each_node_once_and_a_change_makes_later_steps_read_again() {
    let c = cluster();
    let hosts = fakes(&c);
    let steps = |config: &str| -> Vec<Arc<dyn Step>> {
        vec![
            Arc::new(Demo {
                config: config.into(),
            }),
            Arc::new(Second),
        ]
    };
    let first = run(cx(&c, &hosts), steps("a=1"), &Options::default(), |_| {});
    assert!(first.failed().is_empty(), "{:?}", first.failed());
    for h in hosts.values() {
        h.take_log();
    }
    // Converged: the whole run plans from one read per node.
    let again = run(cx(&c, &hosts), steps("a=1"), &Options::default(), |_| {});
    assert_eq!(again.changes(), 0, "{:?}", again.nodes);
    for h in hosts.values() {
        let log = h.take_log();
        assert_eq!(
            reads(&log),
            1,
            "one stat round trip for both steps: {log:?}"
        );
        assert!(writes(&log).is_empty(), "{log:?}");
    }
    // A change in the first step: the second step reads its node again (and still finds
    // nothing to do), so it never plans from a read older than the change.
    let changed = run(cx(&c, &hosts), steps("a=2"), &Options::default(), |_| {});
    assert!(changed.failed().is_empty(), "{:?}", changed.failed());
    let by_step = |step: &str| -> usize {
        changed
            .nodes
            .iter()
            .filter(|n| n.step == step)
            .map(|n| n.changes.len())
            .sum()
    };
    assert!(by_step("install_demo") > 0);
    assert_eq!(by_step("install_second"), 0);
    for h in hosts.values() {
        let log = h.take_log();
        let last_write = log.iter().rposition(|l| l.starts_with("write ")).unwrap();
        assert!(
            log[last_write..].iter().any(|l| l.starts_with("stat ")),
            "the second step read the node after the change: {log:?}"
        );
        // The prefetch and the second step; the first step reads again only on a node that
        // planned after another node's change (they run at once).
        assert!((2..=3).contains(&reads(&log)), "{log:?}");
    }
}

/// A step whose file depends on a fact read from its node (as etcd's data, kata's usability).
struct Facty;

impl Step for Facty {
    fn id(&self) -> StepId {
        StepId::Custom("install_facty")
    }
    fn targets<'c>(&self, cluster: &'c Cluster) -> Vec<&'c Node> {
        cluster.nodes.iter().collect()
    }
    fn facts(&self, _cx: &Cx, node: &Node) -> Vec<FactQuery> {
        vec![FactQuery {
            key: format!("flavour:{}", node.name),
            node: node.name.clone(),
            cmd: Cmd::new(["cat", "/flavour"]),
            read: |_, out| Fact::Not(out.trim().to_string()),
        }]
    }
    fn desired(&self, cx: &Cx, node: &Node) -> Result<Desired> {
        let fact = cx.fact_of(&self.facts(cx, node)[0])?;
        let flavour = fact.why_not().expect("read as a reason").to_string();
        let mut d = Desired::default();
        d.file("/etc/flavour.conf", Blob::new(flavour), 0o644, &[]);
        Ok(d)
    }
}

/// The facts a run read are remembered in the cluster's dir; the next run reads them fresh in
/// the same probe that was planned from the remembered ones, and plans again when one changed.
/// A dry run remembers nothing.
#[test]
fn remembered_facts_are_checked_in_the_probe_and_a_changed_one_replans() {
    let d = tempfile::tempdir().unwrap();
    let ov = crate::spec::Overrides {
        work_dir: Some(d.path().display().to_string()),
        ..Default::default()
    };
    let c = crate::spec::resolve(None, &ov, &|_| None).unwrap().0;
    let hosts = fakes(&c);
    let answer = |flavour: &str| {
        for h in hosts.values() {
            h.state.lock().unwrap().answers = vec![(
                "cat /flavour".into(),
                crate::host::Output {
                    status: 0,
                    stdout: format!("{flavour}\n").into_bytes(),
                    stderr: Vec::new(),
                },
            )];
        }
    };
    let steps = || -> Vec<Arc<dyn Step>> { vec![Arc::new(Facty)] };
    let memo = c.cluster_dir().join("node-facts.json");
    std::fs::create_dir_all(c.cluster_dir()).unwrap();
    answer("a");
    let dry = Options {
        dry_run: true,
        ..Default::default()
    };
    assert!(run(cx(&c, &hosts), steps(), &dry, |_| {}).changes() > 0);
    assert!(!memo.exists(), "a dry run remembers nothing");
    let first = run(cx(&c, &hosts), steps(), &Options::default(), |_| {});
    assert!(first.failed().is_empty(), "{:?}", first.failed());
    let remembered = prefetch::remembered(&c.cluster_dir());
    assert_eq!(remembered.len(), c.nodes.len());
    let is = |flavour: &str| Fact::Not(flavour.into());
    assert!(remembered.values().all(|v| *v == is("a")), "{remembered:?}");
    for h in hosts.values() {
        h.take_log();
    }
    // Converged: one fact read and one stat per node, nothing written.
    let again = run(cx(&c, &hosts), steps(), &Options::default(), |_| {});
    assert_eq!(again.changes(), 0, "{:?}", again.nodes);
    for h in hosts.values() {
        let log = h.take_log();
        let facts = log.iter().filter(|l| l.contains("cat /flavour")).count();
        assert_eq!((facts, reads(&log)), (1, 1), "{log:?}");
        assert_eq!(
            log[0], "probe with 1 read(s)",
            "the fact came with the probe: {log:?}"
        );
        assert!(
            writes(&log).iter().all(|l| l.contains("cat /flavour")),
            "{log:?}"
        );
    }
    // The fact changed on the nodes: the probe planned from "a" is dropped, the file follows.
    answer("b");
    let changed = run(cx(&c, &hosts), steps(), &Options::default(), |_| {});
    assert!(changed.changes() > 0, "{:?}", changed.nodes);
    for h in hosts.values() {
        assert_eq!(h.file("/etc/flavour.conf").unwrap().data, b"b");
        let log = h.take_log();
        assert_eq!(log[0], "probe with 1 read(s)", "{log:?}");
        assert!(
            reads(&log) >= 2,
            "probed again with the fresh fact: {log:?}"
        );
    }
    assert!(
        prefetch::remembered(&c.cluster_dir())
            .values()
            .all(|v| *v == is("b"))
    );
}

/// Every change is typed: a VM's and a certificate's read the same as before in the text and
/// carry their kind and fields in JSON.
#[test]
fn hypervisor_changes_are_typed_in_text_and_json() {
    let vm = Change::Vm {
        vm: "kubi-worker-01".into(),
        op: super::VmOp::Recreate {
            why: "memory 1024 → 2048 MiB".into(),
        },
    };
    assert_eq!(
        vm.to_string(),
        "kubi-worker-01: recreate (memory 1024 → 2048 MiB)"
    );
    assert_eq!(
        serde_json::to_value(&vm).unwrap(),
        serde_json::json!({"action": "vm", "vm": "kubi-worker-01", "op": "recreate", "why": "memory 1024 → 2048 MiB"})
    );
    let cert = Change::Pki {
        file: "admin.pem".into(),
        op: super::PkiOp::Reissue {
            why: "expires in 3 days".into(),
        },
    };
    assert_eq!(cert.to_string(), "admin.pem: re-issue (expires in 3 days)");
    assert_eq!(
        serde_json::to_value(&cert).unwrap(),
        serde_json::json!({"action": "pki", "file": "admin.pem", "op": "reissue", "why": "expires in 3 days"})
    );
    let net = Change::CreateNetwork {
        name: "vm-cluster-net".into(),
        cidr: "192.168.24.0/24".into(),
    };
    assert_eq!(
        serde_json::to_value(&net).unwrap()["action"],
        "create-network"
    );
}

#[test]
fn a_unit_is_re_enabled_for_a_link_its_install_section_asks_for_even_after_a_kill() {
    use super::plan::{apply, plan};
    let c = cluster();
    let hosts = fakes(&c);
    let host = hosts.values().next().unwrap();
    let want = |wanted_by: &str| {
        let mut d = Desired::default();
        d.unit(UnitSpec::started(
            "v.service",
            Blob::new(format!(
                "[Service]\nExecStart=/usr/sbin/v\n[Install]\nWantedBy={wanted_by}\n"
            )),
        ));
        d
    };
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let link = |t: &str| format!("/etc/systemd/system/{t}.wants/v.service");
    let first = want("multi-user.target");
    let changes = plan(host.as_ref(), &first).unwrap();
    assert!(changes.contains(&Change::Enable {
        unit: "v.service".into()
    }));
    apply(host.as_ref(), &first, &changes, &cancel).unwrap();
    assert!(host.file(&link("multi-user.target")).is_some());
    assert!(plan(host.as_ref(), &first).unwrap().is_empty());

    // [Install] names the API server too; the run is killed after the unit file was written.
    let second = want("multi-user.target kube-apiserver.service");
    let reenable = Change::Reenable {
        unit: "v.service".into(),
        missing: vec![link("kube-apiserver.service")],
    };
    let changes = plan(host.as_ref(), &second).unwrap();
    assert!(changes.contains(&reenable), "{changes:?}");
    let written: Vec<Change> = changes
        .iter()
        .filter(|c| matches!(c, Change::WriteFile { .. }))
        .cloned()
        .collect();
    assert_eq!(written.len(), 1, "{changes:?}");
    apply(host.as_ref(), &second, &written, &cancel).unwrap();
    // The unit file is current now; the missing link alone brings the re-enable back.
    host.take_log();
    let changes = plan(host.as_ref(), &second).unwrap();
    assert_eq!(changes, std::slice::from_ref(&reenable));
    assert_eq!(
        reenable.to_string(),
        format!(
            "re-enable v.service (missing: {})",
            link("kube-apiserver.service")
        )
    );
    apply(host.as_ref(), &second, &changes, &cancel).unwrap();
    assert!(
        host.take_log()
            .contains(&"run systemctl reenable v.service".to_string())
    );
    assert!(host.file(&link("kube-apiserver.service")).is_some());
    assert!(plan(host.as_ref(), &second).unwrap().is_empty());
}

#[test]
fn install_links_follow_systemd_s_install_section() {
    let unit = "[Unit]\nWantedBy=not-here.target\n[Install]\nWantedBy=a.target b.service\nRequiredBy=c.target\nWantedBy=\nWantedBy=d.target\nAlias=x.service\n";
    assert_eq!(
        crate::host::install_links("u.service", unit),
        [
            "/etc/systemd/system/d.target.wants/u.service",
            "/etc/systemd/system/c.target.requires/u.service"
        ]
    );
    assert!(crate::host::install_links("u.service", "[Service]\nExecStart=/bin/true\n").is_empty());
}

/// Apply puts a run of changes of one kind together: every small file in one call, then each
/// large one alone (all before anything runs, so their order among themselves is free); the
/// count of applied changes is the plan's.
#[test]
fn small_files_go_together_and_large_ones_alone() {
    let h = FakeHost::new("n1");
    let mut want = Desired::default();
    want.dir("/opt/x", 0o755)
        .dir("/opt/x/y", 0o700)
        .file("/opt/x/a.conf", Blob::new("a"), 0o644, &[])
        .file("/opt/x/big", Blob::new(vec![7u8; 2 << 20]), 0o755, &[])
        .secret("/opt/x/y/key.pem", Blob::new("KEY"), &[]);
    let changes = plan::plan(&h, &want).unwrap();
    h.take_log();
    let cancel = std::sync::atomic::AtomicBool::new(false);
    assert_eq!(plan::apply(&h, &want, &changes, &cancel).unwrap(), 5);
    let log = h.take_log();
    let w: Vec<&String> = log.iter().filter(|l| l.starts_with("write ")).collect();
    assert_eq!(
        w,
        [
            "write /opt/x/a.conf",
            "write /opt/x/y/key.pem",
            "write /opt/x/big"
        ],
        "{log:?}"
    );
    assert_eq!(h.file("/opt/x/big").unwrap().data.len(), 2 << 20);
    assert_eq!(h.file("/opt/x/y/key.pem").unwrap().mode, 0o600);
}
