//! Differs: layers applied onto mounts (unpack), as containerd's
//! `diff.Applier`.

use crate::descriptor::Descriptor;
use crate::mount::Mount;
use crate::{Namespace, Result};

/// Media type of an uncompressed layer, the descriptor an apply returns.
pub const MEDIA_TYPE_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

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
    ) -> Result<Descriptor>;
}
