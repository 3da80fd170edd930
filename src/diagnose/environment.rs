//! Why the environment refused a sandbox: from the step that failed, its errno and the facts
//! of [`Host`], one cause (what was read, and where) and the fix for the environment sbx is
//! in (a container runtime's flags, a Kubernetes securityContext, an AppArmor profile, a
//! sysctl, or the outer sandbox's profile). `None` when no known cause fits: the step's
//! general hint stands then.

use nix::errno::Errno;

use super::host::{Container, Host, Sandbox, own_path};
use crate::text::escape;

/// A cause and its fix, printed as `  cause:` and `  fix:` lines under the error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub cause: String,
    pub fix: String,
}

impl Verdict {
    fn new(cause: impl Into<String>, fix: impl Into<String>) -> Verdict {
        Verdict {
            cause: cause.into(),
            fix: fix.into(),
        }
    }

    /// The lines that follow the error line.
    pub fn lines(&self) -> String {
        format!("\n  cause: {}\n  fix: {}", self.cause, self.fix)
    }
}

/// What a container must be given for sbx to run in it, as far as the facts show: the
/// runtime's filter, its AppArmor profile and its masks over /proc.
struct Needs {
    seccomp: bool,
    apparmor: bool,
    proc: bool,
}

impl Needs {
    /// From a failure at creating the namespaces: whatever may stop the later steps too (an
    /// AppArmor profile denies mount, masks refuse a fresh proc).
    fn at_clone(h: &Host) -> Needs {
        Needs {
            seccomp: h.filtered(),
            apparmor: h.apparmor_confined(),
            proc: masked(h),
        }
    }

    /// From a failure at the first mount: the namespaces were allowed, so the filter did not
    /// stop them (whether it denies mount is the cause's to say).
    fn at_mount(h: &Host, seccomp: bool) -> Needs {
        Needs {
            seccomp,
            apparmor: h.apparmor_confined(),
            proc: masked(h),
        }
    }

    /// From a failure at /proc: the mounts before it were allowed.
    fn at_proc() -> Needs {
        Needs {
            seccomp: false,
            apparmor: false,
            proc: true,
        }
    }

    /// The runtime's own words for what is needed.
    fn container_fix(&self, c: &Container) -> String {
        let mut opts = Vec::new();
        let k8s = matches!(c, Container::Kubernetes);
        if self.seccomp {
            opts.push(match k8s {
                true => "seccompProfile: {type: Unconfined}",
                false => "--security-opt seccomp=unconfined",
            });
        }
        if self.apparmor {
            opts.push(match k8s {
                true => "appArmorProfile: {type: Unconfined}",
                false => "--security-opt apparmor=unconfined",
            });
        }
        let unmask = match c {
            Container::Kubernetes => "procMount: Unmasked (with hostUsers: false)",
            Container::Podman => "--security-opt unmask=ALL",
            _ => "--security-opt systempaths=unconfined",
        };
        // sbx's own mode replaces the unmasking alone.
        let tail = match (self.proc, opts.is_empty()) {
            (false, _) => String::new(),
            (true, true) => "; or, leaving the container as it is: run sbx with --proc host".into(),
            (true, false) => format!(" (or, instead of {unmask}: run sbx with --proc host)"),
        };
        if self.proc {
            opts.push(unmask);
        }
        match c {
            Container::Kubernetes => format!(
                "in the container's securityContext: {{{}}}{tail}",
                opts.join(", ")
            ),
            Container::Podman => format!("podman run {}{tail}", opts.join(" ")),
            Container::Docker => format!(
                "docker run {} (a GitHub Actions job container: `options: {}`; a GitLab \
                 docker runner: the same as security_opt in its config.toml){tail}",
                opts.join(" "),
                opts.join(" ")
            ),
            Container::Other(name) => format!(
                "start the {} container with {} (Docker's and podman's names){tail}",
                escape(name),
                opts.join(" ")
            ),
        }
    }
}

fn masked(h: &Host) -> bool {
    !h.proc_masks.is_empty() || h.proc_sys_read_only
}

