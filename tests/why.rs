//! `sbx why` (issue #17): whether the sandbox would let its command read, write or execute a
//! path, or reach HOST:PORT; which profile key decides, at which file:line; and the one line
//! that would change it. Exit 0 when allowed, 1 when not, 125 for a bad command line.

mod common;

use common::{Ran, Workdir, run_keep};

const DEFAULT: &str = include_str!("../profiles/default.toml");

/// The 1-based line of the default profile holding `needle`.
fn default_line(needle: &str) -> usize {
    DEFAULT
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("default.toml has no {needle}"))
        + 1
}

/// `sbx why ARGS...` run in `s`'s work directory (or `dir`).
fn why_in(dir: Option<&std::path::Path>, args: &[&str]) -> (Ran, Workdir) {
    let mut all = vec!["why"];
    all.extend_from_slice(args);
    let mut s = common::sbx(&all);
    if let Some(d) = dir {
        s.cmd.current_dir(d);
    }
    run_keep(s)
}

fn why(args: &[&str]) -> Ran {
    why_in(None, args).0
}

#[test]
fn usr_is_readable_and_executable_from_default_toml_but_not_writable() {
    let at = format!("builtin:default.toml:{}", default_line("ro = [\"/usr\""));
    let r = why(&["/usr/bin/env"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("/usr/bin/env: readable\n"), "{r:?}");
    assert!(
        r.stdout.contains(&format!("{at} (filesystem.ro \"/usr\")")),
        "{r:?}"
    );
    let r = why(&["/usr/bin/env", "--exec"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("executable"), "{r:?}");
    let r = why(&["/usr/bin/env", "--write"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("not writable"), "{r:?}");
    assert!(
        r.stdout.contains("read-only bind of the host's /usr"),
        "{r:?}"
    );
    assert!(r.stdout.contains(&at), "{r:?}");
    assert!(
        r.stdout
            .contains("rw = [\"/usr/bin/env\"], or run with --bind /usr/bin/env"),
        "{r:?}"
    );
    // Through the symlink the default layout makes where /usr is merged: /bin -> usr/bin.
    if std::fs::symlink_metadata("/bin").is_ok_and(|m| m.file_type().is_symlink()) {
        let r = why(&["/bin/sh", "--exec"]);
        assert_eq!(r.code, 0, "{r:?}");
        assert!(r.stdout.contains("through sbx's symlink"), "{r:?}");
        assert!(r.stdout.contains(&at), "{r:?}");
    }
}

#[test]
fn a_key_under_a_bound_home_is_hidden_by_the_default_profile() {
    let mut s = common::sbx(Vec::<String>::new());
    let home = s.work.subdir("home");
    let ssh = s.work.subdir("home/.ssh");
    s.work.file("home/.ssh/id_rsa", "key\n");
    let home_s = home.display().to_string();
    let key = ssh.join("id_rsa").display().to_string();
    s.cmd.args(["why", &key, "--bind", &home_s]);
    let (r, _w) = run_keep(s);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.starts_with(&format!("{key}: not readable\n")),
        "{r:?}"
    );
    assert!(r.stdout.contains("hidden by filesystem.hide"), "{r:?}");
    let line = default_line("\"${HOME}/.ssh\"");
    assert!(
        r.stdout.contains(&format!(
            "builtin:default.toml:{line} (filesystem.hide \"{}\")",
            ssh.display()
        )),
        "{r:?}"
    );
    assert!(
        r.stdout.contains(&format!("--hide '!{}'", ssh.display())),
        "{r:?}"
    );
}

#[test]
fn a_path_no_mount_shows_is_not_visible_and_the_bind_to_add_is_named() {
    let r = why(&["/srv/sbx-why-nothing/data"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("not readable"), "{r:?}");
    assert!(r.stdout.contains("no mount shows"), "{r:?}");
    assert!(
        r.stdout.contains(
            "ro = [\"/srv/sbx-why-nothing/data\"], or run with --ro-bind /srv/sbx-why-nothing/data"
        ),
        "{r:?}"
    );
}

#[test]
fn the_workspace_is_writable_but_git_hooks_are_protected() {
    let mut s = common::sbx(Vec::<String>::new());
    s.work.subdir(".git/hooks");
    let work = common::canonical(s.work.path());
    // A relative path is relative to the current directory.
    s.cmd.args(["why", "src/main.rs", "--write"]);
    let (r, w) = run_keep(s);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .starts_with(&format!("{work}/src/main.rs: writable\n")),
        "{r:?}"
    );
    let line = default_line("rw = [\"${CWD}\"]");
    assert!(
        r.stdout.contains(&format!(
            "builtin:default.toml:{line} (filesystem.rw \"{work}\")"
        )),
        "{r:?}"
    );
    let (r, _) = why_in(Some(w.path()), &[".git/hooks", "--write"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("not writable"), "{r:?}");
    assert!(r.stdout.contains("filesystem.protect"), "{r:?}");
    let line = default_line("\".git\", \".git/config\"");
    assert!(
        r.stdout.contains(&format!("builtin:default.toml:{line}")),
        "{r:?}"
    );
    assert!(r.stdout.contains("--protect '!.git'"), "{r:?}");
    // Reading it is fine.
    let (r, _) = why_in(Some(w.path()), &[".git/hooks"]);
    assert_eq!(r.code, 0, "{r:?}");
}

#[test]
fn tmp_is_a_fresh_tmpfs_that_shows_nothing_of_the_host() {
    let other = Workdir::new();
    let f = other.file("host-file", "host\n").display().to_string();
    let r = why(&[&f, "--write"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("a fresh tmpfs at /tmp"), "{r:?}");
    let line = default_line("tmpfs = [\"/tmp\"");
    assert!(
        r.stdout.contains(&format!(
            "builtin:default.toml:{line} (filesystem.tmpfs \"/tmp\")"
        )),
        "{r:?}"
    );
    let r = why(&[&f, "--see"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.contains(&format!("the host's {f} is not visible")),
        "{r:?}"
    );
    assert!(r.stdout.contains(&format!("--ro-bind {f}")), "{r:?}");
}

#[test]
fn a_user_profile_entry_is_found_at_its_exact_line_as_written_with_variables() {
    let data = Workdir::new();
    let data_s = common::canonical(data.path());
    let p = common::profile(&format!(
        "extends = [\"default\"]\n\
         \n\
         [filesystem]\n\
         # the data\n\
         rw = [\n\
         \x20 \"/sbx-why-missing?\",\n\
         \x20 \"{data_s}\",\n\
         ]\n\
         ro = [\"${{CWD}}/ref?\"]\n"
    ));
    let r = why(&[&format!("{data_s}/out"), "--write", "--profile", &p.path]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains(&format!("{}:7 (filesystem.rw \"{data_s}\")", p.path)),
        "{r:?}"
    );
    // An entry written with a variable is found by what it expands to.
    let mut s = common::sbx(Vec::<String>::new());
    s.work.subdir("ref");
    s.cmd
        .args(["why", "ref/x", "--write", "--profile", &p.path]);
    let (r, _w) = run_keep(s);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.contains(&format!("{}:9 (filesystem.ro", p.path)),
        "{r:?}"
    );
}

#[test]
fn a_command_line_bind_is_named_as_such() {
    let data = Workdir::new();
    let d = common::canonical(data.path());
    let r = why(&[&d, "--write", "--bind", &d]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains(&format!("command line (--bind \"{d}\")")),
        "{r:?}"
    );
}

#[test]
fn no_network_makes_every_destination_unreachable() {
    let r = why(&["example.org:443"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.starts_with("example.org:443: not reachable\n"),
        "{r:?}"
    );
    let line = default_line("mode = \"none\"");
    assert!(
        r.stdout
            .contains(&format!("builtin:default.toml:{line} (network.mode)")),
        "{r:?}"
    );
    assert!(
        r.stdout.contains("--net proxy --allow example.org:443"),
        "{r:?}"
    );
}

#[test]
fn a_proxy_profile_reaches_what_it_allows_and_names_the_entry() {
    let p = common::profile(
        "extends = [\"default\"]\n[network]\nmode = \"proxy\"\nallow = [\"example.org:443\", \"*.example.net:*\"]\n",
    );
    let r = why(&["example.org:443", "--profile", &p.path]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains(&format!("{}:4 (network.allow \"example.org:443\")", p.path)),
        "{r:?}"
    );
    let r = why(&["files.example.net:8080", "--profile", &p.path]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("wildcard `*.example.net:*`"), "{r:?}");
    let r = why(&["example.org:80", "--profile", &p.path]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout
            .contains("allow = [\"example.org:80\"], or run with --allow example.org:80"),
        "{r:?}"
    );
    // The same from the command line.
    let r = why(&[
        "example.org:443",
        "--net",
        "proxy",
        "--allow",
        "example.org:443",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("command line (--allow example.org:443)"),
        "{r:?}"
    );
}

#[test]
fn bad_input_is_one_error_and_exit_125() {
    let r = why(&[]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("PATH|HOST:PORT"), "{r:?}");
    for bad in ["host:notaport", "host:0", "::1:80", "[::1]"] {
        let r = why(&[bad]);
        assert_eq!(r.code, 125, "{bad}: {r:?}");
        assert_eq!(r.stdout, "", "{bad}: {r:?}");
        assert_eq!(common::error_lines(&r.stderr).len(), 1, "{bad}: {r:?}");
        assert!(!r.stderr.contains("panicked"), "{bad}: {r:?}");
    }
    let r = why(&["host:notaport"]);
    assert!(r.stderr.contains("\"notaport\" is not a port"), "{r:?}");
    let r = why(&["/usr", "--write", "--exec"]);
    assert_eq!(r.code, 125, "{r:?}");
    let r = why(&["/usr", "--profile", "sbx-why-no-such-profile"]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("unknown profile"), "{r:?}");
}
