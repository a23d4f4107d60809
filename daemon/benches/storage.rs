//! Storage benchmark: content ingest throughput over gRPC and `containers
//! ls` latency, for `crated` and containerd 1.6 (Debian's `/usr/bin/containerd`)
//! side by side, driven by the same client, with the disk's sequential write
//! speed as the yardstick; then the metadata operations as a user runs them,
//! each through Debian's `ctr`, the daemons taking turns: snapshot prepare /
//! commit / remove (one ctr per op), `containers ls` and `containers rm`
//! (100 per call) of `--objects` containers with their snapshots, and
//! `content rm` (100 per call) of `--objects` blobs.
//!
//! Run it with `cargo xtask bench storage` (which builds `crated` in release
//! first); options after `--`:
//!
//! ```text
//! --size-mib N      ingest size (default 1024)
//! --containers N    containers to list (default 10000)
//! --runs N          repetitions; the median is reported (default 5)
//! --objects N       containers and blobs removed through ctr (default 1000)
//! --snapshot-ops N  ctr snapshot prepare/commit/remove rounds (default 50)
//! --rounds N        rounds of the ctr figures, daemons alternating (default 3)
//! --dir PATH        where the daemons' roots go (default /var/tmp)
//! --only NAME       crated or containerd
//! ```
//!
//! `--size-mib 0` skips the ingest and `--containers 0` the large listing,
//! leaving the ctr figures.

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
use crated_api::proxy::snapshots::SnapshotsProxy;
use crated_core::content::{ContentStore as _, WriterOptions};
use crated_core::snapshots::Snapshotter as _;
use crated_core::Namespace;
use tonic::transport::Channel;

use common::{crated_binary, median, Daemon};

const CHUNK: usize = 1 << 20;

struct Options {
    size_mib: usize,
    containers: usize,
    runs: usize,
    objects: usize,
    snapshot_ops: usize,
    rounds: usize,
    dir: PathBuf,
    only: Option<String>,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        size_mib: 1024,
        containers: 10_000,
        runs: 5,
        objects: 1000,
        snapshot_ops: 50,
        rounds: 3,
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
            "--objects" => o.objects = value()?.parse()?,
            "--snapshot-ops" => o.snapshot_ops = value()?.parse()?,
            "--rounds" => o.rounds = value()?.parse()?,
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

/// Where the ctr figures' objects live, apart from the large listing's.
fn ops_namespace() -> Namespace {
    Namespace::new("ops").unwrap()
}

fn request<T>(message: T) -> tonic::Request<T> {
    request_in(&namespace(), message)
}

fn request_in<T>(ns: &Namespace, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    set_grpc_namespace(&mut request, ns);
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

/// A container as `ctr run` makes one: containerd's default spec for it
/// (the spec is most of a container's record).
fn container(ns: &Namespace, id: String, i: usize) -> anyhow::Result<containers::Container> {
    let spec = crated_client::spec::generate(&crated_client::spec::SpecContext::new(ns, &id), &[])?;
    Ok(containers::Container {
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
            value: serde_json::to_vec(&spec)?,
        }),
        snapshotter: "overlayfs".into(),
        snapshot_key: id.clone(),
        id,
        ..Default::default()
    })
}

/// The size of the spec [`container`] gives each container.
fn spec_size() -> anyhow::Result<usize> {
    let spec = container(&ops_namespace(), "c-0-00000".into(), 0)?.spec;
    Ok(spec.map_or(0, |s| s.value.len()))
}

/// A label that keeps what the benchmark makes from the collector, as
/// ctr's own snapshot commands label theirs.
fn gc_root() -> std::collections::BTreeMap<String, String> {
    [("containerd.io/gc.root".to_string(), "bench".to_string())].into()
}

/// Calls `work(i)` for every `i` in `0..count` over eight concurrent
/// streams (stream k takes k, k + 8, …) and returns the results, grouped by
/// stream.
async fn in_streams<T, F, Fut>(count: usize, work: F) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<T>> + Send,
{
    const STREAMS: usize = 8;
    let mut tasks = Vec::new();
    for k in 0..STREAMS {
        let work = work.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in (k..count).step_by(STREAMS) {
                out.push(work(i).await?);
            }
            anyhow::Ok(out)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.extend(t.await??);
    }
    Ok(out)
}

