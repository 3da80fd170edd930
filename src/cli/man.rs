//! `sbx man`: clap's page of the command line, and the sections clap cannot know, each made
//! from the source of its facts rather than copied: the profile format from README's
//! annotated profile (the one place it is documented), the built-in profiles from their own
//! `description`s, the exit status from `exit::contract`, the search path from `Loader`'s rule.

use clap::CommandFactory;

use super::Cli;
use crate::exit;
use crate::profile::{self, Loader};

/// README, for its annotated profile and the rules under it. Only `sbx man` reads it.
const README: &str = include_str!("../../README.md");
/// The line of README that introduces the annotated profile.
const FORMAT_INTRO: &str = "A profile, with every key (all optional):";

/// Where a per-user man page goes: found by man-db when `~/.local/bin` is on PATH.
pub const INSTALL_HINT: &str =
    "mkdir -p ~/.local/share/man/man1 && sbx man > ~/.local/share/man/man1/sbx.1";

/// The whole page, roff.
pub fn page() -> std::io::Result<Vec<u8>> {
    let man = clap_mangen::Man::new(Cli::command());
    let mut parts: Vec<Vec<u8>> = Vec::new();
    type Section = fn(&clap_mangen::Man, &mut dyn std::io::Write) -> std::io::Result<()>;
    // clap's sections but its EXTRA (the one-paragraph exit codes of --help: EXIT STATUS
    // below says it in full).
    let clap_sections: [Section; 6] = [
        clap_mangen::Man::render_title,
        clap_mangen::Man::render_name_section,
        clap_mangen::Man::render_synopsis_section,
        clap_mangen::Man::render_description_section,
        clap_mangen::Man::render_options_section,
        clap_mangen::Man::render_subcommands_section,
    ];
    for render in clap_sections {
        let mut part = Vec::new();
        render(&man, &mut part)?;
        parts.push(part);
    }
    parts.push(ours().into_bytes());
    let mut part = Vec::new();
    man.render_version_section(&mut part)?;
    parts.push(part);
    // Each clap part starts with the preamble that defines the apostrophe string: once is
    // enough.
    let mut out = Vec::new();
    for (i, part) in parts.into_iter().enumerate() {
        let text = String::from_utf8_lossy(&part);
        let text = match i {
            0 => &text[..],
            _ => text.strip_prefix(PREAMBLE).unwrap_or(&text),
        };
        out.extend_from_slice(text.as_bytes());
    }
    Ok(out)
}

/// What the roff crate writes before every rendering.
const PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";

/// The sections after clap's.
fn ours() -> String {
    let mut r = String::new();
    profiles(&mut r);
    builtins(&mut r);
    exit_status(&mut r);
    environment(&mut r);
    files(&mut r);
    examples(&mut r);
    r
}

fn profiles(r: &mut String) {
    r.push_str(".SH PROFILES\n");
    para(
        r,
        "A profile is a TOML file. The built-in profiles are embedded in sbx; a profile of \
         your own is a file in the user profile directory (see FILES), found by its name \
         before the built-ins, or any file named by path (a name containing / or ending in \
         .toml). Options of a run are merged over the profiles as their last layer.",
    );
    match profile_format() {
        Some((example, rules)) => {
            para(r, FORMAT_INTRO);
            r.push_str(".PP\n.nf\n.RS 2\n");
            for line in example.lines() {
                r.push_str(&escape(line));
                r.push('\n');
            }
            r.push_str(".RE\n.fi\n");
            para(r, "Rules:");
            for rule in rules {
                r.push_str(".IP \\(bu 2\n");
                r.push_str(&escape(&rule.replace('`', "")));
                r.push('\n');
            }
        }
        None => para(r, "The profile format is described in README.md."),
    }
}

