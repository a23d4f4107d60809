//! The streaming service over a real gRPC connection (a unix socket in a
//! temporary directory), as containerd's Go client uses it: the daemon
//! acknowledges a stream once it is registered, a name is taken once and
//! is unique in its namespace, messages flow both ways, and a stream whose
//! client goes away before any transfer takes it is forgotten.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use crated_api::containerd::services::streaming::v1::streaming_client::StreamingClient;
use crated_api::containerd::services::streaming::v1::StreamInit;
use crated_api::containerd::types::transfer::{Progress, WindowUpdate};
use crated_core::Kind;
use crated_transfer::any;
use crated_transfer::streams::{Service, StreamManager};
use prost_types::Any;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

struct Served {
    manager: Arc<StreamManager>,
    address: String,
    _dir: tempfile::TempDir,
}

async fn serve() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let manager = StreamManager::new();
    let service = Service::new(Arc::clone(&manager)).into_server();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
    );
    Served {
        manager,
        address: socket.display().to_string(),
        _dir: dir,
    }
}

/// Opens the stream `id` in `ns` as the Go client does; returns the
/// sender of further messages and the daemon's replies after the
/// acknowledgement.
async fn open(
    served: &Served,
    ns: &str,
    id: &str,
) -> Result<(mpsc::Sender<Any>, tonic::Streaming<Any>), tonic::Status> {
    let channel = crated_api::dial::connect(&served.address).await.unwrap();
    let mut client = StreamingClient::new(channel);
    let (send, outgoing) = mpsc::channel(4);
    send.send(any::pack(&StreamInit { id: id.into() }))
        .await
        .unwrap();
    let mut request = tonic::Request::new(ReceiverStream::new(outgoing));
    request
        .metadata_mut()
        .insert("containerd-namespace", ns.parse().unwrap());
    let mut replies = client.stream(request).await?.into_inner();
    let ack = replies.message().await?.unwrap();
    assert_eq!(ack.type_url, "google.protobuf.Empty");
    Ok((send, replies))
}

#[tokio::test]
async fn streams_are_named_taken_once_and_carry_messages_both_ways() {
    let served = serve().await;
    let (to_daemon, mut from_daemon) = open(&served, "default", "progress-1").await.unwrap();

    // Unique per namespace: the same name elsewhere is another stream.
    let err = open(&served, "default", "progress-1").await.err().unwrap();
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err}");
    let _other = open(&served, "other", "progress-1").await.unwrap();

    let mut stream = served.manager.take("default", "progress-1").unwrap();
    let again = served.manager.take("default", "progress-1").err().unwrap();
    assert_eq!(again.kind(), Kind::NotFound);

    let event = Progress {
        event: "saved".into(),
        name: "x".into(),
        ..Progress::default()
    };
    stream.send(any::pack(&event)).await.unwrap();
    let got = from_daemon.message().await.unwrap().unwrap();
    assert_eq!(any::unpack::<Progress>(&got).unwrap(), event);

    to_daemon
        .send(any::pack(&WindowUpdate { update: 7 }))
        .await
        .unwrap();
    let got = stream.recv().await.unwrap().unwrap();
    assert_eq!(any::unpack::<WindowUpdate>(&got).unwrap().update, 7);

    // The daemon's end dropped: the client reads the end of the stream.
    drop(stream);
    assert!(from_daemon.message().await.unwrap().is_none());
    // The client's end closed: the daemon reads the end of it.
    let (to_daemon, _replies) = open(&served, "default", "auth-1").await.unwrap();
    let mut stream = served.manager.take("default", "auth-1").unwrap();
    drop(to_daemon);
    assert!(stream.recv().await.unwrap().is_none());
}

#[tokio::test]
async fn a_stream_nobody_took_is_forgotten_when_its_client_goes() {
    let served = serve().await;
    let (to_daemon, replies) = open(&served, "default", "import-1").await.unwrap();
    // While its client is there, the name is held.
    let err = open(&served, "default", "import-1").await.err().unwrap();
    assert_eq!(err.code(), tonic::Code::AlreadyExists);
    drop(to_daemon);
    drop(replies);
    // Gone: the name is free again, without a transfer ever taking it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match open(&served, "default", "import-1").await {
            Ok(_) => break,
            Err(err) if err.code() == tonic::Code::AlreadyExists => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the stream outlived its client by 10 s"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(err) => panic!("{err}"),
        }
    }
}
