//! XML rendering (parsed back, snapshot), MAC derivation, and the libvirt implementation against
//! libvirt's in-process `test:///default` driver.

use super::*;
use crate::spec::{Overrides, resolve};

fn cluster() -> Cluster {
    let ov = Overrides {
        work_dir: Some("/srv/kubi".into()),
        ..Overrides::default()
    };
    resolve(None, &ov, &|_| None).unwrap().0
}

#[test]
fn macs_are_stable_local_and_distinct() {
    let a = mac_address("kubicluster", "kubi-worker-01", 0);
    assert_eq!(a, mac_address("kubicluster", "kubi-worker-01", 0));
    assert!(a.starts_with("52:54:00:"));
    let all: std::collections::BTreeSet<_> =
        ["kubi-controller-01", "kubi-worker-01", "kubi-worker-02"]
            .iter()
            .flat_map(|n| {
                [
                    mac_address("kubicluster", n, 0),
                    mac_address("kubicluster", n, 1),
                ]
            })
            .collect();
    assert_eq!(all.len(), 6);
    assert_ne!(
        a,
        mac_address("other", "kubi-worker-01", 0),
        "the cluster name is part of the MAC"
    );
}

#[test]
fn domain_xml_parses_and_carries_what_the_vm_needs() {
    let c = cluster();
    let node = &c.nodes[1];
    let xml = domain_xml(
        &c,
        node,
        Path::new("/var/lib/libvirt/images/kubi-worker-01.qcow2"),
        "qemu",
        "maximum",
        Some("SHA256:pinned-by-the-caller".into()),
    );
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let root = doc.root_element();
    assert_eq!(root.attribute("type"), Some("qemu"));
    let info = DomainInfo {
        name: node.name.clone(),
        state: VmState::Off,
        xml: xml.clone(),
        autostart: false,
    };
    assert_eq!(info.owner().as_deref(), Some("kubicluster"));
    assert_eq!(
        info.host_key_fingerprint().as_deref(),
        Some("SHA256:pinned-by-the-caller"),
        "the fingerprint the caller passed is the one kept"
    );
    assert_eq!(info.size(), Some((1, 4096)));
    let ifaces: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("interface"))
        .collect();
    assert_eq!(ifaces.len(), 2);
    let source = |i: usize| {
        ifaces[i]
            .children()
            .find(|n| n.has_tag_name("source"))
            .unwrap()
            .attribute("network")
    };
    assert_eq!(source(0), Some("default"));
    assert_eq!(source(1), Some("vm-cluster-net-dev"));
    let entries: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("entry"))
        .map(|n| n.attribute("name").unwrap())
        .collect();
    assert_eq!(
        entries,
        [
            "opt/io.kubicluster/identity",
            "opt/io.kubicluster/ssh_host_ed25519_key"
        ]
    );
    assert!(doc.descendants().any(|n| n.has_tag_name("rng")));
    insta::assert_snapshot!(xml);
}

#[test]
fn bridged_mode_attaches_the_host_bridge() {
    let ov = Overrides {
        cluster_net_mode: Some(crate::spec::ClusterNetMode::Bridged),
        ..Overrides::default()
    };
    let c = resolve(None, &ov, &|_| None).unwrap().0;
    let xml = domain_xml(
        &c,
        &c.nodes[0],
        Path::new("/d.qcow2"),
        "kvm",
        "host-passthrough",
        None,
    );
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let bridge = doc
        .descendants()
        .find(|n| n.has_tag_name("source") && n.attribute("bridge").is_some())
        .unwrap();
    assert_eq!(bridge.attribute("bridge"), Some("vmbr24"));
}

#[test]
fn domain_type_follows_kvm_and_overrides() {
    let mut c = cluster();
    assert_eq!(
        domain_type(&c, true),
        ("kvm", "host-passthrough".to_string())
    );
    assert_eq!(domain_type(&c, false), ("qemu", "maximum".to_string()));
    c.hypervisor.domain_type = DomainTypeChoice::Qemu;
    assert_eq!(domain_type(&c, true).0, "qemu");
    c.hypervisor.cpu_mode = Some("host-model".into());
    assert_eq!(domain_type(&c, true).1, "host-model");
}

#[test]
fn network_xml_for_nat_and_isolated() {
    let nat = network_xml(
        "default",
        true,
        "virbr0",
        "192.168.122.0/24".parse().unwrap(),
    );
    let info = NetworkInfo {
        name: "default".into(),
        active: true,
        xml: nat.clone(),
    };
    assert_eq!(
        info.address(),
        Some((
            "192.168.122.1".parse().unwrap(),
            "255.255.255.0".parse().unwrap()
        ))
    );
    assert!(nat.contains("<forward mode='nat'/>"));
    let iso = network_xml(
        "vm-cluster-net-dev",
        false,
        "vmbr24dev",
        "192.168.24.0/24".parse().unwrap(),
    );
    assert!(!iso.contains("forward"), "the cluster network is isolated");
    insta::assert_snapshot!(iso);
}

