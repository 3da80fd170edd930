//! Which namespaces the sandbox gets, and the one-line id maps of its user namespace.

use crate::profile::{Namespaces, ProcMode};

/// Which namespaces the sandbox gets besides the user and mount ones, which it always gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamespaceSet {
    pub pid: bool,
    pub net: bool,
    pub ipc: bool,
    pub uts: bool,
    pub cgroup: bool,
}

impl NamespaceSet {
    /// From the profile; whether there is a network namespace is the network plan's to say.
    /// `proc = "host"` shows the processes of sbx's own PID namespace, so the command lives
    /// there too: the PIDs that `ps` shows are the ones it can signal.
    pub fn build(ns: &Namespaces, net: bool, proc: Option<ProcMode>) -> NamespaceSet {
        NamespaceSet {
            pid: ns.pid.unwrap_or(true) && proc != Some(ProcMode::Host),
            net,
            ipc: ns.ipc.unwrap_or(true),
            uts: ns.uts.unwrap_or(true),
            cgroup: ns.cgroup.unwrap_or(true),
        }
    }

    /// The namespaces created, by their usual names (the user and mount ones always).
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = vec!["user", "mount"];
        for (on, name) in [
            (self.pid, "pid"),
            (self.net, "net"),
            (self.ipc, "ipc"),
            (self.uts, "uts"),
            (self.cgroup, "cgroup"),
        ] {
            if on {
                v.push(name);
            }
        }
        v
    }

    pub fn clone_flags(&self) -> libc::c_int {
        let mut f = libc::CLONE_NEWUSER | libc::CLONE_NEWNS;
        for (on, flag) in [
            (self.pid, libc::CLONE_NEWPID),
            (self.net, libc::CLONE_NEWNET),
            (self.ipc, libc::CLONE_NEWIPC),
            (self.uts, libc::CLONE_NEWUTS),
            (self.cgroup, libc::CLONE_NEWCGROUP),
        ] {
            if on {
                f |= flag;
            }
        }
        f
    }
}

/// Contents for `/proc/self/uid_map` and `gid_map`: an unprivileged process may map exactly
/// its own ids, one line each; `map_root` shows them as 0 inside.
pub fn id_maps(map_root: bool) -> (Vec<u8>, Vec<u8>) {
    let inside = |id: u32| if map_root { 0 } else { id };
    let euid = nix::unistd::geteuid().as_raw();
    let egid = nix::unistd::getegid().as_raw();
    (
        format!("{} {} 1\n", inside(euid), euid).into_bytes(),
        format!("{} {} 1\n", inside(egid), egid).into_bytes(),
    )
}
