//! Diff a [`Desired`] against a node and apply exactly what the diff listed.
//!
//! `plan` only reads: one `stat_many` round trip for every directory and file (sha256 on the
//! node), the guards of the guarded commands, and every unit's enabled/active state (one call).
//! `apply` walks the plan in order through one gate — dirs, files, commands, one
//! `daemon-reload` if a unit file changed, enable (or re-enable: a link its `[Install]` asks
//! for is missing), start, restart only the units whose inputs
//! changed, then the commands that run after the units — and stops at the first failure.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};

pub use super::change::{Change, PkiOp, VmOp};
use super::desired::{Desired, UNIT_MODE};
use crate::host::{Cmd, Host, HostError, HostResult, Stat};

/// (enabled, active) per unit, from the probe's words.
fn unit_states(
    units: &[(String, String, String)],
) -> std::collections::BTreeMap<String, (bool, bool)> {
    units
        .iter()
        .map(|(u, e, a)| {
            (
                u.clone(),
                (
                    matches!(
                        e.as_str(),
                        "enabled" | "enabled-runtime" | "static" | "alias"
                    ),
                    matches!(a.as_str(), "active" | "activating" | "reloading"),
                ),
            )
        })
        .collect()
}

fn octal(m: u32) -> String {
    format!("{m:04o}")
}

/// What a plan of `want` reads in its one round trip: the guards, the units and every path but
/// the commands' payloads (a package to install matters only when its command will run: read
/// in a second round trip, only then).
pub fn probe_inputs(want: &Desired) -> (Vec<Cmd>, Vec<String>, Vec<String>) {
    let checks: Vec<Cmd> = want.commands.iter().map(|c| c.check.clone()).collect();
    let unit_names: Vec<String> = want.units.iter().map(|u| u.name.clone()).collect();
    let mut paths: Vec<String> = want.dirs.iter().map(|d| d.path.clone()).collect();
    paths.extend(
        want.files
            .iter()
            .filter(|f| f.payload_of.is_none())
            .map(|f| f.path.clone()),
    );
    paths.extend(want.units.iter().map(|u| u.path()));
    paths.extend(want.units.iter().flat_map(|u| u.links()));
    (checks, unit_names, paths)
}

/// Read the node and list what differs from `want`, in apply order.
pub fn plan(host: &dyn Host, want: &Desired) -> HostResult<Vec<Change>> {
    plan_with(host, want, None)
}