/// Creates containers `ids` in `ns`; with `snapshots`, each gets the
/// active snapshot its `snapshot_key` names, as `ctr run` leaves them.
async fn create_containers(
    channel: Channel,
    ns: &Namespace,
    ids: &[String],
    snapshots: bool,
) -> anyhow::Result<()> {
    let (ns, ids) = (ns.clone(), std::sync::Arc::new(ids.to_vec()));
    in_streams(ids.len(), move |i| {
        let (channel, ns, id) = (channel.clone(), ns.clone(), ids[i].clone());
        async move {
            if snapshots {
                SnapshotsProxy::new(channel.clone(), "overlayfs", ns.clone())
                    .prepare(&id, "", gc_root())
                    .await?;
            }
            containers::containers_client::ContainersClient::new(channel)
                .create(request_in(
                    &ns,
                    containers::CreateContainerRequest {
                        container: Some(container(&ns, id, i)?),
                    },
                ))
                .await?;
            anyhow::Ok(())
        }
    })
    .await?;
    Ok(())
}

/// Commits `count` distinct 4 KiB blobs to `ns` and returns their digests.
async fn ingest_blobs(
    channel: Channel,
    ns: &Namespace,
    count: usize,
    round: usize,
) -> anyhow::Result<Vec<String>> {
    let (proxy, ns) = (ContentProxy::new(channel), ns.clone());
    in_streams(count, move |i| {
        let (proxy, ns) = (proxy.clone(), ns.clone());
        async move {
            let mut data = vec![0u8; 4096];
            data[..8].copy_from_slice(&(i as u64).to_le_bytes());
            data[8..16].copy_from_slice(&(round as u64).to_le_bytes());
            let mut w = proxy
                .writer(
                    &ns,
                    WriterOptions {
                        r#ref: format!("ops-blob-{round}-{i}"),
                        total: data.len() as u64,
                        ..Default::default()
                    },
                )
                .await?;
            w.write(&data).await?;
            let digest = w.digest().await?;
            w.commit(data.len() as u64, None, gc_root()).await?;
            anyhow::Ok(digest.to_string())
        }
    })
    .await
}

async fn list_containers(channel: Channel, expected: usize) -> anyhow::Result<Duration> {
    let mut client = containers::containers_client::ContainersClient::new(channel)
        .max_decoding_message_size(usize::MAX);
    let started = Instant::now();
    // The stream, as containerd's Go client and ctr list: 10,000 records
    // with `ctr run`'s spec are ~28 MB, beyond the 16 MiB both daemons
    // send in one message.
    let mut stream = client
        .list_stream(request(containers::ListContainersRequest {
            filters: vec![],
        }))
        .await?
        .into_inner();
    let mut listed = 0;
    while let Some(item) = stream.message().await? {
        listed += usize::from(item.container.is_some());
    }
    let took = started.elapsed();
    if listed != expected {
        bail!("listed {listed} containers, expected {expected}");
    }
    Ok(took)
}

/// Wall time of one Debian `ctr` in namespace `ns`, output discarded.
fn ctr<I, S>(address: &Path, ns: &Namespace, args: I) -> anyhow::Result<Duration>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = Command::new("/usr/bin/ctr");
    command
        .arg("--address")
        .arg(address)
        .args(["-n", ns.as_str()])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let out = command.output()?;
    let took = started.elapsed();
    if !out.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(took)
}

struct Row {
    name: &'static str,
    ingest: Option<Duration>,
    list: Option<Duration>,
    ctr_list: Option<Duration>,
    rss_kib: u64,
}

async fn measure(daemon: &Daemon, o: &Options) -> anyhow::Result<Row> {
    let channel = daemon.channel().await?;
    let size = o.size_mib * CHUNK;
    let mut ingests = Vec::new();
    // --size-mib 0: no ingest.
    let ingest_runs = if size == 0 { 0 } else { o.runs };
    for run in 0..ingest_runs {
        let took = ingest(channel.clone(), size, run).await?;
        eprintln!(
            "{}: ingest {} MiB in {took:.2?} ({:.0} MiB/s)",
            daemon.name,
            o.size_mib,
            mib_per_s(size, took)
        );
        ingests.push(took);
    }
    let mut lists = Vec::new();
    let mut ctr_lists = Vec::new();
    if o.containers > 0 {
        let started = Instant::now();
        let ids: Vec<String> = (0..o.containers).map(|i| format!("bench-{i:06}")).collect();
        create_containers(channel.clone(), &namespace(), &ids, false).await?;
        eprintln!(
            "{}: created {} containers in {:.2?}",
            daemon.name,
            o.containers,
            started.elapsed()
        );
        for _ in 0..o.runs {
            lists.push(list_containers(channel.clone(), o.containers).await?);
            ctr_lists.push(ctr(&daemon.address, &namespace(), ["containers", "ls"])?);
        }
    }
    Ok(Row {
        name: daemon.name,
        ingest: (!ingests.is_empty()).then(|| median(ingests)),
        list: (!lists.is_empty()).then(|| median(lists)),
        ctr_list: (!ctr_lists.is_empty()).then(|| median(ctr_lists)),
        rss_kib: daemon.rss_kib(),
    })
}

