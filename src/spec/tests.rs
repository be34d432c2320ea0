//! Spec parsing, validation and precedence. Error texts are snapshot-tested: they are UI.

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn problems(
    file: Option<&Path>,
    ov: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<String> {
    match resolve(file, ov, env) {
        Err(SpecError::Invalid(Problems(p))) => p.iter().map(|p| p.to_string()).collect(),
        other => panic!("expected validation problems, got {other:?}"),
    }
}

#[test]
fn embedded_default_is_the_original_layout() {
    let c = validate(&default_cluster_file()).unwrap();
    assert_eq!(c.name, "kubicluster");
    let names: Vec<_> = c.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        ["kubi-controller-01", "kubi-worker-01", "kubi-worker-02"]
    );
    assert_eq!(c.nodes[0].cluster_ip.to_string(), "192.168.24.11");
    assert_eq!(c.nodes[0].hypervisor_ip.to_string(), "192.168.122.11");
    assert_eq!(c.nodes[2].cluster_ip.to_string(), "192.168.24.22");
    assert_eq!(c.kubernetes.service_ip().to_string(), "10.32.0.1");
    assert_eq!(c.kubernetes.api_server_url(), "https://192.168.24.11:6443");
    assert_eq!(c.networks.bridge, "vmbr24dev");
    assert_eq!(
        c.certs_dir(),
        std::env::current_dir()
            .unwrap()
            .join("work/kubicluster/certs_and_configs")
    );
}

#[test]
fn good_fixture_resolves_with_per_node_values() {
    let (c, source) = resolve(
        Some(&fixture("good-3-5.yaml")),
        &Overrides::default(),
        &no_env,
    )
    .unwrap();
    assert_eq!(source, Source::File(fixture("good-3-5.yaml")));
    assert_eq!(c.controllers().count(), 3);
    assert_eq!(c.workers().count(), 5);
    assert_eq!(c.nodes[0].memory_mib, 2048);
    assert_eq!(c.nodes[1].memory_mib, 4096);
    assert_eq!(c.nodes[3].vcpus, 2);
    assert_eq!(c.kubernetes.api_server_url(), "https://192.168.24.10:6443");
    assert_eq!(c.pki.key_algorithm, KeyAlgorithm::Rsa2048);
}

#[test]
fn every_problem_is_reported_at_once() {
    let p = problems(
        Some(&fixture("bad-everything.yaml")),
        &Overrides::default(),
        &no_env,
    );
    insta::assert_snapshot!(p.join("\n"));
}

#[test]
fn overlapping_ranges_and_bad_cidrs() {
    let ov = Overrides {
        pod_cidr: Some("10.32.0.0/16".into()),
        service_cidr: Some("10.32.0.0/24".into()),
        cluster_dns: Some("10.32.0.1".into()),
        ..Overrides::default()
    };
    let p = problems(None, &ov, &no_env);
    insta::assert_snapshot!(p.join("\n"));
    let ov = Overrides {
        pod_cidr: Some("10.200.0.1/16".into()),
        service_cidr: Some("10.32.0.0/33".into()),
        ..Overrides::default()
    };
    let p = problems(None, &ov, &no_env);
    assert!(
        p[0].contains("has host bits set (help: did you mean 10.200.0.0/16?)"),
        "{p:?}"
    );
    assert!(
        p[1].contains("\"10.32.0.0/33\" is not an IPv4 CIDR"),
        "{p:?}"
    );
}

#[test]
fn malformed_node_flags_and_no_controller() {
    let ov = Overrides {
        workers: vec![
            "w1,192.168.24.21".into(),
            "w2,192.168.24.22,192.168.122.22".into(),
        ],
        ..Overrides::default()
    };
    let p = problems(None, &ov, &no_env);
    insta::assert_snapshot!(p.join("\n"));
}

#[test]
fn reserved_names_and_ip_clash_between_flags() {
    let ov = Overrides {
        controllers: vec!["c1,192.168.24.11,192.168.122.11".into()],
        workers: vec!["admin,192.168.24.11,192.168.122.21".into()],
        ..Overrides::default()
    };
    let p = problems(None, &ov, &no_env);
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p[0].starts_with("spec.nodes[1].name: \"admin\" would make the PKI file admin.pem, which the cluster's admin files already use"),
        "{p:?}"
    );
    assert!(
        p[1].starts_with("spec.nodes[1].clusterIP: 192.168.24.11 is already used by spec.nodes[0]"),
        "{p:?}"
    );
}

