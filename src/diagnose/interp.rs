//! Why a file that is in the sandbox could not be executed there: the kernel answers ENOENT
//! both for a missing file and for a missing interpreter (a dynamically linked program's ELF
//! interpreter, a script's `#!` line). Asked after the failure, from the host: the plan's
//! view says which host file the sandbox path shows, and that file names its interpreter.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::plan::{Plan, Seen};
use crate::text::escape;

/// What runs a file before the file itself.
#[derive(Debug, PartialEq, Eq)]
enum Interpreter {
    /// `PT_INTERP` of an ELF executable (`/lib64/ld-linux-x86-64.so.2`).
    Elf(String),
    /// The path on a script's `#!` line.
    Script(String),
}

/// The kernel reads at most this much of a `#!` line (BINPRM_BUF_SIZE).
const SHEBANG_MAX: usize = 256;
const PT_INTERP: u32 = 3;

fn interpreter_of(path: &Path) -> Option<Interpreter> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut head = [0u8; SHEBANG_MAX];
    let n = read_up_to(&mut f, &mut head)?;
    let head = &head[..n];
    if let Some(line) = head.strip_prefix(b"#!") {
        let line = line.split(|b| *b == b'\n').next()?;
        let text = String::from_utf8_lossy(line);
        let interp = text.split([' ', '\t']).find(|w| !w.is_empty())?;
        return Some(Interpreter::Script(interp.to_string()));
    }
    elf_interpreter(&mut f, head).map(Interpreter::Elf)
}

fn read_up_to(f: &mut std::fs::File, buf: &mut [u8]) -> Option<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]).ok()? {
            0 => break,
            k => n += k,
        }
    }
    Some(n)
}

/// The `PT_INTERP` path of an ELF file whose first bytes are `head`; None for a static
/// program or anything that is not ELF.
fn elf_interpreter(f: &mut std::fs::File, head: &[u8]) -> Option<String> {
    if head.get(..4)? != b"\x7fELF" {
        return None;
    }
    let wide = match head.get(4)? {
        1 => false,
        2 => true,
        _ => return None,
    };
    let little = match head.get(5)? {
        1 => true,
        2 => false,
        _ => return None,
    };
    let int = |b: &[u8]| -> u64 {
        let mut v = 0u64;
        for (i, byte) in b.iter().enumerate() {
            let shift = if little { i } else { b.len() - 1 - i };
            v |= u64::from(*byte) << (8 * shift);
        }
        v
    };
    // e_phoff, e_phentsize and e_phnum, where each class keeps them.
    let (phoff, phentsize, phnum) = if wide {
        (
            int(head.get(32..40)?),
            int(head.get(54..56)?),
            int(head.get(56..58)?),
        )
    } else {
        (
            int(head.get(28..32)?),
            int(head.get(42..44)?),
            int(head.get(44..46)?),
        )
    };
    for i in 0..phnum.min(256) {
        let mut ph = [0u8; 56];
        let size = (phentsize as usize).min(ph.len());
        f.seek(SeekFrom::Start(phoff + i * phentsize)).ok()?;
        f.read_exact(&mut ph[..size]).ok()?;
        if int(&ph[0..4]) as u32 != PT_INTERP {
            continue;
        }
        let (offset, len) = if wide {
            (int(&ph[8..16]), int(&ph[32..40]))
        } else {
            (int(&ph[4..8]), int(&ph[16..20]))
        };
        let mut name = vec![0u8; len.min(4096) as usize];
        f.seek(SeekFrom::Start(offset)).ok()?;
        f.read_exact(&mut name).ok()?;
        let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
        return Some(String::from_utf8_lossy(&name[..end]).into_owned());
    }
    None
}

/// The paths the host's lookup of `path` goes through: `path`, then after each symlink on the
/// way the path it leads to (`/lib64/ld-linux-x86-64.so.2`, `/usr/lib64/...`, and on Debian
/// `/lib/x86_64-linux-gnu/...`).
fn host_chain(path: &str) -> Vec<PathBuf> {
    let mut chain = vec![PathBuf::from(path)];
    for _ in 0..40 {
        let p = chain.last().expect("not empty");
        let mut prefix = PathBuf::new();
        let mut link = None;
        for c in p.components() {
            prefix.push(c);
            if let Ok(t) = std::fs::read_link(&prefix) {
                link = Some((prefix.clone(), t));
                break;
            }
        }
        let Some((at, target)) = link else { break };
        let rest = p
            .strip_prefix(&at)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let base = at.parent().map(|d| d.join(&target)).unwrap_or(target);
        chain.push(base.join(rest));
    }
    chain
}

