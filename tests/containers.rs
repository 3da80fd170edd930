//! sbx where container runtimes and outer sandboxes put it, each environment built as a
//! process tree around it (`common::envs`; the host is never changed): Docker's seccomp
//! filter, runc's masked /proc and read-only /sys, podman's filter that denies sethostname,
//! a filter that denies the mount calls, root without CAP_SETFCAP, sbx inside sbx and inside
//! bubblewrap. In each, sbx either runs or exits 125 with one message whose cause names what
//! was read and whose fix is the environment's own, and `sbx doctor` gives the same cause and
//! fix. Each environment is checked to do what it claims first (the precondition), and where
//! sbx runs, what its fallback keeps is attacked.

mod common;

use common::Ran;
use common::envs::{Env, Filter, Proc};
use common::{Workdir, note_skip, read_report};

/// The seccomp loader's entry (see `common::envs`): a no-op as an ordinary test.
#[test]
fn env_loader() {
    common::envs::loader_main();
}

fn sbx() -> String {
    common::binary().display().to_string()
}

/// sbx's one message: the error line, its cause and its fix.
#[derive(Debug)]
struct Said {
    error: String,
    cause: String,
    fix: String,
}

/// Asserts that `r` is sbx's exit 125 with one message of exactly three lines (the error, its
/// cause, its fix) and nothing else on stderr.
fn said(r: &Ran) -> Said {
    assert_eq!(r.code, 125, "{r:?}");
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 3, "not one message of three lines: {r:?}");
    let get = |i: usize, prefix: &str| {
        lines[i]
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("line {i} does not start with {prefix:?}: {r:?}"))
            .to_string()
    };
    Said {
        error: get(0, "sbx: "),
        cause: get(1, "  cause: "),
        fix: get(2, "  fix: "),
    }
}

