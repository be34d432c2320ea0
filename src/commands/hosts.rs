//! A cluster's hypervisors as the commands use them: connected, with the nodes placed on each
//! ([`crate::placement`]), and each one's view of the cluster ([`Cluster::on_host`]). A cluster
//! on one hypervisor is one view of the whole cluster (the lab's daemon in lab mode).

use anyhow::Result;

use crate::engine::hv::OnHost;
use crate::hypervisor::Hypervisor;
use crate::hypervisor::libvirt::Libvirt;
use crate::placement::Placed;
use crate::spec::Cluster;

/// Every hypervisor of a cluster, connected.
pub struct Spread {
    /// (host name, the nodes there as a cluster, its connection), in the file's order.
    pub hosts: Vec<(String, Cluster, Libvirt)>,
    /// Where each node is (empty for a cluster on one hypervisor).
    pub placed: Vec<Placed>,
}

impl Spread {
    /// The views for [`crate::engine::hv::run_spread`].
    pub fn on_hosts(&self) -> Vec<OnHost<'_>> {
        self.hosts
            .iter()
            .map(|(name, cluster, hv)| OnHost {
                name,
                cluster,
                hv: hv as &dyn Hypervisor,
            })
            .collect()
    }

    /// Each hypervisor's view of the cluster.
    pub fn views(&self) -> Vec<&Cluster> {
        self.hosts.iter().map(|(_, c, _)| c).collect()
    }

    /// Whether the cluster is spread over several hypervisors (lines then name them).
    pub fn several(&self) -> bool {
        self.hosts.len() > 1
    }

    /// `host`, to name it in lines and errors: only when there are several.
    pub fn name<'a>(&self, host: &'a str) -> Option<&'a str> {
        self.several().then_some(host)
    }

    /// Where each node is, on the command's status lines (nothing on one hypervisor).
    pub fn show(&self, ctx: &mut super::Ctx, cluster: &Cluster) {
        if self.several() {
            super::print_placement(ctx, cluster, "", &self.placed);
        }
    }
}

/// Connect to every hypervisor of `cluster` (in parallel) and place its nodes: an existing VM
/// where libvirt has it, the others by the placement rules.
pub fn spread(cluster: &Cluster) -> Result<Spread> {
    if cluster.hosts.len() < 2 {
        return Ok(Spread {
            hosts: vec![(
                cluster.hosts[0].name.clone(),
                cluster.clone(),
                super::connect(cluster)?,
            )],
            placed: Vec::new(),
        });
    }
    place_on(cluster, super::connect_hosts(cluster)?)
}

/// [`spread`] with every hypervisor of a spread cluster connected already, in the file's order.
pub fn place_on(cluster: &Cluster, connected: Vec<(String, Libvirt)>) -> Result<Spread> {
    let refs: Vec<(&str, &dyn Hypervisor)> = connected
        .iter()
        .map(|(n, lv)| (n.as_str(), lv as &dyn Hypervisor))
        .collect();
    let facts = crate::vms::placement_facts(cluster, &refs)?;
    let placed = crate::placement::place(cluster, &facts)?;
    let hosts = connected
        .into_iter()
        .map(|(name, lv)| {
            let host = cluster
                .hosts
                .iter()
                .find(|h| h.name == name)
                .expect("connected from the list");
            let nodes: Vec<&str> = placed
                .iter()
                .filter(|p| p.host == name)
                .map(|p| p.node.as_str())
                .collect();
            (name.clone(), cluster.on_host(host, &nodes), lv)
        })
        .collect();
    Ok(Spread { hosts, placed })
}

/// The hypervisors of a cluster as far as they answer (for `status` and `prepare --check`, which
/// must report during an outage): the answering ones, each with the nodes whose VMs it holds
/// and those the file names there; `lost`: each host that does not answer, with why; `unknown`:
/// the nodes that may be on a lost host (on no answering one, named for none). When every host
/// answers (or there is one), this is [`spread`]: every node placed.
pub struct Answering {
    pub spread: Spread,
    pub lost: Vec<(String, String)>,
    pub unknown: Vec<String>,
}

