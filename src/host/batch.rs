//! Many reads in one round trip: the engine's probe (guards, units, stat + sha256 of paths) and
//! batches of read-only commands, each a single shell script on hosts reached by command.

use std::time::Duration;

use super::{
    Cmd, DEFAULT_TIMEOUT, Host, HostError, HostResult, STAT_SCRIPT, Stat, UNITS_SCRIPT, known_line,
    parse_stat_output, shell_quote,
};

/// What [`Host::probe`] read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    pub checks: Vec<bool>,
    /// (unit, enabled word, active word), as systemd says them.
    pub units: Vec<(String, String, String)>,
    pub stats: Vec<Stat>,
}

/// Each unit's (name, enabled word, active word), read with [`UNITS_SCRIPT`] in one call.
pub fn read_units<H: Host + ?Sized, S: AsRef<str>>(
    host: &H,
    units: &[S],
) -> HostResult<Vec<(String, String, String)>> {
    if units.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<&str> = units.iter().map(|u| u.as_ref()).collect();
    Ok(parse_units(
        &host.run(&Cmd::script(UNITS_SCRIPT, names))?.stdout_text(),
    ))
}

/// The longest timeout of `cmds` (a batch of them may take that long).
fn longest_timeout(cmds: &[Cmd]) -> Duration {
    cmds.iter()
        .map(|c| c.timeout)
        .max()
        .unwrap_or(DEFAULT_TIMEOUT)
}

/// [`UNITS_SCRIPT`]'s lines.
pub fn parse_units(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((
                f.next()?.to_string(),
                f.next()?.to_string(),
                f.next()?.to_string(),
            ))
        })
        .collect()
}

/// [`Host::probe`] in one round trip: the checks (as in [`batch_checks`]), then the units'
/// script, then the stat script, each on its own values, in one shell script. Falls back to
/// one call each when a check cannot be batched.
pub fn probe_at_once(
    host: &dyn Host,
    checks: &[Cmd],
    units: &[String],
    paths: &[String],
) -> HostResult<Probe> {
    probe_reading_at_once(host, &[], checks, units, paths).map(|(_, p)| p)
}

/// [`probe_at_once`] that also runs the read-only commands `reads` first, in the same round
/// trip, and returns each one's (exit 0?, stdout) (the facts a run's plans depend on).
pub fn probe_reading_at_once(
    host: &dyn Host,
    reads: &[Cmd],
    checks: &[Cmd],
    units: &[String],
    paths: &[String],
) -> HostResult<(Vec<(bool, String)>, Probe)> {
    if !checks.iter().all(batchable) || !reads.iter().all(batchable) {
        let outs = run_all(host, reads)?;
        return Ok((
            outs,
            Probe {
                checks: checks
                    .iter()
                    .map(|c| host.run(c).map(|o| o.ok()))
                    .collect::<HostResult<_>>()?,
                units: read_units(host, units)?,
                stats: host.stat_many(paths)?,
            },
        ));
    }
    let set = |values: &[String]| -> String {
        let q: Vec<String> = values.iter().map(|v| shell_quote(v)).collect();
        format!("set -- {}\n", q.join(" "))
    };
    let mut script = reads_script(reads);
    script.push_str("echo =checks=\n");
    for c in checks {
        script.push_str(&format!(
            "{} </dev/null >/dev/null 2>&1; echo \"C|$?\"\n",
            c.batch_line()
        ));
    }
    script.push_str("echo =units=\n");
    script.push_str(&set(units));
    script.push_str(&format!("if [ $# -gt 0 ]; then\n{UNITS_SCRIPT}\nfi\n"));
    script.push_str("echo =stat=\n");
    let known = host.known_digests();
    script.push_str(&known_line(&known, paths));
    script.push_str(&set(paths));
    script.push_str(&format!("if [ $# -gt 0 ]; then\n{STAT_SCRIPT}\nfi\n"));
    let mut cmd = Cmd::new(["sh", "-c", &script]);
    cmd.timeout = longest_timeout(checks);
    let out = host.check(&cmd)?;
    let text = out.stdout_text();
    let bad = |what: &str| HostError::Io {
        node: host.name().to_string(),
        what: format!("probe ({what})"),
        reason: format!("unexpected answer: {}", out.tail(3)),
    };
    let (read, after) = parse_reads(&text, reads.len()).ok_or_else(|| bad("reads"))?;
    let (_, text) = text[after..]
        .split_once("=checks=\n")
        .ok_or_else(|| bad("reads"))?;
    let (head, rest) = text.split_once("=units=\n").ok_or_else(|| bad("checks"))?;
    let (unit_text, stat_text) = rest.split_once("=stat=\n").ok_or_else(|| bad("units"))?;
    let codes: Vec<bool> = head
        .lines()
        .filter_map(|l| l.strip_prefix("C|"))
        .map(|c| c.trim() == "0")
        .collect();
    if codes.len() != checks.len() {
        return Err(bad("checks"));
    }
    let stats = if paths.is_empty() {
        Vec::new()
    } else {
        let (stats, learned) =
            parse_stat_output(stat_text, paths, &known).ok_or_else(|| bad("stat"))?;
        host.remember_digests(learned);
        stats
    };
    Ok((
        read,
        Probe {
            checks: codes,
            units: parse_units(unit_text),
            stats,
        },
    ))
}

