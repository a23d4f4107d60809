//! Garbage collection in a live `crated`, driven as a containerd user would:
//! content ingested with Debian's ctr, an image created over gRPC (ctr 1.6
//! has no `images create`), leases, and `--sync` deletes that return once the
//! collector has run.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::blobs::{blob, blob_files};
use common::{debian_ctr, ok, Daemon};
use crated_api::containerd::services::images::v1 as images;
use crated_api::containerd::services::leases::v1 as leases;
use crated_api::containerd::types::Descriptor;
use crated_api::metadata::set_grpc_namespace;
use crated_core::Namespace;

const NS: &str = "gc";

fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    set_grpc_namespace(&mut request, &Namespace::new(NS).unwrap());
    request
}

/// Ingests a fresh blob of `len` bytes with Debian's ctr; returns its digest.
fn ingest(daemon: &Daemon, dir: &Path, name: &str, len: usize, seed: u64) -> String {
    let (file, _) = blob(dir, name, len, seed);
    common::blobs::ingest_file(daemon, NS, &file, name, &[])
}

fn listed(daemon: &Daemon) -> Vec<String> {
    ok(daemon.ctr(&debian_ctr(), &["-n", NS, "content", "ls", "-q"]))
        .lines()
        .map(str::to_owned)
        .collect()
}

fn on_disk(daemon: &Daemon, digest: &str) -> bool {
    let hex = digest.trim_start_matches("sha256:");
    blob_files(daemon)
        .iter()
        .any(|p| p.file_name().is_some_and(|n| n == hex))
}

/// Runs a collection and waits for it: deleting a throw-away lease with
/// `--sync`, as `ctr leases rm --sync` does.
fn collect(daemon: &Daemon) {
    let ctr = debian_ctr();
    ok(daemon.ctr(&ctr, &["-n", NS, "leases", "create", "--id", "trigger"]));
    ok(daemon.ctr(&ctr, &["-n", NS, "leases", "rm", "--sync", "trigger"]));
}

async fn hold(daemon: &Daemon, lease: &str, digest: &str) {
    leases::leases_client::LeasesClient::new(daemon.channel().await)
        .add_resource(request(leases::AddResourceRequest {
            id: lease.into(),
            resource: Some(leases::Resource {
                id: digest.into(),
                r#type: "content".into(),
            }),
        }))
        .await
        .unwrap();
}

#[tokio::test]
async fn collector_reclaims_exactly_what_nothing_references() {
    let daemon = tokio::task::spawn_blocking(Daemon::start).await.unwrap();
    let ctr = debian_ctr();
    let dir = tempfile::tempdir().unwrap();

    // Seeds are odd: the generator starts from `seed | 1`.
    // An image: manifest → config and layer, tied by gc labels.
    let layer = ingest(&daemon, dir.path(), "layer", 3 << 20, 13);
    let config = ingest(&daemon, dir.path(), "config", 700, 15);
    let manifest = ingest(&daemon, dir.path(), "manifest", 500, 3);
    ok(daemon.ctr(
        &ctr,
        &[
            "-n",
            NS,
            "content",
            "label",
            &manifest,
            &format!("containerd.io/gc.ref.content.config={config}"),
            &format!("containerd.io/gc.ref.content.l.0={layer}"),
        ],
    ));
    images::images_client::ImagesClient::new(daemon.channel().await)
        .create(request(images::CreateImageRequest {
            image: Some(images::Image {
                name: "example.com/gc:1".into(),
                target: Some(Descriptor {
                    media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                    digest: manifest.clone(),
                    size: 500,
                    annotations: Default::default(),
                }),
                ..Default::default()
            }),
            source_date_epoch: None,
        }))
        .await
        .unwrap();

    // A blob nothing references, one a lease holds, one an expiring lease
    // holds, one rooted by label.
    let orphan = ingest(&daemon, dir.path(), "orphan", 1 << 20, 5);
    let leased = ingest(&daemon, dir.path(), "leased", 4096, 7);
    let expiring = ingest(&daemon, dir.path(), "expiring", 4096, 9);
    let rooted = ingest(&daemon, dir.path(), "rooted", 4096, 11);
    ok(daemon.ctr(
        &ctr,
        &[
            "-n",
            NS,
            "content",
            "label",
            &rooted,
            "containerd.io/gc.root=yes",
        ],
    ));
    ok(daemon.ctr(&ctr, &["-n", NS, "leases", "create", "--id", "hold"]));
    hold(&daemon, "hold", &leased).await;
    // Long enough that the first collection runs before it lapses even on a
    // loaded machine (other suites run in parallel).
    let brief = Duration::from_secs(5);
    ok(daemon.ctr(
        &ctr,
        &[
            "-n",
            NS,
            "leases",
            "create",
            "--id",
            "brief",
            "--expires",
            "5s",
        ],
    ));
    // The lease was made before this: it has lapsed 5 s after it.
    let brief_from = std::time::Instant::now();
    hold(&daemon, "brief", &expiring).await;

    collect(&daemon);
    let now = listed(&daemon);
    assert!(!now.contains(&orphan), "orphan collected: {now:?}");
    assert!(!on_disk(&daemon, &orphan), "orphan bytes reclaimed");
    for kept in [&manifest, &config, &layer, &leased, &expiring, &rooted] {
        assert!(now.contains(kept), "{kept} kept: {now:?}");
        assert!(on_disk(&daemon, kept));
    }

    // The expiring lease lapses; the next collection removes it and what
    // only it held.
    tokio::time::sleep((brief + Duration::from_millis(200)).saturating_sub(brief_from.elapsed()))
        .await;
    collect(&daemon);
    assert!(!listed(&daemon).contains(&expiring));
    assert!(!on_disk(&daemon, &expiring));
    let lease_ids = ok(daemon.ctr(&ctr, &["-n", NS, "leases", "ls", "-q"]));
    assert_eq!(lease_ids.trim(), "hold", "the expired lease is gone");

    // Deleting the lease with --sync frees its blob before the reply.
    ok(daemon.ctr(&ctr, &["-n", NS, "leases", "rm", "--sync", "hold"]));
    assert!(!listed(&daemon).contains(&leased));
    assert!(!on_disk(&daemon, &leased));

    // Removing the image with --sync takes its whole chain.
    ok(daemon.ctr(
        &ctr,
        &["-n", NS, "images", "rm", "--sync", "example.com/gc:1"],
    ));
    let now = listed(&daemon);
    assert_eq!(now, [rooted], "only the rooted blob is left");
    for gone in [&manifest, &config, &layer] {
        assert!(!on_disk(&daemon, gone), "{gone} reclaimed");
    }
    assert_eq!(blob_files(&daemon).len(), 1);
}

