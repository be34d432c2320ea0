//! The VMs of a cluster: infrastructure they need (networks, pool, template volume, SSH key),
//! a plan that never mutates (create / start / keep / drift / recreate), applying it (overlay
//! disks, domains, all started at once), waiting for each VM to answer SSH with its pinned host
//! key, verifying its identity, and destroying. kubicluster only ever touches domains whose
//! metadata names this cluster.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use ssh_key::PublicKey;

use crate::error::Failure;
use crate::fsutil;
use crate::host::Host;
use crate::host::ssh::SshHost;
use crate::host::{Cmd, HostError};
use crate::hypervisor::{self, Hypervisor, VmFiles, VmState, VolumeInfo};
use crate::par;
use crate::spec::{Cluster, ClusterNetMode, Node, TemplateKind};
use crate::sshkeys;

/// One planned change (or none) for a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create,
    Start,
    Keep,
    /// The domain differs from the spec; reported, applied only with `--force`.
    Drift(String),
    /// Stopped and differs from the spec: started as it is, the drift reported.
    StartDrifted(String),
    /// Running, but never confirmed answering SSH (an interrupted run): waited for and verified.
    Verify,
    /// Paused (the reason from libvirt): resumed, then verified. After an I/O error (the
    /// storage is full) it is resumed only once space is free again.
    Resume(String),
    Recreate(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub node: String,
    pub action: Action,
}

impl Planned {
    pub fn describe(&self) -> String {
        match &self.action {
            Action::Create => format!("{}: create and start", self.node),
            Action::Start => format!("{}: start (defined, not running)", self.node),
            Action::Verify => format!(
                "{}: running, not yet verified (an earlier run stopped before it answered): wait for SSH and verify",
                self.node
            ),
            Action::Keep => format!("{}: up to date", self.node),
            Action::StartDrifted(d) => format!(
                "{}: start (defined, not running); it differs from the spec ({d}): run with --force to recreate it",
                self.node
            ),
            Action::Drift(d) => format!(
                "{}: differs from the spec ({d}); run with --force to recreate it",
                self.node
            ),
            Action::Recreate(why) => format!("{}: recreate ({why})", self.node),
            Action::Resume(why) => format!("{}: resume (paused: {why}), then verify", self.node),
        }
    }
}

fn owned_by_us(cluster: &Cluster, d: &hypervisor::DomainInfo) -> Result<()> {
    match d.owner() {
        Some(o) if o == cluster.name => Ok(()),
        owner => Err(Failure::bad_input(format!(
            "{}: a libvirt domain with this name exists and belongs to {}",
            d.name,
            owner.map(|o| format!("kubicluster cluster {o:?}")).unwrap_or_else(|| "something else (no kubicluster metadata)".into())
        ))
        .hint("rename the node in the spec or remove that domain yourself; kubicluster never touches domains it did not create")
        .into()),
    }
}

/// Refuse node addresses that another kubicluster cluster's VM on this hypervisor already uses.
fn check_address_clash(cluster: &Cluster, hv: &dyn Hypervisor) -> Result<()> {
    let mut clashes = Vec::new();
    for d in hv.domains()? {
        let Some(owner) = d.owner() else { continue };
        if owner == cluster.name {
            continue;
        }
        for ip in d.addresses() {
            if let Some(n) = cluster
                .nodes
                .iter()
                .find(|n| n.cluster_ip == ip || n.hypervisor_ip == ip)
            {
                clashes.push(format!(
                    "{}: {ip} is already used by VM {} of cluster {owner:?}",
                    n.name, d.name
                ));
            }
        }
    }
    if clashes.is_empty() {
        return Ok(());
    }
    Err(Failure::bad_input(clashes.join("; "))
        .hint("give the nodes other addresses, or destroy the other cluster's VMs")
        .into())
}

/// The pin store is the truth, and a pin that is not the key the VM was created with (recorded
/// in its libvirt metadata) is an error: somebody replaced it.
fn check_pin(cluster: &Cluster, d: &hypervisor::DomainInfo) -> Result<()> {
    let Some(recorded) = d.host_key_fingerprint() else {
        return Ok(()); // created before the fingerprint was recorded, or a legacy template
    };
    let current = crate::host::pins::pinned(cluster, &d.name)?
        .map(|k| k.fingerprint(Default::default()).to_string());
    if current.as_deref() == Some(recorded.as_str()) {
        return Ok(());
    }
    Err(Failure::new(format!(
        "{}: the pinned host key ({}) is {}, not the key the VM was created with ({recorded})",
        d.name,
        crate::host::pins::host_key_path(cluster, &d.name).display(),
        current.as_deref().unwrap_or("missing"),
    ))
    .hint("restore that file from a backup; or recreate the VM with `create-vms --force` (a new key is made and pinned)")
    .into())
}

