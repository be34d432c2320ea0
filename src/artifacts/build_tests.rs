//! `artifacts build`'s pure parts: the embedded Go modules and build sets, the version stamp, the
//! cache directory, the output's completeness check, the static-ELF check.

use super::*;

/// Every embedded Go module is reproducible from its own files: one that requires anything
/// carries the go.sum that pins it (the build runs with -mod=readonly); the pause module
/// has no go.sum because it requires nothing (standard library only) — checked, not assumed.
#[test]
fn every_go_module_pins_what_it_requires() {
    let modules = [&CRI_TOOLS, &COREDNS, &PAUSE]
        .into_iter()
        .chain(ETCD_MODULES.iter().map(|(_, m)| m))
        .chain(KUBERNETES_MODULES.iter().map(|(_, m)| m));
    for m in modules {
        let file = |name: &str| m.files.iter().find(|(n, _)| *n == name).map(|(_, t)| *t);
        let go_mod = file("go.mod").unwrap_or_else(|| panic!("{}: no go.mod", m.dir));
        let requires = go_mod
            .lines()
            .any(|l| l.trim_start().starts_with("require"));
        match file("go.sum") {
            Some(sum) => assert!(!sum.trim().is_empty(), "{}: empty go.sum", m.dir),
            None => assert!(!requires, "{}: requires modules but has no go.sum", m.dir),
        }
    }
}

#[test]
fn every_build_set_has_its_module_pinned() {
    assert_eq!(KUBERNETES_MODULES.len(), BUILD_SETS.len());
    for s in BUILD_SETS {
        let gomod = kubernetes_module(s).files[0].1;
        assert!(gomod.contains(&format!("require k8s.io/kubernetes v{}", s.kubernetes)));
        let minor = s.kubernetes.split('.').nth(1).unwrap();
        // Every staging module at the published release of the same line.
        let replaces: Vec<&str> = gomod.lines().filter(|l| l.contains(" => ")).collect();
        assert!(replaces.len() > 25, "{}", s.kubernetes);
        for r in replaces {
            assert!(
                r.trim_end().ends_with(&format!(
                    "v0.{minor}.{}",
                    s.kubernetes.split('.').nth(2).unwrap()
                )),
                "{r}"
            );
        }
        assert!(
            kubernetes_module(s).files[1]
                .1
                .contains("k8s.io/kubernetes v"),
            "go.sum"
        );
    }
}

/// Each set's etcd has its module, requiring that release of all three etcd programs; and the
/// etcd minor is the one kubeadm of the same Kubernetes release installs (1.37: 3.7, 1.36 and
/// 1.35: 3.6), at the newest patch the module proxy serves.
#[test]
fn every_build_sets_etcd_has_its_module_and_kubeadms_minor() {
    for s in BUILD_SETS {
        let gomod = etcd_module(s).files[0].1;
        for tool in ["etcdctl", "etcdutl", "server"] {
            assert!(
                gomod.contains(&format!("go.etcd.io/etcd/{tool}/v3 v{}", s.etcd)),
                "{}: {tool}",
                s.etcd
            );
        }
        let kubeadm_minor = match s.kubernetes.split('.').nth(1).unwrap() {
            "37" => "3.7.",
            _ => "3.6.",
        };
        assert!(s.etcd.starts_with(kubeadm_minor), "{}", s.kubernetes);
    }
}

#[test]
fn ldflags_stamp_the_version() {
    let f = kubernetes_ldflags("1.37.2");
    assert!(f.contains("-X k8s.io/component-base/version.gitVersion=v1.37.2"));
    assert!(f.contains("-X k8s.io/component-base/version.gitMinor=37"));
    assert!(f.starts_with("-s -w"));
}

#[test]
fn cache_dir_follows_xdg() {
    let env = |k: &str| match k {
        "XDG_CACHE_HOME" => Some("/x".to_string()),
        "HOME" => Some("/home/u".to_string()),
        _ => None,
    };
    assert_eq!(cache_dir(&env), Path::new("/x/kubicluster"));
    let env = |k: &str| (k == "HOME").then(|| "/home/u".to_string());
    assert_eq!(cache_dir(&env), Path::new("/home/u/.cache/kubicluster"));
}

#[test]
fn a_directory_is_complete_only_when_its_manifest_matches() {
    let d = tempfile::tempdir().unwrap();
    assert!(!verify_dir(d.path()).unwrap(), "no manifest");
    std::fs::write(d.path().join("kubelet"), b"x").unwrap();
    let sha = crate::blob::sha256_hex(b"x");
    std::fs::write(d.path().join(MANIFEST), format!("{sha}  kubelet\n")).unwrap();
    assert!(verify_dir(d.path()).unwrap());
    std::fs::write(d.path().join("kubelet"), b"y").unwrap();
    assert!(!verify_dir(d.path()).unwrap(), "changed file");
}

#[test]
fn static_elf_detection() {
    assert!(!is_static_elf(b"#!/bin/sh\n"));
    if let Ok(ls) = std::fs::read("/bin/ls") {
        assert!(!is_static_elf(&ls), "/bin/ls is dynamically linked");
    }
}
