//! containerd's own conformance suites, in Go, against crated.
//!
//! `go-conformance/` is a small Go module pinned to containerd v1.6.20 (the
//! version Debian ships) whose tests run containerd's `content/testsuite`
//! through `content/proxy` and `snapshots/testsuite` through
//! `snapshots/proxy`, over gRPC, against the daemon at
//! `CONFORMANCE_ADDRESS`. This test builds it with `go test -c`, runs it
//! against Debian's containerd 1.6 and against crated, each with the shared
//! and then the isolated content sharing policy, and requires every case
//! that passes against containerd to pass against crated too.
//!
//! Go and the Go module proxy (or a filled module cache) are required: a
//! missing toolchain fails the test rather than skipping it, because a skip
//! in CI would hide a regression.

// The shared helpers in `common` unwrap outside #[test] functions; this
// file itself does not.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The Go test functions that run under each policy: the isolated daemon
/// only runs the case that needs that policy; the shared one runs the rest
/// (containerd's default policy, and what its integration tests use).
const SHARED_TESTS: &str = "^(TestContent|TestContentCrossNSShared|TestSnapshotter)$";
const ISOLATED_TESTS: &str = "^TestContentCrossNSIsolated$";

/// crated's sharing policy section; containerd's is the same table under
/// its bolt metadata plugin.
const SLED_ISOLATED: &str =
    "[plugins.\"io.containerd.metadata.v1.sled\"]\ncontent_sharing_policy = \"isolated\"\n";
const BOLT_ISOLATED: &str =
    "[plugins.\"io.containerd.metadata.v1.bolt\"]\ncontent_sharing_policy = \"isolated\"\n";

/// A cold build (module download and compile of containerd's packages)
/// takes about 1.5 minutes on the 2-core machine; warm, under a second.
const BUILD_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// One run of the suites takes about 15 s; the Go side's own timeout
/// (`-test.timeout`) fires first and names the hung case.
const GO_TEST_TIMEOUT: &str = "4m";
const RUN_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Pass,
    Fail,
    Skip,
}

/// The `go` command: on PATH, else where the Go distribution installs it.
fn go_tool() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("go"))
            .find(|candidate| candidate.is_file())
    });
    let go = on_path.unwrap_or_else(|| PathBuf::from("/usr/local/go/bin/go"));
    assert!(
        go.is_file(),
        "the Go toolchain is missing (no `go` on PATH nor /usr/local/go/bin/go): \
         install Go to run containerd's content and snapshot suites against crated"
    );
    go
}

/// Where the Go test binary and, when the environment names no Go caches,
/// Go's caches live: the target directory's scratch space, which CI keeps
/// outside the clone. Only speed depends on what is already there.
fn cache_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-conformance");
    std::fs::create_dir_all(&dir).expect("create the Go conformance cache dir");
    dir
}

