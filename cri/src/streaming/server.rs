//! The HTTP side of the streaming server: `/exec/<token>`,
//! `/attach/<token>` and `/portforward/<token>`, each upgraded to SPDY/3.1
//! after the stream protocol is negotiated (`X-Stream-Protocol-Version`),
//! or to WebSocket with the protocol as its subprotocol.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use crated_core::{Error, Result};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, UPGRADE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::spdy::Connection;
use super::{portforward, remotecommand, sessions, websocket, Pending};
use crate::Cri;

const PROTOCOL_HEADER: &str = "x-stream-protocol-version";
const ACCEPTED_HEADER: &str = "x-accepted-stream-protocol-versions";
const SPDY: &str = "SPDY/3.1";
/// A client gets this long to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Binds the streaming server to `stream_server_address` and
/// `stream_server_port` (0: any free port) and serves it in the
/// background; the RPCs hand out URLs from then on.
pub(crate) async fn serve(cri: &Arc<Cri>) -> Result<SocketAddr> {
    let config = &cri.config;
    let port: u16 = config.stream_server_port.parse().map_err(|_| {
        Error::invalid_argument(format!(
            "stream_server_port {:?} is not a port number",
            config.stream_server_port
        ))
    })?;
    let host = config.stream_server_address.trim();
    let addr = if host.is_empty() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    } else if let Ok(ip) = host.parse::<IpAddr>() {
        SocketAddr::new(ip, port)
    } else {
        tokio::net::lookup_host((host, port))
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| {
                Error::invalid_argument(format!(
                    "stream_server_address {host:?} is neither an IP address nor a resolvable name"
                ))
            })?
    };
    let idle = config.stream_idle_timeout()?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io(format!("listen for streaming on {addr}"), e))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::io("streaming server address", e))?;
    let tls = super::tls::acceptor(config, local)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // A second plugin instance keeps the first URL; it cannot happen in
    // one daemon.
    let _ = cri.streaming.base_url.set(format!("{scheme}://{local}"));
    tracing::info!(%local, scheme, "CRI streaming server listening");
    tokio::spawn(accept_loop(listener, tls, Arc::downgrade(cri), idle));
    Ok(local)
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    cri: Weak<Cri>,
    idle: Option<Duration>,
) {
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "accept a streaming connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let cri = cri.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(tcp, cri, idle).await,
                Some(acceptor) => {
                    // The handshake gets the time a request head gets.
                    match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => serve_connection(stream, cri, idle).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "streaming TLS handshake"),
                        Err(_) => tracing::debug!("streaming TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// Serves one connection's HTTP requests, upgrades included.
async fn serve_connection<S>(stream: S, cri: Weak<Cri>, idle: Option<Duration>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let cri = cri.clone();
        async move { Ok::<_, Infallible>(route(cri, request, idle)) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
    if let Err(e) = served {
        tracing::debug!(error = %e, "streaming HTTP connection");
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.into() + "\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The values of a header that may repeat and hold comma-separated lists.
fn header_list<'a>(request: &'a Request<Incoming>, name: &str) -> Vec<&'a str> {
    request
        .headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect()
}

fn header_has(request: &Request<Incoming>, name: hyper::header::HeaderName, word: &str) -> bool {
    header_list(request, name.as_str())
        .iter()
        .any(|v| v.eq_ignore_ascii_case(word))
}

fn route(
    cri: Weak<Cri>,
    request: Request<Incoming>,
    idle: Option<Duration>,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().trim_start_matches('/');
    let Some((kind, token)) = path.split_once('/') else {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    };
    if !matches!(kind, "exec" | "attach" | "portforward") || token.is_empty() || token.contains('/')
    {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    }
    if request.method() != Method::GET && request.method() != Method::POST {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not allowed; use GET or POST", request.method()),
        );
    }
    let Some(cri) = cri.upgrade() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the CRI plugin is shutting down",
        );
    };
    let pending = match cri.streaming.tokens.take(token) {
        Some(pending) => pending,
        None => {
            return text(
                StatusCode::NOT_FOUND,
                format!("unknown, used or expired {kind} token {token:?}"),
            )
        }
    };
    let protocols: &[&str] = match (&pending, kind) {
        (Pending::Exec(_), "exec") | (Pending::Attach(_), "attach") => remotecommand::PROTOCOLS,
        (Pending::PortForward(_), "portforward") => &[portforward::PROTOCOL],
        _ => {
            return text(
                StatusCode::NOT_FOUND,
                format!("token {token:?} is not for {kind}"),
            )
        }
    };
    if websocket::is_websocket(&request) {
        let supported: &[&'static str] = match pending {
            Pending::PortForward(_) => &[websocket::TUNNELED_PORTFORWARD],
            _ => remotecommand::PROTOCOLS,
        };
        let (accept, protocol) = match websocket::handshake(&request, supported) {
            Ok(agreed) => agreed,
            Err(why) => return text(StatusCode::BAD_REQUEST, why),
        };
        let upgrade = hyper::upgrade::on(request);
        tokio::spawn(async move {
            match upgrade.await {
                Ok(upgraded) => {
                    websocket::serve(cri, pending, TokioIo::new(upgraded), protocol, idle).await;
                }
                Err(e) => tracing::debug!(error = %e, "streaming upgrade failed"),
            }
        });
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert("sec-websocket-accept", accept);
        headers.insert("sec-websocket-protocol", HeaderValue::from_static(protocol));
        return response;
    }
    if !header_has(&request, CONNECTION, "upgrade") || !header_has(&request, UPGRADE, SPDY) {
        return text(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: the request asks for no SPDY/3.1 upgrade (Connection: Upgrade, Upgrade: SPDY/3.1)",
        );
    }
    let offered = header_list(&request, PROTOCOL_HEADER);
    if offered.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: header X-Stream-Protocol-Version is missing or empty",
        );
    }
    // The client's order of preference decides.
    let Some(chosen) = offered.iter().find(|p| protocols.contains(p)) else {
        let mut response = text(
            StatusCode::FORBIDDEN,
            format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {protocols:?}"
            ),
        );
        for protocol in protocols {
            response
                .headers_mut()
                .append(ACCEPTED_HEADER, HeaderValue::from_static(protocol));
        }
        return response;
    };
    let chosen = HeaderValue::from_str(chosen).unwrap_or(HeaderValue::from_static(""));
    let upgrade = hyper::upgrade::on(request);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let conn = Connection::serve(TokioIo::new(upgraded), idle);
                sessions::run(cri, pending, conn).await;
            }
            Err(e) => tracing::debug!(error = %e, "streaming upgrade failed"),
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static(SPDY));
    headers.insert(PROTOCOL_HEADER, chosen);
    response
}
