//! The PKI made by `cnc`, read back with x509-parser and checked against what each component
//! needs, plus an independent chain check with the openssl CLI.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;
use kubicluster::pki::catalog::{self, Authority};
use kubicluster::pki::inspect::{self, ParsedPem};
use kubicluster::pki::kubeconfig::Kubeconfig;
use kubicluster::pki::{self, Group, Options, Outcome, Report, encryption};
use kubicluster::spec::KeyAlgorithm;

fn outcomes(r: &Report) -> BTreeMap<String, Outcome> {
    r.entries
        .iter()
        .filter(|e| !matches!(e.outcome, Outcome::Warning(_)))
        .map(|e| (e.file.clone(), e.outcome.clone()))
        .collect()
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn snapshot_dir(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != ".lock")
        .map(|e| {
            (
                e.file_name().into_string().unwrap(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn sans(pem: &[u8]) -> (Vec<String>, Vec<String>) {
    let p = ParsedPem::from_pem(pem).unwrap();
    let c = p.cert().unwrap();
    let (d, i) = inspect::sans(&c);
    (
        d.into_iter().collect(),
        i.into_iter().map(|i| i.to_string()).collect(),
    )
}

fn verifies(leaf: &[u8], ca: &[u8]) -> bool {
    let (l, c) = (
        ParsedPem::from_pem(leaf).unwrap(),
        ParsedPem::from_pem(ca).unwrap(),
    );
    let (l, c) = (l.cert().unwrap(), c.cert().unwrap());
    l.issuer() == c.subject() && l.verify_signature(Some(c.public_key())).is_ok()
}

#[test]
fn every_certificate_matches_its_catalog_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let cl = cluster_with(tmp.path(), 2, 2, |o| {
        o.api_server_lb_ip = Some("192.168.24.100".into())
    });
    pki::generate(&cl, &Options::default()).unwrap();
    let dir = cl.certs_dir();

    for a in Authority::ALL {
        let pem = read(&dir, &format!("{}.pem", a.file()));
        let p = ParsedPem::from_pem(&pem).unwrap();
        let c = p.cert().unwrap();
        assert!(c.is_ca(), "{} is a CA", a.file());
        assert_eq!(c.subject(), c.issuer(), "{} is self-signed", a.file());
        c.verify_signature(None).unwrap();
        let ku = c.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign());
        let days =
            (c.validity().not_after.timestamp() - c.validity().not_before.timestamp()) / 86_400;
        assert_eq!(days, 3650, "CA lifetime (plus the 5-minute backdate)");
        assert_eq!(mode(&dir.join(format!("{}-key.pem", a.file()))), 0o600);
    }

    let certs = catalog::certificates(&cl);
    assert_eq!(
        certs.len(),
        4 + 2 * 2 + 6 + 2,
        "catalog size for 2 controllers + 2 workers"
    );
    for spec in &certs {
        let pem = read(&dir, &format!("{}.pem", spec.file));
        let key = fs::read_to_string(dir.join(format!("{}-key.pem", spec.file))).unwrap();
        let ca = read(&dir, &format!("{}.pem", spec.issuer.file()));
        let p = ParsedPem::from_pem(&pem).unwrap();
        let c = p.cert().unwrap();
        assert!(!c.is_ca(), "{} must not be a CA", spec.file);
        assert!(
            verifies(&pem, &ca),
            "{} chains to {}",
            spec.file,
            spec.issuer.file()
        );
        assert_eq!(inspect::common_name(&c), spec.common_name);
        assert_eq!(inspect::organizations(&c), spec.organizations);
        let (dns, ips) = inspect::sans(&c);
        assert_eq!(dns, spec.dns_names, "{} DNS SANs", spec.file);
        assert_eq!(ips, spec.ip_addresses, "{} IP SANs", spec.file);
        assert!(
            inspect::key_matches(&c, &rcgen::KeyPair::from_pem(&key).unwrap()),
            "{} key",
            spec.file
        );
        assert_eq!(inspect::key_kind(&c), "ecdsa-p256");
        let ku = c.key_usage().unwrap().unwrap().value;
        assert!(
            ku.digital_signature() && !ku.key_cert_sign(),
            "{} key usage",
            spec.file
        );
        let days =
            (c.validity().not_after.timestamp() - c.validity().not_before.timestamp()) / 86_400;
        assert_eq!(days, 365, "{} lifetime", spec.file);
        assert!(c.validity().is_valid(), "{} valid now", spec.file);
        assert_eq!(
            mode(&dir.join(format!("{}-key.pem", spec.file))),
            0o600,
            "{} key mode",
            spec.file
        );
        assert_eq!(
            mode(&dir.join(format!("{}.pem", spec.file))),
            0o644,
            "{} cert mode",
            spec.file
        );
    }
}

/// The identities Kubernetes relies on, written out independently of the catalog.
#[test]
fn identities_kubernetes_relies_on() {
    let tmp = tempfile::tempdir().unwrap();
    let cl = cluster_with(tmp.path(), 2, 2, |o| {
        o.api_server_lb_ip = Some("192.168.24.100".into())
    });
    pki::generate(&cl, &Options::default()).unwrap();
    let dir = cl.certs_dir();
    let subject = |f: &str| {
        let pem = read(&dir, f);
        let p = ParsedPem::from_pem(&pem).unwrap();
        let c = p.cert().unwrap();
        (
            inspect::common_name(&c),
            inspect::organizations(&c),
            inspect::ext_usages(&c),
        )
    };
    let client = (false, true);
    let both = (true, true);
    assert_eq!(
        subject("admin.pem"),
        ("admin".into(), vec!["system:masters".into()], client)
    );
    assert_eq!(
        subject("kube-proxy.pem"),
        (
            "system:kube-proxy".into(),
            vec!["system:node-proxier".into()],
            client
        )
    );
    assert_eq!(
        subject("kube-controller-manager.pem"),
        (
            "system:kube-controller-manager".into(),
            vec!["system:kube-controller-manager".into()],
            client
        )
    );
    assert_eq!(
        subject("kube-scheduler.pem"),
        (
            "system:kube-scheduler".into(),
            vec!["system:kube-scheduler".into()],
            client
        )
    );
    assert_eq!(
        subject("kubi-worker-02.pem"),
        (
            "system:node:kubi-worker-02".into(),
            vec!["system:nodes".into()],
            both
        )
    );
    assert_eq!(
        subject("kubernetes.pem").2,
        (true, false),
        "apiserver cert is for serving only"
    );
    assert_eq!(subject("etcd-server-kubi-controller-02.pem").2, both);

    let (dns, ips) = sans(&read(&dir, "kubernetes.pem"));
    for d in [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
        "kubi-controller-01",
        "kubi-controller-02",
    ] {
        assert!(dns.contains(&d.to_string()), "apiserver SAN {d} in {dns:?}");
    }
    for i in [
        "10.32.0.1",
        "127.0.0.1",
        "192.168.24.11",
        "192.168.122.11",
        "192.168.24.12",
        "192.168.24.100",
    ] {
        assert!(ips.contains(&i.to_string()), "apiserver SAN {i} in {ips:?}");
    }
    assert!(!dns.contains(&"kubi-worker-01".to_string()));
    let (dns, ips) = sans(&read(&dir, "etcd-server-kubi-controller-01.pem"));
    assert_eq!(dns, ["kubi-controller-01", "localhost"]);
    assert_eq!(ips, ["127.0.0.1", "192.168.24.11", "192.168.122.11"]);
    let (dns, ips) = sans(&read(&dir, "kubi-worker-01.pem"));
    assert_eq!(dns, ["kubi-worker-01"]);
    assert_eq!(ips, ["192.168.24.21", "192.168.122.21"]);

    // Separate CAs: etcd trusts only its own CA, so no Kubernetes identity can reach etcd.
    let (ca, etcd_ca, fp_ca) = (
        read(&dir, "ca.pem"),
        read(&dir, "etcd-ca.pem"),
        read(&dir, "front-proxy-ca.pem"),
    );
    assert!(verifies(&read(&dir, "apiserver-etcd-client.pem"), &etcd_ca));
    assert!(!verifies(&read(&dir, "apiserver-etcd-client.pem"), &ca));
    for kube_identity in [
        "admin.pem",
        "kubi-worker-01.pem",
        "kube-proxy.pem",
        "calico-cni.pem",
    ] {
        assert!(
            !verifies(&read(&dir, kube_identity), &etcd_ca),
            "{kube_identity} must not be trusted by etcd"
        );
    }
    assert!(verifies(&read(&dir, "front-proxy-client.pem"), &fp_ca));
    assert!(!verifies(&read(&dir, "front-proxy-client.pem"), &ca));
}

#[test]
fn chains_verify_with_the_openssl_cli() {
    assert!(
        which("openssl").is_some(),
        "openssl CLI is needed for the independent chain check"
    );
    let tmp = tempfile::tempdir().unwrap();
    let cl = cluster(tmp.path(), 1, 2);
    pki::generate(&cl, &Options::default()).unwrap();
    let dir = cl.certs_dir();
    for spec in catalog::certificates(&cl) {
        let purpose = match spec.usage {
            catalog::Usage::Server => "sslserver",
            catalog::Usage::Client => "sslclient",
            catalog::Usage::ServerAndClient => "sslserver",
            catalog::Usage::Signing => "any",
        };
        let out = Command::new("openssl")
            .args(["verify", "-purpose", purpose, "-CAfile"])
            .arg(dir.join(format!("{}.pem", spec.issuer.file())))
            .arg(dir.join(format!("{}.pem", spec.file)))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl verify {}: {}",
            spec.file,
            String::from_utf8_lossy(&out.stdout)
        );
        // and the key really is the certificate's key
        let pubkey = |args: &[&str], f: &str| {
            let o = Command::new("openssl")
                .args(args)
                .arg(dir.join(f))
                .output()
                .unwrap();
            assert!(o.status.success());
            o.stdout
        };
        assert_eq!(
            pubkey(
                &["x509", "-noout", "-pubkey", "-in"],
                &format!("{}.pem", spec.file)
            ),
            pubkey(
                &["pkey", "-pubout", "-in"],
                &format!("{}-key.pem", spec.file)
            ),
            "{} key/cert pair",
            spec.file
        );
    }
}

#[test]
fn kubeconfigs_parse_back_and_point_at_the_right_server() {
    let tmp = tempfile::tempdir().unwrap();
    let cl = cluster(tmp.path(), 2, 2);
    pki::generate(&cl, &Options::default()).unwrap();
    let dir = cl.certs_dir();
    let ca = read(&dir, "ca.pem");
    let expect = [
        ("admin", "https://192.168.24.11:6443", "admin"),
        (
            "kube-proxy",
            "https://192.168.24.11:6443",
            "system:kube-proxy",
        ),
        ("calico-cni", "https://192.168.24.11:6443", "calico-cni"),
        (
            "kubi-worker-01",
            "https://192.168.24.11:6443",
            "system:node:kubi-worker-01",
        ),
        (
            "kubi-worker-02",
            "https://192.168.24.11:6443",
            "system:node:kubi-worker-02",
        ),
        (
            "kube-controller-manager",
            "https://127.0.0.1:6443",
            "system:kube-controller-manager",
        ),
        (
            "kube-scheduler",
            "https://127.0.0.1:6443",
            "system:kube-scheduler",
        ),
    ];
    assert_eq!(catalog::kubeconfigs(&cl).len(), expect.len());
    for (name, server, cn) in expect {
        let path = dir.join(format!("{name}.kubeconfig"));
        assert_eq!(mode(&path), 0o600, "{name}.kubeconfig mode");
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("apiVersion: v1\nkind: Config\n"), "{text}");
        let kc = Kubeconfig::from_yaml(&text).unwrap();
        assert_eq!(kc.clusters.len(), 1);
        assert_eq!(kc.clusters[0].name, "kubicluster");
        assert_eq!(kc.clusters[0].cluster.server, server, "{name}");
        assert_eq!(
            Kubeconfig::decode(&kc.clusters[0].cluster.certificate_authority_data).unwrap(),
            ca
        );
        assert_eq!(kc.current_context, "default");
        assert_eq!(kc.contexts[0].context.cluster, "kubicluster");
        assert_eq!(kc.contexts[0].context.user, kc.users[0].name);
        let cert = Kubeconfig::decode(&kc.users[0].user.client_certificate_data).unwrap();
        let key = Kubeconfig::decode(&kc.users[0].user.client_key_data).unwrap();
        let p = ParsedPem::from_pem(&cert).unwrap();
        let c = p.cert().unwrap();
        assert_eq!(inspect::common_name(&c), cn, "{name} identity");
        assert!(verifies(&cert, &ca));
        let key = rcgen::KeyPair::from_pem(std::str::from_utf8(&key).unwrap()).unwrap();
        assert!(
            inspect::key_matches(&c, &key),
            "{name} embedded key matches"
        );
    }
}

#[test]
fn encryption_config_is_current_and_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let cl = cluster(tmp.path(), 1, 1);
    pki::generate(&cl, &Options::default()).unwrap();
    let path = cl.certs_dir().join("encryption-config.yaml");
    assert_eq!(mode(&path), 0o600);
    let c = encryption::EncryptionConfiguration::from_yaml(&fs::read_to_string(&path).unwrap())
        .unwrap();
    assert_eq!(c.api_version, "apiserver.config.k8s.io/v1");
    assert_eq!(c.kind, "EncryptionConfiguration");
    assert_eq!(c.resources[0].resources, ["secrets"]);
    let providers = &c.resources[0].providers;
    assert!(providers[0].secretbox.is_some() && providers[1].identity.is_some());
    // a second cluster gets a different key
    let tmp2 = tempfile::tempdir().unwrap();
    let cl2 = cluster(tmp2.path(), 1, 1);
    pki::generate(&cl2, &Options::default()).unwrap();
    assert_ne!(
        fs::read(&path).unwrap(),
        fs::read(cl2.certs_dir().join("encryption-config.yaml")).unwrap()
    );
    // directories are private
    assert_eq!(mode(&cl.certs_dir()), 0o700);
    assert_eq!(mode(&cl.cluster_dir()), 0o700);
}

