//! What containerd 1.7 added to the 1.6 API, driven by containerd 1.7's
//! ctr (`ctr-1.7`): deprecation warnings for what a client runs, and image
//! records dated by `SOURCE_DATE_EPOCH`. (Its transfer service, snapshot
//! events and reproducible layers have tests beside their 1.6 kin:
//! `transfer.rs`, `events.rs`, `snapshots.rs`.)

#![allow(clippy::unwrap_used)]

mod common;

use common::{ctr17, debian_ctr, ok, registry_with_busybox, Daemon};
use crated_api::containerd::services::images::v1 as images;

/// containerd 1.7's ctr run with `SOURCE_DATE_EPOCH` set to `epoch`.
fn ctr17_at(daemon: &Daemon, epoch: u64, args: &[&str]) -> String {
    let epoch = epoch.to_string();
    ok(daemon.ctr_with_env(&ctr17(), &[("SOURCE_DATE_EPOCH", &epoch)], args))
}

/// The created and updated times of image `name` (seconds).
async fn record_times(daemon: &Daemon, name: &str) -> (i64, i64) {
    let mut client = images::images_client::ImagesClient::new(daemon.channel().await);
    let mut request = tonic::Request::new(images::GetImageRequest { name: name.into() });
    request
        .metadata_mut()
        .insert("containerd-namespace", "default".parse().unwrap());
    let image = client
        .get(request)
        .await
        .unwrap()
        .into_inner()
        .image
        .unwrap();
    (
        image.created_at.unwrap().seconds,
        image.updated_at.unwrap().seconds,
    )
}

/// An image record written with `SOURCE_DATE_EPOCH` (containerd 1.7's
/// ctr sends it with each Create and Update) is dated then: created and
/// updated at the epoch, and a later update moves only its update time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_records_written_with_source_date_epoch_are_dated_then() {
    let (_registry, reference) = registry_with_busybox().await;
    let daemon = Daemon::start();
    ok(daemon.ctr(
        &debian_ctr(),
        &["images", "pull", "--plain-http", &reference],
    ));
    let (created, _) = record_times(&daemon, &reference).await;
    assert!(
        created > 1_700_000_000,
        "a record without an epoch is dated now: {created}"
    );

    let copy = format!("{reference}-dated");
    ctr17_at(
        &daemon,
        1_000_000_000,
        &["images", "tag", &reference, &copy],
    );
    assert_eq!(
        record_times(&daemon, &copy).await,
        (1_000_000_000, 1_000_000_000)
    );
    ctr17_at(
        &daemon,
        1_000_000_500,
        &["images", "label", &copy, "stage=built"],
    );
    assert_eq!(
        record_times(&daemon, &copy).await,
        (1_000_000_000, 1_000_000_500)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_of_the_runc_v1_runtime_is_listed_as_deprecated() {
    let ctr17 = ctr17();
    let debian = debian_ctr();
    let (_registry, reference) = registry_with_busybox().await;
    let daemon = Daemon::start();
    ok(daemon.ctr(&debian, &["images", "pull", "--plain-http", &reference]));
    assert_eq!(ok(daemon.ctr(&ctr17, &["deprecations", "list"])).trim(), "");

    let out = ok(daemon.ctr(
        &debian,
        &[
            "run",
            "--rm",
            "--runtime",
            "io.containerd.runc.v1",
            &reference,
            "old-shim",
            "echo",
            "through runc.v1",
        ],
    ));
    assert_eq!(out.trim(), "through runc.v1");
    let listed = ok(daemon.ctr(&ctr17, &["deprecations", "list"]));
    let row = listed
        .lines()
        .find(|l| l.starts_with("io.containerd.deprecation/runtime-runc-v1"))
        .unwrap_or_else(|| panic!("not listed:\n{listed}"));
    assert!(row.contains("io.containerd.runc.v2"), "{row}");
}
