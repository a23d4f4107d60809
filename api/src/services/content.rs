//! `containerd.services.content.v1.Content` over a [`ContentStore`]: a
//! translation only (the service layer publishes `/content/delete`).

use std::pin::Pin;
use std::sync::Arc;

use crated_core::content::{ContentStore, Info, Status as IngestStatus, Writer, WriterOptions};
use crated_core::digest::Digest;
use crated_core::{Namespace, Result};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::containerd::services::content::v1 as pb;
use crate::convert::{to_system_time, to_timestamp};
use crate::metadata::{grpc_lease, grpc_namespace};
use crate::to_grpc;

/// Infos per `List` response message, as containerd batches them.
const LIST_BATCH: usize = 100;
/// Bytes per `Read` response message.
const READ_CHUNK: usize = 1 << 20;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The content service of a daemon.
pub struct Service {
    store: Arc<dyn ContentStore>,
}

impl Service {
    /// Serves `store`.
    pub fn new(store: Arc<dyn ContentStore>) -> Self {
        Self { store }
    }

    /// The tonic server wrapping this service.
    pub fn into_server(self) -> pb::content_server::ContentServer<Self> {
        pb::content_server::ContentServer::new(self)
    }
}

/// A core info as its wire message.
pub fn info_to_pb(info: Info) -> pb::Info {
    pb::Info {
        digest: info.digest.to_string(),
        size: i64::try_from(info.size).unwrap_or(i64::MAX),
        created_at: Some(to_timestamp(info.created_at)),
        updated_at: Some(to_timestamp(info.updated_at)),
        labels: info.labels.into_iter().collect(),
    }
}

/// A wire info as the core type; the digest must be valid.
pub fn info_from_pb(info: pb::Info) -> Result<Info> {
    let now = std::time::SystemTime::now();
    Ok(Info {
        digest: parse_digest(&info.digest)?,
        size: u64::try_from(info.size).unwrap_or(0),
        created_at: info.created_at.as_ref().map(to_system_time).unwrap_or(now),
        updated_at: info.updated_at.as_ref().map(to_system_time).unwrap_or(now),
        labels: info.labels.into_iter().collect(),
    })
}

/// An ingest status as its wire message.
pub fn status_to_pb(status: IngestStatus) -> pb::Status {
    pb::Status {
        started_at: Some(to_timestamp(status.started_at)),
        updated_at: Some(to_timestamp(status.updated_at)),
        r#ref: status.r#ref,
        offset: i64::try_from(status.offset).unwrap_or(i64::MAX),
        total: i64::try_from(status.total).unwrap_or(i64::MAX),
        expected: status.expected.map(|d| d.to_string()).unwrap_or_default(),
    }
}

/// A wire status as the core type.
pub fn status_from_pb(status: pb::Status) -> Result<IngestStatus> {
    let now = std::time::SystemTime::now();
    Ok(IngestStatus {
        r#ref: status.r#ref,
        offset: u64::try_from(status.offset).unwrap_or(0),
        total: u64::try_from(status.total).unwrap_or(0),
        expected: optional_digest(&status.expected)?,
        started_at: status
            .started_at
            .as_ref()
            .map(to_system_time)
            .unwrap_or(now),
        updated_at: status
            .updated_at
            .as_ref()
            .map(to_system_time)
            .unwrap_or(now),
    })
}

fn parse_digest(s: &str) -> Result<Digest> {
    Digest::parse(s)
}

fn optional_digest(s: &str) -> Result<Option<Digest>> {
    if s.is_empty() {
        Ok(None)
    } else {
        parse_digest(s).map(Some)
    }
}

fn non_negative(what: &str, value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| {
        crate::error::Error::Negative {
            field: what.to_owned(),
            value,
        }
        .into()
    })
}

