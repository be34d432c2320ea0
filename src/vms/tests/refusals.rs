//! What create-vms refuses before it creates anything, and what it names when it fails: a bad
//! template, memory beyond the host, a network or an address already in use, a full disk, a
//! replaced host-key pin.

use super::*;
#[test]
fn a_bad_template_creates_nothing() {
    let (tmp, mut c, hv) = setup();
    infra(&c, &hv).unwrap();
    let text = tmp.path().join("notes.txt");
    std::fs::write(&text, "not an image").unwrap();
    c.hypervisor.image = text.clone();
    hv.clear_calls();
    let p = plan(&c, &hv, false).unwrap();
    let err = apply(&c, &hv, &p, false).unwrap_err();
    assert!(err.to_string().ends_with("is not a qcow2 file"), "{err}");
    c.hypervisor.image = tmp.path().join("missing.qcow2");
    let err = apply(&c, &hv, &p, false).unwrap_err();
    assert!(
        err.to_string().contains("missing.qcow2: No such file"),
        "{err}"
    );
    assert!(hv.calls().is_empty(), "{:?}", hv.calls());
}

#[test]
fn memory_beyond_the_host_is_refused() {
    let (_tmp, mut c, hv) = setup();
    for n in &mut c.nodes {
        n.memory_mib = 64 * 1024 * 1024;
    }
    let p = plan(&c, &hv, false).unwrap();
    let err = check_memory(&c, &hv, &p).unwrap_err();
    let f = err.downcast_ref::<Failure>().unwrap();
    assert_eq!(f.code, crate::error::EXIT_BAD_INPUT);
    assert!(
        f.message
            .starts_with("the VMs to start need 201326592 MiB of memory"),
        "{}",
        f.message
    );
    // A remote host is asked through libvirt: its memory less a gigabyte for itself.
    c.hypervisor.uri = "qemu+ssh://root@hv2/system".into();
    hv.set_memory_mib(8192);
    for n in &mut c.nodes {
        n.memory_mib = 3072;
    }
    let err = check_memory(&c, &hv, &p).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the VMs to start need 9216 MiB of memory, the host has 7168 MiB free"
    );
    hv.set_memory_mib(16384);
    check_memory(&c, &hv, &p).unwrap();
}

#[test]
fn an_existing_network_with_another_address_is_an_error() {
    let (_tmp, c, hv) = setup();
    hv.create_network(&hypervisor::network_xml(
        "default",
        true,
        "virbr0",
        "192.168.100.0/24".parse().unwrap(),
    ))
    .unwrap();
    let err = infra(&c, &hv).unwrap_err();
    assert!(
        err.to_string()
            .contains("libvirt network default exists with another address than 192.168.122.1/24"),
        "{err}"
    );
}

#[test]
fn an_address_used_by_another_clusters_vm_is_refused() {
    let (_tmp, c, hv) = setup();
    let mut other = c.clone();
    other.name = "other".into();
    other.nodes[0].name = "other-01".into();
    let xml = hypervisor::domain_xml(
        &other,
        &other.nodes[0],
        Path::new("/d"),
        "qemu",
        "maximum",
        None,
    );
    hv.define_domain(&xml).unwrap();
    hv.clear_calls();
    let err = plan(&c, &hv, false).unwrap_err();
    let f = err.downcast_ref::<Failure>().unwrap();
    assert_eq!(f.code, crate::error::EXIT_BAD_INPUT);
    assert_eq!(
        f.message,
        "kubi-controller-01: 192.168.24.11 is already used by VM other-01 of cluster \"other\"; \
         kubi-controller-01: 192.168.122.11 is already used by VM other-01 of cluster \"other\""
    );
    assert!(hv.calls().is_empty());
}

#[test]
fn an_address_another_machine_answers_on_is_refused_before_creating() {
    let (_tmp, mut c, hv) = setup();
    // Loopback stands in for "another machine": one address with a listener, one refusing.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    c.ssh_port = listener.local_addr().unwrap().port();
    c.nodes[0].hypervisor_ip = "127.0.0.1".parse().unwrap();
    c.nodes[0].cluster_ip = "127.0.0.2".parse().unwrap();
    let p = plan(&c, &hv, false).unwrap();
    assert_eq!(p[0].action, Action::Create);
    let err = check_addresses_free(&c, &p[..1]).unwrap_err().to_string();
    assert_eq!(
        err,
        "kubi-controller-01: 127.0.0.1 already answers; kubi-controller-01: 127.0.0.2 already answers; another machine uses the address"
    );
    // Only VMs about to be created are probed.
    let kept: Vec<Planned> = p[..1]
        .iter()
        .map(|p| Planned {
            node: p.node.clone(),
            action: Action::Keep,
        })
        .collect();
    check_addresses_free(&c, &kept).unwrap();
}

