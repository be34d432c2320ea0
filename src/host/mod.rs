//! Hosts kubicluster acts on: a small trait (run a command, read a file, write a file
//! atomically, stat + hash many paths in one round trip) with three implementations:
//! [`ssh::SshHost`] (ssh2, pinned host keys; the only ssh2 import), [`local::LocalHost`] (the
//! hypervisor itself) and [`fake::FakeHost`] (a scripted file system with a call log, for tests).
//!
//! Commands are argv vectors, never shell strings built from values: each argument is quoted
//! when it has to cross SSH, and arguments marked secret print as `[REDACTED]` in logs and errors.
//! Errors are typed ([`HostError`]) so callers branch on the kind, never on the message text.

pub mod dir;
#[cfg(any(test, feature = "testing"))]
pub mod fake;
pub mod local;
pub mod ssh;

use std::collections::BTreeMap;
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

/// What [`Host::probe`] read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    pub checks: Vec<bool>,
    /// (unit, enabled word, active word), as systemd says them.
    pub units: Vec<(String, String, String)>,
    pub stats: Vec<Stat>,
}

/// Each unit's (name, enabled word, active word), read with [`UNITS_SCRIPT`] in one call.
pub fn read_units<H: Host + ?Sized, S: AsRef<str>>(
    host: &H,
    units: &[S],
) -> HostResult<Vec<(String, String, String)>> {
    if units.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<&str> = units.iter().map(|u| u.as_ref()).collect();
    Ok(parse_units(
        &host.run(&Cmd::script(UNITS_SCRIPT, names))?.stdout_text(),
    ))
}

/// The longest timeout of `cmds` (a batch of them may take that long).
fn longest_timeout(cmds: &[Cmd]) -> Duration {
    cmds.iter()
        .map(|c| c.timeout)
        .max()
        .unwrap_or(DEFAULT_TIMEOUT)
}

/// [`UNITS_SCRIPT`]'s lines.
pub fn parse_units(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((
                f.next()?.to_string(),
                f.next()?.to_string(),
                f.next()?.to_string(),
            ))
        })
        .collect()
}

/// [`Host::probe`] in one round trip: the checks (as in [`batch_checks`]), then the units'
/// script, then the stat script, each on its own values, in one shell script. Falls back to
/// one call each when a check cannot be batched.
pub fn probe_at_once(
    host: &dyn Host,
    checks: &[Cmd],
    units: &[String],
    paths: &[String],
) -> HostResult<Probe> {
    if !checks.iter().all(batchable) {
        return Ok(Probe {
            checks: checks
                .iter()
                .map(|c| host.run(c).map(|o| o.ok()))
                .collect::<HostResult<_>>()?,
            units: read_units(host, units)?,
            stats: host.stat_many(paths)?,
        });
    }
    let set = |values: &[String]| -> String {
        let q: Vec<String> = values.iter().map(|v| shell_quote(v)).collect();
        format!("set -- {}\n", q.join(" "))
    };
    let mut script = String::new();
    for c in checks {
        script.push_str(&format!(
            "{} </dev/null >/dev/null 2>&1; echo \"C|$?\"\n",
            c.batch_line()
        ));
    }
    script.push_str("echo =units=\n");
    script.push_str(&set(units));
    script.push_str(&format!("if [ $# -gt 0 ]; then\n{UNITS_SCRIPT}\nfi\n"));
    script.push_str("echo =stat=\n");
    let known = host.known_digests();
    script.push_str(&known_line(&known, paths));
    script.push_str(&set(paths));
    script.push_str(&format!("if [ $# -gt 0 ]; then\n{STAT_SCRIPT}\nfi\n"));
    let mut cmd = Cmd::new(["sh", "-c", &script]);
    cmd.timeout = longest_timeout(checks);
    let out = host.check(&cmd)?;
    let text = out.stdout_text();
    let bad = |what: &str| HostError::Io {
        node: host.name().to_string(),
        what: format!("probe ({what})"),
        reason: format!("unexpected answer: {}", out.tail(3)),
    };
    let (head, rest) = text.split_once("=units=\n").ok_or_else(|| bad("checks"))?;
    let (unit_text, stat_text) = rest.split_once("=stat=\n").ok_or_else(|| bad("units"))?;
    let codes: Vec<bool> = head
        .lines()
        .filter_map(|l| l.strip_prefix("C|"))
        .map(|c| c.trim() == "0")
        .collect();
    if codes.len() != checks.len() {
        return Err(bad("checks"));
    }
    let stats = if paths.is_empty() {
        Vec::new()
    } else {
        let (stats, learned) =
            parse_stat_output(stat_text, paths, &known).ok_or_else(|| bad("stat"))?;
        host.remember_digests(learned);
        stats
    };
    Ok(Probe {
        checks: codes,
        units: parse_units(unit_text),
        stats,
    })
}

