//! Differs: layers applied onto mounts (unpack) and made from two mounts
//! (commit), as containerd's `diff.Applier` and `diff.Comparer`.

use crate::descriptor::Descriptor;
use crate::mount::Mount;
use crate::{Namespace, Result};

/// Media type of an uncompressed layer, the descriptor an apply returns.
pub const MEDIA_TYPE_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// How to apply a layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Flush the filesystem the layer was written to before answering
    /// (`syncfs`), so a power cut after the apply cannot leave its files
    /// empty: containerd's `sync_fs` (the CRI's `image_pull_with_sync_fs`).
    pub sync_fs: bool,
}

/// Applies layers onto mounts.
#[async_trait::async_trait]
pub trait Applier: Send + Sync {
    /// Applies `layer` — a blob in the content of `ns`: a tar, gzip- or
    /// zstd-compressed, of an OCI or Docker layer media type — onto
    /// `mounts`, converting OCI whiteouts. Returns the descriptor of the
    /// uncompressed layer: its digest is the layer's diff id. A layer with
    /// an entry that would reach outside the mounts fails InvalidArgument
    /// and writes nothing outside them.
    async fn apply(
        &self,
        ns: &Namespace,
        layer: &Descriptor,
        mounts: &[Mount],
        options: ApplyOptions,
    ) -> Result<Descriptor>;
}

/// Media type of a gzip-compressed layer, what a compare makes by default.
pub const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// How to make a layer from two mounts.
#[derive(Debug, Clone, Default)]
pub struct CompareOptions {
    /// The layer's media type: [`MEDIA_TYPE_LAYER_TAR`] or
    /// [`MEDIA_TYPE_LAYER_GZIP`] (the default when empty).
    pub media_type: String,
    /// The content ingest ref to write under; a unique one when empty.
    pub reference: String,
    /// Labels of the committed blob (the differ adds
    /// `containerd.io/uncompressed` for a compressed layer).
    pub labels: std::collections::BTreeMap<String, String>,
    /// The lease holding the blob (the caller's `containerd-lease`).
    pub lease: Option<String>,
    /// Clamp entry times to this (`SOURCE_DATE_EPOCH`), which whiteouts
    /// also carry, so the same change makes the same layer whenever it is
    /// made.
    pub source_date_epoch: Option<std::time::SystemTime>,
}

/// Makes layers from the difference of two mounts.
#[async_trait::async_trait]
pub trait Comparer: Send + Sync {
    /// Writes what changed from `lower` to `upper` (mounted read-only) as a
    /// layer into the content of `ns`, with whiteouts for what was removed,
    /// and returns its descriptor. A media type the differ cannot make is
    /// NotImplemented.
    async fn compare(
        &self,
        ns: &Namespace,
        lower: &[Mount],
        upper: &[Mount],
        options: CompareOptions,
    ) -> Result<Descriptor>;
}

/// A differ: containerd's `io.containerd.differ.v1` plugins both apply and
/// compare.
pub trait Differ: Applier + Comparer {}

impl<T: Applier + Comparer> Differ for T {}
