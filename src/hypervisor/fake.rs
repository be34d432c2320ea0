//! An in-memory hypervisor that records every mutating call, for planning and idempotency tests.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Result, anyhow, bail};

use super::{DomainInfo, Hypervisor, NetworkInfo, PoolInfo, VmState, VolumeInfo, xml_name};

#[derive(Default)]
struct State {
    domains: BTreeMap<String, DomainInfo>,
    networks: BTreeMap<String, NetworkInfo>,
    pools: BTreeMap<String, PoolInfo>,
    volumes: BTreeMap<(String, String), VolumeInfo>,
    calls: Vec<String>,
    /// Domains whose guest ignores the ACPI power button.
    deaf: std::collections::BTreeSet<String>,
    /// Guest types (`kvm`, `qemu`) this hypervisor cannot run.
    unable: std::collections::BTreeSet<String>,
    /// The host's memory `memory_mib` reports (None: cannot tell).
    memory_mib: Option<u64>,
}

#[derive(Default)]
pub struct FakeHypervisor {
    state: Mutex<State>,
}

impl FakeHypervisor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Report `mib` of memory in the host.
    pub fn set_memory_mib(&self, mib: u64) {
        self.state.lock().unwrap().memory_mib = Some(mib);
    }

    /// Every mutating call so far, e.g. `define_domain kubi-worker-01`.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Pause a domain as libvirt would, with `reason`.
    pub fn pause(&self, name: &str, reason: &str) {
        if let Some(d) = self.state.lock().unwrap().domains.get_mut(name) {
            d.state = VmState::Paused(reason.to_string());
        }
    }

    /// Make a domain's guest ignore `shutdown_domain` (a hung guest).
    pub fn ignore_acpi(&self, name: &str) {
        self.state.lock().unwrap().deaf.insert(name.to_string());
    }

    /// Make guests of `virttype` unsupported (a host whose libvirt has no such emulator).
    pub fn cannot_run(&self, virttype: &str) {
        self.state
            .lock()
            .unwrap()
            .unable
            .insert(virttype.to_string());
    }

    pub fn clear_calls(&self) {
        self.state.lock().unwrap().calls.clear();
    }

    fn record(&self, s: String) {
        self.state.lock().unwrap().calls.push(s);
    }
}

impl Hypervisor for FakeHypervisor {
    fn describe(&self) -> String {
        "fake://".into()
    }

    fn guest_support(&self, virttype: &str) -> Result<bool> {
        if self.state.lock().unwrap().unable.contains(virttype) {
            bail!(
                "invalid argument: KVM is not supported by '/usr/bin/qemu-system-x86_64' on this host"
            );
        }
        Ok(true)
    }

    fn memory_mib(&self) -> Result<Option<u64>> {
        Ok(self.state.lock().unwrap().memory_mib)
    }

    fn domains(&self) -> Result<Vec<DomainInfo>> {
        Ok(self
            .state
            .lock()
            .unwrap()
            .domains
            .values()
            .cloned()
            .collect())
    }

    fn domain(&self, name: &str) -> Result<Option<DomainInfo>> {
        Ok(self.state.lock().unwrap().domains.get(name).cloned())
    }

    fn define_domain(&self, xml: &str) -> Result<()> {
        let name = xml_name(xml)?;
        self.record(format!("define_domain {name}"));
        let mut s = self.state.lock().unwrap();
        let state = s
            .domains
            .get(&name)
            .map(|d| d.state.clone())
            .unwrap_or(VmState::Off);
        let autostart = s.domains.get(&name).is_some_and(|d| d.autostart);
        s.domains.insert(
            name.clone(),
            DomainInfo {
                name,
                state,
                xml: xml.to_string(),
                autostart,
            },
        );
        Ok(())
    }

    fn start_domain(&self, name: &str) -> Result<()> {
        self.record(format!("start_domain {name}"));
        let mut s = self.state.lock().unwrap();
        let d = s
            .domains
            .get_mut(name)
            .ok_or_else(|| anyhow!("no domain {name}"))?;
        if d.state != VmState::Off {
            bail!("Requested operation is not valid: domain is already running");
        }
        d.state = VmState::Running;
        Ok(())
    }

    fn resume_domain(&self, name: &str) -> Result<()> {
        self.record(format!("resume_domain {name}"));
        let mut s = self.state.lock().unwrap();
        let d = s
            .domains
            .get_mut(name)
            .ok_or_else(|| anyhow!("no domain {name}"))?;
        if !matches!(d.state, VmState::Paused(_)) {
            bail!("domain {name} is not paused");
        }
        d.state = VmState::Running;
        Ok(())
    }