/// The real libvirt implementation against the in-process test driver.
#[test]
fn libvirt_test_driver_round_trip() {
    let lv = libvirt::Libvirt::connect("test:///default").expect("libvirt test driver");
    let c = cluster();
    // networks
    let xml = network_xml(
        "kubi-net",
        false,
        "kubibr0",
        "192.168.24.0/24".parse().unwrap(),
    );
    assert!(lv.network("kubi-net").unwrap().is_none());
    lv.create_network(&xml).unwrap();
    let n = lv.network("kubi-net").unwrap().unwrap();
    assert!(n.active);
    assert_eq!(n.address().unwrap().0.to_string(), "192.168.24.1");
    lv.remove_network("kubi-net").unwrap();
    assert!(lv.network("kubi-net").unwrap().is_none());
    // pool and volumes
    let pool_dir = tempfile::tempdir().unwrap();
    lv.create_pool(&pool_xml("kubi-pool", pool_dir.path()))
        .unwrap();
    let p = lv.pool("kubi-pool").unwrap().unwrap();
    assert!(p.active);
    assert_eq!(p.path, pool_dir.path());
    let v = lv
        .create_volume(
            "kubi-pool",
            &overlay_volume_xml(
                "kubi-worker-01.qcow2",
                8 << 30,
                Path::new("/tmp/template.qcow2"),
            ),
        )
        .unwrap();
    assert_eq!(v.capacity, 8 << 30);
    assert_eq!(
        lv.volume("kubi-pool", "kubi-worker-01.qcow2")
            .unwrap()
            .unwrap()
            .capacity,
        8 << 30
    );
    lv.delete_volume("kubi-pool", "kubi-worker-01.qcow2")
        .unwrap();
    assert!(
        lv.volume("kubi-pool", "kubi-worker-01.qcow2")
            .unwrap()
            .is_none()
    );
    // the host's memory (the test driver's fixed figure)
    assert!(lv.memory_mib().unwrap().is_some_and(|m| m > 0));
    // The test driver has no upload stream (the VM lab tiers upload for real): a failed upload
    // says why and leaves no half-made volume behind.
    let data = vec![7u8; 4096];
    let xml = file_volume_xml("kubi-worker-01.identity", data.len() as u64, 0o600);
    let err = lv
        .upload_volume("kubi-pool", &xml, &mut data.as_slice(), data.len() as u64)
        .unwrap_err();
    assert!(
        format!("{err:#}").starts_with("upload into volume kubi-pool/kubi-worker-01.identity: "),
        "{err:#}"
    );
    assert!(
        lv.volume("kubi-pool", "kubi-worker-01.identity")
            .unwrap()
            .is_none()
    );
    // domains (the test driver only runs type='test' guests)
    let xml = domain_xml(
        &c,
        &c.nodes[0],
        Path::new("/tmp/disk.qcow2"),
        "test",
        "maximum",
        None,
    );
    lv.define_domain(&xml).unwrap();
    let d = lv.domain("kubi-controller-01").unwrap().unwrap();
    assert_eq!(d.state, VmState::Off);
    assert_eq!(
        d.owner().as_deref(),
        Some("kubicluster"),
        "metadata survives libvirt"
    );
    assert_eq!(d.size(), Some((1, 4096)));
    lv.start_domain("kubi-controller-01").unwrap();
    assert_eq!(
        lv.domain("kubi-controller-01").unwrap().unwrap().state,
        VmState::Running
    );
    assert!(
        lv.domains()
            .unwrap()
            .iter()
            .any(|d| d.name == "kubi-controller-01")
    );
    lv.stop_domain("kubi-controller-01").unwrap();
    lv.undefine_domain("kubi-controller-01").unwrap();
    assert!(lv.domain("kubi-controller-01").unwrap().is_none());
    // the test driver's own domain is not ours
    assert_eq!(lv.domain("test").unwrap().unwrap().owner(), None);
}

#[test]
fn unreachable_uri_is_an_error() {
    let err = libvirt::Libvirt::connect("qemu:///system?socket=/nonexistent/libvirt-sock")
        .err()
        .unwrap();
    assert!(
        err.to_string().to_lowercase().contains("socket") || err.to_string().contains("connect"),
        "{err}"
    );
}

#[test]
fn remote_uris_are_told_from_local_ones() {
    for local in [
        "qemu:///system",
        "qemu:///session",
        "qemu+unix:///system?socket=/run/x/libvirt-sock",
        "test:///default",
        "test:///tmp/hv1.xml",
    ] {
        assert!(!is_remote(local), "{local}");
    }
    for remote in [
        "qemu+ssh://root@hv2/system",
        "qemu+ssh://root@hv2/system?keyfile=/root/.ssh/id_ed25519",
        "qemu+tls://hv2.example/system",
        "qemu+tcp://10.0.0.2/system",
        "qemu+libssh2://root@hv2/system",
        "qemu://hv2/system",
    ] {
        assert!(is_remote(remote), "{remote}");
    }
}

/// With `networks.cluster.mtu` the cluster NIC (and only it) carries the MTU, in both modes.
#[test]
fn the_cluster_nic_carries_the_cluster_network_mtu() {
    for bridged in [false, true] {
        let mut c = cluster();
        c.networks.mtu = Some(1450);
        if bridged {
            c.networks.mode = crate::spec::ClusterNetMode::Bridged;
        }
        let xml = domain_xml(
            &c,
            &c.nodes[1],
            Path::new("/d.qcow2"),
            "qemu",
            "maximum",
            None,
        );
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let mtus: Vec<(String, Option<&str>)> = doc
            .descendants()
            .filter(|n| n.has_tag_name("interface"))
            .map(|i| {
                let mac = i
                    .children()
                    .find(|n| n.has_tag_name("mac"))
                    .and_then(|m| m.attribute("address"))
                    .unwrap()
                    .to_string();
                let mtu = i
                    .children()
                    .find(|n| n.has_tag_name("mtu"))
                    .and_then(|m| m.attribute("size"));
                (mac, mtu)
            })
            .collect();
        assert_eq!(
            mtus,
            [
                (mac_address("kubicluster", "kubi-worker-01", 0), None),
                (
                    mac_address("kubicluster", "kubi-worker-01", 1),
                    Some("1450")
                ),
            ],
            "bridged: {bridged}"
        );
    }
}
