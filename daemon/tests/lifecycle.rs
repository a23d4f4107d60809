//! The daemon as an operator sees it: sockets, signals, logs, config.

// Helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use common::{ok, workspace_bin, Daemon};
use nix::sys::signal::Signal;

#[test]
fn sockets_are_tight_and_removed_on_sigterm() {
    let mut daemon = Daemon::start();
    let ttrpc = daemon.address.with_extension("sock.ttrpc");
    for path in [&daemon.address, &ttrpc] {
        let meta = std::fs::metadata(path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o660, "{}", path.display());
    }
    let parent = std::fs::metadata(daemon.address.parent().unwrap()).unwrap();
    assert_eq!(parent.mode() & 0o777, 0o711);
    let status = daemon.stop_with(Signal::SIGTERM);
    assert!(status.success(), "{status}:\n{}", daemon.logs());
    assert!(!daemon.address.exists());
    assert!(!ttrpc.exists());
    assert!(
        daemon.logs().contains("crated stopped"),
        "{}",
        daemon.logs()
    );
}

/// A SIGTERM that comes while the daemon is still loading its plugins
/// (the first log line is written, no socket yet) stops it gracefully once
/// it serves: it is not killed by the signal's default action with its
/// sockets left behind.
#[test]
fn a_sigterm_during_start_is_a_graceful_stop() {
    let daemon = Daemon::prepare("", "");
    let log = std::fs::File::create(&daemon.log).unwrap();
    let mut child = Command::new(workspace_bin("crated"))
        .arg("--config")
        .arg(&daemon.config)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !daemon.logs().contains("starting crated") {
        assert!(std::time::Instant::now() < deadline, "{}", daemon.logs());
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("crated did not stop:\n{}", daemon.logs());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.success(), "{status}:\n{}", daemon.logs());
    assert!(
        daemon.logs().contains("crated stopped"),
        "{}",
        daemon.logs()
    );
    assert!(!daemon.address.exists());
    assert!(!daemon.address.with_extension("sock.ttrpc").exists());
}

#[test]
fn a_live_daemons_socket_is_not_stolen() {
    let daemon = Daemon::start();
    // A second daemon with its own root but the same address.
    let other = tempfile::tempdir().unwrap();
    let out = Command::new(workspace_bin("crated"))
        .arg("--root")
        .arg(other.path().join("root"))
        .arg("--state")
        .arg(other.path().join("state"))
        .arg("--address")
        .arg(&daemon.address)
        .arg("--config")
        .arg(&daemon.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is in use by another live server"),
        "{stderr}"
    );
    // The first still serves.
    ok(daemon.ctr(&workspace_bin("ctr"), &["version"]));
}

#[test]
fn a_second_daemon_on_the_same_root_is_refused() {
    let daemon = Daemon::start();
    // Same root, its own state and socket; requiring the metadata plugin
    // turns its refusal (the database is locked) into a startup failure.
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(
        dir.path(),
        "required_plugins = [\"io.containerd.metadata.v1.sled\"]",
        "",
    );
    let (root, _, _) = common::layout(daemon.dir.path());
    let out = Command::new(workspace_bin("crated"))
        .arg("--config")
        .arg(&config)
        .arg("--root")
        .arg(&root)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is in use by another process"), "{stderr}");
    // The first daemon is unharmed.
    ok(daemon.ctr(&workspace_bin("ctr"), &["namespaces", "ls"]));
}

#[test]
fn logs_have_rfc3339_nanosecond_timestamps_in_text_and_json() {
    let mut daemon = Daemon::start();
    daemon.stop_with(Signal::SIGTERM);
    let line = daemon
        .logs()
        .lines()
        .find(|l| l.contains("loaded plugin"))
        .map(str::to_owned)
        .expect("a log line");
    // time="2018-07-24T08:11:07.397856489Z" level=info msg="loaded plugin" ...
    let ts = line
        .strip_prefix("time=\"")
        .and_then(|r| r.split('"').next())
        .expect(&line);
    assert_eq!(ts.len(), 30, "{line}");
    assert!(
        ts.ends_with('Z') && ts.as_bytes()[10] == b'T' && ts.as_bytes()[19] == b'.',
        "{line}"
    );
    assert!(line.contains(" level=info msg=\"loaded plugin\""), "{line}");

    std::fs::write(&daemon.log, "").unwrap();
    daemon.spawn(&["--log-format", "json"]);
    daemon.stop_with(Signal::SIGTERM);
    let logs = daemon.logs();
    for line in logs.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(value["time"].as_str().map(str::len), Some(30), "{line}");
        assert!(
            value["level"].is_string() && value["msg"].is_string(),
            "{line}"
        );
    }
}

#[test]
fn config_default_is_complete_and_loadable() {
    let out = Command::new(workspace_bin("crated"))
        .args(["config", "default"])
        .output()
        .unwrap();
    let text = ok(out);
    for needle in [
        "version = 2",
        "root = \"/var/lib/crated\"",
        "state = \"/run/crated\"",
        "oom_score = 0",
        "address = \"/run/crated/crated.sock\"",
        "max_recv_message_size = 16777216",
        "[plugins.\"io.containerd.internal.v1.opt\"]",
        "path = \"/opt/crated\"",
        "[plugins.\"io.containerd.metadata.v1.sled\"]",
        "content_sharing_policy = \"shared\"",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    // The default, written out, is a config crated accepts.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, &text).unwrap();
    let dump = ok(Command::new(workspace_bin("crated"))
        .arg("--config")
        .arg(&path)
        .args(["config", "dump"])
        .output()
        .unwrap());
    assert!(dump.contains("version = 2"), "{dump}");
}

#[test]
fn bad_config_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    for (text, message) in [
        ("version = 1\n", "version 1 is not supported"),
        (
            "version = 2\nroot = \"relative\"\n",
            "root relative must be an absolute path",
        ),
        (
            "version = 2\noom_score = 5000\n",
            "oom_score 5000 is outside",
        ),
        ("version = 2\n[grpc\n", "failed to load config"),
    ] {
        std::fs::write(&path, text).unwrap();
        let out = Command::new(workspace_bin("crated"))
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{text}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{text}: {stderr}");
    }
    let missing = dir.path().join("missing.toml");
    let out = Command::new(workspace_bin("crated"))
        .arg("--config")
        .arg(&missing)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("failed to read config"));
}