/// Run read-only commands in one round trip: each one's exit status (0?) and stdout, in order.
/// Commands that cannot be batched (stdin, a secret) run one by one.
pub fn run_all(host: &dyn Host, cmds: &[Cmd]) -> HostResult<Vec<(bool, String)>> {
    if cmds.len() < 2 || !cmds.iter().all(batchable) {
        return cmds
            .iter()
            .map(|c| host.run(c).map(|o| (o.ok(), o.stdout_text())))
            .collect();
    }
    let mut script = String::new();
    for (i, c) in cmds.iter().enumerate() {
        script.push_str(&format!(
            "echo '=out {i}='\n{} </dev/null 2>/dev/null; echo \"\n=rc $?=\"\n",
            c.batch_line()
        ));
    }
    let mut cmd = Cmd::new(["sh", "-c", &script]);
    cmd.timeout = longest_timeout(cmds);
    let text = host.check(&cmd)?.stdout_text();
    let bad = || HostError::Io {
        node: host.name().to_string(),
        what: "batch of reads".into(),
        reason: format!(
            "unexpected answer: {}",
            text.chars().take(200).collect::<String>()
        ),
    };
    let mut out = Vec::new();
    for i in 0..cmds.len() {
        let start =
            text.find(&format!("=out {i}=\n")).ok_or_else(bad)? + format!("=out {i}=\n").len();
        let rest = &text[start..];
        let end = rest.find("\n=rc ").ok_or_else(bad)?;
        let code = rest[end + 5..].split('=').next().ok_or_else(bad)?;
        out.push((code.trim() == "0", rest[..end].to_string()));
    }
    Ok(out)
}

/// Whether a command can run inside a batch script: no stdin, and no secret argument (it would
/// end up in the script's text, and so in the debug log).
fn batchable(c: &Cmd) -> bool {
    c.stdin.is_none() && c.argv.iter().all(|a| !a.secret)
}

/// [`Host::check_all`] in one round trip (the checks part of [`probe_at_once`]).
pub fn batch_checks(host: &dyn Host, cmds: &[Cmd]) -> HostResult<Vec<bool>> {
    if cmds.len() < 2 {
        return cmds.iter().map(|c| host.run(c).map(|o| o.ok())).collect();
    }
    Ok(probe_at_once(host, cmds, &[], &[])?.checks)
}

/// The shell script behind `stat_many` on hosts reached by command (SSH). Two processes whatever
/// the number of paths (`stat` and `awk`; fork is slow in emulated VMs), and `sha256sum` only
/// when a file must be hashed: dangling links
/// (`O|path`), one `stat` for all (`S|type|mode|owner|path`), then `--`, then each regular
/// file's identity (`K|size:inode:mtime:ctime|path`, nanoseconds) and the sha256 (`sha256sum`
/// lines) of those whose identity is not in `$known` (`key|path` lines the caller remembers
/// with their digest): an unchanged binary of hundreds of MB is not read again.
pub const STAT_SCRIPT: &str = r#"for p in "$@"; do if [ -L "$p" ] && [ ! -e "$p" ]; then echo "O|$p"; fi; done
stat -L -c 'S|%F|%a|%U|%s:%i:%.9Y:%.9Z|%n' -- "$@" 2>/dev/null | awk -v known="${known-}" '
BEGIN { n = split(known, L, "\n"); for (i = 1; i <= n; i++) k[L[i]] = 1; FS = "|" }
{ p = $0; for (i = 0; i < 5; i++) p = substr(p, index(p, "|") + 1)
  print $1 "|" $2 "|" $3 "|" $4 "|" p
  if ($2 == "regular file" || $2 == "regular empty file") {
    K[++nk] = "K|" $5 "|" p; if (!(($5 "|" p) in k)) H[++nh] = p } }
