//! The CIS checks' parsers and verdicts on canned node output.

use super::*;

const CONTROLLER: &str = "F 600 root root /etc/systemd/system/kube-apiserver.service
F 600 root root /etc/systemd/system/kube-controller-manager.service
F 644 root root /etc/systemd/system/kube-scheduler.service
F 600 root root /etc/systemd/system/etcd.service
F 700 etcd etcd /var/lib/etcd
F 700 root root /etc/etcd
F 600 root root /etc/etcd/etcd-ca.pem
F 700 root root /var/lib/kubernetes
F 600 root root /var/lib/kubernetes/ca.pem
F 600 root root /var/lib/kubernetes/kube-scheduler.kubeconfig
F 600 root root /var/lib/kubernetes/kube-controller-manager.kubeconfig
P etcd etcd
A etcd --client-cert-auth
A etcd --cert-file=/run/credentials/etcd.service/server.pem
P kube-apiserver root
A kube-apiserver --authorization-mode=Node,RBAC
A kube-apiserver --profiling=false
A kube-apiserver --audit-log-maxbackup=3
S aaaa /etc/etcd/etcd-ca.pem
S bbbb /var/lib/kubernetes/ca.pem
";

fn verdict<'a>(f: &'a [Finding], title: &str) -> &'a Verdict {
    &f.iter()
        .find(|x| x.title == title)
        .unwrap_or_else(|| panic!("{title}"))
        .verdict
}

#[test]
fn controller_items_are_judged_on_what_the_node_answered() {
    let f = evaluate(Role::Controller, &parse(CONTROLLER));
    assert!(matches!(
        verdict(&f, "etcd data directory owned by etcd:etcd"),
        Verdict::Pass(_)
    ));
    assert_eq!(
        verdict(&f, "scheduler unit file 600 root:root"),
        &Verdict::Fail("/etc/systemd/system/kube-scheduler.service is 644 root:root".into())
    );
    assert!(matches!(
        verdict(&f, "etcd --client-cert-auth is true"),
        Verdict::Pass(_)
    ));
    assert!(matches!(
        verdict(&f, "etcd --auto-tls is not true"),
        Verdict::Pass(_)
    ));
    assert!(matches!(
        verdict(&f, "apiserver --authorization-mode includes RBAC"),
        Verdict::Pass(_)
    ));
    assert_eq!(
        verdict(&f, "apiserver --audit-log-maxbackup is 10 or more"),
        &Verdict::Fail("--audit-log-maxbackup=3".into())
    );
    assert!(matches!(
        verdict(&f, "apiserver --anonymous-auth is false"),
        Verdict::Waived(_, _)
    ));
    assert_eq!(
        verdict(&f, "controller-manager --profiling is false"),
        &Verdict::Fail("kube-controller-manager is not running".into())
    );
    let not_running: Vec<&str> = f.iter().filter(|x| x.not_running()).map(|x| x.id).collect();
    assert_eq!(
        not_running,
        [
            "1.3.2", "1.3.3", "1.3.4", "1.3.5", "1.3.6", "1.3.7", "1.4.2"
        ],
        "what `cis` looks at again after systemd's restart delay"
    );
    assert!(matches!(
        verdict(&f, "etcd runs as its own user"),
        Verdict::Pass(_)
    ));
    assert!(matches!(
        verdict(&f, "etcd has its own CA"),
        Verdict::Pass(_)
    ));
}

#[test]
fn worker_items_read_the_kubelet_config_with_its_defaults() {
    let out = "P kubelet root\nA kubelet --hostname-override=w1\nK authentication:\nK   anonymous:\nK     enabled: false\nK authorization:\nK   mode: Webhook\n";
    let f = evaluate(Role::Worker, &parse(out));
    assert!(matches!(
        verdict(&f, "kubelet anonymous auth is off"),
        Verdict::Pass(_)
    ));
    assert!(matches!(
        verdict(&f, "kubelet read-only port is 0"),
        Verdict::Pass(_)
    ));
    assert_eq!(
        verdict(&f, "kubelet client CA file is set"),
        &Verdict::Fail("authentication.x509.clientCAFile: not set".into())
    );
    assert_eq!(
        verdict(&f, "kubelet config file 600 root:root"),
        &Verdict::Fail("/var/lib/kubelet/kubelet-config.yaml is missing".into())
    );
    assert!(matches!(
        verdict(&f, "kubelet --hostname-override is not set"),
        Verdict::Waived(_, _)
    ));
}
