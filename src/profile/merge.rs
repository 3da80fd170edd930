//! Folding profile layers: a later layer (a profile that `extends` another, a later
//! `--profile`, the command line) wins.

use super::model::{
    Env, Filesystem, Limits, Namespaces, NetMode, Network, Process, ProfileFile, Seccomp, Security,
    Sourced,
};

use super::limit::ExplicitKeys;
use super::spec::{destination_of, lexical};

pub fn merge(base: ProfileFile, over: ProfileFile) -> ProfileFile {
    let (net_namespace, net_mode) = merge_network_choice(&base, &over);
    ProfileFile {
        description: over.description.or(base.description),
        extends: Vec::new(),
        namespaces: Namespaces {
            pid: over.namespaces.pid.or(base.namespaces.pid),
            net: net_namespace,
            ipc: over.namespaces.ipc.or(base.namespaces.ipc),
            uts: over.namespaces.uts.or(base.namespaces.uts),
            cgroup: over.namespaces.cgroup.or(base.namespaces.cgroup),
        },
        filesystem: merge_fs(base.filesystem, over.filesystem),
        env: merge_env(base.env, over.env),
        process: Process {
            hostname: over.process.hostname.or(base.process.hostname),
            new_session: over.process.new_session.or(base.process.new_session),
            chdir: over.process.chdir.or(base.process.chdir),
            map_root: over.process.map_root.or(base.process.map_root),
            as_pid_1: over.process.as_pid_1.or(base.process.as_pid_1),
            pty: over.process.pty.or(base.process.pty),
        },
        network: Network {
            mode: net_mode,
            allow: {
                let mut allow = base.network.allow;
                for a in over.network.allow {
                    if !allow.contains(&a) {
                        allow.push(a);
                    }
                }
                allow
            },
            proxy_port: over.network.proxy_port.or(base.network.proxy_port),
            connect_ports: over.network.connect_ports.or(base.network.connect_ports),
            bind_ports: over.network.bind_ports.or(base.network.bind_ports),
        },
        limits: merge_limits(base.limits, over.limits),
        security: Security {
            landlock: over.security.landlock.or(base.security.landlock),
            seccomp: over.security.seccomp.or(base.security.seccomp),
            nested_userns: over.security.nested_userns.or(base.security.nested_userns),
            scope_abstract_sockets: over
                .security
                .scope_abstract_sockets
                .or(base.security.scope_abstract_sockets),
        },
        seccomp: merge_seccomp(base.seccomp, over.seccomp),
    }
}

/// `network.mode` and the older `namespaces.net` say one thing between them (whether the
/// sandbox shares the host's network), so a later layer that sets either overrides what an
/// earlier layer said with the other: `--net host` over a profile with `namespaces.net = true`
/// is a choice, not a conflict. Within one layer they must agree (the plan checks).
fn merge_network_choice(base: &ProfileFile, over: &ProfileFile) -> (Option<bool>, Option<NetMode>) {
    let (mode, ns) = (over.network.mode, over.namespaces.net);
    match (mode, ns) {
        (Some(_), _) => (ns, mode),
        (None, Some(private)) => {
            let agrees = base
                .network
                .mode
                .filter(|m| (*m != NetMode::Host) == private);
            (ns, agrees)
        }
        (None, None) => (base.namespaces.net, base.network.mode),
    }
}

fn merge_limits(b: Limits, o: Limits) -> Limits {
    let explicit = ExplicitKeys::merged(&b, &o);
    Limits {
        wall_time: o.wall_time.or(b.wall_time),
        kill_grace: o.kill_grace.or(b.kill_grace),
        memory: o.memory.or(b.memory),
        processes: o.processes.or(b.processes),
        open_files: o.open_files.or(b.open_files),
        file_size: o.file_size.or(b.file_size),
        cpu_time: o.cpu_time.or(b.cpu_time),
        stack: o.stack.or(b.stack),
        core: o.core.or(b.core),
        tmpfs_size: o.tmpfs_size.or(b.tmpfs_size),
        cpus: o.cpus.or(b.cpus),
        cgroup: o.cgroup.or(b.cgroup),
        host_share: o.host_share.or(b.host_share),
        explicit,
    }
}

/// A later layer's `allow` takes a name off earlier `deny` lists and the other way round.
fn merge_seccomp(base: Seccomp, over: Seccomp) -> Seccomp {
    let mut allow: Vec<String> = base
        .allow
        .into_iter()
        .filter(|n| !over.deny.contains(n))
        .collect();
    let mut deny: Vec<String> = base
        .deny
        .into_iter()
        .filter(|n| !over.allow.contains(n))
        .collect();
    for n in over.allow {
        if !allow.contains(&n) {
            allow.push(n);
        }
    }
    for n in over.deny {
        if !deny.contains(&n) {
            deny.push(n);
        }
    }
    Seccomp {
        allow,
        deny,
        action: over.action.or(base.action),
    }
}

