//! Command-line definitions (clap derive) and their translation into [`spec::Overrides`].
//! No behaviour lives here. The original's single-dash flags are rewritten by [`crate::legacy`]
//! before clap sees them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::pki::Group;
use crate::spec::{
    self, ArtifactSource, ClusterNetMode, Cni, DomainTypeChoice, KeyAlgorithm, Overrides, Runtime,
    TemplateKind,
};

const AFTER_HELP: &str = "\
The original kubicluster's flags still work: -c NAME,CLUSTER_IP,HYPERVISOR_IP, -w …, -clb IP,
-cl=NAME, -cidr=CIDR, -kv= -ev= -cdv= -runcv= -katav= -cnipv= -calicov=, -f, -d.";

#[derive(Debug, Parser)]
#[command(
    name = "kubicluster",
    version,
    about = "Build Kubernetes clusters the hard way on libvirt VMs",
    long_about = "Build Kubernetes clusters the hard way on libvirt VMs: plain binaries and systemd \
                  units, every certificate and unit visible and reproducible.\n\n\
                  The cluster is described by one YAML file (kubicluster.yaml, see `kubicluster init`), \
                  overridable by flags and KUBICLUSTER_* environment variables.",
    after_help = AFTER_HELP,
    propagate_version = true
)]
pub struct Cli {
    /// Log debug detail to stderr (the original's -d).
    #[arg(long, short = 'd', global = true, env = "KUBICLUSTER_DEBUG", value_parser = clap::builder::BoolishValueParser::new())]
    pub debug: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented example cluster file.
    Init(InitArgs),
    /// Check the cluster spec and print it fully resolved (file + env + flags + defaults).
    Validate(SpecOnly),
    /// Certificates and configs: CAs, every certificate, kubeconfigs, encryption config.
    #[command(after_help = CNC_AFTER_HELP)]
    Cnc(CncArgs),
    /// Print the admin kubeconfig (or write it to a file).
    Kubeconfig(KubeconfigArgs),
    /// Ready the hypervisor: packages, kernel modules, sysctls, networks, storage pool, SSH key.
    #[command(
        after_help = "Legacy: `kubicluster prepare TEMPLATE.qcow2 KEY` also takes a template image and its root key."
    )]
    Prepare(PrepareArgs),
    /// Build the Debian 12 template image the VMs are overlays of.
    Image(ImageArgs),
    /// The cluster's binaries and images, built from Go modules with the local Go toolchain.
    #[command(after_help = ARTIFACTS_AFTER_HELP)]
    Artifacts(ArtifactsArgs),
    /// Create (or start) the cluster's VMs, in parallel, and wait until each answers SSH.
    #[command(
        name = "create-vms",
        after_help = "Legacy: `kubicluster create-vms NAME,CLUSTER_IP,HYPERVISOR_IP … [-c=VCPUS] [-m=KIB] [-ndev] [-bi=BR] [-sd=DIR] [-f]`."
    )]
    CreateVms(CreateVmsArgs),
    /// etcd, kube-apiserver, controller-manager and scheduler on every controller, over SSH.
    #[command(
        name = "create-controllers",
        after_help = "Legacy: `kubicluster create-controllers -c SPEC … [-ev=] [-kv=] [-f] [install_etcd|install_kubernetes_controllers|update_certs|update_configs]`.\n\nBinaries come from spec.artifacts (upstream download, a local dir, or Debian packages for etcd). Without the Kubernetes binaries nothing is changed unless --allow-missing-binaries is given."
    )]
    CreateControllers(CreateControllersArgs),
    /// containerd + runc (+ kata where it can run), CNI plugins and the pod network, kubelet and
    /// kube-proxy on every worker, over SSH.
    #[command(
        name = "create-workers",
        after_help = "Legacy: `kubicluster create-workers -c CTRL … -w WORKER … [-kv=] [-cdv=] [-katav=] [-runcv=] [-cnipv=] [-calicov=] [-cidr=] [-f] [install_kata|install_runc|install_containerd|install_kubernetes_workers|install_cni_calico]`.\n\nAdding a worker: add it to the cluster file and run `up` (or create-vms, cnc for_worker_nodes and create-workers -w NEW): only the new worker is provisioned; in bridge mode the other nodes get its route. Without the kubelet/kube-proxy binaries nothing is changed unless --allow-missing-binaries is given."
    )]
    CreateWorkers(CreateWorkersArgs),
    /// Every pending change of the whole cluster (PKI, VMs, node files and units), per node.
    Plan(PlanArgs),
    /// Write every file kubicluster would place on each node to DIR/<node>/<path> (offline).
    Render(RenderArgs),
    /// Smoke checks through the API: nodes Ready, pods under runc (and kata), DNS, a NodePort, a
    /// Secret encrypted in etcd. Each prints PASS/FAIL/SKIP with its reason.
    Test(SmokeArgs),
    /// The CIS Kubernetes Benchmark's file and flag items on every node (kubicluster's own
    /// checks): PASS, FAIL, or WAIVED with the reason kubicluster does otherwise.
    Cis(CisArgs),
    /// Take a worker out: drain and delete it through the API (where one answers), destroy its
    /// VM and disk, remove its certificates.
    Remove(RemoveArgs),
    /// Remove VMs and their disks (not the template; not the PKI unless --all).
    Destroy(DestroyArgs),
    /// Each node's VM state, addresses, SSH reachability, its units and (where the API answers)
    /// readiness. Exit 3 when a node is not healthy.
    Status(StatusArgs),
    /// Shut the cluster's VMs down cleanly (workers first, then controllers); disks and state
    /// are kept for `start`.
    Stop(StopArgs),
    /// Start a stopped cluster: controllers until the API server is ready, then workers until
    /// each is Ready again.
    Start(StartArgs),
    /// Every cluster `up` made in the work dir, with its state (running, stopped, partial) and
    /// API endpoint.
    List(ListArgs),
    /// etcd backups: a snapshot to the hypervisor, or the whole cluster's state restored from one.
    Etcd(EtcdArgs),
    /// Whole-cluster snapshots: every VM's disk frozen at one moment (with an etcd snapshot),
    /// and the whole cluster brought back to one.
    Snapshot(SnapshotArgs),
    /// The whole cluster: (lab) → artifacts → networks and pool → image if missing → cnc → create-vms
    /// → create-controllers → create-workers (pod network, addons) → every node Ready → test.
    Up(UpArgs),
    /// A private libvirtd in a network namespace: a sandbox for the VMs (also used by the tests).
    Lab(LabArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Print the version.
    Version,
}

