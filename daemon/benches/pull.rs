//! Pull benchmark: `ctr images pull` of a large synthetic image (≈200 MiB
//! of incompressible data in four files, a layer of 20,000 small files, a
//! whiteout layer) from Debian's docker-registry on loopback, with crated
//! and our ctr, then containerd 1.6 and Debian's ctr, in the same run on
//! fresh roots; and the latency of a snapshot prepare + commit + remove
//! over gRPC on overlayfs for both daemons.
//!
//! Run it with `cargo xtask bench pull`; options after `--`:
//!
//! ```text
//! --big-mib N     incompressible MiB in the first layer (default 200)
//! --small N       small files in the second layer (default 20000)
//! --runs N        pulls per daemon; the median is reported (default 3)
//! --ops N         snapshot prepare/commit/remove rounds (default 200)
//! --dir PATH      where the daemons' roots go (default /var/tmp)
//! ```

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use crated_api::proxy::snapshots::SnapshotsProxy;
use crated_core::snapshots::Snapshotter as _;
use crated_core::Namespace;

use common::{crated_binary, median, workspace_binary, Daemon};

struct Options {
    big_mib: u64,
    small: usize,
    runs: usize,
    ops: usize,
    dir: PathBuf,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        big_mib: 200,
        small: 20_000,
        runs: 3,
        ops: 200,
        dir: "/var/tmp".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--big-mib" => o.big_mib = value()?.parse()?,
            "--small" => o.small = value()?.parse()?,
            "--runs" => o.runs = value()?.parse()?,
            "--ops" => o.ops = value()?.parse()?,
            "--dir" => o.dir = value()?.into(),
            "--bench" => {}
            other => bail!("unknown option {other:?}"),
        }
    }
    Ok(o)
}

/// One timed `ctr images pull` (fetch + unpack into overlayfs).
fn pull(ctr: &Path, daemon: &Daemon, reference: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let out = Command::new(ctr)
        .arg("--address")
        .arg(&daemon.address)
        .args(["images", "pull", "--plain-http", reference])
        .output()?;
    let took = started.elapsed();
    if !out.status.success() {
        bail!(
            "{} pull failed: {}",
            daemon.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The fetch/unpack split, as ctr prints it.
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout
        .lines()
        .filter(|l| l.starts_with("elapsed") || l.starts_with("done"))
    {
        eprintln!("  {}: {}", daemon.name, line.trim());
    }
    Ok(took)
}

/// Mean latency of prepare + commit + remove of an empty snapshot, under a
/// lease as a client keeps its snapshots from the collector.
async fn snapshot_ops(daemon: &Daemon, rounds: usize) -> anyhow::Result<Duration> {
    let channel = daemon.channel().await?;
    let ns = Namespace::new("bench")?;
    let lease = crated_client::leases::Temporary::create(&channel, &ns).await?;
    let sn = SnapshotsProxy::new(channel, "overlayfs", ns).with_lease(lease.id());
    let started = Instant::now();
    for i in 0..rounds {
        let (key, name) = (format!("active-{i}"), format!("committed-{i}"));
        sn.prepare(&key, "", Default::default()).await?;
        sn.commit(&name, &key, Default::default()).await?;
        sn.remove(&name).await?;
    }
    let took = started.elapsed() / rounds as u32;
    lease.release().await;
    Ok(took)
}

fn main() -> anyhow::Result<()> {
    let o = options()?;
    std::fs::create_dir_all(&o.dir)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let registry = crated_testimages::Registry::start(None)?;
    eprintln!(
        "building the image ({} MiB + {} files)…",
        o.big_mib, o.small
    );
    let image = crated_testimages::synthetic(o.big_mib, o.small)?;
    let reference = format!("{}/bench/synthetic:1", registry.host);
    runtime.block_on(crated_testimages::push(&reference, &image))?;
    let compressed: usize = image.blobs.iter().map(|b| b.data.len()).sum();

    let candidates: [(&'static str, PathBuf, PathBuf); 2] = [
        ("crated", crated_binary()?, workspace_binary("ctr")?),
        (
            "containerd",
            "/usr/bin/containerd".into(),
            "/usr/bin/ctr".into(),
        ),
    ];
    let mut rows = Vec::new();
    for (name, binary, ctr) in &candidates {
        let mut pulls = Vec::new();
        let mut rss = 0;
        for run in 0..o.runs {
            let daemon = Daemon::start(name, binary, &o.dir)?;
            let took = pull(ctr, &daemon, &reference)?;
            eprintln!("{name} pull {run}: {took:.2?}");
            pulls.push(took);
            rss = daemon.rss_kib();
        }
        let daemon = Daemon::start(name, binary, &o.dir)?;
        let ops = runtime.block_on(snapshot_ops(&daemon, o.ops))?;
        eprintln!("{name} snapshot prepare+commit+remove: {ops:.2?}");
        rows.push((*name, median(pulls), ops, rss));
    }
    let base = rows.iter().find(|r| r.0 == "containerd").map(|r| r.1);
    println!();
    println!(
        "| daemon | pull + unpack ({:.0} MiB compressed, 3 layers) | vs containerd | snapshot prepare+commit+remove | daemon RSS after pull |",
        compressed as f64 / (1 << 20) as f64
    );
    println!("| --- | --- | --- | --- | --- |");
    for (name, pull, ops, rss) in &rows {
        let ratio = base.map_or(0.0, |b| pull.as_secs_f64() / b.as_secs_f64());
        println!(
            "| {name} | {pull:.2?} | {ratio:.2}× | {ops:.2?} | {} MiB |",
            rss / 1024
        );
    }
    println!(
        "\nmedian of {} pulls each on a fresh root; {} snapshot rounds; {} cores; roots under {}",
        o.runs,
        o.ops,
        std::thread::available_parallelism().map_or(0, usize::from),
        o.dir.display()
    );
    Ok(())
}
