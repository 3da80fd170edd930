//! What the environment sbx runs in does to sandboxes, read from the files the kernel and the
//! runtimes leave: this process's seccomp and capability state, the user-namespace sysctls,
//! its LSM label, the masks over `/proc` in its mountinfo, and the marks of a container or an
//! outer sandbox. Read below a root directory, so that `sbx doctor`'s tests can fake a host;
//! nothing here fails: what cannot be read is unknown.

use std::fs;
use std::path::{Path, PathBuf};

/// A container runtime, as far as its marks tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Container {
    Docker,
    Podman,
    Kubernetes,
    /// Another one, by the name its marks give (lxc, containerd, systemd-nspawn...).
    Other(String),
}

/// A sandbox that this process runs inside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sandbox {
    Sbx,
    Bubblewrap,
}

/// The facts, each `None` or empty when it could not be read.
#[derive(Clone, Debug, Default)]
pub struct Host {
    /// `Seccomp:` of /proc/self/status (0 none, 1 strict, 2 filter).
    pub seccomp: Option<u32>,
    pub seccomp_filters: Option<u32>,
    /// The effective user id (`Uid:`'s second field).
    pub euid: Option<u32>,
    pub cap_eff: Option<u64>,
    /// This process's user namespace is the initial one (its uid map is the identity).
    pub initial_userns: Option<bool>,
    pub max_user_namespaces: Option<u64>,
    /// Debian's `kernel.unprivileged_userns_clone` (kernels before 5.10 default to 0).
    pub unprivileged_userns_clone: Option<String>,
    /// Ubuntu's `kernel.apparmor_restrict_unprivileged_userns` (1 from 23.10 on).
    pub apparmor_restrict: Option<String>,
    /// The AppArmor profile confining this process, e.g. `docker-default (enforce)`.
    pub apparmor: Option<String>,
    /// Mount points below `/proc` (the masks a container runtime puts there), as mountinfo
    /// spells them.
    pub proc_masks: Vec<String>,
    /// `/proc/sys` is mounted read-only (as runc does): sysctls cannot be written.
    pub proc_sys_read_only: bool,
    pub container: Option<Container>,
    /// Which of its marks told (for messages).
    pub container_mark: Option<String>,
    pub sandbox: Option<Sandbox>,
}

/// The capability CAP_SETFCAP (31): since Linux 5.12 mapping uid 0 into a new user namespace
/// needs it.
pub const CAP_SETFCAP: u64 = 1 << 31;

fn read(root: &Path, rel: &str) -> Option<String> {
    fs::read_to_string(root.join(rel.trim_start_matches('/'))).ok()
}

fn trimmed(root: &Path, rel: &str) -> Option<String> {
    read(root, rel).map(|s| s.trim().to_string())
}

/// The value of `Key:` in a /proc status file.
fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

