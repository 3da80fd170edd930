//! The profiles for real tools, each run for real inside sbx as the unprivileged test uid where
//! the tool is installed and usable by it: `make` (a C project), `python` (a venv, pip offline
//! and through the proxy to a loopback index), `node` (npm through the proxy to a loopback
//! registry), `cargo` (an offline build, and the throwaway overlay of ~/.cargo). The `shell`
//! profile, driven through a pty, is in tests/pty.rs.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::http::Index;
use common::{AsTestUid, Ran, Sbx, Workdir, bare, run_keep, usable};

/// A work directory with a `home` in it, for runs that share one project directory.
fn project() -> Workdir {
    let w = Workdir::new();
    w.subdir("home");
    w
}

/// `sbx ARGS... -- sh -c SCRIPT` with the current directory and HOME in `work`.
fn sh_project(work: &Workdir, args: &[&str], script: &str) -> Ran {
    let mut s = bare();
    s.cmd
        .current_dir(work.path())
        .env("HOME", work.path().join("home"))
        .env("TMPDIR", work.path())
        .args(args)
        .args(["--", "sh", "-c", script]);
    run_keep(s).0
}

fn owned_by_test_uid(p: &Path) -> bool {
    std::fs::symlink_metadata(p).unwrap().uid() == common::test_uid()
}

fn write_owned(dir: &Path, rel: &str, content: &str) -> PathBuf {
    let p = dir.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
        let mut d = parent.to_path_buf();
        while d != dir && d.starts_with(dir) {
            common::chown(&d);
            d.pop();
        }
    }
    std::fs::write(&p, content).unwrap();
    common::chown(&p);
    p
}

fn run_report(work: &Workdir, args: &[&str], script: &str) -> (Ran, serde_json::Value) {
    let status = work.path().join("status.json");
    let _ = std::fs::remove_file(&status);
    let status_arg = status.display().to_string();
    let mut all: Vec<&str> = vec!["--json-status", &status_arg];
    all.extend_from_slice(args);
    let r = sh_project(work, &all, script);
    let v = common::read_report(&status, &r);
    (r, v)
}

// ---- 1. make ----

#[test]
fn make_builds_a_c_project() {
    if !usable("/usr/bin/make") || !usable("/usr/bin/cc") {
        common::note_skip(
            "make_builds_a_c_project",
            "make or cc is not installed (or not executable by the test uid)",
        );
        return;
    }
    let w = project();
    let d = w.path();
    write_owned(
        d,
        "main.c",
        "#include <stdio.h>\n#include \"util.h\"\n\
         int main(void) { printf(\"%s %d\\n\", GREETING, answer()); return 0; }\n",
    );
    write_owned(d, "util.h", "int answer(void);\n");
    write_owned(
        d,
        "util.c",
        "#include \"util.h\"\nint answer(void) { return 6 * 7; }\n",
    );
    write_owned(
        d,
        "Makefile",
        "hello: main.o util.o\n\t$(CC) $(LDFLAGS) -o $@ main.o util.o\n\n\
         %.o: %.c util.h\n\t$(CC) $(CFLAGS) -c -o $@ $<\n\n\
         clean:\n\trm -f hello *.o\n",
    );
    // A compiler wrapper in the workspace proves CC is kept; CFLAGS carries the greeting.
    let wrapper = write_owned(
        d,
        "cc-wrapper",
        "#!/bin/sh\necho \"$@\" >> cc.log\nexec cc \"$@\"\n",
    );
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut s = bare();
    s.cmd
        .current_dir(d)
        .env("HOME", d.join("home"))
        .env("CC", d.join("cc-wrapper"))
        .env("CFLAGS", "-O2 -DGREETING=\\\"hello-from-make\\\"")
        .env("MAKEFLAGS", "-j2")
        .args(["--profile", "make", "--", "make"]);
    let (r, _h) = run_keep(s);
    assert_eq!(r.code, 0, "{r:?}");
    for f in ["main.o", "util.o", "hello"] {
        let p = d.join(f);
        assert!(p.exists(), "{f} not on the host: {r:?}");
        assert!(owned_by_test_uid(&p), "{f} is not owned by the test uid");
    }
    let log = std::fs::read_to_string(d.join("cc.log")).expect("CC was not used");
    assert!(log.contains("-DGREETING"), "CFLAGS was not kept: {log}");
    // The binary runs, inside the sandbox and on the host.
    let r = sh_project(&w, &["--profile", "make"], "./hello");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "hello-from-make 42\n", "{r:?}");
    let out = Command::new(d.join("hello"))
        .as_test_uid()
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello-from-make 42\n");
    // make sees its own work as done, and `make clean` removes it on the host.
    let r = sh_project(&w, &["--profile", "make"], "make");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("up to date"), "{r:?}");
    let r = sh_project(&w, &["--profile", "make"], "make clean");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!d.join("hello").exists() && !d.join("main.o").exists());
}

