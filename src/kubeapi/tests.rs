//! The API client's pure parts, without a server.

use super::*;

#[test]
fn a_ready_status_counts_since_a_time_only_from_a_later_heartbeat() {
    let node = |status: &str, beat: &str| {
        serde_json::json!({"status": {"conditions": [
            {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": beat},
            {"type": "Ready", "status": status, "lastHeartbeatTime": beat},
        ]}})
    };
    let t = time::macros::datetime!(2026-12-04 19:00:00 UTC);
    let fresh = node("True", "2026-12-04T19:00:05Z");
    let stale = node("True", "2026-12-04T18:59:00Z");
    assert!(node_ready(&fresh) && node_ready(&stale));
    assert!(node_ready_since(&fresh, t));
    assert!(!node_ready_since(&stale, t), "posted before the start");
    assert!(!node_ready(&node("False", "2026-12-04T19:00:05Z")));
    assert!(!node_ready_since(&node("False", "2026-12-04T19:00:05Z"), t));
    assert!(!node_ready_since(&node("True", "garbage"), t));
}

#[test]
fn paths_of_objects() {
    let docs = documents(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: coredns, namespace: kube-system}\n---\n# empty\n---\napiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {name: runc}\nhandler: runc\n---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: x, namespace: kube-system}\n",
    )
    .unwrap();
    let paths: Vec<String> = docs.iter().map(|d| object_path(d).unwrap()).collect();
    assert_eq!(
        paths,
        [
            "/api/v1/namespaces/kube-system/serviceaccounts/coredns",
            "/apis/node.k8s.io/v1/runtimeclasses/runc",
            "/apis/policy/v1/namespaces/kube-system/poddisruptionbudgets/x",
        ]
    );
    assert_eq!(plural("NetworkPolicy"), "networkpolicies");
    assert_eq!(plural("Ingress"), "ingresses");
}

#[test]
fn a_git_version_is_read_as_its_release() {
    let v = |s| super::release_of(s).unwrap().to_string();
    assert_eq!(v("v1.37.2"), "1.37.2");
    assert_eq!(v("v1.36.3-rc.1+abc"), "1.36.3");
    assert!(super::release_of("garbage").is_err());
}