/// [`plan`], answered from what [`super::prefetch`] read where it can.
pub fn plan_with(
    host: &dyn Host,
    want: &Desired,
    prefetched: Option<&super::prefetch::Prefetched>,
) -> HostResult<Vec<Change>> {
    let (checks, unit_names, paths) = probe_inputs(want);
    let probe = match prefetched.and_then(|p| p.probe(host.name(), &checks, &unit_names, &paths)) {
        Some(p) => p,
        None => host.probe(&checks, &unit_names, &paths)?,
    };
    let to_run: BTreeSet<String> = want
        .commands
        .iter()
        .zip(&probe.checks)
        .filter(|(_, ok)| !**ok)
        .map(|(c, _)| c.what.clone())
        .collect();
    let files: Vec<&super::FileSpec> = want
        .files
        .iter()
        .filter(|f| f.payload_of.as_ref().is_none_or(|w| to_run.contains(w)))
        .collect();
    let payload_paths: Vec<String> = files
        .iter()
        .filter(|f| f.payload_of.is_some())
        .map(|f| f.path.clone())
        .collect();
    let mut payload_stats = if payload_paths.is_empty() {
        Vec::new()
    } else {
        host.stat_many(&payload_paths)?
    }
    .into_iter();
    let (dir_stats, rest) = probe.stats.split_at(want.dirs.len());
    let links: Vec<Vec<String>> = want.units.iter().map(|u| u.links()).collect();
    let (rest, mut link_stats) =
        rest.split_at(rest.len() - links.iter().map(Vec::len).sum::<usize>());
    let (plain_stats, unit_stats) = rest.split_at(rest.len() - want.units.len());
    let mut plain = plain_stats.iter().cloned();
    let file_stats: Vec<Stat> = files
        .iter()
        .map(|f| {
            if f.payload_of.is_some() {
                payload_stats.next().unwrap_or(Stat::Missing)
            } else {
                plain.next().unwrap_or(Stat::Missing)
            }
        })
        .collect();
    let mut changes = Vec::new();
    for (d, st) in want.dirs.iter().zip(dir_stats) {
        match st {
            Stat::Dir { mode, .. } if *mode == d.mode => {}
            Stat::Dir { mode, .. } => changes.push(Change::ChmodDir {
                path: d.path.clone(),
                from: octal(*mode),
                to: octal(d.mode),
            }),
            _ => changes.push(Change::CreateDir {
                path: d.path.clone(),
                mode: octal(d.mode),
            }),
        }
    }
    // Why each unit restarts.
    let mut because: Vec<(String, String)> = Vec::new();
    for (f, st) in files.iter().zip(&file_stats) {
        let reason = match st {
            Stat::File { .. } if f.create_only => None,
            Stat::File {
                sha256,
                mode,
                owner,
            } => {
                if *sha256 != f.content.sha256 {
                    Some("content differs".to_string())
                } else if *mode != f.mode {
                    Some(format!("mode {} → {}", octal(*mode), octal(f.mode)))
                } else if *owner != f.owner {
                    Some(format!("owner {owner} → {}", f.owner))
                } else {
                    None
                }
            }
            Stat::Missing => Some("missing".into()),
            Stat::Dir { .. } | Stat::Other => Some("replaces a non-file".into()),
        };
        if let Some(reason) = reason {
            for u in &f.restarts {
                because.push((u.clone(), f.path.clone()));
            }
            changes.push(Change::WriteFile {
                path: f.path.clone(),
                mode: octal(f.mode),
                reason,
                secret: f.secret,
            });
        }
    }
    let mut reload = false;
    for (u, st) in want.units.iter().zip(unit_stats) {
        let differs = !matches!(st, Stat::File { sha256, mode, .. } if *sha256 == u.file.sha256 && *mode == UNIT_MODE);
        if differs {
            reload = true;
            because.push((u.name.clone(), u.path()));
            changes.push(Change::WriteFile {
                path: u.path(),
                mode: octal(UNIT_MODE),
                reason: match st {
                    Stat::Missing => "missing".into(),
                    Stat::File { sha256, mode, .. } if *sha256 == u.file.sha256 => {
                        format!("mode {} → {}", octal(*mode), octal(UNIT_MODE))
                    }
                    _ => "content differs".into(),
                },
                secret: false,
            });
        }
    }
    let mut after = Vec::new();
    for c in &want.commands {
        if to_run.contains(&c.what) {
            for u in &c.restarts {
                because.push((u.clone(), c.what.clone()));
            }
            if c.after_units {
                after.push(Change::RunAfter {
                    what: c.what.clone(),
                });
            } else {
                changes.push(Change::Run {
                    what: c.what.clone(),
                });
            }
        }
    }
    if reload {
        changes.push(Change::DaemonReload);
    }
    let mut starts = Vec::new();
    let states = unit_states(&probe.units);
    for (u, links) in want.units.iter().zip(&links) {
        let (enabled, active) = states.get(&u.name).copied().unwrap_or((false, false));
        let (these, later) = link_stats.split_at(links.len());
        link_stats = later;
        let missing: Vec<String> = links
            .iter()
            .zip(these)
            .filter(|(_, st)| matches!(st, Stat::Missing))
            .map(|(l, _)| l.clone())
            .collect();
        if u.enable && !enabled {
            changes.push(Change::Enable {
                unit: u.name.clone(),
            });
        } else if u.enable && !missing.is_empty() {
            changes.push(Change::Reenable {
                unit: u.name.clone(),
                missing,
            });
        }
        if !u.start {
            continue;
        }
        let why: BTreeSet<String> = because
            .iter()
            .filter(|(unit, _)| *unit == u.name)
            .map(|(_, p)| p.clone())
            .collect();
        if !active {
            starts.push(Change::Start {
                unit: u.name.clone(),
            });
        } else if !why.is_empty() {
            let unit = u.name.clone();
            let because = why.iter().cloned().collect();
            // A reload cannot take in a new unit file (ExecStart, sandbox): that restarts.
            starts.push(if u.reload && !why.contains(&u.path()) {
                Change::Reload { unit, because }
            } else {
                Change::Restart { unit, because }
            });
        }
    }
    changes.extend(starts);
    changes.extend(after);
    Ok(changes)
}

