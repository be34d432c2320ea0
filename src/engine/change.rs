//! The one typed [`Change`]: what a plan says it will do on a node, on the hypervisor or to the
//! PKI — files, units, packages, commands, libvirt objects, certificates — and how it is printed
//! (text through `Display`, JSON through `Serialize`).

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Change {
    CreateDir {
        path: String,
        mode: String,
    },
    ChmodDir {
        path: String,
        from: String,
        to: String,
    },
    WriteFile {
        path: String,
        mode: String,
        reason: String,
        secret: bool,
    },
    Run {
        what: String,
    },
    DaemonReload,
    Enable {
        unit: String,
    },
    /// `systemctl reenable`: an enabled unit lacks a link its [Install] section asks for (the
    /// section changed, or a run was killed between writing the unit file and enabling it).
    Reenable {
        unit: String,
        missing: Vec<String>,
    },
    Start {
        unit: String,
    },
    Restart {
        unit: String,
        because: Vec<String>,
    },
    /// `systemctl reload`: the unit re-reads the files that changed and keeps running.
    Reload {
        unit: String,
        because: Vec<String>,
    },
    RunAfter {
        what: String,
    },
    // On the hypervisor (see [`super::hv`]): libvirt's objects.
    CreateNetwork {
        name: String,
        cidr: String,
    },
    StartNetwork {
        name: String,
    },
    CreatePool {
        name: String,
        path: String,
    },
    StartPool {
        name: String,
    },
    /// The template image copied into the pool as a volume named by its content.
    CopyTemplate {
        volume: String,
        pool: String,
        from: String,
    },
    /// A VM (its libvirt domain, and with it its disk and files).
    Vm {
        vm: String,
        #[serde(flatten)]
        op: VmOp,
    },
    /// A disk layer no VM, snapshot or revert uses.
    DeleteLayer {
        volume: String,
        mib: u64,
    },
    // The hypervisor's own files and settings.
    CreateSshKey {
        path: String,
    },
    BuildImage {
        path: String,
    },
    /// A file taken from the user (a template image, its key) into the work dir.
    TakeFile {
        path: String,
        from: String,
        mode: String,
    },
    WriteHostFile {
        path: String,
        mode: String,
    },
    RemovePath {
        path: String,
        what: String,
    },
    InstallPackages {
        packages: Vec<String>,
    },
    LoadModule {
        name: String,
    },
    SetSysctl {
        key: String,
        value: String,
    },
    // The PKI in the work dir.
    Pki {
        file: String,
        #[serde(flatten)]
        op: PkiOp,
    },
}

/// What is done to a VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum VmOp {
    Create,
    Recreate {
        why: String,
    },
    /// Defined, not running; `drift` says how it differs from the spec (not fixed without
    /// `--force`).
    Start {
        drift: Option<String>,
    },
    /// Running but never confirmed answering SSH: waited for and verified.
    Verify,
    /// Paused; `why` is libvirt's reason when the plan resumes it.
    Resume {
        why: Option<String>,
    },
    /// A clean shutdown through the guest (ACPI power button).
    ShutDown,
    /// Powered off; `after_s` when a clean shutdown did not finish in that time.
    PowerOff {
        after_s: Option<u64>,
    },
    Pause,
    /// Its disk frozen (a snapshot layer), writes going to a new overlay.
    FreezeDisk {
        overlay: String,
    },
    /// Powered off and put on a new overlay over a snapshot's layer.
    RevertDisk {
        overlay: String,
    },
    Autostart {
        on: bool,
    },
    /// Removed: `what` says which of domain, disk and files were there.
    Remove {
        what: String,
    },
}

/// What is done to a PKI file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum PkiOp {
    Create,
    Reissue { why: String },
    Update,
}

