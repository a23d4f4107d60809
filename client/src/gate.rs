//! Layers becoming available while a pull fetches them, so unpacking can
//! start on each as soon as it (and its parent) is there; and the layers an
//! unpack asks the pull for.

use std::collections::HashSet;
use std::sync::Arc;

use crated_core::digest::Digest;
use crated_core::images::walk::Node;
use crated_core::{Kind, Result};
use futures::channel::mpsc;
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

/// The layers an unpack asks its pull to fetch. As containerd's unpacker,
/// the pull fetches the unpacked manifest's layers only once the unpack
/// meets the first one it has to apply, and from there on all of them: a
/// layer whose snapshot is there already, or that a remote snapshotter
/// mounts from its registry, is never downloaded. Dropping the demand
/// tells the pull nothing more will be asked.
pub(crate) struct Demand {
    sender: Option<mpsc::UnboundedSender<Node>>,
    asked: bool,
}

impl Demand {
    /// A demand whose layers go to `sender`.
    pub(crate) fn new(sender: mpsc::UnboundedSender<Node>) -> Self {
        Self {
            sender: Some(sender),
            asked: false,
        }
    }

    /// For an unpack of content already in the store: nothing to ask.
    pub(crate) fn none() -> Self {
        Self {
            sender: None,
            asked: true,
        }
    }

    /// Asks for `layers` (the one needed now and those above it), once.
    pub(crate) fn ask(&mut self, layers: &[Node]) {
        if std::mem::replace(&mut self.asked, true) {
            return;
        }
        if let Some(sender) = &self.sender {
            for layer in layers {
                // The pull stopped listening only when it failed, and then
                // the gate tells the unpack why.
                let _ = sender.unbounded_send(layer.clone());
            }
        }
    }
}
