//! Issue #17's papercuts of the tool around the sandbox: `help` after run options, a man page
//! that carries the profile format, the built-ins, exit status, environment, files and
//! examples (with a per-user install path), profile names completed by bash, zsh and fish, a
//! broken pipe on `sbx man` and `sbx completions`, and the line after a writable overlay's
//! changes were thrown away.
mod common;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::overlay::{s, sh_in};
use common::{Workdir, canonical, error_lines};

// ---- 1. help ----

#[test]
fn help_after_run_options_is_sbx_help_and_not_a_command() {
    for args in [
        &["help"][..],
        &["-q", "help"][..],
        &["-v", "--profile", "strict", "help"][..],
    ] {
        let r = common::sbx(args).run();
        assert_eq!(r.code, 0, "{args:?}: {r:?}");
        assert!(r.stdout.contains("Usage: sbx [OPTIONS]"), "{args:?}: {r:?}");
        assert!(!r.stderr.contains("not found"), "{args:?}: {r:?}");
    }
    // A subcommand's help, as `sbx help man` gives it.
    let r = common::sbx(["-q", "help", "man"]).run();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("Usage: sbx man"), "{r:?}");
    // A subcommand that does not exist is clap's one error, before anything runs.
    let r = common::sbx(["-v", "help", "nosuch"]).run();
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("nosuch"), "{r:?}");
    // After `--` it is the command, as every other word is: not found in the sandbox.
    let r = common::sbx(["-q", "--", "help"]).run();
    assert_eq!(r.code, 127, "{r:?}");
    assert!(!r.stdout.contains("Usage:"), "{r:?}");
}

// ---- 2. the man page ----

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// roff back to the text it stands for: what `escape` in src/cli/man.rs writes.
fn unroff(page: &str) -> String {
    page.replace("\\-", "-")
        .replace("\\*(Aq", "'")
        .replace("\\e", "\\")
        .replace("\\(em", "—")
        .replace("\\&", "")
}

/// The built-in profiles as shipped: each file's name and `description`.
fn builtins() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(repo().join("profiles")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let value: toml::Value = toml::from_str(&text).unwrap();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let description = value["description"].as_str().unwrap().to_string();
        out.push((name, description));
    }
    assert!(out.len() >= 10, "{out:?}");
    out
}

/// The lines of `page` from `.SH NAME` up to the next `.SH`.
fn section<'a>(page: &'a str, name: &str) -> &'a str {
    let head = format!(".SH {name}\n");
    let start = page
        .find(&head)
        .unwrap_or_else(|| panic!("no {name} section in:\n{page}"))
        + head.len();
    let rest = &page[start..];
    &rest[..rest.find("\n.SH ").unwrap_or(rest.len())]
}

#[test]
fn man_page_carries_format_builtins_exit_status_environment_files_and_examples() {
    let r = common::sbx(["man"]).run();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.is_empty(), "{r:?}");
    let page = r.stdout.as_str();
    for name in [
        "NAME",
        "SYNOPSIS",
        "OPTIONS",
        "PROFILES",
        "BUILT-IN PROFILES",
        "EXIT STATUS",
        "ENVIRONMENT",
        "FILES",
        "EXAMPLES",
    ] {
        section(page, name);
    }
    // The format: README's annotated profile, line for line, and its rules.
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let format = unroff(section(page, "PROFILES"));
    let block = readme
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .unwrap();
    for line in block.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            format.contains(line),
            "{line:?} not in the PROFILES section:\n{format}"
        );
    }
    for key in [
        "[filesystem]",
        "[[filesystem.overlay]]",
        "[limits]",
        "wall_time",
        "Unknown keys",
    ] {
        assert!(format.contains(key), "{key}: {format}");
    }
    // Every built-in profile, with its own description.
    let built = unroff(section(page, "BUILT-IN PROFILES"));
    for (name, description) in builtins() {
        assert!(
            built.contains(&format!(".TP\n\\fB{name}\\fR\n")),
            "{name}: {built}"
        );
        assert!(
            built.contains(&description),
            "{name}: {description:?} in {built}"
        );
    }
    // The exit-code contract.
    let exit = unroff(section(page, "EXIT STATUS"));
    for code in ["128+N", "124", "125", "126", "127"] {
        assert!(exit.contains(&format!("\\fB{code}\\fR")), "{code}: {exit}");
    }
    let env = unroff(section(page, "ENVIRONMENT"));
    for var in [
        "XDG_CONFIG_HOME",
        "HOME",
        "TMPDIR",
        "NO_COLOR",
        "${env:NAME}",
    ] {
        assert!(env.contains(var), "{var}: {env}");
    }
    let files = unroff(section(page, "FILES"));
    assert!(
        files.contains("$XDG_CONFIG_HOME/sbx/profiles/NAME.toml"),
        "{files}"
    );
    assert!(
        files.contains("~/.config/sbx/profiles/NAME.toml"),
        "{files}"
    );
    // The install hint is for one user: no root needed, here or in --help.
    assert!(
        files.contains("sbx man > ~/.local/share/man/man1/sbx.1"),
        "{files}"
    );
    assert!(!unroff(page).contains("/usr/local/share/man"), "{page}");
    let help = common::sbx(["--help"]).run();
    assert!(
        help.stdout.contains("~/.local/share/man/man1/sbx.1")
            && !help.stdout.contains("/usr/local/share/man"),
        "{help:?}"
    );
    let examples = unroff(section(page, "EXAMPLES"));
    assert!(examples.contains("sbx --profile net-on --"), "{examples}");
    assert!(examples.contains("--keep-changes"), "{examples}");
    // It renders without a warning, and `man` finds it at the per-user path.
    render_and_find(page);
}

