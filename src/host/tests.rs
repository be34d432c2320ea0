//! The host module's pure parts: commands and their quoting, the scripts' parsers, batching.

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

/// [`STAT_SCRIPT`] run here on `paths`, told the digests `known`.
fn stat_here(paths: &[String], known: &Digests) -> (Vec<Stat>, Digests) {
    let script = format!("{}{STAT_SCRIPT}", known_line(known, paths));
    let out = std::process::Command::new("sh")
        .args(["-c", &script, "sh"])
        .args(paths)
        .output()
        .unwrap();
    parse_stat_output(&String::from_utf8_lossy(&out.stdout), paths, known).unwrap()
}

/// `sh -c script sh args…` run here with `stdin` on its standard input.
fn sh_with_stdin(script: &str, args: &[&str], stdin: &[u8]) -> std::process::Output {
    use std::io::Write as _;
    let mut w = std::process::Command::new("sh")
        .args(["-c", script, "sh"])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A script that fails first reads nothing: the pipe may break.
    let _ = w.stdin.take().unwrap().write_all(stdin);
    w.wait_with_output().unwrap()
}

/// The user this test runs as (the owner a script's chown can give without root).
fn me() -> String {
    let out = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
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
    let run = |known: &Digests| stat_here(&paths, known);
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
    let owner = me();
    let out = sh_with_stdin(WRITE_SCRIPT, &[&f, "640", &owner], b"v3");
    assert!(out.status.success());
    let key = written_identity(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let mut known = Digests::new();
    known.insert(f.clone(), (key, "as written".into()));
    let (s, _) = run(&known);
    assert_eq!(sha(&s[0]), "as written", "the written identity holds");
}

/// The real batched write: every file replaced atomically with its bytes and mode, no temp
/// file left, each identity printed as the next stat sees it; a missing directory fails the
/// whole batch before anything is written.
#[test]
fn write_many_writes_every_file_in_one_script() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("kubelet.conf").display().to_string();
    let b = d.path().join("with space.pem").display().to_string();
    std::fs::write(&a, b"old").unwrap();
    let owner = me();
    let owner = owner.as_str();
    let run = |files: &[NewFile<'_>]| {
        let (script, tar) = write_many(files).unwrap();
        sh_with_stdin(&script, &[], &tar)
    };
    let files = [
        NewFile {
            path: &a,
            data: b"new config",
            mode: 0o640,
            owner,
        },
        NewFile {
            path: &b,
            data: b"secret",
            mode: 0o600,
            owner,
        },
    ];
    let out = run(&files);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&a).unwrap(), b"new config");
    assert_eq!(std::fs::read(&b).unwrap(), b"secret");
    let mode = |p: &str| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!((mode(&a), mode(&b)), (0o640, 0o600));
    let left: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".kubicluster-tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let keys = written_identities(&String::from_utf8_lossy(&out.stdout));
    let paths = vec![a.clone(), b.clone()];
    let mut known = Digests::new();
    for p in &paths {
        known.insert(p.clone(), (keys[p].clone(), format!("as written {p}")));
    }
    let (s, _) = stat_here(&paths, &known);
    for (st, p) in s.iter().zip(&paths) {
        assert!(
            matches!(st, Stat::File { sha256, .. } if *sha256 == format!("as written {p}")),
            "the identity printed is the one stat sees: {st:?}"
        );
    }
    // A file whose directory does not exist: nothing of the batch is written.
    let gone = d.path().join("no-such-dir/x").display().to_string();
    let out = run(&[
        NewFile {
            path: &a,
            data: b"third",
            mode: 0o640,
            owner,
        },
        NewFile {
            path: &gone,
            data: b"x",
            mode: 0o600,
            owner,
        },
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no directory"));
    assert_eq!(std::fs::read(&a).unwrap(), b"new config", "untouched");
    assert!(!d.path().join("no-such-dir").exists());
}