    fn suspend_domain(&self, name: &str) -> Result<()> {
        self.record(format!("suspend_domain {name}"));
        let mut s = self.state.lock().unwrap();
        let d = s
            .domains
            .get_mut(name)
            .ok_or_else(|| anyhow!("no domain {name}"))?;
        if d.state != VmState::Running {
            bail!("domain {name} is not running");
        }
        d.state = VmState::Paused("user".into());
        Ok(())
    }

    /// Like libvirt: the new overlay appears in the pool whose directory holds it, backed by the
    /// old disk, and the domain's disk is the new file.
    fn snapshot_disk(&self, name: &str, new_top: &Path) -> Result<()> {
        self.record(format!("snapshot_disk {name} {}", new_top.display()));
        let mut s = self.state.lock().unwrap();
        let d = s
            .domains
            .get(name)
            .ok_or_else(|| anyhow!("no domain {name}"))?
            .clone();
        let old = d
            .disk_path()
            .ok_or_else(|| anyhow!("domain {name} has no disk"))?;
        let (pool, capacity) = s
            .volumes
            .iter()
            .find(|(_, v)| v.path == old)
            .map(|((p, _), v)| (p.clone(), v.capacity))
            .ok_or_else(|| anyhow!("{}: no such volume", old.display()))?;
        let file = new_top
            .file_name()
            .and_then(|f| f.to_str())
            .ok_or_else(|| anyhow!("{}: no file name", new_top.display()))?
            .to_string();
        if s.volumes.contains_key(&(pool.clone(), file.clone())) {
            bail!("{}: the overlay file exists", new_top.display());
        }
        let xml = d.with_disk(new_top)?;
        s.volumes.insert(
            (pool, file.clone()),
            VolumeInfo {
                name: file,
                path: new_top.to_path_buf(),
                capacity,
                allocation: 0,
                backing: Some(old),
            },
        );
        s.domains.get_mut(name).expect("found above").xml = xml;
        Ok(())
    }

    fn stop_domain(&self, name: &str) -> Result<()> {
        self.record(format!("stop_domain {name}"));
        let mut s = self.state.lock().unwrap();
        s.domains
            .get_mut(name)
            .ok_or_else(|| anyhow!("no domain {name}"))?
            .state = VmState::Off;
        Ok(())
    }

    fn shutdown_domain(&self, name: &str) -> Result<()> {
        self.record(format!("shutdown_domain {name}"));
        let mut s = self.state.lock().unwrap();
        let deaf = s.deaf.contains(name);
        let d = s
            .domains
            .get_mut(name)
            .ok_or_else(|| anyhow!("no domain {name}"))?;
        if !deaf && d.state == VmState::Running {
            d.state = VmState::Off;
        }
        Ok(())
    }

    fn set_autostart(&self, name: &str, on: bool) -> Result<()> {
        self.record(format!("set_autostart {name} {on}"));
        self.state
            .lock()
            .unwrap()
            .domains
            .get_mut(name)
            .ok_or_else(|| anyhow!("no domain {name}"))?
            .autostart = on;
        Ok(())
    }

