//! What the VMs stand on: the libvirt networks, the storage pool, the client SSH key and the
//! template volume, each made through the gate only when missing.

use super::*;

/// Networks, storage pool and the client SSH key, each made or started through `gate` when
/// it is missing or stopped. Something in the way (a network with another address, a pool
/// elsewhere, no bridge) is an error before anything is made.
pub fn ensure_infra(cluster: &Cluster, hv: &dyn Hypervisor, gate: &mut Gate) -> Result<()> {
    guests_can_run(cluster, hv)?;
    let remote = hypervisor::is_remote(&cluster.hypervisor.uri);
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
        // A remote host's bridges are not visible here (nor has libvirt's test driver any):
        // libvirt names a missing one when the first VM starts.
        ClusterNetMode::Bridged if remote || !cluster.hypervisor.uri.starts_with("qemu") => {}
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
                gate.wet(
                    Change::CreateNetwork {
                        name: name.clone(),
                        cidr: cidr.to_string(),
                    },
                    || hv.create_network(&hypervisor::network_xml(&name, nat, &bridge, cidr)),
                )?;
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
                    gate.wet(Change::StartNetwork { name: name.clone() }, || {
                        hv.start_network(&name)
                    })?;
                }
            }
        }
    }
    let pool = &cluster.hypervisor.storage_pool;
    let dir = cluster.storage_dir();
    match hv.pool(pool)? {
        None => {
            gate.wet(
                Change::CreatePool {
                    name: pool.to_string(),
                    path: dir.display().to_string(),
                },
                || {
                    if !remote {
                        // libvirt's build would make it too, with its own mode.
                        fsutil::ensure_dir(dir, 0o711)?;
                    }
                    hv.create_pool(&hypervisor::pool_xml(pool, dir))
                },
            )?;
        }
        Some(p) if p.path != dir => {
            return Err(Failure::new(format!("storage pool {pool} exists at {}, the spec wants {}", p.path.display(), dir.display()))
                .hint("set hypervisor.storageDir to the pool's directory or pick another storagePool name")
                .into());
        }
        Some(p) if !p.active => {
            gate.wet(
                Change::StartPool {
                    name: pool.to_string(),
                },
                || hv.start_pool(pool),
            )?;
        }
        Some(_) => {}
    }
    if !cluster.ssh_key.exists() {
        gate.wet(
            Change::CreateSshKey {
                path: cluster.ssh_key.display().to_string(),
            },
            || {
                sshkeys::ensure_key(&cluster.ssh_key, &format!("kubicluster@{}", cluster.name))
                    .map(|_| ())
            },
        )?;
    }
    Ok(())
}

/// The template image, as a volume of the pool (copied in once through `gate`, named by its
/// content hash). `None` on a dry run that would copy it.
pub fn template_volume(
    cluster: &Cluster,
    hv: &dyn Hypervisor,
    gate: &mut Gate,
) -> Result<Option<VolumeInfo>> {
    let image = cluster.image_path();
    if gate.dry_run() && !image.exists() {
        // build_image, before this step, builds it there.
        return Ok(None);
    }
    let mut f = std::fs::File::open(image).map_err(|e| {
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
    let mut f = std::fs::File::open(image)?;
    let len = std::io::copy(&mut f, &mut hasher)?;
    let digest = hasher.finalize();
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    let name = format!("kubicluster-template-{hex}.qcow2");
    // Written after the template's last byte arrived: a template without it is an upload that
    // was cut off (or one copied in by an earlier version), and its bytes decide.
    let done = format!("kubicluster-template-{hex}.complete");
    let pool = &cluster.hypervisor.storage_pool;
    let found = hv.volume(pool, &name)?;
    if let Some(v) = &found {
        if hv.volume(pool, &done)?.is_some() {
            return Ok(found);
        }
        let mut sum = Sha256::new();
        hv.download_volume(pool, &name, &mut sum)?;
        if sum.finalize() == digest {
            if !gate.dry_run() {
                mark_complete(hv, pool, &done)?;
            }
            return Ok(Some(v.clone()));
        }
    }
    let copied = gate.wet(
        Change::CopyTemplate {
            volume: name.clone(),
            pool: pool.to_string(),
            from: image.display().to_string(),
        },
        || {
            if found.is_some() {
                // Cut off half-way: no VM stands on it (VMs are made only after the mark).
                hv.delete_volume(pool, &name)?;
            }
            let mut f = std::fs::File::open(image)?;
            hv.upload_volume(
                pool,
                &hypervisor::file_volume_xml(&name, len, 0o644),
                &mut f,
                len,
            )
            .with_context(|| format!("upload {} to {}", image.display(), hv.describe()))?;
            mark_complete(hv, pool, &done)
        },
    )?;
    if !copied {
        return Ok(None);
    }
    hv.volume(pool, &name)?
        .with_context(|| format!("template volume {name} did not appear in pool {pool}"))
        .map(Some)
}

/// The empty volume that says a template arrived whole.
fn mark_complete(hv: &dyn Hypervisor, pool: &str, done: &str) -> Result<()> {
    hv.create_volume(pool, &hypervisor::file_volume_xml(done, 0, 0o644))
        .map(|_| ())
}

/// The guests this cluster's VMs will be (kvm or TCG, x86_64 q35) can run on `hv`: refused
/// before any network or VM is made, with libvirt's reason.
fn guests_can_run(cluster: &Cluster, hv: &dyn Hypervisor) -> Result<()> {
    let kvm = hypervisor::kvm_on(&cluster.hypervisor.uri, hv);
    let (virttype, _) = hypervisor::domain_type(cluster, kvm);
    if virttype == "kvm" && crate::image::built_for_emulation(cluster.image_path()) {
        return Err(Failure::bad_input(format!(
            "template image {} was built for emulated guests: its kernel runs with {}, which a KVM guest must not",
            cluster.image_path().display(),
            crate::image::EMULATED_KERNEL_ARGS
        ))
        .hint("rebuild it on this host with `kubicluster image build --force`")
        .into());
    }
    hv.guest_support(virttype).map(|_| ()).map_err(|e| {
        Failure::new(format!(
            "libvirt at {} cannot run {virttype} guests (x86_64, q35): {e:#}",
            hv.describe()
        ))
        .hint(if virttype == "kvm" {
            "use spec.hypervisor.domainType: qemu (emulated, slow) or auto, or make /dev/kvm usable"
        } else {
            "install QEMU for x86_64 on the hypervisor (`kubicluster prepare` does)"
        })
        .into()
    })
}