/// `vms/<node>/verified`: the VM answered SSH with its pinned key and its identity checked out
/// since it was last started. Only then is a running VM "up to date".
fn verified_marker(cluster: &Cluster, node: &str) -> std::path::PathBuf {
    cluster.vm_dir(node).join("verified")
}

pub fn is_verified(cluster: &Cluster, node: &str) -> bool {
    verified_marker(cluster, node).is_file()
}

pub fn mark_verified(cluster: &Cluster, node: &str) -> Result<()> {
    fsutil::write_atomic(&verified_marker(cluster, node), b"", fsutil::PUBLIC)
}

fn forget_verified(cluster: &Cluster, node: &str) {
    let _ = std::fs::remove_file(verified_marker(cluster, node));
}

/// Read-only: what `apply` would do for each node.
pub fn plan(cluster: &Cluster, hv: &dyn Hypervisor, force: bool) -> Result<Vec<Planned>> {
    check_address_clash(cluster, hv)?;
    let mut out = Vec::new();
    for n in &cluster.nodes {
        let action = match hv.domain(&n.name)? {
            None => Action::Create,
            Some(d) => {
                owned_by_us(cluster, &d)?;
                check_pin(cluster, &d)?;
                let mut drift = Vec::new();
                if let Some((vcpus, mib)) = d.size() {
                    // Only what differs is named.
                    if vcpus != n.vcpus {
                        drift.push(format!("vcpus {vcpus} → {}", n.vcpus));
                    }
                    if mib != u64::from(n.memory_mib) {
                        drift.push(format!("memory {mib} → {} MiB", n.memory_mib));
                    }
                }
                // A disk is never shrunk: only one smaller than diskGiB is a change.
                if let Some(v) =
                    hv.volume(&cluster.hypervisor.storage_pool, &volume_name(&n.name))?
                    && v.capacity < disk_bytes(cluster)
                {
                    drift.push(format!(
                        "disk {} → {} GiB",
                        v.capacity >> 30,
                        cluster.hypervisor.disk_gib
                    ));
                }
                let drift = (!drift.is_empty()).then(|| drift.join(", "));
                let running = d.state == VmState::Running;
                if let VmState::Paused(why) = &d.state
                    && !force
                {
                    out.push(Planned {
                        node: n.name.clone(),
                        action: Action::Resume(why.clone()),
                    });
                    continue;
                }
                match (drift, force) {
                    (Some(d), true) => Action::Recreate(d),
                    (None, true) => Action::Recreate("--force".into()),
                    (Some(d), false) if !running => Action::StartDrifted(d),
                    (Some(d), false) => Action::Drift(d),
                    (None, false) if !running => Action::Start,
                    (None, false) if !is_verified(cluster, &n.name) => Action::Verify,
                    (None, false) => Action::Keep,
                }
            }
        };
        out.push(Planned {
            node: n.name.clone(),
            action,
        });
    }
    Ok(out)
}

/// Free memory (MemAvailable) in MiB.
pub fn available_mib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? / 1024)
}

/// Refuse a plan whose new VMs need more memory than the host has free.
pub fn check_memory(cluster: &Cluster, plan: &[Planned]) -> Result<()> {
    let need: u64 = plan
        .iter()
        .filter(|p| {
            matches!(
                p.action,
                Action::Create | Action::Recreate(_) | Action::Start | Action::StartDrifted(_)
            )
        })
        .filter_map(|p| cluster.node(&p.node))
        .map(|n| u64::from(n.memory_mib))
        .sum();
    if let Some(free) = available_mib()
        && need > free
    {
        return Err(Failure::bad_input(format!(
            "the VMs to start need {need} MiB of memory, the host has {free} MiB free"
        ))
        .hint("lower memoryMiB (nodeDefaults or per node) or free memory")
        .into());
    }
    Ok(())
}

