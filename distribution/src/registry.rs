//! Resolve, fetch and push against the hosts of one reference.

use std::sync::Arc;

use bytes::Bytes;
use crated_core::content::ReaderAt;
use crated_core::descriptor::Descriptor;
use crated_core::digest::Digest;
use crated_core::images::walk::media_types as mt;
use crated_core::reference::{parse_normalized_named, Reference};
use futures::StreamExt;
use http::header::{self, HeaderName};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use sha2::{Digest as _, Sha256};

use crate::auth::CredentialsFn;
use crate::error::{Error, Result};
use crate::hosts::{self, HostOptions, RegistryHost};
use crate::transport::{
    full, header_str, join_location, query_escape, read_limited, status_error, BodyFactory,
    BodyReader, Request, Transport, TransportOptions,
};

/// What a resolve asks for: every manifest and index type we can unpack.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, */*";

/// Manifests larger than this are refused rather than read into memory.
pub const MAX_MANIFEST_SIZE: usize = 4 << 20;

const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");

/// Whether `media_type` is fetched and pushed under `/manifests/`.
pub fn is_manifest_type(media_type: &str) -> bool {
    matches!(
        media_type,
        mt::OCI_INDEX | mt::OCI_MANIFEST | mt::DOCKER_MANIFEST | mt::DOCKER_MANIFEST_LIST
    )
}

/// Resolves references to descriptors and hands out fetchers and pushers
/// for them; one per pull or push, sharing connections and tokens.
///
/// ```no_run
/// # async fn f() -> crated_core::Result<()> {
/// use crated_distribution::{HostOptions, Resolver, TransportOptions};
///
/// let resolver = Resolver::new(HostOptions::default(), None, TransportOptions::default());
/// let (name, desc) = resolver.resolve("127.0.0.1:5000/test/busybox:latest").await?;
/// let fetcher = resolver.fetcher(&name)?;
/// let mut body = fetcher.fetch(&desc, 0).await?;
/// while let Some(chunk) = body.chunk().await? { /* … */ }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Resolver {
    transport: Arc<Transport>,
    hosts: HostOptions,
}

/// A parsed reference with its endpoints.
#[derive(Clone)]
struct Target {
    reference: Reference,
    /// As the user wrote it, for errors.
    written: String,
    hosts: Vec<RegistryHost>,
}

impl Target {
    fn repository(&self) -> &str {
        self.reference.path()
    }

    fn pull_scope(&self) -> String {
        format!("repository:{}:pull", self.repository())
    }

    fn push_scope(&self) -> String {
        format!("repository:{}:pull,push", self.repository())
    }
}

impl Resolver {
    /// A resolver for hosts configured by `hosts`, authenticating with
    /// `credentials` where a registry asks.
    pub fn new(
        hosts: HostOptions,
        credentials: Option<CredentialsFn>,
        options: TransportOptions,
    ) -> Self {
        Self {
            transport: Arc::new(Transport::new(credentials, options)),
            hosts,
        }
    }

    fn target(&self, reference: &str) -> Result<Target> {
        let parsed =
            parse_normalized_named(reference).map_err(|source| Error::InvalidReference {
                reference: reference.to_owned(),
                source,
            })?;
        if parsed.domain().is_empty() {
            return Err(Error::HostnameRequired {
                reference: reference.to_owned(),
            });
        }
        let hosts = hosts::configure(parsed.domain(), &self.hosts)?;
        Ok(Target {
            reference: parsed,
            written: reference.to_owned(),
            hosts,
        })
    }

    /// The descriptor `reference` names (a tag, a digest, or both), from
    /// the first host able to resolve that has it. Returns the reference
    /// as written and the descriptor.
    pub async fn resolve(&self, reference: &str) -> Result<(String, Descriptor)> {
        let target = self.target(reference)?;
        let repo = target.repository();
        let paths: Vec<String> = match (target.reference.digest(), target.reference.tag()) {
            (Some(d), _) => vec![format!("{repo}/manifests/{d}"), format!("{repo}/blobs/{d}")],
            (None, Some(tag)) => vec![format!("{repo}/manifests/{tag}")],
            (None, None) => {
                return Err(Error::ObjectRequired {
                    reference: reference.to_owned(),
                })
            }
        };
        let scope = target.pull_scope();
        let mut first_error = None;
        let resolvers = target.hosts.iter().filter(|h| h.capabilities.resolve);
        for host in resolvers {
            for path in &paths {
                match self.resolve_at(&target, host, path, &scope).await {
                    Ok(Some(desc)) => return Ok((reference.to_owned(), desc)),
                    Ok(None) => {}
                    Err(err) => {
                        tracing::debug!(host = host.host, error = %err, "resolve failed");
                        first_error.get_or_insert(err);
                    }
                }
            }
        }
        Err(first_error.unwrap_or_else(|| Error::NotFound {
            reference: reference.to_owned(),
        }))
    }

