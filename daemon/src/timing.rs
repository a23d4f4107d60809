//! A debug log line per gRPC call: its method, the gRPC status its reply
//! headers carry, and the time to them. What an operator turns on
//! (`--log-level debug`) to find which call of a slow client command is
//! slow; at other levels calls pass through untouched.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::Either;
use tonic::codegen::http;

/// The gRPC server's services, timed.
#[derive(Clone)]
pub struct Timed<S>(pub S);

type Boxed<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for Timed<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Boxed<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return Either::Left(self.0.call(request));
        }
        let method = request.uri().path().to_owned();
        let started = Instant::now();
        let call = self.0.call(request);
        Either::Right(Box::pin(async move {
            let reply = call.await;
            // A unary reply's status comes in its trailers; one in the
            // headers is an error answered before any message.
            let code = match &reply {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("0")
                    .to_owned(),
                Err(_) => "transport error".to_owned(),
            };
            tracing::debug!(
                method,
                code,
                micros = started.elapsed().as_micros() as u64,
                "grpc call"
            );
            reply
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::Service as _;

    /// A service answering every request with the given `grpc-status`
    /// header (none when empty).
    #[derive(Clone)]
    struct Answer(&'static str);

    impl tower::Service<http::Request<()>> for Answer {
        type Response = http::Response<()>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            let mut response = http::Response::new(());
            if !self.0.is_empty() {
                response
                    .headers_mut()
                    .insert("grpc-status", http::HeaderValue::from_static(self.0));
            }
            std::future::ready(Ok(response))
        }
    }

    fn request(path: &str) -> http::Request<()> {
        http::Request::builder().uri(path).body(()).unwrap()
    }

    /// What the log subscriber of a test writes.
    #[derive(Clone, Default)]
    struct Log(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Log {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn calls_are_logged_at_debug_and_passed_through() {
        let log = Log::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        {
            let _scope = tracing::subscriber::set_default(subscriber);
            let mut ok = Timed(Answer(""));
            ok.call(request("/containerd.services.version.v1.Version/Version"))
                .await
                .unwrap();
            let mut failed = Timed(Answer("5"));
            let reply = failed
                .call(request("/containerd.services.containers.v1.Containers/Get"))
                .await
                .unwrap();
            assert_eq!(
                reply.headers()["grpc-status"],
                "5",
                "the reply is untouched"
            );
        }
        let logged = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        assert!(
            logged
                .contains("method=\"/containerd.services.version.v1.Version/Version\" code=\"0\""),
            "{logged}"
        );
        assert!(
            logged.contains(
                "method=\"/containerd.services.containers.v1.Containers/Get\" code=\"5\""
            ),
            "{logged}"
        );
        assert!(logged.contains("micros="), "{logged}");
    }
}
