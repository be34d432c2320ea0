//! The loopback SSH tier, for real: an OpenSSH `sshd` on 127.0.0.1 at a free port with a host
//! key generated here. SshHost runs argv commands (stdin, large stderr without deadlock, exit
//! codes, timeouts), writes files atomically with mode and owner, stats and hashes many paths in
//! one round trip, refuses a host key that is not the pinned one, and re-establishes a dropped
//! connection. The engine plans and applies a desired state over it; a second plan is empty.
//! Gate: KUBICLUSTER_TEST_SSH=1 (set by `make test`); with the gate set, a missing sshd fails.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use common::*;
use kubicluster::engine::{Blob, Desired, GuardedCmd, plan};
use kubicluster::host::ssh::{SshHost, SshTarget};
use kubicluster::host::{Cmd, Host, HostError, Stat, sha256_hex};

struct Sshd {
    child: Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    host_key: ssh_key::PublicKey,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sshd() -> Sshd {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let host_key = sshd_files(d, "", addr, "ERROR");
    let child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(d.join("sshd_config"))
        .stdout(Stdio::null())
        .spawn()
        .expect("start sshd");
    // Ready once it answers with its banner (listening alone is not enough).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let banner =
            kubicluster::net::connect(&addr, Duration::from_millis(500)).and_then(|mut t| {
                t.set_read_timeout(Some(Duration::from_secs(2)))?;
                let mut b = [0u8; 8];
                std::io::Read::read_exact(&mut t, &mut b)?;
                Ok(b)
            });
        if banner.is_ok_and(|b| b.starts_with(b"SSH-2.0")) {
            break;
        }
        assert!(Instant::now() < deadline, "sshd did not answer on {addr}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Sshd {
        child,
        addr,
        host_key,
        dir,
    }
}

fn target(s: &Sshd, pinned: ssh_key::PublicKey) -> SshTarget {
    SshTarget {
        name: "loopback".into(),
        addr: s.addr,
        user: "root".into(),
        key: s.dir.path().join("client_key"),
        pinned,
        connect_timeout: Duration::from_secs(5),
        digest_cache: None,
        digest_cache_read_only: false,
    }
}

fn enabled() -> bool {
    if !tier_enabled("KUBICLUSTER_TEST_SSH", &[]) {
        return false;
    }
    assert!(
        std::path::Path::new("/usr/sbin/sshd").exists(),
        "KUBICLUSTER_TEST_SSH=1 but /usr/sbin/sshd is missing: install openssh-server (make test-deps)"
    );
    true
}

#[test]
fn commands_files_and_stats_over_real_ssh() {
    if !enabled() {
        return;
    }
    let s = start_sshd();
    let h = SshHost::connect_retrying(target(&s, s.host_key.clone()), 5).unwrap();
    let o = h
        .run(&Cmd::new(["sh", "-c", "cat; echo err >&2; exit 7"]).stdin(b"in put\n".to_vec()))
        .unwrap();
    assert_eq!((o.status, o.stdout_text().as_str()), (7, "in put\n"));
    assert_eq!(o.tail(1), "err");
    // 3 MB on stderr and 3 MB on stdout at once: no deadlock, nothing lost.
    let o = h
        .run(&Cmd::script(
            "head -c 3000000 /dev/zero | tr '\\0' e >&2 & head -c 3000000 /dev/zero | tr '\\0' o; wait",
            Vec::<String>::new(),
        ))
        .unwrap();
    assert_eq!((o.stdout.len(), o.stderr.len()), (3_000_000, 3_000_000));
    // Arguments with spaces and quotes arrive as they were given.
    let o = h
        .run(&Cmd::new(["printf", "%s|", "a b", "it's", "$HOME"]))
        .unwrap();
    assert_eq!(o.stdout_text(), "a b|it's|$HOME|");
    let e = h.check(&Cmd::new(["false"])).unwrap_err();
    assert!(matches!(e, HostError::Exec { status: 1, .. }), "{e}");
    let e = h
        .run(&Cmd::new(["sleep", "10"]).timeout(Duration::from_millis(300)))
        .unwrap_err();
    assert!(matches!(e, HostError::Timeout { .. }), "{e}");
    // Atomic writes with mode and owner; reads; stats with hashes in one call.
    let dir = s.dir.path().join("remote");
    std::fs::create_dir(&dir).unwrap();
    let f = dir.join("secret.pem").display().to_string();
    h.write_file(&f, b"KEY DATA", 0o600, "root").unwrap();
    h.write_file(&f, b"KEY DATA 2", 0o640, "root").unwrap();
    assert_eq!(std::fs::read(&f).unwrap(), b"KEY DATA 2");
    assert_eq!(h.read_file(&f).unwrap().unwrap(), b"KEY DATA 2");
    assert_eq!(h.read_file(&format!("{f}.nope")).unwrap(), None);
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["secret.pem"], "no temp file left behind");
    let st = h
        .stat_many(&[f.clone(), dir.display().to_string(), format!("{f}.nope")])
        .unwrap();
    assert_eq!(
        st[0],
        Stat::File {
            mode: 0o640,
            owner: "root".into(),
            sha256: sha256_hex(b"KEY DATA 2")
        }
    );
    assert!(matches!(st[1], Stat::Dir { .. }));
    assert_eq!(st[2], Stat::Missing);
    // Guards in one round trip: quoting survives, each status is its own, output is dropped.
    let odd = "a b'c $HOME";
    let checks = [
        Cmd::new(["test", "-f", &f]),
        Cmd::new(["test", "-e", &format!("{f}.nope")]),
        Cmd::new(["test", odd, "=", odd]),
        Cmd::new(["sh", "-c", "echo noise; echo more >&2; exit 3"]),
        Cmd::new(["true"]),
    ];
    assert_eq!(
        h.check_all(&checks).unwrap(),
        [true, false, true, false, true]
    );
    // The engine's probe: the same checks, units and stats in one round trip, read as the
    // separate calls read them (no systemd here: its units read as unknown either way).
    let units = vec!["etcd.service".to_string()];
    let paths = vec![f.clone(), dir.display().to_string(), format!("{f}.nope")];
    let probe = h.probe(&checks, &units, &paths).unwrap();
    assert_eq!(probe.checks, [true, false, true, false, true]);
    assert_eq!(probe.stats, h.stat_many(&paths).unwrap());
    assert_eq!(
        probe.units,
        kubicluster::host::parse_units(
            &h.run(&Cmd::script(kubicluster::host::UNITS_SCRIPT, &units))
                .unwrap()
                .stdout_text()
        )
    );
    assert_eq!(probe.units.len(), 1);
    // With the run's facts read first, in the same round trip.
    let reads = [
        Cmd::new(["echo", odd]),
        Cmd::new(["test", "-e", &format!("{f}.nope")]),
    ];
    let (outs, again) = h.probe_reading(&reads, &checks, &units, &paths).unwrap();
    assert_eq!(
        outs,
        vec![(true, format!("{odd}\n")), (false, String::new())]
    );
    assert_eq!(again, probe);
    let empty = h.probe(&[], &[], &[]).unwrap();
    assert_eq!(empty, kubicluster::host::Probe::default());
    let e = h
        .write_file("/nonexistent-dir/x", b"x", 0o644, "root")
        .unwrap_err();
    assert!(
        matches!(e, HostError::Io { .. }) && e.to_string().contains("write /nonexistent-dir/x"),
        "{e}"
    );
}

