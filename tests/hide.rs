//! Credentials stay out of the sandbox (`filesystem.hide`). A home with every credential file
//! the built-in profiles hide is planted on the host; the command inside tries to read each one
//! (and searches the whole home for the secrets), then to overwrite them; the host's files are
//! checked afterwards. Controls: the same runs with each entry lifted (`--hide '!PATH'`) read
//! every secret, so the tests can tell.
//!
//! 1. `default` with the home as the working directory, bound writable on purpose
//!    (`--bind ~`: the `${CWD}` entry alone refuses the home): every entry of the list, file
//!    or directory, is an empty read-only stand-in; the rest of the home is there.
//! 2. `ci` (`~/.cargo` bound read-only) and `cargo` (`~/.cargo` through a throwaway overlay):
//!    the registry token is hidden, the registry is not.
//! 3. A credential that is a symlink (into a dotfiles directory) is hidden where it leads.
//! 4. A list users extend (`--hide`, a profile's `hide`), `--explain` and the run report name
//!    what is hidden, and bad entries are one clear error before anything runs.

mod common;

use std::path::{Path, PathBuf};

use common::{Ran, Sbx, Workdir, bare, read_report, run_keep};

/// Every entry of the built-in `hide` list (relative to the home), and the file planted for it:
/// the entry itself, or a file inside it for a directory.
const CREDENTIALS: [(&str, &str); 16] = [
    (".cargo/credentials", ".cargo/credentials"),
    (".cargo/credentials.toml", ".cargo/credentials.toml"),
    (".npmrc", ".npmrc"),
    (".pypirc", ".pypirc"),
    (".netrc", ".netrc"),
    (".git-credentials", ".git-credentials"),
    (".config/gh/hosts.yml", ".config/gh/hosts.yml"),
    (".docker/config.json", ".docker/config.json"),
    (".aws", ".aws/credentials"),
    (".ssh", ".ssh/id_ed25519"),
    (".gnupg", ".gnupg/private-keys-v1.d/key.key"),
    (".kube/config", ".kube/config"),
    (".config/gcloud", ".config/gcloud/credentials.db"),
    (".azure", ".azure/msal_token_cache.json"),
    (".gem/credentials", ".gem/credentials"),
    (".pgpass", ".pgpass"),
];

/// Files next to the credentials that are no secret: they stay visible (the binds work).
const NEIGHBOURS: [&str; 4] = [
    ".cargo/registry/index-entry",
    ".config/gh/config.yml",
    ".docker/features.json",
    ".kube/cache/discovery",
];

const MARK: &str = "SBX-SECRET";

/// Writes `content` at `home/rel`, the file and every directory made for it owned by the test
/// uid.
fn plant(home: &Path, rel: &str, content: &str) -> PathBuf {
    let p = home.join(rel);
    let mut made = Vec::new();
    let mut d = p.parent().unwrap().to_path_buf();
    while !d.exists() {
        made.push(d.clone());
        d.pop();
    }
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    for d in made {
        common::chown(&d);
    }
    std::fs::write(&p, content).unwrap();
    common::chown(&p);
    p
}

/// A run whose home holds every credential (each file says `SBX-SECRET-<n>`) and the
/// neighbours; returns it with the canonical home.
fn planted_home() -> (Sbx, PathBuf) {
    let s = bare();
    let home = s.work.path().join("home").canonicalize().unwrap();
    for (n, (_, file)) in CREDENTIALS.iter().enumerate() {
        plant(&home, file, &format!("{MARK}-{n}\n"));
    }
    for f in NEIGHBOURS {
        plant(&home, f, "not secret\n");
    }
    (s, home)
}

/// A script printing `REL=<content>` for each file (`MISSING` when it cannot be read), every
/// file under the home that still holds a secret (`LEAK <path>`), then trying to overwrite
/// each credential (`WROTE <rel>` when that worked).
fn probe(files: &[&str]) -> String {
    let mut s = String::new();
    for f in files {
        s.push_str(&format!(
            "printf '%s=' '{f}'; (cat \"$HOME/{f}\" 2>/dev/null || echo MISSING) | tr -d '\\n'; \
             echo;\n"
        ));
    }
    s.push_str(&format!(
        "grep -rl {MARK} \"$HOME\" 2>/dev/null | sed 's/^/LEAK /';\n"
    ));
    for f in files.iter().filter(|f| !NEIGHBOURS.contains(f)) {
        s.push_str(&format!(
            "(echo pwned > \"$HOME/{f}\") 2>/dev/null && echo 'WROTE {f}';\n"
        ));
    }
    s.push_str("true\n");
    s
}