#[test]
fn second_run_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cl = cluster(tmp.path(), 1, 2);
    let first = pki::generate(&cl, &Options::default()).unwrap();
    assert!(outcomes(&first).values().all(|o| *o == Outcome::Created));
    let before = snapshot_dir(&cl.certs_dir());
    let second = pki::generate(&cl, &Options::default()).unwrap();
    assert!(
        outcomes(&second).values().all(|o| *o == Outcome::Kept),
        "{:?}",
        second.entries
    );
    // 3 CAs + 14 leaves + 7 kubeconfigs + the encryption config
    assert_eq!(second.counts(), (0, 0, 3 + 14 + 7 + 1));
    assert_eq!(snapshot_dir(&cl.certs_dir()), before, "no file changed");
}

#[test]
fn adding_a_controller_reissues_only_what_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    pki::generate(&cluster(tmp.path(), 1, 2), &Options::default()).unwrap();
    let cl = cluster(tmp.path(), 2, 2);
    let r = outcomes(&pki::generate(&cl, &Options::default()).unwrap());
    let changed: BTreeMap<_, _> = r.iter().filter(|(_, o)| **o != Outcome::Kept).collect();
    let names: Vec<_> = changed.keys().map(|s| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "etcd-peer-kubi-controller-02.pem",
            "etcd-server-kubi-controller-02.pem",
            "kubernetes.pem"
        ]
    );
    match &r["kubernetes.pem"] {
        Outcome::Reissued(why) => assert_eq!(
            why,
            "SANs changed: add kubi-controller-02; add 192.168.24.12, 192.168.122.12"
        ),
        o => panic!("{o:?}"),
    }
    let (dns, _) = sans(&read(&cl.certs_dir(), "kubernetes.pem"));
    assert!(dns.contains(&"kubi-controller-02".to_string()));
}