/// Apply `changes` (from [`plan`] with the same `want`) in order. `cancel` is checked before
/// every change: a change in flight (an atomic write, a command) always finishes. Returns how
/// many changes were applied.
pub fn apply(
    host: &dyn Host,
    want: &Desired,
    changes: &[Change],
    cancel: &AtomicBool,
) -> Result<usize, ApplyError> {
    let mut applied = 0;
    let mut i = 0;
    while i < changes.len() {
        let n = run_len(&changes[i..]);
        for group in batches(want, &changes[i..i + n]) {
            if cancel.load(Ordering::SeqCst) {
                return Err(ApplyError::Cancelled { applied });
            }
            for ch in &group {
                tracing::info!(node = host.name(), "{ch}");
            }
            let done = match group.as_slice() {
                [one] => apply_one(host, want, one),
                many => apply_batch(host, want, many),
            };
            done.map_err(|error| ApplyError::Host { applied, error })?;
            applied += group.len();
        }
        i += n;
    }
    Ok(applied)
}

/// Files up to this size are written together, in one round trip; larger ones (binaries,
/// images) one at a time, so no batch holds hundreds of MB in memory.
const BATCH_FILE_BYTES: u64 = 1 << 20;

/// How many changes from the start of `rest` are of one kind that goes to a node together
/// (directories, files, units to enable); 1 for any other.
fn run_len(rest: &[Change]) -> usize {
    let same = |a: &Change, b: &Change| {
        matches!(
            (a, b),
            (Change::CreateDir { .. }, Change::CreateDir { .. })
                | (Change::Enable { .. }, Change::Enable { .. })
                | (Change::WriteFile { .. }, Change::WriteFile { .. })
        )
    };
    match rest.first() {
        Some(first) => 1 + rest[1..].iter().take_while(|ch| same(first, ch)).count(),
        None => 0,
    }
}

/// A run of one kind ([`run_len`]) as the calls that apply it: every directory in one, every
/// unit to enable in one, every small file in one and each large file alone — a round trip
/// each, and every process slow on an emulated guest. The files of a run are all written
/// before anything runs, so their order among themselves does not matter.
fn batches<'c>(want: &Desired, run: &'c [Change]) -> Vec<Vec<&'c Change>> {
    if !matches!(run.first(), Some(Change::WriteFile { .. })) {
        return vec![run.iter().collect()];
    }
    let small = |ch: &&Change| match ch {
        Change::WriteFile { path, .. } => {
            wanted_file(want, path).is_some_and(|(b, ..)| b.len() <= BATCH_FILE_BYTES)
        }
        _ => false,
    };
    let (smalls, larges): (Vec<&Change>, Vec<&Change>) = run.iter().partition(small);
    let mut out = Vec::new();
    if !smalls.is_empty() {
        out.push(smalls);
    }
    out.extend(larges.into_iter().map(|ch| vec![ch]));
    out
}