fn render_and_find(page: &str) {
    let Ok(mut child) = Command::new("groff")
        .args(["-man", "-Tascii", "-ww"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        common::note_skip(
            "man page",
            "groff is not installed: the page is not rendered",
        );
        return;
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "groff: {stderr}"
    );
    // man-db's search path for a user with ~/.local/bin on PATH.
    let home = Workdir::new();
    let dir = home.path().join(".local/share/man/man1");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(home.path().join(".local/bin")).unwrap();
    std::fs::write(dir.join("sbx.1"), page).unwrap();
    let Ok(found) = Command::new("man")
        .args(["-w", "sbx"])
        .env_clear()
        .env("HOME", home.path())
        .env(
            "PATH",
            format!("{}/.local/bin:/usr/bin:/bin", home.path().display()),
        )
        .output()
    else {
        common::note_skip(
            "man page",
            "man is not installed: the install path is not checked",
        );
        return;
    };
    assert_eq!(
        String::from_utf8_lossy(&found.stdout).trim(),
        dir.join("sbx.1").display().to_string(),
        "{}",
        String::from_utf8_lossy(&found.stderr)
    );
}

// ---- 3. completion of profile names ----

/// A user profile directory (`$XDG_CONFIG_HOME/sbx/profiles`) holding `nearby.toml`.
fn user_profiles() -> Workdir {
    let w = Workdir::new();
    let dir = w.path().join("sbx/profiles");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("nearby.toml"), "extends = [\"default\"]\n").unwrap();
    w
}

fn completion_script(shell: &str, dir: &Path) -> PathBuf {
    let r = common::sbx(["completions", shell]).run();
    assert_eq!(r.code, 0, "{r:?}");
    let path = dir.join(format!("sbx.{shell}"));
    std::fs::write(&path, &r.stdout).unwrap();
    path
}

fn words(line: &str) -> Vec<&str> {
    let mut w: Vec<&str> = line.split_whitespace().collect();
    w.sort();
    w
}

