//! What a node step wants on a node: directories, files (content, mode, owner, secret or not),
//! systemd units (enabled, started) and commands guarded by a check. Steps build a [`Desired`]
//! from the cluster spec (and read-only facts); the engine diffs it against the node.

pub use crate::blob::Blob;
use crate::host::Cmd;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirSpec {
    pub path: String,
    pub mode: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    pub path: String,
    pub content: Blob,
    pub mode: u32,
    pub owner: String,
    /// Keys, kubeconfigs, the encryption config: content never printed, mode 0600 expected.
    pub secret: bool,
    /// Written only when absent, never updated (e.g. etcd's bootstrap settings, which etcd
    /// ignores once it has data).
    pub create_only: bool,
    /// Units restarted when this file changes.
    pub restarts: Vec<String>,
    /// Needed only by the guarded command with this `what` (an image archive to import): checked
    /// and uploaded only when that command is going to run.
    pub payload_of: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitSpec {
    /// e.g. `etcd.service`; its file goes to `/etc/systemd/system/<name>`.
    pub name: String,
    pub file: Blob,
    pub enable: bool,
    pub start: bool,
    /// `systemctl start --no-block` (etcd members wait for their peers: never block on one).
    pub no_block: bool,
    /// Why the unit is installed but not started (e.g. its binary could not be had).
    pub not_started: Option<String>,
    /// A change of its files (not of the unit file itself) is picked up with `systemctl reload`
    /// instead of a restart: keepalived re-reads its configuration on SIGHUP and keeps the
    /// address it holds, where a restart would hand it to another controller.
    pub reload: bool,
}

/// Mode of every unit file kubicluster writes: root's alone, as the CIS benchmark asks of
/// component service files (items 1.1.1–1.1.8, 4.1.1).
pub const UNIT_MODE: u32 = 0o600;

impl UnitSpec {
    /// The `[Install]` links an enabled unit must have (none for a unit not enabled).
    pub fn links(&self) -> Vec<String> {
        match self.file.data() {
            Ok(bytes) if self.enable => {
                crate::host::install_links(&self.name, &String::from_utf8_lossy(bytes))
            }
            _ => Vec::new(),
        }
    }

    /// A unit enabled and started (blocking until it is up).
    pub fn started(name: &str, file: Blob) -> Self {
        UnitSpec {
            name: name.to_string(),
            file,
            enable: true,
            start: true,
            no_block: false,
            not_started: None,
            reload: false,
        }
    }

    /// Started, and reloaded rather than restarted when one of its files changes.
    pub fn reloaded(self) -> Self {
        UnitSpec {
            reload: true,
            ..self
        }
    }

    pub fn path(&self) -> String {
        format!("{}/{}", crate::host::UNIT_DIR, self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardedCmd {
    /// What it does, for plans: "import pause.tar (registry.k8s.io/pause:3.10)".
    pub what: String,
    /// Exit 0 = already done, nothing to run.
    pub check: Cmd,
    pub run: Cmd,
    /// Units restarted when it ran.
    pub restarts: Vec<String>,
    /// Run after the units were (re)started instead of before.
    pub after_units: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub dirs: Vec<DirSpec>,
    pub files: Vec<FileSpec>,
    pub commands: Vec<GuardedCmd>,
    pub units: Vec<UnitSpec>,
    /// Things the step could not do on this node and why (kata without KVM, …), reported once
    /// with the units that are not started.
    pub notes: Vec<(String, String)>,
}

impl Desired {
    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.dirs.push(DirSpec {
            path: path.to_string(),
            mode,
        });
        self
    }

    /// A root-owned file; `secret` files are 0600.
    pub fn file(&mut self, path: &str, content: Blob, mode: u32, restarts: &[&str]) -> &mut Self {
        self.files.push(FileSpec {
            path: path.to_string(),
            content,
            mode,
            owner: "root".into(),
            secret: false,
            create_only: false,
            restarts: restarts.iter().map(|s| s.to_string()).collect(),
            payload_of: None,
        });
        self
    }

    pub fn secret(&mut self, path: &str, content: Blob, restarts: &[&str]) -> &mut Self {
        self.file(path, content, 0o600, restarts);
        self.files.last_mut().expect("just pushed").secret = true;
        self
    }

    pub fn unit(&mut self, u: UnitSpec) -> &mut Self {
        self.units.push(u);
        self
    }

    /// Report that `what` is not in effect on this node, and why.
    pub fn note(&mut self, what: &str, why: impl Into<String>) -> &mut Self {
        self.notes.push((what.to_string(), why.into()));
        self
    }

    pub fn command(&mut self, c: GuardedCmd) -> &mut Self {
        self.commands.push(c);
        self
    }

    /// Every path this node must have (dirs, files, unit files), for `render`.
    pub fn all_files(&self) -> Vec<(String, u32, &Blob)> {
        let mut v: Vec<(String, u32, &Blob)> = self
            .files
            .iter()
            .map(|f| (f.path.clone(), f.mode, &f.content))
            .collect();
        v.extend(self.units.iter().map(|u| (u.path(), UNIT_MODE, &u.file)));
        v
    }
}
