use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::errno::Errno;

use super::detect::detect_with;
use super::files::{keyed, read_words};
use super::mountinfo::{parse_mountinfo, relative_to, unescape};
use super::run::{DRAIN_TIMEOUT, Fs, sbx_name_pid, supervisor_leaf_name};
use super::*;

/// A plain directory playing cgroupfs: mkdir creates the interface files the kernel would
/// (those of the controllers the parent enables), rmdir refuses populated cgroups and ones
/// with children, like the kernel.
struct FakeKernel {
    /// Interface files this kernel lacks.
    omit: &'static [&'static str],
}

static FAKE: FakeKernel = FakeKernel { omit: &[] };
/// Before Linux 5.14 (no cgroup.kill), swap accounting off.
static FAKE_OLD: FakeKernel = FakeKernel {
    omit: &["cgroup.kill", "memory.swap.max"],
};
static FAKE_NO_CPU_MAX: FakeKernel = FakeKernel { omit: &["cpu.max"] };

fn put(dir: &Path, name: &str, content: &str) {
    fs::write(dir.join(name), content).unwrap();
}

fn get(path: impl AsRef<Path>) -> String {
    fs::read_to_string(path.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
}

impl Fs for FakeKernel {
    fn mkdir(&self, path: &Path) -> io::Result<()> {
        fs::create_dir(path)?;
        let parent = path.parent().unwrap();
        // The kernel shows "memory pids"; our writes leave "+memory +pids" in the fake.
        let enabled: Vec<String> = read_words(&parent.join("cgroup.subtree_control"))?
            .iter()
            .map(|c| c.trim_start_matches('+').to_string())
            .collect();
        let on = |c: &str| enabled.iter().any(|e| e == c);
        let mut files = vec![
            ("cgroup.procs", ""),
            ("cgroup.threads", ""),
            ("cgroup.subtree_control", ""),
            ("cgroup.type", "domain\n"),
            ("cgroup.events", "populated 0\nfrozen 0\n"),
            ("cgroup.freeze", "0\n"),
            ("cpu.stat", "usage_usec 0\nuser_usec 0\nsystem_usec 0\n"),
            ("cgroup.kill", ""),
        ];
        if on("memory") {
            files.extend([
                ("memory.max", "max\n"),
                ("memory.peak", "0\n"),
                ("memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"),
                ("memory.swap.max", "max\n"),
                ("memory.oom.group", "0\n"),
            ]);
        }
        if on("pids") {
            files.push(("pids.max", "max\n"));
        }
        if on("cpu") {
            files.push(("cpu.max", "max 100000\n"));
        }
        for (name, content) in files {
            if !self.omit.contains(&name) {
                put(path, name, content);
            }
        }
        put(path, "cgroup.controllers", &(enabled.join(" ") + "\n"));
        Ok(())
    }

    fn rmdir(&self, path: &Path) -> io::Result<()> {
        let has_children = fs::read_dir(path)?
            .flatten()
            .any(|e| e.file_type().unwrap().is_dir());
        if has_children || !get(path.join("cgroup.procs")).trim().is_empty() {
            return Err(io::Error::from_raw_os_error(libc::EBUSY));
        }
        fs::remove_dir_all(path)
    }
}

/// A temporary cgroup2 "mount" holding the supervisor's delegated cgroup
/// /user.slice/sbx-test.scope, with the supervisor in it.
struct FakeHost {
    _tmp: tempfile::TempDir,
    mount: PathBuf,
    own: PathBuf,
    cgroup_file: String,
    mountinfo: String,
}

const OWN: &str = "/user.slice/sbx-test.scope";

fn fake_host(available: &str) -> FakeHost {
    let tmp = tempfile::tempdir().unwrap();
    let mount = tmp.path().join("cgroup2");
    let own = mount.join("user.slice/sbx-test.scope");
    fs::create_dir_all(&own).unwrap();
    // The root: no cgroup.type there.
    put(&mount, "cgroup.controllers", "cpu memory pids hugetlb\n");
    put(&mount, "cgroup.subtree_control", "cpu memory pids\n");
    put(&mount, "cgroup.procs", "1\n");
    put(&own, "cgroup.controllers", &format!("{available}\n"));
    put(&own, "cgroup.subtree_control", "");
    put(&own, "cgroup.procs", &format!("{}\n", std::process::id()));
    put(&own, "cgroup.threads", "");
    put(&own, "cgroup.type", "domain\n");
    put(&own, "cgroup.events", "populated 1\nfrozen 0\n");
    let mountinfo = format!(
        "22 1 0:21 / /sys rw,nosuid - sysfs sysfs rw\n\
         35 31 0:32 / /fake/v1/memory rw,relatime shared:9 - cgroup cgroup rw,memory\n\
         41 31 0:38 / {} rw,nosuid,relatime shared:12 - cgroup2 cgroup2 rw,nsdelegate\n",
        mount.display()
    );
    FakeHost {
        _tmp: tmp,
        mount,
        own,
        cgroup_file: format!("1:name=systemd:/x\n0::{OWN}\n"),
        mountinfo,
    }
}

impl FakeHost {
    fn detect(&self, needed: &[&str]) -> Result<Delegation, CgroupError> {
        detect_from(&self.cgroup_file, &self.mountinfo, needed)
    }
}

fn me() -> u32 {
    std::process::id()
}

const LIMITS: Limits = Limits {
    memory_max: Some(512 << 20),
    pids_max: Some(64),
    cpu_max: Some((150_000, 100_000)),
};

#[test]
fn limits_name_their_controllers_in_order() {
    assert_eq!(LIMITS.controllers(), ["memory", "pids", "cpu"]);
    assert!(Limits::default().controllers().is_empty());
    assert!(Limits::default().is_empty());
    let cpu_only = Limits {
        cpu_max: Some((50_000, 100_000)),
        ..Limits::default()
    };
    assert_eq!(cpu_only.controllers(), ["cpu"]);
}

#[test]
fn detect_finds_the_delegated_cgroup() {
    let h = fake_host("cpu memory pids");
    let d = h.detect(&["memory", "pids", "cpu"]).unwrap();
    assert_eq!(
        d,
        Delegation {
            mount: h.mount.clone(),
            own: h.own.clone(),
            available: vec!["cpu".into(), "memory".into(), "pids".into()],
        }
    );
}

#[test]
fn detect_names_a_missing_controller_and_why() {
    let h = fake_host("cpu pids");
    let err = h.detect(&["memory", "pids"]).unwrap_err();
    let CgroupError::MissingControllers { missing, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(missing, &["memory"]);
    let msg = err.to_string();
    // The root offers memory, so it is a delegation problem: say how to get one.
    assert!(
        msg.contains("controller memory not available in")
            && msg.contains("lists: cpu, pids")
            && msg.contains("not delegated down")
            && msg.contains("systemd-run --user --scope -p Delegate=yes"),
        "{msg}"
    );

    // Bound to cgroup v1 (this host's case): say so instead.
    put(&h.mount, "cgroup.controllers", "hugetlb\n");
    let hybrid = format!("3:cpu,cpuacct:/\n4:net_cls,memory:/x\n{}", h.cgroup_file);
    let msg = detect_from(&hybrid, &h.mountinfo, &["memory"])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(
            "memory is bound to a cgroup v1 hierarchy (/proc/self/cgroup: 4:net_cls,memory:/x;"
        ) && msg.contains("systemd.unified_cgroup_hierarchy=1"),
        "{msg}"
    );
    let msg = h.detect(&["io"]).unwrap_err().to_string();
    assert!(
        msg.contains("controller io not available") && msg.contains("has no io controller"),
        "{msg}"
    );
}

#[test]
fn detect_without_v2_or_mount_says_so() {
    let h = fake_host("");
    let err = detect_from("1:name=systemd:/\n2:memory:/\n", &h.mountinfo, &[]).unwrap_err();
    assert!(matches!(err, CgroupError::NotInV2), "{err:?}");
    assert!(err.to_string().contains("no cgroup v2 hierarchy"));

    let v1_only = "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
    let err = detect_from(&h.cgroup_file, v1_only, &[]).unwrap_err();
    assert!(
        err.to_string().contains("no cgroup2 mount") && err.to_string().contains(OWN),
        "{err}"
    );
    // A mount of another subtree does not show ours.
    let other = format!(
        "41 31 0:38 /system.slice {} rw - cgroup2 cgroup2 rw\n",
        h.mount.display()
    );
    let err = detect_from(&h.cgroup_file, &other, &[]).unwrap_err();
    assert!(matches!(err, CgroupError::NoMount { .. }), "{err:?}");
}

#[test]
fn detect_maps_a_mount_of_a_subtree() {
    // cgroup2 mounted with root /user.slice: our cgroup is sbx-test.scope below the mount.
    let h = fake_host("");
    let base = h.mount.join("user.slice");
    let mountinfo = format!(
        "41 31 0:38 /user.slice {} rw - cgroup2 cgroup2 rw\n",
        base.display()
    );
    let d = detect_from(&h.cgroup_file, &mountinfo, &[]).unwrap();
    assert_eq!(d.mount, base);
    assert_eq!(d.own, h.own);
}

#[test]
fn detect_reports_a_cgroup_that_is_not_writable() {
    let h = fake_host("cpu memory pids");
    // Injected, because root passes access(2) whatever the mode.
    let deny = |p: &Path| {
        if p.ends_with("cgroup.subtree_control") {
            Err(Errno::EACCES)
        } else {
            Ok(())
        }
    };
    let err = detect_with(&h.cgroup_file, &h.mountinfo, &["memory"], &deny).unwrap_err();
    let CgroupError::NotDelegated { file, owner, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(file, &h.own.join("cgroup.subtree_control"));
    assert_eq!(*owner, nix::unistd::geteuid().as_raw());
    let msg = err.to_string();
    assert!(
        msg.contains("is not delegated to uid")
            && msg.contains("cgroup.subtree_control is not writable (owner uid")
            && msg.contains("systemd-run --user --scope -p Delegate=yes"),
        "{msg}"
    );
    // Without needed controllers, subtree_control does not matter.
    detect_with(&h.cgroup_file, &h.mountinfo, &[], &deny).unwrap();

    // The real access(2) check.
    fs::set_permissions(
        h.own.join("cgroup.procs"),
        fs::Permissions::from_mode(0o444),
    )
    .unwrap();
    if nix::unistd::geteuid().is_root() {
        eprintln!(
            "NOTE detect_reports_a_cgroup_that_is_not_writable: root passes access(2) on a \
             0444 file, so the real check is not exercised here (the injected one is, and \
             tests/cgroup.rs runs it as uid 65534 on the real cgroupfs)"
        );
        h.detect(&[]).unwrap();
    } else {
        let err = h.detect(&[]).unwrap_err();
        assert!(
            err.to_string().contains("cgroup.procs is not writable")
                && err.to_string().contains("mode 444"),
            "{err}"
        );
    }
}

#[test]
fn detect_sees_through_our_own_supervisor_leaf() {
    let h = fake_host("memory");
    let leaf = h.own.join(supervisor_leaf_name(me()));
    fs::create_dir(&leaf).unwrap();
    let cgroup_file = format!("0::{OWN}/sbx-{}.supervisor\n", me());
    let d = detect_from(&cgroup_file, &h.mountinfo, &["memory"]).unwrap();
    assert_eq!(d.own, h.own);
    // Another process's leaf is just a cgroup.
    let other = format!("0::{OWN}/sbx-1.supervisor\n");
    FAKE.mkdir(&h.own.join("sbx-1.supervisor")).unwrap();
    let d = detect_from(&other, &h.mountinfo, &[]).unwrap();
    assert_eq!(d.own, h.own.join("sbx-1.supervisor"));
}

#[test]
fn create_enables_controllers_moves_the_supervisor_and_writes_limits() {
    let h = fake_host("cpu memory pids");
    let d = h.detect(&LIMITS.controllers()).unwrap();
    let run = RunCgroup::create_in(&FAKE, &d, &LIMITS, &[]).unwrap();

    // One write enables exactly what the limits need.
    assert_eq!(
        get(h.own.join("cgroup.subtree_control")),
        "+memory +pids +cpu"
    );
    // The supervisor left `own` first, for the no-internal-processes rule.
    assert!(run.moved_self());
    let leaf = h.own.join(format!("sbx-{}.supervisor", me()));
    assert_eq!(get(leaf.join("cgroup.procs")), me().to_string());

    let name = run
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(name.starts_with(&format!("sbx-{}-", me())), "{name}");
    assert_eq!(run.path().parent(), Some(h.own.as_path()));
    assert_eq!(get(run.path().join("memory.max")), "536870912");
    assert_eq!(get(run.path().join("memory.swap.max")), "0");
    assert_eq!(get(run.path().join("memory.oom.group")), "1");
    assert_eq!(get(run.path().join("pids.max")), "64");
    assert_eq!(get(run.path().join("cpu.max")), "150000 100000");
    // Nothing is delegated further: the process leaf has no limit files to rewrite.
    assert_eq!(get(run.path().join("cgroup.subtree_control")), "");
    assert_eq!(run.leaf_path(), run.path().join("sandbox"));
    assert_eq!(get(run.leaf_path().join("cgroup.controllers")), "\n");
    assert!(!run.leaf_path().join("memory.max").exists());

    // dir_fd is the leaf, open.
    let fd_target = fs::read_link(format!("/proc/self/fd/{}", run.dir_fd())).unwrap();
    assert_eq!(fd_target, run.leaf_path());
    assert_eq!(run.as_fd().as_raw_fd(), run.dir_fd());

    run.add_process(4242).unwrap();
    assert_eq!(get(run.leaf_path().join("cgroup.procs")), "4242");
    put(run.leaf_path(), "cgroup.procs", ""); // it exited

    let path = run.path().to_path_buf();
    run.remove().unwrap();
    assert!(!path.exists());
    // The supervisor's leaf stays: it lives there.
    assert!(leaf.exists());
}

#[test]
fn a_second_run_reuses_enabled_controllers_without_moving() {
    let h = fake_host("cpu memory pids");
    put(&h.own, "cgroup.subtree_control", "memory pids cpu\n");
    let d = h.detect(&LIMITS.controllers()).unwrap();
    let run = RunCgroup::create_in(&FAKE, &d, &LIMITS, &[]).unwrap();
    assert!(!run.moved_self());
    assert_eq!(
        get(h.own.join("cgroup.subtree_control")),
        "memory pids cpu\n"
    );
    assert!(!h.own.join(supervisor_leaf_name(me())).exists());
    assert_eq!(get(run.path().join("pids.max")), "64");
    run.remove().unwrap();
}

#[test]
fn no_limits_touch_no_controller() {
    let h = fake_host("cpu memory pids");
    let d = h.detect(&[]).unwrap();
    let run = RunCgroup::create_in(&FAKE, &d, &Limits::default(), &[]).unwrap();
    assert!(!run.moved_self());
    assert_eq!(get(h.own.join("cgroup.subtree_control")), "");
    assert!(!h.own.join(supervisor_leaf_name(me())).exists());
    for f in ["memory.max", "pids.max", "cpu.max"] {
        assert!(!run.path().join(f).exists(), "{f}");
    }
    run.remove().unwrap();
}

#[test]
fn extra_controllers_are_enabled_without_limits() {
    let h = fake_host("cpu memory pids");
    let d = h.detect(&["memory"]).unwrap();
    let limits = Limits {
        pids_max: Some(10),
        ..Limits::default()
    };
    let run = RunCgroup::create_in(&FAKE, &d, &limits, &["memory", "pids"]).unwrap();
    assert_eq!(get(h.own.join("cgroup.subtree_control")), "+pids +memory");
    assert_eq!(get(run.path().join("memory.max")), "max\n");
    assert_eq!(get(run.path().join("pids.max")), "10");
    run.remove().unwrap();
}

#[test]
fn the_root_cgroup_needs_no_move() {
    let h = fake_host("cpu memory pids");
    fs::remove_file(h.own.join("cgroup.type")).unwrap();
    let d = h.detect(&["pids"]).unwrap();
    let limits = Limits {
        pids_max: Some(5),
        ..Limits::default()
    };
    let run = RunCgroup::create_in(&FAKE, &d, &limits, &[]).unwrap();
    assert!(!run.moved_self());
    assert_eq!(get(h.own.join("cgroup.subtree_control")), "+pids");
    assert!(!h.own.join(supervisor_leaf_name(me())).exists());
    run.remove().unwrap();
}

#[test]
fn no_swap_file_means_no_swap_limit() {
    let h = fake_host("memory");
    let d = h.detect(&["memory"]).unwrap();
    let limits = Limits {
        memory_max: Some(1 << 30),
        ..Limits::default()
    };
    let run = RunCgroup::create_in(&FAKE_OLD, &d, &limits, &[]).unwrap();
    assert_eq!(get(run.path().join("memory.max")), "1073741824");
    assert!(!run.path().join("memory.swap.max").exists());
    run.remove().unwrap();
}

#[test]
fn create_refuses_controllers_the_delegation_lacks() {
    let h = fake_host("cpu memory");
    let d = h.detect(&[]).unwrap();
    let err = RunCgroup::create_in(&FAKE, &d, &LIMITS, &[]).unwrap_err();
    assert!(
        err.to_string().contains("controller pids not available"),
        "{err}"
    );
    // Nothing was touched.
    assert_eq!(get(h.own.join("cgroup.subtree_control")), "");
    assert_eq!(
        fs::read_dir(&h.own)
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_dir())
            .count(),
        0
    );
}

#[test]
fn a_failed_limit_write_removes_the_run_cgroup() {
    let h = fake_host("cpu memory pids");
    let d = h.detect(&["cpu"]).unwrap();
    let limits = Limits {
        cpu_max: Some((150_000, 100_000)),
        ..Limits::default()
    };
    let err = RunCgroup::create_in(&FAKE_NO_CPU_MAX, &d, &limits, &[]).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("cannot write \"150000 100000\" to ")
            && msg.contains("cpu.max: No such file or directory (ENOENT)"),
        "{msg}"
    );
    let runs: Vec<_> = fs::read_dir(&h.own)
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("sbx-") && !n.ends_with(".supervisor"))
        .collect();
    assert!(runs.is_empty(), "{runs:?}");
}

