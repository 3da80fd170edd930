//! Fuzzed input (issue 5): the profile loader, the planner and the command line never panic
//! and never hang, whatever they are given; every rejection is an error value, which sbx
//! reports as one message and exit 125 without running anything.
//!
//! proptest runs a fixed budget of cases per property (`SBX_FUZZ_CASES` raises it outside CI;
//! under `CI=true` the fixed budget is kept). Failing inputs are printed, shrunk; nothing is
//! written to the source tree.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use common::{Rng, error_lines, run_keep, soak, unique_number};
use sbx::cli::Cli;
use sbx::plan::{Plan, RunOptions};
use sbx::profile::{BUILTIN, Loader, ProfileFile, Vars};

// ---- budget and harness ----

/// Cases per property when nothing raises it: the whole file runs in a few seconds.
const DEFAULT_CASES: u32 = 512;
/// Longer than any input may take to load and plan: beyond it the input "hangs".
const HANG_LIMIT: Duration = Duration::from_secs(10);

fn cases() -> u32 {
    static CASES: OnceLock<u32> = OnceLock::new();
    *CASES.get_or_init(|| {
        let asked = std::env::var("SBX_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse::<u32>().ok());
        let ci = common::ci();
        let n = match asked {
            Some(n) if !ci => n,
            _ => DEFAULT_CASES,
        };
        if ci {
            eprintln!(
                "fuzz budget: {n} cases per property (fixed under CI=true{})",
                if asked.is_some() {
                    "; SBX_FUZZ_CASES ignored"
                } else {
                    ""
                }
            );
        } else {
            eprintln!("fuzz budget: {n} cases per property (SBX_FUZZ_CASES raises it)");
        }
        n
    })
}

fn config() -> Config {
    Config {
        cases: cases(),
        // Never write regression files into the source tree: the failing input is printed.
        failure_persistence: None,
        max_shrink_iters: 256,
        ..Config::default()
    }
}

/// Runs `f` on its own thread and fails if it panics or takes longer than HANG_LIMIT.
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(HANG_LIMIT) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what} hangs (no answer within {HANG_LIMIT:?})")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

/// A fixed world for loading and planning: a home, a working directory, a few variables.
struct World {
    root: PathBuf,
    vars: Vars,
}

static WORLD: OnceLock<World> = OnceLock::new();

/// Removes the world's directory when the test binary exits (a static is never dropped).
extern "C" fn remove_world() {
    if let Some(w) = WORLD.get() {
        let _ = std::fs::remove_dir_all(&w.root);
    }
}

fn world() -> &'static World {
    WORLD.get_or_init(|| {
        let root = tempfile::Builder::new()
            .prefix("sbx-fuzz-")
            .tempdir()
            .unwrap()
            .keep();
        // SAFETY: registers a plain function with no preconditions.
        unsafe { libc::atexit(remove_world) };
        for d in ["home", "cwd", "xdg", "profiles", "layers"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let s = |p: &str| root.join(p).display().to_string();
        let env: BTreeMap<String, String> = [
            ("PATH", "/usr/bin:/bin".to_string()),
            ("XDG_CONFIG_HOME", s("xdg")),
            ("FUZZ_SET", "set".to_string()),
            ("LC_ALL", "C".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let vars = Vars {
            home: s("home"),
            cwd: s("cwd"),
            uid: 65534,
            gid: 65534,
            user: "fuzz".into(),
            tmpdir: "/tmp".into(),
            env,
        };
        World { root, vars }
    })
}

// `..default()` keeps this compiling when RunOptions gains a field.
#[allow(clippy::needless_update)]
fn run_options() -> RunOptions {
    RunOptions {
        command: vec!["true".into()],
        landlock_abi: 7,
        // Where the CLI would put a writable overlay's private layers.
        overlay_root: Some(world().root.join("layers")),
        ..RunOptions::default()
    }
}

/// A fresh file name for a profile text.
fn profile_path() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    world().root.join("profiles").join(format!("p{n}.toml"))
}

/// How far an input got through the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Reached {
    /// Rejected by the parser (TOML or clap).
    Rejected,
    /// Parsed; loading (extends, variables) or merging rejected it.
    Parsed,
    /// Loaded and merged; the planner rejected it.
    Loaded,
    /// A plan was built.
    Planned,
}

