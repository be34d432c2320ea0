//! Hosts kubicluster runs commands on. `SshHost` (ssh2, pinned host keys) is the only place that
//! imports ssh2. Later steps add files (put/get) and a `FakeHost` for tests.

pub mod ssh;

use anyhow::Result;

/// Output of a remote command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

pub trait Host: Send {
    /// The node name, for messages.
    fn name(&self) -> &str;
    /// Run a shell command.
    fn run(&mut self, command: &str) -> Result<Output>;
}
