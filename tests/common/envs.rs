//! Environments that container runtimes make, built as a process tree around sbx (the host is
//! never changed): a user and mount namespace whose `/proc` is masked and `/sys` read-only as
//! runc does it; a seccomp filter with the semantics of a runtime's default profile; root with
//! no capabilities. The test runs `sbx` (or anything) inside with [`Env::run`].
//!
//! The seccomp loader is the test binary itself: a test file that uses filters has a test
//! named `env_loader` that calls [`loader_main`], which, when [`LOADER`] is set, installs the
//! filter and execs the command given in [`EXEC`] (it never returns then).

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::{AsTestUid, Ran, Workdir};

/// The filter to load (its name), read by the loader.
pub const LOADER: &str = "SBX_TEST_ENV_FILTER";
/// The command the loader execs, as a JSON array.
pub const EXEC: &str = "SBX_TEST_ENV_EXEC";

/// The seccomp filters a runtime puts on a container's processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// Docker's default profile for a container without CAP_SYS_ADMIN (also containerd's
    /// RuntimeDefault and GitHub Actions job containers): clone with any namespace flag,
    /// unshare, setns, the mount calls and sethostname get EPERM; clone3 ENOSYS.
    Docker,
    /// podman's default profile: namespaces and mounts allowed, sethostname EPERM.
    Podman,
    /// Namespaces allowed, the mount calls denied (EPERM): what a sandbox that allows nested
    /// user namespaces but no mounts does.
    NoMount,
}

impl Filter {
    fn name(self) -> &'static str {
        match self {
            Filter::Docker => "docker",
            Filter::Podman => "podman",
            Filter::NoMount => "no-mount",
        }
    }

    fn from_name(n: &str) -> Filter {
        match n {
            "docker" => Filter::Docker,
            "podman" => Filter::Podman,
            "no-mount" => Filter::NoMount,
            other => panic!("unknown filter {other}"),
        }
    }
}

const MOUNT_CALLS: &[i64] = &[
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_mount_setattr,
    libc::SYS_fsopen,
    libc::SYS_fsmount,
    libc::SYS_fsconfig,
    libc::SYS_fspick,
];

/// Docker's mask of namespace flags in clone (its profile allows clone only when
/// `flags & 0x7E020000 == 0`).
const NAMESPACE_FLAGS: u64 = 0x7E02_0000;

fn arch() -> TargetArch {
    if cfg!(target_arch = "aarch64") {
        TargetArch::aarch64
    } else {
        TargetArch::x86_64
    }
}

fn program(rules: BTreeMap<i64, Vec<SeccompRule>>, errno: i32) -> BpfProgram {
    let f = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        arch(),
    )
    .unwrap();
    f.try_into().unwrap()
}

/// The filter's programs, installed in order.
fn programs(f: Filter) -> Vec<BpfProgram> {
    let mut eperm: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let mut out = Vec::new();
    match f {
        Filter::Docker => {
            // One rule per flag: any of them set is a match.
            let per_flag = (0..32)
                .map(|bit| 1u64 << bit)
                .filter(|b| NAMESPACE_FLAGS & b != 0)
                .map(|b| {
                    let c = SeccompCondition::new(
                        0,
                        SeccompCmpArgLen::Dword,
                        SeccompCmpOp::MaskedEq(b),
                        b,
                    );
                    SeccompRule::new(vec![c.unwrap()]).unwrap()
                })
                .collect();
            eperm.insert(libc::SYS_clone, per_flag);
            for nr in [libc::SYS_unshare, libc::SYS_setns, libc::SYS_sethostname] {
                eperm.insert(nr, Vec::new());
            }
            for nr in MOUNT_CALLS {
                eperm.insert(*nr, Vec::new());
            }
            let clone3 = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
            out.push(program(clone3, libc::ENOSYS));
        }
        Filter::Podman => {
            eperm.insert(libc::SYS_sethostname, Vec::new());
            eperm.insert(libc::SYS_setdomainname, Vec::new());
        }
        Filter::NoMount => {
            for nr in MOUNT_CALLS {
                eperm.insert(*nr, Vec::new());
            }
        }
    }
    out.push(program(eperm, libc::EPERM));
    out
}

/// The loader's side: installs the filter named in [`LOADER`] and execs [`EXEC`]. Returns
/// at once when [`LOADER`] is not set (the test run as an ordinary test).
pub fn loader_main() {
    let Ok(name) = std::env::var(LOADER) else {
        return;
    };
    let argv: Vec<String> = serde_json::from_str(&std::env::var(EXEC).unwrap()).unwrap();
    for p in programs(Filter::from_name(&name)) {
        seccompiler::apply_filter(&p).unwrap();
    }
    let err = Command::new(&argv[0])
        .args(&argv[1..])
        .env_remove(LOADER)
        .env_remove(EXEC)
        .exec();
    panic!("exec {argv:?}: {err}");
}

