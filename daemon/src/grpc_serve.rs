//! The gRPC server's connection loop: hyper's HTTP/2 on the unix socket,
//! serving the plugins' tonic routes.
//!
//! Not tonic's `Server::serve`: that one (0.12) ends a call whose
//! `grpc-timeout` passes before its handler does with a reply of its own —
//! CANCELLED, and with no content-type, which Go clients read as a
//! malformed reply (`Unknown`) instead of the DEADLINE_EXCEEDED their own
//! deadline gives them. critest's "public image should timeout if
//! requested" saw that whenever the daemon's reply won the race. Here, as
//! with containerd's Go server, a call past its deadline ends when the
//! client resets the stream, which drops the handler's future.

use std::convert::Infallible;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::UnixListener;
use tokio::sync::watch;
use tonic::codegen::http;

use crate::timing::Timed;

/// Serves `routes` on `listener` until `stop` turns true; then stops
/// accepting and waits for the connections' calls in flight to finish.
pub async fn serve(
    listener: UnixListener,
    routes: tonic::service::Routes,
    mut stop: watch::Receiver<bool>,
) -> Result<(), Infallible> {
    let routes = routes.prepare();
    let service = tower::ServiceBuilder::new()
        .layer(tower::layer::layer_fn(Timed))
        .map_request(|request: http::Request<hyper::body::Incoming>| {
            request.map(tonic::body::boxed)
        })
        .service(routes);
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2.timer(TokioTimer::new());
    // Unlimited calls per connection, as tonic and Go's server allow
    // (hyper's default is 200): a client may hold many waits and
    // subscriptions on one connection.
    http2.max_concurrent_streams(None);
    let graceful = GracefulShutdown::new();
    if *stop.borrow() {
        return Ok(());
    }
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of descriptors, say: not the server's end.
                        tracing::warn!(error = %e, "accept a grpc connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let connection = http2.serve_connection(
                    TokioIo::new(stream),
                    TowerToHyperService::new(service.clone()),
                );
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "grpc connection ended");
                    }
                });
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
