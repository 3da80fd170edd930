//! The tool around the sandbox: `sbx doctor` on this host and on simulated hosts, `--explain`
//! for every built-in profile (parsed), completions and the man page, and colours only on a
//! terminal and never with NO_COLOR.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{
    PtyOutput, Ran, Running, Sbx, Workdir, bare, canonical, exit_code, exited_within, run_keep,
};

fn has_ansi(s: &str) -> bool {
    s.contains('\x1b')
}

// ---- 1. doctor ----

/// The check lines of `sbx doctor` text output: (status, rest of the line).
/// Panics on a line that is neither a check, its indented fix, a blank, nor the summary.
fn doctor_lines(out: &str) -> Vec<(String, String)> {
    let mut checks = Vec::new();
    for line in out.lines() {
        if line.is_empty() || line.starts_with("The default profile ") {
            continue;
        }
        if let Some(fix) = line.strip_prefix("     fix: ") {
            assert!(!fix.trim().is_empty(), "empty fix line in:\n{out}");
            assert!(!checks.is_empty(), "a fix before any check:\n{out}");
            continue;
        }
        let (tag, rest) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("unexpected doctor line {line:?} in:\n{out}"));
        assert!(
            ["OK", "WARN", "FAIL"].contains(&tag),
            "line does not start with OK/WARN/FAIL: {line:?} in:\n{out}"
        );
        checks.push((tag.to_string(), rest.trim_start().to_string()));
    }
    assert!(!checks.is_empty(), "no checks in:\n{out}");
    checks
}

fn doctor_json(r: &Ran) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("doctor --json is not JSON ({e}): {r:?}"));
    let checks = v["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks array: {r:?}"));
    assert!(!checks.is_empty(), "{r:?}");
    for c in checks {
        for key in ["name", "status", "detail", "fix"] {
            assert!(c[key].is_string(), "check without a string {key}: {c}");
        }
        let status = c["status"].as_str().unwrap();
        assert!(["OK", "WARN", "FAIL"].contains(&status), "{c}");
        if status != "OK" {
            assert!(
                !c["fix"].as_str().unwrap().is_empty(),
                "a {status} check without a fix: {c}"
            );
        }
    }
    assert!(v["default_profile_runs"].is_boolean(), "{r:?}");
    v
}

#[test]
fn doctor_on_this_host_passes() {
    let r = common::sbx(["doctor"]).run();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!has_ansi(&r.stdout), "colours on a pipe: {r:?}");
    let checks = doctor_lines(&r.stdout);
    let fails: Vec<_> = checks.iter().filter(|(t, _)| t == "FAIL").collect();
    assert!(fails.is_empty(), "FAIL on this host: {fails:?}\n{r:?}");
    let default = checks
        .iter()
        .find(|(_, l)| l.starts_with("default profile"))
        .unwrap_or_else(|| panic!("no default profile line: {r:?}"));
    assert_eq!(default.0, "OK", "{r:?}");
    assert!(
        r.stdout.contains("The default profile runs on this host."),
        "{r:?}"
    );
    // The checks the issue asks for are all there.
    for name in [
        "user namespaces",
        "running in a container",
        "namespace: user",
        "namespace: mount",
        "namespace: pid",
        "namespace: net",
        "namespace: ipc",
        "namespace: uts",
        "namespace: cgroup",
        "landlock",
        "seccomp",
        "TIOCSTI",
        "newuidmap",
        "cgroup v2",
        "overlayfs",
    ] {
        assert!(
            checks.iter().any(|(_, l)| l.starts_with(name)),
            "no check {name:?}: {r:?}"
        );
    }
}

#[test]
fn doctor_json_on_this_host() {
    let r = common::sbx(["doctor", "--json"]).run();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!has_ansi(&r.stdout), "{r:?}");
    let v = doctor_json(&r);
    assert_eq!(v["default_profile_runs"], true, "{r:?}");
    let checks = v["checks"].as_array().unwrap();
    assert!(
        checks.iter().all(|c| c["status"] != "FAIL"),
        "FAIL on this host: {r:?}"
    );
    let default = checks
        .iter()
        .find(|c| c["name"].as_str().unwrap().starts_with("default profile"))
        .unwrap_or_else(|| panic!("no default profile check: {r:?}"));
    assert_eq!(default["status"], "OK", "{r:?}");
}

/// A directory laid out like a host's root, for `SBX_DOCTOR_ROOT`.
struct FakeRoot {
    work: Workdir,
}

impl FakeRoot {
    /// A healthy host: user namespaces on, every namespace type, seccomp, landlock ABI 7.
    fn healthy() -> FakeRoot {
        let f = FakeRoot {
            work: Workdir::new(),
        };
        f.set("proc/sys/user/max_user_namespaces", "63429\n");
        f.set(
            "proc/sys/kernel/seccomp/actions_avail",
            "kill_process kill_thread trap errno user_notif trace log allow\n",
        );
        f.set("sys/kernel/security/landlock/abi", "7\n");
        for ns in ["user", "mnt", "pid", "net", "ipc", "uts", "cgroup"] {
            f.set(&format!("proc/self/ns/{ns}"), "");
        }
        f
    }

