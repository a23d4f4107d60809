//! Layers applied for real, as root: every entry type with its attributes,
//! whiteouts both ways, the hostile set, and the applier end to end over a
//! content store and a bind mount.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crated_core::content::{ContentStore, WriterOptions};
use crated_core::descriptor::Descriptor;
use crated_core::diff::{Applier, ApplyOptions};
use crated_core::digest::Digest;
use crated_core::mount::Mount;
use crated_core::{Kind, Namespace};
use crated_differ::{apply_stream, WalkingDiffer, Whiteouts};
use sha2::{Digest as _, Sha256};

fn sha256(data: &[u8]) -> Digest {
    let hex: String = Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Digest::parse(&format!("sha256:{hex}")).unwrap()
}

/// A directory on disk (not tmpfs), for xattrs and device nodes.
fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in("/var/tmp").unwrap()
}

/// Builds layers entry by entry, including names tar's own setters refuse.
struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Self {
        Self(tar::Builder::new(Vec::new()))
    }

    fn header(kind: tar::EntryType, name: &[u8], mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_mtime(1_000_000);
        h.set_size(0);
        h.set_uid(0);
        h.set_gid(0);
        let field = &mut h.as_old_mut().name;
        field[..name.len()].copy_from_slice(name);
        h
    }

    fn append(mut self, mut h: tar::Header, data: &[u8]) -> Self {
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    fn dir(self, name: &str) -> Self {
        self.append(
            Self::header(tar::EntryType::Directory, name.as_bytes(), 0o755),
            b"",
        )
    }

    fn file(self, name: &str, data: &[u8]) -> Self {
        self.raw_file(name.as_bytes(), data)
    }

    fn raw_file(self, name: &[u8], data: &[u8]) -> Self {
        self.append(Self::header(tar::EntryType::Regular, name, 0o644), data)
    }

    fn link(self, kind: tar::EntryType, name: &str, target: &[u8]) -> Self {
        let mut h = Self::header(kind, name.as_bytes(), 0o777);
        h.as_old_mut().linkname[..target.len()].copy_from_slice(target);
        self.append(h, b"")
    }

    fn symlink(self, name: &str, target: &str) -> Self {
        self.link(tar::EntryType::Symlink, name, target.as_bytes())
    }

    fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn apply(root: &Path, layer: &[u8], whiteouts: Whiteouts) -> crated_core::Result<(Digest, u64)> {
    Ok(apply_stream(layer, root, whiteouts)?)
}

#[test]
fn entries_keep_their_type_owner_mode_times_and_xattrs() {
    let dir = scratch();
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();

    let mut layer = Layer::new();
    let mut h = Layer::header(tar::EntryType::Directory, b"a", 0o750);
    h.set_uid(1000);
    h.set_gid(1001);
    h.set_mtime(5_000);
    layer = layer.append(h, b"");
    layer
        .0
        .append_pax_extensions([("SCHILY.xattr.user.origin", &b"layer"[..])])
        .unwrap();
    let mut h = Layer::header(tar::EntryType::Regular, b"a/f", 0o4755);
    h.set_uid(1000);
    h.set_gid(1001);
    h.set_mtime(7_000);
    layer =
        layer
            .append(h, b"hello\n")
            .symlink("a/l", "f")
            .link(tar::EntryType::Link, "a/h", b"a/f");
    let mut h = Layer::header(tar::EntryType::Char, b"dev/null2", 0o666);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    let layer = layer
        .append(h, b"")
        .append(Layer::header(tar::EntryType::Fifo, b"p", 0o600), b"")
        .file("deep/er/file", b"parents made on the way")
        .bytes();

    let (diff_id, size) = apply(&root, &layer, Whiteouts::Delete).unwrap();
    assert_eq!((diff_id, size), (sha256(&layer), layer.len() as u64));

    let f = fs::metadata(root.join("a/f")).unwrap();
    assert_eq!(fs::read(root.join("a/f")).unwrap(), b"hello\n");
    assert_eq!(
        (f.uid(), f.gid(), f.mode() & 0o7777),
        (1000, 1001, 0o4755),
        "set-uid survives chown"
    );
    assert_eq!(f.mtime(), 7_000);
    assert_eq!(f.nlink(), 2);
    assert_eq!(
        fs::metadata(root.join("a/h")).unwrap().ino(),
        f.ino(),
        "hard link"
    );
    assert_eq!(fs::read_link(root.join("a/l")).unwrap(), Path::new("f"));
    let a = fs::metadata(root.join("a")).unwrap();
    assert_eq!(
        (a.mode() & 0o7777, a.uid(), a.mtime()),
        (0o750, 1000, 5_000),
        "dir times set last"
    );
    let dev = fs::symlink_metadata(root.join("dev/null2")).unwrap();
    assert!(dev.file_type().is_char_device());
    assert_eq!(dev.rdev(), nix::sys::stat::makedev(1, 3));
    assert!(fs::symlink_metadata(root.join("p"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(
        fs::read(root.join("deep/er/file")).unwrap(),
        b"parents made on the way"
    );
    let xattr = xattr_of(&root.join("a/f"), "user.origin");
    assert_eq!(xattr.as_deref(), Some(&b"layer"[..]));
}

fn xattr_of(path: &Path, name: &str) -> Option<Vec<u8>> {
    let path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let name = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: NUL-terminated strings and a buffer of the given length.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| {
        buf.truncate(n as usize);
        buf
    })
}

#[test]
fn compressed_layers_have_the_diff_id_of_their_tar() {
    let layer = Layer::new().file("x", &[7u8; 100_000]).bytes();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&layer).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::stream::encode_all(&layer[..], 1).unwrap();
    for blob in [&layer, &gz, &zst] {
        let dir = scratch();
        let (diff_id, size) = apply(dir.path(), blob, Whiteouts::Delete).unwrap();
        assert_eq!((diff_id, size), (sha256(&layer), layer.len() as u64));
        assert_eq!(fs::read(dir.path().join("x")).unwrap(), vec![7u8; 100_000]);
    }
    let dir = scratch();
    let err = apply(dir.path(), &gz[..gz.len() / 2], Whiteouts::Delete).unwrap_err();
    assert_eq!(
        err.kind(),
        Kind::InvalidArgument,
        "a truncated layer: {err}"
    );
}

#[test]
fn whiteouts_delete_what_lower_layers_put() {
    let dir = scratch();
    let root = dir.path();
    let base = Layer::new()
        .file("a/x", b"x")
        .file("a/y", b"y")
        .file("b/z", b"z")
        .file("c/keep", b"k")
        .file("c/gone", b"g")
        .bytes();
    apply(root, &base, Whiteouts::Delete).unwrap();
    let upper = Layer::new()
        .file("a/before", b"1")
        .raw_file(b"a/.wh..wh..opq", b"")
        .file("a/after", b"2")
        .raw_file(b".wh.b", b"")
        .raw_file(b"c/.wh.gone", b"")
        .bytes();
    apply(root, &upper, Whiteouts::Delete).unwrap();
    let mut a: Vec<String> = fs::read_dir(root.join("a"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    a.sort();
    assert_eq!(
        a,
        ["after", "before"],
        "opaque keeps only this layer's entries"
    );
    assert!(!root.join("b").exists());
    assert!(root.join("c/keep").exists() && !root.join("c/gone").exists());
    assert!(!root.join(".wh.b").exists() && !root.join("a/.wh..wh..opq").exists());
}

#[test]
fn whiteouts_become_overlays_in_an_upper_dir() {
    let dir = scratch();
    let upper = Layer::new()
        .raw_file(b".wh.gone", b"")
        .dir("d")
        .raw_file(b"d/.wh..wh..opq", b"")
        .file("d/new", b"n")
        .bytes();
    apply(dir.path(), &upper, Whiteouts::Overlay).unwrap();
    let gone = fs::symlink_metadata(dir.path().join("gone")).unwrap();
    assert!(
        gone.file_type().is_char_device() && gone.rdev() == 0,
        "a 0/0 whiteout"
    );
    assert_eq!(
        xattr_of(&dir.path().join("d"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(dir.path().join("d/new").exists());
}

/// overlayfs reads its own xattrs from upper directories: a layer that set
/// `trusted.overlay.opaque` would hide lower layers' files without a
/// whiteout entry, and `trusted.overlay.redirect` would show another
/// directory's content in its place. Such layers are refused by name.
#[test]
fn layers_may_not_set_overlayfs_xattrs() {
    for name in [
        "trusted.overlay.opaque",
        "trusted.overlay.redirect",
        "trusted.overlay.metacopy",
        "user.overlay.opaque",
    ] {
        let dir = scratch();
        let mut layer = Layer::new();
        layer
            .0
            .append_pax_extensions([(format!("SCHILY.xattr.{name}").as_str(), &b"y"[..])])
            .unwrap();
        let layer = layer
            .append(Layer::header(tar::EntryType::Directory, b"d", 0o755), b"")
            .bytes();
        let err = apply(dir.path(), &layer, Whiteouts::Overlay).unwrap_err();
        assert_eq!(err.kind(), Kind::InvalidArgument, "{name}");
        let message = err.to_string();
        assert!(
            message.contains(name) && message.contains("\"d\""),
            "{message}"
        );
        if dir.path().join("d").exists() {
            assert_eq!(
                xattr_of(&dir.path().join("d"), name),
                None,
                "{name} was set"
            );
        }
    }
}

/// A sandbox: `root` to apply into, `outside` beside it holding a secret.
struct Sandbox {
    _dir: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        let dir = scratch();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        fs::create_dir(&root).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), "secret").unwrap();
        Self {
            _dir: dir,
            root,
            outside,
        }
    }

    fn outside_untouched(&self) -> bool {
        let names: Vec<_> = fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names == ["secret"] && fs::read_to_string(self.outside.join("secret")).unwrap() == "secret"
    }
}

/// Hostile layers: what names `..` is refused; what plants symlinks
/// pointing out is resolved inside the root (as containerd's `RootPath`),
/// landing where the root-relative path says or failing there — and in
/// every case nothing outside the root is written, linked or removed.
#[test]
fn hostile_layers_write_nothing_outside() {
    let outside_abs = |s: &Sandbox| s.outside.display().to_string();
    type Build = fn(&Sandbox, String) -> Vec<u8>;
    // (name, layer, refused, where it lands inside the root if applied)
    let cases: Vec<(&str, Build, bool, Option<&str>)> = vec![
        (
            "dot-dot name",
            |_, _| Layer::new().raw_file(b"../outside/x", b"x").bytes(),
            true,
            None,
        ),
        (
            "dot-dot inside a name",
            |_, _| Layer::new().raw_file(b"a/../../outside/x", b"x").bytes(),
            true,
            None,
        ),
        (
            "hard link to outside",
            |_, _| {
                Layer::new()
                    .link(tar::EntryType::Link, "hl", b"../outside/secret")
                    .bytes()
            },
            true,
            None,
        ),
        (
            "absolute symlink written through",
            |_, abs| {
                Layer::new()
                    .dir("landing")
                    .symlink("evil", "/landing")
                    .file("evil/x", b"x")
                    .symlink("out", &abs)
                    .file("out/y", b"y")
                    .bytes()
            },
            false,
            Some("landing/x"),
        ),
        (
            "symlink climbing out",
            |_, _| {
                Layer::new()
                    .dir("outside")
                    .symlink("up", "../../../outside")
                    .file("up/x", b"x")
                    .bytes()
            },
            false,
            Some("outside/x"),
        ),
        (
            "symlink to / then a deep path",
            |_, _| {
                Layer::new()
                    .dir("var")
                    .dir("var/tmp")
                    .symlink("r", "/")
                    .raw_file(b"r/var/tmp/crated-escape", b"x")
                    .bytes()
            },
            false,
            Some("var/tmp/crated-escape"),
        ),
        (
            "hard link through a symlinked dir",
            |_, _| {
                Layer::new()
                    .symlink("s", "../outside")
                    .link(tar::EntryType::Link, "hl", b"s/secret")
                    .bytes()
            },
            false,
            None,
        ),
        (
            "whiteout through a symlink",
            |_, _| {
                Layer::new()
                    .symlink("l", "../outside")
                    .raw_file(b"l/.wh.secret", b"")
                    .bytes()
            },
            false,
            None,
        ),
        (
            "opaque marker through a symlink",
            |_, _| {
                Layer::new()
                    .symlink("l", "../outside")
                    .raw_file(b"l/.wh..wh..opq", b"")
                    .bytes()
            },
            false,
            None,
        ),
        (
            "directory entry through a symlink",
            |_, _| {
                Layer::new()
                    .symlink("l", "../outside")
                    .dir("l/newdir")
                    .bytes()
            },
            false,
            None,
        ),
    ];
    for (name, build, refused, lands) in cases {
        for whiteouts in [Whiteouts::Delete, Whiteouts::Overlay] {
            let sandbox = Sandbox::new();
            let layer = build(&sandbox, outside_abs(&sandbox));
            let result = apply(&sandbox.root, &layer, whiteouts);
            if refused {
                let Err(err) = &result else {
                    panic!("{name} ({whiteouts:?}) should be refused");
                };
                assert_eq!(err.kind(), Kind::InvalidArgument, "{name}: {err}");
                assert!(
                    err.message().contains("\"..\""),
                    "{name}: refused for another reason: {err}"
                );
                let refusal = std::error::Error::source(err)
                    .and_then(|s| s.downcast_ref::<crated_differ::Error>());
                assert!(
                    matches!(refusal, Some(crated_differ::Error::EscapesRoot { .. })),
                    "{name}: {refusal:?}"
                );
            }
            if let Some(path) = lands {
                result
                    .as_ref()
                    .unwrap_or_else(|e| panic!("{name} ({whiteouts:?}): {e}"));
                assert!(
                    sandbox.root.join(path).is_file(),
                    "{name}: not at {path} in the root"
                );
            }
            assert!(
                sandbox.outside_untouched(),
                "{name} ({whiteouts:?}) wrote outside"
            );
            assert!(!Path::new("/var/tmp/crated-escape").exists(), "{name}");
        }
    }
}

/// A symlink to an absolute path the root does not have: writing through
/// it makes that path inside the root (containerd's `MkdirAll` of the
/// root-resolved path), never outside.
#[test]
fn writing_through_a_dangling_absolute_symlink_makes_the_path_inside_the_root() {
    let sandbox = Sandbox::new();
    let target = sandbox.outside.join("made");
    let layer = Layer::new()
        .symlink("out", &target.display().to_string())
        .file("out/deeper/y", b"y")
        .bytes();
    apply(&sandbox.root, &layer, Whiteouts::Delete).unwrap();
    let inside = sandbox
        .root
        .join(target.strip_prefix("/").unwrap())
        .join("deeper/y");
    assert_eq!(fs::read(&inside).unwrap(), b"y");
    assert!(sandbox.outside_untouched());
}

/// `/var/run -> /run` (absolute, as Debian has it), and a later layer
/// writing under `var/run/`: the file is in `run/`, as containerd puts it.
#[test]
fn an_absolute_symlink_to_a_directory_of_the_root_is_written_through() {
    let dir = scratch();
    let base = Layer::new()
        .dir("run")
        .dir("var")
        .symlink("var/run", "/run")
        .bytes();
    let top = Layer::new().file("var/run/app.pid", b"42").bytes();
    apply(dir.path(), &base, Whiteouts::Delete).unwrap();
    apply(dir.path(), &top, Whiteouts::Delete).unwrap();
    assert_eq!(fs::read(dir.path().join("run/app.pid")).unwrap(), b"42");
    assert!(fs::symlink_metadata(dir.path().join("var/run"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn symlinks_inside_the_root_are_followed_for_later_entries() {
    let dir = scratch();
    let layer = Layer::new()
        .dir("real")
        .symlink("alias", "real")
        .file("alias/f", b"through")
        .bytes();
    apply(dir.path(), &layer, Whiteouts::Delete).unwrap();
    assert_eq!(fs::read(dir.path().join("real/f")).unwrap(), b"through");
}

async fn store_with(blob: &[u8]) -> (tempfile::TempDir, Arc<dyn ContentStore>, Namespace, Digest) {
    let dir = scratch();
    let store: Arc<dyn ContentStore> =
        Arc::new(crated_content_store::LocalStore::open(&dir.path().join("content")).unwrap());
    let ns = Namespace::new("default").unwrap();
    let mut w = store
        .writer(
            &ns,
            WriterOptions {
                r#ref: "layer".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    w.write(blob).await.unwrap();
    let digest = sha256(blob);
    w.commit(blob.len() as u64, Some(digest.clone()), BTreeMap::new())
        .await
        .unwrap();
    (dir, store, ns, digest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applier_reads_content_and_applies_onto_mounts() {
    let layer = Layer::new().file("etc/hostname", b"crated\n").bytes();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&layer).unwrap();
    let gz = gz.finish().unwrap();
    let (dir, store, ns, digest) = store_with(&gz).await;
    let applier = WalkingDiffer::new(store, &dir.path().join("mounts")).unwrap();
    // Layers mid-apply are mounted there: nobody else looks in.
    use std::os::unix::fs::PermissionsExt as _;
    let scratch = fs::metadata(dir.path().join("mounts")).unwrap();
    assert_eq!(scratch.permissions().mode() & 0o777, 0o700);
    let rootfs = dir.path().join("rootfs");
    fs::create_dir(&rootfs).unwrap();
    let desc = Descriptor {
        media_type: "application/vnd.docker.image.rootfs.diff.tar.gzip".into(),
        digest,
        size: gz.len() as u64,
        annotations: BTreeMap::new(),
    };
    let mounts = [Mount::bind(rootfs.display().to_string(), false)];
    // Flushed to disk through the mount, as `image_pull_with_sync_fs` asks.
    let synced = ApplyOptions { sync_fs: true };
    let diff = applier.apply(&ns, &desc, &mounts, synced).await.unwrap();
    assert_eq!(diff.digest, sha256(&layer));
    assert_eq!(diff.media_type, "application/vnd.oci.image.layer.v1.tar");
    assert_eq!(fs::read(rootfs.join("etc/hostname")).unwrap(), b"crated\n");
    assert_eq!(
        fs::read_dir(dir.path().join("mounts")).unwrap().count(),
        0,
        "mount points removed"
    );

    let ro = [Mount::bind(rootfs.display().to_string(), true)];
    let plain = ApplyOptions::default();
    let err = applier.apply(&ns, &desc, &ro, plain).await.unwrap_err();
    assert_eq!(err.kind(), Kind::InvalidArgument);
    let mut config = desc.clone();
    config.media_type = "application/vnd.oci.image.config.v1+json".into();
    let err = applier
        .apply(&ns, &config, &mounts, plain)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::NotImplemented);
}

#[test]
fn missing_parents_are_made_through_symlinks_that_stay_inside() {
    let dir = scratch();
    // The symlink climbs out of its own directory but not out of the root.
    let layer = Layer::new()
        .dir("a")
        .dir("a/b")
        .dir("c")
        .symlink("a/b/up", "../../c")
        .file("a/b/up/made/f", b"inside")
        .bytes();
    apply(dir.path(), &layer, Whiteouts::Delete).unwrap();
    assert_eq!(fs::read(dir.path().join("c/made/f")).unwrap(), b"inside");
}

/// A daemon killed mid-apply leaves a layer's mounts under the scratch
/// directory; the next differ unmounts them and removes the mount points
/// (and leaves the mounted tree's files alone).
#[tokio::test]
async fn scratch_mounts_a_killed_daemon_left_are_unmounted_at_start() {
    let (dir, store, _ns, _digest) = store_with(b"").await;
    let scratch = dir.path().join("mounts");
    let rootfs = dir.path().join("rootfs");
    fs::create_dir_all(&rootfs).unwrap();
    fs::write(rootfs.join("kept"), b"k").unwrap();
    let stuck = scratch.join("apply-left");
    let empty = scratch.join("diff-left");
    fs::create_dir_all(&stuck).unwrap();
    fs::create_dir_all(&empty).unwrap();
    // Stacked twice, as a retried apply could leave it; kept as if the
    // daemon died before unmounting.
    let bind = [Mount::bind(rootfs.display().to_string(), false)];
    crated_core::mount::mount_all(&bind, &stuck).unwrap().keep();
    crated_core::mount::mount_all(&bind, &stuck).unwrap().keep();
    assert!(crated_core::mount::is_mountpoint(&stuck).unwrap());

    let _differ = WalkingDiffer::new(store, &scratch).unwrap();
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(&stuck.display().to_string()),
        "still mounted:\n{mountinfo}"
    );
    assert_eq!(
        fs::read_dir(&scratch).unwrap().count(),
        0,
        "mount points left"
    );
    assert_eq!(fs::read(rootfs.join("kept")).unwrap(), b"k");
}
