//! `sbx completions SHELL`: clap_complete's script, with profile names for `--profile` and
//! `profile show`. clap_complete's static generators only know files for a free-form value
//! (its dynamic engine is behind an unstable feature and runs sbx at every TAB), so each
//! script gets a small function that lists the names when TAB is pressed: the built-ins,
//! written in at generation from `profile::BUILTIN`, and the `*.toml` files of the user
//! profile directory, read then (the rule of `Loader::new`: `$XDG_CONFIG_HOME/sbx/profiles`
//! if that is an absolute path, else `~/.config/sbx/profiles`). A word with a `/` in it is a
//! path and still completes as a file.

use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;
use crate::profile;

/// The script for `shell`.
pub fn script(shell: Shell) -> Vec<u8> {
    let mut cmd = Cli::command();
    // Into memory first: the generators panic when a write fails.
    let mut text = Vec::new();
    clap_complete::generate(shell, &mut cmd, "sbx", &mut text);
    let text = String::from_utf8_lossy(&text).into_owned();
    match shell {
        Shell::Bash => bash(text, &cmd),
        Shell::Zsh => zsh(text),
        Shell::Fish => fish(text),
        _ => text,
    }
    .into_bytes()
}

/// The built-in names, space-separated.
fn builtin_names() -> String {
    let names: Vec<&str> = profile::BUILTIN.iter().map(|b| b.name).collect();
    names.join(" ")
}

