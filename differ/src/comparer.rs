//! The walking differ's `Comparer`: both sides mounted read-only under the
//! scratch directory, the tar of their difference written (gzip-compressed
//! unless an uncompressed layer is asked for) straight into a content
//! ingest, as containerd's walking differ `Compare`.

use std::io::{self, Write};

use crated_core::content::{Info, WriterOptions};
use crated_core::descriptor::Descriptor;
use crated_core::diff::{CompareOptions, Comparer, MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_LAYER_TAR};
use crated_core::digest::{Digest, Sha256};
use crated_core::mount::{mount_all, Mount};
use crated_core::{Namespace, Result};
use tokio::sync::mpsc;

use crate::{tempdir_in, Error, WalkingDiffer};

/// The label a compressed layer gets: its uncompressed digest.
pub const UNCOMPRESSED_LABEL: &str = "containerd.io/uncompressed";

/// What [`stream_into`]'s producer writes into, sent on in 1 MiB chunks.
pub use crated_core::blocking::ChannelWriter;

/// Runs `produce` on a blocking thread, writing into `writer` (a content
/// ingest) what it writes, in 1 MiB chunks, with no copy on disk; returns
/// what it returns. A failed write stops the producer (its writes fail).
pub async fn stream_into<T: Send + 'static>(
    writer: &mut dyn crated_core::content::Writer,
    produce: impl FnOnce(ChannelWriter) -> Result<T> + Send + 'static,
) -> Result<T> {
    let (tx, mut rx) = mpsc::channel(4);
    let producer = tokio::task::spawn_blocking(move || produce(ChannelWriter::new(tx, 1 << 20)));
    let mut write_error = None;
    while let Some(chunk) = rx.recv().await {
        if let Err(e) = writer.write(&chunk).await {
            write_error = Some(e);
            break;
        }
    }
    // Dropping the receiver stops a producer still writing.
    drop(rx);
    let produced = producer
        .await
        .map_err(|source| Error::ProducerTask { source })?;
    if let Some(e) = write_error {
        return Err(e);
    }
    produced
}

/// Hashes what passes through (the uncompressed tar: the diff id).
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.hasher.update(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn read_only(mounts: &[Mount]) -> Vec<Mount> {
    mounts
        .iter()
        .map(|m| {
            let mut m = m.clone();
            if !m.options.iter().any(|o| o == "ro") {
                m.options.retain(|o| o != "rw");
                m.options.push("ro".to_owned());
            }
            m
        })
        .collect()
}

/// Mounts both sides and writes their difference into `out`; returns the
/// uncompressed digest when compressing.
fn write_layer(
    scratch: &std::path::Path,
    lower: &[Mount],
    upper: &[Mount],
    compressed: bool,
    epoch: Option<u64>,
    out: ChannelWriter,
) -> Result<Option<Digest>> {
    let lower_dir = tempdir_in(scratch)?;
    let upper_dir = tempdir_in(scratch)?;
    // No lower mounts: the diff of a snapshot without parent, against nothing.
    let lower_guard = match lower {
        [] => None,
        mounts => Some(mount_all(&read_only(mounts), &lower_dir.0)?),
    };
    let upper_guard = mount_all(&read_only(upper), &upper_dir.0)?;
    let io_error = |source: io::Error| Error::WriteDiff { source };
    let written = if compressed {
        let mut hashing = Hashing {
            inner: flate2::write::GzEncoder::new(out, flate2::Compression::default()),
            hasher: Sha256::new(),
        };
        crate::compare::write_diff(&lower_dir.0, &upper_dir.0, &mut hashing, epoch).and_then(|()| {
            let mut sink = hashing.inner.finish().map_err(io_error)?;
            sink.flush().map_err(io_error)?;
            Ok(Some(hashing.hasher.finish()))
        })
    } else {
        let mut out = out;
        crate::compare::write_diff(&lower_dir.0, &upper_dir.0, &mut out, epoch)
            .and_then(|()| out.flush().map_err(io_error).map(|()| None))
    };
    upper_guard.unmount()?;
    if let Some(guard) = lower_guard {
        guard.unmount()?;
    }
    Ok(written?)
}

#[async_trait::async_trait]
impl Comparer for WalkingDiffer {
    async fn compare(
        &self,
        ns: &Namespace,
        lower: &[Mount],
        upper: &[Mount],
        options: CompareOptions,
    ) -> Result<Descriptor> {
        let media_type = match options.media_type.as_str() {
            "" => MEDIA_TYPE_LAYER_GZIP,
            other => other,
        }
        .to_owned();
        let compressed = match media_type.as_str() {
            MEDIA_TYPE_LAYER_GZIP => true,
            MEDIA_TYPE_LAYER_TAR => false,
            other => {
                return Err(Error::UnsupportedDiffType {
                    media_type: other.to_owned(),
                }
                .into())
            }
        };
        if upper.is_empty() {
            return Err(Error::NoUpperMounts.into());
        }
        let new_ref = options.reference.is_empty();
        let reference = if new_ref {
            format!("diff-{}", crated_core::identifiers::unique_part())
        } else {
            options.reference.clone()
        };
        let mut writer = self
            .store
            .writer(
                ns,
                WriterOptions {
                    r#ref: reference.clone(),
                    total: 0,
                    expected: None,
                    lease: options.lease.clone(),
                },
            )
            .await
            .map_err(|e| e.context("failed to open writer"))?;
        let result = async {
            if !new_ref {
                writer.truncate(0).await?;
            }
            let (scratch, lower, upper) = (self.scratch.clone(), lower.to_vec(), upper.to_vec());
            // Whole seconds, as tar dates entries.
            let epoch = options.source_date_epoch.map(|t| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| since.as_secs())
            });
            let diff_id = stream_into(&mut *writer, move |out| {
                write_layer(&scratch, &lower, &upper, compressed, epoch, out)
            })
            .await?;
            Ok::<_, crated_core::Error>((writer, diff_id))
        }
        .await;
        let (writer, diff_id) = match result {
            Ok(done) => done,
            Err(err) => {
                if new_ref {
                    let _ = self.store.abort(ns, &reference).await;
                }
                return Err(err.context("failed to write diff"));
            }
        };
        let digest = writer.digest().await?;
        let mut labels = options.labels.clone();
        if let Some(id) = &diff_id {
            labels.insert(UNCOMPRESSED_LABEL.to_owned(), id.to_string());
        }
        match writer.commit(0, Some(digest.clone()), labels).await {
            Ok(()) => {}
            Err(e) if e.is_already_exists() => {}
            Err(e) => return Err(e.context("failed to commit")),
        }
        let info = self.store.info(ns, &digest).await?;
        if let Some(id) = diff_id {
            if !info.labels.contains_key(UNCOMPRESSED_LABEL) {
                let label = Info {
                    labels: [(UNCOMPRESSED_LABEL.to_owned(), id.to_string())].into(),
                    ..info.clone()
                };
                self.store
                    .update(ns, label, &[format!("labels.{UNCOMPRESSED_LABEL}")])
                    .await?;
            }
        }
        Ok(Descriptor {
            media_type,
            digest,
            size: info.size,
            annotations: Default::default(),
        })
    }
}
