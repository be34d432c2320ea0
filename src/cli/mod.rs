//! Command-line definitions (clap derive): the commands and their arguments here, the flags
//! that override the cluster file and their translation into [`spec::Overrides`] in
//! [`spec_args`]. No behaviour lives here. The original's single-dash flags are rewritten by
//! [`crate::legacy`] before clap sees them.

mod day2;
mod spec_args;

pub use day2::*;
pub use spec_args::*;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::pki::Group;
use crate::spec;

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
    /// Kubernetes to another release, one node at a time (skew rules, drain, readiness).
    #[command(after_help = UPGRADE_AFTER_HELP)]
    Upgrade(UpgradeArgs),
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

const UPGRADE_AFTER_HELP: &str = "\
Kubernetes' version-skew policy is enforced against the version the API server runs: one minor
release at a time, no downgrade across minors (patch releases of the same minor either way).
The binaries for VERSION come from the cluster's artifact source (download with digests, a dir,
or `artifacts build`). After a failure or Ctrl-C, the same command goes on where it stopped;
after success it changes nothing. Keep spec.kubernetes.version in the cluster file in step.";

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// The Kubernetes release to run (e.g. 1.37.2).
    #[arg(long, value_name = "VERSION")]
    pub to: String,
    /// Print the order and every node's changes; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Seconds to wait for a worker's pods to be evicted (PodDisruptionBudgets may hold them).
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub drain_timeout: u64,
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
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
}