/// The fix for a seccomp filter, by where the filter comes from; `needs` says what else the
/// container must be given.
fn seccomp_fix(h: &Host, needs: Needs) -> String {
    match (&h.sandbox, &h.container) {
        (Some(Sandbox::Sbx), _) => nest_fix().into(),
        (Some(Sandbox::Bubblewrap), _) => "start sbx outside bubblewrap, or run bubblewrap \
             without the seccomp filter it was given (--seccomp, --add-seccomp-fd)"
            .into(),
        (None, Some(c)) => needs.container_fix(c),
        (None, None) => "the filter comes from what started sbx: a container runtime (docker \
             or podman run --security-opt seccomp=unconfined; Kubernetes securityContext \
             seccompProfile: {type: Unconfined}), a systemd unit (RestrictNamespaces=, \
             SystemCallFilter=) or an outer sandbox (sbx: --profile nest); start sbx without it"
            .into(),
    }
}

fn nest_fix() -> &'static str {
    "run the outer sbx with `--profile nest` (after its other profiles): it lets the command \
     create user namespaces and mount in them, with landlock off"
}

/// Where the facts came from, for a cause: "inside a Docker container (/.dockerenv)".
fn whereabouts(h: &Host) -> String {
    match (&h.sandbox, &h.container, &h.container_mark) {
        (Some(Sandbox::Sbx), ..) => {
            " inside an sbx sandbox (its root is sbx's tmpfs in /proc/self/mountinfo)".into()
        }
        (Some(Sandbox::Bubblewrap), ..) => {
            " inside bubblewrap (its /newroot is / in /proc/self/mountinfo)".into()
        }
        (None, Some(c), Some(mark)) => format!(
            " inside a {} container ({})",
            match c {
                Container::Docker => "Docker".to_string(),
                Container::Podman => "podman".to_string(),
                Container::Kubernetes => "Kubernetes".to_string(),
                Container::Other(n) => escape(n),
            },
            escape(mark)
        ),
        _ => String::new(),
    }
}

/// The AppArmor profile that lets sbx (at its installed path) create user namespaces.
pub fn apparmor_profile() -> String {
    let path = escape(&own_path().display().to_string());
    format!(
        "allow sbx alone with an AppArmor profile: write /etc/apparmor.d/sbx containing \
         `abi <abi/4.0>, include <tunables/global> profile sbx {path} flags=(unconfined) {{ \
         userns, }}` and load it with `sudo apparmor_parser -r /etc/apparmor.d/sbx`; or lift \
         the restriction for every program: sudo sysctl -w \
         kernel.apparmor_restrict_unprivileged_userns=0"
    )
}

/// clone(CLONE_NEWUSER | ...) failed.
pub fn clone_refused(h: &Host, errno: Errno) -> Option<Verdict> {
    let limits = |what: String| {
        let fix = match h.sandbox {
            Some(Sandbox::Sbx) => nest_fix().to_string(),
            _ if h.initial_userns == Some(false) => "start sbx outside the sandbox or container \
                 that set the limit (bubblewrap: without --disable-userns)"
                .to_string(),
            _ => "sysctl -w user.max_user_namespaces=15000 (and in /etc/sysctl.d/ to persist)"
                .to_string(),
        };
        Some(Verdict::new(what, fix))
    };
    match errno {
        Errno::EPERM | Errno::EACCES => {
            if h.unprivileged_userns_clone.as_deref() == Some("0") {
                return Some(Verdict::new(
                    "kernel.unprivileged_userns_clone = 0: this Debian kernel lets only \
                     privileged processes create user namespaces",
                    "on the host: sysctl -w kernel.unprivileged_userns_clone=1 (and in \
                     /etc/sysctl.d/ to persist)",
                ));
            }
            if h.filtered() {
                return Some(Verdict::new(
                    format!(
                        "a seccomp filter on this process ({}){} denies creating user \
                         namespaces{}",
                        h.seccomp_shown(),
                        whereabouts(h),
                        match h.max_user_namespaces {
                            Some(0) => "; this user namespace allows none either \
                                        (user.max_user_namespaces = 0)"
                                .to_string(),
                            _ => format!("; the kernel allows them ({})", sysctls_shown(h)),
                        }
                    ),
                    seccomp_fix(h, Needs::at_clone(h)),
                ));
            }
            if h.apparmor_restrict.as_deref() == Some("1") {
                return Some(Verdict::new(
                    "AppArmor restricts unprivileged user namespaces \
                     (kernel.apparmor_restrict_unprivileged_userns = 1)",
                    apparmor_profile(),
                ));
            }
            None
        }
        Errno::ENOSPC if h.max_user_namespaces == Some(0) && h.initial_userns != Some(false) => {
            limits("user.max_user_namespaces = 0: user namespaces are disabled".into())
        }
        Errno::ENOSPC if h.max_user_namespaces == Some(0) => limits(format!(
            "this process runs in a user namespace{} whose user.max_user_namespaces is 0",
            whereabouts(h)
        )),
        Errno::ENOSPC if h.initial_userns == Some(false) => limits(format!(
            "this process runs in a user namespace{} below one that allows no more user \
             namespaces (its own limit is {})",
            whereabouts(h),
            h.max_user_namespaces
                .map_or("unknown".into(), |v| v.to_string())
        )),
        Errno::EUSERS => limits(
            "user namespaces nest at most 32 deep, and this process is that deep already".into(),
        ),
        _ => None,
    }
}

