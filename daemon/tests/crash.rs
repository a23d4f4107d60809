//! Crash safety: `crated` killed with SIGKILL at a random moment while a
//! client creates 1,000 containers loses no acknowledged create and leaves
//! no half-written record.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::Daemon;
use crated_api::containerd::services::containers::v1 as pb;
use crated_api::metadata::set_grpc_namespace;
use crated_core::Namespace;
use tonic::transport::Channel;

const TOTAL: usize = 1_000;
const CLIENTS: usize = 4;

fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    set_grpc_namespace(&mut request, &Namespace::new("crash").unwrap());
    request
}

/// The container the client sends as `id`: every field derived from the id,
/// so a record read back can be checked whole.
fn container(id: &str) -> pb::Container {
    let spec = format!(r#"{{"ociVersion":"1.0.2","hostname":"{id}","process":{{"args":["sh"]}}}}"#);
    pb::Container {
        id: id.into(),
        labels: [
            ("owner".to_string(), id.to_string()),
            ("batch".into(), "crash".into()),
        ]
        .into_iter()
        .collect(),
        image: format!("example.com/{id}:latest"),
        runtime: Some(pb::container::Runtime {
            name: "io.containerd.runc.v2".into(),
            options: None,
        }),
        spec: Some(prost_types::Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
            value: spec.into_bytes(),
        }),
        snapshotter: "overlayfs".into(),
        snapshot_key: format!("{id}-snapshot"),
        ..Default::default()
    }
}

/// Creates `ids` in order until one fails; returns those acknowledged.
async fn create_all(channel: Channel, ids: Vec<String>, acked: Arc<AtomicUsize>) -> Vec<String> {
    let mut client = pb::containers_client::ContainersClient::new(channel);
    let mut done = Vec::new();
    for id in ids {
        let sent = client
            .create(request(pb::CreateContainerRequest {
                container: Some(container(&id)),
            }))
            .await;
        match sent {
            Ok(_) => {
                done.push(id);
                acked.fetch_add(1, Ordering::SeqCst);
            }
            Err(_) => break,
        }
    }
    done
}

/// Everything the daemon lists, by id.
async fn listed(channel: Channel) -> BTreeMap<String, pb::Container> {
    pb::containers_client::ContainersClient::new(channel)
        .list(request(pb::ListContainersRequest { filters: vec![] }))
        .await
        .unwrap()
        .into_inner()
        .containers
        .into_iter()
        .map(|c| (c.id.clone(), c))
        .collect()
}

fn assert_whole(found: &pb::Container) {
    let want = container(&found.id);
    assert_eq!(found.labels, want.labels, "{}", found.id);
    assert_eq!(found.image, want.image, "{}", found.id);
    assert_eq!(found.runtime, want.runtime, "{}", found.id);
    assert_eq!(found.spec, want.spec, "{}", found.id);
    assert_eq!(
        (found.snapshotter.as_str(), found.snapshot_key.as_str()),
        (want.snapshotter.as_str(), want.snapshot_key.as_str()),
        "{}",
        found.id
    );
    assert!(found.created_at.is_some() && found.updated_at.is_some());
}

#[test]
fn sigkill_during_1000_creates_loses_no_acknowledged_container() {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as usize;
    // Kill after a random number of acknowledgements, so the kill lands
    // mid-stream with writes in flight; the seed is printed to replay it.
    let kill_after = 1 + seed % (TOTAL - 2 * CLIENTS);
    println!("seed {seed}: SIGKILL after {kill_after} acknowledged creates");

    let mut daemon = Daemon::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let channel = runtime.block_on(daemon.channel());
    let acked = Arc::new(AtomicUsize::new(0));
    let ids: Vec<String> = (0..TOTAL).map(|i| format!("c{i:04}")).collect();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|k| {
            let mine: Vec<String> = ids.iter().skip(k).step_by(CLIENTS).cloned().collect();
            runtime.spawn(create_all(channel.clone(), mine, Arc::clone(&acked)))
        })
        .collect();

    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.load(Ordering::SeqCst) < kill_after {
        assert!(
            Instant::now() < deadline,
            "creates stalled:\n{}",
            daemon.logs()
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    daemon.stop_with(nix::sys::signal::Signal::SIGKILL);
    let acknowledged: BTreeSet<String> = clients
        .into_iter()
        .flat_map(|c| runtime.block_on(c).unwrap())
        .collect();
    assert!(acknowledged.len() >= kill_after);
    assert!(
        acknowledged.len() < TOTAL,
        "the kill should land before all {TOTAL} creates finish"
    );

    daemon.spawn(&[]);
    let channel = runtime.block_on(daemon.channel());
    let found = runtime.block_on(listed(channel.clone()));
    for id in &acknowledged {
        assert!(
            found.contains_key(id),
            "acknowledged {id} lost after SIGKILL"
        );
    }
    let attempted: BTreeSet<&String> = ids.iter().collect();
    for (id, c) in &found {
        assert!(attempted.contains(id), "unknown record {id}");
        assert_whole(c);
    }
    // At most one create per client was in flight at the kill.
    assert!(found.len() <= acknowledged.len() + CLIENTS);
    println!(
        "{} acknowledged, {} present after restart",
        acknowledged.len(),
        found.len()
    );

    // The database is fully usable: the rest can be created now.
    let rest: Vec<String> = ids
        .iter()
        .filter(|id| !found.contains_key(*id))
        .cloned()
        .collect();
    let remaining = rest.len();
    let created = runtime.block_on(create_all(
        channel.clone(),
        rest,
        Arc::new(AtomicUsize::new(0)),
    ));
    assert_eq!(created.len(), remaining);
    let all = runtime.block_on(listed(channel));
    assert_eq!(all.len(), TOTAL);
}
