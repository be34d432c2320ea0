//! Lab mode: a private libvirtd inside a network namespace kubicluster creates, with its own
//! config, state, run, log and cache directories bind-mounted over libvirt's, so its networks,
//! dnsmasq, taps and VMs all live in the namespace (no route out) and nothing touches the host's
//! libvirt. Clients reach it through its unix socket; connections to the VMs (SSH, the API) are
//! opened inside the namespace by [`crate::net`]'s dialer.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Failure;
use crate::fsutil;
use crate::hypervisor::Hypervisor;
use crate::hypervisor::libvirt::Libvirt;
use crate::spec::Cluster;

/// What `lab up` leaves behind for later commands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabState {
    pub netns: String,
    pub pid: u32,
    pub uri: String,
}

const QEMU_CONF: &str = r#"# kubicluster lab: QEMU runs as root without cgroups, namespaces, a security driver or virtlogd.
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
stdio_handler = "file"
namespaces = [ ]
"#;

/// The directories bind-mounted over libvirt's own, relative to the lab dir.
const MOUNTS: &[(&str, &str)] = &[
    ("etc", "/etc/libvirt"),
    ("lib", "/var/lib/libvirt"),
    ("run", "/run/libvirt"),
    ("log", "/var/log/libvirt"),
    ("cache", "/var/cache/libvirt"),
];

/// A namespace name unique to this cluster and work dir.
pub fn netns_name(cluster: &Cluster) -> String {
    let dir =
        std::fs::canonicalize(cluster.cluster_dir()).unwrap_or_else(|_| cluster.cluster_dir());
    let h = Sha256::digest(dir.to_string_lossy().as_bytes());
    format!(
        "kubilab-{}-{:02x}{:02x}{:02x}",
        cluster.name, h[0], h[1], h[2]
    )
}

fn state_path(cluster: &Cluster) -> PathBuf {
    cluster.lab_dir().join("lab.yaml")
}

pub fn socket_path(cluster: &Cluster) -> PathBuf {
    cluster.lab_dir().join("run").join("libvirt-sock")
}

