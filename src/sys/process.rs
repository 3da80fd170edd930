//! Processes and signals: forking, waiting, exiting, signal masks.

use std::ffi::CStr;
use std::os::fd::{FromRawFd, OwnedFd};

use libc::{c_int, c_ulong};

use super::{Errno, SysResult, check, check_long};

/// fork(2) semantics with namespace flags: returns 0 in the child. Raw clone skips libc's
/// atfork handlers.
///
/// # Safety
/// The caller may be multi-threaded (a library user's program). The child is a copy of one
/// thread only: until it calls `execve` or `exit` it must not allocate, take a lock, or call
/// anything that is not async-signal-safe, and it must never return into the caller's code.
pub unsafe fn clone_fork(flags: c_int) -> SysResult<libc::pid_t> {
    // SAFETY: a null stack runs the child on a copy-on-write copy of the stack, as fork does;
    // the other arguments are unused without CLONE_*TID/SETTLS (the child's rules: above).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    check_long(ret).map(|p| p as libc::pid_t)
}

/// `struct clone_args` of clone3(2), up to the cgroup field (Linux 5.7).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// clone3's CLONE_INTO_CGROUP (Linux 5.7) answered ENOSYS (before 5.3, or a seccomp filter:
/// container profiles answer clone3 so, its flags being out of a filter's reach) or E2BIG
/// (5.3 to 5.6, whose clone_args ends before the cgroup field).
pub(super) static CLONE_INTO_CGROUP_MISSING: super::Missing = super::Missing::new();

/// Whether clone3's CLONE_INTO_CGROUP was found missing (see [`clone_fork_into_cgroup`]).
pub fn clone_into_cgroup_missing() -> bool {
    CLONE_INTO_CGROUP_MISSING.get()
}

/// [`clone_fork`] with the child born in the cgroup whose directory `cgroup` is open: no
/// migration afterwards. Moving a running process into a cgroup takes the kernel's
/// cgroup_threadgroup_rwsem for writing, which waits for an RCU grace period (≈ 8 ms of a
/// start measured here); a child created in place takes it only for reading, as every fork
/// does.
/// Err(ENOSYS) without asking the kernel again once it said clone3 or the flag is missing.
///
/// # Safety
/// As [`clone_fork`].
pub unsafe fn clone_fork_into_cgroup(
    flags: c_int,
    cgroup: std::os::fd::RawFd,
) -> SysResult<libc::pid_t> {
    if CLONE_INTO_CGROUP_MISSING.get() {
        return Err(Errno::ENOSYS);
    }
    // The exit signal is the one CSIGNAL bit used; CLONE_NEWTIME (0x80) would share that byte.
    debug_assert_eq!(flags & libc::CSIGNAL & !libc::SIGCHLD, 0);
    let args = CloneArgs {
        // clone3 takes the exit signal apart from the flags.
        flags: (flags & !libc::CSIGNAL) as u32 as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup as u64,
        ..CloneArgs::default()
    };
    // SAFETY: args is a valid clone_args of the size passed; with no stack given the child
    // runs on a copy-on-write copy of the caller's, as fork does (the child's rules: above).
    let r = check_long(unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &raw const args,
            std::mem::size_of::<CloneArgs>(),
        )
    });
    if matches!(r, Err(Errno::ENOSYS | Errno::E2BIG)) {
        CLONE_INTO_CGROUP_MISSING.set();
        return Err(Errno::ENOSYS);
    }
    r.map(|p| p as libc::pid_t)
}

/// The stack `spawn_sharing_memory`'s child runs on: far more than the payload's steps take
/// (their deepest frame is a few KiB); only the pages touched become resident.
const SPAWN_STACK: usize = 256 << 10;