/// The hint for a refused clone that no known cause explains: what was checked.
pub fn clone_unexplained(h: &Host) -> String {
    format!(
        "user namespaces are refused, and none of the known causes shows here ({}; {}; \
         no AppArmor restriction): a chroot (clone refuses CLONE_NEWUSER inside one) or \
         another security module may refuse them",
        sysctls_shown(h),
        match h.seccomp {
            Some(0) => "no seccomp filter on this process".to_string(),
            _ => h.seccomp_shown(),
        }
    )
}

fn sysctls_shown(h: &Host) -> String {
    let mut v = vec![format!(
        "user.max_user_namespaces = {}",
        h.max_user_namespaces.map_or("?".into(), |n| n.to_string())
    )];
    if let Some(c) = &h.unprivileged_userns_clone {
        v.push(format!("kernel.unprivileged_userns_clone = {}", escape(c)));
    }
    if let Some(a) = &h.apparmor_restrict {
        v.push(format!(
            "kernel.apparmor_restrict_unprivileged_userns = {}",
            escape(a)
        ));
    }
    v.join(", ")
}

/// Writing setgroups, uid_map or gid_map of the new user namespace failed; `root_map` when
/// the map puts uid 0 on the outside (sbx runs as root).
pub fn ids_refused(h: &Host, errno: Errno, uid_map: bool) -> Option<Verdict> {
    if !matches!(errno, Errno::EPERM | Errno::EACCES) {
        return None;
    }
    if uid_map && h.root_without_setfcap() {
        return Some(Verdict::new(
            format!(
                "sbx runs as root without CAP_SETFCAP (CapEff: {:016x} in /proc/self/status){}: \
                 since Linux 5.12 only a holder of CAP_SETFCAP may map uid 0 into a user \
                 namespace",
                h.cap_eff.unwrap_or(0),
                whereabouts(h)
            ),
            "run sbx as a non-root user (docker run -u 1000, Kubernetes runAsUser: 1000), or \
             give it CAP_SETFCAP (docker run --cap-add SETFCAP; Kubernetes securityContext \
             capabilities: {add: [SETFCAP]})",
        ));
    }
    if h.apparmor_restrict.as_deref() == Some("1") {
        return Some(Verdict::new(
            "AppArmor restricts unprivileged user namespaces \
             (kernel.apparmor_restrict_unprivileged_userns = 1): sbx's user namespace was \
             created without capabilities, so sbx may not write its id maps",
            apparmor_profile(),
        ));
    }
    if h.apparmor_confined() {
        return Some(Verdict::new(
            format!(
                "the AppArmor profile {} confines this process{} and refuses the write",
                escape(h.apparmor.as_deref().unwrap_or_default()),
                whereabouts(h)
            ),
            apparmor_fix(h),
        ));
    }
    None
}

fn apparmor_fix(h: &Host) -> String {
    match &h.container {
        Some(c) => Needs::at_mount(h, false).container_fix(c),
        None => apparmor_profile(),
    }
}

