//! Credentials kept out of sight (`filesystem.hide`): host paths such as `~/.netrc` or
//! `~/.ssh` that must not be readable inside even where a bind or an overlay shows the
//! directory holding them (`~/.cargo` in the `ci` profile, all of `$HOME` when it is the
//! working directory). Each one visible in the sandbox gets an empty read-only stand-in mounted
//! over it: an empty file over a file, an empty directory over a directory.
//!
//! Entries are host paths, resolved with every symlink followed, and covered wherever they are
//! visible: through every bind or overlay whose host source contains them, at the sandbox path
//! that mount gives them, unless a deeper mount covers that path already. So `~/.netrc` as a
//! symlink into a dotfiles repository is hidden where the repository's file shows, and a home
//! bound elsewhere (`--ro-bind ~:/h`) still has its keys covered. A mount whose source *is* a
//! hidden path, or lies inside one, is taken as asked for (`--ro-bind ~/.ssh`): it stays.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use super::op::{MountAttrs, Op};
use super::path::{clean_absolute, is_within};
use super::request::{Kind, Request};
use super::tree::Builder;
use crate::plan::error::PlanError;
use crate::profile::{Filesystem, Sourced};

/// The stand-ins, made once in the scratch tmpfs that holds the new root while it is built
/// (like an overlay's empty layer); the binds of them outlive it.
const EMPTY_DIR: &str = "/sbx-hidden-dir";
const EMPTY_FILE: &str = "/sbx-hidden-file";
/// Nothing to read, write or run.
const ATTRS: MountAttrs = MountAttrs::RDONLY
    .union(MountAttrs::NOSUID)
    .union(MountAttrs::NODEV)
    .union(MountAttrs::NOEXEC);
/// What `--explain` calls a stand-in's mount.
pub const WHAT: &str = "hidden (empty, read-only)";

/// The hidden paths of a run, for `--explain` and the report.
#[derive(Clone, Debug, Default)]
pub struct HidePlan {
    /// `filesystem.hide` in effect, as host paths.
    pub entries: Vec<String>,
    /// The sandbox paths covered by an empty stand-in.
    pub hidden: Vec<String>,
}

/// Which host directories a mount shows at its destination (an overlay's first layer first).
fn sources(r: &Request) -> &[PathBuf] {
    match &r.kind {
        Kind::Bind {
            src, is_dir: true, ..
        } => std::slice::from_ref(src),
        Kind::Overlay { lowers, .. } => lowers,
        _ => &[],
    }
}

fn is_mount(k: &Kind) -> bool {
    !matches!(k, Kind::Dir | Kind::Symlink(_) | Kind::File(_))
}

/// The destination of the deepest mount among `requests` that holds `path`.
fn covering<'a>(requests: &'a [Request], path: &str) -> Option<&'a str> {
    requests
        .iter()
        .filter(|r| is_mount(&r.kind) && is_within(path, &r.dst))
        .map(|r| r.dst.as_str())
        .max_by_key(|d| d.len())
}

/// The stand-ins for every hidden path that `requests` make visible.
/// (Messages go into `PlanError`, which shows them escaped.)
pub fn hidings(fs: &Filesystem, requests: &[Request]) -> Result<Vec<Request>, PlanError> {
    // Each stand-in with the entry it comes from, for messages.
    let mut out: Vec<(Request, &Sourced)> = Vec::new();
    for entry in fs.hidden() {
        let origin = Some(entry.origin.clone());
        if entry.value.ends_with('?') {
            return Err(PlanError::invalid(
                &entry.origin,
                format!(
                    "`{}`: a hidden path that is missing needs nothing, so no `?`",
                    &entry.value
                ),
            ));
        }
        let path = clean_absolute(&entry.value, &origin, "hidden path")?;
        // Missing, or unreadable to the caller (and so to the sandbox): nothing to hide. Most
        // entries are missing on any one host, and every run plans them: one lstat says so
        // before realpath walks the components.
        if std::fs::symlink_metadata(&path).is_err() {
            continue;
        }
        let Ok(host) = std::fs::canonicalize(&path) else {
            continue;
        };
        let is_dir = host.is_dir();
        for r in requests {
            for (layer, src) in sources(r).iter().enumerate() {
                let Some(dst) = inside(&host, src, &r.dst) else {
                    continue;
                };
                if covering(requests, &dst) != Some(r.dst.as_str()) {
                    continue;
                }
                if layer > 0 {
                    return Err(PlanError::invalid(
                        &entry.origin,
                        format!(
                            "{} shows through the overlay at {} from its lower layer {}, where \
                             sbx cannot place a stand-in; lift it with `!{}`",
                            host.display(),
                            &r.dst,
                            src.display(),
                            &entry.value
                        ),
                    ));
                }
                let kind = Kind::Hide { is_dir };
                let origin = origin.clone();
                out.push((Request { dst, kind, origin }, entry));
            }
        }
    }
    out.sort_by(|a, b| a.0.dst.cmp(&b.0.dst));
    out.dedup_by(|a, b| a.0.dst == b.0.dst);
    // A path inside a hidden directory is hidden with it.
    let dirs: Vec<String> = out
        .iter()
        .filter(|(h, _)| matches!(h.kind, Kind::Hide { is_dir: true }))
        .map(|(h, _)| h.dst.clone())
        .collect();
    out.retain(|(h, _)| !dirs.iter().any(|d| h.dst != *d && is_within(&h.dst, d)));
    for (h, entry) in &out {
        refuse_mounts_inside(h, entry, requests)?;
    }
    Ok(out.into_iter().map(|(h, _)| h).collect())
}