#[test]
fn bash_completes_profile_names_after_profile_and_in_profile_show() {
    let xdg = user_profiles();
    let script = completion_script("bash", xdg.path());
    // COMP_WORDS as bash splits the line (`--profile=ne` is three words), the registered
    // function called as readline would.
    let probe = format!(
        r#"source {script} || exit 3
f=$(complete -p sbx | sed -n 's/.*-F \([^ ]*\) .*/\1/p')
t() {{ COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMP_LINE="$*"; COMP_POINT=${{#COMP_LINE}}
  COMPREPLY=(); "$f" sbx "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
  echo "${{COMPREPLY[*]}}"; }}
t sbx --profile ne
t sbx -v --bind /x -p ne
t sbx --profile = ne
t sbx profile show ne
t sbx -- grep -p ne
t sbx --ro-
"#,
        script = script.display()
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &probe])
        .env("XDG_CONFIG_HOME", xdg.path())
        .current_dir(xdg.path())
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{stdout}");
    let want = ["nearby", "nest", "net-off", "net-on"];
    for (i, line) in lines[..4].iter().enumerate() {
        assert_eq!(words(line), want, "line {i}: {stdout}");
    }
    // After the command, -p is the command's: no profile names.
    assert!(!lines[4].contains("net-"), "{stdout}");
    // Options still complete through clap's function.
    assert_eq!(words(lines[5]), ["--ro-bind", "--ro-overlay"], "{stdout}");
}

#[test]
fn fish_completes_profile_names() {
    if Command::new("fish").arg("--version").output().is_err() {
        common::note_skip("fish_completes_profile_names", "fish is not installed");
        return;
    }
    let xdg = user_profiles();
    let script = completion_script("fish", xdg.path());
    let probe = format!(
        r#"source {script}; or exit 3
for line in "sbx --profile ne" "sbx -v -p ne" "sbx profile show ne" "sbx -- grep -p ne"
    echo (complete -C "$line" | string replace -r '\t.*' '')
end"#,
        script = script.display()
    );
    let out = Command::new("fish")
        .args(["--no-config", "-c", &probe])
        .env("XDG_CONFIG_HOME", xdg.path())
        .current_dir(xdg.path())
        .output()
        .expect("fish");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    for line in &lines[..3] {
        assert_eq!(
            words(line),
            ["nearby", "nest", "net-off", "net-on"],
            "{stdout}"
        );
    }
    assert!(!lines[3].contains("net-"), "{stdout}");
}

/// zsh's completion needs a terminal: the script's `_sbx_profiles` is run as `_arguments`
/// runs it, with `compadd` recording what it is given.
#[test]
fn zsh_completes_profile_names() {
    if Command::new("zsh").arg("--version").output().is_err() {
        common::note_skip("zsh_completes_profile_names", "zsh is not installed");
        return;
    }
    let xdg = user_profiles();
    let script = completion_script("zsh", xdg.path());
    let text = std::fs::read_to_string(&script).unwrap();
    for spec in ["'*-p+[", "'*--profile=["] {
        let line = text.lines().find(|l| l.starts_with(spec)).unwrap();
        assert!(line.ends_with(":NAME|PATH:_sbx_profiles' \\"), "{line}");
    }
    let probe = format!(
        r#"autoload -U compinit && compinit -u -D
source {script} || exit 3
compadd() {{ print -r -- "${{(j: :)${{(@P)${{@[-1]}}}}}}" }}
_files() {{ print -r -- FILES }}
PREFIX=ne; _sbx_profiles
PREFIX=./ne; _sbx_profiles"#,
        script = script.display()
    );
    let out = Command::new("zsh")
        .args(["-f", "-c", &probe])
        .env("XDG_CONFIG_HOME", xdg.path())
        .env("HOME", xdg.path())
        .current_dir(xdg.path())
        .output()
        .expect("zsh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let names = words(lines[0]);
    for want in ["default", "net-off", "net-on", "strict", "nearby"] {
        assert!(names.contains(&want), "{want}: {stdout}");
    }
    assert_eq!(lines[1], "FILES", "a path completes as a file: {stdout}");
}

// ---- 4. a broken pipe ----

fn broken_pipe() -> OwnedFd {
    let (reader, writer) = nix::unistd::pipe().unwrap();
    drop(reader);
    writer
}

#[test]
fn a_broken_pipe_ends_man_completions_and_help_quietly() {
    for args in [
        &["man"][..],
        &["completions", "bash"][..],
        &["completions", "fish"][..],
        &["-q", "help"][..],
    ] {
        let mut s = common::sbx(args);
        let out = s
            .cmd
            .stdout(broken_pipe())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(common::exit_code(out.status), 0, "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

// ---- 5. an overlay's changes thrown away ----

const DISCARDED: &str = "files changed in the overlay were discarded; use --keep-changes DIR";

#[test]
fn a_writable_overlay_run_says_how_many_changes_it_threw_away() {
    let w = Workdir::new();
    let ws = w.subdir("ws");
    let ws_c = canonical(&ws);
    let write = "echo new > a; echo new > b; mkdir d";
    let (r, _) = sh_in(&ws, &["--overlay".into(), ws_c.clone()], write);
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("discarded"))
        .collect();
    assert_eq!(
        lines,
        [format!("sbx: 3 {DISCARDED}")],
        "one line, once: {r:?}"
    );
    assert!(
        std::fs::read_dir(&ws).unwrap().next().is_none(),
        "the host tree was written"
    );
    // One change: the singular.
    let (r, _) = sh_in(&ws, &["--overlay".into(), ws_c.clone()], "echo x > a");
    assert!(
        r.stderr
            .contains("sbx: 1 file changed in the overlay was discarded; use --keep-changes DIR"),
        "{r:?}"
    );
    // Not with -q, not without changes, not when they are kept, not for a tmp overlay (never
    // reported), and not when the command failed without writing.
    let keep = w.path().join("kept");
    for (args, script) in [
        (
            vec!["-q".to_string(), "--overlay".into(), ws_c.clone()],
            write,
        ),
        (vec!["--overlay".into(), ws_c.clone()], "cat /dev/null"),
        (
            vec![
                "--overlay".into(),
                ws_c.clone(),
                "--keep-changes".into(),
                s(&keep),
            ],
            write,
        ),
        (vec!["--tmp-overlay".into(), ws_c.clone()], write),
        (vec!["--overlay".into(), ws_c.clone()], "exit 3"),
    ] {
        let (r, _) = sh_in(&ws, &args, script);
        assert!(!r.stderr.contains("discarded"), "{args:?} {script}: {r:?}");
        assert!(
            error_lines(&r.stderr).is_empty(),
            "{args:?} {script}: {r:?}"
        );
    }
}