#[tonic::async_trait]
impl pb::content_server::Content for Service {
    async fn info(
        &self,
        request: Request<pb::InfoRequest>,
    ) -> Result<Response<pb::InfoResponse>, Status> {
        let ns = grpc_namespace(&request).map_err(to_grpc)?;
        let digest = parse_digest(&request.get_ref().digest).map_err(to_grpc)?;
        let info = self.store.info(&ns, &digest).await.map_err(to_grpc)?;
        Ok(Response::new(pb::InfoResponse {
            info: Some(info_to_pb(info)),
        }))
    }

    async fn update(
        &self,
        request: Request<pb::UpdateRequest>,
    ) -> Result<Response<pb::UpdateResponse>, Status> {
        let ns = grpc_namespace(&request).map_err(to_grpc)?;
        let request = request.into_inner();
        let info = request
            .info
            .ok_or_else(|| to_grpc(crate::error::Error::Missing("info").into()))
            .and_then(|i| info_from_pb(i).map_err(to_grpc))?;
        let paths = request.update_mask.map(|m| m.paths).unwrap_or_default();
        let info = self
            .store
            .update(&ns, info, &paths)
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(pb::UpdateResponse {
            info: Some(info_to_pb(info)),
        }))
    }

    type ListStream = BoxStream<pb::ListContentResponse>;

    async fn list(
        &self,
        request: Request<pb::ListContentRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let ns = grpc_namespace(&request).map_err(to_grpc)?;
        let infos = self
            .store
            .walk(&ns, &request.get_ref().filters)
            .await
            .map_err(to_grpc)?;
        let batches: Vec<Result<pb::ListContentResponse, Status>> = infos
            .chunks(LIST_BATCH)
            .map(|chunk| {
                Ok(pb::ListContentResponse {
                    info: chunk.iter().cloned().map(info_to_pb).collect(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(batches))))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteContentRequest>,
    ) -> Result<Response<()>, Status> {
        let ns = grpc_namespace(&request).map_err(to_grpc)?;
        let digest = parse_digest(&request.get_ref().digest).map_err(to_grpc)?;
        self.store.delete(&ns, &digest).await.map_err(to_grpc)?;
        Ok(Response::new(()))
    }

    type ReadStream = BoxStream<pb::ReadContentResponse>;

    async fn read(
        &self,
        request: Request<pb::ReadContentRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let ns = grpc_namespace(&request).map_err(to_grpc)?;
        let request = request.into_inner();
        let digest = parse_digest(&request.digest).map_err(to_grpc)?;
        let reader = self.store.reader_at(&ns, &digest).await.map_err(to_grpc)?;
        let size = reader.size();
        // containerd: a negative offset reads from 0; past the end is OutOfRange.
        let offset = u64::try_from(request.offset).unwrap_or(0);
        if offset > size {
            return Err(Status::out_of_range(format!(
                "read of {digest} at offset {offset} is past its length of {size} bytes"
            )));
        }
        let len = match u64::try_from(request.size) {
            Ok(n) if n > 0 && offset + n <= size => n,
            _ => size - offset,
        };
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut position = offset;
            let end = offset + len;
            let mut buf = vec![
                0u8;
                READ_CHUNK
                    .min(usize::try_from(len).unwrap_or(READ_CHUNK))
                    .max(1)
            ];
            while position < end {
                let want = usize::try_from(end - position)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                let message = match reader.read_at(position, &mut buf[..want]).await {
                    Ok(0) => Err(Status::data_loss(format!(
                        "{digest} ended at {position} before {end}"
                    ))),
                    Ok(n) => {
                        let message = pb::ReadContentResponse {
                            offset: i64::try_from(position).unwrap_or(i64::MAX),
                            data: buf[..n].to_vec(),
                        };
                        position += n as u64;
                        Ok(message)
                    }
                    Err(e) => Err(to_grpc(e)),
                };
                let failed = message.is_err();
                if tx.send(message).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let ns = grpc_namespace(&request).map_err(to_grpc)?;
        let status = self
            .store
            .status(&ns, &request.get_ref().r#ref)
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(pb::StatusResponse {
            status: Some(status_to_pb(status)),
        }))
    }

    async fn list_statuses(
        &self,
        request: Request<pb::ListStatusesRequest>,
    ) -> Result<Response<pb::ListStatusesResponse>, Status> {
        let ns = grpc_namespace(&request).map_err(to_grpc)?;
        let statuses = self
            .store
            .list_statuses(&ns, &request.get_ref().filters)
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(pb::ListStatusesResponse {
            statuses: statuses.into_iter().map(status_to_pb).collect(),
        }))
    }

    type WriteStream = BoxStream<pb::WriteContentResponse>;

    async fn write(
        &self,
        request: Request<Streaming<pb::WriteContentRequest>>,
    ) -> Result<Response<Self::WriteStream>, Status> {
        let ns = grpc_namespace(&request).map_err(to_grpc)?;
        let lease = grpc_lease(&request).map_err(to_grpc)?;
        let incoming = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let store = Arc::clone(&self.store);
        tokio::spawn(async move {
            if let Err(status) = write_session(store, ns, lease, incoming, &tx).await {
                if status.code() != tonic::Code::AlreadyExists {
                    tracing::debug!(error = %status.message(), "content write failed");
                }
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn abort(&self, request: Request<pb::AbortRequest>) -> Result<Response<()>, Status> {
        let ns = grpc_namespace(&request).map_err(to_grpc)?;
        self.store
            .abort(&ns, &request.get_ref().r#ref)
            .await
            .map_err(to_grpc)?;
        Ok(Response::new(()))
    }
}

type Responses = mpsc::Sender<Result<pb::WriteContentResponse, Status>>;

/// Whether blob `digest` is there, now held by the caller's `lease` (the
/// client takes AlreadyExists as written, and an unreferenced blob may be
/// collected at any moment). The store looks and holds in one
/// transaction when asked for a writer expecting that digest; it is asked
/// under a ref of its own, so the ingest under way keeps its bytes should
/// the blob have gone (collected since the caller's look): the upload
/// then goes on where it is. Aborting the ingest first and asking under
/// its ref lost them, and the client's commit failed on an empty ingest.
async fn holds_existing(
    store: &dyn ContentStore,
    ns: &Namespace,
    r#ref: &str,
    digest: &Digest,
    lease: Option<&str>,
) -> bool {
    let probe = format!("{ref}@exists");
    let opened = store
        .writer(
            ns,
            WriterOptions {
                r#ref: probe.clone(),
                total: 0,
                expected: Some(digest.clone()),
                lease: lease.map(str::to_owned),
            },
        )
        .await;
    match opened {
        Err(e) => e.is_already_exists(),
        Ok(w) => {
            let _ = w.close().await;
            let _ = store.abort(ns, &probe).await;
            false
        }
    }
}

/// One `Write` stream: containerd's protocol of STAT / WRITE / COMMIT
/// actions, the first message naming the ref.
async fn write_session(
    store: Arc<dyn ContentStore>,
    ns: Namespace,
    lease: Option<String>,
    mut incoming: Streaming<pb::WriteContentRequest>,
    responses: &Responses,
) -> Result<(), Status> {
    let Some(mut request) = incoming.message().await? else {
        return Ok(());
    };
    if request.r#ref.is_empty() {
        return Err(Status::invalid_argument(
            "first message must have a reference",
        ));
    }
    let r#ref = request.r#ref.clone();
    let mut total = non_negative("total", request.total).map_err(to_grpc)?;
    let mut expected = optional_digest(&request.expected).map_err(to_grpc)?;
    let mut writer: Option<Box<dyn Writer>> = Some(
        store
            .writer(
                &ns,
                WriterOptions {
                    r#ref: r#ref.clone(),
                    total,
                    expected: expected.clone(),
                    lease: lease.clone(),
                },
            )
            .await
            .map_err(to_grpc)?,
    );
    loop {
        let action = pb::WriteAction::try_from(request.action).map_err(|_| {
            Status::invalid_argument(format!("unknown write action {}", request.action))
        })?;
        if let Some(req_expected) = optional_digest(&request.expected).map_err(to_grpc)? {
            // A blob that appeared meanwhile needs no more bytes.
            if writer.is_some()
                && store.info(&ns, &req_expected).await.is_ok()
                && holds_existing(&*store, &ns, &r#ref, &req_expected, lease.as_deref()).await
            {
                if let Some(w) = writer.take() {
                    let _ = w.close().await;
                }
                let _ = store.abort(&ns, &r#ref).await;
                // Asked again under the ingest's own ref, now that the lease
                // holds the blob, the store lets the lease go of that ref.
                if let Ok(w) = store
                    .writer(
                        &ns,
                        WriterOptions {
                            r#ref: r#ref.clone(),
                            total,
                            expected: Some(req_expected.clone()),
                            lease: lease.clone(),
                        },
                    )
                    .await
                {
                    let _ = w.close().await;
                    let _ = store.abort(&ns, &r#ref).await;
                }
                return Err(Status::already_exists(format!(
                    "blob with expected digest {req_expected} exists"
                )));
            }
            expected = Some(req_expected);
        }
        let wr = writer.as_mut().ok_or_else(|| {
            Status::failed_precondition(format!("ingest {ref:?} is already committed"))
        })?;
        let status = wr.status().await.map_err(to_grpc)?;
        let mut response = pb::WriteContentResponse {
            action: request.action,
            offset: i64::try_from(status.offset).unwrap_or(i64::MAX),
            ..Default::default()
        };
        let req_total = non_negative("total", request.total).map_err(to_grpc)?;
        if req_total > 0 {
            total = req_total;
        } else if total == 0 {
            // A resumed ingest remembers its total even when the client
            // does not repeat it.
            total = status.total;
        }
        match action {
            pb::WriteAction::Stat => {
                response.digest = wr.digest().await.map_err(to_grpc)?.to_string();
                response.started_at = Some(to_timestamp(status.started_at));
                response.updated_at = Some(to_timestamp(status.updated_at));
                response.total = i64::try_from(total).unwrap_or(i64::MAX);
            }
            pb::WriteAction::Write | pb::WriteAction::Commit => {
                let offset = non_negative("write offset", request.offset).map_err(to_grpc)?;
                if offset > 0 && offset != status.offset {
                    return Err(Status::out_of_range(format!(
                        "write @{offset} must occur at current offset {} of ingest {ref:?}",
                        status.offset
                    )));
                }
                let mut position = status.offset;
                if offset == 0 && status.offset > 0 {
                    wr.truncate(0).await.map_err(to_grpc)?;
                    position = 0;
                }
                // No bound by `total` here: as containerd's, it is what the
                // client expects, checked at commit. A client appending to
                // content it opened complete (offset = total) writes past it
                // and commits with the larger size.
                if !request.data.is_empty() {
                    wr.write(&request.data).await.map_err(to_grpc)?;
                    position += request.data.len() as u64;
                }
                response.offset = i64::try_from(position).unwrap_or(i64::MAX);
                response.digest = wr.digest().await.map_err(to_grpc)?.to_string();
                if action == pb::WriteAction::Commit {
                    let labels = std::mem::take(&mut request.labels).into_iter().collect();
                    if let Some(w) = writer.take() {
                        w.commit(total, expected.clone(), labels)
                            .await
                            .map_err(to_grpc)?;
                    }
                }
            }
        }
        if responses.send(Ok(response)).await.is_err() {
            break;
        }
        if action == pb::WriteAction::Commit {
            return Ok(());
        }
        match incoming.message().await? {
            Some(next) => request = next,
            None => break,
        }
    }
    if let Some(w) = writer.take() {
        w.close().await.map_err(to_grpc)?;
    }
    Ok(())
}
