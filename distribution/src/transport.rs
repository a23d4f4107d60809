//! HTTP to registries: bounded timeouts, authentication on challenge,
//! redirects, and retries with backoff on 429 and 5xx answers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::auth::{self, AuthCache, Challenge, CredentialsFn};
use crate::error::{Error, Result};
use crate::hosts::RegistryHost;
use crate::tls::{client_config, TlsOptions};

type HttpClient = hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, ReqBody>;

/// A request body.
pub(crate) type ReqBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// Makes a fresh body for each attempt of a request.
pub(crate) type BodyFactory = Arc<dyn Fn() -> ReqBody + Send + Sync>;

/// Timeouts and retries of a [`Transport`].
#[derive(Debug, Clone)]
pub struct TransportOptions {
    /// Connecting to a host.
    pub connect_timeout: Duration,
    /// From sending a request to its response headers.
    pub response_timeout: Duration,
    /// Between two chunks of a response body.
    pub read_timeout: Duration,
    /// Attempts after the first on 429, 5xx and connection failures.
    pub retries: u32,
    /// First backoff; doubled for each retry.
    pub backoff: Duration,
}

impl Default for TransportOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(15),
            response_timeout: Duration::from_secs(60),
            read_timeout: Duration::from_secs(60),
            retries: 4,
            backoff: Duration::from_millis(200),
        }
    }
}

/// Shared HTTP clients (one per TLS configuration) with the auth state of
/// every host they talked to.
pub struct Transport {
    clients: Mutex<HashMap<TlsOptions, HttpClient>>,
    auth: AuthCache,
    credentials: Option<CredentialsFn>,
    pub(crate) options: TransportOptions,
}

/// One request, possibly sent several times.
pub(crate) struct Request {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(header::HeaderName, String)>,
    pub body: Option<BodyFactory>,
    /// The token scope (`repository:<name>:pull`).
    pub scope: String,
    /// What the request is for, in errors (`"127.0.0.1:5000/test/busybox:latest"`).
    pub what: String,
    /// TLS for an https URL: the host's.
    pub tls: TlsOptions,
}

impl Request {
    pub(crate) fn new(
        method: Method,
        host: &RegistryHost,
        rest: &str,
        scope: &str,
        what: &str,
    ) -> Self {
        let headers = host
            .headers
            .iter()
            .filter_map(|(k, v)| {
                header::HeaderName::from_bytes(k.as_bytes())
                    .ok()
                    .map(|k| (k, v.clone()))
            })
            .collect();
        Self {
            method,
            url: host.url(rest),
            headers,
            body: None,
            scope: scope.to_owned(),
            what: what.to_owned(),
            tls: host.tls(),
        }
    }

    pub(crate) fn header(mut self, name: header::HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

fn is_retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
}

/// `host[:port]` of an http(s) URL.
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

/// `scheme://host[:port]` of a URL, lower-cased. A registry's credentials
/// and tokens go only to the origin they were given for: a redirect to
/// another host, or from https down to http on the same one, gets none.
fn origin(url: &str) -> String {
    let scheme = url.split_once("://").map_or("http", |(s, _)| s);
    format!("{}://{}", scheme, authority(url)).to_ascii_lowercase()
}

/// Resolves a `Location` header against the URL it answered.
pub(crate) fn join_location(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_owned();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("http", base));
    if let Some(elsewhere) = location.strip_prefix("//") {
        return format!("{scheme}://{elsewhere}");
    }
    let host = rest.split('/').next().unwrap_or(rest);
    if location.starts_with('/') {
        format!("{scheme}://{host}{location}")
    } else {
        let dir = base.rsplit_once('/').map_or(base, |(d, _)| d);
        format!("{dir}/{location}")
    }
}

/// The query parameters of a docker token GET: the service, each scope.
fn token_params(service: Option<&str>, scopes: &[&str]) -> Vec<(&'static str, String)> {
    let mut params = Vec::new();
    if let Some(service) = service {
        params.push(("service", service.to_owned()));
    }
    for s in scopes {
        params.push(("scope", (*s).to_owned()));
    }
    params
}

