//! Template rendering (minijinja). Templates are embedded in the binary, undefined variables are
//! errors, and a template's trailing newline is kept.

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

const TEMPLATES: &[(&str, &str)] = &[
    (
        "cluster.yaml.j2",
        include_str!("../templates/cluster.yaml.j2"),
    ),
    (
        "domain.xml.j2",
        include_str!("../vm-templates/domain.xml.j2"),
    ),
    (
        "network.xml.j2",
        include_str!("../vm-templates/network.xml.j2"),
    ),
    ("pool.xml.j2", include_str!("../vm-templates/pool.xml.j2")),
    (
        "file-volume.xml.j2",
        include_str!("../vm-templates/file-volume.xml.j2"),
    ),
    (
        "sandbox.conf.j2",
        include_str!("../templates/sandbox.conf.j2"),
    ),
    (
        "controller/etcd.service.j2",
        include_str!("../templates/controller/etcd.service.j2"),
    ),
    (
        "controller/etcd-bootstrap.env.j2",
        include_str!("../templates/controller/etcd-bootstrap.env.j2"),
    ),
    (
        "controller/kube-apiserver.service.j2",
        include_str!("../templates/controller/kube-apiserver.service.j2"),
    ),
    (
        "controller/kube-controller-manager.service.j2",
        include_str!("../templates/controller/kube-controller-manager.service.j2"),
    ),
    (
        "controller/kube-scheduler.service.j2",
        include_str!("../templates/controller/kube-scheduler.service.j2"),
    ),
    (
        "controller/kubicluster-vip.conf.j2",
        include_str!("../templates/controller/kubicluster-vip.conf.j2"),
    ),
    (
        "controller/kubicluster-vip.service.j2",
        include_str!("../templates/controller/kubicluster-vip.service.j2"),
    ),
    (
        "controller/kubicluster-check-apiserver.j2",
        include_str!("../templates/controller/kubicluster-check-apiserver.j2"),
    ),
    (
        "loadbalancer/kubicluster-api-lb.cfg.j2",
        include_str!("../templates/loadbalancer/kubicluster-api-lb.cfg.j2"),
    ),
    (
        "loadbalancer/kubicluster-api-lb.service.j2",
        include_str!("../templates/loadbalancer/kubicluster-api-lb.service.j2"),
    ),
    (
        "controller/kube-scheduler.yaml.j2",
        include_str!("../templates/controller/kube-scheduler.yaml.j2"),
    ),
    (
        "controller/audit-policy.yaml.j2",
        include_str!("../templates/controller/audit-policy.yaml.j2"),
    ),
    (
        "controller/admission.yaml.j2",
        include_str!("../templates/controller/admission.yaml.j2"),
    ),
    (
        "controller/kube-apiserver-to-kubelet.yaml.j2",
        include_str!("../templates/controller/kube-apiserver-to-kubelet.yaml.j2"),
    ),
    (
        "worker/containerd-config-v3.toml.j2",
        include_str!("../templates/worker/containerd-config-v3.toml.j2"),
    ),
    (
        "worker/containerd-config-v2.toml.j2",
        include_str!("../templates/worker/containerd-config-v2.toml.j2"),
    ),
    (
        "worker/containerd.service.j2",
        include_str!("../templates/worker/containerd.service.j2"),
    ),
    (
        "worker/kubelet-config.yaml.j2",
        include_str!("../templates/worker/kubelet-config.yaml.j2"),
    ),
    (
        "worker/kubelet.service.j2",
        include_str!("../templates/worker/kubelet.service.j2"),
    ),
    (
        "worker/kube-proxy-config.yaml.j2",
        include_str!("../templates/worker/kube-proxy-config.yaml.j2"),
    ),
    (
        "worker/kube-proxy.service.j2",
        include_str!("../templates/worker/kube-proxy.service.j2"),
    ),
    (
        "worker/10-bridge.conflist.j2",
        include_str!("../templates/worker/10-bridge.conflist.j2"),
    ),
    (
        "worker/pod-routes.service.j2",
        include_str!("../templates/worker/pod-routes.service.j2"),
    ),
    (
        "addons/runtimeclasses.yaml.j2",
        include_str!("../templates/addons/runtimeclasses.yaml.j2"),
    ),
    (
        "addons/coredns.yaml.j2",
        include_str!("../templates/addons/coredns.yaml.j2"),
    ),
    (
        "volume.xml.j2",
        include_str!("../vm-templates/volume.xml.j2"),
    ),
];

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    // XML templates escape the five XML special characters (and nothing else, so paths stay
    // readable); other templates render values as they are.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_formatter(|out, state, value| {
        if state.name().ends_with(".xml.j2") {
            let escaped = value
                .to_string()
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('\'', "&apos;")
                .replace('"', "&quot;");
            out.write_str(&escaped).map_err(minijinja::Error::from)
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .unwrap_or_else(|e| panic!("embedded template {name} is invalid: {e}"));
    }
    env
}

/// Render the embedded template `name` with `context`.
pub fn render<C: Serialize>(name: &str, context: &C) -> Result<String, minijinja::Error> {
    environment().get_template(name)?.render(context)
}

#[cfg(test)]
mod tests {
    #[test]
    fn xml_values_are_escaped() {
        let xml = crate::hypervisor::pool_xml("p", std::path::Path::new("/tmp/a&b'<c>"));
        assert!(
            xml.contains("<path>/tmp/a&amp;b&apos;&lt;c&gt;</path>"),
            "{xml}"
        );
        roxmltree::Document::parse(&xml).unwrap();
    }

    #[test]
    fn every_embedded_template_parses() {
        let env = super::environment();
        for (name, _) in super::TEMPLATES {
            env.get_template(name).unwrap();
        }
    }
}
