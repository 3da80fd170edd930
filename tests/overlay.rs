//! Workspace overlays: a command writes freely in an overlaid tree while the host tree stays
//! byte-for-byte as it was; the change report lists exactly what it did; read-only and
//! temporary overlays; a real build; no layers left behind, however the run ends; the profile
//! form behaves like the flags. Kept layers, `sbx changes` and `sbx apply` are in
//! tests/overlay_apply.rs. Every sbx run is as the unprivileged test uid, and every file of an
//! overlaid tree is owned by that uid and gid (overlayfs in a user namespace cannot copy up
//! anything else).

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::overlay::{
    SCRIPT, changes_of, expected, leftover_layers, read_json, s, sbx_in, script_changes, set_diff,
    sh_in, sub, workspace,
};
use common::tree::{Node, assert_unchanged, diff, make_tree, snapshot};
use common::{Workdir, canonical};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// 1. The host tree stays as it was; the change report lists exactly what the command did.

#[test]
fn writes_in_an_overlay_leave_the_host_tree_untouched_and_are_reported() {
    let w = Workdir::new();
    let ws = w.path().join("ws");
    workspace(&ws);
    let ws_c = canonical(&ws);
    let before = snapshot(&ws);
    let changes = w.path().join("changes.json");
    let status = w.path().join("status.json");
    let (r, work) = sh_in(
        &ws,
        &[
            "--overlay".into(),
            ws_c.clone(),
            "--changes".into(),
            s(&changes),
            "--json-status".into(),
            s(&status),
        ],
        &format!(
            "{SCRIPT}
pwd; cat mod.txt; cat renamed.txt; ls dir_renamed; cat opq/keepname
test ! -e del.txt && test ! -e dir_del && test -d f2d && test -f d2f && echo SEEN-OK"
        ),
    );
    assert_eq!(r.code, 0, "{r:?}");
    // The command saw its own writes.
    assert!(
        r.stdout
            .starts_with(&format!("{ws_c}\nold content\nappended\nrename me\nx\nK\n")),
        "{r:?}"
    );
    assert!(r.stdout.contains("SEEN-OK"), "{r:?}");

    // The host tree: the same paths, modes, owners, contents and times.
    assert_unchanged(&before, &ws, "after an overlaid run");

    let want = script_changes();
    let report = read_json(&changes);
    let sets = report.as_array().unwrap_or_else(|| panic!("{report}"));
    assert_eq!(sets.len(), 1, "{report:#}");
    assert_eq!(sets[0]["destination"], ws_c.as_str(), "{report:#}");
    assert_eq!(sets[0]["source"], ws_c.as_str(), "{report:#}");
    let got = changes_of(&sets[0]);
    assert_eq!(got, want, "--changes:\n{}", set_diff(&got, &want));

    // The run report carries the same change sets.
    let st = read_json(&status);
    assert_eq!(st["exit_code"], 0, "{st:#}");
    assert_eq!(st["changes"], report, "run report vs --changes");
    assert!(
        leftover_layers(work.path()).is_empty(),
        "layers left behind"
    );
}

#[test]
fn overlay_at_another_destination_reports_it_and_leaves_the_source_alone() {
    let w = Workdir::new();
    let ws = w.path().join("ws");
    make_tree(&ws, &[("a.txt", Node::File("a\n", 0o644))]);
    let ws_c = canonical(&ws);
    let before = snapshot(&ws);
    let changes = w.path().join("changes.json");
    let (r, _work) = sh_in(
        w.path(),
        &[
            "--overlay".into(),
            format!("{ws_c}:/view"),
            "--chdir".into(),
            "/view".into(),
            "--changes".into(),
            s(&changes),
        ],
        "echo b > b.txt && echo more >> a.txt && cat a.txt && pwd",
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "a\nmore\n/view\n", "{r:?}");
    assert_unchanged(&before, &ws, "overlay at /view");
    let report = read_json(&changes);
    assert_eq!(report[0]["destination"], "/view", "{report:#}");
    assert_eq!(report[0]["source"], ws_c.as_str(), "{report:#}");
    assert_eq!(
        changes_of(&report[0]),
        expected(&[
            ("a.txt", "modified", "file", 7),
            ("b.txt", "added", "file", 2)
        ])
    );
}