END { print "--"; for (i = 1; i <= nk; i++) print K[i]
  if (nh) { fflush(); c = "xargs -r -d \"\\n\" sha256sum -- 2>/dev/null"; for (i = 1; i <= nh; i++) print H[i] | c; close(c) } }'
exit 0"#;

/// What a host remembers of the files it hashed: path → (identity from [`STAT_SCRIPT`], sha256).
pub type Digests = BTreeMap<String, (String, String)>;

/// The shell line that hands [`STAT_SCRIPT`] the identities already known for `paths`.
pub fn known_line(known: &Digests, paths: &[String]) -> String {
    let lines: Vec<String> = paths
        .iter()
        .filter_map(|p| known.get(p).map(|(key, _)| format!("{key}|{p}")))
        .collect();
    format!("known={}\n", shell_quote(&lines.join("\n")))
}

/// The shell script that reads many systemd units' state in one round trip: one line per
/// unit, `UNIT ENABLED ACTIVE` (systemctl's words, `unknown` when it printed nothing).
/// One `systemctl show` for all of them (every process is slow on an emulated guest); a unit
/// systemd does not know is `not-found`.
pub const UNITS_SCRIPT: &str = r#"systemctl show --property=LoadState,UnitFileState,ActiveState -- "$@" 2>/dev/null | awk -v names="$*" '
BEGIN { n = split(names, N, " ") }
function out() { if (seen) { i++; e = uf != "" ? uf : (ls == "not-found" ? "not-found" : "unknown"); print N[i], e, (as != "" ? as : "unknown") }; seen = 0; ls = uf = as = "" }
/^$/ { out(); next }
{ seen = 1; k = $0; sub(/=.*/, "", k); v = $0; sub(/^[^=]*=/, "", v) }
k == "LoadState" { ls = v } k == "UnitFileState" { uf = v } k == "ActiveState" { as = v }
END { out(); while (i < n) { i++; print N[i], "unknown", "unknown" } }'"#;

/// Parse [`STAT_SCRIPT`]'s output for `paths`, in their order, with the digests it was told
/// (`known`); also every regular file's (identity, sha256), to remember.
pub fn parse_stat_output(
    text: &str,
    paths: &[String],
    known: &Digests,
) -> Option<(Vec<Stat>, Digests)> {
    let (stats, sums) = text
        .split_once("\n--\n")
        .or_else(|| text.strip_suffix("--\n").map(|s| (s, "")))?;
    let mut hashes = std::collections::HashMap::new();
    let mut keys = std::collections::HashMap::new();
    for l in sums.lines() {
        if let Some(r) = l.strip_prefix("K|") {
            let (key, path) = r.split_once('|')?;
            keys.insert(path.to_string(), key.to_string());
            continue;
        }
        let (sha, path) = l.split_once("  ")?;
        hashes.insert(path.to_string(), sha.to_string());
    }
    let mut learned = Digests::new();
    let mut by_path = std::collections::HashMap::new();
    for l in stats.lines() {
        if let Some(p) = l.strip_prefix("O|") {
            by_path.insert(p.to_string(), Stat::Other);
            continue;
        }
        let f: Vec<&str> = l.splitn(5, '|').collect();
        let ["S", kind, mode, owner, path] = f.as_slice() else {
            return None;
        };
        let mode = u32::from_str_radix(mode, 8).ok()?;
        let st = match *kind {
            "directory" => Stat::Dir {
                mode,
                owner: owner.to_string(),
            },
            "regular file" | "regular empty file" => {
                let key = keys.get(*path)?;
                let sha = match hashes.get(*path) {
                    Some(sha) => sha.clone(),
                    // Not hashed: the script found it as it was when hashed before.
                    None => match known.get(*path) {
                        Some((k, sha)) if k == key => sha.clone(),
                        _ => return None,
                    },
                };
                learned.insert(path.to_string(), (key.clone(), sha.clone()));
                Stat::File {
                    mode,
                    owner: owner.to_string(),
                    sha256: sha,
                }
            }
            _ => Stat::Other,
        };
        by_path.insert(path.to_string(), st);
    }
    Some((
        paths
            .iter()
            .map(|p| by_path.get(p).cloned().unwrap_or(Stat::Missing))
            .collect(),
        learned,
    ))
}

