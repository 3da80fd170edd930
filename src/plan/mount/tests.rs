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
        proc: Some(ProcMode::Off),
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
        proc: Some(ProcMode::Off),
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
        proc: Some(ProcMode::Off),
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
        proc: Some(ProcMode::Off),
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

// ---- sources resolved to the directory they name (issue #21) ----

use crate::profile::{Overlay, OverlayMode, ProcMode};

fn overlay(src: &str, dst: Option<&str>) -> Overlay {
    Overlay {
        src: entry(src, "filesystem.overlay"),
        dst: dst.map(str::to_string),
        mode: Some(OverlayMode::Rw),
        lower: Vec::new(),
    }
}

/// A host tree `real/app/sub` with `link -> real`, and a directory for overlay layers.
struct Host {
    _dir: tempfile::TempDir,
    root: String,
    layers: std::path::PathBuf,
}

fn host() -> Host {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    std::fs::create_dir_all(root.join("real/app/sub")).unwrap();
    std::fs::create_dir(root.join("layers")).unwrap();
    std::os::unix::fs::symlink("real", root.join("link")).unwrap();
    std::os::unix::fs::symlink("real/app", root.join("applink")).unwrap();
    Host {
        layers: root.join("layers"),
        root: root.display().to_string(),
        _dir: dir,
    }
}

fn fs_with(rw: &[String], ro: &[String], overlays: Vec<Overlay>) -> Filesystem {
    Filesystem {
        rw: rw.iter().map(|p| entry(p, "filesystem.rw")).collect(),
        ro: ro.iter().map(|p| entry(p, "filesystem.ro")).collect(),
        overlay: overlays,
        dev: Some(DevMode::None),
        proc: Some(ProcMode::Off),
        ..Default::default()
    }
}

/// The mounts of a layout (no directories), as "what path".
fn mounts(l: &Layout) -> Vec<String> {
    paths(l)
        .into_iter()
        .filter(|p| !p.starts_with("create "))
        .collect()
}

#[test]
fn every_spelling_of_a_directory_overlays_it_where_it_is() {
    let h = host();
    let real = format!("{}/real/app", h.root);
    for spelling in [
        real.clone(),
        format!("{}/link/app", h.root),
        format!("{}/applink", h.root),
        format!("{real}/"),
        format!("{}/./real/./app/.", h.root),
        format!("{}/link/app/", h.root),
    ] {
        // The default profile's `${CWD}`, canonical, beside `--overlay SPELLING`.
        let fs = fs_with(
            std::slice::from_ref(&real),
            &[],
            vec![overlay(&spelling, None)],
        );
        let l = build(&fs, true, None, Some(&h.layers)).unwrap();
        let m = mounts(&l);
        let at_real: Vec<_> = m.iter().filter(|p| p.ends_with(&real)).collect();
        assert_eq!(at_real, [&format!("overlay {real}")], "{spelling}: {m:?}");
        assert!(
            !m.iter().any(|p| p.starts_with("bind ")),
            "{spelling}: {m:?}"
        );
        assert_eq!(l.overlays.len(), 1);
        assert_eq!(l.overlays[0].destination, real, "{spelling}");
        assert_eq!(l.sandbox_path_of(&real), Some(real.clone()), "{spelling}");
        assert_eq!(
            l.sandbox_path_of(&format!("{real}/sub")),
            Some(format!("{real}/sub"))
        );
        // The spelling used still leads there, through a symlink in sbx's own tmpfs.
        let logical = spelling.trim_end_matches('/').replace("/./", "/");
        let logical = logical.trim_end_matches("/.");
        if logical != real {
            assert!(
                m.contains(&format!("symlink to the resolved source {logical}")),
                "{spelling}: {m:?}"
            );
        }
    }
}

