//! The sandbox's filesystem: a read-only tmpfs root, read-only and writable binds, a minimal
//! /dev, a fresh /proc, tmpfs mounts, optional paths, the profile's dirs/symlinks/files, and
//! no host state left behind. Each claim is checked inside the sandbox and on the host.

mod common;

use std::path::Path;

use common::{Sbx, Workdir, bare, key_values, names_in, run_keep, tree_snapshot, unique_name};

/// Appends `-- sh -c SCRIPT` to `s`.
fn with_script(mut s: Sbx, script: &str) -> Sbx {
    s.cmd.args(["--", "sh", "-c", script]);
    s
}

#[test]
fn root_is_a_read_only_tmpfs() {
    let name = unique_name("rootfile");
    let r = common::sh(
        &[],
        &format!(
            "echo fstype=$(stat -f -c %T /); \
             if echo x > /{name}; then echo created=yes; else echo created=no; fi; \
             if [ -e /{name} ]; then echo exists=yes; else echo exists=no; fi"
        ),
    );
    assert_eq!(r.code, 0, "{r:?}");
    let m = key_values(&r.stdout);
    assert_eq!(m["fstype"], "tmpfs", "{r:?}");
    assert_eq!(m["created"], "no", "{r:?}");
    assert_eq!(m["exists"], "no", "{r:?}");
    assert!(r.stderr.contains("Read-only file system"), "{r:?}");
    assert!(!Path::new("/").join(&name).exists(), "created on the host");
}

#[test]
fn system_dirs_are_read_only() {
    let name = unique_name("sysfile");
    let r = common::sh(
        &[],
        &format!(
            "echo x > /usr/{name} && echo usr=written || echo usr=refused; \
             echo x > /etc/{name} && echo etc=written || echo etc=refused; \
             echo usr_visible=$(test -x /usr/bin/sh && echo yes)"
        ),
    );
    assert_eq!(r.code, 0, "{r:?}");
    let m = key_values(&r.stdout);
    assert_eq!(m["usr"], "refused", "{r:?}");
    assert_eq!(m["etc"], "refused", "{r:?}");
    assert_eq!(m["usr_visible"], "yes", "{r:?}");
    assert_eq!(
        r.stderr.matches("Read-only file system").count(),
        2,
        "both writes must fail with EROFS: {r:?}"
    );
    assert!(!Path::new("/usr").join(&name).exists());
    assert!(!Path::new("/etc").join(&name).exists());
}

#[test]
fn ro_bind_of_own_dir_refuses_writes() {
    let host = Workdir::new();
    let existing = host.file("existing.txt", "original\n");
    let sub = host.subdir("sub");
    std::fs::write(sub.join("inner"), "inner\n").unwrap();
    common::chown(&sub.join("inner"));
    let before = tree_snapshot(host.path());
    let d = host.path().display().to_string();
    let mut s = bare();
    s.cmd.args(["--ro-bind", &d]);
    let s = with_script(
        s,
        &format!(
            "echo content=$(cat {d}/existing.txt); \
             echo new > {d}/new.txt && echo create=ok || echo create=refused; \
             echo changed >> {d}/existing.txt && echo append=ok || echo append=refused; \
             rm -f {d}/sub/inner && echo rm=ok || echo rm=refused; \
             mkdir {d}/newdir && echo mkdir=ok || echo mkdir=refused"
        ),
    );
    let (r, _w) = run_keep(s);
    assert_eq!(r.code, 0, "{r:?}");
    let m = key_values(&r.stdout);
    assert_eq!(
        m["content"], "original",
        "the bind must show the host dir: {r:?}"
    );
    for k in ["create", "append", "rm", "mkdir"] {
        assert_eq!(m[k], "refused", "{k}: {r:?}");
    }
    assert!(r.stderr.contains("Read-only file system"), "{r:?}");
    assert_eq!(tree_snapshot(host.path()), before, "host dir changed");
    assert_eq!(std::fs::read_to_string(existing).unwrap(), "original\n");
}