/// The shell script behind `write_file` on hosts reached by command: data on stdin, written to
/// a temp file next to the target, fsynced, given mode and owner, renamed over the target; then
/// the file's identity as [`STAT_SCRIPT`] prints it (`K|size:inode:mtime:ctime`), so the host
/// remembers the digest of what it wrote and the next plan need not read the file back.
pub const WRITE_SCRIPT: &str = r#"set -e
t="$(dirname "$1")/.$(basename "$1").kubicluster-tmp"
trap 'rm -f "$t"' EXIT
umask 077
cat > "$t"
chmod "$2" "$t"
chown "$3" "$t"
sync "$t" 2>/dev/null || sync
mv -f "$t" "$1"
trap - EXIT
stat -L -c 'K|%s:%i:%.9Y:%.9Z' -- "$1" 2>/dev/null || true"#;

/// The identity [`WRITE_SCRIPT`] printed for the file it wrote.
pub fn written_identity(stdout: &str) -> Option<String> {
    stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("K|"))
        .map(|k| k.trim().to_string())
        .filter(|k| k.split(':').count() == 4)
}

pub use crate::blob::sha256_hex;

#[cfg(test)]
mod tests {
    use super::*;

    /// A script batched as a subshell behaves as its own `sh -c`: its arguments (quoted, none
    /// left over from the batch), its exit code, nothing it sets leaks out.
    #[test]
    fn a_batched_script_keeps_its_arguments_and_exit_code() {
        let checks = [
            Cmd::script(
                r#"[ "$1" = "a b" ] && [ $# -eq 2 ] && exit 3"#,
                ["a b", "it's"],
            ),
            Cmd::script("[ $# -eq 0 ] || exit 1; x=leak", Vec::<String>::new()),
            Cmd::new(["sh", "-c", "[ -z \"$x\" ]"]),
            Cmd::new(["false"]),
        ];
        let batch: String = checks
            .iter()
            .map(|c| {
                format!(
                    "{} </dev/null >/dev/null 2>&1; echo \"C|$?\"\n",
                    c.batch_line()
                )
            })
            .collect();
        let out = std::process::Command::new("sh")
            .args(["-c", &batch, "sh", "outer", "args"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "C|3\nC|0\nC|0\nC|1\n");
    }

    #[test]
    fn secrets_are_redacted_and_values_quoted() {
        let c = Cmd::new(["etcdctl", "put", "a b"]).secret_arg("hunter2");
        assert_eq!(c.to_string(), "etcdctl put 'a b' [REDACTED]");
        assert_eq!(format!("{c:?}"), "Cmd(etcdctl put 'a b' [REDACTED])");
        assert_eq!(c.shell_line(), "etcdctl put 'a b' hunter2");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    /// The units' script against a stand-in `systemctl` printing what systemd 252's `show`
    /// prints for a known and an unknown unit (no systemd runs where the tests run).
    #[test]
    fn units_script_reads_systemctl_show() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("systemctl");
        std::fs::write(
            &fake,
            "#!/bin/sh\nprintf 'ActiveState=active\\nLoadState=loaded\\nUnitFileState=enabled\\n\\nActiveState=inactive\\nLoadState=not-found\\nUnitFileState=\\n\\nActiveState=activating\\nLoadState=loaded\\nUnitFileState=static\\n'\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = std::process::Command::new("sh")
            .args([
                "-c",
                UNITS_SCRIPT,
                "sh",
                "etcd.service",
                "gone.service",
                "x.service",
            ])
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    dir.path().display(),
                    std::env::var("PATH").unwrap()
                ),
            )
            .output()
            .unwrap();
        assert_eq!(
            parse_units(&String::from_utf8_lossy(&out.stdout)),
            [
                ("etcd.service", "enabled", "active"),
                ("gone.service", "not-found", "inactive"),
                ("x.service", "static", "activating"),
            ]
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        );
    }