#[test]
fn a_bind_through_a_symlink_is_the_same_place_as_its_directory() {
    let h = host();
    let real = format!("{}/real/app", h.root);
    let logical = format!("{}/link/app", h.root);
    // `--ro-bind $PWD` reached through a symlink over the profile's writable `${CWD}`: the
    // read-only bind is what is left there, whatever order the layers came in.
    for (rw, ro) in [(&real, &logical), (&logical, &real)] {
        let fs = fs_with(std::slice::from_ref(rw), std::slice::from_ref(ro), vec![]);
        let l = build(&fs, true, None, None).unwrap();
        let m = mounts(&l);
        let binds: Vec<_> = m.iter().filter(|p| p.contains(" bind ")).collect();
        assert_eq!(binds, [&format!("read-only bind {real}")], "{m:?}");
        assert!(!m.contains(&format!("bind {real}")), "{m:?}");
    }
    // One writable bind through the symlink: mounted where the directory is, warned about.
    let fs = fs_with(std::slice::from_ref(&logical), &[], vec![]);
    let l = build(&fs, true, None, None).unwrap();
    assert!(
        mounts(&l).contains(&format!("bind {real}")),
        "{:?}",
        mounts(&l)
    );
    assert!(
        l.warnings.iter().any(|w| w.contains("resolves to")),
        "{:?}",
        l.warnings
    );
    // A destination of its own is kept as given.
    let fs = fs_with(&[format!("{logical}:/mnt/app")], &[], vec![]);
    let l = build(&fs, true, None, None).unwrap();
    assert!(mounts(&l).contains(&"bind /mnt/app".to_string()));
}

#[test]
fn no_writable_bind_reaches_an_overlaid_directory() {
    let h = host();
    let app = format!("{}/real/app", h.root);
    let sub = format!("{app}/sub");
    let layout = |rw: &str, o: Overlay| {
        let fs = fs_with(&[rw.to_string()], &[], vec![o]);
        build(&fs, true, None, Some(&h.layers)).unwrap()
    };
    // The working directory inside the overlaid one: the overlay shows it, no bind.
    let l = layout(&sub, overlay(&app, None));
    assert_eq!(mounts(&l), [format!("overlay {app}")]);
    assert_eq!(l.sandbox_path_of(&sub), Some(sub.clone()));
    // The overlaid directory inside the working directory: mounted on top of the bind.
    let l = layout(&app, overlay(&sub, None));
    assert_eq!(
        mounts(&l),
        [format!("bind {app}"), format!("overlay {sub}")]
    );
    assert_eq!(l.sandbox_path_of(&app), Some(app.clone()));
    // Overlaid elsewhere: the writable binds show it read-only, and the command starts in
    // the overlay when it is there.
    let l = layout(&sub, overlay(&app, Some("/view")));
    assert_eq!(
        mounts(&l),
        ["overlay /view".to_string(), format!("read-only bind {sub}")]
    );
    assert_eq!(l.sandbox_path_of(&sub), Some("/view/sub".into()));
    assert!(l.warnings.iter().any(|w| w.contains("is read-only")));
    let l = layout(&app, overlay(&sub, Some("/view")));
    assert_eq!(
        mounts(&l),
        [
            "overlay /view".to_string(),
            format!("bind {app}"),
            format!("read-only bind {sub}")
        ]
    );
    assert!(l.warnings.iter().any(|w| w.contains("is read-only")));
    // Of two overlays holding it, the one that shows it in place decides.
    let fs = fs_with(
        std::slice::from_ref(&sub),
        &[],
        vec![overlay(&sub, Some("/view")), overlay(&app, None)],
    );
    let l = build(&fs, true, None, Some(&h.layers)).unwrap();
    assert_eq!(
        mounts(&l),
        ["overlay /view".to_string(), format!("overlay {app}")]
    );
    // A read-only bind inside an overlay is left as it is.
    let fs = fs_with(&[], std::slice::from_ref(&sub), vec![overlay(&app, None)]);
    let l = build(&fs, true, None, Some(&h.layers)).unwrap();
    assert_eq!(
        mounts(&l),
        [format!("overlay {app}"), format!("read-only bind {sub}")]
    );
}

// ---- /bin, /sbin, /lib, /lib64 as the host has them (issue #13) ----

