//! `kubicluster cis`: the file and flag items of the CIS Kubernetes Benchmark (v1.8 numbering),
//! checked on the running nodes — kubicluster's own checker, because kube-bench cannot be built
//! here (its Go module is not served). Each node answers one read-only script (file modes and
//! owners, the running components' command lines and users, the kubelet's config, the CA
//! digests); [`evaluate`] judges the answer. An item kubicluster does not follow on purpose is
//! reported as WAIVED with its reason, so a new FAIL stands out. "Manual" items of the benchmark
//! (policies, admission plugins a user chooses, cipher lists) are not checked.

use std::collections::BTreeMap;

use crate::spec::Role;

/// Read-only: prints `F mode user group path`, `P name user`, `A name arg`, `S sha256 path` and
/// `K line` (the kubelet's config) lines.
pub const GATHER: &str = r#"
for f in /etc/systemd/system/etcd.service /etc/systemd/system/kube-apiserver.service \
  /etc/systemd/system/kube-controller-manager.service /etc/systemd/system/kube-scheduler.service \
  /etc/systemd/system/kubelet.service /etc/systemd/system/kube-proxy.service \
  /var/lib/etcd /etc/etcd /etc/etcd/*.pem /var/lib/kubernetes /var/lib/kubernetes/*.pem \
  /var/lib/kubernetes/*.kubeconfig /var/lib/kubelet/kubeconfig /var/lib/kubelet/ca.pem \
  /var/lib/kubelet/kubelet-config.yaml /var/lib/kube-proxy/kubeconfig; do
  [ -e "$f" ] && stat -c 'F %a %U %G %n' "$f"
done
for d in /proc/[0-9]*; do
  # The process name first, with the shell alone (an emulated node forks slowly); the kernel
  # cuts it at 15 characters: kube-controller-manager is "kube-controller".
  # (2>/dev/null first: a process gone meanwhile makes the redirection itself fail, said on stderr.)
  read -r comm 2>/dev/null < "$d/comm" || continue
  case "$comm" in
    etcd|kube-apiserver|kube-controller|kube-scheduler|kubelet|kube-proxy) ;;
    *) continue ;;
  esac
  exe=$(tr '\0' '\n' 2>/dev/null < "$d/cmdline" | head -n 1)
  case "${exe##*/}" in
    etcd|kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kube-proxy)
      n=${exe##*/}
      echo "P $n $(stat -c %U "$d")"
      tr '\0' '\n' < "$d/cmdline" | sed "1d; s|^|A $n |" ;;
  esac
done
for f in /etc/etcd/etcd-ca.pem /var/lib/kubernetes/ca.pem; do
  [ -f "$f" ] && sha256sum "$f" | sed 's/^/S /'
done
[ -f /var/lib/kubelet/kubelet-config.yaml ] && sed 's/^/K /' /var/lib/kubelet/kubelet-config.yaml
true
"#;

#[derive(Debug, Default)]
pub struct Facts {
    /// path → (mode, user, group)
    pub files: BTreeMap<String, (u32, String, String)>,
    /// component → (user, flags as `--name` → value; a bare flag is "true")
    pub procs: BTreeMap<String, (String, BTreeMap<String, String>)>,
    pub digests: BTreeMap<String, String>,
    pub kubelet_config: String,
}

pub fn parse(out: &str) -> Facts {
    let mut f = Facts::default();
    for line in out.lines() {
        let Some((tag, rest)) = line.split_once(' ') else {
            continue;
        };
        match tag {
            "F" => {
                let p: Vec<&str> = rest.splitn(4, ' ').collect();
                if let [mode, user, group, path] = p[..]
                    && let Ok(m) = u32::from_str_radix(mode, 8)
                {
                    f.files
                        .insert(path.into(), (m, user.to_string(), group.to_string()));
                }
            }
            "P" => {
                if let Some((name, user)) = rest.split_once(' ') {
                    f.procs
                        .entry(name.into())
                        .or_insert_with(|| (user.into(), BTreeMap::new()));
                }
            }
            "A" => {
                if let Some((name, arg)) = rest.split_once(' ')
                    && let Some((_, flags)) = f.procs.get_mut(name)
                {
                    let (k, v) = arg.split_once('=').unwrap_or((arg, "true"));
                    flags.insert(k.to_string(), v.to_string());
                }
            }
            "S" => {
                if let Some((sha, path)) = rest.split_once(' ') {
                    f.digests.insert(path.trim().into(), sha.into());
                }
            }
            "K" => {
                f.kubelet_config.push_str(rest);
                f.kubelet_config.push('\n');
            }
            _ => {}
        }
    }
    f
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Pass(String),
    Fail(String),
    /// Not followed on purpose: (what was found, why kubicluster does so).
    Waived(String, &'static str),
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub id: &'static str,
    pub title: &'static str,
    pub verdict: Verdict,
}

impl Finding {
    /// Failed only because its component was not running when the node answered.
    pub fn not_running(&self) -> bool {
        matches!(&self.verdict, Verdict::Fail(w) | Verdict::Waived(w, _) if w.ends_with(" is not running"))
    }
}

/// How a component's flag must look.
enum Want {
    /// Given, with this value (a bare flag counts as "true").
    Is(&'static str),
    /// Given, any value.
    Given,
    /// Not given.
    Absent,
    /// Absent, or not this value (the default is fine).
    Not(&'static str),
    /// A comma list that contains / does not contain this.
    Has(&'static str),
    Lacks(&'static str),
    /// A number at least this.
    AtLeast(u64),
}

struct FlagItem {
    id: &'static str,
    title: &'static str,
    comp: &'static str,
    flag: &'static str,
    want: Want,
    waived: Option<&'static str>,
}

const BIND_WAIVER: &str = "kubicluster checks its /healthz from the hypervisor; everything else on the port needs an authenticated, authorised client";

#[rustfmt::skip]
const FLAGS: &[FlagItem] = &[
    FlagItem { id: "1.2.1", title: "apiserver --anonymous-auth is false", comp: "kube-apiserver", flag: "--anonymous-auth", want: Want::Is("false"), waived: Some("anonymous requests reach only /healthz, /livez, /readyz and /version (RBAC's system:public-info-viewer), which health checks and load balancers probe") },
    FlagItem { id: "1.2.2", title: "apiserver --token-auth-file is not set", comp: "kube-apiserver", flag: "--token-auth-file", want: Want::Absent, waived: None },
    FlagItem { id: "1.2.4", title: "apiserver --kubelet-client-certificate is set", comp: "kube-apiserver", flag: "--kubelet-client-certificate", want: Want::Given, waived: None },
    FlagItem { id: "1.2.4", title: "apiserver --kubelet-client-key is set", comp: "kube-apiserver", flag: "--kubelet-client-key", want: Want::Given, waived: None },
    FlagItem { id: "1.2.5", title: "apiserver --kubelet-certificate-authority is set", comp: "kube-apiserver", flag: "--kubelet-certificate-authority", want: Want::Given, waived: None },
    FlagItem { id: "1.2.6", title: "apiserver --authorization-mode is not AlwaysAllow", comp: "kube-apiserver", flag: "--authorization-mode", want: Want::Lacks("AlwaysAllow"), waived: None },
    FlagItem { id: "1.2.7", title: "apiserver --authorization-mode includes Node", comp: "kube-apiserver", flag: "--authorization-mode", want: Want::Has("Node"), waived: None },
    FlagItem { id: "1.2.8", title: "apiserver --authorization-mode includes RBAC", comp: "kube-apiserver", flag: "--authorization-mode", want: Want::Has("RBAC"), waived: None },
    FlagItem { id: "1.2.10", title: "admission plugin AlwaysAdmit is not set", comp: "kube-apiserver", flag: "--enable-admission-plugins", want: Want::Lacks("AlwaysAdmit"), waived: None },
    FlagItem { id: "1.2.12", title: "admission plugin ServiceAccount is not disabled", comp: "kube-apiserver", flag: "--disable-admission-plugins", want: Want::Lacks("ServiceAccount"), waived: None },
    FlagItem { id: "1.2.13", title: "admission plugin NamespaceLifecycle is not disabled", comp: "kube-apiserver", flag: "--disable-admission-plugins", want: Want::Lacks("NamespaceLifecycle"), waived: None },
    FlagItem { id: "1.2.14", title: "admission plugin NodeRestriction is set", comp: "kube-apiserver", flag: "--enable-admission-plugins", want: Want::Has("NodeRestriction"), waived: None },
    FlagItem { id: "1.2.15", title: "apiserver --profiling is false", comp: "kube-apiserver", flag: "--profiling", want: Want::Is("false"), waived: None },
    FlagItem { id: "1.2.16", title: "apiserver --audit-log-path is set", comp: "kube-apiserver", flag: "--audit-log-path", want: Want::Given, waived: None },
    FlagItem { id: "1.2.17", title: "apiserver --audit-log-maxage is 30 or more", comp: "kube-apiserver", flag: "--audit-log-maxage", want: Want::AtLeast(30), waived: None },
    FlagItem { id: "1.2.18", title: "apiserver --audit-log-maxbackup is 10 or more", comp: "kube-apiserver", flag: "--audit-log-maxbackup", want: Want::AtLeast(10), waived: None },
    FlagItem { id: "1.2.19", title: "apiserver --audit-log-maxsize is 100 or more", comp: "kube-apiserver", flag: "--audit-log-maxsize", want: Want::AtLeast(100), waived: None },
    FlagItem { id: "1.2.21", title: "apiserver --service-account-lookup is not false", comp: "kube-apiserver", flag: "--service-account-lookup", want: Want::Not("false"), waived: None },
    FlagItem { id: "1.2.22", title: "apiserver --service-account-key-file is set", comp: "kube-apiserver", flag: "--service-account-key-file", want: Want::Given, waived: None },
    FlagItem { id: "1.2.23", title: "apiserver --etcd-certfile is set", comp: "kube-apiserver", flag: "--etcd-certfile", want: Want::Given, waived: None },
    FlagItem { id: "1.2.23", title: "apiserver --etcd-keyfile is set", comp: "kube-apiserver", flag: "--etcd-keyfile", want: Want::Given, waived: None },
    FlagItem { id: "1.2.24", title: "apiserver --tls-cert-file is set", comp: "kube-apiserver", flag: "--tls-cert-file", want: Want::Given, waived: None },
    FlagItem { id: "1.2.24", title: "apiserver --tls-private-key-file is set", comp: "kube-apiserver", flag: "--tls-private-key-file", want: Want::Given, waived: None },
    FlagItem { id: "1.2.25", title: "apiserver --client-ca-file is set", comp: "kube-apiserver", flag: "--client-ca-file", want: Want::Given, waived: None },
    FlagItem { id: "1.2.26", title: "apiserver --etcd-cafile is set", comp: "kube-apiserver", flag: "--etcd-cafile", want: Want::Given, waived: None },
    FlagItem { id: "1.2.27", title: "apiserver --encryption-provider-config is set", comp: "kube-apiserver", flag: "--encryption-provider-config", want: Want::Given, waived: None },
    FlagItem { id: "1.3.2", title: "controller-manager --profiling is false", comp: "kube-controller-manager", flag: "--profiling", want: Want::Is("false"), waived: None },
    FlagItem { id: "1.3.3", title: "controller-manager --use-service-account-credentials is true", comp: "kube-controller-manager", flag: "--use-service-account-credentials", want: Want::Is("true"), waived: None },
    FlagItem { id: "1.3.4", title: "controller-manager --service-account-private-key-file is set", comp: "kube-controller-manager", flag: "--service-account-private-key-file", want: Want::Given, waived: None },
    FlagItem { id: "1.3.5", title: "controller-manager --root-ca-file is set", comp: "kube-controller-manager", flag: "--root-ca-file", want: Want::Given, waived: None },
    FlagItem { id: "1.3.6", title: "RotateKubeletServerCertificate is not turned off", comp: "kube-controller-manager", flag: "--feature-gates", want: Want::Lacks("RotateKubeletServerCertificate=false"), waived: None },
    FlagItem { id: "1.3.7", title: "controller-manager --bind-address is 127.0.0.1", comp: "kube-controller-manager", flag: "--bind-address", want: Want::Is("127.0.0.1"), waived: Some(BIND_WAIVER) },
    FlagItem { id: "1.4.2", title: "scheduler --bind-address is 127.0.0.1", comp: "kube-scheduler", flag: "--bind-address", want: Want::Is("127.0.0.1"), waived: Some(BIND_WAIVER) },
    FlagItem { id: "2.1", title: "etcd --cert-file is set", comp: "etcd", flag: "--cert-file", want: Want::Given, waived: None },
    FlagItem { id: "2.1", title: "etcd --key-file is set", comp: "etcd", flag: "--key-file", want: Want::Given, waived: None },
    FlagItem { id: "2.2", title: "etcd --client-cert-auth is true", comp: "etcd", flag: "--client-cert-auth", want: Want::Is("true"), waived: None },
    FlagItem { id: "2.3", title: "etcd --auto-tls is not true", comp: "etcd", flag: "--auto-tls", want: Want::Not("true"), waived: None },
    FlagItem { id: "2.4", title: "etcd --peer-cert-file is set", comp: "etcd", flag: "--peer-cert-file", want: Want::Given, waived: None },
    FlagItem { id: "2.4", title: "etcd --peer-key-file is set", comp: "etcd", flag: "--peer-key-file", want: Want::Given, waived: None },
    FlagItem { id: "2.5", title: "etcd --peer-client-cert-auth is true", comp: "etcd", flag: "--peer-client-cert-auth", want: Want::Is("true"), waived: None },
    FlagItem { id: "2.6", title: "etcd --peer-auto-tls is not true", comp: "etcd", flag: "--peer-auto-tls", want: Want::Not("true"), waived: None },
    FlagItem { id: "4.2.7", title: "kubelet --hostname-override is not set", comp: "kubelet", flag: "--hostname-override", want: Want::Absent, waived: Some("it names the Node after the cluster file's node name, which kubicluster also gives the VM as its hostname; it keeps that true on nodes kubicluster did not create") },
];

fn judge_flag(flags: &BTreeMap<String, String>, flag: &str, want: &Want) -> Verdict {
    let got = flags.get(flag);
    let shown = |v: Option<&String>| match v {
        Some(v) => format!("{flag}={v}"),
        None => format!("{flag} not given"),
    };
    let list = |v: Option<&String>| -> Vec<String> {
        v.map(|v| v.split(',').map(str::to_string).collect())
            .unwrap_or_default()
    };
    let ok = match want {
        Want::Is(x) => got.is_some_and(|v| v == x),
        Want::Given => got.is_some_and(|v| !v.is_empty()),
        Want::Absent => got.is_none(),
        Want::Not(x) => got.is_none_or(|v| v != x),
        Want::Has(x) => list(got).iter().any(|v| v == x),
        Want::Lacks(x) => !list(got).iter().any(|v| v == x),
        Want::AtLeast(n) => got
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|v| v >= *n),
    };
    if ok {
        Verdict::Pass(shown(got))
    } else {
        Verdict::Fail(shown(got))
    }
}

/// A file rule: paths (or every `*.pem`/`*-key.pem` under a directory), the most a mode may
/// allow, and the owner it must have.
struct FileItem {
    id: &'static str,
    title: &'static str,
    role: Role,
    paths: &'static [&'static str],
    max_mode: Option<u32>,
    owner: Option<&'static str>,
}

const ROOT: Option<&str> = Some("root:root");

#[rustfmt::skip]
const FILES: &[FileItem] = &[
    FileItem { id: "1.1.1-2", title: "apiserver unit file 600 root:root", role: Role::Controller, paths: &["/etc/systemd/system/kube-apiserver.service"], max_mode: Some(0o600), owner: ROOT },
    FileItem { id: "1.1.3-4", title: "controller-manager unit file 600 root:root", role: Role::Controller, paths: &["/etc/systemd/system/kube-controller-manager.service"], max_mode: Some(0o600), owner: ROOT },
    FileItem { id: "1.1.5-6", title: "scheduler unit file 600 root:root", role: Role::Controller, paths: &["/etc/systemd/system/kube-scheduler.service"], max_mode: Some(0o600), owner: ROOT },
    FileItem { id: "1.1.7-8", title: "etcd unit file 600 root:root", role: Role::Controller, paths: &["/etc/systemd/system/etcd.service"], max_mode: Some(0o600), owner: ROOT },
    FileItem { id: "1.1.11", title: "etcd data directory 700", role: Role::Controller, paths: &["/var/lib/etcd"], max_mode: Some(0o700), owner: None },
    FileItem { id: "1.1.12", title: "etcd data directory owned by etcd:etcd", role: Role::Controller, paths: &["/var/lib/etcd"], max_mode: None, owner: Some("etcd:etcd") },
    FileItem { id: "1.1.15-16", title: "scheduler kubeconfig 600 root:root", role: Role::Controller, paths: &["/var/lib/kubernetes/kube-scheduler.kubeconfig"], max_mode: Some(0o600), owner: ROOT },
    FileItem { id: "1.1.17-18", title: "controller-manager kubeconfig 600 root:root", role: Role::Controller, paths: &["/var/lib/kubernetes/kube-controller-manager.kubeconfig"], max_mode: Some(0o600), owner: ROOT },
    FileItem { id: "1.1.19", title: "PKI directories owned by root:root", role: Role::Controller, paths: &["/var/lib/kubernetes", "/etc/etcd"], max_mode: None, owner: ROOT },
    FileItem { id: "1.1.20-21", title: "PKI certificates and keys 600", role: Role::Controller, paths: &["/var/lib/kubernetes/*.pem", "/etc/etcd/*.pem"], max_mode: Some(0o600), owner: ROOT },
    FileItem { id: "4.1.1-2", title: "kubelet unit file 600 root:root", role: Role::Worker, paths: &["/etc/systemd/system/kubelet.service"], max_mode: Some(0o600), owner: ROOT },
    FileItem { id: "4.1.3-4", title: "kube-proxy kubeconfig 600 root:root", role: Role::Worker, paths: &["/var/lib/kube-proxy/kubeconfig"], max_mode: Some(0o600), owner: ROOT },
    FileItem { id: "4.1.5-6", title: "kubelet kubeconfig 600 root:root", role: Role::Worker, paths: &["/var/lib/kubelet/kubeconfig"], max_mode: Some(0o600), owner: ROOT },
    FileItem { id: "4.1.7-8", title: "kubelet client CA file 600 root:root", role: Role::Worker, paths: &["/var/lib/kubelet/ca.pem"], max_mode: Some(0o600), owner: ROOT },
    FileItem { id: "4.1.9-10", title: "kubelet config file 600 root:root", role: Role::Worker, paths: &["/var/lib/kubelet/kubelet-config.yaml"], max_mode: Some(0o600), owner: ROOT },
];

fn judge_files(item: &FileItem, facts: &Facts) -> Verdict {
    let mut found = Vec::new();
    for p in item.paths {
        match p.strip_suffix("*.pem") {
            Some(dir) => found.extend(
                facts
                    .files
                    .iter()
                    .filter(|(f, _)| f.starts_with(dir) && f.ends_with(".pem"))
                    .map(|(f, s)| (f.as_str(), s)),
            ),
            None => match facts.files.get(*p) {
                Some(s) => found.push((p, s)),
                None => return Verdict::Fail(format!("{p} is missing")),
            },
        }
    }
    let mut bad = Vec::new();
    for (path, (mode, user, group)) in &found {
        let mode_bad = item.max_mode.is_some_and(|max| mode & !max != 0);
        let owner_bad = item.owner.is_some_and(|o| o != format!("{user}:{group}"));
        if mode_bad || owner_bad {
            bad.push(format!("{path} is {mode:o} {user}:{group}"));
        }
    }
    if bad.is_empty() {
        Verdict::Pass(format!("{} file(s)", found.len()))
    } else {
        Verdict::Fail(bad.join(", "))
    }
}

/// A kubelet config field by its dotted path (`authentication.anonymous.enabled`).
fn kubelet_field(config: &serde_yaml_ng::Value, path: &str) -> Option<String> {
    let mut v = config;
    for k in path.split('.') {
        v = v.get(k)?;
    }
    Some(match v {
        serde_yaml_ng::Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other).ok()?.trim().to_string(),
    })
}

/// (id, title, field, Some(required value) or None for "set", default when absent, waiver)
type KubeletItem = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
);

#[rustfmt::skip]
const KUBELET: &[KubeletItem] = &[
    ("4.2.1", "kubelet anonymous auth is off", "authentication.anonymous.enabled", Some("false"), None, None),
    ("4.2.2", "kubelet authorization is Webhook", "authorization.mode", Some("Webhook"), None, None),
    ("4.2.3", "kubelet client CA file is set", "authentication.x509.clientCAFile", None, None, None),
    ("4.2.4", "kubelet read-only port is 0", "readOnlyPort", Some("0"), Some("0"), None),
    ("4.2.6", "kubelet makes the iptables util chains", "makeIPTablesUtilChains", Some("true"), Some("true"), None),
    ("4.2.9", "kubelet serving certificate is set", "tlsCertFile", None, None, None),
    ("4.2.9", "kubelet serving key is set", "tlsPrivateKeyFile", None, None, None),
    ("4.2.10", "kubelet rotates its client certificate", "rotateCertificates", Some("true"), Some("false"), Some("the kubelet's client certificate is issued by `kubicluster cnc` (one year); re-run cnc and up to renew it"),
    ),
];

/// Every item that applies to a node of this role, judged on what it answered.
pub fn evaluate(role: Role, facts: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    let push = |out: &mut Vec<Finding>, id, title, v: Verdict, waived: Option<&'static str>| {
        let verdict = match (v, waived) {
            (Verdict::Fail(found), Some(why)) => Verdict::Waived(found, why),
            (v, _) => v,
        };
        out.push(Finding { id, title, verdict });
    };
    for item in FILES.iter().filter(|i| i.role == role) {
        push(
            &mut out,
            item.id,
            item.title,
            judge_files(item, facts),
            None,
        );
    }
    let comps: &[&str] = match role {
        Role::Controller => &[
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ],
        Role::Worker => &["kubelet", "kube-proxy"],
        // haproxy only: none of the benchmark's items is about it.
        Role::LoadBalancer => &[],
    };
    for comp in comps {
        let running = facts.procs.get(*comp);
        for item in FLAGS.iter().filter(|i| i.comp == *comp) {
            let v = match running {
                Some((_, flags)) => judge_flag(flags, item.flag, &item.want),
                None => Verdict::Fail(format!("{comp} is not running")),
            };
            push(&mut out, item.id, item.title, v, item.waived);
        }
    }
    match role {
        Role::Controller => {
            let v = match facts.procs.get("etcd") {
                Some((user, _)) if user == "etcd" => Verdict::Pass("user etcd".into()),
                Some((user, _)) => Verdict::Fail(format!("runs as {user}")),
                None => Verdict::Fail("etcd is not running".into()),
            };
            push(&mut out, "kc.1", "etcd runs as its own user", v, None);
            let etcd_ca = facts.digests.get("/etc/etcd/etcd-ca.pem");
            let ca = facts.digests.get("/var/lib/kubernetes/ca.pem");
            let v = match (etcd_ca, ca) {
                (Some(a), Some(b)) if a != b => Verdict::Pass("etcd-ca.pem ≠ ca.pem".into()),
                (Some(_), Some(_)) => Verdict::Fail("etcd trusts the cluster CA".into()),
                _ => Verdict::Fail("a CA file is missing".into()),
            };
            push(&mut out, "2.7", "etcd has its own CA", v, None);
        }
        Role::Worker => {
            let config: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(&facts.kubelet_config).unwrap_or_default();
            for (id, title, field, want, default, waived) in KUBELET {
                let got = kubelet_field(&config, field).or(default.map(str::to_string));
                let shown = format!("{field}: {}", got.as_deref().unwrap_or("not set"));
                let ok = match want {
                    Some(w) => got.as_deref() == Some(*w),
                    None => got.is_some_and(|g| !g.is_empty()),
                };
                let v = if ok {
                    Verdict::Pass(shown)
                } else {
                    Verdict::Fail(shown)
                };
                push(&mut out, id, title, v, *waived);
            }
        }
        Role::LoadBalancer => {}
    }
    out
}

#[cfg(test)]
mod tests;
