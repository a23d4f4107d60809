//! Events: mutations publish, `ctr events` subscribers see them.

// Helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{debian_ctr, ok, workspace_bin, Daemon};
use crated_api::containerd::services::events::v1 as pb;

/// A running `ctr events` whose lines arrive on a channel.
struct Watcher {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watcher {
    fn start(daemon: &Daemon, ctr: &Path, filters: &[&str]) -> Self {
        let mut child = Command::new(ctr)
            .arg("--address")
            .arg(&daemon.address)
            .arg("events")
            .args(filters)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Watcher { child, lines }
    }

    /// The next line without its timestamp (`<date> <time> <zone offset> <zone>`).
    fn next(&self) -> String {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("an event within 10s");
        line.splitn(5, ' ').nth(4).unwrap_or_default().to_owned()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until a subscription is registered: runs `probe` (ctr arguments
/// that cause an event the watcher's filters match) until the watcher sees
/// one, then drains what the probes caused.
fn sync(daemon: &Daemon, watcher: &Watcher, probe: &[&[&str]]) {
    let ctr = workspace_bin("ctr");
    for _ in 0..100 {
        for command in probe {
            ok(daemon.ctr(&ctr, command));
        }
        if watcher
            .lines
            .recv_timeout(Duration::from_millis(100))
            .is_ok()
        {
            while watcher
                .lines
                .recv_timeout(Duration::from_millis(300))
                .is_ok()
            {}
            return;
        }
    }
    panic!("ctr events never saw a probe event");
}

const PROBE: &[&[&str]] = &[&["-n", "probe", "namespaces", "label", "probe", "x=1"]];

#[test]
fn namespace_mutations_reach_both_ctrs_events() {
    let daemon = Daemon::start();
    let theirs = Watcher::start(&daemon, &debian_ctr(), &[]);
    let ours = Watcher::start(&daemon, &workspace_bin("ctr"), &[]);
    sync(&daemon, &theirs, PROBE);
    sync(&daemon, &ours, PROBE);
    // The probes' events may still be queued for one watcher: drain both.
    while theirs
        .lines
        .recv_timeout(Duration::from_millis(300))
        .is_ok()
    {}
    while ours.lines.recv_timeout(Duration::from_millis(300)).is_ok() {}
    let ctr = debian_ctr();
    ok(daemon.ctr(&ctr, &["namespaces", "create", "evt", "a=b"]));
    ok(daemon.ctr(&ctr, &["namespaces", "label", "evt", "c=d"]));
    ok(daemon.ctr(&ctr, &["namespaces", "rm", "evt"]));
    let expected = [
        r#"default /namespaces/create {"name":"evt","labels":{"a":"b"}}"#,
        r#"default /namespaces/update {"name":"evt","labels":{"a":"b","c":"d"}}"#,
        r#"default /namespaces/delete {"name":"evt"}"#,
    ];
    for want in expected {
        assert_eq!(theirs.next(), want);
        assert_eq!(ours.next(), want);
    }
}

#[test]
fn subscriptions_filter_by_topic_and_namespace() {
    let daemon = Daemon::start();
    let deletes = Watcher::start(&daemon, &debian_ctr(), &[r#"topic=="/namespaces/delete""#]);
    let in_team = Watcher::start(&daemon, &workspace_bin("ctr"), &["namespace==team"]);
    // Events before a subscription registers are not replayed: probe first.
    sync(
        &daemon,
        &deletes,
        &[
            &["namespaces", "create", "gone"],
            &["namespaces", "rm", "gone"],
        ],
    );
    sync(
        &daemon,
        &in_team,
        &[&["-n", "team", "namespaces", "label", "team", "x=1"]],
    );
    let ctr = workspace_bin("ctr");
    ok(daemon.ctr(&ctr, &["namespaces", "create", "one"]));
    ok(daemon.ctr(&ctr, &["-n", "team", "namespaces", "create", "two"]));
    ok(daemon.ctr(&ctr, &["namespaces", "rm", "one"]));
    assert_eq!(
        deletes.next(),
        r#"default /namespaces/delete {"name":"one"}"#
    );
    assert_eq!(in_team.next(), r#"team /namespaces/create {"name":"two"}"#);
}

#[tokio::test]
async fn publish_validates_topics() {
    let daemon = Daemon::start();
    let mut client = pb::events_client::EventsClient::new(daemon.channel().await);
    let mut request = tonic::Request::new(pb::PublishRequest {
        topic: "no-slash".into(),
        event: Some(prost_types::Any {
            type_url: "x".into(),
            value: vec![],
        }),
    });
    request
        .metadata_mut()
        .insert("containerd-namespace", "default".parse().unwrap());
    let status = client.publish(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("must start with '/'"),
        "{}",
        status.message()
    );
}

/// containerd 1.7's snapshot events name the snapshotter; its ctr shows it.
#[test]
fn snapshot_events_name_their_snapshotter() {
    let daemon = Daemon::start();
    let ctr17 = common::ctr17();
    let watcher = Watcher::start(&daemon, &ctr17, &[r#"topic~="^/snapshot/""#]);
    let native = ["snapshots", "--snapshotter", "native"];
    let probe: &[&[&str]] = &[
        &["snapshots", "--snapshotter", "native", "prepare", "probe"],
        &["snapshots", "--snapshotter", "native", "rm", "probe"],
    ];
    sync(&daemon, &watcher, probe);
    for step in [
        &["prepare", "work"][..],
        &["commit", "done", "work"],
        &["rm", "done"],
    ] {
        ok(daemon.ctr(&ctr17, &[&native[..], step].concat()));
    }
    for want in [
        r#"default /snapshot/prepare {"key":"work","snapshotter":"native"}"#,
        r#"default /snapshot/commit {"key":"work","name":"done","snapshotter":"native"}"#,
        r#"default /snapshot/remove {"key":"done","snapshotter":"native"}"#,
    ] {
        assert_eq!(watcher.next(), want);
    }
}
