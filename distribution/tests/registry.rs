//! The registry client against Debian's docker-registry on loopback, and
//! against a scripted HTTP server for what docker-registry cannot be made
//! to do (tokens, rate limits, flaky 5xx).

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crated_core::descriptor::Descriptor;
use crated_core::error::{Kind, KindError as _};
use crated_distribution::{
    Credentials, Error, HostOptions, Pushed, Resolver, TransportOptions, Verifier,
};
use crated_testimages::{busybox, push, Registry};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

fn resolver() -> Resolver {
    Resolver::new(HostOptions::default(), None, TransportOptions::default())
}

fn desc(blob: &crated_testimages::Blob) -> Descriptor {
    Descriptor {
        media_type: blob.media_type.clone(),
        digest: blob.digest.clone(),
        size: blob.data.len() as u64,
        annotations: Default::default(),
    }
}

#[tokio::test]
async fn push_resolve_fetch_and_resume() {
    let registry = tokio::task::spawn_blocking(|| Registry::start(None))
        .await
        .unwrap()
        .unwrap();
    let image = busybox().unwrap();
    let reference = format!("{}/test/busybox:latest", registry.host);
    push(&reference, &image).await.unwrap();

    let resolver = resolver();
    let (name, root) = resolver.resolve(&reference).await.unwrap();
    assert_eq!(name, reference);
    // The registry's access log names us, as containerd's names it.
    let log = registry.log();
    let agent = format!("\"{}\"", crated_distribution::USER_AGENT);
    assert!(
        log.lines()
            .any(|l| l.contains("HEAD /v2/test/busybox/manifests/latest") && l.ends_with(&agent)),
        "{log}"
    );
    assert_eq!(root.digest, image.root.digest);
    assert_eq!(root.size, image.root.data.len() as u64);
    assert_eq!(
        root.media_type,
        "application/vnd.oci.image.manifest.v1+json"
    );

    // By digest too, with and without the tag.
    let by_digest = format!("{}/test/busybox@{}", registry.host, image.root.digest);
    assert_eq!(
        resolver.resolve(&by_digest).await.unwrap().1.digest,
        image.root.digest
    );

    let fetcher = resolver.fetcher(&reference).unwrap();
    assert_eq!(
        fetcher.fetch_all(&root).await.unwrap(),
        image.root.data.to_vec()
    );
    for blob in &image.blobs {
        // A resumed download: the rest from an offset, then verified whole.
        let offset = blob.data.len() as u64 / 3;
        let mut body = fetcher.fetch(&desc(blob), offset).await.unwrap();
        let mut got = blob.data[..offset as usize].to_vec();
        while let Some(chunk) = body.chunk().await.unwrap() {
            got.extend_from_slice(&chunk);
        }
        let mut v = Verifier::default();
        v.update(&got);
        assert_eq!(v.digest(), blob.digest);
    }
}

