//! Storage benchmark: content ingest throughput over gRPC and `containers
//! ls` latency, for `crated` and containerd 1.6 (Debian's `/usr/bin/containerd`)
//! side by side, driven by the same client, with the disk's sequential write
//! speed as the yardstick.
//!
//! Run it with `cargo xtask bench storage` (which builds `crated` in release
//! first); options after `--`:
//!
//! ```text
//! --size-mib N      ingest size (default 1024)
//! --containers N    containers to list (default 10000)
//! --runs N          repetitions; the median is reported (default 5)
//! --dir PATH        where the daemons' roots go (default /var/tmp)
//! --only NAME       crated or containerd
//! ```

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use crated_api::containerd::services::containers::v1 as containers;
use crated_api::containerd::services::leases::v1 as leases;
use crated_api::metadata::set_grpc_namespace;
use crated_api::proxy::content::ContentProxy;
use crated_core::content::{ContentStore as _, WriterOptions};
use crated_core::Namespace;
use tonic::transport::Channel;

use common::{crated_binary, median, Daemon};

const CHUNK: usize = 1 << 20;

struct Options {
    size_mib: usize,
    containers: usize,
    runs: usize,
    dir: PathBuf,
    only: Option<String>,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        size_mib: 1024,
        containers: 10_000,
        runs: 5,
        dir: "/var/tmp".into(),
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--size-mib" => o.size_mib = value()?.parse()?,
            "--containers" => o.containers = value()?.parse()?,
            "--runs" => o.runs = value()?.parse()?,
            "--dir" => o.dir = value()?.into(),
            "--only" => o.only = Some(value()?),
            // cargo bench passes --bench.
            "--bench" => {}
            other => bail!("unknown option {other:?}"),
        }
    }
    Ok(o)
}

fn namespace() -> Namespace {
    Namespace::new("bench").unwrap()
}

fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    set_grpc_namespace(&mut request, &namespace());
    request
}