/// The first mount in sbx's own mount namespace failed, where sbx holds every capability:
/// something outside the kernel's own checks forbids mounting.
pub fn mount_refused(h: &Host, errno: Errno) -> Option<Verdict> {
    if !matches!(errno, Errno::EPERM | Errno::EACCES) {
        return None;
    }
    if h.apparmor_confined() {
        return Some(Verdict::new(
            format!(
                "the AppArmor profile {} confines this process{}, and it denies mount (as \
                 docker-default does)",
                escape(h.apparmor.as_deref().unwrap_or_default()),
                whereabouts(h)
            ),
            apparmor_fix(h),
        ));
    }
    if h.filtered() {
        return Some(Verdict::new(
            format!(
                "a seccomp filter on this process ({}){} lets sbx create namespaces but \
                 denies mount",
                h.seccomp_shown(),
                whereabouts(h)
            ),
            seccomp_fix(h, Needs::at_mount(h, true)),
        ));
    }
    if h.sandbox == Some(Sandbox::Sbx) {
        return Some(Verdict::new(
            format!(
                "this process runs{} under landlock, which forbids every mount",
                whereabouts(h)
            ),
            nest_fix(),
        ));
    }
    None
}

/// How many masks a message lists before "and N more".
const MASKS_SHOWN: usize = 4;

/// Mounting a fresh proc failed.
pub fn proc_refused(h: &Host, errno: Errno) -> Option<Verdict> {
    if errno != Errno::EPERM || h.proc_masks.is_empty() {
        return None;
    }
    let n = h.proc_masks.len();
    let mut shown: Vec<String> = h
        .proc_masks
        .iter()
        .take(MASKS_SHOWN)
        .map(|m| escape(m))
        .collect();
    if n > MASKS_SHOWN {
        shown.push(format!("and {} more", n - MASKS_SHOWN));
    }
    let cause = format!(
        "/proc is masked{}: {n} mount(s) cover parts of it ({} in /proc/self/mountinfo), and \
         the kernel mounts a fresh proc in a new user namespace only where no part of one is \
         covered",
        whereabouts(h),
        shown.join(", ")
    );
    let fix = match (&h.sandbox, &h.container) {
        (_, Some(c)) => Needs::at_proc().container_fix(c),
        _ => "run sbx with --proc host (this /proc bound as it is, masks included, and no PID \
              namespace: the command sees the processes around it), or start sbx where /proc \
              is not masked"
            .into(),
    };
    Some(Verdict::new(cause, fix))
}

/// Writing the sandbox's user-namespace limits (`/proc/sys/user`) failed.
pub fn limits_refused(h: &Host, errno: Errno) -> Option<Verdict> {
    if errno != Errno::EROFS || !h.proc_sys_read_only {
        return None;
    }
    let cause = format!(
        "/proc/sys is mounted read-only{} (in /proc/self/mountinfo, with {} other mask(s) over \
         /proc), so sbx cannot set its user namespace's own limits there \
         (limits.host_share), nor mount a fresh proc",
        whereabouts(h),
        h.proc_masks.len().saturating_sub(1)
    );
    let fix = match &h.container {
        Some(c) => Needs::at_proc().container_fix(c),
        None => "run sbx with --proc host (it binds this /proc, and leaves the limits out \
                 where /proc/sys is read-only, with seccomp still denying namespaces), or \
                 start sbx where /proc is not masked"
            .into(),
    };
    Some(Verdict::new(cause, fix))
}

/// sethostname in the sandbox's UTS namespace failed.
pub fn hostname_refused(h: &Host, errno: Errno) -> Option<Verdict> {
    if errno != Errno::EPERM || !h.filtered() {
        return None;
    }
    Some(Verdict::new(
        format!(
            "a seccomp filter on this process ({}){} denies sethostname (podman's and \
             Docker's default profiles allow it only with CAP_SYS_ADMIN)",
            h.seccomp_shown(),
            whereabouts(h)
        ),
        "end the name with ? to set it only where allowed (--hostname NAME?, as the default \
         profile does), leave it out (--hostname ''), or start the container with \
         --security-opt seccomp=unconfined",
    ))
}

/// Creating the network namespace failed after the others were created.
pub fn netns_refused(h: &Host, errno: Errno) -> Option<Verdict> {
    if errno != Errno::EPERM || !h.filtered() {
        return None;
    }
    Some(Verdict::new(
        format!(
            "a seccomp filter on this process ({}){} denies unshare(CLONE_NEWNET)",
            h.seccomp_shown(),
            whereabouts(h)
        ),
        format!(
            "{}; or share the network: --net host",
            seccomp_fix(h, Needs::at_mount(h, true))
        ),
    ))
}

#[cfg(test)]
mod tests;
