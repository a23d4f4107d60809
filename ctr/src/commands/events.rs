//! `ctr events`: print events as they happen, one line each, as
//! containerd's ctr does: `<time> <namespace> <topic> <event as JSON>`.

use crated_api::containerd::events as ev;
use crated_api::containerd::services::events::v1 as pb;
use prost::Message as _;
use serde_json::{json, Map, Value};
use time::macros::format_description;
use time::OffsetDateTime;

use crate::client::{status_error, Client};

/// Go's default `time.Time` format in UTC, trailing fraction zeros trimmed:
/// `2026-11-23 00:16:00.123456789 +0000 UTC`.
fn go_time(ts: Option<&prost_types::Timestamp>) -> String {
    let t = ts
        .map(crated_api::convert::to_system_time)
        .unwrap_or(std::time::UNIX_EPOCH);
    let t = OffsetDateTime::from(t);
    let base = t
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]"
        ))
        .unwrap_or_default();
    let nanos = format!("{:09}", t.nanosecond());
    let nanos = nanos.trim_end_matches('0');
    if nanos.is_empty() {
        format!("{base} +0000 UTC")
    } else {
        format!("{base}.{nanos} +0000 UTC")
    }
}

/// A map field as Go's encoding/json writes it (omitted when empty).
fn put_map(
    obj: &mut Map<String, Value>,
    key: &str,
    map: &std::collections::HashMap<String, String>,
) {
    if !map.is_empty() {
        let sorted: std::collections::BTreeMap<_, _> = map.iter().collect();
        obj.insert(key.into(), json!(sorted));
    }
}

fn put_str(obj: &mut Map<String, Value>, key: &str, value: &str) {
    if !value.is_empty() {
        obj.insert(key.into(), json!(value));
    }
}

/// The event as the JSON containerd's ctr prints (the Go struct with
/// `omitempty` fields); unknown types print their type URL.
fn event_json(any: Option<&prost_types::Any>) -> String {
    let Some(any) = any else { return String::new() };
    let mut obj = Map::new();
    let decoded = match any.type_url.as_str() {
        "containerd.events.NamespaceCreate" => {
            ev::NamespaceCreate::decode(&any.value[..]).map(|e| {
                put_str(&mut obj, "name", &e.name);
                put_map(&mut obj, "labels", &e.labels);
            })
        }
        "containerd.events.NamespaceUpdate" => {
            ev::NamespaceUpdate::decode(&any.value[..]).map(|e| {
                put_str(&mut obj, "name", &e.name);
                put_map(&mut obj, "labels", &e.labels);
            })
        }
        "containerd.events.NamespaceDelete" => {
            ev::NamespaceDelete::decode(&any.value[..]).map(|e| put_str(&mut obj, "name", &e.name))
        }
        "containerd.events.ContentDelete" => ev::ContentDelete::decode(&any.value[..])
            .map(|e| put_str(&mut obj, "digest", &e.digest)),
        other => return format!("{{\"type_url\":{}}}", json!(other)),
    };
    match decoded {
        Ok(()) => Value::Object(obj).to_string(),
        Err(e) => format!(
            "{{\"error\":{}}}",
            json!(format!("decode {}: {e}", any.type_url))
        ),
    }
}

/// Runs `ctr events [filters…]` until interrupted or the daemon goes away.
pub async fn run(client: Client, filters: Vec<String>) -> anyhow::Result<()> {
    let mut service = pb::events_client::EventsClient::new(client.channel.clone());
    let mut stream = service
        .subscribe(client.request(pb::SubscribeRequest { filters }))
        .await
        .map_err(status_error)?
        .into_inner();
    while let Some(envelope) = stream.message().await.map_err(status_error)? {
        println!(
            "{} {} {} {}",
            go_time(envelope.timestamp.as_ref()),
            envelope.namespace,
            envelope.topic,
            event_json(envelope.event.as_ref())
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_like_go() {
        let ts = prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 120_000_000,
        };
        assert_eq!(go_time(Some(&ts)), "2023-11-14 22:13:20.12 +0000 UTC");
        let ts = prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        };
        assert_eq!(go_time(Some(&ts)), "2023-11-14 22:13:20 +0000 UTC");
    }

    #[test]
    fn events_like_go_json() {
        let e = ev::NamespaceCreate {
            name: "foo".into(),
            labels: [("a".to_string(), "b".to_string())].into(),
        };
        let any = prost_types::Any {
            type_url: "containerd.events.NamespaceCreate".into(),
            value: e.encode_to_vec(),
        };
        assert_eq!(
            event_json(Some(&any)),
            r#"{"name":"foo","labels":{"a":"b"}}"#
        );
        let e = ev::NamespaceDelete { name: "foo".into() };
        let any = prost_types::Any {
            type_url: "containerd.events.NamespaceDelete".into(),
            value: e.encode_to_vec(),
        };
        assert_eq!(event_json(Some(&any)), r#"{"name":"foo"}"#);
    }
}