/// The sandbox path at which `host` shows through a mount of `src` at `dst`; None when `host`
/// is not strictly inside `src`.
fn inside(host: &Path, src: &Path, dst: &str) -> Option<String> {
    let rest = host.strip_prefix(src).ok()?;
    if rest.as_os_str().is_empty() {
        return None;
    }
    Some(Path::new(dst).join(rest).to_string_lossy().into_owned())
}

/// A mount the profile places inside a hidden directory would have nowhere to go: the stand-in
/// is empty and read-only. Say so, and how to have both.
fn refuse_mounts_inside(
    hidden: &Request,
    entry: &Sourced,
    requests: &[Request],
) -> Result<(), PlanError> {
    if !matches!(hidden.kind, Kind::Hide { is_dir: true }) {
        return Ok(());
    }
    let below = requests
        .iter()
        .find(|r| r.dst != hidden.dst && is_within(&r.dst, &hidden.dst));
    match below {
        Some(r) => Err(PlanError::Invalid {
            origin: r.origin.clone().unwrap_or_else(|| entry.origin.clone()),
            message: format!(
                "{} lies inside {}, which filesystem.hide covers with an empty directory; lift \
                 it with `!{}` to mount inside it",
                &r.dst, &hidden.dst, &entry.value
            ),
        }),
        None => Ok(()),
    }
}

impl Builder {
    /// Mounts the empty stand-in over the hidden path `r.dst` (at `dst` while the root is
    /// built), making the stand-ins first.
    pub(super) fn hide(&mut self, r: &Request, dst: CString, is_dir: bool) {
        if self.hidden.is_empty() {
            let at = |p: &str| Request {
                dst: p.into(),
                ..r.clone()
            };
            let dir = CString::new(EMPTY_DIR).expect("no NUL");
            let op = Op::Mkdir {
                path: dir,
                mode: 0o555,
            };
            self.push(op, "create directory", &at(EMPTY_DIR), None);
            let file = CString::new(EMPTY_FILE).expect("no NUL");
            self.push(
                Op::Touch { path: file },
                "create file",
                &at(EMPTY_FILE),
                None,
            );
        }
        let src = CString::new(if is_dir { EMPTY_DIR } else { EMPTY_FILE }).expect("no NUL");
        let op = Op::Bind {
            src,
            dst,
            attrs: ATTRS,
        };
        self.push(op, WHAT, r, None);
        self.hidden.push(r.dst.clone());
    }
}

#[cfg(test)]
mod tests {
    use std::slice::from_ref;

    use super::super::{Layout, build};
    use super::{EMPTY_DIR, EMPTY_FILE, WHAT};
    use crate::plan::Op;
    use crate::profile::{DevMode, Filesystem, Overlay, OverlayMode, ProcMode, Sourced};

    /// A host home with a credential file, a key directory, a plain file and a symlink into a
    /// dotfiles directory.
    fn home() -> (tempfile::TempDir, String) {
        let d = tempfile::tempdir().unwrap();
        let h = d.path().canonicalize().unwrap();
        std::fs::create_dir_all(h.join(".ssh")).unwrap();
        std::fs::write(h.join(".ssh/id_ed25519"), "key").unwrap();
        std::fs::write(h.join(".netrc-real"), "machine x password y").unwrap();
        std::fs::create_dir_all(h.join("dot")).unwrap();
        std::fs::write(h.join("dot/pypirc"), "password").unwrap();
        std::os::unix::fs::symlink("dot/pypirc", h.join(".pypirc")).unwrap();
        std::fs::write(h.join("plain"), "x").unwrap();
        (d, h.display().to_string())
    }

    fn fs(ro: &[String], tmpfs: &[String], hide: &[String]) -> Filesystem {
        let s = |v: &[String], key| v.iter().map(|x| Sourced::new(x, "test", key)).collect();
        Filesystem {
            ro: s(ro, "filesystem.ro"),
            tmpfs: s(tmpfs, "filesystem.tmpfs"),
            hide: s(hide, "filesystem.hide"),
            dev: Some(DevMode::None),
            proc: Some(ProcMode::Off),
            ..Default::default()
        }
    }

