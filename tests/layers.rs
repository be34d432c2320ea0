//! The layering of `../shared/ARCHITECTURE.md`, checked on the source: which top-level module
//! may use which. Read from `crate::<module>` paths in `src/` (comments and `#[cfg(test)]`
//! modules left out: tests may reach anywhere). Two rules: no cycle between top-level modules,
//! and the lower layers never reach up (the engine never into a concrete step, the artifacts and
//! the PKI never into the engine or the transports, the spec into nothing that acts, the
//! transports never into the spec, the hypervisor never into the VMs' SSH pins).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn src() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// module → used module → the files under `src` that use it.
fn graph(src: &Path) -> Graph {
    let src = src.to_path_buf();
    let mut modules = BTreeSet::new();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let m = name.strip_suffix(".rs").unwrap_or(&name).to_string();
        if m != "main" && m != "lib" {
            modules.insert(m);
        }
    }
    let mut g: Graph = modules
        .iter()
        .map(|m| (m.clone(), BTreeMap::new()))
        .collect();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            let file = p.file_name().unwrap().to_string_lossy().into_owned();
            if !rel.ends_with(".rs") || file == "tests.rs" || file.ends_with("_tests.rs") {
                continue;
            }
            let own = rel.split('/').next().unwrap().trim_end_matches(".rs");
            if !modules.contains(own) {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
            for line in code.lines() {
                let line = line.split("//").next().unwrap();
                for (i, _) in line.match_indices("crate::") {
                    let used: String = line[i + 7..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if used != own && modules.contains(&used) {
                        g.get_mut(own)
                            .unwrap()
                            .entry(used)
                            .or_default()
                            .insert(rel.clone());
                    }
                }
            }
        }
    }
    g
}

/// A path from `to` back to `from` through the graph, if there is one.
fn path_back(g: &Graph, from: &str, to: &str) -> Option<Vec<String>> {
    let mut seen = BTreeSet::new();
    let mut queue = std::collections::VecDeque::from([vec![to.to_string()]]);
    while let Some(path) = queue.pop_front() {
        let last = path.last().unwrap();
        if last == from {
            return Some(path);
        }
        for next in g[last].keys() {
            if seen.insert(next.clone()) {
                let mut p = path.clone();
                p.push(next.clone());
                queue.push_back(p);
            }
        }
    }
    None
}

#[test]
fn no_cycle_between_top_level_modules() {
    let g = graph(&src());
    assert!(g.len() > 20, "modules found: {:?}", g.keys());
    let cycles = cycles(&g);
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

fn cycles(g: &Graph) -> Vec<String> {
    let mut cycles = Vec::new();
    for (m, uses) in g {
        for (used, files) in uses {
            if let Some(back) = path_back(g, m, used) {
                cycles.push(format!(
                    "{m} → {} (first in {})",
                    back.join(" → "),
                    files.iter().next().unwrap()
                ));
            }
        }
    }
    cycles
}

#[test]
fn lower_layers_never_reach_up() {
    let broken = reaching_up(&graph(&src()));
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
}

fn reaching_up(g: &Graph) -> Vec<String> {
    let rules: &[(&str, &[&str])] = &[
        ("blob", &["*"]),
        ("fsutil", &["*"]),
        (
            "spec",
            &[
                "engine",
                "steps",
                "commands",
                "cli",
                "pki",
                "artifacts",
                "host",
                "hypervisor",
                "vms",
            ],
        ),
        ("host", &["spec", "engine", "steps", "vms", "commands"]),
        (
            "hypervisor",
            &["vms", "host", "engine", "steps", "commands"],
        ),
        ("artifacts", &["engine", "host", "steps", "vms", "commands"]),
        ("pki", &["engine", "host", "steps", "vms", "commands"]),
        ("engine", &["steps", "commands", "cli"]),
        ("steps", &["commands", "cli"]),
        ("vms", &["steps", "commands", "cli"]),
    ];
    let mut broken = Vec::new();
    for (lower, never) in rules {
        for (used, files) in g.get(*lower).into_iter().flatten() {
            if never.contains(&"*") || never.contains(&used.as_str()) {
                broken.push(format!("{lower} uses {used} in {files:?}"));
            }
        }
    }
    broken
}

/// The checks themselves: a tree with an engine that uses a step and a step that uses the
/// engine is caught by both (a cycle, and the engine reaching up), comments and tests aside.
#[test]
fn a_forbidden_use_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let write = |p: &str, text: &str| {
        let p = tmp.path().join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write("lib.rs", "pub mod engine;\npub mod steps;\npub mod spec;\n");
    write(
        "engine/mod.rs",
        "use crate::spec::Cluster;\npub struct Cx(crate::steps::Inputs);\n",
    );
    write(
        "steps.rs",
        "use crate::engine::Cx; // crate::cli::Nothing in a comment\n",
    );
    write(
        "spec/mod.rs",
        "pub struct Cluster;\n#[cfg(test)]\nmod tests {\n    use crate::engine::Cx;\n}\n",
    );
    write("spec/tests.rs", "use crate::steps::Anything;\n");
    let g = graph(tmp.path());
    assert_eq!(g["spec"].len(), 0, "tests are left out: {g:?}");
    assert_eq!(
        g["steps"].keys().collect::<Vec<_>>(),
        ["engine"],
        "comments are left out"
    );
    let c = cycles(&g);
    assert!(
        c.iter().any(|l| l.starts_with("engine → steps → engine")),
        "{c:?}"
    );
    let r = reaching_up(&g);
    assert_eq!(r, ["engine uses steps in {\"engine/mod.rs\"}"]);
}
