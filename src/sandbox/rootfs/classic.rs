//! Binds with mount(2) alone, for kernels without the new mount API (mount_setattr is Linux
//! 5.12) and seccomp filters that answer it with ENOSYS. The guarantees are those of the new
//! API's path (see `bind` in the parent module):
//!
//! - Nothing is followed: the source and the destination are opened without following any
//!   symlink, and mount(2) is given their descriptors' `/proc/self/fd` links, which name
//!   exactly what was opened.
//! - Every mount of the copy gets the attributes before the copy is where the sandbox will see
//!   it: the recursive bind goes to a stage of sbx's own scratch tmpfs (nothing else can reach
//!   it), each mount of the copy is remounted there (a bind remount changes one mount, so the
//!   copy's mounts are found in the mount table, reached by their mount point without
//!   following symlinks, and checked to be the very mount before the remount), the table is
//!   read again to check that every one has them, and only then is the copy moved into place.
//! - A mount that cannot be reached at its mount point is a failure, unless it is stacked
//!   under another mount of the copy on its own root: it is then hidden for good, since only a
//!   process with CAP_SYS_ADMIN in the sandbox's user namespace could unmount what covers it
//!   (and the kernel locks mounts copied from the host together). Anything else (a mount point
//!   renamed during setup, a directory sbx may not search, a mount hidden under an ancestor's
//!   mount, which renames on the host could bring back) stops the run.
//!
//! Nothing here allocates: the setup process may be the fork of a multi-threaded program.

use std::ffi::CStr;
use std::os::fd::RawFd;

use super::mountinfo::{self, Entry};
use crate::plan::MountAttrs;
use crate::sys::{self, Errno, SysResult};

/// The host's /proc while the plan's ops run (the host's root is at /oldroot).
const HOST_PROC: &CStr = c"/oldroot/proc";
const MOUNTINFO: &CStr = c"/oldroot/proc/self/mountinfo";
/// Where a copy is prepared, on the scratch tmpfs: one for directories, one for files.
const STAGE_DIR: &CStr = c"/stage.d";
const STAGE_FILE: &CStr = c"/stage.f";

/// The most mounts one bind's copy may hold here.
const MAX_MOUNTS: usize = 1024;

/// A recursive bind of `src` onto `dst`, every mount of it with `attrs`.
pub fn bind(src: &CStr, dst: &CStr, attrs: MountAttrs) -> SysResult {
    let src_fd = sys::open_path_nofollow(src)?;
    let r = stage(src_fd).and_then(|stage| {
        let from = sys::fd_path(HOST_PROC, src_fd)?;
        let flags = libc::MS_BIND | libc::MS_REC;
        sys::mount(Some(from.as_cstr()), stage, None, flags, None)?;
        let placed = seal(stage, attrs).and_then(|_| move_to(stage, dst));
        if placed.is_err() {
            let _ = sys::umount_detach(stage);
        }
        placed
    });
    sys::close(src_fd);
    r
}

/// The stage for what `src` holds, created the first time.
fn stage(src: RawFd) -> SysResult<&'static CStr> {
    let (path, made) = match sys::file_type(src)? == libc::S_IFDIR {
        true => (STAGE_DIR, sys::mkdir(STAGE_DIR, 0o700)),
        false => (
            STAGE_FILE,
            sys::write_file(STAGE_FILE, libc::O_CREAT | libc::O_EXCL, b""),
        ),
    };
    match made {
        Ok(()) | Err(Errno::EEXIST) => Ok(path),
        Err(e) => Err(e),
    }
}

/// Moves the prepared copy from the stage onto `dst`, opened without following symlinks.
fn move_to(stage: &CStr, dst: &CStr) -> SysResult {
    let dst_fd = sys::open_path_nofollow(dst)?;
    let r = sys::fd_path(HOST_PROC, dst_fd)
        .and_then(|to| sys::mount(Some(stage), to.as_cstr(), None, libc::MS_MOVE, None));
    sys::close(dst_fd);
    r
}

/// The ids of the mounts of one copy.
struct Ids {
    ids: [u64; MAX_MOUNTS],
    len: usize,
}

impl Ids {
    fn contains(&self, id: u64) -> bool {
        self.ids[..self.len].contains(&id)
    }