/// `realm` with `query` added to its own query.
fn token_uri(realm: &str, query: &[(&str, String)]) -> Result<http::Uri> {
    let mut url = realm.to_owned();
    let mut sep = if url.contains('?') { '&' } else { '?' };
    for (key, value) in query {
        url.push_str(&format!("{sep}{key}={}", query_escape(value)));
        sep = '&';
    }
    url.parse().map_err(|source| Error::TokenRealm {
        realm: realm.to_owned(),
        source,
    })
}

/// What crated calls itself to registries and token servers, as
/// containerd sends `containerd/<version>`: registries and the CDNs in
/// front of them count, limit and sometimes refuse clients by it. A
/// `User-Agent` in a host's `hosts.toml` headers replaces it.
pub const USER_AGENT: &str = concat!("crated/", env!("CARGO_PKG_VERSION"));

/// The docker token GET: anonymous, or with `credentials` as basic auth.
fn get_request(
    realm: &str,
    service: Option<&str>,
    scopes: &[&str],
    credentials: Option<&auth::Credentials>,
    agent: &str,
) -> Result<http::Request<ReqBody>> {
    let mut builder = http::Request::get(token_uri(realm, &token_params(service, scopes))?)
        .header(header::USER_AGENT, agent);
    if let Some(creds) = credentials {
        builder = builder.header(header::AUTHORIZATION, auth::basic_header(creds));
    }
    builder
        .body(Empty::new().map_err(|e| match e {}).boxed_unsync())
        .map_err(|source| Error::InvalidTokenRequest {
            realm: realm.to_owned(),
            source,
        })
}