#[test]
fn force_reissues_leaves_but_never_cas_or_the_encryption_key() {
    let tmp = tempfile::tempdir().unwrap();
    let cl = cluster(tmp.path(), 1, 1);
    pki::generate(&cl, &Options::default()).unwrap();
    let before = snapshot_dir(&cl.certs_dir());
    let r = outcomes(
        &pki::generate(
            &cl,
            &Options {
                force: true,
                ..Options::default()
            },
        )
        .unwrap(),
    );
    let after = snapshot_dir(&cl.certs_dir());
    for a in Authority::ALL {
        assert_eq!(r[&format!("{}.pem", a.file())], Outcome::Kept);
        assert_eq!(
            before[&format!("{}-key.pem", a.file())],
            after[&format!("{}-key.pem", a.file())]
        );
    }
    assert_eq!(
        before["encryption-config.yaml"],
        after["encryption-config.yaml"]
    );
    for spec in catalog::certificates(&cl) {
        assert_eq!(
            r[&format!("{}.pem", spec.file)],
            Outcome::Reissued("forced (--force)".into())
        );
        assert_ne!(
            before[&format!("{}-key.pem", spec.file)],
            after[&format!("{}-key.pem", spec.file)]
        );
    }
    assert_eq!(
        r["admin.kubeconfig"],
        Outcome::Updated,
        "kubeconfigs follow their certs"
    );
}