/// An error as sbx prints it: it must say something, on one line.
fn check_message(e: impl std::fmt::Display, input: &str) {
    let msg = e.to_string();
    assert!(
        !msg.trim().is_empty(),
        "an empty error message for {input:?}"
    );
    assert!(
        !msg.trim_end().contains('\n'),
        "a multi-line error message (sbx prints one line): {msg:?} for {input:?}"
    );
}

/// Loads `name` (alone, then over `default`) and plans each result.
fn load_and_plan(name: &str, input: &str) -> Reached {
    let w = world();
    let loader = Loader::new(w.vars.clone());
    let mut reached = Reached::Parsed;
    for names in [
        vec![name.to_string()],
        vec!["default".to_string(), name.to_string()],
    ] {
        match loader.load_all(&names) {
            Ok(p) => match Plan::build(&p, &w.vars, &run_options()) {
                Ok(_) => reached = reached.max(Reached::Planned),
                Err(e) => {
                    check_message(e, input);
                    reached = reached.max(Reached::Loaded);
                }
            },
            Err(e) => check_message(e, input),
        }
    }
    reached
}

/// Everything sbx does with a profile text before it creates a process: parse it, load it
/// from a file (resolving `extends` and variables), alone and over `default`, and plan each
/// result. Errors are fine; panics and hangs are not.
fn exercise_profile(text: String) -> Reached {
    within("the profile pipeline", move || {
        if let Err(e) = Loader::parse("fuzz.toml", &text) {
            check_message(e, &text);
            return Reached::Rejected;
        }
        let path = profile_path();
        std::fs::write(&path, &text).unwrap();
        let reached = load_and_plan(&path.display().to_string(), &text);
        let _ = std::fs::remove_file(&path);
        reached
    })
}

/// The same for bytes that need not be UTF-8, read from a file as sbx reads profiles.
fn exercise_bytes(bytes: Vec<u8>) -> Reached {
    within("the profile pipeline on raw bytes", move || {
        let lossy = String::from_utf8_lossy(&bytes).into_owned();
        let parsed = Loader::parse("fuzz.toml", &lossy);
        let path = profile_path();
        std::fs::write(&path, &bytes).unwrap();
        let reached = load_and_plan(&path.display().to_string(), &lossy);
        let _ = std::fs::remove_file(&path);
        match parsed {
            Ok(_) => reached,
            Err(e) => {
                check_message(e, &lossy);
                Reached::Rejected
            }
        }
    })
}

