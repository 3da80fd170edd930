//! The environment a command starts with (issue #17): the `ci` profile's CI variables (the
//! non-secret ones in, the tokens never), PATH entries and commands the sandbox finds
//! differently from the host, and exec failures that name a missing interpreter.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{Workdir, profile};

/// Fake CI variables the `ci` profile keeps: one per system and then some.
const KEPT: &[(&str, &str)] = &[
    ("GITHUB_SHA", "0123abcd"),
    ("GITHUB_REF", "refs/heads/main"),
    ("GITHUB_REF_NAME", "main"),
    ("GITHUB_WORKSPACE", "/home/runner/work/x/x"),
    ("GITHUB_REPOSITORY", "o/x"),
    ("GITHUB_RUN_ID", "42"),
    ("GITHUB_EVENT_NAME", "push"),
    ("GITHUB_ACTIONS", "true"),
    ("GITHUB_SERVER_URL", "https://github.com"),
    ("RUNNER_OS", "Linux"),
    ("RUNNER_ARCH", "X64"),
    ("CI_COMMIT_SHA", "4567ef"),
    ("CI_COMMIT_REF_NAME", "feature"),
    ("CI_PIPELINE_ID", "7"),
    ("CI_JOB_ID", "8"),
    ("CI_PROJECT_DIR", "/builds/o/x"),
    ("GITLAB_CI", "true"),
    ("BUILDKITE", "true"),
    ("BUILDKITE_COMMIT", "89ab"),
    ("BUILDKITE_BRANCH", "main"),
    ("BUILDKITE_BUILD_NUMBER", "9"),
    ("JENKINS_URL", "https://ci.example/"),
    ("BUILD_NUMBER", "10"),
    ("GIT_COMMIT", "cdef"),
    ("GIT_BRANCH", "origin/main"),
    ("WORKSPACE", "/var/jenkins/ws"),
];

/// Fake secrets of the same systems, and the runner's channels to later steps.
const SECRETS: &[&str] = &[
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "ACTIONS_RUNTIME_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    "ACTIONS_CACHE_URL",
    "GITHUB_ENV",
    "GITHUB_OUTPUT",
    "CI_JOB_TOKEN",
    "CI_JOB_JWT_V2",
    "CI_REGISTRY_PASSWORD",
    "CI_DEPLOY_PASSWORD",
    "CI_REPOSITORY_URL",
    "BUILDKITE_AGENT_ACCESS_TOKEN",
    "BUILDKITE_AGENT_JOB_API_TOKEN",
    "JENKINS_SECRET",
];

/// `sbx ARGS -- env` with every fake CI variable and secret set; the command's environment.
fn env_inside(args: &[&str]) -> std::collections::BTreeMap<String, String> {
    let mut argv: Vec<&str> = args.to_vec();
    argv.extend(["--", "env"]);
    let mut s = common::sbx(argv);
    for (k, v) in KEPT {
        s = s.env(k, v);
    }
    for k in SECRETS {
        s = s.env(k, format!("secret-{k}"));
    }
    let r = s.run();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stdout.contains("secret-"), "a secret arrived:\n{r:?}");
    common::key_values(&r.stdout)
}

#[test]
fn ci_keeps_the_ci_systems_variables_and_never_their_tokens() {
    let env = env_inside(&["-p", "ci"]);
    for (k, v) in KEPT {
        assert_eq!(env.get(*k).map(String::as_str), Some(*v), "{k} in {env:?}");
    }
    for k in SECRETS {
        assert!(!env.contains_key(*k), "{k} in {env:?}");
    }
}

#[test]
fn a_profile_that_extends_ci_with_prefixes_still_gets_no_token() {
    let p = profile(
        "extends = [\"ci\"]\n[env]\nkeep = [\"GITHUB_*\", \"ACTIONS_*\", \"CI_*\", \"BUILDKITE_*\", \"JENKINS_*\"]\n",
    );
    let env = env_inside(&["-p", &p.path]);
    // The prefixes work (the variables ci names arrive through them too)...
    assert_eq!(env.get("GITHUB_SHA").map(String::as_str), Some("0123abcd"));
    // ...but ci's secrets stay out.
    for k in SECRETS {
        assert!(!env.contains_key(*k), "{k} in {env:?}");
    }
}