    async fn resolve_at(
        &self,
        target: &Target,
        host: &RegistryHost,
        path: &str,
        scope: &str,
    ) -> Result<Option<Descriptor>> {
        let what = format!("resolving {}", target.written);
        let head = Request::new(Method::HEAD, host, path, scope, &what)
            .header(header::ACCEPT, ACCEPT_MANIFESTS);
        let response = self.transport.send(&head).await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(status_error(
                response,
                &target.written,
                self.transport.options.read_timeout,
            )
            .await);
        }
        let headers = response.headers();
        let mut media_type = header_str(headers, &header::CONTENT_TYPE)
            .map(|t| t.split(';').next().unwrap_or(t).trim().to_owned())
            .unwrap_or_default();
        let mut digest = match header_str(headers, &DOCKER_CONTENT_DIGEST) {
            Some(value) => Some(
                Digest::parse(value).map_err(|source| Error::BadDigestHeader {
                    what: what.clone(),
                    value: value.to_owned(),
                    source,
                })?,
            ),
            None => None,
        };
        let mut size =
            header_str(headers, &header::CONTENT_LENGTH).and_then(|l| l.parse::<u64>().ok());
        if digest.is_none() || size.is_none_or(|s| s == 0) {
            // Some registries answer HEAD without these: read the manifest.
            let get = Request::new(Method::GET, host, path, scope, &what)
                .header(header::ACCEPT, ACCEPT_MANIFESTS);
            let response = self.transport.send(&get).await?;
            if response.status() == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if !response.status().is_success() {
                return Err(status_error(
                    response,
                    &target.written,
                    self.transport.options.read_timeout,
                )
                .await);
            }
            if let Some(t) = header_str(response.headers(), &header::CONTENT_TYPE) {
                media_type = t.split(';').next().unwrap_or(t).trim().to_owned();
            }
            let body = read_limited(
                response.into_body(),
                MAX_MANIFEST_SIZE,
                self.transport.options.read_timeout,
                &format!("the manifest of {}", target.written),
            )
            .await?;
            digest = Some(Digest::sha256(&body));
            size = Some(body.len() as u64);
        }
        let (Some(digest), Some(size)) = (digest, size) else {
            return Ok(None);
        };
        if let Some(expected) = target.reference.digest() {
            if *expected != digest {
                return Err(Error::DigestMismatch {
                    what,
                    digest,
                    expected: expected.clone(),
                });
            }
        }
        if media_type.contains("manifest.v1+prettyjws")
            || media_type == "application/vnd.docker.distribution.manifest.v1+json"
        {
            return Err(Error::SchemaOne {
                reference: target.written.clone(),
                media_type,
            });
        }
        Ok(Some(Descriptor {
            media_type,
            digest,
            size,
            annotations: Default::default(),
        }))
    }

    /// A fetcher for blobs and manifests of `reference`'s repository.
    pub fn fetcher(&self, reference: &str) -> Result<Fetcher> {
        Ok(Fetcher {
            transport: self.transport.clone(),
            target: self.target(reference)?,
        })
    }

    /// A pusher to `reference`'s repository (and tag, if it has one).
    pub fn pusher(&self, reference: &str) -> Result<Pusher> {
        let target = self.target(reference)?;
        if !target.hosts.iter().any(|h| h.capabilities.push) {
            return Err(Error::NoPushHost {
                reference: reference.to_owned(),
            });
        }
        Ok(Pusher {
            transport: self.transport.clone(),
            target,
        })
    }
}

/// Reads blobs and manifests from a repository.
pub struct Fetcher {
    transport: Arc<Transport>,
    target: Target,
}

/// A blob being fetched.
pub struct Fetched {
    body: BodyReader,
    /// Bytes still to drop: the server ignored the Range asked for.
    skip: u64,
}

impl Fetched {
    /// The next chunk, `None` at the end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        loop {
            let Some(mut chunk) = self.body.chunk().await? else {
                return Ok(None);
            };
            if self.skip > 0 {
                let drop = self.skip.min(chunk.len() as u64);
                self.skip -= drop;
                let _ = chunk.split_to(drop as usize);
                if chunk.is_empty() {
                    continue;
                }
            }
            return Ok(Some(chunk));
        }
    }
}

