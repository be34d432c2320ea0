//! One function per subcommand. Below this line nothing knows about clap; above it nothing knows
//! how a command works.

pub mod artifacts;
pub mod cis;
pub mod cnc;
pub mod controllers;
pub mod converge;
pub mod etcd;
pub mod hosts;
pub mod image;
pub mod init;
pub mod kubeconfig;
pub mod lab;
pub mod lifecycle;
pub mod list;
pub mod plan;
pub mod prepare;
pub mod remove;
pub mod render;
pub mod smoke;
pub mod snapshot;
pub mod up;
pub mod upgrade;
pub mod validate;
pub mod vms;
pub mod workers;

use anyhow::Result;

use crate::cli::SpecArgs;
use crate::error::Failure;
use crate::fsutil;
use crate::hypervisor::libvirt::Libvirt;
use crate::lab as sandbox;
use crate::spec::{self, Cluster, HypervisorMode, Source};
use crate::ui::Printer;

/// What every command gets: the printer and a view of the environment.
pub struct Ctx<'a> {
    pub printer: &'a mut Printer,
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl Ctx<'_> {
    /// Resolve the cluster spec from file, env and flags.
    pub fn cluster(&self, args: &SpecArgs) -> Result<(Cluster, Source), spec::SpecError> {
        spec::resolve(args.file.as_deref(), &args.overrides(), self.env)
    }
}

/// Connect to the cluster's hypervisor: the lab's private libvirtd, or `hypervisor.uri`.
/// A cluster spread over several hypervisors goes through [`hosts::spread`] instead.
pub fn connect(cluster: &Cluster) -> Result<Libvirt> {
    anyhow::ensure!(
        cluster.hosts.len() < 2,
        "cluster {} spreads over several hypervisors: connect to each through hosts::spread",
        cluster.name
    );
    match cluster.hypervisor.mode {
        HypervisorMode::Lab => {
            let Some(state) = sandbox::state(cluster)? else {
                return Err(match sandbox::recorded(cluster)? {
                    Some(dead) => Failure::new(format!(
                        "the lab libvirtd of cluster {} (pid {}) is not running",
                        cluster.name, dead.pid
                    ))
                    .hint(sandbox::DEAD_DAEMON_HINT),
                    None => Failure::new(format!("the lab of cluster {} is not running", cluster.name))
                        .hint("start it with `kubicluster lab up --lab`"),
                }
                .into());
            };
            Libvirt::connect(&state.uri).map_err(|e| {
                Failure::new(format!("cannot reach the lab libvirtd: {e:#}"))
                    .hint(sandbox::DEAD_DAEMON_HINT)
                    .into()
            })
        }
        HypervisorMode::Host => Libvirt::connect(&cluster.hypervisor.uri).map_err(|e| {
            Failure::new(format!("cannot reach libvirt at {}: {e:#}", cluster.hypervisor.uri))
                .hint("is libvirtd running (and are you root)? set another URI with --libvirt-uri, or use --lab")
                .into()
        }),
    }
}

/// Connect to every host of `spec.hypervisors` (in parallel), each by its own URI.
pub fn connect_hosts(cluster: &Cluster) -> Result<Vec<(String, Libvirt)>> {
    crate::par::map(&cluster.hosts, |h| {
        Libvirt::connect(&h.uri)
            .map(|lv| (h.name.clone(), lv))
            .map_err(|e| {
                Failure::new(format!("cannot reach hypervisor {} at {}: {e:#}", h.name, h.uri))
                    .hint("is libvirtd running there, and does this user's SSH reach it without a password? check with `virsh -c URI list`")
                    .into()
            })
    })
    .into_iter()
    .collect()
}

/// `placement over N hypervisors<how>:`, then one indented line per node.
pub(crate) fn print_placement(
    ctx: &mut Ctx,
    cluster: &Cluster,
    how: &str,
    placed: &[crate::placement::Placed],
) {
    ctx.printer.status(&format!(
        "placement over {} hypervisors{how}:",
        cluster.hosts.len()
    ));
    for line in crate::placement::describe(placed) {
        ctx.printer.status(&format!("  {line}"));
    }
}