/// The masks runc puts over /proc (files bound over with /dev/null, directories with an
/// empty read-only tmpfs, the rest bound read-only) and its read-only /sys; the shell
/// script for inside `unshare -Urm`. `sys_ro` includes /proc/sys among the read-only ones.
fn masking_script(sys_ro: bool) -> String {
    let ro = if sys_ro {
        "/proc/bus /proc/fs /proc/irq /proc/sys /proc/sysrq-trigger"
    } else {
        "/proc/bus /proc/fs /proc/irq /proc/sysrq-trigger"
    };
    format!(
        r#"set -e
for f in /proc/kcore /proc/keys /proc/timer_list /proc/latency_stats /proc/sched_debug; do
  if [ -e "$f" ]; then mount --bind /dev/null "$f"; fi
done
for d in /proc/acpi /proc/scsi; do
  if [ -d "$d" ]; then mount -t tmpfs -o ro tmpfs "$d"; fi
done
for d in {ro}; do
  if [ -e "$d" ]; then mount --bind "$d" "$d"; mount -o remount,bind,ro "$d"; fi
done
mount --rbind /sys /sys
mount -o remount,bind,ro /sys
exec "$@""#
    )
}

/// /proc as a container runtime leaves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proc {
    /// As the host has it (still in a user and mount namespace of the test's).
    Plain,
    /// runc's masks, /proc/sys read-only among them (Docker, podman, Kubernetes).
    Masked,
    /// runc's masks but for /proc/sys.
    MaskedSysRw,
}

/// An environment to run a command in.
pub struct Env {
    /// Run inside a user and mount namespace of the test's (uid 0 there, as a container's
    /// root), with /proc like this; `None`: directly, as the test uid.
    pub proc: Option<Proc>,
    pub filter: Option<Filter>,
    /// `setpriv --bounding-set` for the command (root's capabilities after exec).
    pub bounding: Option<&'static str>,
    /// Environment variables a runtime sets (`container=podman`).
    pub vars: Vec<(&'static str, &'static str)>,
}

impl Env {
    pub fn new() -> Env {
        Env {
            proc: None,
            filter: None,
            bounding: None,
            vars: Vec::new(),
        }
    }

    pub fn var(mut self, k: &'static str, v: &'static str) -> Env {
        self.vars.push((k, v));
        self
    }

    pub fn proc(mut self, p: Proc) -> Env {
        self.proc = Some(p);
        self
    }

    pub fn filter(mut self, f: Filter) -> Env {
        self.filter = Some(f);
        self
    }

    pub fn bounding(mut self, set: &'static str) -> Env {
        self.bounding = Some(set);
        self
    }

    /// Runs `argv` in the environment, from `work` (HOME is its `home`), as the test uid.
    pub fn run(&self, work: &Workdir, argv: &[&str]) -> Ran {
        // The loader (this test binary) must stay while it runs.
        let mut keep = None;
        let mut cmd: Vec<String> = Vec::new();
        if let Some(p) = self.proc {
            cmd.extend(["unshare", "-Urm", "--propagation", "private"].map(String::from));
            if p != Proc::Plain {
                let script = masking_script(p == Proc::Masked);
                cmd.extend(["sh".into(), "-c".into(), script, "sh".into()]);
            }
        }
        let mut env: Vec<(String, String)> = Vec::new();
        if let Some(f) = self.filter {
            let (dir, exe) = super::test_exe_copy("containers");
            keep = Some(dir);
            cmd.push(exe.display().to_string());
            cmd.extend(
                ["--exact", "env_loader", "--nocapture", "--test-threads=1"].map(String::from),
            );
            env.push((LOADER.into(), f.name().into()));
        }
        let mut tail: Vec<String> = Vec::new();
        if let Some(set) = self.bounding {
            tail.extend([
                "setpriv".into(),
                format!("--bounding-set={set}"),
                "--inh-caps=-all".into(),
            ]);
        }
        tail.extend(argv.iter().map(|a| a.to_string()));
        if self.filter.is_some() {
            env.push((EXEC.into(), serde_json::to_string(&tail).unwrap()));
        } else {
            cmd.extend(tail);
        }
        let home: PathBuf = work.subdir("home");
        let mut c = Command::new(&cmd[0]);
        c.args(&cmd[1..])
            .current_dir(work.path())
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("HOME", &home)
            .env("USER", "tester")
            .env("TMPDIR", work.path())
            .envs(env)
            .envs(self.vars.iter().copied())
            .stdin(Stdio::null());
        c.as_test_uid();
        // A test executable copied a moment ago may still be open for writing in a child that
        // another test thread forked before its exec (ETXTBSY): that passes in a moment.
        let mut tries = 0;
        let mut out = loop {
            match c.output() {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                r => break r.expect("spawn the environment"),
            }
        };
        drop(keep);
        if self.filter.is_some() {
            // What libtest printed before the loader exec'd the command.
            let preamble = b"test env_loader ... ";
            if let Some(at) = out
                .stdout
                .windows(preamble.len())
                .position(|w| w == preamble)
            {
                out.stdout.drain(..at + preamble.len());
            }
        }
        Ran::from_output(out)
    }
}

impl Default for Env {
    fn default() -> Env {
        Env::new()
    }
}