#[test]
fn every_name_whose_pki_files_collide_is_refused_with_the_file() {
    let ov = Overrides {
        controllers: vec![
            "c1,192.168.24.11,192.168.122.11".into(),
            // A controller's files are etcd-server-/etcd-peer-<name>: "admin" is fine there.
            "admin,192.168.24.12,192.168.122.12".into(),
        ],
        workers: vec![
            "ca-key,192.168.24.21,192.168.122.21".into(),
            "w,192.168.24.22,192.168.122.22".into(),
            "w-key,192.168.24.23,192.168.122.23".into(),
            "etcd-server-c1,192.168.24.24,192.168.122.24".into(),
            "fine,192.168.24.25,192.168.122.25".into(),
        ],
        ..Overrides::default()
    };
    let p = problems(None, &ov, &no_env);
    assert_eq!(
        p,
        [
            "spec.nodes[2].name: \"ca-key\" would make the PKI file ca-key.pem, which the cluster's ca files already use (help: pick another node name)",
            "spec.nodes[4].name: \"w-key\" would make the PKI file w-key.pem, which node w already use (help: pick another node name)",
            "spec.nodes[5].name: \"etcd-server-c1\" would make the PKI file etcd-server-c1.pem, which node c1 already use (help: pick another node name)",
        ]
    );
}

#[test]
fn precedence_flag_over_env_over_legacy_env_over_file_over_default() {
    let file = fixture("good-3-5.yaml");
    // file beats default
    let (c, _) = resolve(Some(&file), &Overrides::default(), &no_env).unwrap();
    assert_eq!(c.name, "lab");
    // legacy env beats file
    let legacy = |k: &str| match k {
        "CLUSTER_NAME" => Some("from-legacy".to_string()),
        "KUBERNETES_VERSION" => Some("1.36.3".to_string()),
        "VMEM" => Some("2097152".to_string()),
        _ => None,
    };
    let (c, _) = resolve(Some(&file), &Overrides::default(), &legacy).unwrap();
    assert_eq!(c.name, "from-legacy");
    assert_eq!(c.kubernetes.version.to_string(), "1.36.3");
    assert_eq!(c.nodes[1].memory_mib, 2048, "VMEM is KiB");
    assert_eq!(
        c.nodes[0].memory_mib, 2048,
        "a node's own value wins over defaults"
    );
    // flags (and KUBICLUSTER_* env, which clap merges into the same field) beat legacy env
    let ov = Overrides {
        name: Some("from-flag".into()),
        ..Overrides::default()
    };
    let (c, _) = resolve(Some(&file), &ov, &legacy).unwrap();
    assert_eq!(c.name, "from-flag");
    assert_eq!(c.kubernetes.version.to_string(), "1.36.3");
}

#[test]
fn node_flags_replace_file_nodes() {
    let ov = Overrides {
        controllers: vec!["kubi-controller-01,192.168.24.11,192.168.122.11".into()],
        workers: vec!["kubi-worker-03,192.168.24.23,192.168.122.23".into()],
        ..Overrides::default()
    };
    let (c, source) = resolve(Some(&fixture("good-3-5.yaml")), &ov, &no_env).unwrap();
    assert!(matches!(source, Source::File(_)));
    let names: Vec<_> = c.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["kubi-controller-01", "kubi-worker-03"]);
    let (_, source) = resolve(None, &ov, &no_env).unwrap();
    assert_eq!(source, Source::Flags);
}

#[test]
fn bad_legacy_env_number_is_reported() {
    let env = |k: &str| (k == "VCPUS").then(|| "two".to_string());
    let p = problems(None, &Overrides::default(), &env);
    assert_eq!(
        p,
        ["$VCPUS: \"two\" is not a number (help: unset VCPUS or give a whole number)"]
    );
}

