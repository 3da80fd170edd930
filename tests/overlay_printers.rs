//! Nothing the sandbox names reaches the terminal raw through `sbx changes`, `sbx apply` or
//! apply's refusals (issue #21, item 4). A command plants file names and symlink targets that
//! carry terminal controls (ESC sequences that erase a line, OSC 52 that writes the clipboard),
//! newlines that would forge a `D`/`M` line, and bytes that are not UTF-8. Each printer must
//! show them escaped, one entry per line; `--json` keeps them exact.

mod common;

use std::path::PathBuf;

use common::overlay::{read_json, s, sh_in, sub};
use common::tree::{Node, make_tree};
use common::{Ran, Workdir, canonical};

/// (the name as the command makes it in sh, its exact bytes, how sbx must show it)
const NAMES: &[(&str, &[u8], &str)] = &[
    (
        "$(printf 'erase\\033[2K\\rD fake')",
        b"erase\x1b[2K\rD fake",
        "erase\\e[2K\\rD fake",
    ),
    (
        "$(printf 'osc\\033]52;c;aGk=\\007')",
        b"osc\x1b]52;c;aGk=\x07",
        "osc\\e]52;c;aGk=\\a",
    ),
    (
        "$(printf 'line\\nM forged')",
        b"line\nM forged",
        "line\\nM forged",
    ),
    ("$(printf 'bad\\377')", b"bad\xff", "bad\\xff"),
];

/// Runs a command that plants every name of NAMES (as files) in an overlay of a fresh tree,
/// plus `extra`; returns (the work dir, the tree, the kept directory).
fn planted(extra: &str) -> (Workdir, PathBuf, PathBuf) {
    let w = Workdir::new();
    let ws = w.path().join("ws");
    make_tree(&ws, &[("a.txt", Node::File("a\n", 0o644))]);
    let kept = w.path().join("kept");
    let mut script = String::from("set -e\n");
    for (sh, _, _) in NAMES {
        script += &format!("echo x > \"{sh}\"\n");
    }
    script += extra;
    let (r, _work) = sh_in(
        &ws,
        &[
            "--overlay".into(),
            canonical(&ws),
            "--keep-changes".into(),
            s(&kept),
        ],
        &script,
    );
    assert_eq!(r.code, 0, "{r:?}");
    (w, ws, kept)
}

/// What a terminal must never get from sbx's human-readable output.
fn assert_inert(bytes: &[u8], what: &str, r: &Ran) {
    for (b, name) in [(0x1b, "ESC"), (0x07, "BEL"), (b'\r', "CR"), (0x9b, "CSI")] {
        assert!(
            !bytes.contains(&b),
            "{what}: a raw {name} reached the output: {r:?}"
        );
    }
    assert!(
        std::str::from_utf8(bytes).is_ok(),
        "{what}: bytes that are not UTF-8 reached the output: {r:?}"
    );
}

#[test]
fn sbx_changes_prints_planted_names_escaped_one_per_line() {
    let (_w, _ws, kept) = planted("");
    let r = sub(&["changes".into(), s(&kept)]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_inert(&r.output.stdout, "sbx changes", &r);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1 + NAMES.len(),
        "a name made its own line: {r:?}"
    );
    for (_, _, shown) in NAMES {
        let want = format!("A          2  {shown}");
        assert!(lines.contains(&want.as_str()), "no line {want:?}: {r:?}");
    }
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("D ") || l.starts_with("M ")),
        "a forged line: {r:?}"
    );

    // --json stays exact.
    let j = sub(&["changes".into(), s(&kept), "--json".into()]);
    assert_eq!(j.code, 0, "{j:?}");
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    let exact: Vec<Vec<u8>> = v[0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| match c.get("path_bytes") {
            Some(b) => b
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_u64().unwrap() as u8)
                .collect(),
            None => c["path"].as_str().unwrap().as_bytes().to_vec(),
        })
        .collect();
    for (_, bytes, _) in NAMES {
        assert!(exact.contains(&bytes.to_vec()), "{bytes:?} not in {v:#}");
    }
}

