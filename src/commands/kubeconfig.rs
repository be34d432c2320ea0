//! `kubicluster kubeconfig`: hand out the admin kubeconfig made by `cnc` — to stdout, to a file,
//! or merged into the user's kubeconfig (`--merge`, like kind): cluster, user and context named
//! after the cluster replace earlier entries of those names, every other entry is kept, the
//! context becomes current, and the file stays 0600.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_yaml_ng::{Mapping, Value};

use super::Ctx;
use crate::cli::KubeconfigArgs;
use crate::error::Failure;
use crate::fsutil;

pub fn run(ctx: &mut Ctx, args: &KubeconfigArgs) -> Result<()> {
    let (cluster, _) = ctx.cluster(&args.spec)?;
    let path = cluster.admin_kubeconfig();
    let Some(data) = fsutil::read_optional(&path)? else {
        return Err(Failure::new(format!("{} does not exist", path.display()))
            .hint("run `kubicluster cnc` (with the same cluster file and flags) first")
            .into());
    };
    if args.merge {
        let target = args
            .kubeconfig
            .clone()
            .or_else(default_kubeconfig)
            .context("no home directory: pass --kubeconfig PATH")?;
        let old = fsutil::read_optional(&target)?;
        let merged = merge(
            old.as_deref(),
            &String::from_utf8_lossy(&data),
            &cluster.name,
        )
        .map_err(|e| {
            Failure::new(format!("{}: {e:#}", target.display()))
                .hint("the file was left as it is; fix or move it and run again")
        })?;
        if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
            fsutil::ensure_dir(dir, fsutil::PRIVATE_DIR)?;
        }
        fsutil::write_atomic(&target, merged.as_bytes(), fsutil::SECRET)?;
        ctx.printer.status(&format!(
            "merged context {} into {} (mode 0600) and made it current; other contexts kept",
            cluster.name,
            target.display()
        ));
        return Ok(());
    }
    match &args.output {
        Some(out) => {
            fsutil::write_atomic(out, &data, fsutil::SECRET)?;
            ctx.printer.status(&format!(
                "wrote {} (mode 0600); use it with: export KUBECONFIG={}",
                out.display(),
                out.display()
            ));
        }
        None => ctx.printer.result(&String::from_utf8_lossy(&data)),
    }
    Ok(())
}

/// `$KUBECONFIG`'s first entry, else `~/.kube/config`.
fn default_kubeconfig() -> Option<PathBuf> {
    if let Some(k) = std::env::var_os("KUBECONFIG")
        && let Some(first) = std::env::split_paths(&k).next()
        && !first.as_os_str().is_empty()
    {
        return Some(first);
    }
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".kube").join("config"))
}

