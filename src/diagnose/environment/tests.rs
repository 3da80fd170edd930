use super::*;

/// A plain host: user namespaces on, no filter, no LSM, the initial user namespace.
fn plain() -> Host {
    Host {
        seccomp: Some(0),
        seccomp_filters: Some(0),
        euid: Some(1000),
        cap_eff: Some(0),
        initial_userns: Some(true),
        max_user_namespaces: Some(63429),
        ..Host::default()
    }
}

fn docker() -> Host {
    Host {
        seccomp: Some(2),
        seccomp_filters: Some(1),
        container: Some(Container::Docker),
        container_mark: Some("/.dockerenv".into()),
        proc_masks: vec![
            "/proc/kcore".into(),
            "/proc/keys".into(),
            "/proc/sys".into(),
        ],
        ..plain()
    }
}

#[test]
fn a_plain_host_has_no_environment_cause() {
    let h = plain();
    assert_eq!(clone_refused(&h, Errno::EPERM), None);
    assert_eq!(ids_refused(&h, Errno::EPERM, true), None);
    assert_eq!(mount_refused(&h, Errno::EPERM), None);
    assert_eq!(proc_refused(&h, Errno::EPERM), None);
    assert_eq!(hostname_refused(&h, Errno::EPERM), None);
    let hint = clone_unexplained(&h);
    assert!(hint.contains("user.max_user_namespaces = 63429"), "{hint}");
    assert!(hint.contains("no seccomp filter"), "{hint}");
}

#[test]
fn docker_seccomp_is_named_with_every_flag_the_container_needs() {
    let v = clone_refused(&docker(), Errno::EPERM).unwrap();
    assert!(v.cause.contains("seccomp filter"), "{v:?}");
    assert!(v.cause.contains("Seccomp_filters: 1"), "{v:?}");
    assert!(v.cause.contains("Docker container (/.dockerenv)"), "{v:?}");
    assert!(
        v.cause.contains("user.max_user_namespaces = 63429"),
        "{v:?}"
    );
    assert!(
        v.fix.starts_with(
            "docker run --security-opt seccomp=unconfined --security-opt systempaths=unconfined"
        ),
        "{v:?}"
    );
    assert!(v.fix.contains("--proc host"), "{v:?}");
    assert!(
        !v.fix.contains("sysctl"),
        "a sysctl is not the cause: {v:?}"
    );
}

#[test]
fn kubernetes_gets_a_security_context() {
    let h = Host {
        container: Some(Container::Kubernetes),
        apparmor: Some("cri-containerd.apparmor.d (enforce)".into()),
        ..docker()
    };
    let v = clone_refused(&h, Errno::EPERM).unwrap();
    assert!(
        v.fix.contains(
            "securityContext: {seccompProfile: {type: Unconfined}, appArmorProfile: \
             {type: Unconfined}, procMount: Unmasked"
        ),
        "{v:?}"
    );
}

#[test]
fn the_debian_sysctl_comes_before_a_filter() {
    let h = Host {
        unprivileged_userns_clone: Some("0".into()),
        ..docker()
    };
    let v = clone_refused(&h, Errno::EPERM).unwrap();
    assert!(v.fix.contains("unprivileged_userns_clone=1"), "{v:?}");
}

#[test]
fn inside_sbx_the_fix_is_the_outer_profile() {
    let h = Host {
        seccomp: Some(2),
        seccomp_filters: Some(1),
        sandbox: Some(Sandbox::Sbx),
        initial_userns: Some(false),
        max_user_namespaces: Some(0),
        ..plain()
    };
    let v = clone_refused(&h, Errno::EPERM).unwrap();
    assert!(v.cause.contains("inside an sbx sandbox"), "{v:?}");
    assert!(v.fix.contains("--profile nest"), "{v:?}");
    // With nested_userns alone, the mount calls and landlock stop it next.
    let v = mount_refused(&h, Errno::EPERM).unwrap();
    assert!(v.cause.contains("denies mount"), "{v:?}");
    assert!(v.fix.contains("--profile nest"), "{v:?}");
    let unfiltered = Host {
        seccomp: Some(0),
        ..h.clone()
    };
    let v = mount_refused(&unfiltered, Errno::EPERM).unwrap();
    assert!(v.cause.contains("landlock"), "{v:?}");
    // A zero limit inside a user namespace is not the host's sysctl.
    let v = clone_refused(&h, Errno::ENOSPC).unwrap();
    assert!(v.cause.contains("runs in a user namespace"), "{v:?}");
    assert!(!v.fix.contains("sysctl"), "{v:?}");
}

