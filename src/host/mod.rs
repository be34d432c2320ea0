//! Hosts kubicluster acts on: a small trait (run a command, read a file, write a file
//! atomically, stat + hash many paths in one round trip) with three implementations:
//! [`ssh::SshHost`] (ssh2, pinned host keys; with its jump to a remote hypervisor's VMs, the only
//! ssh2 user), [`local::LocalHost`] (the hypervisor itself) and [`fake::FakeHost`] (a scripted
//! file system with a call log, for tests).
//!
//! Commands are argv vectors, never shell strings built from values: each argument is quoted
//! when it has to cross SSH, and arguments marked secret print as `[REDACTED]` in logs and errors.
//! Errors are typed ([`HostError`]) so callers branch on the kind, never on the message text.

mod batch;
pub mod dir;
#[cfg(any(test, feature = "testing"))]
pub mod fake;
pub mod local;
mod scripts;
pub mod ssh;

pub use batch::*;
pub use scripts::*;

use std::fmt;
use std::time::Duration;

/// One argument of a command; a secret one never appears in logs or errors.
#[derive(Clone, PartialEq, Eq)]
pub struct Arg {
    pub value: String,
    pub secret: bool,
}

impl fmt::Debug for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.secret {
            f.write_str("[REDACTED]")
        } else {
            write!(f, "{:?}", self.value)
        }
    }
}

/// A command as argv, with optional stdin and a timeout.
#[derive(Clone, PartialEq, Eq)]
pub struct Cmd {
    pub argv: Vec<Arg>,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Duration,
}

/// Default timeout of a remote command (package installs under TCG take a while).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