    /// The stand-ins of a layout: (sandbox path, stand-in source).
    fn stand_ins(l: &Layout) -> Vec<(String, String)> {
        l.ops
            .iter()
            .zip(&l.info)
            .filter(|(_, i)| i.what == WHAT)
            .map(|(op, i)| match op {
                Op::Bind { src, .. } => {
                    (i.sandbox_path.clone(), src.to_string_lossy().into_owned())
                }
                other => panic!("a stand-in is a bind: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn visible_credentials_get_empty_stand_ins() {
        let (_d, h) = home();
        let hide = [
            format!("{h}/.ssh"),
            format!("{h}/.netrc-real"),
            format!("{h}/.missing"),
        ];
        let l = build(&fs(from_ref(&h), &[], &hide), true, None, None).unwrap();
        assert_eq!(
            stand_ins(&l),
            [
                (format!("{h}/.netrc-real"), EMPTY_FILE.to_string()),
                (format!("{h}/.ssh"), EMPTY_DIR.to_string()),
            ]
        );
        assert_eq!(l.hidden, [format!("{h}/.netrc-real"), format!("{h}/.ssh")]);
    }

    #[test]
    fn a_symlinked_credential_is_hidden_where_its_target_shows() {
        let (_d, h) = home();
        let l = build(
            &fs(from_ref(&h), &[], &[format!("{h}/.pypirc")]),
            true,
            None,
            None,
        );
        assert_eq!(
            stand_ins(&l.unwrap()),
            [(format!("{h}/dot/pypirc"), EMPTY_FILE.to_string())]
        );
    }

    #[test]
    fn a_home_bound_elsewhere_is_covered_at_its_destination() {
        let (_d, h) = home();
        let l = build(
            &fs(&[format!("{h}:/h")], &[], &[format!("{h}/.ssh")]),
            true,
            None,
            None,
        );
        assert_eq!(
            stand_ins(&l.unwrap()),
            [("/h/.ssh".into(), EMPTY_DIR.into())]
        );
    }

    #[test]
    fn unseen_or_asked_for_credentials_stay_as_they_are() {
        let (_d, h) = home();
        let key = format!("{h}/.ssh");
        // Under a tmpfs the host's file is not there to hide.
        let l = build(&fs(&[], from_ref(&h), from_ref(&key)), true, None, None).unwrap();
        assert!(stand_ins(&l).is_empty());
        // A deeper mount covers it already.
        let l = build(
            &fs(from_ref(&h), from_ref(&key), from_ref(&key)),
            true,
            None,
            None,
        );
        assert!(stand_ins(&l.unwrap()).is_empty());
        // A bind of the hidden path itself, or of something in it, is what the user asked for.
        for src in [key.clone(), format!("{key}/id_ed25519")] {
            let l = build(&fs(from_ref(&src), &[], from_ref(&key)), true, None, None).unwrap();
            assert!(stand_ins(&l).is_empty(), "{src}");
        }
        // The whole directory hides what is inside it once.
        let both = [key.clone(), format!("{key}/id_ed25519")];
        let l = build(&fs(from_ref(&h), &[], &both), true, None, None).unwrap();
        assert_eq!(stand_ins(&l), [(key, EMPTY_DIR.into())]);
    }

    #[test]
    fn a_mount_inside_a_hidden_directory_is_refused_with_the_way_out() {
        let (_d, h) = home();
        let key = format!("{h}/.ssh");
        let ro = [h.clone(), format!("{h}/plain:{key}/plain")];
        let e = build(&fs(&ro, &[], from_ref(&key)), true, None, None)
            .err()
            .expect("refused")
            .to_string();
        assert!(
            e.contains("filesystem.hide") && e.contains(&format!("`!{key}`")),
            "{e}"
        );
    }

    #[test]
    fn bad_entries_are_one_clear_error() {
        for (bad, says) in [
            (".ssh", "not an absolute path"),
            ("/a/../b", "`..`"),
            ("/a/b?", "no `?`"),
        ] {
            let e = build(&fs(&[], &[], &[bad.to_string()]), true, None, None)
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"))
                .to_string();
            assert!(
                e.contains("filesystem.hide") && e.contains(says),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn through_an_overlay_the_first_layer_is_covered_and_a_lower_one_refused() {
        let (_d, h) = home();
        let top = tempfile::tempdir().unwrap();
        let top = top.path().canonicalize().unwrap().display().to_string();
        let overlay = |src: &str, lower: Vec<String>, hide: String| {
            let mut f = fs(&[], &[], &[hide]);
            f.overlay.push(Overlay {
                src: Sourced::new(src, "test", "filesystem.overlay"),
                dst: Some("/o".into()),
                mode: Some(OverlayMode::Ro),
                lower,
            });
            build(&f, true, None, None)
        };
        let l = overlay(&h, vec![], format!("{h}/.ssh")).unwrap();
        assert_eq!(stand_ins(&l), [("/o/.ssh".into(), EMPTY_DIR.into())]);
        let e = overlay(&top, vec![h.clone()], format!("{h}/.ssh"))
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("lower layer"), "{e}");
    }
}
