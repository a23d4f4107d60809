#![doc = include_str!("../README.md")]

pub mod archive;
pub mod compare;
mod comparer;
pub mod error;
pub mod install;
pub mod plugin;

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crated_core::content::{ContentStore, ReaderAt};
use crated_core::descriptor::Descriptor;
use crated_core::diff::{Applier, ApplyOptions, MEDIA_TYPE_LAYER_TAR};
use crated_core::digest::{Digest, Sha256};
use crated_core::mount::{mount_all, Mount};
use crated_core::{Namespace, Result};

pub use archive::Whiteouts;
pub use comparer::{stream_into, ChannelWriter, UNCOMPRESSED_LABEL};
pub use error::Error;

/// containerd's walking differ over a content store: applies layers
/// (decompress, hash and apply in one pass, with no copy of the
/// uncompressed layer) and makes them from two mounts.
pub struct WalkingDiffer {
    store: Arc<dyn ContentStore>,
    /// Where non-overlay mounts are mounted while a layer is applied.
    scratch: PathBuf,
}

impl WalkingDiffer {
    /// An applier reading layers from `store`, mounting under `scratch`
    /// (created if missing, and made 0700 either way: layers being
    /// applied are mounted there, readable by nobody else).
    pub fn new(store: Arc<dyn ContentStore>, scratch: &Path) -> Result<Self> {
        use std::os::unix::fs::PermissionsExt as _;
        let io = |op: &'static str| {
            move |source| Error::Io {
                op,
                path: scratch.to_owned(),
                source,
            }
        };
        // Parents made here too are 0700 (the plugin's state directory).
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(scratch)
            .map_err(io("create"))?;
        std::fs::set_permissions(scratch, std::fs::Permissions::from_mode(0o700))
            .map_err(io("chmod"))?;
        reclaim_scratch(scratch);
        Ok(Self {
            store,
            scratch: scratch.to_owned(),
        })
    }
}

/// Compression of a layer, from its first bytes (containerd sniffs too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

fn sniff(head: &[u8]) -> Compression {
    match head {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
        _ => Compression::None,
    }
}

/// Whether `media_type` is a layer containerd's differ applies: OCI layers
/// (plain, gzip, zstd, non-distributable) and Docker's rootfs diffs.
pub fn is_layer_media_type(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.oci.image.layer.")
        || media_type.starts_with("application/vnd.docker.image.rootfs.")
}

/// Counts and hashes what passes through.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// A blob of the content store read synchronously, from a blocking thread
/// of `runtime` (the tar readers are synchronous).
pub struct BlobReader<'a> {
    runtime: tokio::runtime::Handle,
    reader: &'a dyn ReaderAt,
    offset: u64,
}

impl<'a> BlobReader<'a> {
    /// Reads `reader` from its start; must not be used on a runtime thread.
    pub fn new(runtime: tokio::runtime::Handle, reader: &'a dyn ReaderAt) -> Self {
        Self {
            runtime,
            reader,
            offset: 0,
        }
    }
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.offset >= self.reader.size() || buf.is_empty() {
            return Ok(0);
        }
        let n = self
            .runtime
            .block_on(self.reader.read_at(self.offset, buf))
            .map_err(io::Error::other)?;
        self.offset += n as u64;
        Ok(n)
    }
}

fn read_error(source: io::Error) -> Error {
    Error::ReadLayer { source }
}

/// Which side of a [`copy`] failed.
pub(crate) enum CopyError {
    /// Reading: the layer's problem.
    Read(io::Error),
    /// Writing: the disk's problem.
    Write(io::Error),
}

/// How much of a file's data one read takes.
const COPY_CHUNK: usize = 256 << 10;

/// Copies `from` into `to` through `buf` (made `COPY_CHUNK` long on first
/// use, so one buffer serves every file of a layer), telling a failed read
/// from a failed write (`io::copy` does not say which side failed).
pub(crate) fn copy(
    from: &mut impl Read,
    to: &mut impl Write,
    buf: &mut Vec<u8>,
) -> std::result::Result<(), CopyError> {
    if buf.len() < COPY_CHUNK {
        buf.resize(COPY_CHUNK, 0);
    }
    loop {
        let n = match from.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        to.write_all(&buf[..n]).map_err(CopyError::Write)?;
    }
}

/// The tar stream of a layer blob: gzip and zstd are recognised by their
/// first bytes (whatever the media type says, as containerd), anything else
/// is read as a plain tar.
pub fn decompress<'a>(blob: impl Read + 'a) -> error::Result<Box<dyn Read + 'a>> {
    let mut blob = BufReader::with_capacity(1 << 20, blob);
    let compression = sniff(blob.fill_buf().map_err(read_error)?);
    Ok(match compression {
        Compression::None => Box::new(blob),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(blob)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(blob).map_err(read_error)?)
        }
    })
}

