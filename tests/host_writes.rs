//! The files sbx writes on the host because of a run (`--json-status FILE`, `--changes FILE`,
//! the record `sbx-changes.json` of a `--keep-changes` directory) often lie in the working
//! directory, which the command can write. Each attack here is done from inside: the command
//! replaces the report's path with a symlink to an existing file of the user, with a symlink
//! to a file that does not exist yet, with a fifo or with a directory; on the host the victim
//! must be untouched, what was planted left as it was, and sbx must say that it did not write.
//! Paths that cannot be written are refused before the command runs. Every sbx run is as the
//! unprivileged test uid, and every victim is a file that uid may write.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Ran, Workdir, names_in, run_within, test_uid};
use serde_json::Value;

/// How long a run may take before it counts as a hang: a report written into a planted fifo
/// would block sbx for ever.
const HANG: Duration = Duration::from_secs(60);

const PRECIOUS: &str = "precious, not sbx's\n";

/// A directory of the test uid, outside the sandbox, holding a file that uid may write and
/// the name of one that does not exist: what a planted symlink points at.
struct Victims {
    dir: Workdir,
    file: PathBuf,
    absent: PathBuf,
}

impl Victims {
    fn new() -> Victims {
        let dir = Workdir::new();
        let file = dir.file("victim", PRECIOUS);
        let absent = dir.path().join("absent");
        // The precondition of every attack: sbx's uid could write both.
        for p in [&file, &dir.path().to_path_buf()] {
            let m = std::fs::metadata(p).unwrap();
            assert!(
                m.uid() == test_uid() && m.mode() & 0o200 != 0,
                "{} is not writable by the test uid",
                p.display()
            );
        }
        Victims { dir, file, absent }
    }

    /// `what` says which attack (and how sbx ran) in the failure message.
    fn assert_untouched(&self, what: &str) {
        assert_eq!(
            std::fs::read_to_string(&self.file).unwrap(),
            PRECIOUS,
            "{what}: the victim was written"
        );
        assert_eq!(
            names_in(self.dir.path()),
            ["victim".to_string()].into(),
            "{what}: a file was created next to the victim"
        );
    }
}

/// What the command puts at a report's path during the run.
#[derive(Clone, Copy, Debug)]
enum Plant {
    LinkToVictim,
    LinkToAbsent,
    Fifo,
    Directory,
}

const PLANTS: [Plant; 4] = [
    Plant::LinkToVictim,
    Plant::LinkToAbsent,
    Plant::Fifo,
    Plant::Directory,
];

impl Plant {
    fn script(self, path: &Path, v: &Victims) -> String {
        let p = path.display();
        match self {
            Plant::LinkToVictim => format!("ln -s {} {p}", v.file.display()),
            Plant::LinkToAbsent => format!("ln -s {} {p}", v.absent.display()),
            Plant::Fifo => format!("mkfifo {p}"),
            Plant::Directory => format!("mkdir {p}"),
        }
    }

    /// How sbx names what it found, after the path.
    fn found(self, v: &Victims) -> String {
        match self {
            Plant::LinkToVictim => format!("is a symbolic link (to {})", v.file.display()),
            Plant::LinkToAbsent => format!("is a symbolic link (to {})", v.absent.display()),
            Plant::Fifo => "is a fifo".into(),
            Plant::Directory => "is a directory".into(),
        }
    }

    /// What was planted is still there: for a link, following it would have reached the
    /// victim (the attack was real; sbx did not follow it).
    fn assert_left(self, path: &Path, v: &Victims, r: &Ran) {
        let m = std::fs::symlink_metadata(path)
            .unwrap_or_else(|e| panic!("{self:?}: {} is gone ({e}): {r:?}", path.display()));
        let t = m.file_type();
        match self {
            Plant::LinkToVictim | Plant::LinkToAbsent => {
                let target = if matches!(self, Plant::LinkToVictim) {
                    &v.file
                } else {
                    &v.absent
                };
                assert_eq!(&std::fs::read_link(path).unwrap(), target, "{r:?}");
            }
            Plant::Fifo => assert!(t.is_fifo(), "{self:?}: {t:?}: {r:?}"),
            Plant::Directory => {
                assert!(t.is_dir(), "{self:?}: {t:?}: {r:?}");
                assert!(names_in(path).is_empty(), "{self:?}: written into: {r:?}");
            }
        }
    }
}