/// Starts `child` in a new process that shares the caller's memory (vfork's semantics, on a
/// stack of its own): the caller sleeps until the child calls execve or exits. Nothing is
/// copied: no page table, no copy-on-write fault in either process afterwards, and the
/// child's execve has no copy to tear down. Returns the child's pid.
///
/// # Safety
/// The caller must be single-threaded. `child` runs on the caller's memory while the caller
/// sleeps: every write it makes is the caller's, so it must not allocate or take a lock, must
/// leave the caller's data as it found it, and should end in execve or `exit` (a value it
/// returns is the child's exit status).
/// Its descriptors, signal dispositions and mask, seccomp filters, session and working
/// directory are its own.
pub unsafe fn spawn_sharing_memory(mut child: &mut dyn FnMut() -> c_int) -> SysResult<libc::pid_t> {
    extern "C" fn start(arg: *mut libc::c_void) -> c_int {
        // SAFETY: `arg` points to `child` in the caller's frame, which stays alive: the caller
        // sleeps until this process has called execve or exited.
        let child = unsafe { &mut *arg.cast::<&mut dyn FnMut() -> c_int>() };
        child()
    }
    let guard = page_size();
    // SAFETY: a fresh anonymous mapping, owned here, unmapped below.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            SPAWN_STACK + guard,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(Errno::last());
    }
    // SAFETY: the lowest page of the mapping above becomes the guard an overflow faults on.
    let guarded = unsafe { libc::mprotect(base, guard, libc::PROT_NONE) };
    let pid = match check(guarded) {
        // The stack's top is the mapping's end (page-aligned). `start` gets a pointer to
        // `child`, alive until clone returns: with CLONE_VFORK, after the child's execve or exit.
        // SAFETY: as above; the child keeps to the caller's duties (see the doc).
        Ok(_) => check(unsafe {
            libc::clone(
                start,
                base.cast::<u8>().add(SPAWN_STACK + guard).cast(),
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                (&raw mut child).cast(),
            )
        }),
        Err(e) => Err(e),
    };
    // SAFETY: the child no longer runs on the mapping (it has called execve or exited).
    unsafe { libc::munmap(base, SPAWN_STACK + guard) };
    pid
}

pub fn set_pdeathsig(sig: c_int) -> SysResult {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as c_ulong, 0, 0, 0) }).map(drop)
}

pub fn prctl(option: c_int, arg: c_ulong) -> SysResult {
    // SAFETY: options used here take one integer argument.
    check(unsafe { libc::prctl(option, arg, 0 as c_ulong, 0 as c_ulong, 0 as c_ulong) }).map(drop)
}

/// Sets the calling process's name (`comm`, what `ps`, `pkill -x` and `killall` match), cut
/// to 15 bytes.
pub fn set_name(name: &std::ffi::CStr) -> SysResult {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string, which `name` is, during the call.
    check(unsafe {
        libc::prctl(
            libc::PR_SET_NAME,
            name.as_ptr(),
            0 as c_ulong,
            0 as c_ulong,
            0 as c_ulong,
        )
    })
    .map(drop)
}

pub fn setsid() -> SysResult {
    // SAFETY: no arguments.
    check(unsafe { libc::setsid() }).map(drop)
}

pub fn getppid() -> libc::pid_t {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::getppid() }
}

pub fn execve(path: &CStr, argv: &[*const libc::c_char], envp: &[*const libc::c_char]) -> Errno {
    // SAFETY: argv and envp are null-terminated arrays of pointers into C strings that the
    // plan owns and keeps alive; execve only returns on failure.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    Errno::last()
}

pub fn exit(code: c_int) -> ! {
    // SAFETY: _exit skips atexit handlers and stdio flushing, which belong to the parent.
    unsafe { libc::_exit(code) }
}

pub fn kill(pid: libc::pid_t, sig: c_int) -> SysResult {
    // SAFETY: plain syscall.
    check(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// Sets the signal mask to `set` (SIG_SETMASK).
pub fn set_sigmask(set: &libc::sigset_t) -> SysResult {
    // SAFETY: set points to an initialised sigset_t.
    check(unsafe { libc::sigprocmask(libc::SIG_SETMASK, set, std::ptr::null_mut()) }).map(drop)
}

/// Adds `set` to the blocked signals.
pub fn block_signals(set: &libc::sigset_t) -> SysResult {
    // SAFETY: set points to an initialised sigset_t.
    check(unsafe { libc::sigprocmask(libc::SIG_BLOCK, set, std::ptr::null_mut()) }).map(drop)
}

pub fn empty_sigset() -> libc::sigset_t {
    sigset_of(&[])
}

/// The set of `signals` (valid signal numbers).
pub fn sigset_of(signals: &[c_int]) -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the zeroed set; sigaddset adds valid signal numbers.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        for sig in signals {
            libc::sigaddset(&mut s, *sig);
        }
        s
    }
}

