//! The replay language between the plan and the sandbox: each `Op` is one primitive step of
//! building the new root, carrying its final mount attributes. `sandbox::rootfs` executes ops
//! 1:1 and decides nothing; `--explain` prints them with [`Op::describe`].

use std::ffi::CString;

use crate::profile::Origin;

bitflags::bitflags! {
    /// The attributes a mount gets. The bits are those of both kernel encodings: mount(2)'s
    /// `MS_*` and mount_setattr(2)'s `MOUNT_ATTR_*` agree on these four.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct MountAttrs: u64 {
        const RDONLY = 0x1;
        const NOSUID = 0x2;
        const NODEV = 0x4;
        const NOEXEC = 0x8;
    }
}

impl MountAttrs {
    /// As mount(2) flags.
    pub fn ms_flags(self) -> libc::c_ulong {
        const _: () = assert!(libc::MS_RDONLY == 1 && libc::MS_NOSUID == 2);
        const _: () = assert!(libc::MS_NODEV == 4 && libc::MS_NOEXEC == 8);
        self.bits() as libc::c_ulong
    }

    /// As mount_setattr(2) attributes.
    pub fn mount_attr(self) -> u64 {
        self.bits()
    }

    /// The flags as `--explain` names them, in a fixed order.
    fn names(self) -> Vec<&'static str> {
        [
            (MountAttrs::NOSUID, "nosuid"),
            (MountAttrs::NODEV, "nodev"),
            (MountAttrs::NOEXEC, "noexec"),
            (MountAttrs::RDONLY, "ro"),
        ]
        .into_iter()
        .filter(|(flag, _)| self.contains(*flag))
        .map(|(_, name)| name)
        .collect()
    }
}

/// The attributes of the sandbox's tmpfs store, and so of every writable tmpfs in it.
pub const STORE_ATTRS: MountAttrs = MountAttrs::NOSUID.union(MountAttrs::NODEV);

/// One primitive step of building the root, with paths as the setup process sees them
/// (`/newroot/...` for the sandbox, `/oldroot/...` for the host).
#[derive(Clone, Debug)]
pub enum Op {
    Mkdir {
        path: CString,
        mode: u32,
    },
    /// An empty file to bind a file onto.
    Touch {
        path: CString,
    },
    /// A recursive bind, its attributes set on every mount of the copy before it is attached.
    Bind {
        src: CString,
        dst: CString,
        attrs: MountAttrs,
    },
    Tmpfs {
        dst: CString,
        data: CString,
        attrs: MountAttrs,
    },
    /// A directory of the sandbox's tmpfs store, bound into place; it has the store's
    /// attributes (`STORE_ATTRS`), which a plain bind keeps.
    StoreBind {
        src: CString,
        dst: CString,
    },
    Proc {
        dst: CString,
        attrs: MountAttrs,
    },
    Devpts {
        dst: CString,
        data: CString,
        attrs: MountAttrs,
    },
    Symlink {
        target: CString,
        path: CString,
    },
    File {
        path: CString,
        content: Vec<u8>,
    },
    /// An overlayfs mount; `data` names its layers (and `userxattr`).
    Overlay {
        dst: CString,
        data: CString,
        attrs: MountAttrs,
    },
    /// Makes one mount (not its submounts) read-only once everything beneath it is placed.
    Seal {
        path: CString,
    },
}

impl Op {
    /// The options of the op as `--explain` shows them between brackets.
    pub fn describe(&self) -> String {
        let with = |data: Option<&CString>, attrs: MountAttrs, extra: &[&'static str]| {
            let mut f: Vec<String> = data
                .map(|d| d.to_string_lossy().into_owned())
                .into_iter()
                .collect();
            f.extend(extra.iter().chain(&attrs.names()).map(|s| s.to_string()));
            f.join(",")
        };
        match self {
            Op::Bind { attrs, .. } => with(None, *attrs, &["recursive"]),
            Op::Tmpfs { data, attrs, .. }
            | Op::Devpts { data, attrs, .. }
            | Op::Overlay { data, attrs, .. } => with(Some(data), *attrs, &[]),
            Op::Proc { attrs, .. } => with(None, *attrs, &[]),
            Op::StoreBind { .. } => with(None, STORE_ATTRS, &["store"]),
            Op::Symlink { target, .. } => format!("-> {}", target.to_string_lossy()),
            Op::Mkdir { mode, .. } => format!("mode={mode:o}"),
            Op::Seal { .. } => "ro".into(),
            Op::Touch { .. } | Op::File { .. } => String::new(),
        }
    }
}

/// What an op means to the user: the sandbox path, the host path, and who asked for it.
#[derive(Clone, Debug)]
pub struct OpInfo {
    pub what: &'static str,
    pub sandbox_path: String,
    pub host_path: Option<String>,
    pub origin: Option<Origin>,
}
