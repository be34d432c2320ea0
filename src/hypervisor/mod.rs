//! The hypervisor boundary: a small trait over what kubicluster asks of libvirt, a libvirt
//! implementation (the only module that imports `virt`) and a recording fake for tests.
//! libvirt XML is rendered from `vm-templates/*.j2` here and parsed back with roxmltree.

pub mod fake;
pub mod libvirt;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::render;
use crate::spec::{Cluster, ClusterNetMode, DomainTypeChoice, Node};

/// XML namespace of kubicluster's domain metadata: a domain without it is not ours.
pub const METADATA_NS: &str = "https://kubicluster.io/xmlns/node/1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmState {
    Running,
    Off,
    /// Paused, with libvirt's reason ("I/O error" when a disk write failed: the disk is full).
    Paused(String),
    Other(String),
}

/// The pause reason of a VM whose disk write failed (a full disk, mostly).
pub const PAUSED_IO_ERROR: &str = "I/O error";

/// Free space of the file system holding `dir`, in MiB.
pub fn free_mib(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize) >> 20)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainInfo {
    pub name: String,
    pub state: VmState,
    /// The XML libvirt holds for the domain (inactive definition).
    pub xml: String,
    /// Started by libvirt when its daemon starts (the host boots).
    pub autostart: bool,
}

impl DomainInfo {
    /// The cluster named in kubicluster's metadata, if the domain carries it.
    pub fn owner(&self) -> Option<String> {
        let doc = roxmltree::Document::parse(&self.xml).ok()?;
        doc.descendants()
            .find(|n| {
                n.tag_name().namespace() == Some(METADATA_NS) && n.tag_name().name() == "cluster"
            })
            .and_then(|n| n.text())
            .map(str::to_string)
    }

    /// The fingerprint of the host key the VM was created with (kubicluster's metadata).
    pub fn host_key_fingerprint(&self) -> Option<String> {
        let doc = roxmltree::Document::parse(&self.xml).ok()?;
        doc.descendants()
            .find(|n| {
                n.tag_name().namespace() == Some(METADATA_NS) && n.tag_name().name() == "hostKey"
            })
            .and_then(|n| n.text())
            .map(str::to_string)
    }

    /// The node addresses recorded in kubicluster's metadata (cluster IP, hypervisor IP).
    pub fn addresses(&self) -> Vec<Ipv4Addr> {
        let Ok(doc) = roxmltree::Document::parse(&self.xml) else {
            return Vec::new();
        };
        doc.descendants()
            .filter(|n| n.tag_name().namespace() == Some(METADATA_NS))
            .filter(|n| matches!(n.tag_name().name(), "clusterIP" | "hypervisorIP"))
            .filter_map(|n| n.text()?.trim().parse().ok())
            .collect()
    }

    /// The file the VM's disk writes to (`<disk device='disk'><source file>`).
    pub fn disk_path(&self) -> Option<PathBuf> {
        let doc = roxmltree::Document::parse(&self.xml).ok()?;
        let disk = os_disk(&doc)?;
        disk.children()
            .find(|n| n.has_tag_name("source"))?
            .attribute("file")
            .map(PathBuf::from)
    }

    /// The domain's XML with its disk writing to `path` instead (and no backing chain recorded:
    /// libvirt reads it from the file).
    pub fn with_disk(&self, path: &Path) -> Result<String> {
        let doc = roxmltree::Document::parse(&self.xml)?;
        let disk =
            os_disk(&doc).ok_or_else(|| anyhow::anyhow!("{}: no disk in its XML", self.name))?;
        let range = disk.range();
        let path = xml_path(path)?;
        let block = format!(
            "<disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2' discard='unmap'/>\n      <source file='{path}'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>"
        );
        Ok(format!(
            "{}{block}{}",
            &self.xml[..range.start],
            &self.xml[range.end..]
        ))
    }