/// [`Host::probe_reading`] as separate calls: each read, then the probe.
pub fn reads_then_probe<H: Host + ?Sized>(
    host: &H,
    reads: &[Cmd],
    checks: &[Cmd],
    units: &[String],
    paths: &[String],
) -> HostResult<(Vec<(bool, String)>, Probe)> {
    Ok((run_each(host, reads)?, host.probe(checks, units, paths)?))
}

/// Run read-only commands in one round trip: each one's exit status (0?) and stdout, in order.
/// Commands that cannot be batched (stdin, a secret) run one by one.
pub fn run_all(host: &dyn Host, cmds: &[Cmd]) -> HostResult<Vec<(bool, String)>> {
    if cmds.len() < 2 || !cmds.iter().all(batchable) {
        return run_each(host, cmds);
    }
    let mut cmd = Cmd::new(["sh", "-c", &reads_script(cmds)]);
    cmd.timeout = longest_timeout(cmds);
    let text = host.check(&cmd)?.stdout_text();
    parse_reads(&text, cmds.len())
        .map(|(out, _)| out)
        .ok_or_else(|| HostError::Io {
            node: host.name().to_string(),
            what: "batch of reads".into(),
            reason: format!(
                "unexpected answer: {}",
                text.chars().take(200).collect::<String>()
            ),
        })
}

/// Each command run on its own: its (exit 0?, stdout), in order.
fn run_each<H: Host + ?Sized>(host: &H, cmds: &[Cmd]) -> HostResult<Vec<(bool, String)>> {
    cmds.iter()
        .map(|c| host.run(c).map(|o| (o.ok(), o.stdout_text())))
        .collect()
}

/// The script part that runs read-only commands one after another, each output framed by
/// `=out I=` and `=rc CODE=` lines ([`parse_reads`]).
fn reads_script(cmds: &[Cmd]) -> String {
    let mut script = String::new();
    for (i, c) in cmds.iter().enumerate() {
        script.push_str(&format!(
            "echo '=out {i}='\n{} </dev/null 2>/dev/null; echo \"\n=rc $?=\"\n",
            c.batch_line()
        ));
    }
    script
}

/// [`reads_script`]'s answers for `n` commands: each one's (exit 0?, stdout), and where in
/// `text` the last one's frame ends.
fn parse_reads(text: &str, n: usize) -> Option<(Vec<(bool, String)>, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    for i in 0..n {
        let mark = format!("=out {i}=\n");
        let start = at + text[at..].find(&mark)? + mark.len();
        let end = start + text[start..].find("\n=rc ")?;
        let code_start = end + "\n=rc ".len();
        let code_len = text[code_start..].find('=')?;
        out.push((
            text[code_start..code_start + code_len].trim() == "0",
            text[start..end].to_string(),
        ));
        at = code_start + code_len + 1;
    }
    Some((out, at))
}

/// Whether a command can run inside a batch script: no stdin, and no secret argument (it would
/// end up in the script's text, and so in the debug log).
fn batchable(c: &Cmd) -> bool {
    c.stdin.is_none() && c.argv.iter().all(|a| !a.secret)
}

/// [`Host::check_all`] in one round trip (the checks part of [`probe_at_once`]).
pub fn batch_checks(host: &dyn Host, cmds: &[Cmd]) -> HostResult<Vec<bool>> {
    if cmds.len() < 2 {
        return cmds.iter().map(|c| host.run(c).map(|o| o.ok())).collect();
    }
    Ok(probe_at_once(host, cmds, &[], &[])?.checks)
}
