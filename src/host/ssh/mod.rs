//! SSH over ssh2 with a pinned host key: the connection is refused unless the server presents
//! exactly the key kubicluster pinned for that VM (no trust-on-first-use, no
//! `StrictHostKeyChecking=no` as in the original). This module (with [`jump`], the way to a
//! remote hypervisor's VMs) is the only user of ssh2.
//!
//! One session per node, reused for the whole run and guarded by a mutex (the engine calls from
//! tokio's blocking pool); keepalives while a command runs; one reconnect when the connection
//! dropped before a command started; stdout and stderr are read together in non-blocking mode so
//! a chatty stderr cannot deadlock stdout; `sudo -n` when the SSH user is not root. Files are
//! written by a constant shell script fed the data on stdin (temp file, fsync, rename), which also
//! works through sudo, where SFTP would not.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ssh_key::PublicKey;

use super::{
    Cmd, Digests, Host, HostError, HostResult, NewFile, Output, Probe, STAT_SCRIPT, Stat,
    WRITE_SCRIPT,
};
use crate::sshkeys;

pub mod jump;

/// How to reach one node.
#[derive(Debug, Clone)]
pub struct SshTarget {
    pub name: String,
    pub addr: SocketAddr,
    pub user: String,
    pub key: PathBuf,
    pub pinned: PublicKey,
    pub connect_timeout: Duration,
    /// Where the digests of the node's files are remembered between runs (`sha key path`
    /// lines); `None`: in memory only.
    pub digest_cache: Option<PathBuf>,
    /// Read the digest cache but never write it (a dry run writes nothing anywhere).
    pub digest_cache_read_only: bool,
}

pub struct SshHost {
    target: SshTarget,
    session: Mutex<Option<ssh2::Session>>,
    digests: Mutex<Digests>,
}

/// The digest cache file's entries (unreadable lines are skipped: it is only a cache).
fn load_digests(file: Option<&std::path::Path>) -> Digests {
    let Some(text) = file.and_then(|f| std::fs::read_to_string(f).ok()) else {
        return Digests::new();
    };
    text.lines()
        .filter_map(|l| {
            let (sha, rest) = l.split_once(' ')?;
            let (key, path) = rest.split_once(' ')?;
            Some((path.to_string(), (key.to_string(), sha.to_string())))
        })
        .collect()
}

impl SshHost {
    /// Run a write script (`cmd`): its failure is an I/O error about `what` with the script's
    /// stderr, as a write's is everywhere else.
    fn run_write(&self, cmd: &Cmd, what: impl Fn() -> String) -> HostResult<Output> {
        self.check(cmd).map_err(|e| match e {
            HostError::Exec {
                node, stderr_tail, ..
            } => HostError::Io {
                node,
                what: what(),
                reason: stderr_tail,
            },
            other => other,
        })
    }

    /// Connect now (so a wrong key or an unreachable node fails here, typed).
    pub fn connect(target: SshTarget) -> HostResult<Self> {
        let s = open(&target)?;
        let digests = Mutex::new(load_digests(target.digest_cache.as_deref()));
        Ok(SshHost {
            target,
            session: Mutex::new(Some(s)),
            digests,
        })
    }

    /// Connect, trying again (up to `attempts` times, a second apart) while the node is only
    /// unreachable — an sshd that is starting, or busy, may drop a connection before its banner.
    /// A wrong host key or a refused login is never retried.
    pub fn connect_retrying(target: SshTarget, attempts: u32) -> HostResult<Self> {
        let mut n = 0;
        loop {
            n += 1;
            match SshHost::connect(target.clone()) {
                Err(e) if e.is_connection() && n < attempts => {
                    tracing::debug!(node = %target.name, "{e}; trying again");
                    std::thread::sleep(Duration::from_secs(1));
                }
                other => return other,
            }
        }
    }