/// What to bind for the sandbox to have `path` as the host does: on each path of the host's
/// lookup, the first directory the sandbox lacks (a symlink binds as a link, and the next path
/// of the lookup goes on from its target).
fn to_bind(plan: &Plan, path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in host_chain(path) {
        let mut prefix = PathBuf::new();
        for c in p.components() {
            prefix.push(c);
            let link = std::fs::read_link(&prefix).is_ok();
            // A link the sandbox shows counts even where its target is missing: the next
            // path of the lookup says what the target needs.
            let present = match (
                link,
                prefix
                    .parent()
                    .map(|d| plan.view.resolve(&d.to_string_lossy())),
            ) {
                (true, Some(Seen::Host(dir))) => {
                    std::fs::symlink_metadata(dir.join(prefix.file_name().unwrap_or_default()))
                        .is_ok()
                }
                _ => plan.view.resolve(&prefix.to_string_lossy()) != Seen::Missing,
            };
            let inside = prefix.to_string_lossy().into_owned();
            if !present && !out.contains(&inside) {
                out.push(inside);
            }
            if link || !present {
                break;
            }
        }
    }
    out
}

/// The message for a file the sandbox has whose interpreter it lacks; None when the failure
/// is something else (the file itself is missing).
pub fn missing_interpreter(plan: &Plan) -> Option<String> {
    let cwd = plan.exec.cwd.to_string_lossy();
    plan.exec.candidates.iter().find_map(|c| {
        let c = c.to_string_lossy();
        let inside = if c.starts_with('/') {
            c.to_string()
        } else {
            format!("{}/{c}", cwd.trim_end_matches('/'))
        };
        let Seen::Host(host) = plan.view.resolve(&inside) else {
            return None;
        };
        if !host.is_file() {
            return None;
        }
        lacking(plan, &c, &host, 0)
    })
}

/// What `file` (a sandbox path showing host file `host`) needs that the sandbox lacks: its
/// interpreter, or the interpreter's own (a script run by a dynamically linked program).
fn lacking(plan: &Plan, file: &str, host: &Path, depth: usize) -> Option<String> {
    let interp = interpreter_of(host)?;
    let path = match &interp {
        Interpreter::Elf(p) | Interpreter::Script(p) => p,
    };
    if let Seen::Host(h) = plan.view.resolve(path) {
        return (depth < 2 && h.is_file())
            .then(|| lacking(plan, path, &h, depth + 1))
            .flatten();
    }
    let cmd = escape(&plan.exec.display);
    let subject = if file == plan.exec.display {
        format!("{cmd}: the file is in the sandbox, but")
    } else {
        format!("{cmd}: {} is in the sandbox, but", escape(file))
    };
    let missing: Vec<String> = to_bind(plan, path).iter().map(|t| escape(t)).collect();
    let flags: Vec<String> = missing.iter().map(|t| format!("--ro-bind {t}")).collect();
    let keys: Vec<String> = missing.iter().map(|t| format!("{t:?}")).collect();
    let bind = match missing.is_empty() {
        _ if !Path::new(path).exists() => "it is not on the host either; ".to_string(),
        true => String::new(),
        false => format!(
            "bind what it needs (`{}`, or {} in the profile's filesystem.ro), or ",
            flags.join(" "),
            keys.join(", ")
        ),
    };
    let path = escape(path);
    Some(match interp {
        Interpreter::Elf(_) => format!(
            "{subject} its ELF interpreter {path} (the dynamic loader the kernel starts it \
             with) is not: {bind}start the profile from `extends = [\"default\"]`, which shows \
             /bin, /lib and /lib64 as the host has them"
        ),
        Interpreter::Script(_) => format!(
            "{subject} the interpreter on its #! line, {path}, is not: {bind}name an \
             interpreter the sandbox has (`sbx -- sh {}`)",
            escape(file)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_shebang_and_an_elf_interpreter() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("s");
        std::fs::write(&script, "#!  /nonexistent/interp -x\necho\n").unwrap();
        assert_eq!(
            interpreter_of(&script),
            Some(Interpreter::Script("/nonexistent/interp".into()))
        );
        // The test binary itself: dynamically linked or static, it must not be misread.
        let me = std::env::current_exe().unwrap();
        match interpreter_of(&me) {
            Some(Interpreter::Elf(p)) => assert!(p.starts_with('/'), "{p}"),
            None => {}
            other => panic!("{other:?}"),
        }
        if Path::new("/bin/sh").exists() {
            let sh = interpreter_of(Path::new("/bin/sh"));
            assert!(matches!(sh, Some(Interpreter::Elf(_)) | None), "{sh:?}");
        }
        let text = dir.path().join("t");
        std::fs::write(&text, "plain").unwrap();
        assert_eq!(interpreter_of(&text), None);
    }
}