/// Runs sbx from a fresh work directory (writable inside, with an empty `ws` to overlay) with
/// `args`; the command plants `plant` at `target` (absolute, under the work directory, which
/// `args` may name through `{W}`) and exits 3.
fn run_planting(args: &[&str], target: &str, plant: Plant, v: &Victims) -> (Ran, Workdir) {
    let mut s = common::bare();
    s.work.subdir("ws");
    // The overlay's private layer goes to $TMPDIR, which must lie outside the writable work
    // directory (sbx refuses layers the command could reach).
    let tmp = Workdir::new();
    s.cmd.env("TMPDIR", tmp.path());
    let w = s.work.path().display().to_string();
    let target = PathBuf::from(target.replace("{W}", &w));
    let script = format!(
        "{} && echo PLANTED; echo new > {w}/ws/new.txt; exit 3",
        plant.script(&target, v)
    );
    s.cmd
        .args(args.iter().map(|a| a.replace("{W}", &w)))
        .args(["--", "sh", "-c", &script]);
    run_within(s, HANG)
}

/// The checks of one planted report path: the command ran and planted, its exit code is
/// sbx's, the victim is untouched, the plant left, and sbx said what it found.
fn assert_refused(r: &Ran, work: &Workdir, target: &str, plant: Plant, v: &Victims) {
    let what = format!("{target}, {plant:?}");
    assert!(r.stdout.contains("PLANTED"), "{what}: not planted: {r:?}");
    assert_eq!(r.code, 3, "{what}: the command's exit code: {r:?}");
    v.assert_untouched(&format!("{what}: {r:?}"));
    let path = PathBuf::from(target.replace("{W}", &work.path().display().to_string()));
    plant.assert_left(&path, v, r);
    let name = path.file_name().unwrap().to_string_lossy();
    let said = format!("{name} {}, not a regular file: refused", plant.found(v));
    assert!(
        r.stderr.contains(&said),
        "{what}: sbx did not say {said:?}: {r:?}"
    );
}

#[test]
fn a_json_status_file_the_command_replaced_is_refused_not_followed() {
    let v = Victims::new();
    for plant in PLANTS {
        let (r, work) = run_planting(
            &["--json-status", "report.json"],
            "{W}/report.json",
            plant,
            &v,
        );
        assert_refused(&r, &work, "{W}/report.json", plant, &v);
        assert!(
            r.stderr
                .contains("sbx: the run report was not written: report.json is"),
            "{r:?}"
        );
    }
}

#[test]
fn a_changes_file_the_command_replaced_is_refused_not_followed() {
    let v = Victims::new();
    for plant in PLANTS {
        let args = ["--overlay", "ws", "--changes", "{W}/changes.json"];
        let (r, work) = run_planting(&args, "{W}/changes.json", plant, &v);
        assert_refused(&r, &work, "{W}/changes.json", plant, &v);
        assert!(
            r.stderr
                .contains("sbx: the change report was not written: "),
            "{r:?}"
        );
    }
}

/// A kept directory the command could write (inside the writable working directory) is
/// refused before the run: the command could plant a record or swap the layers that
/// `sbx changes` and `sbx apply` read later. Nothing runs and nothing is created.
#[test]
fn a_kept_directory_the_command_could_write_is_refused_before_the_run() {
    let v = Victims::new();
    let (r, work) = run_planting(
        &["--overlay", "ws", "--keep-changes", "kept"],
        "{W}/kept/sbx-changes.json",
        Plant::LinkToVictim,
        &v,
    );
    assert_eq!(r.code, 125, "{r:?}");
    assert!(!r.stdout.contains("PLANTED"), "the command ran: {r:?}");
    assert!(
        r.stderr.contains("which the command can write") && r.stderr.contains("keep the changes"),
        "{r:?}"
    );
    assert!(
        !work.path().join("kept").exists(),
        "left a kept directory: {r:?}"
    );
    v.assert_untouched(&format!("{r:?}"));
    // Control: outside the working directory, the same run keeps its changes.
    let outside = Workdir::new();
    let kept = outside.path().join("kept");
    let mut s = common::bare();
    s.work.subdir("ws");
    s.cmd.args(["--overlay", "ws", "--keep-changes"]).arg(&kept);
    s.cmd.args(["--", "sh", "-c", "echo new > ws/new.txt"]);
    let (r, _work) = run_within(s, HANG);
    assert_eq!(r.code, 0, "{r:?}");
    let record = std::fs::read_to_string(kept.join("sbx-changes.json")).unwrap();
    assert!(record.contains("\"upper\""), "{record}");
}