impl Host {
    /// Reads the facts of this process below `root` (`/` but in tests).
    pub fn read(root: &Path) -> Host {
        let status = read(root, "/proc/self/status").unwrap_or_default();
        let field = |k| status_field(&status, k);
        let mut h = Host {
            seccomp: field("Seccomp").and_then(|v| v.parse().ok()),
            seccomp_filters: field("Seccomp_filters").and_then(|v| v.parse().ok()),
            euid: field("Uid")
                .and_then(|v| v.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok()),
            cap_eff: field("CapEff").and_then(|v| u64::from_str_radix(v, 16).ok()),
            initial_userns: read(root, "/proc/self/uid_map")
                .map(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"]),
            max_user_namespaces: trimmed(root, "/proc/sys/user/max_user_namespaces")
                .and_then(|v| v.parse().ok()),
            unprivileged_userns_clone: trimmed(root, "/proc/sys/kernel/unprivileged_userns_clone"),
            apparmor_restrict: trimmed(
                root,
                "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            ),
            apparmor: apparmor_label(root),
            ..Host::default()
        };
        if let Some(info) = read(root, "/proc/self/mountinfo") {
            h.proc_masks = proc_masks(&info);
            h.proc_sys_read_only =
                mount_options(&info, "/proc/sys").is_some_and(|o| o.split(',').any(|f| f == "ro"));
            h.sandbox = sandbox(&info);
        }
        let (container, mark) = container(root);
        h.container = container;
        h.container_mark = mark;
        h
    }

    /// A seccomp filter is on this process (set by whatever started sbx).
    pub fn filtered(&self) -> bool {
        self.seccomp == Some(2)
    }

    /// The seccomp state as /proc/self/status shows it.
    pub fn seccomp_shown(&self) -> String {
        format!(
            "Seccomp: {}, Seccomp_filters: {} in /proc/self/status",
            self.seccomp.map_or("?".into(), |v| v.to_string()),
            self.seccomp_filters.map_or("?".into(), |v| v.to_string())
        )
    }

    /// Root without CAP_SETFCAP: it cannot map uid 0 into a user namespace (Linux 5.12+).
    pub fn root_without_setfcap(&self) -> bool {
        self.euid == Some(0) && self.cap_eff.is_some_and(|c| c & CAP_SETFCAP == 0)
    }

    /// AppArmor confines this process with a profile (not `unconfined`).
    pub fn apparmor_confined(&self) -> bool {
        self.apparmor
            .as_deref()
            .is_some_and(|l| !l.starts_with("unconfined"))
    }
}

/// The AppArmor label, from the interface of kernels with several LSMs or the old one (which
/// other LSMs share: an SELinux context there is not AppArmor's).
fn apparmor_label(root: &Path) -> Option<String> {
    if let Some(l) = trimmed(root, "/proc/self/attr/apparmor/current") {
        return Some(l.trim_end_matches('\0').to_string()).filter(|l| !l.is_empty());
    }
    let lsm = trimmed(root, "/sys/kernel/security/lsm").unwrap_or_default();
    if !lsm.split(',').any(|m| m == "apparmor") {
        return None;
    }
    trimmed(root, "/proc/self/attr/current")
        .map(|l| l.trim_end_matches('\0').to_string())
        .filter(|l| !l.is_empty())
}

/// (mount point, fs type, source, root) of each mountinfo line.
fn mounts(info: &str) -> impl Iterator<Item = (&str, &str, &str, &str)> {
    info.lines().filter_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mut f = left.split(' ');
        let root = f.nth(3)?;
        let point = f.next()?;
        let mut r = right.split(' ');
        Some((point, r.next()?, r.next()?, root))
    })
}

/// The per-mount options of the last mount at `point`.
fn mount_options<'a>(info: &'a str, point: &str) -> Option<&'a str> {
    info.lines().rev().find_map(|l| {
        let mut f = l.split(' ');
        (f.nth(4)? == point).then_some(f.next()?)
    })
}

/// Mounts below a proc mounted at /proc: each one hides part of it, and the kernel then
/// refuses a fresh proc in a new user namespace ("mount_too_revealing").
fn proc_masks(info: &str) -> Vec<String> {
    if !mounts(info).any(|(p, t, ..)| p == "/proc" && t == "proc") {
        return Vec::new();
    }
    let mut out: Vec<String> = mounts(info)
        .filter(|(p, ..)| p.starts_with("/proc/"))
        .map(|(p, ..)| p.to_string())
        .collect();
    out.dedup();
    out
}

/// The sandbox whose root this is: sbx names its root tmpfs, bubblewrap's root is the
/// `/newroot` of its own tmpfs.
fn sandbox(info: &str) -> Option<Sandbox> {
    let (_, fstype, source, root) = mounts(info).filter(|(p, ..)| *p == "/").last()?;
    let ours = crate::sandbox::ROOT_SOURCE.to_bytes() == source.as_bytes();
    match (fstype, ours, root) {
        ("tmpfs", true, _) => Some(Sandbox::Sbx),
        ("tmpfs", _, "/newroot") => Some(Sandbox::Bubblewrap),
        _ => None,
    }
}

