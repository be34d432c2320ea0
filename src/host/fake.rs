//! `FakeHost`: an in-memory node for tests and benchmarks. It keeps a file system (files with
//! mode and owner, directories), plays systemd (`systemctl enable/start/restart/reload/is-active/
//! is-enabled/daemon-reload`), answers scripted commands, and logs every call so tests can assert
//! exactly what the engine did. Failures and delays can be injected.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use super::{Cmd, Host, HostError, HostResult, Output, Stat, sha256_hex};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeFile {
    pub data: Vec<u8>,
    pub mode: u32,
    pub owner: String,
}

#[derive(Debug, Default)]
pub struct FakeState {
    pub files: BTreeMap<String, FakeFile>,
    pub dirs: BTreeMap<String, u32>,
    pub enabled: BTreeSet<String>,
    pub active: BTreeSet<String>,
    /// Every call, in order: `run <cmd>`, `write <path>`, `read <path>`, `stat <n> paths`.
    pub log: Vec<String>,
    /// Scripted answers: the first entry whose key the command line starts with.
    pub answers: Vec<(String, Output)>,
    /// A command line starting with this fails with status 1.
    pub fail_on: Option<String>,
    /// Every call sleeps this long first (fan-out benchmarks).
    pub delay: Duration,
    /// Calls fail as if the node were unreachable.
    pub unreachable: bool,
}

pub struct FakeHost {
    name: String,
    pub state: Mutex<FakeState>,
}

impl FakeHost {
    pub fn new(name: impl Into<String>) -> Self {
        FakeHost {
            name: name.into(),
            state: Mutex::new(FakeState::default()),
        }
    }

    pub fn with(self, f: impl FnOnce(&mut FakeState)) -> Self {
        f(&mut self.state.lock().unwrap());
        self
    }

    /// The call log since the last `take_log`.
    pub fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut self.state.lock().unwrap().log)
    }

    pub fn file(&self, path: &str) -> Option<FakeFile> {
        self.state.lock().unwrap().files.get(path).cloned()
    }

    pub fn is_active(&self, unit: &str) -> bool {
        self.state.lock().unwrap().active.contains(unit)
    }

    fn enter(&self, entry: String) -> HostResult<std::sync::MutexGuard<'_, FakeState>> {
        let delay = self.state.lock().unwrap().delay;
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let mut s = self.state.lock().unwrap();
        if s.unreachable {
            return Err(HostError::Unreachable {
                node: self.name.clone(),
                addr: "fake".into(),
                reason: "injected".into(),
            });
        }
        s.log.push(entry);
        Ok(s)
    }
}

fn out(status: i32, stdout: &str) -> Output {
    Output {
        status,
        stdout: stdout.as_bytes().to_vec(),
        stderr: Vec::new(),
    }
}

fn parent_exists(s: &FakeState, path: &str) -> bool {
    match path.rfind('/') {
        Some(0) => true,
        Some(i) => s.dirs.contains_key(&path[..i]),
        None => false,
    }
}

