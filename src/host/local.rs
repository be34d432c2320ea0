//! The hypervisor itself as a [`Host`]: commands run as child processes (argv, no shell), files
//! written with [`crate::fsutil::write_atomic`]. Used for the hypervisor's own facts and for tests.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Cmd, Host, HostError, HostResult, Output, Stat, sha256_hex};
use crate::fsutil;

pub struct LocalHost {
    name: String,
}

impl LocalHost {
    pub fn new(name: impl Into<String>) -> Self {
        LocalHost { name: name.into() }
    }

    fn io(&self, what: String, e: impl std::fmt::Display) -> HostError {
        HostError::Io {
            node: self.name.clone(),
            what,
            reason: e.to_string(),
        }
    }
}

fn owner_name(uid: u32) -> String {
    // /etc/passwd is enough for the hypervisor's own files (root, mostly).
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| uid.to_string())
}

impl Host for LocalHost {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(&self, cmd: &Cmd) -> HostResult<Output> {
        let argv = cmd.values();
        let (prog, args) = argv
            .split_first()
            .ok_or_else(|| self.io("run".into(), "empty command"))?;
        let mut child = Command::new(prog)
            .args(args)
            .stdin(if cmd.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.io(format!("run `{cmd}`"), e))?;
        // Feed stdin and drain both pipes on their own threads: no deadlock on large output.
        let stdin = cmd.stdin.clone();
        let mut pin = child.stdin.take();
        let feeder = std::thread::spawn(move || {
            if let (Some(data), Some(p)) = (stdin, pin.as_mut()) {
                let _ = p.write_all(&data);
            }
        });
        let mut out = child.stdout.take().expect("piped");
        let mut err = child.stderr.take().expect("piped");
        let t_out = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = out.read_to_end(&mut b);
            b
        });
        let t_err = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = err.read_to_end(&mut b);
            b
        });
        let deadline = Instant::now() + cmd.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(HostError::Timeout {
                        node: self.name.clone(),
                        cmd: cmd.to_string(),
                        after: cmd.timeout,
                    });
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(self.io(format!("wait for `{cmd}`"), e)),
            }
        };
        let _ = feeder.join();
        Ok(Output {
            status: status.code().unwrap_or(128),
            stdout: t_out.join().unwrap_or_default(),
            stderr: t_err.join().unwrap_or_default(),
        })
    }

    fn read_file(&self, path: &str) -> HostResult<Option<Vec<u8>>> {
        fsutil::read_optional(std::path::Path::new(path))
            .map_err(|e| self.io(format!("read {path}"), format!("{e:#}")))
    }

    fn write_file(&self, path: &str, data: &[u8], mode: u32, owner: &str) -> HostResult<()> {
        let p = std::path::Path::new(path);
        fsutil::write_atomic(p, data, mode)
            .map_err(|e| self.io(format!("write {path}"), format!("{e:#}")))?;
        let current = std::fs::metadata(p)
            .map(|m| owner_name(m.uid()))
            .unwrap_or_default();
        if current != owner {
            let o = self.run(&Cmd::new(["chown", owner, path]))?;
            if !o.ok() {
                return Err(self.io(format!("chown {owner} {path}"), o.tail(3)));
            }
        }
        Ok(())
    }

    fn stat_many(&self, paths: &[String]) -> HostResult<Vec<Stat>> {
        paths
            .iter()
            .map(|p| {
                let md = match std::fs::metadata(p) {
                    Ok(m) => m,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Ok(if std::fs::symlink_metadata(p).is_ok() {
                            Stat::Other
                        } else {
                            Stat::Missing
                        });
                    }
                    Err(e) => return Err(self.io(format!("stat {p}"), e)),
                };
                let mode = md.permissions().mode() & 0o7777;
                let owner = owner_name(md.uid());
                Ok(if md.is_dir() {
                    Stat::Dir { mode, owner }
                } else if md.is_file() {
                    let data = std::fs::read(p).map_err(|e| self.io(format!("read {p}"), e))?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_argv_feeds_stdin_and_times_out() {
        let h = LocalHost::new("local");
        let o = h
            .run(&Cmd::new(["sh", "-c", "cat; echo err >&2; exit 3"]).stdin(b"in\n".to_vec()))
            .unwrap();
        assert_eq!(
            (o.status, o.stdout_text(), o.tail(1)),
            (3, "in\n".into(), "err".into())
        );
        let e = h
            .run(&Cmd::new(["sleep", "5"]).timeout(Duration::from_millis(100)))
            .unwrap_err();
        assert!(matches!(e, HostError::Timeout { .. }), "{e}");
        let e = h.check(&Cmd::new(["false"])).unwrap_err();
        assert!(matches!(e, HostError::Exec { status: 1, .. }), "{e}");
    }

    #[test]
    fn writes_and_stats() {
        let d = tempfile::tempdir().unwrap();
        let h = LocalHost::new("local");
        let f = d.path().join("f").display().to_string();
        let me = owner_name(std::fs::metadata(d.path()).unwrap().uid());
        h.write_file(&f, b"hello", 0o640, &me).unwrap();
        assert_eq!(h.read_file(&f).unwrap().unwrap(), b"hello");
        let missing = d.path().join("nope").display().to_string();
        let s = h
            .stat_many(&[f.clone(), d.path().display().to_string(), missing.clone()])
            .unwrap();
        assert_eq!(
            s[0],
            Stat::File {
                mode: 0o640,
                owner: me.clone(),
                sha256: sha256_hex(b"hello")
            }
        );
        assert!(matches!(s[1], Stat::Dir { .. }));
        assert_eq!(s[2], Stat::Missing);
        assert_eq!(h.read_file(&missing).unwrap(), None);
        // The same answers from the shell script SSH hosts use.
        let o = h
            .check(&Cmd::script(super::super::STAT_SCRIPT, [&f, &missing]))
            .unwrap();
        let (via_sh, _) = super::super::parse_stat_output(
            &o.stdout_text(),
            &[f.clone(), missing.clone()],
            &Default::default(),
        )
        .unwrap();
        assert_eq!(via_sh, vec![s[0].clone(), Stat::Missing]);
    }
}

#[cfg(test)]
mod batch_tests {
    use super::*;

    /// Several reads in one shell: each one's exit status and stdout, in order, even when one
    /// prints nothing, fails, or prints what looks like the batch's own markers.
    #[test]
    fn run_all_answers_each_command_in_one_round_trip() {
        let h = LocalHost::new("local");
        let out = crate::host::run_all(
            &h,
            &[
                Cmd::new(["echo", "a"]),
                Cmd::new(["false"]),
                Cmd::script(
                    "echo x; echo '=rc 0=' >&2; printf 'two\\nlines'; exit 3",
                    [""; 0],
                ),
                Cmd::new(["test", "-d", "/"]),
            ],
        )
        .unwrap();
        assert_eq!(
            out,
            vec![
                (true, "a\n".to_string()),
                (false, String::new()),
                (false, "x\ntwo\nlines".to_string()),
                (true, String::new()),
            ]
        );
    }

    /// Reads, checks, units and stats in one shell, each answered as the separate calls
    /// answer it, even when a read prints the probe's own section markers.
    #[test]
    fn a_probe_reads_commands_in_the_same_round_trip() {
        let h = LocalHost::new("local");
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        let reads = [
            Cmd::script("echo =checks=; echo =units=; exit 1", [""; 0]),
            Cmd::new(["echo", "kata: no /dev/kvm"]),
        ];
        let checks = [Cmd::new(["true"]), Cmd::new(["false"])];
        let paths = vec![
            f.display().to_string(),
            d.path().join("no").display().to_string(),
        ];
        let (outs, probe) =
            crate::host::probe_reading_at_once(&h, &reads, &checks, &[], &paths).unwrap();
        assert_eq!(
            outs,
            vec![
                (false, "=checks=\n=units=\n".to_string()),
                (true, "kata: no /dev/kvm\n".to_string()),
            ]
        );
        assert_eq!(probe.checks, [true, false]);
        assert_eq!(probe.stats, h.stat_many(&paths).unwrap());
        // Without reads it is the plain probe.
        assert_eq!(
            crate::host::probe_at_once(&h, &checks, &[], &paths).unwrap(),
            probe
        );
    }
}
