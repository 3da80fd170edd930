//! The overlay covers what the command sees (issue #21, item 2). A source is resolved once, at
//! plan time, to the directory it names: `--overlay` of a path through a symlinked directory
//! or parent, with a trailing slash or `.` components, behaves exactly as with the canonical
//! path — the command starts in it, its writes stay in the layer and are reported, and no
//! writable bind of that directory (the default profile's `${CWD}`, a parent, a child) sits
//! beside the overlay. Binds resolve the same way. Each attack writes from inside the sandbox
//! and the host tree is checked afterwards; each test first shows, as a control, that the
//! same write reaches the host when nothing protects it. Every sbx run is as the unprivileged
//! test uid.

mod common;

use std::path::{Path, PathBuf};

use common::overlay::{changes_of, expected, leftover_layers, read_json, s, sbx_in, sh_in};
use common::tree::{Node, assert_unchanged, make_tree, snapshot};
use common::{Workdir, canonical};

/// A host tree: `real/app/{main.c,sub/f}`, `link -> real`, `applink -> real/app`.
struct Host {
    w: Workdir,
    /// The canonical `real/app`.
    app: PathBuf,
    /// Where the change reports go, outside the tree.
    out: Workdir,
}

impl Host {
    fn new() -> Host {
        let w = Workdir::new();
        make_tree(
            w.path(),
            &[
                ("real/app/main.c", Node::File("orig\n", 0o644)),
                ("real/app/sub/f", Node::File("orig-f\n", 0o644)),
                ("link", Node::Link("real")),
                ("applink", Node::Link("real/app")),
            ],
        );
        let app = PathBuf::from(canonical(&w.path().join("real/app")));
        Host {
            w,
            app,
            out: Workdir::new(),
        }
    }

    fn changes(&self) -> PathBuf {
        self.out.path().join("changes.json")
    }

    fn path(&self, rel: &str) -> String {
        s(&self.w.path().join(rel))
    }

    fn app_s(&self) -> String {
        s(&self.app)
    }
}

/// The mount lines of `--explain` as (what, sandbox path).
fn explained_mounts(text: &str) -> Vec<(String, String)> {
    text.lines()
        .skip_while(|l| *l != "mounts:")
        .skip(1)
        .map_while(|l| {
            let (n, body) = l.trim_start().split_once(". ")?;
            n.parse::<usize>().ok()?;
            let body = body.rsplit_once(" [").map_or(body, |(b, _)| b);
            let body = body.split_once(" <- ").map_or(body, |(b, _)| b);
            let slash = body.find(" /")?;
            Some((body[..slash].to_string(), body[slash + 1..].to_string()))
        })
        .collect()
}

/// `--explain` run from `cwd` with `args`: its mounts.
fn explain(cwd: &Path, args: &[String]) -> (Vec<(String, String)>, String) {
    let mut all = args.to_vec();
    all.extend(["--explain".into(), "--".into(), "true".into()]);
    let (r, _w) = sbx_in(cwd, &all);
    assert_eq!(r.code, 0, "{r:?}");
    (explained_mounts(&r.stdout), r.stdout)
}

/// The mounts at `path` or beneath it (not the directories sbx creates).
fn mounts_at<'a>(mounts: &'a [(String, String)], path: &str) -> Vec<&'a (String, String)> {
    mounts
        .iter()
        .filter(|(what, p)| {
            !what.starts_with("create ") && (p == path || p.starts_with(&format!("{path}/")))
        })
        .collect()
}

/// The control: with the default profile alone, a command run from `cwd` writes `main.c`
/// on the host through the writable `${CWD}`. So the setup can see a write that gets through.
fn control_writes_reach_the_host(cwd: &Path, file: &Path) {
    let before = std::fs::read_to_string(file).unwrap();
    let (r, _w) = sh_in(cwd, &[], "echo CONTROL > main.c");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        std::fs::read_to_string(file).unwrap(),
        "CONTROL\n",
        "control: the unprotected write did not reach the host, so the test proves nothing"
    );
    std::fs::write(file, before).unwrap();
}

