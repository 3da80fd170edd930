//! Finding the supervisor's cgroup and checking that the host delegated it: everything sbx
//! learns before it creates a cgroup of its own.

use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::AccessFlags;

use super::error::{DELEGATE_HINT, io_err};
use super::files::{read_pids, read_text, read_words};
use super::mountinfo::{MountEntry, parse_mountinfo, relative_to};
use super::run::supervisor_leaf_name;
use super::{CgroupError, Delegation};

/// Finds the supervisor's cgroup v2 directory and checks that sbx may manage it: the
/// directory, its cgroup.procs and (when controllers are needed) its cgroup.subtree_control
/// writable by us, and every `needed` controller listed in its cgroup.controllers.
pub fn detect(needed: &[&str]) -> Result<Delegation, CgroupError> {
    let read = |p: &str| read_text(Path::new(p)).map_err(|e| io_err("read", Path::new(p), &e));
    let cgroup_file = read("/proc/self/cgroup")?;
    let cgpath = v2_path(&cgroup_file).ok_or(CgroupError::NotInV2)?;
    let (mount, own) = match usual_mount(cgpath) {
        Some(found) => found,
        None => locate(cgpath, &parse_mountinfo(&read("/proc/self/mountinfo")?))?,
    };
    check_delegation(mount, own, &cgroup_file, needed, &write_access)
}

/// Where cgroup2 usually is (the unified layout, then the hybrid one), found without reading
/// the whole mount table, which costs more than the rest of the probe together on a host
/// with many mounts. The place counts only if it shows our own cgroup at `cgpath`, with our
/// pid in its cgroup.procs: a mount made in another cgroup namespace shows another tree under
/// the same names.
fn usual_mount(cgpath: &str) -> Option<(PathBuf, PathBuf)> {
    let me = std::process::id() as i32;
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .filter(|point| {
            nix::sys::statfs::statfs(*point)
                .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        })
        .map(|point| match cgpath.trim_start_matches('/') {
            "" => (PathBuf::from(point), PathBuf::from(point)),
            rel => (PathBuf::from(point), Path::new(point).join(rel)),
        })
        .find(|(_, own)| read_pids(&own.join("cgroup.procs")).contains(&me))
}

/// access(2) checks the real ids; sbx is not setuid, so they are the effective ones.
fn write_access(p: &Path) -> Result<(), Errno> {
    nix::unistd::access(p, AccessFlags::W_OK)
}

/// [`detect`] from the text of /proc/self/cgroup and /proc/self/mountinfo, so that a test can
/// point it at a directory laid out like cgroupfs (by naming that directory as the cgroup2
/// mount point in `mountinfo`).
pub fn detect_from(
    cgroup_file: &str,
    mountinfo: &str,
    needed: &[&str],
) -> Result<Delegation, CgroupError> {
    detect_with(cgroup_file, mountinfo, needed, &write_access)
}

/// The write-access check, injectable because root passes access(2) on any file.
type AccessCheck<'a> = &'a dyn Fn(&Path) -> Result<(), Errno>;

pub(super) fn detect_with(
    cgroup_file: &str,
    mountinfo: &str,
    needed: &[&str],
    writable: AccessCheck,
) -> Result<Delegation, CgroupError> {
    let cgpath = v2_path(cgroup_file).ok_or(CgroupError::NotInV2)?;
    let (mount, own) = locate(cgpath, &parse_mountinfo(mountinfo))?;
    check_delegation(mount, own, cgroup_file, needed, writable)
}

/// The cgroup2 mount that shows `cgpath`, and the directory of `cgpath` under it.
fn locate(cgpath: &str, mounts: &[MountEntry]) -> Result<(PathBuf, PathBuf), CgroupError> {
    mounts
        .iter()
        .filter(|m| m.fstype == "cgroup2")
        .find_map(|m| {
            let rel = relative_to(&m.root, cgpath.as_bytes())?;
            let own = if rel.is_empty() {
                m.point.clone()
            } else {
                m.point.join(std::ffi::OsString::from_vec(rel.to_vec()))
            };
            Some((m.point.clone(), own))
        })
        .ok_or_else(|| CgroupError::NoMount {
            cgroup: cgpath.to_string(),
        })
}

/// Checks that `own` (under the cgroup2 mount `mount`) is ours to manage and offers `needed`.
fn check_delegation(
    mount: PathBuf,
    mut own: PathBuf,
    cgroup_file: &str,
    needed: &[&str],
    writable: AccessCheck,
) -> Result<Delegation, CgroupError> {
    // An earlier run in this process moved the supervisor into its leaf; it still manages
    // the cgroup above.
    let me = std::process::id();
    if own != mount && own.file_name() == Some(supervisor_leaf_name(me).as_ref()) {
        own.pop();
    }

    let controllers = own.join("cgroup.controllers");
    let available = read_words(&controllers).map_err(|e| io_err("read", &controllers, &e))?;
    let missing: Vec<String> = needed
        .iter()
        .filter(|c| !available.iter().any(|a| a == *c))
        .map(|c| c.to_string())
        .collect();
    if !missing.is_empty() {
        let hint = missing_hint(&mount, &own, &available, cgroup_file, &missing);
        return Err(CgroupError::MissingControllers {
            cgroup: own,
            missing,
            available,
            hint,
        });
    }

    let mut files = vec![own.clone(), own.join("cgroup.procs")];
    if !needed.is_empty() {
        files.push(own.join("cgroup.subtree_control"));
    }
    for file in files {
        match writable(&file) {
            Ok(()) => {}
            Err(Errno::EACCES | Errno::EPERM | Errno::EROFS) => {
                let meta = fs::metadata(&file).map_err(|e| io_err("stat", &file, &e))?;
                return Err(CgroupError::NotDelegated {
                    cgroup: own,
                    file,
                    owner: meta.uid(),
                    mode: meta.mode() & 0o7777,
                    uid: nix::unistd::geteuid().as_raw(),
                });
            }
            Err(errno) => {
                return Err(CgroupError::Io {
                    op: "check write access to",
                    path: file,
                    errno,
                });
            }
        }
    }
    Ok(Delegation {
        mount,
        own,
        available,
    })
}

/// Says, for each missing controller, why it is missing and what would help. A controller
/// bound to a cgroup v1 hierarchy shows in /proc/self/cgroup as `ID:controllers:path`.
fn missing_hint(
    mount: &Path,
    own: &Path,
    available: &[String],
    cgroup_file: &str,
    missing: &[String],
) -> String {
    let top = match own == mount {
        true => available.to_vec(),
        false => read_words(&mount.join("cgroup.controllers")).unwrap_or_default(),
    };
    let mut why = Vec::new();
    for c in missing {
        let v1 = cgroup_file.lines().find(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next();
            parts.next().is_some_and(|cs| cs.split(',').any(|x| x == c))
        });
        why.push(if top.iter().any(|t| t == c) {
            format!(
                "{c} is enabled higher up but not delegated down to this cgroup; {DELEGATE_HINT}"
            )
        } else if let Some(line) = v1 {
            format!(
                "{c} is bound to a cgroup v1 hierarchy (/proc/self/cgroup: {line}; a hybrid \
                 layout), so cgroup v2 cannot limit it until the host boots with \
                 systemd.unified_cgroup_hierarchy=1"
            )
        } else {
            format!("this kernel's cgroup v2 hierarchy has no {c} controller")
        });
    }
    why.join("; ")
}

/// The cgroup v2 path in `/proc/<pid>/cgroup` text (its `0::PATH` line).
pub fn v2_path(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup.lines().find_map(|l| l.strip_prefix("0::"))
}
