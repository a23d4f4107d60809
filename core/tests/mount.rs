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

/// `uidmap=`/`gidmap=` (containerd's options for a pod in a user namespace
/// of its own): an overlay's layers and a bind show the node's owners
/// shifted into the pod's range, what the pod writes lands in the upper
/// directory with the pod's host IDs, and no scratch mount stays behind.
#[test]
fn id_mapped_overlay_and_bind_shift_owners_and_leave_no_scratch() {
    use std::os::unix::fs::MetadataExt as _;

    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| {
        let p = dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    let (lower, upper, work, root) = (d("lower"), d("upper"), d("work"), d("root"));
    std::fs::write(lower.join("f"), "from the image").unwrap();
    std::os::unix::fs::chown(lower.join("f"), Some(0), Some(0)).unwrap();
    std::os::unix::fs::chown(&upper, Some(100_000), Some(100_000)).unwrap();
    let maps = [
        "uidmap=0:100000:65536".to_owned(),
        "gidmap=0:100000:65536".to_owned(),
    ];

    let overlay = Mount {
        r#type: "overlay".into(),
        source: "overlay".into(),
        target: String::new(),
        options: [
            format!("lowerdir={}", lower.display()),
            format!("upperdir={}", upper.display()),
            format!("workdir={}", work.display()),
        ]
        .into_iter()
        .chain(maps.clone())
        .collect(),
    };
    let guard = mount_all(&[overlay], &root).unwrap();
    let seen = std::fs::metadata(root.join("f")).unwrap();
    assert_eq!((seen.uid(), seen.gid()), (100_000, 100_000));
    let on_disk = std::fs::metadata(lower.join("f")).unwrap();
    assert_eq!(on_disk.uid(), 0, "the layer itself is not rewritten");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("idmap"))
        .collect();
    assert!(leftovers.is_empty(), "scratch left: {leftovers:?}");
    drop(guard);
    assert!(!is_mountpoint(&root).unwrap());

    let mut bind = Mount::bind(lower.to_str().unwrap(), false);
    bind.options.extend(maps);
    let guard = mount_all(&[bind], &root).unwrap();
    assert_eq!(std::fs::metadata(root.join("f")).unwrap().uid(), 100_000);
    // What the pod's root (host 100000) makes is the node's root's on disk.
    let made = std::process::Command::new("setpriv")
        .args([
            "--reuid=100000",
            "--regid=100000",
            "--clear-groups",
            "touch",
        ])
        .arg(root.join("g"))
        .status()
        .unwrap();
    assert!(made.success(), "the pod's root writes through the mapping");
    assert_eq!(std::fs::metadata(lower.join("g")).unwrap().uid(), 0);
    // The node's root is outside the mapping: it cannot make files there.
    let err = std::fs::write(root.join("h"), "").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::EOVERFLOW), "{err}");
    drop(guard);
    assert!(!is_mountpoint(&root).unwrap());

    let mut half = Mount::bind(lower.to_str().unwrap(), false);
    half.options.push("uidmap=0:100000:65536".into());
    let err = mount_all(&[half], &root).unwrap_err();
    assert!(err.to_string().contains("go together"), "{err}");
}

/// What a process that died half-way left mounted beneath a directory is
/// detached, deepest first, names with spaces included; the directory's
/// own mount and the sources stay.
#[test]
fn unmount_beneath_detaches_what_is_below_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| {
        let p = dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    let (volume, layer, bundle) = (d("volume"), d("layer"), d("bundle"));
    std::fs::write(layer.join("keep"), "x").unwrap();
    let tmpfs = Mount {
        r#type: "tmpfs".into(),
        source: "tmpfs".into(),
        target: String::new(),
        options: vec!["size=1m".into()],
    };
    mount_all(&[tmpfs], &bundle).unwrap().keep();
    let outer = bundle.join("a dir");
    std::fs::create_dir(&outer).unwrap();
    mount_all(&[Mount::bind(volume.to_str().unwrap(), false)], &outer)
        .unwrap()
        .keep();
    let inner = outer.join("inner");
    std::fs::create_dir(&inner).unwrap();
    mount_all(&[Mount::bind(layer.to_str().unwrap(), true)], &inner)
        .unwrap()
        .keep();

    crated_core::mount::unmount_beneath(&bundle).unwrap();
    assert!(!is_mountpoint(&outer).unwrap());
    assert!(
        is_mountpoint(&bundle).unwrap(),
        "the directory's own mount stays"
    );
    unmount_all(&bundle).unwrap();
    assert_eq!(std::fs::read_to_string(layer.join("keep")).unwrap(), "x");
    crated_core::mount::unmount_beneath(&dir.path().join("missing")).unwrap();
}
