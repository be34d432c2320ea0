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
    /// The programs taken from the packages, by path; empty = every executable they carry.
    pub deb_programs: &'static [&'static str],
}

macro_rules! k8s_binary {
    ($name:literal) => {
        k8s_binary!($name, &[])
    };
    ($name:literal, $pinned:expr) => {
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
            pinned: $pinned,
            members: &[],
            dest: concat!("/usr/local/bin/", $name),
            debs: &[],
            deb_bin_dir: "",
            deb_programs: &[],
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
                ("etcd-v{v}-linux-amd64/etcdutl", "/usr/local/bin/etcdutl"),
            ],
            dest: "/usr/local/bin",
            debs: &["etcd-server", "etcd-client"],
            deb_bin_dir: "/usr/bin",
            deb_programs: &[],
        },
        k8s_binary!("kube-apiserver"),
        k8s_binary!("kube-controller-manager"),
        k8s_binary!("kube-scheduler"),
        k8s_binary!(
            "kubelet",
            &[
                (
                    "1.33.0",
                    "dd416d94850c342226d3dcdce838518b040ccea16548bfeaf2595934af88ef60"
                ),
                (
                    "1.33.11",
                    "4a3d265ee760ee4490b55989e5c3d87deffefa86a6f100f2a7453d353a1ae255"
                ),
                (
                    "1.35.0",
                    "2f4ed7778681649b81244426c29c5d98df60ccabf83d561d69e61c1cbb943ddf"
                ),
                (
                    "1.35.1",
                    "e7343310e03ff0d424df4397bdfa4468947d6d1f0f93dac586c1e8d6e4086d5d"
                ),
                (
                    "1.35.2",
                    "20887f461c0de96b0cb14c7af6b897f92d424ac078f8642f98e83ef52a0bf03e"
                ),
                (
                    "1.35.3",
                    "28d570423eaad5f1f5658a646bd8c015c786c95d62ffaf14bf35fa0c4326fa05"
                ),
                (
                    "1.35.4",
                    "983a6ba5a49823dcdd745c674e5e2416377dd27d6ad1b42d2befa0fb961a19f6"
                ),
                (
                    "1.35.5",
                    "4ba1f892bd52fdae7cd2abb1b1111054ff274c71f88af0a85fd9f1107e8d46c8"
                ),
                (
                    "1.35.6",
                    "f320e9485cdb8fd190ab45efd3c3e29f6fcf4ad1a4c610a058d8f0b6bcd34a3a"
                ),
                (
                    "1.35.7",
                    "e48cbb9c62351aa95f455bdae3c9a9e9d7d644027c231ade7a67b868b2be3258"
                ),
                (
                    "1.35.8",
                    "6971b9f95e54dbed67a2271abe6e78f8cc2894494649f3cf39e4b25a82dca923"
                ),
                (
                    "1.36.0",
                    "d857082946c28493e8fdc52227feabd962e0e0900b6c6e4f6510168043b79dd4"
                ),
                (
                    "1.36.1",
                    "7efa1780c73d9fb3a464002864e582eb2d15aa691e475eaae323093d08feae14"
                ),
                (
                    "1.36.2",
                    "3ba68cb4f0906053c08ab843131d5cec559cf8c718dbd679950a078b306abbb4"
                ),
                (
                    "1.36.3",
                    "46707a53209f826ad0f0d62371ac69cd00e78fd9a8176cf5f6f87f18f7f8b718"
                ),
                (
                    "1.36.4",
                    "cf2562db46c48ab84cc3791540778ee7fb1a0a008529adbb434723dd02ed8b4b"
                ),
            ]
        ),
        k8s_binary!("kube-proxy"),
        Component {
            name: "containerd",
            version_of: "containerd",
            file: |v| format!("containerd-{v}-linux-amd64.tar.gz"),
            url: |v| {
                format!(
                    "https://github.com/containerd/containerd/releases/download/v{v}/containerd-{v}-linux-amd64.tar.gz"
                )
            },
            sum_url: Some((
                |v| {
                    format!(
                        "https://github.com/containerd/containerd/releases/download/v{v}/containerd-{v}-linux-amd64.tar.gz.sha256sum"
                    )
                },
                SumFile::Single,
            )),
            pinned: &[
                (
                    "2.1.4",
                    "316d510a0428276d931023f72c09fdff1a6ba81d6cc36f31805fea6a3c88f515",
                ),
                (
                    "1.7.28",
                    "7a8c262deb63becc877e82d23749e4f99f4a17e8e660f9b8c257ca87a5c056b6",
                ),
            ],
            members: &[
                ("bin/containerd", "/usr/local/bin/containerd"),
                (
                    "bin/containerd-shim-runc-v2",
                    "/usr/local/bin/containerd-shim-runc-v2",
                ),
                ("bin/ctr", "/usr/local/bin/ctr"),
            ],
            dest: "/usr/local/bin",
            debs: &["containerd"],
            deb_bin_dir: "/usr/bin",
            // Not its failpoint and loopback test helpers (30 MB).
            deb_programs: &[
                "/usr/bin/containerd",
                "/usr/bin/containerd-shim-runc-v2",
                "/usr/bin/ctr",
            ],
        },
        Component {
            name: "runc",
            version_of: "runc",
            file: |_| "runc.amd64".to_string(),
            url: |v| {
                format!("https://github.com/opencontainers/runc/releases/download/v{v}/runc.amd64")
            },
            sum_url: Some((
                |v| {
                    format!(
                        "https://github.com/opencontainers/runc/releases/download/v{v}/runc.sha256sum"
                    )
                },
                SumFile::List,
            )),
            pinned: &[(
                "1.3.3",
                "8781ab9f71c12f314d21c8e85f13ca1a82d90cf475aa5131a7b543fcc5487543",
            )],
            members: &[],
            dest: "/usr/local/bin/runc",
            debs: &["runc"],
            deb_bin_dir: "/usr/sbin",
            deb_programs: &[],
        },
        Component {
            name: "cni-plugins",
            version_of: "cni-plugins",
            file: |v| format!("cni-plugins-linux-amd64-v{v}.tgz"),
            url: |v| {
                format!(
                    "https://github.com/containernetworking/plugins/releases/download/v{v}/cni-plugins-linux-amd64-v{v}.tgz"
                )
            },
            sum_url: Some((
                |v| {
                    format!(
                        "https://github.com/containernetworking/plugins/releases/download/v{v}/cni-plugins-linux-amd64-v{v}.tgz.sha256"
                    )
                },
                SumFile::Single,
            )),
            pinned: &[
                (
                    "1.6.2",
                    "b8e811578fb66023f90d2e238d80cec3bdfca4b44049af74c374d4fae0f9c090",
                ),
                (
                    "1.7.1",
                    "1a28a0506bfe5bcdc981caf1a49eeab7e72da8321f1119b7be85f22621013098",
                ),
            ],
            members: &[
                ("bridge", "/opt/cni/bin/bridge"),
                ("host-local", "/opt/cni/bin/host-local"),
                ("loopback", "/opt/cni/bin/loopback"),
                ("portmap", "/opt/cni/bin/portmap"),
                ("bandwidth", "/opt/cni/bin/bandwidth"),
                ("tuning", "/opt/cni/bin/tuning"),
                ("firewall", "/opt/cni/bin/firewall"),
            ],
            dest: "/opt/cni/bin",
            debs: &["containernetworking-plugins"],
            deb_bin_dir: "/usr/lib/cni",
            deb_programs: &[],
        },
        Component {
            name: "calico",
            version_of: "calico",
            file: |v| format!("calico-v{v}.yaml"),
            url: |v| {
                format!(
                    "https://raw.githubusercontent.com/projectcalico/calico/v{v}/manifests/calico.yaml"
                )
            },
            // No checksum is published for the manifest; this digest was computed from the git
            // blob at the tag.
            sum_url: None,
            pinned: &[(
                "3.30.5",
                "55af477d939927a87d2383725e2986bca71497d00913becefabeca3795e9288a",
            )],
            members: &[],
            dest: "",
            debs: &[],
            deb_bin_dir: "",
            deb_programs: &[],
        },
    ]
}

pub fn find(name: &str) -> Component {
    all()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("{name} is in the artifact catalogue"))
}
