//! `cnc`: the cluster's PKI, kubeconfigs and encryption config, generated in Rust.
//!
//! [`generate`] is idempotent. CAs are created once and never replaced (a missing half is an error,
//! not a reason to start over); a leaf is (re-)issued only when [`inspect::leaf_drift`] finds a
//! reason or `force` is set; kubeconfigs are rewritten only when their content would change; the
//! encryption config is created once. Every file is written atomically with its final mode.

pub mod catalog;
pub mod encryption;
pub mod inspect;
pub mod issue;
pub mod kubeconfig;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::KeyPair;

use crate::error::Failure;
use crate::fsutil::{self, PRIVATE_DIR, PUBLIC, SECRET};
use crate::spec::Cluster;
pub use catalog::{Authority, CertSpec, Group, KubeconfigSpec};

/// Options for one `cnc` run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Re-issue every selected leaf (never a CA, never the encryption key).
    pub force: bool,
    /// Make new CAs where they are missing although this cluster had them (`--new-ca`).
    pub new_ca: bool,
    /// Make a new encryption key where it is missing although this cluster had one.
    pub new_encryption_key: bool,
    /// Limit the run to these groups; empty = everything.
    pub groups: BTreeSet<Group>,
    /// Decide and report, write nothing (not even the work directories).
    pub dry_run: bool,
}

impl Options {
    fn wants(&self, g: Group) -> bool {
        self.groups.is_empty() || self.groups.contains(&g)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Reissued(String),
    Updated,
    Kept,
    Warning(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub file: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub dir: PathBuf,
    pub entries: Vec<Entry>,
    /// Nothing was written: the entries say what a real run would do.
    pub dry_run: bool,
}

impl Report {
    fn push(&mut self, file: impl Into<String>, outcome: Outcome) {
        self.entries.push(Entry {
            file: file.into(),
            outcome,
        });
    }

    /// (created, re-issued or updated, kept)
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for e in &self.entries {
            match e.outcome {
                Outcome::Created => c.0 += 1,
                Outcome::Reissued(_) | Outcome::Updated => c.1 += 1,
                Outcome::Kept => c.2 += 1,
                Outcome::Warning(_) => {}
            }
        }
        c
    }
}

pub fn cert_path(dir: &Path, base: &str) -> PathBuf {
    dir.join(format!("{base}.pem"))
}

pub fn key_path(dir: &Path, base: &str) -> PathBuf {
    dir.join(format!("{base}-key.pem"))
}

pub const ENCRYPTION_CONFIG: &str = "encryption-config.yaml";

/// What this cluster's PKI was made with, kept beside it (`pki-state`): the sha256 of each CA
/// certificate and of the encryption config, written the moment they are created. A CA or an
/// encryption config that disappears afterwards is refused instead of silently re-created.
#[derive(Debug, Default, Clone, PartialEq)]
struct PkiState(BTreeMap<String, String>);

impl PkiState {
    fn path(cluster: &Cluster) -> PathBuf {
        cluster.cluster_dir().join("pki-state")
    }

    fn load(cluster: &Cluster) -> Result<PkiState> {
        let Some(b) = fsutil::read_optional(&PkiState::path(cluster))? else {
            return Ok(PkiState::default());
        };
        Ok(PkiState(
            String::from_utf8_lossy(&b)
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    l.split_once(' ')
                        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
                })
                .collect(),
        ))
    }

    fn record(&mut self, cluster: &Cluster, what: &str, data: &[u8], wet: &Wet) -> Result<()> {
        self.0
            .insert(what.to_string(), crate::blob::sha256_hex(data));
        let mut text = String::from(
            "# sha256 of what this cluster's PKI was created with; kubicluster refuses to re-create these silently\n",
        );
        for (k, v) in &self.0 {
            text.push_str(&format!("{k} {v}\n"));
        }
        wet.write(&PkiState::path(cluster), text.as_bytes(), PUBLIC)
    }
}

