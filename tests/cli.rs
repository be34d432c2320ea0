//! The binary as a user meets it: exit codes, one-line errors with a hint, nothing created on
//! bad input, the legacy command lines, and `--help` for every command (snapshots).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn kubicluster(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubicluster"))
        .current_dir(cwd)
        .args(args)
        // A clean environment: no KUBICLUSTER_* or legacy variables leak in from the caller.
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("run kubicluster")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn legacy_cnc_command_line_makes_the_whole_pki() {
    let tmp = tempfile::tempdir().unwrap();
    let (c1, w1, w2) = (controller(1), worker(1), worker(2));
    let o = kubicluster(tmp.path(), &["cnc", "-c", &c1, "-w", &w1, "-w", &w2]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = tmp.path().join("work/kubicluster/certs_and_configs");
    for f in [
        "ca.pem",
        "ca-key.pem",
        "etcd-ca.pem",
        "front-proxy-ca.pem",
        "kubernetes.pem",
        "service-accounts.pem",
        "admin.pem",
        "kube-controller-manager.pem",
        "kube-scheduler.pem",
        "kube-proxy.pem",
        "calico-cni.pem",
        "kubi-worker-01.pem",
        "kubi-worker-02.pem",
        "etcd-server-kubi-controller-01.pem",
        "etcd-peer-kubi-controller-01.pem",
        "apiserver-etcd-client.pem",
        "apiserver-kubelet-client.pem",
        "front-proxy-client.pem",
        "admin.kubeconfig",
        "kubi-worker-01.kubeconfig",
        "kube-proxy.kubeconfig",
        "kube-controller-manager.kubeconfig",
        "kube-scheduler.kubeconfig",
        "calico-cni.kubeconfig",
        "encryption-config.yaml",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let err = stderr(&o);
    assert!(
        err.contains("cnc: 25 created, 0 re-issued or updated, 0 kept"),
        "{err}"
    );
    // again, with -f: leaves re-issued, CAs kept
    let o = kubicluster(tmp.path(), &["cnc", "-c", &c1, "-w", &w1, "-w", &w2, "-f"]);
    assert!(o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("  kept      ca.pem")
            && err.contains("  reissued  admin.pem (forced (--force))"),
        "{err}"
    );
    // the admin kubeconfig is handed out on stdout
    let o = kubicluster(tmp.path(), &["kubeconfig", "-c", &c1, "-w", &w1, "-w", &w2]);
    assert!(o.status.success());
    assert!(stdout(&o).starts_with("apiVersion: v1\nkind: Config\n"));
}

#[test]
fn bad_input_exits_2_with_one_line_per_problem_and_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let o = kubicluster(
        tmp.path(),
        &[
            "cnc",
            "-c",
            "Bad_Name,192.168.24.11,192.168.122.11",
            "-w",
            "w1,192.168.99.21,192.168.122.21",
            "-kv=1.18.5",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    insta::assert_snapshot!(err);
    assert!(
        !tmp.path().join("work").exists(),
        "nothing may be created on bad input"
    );
}

#[test]
fn unreadable_file_and_broken_yaml_are_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let o = kubicluster(tmp.path(), &["validate", "-f", "missing.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.starts_with("error: cannot read cluster file missing.yaml: No such file"),
        "{err}"
    );
    assert!(
        err.contains("\nhelp: check the path, or run `kubicluster init`"),
        "{err}"
    );

    std::fs::write(tmp.path().join("broken.yaml"), "apiVersion: [").unwrap();
    let o = kubicluster(tmp.path(), &["cnc", "--file", "broken.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("error: broken.yaml: "),
        "{}",
        stderr(&o)
    );
    assert!(!tmp.path().join("work").exists());
}

#[test]
fn unknown_flags_and_parts_are_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let o = kubicluster(tmp.path(), &["cnc", "for_everything"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("invalid value 'for_everything'"),
        "{}",
        stderr(&o)
    );
    let o = kubicluster(tmp.path(), &["cnc", "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!tmp.path().join("work").exists());
}

#[test]
fn init_then_validate_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let o = kubicluster(
        tmp.path(),
        &["init", "--controllers", "3", "--workers", "4"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // the written file is picked up from the current directory
    let o = kubicluster(tmp.path(), &["validate"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains(
        "valid: cluster kubicluster from kubicluster.yaml: 3 controller(s), 4 worker(s)"
    ));
    assert!(stdout(&o).contains("name: kubi-worker-04"));
    // never overwritten without --force
    let o = kubicluster(tmp.path(), &["init"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("kubicluster.yaml already exists"));
    assert!(stderr(&o).contains("help: pass --force"));
    // A load-balancer VM on the command line: named, and the API's address; alone, refused.
    let o = kubicluster(
        tmp.path(),
        &[
            "validate",
            "-c",
            "kubi-controller-01,192.168.24.11,192.168.122.11",
            "-w",
            "kubi-worker-01,192.168.24.21,192.168.122.21",
            "--loadbalancer",
            "kubi-lb,192.168.24.5,192.168.122.5",
        ],
    );
    assert!(
        o.status.success()
            && stderr(&o).contains(
                "1 controller(s), 1 worker(s), load balancer kubi-lb (the API: https://192.168.24.5:6443)"
            )
            && stdout(&o).contains("role: loadbalancer"),
        "{}",
        stderr(&o)
    );
    let o = kubicluster(
        tmp.path(),
        &[
            "validate",
            "--loadbalancer",
            "kubi-lb,192.168.24.5,192.168.122.5",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--loadbalancer: given without the other nodes")
            && stderr(&o).contains("help: "),
        "{}",
        stderr(&o)
    );
}

#[test]
fn init_example_is_the_embedded_default() {
    let text = kubicluster::commands::init::example_text(1, 2);
    let (file, unknown) = kubicluster::spec::parse(&text).unwrap();
    assert!(unknown.is_empty(), "{unknown:?}");
    assert_eq!(file, kubicluster::spec::default_cluster_file());
    insta::assert_snapshot!(text);
}

#[test]
fn env_vars_feed_the_spec_and_flags_win() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |extra_env: &[(&str, &str)], args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubicluster"));
        cmd.current_dir(tmp.path()).env_clear().args(args);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let o = run(
        &[
            ("KUBICLUSTER_NAME", "from-env"),
            ("CLUSTER_NAME", "from-legacy"),
        ],
        &["validate"],
    );
    assert!(stdout(&o).contains("name: from-env"), "{}", stdout(&o));
    let o = run(&[("CLUSTER_NAME", "from-legacy")], &["validate"]);
    assert!(stdout(&o).contains("name: from-legacy"));
    let o = run(
        &[("KUBICLUSTER_NAME", "from-env")],
        &["validate", "-cl=from-flag"],
    );
    assert!(stdout(&o).contains("name: from-flag"));
    let o = run(
        &[("KUBERNETES_VERSION", "1.36.1"), ("WORKDIR", "/tmp/x")],
        &["validate"],
    );
    assert!(
        stdout(&o).contains("version: 1.36.1") && stdout(&o).contains("workDir: /tmp/x"),
        "{}",
        stdout(&o)
    );
    // The original's -m= (KiB) on the command line beats KUBICLUSTER_MEMORY_MIB from the env.
    let o = run(
        &[("KUBICLUSTER_MEMORY_MIB", "2048")],
        &["validate", "-m=1048576"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("memoryMiB: 1024"), "{}", stdout(&o));
}

#[test]
fn help_for_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    for cmd in [
        vec!["--help"],
        vec!["init", "--help"],
        vec!["validate", "--help"],
        vec!["cnc", "--help"],
        vec!["kubeconfig", "--help"],
        vec!["completions", "--help"],
        vec!["version", "--help"],
        vec!["prepare", "--help"],
        vec!["image", "build", "--help"],
        vec!["create-vms", "--help"],
        vec!["create-controllers", "--help"],
        vec!["create-workers", "--help"],
        vec!["test", "--help"],
        vec!["remove", "--help"],
        vec!["upgrade", "--help"],
        vec!["plan", "--help"],
        vec!["render", "--help"],
        vec!["destroy", "--help"],
        vec!["status", "--help"],
        vec!["up", "--help"],
        vec!["list", "--help"],
        vec!["stop", "--help"],
        vec!["start", "--help"],
        vec!["etcd", "backup", "--help"],
        vec!["etcd", "restore", "--help"],
        vec!["snapshot", "create", "--help"],
        vec!["snapshot", "revert", "--help"],
        vec!["snapshot", "delete", "--help"],
        vec!["lab", "--help"],
        vec!["lab", "up", "--help"],
    ] {
        let o = kubicluster(tmp.path(), &cmd);
        assert!(o.status.success(), "{cmd:?}");
        insta::assert_snapshot!(
            format!("help_{}", cmd[..cmd.len() - 1].join("_")),
            stdout(&o)
        );
    }
}

#[test]
fn version_and_completions() {
    let tmp = tempfile::tempdir().unwrap();
    let o = kubicluster(tmp.path(), &["version"]);
    assert_eq!(
        stdout(&o),
        format!("kubicluster {}\n", env!("CARGO_PKG_VERSION"))
    );
    let o = kubicluster(tmp.path(), &["completions", "bash"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("_kubicluster()"));
}

#[test]
fn kubeconfig_before_cnc_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let o = kubicluster(tmp.path(), &["kubeconfig"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("help: run `kubicluster cnc`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn unreachable_libvirt_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let o = kubicluster(
        tmp.path(),
        &[
            "status",
            "--libvirt-uri",
            "qemu:///system?socket=/nonexistent/libvirt-sock",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.starts_with(
            "error: cannot reach libvirt at qemu:///system?socket=/nonexistent/libvirt-sock"
        ),
        "{err}"
    );
    assert!(err.contains("help: is libvirtd running"), "{err}");
    assert_eq!(err.lines().count(), 2, "one error line and one hint: {err}");
}

#[test]
fn lab_and_prepare_refuse_without_root() {
    assert!(
        which("setpriv").is_some(),
        "setpriv (util-linux) is needed to drop root"
    );
    // A copy of the binary the unprivileged user can reach, wherever the checkout lives.
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("kubicluster");
    std::fs::copy(env!("CARGO_BIN_EXE_kubicluster"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    for args in [&["lab", "up"][..], &["prepare"][..]] {
        let o = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .args(args)
            .current_dir("/")
            .env_clear()
            .env("KUBICLUSTER_WORK_DIR", "/tmp/kubicluster-no-root-test")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("root"), "{err}");
        assert!(err.contains("help: "), "{err}");
        assert!(
            !Path::new("/tmp/kubicluster-no-root-test").exists(),
            "nothing created"
        );
    }
}

#[test]
fn legacy_prepare_rejects_a_non_qcow2_template() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("vm.img"), "raw bytes").unwrap();
    std::fs::write(tmp.path().join("key"), "key").unwrap();
    let o = kubicluster(tmp.path(), &["prepare", "vm.img", "key", "--lab"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("vm.img is not a qcow2 image"));
    let o = kubicluster(tmp.path(), &["prepare", "missing.qcow2", "key", "--lab"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("template missing.qcow2: No such file"));
    assert!(!tmp.path().join("work").exists(), "nothing created");
}

#[test]
fn a_broken_implicit_cluster_file_is_an_error_not_the_default() {
    for (what, make, expect) in [
        (
            "dangling link",
            "ln -s nowhere.yaml kubicluster.yaml",
            "a symbolic link to nothing (dangling)",
        ),
        (
            "directory",
            "mkdir kubicluster.yaml",
            "is a directory, not a file",
        ),
        (
            "link loop",
            "ln -s kubicluster.yaml kubicluster.yaml",
            "symbolic link loop",
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        assert!(
            Command::new("sh")
                .arg("-c")
                .arg(make)
                .current_dir(tmp.path())
                .status()
                .unwrap()
                .success()
        );
        let o = kubicluster(tmp.path(), &["cnc"]);
        assert_eq!(o.status.code(), Some(2), "{what}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("cannot read cluster file kubicluster.yaml") && err.contains(expect),
            "{what}: {err}"
        );
        assert_eq!(
            err.matches(expect).count(),
            1,
            "{what}: the cause is printed once: {err}"
        );
        assert!(!tmp.path().join("work").exists(), "{what}: nothing created");
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("kubicluster.yaml"),
        b"apiVersion: x\n\xff\xfe\n",
    )
    .unwrap();
    let o = kubicluster(tmp.path(), &["validate"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("invalid UTF-8 at line 2"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_work_dir_that_is_a_file_is_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("notadir"), b"x").unwrap();
    let o = kubicluster(tmp.path(), &["cnc", "--work-dir", "notadir"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("spec.workDir: notadir exists and is not a directory"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn up_remembers_how_the_cluster_was_made() {
    let tmp = tempfile::tempdir().unwrap();
    // libvirt is unreachable, so up stops early; what it was asked for is remembered first.
    let o = kubicluster(
        tmp.path(),
        &[
            "up",
            "--memory-mib",
            "2048",
            "--artifacts",
            "deb",
            "--libvirt-uri",
            "test:///no/such/file.xml",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let o = kubicluster(tmp.path(), &["validate"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cluster.yaml (as `up` made it)"),
        "{}",
        stderr(&o)
    );
    let yaml = stdout(&o);
    assert!(
        yaml.contains("memoryMiB: 2048") && yaml.contains("source: deb"),
        "{yaml}"
    );
    // Flags still override it.
    let o = kubicluster(tmp.path(), &["validate", "--memory-mib", "3072"]);
    assert!(stdout(&o).contains("memoryMiB: 3072"));
}

/// `kubicluster test` where no API server answers (the load-balancer address is set to a
/// loopback port nothing listens on): one FAIL with the reason, the other checks SKIPped with
/// why, exit 1. No traffic leaves 127.0.0.1.
#[test]
fn smoke_test_without_an_api_server_fails_plainly() {
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let flags = ["--controller-lb-ip", "127.0.0.1"];
    let o = kubicluster(tmp.path(), &[&["cnc"][..], &flags].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    // The admin kubeconfig points at 127.0.0.1:6443; the test client is pointed at `port` by
    // rewriting the server line, so nothing can answer.
    let kc = tmp
        .path()
        .join("work/kubicluster/certs_and_configs/admin.kubeconfig");
    let text = std::fs::read_to_string(&kc).unwrap();
    std::fs::write(
        &kc,
        text.replace(
            "https://127.0.0.1:6443",
            &format!("https://127.0.0.1:{port}"),
        ),
    )
    .unwrap();
    let o = kubicluster(tmp.path(), &[&["test", "--wait", "1"][..], &flags].concat());
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("FAIL  the API server is ready"), "{err}");
    assert_eq!(err.matches("SKIP  ").count(), 13, "{err}");
    assert!(
        err.contains("needs the API server") && err.contains("test: 1 check(s) failed"),
        "{err}"
    );
}

/// `cis` before any VM exists: refused before any connection (no pinned host key), one line
/// and a help line, nothing created.
#[test]
fn cis_without_vms_says_so_and_connects_nowhere() {
    let tmp = tempfile::tempdir().unwrap();
    let o = kubicluster(tmp.path(), &["cis"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: cis: kubi-controller-01: no pinned SSH host key")
            && err.contains("\nhelp: "),
        "{err}"
    );
    assert!(!tmp.path().join("work").exists(), "nothing created");
}

#[test]
fn remove_and_upgrade_refuse_bad_input_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let o = kubicluster(tmp.path(), &["remove", "kubi-controller-01"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("is a controller") && stderr(&o).contains("create-controllers"));
    let o = kubicluster(tmp.path(), &["remove", "kubi-worker-09"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("not a node of cluster"));
    let o = kubicluster(tmp.path(), &["upgrade", "--to", "latest"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).starts_with("error: --to: ") && stderr(&o).contains("\nhelp: "));
    let o = kubicluster(tmp.path(), &["upgrade", "--to", "1.37.2"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("has no admin kubeconfig") && stderr(&o).contains("kubicluster up")
    );
    assert!(!tmp.path().join("work").exists(), "nothing was created");
}

#[test]
fn kubeconfig_merge_keeps_other_contexts_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    assert!(kubicluster(tmp.path(), &["cnc"]).status.success());
    let target = tmp.path().join("home/.kube/config");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::write(
        &target,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster: {server: 'https://10.9.9.9'}\ncontexts:\n- name: other\n  context: {cluster: other, user: other}\nusers:\n- name: other\n  user: {token: t}\ncurrent-context: other\n",
    )
    .unwrap();
    let o = kubicluster(
        tmp.path(),
        &[
            "kubeconfig",
            "--merge",
            "--kubeconfig",
            target.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&target).unwrap();
    assert!(text.contains("current-context: kubicluster"), "{text}");
    assert!(
        text.contains("name: other") && text.contains("name: kubicluster-admin"),
        "{text}"
    );
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A file that is not a kubeconfig is left alone.
    std::fs::write(&target, "- not\n- a kubeconfig\n").unwrap();
    let o = kubicluster(
        tmp.path(),
        &[
            "kubeconfig",
            "--merge",
            "--kubeconfig",
            target.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "- not\n- a kubeconfig\n"
    );
    // Nor is YAML of another kind (a mapping): refused with a help line, byte for byte kept.
    let app = "# my app\nname: web\nreplicas: 3\n";
    std::fs::write(&target, app).unwrap();
    let merge_into = |t: &std::path::Path| {
        kubicluster(
            tmp.path(),
            &["kubeconfig", "--merge", "--kubeconfig", t.to_str().unwrap()],
        )
    };
    let o = merge_into(&target);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not a kubeconfig") && stderr(&o).contains("help:"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), app);

    // A kubeconfig reached through a symbolic link, in a shared directory (mode 1777): the
    // link's target is updated and the link kept; neither directory's mode changes.
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let real = tmp.path().join("dotfiles/kubeconfig");
    std::fs::create_dir_all(real.parent().unwrap()).unwrap();
    std::fs::set_permissions(
        real.parent().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(&real, "apiVersion: v1\nkind: Config\n").unwrap();
    let link = shared.join("config");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let o = merge_into(&link);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        std::fs::read_to_string(&real)
            .unwrap()
            .contains("current-context: kubicluster")
    );
    assert_eq!(
        mode(&shared),
        0o1777,
        "the shared directory keeps its sticky bit"
    );
    assert_eq!(mode(real.parent().unwrap()), 0o755);
    // -o FILE into the shared directory: the file is 0600, the directory unchanged.
    let out = shared.join("admin.yaml");
    let o = kubicluster(tmp.path(), &["kubeconfig", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(mode(&out), 0o600);
    assert_eq!(mode(&shared), 0o1777);
}

#[test]
fn create_workers_without_workers_or_with_bad_pod_space_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let o = kubicluster(
        tmp.path(),
        &[
            "create-workers",
            "-c",
            "kubi-controller-01,192.168.24.11,192.168.122.11",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the cluster has no workers"),
        "{}",
        stderr(&o)
    );
    // bridge mode: worker .200 has no /24 in a /20 pod CIDR.
    let o = kubicluster(
        tmp.path(),
        &[
            "create-workers",
            "--cni",
            "bridge",
            "--pod-cidr",
            "10.200.0.0/20",
            "-c",
            "kubi-controller-01,192.168.24.11,192.168.122.11",
            "-w",
            "kubi-worker-01,192.168.24.200,192.168.122.200",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("has no /24 pod subnet"),
        "{}",
        stderr(&o)
    );
    assert!(!tmp.path().join("work").exists(), "nothing was created");
}

/// Messages name what the user typed: the environment variable, or the original's flag (and
/// the commands that take it), never a long flag they did not write.
#[test]
fn errors_name_the_variable_or_original_flag_typed() {
    let tmp = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_kubicluster"))
        .current_dir(tmp.path())
        .args(["validate"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KUBICLUSTER_CPUS", "abc")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("error: KUBICLUSTER_CPUS=abc: "),
        "{}",
        stderr(&o)
    );
    for (args, want) in [
        (
            &["cnc", "-tif=eth0"][..],
            "-tif=eth0 (an option of the original kubicluster) is not supported",
        ),
        (
            &["cnc", "-r", "reg,1.2.3.4,5.6.7.8"][..],
            "-r (an option of the original kubicluster) is not supported",
        ),
        (
            &["validate", "-f"][..],
            "-f (--force) is not an option of `kubicluster validate`",
        ),
        (
            &["create-vms", "-fedr"][..],
            "belongs to: create-controllers",
        ),
    ] {
        let o = kubicluster(tmp.path(), args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
        assert!(
            !stderr(&o).contains("unexpected argument"),
            "{}",
            stderr(&o)
        );
    }
    // The original's flags written with a space, and a switch written with a value, work.
    let o = kubicluster(
        tmp.path(),
        &["validate", "-cl", "lab", "-kv", "1.35.4", "-ndev=true"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("name: lab") && stdout(&o).contains("version: 1.35.4"));
}

#[test]
fn etcd_reset_needs_yes_and_touches_nothing_without_it() {
    let tmp = tempfile::tempdir().unwrap();
    let o = kubicluster(tmp.path(), &["create-controllers", "-fedr"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("every object of the cluster is lost")
            && stderr(&o).contains("pass --yes"),
        "{}",
        stderr(&o)
    );
    assert!(!tmp.path().join("work").exists());
}

#[test]
fn artifacts_build_refuses_clearly_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let run = |args: &[&str], path: &str| {
        Command::new(env!("CARGO_BIN_EXE_kubicluster"))
            .current_dir(tmp.path())
            .args(args)
            .env_clear()
            .env("PATH", path)
            .env("KUBICLUSTER_CACHE_DIR", &cache)
            .output()
            .unwrap()
    };
    // A version without a pinned build module: bad input, the pinned ones listed.
    let o = run(
        &["artifacts", "build", "--kubernetes-version", "1.36.1"],
        "/usr/bin:/bin",
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("kubernetes 1.36.1 has no pinned build"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("help: choose one of 1.37.2, 1.36.3, 1.35.4"),
        "{}",
        stderr(&o)
    );
    let nothing_made = || {
        let leftovers: Vec<_> = std::fs::read_dir(cache.join("artifacts"))
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(leftovers.is_empty(), "nothing half-made: {leftovers:?}");
    };
    // No Go toolchain: one line and a hint, no output directory.
    let o = Command::new(env!("CARGO_BIN_EXE_kubicluster"))
        .current_dir(tmp.path())
        .args(["artifacts", "build"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("KUBICLUSTER_CACHE_DIR", &cache)
        .env("KUBICLUSTER_GO", tmp.path().join("no-such-go"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("error: no Go toolchain: "), "{err}");
    assert!(err.contains("help: install Go 1.26 or newer"), "{err}");
    nothing_made();
    // A Go that cannot fetch modules (here: no module cache, no HOME): the download is named.
    if Path::new("/usr/local/go/bin/go").is_file() {
        let o = run(&["artifacts", "build"], "/usr/bin:/bin");
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("error: cannot download the Go modules of go/kubernetes-v1.37.2"),
            "{err}"
        );
        assert!(err.contains("help: the Go module proxy"), "{err}");
        nothing_made();
    }
    // `artifacts dir` without a build: exit 1 and the way out.
    let o = run(&["artifacts", "dir"], "/usr/bin:/bin");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("run `kubicluster artifacts build`"),
        "{}",
        stderr(&o)
    );
}

/// `render --out DIR` never damages what the user owns: a non-empty directory it did not write,
/// a file and a dangling link are refused (nothing changed); an empty directory is used with its
/// mode kept; its own earlier output is replaced whole; a failure half-way leaves what was there.
#[test]
fn render_out_is_safe_with_the_users_directories() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    assert!(kubicluster(d, &["cnc"]).status.success());
    let render = |out: &str| kubicluster(d, &["render", "--out", out]);
    let refused = |o: &Output, what: &str| {
        assert_eq!(o.status.code(), Some(2), "{}", stderr(o));
        let e = stderr(o);
        assert!(e.contains(what) && e.contains("help:"), "{e}");
    };

    // The user's own directory, not empty: refused, untouched (mode, content).
    let mine = d.join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "mine").unwrap();
    std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o755)).unwrap();
    refused(&render("mine"), "not written by `kubicluster render`");
    assert_eq!(mode(&mine), 0o755);
    assert_eq!(std::fs::read_dir(&mine).unwrap().count(), 1);
    // The current directory (the work dir is in it): the same.
    refused(&render("."), "not written by `kubicluster render`");
    // A file, a dangling link.
    std::fs::write(d.join("afile"), "x").unwrap();
    refused(&render("afile"), "is a file, not a directory");
    std::os::unix::fs::symlink(d.join("nowhere"), d.join("dangling")).unwrap();
    refused(&render("dangling"), "dangling");
    assert_eq!(std::fs::read(d.join("afile")).unwrap(), b"x");

    // An empty directory of the user's (shared, 1777): filled, its mode kept; keys 0600.
    let empty = d.join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let o = render("empty");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(mode(&empty), 0o1777, "the user's directory keeps its mode");
    assert_eq!(mode(&empty.join("kubi-controller-01")), 0o700);
    let key = empty.join("kubi-controller-01/var/lib/kubernetes/kubernetes-key.pem");
    assert_eq!(mode(&key), 0o600);

    // Absent: created 0700. Rendered again: replaced whole (a stray file is gone).
    let o = render("out/new");
    assert!(o.status.success(), "{}", stderr(&o));
    let out = d.join("out/new");
    assert_eq!(mode(&out), 0o700);
    std::fs::write(out.join("stray"), "x").unwrap();
    let o = render("out/new");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!out.join("stray").exists(), "replaced whole");
    assert!(out.join(".kubicluster-render").is_file());

    // A failure half-way (a kubeconfig missing): the earlier render stays as it was, no
    // staging directory is left behind.
    let before = std::fs::read(&key).unwrap();
    std::fs::remove_file(d.join("work/kubicluster/certs_and_configs/kube-proxy.kubeconfig"))
        .unwrap();
    let o = render("out/new");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        out.join("kubi-controller-01").is_dir(),
        "the earlier render is intact"
    );
    let o = render("empty");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(std::fs::read(&key).unwrap(), before);
    let left: Vec<String> = std::fs::read_dir(d.join("out"))
        .unwrap()
        .chain(std::fs::read_dir(&empty).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("render-"))
        .collect();
    assert!(left.is_empty(), "staging left behind: {left:?}");
}

/// The cluster file `up` remembered (work/<name>/cluster.yaml) is the cluster: a directory, a
/// dangling link or a truncated file in its place is an error naming it, never a silent fall back
/// to the embedded default.
#[test]
fn a_broken_remembered_cluster_file_is_named_never_replaced_by_the_default() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let remembered = d.join("work/kubicluster/cluster.yaml");
    std::fs::create_dir_all(remembered.parent().unwrap()).unwrap();
    let check = |what: &str| {
        let o = kubicluster(d, &["validate"]);
        let e = stderr(&o);
        assert_ne!(o.status.code(), Some(0), "{e}");
        assert!(
            e.contains("work/kubicluster/cluster.yaml") && e.contains(what) && e.contains("help:"),
            "{what}: {e}"
        );
        assert!(o.stdout.is_empty(), "no cluster printed");
    };
    std::fs::create_dir(&remembered).unwrap();
    check("is a directory");
    std::fs::remove_dir(&remembered).unwrap();
    std::os::unix::fs::symlink(d.join("gone.yaml"), &remembered).unwrap();
    check("dangling");
    std::fs::remove_file(&remembered).unwrap();
    std::fs::write(
        &remembered,
        "metadata:\n  name: kubicluster\nnodes:\n  - name: kubi-contr",
    )
    .unwrap();
    check("cluster.yaml");
}

/// Every refusal of the command line is one line and a `help:` line (clap's own errors too),
/// and the original's `kubicluster <command> help` prints that command's help.
#[test]
fn clap_errors_have_a_help_line_and_command_help_works() {
    let tmp = tempfile::tempdir().unwrap();
    for (args, says, hint) in [
        (
            vec!["create-controllers", "--concurrency", "-1"],
            "unexpected argument '-1'",
            "help:",
        ),
        (
            vec!["up", "--dry-run"],
            "'--dry-run'",
            "help: `kubicluster plan` shows every change `up` would make",
        ),
        (
            vec!["status", "--frobnicate"],
            "'--frobnicate'",
            "help: see `kubicluster status --help`",
        ),
        (
            vec!["create-vms", "--memory-mib", "lots"],
            "invalid value 'lots'",
            "help:",
        ),
        (vec!["no-such-command"], "no-such-command", "help:"),
    ] {
        let o = kubicluster(tmp.path(), &args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(e.contains(says) && e.contains(hint), "{args:?}: {e}");
        assert_eq!(
            e.lines().filter(|l| !l.trim().is_empty()).count(),
            2,
            "{args:?}: one line and its help: {e}"
        );
    }
    for cmd in ["cnc", "create-vms", "prepare", "up"] {
        let o = kubicluster(tmp.path(), &[cmd, "help"]);
        assert_eq!(o.status.code(), Some(0), "{cmd} help: {}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains(&format!("Usage: kubicluster {cmd}")), "{out}");
    }
    assert!(!tmp.path().join("work").exists(), "nothing was created");
}

/// Several controllers: by default they share a virtual IP (the cluster network's tenth
/// address, in the certificates and every kubeconfig), and two are warned about etcd's quorum;
/// an address a node has is refused; with the virtual IP turned off `validate`
/// says every worker depends on the first controller; with a load-balancer address, or one
/// controller, it says nothing of the kind.
#[test]
fn several_controllers_without_a_load_balancer_are_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    let nodes = [
        "-c",
        "kubi-controller-01,192.168.24.11,192.168.122.11",
        "-c",
        "kubi-controller-02,192.168.24.12,192.168.122.12",
        "-w",
        "kubi-worker-01,192.168.24.21,192.168.122.21",
    ];
    let o = kubicluster(tmp.path(), &[&["validate"][..], &nodes].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("apiServerVIP"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("warning: 2 controllers: etcd's quorum needs both"),
        "{}",
        stderr(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("apiServerVIP: 192.168.24.10"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = kubicluster(
        tmp.path(),
        &[&["validate", "--controller-vip", "none"][..], &nodes].concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("warning: 2 controllers but spec.kubernetes.apiServerVIP is \"none\"")
            && stderr(&o).contains("the first controller (192.168.24.11)"),
        "{}",
        stderr(&o)
    );
    let o = kubicluster(
        tmp.path(),
        &[
            &["validate", "--controller-vip", "192.168.24.21"][..],
            &nodes,
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("spec.kubernetes.apiServerVIP: 192.168.24.21 is also a node's address")
            && stderr(&o).contains("help:"),
        "{}",
        stderr(&o)
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubicluster"));
    cmd.current_dir(tmp.path())
        .env_clear()
        .env("CONTROLLER_LB_IP", "192.168.24.10")
        .arg("validate")
        .args(nodes);
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("apiServerVIP"), "{}", stderr(&o));
    let o = kubicluster(tmp.path(), &["validate"]);
    assert!(!stderr(&o).contains("warning:"), "{}", stderr(&o));
}

#[test]
fn etcd_restore_refuses_a_damaged_snapshot_and_needs_yes() {
    let tmp = tempfile::tempdir().unwrap();
    // Not a snapshot: refused before anything is read from or written to a node.
    std::fs::write(tmp.path().join("junk.db"), vec![7u8; 8192]).unwrap();
    let o = kubicluster(tmp.path(), &["etcd", "restore", "junk.db", "--yes"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("junk.db is not a whole etcd snapshot: not an etcd (bbolt) database")
            && stderr(&o).contains("help:"),
        "{}",
        stderr(&o)
    );
    // A whole one (bbolt's magic, its SHA-256 at the end) still needs --yes.
    let mut db = vec![0u8; 8192];
    db[16..20].copy_from_slice(&0xED0C_DAEDu32.to_le_bytes());
    let hash = {
        use sha2::Digest;
        sha2::Sha256::digest(&db)
    };
    db.extend_from_slice(&hash);
    std::fs::write(tmp.path().join("good.db"), &db).unwrap();
    let o = kubicluster(tmp.path(), &["etcd", "restore", "good.db"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("replaces the whole cluster's state")
            && stderr(&o).contains("pass --yes"),
        "{}",
        stderr(&o)
    );
    let o = kubicluster(tmp.path(), &["etcd", "restore", "missing.db", "--yes"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("etcd list"), "{}", stderr(&o));
    assert!(!tmp.path().join("work").exists(), "nothing created");
    // No snapshots yet: list says where they would be.
    let o = kubicluster(tmp.path(), &["etcd", "list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no etcd snapshots in"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn snapshot_names_and_records_are_checked_before_anything_is_touched() {
    let tmp = tempfile::tempdir().unwrap();
    let o = kubicluster(tmp.path(), &["snapshot", "create", "a/b"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("\"a/b\" is not a snapshot name") && stderr(&o).contains("help:"),
        "{}",
        stderr(&o)
    );
    for args in [
        vec!["snapshot", "revert", "nope", "--yes"],
        vec!["snapshot", "delete", "nope"],
    ] {
        let o = kubicluster(tmp.path(), &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("cluster kubicluster has no snapshot \"nope\"")
                && stderr(&o).contains("help: `kubicluster snapshot list`"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    let o = kubicluster(tmp.path(), &["snapshot", "list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("has no snapshots"), "{}", stderr(&o));
    let o = kubicluster(tmp.path(), &["snapshot", "list", "-o", "json"]);
    assert_eq!(stdout(&o).trim(), "[]");
    assert!(!tmp.path().join("work").exists(), "nothing created");
    // An interrupted create is listed as such and cannot be reverted to.
    let dir = tmp.path().join("work/kubicluster/snapshots/half");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("snapshot.json"),
        r#"{"name":"half","created":"2026-12-04T21:00:00Z","complete":false,"paused_ms":0,"etcd":false,"layers":{}}"#,
    )
    .unwrap();
    let o = kubicluster(tmp.path(), &["snapshot", "list"]);
    assert!(
        stdout(&o).contains("half\t") && stdout(&o).contains("incomplete"),
        "{}",
        stdout(&o)
    );
    let o = kubicluster(tmp.path(), &["snapshot", "revert", "half", "--yes"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("snapshot half is incomplete"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn stop_and_start_need_a_reachable_hypervisor() {
    let tmp = tempfile::tempdir().unwrap();
    for cmd in ["stop", "start"] {
        let o = kubicluster(tmp.path(), &[cmd, "--lab"]);
        assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("the lab of cluster kubicluster is not running")
                && stderr(&o).contains("help: start it with"),
            "{cmd}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn list_shows_every_remembered_cluster_with_its_state() {
    let tmp = tempfile::tempdir().unwrap();
    let o = kubicluster(tmp.path(), &["list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("no clusters in"), "{}", stderr(&o));
    let example = stdout(&kubicluster(tmp.path(), &["init", "--stdout"]));
    for (name, extra) in [("alpha", ""), ("beta", "  hypervisor:\n    mode: lab\n")] {
        let dir = tmp.path().join("work").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let text = example.replacen("  name: kubicluster ", &format!("  name: {name} "), 1);
        std::fs::write(dir.join("cluster.yaml"), format!("{text}{extra}")).unwrap();
    }
    // A directory without a remembered spec is not a cluster.
    std::fs::create_dir_all(tmp.path().join("work/images")).unwrap();
    let o = kubicluster(tmp.path(), &["list", "-o", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["name"], "alpha");
    assert_eq!(rows[1]["name"], "beta");
    assert_eq!(rows[1]["mode"], "lab");
    assert_eq!(rows[1]["state"], "stopped (lab not running)");
    assert_eq!(rows[1]["nodes"], 3);
    assert_eq!(rows[1]["endpoint"], "https://192.168.24.11:6443");
}

/// Every path under `dir` with its mode and content (a link's target): what "unchanged,
/// byte for byte" compares.
fn tree(dir: &Path) -> Vec<(String, u32, Vec<u8>)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let content = if m.file_type().is_symlink() {
                std::fs::read_link(&p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if m.is_dir() {
                todo.push(p.clone());
                Vec::new()
            } else {
                std::fs::read(&p).unwrap()
            };
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            out.push((rel, m.permissions().mode(), content));
        }
    }
    out.sort();
    out
}

/// `plan` and every `--dry-run` write, create and download nothing: run in a network namespace
/// of their own with no interface up (so any connection out fails), with each artifact source
/// (`upstream` would download binaries, `deb` would fetch a Debian index, `build` would build
/// from Go modules), they succeed, say what a real run would download, and leave the work
/// directory and the artifacts cache exactly as they were — paths, modes and bytes.
#[test]
fn plan_and_dry_runs_write_and_download_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cache = d.join("cache");
    std::fs::create_dir(&cache).unwrap();
    assert!(kubicluster(d, &["cnc"]).status.success());
    let before = tree(d);
    let offline = |args: &[&str]| -> Output {
        let o = Command::new("unshare")
            .args([
                "--map-root-user",
                "--net",
                env!("CARGO_BIN_EXE_kubicluster"),
            ])
            .args(args)
            .args(["--libvirt-uri", "test:///default"])
            .current_dir(d)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBICLUSTER_CACHE_DIR", &cache)
            .output()
            .expect("run unshare");
        let e = stderr(&o);
        assert!(
            !e.starts_with("unshare:"),
            "this test needs a network namespace of its own (unshare --map-root-user --net): {e}"
        );
        o
    };
    for source in ["upstream", "deb", "build"] {
        let o = offline(&["plan", "--artifacts", source]);
        assert!(
            o.status.success(),
            "plan --artifacts {source}: {}",
            stderr(&o)
        );
        let text = stdout(&o);
        assert!(
            text.contains("to download; a plan downloads nothing"),
            "{source}: {text}"
        );
        let want = match source {
            "upstream" => "kube-apiserver from https://",
            "deb" => "the package index, then the packages (containerd)",
            _ => "(`artifacts build`)",
        };
        assert!(text.contains(want), "{source}: {text}");
        assert!(text.contains("PKI (0 pending)"), "{text}");
        let json = offline(&["plan", "--artifacts", source, "-o", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        assert!(!v["downloads"].as_array().unwrap().is_empty(), "{v}");
    }
    // Dry runs of the commands that change things: the hypervisor ones finish; the node ones
    // say what they would download, then stop at the nodes (no VM has been made).
    for args in [
        &["create-vms", "--dry-run"][..],
        &["destroy", "--dry-run"],
        &["create-controllers", "--dry-run", "--artifacts", "upstream"],
        &["create-workers", "--dry-run", "--artifacts", "upstream"],
    ] {
        let o = offline(args);
        let e = stderr(&o);
        if args[0].starts_with("create-") && args[0] != "create-vms" {
            assert!(e.contains("would download"), "{args:?}: {e}");
            assert!(e.contains("no pinned SSH host key"), "{args:?}: {e}");
        } else {
            assert!(o.status.success(), "{args:?}: {e}");
        }
    }
    assert_eq!(
        tree(d),
        before,
        "plan and dry runs left the work dir and the cache as they were"
    );
}

/// `up --artifacts build` with an `--artifacts-dir` that holds no complete build is bad input:
/// refused before anything is built, started or written (no build elsewhere behind its back).
#[test]
fn up_refuses_an_artifacts_dir_without_a_complete_build() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir(d.join("bin")).unwrap();
    let o = kubicluster(
        d,
        &[
            "up",
            "--artifacts",
            "build",
            "--artifacts-dir",
            "bin",
            "--libvirt-uri",
            "test:///default",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("holds no complete build") && e.contains("help:"),
        "{e}"
    );
    assert!(!d.join("work").exists(), "nothing written");
}

#[test]
fn upgrade_refuses_an_etcd_two_minors_ahead_before_anything_changes() {
    let tmp = tempfile::tempdir().unwrap();
    // A cluster `up` remembered with etcd 3.5.21; Kubernetes 1.37.2 comes with etcd 3.7.3.
    let o = kubicluster(tmp.path(), &["validate", "--etcd-version", "3.5.21"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = tmp.path().join("work/kubicluster");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cluster.yaml"), stdout(&o)).unwrap();
    let before = std::fs::read_dir(&dir).unwrap().count();
    let o = kubicluster(
        tmp.path(),
        &["upgrade", "--to", "1.37.2", "--etcd-version", "3.7.3"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("cannot move etcd from 3.5.21 to 3.7.3 (the cluster's record): etcd moves one minor release at a time")
            && err.contains("\nhelp: keep etcd at an allowed release: 3.6.x"),
        "{err}"
    );
    // The next minor passes etcd's rules (and stops later: this cluster was never made).
    let o = kubicluster(
        tmp.path(),
        &["upgrade", "--to", "1.37.2", "--etcd-version", "3.6.16"],
    );
    assert!(!o.status.success());
    assert!(!stderr(&o).contains("cannot move etcd"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        before,
        "nothing created"
    );
}

/// Two hypervisors (libvirt's test driver, each from its own file: 8 GiB, and 4 GiB with a
/// running VM of this cluster): `validate` places from the file alone, `plan` asks both and
/// keeps the existing VM where it is; what would make VMs refuses, creating nothing.
#[test]
fn nodes_are_placed_over_several_hypervisors_and_each_is_asked_for_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let node_xml = |mib: u64, domain: &str| {
        format!(
            "<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads><active>2</active><mhz>2000</mhz><model>t</model></cpu><memory>{}</memory>{domain}</node>",
            mib * 1024
        )
    };
    let vm = "<domain type='test'><name>kubi-worker-02</name><metadata><kubi:node xmlns:kubi='https://kubicluster.io/xmlns/node/1'><kubi:cluster>kubicluster</kubi:cluster></kubi:node></metadata><memory unit='MiB'>2048</memory><os><type>hvm</type></os><devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/var/lib/libvirt/images/kubi-worker-02.qcow2'/><target dev='vda' bus='virtio'/></disk></devices></domain>";
    std::fs::write(tmp.path().join("hv1.xml"), node_xml(8192, "")).unwrap();
    // hv2 holds a VM of the cluster, and its pool.
    let pool = "<pool type='dir'><name>kubicluster</name><target><path>/var/lib/libvirt/images</path></target></pool>";
    std::fs::write(
        tmp.path().join("hv2.xml"),
        node_xml(4096, &format!("{vm}{pool}")),
    )
    .unwrap();
    let file = tmp.path().join("cluster.yaml");
    let uri = |n: &str| format!("test://{}", tmp.path().join(n).display());
    std::fs::write(
        &file,
        format!(
            r#"apiVersion: kubicluster.io/v1alpha1
kind: Cluster
metadata: {{name: kubicluster}}
spec:
  nodeDefaults: {{memoryMiB: 2048}}
  networks: {{cluster: {{mode: bridged}}}}
  hypervisors:
    - {{name: hv1, uri: "{}"}}
    - {{name: hv2, uri: "{}"}}
  nodes:
    - {{name: kubi-controller-01, role: controller, clusterIP: 192.168.24.11, hypervisorIP: 192.168.122.11}}
    - {{name: kubi-worker-01, role: worker, clusterIP: 192.168.24.21, hypervisorIP: 192.168.122.21}}
    - {{name: kubi-worker-02, role: worker, clusterIP: 192.168.24.22, hypervisorIP: 192.168.122.22}}
"#,
            uri("hv1.xml"),
            uri("hv2.xml")
        ),
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let o = kubicluster(tmp.path(), &["validate", "-f", f]);
    assert!(o.status.success(), "{}", stderr(&o));
    // From the file alone: the controller spreads to the first, the workers balance.
    assert!(
        stderr(&o).contains(
            "  kubi-controller-01  on hv1 (controllers spread over the hypervisors)\n  kubi-worker-01      on hv2 (the most memory left)\n  kubi-worker-02      on hv1 (the most memory left)\n"
        ),
        "{}",
        stderr(&o)
    );
    let o = kubicluster(tmp.path(), &["plan", "-f", f]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Asked: worker-02's VM is on hv2; hv2 then has 4096 - 2048 - 1024 (the host's) MiB left.
    assert!(
        stderr(&o).contains(
            "placement over 2 hypervisors:\n  kubi-controller-01  on hv1 (controllers spread over the hypervisors)\n  kubi-worker-01      on hv1 (the most memory left)\n  kubi-worker-02      on hv2 (its VM is there)\n"
        ),
        "{}",
        stderr(&o)
    );
    // Each hypervisor is asked for its own nodes: the two new VMs on hv1, worker-02 kept on hv2.
    let o = kubicluster(tmp.path(), &["create-vms", "-f", f, "--dry-run"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    for want in [
        "\n[hv1] kubi-controller-01: create and start\n",
        "\n[hv1] kubi-worker-01: create and start\n",
        "\n[hv2] network default: create (192.168.122.0/24)\n",
        "\n[hv2] kubi-worker-02: running, not yet verified",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }
    assert!(
        !err.contains("[hv2] kubi-controller-01") && !err.contains("[hv1] kubi-worker-02"),
        "{err}"
    );
    // status names each node's hypervisor (no VM answers SSH: no host key was pinned, none is
    // dialled; no admin kubeconfig, no API asked): exit 3, not healthy.
    let o = kubicluster(tmp.path(), &["status", "-f", f]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let out = stdout(&o);
    let row = |node: &str| status_row(&out, node);
    assert!(
        out.starts_with("NODE                 HYPERVISOR   ROLE"),
        "{out}"
    );
    assert_eq!(
        row("kubi-controller-01")[1..4],
        ["hv1", "controller", "absent"]
    );
    assert_eq!(row("kubi-worker-02")[1..4], ["hv2", "worker", "running"]);
    // prepare --check asks each hypervisor about its own nodes (rows named by host).
    let o = kubicluster(tmp.path(), &["prepare", "--check", "-f", f]);
    let (out, err) = (stdout(&o), stderr(&o));
    for want in [
        "hv1: libvirt                  reachable at test://",
        "hv1: storage pool kubicluster missing (prepare creates it)",
        "hv2: storage pool kubicluster active at /var/lib/libvirt/images",
        // Only the VMs not running yet need memory: worker-02's runs on hv2.
        "hv1: free memory ",
        "the VMs to start need 4096 MiB\n",
        "hv2: free memory ",
        "the VMs to start need 0 MiB\n",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    assert!(err.contains("placement over 2 hypervisors:"), "{err}");
    // stop asks every host for its own VMs, workers first: with every VM there (hv1 now holds
    // the other two), each is named with its host.
    let vm_on = |name: &str| vm.replace("kubi-worker-02", name);
    std::fs::write(
        tmp.path().join("hv1.xml"),
        node_xml(
            8192,
            &format!(
                "{}{}{pool}",
                vm_on("kubi-controller-01"),
                vm_on("kubi-worker-01")
            ),
        ),
    )
    .unwrap();
    let o = kubicluster(tmp.path(), &["stop", "-f", f, "--dry-run"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let at = |s: &str| err.find(s).unwrap_or_else(|| panic!("{s}: {err}"));
    assert!(
        at("[hv1] kubi-worker-01: shut down") < at("[hv2] kubi-worker-02: shut down")
            && at("[hv2] kubi-worker-02: shut down") < at("stop: controllers")
            && at("stop: controllers") < at("[hv1] kubi-controller-01: shut down"),
        "{err}"
    );
    // A hypervisor that does not answer: status still reads the other, names the lost one, and
    // the node that may be there is unknown; not healthy (exit 3).
    let lost = tmp.path().join("lost.yaml");
    std::fs::write(
        &lost,
        std::fs::read_to_string(&file)
            .unwrap()
            .replace(&uri("hv2.xml"), &uri("gone.xml")),
    )
    .unwrap();
    let o = kubicluster(tmp.path(), &["status", "-f", lost.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("status: hypervisor hv2 does not answer: "),
        "{}",
        stderr(&o)
    );
    let out = stdout(&o);
    let row = |node: &str| status_row(&out, node);
    assert_eq!(
        row("kubi-controller-01")[1..4],
        ["hv1", "controller", "running"]
    );
    assert_eq!(row("kubi-worker-02")[1..4], ["?", "worker", "unknown"]);
    // prepare --check too: the lost host is a FAIL row of its own, the other still checked.
    let o = kubicluster(
        tmp.path(),
        &["prepare", "--check", "-f", lost.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("\nFAIL  hv2: libvirt                  does not answer: ")
            && out.contains("\nok    hv1: storage pool kubicluster active"),
        "{out}"
    );
    // snapshot create freezes every host's VMs at one moment: each running VM paused, on
    // both hosts, before the first disk is switched; each disk gets its overlay in its pool.
    let o = kubicluster(
        tmp.path(),
        &["snapshot", "create", "s1", "-f", f, "--dry-run"],
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let at = |s: &str| err.find(s).unwrap_or_else(|| panic!("{s}: {err}"));
    let last_pause = at("  [hv2] kubi-worker-02: pause\n");
    assert!(
        at("  [hv1] kubi-controller-01: pause\n") < last_pause
            && at("  [hv1] kubi-worker-01: pause\n") < last_pause
            && last_pause
                < at(
                    "  [hv1] kubi-controller-01: freeze its disk; write to a new overlay /var/lib/libvirt/images/kubi-controller-01@"
                )
            && last_pause
                < at(
                    "  [hv2] kubi-worker-02: freeze its disk; write to a new overlay /var/lib/libvirt/images/kubi-worker-02@"
                )
            && err.ends_with("snapshot create: dry run, nothing changed\n"),
        "{err}"
    );
    assert!(
        !tmp.path().join("work/kubicluster/snapshots").exists(),
        "a dry run recorded a snapshot"
    );
    // list reads every host (a cluster `up` remembered: its file in the work dir).
    let dir = tmp.path().join("work").join("kubicluster");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&file, dir.join("cluster.yaml")).unwrap();
    let o = kubicluster(tmp.path(), &["list", "-f", f]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("running 3/3"), "{}", stdout(&o));
    // remove destroys a worker's VM on its own host (no API to drain it through: said so).
    let o = kubicluster(tmp.path(), &["remove", "kubi-worker-02", "-f", f]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("remove: no admin kubeconfig: nothing to drain through the API")
            && err.contains("remove: VM kubi-worker-02 destroyed on hypervisor hv2"),
        "{err}"
    );
    // A node that cannot fit is refused by validate, before any hypervisor is asked.
    let small = std::fs::read_to_string(&file)
        .unwrap()
        .replace("{name: hv2, uri", "{name: hv2, memoryMiB: 1024, uri")
        .replace("{name: hv1, uri", "{name: hv1, memoryMiB: 3072, uri");
    std::fs::write(&file, small).unwrap();
    let o = kubicluster(tmp.path(), &["validate", "-f", f]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("error: kubi-worker-01: no hypervisor has the 2048 MiB it needs left (hv1 1024 MiB, hv2 1024 MiB)\nhelp: "),
        "{}",
        stderr(&o)
    );
}
