//! Path rules of the mount list: plain absolute paths, and the C strings the ops carry.

use std::ffi::CString;
use std::path::{Component, Path};

use crate::plan::error::PlanError;
use crate::profile::Origin;

/// Checks that `path` is absolute and plain: no `.`, `..` or empty components.
pub fn clean_absolute(
    path: &str,
    origin: &Option<Origin>,
    what: &str,
) -> Result<String, PlanError> {
    let bad = |why: &str| {
        let message = format!("{what} {path:?} {why}");
        match origin {
            Some(o) => PlanError::invalid(o, message),
            None => PlanError::Other(message),
        }
    };
    if !path.starts_with('/') {
        return Err(bad("is not an absolute path"));
    }
    if path.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    let mut out = String::new();
    for c in Path::new(path).components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => {
                out.push('/');
                out.push_str(&n.to_string_lossy());
            }
            Component::CurDir | Component::ParentDir | Component::Prefix(_) => {
                return Err(bad("must not contain `.` or `..`"));
            }
        }
    }
    Ok(if out.is_empty() { "/".into() } else { out })
}

/// `prefix` followed by `path` (the root path adds nothing), as a C string.
pub fn cstr(prefix: &str, path: &Path) -> CString {
    let mut bytes = prefix.as_bytes().to_vec();
    let s = path.as_os_str().as_encoded_bytes();
    if s != b"/" {
        bytes.extend_from_slice(s);
    }
    CString::new(bytes).expect("paths were checked for NUL")
}

pub fn depth(path: &str) -> usize {
    path.split('/').filter(|c| !c.is_empty()).count()
}

pub fn is_within(path: &str, dir: &str) -> bool {
    dir == "/" || path == dir || path.starts_with(&format!("{dir}/"))
}

/// overlayfs separates layers with `:` and options with `,`: paths holding them (or `\`)
/// cannot be named in its mount data.
pub fn overlay_safe(p: &Path) -> bool {
    !p.as_os_str()
        .as_encoded_bytes()
        .iter()
        .any(|b| matches!(b, b':' | b',' | b'\\' | b'\n'))
}
