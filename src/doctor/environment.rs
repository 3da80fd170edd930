//! The checks of what surrounds sbx: a container or an outer sandbox, the seccomp filter and
//! AppArmor profile it was started under, the masks over /proc, root without CAP_SETFCAP.
//! They read the same facts as a failed run's message (`diagnose::host`), and a FAIL here
//! names the same cause and fix that run would print.

use super::{Check, Status};
use crate::diagnose::host::{Container, Host, Sandbox};
use crate::text::escape;

pub(super) fn checks(h: &Host) -> Vec<Check> {
    let mut out = vec![container(h), seccomp(h), proc(h)];
    if h.apparmor_confined() {
        out.push(Check::new(
            "AppArmor profile of this process",
            Status::Warn,
            format!(
                "{}: a container's profile (docker-default) denies mount",
                escape(h.apparmor.as_deref().unwrap_or_default())
            ),
            "if the live checks below fail at a mount, start the container with \
             --security-opt apparmor=unconfined (Kubernetes: securityContext \
             appArmorProfile: {type: Unconfined})",
        ));
    }
    if h.root_without_setfcap() {
        out.push(Check::new(
            "root without CAP_SETFCAP",
            Status::Fail,
            format!(
                "uid 0 with CapEff {:016x}: since Linux 5.12 mapping uid 0 into a user \
                 namespace needs CAP_SETFCAP",
                h.cap_eff.unwrap_or(0)
            ),
            "run sbx as a non-root user (docker run -u 1000, Kubernetes runAsUser: 1000), or \
             give it CAP_SETFCAP (docker run --cap-add SETFCAP)",
        ));
    }
    out
}

fn container(h: &Host) -> Check {
    let name = "running in a container";
    let inside = match (&h.sandbox, &h.container, &h.container_mark) {
        (Some(Sandbox::Sbx), ..) => "inside an sbx sandbox (its root is sbx's tmpfs in \
             /proc/self/mountinfo)"
            .to_string(),
        (Some(Sandbox::Bubblewrap), ..) => "inside bubblewrap (its /newroot is /)".to_string(),
        (None, Some(c), Some(mark)) => format!(
            "inside a container ({}: {})",
            match c {
                Container::Docker => "Docker".to_string(),
                Container::Podman => "podman".to_string(),
                Container::Kubernetes => "Kubernetes".to_string(),
                Container::Other(n) => escape(n),
            },
            escape(mark)
        ),
        _ => return Check::new(name, Status::Ok, "no container markers found", ""),
    };
    Check::new(
        name,
        Status::Warn,
        format!(
            "{inside}: its seccomp filter, AppArmor profile or masked /proc may block user \
             namespaces or mounts (the checks below read which)"
        ),
        "if the live checks below fail, their message names the cause and the fix",
    )
}

fn seccomp(h: &Host) -> Check {
    let name = "seccomp filter of this process";
    match h.seccomp {
        Some(0) => Check::new(name, Status::Ok, "none (Seccomp: 0)", ""),
        Some(_) => Check::new(
            name,
            Status::Warn,
            format!(
                "{}: what started sbx filters its system calls, and such filters often deny \
                 namespaces, mount or sethostname",
                h.seccomp_shown()
            ),
            "if the live checks below fail, their message names the call denied and the fix",
        ),
        None => Check::new(
            name,
            Status::Ok,
            "unknown (no Seccomp: line in /proc/self/status)",
            "",
        ),
    }
}

fn proc(h: &Host) -> Check {
    let name = "/proc (masks)";
    if h.proc_masks.is_empty() {
        return Check::new(name, Status::Ok, "no mounts cover parts of /proc", "");
    }
    let shown: Vec<String> = h.proc_masks.iter().map(|m| escape(m)).collect();
    Check::new(
        name,
        Status::Fail,
        format!(
            "{} mount(s) cover parts of /proc ({}): the kernel refuses a fresh proc in a \
             sandbox, as the default profile mounts",
            shown.len(),
            shown.join(", ")
        ),
        "run sbx with --proc host (this /proc bound as it is, no PID namespace), or unmask \
         /proc (docker --security-opt systempaths=unconfined, podman --security-opt \
         unmask=ALL, Kubernetes procMount: Unmasked)",
    )
}