/// Runs `cmd` (its own process group, output to `log`) until it exits or
/// `timeout` passes; then the whole group is killed. Returns whether it
/// exited successfully, or `None` on timeout.
fn run_bounded(cmd: &mut Command, log: &Path, timeout: Duration) -> Option<bool> {
    let out = File::create(log).expect("create log");
    let err = out.try_clone().expect("clone log handle");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            return Some(status.success());
        }
        if Instant::now() > deadline {
            // The go command leaves compilers, the test binary nothing; the
            // group takes both.
            let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Builds the suites' test binary with `go test -c`; any failure to do so
/// (no toolchain, module proxy unreachable, compile error) fails the test.
fn build_suites() -> PathBuf {
    let go = go_tool();
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go-conformance");
    let cache = cache_dir();
    let binary = cache.join("goconformance.test");
    // Concurrent runs each link their own file and rename it into place, so
    // none executes a half-written binary.
    let partial = cache.join(format!("goconformance.test.{}", std::process::id()));
    let log = cache.join(format!("build.{}.log", std::process::id()));
    let mut cmd = Command::new(&go);
    cmd.current_dir(&module)
        .args(["test", "-c", "-o"])
        .arg(&partial)
        .arg(".")
        // The go.mod pins the toolchain floor below what is installed; never
        // try to download another one.
        .env("GOTOOLCHAIN", "local")
        .env("GOWORK", "off")
        // Pure Go: no C compiler needed, and the binary runs anywhere here.
        .env("CGO_ENABLED", "0")
        // A go.sum that does not cover the build is an error to fix in the
        // repository, not something to rewrite here.
        .env(
            "GOFLAGS",
            format!(
                "{} -mod=readonly",
                std::env::var("GOFLAGS").unwrap_or_default()
            ),
        );
    // Without HOME (and no explicit setting) go has nowhere to cache.
    if std::env::var_os("HOME").is_none() {
        for (var, sub) in [
            ("GOCACHE", "go-build"),
            ("GOMODCACHE", "go-mod"),
            ("GOPATH", "go-path"),
        ] {
            if std::env::var_os(var).is_none() {
                cmd.env(var, cache.join(sub));
            }
        }
    }
    let started = Instant::now();
    let built = run_bounded(&mut cmd, &log, BUILD_TIMEOUT);
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    match built {
        Some(true) => {}
        Some(false) => {
            let _ = std::fs::remove_file(&partial);
            panic!(
                "`go test -c` of {} failed (it needs the Go module proxy or a module cache \
                 holding containerd v1.6.20 and its dependencies):\n{output}",
                module.display()
            )
        }
        None => {
            let _ = std::fs::remove_file(&partial);
            panic!(
                "`go test -c` of {} did not finish within {BUILD_TIMEOUT:?} (build timeout):\n{output}",
                module.display()
            )
        }
    }
    std::fs::rename(&partial, &binary).expect("move the Go test binary into place");
    eprintln!(
        "go_conformance: built {} in {:.1}s",
        binary.display(),
        started.elapsed().as_secs_f64()
    );
    binary
}

/// Unmounts everything mounted under a directory when dropped: a suite
/// case that fails (or a run that is killed) between mount and unmount
/// leaves mounts behind, which would also keep the directory from being
/// removed.
struct SweepMounts(PathBuf);

impl Drop for SweepMounts {
    fn drop(&mut self) {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<PathBuf> = info
            .lines()
            // Field 5 is the mount point, octal-escaped where it has spaces;
            // temp dirs have none.
            .filter_map(|line| line.split(' ').nth(4).map(PathBuf::from))
            .filter(|point| point.starts_with(&self.0))
            .collect();
        // Deepest first, so that no mount is under another one still there.
        points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for point in points {
            // Lazy: a mount still busy is detached now, freed when released.
            let _ = Command::new("umount").arg("--lazy").arg(&point).status();
        }
    }
}

/// A temp dir whose mounts are swept before it is removed (fields drop in
/// order).
struct Scratch {
    _sweep: SweepMounts,
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("go-conformance")
            .tempdir()
            .expect("temp dir");
        Self {
            _sweep: SweepMounts(dir.path().to_owned()),
            dir,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// The result of one run of the suites against one daemon.
struct Run {
    cases: BTreeMap<String, Outcome>,
    /// The Go binary's output, for the report of failed cases.
    output: String,
    finished: bool,
}

/// Runs the suites' binary against the daemon at `address`, selecting the
/// Go tests matching `tests`; case names get `label` as a prefix.
fn run_suites(binary: &Path, address: &Path, tests: &str, label: &str) -> Run {
    // The snapshot suite makes its work dirs (and mounts) under TMPDIR.
    let scratch = Scratch::new();
    let tmp = scratch.path().join("tmp");
    std::fs::create_dir(&tmp).expect("create TMPDIR for the suites");
    let log = scratch.path().join("output.log");
    let mut cmd = Command::new(binary);
    cmd.current_dir(scratch.path())
        .arg("-test.v")
        .arg("-test.run")
        .arg(tests)
        .arg("-test.timeout")
        .arg(GO_TEST_TIMEOUT)
        .arg("-conformance.address")
        .arg(address)
        .arg("-conformance.snapshotter")
        .arg("overlayfs")
        .env("TMPDIR", &tmp)
        .env_remove("CONFORMANCE_ADDRESS")
        .env_remove("CONTAINERD_ADDRESS")
        .env_remove("CONTAINERD_NAMESPACE");
    let started = Instant::now();
    let exit = run_bounded(&mut cmd, &log, RUN_TIMEOUT);
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    eprintln!(
        "go_conformance: {label} run took {:.1}s ({})",
        started.elapsed().as_secs_f64(),
        match exit {
            Some(true) => "all passed",
            Some(false) => "some failed",
            None => "killed at the run timeout",
        }
    );
    let cases = parse_cases(&output)
        .into_iter()
        .map(|(name, outcome)| (format!("{label}: {name}"), outcome))
        .collect();
    Run {
        cases,
        output,
        finished: exit.is_some(),
    }
}

/// The suite cases (subtests: `Test…/Case`) of `go test -v` output with
/// their outcome. A case that started but never reported (the binary
/// panicked or was killed) is absent, so it counts as not passed.
fn parse_cases(output: &str) -> BTreeMap<String, Outcome> {
    let mut cases = BTreeMap::new();
    for line in output.lines() {
        let line = line.trim_start();
        let (outcome, rest) = if let Some(rest) = line.strip_prefix("--- PASS: ") {
            (Outcome::Pass, rest)
        } else if let Some(rest) = line.strip_prefix("--- FAIL: ") {
            (Outcome::Fail, rest)
        } else if let Some(rest) = line.strip_prefix("--- SKIP: ") {
            (Outcome::Skip, rest)
        } else {
            continue;
        };
        let name = rest.split(" (").next().unwrap_or(rest);
        if name.contains('/') {
            cases.insert(name.to_owned(), outcome);
        }
    }
    cases
}

/// What the output says about case `name` (without its label): the lines
/// logged while it ran, found after its `=== RUN`/`=== NAME`/`=== CONT`
/// markers (parallel snapshot cases interleave).
fn case_log(output: &str, name: &str) -> String {
    let mut text = String::new();
    let mut inside = false;
    for line in output.lines() {
        let trimmed = line.trim_start();
        if let Some(marker) = trimmed.strip_prefix("=== ") {
            inside = marker.split_whitespace().nth(1) == Some(name);
            continue;
        }
        if trimmed.starts_with("--- ") {
            inside = false;
            continue;
        }
        if inside {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

fn passing(runs: &[&Run]) -> Vec<String> {
    runs.iter()
        .flat_map(|r| r.cases.iter())
        .filter(|(_, outcome)| **outcome == Outcome::Pass)
        .map(|(name, _)| name.clone())
        .collect()
}

#[test]
fn containerd_suites_pass_against_crated() {
    let binary = build_suites();

    // One daemon at a time: the two cores are shared, and the suites time
    // their steps. Each daemon has its own root, so nothing carries over.
    let shared_containerd = {
        let daemon = common::Containerd::start();
        let _sweep = SweepMounts(daemon.dir.path().to_owned());
        run_suites(&binary, &daemon.address, SHARED_TESTS, "shared")
    };
    let isolated_containerd = {
        let daemon = common::Containerd::start_with(BOLT_ISOLATED);
        let _sweep = SweepMounts(daemon.dir.path().to_owned());
        run_suites(&binary, &daemon.address, ISOLATED_TESTS, "isolated")
    };
    let shared_crated = {
        let daemon = common::Daemon::start();
        let _sweep = SweepMounts(daemon.dir.path().to_owned());
        run_suites(&binary, &daemon.address, SHARED_TESTS, "shared")
    };
    let isolated_crated = {
        let daemon = common::Daemon::start_with("", SLED_ISOLATED);
        let _sweep = SweepMounts(daemon.dir.path().to_owned());
        run_suites(&binary, &daemon.address, ISOLATED_TESTS, "isolated")
    };

    let containerd_pass = passing(&[&shared_containerd, &isolated_containerd]);
    let crated_pass = passing(&[&shared_crated, &isolated_crated]);
    eprintln!(
        "go_conformance: {} cases pass against containerd 1.6:\n  {}",
        containerd_pass.len(),
        containerd_pass.join("\n  ")
    );
    eprintln!(
        "go_conformance: {} cases pass against crated:\n  {}",
        crated_pass.len(),
        crated_pass.join("\n  ")
    );

    // The harness itself must have worked: containerd passes cases of every
    // suite, or the comparison below would be empty and prove nothing.
    for suite in [
        "shared: TestContent/",
        "shared: TestContentCrossNSShared/",
        "shared: TestSnapshotter/",
        "isolated: TestContentCrossNSIsolated/",
    ] {
        assert!(
            containerd_pass.iter().any(|c| c.starts_with(suite)),
            "no case of {suite} passed against containerd 1.6: the harness is broken\n\
             shared run output:\n{}\nisolated run output:\n{}",
            shared_containerd.output,
            isolated_containerd.output
        );
    }
    assert!(
        shared_containerd.finished && isolated_containerd.finished,
        "the suites did not finish against containerd 1.6 within {RUN_TIMEOUT:?} (run timeout)"
    );

    let mut failing = Vec::new();
    for case in &containerd_pass {
        if crated_pass.contains(case) {
            continue;
        }
        let (run, name) = match case.split_once(": ") {
            Some(("isolated", name)) => (&isolated_crated, name),
            Some((_, name)) => (&shared_crated, name),
            None => (&shared_crated, case.as_str()),
        };
        let outcome = run
            .cases
            .get(case)
            .map_or("no result".to_owned(), |o| format!("{o:?}"));
        let log = case_log(&run.output, name);
        failing.push(format!("{case} ({outcome}):\n{log}"));
    }
    assert!(
        failing.is_empty(),
        "cases that pass against containerd 1.6 but not against crated \
         (crated runs finished: shared {}, isolated {}):\n{}",
        shared_crated.finished,
        isolated_crated.finished,
        failing.join("\n")
    );
}
