//! 30 rounds of a mixed workload (image tags and deletes, containers
//! created and removed, containers run and stopped, leases) through
//! Debian's ctr, with crated SIGKILLed at a random moment of each round and
//! restarted. After every round:
//! - no acknowledged write is missing and no acknowledged delete undone;
//! - `ctr images check` finds every image complete;
//! - no shim runs for a task the daemon does not list;
//! - every running container still answers an exec;
//! - stopped cleanly, `crated fsck` finds nothing: no orphan blob,
//!   snapshot, snapshot directory, bundle or mount.
//!
//! The seed is printed; `CRATED_CRASH_SEED=<n>` replays a run.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::owned::OwnedDaemon;
use common::{ok, rows, Daemon};

const ROUNDS: u32 = 30;
/// Tasks left running across rounds at most (each is a shim and a runc
/// container on a two-core machine).
const MAX_RUNNING: usize = 3;

/// xorshift64*: enough to vary the workload, and replayable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What the daemon acknowledged about one object: it exists (`true`) or
/// was deleted (`false`). An object whose last operation was cut by the
/// kill is forgotten: either outcome is right.
#[derive(Default)]
struct Acked {
    images: BTreeMap<String, bool>,
    containers: BTreeMap<String, bool>,
    /// Containers whose task was acknowledged running (and not stopped).
    running: BTreeMap<String, bool>,
    leases: BTreeMap<String, bool>,
}

/// What a command's success acknowledges.
type Ack = Box<dyn Fn(&mut Acked) + Send>;

/// One ctr command, the object it concerns, and what its success
/// acknowledges.
struct Op {
    args: Vec<String>,
    object: Option<String>,
    then: Option<Ack>,
}

fn op(args: &[&str]) -> Op {
    Op {
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        object: None,
        then: None,
    }
}

impl Op {
    /// On success, `f` records the ack about `object`.
    fn then(mut self, object: &str, f: impl Fn(&mut Acked) + Send + 'static) -> Self {
        self.object = Some(object.to_owned());
        self.then = Some(Box::new(f));
        self
    }
}

/// Picks the next operation of round `round` (the `n`th), given what is
/// acknowledged to exist.
fn pick(rng: &mut Rng, round: u32, n: u32, image: &str, acked: &Acked) -> Option<Op> {
    let existing = |m: &BTreeMap<String, bool>| -> Vec<String> {
        m.iter()
            .filter(|(_, v)| **v)
            .map(|(k, _)| k.clone())
            .collect()
    };
    let choose = |rng: &mut Rng, v: Vec<String>| -> Option<String> {
        (!v.is_empty()).then(|| v[rng.below(v.len() as u64) as usize].clone())
    };
    let name = |kind: &str| format!("{kind}-{round}-{n}");
    Some(match rng.below(9) {
        0 => {
            let tag = name("img");
            let t = tag.clone();
            op(&["images", "tag", image, &tag]).then(&tag, move |a| {
                a.images.insert(t.clone(), true);
            })
        }
        1 => {
            let tag = choose(rng, existing(&acked.images))?;
            let t = tag.clone();
            op(&["images", "rm", &tag]).then(&tag, move |a| {
                a.images.insert(t.clone(), false);
            })
        }
        2 => {
            let id = name("c");
            let i = id.clone();
            op(&["containers", "create", image, &id]).then(&id, move |a| {
                a.containers.insert(i.clone(), true);
            })
        }
        3 => {
            let idle: Vec<String> = existing(&acked.containers)
                .into_iter()
                .filter(|c| !acked.running.get(c).copied().unwrap_or(false) && c.starts_with("c-"))
                .collect();
            let id = choose(rng, idle)?;
            let i = id.clone();
            op(&["containers", "rm", &id]).then(&id, move |a| {
                a.containers.insert(i.clone(), false);
            })
        }
        4 => {
            if existing(&acked.running).len() >= MAX_RUNNING {
                return None;
            }
            let id = name("t");
            let i = id.clone();
            op(&["run", "-d", image, &id, "sh", "-c", "sleep 1000"]).then(&id, move |a| {
                a.containers.insert(i.clone(), true);
                a.running.insert(i.clone(), true);
            })
        }
        5 => {
            let id = choose(rng, existing(&acked.running))?;
            let i = id.clone();
            op(&["tasks", "rm", "-f", &id]).then(&id, move |a| {
                a.running.insert(i.clone(), false);
            })
        }
        6 => {
            let id = name("l");
            let i = id.clone();
            op(&["leases", "create", "--id", &id]).then(&id, move |a| {
                a.leases.insert(i.clone(), true);
            })
        }
        7 => {
            let id = choose(rng, existing(&acked.leases))?;
            let i = id.clone();
            op(&["leases", "rm", &id]).then(&id, move |a| {
                a.leases.insert(i.clone(), false);
            })
        }
        _ => op(&["images", "pull", "--plain-http", image]),
    })
}