/// A host root: `usr/{bin,sbin,lib}`, and `bin`, `sbin`, `lib` either links into `usr`
/// (merged /usr: Debian, Fedora, Arch, Ubuntu) or real directories (Alpine, busybox images),
/// plus `lib64 -> lib` in the second layout (a link to a directory bound of its own).
fn system_root(merged: bool) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    for d in ["usr/bin", "usr/sbin", "usr/lib"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for top in ["bin", "sbin", "lib"] {
        if merged {
            std::os::unix::fs::symlink(format!("usr/{top}"), root.join(top)).unwrap();
        } else {
            std::fs::create_dir(root.join(top)).unwrap();
        }
    }
    if !merged {
        std::os::unix::fs::symlink("lib", root.join("lib64")).unwrap();
    }
    let root = root.display().to_string();
    (dir, root)
}

/// The default profile's system entries, under `root`.
fn system_fs(root: &str) -> Filesystem {
    let ro: Vec<String> = ["usr", "bin?", "sbin?", "lib?", "lib64?"]
        .iter()
        .map(|e| format!("{root}/{e}"))
        .collect();
    fs_with(&[], &ro, vec![])
}

/// The mounts of a layout, without directories and symlinks.
fn mounted(l: &Layout) -> Vec<String> {
    mounts(l)
        .into_iter()
        .filter(|p| !p.starts_with("symlink"))
        .collect()
}