/// Decompresses, hashes and applies `blob` onto `root`; returns the
/// digest and size of the uncompressed stream.
pub fn apply_stream(
    blob: impl Read,
    root: &Path,
    whiteouts: Whiteouts,
) -> error::Result<(Digest, u64)> {
    let plain = decompress(blob)?;
    let hashing = Hashing {
        inner: plain,
        hasher: Sha256::new(),
        size: 0,
    };
    let mut rest = archive::apply(hashing, root, whiteouts)?;
    // The diff id covers the whole stream: the archive's end padding too.
    io::copy(&mut rest, &mut io::sink()).map_err(read_error)?;
    Ok((rest.hasher.finish(), rest.size))
}

/// The upper dir of a single overlay mount, which a layer is applied into
/// directly (with overlay whiteouts), as containerd does.
fn overlay_upper(mounts: &[Mount]) -> Option<PathBuf> {
    let [m] = mounts else { return None };
    if m.r#type != "overlay" {
        return None;
    }
    m.options
        .iter()
        .find_map(|o| o.strip_prefix("upperdir="))
        .map(PathBuf::from)
}

#[async_trait::async_trait]
impl Applier for WalkingDiffer {
    async fn apply(
        &self,
        ns: &Namespace,
        layer: &Descriptor,
        mounts: &[Mount],
        options: ApplyOptions,
    ) -> Result<Descriptor> {
        if !is_layer_media_type(&layer.media_type) {
            return Err(Error::UnsupportedLayer {
                media_type: layer.media_type.clone(),
                digest: layer.digest.clone(),
            }
            .into());
        }
        if mounts.iter().any(Mount::is_read_only) {
            return Err(Error::ReadOnlyMounts {
                digest: layer.digest.clone(),
            }
            .into());
        }
        let reader = self.store.reader_at(ns, &layer.digest).await?;
        let runtime = tokio::runtime::Handle::current();
        let mounts = mounts.to_vec();
        let scratch = self.scratch.clone();
        let digest = layer.digest.clone();
        let (diff_id, size) = tokio::task::spawn_blocking(move || {
            let blob = BlobReader::new(runtime, &*reader);
            if let Some(upper) = overlay_upper(&mounts) {
                let applied = apply_stream(blob, &upper, Whiteouts::Overlay)?;
                if options.sync_fs {
                    sync_fs(&upper)?;
                }
                return Ok(applied);
            }
            let target = tempdir_in(&scratch)?;
            let guard = mount_all(&mounts, &target.0)?;
            let applied = apply_stream(blob, &target.0, Whiteouts::Delete).and_then(|a| {
                // Through the mount, whatever filesystem it is on.
                if options.sync_fs {
                    sync_fs(&target.0)?;
                }
                Ok(a)
            });
            guard.unmount()?;
            Ok::<_, crated_core::Error>(applied?)
        })
        .await
        .map_err(|source| Error::ApplyTask { digest, source })??;
        Ok(Descriptor {
            media_type: MEDIA_TYPE_LAYER_TAR.to_owned(),
            digest: diff_id,
            size,
            annotations: BTreeMap::new(),
        })
    }
}

/// Flushes the filesystem holding `dir` to its disk.
fn sync_fs(dir: &Path) -> error::Result<()> {
    use std::os::fd::AsRawFd as _;
    let opened = std::fs::File::open(dir).map_err(|source| Error::Io {
        op: "open",
        path: dir.to_owned(),
        source,
    })?;
    nix::unistd::syncfs(opened.as_raw_fd()).map_err(|source| Error::Sys {
        op: "sync the filesystem of",
        path: dir.to_owned(),
        source,
    })
}

/// Unmounts and removes the mount points a daemon killed mid-apply or
/// mid-diff left in `scratch`. Only empty directories are removed, so a
/// tree that would not unmount is never deleted through its mount.
fn reclaim_scratch(scratch: &Path) {
    let Ok(entries) = std::fs::read_dir(scratch) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if let Err(err) = crated_core::mount::unmount_all(&path) {
            tracing::warn!(path = %path.display(), error = %err, "unmount a leftover scratch mount");
            continue;
        }
        if let Err(err) = std::fs::remove_dir(&path) {
            tracing::warn!(path = %path.display(), error = %err, "remove a leftover scratch mount point");
        }
    }
}

/// A fresh directory under `parent`, removed on drop.
struct TempDir(PathBuf);

fn tempdir_in(parent: &Path) -> error::Result<TempDir> {
    let path = parent.join(format!("apply-{}", crated_core::identifiers::unique_part()));
    match std::fs::create_dir(&path) {
        Ok(()) => Ok(TempDir(path)),
        Err(source) => Err(Error::Io {
            op: "create",
            path,
            source,
        }),
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Only an empty mount point: never a tree that is still mounted.
        let _ = std::fs::remove_dir(&self.0);
    }
}
