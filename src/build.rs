//! Build script: the built-in profiles as JSON, and the text order for the release link.
//!
//! **Profiles.** `profiles/*.toml` are embedded twice: as written, for `profile show` and
//! error messages, and converted to JSON here, which is what a start parses. serde_json's
//! deserializer is a small part of the code the TOML parser is, and one start of
//! `sbx --profile net-off` then runs no TOML code at all unless the user has profiles of
//! their own: 92 fewer functions on the start's path, Σ PSS at the peak 1,640-1,644 → 1,560-1,564
//! KiB and Σ VmHWM 2,616-2,620 → 2,344 KiB (benches/README.md, "Code size and the stacks").
//!
//! **Text order.** The release link gets the text order in `.cargo/text-order.txt`.
//!
//! The kernel maps a binary's code 64 KiB at a time around each page a process first runs,
//! so the functions one start of sbx calls, scattered over 2.5 MiB of text, keep nearly all
//! of it resident in the supervisor and again in init. Linking those functions together, in
//! the order a start calls them, keeps that to about what runs (benches/README.md, "Text
//! order"). `benches/text-order.sh` writes the list; it names symbols, whose hashes follow
//! the rustc version and the crates' versions, so a list from another toolchain matches
//! nothing and the binary is linked as before: slower to map, never wrong.
//!
//! Only for release builds for x86_64-unknown-linux-gnu, and only where the linker this
//! build uses reads the list: lld does (rustc links with its own from 1.90 on), the system's
//! GNU ld does not. Rather than guess from versions and flags, a trial link of an empty
//! program with the build's own flags and linker asks it. `SBX_TEXT_ORDER=off` links
//! without the list.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const LIST: &str = ".cargo/text-order.txt";

fn main() {
    builtin_profiles_as_json();
    text_order();
}

/// Writes `OUT_DIR/profiles/NAME.json` for each `profiles/NAME.toml`. A profile that is not
/// valid TOML fails the build, naming it.
fn builtin_profiles_as_json() {
    println!("cargo:rerun-if-changed=profiles");
    let dir = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join("profiles");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap_or_default()).join("profiles");
    fs::create_dir_all(&out).expect("OUT_DIR/profiles");
    for entry in fs::read_dir(&dir).expect("profiles/") {
        let path = entry.expect("profiles/ entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = fs::read_to_string(&path).expect("a profile's text");
        let value: toml::Value = toml::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not valid TOML: {e}", path.display()));
        let json = serde_json::to_string(&value).expect("TOML values convert to JSON");
        let name = path.with_extension("json");
        let name = name.file_name().expect("a file name");
        fs::write(out.join(name), json).expect("OUT_DIR/profiles/NAME.json");
    }
}

fn text_order() {
    let var = |name: &str| env::var(name).unwrap_or_default();
    let list = Path::new(&var("CARGO_MANIFEST_DIR")).join(LIST);
    // Cargo reruns a script whose watched path is missing at every build, and never notices a
    // file created in a directory it does not watch: watch the list, or else its directory.
    if list.is_file() {
        println!("cargo:rerun-if-changed={LIST}");
    } else if list.parent().is_some_and(Path::is_dir) {
        println!("cargo:rerun-if-changed=.cargo");
    } else {
        println!("cargo:rerun-if-changed=src/build.rs");
    }
    println!("cargo:rerun-if-env-changed=SBX_TEXT_ORDER");
    if var("PROFILE") != "release"
        || var("TARGET") != "x86_64-unknown-linux-gnu"
        || var("SBX_TEXT_ORDER") == "off"
        || !list.is_file()
        || !linker_reads_order_files(&var("RUSTC"), &PathBuf::from(var("OUT_DIR")))
    {
        return;
    }
    // -Xlinker passes the path whole: -Wl, would split it at any comma.
    println!("cargo:rustc-link-arg-bins=-Xlinker");
    println!(
        "cargo:rustc-link-arg-bins=--symbol-ordering-file={}",
        list.display()
    );
    // A name the list has and this build lacks is expected after any version change.
    println!("cargo:rustc-link-arg-bins=-Xlinker");
    println!("cargo:rustc-link-arg-bins=--no-warn-symbol-ordering");
}

/// Links an empty program the way this build links sbx (its RUSTFLAGS, its configured
/// linker, the target), with an empty ordering file: whether the linker takes the option.
fn linker_reads_order_files(rustc: &str, out_dir: &Path) -> bool {
    let source = out_dir.join("order_probe.rs");
    let empty = out_dir.join("order_probe.txt");
    if fs::write(&source, "fn main() {}\n").is_err() || fs::write(&empty, "").is_err() {
        return false;
    }
    let mut probe = Command::new(rustc);
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    probe.args(flags.split('\x1f').filter(|f| !f.is_empty()));
    if let Ok(linker) = env::var("RUSTC_LINKER") {
        probe.arg(format!("-Clinker={linker}"));
    }
    probe
        .args(["--edition=2021", "--crate-type=bin", "--target"])
        .arg(env::var("TARGET").unwrap_or_default())
        .arg("-o")
        .arg(out_dir.join("order_probe"))
        .arg("-Clink-arg=-Xlinker")
        .arg(format!(
            "-Clink-arg=--symbol-ordering-file={}",
            empty.display()
        ))
        .arg(&source)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    probe.status().is_ok_and(|status| status.success())
}
