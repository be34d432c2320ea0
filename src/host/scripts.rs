//! The shell scripts hosts reached by command run (stat + hash, units, atomic write) and the
//! parsers of what they print.

use std::collections::BTreeMap;

use super::{Stat, shell_quote};

/// The shell script behind `stat_many` on hosts reached by command (SSH). Two processes whatever
/// the number of paths (`stat` and `awk`; fork is slow in emulated VMs), and `sha256sum` only
/// when a file must be hashed: dangling links
/// (`O|path`), one `stat` for all (`S|type|mode|owner|path`), then `--`, then each regular
/// file's identity (`K|size:inode:mtime:ctime|path`, nanoseconds) and the sha256 (`sha256sum`
/// lines) of those whose identity is not in `$known` (`key|path` lines the caller remembers
/// with their digest): an unchanged binary of hundreds of MB is not read again.
pub const STAT_SCRIPT: &str = r#"for p in "$@"; do if [ -L "$p" ] && [ ! -e "$p" ]; then echo "O|$p"; fi; done
stat -L -c 'S|%F|%a|%U|%s:%i:%.9Y:%.9Z|%n' -- "$@" 2>/dev/null | awk -v known="${known-}" '
BEGIN { n = split(known, L, "\n"); for (i = 1; i <= n; i++) k[L[i]] = 1; FS = "|" }
{ p = $0; for (i = 0; i < 5; i++) p = substr(p, index(p, "|") + 1)
  print $1 "|" $2 "|" $3 "|" $4 "|" p
  if ($2 == "regular file" || $2 == "regular empty file") {
    K[++nk] = "K|" $5 "|" p; if (!(($5 "|" p) in k)) H[++nh] = p } }
END { print "--"; for (i = 1; i <= nk; i++) print K[i]
  if (nh) { fflush(); c = "xargs -r -d \"\\n\" sha256sum -- 2>/dev/null"; for (i = 1; i <= nh; i++) print H[i] | c; close(c) } }'
exit 0"#;

/// What a host remembers of the files it hashed: path → (identity from [`STAT_SCRIPT`], sha256).
pub type Digests = BTreeMap<String, (String, String)>;

/// The shell line that hands [`STAT_SCRIPT`] the identities already known for `paths`.
pub fn known_line(known: &Digests, paths: &[String]) -> String {
    let lines: Vec<String> = paths
        .iter()
        .filter_map(|p| known.get(p).map(|(key, _)| format!("{key}|{p}")))
        .collect();
    format!("known={}\n", shell_quote(&lines.join("\n")))
}

/// The shell script that reads many systemd units' state in one round trip: one line per
/// unit, `UNIT ENABLED ACTIVE` (systemctl's words, `unknown` when it printed nothing).
/// One `systemctl show` for all of them (every process is slow on an emulated guest); a unit
/// systemd does not know is `not-found`.
pub const UNITS_SCRIPT: &str = r#"systemctl show --property=LoadState,UnitFileState,ActiveState -- "$@" 2>/dev/null | awk -v names="$*" '
BEGIN { n = split(names, N, " ") }
function out() { if (seen) { i++; e = uf != "" ? uf : (ls == "not-found" ? "not-found" : "unknown"); print N[i], e, (as != "" ? as : "unknown") }; seen = 0; ls = uf = as = "" }
/^$/ { out(); next }
{ seen = 1; k = $0; sub(/=.*/, "", k); v = $0; sub(/^[^=]*=/, "", v) }
k == "LoadState" { ls = v } k == "UnitFileState" { uf = v } k == "ActiveState" { as = v }
END { out(); while (i < n) { i++; print N[i], "unknown", "unknown" } }'"#;

/// Parse [`STAT_SCRIPT`]'s output for `paths`, in their order, with the digests it was told
/// (`known`); also every regular file's (identity, sha256), to remember.
pub fn parse_stat_output(
    text: &str,
    paths: &[String],
    known: &Digests,
) -> Option<(Vec<Stat>, Digests)> {
    let (stats, sums) = text
        .split_once("\n--\n")
        .or_else(|| text.strip_suffix("--\n").map(|s| (s, "")))?;
    let mut hashes = std::collections::HashMap::new();
    let mut keys = std::collections::HashMap::new();
    for l in sums.lines() {
        if let Some(r) = l.strip_prefix("K|") {
            let (key, path) = r.split_once('|')?;
            keys.insert(path.to_string(), key.to_string());
            continue;
        }
        let (sha, path) = l.split_once("  ")?;
        hashes.insert(path.to_string(), sha.to_string());
    }
    let mut learned = Digests::new();
    let mut by_path = std::collections::HashMap::new();
    for l in stats.lines() {
        if let Some(p) = l.strip_prefix("O|") {
            by_path.insert(p.to_string(), Stat::Other);
            continue;
        }
        let f: Vec<&str> = l.splitn(5, '|').collect();
        let ["S", kind, mode, owner, path] = f.as_slice() else {
            return None;
        };
        let mode = u32::from_str_radix(mode, 8).ok()?;
        let st = match *kind {
            "directory" => Stat::Dir {
                mode,
                owner: owner.to_string(),
            },
            "regular file" | "regular empty file" => {
                let key = keys.get(*path)?;
                let sha = match hashes.get(*path) {
                    Some(sha) => sha.clone(),
                    // Not hashed: the script found it as it was when hashed before.
                    None => match known.get(*path) {
                        Some((k, sha)) if k == key => sha.clone(),
                        _ => return None,
                    },
                };
                learned.insert(path.to_string(), (key.clone(), sha.clone()));
                Stat::File {
                    mode,
                    owner: owner.to_string(),
                    sha256: sha,
                }
            }
            _ => Stat::Other,
        };
        by_path.insert(path.to_string(), st);
    }
    Some((
        paths
            .iter()
            .map(|p| by_path.get(p).cloned().unwrap_or(Stat::Missing))
            .collect(),
        learned,
    ))
}