#[test]
fn sbx_apply_prints_planted_names_escaped_one_per_line() {
    let (_w, ws, kept) = planted("");
    for dry in [true, false] {
        let mut args = vec!["apply".to_string()];
        if dry {
            args.push("--dry-run".into());
        }
        args.push(s(&kept));
        let r = sub(&args);
        assert_eq!(r.code, 0, "{r:?}");
        assert_inert(&r.output.stdout, "sbx apply", &r);
        let lines: Vec<&str> = r.stdout.lines().collect();
        assert_eq!(lines.len(), 1 + NAMES.len(), "{args:?}: {r:?}");
        for (_, _, shown) in NAMES {
            let want = format!("A {shown}");
            assert!(lines.contains(&want.as_str()), "no line {want:?}: {r:?}");
        }
    }
    // Applied with their exact names.
    use std::os::unix::ffi::OsStrExt;
    for (_, bytes, _) in NAMES {
        let p = ws.join(std::ffi::OsStr::from_bytes(bytes));
        assert!(p.exists(), "{p:?} was not applied");
    }
}

/// Apply's refusals name what they refuse, escaped: a symlink out of the tree whose name and
/// target carry controls, a FIFO named with a newline, and a protected path.
#[test]
fn apply_refusals_print_planted_names_and_targets_escaped() {
    let (_w, ws, kept) = planted(
        "ln -s \"$(printf '/etc/\\033]52;c;aGk=\\007\\nok')\" \"$(printf 'evil\\033[2K\\r')\"\n\
         mkfifo \"$(printf 'fifo\\nsbx: applied')\"\n",
    );
    let before = common::tree::snapshot(&ws);
    let r = sub(&["apply".into(), s(&kept)]);
    assert_eq!(r.code, 125, "{r:?}");
    assert_refusal(
        &r,
        &[
            "evil\\e[2K\\r",
            "/etc/\\e]52;c;aGk=\\a\\nok",
            "fifo\\nsbx: applied",
        ],
    );
    common::tree::assert_unchanged(&before, &ws, "refused apply");

    // A protected path (as `filesystem.protect` records it) with a planted name under it.
    let (_w, ws, kept) =
        planted("mkdir -p .vscode; echo x > \"$(printf '.vscode/t\\033[2K\\rok')\"\n");
    let meta = read_json(&kept.join("sbx-changes.json"));
    assert!(
        meta["overlays"][0]["protected"]
            .as_array()
            .is_some_and(|p| p.iter().any(|e| e == ".vscode")),
        "precondition: .vscode is protected: {meta}"
    );
    let r = sub(&["apply".into(), s(&kept)]);
    assert_eq!(r.code, 125, "{r:?}");
    assert_refusal(&r, &[".vscode/t\\e[2K\\rok"]);
    assert!(!ws.join(".vscode").exists());
}

/// One error line (and its hint), everything named escaped, nothing on stdout.
fn assert_refusal(r: &Ran, shown: &[&str]) {
    assert_inert(&r.output.stderr, "apply's refusal", r);
    assert!(r.stdout.is_empty(), "{r:?}");
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert!(
        lines[0].starts_with("sbx: refusing to apply"),
        "the refusal does not come first: {r:?}"
    );
    assert!(
        lines[1..].iter().all(|l| l.starts_with("  hint: ")),
        "a name made its own line: {r:?}"
    );
    for s in shown {
        assert!(lines[0].contains(s), "{s:?} is not named: {r:?}");
    }
}

/// The header names the overlay's destination and source escaped too.
#[test]
fn headers_escape_the_overlaid_directory() {
    let w = Workdir::new();
    let ws = w.path().join("ws\x1b[2Kdir");
    make_tree(&ws, &[("a.txt", Node::File("a\n", 0o644))]);
    let kept = w.path().join("kept");
    let (r, _work) = sh_in(
        &ws,
        &[
            "--overlay".into(),
            canonical(&ws),
            "--keep-changes".into(),
            s(&kept),
        ],
        "echo b > b.txt",
    );
    assert_eq!(r.code, 0, "{r:?}");
    let shown = canonical(&ws).replace('\x1b', "\\e");
    for args in [vec!["changes"], vec!["apply", "--dry-run"]] {
        let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        a.push(s(&kept));
        let r = sub(&a);
        assert_eq!(r.code, 0, "{r:?}");
        assert_inert(&r.output.stdout, "a header", &r);
        assert!(r.stdout.lines().next().unwrap().contains(&shown), "{r:?}");
    }
}
