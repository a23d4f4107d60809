//! Checkpoint images as containerd lays them out: an OCI index whose
//! entries are criu's dump (a tar), the container's spec, the checkpoint
//! and runtime options, the image and the read-write layer, told apart by
//! media type; annotations name the image, runtime and snapshotter to
//! restore with.

/// criu's images, as a tar.
pub const MEDIA_TYPE_CRIU: &str = "application/vnd.containerd.container.criu.checkpoint.criu.tar";
/// The container's spec (an encoded `google.protobuf.Any`).
pub const MEDIA_TYPE_CONFIG: &str =
    "application/vnd.containerd.container.checkpoint.config.v1+proto";
/// The checkpoint options the task was dumped with.
pub const MEDIA_TYPE_OPTIONS: &str =
    "application/vnd.containerd.container.checkpoint.options.v1+proto";
/// The container's runtime options.
pub const MEDIA_TYPE_RUNTIME_OPTIONS: &str =
    "application/vnd.containerd.container.checkpoint.runtime.options+proto";
/// The container's read-write layer, as a diff.
pub const MEDIA_TYPE_RW: &str = "application/vnd.containerd.container.rw.tar";

/// Annotations of a checkpoint index (containerd's `checkpoint*Label`).
pub mod annotations {
    /// The image the container ran.
    pub const IMAGE_NAME: &str = "org.opencontainers.image.ref.name";
    /// Its runtime.
    pub const RUNTIME_NAME: &str = "io.containerd.checkpoint.runtime";
    /// Its snapshotter.
    pub const SNAPSHOTTER_NAME: &str = "io.containerd.checkpoint.snapshotter";
}
