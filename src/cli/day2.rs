//! Arguments of the commands that run and look after a cluster once it exists: `list`,
//! `stop`, `start`, `etcd`, `snapshot`, `status`, `plan`, `render`, `lab`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{OutputFormat, SpecArgs, SpecOnly};

#[derive(Debug, Args)]
pub struct ListArgs {
    /// text, or json (one object per cluster).
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    #[command(flatten)]
    pub spec: SpecArgs,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Power the VMs off at once instead of shutting them down through the guest.
    #[arg(long)]
    pub force: bool,
    /// Seconds a VM gets to shut down cleanly before it is powered off.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub timeout: u64,
    /// Print what would be stopped; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub spec: SpecArgs,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Seconds to wait for the API server, and then for the workers to be Ready.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub timeout: u64,
    /// Print what would be started; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub spec: SpecArgs,
}

#[derive(Debug, Args)]
pub struct EtcdArgs {
    #[command(subcommand)]
    pub action: EtcdAction,
}

#[derive(Debug, Subcommand)]
pub enum EtcdAction {
    /// Save an etcd snapshot on the first controller and copy it to the hypervisor
    /// (<workDir>/<cluster>/backups/etcd-<time>.db, 0600), checked whole.
    Backup {
        /// How many snapshots to keep on the hypervisor (the oldest beyond go).
        #[arg(long, default_value_t = 7, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        keep: u32,
        /// Install a systemd timer on the first controller that saves a snapshot there on this
        /// systemd calendar (`hourly`, `daily`, `*-*-* 02:00`; default daily) instead of taking
        /// one now. The next `etcd backup` copies the snapshots it took to the hypervisor.
        #[arg(long, value_name = "CALENDAR", num_args = 0..=1, default_missing_value = "daily")]
        schedule: Option<String>,
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Restore the whole cluster's state from a snapshot: control plane stopped, every etcd
    /// member restored from it (old data kept aside on each controller), started again.
    Restore {
        /// The snapshot file (from `etcd backup`, or `etcdctl snapshot save`).
        snapshot: PathBuf,
        /// Confirm: every change made to the cluster since the snapshot is undone.
        #[arg(long)]
        yes: bool,
        /// Print the plan per node; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// The snapshots kept on the hypervisor, newest first.
    List {
        #[command(flatten)]
        spec: SpecArgs,
    },
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub action: SnapshotAction,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotAction {
    /// Take an etcd snapshot, then freeze every VM's disk at one moment (running VMs paused
    /// only while their disks switch to new overlays).
    Create {
        /// The snapshot's name (letters, digits, '-', '_', '.').
        #[arg(value_name = "NAME")]
        snapshot: String,
        /// Print the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// The cluster's snapshots, oldest first: age, size of their disk layers, etcd snapshot.
    List {
        /// text, or json for scripts.
        #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Bring the whole cluster back to a snapshot: every VM powered off and put on a new disk
    /// over the snapshot's layer, started again; ends when every node is Ready.
    Revert {
        /// The snapshot to bring back (`snapshot list` shows them).
        #[arg(value_name = "NAME")]
        snapshot: String,
        /// Confirm: everything every node did since the snapshot is dropped.
        #[arg(long)]
        yes: bool,
        /// Print the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Seconds to wait for the API server, and then for the workers to be Ready.
        #[arg(long, default_value_t = 300, value_name = "SECONDS")]
        timeout: u64,
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Forget a snapshot; its disk layers are deleted unless the VMs' disks (or another
    /// snapshot) build on them.
    Delete {
        /// The snapshot to forget.
        #[arg(value_name = "NAME")]
        snapshot: String,
        /// Print the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        spec: SpecArgs,
    },
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// text, or json: the whole topology (nodes, addresses, VM, SSH, units, readiness) for scripts.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    #[command(flatten)]
    pub spec: SpecArgs,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// text, or json: one object whose `changes` is the number of pending changes (0 = converged).
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    #[command(flatten)]
    pub spec: SpecArgs,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Only these nodes (default: all).
    pub nodes: Vec<String>,
    /// Output directory (created 0700: it holds keys).
    #[arg(long, default_value = "rendered", value_name = "DIR")]
    pub out: std::path::PathBuf,
    #[command(flatten)]
    pub spec: SpecArgs,
}

#[derive(Debug, Args)]
pub struct LabArgs {
    #[command(subcommand)]
    pub action: LabAction,
}

#[derive(Debug, Subcommand)]
pub enum LabAction {
    /// Create the namespace and start the private libvirtd.
    Up(SpecOnly),
    /// Remove the lab's VMs, networks, daemon, namespace and files.
    Down(SpecOnly),
    /// Is the lab running?
    Status(SpecOnly),
    /// Simulate the host rebooting: every VM powered off, libvirtd and the namespace's
    /// interfaces gone, then libvirtd started again (it starts what is marked autostart).
    Reboot(SpecOnly),
}