#[test]
fn a_leaf_close_to_expiry_is_reissued() {
    let tmp = tempfile::tempdir().unwrap();
    let cl = cluster(tmp.path(), 1, 1);
    pki::generate(&cl, &Options::default()).unwrap();
    let dir = cl.certs_dir();
    // Replace admin.pem with a 10-day certificate for the same key.
    let spec = catalog::certificates(&cl)
        .into_iter()
        .find(|c| c.file == "admin")
        .unwrap();
    let key =
        rcgen::KeyPair::from_pem(&fs::read_to_string(dir.join("admin-key.pem")).unwrap()).unwrap();
    let ca_key =
        rcgen::KeyPair::from_pem(&fs::read_to_string(dir.join("ca-key.pem")).unwrap()).unwrap();
    let ca_pem = fs::read_to_string(dir.join("ca.pem")).unwrap();
    let short = pki::issue::signed_leaf(&spec, &key, &ca_pem, &ca_key, 10).unwrap();
    fs::write(dir.join("admin.pem"), short).unwrap();
    let r = outcomes(&pki::generate(&cl, &Options::default()).unwrap());
    match &r["admin.pem"] {
        Outcome::Reissued(why) => assert!(
            why.starts_with("expires on ") && why.ends_with("within 30 days"),
            "{why}"
        ),
        o => panic!("{o:?}"),
    }
    assert_eq!(r["kube-proxy.pem"], Outcome::Kept);
}

