//! Hostile filesystem state on the host, in place before sbx starts (reliability, issue 5):
//! binding a symlink binds its target; a symlink planted where a later mount goes, paths with
//! `..`, FIFOs and unix sockets as bind sources or mount points, a file where a directory is
//! expected, dangling and looping symlinks are handled or refused with 125 and one message,
//! never a hang; nothing is ever created or mounted outside the sandbox. The same attacks as
//! races during setup are in tests/reliability.rs, where `benches/soak.sh` runs them at full
//! counts.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::tree::{ETC_CHECK, HostState, symlink};
use common::{Workdir, error_lines, run_within};

/// README: binding a symlink binds its target (with a warning); the link itself is never
/// mounted. Without a destination the target is mounted where it is, and the name used is
/// sbx's own link to it (issue #21: one directory, one place).
#[test]
fn symlink_bind_source_binds_its_target() {
    let fx = Workdir::new();
    let target = fx.subdir("target");
    std::fs::write(target.join("id"), "target-content\n").unwrap();
    symlink("target", &fx.path().join("rel-link"));
    symlink(&target, &fx.path().join("abs-link"));
    symlink("target/id", &fx.path().join("file-link"));
    let host = HostState::take(&[fx.path()]);
    let p = |n: &str| fx.path().join(n).display().to_string();
    let (r, _w) = run_within(
        common::sbx([
            "--ro-bind",
            &format!("{}:/mnt/rel", p("rel-link")),
            "--ro-bind",
            &format!("{}:/mnt/abs", p("abs-link")),
            "--ro-bind",
            &format!("{}:/mnt/file", p("file-link")),
            "--bind",
            &p("rel-link"),
            "--",
            "sh",
            "-c",
            &format!(
                "cat /mnt/rel/id /mnt/abs/id /mnt/file; cat {}/id; \
                 for x in /mnt/rel /mnt/abs /mnt/file {}; do test -L $x && echo link $x; done; \
                 readlink {}; echo end",
                p("rel-link"),
                p("target"),
                p("rel-link")
            ),
        ]),
        Duration::from_secs(20),
    );
    assert_eq!(r.code, 0, "binding a symlink binds its target: {r:?}");
    assert_eq!(
        r.stdout,
        "target-content\n".repeat(4) + &p("target") + "\nend\n",
        "the targets' content, never a link mounted: {r:?}"
    );
    assert!(
        r.stderr.contains("resolves to"),
        "a warning names the target: {r:?}"
    );
    host.assert_unchanged("symlink bind source");
}
/// A symlink planted in a writable bind where a later mount goes: sbx must refuse (125) or
/// mount on the real directory — never on the symlink's target.
#[test]
fn symlink_planted_at_a_later_mount_point() {
    let fx = Workdir::new();
    let w = fx.subdir("w");
    let h = fx.subdir("host-target");
    std::fs::write(h.join("keep"), "keep\n").unwrap();
    let d = fx.subdir("d");
    std::fs::write(d.join("planted"), "planted\n").unwrap();
    // Each case: the link target, and the later mount.
    let cases: [(&str, Vec<String>); 4] = [
        ("../etc", vec!["--tmpfs".into(), "/w/sub".into()]),
        (
            "/newroot/etc",
            vec!["--ro-bind".into(), format!("{}:/w/sub", d.display())],
        ),
        (h.to_str().unwrap(), vec!["--tmpfs".into(), "/w/sub".into()]),
        (
            &*format!("/oldroot{}", h.display()),
            vec!["--tmpfs".into(), "/w/sub".into()],
        ),
    ];
    for (target, later) in cases {
        let link = w.join("sub");
        let _ = std::fs::remove_file(&link);
        symlink(target, &link);
        let host = HostState::take(&[fx.path(), Path::new("/etc")]);
        let mut args = vec!["--bind".to_string(), format!("{}:/w", w.display())];
        args.extend(later.iter().cloned());
        args.extend(["--".into(), "sh".into(), "-c".into(), ETC_CHECK.into()]);
        let (r, _wd) = run_within(common::sbx(&args), Duration::from_secs(20));
        eprintln!("planted symlink -> {target} {later:?}: exit {}", r.code);
        assert!(
            r.code == 125 || (r.code == 0 && r.stdout.trim() == "etc-intact"),
            "link -> {target}, {later:?}: {r:?}"
        );
        if r.code == 125 {
            assert_eq!(error_lines(&r.stderr).len(), 1, "one message: {r:?}");
        }
        host.assert_unchanged(&format!("planted symlink -> {target}"));
    }
}