const CNC_AFTER_HELP: &str = "\
Files go to <workDir>/<cluster>/certs_and_configs. Re-running changes nothing that is still right:
a certificate is re-issued when it is missing, its SANs or subject changed, it expires within
renewBeforeDays, or with --force. CAs and the encryption key are never replaced.

Legacy: `kubicluster cnc -c NAME,CLUSTER_IP,HYPERVISOR_IP -w … [-clb IP] [-f]` works without a file,
and `cnc for_worker_nodes -w NEW -c CTRL` adds a worker's files only.";

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Number of controllers in the example.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=9))]
    pub controllers: u8,
    /// Number of workers in the example.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=99))]
    pub workers: u8,
    /// Where to write the file.
    #[arg(long, short = 'o', default_value = spec::DEFAULT_FILE)]
    pub output: PathBuf,
    /// Print to stdout instead of writing a file.
    #[arg(long, conflicts_with = "output")]
    pub stdout: bool,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct SpecOnly {
    #[command(flatten)]
    pub spec: SpecArgs,
}

#[derive(Debug, Args)]
pub struct CncArgs {
    /// Limit the run to parts of the PKI (default: all). Accepts the original's sub-command names.
    #[arg(value_enum)]
    pub only: Vec<CncPart>,
    /// Re-issue every selected certificate (never the CAs or the encryption key). Legacy: -f.
    #[arg(long, alias = "force-update")]
    pub force: bool,
    /// Print what would be created, re-issued (and why) or kept; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Make a new CA where this cluster's CA files are gone. Every certificate is re-issued and
    /// every node needs the new files; without this flag a missing CA is an error.
    #[arg(long)]
    pub new_ca: bool,
    /// Make a new encryption key where the encryption config is gone. Every Secret already stored
    /// in etcd becomes unreadable; without this flag a missing key is an error.
    #[arg(long)]
    pub new_encryption_key: bool,
    #[command(flatten)]
    pub spec: SpecArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CncPart {
    /// The three CAs (cluster, etcd, front-proxy).
    #[value(alias = "generate_ca")]
    Ca,
    /// The secret encryption config.
    #[value(alias = "generate_encryption_configs")]
    Encryption,
    /// kube-apiserver serving cert, service-account key, apiserver→kubelet client.
    Apiserver,
    /// etcd server/peer certs per controller and the apiserver→etcd client.
    Etcd,
    /// The aggregation-layer client cert.
    FrontProxy,
    /// controller-manager, scheduler, kube-proxy certs and kubeconfigs.
    #[value(alias = "for_system_components")]
    SystemComponents,
    /// The admin cert and kubeconfig.
    Admin,
    /// One kubelet cert and kubeconfig per worker.
    #[value(alias = "for_worker_nodes")]
    Workers,
    /// The calico-cni cert and kubeconfig.
    Calico,
}

impl From<CncPart> for Group {
    fn from(p: CncPart) -> Group {
        match p {
            CncPart::Ca => Group::Ca,
            CncPart::Encryption => Group::Encryption,
            CncPart::Apiserver => Group::ApiServer,
            CncPart::Etcd => Group::Etcd,
            CncPart::FrontProxy => Group::FrontProxy,
            CncPart::SystemComponents => Group::SystemComponents,
            CncPart::Admin => Group::Admin,
            CncPart::Workers => Group::Workers,
            CncPart::Calico => Group::Calico,
        }
    }
}

#[derive(Debug, Args)]
pub struct KubeconfigArgs {
    /// Write to this file (mode 0600) instead of stdout.
    #[arg(long, short = 'o', conflicts_with = "merge")]
    pub output: Option<PathBuf>,
    /// Merge into ~/.kube/config (or $KUBECONFIG, or --kubeconfig): context named after the
    /// cluster, made current; other contexts kept; file 0600.
    #[arg(long)]
    pub merge: bool,
    /// The kubeconfig file --merge writes.
    #[arg(long, value_name = "PATH", requires = "merge")]
    pub kubeconfig: Option<PathBuf>,
    #[command(flatten)]
    pub spec: SpecArgs,
}

#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// Legacy: a template image to use (copied to the image path).
    pub template: Option<PathBuf>,
    /// Legacy: the template's root SSH private key (copied to the cluster's key path, 0600).
    pub key: Option<PathBuf>,
    /// Only report readiness; change nothing. Exits 1 if something blocks.
    #[arg(long)]
    pub check: bool,
    /// Bridged mode: write an ifupdown stanza for the cluster bridge (the original's vmbr24 on
    /// eth1) to /etc/network/interfaces.d/. Never done without this flag.
    #[arg(long)]
    pub write_bridge_config: bool,
    /// Print what would be installed, written, loaded, set or created; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub spec: SpecArgs,
}