    /// The MTU set on the NIC with this MAC (`None`: none set, libvirt's default).
    pub fn nic_mtu(&self, mac: &str) -> Option<u16> {
        let doc = roxmltree::Document::parse(&self.xml).ok()?;
        let nic = doc.descendants().find(|n| {
            n.has_tag_name("interface")
                && n.children().any(|m| {
                    m.has_tag_name("mac")
                        && m.attribute("address")
                            .is_some_and(|a| a.eq_ignore_ascii_case(mac))
                })
        })?;
        nic.children()
            .find(|n| n.has_tag_name("mtu"))?
            .attribute("size")?
            .parse()
            .ok()
    }

    /// (vcpus, memory in MiB) from the XML.
    pub fn size(&self) -> Option<(u32, u64)> {
        let doc = roxmltree::Document::parse(&self.xml).ok()?;
        let root = doc.root_element();
        let child = |name: &str| root.children().find(|n| n.has_tag_name(name));
        let vcpus = child("vcpu")?.text()?.trim().parse().ok()?;
        let mem = child("memory")?;
        let value: u64 = mem.text()?.trim().parse().ok()?;
        let mib = match mem.attribute("unit").unwrap_or("KiB") {
            "KiB" | "k" => value / 1024,
            "MiB" | "M" => value,
            "GiB" | "G" => value * 1024,
            "b" | "bytes" => value / (1024 * 1024),
            _ => return None,
        };
        Some((vcpus, mib))
    }
}

/// The `<name>` of a libvirt object's XML (domain, network, pool, volume).
pub(crate) fn xml_name(xml: &str) -> Result<String> {
    let doc = roxmltree::Document::parse(xml)?;
    doc.root_element()
        .children()
        .find(|n| n.has_tag_name("name"))
        .and_then(|n| n.text())
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("XML has no <name>"))
}

/// A file path to put in an XML attribute, refused when it holds a character that would need
/// escaping (kubicluster's own paths never do).
pub fn xml_path(path: &Path) -> Result<String> {
    let text = path.display().to_string();
    anyhow::ensure!(
        !text.contains(['\'', '<', '&', '"']),
        "{text}: not a path for libvirt XML"
    );
    Ok(text)
}

/// The backing file named in a volume's XML (`<backingStore><path>`), if it has one.
pub fn backing_path(volume_xml: &str) -> Result<Option<PathBuf>> {
    let doc = roxmltree::Document::parse(volume_xml)?;
    Ok(doc
        .descendants()
        .find(|n| n.has_tag_name("backingStore"))
        .and_then(|b| b.children().find(|n| n.has_tag_name("path")))
        .and_then(|n| n.text())
        .map(|t| PathBuf::from(t.trim())))
}

