//! libvirt through the `virt` crate: the only module that imports it. Calls are blocking; the
//! connection is shared by threads (libvirt connections are thread-safe).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use virt::connect::Connect;
use virt::domain::{Domain, DomainState};
use virt::error::ErrorNumber;

use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::stream::Stream;

use super::{DomainInfo, Hypervisor, NetworkInfo, PoolInfo, VmState, VolumeInfo};

pub struct Libvirt {
    conn: Connect,
    uri: String,
}

fn not_found(e: &virt::error::Error) -> bool {
    matches!(
        e.code(),
        virt::enumutil::Enum::Known(
            ErrorNumber::NoDomain
                | ErrorNumber::NoNetwork
                | ErrorNumber::NoStoragePool
                | ErrorNumber::NoStorageVolume
        )
    )
}

/// `Ok(None)` for libvirt's "no such object", the error otherwise.
fn optional<T>(r: Result<T, virt::error::Error>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(anyhow!("{}", e.message())),
    }
}

fn lv<T>(r: Result<T, virt::error::Error>) -> Result<T> {
    r.map_err(|e| anyhow!("{}", e.message()))
}

impl Libvirt {
    /// Connect to `uri` (e.g. `qemu:///system`, `test:///default`).
    pub fn connect(uri: &str) -> Result<Self> {
        // Errors are returned to us; keep libvirt from also printing them.
        virt::error::clear_error_callback();
        let conn = Connect::open(Some(uri)).map_err(|e| anyhow!("{}", e.message()))?;
        Ok(Libvirt {
            conn,
            uri: uri.to_string(),
        })
    }

    fn info(&self, d: &Domain) -> Result<DomainInfo> {
        let (state, reason) = lv(d.state())?;
        let state = match state {
            virt::enumutil::Enum::Known(DomainState::Running) => VmState::Running,
            virt::enumutil::Enum::Known(DomainState::Shutoff) => VmState::Off,
            virt::enumutil::Enum::Known(DomainState::Paused) => VmState::Paused(match reason {
                virt::enumutil::Enum::Known(virt::domain::DomainStateReason::Paused(
                    virt::enumutil::Enum::Known(virt::domain::DomainPausedReason::IOError),
                )) => super::PAUSED_IO_ERROR.to_string(),
                other => other.to_string(),
            }),
            other => VmState::Other(other.to_string()),
        };
        Ok(DomainInfo {
            name: lv(d.name())?,
            state,
            xml: lv(d.xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE))?,
            autostart: lv(d.autostart())?,
        })
    }

    fn volume_info(v: &StorageVol) -> Result<VolumeInfo> {
        let info = lv(v.info())?;
        Ok(VolumeInfo {
            name: lv(v.name())?,
            path: PathBuf::from(lv(v.path())?),
            capacity: info.capacity,
            allocation: info.allocation,
            backing: super::backing_path(&lv(v.xml_desc(0))?)?,
        })
    }

    fn pool_obj(&self, name: &str) -> Result<StoragePool> {
        lv(self.conn.lookup_storage_pool_by_name(name))
            .with_context(|| format!("storage pool {name}"))
    }
}

impl Hypervisor for Libvirt {
    fn describe(&self) -> String {
        self.uri.clone()
    }

    fn guest_support(&self, virttype: &str) -> Result<bool> {
        match self
            .conn
            .domain_capabilities(None, Some("x86_64"), Some("q35"), Some(virttype), 0)
        {
            Ok(_) => Ok(true),
            Err(e) if e.code() == virt::enumutil::Enum::Known(ErrorNumber::NoSupport) => Ok(false),
            Err(e) => Err(anyhow!("{}", e.message())),
        }
    }

    fn memory_mib(&self) -> Result<Option<u64>> {
        match self.conn.node_info() {
            Ok(info) => Ok(Some(info.memory >> 10)),
            Err(e) if e.code() == virt::enumutil::Enum::Known(ErrorNumber::NoSupport) => Ok(None),
            Err(e) => Err(anyhow!("{}", e.message())),
        }
    }

