//! Pull benchmark: `ctr images pull` of a large synthetic image (≈200 MiB
//! of incompressible data in four files, a layer of 20,000 small files, a
//! whiteout layer) from Debian's docker-registry on loopback, with crated
//! and our ctr, then containerd 1.6 and Debian's ctr, in the same run on
//! fresh roots; and the latency of a snapshot prepare + commit + remove
//! over gRPC on overlayfs for both daemons. The yardstick is plain
//! `tar -xzf` of the image's layers, one after the other, into one
//! directory on the same kind of filesystem.
//!
//! Run it with `cargo xtask bench pull`; options after `--`:
//!
//! ```text
//! --big-mib N     incompressible MiB in the first layer (default 200)
//! --small N       small files in the second layer (default 20000)
//! --runs N        pulls per daemon; the median is reported (default 3)
//! --ops N         snapshot prepare/commit/remove rounds (default 200)
//! --dir PATH      where the daemons' roots go (default /var/tmp)
//! --aged-fs       put roots straight in --dir instead of a fresh ext4
//! ```
//!
//! By default every pull gets a fresh loop-mounted ext4 (an image file in
//! `--dir`): on a filesystem that just had tens of thousands of files
//! deleted — each run's root — ext4's inode allocator spends most of the
//! unpack skipping recently freed inodes (`recently_deleted` in a kernel
//! profile), which then dominates both daemons' times. `--aged-fs` measures
//! that case.

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
    aged_fs: bool,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        big_mib: 200,
        small: 20_000,
        runs: 3,
        ops: 200,
        dir: "/var/tmp".into(),
        aged_fs: false,
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
            "--aged-fs" => o.aged_fs = true,
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
    let client = crated_client::Client::from_channel(channel.clone()).with_namespace(ns.clone());
    let lease = crated_client::leases::Temporary::create(&client).await?;
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

/// The image's layer blobs, compressed, written to files in `dir` (not
/// timed), in order.
fn layer_files(image: &crated_testimages::Image, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for (i, blob) in image
        .blobs
        .iter()
        .filter(|b| b.media_type.contains("layer"))
        .enumerate()
    {
        let path = dir.join(format!("layer-{i}.tar.gz"));
        std::fs::write(&path, &blob.data)?;
        files.push(path);
    }
    Ok(files)
}

/// Wall time of `tar -xzf` of each of `layers` in turn into a fresh
/// directory under `parent`.
fn untar(layers: &[PathBuf], parent: &Path) -> anyhow::Result<Duration> {
    let dir = tempfile::Builder::new()
        .prefix("bench-untar-")
        .tempdir_in(parent)?;
    let started = Instant::now();
    for layer in layers {
        let status = Command::new("tar")
            .arg("-xzf")
            .arg(layer)
            .arg("-C")
            .arg(dir.path())
            .status()?;
        if !status.success() {
            bail!("tar -xzf {} failed: {status}", layer.display());
        }
    }
    Ok(started.elapsed())
}

/// A fresh ext4 in a sparse image file, loop-mounted; gone on drop.
struct FreshFs {
    image: PathBuf,
    mountpoint: PathBuf,
}

impl FreshFs {
    fn new(dir: &Path) -> anyhow::Result<Self> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let image = dir.join(format!("bench-fs-{}-{n}.img", std::process::id()));
        let mountpoint = dir.join(format!("bench-fs-{}-{n}", std::process::id()));
        std::fs::File::create(&image)?.set_len(4 << 30)?;
        std::fs::create_dir_all(&mountpoint)?;
        let run = |cmd: &mut Command| -> anyhow::Result<()> {
            let out = cmd.output()?;
            if !out.status.success() {
                bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
            }
            Ok(())
        };
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image))?;
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mountpoint))?;
        Ok(Self { image, mountpoint })
    }
}

impl Drop for FreshFs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("--all-targets")
            .arg(&self.mountpoint)
            .status();
        let _ = std::fs::remove_dir(&self.mountpoint);
        let _ = std::fs::remove_file(&self.image);
    }
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
    // Interleaved, so both daemons meet the filesystem in the same state:
    // ext4 slows inode allocation down after mass deletes (each run's root
    // is removed), which would otherwise penalise whichever runs second.
    let mut pulls: Vec<Vec<Duration>> = vec![Vec::new(); candidates.len()];
    let mut rss = vec![0; candidates.len()];
    let blobs = tempfile::Builder::new()
        .prefix("bench-layers-")
        .tempdir_in(&o.dir)?;
    let layers = layer_files(&image, blobs.path())?;
    let mut untars = Vec::new();
    for run in 0..o.runs {
        {
            let fs = (!o.aged_fs).then(|| FreshFs::new(&o.dir)).transpose()?;
            let parent = fs
                .as_ref()
                .map_or(o.dir.as_path(), |fs| fs.mountpoint.as_path());
            let took = untar(&layers, parent)?;
            eprintln!("tar -xzf of the layers {run}: {took:.2?}");
            untars.push(took);
        }
        for (i, (name, binary, ctr)) in candidates.iter().enumerate() {
            let fs = (!o.aged_fs).then(|| FreshFs::new(&o.dir)).transpose()?;
            let parent = fs
                .as_ref()
                .map_or(o.dir.as_path(), |fs| fs.mountpoint.as_path());
            let daemon = Daemon::start(name, binary, parent)?;
            let took = pull(ctr, &daemon, &reference)?;
            eprintln!("{name} pull {run}: {took:.2?}");
            pulls[i].push(took);
            rss[i] = daemon.rss_kib();
            // The daemon stops before its filesystem goes.
            drop(daemon);
            drop(fs);
        }
    }
    let mut rows = Vec::new();
    for (i, (name, binary, _)) in candidates.iter().enumerate() {
        let daemon = Daemon::start(name, binary, &o.dir)?;
        let ops = runtime.block_on(snapshot_ops(&daemon, o.ops))?;
        eprintln!("{name} snapshot prepare+commit+remove: {ops:.2?}");
        rows.push((*name, median(pulls[i].clone()), ops, rss[i]));
    }
    let base = rows.iter().find(|r| r.0 == "containerd").map(|r| r.1);
    let untar = median(untars);
    println!();
    println!(
        "| daemon | pull + unpack ({:.0} MiB compressed, 3 layers) | vs containerd | vs plain `tar -xzf` of the layers ({untar:.2?}) | snapshot prepare+commit+remove | daemon RSS after pull |",
        compressed as f64 / (1 << 20) as f64
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for (name, pull, ops, rss) in &rows {
        let ratio = base.map_or(0.0, |b| pull.as_secs_f64() / b.as_secs_f64());
        let vs_untar = pull.as_secs_f64() / untar.as_secs_f64();
        println!(
            "| {name} | {pull:.2?} | {ratio:.2}× | {vs_untar:.2}× | {ops:.2?} | {} MiB |",
            rss / 1024
        );
    }
    println!(
        "\nmedian of {} pulls each on a fresh root ({}), the daemons taking turns; {} snapshot rounds; {} cores; under {}",
        o.runs,
        if o.aged_fs { "in place" } else { "a fresh ext4 each" },
        o.ops,
        std::thread::available_parallelism().map_or(0, usize::from),
        o.dir.display()
    );
    Ok(())
}