/// The VM's system disk in a domain's XML.
fn os_disk<'a>(doc: &'a roxmltree::Document) -> Option<roxmltree::Node<'a, 'a>> {
    doc.descendants()
        .find(|n| n.has_tag_name("disk") && n.attribute("device") == Some("disk"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInfo {
    pub name: String,
    pub active: bool,
    pub xml: String,
}

impl NetworkInfo {
    /// The network's address and netmask (`<ip address netmask>`).
    pub fn address(&self) -> Option<(Ipv4Addr, Ipv4Addr)> {
        let doc = roxmltree::Document::parse(&self.xml).ok()?;
        let ip = doc.descendants().find(|n| n.has_tag_name("ip"))?;
        Some((
            ip.attribute("address")?.parse().ok()?,
            ip.attribute("netmask")?.parse().ok()?,
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolInfo {
    pub name: String,
    pub active: bool,
    pub path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    pub name: String,
    pub path: PathBuf,
    pub capacity: u64,
    /// Bytes it takes on the hypervisor's disk (what the pool reports: right for a remote one).
    pub allocation: u64,
    /// The file a qcow2 overlay reads what it has not written from.
    pub backing: Option<PathBuf>,
}

/// What kubicluster asks of a hypervisor. Implementations are blocking; callers fan out with threads.
pub trait Hypervisor: Send + Sync {
    /// Where this hypervisor is (URI), for messages.
    fn describe(&self) -> String;
    /// Can it run x86_64 q35 guests of `virttype` (`kvm`, `qemu`)? `Ok(false)` when the driver
    /// cannot tell (libvirt's test driver); an error with libvirt's reason when it cannot.
    /// libvirt probes its emulator the first time it is asked (seconds under TCG), so asking
    /// while preparing keeps that out of the first VM's boot.
    fn guest_support(&self, virttype: &str) -> Result<bool>;
    /// The host's memory, MiB; None when the driver cannot tell.
    fn memory_mib(&self) -> Result<Option<u64>>;
    fn domains(&self) -> Result<Vec<DomainInfo>>;
    fn domain(&self, name: &str) -> Result<Option<DomainInfo>>;
    fn define_domain(&self, xml: &str) -> Result<()>;
    fn start_domain(&self, name: &str) -> Result<()>;
    /// Resume a paused domain.
    fn resume_domain(&self, name: &str) -> Result<()>;
    /// Pause a running domain (its memory kept, its clock stopped).
    fn suspend_domain(&self, name: &str) -> Result<()>;
    /// Freeze the domain's disk: from now on it writes to a new qcow2 overlay at `new_top`,
    /// backed by the file it wrote to until now (an external disk-only snapshot, running or
    /// not, without libvirt snapshot metadata: kubicluster keeps its own record).
    fn snapshot_disk(&self, name: &str, new_top: &Path) -> Result<()>;
    /// Power off at once (libvirt "destroy").
    fn stop_domain(&self, name: &str) -> Result<()>;
    /// Ask the guest to shut down (ACPI power button); returns at once.
    fn shutdown_domain(&self, name: &str) -> Result<()>;
    /// Whether libvirt starts the domain when its daemon starts.
    fn set_autostart(&self, name: &str, on: bool) -> Result<()>;
    fn undefine_domain(&self, name: &str) -> Result<()>;
    fn network(&self, name: &str) -> Result<Option<NetworkInfo>>;
    /// Define, mark autostart and start a network.
    fn create_network(&self, xml: &str) -> Result<()>;
    fn start_network(&self, name: &str) -> Result<()>;
    fn remove_network(&self, name: &str) -> Result<()>;
    fn pool(&self, name: &str) -> Result<Option<PoolInfo>>;
    /// Define, build, autostart and start a directory pool.
    fn create_pool(&self, xml: &str) -> Result<()>;
    fn start_pool(&self, name: &str) -> Result<()>;
    fn volume(&self, pool: &str, name: &str) -> Result<Option<VolumeInfo>>;
    /// Every volume of a pool.
    fn volumes(&self, pool: &str) -> Result<Vec<VolumeInfo>>;
    fn create_volume(&self, pool: &str, xml: &str) -> Result<VolumeInfo>;
    fn delete_volume(&self, pool: &str, name: &str) -> Result<()>;
    /// Make the volume `xml` describes and fill it with `len` bytes of `data` through libvirt's
    /// upload stream — the same way to a local and to a remote host. A failed upload deletes
    /// the volume again.
    fn upload_volume(
        &self,
        pool: &str,
        xml: &str,
        data: &mut dyn std::io::Read,
        len: u64,
    ) -> Result<VolumeInfo>;
    /// Every byte of a volume, through libvirt's download stream, into `sink`.
    fn download_volume(&self, pool: &str, name: &str, sink: &mut dyn std::io::Write)
    -> Result<u64>;
    /// Re-read a pool's directory (after a file was copied in).
    fn refresh_pool(&self, name: &str) -> Result<()>;
}

/// Can /dev/kvm run ordinary guests here? A nested "PVM" KVM (module kvm_pvm) or a CPU without
/// vmx/svm cannot, even though /dev/kvm exists.
pub fn kvm_usable() -> bool {
    let dev = Path::new("/dev/kvm").exists();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| s.contains(" vmx") || s.contains(" svm"))
        .unwrap_or(false);
    let pvm = Path::new("/sys/module/kvm_pvm").exists();
    dev && cpu && !pvm
}

/// Whether a libvirt URI reaches another machine: a transport other than the local socket
/// (`qemu+ssh://`, `qemu+tls://`, `qemu+tcp://`, …) or a host name (`qemu://hv2/system`).
/// Files of this host (the template, a VM's identity) mean nothing there.
pub fn is_remote(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return false;
    };
    let transport = scheme.split_once('+').map(|(_, t)| t);
    let host = rest.split(['/', '?']).next().unwrap_or("");
    matches!(transport, Some(t) if t != "unix") || !host.is_empty()
}

/// Can the cluster's hypervisor run KVM guests? This host's /dev/kvm when libvirt runs here,
/// libvirt's answer for a remote one.
pub fn kvm_on(uri: &str, hv: &dyn Hypervisor) -> bool {
    if is_remote(uri) {
        hv.guest_support("kvm").unwrap_or(false)
    } else {
        kvm_usable()
    }
}

/// (domain type, CPU mode) for this cluster on this host.
pub fn domain_type(cluster: &Cluster, kvm: bool) -> (&'static str, String) {
    let t = match cluster.hypervisor.domain_type {
        DomainTypeChoice::Kvm => "kvm",
        DomainTypeChoice::Qemu => "qemu",
        DomainTypeChoice::Auto if kvm => "kvm",
        DomainTypeChoice::Auto => "qemu",
    };
    let cpu = match &cluster.hypervisor.cpu_mode {
        Some(mode) => mode.clone(),
        None if t == "kvm" => "host-passthrough".into(),
        None => "maximum".into(),
    };
    (t, cpu)
}

/// A stable MAC for a node's NIC: QEMU's 52:54:00 prefix + 3 bytes of sha256(cluster/node/nic).
pub fn mac_address(cluster: &str, node: &str, nic: u8) -> String {
    let h = Sha256::digest(format!("{cluster}/{node}/{nic}").as_bytes());
    format!("52:54:00:{:02x}:{:02x}:{:02x}", h[0], h[1], h[2])
}

/// The bridge device of the NAT network (libvirt's `default` keeps `virbr0`).
pub fn nat_bridge(name: &str) -> String {
    if name == "default" {
        "virbr0".into()
    } else {
        format!("virbr-{}", &name[..name.len().min(9)])
    }
}

#[derive(Serialize)]
struct DomainCtx<'a> {
    name: &'a str,
    cluster: &'a str,
    role: String,
    cluster_ip: Ipv4Addr,
    hypervisor_ip: Ipv4Addr,
    domain_type: &'a str,
    cpu_mode: &'a str,
    vcpus: u32,
    memory_mib: u32,
    /// Hand the VM its identity through fw_cfg (kubicluster templates; legacy ones are re-addressed).
    fwcfg: bool,
    disk: String,
    identity_file: String,
    host_key_file: String,
    /// Recorded in the metadata: a pin replaced later is noticed.
    host_key_fingerprint: Option<String>,
    console_log: String,
    mac_hypervisor: String,
    mac_cluster: String,
    hypervisor_network: &'a str,
    cluster_network: &'a str,
    /// Set in bridged mode: attach to this host bridge instead of a libvirt network.
    cluster_bridge: Option<&'a str>,
    cluster_mtu: Option<u16>,
}

/// Files libvirt hands to a VM, under `<cluster>/vms/<node>/`.
pub struct VmFiles {
    pub identity: PathBuf,
    pub host_key: PathBuf,
    pub console_log: PathBuf,
}

impl VmFiles {
    pub fn for_node(cluster: &Cluster, node: &str) -> Self {
        let d = cluster.vm_dir(node);
        VmFiles {
            identity: d.join("identity"),
            host_key: d.join("ssh_host_ed25519_key"),
            console_log: d.join("console.log"),
        }
    }
}

/// The volumes (in the cluster's pool) that hold what a VM reads through fw_cfg at boot: its
/// identity, then its SSH host key. Volumes, not files of this host, so a remote hypervisor
/// gets them through libvirt like the disks.
pub fn identity_volumes(node: &str) -> [String; 2] {
    [format!("{node}.identity"), format!("{node}.host-key")]
}

/// Where a VM on a remote hypervisor writes its console: a file of the pool's directory there
/// (a VM on this host writes to `<cluster>/vms/<node>/console.log`).
pub fn console_volume(node: &str) -> String {
    format!("{node}.console.log")
}

/// The domain of `node`: its disk, its emulation and the fingerprint of the SSH host key it
/// was given (kept in the domain's metadata, so a VM is known by its identity).
pub fn domain_xml(
    cluster: &Cluster,
    node: &Node,
    disk: &Path,
    domain_type: &str,
    cpu_mode: &str,
    host_key_fingerprint: Option<String>,
) -> String {
    let files = VmFiles::for_node(cluster, &node.name);
    let [identity, host_key] = identity_volumes(&node.name).map(|v| cluster.storage_dir().join(v));
    let bridged = cluster.networks.mode == ClusterNetMode::Bridged;
    render::render(
        "domain.xml.j2",
        &DomainCtx {
            name: &node.name,
            cluster: &cluster.name,
            role: node.role.to_string(),
            cluster_ip: node.cluster_ip,
            hypervisor_ip: node.hypervisor_ip,
            domain_type,
            cpu_mode,
            vcpus: node.vcpus,
            memory_mib: node.memory_mib,
            fwcfg: !cluster.hypervisor.is_legacy(),
            disk: disk.display().to_string(),
            identity_file: identity.display().to_string(),
            host_key_file: host_key.display().to_string(),
            host_key_fingerprint,
            console_log: if is_remote(&cluster.hypervisor.uri) {
                cluster.storage_dir().join(console_volume(&node.name))
            } else {
                files.console_log
            }
            .display()
            .to_string(),
            mac_hypervisor: mac_address(&cluster.name, &node.name, 0),
            mac_cluster: mac_address(&cluster.name, &node.name, 1),
            hypervisor_network: &cluster.networks.hypervisor_name,
            cluster_network: &cluster.networks.cluster_name,
            cluster_bridge: bridged.then_some(cluster.networks.bridge.as_str()),
            cluster_mtu: cluster.networks.mtu,
        },
    )
    .expect("domain template renders")
}

#[derive(Serialize)]
struct NetworkCtx<'a> {
    name: &'a str,
    nat: bool,
    bridge: &'a str,
    address: Ipv4Addr,
    netmask: Ipv4Addr,
}

/// The NAT (hypervisor) network, or the isolated cluster network.
pub fn network_xml(name: &str, nat: bool, bridge: &str, net: ipnet::Ipv4Net) -> String {
    render::render(
        "network.xml.j2",
        &NetworkCtx {
            name,
            nat,
            bridge,
            address: net.hosts().next().expect("validated network has hosts"),
            netmask: net.netmask(),
        },
    )
    .expect("network template renders")
}

pub fn pool_xml(name: &str, path: &Path) -> String {
    #[derive(Serialize)]
    struct Ctx<'a> {
        name: &'a str,
        path: String,
    }
    render::render(
        "pool.xml.j2",
        &Ctx {
            name,
            path: path.display().to_string(),
        },
    )
    .expect("pool template renders")
}

/// A plain file volume of exactly `len` bytes, readable by its owner only (what a VM is
/// handed through fw_cfg: its identity, its SSH host key; the template before libvirt probes it).
pub fn file_volume_xml(name: &str, len: u64, mode: u32) -> String {
    #[derive(Serialize)]
    struct Ctx<'a> {
        name: &'a str,
        len: u64,
        mode: String,
    }
    render::render(
        "file-volume.xml.j2",
        &Ctx {
            name,
            len,
            mode: format!("{mode:04o}"),
        },
    )
    .expect("file volume template renders")
}

pub fn overlay_volume_xml(name: &str, capacity: u64, backing: &Path) -> String {
    #[derive(Serialize)]
    struct Ctx<'a> {
        name: &'a str,
        capacity: u64,
        backing: String,
    }
    render::render(
        "volume.xml.j2",
        &Ctx {
            name,
            capacity,
            backing: backing.display().to_string(),
        },
    )
    .expect("volume template renders")
}

#[cfg(test)]
mod tests;