/// The container runtime, by this process's environment (what its runtime set), the files
/// runtimes leave in a container's root, and the cgroup names.
fn container(root: &Path) -> (Option<Container>, Option<String>) {
    let exists = |p: &str| root.join(p.trim_start_matches('/')).exists();
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let found = |c: Container, mark: String| (Some(c), Some(mark));
    if env("KUBERNETES_SERVICE_HOST").is_some() {
        return found(
            Container::Kubernetes,
            "KUBERNETES_SERVICE_HOST is set".into(),
        );
    }
    if let Some(c) = env("container") {
        let kind = match c.as_str() {
            "podman" | "oci" => Container::Podman,
            "docker" => Container::Docker,
            other => Container::Other(other.to_string()),
        };
        return found(kind, format!("container={c} in the environment"));
    }
    if exists("/.dockerenv") {
        return found(Container::Docker, "/.dockerenv".into());
    }
    if exists("/run/.containerenv") {
        return found(Container::Podman, "/run/.containerenv".into());
    }
    let cgroup = trimmed(root, "/proc/self/cgroup").unwrap_or_default();
    let kinds = [
        ("kubepods", Container::Kubernetes),
        ("docker", Container::Docker),
        ("libpod", Container::Podman),
        ("containerd", Container::Other("containerd".into())),
        ("lxc", Container::Other("lxc".into())),
    ];
    match kinds.into_iter().find(|(k, _)| cgroup.contains(k)) {
        Some((k, c)) => found(c, format!("{k} in /proc/self/cgroup")),
        None => (None, None),
    }
}

/// This sbx binary's path, for the AppArmor profile a fix names.
pub fn own_path() -> PathBuf {
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/usr/local/bin/sbx"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER_INFO: &str = "\
600 550 0:50 / / rw,relatime - overlay overlay rw,lowerdir=/x
601 600 0:52 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
602 601 0:53 / /proc/acpi ro,relatime - tmpfs tmpfs ro
603 601 0:5 /null /proc/kcore rw,nosuid - devtmpfs udev rw
604 601 0:5 /null /proc/keys rw,nosuid - devtmpfs udev rw
605 601 0:52 /sys /proc/sys ro,nosuid,nodev,noexec,relatime - proc proc rw
";

    #[test]
    fn masks_below_proc_are_found() {
        assert_eq!(
            proc_masks(DOCKER_INFO),
            ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/sys"]
        );
        assert_eq!(sandbox(DOCKER_INFO), None);
        assert_eq!(
            mount_options(DOCKER_INFO, "/proc/sys"),
            Some("ro,nosuid,nodev,noexec,relatime")
        );
        let plain = "1 0 0:1 / / rw - ext4 /dev/vda rw\n2 1 0:2 / /proc rw - proc proc rw\n";
        assert!(proc_masks(plain).is_empty());
    }

    #[test]
    fn sandboxes_are_told_by_their_root() {
        let sbx = "70 46 0:42 / / ro,nosuid - tmpfs sbx rw,mode=755\n";
        assert_eq!(sandbox(sbx), Some(Sandbox::Sbx));
        let bwrap = "70 46 0:41 /newroot / rw,nosuid - tmpfs tmpfs rw\n";
        assert_eq!(sandbox(bwrap), Some(Sandbox::Bubblewrap));
    }

    #[test]
    fn status_fields_parse() {
        let d = tempfile::tempdir().unwrap();
        let put = |rel: &str, s: &str| {
            let p = d.path().join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, s).unwrap();
        };
        put(
            "proc/self/status",
            "Name:\tsbx\nUid:\t0\t0\t0\t0\nCapEff:\t00000000a80425fb\nNoNewPrivs:\t0\n\
             Seccomp:\t2\nSeccomp_filters:\t1\n",
        );
        put("proc/self/uid_map", "         0          0 4294967295\n");
        let h = Host::read(d.path());
        assert_eq!((h.seccomp, h.seccomp_filters), (Some(2), Some(1)));
        assert_eq!(h.euid, Some(0));
        assert_eq!(h.initial_userns, Some(true));
        assert!(
            !h.root_without_setfcap(),
            "Docker's default set has SETFCAP"
        );
        put(
            "proc/self/status",
            "Uid:\t0\t0\t0\t0\nCapEff:\t0000000000000000\n",
        );
        assert!(Host::read(d.path()).root_without_setfcap());
    }
}
