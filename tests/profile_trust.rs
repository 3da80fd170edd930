//! Profiles are trusted only from their owner, `extends` is bounded, and what a profile wrote
//! reaches the terminal escaped.
//!
//! 1. A `default.toml` planted by another user in a shared `XDG_CONFIG_HOME` (the issue's
//!    case: it turned seccomp and landlock off) is refused with exit 125 before anything runs.
//!    Control: the same file owned by the caller replaces the built-in `default`, so the plant
//!    would work without the check.
//! 2. A profile, or a directory above it, that its group or everyone can write is refused; a
//!    sticky directory (`/tmp`) is not a reason; a profile `extends` reaches is checked too.
//! 3. An `extends` chain deeper than 64 is exit 125 with a message (2500 deep used to overflow
//!    the stack: 134).
//! 4. Keys, names, paths and values from a profile that hold escape sequences or line breaks
//!    are printed escaped in the one error line.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{Ran, Workdir, bare, run_keep};

/// A replacement for the built-in `default` with seccomp and landlock off.
const PLANTED: &str = "description = \"planted\"\n\
    [namespaces]\nuts = true\n\
    [filesystem]\nro = [\"/usr\", \"/etc\"]\n\
    symlinks = { \"/bin\" = \"usr/bin\", \"/lib\" = \"usr/lib\", \"/lib64\" = \"usr/lib64\" }\n\
    [env.set]\nPATH = \"/usr/bin:/bin\"\n\
    [process]\nhostname = \"planted\"\n\
    [security]\nseccomp = \"off\"\nlandlock = \"off\"\n";

/// What the command reports: its hostname and its seccomp mode.
const SHOW: &str = "echo host=$(cat /proc/sys/kernel/hostname); grep '^Seccomp:' /proc/self/status";

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown_to(p: &Path, uid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(uid)).unwrap();
}

/// Runs the default profile with `XDG_CONFIG_HOME` = `xdg` and SHOW as the command; whether
/// the command ran (the planted profile binds no work directory to leave a mark in: the
/// command says so on stdout).
fn run_with_config(xdg: &Path) -> (Ran, bool) {
    let mut s = bare().env("XDG_CONFIG_HOME", xdg);
    s.cmd.args(["--", "sh", "-c", &format!("{SHOW}; echo ran")]);
    let (r, _w) = run_keep(s);
    let ran = r.stdout.ends_with("ran\n");
    (r, ran)
}

/// `xdg/sbx/profiles/default.toml` with PLANTED in it, every part owned by `owner`, the
/// `xdg` directory itself with `mode`.
fn config_home(base: &Workdir, owner: u32, mode: u32) -> PathBuf {
    let xdg = base.subdir("xdg");
    let profiles = xdg.join("sbx/profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    let file = profiles.join("default.toml");
    std::fs::write(&file, PLANTED).unwrap();
    for p in [&xdg, &xdg.join("sbx"), &profiles, &file] {
        chown_to(p, owner);
    }
    chmod(&xdg, mode);
    xdg
}

#[test]
fn a_default_planted_by_another_user_is_refused() {
    let test = "a_default_planted_by_another_user_is_refused";
    // Control: the caller's own default.toml replaces the built-in one.
    let own = Workdir::new();
    let (r, ran) = run_with_config(&config_home(&own, common::test_uid(), 0o755));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(ran && r.stdout.contains("host=planted\n"), "{r:?}");
    assert!(r.stdout.contains("Seccomp:\t0"), "{r:?}");
    // The caller's own configuration under a shared parent is still the caller's: the check
    // stops at the configuration root.
    let shared = Workdir::new();
    let (r, ran) = run_with_config(&config_home(&shared, common::test_uid(), 0o777));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(ran, "{r:?}");

    if !common::is_root() {
        common::note_skip(test, "files owned by another user need root to create");
        return;
    }
    let stranger = 12345;
    assert_ne!(common::test_uid(), stranger);
    let theirs = Workdir::new();
    let xdg = config_home(&theirs, stranger, 0o777);
    let (r, ran) = run_with_config(&xdg);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(!ran, "the command ran under the planted profile: {r:?}");
    let errors = common::error_lines(&r.stderr);
    assert_eq!(errors.len(), 1, "{r:?}");
    assert!(
        errors[0].contains("refusing profile") && errors[0].contains("uid 12345"),
        "{r:?}"
    );
    // Their file in the caller's own directories is refused just the same.
    let mixed = Workdir::new();
    let xdg = config_home(&mixed, common::test_uid(), 0o755);
    chown_to(&xdg.join("sbx/profiles/default.toml"), stranger);
    let (r, ran) = run_with_config(&xdg);
    assert_eq!((r.code, ran), (125, false), "{r:?}");
}

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
fn profiles_others_can_write_are_refused() {
    let good = "extends = [\"default\"]\n";
    // (file mode, directory mode, what the message names, or None: accepted)
    let cases: [(u32, u32, Option<&str>); 6] = [
        (0o644, 0o755, None),
        (0o600, 0o700, None),
        (0o666, 0o755, Some("the file is writable by everyone")),
        (0o664, 0o755, Some("the file is writable by its group")),
        (0o644, 0o777, Some("/dir is writable by everyone")),
        (0o644, 0o1777, None),
    ];
    for (file_mode, dir_mode, refused) in cases {
        let s = bare();
        let dir = s.work.subdir("dir");
        let p = s.work.file("dir/p.toml", good);
        chmod(&p, file_mode);
        chmod(&dir, dir_mode);
        let (r, ran) = run_profile(s, &p);
        let case = format!("file {file_mode:o}, dir {dir_mode:o}");
        match refused {
            None => assert_eq!((r.code, ran), (0, true), "{case}: {r:?}"),
            Some(says) => {
                assert_eq!((r.code, ran), (125, false), "{case}: {r:?}");
                let errors = common::error_lines(&r.stderr);
                assert_eq!(errors.len(), 1, "{case}: {r:?}");
                assert!(errors[0].contains(says), "{case}: {r:?}");
                assert!(r.stderr.contains("(chmod go-w "), "{case}: {r:?}");
            }
        }
    }
    // A profile reached through `extends` is checked too.
    let s = bare();
    let p = s.work.file("top.toml", "extends = [\"base.toml\"]\n");
    let base = s.work.file("base.toml", good);
    chmod(&base, 0o666);
    let (r, ran) = run_profile(s, &p);
    assert_eq!((r.code, ran), (125, false), "{r:?}");
    assert!(r.stderr.contains("base.toml"), "{r:?}");
}

#[test]
fn extends_is_bounded() {
    // c0 extends c1 ... extends cN-1 extends default: N + 1 profiles in the chain.
    for (n, ok) in [(63, true), (64, false), (2500, false)] {
        let s = bare();
        for i in 0..n {
            let parent = if i + 1 < n {
                format!("c{}.toml", i + 1)
            } else {
                "default".to_string()
            };
            s.work.file(
                &format!("c{i}.toml"),
                &format!("extends = [\"{parent}\"]\n"),
            );
        }
        let top = s.work.path().join("c0.toml");
        let (r, ran) = run_profile(s, &top);
        if ok {
            assert_eq!((r.code, ran), (0, true), "{n}: {r:?}");
        } else {
            assert_eq!((r.code, ran), (125, false), "{n}: {r:?}");
            assert!(
                r.stderr.contains("more than 64 profiles deep"),
                "{n}: {r:?}"
            );
        }
    }
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
