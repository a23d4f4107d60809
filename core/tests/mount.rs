//! Mounts performed for real (as root): what mount(2) is asked for is what
//! a user of mount(8) would get.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use crated_core::mount::{is_mountpoint, mount_all, unmount, unmount_all, Mount};

fn writable(dir: &Path) -> std::io::Result<()> {
    std::fs::write(dir.join("probe"), "x")
}

#[test]
fn a_read_only_bind_is_read_only_and_its_source_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let (source, target) = (dir.path().join("source"), dir.path().join("target"));
    std::fs::create_dir_all(&source).unwrap();
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(source.join("f"), "hello").unwrap();

    let guard = mount_all(&[Mount::bind(source.to_str().unwrap(), true)], &target).unwrap();
    assert_eq!(std::fs::read_to_string(target.join("f")).unwrap(), "hello");
    let err = writable(&target).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::EROFS), "{err}");
    writable(&source).unwrap();
    guard.unmount().unwrap();
    assert!(!is_mountpoint(&target).unwrap());

    let guard = mount_all(&[Mount::bind(source.to_str().unwrap(), false)], &target).unwrap();
    writable(&target).unwrap();
    drop(guard);
    assert!(
        !is_mountpoint(&target).unwrap(),
        "dropping the guard unmounts"
    );
}

#[test]
fn filesystem_options_reach_the_filesystem_and_mounts_stack() {
    let dir = tempfile::tempdir().unwrap();
    let tmpfs = |size: &str| Mount {
        r#type: "tmpfs".into(),
        source: "tmpfs".into(),
        target: String::new(),
        options: vec![format!("size={size}"), "nosuid".into(), "mode=0700".into()],
    };
    let guard = mount_all(&[tmpfs("1m"), tmpfs("2m")], dir.path()).unwrap();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = mountinfo
        .lines()
        .rfind(|l| l.split(' ').nth(4) == dir.path().to_str())
        .unwrap()
        .to_owned();
    assert!(line.contains("nosuid"), "{line}");
    assert!(line.contains("size=2048k"), "the top one: {line}");
    guard.keep();
    unmount_all(dir.path()).unwrap();
    assert!(!is_mountpoint(dir.path()).unwrap());
}

#[test]
fn a_refused_mount_names_what_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bad = Mount {
        r#type: "overlay".into(),
        source: "overlay".into(),
        target: String::new(),
        // No lowerdir: the kernel refuses.
        options: vec!["index=off".into()],
    };
    let err = mount_all(&[bad], dir.path()).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("mount overlay overlay on"), "{message}");
    assert!(message.contains("index=off"), "{message}");
    assert!(message.contains("EINVAL"), "{message}");
    assert!(!is_mountpoint(dir.path()).unwrap());

    // Not a mount point: refused, and named.
    let err = unmount(dir.path()).unwrap_err();
    assert!(err.to_string().contains("unmount"), "{err}");
    assert!(err.to_string().contains("EINVAL"), "{err}");
}
