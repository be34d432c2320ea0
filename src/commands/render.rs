//! `kubicluster render [--out DIR] [NODE…]`: every file kubicluster would place on each node,
//! written to `DIR/<node>/<absolute path>` with the mode it gets there, the guarded commands to
//! `DIR/<node>/COMMANDS`, and every object applied through the Kubernetes API to
//! `DIR/api/<kind>-<name>.yaml`. It is the engine's own plan and apply onto a [`DirHost`] per
//! node (a fresh node rooted at `DIR/<node>`), so it writes what a run writes — directories and
//! files with their modes, the commands in the order a run runs them, in full. Touches no host
//! and no network: binaries are not fetched (and not written); the PKI is read from the work dir.
//!
//! DIR belongs to the user until proven otherwise: it is created (0700: it holds private keys)
//! when absent, used when empty (its own mode left alone), and replaced whole when it holds an
//! earlier render (marked by `.kubicluster-render`); any other directory, a file or a dangling
//! link is refused. The output is made in a hidden sibling and moved into place at the end, so a
//! failure half-way leaves DIR as it was.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};

use super::Ctx;
use crate::cli::RenderArgs;
use crate::engine::{Change, Cx, plan};
use crate::error::Failure;
use crate::fsutil;
use crate::host::dir::DirHost;
use crate::steps::{self, Inputs, install_addons};
use std::sync::atomic::AtomicBool;

fn write(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
    }
    fsutil::write_atomic(path, data, mode)
}

pub fn run(ctx: &mut Ctx, args: &RenderArgs) -> Result<()> {
    let (cluster, _) = ctx.cluster(&args.spec)?;
    let unknown: Vec<&String> = args
        .nodes
        .iter()
        .filter(|n| cluster.node(n).is_none())
        .collect();
    if !unknown.is_empty() {
        return Err(Failure::bad_input(format!(
            "not nodes of cluster {}: {unknown:?}",
            cluster.name
        ))
        .hint("`kubicluster validate` lists the nodes")
        .into());
    }
    let pki = Inputs::load_pki(&cluster)?;
    if pki.is_empty() {
        return Err(Failure::bad_input(format!("no PKI in {}", cluster.certs_dir().display()))
            .hint("run `kubicluster cnc` first (render reads the certificates, it never makes them)")
            .into());
    }
    let cx = Arc::new(Cx::new(
        cluster.clone(),
        BTreeMap::new(),
        Inputs {
            pki,
            artifacts: None,
            images: Vec::new(),
        },
    ));
    let dest = OutDir::inspect(&args.out)?;
    let staging = dest.staging()?;
    let rendered = render_into(&cx, &cluster, &args.nodes, &staging);
    let (files, nodes) = match rendered {
        Ok(v) => v,
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    dest.commit(&staging)?;
    ctx.printer.status(&format!(
        "render: {files} file(s) for {} node(s) and the API in {} ({}); binaries are not included",
        nodes.len(),
        args.out.display(),
        match dest.kind {
            Kind::Empty => "the directory's own mode left as it is; keys are 0600",
            _ => "mode 0700: it holds private keys",
        }
    ));
    Ok(())
}

/// The file that marks a directory as `render`'s own output.
const MARKER: &str = ".kubicluster-render";

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Absent,
    Empty,
    Ours,
}

/// Where the output goes and what is there now.
struct OutDir {
    path: PathBuf,
    kind: Kind,
}