#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub action: ImageAction,
}

#[derive(Debug, Subcommand)]
pub enum ImageAction {
    /// Build the template (mmdebstrap, no internet beyond the package mirror).
    Build {
        /// Rebuild even if the image exists.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        spec: SpecArgs,
    },
}

const ARTIFACTS_AFTER_HELP: &str = "`artifacts build` compiles kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy and kubectl of the cluster's Kubernetes version (pinned Go modules with a committed go.sum, CGO_ENABLED=0, -trimpath, stripped), etcd and etcdctl, crictl, and the images a cluster needs offline: pause (the pod sandbox), CoreDNS, and busybox for `kubicluster test`. Output: <cache>/artifacts/kubernetes-vX.Y.Z/ with a SHA256SUMS manifest, where <cache> is $KUBICLUSTER_CACHE_DIR, $XDG_CACHE_HOME/kubicluster or ~/.cache/kubicluster. A complete build is reused. Use it with `--artifacts build` (up, create-controllers, create-workers), or as a plain directory with `--artifacts dir --artifacts-dir DIR`.";

#[derive(Debug, Args)]
pub struct ArtifactsArgs {
    #[command(subcommand)]
    pub action: ArtifactsAction,
}

#[derive(Debug, Subcommand)]
pub enum ArtifactsAction {
    /// Build (or reuse) the binaries and images for the cluster's Kubernetes version.
    Build {
        /// Build the Kubernetes components from this local k8s.io/kubernetes checkout instead of
        /// the pinned module (always rebuilt; Go's cache keeps that quick).
        #[arg(long, value_name = "DIR")]
        source: Option<PathBuf>,
        /// Rebuild even if a complete build exists.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Print the directory of the cluster's build (empty output and exit 1 when there is none).
    Dir {
        #[command(flatten)]
        spec: SpecArgs,
    },
}

#[derive(Debug, Args)]
pub struct CreateVmsArgs {
    /// Legacy: NAME,CLUSTER_IP,HYPERVISOR_IP of the VMs to create (added to the spec's nodes).
    pub nodes: Vec<String>,
    /// Recreate VMs that exist (after saying so). Legacy: -f.
    #[arg(long, alias = "force-update")]
    pub force: bool,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub spec: SpecArgs,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// Nodes to remove (default: every node of the cluster).
    pub nodes: Vec<String>,
    /// Also remove the cluster's PKI, keys and work files (and the lab, in lab mode).
    #[arg(long)]
    pub all: bool,
    /// Print what would be removed; remove nothing.
    #[arg(long, conflicts_with = "all")]
    pub dry_run: bool,
    #[command(flatten)]
    pub spec: SpecArgs,
}

#[derive(Debug, Args)]
pub struct CisArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
}

