//! The view `sbx learn` runs the command in: its base profile, with the host's directories
//! shown read-only, so that what the command needs beyond the base is found rather than
//! refused.

use std::path::Path;

use crate::profile::{NetMode, Overlay, OverlayMode, ProfileFile, Sourced};

/// Where `sbx learn` says an entry of its own comes from.
pub const LEARN: &str = "sbx learn";

/// Top-level directories never shown: the kernel's and the devices (the base makes its own),
/// and where running programs keep their sockets and shared files (/run, /tmp): a daemon's
/// socket is reachable through a read-only bind, and a learning run must not reach the host's.
const KEPT_OUT: &[&str] = &["proc", "sys", "dev", "run", "tmp", "lost+found"];

/// The base profile `base` (merged, variables expanded) made permissive for learning: every
/// top-level host directory sbx may read is bound read-only (`KEPT_OUT` aside), and the base's
/// tmpfs mounts over existing host directories ($HOME in most profiles) become throwaway
/// overlays of them (writes still vanish, the host's files show). A network through sbx's
/// egress (`on`, `proxy`) lets every public destination through.
pub fn permissive(base: &ProfileFile) -> ProfileFile {
    let mut p = base.clone();
    // Through sbx's egress, every public destination goes, and is recorded.
    if matches!(p.network.mode, Some(NetMode::On | NetMode::Proxy)) {
        p.network.mode = Some(NetMode::On);
    }
    let fs = &mut p.filesystem;
    if !overlays_in_a_user_namespace() {
        tracing::warn!(
            "overlayfs needs Linux >= 5.11 in a user namespace: while learning, the base's tmpfs \
             (e.g. $HOME) hide the host's files under them, and a read-only working directory \
             stays read-only (the first write the base refuses may end the run)"
        );
        return with_host_dirs(p);
    }
    let mut tmpfs = Vec::new();
    for t in std::mem::take(&mut fs.tmpfs) {
        let path = Path::new(&t.value);
        if runtime(path) || !path.is_dir() {
            tmpfs.push(t);
            continue;
        }
        fs.overlay.push(Overlay {
            src: Sourced::new(t.value.clone(), LEARN, "filesystem.overlay"),
            dst: None,
            mode: Some(OverlayMode::Tmp),
            lower: Vec::new(),
        });
    }
    fs.tmpfs = tmpfs;
    // A read-only workspace (strict) becomes a throwaway overlay: the build's writes succeed
    // and vanish, so that one run learns them all instead of stopping at the first.
    let (workspace, ro): (Vec<Sourced>, Vec<Sourced>) = std::mem::take(&mut fs.ro)
        .into_iter()
        .partition(|e| e.workspace);
    fs.ro = ro;
    for w in workspace {
        let mut src = w.clone();
        src.origin.profile = LEARN.to_string();
        fs.overlay.push(Overlay {
            src,
            dst: None,
            mode: Some(OverlayMode::Tmp),
            lower: Vec::new(),
        });
    }
    with_host_dirs(p)
}

/// `p` with every top-level host directory this user can read bound read-only.
fn with_host_dirs(mut p: ProfileFile) -> ProfileFile {
    let fs = &mut p.filesystem;
    let listed: Vec<String> = (fs.ro.iter().chain(&fs.rw))
        .map(|e| e.value.trim_end_matches('?').to_string())
        .collect();
    let Ok(entries) = std::fs::read_dir("/") else {
        return p;
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| !KEPT_OUT.contains(&n.as_str()))
        .collect();
    names.sort();
    for name in names {
        let path = format!("/{name}");
        if listed.contains(&path) || !readable(Path::new(&path)) {
            continue;
        }
        fs.ro
            .push(Sourced::new(format!("{path}?"), LEARN, "filesystem.ro"));
    }
    p
}

/// Whether this kernel mounts overlayfs in a user namespace (Linux 5.11).
fn overlays_in_a_user_namespace() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut v = release
        .split(['.', '-'])
        .map(|n| n.trim().parse::<u32>().unwrap_or(0));
    let (major, minor) = (v.next().unwrap_or(0), v.next().unwrap_or(0));
    (major, minor) >= (5, 11)
}

/// Where programs keep sockets and per-boot files: kept as the base has them.
fn runtime(path: &Path) -> bool {
    ["/tmp", "/var/tmp", "/run", "/var/run", "/dev"]
        .iter()
        .any(|r| path.starts_with(r))
}

/// Whether this user can list and enter `path` (a bind of one it cannot would fail the run).
fn readable(path: &Path) -> bool {
    use nix::unistd::{AccessFlags, access};
    access(path, AccessFlags::R_OK | AccessFlags::X_OK).is_ok()
}