/// The same for the private layer: a `$TMPDIR` inside the writable working directory.
#[test]
fn a_private_layer_the_command_could_write_is_refused_before_the_run() {
    let mut s = common::bare();
    s.work.subdir("ws");
    s.cmd
        .args(["--overlay", "ws", "--", "sh", "-c", "echo RAN"]);
    let (r, work) = run_within(s, HANG);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(!r.stdout.contains("RAN"), "{r:?}");
    assert!(r.stderr.contains("point TMPDIR outside it"), "{r:?}");
    let left: Vec<_> = names_in(work.path())
        .into_iter()
        .filter(|n| n.starts_with("sbx-"))
        .collect();
    assert!(left.is_empty(), "left {left:?}: {r:?}");
}

/// A report the command forged as a regular file is replaced by sbx's own, and the run's
/// files (report, changes, kept record) are written as usual.
#[test]
fn a_report_the_command_forged_is_replaced_by_sbxs() {
    let mut s = common::bare();
    s.work.subdir("ws");
    let w = s.work.path().to_path_buf();
    let forged = r#"{"exit_code": 0, "reason": "exited", "changes": []}"#;
    let script = format!(
        "for f in report.json changes.json; do echo '{forged}' > $f; done \
         && echo PLANTED; echo new > {}/ws/new.txt; exit 3",
        w.display()
    );
    let outside = Workdir::new();
    let kept = outside.path().join("kept");
    s.cmd.env("TMPDIR", outside.path());
    s.cmd.args(["--overlay", "ws", "--keep-changes"]).arg(&kept);
    s.cmd
        .args(["--json-status", "report.json", "--changes", "changes.json"]);
    s.cmd.args(["--", "sh", "-c", &script]);
    let (r, work) = run_within(s, HANG);
    assert!(r.stdout.contains("PLANTED"), "{r:?}");
    assert_eq!(r.code, 3, "{r:?}");
    assert!(common::error_lines(&r.stderr).is_empty(), "{r:?}");
    let report = common::read_report(&work.path().join("report.json"), &r);
    assert_eq!(report["exit_code"], 3, "{report}");
    let read = |p: &str| -> Value {
        let text = std::fs::read_to_string(work.path().join(p)).unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{p}: {e}: {text}"))
    };
    let changes = read("changes.json");
    assert_eq!(changes[0]["changes"][0]["path"], "new.txt", "{changes}");
    let record = std::fs::read_to_string(kept.join("sbx-changes.json")).unwrap();
    assert!(record.contains("\"schema\": 1"), "{record}");
}