    fn set(&self, rel: &str, content: &str) {
        let p = self.work.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
    }

    fn remove(&self, rel: &str) {
        std::fs::remove_file(self.work.path().join(rel)).unwrap();
    }

    fn doctor(&self, json: bool) -> Ran {
        let args: &[&str] = if json {
            &["doctor", "--json"]
        } else {
            &["doctor"]
        };
        common::sbx(args)
            .env("SBX_DOCTOR_ROOT", self.work.path())
            .run()
    }
}

/// The (status, line) of the check whose line contains `needle`.
fn check_with<'a>(checks: &'a [(String, String)], needle: &str, r: &Ran) -> &'a (String, String) {
    checks
        .iter()
        .find(|(_, l)| l.contains(needle))
        .unwrap_or_else(|| panic!("no check mentioning {needle:?}: {r:?}"))
}

#[test]
fn doctor_on_a_healthy_fake_host_passes() {
    let f = FakeRoot::healthy();
    let r = f.doctor(false);
    assert_eq!(r.code, 0, "{r:?}");
    let checks = doctor_lines(&r.stdout);
    assert!(
        checks.iter().all(|(t, _)| t != "FAIL"),
        "FAIL on a healthy fake host: {r:?}"
    );
    assert_eq!(check_with(&checks, "landlock", &r).0, "OK", "{r:?}");
    assert_eq!(check_with(&checks, "seccomp", &r).0, "OK", "{r:?}");
    assert_eq!(
        check_with(&checks, "running in a container", &r).0,
        "OK",
        "{r:?}"
    );
    let v = doctor_json(&f.doctor(true));
    assert_eq!(v["default_profile_runs"], true);
}

#[test]
fn doctor_reports_disabled_user_namespaces_with_the_sysctl() {
    let f = FakeRoot::healthy();
    f.set("proc/sys/user/max_user_namespaces", "0\n");
    let r = f.doctor(false);
    assert_ne!(r.code, 0, "{r:?}");
    assert_ne!(r.code, 125, "a host problem is not a usage error: {r:?}");
    let checks = doctor_lines(&r.stdout);
    let (tag, line) = check_with(&checks, "user.max_user_namespaces", &r);
    assert_eq!(tag, "FAIL", "{r:?}");
    assert!(line.contains("= 0"), "{r:?}");
    assert!(
        r.stdout
            .contains("fix: sysctl -w user.max_user_namespaces="),
        "no sysctl fix: {r:?}"
    );
    assert!(
        r.stdout.contains("cannot run on this host"),
        "no verdict: {r:?}"
    );
    let j = f.doctor(true);
    assert_ne!(j.code, 0, "{j:?}");
    let v = doctor_json(&j);
    assert_eq!(v["default_profile_runs"], false, "{j:?}");
    let c = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["detail"]
                .as_str()
                .unwrap()
                .contains("max_user_namespaces")
        })
        .unwrap_or_else(|| panic!("{j:?}"));
    assert_eq!(c["status"], "FAIL");
    assert!(c["fix"].as_str().unwrap().contains("sysctl"), "{c}");
}

#[test]
fn doctor_reports_the_apparmor_restriction() {
    let f = FakeRoot::healthy();
    f.set(
        "proc/sys/kernel/apparmor_restrict_unprivileged_userns",
        "1\n",
    );
    let r = f.doctor(false);
    assert_ne!(r.code, 0, "{r:?}");
    let checks = doctor_lines(&r.stdout);
    let (tag, _) = check_with(&checks, "apparmor_restrict_unprivileged_userns", &r);
    assert_eq!(tag, "FAIL", "{r:?}");
    assert!(
        r.stdout
            .contains("sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"),
        "{r:?}"
    );
    // Set to 0 (Ubuntu with the restriction lifted) it is fine.
    f.set(
        "proc/sys/kernel/apparmor_restrict_unprivileged_userns",
        "0\n",
    );
    let r = f.doctor(false);
    assert_eq!(r.code, 0, "{r:?}");
    let checks = doctor_lines(&r.stdout);
    assert_eq!(
        check_with(&checks, "apparmor_restrict_unprivileged_userns", &r).0,
        "OK"
    );
}

#[test]
fn doctor_reports_the_debian_sysctl() {
    let f = FakeRoot::healthy();
    f.set("proc/sys/kernel/unprivileged_userns_clone", "0\n");
    let r = f.doctor(false);
    assert_ne!(r.code, 0, "{r:?}");
    let checks = doctor_lines(&r.stdout);
    assert_eq!(
        check_with(&checks, "unprivileged_userns_clone", &r).0,
        "FAIL",
        "{r:?}"
    );
    assert!(
        r.stdout
            .contains("sysctl -w kernel.unprivileged_userns_clone=1"),
        "{r:?}"
    );
    f.set("proc/sys/kernel/unprivileged_userns_clone", "1\n");
    let r = f.doctor(false);
    assert_eq!(r.code, 0, "{r:?}");
}