    #[test]
    fn stat_output_parses() {
        let paths: Vec<String> = ["/m", "/d", "/f", "/o"].map(String::from).to_vec();
        let none = Digests::new();
        let (s, learned) = parse_stat_output(
            "O|/o\nS|directory|700|root|/d\nS|regular file|600|etcd|/f\n--\nK|3:7:1.0:1.0|/f\nabc  /f\n",
            &paths,
            &none,
        )
        .unwrap();
        assert_eq!(s[0], Stat::Missing);
        assert_eq!(
            s[1],
            Stat::Dir {
                mode: 0o700,
                owner: "root".into()
            }
        );
        assert!(matches!(&s[2], Stat::File { mode: 0o600, sha256, .. } if sha256 == "abc"));
        assert_eq!(s[3], Stat::Other);
        assert_eq!(learned["/f"], ("3:7:1.0:1.0".into(), "abc".into()));
        assert!(parse_stat_output("garbage", &paths, &none).is_none());
        // Not hashed, and not known with that identity: no answer rather than a guess.
        let unhashed = "S|regular file|600|etcd|/f\n--\nK|3:7:1.0:2.0|/f\n";
        assert!(parse_stat_output(unhashed, &paths, &learned).is_none());
        let same = "S|regular file|600|etcd|/f\n--\nK|3:7:1.0:1.0|/f\n";
        let (s, _) = parse_stat_output(same, &paths, &learned).unwrap();
        assert!(matches!(&s[2], Stat::File { sha256, .. } if sha256 == "abc"));
    }

    /// The real script: a file whose identity is known is not read again (a wrong remembered
    /// digest shows through, proving it was not re-hashed); any change to it — content, even
    /// rewritten with the same bytes — changes the identity and it is hashed again.
    #[test]
    fn stat_script_hashes_only_files_whose_identity_changed() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("kubelet").display().to_string();
        let g = d.path().join("with space").display().to_string();
        std::fs::write(&f, b"v1").unwrap();
        std::fs::write(&g, b"g").unwrap();
        let paths = vec![f.clone(), g.clone()];
        let run = |known: &Digests| {
            let script = format!("{}{STAT_SCRIPT}", known_line(known, &paths));
            let out = std::process::Command::new("sh")
                .args(["-c", &script, "sh"])
                .args(&paths)
                .output()
                .unwrap();
            parse_stat_output(&String::from_utf8_lossy(&out.stdout), &paths, known).unwrap()
        };
        let sha = |s: &Stat| match s {
            Stat::File { sha256, .. } => sha256.clone(),
            other => panic!("{other:?}"),
        };
        let (s, mut learned) = run(&Digests::new());
        assert_eq!(sha(&s[0]), sha256_hex(b"v1"));
        assert_eq!(sha(&s[1]), sha256_hex(b"g"));
        // Remembered with a digest that is not the file's: believed while the identity holds.
        learned.get_mut(&f).unwrap().1 = "remembered".into();
        let (s, _) = run(&learned);
        assert_eq!(sha(&s[0]), "remembered", "not read again");
        assert_eq!(sha(&s[1]), sha256_hex(b"g"));
        // Written again (same size): a new identity, hashed again.
        std::fs::write(&f, b"v2").unwrap();
        let (s, _) = run(&learned);
        assert_eq!(sha(&s[0]), sha256_hex(b"v2"));
        // Written by WRITE_SCRIPT: the identity it prints is the one the next stat sees, so
        // what was written is known without reading it back.
        let owner = String::from_utf8(
            std::process::Command::new("id")
                .arg("-un")
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let mut w = std::process::Command::new("sh")
            .args(["-c", WRITE_SCRIPT, "sh", &f, "640", owner.trim()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        w.stdin.take().unwrap().write_all(b"v3").unwrap();
        let out = w.wait_with_output().unwrap();
        assert!(out.status.success());
        let key = written_identity(&String::from_utf8_lossy(&out.stdout)).unwrap();
        let mut known = Digests::new();
        known.insert(f.clone(), (key, "as written".into()));
        let (s, _) = run(&known);
        assert_eq!(sha(&s[0]), "as written", "the written identity holds");
    }
}
