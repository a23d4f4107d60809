//! The content conformance suite, run through the gRPC proxy against a live
//! `crated`: the namespaced store, the content service and the proxy together
//! must behave like any other `ContentStore`.

// Helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use crated_api::proxy::content::ContentProxy;
use crated_core::content::ContentStore;

async fn store() -> (Arc<dyn ContentStore>, Box<dyn std::any::Any + Send>) {
    // Starting the daemon blocks (it waits for the socket); keep it off the
    // async threads.
    let daemon = tokio::task::spawn_blocking(common::Daemon::start)
        .await
        .unwrap();
    let proxy = ContentProxy::new(daemon.channel().await);
    (Arc::new(proxy), Box::new(daemon))
}

crated_core::content_store_testsuite!(store);
