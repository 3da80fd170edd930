//! An overlay is the promise that the command's writes to a host directory stay in a layer:
//! no writable bind may show that directory, or anything inside it, beside the overlay.
//! Sources are compared as the host directories they resolve to (see `source`), so a bind
//! that names the directory otherwise (the profile's `${CWD}`, a parent, a child) is caught.
//!
//! - A writable bind of an overlaid directory (or of one inside it) that the overlay already
//!   shows at the same place is left out: the overlay is all there is to see there.
//! - Shown anywhere else, it becomes read-only.
//! - A writable bind that contains an overlaid directory shows it read-only, unless the
//!   overlay itself is mounted there (it is placed on top, being deeper).

use std::path::{Path, PathBuf};

use super::op::MountAttrs;
use super::path::is_within;
use super::request::{Kind, Request, bind_attrs};

/// An overlay's destination and the host directories it shows, its top layer first.
struct Overlaid {
    dst: String,
    lowers: Vec<PathBuf>,
}

impl Overlaid {
    /// The overlaid directory that holds host `path`, and whether the overlay shows `path`
    /// at sandbox path `at` (only its top layer is shown as it is).
    fn holding(&self, path: &Path, at: &str) -> Option<(&Path, bool)> {
        let (i, lower) = self
            .lowers
            .iter()
            .enumerate()
            .find(|(_, l)| path.starts_with(l))?;
        let rel = path.strip_prefix(lower).expect("checked");
        Some((lower, i == 0 && join(&self.dst, rel) == at))
    }
}

/// `dst` followed by the relative path `rel`.
fn join(dst: &str, rel: &Path) -> String {
    if rel.as_os_str().is_empty() {
        dst.to_string()
    } else {
        Path::new(dst).join(rel).to_string_lossy().into_owned()
    }
}

/// The requests with every writable bind kept off the overlaid directories.
pub fn cover(requests: Vec<Request>, warnings: &mut Vec<String>) -> Vec<Request> {
    let overlays: Vec<Overlaid> = requests
        .iter()
        .filter_map(|r| match &r.kind {
            Kind::Overlay { lowers, .. } => Some(Overlaid {
                dst: r.dst.clone(),
                lowers: lowers.clone(),
            }),
            _ => None,
        })
        .collect();
    if overlays.is_empty() {
        return requests;
    }
    let mut out = Vec::with_capacity(requests.len());
    for mut r in requests {
        if let Kind::Bind { src, attrs, .. } = &mut r.kind
            && !attrs.contains(MountAttrs::RDONLY)
        {
            let holders: Vec<(&Path, &Overlaid, bool)> = overlays
                .iter()
                .filter_map(|o| o.holding(src, &r.dst).map(|(l, s)| (l, o, s)))
                .collect();
            if holders.iter().any(|(_, _, shown)| *shown) {
                tracing::debug!("an overlay shows {} there: no bind", r.dst);
                continue;
            }
            let Some((lower, o, _)) = holders.first() else {
                out.push(r);
                continue;
            };
            *attrs |= MountAttrs::RDONLY;
            let inside = if src == lower {
                String::new()
            } else {
                format!(" (inside {})", lower.display())
            };
            warnings.push(format!(
                "{}{inside} is overlaid at {}: its writable bind at {} is read-only, so that no \
                 write reaches it on the host",
                src.display(),
                &o.dst,
                &r.dst
            ));
        }
        out.push(r);
    }
    let covers = inside_writable_binds(&out, &overlays, warnings);
    out.extend(covers);
    out
}

/// Read-only binds over the overlaid directories that writable binds contain.
fn inside_writable_binds(
    requests: &[Request],
    overlays: &[Overlaid],
    warnings: &mut Vec<String>,
) -> Vec<Request> {
    let mut covers: Vec<Request> = Vec::new();
    for w in requests {
        let Kind::Bind {
            src,
            is_dir: true,
            attrs,
        } = &w.kind
        else {
            continue;
        };
        if attrs.contains(MountAttrs::RDONLY) {
            continue;
        }
        for o in overlays {
            for (i, lower) in o.lowers.iter().enumerate() {
                let Ok(rel) = lower.strip_prefix(src) else {
                    continue;
                };
                let at = join(&w.dst, rel);
                if i == 0 && at == o.dst {
                    continue;
                }
                // Another mount between the bind and `at` hides the bind's view there.
                let hidden = requests
                    .iter()
                    .chain(&covers)
                    .any(|m| m.dst != w.dst && is_within(&at, &m.dst) && is_within(&m.dst, &w.dst));
                if hidden {
                    continue;
                }
                warnings.push(format!(
                    "{} is overlaid at {}: inside the writable bind at {} it is read-only, so \
                     that no write reaches it on the host",
                    lower.display(),
                    &o.dst,
                    &w.dst
                ));
                covers.push(Request {
                    dst: at,
                    kind: Kind::Bind {
                        src: lower.clone(),
                        is_dir: true,
                        attrs: bind_attrs(true),
                    },
                    origin: w.origin.clone(),
                });
            }
        }
    }
    covers
}