/// Paths with `..` are refused with 125 and a message, and the command never runs (but for a
/// relative source on the command line, which the current directory resolves).
#[test]
fn dot_dot_paths_are_refused() {
    let fx = Workdir::new();
    let x = fx.subdir("x");
    let y = fx.subdir("y");
    let _ = (&x, &y);
    let base = fx.path().display().to_string();
    let cases: Vec<Vec<String>> = vec![
        vec!["--bind".into(), format!("{base}/x/../y")],
        vec!["--bind".into(), format!("{base}/y:/mnt/../etc")],
        vec!["--ro-bind".into(), format!("{base}/x/..:/mnt/x")],
        vec!["--tmpfs".into(), "/tmp/../etc".into()],
        // A relative source's `..` is resolved against the current directory instead, as
        // README says (tests/papercuts_cli.rs); a destination's is still refused.
        vec!["--bind".into(), "x/../y:/mnt/../etc".into()],
    ];
    let host = HostState::take(&[fx.path()]);
    for case in cases {
        let mut args = case.clone();
        args.extend(["--".into(), "touch".into(), "ran".into()]);
        let mut s = common::sbx(&args);
        s.cmd.current_dir(fx.path());
        let (r, _w) = run_within(s, Duration::from_secs(20));
        assert_eq!(r.code, 125, "{case:?}: {r:?}");
        let msgs = error_lines(&r.stderr);
        assert_eq!(msgs.len(), 1, "{case:?}: one message: {r:?}");
        assert!(
            msgs[0].contains(".."),
            "{case:?}: the message names `..`: {r:?}"
        );
        host.assert_unchanged(&format!("{case:?}"));
    }
}

