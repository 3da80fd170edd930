use super::*;

fn entry(v: &str, key: &'static str) -> Sourced {
    Sourced::new(v, "test", key)
}

fn paths(l: &Layout) -> Vec<String> {
    l.info
        .iter()
        .map(|i| format!("{} {}", i.what, i.sandbox_path))
        .collect()
}

#[test]
fn parents_come_first_and_are_created_in_tmpfs() {
    let host = tempfile::tempdir().unwrap();
    let proj = host.path().join("proj");
    std::fs::create_dir(&proj).unwrap();
    let home = host.path().display().to_string();
    let fs = Filesystem {
        rw: vec![entry(&proj.display().to_string(), "filesystem.rw")],
        tmpfs: vec![entry(&home, "filesystem.tmpfs")],
        ro: vec![entry("/usr", "filesystem.ro")],
        dev: Some(DevMode::None),
        proc: Some(false),
        ..Default::default()
    };
    let l = build(&fs, true, None, None).unwrap();
    let p = paths(&l);
    let tmpfs = p
        .iter()
        .position(|x| *x == format!("tmpfs {home}"))
        .unwrap();
    let bind = p
        .iter()
        .position(|x| x.starts_with("bind ") && x.ends_with("/proj"))
        .unwrap();
    assert!(tmpfs < bind, "{p:?}");
    // The project's mount point is created inside the tmpfs, never on the host.
    assert!(
        p.contains(&format!("create directory {}", proj.display())),
        "{p:?}"
    );
    assert_eq!(
        l.sandbox_path_of(&proj.display().to_string()),
        Some(proj.display().to_string())
    );
    assert_eq!(l.sandbox_path_of("/etc"), None);
}

#[test]
fn never_creates_inside_a_bind() {
    let fs = Filesystem {
        ro: vec![entry("/usr", "filesystem.ro")],
        tmpfs: vec![entry("/usr/does-not-exist-sbx", "filesystem.tmpfs")],
        dev: Some(DevMode::None),
        proc: Some(false),
        ..Default::default()
    };
    let e = build(&fs, true, None, None)
        .err()
        .expect("must refuse")
        .to_string();
    assert!(e.contains("never creates paths on the host"), "{e}");
    let fs = Filesystem {
        ro: vec![entry("/usr", "filesystem.ro")],
        dirs: vec![entry("/usr/newdir", "filesystem.dirs")],
        dev: Some(DevMode::None),
        proc: Some(false),
        ..Default::default()
    };
    let e = build(&fs, true, None, None)
        .err()
        .expect("must refuse")
        .to_string();
    assert!(e.contains("would be created on the host"), "{e}");
}

#[test]
fn missing_source_names_profile_and_key() {
    let fs = Filesystem {
        ro: vec![entry("/nonexistent/sbx-x", "filesystem.ro")],
        ..Default::default()
    };
    let e = build(&fs, true, None, None).err().unwrap().to_string();
    assert!(
        e.contains("test (key filesystem.ro)") && e.contains("/nonexistent/sbx-x"),
        "{e}"
    );
    let fs = Filesystem {
        ro: vec![entry("/nonexistent/sbx-x?", "filesystem.ro")],
        ..Default::default()
    };
    assert!(build(&fs, true, None, None).is_ok());
}

#[test]
fn rejects_relative_dotdot_and_root() {
    for bad in ["usr", "/usr/../etc", "/"] {
        let fs = Filesystem {
            rw: vec![entry(bad, "filesystem.rw")],
            ..Default::default()
        };
        assert!(build(&fs, true, None, None).is_err(), "{bad} accepted");
    }
}

#[test]
fn rw_wins_over_tmpfs_in_one_layer() {
    let host = tempfile::tempdir().unwrap();
    let p = host.path().display().to_string();
    let fs = Filesystem {
        rw: vec![entry(&p, "filesystem.rw")],
        tmpfs: vec![entry(&p, "filesystem.tmpfs")],
        dev: Some(DevMode::None),
        proc: Some(false),
        ..Default::default()
    };
    let l = build(&fs, true, None, None).unwrap();
    assert!(paths(&l).contains(&format!("bind {p}")));
    assert!(!paths(&l).contains(&format!("tmpfs {p}")));
}

#[test]
fn minimal_dev_and_proc() {
    let l = build(&Filesystem::default(), true, None, None).unwrap();
    let p = paths(&l);
    for want in [
        "tmpfs /dev",
        "bind /dev/null",
        "devpts /dev/pts",
        "symlink /dev/ptmx",
        "proc /proc",
    ] {
        assert!(p.iter().any(|x| x == want), "{want} missing from {p:?}");
    }
    let grant = |l: &Layout, path: &str| l.grants.iter().find(|g| g.path == path).map(|g| g.grant);
    assert_eq!(grant(&l, "/dev"), Some(Grant::Device));
    assert_eq!(grant(&l, "/dev/shm"), Some(Grant::Full));
    assert_eq!(grant(&l, "/proc"), Some(Grant::Proc));
    let l = build(&Filesystem::default(), false, None, None).unwrap();
    assert!(paths(&l).contains(&"bind /proc".to_string()));
    assert_eq!(grant(&l, "/proc"), Some(Grant::Proc));
    let fs = Filesystem {
        ro: vec![entry("/usr", "filesystem.ro")],
        rw: vec![entry("/var", "filesystem.rw")],
        tmpfs: vec![entry("/tmp", "filesystem.tmpfs")],
        ..Default::default()
    };
    let l = build(&fs, true, None, None).unwrap();
    assert_eq!(grant(&l, "/usr"), Some(Grant::ReadExec));
    assert_eq!(grant(&l, "/var"), Some(Grant::Full));
    assert_eq!(grant(&l, "/tmp"), Some(Grant::Full));
}

#[test]
fn symlinks_block_paths_through_them() {
    let fs = Filesystem {
        symlinks: [("/bin".to_string(), "usr/bin".to_string())].into(),
        dirs: vec![entry("/bin/x", "filesystem.dirs")],
        ..Default::default()
    };
    let e = build(&fs, true, None, None).err().unwrap().to_string();
    assert!(e.contains("/bin is a symlink"), "{e}");
}