impl Cmd {
    pub fn new<S: AsRef<str>>(argv: impl IntoIterator<Item = S>) -> Self {
        Cmd {
            argv: argv
                .into_iter()
                .map(|a| Arg {
                    value: a.as_ref().to_string(),
                    secret: false,
                })
                .collect(),
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// `sh -c SCRIPT sh ARGS…`: a constant script, with values passed as positional arguments.
    pub fn script<S: AsRef<str>>(script: &str, args: impl IntoIterator<Item = S>) -> Self {
        let mut c = Cmd::new(["sh", "-c", script, "sh"]);
        c.argv.extend(args.into_iter().map(|a| Arg {
            value: a.as_ref().to_string(),
            secret: false,
        }));
        c
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.argv.push(Arg {
            value: a.into(),
            secret: false,
        });
        self
    }

    pub fn secret_arg(mut self, a: impl Into<String>) -> Self {
        self.argv.push(Arg {
            value: a.into(),
            secret: true,
        });
        self
    }

    pub fn stdin(mut self, data: Vec<u8>) -> Self {
        self.stdin = Some(data);
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// The command line quoted for a POSIX shell (what SSH's exec takes).
    pub fn shell_line(&self) -> String {
        self.argv
            .iter()
            .map(|a| shell_quote(&a.value))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The command as one line of a batch script. A shell script (`sh -c SCRIPT sh ARGS…`)
    /// runs in a subshell of the batch instead of a new `sh` (a fork without an exec: every
    /// process start is slow in an emulated guest), with its own positional parameters.
    pub fn batch_line(&self) -> String {
        match self.values().as_slice() {
            ["sh", "-c", script, "sh", args @ ..] => {
                let args: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
                format!("( set -- {}\n{script}\n)", args.join(" "))
            }
            _ => self.shell_line(),
        }
    }

    /// The argv values, as they are (for local execution).
    pub fn values(&self) -> Vec<&str> {
        self.argv.iter().map(|a| a.value.as_str()).collect()
    }
}

/// The command for logs and errors: secrets redacted, long scripts shortened.
impl Cmd {
    /// The whole command line, every value in full (scripts too) and secrets redacted: what
    /// `render` writes down. [`Display`](fmt::Display) shortens long values for logs.
    pub fn full_line(&self) -> String {
        self.argv
            .iter()
            .map(|a| {
                if a.secret {
                    "[REDACTED]".to_string()
                } else {
                    shell_quote(&a.value)
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .argv
            .iter()
            .map(|a| {
                if a.secret {
                    "[REDACTED]".to_string()
                } else if a.value.len() > 80 {
                    shell_quote(&format!(
                        "{}…",
                        a.value.chars().take(77).collect::<String>()
                    ))
                } else {
                    shell_quote(&a.value)
                }
            })
            .collect();
        f.write_str(&parts.join(" "))
    }
}

impl fmt::Debug for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cmd({self})")
    }
}

/// Quote `s` for a POSIX shell (single quotes; plain words stay as they are).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// What a command printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Output {
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn ok(&self) -> bool {
        self.status == 0
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The last `lines` lines of stderr (or stdout when stderr is empty), for error messages.
    pub fn tail(&self, lines: usize) -> String {
        let src = if self.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
            &self.stderr
        } else {
            &self.stdout
        };
        let text = String::from_utf8_lossy(src);
        let all: Vec<&str> = text.trim_end().lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// What is at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stat {
    Missing,
    Dir {
        mode: u32,
        owner: String,
    },
    File {
        mode: u32,
        owner: String,
        sha256: String,
    },
    /// Something else (a socket, a device, a dangling link).
    Other,
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(
        "{node}: host key mismatch at {addr}: expected {expected}, got {got}; refusing to connect (another machine may hold this address)"
    )]
    HostKeyMismatch {
        node: String,
        addr: String,
        expected: String,
        got: String,
    },
    #[error("{node}: cannot reach {addr}: {reason}")]
    Unreachable {
        node: String,
        addr: String,
        reason: String,
    },
    #[error("{node}: SSH login as {user} refused: {reason}")]
    Auth {
        node: String,
        user: String,
        reason: String,
    },
    #[error("{node}: `{cmd}` exited with status {status}: {stderr_tail}")]
    Exec {
        node: String,
        cmd: String,
        status: i32,
        stderr_tail: String,
    },
    #[error("{node}: `{cmd}` did not finish within {} s", .after.as_secs())]
    Timeout {
        node: String,
        cmd: String,
        after: Duration,
    },
    #[error("{node}: {what}: {reason}")]
    Io {
        node: String,
        what: String,
        reason: String,
    },
}

impl HostError {
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            HostError::HostKeyMismatch { .. } => "the pinned key in the cluster's work dir is the truth: if the VM was re-created on purpose, run `kubicluster create-vms --force` for it; otherwise find the machine that holds this address".into(),
            HostError::Unreachable { .. } => "is the VM running? `kubicluster status` shows it; `kubicluster create-vms` starts it".into(),
            HostError::Auth { .. } => "check ssh.user and ssh.privateKey in the cluster file".into(),
            HostError::Timeout { .. } => "the node is slow or the command hangs; see the log file under the work dir".into(),
            HostError::Exec { .. } | HostError::Io { .. } => return None,
        })
    }

    /// Whether trying again on a new connection may help.
    pub fn is_connection(&self) -> bool {
        matches!(self, HostError::Unreachable { .. })
    }
}

pub type HostResult<T> = std::result::Result<T, HostError>;

/// A machine kubicluster acts on. Implementations are shared across threads (the engine fans
/// out over hosts on tokio's blocking pool), so methods take `&self`.
pub trait Host: Send + Sync {
    /// The node name, for messages.
    fn name(&self) -> &str;
    /// Run a command; a non-zero exit is *not* an error here (see [`Host::check`]).
    fn run(&self, cmd: &Cmd) -> HostResult<Output>;
    /// Read a file; `None` when it does not exist.
    fn read_file(&self, path: &str) -> HostResult<Option<Vec<u8>>>;
    /// Write a file atomically (temp file in the same directory, fsync, rename) with mode and owner.
    fn write_file(&self, path: &str, data: &[u8], mode: u32, owner: &str) -> HostResult<()>;
    /// Stat and hash many paths in one round trip.
    fn stat_many(&self, paths: &[String]) -> HostResult<Vec<Stat>>;

