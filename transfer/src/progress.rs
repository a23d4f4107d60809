//! Progress of a transfer, sent as `containerd.types.transfer.Progress` on
//! the client's progress stream: status lines (no name), the image's own
//! node, and one node per blob (`layer-sha256:…`) under the image, in the
//! events containerd's ctr draws (`waiting`, `downloading`, `uploading`,
//! `complete`, `already exists`, `saved`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crated_api::containerd::types::transfer::Progress;
use crated_client::pull::{BlobState, Progress as BlobProgress};
use crated_core::descriptor::Descriptor;
use tokio::sync::{mpsc, oneshot};

use crate::any;
use crate::streams::Stream;

/// Byte counts of one blob are sent at most this often; its other
/// changes always are.
const BYTES_EVERY: Duration = Duration::from_millis(100);

/// Sends a transfer's progress; does nothing without a progress stream.
/// The stream ends (the client reads its end) when the reporter and every
/// clone of it are dropped and what they queued is sent.
#[derive(Clone)]
pub struct Reporter {
    queue: Option<mpsc::UnboundedSender<Queued>>,
}

enum Queued {
    Progress(Progress),
    /// Answered once everything queued before it is on the stream.
    Flush(oneshot::Sender<()>),
}

impl Reporter {
    /// A reporter sending on `stream`, if there is one.
    pub fn new(stream: Option<Stream>) -> Self {
        let Some(mut stream) = stream else {
            return Self { queue: None };
        };
        let (queue, mut queued) = mpsc::unbounded_channel::<Queued>();
        tokio::spawn(async move {
            let mut client_gone = false;
            while let Some(item) = queued.recv().await {
                match item {
                    Queued::Progress(_) if client_gone => {}
                    Queued::Progress(progress) => {
                        if let Err(err) = stream.send(any::pack(&progress)).await {
                            // The transfer goes on without it.
                            tracing::debug!(error = %err, "progress not sent");
                            client_gone = true;
                        }
                    }
                    Queued::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        Self { queue: Some(queue) }
    }

    fn send(&self, progress: Progress) {
        if let Some(queue) = &self.queue {
            let _ = queue.send(Queued::Progress(progress));
        }
    }

    /// Waits until everything reported so far is queued on the stream,
    /// before the transfer's reply (which travels on another HTTP/2
    /// stream, so the client may still see the reply first).
    pub async fn flush(&self) {
        if let Some(queue) = &self.queue {
            let (done, sent) = oneshot::channel();
            if queue.send(Queued::Flush(done)).is_ok() {
                let _ = sent.await;
            }
        }
    }

    /// A status line.
    pub fn status(&self, event: impl Into<String>) {
        self.send(Progress {
            event: event.into(),
            ..Progress::default()
        });
    }

    /// The state of the node `name`.
    pub fn node(&self, event: impl Into<String>, name: &str) {
        self.send(Progress {
            event: event.into(),
            name: name.to_owned(),
            ..Progress::default()
        });
    }

    /// The blobs of the image `image` as they move, `moving` naming what
    /// bytes in flight are (`downloading`, `uploading`).
    pub fn blobs(&self, image: &str, moving: &'static str) -> Blobs {
        Blobs {
            reporter: self.clone(),
            image: image.to_owned(),
            moving,
            on_resolved: None,
            last_bytes: Mutex::default(),
        }
    }
}

/// A pull's or push's per-blob progress as transfer progress.
pub struct Blobs {
    reporter: Reporter,
    image: String,
    moving: &'static str,
    on_resolved: Option<String>,
    last_bytes: Mutex<HashMap<String, Instant>>,
}

impl Blobs {
    /// Once the image's reference is resolved, the status line `status`
    /// and the image's node as `fetching image content`.
    #[must_use]
    pub fn on_resolved(mut self, status: String) -> Arc<Self> {
        self.on_resolved = Some(status);
        Arc::new(self)
    }

    /// Whether a byte count of `key` is due (none sent within
    /// [`BYTES_EVERY`]).
    fn bytes_due(&self, key: &str) -> bool {
        let mut last = self
            .last_bytes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match last.get(key) {
            Some(sent) if now.duration_since(*sent) < BYTES_EVERY => false,
            _ => {
                last.insert(key.to_owned(), now);
                true
            }
        }
    }
}

impl BlobProgress for Blobs {
    fn resolved(&self, _reference: &str, _target: &Descriptor) {
        if let Some(status) = &self.on_resolved {
            self.reporter.status(status.clone());
            self.reporter.node("fetching image content", &self.image);
        }
    }

    fn blob(&self, key: &str, state: BlobState, offset: u64, total: u64) {
        let (event, progress) = match state {
            BlobState::Waiting => ("waiting", 0),
            BlobState::Downloading => {
                if self.reporter.queue.is_none() || !self.bytes_due(key) {
                    return;
                }
                (self.moving, offset)
            }
            BlobState::Done => ("complete", total),
            BlobState::Exists => ("already exists", total),
            BlobState::Skipped => ("skipped", 0),
        };
        self.reporter.send(Progress {
            event: event.to_owned(),
            name: key.to_owned(),
            parents: vec![self.image.clone()],
            progress: i64::try_from(progress).unwrap_or(i64::MAX),
            total: i64::try_from(total).unwrap_or(i64::MAX),
        });
    }
}
