//! `sbx learn` (issue #17): a command run under a permissive view of its base profile, the
//! paths it used recorded, and a profile written that extends the base and grants them; run
//! under that profile the command works, and what it did not use stays out of reach.
//! The real-tool round trips (attrs' test suite, cargo) are in `learn_real.rs`.

mod common;

use std::path::{Path, PathBuf};

use common::{Ran, Workdir, run_keep};

/// A directory outside /tmp (which every sandbox replaces with its own) owned by the test
/// uid: the host data a learned profile must grant.
pub struct HostDir(tempfile::TempDir);

impl HostDir {
    fn new() -> HostDir {
        let d = tempfile::Builder::new()
            .prefix("sbx-learn-test-")
            .tempdir_in("/var/cache")
            .or_else(|_| {
                tempfile::Builder::new()
                    .prefix("sbx-learn-test-")
                    .tempdir_in("/var/tmp")
            })
            .unwrap();
        common::chown(d.path());
        std::fs::set_permissions(
            d.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        HostDir(d)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn file(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path().join(name);
        let mut dir = p.parent().unwrap().to_path_buf();
        let mut made = Vec::new();
        while !dir.exists() {
            made.push(dir.clone());
            dir = dir.parent().unwrap().to_path_buf();
        }
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        for d in made {
            common::chown(&d);
        }
        std::fs::write(&p, content).unwrap();
        common::chown(&p);
        p
    }
}

/// `sbx ARGS...` from work directory `w`, with HOME at `home`.
fn sbx_in(w: &Workdir, home: &Path, args: &[&str]) -> Ran {
    let mut s = common::sbx(args);
    s.cmd.current_dir(w.path()).env("HOME", home);
    run_keep(s).0
}

#[test]
fn a_learned_profile_grants_what_the_command_used_and_nothing_else() {
    let host = HostDir::new();
    let home = host.path().join("home");
    host.file("home/.config/tool/settings", "colour=no\n");
    host.file("data/lib/a.txt", "alpha\n");
    host.file("data/lib/b.txt", "beta\n");
    host.file("data/other/c.txt", "gamma\n");
    host.file("data/out/.keep", "");
    let d = host.path().join("data").display().to_string();
    let w = Workdir::new();
    let script = format!(
        "cat {d}/lib/a.txt {d}/lib/b.txt \"$HOME/.config/tool/settings\" && \
         (echo result > {d}/out/result) 2>/dev/null; exit 0"
    );
    let learned = w.path().join("learned.toml");
    let learned_s = learned.display().to_string();
    let r = sbx_in(
        &w,
        &home,
        &[
            "learn", "-p", "strict", "-o", &learned_s, "--", "sh", "-c", &script,
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("alpha\nbeta\ncolour=no"),
        "the learning run reads the host: {r:?}"
    );
    assert!(
        !Path::new(&format!("{d}/out/result")).exists(),
        "the learning run wrote where its base does not allow"
    );
    let text = std::fs::read_to_string(&learned).expect("the profile was written");
    assert!(text.contains("extends = [\"strict\"]"), "{text}");
    assert!(
        text.contains(&format!("\"{d}/lib\",")),
        "a directory once: {text}"
    );
    assert!(!text.contains("a.txt\","), "not file by file: {text}");
    assert!(
        text.contains("\"${HOME}/.config/tool/settings\","),
        "home written as ${{HOME}}: {text}"
    );
    assert!(
        text.contains(&format!(
            "rw = [\n  # created 1 path (e.g. result)\n  \"{d}/out\","
        )),
        "{text}"
    );
    assert!(
        text.contains("# files read: 2 (e.g. a.txt, b.txt)"),
        "a comment per entry: {text}"
    );
    assert!(
        !text.contains("/usr"),
        "what the base gives is not repeated: {text}"
    );
    assert!(!text.contains("/other"), "nothing unused: {text}");
    assert!(
        r.stderr
            .contains("learned 2 read-only and 1 writable entries and 0 destinations"),
        "{r:?}"
    );

    let check = sbx_in(&w, &home, &["profile", "check", &learned_s]);
    assert_eq!(check.code, 0, "the learned profile loads: {check:?}");
    // Under the learned profile the command runs whole, and its write reaches the host.
    let strict_script = script.replace(" 2>/dev/null; exit 0", "");
    let r = sbx_in(
        &w,
        &home,
        &["-p", &learned_s, "--", "sh", "-c", &strict_script],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        std::fs::read_to_string(format!("{d}/out/result")).unwrap(),
        "result\n"
    );
    // What the run did not use stays out of reach, though the host has it.
    let r = sbx_in(
        &w,
        &home,
        &["-p", &learned_s, "--", "cat", &format!("{d}/other/c.txt")],
    );
    assert_ne!(r.code, 0, "an unlearned path is readable: {r:?}");
    assert!(r.stderr.contains("No such file"), "{r:?}");
    // And under the base alone, the command fails: the profile is what made it work.
    let r = sbx_in(
        &w,
        &home,
        &["-p", "strict", "--", "sh", "-c", &strict_script],
    );
    assert_ne!(r.code, 0, "the base alone runs it: {r:?}");
}

#[test]
fn learn_without_a_command_or_with_a_bad_output_fails_before_running() {
    let w = Workdir::new();
    let home = w.subdir("home");
    let r = sbx_in(&w, &home, &["learn"]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("no command given"), "{r:?}");
    let marker = w.path().join("ran");
    let marker_s = marker.display().to_string();
    let r = sbx_in(
        &w,
        &home,
        &[
            "learn",
            "-o",
            "/nonexistent-dir/p.toml",
            "--",
            "touch",
            &marker_s,
        ],
    );
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("/nonexistent-dir"), "{r:?}");
    assert!(!marker.exists(), "the command ran before the error");
    for option in [
        &["--explain"][..],
        &["--json-status", "-"],
        &["--changes", "-"],
    ] {
        let mut args = vec!["learn"];
        args.extend_from_slice(option);
        args.extend(["--", "touch", &marker_s]);
        let r = sbx_in(&w, &home, &args);
        assert_eq!(r.code, 125, "{option:?}: {r:?}");
        assert!(r.stderr.contains("sbx learn does not take"), "{r:?}");
        assert!(!marker.exists(), "the command ran before the error");
    }
    let r = sbx_in(
        &w,
        &home,
        &["learn", "-p", "no-such-profile", "--", "touch", &marker_s],
    );
    assert_eq!(r.code, 125, "{r:?}");
    assert!(!marker.exists(), "the command ran before the error");
}

#[test]
fn learn_help_states_its_limits() {
    let r = common::sbx(["learn", "--help"]).run();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("another branch"), "{r:?}");
    assert!(
        r.stdout.contains("Environment variables are not observed"),
        "{r:?}"
    );
}

#[test]
fn learn_records_destinations_by_name_and_narrows_the_internet_to_them() {
    use common::netlab::Lab;
    let test = "learn_records_destinations_by_name_and_narrows_the_internet_to_them";
    let Some(lab) = Lab::start(test) else {
        return;
    };
    let curl = ["curl", "-sS", "--max-time", "10"];
    let mut args = vec!["learn", "--net", "on", "--"];
    args.extend(curl);
    args.push("http://allowed.test/");
    let r = lab.run_sbx(&args);
    assert_eq!(r.code, 0, "{r:?}");
    let (said, text) = r
        .stdout
        .split_at(r.stdout.find("# Learned").expect("a profile"));
    assert_eq!(said, "public", "{r:?}");
    assert!(text.contains("\n[network]\n"), "{text}");
    assert!(
        text.contains("mode = \"proxy\"\n"),
        "the internet narrowed: {text}"
    );
    assert!(
        text.contains("allow = [\"allowed.test:80\"]"),
        "by name: {text}"
    );
    assert!(r.stderr.contains("and 1 destinations"), "{r:?}");

    let w = Workdir::new();
    let learned = w.file("learned.toml", text);
    let learned = learned.display().to_string();
    let mut args = vec!["-p", &learned, "--"];
    args.extend(curl);
    let mut allowed = args.clone();
    allowed.push("http://allowed.test/");
    let r = lab.run_sbx(&allowed);
    assert_eq!((r.code, r.stdout.as_str()), (0, "public"), "{r:?}");
    // A destination the run did not reach is refused, though the internet has it.
    let mut other = args.clone();
    other.push("http://other.test/");
    let r = lab.run_sbx(&other);
    assert!(!r.stdout.contains("public2"), "{r:?}");
    assert!(
        r.stdout.contains("other.test:80 is not in the allowlist"),
        "{r:?}"
    );
    let mut args = vec!["learn", "--"];
    args.extend(curl);
    args.push("http://allowed.test/");
    let r = lab.run_sbx(&args);
    assert_ne!(
        r.code, 0,
        "no network in the base, none while learning: {r:?}"
    );
    assert!(!r.stdout.contains("[network]"), "{r:?}");
}

#[test]
fn the_learning_run_keeps_credentials_hidden_runtime_dirs_out_and_the_host_unwritten() {
    let host = HostDir::new();
    let home = host.path().join("home");
    host.file("home/.ssh/id_rsa", "PRIVATE KEY\n");
    host.file("home/notes.txt", "notes\n");
    host.file("data/file.txt", "original\n");
    let d = host.path().join("data").display().to_string();
    let w = Workdir::new();
    let secret = home.join(".ssh/id_rsa").display().to_string();
    // Controls: the host has them, and the learning run sees the rest of $HOME.
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "PRIVATE KEY\n");
    let script = format!(
        "cat \"$HOME/notes.txt\"; cat {secret} 2>&1; ls /run 2>&1 | head -3; \
         echo changed > {d}/file.txt 2>&1; echo new > \"$HOME/planted\"; echo done"
    );
    let r = sbx_in(&w, &home, &["learn", "--", "sh", "-c", &script]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.starts_with("notes\n"),
        "$HOME shows the host's files: {r:?}"
    );
    assert!(
        !r.stdout.contains("PRIVATE KEY"),
        "a hidden credential was read: {r:?}"
    );
    let said = &r.stdout[..r.stdout.find("# Learned").expect("a profile")];
    assert!(
        said.contains("ls: cannot access '/run'"),
        "the host's /run is shown: {r:?}"
    );
    assert!(r.stderr.contains("Read-only file system"), "{r:?}");
    assert!(r.stdout.contains("done"), "{r:?}");
    assert_eq!(
        std::fs::read_to_string(format!("{d}/file.txt")).unwrap(),
        "original\n"
    );
    assert!(
        !home.join("planted").exists(),
        "a write in the overlaid $HOME reached the host"
    );
    let (_, text) = r
        .stdout
        .split_at(r.stdout.find("# Learned").expect("a profile"));
    assert!(
        !text.contains("\"${HOME}/.ssh"),
        "a hidden credential granted: {text}"
    );
    assert!(
        text.contains("#   ${HOME}/.ssh/id_rsa (used): hidden by the base's filesystem.hide"),
        "{text}"
    );
    assert!(
        text.contains(&format!("# wrote 1 file\n  \"{d}/file.txt\",")),
        "the refused write is learned, the file alone: {text}"
    );
}