#[test]
fn a_wrong_host_key_is_refused_and_a_dropped_connection_comes_back() {
    if !enabled() {
        return;
    }
    let s = start_sshd();
    let other = kubicluster::sshkeys::ensure_key(&s.dir.path().join("other"), "x").unwrap();
    let e = SshHost::connect_retrying(target(&s, other.public_key().clone()), 5)
        .err()
        .expect("refused");
    assert!(matches!(e, HostError::HostKeyMismatch { .. }), "{e}");
    assert!(e.hint().unwrap().contains("pinned key"));

    let h = SshHost::connect_retrying(target(&s, s.host_key.clone()), 5).unwrap();
    let port_of = |h: &SshHost| {
        h.check(&Cmd::script(
            "echo \"$SSH_CONNECTION\" | cut -d' ' -f2",
            Vec::<String>::new(),
        ))
        .unwrap()
        .stdout_text()
    };
    let first = port_of(&h);
    assert_eq!(port_of(&h), first, "one session reused");
    // Kill this connection's sshd process from inside it.
    let _ = h.run(&Cmd::script("kill -9 $PPID", Vec::<String>::new()));
    let second = port_of(&h);
    assert_ne!(second, first, "a new connection after the drop");
}

#[test]
fn the_engine_converges_over_ssh_and_then_plans_nothing() {
    if !enabled() {
        return;
    }
    let s = start_sshd();
    let h = SshHost::connect_retrying(target(&s, s.host_key.clone()), 5).unwrap();
    let root = s.dir.path().join("node");
    let p = |x: &str| format!("{}/{x}", root.display());
    let mut want = Desired::default();
    want.dir(&p(""), 0o755)
        .dir(&p("etc"), 0o700)
        .file(&p("etc/a.conf"), Blob::new("a=1\n"), 0o644, &[])
        .secret(&p("etc/key.pem"), Blob::new("KEY"), &[])
        .command(GuardedCmd {
            what: "make the marker".into(),
            check: Cmd::new(["test", "-e", &p("marker")]),
            run: Cmd::new(["touch", &p("marker")]),
            restarts: vec![],
            after_units: false,
        });
    let changes = plan::plan(&h, &want).unwrap();
    assert_eq!(changes.len(), 5, "{changes:?}");
    let cancel = AtomicBool::new(false);
    assert_eq!(plan::apply(&h, &want, &changes, &cancel).unwrap(), 5);
    // The two directories and the two files went in one round trip each, modes as asked.
    assert_eq!(std::fs::read_to_string(p("etc/a.conf")).unwrap(), "a=1\n");
    assert_eq!(std::fs::read_to_string(p("etc/key.pem")).unwrap(), "KEY");
    let mode = |x: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p(x)).unwrap().permissions().mode() & 0o7777
    };
    assert_eq!(
        (mode("etc"), mode("etc/a.conf"), mode("etc/key.pem")),
        (0o700, 0o644, 0o600)
    );
    assert!(std::path::Path::new(&p("marker")).exists());
    assert_eq!(plan::plan(&h, &want).unwrap(), vec![], "converged");
    // A changed file is the only change.
    std::fs::write(p("etc/a.conf"), "a=2\n").unwrap();
    let again = plan::plan(&h, &want).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        again[0].to_string(),
        format!("write {} (0644): content differs", p("etc/a.conf"))
    );
}