/// A chunk of incompressible bytes; each write varies its first bytes so no
/// two chunks are equal.
fn chunk() -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut out = Vec::with_capacity(CHUNK);
    while out.len() < CHUNK {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

fn mib_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

/// Sequential write of `size` bytes in 1 MiB writes, then fsync: what the
/// disk under `dir` sustains.
fn disk_write(dir: &Path, size: usize) -> anyhow::Result<Duration> {
    let path = dir.join(format!("bench-disk-{}", std::process::id()));
    let mut data = chunk();
    let started = Instant::now();
    let mut file = std::fs::File::create(&path)?;
    for i in 0..size / CHUNK {
        data[..8].copy_from_slice(&(i as u64).to_le_bytes());
        file.write_all(&data)?;
    }
    file.sync_all()?;
    let took = started.elapsed();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(took)
}

/// One ingest of `size` bytes over the content service, under a lease,
/// timed from opening the writer to the acknowledged commit.
async fn ingest(channel: Channel, size: usize, run: usize) -> anyhow::Result<Duration> {
    let lease = format!("bench-{run}");
    leases::leases_client::LeasesClient::new(channel.clone())
        .create(request(leases::CreateRequest {
            id: lease.clone(),
            labels: Default::default(),
        }))
        .await?;
    let proxy = ContentProxy::new(channel.clone()).with_lease(lease.clone());
    let mut data = chunk();
    // Distinct content per run, so no run finds the blob already there.
    data[8..16].copy_from_slice(&(run as u64).to_le_bytes());
    let started = Instant::now();
    let mut w = proxy
        .writer(
            &namespace(),
            WriterOptions {
                r#ref: format!("bench-ingest-{run}"),
                total: size as u64,
                ..Default::default()
            },
        )
        .await?;
    for i in 0..size / CHUNK {
        data[..8].copy_from_slice(&(i as u64).to_le_bytes());
        w.write(&data).await?;
    }
    let digest = w.digest().await?;
    w.commit(size as u64, None, Default::default()).await?;
    let took = started.elapsed();
    proxy.delete(&namespace(), &digest).await?;
    // A sync delete: the blob is gone before the next run starts.
    leases::leases_client::LeasesClient::new(channel)
        .delete(request(leases::DeleteRequest {
            id: lease,
            sync: true,
        }))
        .await?;
    Ok(took)
}

fn container(i: usize) -> containers::Container {
    let id = format!("bench-{i:06}");
    containers::Container {
        labels: [("app".to_string(), format!("svc-{}", i % 50))]
            .into_iter()
            .collect(),
        image: "docker.io/library/busybox:latest".into(),
        runtime: Some(containers::container::Runtime {
            name: "io.containerd.runc.v2".into(),
            options: None,
        }),
        spec: Some(prost_types::Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
            // A typical small spec's worth of bytes.
            value: format!(r#"{{"ociVersion":"1.0.2","hostname":"{id}","process":{{"args":["sh"],"env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"cwd":"/"}},"root":{{"path":"rootfs"}}}}"#).into_bytes(),
        }),
        snapshotter: "overlayfs".into(),
        snapshot_key: id.clone(),
        id,
        ..Default::default()
    }
}

async fn create_containers(channel: Channel, count: usize) -> anyhow::Result<()> {
    const STREAMS: usize = 8;
    let mut tasks = Vec::new();
    for k in 0..STREAMS {
        let channel = channel.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = containers::containers_client::ContainersClient::new(channel);
            for i in (k..count).step_by(STREAMS) {
                client
                    .create(request(containers::CreateContainerRequest {
                        container: Some(container(i)),
                    }))
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn list_containers(channel: Channel, expected: usize) -> anyhow::Result<Duration> {
    let mut client = containers::containers_client::ContainersClient::new(channel)
        .max_decoding_message_size(usize::MAX);
    let started = Instant::now();
    let listed = client
        .list(request(containers::ListContainersRequest {
            filters: vec![],
        }))
        .await?
        .into_inner()
        .containers
        .len();
    let took = started.elapsed();
    if listed != expected {
        bail!("listed {listed} containers, expected {expected}");
    }
    Ok(took)
}

/// Wall time of Debian's `ctr containers ls`, output discarded.
fn ctr_ls(address: &Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = Command::new("/usr/bin/ctr")
        .args(["--address"])
        .arg(address)
        .args(["-n", "bench", "containers", "ls"])
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("ctr containers ls failed: {status}");
    }
    Ok(started.elapsed())
}

struct Row {
    name: &'static str,
    ingest: Duration,
    list: Duration,
    ctr_list: Duration,
    rss_kib: u64,
}

async fn measure(daemon: &Daemon, o: &Options) -> anyhow::Result<Row> {
    let channel = daemon.channel().await?;
    let size = o.size_mib * CHUNK;
    let mut ingests = Vec::new();
    for run in 0..o.runs {
        let took = ingest(channel.clone(), size, run).await?;
        eprintln!(
            "{}: ingest {} MiB in {took:.2?} ({:.0} MiB/s)",
            daemon.name,
            o.size_mib,
            mib_per_s(size, took)
        );
        ingests.push(took);
    }
    let started = Instant::now();
    create_containers(channel.clone(), o.containers).await?;
    eprintln!(
        "{}: created {} containers in {:.2?}",
        daemon.name,
        o.containers,
        started.elapsed()
    );
    let mut lists = Vec::new();
    let mut ctr_lists = Vec::new();
    for _ in 0..o.runs {
        lists.push(list_containers(channel.clone(), o.containers).await?);
        ctr_lists.push(ctr_ls(&daemon.address)?);
    }
    Ok(Row {
        name: daemon.name,
        ingest: median(ingests),
        list: median(lists),
        ctr_list: median(ctr_lists),
        rss_kib: daemon.rss_kib(),
    })
}

fn main() -> anyhow::Result<()> {
    let o = options()?;
    std::fs::create_dir_all(&o.dir)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let size = o.size_mib * CHUNK;
    let disk = median(
        (0..o.runs)
            .map(|_| disk_write(&o.dir, size))
            .collect::<anyhow::Result<_>>()?,
    );
    eprintln!(
        "disk: {:.0} MiB/s sequential write + fsync",
        mib_per_s(size, disk)
    );
    let mut rows = Vec::new();
    let candidates: [(&'static str, PathBuf); 2] = [
        ("crated", crated_binary()?),
        ("containerd", "/usr/bin/containerd".into()),
    ];
    for (name, binary) in candidates {
        if o.only.as_deref().is_some_and(|only| only != name) {
            continue;
        }
        let daemon = Daemon::start(name, &binary, &o.dir)?;
        rows.push(runtime.block_on(measure(&daemon, &o))?);
    }
    println!();
    println!(
        "| daemon | ingest {} MiB over gRPC | of disk speed ({:.0} MiB/s) | `containers ls` of {} (gRPC List) | Debian `ctr containers ls` | daemon RSS after |",
        o.size_mib,
        mib_per_s(size, disk),
        o.containers
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for r in &rows {
        println!(
            "| {} | {:.0} MiB/s ({:.2?}) | {:.0} % | {:.1?} | {:.1?} | {} MiB |",
            r.name,
            mib_per_s(size, r.ingest),
            r.ingest,
            100.0 * disk.as_secs_f64() / r.ingest.as_secs_f64(),
            r.list,
            r.ctr_list,
            r.rss_kib / 1024
        );
    }
    println!(
        "\nmedian of {} runs; {} cores; roots under {}",
        o.runs,
        std::thread::available_parallelism().map_or(0, usize::from),
        o.dir.display()
    );
    Ok(())
}
