//! Builds the new root: a scratch tmpfs holds the host's root at `/oldroot` and the new root
//! at `/newroot` while the plan's ops run; then the host is detached and `/newroot` becomes `/`.
//! The scratch tmpfs sits on the host's `/tmp` of our private mount namespace only, so bind
//! sources under `/tmp` stay reachable through `/oldroot/tmp`.
//!
//! The new mount API (open_tree, move_mount, mount_setattr) is used where the kernel has it;
//! where it answers ENOSYS (Linux before 5.12, or a seccomp filter), the same ops run with
//! mount(2) alone and the same guarantees (see `classic`).

mod classic;
mod mountinfo;

use std::ffi::CStr;

use super::channel::{Failure, Step};
use crate::plan::{MountAttrs, Op, Plan};
use crate::sys;

/// The scratch tmpfs and the new root's own tmpfs.
const SCRATCH: MountAttrs = MountAttrs::NOSUID.union(MountAttrs::NODEV);

/// The mount namespace is private already (`setup`).
pub fn build(plan: &Plan) -> Result<(), Failure> {
    let fail = |step| move |e| Failure::new(step, e);
    sys::mount(
        Some(c"tmpfs"),
        c"/tmp",
        Some(c"tmpfs"),
        SCRATCH.ms_flags(),
        Some(c"mode=0755"),
    )
    .map_err(fail(Step::MountScratch))?;
    sys::chdir(c"/tmp").map_err(fail(Step::EnterScratch))?;
    sys::mkdir(c"newroot", 0o755).map_err(fail(Step::EnterScratch))?;
    sys::mkdir(c"oldroot", 0o755).map_err(fail(Step::EnterScratch))?;
    sys::mount(
        Some(super::ROOT_SOURCE),
        c"newroot",
        Some(c"tmpfs"),
        SCRATCH.ms_flags(),
        Some(c"mode=0755"),
    )
    .map_err(fail(Step::MountScratch))?;
    sys::pivot_root(c".", c"oldroot").map_err(fail(Step::PivotScratch))?;
    sys::chdir(c"/").map_err(fail(Step::PivotScratch))?;

    // Modes are the plan's, exactly (/tmp's 1777): the caller's umask is put back after.
    let umask = sys::umask(0);
    for (i, op) in plan.ops.iter().enumerate() {
        apply(op).map_err(|e| Failure::at(Step::Op, i, e))?;
    }
    sys::umask(umask);

    // Proc was mounted above while the host's proc was still visible; now the host goes.
    sys::umount_detach(c"/oldroot").map_err(fail(Step::DetachHost))?;
    let scratch =
        sys::open(c"/", libc::O_DIRECTORY | libc::O_RDONLY, 0).map_err(fail(Step::PivotRoot))?;
    let swap = (|| {
        sys::chdir(c"/newroot")?;
        sys::pivot_root(c".", c".")?;
        sys::fchdir(scratch)
    })();
    sys::close(scratch);
    swap.map_err(fail(Step::PivotRoot))?;
    sys::umount_detach(c".").map_err(fail(Step::DetachScratch))?;
    sys::chdir(c"/").map_err(fail(Step::DetachScratch))?;
    // The root tmpfs itself holds only mount points, links and the profile's files.
    let root = SCRATCH | MountAttrs::RDONLY;
    with_mount_api(
        || sys::mount_setattr(c"/", false, root.mount_attr()),
        || classic::root_read_only(root),
    )
    .map_err(fail(Step::RootReadOnly))?;
    Ok(())
}

/// Replays one op; its attributes were decided by the plan.
fn apply(op: &Op) -> sys::SysResult {
    let mount = |dst: &CStr, fstype: &CStr, attrs: MountAttrs, data: Option<&CStr>| {
        mount_on(dst, |at| {
            sys::mount(Some(fstype), at, Some(fstype), attrs.ms_flags(), data)
        })
    };
    match op {
        Op::Mkdir { path, mode } => match sys::mkdir(path, *mode) {
            Err(sys::Errno::EEXIST) => Ok(()),
            r => r,
        },
        Op::Touch { path } => sys::write_file(path, libc::O_CREAT | libc::O_EXCL, b""),
        Op::Bind { src, dst, attrs } => with_mount_api(
            || bind(src, dst, attrs.mount_attr()),
            || classic::bind(src, dst, *attrs),
        ),
        // Both ends are sbx's own tmpfs mounts, which nothing else can change yet.
        Op::StoreBind { src, dst } => mount_on(dst, |at| {
            sys::mount(Some(src), at, None, libc::MS_BIND, None)
        }),
        Op::Tmpfs { dst, data, attrs } => mount(dst, c"tmpfs", *attrs, Some(data)),
        Op::Proc { dst, attrs } => mount(dst, c"proc", *attrs, None),
        Op::Devpts { dst, data, attrs } => mount(dst, c"devpts", *attrs, Some(data)),
        Op::Overlay { dst, data, attrs } => mount(dst, c"overlay", *attrs, Some(data)),
        Op::Seal { path } => with_mount_api(
            || sys::mount_setattr(path, false, MountAttrs::RDONLY.mount_attr()),
            || classic::seal_one(path),
        ),
        Op::Symlink { target, path } => sys::symlink(target, path),
        Op::File { path, content } => sys::write_file(path, libc::O_CREAT | libc::O_EXCL, content),
    }
}

/// Runs `new`, which uses the new mount API, unless this process found the API missing;
/// `classic` instead then, and when `new` answers ENOSYS (which it does before changing
/// anything: a detached tree it made is freed when its descriptor closes).
fn with_mount_api(
    new: impl FnOnce() -> sys::SysResult,
    classic: impl FnOnce() -> sys::SysResult,
) -> sys::SysResult {
    if !sys::mount_api_missing() {
        let r = new();
        if !sys::note_mount_api(&r) {
            return r;
        }
    }
    classic()
}

/// A recursive bind whose attributes are set on the detached copy before it is attached, so
/// a read-only bind is never visible writable. Source and destination are opened without
/// following symlinks: a path swapped for a symlink since the plan checked it fails (ELOOP)
/// instead of mounting something else, or somewhere else.
fn bind(src: &CStr, dst: &CStr, attr: u64) -> sys::SysResult {
    let src_fd = sys::open_path_nofollow(src)?;
    let tree = sys::open_tree_clone(src_fd);
    sys::close(src_fd);
    let tree = tree?;
    let r = sys::mount_setattr_fd(tree, attr).and_then(|_| {
        let dst_fd = sys::open_path_nofollow(dst)?;
        let r = sys::move_mount_fds(tree, dst_fd);
        sys::close(dst_fd);
        r
    });
    sys::close(tree);
    r
}

/// Runs a mount(2) onto `dst`, reached without following symlinks: the target is the
/// directory opened, given to mount(2) as the working directory.
fn mount_on(dst: &CStr, mount: impl FnOnce(&CStr) -> sys::SysResult) -> sys::SysResult {
    let fd = sys::open_path_nofollow(dst)?;
    let r = sys::fchdir(fd).and_then(|_| mount(c"."));
    sys::close(fd);
    r
}
