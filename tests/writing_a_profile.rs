//! README's "Writing a profile" runs as written: the profile it shows is checked and used, and
//! every command of its command block runs (as the test uid) with the outcome the text
//! promises. The profile and the commands are read from README itself, so they cannot drift.

mod common;

use std::path::Path;

/// The fenced block after `<!-- writing-a-profile: NAME -->` in README.
fn block(name: &str) -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let marker = format!("<!-- writing-a-profile: {name} -->");
    let at = readme
        .find(&marker)
        .unwrap_or_else(|| panic!("no {marker} in README"));
    let rest = &readme[at + marker.len()..];
    let open = rest.find("```").expect("a fenced block");
    let body = &rest[open..];
    let start = body.find('\n').expect("fence line") + 1;
    let end = body[start..].find("```").expect("closing fence");
    body[start..start + end].to_string()
}

/// The commands of the block: each line's command part (before a `#` comment).
fn commands() -> Vec<String> {
    block("commands")
        .lines()
        .map(|l| match l.find("  #") {
            Some(i) => l[..i].trim().to_string(),
            None => l.trim().to_string(),
        })
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn the_profile_and_every_command_of_writing_a_profile_run() {
    let cmds = commands();
    assert_eq!(cmds.len(), 4, "{cmds:?}");
    let mut outputs = Vec::new();
    for cmd in &cmds {
        let args = shell_words(cmd);
        assert_eq!(args[0], "sbx", "{cmd}");
        let s = common::sbx(&args[1..]);
        s.work.file("mytool.toml", &block("mytool.toml"));
        let (r, work) = common::run_keep(s);
        assert_eq!(r.code, 0, "{cmd}: {r:?}");
        outputs.push((cmd.clone(), r, work));
    }
    // check: ok.
    let (_, r, _) = &outputs[0];
    assert_eq!(r.stdout, "./mytool.toml: ok\n", "{r:?}");
    // explain: the environment and the wall-time limit are in the plan.
    let (_, r, _) = &outputs[1];
    assert!(r.stdout.contains("MYTOOL_CACHE=/tmp/mytool-cache"), "{r:?}");
    // the run: the variable is set and the workspace is writable.
    let (_, r, work) = &outputs[2];
    assert_eq!(r.stdout, "/tmp/mytool-cache\n", "{r:?}");
    assert!(work.path().join("made-inside").exists(), "{r:?}");
    // -v names the layers.
    let (_, r, _) = &outputs[3];
    assert!(r.stderr.contains("landlock"), "{r:?}");
}

#[test]
fn a_profile_from_nothing_is_told_what_it_misses() {
    // The text's claim: `ro = ["/usr"]` alone, /usr/bin/true exits 127 naming the loader.
    let s = common::sbx(["-p", "./bare.toml", "--", "/usr/bin/true"]);
    s.work.file("bare.toml", "[filesystem]\nro = [\"/usr\"]\n");
    let r = s.run();
    assert_eq!(r.code, 127, "{r:?}");
    assert!(r.stderr.contains("ld-linux"), "{r:?}");
}

/// Splits a command line the way sh would for these simple lines (single quotes only).
fn shell_words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}