    fn push(&mut self, id: u64) -> SysResult {
        if self.len == MAX_MOUNTS {
            return Err(Errno::E2BIG);
        }
        self.ids[self.len] = id;
        self.len += 1;
        Ok(())
    }
}

/// Gives every mount of the copy at `stage` the attributes, and checks that each has them.
fn seal(stage: &CStr, attrs: MountAttrs) -> SysResult {
    let root_fd = sys::open(stage, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
    let r = (|| {
        let mut copy = Ids {
            ids: [0; MAX_MOUNTS],
            len: 0,
        };
        copy.push(sys::mount_id(HOST_PROC, root_fd)?)?;
        collect(&mut copy)?;
        remount(root_fd, attrs)?;
        mountinfo::each(MOUNTINFO, |e| {
            if e.id != copy.ids[0] && copy.contains(e.id) {
                // One not reached is found below, unless it is out of reach for good.
                reach_and_remount(e, attrs)?;
            }
            Ok(())
        })?;
        // A mount of the copy without the attributes, reachable or not: EBUSY.
        mountinfo::each(MOUNTINFO, |e| {
            if !copy.contains(e.id) || e.attrs.contains(attrs) || stacked_on_root(e)? {
                return Ok(());
            }
            Err(Errno::EBUSY)
        })
    })();
    sys::close(root_fd);
    r
}

/// Adds the descendants of the mounts in `copy` until there are no more. The table lists a
/// copy parents first, so that a second reading usually only confirms the first.
fn collect(copy: &mut Ids) -> SysResult {
    loop {
        let before = copy.len;
        mountinfo::each(MOUNTINFO, |e| {
            if e.id != e.parent && copy.contains(e.parent) && !copy.contains(e.id) {
                copy.push(e.id)?;
            }
            Ok(())
        })?;
        if copy.len == before {
            return Ok(());
        }
    }
}

/// Opens `e`'s mount point without following symlinks and, if what is there is `e` itself,
/// remounts it. A mount point that cannot be opened (a symlink, gone, not searchable) or
/// holds another mount is left alone here; a remount that fails is an error.
fn reach_and_remount(e: &Entry<'_>, attrs: MountAttrs) -> SysResult {
    let Ok(fd) = sys::open_path_nofollow(e.point) else {
        return Ok(());
    };
    let r = match sys::mount_id(HOST_PROC, fd) {
        Ok(id) if id == e.id => remount(fd, attrs),
        Ok(_) => Ok(()),
        Err(err) => Err(err),
    };
    sys::close(fd);
    r
}

/// Whether another mount is stacked on `e`'s root (its parent is `e`, at the same mount
/// point): `e` is then out of reach for good.
fn stacked_on_root(e: &Entry<'_>) -> SysResult<bool> {
    let mut stacked = false;
    mountinfo::each(MOUNTINFO, |other| {
        stacked |= other.parent == e.id && other.id != e.id && other.point == e.point;
        Ok(())
    })?;
    Ok(stacked)
}

/// Adds `attrs` to the flags of the mount whose root `fd` holds, keeping the others. Always
/// a remount: statvfs calls a mount read-only when only its file system is, and the mount's own
/// flag is what the check reads (and what a later remount of the file system cannot undo).
fn remount(fd: RawFd, attrs: MountAttrs) -> SysResult {
    let flags = sys::mount_flags(fd)? | attrs.ms_flags();
    let path = sys::fd_path(HOST_PROC, fd)?;
    sys::remount(path.as_cstr(), flags)
}

/// Makes the one mount at `path` (a mount sbx placed) read-only, reached without following
/// symlinks: `Op::Seal` where mount_setattr is missing.
pub fn seal_one(path: &CStr) -> SysResult {
    let fd = sys::open_path_nofollow(path)?;
    let r = remount(fd, MountAttrs::RDONLY);
    sys::close(fd);
    r
}

/// Makes the new root's own mount read-only with `attrs`, once the host is detached (there is
/// no /proc to name a descriptor by then; `/` is the root itself).
pub fn root_read_only(attrs: MountAttrs) -> SysResult {
    let fd = sys::open(c"/", libc::O_PATH | libc::O_DIRECTORY, 0)?;
    let flags = sys::mount_flags(fd);
    sys::close(fd);
    sys::remount(c"/", flags? | attrs.ms_flags())
}
