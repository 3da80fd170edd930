//! Profiles: every built-in runs, `sbx profile list|show|check`, user profiles from
//! $XDG_CONFIG_HOME, the order of `--profile`, what strict and net-on change, and bad input
//! that must stop sbx with exit 125 before anything runs.

mod common;

use std::collections::BTreeMap;

use common::{Ran, Sbx, Workdir, bare, run_keep, tree_snapshot};

const BUILTINS: [&str; 6] = ["default", "net-off", "net-on", "strict", "ci", "nest"];

#[test]
fn every_builtin_profile_runs() {
    for name in BUILTINS {
        let r = common::sbx(["--profile", name, "--", "sh", "-c", "echo ran-$0", name]).run();
        assert_eq!(r.code, 0, "{name}: {r:?}");
        assert_eq!(r.stdout, format!("ran-{name}\n"), "{name}: {r:?}");
    }
}

#[test]
fn profile_list_names_all_builtins() {
    let r = common::sbx(["profile", "list"]).run();
    assert_eq!(r.code, 0, "{r:?}");
    let listed: BTreeMap<&str, &str> = r
        .stdout
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?, it.next()?))
        })
        .collect();
    for name in BUILTINS {
        assert_eq!(listed.get(name), Some(&"built-in"), "{name}: {r:?}");
    }
}

#[test]
fn profile_show_default_prints_merged_toml() {
    let s = common::sbx(["profile", "show", "default"]);
    let work = s.work.path().canonicalize().unwrap().display().to_string();
    let (r, _w) = run_keep(s);
    assert_eq!(r.code, 0, "{r:?}");
    let v: toml::Value = toml::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}\n{r:?}"));
    let t = v.as_table().unwrap();
    assert!(t["description"].as_str().is_some_and(|d| !d.is_empty()));
    assert!(!t.contains_key("extends"), "not merged: {r:?}");
    for ns in ["pid", "net", "ipc", "uts", "cgroup"] {
        assert_eq!(v["namespaces"][ns].as_bool(), Some(true), "namespaces.{ns}");
    }
    let strings = |x: &toml::Value| -> Vec<String> {
        x.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let fs = &v["filesystem"];
    assert!(strings(&fs["ro"]).contains(&"/usr".to_string()), "{r:?}");
    // Variables are expanded: ${CWD} and ${HOME} became this run's paths.
    assert_eq!(strings(&fs["rw"]), [work.as_str()], "{r:?}");
    assert!(
        strings(&fs["tmpfs"]).contains(&format!("{work}/home")),
        "{r:?}"
    );
    // /bin and the like as the host has them (issue #13): optional read-only entries that
    // become the host's links where /usr is merged.
    for top in ["/bin?", "/sbin?", "/lib?", "/lib64?"] {
        assert!(
            strings(&fs["ro"]).contains(&top.to_string()),
            "{top}: {r:?}"
        );
    }
    assert!(fs.get("symlinks").is_none(), "{r:?}");
    assert_eq!(fs["dev"].as_str(), Some("minimal"));
    assert_eq!(
        v["env"]["set"]["HOME"].as_str(),
        Some(&*format!("{work}/home"))
    );
    assert_eq!(v["process"]["hostname"].as_str(), Some("sbx?"));
    assert_eq!(v["network"]["mode"].as_str(), Some("none"));
    assert!(!r.stdout.contains("${"), "unexpanded variable: {r:?}");
}

#[test]
fn shown_profile_loads_back_identically_and_checks_ok() {
    let s = common::sbx(["profile", "show", "ci"]);
    let (shown, work) = run_keep(s);
    assert_eq!(shown.code, 0, "{shown:?}");
    assert!(shown.stdout.contains("[filesystem]"), "{shown:?}");
    let file = work.file("ci-shown.toml", &shown.stdout);

    let mut s = bare();
    s.cmd.current_dir(work.path());
    s.cmd.arg("profile").arg("show").arg(&file);
    let again = s.run();
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(
        again.stdout, shown.stdout,
        "shown text does not load back identically"
    );

    let mut s = bare();
    s.cmd.current_dir(work.path());
    s.cmd.arg("profile").arg("check").arg(&file);
    let check = s.run();
    assert_eq!(check.code, 0, "{check:?}");
    assert_eq!(
        check.stdout.trim(),
        format!("{}: ok", file.display()),
        "{check:?}"
    );
}

