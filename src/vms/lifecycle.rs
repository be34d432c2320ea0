//! Making and removing VMs: overlay disks, domains, the identity a VM reads at boot, the
//! original's re-addressing of a hand-made template, and destroying.

use super::*;

pub(crate) fn identity_text(cluster: &Cluster, n: &Node, client: &PublicKey) -> String {
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

pub(crate) fn remove_vm(cluster: &Cluster, hv: &dyn Hypervisor, name: &str) -> Result<()> {
    if let Some(d) = hv.domain(name)? {
        owned_by_us(cluster, &d)?;
        hv.stop_domain(name)?;
        hv.undefine_domain(name)?;
    }
    let pool = &cluster.hypervisor.storage_pool;
    if hv.pool(pool)?.is_some() {
        // Its disk, every layer of its snapshots, what it read at boot, its console log (a
        // file qemu wrote there: the pool knows it once refreshed).
        hv.refresh_pool(pool)?;
        let mut files = hypervisor::identity_volumes(name).to_vec();
        files.push(hypervisor::console_volume(name));
        for v in hv.volumes(pool)? {
            if snapshot::is_layer_of(name, &v.name) || files.contains(&v.name) {
                hv.delete_volume(pool, &v.name)?;
            }
        }
    }
    Ok(())
}

pub(crate) fn create_vm(
    cluster: &Cluster,
    hv: &dyn Hypervisor,
    n: &Node,
    template: &VolumeInfo,
    kvm: bool,
) -> Result<()> {
    let client = sshkeys::ensure_key(&cluster.ssh_key, &format!("kubicluster@{}", cluster.name))?;
    let files = VmFiles::for_node(cluster, &n.name);
    fsutil::ensure_dir(&cluster.vm_dir(&n.name), fsutil::PRIVATE_DIR)?;
    if cluster.hypervisor.is_legacy() {
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
    if !cluster.hypervisor.is_legacy() {
        let [identity, host_key] = hypervisor::identity_volumes(&n.name);
        for (volume, file) in [(identity, &files.identity), (host_key, &files.host_key)] {
            let bytes = std::fs::read(file).with_context(|| format!("read {}", file.display()))?;
            if hv.volume(pool, &volume)?.is_some() {
                hv.delete_volume(pool, &volume)?;
            }
            let len = bytes.len() as u64;
            hv.upload_volume(
                pool,
                &hypervisor::file_volume_xml(&volume, len, 0o600),
                &mut bytes.as_slice(),
                len,
            )?;
        }
    }
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
    let fingerprint = super::pins::pinned(cluster, &n.name)?
        .map(|k| k.fingerprint(Default::default()).to_string());
    hv.define_domain(&hypervisor::domain_xml(
        cluster,
        n,
        &vol.path,
        dtype,
        &cpu,
        fingerprint,
    ))?;
    if cluster.hypervisor.is_legacy() {
        // Started one at a time by `readdress`: every clone boots with the template's address.
        return Ok(());
    }
    hv.start_domain(&n.name)
}

/// The original's flow for a hand-made template, made safe: boot the clone alone, reach it at the
/// template address with the template's (pinned) host key, give it its name, addresses and a new
/// host key, pin that key, reboot it. Only one clone may hold the template address at a time.
pub(crate) fn readdress(cluster: &Cluster, hv: &dyn Hypervisor, n: &Node) -> Result<()> {
    let h = &cluster.hypervisor;
    let crate::spec::Template::Legacy {
        host_key,
        ip: tip,
        cluster_ip: tcip,
    } = &h.template
    else {
        unreachable!("readdress serves legacy templates only")
    };
    let (tip, tcip) = (*tip, *tcip);
    let template_key = PublicKey::read_openssh_file(host_key).map_err(|e| {
        Failure::bad_input(format!("template host key {}: {e}", host_key.display()))
            .hint("give the template's /etc/ssh/ssh_host_ed25519_key.pub")
    })?;
    let timeout = h.boot_timeout;
    crate::retry::until(Duration::from_secs(60), Duration::from_secs(1), || {
        if answers(tip, cluster.ssh_port) {
            Err(().into())
        } else {
            Ok(())
        }
    })
    .map_err(|()| {
        Failure::new(format!("{tip} (the template address) is still in use"))
            .hint("a VM from an interrupted run may hold it; destroy it, then run again")
    })?;
    hv.start_domain(&n.name)?;
    let reach = || -> Result<SshHost> {
        crate::retry::until(timeout, Duration::from_secs(2), || {
            SshHost::connect_to(
                &n.name,
                SocketAddr::new(tip.into(), cluster.ssh_port),
                &cluster.ssh_user,
                &cluster.ssh_key,
                &template_key,
                Duration::from_secs(5),
            )
            .map_err(|e| match e {
                HostError::HostKeyMismatch { .. } => crate::retry::NotYet::Stop(e),
                e => crate::retry::NotYet::Again(e),
            })
        })
        .map_err(|e| {
            anyhow::Error::new(e).context(format!(
                "{}: reach the clone at the template address {tip}",
                n.name
            ))
        })
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

/// Apply a plan, each VM's action through `gate`: create, recreate, start or resume (all
/// before waiting for any). Drift is left alone. Returns the VMs started (none on a dry run).
pub fn apply(
    cluster: &Cluster,
    hv: &dyn Hypervisor,
    plan: &[Planned],
    kvm: bool,
    gate: &mut Gate,
) -> Result<Vec<String>> {
    let mut started = Vec::new();
    let needs_template = plan
        .iter()
        .any(|p| matches!(p.action, Action::Create | Action::Recreate(_)));
    let template = if needs_template {
        template_volume(cluster, hv, gate)?
    } else {
        None
    };
    let template = template.as_ref();
    for p in plan {
        let n = cluster.node(&p.node).expect("planned from the cluster");
        if matches!(p.action, Action::Keep | Action::Drift(_)) {
            continue;
        }
        let done = gate.wet(
            vm_change(&n.name, p.action.op().expect("a change")),
            || -> Result<()> {
                match &p.action {
                    Action::Create => {
                        forget_verified(cluster, &n.name);
                        create_vm(cluster, hv, n, template.expect("copied first"), kvm)
                    }
                    Action::Recreate(_) => {
                        forget_verified(cluster, &n.name);
                        remove_vm(cluster, hv, &n.name)?;
                        create_vm(cluster, hv, n, template.expect("copied first"), kvm)
                    }
                    Action::Start | Action::StartDrifted(_) => {
                        forget_verified(cluster, &n.name);
                        hv.start_domain(&n.name)
                    }
                    Action::Verify => Ok(()),
                    Action::Resume(why) => {
                        forget_verified(cluster, &n.name);
                        if why == hypervisor::PAUSED_IO_ERROR {
                            disk_space_or_explain(cluster, &n.name)?;
                        }
                        hv.resume_domain(&n.name)
                    }
                    Action::Keep | Action::Drift(_) => unreachable!("skipped above"),
                }
            },
        )?;
        if done {
            started.push(n.name.clone());
        }
    }
    if cluster.hypervisor.is_legacy() && !gate.dry_run() {
        // Part of creating these VMs (their changes were listed above): one at a time.
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

/// Each VM's autostart as the spec says (`hypervisor.autostart`): libvirt starts the cluster's
/// VMs with its daemon, so the cluster comes back after the host reboots.
pub fn converge_autostart(cluster: &Cluster, hv: &dyn Hypervisor, gate: &mut Gate) -> Result<()> {
    let want = cluster.hypervisor.autostart;
    for n in &cluster.nodes {
        let Some(d) = hv.domain(&n.name)? else {
            continue;
        };
        if d.autostart != want {
            gate.wet(vm_change(&n.name, VmOp::Autostart { on: want }), || {
                hv.set_autostart(&n.name, want)
            })?;
        }
    }
    Ok(())
}

/// A removal that found nothing (another hypervisor's thread of the same `destroy` was first).
fn gone(r: std::io::Result<()>) -> Result<()> {
    match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Remove the named VMs (all of the cluster's if empty) and their disks. Foreign domains are refused.
pub fn destroy(
    cluster: &Cluster,
    hv: &dyn Hypervisor,
    only: &[String],
    gate: &mut Gate,
) -> Result<Vec<String>> {
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
    let pool = &cluster.hypervisor.storage_pool;
    let has_pool = hv.pool(pool)?.is_some();
    let mut removed = Vec::new();
    for name in names {
        let existed = hv.domain(&name)?.is_some();
        let disk = has_pool && hv.volume(pool, &volume_name(&name))?.is_some();
        let dir = cluster.vm_dir(&name);
        let what = match (existed, disk) {
            (true, _) => "the VM, its disk and its files (host key, identity)",
            (false, true) => "its disk and files (no VM defined)",
            (false, false) if dir.exists() => "its files (no VM, no disk)",
            (false, false) => continue,
        };
        let op = VmOp::Remove { what: what.into() };
        gate.wet(vm_change(&name, op), || {
            remove_vm(cluster, hv, &name)?;
            if dir.exists() {
                std::fs::remove_dir_all(&dir)?;
            }
            Ok(())
        })?;
        if existed {
            removed.push(name);
        }
    }
    let snaps = crate::snapshots::root(cluster);
    if only.is_empty() && snaps.exists() {
        gate.wet(
            Change::RemovePath {
                path: snaps.display().to_string(),
                what: "the cluster's snapshot records (their disk layers went with the VMs)".into(),
            },
            || gone(std::fs::remove_dir_all(&snaps)),
        )?;
    }
    if only.is_empty() && cluster.known_hosts().exists() {
        let path = cluster.known_hosts();
        gate.wet(
            Change::RemovePath {
                path: path.display().to_string(),
                what: String::new(),
            },
            || {
                gone(std::fs::remove_file(&path))?;
                let _ = std::fs::remove_dir(cluster.cluster_dir().join("vms"));
                Ok(())
            },
        )?;
    }
    Ok(removed)
}