// ---------------------------------------------------------------------------------------------
// 1. Every spelling of the directory is the canonical one.

#[test]
fn every_spelling_of_the_working_directory_overlays_it() {
    let h = Host::new();
    let app = h.app_s();
    control_writes_reach_the_host(&h.w.path().join("link/app"), &h.app.join("main.c"));
    // (how the user reached the directory, what they passed to --overlay)
    let cases = [
        ("real/app", app.clone()),
        ("link/app", h.path("link/app")),
        ("applink", h.path("applink")),
        ("link/app", format!("{}/", h.path("link/app"))),
        ("real/app", format!("{app}/")),
        ("link/app", format!("{}/./app/.", h.path("link"))),
        ("link/app", ".".into()),
        ("applink", "./".into()),
    ];
    for (cwd_rel, spelling) in cases {
        let cwd = h.w.path().join(cwd_rel);
        let what = format!("cd {cwd_rel}; --overlay {spelling}");
        if spelling.starts_with('/') {
            assert_eq!(canonical(Path::new(&spelling)), app, "{what}: precondition");
        }
        let before = snapshot(h.w.path());
        let changes = h.changes();
        let args = [
            "--overlay".into(),
            spelling.clone(),
            "--changes".into(),
            s(&changes),
        ];
        // --explain: one operation for the directory, the overlay, at its real path.
        let (mounts, text) = explain(&cwd, &args);
        let here = mounts_at(&mounts, &app);
        assert_eq!(
            here,
            [&("overlay".to_string(), app.clone())],
            "{what}: {text}"
        );
        assert!(
            text.contains(&format!("(cwd {app})")),
            "{what}: the command does not start in the overlay: {text}"
        );
        // The attack: write in the working directory, and through the spelling used.
        let (r, work) = sh_in(
            &cwd,
            &args,
            &format!(
                "pwd; echo X > main.c; echo Y > '{spelling}/sub/f'; cat main.c '{spelling}/sub/f'"
            ),
        );
        assert_eq!(r.code, 0, "{what}: {r:?}");
        assert_eq!(r.stdout, format!("{app}\nX\nY\n"), "{what}: {r:?}");
        assert_unchanged(&before, h.w.path(), &what);
        let report = read_json(&changes);
        assert_eq!(
            report.as_array().map(Vec::len),
            Some(1),
            "{what}: {report:#}"
        );
        assert_eq!(report[0]["destination"], app.as_str(), "{what}: {report:#}");
        assert_eq!(report[0]["source"], app.as_str(), "{what}: {report:#}");
        assert_eq!(
            changes_of(&report[0]),
            expected(&[
                ("main.c", "modified", "file", 2),
                ("sub/f", "modified", "file", 2)
            ]),
            "{what}: {report:#}"
        );
        assert!(leftover_layers(work.path()).is_empty(), "{what}");
        std::fs::remove_file(&changes).unwrap();
    }
}