/// The symlinks the layout creates, as (path, target).
fn links(l: &Layout) -> Vec<(String, String)> {
    l.ops
        .iter()
        .zip(&l.info)
        .filter_map(|(op, info)| match op {
            Op::Symlink { target, .. } => Some((
                info.sandbox_path.clone(),
                target.to_string_lossy().into_owned(),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn merged_usr_gives_the_hosts_links_and_no_second_mount() {
    let (_d, root) = system_root(true);
    let l = build(&system_fs(&root), true, None, None).unwrap();
    assert_eq!(mounted(&l), [format!("read-only bind {root}/usr")]);
    assert!(
        mounted(&l).contains(&format!("read-only bind {root}/usr")),
        "{:?}",
        mounted(&l)
    );
    assert!(
        !mounted(&l)
            .iter()
            .any(|m| m.contains(" bind ") && !m.ends_with("/usr")),
        "{:?}",
        mounted(&l)
    );
    let mut got = links(&l);
    got.sort();
    let want: Vec<(String, String)> = ["bin", "lib", "sbin"]
        .iter()
        .map(|t| (format!("{root}/{t}"), format!("usr/{t}")))
        .collect();
    assert_eq!(got, want);
    assert_eq!(l.warnings, Vec::<String>::new());
}

#[test]
fn real_directories_are_bound_read_only() {
    let (_d, root) = system_root(false);
    let l = build(&system_fs(&root), true, None, None).unwrap();
    let m = mounted(&l);
    for top in ["usr", "bin", "sbin", "lib"] {
        assert!(
            m.contains(&format!("read-only bind {root}/{top}")),
            "{top}: {m:?}"
        );
    }
    // lib64 -> lib: lib is bound where it is, so the link is enough.
    assert_eq!(links(&l), [(format!("{root}/lib64"), "lib".to_string())]);
    assert_eq!(l.warnings, Vec::<String>::new());
}

#[test]
fn a_link_into_what_no_read_only_mount_shows_is_still_mounted() {
    let (_d, root) = system_root(true);
    // /usr writable: the read-only entry for bin keeps its own read-only mount, as before.
    let fs = fs_with(&[format!("{root}/usr")], &[format!("{root}/bin?")], vec![]);
    let l = build(&fs, true, None, None).unwrap();
    assert!(
        mounted(&l).contains(&format!("read-only bind {root}/usr/bin")),
        "{:?}",
        mounted(&l)
    );
    assert!(l.warnings.iter().any(|w| w.contains("resolves to")));
    // Nothing shows /usr at all: mounted where it is, the link leads there.
    let fs = fs_with(&[], &[format!("{root}/bin?")], vec![]);
    let l = build(&fs, true, None, None).unwrap();
    assert_eq!(mounted(&l), [format!("read-only bind {root}/usr/bin")]);
    assert_eq!(
        links(&l),
        [(format!("{root}/bin"), format!("{root}/usr/bin"))]
    );
    // A tmpfs between the bind and the linked directory hides it: mounted again.
    let mut fs = system_fs(&root);
    fs.tmpfs = vec![entry(&format!("{root}/usr/bin"), "filesystem.tmpfs")];
    let l = build(&fs, true, None, None).unwrap();
    assert!(
        mounted(&l).contains(&format!("read-only bind {root}/usr/bin")),
        "{:?}",
        mounted(&l)
    );
}

#[test]
fn an_overlaid_usr_keeps_the_link() {
    let (_d, root) = system_root(true);
    let layers = tempfile::tempdir().unwrap();
    let mut fs = system_fs(&root);
    fs.overlay = vec![overlay(&format!("{root}/usr"), None)];
    let l = build(&fs, true, None, Some(layers.path())).unwrap();
    assert_eq!(mounted(&l), [format!("overlay {root}/usr")]);
    assert_eq!(links(&l).len(), 3);
}

#[test]
fn the_default_profile_shows_this_hosts_system_directories_as_they_are() {
    let text = crate::profile::BUILTIN[0].text;
    let mut fs = crate::profile::Loader::parse("default", text)
        .unwrap()
        .filesystem;
    fs.rw.clear();
    fs.tmpfs.clear();
    fs.hide.clear();
    fs.protect.clear();
    let l = build(&fs, true, None, None).unwrap();
    for top in ["/bin", "/sbin", "/lib", "/lib64"] {
        let p = std::path::Path::new(top);
        let bound = mounted(&l).contains(&format!("read-only bind {top}"));
        let linked = links(&l).into_iter().find(|(at, _)| at == top);
        match std::fs::symlink_metadata(p) {
            Err(_) => assert!(!bound && linked.is_none(), "{top}"),
            Ok(m) if m.is_symlink() => {
                let text = std::fs::read_link(p).unwrap().display().to_string();
                if p.canonicalize().is_ok() {
                    assert_eq!(linked.map(|l| l.1), Some(text), "{top}");
                }
                assert!(!bound, "{top}");
            }
            Ok(_) => assert!(bound && linked.is_none(), "{top}"),
        }
    }
    assert_eq!(l.warnings, Vec::<String>::new());
}

#[test]
fn the_view_follows_binds_links_and_host_symlinks() {
    let host = tempfile::tempdir().unwrap();
    let tools = host.path().join("tools");
    std::fs::create_dir_all(tools.join("real")).unwrap();
    std::fs::write(tools.join("real/run"), "").unwrap();
    std::os::unix::fs::symlink("real", tools.join("bin")).unwrap();
    std::os::unix::fs::symlink("/elsewhere/x", tools.join("out")).unwrap();
    let home = host.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let (tools_s, home_s) = (tools.display().to_string(), home.display().to_string());
    let fs = Filesystem {
        ro: vec![entry(&tools_s, "filesystem.ro")],
        tmpfs: vec![entry(&home_s, "filesystem.tmpfs")],
        dev: Some(DevMode::None),
        proc: Some(ProcMode::Off),
        ..Default::default()
    };
    let l = build(&fs, true, None, None).unwrap();
    let v = &l.view;
    // Through a relative symlink on the host, and `..` after it.
    let run = tools.join("real/run");
    assert_eq!(
        v.resolve(&format!("{tools_s}/bin/run")),
        Seen::Host(run.clone())
    );
    assert_eq!(
        v.resolve(&format!("{tools_s}/bin/../real/run")),
        Seen::Host(run)
    );
    // An absolute symlink leads inside the sandbox, where nothing is there.
    assert_eq!(v.resolve(&format!("{tools_s}/out")), Seen::Missing);
    // sbx's own tmpfs: empty, and not the host's.
    assert_eq!(v.resolve(&home_s), Seen::Sandbox);
    assert_eq!(v.resolve(&format!("{home_s}/x")), Seen::Missing);
    assert_eq!(v.resolve("/usr"), Seen::Missing);
}
