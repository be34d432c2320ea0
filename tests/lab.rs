//! The VM lab tier, for real: a private libvirtd in a network namespace, the template image built
//! with mmdebstrap, two TCG VMs (a controller and a worker) created in parallel; from inside the
//! namespace each answers SSH with its pinned host key, has the right hostname and both
//! addresses, and reaches the other over the cluster network; a second create-vms does nothing;
//! a second cluster's lab with the same VM name and addresses runs beside it. Then
//! `create-controllers` with etcd from Debian packages (the `deb` artifact source): a real TLS
//! etcd on the controller, health checked by the tool and independently with etcdctl, a second
//! run that changes and restarts nothing, an empty `plan`; then a second controller added to the
//! spec joins as a member (`member add` + `existing`), a key written before is still there, it
//! leaves again when taken out of the spec, and `-fedr` resets etcd after a snapshot.
//! The Kubernetes components are not started in this tier (the `deb` source has no Kubernetes
//! binaries: the run refuses, then with `--allow-missing-binaries` installs their units and
//! lists them as not started); tests/lab_k8s.rs runs the whole cluster for real. The lab's
//! libvirtd killed is said and restarted with the VMs re-attached. destroy and lab down leave no
//! domain, network, disk, process or namespace. Bad inputs along the way change nothing.
//! Gate: KUBICLUSTER_TEST_LAB=1 (set by `make test`); with the gate set, missing tools fail.

#![allow(clippy::print_stderr)]

mod common;

use std::path::Path;
use std::process::Command;

use common::lab::*;
use common::timing;
use common::{sshd_files, status_row};
use kubicluster::hypervisor::Hypervisor;
use kubicluster::spec;

const ETCDCTL: &str = "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/etcd/etcd-ca.pem --cert=/etc/etcd/server.pem --key=/etc/etcd/server-key.pem";

