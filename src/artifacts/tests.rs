//! Artifacts for real against an HTTP server on 127.0.0.1: a download verified by the
//! publisher's checksum file, a corrupt one refused before anything is kept, the cache reused
//! without network, the lock enforced; the `dir` source with an etcd-shaped tarball.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use super::catalog::SumFile;
use super::*;
use crate::blob::sha256_hex;

/// Serve `files` (path → body) on 127.0.0.1; returns the base URL and a request log.
fn serve(files: Vec<(&'static str, Vec<u8>)>) -> (String, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        // Bounded: the test needs a handful of requests.
        for stream in l.incoming().take(32) {
            let Ok(mut s) = stream else { continue };
            let mut line = String::new();
            let mut r = BufReader::new(s.try_clone().unwrap());
            if r.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            log2.lock().unwrap().push(path.clone());
            match files.iter().find(|(p, _)| *p == path) {
                Some((_, body)) => {
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(body);
                }
                None => {
                    let _ = write!(
                        s,
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                }
            }
        }
    });
    (base, log)
}

#[test]
fn upstream_download_is_verified_by_the_publishers_checksum_and_cached() {
    let body = b"#!/bin/sh\necho kube-apiserver\n".to_vec();
    let sum = format!("{}\n", sha256_hex(&body));
    let (base, log) = serve(vec![
        ("/kube-apiserver", body.clone()),
        ("/kube-apiserver.sha256", sum.into_bytes()),
    ]);
    let d = tempfile::tempdir().unwrap();
    let dest = d.path().join("downloads/kube-apiserver");
    let url = format!("{base}/kube-apiserver");
    let sum_url = format!("{base}/kube-apiserver.sha256");
    let got = fetch::ensure(
        &dest,
        &url,
        || fetch::publisher_sha(&sum_url, SumFile::Single, "kube-apiserver"),
        None,
    )
    .unwrap();
    assert_eq!(got, body);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(
        *log.lock().unwrap(),
        ["/kube-apiserver.sha256", "/kube-apiserver"]
    );
    // Cached and locked: no request at all.
    let again = fetch::ensure(
        &dest,
        &url,
        || panic!("the lock suffices"),
        Some(sha256_hex(&body)),
    )
    .unwrap();
    assert_eq!(again, body);
    assert_eq!(log.lock().unwrap().len(), 2);
}

#[test]
fn a_corrupt_download_is_refused_and_nothing_is_kept() {
    let (base, _) = serve(vec![("/etcd.tar.gz", b"not what was published".to_vec())]);
    let d = tempfile::tempdir().unwrap();
    let dest = d.path().join("etcd.tar.gz");
    let e = fetch::ensure(
        &dest,
        &format!("{base}/etcd.tar.gz"),
        || Ok("0".repeat(64)),
        None,
    )
    .unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("sha256 is") && msg.contains(&"0".repeat(64)),
        "{msg}"
    );
    assert_eq!(
        std::fs::read_dir(d.path()).unwrap().count(),
        0,
        "no partial or bad file left"
    );
    let e = fetch::ensure(
        &dest,
        &format!("{base}/missing"),
        || Ok("0".repeat(64)),
        None,
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("cannot download"), "{e:#}");
    let (code, hint) = crate::error::classify(&e);
    assert_eq!(code, 1);
    assert!(hint.unwrap().contains("artifacts.dir"));
}

#[test]
fn checksum_lists_and_single_files_parse() {
    let list = "aaaa  other\n042497e2ddcee06f22e5d486d81f58affa26b53ee423e2a6aaca3d3ea98c8191  etcd-v3.5.24-linux-amd64.tar.gz\n";
    assert_eq!(
        fetch::parse_sum(list, SumFile::List, "etcd-v3.5.24-linux-amd64.tar.gz").as_deref(),
        Some("042497e2ddcee06f22e5d486d81f58affa26b53ee423e2a6aaca3d3ea98c8191")
    );
    assert_eq!(fetch::parse_sum(list, SumFile::List, "nope"), None);
    assert_eq!(fetch::parse_sum("not-a-sha\n", SumFile::Single, "x"), None);
}

/// The first bytes of an x86-64 ELF executable, then `tag`.
pub fn fake_elf(tag: &str) -> Vec<u8> {
    elf_for(62, tag)
}

fn elf_for(machine: u16, tag: &str) -> Vec<u8> {
    let mut b = b"\x7fELF\x02\x01\x01".to_vec();
    b.resize(18, 0);
    b.extend_from_slice(&machine.to_le_bytes());
    b.extend_from_slice(tag.as_bytes());
    b
}

