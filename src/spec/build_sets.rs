//! The build sets: which Kubernetes releases `kubicluster artifacts build` can build, the etcd,
//! crictl and CoreDNS versions pinned with each, the names the build gives its images and where
//! its output lives. Data only: the `build` source's defaults are decided from it here, in the
//! spec (`resolve`); `artifacts::build` adds the embedded Go modules and does the building.

use std::path::{Path, PathBuf};

/// One pinned set: a Kubernetes release and the versions built with it.
pub struct BuildSet {
    pub kubernetes: &'static str,
    pub etcd: &'static str,
    pub crictl: &'static str,
    pub coredns: &'static str,
}

/// The Kubernetes releases kubicluster can build, newest first.
pub const BUILD_SETS: &[BuildSet] = &[
    BuildSet {
        kubernetes: "1.37.2",
        etcd: "3.7.3",
        crictl: "1.37.0",
        coredns: "1.15.0",
    },
    BuildSet {
        kubernetes: "1.36.3",
        etcd: "3.6.16",
        crictl: "1.37.0",
        coredns: "1.15.0",
    },
    BuildSet {
        kubernetes: "1.35.4",
        etcd: "3.6.16",
        crictl: "1.37.0",
        coredns: "1.15.0",
    },
];

/// The images a build writes under `images/`, by the names containerd gives them.
pub fn pause_image(set: &BuildSet) -> String {
    format!("kubicluster.local/pause:v{}", set.kubernetes)
}
pub fn coredns_image(set: &BuildSet) -> String {
    format!("kubicluster.local/coredns:v{}", set.coredns)
}
pub const BUSYBOX_IMAGE: &str = "kubicluster.local/busybox:host";
pub const IMAGE_FILES: [&str; 3] = [
    "images/pause.tar",
    "images/coredns.tar",
    "images/busybox.tar",
];

pub fn set_for(kubernetes: &str) -> Option<&'static BuildSet> {
    BUILD_SETS.iter().find(|s| s.kubernetes == kubernetes)
}

pub fn versions() -> String {
    BUILD_SETS
        .iter()
        .map(|s| s.kubernetes)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `$KUBICLUSTER_CACHE_DIR`, else `$XDG_CACHE_HOME/kubicluster`, else `~/.cache/kubicluster`.
pub fn cache_dir(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    let set = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(d) = set("KUBICLUSTER_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = set("XDG_CACHE_HOME") {
        return Path::new(&d).join("kubicluster");
    }
    Path::new(&set("HOME").unwrap_or_else(|| "/root".into())).join(".cache/kubicluster")
}

/// Where the build of a Kubernetes version lives.
pub fn output_dir(cache: &Path, kubernetes: &str) -> PathBuf {
    cache
        .join("artifacts")
        .join(format!("kubernetes-v{kubernetes}"))
}