/// Networks, storage pool and the client SSH key; returns what was changed.
pub fn ensure_infra(cluster: &Cluster, hv: &dyn Hypervisor) -> Result<Vec<String>> {
    let mut changed = Vec::new();
    let nets = &cluster.networks;
    let mut wanted = vec![(
        nets.hypervisor_name.clone(),
        true,
        hypervisor::nat_bridge(&nets.hypervisor_name),
        nets.hypervisor,
    )];
    match nets.mode {
        ClusterNetMode::Isolated => wanted.push((
            nets.cluster_name.clone(),
            false,
            nets.bridge.clone(),
            nets.cluster,
        )),
        ClusterNetMode::Bridged => {
            if !Path::new("/sys/class/net")
                .join(&nets.bridge)
                .join("bridge")
                .exists()
            {
                return Err(Failure::new(format!("bridged cluster network: host bridge {} does not exist", nets.bridge))
                    .hint(format!("create it (bridge-ports {}) in /etc/network/interfaces, or use networks.cluster.mode: isolated", nets.bridge_port))
                    .into());
            }
        }
    }
    for (name, nat, bridge, cidr) in wanted {
        let gateway = cidr.hosts().next().expect("validated");
        match hv.network(&name)? {
            None => {
                hv.create_network(&hypervisor::network_xml(&name, nat, &bridge, cidr))?;
                changed.push(format!("network {name} ({cidr}) created"));
            }
            Some(n) => {
                if n.address() != Some((gateway, cidr.netmask())) {
                    return Err(Failure::new(format!(
                        "libvirt network {name} exists with another address than {gateway}/{}",
                        cidr.prefix_len()
                    ))
                    .hint("change the network in the cluster file, or remove that libvirt network")
                    .into());
                }
                if !n.active {
                    hv.start_network(&name)?;
                    changed.push(format!("network {name} started"));
                }
            }
        }
    }
    let pool = &cluster.hypervisor.storage_pool;
    let dir = cluster.storage_dir();
    match hv.pool(pool)? {
        None => {
            fsutil::ensure_dir(&dir, 0o711)?;
            hv.create_pool(&hypervisor::pool_xml(pool, &dir))?;
            changed.push(format!("storage pool {pool} ({}) created", dir.display()));
        }
        Some(p) if p.path != dir => {
            return Err(Failure::new(format!("storage pool {pool} exists at {}, the spec wants {}", p.path.display(), dir.display()))
                .hint("set hypervisor.storageDir to the pool's directory or pick another storagePool name")
                .into());
        }
        Some(p) if !p.active => {
            hv.start_pool(pool)?;
            changed.push(format!("storage pool {pool} started"));
        }
        Some(_) => {}
    }
    if !cluster.ssh_key.exists() {
        sshkeys::ensure_key(&cluster.ssh_key, &format!("kubicluster@{}", cluster.name))?;
        changed.push(format!("SSH key {} created", cluster.ssh_key.display()));
    }
    Ok(changed)
}

/// The template image, as a volume of the pool (copied in once, named by its content hash).
pub fn template_volume(cluster: &Cluster, hv: &dyn Hypervisor) -> Result<VolumeInfo> {
    let image = cluster.image_path();
    let mut f = std::fs::File::open(&image).map_err(|e| {
        Failure::bad_input(format!("template image {}: {e}", image.display())).hint(
            "build one with `kubicluster image build`, or give an existing qcow2 with --image",
        )
    })?;
    let mut magic = [0u8; 4];
    use std::io::Read;
    if f.read_exact(&mut magic).is_err() || &magic != b"QFI\xfb" {
        return Err(Failure::bad_input(format!(
            "template image {} is not a qcow2 file",
            image.display()
        ))
        .hint("convert it with `qemu-img convert -O qcow2`")
        .into());
    }
    let mut hasher = Sha256::new();
    let mut f = std::fs::File::open(&image)?;
    std::io::copy(&mut f, &mut hasher)?;
    let digest = hasher.finalize();
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    let name = format!("kubicluster-template-{hex}.qcow2");
    let pool = &cluster.hypervisor.storage_pool;
    if let Some(v) = hv.volume(pool, &name)? {
        return Ok(v);
    }
    let dir = cluster.storage_dir();
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::copy(&image, &tmp)
        .with_context(|| format!("copy {} into {}", image.display(), dir.display()))?;
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    std::fs::rename(&tmp, dir.join(&name))?;
    hv.refresh_pool(pool)?;
    hv.volume(pool, &name)?
        .with_context(|| format!("template volume {name} did not appear in pool {pool}"))
}

fn identity_text(cluster: &Cluster, n: &Node, client: &PublicKey) -> String {
    let hv = cluster.networks.hypervisor;
    let cl = cluster.networks.cluster;
    let gw = hv.hosts().next().expect("validated");
    format!(
        "HOSTNAME={}\nETH0_ADDRESS={}/{}\nETH0_GATEWAY={gw}\nETH1_ADDRESS={}/{}\nDNS={gw}\nAUTHORIZED_KEY={}\n",
        n.name,
        n.hypervisor_ip,
        hv.prefix_len(),
        n.cluster_ip,
        cl.prefix_len(),
        sshkeys::public_line(client)
    )
}

