//! The tool around the sandbox: `--explain` for every built-in profile (parsed), with the
//! command line's overrides, matching the mounts of a real run and failing before anything
//! on a bad profile; completions for each shell and the man page, generated from the CLI
//! definition. `sbx doctor` and its colours are in tests/doctor.rs.

mod common;

use std::process::Stdio;

use common::{Workdir, bare, canonical, run_keep};

// ---- 1. --explain ----

/// One numbered line of the `mounts:` section.
#[derive(Debug)]
struct MountLine {
    n: usize,
    what: String,
    path: String,
    host: Option<String>,
    flags: Vec<String>,
    raw: String,
}

#[derive(Debug)]
struct Explained {
    text: String,
    mounts: Vec<MountLine>,
    env: Vec<String>,
}

impl Explained {
    fn line(&self, prefix: &str) -> &str {
        self.text
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{}", self.text))
    }

    fn mounts_at(&self, path: &str) -> Vec<&MountLine> {
        self.mounts.iter().filter(|m| m.path == path).collect()
    }
}

fn parse_mount(line: &str) -> MountLine {
    let t = line.trim_start();
    let (n, body) = t
        .split_once(". ")
        .unwrap_or_else(|| panic!("mount line without a number: {line:?}"));
    let n: usize = n
        .parse()
        .unwrap_or_else(|_| panic!("mount line without a number: {line:?}"));
    assert!(body.ends_with(']'), "mount line without [flags]: {line:?}");
    let open = body
        .rfind(" [")
        .unwrap_or_else(|| panic!("mount line without [flags]: {line:?}"));
    let flags: Vec<String> = body[open + 2..body.len() - 1]
        .split(',')
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .collect();
    let head = &body[..open];
    let (head, host) = match head.split_once(" <- ") {
        Some((h, host)) => (h, Some(host.to_string())),
        None => (head, None),
    };
    let slash = head
        .find(" /")
        .unwrap_or_else(|| panic!("mount line without a path: {line:?}"));
    MountLine {
        n,
        what: head[..slash].to_string(),
        path: head[slash + 1..].to_string(),
        host,
        flags,
        raw: line.to_string(),
    }
}

fn parse_explain(text: &str) -> Explained {
    for section in [
        "namespaces:",
        "mounts:",
        "network:",
        "environment:",
        "limits:",
        "landlock:",
        "seccomp:",
        "command:",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(section)),
            "no {section} section in:\n{text}"
        );
    }
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| *l == "mounts:").unwrap();
    let mut mounts = Vec::new();
    for l in &lines[start + 1..] {
        let t = l.trim_start();
        if !l.starts_with("  ") || !t.starts_with(|c: char| c.is_ascii_digit()) {
            break;
        }
        mounts.push(parse_mount(l));
    }
    let start = lines.iter().position(|l| *l == "environment:").unwrap();
    let env: Vec<String> = lines[start + 1..]
        .iter()
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.trim().to_string())
        .collect();
    Explained {
        text: text.to_string(),
        mounts,
        env,
    }
}

/// `sbx ARGS... --explain -- touch <work>/ran`: checks that nothing ran, parses the output.
/// Returns the plan, the canonical working directory, and the work directory itself.
fn explain(args: &[&str]) -> (Explained, String, Workdir) {
    let mut s = bare();
    let marker = s.work.path().join("ran");
    s.cmd
        .args(args)
        .arg("--explain")
        .arg("--")
        .arg("touch")
        .arg(&marker);
    let (r, work) = run_keep(s);
    assert_eq!(r.code, 0, "{args:?}: {r:?}");
    assert!(!marker.exists(), "{args:?}: --explain ran the command");
    assert!(r.stderr.trim().is_empty(), "{args:?}: {r:?}");
    let e = parse_explain(&r.stdout);
    (e, canonical(work.path()), work)
}

