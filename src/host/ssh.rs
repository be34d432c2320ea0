//! SSH over ssh2 with a pinned host key: the connection is refused unless the server presents
//! exactly the key kubicluster generated for that VM (no trust-on-first-use, no
//! `StrictHostKeyChecking=no` as in the original).

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ssh_key::PublicKey;

use super::{Host, Output};
use crate::sshkeys;

pub struct SshHost {
    name: String,
    session: ssh2::Session,
}

impl SshHost {
    /// Connect to `addr`, check the host key, log in as `user` with `key`.
    pub fn connect(
        name: &str,
        addr: SocketAddr,
        user: &str,
        key: &Path,
        expected: &PublicKey,
        timeout: Duration,
    ) -> Result<Self> {
        let tcp = TcpStream::connect_timeout(&addr, timeout)
            .with_context(|| format!("{name}: connect to {addr}"))?;
        let mut session = ssh2::Session::new().context("create SSH session")?;
        session.set_tcp_stream(tcp);
        session.set_timeout(u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX));
        session
            .handshake()
            .with_context(|| format!("{name}: SSH handshake with {addr}"))?;
        let (offered, _) = session
            .host_key()
            .with_context(|| format!("{name}: no host key from {addr}"))?;
        let want = expected.to_bytes().context("encode expected host key")?;
        if offered != want.as_slice() {
            let got = PublicKey::from_bytes(offered)
                .map(|k| sshkeys::fingerprint(&k))
                .unwrap_or_else(|_| "an unreadable key".into());
            bail!(
                "{name}: host key mismatch at {addr}: expected {}, got {got}; refusing to connect (another machine may hold this address)",
                sshkeys::fingerprint(expected)
            );
        }
        session
            .userauth_pubkey_file(user, None, key, None)
            .with_context(|| {
                format!("{name}: log in as {user} at {addr} with {}", key.display())
            })?;
        Ok(SshHost {
            name: name.to_string(),
            session,
        })
    }
}

impl Host for SshHost {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(&mut self, command: &str) -> Result<Output> {
        let mut ch = self
            .session
            .channel_session()
            .with_context(|| format!("{}: open channel", self.name))?;
        ch.exec(command)
            .with_context(|| format!("{}: run {command:?}", self.name))?;
        let mut stdout = String::new();
        ch.read_to_string(&mut stdout)?;
        let mut stderr = String::new();
        ch.stderr().read_to_string(&mut stderr)?;
        ch.wait_close()?;
        Ok(Output {
            status: ch.exit_status()?,
            stdout,
            stderr,
        })
    }
}
