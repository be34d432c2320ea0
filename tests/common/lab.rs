//! The VM lab, shared by the lab tiers: a cluster in a temporary work dir whose libvirtd runs
//! privately in a network namespace, driven through the kubicluster binary. `lab down` runs on
//! drop, even when an assertion failed.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use kubicluster::hypervisor::Hypervisor;
use kubicluster::hypervisor::libvirt::Libvirt;
use kubicluster::spec::{self, Overrides};

/// Whether the lab tier runs (gate KUBICLUSTER_TEST_LAB=1); with the gate set, a missing tool
/// (the lab's own or one of `extra`) fails the test.
pub fn lab_enabled(extra: &[&str]) -> bool {
    let mut tools = vec!["ip", "libvirtd", "qemu-system-x86_64", "mmdebstrap", "ssh"];
    tools.extend_from_slice(extra);
    super::tier_enabled("KUBICLUSTER_TEST_LAB", &tools)
}

pub struct Lab {
    pub work: tempfile::TempDir,
    pub name: String,
    pub image: PathBuf,
    /// Environment every command gets, on top of the lab's own.
    pub env: Vec<(String, String)>,
}

/// The template image, cached in target/ between local runs (CI builds it fresh).
pub fn lab_image() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/lab-image/kubicluster-bookworm.qcow2")
}

impl Lab {
    /// A lab in a fresh directory `/tmp/<dir_prefix>…`, its cluster named `<name><pid>`
    /// (short: network and bridge names derive from it).
    pub fn new(dir_prefix: &str, name: &str, env: &[(&str, &str)]) -> Self {
        Lab {
            work: tempfile::Builder::new()
                .prefix(dir_prefix)
                .tempdir_in("/tmp")
                .unwrap(),
            name: format!("{name}{}", std::process::id()),
            image: lab_image(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    pub fn command(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Command {
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
            .env("KUBICLUSTER_BOOT_TIMEOUT", "300");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn kubicluster(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
        let t = std::time::Instant::now();
        let out = self
            .command(args, extra_env)
            .output()
            .expect("run kubicluster");
        eprintln!("$ kubicluster {}\n{}", args.join(" "), text(&out));
        super::record(&format!(
            "{:.1} s kubicluster {} ({})",
            t.elapsed().as_secs_f64(),
            args.join(" "),
            out.status
        ));
        out
    }

    /// Started, not waited for; stderr piped (read it with [`lines_until`]).
    pub fn spawn(&self, args: &[&str]) -> Child {
        eprintln!("$ kubicluster {} &", args.join(" "));
        self.command(args, &[])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kubicluster")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_env(args, &[])
    }

    pub fn ok_env(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.kubicluster(args, env);
        assert!(out.status.success(), "kubicluster {args:?} failed");
        text(&out)
    }

    /// The cluster as the commands see it (the env nodes and storage dir included).
    pub fn cluster(&self) -> spec::Cluster {
        let get = |k: &str| {
            self.env
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        // Node flags: space-separated NAME,CLUSTER_IP,HYPERVISOR_IP entries.
        let nodes = |k: &str| {
            get(k)
                .map(|v| v.split(' ').map(str::to_string).collect())
                .unwrap_or_default()
        };
        let ov = Overrides {
            lab: true,
            name: Some(self.name.clone()),
            work_dir: Some(self.work.path().join("work").display().to_string()),
            storage_dir: get("KUBICLUSTER_STORAGE_DIR"),
            controllers: nodes("KUBICLUSTER_CONTROLLERS"),
            workers: nodes("KUBICLUSTER_WORKERS"),
            ..Overrides::default()
        };
        spec::resolve(None, &ov, &super::no_env).unwrap().0
    }

    pub fn libvirt(&self) -> Libvirt {
        Libvirt::connect(&kubicluster::lab::uri(&self.cluster())).expect("lab libvirtd answers")
    }

    pub fn domains(&self) -> Vec<String> {
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

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Read `child`'s stderr line by line (echoing it) until a line contains `needle`; returns
/// everything read. Panics if the stream ends first.
pub fn lines_until(child: &mut Child, needle: &str) -> String {
    use std::io::BufRead;
    let err = child.stderr.as_mut().expect("stderr piped");
    let mut reader = std::io::BufReader::new(err);
    let mut all = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).unwrap();
        assert!(n > 0, "output ended before {needle:?}:\n{all}");
        eprint!("  | {line}");
        all.push_str(&line);
        if line.contains(needle) {
            return all;
        }
    }
}

/// Command a cluster node over SSH from inside the namespace, trusting only the pinned keys.
pub fn ssh_command(c: &spec::Cluster, node: &str, script: &str) -> Command {
    let n = c.node(node).unwrap_or_else(|| panic!("{node} in the spec"));
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &kubicluster::lab::netns_name(c), "ssh"])
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", c.known_hosts().display()))
        .arg("-i")
        .arg(&c.ssh_key)
        .arg(format!("root@{}", n.hypervisor_ip))
        .arg(script);
    cmd
}

/// Run `script` on `node` (see [`ssh_command`]).
pub fn ssh(c: &spec::Cluster, node: &str, script: &str) -> Output {
    let o = ssh_command(c, node, script).output().unwrap();
    eprintln!("$ ssh {node} {script}\n{}", text(&o));
    o
}

/// Command lines of the processes whose command line contains `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(needle))
        .collect()
}