#[tokio::test]
async fn a_blob_being_ingested_under_a_lease_survives_collections() {
    let daemon = tokio::task::spawn_blocking(Daemon::start).await.unwrap();
    let ctr = debian_ctr();
    let dir = tempfile::tempdir().unwrap();
    // A writer under a lease, as a pull writes layers: the ingest and then
    // the blob are held while collections run around them.
    ok(daemon.ctr(&ctr, &["-n", NS, "leases", "create", "--id", "pull"]));
    let channel = daemon.channel().await;
    let proxy = crated_api::proxy::content::ContentProxy::new(channel).with_lease("pull");
    let (file, digest) = blob(dir.path(), "layer", 1 << 20, 9);
    let data = std::fs::read(&file).unwrap();
    let ns = Namespace::new(NS).unwrap();
    use crated_core::content::{ContentStore as _, WriterOptions};
    let mut w = proxy
        .writer(
            &ns,
            WriterOptions {
                r#ref: "layer-ref".into(),
                total: data.len() as u64,
                expected: Some(crated_core::digest::Digest::parse(&digest).unwrap()),
                lease: None,
            },
        )
        .await
        .unwrap();
    w.write(&data[..4096]).await.unwrap();
    collect(&daemon);
    w.write(&data[4096..]).await.unwrap();
    w.commit(data.len() as u64, None, Default::default())
        .await
        .unwrap();
    collect(&daemon);
    assert_eq!(listed(&daemon), [digest]);
    let held = ok(daemon.ctr(&ctr, &["-n", NS, "leases", "ls"]));
    assert!(held.contains("pull"), "{held}");

    // A write naming a lease that does not exist is refused up front.
    let bad =
        crated_api::proxy::content::ContentProxy::new(daemon.channel().await).with_lease("nosuch");
    let err = match bad
        .writer(
            &ns,
            WriterOptions {
                r#ref: "other".into(),
                ..Default::default()
            },
        )
        .await
    {
        Ok(_) => panic!("writer under a missing lease was accepted"),
        Err(e) => e,
    };
    assert!(err.is_not_found(), "{err}");
    assert!(err.message().contains("nosuch"), "{err}");
}

/// A crash leaves snapshot files behind: a `new-*` tree mid-prepare, an
/// `rm-*` tree mid-remove, a directory whose record never landed. The
/// collection after start-up, and every collection, removes them and
/// nothing a snapshot owns.
#[tokio::test]
async fn snapshot_files_a_crash_left_go_at_start_up_and_with_each_collection() {
    let mut daemon = tokio::task::spawn_blocking(Daemon::start).await.unwrap();
    let ctr = debian_ctr();
    ok(daemon.ctr(&ctr, &["-n", NS, "snapshots", "prepare", "kept", ""]));
    let snapshots = daemon
        .dir
        .path()
        .join("root/io.containerd.snapshotter.v1.overlayfs/snapshots");
    let owned: Vec<_> = std::fs::read_dir(&snapshots)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(owned.len(), 1, "{owned:?}");
    let plant = || {
        for name in ["new-9001", "rm-9002", "9003"] {
            let fs = snapshots.join(name).join("fs/usr/bin");
            std::fs::create_dir_all(&fs).unwrap();
            std::fs::write(fs.join("leftover"), b"x").unwrap();
        }
    };
    let left = || -> Vec<_> {
        let mut names: Vec<_> = std::fs::read_dir(&snapshots)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };

    plant();
    collect(&daemon);
    assert_eq!(left(), owned, "a collection left crash leftovers");

    daemon.stop_with(nix::sys::signal::Signal::SIGKILL);
    plant();
    daemon.spawn(&[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while left() != owned {
        assert!(
            std::time::Instant::now() < deadline,
            "start-up left crash leftovers: {:?}",
            left()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let listed = ok(daemon.ctr(&ctr, &["-n", NS, "snapshots", "ls"]));
    assert!(listed.contains("kept"), "{listed}");
    ok(daemon.ctr(&ctr, &["-n", NS, "snapshots", "rm", "kept"]));
}
