//! Helpers shared by the integration tests.
#![allow(clippy::print_stderr)]
#![allow(dead_code)]

pub mod lab;

use std::path::Path;

use kubicluster::spec::{self, Cluster, Overrides};

/// A `TIMING <what>` line: on stderr (shown when a test fails or runs with --nocapture) and
/// appended to target/tier-timings.log with the time of day, so a passing run's phases can be
/// read afterwards too (cargo shows nothing of a passing test's output).
pub fn timing(what: &str) {
    eprintln!("TIMING {what}");
    record(&format!("TIMING {what}"));
}

/// A line appended to target/tier-timings.log (best effort: only a record).
pub fn record(line: &str) {
    use std::io::Write;
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tier-timings.log");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() % 86_400)
        .unwrap_or(0);
    let stamp = format!("{:02}:{:02}:{:02}", now / 3600, now / 60 % 60, now % 60);
    let test = std::thread::current().name().unwrap_or("?").to_string();
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
    {
        let _ = writeln!(f, "{stamp} {test}: {line}");
    }
}

/// An OpenSSH server's files under `dir`, each name starting with `prefix`: a host key, a
/// client key it accepts (`<prefix>client_key`), and `<prefix>sshd_config` listening on `addr`
/// (keys only, no PAM). Returns the host's public key. `/run/sshd` is made for its privilege
/// separation.
pub fn sshd_files(
    dir: &Path,
    prefix: &str,
    addr: std::net::SocketAddr,
    log_level: &str,
) -> ssh_key::PublicKey {
    let f = |name: &str| dir.join(format!("{prefix}{name}"));
    let host = kubicluster::sshkeys::ensure_key(&f("host_key"), "test-host").unwrap();
    let client = kubicluster::sshkeys::ensure_key(&f("client_key"), "test-client").unwrap();
    std::fs::write(
        f("authorized_keys"),
        format!(
            "{}\n",
            kubicluster::sshkeys::public_line(client.public_key())
        ),
    )
    .unwrap();
    let config = format!(
        "Port {port}\nListenAddress {ip}\nHostKey {hk}\nAuthorizedKeysFile {ak}\nPidFile {pid}\n\
         UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
         KbdInteractiveAuthentication no\nLogLevel {log_level}\n",
        port = addr.port(),
        ip = addr.ip(),
        hk = f("host_key").display(),
        ak = f("authorized_keys").display(),
        pid = f("sshd.pid").display(),
    );
    std::fs::write(f("sshd_config"), config).unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    host.public_key().clone()
}

/// The words of `status`'s row for `node` (panics, with the output, when there is none).
pub fn status_row(out: &str, node: &str) -> Vec<String> {
    out.lines()
        .find(|l| l.starts_with(node))
        .unwrap_or_else(|| panic!("{node}: {out}"))
        .split_whitespace()
        .map(String::from)
        .collect()
}

pub fn no_env(_: &str) -> Option<String> {
    None
}

pub fn controller(i: u8) -> String {
    format!(
        "kubi-controller-{i:02},192.168.24.{},192.168.122.{}",
        10 + i,
        10 + i
    )
}

pub fn worker(i: u8) -> String {
    format!(
        "kubi-worker-{i:02},192.168.24.{},192.168.122.{}",
        20 + i,
        20 + i
    )
}

/// A cluster with `c` controllers and `w` workers whose work dir is `dir`.
pub fn cluster_with(dir: &Path, c: u8, w: u8, tweak: impl FnOnce(&mut Overrides)) -> Cluster {
    let mut ov = Overrides {
        work_dir: Some(dir.to_string_lossy().into_owned()),
        controllers: (1..=c).map(controller).collect(),
        workers: (1..=w).map(worker).collect(),
        // The PKI's own rules are tested here: clients reach the first controller unless a test
        // names an address (with several controllers the default would be a virtual IP).
        api_server_vip: Some("none".into()),
        ..Overrides::default()
    };
    tweak(&mut ov);
    spec::resolve(None, &ov, &no_env)
        .expect("valid test cluster")
        .0
}

pub fn cluster(dir: &Path, c: u8, w: u8) -> Cluster {
    cluster_with(dir, c, w, |_| {})
}

/// Fail with a reason when a required tier's prerequisite is missing; skip (returning false)
/// only when the tier's gate variable is unset, saying so.
pub fn tier_enabled(gate: &str, needs: &[&str]) -> bool {
    let on = std::env::var(gate).is_ok_and(|v| v == "1");
    let missing: Vec<_> = needs.iter().filter(|b| which(b).is_none()).collect();
    if !on {
        eprintln!("SKIPPED: {gate} is not set (make test sets it); this tier did not run");
        return false;
    }
    assert!(
        missing.is_empty(),
        "{gate}=1 but {missing:?} not found on PATH: install them (make test-deps)"
    );
    true
}

pub fn which(bin: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.is_file())
}