impl Fetcher {
    /// Streams `desc` from `offset` (a resumed download asks the registry
    /// for the rest with a Range request). The caller verifies the digest.
    pub async fn fetch(&self, desc: &Descriptor, offset: u64) -> Result<Fetched> {
        let repo = self.target.repository();
        let d = &desc.digest;
        let mut paths = Vec::new();
        if is_manifest_type(&desc.media_type) {
            paths.push(format!("{repo}/manifests/{d}"));
        }
        paths.push(format!("{repo}/blobs/{d}"));
        let scope = self.target.pull_scope();
        let what = format!("{} from {}", d, self.target.written);
        let mut first_error = None;
        for host in self.target.hosts.iter().filter(|h| h.capabilities.pull) {
            for path in &paths {
                let mut request = Request::new(Method::GET, host, path, &scope, &what);
                if is_manifest_type(&desc.media_type) {
                    request = request.header(header::ACCEPT, format!("{}, */*", desc.media_type));
                }
                if offset > 0 {
                    request = request.header(header::RANGE, format!("bytes={offset}-"));
                }
                let response = match self.transport.send(&request).await {
                    Ok(r) => r,
                    Err(err) => {
                        first_error.get_or_insert(err);
                        continue;
                    }
                };
                let status = response.status();
                if status == StatusCode::NOT_FOUND {
                    continue;
                }
                let skip = match status {
                    StatusCode::PARTIAL_CONTENT => 0,
                    StatusCode::OK => offset,
                    _ => {
                        first_error.get_or_insert(
                            status_error(response, &what, self.transport.options.read_timeout)
                                .await,
                        );
                        continue;
                    }
                };
                return Ok(Fetched {
                    body: BodyReader::new(
                        response.into_body(),
                        self.transport.options.read_timeout,
                        what.clone(),
                    ),
                    skip,
                });
            }
        }
        Err(first_error.unwrap_or_else(|| Error::BlobNotFound {
            digest: d.clone(),
            reference: self.target.written.clone(),
        }))
    }

    /// Reads a whole manifest, index or config (at most
    /// [`MAX_MANIFEST_SIZE`]) and checks its digest.
    pub async fn fetch_all(&self, desc: &Descriptor) -> Result<Vec<u8>> {
        if desc.size > MAX_MANIFEST_SIZE as u64 {
            return Err(Error::ManifestTooLarge {
                digest: desc.digest.clone(),
                size: desc.size,
                limit: MAX_MANIFEST_SIZE,
            });
        }
        let mut body = self.fetch(desc, 0).await?;
        let mut out = Vec::with_capacity(desc.size as usize);
        while let Some(chunk) = body.chunk().await? {
            if out.len() + chunk.len() > desc.size as usize {
                return Err(Error::LongerThanDescriptor {
                    digest: desc.digest.clone(),
                    size: desc.size,
                });
            }
            out.extend_from_slice(&chunk);
        }
        let got = Digest::sha256(&out);
        if got != desc.digest {
            return Err(Error::FetchedDigest {
                expected: desc.digest.clone(),
                digest: got,
            });
        }
        Ok(out)
    }
}

/// What pushing a blob did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The registry already had it.
    Exists,
    /// Mounted from another repository of the same registry.
    Mounted,
    /// Uploaded.
    Uploaded,
}

/// Writes blobs and manifests to a repository.
pub struct Pusher {
    transport: Arc<Transport>,
    target: Target,
}

impl Pusher {
    fn host(&self) -> Result<&RegistryHost> {
        self.target
            .hosts
            .iter()
            .find(|h| h.capabilities.push)
            .ok_or_else(|| Error::NoPushHost {
                reference: self.target.written.clone(),
            })
    }

    /// The repository path pushed to (`test/busybox`).
    pub fn repository(&self) -> &str {
        self.target.repository()
    }

    /// The registry domain pushed to (`127.0.0.1:5000`).
    pub fn domain(&self) -> &str {
        self.target.reference.domain()
    }