#[test]
fn resolved_spec_round_trips_through_yaml() {
    let c = validate(&default_cluster_file()).unwrap();
    let yaml = to_yaml(&c.file);
    let (back, unknown) = parse(&yaml).unwrap();
    assert!(unknown.is_empty());
    assert_eq!(validate(&back).unwrap(), c);
}

#[test]
fn type_errors_name_the_field() {
    let err = parse("apiVersion: kubicluster.io/v1alpha1\nkind: Cluster\nmetadata: {name: x}\nspec:\n  nodeDefaults:\n    vcpus: many\n")
        .unwrap_err();
    assert!(err.contains("spec.nodeDefaults.vcpus"), "{err}");
}

#[test]
fn hostnames_follow_rfc1123() {
    for ok in ["a", "kubi-worker-01", "0abc", &"a".repeat(63)] {
        assert!(is_dns_label(ok), "{ok}");
    }
    for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
        assert!(!is_dns_label(bad), "{bad}");
    }
}

#[test]
fn ports_dns_and_memory_that_cannot_work_are_refused() {
    let mut f = crate::spec::default_cluster_file();
    f.spec.kubernetes.api_server_port = 2379;
    f.spec.kubernetes.cluster_dns = "10.32.0.255".into();
    f.spec.node_defaults.memory_mib = 4_000_000_000;
    f.spec.etcd.election_timeout_ms = 200;
    let Err(Problems(p)) = validate(&f) else {
        panic!("accepted")
    };
    let text: Vec<String> = p.iter().map(|x| x.to_string()).collect();
    let all = text.join("\n");
    assert!(
        all.contains("spec.kubernetes.apiServerPort: 2379 is also an etcd port"),
        "{all}"
    );
    assert!(all.contains("spec.kubernetes.clusterDNS: 10.32.0.255 is the network or broadcast address of 10.32.0.0/24"), "{all}");
    assert!(
        all.contains("memoryMiB: 4000000000 MiB is more than any host has"),
        "{all}"
    );
    assert!(
        all.contains("spec.etcd: heartbeatIntervalMs 100 and electionTimeoutMs 200 cannot work"),
        "{all}"
    );
}

#[test]
fn an_out_of_range_legacy_variable_is_refused_not_clamped() {
    let env = |k: &str| (k == "ETCD_CLIENT_PORT").then(|| "99999".to_string());
    let p = problems(None, &Overrides::default(), &env);
    assert_eq!(
        p,
        [
            "$ETCD_CLIENT_PORT: 99999 is out of range (help: give a number from 0 to 65535, or unset ETCD_CLIENT_PORT)"
        ]
    );
}

#[test]
fn every_empty_default_is_decided_when_the_spec_is_resolved() {
    let cwd = std::env::current_dir().unwrap();
    let c = validate(&default_cluster_file()).unwrap();
    let h = &c.hypervisor;
    assert_eq!(
        h.image,
        cwd.join("work/images/kubicluster-bookworm.qcow2"),
        "the image `image build` makes"
    );
    assert_eq!(h.storage_dir, PathBuf::from("/var/lib/libvirt/images"));
    assert_eq!(h.cpu_mode, None, "chosen with the domain type");
    assert_eq!(h.boot_timeout, std::time::Duration::from_secs(300));
    assert_eq!(h.template, Template::Kubicluster);
    assert_eq!(c.artifacts.dir, None);
    assert_eq!(c.artifacts.deb_mirror, None, "the host's own apt sources");
    let v: Version = "3.6.0".parse().unwrap();
    assert!(
        c.versions.etcd >= v,
        "versions are typed: {}",
        c.versions.etcd
    );

    // The lab keeps its pool below the cluster's directory; a legacy template's addresses are
    // addresses; a chosen CPU mode and directories are kept.
    let mut file = default_cluster_file();
    let h = &mut file.spec.hypervisor;
    h.mode = HypervisorMode::Lab;
    h.template_kind = TemplateKind::Legacy;
    h.template_host_key = "/keys/template.pub".into();
    h.cpu_mode = "host-model".into();
    file.spec.artifacts.deb_mirror = "http://mirror.invalid/debian".into();
    let c = validate(&file).unwrap();
    assert_eq!(
        c.hypervisor.storage_dir,
        cwd.join("work/kubicluster/lab/pool")
    );
    assert_eq!(c.hypervisor.cpu_mode.as_deref(), Some("host-model"));
    assert_eq!(
        c.hypervisor.template,
        Template::Legacy {
            host_key: "/keys/template.pub".into(),
            ip: Ipv4Addr::new(192, 168, 122, 254),
            cluster_ip: Ipv4Addr::new(192, 168, 24, 254),
        }
    );
    assert!(c.hypervisor.is_legacy());
    assert_eq!(
        c.artifacts.deb_mirror.as_deref(),
        Some("http://mirror.invalid/debian")
    );
}

