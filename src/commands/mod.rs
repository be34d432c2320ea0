//! One function per subcommand. Below this line nothing knows about clap; above it nothing knows
//! how a command works.

pub mod artifacts;
pub mod cis;
pub mod cnc;
pub mod controllers;
pub mod converge;
pub mod image;
pub mod init;
pub mod kubeconfig;
pub mod lab;
pub mod plan;
pub mod prepare;
pub mod remove;
pub mod render;
pub mod smoke;
pub mod up;
pub mod validate;
pub mod vms;
pub mod workers;

use anyhow::Result;

use crate::cli::SpecArgs;
use crate::error::{Exit, Failure};
use crate::fsutil;
use crate::hypervisor::libvirt::Libvirt;
use crate::lab as sandbox;
use crate::spec::{self, Cluster, HypervisorMode, Source};
use crate::ui::Printer;

/// `-d` was given: passed on to the command re-run inside the lab.
pub static DEBUG: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

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
pub fn connect(cluster: &Cluster) -> Result<Libvirt> {
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

/// In lab mode, run `args` (a kubicluster command) inside the lab's network namespace, where
/// the VMs are reachable, with the resolved spec; `Err(Exit)` carries its exit code. Returns
/// `Ok(false)` when the caller should go on in this process.
pub fn reexec_in_lab(cluster: &Cluster, args: &[&str]) -> Result<bool> {
    if cluster.hypervisor.mode != HypervisorMode::Lab || sandbox::inside(cluster) {
        return Ok(false);
    }
    connect(cluster)?; // fail here, with a hint, if the lab is down
    // The resolved spec for the child only (removed after), so a dry run leaves nothing behind.
    let path = cluster
        .cluster_dir()
        .join(format!(".run-{}.yaml", std::process::id()));
    fsutil::ensure_dir(&cluster.cluster_dir(), fsutil::PRIVATE_DIR)?;
    fsutil::write_atomic(
        &path,
        spec::to_yaml(&cluster.file).as_bytes(),
        fsutil::PUBLIC,
    )?;
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _remove = Remove(path.clone());
    let file = path.display().to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--file", file.as_str()]);
    if DEBUG.load(std::sync::atomic::Ordering::Relaxed) {
        all.push("--debug");
    }
    match sandbox::exec_inside(cluster, &all)? {
        0 => Ok(true),
        code => Err(Exit(code).into()),
    }
}
