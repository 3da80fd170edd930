//! The workspace is not a way out (`filesystem.protect`). Untrusted code run in a checkout
//! cannot plant what the host's own tools run later:
//!
//! 1. git config and hooks: every way to make host git run a command (core.fsmonitor,
//!    core.hooksPath, core.sshCommand, core.pager, an alias, credential.helper, a clean filter,
//!    a hook, .git/info/attributes) fails inside, and the host's `git status`, `git commit`
//!    and `git checkout` afterwards run nothing. Control: with the protection lifted, the same
//!    plant does run on the host, so the test can tell.
//! 2. Paths that do not exist yet (.envrc, .vscode, .idea, .devcontainer, .gitmodules, .git in
//!    a directory that is no repository): creating one ends the run (137, protected_path) and
//!    what appeared is moved aside, so nothing on the host finds it under its name.
//! 3. `--git-writes` lets git inside commit, while config and hooks stay protected.
//! 4. A core.hooksPath inside the tree (husky's .husky) is protected too.
//! 5. `--explain` lists the protected paths; a kept overlay's `sbx changes` marks them and
//!    `sbx apply` refuses them unless told `--protected`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{AsTestUid, Ran, Workdir, read_report, run_keep};

/// Runs host git as the test uid in `dir`, with a home of its own and no system config.
fn host_git(dir: &Path, home: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .as_test_uid()
        .output()
        .expect("run git")
}

