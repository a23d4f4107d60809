//! The events exchange: every mutation publishes an envelope, every
//! subscriber receives those its filters match.
//!
//! Payloads stay encoded (a protobuf `Any`: type URL and bytes) so that this
//! crate needs no wire types; `crated-api` builds them from containerd's
//! event messages (`containerd.events.NamespaceCreate`, …).

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::broadcast;

use crate::filters::{self, Adaptor, Filter};
use crate::{identifiers, Error, Namespace, Result};

/// How many envelopes a slow subscriber may lag behind before it is told it
/// missed some. The channel fills every slot when it is made; they hold an
/// `Arc` each (40 bytes with the slot's lock), not a whole envelope (136):
/// 40 KB resident from start instead of 139 KB.
const CAPACITY: usize = 1024;

/// An encoded event payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The payload's type, e.g. `containerd.events.NamespaceCreate`.
    pub type_url: String,
    /// The encoded message.
    pub value: Vec<u8>,
}

/// One event as it travels: when, where, what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// When it was published.
    pub timestamp: SystemTime,
    /// The namespace it happened in.
    pub namespace: String,
    /// Its topic, e.g. `/namespaces/create`.
    pub topic: String,
    /// The event itself.
    pub event: Payload,
}

struct Fields<'a>(&'a Envelope);

impl Adaptor for Fields<'_> {
    fn field(&self, path: &[&str]) -> Option<String> {
        match path {
            ["namespace"] => Some(self.0.namespace.clone()).filter(|s| !s.is_empty()),
            ["topic"] => Some(self.0.topic.clone()).filter(|s| !s.is_empty()),
            _ => None,
        }
    }
}

/// Checks a topic as containerd does: `/` then identifier components.
pub fn validate_topic(topic: &str) -> Result<()> {
    let invalid = |why: &str| Error::invalid_argument(format!("envelope topic {topic:?} {why}"));
    let rest = topic.strip_prefix('/').ok_or_else(|| {
        if topic.is_empty() {
            invalid("must not be empty")
        } else {
            invalid("must start with '/'")
        }
    })?;
    if rest.is_empty() {
        return Err(invalid("must have at least one component"));
    }
    for component in rest.split('/') {
        identifiers::validate(component).map_err(|e| {
            invalid(&format!(
                "failed validation on component {component:?}: {}",
                e.message()
            ))
        })?;
    }
    Ok(())
}

/// The exchange. Cheap to clone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use crated_core::events::{Exchange, Payload};
/// use crated_core::Namespace;
///
/// let exchange = Exchange::new();
/// let mut sub = exchange.subscribe(&[r#"topic=="/test""#.to_string()]).unwrap();
/// let ns = Namespace::new("default").unwrap();
/// let payload = Payload { type_url: "x".into(), value: vec![] };
/// exchange.publish(&ns, "/test", payload).unwrap();
/// assert_eq!(sub.next().await.unwrap().unwrap().topic, "/test");
/// # }
/// ```
#[derive(Clone)]
pub struct Exchange {
    tx: broadcast::Sender<Arc<Envelope>>,
}

impl Default for Exchange {
    fn default() -> Self {
        Self::new()
    }
}

impl Exchange {
    /// A new exchange with no subscribers.
    pub fn new() -> Self {
        Self {
            tx: broadcast::channel(CAPACITY).0,
        }
    }

    /// Publishes an event of `namespace` on `topic`, stamped now.
    pub fn publish(&self, namespace: &Namespace, topic: &str, event: Payload) -> Result<()> {
        validate_topic(topic)?;
        self.send(Envelope {
            timestamp: SystemTime::now(),
            namespace: namespace.to_string(),
            topic: topic.to_owned(),
            event,
        });
        Ok(())
    }

    /// Forwards an envelope published elsewhere (a shim), keeping its time.
    pub fn forward(&self, envelope: Envelope) -> Result<()> {
        identifiers::validate(&envelope.namespace)
            .map_err(|e| e.context("event envelope has invalid namespace"))?;
        validate_topic(&envelope.topic)?;
        self.send(envelope);
        Ok(())
    }