#[tokio::test]
async fn missing_things_are_not_found_naming_the_reference() {
    let registry = tokio::task::spawn_blocking(|| Registry::start(None))
        .await
        .unwrap()
        .unwrap();
    let reference = format!("{}/test/nothing:here", registry.host);
    let err = resolver().resolve(&reference).await.unwrap_err();
    assert_eq!(err.kind(), Kind::NotFound, "{err}");
    assert!(err.to_string().contains(&reference), "{err}");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");

    let err = resolver().resolve("127.0.0.1:1/x/y:z").await.unwrap_err();
    assert_eq!(err.kind(), Kind::Unavailable, "{err}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    assert!(matches!(err, Error::Request { .. }), "{err:?}");

    let err = resolver().resolve("Not A Reference").await.unwrap_err();
    assert_eq!(err.kind(), Kind::InvalidArgument, "{err}");
    assert!(matches!(err, Error::InvalidReference { .. }), "{err:?}");
}

#[tokio::test]
async fn pushing_again_skips_and_other_repositories_mount() {
    let registry = tokio::task::spawn_blocking(|| Registry::start(None))
        .await
        .unwrap()
        .unwrap();
    let image = busybox().unwrap();
    push(&format!("{}/a/busybox:1", registry.host), &image)
        .await
        .unwrap();

    let resolver = resolver();
    let layer = &image.blobs[0];
    let source: Arc<dyn crated_core::content::ReaderAt> = Arc::new(Bytes(layer.data.clone()));
    let same = resolver
        .pusher(&format!("{}/a/busybox:1", registry.host))
        .unwrap();
    assert_eq!(
        same.push_blob(&desc(layer), source.clone(), None)
            .await
            .unwrap(),
        Pushed::Exists
    );
    let other = resolver
        .pusher(&format!("{}/b/copy:1", registry.host))
        .unwrap();
    assert!(!other.exists(&desc(layer)).await.unwrap());
    assert_eq!(
        other
            .push_blob(&desc(layer), source, Some("a/busybox"))
            .await
            .unwrap(),
        Pushed::Mounted
    );
    assert!(other.exists(&desc(layer)).await.unwrap());
}

struct Bytes(bytes::Bytes);

#[async_trait::async_trait]
impl crated_core::content::ReaderAt for Bytes {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    async fn read_at(&self, offset: u64, buf: &mut [u8]) -> crated_core::Result<usize> {
        let start = (offset as usize).min(self.0.len());
        let n = buf.len().min(self.0.len() - start);
        buf[..n].copy_from_slice(&self.0[start..start + n]);
        Ok(n)
    }
}

#[tokio::test]
async fn basic_auth_with_credentials_and_a_clear_error_without() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(&htpasswd, format!("tester:{hash}\n")).unwrap();
    let path = htpasswd.clone();
    let registry = tokio::task::spawn_blocking(move || Registry::start(Some(&path)))
        .await
        .unwrap()
        .unwrap();
    let reference = format!("{}/private/busybox:latest", registry.host);

    let err = resolver().resolve(&reference).await.unwrap_err();
    assert!(
        err.to_string().contains("unauthorized") && err.to_string().contains(&reference),
        "{err}"
    );

    let creds: crated_distribution::CredentialsFn =
        Arc::new(|_: &str| Some(Credentials::parse_user("tester:s3cret")));
    let authed = Resolver::new(
        HostOptions::default(),
        Some(creds),
        TransportOptions::default(),
    );
    let image = busybox().unwrap();
    // push() has no credentials: push through the authed resolver by hand.
    let pusher = authed.pusher(&reference).unwrap();
    for blob in &image.blobs {
        pusher
            .push_blob(&desc(blob), Arc::new(Bytes(blob.data.clone())), None)
            .await
            .unwrap();
    }
    pusher
        .push_manifest(&desc(&image.root), image.root.data.clone(), true)
        .await
        .unwrap();
    assert_eq!(
        authed.resolve(&reference).await.unwrap().1.digest,
        image.root.digest
    );

    let wrong: crated_distribution::CredentialsFn =
        Arc::new(|_: &str| Some(Credentials::parse_user("tester:nope")));
    let wrong = Resolver::new(
        HostOptions::default(),
        Some(wrong),
        TransportOptions::default(),
    );
    let err = wrong.resolve(&reference).await.unwrap_err();
    assert!(err.to_string().contains("unauthorized"), "{err}");
}