#[test]
fn doctor_reports_missing_namespaces_landlock_and_seccomp() {
    let f = FakeRoot::healthy();
    f.remove("proc/self/ns/cgroup");
    let r = f.doctor(false);
    assert_ne!(r.code, 0, "{r:?}");
    let checks = doctor_lines(&r.stdout);
    assert_eq!(check_with(&checks, "namespace: cgroup", &r).0, "FAIL");
    assert_eq!(check_with(&checks, "namespace: pid", &r).0, "OK");

    let f = FakeRoot::healthy();
    f.remove("sys/kernel/security/landlock/abi");
    let r = f.doctor(false);
    assert_ne!(r.code, 0, "landlock is required by default: {r:?}");
    let checks = doctor_lines(&r.stdout);
    assert_eq!(check_with(&checks, "landlock", &r).0, "FAIL", "{r:?}");

    // An old landlock ABI is a warning, not a failure.
    let f = FakeRoot::healthy();
    f.set("sys/kernel/security/landlock/abi", "3\n");
    let r = f.doctor(false);
    assert_eq!(r.code, 0, "{r:?}");
    let checks = doctor_lines(&r.stdout);
    assert_eq!(check_with(&checks, "landlock", &r).0, "WARN", "{r:?}");

    let f = FakeRoot::healthy();
    f.remove("proc/sys/kernel/seccomp/actions_avail");
    let r = f.doctor(false);
    assert_ne!(r.code, 0, "{r:?}");
    let checks = doctor_lines(&r.stdout);
    assert_eq!(check_with(&checks, "seccomp", &r).0, "FAIL", "{r:?}");
}

#[test]
fn doctor_warns_inside_a_container() {
    let f = FakeRoot::healthy();
    f.set(".dockerenv", "");
    let r = f.doctor(false);
    assert_eq!(r.code, 0, "a container alone does not stop sbx: {r:?}");
    let checks = doctor_lines(&r.stdout);
    let (tag, line) = check_with(&checks, "running in a container", &r);
    assert_eq!(tag, "WARN", "{r:?}");
    assert!(line.contains(".dockerenv"), "{r:?}");
}

#[test]
fn doctor_without_a_terminal_or_with_no_color_has_no_colours() {
    let f = FakeRoot::healthy();
    f.set("proc/sys/user/max_user_namespaces", "0\n");
    let r = f.doctor(false);
    assert!(!has_ansi(&r.stdout) && !has_ansi(&r.stderr), "{r:?}");
    let r = common::sbx(["doctor"]).env("NO_COLOR", "1").run();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!has_ansi(&r.stdout) && !has_ansi(&r.stderr), "{r:?}");
}

// ---- 2. --explain ----

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
    assert!(e.line("landlock:").contains("ABI"), "{}", ctx());
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
                assert!(network.contains("host"), "{}", ctx());
                assert!(
                    !e.line("namespaces:").contains("net"),
                    "net-on creates a network namespace: {}",
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

// ---- 3. completions and man page ----

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

// ---- 4. colours on a terminal ----

/// `sbx doctor` with stdout and stderr on a fresh pty; returns (exit code, output).
fn doctor_on_a_pty(no_color: Option<&str>) -> (i32, String) {
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut s = common::sbx(["doctor"]);
    if let Some(v) = no_color {
        s = s.env("NO_COLOR", v);
    }
    let Sbx { mut cmd, work } = s;
    cmd.stdout(pty.slave.try_clone().unwrap())
        .stderr(pty.slave.try_clone().unwrap());
    let reader = PtyOutput::start(&pty.master);
    let mut child = Running::new(cmd.spawn().expect("spawn sbx"));
    drop(cmd);
    drop(pty.slave);
    let code = exited_within(&mut child, Duration::from_secs(60))
        .map(exit_code)
        .expect("sbx doctor hung");
    let out = reader.finish(Duration::from_secs(5));
    drop(work);
    (code, out)
}

#[test]
fn doctor_colours_only_on_a_terminal_without_no_color() {
    let (code, out) = doctor_on_a_pty(None);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("\x1b[32mOK"),
        "no green OK on a terminal: {out:?}"
    );
    assert!(out.contains("\x1b[0m"), "colour not reset: {out:?}");
    let (code, out) = doctor_on_a_pty(Some("1"));
    assert_eq!(code, 0, "{out}");
    assert!(!has_ansi(&out), "colours with NO_COLOR=1: {out:?}");
    assert!(out.contains("OK"), "{out:?}");
    // no-color.org: an empty NO_COLOR does not count.
    let (code, out) = doctor_on_a_pty(Some(""));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\x1b[32mOK"), "{out:?}");
}