pub fn uri(cluster: &Cluster) -> String {
    format!("qemu:///system?socket={}", socket_path(cluster).display())
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The recorded lab, if its daemon is still alive.
pub fn state(cluster: &Cluster) -> Result<Option<LabState>> {
    Ok(recorded(cluster)?.filter(|s| pid_alive(s.pid)))
}

/// The recorded lab, alive or not (a dead daemon leaves its record, namespace and VMs' files).
pub fn recorded(cluster: &Cluster) -> Result<Option<LabState>> {
    let Some(bytes) = fsutil::read_optional(&state_path(cluster))? else {
        return Ok(None);
    };
    Ok(Some(
        serde_yaml_ng::from_slice(&bytes).context("read lab state")?,
    ))
}

/// The one line that says what to do when the lab's daemon died.
pub const DEAD_DAEMON_HINT: &str = "`kubicluster lab up` starts it again and the VMs re-attach with their disks (`lab down` would delete every VM and disk)";

/// Where the lab's network namespace is bound.
pub fn netns_path(cluster: &Cluster) -> std::path::PathBuf {
    Path::new("/run/netns").join(netns_name(cluster))
}

/// Start the lab (idempotent): namespace, private libvirtd, its socket answering.
pub fn up(cluster: &Cluster) -> Result<(LabState, bool)> {
    if let Some(s) = state(cluster)? {
        return Ok((s, false));
    }
    if !fsutil::is_root() {
        return Err(
            Failure::new("the lab needs root (network namespaces, libvirtd)")
                .hint("run as root")
                .into(),
        );
    }
    let missing: Vec<_> = ["ip", "libvirtd", "qemu-system-x86_64", "dnsmasq"]
        .into_iter()
        .filter(|b| !fsutil::find_program(b))
        .collect();
    if !missing.is_empty() {
        return Err(Failure::new(format!("the lab needs {}", missing.join(", ")))
            .hint("install libvirt-daemon-system, libvirt-daemon-driver-qemu, qemu-system-x86 and dnsmasq-base (make up does)")
            .into());
    }
    let dir = cluster.lab_dir();
    fsutil::ensure_dir(&dir, fsutil::PRIVATE_DIR)?;
    let _lock = fsutil::lock_dir(&dir)?;
    // A lab started again (after `lab reboot`, or a daemon that died) keeps its configuration:
    // the networks, pool and domains it defined, the cluster's own "default" network among them.
    let fresh = std::fs::read_dir(dir.join("etc")).map_or(true, |mut d| d.next().is_none());
    for (sub, _) in MOUNTS {
        fsutil::ensure_dir(&dir.join(sub), 0o755)?;
    }
    if fresh {
        // A private copy of the host's libvirt configuration, minus the packaged default network.
        run(Command::new("cp")
            .arg("-a")
            .arg("/etc/libvirt/.")
            .arg(dir.join("etc")))?;
        for f in [
            "qemu/networks/default.xml",
            "qemu/networks/autostart/default.xml",
        ] {
            let _ = std::fs::remove_file(dir.join("etc").join(f));
        }
    }
    fsutil::write_atomic(&dir.join("etc/qemu.conf"), QEMU_CONF.as_bytes(), 0o644)?;
    let ns = netns_name(cluster);
    if !netns_path(cluster).exists() {
        run(Command::new("ip").args(["netns", "add", &ns]))?;
    }
    run(Command::new("ip").args(["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]))?;
    let mut script = String::from("set -e\n");
    for (sub, target) in MOUNTS {
        script.push_str(&format!(
            "mkdir -p '{target}'\nmount --bind '{}' '{target}'\n",
            dir.join(sub).display()
        ));
    }
    // Its pid file in the private run dir: /run/libvirtd.pid belongs to the host's own libvirtd,
    // or to another cluster's lab.
    script.push_str("exec libvirtd --pid-file /run/libvirt/libvirtd.pid\n");
    let log = std::fs::File::create(dir.join("libvirtd.out"))?;
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns, "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("start libvirtd in the lab namespace")?;
    let pid = child.id();
    let state = LabState {
        netns: ns,
        pid,
        uri: uri(cluster),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if socket_path(cluster).exists() && Libvirt::connect(&state.uri).is_ok() {
            break;
        }
        let exited = child.try_wait().ok().flatten().is_some();
        if exited || Instant::now() > deadline {
            let out = std::fs::read_to_string(dir.join("libvirtd.out")).unwrap_or_default();
            bail!("the lab libvirtd did not come up: {}", out.trim());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    fsutil::write_atomic(
        &state_path(cluster),
        serde_yaml_ng::to_string(&state)?.as_bytes(),
        fsutil::SECRET,
    )?;
    Ok((state, true))
}

/// Remove everything the lab made: VMs, networks, the daemon, the namespace and its directory.
pub fn down(cluster: &Cluster) -> Result<bool> {
    let ns = netns_name(cluster);
    let dir = cluster.lab_dir();
    let ns_exists = netns_path(cluster).exists();
    if !ns_exists && !dir.exists() {
        return Ok(false);
    }
    if let Some(s) = state(cluster)?
        && let Ok(lv) = Libvirt::connect(&s.uri)
    {
        for d in lv.domains()? {
            let _ = lv.stop_domain(&d.name);
            let _ = lv.undefine_domain(&d.name);
        }
    }
    if ns_exists {
        kill_namespace(&ns)?;
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    Ok(true)
}

/// Stop every process in namespace `ns` (libvirtd, dnsmasq, QEMU) and delete it with its
/// interfaces.
fn kill_namespace(ns: &str) -> Result<()> {
    for sig in [rustix::process::Signal::TERM, rustix::process::Signal::KILL] {
        let out = Command::new("ip").args(["netns", "pids", ns]).output()?;
        let pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if pids.is_empty() {
            break;
        }
        for p in &pids {
            signal(p, sig);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && pids
                .iter()
                .any(|p| Path::new(&format!("/proc/{p}")).exists())
        {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    run(Command::new("ip").args(["netns", "del", ns]))
}

/// What the lab's host does when it reboots: every VM loses power, the daemon and the
/// namespace's interfaces go, libvirt's run state (a tmpfs on a real host) is empty, and
/// libvirtd starts again, starting what is marked autostart (networks, pool, domains).
/// Definitions, disks and the cluster's files are kept. Returns the domains running after.
pub fn reboot(cluster: &Cluster) -> Result<Vec<String>> {
    let Some(s) = state(cluster)? else {
        return Err(Failure::new(format!(
            "the lab of cluster {} is not running",
            cluster.name
        ))
        .hint("start it with `kubicluster lab up --lab`")
        .into());
    };
    let lv = Libvirt::connect(&s.uri)?;
    for d in lv.domains()? {
        lv.stop_domain(&d.name)?;
    }
    drop(lv);
    kill_namespace(&s.netns)?;
    let run_dir = cluster.lab_dir().join("run");
    std::fs::remove_dir_all(&run_dir).with_context(|| format!("empty {}", run_dir.display()))?;
    let _ = std::fs::remove_file(state_path(cluster));
    let (s, _) = up(cluster)?;
    let lv = Libvirt::connect(&s.uri)?;
    // libvirtd starts autostart domains as it starts; give it a moment to have done so.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = lv.domains()?;
        let running: Vec<String> = all
            .iter()
            .filter(|d| d.state == crate::hypervisor::VmState::Running)
            .map(|d| d.name.clone())
            .collect();
        let want = all.iter().filter(|d| d.autostart).count();
        if running.len() >= want || Instant::now() > deadline {
            return Ok(running);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Send `sig` to process `pid` (a decimal string); a process that is gone is not an error.
fn signal(pid: &str, sig: rustix::process::Signal) {
    if let Some(pid) = pid.parse().ok().and_then(rustix::process::Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}