impl OutDir {
    fn inspect(out: &Path) -> Result<OutDir> {
        let refuse = |what: String| -> anyhow::Error {
            Failure::bad_input(format!("render --out {}: {what}", out.display()))
                .hint("name a new or empty directory, or one an earlier `kubicluster render` wrote (it is replaced whole)")
                .into()
        };
        let meta = match fs::symlink_metadata(out) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(refuse(format!("cannot inspect it: {e}"))),
            Ok(m) => Some(m),
        };
        let kind = match meta {
            None => Kind::Absent,
            Some(m) => {
                let target = fs::metadata(out);
                if m.file_type().is_symlink() && target.is_err() {
                    return Err(refuse("a symbolic link to nothing (dangling)".into()));
                }
                if !target.as_ref().is_ok_and(|t| t.is_dir()) {
                    return Err(refuse("exists and is a file, not a directory".into()));
                }
                let mut entries = fs::read_dir(out)
                    .map_err(|e| refuse(format!("cannot read it: {e}")))?
                    .filter_map(|e| e.ok().map(|e| e.file_name()))
                    // what a killed render left inside an empty directory (removed below)
                    .filter(|n| !n.to_string_lossy().starts_with(".render-new-"));
                match entries.next() {
                    None => Kind::Empty,
                    Some(_) if out.join(MARKER).is_file() => Kind::Ours,
                    Some(_) => {
                        return Err(refuse(
                            "not empty and not written by `kubicluster render` (left untouched)"
                                .into(),
                        ));
                    }
                }
            }
        };
        // Work on the real directory a link points at; its name is what gets replaced.
        let path = if kind == Kind::Absent {
            std::path::absolute(out)?
        } else {
            fs::canonicalize(out)?
        };
        if kind == Kind::Ours && path.parent().is_none() {
            return Err(refuse("the root directory".into()));
        }
        Ok(OutDir { path, kind })
    }

    fn sibling(&self, what: &str) -> PathBuf {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent = self.path.parent().unwrap_or(Path::new("/"));
        parent.join(format!(".{name}.render-{what}-{}", std::process::id()))
    }

    /// A fresh hidden sibling to render into (stale ones of killed runs are removed first).
    fn staging(&self) -> Result<PathBuf> {
        if let Some(parent) = self.path.parent() {
            fsutil::ensure_dir(parent, fsutil::PRIVATE_DIR)?;
            remove_stale(parent, &self.path)?;
        }
        let tmp = match self.kind {
            // An empty directory's entries are moved in; the staging dir sits inside it.
            Kind::Empty => self
                .path
                .join(format!(".render-new-{}", std::process::id())),
            _ => self.sibling("new"),
        };
        fsutil::ensure_dir(&tmp, fsutil::PRIVATE_DIR)?;
        fsutil::write_atomic(
            &tmp.join(MARKER),
            b"written by `kubicluster render`; the next render replaces this directory whole\n",
            fsutil::PUBLIC,
        )?;
        Ok(tmp)
    }

    /// Put the staged output in place: rename (absent), swap (an earlier render), or move the
    /// entries in, the marker first (an empty directory of the user's).
    fn commit(&self, staging: &Path) -> Result<()> {
        let ctx = || format!("move the render into {}", self.path.display());
        match self.kind {
            Kind::Absent => fs::rename(staging, &self.path).with_context(ctx)?,
            Kind::Ours => {
                let old = self.sibling("old");
                fs::rename(&self.path, &old).with_context(ctx)?;
                fs::rename(staging, &self.path).with_context(ctx)?;
                fs::remove_dir_all(&old)
                    .with_context(|| format!("remove the earlier render {}", old.display()))?;
            }
            Kind::Empty => {
                fs::rename(staging.join(MARKER), self.path.join(MARKER)).with_context(ctx)?;
                for e in fs::read_dir(staging)? {
                    let e = e?;
                    fs::rename(e.path(), self.path.join(e.file_name())).with_context(ctx)?;
                }
                fs::remove_dir(staging).with_context(ctx)?;
            }
        }
        Ok(())
    }
}

/// Remove `.NAME.render-{new,old}-PID` siblings (and `.render-new-PID` inside) left by runs that
/// were killed: their process is gone.
fn remove_stale(parent: &Path, out: &Path) -> Result<()> {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dead = |pid: &str| {
        pid.parse::<u32>()
            .is_ok_and(|p| p != std::process::id() && !Path::new(&format!("/proc/{p}")).exists())
    };
    let prefixes = [
        format!(".{name}.render-new-"),
        format!(".{name}.render-old-"),
    ];
    for (dir, prefixes) in [
        (parent, &prefixes[..]),
        (out, &[".render-new-".to_string()][..]),
    ] {
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = prefixes.iter().find_map(|p| file.strip_prefix(p.as_str()))
                && dead(pid)
                && e.path().join(MARKER).is_file()
            {
                fs::remove_dir_all(e.path())
                    .with_context(|| format!("remove a killed render's {}", e.path().display()))?;
            }
        }
    }
    Ok(())
}

