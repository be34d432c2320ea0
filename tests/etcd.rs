//! Real etcd tier: Debian's etcd started on 127.0.0.1 with the generated etcd server/peer certs and
//! client-cert-auth; the apiserver→etcd client cert writes and reads a key over mTLS; clients
//! without a certificate, or with a Kubernetes identity from the cluster CA, are refused.
//! Gate: KUBICLUSTER_TEST_ETCD=1 (set by `make test`); with the gate set, missing binaries fail.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use kubicluster::pki::{self, Options};

struct Etcd {
    child: Child,
    log: PathBuf,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn etcdctl(endpoint: &str, certs: &Path, client: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg(format!("--cacert={}", certs.join("etcd-ca.pem").display()))
        .args(["--dial-timeout=3s", "--command-timeout=5s"]);
    if let Some(c) = client {
        cmd.arg(format!(
            "--cert={}",
            certs.join(format!("{c}.pem")).display()
        ))
        .arg(format!(
            "--key={}",
            certs.join(format!("{c}-key.pem")).display()
        ));
    }
    cmd.args(args).output().expect("run etcdctl")
}

#[test]
fn etcd_serves_mtls_with_the_generated_pki() {
    if !tier_enabled("KUBICLUSTER_TEST_ETCD", &["etcd", "etcdctl"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cl = cluster(tmp.path(), 1, 1);
    pki::generate(&cl, &Options::default()).unwrap();
    let certs = cl.certs_dir();
    let name = "kubi-controller-01";
    let (client_port, peer_port) = (free_port(), free_port());
    let client_url = format!("https://127.0.0.1:{client_port}");
    let peer_url = format!("https://127.0.0.1:{peer_port}");
    let c = |f: &str| certs.join(f).display().to_string();
    let log = tmp.path().join("etcd.log");
    let child = Command::new("etcd")
        .args(["--name", name, "--data-dir"])
        .arg(tmp.path().join("etcd-data"))
        .args([
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
        ])
        .args([
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
        ])
        .args(["--initial-cluster", &format!("{name}={peer_url}")])
        .args([
            "--initial-cluster-state",
            "new",
            "--initial-cluster-token",
            &cl.etcd.cluster_token,
        ])
        .args(["--cert-file", &c(&format!("etcd-server-{name}.pem"))])
        .args(["--key-file", &c(&format!("etcd-server-{name}-key.pem"))])
        .args(["--trusted-ca-file", &c("etcd-ca.pem"), "--client-cert-auth"])
        .args(["--peer-cert-file", &c(&format!("etcd-peer-{name}.pem"))])
        .args(["--peer-key-file", &c(&format!("etcd-peer-{name}-key.pem"))])
        .args([
            "--peer-trusted-ca-file",
            &c("etcd-ca.pem"),
            "--peer-client-cert-auth",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start etcd");
    let etcd = Etcd { child, log };

    // Wait until it answers a health check with the apiserver's client cert.
    let start = Instant::now();
    loop {
        let out = etcdctl(
            &client_url,
            &certs,
            Some("apiserver-etcd-client"),
            &["endpoint", "health"],
        );
        if out.status.success() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "etcd did not become healthy: {}\n--- etcd log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&etcd.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    let put = etcdctl(
        &client_url,
        &certs,
        Some("apiserver-etcd-client"),
        &["put", "/kubicluster/test", "hello"],
    );
    assert!(
        put.status.success(),
        "put: {}",
        String::from_utf8_lossy(&put.stderr)
    );
    let get = etcdctl(
        &client_url,
        &certs,
        Some("apiserver-etcd-client"),
        &["get", "/kubicluster/test", "--print-value-only"],
    );
    assert!(
        get.status.success(),
        "get: {}",
        String::from_utf8_lossy(&get.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "hello");

    // The member list shows the peer URL we gave, served over TLS.
    let members = etcdctl(
        &client_url,
        &certs,
        Some("apiserver-etcd-client"),
        &["member", "list"],
    );
    assert!(String::from_utf8_lossy(&members.stdout).contains(&peer_url));

    // No client certificate: refused.
    let anon = etcdctl(&client_url, &certs, None, &["get", "/kubicluster/test"]);
    assert!(
        !anon.status.success(),
        "a client without a certificate must be rejected"
    );
    assert!(!String::from_utf8_lossy(&anon.stdout).contains("hello"));

    // A Kubernetes identity (signed by the cluster CA, not the etcd CA): refused too.
    let admin = etcdctl(
        &client_url,
        &certs,
        Some("admin"),
        &["get", "/kubicluster/test"],
    );
    assert!(
        !admin.status.success(),
        "the admin cert must not reach etcd directly"
    );
    assert!(!String::from_utf8_lossy(&admin.stdout).contains("hello"));
    let log = std::fs::read_to_string(&etcd.log).unwrap_or_default();
    assert!(
        log.contains("bad certificate")
            || log.contains("certificate required")
            || log.contains("unknown authority")
            || log.contains("rejected connection"),
        "etcd logged the refused handshakes:\n{log}"
    );
}
