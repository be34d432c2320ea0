//! The VM lab tier, for real: a private libvirtd in a network namespace, the template image built
//! with mmdebstrap, three TCG VMs created in parallel; from inside the namespace each answers SSH
//! with its pinned host key, has the right hostname and both addresses, and reaches the others
//! over the cluster network; a second create-vms does nothing; destroy and lab down leave no
//! domain, network, disk, process or namespace. Bad inputs along the way change nothing.
//! Gate: KUBICLUSTER_TEST_LAB=1 (set by `make test`); with the gate set, missing tools fail.

#![allow(clippy::print_stderr)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use kubicluster::hypervisor::Hypervisor;
use kubicluster::hypervisor::libvirt::Libvirt;
use kubicluster::spec::{self, Overrides};

struct Lab {
    work: tempfile::TempDir,
    name: String,
    image: PathBuf,
}

impl Lab {
    fn kubicluster(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubicluster"));
        cmd.current_dir(self.work.path())
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBICLUSTER_LAB", "1")
            .env("KUBICLUSTER_NAME", &self.name)
            .env("KUBICLUSTER_WORK_DIR", self.work.path().join("work"))
            .env("KUBICLUSTER_IMAGE", &self.image)
            .env("KUBICLUSTER_MEMORY_MIB", "1024")
            .env("KUBICLUSTER_BOOT_TIMEOUT", "300")
            // Larger than the template's 8 GiB: each VM grows its root filesystem at boot.
            .env("KUBICLUSTER_DISK_GIB", "10");
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run kubicluster");
        eprintln!(
            "$ kubicluster {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubicluster(args, &[]);
        assert!(out.status.success(), "kubicluster {args:?} failed");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn cluster(&self) -> spec::Cluster {
        let ov = Overrides {
            lab: true,
            name: Some(self.name.clone()),
            work_dir: Some(self.work.path().join("work").display().to_string()),
            ..Overrides::default()
        };
        spec::resolve(None, &ov, &no_env).unwrap().0
    }

    fn libvirt(&self) -> Libvirt {
        Libvirt::connect(&kubicluster::lab::uri(&self.cluster())).expect("lab libvirtd answers")
    }

    fn domains(&self) -> Vec<String> {
        self.libvirt()
            .domains()
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Leave nothing behind, even when an assertion failed.
        let _ = self.kubicluster(&["lab", "down"], &[]);
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn processes_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(needle))
        .collect()
}

#[test]
fn lab_vms_end_to_end() {
    if !tier_enabled(
        "KUBICLUSTER_TEST_LAB",
        &[
            "ip",
            "libvirtd",
            "qemu-system-x86_64",
            "mmdebstrap",
            "ssh",
            "dnsmasq",
        ],
    ) {
        return;
    }
    // The image is cached in target/ between local runs; CI builds it fresh.
    let image = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/lab-image/kubicluster-bookworm.qcow2");
    let lab = Lab {
        work: tempfile::Builder::new()
            .prefix("kubilab")
            .tempdir_in("/tmp")
            .unwrap(),
        name: format!("lab{}", std::process::id()),
        image,
    };
    let c = lab.cluster();
    let ns = kubicluster::lab::netns_name(&c);

    let out = lab.ok(&["lab", "up"]);
    assert!(out.contains("lab started"), "{out}");
    assert!(Path::new("/run/netns").join(&ns).exists());
    lab.ok(&["image", "build"]);
    assert!(lab.image.is_file());
    lab.ok(&["prepare"]);
    lab.ok(&["cnc"]);

    // Bad inputs: clear errors, exit 2, no domain created.
    let notes = lab.work.path().join("notes.txt");
    std::fs::write(&notes, "not an image").unwrap();
    let o = lab.kubicluster(&["create-vms", "--image", notes.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("is not a qcow2 file"));
    let o = lab.kubicluster(&["create-vms", "--memory-mib", "100000000"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("MiB free"));
    assert!(lab.domains().is_empty(), "bad input created nothing");
    let lv = lab.libvirt();
    lv.define_domain("<domain type='qemu'><name>kubi-worker-02</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>")
        .unwrap();
    let o = lab.kubicluster(&["create-vms"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains(
        "kubi-worker-02: a libvirt domain with this name exists and belongs to something else"
    ));
    assert_eq!(
        lab.domains(),
        ["kubi-worker-02"],
        "the foreign domain is untouched and nothing else was made"
    );
    lv.undefine_domain("kubi-worker-02").unwrap();
    // An address some other machine holds is refused before any VM is made. Here the
    // hypervisor's side of the NAT network in the namespace takes kubi-worker-01's address.
    let bridge = kubicluster::hypervisor::nat_bridge(&c.networks.hypervisor_name);
    let taken = c.node("kubi-worker-01").unwrap().hypervisor_ip.to_string();
    let ip_addr = |verb: &str| {
        let o = Command::new("ip")
            .args(["netns", "exec", &ns, "ip", "addr", verb])
            .arg(format!("{taken}/32"))
            .args(["dev", &bridge])
            .output()
            .unwrap();
        assert!(o.status.success(), "ip addr {verb}: {}", text(&o));
    };
    ip_addr("add");
    let o = lab.kubicluster(&["create-vms"], &[]);
    ip_addr("del");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("kubi-worker-01: {taken} already answers")),
        "{}",
        text(&o)
    );
    assert!(lab.domains().is_empty(), "an address clash created nothing");

    // Three VMs in parallel under TCG.
    let out = lab.ok(&["create-vms"]);
    assert!(
        out.contains("create-vms: 3 VM(s) up, host keys pinned"),
        "{out}"
    );
    let mut names = lab.domains();
    names.sort();
    assert_eq!(
        names,
        ["kubi-controller-01", "kubi-worker-01", "kubi-worker-02"]
    );

    // status (runs inside the namespace): every VM running, SSH ok with pinned key, identity verified.
    let out = lab.ok(&["status"]);
    for n in &c.nodes {
        let row = out
            .lines()
            .find(|l| l.starts_with(&n.name))
            .unwrap_or_else(|| panic!("{} in status:\n{out}", n.name));
        assert!(
            row.contains("running") && row.trim_end().ends_with("ok"),
            "{row}"
        );
    }

    // Independently, with OpenSSH from inside the namespace, trusting only the pinned keys.
    let known = c.known_hosts();
    for n in &c.nodes {
        let others: Vec<String> = c
            .nodes
            .iter()
            .filter(|m| m.name != n.name)
            .map(|m| m.cluster_ip.to_string())
            .collect();
        let script = format!(
            "hostname; ip -4 -o addr show; for ip in {}; do ping -c 1 -W 5 $ip >/dev/null && echo reach $ip; done; echo rootfs $(findmnt -bno SIZE /)",
            others.join(" ")
        );
        let o = Command::new("ip")
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
            .arg(format!("UserKnownHostsFile={}", known.display()))
            .arg("-i")
            .arg(&c.ssh_key)
            .arg(format!("root@{}", n.hypervisor_ip))
            .arg(script)
            .output()
            .unwrap();
        let t = text(&o);
        assert!(o.status.success(), "ssh {}: {t}", n.name);
        assert!(
            t.starts_with(&format!("{}\n", n.name)),
            "hostname of {}: {t}",
            n.name
        );
        assert!(
            t.contains(&format!("inet {}/24", n.hypervisor_ip))
                && t.contains(&format!("inet {}/24", n.cluster_ip)),
            "{t}"
        );
        let rootfs: u64 = t
            .lines()
            .find_map(|l| l.strip_prefix("rootfs "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("root filesystem size of {}: {t}", n.name));
        assert!(
            rootfs > 9 << 30,
            "{}: the root filesystem grew to the 10 GiB disk: {rootfs} bytes",
            n.name
        );
        for ip in &others {
            assert!(
                t.contains(&format!("reach {ip}")),
                "{} reaches {ip} over the cluster net: {t}",
                n.name
            );
        }
    }

    // A VM whose key is not the pinned one is refused.
    let pinned = c.vm_dir("kubi-worker-01").join("ssh_host_ed25519_key");
    let saved = std::fs::read(&pinned).unwrap();
    std::fs::remove_file(&pinned).unwrap();
    std::fs::remove_file(pinned.with_extension("pub")).unwrap();
    let out = lab.ok(&["status"]);
    let row = out
        .lines()
        .find(|l| l.starts_with("kubi-worker-01"))
        .unwrap();
    assert!(row.ends_with("WRONG HOST KEY"), "{row}");
    std::fs::write(&pinned, saved).unwrap();

    // Nothing changed: nothing to do.
    let out = lab.ok(&["create-vms"]);
    assert!(out.contains("create-vms: nothing to do"), "{out}");
    assert_eq!(out.matches("up to date").count(), 3, "{out}");

    // The original's positional form plans only the VMs it names, and a dry run changes nothing.
    let out = lab.ok(&[
        "create-vms",
        "kubi-worker-03,192.168.24.23,192.168.122.23",
        "-m=1048576",
        "--dry-run",
    ]);
    assert!(
        out.contains("kubi-worker-03: create and start")
            && out.contains("dry run: nothing changed"),
        "{out}"
    );
    assert!(!out.contains("kubi-controller-01"), "{out}");
    assert_eq!(lab.domains().len(), 3);

    // destroy, then lab down: nothing left.
    let out = lab.ok(&["destroy"]);
    assert!(out.contains("removed 3 VM(s)"), "{out}");
    assert!(lab.domains().is_empty());
    let pool = c.storage_dir();
    let disks: Vec<_> = std::fs::read_dir(&pool)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        disks.iter().all(|d| d.starts_with("kubicluster-template-")),
        "only the template is left: {disks:?}"
    );
    let lab_dir = c.lab_dir();
    lab.ok(&["lab", "down"]);
    assert!(
        !Path::new("/run/netns").join(&ns).exists(),
        "namespace removed"
    );
    assert!(!lab_dir.exists(), "lab directory removed");
    assert_eq!(
        processes_mentioning(&lab_dir.display().to_string()),
        Vec::<String>::new(),
        "no lab process left"
    );
    let o = lab.kubicluster(&["status"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("the lab of cluster") && text(&o).contains("is not running"));
}