#[test]
fn kill_all_writes_cgroup_kill() {
    let h = fake_host("");
    let d = h.detect(&[]).unwrap();
    let run = RunCgroup::create_in(&FAKE, &d, &Limits::default(), &[]).unwrap();
    run.kill_all().unwrap();
    assert_eq!(get(run.path().join("cgroup.kill")), "1");
    run.remove().unwrap();
}

#[test]
fn kill_all_without_cgroup_kill_freezes_and_signals_each_pid() {
    let h = fake_host("");
    let d = h.detect(&[]).unwrap();
    let run = RunCgroup::create_in(&FAKE_OLD, &d, &Limits::default(), &[]).unwrap();
    assert!(!run.path().join("cgroup.kill").exists());
    let mut child = std::process::Command::new("sleep")
        .arg("100")
        .spawn()
        .unwrap();
    put(
        run.leaf_path(),
        "cgroup.procs",
        &format!("{}\n", child.id()),
    );
    // Reap it as soon as it dies, as the supervisor would.
    let reaper = std::thread::spawn(move || child.wait().unwrap());
    run.kill_all().unwrap();
    assert_eq!(get(run.path().join("cgroup.freeze")), "1");
    let status = reaper.join().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    put(run.leaf_path(), "cgroup.procs", "");
    run.remove().unwrap();
}