#[derive(Debug, Args)]
pub struct SmokeArgs {
    /// Image of the test pods (needs sh, sleep, nslookup, httpd: busybox); default: docker.io's
    /// busybox, or with `--artifacts build` the busybox image the build made.
    #[arg(long = "pod-image", value_name = "IMAGE")]
    pub pod_image: Option<String>,
    /// Seconds to wait for the API server to be ready.
    #[arg(long = "wait", default_value_t = 30, value_name = "SECONDS")]
    pub wait_seconds: u64,
    #[command(flatten)]
    pub spec: SpecArgs,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The worker to remove.
    pub node: String,
    #[command(flatten)]
    pub spec: SpecArgs,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Recreate VMs that exist.
    #[arg(long)]
    pub force: bool,
    /// Install units and configs even where a binary cannot be had; start what can run.
    #[arg(long)]
    pub allow_missing_binaries: bool,
    /// Do not run `kubicluster test` at the end.
    #[arg(long)]
    pub skip_test: bool,
    #[command(flatten)]
    pub spec: SpecArgs,
}

/// What every node-step command takes.
#[derive(Debug, Args)]
pub struct ConvergeArgs {
    /// Print the plan per node and change nothing, anywhere.
    #[arg(long)]
    pub dry_run: bool,
    /// Install every unit and config even where a binary cannot be had; start what can run
    /// and list what was not started.
    #[arg(long)]
    pub allow_missing_binaries: bool,
    /// Nodes worked on at once (0 = all).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub concurrency: usize,
    /// Legacy -f: accepted; files are rewritten whenever they differ anyway.
    #[arg(long, alias = "force-update")]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct CreateControllersArgs {
    /// Only one part (the original's subcommands); default: everything.
    #[arg(value_enum)]
    pub only: Option<ControllerPart>,
    #[command(flatten)]
    pub run: ConvergeArgs,
    /// Legacy -fedr: start etcd over with no data. A snapshot is saved to the hypervisor first and
    /// the old data is moved aside on each controller, never deleted. Needs --yes.
    #[arg(long)]
    pub force_etcd_data_reset: bool,
    /// Confirm --force-etcd-data-reset.
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub spec: SpecArgs,
}