fn git_ok(dir: &Path, home: &Path, args: &[&str]) {
    let o = host_git(dir, home, args);
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A work directory that is a git repository with one commit, and a marker directory
/// (outside it) where a planted command would leave a file.
struct Repo {
    work: Workdir,
    home: PathBuf,
    marks: PathBuf,
}

impl Repo {
    fn new() -> Repo {
        let work = Workdir::new();
        let home = work.subdir("home");
        let marks = work.subdir("marks");
        let repo = work.subdir("repo");
        git_ok(&repo, &home, &["init", "-q", "-b", "main"]);
        std::fs::write(repo.join("a.txt"), "a\n").unwrap();
        common::chown(&repo.join("a.txt"));
        git_ok(&repo, &home, &["add", "a.txt"]);
        git_ok(&repo, &home, &["commit", "-q", "-m", "one"]);
        Repo { work, home, marks }
    }

    fn dir(&self) -> PathBuf {
        self.work.path().join("repo")
    }

    /// Runs `sbx ARGS -- sh -c SCRIPT` in the repository, $MARKS naming the marker directory.
    fn sbx(&self, args: &[&str], script: &str) -> (Ran, serde_json::Value) {
        let report = self.work.path().join("report.json");
        let mut s = common::sbx(args);
        s.cmd
            .current_dir(self.dir())
            .env("MARKS", &self.marks)
            .arg("--json-status")
            .arg(&report)
            .args(["--", "sh", "-c", script]);
        let (r, _w) = run_keep(s);
        let rep = read_report(&report, &r);
        (r, rep)
    }

    fn marks(&self) -> Vec<String> {
        common::names_in(&self.marks).into_iter().collect()
    }

    /// The host's own git, the way a user goes on after the run.
    fn use_on_host(&self) {
        let d = self.dir();
        let _ = host_git(&d, &self.home, &["status"]);
        let _ = host_git(&d, &self.home, &["add", "-A"]);
        let _ = host_git(
            &d,
            &self.home,
            &["commit", "-q", "--allow-empty", "-m", "two"],
        );
        let _ = host_git(&d, &self.home, &["checkout", "-q", "-b", "other"]);
        let _ = host_git(&d, &self.home, &["log", "-1"]);
        let _ = host_git(&d, &self.home, &["st"]);
    }
}

/// Every way the plant below would make host git run `touch $MARKS/NAME`.
const PLANT: &str = r##"
m() { printf 'touch %s/%s' "$MARKS" "$1"; }
try() { name=$1; shift; if "$@" 2>/dev/null; then echo "$name=planted"; else echo "$name=refused"; fi; }
hook() { printf '#!/bin/sh\n%s\n' "$(m "$2")" > ".git/hooks/$1" && chmod +x ".git/hooks/$1"; }
attributes() { echo '* filter=evil' > .git/info/attributes; }
try fsmonitor git config core.fsmonitor "$(m fsmonitor)"
try sshcommand git config core.sshCommand "$(m ssh)"
try pager git config core.pager "$(m pager)"
try alias git config alias.st "!$(m alias)"
try credential git config credential.helper "!$(m credential)"
try filter git config filter.evil.clean "$(m filter)"
try hookspath git config core.hooksPath "$PWD/myhooks"
mkdir -p myhooks && printf '#!/bin/sh\n%s\n' "$(m hookspath)" > myhooks/pre-commit && chmod +x myhooks/pre-commit
try hook hook pre-commit hook
try checkouthook hook post-checkout checkout
try attributes attributes
echo '* filter=evil' > .gitattributes
"##;

#[test]
fn git_config_and_hooks_cannot_be_planted() {
    if !common::usable("git") {
        common::note_skip(
            "git_config_and_hooks_cannot_be_planted",
            "no git on this host",
        );
        return;
    }
    let repo = Repo::new();
    let before = common::tree_snapshot(&repo.dir().join(".git"));
    let (r, _rep) = repo.sbx(&[], PLANT);
    assert_eq!(r.code, 0, "{r:?}");
    for name in [
        "fsmonitor",
        "sshcommand",
        "pager",
        "alias",
        "credential",
        "filter",
        "hookspath",
        "hook",
        "checkouthook",
        "attributes",
    ] {
        assert!(
            r.stdout.contains(&format!("{name}=refused\n")),
            "{name} was planted: {r:?}"
        );
    }
    assert_eq!(
        common::tree_snapshot(&repo.dir().join(".git")),
        before,
        ".git changed: {r:?}"
    );
    repo.use_on_host();
    assert_eq!(repo.marks(), Vec::<String>::new(), "the host ran a plant");
}

#[test]
fn control_with_git_unprotected_the_plant_runs_on_the_host() {
    if !common::usable("git") {
        common::note_skip("control_with_git_unprotected", "no git on this host");
        return;
    }
    let repo = Repo::new();
    let (r, _rep) = repo.sbx(
        &[
            "--git-writes",
            "--protect",
            "!.git/config",
            "--protect",
            "!.git/hooks",
            "--protect",
            "!.git/info",
        ],
        PLANT,
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("fsmonitor=planted\n"), "{r:?}");
    repo.use_on_host();
    let marks = repo.marks();
    assert!(
        marks.iter().any(|m| m == "fsmonitor"),
        "the control plant did not run on the host, so the test could not tell: {marks:?}"
    );
}

/// Creates `path` (and its parents) inside and waits: the run must end at once.
fn plant_absent(path: &str) -> (Ran, serde_json::Value, Repo) {
    let repo = Repo::new();
    let script = format!(
        "mkdir -p \"$(dirname '{path}')\" && echo planted > '{path}' && sleep 20; echo survived"
    );
    let (r, rep) = repo.sbx(&[], &script);
    (r, rep, repo)
}

#[test]
fn absent_protected_paths_cannot_be_created() {
    for path in [
        ".envrc",
        ".vscode/tasks.json",
        ".vscode/settings.json",
        ".idea/workspace.xml",
        ".devcontainer/devcontainer.json",
        ".gitmodules",
    ] {
        let (r, rep, repo) = plant_absent(path);
        assert_eq!(r.code, 137, "{path}: {r:?}");
        assert!(!r.stdout.contains("survived"), "{path}: {r:?}");
        assert_eq!(rep["reason"], "protected_path", "{path}: {rep}");
        let top = path.split('/').next().unwrap();
        assert!(
            std::fs::symlink_metadata(repo.dir().join(top)).is_err(),
            "{top} is on the host under its name after {path}: {r:?}"
        );
        let created = rep["protect"]["created"].as_array().unwrap();
        let moved = created[0]["moved_to"].as_str().unwrap_or_default();
        assert!(
            moved.contains(".sbx-refused-") && Path::new(moved).exists(),
            "{path}: not moved aside: {rep}"
        );
        assert!(r.stderr.contains("protected path"), "{path}: {r:?}");
        repo.use_on_host();
        assert_eq!(repo.marks(), Vec::<String>::new(), "{path}");
    }
    if common::usable("direnv") {
        // direnv asks before it runs an .envrc; the point is there is none to ask about.
        let (_r, _rep, repo) = plant_absent(".envrc");
        let o = Command::new("direnv")
            .arg("status")
            .current_dir(repo.dir())
            .as_test_uid()
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("No .envrc"), "{out}");
    } else {
        common::note_skip(
            "absent_protected_paths_cannot_be_created",
            "no direnv: its check skipped",
        );
    }
}

