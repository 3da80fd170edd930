//! Hosts whose kernel lacks newer system calls, built in a process tree: a seccomp filter that
//! answers the chosen calls with ENOSYS (as gVisor, systemd's `SystemCallFilter=`, older
//! container profiles and kernels before each call do), loaded with no_new_privs by the test
//! uid just before it executes sbx. Optionally the sbx process also gets a mount namespace of
//! its own in which the test mounted things (submounts in bind sources), so that the host's
//! mount table never changes.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

use super::{NOBODY, Sbx, Workdir, binary, is_root};

/// A call with a classic fallback, or one that already had one: its name, its number, and
/// arguments that do no harm if it goes through.
pub struct Call {
    pub name: &'static str,
    pub nr: libc::c_long,
    pub args: [libc::c_long; 5],
}

const fn call(name: &'static str, nr: libc::c_long, args: [libc::c_long; 5]) -> Call {
    Call { name, nr, args }
}

/// Every call the tests take away, each alone.
pub const CALLS: [Call; 10] = [
    // A null open_how of size 0: EINVAL.
    call(
        "openat2",
        libc::SYS_openat2,
        [libc::AT_FDCWD as _, 0, 0, 0, 0],
    ),
    call("open_tree", libc::SYS_open_tree, [-1, 0, 0, 0, 0]),
    call("move_mount", libc::SYS_move_mount, [-1, 0, -1, 0, 0]),
    call("mount_setattr", libc::SYS_mount_setattr, [-1, 0, 0, 0, 0]),
    // first > last: EINVAL.
    call("close_range", libc::SYS_close_range, [10, 9, 0, 0, 0]),
    call("pidfd_open", libc::SYS_pidfd_open, [-1, 0, 0, 0, 0]),
    call("fsopen", libc::SYS_fsopen, [0, 0, 0, 0, 0]),
    call("clone3", libc::SYS_clone3, [0, 0, 0, 0, 0]),
    call("statx", libc::SYS_statx, [libc::AT_FDCWD as _, 0, 0, 0, 0]),
    // Flags no kernel knows: EINVAL.
    call(
        "faccessat2",
        libc::SYS_faccessat2,
        [libc::AT_FDCWD as _, 0, 0, 0x4000_0000, 0],
    ),
];

/// The new mount API and openat2 together: what a 5.10 kernel under an older container
/// profile lacks, and what makes every bind take the classic path.
pub const MOUNT_CALLS: [&str; 4] = ["openat2", "open_tree", "move_mount", "mount_setattr"];

pub fn nr_of(name: &str) -> libc::c_long {
    CALLS
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no call {name}"))
        .nr
}

/// The filter: `calls` answer ENOSYS, everything else goes through.
pub fn filter(calls: &[&str]) -> BpfProgram {
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> =
        calls.iter().map(|c| (nr_of(c), Vec::new())).collect();
    let arch = if cfg!(target_arch = "aarch64") {
        TargetArch::aarch64
    } else {
        TargetArch::x86_64
    };
    SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .and_then(TryInto::try_into)
    .expect("compile the ENOSYS filter")
}

/// The errno `call` gets in a thread of this process with `calls` taken away (or with none),
/// -1 if it succeeded. The filter stays on that thread, which ends.
pub fn errno_of(call: &Call, calls: &[&str]) -> i32 {
    let prog = (!calls.is_empty()).then(|| filter(calls));
    let args = call.args;
    let nr = call.nr;
    std::thread::spawn(move || {
        if let Some(p) = prog {
            seccompiler::apply_filter(&p).expect("install the filter on this thread");
        }
        // SAFETY: every argument is an invalid fd, a null pointer or an impossible range
        // (see CALLS): the kernel rejects the call without touching memory.
        let r = unsafe { libc::syscall(nr, args[0], args[1], args[2], args[3], args[4]) };
        if r >= 0 {
            // A success returned a descriptor or a pid: nothing of it is used.
            -1
        } else {
            std::io::Error::last_os_error().raw_os_error().unwrap()
        }
    })
    .join()
    .unwrap()
}

/// Asserts the environment is what a test says it is: `calls` answer ENOSYS under the filter,
/// and the kernel itself has them (so the filter, not the kernel, is what takes them away).
pub fn assert_taken_away(calls: &[&str]) {
    for c in CALLS.iter().filter(|c| calls.contains(&c.name)) {
        let bare = errno_of(c, &[]);
        assert_ne!(
            bare,
            libc::ENOSYS,
            "{}: this kernel lacks it already",
            c.name
        );
        assert_eq!(errno_of(c, calls), libc::ENOSYS, "{}: the filter", c.name);
    }
}

/// A mount the test makes for the sbx process only: `src` bound onto `dst` (both absolute).
pub struct Mount {
    pub src: CString,
    pub dst: CString,
}

impl Mount {
    pub fn bind(src: &Path, dst: &Path) -> Mount {
        let c = |p: &Path| CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        Mount {
            src: c(src),
            dst: c(dst),
        }
    }
}

/// `sbx ARGS...` as [`super::sbx`] builds it (its work dir, its environment, stdin closed),
/// under a filter taking `calls` away, after `mounts` were made in a mount namespace of its
/// own. Mounting needs root: None when the runner is not root and there are mounts.
pub fn sbx<S: AsRef<std::ffi::OsStr>>(
    calls: &[&str],
    mounts: Vec<Mount>,
    args: &[S],
) -> Option<Sbx> {
    if !mounts.is_empty() && !is_root() {
        return None;
    }
    let work = Workdir::new();
    let home = work.subdir("home");
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .current_dir(work.path())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &home)
        .env("USER", "tester")
        .env("TMPDIR", work.path())
        .stdin(Stdio::null());
    let prog = (!calls.is_empty()).then(|| filter(calls));
    let root = is_root();
    // SAFETY: the closure runs between fork and exec and makes only async-signal-safe system
    // calls on data prepared before the fork (apply_filter allocates nothing on success, and
    // its error is not inspected).
    unsafe {
        cmd.pre_exec(move || {
            let check = |r: libc::c_int| match r {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            };
            if !mounts.is_empty() {
                check(libc::unshare(libc::CLONE_NEWNS))?;
                let flags = libc::MS_REC | libc::MS_PRIVATE;
                check(libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    flags,
                    std::ptr::null(),
                ))?;
                for m in &mounts {
                    check(libc::mount(
                        m.src.as_ptr(),
                        m.dst.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    ))?;
                }
            }
            if root {
                check(libc::setgroups(0, std::ptr::null()))?;
                check(libc::setgid(NOBODY))?;
                check(libc::setuid(NOBODY))?;
            }
            if let Some(p) = &prog {
                seccompiler::apply_filter(p)
                    .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
            }
            Ok(())
        });
    }
    Some(Sbx { cmd, work })
}