/// Runs `f` on `cases()` inputs from `strategy`, fails with the (shrunk) input on a panic or
/// hang, and prints how deep the inputs got.
fn fuzz<S>(name: &str, strategy: S, f: impl Fn(S::Value) -> Reached)
where
    S: Strategy,
    S::Value: Clone + std::fmt::Debug,
{
    let mut runner = TestRunner::new(config());
    let tally = std::cell::RefCell::new(BTreeMap::<Reached, u32>::new());
    let result = runner.run(&strategy, |v| {
        let r = f(v);
        *tally.borrow_mut().entry(r).or_default() += 1;
        Ok(())
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    eprintln!("{name}: {} cases, reached {:?}", cases(), tally.borrow());
}

// ---- generators ----

/// Values that mean something to sbx somewhere: paths, variables, sizes, durations, modes.
const INTERESTING: &[&str] = &[
    "",
    "/",
    "//",
    "/..",
    "/tmp/../etc",
    "./x",
    "relative",
    "/usr",
    "/etc?",
    "/proc",
    "/dev",
    "/dev/null",
    "/usr:/",
    "/usr:/usr:/x",
    "/nonexistent-fuzz?",
    "/nonexistent-fuzz",
    ":",
    "?",
    "${HOME}",
    "${CWD}",
    "${UID}",
    "${USER}",
    "${TMPDIR}",
    "${env:FUZZ_SET}",
    "${env:NOT_SET_EVER}",
    "${",
    "${}",
    "${nope}",
    "$$",
    "$",
    "${HOME}/.cargo?",
    "10s",
    "0",
    "0s",
    "-1",
    "1ns",
    "18446744073709551615",
    "18446744073709551615s",
    "584942417355y",
    "99999999999999999999T",
    "16E",
    "1G",
    "512M",
    "unlimited",
    "required",
    "best-effort",
    "off",
    "none",
    "host",
    "proxy",
    "minimal",
    "default",
    "errno",
    "kill",
    "log",
    "ptrace",
    "no_such_syscall",
    "*",
    "LC_*",
    "example.com:443",
    "*.example.com",
    "[::1]:80",
    "0.0.0.0:0",
    "sbx",
    "a/b",
    "strict",
    "net-on",
    "ci",
    "rw",
    "ro",
    "tmp",
];

/// Every key a profile may have, and some it may not.
const KEYS: &[&str] = &[
    "description",
    "extends",
    "pid",
    "net",
    "ipc",
    "uts",
    "cgroup",
    "ro",
    "rw",
    "tmpfs",
    "dirs",
    "symlinks",
    "files",
    "dev",
    "proc",
    "keep",
    "set",
    "unset",
    "hostname",
    "new_session",
    "chdir",
    "map_root",
    "as_pid_1",
    "mode",
    "allow",
    "proxy_port",
    "connect_ports",
    "bind_ports",
    "wall_time",
    "kill_grace",
    "memory",
    "processes",
    "open_files",
    "file_size",
    "cpu_time",
    "stack",
    "core",
    "tmpfs_size",
    "cpus",
    "landlock",
    "seccomp",
    "nested_userns",
    "scope_abstract_sockets",
    "deny",
    "action",
    "changes",
    "overlay",
    "src",
    "dst",
    "lower",
    "pty",
    "unknown_key",
    "\"/quoted/key\"",
    "a.b",
];

const SECTIONS: &[&str] = &[
    "[namespaces]",
    "[filesystem]",
    "[filesystem.symlinks]",
    "[filesystem.files]",
    "[env]",
    "[env.set]",
    "[process]",
    "[network]",
    "[limits]",
    "[security]",
    "[seccomp]",
    "[nosuch]",
    "[[filesystem]]",
    "[limits.limits]",
    "[[filesystem.overlay]]",
    "[terminal]",
];

/// A TOML basic string holding `s` (JSON's escapes are TOML's).
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        any::<bool>().prop_map(|b| b.to_string()),
        prop::sample::select(INTERESTING).prop_map(quoted),
        "[a-zA-Z0-9/.:?*${}_ -]{0,24}".prop_map(|s| quoted(&s)),
        any::<String>().prop_map(|s| quoted(&s)),
    ]
}

/// A right-hand side: a scalar, an array, an inline table, or garbage.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => scalar(),
        2 => prop::collection::vec(scalar(), 0..5).prop_map(|v| format!("[{}]", v.join(", "))),
        1 => prop::collection::vec((prop::sample::select(INTERESTING), scalar()), 0..4).prop_map(
            |kv| {
                let items: Vec<String> =
                    kv.iter().map(|(k, v)| format!("{} = {v}", quoted(k))).collect();
                format!("{{ {} }}", items.join(", "))
            }
        ),
        1 => "\\PC{0,16}",
    ]
}