/// A UTC time stamp for names that sort by time (`20261204T183000`).
/// A hypervisor gate that prints each change on the command's status lines.
pub(crate) fn gate<'a>(ctx: &'a mut Ctx, dry_run: bool) -> crate::engine::hv::Gate<'a> {
    let printer = &mut *ctx.printer;
    crate::engine::hv::Gate::new(dry_run, move |l| printer.status(l))
}

/// [`gate`] whose lines name `host` first, on a cluster over several hypervisors.
pub(crate) fn host_gate<'a>(
    ctx: &'a mut Ctx,
    dry_run: bool,
    spread: &hosts::Spread,
    host: &str,
) -> crate::engine::hv::Gate<'a> {
    let mut gate = gate(ctx, dry_run);
    gate.on_host(spread.name(host));
    gate
}

pub fn stamp() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]"
        ))
        .unwrap_or_else(|_| "now".into())
}

/// Make the cluster's nodes reachable from this process, once per command: in lab mode, check
/// that the lab runs (an error with a hint if not) and open every later connection to a node
/// inside the lab's network namespace ([`crate::net`]); in host mode, route each node's
/// addresses through its own hypervisor ([`hosts::reach`]: a remote one's SSH server).
pub fn reach_nodes(cluster: &Cluster) -> Result<()> {
    if hosts::reached(cluster) {
        return Ok(()); // an earlier phase of this command did it (`up`: hypervisor, then nodes)
    }
    match cluster.hypervisor.mode {
        // With several hypervisors, where each node is comes from all of them.
        HypervisorMode::Host if cluster.hosts.len() > 1 => {
            hosts::reach(cluster, &hosts::spread(cluster)?.views())
        }
        HypervisorMode::Host => hosts::reach(cluster, &[cluster]),
        HypervisorMode::Lab => {
            connect(cluster)?; // fail here, with a hint, if the lab is down
            dial_lab(cluster);
        }
    }
    Ok(())
}

/// Open every later connection to a node inside the lab's network namespace.
fn dial_lab(cluster: &Cluster) {
    crate::net::dial_inside(Some(&sandbox::netns_path(cluster)));
}

/// Warn when `cluster` keeps fewer nodes of a role than the spec `up` last recorded left it
/// with one of them, or none ([`crate::spec::shrink_warnings`]).
pub(crate) fn warn_if_shrunk(ctx: &mut Ctx, cluster: &Cluster) {
    if let Some(was) = crate::spec::remembered(cluster) {
        for w in crate::spec::shrink_warnings(&was, cluster) {
            ctx.printer.status(&w);
        }
    }
}

/// The cluster's lock (`<cluster dir>/.lock`), held until the guard is dropped. Taken once per
/// process: a command that runs several phases (`up`: hypervisor, then nodes) holds it across
/// them, and the phases' own calls get an empty guard.
pub fn lock(cluster: &Cluster) -> Result<ClusterLock> {
    let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    if *held {
        return Ok(ClusterLock(None));
    }
    fsutil::ensure_dir(&cluster.cluster_dir(), fsutil::PRIVATE_DIR)?;
    let lock = fsutil::lock_dir(&cluster.cluster_dir()).map_err(|e| {
        Failure::new(format!("{e:#}"))
            .hint("another kubicluster command is changing this cluster; wait for it to finish")
    })?;
    *held = true;
    Ok(ClusterLock(Some(lock)))
}

static HELD: std::sync::Mutex<bool> = std::sync::Mutex::new(false);

pub struct ClusterLock(Option<fsutil::DirLock>);

impl Drop for ClusterLock {
    fn drop(&mut self) {
        if self.0.take().is_some() {
            *HELD.lock().unwrap_or_else(|e| e.into_inner()) = false;
        }
    }
}