#[derive(Debug, Args)]
pub struct CreateWorkersArgs {
    /// Only one part (the original's subcommands); default: everything.
    #[arg(value_enum)]
    pub only: Option<WorkerPart>,
    #[command(flatten)]
    pub run: ConvergeArgs,
    #[command(flatten)]
    pub spec: SpecArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkerPart {
    /// Kernel modules, sysctls, swap off, tools check.
    #[value(name = "prepare_worker_nodes")]
    PrepareWorkerNodes,
    /// runc only.
    #[value(name = "install_runc")]
    InstallRunc,
    /// containerd (and its runtimes) only.
    #[value(name = "install_containerd")]
    InstallContainerd,
    /// The kata check and containerd's runtimes (same step as install_containerd).
    #[value(name = "install_kata")]
    InstallKata,
    /// CNI plugins and the pod network's node side.
    #[value(name = "install_cni_calico", alias = "install_cni")]
    InstallCni,
    /// kubelet and kube-proxy only.
    #[value(name = "install_kubernetes_workers")]
    InstallKubernetesWorkers,
}

impl WorkerPart {
    /// The step it runs (`install_kata` and `install_containerd` both run the containerd step,
    /// which decides about kata; `install_cni_calico` runs the pod-network step).
    pub fn step(self) -> crate::engine::StepId {
        use crate::engine::StepId;
        match self {
            WorkerPart::PrepareWorkerNodes => StepId::PrepareWorkerNodes,
            WorkerPart::InstallRunc => StepId::InstallRunc,
            WorkerPart::InstallContainerd | WorkerPart::InstallKata => StepId::InstallContainerd,
            WorkerPart::InstallCni => StepId::InstallCni,
            WorkerPart::InstallKubernetesWorkers => StepId::InstallKubernetesWorkers,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ControllerPart {
    /// etcd only.
    #[value(name = "install_etcd", alias = "etcd")]
    InstallEtcd,
    /// kube-apiserver, controller-manager, scheduler only.
    #[value(name = "install_kubernetes_controllers", alias = "control-plane")]
    InstallKubernetesControllers,
    /// Certificates (same as a full run: only what differs is written).
    #[value(name = "update_certs")]
    UpdateCerts,
    /// Configs (same as a full run: only what differs is written).
    #[value(name = "update_configs")]
    UpdateConfigs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

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

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TmplKind {
    Kubicluster,
    Legacy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DomType {
    Auto,
    Kvm,
    Qemu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetMode {
    Isolated,
    Bridged,
}

/// Flags that override the cluster file. Each also reads `KUBICLUSTER_<NAME>`.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Cluster spec (override the cluster file)")]
pub struct SpecArgs {
    /// Cluster file [default: ./kubicluster.yaml if present, else the embedded default]. Legacy: -f FILE.
    #[arg(long, env = "KUBICLUSTER_FILE", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Cluster name. Legacy: -cl=NAME.
    #[arg(long, alias = "cluster", env = "KUBICLUSTER_NAME")]
    pub name: Option<String>,
    /// Work directory for generated files.
    #[arg(long, env = "KUBICLUSTER_WORK_DIR", value_name = "DIR")]
    pub work_dir: Option<String>,
    /// Controller NAME,CLUSTER_IP,HYPERVISOR_IP (repeatable; replaces the file's nodes). Legacy: -c.
    #[arg(
        long,
        alias = "controller-node",
        env = "KUBICLUSTER_CONTROLLERS",
        value_delimiter = ' ',
        value_name = "SPEC"
    )]
    pub controller: Vec<String>,
    /// Worker NAME,CLUSTER_IP,HYPERVISOR_IP (repeatable; replaces the file's nodes). Legacy: -w.
    #[arg(
        long,
        alias = "worker-node",
        env = "KUBICLUSTER_WORKERS",
        value_delimiter = ' ',
        value_name = "SPEC"
    )]
    pub worker: Vec<String>,
    /// Address clients use to reach the API servers. Legacy: -clb.
    #[arg(long, env = "KUBICLUSTER_CONTROLLER_LB_IP", value_name = "IP")]
    pub controller_lb_ip: Option<String>,
    /// Pod CIDR. Legacy: -cidr=.
    #[arg(
        long,
        alias = "cluster-cidr",
        env = "KUBICLUSTER_POD_CIDR",
        value_name = "CIDR"
    )]
    pub pod_cidr: Option<String>,
    /// Service CIDR.
    #[arg(long, env = "KUBICLUSTER_SERVICE_CIDR", value_name = "CIDR")]
    pub service_cidr: Option<String>,
    /// Cluster DNS service address.
    #[arg(long, env = "KUBICLUSTER_CLUSTER_DNS", value_name = "IP")]
    pub cluster_dns: Option<String>,
    /// Kubernetes version. Legacy: -kv=.
    #[arg(long, env = "KUBICLUSTER_KUBERNETES_VERSION", value_name = "V")]
    pub kubernetes_version: Option<String>,
    /// etcd version. Legacy: -ev=.
    #[arg(long, env = "KUBICLUSTER_ETCD_VERSION", value_name = "V")]
    pub etcd_version: Option<String>,
    /// containerd version. Legacy: -cdv=.
    #[arg(long, env = "KUBICLUSTER_CONTAINERD_VERSION", value_name = "V")]
    pub containerd_version: Option<String>,
    /// runc version. Legacy: -runcv=.
    #[arg(long, env = "KUBICLUSTER_RUNC_VERSION", value_name = "V")]
    pub runc_version: Option<String>,
    /// Kata Containers version. Legacy: -katav=.
    #[arg(long, env = "KUBICLUSTER_KATA_VERSION", value_name = "V")]
    pub kata_version: Option<String>,
    /// CNI plugins version. Legacy: -cnipv=.
    #[arg(long, env = "KUBICLUSTER_CNI_PLUGINS_VERSION", value_name = "V")]
    pub cni_plugins_version: Option<String>,
    /// Calico version. Legacy: -calicov=.
    #[arg(long, env = "KUBICLUSTER_CALICO_VERSION", value_name = "V")]
    pub calico_version: Option<String>,
    /// Key algorithm for new keys.
    #[arg(long, env = "KUBICLUSTER_KEY_ALGORITHM", value_name = "ALG",
          value_parser = ["ecdsa-p256", "rsa-2048", "rsa-3072", "rsa-4096"])]
    pub key_algorithm: Option<String>,
    /// Default vCPUs per VM. Legacy: -c=N.
    #[arg(long, env = "KUBICLUSTER_CPUS", value_name = "N")]
    pub cpus: Option<u32>,
    /// Default memory per VM in MiB.
    #[arg(long, env = "KUBICLUSTER_MEMORY_MIB", value_name = "MIB")]
    pub memory_mib: Option<u32>,
    /// Default memory per VM in KiB (the original's -m=); wins over --memory-mib.
    #[arg(long, hide = true, value_name = "KIB")]
    pub mem: Option<u64>,
    /// Cluster network mode.
    #[arg(
        long,
        value_enum,
        env = "KUBICLUSTER_CLUSTER_NET_MODE",
        value_name = "MODE"
    )]
    pub cluster_net_mode: Option<NetMode>,
    /// Isolated cluster network; appends "dev" to the bridge name (the original's -ndev).
    #[arg(long, conflicts_with = "cluster_net_mode")]
    pub cluster_net_dev: bool,
    /// Cluster network bridge. Legacy: -bi=.
    #[arg(long, env = "KUBICLUSTER_BRIDGE_INTERFACE", value_name = "BRIDGE")]
    pub bridge_interface: Option<String>,
    /// Physical port of the bridge (bridged mode). Legacy: -bp=.
    #[arg(long, env = "KUBICLUSTER_BRIDGE_PORT", value_name = "IF")]
    pub bridge_port: Option<String>,
    /// etcd client port. Legacy: -cp=.
    #[arg(
        long,
        alias = "client-port",
        env = "KUBICLUSTER_ETCD_CLIENT_PORT",
        value_name = "PORT"
    )]
    pub etcd_client_port: Option<u16>,
    /// etcd peer port. Legacy: -pp=.
    #[arg(
        long,
        alias = "peer-port",
        env = "KUBICLUSTER_ETCD_PEER_PORT",
        value_name = "PORT"
    )]
    pub etcd_peer_port: Option<u16>,
    /// Run against a private lab libvirtd in a network namespace (`kubicluster lab up`).
    #[arg(long, env = "KUBICLUSTER_LAB", value_parser = clap::builder::BoolishValueParser::new())]
    pub lab: bool,
    /// libvirt URI (host mode).
    #[arg(long, env = "KUBICLUSTER_LIBVIRT_URI", value_name = "URI")]
    pub libvirt_uri: Option<String>,
    /// Domain type: auto (kvm if usable, else qemu/TCG), kvm or qemu.
    #[arg(long, value_enum, env = "KUBICLUSTER_DOMAIN_TYPE", value_name = "TYPE")]
    pub domain_type: Option<DomType>,
    /// Directory of the VM disk pool. Legacy: -sd=.
    #[arg(long, env = "KUBICLUSTER_STORAGE_DIR", value_name = "DIR")]
    pub storage_dir: Option<String>,
    /// Template image (qcow2).
    #[arg(long, env = "KUBICLUSTER_IMAGE", value_name = "QCOW2")]
    pub image: Option<String>,
    /// Template kind: kubicluster (identity via fw_cfg) or legacy (re-addressed one by one).
    #[arg(
        long,
        value_enum,
        env = "KUBICLUSTER_TEMPLATE_KIND",
        value_name = "KIND"
    )]
    pub template_kind: Option<TmplKind>,
    /// Legacy template: its SSH host public key (pinned for the first connection).
    #[arg(long, env = "KUBICLUSTER_TEMPLATE_HOST_KEY", value_name = "PUB")]
    pub template_host_key: Option<String>,
    /// Legacy template: its static NAT-net address. Legacy: -tip=.
    #[arg(long, env = "KUBICLUSTER_TEMPLATE_IP", value_name = "IP")]
    pub template_ip: Option<String>,
    /// Legacy template: its static cluster-net address. Legacy: -tcip=.
    #[arg(long, env = "KUBICLUSTER_TEMPLATE_CLUSTER_IP", value_name = "IP")]
    pub template_cluster_ip: Option<String>,
    /// Seconds to wait for a VM to answer SSH.
    #[arg(long, env = "KUBICLUSTER_BOOT_TIMEOUT", value_name = "SECONDS")]
    pub boot_timeout: Option<u32>,
    /// Disk size of each VM in GiB (the root filesystem grows to it at boot).
    #[arg(long, env = "KUBICLUSTER_DISK_GIB", value_name = "GIB")]
    pub disk_gib: Option<u32>,
    /// etcd initial cluster token. Legacy: -t=.
    #[arg(
        long,
        alias = "cluster-token",
        env = "KUBICLUSTER_ETCD_CLUSTER_TOKEN",
        value_name = "TOKEN"
    )]
    pub etcd_cluster_token: Option<String>,
    /// Where node binaries come from: upstream (download + checksum), dir, deb (Debian packages),
    /// or build (`kubicluster artifacts build`: Kubernetes, etcd, images from Go modules; the rest deb).
    #[arg(long, value_enum, env = "KUBICLUSTER_ARTIFACTS", value_name = "SOURCE")]
    pub artifacts: Option<ArtifactsFrom>,
    /// Directory with binaries under their upstream names (offline; also Kubernetes binaries with deb).
    #[arg(long, env = "KUBICLUSTER_ARTIFACTS_DIR", value_name = "DIR")]
    pub artifacts_dir: Option<String>,
    /// Install files from --artifacts-dir that no digest vouches for (pinned, spec.artifacts.sha256
    /// or the directory's SHA256SUMS); each run says UNVERIFIED. Without it they are refused.
    #[arg(long, env = "KUBICLUSTER_ALLOW_UNVERIFIED_ARTIFACTS")]
    pub allow_unverified_artifacts: bool,
    /// Debian suite for the deb source (trixie: etcd 3.5; sid: containerd 2.x).
    #[arg(long, env = "KUBICLUSTER_DEB_SUITE", value_name = "SUITE")]
    pub deb_suite: Option<String>,
    /// Pod network: calico (manifest applied through the API) or bridge (per-worker subnets + routes).
    #[arg(long, value_enum, env = "KUBICLUSTER_CNI", value_name = "CNI")]
    pub cni: Option<CniChoice>,
    /// Runtime of pods without a runtimeClassName (kata falls back to runc where a worker has no KVM).
    #[arg(
        long,
        value_enum,
        env = "KUBICLUSTER_DEFAULT_RUNTIME",
        value_name = "RUNTIME"
    )]
    pub default_runtime: Option<RuntimeChoice>,
    /// Directory of image archives (*.tar, OCI or docker) to import on every worker.
    #[arg(long, env = "KUBICLUSTER_IMAGES_DIR", value_name = "DIR")]
    pub images_dir: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CniChoice {
    Calico,
    Bridge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuntimeChoice {
    Kata,
    Runc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArtifactsFrom {
    Upstream,
    Dir,
    Deb,
    Build,
}

impl SpecArgs {
    pub fn overrides(&self) -> Overrides {
        let mut bridge = self.bridge_interface.clone();
        let mut mode = self.cluster_net_mode.map(|m| match m {
            NetMode::Isolated => ClusterNetMode::Isolated,
            NetMode::Bridged => ClusterNetMode::Bridged,
        });
        if self.cluster_net_dev {
            mode = Some(ClusterNetMode::Isolated);
            // The original appended "dev" to the bridge name (whatever the flag order).
            bridge = bridge.map(|b| {
                if b.ends_with("dev") {
                    b
                } else {
                    format!("{b}dev")
                }
            });
        }
        Overrides {
            name: self.name.clone(),
            work_dir: self.work_dir.clone(),
            controllers: self.controller.clone(),
            workers: self.worker.clone(),
            api_server_lb_ip: self.controller_lb_ip.clone(),
            pod_cidr: self.pod_cidr.clone(),
            service_cidr: self.service_cidr.clone(),
            cluster_dns: self.cluster_dns.clone(),
            kubernetes_version: self.kubernetes_version.clone(),
            etcd_version: self.etcd_version.clone(),
            containerd_version: self.containerd_version.clone(),
            runc_version: self.runc_version.clone(),
            kata_version: self.kata_version.clone(),
            cni_plugins_version: self.cni_plugins_version.clone(),
            calico_version: self.calico_version.clone(),
            key_algorithm: self
                .key_algorithm
                .as_deref()
                .map(|a| a.parse::<KeyAlgorithm>().expect("clap checked the value")),
            vcpus: self.cpus,
            // The legacy -m= (KiB) is only ever a flag, so it wins over KUBICLUSTER_MEMORY_MIB.
            memory_mib: self
                .mem
                .map(|kib| u32::try_from(kib / 1024).unwrap_or(u32::MAX))
                .or(self.memory_mib),
            cluster_net_mode: mode,
            bridge,
            bridge_port: self.bridge_port.clone(),
            etcd_client_port: self.etcd_client_port,
            etcd_peer_port: self.etcd_peer_port,
            etcd_cluster_token: self.etcd_cluster_token.clone(),
            lab: self.lab,
            libvirt_uri: self.libvirt_uri.clone(),
            domain_type: self.domain_type.map(|t| match t {
                DomType::Auto => DomainTypeChoice::Auto,
                DomType::Kvm => DomainTypeChoice::Kvm,
                DomType::Qemu => DomainTypeChoice::Qemu,
            }),
            storage_dir: self.storage_dir.clone(),
            image: self.image.clone(),
            boot_timeout_seconds: self.boot_timeout,
            disk_gib: self.disk_gib,
            template_kind: self.template_kind.map(|k| match k {
                TmplKind::Kubicluster => TemplateKind::Kubicluster,
                TmplKind::Legacy => TemplateKind::Legacy,
            }),
            template_host_key: self.template_host_key.clone(),
            template_ip: self.template_ip.clone(),
            template_cluster_ip: self.template_cluster_ip.clone(),
            extra_nodes: Vec::new(),
            artifacts_source: self.artifacts.map(|a| match a {
                ArtifactsFrom::Upstream => ArtifactSource::Upstream,
                ArtifactsFrom::Dir => ArtifactSource::Dir,
                ArtifactsFrom::Deb => ArtifactSource::Deb,
                ArtifactsFrom::Build => ArtifactSource::Build,
            }),
            artifacts_dir: self.artifacts_dir.clone(),
            allow_unverified_artifacts: self.allow_unverified_artifacts,
            deb_suite: self.deb_suite.clone(),
            cni: self.cni.map(|c| match c {
                CniChoice::Calico => Cni::Calico,
                CniChoice::Bridge => Cni::Bridge,
            }),
            default_runtime: self.default_runtime.map(|r| match r {
                RuntimeChoice::Kata => Runtime::Kata,
                RuntimeChoice::Runc => Runtime::Runc,
            }),
            images_dir: self.images_dir.clone(),
        }
    }
}
