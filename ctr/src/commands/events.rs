//! `ctr events`: print events as they happen, one line each, as
//! containerd's ctr does: `<time> <namespace> <topic> <event as JSON>`.

use std::time::SystemTime;

use crated_api::containerd::events as ev;
use crated_core::events::Payload;
use prost::Message as _;
use serde_json::{json, Map, Value};
use time::macros::format_description;
use time::OffsetDateTime;

use crate::client::{user_error, Client};

/// Go's default `time.Time` format in UTC, trailing fraction zeros trimmed:
/// `2026-11-23 00:16:00.123456789 +0000 UTC`.
fn go_time(t: SystemTime) -> String {
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
fn event_json(any: &Payload) -> String {
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
    let mut stream = client
        .services()
        .events
        .subscribe(&filters)
        .await
        .map_err(user_error)?;
    while let Some(envelope) = stream.next().await {
        let envelope = envelope.map_err(user_error)?;
        println!(
            "{} {} {} {}",
            go_time(envelope.timestamp),
            envelope.namespace,
            envelope.topic,
            event_json(&envelope.event)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_like_go() {
        let ts = std::time::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 120_000_000);
        assert_eq!(go_time(ts), "2023-11-14 22:13:20.12 +0000 UTC");
        let ts = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert_eq!(go_time(ts), "2023-11-14 22:13:20 +0000 UTC");
    }

    #[test]
    fn events_like_go_json() {
        let e = ev::NamespaceCreate {
            name: "foo".into(),
            labels: [("a".to_string(), "b".to_string())].into(),
        };
        let any = Payload {
            type_url: "containerd.events.NamespaceCreate".into(),
            value: e.encode_to_vec(),
        };
        assert_eq!(event_json(&any), r#"{"name":"foo","labels":{"a":"b"}}"#);
        let e = ev::NamespaceDelete { name: "foo".into() };
        let any = Payload {
            type_url: "containerd.events.NamespaceDelete".into(),
            value: e.encode_to_vec(),
        };
        assert_eq!(event_json(&any), r#"{"name":"foo"}"#);
    }
}