/// A remote hypervisor's VMs are reached through its SSH server (`ssh -J`): here the loopback
/// sshd is both the jump host and the "VM" behind it. The jump host's key is checked against an
/// OpenSSH known_hosts file (unknown or different: refused), the VM's key against its pin, and
/// the relay carries a real SSH session both ways (a large output, a large input).
#[test]
fn a_jump_host_relays_with_both_host_keys_checked() {
    use kubicluster::host::ssh::jump::Jump;
    use std::io::{Read, Write};
    if !enabled() {
        return;
    }
    let s = start_sshd();
    let client_key = s.dir.path().join("client_key");
    let kh = s.dir.path().join("known_hosts");
    let line = |k: &ssh_key::PublicKey| {
        format!(
            "[127.0.0.1]:{} {}\n",
            s.addr.port(),
            kubicluster::sshkeys::public_line(k)
        )
    };
    std::fs::write(&kh, line(&s.host_key)).unwrap();
    let jump = Jump {
        host: "127.0.0.1".into(),
        port: s.addr.port(),
        user: "root".into(),
        keys: vec![client_key.clone()],
        known_hosts: kh.clone(),
    };
    let tcp = jump.connect(&s.addr, Duration::from_secs(5)).unwrap();
    let mut sess = ssh2::Session::new().unwrap();
    sess.set_tcp_stream(tcp);
    sess.handshake().unwrap();
    assert_eq!(
        sess.host_key().unwrap().0,
        s.host_key.to_bytes().unwrap().as_slice(),
        "the far side's own key, not the jump's"
    );
    sess.userauth_pubkey_file("root", None, &client_key, None)
        .unwrap();
    let mut ch = sess.channel_session().unwrap();
    ch.exec("head -c 300000 /dev/zero | tr '\\0' x; echo; echo done")
        .unwrap();
    let mut out = String::new();
    ch.read_to_string(&mut out).unwrap();
    ch.wait_close().unwrap();
    assert_eq!(out.len(), 300_000 + "\ndone\n".len());
    assert!(out.ends_with("x\ndone\n"));
    let mut ch = sess.channel_session().unwrap();
    ch.exec("wc -c").unwrap();
    ch.write_all(&vec![b'y'; 1_000_000]).unwrap();
    ch.send_eof().unwrap();
    let mut out = String::new();
    ch.read_to_string(&mut out).unwrap();
    assert_eq!(out.trim(), "1000000");
    // Nothing behind the jump at that port: refused, naming the jump.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap();
    drop(closed);
    let err = jump.connect(&port, Duration::from_secs(5)).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("{port} through jump host root@127.0.0.1:")),
        "{err}"
    );
    // The jump host's key unknown: refused, with the way to record it.
    std::fs::write(&kh, "").unwrap();
    let err = jump.connect(&s.addr, Duration::from_secs(5)).unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "is not in {} (kubicluster never trusts an unknown host; connect once with `ssh -p {} root@127.0.0.1`",
            kh.display(),
            s.addr.port()
        )),
        "{err}"
    );
    // Another key recorded for it: refused.
    let other = kubicluster::sshkeys::ensure_key(&s.dir.path().join("other"), "x").unwrap();
    std::fs::write(&kh, line(other.public_key())).unwrap();
    let err = jump.connect(&s.addr, Duration::from_secs(5)).unwrap_err();
    assert!(err.to_string().contains("is not the one"), "{err}");
}
