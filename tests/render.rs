//! What kubicluster puts on the controllers, read by content: `cnc` then `render` for a 1- and a
//! 3-controller cluster. Every unit and config is snapshotted; secrets are 0600 and the output
//! directory 0700; every flag in every Kubernetes unit is one the binaries of its minor accept
//! (tests/fixtures/flags-1.MINOR, generated from the built binaries' own `--help` by
//! tests/fixtures/update-flags.sh), for every Kubernetes release kubicluster can build; the
//! cluster CA key is placed only with csrSigning; etcd's bootstrap lists every member. The
//! binaries run in tests/apiserver.rs (loopback) and tests/lab_k8s.rs (VMs).

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn kubicluster(cwd: &Path, args: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_kubicluster"))
        .current_dir(cwd)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("run kubicluster");
    assert!(
        o.status.success(),
        "kubicluster {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// `path mode` of every file under a node's directory, one per line.
fn listing(node: &Path) -> String {
    files_under(node)
        .iter()
        .map(|p| {
            format!(
                "{} {:04o}",
                p.strip_prefix(node).unwrap().display(),
                mode(p)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn render(controllers: u8, extra: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = vec![];
    for i in 1..=controllers {
        args.extend(["-c".into(), controller(i)]);
    }
    args.extend(["-w".into(), worker(1), "-w".into(), worker(2)]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    kubicluster(tmp.path(), &[&["cnc"], a.as_slice(), extra].concat());
    let o = kubicluster(
        tmp.path(),
        &[&["render", "--out", "out"], a.as_slice(), extra].concat(),
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("mode 0700"));
    let out = tmp.path().join("out");
    (tmp, out)
}

fn flags(unit: &str) -> Vec<String> {
    unit.lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("--"))
        .map(|l| l.split(['=', ' ']).next().unwrap().to_string())
        .collect()
}

const SNAPSHOTTED: &[&str] = &[
    "etc/systemd/system/etcd.service",
    "etc/etcd/bootstrap.env",
    "etc/systemd/system/kube-apiserver.service",
    "etc/systemd/system/kube-controller-manager.service",
    "etc/systemd/system/kube-scheduler.service",
    "etc/kubernetes/config/kube-scheduler.yaml",
];

#[test]
fn one_controller_files_by_content() {
    let (_tmp, out) = render(1, &[]);
    assert_eq!(mode(&out), 0o700, "the render dir holds keys");
    let node = out.join("kubi-controller-01");
    insta::assert_snapshot!("controller_files_1", listing(&node));
    for f in SNAPSHOTTED {
        let text = std::fs::read_to_string(node.join(f)).unwrap();
        insta::assert_snapshot!(format!("c1_{}", f.rsplit('/').next().unwrap()), text);
    }
    for p in files_under(&node) {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with("-key.pem")
            || name.ends_with(".kubeconfig")
            || name == "encryption-config.yaml"
        {
            assert_eq!(mode(&p), 0o600, "{} is a secret", p.display());
        }
    }
    assert!(
        !node.join("var/lib/kubernetes/ca-key.pem").exists(),
        "the cluster CA key stays on the hypervisor by default"
    );
    // The API objects.
    let api: BTreeSet<String> = files_under(&out.join("api"))
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        api,
        BTreeSet::from([
            "10-apiserver-to-kubelet.yaml".to_string(),
            "20-runtimeclasses.yaml".to_string(),
            "40-coredns.yaml".to_string(),
        ]),
        "calico's manifest is not available offline; the others are rendered"
    );
    let binding = std::fs::read_to_string(out.join("api/10-apiserver-to-kubelet.yaml")).unwrap();
    assert!(
        binding.contains("name: kube-apiserver-kubelet-client"),
        "bound to the apiserver's kubelet client cert CN: {binding}"
    );
    // Workers get no controller files.
    assert!(!out.join("kubi-worker-01/etc/etcd").exists());
    assert!(
        !out.join("kubi-worker-01/var/lib/kubernetes/kubernetes-key.pem")
            .exists()
    );
}

/// The flags a minor's binaries accept, from tests/fixtures/flags-1.MINOR/COMPONENT.txt.
fn accepted(minor: &str, comp: &str) -> BTreeSet<String> {
    let f = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/flags-{minor}/{comp}.txt"));
    std::fs::read_to_string(&f)
        .unwrap_or_else(|e| panic!("{}: {e} (run tests/fixtures/update-flags.sh)", f.display()))
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn every_unit_flag_is_accepted_by_the_binaries_of_its_minor() {
    use kubicluster::artifacts::build::BUILD_SETS;
    for set in BUILD_SETS {
        let minor = set.kubernetes.rsplit_once('.').unwrap().0;
        let (_tmp, out) = render(
            1,
            &["--cni", "bridge", "--kubernetes-version", set.kubernetes],
        );
        for (node, comp) in [
            ("kubi-controller-01", "kube-apiserver"),
            ("kubi-controller-01", "kube-controller-manager"),
            ("kubi-controller-01", "kube-scheduler"),
            ("kubi-worker-01", "kubelet"),
            ("kubi-worker-01", "kube-proxy"),
        ] {
            let valid = accepted(minor, comp);
            let unit = std::fs::read_to_string(
                out.join(format!("{node}/etc/systemd/system/{comp}.service")),
            )
            .unwrap();
            let used = flags(&unit);
            assert!(!used.is_empty(), "{comp}: {used:?}");
            let bad: Vec<&String> = used.iter().filter(|f| !valid.contains(*f)).collect();
            assert!(
                bad.is_empty(),
                "{comp} has flags {minor} does not accept: {bad:?}"
            );
            let unique: BTreeSet<&String> = used.iter().collect();
            assert_eq!(unique.len(), used.len(), "{comp}: a flag given twice");
        }
    }
}

#[test]
fn the_apiserver_unit_says_what_kthw_says() {
    let (_tmp, out) = render(1, &[]);
    let api = std::fs::read_to_string(
        out.join("kubi-controller-01/etc/systemd/system/kube-apiserver.service"),
    )
    .unwrap();
    for must in [
        "--service-cluster-ip-range=10.32.0.0/24",
        "--service-account-issuer=https://192.168.24.11:6443",
        "--etcd-servers=https://192.168.24.11:2379",
        "--authorization-mode=Node,RBAC",
        "--encryption-provider-config=/var/lib/kubernetes/encryption-config.yaml",
    ] {
        assert!(api.contains(must), "apiserver lacks {must}");
    }
    assert!(
        !api.contains("runtime-config"),
        "no api/all=true (KTHW's mistake)"
    );
}

#[test]
fn three_controllers_bootstrap_one_etcd_cluster() {
    let (_tmp, out) = render(3, &[]);
    let members = "kubi-controller-01=https://192.168.24.11:2380,kubi-controller-02=https://192.168.24.12:2380,kubi-controller-03=https://192.168.24.13:2380";
    for i in 1..=3 {
        let n = out.join(format!("kubi-controller-{i:02}"));
        let env = std::fs::read_to_string(n.join("etc/etcd/bootstrap.env")).unwrap();
        assert!(
            env.contains(&format!("ETCD_INITIAL_CLUSTER={members}\n")),
            "{env}"
        );
        assert!(env.contains("ETCD_INITIAL_CLUSTER_STATE=new\n"));
        let unit = std::fs::read_to_string(n.join("etc/systemd/system/etcd.service")).unwrap();
        assert!(unit.contains(&format!("--name=kubi-controller-{i:02}")));
        assert!(unit.contains(&format!("--listen-peer-urls=https://192.168.24.1{i}:2380")));
        let api =
            std::fs::read_to_string(n.join("etc/systemd/system/kube-apiserver.service")).unwrap();
        assert!(api.contains("--etcd-servers=https://192.168.24.11:2379,https://192.168.24.12:2379,https://192.168.24.13:2379"));
        insta::assert_snapshot!(
            format!("c3_etcd_{i}"),
            std::fs::read_to_string(n.join("etc/systemd/system/etcd.service")).unwrap()
        );
    }
}

#[test]
fn render_refuses_without_a_pki_and_touches_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_kubicluster"))
        .current_dir(tmp.path())
        .args(["render", "--out", "out"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no PKI") && err.contains("kubicluster cnc"),
        "{err}"
    );
    assert!(!tmp.path().join("out").exists());
}

const WORKER_FILES: &[&str] = &[
    "etc/containerd/config.toml",
    "etc/systemd/system/containerd.service",
    "etc/systemd/system/kubelet.service",
    "etc/systemd/system/kube-proxy.service",
    "var/lib/kubelet/kubelet-config.yaml",
    "var/lib/kube-proxy/kube-proxy-config.yaml",
    "etc/cni/net.d/99-loopback.conf",
    "etc/modules-load.d/kubicluster-containers.conf",
    "etc/sysctl.d/90-kubicluster.conf",
];

/// Every worker file for a 2-worker cluster, in both pod-network modes, by content. Neither
/// kubelet nor kube-proxy is started anywhere in this suite (no binaries here).
#[test]
fn worker_files_by_content_in_both_cni_modes() {
    for cni in ["bridge", "calico"] {
        let (_tmp, out) = render(1, &["--cni", cni]);
        for (i, w) in ["kubi-worker-01", "kubi-worker-02"].iter().enumerate() {
            let node = out.join(w);
            insta::assert_snapshot!(format!("{cni}_worker_{}_files", i + 1), listing(&node));
            let mut files: Vec<&str> = WORKER_FILES.to_vec();
            if cni == "bridge" {
                files.push("etc/cni/net.d/10-bridge.conflist");
                files.push("etc/systemd/system/kubicluster-pod-routes.service");
            }
            for f in files {
                let text = std::fs::read_to_string(node.join(f))
                    .unwrap_or_else(|e| panic!("{w}/{f}: {e}"));
                insta::assert_snapshot!(
                    format!("{cni}_w{}_{}", i + 1, f.rsplit('/').next().unwrap()),
                    text
                );
            }
            for secret in [
                "var/lib/kubelet/kubelet-key.pem",
                "var/lib/kubelet/kubeconfig",
                "var/lib/kube-proxy/kubeconfig",
            ] {
                assert_eq!(mode(&node.join(secret)), 0o600, "{w}/{secret}");
            }
        }
        let routes =
            out.join("kubi-controller-01/etc/systemd/system/kubicluster-pod-routes.service");
        if cni == "bridge" {
            let t = std::fs::read_to_string(&routes).unwrap();
            assert!(
                t.contains("ip route replace 10.200.21.0/24 via 192.168.24.21 proto static")
                    && t.contains("ip route replace 10.200.22.0/24 via 192.168.24.22 proto static"),
                "the controller routes both pod subnets: {t}"
            );
            let w1 = std::fs::read_to_string(
                out.join("kubi-worker-01/etc/cni/net.d/10-bridge.conflist"),
            )
            .unwrap();
            assert!(w1.contains(r#""subnet": "10.200.21.0/24""#), "{w1}");
        } else {
            assert!(!routes.exists(), "calico routes pods itself");
            assert!(
                !out.join("kubi-worker-01/etc/cni/net.d/10-bridge.conflist")
                    .exists()
            );
        }
    }
}

/// Every unit kubicluster writes is rated by `systemd-analyze security` (offline, on the rendered
/// file) and none may rate worse than tests/fixtures/unit-exposure.txt records; every unit
/// rendered is in that table. That the sandboxed units still run is shown in tests/lab_k8s.rs.
#[test]
#[allow(clippy::print_stderr)] // each unit's score, in the test's output
fn no_unit_is_less_sandboxed_than_recorded() {
    let analyze = which("systemd-analyze")
        .expect("systemd-analyze is missing: install the `systemd` package (make test-deps does)");
    let table = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/unit-exposure.txt"),
    )
    .unwrap();
    // With a virtual IP, so keepalived's unit is rated too; and a load-balancer VM (another
    // cluster: the two are not had together) for haproxy's.
    let (_tmp, out) = render(1, &["--cni", "bridge", "--controller-vip", "192.168.24.10"]);
    let (_tmp_lb, out_lb) = render(
        1,
        &[
            "--cni",
            "bridge",
            "--loadbalancer",
            "kubi-lb,192.168.24.5,192.168.122.5",
        ],
    );
    let root = |node: &str| if node == "kubi-lb" { &out_lb } else { &out };
    let mut seen = BTreeSet::new();
    for l in table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let [node, unit, max]: [&str; 3] = l
            .split_whitespace()
            .collect::<Vec<_>>()
            .try_into()
            .unwrap_or_else(|_| panic!("bad fixture line {l:?}"));
        let max: f64 = max.parse().unwrap();
        let o = Command::new(&analyze)
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(format!("--root={}", root(node).join(node).display()))
            .arg(unit)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        let score: f64 = text
            .lines()
            .find_map(|l| l.split_once(&format!("exposure level for {unit}: ")))
            .and_then(|(_, s)| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "{node} {unit}: no exposure in systemd-analyze's output: {text}{}",
                    String::from_utf8_lossy(&o.stderr)
                )
            });
        eprintln!("{node} {unit}: exposure {score} (recorded {max})");
        assert!(
            score <= max,
            "{node} {unit}: exposure rose to {score} (recorded {max}); sandbox it again or justify the new figure in tests/fixtures/unit-exposure.txt"
        );
        seen.insert((node.to_string(), unit.to_string()));
    }
    for node in ["kubi-controller-01", "kubi-worker-01", "kubi-lb"] {
        for e in std::fs::read_dir(root(node).join(node).join("etc/systemd/system")).unwrap() {
            let unit = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                seen.contains(&(node.to_string(), unit.clone())),
                "{node} {unit} is not in tests/fixtures/unit-exposure.txt"
            );
        }
    }
}
