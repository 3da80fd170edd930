use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

use super::*;

fn apply(upper: &Path, tree: &Path, dry_run: bool) -> Result<Vec<Action>, ApplyError> {
    Apply {
        upper,
        tree,
        tree_id: Some(SourceId::of_path(tree).unwrap()),
        protected: &[],
        dry_run,
    }
    .run()
}

fn stays_inside(upper: &Path, tree: &Path, link: &str, target: &str) -> bool {
    let root = beneath::open_dir_path(upper).unwrap();
    let layer = layer::read(root);
    let host = beneath::open_dir_path(tree).unwrap();
    super::super::resolve::Merged::new(&layer.items, host.as_fd())
        .stays_inside(link.as_bytes(), target.as_bytes())
}

#[test]
fn symlink_targets_must_stay_inside() {
    let upper = tempfile::tempdir().unwrap();
    let tree = tempfile::tempdir().unwrap();
    let (u, t) = (upper.path(), tree.path());
    assert!(stays_inside(u, t, "a/b/l", "../c"));
    assert!(stays_inside(u, t, "l", "x/y"));
    assert!(!stays_inside(u, t, "l", "../x"));
    assert!(!stays_inside(u, t, "a/l", "../../etc"));
    assert!(!stays_inside(u, t, "a/l", "/etc"));
}

#[test]
fn host_symlinks_count_unless_the_layer_hides_them() {
    let upper = tempfile::tempdir().unwrap();
    let tree = tempfile::tempdir().unwrap();
    // On the host, h -> .. (the tree's parent).
    symlink("..", tree.path().join("h")).unwrap();
    assert!(!stays_inside(upper.path(), tree.path(), "l", "h/x"));
    // A layer directory "h" replaces the host symlink: h/x is inside.
    fs::create_dir(upper.path().join("h")).unwrap();
    assert!(stays_inside(upper.path(), tree.path(), "l", "h/x"));
}

#[test]
fn chained_symlinks_are_resolved() {
    let upper = tempfile::tempdir().unwrap();
    let tree = tempfile::tempdir().unwrap();
    fs::create_dir(upper.path().join("d")).unwrap();
    symlink("..", upper.path().join("d/up")).unwrap();
    // Lexically inside (d/up/.. = d), but up is itself `..`: d/x is the tree's parent.
    symlink("up/..", upper.path().join("d/x")).unwrap();
    let e = apply(upper.path(), tree.path(), false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("d/x") && e.contains("outside"), "{e}");
    assert!(
        fs::symlink_metadata(tree.path().join("d")).is_err(),
        "nothing may be written"
    );
}

#[test]
fn applies_added_and_modified_files_and_refuses_escapes() {
    let upper = tempfile::tempdir().unwrap();
    let tree = tempfile::tempdir().unwrap();
    fs::write(tree.path().join("keep"), "old").unwrap();
    fs::write(upper.path().join("keep"), "new").unwrap();
    fs::create_dir(upper.path().join("d")).unwrap();
    fs::write(upper.path().join("d/f"), "x").unwrap();
    symlink("d/f", upper.path().join("link")).unwrap();
    let dry = apply(upper.path(), tree.path(), true).unwrap();
    assert_eq!(dry.len(), 4, "{dry:?}");
    assert_eq!(fs::read_to_string(tree.path().join("keep")).unwrap(), "old");
    apply(upper.path(), tree.path(), false).unwrap();
    assert_eq!(fs::read_to_string(tree.path().join("keep")).unwrap(), "new");
    assert_eq!(fs::read_to_string(tree.path().join("d/f")).unwrap(), "x");
    assert_eq!(
        fs::read_link(tree.path().join("link")).unwrap(),
        Path::new("d/f")
    );

    symlink("/etc", upper.path().join("evil")).unwrap();
    let e = apply(upper.path(), tree.path(), false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("evil") && e.contains("outside"), "{e}");
}

#[test]
fn never_writes_through_a_host_symlink() {
    let upper = tempfile::tempdir().unwrap();
    let tree = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    symlink(outside.path(), tree.path().join("d")).unwrap();
    fs::create_dir(upper.path().join("d")).unwrap();
    fs::write(upper.path().join("d/f"), "x").unwrap();
    // The upper "d" replaces the host symlink "d" rather than writing through it.
    let r = apply(upper.path(), tree.path(), false);
    assert!(
        fs::read_dir(outside.path()).unwrap().next().is_none(),
        "wrote outside: {r:?}"
    );
    assert!(
        fs::symlink_metadata(tree.path().join("d"))
            .unwrap()
            .is_dir()
    );
}

#[test]
fn a_replaced_tree_or_a_missing_record_is_refused() {
    let upper = tempfile::tempdir().unwrap();
    let tree = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    fs::write(upper.path().join("f"), "x").unwrap();
    let mut a = Apply {
        upper: upper.path(),
        tree: other.path(),
        tree_id: Some(SourceId::of_path(tree.path()).unwrap()),
        protected: &[],
        dry_run: false,
    };
    let e = a.run().unwrap_err();
    assert!(matches!(e, ApplyError::Replaced { .. }), "{e}");
    a.tree_id = None;
    let e = a.run().unwrap_err();
    assert!(matches!(e, ApplyError::Unverified { .. }), "{e}");
    assert!(fs::read_dir(other.path()).unwrap().next().is_none());
}

#[test]
fn new_directories_get_their_mode_after_their_content() {
    let upper = tempfile::tempdir().unwrap();
    let tree = tempfile::tempdir().unwrap();
    fs::create_dir(upper.path().join("ro")).unwrap();
    fs::write(upper.path().join("ro/f"), "x").unwrap();
    fs::set_permissions(upper.path().join("ro"), PermissionsExt::from_mode(0o2555)).unwrap();
    let acts = apply(upper.path(), tree.path(), false).unwrap();
    assert_eq!(acts[0].dropped, ["setgid"], "{acts:?}");
    let m = fs::metadata(tree.path().join("ro")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o555);
    assert_eq!(fs::read_to_string(tree.path().join("ro/f")).unwrap(), "x");
    fs::set_permissions(tree.path().join("ro"), PermissionsExt::from_mode(0o755)).unwrap();
}