/// The first mount of `/dev/shm` in the host's mount table, if it is a separate mount.
fn dev_shm_is_a_mount() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some("/dev/shm"))
}

#[test]
fn ro_bind_is_recursive_including_submounts() {
    const TEST: &str = "ro_bind_is_recursive_including_submounts";
    if !dev_shm_is_a_mount() {
        common::note_skip(TEST, "/dev/shm is not a separate mount");
        return;
    }
    let meta = match std::fs::metadata("/dev/shm") {
        Ok(m) => m,
        Err(e) => {
            common::note_skip(TEST, &format!("/dev/shm: {e}"));
            return;
        }
    };
    use std::os::unix::fs::MetadataExt;
    let writable = meta.mode() & 0o002 != 0 || meta.uid() == common::test_uid();
    if !meta.is_dir() || !writable {
        common::note_skip(TEST, "/dev/shm is not writable by the test uid");
        return;
    }
    let name = unique_name("shm");
    let host_file = Path::new("/dev/shm").join(&name);
    let r = common::sh(
        &["--ro-bind", "/dev:/hostdev"],
        &format!(
            "echo shmtype=$(stat -f -c %T /hostdev/shm); \
             echo x > /hostdev/shm/{name} && echo write=ok || echo write=refused"
        ),
    );
    let leaked = host_file.exists();
    let _ = std::fs::remove_file(&host_file);
    assert_eq!(r.code, 0, "{r:?}");
    let m = key_values(&r.stdout);
    // The submount itself must be what is visible, not the empty directory beneath it.
    assert_eq!(m["shmtype"], "tmpfs", "{r:?}");
    assert_eq!(m["write"], "refused", "{r:?}");
    assert!(r.stderr.contains("Read-only file system"), "{r:?}");
    assert!(!leaked, "{} was created on the host", host_file.display());
}

#[test]
fn cwd_is_bound_writable_by_default() {
    let mut s = bare();
    let w = s.work.path().canonicalize().unwrap();
    s.cmd.args([
        "--",
        "sh",
        "-c",
        "echo pwd=$(pwd); printf 'written inside\\n' > out.txt && echo write=ok",
    ]);
    let (r, work) = run_keep(s);
    assert_eq!(r.code, 0, "{r:?}");
    let m = key_values(&r.stdout);
    assert_eq!(m["pwd"], w.display().to_string(), "{r:?}");
    assert_eq!(m["write"], "ok", "{r:?}");
    let out = work.path().join("out.txt");
    assert_eq!(
        std::fs::read_to_string(&out).expect("out.txt on the host"),
        "written inside\n"
    );
}

#[test]
fn bind_makes_destination_writable_and_changes_land_on_host() {
    let host = Workdir::new();
    host.file("old.txt", "old\n");
    let mut s = bare();
    s.cmd
        .args(["--bind", &format!("{}:/data", host.path().display())]);
    let s = with_script(
        s,
        "echo old=$(cat /data/old.txt); \
         printf 'from the sandbox\\n' > /data/new.txt && echo write=ok; \
         rm /data/old.txt && echo rm=ok",
    );
    let (r, _w) = run_keep(s);
    assert_eq!(r.code, 0, "{r:?}");
    let m = key_values(&r.stdout);
    assert_eq!(m["old"], "old", "{r:?}");
    assert_eq!(m["write"], "ok", "{r:?}");
    assert_eq!(m["rm"], "ok", "{r:?}");
    assert_eq!(
        std::fs::read_to_string(host.path().join("new.txt")).unwrap(),
        "from the sandbox\n"
    );
    assert!(!host.path().join("old.txt").exists());
    assert!(
        !Path::new("/data/new.txt").exists(),
        "written to the host's /data"
    );
}