#[test]
fn damaged_leaves_are_reissued_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let cl = cluster(tmp.path(), 1, 2);
    pki::generate(&cl, &Options::default()).unwrap();
    let dir = cl.certs_dir();
    fs::remove_file(dir.join("admin-key.pem")).unwrap();
    fs::copy(
        dir.join("kube-proxy-key.pem"),
        dir.join("calico-cni-key.pem"),
    )
    .unwrap();
    fs::write(dir.join("kube-scheduler.pem"), "garbage").unwrap();
    let r = outcomes(&pki::generate(&cl, &Options::default()).unwrap());
    assert_eq!(
        r["admin.pem"],
        Outcome::Reissued("private key missing".into())
    );
    assert_eq!(
        r["calico-cni.pem"],
        Outcome::Reissued("private key does not match the certificate".into())
    );
    assert!(
        matches!(&r["kube-scheduler.pem"], Outcome::Reissued(w) if w.starts_with("existing certificate unreadable"))
    );
    assert_eq!(r["kube-proxy.pem"], Outcome::Kept);
    assert_eq!(r["admin.kubeconfig"], Outcome::Updated);
}

#[test]
fn a_half_missing_ca_is_an_error_and_nothing_is_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let cl = cluster(tmp.path(), 1, 1);
    pki::generate(&cl, &Options::default()).unwrap();
    let dir = cl.certs_dir();
    fs::remove_file(dir.join("ca-key.pem")).unwrap();
    let before = snapshot_dir(&dir);
    let err = pki::generate(
        &cl,
        &Options {
            force: true,
            ..Options::default()
        },
    )
    .unwrap_err();
    let f = err
        .downcast_ref::<kubicluster::error::Failure>()
        .expect("a Failure with a hint");
    assert!(
        f.message.contains("ca.pem exists but its key"),
        "{}",
        f.message
    );
    assert!(f.hint.as_deref().unwrap().contains("restore the key"));
    assert_eq!(snapshot_dir(&dir), before, "nothing was touched");
}