/// The pinned host key of a node (generated on first use, kept across re-creation).
pub fn host_key(cluster: &Cluster, node: &str) -> Result<ssh_key::PrivateKey> {
    let files = VmFiles::for_node(cluster, node);
    sshkeys::ensure_key(&files.host_key, &format!("{node}@{}", cluster.name))
}

fn legacy(cluster: &Cluster) -> bool {
    cluster.hypervisor.template_kind == TemplateKind::Legacy
}

/// The host key a node must present, from the pin store (never minted here: reading a pin
/// must not create one; `create-vms` makes host keys before a VM first boots).
pub fn pinned_key(cluster: &Cluster, node: &str) -> Result<PublicKey> {
    crate::host::pins::require(cluster, node)
}

/// `known_hosts`, rewritten from the pin store. Returns the nodes whose line there differed
/// from their pin (tampered or stale), so the caller can say so.
pub fn write_known_hosts(cluster: &Cluster) -> Result<Vec<String>> {
    let mut text = String::new();
    for n in &cluster.nodes {
        let Ok(key) = pinned_key(cluster, &n.name) else {
            continue;
        };
        text.push_str(&format!(
            "{},{} {}\n",
            n.name,
            n.hypervisor_ip,
            sshkeys::public_line(&key)
        ));
    }
    let path = cluster.known_hosts();
    let old = fsutil::read_optional(&path)?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let mut differed = Vec::new();
    for want in text.lines() {
        let host = want.split(' ').next().unwrap_or_default();
        if let Some(have) = old.lines().find(|l| l.split(' ').next() == Some(host))
            && have != want
        {
            differed.push(host.split(',').next().unwrap_or(host).to_string());
        }
    }
    for n in &differed {
        tracing::warn!(node = %n, "known_hosts line differed from the pinned key; rewritten from the pin store");
    }
    if old != text {
        fsutil::ensure_dir(path.parent().expect("has a parent"), fsutil::PRIVATE_DIR)?;
        fsutil::write_atomic(&path, text.as_bytes(), fsutil::PUBLIC)?;
    }
    Ok(differed)
}

fn remove_vm(cluster: &Cluster, hv: &dyn Hypervisor, name: &str) -> Result<()> {
    if let Some(d) = hv.domain(name)? {
        owned_by_us(cluster, &d)?;
        hv.stop_domain(name)?;
        hv.undefine_domain(name)?;
    }
    let pool = &cluster.hypervisor.storage_pool;
    let vol = volume_name(name);
    if hv.pool(pool)?.is_some() && hv.volume(pool, &vol)?.is_some() {
        hv.delete_volume(pool, &vol)?;
    }
    Ok(())
}

fn create_vm(
    cluster: &Cluster,
    hv: &dyn Hypervisor,
    n: &Node,
    template: &VolumeInfo,
    kvm: bool,
) -> Result<()> {
    let client = sshkeys::ensure_key(&cluster.ssh_key, &format!("kubicluster@{}", cluster.name))?;
    let files = VmFiles::for_node(cluster, &n.name);
    fsutil::ensure_dir(&cluster.vm_dir(&n.name), fsutil::PRIVATE_DIR)?;
    if legacy(cluster) {
        // The VM makes its own key while being re-addressed; an old pin must not survive.
        let _ = std::fs::remove_file(files.host_key.with_extension("pub"));
    } else {
        host_key(cluster, &n.name)?;
        fsutil::write_atomic(
            &files.identity,
            identity_text(cluster, n, client.public_key()).as_bytes(),
            fsutil::SECRET,
        )?;
    }
    let _ = std::fs::remove_file(&files.console_log);
    let pool = &cluster.hypervisor.storage_pool;
    let vol_name = volume_name(&n.name);
    if hv.volume(pool, &vol_name)?.is_some() {
        // Left over from an interrupted run: start from a fresh disk.
        hv.delete_volume(pool, &vol_name)?;
    }
    let capacity = disk_bytes(cluster).max(template.capacity);
    let vol = hv.create_volume(
        pool,
        &hypervisor::overlay_volume_xml(&vol_name, capacity, &template.path),
    )?;
    let (dtype, cpu) = hypervisor::domain_type(cluster, kvm);
    hv.define_domain(&hypervisor::domain_xml(cluster, n, &vol.path, dtype, &cpu))?;
    if legacy(cluster) {
        // Started one at a time by `readdress`: every clone boots with the template's address.
        return Ok(());
    }
    hv.start_domain(&n.name)
}

/// The disk size the spec asks for (`diskGiB`), in bytes.
fn disk_bytes(cluster: &Cluster) -> u64 {
    u64::from(cluster.hypervisor.disk_gib) << 30
}

/// The overlay volume of a node's VM in the storage pool.
fn volume_name(node: &str) -> String {
    format!("{node}.qcow2")
}