#[test]
fn user_profiles_come_from_xdg_config_home_and_later_profile_wins() {
    // The config dir lives in a work dir of its own: each run below removes its work dir.
    let cfg = Workdir::new();
    let xdg = cfg.subdir("xdg");
    let dir = cfg.subdir("xdg/sbx/profiles");
    std::fs::write(
        dir.join("mine.toml"),
        "extends = [\"default\"]\n[process]\nhostname = \"mine\"\n",
    )
    .unwrap();
    common::chown(&dir.join("mine.toml"));
    let mine = |s: Sbx, extra: &[&str]| -> Ran {
        let mut s = s.env("XDG_CONFIG_HOME", &xdg);
        s.cmd.args(extra).args([
            "--",
            "sh",
            "-c",
            "echo host=$(hostname); echo net=$(readlink /proc/self/ns/net)",
        ]);
        s.run()
    };
    let host_net = common::host_ns("net");
    let field = |r: &Ran, k: &str| -> String {
        r.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_default()
            .to_string()
    };

    let r = mine(bare(), &["--profile", "mine"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(field(&r, "host"), "mine", "{r:?}");
    assert_ne!(field(&r, "net"), host_net, "{r:?}");

    // net-on (which extends default, hostname "sbx") comes last and wins; its network is a
    // private one too.
    let r = mine(bare(), &["--profile", "mine", "--profile", "net-on"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(field(&r, "host"), "sbx", "{r:?}");
    assert_ne!(field(&r, "net"), host_net, "{r:?}");

    // The other order: mine wins, with its private network from default.
    let r = mine(bare(), &["--profile", "net-on", "--profile", "mine"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(field(&r, "host"), "mine", "{r:?}");
    assert_ne!(field(&r, "net"), host_net, "{r:?}");
}

#[test]
fn strict_makes_the_cwd_read_only() {
    let mut s = bare();
    s.work.file("existing.txt", "keep\n");
    let before = tree_snapshot(s.work.path());
    s.cmd.args([
        "--profile",
        "strict",
        "--",
        "sh",
        "-c",
        "echo seen=$(cat existing.txt); \
         touch new.txt && echo touch=ok || echo touch=refused; \
         echo x >> existing.txt && echo append=ok || echo append=refused",
    ]);
    let (r, work) = run_keep(s);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("seen=keep\n"), "cwd not visible: {r:?}");
    assert!(r.stdout.contains("touch=refused\n"), "{r:?}");
    assert!(r.stdout.contains("append=refused\n"), "{r:?}");
    assert!(r.stderr.contains("Read-only file system"), "{r:?}");
    assert_eq!(
        tree_snapshot(work.path()),
        before,
        "the host work dir changed"
    );
}

#[test]
fn net_on_is_a_private_network_and_host_is_the_opt_in_to_share() {
    let host = common::host_ns("net");
    let r = common::sbx(["--profile", "net-on", "--", "readlink", "/proc/self/ns/net"]).run();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("net:["), "{r:?}");
    assert_ne!(
        r.stdout.trim(),
        host,
        "net-on shares the host network: {r:?}"
    );
    let r = common::sbx(["--net", "host", "--", "readlink", "/proc/self/ns/net"]).run();
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.trim(), host, "{r:?}");
    let r = common::sbx([
        "--profile",
        "net-off",
        "--",
        "readlink",
        "/proc/self/ns/net",
    ])
    .run();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("net:["), "{r:?}");
    assert_ne!(
        r.stdout.trim(),
        host,
        "net-off shares the host network: {r:?}"
    );
}

/// Writes `files` (name, text) into a fresh work dir, then runs `sbx ARGS... touch
/// <workdir>/ran` (`{W}` in an argument stands for the work dir). Asserts exit 125, a message,
/// and that the command did not run. Returns the result and the work dir.
fn refused(files: &[(&str, &str)], args: &[&str]) -> (Ran, String) {
    let mut s = bare();
    let w = s.work.path().display().to_string();
    for (name, text) in files {
        s.work.file(name, text);
    }
    let ran = s.work.path().join("ran");
    s.cmd.args(args.iter().map(|a| a.replace("{W}", &w)));
    s.cmd.arg("touch").arg(&ran);
    let (r, _work) = run_keep(s);
    assert_eq!(r.code, 125, "{args:?}: {r:?}");
    assert!(!ran.exists(), "{args:?}: the command ran: {r:?}");
    assert!(
        r.stderr.lines().any(|l| !l.trim().is_empty()),
        "{args:?}: no message: {r:?}"
    );
    (r, w)
}

/// Finds `PATH:LINE:COL:` in `text` and returns (LINE, COL).
fn position_after(text: &str, path: &str) -> Option<(usize, usize)> {
    let rest = &text[text.find(&format!("{path}:"))? + path.len() + 1..];
    let (line, rest) = rest.split_once(':')?;
    let (col, _) = rest.split_once(':')?;
    Some((line.parse().ok()?, col.parse().ok()?))
}

#[test]
fn malformed_toml_is_reported_with_file_line_col() {
    let (r, w) = refused(
        &[(
            "bad.toml",
            "extends = [\"default\"]\n[filesystem]\nro = [\"/usr\"\n",
        )],
        &["--profile", "{W}/bad.toml", "--"],
    );
    let path = format!("{w}/bad.toml");
    let (line, col) = position_after(&r.stderr, &path)
        .unwrap_or_else(|| panic!("no `{path}:LINE:COL:` in the message: {r:?}"));
    assert_eq!(line, 3, "{r:?}");
    assert!(col >= 1, "{r:?}");
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let (r, w) = refused(
        &[(
            "unk.toml",
            "extends = [\"default\"]\n[process]\nhostnam = \"x\"\n",
        )],
        &["--profile", "{W}/unk.toml", "--"],
    );
    let path = format!("{w}/unk.toml");
    let (line, _) = position_after(&r.stderr, &path)
        .unwrap_or_else(|| panic!("no `{path}:LINE:COL:` in the message: {r:?}"));
    assert_eq!(line, 3, "{r:?}");
    assert!(r.stderr.contains("hostnam"), "{r:?}");
}

#[test]
fn unknown_profile_name_is_refused() {
    let (r, _) = refused(&[], &["--profile", "no-such-profile-x", "--"]);
    assert!(r.stderr.contains("no-such-profile-x"), "{r:?}");
    assert!(r.stderr.contains("unknown profile"), "{r:?}");
}

#[test]
fn cyclic_extends_is_refused() {
    let (r, _) = refused(
        &[
            ("a.toml", "extends = [\"b.toml\"]\n"),
            ("b.toml", "extends = [\"a.toml\"]\n"),
        ],
        &["--profile", "{W}/a.toml", "--"],
    );
    assert!(r.stderr.contains("cyclic"), "{r:?}");
    assert!(
        r.stderr.contains("a.toml") && r.stderr.contains("b.toml"),
        "{r:?}"
    );
}

#[test]
fn missing_bind_source_is_refused() {
    let (r, _) = refused(&[], &["--bind", "/nonexistent-x", "--"]);
    assert!(r.stderr.contains("/nonexistent-x"), "{r:?}");
    assert!(r.stderr.contains("--bind"), "{r:?}");
}

#[test]
fn empty_command_is_refused() {
    for args in [vec![], vec!["--"]] {
        let r = common::sbx(&args).run();
        assert_eq!(r.code, 125, "{args:?}: {r:?}");
        assert!(r.stderr.contains("no command"), "{args:?}: {r:?}");
    }
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let (r, _) = refused(&[], &["--bogus-flag", "--"]);
    assert!(r.stderr.contains("--bogus-flag"), "{r:?}");
}

#[test]
fn setenv_without_equals_is_refused() {
    let (r, _) = refused(&[], &["--setenv", "NOEQUALS", "--"]);
    assert!(r.stderr.contains("NOEQUALS"), "{r:?}");
    assert!(r.stderr.contains("KEY=VALUE"), "{r:?}");
}

#[test]
fn bad_net_mode_is_refused() {
    let (r, _) = refused(&[], &["--net", "bogus", "--"]);
    assert!(r.stderr.contains("bogus"), "{r:?}");
    assert!(r.stderr.contains("--net"), "{r:?}");
}

#[test]
fn unknown_variable_is_refused() {
    let (r, w) = refused(
        &[(
            "var.toml",
            "extends = [\"default\"]\n[filesystem]\nrw = [\"${NOPE}\"]\n",
        )],
        &["--profile", "{W}/var.toml", "--"],
    );
    assert!(r.stderr.contains("${NOPE}"), "{r:?}");
    assert!(r.stderr.contains(&format!("{w}/var.toml")), "{r:?}");
    assert!(r.stderr.contains("filesystem.rw"), "{r:?}");
}

#[test]
fn unset_environment_variable_is_refused() {
    let (r, w) = refused(
        &[(
            "env.toml",
            "extends = [\"default\"]\n[env.set]\nX = \"${env:UNSET_VAR_X}\"\n",
        )],
        &["--profile", "{W}/env.toml", "--"],
    );
    assert!(r.stderr.contains("UNSET_VAR_X"), "{r:?}");
    assert!(r.stderr.contains(&format!("{w}/env.toml")), "{r:?}");
}

#[test]
fn help_lists_the_main_options() {
    let r = common::sbx(["--help"]).run();
    assert_eq!(r.code, 0, "{r:?}");
    for opt in ["--ro-bind", "--map-root", "--as-pid-1", "--profile"] {
        assert!(r.stdout.contains(opt), "{opt} missing: {r:?}");
    }
}