#[test]
fn limits_on_the_host_and_above_a_namespace() {
    let h = Host {
        max_user_namespaces: Some(0),
        ..plain()
    };
    let v = clone_refused(&h, Errno::ENOSPC).unwrap();
    assert!(
        v.fix.contains("sysctl -w user.max_user_namespaces"),
        "{v:?}"
    );
    let h = Host {
        initial_userns: Some(false),
        sandbox: Some(Sandbox::Bubblewrap),
        ..plain()
    };
    let v = clone_refused(&h, Errno::ENOSPC).unwrap();
    assert!(v.cause.contains("inside bubblewrap"), "{v:?}");
    assert!(v.fix.contains("--disable-userns"), "{v:?}");
}

#[test]
fn ubuntu_apparmor_gets_a_profile_for_this_binary() {
    let h = Host {
        apparmor_restrict: Some("1".into()),
        apparmor: Some("unconfined".into()),
        ..plain()
    };
    for v in [
        ids_refused(&h, Errno::EACCES, false).unwrap(),
        ids_refused(&h, Errno::EPERM, true).unwrap(),
        clone_refused(&h, Errno::EPERM).unwrap(),
    ] {
        assert!(v.cause.contains("apparmor_restrict"), "{v:?}");
        assert!(v.fix.contains("userns,"), "{v:?}");
        let exe = own_path().display().to_string();
        assert!(v.fix.contains(&format!("profile sbx {exe} ")), "{v:?}");
        assert!(v.fix.contains("apparmor_parser -r"), "{v:?}");
    }
    assert_eq!(mount_refused(&h, Errno::EPERM), None, "unconfined");
}

#[test]
fn root_without_setfcap_is_told_from_apparmor() {
    let h = Host {
        euid: Some(0),
        cap_eff: Some(0),
        apparmor_restrict: Some("1".into()),
        ..plain()
    };
    let v = ids_refused(&h, Errno::EPERM, true).unwrap();
    assert!(v.cause.contains("CAP_SETFCAP"), "{v:?}");
    assert!(v.fix.contains("--cap-add SETFCAP"), "{v:?}");
    // setgroups comes before uid_map: the capability is not its cause.
    let v = ids_refused(&h, Errno::EPERM, false).unwrap();
    assert!(v.cause.contains("apparmor_restrict"), "{v:?}");
}

#[test]
fn a_container_apparmor_profile_denies_mount() {
    let h = Host {
        seccomp: Some(0),
        apparmor: Some("docker-default (enforce)".into()),
        ..docker()
    };
    let v = mount_refused(&h, Errno::EACCES).unwrap();
    assert!(v.cause.contains("docker-default (enforce)"), "{v:?}");
    assert!(
        v.fix.contains("--security-opt apparmor=unconfined"),
        "{v:?}"
    );
    assert!(!v.fix.contains("seccomp"), "no filter here: {v:?}");
}

#[test]
fn masked_proc_lists_masks_and_offers_proc_host() {
    let mut h = docker();
    h.container = Some(Container::Podman);
    h.proc_masks = (0..7).map(|i| format!("/proc/m{i}")).collect();
    let v = proc_refused(&h, Errno::EPERM).unwrap();
    assert!(
        v.cause.contains("7 mount(s)") && v.cause.contains("and 3 more"),
        "{v:?}"
    );
    assert!(v.fix.contains("podman run"), "{v:?}");
    assert!(v.fix.contains("--security-opt unmask=ALL"), "{v:?}");
    assert!(v.fix.contains("--proc host"), "{v:?}");
    h.container = None;
    h.container_mark = None;
    let v = proc_refused(&h, Errno::EPERM).unwrap();
    assert!(v.fix.starts_with("run sbx with --proc host"), "{v:?}");
    // A mask named by the host is printed escaped.
    h.proc_masks = vec!["/proc/\x1b[2Jx".into()];
    let v = proc_refused(&h, Errno::EPERM).unwrap();
    assert!(!v.cause.contains('\x1b'), "{v:?}");
}

#[test]
fn a_filtered_sethostname_names_the_filter() {
    let v = hostname_refused(&docker(), Errno::EPERM).unwrap();
    assert!(v.cause.contains("sethostname"), "{v:?}");
    assert!(v.fix.contains("NAME?"), "{v:?}");
}
