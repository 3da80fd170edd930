//! What a profile wrote reaches the terminal escaped: keys, names, paths and values from a
//! profile that hold escape sequences or line breaks are printed escaped in the one error line,
//! and `sbx profile list` shows a user profile's name and description escaped.

mod common;

use std::path::Path;

use common::{Ran, Workdir, bare, run_keep};

/// Runs `sbx --profile PROFILE -- touch MARK`; returns the run and whether the command ran.
fn run_profile(s: common::Sbx, profile: &Path) -> (Ran, bool) {
    let mark = s.work.path().join("ran");
    let mut s = s;
    s.cmd
        .arg("--profile")
        .arg(profile)
        .args(["--", "touch"])
        .arg(&mark);
    let (r, _w) = run_keep(s);
    let ran = mark.exists();
    (r, ran)
}

#[test]
fn what_a_profile_wrote_reaches_the_terminal_escaped() {
    // (file name, text): each is an error that quotes what the profile wrote.
    let cases = [
        // An unknown key: an OSC 52 clipboard write.
        ("key.toml", "\"\\u001b]52;c;cHduZWQ=\\u0007\" = 1\n"),
        // An unknown profile name that clears the screen and forges a line.
        (
            "name.toml",
            "extends = [\"\\u001b[2J\\nsbx: forged line\"]\n",
        ),
        // An unknown variable.
        (
            "var.toml",
            "extends = [\"default\"]\n[filesystem]\nrw = [\"${\\u001b[31mNOPE\\nsbx: forged line}\"]\n",
        ),
        // A bad value.
        (
            "value.toml",
            "[limits]\nmemory = \"\\u001b[31m\\nsbx: forged line\"\n",
        ),
        // A file name with a line break and an escape sequence.
        ("evil\x1b[31m\nsbx: forged line.toml", "bogus = 1\n"),
    ];
    for (name, text) in cases {
        let s = bare();
        let p = s.work.file(name, text);
        let (r, ran) = run_profile(s, &p);
        assert_eq!((r.code, ran), (125, false), "{name:?}: {r:?}");
        assert!(
            !r.stderr.contains('\x1b') && !r.stderr.contains('\x07'),
            "{name:?}: a control character reached the terminal: {r:?}"
        );
        assert!(
            !r.stderr.lines().any(|l| l.starts_with("sbx: forged")),
            "{name:?}: a forged line: {r:?}"
        );
        assert_eq!(common::error_lines(&r.stderr).len(), 1, "{name:?}: {r:?}");
        // Ours (`\e`), or a value's Debug form (`\u{1b}`).
        assert!(
            r.stderr.contains("\\e") || r.stderr.contains("\\u{1b}"),
            "{name:?}: not shown escaped: {r:?}"
        );
    }
}

#[test]
fn profile_list_shows_user_profiles_escaped() {
    let base = Workdir::new();
    let xdg = base.subdir("xdg");
    let profiles = base.subdir("xdg/sbx/profiles");
    for (name, text) in [
        (
            "desc.toml",
            "description = \"\\u001b[2J\\nforged  built-in  x\"\n",
        ),
        ("n\x1b[31m.toml", "description = \"plain\"\n"),
    ] {
        std::fs::write(profiles.join(name), text).unwrap();
        common::chown(&profiles.join(name));
    }
    let mut s = bare().env("XDG_CONFIG_HOME", &xdg);
    s.cmd.args(["profile", "list"]);
    let (r, _w) = run_keep(s);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stdout.contains('\x1b'), "{r:?}");
    assert!(!r.stdout.lines().any(|l| l.starts_with("forged")), "{r:?}");
    assert!(
        r.stdout.contains("desc         user      \\e[2J\\nforged"),
        "{r:?}"
    );
    assert!(r.stdout.contains("n\\e[31m"), "{r:?}");
}