/// Remove temp files (`.NAME.tmp-PID`) a killed run left in `dir`.
fn remove_stale_temps(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with('.') && (n.contains(".tmp-") || n.ends_with(".new")) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
/// The one gate every write of `cnc` goes through, so a dry run writes nothing.
struct Wet {
    dry: bool,
}

impl Wet {
    fn write(&self, path: &Path, data: &[u8], mode: u32) -> Result<()> {
        if self.dry {
            return Ok(());
        }
        fsutil::write_atomic(path, data, mode)
    }
}

struct LoadedCa {
    pem: Vec<u8>,
    key: KeyPair,
    /// Whole days the CA is still valid; leaves never outlive it.
    days_left: u32,
}

/// Load the CA, or create it when neither half exists.
fn ensure_ca(
    dir: &Path,
    a: Authority,
    cluster: &Cluster,
    report: &mut Report,
    wet: &Wet,
    state: &mut PkiState,
    new_ca: bool,
) -> Result<LoadedCa> {
    let (cp, kp) = (cert_path(dir, a.file()), key_path(dir, a.file()));
    let mut cert = fsutil::read_optional(&cp)?;
    let mut key = fsutil::read_optional(&kp)?;
    let file = format!("{}.pem", a.file());
    let recorded = state.0.contains_key(a.file());
    // A lone half of a CA whose creation never completed (killed between the two renames) is
    // not a CA: made again. A half of a recorded CA is an error below.
    if !recorded && cert.is_some() != key.is_some() {
        report.push(
            &file,
            Outcome::Warning("an incomplete CA from an interrupted run was made again".into()),
        );
        cert = None;
        key = None;
    }
    if recorded && cert.is_none() && key.is_none() && !new_ca {
        return Err(Failure::new(format!(
            "{} and {} are gone, but this cluster's {} CA was created before (recorded in {}); a new CA would break every node",
            cp.display(),
            kp.display(),
            a.file(),
            PkiState::path(cluster).display()
        ))
        .hint("restore both files from your backup of the work dir; or pass --new-ca to make a new CA (every certificate is re-issued and every node must get the new files)")
        .into());
    }
    match (cert, key) {
        (Some(pem), Some(key_pem)) => {
            let key = std::str::from_utf8(&key_pem)
                .ok()
                .and_then(|s| KeyPair::from_pem(s).ok())
                .ok_or_else(|| {
                    Failure::new(format!("{} is not a readable private key", kp.display()))
                        .hint("restore it from your backup of the work dir; kubicluster never replaces a CA")
                })?;
            let parsed = inspect::ParsedPem::from_pem(&pem).with_context(|| cp.display().to_string())?;
            let cert = parsed.cert().with_context(|| cp.display().to_string())?;
            if !inspect::key_matches(&cert, &key) {
                return Err(Failure::new(format!("{} does not belong to {}", kp.display(), cp.display()))
                    .hint("restore the matching pair from your backup; kubicluster never replaces a CA")
                    .into());
            }
            let left = cert.validity().not_after.timestamp() - time::OffsetDateTime::now_utc().unix_timestamp();
            if left < i64::from(cluster.pki.cert_validity_days) * 86_400 {
                report.push(
                    &file,
                    Outcome::Warning(format!(
                        "CA expires on {}; leaves are cut to its lifetime. Rotate the CA by hand (kubicluster does not)",
                        cert.validity().not_after.to_datetime().date()
                    )),
                );
            }
            if !recorded {
                state.record(cluster, a.file(), &pem, wet)?;
            }
            report.push(&file, Outcome::Kept);
            let days_left = u32::try_from(left.max(0) / 86_400).unwrap_or(u32::MAX);
            Ok(LoadedCa { pem, key, days_left })
        }
        (None, None) => {
            let key = issue::generate_key(cluster.pki.key_algorithm)?;
            let pem = issue::self_signed_ca(a, &key, cluster.pki.ca_validity_days)?;
            // All or nothing: both halves under temp names, then renamed, then recorded.
            let (tk, tc) = (dir.join(format!(".{}-key.pem.new", a.file())), dir.join(format!(".{}.pem.new", a.file())));
            wet.write(&tk, key.serialize_pem().as_bytes(), SECRET)?;
            wet.write(&tc, pem.as_bytes(), PUBLIC)?;
            if !wet.dry {
                std::fs::rename(&tk, &kp).with_context(|| format!("rename into {}", kp.display()))?;
                std::fs::rename(&tc, &cp).with_context(|| format!("rename into {}", cp.display()))?;
            }
            state.record(cluster, a.file(), pem.as_bytes(), wet)?;
            if recorded {
                report.push(&file, Outcome::Warning("a NEW CA was made (--new-ca): every node needs the new certificates".into()));
            }
            report.push(&file, Outcome::Created);
            Ok(LoadedCa {
                pem: pem.into_bytes(),
                key,
                days_left: cluster.pki.ca_validity_days,
            })
        }
        (Some(_), None) => Err(Failure::new(format!("{} exists but its key {} is missing", cp.display(), kp.display()))
            .hint("restore the key from your backup; to start a new PKI instead, move the whole certs_and_configs directory away")
            .into()),
        (None, Some(_)) => Err(Failure::new(format!("{} exists but its certificate {} is missing", kp.display(), cp.display()))
            .hint("restore the certificate from your backup; to start a new PKI instead, move the whole certs_and_configs directory away")
            .into()),
    }
}

/// Generate (or bring up to date) the PKI of `cluster` under `cluster.certs_dir()`.
pub fn generate(cluster: &Cluster, opts: &Options) -> Result<Report> {
    let dir = cluster.certs_dir();
    let wet = Wet { dry: opts.dry_run };
    if !opts.dry_run {
        fsutil::ensure_dir(&cluster.cluster_dir(), PRIVATE_DIR)?;
    }
    // The caller holds the cluster lock (`cnc` and `up` run this as the generate_pki step).
    if !opts.dry_run {
        fsutil::ensure_dir(&dir, PRIVATE_DIR)?;
        remove_stale_temps(&dir);
    }
    let mut state = PkiState::load(cluster)?;
    let mut report = Report {
        dir: dir.clone(),
        entries: Vec::new(),
        dry_run: opts.dry_run,
    };

    let leaves: Vec<CertSpec> = catalog::certificates(cluster)
        .into_iter()
        .filter(|c| opts.wants(c.group))
        .collect();
    let mut authorities: BTreeSet<Authority> = leaves.iter().map(|c| c.issuer).collect();
    if opts.wants(Group::Ca) {
        authorities.extend(Authority::ALL);
    }
    let mut cas = BTreeMap::new();
    for a in authorities {
        cas.insert(
            a,
            ensure_ca(&dir, a, cluster, &mut report, &wet, &mut state, opts.new_ca)?,
        );
    }

    // Decide, then issue what needs issuing in parallel (RSA key generation is slow).
    let alg = cluster.pki.key_algorithm;
    let mut todo = Vec::new();
    for spec in &leaves {
        let cert = fsutil::read_optional(&cert_path(&dir, &spec.file))?;
        let key = fsutil::read_optional(&key_path(&dir, &spec.file))?;
        let ca = &cas[&spec.issuer];
        let decision = match cert {
            None => Some(Outcome::Created),
            Some(_) if opts.force => Some(Outcome::Reissued("forced (--force)".into())),
            Some(pem) => inspect::leaf_drift(
                spec,
                &pem,
                key.as_deref(),
                &ca.pem,
                alg,
                cluster.pki.renew_before_days,
            )?
            .map(Outcome::Reissued),
        };
        match decision {
            Some(outcome) => todo.push((spec, outcome)),
            None => report.push(format!("{}.pem", spec.file), Outcome::Kept),
        }
    }
    let to_issue = if opts.dry_run { &todo[..0] } else { &todo[..] };
    let issued: Vec<Result<(String, String)>> =
        crate::par::map(to_issue, |(spec, _)| -> Result<(String, String)> {
            let ca = &cas[&spec.issuer];
            let key = issue::generate_key(alg)?;
            let ca_pem = std::str::from_utf8(&ca.pem).context("CA certificate is not text")?;
            let days = cluster.pki.cert_validity_days.min(ca.days_left);
            let cert = issue::signed_leaf(spec, &key, ca_pem, &ca.key, days)?;
            Ok((key.serialize_pem(), cert))
        });
    for ((spec, _), result) in todo.iter().zip(issued) {
        let (key_pem, cert_pem) = result?;
        // Key first: a crash between the two leaves a mismatch that the next run re-issues.
        wet.write(&key_path(&dir, &spec.file), key_pem.as_bytes(), SECRET)?;
        wet.write(&cert_path(&dir, &spec.file), cert_pem.as_bytes(), PUBLIC)?;
    }
    let reissued: BTreeSet<&str> = todo.iter().map(|(spec, _)| spec.file.as_str()).collect();
    for (spec, outcome) in &todo {
        report.push(format!("{}.pem", spec.file), outcome.clone());
    }

    // Kubeconfigs: derived from files on disk, rewritten only when their content changes.
    let ca_pem = match cas.get(&Authority::Kubernetes) {
        Some(ca) => Some(ca.pem.clone()),
        None => fsutil::read_optional(&cert_path(&dir, Authority::Kubernetes.file()))?,
    };
    for kc in catalog::kubeconfigs(cluster)
        .into_iter()
        .filter(|k| opts.wants(k.group))
    {
        let path = dir.join(&kc.file);
        if opts.dry_run && reissued.contains(kc.cert.as_str()) {
            // Its certificate would change, so would it.
            let outcome = if path.exists() {
                Outcome::Updated
            } else {
                Outcome::Created
            };
            report.push(kc.file, outcome);
            continue;
        }
        let ca_pem = ca_pem.as_ref().context("the cluster CA is missing")?;
        let read = |p: PathBuf| -> Result<Vec<u8>> {
            fsutil::read_optional(&p)?.with_context(|| format!("{} is missing", p.display()))
        };
        let cert = read(cert_path(&dir, &kc.cert))?;
        let key = read(key_path(&dir, &kc.cert))?;
        let yaml =
            kubeconfig::Kubeconfig::new(&cluster.name, &kc.server, ca_pem, &kc.user, &cert, &key)
                .to_yaml();
        let outcome = match fsutil::read_optional(&path)? {
            None => Outcome::Created,
            Some(old) if old == yaml.as_bytes() => Outcome::Kept,
            Some(_) => Outcome::Updated,
        };
        if outcome != Outcome::Kept {
            wet.write(&path, yaml.as_bytes(), SECRET)?;
        }
        report.push(kc.file, outcome);
    }

    if opts.wants(Group::Encryption) {
        let path = dir.join(ENCRYPTION_CONFIG);
        match fsutil::read_optional(&path)? {
            Some(old) => {
                let text = String::from_utf8_lossy(&old);
                encryption::EncryptionConfiguration::from_yaml(&text).map_err(|e| {
                    Failure::new(format!("{} is not a valid encryption config: {e}", path.display())).hint(
                        "restore it from your backup; kubicluster never replaces it, because a new key makes stored secrets unreadable",
                    )
                })?;
                if !state.0.contains_key("encryption-config") {
                    state.record(cluster, "encryption-config", &old, &wet)?;
                }
                report.push(ENCRYPTION_CONFIG, Outcome::Kept);
            }
            None if state.0.contains_key("encryption-config") && !opts.new_encryption_key => {
                return Err(Failure::new(format!(
                    "{} is gone, but this cluster's encryption key was created before (recorded in {}); a new key makes every Secret stored in etcd unreadable",
                    path.display(),
                    PkiState::path(cluster).display()
                ))
                .hint("restore it from your backup of the work dir; or pass --new-encryption-key if the cluster has no secrets worth keeping")
                .into());
            }
            None => {
                let yaml =
                    encryption::EncryptionConfiguration::generate(cluster.pki.encryption_provider)
                        .to_yaml();
                wet.write(&path, yaml.as_bytes(), SECRET)?;
                state.record(cluster, "encryption-config", yaml.as_bytes(), &wet)?;
                report.push(ENCRYPTION_CONFIG, Outcome::Created);
            }
        }
    }
    tighten_modes(&dir, &mut report, &wet)?;
    Ok(report)
}

/// Keys, kubeconfigs and the encryption config are 0600: a looser mode is tightened and said.
fn tighten_modes(dir: &Path, report: &mut Report, wet: &Wet) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let mut names: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in names {
        let secret =
            n.ends_with("-key.pem") || n.ends_with(".kubeconfig") || n == ENCRYPTION_CONFIG;
        if !secret || n.starts_with('.') {
            continue;
        }
        let p = dir.join(&n);
        let mode = std::fs::metadata(&p)?.permissions().mode() & 0o7777;
        if mode != SECRET {
            if !wet.dry {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(SECRET))
                    .with_context(|| format!("chmod 0600 {}", p.display()))?;
            }
            report.push(
                n,
                Outcome::Warning(format!("mode was {mode:04o}, tightened to 0600")),
            );
        }
    }
    Ok(())
}
