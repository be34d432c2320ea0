//! Connections to the VMs of a remote hypervisor, through that hypervisor's own SSH server (what
//! `ssh -J` does): the VMs' management network is a NAT network *on that host*, reachable from
//! nowhere else. Each connection is one SSH session to the hypervisor — its host key checked
//! against OpenSSH's `known_hosts`, as libvirt's `qemu+ssh://` transport checks it — carrying
//! one `direct-tcpip` channel to the VM's address; a loopback socket pair hands the caller an
//! ordinary `TcpStream`, so SSH to the VM (with *its* pinned key), the API client and the port
//! probes all work unchanged. Nothing is trusted on first use: an unknown hypervisor is refused
//! with the command that records its key.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The SSH server in front of the VMs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jump {
    /// The name it is known by (`known_hosts`, messages).
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Private keys to try after the SSH agent, in order.
    pub keys: Vec<PathBuf>,
    /// OpenSSH `known_hosts` file holding its host key.
    pub known_hosts: PathBuf,
}

impl Jump {
    /// The jump of a `qemu+ssh://[user@]host[:port]/…` URI, with libvirt's `keyfile=` and
    /// `known_hosts=` parameters; the user's `~/.ssh` otherwise. None for any other URI.
    pub fn from_libvirt_uri(uri: &str, home: &Path) -> Option<Jump> {
        let (scheme, rest) = uri.split_once("://")?;
        // Only OpenSSH's transport: validation refuses libvirt's libssh ones.
        if !matches!(scheme.split_once('+'), Some((_, "ssh"))) {
            return None;
        }
        let (authority, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (u.to_string(), h),
            None => ("root".to_string(), authority),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p.parse().ok()?),
            _ => (hostport, 22),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return None;
        }
        let query = tail.split_once('?').map(|(_, q)| q).unwrap_or("");
        let param = |k: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
                .map(PathBuf::from)
        };
        let ssh = home.join(".ssh");
        let keys = match param("keyfile") {
            Some(k) => vec![k],
            None => ["id_ed25519", "id_ecdsa", "id_rsa"]
                .iter()
                .map(|k| ssh.join(k))
                .collect(),
        };
        Some(Jump {
            host,
            port,
            user,
            keys,
            known_hosts: param("known_hosts").unwrap_or_else(|| ssh.join("known_hosts")),
        })
    }

    fn describe(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }

    /// An SSH session to the jump host: its key checked against `known_hosts`, then the agent
    /// and the key files tried.
    fn session(&self, timeout: Duration) -> io::Result<ssh2::Session> {
        let err = |what: String| io::Error::other(format!("jump host {}: {what}", self.describe()));
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| err("no address".into()))?;
        let tcp = crate::net::connect_here(&addr, timeout)?;
        let (s, key) = super::handshake(tcp, timeout).map_err(err)?;
        let mut kh = s.known_hosts().map_err(|e| err(e.to_string()))?;
        if self.known_hosts.exists() {
            kh.read_file(&self.known_hosts, ssh2::KnownHostFileKind::OpenSSH)
                .map_err(|e| err(format!("read {}: {e}", self.known_hosts.display())))?;
        }
        match kh.check_port(&self.host, self.port, &key) {
            ssh2::CheckResult::Match => {}
            ssh2::CheckResult::Mismatch => {
                return Err(err(format!(
                    "its host key is not the one {} holds for it (refused)",
                    self.known_hosts.display()
                )));
            }
            _ => {
                return Err(err(format!(
                    "its host key is not in {} (kubicluster never trusts an unknown host; connect once with `ssh -p {} {}@{}` and check the fingerprint)",
                    self.known_hosts.display(),
                    self.port,
                    self.user,
                    self.host
                )));
            }
        }
        let agent =
            std::env::var_os("SSH_AUTH_SOCK").is_some() && s.userauth_agent(&self.user).is_ok();
        if !agent {
            for k in self.keys.iter().filter(|k| k.exists()) {
                if s.userauth_pubkey_file(&self.user, None, k, None).is_ok() {
                    break;
                }
            }
        }
        if !s.authenticated() {
            return Err(err(format!(
                "no key was accepted for {} (tried the SSH agent and {})",
                self.user,
                self.keys
                    .iter()
                    .map(|k| k.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        super::settle(&s);
        Ok(s)
    }

    /// A stream to `to` as the jump host sees it: a local socket whose other end a thread
    /// relays to a `direct-tcpip` channel of a session of its own.
    pub fn connect(&self, to: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        let session = self.session(timeout)?;
        let channel = session
            .channel_direct_tcpip(&to.ip().to_string(), to.port(), None)
            // Not "refused": the jump host cannot tell refused from unreachable.
            .map_err(|e| {
                io::Error::other(format!("{to} through jump host {}: {e}", self.describe()))
            })?;
        let (mine, theirs) = loopback_pair()?;
        let handle = std::thread::Builder::new()
            .name(format!("jump-{to}"))
            .spawn(move || relay(session, channel, theirs))?;
        let mut relays = RELAYS.lock().unwrap_or_else(|e| e.into_inner());
        relays.retain(|h| !h.is_finished());
        relays.push(handle);
        Ok(mine)
    }
}

/// The relays' threads, and the word that ends them.
static RELAYS: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>> =
    std::sync::Mutex::new(Vec::new());
static CLOSING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// End every relay and wait for its thread, before the process exits: a relay still inside
/// libssh2 while the C library's exit handlers free its state crashes the process (seen as a
/// segfault after `up` had printed its last line, with pooled API connections still open).
pub fn close_all() {
    CLOSING.store(true, std::sync::atomic::Ordering::SeqCst);
    let relays = std::mem::take(&mut *RELAYS.lock().unwrap_or_else(|e| e.into_inner()));
    for h in relays {
        let _ = h.join();
    }
}

/// Two connected TCP sockets on 127.0.0.1 (the caller wants a `TcpStream`).
#[allow(clippy::disallowed_methods)] // a local pair, not a connection to a node
fn loopback_pair() -> io::Result<(TcpStream, TcpStream)> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let mine = TcpStream::connect(l.local_addr()?)?;
    let (theirs, _) = l.accept()?;
    let _ = mine.set_nodelay(true);
    let _ = theirs.set_nodelay(true);
    Ok((mine, theirs))
}

/// One direction of the relay: bytes read but not yet written, and whether its source ended.
#[derive(Default)]
struct Half {
    pending: Vec<u8>,
    ended: bool,
}

impl Half {
    /// Read from `from` when nothing is pending, write what is pending to `to` (both
    /// non-blocking). Returns (moved anything, the read returned 0).
    fn pump(
        &mut self,
        from: &mut dyn Read,
        to: &mut dyn Write,
        buf: &mut [u8],
    ) -> io::Result<(bool, bool)> {
        let again = |e: &io::Error| e.kind() == ErrorKind::WouldBlock;
        let (mut moved, mut zero) = (false, false);
        if !self.ended && self.pending.is_empty() {
            match from.read(buf) {
                Ok(0) => zero = true,
                Ok(n) => {
                    self.pending.extend_from_slice(&buf[..n]);
                    moved = true;
                }
                Err(e) if again(&e) => {}
                Err(e) => return Err(e),
            }
        }
        if !self.pending.is_empty() {
            match to.write(&self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                    moved |= n > 0;
                }
                Err(e) if again(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok((moved, zero))
    }

    fn drained(&self) -> bool {
        self.ended && self.pending.is_empty()
    }
}

/// Copy both ways between `local` and `channel` until both sides are done.
fn relay(session: ssh2::Session, mut channel: ssh2::Channel, mut local: TcpStream) {
    session.set_blocking(false);
    if local.set_nonblocking(true).is_err() {
        return;
    }
    let (mut up, mut down) = (Half::default(), Half::default());
    let mut eof_sent = false;
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok((moved_up, zero)) = up.pump(&mut local, &mut channel, &mut buf) {
        if CLOSING.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        up.ended |= zero; // a socket's read of 0 is its end
        if up.drained() && !eof_sent {
            match channel.send_eof() {
                Ok(()) => eof_sent = true,
                Err(e) if e.code() == ssh2::ErrorCode::Session(-37) => {}
                Err(_) => break,
            }
        }
        let Ok((moved_down, zero)) = down.pump(&mut channel, &mut local, &mut buf) else {
            break;
        };
        down.ended |= zero && channel.eof();
        if down.drained() {
            let _ = local.shutdown(std::net::Shutdown::Write);
            if eof_sent {
                break;
            }
        }
        if !(moved_up || moved_down) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    session.set_blocking(true);
    let _ = channel.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_libvirt_ssh_uri_names_its_jump_host() {
        let home = Path::new("/home/ops");
        let j = Jump::from_libvirt_uri("qemu+ssh://admin@hv2:2222/system", home).unwrap();
        assert_eq!(
            j,
            Jump {
                host: "hv2".into(),
                port: 2222,
                user: "admin".into(),
                keys: vec![
                    "/home/ops/.ssh/id_ed25519".into(),
                    "/home/ops/.ssh/id_ecdsa".into(),
                    "/home/ops/.ssh/id_rsa".into()
                ],
                known_hosts: "/home/ops/.ssh/known_hosts".into(),
            }
        );
        let j = Jump::from_libvirt_uri(
            "qemu+ssh://hv3.example/system?keyfile=/k/id&known_hosts=/k/kh&no_tty=1",
            home,
        )
        .unwrap();
        assert_eq!(
            (j.user.as_str(), j.host.as_str(), j.port),
            ("root", "hv3.example", 22)
        );
        assert_eq!(j.keys, [PathBuf::from("/k/id")]);
        assert_eq!(j.known_hosts, PathBuf::from("/k/kh"));
        let j = Jump::from_libvirt_uri("qemu+ssh://root@[fd00::2]:23/system", home).unwrap();
        assert_eq!((j.host.as_str(), j.port), ("fd00::2", 23));
        for not_ssh in [
            "qemu:///system",
            "qemu+tls://hv2/system",
            "qemu+unix:///system?socket=/x",
            "qemu+libssh2://root@hv2/system",
            "test:///default",
        ] {
            assert_eq!(Jump::from_libvirt_uri(not_ssh, home), None, "{not_ssh}");
        }
    }
}