/// Names `ls -q` prints.
fn listed(g: &OwnedDaemon, what: &[&str]) -> Vec<String> {
    ok(g.ctr(what))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Checks what a restarted daemon holds against what it acknowledged.
fn verify(g: &OwnedDaemon, acked: &Acked, round: u32, seed: u64) {
    let ctx = format!("round {round}, seed {seed}");
    let images = listed(g, &["images", "ls", "-q"]);
    let containers = listed(g, &["containers", "ls", "-q"]);
    let leases = listed(g, &["leases", "ls", "-q"]);
    for (kind, acks, present) in [
        ("image", &acked.images, &images),
        ("container", &acked.containers, &containers),
        ("lease", &acked.leases, &leases),
    ] {
        for (name, exists) in acks {
            assert_eq!(
                present.contains(name),
                *exists,
                "{ctx}: {kind} {name} acknowledged as {}; listed: {present:?}",
                if *exists { "created" } else { "deleted" }
            );
        }
    }
    let check = ok(g.ctr(&["images", "check"]));
    for row in rows(&check) {
        assert!(
            row.iter().any(|c| c == "complete"),
            "{ctx}: image not complete:\n{check}"
        );
    }
    let tasks = ok(g.ctr(&["tasks", "ls"]));
    let task_rows = rows(&tasks);
    for (id, running) in &acked.running {
        if *running {
            assert!(
                task_rows.iter().any(|r| r[0] == *id && r[2] == "RUNNING"),
                "{ctx}: task {id} acknowledged running:\n{tasks}"
            );
        }
    }
    // Every running container answers.
    for row in &task_rows {
        if row[2] == "RUNNING" {
            let exec_id = format!("check-{round}");
            ok(g.ctr(&["tasks", "exec", "--exec-id", &exec_id, &row[0], "true"]));
        }
    }
    let logs_of = |id: &str| {
        g.daemon
            .logs()
            .lines()
            .filter(|l| l.contains(id))
            .collect::<Vec<_>>()
            .join("\n")
    };
    // No runc container of this namespace outside the daemon's tasks.
    let runc = std::process::Command::new("runc")
        .arg("--root")
        .arg(format!("/run/containerd/runc/{}", g.ns))
        .args(["list", "-q"])
        .output()
        .unwrap();
    for id in String::from_utf8_lossy(&runc.stdout).split_whitespace() {
        assert!(
            task_rows.iter().any(|r| r[0] == id),
            "{ctx}: runc has container {id}, which no task lists:\n{tasks}\n{}",
            logs_of(id)
        );
    }
    // No shim of this namespace serves a task the daemon does not list.
    for shim in shims_of(&g.ns) {
        assert!(
            task_rows.iter().any(|r| r[0] == shim),
            "{ctx}: a shim runs for {shim}, which no task lists:\n{tasks}\n{}",
            logs_of(&shim)
        );
    }
}

/// The `-id` of every shim process started for namespace `ns`.
fn shims_of(ns: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if !args
            .first()
            .is_some_and(|a| a.ends_with("containerd-shim-runc-v2"))
        {
            continue;
        }
        let value = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        if value("-namespace").as_deref() == Some(ns) {
            if let Some(id) = value("-id") {
                out.push(id);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_sigkills_lose_nothing_acknowledged_and_leave_nothing_behind() {
    let seed = std::env::var("CRATED_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    eprintln!("crash loop seed {seed} (CRATED_CRASH_SEED={seed} replays it)");
    let (_registry, image) = common::registry_with_busybox().await;
    // The collector's first run right after start, as in production: it
    // removes what a killed operation left unreferenced.
    let daemon = tokio::task::spawn_blocking(|| {
        Daemon::start_with(
            "",
            "[plugins.\"io.containerd.gc.v1.scheduler\"]\nstartup_delay = \"100ms\"\n",
        )
    })
    .await
    .unwrap();
    let mut g = OwnedDaemon {
        daemon,
        ns: format!("crash-{}", std::process::id()),
    };
    ok(g.ctr(&["images", "pull", "--plain-http", &image]));
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut rng = Rng(seed);

    for round in 0..ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let worker = {
            let (acked, stop) = (Arc::clone(&acked), Arc::clone(&stop));
            let (image, address, ns) = (image.clone(), g.daemon.address.clone(), g.ns.clone());
            let mut rng = Rng(rng.next() | 1);
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let next = {
                        let a = acked.lock().unwrap();
                        pick(&mut rng, round, n, &image, &a)
                    };
                    let Some(op) = next else { continue };
                    let success = run_bounded(
                        std::process::Command::new(common::debian_ctr())
                            .arg("--address")
                            .arg(&address)
                            .args(["-n", &ns])
                            .args(&op.args),
                        &stop,
                    );
                    let mut a = acked.lock().unwrap();
                    if success {
                        if let Some(f) = &op.then {
                            f(&mut a);
                        }
                    } else {
                        // Cut by the kill, or refused: its object's fate is
                        // unknown from here on; forget it.
                        if let Some(name) = &op.object {
                            a.images.remove(name);
                            a.containers.remove(name);
                            a.running.remove(name);
                            a.leases.remove(name);
                        }
                        if !daemon_up(&address) {
                            // Cut by the kill: the caller retries it.
                            return Some(op.args);
                        }
                    }
                }
                None
            })
        };
        let pause = Duration::from_millis(100 + rng.below(900));
        std::thread::sleep(pause);
        g.daemon.stop_with(nix::sys::signal::Signal::SIGKILL);
        stop.store(true, Ordering::SeqCst);
        let cut = worker.join().unwrap();

        g.daemon.spawn(&[]);
        verify(&g, &acked.lock().unwrap(), round, seed);
        // A delete the kill cut is retried, as its user would: containerd's
        // client removes a container's snapshot before its record, so a
        // cut `containers rm` leaves a container without its snapshot
        // (which fsck rightly reports).
        if let Some(args) = cut.filter(|a| a.get(1).is_some_and(|verb| verb == "rm")) {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let _ = g.ctr(&args);
        }
        // Let the start-up collection finish, then check the files.
        std::thread::sleep(Duration::from_millis(300));
        g.daemon.stop_with(nix::sys::signal::Signal::SIGTERM);
        let (code, report) = g.fsck(false);
        assert_eq!(code, 0, "round {round}, seed {seed}: fsck:\n{report}");
        g.daemon.spawn(&[]);
    }
    let started = Instant::now();
    drop(g);
    eprintln!("cleanup took {:?}", started.elapsed());
}

/// Runs `cmd` to its end; whether it succeeded. Debian's ctr may wait for
/// a daemon that was killed under it (a pull's content writer does):
/// once `stop` is set it gets a few seconds, then is killed as cut.
fn run_bounded(cmd: &mut std::process::Command, stop: &AtomicBool) -> bool {
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stopped_at = None;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        if stop.load(Ordering::SeqCst) {
            let since = *stopped_at.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(5) {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn daemon_up(address: &std::path::Path) -> bool {
    std::os::unix::net::UnixStream::connect(address).is_ok()
}
