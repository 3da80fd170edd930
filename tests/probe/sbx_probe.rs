//! The attack probe: run inside the sandbox by tests/attacks.rs, it attempts each attack named
//! on its command line and prints one line per attempt, `NAME: RESULT`, where RESULT is `ok`
//! or the errno name (`EPERM`, ...). A word `NAME=ARG` passes an argument (a port, a pid, a
//! path, an abstract socket name) and is printed whole. The exit status is 0 unless an attack
//! is unknown.
//!
//! Each attack is one function returning `Result<(), Errno>`; the raw syscalls use arguments
//! that are harmless if the call does go through (invalid pointers, invalid magic numbers).

use std::ffi::CStr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};

use libc::{c_long, c_void};
use nix::errno::Errno;

type Res = Result<(), Errno>;

/// A raw syscall's result: closes a returned fd, maps -1 to the errno.
fn check(ret: c_long) -> Res {
    if ret < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

fn check_fd(ret: c_long) -> Res {
    check(ret)?;
    // SAFETY: closing the fd the call just returned, owned by nobody else.
    unsafe { libc::close(ret as i32) };
    Ok(())
}

fn io(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

macro_rules! sys {
    ($($arg:expr),+ $(,)?) => {
        // SAFETY: every attack passes either valid pointers or null/invalid values that the
        // kernel rejects without touching memory.
        unsafe { libc::syscall($($arg as c_long),+) }
    };
}

fn c(s: &CStr) -> c_long {
    s.as_ptr() as c_long
}

// ---- namespaces ----

fn unshare_user() -> Res {
    check(sys!(libc::SYS_unshare, libc::CLONE_NEWUSER))
}

fn unshare_ns() -> Res {
    check(sys!(libc::SYS_unshare, libc::CLONE_NEWNS))
}

/// A raw clone into a new user namespace (fork-like: no new stack); the child exits at once.
fn clone_flags(flags: u64) -> Res {
    let pid = sys!(libc::SYS_clone, flags, 0, 0, 0, 0);
    if pid == 0 {
        // SAFETY: the child leaves immediately.
        unsafe { libc::_exit(0) };
    }
    check(pid)?;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), 0) };
    Ok(())
}

fn clone_user() -> Res {
    clone_flags((libc::CLONE_NEWUSER | libc::SIGCHLD) as u64)
}

/// The same with garbage in the upper half of the flags, which the kernel ignores.
fn clone_user_hi() -> Res {
    clone_flags(0xdead_beef_0000_0000 | (libc::CLONE_NEWUSER | libc::SIGCHLD) as u64)
}

/// clone3 with no arguments: EINVAL from the kernel, ENOSYS from sbx's filter.
fn clone3() -> Res {
    check(sys!(libc::SYS_clone3, 0, 0))
}

fn setns() -> Res {
    check(sys!(libc::SYS_setns, -1, 0))
}

// ---- other processes ----

fn ptrace_traceme() -> Res {
    check(sys!(libc::SYS_ptrace, libc::PTRACE_TRACEME, 0, 0, 0))
}

fn ptrace_attach1() -> Res {
    check(sys!(libc::SYS_ptrace, libc::PTRACE_ATTACH, 1, 0, 0))
}

/// Reads our own memory: succeeds unless the call is filtered.
fn process_vm_readv() -> Res {
    let src = [7u8; 8];
    let mut dst = [0u8; 8];
    let local = libc::iovec {
        iov_base: dst.as_mut_ptr().cast(),
        iov_len: 8,
    };
    let remote = libc::iovec {
        iov_base: src.as_ptr() as *mut c_void,
        iov_len: 8,
    };
    let me = std::process::id();
    check(sys!(
        libc::SYS_process_vm_readv,
        me,
        &local as *const libc::iovec,
        1,
        &remote as *const libc::iovec,
        1,
        0
    ))
}

fn proc1_mem() -> Res {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/1/mem")
        .map(drop)
        .map_err(io)
}

fn kill(pid: &str) -> Res {
    let pid: i32 = pid.parse().expect("kill=PID");
    // SAFETY: plain syscall.
    check(unsafe { libc::kill(pid, libc::SIGKILL) } as c_long)
}

// ---- kernel interfaces ----

fn keyctl() -> Res {
    // KEYCTL_GET_KEYRING_ID (0) of KEY_SPEC_SESSION_KEYRING (-3).
    check(sys!(libc::SYS_keyctl, 0, -3, 0))
}

fn add_key() -> Res {
    // Into KEY_SPEC_PROCESS_KEYRING (-2).
    check(sys!(
        libc::SYS_add_key,
        c(c"user"),
        c(c"sbx-probe"),
        c(c"x"),
        1,
        -2
    ))
}

fn request_key() -> Res {
    check(sys!(
        libc::SYS_request_key,
        c(c"user"),
        c(c"sbx-probe-none"),
        0,
        0
    ))
}

fn bpf() -> Res {
    check_fd(sys!(libc::SYS_bpf, 0, 0, 0))
}

fn perf_event_open() -> Res {
    check_fd(sys!(libc::SYS_perf_event_open, 0, 0, -1, -1, 0))
}