    fn domains(&self) -> Result<Vec<DomainInfo>> {
        lv(self.conn.list_all_domains(0))?
            .iter()
            .map(|d| self.info(d))
            .collect()
    }

    fn domain(&self, name: &str) -> Result<Option<DomainInfo>> {
        match optional(self.conn.lookup_domain_by_name(name))? {
            Some(d) => Ok(Some(self.info(&d)?)),
            None => Ok(None),
        }
    }

    fn define_domain(&self, xml: &str) -> Result<()> {
        lv(self.conn.define_domain_xml(xml)).map(|_| ())
    }

    fn start_domain(&self, name: &str) -> Result<()> {
        let d = lv(self.conn.lookup_domain_by_name(name))?;
        lv(d.create()).map(|_| ())
    }

    fn resume_domain(&self, name: &str) -> Result<()> {
        let d = lv(self.conn.lookup_domain_by_name(name))?;
        lv(d.resume()).map(|_| ())
    }

    fn suspend_domain(&self, name: &str) -> Result<()> {
        let d = lv(self.conn.lookup_domain_by_name(name))?;
        lv(d.suspend()).map(|_| ())
    }

    fn snapshot_disk(&self, name: &str, new_top: &Path) -> Result<()> {
        let d = lv(self.conn.lookup_domain_by_name(name))?;
        let file = super::xml_path(new_top)?;
        let xml = format!(
            "<domainsnapshot><disks><disk name='vda' snapshot='external'><driver type='qcow2'/><source file='{file}'/></disk></disks></domainsnapshot>"
        );
        let flags = virt::sys::VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
            | virt::sys::VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA
            | virt::sys::VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC;
        lv(d.create_snapshot_xml(&xml, flags)).map(|_| ())
    }

    fn stop_domain(&self, name: &str) -> Result<()> {
        let d = lv(self.conn.lookup_domain_by_name(name))?;
        if lv(d.is_active())? {
            lv(d.destroy())?;
        }
        Ok(())
    }

    fn shutdown_domain(&self, name: &str) -> Result<()> {
        let d = lv(self.conn.lookup_domain_by_name(name))?;
        if lv(d.is_active())? {
            lv(d.shutdown())?;
        }
        Ok(())
    }

    fn set_autostart(&self, name: &str, on: bool) -> Result<()> {
        let d = lv(self.conn.lookup_domain_by_name(name))?;
        lv(d.set_autostart(on))
    }

    fn undefine_domain(&self, name: &str) -> Result<()> {
        let d = lv(self.conn.lookup_domain_by_name(name))?;
        lv(d.undefine())
    }

    fn network(&self, name: &str) -> Result<Option<NetworkInfo>> {
        match optional(self.conn.lookup_network_by_name(name))? {
            Some(n) => Ok(Some(NetworkInfo {
                name: name.to_string(),
                active: lv(n.is_active())?,
                xml: lv(n.xml_desc(0))?,
            })),
            None => Ok(None),
        }
    }

    fn create_network(&self, xml: &str) -> Result<()> {
        let n = lv(self.conn.define_network_xml(xml))?;
        lv(n.set_autostart(true))?;
        lv(n.create()).map(|_| ())
    }

    fn start_network(&self, name: &str) -> Result<()> {
        let n = lv(self.conn.lookup_network_by_name(name))?;
        lv(n.create()).map(|_| ())
    }

    fn remove_network(&self, name: &str) -> Result<()> {
        let n = lv(self.conn.lookup_network_by_name(name))?;
        if lv(n.is_active())? {
            lv(n.destroy())?;
        }
        lv(n.undefine())
    }

    fn pool(&self, name: &str) -> Result<Option<PoolInfo>> {
        match optional(self.conn.lookup_storage_pool_by_name(name))? {
            Some(p) => {
                let xml = lv(p.xml_desc(0))?;
                let doc = roxmltree::Document::parse(&xml)?;
                let path = doc
                    .descendants()
                    .find(|n| n.has_tag_name("path"))
                    .and_then(|n| n.text())
                    .unwrap_or_default();
                Ok(Some(PoolInfo {
                    name: name.to_string(),
                    active: lv(p.is_active())?,
                    path: PathBuf::from(path),
                }))
            }
            None => Ok(None),
        }
    }