#[test]
fn a_remembered_builds_dir_and_pause_image_follow_another_release() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    let env = |k: &str| (k == "KUBICLUSTER_CACHE_DIR").then(|| cache.display().to_string());
    let ov = |v: &str| Overrides {
        artifacts_source: Some(ArtifactSource::Build),
        kubernetes_version: Some(v.into()),
        ..Overrides::default()
    };
    for v in ["1.36.3", "1.37.2"] {
        std::fs::create_dir_all(build_sets::output_dir(&cache, v)).unwrap();
    }
    let mine_dir = d.path().join("my-build");
    std::fs::create_dir_all(&mine_dir).unwrap();
    // `up` at 1.36.3 records the resolved spec: the build's dir and pause image in it.
    let (old, _) = resolve(None, &ov("1.36.3"), &env).unwrap();
    let file = d.path().join("remembered.yaml");
    std::fs::write(&file, to_yaml(&old.file)).unwrap();
    assert!(to_yaml(&old.file).contains("kubernetes-v1.36.3"));
    // Resolved again at 1.37.2 (`upgrade --to`): both follow the release.
    let (new, _) = resolve(Some(&file), &ov("1.37.2"), &env).unwrap();
    let dir = build_sets::output_dir(&cache, "1.37.2");
    assert_eq!(new.artifacts.dir.as_deref(), Some(dir.as_path()));
    assert_eq!(
        new.containerd.sandbox_image,
        "kubicluster.local/pause:v1.37.2"
    );
    assert!(
        new.images.iter().all(|p| p.starts_with(&dir)),
        "{:?}",
        new.images
    );
    // A dir and an image the user chose stay.
    let mut f = old.file.clone();
    f.spec.artifacts.dir = mine_dir.display().to_string();
    f.spec.containerd.sandbox_image = "registry.example/pause:3.10".into();
    std::fs::write(&file, to_yaml(&f)).unwrap();
    let (mine, _) = resolve(Some(&file), &ov("1.37.2"), &env).unwrap();
    assert_eq!(mine.artifacts.dir.as_deref(), Some(mine_dir.as_path()));
    assert_eq!(mine.containerd.sandbox_image, "registry.example/pause:3.10");
}

