//! `install`: what stacked layers leave in bin/ and lib/, written
//! atomically into a directory, and nothing else anywhere.

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crated_differ::install::{install, InstallOptions};
use crated_testimages::LayerBuilder;

fn run(
    dest: &Path,
    layers: &[Vec<u8>],
    libs: bool,
    replace: bool,
) -> crated_core::Result<Vec<String>> {
    let written = install(
        dest,
        layers.len(),
        |i| Ok(Box::new(&layers[i][..]) as Box<dyn Read>),
        &InstallOptions { libs, replace },
    )?;
    Ok(written
        .iter()
        .map(|p| p.strip_prefix(dest).unwrap().display().to_string())
        .collect())
}

/// `dir/name` → what it is, for every entry under `dest`.
fn tree(dest: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(dest).unwrap() {
        let dir = dir.unwrap().path();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let what = if meta.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&path).unwrap().display())
            } else {
                format!(
                    "{:o} {}",
                    meta.permissions().mode() & 0o7777,
                    String::from_utf8_lossy(&std::fs::read(&path).unwrap())
                )
            };
            out.push(format!(
                "{} {what}",
                path.strip_prefix(dest).unwrap().display()
            ));
        }
    }
    out.sort();
    out
}

#[test]
fn later_layers_win_whiteouts_remove_and_only_bin_is_installed() {
    let dest = tempfile::tempdir().unwrap();
    let base = LayerBuilder::new()
        .dir("bin")
        .unwrap()
        .file_mode(b"bin/tool", b"v1", 0o755)
        .unwrap()
        .file_mode(b"./bin/gone", b"x", 0o755)
        .unwrap()
        .file_mode(b"/bin/hidden", b"x", 0o755)
        .unwrap()
        .file_mode(b"bin/suid", b"s", 0o4755)
        .unwrap()
        .file_mode(b"usr/bin/other", b"x", 0o755)
        .unwrap()
        .file_mode(b"bin/sub/deep", b"x", 0o755)
        .unwrap()
        .file_mode(b"lib/libtool.so", b"lib", 0o644)
        .unwrap()
        .finish()
        .unwrap();
    let top = LayerBuilder::new()
        .file_mode(b"bin/tool", b"v2", 0o750)
        .unwrap()
        .file_mode(b"bin/.wh.gone", b"", 0o644)
        .unwrap()
        .symlink("bin/tool-link", "tool")
        .unwrap()
        .link(tar::EntryType::Link, "bin/tool-hard", b"bin/tool")
        .unwrap()
        .finish()
        .unwrap();
    let written = run(dest.path(), &[base.clone(), top.clone()], false, false).unwrap();
    assert_eq!(
        tree(dest.path()),
        [
            "bin/hidden 755 x",
            "bin/suid 755 s",
            "bin/tool 750 v2",
            "bin/tool-hard 750 v2",
            "bin/tool-link -> tool",
        ]
    );
    assert_eq!(written.len(), 5, "{written:?}");
    // The hard link is one file with `tool`.
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(
        std::fs::metadata(dest.path().join("bin/tool"))
            .unwrap()
            .ino(),
        std::fs::metadata(dest.path().join("bin/tool-hard"))
            .unwrap()
            .ino()
    );

    // --libs adds lib/; --replace is needed over the installed files.
    let err = run(dest.path(), &[base.clone(), top.clone()], true, false).unwrap_err();
    assert_eq!(err.kind(), crated_core::Kind::AlreadyExists, "{err}");
    assert!(err.message().contains("cannot replace bin/hidden"), "{err}");
    assert!(
        !dest.path().join("lib/libtool.so").exists(),
        "wrote before refusing"
    );
    run(dest.path(), &[base, top], true, true).unwrap();
    assert!(tree(dest.path()).contains(&"lib/libtool.so 644 lib".to_owned()));
}

#[test]
fn an_opaque_bin_hides_lower_layers_and_a_replaced_bin_drops_them() {
    let dest = tempfile::tempdir().unwrap();
    let lower = LayerBuilder::new()
        .file_mode(b"bin/a", b"a", 0o755)
        .unwrap()
        .file_mode(b"bin/b", b"b", 0o755)
        .unwrap()
        .finish()
        .unwrap();
    let opaque = LayerBuilder::new()
        .file_mode(b"bin/c", b"c", 0o755)
        .unwrap()
        .file_mode(b"bin/.wh..wh..opq", b"", 0o644)
        .unwrap()
        .finish()
        .unwrap();
    run(dest.path(), &[lower.clone(), opaque], false, false).unwrap();
    assert_eq!(tree(dest.path()), ["bin/c 755 c"]);

    let dest = tempfile::tempdir().unwrap();
    let replaced = LayerBuilder::new()
        .symlink("bin", "usr/bin")
        .unwrap()
        .finish()
        .unwrap();
    let err = run(dest.path(), &[lower, replaced], false, false).unwrap_err();
    assert_eq!(err.kind(), crated_core::Kind::NotFound, "{err}");
    assert!(err.message().contains("no files in /bin"), "{err}");
    assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0);
}

#[test]
fn a_broken_layer_fails_and_leaves_no_partial_file() {
    let dest = tempfile::tempdir().unwrap();
    let good = LayerBuilder::new()
        .file_mode(b"bin/big", &vec![7u8; 64 << 10], 0o755)
        .unwrap()
        .finish()
        .unwrap();
    // Cut inside the file's data: pass one already fails reading it.
    let cut = good[..(good.len() / 2)].to_vec();
    let err = run(dest.path(), &[cut], false, false).unwrap_err();
    assert_eq!(err.kind(), crated_core::Kind::InvalidArgument, "{err}");
    assert!(!dest.path().join("bin").exists() || tree(dest.path()).is_empty());
}

#[test]
fn hard_link_chains_resolve_and_unusable_names_are_refused_before_writing() {
    let dest = tempfile::tempdir().unwrap();
    let layer = LayerBuilder::new()
        .file_mode(b"bin/real", b"r", 0o755)
        .unwrap()
        .link(tar::EntryType::Link, "bin/b", b"bin/real")
        .unwrap()
        // `a` links to `b`, itself a link: both end at `real`.
        .link(tar::EntryType::Link, "bin/a", b"bin/b")
        .unwrap()
        .link(tar::EntryType::Link, "bin/nowhere", b"bin/missing")
        .unwrap()
        .finish()
        .unwrap();
    run(dest.path(), &[layer], false, false).unwrap();
    assert_eq!(
        tree(dest.path()),
        ["bin/a 755 r", "bin/b 755 r", "bin/real 755 r"]
    );

    let dest = tempfile::tempdir().unwrap();
    let long = format!("bin/{}", "x".repeat(230));
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in [("bin/fine", b"f"), (long.as_str(), b"l")] {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o755);
        header.set_size(1);
        builder.append_data(&mut header, name, &data[..]).unwrap();
    }
    let layer = builder.into_inner().unwrap();
    let err = run(dest.path(), &[layer], false, false).unwrap_err();
    assert!(err.message().contains("name too long"), "{err}");
    assert!(
        !dest.path().join("bin/fine").exists(),
        "wrote before refusing"
    );
}
