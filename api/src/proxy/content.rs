//! [`ContentStore`] over containerd's gRPC content service.

use std::sync::Arc;

use crated_core::content::{ContentStore, Info, Labels, ReaderAt, Status, Writer, WriterOptions};
use crated_core::digest::Digest;
use crated_core::{Namespace, Result};
use tokio::sync::{mpsc, Mutex};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::containerd::services::content::v1 as pb;
use crate::error::Error as WireError;
use crate::from_grpc;
use crate::metadata::{set_grpc_lease, set_grpc_namespace};
use crate::services::content::{info_from_pb, info_to_pb, status_from_pb};

/// A content store served by a remote daemon.
///
/// ```no_run
/// # async fn example(channel: tonic::transport::Channel) -> crated_core::Result<()> {
/// use crated_core::content::ContentStore;
/// let store = crated_api::proxy::content::ContentProxy::new(channel);
/// let ns = crated_core::Namespace::new("default")?;
/// for info in store.walk(&ns, &[]).await? {
///     println!("{} {}", info.digest, info.size);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ContentProxy {
    client: pb::content_client::ContentClient<Channel>,
    lease: Option<String>,
}

fn request<T>(ns: &Namespace, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    set_grpc_namespace(&mut request, ns);
    request
}

fn to_i64(what: &'static str, value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| WireError::TooLarge { field: what, value }.into())
}

impl ContentProxy {
    /// Calls the content service on `channel`.
    pub fn new(channel: Channel) -> Self {
        Self {
            client: pb::content_client::ContentClient::new(channel)
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX),
            lease: None,
        }
    }

    /// Writes through this proxy are held by `lease` unless their options
    /// name another, like a Go client's context `WithLease`.
    pub fn with_lease(mut self, lease: impl Into<String>) -> Self {
        self.lease = Some(lease.into());
        self
    }
}

#[async_trait::async_trait]
impl ContentStore for ContentProxy {
    async fn info(&self, ns: &Namespace, digest: &Digest) -> Result<Info> {
        let response = self
            .client
            .clone()
            .info(request(
                ns,
                pb::InfoRequest {
                    digest: digest.to_string(),
                },
            ))
            .await
            .map_err(from_grpc)?;
        info_from_pb(response.into_inner().info.unwrap_or_default())
    }

    async fn update(&self, ns: &Namespace, info: Info, fieldpaths: &[String]) -> Result<Info> {
        let response = self
            .client
            .clone()
            .update(request(
                ns,
                pb::UpdateRequest {
                    info: Some(info_to_pb(info)),
                    update_mask: Some(prost_types::FieldMask {
                        paths: fieldpaths.to_vec(),
                    }),
                },
            ))
            .await
            .map_err(from_grpc)?;
        info_from_pb(response.into_inner().info.unwrap_or_default())
    }

    async fn walk(&self, ns: &Namespace, filters: &[String]) -> Result<Vec<Info>> {
        let mut stream = self
            .client
            .clone()
            .list(request(
                ns,
                pb::ListContentRequest {
                    filters: filters.to_vec(),
                },
            ))
            .await
            .map_err(from_grpc)?
            .into_inner();
        let mut out = Vec::new();
        while let Some(batch) = stream.message().await.map_err(from_grpc)? {
            for info in batch.info {
                out.push(info_from_pb(info)?);
            }
        }
        Ok(out)
    }

    async fn delete(&self, ns: &Namespace, digest: &Digest) -> Result<()> {
        self.client
            .clone()
            .delete(request(
                ns,
                pb::DeleteContentRequest {
                    digest: digest.to_string(),
                },
            ))
            .await
            .map_err(from_grpc)?;
        Ok(())
    }

    async fn reader_at(&self, ns: &Namespace, digest: &Digest) -> Result<Box<dyn ReaderAt>> {
        let info = self.info(ns, digest).await?;
        Ok(Box::new(ProxyReader {
            client: self.client.clone(),
            ns: ns.clone(),
            digest: digest.clone(),
            size: info.size,
        }))
    }

    async fn status(&self, ns: &Namespace, r#ref: &str) -> Result<Status> {
        let response = self
            .client
            .clone()
            .status(request(
                ns,
                pb::StatusRequest {
                    r#ref: r#ref.to_owned(),
                },
            ))
            .await
            .map_err(from_grpc)?;
        status_from_pb(response.into_inner().status.unwrap_or_default())
    }

    async fn list_statuses(&self, ns: &Namespace, filters: &[String]) -> Result<Vec<Status>> {
        let response = self
            .client
            .clone()
            .list_statuses(request(
                ns,
                pb::ListStatusesRequest {
                    filters: filters.to_vec(),
                },
            ))
            .await
            .map_err(from_grpc)?;
        response
            .into_inner()
            .statuses
            .into_iter()
            .map(status_from_pb)
            .collect()
    }