    fn send(&self, envelope: Envelope) {
        // No subscribers is not an error: nobody is listening.
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(Arc::new(envelope));
        }
    }

    /// Subscribes to envelopes matching any of `filters` (fields
    /// `namespace`, `topic`); none = everything.
    pub fn subscribe(&self, filters: &[String]) -> Result<Subscription> {
        let filter = filters::parse_all(filters)
            .map_err(|e| e.context("failed parsing subscription filters"))?;
        Ok(Subscription {
            rx: self.tx.subscribe(),
            filter,
        })
    }
}

/// A subscription's stream of envelopes.
pub struct Subscription {
    rx: broadcast::Receiver<Arc<Envelope>>,
    filter: Filter,
}

impl Subscription {
    /// The next matching envelope; `None` once the exchange is gone. A
    /// subscriber that fell more than the buffer behind gets Unavailable
    /// naming how many it missed, then continues.
    pub async fn next(&mut self) -> Option<Result<Envelope>> {
        loop {
            match self.rx.recv().await {
                Ok(envelope) if self.filter.matches(&Fields(&envelope)) => {
                    return Some(Ok(Arc::unwrap_or_clone(envelope)))
                }
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    return Some(Err(Error::unavailable(format!(
                        "event subscriber fell behind and missed {n} events"
                    ))))
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// A stream of envelopes from a subscription.
#[async_trait::async_trait]
pub trait EventStream: Send {
    /// The next envelope; `None` once the publisher is gone. A subscriber
    /// that fell too far behind gets Unavailable naming how many it
    /// missed, then continues.
    async fn next(&mut self) -> Option<Result<Envelope>>;
}

#[async_trait::async_trait]
impl EventStream for Subscription {
    async fn next(&mut self) -> Option<Result<Envelope>> {
        Subscription::next(self).await
    }
}

/// The events service: containerd's `Events`, over plain types.
#[async_trait::async_trait]
pub trait Events: Send + Sync {
    /// Publishes `event` on `topic` in `ns`, stamped now.
    async fn publish(&self, ns: &Namespace, topic: &str, event: Payload) -> Result<()>;
    /// Forwards an envelope published elsewhere, keeping its time.
    async fn forward(&self, envelope: Envelope) -> Result<()>;
    /// Envelopes matching any of `filters` (fields `namespace`, `topic`);
    /// none = all.
    async fn subscribe(&self, filters: &[String]) -> Result<Box<dyn EventStream>>;
}

#[async_trait::async_trait]
impl Events for Exchange {
    async fn publish(&self, ns: &Namespace, topic: &str, event: Payload) -> Result<()> {
        Exchange::publish(self, ns, topic, event)
    }

    async fn forward(&self, envelope: Envelope) -> Result<()> {
        Exchange::forward(self, envelope)
    }

    async fn subscribe(&self, filters: &[String]) -> Result<Box<dyn EventStream>> {
        Ok(Box::new(Exchange::subscribe(self, filters)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload() -> Payload {
        Payload {
            type_url: "t".into(),
            value: vec![1],
        }
    }

    #[tokio::test]
    async fn filters_on_namespace_and_topic() {
        let ex = Exchange::new();
        let mut only_b = ex.subscribe(&["namespace==b".into()]).unwrap();
        let mut creates = ex
            .subscribe(&["topic~=create$".into(), r#"topic=="/x/y""#.into()])
            .unwrap();
        let a = Namespace::new("a").unwrap();
        let b = Namespace::new("b").unwrap();
        ex.publish(&a, "/namespaces/create", payload()).unwrap();
        ex.publish(&b, "/namespaces/delete", payload()).unwrap();
        ex.publish(&a, "/x/y", payload()).unwrap();
        assert_eq!(
            only_b.next().await.unwrap().unwrap().topic,
            "/namespaces/delete"
        );
        assert_eq!(
            creates.next().await.unwrap().unwrap().topic,
            "/namespaces/create"
        );
        assert_eq!(creates.next().await.unwrap().unwrap().topic, "/x/y");
    }

    #[test]
    fn topics_are_validated() {
        for bad in ["", "x", "/", "/a//b", "/a/", "/A b"] {
            assert!(validate_topic(bad).is_err(), "{bad:?}");
        }
        assert!(validate_topic("/tasks/exit").is_ok());
        assert!(Exchange::new().subscribe(&["topic==".into()]).is_err());
    }
}
