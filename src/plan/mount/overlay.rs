//! Placing an overlay: its overlayfs mount data, and the scratch tmpfs or empty directory that
//! holds a temporary upper layer or stands in as the second lower layer.

use std::ffi::CString;
use std::path::PathBuf;

use super::OLD_ROOT;
use super::op::{MountAttrs, Op};
use super::path::overlay_safe;
use super::request::Request;
use super::tree::{Builder, Grant};
use crate::overlay::Layers;
use crate::plan::error::PlanError;
use crate::profile::OverlayMode;

impl Builder {
    pub(super) fn overlay(
        &mut self,
        r: &Request,
        dst: CString,
        lowers: Vec<PathBuf>,
        mode: OverlayMode,
    ) -> Result<(), PlanError> {
        let n = self.ops.len();
        let scratch = format!("/sbx-overlay-{n}");
        let scratch_c = CString::new(scratch.clone()).expect("no NUL");
        let lowerdir = lowers
            .iter()
            .map(|l| format!("{OLD_ROOT}{}", l.display()))
            .collect::<Vec<_>>()
            .join(":");
        let data = match mode {
            OverlayMode::Rw => self.upper_layer(r, &lowers, &lowerdir)?,
            OverlayMode::Tmp => {
                // Its writes count against the store's budget like any tmpfs.
                let dir = self.store_dir(r, 0o700);
                let dir = dir.to_str().expect("ASCII").to_string();
                for sub in ["upper", "work"] {
                    let path = CString::new(format!("{dir}/{sub}")).expect("no NUL");
                    let op = Op::Mkdir { path, mode: 0o755 };
                    self.push(op, "create directory", r, None);
                }
                format!("lowerdir={lowerdir},upperdir={dir}/upper,workdir={dir}/work,userxattr")
            }
            OverlayMode::Ro if lowers.len() == 1 => {
                // overlayfs wants an upper layer or two lower ones: an empty one fills in.
                let op = Op::Mkdir {
                    path: scratch_c,
                    mode: 0o555,
                };
                self.push(op, "create directory", r, None);
                format!("lowerdir={lowerdir}:{scratch},userxattr")
            }
            OverlayMode::Ro => format!("lowerdir={lowerdir},userxattr"),
        };
        let data = CString::new(data).expect("paths were checked for NUL");
        let readonly = mode == OverlayMode::Ro;
        let mut attrs = MountAttrs::NOSUID | MountAttrs::NODEV;
        attrs.set(MountAttrs::RDONLY, readonly);
        let what = match mode {
            OverlayMode::Rw => "overlay",
            OverlayMode::Ro => "read-only overlay",
            OverlayMode::Tmp => "temporary overlay",
        };
        self.push(Op::Overlay { dst, data, attrs }, what, r, Some(&lowers[0]));
        let grant = if readonly {
            Grant::ReadExec
        } else {
            Grant::Full
        };
        self.grant(&r.dst, grant, true);
        self.mounted_host_dir(&r.dst, lowers[0].clone());
        Ok(())
    }

    /// A writable overlay's layers in the run's layer directory: the mount data naming them.
    fn upper_layer(
        &mut self,
        r: &Request,
        lowers: &[PathBuf],
        lowerdir: &str,
    ) -> Result<String, PlanError> {
        let Some(root) = self.overlay_root.clone() else {
            return Err(Self::fail(
                r,
                "a writable overlay needs a directory for its upper layer".into(),
            ));
        };
        if lowers
            .iter()
            .any(|l| root.starts_with(l) || l.starts_with(&root))
        {
            return Err(Self::fail(
                r,
                format!(
                    "the upper layer's directory {} and the overlay source nest; set TMPDIR \
                     (or --keep-changes) outside the overlaid tree",
                    root.display()
                ),
            ));
        }
        if !overlay_safe(&root) {
            return Err(Self::fail(
                r,
                format!(
                    "{} contains `:`, `,` or `\\`, which overlayfs cannot name",
                    root.display()
                ),
            ));
        }
        let base = root.join(self.layers.len().to_string());
        let layers = Layers {
            destination: r.dst.clone(),
            source: lowers[0].clone(),
            upper: base.join("upper"),
            work: base.join("work"),
            protected: Vec::new(),
            // Recorded by overlay::prepare when the run starts.
            source_id: None,
        };
        let data = format!(
            "lowerdir={lowerdir},upperdir={OLD_ROOT}{},workdir={OLD_ROOT}{},userxattr",
            layers.upper.display(),
            layers.work.display()
        );
        self.layers.push(layers);
        Ok(data)
    }
}
