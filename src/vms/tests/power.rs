//! Health, autostart, stop and start on the fake.

use super::*;

#[test]
fn unhealthy_names_each_node_and_its_problem() {
    let row = |node: &str, role: &str, vm: &str, ssh: &str| NodeStatus {
        node: node.into(),
        hypervisor: "default".into(),
        role: role.into(),
        vm: vm.into(),
        cluster_ip: String::new(),
        hypervisor_ip: String::new(),
        ssh: ssh.into(),
        units: Vec::new(),
        ready: None,
        holds_vip: None,
        api_server: None,
        lb_servers: None,
    };
    let mut w1 = row("w1", "worker", "running", "ok");
    w1.units = vec![
        ("kubelet.service".into(), "enabled".into(), "failed".into()),
        // Never started (no binary): disabled, not a fault.
        (
            "kube-proxy.service".into(),
            "disabled".into(),
            "inactive".into(),
        ),
    ];
    w1.ready = Some("NotReady".into());
    // Several controllers: each one's own API server is asked; one whose unit is down is
    // reported once (by its unit), one that runs but is not ready by its /readyz.
    let mut c1 = row("c1", "controller", "running", "ok");
    c1.api_server = Some("ready".into());
    let mut c3 = row("c3", "controller", "running", "ok");
    c3.api_server = Some("not ready: HTTP 500, failing etcd".into());
    let mut c4 = row("c4", "controller", "running", "ok");
    c4.units = vec![(
        "kube-apiserver.service".into(),
        "enabled".into(),
        "failed".into(),
    )];
    c4.api_server = Some("no answer: Connection refused".into());
    // The load balancer: one server UP is enough; none UP (DOWN, or rising) is a problem.
    let mut lb1 = row("lb1", "loadbalancer", "running", "ok");
    lb1.lb_servers = Some(vec![
        ("c1".into(), "UP".into()),
        ("c4".into(), "DOWN".into()),
    ]);
    let mut lb2 = row("lb2", "loadbalancer", "running", "ok");
    lb2.lb_servers = Some(vec![
        ("c1".into(), "DOWN".into()),
        ("c2".into(), "DOWN 1/2".into()),
    ]);
    let rows = [
        c1,
        row("c2", "controller", "paused", "-"),
        c3,
        c4,
        row("w2", "worker", "running", "WRONG HOST KEY"),
        w1,
        lb1,
        lb2,
    ];
    assert_eq!(
        unhealthy(&rows),
        [
            "c2 (VM paused)",
            "c3 (API server not ready: HTTP 500, failing etcd)",
            "c4 (kube-apiserver not active)",
            "w2 (SSH: WRONG HOST KEY)",
            "w1 (kubelet not active)",
            "w1 (node NotReady)",
            "lb2 (no API server UP behind it)"
        ]
    );
}

/// haproxy's `show stat` CSV (2.6, columns cut after `status`): the backend's servers and
/// their states; the frontend, the backend's own row and other proxies are not servers.
#[test]
fn the_load_balancers_servers_are_read_from_haproxys_statistics() {
    let csv = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight\n\
kube-apiserver,FRONTEND,,,0,3,20000,12,1,2,0,0,0,,,,,OPEN,\n\
kube-apiservers,kubi-controller-01,0,0,2,3,,9,1,2,,0,,0,0,0,0,UP,1\n\
kube-apiservers,kubi-controller-02,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1\n\
kube-apiservers,kubi-controller-03,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP 1/2,1\n\
kube-apiservers,BACKEND,0,0,2,3,2000,12,1,2,0,0,,0,0,0,0,UP,2\n\
\n";
    assert_eq!(
        parse_lb_stat(csv),
        [
            ("kubi-controller-01".to_string(), "UP".to_string()),
            ("kubi-controller-02".to_string(), "DOWN".to_string()),
            ("kubi-controller-03".to_string(), "UP 1/2".to_string()),
        ]
    );
    assert!(parse_lb_stat("").is_empty());
}