/// Several controllers share a virtual IP for the API by default (the cluster network's tenth
/// address): the certificates, the kubeconfigs and the issuer name it. `none` turns it off, a
/// load balancer's address replaces it, and an address that cannot work is refused.
#[test]
fn several_controllers_reach_the_api_through_a_virtual_ip() {
    let vip: std::net::Ipv4Addr = "192.168.24.10".parse().unwrap();
    let c = validate(&example_cluster_file(3, 1)).unwrap();
    assert_eq!(c.kubernetes.api_server_vip, Some(vip));
    assert_eq!(c.kubernetes.api_server_url(), "https://192.168.24.10:6443");
    assert_eq!(c.file.spec.kubernetes.api_server_vip, "192.168.24.10");
    let kubernetes = crate::pki::catalog::certificates(&c)
        .into_iter()
        .find(|s| s.file == "kubernetes")
        .unwrap();
    assert!(kubernetes.ip_addresses.contains(&std::net::IpAddr::V4(vip)));
    for kc in crate::pki::catalog::kubeconfigs(&c) {
        assert!(
            kc.server.starts_with("https://127.0.0.1:")
                || kc.server == c.kubernetes.api_server_url(),
            "{kc:?}"
        );
    }
    // One controller: no virtual IP unless asked for.
    let one = validate(&default_cluster_file()).unwrap();
    assert_eq!(one.kubernetes.api_server_vip, None);
    assert_eq!(
        one.kubernetes.api_server_url(),
        "https://192.168.24.11:6443"
    );
    let mut f = default_cluster_file();
    f.spec.kubernetes.api_server_vip = "192.168.24.9".into();
    assert_eq!(
        validate(&f).unwrap().kubernetes.api_server_vip,
        Some("192.168.24.9".parse().unwrap())
    );
    // Turned off, or replaced by the user's load balancer.
    let mut f = example_cluster_file(3, 1);
    f.spec.kubernetes.api_server_vip = "none".into();
    let c = validate(&f).unwrap();
    assert_eq!(c.kubernetes.api_server_vip, None);
    assert_eq!(c.kubernetes.api_server_url(), "https://192.168.24.11:6443");
    let mut f = example_cluster_file(3, 1);
    f.spec.kubernetes.api_server_lb_ip = "192.168.24.5".into();
    let c = validate(&f).unwrap();
    assert_eq!(c.kubernetes.api_server_vip, None);
    assert_eq!(c.kubernetes.api_server_url(), "https://192.168.24.5:6443");
    // Refused: both at once, a node's address, outside the network, the default taken.
    let refused = |vip: &str, lb: &str, first_controller: u8| {
        let mut f = example_cluster_file(3, 1);
        f.spec.kubernetes.api_server_vip = vip.into();
        f.spec.kubernetes.api_server_lb_ip = lb.into();
        f.spec.nodes[0].cluster_ip = format!("192.168.24.{first_controller}");
        let Err(Problems(p)) = validate(&f) else {
            panic!("accepted {vip} {lb}")
        };
        p.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        refused("192.168.24.9", "192.168.24.5", 11)
            .contains("apiServerVIP: is set together with a load balancer (spec.kubernetes.apiServerLoadBalancerIP or a node with role loadbalancer)")
    );
    assert!(
        refused("192.168.24.12", "", 11)
            .contains("apiServerVIP: 192.168.24.12 is also a node's address")
    );
    assert!(
        refused("10.1.1.1", "", 11)
            .contains("apiServerVIP: 10.1.1.1 is outside the cluster network 192.168.24.0/24")
    );
    let all = refused("", "", 10);
    assert!(
        all.contains("its default address 192.168.24.10 is a node's")
            && all.contains("help: set spec.kubernetes.apiServerVIP"),
        "{all}"
    );
}