/// The metadata figures of one round, each through Debian's ctr.
struct CtrOps {
    snapshot_op: Duration,
    containers_ls: Duration,
    /// The daemon's CPU time per `containers ls`: what ctr's own start-up
    /// and decoding leave out.
    containers_ls_cpu: Duration,
    containers_rm: Duration,
    containers_rm_cpu: Duration,
    content_rm: Duration,
    content_rm_cpu: Duration,
}

/// Runs `ctr` once per chunk of 100 of `args`, after `verb`; the total.
fn ctr_chunks(
    address: &Path,
    ns: &Namespace,
    verb: &[&str],
    args: &[String],
) -> anyhow::Result<Duration> {
    let mut total = Duration::ZERO;
    for chunk in args.chunks(100) {
        total += ctr(
            address,
            ns,
            verb.iter().copied().chain(chunk.iter().map(String::as_str)),
        )?;
    }
    Ok(total)
}

async fn ctr_ops(daemon: &Daemon, o: &Options, round: usize) -> anyhow::Result<CtrOps> {
    let (address, ns) = (&daemon.address, ops_namespace());
    let started = Instant::now();
    for i in 0..o.snapshot_ops {
        let (key, name) = (
            format!("active-{round}-{i}"),
            format!("committed-{round}-{i}"),
        );
        ctr(address, &ns, ["snapshots", "prepare", &key])?;
        ctr(address, &ns, ["snapshots", "commit", &name, &key])?;
        ctr(address, &ns, ["snapshots", "rm", &name])?;
    }
    let snapshot_op = started.elapsed() / (3 * o.snapshot_ops.max(1)) as u32;

    let channel = daemon.channel().await?;
    let ids: Vec<String> = (0..o.objects)
        .map(|i| format!("c-{round}-{i:05}"))
        .collect();
    create_containers(channel.clone(), &ns, &ids, true).await?;
    let cpu_before = daemon.cpu_time();
    let containers_ls = median(
        (0..o.runs.max(1))
            .map(|_| ctr(address, &ns, ["containers", "ls"]))
            .collect::<anyhow::Result<_>>()?,
    );
    let containers_ls_cpu =
        daemon.cpu_time().saturating_sub(cpu_before) / u32::try_from(o.runs.max(1))?;
    let cpu_before = daemon.cpu_time();
    let containers_rm = ctr_chunks(address, &ns, &["containers", "rm"], &ids)?;
    let containers_rm_cpu = daemon.cpu_time().saturating_sub(cpu_before);
    let left = containers::containers_client::ContainersClient::new(channel.clone())
        .list(request_in(
            &ns,
            containers::ListContainersRequest { filters: vec![] },
        ))
        .await?
        .into_inner()
        .containers
        .len();
    if left != 0 {
        bail!(
            "{}: {left} containers left after ctr containers rm",
            daemon.name
        );
    }

    let digests = ingest_blobs(channel, &ns, o.objects, round).await?;
    let cpu_before = daemon.cpu_time();
    let content_rm = ctr_chunks(address, &ns, &["content", "rm"], &digests)?;
    let content_rm_cpu = daemon.cpu_time().saturating_sub(cpu_before);
    Ok(CtrOps {
        snapshot_op,
        containers_ls,
        containers_ls_cpu,
        containers_rm,
        containers_rm_cpu,
        content_rm,
        content_rm_cpu,
    })
}

fn show(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".into(), |d| format!("{d:.1?}"))
}