pub fn answering(cluster: &Cluster) -> Result<Answering> {
    let whole = |spread| Answering {
        spread,
        lost: Vec::new(),
        unknown: Vec::new(),
    };
    if cluster.hosts.len() < 2 {
        return Ok(whole(spread(cluster)?)); // the lab's daemon in lab mode
    }
    let tried = crate::par::map(&cluster.hosts, |h| Libvirt::connect(&h.uri));
    if tried.iter().all(Result::is_ok) {
        let names = cluster.hosts.iter().map(|h| h.name.clone());
        let connected = names.zip(tried.into_iter().flatten()).collect();
        return Ok(whole(place_on(cluster, connected)?));
    }
    let mut connected = Vec::new();
    let mut lost = Vec::new();
    for (h, r) in cluster.hosts.iter().zip(tried) {
        match r {
            Ok(lv) => connected.push((h, lv)),
            Err(e) => lost.push((h.name.clone(), format!("{e:#}"))),
        }
    }
    let refs: Vec<(&str, &dyn Hypervisor)> = connected
        .iter()
        .map(|(h, lv)| (h.name.as_str(), lv as &dyn Hypervisor))
        .collect();
    let facts = crate::vms::placement_facts(cluster, &refs)?;
    let mut unknown: Vec<String> = cluster.nodes.iter().map(|n| n.name.clone()).collect();
    let hosts = connected
        .into_iter()
        .map(|(h, lv)| {
            let nodes: Vec<&str> = cluster
                .nodes
                .iter()
                .filter(|n| match facts.existing.get(&n.name) {
                    Some(on) => on == &h.name,
                    None => n.hypervisor.as_deref() == Some(h.name.as_str()),
                })
                .map(|n| n.name.as_str())
                .collect();
            unknown.retain(|n| !nodes.contains(&n.as_str()));
            (h.name.clone(), cluster.on_host(h, &nodes), lv)
        })
        .collect();
    Ok(Answering {
        spread: Spread {
            hosts,
            placed: Vec::new(),
        },
        lost,
        unknown,
    })
}

/// [`super::reach_nodes`] for a cluster whose hypervisors are connected already (in lab mode
/// that connection proved the lab runs).
pub fn reach_all(cluster: &Cluster, spread: &Spread) -> Result<()> {
    match cluster.hypervisor.mode {
        crate::spec::HypervisorMode::Lab => super::dial_lab(cluster),
        crate::spec::HypervisorMode::Host if !reached(cluster) => reach(cluster, &spread.views()),
        crate::spec::HypervisorMode::Host => {}
    }
    Ok(())
}

/// The cluster whose nodes [`reach`] routed last (a command reaches its nodes once; later
/// phases of it find them reached).
static REACHED: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Whether this process reaches `cluster`'s nodes already: in lab mode inside its namespace,
/// in host mode through the routes [`reach`] made.
pub fn reached(cluster: &Cluster) -> bool {
    match cluster.hypervisor.mode {
        crate::spec::HypervisorMode::Lab => {
            crate::net::namespace() == Some(crate::lab::netns_path(cluster))
        }
        crate::spec::HypervisorMode::Host => {
            REACHED.lock().unwrap_or_else(|e| e.into_inner()).as_deref()
                == Some(cluster.name.as_str())
        }
    }
}

/// Make every node reachable from this process through its own hypervisor: a node on a
/// `qemu+ssh://` host through that host's SSH server ([`crate::host::ssh::jump`]), a node on a
/// local one directly. An address that is no node's (a virtual IP, a load balancer) goes the
/// way of the first hypervisor's nodes: the cluster network must reach it from there.
pub fn reach(cluster: &Cluster, views: &[&Cluster]) {
    use std::collections::HashMap;
    use std::net::IpAddr;
    use std::sync::Arc;

    use crate::host::ssh::jump::Jump;
    *REACHED.lock().unwrap_or_else(|e| e.into_inner()) = Some(cluster.name.clone());
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    let jumps: Vec<Option<Arc<Jump>>> = views
        .iter()
        .map(|view| {
            Jump::from_libvirt_uri(&view.hypervisor.uri, std::path::Path::new(&home)).map(Arc::new)
        })
        .collect();
    if jumps.iter().all(Option::is_none) {
        return;
    }
    let mut routes: HashMap<IpAddr, Option<Arc<Jump>>> = HashMap::new();
    for (view, jump) in views.iter().zip(&jumps) {
        for n in &view.nodes {
            routes.insert(n.hypervisor_ip.into(), jump.clone());
            routes.insert(n.cluster_ip.into(), jump.clone());
        }
    }
    let first = jumps[0].clone();
    tracing::debug!(
        cluster = %cluster.name,
        routes = routes.len(),
        "nodes reached through their hypervisors"
    );
    crate::net::dial_through(Some(Arc::new(move |addr, timeout| {
        match routes.get(&addr.ip()).unwrap_or(&first) {
            Some(jump) => jump.connect(addr, timeout),
            None => crate::net::connect_here(addr, timeout),
        }
    })));
}