#[test]
fn a_new_repository_cannot_be_made_where_there_is_none() {
    let work = Workdir::new();
    let marks = work.subdir("marks");
    let dir = work.subdir("plain");
    let mut s = common::sbx(["--", "sh", "-c", "mkdir .git; sleep 20"]);
    s.cmd.current_dir(&dir);
    let (r, _w) = run_keep(s);
    assert_eq!(r.code, 137, "{r:?}");
    assert!(
        std::fs::symlink_metadata(dir.join(".git")).is_err(),
        "{r:?}"
    );
    if common::usable("git") {
        let o = host_git(&dir, &work.path().join("home"), &["status"]);
        assert!(!o.status.success(), "host git found a repository: {o:?}");
    }
    assert!(common::names_in(&marks).is_empty());
}

#[test]
fn git_writes_lets_git_commit_inside_and_keeps_config_and_hooks() {
    if !common::usable("git") {
        common::note_skip("git_writes_lets_git_commit_inside", "no git on this host");
        return;
    }
    let repo = Repo::new();
    let script = r#"
        export GIT_AUTHOR_NAME=s GIT_AUTHOR_EMAIL=s@example.invalid GIT_COMMITTER_NAME=s GIT_COMMITTER_EMAIL=s@example.invalid
        echo b > b.txt && git add b.txt && git commit -q -m inside && echo committed
        git config core.fsmonitor "touch $MARKS/x" 2>/dev/null && echo config=planted || echo config=refused
        echo x > .git/hooks/pre-commit 2>/dev/null && echo hook=planted || echo hook=refused
    "#;
    let (r, _rep) = repo.sbx(&["--git-writes"], script);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("committed\n"), "{r:?}");
    assert!(r.stdout.contains("config=refused\n"), "{r:?}");
    assert!(r.stdout.contains("hook=refused\n"), "{r:?}");
    let log = host_git(&repo.dir(), &repo.home, &["log", "--format=%s"]);
    assert_eq!(String::from_utf8_lossy(&log.stdout), "inside\none\n");
    // A file git would follow to another repository's config ends the run.
    let (r, rep) = repo.sbx(&["--git-writes"], "echo ../evil > .git/commondir; sleep 20");
    assert_eq!(r.code, 137, "{r:?}");
    assert_eq!(rep["reason"], "protected_path", "{rep}");
    assert!(!repo.dir().join(".git/commondir").exists());
}

#[test]
fn a_hooks_path_inside_the_tree_is_protected() {
    if !common::usable("git") {
        common::note_skip(
            "a_hooks_path_inside_the_tree_is_protected",
            "no git on this host",
        );
        return;
    }
    let repo = Repo::new();
    let hooks = repo.dir().join(".husky");
    std::fs::create_dir(&hooks).unwrap();
    std::fs::write(hooks.join("pre-commit"), "#!/bin/sh\nexit 0\n").unwrap();
    common::chown(&hooks);
    common::chown(&hooks.join("pre-commit"));
    git_ok(
        &repo.dir(),
        &repo.home,
        &["config", "core.hooksPath", ".husky"],
    );
    let (r, rep) = repo.sbx(
        &[],
        "echo 'touch $MARKS/husky' >> .husky/pre-commit 2>/dev/null && echo planted || echo refused",
    );
    assert_eq!(r.stdout, "refused\n", "{r:?}");
    let ro = rep["protect"]["read_only"].to_string();
    assert!(ro.contains(".husky"), "{rep}");
}

#[test]
fn explain_changes_and_apply_know_the_protected_paths() {
    let repo = Repo::new();
    let mut s = common::sbx(["--explain", "--", "true"]);
    s.cmd.current_dir(repo.dir());
    let (r, _w) = run_keep(s);
    assert_eq!(r.code, 0, "{r:?}");
    let dir = common::canonical(&repo.dir());
    assert!(
        r.stdout.contains(&format!("  {dir}/.git read-only")),
        "{r:?}"
    );
    assert!(
        r.stdout
            .contains(&format!("  {dir}/.envrc absent: creating it ends the run")),
        "{r:?}"
    );

    // In an overlay nothing reaches the host; what the layer holds is marked, and kept out.
    let kept = repo.work.path().join("kept");
    let (r, _rep) = repo.sbx(
        &[
            "--overlay",
            &dir,
            "--keep-changes",
            &kept.display().to_string(),
        ],
        "echo x > .envrc && echo y > ok.txt",
    );
    assert_eq!(r.code, 0, "{r:?}");
    let changes = common::sbx(["changes", &kept.display().to_string()]).run();
    assert!(
        changes.stdout.contains(".envrc  [protected]"),
        "{changes:?}"
    );
    assert!(
        !changes.stdout.contains("ok.txt  [protected]"),
        "{changes:?}"
    );
    let apply = common::sbx(["apply", &kept.display().to_string()]).run();
    assert_eq!(apply.code, 125, "{apply:?}");
    assert!(apply.stderr.contains(".envrc"), "{apply:?}");
    assert!(apply.stderr.contains("--protected"), "{apply:?}");
    assert!(!repo.dir().join(".envrc").exists() && !repo.dir().join("ok.txt").exists());
    let apply = common::sbx(["apply", "--protected", &kept.display().to_string()]).run();
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(repo.dir().join(".envrc").exists() && repo.dir().join("ok.txt").exists());
}