#[test]
fn stragglers_are_reported_after_the_timeout() {
    let h = fake_host("");
    let d = h.detect(&[]).unwrap();
    let run = RunCgroup::create_in(&FAKE, &d, &Limits::default(), &[]).unwrap();
    put(run.path(), "cgroup.events", "populated 1\nfrozen 0\n");
    put(run.leaf_path(), "cgroup.procs", "2000000000\n");
    let t = Instant::now();
    let err = run.kill_all().unwrap_err();
    assert!(t.elapsed() >= DRAIN_TIMEOUT);
    assert!(
        matches!(&err, CgroupError::Stragglers { pids, .. } if pids == &[2_000_000_000]),
        "{err:?}"
    );
    assert!(err.to_string().contains("survived SIGKILL"), "{err}");
    put(run.path(), "cgroup.events", "populated 0\n");
    put(run.leaf_path(), "cgroup.procs", "");
    run.remove().unwrap();
}

#[test]
fn stats_parse_the_kernel_files() {
    let h = fake_host("cpu memory pids");
    let d = h.detect(&["memory"]).unwrap();
    let limits = Limits {
        memory_max: Some(1 << 30),
        ..Limits::default()
    };
    let run = RunCgroup::create_in(&FAKE, &d, &limits, &[]).unwrap();
    put(run.path(), "memory.peak", "73539584\n");
    put(
        run.path(),
        "cpu.stat",
        "usage_usec 1523977\nuser_usec 1203456\nsystem_usec 320521\nnr_periods 0\n\
         nr_throttled 0\nthrottled_usec 0\nnr_bursts 0\nburst_usec 0\n",
    );
    put(
        run.path(),
        "memory.events",
        "low 0\nhigh 0\nmax 17\noom 2\noom_kill 1\noom_group_kill 0\n",
    );
    assert_eq!(
        run.stats(),
        Stats {
            memory_peak: Some(73_539_584),
            cpu_usage_usec: Some(1_523_977),
            cpu_user_usec: Some(1_203_456),
            cpu_system_usec: Some(320_521),
            oom_kills: Some(1),
        }
    );
    // Without the memory controller (or before 5.19) the files are missing.
    for f in ["memory.peak", "memory.events", "cpu.stat"] {
        fs::remove_file(run.path().join(f)).unwrap();
    }
    assert_eq!(run.stats(), Stats::default());
    run.remove().unwrap();
}