// ---- 2. python ----

const PYTHON: &str = "/usr/bin/python3";

/// Writes a wheel of `tinypkg` 0.1 (ANSWER = 42) by hand: a zip with METADATA, WHEEL, RECORD.
const MKWHEEL: &str = r#"
import base64, hashlib, os, zipfile
files = {
    "tinypkg/__init__.py": b"ANSWER = 42\n",
    "tinypkg-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinypkg\nVersion: 0.1\n",
    "tinypkg-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
def digest(b):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(b).digest()).rstrip(b"=").decode()
record = "".join("%s,%s,%d\n" % (n, digest(b), len(b)) for n, b in files.items())
record += "tinypkg-0.1.dist-info/RECORD,,\n"
os.makedirs("wheels", exist_ok=True)
with zipfile.ZipFile("wheels/tinypkg-0.1-py3-none-any.whl", "w") as z:
    for n, b in files.items():
        z.writestr(n, b)
    z.writestr("tinypkg-0.1.dist-info/RECORD", record)
"#;

fn python_usable(test: &str) -> bool {
    if !usable(PYTHON) {
        common::note_skip(test, "/usr/bin/python3 is not installed");
        return false;
    }
    let r = Command::new(PYTHON)
        .args(["-c", "import venv, ensurepip"])
        .as_test_uid()
        .output()
        .unwrap();
    if !r.status.success() {
        common::note_skip(test, "python3 has no venv/ensurepip (python3-venv)");
        return false;
    }
    true
}

#[test]
fn python_venv_script_and_offline_pip() {
    let test = "python_venv_script_and_offline_pip";
    if !python_usable(test) {
        return;
    }
    let w = project();
    write_owned(
        w.path(),
        "script.py",
        "import os, sys\n\
         open('result.txt', 'w').write('venv=%s proxy=%s https=%s\\n' % (\n\
         sys.prefix != sys.base_prefix, os.environ.get('HTTP_PROXY'), os.environ.get('HTTPS_PROXY')))\n",
    );
    write_owned(w.path(), "mkwheel.py", MKWHEEL);
    let r = sh_project(
        &w,
        &["--profile", "python"],
        "python3 -m venv .venv && .venv/bin/python script.py",
    );
    assert_eq!(r.code, 0, "{r:?}");
    let result = std::fs::read_to_string(w.path().join("result.txt")).unwrap();
    assert_eq!(
        result,
        "venv=True proxy=http://127.0.0.1:3128 https=http://127.0.0.1:3128\n"
    );
    assert!(owned_by_test_uid(&w.path().join(".venv/bin/python")));
    assert!(w.path().join(".venv/pyvenv.cfg").exists());

    // A wheel built by hand, installed with pip without any index.
    let r = sh_project(
        &w,
        &["--profile", "python"],
        "python3 mkwheel.py && .venv/bin/pip install --no-index --find-links wheels tinypkg \
         && .venv/bin/python -c 'import tinypkg; print(\"answer\", tinypkg.ANSWER)'",
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("answer 42"), "{r:?}");
    assert!(
        w.path()
            .join(".venv/lib")
            .read_dir()
            .unwrap()
            .flatten()
            .any(|py| py.path().join("site-packages/tinypkg/__init__.py").exists()),
        "tinypkg is not in the venv on the host"
    );

    // From a source tree, only where the venv can build it offline (setuptools and wheel).
    let r = sh_project(
        &w,
        &["--profile", "python"],
        ".venv/bin/python -c 'import setuptools, wheel'",
    );
    if r.code != 0 {
        common::note_skip(
            test,
            "the venv lacks setuptools or wheel, so a source tree cannot be built offline \
             (the hand-built wheel was installed instead)",
        );
        return;
    }
    write_owned(
        w.path(),
        "src/pyproject.toml",
        "[build-system]\nrequires = [\"setuptools\"]\nbuild-backend = \"setuptools.build_meta\"\n\n\
         [project]\nname = \"srcpkg\"\nversion = \"0.1\"\n",
    );
    write_owned(w.path(), "src/srcpkg/__init__.py", "NAME = 'srcpkg'\n");
    let r = sh_project(
        &w,
        &["--profile", "python"],
        ".venv/bin/pip install --no-index --no-build-isolation ./src \
         && .venv/bin/python -c 'import srcpkg; print(srcpkg.NAME)'",
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("srcpkg"), "{r:?}");
}