/// FIFOs and unix sockets as bind sources or mount points: bound as they are, or refused with
/// 125; never a hang (nothing opens them), never anything created on the host.
#[test]
fn fifo_and_socket_as_source_or_mount_point() {
    let fx = Workdir::new();
    let fifo = fx.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
    common::chown(&fifo);
    let sock_path = fx.path().join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    common::chown(&sock_path);
    std::fs::set_permissions(&sock_path, std::fs::Permissions::from_mode(0o777)).unwrap();
    let w = fx.subdir("w");
    let wfifo = w.join("fifo");
    nix::unistd::mkfifo(&wfifo, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
    let file = fx.file("file", "file-content\n");
    let host = HostState::take(&[fx.path()]);
    let d = |p: &Path| p.display().to_string();
    // (args, script run inside when accepted, expected stdout when accepted)
    let cases: Vec<(Vec<String>, &str, &str)> = vec![
        (
            vec!["--ro-bind".into(), format!("{}:/mnt/fifo", d(&fifo))],
            "test -p /mnt/fifo && echo fifo",
            "fifo",
        ),
        (
            vec!["--bind".into(), format!("{}:/mnt/sock", d(&sock_path))],
            "test -S /mnt/sock && echo socket",
            "socket",
        ),
        (
            vec![
                "--bind".into(),
                format!("{}:/w", d(&w)),
                "--tmpfs".into(),
                "/w/fifo".into(),
            ],
            "test -d /w/fifo && echo dir",
            "dir",
        ),
        (
            vec![
                "--bind".into(),
                format!("{}:/w", d(&w)),
                "--ro-bind".into(),
                format!("{}:/w/fifo", d(&file)),
            ],
            "cat /w/fifo",
            "file-content",
        ),
    ];
    for (case, script, want) in cases {
        let mut args = case.clone();
        args.extend(["--".into(), "sh".into(), "-c".into(), script.into()]);
        let (r, _w) = run_within(common::sbx(&args), Duration::from_secs(20));
        eprintln!("special files {case:?}: exit {}", r.code);
        match r.code {
            0 => assert_eq!(r.stdout.trim(), want, "{case:?}: {r:?}"),
            125 => assert_eq!(error_lines(&r.stderr).len(), 1, "{case:?}: {r:?}"),
            _ => panic!("{case:?}: neither done nor refused: {r:?}"),
        }
        host.assert_unchanged(&format!("{case:?}"));
    }
}

/// A file where a directory is expected: refused with 125, nothing created on the host.
#[test]
fn file_where_a_directory_is_expected_is_refused() {
    let fx = Workdir::new();
    let f1 = fx.file("f1", "one\n");
    let f2 = fx.file("f2", "two\n");
    let w = fx.subdir("w");
    std::fs::write(w.join("file"), "in-w\n").unwrap();
    let d = fx.subdir("d");
    let host = HostState::take(&[fx.path()]);
    let s = |p: &Path| p.display().to_string();
    let cases: Vec<Vec<String>> = vec![
        // A bind under a file bind.
        vec![
            "--ro-bind".into(),
            format!("{}:/x", s(&f1)),
            "--bind".into(),
            format!("{}:/x/sub", s(&f2)),
        ],
        // A tmpfs under a file bind.
        vec![
            "--ro-bind".into(),
            format!("{}:/x", s(&f1)),
            "--tmpfs".into(),
            "/x/sub".into(),
        ],
        // A tmpfs whose parent inside a bind is a regular file on the host.
        vec![
            "--bind".into(),
            format!("{}:/w", s(&w)),
            "--tmpfs".into(),
            "/w/file/sub".into(),
        ],
        // A tmpfs onto a regular file inside a bind.
        vec![
            "--bind".into(),
            format!("{}:/w", s(&w)),
            "--tmpfs".into(),
            "/w/file".into(),
        ],
        // A directory bound onto a regular file inside a bind.
        vec![
            "--bind".into(),
            format!("{}:/w", s(&w)),
            "--ro-bind".into(),
            format!("{}:/w/file", s(&d)),
        ],
        // A file bound where a missing path inside a bind would need creating.
        vec![
            "--bind".into(),
            format!("{}:/w", s(&w)),
            "--ro-bind".into(),
            format!("{}:/w/new/sub", s(&f1)),
        ],
    ];
    for case in cases {
        let mut args = case.clone();
        args.extend(["--".into(), "touch".into(), "ran".into()]);
        let (r, wd) = run_within(common::sbx(&args), Duration::from_secs(20));
        assert_eq!(r.code, 125, "{case:?}: {r:?}");
        assert_eq!(
            error_lines(&r.stderr).len(),
            1,
            "{case:?}: one message: {r:?}"
        );
        assert!(!wd.path().join("ran").exists(), "{case:?}: the command ran");
        host.assert_unchanged(&format!("{case:?}"));
    }
}

/// Bind sources that are dangling or looping symlinks: a clean 125 naming the source, or
/// skipped when marked optional; nothing created on the host.
#[test]
fn dangling_and_looping_symlink_sources() {
    let fx = Workdir::new();
    let looping = fx.path().join("loop");
    symlink("loop", &looping);
    let dangling = fx.path().join("dangling");
    symlink("no-such-target", &dangling);
    let host = HostState::take(&[fx.path()]);
    for src in [&looping, &dangling] {
        let (r, wd) = run_within(
            common::sbx([
                "--bind",
                &format!("{}:/mnt/x", src.display()),
                "--",
                "touch",
                "ran",
            ]),
            Duration::from_secs(20),
        );
        assert_eq!(r.code, 125, "{}: {r:?}", src.display());
        let msgs = error_lines(&r.stderr);
        assert_eq!(msgs.len(), 1, "one message: {r:?}");
        assert!(msgs[0].contains(&*src.display().to_string()), "{r:?}");
        assert!(!wd.path().join("ran").exists(), "the command ran");
    }
    let (r, _wd) = run_within(
        common::sbx([
            "--bind",
            &format!("{}:/mnt/x?", dangling.display()),
            "--",
            "sh",
            "-c",
            "test -e /mnt/x && echo present || echo absent",
        ]),
        Duration::from_secs(20),
    );
    assert_eq!(r.code, 0, "an optional dangling source is skipped: {r:?}");
    assert_eq!(r.stdout, "absent\n", "{r:?}");
    host.assert_unchanged("dangling and looping symlinks");
}
