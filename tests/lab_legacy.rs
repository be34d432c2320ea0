//! The VM lab tier for a hand-made ("legacy") template, the way the original worked: every clone
//! boots with the template's static addresses and host key. kubicluster boots them one at a time,
//! reaches each at the template address only if it presents the template's (given) host key,
//! re-addresses it, has it make its own host key, pins that, reboots it, and verifies it.
//! The legacy template is made here from kubicluster's image: one VM booted as `.254`, powered off
//! and flattened. Gate: KUBICLUSTER_TEST_LAB=1.
#![allow(clippy::print_stderr)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use kubicluster::hypervisor::libvirt::Libvirt;
use kubicluster::hypervisor::{Hypervisor, VmState};
use kubicluster::spec::{self, Overrides};

const MAKER: &str = "kubi-template,192.168.24.254,192.168.122.254";

fn run(work: &Path, name: &str, image: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_kubicluster"))
        .current_dir(work)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KUBICLUSTER_LAB", "1")
        .env("KUBICLUSTER_NAME", name)
        .env("KUBICLUSTER_WORK_DIR", work.join("work"))
        .env("KUBICLUSTER_IMAGE", image)
        .env("KUBICLUSTER_MEMORY_MIB", "1024")
        .output()
        .expect("run kubicluster");
    eprintln!(
        "$ kubicluster {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ok(work: &Path, name: &str, image: &Path, args: &[&str]) -> String {
    let out = run(work, name, image, args);
    assert!(out.status.success(), "kubicluster {args:?} failed");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

struct Down<'a>(&'a Path, &'a str, &'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = run(self.0, self.1, self.2, &["lab", "down"]);
    }
}

#[test]
fn legacy_template_is_readdressed_one_by_one_with_pinned_keys() {
    if !tier_enabled(
        "KUBICLUSTER_TEST_LAB",
        &["ip", "libvirtd", "qemu-system-x86_64", "qemu-img", "ssh"],
    ) {
        return;
    }
    let image = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/lab-image/kubicluster-bookworm.qcow2");
    let tmp = tempfile::Builder::new()
        .prefix("kubilegacy")
        .tempdir_in("/tmp")
        .unwrap();
    let work = tmp.path();
    let name = format!("legacy{}", std::process::id());
    let _down = Down(work, &name, &image);
    ok(work, &name, &image, &["lab", "up"]);
    ok(work, &name, &image, &["image", "build"]);
    let cluster = spec::resolve(
        None,
        &Overrides {
            lab: true,
            name: Some(name.clone()),
            work_dir: Some(work.join("work").display().to_string()),
            ..Overrides::default()
        },
        &no_env,
    )
    .unwrap()
    .0;
    let ns = kubicluster::lab::netns_name(&cluster);
    let lv = Libvirt::connect(&kubicluster::lab::uri(&cluster)).unwrap();

    // 1. Make a template as the original expected one: a VM at .254, powered off, flattened.
    ok(work, &name, &image, &["create-vms", "-c", MAKER]);
    let template_key = work.join("template_host_key.pub");
    std::fs::copy(
        cluster
            .vm_dir("kubi-template")
            .join("ssh_host_ed25519_key.pub"),
        &template_key,
    )
    .unwrap();
    let _ = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            "ssh",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            cluster.known_hosts().display()
        ))
        .arg("-i")
        .arg(&cluster.ssh_key)
        .args(["root@192.168.122.254", "sync; poweroff"])
        .output();
    let deadline = Instant::now() + Duration::from_secs(120);
    while lv.domain("kubi-template").unwrap().unwrap().state != VmState::Off {
        assert!(
            Instant::now() < deadline,
            "the template VM did not power off"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let legacy_image = work.join("legacy-template.qcow2");
    let st = Command::new("qemu-img")
        .args(["convert", "-O", "qcow2"])
        .arg(cluster.storage_dir().join("kubi-template.qcow2"))
        .arg(&legacy_image)
        .status()
        .unwrap();
    assert!(st.success());
    ok(work, &name, &image, &["destroy", "-c", MAKER]);

    // 2. A cluster from it, the original way: clones re-addressed one after another.
    let legacy_args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        v.extend([
            "--image".into(),
            legacy_image.display().to_string(),
            "--template-kind".into(),
            "legacy".into(),
            "--template-host-key".into(),
            template_key.display().to_string(),
            "-tip=192.168.122.254".into(),
            "-tcip=192.168.24.254".into(),
            "-c".into(),
            "kubi-controller-01,192.168.24.11,192.168.122.11".into(),
            "-w".into(),
            "kubi-worker-01,192.168.24.21,192.168.122.21".into(),
        ]);
        v
    };
    // Without the template's host key it refuses (validation, exit 2).
    let o = run(
        work,
        &name,
        &image,
        &[
            "create-vms",
            "--template-kind",
            "legacy",
            "-c",
            "kubi-controller-01,192.168.24.11,192.168.122.11",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("a legacy template needs its SSH host public key")
    );

    let args = legacy_args(&["create-vms"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ok(work, &name, &image, &args);
    assert!(
        out.contains("create-vms: 2 VM(s) up, host keys pinned"),
        "{out}"
    );

    let args = legacy_args(&["status"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ok(work, &name, &image, &args);
    for node in ["kubi-controller-01", "kubi-worker-01"] {
        let row = out.lines().find(|l| l.starts_with(node)).unwrap();
        assert!(
            row.split_whitespace().nth(2) == Some("running")
                && row.split_whitespace().nth(5) == Some("ok"),
            "{row}"
        );
    }
    // Each clone made its own host key: none is the template's, and they differ.
    let tkey = std::fs::read_to_string(&template_key).unwrap();
    let k1 = std::fs::read_to_string(
        cluster
            .vm_dir("kubi-controller-01")
            .join("ssh_host_ed25519_key.pub"),
    )
    .unwrap();
    let k2 = std::fs::read_to_string(
        cluster
            .vm_dir("kubi-worker-01")
            .join("ssh_host_ed25519_key.pub"),
    )
    .unwrap();
    let blob = |k: &str| k.split_whitespace().nth(1).unwrap().to_string();
    assert_ne!(blob(&k1), blob(&tkey));
    assert_ne!(blob(&k2), blob(&tkey));
    assert_ne!(blob(&k1), blob(&k2));
    // Nobody holds the template address any more.
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "192.168.122.254",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success(), "the template address is free again");

    let args = legacy_args(&["destroy"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(work, &name, &image, &args);
    assert!(lv.domains().unwrap().is_empty());
}
