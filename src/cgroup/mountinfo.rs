//! The little of /proc/self/mountinfo that cgroup detection needs: where each cgroup2 mount
//! is and which part of the hierarchy it shows.

use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

#[derive(Debug)]
pub(super) struct MountEntry {
    /// The mounted directory inside the filesystem, as bytes (mountinfo is not UTF-8-bound).
    pub(super) root: Vec<u8>,
    pub(super) point: PathBuf,
    pub(super) fstype: String,
}

/// Parses /proc/self/mountinfo: `ID PARENT MAJ:MIN ROOT POINT OPTS [OPTIONAL...] - FSTYPE
/// SOURCE SUPEROPTS`. Paths escape space, tab, newline and backslash as `\ooo`, so the first
/// " - " is the separator.
pub(super) fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let mut pre = pre.split(' ').skip(3);
            let root = unescape(pre.next()?);
            let point = PathBuf::from(std::ffi::OsString::from_vec(unescape(pre.next()?)));
            let mut post = post.split(' ');
            let fstype = post.next()?.to_string();
            Some(MountEntry {
                root,
                point,
                fstype,
            })
        })
        .collect()
}

pub(super) fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b.get(i + 1..i + 4).filter(|d| {
            b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)) && d[0] <= b'3'
        });
        if let Some(d) = oct {
            out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// `path` relative to the mount's `root`, without a leading slash; None when the mount does
/// not show `path` (including roots like `/..` that a cgroup namespace gives foreign mounts).
pub(super) fn relative_to<'a>(root: &[u8], path: &'a [u8]) -> Option<&'a [u8]> {
    let rest = if root == b"/" {
        path
    } else {
        let rest = path.strip_prefix(root)?;
        if !rest.is_empty() && !rest.starts_with(b"/") {
            return None;
        }
        rest
    };
    if !path.starts_with(b"/") {
        return None;
    }
    let rest = rest.strip_prefix(b"/").unwrap_or(rest);
    Some(rest)
}