/// A destination named by the later layer in any of `ro`, `rw`, `tmpfs`, `overlay` or
/// `symlinks` replaces every earlier mount or symlink of that destination, so `--ro-bind $PWD`
/// overrides a profile's `rw = [$PWD]`, `--overlay $PWD` overrides both, and `--ro-bind /bin`
/// a profile's `/bin` link. Destinations compare as written, up to `.` and `/` (`--ro-bind .`
/// is `$PWD`); spellings through a symlink are the plan's to settle.
fn merge_fs(base: Filesystem, over: Filesystem) -> Filesystem {
    let taken: Vec<String> = over
        .ro
        .iter()
        .chain(&over.rw)
        .chain(&over.tmpfs)
        .map(|e| destination_of(&e.value))
        .chain(over.overlay.iter().map(|o| o.destination()))
        .chain(over.symlinks.keys().map(|k| lexical(k)))
        .collect();
    let mut overlay: Vec<_> = base
        .overlay
        .into_iter()
        .filter(|o| !taken.contains(&o.destination()))
        .collect();
    overlay.extend(over.overlay);
    let keep = |list: Vec<Sourced>, add: Vec<Sourced>| -> Vec<Sourced> {
        let mut out: Vec<Sourced> = list
            .into_iter()
            .filter(|e| !taken.contains(&destination_of(&e.value)))
            .collect();
        out.extend(add);
        out
    };
    let ro = keep(base.ro, over.ro);
    let rw = keep(base.rw, over.rw);
    let tmpfs = keep(base.tmpfs, over.tmpfs);
    let mut dirs = base.dirs;
    for d in over.dirs {
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    let protect = merge_liftable(base.protect, over.protect);
    let hide = merge_liftable(base.hide, over.hide);
    let mut symlinks = base.symlinks;
    symlinks.retain(|k, _| !taken.contains(&lexical(k)));
    symlinks.extend(over.symlinks);
    let mut files = base.files;
    files.extend(over.files);
    Filesystem {
        ro,
        rw,
        tmpfs,
        dirs,
        protect,
        hide,
        symlinks,
        files,
        dev: over.dev.or(base.dev),
        proc: over.proc.or(base.proc),
        changes: over.changes.or(base.changes),
        overlay,
    }
}

/// A list whose entries a later layer lifts with `!PATH` (`protect`, `hide`): the last word on
/// each path wins, so `!x` lifts an earlier `x` and `x` restores it.
fn merge_liftable(base: Vec<Sourced>, over: Vec<Sourced>) -> Vec<Sourced> {
    let mut out = base;
    for e in over {
        let path = e.value.trim_start_matches('!');
        out.retain(|p| p.value.trim_start_matches('!') != path);
        out.push(e);
    }
    out
}

fn merge_env(base: Env, over: Env) -> Env {
    let mut keep = base.keep;
    for k in over.keep {
        if !keep.contains(&k) {
            keep.push(k);
        }
    }
    let mut set = base.set;
    let mut unset = base.unset;
    for k in &over.unset {
        set.remove(k);
        if !unset.contains(k) {
            unset.push(k.clone());
        }
    }
    unset.retain(|k| !over.set.contains_key(k));
    set.extend(over.set);
    Env { keep, set, unset }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs(ro: &[&str], rw: &[&str], tmpfs: &[&str]) -> ProfileFile {
        let s = |v: &[&str]| v.iter().map(|x| Sourced::new(*x, "t", "k")).collect();
        ProfileFile {
            filesystem: Filesystem {
                ro: s(ro),
                rw: s(rw),
                tmpfs: s(tmpfs),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn later_layer_replaces_same_destination_across_lists() {
        let m = merge(
            fs(&["/usr"], &["/w"], &["/tmp"]),
            fs(&["/w"], &[], &["/usr"]),
        );
        let vals = |l: &[Sourced]| l.iter().map(|e| e.value.clone()).collect::<Vec<_>>();
        assert_eq!(vals(&m.filesystem.ro), ["/w"]);
        assert!(m.filesystem.rw.is_empty());
        assert_eq!(vals(&m.filesystem.tmpfs), ["/tmp", "/usr"]);
    }

    #[test]
    fn a_later_mount_replaces_an_earlier_link_and_the_reverse() {
        let mut linked = fs(&["/usr"], &[], &[]);
        linked.filesystem.symlinks = [("/bin".to_string(), "usr/bin".to_string())].into();
        // `--ro-bind /bin` over a profile that links it (Alpine's real /bin).
        let m = merge(linked.clone(), fs(&["/bin/"], &[], &[]));
        assert!(m.filesystem.symlinks.is_empty(), "{m:?}");
        assert_eq!(m.filesystem.ro.len(), 2);
        // A profile's link over an earlier layer's bind of the same place.
        let m = merge(fs(&["/usr", "/bin?"], &[], &[]), linked);
        assert_eq!(m.filesystem.ro.len(), 1, "{m:?}");
        assert_eq!(m.filesystem.symlinks["/bin"], "usr/bin");
    }

    #[test]
    fn bind_with_destination_is_matched_on_destination() {
        let m = merge(fs(&[], &["/host/a:/a"], &[]), fs(&["/other:/a?"], &[], &[]));
        assert!(m.filesystem.rw.is_empty());
        assert_eq!(m.filesystem.ro.len(), 1);
    }

    #[test]
    fn dot_and_slash_spellings_are_one_destination() {
        for later in ["/w/.", "/w/", "/w//", "/./w"] {
            let m = merge(fs(&[], &["/w"], &[]), fs(&[later], &[], &[]));
            assert!(m.filesystem.rw.is_empty(), "{later}");
        }
    }

    #[test]
    fn a_later_layer_lifts_or_restores_a_protected_path() {
        let layer = |v: &[&str]| {
            let mut p = ProfileFile::default();
            p.filesystem.protect = v.iter().map(|x| Sourced::new(*x, "t", "k")).collect();
            p
        };
        let m = merge(layer(&[".git", ".envrc"]), layer(&["!.git"]));
        let eff: Vec<&str> = m
            .filesystem
            .protected()
            .iter()
            .map(|e| e.value.as_str())
            .collect();
        assert_eq!(eff, [".envrc"]);
        let m = merge(m, layer(&[".git"]));
        let eff: Vec<&str> = m
            .filesystem
            .protected()
            .iter()
            .map(|e| e.value.as_str())
            .collect();
        assert_eq!(eff, [".envrc", ".git"]);
    }

    #[test]
    fn a_later_layer_lifts_or_restores_a_hidden_path() {
        let layer = |v: &[&str]| {
            let mut p = ProfileFile::default();
            p.filesystem.hide = v.iter().map(|x| Sourced::new(*x, "t", "k")).collect();
            p
        };
        let eff = |m: &ProfileFile| -> Vec<String> {
            m.filesystem
                .hidden()
                .iter()
                .map(|e| e.value.clone())
                .collect()
        };
        let m = merge(layer(&["/h/.netrc", "/h/.ssh"]), layer(&["!/h/.ssh"]));
        assert_eq!(eff(&m), ["/h/.netrc"]);
        let m = merge(m, layer(&["/h/.ssh", "/h/.aws"]));
        assert_eq!(eff(&m), ["/h/.netrc", "/h/.ssh", "/h/.aws"]);
    }

    #[test]
    fn env_set_and_unset_override_each_other() {
        let mut a = ProfileFile::default();
        a.env.set.insert("A".into(), "1".into());
        a.env.unset.push("B".into());
        a.env.keep.push("TERM".into());
        let mut b = ProfileFile::default();
        b.env.unset.push("A".into());
        b.env.set.insert("B".into(), "2".into());
        b.env.keep.push("TERM".into());
        let m = merge(a, b);
        assert_eq!(m.env.set.get("B").map(String::as_str), Some("2"));
        assert!(!m.env.set.contains_key("A"));
        assert_eq!(m.env.unset, ["A"]);
        assert_eq!(m.env.keep, ["TERM"]);
    }

    #[test]
    fn a_later_network_choice_overrides_either_key() {
        let layer = |net: Option<bool>, mode: Option<NetMode>| {
            let mut p = ProfileFile::default();
            p.namespaces.net = net;
            p.network.mode = mode;
            p
        };
        let default = layer(Some(true), Some(NetMode::None));
        let m = merge(default.clone(), layer(None, Some(NetMode::Host)));
        assert_eq!(
            (m.namespaces.net, m.network.mode),
            (None, Some(NetMode::Host))
        );
        let net_on = layer(Some(false), Some(NetMode::Host));
        let m = merge(net_on, layer(Some(true), None));
        assert_eq!((m.namespaces.net, m.network.mode), (Some(true), None));
        let m = merge(default, layer(Some(true), None));
        assert_eq!(
            m.network.mode,
            Some(NetMode::None),
            "an agreeing mode stays"
        );
    }

    #[test]
    fn scalars_take_the_later_value() {
        let mut a = ProfileFile::default();
        a.namespaces.net = Some(true);
        a.process.hostname = Some("a".into());
        let mut b = ProfileFile::default();
        b.namespaces.net = Some(false);
        let m = merge(a, b);
        assert_eq!(m.namespaces.net, Some(false));
        assert_eq!(m.process.hostname.as_deref(), Some("a"));
    }
}
