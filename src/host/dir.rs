//! `DirHost`: a node's file system rooted at a directory of the hypervisor — what `render`
//! applies the engine's plan onto, so a render is the same code as a real run. Directories and
//! files get exactly the modes a node gets (`mkdir -p -m`, `chmod` and writes are done under the
//! root); every other command (guarded commands, `systemctl`) is not run but kept, in order, for
//! the render to write down. The probe sees a fresh node: no guard holds, no unit is enabled or
//! active, only what this host wrote exists. Owners are recorded, not set (`chown` needs root
//! and the node's users).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{Cmd, Host, HostError, HostResult, Output, Probe, Stat, sha256_hex};
use crate::fsutil;

pub struct DirHost {
    name: String,
    root: PathBuf,
    /// Commands the apply asked for, in order (not run).
    commands: Mutex<Vec<Cmd>>,
    /// The owner each written file would have on the node.
    owners: Mutex<BTreeMap<String, String>>,
}

impl DirHost {
    pub fn new(name: impl Into<String>, root: impl Into<PathBuf>) -> Self {
        DirHost {
            name: name.into(),
            root: root.into(),
            commands: Mutex::new(Vec::new()),
            owners: Mutex::new(BTreeMap::new()),
        }
    }

    /// The commands asked for since the last call.
    pub fn take_commands(&self) -> Vec<Cmd> {
        std::mem::take(&mut *self.commands.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// `path` (absolute on the node) under the root.
    pub fn under(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    fn io(&self, what: String, e: impl std::fmt::Display) -> HostError {
        HostError::Io {
            node: self.name.clone(),
            what,
            reason: e.to_string(),
        }
    }

    fn chmod(&self, path: &Path, mode: &str) -> HostResult<()> {
        let m = u32::from_str_radix(mode, 8).map_err(|e| self.io(format!("mode {mode}"), e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(m))
            .map_err(|e| self.io(format!("chmod {}", path.display()), e))
    }
}

fn ok() -> Output {
    Output {
        status: 0,
        stdout: Vec::new(),
        stderr: Vec::new(),
    }
}

impl Host for DirHost {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(&self, cmd: &Cmd) -> HostResult<Output> {
        match cmd.values().as_slice() {
            ["mkdir", "-p", "-m", mode, path] => {
                let p = self.under(path);
                std::fs::create_dir_all(&p)
                    .map_err(|e| self.io(format!("create {}", p.display()), e))?;
                self.chmod(&p, mode)?;
            }
            ["chmod", mode, path] => self.chmod(&self.under(path), mode)?,
            _ => self
                .commands
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(cmd.clone()),
        }
        Ok(ok())
    }

    fn read_file(&self, path: &str) -> HostResult<Option<Vec<u8>>> {
        fsutil::read_optional(&self.under(path)).map_err(|e| self.io(format!("read {path}"), e))
    }

    fn write_file(&self, path: &str, data: &[u8], mode: u32, owner: &str) -> HostResult<()> {
        let p = self.under(path);
        if let Some(d) = p.parent() {
            // Directories a node already has (/etc, /usr/local/bin): created as any would be.
            std::fs::create_dir_all(d)
                .map_err(|e| self.io(format!("create {}", d.display()), e))?;
        }
        fsutil::write_atomic(&p, data, mode).map_err(|e| self.io(format!("write {path}"), e))?;
        self.owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path.to_string(), owner.to_string());
        Ok(())
    }

    fn stat_many(&self, paths: &[String]) -> HostResult<Vec<Stat>> {
        let owners = self
            .owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        paths
            .iter()
            .map(|path| {
                let p = self.under(path);
                let Ok(md) = std::fs::symlink_metadata(&p) else {
                    return Ok(Stat::Missing);
                };
                let mode = md.permissions().mode() & 0o7777;
                let owner = owners.get(path).cloned().unwrap_or_else(|| "root".into());
                Ok(if md.is_dir() {
                    Stat::Dir { mode, owner }
                } else if md.is_file() {
                    let data = std::fs::read(&p).map_err(|e| self.io(format!("read {path}"), e))?;
                    Stat::File {
                        mode,
                        owner,
                        sha256: sha256_hex(&data),
                    }
                } else {
                    Stat::Other
                })
            })
            .collect()
    }

    /// A fresh node: no guard holds, no unit is known.
    fn probe(&self, checks: &[Cmd], _units: &[String], paths: &[String]) -> HostResult<Probe> {
        Ok(Probe {
            checks: vec![false; checks.len()],
            units: Vec::new(),
            stats: self.stat_many(paths)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirs_and_files_get_the_node_modes_and_commands_are_kept_not_run() {
        let tmp = tempfile::tempdir().unwrap();
        let h = DirHost::new("n1", tmp.path());
        h.check(&Cmd::new(["mkdir", "-p", "-m", "0700", "/var/lib/x"]))
            .unwrap();
        h.write_file("/var/lib/x/key.pem", b"k", 0o600, "etcd")
            .unwrap();
        let stats = h
            .stat_many(&[
                "/var/lib/x".into(),
                "/var/lib/x/key.pem".into(),
                "/nope".into(),
            ])
            .unwrap();
        assert_eq!(
            stats[0],
            Stat::Dir {
                mode: 0o700,
                owner: "root".into()
            }
        );
        assert!(matches!(&stats[1], Stat::File { mode: 0o600, owner, .. } if owner == "etcd"));
        assert_eq!(stats[2], Stat::Missing);
        let marker = tmp.path().join("ran");
        h.check(&Cmd::script("touch \"$1\"", [marker.display().to_string()]))
            .unwrap();
        assert!(!marker.exists(), "commands are not run");
        assert_eq!(h.take_commands().len(), 1);
        let p = h
            .probe(&[Cmd::new(["true"])], &["kubelet".into()], &[])
            .unwrap();
        assert_eq!(p.checks, vec![false]);
    }
}
