//! The registry client's errors, each with its containerd kind.
//!
//! A registry's answer maps by its status as containerd's resolver does
//! (404 NotFound; 429 and 5xx, still there after the retries, Unavailable;
//! 401, 403 and anything else unexpected Unknown); a connection that fails
//! is Unavailable; a timeout is DeadlineExceeded and names which timeout
//! fired; configuration that does not parse (hosts.toml, a docker config,
//! PEM files) is InvalidArgument naming the file; a file that cannot be
//! read takes its I/O kind through core's one mapping ([`io_kind`]).

use std::path::PathBuf;
use std::time::Duration;

use crated_core::digest::Digest;
use crated_core::error::{io_kind, KindError};
use crated_core::Kind;
use http::{Method, StatusCode};

/// What can go wrong resolving, fetching or pushing. Every variant names
/// the reference, digest, URL, realm or file involved and keeps the
/// underlying error as its source; `?` turns it into a
/// [`crated_core::Error`] of its kind.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The reference does not parse (its message names it).
    #[error("{source}")]
    InvalidReference {
        /// The reference as written.
        reference: String,
        /// Why it does not parse.
        #[source]
        source: crated_core::Error,
    },
    /// A reference without a registry host.
    #[error("invalid reference {reference:?}: hostname required")]
    HostnameRequired {
        /// The reference as written.
        reference: String,
    },
    /// A reference without a tag or digest, resolved.
    #[error("invalid reference {reference:?}: object required (a tag or digest)")]
    ObjectRequired {
        /// The reference as written.
        reference: String,
    },
    /// No host that may resolve has the reference.
    #[error("{reference}: not found")]
    NotFound {
        /// The reference as written.
        reference: String,
    },
    /// No host that may pull has the blob or manifest.
    #[error("{digest} from {reference}: not found")]
    BlobNotFound {
        /// The blob or manifest.
        digest: Digest,
        /// The reference it was fetched for.
        reference: String,
    },
    /// No host of the reference may be pushed to.
    #[error("{reference}: no host configured with the push capability")]
    NoPushHost {
        /// The reference as written.
        reference: String,
    },
    /// A registry answered with a status the request cannot go on from
    /// (after authentication, redirects and retries).
    #[error("{}", status_message(what, *status, detail))]
    Status {
        /// What the request was for (`"pushing sha256:… to 127.0.0.1:5000/a:1"`).
        what: String,
        /// The answer's status.
        status: StatusCode,
        /// The registry's own error codes and messages, if it sent any.
        detail: String,
    },
    /// A URL (a registry's, or a `Location` it sent) does not parse.
    #[error("invalid URL {url:?}: {source}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// Why it does not parse.
        #[source]
        source: http::uri::InvalidUri,
    },
    /// A request could not be built (a header value that is not one).
    #[error("invalid request to {url}: {source}")]
    InvalidRequest {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: http::Error,
    },
    /// A request got no answer: connecting, TLS or the connection failed.
    #[error("failed to {method} {url} for {what}: {}", chain(source))]
    Request {
        /// The request's method.
        method: Method,
        /// The URL.
        url: String,
        /// What the request was for.
        what: String,
        /// The client's error, with its causes (boxed: it is large, and
        /// every Result of the crate would carry its size).
        #[source]
        source: Box<hyper_util::client::legacy::Error>,
    },
    /// The response timeout fired: no response headers in time.
    #[error("{method} {url} for {what}: no response within {timeout:?}")]
    ResponseTimeout {
        /// The request's method.
        method: Method,
        /// The URL.
        url: String,
        /// What the request was for.
        what: String,
        /// The response timeout.
        timeout: Duration,
    },
    /// The read timeout fired: no chunk of a response body in time.
    #[error("reading {what}: no data for {timeout:?}")]
    ReadTimeout {
        /// What the body is (`"sha256:… from 127.0.0.1:5000/a:1"`).
        what: String,
        /// The read timeout.
        timeout: Duration,
    },
    /// A response body broke off.
    #[error("reading {what}: {}", chain(source))]
    Body {
        /// What the body is.
        what: String,
        /// The connection's error.
        #[source]
        source: hyper::Error,
    },
    /// A response is larger than what is read into memory.
    #[error("{what} is larger than {limit} bytes")]
    ResponseTooLarge {
        /// What the response is (`"the manifest of …"`).
        what: String,
        /// The limit.
        limit: usize,
    },
    /// A redirect loop, or a very long chain.
    #[error("too many redirects fetching {url} for {what}")]
    TooManyRedirects {
        /// The last URL.
        url: String,
        /// What the request was for.
        what: String,
    },
    /// An upload was accepted without saying where to send the blob.
    #[error("{what}: upload started without a Location")]
    NoLocation {
        /// The push.
        what: String,
    },
    /// A bearer challenge's realm is not a URL.
    #[error("invalid token realm {realm:?}: {source}")]
    TokenRealm {
        /// The realm.
        realm: String,
        /// Why it does not parse.
        #[source]
        source: http::uri::InvalidUri,
    },
    /// A token request could not be built.
    #[error("invalid token request to {realm}: {source}")]
    InvalidTokenRequest {
        /// The realm.
        realm: String,
        /// Why.
        #[source]
        source: http::Error,
    },
    /// The response timeout fired on a token request.
    #[error("token request to {realm} timed out after {timeout:?}")]
    TokenTimeout {
        /// The realm.
        realm: String,
        /// The response timeout.
        timeout: Duration,
    },
    /// A token request got no answer.
    #[error("failed to fetch token from {realm}: {}", chain(source))]
    TokenRequest {
        /// The realm.
        realm: String,
        /// The client's error, with its causes (boxed: it is large, and
        /// every Result of the crate would carry its size).
        #[source]
        source: Box<hyper_util::client::legacy::Error>,
    },
    /// The token server refused.
    #[error("failed to fetch anonymous token from {realm} for scope {scope:?}: {status}: {body}")]
    TokenStatus {
        /// The realm.
        realm: String,
        /// The scopes asked for.
        scope: String,
        /// The answer's status.
        status: StatusCode,
        /// The answer's body, trimmed.
        body: String,
    },
    /// The token server's answer is not JSON of a token.
    #[error("invalid token response from {realm}: {source}")]
    TokenResponse {
        /// The realm.
        realm: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The token server's answer holds no token.
    #[error("token response from {realm} holds no token")]
    NoToken {
        /// The realm.
        realm: String,
    },
    /// A `Docker-Content-Digest` header that is not a digest.
    #[error("{what}: bad Docker-Content-Digest: {source}")]
    BadDigestHeader {
        /// What the request was for.
        what: String,
        /// The header's value.
        value: String,
        /// Why it does not parse.
        #[source]
        source: crated_core::Error,
    },
    /// A resolve by digest answered with another digest.
    #[error("{what}: registry returned digest {digest}, asked for {expected}")]
    DigestMismatch {
        /// What the request was for.
        what: String,
        /// The digest the registry returned.
        digest: Digest,
        /// The digest of the reference.
        expected: Digest,
    },
    /// A Docker schema 1 manifest, which cannot be unpacked.
    #[error("{reference}: docker schema 1 manifests are not supported")]
    SchemaOne {
        /// The reference as written.
        reference: String,
        /// The manifest's media type.
        media_type: String,
    },
    /// A manifest whose descriptor is larger than what is read into memory.
    #[error("{digest} is {size} bytes, more than the {limit} allowed for a manifest")]
    ManifestTooLarge {
        /// The manifest.
        digest: Digest,
        /// Its descriptor's size.
        size: u64,
        /// The limit.
        limit: usize,
    },
    /// A registry sent more than the descriptor's size.
    #[error("{digest} is longer than its descriptor's {size} bytes")]
    LongerThanDescriptor {
        /// The blob or manifest.
        digest: Digest,
        /// Its descriptor's size.
        size: u64,
    },
    /// What a registry sent does not have the digest asked for.
    #[error("{expected} fetched with digest {digest}")]
    FetchedDigest {
        /// The digest asked for.
        expected: Digest,
        /// The digest of what came.
        digest: Digest,
    },
    /// A registry stored a pushed manifest under another digest.
    #[error("{what}: registry stored it as {stored}")]
    StoredAs {
        /// The push.
        what: String,
        /// The registry's `Docker-Content-Digest`.
        stored: String,
    },
    /// A hosts directory could not be looked up.
    #[error("failed to look up hosts directory {}: {source}", dir.display())]
    HostsDir {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A hosts.toml could not be read.
    #[error("failed to read {}: {source}", file.display())]
    ReadHostsFile {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A hosts.toml is not what containerd documents.
    #[error("invalid hosts file {}: {source}", file.display())]
    HostsFile {
        /// The file.
        file: PathBuf,
        /// What is wrong in it.
        #[source]
        source: HostsFileError,
    },
    /// A mirror endpoint of the configuration is not a URL.
    #[error("invalid endpoint {endpoint:?} of the mirrors of {domain:?}: {problem}")]
    MirrorEndpoint {
        /// The domain it mirrors.
        domain: String,
        /// The endpoint as written.
        endpoint: String,
        /// What is wrong.
        problem: String,
    },
    /// A docker config could not be read.
    #[error("failed to read {}: {source}", path.display())]
    ReadDockerConfig {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A docker config is not JSON.
    #[error("invalid docker config {}: {source}", path.display())]
    DockerConfig {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// An `auth` of a docker config is not base64.
    #[error("invalid auth for {key:?} in {}: {source}", path.display())]
    DockerConfigAuth {
        /// The file.
        path: PathBuf,
        /// The `auths` key.
        key: String,
        /// The decoding error.
        #[source]
        source: base64::DecodeError,
    },
    /// A certificate or key file could not be read.
    #[error("failed to read certificate file {}: {source}", path.display())]
    ReadCertificate {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key file is not PEM.
    #[error("invalid PEM in {}: {source}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: std::io::Error,
    },
    /// A certificate file holds no certificate.
    #[error("no certificate in {}", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A key file holds no private key.
    #[error("no private key in {}", path.display())]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// A CA certificate that rustls refuses.
    #[error("invalid CA certificate in {}: {source}", path.display())]
    CaCertificate {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// A client certificate and key that rustls refuses.
    #[error("invalid client certificate {}: {source}", path.display())]
    ClientCertificate {
        /// The certificate's file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// The TLS configuration could not be made.
    #[error("TLS setup: {source}")]
    TlsSetup {
        /// Why.
        #[source]
        source: rustls::Error,
    },
}

/// What is wrong in a hosts.toml; [`Error::HostsFile`] names the file.
#[derive(Debug, thiserror::Error)]
pub enum HostsFileError {
    /// Not TOML.
    #[error("failed to parse TOML: {source}")]
    Toml {
        /// The parse error.
        #[source]
        source: toml::de::Error,
    },
    /// A field of the wrong type.
    #[error("{field:?} must be {expected}")]
    FieldType {
        /// The field.
        field: &'static str,
        /// What it must be (`"a boolean"`).
        expected: &'static str,
    },
    /// A `[host."…"]` entry that is not a table.
    #[error("host {server:?} must be a table")]
    HostNotTable {
        /// The host's key.
        server: String,
    },
    /// A server or host URL that does not parse.
    #[error("unable to parse server {server:?}: {problem}")]
    BadServer {
        /// The URL.
        server: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A capability other than pull, resolve and push.
    #[error("unknown capability {capability}")]
    UnknownCapability {
        /// The value, as TOML.
        capability: String,
    },
    /// A `ca` or `client` value of the wrong type.
    #[error("invalid type {found} for {field:?}")]
    InvalidType {
        /// The field.
        field: &'static str,
        /// The TOML type found.
        found: &'static str,
    },
    /// A `client` pair that is not `[cert, key]`.
    #[error("invalid pair {pair} for \"client\"")]
    ClientPair {
        /// The value, as TOML.
        pair: String,
    },
    /// A header value that is not a string or an array of them.
    #[error("invalid value for header {name:?}")]
    HeaderValue {
        /// The header.
        name: String,
    },
}

/// Result with the registry client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error and its causes, `: `-joined: hyper's own message says little
/// ("client error (Connect)"); the cause says what happened.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The message of an unexpected answer, with the registry's own error
/// codes and messages (`MANIFEST_UNKNOWN: manifest unknown`).
fn status_message(what: &str, status: StatusCode, detail: &str) -> String {
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    };
    match status {
        StatusCode::NOT_FOUND => format!("{what}: not found{detail}"),
        StatusCode::UNAUTHORIZED => format!(
            "{what}: unauthorized: authentication required (pass --user, or credentials in a docker config){detail}"
        ),
        StatusCode::FORBIDDEN => format!("{what}: access denied{detail}"),
        StatusCode::TOO_MANY_REQUESTS => {
            format!("{what}: registry still rate-limiting after retries{detail}")
        }
        s if s.is_server_error() => format!("{what}: registry answered {s} after retries{detail}"),
        s => format!("{what}: unexpected status {s}{detail}"),
    }
}

/// The kind of a registry's answer, as containerd's resolver has it: a
/// busy or failing registry may answer later; 401 and 403 are Unknown
/// (containerd 1.6's errdefs has no kind for them).
fn status_kind(status: StatusCode) -> Kind {
    match status {
        StatusCode::NOT_FOUND => Kind::NotFound,
        StatusCode::TOO_MANY_REQUESTS => Kind::Unavailable,
        s if s.is_server_error() => Kind::Unavailable,
        _ => Kind::Unknown,
    }
}

impl KindError for Error {
    fn kind(&self) -> Kind {
        match self {
            Error::InvalidReference { source, .. } | Error::BadDigestHeader { source, .. } => {
                source.kind()
            }
            Error::HostnameRequired { .. }
            | Error::ObjectRequired { .. }
            | Error::InvalidUrl { .. }
            | Error::InvalidRequest { .. }
            | Error::ResponseTooLarge { .. }
            | Error::TokenRealm { .. }
            | Error::InvalidTokenRequest { .. }
            | Error::ManifestTooLarge { .. }
            | Error::HostsFile { .. }
            | Error::MirrorEndpoint { .. }
            | Error::DockerConfig { .. }
            | Error::DockerConfigAuth { .. }
            | Error::Pem { .. }
            | Error::NoCertificate { .. }
            | Error::NoPrivateKey { .. }
            | Error::CaCertificate { .. }
            | Error::ClientCertificate { .. } => Kind::InvalidArgument,
            Error::NotFound { .. } | Error::BlobNotFound { .. } => Kind::NotFound,
            Error::NoPushHost { .. }
            | Error::DigestMismatch { .. }
            | Error::LongerThanDescriptor { .. }
            | Error::FetchedDigest { .. }
            | Error::StoredAs { .. } => Kind::FailedPrecondition,
            Error::Status { status, .. } => status_kind(*status),
            // The token server, like the registry, may answer later.
            Error::TokenStatus { status, .. } => match status_kind(*status) {
                Kind::Unavailable => Kind::Unavailable,
                _ => Kind::Unknown,
            },
            Error::Request { .. } | Error::Body { .. } | Error::TokenRequest { .. } => {
                Kind::Unavailable
            }
            Error::ResponseTimeout { .. }
            | Error::ReadTimeout { .. }
            | Error::TokenTimeout { .. } => Kind::DeadlineExceeded,
            Error::SchemaOne { .. } => Kind::NotImplemented,
            Error::HostsDir { source, .. }
            | Error::ReadHostsFile { source, .. }
            | Error::ReadDockerConfig { source, .. }
            | Error::ReadCertificate { source, .. } => io_kind(source),
            Error::TooManyRedirects { .. }
            | Error::NoLocation { .. }
            | Error::TokenResponse { .. }
            | Error::NoToken { .. }
            | Error::TlsSetup { .. } => Kind::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_as_containerd_and_keep_their_messages() {
        let status = |status| Error::Status {
            what: "127.0.0.1:5000/a:1".into(),
            status,
            detail: String::new(),
        };
        for (code, kind) in [
            (StatusCode::NOT_FOUND, Kind::NotFound),
            (StatusCode::UNAUTHORIZED, Kind::Unknown),
            (StatusCode::FORBIDDEN, Kind::Unknown),
            (StatusCode::TOO_MANY_REQUESTS, Kind::Unavailable),
            (StatusCode::BAD_GATEWAY, Kind::Unavailable),
            (StatusCode::RANGE_NOT_SATISFIABLE, Kind::Unknown),
        ] {
            assert_eq!(status(code).kind(), kind, "{code}");
        }
        let err: crated_core::Error = Error::Status {
            what: "127.0.0.1:5000/a:1".into(),
            status: StatusCode::NOT_FOUND,
            detail: "MANIFEST_UNKNOWN: manifest unknown".into(),
        }
        .into();
        assert_eq!(err.kind(), Kind::NotFound);
        assert_eq!(
            err.message(),
            "127.0.0.1:5000/a:1: not found: MANIFEST_UNKNOWN: manifest unknown"
        );
        let source = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<Error>());
        assert!(matches!(
            source,
            Some(Error::Status {
                status: StatusCode::NOT_FOUND,
                ..
            })
        ));
    }

    #[test]
    fn unreadable_files_take_their_io_kind() {
        let err = Error::ReadCertificate {
            path: "/etc/crated/certs.d/r/ca.pem".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        assert_eq!(err.kind(), Kind::FailedPrecondition);
        assert!(err.to_string().contains("ca.pem"), "{err}");
    }
}