#[derive(Clone, Debug)]
enum Mutation {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    ReplaceValue(usize, String),
    InsertKey(usize, String, String),
    InsertSection(usize, String),
    ReplaceLine(usize, String),
    Truncate(usize),
    /// Replaces the j-th string of the i-th line that has one: keeps the TOML valid and the
    /// type right, so that the input gets past the parser into loading and planning.
    ReplaceString(usize, usize, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let idx = 0usize..10_000;
    prop_oneof![
        1 => idx.clone().prop_map(Mutation::Delete),
        1 => idx.clone().prop_map(Mutation::Duplicate),
        1 => (idx.clone(), idx.clone()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        3 => (idx.clone(), value()).prop_map(|(i, v)| Mutation::ReplaceValue(i, v)),
        2 => (
            idx.clone(),
            prop_oneof![
                prop::sample::select(KEYS).prop_map(str::to_string),
                "[a-z_]{1,10}"
            ],
            value()
        )
            .prop_map(|(i, k, v)| Mutation::InsertKey(i, k, v)),
        1 => (idx.clone(), prop::sample::select(SECTIONS))
            .prop_map(|(i, s)| Mutation::InsertSection(i, s.to_string())),
        1 => (idx.clone(), "\\PC{0,40}").prop_map(|(i, l)| Mutation::ReplaceLine(i, l)),
        1 => idx.clone().prop_map(Mutation::Truncate),
        6 => (
            idx.clone(),
            idx,
            prop_oneof![
                3 => prop::sample::select(INTERESTING).prop_map(str::to_string),
                1 => "[a-zA-Z0-9/.:?*${}_ -]{0,24}",
                1 => any::<String>(),
            ]
        )
            .prop_map(|(i, j, s)| Mutation::ReplaceString(i, j, s)),
    ]
}

/// Byte ranges of the basic strings (`"..."`, quotes included) in a line.
fn string_spans(line: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match (start, c) {
            (None, '#') => break,
            (None, '"') => start = Some(i),
            (Some(_), '\\') if !escaped => {
                escaped = true;
                continue;
            }
            (Some(a), '"') if !escaped => {
                out.push((a, i + 1));
                start = None;
            }
            _ => {}
        }
        escaped = false;
    }
    out
}

fn apply(text: &str, muts: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for m in muts {
        let n = lines.len().max(1);
        match m {
            Mutation::Delete(i) => {
                if !lines.is_empty() {
                    lines.remove(i % n);
                }
            }
            Mutation::Duplicate(i) => {
                if !lines.is_empty() {
                    let l = lines[i % n].clone();
                    lines.insert(i % n, l);
                }
            }
            Mutation::Swap(a, b) => {
                if !lines.is_empty() {
                    lines.swap(a % n, b % n);
                }
            }
            Mutation::ReplaceValue(i, v) => {
                // The i-th line that has a value, if any.
                let with_values: Vec<usize> = (0..lines.len())
                    .filter(|&k| lines[k].contains('=') && !lines[k].trim_start().starts_with('#'))
                    .collect();
                if !with_values.is_empty() {
                    let k = with_values[i % with_values.len()];
                    let key = lines[k].split('=').next().unwrap().trim_end().to_string();
                    lines[k] = format!("{key} = {v}");
                }
            }
            Mutation::InsertKey(i, k, v) => {
                lines.insert(i % (lines.len() + 1), format!("{k} = {v}"))
            }
            Mutation::InsertSection(i, s) => lines.insert(i % (lines.len() + 1), s.clone()),
            Mutation::ReplaceLine(i, l) => {
                if lines.is_empty() {
                    lines.push(l.clone());
                } else {
                    lines[i % n] = l.clone();
                }
            }
            Mutation::ReplaceString(i, j, new) => {
                let with_strings: Vec<usize> = (0..lines.len())
                    .filter(|&k| !string_spans(&lines[k]).is_empty())
                    .collect();
                if !with_strings.is_empty() {
                    let k = with_strings[i % with_strings.len()];
                    let spans = string_spans(&lines[k]);
                    let (a, b) = spans[j % spans.len()];
                    lines[k].replace_range(a..b, &quoted(new));
                }
            }
            Mutation::Truncate(i) => {
                let joined = lines.join("\n");
                let mut cut = i % (joined.len() + 1);
                while !joined.is_char_boundary(cut) {
                    cut -= 1;
                }
                lines = joined[..cut].lines().map(str::to_string).collect();
            }
        }
    }
    lines.join("\n") + "\n"
}

// ---- properties ----

#[test]
fn arbitrary_bytes_never_panic_the_loader() {
    fuzz(
        "arbitrary bytes",
        prop::collection::vec(any::<u8>(), 0..1024),
        exercise_bytes,
    );
}

#[test]
fn arbitrary_strings_never_panic_the_loader() {
    fuzz("arbitrary strings", "\\PC{0,400}", exercise_profile);
}

#[test]
fn toml_shaped_noise_never_panics_the_pipeline() {
    let line = prop_oneof![
        prop::sample::select(SECTIONS).prop_map(str::to_string),
        (prop::sample::select(KEYS), value()).prop_map(|(k, v)| format!("{k} = {v}")),
    ];
    fuzz(
        "TOML-shaped noise",
        prop::collection::vec(line, 0..16),
        |lines| exercise_profile(lines.join("\n")),
    );
}

#[test]
fn mutated_builtin_profiles_never_panic_the_pipeline() {
    fuzz(
        "mutated built-in profiles",
        (0..BUILTIN.len(), prop::collection::vec(mutation(), 1..4)),
        |(which, muts)| exercise_profile(apply(BUILTIN[which].text, &muts)),
    );
}

/// Only the strings of the built-ins replaced: the TOML stays valid and typed, so nearly
/// every case reaches variable expansion, merging and the planner.
#[test]
fn builtin_profiles_with_replaced_strings_never_panic_the_pipeline() {
    let replace = (
        0usize..10_000,
        0usize..10_000,
        prop_oneof![
            3 => prop::sample::select(INTERESTING).prop_map(str::to_string),
            1 => "[a-zA-Z0-9/.:?*${}_ -]{0,24}",
            1 => any::<String>(),
        ],
    )
        .prop_map(|(i, j, s)| Mutation::ReplaceString(i, j, s));
    fuzz(
        "built-ins with replaced strings",
        (0..BUILTIN.len(), prop::collection::vec(replace, 1..4)),
        |(which, muts)| exercise_profile(apply(BUILTIN[which].text, &muts)),
    );
}

#[test]
fn random_argv_never_panics_the_cli() {
    fuzz(
        "random argv",
        prop::collection::vec(arg(), 0..8),
        exercise_argv,
    );
}

/// Options, subcommands and values of the command line, and noise.
const FLAGS: &[&str] = &[
    "-p",
    "--profile",
    "--bind",
    "--ro-bind",
    "--tmpfs",
    "--setenv",
    "--unsetenv",
    "--chdir",
    "--hostname",
    "--net",
    "--map-root",
    "--as-pid-1",
    "--timeout",
    "--memory",
    "--limit",
    "--json-status",
    "-v",
    "-vv",
    "-q",
    "--quiet",
    "-qv",
    "-h",
    "--help",
    "-V",
    "--version",
    "--",
    "-",
    "profile",
    "list",
    "show",
    "check",
    "help",
    "--bogus",
    "--limit=processes=1",
    "--net=proxy",
    "processes=64",
    "wall_time=1s",
    "kill_grace=0s",
    "cpus=1.5",
    "cgroup=off",
    "nokey=1",
    "A=1",
    "=x",
    "true",
];

fn arg() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(FLAGS).prop_map(str::to_string),
        3 => prop::sample::select(INTERESTING).prop_map(str::to_string),
        1 => "--?[a-z][a-z-]{0,12}(=[a-z0-9]{0,4})?",
        1 => "\\PC{0,12}",
    ]
}

