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
                    "is set together with spec.kubernetes.apiServerLoadBalancerIP",
                )
                .hint("clients reach the API through one of them: your load balancer's address, or a virtual IP the controllers hold"),
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