    /// Write several files, each as [`Host::write_file`] does. Hosts reached by command
    /// override this to do it in one round trip ([`write_many`]).
    fn write_files(&self, files: &[NewFile<'_>]) -> HostResult<()> {
        files
            .iter()
            .try_for_each(|f| self.write_file(f.path, f.data, f.mode, f.owner))
    }

    /// Create directories, each `(path, mode)`: `mkdir -p -m MODE PATH`, then `chmod MODE PATH`
    /// (mkdir -m leaves an existing path's mode, and the umask limits the parents -p makes).
    /// Hosts reached by command override this to do it in one round trip ([`MKDIRS_SCRIPT`]).
    fn create_dirs(&self, dirs: &[(&str, &str)]) -> HostResult<()> {
        for (path, mode) in dirs {
            self.check(&Cmd::new(["mkdir", "-p", "-m", mode, path]))?;
            self.check(&Cmd::new(["chmod", mode, path]))?;
        }
        Ok(())
    }

    /// Files this host hashed before, by identity (size, inode, mtime, ctime): [`STAT_SCRIPT`]
    /// does not read them again while the identity is the same. None by default.
    fn known_digests(&self) -> Digests {
        Digests::new()
    }
    /// Keep what a stat learned for the next one.
    fn remember_digests(&self, _learned: Digests) {}

    /// What the engine's plan reads from a node: which `checks` exit 0, each unit's
    /// `(enabled, active)` words from [`UNITS_SCRIPT`], and the stat + sha256 of `paths`. Hosts
    /// reached by command override this to do it all in one round trip ([`probe_at_once`]).
    fn probe(&self, checks: &[Cmd], units: &[String], paths: &[String]) -> HostResult<Probe> {
        Ok(Probe {
            checks: self.check_all(checks)?,
            units: read_units(self, units)?,
            stats: self.stat_many(paths)?,
        })
    }

    /// [`Host::probe`], after running the read-only commands `reads` (each one's exit 0? and
    /// stdout): in one round trip on hosts reached by command ([`probe_reading_at_once`]).
    fn probe_reading(
        &self,
        reads: &[Cmd],
        checks: &[Cmd],
        units: &[String],
        paths: &[String],
    ) -> HostResult<(Vec<(bool, String)>, Probe)> {
        reads_then_probe(self, reads, checks, units, paths)
    }

    /// Run each command and say which exited 0 (the engine's guards). Hosts reached by
    /// command override this to batch them into one round trip ([`batch_checks`]).
    fn check_all(&self, cmds: &[Cmd]) -> HostResult<Vec<bool>> {
        cmds.iter().map(|c| self.run(c).map(|o| o.ok())).collect()
    }

    /// Run and fail on a non-zero exit, with the tail of stderr.
    fn check(&self, cmd: &Cmd) -> HostResult<Output> {
        let out = self.run(cmd)?;
        if out.ok() {
            Ok(out)
        } else {
            Err(HostError::Exec {
                node: self.name().to_string(),
                cmd: cmd.to_string(),
                status: out.status,
                stderr_tail: out.tail(10),
            })
        }
    }
}

pub use crate::blob::sha256_hex;

#[cfg(test)]
mod tests;

/// Where kubicluster writes unit files, and where `systemctl enable` makes their links.
pub const UNIT_DIR: &str = "/etc/systemd/system";

/// The links `systemctl enable` makes for a unit file's `[Install]` section (`WantedBy=`,
/// `RequiredBy=`; an empty assignment resets the list, as in systemd). A unit counts as enabled
/// only while each exists, so a changed `[Install]` is taken in by the next run even when a run
/// was killed between writing the unit file and enabling it.
pub fn install_links(unit: &str, unit_file: &str) -> Vec<String> {
    let mut install = false;
    let (mut wanted, mut required) = (Vec::new(), Vec::new());
    for line in unit_file.lines().map(str::trim) {
        if line.starts_with('[') {
            install = line == "[Install]";
            continue;
        }
        let Some((key, value)) = line.split_once('=').filter(|_| install) else {
            continue;
        };
        let list = match key.trim() {
            "WantedBy" => &mut wanted,
            "RequiredBy" => &mut required,
            _ => continue,
        };
        if value.trim().is_empty() {
            list.clear();
        }
        list.extend(value.split_whitespace().map(str::to_string));
    }
    let link = |t: &String, dir: &str| format!("{UNIT_DIR}/{t}.{dir}/{unit}");
    wanted
        .iter()
        .map(|t| link(t, "wants"))
        .chain(required.iter().map(|t| link(t, "requires")))
        .collect()
}