/// The overlay's root should look like the host directory it shows (mode, owner).
#[test]
fn overlay_root_has_the_host_directory_mode() {
    let w = Workdir::new();
    let ws = w.path().join("ws");
    make_tree(&ws, &[("a.txt", Node::File("a\n", 0o644))]);
    std::fs::set_permissions(&ws, std::fs::Permissions::from_mode(0o750)).unwrap();
    let (r, _work) = sh_in(
        &ws,
        &["--overlay".into(), canonical(&ws)],
        "stat -c '%a %u %g' . && stat -c '%a %u %g' a.txt",
    );
    assert_eq!(r.code, 0, "{r:?}");
    let (uid, gid) = (common::test_uid(), common::test_gid());
    assert_eq!(
        r.stdout,
        format!("750 {uid} {gid}\n644 {uid} {gid}\n"),
        "the overlaid root does not look like the host directory: {r:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Read-only overlays.

#[test]
fn ro_overlay_reads_but_refuses_writes() {
    let w = Workdir::new();
    let ws = w.path().join("ws");
    make_tree(
        &ws,
        &[
            ("keep.txt", Node::File("keep\n", 0o644)),
            ("sub/f", Node::File("f\n", 0o644)),
        ],
    );
    let before = snapshot(&ws);
    let changes = w.path().join("changes.json");
    let (r, work) = sh_in(
        &ws,
        &[
            "--ro-overlay".into(),
            canonical(&ws),
            "--changes".into(),
            s(&changes),
        ],
        "cat keep.txt sub/f
for op in 'echo x > new.txt' 'echo y >> keep.txt' 'rm keep.txt' 'mkdir nd' 'touch keep.txt' \
          'mv sub/f sub/g' 'chmod 600 keep.txt' 'ln -s keep.txt l'; do
  if sh -c \"$op\" 2>>/tmp/err; then echo \"WROTE: $op\"; fi
done
grep -c 'Read-only file system' /tmp/err
cat /tmp/err >&2",
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "keep\nf\n8\n", "{r:?}");
    assert_unchanged(&before, &ws, "--ro-overlay");
    assert_eq!(read_json(&changes), serde_json::json!([]));
    assert!(
        leftover_layers(work.path()).is_empty(),
        "a read-only overlay made layers"
    );
}

#[test]
fn ro_overlay_profile_merges_lower_layers_first_wins() {
    let w = Workdir::new();
    let a = w.path().join("a");
    let b = w.path().join("b");
    make_tree(
        &a,
        &[
            ("clash.txt", Node::File("from A\n", 0o644)),
            ("only_a.txt", Node::File("a\n", 0o644)),
            ("sub/in_a", Node::File("ia\n", 0o644)),
        ],
    );
    make_tree(
        &b,
        &[
            ("clash.txt", Node::File("from B\n", 0o644)),
            ("only_b.txt", Node::File("b\n", 0o644)),
            ("sub/in_b", Node::File("ib\n", 0o644)),
        ],
    );
    let (before_a, before_b) = (snapshot(&a), snapshot(&b));
    let profile = w.file(
        "ro.toml",
        &format!(
            "extends = [\"default\"]\n\n[[filesystem.overlay]]\nsrc = \"{}\"\ndst = \"/merged\"\n\
             mode = \"ro\"\nlower = [\"{}\"]\n",
            canonical(&a),
            canonical(&b)
        ),
    );
    let (r, _work) = sh_in(
        w.path(),
        &["--profile".into(), s(&profile)],
        "cd /merged && cat clash.txt only_a.txt only_b.txt sub/in_a sub/in_b && ls -A . sub
echo x > new.txt || echo REFUSED",
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.stdout,
        "from A\na\nb\nia\nib\n.:\nclash.txt\nonly_a.txt\nonly_b.txt\nsub\n\nsub:\nin_a\nin_b\nREFUSED\n",
        "{r:?}"
    );
    assert!(r.stderr.contains("Read-only file system"), "{r:?}");
    assert_unchanged(&before_a, &a, "ro overlay upper lower");
    assert_unchanged(&before_b, &b, "ro overlay second lower");
}

// ---------------------------------------------------------------------------------------------
// 3. Temporary overlays.

#[test]
fn tmp_overlay_writes_vanish_and_are_size_limited() {
    let w = Workdir::new();
    let ws = w.path().join("ws");
    make_tree(&ws, &[("keep.txt", Node::File("keep\n", 0o644))]);
    let before = snapshot(&ws);
    let changes = w.path().join("changes.json");
    let status = w.path().join("status.json");
    // The overlay's writes share the sandbox's one tmpfs budget with /tmp: head's message goes
    // straight to stderr, since a full budget leaves no room to keep it in a file.
    let (r, work) = sh_in(
        &ws,
        &[
            "--tmp-overlay".into(),
            canonical(&ws),
            "--limit".into(),
            "tmpfs_size=1M".into(),
            "--changes".into(),
            s(&changes),
            "--json-status".into(),
            s(&status),
        ],
        "set -e; echo small > small.txt; echo more >> keep.txt; mkdir d; echo x > d/x
cat small.txt keep.txt
if head -c 2097152 /dev/zero > big.bin; then echo WROTE-BIG; fi",
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "small\nkeep\nmore\n", "{r:?}");
    assert!(r.stderr.contains("No space left on device"), "{r:?}");
    assert_unchanged(&before, &ws, "--tmp-overlay");
    assert_eq!(
        read_json(&changes),
        serde_json::json!([]),
        "tmp overlays are not reported"
    );
    assert_eq!(read_json(&status)["changes"], serde_json::json!([]));
    assert!(leftover_layers(work.path()).is_empty());
}

// ---------------------------------------------------------------------------------------------
// 4. A real build.

#[test]
fn make_in_an_overlay_builds_and_leaves_outputs_only_in_the_report() {
    for tool in ["/usr/bin/make", "/usr/bin/cc"] {
        if !Path::new(tool).exists() {
            common::note_skip("make_in_an_overlay", &format!("{tool} is missing"));
            return;
        }
    }
    let w = Workdir::new();
    let ws = w.path().join("proj");
    make_tree(
        &ws,
        &[
            (
                "main.c",
                Node::File(
                    "#include <stdio.h>\n#include \"util.h\"\n\
                     int main(void) { printf(\"answer %d\\n\", answer()); return 0; }\n",
                    0o644,
                ),
            ),
            (
                "util.c",
                Node::File(
                    "#include \"util.h\"\nint answer(void) { return 42; }\n",
                    0o644,
                ),
            ),
            ("util.h", Node::File("int answer(void);\n", 0o644)),
            (
                "Makefile",
                Node::File(
                    "hello: main.o util.o\n\t$(CC) -o $@ main.o util.o\n\n\
                     %.o: %.c util.h\n\t$(CC) -c -o $@ $<\n",
                    0o644,
                ),
            ),
        ],
    );
    let before = snapshot(&ws);
    let changes = w.path().join("changes.json");
    let (r, work) = sh_in(
        &ws,
        &[
            "--overlay".into(),
            canonical(&ws),
            "--changes".into(),
            s(&changes),
        ],
        "make && ./hello",
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.ends_with("answer 42\n"), "{r:?}");
    assert_unchanged(&before, &ws, "make in an overlay");
    for out in ["hello", "main.o", "util.o"] {
        assert!(!ws.join(out).exists(), "{out} reached the host");
    }
    let report = read_json(&changes);
    let got: BTreeSet<(String, String, String)> = changes_of(&report[0])
        .into_iter()
        .map(|(p, k, t, n)| {
            assert!(n > 0, "{p} is empty");
            (p, k, t)
        })
        .collect();
    let want: BTreeSet<(String, String, String)> = ["hello", "main.o", "util.o"]
        .into_iter()
        .map(|p| (p.into(), "added".into(), "file".into()))
        .collect();
    assert_eq!(got, want, "{report:#}");
    assert!(leftover_layers(work.path()).is_empty());
}

// ---------------------------------------------------------------------------------------------
// 5. The private layers directory never outlives the run.

#[test]
fn private_layers_are_removed_however_the_run_ends() {
    let w = Workdir::new();
    let ws = w.path().join("ws");
    make_tree(&ws, &[("a.txt", Node::File("a\n", 0o644))]);
    let ws_c = canonical(&ws);
    let status = w.path().join("status.json");
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v = vec![
            "--overlay".to_string(),
            ws_c.clone(),
            "--json-status".into(),
            s(&status),
        ];
        v.extend(extra.iter().map(|x| x.to_string()));
        v
    };
    // Nothing written: one change set, empty.
    let (r, work) = sh_in(&ws, &base(&[]), "cat a.txt");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(leftover_layers(work.path()).is_empty());
    assert_eq!(
        read_json(&status)["changes"],
        serde_json::json!([{ "destination": ws_c, "source": ws_c, "changes": [] }])
    );
    // The command locks its files away and fails.
    let (r, work) = sh_in(
        &ws,
        &base(&[]),
        "mkdir -p locked/inner && echo x > locked/inner/f && chmod 000 locked/inner && \
         chmod 500 locked && chmod 400 a.txt && exit 3",
    );
    assert_eq!(r.code, 3, "{r:?}");
    assert!(leftover_layers(work.path()).is_empty(), "{r:?}");
    // Killed by the wall-clock limit.
    let (r, work) = sh_in(&ws, &base(&["--timeout", "1s"]), "echo x > t; sleep 30");
    assert_eq!(r.code, 124, "{r:?}");
    assert!(leftover_layers(work.path()).is_empty(), "{r:?}");
    // The command is not found.
    let mut args = base(&[]);
    args.extend(["--".into(), "/nonexistent-command".into()]);
    let (r, work) = sbx_in(&ws, &args);
    assert_eq!(r.code, 127, "{r:?}");
    assert!(leftover_layers(work.path()).is_empty(), "{r:?}");
    // Setup fails after the layers were made (a missing bind source).
    let (r, work) = sh_in(&ws, &base(&["--bind", "/nonexistent-sbx-src"]), "true");
    assert_eq!(r.code, 125, "{r:?}");
    assert!(leftover_layers(work.path()).is_empty(), "{r:?}");
    assert_unchanged(&snapshot(&ws), &ws, "");
    assert_eq!(std::fs::read_to_string(ws.join("a.txt")).unwrap(), "a\n");
    assert!(!ws.join("locked").exists() && !ws.join("t").exists());
}

#[test]
fn an_upper_layer_inside_the_overlaid_tree_is_refused() {
    let w = Workdir::new();
    let ws = w.path().join("ws");
    make_tree(&ws, &[("a.txt", Node::File("a\n", 0o644))]);
    let before = snapshot(&ws);
    let (r, _work) = sh_in(
        &ws,
        &[
            "--overlay".into(),
            canonical(&ws),
            "--keep-changes".into(),
            s(&ws.join("kept")),
        ],
        "echo RAN",
    );
    assert_eq!(r.code, 125, "{r:?}");
    assert!(!r.stdout.contains("RAN"), "{r:?}");
    // sbx creates the (empty) kept directory before it sees the nesting; nothing else.
    let after = snapshot(&ws);
    let extra: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    assert!(
        extra.iter().all(|k| k.as_str() == "kept"),
        "wrote into the tree: {extra:?}"
    );

    // The same with the private layers: TMPDIR inside the tree.
    let before = snapshot(&ws);
    let mut s = common::sbx(["--overlay", &canonical(&ws), "--", "sh", "-c", "echo RAN"]);
    s.cmd.current_dir(&ws).env("TMPDIR", &ws);
    let r = s.run();
    assert_eq!(r.code, 125, "{r:?}");
    assert!(
        !r.stdout.contains("RAN") && r.stderr.contains("TMPDIR"),
        "{r:?}"
    );
    let d = diff(&before, &snapshot(&ws), false);
    assert!(d.is_empty(), "TMPDIR inside the tree: left\n{d}");
}

// ---------------------------------------------------------------------------------------------
// 6. The profile form.

#[test]
fn profile_overlay_with_changes_behaves_like_the_flags() {
    let w = Workdir::new();
    let ws1 = w.path().join("ws1");
    let ws2 = w.path().join("ws2");
    workspace(&ws1);
    workspace(&ws2);
    let (c1, c2) = (canonical(&ws1), canonical(&ws2));
    let kept1 = w.path().join("kept1");
    let kept2 = w.path().join("kept2");
    let profile = w.file(
        "ov.toml",
        &format!(
            "extends = [\"default\"]\n\n[filesystem]\nchanges = \"{}\"\n\n\
             [[filesystem.overlay]]\nsrc = \"{c1}\"\n",
            s(&kept1)
        ),
    );
    let (before1, before2) = (snapshot(&ws1), snapshot(&ws2));

    let (r, _work) = sh_in(&ws1, &["--profile".into(), s(&profile)], SCRIPT);
    assert_eq!(r.code, 0, "{r:?}");
    let (r2, _work) = sh_in(
        &ws2,
        &[
            "--overlay".into(),
            c2.clone(),
            "--keep-changes".into(),
            s(&kept2),
        ],
        SCRIPT,
    );
    assert_eq!(r2.code, 0, "{r2:?}");
    assert_unchanged(&before1, &ws1, "profile overlay");
    assert_unchanged(&before2, &ws2, "flag overlay");

    let r = sub(&["changes".into(), s(&kept1), "--json".into()]);
    assert_eq!(r.code, 0, "{r:?}");
    let j1: Value = serde_json::from_str(&r.stdout).unwrap();
    let r = sub(&["changes".into(), s(&kept2), "--json".into()]);
    assert_eq!(r.code, 0, "{r:?}");
    let j2: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(j1[0]["source"], c1.as_str());
    assert_eq!(j1[0]["destination"], c1.as_str());
    let want = script_changes();
    let got = changes_of(&j1[0]);
    assert_eq!(got, want, "{}", set_diff(&got, &want));
    assert_eq!(changes_of(&j2[0]), want);

    // Both kept layers apply to the same tree.
    for k in [&kept1, &kept2] {
        let r = sub(&["apply".into(), s(k)]);
        assert_eq!(r.code, 0, "{r:?}");
    }
    let d = diff(&snapshot(&ws1), &snapshot(&ws2), false);
    assert!(d.is_empty(), "profile vs flags after apply:\n{d}");

    // `profile show` prints the overlay and `changes` back as TOML that loads identically.
    // Run from `w`, so that the default's `${CWD}` is a directory that still exists.
    let show = |file: &Path| sbx_in(w.path(), &["profile".into(), "show".into(), s(file)]).0;
    let r = show(&profile);
    assert_eq!(r.code, 0, "{r:?}");
    let v: toml::Value = toml::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}\n{r:?}"));
    let fs = &v["filesystem"];
    assert_eq!(fs["changes"].as_str(), Some(s(&kept1).as_str()), "{r:?}");
    let ov = fs["overlay"].as_array().unwrap_or_else(|| panic!("{r:?}"));
    assert_eq!(ov.len(), 1, "{r:?}");
    assert_eq!(ov[0]["src"].as_str(), Some(c1.as_str()), "{r:?}");
    assert!(
        ov[0].get("mode").is_none_or(|m| m.as_str() == Some("rw")),
        "{r:?}"
    );
    let shown = w.file("shown.toml", &r.stdout);
    let again = show(&shown);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(again.stdout, r.stdout, "shown profile does not load back");
    let check = sbx_in(w.path(), &["profile".into(), "check".into(), s(&shown)]).0;
    assert_eq!(check.code, 0, "{check:?}");

    // Every mode round-trips, with dst and lower.
    let all = w.file(
        "all.toml",
        &format!(
            "extends = [\"default\"]\n\n[[filesystem.overlay]]\nsrc = \"{c1}\"\ndst = \"/v1\"\n\
             mode = \"ro\"\nlower = [\"{c2}\"]\n\n[[filesystem.overlay]]\nsrc = \"{c2}\"\n\
             dst = \"/v2\"\nmode = \"tmp\"\n"
        ),
    );
    let r = show(&all);
    assert_eq!(r.code, 0, "{r:?}");
    let v: toml::Value = toml::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}\n{r:?}"));
    let ov = v["filesystem"]["overlay"].as_array().unwrap();
    assert_eq!(ov.len(), 2, "{r:?}");
    assert_eq!(ov[0]["dst"].as_str(), Some("/v1"));
    assert_eq!(ov[0]["mode"].as_str(), Some("ro"));
    assert_eq!(ov[0]["lower"][0].as_str(), Some(c2.as_str()));
    assert_eq!(ov[1]["mode"].as_str(), Some("tmp"));
    let shown = w.file("all-shown.toml", &r.stdout);
    let again = show(&shown);
    assert_eq!(again.stdout, r.stdout, "{again:?}");
}