impl Host for FakeHost {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(&self, cmd: &Cmd) -> HostResult<Output> {
        let line = cmd.shell_line();
        let mut s = self.enter(format!("run {cmd}"))?;
        if s.fail_on
            .as_ref()
            .is_some_and(|f| line.starts_with(f.as_str()))
        {
            return Ok(Output {
                status: 1,
                stdout: Vec::new(),
                stderr: b"injected failure".to_vec(),
            });
        }
        if let Some((_, o)) = s.answers.iter().find(|(k, _)| line.starts_with(k.as_str())) {
            return Ok(o.clone());
        }
        let argv = cmd.values();
        if argv.len() >= 4 && argv[..3] == ["sh", "-c", super::UNITS_SCRIPT] {
            let lines: String = argv[4..]
                .iter()
                .map(|u| {
                    let e = if s.enabled.contains(*u) {
                        "enabled"
                    } else {
                        "disabled"
                    };
                    let a = if s.active.contains(*u) {
                        "active"
                    } else {
                        "inactive"
                    };
                    format!("{u} {e} {a}\n")
                })
                .collect();
            return Ok(out(0, &lines));
        }
        Ok(match argv.as_slice() {
            ["systemctl", "daemon-reload"] => out(0, ""),
            // Like systemd: the links of the unit file's [Install] section, made again.
            ["systemctl", "enable" | "reenable", units @ ..] => {
                for u in units.iter().filter(|u| !u.starts_with('-')) {
                    s.enabled.insert(u.to_string());
                    let Some(file) = s.files.get(&format!("{}/{u}", super::UNIT_DIR)).cloned()
                    else {
                        continue;
                    };
                    let text = String::from_utf8_lossy(&file.data).into_owned();
                    for link in super::install_links(u, &text) {
                        s.files.insert(link, file.clone());
                    }
                }
                out(0, "")
            }
            ["systemctl", verb @ ("start" | "restart"), units @ ..] => {
                let _ = verb;
                for u in units.iter().filter(|u| !u.starts_with('-')) {
                    s.active.insert(u.to_string());
                }
                out(0, "")
            }
            // Like systemd: only a running unit can reload.
            ["systemctl", "reload", u] => {
                if s.active.contains(*u) {
                    out(0, "")
                } else {
                    out(1, &format!("{u} is not active, cannot reload.\n"))
                }
            }
            ["systemctl", "is-active", u] => {
                if s.active.contains(*u) {
                    out(0, "active\n")
                } else {
                    out(3, "inactive\n")
                }
            }
            ["systemctl", "is-enabled", u] => {
                if s.enabled.contains(*u) {
                    out(0, "enabled\n")
                } else {
                    out(1, "disabled\n")
                }
            }
            ["mkdir", "-p", "-m", mode, dir] => {
                let m = u32::from_str_radix(mode, 8).unwrap_or(0o755);
                let mut p = String::new();
                for seg in dir.split('/').filter(|x| !x.is_empty()) {
                    p.push('/');
                    p.push_str(seg);
                    s.dirs.entry(p.clone()).or_insert(0o755);
                }
                s.dirs.insert(dir.to_string(), m);
                out(0, "")
            }
            ["chmod", mode, path] => {
                let m = u32::from_str_radix(mode, 8).unwrap_or(0o755);
                if let Some(d) = s.dirs.get_mut(*path) {
                    *d = m;
                } else if let Some(f) = s.files.get_mut(*path) {
                    f.mode = m;
                }
                out(0, "")
            }
            ["test", "-d", path] => out(if s.dirs.contains_key(*path) { 0 } else { 1 }, ""),
            // Unscripted commands succeed silently, like a guard that finds its work undone.
            _ => out(0, ""),
        })
    }

    fn read_file(&self, path: &str) -> HostResult<Option<Vec<u8>>> {
        let s = self.enter(format!("read {path}"))?;
        Ok(s.files.get(path).map(|f| f.data.clone()))
    }

    fn write_file(&self, path: &str, data: &[u8], mode: u32, owner: &str) -> HostResult<()> {
        let mut s = self.enter(format!("write {path}"))?;
        if !parent_exists(&s, path) {
            return Err(HostError::Io {
                node: self.name.clone(),
                what: format!("write {path}"),
                reason: "No such file or directory (parent missing)".into(),
            });
        }
        s.files.insert(
            path.to_string(),
            FakeFile {
                data: data.to_vec(),
                mode,
                owner: owner.to_string(),
            },
        );
        Ok(())
    }

    fn stat_many(&self, paths: &[String]) -> HostResult<Vec<Stat>> {
        let s = self.enter(format!("stat {} paths", paths.len()))?;
        Ok(paths
            .iter()
            .map(|p| {
                if let Some(m) = s.dirs.get(p) {
                    Stat::Dir {
                        mode: *m,
                        owner: "root".into(),
                    }
                } else if let Some(f) = s.files.get(p) {
                    Stat::File {
                        mode: f.mode,
                        owner: f.owner.clone(),
                        sha256: sha256_hex(&f.data),
                    }
                } else {
                    Stat::Missing
                }
            })
            .collect())
    }

    /// As a host reached by command does it, logged as one entry (`probe with N read(s)`) so
    /// tests see that the facts came with the probe.
    fn probe_reading(
        &self,
        reads: &[Cmd],
        checks: &[Cmd],
        units: &[String],
        paths: &[String],
    ) -> HostResult<(Vec<(bool, String)>, super::Probe)> {
        drop(self.enter(format!("probe with {} read(s)", reads.len()))?);
        super::reads_then_probe(self, reads, checks, units, paths)
    }
}
