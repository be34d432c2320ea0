//! Fan-out benchmark (run by bench/converge.sh): the engine converges N FakeHosts whose every
//! call sleeps, all at once and then one at a time, and prints the ratio measured in this run.
//! `cargo run --release --features testing --example fanout -- [NODES] [DELAY_MS]`

#![allow(clippy::print_stdout)]

use kubicluster::engine::StepId;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use kubicluster::engine::{self, Blob, Cx, Desired, Options, Step, UnitSpec};
use kubicluster::host::Host;
use kubicluster::host::fake::FakeHost;
use kubicluster::spec::{self, Cluster, Node, Overrides};

struct Files;
impl Step for Files {
    fn id(&self) -> StepId {
        StepId::Custom("install_files")
    }
    fn targets<'c>(&self, c: &'c Cluster) -> Vec<&'c Node> {
        c.nodes.iter().collect()
    }
    fn desired(&self, _: &Cx, n: &Node) -> Result<Desired> {
        let mut d = Desired::default();
        d.dir("/etc/bench", 0o755);
        for i in 0..5 {
            d.file(
                &format!("/etc/bench/{i}.conf"),
                Blob::new(format!("{i} {}", n.name)),
                0o644,
                &["bench.service"],
            );
        }
        d.unit(UnitSpec {
            name: "bench.service".into(),
            file: Blob::new("[Service]\n"),
            enable: true,
            start: true,
            no_block: false,
            not_started: None,
            reload: false,
        });
        Ok(d)
    }
}

fn converge(nodes: usize, delay: Duration, concurrency: usize) -> f64 {
    let dir = std::env::temp_dir();
    let ov = Overrides {
        work_dir: Some(dir.display().to_string()),
        controllers: vec!["c-1,192.168.24.11,192.168.122.11".into()],
        workers: (0..nodes - 1)
            .map(|i| format!("w-{i},192.168.24.{},192.168.122.{}", 100 + i, 100 + i))
            .collect(),
        ..Default::default()
    };
    let cluster = spec::resolve(None, &ov, &|_| None).expect("valid").0;
    let hosts = cluster
        .nodes
        .iter()
        .map(|n| {
            let h = FakeHost::new(&n.name).with(|s| {
                for d in ["/etc", "/etc/systemd", "/etc/systemd/system"] {
                    s.dirs.insert(d.into(), 0o755);
                }
                s.delay = delay;
            });
            (n.name.clone(), Arc::new(h) as Arc<dyn Host>)
        })
        .collect();
    let cx = Arc::new(Cx::new(cluster, hosts, Default::default()));
    let opts = Options {
        concurrency,
        ..Default::default()
    };
    let t = Instant::now();
    let r = engine::run(cx, vec![Arc::new(Files)], &opts, |_| {});
    assert!(r.failed().is_empty());
    t.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let nodes: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(8);
    let delay = Duration::from_millis(args.get(2).and_then(|a| a.parse().ok()).unwrap_or(20));
    let one = converge(1, delay, 0);
    let all = converge(nodes, delay, 0);
    let serial = converge(nodes, delay, 1);
    println!(
        "  fan-out, every host call sleeping {} ms: 1 node {one:.2} s, {nodes} nodes at once {all:.2} s ({:.2}x one node), one at a time {serial:.2} s ({:.1}x faster at once)",
        delay.as_millis(),
        all / one,
        serial / all
    );
}