#[test]
fn a_full_disk_is_named_with_where_and_how_much_is_free() {
    let f = disk_full(
        "kubi-worker-01",
        std::path::Path::new("/var/lib/libvirt/images"),
        Some(12),
    )
    .unwrap();
    assert_eq!(
        f.message,
        "kubi-worker-01: the VM is paused after an I/O error: the file system of /var/lib/libvirt/images is full (12 MiB free)"
    );
    assert!(f.hint.unwrap().contains("no --force needed"));
    assert!(
        disk_full("w", std::path::Path::new("/x"), Some(10_000)).is_none(),
        "space again: resume"
    );
    assert!(disk_full("w", std::path::Path::new("/x"), None).is_none());
}

#[test]
fn a_replaced_pin_is_an_error_and_a_tampered_known_hosts_line_is_reported() {
    let (_tmp, c, hv) = setup();
    infra(&c, &hv).unwrap();
    apply(&c, &hv, &plan(&c, &hv, false).unwrap(), false).unwrap();
    assert!(write_known_hosts(&c).unwrap().is_empty());
    let d = hv.domain("kubi-worker-01").unwrap().unwrap();
    let recorded = d
        .host_key_fingerprint()
        .expect("fingerprint in the metadata");
    assert!(recorded.starts_with("SHA256:"), "{recorded}");
    // known_hosts tampered: reported, rewritten from the pins.
    let kh = c.known_hosts();
    let text = std::fs::read_to_string(&kh).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("kubi-worker-02,"))
        .unwrap()
        .to_string();
    std::fs::write(&kh, text.replace(&line, "kubi-worker-02,192.168.122.22 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBogusBogusBogusBogusBogusBogusBogusBogusBog")).unwrap();
    assert_eq!(write_known_hosts(&c).unwrap(), ["kubi-worker-02"]);
    assert_eq!(std::fs::read_to_string(&kh).unwrap(), text);
    // The pin replaced by another key: plan refuses, naming both fingerprints.
    let pin = crate::vms::pins::host_key_path(&c, "kubi-worker-01");
    std::fs::remove_file(&pin).unwrap();
    let _ = std::fs::remove_file(pin.with_extension("pub"));
    crate::sshkeys::ensure_key(&pin, "another").unwrap();
    let err = plan(&c, &hv, false).unwrap_err();
    let f = err.downcast_ref::<Failure>().unwrap();
    assert!(
        f.message.contains("kubi-worker-01: the pinned host key") && f.message.contains(&recorded),
        "{}",
        f.message
    );
    assert!(f.hint.as_deref().unwrap().contains("--force"));
}

/// A hypervisor that cannot run the cluster's guests is refused before any network, pool or
/// key is made, naming the guest type and libvirt's reason.
#[test]
fn guests_the_hypervisor_cannot_run_are_refused_before_anything_is_made() {
    let (_tmp, mut c, hv) = setup();
    c.hypervisor.domain_type = crate::spec::DomainTypeChoice::Kvm;
    hv.cannot_run("kvm");
    let err = infra(&c, &hv).unwrap_err();
    let f = err
        .downcast_ref::<crate::error::Failure>()
        .expect("a Failure");
    assert!(
        f.to_string()
            .starts_with("libvirt at fake:// cannot run kvm guests (x86_64, q35): "),
        "{f}"
    );
    assert!(format!("{f:?}").contains("domainType: qemu"), "{f:?}");
    assert!(hv.calls().is_empty(), "{:?}", hv.calls());
    assert!(!c.cluster_dir().join("ssh").exists());
    // TCG guests run there: prepared as usual.
    c.hypervisor.domain_type = crate::spec::DomainTypeChoice::Qemu;
    assert_eq!(infra(&c, &hv).unwrap(), 4, "2 networks, pool, SSH key");
}

/// A template built for emulated guests (its kernel without the speculation mitigations) is
/// refused for KVM guests before anything is made; for TCG guests it is what they boot.
#[test]
fn a_template_built_for_emulated_guests_is_refused_for_kvm_ones() {
    let (_tmp, mut c, hv) = setup();
    std::fs::write(
        crate::image::boot_record(c.image_path()),
        format!("{}\n", crate::image::EMULATED_KERNEL_ARGS),
    )
    .unwrap();
    c.hypervisor.domain_type = crate::spec::DomainTypeChoice::Kvm;
    let err = infra(&c, &hv).unwrap_err();
    let f = err
        .downcast_ref::<crate::error::Failure>()
        .expect("a Failure");
    assert!(
        f.to_string().contains("was built for emulated guests")
            && f.to_string().contains("mitigations=off"),
        "{f}"
    );
    assert!(format!("{f:?}").contains("image build --force"), "{f:?}");
    assert!(hv.calls().is_empty(), "{:?}", hv.calls());
    assert!(!c.cluster_dir().join("ssh").exists());
    c.hypervisor.domain_type = crate::spec::DomainTypeChoice::Qemu;
    assert_eq!(infra(&c, &hv).unwrap(), 4, "2 networks, pool, SSH key");
    // Without the record (a template kubicluster did not build): any guest.
    crate::image::forget_boot_record(c.image_path()).unwrap();
    assert!(!crate::image::built_for_emulation(c.image_path()));
}