#[test]
fn pip_installs_through_the_proxy_from_an_allowed_index_only() {
    let test = "pip_installs_through_the_proxy_from_an_allowed_index_only";
    if !python_usable(test) {
        return;
    }
    let w = project();
    write_owned(w.path(), "mkwheel.py", MKWHEEL);
    let r = sh_project(
        &w,
        &["--profile", "python"],
        "python3 -m venv .venv && python3 mkwheel.py",
    );
    assert_eq!(r.code, 0, "{r:?}");
    let wheel = std::fs::read(w.path().join("wheels/tinypkg-0.1-py3-none-any.whl")).unwrap();
    let index = Index::start();
    index.put(
        "/simple/tinypkg/",
        "text/html",
        b"<html><body><a href=\"/files/tinypkg-0.1-py3-none-any.whl\">tinypkg-0.1-py3-none-any.whl</a></body></html>\n"
            .to_vec(),
    );
    index.put(
        "/files/tinypkg-0.1-py3-none-any.whl",
        "application/octet-stream",
        wheel,
    );
    let install = format!(
        ".venv/bin/pip install --no-cache-dir --retries 0 --timeout 10 --index-url {}/simple/ tinypkg \
         && .venv/bin/python -c 'import tinypkg; print(\"answer\", tinypkg.ANSWER)'",
        index.url()
    );

    // The index is not on the python profile's allowlist: the proxy refuses it.
    let (r, report) = run_report(&w, &["--profile", "python"], &install);
    assert_ne!(r.code, 0, "pip reached a host that is not allowed: {r:?}");
    assert!(index.requests().is_empty(), "{:?}", index.requests());
    assert_eq!(report["network"]["mode"], "proxy", "{report}");
    let denied = report["network"]["proxy"]["denied_hosts"].to_string();
    assert!(denied.contains(&index.allow()), "{report}");

    // Allowed: pip fetches the page and the wheel through the proxy.
    let allow = index.allow();
    let (r, report) = run_report(&w, &["--profile", "python", "--allow", &allow], &install);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("answer 42"), "{r:?}");
    let reqs = index.requests();
    assert!(
        reqs.iter().any(|p| p.starts_with("/simple/tinypkg"))
            && reqs.iter().any(|p| p.ends_with(".whl")),
        "{reqs:?}"
    );
    assert!(
        report["network"]["proxy"]["allowed"].as_u64().unwrap_or(0) >= 2,
        "{report}"
    );
}

// ---- 3. node ----

