//! The `Stream*` list calls of cri-api v0.36 (KEP 5825, the kubelet's
//! `CRIListStreaming` gate): a list answered as a stream of batches, so a
//! node with many pods, containers or images never meets gRPC's message
//! size limit. Each batch holds at least one item, every item goes out
//! exactly once and in the order the list gives, and an empty list is a
//! stream that ends at once.

use std::pin::Pin;

use futures::Stream;
use prost::Message;
use tonic::Status;

/// Encoded bytes a batch stays within, unless a single item is larger
/// (it then goes alone): a sixteenth of the 16 MiB the kubelet's client
/// accepts by default.
pub(crate) const BATCH_BYTES: usize = 1 << 20;

/// A stream of replies, as tonic's server-streaming handlers return it.
pub(crate) type Replies<R> = Pin<Box<dyn Stream<Item = Result<R, Status>> + Send>>;

/// `items` cut, in order, into batches of at most `limit` encoded bytes
/// as the repeated field of a reply holds them.
pub(crate) fn split<T: Message>(items: Vec<T>, limit: usize) -> Vec<Vec<T>> {
    let mut batches = Vec::new();
    let mut batch = Vec::new();
    let mut size = 0;
    for item in items {
        // An element of a repeated message field: a one-byte tag (field
        // numbers below 16), its length, then its bytes.
        let len = item.encoded_len();
        let add = 1 + prost::length_delimiter_len(len) + len;
        if !batch.is_empty() && size + add > limit {
            batches.push(std::mem::take(&mut batch));
            size = 0;
        }
        size += add;
        batch.push(item);
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

/// `items` as a stream of replies, each made by `wrap` from one batch.
pub(crate) fn stream<T, R>(items: Vec<T>, wrap: fn(Vec<T>) -> R) -> Replies<R>
where
    T: Message,
    R: Send + 'static,
{
    let replies: Vec<Result<R, Status>> = split(items, BATCH_BYTES)
        .into_iter()
        .map(|batch| Ok(wrap(batch)))
        .collect();
    Box::pin(tokio_stream::iter(replies))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::runtime::v1 as pb;

    fn sandbox(id: &str, label_bytes: usize) -> pb::PodSandbox {
        pb::PodSandbox {
            id: id.to_owned(),
            labels: [("big".to_owned(), "x".repeat(label_bytes))].into(),
            ..Default::default()
        }
    }

    #[test]
    fn batches_keep_every_item_once_in_order_within_the_limit() {
        let items: Vec<_> = (0..50).map(|i| sandbox(&format!("p{i}"), 300)).collect();
        let limit = 2_000;
        let batches = split(items.clone(), limit);
        assert!(batches.len() > 1, "fifty items of ~300 bytes need several");
        for batch in &batches {
            assert!(!batch.is_empty());
            let reply = pb::StreamPodSandboxesResponse {
                pod_sandboxes: batch.clone(),
            };
            assert!(
                reply.encoded_len() <= limit,
                "{} bytes in one reply",
                reply.encoded_len()
            );
        }
        let joined: Vec<_> = batches.into_iter().flatten().collect();
        assert_eq!(joined, items);
    }

    #[test]
    fn an_item_over_the_limit_goes_alone_and_nothing_makes_no_batch() {
        let items = vec![sandbox("a", 10), sandbox("huge", 5_000), sandbox("b", 10)];
        let batches = split(items, 1_000);
        let ids: Vec<Vec<&str>> = batches
            .iter()
            .map(|b| b.iter().map(|s| s.id.as_str()).collect())
            .collect();
        assert_eq!(ids, [vec!["a"], vec!["huge"], vec!["b"]]);
        assert!(split(Vec::<pb::PodSandbox>::new(), 1_000).is_empty());
    }
}