/// Parses argv as sbx does, then builds the run's profile and plan without running anything.
fn exercise_argv(args: Vec<String>) -> Reached {
    within("the command line", move || {
        let input = format!("{args:?}");
        let argv: Vec<OsString> = std::iter::once("sbx".into())
            .chain(args.iter().map(OsString::from))
            .collect();
        let cli = match Cli::try_parse_from(argv) {
            Ok(c) => c,
            // clap's own messages (usage, help) span lines; sbx prints them as clap renders.
            Err(_) => return Reached::Rejected,
        };
        let w = world();
        let loader = Loader::new(w.vars.clone());
        if cli.sub.is_some() {
            return match loader.load_all(&["default".to_string()]) {
                Ok(_) => Reached::Loaded,
                Err(_) => Reached::Parsed,
            };
        }
        let names = if cli.run.profiles.is_empty() {
            vec!["default".to_string()]
        } else {
            cli.run.profiles.clone()
        };
        let overlay = match cli.run.to_layer(&w.vars) {
            Ok(o) => o,
            Err(e) => {
                check_message(e, &input);
                return Reached::Parsed;
            }
        };
        let merged = match loader.load_all(&names) {
            Ok(m) => m,
            Err(e) => {
                check_message(e, &input);
                return Reached::Parsed;
            }
        };
        let profile: ProfileFile = sbx::profile::merge(merged, overlay);
        let mut opts = run_options();
        if !cli.run.command.is_empty() {
            opts.command = cli.run.command.clone();
        }
        match Plan::build(&profile, &w.vars, &opts) {
            Ok(_) => Reached::Planned,
            Err(e) => {
                check_message(e, &input);
                Reached::Loaded
            }
        }
    })
}

