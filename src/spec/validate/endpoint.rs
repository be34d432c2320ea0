//! How clients reach the API: the user's load balancer (`apiServerLoadBalancerIP`), a virtual
//! IP the controllers hold between them (`apiServerVIP`; the default with more than one
//! controller), or, with one controller and neither, that controller.

use std::net::Ipv4Addr;

use super::super::problem::Problem;
use super::super::types::*;
use super::{Collector, KubeParts, Nets, NodeParts};

/// `apiServerVIP`'s word for "no virtual IP" (a cluster with several controllers that reaches
/// the first one directly, as before virtual IPs).
pub const NO_VIP: &str = "none";

/// The address the virtual IP takes when the file names none: the cluster network's tenth host
/// address, just below the first controller's in the documented layout (`.11`).
pub fn default_vip(cluster: ipnet::Ipv4Net) -> Option<Ipv4Addr> {
    cluster.hosts().nth(9)
}

impl Collector {
    /// A node with role `loadbalancer` (at most one) is the API's address, as
    /// `apiServerLoadBalancerIP` would be: certificates and kubeconfigs name it.
    pub(super) fn load_balancer_node(
        &mut self,
        spec: &ClusterSpec,
        mut k: KubeParts,
        n: &NodeParts,
    ) -> KubeParts {
        let mut lbs = spec
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.role == Role::LoadBalancer);
        let Some((i, entry)) = lbs.next() else {
            return k;
        };
        if let Some((j, _)) = lbs.next() {
            self.push(
                Problem::new(format!("spec.nodes[{j}].role"), format!("a second load balancer (spec.nodes[{i}] is one)"))
                    .hint("kubicluster makes one load-balancer VM; for an API that survives losing any one VM use several controllers and their virtual IP (spec.kubernetes.apiServerVIP)"),
            );
        }
        if !spec.kubernetes.api_server_lb_ip.is_empty() {
            self.push(
                Problem::new(
                    "spec.kubernetes.apiServerLoadBalancerIP",
                    format!("is set together with a load-balancer node (spec.nodes[{i}])"),
                )
                .hint("the load-balancer node's address is the API's: drop apiServerLoadBalancerIP, or drop the node to use your own load balancer"),
            );
            return k;
        }
        k.lb_ip = n
            .nodes
            .iter()
            .find(|node| node.name == entry.name)
            .map(|node| node.cluster_ip);
        k
    }

    pub(super) fn api_vip(
        &mut self,
        spec: &ClusterSpec,
        nets: &Nets,
        k: &KubeParts,
        n: &NodeParts,
    ) -> Option<Ipv4Addr> {
        const PATH: &str = "spec.kubernetes.apiServerVIP";
        let value = spec.kubernetes.api_server_vip.trim();
        let controllers = spec
            .nodes
            .iter()
            .filter(|n| n.role == Role::Controller)
            .count();
        let vip = match value {
            NO_VIP => return None,
            "" if k.lb_ip.is_some() || controllers < 2 => return None,
            "" => {
                let ip = default_vip(nets.cluster?)?;
                if n.cluster_ips.contains_key(&ip) {
                    self.push(
                        Problem::new(
                            PATH,
                            format!("{controllers} controllers share a virtual IP for the API, and its default address {ip} is a node's"),
                        )
                        .hint("set spec.kubernetes.apiServerVIP to a free address of the cluster network (or \"none\" to use the first controller)"),
                    );
                    return None;
                }
                return Some(ip);
            }
            v => self.ip(PATH, v)?,
        };
        if k.lb_ip.is_some() {
            self.push(
                Problem::new(
                    PATH,
                    "is set together with a load balancer (spec.kubernetes.apiServerLoadBalancerIP or a node with role loadbalancer)",
                )
                .hint("clients reach the API through one of them: the load balancer's address, or a virtual IP the controllers hold"),
            );
            return None;
        }
        self.host_in(PATH, vip, nets.cluster, "cluster network");
        if n.cluster_ips.contains_key(&vip) {
            self.push(
                Problem::new(PATH, format!("{vip} is also a node's address")).hint(
                    "the virtual IP moves between the controllers: give it an address no node has",
                ),
            );
        }
        if spec.hypervisor.template_cluster_ip == vip.to_string()
            && spec.hypervisor.template_kind == TemplateKind::Legacy
        {
            self.push(
                Problem::new(PATH, format!("{vip} is the template's cluster address"))
                    .hint("the template address must stay free for re-addressing"),
            );
        }
        Some(vip)
    }
}