fn main() -> anyhow::Result<()> {
    let o = options()?;
    std::fs::create_dir_all(&o.dir)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let size = o.size_mib * CHUNK;
    let disk = median(
        (0..o.runs.max(1))
            .map(|_| disk_write(&o.dir, size.max(CHUNK)))
            .collect::<anyhow::Result<_>>()?,
    );
    eprintln!(
        "disk: {:.0} MiB/s sequential write + fsync",
        mib_per_s(size.max(CHUNK), disk)
    );
    let candidates: [(&'static str, PathBuf); 2] = [
        ("crated", crated_binary()?),
        ("containerd", "/usr/bin/containerd".into()),
    ];
    let mut daemons = Vec::new();
    for (name, binary) in candidates {
        if o.only.as_deref().is_some_and(|only| only != name) {
            continue;
        }
        daemons.push(Daemon::start(name, &binary, &o.dir)?);
    }
    let mut rows = Vec::new();
    for daemon in &daemons {
        rows.push(runtime.block_on(measure(daemon, &o))?);
    }
    // The ctr figures, the daemons taking turns each round.
    let mut ops: Vec<Vec<CtrOps>> = daemons.iter().map(|_| Vec::new()).collect();
    for round in 0..o.rounds {
        for (daemon, ops) in daemons.iter().zip(&mut ops) {
            let r = runtime.block_on(ctr_ops(daemon, &o, round))?;
            eprintln!(
                "{} round {round}: snapshot op {:.2?}, containers ls {:.1?}, containers rm {:.1?}, content rm {:.1?}",
                daemon.name, r.snapshot_op, r.containers_ls, r.containers_rm, r.content_rm
            );
            ops.push(r);
        }
    }

    println!();
    println!(
        "| daemon | ingest {} MiB over gRPC | of disk speed ({:.0} MiB/s) | `containers ls` of {} (gRPC List) | Debian `ctr containers ls` | daemon RSS after |",
        o.size_mib,
        mib_per_s(size.max(CHUNK), disk),
        o.containers
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for r in &rows {
        let ingest = r.ingest.map_or_else(
            || "- | -".to_string(),
            |d| {
                format!(
                    "{:.0} MiB/s ({d:.2?}) | {:.0} %",
                    mib_per_s(size, d),
                    100.0 * disk.as_secs_f64() / d.as_secs_f64()
                )
            },
        );
        println!(
            "| {} | {ingest} | {} | {} | {} MiB |",
            r.name,
            show(r.list),
            show(r.ctr_list),
            r.rss_kib / 1024
        );
    }
    if o.rounds > 0 {
        type Figure = fn(&CtrOps) -> Duration;
        let figures: [(String, Figure); 7] = [
            (
                "snapshot prepare / commit / remove via `ctr`, per op".into(),
                |r| r.snapshot_op,
            ),
            (
                format!(
                    "`ctr containers ls` with {} (specs of {} bytes)",
                    o.objects,
                    spec_size()?
                ),
                |r| r.containers_ls,
            ),
            (
                "the daemon's CPU time per `ctr containers ls` of those".into(),
                |r| r.containers_ls_cpu,
            ),
            (
                format!("`ctr containers rm` of {} (100 per call)", o.objects),
                |r| r.containers_rm,
            ),
            ("the daemon's CPU time for those".into(), |r| {
                r.containers_rm_cpu
            }),
            (
                format!("`ctr content rm` of {} blobs (100 per call)", o.objects),
                |r| r.content_rm,
            ),
            ("the daemon's CPU time for those".into(), |r| {
                r.content_rm_cpu
            }),
        ];
        println!();
        let names: Vec<&str> = daemons.iter().map(|d| d.name).collect();
        println!("| figure (Debian's ctr) | {} | ratio |", names.join(" | "));
        println!("| --- |{} --- |", " --- |".repeat(names.len()));
        for (label, figure) in figures {
            let medians: Vec<Duration> = ops
                .iter()
                .map(|rounds| median(rounds.iter().map(figure).collect()))
                .collect();
            let ratio = match medians.as_slice() {
                [ours, theirs] => format!("{:.2}×", ours.as_secs_f64() / theirs.as_secs_f64()),
                _ => "-".into(),
            };
            let cells: Vec<String> = medians.iter().map(|d| format!("{d:.2?}")).collect();
            println!("| {label} | {} | {ratio} |", cells.join(" | "));
        }
    }
    println!(
        "\nmedian of {} runs, {} ctr rounds; {} cores; roots under {}",
        o.runs,
        o.rounds,
        std::thread::available_parallelism().map_or(0, usize::from),
        o.dir.display()
    );
    Ok(())
}
