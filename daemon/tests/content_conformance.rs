//! The content conformance suite, run through the gRPC proxy against a live
//! `crated`: the namespaced store, the content service and the proxy together
//! must behave like any other `ContentStore`.

// Helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use crated_api::containerd::services::leases::v1::leases_client::LeasesClient;
use crated_api::containerd::services::leases::v1::CreateRequest;
use crated_api::metadata::set_grpc_namespace;
use crated_api::proxy::content::ContentProxy;
use crated_core::content::testsuite::namespace;
use crated_core::content::ContentStore;

async fn store() -> (Arc<dyn ContentStore>, Box<dyn std::any::Any + Send>) {
    // Starting the daemon blocks (it waits for the socket); keep it off the
    // async threads.
    let daemon = tokio::task::spawn_blocking(common::Daemon::start)
        .await
        .unwrap();
    // Like any containerd client writing content it means to keep, the
    // suite writes under a lease; otherwise the daemon's collector may take
    // a blob between its commit and the suite's next look at it.
    let channel = daemon.channel().await;
    let mut leases = LeasesClient::new(channel.clone());
    let mut request = tonic::Request::new(CreateRequest {
        id: "conformance".into(),
        labels: Default::default(),
    });
    set_grpc_namespace(&mut request, &namespace());
    leases.create(request).await.unwrap();
    let proxy = ContentProxy::new(channel).with_lease("conformance");
    (Arc::new(proxy), Box::new(daemon))
}

crated_core::content_store_testsuite!(store);