    /// Whether the registry has `desc` in this repository.
    pub async fn exists(&self, desc: &Descriptor) -> Result<bool> {
        let host = self.host()?;
        let kind = if is_manifest_type(&desc.media_type) {
            "manifests"
        } else {
            "blobs"
        };
        let path = format!("{}/{kind}/{}", self.repository(), desc.digest);
        let what = format!("{} in {}", desc.digest, self.target.written);
        let mut request = Request::new(Method::HEAD, host, &path, &self.target.push_scope(), &what);
        if kind == "manifests" {
            request = request.header(header::ACCEPT, ACCEPT_MANIFESTS);
        }
        let response = self.transport.send(&request).await?;
        match response.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(status_error(response, &what, self.transport.options.read_timeout).await),
        }
    }

    /// Pushes a blob read from `source`, unless the repository has it;
    /// `mount_from` names another repository of the same registry that
    /// has it, to mount instead of uploading.
    pub async fn push_blob(
        &self,
        desc: &Descriptor,
        source: Arc<dyn ReaderAt>,
        mount_from: Option<&str>,
    ) -> Result<Pushed> {
        if self.exists(desc).await? {
            return Ok(Pushed::Exists);
        }
        let host = self.host()?;
        let repo = self.repository();
        let what = format!("pushing {} to {}", desc.digest, self.target.written);
        let mut path = format!("{repo}/blobs/uploads/");
        let mut scope = self.target.push_scope();
        if let Some(from) = mount_from.filter(|f| *f != repo) {
            path.push_str(&format!(
                "?mount={}&from={}",
                query_escape(desc.digest.as_str()),
                query_escape(from)
            ));
            scope.push_str(&format!(" repository:{from}:pull"));
        }
        let start = Request::new(Method::POST, host, &path, &scope, &what)
            .header(header::CONTENT_LENGTH, "0");
        let response = self.transport.send(&start).await?;
        let location = match response.status() {
            StatusCode::CREATED => return Ok(Pushed::Mounted),
            StatusCode::ACCEPTED => header_str(response.headers(), &header::LOCATION)
                .map(|l| join_location(&host.url(&path), l))
                .ok_or_else(|| Error::NoLocation { what: what.clone() })?,
            _ => {
                return Err(
                    status_error(response, &what, self.transport.options.read_timeout).await,
                )
            }
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!(
            "{location}{sep}digest={}",
            query_escape(desc.digest.as_str())
        );
        let mut put = Request::new(Method::PUT, host, "", &scope, &what)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, desc.size.to_string());
        put.url = url;
        put.body = Some(reader_body(source, desc.size));
        let response = self.transport.send(&put).await?;
        if response.status() != StatusCode::CREATED {
            return Err(status_error(response, &what, self.transport.options.read_timeout).await);
        }
        Ok(Pushed::Uploaded)
    }

    /// Pushes a manifest or index; `tagged` puts it under the reference's
    /// tag (the root of a push), else under its digest.
    pub async fn push_manifest(&self, desc: &Descriptor, data: Bytes, tagged: bool) -> Result<()> {
        let host = self.host()?;
        let object = match (tagged, self.target.reference.tag()) {
            (true, Some(tag)) => tag.to_owned(),
            _ => desc.digest.to_string(),
        };
        if object == desc.digest.as_str() && self.exists(desc).await? {
            return Ok(());
        }
        let path = format!("{}/manifests/{object}", self.repository());
        let what = format!(
            "pushing manifest {} to {}",
            desc.digest, self.target.written
        );
        let mut put = Request::new(Method::PUT, host, &path, &self.target.push_scope(), &what)
            .header(header::CONTENT_TYPE, desc.media_type.clone())
            .header(header::CONTENT_LENGTH, data.len().to_string());
        put.body = Some(full(data));
        let response = self.transport.send(&put).await?;
        if response.status() != StatusCode::CREATED {
            return Err(status_error(response, &what, self.transport.options.read_timeout).await);
        }
        if let Some(d) = header_str(response.headers(), &DOCKER_CONTENT_DIGEST) {
            if d != desc.digest.as_str() {
                return Err(Error::StoredAs {
                    what,
                    stored: d.to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// A body streaming `size` bytes of `source` in 1 MiB reads; each
/// attempt of a request starts again at 0.
fn reader_body(source: Arc<dyn ReaderAt>, size: u64) -> BodyFactory {
    Arc::new(move || {
        let source = source.clone();
        let stream = futures::stream::unfold(0u64, move |offset| {
            let source = source.clone();
            async move {
                if offset >= size {
                    return None;
                }
                let len = (size - offset).min(1 << 20) as usize;
                let mut buf = vec![0; len];
                match source.read_at(offset, &mut buf).await {
                    Ok(0) => Some((
                        Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!("blob ended at {offset} of {size} bytes"),
                        )),
                        size,
                    )),
                    Ok(n) => {
                        buf.truncate(n);
                        Some((
                            Ok(hyper::body::Frame::data(Bytes::from(buf))),
                            offset + n as u64,
                        ))
                    }
                    // The store's error, kept as the source of the
                    // failed request.
                    Err(e) => Some((Err(std::io::Error::other(e)), size)),
                }
            }
        });
        StreamBody::new(stream.boxed()).boxed_unsync()
    })
}

/// A running sha256 over fetched bytes.
#[derive(Default, Clone)]
pub struct Verifier(Sha256);

impl Verifier {
    /// Adds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest so far.
    pub fn digest(&self) -> Digest {
        let hex: String = self
            .0
            .clone()
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Digest::parse(&format!("sha256:{hex}")).expect("a sha256 hex string is a valid digest")
    }
}