#[tokio::test]
async fn health_service_reports_serving() {
    let daemon = Daemon::start();
    let mut health = tonic_health::pb::health_client::HealthClient::new(daemon.channel().await);
    let reply = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        reply.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

#[test]
fn server_uuid_is_stable_across_restarts() {
    let ctr = workspace_bin("ctr");
    let mut daemon = Daemon::start();
    let uuid = |d: &Daemon| {
        ok(d.ctr(&ctr, &["version"]))
            .lines()
            .find_map(|l| l.trim().strip_prefix("UUID: ").map(str::to_owned))
    };
    let first = uuid(&daemon).expect("uuid");
    daemon.stop_with(Signal::SIGTERM);
    daemon.spawn(&[]);
    assert_eq!(uuid(&daemon), Some(first));
}

#[tokio::test]
async fn server_info_reports_pid_and_pid_namespace() {
    use crated_api::containerd::services::introspection::v1 as pb;
    use std::os::unix::fs::MetadataExt as _;
    let daemon = Daemon::start();
    let mut client = pb::introspection_client::IntrospectionClient::new(daemon.channel().await);
    let info = client.server(()).await.unwrap().into_inner();
    assert_eq!(info.pid, u64::from(daemon.pid()));
    let pidns = std::fs::metadata(format!("/proc/{}/ns/pid", daemon.pid()))
        .unwrap()
        .ino();
    assert_eq!(info.pidns, pidns);
    assert_eq!(info.uuid.len(), 36);
}

#[test]
fn systemd_is_told_ready_once_serving_and_stopping_on_sigterm() {
    use std::os::unix::net::{UnixDatagram, UnixStream};
    let mut daemon = Daemon::prepare("", "");
    let notify_path = daemon.dir.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    daemon.spawn_env(&[], &[("NOTIFY_SOCKET", notify_path.as_os_str())]);
    let mut buf = [0u8; 64];
    let n = notify.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means serving: the socket answers.
    UnixStream::connect(&daemon.address).unwrap();
    let status = daemon.stop_with(Signal::SIGTERM);
    assert!(status.success(), "{status}:\n{}", daemon.logs());
    let n = notify.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1");
}

/// `contrib/crated.service` is what containerd's unit is for containerd:
/// systemd waits for our READY=1, leaves the shims alone on a restart and
/// delegates the cgroup subtree.
#[test]
fn the_systemd_unit_starts_crated_as_containerd_starts_containerd() {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/crated.service"),
    )
    .unwrap();
    let settings: Vec<(&str, &str)> = unit
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let value = |key: &str| {
        settings
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("{key}= missing from crated.service"))
    };
    assert!(
        value("ExecStart").ends_with("/crated"),
        "{}",
        value("ExecStart")
    );
    for (key, expected) in [
        ("Type", "notify"),
        ("Delegate", "yes"),
        ("KillMode", "process"),
        ("LimitNOFILE", "infinity"),
        ("LimitNPROC", "infinity"),
        ("LimitCORE", "infinity"),
        ("TasksMax", "infinity"),
        ("OOMScoreAdjust", "-999"),
    ] {
        assert_eq!(value(key), expected, "{key}");
    }
}

/// Under a notify-type unit the daemon has `NOTIFY_SOCKET`; its shims and
/// runc must not take it for the container's (runc would wait at start
/// for a READY from the container).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_run_under_a_notify_type_unit() {
    use std::os::unix::net::UnixDatagram;
    let (_registry, busybox) = common::registry_with_busybox().await;
    let mut daemon = Daemon::prepare("", "");
    let notify_path = daemon.dir.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    daemon.spawn_env(&[], &[("NOTIFY_SOCKET", notify_path.as_os_str())]);
    let ns = format!("notify-{}", std::process::id());
    let ctr = workspace_bin("ctr");
    ok(daemon.ctr(
        &ctr,
        &["-n", &ns, "images", "pull", "--plain-http", &busybox],
    ));
    // A container that runs on and never sends READY: a hang would be
    // runc waiting for it, which the timeout turns into a failure.
    let started = daemon.ctr(
        &ctr,
        &[
            "-n",
            &ns,
            "--timeout",
            "15s",
            "run",
            "-d",
            &busybox,
            "notified",
            "sleep",
            "60",
        ],
    );
    let _ = daemon.ctr(
        &ctr,
        &["-n", &ns, "tasks", "kill", "-s", "SIGKILL", "notified"],
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = daemon.ctr(&ctr, &["-n", &ns, "tasks", "rm", "-f", "notified"]);
    let _ = daemon.ctr(&ctr, &["-n", &ns, "containers", "rm", "notified"]);
    common::forget_namespace(&ns);
    ok(started);
    drop(notify);
}
