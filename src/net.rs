//! Outgoing TCP connections of this process, and the network namespace they are made in.
//!
//! In lab mode the VMs live on bridges inside the lab's network namespace, reachable from
//! nowhere else. Instead of re-running kubicluster inside that namespace for every command, the
//! command layer calls [`dial_inside`] once: from then on every connection to a node (SSH, the
//! API server, its WebSocket streams, the port probes) is opened by a short-lived thread that
//! entered the namespace with `setns(2)`. A socket belongs to the namespace it was created in
//! for its whole life, so the stream then works from any thread. Everything else in the process
//! (downloads, `go` builds, libvirt's unix socket) stays in the host's namespace.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::Duration;

static NAMESPACE: RwLock<Option<PathBuf>> = RwLock::new(None);

/// From now on, open connections inside the network namespace bound at `path`
/// (`/run/netns/NAME`); `None`: in this process's own namespace again.
pub fn dial_inside(path: Option<&Path>) {
    *NAMESPACE.write().unwrap_or_else(|e| e.into_inner()) = path.map(Path::to_path_buf);
}

/// The namespace connections are opened in, if not the process's own.
pub fn namespace() -> Option<PathBuf> {
    NAMESPACE.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Opens a connection to a node some other way (through a remote hypervisor's SSH server).
pub type Dialer =
    std::sync::Arc<dyn Fn(&SocketAddr, Duration) -> io::Result<TcpStream> + Send + Sync>;

static DIALER: RwLock<Option<Dialer>> = RwLock::new(None);

/// The dialer set by [`dial_through`], if any.
fn dialer() -> Option<Dialer> {
    DIALER.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// From now on, open connections to nodes with `dialer` (`None`: directly again).
pub fn dial_through(dialer: Option<Dialer>) {
    *DIALER.write().unwrap_or_else(|e| e.into_inner()) = dialer;
}

/// A connection to a node: through the dialer set by [`dial_through`], else
/// `TcpStream::connect_timeout` in the namespace chosen by [`dial_inside`].
pub fn connect(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    match dialer() {
        Some(d) => d(addr, timeout),
        None => connect_here(addr, timeout),
    }
}

/// [`connect`] without the dialer (what a dialer itself uses to reach its jump host).
pub fn connect_here(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    connect_in(namespace().as_deref(), addr, timeout)
}

/// [`connect`] in the namespace at `ns` (`None`: the process's own).
#[allow(clippy::disallowed_methods)] // the one place that may
fn connect_in(ns: Option<&Path>, addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    match ns {
        None => TcpStream::connect_timeout(addr, timeout),
        Some(ns) => in_namespace(ns, || TcpStream::connect_timeout(addr, timeout))?,
    }
}

/// Run `f` on a thread that entered the network namespace at `ns` (the calling thread and the
/// rest of the process are left where they are).
pub fn in_namespace<T: Send>(ns: &Path, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    let file = std::fs::File::open(ns).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("open network namespace {}: {e}", ns.display()),
        )
    })?;
    std::thread::scope(|s| {
        s.spawn(|| {
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&file),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .map_err(|e| {
                io::Error::other(format!("enter network namespace {}: {e}", ns.display()))
            })?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the dialing thread panicked")))
    })
}

/// For ureq: its own TCP connector, run in the namespace chosen by [`dial_inside`] (TLS is
/// chained after it), so timeouts and shutdown behave exactly as ureq's; through the dialer of
/// [`dial_through`] when one is set (a node behind a remote hypervisor's jump).
#[derive(Debug, Default)]
pub struct Connector;

impl ureq::unversioned::transport::Connector<()> for Connector {
    type Out = ureq::unversioned::transport::Either<
        (),
        ureq::unversioned::transport::Either<
            <ureq::unversioned::transport::TcpConnector as ureq::unversioned::transport::Connector<
                (),
            >>::Out,
            Dialed,
        >,
    >;

    fn connect(
        &self,
        details: &ureq::unversioned::transport::ConnectionDetails,
        chained: Option<()>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        use ureq::unversioned::transport::{Either, LazyBuffers, TcpConnector};
        // Through the dialer (a remote hypervisor's jump) when one is set, like every other
        // connection to a node; ureq's own connector otherwise.
        if let (Some(dial), None) = (dialer(), &chained) {
            use ureq::unversioned::transport::time::Duration as UreqDuration;
            let timeout = match details.timeout.after {
                UreqDuration::Exact(d) => d.min(Duration::from_secs(30)),
                UreqDuration::NotHappening => Duration::from_secs(30),
            };
            let mut last = io::Error::other("no address to connect to");
            for addr in details.addrs.iter() {
                match dial(addr, timeout) {
                    Ok(stream) => {
                        let config = details.config;
                        let buffers = LazyBuffers::new(
                            config.input_buffer_size(),
                            config.output_buffer_size(),
                        );
                        return Ok(Some(Either::B(Either::B(Dialed { stream, buffers }))));
                    }
                    Err(e) => last = e,
                }
            }
            return Err(ureq::Error::Io(last));
        }
        let tcp = match namespace() {
            None => TcpConnector::default().connect(details, chained)?,
            Some(ns) => in_namespace(&ns, || TcpConnector::default().connect(details, chained))??,
        };
        Ok(tcp.map(|t| Either::B(Either::A(t))))
    }
}

/// A connection the dialer opened, as a ureq transport (ureq keeps its own TCP transport to
/// itself): reads and writes with ureq's timeouts.
#[derive(Debug)]
pub struct Dialed {
    stream: TcpStream,
    buffers: ureq::unversioned::transport::LazyBuffers,
}

impl ureq::unversioned::transport::Transport for Dialed {
    fn buffers(&mut self) -> &mut dyn ureq::unversioned::transport::Buffers {
        &mut self.buffers
    }

    fn transmit_output(
        &mut self,
        amount: usize,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<(), ureq::Error> {
        use std::io::Write;
        let timeout = timeout.for_write();
        self.stream
            .set_write_timeout(timeout.not_zero().map(|t| *t))?;
        let output = &ureq::unversioned::transport::Buffers::output(&mut self.buffers)[..amount];
        (&self.stream)
            .write_all(output)
            .map_err(|e| timed_out(e, timeout.reason))
    }

    fn await_input(
        &mut self,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<bool, ureq::Error> {
        use std::io::Read;
        use ureq::unversioned::transport::Buffers;
        let timeout = timeout.for_read();
        self.stream
            .set_read_timeout(timeout.not_zero().map(|t| *t))?;
        let n = (&self.stream)
            .read(self.buffers.input_append_buf())
            .map_err(|e| timed_out(e, timeout.reason))?;
        self.buffers.input_appended(n);
        Ok(n > 0)
    }

    fn is_open(&mut self) -> bool {
        // Open while a read would block; closed at EOF or on an error.
        if self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        let open = matches!(self.stream.peek(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        self.stream.set_nonblocking(false).is_ok() && open
    }
}

fn timed_out(e: io::Error, reason: ureq::Timeout) -> ureq::Error {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ureq::Error::Timeout(reason),
        _ => ureq::Error::Io(e),
    }
}

/// A ureq agent whose connections go through [`connect`] (and so into the lab's namespace when
/// one was chosen), with rustls for `https`.
pub fn agent(config: ureq::config::Config) -> ureq::Agent {
    use ureq::unversioned::transport::{Connector as _, RustlsConnector};
    ureq::Agent::with_parts(
        config,
        ().chain(Connector).chain(RustlsConnector::default()),
        ureq::unversioned::resolver::DefaultResolver::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A namespace made by this test (needs root: skipped with a message otherwise — the
    /// CI runs as root, where it must run): a listener on 127.0.0.1 inside
    /// it answers through the dialer, and the same port is closed in the host's namespace.
    #[test]
    #[allow(clippy::print_stderr)]
    fn connections_open_inside_the_chosen_namespace() {
        if !rustix::process::geteuid().is_root() {
            // CI runs as root: there, this cannot be skipped.
            assert!(
                std::env::var_os("CI").is_none(),
                "needs root (a network namespace)"
            );
            eprintln!("NOT RUN: needs root to create a network namespace");
            return;
        }
        let name = format!("kubi-net-test-{}", std::process::id());
        let ns = Path::new("/run/netns").join(&name);
        let ip = |args: &[&str]| {
            let st = std::process::Command::new("ip")
                .args(args)
                .status()
                .unwrap();
            assert!(st.success(), "ip {args:?}");
        };
        ip(&["netns", "add", &name]);
        struct Del(String);
        impl Drop for Del {
            fn drop(&mut self) {
                let _ = std::process::Command::new("ip")
                    .args(["netns", "del", &self.0])
                    .status();
            }
        }
        let _del = Del(name.clone());
        ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        let listener = in_namespace(&ns, || TcpListener::bind("127.0.0.1:0"))
            .unwrap()
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"inside").unwrap();
        });
        // Not in the host's namespace (nothing listens there on that port). The process-wide
        // choice (`dial_inside`) is left alone: other tests of this binary dial meanwhile.
        let two = Duration::from_secs(2);
        assert!(connect_in(None, &addr, two).is_err());
        let mut got = String::new();
        connect_in(Some(&ns), &addr, two)
            .unwrap()
            .read_to_string(&mut got)
            .unwrap();
        server.join().unwrap();
        assert_eq!(got, "inside");
        assert!(connect_in(None, &addr, two).is_err());
    }

    /// The API client's connections go through the dialer too: a request to an address only
    /// the dialer knows (a documentation address, never contacted) is answered by the loopback
    /// server the dialer leads to; every other address is dialled as before.
    #[test]
    fn http_requests_go_through_the_dialer() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("GET /readyz "));
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .unwrap();
        });
        let behind: SocketAddr = "192.0.2.10:6443".parse().unwrap();
        dial_through(Some(std::sync::Arc::new(move |addr, timeout| {
            if *addr == behind {
                connect_here(&local, timeout)
            } else {
                connect_here(addr, timeout)
            }
        })));
        let agent = agent(
            ureq::config::Config::builder()
                .http_status_as_error(false)
                .build(),
        );
        let body = agent
            .get("http://192.0.2.10:6443/readyz")
            .call()
            .map(|mut r| r.body_mut().read_to_string().unwrap());
        dial_through(None);
        server.join().unwrap();
        assert_eq!(body.unwrap(), "ok");
    }
}
