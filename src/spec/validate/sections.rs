//! The sections that stand alone: etcd, the PKI, versions, artifacts, images, SSH.

use std::path::Path;

use super::super::problem::Problem;
use super::super::types::*;
use super::{Collector, is_dns_label};

impl Collector {
    pub(super) fn etcd(&mut self, spec: &ClusterSpec) {
        let e = &spec.etcd;
        if e.client_port == 0 || e.peer_port == 0 || e.client_port == e.peer_port {
            self.push(
                Problem::new(
                    "spec.etcd",
                    format!(
                        "client port {} and peer port {} must be two different non-zero ports",
                        e.client_port, e.peer_port
                    ),
                )
                .hint("the usual ports are 2379 (client) and 2380 (peer)"),
            );
        }
        let (hb, el) = (e.heartbeat_interval_ms, e.election_timeout_ms);
        if hb < 10 || el < 5 * hb || el > 50_000 {
            self.push(
                Problem::new(
                    "spec.etcd",
                    format!("heartbeatIntervalMs {hb} and electionTimeoutMs {el} cannot work"),
                )
                .hint("etcd wants the election timeout at 5-10 times the heartbeat, at most 50000 ms: e.g. 100 and 1000 (its defaults), or 500 and 5000 under emulation"),
            );
        }
        if e.cluster_token.trim().is_empty() {
            self.push(
                Problem::new("spec.etcd.clusterToken", "is empty").hint("e.g. etcd-kubicluster"),
            );
        }
    }

    pub(super) fn pki(&mut self, spec: &ClusterSpec) {
        let p = &spec.pki;
        if p.ca_validity_days == 0 || p.cert_validity_days == 0 {
            self.push(
                Problem::new("spec.pki", "validity must be at least one day")
                    .hint("defaults: CA 3650 days, leaves 365 days"),
            );
        } else if p.cert_validity_days > p.ca_validity_days {
            self.push(
                Problem::new(
                    "spec.pki.certValidityDays",
                    format!(
                        "{} days outlives the CA ({} days)",
                        p.cert_validity_days, p.ca_validity_days
                    ),
                )
                .hint("a certificate cannot be valid longer than its CA"),
            );
        } else if p.renew_before_days >= p.cert_validity_days {
            self.push(
                Problem::new(
                    "spec.pki.renewBeforeDays",
                    format!(
                        "{} days is not shorter than the leaf lifetime ({} days)",
                        p.renew_before_days, p.cert_validity_days
                    ),
                )
                .hint("otherwise every run would re-issue every certificate"),
            );
        }
    }

    pub(super) fn versions(&mut self, spec: &ClusterSpec) {
        let v = &spec.versions;
        for (component, value) in [
            ("etcd", &v.etcd),
            ("containerd", &v.containerd),
            ("runc", &v.runc),
            ("kata", &v.kata),
            ("cni-plugins", &v.cni_plugins),
            ("calico", &v.calico),
        ] {
            self.version(component, value);
        }
    }

    pub(super) fn artifacts(&mut self, spec: &ClusterSpec) {
        let a = &spec.artifacts;
        if a.source == ArtifactSource::Dir && a.dir.trim().is_empty() {
            self.push(
                Problem::new(
                    "spec.artifacts.dir",
                    "is empty while spec.artifacts.source is dir",
                )
                .hint("name the directory holding the binaries (--artifacts-dir DIR)"),
            );
        }
        if !a.dir.is_empty() && !Path::new(&a.dir).is_dir() {
            self.push(
                Problem::new(
                    "spec.artifacts.dir",
                    format!("{} is not a directory", a.dir),
                )
                .hint("create it and put the binaries there under their upstream names"),
            );
        }
        if a.source == ArtifactSource::Deb && !is_dns_label(&a.deb_suite) {
            self.push(
                Problem::new(
                    "spec.artifacts.debSuite",
                    format!("{:?} is not a Debian suite name", a.deb_suite),
                )
                .hint("e.g. trixie (etcd 3.5) or sid (containerd 2.x)"),
            );
        }
        for (file, sha) in &a.sha256 {
            if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                self.push(
                    Problem::new(
                        format!("spec.artifacts.sha256.{file}"),
                        "is not a sha256 (64 hex digits)",
                    )
                    .hint("copy it from the publisher's checksum file"),
                );
            }
        }
    }

    pub(super) fn images(&mut self, spec: &ClusterSpec) {
        for (i, img) in spec.images.iter().enumerate() {
            if !Path::new(img).is_file() {
                self.push(
                Problem::new(format!("spec.images[{i}]"), format!("{img} is not a file"))
                    .hint("give OCI or docker image archives (.tar), e.g. from `ctr images export` or `docker save`"),
            );
            }
        }
        if spec.containerd.sandbox_image.trim().is_empty() {
            self.push(
                Problem::new("spec.containerd.sandboxImage", "is empty")
                    .hint("e.g. registry.k8s.io/pause:3.10"),
            );
        }
    }

    pub(super) fn ssh(&mut self, spec: &ClusterSpec) {
        if spec.ssh.user.trim().is_empty() {
            self.push(
                Problem::new("spec.ssh.user", "is empty")
                    .hint("the VMs are reached as root by default"),
            );
        }
        if spec.ssh.port == 0 {
            self.push(Problem::new("spec.ssh.port", "must not be 0").hint("the usual port is 22"));
        }
    }
}