/// The inherited-descriptor form: the caller opens the file, and the command cannot reach
/// the descriptor (sbx closes every fd above 2 before it runs).
#[test]
fn a_report_fd_is_out_of_the_commands_reach() {
    let mut s = common::sbx([
        "--json-status",
        "3",
        "--",
        "sh",
        "-c",
        "echo '{\"forged\": true}' >&3 && echo WROTE; exit 4",
    ]);
    let path = s.work.path().join("fd3.json");
    let file = std::fs::File::create(&path).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    // SAFETY: dup2 and fcntl are async-signal-safe; `file` outlives the spawn. The file may
    // already be fd 3, where dup2 does nothing: clearing close-on-exec covers both cases.
    unsafe {
        s.cmd.pre_exec(move || {
            if (fd != 3 && libc::dup2(fd, 3) < 0) || libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (r, _work) = run_within(s, HANG);
    drop(file);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(
        !r.stdout.contains("WROTE"),
        "the command wrote to fd 3: {r:?}"
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let rep: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("fd 3 got {text:?}: {e}; {r:?}"));
    assert_eq!(rep["exit_code"], 4, "{rep}");
    assert!(rep.get("forged").is_none(), "{rep}");
}

// ---- refused before the run ----

/// `sbx ARGS -- touch ran` from a work directory prepared by `setup`: must exit 125 without
/// running the command, saying `said`.
fn refused_before_the_run(setup: impl FnOnce(&Path), args: &[&str], said: &[&str]) -> Workdir {
    let mut s = common::bare();
    s.work.subdir("ws");
    setup(s.work.path());
    let ran = s.work.path().join("ran");
    s.cmd.args(args).arg("--").arg("touch").arg(&ran);
    let (r, work) = run_within(s, HANG);
    assert_eq!(r.code, 125, "{args:?}: {r:?}");
    assert!(!ran.exists(), "{args:?}: the command ran: {r:?}");
    let errors = common::error_lines(&r.stderr);
    assert_eq!(errors.len(), 1, "{args:?}: one message: {r:?}");
    for s in said {
        assert!(errors[0].contains(s), "{args:?}: not said {s:?}: {r:?}");
    }
    work
}

#[test]
fn report_paths_that_cannot_be_written_are_refused_before_the_run() {
    let none = |_: &Path| {};
    for option in ["--json-status", "--changes"] {
        let args = [option, "nodir/r.json", "--overlay", "ws"];
        let said = [
            option,
            "nodir/r.json: cannot use the directory nodir",
            "ENOENT",
        ];
        refused_before_the_run(none, &args, &said);

        let args = [option, "adir", "--overlay", "ws"];
        let said = [option, "adir is a directory, not a regular file"];
        let work = refused_before_the_run(
            |w| std::fs::create_dir(w.join("adir")).unwrap(),
            &args,
            &said,
        );
        assert!(names_in(&work.path().join("adir")).is_empty());

        // The test uid cannot create files in a directory of mode 0555 it owns.
        let locked = |w: &Path| {
            let d = w.join("locked");
            std::fs::create_dir(&d).unwrap();
            common::chown(&d);
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o555)).unwrap();
        };
        let args = [option, "locked/r.json", "--overlay", "ws"];
        refused_before_the_run(locked, &args, &[option, "locked", "EACCES"]);

        // A symlink at the name before the run is refused too (sbx would replace it).
        let v = Victims::new();
        let plant = |w: &Path| std::os::unix::fs::symlink(&v.file, w.join("link")).unwrap();
        let args = [option, "link", "--overlay", "ws"];
        let found = format!("link is a symbolic link (to {})", v.file.display());
        let work = refused_before_the_run(plant, &args, &[option, &found]);
        assert!(std::fs::symlink_metadata(work.path().join("link")).is_ok());
        v.assert_untouched(&format!("{option} link"));
    }
}

#[test]
fn a_kept_directory_given_as_a_symlink_is_refused_before_the_run() {
    let v = Victims::new();
    let empty = v.dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    common::chown(&empty);
    let plant = |w: &Path| std::os::unix::fs::symlink(&empty, w.join("kept")).unwrap();
    let args = ["--overlay", "ws", "--keep-changes", "kept"];
    refused_before_the_run(plant, &args, &["kept is a symbolic link"]);
    assert!(names_in(&empty).is_empty(), "wrote into the link's target");
}

/// With a usable run report, a `--changes` path refused before the run is in the report.
#[test]
fn a_refused_changes_path_is_in_the_run_report() {
    let work = refused_before_the_run(
        |_| {},
        &[
            "--json-status",
            "r.json",
            "--changes",
            "nodir/c.json",
            "--overlay",
            "ws",
        ],
        &["--changes nodir/c.json"],
    );
    let text = std::fs::read_to_string(work.path().join("r.json")).unwrap();
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["reason"], "setup_failed", "{report}");
    assert!(
        report["setup_error"]
            .as_str()
            .unwrap()
            .contains("--changes nodir/c.json"),
        "{report}"
    );
}