#[test]
fn node_writes_to_the_workspace_and_sees_the_proxy() {
    if !usable("/usr/bin/node") {
        common::note_skip(
            "node_writes_to_the_workspace_and_sees_the_proxy",
            "node is not installed in /usr/bin",
        );
        return;
    }
    let w = project();
    let r = sh_project(
        &w,
        &["--profile", "node"],
        "node -e 'require(\"fs\").writeFileSync(\"out.txt\", String(6*7))' \
         && node -e 'console.log(\"https\", process.env.HTTPS_PROXY); console.log(\"http\", process.env.HTTP_PROXY)'",
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        std::fs::read_to_string(w.path().join("out.txt")).unwrap(),
        "42"
    );
    assert!(owned_by_test_uid(&w.path().join("out.txt")));
    assert!(
        r.stdout.contains("https http://127.0.0.1:3128\n")
            && r.stdout.contains("http http://127.0.0.1:3128\n"),
        "{r:?}"
    );
    if !usable("/usr/bin/npm") {
        common::note_skip(
            "node_writes_to_the_workspace_and_sees_the_proxy",
            "npm is not installed in /usr/bin",
        );
        return;
    }
    // npm reads the proxy from the environment; the profile's own npm settings are in force.
    let r = sh_project(
        &w,
        &["--profile", "node"],
        "echo \"fund $(npm config get fund)\"; echo \"audit $(npm config get audit)\"; \
         echo \"env $npm_config_update_notifier\"",
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("fund false"), "{r:?}");
    assert!(r.stdout.contains("audit false"), "{r:?}");
}

#[test]
fn npm_installs_through_the_proxy_from_an_allowed_registry_only() {
    let test = "npm_installs_through_the_proxy_from_an_allowed_registry_only";
    if !usable("/usr/bin/node") || !usable("/usr/bin/npm") {
        common::note_skip(test, "node or npm is not installed in /usr/bin");
        return;
    }
    if !usable("/usr/bin/tar") && !usable("/bin/tar") {
        common::note_skip(test, "tar is needed to pack the test package");
        return;
    }
    let index = Index::start();
    // The package, packed on the host.
    let pack = Workdir::new();
    write_owned(
        pack.path(),
        "package/package.json",
        r#"{"name":"tiny-sbx-pkg","version":"1.0.0","main":"index.js"}"#,
    );
    write_owned(pack.path(), "package/index.js", "module.exports = 6 * 7;\n");
    let st = Command::new("tar")
        .current_dir(pack.path())
        .args(["czf", "pkg.tgz", "package"])
        .status()
        .unwrap();
    assert!(st.success());
    let tgz = std::fs::read(pack.path().join("pkg.tgz")).unwrap();
    let tarball = format!("{}/tiny-sbx-pkg/-/tiny-sbx-pkg-1.0.0.tgz", index.url());
    let shasum = Command::new("sha1sum")
        .arg(pack.path().join("pkg.tgz"))
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_default();
    let packument = serde_json::json!({
        "name": "tiny-sbx-pkg",
        "dist-tags": { "latest": "1.0.0" },
        "versions": { "1.0.0": {
            "name": "tiny-sbx-pkg", "version": "1.0.0", "main": "index.js",
            "dist": { "tarball": tarball, "shasum": shasum }
        } }
    });
    index.put(
        "/tiny-sbx-pkg",
        "application/json",
        packument.to_string().into_bytes(),
    );
    index.put(
        "/tiny-sbx-pkg/-/tiny-sbx-pkg-1.0.0.tgz",
        "application/octet-stream",
        tgz,
    );

    let w = project();
    write_owned(
        w.path(),
        "package.json",
        r#"{"name":"proj","version":"1.0.0","private":true}"#,
    );
    let install = format!(
        "npm install --no-audit --no-fund --fetch-retries=0 --registry {}/ tiny-sbx-pkg \
         && node -e 'console.log(\"answer\", require(\"tiny-sbx-pkg\"))'",
        index.url()
    );
    // Not allowed: refused by the proxy, the registry sees nothing.
    let (r, report) = run_report(&w, &["--profile", "node", "--timeout", "60s"], &install);
    assert_ne!(
        r.code, 0,
        "npm reached a registry that is not allowed: {r:?}"
    );
    assert!(index.requests().is_empty(), "{:?}", index.requests());
    assert!(
        report["network"]["proxy"]["denied_hosts"]
            .to_string()
            .contains(&index.allow()),
        "{report}"
    );
    // Allowed: installed into the workspace on the host.
    let allow = index.allow();
    let (r, report) = run_report(
        &w,
        &["--profile", "node", "--allow", &allow, "--timeout", "120s"],
        &install,
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("answer 42"), "{r:?}");
    let installed = w.path().join("node_modules/tiny-sbx-pkg/index.js");
    assert!(installed.exists(), "not installed in the workspace: {r:?}");
    assert!(owned_by_test_uid(&installed));
    assert!(w.path().join("package-lock.json").exists());
    assert!(
        index.requests().iter().any(|p| p.ends_with(".tgz")),
        "{:?}",
        index.requests()
    );
    assert!(
        report["network"]["proxy"]["allowed"].as_u64().unwrap_or(0) >= 2,
        "{report}"
    );
}

