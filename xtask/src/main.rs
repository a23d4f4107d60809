//! `cargo xtask`: the project's automation.
//!
//! - `cargo xtask ci`: install missing system packages, then fmt check,
//!   clippy with warnings denied, build every binary, and run every test.
//! - `cargo xtask fuzz [SECONDS]`: run every fuzz target of `fuzz/` for
//!   SECONDS each (default 60); `ci` runs each for 20.
//! - `cargo xtask deps`: only install the system packages tests use, and
//!   build cri-tools' crictl and critest, checkpointctl, the kubelet,
//!   `stargz-tool` and containerd 1.7's ctr (Go) into the CI cache.
//! - `cargo xtask bench storage [-- OPTIONS]`: build `crated` in release and
//!   run the storage benchmark against it and containerd 1.6 (see
//!   `daemon/benches/storage.rs` for the options).
//! - `cargo xtask bench run [-- OPTIONS]`: `ctr run --rm` latency, 50
//!   containers started, PSS per shim, against containerd 1.6
//!   (`daemon/benches/run.rs`).
//! - `cargo xtask bench cri [-- OPTIONS]`: pod start, RSS with pods,
//!   ListContainerStats and removal through crictl, against containerd
//!   1.6's CRI (`daemon/benches/cri.rs`).
//! - `cargo xtask registry`: Debian's docker-registry on 127.0.0.1 with the
//!   test images (busybox, whiteouts, multi-platform, hostile) pushed, until
//!   Ctrl-C; the tests start their own through `crated-testimages`.
//! - `cargo xtask order-file`: regenerate `daemon/startup.order`, the
//!   functions the release `crated` runs at start-up (under valgrind's
//!   callgrind), which its release link places first (`daemon/build.rs`).
//! - `cargo xtask bench pull [-- OPTIONS]`: pull + unpack of a large image
//!   from a loopback registry, and snapshot op latency, against containerd
//!   1.6 (see `daemon/benches/pull.rs`).

mod busybox;
mod criu;
mod fuzz;
mod gotools;
mod order_file;
mod registry;

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context as _};

/// System packages the tests drive, as (a file that proves it is installed,
/// the Debian package that provides it).
const SYSTEM_PACKAGES: &[(&str, &str)] = &[
    // containerd 1.6's ctr (and daemon/shim) for interop tests.
    ("/usr/bin/ctr", "containerd"),
    ("/usr/sbin/runc", "runc"),
    // mkfs.btrfs for the btrfs snapshotter's loop-mounted test filesystems.
    ("/usr/sbin/mkfs.btrfs", "btrfs-progs"),
    // The registry pull and push tests run on loopback.
    ("/usr/bin/docker-registry", "docker-registry"),
    // /bin/busybox, the binary of the test images.
    ("/bin/busybox", "busybox-static"),
    // The test CA of the registry-over-TLS tests.
    ("/usr/bin/openssl", "openssl"),
    // Checkpoint and restore (runc drives criu, which locks the network
    // with iptables).
    ("/usr/sbin/criu", "criu"),
    ("/usr/sbin/iptables-restore", "iptables"),
    // The CRI plugin's pod networks: bridge, host-local, loopback, portmap.
    ("/usr/lib/cni/bridge", "containernetworking-plugins"),
    // `ip netns` for the private node network namespaces of the CRI tests.
    ("/usr/sbin/ip", "iproute2"),
    // The kubelet test asks the kubelet's HTTPS API what it sees, and
    // starts the kubelet in a mount namespace of its own.
    ("/usr/bin/curl", "curl"),
    ("/usr/bin/unshare", "util-linux"),
    // The sync_fs test's loop-mounted ext4 (Debian installs it always;
    // named for minimal images).
    ("/usr/sbin/mkfs.ext4", "e2fsprogs"),
    // The static helper programs of critest's images are compiled from C.
    ("/usr/bin/gcc", "gcc"),
    ("/usr/lib/x86_64-linux-gnu/libc.a", "libc6-dev"),
];

