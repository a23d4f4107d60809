//! `io.containerd.event.v1 exchange`, and how services publish to it.

use crated_core::events::Exchange;
use crated_core::Namespace;
use crated_plugin::{types, Plugin, Registration};

/// The exchange every service publishes to and subscribers read.
pub fn registration() -> Registration {
    Registration::new(types::EVENT, "exchange", |_| async {
        Ok(Plugin::new(Exchange::new()))
    })
}

/// Publishes `event` under containerd's type name `type_url`, logging
/// instead of failing: the mutation it reports is already durable, and a
/// bad topic is a bug the tests catch.
pub(crate) fn publish<M: prost::Message>(
    exchange: &Exchange,
    ns: &Namespace,
    topic: &str,
    type_url: &str,
    event: &M,
) {
    let payload = crated_api::services::events::payload(type_url, event);
    if let Err(err) = exchange.publish(ns, topic, payload) {
        tracing::warn!(topic, error = %err, "publish event");
    }
}