    fn create_pool(&self, xml: &str) -> Result<()> {
        let p = lv(self.conn.define_storage_pool_xml(xml, 0))?;
        lv(p.build(0))?;
        lv(p.set_autostart(true))?;
        lv(p.create(0)).map(|_| ())
    }

    fn start_pool(&self, name: &str) -> Result<()> {
        lv(self.pool_obj(name)?.create(0)).map(|_| ())
    }

    fn volume(&self, pool: &str, name: &str) -> Result<Option<VolumeInfo>> {
        let p = self.pool_obj(pool)?;
        match optional(p.lookup_storage_vol_by_name(name))? {
            Some(v) => Ok(Some(Self::volume_info(&v)?)),
            None => Ok(None),
        }
    }

    fn volumes(&self, pool: &str) -> Result<Vec<VolumeInfo>> {
        lv(self.pool_obj(pool)?.list_all_volumes(0))?
            .iter()
            .map(Self::volume_info)
            .collect()
    }

    fn create_volume(&self, pool: &str, xml: &str) -> Result<VolumeInfo> {
        let p = self.pool_obj(pool)?;
        let v = lv(StorageVol::create_xml(&p, xml, 0))?;
        Self::volume_info(&v)
    }

    fn delete_volume(&self, pool: &str, name: &str) -> Result<()> {
        let p = self.pool_obj(pool)?;
        let v = lv(p.lookup_storage_vol_by_name(name))?;
        lv(v.delete(0))
    }

    fn refresh_pool(&self, name: &str) -> Result<()> {
        lv(self.pool_obj(name)?.refresh(0))
    }

    fn upload_volume(
        &self,
        pool: &str,
        xml: &str,
        data: &mut dyn std::io::Read,
        len: u64,
    ) -> Result<VolumeInfo> {
        let p = self.pool_obj(pool)?;
        let v = lv(StorageVol::create_xml(&p, xml, 0))?;
        let sent = lv(Stream::new(&self.conn, 0)).and_then(|stream| {
            lv(v.upload(&stream, 0, len, 0))?;
            match send_all(&stream, data, len) {
                Ok(()) => lv(stream.finish()),
                Err(e) => {
                    let _ = stream.abort();
                    Err(e)
                }
            }
        });
        if let Err(e) = sent {
            let _ = v.delete(0);
            let name = super::xml_name(xml).unwrap_or_default();
            return Err(e.context(format!("upload into volume {pool}/{name}")));
        }
        lv(p.refresh(0))?;
        let v = lv(p.lookup_storage_vol_by_name(&lv(v.name())?))?;
        Self::volume_info(&v)
    }

    fn download_volume(
        &self,
        pool: &str,
        name: &str,
        sink: &mut dyn std::io::Write,
    ) -> Result<u64> {
        let v = lv(self.pool_obj(pool)?.lookup_storage_vol_by_name(name))?;
        let stream = lv(Stream::new(&self.conn, 0))?;
        lv(v.download(&stream, 0, 0, 0))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            match stream.recv(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let n = usize::try_from(n).unwrap_or(0);
                    if let Err(e) = sink.write_all(&buf[..n]) {
                        let _ = stream.abort();
                        return Err(e.into());
                    }
                    total += n as u64;
                }
                Err(e) => {
                    let _ = stream.abort();
                    return Err(anyhow!("download volume {pool}/{name}: {}", e.message()));
                }
            }
        }
        lv(stream.finish())?;
        Ok(total)
    }
}

/// `len` bytes of `data` into a libvirt stream (each chunk until libvirt took all of it).
fn send_all(stream: &Stream, data: &mut dyn std::io::Read, len: u64) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let got = data.read(&mut buf[..want])?;
        anyhow::ensure!(got > 0, "the data ended {left} bytes early");
        let mut chunk = &buf[..got];
        while !chunk.is_empty() {
            let n = lv(stream.send(chunk))?;
            chunk = &chunk[usize::try_from(n).unwrap_or(0).min(chunk.len())..];
        }
        left -= got as u64;
    }
    Ok(())
}
