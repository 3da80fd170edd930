//! The `sbx` binary: a C `main`, so that std's runtime start-up does not run.
//!
//! That start-up installs a stack-overflow handler, and for the main thread it asks glibc for
//! the stack's bounds, which glibc finds by reading and scanning `/proc/self/maps`: a dozen
//! system calls and 40 KiB of scanf code on every start, in a process that never runs long
//! enough to overflow its stack (an overflow still dies on the guard page, without the
//! message). The two things sbx needs from it, `cli::start_process` does; the arguments
//! still arrive through glibc's constructors, where std collects them.
// Under `cargo test` the harness brings its own main.
#![cfg_attr(not(test), no_main)]

// SAFETY: the symbol `main` is defined only here, with the signature glibc's start-up calls.
#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    sbx::cli::start_process();
    // Runs std's exit path (flushes stdout), as returning from a Rust `main` does.
    std::process::exit(sbx::cli::main())
}