/// bash: a function in front of clap's `_sbx` that answers for a profile's value and hands
/// every other word to `_sbx`. It walks the words before the cursor as sbx parses them, so
/// that `-p` after the command (`sbx -- grep -p`) is the command's.
fn bash(text: String, cmd: &clap::Command) -> String {
    // The options that take a value in the next word (or after `=`).
    let mut with_value: Vec<String> = Vec::new();
    for arg in cmd.get_arguments() {
        if !arg.get_action().takes_values() || arg.is_positional() || arg.get_id() == "profiles" {
            continue;
        }
        if let Some(s) = arg.get_short() {
            with_value.push(format!("-{s}"));
        }
        if let Some(l) = arg.get_long() {
            with_value.push(format!("--{l}"));
        }
    }
    let registration = text
        .find("\nif [[ \"${BASH_VERSINFO[0]}\" -eq 4")
        .unwrap_or(text.len());
    let (functions, _) = text.split_at(registration);
    format!(
        r#"{functions}
_sbx_profile_names() {{
    local dir=${{XDG_CONFIG_HOME:-}} f
    [[ $dir == /* ]] || dir=$HOME/.config
    printf '%s\n' {builtins}
    for f in "$dir"/sbx/profiles/*.toml; do
        [[ -f $f ]] && f=${{f##*/}} && printf '%s\n' "${{f%.toml}}"
    done
}}

_sbx_with_profiles() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} i=1 w profile_value=
    if [[ ${{COMP_WORDS[1]}} == profile && ${{COMP_WORDS[2]}} == show ]] && (( COMP_CWORD > 2 )); then
        [[ $cur != -* ]] && profile_value=1
    else
        # The options before the command: a profile's value is the word after -p or
        # --profile (bash splits --profile=NAME at the =).
        while (( i < COMP_CWORD )); do
            w=${{COMP_WORDS[i]}}
            case $w in
                -p|--profile)
                    if (( i + 1 == COMP_CWORD )) || {{ [[ ${{COMP_WORDS[i+1]}} == = ]] && (( i + 2 == COMP_CWORD )); }}; then
                        profile_value=1
                        break
                    fi
                    (( i += 2 )); [[ ${{COMP_WORDS[i-1]}} == = ]] && (( i += 1 )) ;;
                {with_value})
                    (( i += 2 )); [[ ${{COMP_WORDS[i-1]}} == = ]] && (( i += 1 )) ;;
                -*) (( i += 1 )) ;;
                *) break ;;
            esac
        done
    fi
    [[ $cur == = ]] && cur=
    if [[ -n $profile_value && $cur != */* ]]; then
        local IFS=$'\n'
        COMPREPLY=($(compgen -W "$(_sbx_profile_names)" -- "$cur"))
        return 0
    fi
    _sbx "$@"
}}

if [[ "${{BASH_VERSINFO[0]}}" -eq 4 && "${{BASH_VERSINFO[1]}}" -ge 4 || "${{BASH_VERSINFO[0]}}" -gt 4 ]]; then
    complete -F _sbx_with_profiles -o nosort -o bashdefault -o default sbx
else
    complete -F _sbx_with_profiles -o bashdefault -o default sbx
fi
"#,
        builtins = builtin_names(),
        with_value = with_value.join("|"),
    )
}

/// zsh: clap's `_arguments` specs complete a `NAME|PATH` value with `_default` (files);
/// they call `_sbx_profiles` instead, defined before the script's last lines run `_sbx`.
fn zsh(text: String) -> String {
    let text = text.replace(":NAME|PATH:_default", ":NAME|PATH:_sbx_profiles");
    // `profile show`'s positional names: `'*::names -- HELP:_default' \`.
    let text: String = text
        .split_inclusive('\n')
        .map(|line| match line.starts_with("'*::names -- ") {
            true => line.replace(":_default'", ":_sbx_profiles'"),
            false => line.to_string(),
        })
        .collect();
    let function = format!(
        r#"(( $+functions[_sbx_profiles] )) ||
_sbx_profiles() {{
    if [[ $PREFIX == */* || $PREFIX == [.~]* ]]; then
        _files
        return
    fi
    local dir=${{XDG_CONFIG_HOME:-}}
    [[ $dir == /* ]] || dir=$HOME/.config
    local -a names
    names=({builtins} $dir/sbx/profiles/*.toml(N-.:t:r))
    compadd -a names
}}

"#,
        builtins = builtin_names()
    );
    match text.rfind("\nif [ \"$funcstack[1]\" = \"_sbx\" ]") {
        Some(at) => format!("{}\n{function}{}", &text[..at], &text[at + 1..]),
        None => format!("{function}{text}"),
    }
}

/// fish: names (described as built-in or user) for `-p`/`--profile` and `profile show`.
fn fish(text: String) -> String {
    let mut out = String::new();
    for line in text.lines() {
        out.push_str(line);
        // clap's entry for the option: `-r` (a value) with files; ours lists the names, and
        // files for a word with a `/`.
        if line.contains(" -s p -l profile ") && line.ends_with(" -r") {
            out.push_str(" -f -a \"(__fish_sbx_profiles)\"");
        }
        out.push('\n');
    }
    out.push_str(&format!(
        r#"
function __fish_sbx_profiles
    set -l tok (commandline -ct)
    if string match -q -- '*/*' $tok; or string match -q -- '.*' $tok; or string match -q -- '~*' $tok
        __fish_complete_path $tok
        return
    end
    printf '%s\tbuilt-in\n' {builtins}
    set -l dir $XDG_CONFIG_HOME
    string match -q -- '/*' "$dir"; or set dir $HOME/.config
    for f in $dir/sbx/profiles/*.toml
        test -f $f; and printf '%s\tuser\n' (basename $f .toml)
    end
end
# The value after -p or --profile among sbx's options (clap's own conditions are false
# while an option lacks its value).
function __fish_sbx_profile_value
    set -l cmd (commandline -opc)
    contains -- $cmd[-1] -p --profile; or return 1
    set -e cmd[-1]
    set -e cmd[1]
    argparse -s (__fish_sbx_global_optspecs) -- $cmd 2>/dev/null; or return 1
    not set -q argv[1]
end
complete -c sbx -n __fish_sbx_profile_value -f -a "(__fish_sbx_profiles)"
complete -c sbx -n "__fish_sbx_using_subcommand profile; and __fish_seen_subcommand_from show" -f -a "(__fish_sbx_profiles)"
"#,
        builtins = builtin_names()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scripts clap_complete writes change with its versions: each hook must still land.
    #[test]
    fn hooks_land_in_the_generated_scripts() {
        let bash = String::from_utf8(script(Shell::Bash)).unwrap();
        assert!(bash.contains("complete -F _sbx_with_profiles"));
        assert!(
            !bash.contains("complete -F _sbx "),
            "clap's registration is replaced"
        );
        let zsh = String::from_utf8(script(Shell::Zsh)).unwrap();
        // The --profile (-p and --profile) of a run, `sbx why` and `sbx learn`.
        assert_eq!(zsh.matches(":NAME|PATH:_sbx_profiles'").count(), 6, "{zsh}");
        assert!(!zsh.contains(":NAME|PATH:_default"));
        assert!(
            zsh.contains("merged in order:_sbx_profiles'"),
            "profile show: {zsh}"
        );
        let fish = String::from_utf8(script(Shell::Fish)).unwrap();
        assert!(
            fish.contains("-l profile ") && fish.contains("-r -f -a \"(__fish_sbx_profiles)\"")
        );
    }
}