#[test]
fn rsa_keys_and_switching_algorithms() {
    let tmp = tempfile::tempdir().unwrap();
    let ecdsa = cluster(tmp.path(), 1, 1);
    pki::generate(&ecdsa, &Options::default()).unwrap();
    let rsa = cluster_with(tmp.path(), 1, 1, |o| {
        o.key_algorithm = Some(KeyAlgorithm::Rsa2048)
    });
    let r = outcomes(&pki::generate(&rsa, &Options::default()).unwrap());
    assert_eq!(
        r["admin.pem"],
        Outcome::Reissued("key algorithm changed (ecdsa-p256 → rsa-2048)".into())
    );
    assert_eq!(r["ca.pem"], Outcome::Kept, "the CA keeps its own key");
    let dir = rsa.certs_dir();
    let pem = read(&dir, "admin.pem");
    let p = ParsedPem::from_pem(&pem).unwrap();
    let c = p.cert().unwrap();
    assert_eq!(inspect::key_kind(&c), "rsa-2048");
    assert!(c.key_usage().unwrap().unwrap().value.key_encipherment());
    assert!(verifies(&pem, &read(&dir, "ca.pem")));

    // A fresh RSA-4096 PKI: CA and leaves.
    let tmp = tempfile::tempdir().unwrap();
    let big = cluster_with(tmp.path(), 1, 0, |o| {
        o.key_algorithm = Some(KeyAlgorithm::Rsa4096)
    });
    pki::generate(
        &big,
        &Options {
            groups: [Group::Ca, Group::Admin].into(),
            ..Options::default()
        },
    )
    .unwrap();
    for f in ["ca.pem", "admin.pem"] {
        let pem = read(&big.certs_dir(), f);
        let p = ParsedPem::from_pem(&pem).unwrap();
        assert_eq!(inspect::key_kind(&p.cert().unwrap()), "rsa-4096", "{f}");
    }
}

#[test]
fn a_worker_can_be_added_on_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    pki::generate(&cluster(tmp.path(), 1, 2), &Options::default()).unwrap();
    // Like the original: cnc for_worker_nodes -w NEW -c CTRL
    let only_new = cluster_with(tmp.path(), 1, 0, |o| o.workers = vec![worker(3)]);
    let r = outcomes(
        &pki::generate(
            &only_new,
            &Options {
                groups: [Group::Workers].into(),
                ..Options::default()
            },
        )
        .unwrap(),
    );
    let changed: Vec<_> = r
        .iter()
        .filter(|(_, o)| **o != Outcome::Kept)
        .map(|(f, _)| f.as_str())
        .collect();
    assert_eq!(changed, ["kubi-worker-03.kubeconfig", "kubi-worker-03.pem"]);
    assert_eq!(r["ca.pem"], Outcome::Kept);
    let ca = read(&only_new.certs_dir(), "ca.pem");
    assert!(verifies(
        &read(&only_new.certs_dir(), "kubi-worker-03.pem"),
        &ca
    ));
    // the older workers' files are still there
    assert!(
        only_new
            .certs_dir()
            .join("kubi-worker-02.kubeconfig")
            .is_file()
    );
    let ips: Vec<IpAddr> = sans(&read(&only_new.certs_dir(), "kubi-worker-03.pem"))
        .1
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(ips.len(), 2);
}