    async fn abort(&self, ns: &Namespace, r#ref: &str) -> Result<()> {
        self.client
            .clone()
            .abort(request(
                ns,
                pb::AbortRequest {
                    r#ref: r#ref.to_owned(),
                },
            ))
            .await
            .map_err(from_grpc)?;
        Ok(())
    }

    async fn writer(&self, ns: &Namespace, options: WriterOptions) -> Result<Box<dyn Writer>> {
        let (tx, rx) = mpsc::channel(2);
        let first = pb::WriteContentRequest {
            action: pb::WriteAction::Stat as i32,
            r#ref: options.r#ref.clone(),
            total: to_i64("total", options.total)?,
            expected: options
                .expected
                .as_ref()
                .map(|d| d.to_string())
                .unwrap_or_default(),
            ..Default::default()
        };
        tx.send(first)
            .await
            .map_err(|_| WireError::WriteStream("closed before it started"))?;
        let mut responses = self
            .client
            .clone()
            .write({
                let mut request = request(ns, ReceiverStream::new(rx));
                if let Some(lease) = options.lease.as_ref().or(self.lease.as_ref()) {
                    set_grpc_lease(&mut request, lease)?;
                }
                request
            })
            .await
            .map_err(from_grpc)?
            .into_inner();
        let stat = next_reply(&mut responses).await?;
        let stream = Stream {
            tx: Some(tx),
            responses,
            pending: 0,
            digest: Digest::parse(&stat.digest)?,
        };
        Ok(Box::new(ProxyWriter {
            stream: Arc::new(Mutex::new(stream)),
            r#ref: options.r#ref,
            total: options.total,
            expected: options.expected,
            offset: u64::try_from(stat.offset).unwrap_or(0),
        }))
    }
}

struct ProxyReader {
    client: pb::content_client::ContentClient<Channel>,
    ns: Namespace,
    digest: Digest,
    size: u64,
}

#[async_trait::async_trait]
impl ReaderAt for ProxyReader {
    fn size(&self) -> u64 {
        self.size
    }

    async fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if offset >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(self.size - offset);
        let mut stream = self
            .client
            .clone()
            .read(request(
                &self.ns,
                pb::ReadContentRequest {
                    digest: self.digest.to_string(),
                    offset: to_i64("offset", offset)?,
                    size: to_i64("size", want)?,
                },
            ))
            .await
            .map_err(from_grpc)?
            .into_inner();
        let mut filled = 0usize;
        while let Some(chunk) = stream.message().await.map_err(from_grpc)? {
            let end = filled + chunk.data.len();
            if end > buf.len() {
                return Err(WireError::OverlongRead(self.digest.to_string()).into());
            }
            buf[filled..end].copy_from_slice(&chunk.data);
            filled = end;
        }
        Ok(filled)
    }
}

/// Writes sent ahead of their replies. containerd's protocol answers every
/// request of a write stream in order, so a writer need not wait for one
/// chunk's reply before sending the next: the client's encoding and the
/// server's hashing and writing overlap instead of taking turns.
const WRITES_IN_FLIGHT: usize = 4;

struct Stream {
    /// `None` once the writer closed its half of the stream.
    tx: Option<mpsc::Sender<pb::WriteContentRequest>>,
    responses: tonic::Streaming<pb::WriteContentResponse>,
    /// Replies to writes still to come.
    pending: usize,
    /// The digest in the last reply.
    digest: Digest,
}

impl Stream {
    async fn receive(&mut self) -> Result<pb::WriteContentResponse> {
        let response = next_reply(&mut self.responses).await?;
        if !response.digest.is_empty() {
            self.digest = Digest::parse(&response.digest)?;
        }
        Ok(response)
    }

    /// Sends without waiting for the reply.
    async fn send(&mut self, message: pb::WriteContentRequest) -> Result<()> {
        let tx = self.tx.as_ref().ok_or(WireError::WriterClosed)?;
        if tx.send(message).await.is_ok() {
            return Ok(());
        }
        // The server ended the stream; its reason is the status after the
        // replies it still sent.
        loop {
            match self.responses.message().await {
                Ok(Some(_)) => continue,
                Err(status) => return Err(from_grpc(status)),
                Ok(None) => return Err(WireError::WriteStream("closed by the server").into()),
            }
        }
    }

    /// Waits for the replies of every write in flight; a write the server
    /// refused fails here.
    async fn settle(&mut self) -> Result<()> {
        while self.pending > 0 {
            self.receive().await?;
            self.pending -= 1;
        }
        Ok(())
    }

    async fn call(&mut self, message: pb::WriteContentRequest) -> Result<pb::WriteContentResponse> {
        self.settle().await?;
        self.send(message).await?;
        self.receive().await
    }
}