#[test]
fn drop_cleans_up() {
    let h = fake_host("");
    let d = h.detect(&[]).unwrap();
    let run = RunCgroup::create_in(&FAKE, &d, &Limits::default(), &[]).unwrap();
    let path = run.path().to_path_buf();
    assert!(path.join("sandbox").exists());
    drop(run);
    assert!(!path.exists());
}

#[test]
fn remove_sweeps_cgroups_of_dead_supervisors_only() {
    let h = fake_host("pids");
    put(&h.own, "cgroup.subtree_control", "pids\n");
    let dead = 2_000_000_000;
    let mk = |name: &str| {
        let p = h.own.join(name);
        FAKE.mkdir(&p).unwrap();
        p
    };
    let dead_leaf = mk(&format!("sbx-{dead}.supervisor"));
    let dead_run = mk(&format!("sbx-{dead}-3"));
    FAKE.mkdir(&dead_run.join("sandbox")).unwrap();
    let busy_leaf = mk(&format!("sbx-{}.supervisor", dead - 1));
    put(&busy_leaf, "cgroup.procs", "77\n");
    let live_leaf = mk("sbx-1.supervisor"); // pid 1 is alive
    let unrelated = mk(&format!("other-{dead}"));

    let d = h.detect(&[]).unwrap();
    let run = RunCgroup::create_in(&FAKE, &d, &Limits::default(), &[]).unwrap();
    run.remove().unwrap();
    assert!(!dead_leaf.exists());
    assert!(!dead_run.exists());
    assert!(busy_leaf.exists());
    assert!(live_leaf.exists());
    assert!(unrelated.exists());
}