#[test]
fn dry_run_writes_nothing_and_predicts_the_real_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dry = Options {
        dry_run: true,
        ..Options::default()
    };
    // From nothing: everything would be created, and not even the directory appears.
    let c1 = cluster(tmp.path(), 1, 2);
    let r = pki::generate(&c1, &dry).unwrap();
    assert!(r.dry_run);
    assert!(outcomes(&r).values().all(|o| *o == Outcome::Created));
    assert!(!c1.cluster_dir().exists(), "a dry run creates nothing");
    let real = pki::generate(&c1, &Options::default()).unwrap();
    assert_eq!(
        outcomes(&r),
        outcomes(&real),
        "the dry run predicted the real run"
    );

    // After adding a controller and a worker: the plan names exactly what the real run then does.
    let c2 = cluster(tmp.path(), 2, 3);
    let before = snapshot_dir(&c2.certs_dir());
    let planned = outcomes(&pki::generate(&c2, &dry).unwrap());
    assert_eq!(snapshot_dir(&c2.certs_dir()), before, "nothing written");
    let done = outcomes(&pki::generate(&c2, &Options::default()).unwrap());
    assert_eq!(planned, done);
    assert!(matches!(planned["kubernetes.pem"], Outcome::Reissued(_)));
    assert_eq!(planned["kubi-worker-03.kubeconfig"], Outcome::Created);
    assert_eq!(planned["admin.kubeconfig"], Outcome::Kept);
}

#[test]
fn a_missing_ca_or_encryption_key_is_refused_unless_asked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let cl = cluster(tmp.path(), 1, 2);
    let dir = cl.certs_dir();
    pki::generate(&cl, &Options::default()).unwrap();
    let enc_before = read(&dir, "encryption-config.yaml");
    // The whole CA gone: refused, nothing written.
    std::fs::remove_file(dir.join("ca.pem")).unwrap();
    std::fs::remove_file(dir.join("ca-key.pem")).unwrap();
    let before = snapshot_dir(&dir);
    let e = pki::generate(&cl, &Options::default()).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("ca.pem")
            && msg.contains("created before")
            && msg.contains("break every node"),
        "{msg}"
    );
    let (code, hint) = kubicluster::error::classify(&e);
    assert_eq!(code, 1);
    assert!(hint.unwrap().contains("--new-ca"));
    assert_eq!(snapshot_dir(&dir), before, "nothing written");
    // Asked for explicitly: a new CA, and every leaf it signed is re-issued.
    let r = pki::generate(
        &cl,
        &Options {
            new_ca: true,
            ..Default::default()
        },
    )
    .unwrap();
    let o = outcomes(&r);
    assert_eq!(o["ca.pem"], Outcome::Created);
    assert!(
        matches!(&o["admin.pem"], Outcome::Reissued(_)),
        "{:?}",
        o["admin.pem"]
    );
    assert!(
        r.entries.iter().any(|e| e.file == "ca.pem"
            && matches!(&e.outcome, Outcome::Warning(w) if w.contains("NEW CA")))
    );
    // The encryption config gone: refused; with the flag, a new one.
    std::fs::remove_file(dir.join("encryption-config.yaml")).unwrap();
    let e = pki::generate(&cl, &Options::default()).unwrap_err();
    assert!(format!("{e:#}").contains("unreadable"), "{e:#}");
    assert!(!dir.join("encryption-config.yaml").exists());
    pki::generate(
        &cl,
        &Options {
            new_encryption_key: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_ne!(read(&dir, "encryption-config.yaml"), enc_before);
}

#[test]
fn an_encryption_config_without_a_usable_key_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cl = cluster(tmp.path(), 1, 1);
    let dir = cl.certs_dir();
    pki::generate(&cl, &Options::default()).unwrap();
    let full = read(&dir, "encryption-config.yaml");
    // Every truncation that still parses as YAML must be refused, not "kept".
    let mut refused = 0;
    for len in 1..full.len() {
        std::fs::write(dir.join("encryption-config.yaml"), &full[..len]).unwrap();
        match pki::generate(&cl, &Options::default()) {
            Ok(r) => assert_eq!(
                outcomes(&r)["encryption-config.yaml"],
                Outcome::Kept,
                "only a complete config is kept (length {len})"
            ),
            Err(e) => {
                assert!(
                    format!("{e:#}").contains("not a valid encryption config"),
                    "length {len}: {e:#}"
                );
                refused += 1;
            }
        }
        if let Ok(text) = std::str::from_utf8(&full[..len])
            && kubicluster::pki::encryption::EncryptionConfiguration::from_yaml(text).is_ok()
        {
            let c = kubicluster::pki::encryption::EncryptionConfiguration::from_yaml(text).unwrap();
            assert!(
                !c.resources.is_empty(),
                "length {len} accepted without resources"
            );
        }
    }
    assert!(
        refused > full.len() / 2,
        "{refused} of {} truncations refused",
        full.len()
    );
}