#[test]
fn the_read_only_and_temporary_overlays_resolve_the_same_way() {
    let h = Host::new();
    let app = h.app_s();
    let cwd = h.w.path().join("link/app");
    control_writes_reach_the_host(&cwd, &h.app.join("main.c"));
    for (flag, what) in [
        ("--ro-overlay", "read-only overlay"),
        ("--tmp-overlay", "temporary overlay"),
    ] {
        let args = [flag.to_string(), h.path("link/app")];
        let (mounts, text) = explain(&cwd, &args);
        assert_eq!(
            mounts_at(&mounts, &app),
            [&(what.to_string(), app.clone())],
            "{flag}: {text}"
        );
        let before = snapshot(h.w.path());
        let (r, _w) = sh_in(&cwd, &args, "pwd; echo X > main.c; cat main.c");
        assert_eq!(r.code, 0, "{flag}: {r:?}");
        assert_unchanged(&before, h.w.path(), flag);
        if flag == "--ro-overlay" {
            assert_eq!(r.stdout, format!("{app}\norig\n"), "{flag}: {r:?}");
            assert!(r.stderr.contains("Read-only file system"), "{r:?}");
        } else {
            assert_eq!(r.stdout, format!("{app}\nX\n"), "{flag}: {r:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. A parent or a child of the working directory.

#[test]
fn an_overlay_of_a_parent_covers_the_working_directory_below_it() {
    let h = Host::new();
    let app = h.app_s();
    let cwd = h.w.path().join("link/app/sub");
    control_writes_reach_the_host(&h.w.path().join("link/app"), &h.app.join("main.c"));
    let changes = h.changes();
    let args = [
        "--overlay".into(),
        h.path("link/app"),
        "--changes".into(),
        s(&changes),
    ];
    // No bind of the working directory on top of the overlay.
    let (mounts, text) = explain(&cwd, &args);
    assert_eq!(
        mounts_at(&mounts, &app),
        [&("overlay".to_string(), app.clone())],
        "{text}"
    );
    let before = snapshot(h.w.path());
    let (r, _w) = sh_in(&cwd, &args, "pwd; echo X > f; echo Y > ../main.c");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, format!("{app}/sub\n"), "{r:?}");
    assert_unchanged(&before, h.w.path(), "overlay of the parent");
    assert_eq!(
        changes_of(&read_json(&changes)[0]),
        expected(&[
            ("main.c", "modified", "file", 2),
            ("sub/f", "modified", "file", 2)
        ])
    );
}

#[test]
fn an_overlay_of_a_child_is_mounted_over_the_writable_working_directory() {
    let h = Host::new();
    let app = h.app_s();
    let cwd = h.w.path().join("link/app");
    let changes = h.changes();
    let args = [
        "--overlay".into(),
        h.path("applink/sub"),
        "--changes".into(),
        s(&changes),
    ];
    let (mounts, text) = explain(&cwd, &args);
    assert_eq!(
        mounts_at(&mounts, &app),
        [
            &("bind".to_string(), app.clone()),
            &("overlay".to_string(), format!("{app}/sub"))
        ],
        "{text}"
    );
    let f = snapshot(&h.app.join("sub"));
    let (r, _w) = sh_in(&cwd, &args, "echo X > sub/f && echo W > main.c");
    assert_eq!(r.code, 0, "{r:?}");
    assert_unchanged(&f, &h.app.join("sub"), "overlay of the child");
    // The control, in the same run: the working directory itself is still writable.
    assert_eq!(
        std::fs::read_to_string(h.app.join("main.c")).unwrap(),
        "W\n"
    );
    assert_eq!(
        changes_of(&read_json(&changes)[0]),
        expected(&[("f", "modified", "file", 2)])
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Overlaid at another destination: where a writable bind shows the directory, read-only.

#[test]
fn overlaid_elsewhere_the_directory_is_read_only_where_a_writable_bind_shows_it() {
    let h = Host::new();
    let app = h.app_s();
    let sub = format!("{app}/sub");
    control_writes_reach_the_host(&h.w.path().join("link/app"), &h.app.join("main.c"));

    // The working directory contains the overlaid directory.
    let changes = h.changes();
    let args = [
        "--overlay".into(),
        format!("{}:/view", h.path("link/app/sub")),
        "--changes".into(),
        s(&changes),
    ];
    let cwd = h.w.path().join("link/app");
    let (mounts, text) = explain(&cwd, &args);
    assert!(
        mounts_at(&mounts, &sub) == [&("read-only bind".to_string(), sub.clone())],
        "{text}"
    );
    assert!(
        text.contains("warnings:") && text.contains("is read-only"),
        "{text}"
    );
    let before = snapshot(h.w.path());
    let (r, _w) = sh_in(
        &cwd,
        &args,
        &format!("echo X > sub/f; echo X > '{sub}/f'; echo Y > /view/f; cat /view/f sub/f"),
    );
    assert_eq!(r.stdout, "Y\norig-f\n", "{r:?}");
    assert_eq!(
        r.stderr.matches("Read-only file system").count(),
        2,
        "{r:?}"
    );
    assert_unchanged(&before, h.w.path(), "overlay of a child elsewhere");
    assert_eq!(
        changes_of(&read_json(&changes)[0]),
        expected(&[("f", "modified", "file", 2)])
    );

    // The working directory inside the overlaid directory: it starts in the overlay.
    let args = [
        "--overlay".into(),
        format!("{}:/view", h.path("applink")),
        "--changes".into(),
        s(&changes),
    ];
    let cwd = h.w.path().join("link/app/sub");
    let (mounts, text) = explain(&cwd, &args);
    assert_eq!(
        mounts_at(&mounts, &app),
        [&("read-only bind".to_string(), sub.clone())],
        "{text}"
    );
    let before = snapshot(h.w.path());
    let (r, _w) = sh_in(
        &cwd,
        &args,
        &format!("pwd; echo X > f; echo Z > '{sub}/f'; cat f"),
    );
    assert_eq!(r.stdout, "/view/sub\nX\n", "{r:?}");
    assert!(r.stderr.contains("Read-only file system"), "{r:?}");
    assert_unchanged(&before, h.w.path(), "overlay of a parent elsewhere");
    assert_eq!(
        changes_of(&read_json(&changes)[0]),
        expected(&[("sub/f", "modified", "file", 2)])
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Binds resolve the same way.

#[test]
fn a_read_only_bind_of_any_spelling_of_the_working_directory_holds() {
    let h = Host::new();
    let app = h.app_s();
    control_writes_reach_the_host(&h.w.path().join("link/app"), &h.app.join("main.c"));
    for (cwd_rel, spelling) in [
        ("real/app", ".".to_string()),
        ("real/app", format!("{app}/")),
        ("link/app", h.path("link/app")),
        ("link/app", "./".into()),
        ("applink", h.path("applink")),
    ] {
        let cwd = h.w.path().join(cwd_rel);
        let what = format!("cd {cwd_rel}; --ro-bind {spelling}");
        let args = ["--ro-bind".to_string(), spelling.clone()];
        let (mounts, text) = explain(&cwd, &args);
        assert_eq!(
            mounts_at(&mounts, &app),
            [&("read-only bind".to_string(), app.clone())],
            "{what}: {text}"
        );
        let before = snapshot(h.w.path());
        let (r, _w) = sh_in(&cwd, &args, "echo X > main.c");
        assert!(
            r.code != 0 && r.stderr.contains("Read-only file system"),
            "{what}: {r:?}"
        );
        assert_unchanged(&before, h.w.path(), &what);
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Tool profiles: an overlay of `${HOME}/.cargo?` when ~/.cargo is a symlink.

#[test]
fn cargo_profile_overlays_a_symlinked_cargo_home_and_keeps_its_name() {
    let mut sbx = common::bare();
    let work = sbx.work.path().to_path_buf();
    make_tree(
        &work,
        &[
            (
                "cargo-real/registry/index-entry",
                Node::File("host\n", 0o644),
            ),
            ("home/.cargo", Node::Link("../cargo-real")),
        ],
    );
    let real = canonical(&work.join("cargo-real"));
    assert_eq!(canonical(&work.join("home/.cargo")), real, "precondition");
    let before = snapshot(&work.join("cargo-real"));
    sbx.cmd.args([
        "--profile",
        "cargo",
        "--",
        "sh",
        "-c",
        "cat ~/.cargo/registry/index-entry && echo lock > ~/.cargo/.package-cache \
         && echo changed > ~/.cargo/registry/index-entry && cat ~/.cargo/registry/index-entry",
    ]);
    let (r, _w) = common::run_keep(sbx);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "host\nchanged\n", "{r:?}");
    assert!(r.stderr.contains("resolves to"), "{r:?}");
    assert_unchanged(&before, &work.join("cargo-real"), "cargo profile");
}