fn builtin_profiles() -> Vec<String> {
    let r = common::sbx(["profile", "list"]).run();
    assert_eq!(r.code, 0, "{r:?}");
    let names: Vec<String> = r
        .stdout
        .lines()
        .filter(|l| l.contains(" built-in "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    for want in [
        "default", "net-off", "net-on", "strict", "ci", "cargo", "python", "node", "make", "shell",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not listed: {r:?}");
    }
    names
}

/// The checks that hold for every profile's plan.
fn check_common(name: &str, e: &Explained, work: &str) {
    let ctx = || format!("profile {name}:\n{}", e.text);
    assert!(!e.mounts.is_empty(), "{}", ctx());
    for (i, m) in e.mounts.iter().enumerate() {
        assert_eq!(
            m.n,
            i + 1,
            "numbering is not 1..n at {:?}: {}",
            m.raw,
            ctx()
        );
        let ro = m.flags.iter().any(|f| f == "ro");
        match m.what.as_str() {
            "read-only bind" => {
                assert!(ro, "a read-only bind without ro: {:?}: {}", m.raw, ctx());
                assert!(m.host.is_some(), "a bind without its source: {}", ctx());
            }
            "bind" => {
                assert!(!ro, "a writable bind marked ro: {:?}: {}", m.raw, ctx());
                assert!(m.host.is_some(), "a bind without its source: {}", ctx());
            }
            "read-only overlay" => {
                assert!(ro, "a read-only overlay without ro: {}", ctx())
            }
            _ => {}
        }
        assert!(
            !m.path.contains('?'),
            "a mount path with the optional marker `?` left in: {:?}: {}",
            m.raw,
            ctx()
        );
    }
    // Parents first: every mount's point was created, or lies in something mounted, before it.
    for (i, m) in e.mounts.iter().enumerate() {
        if m.what.starts_with("create ") || m.what == "symlink" {
            continue;
        }
        let prepared = e.mounts[..i].iter().any(|p| {
            p.path == m.path
                || m.path
                    .starts_with(&format!("{}/", p.path.trim_end_matches('/')))
        });
        assert!(
            prepared,
            "{:?} comes before its mount point exists: {}",
            m.raw,
            ctx()
        );
    }
    let proc_ = e.mounts_at("/proc");
    assert!(
        proc_.iter().any(|m| m.what == "proc"),
        "no proc on /proc: {}",
        ctx()
    );
    assert!(!e.mounts_at("/dev").is_empty(), "no /dev: {}", ctx());
    assert!(
        e.mounts_at("/dev/pts").iter().any(|m| m.what == "devpts"),
        "no devpts: {}",
        ctx()
    );
    for sys in ["/usr", "/etc"] {
        assert!(
            e.mounts_at(sys).iter().any(|m| m.what == "read-only bind"),
            "{sys} is not a read-only bind: {}",
            ctx()
        );
    }
    let ns = e.line("namespaces:");
    for kind in ["user", "mount", "pid"] {
        assert!(ns.contains(kind), "{}", ctx());
    }
    for line in &e.env {
        assert!(line.contains('='), "environment line {line:?}: {}", ctx());
    }
    assert!(
        e.env.iter().any(|l| l.starts_with("PATH=")),
        "no PATH: {}",
        ctx()
    );
    // nest turns landlock off: a landlock domain refuses every mount, and an sbx inside must
    // mount.
    match name {
        "nest" => assert_eq!(e.line("landlock:"), "landlock: off", "{}", ctx()),
        _ => assert!(e.line("landlock:").contains("ABI"), "{}", ctx()),
    }
    assert!(e.line("seccomp:").contains("deny list"), "{}", ctx());
    let command = e.line("command:");
    assert!(
        command.contains(&format!("touch {work}/ran")),
        "command line {command:?}: {}",
        ctx()
    );
    assert!(command.contains(&format!("cwd {work}")), "{}", ctx());
}

#[test]
fn explain_every_builtin_profile() {
    for name in builtin_profiles() {
        let (e, cwd, _work) = explain(&["--profile", &name]);
        check_common(&name, &e, &cwd);
        let ctx = || format!("profile {name}:\n{}", e.text);
        let network = e.line("network:");
        let cwd_mounts = e.mounts_at(&cwd);
        match name.as_str() {
            "net-on" => {
                assert!(network.contains("on (private namespace"), "{}", ctx());
                assert!(
                    e.line("namespaces:").contains("net"),
                    "net-on shares the host's network namespace: {}",
                    ctx()
                );
            }
            "python" | "node" => {
                assert!(network.contains("proxy"), "{}", ctx());
                let wants: &[&str] = if name == "python" {
                    &["pypi.org:443", "files.pythonhosted.org:443"]
                } else {
                    &["registry.npmjs.org:443"]
                };
                for w in wants {
                    assert!(network.contains(w), "{w} not allowed: {}", ctx());
                }
                for var in ["HTTP_PROXY", "HTTPS_PROXY"] {
                    assert!(
                        e.env
                            .iter()
                            .any(|l| l == &format!("{var}=http://127.0.0.1:3128")),
                        "no {var}: {}",
                        ctx()
                    );
                }
            }
            _ => {
                assert!(
                    network.starts_with("network: none"),
                    "expected no network: {}",
                    ctx()
                );
            }
        }
        match name.as_str() {
            "strict" => {
                assert!(
                    cwd_mounts.iter().any(|m| m.what == "read-only bind"
                        && m.host.as_deref() == Some(cwd.as_str())
                        && m.flags.iter().any(|f| f == "ro")),
                    "the cwd is not a read-only bind: {}",
                    ctx()
                );
                assert!(
                    !cwd_mounts.iter().any(|m| m.what == "bind"),
                    "the cwd is also writable: {}",
                    ctx()
                );
            }
            _ => {
                assert!(
                    cwd_mounts.iter().any(|m| m.what == "bind"
                        && m.host.as_deref() == Some(cwd.as_str())
                        && !m.flags.iter().any(|f| f == "ro")),
                    "the cwd is not a writable bind: {}",
                    ctx()
                );
            }
        }
        if name == "cargo" {
            assert!(
                e.env.iter().any(|l| l == "CARGO_NET_OFFLINE=true"),
                "{}",
                ctx()
            );
        }
        if name == "ci" || name == "cargo" {
            assert!(e.line("limits:").starts_with("limits:"), "{}", ctx());
            assert!(
                e.text.contains("wall_time = 7200s"),
                "ci's 2h wall time: {}",
                ctx()
            );
        }
    }
}

#[test]
fn explain_shows_command_line_overrides() {
    let (e, cwd, _work) = explain(&[
        "--tmpfs",
        "/scratch",
        "--setenv",
        "FOO=bar baz",
        "--timeout",
        "90s",
        "--net",
        "host",
        "--ro-bind",
        "/usr/share:/data",
        "--hostname",
        "explained",
    ]);
    check_common("default + overrides", &e, &cwd);
    let ctx = || e.text.clone();
    assert!(
        e.mounts_at("/scratch").iter().any(|m| m.what == "tmpfs"),
        "{}",
        ctx()
    );
    let data = e.mounts_at("/data");
    assert!(
        data.iter().any(|m| m.what == "read-only bind"
            && m.host.as_deref() == Some("/usr/share")
            && m.flags.iter().any(|f| f == "ro")),
        "{}",
        ctx()
    );
    assert!(e.env.iter().any(|l| l == "FOO=bar baz"), "{}", ctx());
    assert!(e.line("network:").contains("host"), "{}", ctx());
    assert!(e.text.contains("wall_time = 90s"), "{}", ctx());
    assert_eq!(e.line("hostname:"), "hostname: explained", "{}", ctx());
}

#[test]
fn explain_matches_the_mounts_of_a_real_run() {
    // What --explain lists is what the sandbox then mounts, at the same paths.
    let (e, _cwd, _work) = explain(&[]);
    let mut planned: Vec<String> = e
        .mounts
        .iter()
        .filter(|m| {
            !m.what.starts_with("create ")
                && m.what != "symlink"
                && !m.what.contains("scratch")
                && m.what != "file"
        })
        .map(|m| m.path.clone())
        .collect();
    planned.sort();
    planned.dedup();
    let r = common::sh(&[], "cut -d' ' -f5 /proc/self/mountinfo");
    assert_eq!(r.code, 0, "{r:?}");
    let mut mounted: Vec<String> = r
        .stdout
        .lines()
        .filter(|l| *l != "/")
        .map(str::to_string)
        .collect();
    mounted.sort();
    mounted.dedup();
    // The plan is per path; the workdir paths differ between the two runs, so compare the
    // system paths only.
    let system = |v: &[String]| -> Vec<String> {
        v.iter()
            .filter(|p| !p.starts_with("/tmp/sbx-test-"))
            .cloned()
            .collect()
    };
    assert_eq!(
        system(&planned),
        system(&mounted),
        "explain:\n{}\nmountinfo:\n{}",
        e.text,
        r.stdout
    );
}

#[test]
fn explain_with_a_bad_profile_fails_before_anything() {
    let mut s = bare();
    let marker = s.work.path().join("ran");
    s.cmd
        .args(["--profile", "no-such-profile", "--explain", "--", "touch"])
        .arg(&marker);
    let (r, _w) = run_keep(s);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("no-such-profile"), "{r:?}");
    assert!(!marker.exists());
    // --explain without a command is a usage error, too.
    let r = common::sbx(["--explain"]).run();
    assert_eq!(r.code, 125, "{r:?}");
}

// ---- 2. completions and man page ----

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let r = common::sbx(["completions", shell]).run();
        assert_eq!(r.code, 0, "{shell}: {r:?}");
        for want in ["--ro-bind", "--overlay", "doctor"] {
            // fish lists long options without their dashes (`-l ro-bind`).
            let found = r.stdout.contains(want)
                || (shell == "fish" && r.stdout.contains(&format!("-l {}", &want[2..])));
            assert!(found, "{shell}: no {want} in:\n{}", r.stdout);
        }
    }
    let r = common::sbx(["completions", "nosuch"]).run();
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("nosuch"), "{r:?}");
}