async fn next_reply(
    responses: &mut tonic::Streaming<pb::WriteContentResponse>,
) -> Result<pb::WriteContentResponse> {
    match responses.message().await {
        Ok(Some(response)) => Ok(response),
        Ok(None) => Err(WireError::WriteStream("ended without a reply").into()),
        Err(status) => Err(from_grpc(status)),
    }
}

struct ProxyWriter {
    stream: Arc<Mutex<Stream>>,
    r#ref: String,
    total: u64,
    expected: Option<Digest>,
    /// Where the next write goes: everything sent, acknowledged or not.
    offset: u64,
}

impl Drop for ProxyWriter {
    fn drop(&mut self) {
        // Dropping the stream cancels the call, and with it any write the
        // server has not processed yet. A writer dropped without close keeps
        // what it wrote in every store, so let those writes land first.
        let in_flight = self.stream.try_lock().map_or(true, |s| s.pending > 0);
        if !in_flight {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let stream = Arc::clone(&self.stream);
            runtime.spawn(async move {
                let _ = stream.lock().await.settle().await;
            });
        }
    }
}

#[async_trait::async_trait]
impl Writer for ProxyWriter {
    async fn write(&mut self, data: &[u8]) -> Result<()> {
        let mut stream = self.stream.lock().await;
        if stream.pending >= WRITES_IN_FLIGHT {
            stream.receive().await?;
            stream.pending -= 1;
        }
        stream
            .send(pb::WriteContentRequest {
                action: pb::WriteAction::Write as i32,
                offset: to_i64("offset", self.offset)?,
                data: data.to_vec(),
                ..Default::default()
            })
            .await?;
        stream.pending += 1;
        self.offset += data.len() as u64;
        Ok(())
    }

    async fn digest(&self) -> Result<Digest> {
        let mut stream = self.stream.lock().await;
        stream.settle().await?;
        Ok(stream.digest.clone())
    }

    async fn status(&self) -> Result<Status> {
        let response = self
            .stream
            .lock()
            .await
            .call(pb::WriteContentRequest {
                action: pb::WriteAction::Stat as i32,
                ..Default::default()
            })
            .await?;
        let now = std::time::SystemTime::now();
        Ok(Status {
            r#ref: self.r#ref.clone(),
            offset: u64::try_from(response.offset).unwrap_or(0),
            total: u64::try_from(response.total).unwrap_or(self.total),
            expected: self.expected.clone(),
            started_at: response
                .started_at
                .as_ref()
                .map(crate::convert::to_system_time)
                .unwrap_or(now),
            updated_at: response
                .updated_at
                .as_ref()
                .map(crate::convert::to_system_time)
                .unwrap_or(now),
        })
    }

    async fn truncate(&mut self, size: u64) -> Result<()> {
        // A write at offset 0 makes the server truncate (containerd's
        // protocol); other sizes cannot be expressed on the wire.
        if size != 0 {
            return Err(WireError::Truncate {
                reference: self.r#ref.clone(),
                size,
            }
            .into());
        }
        // Done now rather than on the next write so that `status` and
        // `digest` agree with the server straight away.
        let response = self
            .stream
            .lock()
            .await
            .call(pb::WriteContentRequest {
                action: pb::WriteAction::Write as i32,
                offset: 0,
                ..Default::default()
            })
            .await?;
        self.offset = u64::try_from(response.offset).unwrap_or(0);
        Ok(())
    }

    async fn commit(
        self: Box<Self>,
        size: u64,
        expected: Option<Digest>,
        labels: Labels,
    ) -> Result<()> {
        let expected = expected.or(self.expected.clone());
        let response = self
            .stream
            .lock()
            .await
            .call(pb::WriteContentRequest {
                action: pb::WriteAction::Commit as i32,
                total: to_i64("size", size)?,
                offset: to_i64("offset", self.offset)?,
                expected: expected.as_ref().map(|d| d.to_string()).unwrap_or_default(),
                labels: labels.into_iter().collect(),
                ..Default::default()
            })
            .await?;
        if let Some(expected) = expected {
            if response.digest != expected.as_str() {
                return Err(WireError::CommitDigest {
                    got: response.digest,
                    expected: expected.to_string(),
                }
                .into());
            }
        }
        Ok(())
    }

    async fn close(self: Box<Self>) -> Result<()> {
        // Ending the request stream makes the server close its writer (the
        // ingest stays for a resume); the response stream ends once it has,
        // so after this returns the ref is free for a new writer.
        let mut stream = self.stream.lock().await;
        stream.tx = None;
        // The loop below reads the replies of writes in flight too.
        stream.pending = 0;
        loop {
            match stream.responses.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(()),
                Err(status) => return Err(from_grpc(status)),
            }
        }
    }
}
