use super::*;

fn fake(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (p, v) in files {
        let path = d.path().join(p.trim_start_matches('/'));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, v).unwrap();
    }
    for ns in ["user", "mnt", "pid", "net", "ipc", "uts", "cgroup"] {
        let p = d.path().join("proc/self/ns").join(ns);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        if !p.exists() {
            fs::write(p, "").unwrap();
        }
    }
    d
}

fn status_of(r: &Report, name: &str) -> Status {
    r.checks
        .iter()
        .find(|c| c.name.starts_with(name))
        .unwrap_or_else(|| panic!("no check {name}"))
        .status
}

#[test]
fn disabled_user_namespaces_fail_with_the_sysctl() {
    let d = fake(&[
        ("/proc/sys/user/max_user_namespaces", "0\n"),
        (
            "/proc/sys/kernel/seccomp/actions_avail",
            "kill_process errno allow",
        ),
    ]);
    let r = run(d.path());
    assert_eq!(status_of(&r, "user namespaces (max"), Status::Fail);
    assert!(!r.default_profile_runs);
    let text = render(&r, false);
    assert!(
        text.contains("sysctl -w user.max_user_namespaces"),
        "{text}"
    );
}

#[test]
fn debian_and_apparmor_switches() {
    let d = fake(&[
        ("/proc/sys/user/max_user_namespaces", "100"),
        ("/proc/sys/kernel/unprivileged_userns_clone", "0"),
        (
            "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            "1",
        ),
        (
            "/proc/sys/kernel/seccomp/actions_avail",
            "kill_process errno allow",
        ),
    ]);
    let r = run(d.path());
    assert_eq!(
        status_of(&r, "unprivileged user namespaces (Debian"),
        Status::Fail
    );
    assert_eq!(
        status_of(&r, "unprivileged user namespaces (AppArmor"),
        Status::Fail
    );
    assert!(render(&r, false).contains("apparmor_restrict_unprivileged_userns=0"));
}

#[test]
fn a_healthy_fake_host_passes_and_containers_warn() {
    let d = fake(&[
        ("/proc/sys/user/max_user_namespaces", "100"),
        (
            "/proc/sys/kernel/seccomp/actions_avail",
            "kill_process errno log allow",
        ),
        ("/sys/kernel/security/landlock/abi", "7"),
        ("/proc/sys/dev/tty/legacy_tiocsti", "0"),
        ("/.dockerenv", ""),
    ]);
    let r = run(d.path());
    assert!(r.default_profile_runs, "{}", render(&r, false));
    assert_eq!(status_of(&r, "running in a container"), Status::Warn);
    assert_eq!(status_of(&r, "landlock"), Status::Ok);
    assert_eq!(status_of(&r, "TIOCSTI"), Status::Ok);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["checks"][0]["status"], "OK");
}

#[test]
fn missing_namespace_and_landlock_are_reported() {
    let d = fake(&[
        ("/proc/sys/user/max_user_namespaces", "100"),
        (
            "/proc/sys/kernel/seccomp/actions_avail",
            "kill_process errno allow",
        ),
    ]);
    fs::remove_file(d.path().join("proc/self/ns/cgroup")).unwrap();
    let r = run(d.path());
    assert_eq!(status_of(&r, "namespace: cgroup"), Status::Fail);
    assert_eq!(status_of(&r, "landlock"), Status::Fail);
}