/// Every node's files, COMMANDS and the API objects under `out`; (files, nodes).
fn render_into(
    cx: &Arc<Cx>,
    cluster: &crate::spec::Cluster,
    only: &[String],
    out: &Path,
) -> Result<(usize, Vec<String>)> {
    let mut files = 0;
    let mut nodes: Vec<String> = Vec::new();
    let mut hosts: BTreeMap<String, DirHost> = BTreeMap::new();
    let never = AtomicBool::new(false);
    // The engine's own plan and apply, onto a directory per node: the same dirs, files, modes
    // and commands as a real run on a fresh node.
    for step in steps::node_steps() {
        for node in step.targets(cluster) {
            if !only.is_empty() && !only.contains(&node.name) {
                continue;
            }
            let want = step.desired(cx, node)?;
            let host = hosts
                .entry(node.name.clone())
                .or_insert_with(|| DirHost::new(&node.name, out.join(&node.name)));
            let changes = plan::plan(host, &want)?;
            plan::apply(host, &want, &changes, &never).map_err(|e| anyhow::anyhow!("{e}"))?;
            files += changes
                .iter()
                .filter(|c| matches!(c, Change::WriteFile { .. }))
                .count();
            let ran = host.take_commands();
            if !ran.is_empty() {
                let p = host.under("/COMMANDS");
                let mut text = fsutil::read_optional(&p)?
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                for c in &ran {
                    match want.commands.iter().find(|g| g.run == *c) {
                        Some(g) => text.push_str(&format!(
                            "# {} — {}\n# done when: {}\n{}\n\n",
                            step.name(),
                            g.what,
                            g.check.full_line(),
                            c.full_line()
                        )),
                        None => text.push_str(&format!("# {}\n{}\n\n", step.name(), c.full_line())),
                    }
                }
                write(&p, text.as_bytes(), fsutil::PUBLIC)?;
            }
            if !nodes.contains(&node.name) {
                nodes.push(node.name.clone());
            }
        }
    }
    for (name, text) in install_addons::manifests(cx)? {
        write(&out.join("api").join(name), text.as_bytes(), fsutil::PUBLIC)?;
        files += 1;
    }
    // The node directories hold keys: 0700 like the render itself.
    for d in nodes.iter().map(|n| out.join(n)).chain([out.join("api")]) {
        if d.is_dir() {
            fs::set_permissions(&d, fs::Permissions::from_mode(fsutil::PRIVATE_DIR))?;
        }
    }
    Ok((files, nodes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::FakeHost;
    use std::os::unix::fs::MetadataExt;

    /// `render` and a real apply are the same code, so they write the same bytes with the same
    /// modes: every step of the pipeline applied onto in-memory nodes (the engine's plan and
    /// apply, as over SSH) and rendered into a directory; every file and every directory a step
    /// declares compared, path, content and mode.
    #[test]
    fn render_writes_what_a_real_apply_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let ov = crate::spec::Overrides {
            work_dir: Some(tmp.path().join("work").display().to_string()),
            ..Default::default()
        };
        let cluster = crate::spec::resolve(None, &ov, &|_| None).unwrap().0;
        crate::pki::generate(&cluster, &Default::default()).unwrap();
        let cx = Arc::new(Cx::new(
            cluster.clone(),
            BTreeMap::new(),
            Inputs {
                pki: Inputs::load_pki(&cluster).unwrap(),
                artifacts: None,
                images: Vec::new(),
            },
        ));
        let out = tmp.path().join("out");
        let (files, nodes) = render_into(&cx, &cluster, &[], &out).unwrap();
        assert_eq!(nodes.len(), 3);
        let never = AtomicBool::new(false);
        let mut compared = 0;
        for name in &nodes {
            let node = cluster.node(name).unwrap();
            let fake = FakeHost::new(name).with(|s| {
                for d in [
                    "/etc",
                    "/etc/systemd",
                    "/etc/systemd/system",
                    "/var",
                    "/var/lib",
                ] {
                    s.dirs.insert(d.into(), 0o755);
                }
            });
            let mut declared = Vec::new();
            for step in steps::node_steps() {
                if !step.targets(&cluster).iter().any(|n| n.name == *name) {
                    continue;
                }
                let want = step.desired(&cx, node).unwrap();
                let changes = plan::plan(&fake, &want).unwrap();
                plan::apply(&fake, &want, &changes, &never).unwrap();
                declared.extend(want.dirs.iter().map(|d| d.path.clone()));
            }
            let s = fake.state.lock().unwrap();
            let root = out.join(name);
            // `systemctl enable`'s links are systemd's (the render lists the command).
            let links = |p: &str| {
                p.rsplit('/')
                    .nth(1)
                    .is_some_and(|d| d.ends_with(".wants") || d.ends_with(".requires"))
            };
            for (path, f) in s.files.iter().filter(|(p, _)| !links(p)) {
                let p = root.join(path.trim_start_matches('/'));
                let got = std::fs::read(&p).unwrap_or_else(|e| panic!("{name}:{path}: {e}"));
                assert!(got == f.data, "{name}:{path}: other bytes");
                let mode = std::fs::metadata(&p).unwrap().mode() & 0o7777;
                assert_eq!(mode, f.mode, "{name}:{path}: mode");
                compared += 1;
            }
            for path in &declared {
                let p = root.join(path.trim_start_matches('/'));
                let mode = std::fs::metadata(&p).unwrap().mode() & 0o7777;
                assert_eq!(mode, s.dirs[path], "{name}:{path}: directory mode");
            }
            // Nothing rendered that the apply did not write (COMMANDS is the render's own).
            let mut rendered = Vec::new();
            let mut todo = vec![root.clone()];
            while let Some(d) = todo.pop() {
                for e in std::fs::read_dir(&d).unwrap() {
                    let p = e.unwrap().path();
                    if p.is_dir() {
                        todo.push(p);
                    } else {
                        rendered.push(format!("/{}", p.strip_prefix(&root).unwrap().display()));
                    }
                }
            }
            rendered.retain(|p| p != "/COMMANDS");
            rendered.sort();
            assert_eq!(
                rendered,
                s.files
                    .keys()
                    .filter(|p| !links(p))
                    .cloned()
                    .collect::<Vec<_>>(),
                "{name}"
            );
        }
        // The API objects are files of the render too.
        assert!(files > compared, "{files} rendered, {compared} compared");
        assert!(compared >= 60, "{compared}");
    }
}