/// README's annotated profile and the rules listed under it ("Rules:", one `- ` item each,
/// up to the next blank line after the list).
fn profile_format() -> Option<(&'static str, Vec<String>)> {
    let after = &README[README.find(FORMAT_INTRO)? + FORMAT_INTRO.len()..];
    let body = &after[after.find("```toml\n")? + "```toml\n".len()..];
    let end = body.find("\n```")?;
    let example = &body[..end];
    let rest = &body[end..];
    let list = &rest[rest.find("Rules:\n")? + "Rules:\n".len()..];
    let list = list.trim_start_matches('\n');
    let list = &list[..list.find("\n\n").unwrap_or(list.len())];
    let rules = list
        .split("\n- ")
        .map(|item| {
            let item = item.strip_prefix("- ").unwrap_or(item);
            item.split('\n')
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    Some((example, rules))
}

fn builtins(r: &mut String) {
    r.push_str(".SH BUILT-IN PROFILES\n");
    para(
        r,
        "Each is shown in full, its extends chain merged, by sbx profile show NAME. What each \
         is for, from its own description:",
    );
    for profile::Builtin { name, text, .. } in profile::BUILTIN {
        // The file as shipped, unexpanded: the page is the same on every host.
        let Ok(p) = Loader::parse(name, text) else {
            continue;
        };
        r.push_str(&format!(".TP\n\\fB{}\\fR\n", escape(name)));
        let mut what = p.description.clone().unwrap_or_default();
        if !p.extends.is_empty() {
            what.push_str(&format!(" (extends {})", p.extends.join(", ")));
        }
        if let Some(mode) = p.network.mode {
            let mode = serde_json::to_value(mode)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            what.push_str(&format!("; network: {mode}"));
            if !p.network.allow.is_empty() {
                what.push_str(&format!(", allowing {}", p.network.allow.join(", ")));
            }
        }
        r.push_str(&escape(&what));
        r.push('\n');
    }
}

fn exit_status(r: &mut String) {
    r.push_str(".SH EXIT STATUS\n");
    for row in exit::contract() {
        r.push_str(&format!(
            ".TP\n\\fB{}\\fR\n{}\n",
            escape(&row.code),
            escape(row.long)
        ));
    }
    para(
        r,
        &format!(
            "A command-line usage error also exits {}. {}",
            exit::EXIT_SBX_FAILED,
            exit::AMBIGUITY
        ),
    );
}

fn environment(r: &mut String) {
    r.push_str(".SH ENVIRONMENT\n");
    para(
        r,
        "The command's environment starts empty: only what the profile keeps (env.keep) or \
         sets (env.set, --setenv) reaches it. sbx itself reads:",
    );
    for (name, what) in [
        (
            "HOME, USER",
            "${HOME} and ${USER} in profiles, and the home the default profile gives a fresh \
             tmpfs; when unset, from /etc/passwd (never through NSS), else / and the uid",
        ),
        (
            "TMPDIR",
            "${TMPDIR} in profiles, and where a writable overlay's private layers are made \
             (an absolute path; default /tmp)",
        ),
        (
            "XDG_CONFIG_HOME",
            "the user profile directory is $XDG_CONFIG_HOME/sbx/profiles (an absolute path; \
             default ~/.config)",
        ),
        (
            "PATH",
            "not used by sbx: the command is looked up in the PATH of the sandbox's \
             environment (the profile's, e.g. ${env:PATH} in the ci profile)",
        ),
        ("NO_COLOR", "set and not empty: no colours in sbx doctor"),
        (
            "any NAME",
            "${env:NAME} in a profile expands to it (an error if unset)",
        ),
    ] {
        r.push_str(&format!(
            ".TP\n\\fB{}\\fR\n{}\n",
            escape(name),
            escape(what)
        ));
    }
}

fn files(r: &mut String) {
    r.push_str(".SH FILES\n");
    for (name, what) in [
        (
            "$XDG_CONFIG_HOME/sbx/profiles/NAME.toml",
            "a user profile, used as --profile NAME and searched before the built-ins; \
             ~/.config/sbx/profiles/NAME.toml when XDG_CONFIG_HOME is unset or relative. It \
             and every directory above it up to $XDG_CONFIG_HOME/sbx must be owned by you or \
             root and not writable by group or others",
        ),
        (
            "PATH.toml, DIR/NAME",
            "a profile named by path (it contains / or ends in .toml); its relative extends \
             resolve against its own directory",
        ),
        (
            "~/.local/share/man/man1/sbx.1",
            "where this page goes for one user: man finds it when ~/.local/bin is on PATH \
             (with sbx in ~/.cargo/bin, ~/.cargo/share/man/man1/sbx.1 is found the same way)",
        ),
    ] {
        r.push_str(&format!(
            ".TP\n\\fB{}\\fR\n{}\n",
            escape(name),
            escape(what)
        ));
    }
    para(r, "To install this page:");
    example_lines(r, &[INSTALL_HINT]);
}

fn examples(r: &mut String) {
    r.push_str(".SH EXAMPLES\n");
    for (what, lines) in [
        (
            "Run a build in the current directory, nothing else of the host writable, no \
             network:",
            &["sbx -- make test"][..],
        ),
        (
            "The internet but not the host, or only the hosts allowed, through sbx's proxy:",
            &[
                "sbx --profile net-on -- curl -sI https://example.org",
                "sbx --net proxy --allow crates.io:443 --allow static.crates.io:443 -- cargo fetch",
            ][..],
        ),
        (
            "Let the command write, keep its changes aside, look, then apply them:",
            &[
                "sbx --overlay \"$PWD\" --keep-changes /tmp/step1 -- make",
                "sbx changes /tmp/step1",
                "sbx apply /tmp/step1",
            ][..],
        ),
        (
            "See what a profile gives without running anything, and which line decides a path; an \
             interactive shell:",
            &[
                "sbx --profile strict --explain -- ls",
                "sbx profile show ci",
                "sbx why .git/hooks --write",
                "sbx --profile shell -- bash",
            ][..],
        ),
    ] {
        para(r, what);
        example_lines(r, lines);
    }
}

fn para(r: &mut String, text: &str) {
    r.push_str(".PP\n");
    r.push_str(&escape(text));
    r.push('\n');
}

fn example_lines(r: &mut String, lines: &[&str]) {
    r.push_str(".PP\n.nf\n.RS 4\n");
    for line in lines {
        r.push_str(&escape(line));
        r.push('\n');
    }
    r.push_str(".RE\n.fi\n");
}

/// `text` as roff input: backslashes, hyphens (typed as `\-`, so that options copied from
/// the page work) and apostrophes escaped, a line never read as a request, and what is not
/// ASCII named by its code point.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if line.starts_with('.') {
            out.push_str("\\&");
        }
        for c in line.chars() {
            match c {
                '\\' => out.push_str("\\e"),
                '-' => out.push_str("\\-"),
                '\'' => out.push_str("\\*(Aq"),
                '…' => out.push_str("..."),
                '—' => out.push_str("\\(em"),
                '–' => out.push_str("\\(en"),
                c if c.is_ascii() => out.push(c),
                c => out.push_str(&format!("\\[u{:04X}]", c as u32)),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_still_holds_the_profile_format() {
        let (example, rules) = profile_format().expect("README's annotated profile");
        assert!(example.contains("[filesystem]") && example.contains("[limits]"));
        assert!(
            rules.len() > 3 && rules[0].starts_with("Unknown keys"),
            "{rules:?}"
        );
    }

    #[test]
    fn escape_keeps_roff_requests_out() {
        assert_eq!(escape(".x -a 'b' \\"), "\\&.x \\-a \\*(Aqb\\*(Aq \\e");
        assert_eq!(escape("≥"), "\\[u2265]");
    }
}