#[test]
fn parsers() {
    assert_eq!(
        v2_path("12:pids:/a\n0::/user.slice/x.scope\n"),
        Some("/user.slice/x.scope")
    );
    assert_eq!(v2_path("0::/\n"), Some("/"));
    assert_eq!(v2_path("1:cpu:/\n"), None);

    let m = parse_mountinfo(
        "41 31 0:38 / /sys/fs/cgroup/with\\040space rw shared:1 master:2 - cgroup2 none rw\n\
         garbage line\n\
         32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n",
    );
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].point, Path::new("/sys/fs/cgroup/with space"));
    assert_eq!(m[0].fstype, "cgroup2");
    assert_eq!(m[1].fstype, "cgroup");
    assert_eq!(unescape("a\\011b\\134c\\012"), b"a\tb\\c\n");
    assert_eq!(unescape("trailing\\04"), b"trailing\\04");

    assert_eq!(relative_to(b"/", b"/a/b"), Some(&b"a/b"[..]));
    assert_eq!(relative_to(b"/", b"/"), Some(&b""[..]));
    assert_eq!(relative_to(b"/a", b"/a/b"), Some(&b"b"[..]));
    assert_eq!(relative_to(b"/a", b"/a"), Some(&b""[..]));
    assert_eq!(relative_to(b"/a", b"/ab"), None);
    assert_eq!(relative_to(b"/../..", b"/a"), None);

    assert_eq!(keyed("usage_usec 5\nuser_usec 3\n", "user_usec"), Some(3));
    assert_eq!(keyed("usage_usec 5\n", "system_usec"), None);
    assert_eq!(keyed("oom_kill x\n", "oom_kill"), None);

    assert_eq!(sbx_name_pid("sbx-123.supervisor"), Some(123));
    assert_eq!(sbx_name_pid("sbx-123-4"), Some(123));
    assert_eq!(sbx_name_pid("sbx-0-4"), None);
    assert_eq!(sbx_name_pid("sbx-12a-4"), None);
    assert_eq!(sbx_name_pid("sbx-12-"), None);
    assert_eq!(sbx_name_pid("sbx--1.supervisor"), None);
    assert_eq!(sbx_name_pid("sbx-test-1"), None);
    assert_eq!(sbx_name_pid("other"), None);
}