/// A one-request-per-connection HTTP server answering from `script`
/// (request line and headers in, raw response out).
async fn scripted(script: impl Fn(&str, &str, String) -> String + Send + Sync + 'static) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let script = Arc::new(script);
    let base = addr.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let script = script.clone();
            let base = base.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push_str(&line);
                    }
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    let mut body = vec![0; len];
                    reader.read_exact(&mut body).await.unwrap();
                    let request_line = head.lines().next().unwrap_or_default().to_owned();
                    // The body follows the head, as on the wire.
                    head.push_str("\r\n");
                    head.push_str(&String::from_utf8_lossy(&body));
                    let response = script(&base, &request_line, head);
                    if reader
                        .get_mut()
                        .write_all(response.as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn respond(status: &str, headers: &[(&str, String)], body: &str) -> String {
    let mut out = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out
}

const MANIFEST: &str = r#"{"schemaVersion":2}"#;

fn manifest_headers() -> Vec<(&'static str, String)> {
    vec![
        (
            "content-type",
            "application/vnd.oci.image.manifest.v1+json".to_owned(),
        ),
        (
            "docker-content-digest",
            crated_core::digest::Digest::sha256(MANIFEST.as_bytes()).to_string(),
        ),
    ]
}

/// Whether a request's head carries bearer token `token`.
fn has_bearer(head: &str, token: &str) -> bool {
    head.contains(&format!("Authorization: Bearer {token}"))
        || head.contains(&format!("authorization: Bearer {token}"))
}

/// A 401 asking for a bearer token from the scripted server's `/token`.
fn bearer_challenge(base: &str, body: &str) -> String {
    respond(
        "401 Unauthorized",
        &[(
            "www-authenticate",
            format!(r#"Bearer realm="http://{base}/token",service="test-registry""#),
        )],
        body,
    )
}

#[tokio::test]
async fn bearer_tokens_are_fetched_for_the_repository_scope() {
    let token_requests = Arc::new(AtomicUsize::new(0));
    let seen = token_requests.clone();
    let addr = scripted(move |base, line, head| {
        if line.starts_with("GET /token?") {
            seen.fetch_add(1, Ordering::SeqCst);
            assert!(line.contains("service=test-registry"), "{line}");
            assert!(
                line.contains("scope=repository%3Aorg%2Fimg%3Apull"),
                "{line}"
            );
            return respond("200 OK", &[], r#"{"token":"t0ken","expires_in":300}"#);
        }
        if has_bearer(&head, "t0ken") {
            return respond("200 OK", &manifest_headers(), MANIFEST);
        }
        bearer_challenge(
            base,
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        )
    })
    .await;
    let resolver = resolver();
    let reference = format!("{addr}/org/img:1");
    let (_, d) = resolver.resolve(&reference).await.unwrap();
    assert_eq!(d.size, MANIFEST.len() as u64);
    // The token is cached for the scope: a second resolve asks no more.
    resolver.resolve(&reference).await.unwrap();
    assert_eq!(token_requests.load(Ordering::SeqCst), 1);
}

/// The user agent of a request's head, as the server saw it.
fn user_agent(head: &str) -> String {
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("user-agent")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default()
}

/// Registry and token requests say who sends them, as containerd's do
/// (`containerd/<version>`): `crated/<version>`, or the `User-Agent` a
/// host's headers set, for the token server as well.
#[tokio::test]
async fn requests_carry_a_user_agent_that_headers_can_replace() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let into = seen.clone();
    let addr = scripted(move |base, line, head| {
        into.lock().unwrap().push(user_agent(&head));
        if line.starts_with("GET /token?") {
            return respond("200 OK", &[], r#"{"token":"t0ken","expires_in":300}"#);
        }
        if has_bearer(&head, "t0ken") {
            return respond("200 OK", &manifest_headers(), MANIFEST);
        }
        bearer_challenge(base, "")
    })
    .await;
    resolver()
        .resolve(&format!("{addr}/org/img:1"))
        .await
        .unwrap();
    let ours = format!("crated/{}", env!("CARGO_PKG_VERSION"));
    // The challenge, the token, the retried request.
    assert_eq!(
        *seen.lock().unwrap(),
        [ours.clone(), ours.clone(), ours.clone()]
    );
    assert_eq!(crated_distribution::USER_AGENT, ours);

    seen.lock().unwrap().clear();
    let options = HostOptions {
        headers: vec![("User-Agent".into(), "node-agent/2".into())],
        ..Default::default()
    };
    Resolver::new(options, None, TransportOptions::default())
        .resolve(&format!("{addr}/org/img:1"))
        .await
        .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        ["node-agent/2", "node-agent/2", "node-agent/2"]
    );
}

/// A registry whose token server takes the OAuth2 POST only (as some
/// do for identity tokens) or the GET only (as others do).
async fn token_server(oauth: bool) -> String {
    scripted(move |base, line, head| {
        if line.starts_with("POST /token") {
            if !oauth {
                return respond("404 Not Found", &[], "");
            }
            let form = head.rsplit("\r\n").next().unwrap_or_default().to_owned();
            let fields: Vec<&str> = form.split('&').collect();
            let ok = fields.contains(&"grant_type=refresh_token")
                && fields.contains(&"refresh_token=id-t0ken")
                && fields.contains(&"service=test-registry")
                && fields.contains(&"scope=repository%3Aorg%2Fimg%3Apull");
            return if ok {
                respond(
                    "200 OK",
                    &[],
                    r#"{"access_token":"0auth","expires_in":300}"#,
                )
            } else {
                respond("400 Bad Request", &[], &format!("bad form {form}"))
            };
        }
        if line.starts_with("GET /token?") {
            let basic = auth_basic("user", "pass");
            return if !oauth
                && head
                    .to_ascii_lowercase()
                    .contains(&basic.to_ascii_lowercase())
            {
                respond("200 OK", &[], r#"{"token":"g3t"}"#)
            } else {
                respond("401 Unauthorized", &[], "")
            };
        }
        if has_bearer(&head, "0auth") || has_bearer(&head, "g3t") {
            return respond("200 OK", &manifest_headers(), MANIFEST);
        }
        bearer_challenge(base, "")
    })
    .await
}

fn auth_basic(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    format!(
        "authorization: Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

fn resolver_with(username: &str, secret: &str) -> Resolver {
    resolver_for(Credentials {
        username: username.to_owned(),
        secret: secret.to_owned(),
        registry_token: false,
    })
}

/// A resolver presenting `creds` to every host.
fn resolver_for(creds: Credentials) -> Resolver {
    Resolver::new(
        HostOptions::default(),
        Some(Arc::new(move |_: &str| Some(creds.clone()))),
        TransportOptions::default(),
    )
}

/// A registry token (Docker's `registrytoken`, the CRI's `registry_token`)
/// is the bearer token itself: presented to the registry that asks for
/// one, never exchanged at the token server; a wrong one fails with the
/// registry's 401.
#[tokio::test]
async fn a_registry_token_is_presented_as_the_bearer_token() {
    let token_requests = Arc::new(AtomicUsize::new(0));
    let seen = token_requests.clone();
    let addr = scripted(move |base, line, head| {
        if line.contains("/token") {
            seen.fetch_add(1, Ordering::SeqCst);
            return respond("500 Internal Server Error", &[], "no tokens here");
        }
        if has_bearer(&head, "reg-t0ken") {
            return respond("200 OK", &manifest_headers(), MANIFEST);
        }
        bearer_challenge(base, "")
    })
    .await;
    let with = |secret: &str| {
        resolver_for(Credentials {
            username: String::new(),
            secret: secret.to_owned(),
            registry_token: true,
        })
    };
    let (_, d) = with("reg-t0ken")
        .resolve(&format!("{addr}/org/img:1"))
        .await
        .unwrap();
    assert_eq!(d.size, MANIFEST.len() as u64);
    let err = with("wrong")
        .resolve(&format!("{addr}/org/img:1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Status { status, .. } if status == 401),
        "{err:?}"
    );
    assert!(err.to_string().contains("unauthorized"), "{err}");
    assert_eq!(token_requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn identity_tokens_are_exchanged_with_the_oauth_refresh_grant() {
    let addr = token_server(true).await;
    let (_, d) = resolver_with("", "id-t0ken")
        .resolve(&format!("{addr}/org/img:1"))
        .await
        .unwrap();
    assert_eq!(d.size, MANIFEST.len() as u64);
}

#[tokio::test]
async fn a_token_server_without_oauth_gets_the_basic_get() {
    let addr = token_server(false).await;
    resolver_with("user", "pass")
        .resolve(&format!("{addr}/org/img:1"))
        .await
        .unwrap();
    let err = resolver_with("user", "wrong")
        .resolve(&format!("{addr}/org/img:1"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
}

#[tokio::test]
async fn busy_registries_are_retried_then_reported() {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let addr = scripted(move |_, line, _| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        if line.contains("/always503/") {
            return respond("503 Service Unavailable", &[], "down for maintenance");
        }
        match n {
            0 => respond(
                "429 Too Many Requests",
                &[("retry-after", "0".to_owned())],
                "",
            ),
            1 => respond("502 Bad Gateway", &[], ""),
            _ => respond("200 OK", &manifest_headers(), MANIFEST),
        }
    })
    .await;
    let options = TransportOptions {
        backoff: Duration::from_millis(10),
        ..Default::default()
    };
    let resolver = Resolver::new(HostOptions::default(), None, options);
    resolver
        .resolve(&format!("{addr}/flaky/img:1"))
        .await
        .unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 3);

    let err = resolver
        .resolve(&format!("{addr}/always503/img:1"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::Unavailable, "{err}");
    assert!(
        matches!(err, Error::Status { status, .. } if status == 503),
        "{err:?}"
    );
    // A HEAD answer has no body to quote: the status and reference must do.
    assert!(
        err.to_string().contains("503") && err.to_string().contains("always503/img:1"),
        "{err}"
    );
}

#[tokio::test]
async fn tls_registries_are_trusted_through_their_ca_or_skip_verify() {
    let dir = tempfile::tempdir().unwrap();
    let certs = crated_testimages::TestCerts::new(dir.path()).unwrap();
    let (cert, key) = (certs.cert.clone(), certs.key.clone());
    let registry =
        tokio::task::spawn_blocking(move || Registry::start_with(None, Some((&cert, &key))))
            .await
            .unwrap()
            .unwrap();
    let reference = format!("{}/secure/busybox:1", registry.host);
    // hosts.toml as containerd documents it: the server over https, its CA.
    let hosts_dir = dir.path().join("certs.d");
    let host_dir = hosts_dir.join(registry.host.replace(':', "_") + "_");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::copy(&certs.ca, host_dir.join("ca.pem")).unwrap();
    std::fs::write(
        host_dir.join("hosts.toml"),
        format!("server = \"https://{}\"\nca = \"ca.pem\"\n", registry.host),
    )
    .unwrap();
    let with_ca = Resolver::new(
        HostOptions {
            hosts_dir: Some(hosts_dir.clone()),
            ..Default::default()
        },
        None,
        TransportOptions::default(),
    );
    let image = busybox().unwrap();
    crated_testimages::push_with(&with_ca, &reference, &image)
        .await
        .unwrap();
    assert_eq!(
        with_ca.resolve(&reference).await.unwrap().1.digest,
        image.root.digest
    );

    // The same server without its CA: refused, saying why.
    std::fs::write(
        host_dir.join("hosts.toml"),
        format!("server = \"https://{}\"\n", registry.host),
    )
    .unwrap();
    let options = TransportOptions {
        retries: 0,
        ..Default::default()
    };
    let untrusted = Resolver::new(
        HostOptions {
            hosts_dir: Some(hosts_dir.clone()),
            ..Default::default()
        },
        None,
        options.clone(),
    );
    let err = untrusted.resolve(&reference).await.unwrap_err().to_string();
    assert!(
        err.contains("certificate") && err.contains(&registry.host),
        "{err}"
    );

    // skip_verify accepts it.
    std::fs::write(
        host_dir.join("hosts.toml"),
        format!(
            "server = \"https://{}\"\nskip_verify = true\n",
            registry.host
        ),
    )
    .unwrap();
    let skipping = Resolver::new(
        HostOptions {
            hosts_dir: Some(hosts_dir),
            ..Default::default()
        },
        None,
        options,
    );
    assert_eq!(
        skipping.resolve(&reference).await.unwrap().1.digest,
        image.root.digest
    );
}

#[tokio::test]
async fn a_mirror_in_hosts_toml_serves_another_domain() {
    let registry = tokio::task::spawn_blocking(|| Registry::start(None))
        .await
        .unwrap()
        .unwrap();
    let image = busybox().unwrap();
    push(&format!("{}/library/busybox:1", registry.host), &image)
        .await
        .unwrap();
    // `mirror.invalid` does not resolve: only the mirror can answer, and
    // an unreachable first mirror is skipped.
    let dir = tempfile::tempdir().unwrap();
    let host_dir = dir.path().join("mirror.invalid");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(
        host_dir.join("hosts.toml"),
        format!(
            "server = \"http://mirror.invalid\"\n\n[host.\"http://127.0.0.1:1\"]\n  capabilities = [\"pull\", \"resolve\"]\n\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            registry.host
        ),
    )
    .unwrap();
    let resolver = Resolver::new(
        HostOptions {
            hosts_dir: Some(dir.path().to_owned()),
            ..Default::default()
        },
        None,
        TransportOptions {
            retries: 0,
            ..Default::default()
        },
    );
    let reference = "mirror.invalid/library/busybox:1";
    let (_, root) = resolver.resolve(reference).await.unwrap();
    assert_eq!(root.digest, image.root.digest);
    let fetched = resolver
        .fetcher(reference)
        .unwrap()
        .fetch_all(&root)
        .await
        .unwrap();
    assert_eq!(fetched, image.root.data.to_vec());
    // Mirrors here may not take pushes; the server itself cannot be reached.
    let pusher = resolver.pusher(reference).unwrap();
    let err = pusher.exists(&root).await.unwrap_err();
    assert!(err.to_string().contains("mirror.invalid"), "{err}");
}

/// A registry that sends a blob's headers and its first bytes, then
/// nothing while keeping the connection open, cannot hold a pull: the read
/// timeout ends it with an error naming the blob and the timeout.
#[tokio::test]
async fn a_registry_that_stalls_mid_body_is_cut_off() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            while reader.read_line(&mut line).await.unwrap_or(0) > 0 && !line.ends_with("\r\n\r\n")
            {
            }
            let stream = reader.get_mut();
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nfirst bytes")
                .await;
            // Never more, never closed.
            held.push(reader);
        }
    });
    let data = vec![7u8; 1000];
    let desc = Descriptor {
        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        digest: crated_core::digest::Digest::sha256(&data),
        size: 1000,
        annotations: Default::default(),
    };
    let options = TransportOptions {
        read_timeout: Duration::from_millis(300),
        retries: 0,
        ..Default::default()
    };
    let resolver = Resolver::new(HostOptions::default(), None, options);
    let fetcher = resolver.fetcher(&format!("{addr}/slow/img:1")).unwrap();
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(30), fetcher.fetch_all(&desc))
        .await
        .expect("the stalled fetch was never cut off")
        .unwrap_err();
    assert!(
        matches!(err, Error::ReadTimeout { .. }),
        "{err:?} after {:?}",
        started.elapsed()
    );
    let said = err.to_string();
    assert!(
        said.contains(desc.digest.as_str()) && said.contains("300ms"),
        "{said}"
    );
}

/// A TLS registry that asks for basic credentials, then redirects the blob
/// to plain http on the same host and port (one listener speaking both, by
/// the first byte): the credentials must not follow the downgrade.
#[tokio::test]
async fn credentials_do_not_follow_a_redirect_from_https_to_http() {
    let dir = tempfile::tempdir().unwrap();
    let certs = crated_testimages::TestCerts::new(dir.path()).unwrap();
    let chain: Vec<_> = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(&certs.cert).unwrap(),
    ))
    .collect::<Result<_, _>>()
    .unwrap();
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(&certs.key).unwrap(),
    ))
    .unwrap()
    .unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let blob = b"the blob's bytes".to_vec();
    let plain_heads = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));

    /// Answers requests on one connection until it closes.
    fn serve<S: std::io::Read + std::io::Write>(stream: S, answer: &dyn Fn(&str) -> Vec<u8>) {
        use std::io::BufRead as _;
        let mut reader = std::io::BufReader::new(stream);
        loop {
            let mut head = String::new();
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let response = answer(&head.to_ascii_lowercase());
            if reader.get_mut().write_all(&response).is_err() {
                return;
            }
            let _ = reader.get_mut().flush();
        }
    }
    {
        let (addr, blob, plain_heads) = (addr.clone(), blob.clone(), Arc::clone(&plain_heads));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (config, addr, blob, plain_heads) = (
                    Arc::clone(&config),
                    addr.clone(),
                    blob.clone(),
                    Arc::clone(&plain_heads),
                );
                std::thread::spawn(move || {
                    let mut first = [0u8; 1];
                    if stream.peek(&mut first).unwrap_or(0) == 0 {
                        return;
                    }
                    if first[0] == 0x16 {
                        let conn = rustls::ServerConnection::new(config).unwrap();
                        let tls = rustls::StreamOwned::new(conn, stream);
                        serve(tls, &|head| {
                            if head.contains("authorization: basic") {
                                format!(
                                    "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://{addr}/storage/blob\r\ncontent-length: 0\r\n\r\n"
                                )
                                .into_bytes()
                            } else {
                                b"HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Basic realm=\"test\"\r\ncontent-length: 0\r\n\r\n".to_vec()
                            }
                        });
                    } else {
                        serve(stream, &|head| {
                            plain_heads.lock().unwrap().push(head.to_owned());
                            let mut out = format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                                blob.len()
                            )
                            .into_bytes();
                            out.extend_from_slice(&blob);
                            out
                        });
                    }
                });
            }
        });
    }

    let hosts_dir = dir.path().join("certs.d");
    let host_dir = hosts_dir.join(addr.replace(':', "_") + "_");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::copy(&certs.ca, host_dir.join("ca.pem")).unwrap();
    std::fs::write(
        host_dir.join("hosts.toml"),
        format!("server = \"https://{addr}\"\nca = \"ca.pem\"\n"),
    )
    .unwrap();
    let creds: crated_distribution::CredentialsFn =
        Arc::new(|_: &str| Some(Credentials::parse_user("tester:s3cret")));
    let resolver = Resolver::new(
        HostOptions {
            hosts_dir: Some(hosts_dir),
            ..Default::default()
        },
        Some(creds),
        TransportOptions {
            retries: 0,
            ..Default::default()
        },
    );
    let desc = Descriptor {
        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        digest: crated_core::digest::Digest::sha256(&blob),
        size: blob.len() as u64,
        annotations: Default::default(),
    };
    let fetcher = resolver.fetcher(&format!("{addr}/private/img:1")).unwrap();
    let got = fetcher.fetch_all(&desc).await.unwrap();
    assert_eq!(got, blob);
    let heads = plain_heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(
        !heads[0].contains("authorization"),
        "credentials sent over plain http after the redirect:\n{}",
        heads[0]
    );
}