/// The OAuth2 token POST (RFC 6749): the `password` grant, or the
/// `refresh_token` grant for an identity token (no user name).
fn oauth_request(
    realm: &str,
    service: Option<&str>,
    scopes: &[&str],
    creds: &auth::Credentials,
    agent: &str,
) -> Result<http::Request<ReqBody>> {
    let mut form: Vec<(&str, String)> = Vec::new();
    if !scopes.is_empty() {
        form.push(("scope", scopes.join(" ")));
    }
    form.push(("service", service.unwrap_or_default().to_owned()));
    form.push(("client_id", "crated".to_owned()));
    if creds.username.is_empty() {
        form.push(("grant_type", "refresh_token".to_owned()));
        form.push(("refresh_token", creds.secret.clone()));
    } else {
        form.push(("grant_type", "password".to_owned()));
        form.push(("username", creds.username.clone()));
        form.push(("password", creds.secret.clone()));
    }
    let body: Vec<String> = form
        .iter()
        .map(|(k, v)| format!("{k}={}", query_escape(v)))
        .collect();
    http::Request::post(token_uri(realm, &[])?)
        .header(header::USER_AGENT, agent)
        .header(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .body(
            Full::new(Bytes::from(body.join("&")))
                .map_err(|e| match e {})
                .boxed_unsync(),
        )
        .map_err(|source| Error::InvalidTokenRequest {
            realm: realm.to_owned(),
            source,
        })
}

/// Percent-encodes a query value.
pub(crate) fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl Transport {
    /// A transport; `credentials` answers for hosts that ask.
    pub fn new(credentials: Option<CredentialsFn>, options: TransportOptions) -> Self {
        Self {
            clients: Mutex::default(),
            auth: AuthCache::default(),
            credentials,
            options,
        }
    }

    /// The client for `tls`, made on first use (loading CA and client
    /// certificate files then).
    fn client(&self, tls: &TlsOptions) -> Result<HttpClient> {
        if let Some(client) = self.clients.lock().ok().and_then(|c| c.get(tls).cloned()) {
            return Ok(client);
        }
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(self.options.connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(client_config(tls)?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        if let Ok(mut clients) = self.clients.lock() {
            clients.insert(tls.clone(), client.clone());
        }
        Ok(client)
    }

    fn credentials(&self, host: &str) -> Option<auth::Credentials> {
        self.credentials.as_ref().and_then(|f| f(host))
    }

    /// The Authorization header for `host` and `scope` from what is
    /// already known, fetching a bearer token if the host asked for one.
    async fn authorization(
        &self,
        host: &str,
        scope: &str,
        (tls, agent): (&TlsOptions, &str),
    ) -> Result<Option<String>> {
        match self.auth.challenge(host) {
            None => Ok(None),
            // A registry token is no password.
            Some(Challenge::Basic) => Ok(self
                .credentials(host)
                .filter(|c| !c.registry_token)
                .map(|c| auth::basic_header(&c))),
            Some(Challenge::Bearer {
                realm,
                service,
                scope: asked,
            }) => {
                if let Some(c) = self.credentials(host).filter(|c| c.registry_token) {
                    return Ok(Some(format!("Bearer {}", c.secret)));
                }
                if let Some(token) = self.auth.token(host, scope) {
                    return Ok(Some(format!("Bearer {token}")));
                }
                let token = self
                    .fetch_token(
                        host,
                        &realm,
                        service.as_deref(),
                        scope,
                        asked.as_deref(),
                        (tls, agent),
                    )
                    .await?;
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// A bearer token for `scope` at `host` from the challenge's `realm`,
    /// cached for its lifetime. With a secret (a password, or an identity
    /// token alone), first as containerd asks: an OAuth2 POST to the realm
    /// (`password` grant, or `refresh_token` for an identity token, which
    /// some registries take no other way); a registry that does not do
    /// OAuth (404, 401, 400, or 405 with a user name) is asked again as
    /// for anonymous pulls, with the credentials as basic auth.
    async fn fetch_token(
        &self,
        host: &str,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        asked: Option<&str>,
        (tls, agent): (&TlsOptions, &str),
    ) -> Result<String> {
        // A request may need several scopes (a cross-repository mount
        // pulls from one and pushes to another), joined by spaces.
        let mut scopes: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
        if let Some(asked) = asked {
            if !scopes.contains(&asked) {
                scopes.push(asked);
            }
        }
        let credentials = self.credentials(host);
        let oauth = credentials.as_ref().filter(|c| !c.secret.is_empty());
        let fetched = match oauth {
            Some(creds) => {
                let post = oauth_request(realm, service, &scopes, creds, agent)?;
                match self.request_token(realm, scope, post, tls).await {
                    Err(Error::TokenStatus { status, .. })
                        if matches!(status.as_u16(), 400 | 401 | 404)
                            || (status.as_u16() == 405 && !creds.username.is_empty()) =>
                    {
                        let get = get_request(realm, service, &scopes, oauth, agent)?;
                        self.request_token(realm, scope, get, tls).await
                    }
                    other => other,
                }
            }
            // No secret: anonymous, as containerd (a user name alone is no
            // credential).
            None => {
                let get = get_request(realm, service, &scopes, None, agent)?;
                self.request_token(realm, scope, get, tls).await
            }
        };
        let (token, ttl) = fetched?;
        self.auth.set_token(host, scope, token.clone(), ttl);
        Ok(token)
    }

    /// Sends a token `request` to `realm`; the token and its lifetime.
    async fn request_token(
        &self,
        realm: &str,
        scope: &str,
        request: http::Request<ReqBody>,
        tls: &TlsOptions,
    ) -> Result<(String, Duration)> {
        // The host's TLS settings: a private registry's token server is
        // usually behind the same CA.
        let http = self.client(tls)?;
        let response = tokio::time::timeout(self.options.response_timeout, http.request(request))
            .await
            .map_err(|_| Error::TokenTimeout {
                realm: realm.to_owned(),
                timeout: self.options.response_timeout,
            })?
            .map_err(|source| Error::TokenRequest {
                realm: realm.to_owned(),
                source: Box::new(source),
            })?;
        let status = response.status();
        let body = read_limited(
            response.into_body(),
            1 << 20,
            self.options.read_timeout,
            &format!("the token response from {realm}"),
        )
        .await?;
        if !status.is_success() {
            return Err(Error::TokenStatus {
                realm: realm.to_owned(),
                scope: scope.to_owned(),
                status,
                body: String::from_utf8_lossy(&body).trim().to_owned(),
            });
        }
        let parsed: auth::TokenResponse =
            serde_json::from_slice(&body).map_err(|source| Error::TokenResponse {
                realm: realm.to_owned(),
                source,
            })?;
        parsed.into_token().ok_or_else(|| Error::NoToken {
            realm: realm.to_owned(),
        })
    }

    /// Sends `request`: authenticates on a 401 challenge, follows
    /// redirects of GET and HEAD, retries 429/5xx and connection failures
    /// with backoff. Any other status is returned for the caller to judge.
    pub(crate) async fn send(&self, request: &Request) -> Result<http::Response<Incoming>> {
        let mut url = request.url.clone();
        let home = origin(&request.url);
        let mut attempt = 0;
        let mut redirects = 0;
        let mut reauthenticated = false;
        loop {
            let host = authority(&url).to_owned();
            let at_origin = origin(&url) == home;
            let uri: http::Uri = url.parse().map_err(|source| Error::InvalidUrl {
                url: url.clone(),
                source,
            })?;
            let mut builder = http::Request::builder()
                .method(request.method.clone())
                .uri(uri);
            for (name, value) in &request.headers {
                builder = builder.header(name, value);
            }
            let agent = match request
                .headers
                .iter()
                .find(|(n, _)| n == header::USER_AGENT)
            {
                Some((_, own)) => own.as_str(),
                None => {
                    builder = builder.header(header::USER_AGENT, USER_AGENT);
                    USER_AGENT
                }
            };
            // Credentials go only to the host they were given for, not to
            // the storage a blob redirects to.
            if at_origin {
                if let Some(value) = self
                    .authorization(&host, &request.scope, (&request.tls, agent))
                    .await?
                {
                    builder = builder.header(header::AUTHORIZATION, value);
                }
            }
            let body = match &request.body {
                Some(factory) => factory(),
                None => Empty::new().map_err(|e| match e {}).boxed_unsync(),
            };
            let built = builder.body(body).map_err(|source| Error::InvalidRequest {
                url: url.clone(),
                source,
            })?;
            // A redirect elsewhere (blob storage) is verified against the
            // system's roots only.
            let tls = if at_origin {
                request.tls.clone()
            } else {
                TlsOptions::default()
            };
            let http = self.client(&tls)?;
            let sent =
                tokio::time::timeout(self.options.response_timeout, http.request(built)).await;
            let response = match sent {
                Err(_) => {
                    if attempt < self.options.retries {
                        attempt += 1;
                        self.backoff(attempt, None).await;
                        continue;
                    }
                    return Err(Error::ResponseTimeout {
                        method: request.method.clone(),
                        url,
                        what: request.what.clone(),
                        timeout: self.options.response_timeout,
                    });
                }
                Ok(Err(e)) => {
                    if attempt < self.options.retries {
                        attempt += 1;
                        tracing::debug!(url, error = %e, attempt, "registry request failed; retrying");
                        self.backoff(attempt, None).await;
                        continue;
                    }
                    return Err(Error::Request {
                        method: request.method.clone(),
                        url,
                        what: request.what.clone(),
                        source: Box::new(e),
                    });
                }
                Ok(Ok(response)) => response,
            };
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !reauthenticated && at_origin {
                let challenge = response
                    .headers()
                    .get_all(header::WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .find_map(auth::parse_challenge);
                if let Some(challenge) = challenge {
                    let usable = match &challenge {
                        Challenge::Basic => self.credentials(&host).is_some(),
                        Challenge::Bearer { .. } => true,
                    };
                    if usable {
                        self.auth.set_challenge(&host, challenge);
                        reauthenticated = true;
                        continue;
                    }
                }
                return Ok(response);
            }
            if is_retryable(status) && attempt < self.options.retries {
                attempt += 1;
                let retry_after = response
                    .headers()
                    .get(header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                tracing::debug!(url, %status, attempt, "registry busy; retrying");
                self.backoff(attempt, retry_after).await;
                continue;
            }
            if status.is_redirection()
                && (request.method == Method::GET || request.method == Method::HEAD)
            {
                if let Some(location) = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                {
                    redirects += 1;
                    if redirects > 10 {
                        return Err(Error::TooManyRedirects {
                            url,
                            what: request.what.clone(),
                        });
                    }
                    url = join_location(&url, location);
                    continue;
                }
            }
            return Ok(response);
        }
    }

    async fn backoff(&self, attempt: u32, retry_after: Option<Duration>) {
        let exp = self.options.backoff * 2u32.saturating_pow(attempt.saturating_sub(1));
        let wait = retry_after.unwrap_or(exp).min(Duration::from_secs(10));
        tokio::time::sleep(wait).await;
    }
}

/// Reads a whole body (`what`, for errors), refusing more than `limit`
/// bytes.
pub(crate) async fn read_limited(
    body: Incoming,
    limit: usize,
    read_timeout: Duration,
    what: &str,
) -> Result<Vec<u8>> {
    let mut reader = BodyReader::new(body, read_timeout, what.to_owned());
    let mut out = Vec::new();
    while let Some(chunk) = reader.chunk().await? {
        if out.len() + chunk.len() > limit {
            return Err(Error::ResponseTooLarge {
                what: what.to_owned(),
                limit,
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A response body read chunk by chunk with a timeout per chunk.
pub struct BodyReader {
    body: Incoming,
    read_timeout: Duration,
    what: String,
}

impl BodyReader {
    pub(crate) fn new(body: Incoming, read_timeout: Duration, what: String) -> Self {
        Self {
            body,
            read_timeout,
            what,
        }
    }

    /// The next chunk, `None` at the end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        loop {
            let frame = tokio::time::timeout(self.read_timeout, self.body.frame())
                .await
                .map_err(|_| Error::ReadTimeout {
                    what: self.what.clone(),
                    timeout: self.read_timeout,
                })?;
            match frame {
                None => return Ok(None),
                Some(Err(source)) => {
                    return Err(Error::Body {
                        what: self.what.clone(),
                        source,
                    })
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            return Ok(Some(data));
                        }
                    }
                }
            }
        }
    }
}

/// A body of `data`.
pub(crate) fn full(data: Bytes) -> BodyFactory {
    Arc::new(move || {
        Full::new(data.clone())
            .map_err(|e| match e {})
            .boxed_unsync()
    })
}

/// The error for an unexpected answer, with the registry's own error
/// codes and messages (`MANIFEST_UNKNOWN: manifest unknown`).
pub(crate) async fn status_error(
    response: http::Response<Incoming>,
    what: &str,
    read_timeout: Duration,
) -> Error {
    let status = response.status();
    // The status is the error; a body that cannot be read only loses the
    // registry's explanation of it.
    let body = read_limited(
        response.into_body(),
        64 << 10,
        read_timeout,
        &format!("the answer to {what}"),
    )
    .await
    .unwrap_or_default();
    Error::Status {
        what: what.to_owned(),
        status,
        detail: registry_errors(&body),
    }
}

fn registry_errors(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Errors>(body) {
        Ok(parsed) => parsed
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect::<Vec<_>>()
            .join("; "),
        Err(_) => String::from_utf8_lossy(body)
            .trim()
            .chars()
            .take(200)
            .collect(),
    }
}

/// A header's value as a string, if present and valid.
pub(crate) fn header_str<'a>(
    headers: &'a HeaderMap<HeaderValue>,
    name: &header::HeaderName,
) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_stay_with_their_origin() {
        let registry = origin("https://Registry.example/v2/a/manifests/1");
        assert_eq!(registry, "https://registry.example");
        for (url, same) in [
            ("https://registry.example/v2/a/blobs/sha256:1", true),
            ("https://REGISTRY.example/v2/x", true),
            // Downgraded to plain http on the same host: no credentials.
            ("http://registry.example/v2/a/blobs/sha256:1", false),
            ("https://registry.example:8443/v2/x", false),
            ("https://storage.example/blob?sig=1", false),
            ("https://registry.example.evil/v2/x", false),
        ] {
            assert_eq!(origin(url) == registry, same, "{url}");
        }
        assert_eq!(
            join_location("https://registry.example/v2/a", "//cdn.example/b"),
            "https://cdn.example/b"
        );
    }

    #[test]
    fn locations_join() {
        let base = "http://127.0.0.1:5000/v2/a/blobs/uploads/";
        assert_eq!(
            join_location(base, "/v2/a/blobs/uploads/u?x=1"),
            "http://127.0.0.1:5000/v2/a/blobs/uploads/u?x=1"
        );
        assert_eq!(join_location(base, "http://other/x"), "http://other/x");
        assert_eq!(
            query_escape("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