pub(crate) fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd.status().with_context(|| format!("start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Installs what is missing with apt-get; a no-op when all is present.
fn install_system_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = SYSTEM_PACKAGES
        .iter()
        .filter(|(probe, _)| !Path::new(probe).exists())
        .map(|(_, package)| *package)
        .collect();
    install_packages(&missing)
}

/// Installs Debian packages `missing` with apt-get (as root).
pub(crate) fn install_packages(missing: &[&str]) -> anyhow::Result<()> {
    if missing.is_empty() {
        return Ok(());
    }
    if !nix_is_root() {
        bail!(
            "missing system packages {missing:?}: run `apt-get install {}` as root",
            missing.join(" ")
        );
    }
    run(Command::new("apt-get").arg("update").arg("-qq"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// The system packages, then a criu that runs on this kernel. Without one
/// the checkpoint tests say why and skip: a warning, not a failure.
fn install_deps() -> anyhow::Result<()> {
    install_system_packages()?;
    if nix_is_root() {
        if let Err(e) = criu::install() {
            eprintln!("xtask: warning: no working criu ({e:#}); checkpoint tests will be skipped");
        }
    }
    gotools::install().context(
        "build the Go test tools (crictl, critest, checkpointctl, kubelet, stargz-tool, ctr-1.7)",
    )?;
    busybox::install().context("fetch Debian's dynamic busybox for critest's images")?;
    Ok(())
}

fn nix_is_root() -> bool {
    // The uid of this process: /proc/self/status "Uid:\t<real>\t<effective>…".
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|uids| uids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

fn ci() -> anyhow::Result<()> {
    install_deps()?;
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The end-to-end tests drive binaries of other packages (ctr from the
    // daemon's tests), so every binary is built before any test runs.
    run(cargo().args(["build", "--workspace", "--bins"]))?;
    run(cargo().args(["test", "--workspace", "--no-fail-fast"]))?;
    fuzz::run_all(20)
}

/// Benchmarks, each a `harness = false` bench target of a crate that starts
/// release binaries: (name, package, bench target).
const BENCHES: &[(&str, &str, &str)] = &[
    ("storage", "crated-daemon", "storage"),
    ("pull", "crated-daemon", "pull"),
    ("run", "crated-daemon", "run"),
    ("cri", "crated-daemon", "cri"),
];

fn bench(args: &[String]) -> anyhow::Result<()> {
    install_system_packages()?;
    let name = args.first().map(String::as_str).unwrap_or("storage");
    let Some((_, package, target)) = BENCHES.iter().find(|(n, _, _)| *n == name) else {
        bail!(
            "unknown benchmark {name:?}: choose one of {:?}",
            BENCHES.iter().map(|b| b.0).collect::<Vec<_>>()
        );
    };
    let rest = args.iter().skip(1).skip_while(|a| *a == "--");
    let target_dir = target_dir()?;
    run(cargo().args(["build", "--release", "--workspace", "--bins"]))?;
    order_file::warn_if_stale(&target_dir.join("release/crated"));
    // The harness is built in a target directory of its own: with its
    // dev-dependencies cargo resolves other features for the shared crates,
    // and in the one target directory it would rebuild the whole release
    // tree each time and overwrite the `crated` under test with that build.
    run(cargo()
        .env("CARGO_TARGET_DIR", target_dir.join("bench-harness"))
        .env(BENCH_BINARIES, target_dir.join("release"))
        .args(["bench", "-p", package, "--bench", target, "--"])
        .args(rest))
}

/// The cargo target directory: xtask itself runs from `<target>/debug/xtask`.
fn target_dir() -> anyhow::Result<std::path::PathBuf> {
    std::env::current_exe()?
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .context("xtask's executable has no target directory")
}

/// Tells a benchmark where the release binaries it measures are.
const BENCH_BINARIES: &str = "CRATED_BENCH_BINARIES";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("deps") => install_deps(),
        Some("fuzz") => {
            let seconds = match args.get(1) {
                Some(s) => s
                    .parse()
                    .with_context(|| format!("fuzz: {s:?} is not a number of seconds"))?,
                None => 60,
            };
            fuzz::run_all(seconds)
        }
        Some("bench") => bench(&args[1..]),
        Some("order-file") => order_file::regenerate(&target_dir()?),
        Some("registry") => {
            install_system_packages()?;
            registry::run()
        }
        _ => {
            eprintln!("usage: cargo xtask <ci|deps|fuzz|bench|registry|order-file>");
            eprintln!(
                "  ci    install system packages, fmt check, clippy -D warnings, build, test, fuzz 20 s per target"
            );
            eprintln!("  deps  install the system packages tests use (apt-get)");
            eprintln!("  fuzz [SECONDS]  every fuzz target of fuzz/ for SECONDS each (60)");
            eprintln!("  registry  a loopback docker-registry with the test images, until Ctrl-C");
            eprintln!(
                "  order-file  regenerate daemon/startup.order (crated's start-up functions) under callgrind"
            );
            eprintln!(
                "  bench storage [-- OPTIONS]  ingest and list benchmarks against containerd 1.6"
            );
            eprintln!("  bench pull [-- OPTIONS]     pull + unpack and snapshot ops against containerd 1.6");
            eprintln!("  bench run [-- OPTIONS]      ctr run latency, 50 containers, shim PSS against containerd 1.6");
            bail!("unknown or missing task {:?}", args.first())
        }
    }
}