/// `sbx doctor --json` in `env`: the check named `name`, which must say `status`, with the
/// run's cause and fix.
fn doctor_agrees(env: &Env, name: &str, status: &str, run: &Said) {
    let work = Workdir::new();
    let r = env.run(&work, &[&sbx(), "doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("doctor --json is not JSON ({e}): {r:?}"));
    assert_eq!(v["default_profile_runs"], false, "{r:?}");
    let check = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().starts_with(name))
        .unwrap_or_else(|| panic!("no check {name:?}: {r:?}"));
    assert_eq!(check["status"], status, "{check}");
    let detail = check["detail"].as_str().unwrap();
    assert!(
        detail.ends_with(&format!("; cause: {}", run.cause)),
        "doctor's cause differs from the run's:\n doctor: {detail}\n run: {}",
        run.cause
    );
    assert_eq!(check["fix"].as_str().unwrap(), run.fix, "{check}");
}

const QUIET: [&str; 2] = ["--limit", "cgroup=off"];

fn run_sbx(env: &Env, args: &[&str]) -> Ran {
    let work = Workdir::new();
    let bin = sbx();
    let mut argv = vec![bin.as_str()];
    argv.extend(QUIET);
    argv.extend(args);
    env.run(&work, &argv)
}

// ---- Docker's default seccomp profile ----

#[test]
fn docker_seccomp_is_named_with_the_flags_to_pass() {
    let work = Workdir::new();
    let masked = || Env::new().proc(Proc::Masked).var("container", "docker");
    let docker = masked().filter(Filter::Docker);
    // The precondition: in this container the filter, and it alone, denies user namespaces.
    let r = docker.run(&work, &["unshare", "-U", "true"]);
    assert_ne!(
        r.code, 0,
        "the filter let unshare(CLONE_NEWUSER) through: {r:?}"
    );
    let r = masked().run(&work, &["unshare", "-U", "true"]);
    assert_eq!(r.code, 0, "without the filter: {r:?}");

    let v = said(&run_sbx(&docker, &["--", "true"]));
    assert!(v.error.starts_with("setup failed at clone"), "{v:?}");
    assert!(v.error.ends_with("(EPERM)"), "{v:?}");
    assert!(
        v.cause
            .starts_with("a seccomp filter on this process (Seccomp: 2, Seccomp_filters: 2"),
        "{v:?}"
    );
    assert!(v.cause.contains("user.max_user_namespaces = "), "{v:?}");
    // What the container needs, all of it: the filter lifted and /proc unmasked (or sbx's
    // mode for a masked /proc).
    assert!(
        v.fix.starts_with(
            "docker run --security-opt seccomp=unconfined --security-opt systempaths=unconfined"
        ),
        "{v:?}"
    );
    assert!(v.fix.contains("--proc host"), "{v:?}");
    assert!(!v.fix.contains("sysctl"), "not a sysctl's doing: {v:?}");
    doctor_agrees(&docker, "default profile (", "FAIL", &v);
}

#[test]
fn kubernetes_gets_the_security_context_to_set() {
    // A pod's container: the runtime's default filter and masks, and the service variables
    // Kubernetes puts in every container's environment.
    let pod = Env::new()
        .proc(Proc::Masked)
        .filter(Filter::Docker)
        .var("KUBERNETES_SERVICE_HOST", "10.96.0.1");
    let v = said(&run_sbx(&pod, &["--", "true"]));
    assert!(
        v.cause
            .contains("inside a Kubernetes container (KUBERNETES_SERVICE_HOST is set)"),
        "{v:?}"
    );
    assert!(
        v.fix.starts_with(
            "in the container's securityContext: {seccompProfile: {type: Unconfined}, \
             procMount: Unmasked (with hostUsers: false)}"
        ),
        "{v:?}"
    );
    assert!(v.fix.contains("run sbx with --proc host"), "{v:?}");
}

// ---- runc's masked /proc ----

#[test]
fn masked_proc_is_named_and_proc_host_runs() {
    let masked = Env::new().proc(Proc::Masked).var("container", "podman");
    // /proc/sys read-only comes first: sbx's own user-namespace limits are written there.
    let v = said(&run_sbx(&masked, &["--", "true"]));
    assert!(v.error.contains("user.max_"), "{v:?}");
    assert!(v.error.ends_with("(EROFS)"), "{v:?}");
    assert!(
        v.cause
            .starts_with("/proc/sys is mounted read-only inside a podman container"),
        "{v:?}"
    );
    assert!(
        v.fix
            .starts_with("podman run --security-opt unmask=ALL; or, leaving the container"),
        "{v:?}"
    );
    assert!(v.fix.ends_with("run sbx with --proc host"), "{v:?}");
    doctor_agrees(&masked, "default profile (", "FAIL", &v);

    // Masks alone: the kernel refuses the fresh proc.
    let env = Env::new()
        .proc(Proc::MaskedSysRw)
        .var("container", "podman");
    let v = said(&run_sbx(&env, &["--", "true"]));
    assert!(v.error.starts_with("setup failed at proc /proc"), "{v:?}");
    assert!(
        v.cause
            .starts_with("/proc is masked inside a podman container"),
        "{v:?}"
    );
    assert!(v.cause.contains("/proc/keys"), "{v:?}");
    assert!(v.fix.contains("--proc host"), "{v:?}");
    doctor_agrees(&env, "default profile (", "FAIL", &v);
}

#[test]
fn proc_host_keeps_ps_and_the_masks_and_scopes_signals() {
    let work = Workdir::new();
    let report = work.path().join("report.json");
    // A process of the container beside sbx, of the same uid: the command sees it (that is
    // what --proc host means) but must not be able to signal it.
    let inner = "ps -e -o pid= | tr -d ' ' | grep -qx \"$1\" && echo SEES; \
                 kill -0 \"$1\" 2>/dev/null && echo SIGNALLED; \
                 ls /dev/fd/ >/dev/null && echo FD; \
                 test -s /proc/keys && echo KEYS; \
                 echo 1 2>/dev/null > /proc/sys/kernel/ns_last_pid && echo SYSCTL; \
                 echo done";
    let script = "sleep 60 & p=$!; kill -0 $p && echo CONTROL; \
         \"$0\" --limit cgroup=off --proc host --json-status \"$1\" -- sh -c \"$2\" sh $p; \
         echo rc=$?; kill $p";
    let env = Env::new().proc(Proc::Masked);
    let report_arg = report.display().to_string();
    let r = env.run(&work, &["sh", "-c", script, &sbx(), &report_arg, inner]);
    let out = &r.stdout;
    assert!(
        out.contains("CONTROL"),
        "the container's own kill -0 failed: {r:?}"
    );
    assert!(out.contains("rc=0") && out.contains("done"), "{r:?}");
    assert!(
        out.contains("SEES"),
        "ps does not show the container's processes: {r:?}"
    );
    assert!(out.contains("FD"), "/dev/fd does not work: {r:?}");
    assert!(
        !out.contains("SIGNALLED"),
        "the command signalled a process outside: {r:?}"
    );
    assert!(
        !out.contains("KEYS"),
        "the mask over /proc/keys is gone: {r:?}"
    );
    assert!(!out.contains("SYSCTL"), "/proc/sys is writable: {r:?}");
    assert!(
        r.stderr.is_empty(),
        "a successful run prints nothing: {r:?}"
    );
    let rep = read_report(&report, &r);
    let degradations = rep["degradations"].to_string();
    assert!(
        degradations.contains("user-namespace limits") && degradations.contains("read-only"),
        "the left-out limits are not reported: {rep}"
    );

    let r = env.run(&work, &[&sbx(), "doctor"]);
    assert!(
        r.stdout
            .contains("OK   default profile with --proc host: a sandbox ran /bin/true"),
        "{r:?}"
    );
}

// ---- podman's default filter: sethostname ----

#[test]
fn podman_sethostname_filter_leaves_the_default_name_out() {
    let work = Workdir::new();
    let podman = Env::new().filter(Filter::Podman);
    // The precondition: the filter denies sethostname even in a namespace of one's own.
    let r = podman.run(&work, &["unshare", "-Uru", "hostname", "x"]);
    assert_ne!(r.code, 0, "the filter let sethostname through: {r:?}");
    let r = Env::new().run(&work, &["unshare", "-Uru", "hostname", "x"]);
    assert_eq!(r.code, 0, "without the filter: {r:?}");

    let host = nix::unistd::gethostname().unwrap();
    let report = work.path().join("report.json");
    let rep_arg = report.display().to_string();
    let r = podman.run(
        &work,
        &[
            &sbx(),
            "--limit",
            "cgroup=off",
            "--json-status",
            &rep_arg,
            "--",
            "hostname",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.trim(), host.to_string_lossy(), "{r:?}");
    assert!(r.stderr.is_empty(), "{r:?}");
    let rep = read_report(&report, &r);
    let d = rep["degradations"].to_string();
    assert!(
        d.contains("hostname sbx not set") && d.contains("seccomp filter"),
        "{rep}"
    );

    // A name asked for without ? is not a label: refused, with the filter named.
    let v = said(&run_sbx(&podman, &["--hostname", "build", "--", "true"]));
    assert!(v.error.starts_with("setup failed at sethostname"), "{v:?}");
    assert!(v.cause.contains("denies sethostname"), "{v:?}");
    assert!(v.fix.contains("--hostname NAME?"), "{v:?}");
    let r = run_sbx(&podman, &["--hostname", "build?", "--", "true"]);
    assert_eq!(r.code, 0, "{r:?}");
}

// ---- a filter that denies mount ----

#[test]
fn a_filter_denying_mount_is_named() {
    let env = Env::new().filter(Filter::NoMount);
    let v = said(&run_sbx(&env, &["--", "true"]));
    assert!(
        v.error
            .starts_with("setup failed at making the mount tree private"),
        "{v:?}"
    );
    assert!(
        v.cause
            .contains("lets sbx create namespaces but denies mount"),
        "{v:?}"
    );
    let r = run_sbx(&Env::new(), &["--", "true"]);
    assert_eq!(r.code, 0, "without the filter: {r:?}");
}

// ---- root without CAP_SETFCAP (docker run --cap-drop ALL) ----

#[test]
fn root_without_setfcap_is_named() {
    let env = Env::new().proc(Proc::Plain).bounding("-all");
    let v = said(&run_sbx(&env, &["--", "true"]));
    assert!(
        v.error
            .starts_with("setup failed at writing /proc/self/uid_map"),
        "{v:?}"
    );
    assert!(
        v.cause.starts_with("sbx runs as root without CAP_SETFCAP"),
        "{v:?}"
    );
    assert!(v.fix.contains("--cap-add SETFCAP"), "{v:?}");
    doctor_agrees(&env, "default profile (", "FAIL", &v);
    // The fix it names works.
    let r = run_sbx(
        &Env::new().proc(Proc::Plain).bounding("-all,+setfcap"),
        &["--", "true"],
    );
    assert_eq!(r.code, 0, "with CAP_SETFCAP: {r:?}");
}

// ---- sbx in sbx ----

/// `sbx OUTER... -- sbx INNER...` with the binary's directory visible inside; the inner sbx
/// runs without a cgroup unless it is `doctor`.
fn nested(outer: &[&str], inner: &[&str]) -> Ran {
    let bin = sbx();
    let dir = common::binary().parent().unwrap().display().to_string();
    let mut argv = vec![bin.as_str(), "--limit", "cgroup=off", "--ro-bind", &dir];
    argv.extend(outer);
    argv.extend(["--", &bin]);
    if inner.first() != Some(&"doctor") {
        argv.extend(QUIET);
    }
    argv.extend(inner);
    Env::new().run(&Workdir::new(), &argv)
}

#[test]
fn sbx_in_sbx_names_the_outer_and_nest_runs() {
    let v = said(&nested(&[], &["--", "true"]));
    assert!(v.error.starts_with("setup failed at clone"), "{v:?}");
    assert!(v.cause.contains("inside an sbx sandbox"), "{v:?}");
    assert!(v.fix.contains("--profile nest"), "{v:?}");
    assert!(!v.fix.contains("sysctl"), "{v:?}");

    // nested_userns alone: the mount calls and landlock still stop the inner one.
    let p = common::profile("extends = [\"default\"]\n[security]\nnested_userns = true\n");
    let v = said(&nested(&["--profile", &p.path], &["--", "true"]));
    assert!(
        v.error
            .starts_with("setup failed at making the mount tree private"),
        "{v:?}"
    );
    assert!(v.fix.contains("--profile nest"), "{v:?}");

    let r = nested(
        &["--profile", "nest"],
        &["--", "sh", "-c", "hostname; echo pid=$$; ls /"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("sbx\npid="), "{r:?}");
    assert!(r.stderr.is_empty(), "{r:?}");
}

#[test]
fn nest_keeps_read_only_binds_read_only_in_namespaces_the_command_makes() {
    let work = Workdir::new();
    let dir = work.subdir("kept");
    let target = dir.join("planted");
    let d = dir.display().to_string();
    // From a user and mount namespace of its own, the command holds every capability there:
    // remounting the bind writable is the attack; the outer sandbox's mounts are locked.
    let attack = format!(
        "unshare -Urm sh -c 'mount -o remount,bind,rw {d} 2>/dev/null && echo REMOUNTED; \
         echo x 2>/dev/null > {d}/planted && echo WROTE; unshare -Ur true && echo NESTED'"
    );
    let bin = sbx();
    let r = Env::new().run(
        &work,
        &[
            &bin,
            "--limit",
            "cgroup=off",
            "--profile",
            "nest",
            "--ro-bind",
            &d,
            "--",
            "sh",
            "-c",
            &attack,
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("NESTED"),
        "the command could not nest: {r:?}"
    );
    assert!(!r.stdout.contains("REMOUNTED"), "{r:?}");
    assert!(!r.stdout.contains("WROTE"), "{r:?}");
    assert!(!target.exists(), "the host's directory was written");
    // The control: bound writable, the same write lands.
    let r = Env::new().run(
        &work,
        &[
            &bin,
            "--limit",
            "cgroup=off",
            "--profile",
            "nest",
            "--bind",
            &d,
            "--",
            "sh",
            "-c",
            &attack,
        ],
    );
    assert!(r.stdout.contains("WROTE") && target.exists(), "{r:?}");
}

#[test]
fn doctor_inside_sbx_gives_the_run_s_verdict() {
    let v = said(&nested(&[], &["--", "true"]));
    let r = nested(&[], &["doctor"]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains("WARN running in a container: inside an sbx sandbox"),
        "{r:?}"
    );
    assert!(r.stdout.contains(&format!("; cause: {}", v.cause)), "{r:?}");
    assert!(
        r.stdout.contains(&format!("     fix: {}\n", v.fix)),
        "{r:?}"
    );
}

// ---- sbx in bubblewrap ----

fn bwrap(extra: &[&str], inner: &[&str]) -> Option<Ran> {
    if !common::usable("/usr/bin/bwrap") {
        note_skip("sbx in bubblewrap", "/usr/bin/bwrap is not installed");
        return None;
    }
    let work = Workdir::new();
    let w = work.path().display().to_string();
    let dir = common::binary().parent().unwrap().display().to_string();
    let bin = sbx();
    let mut argv = vec!["bwrap", "--unshare-all"];
    argv.extend(extra);
    argv.extend([
        "--ro-bind",
        "/usr",
        "/usr",
        "--ro-bind",
        "/etc",
        "/etc",
        "--symlink",
        "usr/bin",
        "/bin",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        "--ro-bind",
        &dir,
        &dir,
        "--bind",
        &w,
        &w,
        "--chdir",
        &w,
        "--",
        &bin,
        "--limit",
        "cgroup=off",
    ]);
    argv.extend(inner);
    Some(Env::new().run(&work, &argv))
}

#[test]
fn sbx_in_bubblewrap_runs_and_its_disable_userns_is_named() {
    let Some(r) = bwrap(&[], &["--", "sh", "-c", "hostname"]) else {
        return;
    };
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "sbx\n", "{r:?}");
    let r = bwrap(&["--unshare-user", "--disable-userns"], &["--", "true"]).unwrap();
    let v = said(&r);
    assert!(v.error.ends_with("(ENOSPC)"), "{v:?}");
    assert!(v.cause.contains("inside bubblewrap"), "{v:?}");
    assert!(v.fix.contains("--disable-userns"), "{v:?}");
}