#[test]
fn an_interrupted_first_ca_is_made_again_and_temp_files_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let cl = cluster(tmp.path(), 1, 1);
    let dir = cl.certs_dir();
    std::fs::create_dir_all(&dir).unwrap();
    // A key without its certificate, never recorded: a first run killed midway.
    std::fs::write(dir.join("ca-key.pem"), b"half").unwrap();
    std::fs::write(dir.join(".admin.pem.tmp-4242"), b"x").unwrap();
    let r = pki::generate(&cl, &Options::default()).unwrap();
    assert_eq!(outcomes(&r)["ca.pem"], Outcome::Created);
    assert!(
        !dir.join(".admin.pem.tmp-4242").exists(),
        "stale temp file removed"
    );
    assert!(verifies(&read(&dir, "admin.pem"), &read(&dir, "ca.pem")));
    // Once recorded, a missing half is an error (restore from backup), not a silent new CA.
    std::fs::remove_file(dir.join("ca.pem")).unwrap();
    let e = pki::generate(&cl, &Options::default()).unwrap_err();
    assert!(format!("{e:#}").contains("is missing"), "{e:#}");
}

#[test]
fn loose_modes_on_secrets_are_tightened_and_said() {
    let tmp = tempfile::tempdir().unwrap();
    let cl = cluster(tmp.path(), 1, 1);
    let dir = cl.certs_dir();
    pki::generate(&cl, &Options::default()).unwrap();
    for f in [
        "ca-key.pem",
        "admin-key.pem",
        "admin.kubeconfig",
        "encryption-config.yaml",
    ] {
        std::fs::set_permissions(
            dir.join(f),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .unwrap();
    }
    let r = pki::generate(&cl, &Options::default()).unwrap();
    for f in [
        "ca-key.pem",
        "admin-key.pem",
        "admin.kubeconfig",
        "encryption-config.yaml",
    ] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
        assert!(
            r.entries.iter().any(|e| e.file == f
                && matches!(&e.outcome, Outcome::Warning(w) if w.contains("tightened to 0600"))),
            "{f} reported"
        );
    }
}

/// Every file the PKI writes belongs either to a node (its name in it) or to the cluster; the
/// cluster's stems are exactly the names `spec` keeps node names off.
#[test]
fn the_cluster_files_are_the_names_the_spec_reserves() {
    let tmp = tempfile::tempdir().unwrap();
    let cl = cluster_with(tmp.path(), 2, 2, |_| {});
    pki::generate(&cl, &Options::default()).unwrap();
    let nodes: Vec<String> = cl.nodes.iter().map(|n| n.name.clone()).collect();
    let mut stems = std::collections::BTreeSet::new();
    for e in fs::read_dir(cl.certs_dir()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let stem = [
            "-key.pem",
            ".pem",
            ".kubeconfig",
            ".yaml",
            ".csr",
            "-key.json",
        ]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(&name)
        .to_string();
        if !nodes.iter().any(|n| stem.contains(n.as_str())) {
            stems.insert(stem);
        }
    }
    let reserved: std::collections::BTreeSet<String> = kubicluster::spec::RESERVED_FILE_NAMES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let unreserved: Vec<&String> = stems.difference(&reserved).collect();
    assert!(
        unreserved.is_empty(),
        "cluster files whose names a node could take: {unreserved:?}"
    );
    assert!(stems.contains("ca") && stems.contains("admin"), "{stems:?}");
}