// ---- fixed hostile inputs ----

#[test]
fn deeply_nested_profiles_are_errors_not_crashes() {
    let _ = cases();
    for text in [
        format!("a = {}", "[".repeat(100_000)),
        format!("a = {}{}", "[".repeat(50_000), "]".repeat(50_000)),
        format!("a = {}", "{b=".repeat(50_000)),
        format!("[{}b]", "a.".repeat(50_000)),
        format!("description = \"{}\"", "x".repeat(1 << 20)),
        "extends = [\"default\"]\n".repeat(10_000),
    ] {
        let len = text.len();
        let r = within("a deeply nested profile", move || {
            let r = Loader::parse("deep.toml", &text).map(|_| ());
            exercise_profile(text);
            r
        });
        if let Err(e) = r {
            let msg = e.to_string();
            assert!(msg.starts_with("deep.toml:"), "{len} bytes: {msg}");
        }
    }
}

#[test]
fn extends_cycles_and_self_references_are_errors() {
    let w = world();
    let a = w.root.join("profiles").join("cycle-a.toml");
    let b = w.root.join("profiles").join("cycle-b.toml");
    std::fs::write(&a, "extends = [\"cycle-b.toml\"]\n").unwrap();
    std::fs::write(&b, "extends = [\"cycle-a.toml\"]\n").unwrap();
    let me = w.root.join("profiles").join("self.toml");
    std::fs::write(&me, "extends = [\"self.toml\", \"default\"]\n").unwrap();
    for p in [&a, &me] {
        let name = p.display().to_string();
        let r = within("an extends cycle", move || {
            let loader = Loader::new(world().vars.clone());
            loader.load(&name).map(|_| ()).map_err(|e| e.to_string())
        });
        let e = r.expect_err("a cycle is an error");
        assert!(e.contains("cyclic"), "{e}");
    }
}

// ---- the real binary ----

/// A random word of 1 to 10 lowercase letters.
fn word(r: &mut Rng) -> String {
    let len = 1 + r.below(10);
    (0..len)
        .map(|_| (b'a' + r.below(26) as u8) as char)
        .collect()
}

/// One bad option (with its value), chosen at random.
fn bad_option(r: &mut Rng) -> Vec<String> {
    // Random letters, always made invalid (a random word could spell `none`, `off` or `12t`).
    let w = word(r);
    let v: Vec<String> = match r.below(16) {
        0 => vec![format!("--no-such-{w}")],
        1 => vec!["--net".into(), format!("{w}-x")],
        2 => vec!["--timeout".into(), format!("{w}x")],
        3 => vec!["--memory".into(), format!("12{w}!")],
        4 => vec!["--limit".into(), format!("no_{w}=1")],
        5 => vec!["--limit".into(), format!("processes={w}-x")],
        6 => vec!["--bind".into(), format!("/nonexistent-{w}")],
        7 => vec!["--tmpfs".into(), w],
        8 => vec!["--chdir".into(), w],
        9 => vec!["--setenv".into(), w],
        10 => vec!["--profile".into(), format!("no-such-profile-{w}")],
        11 => vec!["--hostname".into(), "h".repeat(65 + r.below(100))],
        12 => vec!["--ro-bind".into(), format!("/tmp/../{w}")],
        13 => vec!["--limit".into(), format!("cgroup={w}-x")],
        14 => vec!["--limit".into(), "tmpfs_size=0".into()],
        // A short option that does not exist (-V is --version).
        _ => vec![format!("-{}", ['A', 'B', 'x', 'y', 'Z'][r.below(5)])],
    };
    v
}