// ---- 4. cargo ----

/// The mounts section of `--explain` as (what, path) pairs.
fn explained_mounts(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut inside = false;
    for l in text.lines() {
        if l == "mounts:" {
            inside = true;
            continue;
        }
        if !inside {
            continue;
        }
        let t = l.trim_start();
        let Some((n, body)) = t.split_once(". ") else {
            break;
        };
        if n.parse::<usize>().is_err() {
            break;
        }
        let body = body.rsplit_once(" [").map(|(b, _)| b).unwrap_or(body);
        let body = body.split_once(" <- ").map(|(b, _)| b).unwrap_or(body);
        let slash = body.find(" /").expect("a path");
        out.push((body[..slash].to_string(), body[slash + 1..].to_string()));
    }
    out
}

#[test]
fn cargo_profile_explain_without_a_cargo_home() {
    let mut s = bare();
    let home = s.work.path().join("home");
    s.cmd
        .args(["--profile", "cargo", "--explain", "--", "cargo", "build"]);
    let (r, _w) = run_keep(s);
    assert_eq!(r.code, 0, "a missing ~/.cargo is fine: {r:?}");
    assert!(r.stderr.trim().is_empty(), "{r:?}");
    let mounts = explained_mounts(&r.stdout);
    assert!(!mounts.is_empty(), "{r:?}");
    assert!(
        !mounts.iter().any(|(what, _)| what.contains("overlay")),
        "an overlay without ~/.cargo: {r:?}"
    );
    let cargo_home = home.join(".cargo").display().to_string();
    assert!(
        !mounts.iter().any(|(_, p)| p.starts_with(&cargo_home)),
        "{r:?}"
    );
    assert!(
        r.stdout
            .lines()
            .any(|l| l.trim() == "CARGO_NET_OFFLINE=true"),
        "{r:?}"
    );
    assert!(r.stdout.contains("network: none"), "{r:?}");
}

/// A sbx invocation whose HOME holds a `.cargo` with one registry file from the host.
fn with_cargo_home() -> (Sbx, PathBuf) {
    let s = bare();
    let cargo_home = s.work.path().join("home/.cargo");
    write_owned(
        s.work.path(),
        "home/.cargo/registry/index-entry",
        "from-the-host\n",
    );
    (s, cargo_home)
}