/// A group [`batches`] put together, applied in one call to the host.
fn apply_batch(host: &dyn Host, want: &Desired, batch: &[&Change]) -> HostResult<()> {
    match batch[0] {
        Change::CreateDir { .. } => {
            let dirs: Vec<(&str, &str)> = batch
                .iter()
                .filter_map(|ch| match ch {
                    Change::CreateDir { path, mode } => Some((path.as_str(), mode.as_str())),
                    _ => None,
                })
                .collect();
            host.create_dirs(&dirs)
        }
        Change::Enable { .. } => {
            let units = batch.iter().filter_map(|ch| match ch {
                Change::Enable { unit } => Some(unit.as_str()),
                _ => None,
            });
            host.check(&Cmd::new(["systemctl", "enable"].into_iter().chain(units)))
                .map(drop)
        }
        _ => {
            let mut files = Vec::new();
            for ch in batch {
                let Change::WriteFile { path, .. } = ch else {
                    continue;
                };
                let (blob, mode, owner) = wanted_file(want, path).expect("planned from want");
                files.push(crate::host::NewFile {
                    path,
                    data: blob_bytes(host, path, blob)?,
                    mode,
                    owner,
                });
            }
            host.write_files(&files)
        }
    }
}

/// The file `path` as `want` has it: its bytes, mode and owner (a unit file: [`UNIT_MODE`],
/// root).
fn wanted_file<'w>(want: &'w Desired, path: &str) -> Option<(&'w crate::blob::Blob, u32, &'w str)> {
    match want.files.iter().find(|f| f.path == path) {
        Some(f) => Some((&f.content, f.mode, f.owner.as_str())),
        None => want
            .units
            .iter()
            .find(|u| u.path() == path)
            .map(|u| (&u.file, UNIT_MODE, "root")),
    }
}

/// The bytes of a file to write: a large one is read from the hypervisor's disk only here.
fn blob_bytes<'b>(host: &dyn Host, path: &str, b: &'b crate::blob::Blob) -> HostResult<&'b [u8]> {
    b.data().map_err(|e| HostError::Io {
        node: host.name().to_string(),
        what: format!("write {path}"),
        reason: e.to_string(),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("interrupted after {applied} change(s)")]
    Cancelled { applied: usize },
    #[error("{error}")]
    Host { applied: usize, error: HostError },
}

fn apply_one(host: &dyn Host, want: &Desired, ch: &Change) -> HostResult<()> {
    match ch {
        Change::CreateDir { path, mode } => host.create_dirs(&[(path, mode)])?,
        Change::ChmodDir { path, to, .. } => {
            host.check(&Cmd::new(["chmod", to, path]))?;
        }
        Change::WriteFile { path, .. } => {
            if let Some((blob, mode, owner)) = wanted_file(want, path) {
                host.write_file(path, blob_bytes(host, path, blob)?, mode, owner)?;
            }
        }
        Change::Run { what } | Change::RunAfter { what } => {
            let c = want
                .commands
                .iter()
                .find(|c| c.what == *what)
                .expect("planned from want");
            host.check(&c.run)?;
        }
        Change::DaemonReload => {
            host.check(&Cmd::new(["systemctl", "daemon-reload"]))?;
        }
        Change::Enable { unit } => {
            host.check(&Cmd::new(["systemctl", "enable", unit]))?;
        }
        Change::Reenable { unit, .. } => {
            host.check(&Cmd::new(["systemctl", "reenable", unit]))?;
        }
        Change::Start { unit } | Change::Restart { unit, .. } | Change::Reload { unit, .. } => {
            let verb = match ch {
                Change::Start { .. } => "start",
                Change::Reload { .. } => "reload",
                _ => "restart",
            };
            let no_block = want.units.iter().any(|u| u.name == *unit && u.no_block);
            let mut c = Cmd::new(["systemctl", verb]);
            if no_block {
                c = c.arg("--no-block");
            }
            host.check(&c.arg(unit.as_str()))?;
        }
        // Never in a node plan: hypervisor steps apply their own changes through `hv::Gate`.
        _ => {}
    }
    Ok(())
}