fn yaml_scalar(v: &Value) -> String {
    serde_yaml_ng::to_string(v)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn named(list: &Value, name: &str) -> Option<Value> {
    list.as_sequence()?
        .iter()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
        .cloned()
}

/// Merge the admin kubeconfig `ours` into `existing` under `name`.
pub fn merge(existing: Option<&[u8]>, ours: &str, name: &str) -> Result<String> {
    let ours: Value = serde_yaml_ng::from_str(ours).context("the admin kubeconfig")?;
    let mut doc: Value = match existing {
        Some(b) if !String::from_utf8_lossy(b).trim().is_empty() => {
            serde_yaml_ng::from_slice(b).context("not a kubeconfig (YAML)")?
        }
        _ => serde_yaml_ng::from_str("apiVersion: v1\nkind: Config\npreferences: {}\n")?,
    };
    let map = doc
        .as_mapping_mut()
        .context("not a kubeconfig (not a mapping)")?;
    let kubeconfig_keys = ["clusters", "contexts", "users", "current-context"];
    match map.get("kind") {
        Some(Value::String(k)) if k == "Config" => {}
        None if kubeconfig_keys.iter().any(|k| map.contains_key(*k)) => {}
        Some(k) => anyhow::bail!("not a kubeconfig (kind: {})", yaml_scalar(k)),
        None => {
            anyhow::bail!("not a kubeconfig (no `kind: Config`, no clusters, contexts or users)")
        }
    }
    let ctx = ours["contexts"][0]["context"].clone();
    let cluster_src = ctx["cluster"].as_str().unwrap_or_default().to_string();
    let user_src = ctx["user"].as_str().unwrap_or_default().to_string();
    let user_name = format!("{name}-admin");
    let mut entry = |key: &str, item: &str, body: Value, entry_name: &str| -> Result<()> {
        let list = map
            .entry(Value::from(key))
            .or_insert_with(|| Value::Sequence(Vec::new()));
        if list.is_null() {
            *list = Value::Sequence(Vec::new());
        }
        let seq = list
            .as_sequence_mut()
            .with_context(|| format!("{key} is not a list"))?;
        seq.retain(|e| e.get("name").and_then(Value::as_str) != Some(entry_name));
        let mut m = Mapping::new();
        m.insert("name".into(), entry_name.into());
        m.insert(item.into(), body);
        seq.push(Value::Mapping(m));
        Ok(())
    };
    let cluster_body = named(&ours["clusters"], &cluster_src)
        .map(|c| c["cluster"].clone())
        .context("the admin kubeconfig has no cluster entry")?;
    let user_body = named(&ours["users"], &user_src)
        .map(|u| u["user"].clone())
        .context("the admin kubeconfig has no user entry")?;
    entry("clusters", "cluster", cluster_body, name)?;
    entry("users", "user", user_body, &user_name)?;
    let mut c = Mapping::new();
    c.insert("cluster".into(), name.into());
    c.insert("user".into(), user_name.as_str().into());
    entry("contexts", "context", Value::Mapping(c), name)?;
    map.insert("current-context".into(), name.into());
    Ok(serde_yaml_ng::to_string(&doc)?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn merge_keeps_other_contexts_and_replaces_ours() {
        let ours = "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster: {server: 'https://192.168.24.11:6443', certificate-authority-data: Q0E=}\nusers:\n- name: admin\n  user: {client-certificate-data: Q0VSVA==, client-key-data: S0VZ}\ncontexts:\n- name: admin@lab\n  context: {cluster: lab, user: admin}\ncurrent-context: admin@lab\n";
        let existing = "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster: {server: 'https://10.0.0.1'}\n- name: lab\n  cluster: {server: 'https://stale'}\nusers:\n- name: other\n  user: {token: abc}\ncontexts:\n- name: other\n  context: {cluster: other, user: other}\ncurrent-context: other\n";
        let out = super::merge(Some(existing.as_bytes()), ours, "lab").unwrap();
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&out).unwrap();
        assert_eq!(v["current-context"], "lab");
        let names = |k: &str| -> Vec<String> {
            v[k].as_sequence()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(names("clusters"), ["other", "lab"]);
        assert_eq!(names("users"), ["other", "lab-admin"]);
        assert_eq!(names("contexts"), ["other", "lab"]);
        assert!(!out.contains("stale"), "{out}");
        assert!(out.contains("token: abc"), "{out}");
        // Twice is the same as once.
        assert_eq!(
            super::merge(Some(out.as_bytes()), ours, "lab").unwrap(),
            out
        );
        // From nothing.
        let fresh = super::merge(None, ours, "lab").unwrap();
        assert!(fresh.contains("current-context: lab"));
        // A file that is not a kubeconfig is refused, not replaced.
        assert!(super::merge(Some(b"- a\n- b\n"), ours, "lab").is_err());
        // YAML that is not a kubeconfig: refused, whatever its shape
        for other in [
            "name: my-app\nreplicas: 3\n",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n",
        ] {
            let e = super::merge(Some(other.as_bytes()), ours, "lab").unwrap_err();
            assert!(e.to_string().contains("not a kubeconfig"), "{e}");
        }
        // a hand-written one without `kind` is still a kubeconfig
        super::merge(Some(b"clusters: []\ncontexts: []\n"), ours, "lab").unwrap();
    }
}
