//! The artifact catalogue, as data: per component its upstream file name and URL, where its
//! checksum comes from (a sha256 pinned here, or the publisher's checksum file), what to take
//! out of an archive and where it goes on the node, and the Debian packages that carry it.
//! Pinned digests are the publishers' (as collected by kubespray's checksum table).

/// How a file is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SumFile {
    /// `<url>.sha256`-style: the digest alone (or `digest  name`).
    Single,
    /// A list of `digest  name` lines for many files (etcd's `SHA256SUMS`).
    List,
}

/// A URL (or file name) built from a version.
pub type ByVersion = fn(&str) -> String;

#[derive(Debug, Clone)]
pub struct Component {
    pub name: &'static str,
    /// Which spec version applies: "kubernetes" or a `spec.versions` key.
    pub version_of: &'static str,
    /// Upstream file name for a version (also the name expected in `artifacts.dir`).
    pub file: ByVersion,
    pub url: ByVersion,
    /// The publisher's checksum file, and its shape.
    pub sum_url: Option<(ByVersion, SumFile)>,
    /// (version, sha256) pairs vouched for here.
    pub pinned: &'static [(&'static str, &'static str)],
    /// Members of a `.tar.gz` (path inside, with `{v}` for the version) → node path; empty = the
    /// file itself is the binary, installed at `dest`.
    pub members: &'static [(&'static str, &'static str)],
    pub dest: &'static str,
    /// Debian packages providing it (deb source); empty = none in Debian.
    pub debs: &'static [&'static str],
    /// Where the Debian packages put the binaries.
    pub deb_bin_dir: &'static str,
}

macro_rules! k8s_binary {
    ($name:literal) => {
        Component {
            name: $name,
            version_of: "kubernetes",
            file: |_| $name.to_string(),
            url: |v| format!("https://dl.k8s.io/release/v{v}/bin/linux/amd64/{}", $name),
            sum_url: Some((
                |v| {
                    format!(
                        "https://dl.k8s.io/release/v{v}/bin/linux/amd64/{}.sha256",
                        $name
                    )
                },
                SumFile::Single,
            )),
            pinned: &[],
            members: &[],
            dest: concat!("/usr/local/bin/", $name),
            debs: &[],
            deb_bin_dir: "",
        }
    };
}

pub fn all() -> Vec<Component> {
    vec![
        Component {
            name: "etcd",
            version_of: "etcd",
            file: |v| format!("etcd-v{v}-linux-amd64.tar.gz"),
            url: |v| {
                format!(
                    "https://github.com/etcd-io/etcd/releases/download/v{v}/etcd-v{v}-linux-amd64.tar.gz"
                )
            },
            sum_url: Some((
                |v| format!("https://github.com/etcd-io/etcd/releases/download/v{v}/SHA256SUMS"),
                SumFile::List,
            )),
            pinned: &[
                (
                    "3.5.21",
                    "adddda4b06718e68671ffabff2f8cee48488ba61ad82900e639d108f2148501c",
                ),
                (
                    "3.5.24",
                    "042497e2ddcee06f22e5d486d81f58affa26b53ee423e2a6aaca3d3ea98c8191",
                ),
            ],
            members: &[
                ("etcd-v{v}-linux-amd64/etcd", "/usr/local/bin/etcd"),
                ("etcd-v{v}-linux-amd64/etcdctl", "/usr/local/bin/etcdctl"),
            ],
            dest: "/usr/local/bin",
            debs: &["etcd-server", "etcd-client"],
            deb_bin_dir: "/usr/bin",
        },
        k8s_binary!("kube-apiserver"),
        k8s_binary!("kube-controller-manager"),
        k8s_binary!("kube-scheduler"),
    ]
}

pub fn find(name: &str) -> Component {
    all()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("{name} is in the artifact catalogue"))
}
