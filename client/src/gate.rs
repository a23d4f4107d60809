//! Layers becoming available while a pull fetches them, so unpacking can
//! start on each as soon as it (and its parent) is there.

use std::collections::HashSet;
use std::sync::Arc;

use crated_core::digest::Digest;
use crated_core::{Kind, Result};
use tokio::sync::watch;

use crate::Error;

#[derive(Default)]
struct State {
    /// Everything is available (an unpack of content already there).
    open: bool,
    ready: HashSet<Digest>,
    /// Why fetching failed: the error's kind and message (the error itself
    /// goes to the pull's caller).
    failed: Option<(Kind, String)>,
}

/// Tells an unpack which layers it may apply yet.
#[derive(Clone)]
pub(crate) struct LayerGate(Arc<watch::Sender<State>>);

impl LayerGate {
    /// A gate with every layer available.
    pub(crate) fn open() -> Self {
        Self(Arc::new(watch::Sender::new(State {
            open: true,
            ..State::default()
        })))
    }

    /// A gate with no layer available yet.
    pub(crate) fn closed() -> Self {
        Self(Arc::new(watch::Sender::new(State::default())))
    }

    /// `digest` is in the content store.
    pub(crate) fn ready(&self, digest: &Digest) {
        self.0.send_modify(|s| {
            s.ready.insert(digest.clone());
        });
    }

    /// Fetching failed: waiters give up with `err`.
    pub(crate) fn fail(&self, err: &crated_core::Error) {
        self.0
            .send_modify(|s| s.failed = Some((err.kind(), err.message().to_owned())));
    }

    /// Waits until `digest` is available.
    pub(crate) async fn wait(&self, digest: &Digest) -> Result<()> {
        let mut rx = self.0.subscribe();
        loop {
            {
                let state = rx.borrow_and_update();
                if state.open || state.ready.contains(digest) {
                    return Ok(());
                }
                if let Some((kind, message)) = &state.failed {
                    return Err(Error::LayerNotFetched {
                        digest: digest.clone(),
                        source: Box::new(crated_core::Error::new(*kind, message.clone())),
                    }
                    .into());
                }
            }
            // The sender lives in `self`: it cannot be dropped while we wait.
            let _ = rx.changed().await;
        }
    }
}