/// The start of a process whose `main` std did not set up: a closed standard descriptor
/// would be the next `open`'s, so that a mount's or a profile's descriptor became stdout, so
/// each is opened on `/dev/null`; and writes to a closed pipe return EPIPE instead of
/// killing sbx (the payload's exec restores the default, see `sandbox::exec`). Both as std
/// does; a standard descriptor that cannot be opened aborts, as there.
pub fn start_process() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: fds is a valid array of three pollfd; a zero timeout does not block.
    let polled = unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) } >= 0;
    for p in fds {
        let closed = if polled {
            p.revents & libc::POLLNVAL != 0
        } else {
            // SAFETY: F_GETFD only reads the descriptor's flags.
            let flags = unsafe { libc::fcntl(p.fd, libc::F_GETFD) };
            flags == -1 && Errno::last() == Errno::EBADF
        };
        // SAFETY: the path is a NUL-terminated literal; the lowest free descriptor is p.fd.
        if closed && unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) } != p.fd {
            std::process::abort()
        }
    }
    // SAFETY: SIG_IGN is always a valid disposition.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

pub fn default_disposition(sig: c_int) -> SysResult {
    // SAFETY: SIG_DFL is always a valid handler.
    let r = unsafe { libc::signal(sig, libc::SIG_DFL) };
    if r == libc::SIG_ERR {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Waits for any child without blocking; returns (pid, raw status) or None.
pub fn wait_any_nohang() -> Option<(libc::pid_t, c_int)> {
    let mut status = 0;
    // SAFETY: status is a valid out pointer.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    (pid > 0).then_some((pid, status))
}

/// Waits, blocking, for any child; None once there is none left.
pub fn wait_any() -> Option<(libc::pid_t, c_int)> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid > 0 {
            return Some((pid, status));
        }
        if pid < 0 && Errno::last() == Errno::EINTR {
            continue;
        }
        return None;
    }
}

/// wait4 on one pid: (raw status, resource usage of it and its waited-for descendants).
pub fn wait4(pid: libc::pid_t, flags: c_int) -> SysResult<Option<(c_int, libc::rusage)>> {
    let mut status = 0;
    // SAFETY: rusage is plain data; zeroed is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: status and usage are valid out pointers.
        let r = unsafe { libc::wait4(pid, &mut status, flags, &mut usage) };
        if r > 0 {
            return Ok(Some((status, usage)));
        }
        if r == 0 {
            return Ok(None);
        }
        let e = Errno::last();
        if e != Errno::EINTR {
            return Err(e);
        }
    }
}

/// CPU time of this process and of every child it waited for, summed; peak RSS is the larger.
pub fn usage_with_children() -> libc::rusage {
    let get = |who| {
        // SAFETY: rusage is plain data; zeroed is valid.
        let mut r: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: r is a valid out pointer; RUSAGE_SELF and RUSAGE_CHILDREN cannot fail.
        unsafe { libc::getrusage(who, &mut r) };
        r
    };
    let (mut own, kids) = (get(libc::RUSAGE_SELF), get(libc::RUSAGE_CHILDREN));
    let add = |a: &mut libc::timeval, b: libc::timeval| {
        let usec = a.tv_usec + b.tv_usec;
        a.tv_sec += b.tv_sec + usec / 1_000_000;
        a.tv_usec = usec % 1_000_000;
    };
    add(&mut own.ru_utime, kids.ru_utime);
    add(&mut own.ru_stime, kids.ru_stime);
    own.ru_maxrss = own.ru_maxrss.max(kids.ru_maxrss);
    own
}

/// pidfd_open (Linux 5.3) answered ENOSYS.
pub(super) static PIDFD_OPEN: super::Missing = super::Missing::new();