#[test]
fn exactly_one_controller_holds_the_virtual_ip() {
    let row = |node: &str, holds_vip: Option<bool>| NodeStatus {
        node: node.into(),
        hypervisor: "default".into(),
        role: "controller".into(),
        vm: "running".into(),
        cluster_ip: String::new(),
        hypervisor_ip: String::new(),
        ssh: "ok".into(),
        units: Vec::new(),
        ready: None,
        holds_vip,
        api_server: None,
        lb_servers: None,
    };
    assert_eq!(vip_holders(&[row("c1", None), row("c2", None)]), None);
    assert_eq!(
        vip_holders(&[
            row("c1", Some(false)),
            row("c2", Some(true)),
            row("c3", None)
        ]),
        Some(vec!["c2"])
    );
    assert_eq!(
        vip_holders(&[row("c1", Some(false)), row("c2", Some(false))]),
        Some(vec![])
    );
}

#[test]
fn autostart_follows_the_spec_once() {
    let (_tmp, mut c, hv) = setup();
    infra(&c, &hv).unwrap();
    apply(&c, &hv, &plan(&c, &hv, false).unwrap(), false).unwrap();
    hv.clear_calls();
    let mut g = Gate::quiet(false);
    converge_autostart(&c, &hv, &mut g).unwrap();
    assert_eq!(g.changes.len(), c.nodes.len(), "{:?}", g.changes);
    assert!(hv.domain("kubi-worker-01").unwrap().unwrap().autostart);
    let mut g = Gate::quiet(false);
    converge_autostart(&c, &hv, &mut g).unwrap();
    assert!(g.changes.is_empty(), "a second run changes nothing");
    // Turned off in the spec: off on every domain; a dry run only says so.
    c.hypervisor.autostart = false;
    let mut g = Gate::quiet(true);
    converge_autostart(&c, &hv, &mut g).unwrap();
    assert_eq!(g.changes.len(), c.nodes.len());
    assert!(hv.domain("kubi-worker-01").unwrap().unwrap().autostart);
    converge_autostart(&c, &hv, &mut Gate::quiet(false)).unwrap();
    assert!(!hv.domain("kubi-worker-01").unwrap().unwrap().autostart);
}

#[test]
fn stop_shuts_down_cleanly_and_powers_off_only_what_hangs() {
    let (_tmp, c, hv) = setup();
    infra(&c, &hv).unwrap();
    apply(&c, &hv, &plan(&c, &hv, false).unwrap(), false).unwrap();
    hv.stop_domain("kubi-worker-02").unwrap();
    hv.ignore_acpi("kubi-worker-01");
    hv.clear_calls();
    let names: Vec<String> = c.nodes.iter().map(|n| n.name.clone()).collect();
    let mut g = Gate::quiet(false);
    let got = shutdown(&c, &hv, &names, Duration::from_millis(600), false, &mut g).unwrap();
    let got: std::collections::BTreeMap<_, _> = got.into_iter().collect();
    assert!(
        matches!(got["kubi-controller-01"], Stopped::Clean(_)),
        "{got:?}"
    );
    assert_eq!(
        got["kubi-worker-01"],
        Stopped::PoweredOff { timed_out: true }
    );
    assert_eq!(got["kubi-worker-02"], Stopped::AlreadyOff);
    assert_eq!(
        hv.calls(),
        [
            "shutdown_domain kubi-controller-01",
            "shutdown_domain kubi-worker-01",
            "stop_domain kubi-worker-01"
        ]
    );
    for n in &names {
        assert_eq!(hv.domain(n).unwrap().unwrap().state, VmState::Off);
    }
    // start: every VM again, nothing twice; --force powers off without asking the guest.
    let started = power_on(&c, &hv, &names, &mut Gate::quiet(false)).unwrap();
    assert_eq!(started, names);
    assert!(
        power_on(&c, &hv, &names, &mut Gate::quiet(false))
            .unwrap()
            .is_empty()
    );
    hv.clear_calls();
    let got = shutdown(
        &c,
        &hv,
        &names[..1],
        Duration::from_secs(60),
        true,
        &mut Gate::quiet(false),
    )
    .unwrap();
    assert_eq!(got[0].1, Stopped::PoweredOff { timed_out: false });
    assert_eq!(hv.calls(), ["stop_domain kubi-controller-01"]);
    // A domain that is not there is an error with a hint, not a silent skip.
    let e = power_on(&c, &hv, &["nope".to_string()], &mut Gate::quiet(false)).unwrap_err();
    assert!(e.to_string().contains("nope: no VM of that name"), "{e:#}");
}
