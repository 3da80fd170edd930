//! README's install and CI recipes, run as written so that they cannot rot. Each recipe is
//! the fenced block after a `<!-- recipe: NAME -->` line; its commands are the `run:` values
//! (GitHub Actions) or the script lines (GitLab CI) of YAML blocks, and the lines of `sh`
//! blocks. They run on a small crate with no dependencies, with `CARGO_NET_OFFLINE=true` (no
//! internet needed), and sbx's steps as the test uid. When the runner is root, those steps run
//! as `nobody` in a mount namespace of their own where the runner's toolchain is bound under
//! nobody's home, as a CI runner's `~/.cargo` and `~/.rustup` would be.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Workdir, is_root};

/// The fenced block after `<!-- recipe: NAME -->` in README: (language, lines).
fn recipe(name: &str) -> (String, Vec<String>) {
    let readme = include_str!("../README.md");
    let marker = format!("<!-- recipe: {name} -->");
    let at = readme
        .find(&marker)
        .unwrap_or_else(|| panic!("README has no {marker}"));
    let mut lines = readme[at + marker.len()..].lines().skip(1);
    let fence = lines.next().expect("a fenced block after the marker");
    let lang = fence
        .strip_prefix("```")
        .unwrap_or_else(|| panic!("{marker} is not followed by a fenced block: {fence}"));
    let body = lines
        .take_while(|l| !l.starts_with("```"))
        .map(str::to_string)
        .collect();
    (lang.to_string(), body)
}

/// A step of a recipe: a shell command, or something the test cannot do (named).
enum Step {
    Run(String),
    NotRun(String),
}

/// The steps of a YAML recipe: `run:` values, `uses:` steps (not run), and the items of the
/// `*script:` lists.
fn yaml_steps(lines: &[String]) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut in_script = false;
    for l in lines {
        let t = l.trim_start();
        let t = t.strip_prefix("- ").unwrap_or(t);
        if let Some(cmd) = t.strip_prefix("run: ") {
            steps.push(Step::Run(cmd.to_string()));
        } else if let Some(action) = t.strip_prefix("uses: ") {
            steps.push(Step::NotRun(format!("uses: {action}")));
        } else if t.ends_with("script:") {
            in_script = true;
        } else if in_script && l.trim_start().starts_with("- ") {
            steps.push(Step::Run(t.to_string()));
        } else if !l.starts_with("    ") {
            in_script = false;
        }
    }
    steps
}

/// The steps of an `sh` recipe: its lines, with `\` continuations joined.
fn sh_steps(lines: &[String]) -> Vec<Step> {
    let text = lines.join("\n").replace("\\\n", " ");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| Step::Run(l.to_string()))
        .collect()
}

fn steps(name: &str) -> Vec<Step> {
    let (lang, lines) = recipe(name);
    match lang.as_str() {
        "yaml" => yaml_steps(&lines),
        "sh" => sh_steps(&lines),
        other => panic!("recipe {name}: no runner for `{other}` blocks"),
    }
}

/// Whether the ELF file at `path` is static: it has no PT_INTERP (no dynamic loader).
fn is_static(path: &Path) -> bool {
    let elf = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&elf[..4], b"\x7fELF", "{} is not ELF", path.display());
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) != PT_INTERP
    })
}

/// The runner's toolchain: cargo's bin directory and RUSTUP_HOME.
fn toolchain() -> (PathBuf, PathBuf) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let bin = std::env::split_paths(&path)
        .find(|d| d.join("cargo").is_file())
        .expect("cargo on PATH");
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| bin.parent().unwrap().to_path_buf());
    let rustup = std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| cargo_home.parent().unwrap().join(".rustup"));
    (bin, rustup)
}

/// cargo's builds of sbx for the install steps: kept between test runs (the first build
/// takes about a minute and a half on 2 cores, a rebuild a second).
fn install_target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/recipes-install")
}