/// A node with role `loadbalancer` is the API's address (no virtual IP by default), small
/// unless sized, and without a PKI file of its own; one at most, and not beside a load
/// balancer of the user's or an explicit virtual IP.
#[test]
fn a_load_balancer_node_is_the_apis_address() {
    let lb = |name: &str, ip: u8| NodeEntry {
        hypervisor: String::new(),
        name: name.into(),
        role: Role::LoadBalancer,
        cluster_ip: format!("192.168.24.{ip}"),
        hypervisor_ip: format!("192.168.122.{ip}"),
        vcpus: None,
        memory_mib: None,
    };
    let mut f = example_cluster_file(3, 1);
    f.spec.nodes.push(lb("kubi-lb", 5));
    let c = validate(&f).unwrap();
    assert_eq!(c.kubernetes.api_server_vip, None);
    assert_eq!(c.kubernetes.api_server_url(), "https://192.168.24.5:6443");
    let node = c.node("kubi-lb").unwrap();
    assert_eq!((node.vcpus, node.memory_mib), (1, 512));
    assert_eq!(c.controllers().count(), 3);
    assert_eq!(c.workers().count(), 1);
    // Its address is in the API server's certificate.
    let api = crate::pki::catalog::certificates(&c)
        .into_iter()
        .find(|s| s.file == "kubernetes")
        .unwrap();
    let lb_ip: std::net::IpAddr = "192.168.24.5".parse().unwrap();
    assert!(api.ip_addresses.contains(&lb_ip), "{api:?}");
    // Every kubeconfig for a client outside the controllers names it.
    for kc in crate::pki::catalog::kubeconfigs(&c) {
        if !kc.server.contains("127.0.0.1") {
            assert_eq!(kc.server, "https://192.168.24.5:6443", "{}", kc.file);
        }
    }
    let problems = |f: &ClusterFile| {
        let Err(Problems(p)) = validate(f) else {
            panic!("accepted")
        };
        p.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut two = f.clone();
    two.spec.nodes.push(lb("kubi-lb-2", 6));
    let p = problems(&two);
    assert!(
        p.contains("spec.nodes[5].role: a second load balancer (spec.nodes[4] is one)")
            && p.contains("help: kubicluster makes one load-balancer VM"),
        "{p}"
    );
    let mut theirs = f.clone();
    theirs.spec.kubernetes.api_server_lb_ip = "192.168.24.7".into();
    assert!(problems(&theirs).contains(
        "apiServerLoadBalancerIP: is set together with a load-balancer node (spec.nodes[4])"
    ));
    let mut vip = f.clone();
    vip.spec.kubernetes.api_server_vip = "192.168.24.9".into();
    assert!(problems(&vip).contains("apiServerVIP: is set together with a load balancer"));
    // On the command line: `--loadbalancer` beside the other node flags, not alone.
    let ov = Overrides {
        controllers: vec!["kubi-controller-01,192.168.24.11,192.168.122.11".into()],
        load_balancer: Some("kubi-lb,192.168.24.5,192.168.122.5".into()),
        ..Default::default()
    };
    let (c, _) = resolve(None, &ov, &no_env).unwrap();
    assert_eq!(c.node("kubi-lb").unwrap().role, Role::LoadBalancer);
    assert_eq!(c.kubernetes.api_server_url(), "https://192.168.24.5:6443");
    let alone = Overrides {
        load_balancer: ov.load_balancer.clone(),
        ..Default::default()
    };
    let e = format!("{:#}", resolve(None, &alone, &no_env).unwrap_err());
    assert!(
        e.contains("--loadbalancer: given without the other nodes"),
        "{e}"
    );
}

#[test]
fn a_cluster_shrunk_to_one_node_of_a_role_is_warned_about() {
    let (was, _) = resolve(
        Some(&fixture("good-3-5.yaml")),
        &Overrides::default(),
        &no_env,
    )
    .unwrap();
    let shrink = |keep: &dyn Fn(&Node) -> bool| {
        let mut now = was.clone();
        now.nodes.retain(|n| keep(n));
        shrink_warnings(&was.file, &now)
    };
    // Nothing removed, or several left of each role: no warning.
    assert!(shrink(&|_| true).is_empty());
    assert!(shrink(&|n| n.name != was.nodes[0].name).is_empty());
    // One controller left of three, no worker left of five.
    let first = was.controllers().next().unwrap().name.clone();
    let warnings = shrink(&|n| n.name == first);
    assert_eq!(
        warnings,
        [
            format!(
                "warning: {first} is the last controller of its kind (the cluster had 3): losing it loses etcd and the API"
            ),
            "warning: no worker is left (the cluster had 5)".to_string(),
        ]
    );
}

#[test]
fn several_hypervisors_resolve_from_the_defaults_and_bad_ones_are_reported() {
    let yaml = r#"
apiVersion: kubicluster.io/v1alpha1
kind: Cluster
metadata: {name: spread}
spec:
  networks: {cluster: {mode: bridged, bridge: br-kubi}}
  hypervisor: {uri: "qemu:///system", storagePool: kubi}
  hypervisors:
    - {name: hv1}
    - {name: hv2, uri: "qemu+ssh://root@hv2/system", storageDir: /srv/kubi, memoryMiB: 16384}
  nodes:
    - {name: c1, role: controller, clusterIP: 192.168.24.11, hypervisorIP: 192.168.122.11, hypervisor: hv2}
    - {name: w1, role: worker, clusterIP: 192.168.24.21, hypervisorIP: 192.168.122.21}
"#;
    let (file, unknown) = parse(yaml).unwrap();
    assert!(unknown.is_empty(), "{unknown:?}");
    let c = validate(&file).unwrap();
    let hosts: Vec<_> = c
        .hosts
        .iter()
        .map(|h| (h.name.as_str(), h.uri.as_str(), h.storage_pool.as_str()))
        .collect();
    assert_eq!(
        hosts,
        [
            ("hv1", "qemu:///system", "kubi"),
            ("hv2", "qemu+ssh://root@hv2/system", "kubi"),
        ]
    );
    assert_eq!(
        c.hosts[0].storage_dir,
        PathBuf::from("/var/lib/libvirt/images")
    );
    assert_eq!(c.hosts[1].storage_dir, PathBuf::from("/srv/kubi"));
    assert_eq!(c.hosts[1].memory_mib, Some(16384));
    assert_eq!(c.nodes[0].hypervisor.as_deref(), Some("hv2"));
    assert_eq!(c.nodes[1].hypervisor, None);
    // The resolved file keeps the list (what `validate` prints).
    assert!(to_yaml(&c.file).contains("hypervisors:"));

    // Without the list: one host named `default` from spec.hypervisor.
    let one = validate(&default_cluster_file()).unwrap();
    assert_eq!(one.hosts.len(), 1);
    assert_eq!(one.hosts[0].name, DEFAULT_HOST);
    assert_eq!(one.hosts[0].uri, one.hypervisor.uri);

    let bad = yaml
        .replace(
            "{name: hv1}",
            "{name: hv2, uri: \"qemu+ssh://root@hv2/system\", memoryMiB: 100}",
        )
        .replace("hypervisor: hv2}", "hypervisor: hv3}")
        .replace("mode: bridged, ", "")
        .replace(
            "uri: \"qemu:///system\"",
            "uri: \"qemu+libssh2://root@hv9/system\"",
        );
    let (file, _) = parse(&bad).unwrap();
    let got: Vec<String> = validate(&file)
        .unwrap_err()
        .0
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(
        got,
        [
            "spec.hypervisor.uri: the libssh2 transport is not supported (help: use qemu+ssh:// (libvirt runs OpenSSH; the same keyfile= works))",
            "spec.hypervisors[0].memoryMiB: 100 MiB cannot hold a node (help: give at least 512 MiB, or leave it out to use what libvirt reports free)",
            "spec.hypervisors[1].name: duplicate hypervisor name \"hv2\" (help: spec.hypervisors[0] has the same name)",
            "spec.hypervisors[1].uri: qemu+ssh://root@hv2/system is also spec.hypervisors[0] (help: each entry is its own libvirt host; set uri (an empty one means spec.hypervisor.uri))",
            "spec.networks.cluster.mode: an isolated libvirt network stays on one host; the nodes on other hypervisors would not reach it (help: use mode: bridged with a bridge of the same name on every hypervisor, joined at layer 2 (a shared segment or VXLAN))",
            "spec.nodes[0].hypervisor: no hypervisor named \"hv3\" (help: name one of spec.hypervisors (hv2, hv2), or leave it out to let kubicluster place the node)",
        ]
    );
}

#[test]
fn one_entry_in_spec_hypervisors_is_the_hypervisor() {
    let mut file = default_cluster_file();
    file.spec.hypervisors = vec![HostEntry {
        name: "big".into(),
        uri: "qemu+ssh://root@big/system".into(),
        storage_pool: "fast".into(),
        storage_dir: "/srv/fast".into(),
        memory_mib: None,
    }];
    let c = validate(&file).unwrap();
    assert_eq!(c.hypervisor.uri, "qemu+ssh://root@big/system");
    assert_eq!(c.hypervisor.storage_pool, "fast");
    assert_eq!(c.storage_dir(), Path::new("/srv/fast"));
    assert_eq!(c.hosts[0].name, "big");
}

/// The cluster network's MTU: taken when sane, refused (with the usual values in the hint)
/// outside 1280..9000.
#[test]
fn the_cluster_network_mtu_is_taken_or_refused_with_a_hint() {
    let with = |mtu: Option<u16>| {
        let mut f = default_cluster_file();
        f.spec.networks.cluster.mtu = mtu;
        validate(&f)
    };
    assert_eq!(with(Some(1450)).unwrap().networks.mtu, Some(1450));
    assert_eq!(with(None).unwrap().networks.mtu, None);
    let p = match with(Some(1000)) {
        Err(Problems(p)) => p.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        other => panic!("expected validation problems, got {other:?}"),
    };
    assert!(
        p.iter().any(
            |p| p.contains("spec.networks.cluster.mtu: 1000 is outside 1280..9000")
                && p.contains("1450 below a VXLAN")
        ),
        "{p:?}"
    );
}
