//! The one place sbx talks to the kernel directly. Every raw system call goes through a wrapper
//! here (or through nix, where nix has it), so that `unsafe` code lives in this module alone.
//!
//! The wrappers take C strings prepared by the plan and return the errno on failure. The ones
//! the sandbox's processes call between clone and execve never allocate (those processes may
//! be forks of a multi-threaded program, whose allocator locks a child must not touch).

#![allow(unsafe_code)]

mod fd;
mod fs;
mod mount;
mod net;
mod process;
mod security;
mod term;

pub use nix::errno::Errno;

pub use fd::*;
pub use fs::*;
pub use mount::*;
pub use net::*;
pub use process::*;
pub use security::*;
pub use term::*;

pub type SysResult<T = ()> = Result<T, Errno>;

fn check(ret: libc::c_int) -> SysResult<libc::c_int> {
    if ret < 0 { Err(Errno::last()) } else { Ok(ret) }
}

fn check_long(ret: libc::c_long) -> SysResult<libc::c_long> {
    if ret < 0 { Err(Errno::last()) } else { Ok(ret) }
}