impl std::fmt::Display for VmOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VmOp::Create => f.write_str("create and start"),
            VmOp::Recreate { why } => write!(f, "recreate ({why})"),
            VmOp::Start { drift: None } => f.write_str("start (defined, not running)"),
            VmOp::Start { drift: Some(d) } => write!(
                f,
                "start (defined, not running); it differs from the spec ({d}): run with --force to recreate it"
            ),
            VmOp::Verify => f.write_str(
                "running, not yet verified (an earlier run stopped before it answered): wait for SSH and verify",
            ),
            VmOp::Resume { why: None } => f.write_str("resume"),
            VmOp::Resume { why: Some(w) } => write!(f, "resume (paused: {w}), then verify"),
            VmOp::ShutDown => f.write_str("shut down (power button)"),
            VmOp::PowerOff { after_s: None } => f.write_str("power off"),
            VmOp::PowerOff { after_s: Some(s) } => {
                write!(f, "power off (no clean shutdown in {s} s)")
            }
            VmOp::Pause => f.write_str("pause"),
            VmOp::FreezeDisk { overlay } => {
                write!(f, "freeze its disk; write to a new overlay {overlay}")
            }
            VmOp::RevertDisk { overlay } => write!(
                f,
                "power off; new disk {overlay} over the snapshot's layer (what it wrote since is dropped)"
            ),
            VmOp::Autostart { on } => write!(f, "autostart {}", if *on { "on" } else { "off" }),
            VmOp::Remove { what } => write!(f, "remove {what}"),
        }
    }
}

impl std::fmt::Display for PkiOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PkiOp::Create => f.write_str("create"),
            PkiOp::Reissue { why } => write!(f, "re-issue ({why})"),
            PkiOp::Update => f.write_str("update"),
        }
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::CreateDir { path, mode } => write!(f, "create dir {path} ({mode})"),
            Change::ChmodDir { path, from, to } => write!(f, "chmod {path} {from} → {to}"),
            Change::WriteFile {
                path,
                mode,
                reason,
                secret,
            } => write!(
                f,
                "write {path} ({mode}{}): {reason}",
                if *secret { ", secret" } else { "" }
            ),
            Change::Run { what } | Change::RunAfter { what } => write!(f, "run: {what}"),
            Change::DaemonReload => f.write_str("systemctl daemon-reload"),
            Change::Enable { unit } => write!(f, "enable {unit}"),
            Change::Reenable { unit, missing } => {
                write!(f, "re-enable {unit} (missing: {})", missing.join(", "))
            }
            Change::Start { unit } => write!(f, "start {unit}"),
            Change::Restart { unit, because } => {
                write!(f, "restart {unit} (changed: {})", because.join(", "))
            }
            Change::Reload { unit, because } => {
                write!(f, "reload {unit} (changed: {})", because.join(", "))
            }
            Change::CreateNetwork { name, cidr } => write!(f, "network {name}: create ({cidr})"),
            Change::StartNetwork { name } => write!(f, "network {name}: start"),
            Change::CreatePool { name, path } => {
                write!(f, "storage pool {name}: create ({path})")
            }
            Change::StartPool { name } => write!(f, "storage pool {name}: start"),
            Change::CopyTemplate { volume, pool, from } => {
                write!(f, "template volume {volume}: copy {from} into pool {pool}")
            }
            Change::Vm { vm, op } => write!(f, "{vm}: {op}"),
            Change::DeleteLayer { volume, mib } => write!(
                f,
                "{volume}: delete disk layer ({mib} MiB): no VM, snapshot or revert uses it"
            ),
            Change::CreateSshKey { path } => write!(f, "SSH key {path}: create"),
            Change::BuildImage { path } => write!(
                f,
                "template image {path}: build (mmdebstrap, Debian bookworm)"
            ),
            Change::TakeFile { path, from, mode } => write!(f, "{path}: take {from} ({mode})"),
            Change::WriteHostFile { path, mode } => write!(f, "{path}: write ({mode})"),
            Change::RemovePath { path, what } if what.is_empty() => write!(f, "{path}: remove"),
            Change::RemovePath { path, what } => write!(f, "{path}: remove {what}"),
            Change::InstallPackages { packages } => {
                write!(f, "packages: install {}", packages.join(" "))
            }
            Change::LoadModule { name } => write!(f, "kernel module {name}: load (modprobe)"),
            Change::SetSysctl { key, value } => write!(f, "sysctl {key}: set to {value}"),
            Change::Pki { file, op } => write!(f, "{file}: {op}"),
        }
    }
}