fn userfaultfd() -> Res {
    // UFFD_USER_MODE_ONLY (1), allowed unprivileged when not filtered.
    check_fd(sys!(libc::SYS_userfaultfd, libc::O_CLOEXEC | 1))
}

fn io_uring_setup() -> Res {
    check_fd(sys!(libc::SYS_io_uring_setup, 1, 0))
}

fn kexec_load() -> Res {
    check(sys!(libc::SYS_kexec_load, 0, 0, 0, 0))
}

fn init_module() -> Res {
    check(sys!(libc::SYS_init_module, 0, 0, c(c"")))
}

fn finit_module() -> Res {
    check(sys!(libc::SYS_finit_module, -1, c(c""), 0))
}

fn open_by_handle_at() -> Res {
    check_fd(sys!(libc::SYS_open_by_handle_at, -1, 0, 0))
}

fn name_to_handle_at() -> Res {
    check(sys!(
        libc::SYS_name_to_handle_at,
        libc::AT_FDCWD,
        c(c"/"),
        0,
        0,
        0
    ))
}

fn swapon() -> Res {
    check(sys!(libc::SYS_swapon, c(c"/nonexistent"), 0))
}

fn reboot() -> Res {
    // Invalid magic numbers: never reboots, even if the call got through.
    check(sys!(libc::SYS_reboot, 0, 0, 0, 0))
}

fn syslog() -> Res {
    // SYSLOG_ACTION_SIZE_BUFFER (10).
    check(sys!(libc::SYS_syslog, 10, 0, 0))
}

fn acct() -> Res {
    check(sys!(libc::SYS_acct, 0))
}

fn quotactl() -> Res {
    // Q_GETFMT (0x800004) for user quotas.
    check(sys!(libc::SYS_quotactl, 0x0080_0004 << 8, c(c"/"), 0, 0))
}

fn personality(persona: u64) -> Res {
    let old = sys!(libc::SYS_personality, persona);
    check(old)?;
    if persona != 0xffff_ffff {
        sys!(libc::SYS_personality, old);
    }
    Ok(())
}

// ---- mounts ----

fn mount() -> Res {
    check(sys!(
        libc::SYS_mount,
        c(c"none"),
        c(c"/tmp"),
        c(c"tmpfs"),
        0,
        0
    ))
}

fn umount2() -> Res {
    check(sys!(libc::SYS_umount2, c(c"/tmp"), libc::MNT_DETACH))
}

fn pivot_root() -> Res {
    check(sys!(libc::SYS_pivot_root, c(c"/tmp"), c(c"/tmp")))
}

fn fsopen() -> Res {
    check_fd(sys!(libc::SYS_fsopen, c(c"tmpfs"), 0))
}

fn open_tree() -> Res {
    // OPEN_TREE_CLONE (1).
    check_fd(sys!(libc::SYS_open_tree, libc::AT_FDCWD, c(c"/"), 1))
}

fn mount_setattr() -> Res {
    check(sys!(libc::SYS_mount_setattr, -1, c(c""), 0, 0, 0))
}

// ---- terminals ----

/// Pushes `X` into the input of the terminal on stdin.
fn tiocsti() -> Res {
    let ch = b'X';
    check(sys!(libc::SYS_ioctl, 0, libc::TIOCSTI, &ch as *const u8))
}

/// The same request with garbage in the upper 32 bits, which the kernel drops.
fn tiocsti_hi() -> Res {
    let ch = b'X';
    #[allow(clippy::unnecessary_cast)] // the request's type differs between libcs
    let req = 0xdead_beef_0000_0000 | libc::TIOCSTI as u64;
    check(sys!(libc::SYS_ioctl, 0, req, &ch as *const u8))
}

fn tioclinux() -> Res {
    // TIOCL_GETSHIFTSTATE (6).
    let mut arg = [6u8, 0];
    check(sys!(libc::SYS_ioctl, 0, libc::TIOCLINUX, arg.as_mut_ptr()))
}

// ---- sockets ----

fn socket(family: u64, ty: i32, proto: i32) -> Res {
    check_fd(sys!(
        libc::SYS_socket,
        family,
        ty | libc::SOCK_CLOEXEC,
        proto
    ))
}

fn abstract_connect(name: &str) -> Res {
    let addr = SocketAddr::from_abstract_name(name).map_err(io)?;
    UnixStream::connect_addr(&addr).map(drop).map_err(io)
}

fn unix_connect(path: &str) -> Res {
    UnixStream::connect(path).map(drop).map_err(io)
}

fn tcp_connect(port: &str) -> Res {
    let port: u16 = port.parse().expect("tcp=PORT");
    std::net::TcpStream::connect(("127.0.0.1", port))
        .map(drop)
        .map_err(io)
}

// ---- ABIs ----

/// An x32 syscall number: ENOSYS where x32 is compiled out, EPERM from sbx's guard.
fn x32() -> Res {
    check(sys!(0x4000_0000 | libc::SYS_getpid))
}