fn tcp_connect(ip: Ipv4Addr, port: u16, secs: u64) -> std::io::Result<std::net::TcpStream> {
    std::net::TcpStream::connect_timeout(
        &SocketAddr::new(ip.into(), port),
        Duration::from_secs(secs),
    )
}

fn answers(ip: Ipv4Addr, port: u16) -> bool {
    tcp_connect(ip, port, 2).is_ok()
}

/// Whether a machine holds `ip`: anything that replies on `port` within a second, even with a
/// refusal. Silence or "unreachable" means free.
fn address_taken(ip: Ipv4Addr, port: u16) -> bool {
    match tcp_connect(ip, port, 1) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
    }
}

/// Refuse to create a VM whose address another machine already holds (kubicluster's own VMs are
/// recognised by their metadata before this; this catches everything else on the networks).
/// Run after the networks exist and before any VM is created; probes all addresses in parallel.
pub fn check_addresses_free(cluster: &Cluster, plan: &[Planned]) -> Result<()> {
    let probes: Vec<(&str, Ipv4Addr)> = plan
        .iter()
        .filter(|p| p.action == Action::Create)
        .filter_map(|p| cluster.node(&p.node))
        .flat_map(|n| {
            [
                (n.name.as_str(), n.hypervisor_ip),
                (n.name.as_str(), n.cluster_ip),
            ]
        })
        .collect();
    let port = cluster.ssh_port;
    let taken: Vec<String> = par::map(&probes, |&(name, ip)| {
        address_taken(ip, port).then(|| format!("{name}: {ip} already answers"))
    })
    .into_iter()
    .flatten()
    .collect();
    if taken.is_empty() {
        return Ok(());
    }
    Err(Failure::bad_input(format!(
        "{}; another machine uses the address",
        taken.join("; ")
    ))
    .hint("give the node a free address in the cluster file, or free that address")
    .into())
}