/// A pidfd for a child: readable once it has exited (Linux 5.3). ENOSYS, without asking the
/// kernel again, once it said so.
pub fn pidfd_open(pid: libc::pid_t) -> SysResult<OwnedFd> {
    if PIDFD_OPEN.get() {
        return Err(Errno::ENOSYS);
    }
    // SAFETY: plain syscall with a pid and no flags.
    let r = check_long(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) });
    PIDFD_OPEN.note(&r);
    // SAFETY: a fresh fd from pidfd_open, owned by nothing else.
    r.map(|fd| unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// CLOCK_MONOTONIC in microseconds, low 32 bits (differences are taken modulo 2^32).
pub fn monotonic_us() -> u32 {
    // SAFETY: timespec is plain data and a valid out pointer; CLOCK_MONOTONIC always exists.
    let mut t: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    (t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1000) as u32
}

/// The machine's RAM in bytes.
pub fn total_ram() -> u64 {
    // SAFETY: sysinfo is plain data; zeroed is valid and sysinfo(2) fills it.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: info is a valid out pointer.
    if unsafe { libc::sysinfo(&mut info) } != 0 {
        return 0;
    }
    (info.totalram as u64).saturating_mul(u64::from(info.mem_unit.max(1)))
}

/// How long (ms) a waiting process of sbx's waits before `release_code`.
/// Long enough that a short command (a build step's `true`, a `--version`) ends first and never
/// pays the faults back; short enough that `sbx -- sleep 1` already waits small.
pub const SETTLE_MS: libc::c_int = 250;

/// Unmaps this process's resident pages of sbx's own code and read-only data (they stay in the
/// page cache, shared with every other sbx), for a process about to wait for a long time. The
/// kernel maps a file's pages 64 KiB around each fault, so the setup has mapped nearly all of
/// the binary; what the wait loop runs afterwards is mapped back on its first use. Never
/// allocates. Best effort: a kernel that refuses changes nothing. A debugger's breakpoints
/// written into the code (ptrace pokes, the only writes it ever gets) go with it.
#[allow(unsafe_code)]
pub fn release_code() {
    unsafe extern "C" {
        // The linker's names for the start of the first segment (ELF header, read-only data)
        // and the end of the code.
        static __executable_start: u8;
        static etext: u8;
    }
    let start = (&raw const __executable_start) as usize & !(page_size() - 1);
    let end = (&raw const etext) as usize;
    // The range is this binary's own read-only file mapping, never written (so never copied
    // on write): MADV_DONTNEED drops its page table entries, and the next access faults the
    // same file pages back in; no memory of ours is lost.
    // SAFETY: see above; madvise reads no memory of ours.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
    }
}

/// How much of the stack below the caller's frame `release_dead_stack` leaves alone: the
/// calls it makes, and a margin.
const STACK_KEPT: usize = 16 << 10;
/// How far below that it releases: more than the setup's deepest calls (clap's generated
/// builders take about 35 KiB of frame each, nested), far less than the gap the kernel keeps
/// free of other mappings below a main thread's stack (`stack_guard_gap`, 1 MiB).
const STACK_RELEASED: usize = 512 << 10;

/// Returns to the kernel the main thread's stack below the caller's frame: the setup's dead
/// frames, dirty pages that would stay resident for as long as the command runs. The
/// supervisor calls it just before the sandbox's first process is cloned (clap's generated
/// builders take about 35 KiB of frame each, nested, and the clone would share the pages,
/// each process then keeping or copying them), and init once the payload is forked (its
/// setup's buffers are on the stack). They come back as zero pages on the next use. For the
/// CLI's main thread only: below another thread's stack may lie other memory. Best effort, as
/// `release_code`. (The heap's free pages are not worth a `malloc_trim`: 4 KiB, measured;
/// what the heap holds then is live.)
#[allow(unsafe_code)]
pub fn release_dead_stack() {
    let here = 0u8;
    let page = page_size();
    let top = ((&raw const here) as usize).saturating_sub(STACK_KEPT) & !(page - 1);
    let bottom = top.saturating_sub(STACK_RELEASED);
    // Nothing below this frame's callees is live on the main thread's stack, and the kernel
    // maps nothing else within 1 MiB below it: MADV_DONTNEED drops dead frames only (and
    // answers ENOMEM for the part below the stack's lowest page, which is not mapped).
    // SAFETY: see above; madvise reads no memory of ours.
    unsafe {
        libc::madvise(
            bottom as *mut libc::c_void,
            top - bottom,
            libc::MADV_DONTNEED,
        );
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The child writes to the caller's memory and has exited before the caller resumes, while
    /// its descriptor table is its own copy.
    #[test]
    fn a_child_sharing_memory_runs_first_on_the_same_memory() {
        // SAFETY: the path is a NUL-terminated literal.
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        assert!(fd >= 0);
        let mut seen = 0;
        // SAFETY: the child stores one integer, closes a descriptor and exits: no allocation,
        // no lock (the test harness's other threads do not touch `seen`).
        let pid = unsafe {
            spawn_sharing_memory(&mut || {
                seen = 7;
                libc::close(fd);
                exit(3)
            })
        }
        .expect("spawn");
        assert_eq!(seen, 7, "the caller resumed before the child's write");
        // SAFETY: F_GETFD only reads the descriptor's flags.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert!(flags >= 0, "the child closed the caller's descriptor");
        let (status, _) = wait4(pid, 0).expect("wait4").expect("status");
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 3);
        // SAFETY: fd is open and ours.
        unsafe { libc::close(fd) };
    }
}
