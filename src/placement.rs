//! Which hypervisor each node's VM runs on — a pure function of the cluster file and of what the
//! hypervisors report (where a node's VM already is, how much memory each has free).
//!
//! The rules, in order:
//! 1. a VM that exists stays where libvirt has it (moving a VM is not placement's job: a file
//!    that names another hypervisor for it is refused);
//! 2. a node whose entry names a hypervisor goes there;
//! 3. a controller goes to the hypervisor with the fewest controllers (never two on one host
//!    while another has none: losing a host must not lose etcd's quorum when it can be avoided);
//! 4. a worker goes to the hypervisor with the most memory left after what is placed before it.
//!
//! Ties go to the hypervisor with fewer of the cluster's nodes, then to the first in the file.
//! A VM placed where its memory does not fit is refused before anything is made.

use std::collections::BTreeMap;

use crate::error::Failure;
use crate::spec::{Cluster, Node, Role};

/// Why a node is where it is (said by `plan`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The cluster has one hypervisor.
    Only,
    /// Its VM already runs there.
    Exists,
    /// Its entry names the hypervisor.
    Named,
    /// Controllers spread over the hypervisors.
    Spread,
    /// The hypervisor with the most memory left.
    Memory,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Only => "the only hypervisor",
            Why::Exists => "its VM is there",
            Why::Named => "named in the cluster file",
            Why::Spread => "controllers spread over the hypervisors",
            Why::Memory => "the most memory left",
        }
    }
}

/// One node's place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub node: String,
    pub host: String,
    pub why: Why,
}

/// What the hypervisors report. Empty maps are what a run without libvirt knows (`validate`,
/// `render`): then only `spec.hypervisors[].memoryMiB` bounds a host.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Node → the hypervisor its VM (a domain of this cluster) is defined on.
    pub existing: BTreeMap<String, String>,
    /// Hypervisor → MiB libvirt reports free for new VMs.
    pub free_mib: BTreeMap<String, u64>,
}

/// The hosts as placement goes: memory left, nodes and controllers placed so far.
struct Board<'a> {
    hosts: Vec<&'a str>,
    /// MiB left for VMs not made yet (the file's bound or libvirt's free memory, whichever is
    /// smaller); None where neither is known — unknown counts as plenty.
    left: BTreeMap<&'a str, Option<u64>>,
    nodes: BTreeMap<&'a str, usize>,
    controllers: BTreeMap<&'a str, usize>,
    placed: BTreeMap<&'a str, Placed>,
}

impl<'a> Board<'a> {
    fn new(cluster: &'a Cluster, facts: &Facts) -> Self {
        let hosts: Vec<&str> = cluster.hosts.iter().map(|h| h.name.as_str()).collect();
        let left = cluster
            .hosts
            .iter()
            .map(|h| {
                let free = facts.free_mib.get(&h.name).copied();
                let bound = match (h.memory_mib, free) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                (h.name.as_str(), bound)
            })
            .collect();
        let zero: BTreeMap<&str, usize> = hosts.iter().map(|h| (*h, 0)).collect();
        Board {
            hosts,
            left,
            nodes: zero.clone(),
            controllers: zero,
            placed: BTreeMap::new(),
        }
    }

    fn room(&self, host: &str) -> u64 {
        self.left[host].unwrap_or(u64::MAX)
    }

    /// Put `node` on `host`; a VM still to be made takes its memory, and is refused where it
    /// does not fit.
    fn put(&mut self, node: &'a Node, host: &str, why: Why, new: bool) -> Result<(), Failure> {
        let host = *self
            .hosts
            .iter()
            .find(|h| **h == host)
            .expect("validated: a listed hypervisor");
        if new && let Some(mib) = self.left[host] {
            let need = u64::from(node.memory_mib);
            if need > mib {
                return Err(Failure::bad_input(format!(
                    "{}: its {need} MiB do not fit on hypervisor {host} ({mib} MiB left there)",
                    node.name
                ))
                .hint("give the node less memory, name another hypervisor for it, or raise spec.hypervisors[].memoryMiB if the host has more"));
            }
            self.left.insert(host, Some(mib - need));
        }
        *self.nodes.get_mut(host).expect("a host") += 1;
        if node.role == Role::Controller {
            *self.controllers.get_mut(host).expect("a host") += 1;
        }
        self.placed.insert(
            &node.name,
            Placed {
                node: node.name.clone(),
                host: host.to_string(),
                why,
            },
        );
        Ok(())
    }