    fn undefine_domain(&self, name: &str) -> Result<()> {
        self.record(format!("undefine_domain {name}"));
        self.state
            .lock()
            .unwrap()
            .domains
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| anyhow!("no domain {name}"))
    }

    fn network(&self, name: &str) -> Result<Option<NetworkInfo>> {
        Ok(self.state.lock().unwrap().networks.get(name).cloned())
    }

    fn create_network(&self, xml: &str) -> Result<()> {
        let name = xml_name(xml)?;
        self.record(format!("create_network {name}"));
        self.state.lock().unwrap().networks.insert(
            name.clone(),
            NetworkInfo {
                name,
                active: true,
                xml: xml.into(),
            },
        );
        Ok(())
    }

    fn start_network(&self, name: &str) -> Result<()> {
        self.record(format!("start_network {name}"));
        self.state
            .lock()
            .unwrap()
            .networks
            .get_mut(name)
            .ok_or_else(|| anyhow!("no network {name}"))?
            .active = true;
        Ok(())
    }

    fn remove_network(&self, name: &str) -> Result<()> {
        self.record(format!("remove_network {name}"));
        self.state
            .lock()
            .unwrap()
            .networks
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| anyhow!("no network {name}"))
    }

    fn pool(&self, name: &str) -> Result<Option<PoolInfo>> {
        Ok(self.state.lock().unwrap().pools.get(name).cloned())
    }

    fn create_pool(&self, xml: &str) -> Result<()> {
        let name = xml_name(xml)?;
        self.record(format!("create_pool {name}"));
        let doc = roxmltree::Document::parse(xml)?;
        let path = doc
            .descendants()
            .find(|n| n.has_tag_name("path"))
            .and_then(|n| n.text())
            .unwrap_or_default();
        self.state.lock().unwrap().pools.insert(
            name.clone(),
            PoolInfo {
                name,
                active: true,
                path: PathBuf::from(path),
            },
        );
        Ok(())
    }

    fn start_pool(&self, name: &str) -> Result<()> {
        self.record(format!("start_pool {name}"));
        self.state
            .lock()
            .unwrap()
            .pools
            .get_mut(name)
            .ok_or_else(|| anyhow!("no pool {name}"))?
            .active = true;
        Ok(())
    }

    fn volume(&self, pool: &str, name: &str) -> Result<Option<VolumeInfo>> {
        Ok(self
            .state
            .lock()
            .unwrap()
            .volumes
            .get(&(pool.to_string(), name.to_string()))
            .cloned()
            .map(allocated))
    }

    fn volumes(&self, pool: &str) -> Result<Vec<VolumeInfo>> {
        Ok(self
            .state
            .lock()
            .unwrap()
            .volumes
            .iter()
            .filter(|((p, _), _)| p == pool)
            .map(|(_, v)| allocated(v.clone()))
            .collect())
    }

    fn create_volume(&self, pool: &str, xml: &str) -> Result<VolumeInfo> {
        let name = xml_name(xml)?;
        self.record(format!("create_volume {pool}/{name}"));
        let doc = roxmltree::Document::parse(xml)?;
        let capacity = doc
            .descendants()
            .find(|n| n.has_tag_name("capacity"))
            .and_then(|n| n.text())
            .unwrap_or("0")
            .parse()?;
        let backing = super::backing_path(xml)?;
        let mut s = self.state.lock().unwrap();
        let dir = s
            .pools
            .get(pool)
            .ok_or_else(|| anyhow!("no pool {pool}"))?
            .path
            .clone();
        let v = VolumeInfo {
            name: name.clone(),
            path: dir.join(&name),
            capacity,
            allocation: 0,
            backing,
        };
        s.volumes.insert((pool.to_string(), name), v.clone());
        Ok(v)
    }

    fn delete_volume(&self, pool: &str, name: &str) -> Result<()> {
        self.record(format!("delete_volume {pool}/{name}"));
        let v = self
            .state
            .lock()
            .unwrap()
            .volumes
            .remove(&(pool.to_string(), name.to_string()))
            .ok_or_else(|| anyhow!("no volume {name}"))?;
        // Like libvirt's directory pool: the file goes with it.
        match std::fs::remove_file(&v.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Like libvirt's directory pool: the bytes land in a file of the pool's directory.
    fn upload_volume(
        &self,
        pool: &str,
        xml: &str,
        data: &mut dyn std::io::Read,
        len: u64,
    ) -> Result<VolumeInfo> {
        let mut v = self.create_volume(pool, xml)?;
        self.record(format!("upload_volume {pool}/{} {len}", v.name));
        let mut bytes = Vec::new();
        std::io::Read::take(data, len).read_to_end(&mut bytes)?;
        if bytes.len() as u64 != len {
            self.delete_volume(pool, &v.name)?;
            bail!("the data ended {} bytes early", len - bytes.len() as u64);
        }
        std::fs::write(&v.path, &bytes)?;
        v.capacity = len;
        self.state
            .lock()
            .unwrap()
            .volumes
            .insert((pool.to_string(), v.name.clone()), v.clone());
        Ok(v)
    }

    fn download_volume(
        &self,
        pool: &str,
        name: &str,
        sink: &mut dyn std::io::Write,
    ) -> Result<u64> {
        let v = self
            .volume(pool, name)?
            .ok_or_else(|| anyhow!("no volume {name}"))?;
        let bytes = std::fs::read(&v.path)?;
        sink.write_all(&bytes)?;
        Ok(bytes.len() as u64)
    }

    /// Like libvirt: files found in the pool's directory become volumes.
    fn refresh_pool(&self, name: &str) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        let dir = s
            .pools
            .get(name)
            .ok_or_else(|| anyhow!("no pool {name}"))?
            .path
            .clone();
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let file = entry.file_name().to_string_lossy().into_owned();
            if file.starts_with('.') {
                continue;
            }
            let key = (name.to_string(), file.clone());
            let capacity = entry.metadata()?.len();
            s.volumes.entry(key).or_insert(VolumeInfo {
                name: file,
                path: entry.path(),
                capacity,
                allocation: 0,
                backing: None,
            });
        }
        Ok(())
    }
}

/// A volume as libvirt reports it: taking what its file takes on disk (nothing without one).
fn allocated(mut v: VolumeInfo) -> VolumeInfo {
    v.allocation = std::fs::metadata(&v.path).map(|m| m.len()).unwrap_or(0);
    v
}