/// The shell script behind `write_file` on hosts reached by command: data on stdin, written to
/// a temp file next to the target, fsynced, given mode and owner, renamed over the target; then
/// the file's identity as [`STAT_SCRIPT`] prints it (`K|size:inode:mtime:ctime`), so the host
/// remembers the digest of what it wrote and the next plan need not read the file back.
pub const WRITE_SCRIPT: &str = r#"set -e
t="$(dirname "$1")/.$(basename "$1").kubicluster-tmp"
trap 'rm -f "$t"' EXIT
umask 077
cat > "$t"
chmod "$2" "$t"
chown "$3" "$t"
sync "$t" 2>/dev/null || sync
mv -f "$t" "$1"
trap - EXIT
stat -L -c 'K|%s:%i:%.9Y:%.9Z' -- "$1" 2>/dev/null || true"#;

/// The identity [`WRITE_SCRIPT`] printed for the file it wrote.
pub fn written_identity(stdout: &str) -> Option<String> {
    stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("K|"))
        .map(|k| k.trim().to_string())
        .filter(|k| k.split(':').count() == 4)
}

/// A file for [`super::Host::write_files`].
#[derive(Debug, Clone, Copy)]
pub struct NewFile<'a> {
    pub path: &'a str,
    pub data: &'a [u8],
    pub mode: u32,
    pub owner: &'a str,
}

/// The temp file [`WRITE_SCRIPT`] and [`write_many`] write before the rename: hidden, next to
/// the target (same file system, so the rename is atomic).
pub fn temp_path(path: &str) -> String {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    format!("{dir}/.{name}.kubicluster-tmp")
}

/// Many files in one round trip, as [`WRITE_SCRIPT`] writes one: a tar stream on stdin holds
/// each file under its temp name with its mode (unpacked by one `tar`), then one `chown` per
/// owner, one `sync`, a rename each, and one `stat` printing each file's identity
/// (`K|identity|path`). Four processes plus one per file, where one file at a time costs nine
/// and a round trip each (every process is slow in an emulated guest). A parent directory that
/// does not exist fails the script, as with one file (tar would make it, with another mode).
/// Returns (script, stdin).
pub fn write_many(files: &[NewFile<'_>]) -> std::io::Result<(String, Vec<u8>)> {
    let q = |s: &str| shell_quote(s);
    let temps: Vec<String> = files.iter().map(|f| temp_path(f.path)).collect();
    let all_temps: Vec<String> = temps.iter().map(|t| q(t)).collect();
    let mut tar = tar::Builder::new(Vec::new());
    for (f, t) in files.iter().zip(&temps) {
        let mut h = tar::Header::new_gnu();
        h.set_size(f.data.len() as u64);
        h.set_mode(f.mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, t.trim_start_matches('/'), f.data)?;
    }
    let stdin = tar.into_inner()?;
    let mut s = String::from("set -e\numask 077\n");
    let mut dirs: Vec<&str> = files
        .iter()
        .map(|f| f.path.rsplit_once('/').map_or("/", |(d, _)| d))
        .map(|d| if d.is_empty() { "/" } else { d })
        .collect();
    dirs.sort_unstable();
    dirs.dedup();
    for d in dirs {
        let d = q(d);
        s.push_str(&format!(
            "[ -d {d} ] || {{ echo \"no directory \"{d} >&2; exit 1; }}\n"
        ));
    }
    s.push_str(&format!(
        "clean() {{ rm -f -- {}; }}\ntrap clean EXIT\n",
        all_temps.join(" ")
    ));
    s.push_str("tar -x -p -m --no-same-owner -C / -f -\n");
    let mut owners: Vec<&str> = files.iter().map(|f| f.owner).collect();
    owners.sort_unstable();
    owners.dedup();
    for o in owners {
        let mine: Vec<&str> = files
            .iter()
            .zip(&all_temps)
            .filter(|(f, _)| f.owner == o)
            .map(|(_, t)| t.as_str())
            .collect();
        s.push_str(&format!("chown {} -- {}\n", q(o), mine.join(" ")));
    }
    s.push_str(&format!(
        "sync -- {} 2>/dev/null || sync\n",
        all_temps.join(" ")
    ));
    for (f, t) in files.iter().zip(&all_temps) {
        s.push_str(&format!("mv -f -- {t} {}\n", q(f.path)));
    }
    s.push_str("trap - EXIT\n");
    let paths: Vec<String> = files.iter().map(|f| q(f.path)).collect();
    s.push_str(&format!(
        "stat -L -c 'K|%s:%i:%.9Y:%.9Z|%n' -- {} 2>/dev/null || true",
        paths.join(" ")
    ));
    Ok((s, stdin))
}

/// The identities [`write_many`]'s script printed, by path.
pub fn written_identities(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("K|")?.split_once('|'))
        .filter(|(k, _)| k.split(':').count() == 4)
        .map(|(k, p)| (p.to_string(), k.to_string()))
        .collect()
}

/// The script that creates directories given as (path, mode) argument pairs, in one round
/// trip: `mkdir -p -m`, then `chmod` (mkdir -m leaves an existing path's mode, and the umask
/// limits the parents -p makes).
pub const MKDIRS_SCRIPT: &str = r#"set -e
while [ $# -gt 1 ]; do mkdir -p -m "$2" -- "$1"; chmod "$2" -- "$1"; shift 2; done"#;
