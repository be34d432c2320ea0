//! `spec.hypervisors`: the libvirt hosts the VMs may run on, and the nodes that name one.
//! Whether the nodes fit is [`crate::placement`]'s question (it needs libvirt's free memory).

use std::collections::BTreeMap;

use super::super::problem::Problem;
use super::super::types::*;
use super::{Collector, is_dns_label};

impl Collector {
    /// libvirt's in-process SSH transports (`qemu+libssh://`, `qemu+libssh2://`) opened but
    /// never answered in the lab without an event loop; OpenSSH's (`qemu+ssh://`) works.
    pub(super) fn libvirt_transport(&mut self, path: &str, uri: &str) {
        let scheme = uri.split_once("://").map(|(s, _)| s).unwrap_or("");
        if let Some((driver, t @ ("libssh" | "libssh2"))) = scheme.split_once('+') {
            self.push(
                Problem::new(path, format!("the {t} transport is not supported")).hint(format!(
                    "use {driver}+ssh:// (libvirt runs OpenSSH; the same keyfile= works)"
                )),
            );
        }
    }

    pub(super) fn hosts(&mut self, spec: &ClusterSpec) {
        let list = &spec.hypervisors;
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        let mut uris: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, h) in list.iter().enumerate() {
            let at = |field: &str| format!("spec.hypervisors[{i}].{field}");
            if !is_dns_label(&h.name) {
                self.push(
                    Problem::new(at("name"), format!("{:?} is not a valid name", h.name))
                        .hint("use 1-63 lowercase letters, digits or '-', e.g. hv2"),
                );
            } else if let Some(first) = names.insert(&h.name, i) {
                self.push(
                    Problem::new(
                        at("name"),
                        format!("duplicate hypervisor name {:?}", h.name),
                    )
                    .hint(format!("spec.hypervisors[{first}] has the same name")),
                );
            }
            let uri = if h.uri.is_empty() {
                &spec.hypervisor.uri
            } else {
                &h.uri
            };
            if uri.trim() != uri || uri.contains(char::is_whitespace) {
                self.push(
                    Problem::new(at("uri"), format!("{uri:?} has spaces in it"))
                        .hint("write a libvirt URI, e.g. qemu+ssh://root@hv2/system"),
                );
            } else if let Some(first) = uris.insert(uri, i) {
                self.push(
                    Problem::new(at("uri"), format!("{uri} is also spec.hypervisors[{first}]"))
                        .hint("each entry is its own libvirt host; set uri (an empty one means spec.hypervisor.uri)"),
                );
            }
            if !h.storage_pool.is_empty() && !is_dns_label(&h.storage_pool) {
                self.push(
                    Problem::new(
                        at("storagePool"),
                        format!("{:?} is not a valid pool name", h.storage_pool),
                    )
                    .hint("use lowercase letters, digits and '-'"),
                );
            }
            if h.memory_mib.is_some_and(|m| m < 512) {
                self.push(
                    Problem::new(
                        at("memoryMiB"),
                        format!("{} MiB cannot hold a node", h.memory_mib.unwrap_or(0)),
                    )
                    .hint(
                        "give at least 512 MiB, or leave it out to use what libvirt reports free",
                    ),
                );
            }
        }
        if list.len() > 1 {
            let why = |path: &str, what: &str, hint: &str| Problem::new(path, what).hint(hint);
            if spec.hypervisor.mode == HypervisorMode::Lab {
                self.push(why(
                    "spec.hypervisors",
                    "the lab runs one private libvirtd, not several hypervisors",
                    "use hypervisor.mode host with several hypervisors, or one hypervisor with --lab",
                ));
            }
            if spec.hypervisor.template_kind == TemplateKind::Legacy {
                self.push(why(
                    "spec.hypervisors",
                    "a legacy template is re-addressed from this host and cannot be spread over several hypervisors",
                    "build the template with `kubicluster image build` (templateKind: kubicluster)",
                ));
            }
            if spec.networks.cluster.mode == ClusterNetMode::Isolated {
                self.push(why(
                    "spec.networks.cluster.mode",
                    "an isolated libvirt network stays on one host; the nodes on other hypervisors would not reach it",
                    "use mode: bridged with a bridge of the same name on every hypervisor, joined at layer 2 (a shared segment or VXLAN)",
                ));
            }
        }
        for (i, n) in spec.nodes.iter().enumerate() {
            if n.hypervisor.is_empty() {
                continue;
            }
            let known = if list.is_empty() {
                n.hypervisor == crate::spec::DEFAULT_HOST
            } else {
                names.contains_key(n.hypervisor.as_str())
            };
            if !known {
                let have: Vec<&str> = if list.is_empty() {
                    vec![crate::spec::DEFAULT_HOST]
                } else {
                    list.iter().map(|h| h.name.as_str()).collect()
                };
                self.push(
                    Problem::new(
                        format!("spec.nodes[{i}].hypervisor"),
                        format!("no hypervisor named {:?}", n.hypervisor),
                    )
                    .hint(format!(
                        "name one of spec.hypervisors ({}), or leave it out to let kubicluster place the node",
                        have.join(", ")
                    )),
                );
            }
        }
    }
}