/// A valid option, to mix with the bad ones.
fn good_option(r: &mut Rng) -> Vec<String> {
    match r.below(6) {
        0 => vec!["-q".into()],
        1 => vec!["--net".into(), "none".into()],
        2 => vec!["--setenv".into(), "A=1".into()],
        3 => vec!["--tmpfs".into(), "/scratch".into()],
        4 => vec!["--limit".into(), "processes=64".into()],
        _ => vec!["--timeout".into(), "1m".into()],
    }
}

/// The real binary with random bad arguments: 125 with one message and the command never
/// ran, or 0 for --help/--version (which run nothing either).
#[test]
fn bad_command_lines_exit_125_with_one_message_and_run_nothing() {
    let n = if soak() { 200 } else { 24 };
    eprintln!("bad argv runs: {n}");
    let mut r = Rng::new("bad argv runs");
    for i in 0..n {
        let mut args = Vec::new();
        for _ in 0..1 + r.below(3) {
            if r.below(3) == 0 {
                args.extend(good_option(&mut r));
            }
            args.extend(bad_option(&mut r));
        }
        let help = i % 12 == 11;
        if help {
            let at = r.below(args.len() + 1);
            args.insert(at, ["--help", "-h", "--version", "-V"][r.below(4)].into());
        }
        args.extend(["--".into(), "touch".into(), "ran-marker".into()]);
        let s = common::sbx(&args);
        let work = s.work.path().to_path_buf();
        let (ran, _work) = run_keep(s);
        let ctx = format!("sbx {args:?}: {ran:?}");
        assert!(!ran.stderr.contains("panicked"), "{ctx}");
        assert!(!work.join("ran-marker").exists(), "the command ran: {ctx}");
        if ran.code == 0 {
            assert!(help, "exit 0 without --help/--version: {ctx}");
            assert!(!ran.stdout.is_empty(), "{ctx}");
        } else {
            assert_eq!(ran.code, 125, "{ctx}");
            assert_eq!(error_lines(&ran.stderr).len(), 1, "one message: {ctx}");
        }
    }
}

/// Durations too large for the clock are refused (125) or honoured; sbx must not crash
/// (a panic exits 101, or aborts with 134 in release builds) with a sandbox running, and
/// whatever happens, nothing of the sandbox may survive.
#[test]
fn durations_beyond_the_clock_do_not_crash_sbx() {
    // A sleep no other process runs: it marks the sandbox's process on the host.
    let marker = unique_number();
    let ignore_term = format!("trap '' TERM; sleep {marker}");
    let cases: [&[&str]; 3] = [
        &["--timeout", "18446744073709551615s", "--", "true"],
        &["--limit", "wall_time=18446744073709551615s", "--", "true"],
        &[
            "--timeout",
            "200ms",
            "--limit",
            "kill_grace=18446744073709551615s",
            "--",
            "sh",
            "-c",
            &ignore_term,
        ],
    ];
    let mut failures = Vec::new();
    for args in cases {
        let (ran, _work) = run_keep(common::sbx(args));
        let ok = matches!(ran.code, 0 | 124 | 125) && !ran.stderr.contains("panicked");
        if !ok {
            failures.push(format!("sbx {args:?}: {ran:?}"));
        }
    }
    let sleep = format!("sleep {marker}");
    let survivors = common::survivors(Duration::from_secs(3), |c| c == sleep);
    assert!(
        survivors.is_empty(),
        "sandbox processes survived sbx: {survivors:?}"
    );
    assert!(failures.is_empty(), "sbx crashed:\n{}", failures.join("\n"));
}