/// A directory of its own outside the work directory (so not visible inside: /tmp is the
/// sandbox's own tmpfs) holding an executable `true` that is not /usr/bin/true.
fn shadow_true() -> Workdir {
    let dir = Workdir::new();
    let p = dir.file("true", "#!/bin/sh\necho shadow\n");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn host_path(first: &Path) -> String {
    format!("{}:/usr/local/bin:/usr/bin:/bin", first.display())
}

#[test]
fn a_command_found_elsewhere_inside_is_named_when_the_hosts_path_is_passed() {
    let shadow = shadow_true();
    let dir = shadow.path().display().to_string();
    let r = common::sbx(["-p", "ci", "--", "true"])
        .env("PATH", host_path(shadow.path()))
        .run();
    assert_eq!(r.code, 0, "{r:?}");
    let warning = format!(
        "`true` runs /usr/bin/true in the sandbox, not {dir}/true as on the host: {dir} is not \
         visible inside"
    );
    assert!(r.stderr.contains(&warning), "{r:?}");

    // -v names the PATH entries the sandbox does not show.
    let r = common::sbx(["-v", "-p", "ci", "--", "true"])
        .env("PATH", host_path(shadow.path()))
        .run();
    let line = format!(
        "PATH entries not visible in the sandbox (the command is not looked up there): {dir}"
    );
    assert!(r.stderr.contains(&line), "{r:?}");

    // Where the command is the same file inside and out, nothing is said.
    let r = common::sbx(["-p", "ci", "--", "true"]).run();
    assert_eq!((r.code, r.stderr.as_str()), (0, ""), "{r:?}");
}

#[test]
fn under_a_path_of_the_profiles_own_the_difference_is_named_with_v_only() {
    let shadow = shadow_true();
    let dir = shadow.path().display().to_string();
    let r = common::sbx(["--", "true"])
        .env("PATH", host_path(shadow.path()))
        .run();
    assert_eq!((r.code, r.stderr.as_str()), (0, ""), "{r:?}");
    let r = common::sbx(["-v", "--", "true"])
        .env("PATH", host_path(shadow.path()))
        .run();
    let note = format!("`true` runs /usr/bin/true in the sandbox, not {dir}/true as on the host");
    assert!(r.stderr.contains(&note), "{r:?}");
}

#[test]
fn command_not_found_says_where_the_host_finds_it() {
    let shadow = Workdir::new();
    let p = shadow.file("only-on-the-host", "#!/bin/sh\n");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    let r = common::sbx(["--", "only-on-the-host"])
        .env("PATH", host_path(shadow.path()))
        .run();
    assert_eq!(r.code, 127, "{r:?}");
    assert!(
        r.stderr.contains("command not found in the sandbox"),
        "{r:?}"
    );
    assert!(
        r.stderr
            .contains(&format!("on the host it is {}", p.display())),
        "{r:?}"
    );
}

/// PT_INTERP of an ELF file, read here independently of sbx (64-bit little-endian only).
fn pt_interp(path: &str) -> Option<String> {
    let b = std::fs::read(path).ok()?;
    if b.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u = |at: usize, n: usize| -> usize {
        (0..n).fold(0usize, |v, i| v | (usize::from(b[at + i]) << (8 * i)))
    };
    let (phoff, phentsize, phnum) = (u(32, 8), u(54, 2), u(56, 2));
    (0..phnum).find_map(|i| {
        let ph = phoff + i * phentsize;
        (u(ph, 4) == 3).then(|| {
            let (off, len) = (u(ph + 8, 8), u(ph + 32, 8));
            let s = &b[off..off + len];
            String::from_utf8_lossy(s.split(|c| *c == 0).next().unwrap()).into_owned()
        })
    })
}

#[test]
fn a_missing_elf_interpreter_is_named_with_what_to_bind() {
    let Some(interp) = pt_interp("/usr/bin/true") else {
        common::note_skip(
            "a_missing_elf_interpreter_is_named_with_what_to_bind",
            "/usr/bin/true is not a dynamically linked x86-64 ELF",
        );
        return;
    };
    let top = format!("/{}", interp.split('/').nth(1).unwrap());
    let scratch = profile("[filesystem]\nro = [\"/usr\"]\n");
    for cmd in ["/usr/bin/true", "true"] {
        let r = common::sbx(["-p", &scratch.path, "--", cmd]).run();
        assert_eq!(r.code, 127, "{r:?}");
        assert!(
            r.stderr.contains(&format!("its ELF interpreter {interp} ")),
            "{r:?}"
        );
        assert!(r.stderr.contains(&format!("--ro-bind {top}")), "{r:?}");
        assert!(r.stderr.contains("extends = [\"default\"]"), "{r:?}");
        assert!(!r.stderr.contains("is its directory bound"), "{r:?}");
    }
    // What the message says to bind is enough.
    let binds: String = {
        let r = common::sbx(["-p", &scratch.path, "--", "/usr/bin/true"]).run();
        let start = r.stderr.find("(`").unwrap() + 2;
        let end = start + r.stderr[start..].find('`').unwrap();
        r.stderr[start..end].to_string()
    };
    let mut argv = vec!["-p", scratch.path.as_str()];
    argv.extend(binds.split(' '));
    argv.extend(["--", "/usr/bin/true"]);
    let r = common::sbx(argv).run();
    assert_eq!(r.code, 0, "{binds}: {r:?}");
}

#[test]
fn a_missing_shebang_interpreter_is_named() {
    let s = common::bare();
    let script = s.work.file("build.sh", "#!/nonexistent/interp\necho hi\n");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut s = s;
    s.cmd.args(["--", "./build.sh"]);
    let r = s.run();
    assert_eq!(r.code, 127, "{r:?}");
    assert!(
        r.stderr
            .contains("the interpreter on its #! line, /nonexistent/interp, is not"),
        "{r:?}"
    );
    assert!(!r.stderr.contains("is its directory bound"), "{r:?}");

    // An interpreter the host has but the sandbox does not show: what to bind.
    let elsewhere = Workdir::new();
    let interp = elsewhere.path().join("interp");
    std::fs::copy("/bin/sh", &interp).unwrap();
    common::chown(&interp);
    let s = common::bare();
    let text = format!("#!{}\necho hi\n", interp.display());
    let script = s.work.file("run.sh", &text);
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut s = s;
    s.cmd.args(["--", "./run.sh"]);
    let r = s.run();
    assert_eq!(r.code, 127, "{r:?}");
    assert!(
        r.stderr
            .contains(&format!("--ro-bind {}", elsewhere.path().display())),
        "{r:?}"
    );
}