/// The original's flow for a hand-made template, made safe: boot the clone alone, reach it at the
/// template address with the template's (pinned) host key, give it its name, addresses and a new
/// host key, pin that key, reboot it. Only one clone may hold the template address at a time.
fn readdress(cluster: &Cluster, hv: &dyn Hypervisor, n: &Node) -> Result<()> {
    let h = &cluster.hypervisor;
    let tip: Ipv4Addr = h.template_ip.parse().expect("validated");
    let tcip: Ipv4Addr = h.template_cluster_ip.parse().expect("validated");
    let template_key =
        PublicKey::read_openssh_file(Path::new(&h.template_host_key)).map_err(|e| {
            Failure::bad_input(format!("template host key {}: {e}", h.template_host_key))
                .hint("give the template's /etc/ssh/ssh_host_ed25519_key.pub")
        })?;
    let timeout = Duration::from_secs(h.boot_timeout_seconds.into());
    let deadline = Instant::now() + Duration::from_secs(60);
    while answers(tip, cluster.ssh_port) {
        if Instant::now() > deadline {
            return Err(
                Failure::new(format!("{tip} (the template address) is still in use"))
                    .hint("a VM from an interrupted run may hold it; destroy it, then run again")
                    .into(),
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    hv.start_domain(&n.name)?;
    let reach = || -> Result<SshHost> {
        let deadline = Instant::now() + timeout;
        loop {
            match SshHost::connect_to(
                &n.name,
                SocketAddr::new(tip.into(), cluster.ssh_port),
                &cluster.ssh_user,
                &cluster.ssh_key,
                &template_key,
                Duration::from_secs(5),
            ) {
                Ok(h) => return Ok(h),
                Err(e)
                    if matches!(e, HostError::HostKeyMismatch { .. })
                        || Instant::now() > deadline =>
                {
                    return Err(anyhow::Error::new(e).context(format!(
                        "{}: reach the clone at the template address {tip}",
                        n.name
                    )));
                }
                Err(_) => std::thread::sleep(Duration::from_secs(2)),
            }
        }
    };
    let host = match reach() {
        Ok(h) => h,
        Err(e) if !is_key_mismatch(&e) => {
            // A boot that never answers happens now and then under load: restart once.
            tracing::warn!(node = %n.name, "no SSH answer at the template address, restarting once: {e:#}");
            hv.stop_domain(&n.name)?;
            hv.start_domain(&n.name)?;
            reach().map_err(|e| {
                e.context(format!(
                    "console: {}",
                    VmFiles::for_node(cluster, &n.name).console_log.display()
                ))
            })?
        }
        Err(e) => return Err(e),
    };
    let re = |ip: Ipv4Addr| ip.to_string().replace('.', "\\.");
    let script = format!(
        "set -e\n\
         echo {name} >/etc/hostname\n\
         printf '127.0.0.1\\tlocalhost\\n127.0.1.1\\t%s\\n' {name} >/etc/hosts\n\
         for f in /etc/network/interfaces /etc/network/interfaces.d/*; do\n\
           if [ -f \"$f\" ]; then sed -i -e 's/{tip}\\b/{hip}/g' -e 's/{tcip}\\b/{cip}/g' \"$f\"; fi\n\
         done\n\
         rm -f /etc/ssh/ssh_host_*\n\
         ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key\n\
         rm -f /var/lib/dbus/machine-id; : >/etc/machine-id\n\
         cat /etc/ssh/ssh_host_ed25519_key.pub\n",
        name = n.name,
        tip = re(tip),
        tcip = re(tcip),
        hip = n.hypervisor_ip,
        cip = n.cluster_ip,
    );
    let out = host.run(&Cmd::new(["sh", "-c", &script]))?;
    anyhow::ensure!(
        out.status == 0,
        "{}: re-addressing failed: {}",
        n.name,
        out.tail(10)
    );
    let stdout = out.stdout_text();
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("ssh-ed25519 "))
        .with_context(|| format!("{}: no new host key in the re-addressing output", n.name))?;
    let key = PublicKey::from_openssh(line).with_context(|| format!("{}: new host key", n.name))?;
    let pub_path = VmFiles::for_node(cluster, &n.name)
        .host_key
        .with_extension("pub");
    fsutil::write_atomic(
        &pub_path,
        format!("{}\n", sshkeys::public_line(&key)).as_bytes(),
        fsutil::PUBLIC,
    )?;
    // Reboot into the new identity; the channel may close under us.
    let _ = host.run(&Cmd::new([
        "sh",
        "-c",
        "nohup sh -c 'sleep 1; reboot' >/dev/null 2>&1 &",
    ]));
    Ok(())
}

/// Apply a plan: create, recreate or start VMs (all before waiting for any). Drift is left alone.
pub fn apply(
    cluster: &Cluster,
    hv: &dyn Hypervisor,
    plan: &[Planned],
    kvm: bool,
) -> Result<Vec<String>> {
    let mut started = Vec::new();
    let needs_template = plan
        .iter()
        .any(|p| matches!(p.action, Action::Create | Action::Recreate(_)));
    let template = if needs_template {
        Some(template_volume(cluster, hv)?)
    } else {
        None
    };
    for p in plan {
        let n = cluster.node(&p.node).expect("planned from the cluster");
        if matches!(p.action, Action::Create) {
            forget_verified(cluster, &n.name);
        }
        match &p.action {
            Action::Create => create_vm(
                cluster,
                hv,
                n,
                template.as_ref().expect("loaded above"),
                kvm,
            )?,
            Action::Recreate(_) => {
                forget_verified(cluster, &n.name);
                remove_vm(cluster, hv, &n.name)?;
                create_vm(
                    cluster,
                    hv,
                    n,
                    template.as_ref().expect("loaded above"),
                    kvm,
                )?;
            }
            Action::Start | Action::StartDrifted(_) => {
                forget_verified(cluster, &n.name);
                hv.start_domain(&n.name)?
            }
            Action::Verify => {}
            Action::Resume(why) => {
                forget_verified(cluster, &n.name);
                if why == hypervisor::PAUSED_IO_ERROR {
                    disk_space_or_explain(cluster, &n.name)?;
                }
                hv.resume_domain(&n.name)?
            }
            Action::Keep | Action::Drift(_) => continue,
        }
        started.push(n.name.clone());
    }
    if legacy(cluster) {
        for p in plan
            .iter()
            .filter(|p| matches!(p.action, Action::Create | Action::Recreate(_)))
        {
            let n = cluster.node(&p.node).expect("planned from the cluster");
            readdress(cluster, hv, n)?;
        }
    }
    Ok(started)
}

/// Space needed on the storage before a VM paused by an I/O error is resumed.
const MIN_FREE_MIB: u64 = 256;

/// A VM paused after an I/O error: its disk's file system is full. Say where, and how much is
/// free; `Ok` once there is room again.
fn disk_space_or_explain(cluster: &Cluster, node: &str) -> Result<()> {
    let dir = cluster.storage_dir();
    match disk_full(node, &dir, hypervisor::free_mib(&dir)) {
        Some(f) => Err(f.into()),
        None => Ok(()),
    }
}

/// The error for a VM paused on a full disk, if the space free (MiB) is too little.
pub fn disk_full(node: &str, dir: &std::path::Path, free: Option<u64>) -> Option<Failure> {
    let free = free.filter(|f| *f < MIN_FREE_MIB)?;
    Some(
        Failure::new(format!(
            "{node}: the VM is paused after an I/O error: the file system of {} is full ({free} MiB free)",
            dir.display()
        ))
        .hint("free space there, then run the same command again: the VM is resumed where it stopped (no --force needed)"),
    )
}

/// Connect to a node over SSH, pinning its host key.
pub fn connect(cluster: &Cluster, n: &Node, timeout: Duration) -> Result<SshHost> {
    Ok(SshHost::connect(crate::host::pins::ssh_target(
        cluster, n, timeout,
    )?)?)
}

/// What a VM reports about itself, checked against the spec.
pub fn verify(cluster: &Cluster, n: &Node, host: &dyn Host) -> Result<()> {
    let out = host.run(&Cmd::new(["sh", "-c", "hostname; ip -4 -o addr show"]))?;
    let text = out.stdout_text();
    let mut lines = text.lines();
    let name = lines.next().unwrap_or_default().trim();
    anyhow::ensure!(name == n.name, "{}: hostname is {name:?}", n.name);
    let addrs: String = lines.collect::<Vec<_>>().join("\n");
    for (ip, prefix) in [
        (n.hypervisor_ip, cluster.networks.hypervisor.prefix_len()),
        (n.cluster_ip, cluster.networks.cluster.prefix_len()),
    ] {
        anyhow::ensure!(
            addrs.contains(&format!("inet {ip}/{prefix}")),
            "{}: {ip}/{prefix} not configured:\n{addrs}",
            n.name
        );
    }
    Ok(())
}

fn console_tail(cluster: &Cluster, node: &str, lines: usize) -> String {
    let log = VmFiles::for_node(cluster, node).console_log;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Wait until `n` answers SSH with its pinned key and passes [`verify`]. A VM that pauses on
/// an I/O error meanwhile (a full disk) ends the wait at once, saying so.
pub fn wait_ready(
    cluster: &Cluster,
    hv: &dyn Hypervisor,
    n: &Node,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = anyhow::anyhow!("no attempt");
    while Instant::now() < deadline {
        if let Some(d) = hv.domain(&n.name)? {
            match &d.state {
                VmState::Paused(why) if why == hypervisor::PAUSED_IO_ERROR => {
                    disk_space_or_explain(cluster, &n.name)?;
                    return Err(Failure::new(format!(
                        "{}: the VM paused after an I/O error writing its disk",
                        n.name
                    ))
                    .hint(format!(
                        "check the storage under {}; run the same command again to resume it",
                        cluster.storage_dir().display()
                    ))
                    .into());
                }
                VmState::Off => {
                    return Err(Failure::new(format!(
                        "{}: the VM powered off while booting",
                        n.name
                    ))
                    .hint("see its console log; run the same command again to start it")
                    .into());
                }
                _ => {}
            }
        }
        match connect(cluster, n, Duration::from_secs(5)) {
            Ok(h) => return verify(cluster, n, &h),
            Err(e) if is_key_mismatch(&e) => return Err(e),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    Err(last.context(format!(
        "{}: no SSH answer within {} s",
        n.name,
        timeout.as_secs()
    )))
}

/// Wait for every started VM in parallel; a VM that times out is restarted once, then fails
/// with its console log.
pub fn wait_all(
    cluster: &Cluster,
    hv: &dyn Hypervisor,
    names: &[String],
) -> Result<Vec<(String, Duration)>> {
    let timeout = Duration::from_secs(cluster.hypervisor.boot_timeout_seconds.into());
    let start = Instant::now();
    let results: Vec<(String, Result<Duration>)> = par::map(names, |name| {
        let n = cluster.node(name).expect("a cluster node");
        let first = wait_ready(cluster, hv, n, timeout);
        let r = match first {
            // A full disk is not cured by a restart.
            Err(e) if e.downcast_ref::<Failure>().is_some() => Err(e),
            Err(e) if !is_key_mismatch(&e) => {
                tracing::warn!(node = %n.name, "no SSH answer, restarting once: {e:#}");
                hv.stop_domain(&n.name)
                    .and_then(|_| hv.start_domain(&n.name))
                    .and_then(|_| wait_ready(cluster, hv, n, timeout))
            }
            other => other,
        };
        (n.name.clone(), r.map(|()| start.elapsed()))
    });
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(name, r)| {
            r.as_ref().err().map(|e| {
                format!(
                    "- {name}: {e:#}\n  console ({}), last lines:\n{}",
                    VmFiles::for_node(cluster, name).console_log.display(),
                    console_tail(cluster, name, 15)
                        .lines()
                        .map(|l| format!("    {l}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            })
        })
        .collect();
    if !failed.is_empty() {
        return Err(Failure::new(format!(
            "failed on {} VM(s):\n{}",
            failed.len(),
            failed.join("\n")
        ))
        .hint("see the console logs; raise hypervisor.bootTimeoutSeconds on a slow host")
        .into());
    }
    Ok(results
        .into_iter()
        .filter_map(|(name, r)| r.ok().map(|d| (name, d)))
        .collect())
}

/// Remove the named VMs (all of the cluster's if empty) and their disks. Foreign domains are refused.
pub fn destroy(cluster: &Cluster, hv: &dyn Hypervisor, only: &[String]) -> Result<Vec<String>> {
    let names: Vec<String> = if only.is_empty() {
        cluster.nodes.iter().map(|n| n.name.clone()).collect()
    } else {
        only.to_vec()
    };
    for name in &names {
        if let Some(d) = hv.domain(name)? {
            owned_by_us(cluster, &d)?;
        }
    }
    let mut removed = Vec::new();
    for name in names {
        let existed = hv.domain(&name)?.is_some();
        remove_vm(cluster, hv, &name)?;
        let dir = cluster.vm_dir(&name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        if existed {
            removed.push(name);
        }
    }
    if only.is_empty() {
        let _ = std::fs::remove_file(cluster.known_hosts());
        let _ = std::fs::remove_dir(cluster.cluster_dir().join("vms"));
    }
    Ok(removed)
}

/// One row of `status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeStatus {
    pub node: String,
    pub role: String,
    pub vm: String,
    pub cluster_ip: String,
    pub hypervisor_ip: String,
    pub ssh: String,
    /// (unit, "enabled active" as systemctl says) for the role's units, when SSH answered.
    pub units: Vec<(String, String, String)>,
    /// Node readiness from the API ("Ready", "NotReady", "absent"), when the API answered.
    pub ready: Option<String>,
}

/// The units of a role, for `status`.
pub fn role_units(role: crate::spec::Role) -> &'static [&'static str] {
    match role {
        crate::spec::Role::Controller => &[
            "etcd.service",
            "kube-apiserver.service",
            "kube-controller-manager.service",
            "kube-scheduler.service",
        ],
        crate::spec::Role::Worker => &[
            "containerd.service",
            "kubelet.service",
            "kube-proxy.service",
        ],
    }
}

fn unit_states(h: &dyn crate::host::Host, units: &[&str]) -> Vec<(String, String, String)> {
    let Ok(o) = h.run(&crate::host::Cmd::script(crate::host::UNITS_SCRIPT, units)) else {
        return Vec::new();
    };
    o.stdout_text()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((
                f.next()?.to_string(),
                f.next()?.to_string(),
                f.next()?.to_string(),
            ))
        })
        .collect()
}

pub fn status(cluster: &Cluster, hv: &dyn Hypervisor, probe_ssh: bool) -> Result<Vec<NodeStatus>> {
    cluster
        .nodes
        .iter()
        .map(|n| {
            let d = hv.domain(&n.name)?;
            let vm = match &d {
                None => "absent".to_string(),
                Some(d) if d.owner().as_deref() != Some(cluster.name.as_str()) => "foreign".into(),
                Some(d) => match &d.state {
                    VmState::Running => "running".into(),
                    VmState::Off => "off".into(),
                    VmState::Paused(_) => "paused".into(),
                    VmState::Other(s) => s.to_lowercase(),
                },
            };
            let mut units = Vec::new();
            let ssh = if !probe_ssh || vm != "running" {
                "-".into()
            } else if crate::host::pins::pinned(cluster, &n.name)
                .ok()
                .flatten()
                .is_none()
            {
                "NO PINNED KEY".into()
            } else {
                match connect(cluster, n, Duration::from_secs(3)).and_then(|h| {
                    verify(cluster, n, &h)?;
                    units = unit_states(&h, role_units(n.role));
                    Ok(())
                }) {
                    Ok(()) => "ok".into(),
                    Err(e) if is_key_mismatch(&e) => "WRONG HOST KEY".into(),
                    Err(_) => "no answer".into(),
                }
            };
            Ok(NodeStatus {
                node: n.name.clone(),
                role: n.role.to_string(),
                vm,
                cluster_ip: n.cluster_ip.to_string(),
                hypervisor_ip: n.hypervisor_ip.to_string(),
                ssh,
                units,
                ready: None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;

/// Whether `e` is (or wraps) a refused host key: decided on the type, never on the message.
pub fn is_key_mismatch(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<HostError>(),
            Some(HostError::HostKeyMismatch { .. })
        )
    })
}