fn seen(r: &Ran, rel: &str) -> String {
    let want = format!("{rel}=");
    r.stdout
        .lines()
        .find_map(|l| l.strip_prefix(&want))
        .unwrap_or_else(|| panic!("no line for {rel}: {r:?}"))
        .to_string()
}

fn files() -> Vec<&'static str> {
    CREDENTIALS
        .iter()
        .map(|(_, f)| *f)
        .chain(NEIGHBOURS)
        .collect()
}

/// Runs `sbx ARGS -- sh -c SCRIPT` in `dir` with HOME = `home`.
fn run_in(mut s: Sbx, dir: &Path, home: &Path, args: &[String], script: &str) -> (Ran, Workdir) {
    s.cmd
        .current_dir(dir)
        .env("HOME", home)
        .args(args)
        .args(["--", "sh", "-c", script]);
    run_keep(s)
}

#[test]
fn the_builtin_list_is_the_one_tested_here() {
    let (s, home) = planted_home();
    let mut s = s;
    s.cmd
        .env("HOME", &home)
        .args(["profile", "show", "default"]);
    let (r, _w) = run_keep(s);
    assert_eq!(r.code, 0, "{r:?}");
    let v: toml::Value = toml::from_str(&r.stdout).unwrap();
    let listed: Vec<String> = v["filesystem"]["hide"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    let tested: Vec<String> = CREDENTIALS
        .iter()
        .map(|(e, _)| format!("{}/{e}", home.display()))
        .collect();
    assert_eq!(
        listed, tested,
        "a hidden path without a test, or the reverse"
    );
}

#[test]
fn default_hides_every_credential_of_a_home_it_binds() {
    let (s, home) = planted_home();
    let before = common::tree_snapshot(&home);
    let report = s.work.path().join("report.json");
    let args = vec![
        "--json-status".to_string(),
        report.display().to_string(),
        "--bind".to_string(),
        home.display().to_string(),
    ];
    let (r, _w) = run_in(s, &home.clone(), &home, &args, &probe(&files()));
    assert_eq!(r.code, 0, "{r:?}");
    // The precondition: the home is bound (its other files are there), so the credentials
    // would be readable without the stand-ins.
    for f in NEIGHBOURS {
        assert_eq!(seen(&r, f), "not secret", "{f} is not visible: {r:?}");
    }
    for (entry, file) in CREDENTIALS {
        let got = seen(&r, file);
        let what = if entry == file {
            ""
        } else {
            " (its directory)"
        };
        assert!(!got.contains(MARK), "{file}{what} was read: {r:?}");
        if entry == file {
            assert_eq!(got, "", "{file} is not an empty stand-in: {r:?}");
        } else {
            assert_eq!(
                got, "MISSING",
                "{file} is not behind an empty directory: {r:?}"
            );
        }
    }
    assert!(!r.stdout.contains("LEAK "), "a secret is readable: {r:?}");
    assert!(
        !r.stdout.contains("WROTE "),
        "a credential was overwritten: {r:?}"
    );
    assert_eq!(
        common::tree_snapshot(&home),
        before,
        "the host's home changed"
    );
    // The report names each stand-in, at the path the sandbox sees.
    let v = read_report(&report, &r);
    let hidden: Vec<&str> = v["hide"]["hidden"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    for (entry, _) in CREDENTIALS {
        let p = format!("{}/{entry}", home.display());
        assert!(hidden.contains(&p.as_str()), "{p} not in {hidden:?}");
    }
    assert_eq!(v["hide"]["entries"].as_array().unwrap().len(), 16, "{v}");
}

#[test]
fn lifted_entries_are_readable_again() {
    // The control of the test above: the same plant, every entry lifted.
    let (s, home) = planted_home();
    let mut args = vec!["--bind".to_string(), home.display().to_string()];
    for (entry, _) in CREDENTIALS {
        args.push(format!("--hide=!{}/{entry}", home.display()));
    }
    let (r, _w) = run_in(s, &home.clone(), &home, &args, &probe(&files()));
    assert_eq!(r.code, 0, "{r:?}");
    for (n, (_, file)) in CREDENTIALS.iter().enumerate() {
        assert_eq!(seen(&r, file), format!("{MARK}-{n}"), "{r:?}");
    }
}

#[test]
fn ci_and_cargo_hide_the_registry_token_and_not_the_registry() {
    for profile in ["ci", "cargo"] {
        for lifted in [false, true] {
            let (s, home) = planted_home();
            let token = format!("{}/.cargo/credentials.toml", home.display());
            let mut args = vec!["--profile".to_string(), profile.to_string()];
            if lifted {
                args.push(format!("--hide=!{token}"));
                args.push(format!("--hide=!{}/.cargo/credentials", home.display()));
            }
            let work = s.work.path().to_path_buf();
            let script = probe(&[
                ".cargo/credentials.toml",
                ".cargo/credentials",
                ".cargo/registry/index-entry",
            ]);
            let (r, _w) = run_in(s, &work, &home, &args, &script);
            assert_eq!(r.code, 0, "{profile}: {r:?}");
            assert_eq!(
                seen(&r, ".cargo/registry/index-entry"),
                "not secret",
                "{r:?}"
            );
            let (t, old) = (
                seen(&r, ".cargo/credentials.toml"),
                seen(&r, ".cargo/credentials"),
            );
            if lifted {
                assert!(
                    t.starts_with(MARK) && old.starts_with(MARK),
                    "{profile}: {r:?}"
                );
            } else {
                assert_eq!((t.as_str(), old.as_str()), ("", ""), "{profile}: {r:?}");
                assert!(!r.stdout.contains("LEAK "), "{profile}: {r:?}");
                assert!(!r.stdout.contains("WROTE .cargo/cred"), "{profile}: {r:?}");
            }
            let host = std::fs::read_to_string(&token).unwrap();
            assert!(
                host.starts_with(MARK),
                "{profile}: the host's token changed"
            );
        }
    }
}

#[test]
fn a_symlinked_credential_is_hidden_where_it_leads() {
    let s = bare();
    let home = s.work.path().join("home").canonicalize().unwrap();
    plant(&home, "dotfiles/netrc", &format!("{MARK}-netrc\n"));
    std::os::unix::fs::symlink("dotfiles/netrc", home.join(".netrc")).unwrap();
    std::os::unix::fs::lchown(home.join(".netrc"), Some(common::test_uid()), None).unwrap();
    let (r, _w) = run_in(
        s,
        &home.clone(),
        &home,
        &["--bind".to_string(), home.display().to_string()],
        &probe(&[".netrc", "dotfiles/netrc"]),
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(seen(&r, ".netrc"), "", "{r:?}");
    assert_eq!(seen(&r, "dotfiles/netrc"), "", "{r:?}");
    assert!(!r.stdout.contains("LEAK "), "{r:?}");
}

#[test]
fn users_add_their_own_secrets_and_explain_lists_them() {
    for added in [false, true] {
        // Relative to the current directory, like --bind.
        let hide: &[String] = if added {
            &["--hide=.env".to_string()]
        } else {
            &[]
        };
        let run = |extra: &[&str], script: &str| {
            let s = bare();
            s.work.file(".env", &format!("TOKEN={MARK}\n"));
            let dir = s.work.path().canonicalize().unwrap();
            let mut args: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
            args.extend(hide.iter().cloned());
            let (r, _w) = run_in(s, &dir, &dir.join("home"), &args, script);
            assert_eq!(r.code, 0, "{r:?}");
            (r, dir)
        };
        let (explained, dir) = run(&["--explain"], "true");
        let line = format!("  {}/.env empty, read-only", dir.display());
        let listed = explained.stdout.lines().any(|l| l == line);
        assert_eq!(listed, added, "{explained:?}");
        let (r, _) = run(&[], "cat .env; echo end");
        assert_eq!(r.stdout.contains(MARK), !added, "{r:?}");
        assert!(r.stdout.ends_with("end\n"), "{r:?}");
    }
}

#[test]
fn a_profile_extends_the_list_and_bad_entries_are_refused() {
    let s = bare();
    let secret = s.work.file("token.txt", &format!("{MARK}\n"));
    let good = s.work.file(
        "good.toml",
        "extends = [\"default\"]\n[filesystem]\nhide = [\"${CWD}/token.txt\"]\n",
    );
    let mut s = s;
    s.cmd
        .arg("--profile")
        .arg(&good)
        .args(["--", "cat"])
        .arg(&secret);
    let (r, _w) = run_keep(s);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stdout.contains(MARK), "{r:?}");

    for (entry, says) in [
        ("token.txt", "not an absolute path"),
        ("/etc/../etc/passwd", "`..`"),
        ("/etc/passwd?", "no `?`"),
    ] {
        let s = bare();
        let ran = s.work.path().join("ran");
        let bad = s.work.file(
            "bad.toml",
            &format!("extends = [\"default\"]\n[filesystem]\nhide = [\"{entry}\"]\n"),
        );
        let mut s = s;
        s.cmd
            .arg("--profile")
            .arg(&bad)
            .args(["--", "touch"])
            .arg(&ran);
        let (r, _w) = run_keep(s);
        assert_eq!(r.code, 125, "{entry}: {r:?}");
        assert!(!ran.exists(), "{entry}: the command ran");
        let errors = common::error_lines(&r.stderr);
        assert_eq!(errors.len(), 1, "{entry}: {r:?}");
        assert!(
            errors[0].contains("filesystem.hide") && errors[0].contains(says),
            "{entry}: {r:?}"
        );
    }
}