#[test]
fn unbound_paths_are_absent() {
    const TEST: &str = "unbound_paths_are_absent";
    let sibling = Workdir::new();
    std::fs::write(sibling.path().join("secret"), "s").unwrap();
    let mut candidates: Vec<String> = ["/home", "/root", "/srv", "/var/lib", "/boot", "/sys"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    candidates.push(sibling.path().display().to_string());
    let mut checked = Vec::new();
    for p in candidates {
        if Path::new(&p).exists() {
            checked.push(p);
        } else {
            common::note_skip(TEST, &format!("{p} does not exist on the host"));
        }
    }
    assert!(
        checked.len() >= 3,
        "too few host paths to check: {checked:?}"
    );
    let s = bare();
    let home = s.work.path().join("home");
    assert!(!home.starts_with("/home"), "harness HOME is under /home");
    let script = checked
        .iter()
        .map(|p| {
            format!("if [ -e {p} ] || [ -L {p} ]; then echo {p}=present; else echo {p}=absent; fi")
        })
        .collect::<Vec<_>>()
        .join("; ");
    let (r, _w) = run_keep(with_script(s, &script));
    assert_eq!(r.code, 0, "{r:?}");
    let m = key_values(&r.stdout);
    for p in &checked {
        assert_eq!(m.get(p).map(String::as_str), Some("absent"), "{p}: {r:?}");
    }
}

#[test]
fn dev_is_minimal() {
    const TEST: &str = "dev_is_minimal";
    let r = common::sh(
        &[],
        "echo list=$(ls -A /dev | sort | tr '\\n' ' '); \
         echo hello > /dev/null && echo nullwrite=ok; \
         echo nullread=$(wc -c < /dev/null); \
         echo zero=$(head -c 8 /dev/zero | od -An -tx1 | tr -d ' '); \
         echo pts=$(stat -f -c %T /dev/pts); \
         if command -v python3 >/dev/null 2>&1; then \
           echo pty=$(python3 -c 'import os; m, s = os.openpty(); print(os.ttyname(s))'); \
         else echo pty=NOPYTHON; fi",
    );
    assert_eq!(r.code, 0, "{r:?}");
    let m = key_values(&r.stdout);
    let mut got: Vec<&str> = m["list"].split_whitespace().collect();
    got.sort();
    let mut want = vec![
        "null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm", "fd", "stdin",
        "stdout", "stderr",
    ];
    want.sort();
    assert_eq!(got, want, "{r:?}");
    assert_eq!(m["nullwrite"], "ok", "{r:?}");
    assert_eq!(m["nullread"], "0", "{r:?}");
    assert_eq!(m["zero"], "0000000000000000", "{r:?}");
    assert_eq!(m["pts"], "devpts", "{r:?}");
    if m["pty"] == "NOPYTHON" {
        common::note_skip(TEST, "no python3 in the sandbox to open a pty");
    } else {
        assert!(m["pty"].starts_with("/dev/pts/"), "openpty failed: {r:?}");
    }
}

#[test]
fn proc_is_fresh() {
    let host_init = std::fs::read("/proc/1/cmdline").unwrap();
    // The process list is read with shell builtins only, so that no short-lived helper
    // processes show up: only sbx's init (PID 1) and this shell should be there.
    let r = common::sh(
        &[],
        "procs=''; for p in /proc/[0-9]*; do read -r c < $p/comm; procs=\"$procs ${p#/proc/}:$c\"; done; \
         echo procs=$procs; \
         echo fstype=$(stat -f -c %T /proc); \
         echo init=$(tr '\\0' ' ' < /proc/1/cmdline)",
    );
    assert_eq!(r.code, 0, "{r:?}");
    let m = key_values(&r.stdout);
    assert_eq!(m["fstype"], "proc", "{r:?}");
    let procs: Vec<(u32, String)> = m["procs"]
        .split_whitespace()
        .map(|e| {
            let (pid, comm) = e.split_once(':').unwrap();
            (pid.parse().unwrap(), comm.to_string())
        })
        .collect();
    assert!(
        procs.contains(&(1, "sbx".to_string())),
        "PID 1 is not sbx's init: {r:?}"
    );
    assert!(
        procs.len() <= 2 && procs.iter().all(|(pid, c)| *pid == 1 || c == "sh"),
        "processes other than the sandbox's are visible: {procs:?}"
    );
    let init = &m["init"];
    let argv0 = init.split_whitespace().next().unwrap_or("");
    assert_eq!(
        argv0,
        common::binary().display().to_string(),
        "PID 1 is not sbx's init: {r:?}"
    );
    let host_init = String::from_utf8_lossy(&host_init).replace('\0', " ");
    assert_ne!(init.trim(), host_init.trim(), "PID 1 is the host's init");
}

#[test]
fn tmpfs_option_gives_empty_writable_dir() {
    let r = common::sh(
        &["--tmpfs", "/scratch"],
        "echo fstype=$(stat -f -c %T /scratch); \
         echo entries=$(ls -A /scratch | wc -l); \
         echo data > /scratch/f && echo content=$(cat /scratch/f)",
    );
    assert_eq!(r.code, 0, "{r:?}");
    let m = key_values(&r.stdout);
    assert_eq!(m["fstype"], "tmpfs", "{r:?}");
    assert_eq!(m["entries"], "0", "{r:?}");
    assert_eq!(m["content"], "data", "{r:?}");
    assert!(!Path::new("/scratch").exists(), "created on the host");
}

#[test]
fn tmp_is_private() {
    let marker = tempfile::Builder::new()
        .prefix("sbx-test-marker-")
        .tempfile_in("/tmp")
        .unwrap();
    let marker_path = marker.path().display().to_string();
    let s = bare();
    let work_name = s.work.name();
    let script = format!(
        "echo fstype=$(stat -f -c %T /tmp); \
         echo entries=$(ls -A /tmp | tr '\\n' ' '); \
         if [ -e {marker_path} ]; then echo marker=visible; else echo marker=hidden; fi; \
         echo inside > /tmp/{work_name}-inside && echo write=ok"
    );
    let (r, _w) = run_keep(with_script(s, &script));
    assert_eq!(r.code, 0, "{r:?}");
    let m = key_values(&r.stdout);
    assert_eq!(m["fstype"], "tmpfs", "{r:?}");
    // The harness's work dir lives in /tmp; its mount point is the only entry.
    assert_eq!(m["entries"].trim(), work_name, "{r:?}");
    assert_eq!(m["marker"], "hidden", "{r:?}");
    assert_eq!(m["write"], "ok", "{r:?}");
    assert!(
        !Path::new("/tmp")
            .join(format!("{work_name}-inside"))
            .exists(),
        "a write to /tmp inside reached the host"
    );
    assert!(marker.path().exists());
}

#[test]
fn optional_paths_are_skipped_and_mandatory_ones_fail() {
    let mut s = bare();
    let prof = s.work.file(
        "opt.toml",
        "extends = [\"default\"]\n[filesystem]\nro = [\"/nonexistent-sbx-test?\"]\n",
    );
    s.cmd.arg("--profile").arg(&prof);
    let (r, _w) = run_keep(with_script(
        s,
        "if [ -e /nonexistent-sbx-test ]; then echo p=present; else echo p=absent; fi",
    ));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(key_values(&r.stdout)["p"], "absent", "{r:?}");

    let mut s = bare();
    let prof = s.work.file(
        "mandatory.toml",
        "extends = [\"default\"]\n[filesystem]\nro = [\"/nonexistent-sbx-test\"]\n",
    );
    let ran = s.work.path().join("ran");
    s.cmd
        .arg("--profile")
        .arg(&prof)
        .arg("--")
        .arg("touch")
        .arg(&ran);
    let (r, _w) = run_keep(s);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(
        r.stderr.contains(&prof.display().to_string()),
        "profile not named: {r:?}"
    );
    assert!(r.stderr.contains("filesystem.ro"), "key not named: {r:?}");
    assert!(
        r.stderr.contains("/nonexistent-sbx-test"),
        "path not named: {r:?}"
    );
    assert!(!ran.exists(), "the command ran");
}

#[test]
fn merged_usr_symlinks() {
    let r = common::sh(
        &[],
        "echo bin=$(readlink /bin); echo lib=$(readlink /lib); \
         echo sh=$(test -x /bin/sh && echo ok)",
    );
    assert_eq!(r.code, 0, "{r:?}");
    let m = key_values(&r.stdout);
    assert_eq!(m["bin"], "usr/bin", "{r:?}");
    assert_eq!(m["lib"], "usr/lib", "{r:?}");
    assert_eq!(m["sh"], "ok", "{r:?}");
}

#[test]
fn profile_dirs_symlinks_and_files() {
    let mut s = bare();
    let prof = s.work.file(
        "layout.toml",
        "extends = [\"default\"]\n\
         [filesystem]\n\
         dirs = [\"/sbxdir/sub\"]\n\
         symlinks = { \"/sbxlink\" = \"/sbxdir/sub\" }\n\
         files = { \"/opt2/f\" = \"content\" }\n",
    );
    s.cmd.arg("--profile").arg(&prof);
    let (r, _w) = run_keep(with_script(
        s,
        "echo dir=$(test -d /sbxdir/sub && echo yes); \
         echo link=$(readlink /sbxlink); \
         echo linkdir=$(test -d /sbxlink && echo yes); \
         echo file=$(cat /opt2/f)",
    ));
    assert_eq!(r.code, 0, "{r:?}");
    let m = key_values(&r.stdout);
    assert_eq!(m["dir"], "yes", "{r:?}");
    assert_eq!(m["link"], "/sbxdir/sub", "{r:?}");
    assert_eq!(m["linkdir"], "yes", "{r:?}");
    assert_eq!(m["file"], "content", "{r:?}");
    for p in ["/sbxdir", "/sbxlink", "/opt2"] {
        assert!(
            std::fs::symlink_metadata(p).is_err(),
            "{p} was created on the host"
        );
    }
}

#[test]
fn profile_file_inside_read_only_bind_is_refused() {
    let mut s = bare();
    let prof = s.work.file(
        "usrfile.toml",
        "extends = [\"default\"]\n[filesystem]\nfiles = { \"/usr/sbx-test-file\" = \"x\" }\n",
    );
    let ran = s.work.path().join("ran");
    s.cmd
        .arg("--profile")
        .arg(&prof)
        .arg("--")
        .arg("touch")
        .arg(&ran);
    let (r, _w) = run_keep(s);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("/usr/sbx-test-file"), "{r:?}");
    assert!(r.stderr.contains("filesystem.files"), "{r:?}");
    assert!(!ran.exists(), "the command ran");
    assert!(
        !Path::new("/usr/sbx-test-file").exists(),
        "created on the host"
    );
}

#[test]
fn no_host_state_left_behind() {
    let mountinfo = || std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let s = bare();
    let work = s.work.path().to_path_buf();
    let home = work.join("home");
    let entries_before = names_in(&work);
    let mounts_before = mountinfo();
    let (r, _w) = run_keep(with_script(
        s,
        "echo a > /tmp/a && echo b > \"$HOME/b\" && mkdir /tmp/d && echo done=yes",
    ));
    let mounts_after = mountinfo();
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(key_values(&r.stdout)["done"], "yes", "{r:?}");
    assert_eq!(
        mounts_before.lines().count(),
        mounts_after.lines().count(),
        "host mount table changed:\nbefore:\n{mounts_before}\nafter:\n{mounts_after}"
    );
    assert_eq!(
        names_in(&work),
        entries_before,
        "new entries in TMPDIR (the work dir)"
    );
    assert!(
        names_in(&home).is_empty(),
        "a write to $HOME (a tmpfs) reached the host"
    );
}