    /// The host a new node of `role` needing `need` MiB goes to, if one has room.
    fn choose(&self, role: Role, need: u64) -> Option<&'a str> {
        let fits = self.hosts.iter().filter(|h| self.room(h) >= need);
        // min_by_key keeps the first of equals: the file's order breaks the last tie.
        match role {
            Role::Controller => fits.min_by_key(|h| {
                (
                    self.controllers[*h],
                    std::cmp::Reverse(self.room(h)),
                    self.nodes[*h],
                )
            }),
            Role::Worker | Role::LoadBalancer => {
                fits.min_by_key(|h| (std::cmp::Reverse(self.room(h)), self.nodes[*h]))
            }
        }
        .copied()
    }

    fn left_report(&self) -> String {
        let parts: Vec<String> = self
            .hosts
            .iter()
            .map(|h| match self.left[h] {
                Some(l) => format!("{h} {l} MiB"),
                None => format!("{h} unknown"),
            })
            .collect();
        parts.join(", ")
    }
}

/// Every node of `cluster` placed on one of its hosts, in the file's order.
pub fn place(cluster: &Cluster, facts: &Facts) -> Result<Vec<Placed>, Failure> {
    let mut board = Board::new(cluster, facts);
    // VMs that exist, then nodes the file places: they bind before anything is chosen.
    for n in &cluster.nodes {
        let named = n.hypervisor.as_deref();
        match (facts.existing.get(&n.name), named) {
            (Some(at), Some(named)) if at != named => {
                return Err(Failure::bad_input(format!(
                    "{}: its VM is on hypervisor {at}, but the cluster file names {named}",
                    n.name
                ))
                .hint(format!(
                    "set the node's hypervisor back to {at}; to move it, `kubicluster remove {}` first, then `up`",
                    n.name
                )));
            }
            (Some(at), _) if board.hosts.contains(&at.as_str()) => {
                board.put(n, at, Why::Exists, false)?
            }
            (Some(at), _) => {
                return Err(Failure::bad_input(format!(
                    "{}: its VM is on hypervisor {at}, which the cluster file does not list",
                    n.name
                ))
                .hint(format!(
                    "add {at} back to spec.hypervisors, or `kubicluster remove {}` while it is listed",
                    n.name
                )));
            }
            (None, Some(named)) => board.put(n, named, Why::Named, true)?,
            (None, None) => {}
        }
    }
    let single = board.hosts.len() == 1;
    // Controllers first (their spread matters most), then workers, then the load balancer,
    // each in the file's order.
    for role in [Role::Controller, Role::Worker, Role::LoadBalancer] {
        for n in cluster.nodes.iter().filter(|n| n.role == role) {
            if board.placed.contains_key(n.name.as_str()) {
                continue;
            }
            let need = u64::from(n.memory_mib);
            let Some(host) = board.choose(role, need) else {
                return Err(Failure::bad_input(format!(
                    "{}: no hypervisor has the {need} MiB it needs left ({})",
                    n.name,
                    board.left_report()
                ))
                .hint("give the nodes less memory, add a hypervisor to spec.hypervisors, or remove a node"));
            };
            let why = match role {
                _ if single => Why::Only,
                Role::Controller => Why::Spread,
                Role::Worker | Role::LoadBalancer => Why::Memory,
            };
            board.put(n, host, why, true)?;
        }
    }
    Ok(cluster
        .nodes
        .iter()
        .map(|n| {
            board
                .placed
                .remove(n.name.as_str())
                .expect("every node placed")
        })
        .collect())
}

/// The placement as `plan` and `validate` print it: one line per node.
pub fn describe(placed: &[Placed]) -> Vec<String> {
    let width = placed.iter().map(|p| p.node.len()).max().unwrap_or(0);
    placed
        .iter()
        .map(|p| format!("{:width$}  on {} ({})", p.node, p.host, p.why.as_str()))
        .collect()
}

#[cfg(test)]
mod tests;