#[test]
fn lab_vms_end_to_end() {
    if !lab_enabled(&["dnsmasq"]) {
        return;
    }
    let lab = Lab::new(
        "kubilab",
        "lab",
        &[
            // Larger than the template's 8 GiB: each VM grows its root filesystem at boot.
            ("KUBICLUSTER_DISK_GIB", "10"),
            // Node components from Debian packages: the lab VMs have no route out.
            ("KUBICLUSTER_ARTIFACTS", "deb"),
            // One worker: the cluster network between two VMs; the workers' stack runs for
            // real in tests/lab_k8s.rs. Node flags replace the whole node list: the
            // controller is named too.
            ("KUBICLUSTER_CONTROLLERS", CONTROLLER),
            ("KUBICLUSTER_WORKERS", WORKER),
        ],
    );
    let c = lab.cluster();
    let ns = kubicluster::lab::netns_name(&c);

    let out = lab.ok(&["lab", "up"]);
    assert!(out.contains("lab started"), "{out}");
    assert!(Path::new("/run/netns").join(&ns).exists());
    let out = lab.ok(&["image", "build"]);
    assert!(lab.image.is_file());
    assert_eq!(
        kubicluster::image::built_for_emulation(&lab.image),
        !kubicluster::hypervisor::kvm_usable(),
        "{out}"
    );
    lab.ok(&["prepare"]);
    lab.ok(&["cnc"]);

    // Bad inputs: clear errors, exit 2, no domain created.
    let notes = lab.work.path().join("notes.txt");
    std::fs::write(&notes, "not an image").unwrap();
    let o = lab.kubicluster(&["create-vms", "--image", notes.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("is not a qcow2 file"));
    let o = lab.kubicluster(&["create-vms", "--memory-mib", "1000000"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("MiB free"));
    assert!(lab.domains().is_empty(), "bad input created nothing");
    let lv = lab.libvirt();
    lv.define_domain("<domain type='qemu'><name>kubi-worker-01</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>")
        .unwrap();
    let o = lab.kubicluster(&["create-vms"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains(
        "kubi-worker-01: a libvirt domain with this name exists and belongs to something else"
    ));
    assert_eq!(
        lab.domains(),
        ["kubi-worker-01"],
        "the foreign domain is untouched and nothing else was made"
    );
    lv.undefine_domain("kubi-worker-01").unwrap();
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

    // Two VMs in parallel under TCG.
    let out = lab.ok(&["create-vms"]);
    assert!(
        out.contains("create-vms: 2 VM(s) up, host keys pinned"),
        "{out}"
    );
    let mut names = lab.domains();
    names.sort();
    assert_eq!(names, ["kubi-controller-01", "kubi-worker-01"]);

    // status (runs inside the namespace): every VM running, SSH ok with pinned key, identity verified.
    let out = lab.ok(&["status"]);
    for n in &c.nodes {
        let row = out
            .lines()
            .find(|l| l.starts_with(&n.name))
            .unwrap_or_else(|| panic!("{} in status:\n{out}", n.name));
        assert!(
            row.split_whitespace().nth(2) == Some("running")
                && row.split_whitespace().nth(5) == Some("ok"),
            "{row}"
        );
    }

    // A second cluster beside this one, with the very same VM names and addresses, over two
    // *remote* hypervisors: two more labs' libvirtds (each its own namespace and pid file)
    // reached only as `qemu+ssh://` through an sshd that shares its mount and network
    // namespaces — their pool directories exist only there, so nothing may go by a path of
    // this host. The template and each VM's identity go through libvirt's upload stream, each
    // VM is reached through its own host's sshd (a jump, both host keys checked), the cluster
    // network spans both hosts, this cluster's VMs are untouched. Its Kubernetes passes
    // `kubicluster test`; a whole-cluster snapshot over both hosts is reverted (a ConfigMap made
    // after it gone, one from before there).
    two_hypervisors(&lab, &c);
    let out = lab.ok(&["status"]);
    assert_eq!(out.matches(" running ").count(), 2, "{out}");

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
            "hostname; ip -4 -o addr show; for ip in {}; do ping -c 1 -W 5 $ip >/dev/null && echo reach $ip; done; echo rootfs $(findmnt -bno SIZE /); echo cmdline $(cat /proc/cmdline)",
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
        // Emulated guests boot without the speculation mitigations (the template was built
        // for them); KVM guests keep them.
        let cmdline = t
            .lines()
            .find_map(|l| l.strip_prefix("cmdline "))
            .unwrap_or("");
        assert_eq!(
            cmdline.split_whitespace().any(|a| a == "mitigations=off"),
            !kubicluster::hypervisor::kvm_usable(),
            "{}: {cmdline}",
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

    // A VM whose key is not the pinned one is refused: the pin is replaced by another key.
    let pinned = c.vm_dir("kubi-worker-01").join("ssh_host_ed25519_key");
    let saved = std::fs::read(&pinned).unwrap();
    let saved_pub = std::fs::read(pinned.with_extension("pub")).unwrap();
    std::fs::remove_file(&pinned).unwrap();
    std::fs::remove_file(pinned.with_extension("pub")).unwrap();
    // With no pin at all, status says so and mints nothing.
    let o = lab.kubicluster(&["status"], &[]);
    assert_eq!(o.status.code(), Some(3));
    assert!(text(&o).contains("NO PINNED KEY"), "{}", text(&o));
    assert!(!pinned.exists(), "reading a pin never creates one");
    kubicluster::sshkeys::ensure_key(&pinned, "another key").unwrap();
    let o = lab.kubicluster(&["status"], &[]);
    assert_eq!(o.status.code(), Some(3), "an unhealthy node: exit 3");
    let out = text(&o);
    let row = out
        .lines()
        .find(|l| l.starts_with("kubi-worker-01"))
        .unwrap();
    assert!(row.contains(" WRONG HOST KEY "), "{row}");
    assert!(
        out.contains("status: 1 node(s) not healthy: kubi-worker-01 (SSH: WRONG HOST KEY)"),
        "{out}"
    );
    std::fs::write(&pinned, saved).unwrap();
    std::fs::write(pinned.with_extension("pub"), saved_pub).unwrap();

    // Nothing changed: nothing to do.
    let out = lab.ok(&["create-vms"]);
    assert!(out.contains("create-vms: nothing to do"), "{out}");
    assert_eq!(out.matches("up to date").count(), 2, "{out}");

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
    assert_eq!(lab.domains().len(), 2);

    controllers(&lab, &c);
    workers_refused(&lab, &c);
    daemon_death(&lab);

    // destroy, then lab down: nothing left (kubi-controller-02 is named again: it left the
    // spec, its VM stayed).
    let two = [("KUBICLUSTER_CONTROLLERS", TWO_CONTROLLERS)];
    let out = lab.ok_env(&["destroy"], &two);
    assert!(out.contains("removed 3 VM(s)"), "{out}");
    assert!(lab.domains().is_empty());
    let pool = c.storage_dir();
    let disks: Vec<_> = std::fs::read_dir(pool)
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

/// A "host" for [`two_hypervisors`]: a side lab's libvirtd, reached only as `qemu+ssh://`
/// through an sshd in its mount and network namespaces, over a veth from this namespace
/// (10.253.<net>.1 here, .2 there: addresses of a namespace this test made).
struct SideHost {
    lab: Lab,
    pid: u32,
    ns: String,
    veth: String,
    sshd: std::process::Child,
    uri: String,
}

/// An sshd in the namespaces (mount, network) of the daemon `pid`, with its config `cfg`.
fn sshd_in(pid: u32, cfg: &Path) -> std::process::Child {
    Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-m", "-n"])
        .args(["/usr/sbin/sshd", "-D", "-e", "-f"])
        .arg(cfg)
        .spawn()
        .unwrap()
}

fn sh(script: &str) {
    let o = Command::new("sh").args(["-ec", script]).output().unwrap();
    assert!(o.status.success(), "{script}: {}", text(&o));
}

impl SideHost {
    fn up(prefix: &str, net: u8) -> SideHost {
        let lab = Lab::new(prefix, prefix, &[]);
        let out = lab.ok(&["lab", "up"]);
        assert!(out.contains("lab started"), "{out}");
        let state = kubicluster::lab::state(&lab.cluster()).unwrap().unwrap();
        let ns = state.netns.clone();
        let veth = format!("kr{}{net}", std::process::id() % 100_000);
        let there = format!("10.253.{net}.2");
        sh(&format!(
            "ip link add {veth} type veth peer name {veth}n
             ip link set {veth}n netns {ns}
             ip addr add 10.253.{net}.1/30 dev {veth}; ip link set {veth} up
             ip netns exec {ns} ip addr add {there}/30 dev {veth}n
             ip netns exec {ns} ip link set {veth}n up"
        ));
        let d = lab.work.path();
        let host_key = sshd_files(d, "hv_", format!("{there}:22").parse().unwrap(), "FATAL");
        let known = d.join("hv_known_hosts");
        std::fs::write(
            &known,
            format!("{there} {}\n", kubicluster::sshkeys::public_line(&host_key)),
        )
        .unwrap();
        // In the daemon's namespaces: its /run/libvirt (the lab's socket), its network.
        let sshd = sshd_in(state.pid, &d.join("hv_sshd_config"));
        // libvirt's own hop runs OpenSSH: a wrapper holds it to the recorded key (this host's
        // ~/.ssh is left alone); kubicluster's jump reads the same file from `known_hosts=`.
        let wrapper = d.join("hv_ssh");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec ssh -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes \"$@\"\n",
                known.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(
            &wrapper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let uri = format!(
            "qemu+ssh://root@{there}/system?keyfile={}&known_hosts={}&command={}",
            d.join("hv_client_key").display(),
            known.display(),
            wrapper.display()
        );
        // Wait for the sshd (it answers once its banner comes).
        let t0 = std::time::Instant::now();
        while Command::new("ssh")
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
            ])
            .arg(format!("UserKnownHostsFile={}", known.display()))
            .arg("-i")
            .arg(d.join("hv_client_key"))
            .args([&format!("root@{there}"), "true"])
            .output()
            .is_ok_and(|o| !o.status.success())
        {
            assert!(
                t0.elapsed().as_secs() < 20,
                "the hypervisor's sshd did not answer"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        SideHost {
            pid: state.pid,
            ns,
            veth,
            sshd,
            uri,
            lab,
        }
    }

    /// The names in a directory of the daemon's mount namespace.
    fn ls(&self, dir: &str) -> String {
        let o = Command::new("nsenter")
            .args(["-t", &self.pid.to_string(), "-m", "ls", dir])
            .output()
            .unwrap();
        text(&o)
    }

    /// The host lost: its sshd stopped and every SSH session into it cut (libvirt's stream
    /// and kubicluster's jump end with the connection, as when a host goes away).
    fn cut(&mut self) {
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
        let o = Command::new("ip")
            .args(["netns", "pids", &self.ns])
            .output()
            .unwrap();
        for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if ["sshd", "sshd-session", "virt-ssh-helper", "nc"].contains(&comm.trim()) {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
    }

    /// The host back after [`SideHost::cut`].
    fn restore(&mut self) {
        self.sshd = sshd_in(self.pid, &self.lab.work.path().join("hv_sshd_config"));
        std::thread::sleep(std::time::Duration::from_secs(1));
    }

    fn down(mut self) {
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
        sh(&format!("ip link del {}", self.veth));
        let out = self.lab.ok(&["lab", "down"]);
        assert!(out.contains("lab removed"), "{out}");
    }
}

/// A Kubernetes cluster over two remote hypervisors (see the call): the controller and a
/// worker on the first, a worker on the second, each host's template and identities in its own
/// pool, the cluster network one layer-2 segment across them (a bridge in each host's
/// namespace, joined by a veth pair between the two namespaces; each host has an address on
/// it, as a hypervisor on a bridged network does).
fn two_hypervisors(lab: &Lab, c: &spec::Cluster) {
    let artifacts = std::env::var("KUBICLUSTER_TEST_ARTIFACTS").expect(
        "KUBICLUSTER_TEST_LAB=1 needs KUBICLUSTER_TEST_ARTIFACTS=<kubicluster artifacts dir> (make test sets it)",
    );
    let (h1, mut h2) = std::thread::scope(|s| {
        let a = s.spawn(|| SideHost::up("kubihvone", 76));
        let b = s.spawn(|| SideHost::up("kubihvtwo", 78));
        (a.join().unwrap(), b.join().unwrap())
    });
    let link = format!("kx{}", std::process::id() % 100_000);
    sh(&format!(
        "ip netns exec {a} ip link add kcbr type bridge; ip netns exec {a} ip link set kcbr up
         ip netns exec {b} ip link add kcbr type bridge; ip netns exec {b} ip link set kcbr up
         ip netns exec {a} ip addr add 192.168.24.1/24 dev kcbr
         ip netns exec {b} ip addr add 192.168.24.2/24 dev kcbr
         ip link add {link}a netns {a} type veth peer name {link}b netns {b}
         ip netns exec {a} ip link set {link}a master kcbr up
         ip netns exec {b} ip link set {link}b master kcbr up",
        a = h1.ns,
        b = h2.ns
    ));
    let first = c.node("kubi-controller-01").unwrap();
    let worker = c.node("kubi-worker-01").unwrap();
    let d = lab.work.path().join("two");
    std::fs::create_dir_all(&d).unwrap();
    // domainType qemu: libvirt reports this machine's /dev/kvm (a nested "PVM" KVM) able to run
    // guests and it cannot; a remote host is asked through libvirt, so the file says so.
    let file = d.join("two.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: kubicluster.io/v1alpha1
kind: Cluster
metadata: {{name: two{pid}}}
spec:
  workDir: {work}
  nodeDefaults: {{memoryMiB: 1536}}
  artifacts: {{source: build, dir: {artifacts}}}
  networks: {{cni: bridge, cluster: {{mode: bridged, bridge: kcbr, mtu: 1450}}}}
  hypervisor: {{mode: host, domainType: qemu, storagePool: remote, storageDir: /var/lib/libvirt/images/remote, image: {image}, bootTimeoutSeconds: 300}}
  hypervisors:
    - {{name: hv1, uri: \"{u1}\"}}
    - {{name: hv2, uri: \"{u2}\"}}
  nodes:
    - {{name: kubi-controller-01, role: controller, clusterIP: {c1}, hypervisorIP: {h1}}}
    - {{name: kubi-worker-01, role: worker, clusterIP: {c2}, hypervisorIP: {h2}}}
    - {{name: kubi-worker-02, role: worker, clusterIP: 192.168.24.22, hypervisorIP: 192.168.122.22, hypervisor: hv2}}
    - {{name: kubi-lb, role: loadbalancer, clusterIP: 192.168.24.30, hypervisorIP: 192.168.122.30, hypervisor: hv2}}
",
            pid = std::process::id(),
            work = d.join("work").display(),
            image = lab.image.display(),
            u1 = h1.uri,
            u2 = h2.uri,
            c1 = first.cluster_ip,
            h1 = first.hypervisor_ip,
            c2 = worker.cluster_ip,
            h2 = worker.hypervisor_ip,
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_kubicluster"))
            .current_dir(&d)
            .args(args)
            .arg("-f")
            .arg(&file)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &d)
            .output()
            .unwrap();
        eprintln!(
            "$ kubicluster {} -f two.yaml\n{}",
            args.join(" "),
            text(&out)
        );
        out
    };
    // `run`, its wall time printed as TIMING <what>.
    let timed = |what: &str, args: &[&str]| {
        let t = std::time::Instant::now();
        let o = run(args);
        timing(&format!("{what}: {:.1} s", t.elapsed().as_secs_f64()));
        o
    };
    // hv2 lost mid-run: once its template upload has begun, every SSH session into it is cut.
    // hv1's VMs are made and verified all the same; `up` ends naming hv2.
    let t = std::time::Instant::now();
    let done = std::sync::atomic::AtomicBool::new(false);
    let (cut, o) = std::thread::scope(|s| {
        let (host, done) = (&mut h2, &done);
        let watcher = s.spawn(move || {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                if host
                    .ls("/var/lib/libvirt/images/remote")
                    .contains("kubicluster-template-")
                {
                    host.cut();
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            false
        });
        let o = run(&["up"]);
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        (watcher.join().unwrap(), o)
    });
    let lost = text(&o);
    assert!(cut, "hv2's template upload was seen: {lost}");
    assert!(!o.status.success(), "{lost}");
    assert!(
        lost.contains("[hv1] create-vms: 2 VM(s) up") && lost.contains("error: hypervisor hv2: "),
        "hv1 finished, the error names hv2: {lost}"
    );
    timing(&format!(
        "up over two hypervisors, hv2 lost during its upload: {:.0} s",
        t.elapsed().as_secs_f64()
    ));
    // hv2 back: `up` resumes — nothing left to do on hv1, hv2's cut-off template replaced.
    h2.restore();
    let o = timed("up over two hypervisors (resumed)", &["up"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("[hv1] create-vms: nothing to do"), "{out}");
    let out = format!("{lost}{out}");
    // Placed (worker-02 where the file says; the controller on the host with no node yet;
    // worker-01 where most memory is left — a tie, to the first host), then each host's
    // template, networks and VMs at the same time.
    for want in [
        "kubi-controller-01  on hv1 (controllers spread over the hypervisors)",
        "kubi-worker-01      on hv1 (the most memory left)",
        "kubi-worker-02      on hv2 (named in the cluster file)",
        "kubi-lb             on hv2 (named in the cluster file)",
        "[hv1] create-vms: 2 VM(s) up",
        "[hv2] create-vms: 2 VM(s) up",
        "up: every node Ready",
        "PASS  a pod runs on every worker",
        "PASS  pods reach each other across workers",
        "PASS  a ClusterIP Service answers through kube-proxy",
        "PASS  kubernetes.default.svc.cluster.local resolves through CoreDNS",
        "PASS  a NodePort answers",
        "test: every check passed",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    for h in ["hv1", "hv2"] {
        assert!(
            out.contains(&format!("[{h}] template volume kubicluster-template-")),
            "{h}: {out}"
        );
    }
    // What each VM reads at boot is in its own host's pool, not in a file of this host's.
    for (h, node) in [
        (&h1, "kubi-controller-01"),
        (&h1, "kubi-worker-01"),
        (&h2, "kubi-worker-02"),
        (&h2, "kubi-lb"),
    ] {
        let listing = h.ls("/var/lib/libvirt/images/remote");
        for f in ["qcow2", "identity", "host-key"] {
            assert!(
                listing.contains(&format!("{node}.{f}")),
                "{node}.{f} in its host's pool: {listing}"
            );
        }
    }
    assert!(
        !Path::new("/var/lib/libvirt/images/remote").exists(),
        "this host's own directory was never used"
    );
    // status names each node's hypervisor; SSH went through that hypervisor, its pinned key;
    // both workers are Ready. Every client reached the API through the load-balancer VM on hv2
    // (the kubeconfigs name its address), whose haproxy finds the controller on hv1 UP.
    let o = run(&["status"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let row = |node: &str| status_row(&out, node);
    assert_eq!(
        row("kubi-controller-01")[1..4],
        ["hv1", "controller", "running"]
    );
    assert_eq!(row("kubi-worker-01")[1..4], ["hv1", "worker", "running"]);
    assert_eq!(row("kubi-worker-02")[1..4], ["hv2", "worker", "running"]);
    assert_eq!(row("kubi-lb")[1..4], ["hv2", "loadbalancer", "running"]);
    for n in [
        "kubi-controller-01",
        "kubi-worker-01",
        "kubi-worker-02",
        "kubi-lb",
    ] {
        assert_eq!(row(n)[6], "ok", "{out}");
    }
    assert_eq!(row("kubi-lb")[8], "kubicluster-api-lb=active", "{out}");
    assert!(
        out.contains("load balancer kubi-lb: kubi-controller-01 UP\n"),
        "{out}"
    );
    for n in ["kubi-worker-01", "kubi-worker-02"] {
        assert_eq!(row(n)[7], "Ready", "{out}");
    }
    // One segment: the controller on hv1 reaches the worker on hv2 at its cluster address
    // (OpenSSH from inside hv1's namespace, trusting only the pinned keys); the cluster NIC
    // has the file's MTU (1450, as under a VXLAN) and a full-size packet passes unfragmented.
    let cluster_dir = d.join("work").join(format!("two{}", std::process::id()));
    let known = cluster_dir.join("ssh");
    let ssh_from = |ns: &str, ip: &str, cmd: &str| {
        Command::new("ip")
            .args(["netns", "exec", ns, "ssh", "-o", "BatchMode=yes", "-o"])
            .arg(format!(
                "UserKnownHostsFile={}",
                known.join("known_hosts").display()
            ))
            .arg("-i")
            .arg(known.join("id_ed25519"))
            .arg(format!("root@{ip}"))
            .arg(cmd)
            .output()
            .unwrap()
    };
    // The worker's kubelet and kube-proxy talk to the API through the load balancer.
    let o = ssh_from(
        &h2.ns,
        "192.168.122.22",
        "grep -h 'server:' /var/lib/kubelet/kubeconfig /var/lib/kube-proxy/kubeconfig",
    );
    assert_eq!(
        text(&o)
            .matches("server: https://192.168.24.30:6443")
            .count(),
        2,
        "{}",
        text(&o)
    );
    let o = ssh_from(
        &h1.ns,
        &first.hypervisor_ip.to_string(),
        "ping -c 1 -W 5 -M do -s 1422 192.168.24.22 && ip -4 -o addr show eth1 && ip -o link show eth1",
    );
    assert!(
        o.status.success()
            && text(&o).contains(&format!("inet {}/24", first.cluster_ip))
            && text(&o).contains(" mtu 1450 "),
        "from hv1 to the worker on hv2 over the cluster network, a full 1450-byte packet unfragmented: {}",
        text(&o)
    );
    // A second `up` changes nothing on either host.
    let o = timed("up over two hypervisors (no-op)", &["up", "--skip-test"]);
    let out = text(&o);
    assert!(
        o.status.success()
            && out.contains("[hv1] create-vms: nothing to do")
            && out.contains("[hv2] create-vms: nothing to do")
            && out.contains("up: made 0 change(s)"),
        "{out}"
    );
    // A snapshot of the cluster over both hosts: every VM paused (on both) while the disks
    // switch. A ConfigMap made after it (through the API) and a file written on hv2's worker
    // are gone after the revert, the ConfigMap from before is there, every node booted again
    // on its own host and Ready. (The one whole-cluster revert of the lab tiers: the
    // Kubernetes lab does not repeat it on one host.)
    let kubeconfig =
        std::fs::read_to_string(cluster_dir.join("certs_and_configs/admin.kubeconfig")).unwrap();
    let api = kubicluster::kubeapi::Client::from_kubeconfig(&kubeconfig, None).unwrap();
    let configmap = |name: &str| {
        serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default"},
            "data": {"made": name},
        })
    };
    let cm_path = |name: &str| format!("/api/v1/namespaces/default/configmaps/{name}");
    // The API is reached on the cluster network, inside hv1's namespace.
    let own_namespace = kubicluster::net::namespace();
    kubicluster::net::dial_inside(Some(Path::new(&format!("/run/netns/{}", h1.ns))));
    api.apply(&configmap("before-snapshot")).unwrap();
    let o = timed(
        "snapshot create over two hypervisors",
        &["snapshot", "create", "s1"],
    );
    let out = text(&o);
    assert!(
        o.status.success()
            && out.contains("  [hv2] kubi-worker-02: pause\n")
            && out.contains("snapshot s1: 4 VM disk(s) frozen after an etcd snapshot"),
        "{out}"
    );
    api.apply(&configmap("after-snapshot")).unwrap();
    let after = "/var/lib/kubicluster-after-snapshot";
    let o = ssh_from(&h2.ns, "192.168.122.22", &format!("touch {after} && sync"));
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&["snapshot", "list", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&String::from_utf8_lossy(&o.stdout))
        .unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    assert!(
        list[0]["name"] == "s1"
            && list[0]["complete"] == true
            && list[0]["etcd"] == true
            && list[0]["layer_bytes"].as_u64().unwrap_or(0) > 0,
        "the layers' sizes come from both hosts' pools: {list}"
    );
    let o = run(&["snapshot", "revert", "s1"]);
    assert_eq!(o.status.code(), Some(2), "needs --yes: {}", text(&o));
    let o = timed(
        "snapshot revert over two hypervisors",
        &["snapshot", "revert", "s1", "--yes"],
    );
    let out = text(&o);
    assert!(
        o.status.success()
            && out.contains("  [hv2] kubi-worker-02: ")
            && out.contains("start: every worker Ready again (2/2)")
            && out.contains("is at s1")
            && out.contains("4 disk layer(s) of before deleted"),
        "{out}"
    );
    assert_eq!(
        api.get(&cm_path("after-snapshot")).unwrap().0,
        404,
        "made after the snapshot"
    );
    let (status, body) = api.get(&cm_path("before-snapshot")).unwrap();
    assert_eq!(status, 200, "made before the snapshot: {body}");
    kubicluster::net::dial_inside(own_namespace.as_deref());
    let o = ssh_from(&h2.ns, "192.168.122.22", &format!("test ! -e {after}"));
    assert!(
        o.status.success(),
        "written after the snapshot: {}",
        text(&o)
    );
    let o = run(&["snapshot", "delete", "s1"]);
    let out = text(&o);
    assert!(
        o.status.success()
            && out.contains("0 disk layer(s) freed")
            && out.contains("4 kept because"),
        "the reverted disks build on the layers: {out}"
    );
    // A base and a top per VM, in each VM's own host's pool.
    for h in [&h1, &h2] {
        let listing = h.ls("/var/lib/libvirt/images/remote");
        let disks = listing
            .lines()
            .filter(|f| f.starts_with("kubi-") && f.ends_with(".qcow2"))
            .count();
        assert_eq!(disks, 4, "two VMs, a base and a top each: {listing}");
    }
    let o = run(&["destroy"]);
    let out = text(&o);
    assert!(
        o.status.success()
            && out.contains("[hv1] destroy: removed 2 VM(s)")
            && out.contains("[hv2] destroy: removed 2 VM(s)"),
        "{out}"
    );
    for h in [&h1, &h2] {
        let listing = h.ls("/var/lib/libvirt/images/remote");
        assert!(
            listing
                .lines()
                .all(|f| f.starts_with("kubicluster-template-")),
            "only the template is left: {listing}"
        );
    }
    sh(&format!("ip netns exec {} ip link del {link}a", h1.ns));
    h1.down();
    h2.down();
}

/// The first controller and the one worker of this tier.
const CONTROLLER: &str = "kubi-controller-01,192.168.24.11,192.168.122.11";
const WORKER: &str = "kubi-worker-01,192.168.24.21,192.168.122.21";
const TWO_CONTROLLERS: &str = "kubi-controller-01,192.168.24.11,192.168.122.11 kubi-controller-02,192.168.24.12,192.168.122.12";

/// create-controllers on the lab: etcd for real, the control plane by content, then a second
/// controller joins.
fn controllers(lab: &Lab, c: &spec::Cluster) {
    eprintln!(
        "NOTE: kube-apiserver, kube-controller-manager and kube-scheduler are not started in this \
         tier: the deb source it proves has no Kubernetes binaries (tests/lab_k8s.rs runs them). \
         etcd runs for real; the control plane's units are installed and listed as not started."
    );
    // Without the Kubernetes binaries nothing is changed unless that is allowed.
    let o = lab.kubicluster(&["create-controllers"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("cannot be had, nothing was changed")
            && text(&o).contains("kube-apiserver"),
        "{}",
        text(&o)
    );
    let o = ssh(
        c,
        "kubi-controller-01",
        "test -e /etc/etcd || echo untouched",
    );
    assert!(text(&o).contains("untouched"));
    // A dry run lists the plan and changes nothing.
    let out = lab.ok(&[
        "create-controllers",
        "--dry-run",
        "--allow-missing-binaries",
    ]);
    assert!(
        out.contains("change(s) pending")
            && out.contains("write /etc/etcd/server-key.pem (0600, secret): missing"),
        "{out}"
    );
    assert!(out.contains("dry run, nothing changed"), "{out}");
    let o = ssh(
        c,
        "kubi-controller-01",
        "test -e /etc/etcd || echo untouched",
    );
    assert!(text(&o).contains("untouched"), "a dry run changes nothing");

    // The real run: etcd from the deb source, verified healthy by the tool.
    // -d lists every change applied.
    let out = lab.ok(&["create-controllers", "-d", "--allow-missing-binaries"]);
    // The packages' programs arrive as files, unpacked on the hypervisor: no dpkg in the VM.
    assert!(
        out.contains("write /usr/bin/etcd (0755): missing")
            && out.contains("write /usr/bin/etcdctl (0755): missing")
            && !out.contains("dpkg"),
        "{out}"
    );
    assert!(
        out.contains("NOT started (3)")
            && out.contains("kube-apiserver.service on kubi-controller-01"),
        "{out}"
    );
    let o = ssh(
        c,
        "kubi-controller-01",
        &format!(
            "systemctl is-active etcd; {ETCDCTL} endpoint health 2>&1; {ETCDCTL} put /kubicluster/test before-join; \
         stat -c '%a %n' /var/lib/etcd /etc/etcd/server-key.pem /var/lib/kubernetes/encryption-config.yaml; \
         systemctl is-enabled kube-apiserver || true; test -e /var/lib/kubernetes/ca-key.pem || echo no-ca-key"
        ),
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.starts_with("active\n") && t.contains("is healthy") && t.contains("OK\n"),
        "{t}"
    );
    assert!(
        t.contains("700 /var/lib/etcd")
            && t.contains("600 /etc/etcd/server-key.pem")
            && t.contains("600 /var/lib/kubernetes/encryption-config.yaml"),
        "{t}"
    );
    assert!(
        t.contains("disabled"),
        "a unit without its binary is not enabled: {t}"
    );
    assert!(
        t.contains("no-ca-key"),
        "the cluster CA key stays on the hypervisor: {t}"
    );
    // TLS is enforced: no client certificate, no answer.
    let o = ssh(
        c,
        "kubi-controller-01",
        "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/etcd/etcd-ca.pem --dial-timeout=3s get /kubicluster/test 2>&1 || echo refused",
    );
    assert!(text(&o).contains("refused"), "{}", text(&o));

    // A second run changes and restarts nothing; plan agrees the cluster is converged.
    let out = lab.ok(&["create-controllers", "--allow-missing-binaries"]);
    assert!(
        out.contains("made 0 change(s)") && out.contains(" 0 restart(s)"),
        "{out}"
    );
    let json = lab.ok(&["plan", "--output", "json"]);
    let start = json.find("{\n").expect("json in the plan output");
    let v: serde_json::Value =
        serde_json::from_str(&json[start..json.rfind('}').unwrap() + 1]).unwrap();
    // The workers are not done yet; the controller's steps have nothing left.
    for step in ["install_etcd", "install_kubernetes_controllers"] {
        assert_eq!(
            v["nodes"]["kubi-controller-01"][step],
            serde_json::json!([]),
            "plan after create-controllers: {json}"
        );
    }

    // A second controller: VM, certificates, then it joins the running etcd cluster.
    let two = [("KUBICLUSTER_CONTROLLERS", TWO_CONTROLLERS)];
    lab.ok_env(&["create-vms"], &two);
    lab.ok_env(&["cnc"], &two);
    let out = lab.ok_env(
        &["create-controllers", "-d", "--allow-missing-binaries"],
        &two,
    );
    assert!(
        out.contains("etcd member add kubi-controller-02 https://192.168.24.12:2380"),
        "{out}"
    );
    let mut c2 = c.clone();
    c2.nodes.push(spec::Node {
        name: "kubi-controller-02".into(),
        role: spec::Role::Controller,
        cluster_ip: "192.168.24.12".parse().unwrap(),
        hypervisor_ip: "192.168.122.12".parse().unwrap(),
        vcpus: 1,
        memory_mib: 1024,
        hypervisor: None,
    });
    let o = ssh(
        &c2,
        "kubi-controller-02",
        &format!(
            "cat /etc/etcd/bootstrap.env; {ETCDCTL} member list; {ETCDCTL} get /kubicluster/test --print-value-only; \
         {ETCDCTL} --endpoints=https://192.168.24.11:2379,https://192.168.24.12:2379 endpoint health 2>&1"
        ),
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("ETCD_INITIAL_CLUSTER_STATE=existing"), "{t}");
    assert_eq!(
        t.matches(", started, ").count(),
        2,
        "both members started: {t}"
    );
    assert!(
        t.contains("before-join\n"),
        "the key written before the join is still there: {t}"
    );
    for ip in ["192.168.24.11", "192.168.24.12"] {
        assert!(t.contains(&format!("https://{ip}:2379 is healthy")), "{t}");
    }
    // Two controllers share a virtual IP for the API: keepalived runs on both (it holds no
    // address here, no API server answers its check).
    for (cl, name) in [(c, "kubi-controller-01"), (&c2, "kubi-controller-02")] {
        let o = ssh(cl, name, "systemctl is-active kubicluster-vip.service");
        assert_eq!(text(&o).trim(), "active", "keepalived on {name}");
    }
    // Controller 1 kept its bootstrap settings; a re-run with two controllers changes nothing.
    let o = ssh(c, "kubi-controller-01", "cat /etc/etcd/bootstrap.env");
    assert!(text(&o).contains("ETCD_INITIAL_CLUSTER_STATE=new"));
    let out = lab.ok_env(&["create-controllers", "--allow-missing-binaries"], &two);
    assert!(
        out.contains("made 0 change(s)") && out.contains(" 0 restart(s)"),
        "{out}"
    );

    // Taken out of the spec again, kubi-controller-02 is removed from the etcd cluster.
    let out = lab.ok(&["create-controllers", "-d", "--allow-missing-binaries"]);
    assert!(
        out.contains("run: etcd: remove members that are no longer controllers")
            && out.contains("stop kubicluster-vip.service and remove it"),
        "{out}"
    );
    let o = ssh(
        c,
        "kubi-controller-01",
        "systemctl is-active kubicluster-vip.service; test -e /etc/keepalived/kubicluster-vip.conf || echo no-config",
    );
    assert!(text(&o).contains("no-config"), "{}", text(&o));
    let o = ssh(
        c,
        "kubi-controller-01",
        &format!("{ETCDCTL} member list; {ETCDCTL} get /kubicluster/test --print-value-only"),
    );
    let t = text(&o);
    assert_eq!(t.matches(", started, ").count(), 1, "one member left: {t}");
    assert!(
        t.contains("kubi-controller-01")
            && !t.contains("kubi-controller-02")
            && t.contains("before-join"),
        "{t}"
    );
    let out = lab.ok(&["create-controllers", "--allow-missing-binaries"]);
    assert!(out.contains("made 0 change(s)"), "{out}");

    // The original's -fedr: refused without --yes; with it, a snapshot first (on the
    // hypervisor), the old data moved aside, a new etcd cluster without the old keys.
    let o = lab.kubicluster(
        &["create-controllers", "-fedr", "--allow-missing-binaries"],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("pass --yes"), "{}", text(&o));
    let out = lab.ok(&[
        "create-controllers",
        "-fedr",
        "--yes",
        "--allow-missing-binaries",
    ]);
    assert!(
        out.contains("snapshot_etcd") && out.contains("reset_etcd_data"),
        "{out}"
    );
    let backups: Vec<_> = std::fs::read_dir(c.cluster_dir().join("backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert!(std::fs::metadata(&backups[0]).unwrap().len() > 1024);
    let o = ssh(
        c,
        "kubi-controller-01",
        &format!(
            "{ETCDCTL} endpoint health 2>&1; echo value=$({ETCDCTL} get /kubicluster/test --print-value-only); \
             ls -d /var/lib/etcd.reset-*; grep STATE /etc/etcd/bootstrap.env"
        ),
    );
    let t = text(&o);
    assert!(
        t.contains("is healthy")
            && t.contains("value=\n")
            && t.contains("/var/lib/etcd.reset-")
            && t.contains("ETCD_INITIAL_CLUSTER_STATE=new"),
        "a new, empty etcd; the old data kept aside: {t}"
    );
}

/// create-workers without the kubelet and kube-proxy binaries (the deb source has none): refused,
/// the worker untouched. The workers' stack runs for real in tests/lab_k8s.rs.
fn workers_refused(lab: &Lab, c: &spec::Cluster) {
    let o = lab.kubicluster(&["create-workers"], &[("KUBICLUSTER_CNI", "bridge")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("cannot be had, nothing was changed") && text(&o).contains("kubelet"),
        "{}",
        text(&o)
    );
    let o = ssh(
        c,
        "kubi-worker-01",
        "test -e /etc/containerd/config.toml || echo untouched",
    );
    assert!(text(&o).contains("untouched"), "{}", text(&o));
}

/// The lab's libvirtd dies: `lab status` and every command say so and that `lab up` alone
/// restarts it; after `lab up` the running VMs are re-attached, untouched.
fn daemon_death(lab: &Lab) {
    let state = kubicluster::lab::recorded(&lab.cluster())
        .unwrap()
        .expect("lab state");
    let pid = state.pid.to_string();
    assert!(
        Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap()
            .success()
    );
    for _ in 0..50 {
        if !Path::new("/proc").join(&pid).exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let o = lab.kubicluster(&["lab", "status"], &[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).contains("DAEMON DEAD")
            && text(&o).contains("`kubicluster lab up` starts it again"),
        "{}",
        text(&o)
    );
    let o = lab.kubicluster(&["create-vms"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("is not running") && text(&o).contains("VMs re-attach"),
        "{}",
        text(&o)
    );
    let out = lab.ok(&["lab", "up"]);
    assert!(out.contains("lab started"), "{out}");
    let out = lab.ok(&["status"]);
    for n in ["kubi-controller-01", "kubi-worker-01"] {
        let row = out
            .lines()
            .find(|l| l.starts_with(n))
            .unwrap_or_else(|| panic!("{n}: {out}"));
        assert!(
            row.split_whitespace().nth(2) == Some("running")
                && row.split_whitespace().nth(5) == Some("ok"),
            "{n} re-attached and answering: {row}"
        );
    }
}
