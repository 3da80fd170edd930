//! Build script: hands the release link the text order in `.cargo/text-order.txt`.
//!
//! The kernel maps a binary's code 64 KiB at a time around each page a process first runs,
//! so the functions one start of sbx calls, scattered over 2.5 MiB of text, keep nearly all
//! of it resident in the supervisor and again in init. Linking those functions together, in
//! the order a start calls them, keeps that to about what runs (benches/README.md, "Text
//! order"). `benches/text-order.sh` writes the list; it names symbols, whose hashes follow
//! the rustc version and the crates' versions, so a list from another toolchain matches
//! nothing and the binary is linked as before: slower to map, never wrong.
//!
//! Only where the linker is known to read the list: rustc ≥ 1.90 links
//! x86_64-unknown-linux-gnu with its own lld (earlier ones use the system's ld, which has
//! no such option), the toolchain carries that lld (a distribution's rustc may not, and then
//! links with the system's ld), and no linker or linker feature of the user's choosing is
//! configured. `SBX_TEXT_ORDER=off` links without it.

use std::env;
use std::path::Path;
use std::process::Command;

const LIST: &str = ".cargo/text-order.txt";

fn main() {
    let var = |name: &str| env::var(name).unwrap_or_default();
    let list = Path::new(&var("CARGO_MANIFEST_DIR")).join(LIST);
    // Cargo reruns a script whose watched path is missing at every build: watch the list only
    // where there is one (a packaged crate has none).
    if list.is_file() {
        println!("cargo:rerun-if-changed={LIST}");
    } else {
        println!("cargo:rerun-if-changed=src/build.rs");
    }
    println!("cargo:rerun-if-env-changed=SBX_TEXT_ORDER");
    let user_linker = !var("RUSTC_LINKER").is_empty()
        || ["linker", "link-self-contained", "fuse-ld"]
            .iter()
            .any(|flag| var("CARGO_ENCODED_RUSTFLAGS").contains(flag));
    if var("PROFILE") != "release"
        || var("TARGET") != "x86_64-unknown-linux-gnu"
        || var("SBX_TEXT_ORDER") == "off"
        || user_linker
        || !list.is_file()
        || !rustc_links_with_lld(&var("RUSTC"))
    {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        list.display()
    );
    // A name the list has and this build lacks is expected after any version change.
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}

/// rustc 1.90 made its bundled lld the default linker on x86_64-unknown-linux-gnu, where the
/// toolchain ships it (rustup's does, beside the target's libraries).
fn rustc_links_with_lld(rustc: &str) -> bool {
    let output = |arg: &str| {
        Command::new(rustc)
            .arg(arg)
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let sysroot = output("--print=sysroot");
    let bundled =
        Path::new(&sysroot).join("lib/rustlib/x86_64-unknown-linux-gnu/bin/gcc-ld/ld.lld");
    if sysroot.is_empty() || !bundled.exists() {
        return false;
    }
    let text = output("-vV");
    let Some(release) = text.lines().find_map(|l| l.strip_prefix("release: ")) else {
        return false;
    };
    let mut parts = release
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}
