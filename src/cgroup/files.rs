//! Reading and writing cgroupfs interface files, for detection and for the run cgroup alike.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::CgroupError;
use super::error::errno_of;

/// The text of a cgroupfs or procfs file. Such files report a size of 0, so std's
/// `read_to_string` first stats them, then reads 32 bytes, 32, 64, 128...: 6 calls for a
/// 300-byte cgroup.procs. One 4 KiB read (and the one that says the end) instead.
pub(super) fn read_text(path: &Path) -> io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut text = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    String::from_utf8(text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

pub(super) fn read_words(path: &Path) -> io::Result<Vec<String>> {
    Ok(read_text(path)?
        .split_whitespace()
        .map(str::to_string)
        .collect())
}

pub(super) fn read_pids(path: &Path) -> Vec<i32> {
    read_text(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        // 0 and negative numbers would address process groups in kill(2): never let them in.
        .filter(|&p: &i32| p > 0)
        .collect()
}

/// The value of `key` in a flat-keyed file (cpu.stat, memory.events: `key value` lines).
pub(super) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

/// Writes `value` to a cgroup interface file in one write(2), as the kernel expects.
pub(super) fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    let werr = |e: &io::Error| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        errno: errno_of(e),
    };
    // Never O_CREAT: cgroupfs creates its files itself, a missing one means a missing feature.
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|e| werr(&e))?;
    f.write_all(value.as_bytes()).map_err(|e| werr(&e))
}

/// `root` and every cgroup below it, parents before children. Symlinks are not followed.
pub(super) fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Ok(entries) = fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
        out.push(dir);
    }
    out
}