/// Runs `script` in the repository while a host thread renames two files in it without pause,
/// and init (the sandbox's watcher) is stopped for 300 ms meanwhile, so that its inotify queue
/// overflows for certain. Returns the run, its report, and the rounds of renames.
fn run_in_a_storm(repo: &Repo, script: &str) -> (Ran, serde_json::Value, u64) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let dir = repo.dir();
    for n in ["x", "y"] {
        std::fs::write(dir.join(n), n).unwrap();
    }
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let swaps = std::sync::Arc::new(AtomicU64::new(0));
    let storm = {
        let (stop, swaps, dir) = (stop.clone(), swaps.clone(), dir.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = std::fs::rename(dir.join("x"), dir.join("z"));
                let _ = std::fs::rename(dir.join("y"), dir.join("x"));
                let _ = std::fs::rename(dir.join("z"), dir.join("y"));
                swaps.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let report = repo.work.path().join("storm-report.json");
    let mut s = common::sbx(["--json-status".as_ref(), report.as_os_str()]);
    s.cmd.current_dir(&dir).args(["--", "sh", "-c", script]);
    let (child, _w) = s.spawn();
    let child = common::Running::new(child);
    // init is sbx's child; it starts watching once the root is built.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let init = loop {
        if let Some(p) = common::children_of(child.id() as i32).first() {
            break *p;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sbx started no sandbox"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    std::thread::sleep(std::time::Duration::from_millis(100));
    use nix::sys::signal::{Signal, kill};
    let init = nix::unistd::Pid::from_raw(init);
    kill(init, Signal::SIGSTOP).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    kill(init, Signal::SIGCONT).unwrap();
    let out = Ran::from_output(child.into_child().wait_with_output().unwrap());
    stop.store(true, Ordering::Relaxed);
    storm.join().unwrap();
    let rep = read_report(&report, &out);
    (out, rep, swaps.load(Ordering::Relaxed))
}

/// A storm of renames in the workspace by a host process (a build tool, an editor) overflows
/// init's watch queue; the lost events are not taken for a planted path: init looks at the
/// guarded names themselves. Control, in the same storm: a planted `.envrc` still ends the run.
#[test]
fn a_storm_of_events_in_the_workspace_is_not_a_planted_path() {
    let repo = Repo::new();
    let (quiet, quiet_rep, swaps) = run_in_a_storm(&repo, "sleep 1; echo survived");
    eprintln!("workspace storm: {swaps} rounds of renames during the run");
    assert!(swaps > 10_000, "no storm: {swaps} rounds");
    assert_eq!(quiet.code, 0, "{quiet:?} {quiet_rep}");
    assert!(quiet.stdout.contains("survived"), "{quiet:?}");
    let (planted, planted_rep, _) =
        run_in_a_storm(&repo, "sleep 0.2; echo x > .envrc; sleep 5; echo survived");
    assert_eq!(planted.code, 137, "{planted:?}");
    assert_eq!(planted_rep["reason"], "protected_path", "{planted_rep}");
}

/// A worktree's or a submodule's `.git` is a file naming the real repository: it exists, so
/// the run goes on (it was once taken for a planted path: exit 137, and the file moved aside),
/// and it is read-only inside, so the command cannot point host git at a repository of its own.
#[test]
fn a_git_file_stays_in_place_and_read_only() {
    let s = common::sbx([
        "--",
        "sh",
        "-c",
        "cat .git; echo 'gitdir: /tmp/planted' > .git && echo rewrite=ok || echo rewrite=refused",
    ]);
    let gitdir = "gitdir: /elsewhere/.git/worktrees/w\n";
    s.work.file(".git", gitdir);
    let (r, work) = run_keep(s);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with(gitdir), "{r:?}");
    assert!(r.stdout.contains("rewrite=refused\n"), "{r:?}");
    assert_eq!(
        std::fs::read_to_string(work.path().join(".git")).unwrap(),
        gitdir
    );
    let names = common::names_in(work.path());
    assert!(
        !names.iter().any(|n| n.starts_with(".git.")),
        "something was moved aside: {names:?}"
    );
}