#[test]
fn bash_completion_completes_options_and_subcommands() {
    let r = common::sbx(["completions", "bash"]).run();
    assert_eq!(r.code, 0, "{r:?}");
    let w = Workdir::new();
    let script = w.path().join("sbx.bash");
    std::fs::write(&script, &r.stdout).unwrap();
    let probe = format!(
        r#"source {script} || exit 3
complete -p sbx || exit 4
COMP_WORDS=(sbx --ro-); COMP_CWORD=1; COMP_LINE="sbx --ro-"; COMP_POINT=${{#COMP_LINE}}
_sbx sbx --ro- sbx; echo "opts: ${{COMPREPLY[*]}}"
COMP_WORDS=(sbx doc); COMP_CWORD=1; COMP_LINE="sbx doc"; COMP_POINT=${{#COMP_LINE}}
_sbx sbx doc sbx; echo "subs: ${{COMPREPLY[*]}}"
"#,
        script = script.display()
    );
    let out = std::process::Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &probe])
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let opts = stdout.lines().find(|l| l.starts_with("opts:")).unwrap();
    assert!(
        opts.contains("--ro-bind") && opts.contains("--ro-overlay"),
        "{stdout}"
    );
    let subs = stdout.lines().find(|l| l.starts_with("subs:")).unwrap();
    assert!(subs.contains("doctor"), "{stdout}");
}

#[test]
fn man_page_is_roff_from_the_cli_definition() {
    let r = common::sbx(["man"]).run();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains(".TH sbx"), "{}", r.stdout);
    // roff escapes hyphens as `\-`.
    let plain = r.stdout.replace("\\-", "-");
    for want in [
        "--map-root",
        "--ro-bind",
        "--overlay",
        "--explain",
        "--pty",
        "doctor",
    ] {
        assert!(
            plain.contains(want),
            "no {want} in the man page:\n{}",
            r.stdout
        );
    }
    assert!(r.stdout.contains(".SH"), "{}", r.stdout);
    // It renders, without warnings, where groff is installed.
    let Ok(mut child) = std::process::Command::new("groff")
        .args(["-man", "-Tascii", "-ww"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        common::note_skip(
            "man_page_is_roff_from_the_cli_definition",
            "groff is not installed: the page is not rendered",
        );
        return;
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(r.stdout.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.trim().is_empty(), "groff warnings: {stderr}");
    // Drop the overstrikes (X\bX bold, _\bX underline).
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut text = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if chars.peek() == Some(&'\u{8}') {
            chars.next();
            continue;
        }
        text.push(c);
    }
    assert!(text.contains("--map-root"), "{text}");
}