/// A 32-bit `int 0x80` getpid in a child; reports how the child ended.
#[cfg(target_arch = "x86_64")]
fn int80() -> String {
    // SAFETY: the probe is single-threaded; the child only makes raw syscalls.
    match unsafe { libc::fork() } {
        0 => {
            // SAFETY: i386 getpid (20) through the 32-bit entry point; touches no memory.
            unsafe {
                std::arch::asm!("int 0x80", inlateout("eax") 20 => _, options(nostack));
                libc::_exit(0)
            }
        }
        -1 => format!("{:?}", Errno::last()),
        pid => {
            let mut status = 0;
            // SAFETY: reaping our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            if libc::WIFSIGNALED(status) {
                let sig = nix::sys::signal::Signal::try_from(libc::WTERMSIG(status));
                format!("killed {}", sig.map_or("?", |s| s.as_str()))
            } else {
                format!("exit {}", libc::WEXITSTATUS(status))
            }
        }
    }
}

// ---- files ----

fn create(path: &str) -> Res {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"probe\n"))
        .map_err(io)
}

fn open_rw(path: &str) -> Res {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map(drop)
        .map_err(io)
}

fn getcwd() -> Res {
    nix::unistd::getcwd().map(drop)
}

/// The open fds, without the one reading the directory.
fn fds() -> String {
    let dir = std::fs::read_dir("/proc/self/fd").expect("read /proc/self/fd");
    let mut fds: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| {
            let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap_or_default();
            !link.to_string_lossy().ends_with("/fd")
        })
        .collect();
    fds.sort_unstable();
    let list: Vec<String> = fds.iter().map(i32::to_string).collect();
    list.join(",")
}

fn run(attack: &str, arg: &str) -> Option<Res> {
    use libc::{AF_INET, AF_INET6, AF_NETLINK, AF_PACKET, AF_UNIX, SOCK_RAW, SOCK_STREAM};
    Some(match attack {
        "unshare_user" => unshare_user(),
        "unshare_ns" => unshare_ns(),
        "clone_user" => clone_user(),
        "clone_user_hi" => clone_user_hi(),
        "clone3" => clone3(),
        "setns" => setns(),
        "ptrace_traceme" => ptrace_traceme(),
        "ptrace_attach1" => ptrace_attach1(),
        "process_vm_readv" => process_vm_readv(),
        "proc1_mem" => proc1_mem(),
        "kill" => kill(arg),
        "keyctl" => keyctl(),
        "add_key" => add_key(),
        "request_key" => request_key(),
        "bpf" => bpf(),
        "perf_event_open" => perf_event_open(),
        "userfaultfd" => userfaultfd(),
        "io_uring_setup" => io_uring_setup(),
        "kexec_load" => kexec_load(),
        "init_module" => init_module(),
        "finit_module" => finit_module(),
        "open_by_handle_at" => open_by_handle_at(),
        "name_to_handle_at" => name_to_handle_at(),
        "mount" => mount(),
        "umount2" => umount2(),
        "pivot_root" => pivot_root(),
        "fsopen" => fsopen(),
        "open_tree" => open_tree(),
        "mount_setattr" => mount_setattr(),
        "swapon" => swapon(),
        "reboot" => reboot(),
        "syslog" => syslog(),
        "acct" => acct(),
        "quotactl" => quotactl(),
        "personality8" => personality(8), // PER_LINUX32
        "personality_query" => personality(0xffff_ffff),
        "tiocsti" => tiocsti(),
        "tiocsti_hi" => tiocsti_hi(),
        "tioclinux" => tioclinux(),
        "socket_packet" => socket(AF_PACKET as u64, SOCK_RAW, 0),
        "socket_packet_hi" => socket(0xdead_beef_0000_0000 | AF_PACKET as u64, SOCK_RAW, 0),
        "socket_alg" => socket(libc::AF_ALG as u64, libc::SOCK_SEQPACKET, 0),
        "netlink_audit" => socket(AF_NETLINK as u64, SOCK_RAW, libc::NETLINK_AUDIT),
        "netlink_route" => socket(AF_NETLINK as u64, SOCK_RAW, libc::NETLINK_ROUTE),
        "socket_inet" => socket(AF_INET as u64, SOCK_STREAM, 0),
        "socket_inet6" => socket(AF_INET6 as u64, SOCK_STREAM, 0),
        "socket_unix" => socket(AF_UNIX as u64, SOCK_STREAM, 0),
        "abstract" => abstract_connect(arg),
        "unix" => unix_connect(arg),
        "tcp" => tcp_connect(arg),
        "x32" => x32(),
        "create" => create(arg),
        "open_rw" => open_rw(arg),
        "getcwd" => getcwd(),
        _ => return None,
    })
}

fn main() {
    let mut status = 0;
    for word in std::env::args().skip(1) {
        let (attack, arg) = word.split_once('=').unwrap_or((&word, ""));
        let result = match attack {
            #[cfg(target_arch = "x86_64")]
            "int80" => int80(),
            "fds" => fds(),
            _ => match run(attack, arg) {
                Some(Ok(())) => "ok".to_string(),
                Some(Err(e)) => format!("{e:?}"),
                None => {
                    status = 2;
                    "unknown attack".to_string()
                }
            },
        };
        println!("{word}: {result}");
    }
    std::process::exit(status);
}
