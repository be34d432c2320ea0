//! The API client against a stand-in API server on 127.0.0.1 that speaks TLS with the
//! cluster's own serving certificate and demands a client certificate from the cluster CA
//! (as kube-apiserver does with --client-ca-file): `/readyz` is waited for, every addon manifest
//! `render` writes is server-side applied to the right REST path as the admin user, and a
//! client without a certificate is refused. No real kube-apiserver runs in this suite (its
//! binary cannot be had here); this checks kubicluster's side of the conversation.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    content_type: String,
    client_cn: String,
    body: String,
}

fn client_cn(der: &[u8]) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Serve until the test ends; every request is recorded. `/readyz` fails `not_ready` times first.
fn serve(certs: &Path, mut not_ready: u32) -> (u16, Arc<Mutex<Vec<Request>>>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let chain: Vec<CertificateDer> = CertificateDer::pem_file_iter(certs.join("kubernetes.pem"))
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(certs.join("kubernetes-key.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(certs.join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(tcp) = stream else { continue };
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut reader = BufReader::new(&mut tls);
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() || line.is_empty() {
                continue; // handshake refused (no client certificate)
            }
            let mut parts = line.split_whitespace();
            let (method, path) = (
                parts.next().unwrap_or("").to_string(),
                parts.next().unwrap_or("").to_string(),
            );
            let (mut len, mut content_type) = (0usize, String::new());
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap_or((h, ""));
                match k.to_ascii_lowercase().as_str() {
                    "content-length" => len = v.trim().parse().unwrap_or(0),
                    "content-type" => content_type = v.trim().to_string(),
                    _ => {}
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let cn = tls
                .conn
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| client_cn(c))
                .unwrap_or_default();
            let (status, reply) = if path == "/readyz" && not_ready > 0 {
                not_ready -= 1;
                (500, "[-]etcd failed".to_string())
            } else if path == "/readyz" {
                (200, "ok".to_string())
            } else {
                (200, String::from_utf8_lossy(&body).into_owned())
            };
            log2.lock().unwrap().push(Request {
                method,
                path,
                content_type,
                client_cn: cn,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
            let _ = write!(
                tls,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            );
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    (port, log)
}

#[test]
fn addons_are_server_side_applied_as_admin_over_mutual_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_kubicluster"))
            .current_dir(tmp.path())
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run(&["cnc"]);
    run(&["render", "--out", "out"]);
    let certs = tmp.path().join("work/kubicluster/certs_and_configs");
    let (port, log) = serve(&certs, 2);
    let admin = std::fs::read_to_string(certs.join("admin.kubeconfig")).unwrap();
    let server = format!("https://127.0.0.1:{port}");
    let client = kubicluster::kubeapi::Client::from_kubeconfig(&admin, Some(&server)).unwrap();
    // Not ready twice, then ready: `ready_soon` (what `remove` asks before it drains) waits.
    client
        .ready_soon(std::time::Duration::from_secs(30))
        .unwrap();
    // A server that does not answer at all is not waited for.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gone = kubicluster::kubeapi::Client::from_kubeconfig(
        &admin,
        Some(&format!("https://127.0.0.1:{closed}")),
    )
    .unwrap();
    let t = std::time::Instant::now();
    assert!(gone.ready_soon(std::time::Duration::from_secs(30)).is_err());
    assert!(
        t.elapsed() < std::time::Duration::from_secs(20),
        "not waited for"
    );
    let mut applied = 0;
    let mut files: Vec<_> = std::fs::read_dir(tmp.path().join("out/api"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in &files {
        for obj in kubicluster::kubeapi::documents(&std::fs::read_to_string(f).unwrap()).unwrap() {
            client.apply(&obj).unwrap();
            applied += 1;
        }
    }
    let reqs = log.lock().unwrap().clone();
    let readyz = reqs.iter().filter(|r| r.path == "/readyz").count();
    assert_eq!(readyz, 3, "waited through two not-ready answers");
    let patches: Vec<&Request> = reqs.iter().filter(|r| r.method == "PATCH").collect();
    assert_eq!(patches.len(), applied);
    assert!(applied >= 9, "RBAC, RuntimeClasses, CoreDNS: {applied}");
    for p in &patches {
        assert_eq!(p.content_type, "application/apply-patch+yaml");
        assert!(
            p.path.ends_with("?fieldManager=kubicluster&force=true"),
            "{}",
            p.path
        );
        assert_eq!(
            p.client_cn, "admin",
            "authenticated with the admin certificate"
        );
    }
    let paths: Vec<&str> = patches
        .iter()
        .map(|p| p.path.split('?').next().unwrap())
        .collect();
    for want in [
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:kube-apiserver-to-kubelet",
        "/apis/node.k8s.io/v1/runtimeclasses/runc",
        "/apis/node.k8s.io/v1/runtimeclasses/kata",
        "/api/v1/namespaces/kube-system/configmaps/coredns",
        "/apis/apps/v1/namespaces/kube-system/deployments/coredns",
        "/api/v1/namespaces/kube-system/services/kube-dns",
    ] {
        assert!(paths.contains(&want), "{want} in {paths:?}");
    }
    let svc = patches
        .iter()
        .find(|p| p.path.contains("/services/kube-dns"))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&svc.body).unwrap();
    assert_eq!(
        v["spec"]["clusterIP"], "10.32.0.10",
        "CoreDNS at the cluster DNS address"
    );

    // Without a client certificate the server refuses the connection.
    let ca = std::fs::read(certs.join("ca.pem")).unwrap();
    let anon = kubicluster::net::agent(
        ureq::Agent::config_builder()
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(
                        &kubicluster::kubeapi::pem_certs(&ca).unwrap(),
                    ))
                    .build(),
            )
            .build(),
    );
    assert!(
        anon.get(&format!("{server}/readyz")).call().is_err(),
        "no client certificate, no answer"
    );
}