fn etcd_tarball(version: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (name, body) in [
        ("etcd", &fake_elf("etcd-binary")[..]),
        ("etcdctl", &fake_elf("etcdctl-binary")[..]),
        ("etcdutl", &fake_elf("etcdutl-binary")[..]),
        ("README.md", &b"x"[..]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        b.append_data(&mut h, format!("etcd-v{version}-linux-amd64/{name}"), body)
            .unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

fn dir_cluster(dir: &std::path::Path, work: &std::path::Path) -> Cluster {
    let ov = crate::spec::Overrides {
        work_dir: Some(work.display().to_string()),
        artifacts_source: Some(crate::spec::ArtifactSource::Dir),
        artifacts_dir: Some(dir.display().to_string()),
        etcd_version: Some("3.5.99".into()),
        ..Default::default()
    };
    crate::spec::resolve(None, &ov, &|_| None).unwrap().0
}

#[test]
fn dir_source_unpacks_etcd_records_the_lock_and_reports_missing_binaries() {
    let d = tempfile::tempdir().unwrap();
    let (dir, work) = (d.path().join("bin"), d.path().join("work"));
    std::fs::create_dir_all(&dir).unwrap();
    let tgz = etcd_tarball("3.5.99");
    std::fs::write(dir.join("etcd-v3.5.99-linux-amd64.tar.gz"), &tgz).unwrap();
    let c = dir_cluster(&dir, &work);
    let mut lock = Lock::default();
    // No digest vouches for it (3.5.99 is pinned nowhere): refused, with the ways out.
    let e = provide(&c, &mut lock, "etcd", Fetch::Allowed).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("no known sha256"), "{msg}");
    let (_, hint) = crate::error::classify(&e);
    assert!(
        hint.as_deref().is_some_and(|h| h.contains("SHA256SUMS")
            && h.contains("--allow-unverified-artifacts")),
        "{hint:?}"
    );
    assert!(lock.0.is_empty(), "nothing locked");
    // A SHA256SUMS beside it vouches for it.
    std::fs::write(
        dir.join("SHA256SUMS"),
        format!("{}  etcd-v3.5.99-linux-amd64.tar.gz\n", sha256_hex(&tgz)),
    )
    .unwrap();
    let p = provide(&c, &mut lock, "etcd", Fetch::Allowed).unwrap();
    let Provided::Files { files, .. } = &p else {
        panic!("{p:?}")
    };
    let got: Vec<(&str, &[u8])> = files
        .iter()
        .map(|f| (f.path.as_str(), f.blob.data().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("/usr/local/bin/etcd", &fake_elf("etcd-binary")[..]),
            ("/usr/local/bin/etcdctl", &fake_elf("etcdctl-binary")[..]),
            ("/usr/local/bin/etcdutl", &fake_elf("etcdutl-binary")[..])
        ]
    );
    assert_eq!(lock.0["etcd-v3.5.99-linux-amd64.tar.gz"], sha256_hex(&tgz));
    // A missing Kubernetes binary is reported with its file name, not an error.
    let m = provide(&c, &mut lock, "kube-apiserver", Fetch::Allowed).unwrap();
    assert!(
        matches!(&m, Provided::Missing { file, reason } if file == "kube-apiserver" && reason.contains("does not exist")),
        "{m:?}"
    );
    // A changed file: its SHA256SUMS line catches it; changed together with the manifest,
    // the lock still holds.
    lock.save(&c).unwrap();
    let changed: Vec<u8> = etcd_tarball("3.5.99").into_iter().chain([0u8; 8]).collect();
    std::fs::write(dir.join("etcd-v3.5.99-linux-amd64.tar.gz"), &changed).unwrap();
    let e = provide(&c, &mut Lock::load(&c).unwrap(), "etcd", Fetch::Allowed).unwrap_err();
    assert!(format!("{e:#}").contains("sha256 is"), "{e:#}");
    std::fs::write(
        dir.join("SHA256SUMS"),
        format!(
            "{}  etcd-v3.5.99-linux-amd64.tar.gz\n",
            sha256_hex(&changed)
        ),
    )
    .unwrap();
    let mut lock = Lock::load(&c).unwrap();
    let e = provide(&c, &mut lock, "etcd", Fetch::Allowed).unwrap_err();
    assert!(
        format!("{e:#}").contains("recorded in artifacts.lock"),
        "{e:#}"
    );
}

#[test]
fn a_pinned_digest_in_the_cluster_file_is_enforced_for_dir_files() {
    let d = tempfile::tempdir().unwrap();
    let (dir, work) = (d.path().join("bin"), d.path().join("work"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("kube-scheduler"), b"tampered").unwrap();
    let mut c = dir_cluster(&dir, &work);
    c.artifacts
        .sha256
        .insert("kube-scheduler".into(), "1".repeat(64));
    let e = provide(&c, &mut Lock::default(), "kube-scheduler", Fetch::Allowed).unwrap_err();
    assert!(
        format!("{e:#}").contains(&format!("expected {}", "1".repeat(64))),
        "{e:#}"
    );
}

#[test]
fn files_that_are_not_amd64_executables_are_refused_before_any_upload() {
    let d = tempfile::tempdir().unwrap();
    let (dir, work) = (d.path().join("bin"), d.path().join("work"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut c = dir_cluster(&dir, &work);
    c.artifacts.allow_unverified = true;
    for (body, why) in [
        (Vec::new(), "is empty"),
        (
            b"<html>404 Not Found</html>".to_vec(),
            "is not an ELF executable",
        ),
        (elf_for(183, "arm64"), "not x86-64"),
    ] {
        std::fs::write(dir.join("kube-scheduler"), &body).unwrap();
        let mut lock = Lock::default();
        let e = provide(&c, &mut lock, "kube-scheduler", Fetch::Allowed).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("kube-scheduler") && msg.contains(why), "{msg}");
        assert!(lock.0.is_empty(), "nothing locked for {why}");
    }
    // An amd64 executable, unverified but allowed explicitly: accepted (and locked in memory;
    // `artifacts.lock` on disk waits for a node to install it).
    std::fs::write(dir.join("kube-scheduler"), fake_elf("scheduler")).unwrap();
    let mut lock = Lock::default();
    assert!(matches!(
        provide(&c, &mut lock, "kube-scheduler", Fetch::Allowed).unwrap(),
        Provided::Files { .. }
    ));
    let v = c.kubernetes.version;
    assert!(
        lock.0.contains_key(&format!("v{v}/kube-scheduler")),
        "{:?}",
        lock.0
    );
    // Not allowed: refused.
    c.artifacts.allow_unverified = false;
    let e = provide(&c, &mut Lock::default(), "kube-scheduler", Fetch::Allowed).unwrap_err();
    assert!(format!("{e:#}").contains("no known sha256"), "{e:#}");
}

/// A file's digest is computed once per process while it stays the same file, and anew as soon
/// as it is rewritten (even with the same size).
#[test]
fn a_rewritten_file_is_hashed_again() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("kube-apiserver");
    std::fs::write(&p, b"one").unwrap();
    let (data, sha) = super::read_with_digest(&p).unwrap().unwrap();
    assert_eq!(
        (data.as_slice(), sha.as_str()),
        (&b"one"[..], sha256_hex(b"one").as_str())
    );
    assert_eq!(super::read_with_digest(&p).unwrap().unwrap().1, sha);
    std::fs::write(&p, b"two").unwrap();
    assert_eq!(
        super::read_with_digest(&p).unwrap().unwrap().1,
        sha256_hex(b"two")
    );
    assert!(
        super::read_with_digest(&d.path().join("absent"))
            .unwrap()
            .is_none()
    );
    // Known by identity: answered without reading; rewritten: read and hashed again.
    assert_eq!(super::digest_of(&p).unwrap().unwrap(), sha256_hex(b"two"));
    std::fs::write(&p, b"three").unwrap();
    assert_eq!(super::digest_of(&p).unwrap().unwrap(), sha256_hex(b"three"));
    assert!(
        super::digest_of(&d.path().join("absent"))
            .unwrap()
            .is_none()
    );
}

/// A file whose digest is remembered becomes a blob that is not read until a node needs its
/// bytes (a no-op run reads no binary); one not known yet is read and hashed.
#[test]
fn a_known_file_is_a_blob_read_only_when_needed() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("kubelet");
    std::fs::write(&p, b"ELF kubelet").unwrap();
    let first = super::blob_of(&p).unwrap().unwrap();
    assert_eq!(first.sha256, sha256_hex(b"ELF kubelet"));
    assert_eq!(first.data().unwrap(), b"ELF kubelet");
    let second = super::blob_of(&p).unwrap().unwrap();
    assert_eq!((second.len(), &second.sha256), (11, &first.sha256));
    // Not read yet: made unreadable, the blob still has its digest and size; its bytes fail.
    std::fs::remove_file(&p).unwrap();
    assert_eq!(second, first);
    assert!(second.data().is_err());
    assert!(super::blob_of(&p).unwrap().is_none());
}

/// What a run remembers for the next: each file's digest by path and identity; a damaged line
/// is ignored (that file is hashed again), a path with spaces kept whole.
#[test]
fn the_digest_memo_round_trips_and_ignores_damage() {
    let sha = sha256_hex(b"x");
    let text = format!(
        "{sha} 1:2:3.000000004:5.000000006 /cache/kube apiserver\nnot a line\n{} 1:2:3:4 /short\n",
        &sha[..10]
    );
    let m = super::parse_memo(&text);
    assert_eq!(m.len(), 1);
    let key = (
        std::path::PathBuf::from("/cache/kube apiserver"),
        "1:2:3.000000004:5.000000006".to_string(),
    );
    assert_eq!(m.get(&key), Some(&sha));
    assert_eq!(super::parse_memo(&super::format_memo(&m)), m);
}

/// A dry run's `provide` only looks: an upstream file not cached is said ("would download …
/// from …") and nothing is created; once cached with the digest the lock holds, it is used
/// as a real run would, still without a connection.
#[test]
fn a_dry_run_never_downloads_and_uses_what_is_cached() {
    let d = tempfile::tempdir().unwrap();
    let ov = crate::spec::Overrides {
        work_dir: Some(d.path().join("work").display().to_string()),
        artifacts_source: Some(crate::spec::ArtifactSource::Upstream),
        etcd_version: Some("3.5.99".into()),
        ..Default::default()
    };
    let c = crate::spec::resolve(None, &ov, &|_| None).unwrap().0;
    let mut lock = Lock::default();
    let p = provide(&c, &mut lock, "etcd", Fetch::Never).unwrap();
    let Provided::WouldDownload { what, file } = &p else {
        panic!("{p:?}")
    };
    assert_eq!(file, "etcd-v3.5.99-linux-amd64.tar.gz");
    assert!(what.contains(" from https://"), "{what}");
    assert!(
        p.unavailable()
            .unwrap()
            .contains("a dry run downloads nothing")
    );
    assert!(!d.path().join("work").exists(), "a dry run creates nothing");
    // Cached, and the lock vouches for it: used.
    let tgz = etcd_tarball("3.5.99");
    std::fs::create_dir_all(downloads_dir(&c)).unwrap();
    std::fs::write(downloads_dir(&c).join(file), &tgz).unwrap();
    let mut lock = Lock([(file.clone(), sha256_hex(&tgz))].into());
    let p = provide(&c, &mut lock, "etcd", Fetch::Never).unwrap();
    assert!(
        matches!(p, Provided::Files { ref files, .. } if files.len() == 3),
        "{p:?}"
    );
    // Cached but vouched for by nothing offline: said, not trusted.
    let p = provide(&c, &mut Lock::default(), "etcd", Fetch::Never).unwrap();
    assert!(
        matches!(&p, Provided::WouldDownload { what, .. } if what.contains("publisher's checksum")),
        "{p:?}"
    );
}

#[test]
fn a_build_is_vouched_for_by_its_manifest_and_locked_per_release() {
    let d = tempfile::tempdir().unwrap();
    let (dir, work) = (d.path().join("bin"), d.path().join("work"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut c = dir_cluster(&dir, &work);
    c.artifacts.source = crate::spec::ArtifactSource::Build;
    // 1.36.3's kubelet is pinned in the catalogue (the published file); a build is not that file.
    c.kubernetes.version = "1.36.3".parse().unwrap();
    let put = |tag: &str| {
        let bin = fake_elf(tag);
        std::fs::write(dir.join("kubelet"), &bin).unwrap();
        std::fs::write(
            dir.join("SHA256SUMS"),
            format!("{}  kubelet\n", sha256_hex(&bin)),
        )
        .unwrap();
    };
    put("kubelet-1.36.3-built-here");
    let mut lock = Lock::default();
    let p = provide(&c, &mut lock, "kubelet", Fetch::Allowed).unwrap();
    assert!(matches!(p, Provided::Files { .. }), "{p:?}");
    assert!(lock.0.contains_key("v1.36.3/kubelet"), "{:?}", lock.0);
    // The next release's kubelet is another file: an upgrade is not a changed artifact …
    c.kubernetes.version = "1.37.2".parse().unwrap();
    put("kubelet-1.37.2-built-here");
    provide(&c, &mut lock, "kubelet", Fetch::Allowed).unwrap();
    assert_eq!(lock.0.len(), 2, "{:?}", lock.0);
    // … but the same release's kubelet changed under the cluster still is.
    put("kubelet-1.37.2-rebuilt");
    let e = provide(&c, &mut lock, "kubelet", Fetch::Allowed).unwrap_err();
    assert!(
        format!("{e:#}").contains("recorded in artifacts.lock"),
        "{e:#}"
    );
}