    /// Compatibility with the VM layer's call shape.
    pub fn connect_to(
        name: &str,
        addr: SocketAddr,
        user: &str,
        key: &Path,
        expected: &PublicKey,
        timeout: Duration,
    ) -> HostResult<Self> {
        SshHost::connect(SshTarget {
            name: name.to_string(),
            addr,
            user: user.to_string(),
            key: key.to_path_buf(),
            pinned: expected.clone(),
            connect_timeout: timeout,
            digest_cache: None,
            digest_cache_read_only: false,
        })
    }

    fn wrap(&self, cmd: &Cmd) -> String {
        if self.target.user == "root" {
            cmd.shell_line()
        } else {
            format!("sudo -n -- {}", cmd.shell_line())
        }
    }

    fn exec_once(&self, session: &ssh2::Session, cmd: &Cmd) -> Result<Output, ExecError> {
        let name = &self.target.name;
        session.set_blocking(true);
        let mut ch = session.channel_session().map_err(ExecError::NotStarted)?;
        ch.exec(&self.wrap(cmd)).map_err(ExecError::NotStarted)?;
        session.set_blocking(false);
        let io = |e: std::io::Error| {
            ExecError::Failed(HostError::Io {
                node: name.clone(),
                what: format!("run `{cmd}`"),
                reason: e.to_string(),
            })
        };
        let deadline = Instant::now() + cmd.timeout;
        let mut last_keepalive = Instant::now();
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let mut input: &[u8] = cmd.stdin.as_deref().unwrap_or(&[]);
        let mut eof_sent = false;
        let mut buf = [0u8; 32 * 1024];
        loop {
            let mut progressed = false;
            if !input.is_empty() {
                match ch.write(input) {
                    Ok(n) => {
                        input = &input[n..];
                        progressed = n > 0;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return Err(io(e)),
                }
            }
            if input.is_empty() && !eof_sent {
                match ch.send_eof() {
                    Ok(()) => eof_sent = true,
                    Err(e) if e.code() == ssh2::ErrorCode::Session(-37) => {}
                    Err(e) => return Err(io(e.into())),
                }
            }
            for (stream, sink) in [(0, &mut stdout), (1, &mut stderr)] {
                let r = if stream == 0 {
                    ch.read(&mut buf)
                } else {
                    ch.stderr().read(&mut buf)
                };
                match r {
                    Ok(0) => {}
                    Ok(n) => {
                        sink.extend_from_slice(&buf[..n]);
                        progressed = true;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return Err(io(e)),
                }
            }
            if ch.eof() && eof_sent {
                break;
            }
            if Instant::now() >= deadline {
                session.set_blocking(true);
                return Err(ExecError::Failed(HostError::Timeout {
                    node: name.clone(),
                    cmd: cmd.to_string(),
                    after: cmd.timeout,
                }));
            }
            if last_keepalive.elapsed() > Duration::from_secs(15) {
                let _ = session.keepalive_send();
                last_keepalive = Instant::now();
            }
            if !progressed {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        session.set_blocking(true);
        ch.wait_close().map_err(|e| io(e.into()))?;
        let status = ch.exit_status().map_err(|e| io(e.into()))?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }
}

enum ExecError {
    /// The channel could not be opened: the connection is gone; safe to reconnect and retry.
    NotStarted(ssh2::Error),
    Failed(HostError),
}

/// A session over `tcp` once the SSH handshake is done (`timeout` bounds it), and the host key
/// the server offered — for the caller to check before anything else.
fn handshake(
    tcp: std::net::TcpStream,
    timeout: Duration,
) -> Result<(ssh2::Session, Vec<u8>), String> {
    let _ = tcp.set_nodelay(true);
    let mut session = ssh2::Session::new().map_err(|e| e.to_string())?;
    session.set_tcp_stream(tcp);
    session.set_timeout(u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX));
    session
        .handshake()
        .map_err(|e| format!("SSH handshake: {e}"))?;
    let offered = session
        .host_key()
        .ok_or_else(|| "no host key offered".to_string())?
        .0
        .to_vec();
    Ok((session, offered))
}

/// After login: commands and relays have their own deadlines, so the session itself must not
/// time out a long one; keepalives every 15 s.
fn settle(session: &ssh2::Session) {
    session.set_timeout(0);
    session.set_keepalive(true, 15);
}

fn open(t: &SshTarget) -> HostResult<ssh2::Session> {
    let unreachable = |reason: String| HostError::Unreachable {
        node: t.name.clone(),
        addr: t.addr.to_string(),
        reason,
    };
    let tcp =
        crate::net::connect(&t.addr, t.connect_timeout).map_err(|e| unreachable(e.to_string()))?;
    let (session, offered) = handshake(tcp, t.connect_timeout).map_err(unreachable)?;
    let want = t
        .pinned
        .to_bytes()
        .map_err(|e| unreachable(format!("encode pinned key: {e}")))?;
    if offered != want.as_slice() {
        let got = PublicKey::from_bytes(&offered)
            .map(|k| sshkeys::fingerprint(&k))
            .unwrap_or_else(|_| "an unreadable key".into());
        return Err(HostError::HostKeyMismatch {
            node: t.name.clone(),
            addr: t.addr.to_string(),
            expected: sshkeys::fingerprint(&t.pinned),
            got,
        });
    }
    session
        .userauth_pubkey_file(&t.user, None, &t.key, None)
        .map_err(|e| HostError::Auth {
            node: t.name.clone(),
            user: t.user.clone(),
            reason: format!("{e} (key {})", t.key.display()),
        })?;
    settle(&session);
    tracing::debug!(node = %t.name, addr = %t.addr, "SSH session open");
    Ok(session)
}

impl Host for SshHost {
    fn name(&self) -> &str {
        &self.target.name
    }

    fn run(&self, cmd: &Cmd) -> HostResult<Output> {
        tracing::debug!(node = %self.target.name, "run {cmd}");
        let mut guard = self.session.lock().unwrap_or_else(|p| p.into_inner());
        for attempt in 0..2 {
            if guard.is_none() {
                *guard = Some(open(&self.target)?);
            }
            let s = guard.as_ref().expect("just opened");
            match self.exec_once(s, cmd) {
                Ok(o) => return Ok(o),
                Err(ExecError::Failed(e)) => {
                    // The session may be in any state now: start afresh next time.
                    *guard = None;
                    return Err(e);
                }
                Err(ExecError::NotStarted(e)) => {
                    tracing::debug!(node = %self.target.name, "connection lost ({e}), reconnecting");
                    *guard = None;
                    if attempt == 1 {
                        return Err(HostError::Unreachable {
                            node: self.target.name.clone(),
                            addr: self.target.addr.to_string(),
                            reason: format!("connection lost: {e}"),
                        });
                    }
                }
            }
        }
        unreachable!("the loop returns")
    }

    fn read_file(&self, path: &str) -> HostResult<Option<Vec<u8>>> {
        let o = self.run(&Cmd::script(
            r#"if [ -f "$1" ]; then printf y; cat "$1"; else printf n; fi"#,
            [path],
        ))?;
        match o.stdout.split_first() {
            Some((b'y', rest)) if o.ok() => Ok(Some(rest.to_vec())),
            Some((b'n', _)) if o.ok() => Ok(None),
            _ => Err(HostError::Io {
                node: self.target.name.clone(),
                what: format!("read {path}"),
                reason: o.tail(3),
            }),
        }
    }

    fn write_file(&self, path: &str, data: &[u8], mode: u32, owner: &str) -> HostResult<()> {
        let cmd =
            Cmd::script(WRITE_SCRIPT, [path, &format!("{mode:o}"), owner]).stdin(data.to_vec());
        let out = self.run_write(&cmd, || format!("write {path}"))?;
        // What was just written need not be read back by the next plan.
        if let Some(key) = super::written_identity(&out.stdout_text()) {
            let mut learned = Digests::new();
            learned.insert(path.to_string(), (key, super::sha256_hex(data)));
            self.remember_digests(learned);
        }
        Ok(())
    }

    fn write_files(&self, files: &[NewFile<'_>]) -> HostResult<()> {
        if files.len() < 2 {
            return files
                .iter()
                .try_for_each(|f| self.write_file(f.path, f.data, f.mode, f.owner));
        }
        let what = || {
            let names: Vec<&str> = files.iter().map(|f| f.path).collect();
            format!("write {}", names.join(", "))
        };
        let (script, tar) = super::write_many(files).map_err(|e| HostError::Io {
            node: self.name().to_string(),
            what: what(),
            reason: e.to_string(),
        })?;
        let out = self.run_write(&Cmd::script(&script, Vec::<String>::new()).stdin(tar), what)?;
        // What was just written need not be read back by the next plan.
        let keys = super::written_identities(&out.stdout_text());
        let learned: Digests = files
            .iter()
            .filter_map(|f| {
                let key = keys.get(f.path)?;
                Some((f.path.to_string(), (key.clone(), super::sha256_hex(f.data))))
            })
            .collect();
        self.remember_digests(learned);
        Ok(())
    }

    fn create_dirs(&self, dirs: &[(&str, &str)]) -> HostResult<()> {
        if dirs.is_empty() {
            return Ok(());
        }
        let args = dirs.iter().flat_map(|(p, m)| [*p, *m]);
        self.check(&Cmd::script(super::MKDIRS_SCRIPT, args))
            .map(drop)
    }

    fn check_all(&self, cmds: &[Cmd]) -> HostResult<Vec<bool>> {
        super::batch_checks(self, cmds)
    }

    fn probe(&self, checks: &[Cmd], units: &[String], paths: &[String]) -> HostResult<Probe> {
        super::probe_at_once(self, checks, units, paths)
    }

    fn probe_reading(
        &self,
        reads: &[Cmd],
        checks: &[Cmd],
        units: &[String],
        paths: &[String],
    ) -> HostResult<(Vec<(bool, String)>, Probe)> {
        super::probe_reading_at_once(self, reads, checks, units, paths)
    }

    fn stat_many(&self, paths: &[String]) -> HostResult<Vec<Stat>> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let known = self.known_digests();
        let script = format!("{}{STAT_SCRIPT}", super::known_line(&known, paths));
        let o = self.check(&Cmd::script(&script, paths))?;
        let (stats, learned) = super::parse_stat_output(&o.stdout_text(), paths, &known)
            .ok_or_else(|| HostError::Io {
                node: self.target.name.clone(),
                what: format!("stat {} paths", paths.len()),
                reason: format!("unexpected answer: {}", o.tail(3)),
            })?;
        self.remember_digests(learned);
        Ok(stats)
    }

    fn known_digests(&self) -> Digests {
        self.digests.lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// Kept in memory and, when the target names a file (the VM's directory on the
    /// hypervisor), there too for the next run. Losing it only costs hashing again.
    fn remember_digests(&self, learned: Digests) {
        let Ok(mut d) = self.digests.lock() else {
            return;
        };
        let mut changed = false;
        for (path, v) in learned {
            if d.get(&path) != Some(&v) {
                d.insert(path, v);
                changed = true;
            }
        }
        if let Some(file) = &self.target.digest_cache
            && changed
            && !self.target.digest_cache_read_only
        {
            let text: String = d
                .iter()
                .map(|(p, (k, sha))| format!("{sha} {k} {p}\n"))
                .collect();
            if let Err(e) =
                crate::fsutil::write_atomic(file, text.as_bytes(), crate::fsutil::PUBLIC)
            {
                tracing::debug!("digest cache {}: {e:#}", file.display());
            }
        }
    }
}