#[test]
fn cargo_profile_explain_overlays_an_existing_cargo_home() {
    let (mut s, cargo_home) = with_cargo_home();
    s.cmd
        .args(["--profile", "cargo", "--explain", "--", "cargo", "build"]);
    let (r, _w) = run_keep(s);
    assert_eq!(r.code, 0, "{r:?}");
    let mounts = explained_mounts(&r.stdout);
    let want = cargo_home.display().to_string();
    let overlays: Vec<_> = mounts
        .iter()
        .filter(|(what, _)| what == "temporary overlay")
        .collect();
    assert_eq!(
        overlays.len(),
        1,
        "expected one temporary overlay: {}",
        r.stdout
    );
    assert_eq!(
        overlays[0].1, want,
        "the overlay is not at ~/.cargo: {}",
        r.stdout
    );
    assert!(
        !mounts.iter().any(|(_, p)| p.contains('?')),
        "a mount path keeps the optional marker `?`: {}",
        r.stdout
    );
}

#[test]
fn cargo_profile_cargo_home_is_a_throwaway_writable_layer() {
    // Inside, ~/.cargo is writable (cargo takes locks there), the host's content shows, and
    // nothing written there reaches the host.
    let (mut s, cargo_home) = with_cargo_home();
    s.cmd.args([
        "--profile",
        "cargo",
        "--",
        "sh",
        "-c",
        "cat \"$HOME/.cargo/registry/index-entry\" && echo lock > \"$HOME/.cargo/.package-cache\" \
         && echo changed > \"$HOME/.cargo/registry/index-entry\" && echo wrote",
    ]);
    let (r, _w) = run_keep(s);
    assert_eq!(r.code, 0, "~/.cargo is not writable inside: {r:?}");
    assert_eq!(r.stdout, "from-the-host\nwrote\n", "{r:?}");
    assert!(!cargo_home.join(".package-cache").exists());
    assert_eq!(
        std::fs::read_to_string(cargo_home.join("registry/index-entry")).unwrap(),
        "from-the-host\n"
    );
}

/// Where the runner's cargo lives, if it is on PATH.
fn runner_cargo() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("cargo"))
            .find(|p| p.is_file())
    })
}

#[test]
fn cargo_builds_a_crate_offline() {
    let test = "cargo_builds_a_crate_offline";
    let Some(cargo) = runner_cargo() else {
        common::note_skip(test, "cargo is not on PATH");
        return;
    };
    let cargo_s = cargo.display().to_string();
    if !usable(&cargo_s) {
        common::note_skip(
            test,
            &format!(
                "{cargo_s} is not reachable by uid {} (its home directory is private), so cargo \
                 cannot run inside a sandbox as that user",
                common::test_uid()
            ),
        );
        return;
    }
    // The runner's toolchain: CARGO_HOME and RUSTUP_HOME, bound read-only by path.
    let bin = cargo.parent().unwrap();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| bin.parent().unwrap().to_path_buf());
    let rustup_home = std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| cargo_home.parent().unwrap().join(".rustup"));
    let w = project();
    write_owned(
        w.path(),
        "Cargo.toml",
        "[package]\nname = \"tiny\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n",
    );
    write_owned(
        w.path(),
        "src/main.rs",
        "fn main() { println!(\"tiny {}\", 6 * 7); }\n#[test]\nfn t() { assert_eq!(6 * 7, 42); }\n",
    );
    let ro_cargo = format!("{}", cargo_home.display());
    let ro_rustup = format!("{}?", rustup_home.display());
    let mut s = bare();
    s.cmd
        .current_dir(w.path())
        .env("HOME", w.path().join("home"))
        .env(
            "PATH",
            format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display()),
        )
        .env("CARGO_HOME", &cargo_home)
        .env("RUSTUP_HOME", &rustup_home)
        .args([
            "--profile",
            "cargo",
            "--ro-bind",
            &ro_cargo,
            "--ro-bind",
            &ro_rustup,
            "--",
            "sh",
            "-c",
            "cargo build --offline && cargo test --offline -q && ./target/debug/tiny",
        ]);
    let (r, _h) = run_keep(s);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("tiny 42"), "{r:?}");
    assert!(w.path().join("target/debug/tiny").exists());
    assert!(owned_by_test_uid(&w.path().join("target")));
}