/// Runs an install step as the runner (it needs the runner's registry: sbx's dependencies,
/// offline), installing into `root`.
fn run_install(cmd: &str, cwd: &Path, root: &Path, extra: &[(&str, &str)]) {
    eprintln!("RUN as the runner (it needs the runner's cargo registry): {cmd}");
    let out = Command::new("bash")
        .args(["-e", "-c", cmd])
        .current_dir(cwd)
        .env("CARGO_NET_OFFLINE", "true")
        .env("CARGO_TARGET_DIR", install_target_dir())
        .env("CARGO_INSTALL_ROOT", root)
        .envs(extra.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "install step failed: {cmd}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sbx = root.join("bin/sbx");
    assert!(
        is_static(&sbx),
        "`{cmd}` installed a dynamically linked sbx"
    );
}

/// A CI job's workspace: a crate with no dependencies, sbx's source at tools/sbx (a link to
/// this repository), a home for the test uid and a runner temp directory.
struct Job {
    w: Workdir,
    project: PathBuf,
    home: PathBuf,
    install: PathBuf,
}

fn job() -> Job {
    let w = Workdir::new();
    let project = w.subdir("project");
    w.subdir("project/src");
    w.file(
        "project/Cargo.toml",
        "[package]\nname = \"tiny\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n",
    );
    w.file("project/src/main.rs", "fn main() { println!(\"tiny\"); }\n");
    w.subdir("project/tools");
    std::os::unix::fs::symlink(env!("CARGO_MANIFEST_DIR"), project.join("tools/sbx")).unwrap();
    let home = if is_root() {
        let home = w.subdir("home");
        w.subdir("home/.cargo/bin");
        w.subdir("home/.rustup");
        home
    } else {
        PathBuf::from(std::env::var_os("HOME").expect("HOME"))
    };
    w.subdir("runner-temp");
    let install = w.path().join("sbx-install");
    Job {
        w,
        project,
        home,
        install,
    }
}

/// Runs a step as the test uid; returns its stdout.
fn run_step(j: &Job, cmd: &str, ci: &[(&str, String)]) -> String {
    eprintln!("RUN as uid {}: {cmd}", common::test_uid());
    let path = format!(
        "{}:{}:/usr/local/bin:/usr/bin:/bin",
        j.install.join("bin").display(),
        if is_root() {
            j.home.join(".cargo/bin")
        } else {
            toolchain().0
        }
        .display()
    );
    let mut c = if is_root() {
        // The runner's toolchain, under nobody's home in a mount namespace of this step.
        let (bin, rustup) = toolchain();
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(
                "mount --bind \"$1\" \"$3/.cargo/bin\" && mount --bind \"$2\" \"$3/.rustup\" && \
                 exec setpriv --reuid 65534 --regid 65534 --clear-groups -- bash -e -c \"$4\"",
            )
            .arg("sh")
            .args([&bin, &rustup, &j.home])
            .arg(cmd)
            .env_clear()
            .env("HOME", &j.home)
            .env("RUSTUP_HOME", j.home.join(".rustup"));
        c
    } else {
        let mut c = Command::new("bash");
        c.args(["-e", "-c", cmd]);
        c
    };
    c.current_dir(&j.project)
        .env("PATH", path)
        .env("CI", "true")
        .env("CARGO_NET_OFFLINE", "true")
        .envs(ci.iter().map(|(k, v)| (k, v)));
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "step failed ({}): {cmd}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs a CI recipe's steps in order; returns the last step's stdout.
fn run_ci(name: &str, j: &Job, ci: &[(&str, String)]) -> String {
    let mut last = String::new();
    for step in steps(name) {
        match step {
            Step::NotRun(what) => {
                eprintln!("NOT RUN ({what}): the test lays out the checkout itself");
            }
            Step::Run(cmd) if cmd.contains("cargo install") => {
                run_install(&cmd, &j.project, &j.install, &[]);
            }
            Step::Run(cmd) => last = run_step(j, &cmd, ci),
        }
    }
    last
}

fn check_build(j: &Job, report: &Path) {
    assert!(
        j.project.join("target/debug/tiny").is_file(),
        "the sandboxed build left no binary"
    );
    let text = std::fs::read_to_string(report).expect("the report");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["reason"], "exited", "{text}");
    assert_eq!(v["exit_code"], 0, "{text}");
}

#[test]
fn github_recipe_runs_as_written() {
    let j = job();
    let temp = j.w.path().join("runner-temp");
    let ci = [
        ("GITHUB_ACTIONS", "true".to_string()),
        ("RUNNER_TEMP", temp.display().to_string()),
        ("GITHUB_WORKSPACE", j.project.display().to_string()),
    ];
    let out = run_ci("github", &j, &ci);
    check_build(&j, &temp.join("sbx-report.json"));
    assert!(out.contains("\"reason\": \"exited\""), "jq printed: {out}");
}

#[test]
fn gitlab_recipe_runs_as_written() {
    // The recipe's report goes to /tmp/sbx-report.json on the host, as on a GitLab runner:
    // the test removes it before and after.
    let report = Path::new("/tmp/sbx-report.json");
    let _ = std::fs::remove_file(report);
    let j = job();
    let ci = [
        ("GITLAB_CI", "true".to_string()),
        ("CI_PROJECT_DIR", j.project.display().to_string()),
    ];
    let out = run_ci("gitlab", &j, &ci);
    check_build(&j, &j.project.join("sbx-report.json"));
    let _ = std::fs::remove_file(report);
    assert!(
        out.starts_with("sbx: exited, exit 0, "),
        "jq printed: {out}"
    );
}

#[test]
fn install_from_a_git_url_is_static() {
    // cargo reads no .cargo/config.toml from a repository it fetches with `--git`, and a git
    // fetch is not offline; so the command runs with `--path` to this repository with its
    // .cargo hidden (an empty directory bound over it in a mount namespace of the step), from a
    // directory outside it: the same build, offline.
    let steps = steps("install-git");
    let [Step::Run(cmd)] = &steps[..] else {
        panic!("install-git is one command")
    };
    assert!(cmd.contains("--git \"$SBX_GIT_URL\""), "{cmd}");
    let cmd = cmd.replace("--git \"$SBX_GIT_URL\"", "--path \"$SBX_SRC\"");
    let w = Workdir::new();
    let empty = w.subdir("empty");
    let dot_cargo = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cargo");
    let hidden = format!(
        "unshare {} -- sh -c 'mount --bind \"$1\" \"$2\" && exec bash -e -c \"$3\"' sh {} {} {}",
        if is_root() {
            "--mount"
        } else {
            "--user --map-current-user --mount"
        },
        sh_quote(&empty.display().to_string()),
        sh_quote(&dot_cargo.display().to_string()),
        sh_quote(&cmd),
    );
    eprintln!(
        "NOTE: --path with .cargo hidden instead of --git, from {}",
        w.path().display()
    );
    let root = w.path().join("root");
    run_install(
        &hidden,
        w.path(),
        &root,
        &[("SBX_SRC", env!("CARGO_MANIFEST_DIR"))],
    );
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[test]
fn install_from_a_clone_is_static() {
    let steps = steps("install");
    let [Step::Run(cmd)] = &steps[..] else {
        panic!("install is one command")
    };
    let w = Workdir::new();
    run_install(
        cmd,
        Path::new(env!("CARGO_MANIFEST_DIR")),
        &w.path().join("root"),
        &[],
    );
}

#[test]
fn readme_library_example_is_the_compiled_one() {
    let (lang, lines) = recipe("library");
    assert_eq!(lang, "rust");
    let example = include_str!("../examples/readme_library.rs");
    let body: Vec<&str> = example
        .lines()
        .skip_while(|l| !l.contains("// README begin"))
        .skip(1)
        .take_while(|l| !l.contains("// README end"))
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect();
    assert_eq!(
        lines, body,
        "README's library example differs from examples/readme_library.rs"
    );
}

#[test]
fn steps_are_extracted() {
    // The extraction itself: a recipe whose commands were not found would pass vacuously.
    let count = |n: &str| {
        steps(n)
            .iter()
            .filter(|s| matches!(s, Step::Run(_)))
            .count()
    };
    assert_eq!(count("github"), 4);
    assert_eq!(count("gitlab"), 5);
}
