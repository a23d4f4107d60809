//! Run benchmark: `ctr run --rm IMAGE id true` latency (median and p95),
//! the time for 50 containers to be running (`ctr run -d`, one after the
//! other), and the PSS of each idle shim with 50 running, on the same
//! machine in the same run, for four combinations: crated with our ctr and
//! our shim; crated driven by Debian's ctr (the same client containerd gets,
//! so the daemons alone are compared); crated with our ctr and Debian's
//! shim; containerd 1.6 with Debian's ctr and shim.
//!
//! Then the daemons' memory: resident at idle right after start, and
//! anonymous memory at idle after the whole workload (the pull, the runs,
//! the 50 tasks, then 1,000 blobs and 1,000 containers through Debian's ctr
//! for both daemons, everything removed), `--settle` seconds after the last
//! removal.
//!
//! Run it with `cargo xtask bench run`; options after `--`:
//!
//! ```text
//! --runs N        sequential run --rm (default 30)
//! --containers N  containers kept running (default 50)
//! --dir PATH      where the daemons' roots go (default /var/tmp)
//! --objects N     blobs and containers of the memory workload (default 1000)
//! --settle S      idle seconds before memory is read (default 15)
//! --only TAG      only this combination: ours, debctr, mixed or theirs
//! ```

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use common::{crated_binary, pss_kib, shims_of, workspace_binary, Daemon};

struct Options {
    runs: usize,
    containers: usize,
    dir: PathBuf,
    objects: usize,
    settle: u64,
    only: Option<String>,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        runs: 30,
        containers: 50,
        dir: "/var/tmp".into(),
        objects: 1000,
        settle: 15,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--runs" => o.runs = value()?.parse()?,
            "--containers" => o.containers = value()?.parse()?,
            "--dir" => o.dir = value()?.into(),
            "--objects" => o.objects = value()?.parse()?,
            "--settle" => o.settle = value()?.parse()?,
            "--only" => o.only = Some(value()?),
            "--bench" => {}
            other => bail!("unknown option {other:?}"),
        }
    }
    Ok(o)
}

/// A ctr invocation against `daemon` in this benchmark's namespace.
fn ctr(bin: &Path, daemon: &Daemon, args: &[&str]) -> anyhow::Result<std::process::Output> {
    let out = Command::new(bin)
        .arg("--address")
        .arg(&daemon.address)
        .args(["-n", "bench"])
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!(
            "{} {args:?}: {}",
            daemon.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

struct Row {
    name: &'static str,
    tag: &'static str,
    median: Duration,
    p95: Duration,
    start_many: Duration,
    pss_per_shim: u64,
    /// KiB: resident at idle right after start; anonymous at idle after
    /// the workload (None where the candidate skips the memory workload).
    rss_at_start: u64,
    anon_at_start: u64,
    anon_after: Option<u64>,
}

/// One daemon + ctr + shim combination.
struct Candidate {
    /// For the table.
    name: &'static str,
    /// For container ids.
    tag: &'static str,
    daemon_name: &'static str,
    binary: PathBuf,
    ctr: PathBuf,
    /// A shim binary (`--runtime`), else the default runtime's.
    shim: Option<PathBuf>,
    /// Whether to run the memory workload (once per daemon is enough).
    memory: bool,
}

fn measure(c: &Candidate, daemon: &Daemon, image: &str, o: &Options) -> anyhow::Result<Row> {
    std::thread::sleep(Duration::from_secs(2));
    let rss_at_start = daemon.status_kib("VmRSS");
    let anon_at_start = daemon.status_kib("RssAnon");
    let runtime = c.shim.as_ref().map(|s| s.display().to_string());
    let run = |extra: &[&str]| -> anyhow::Result<()> {
        let mut args = vec!["run"];
        if let Some(r) = &runtime {
            args.extend(["--runtime", r.as_str()]);
        }
        args.extend_from_slice(extra);
        ctr(&c.ctr, daemon, &args).map(|_| ())
    };
    let tag = c.tag;
    ctr(&c.ctr, daemon, &["images", "pull", "--plain-http", image])?;
    // One untimed run warms caches (shim binary, runc, image snapshot).
    run(&["--rm", image, &format!("{tag}-warm"), "true"])?;
    let mut runs = Vec::new();
    for i in 0..o.runs {
        let id = format!("{tag}-r{i}");
        let started = Instant::now();
        run(&["--rm", image, &id, "true"])?;
        runs.push(started.elapsed());
    }
    runs.sort();
    let median = runs[runs.len() / 2];
    let p95 = runs[(runs.len() * 95 / 100).min(runs.len() - 1)];

    let started = Instant::now();
    for i in 0..o.containers {
        run(&["-d", image, &format!("{tag}-c{i}"), "sleep", "100000"])?;
    }
    let start_many = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let shims = shims_of(daemon);
    let pss: u64 = shims.iter().map(|p| pss_kib(*p)).sum();
    let pss_per_shim = if shims.is_empty() {
        0
    } else {
        pss / shims.len() as u64
    };
    eprintln!("{}: {} shims, {pss} KiB PSS in all", c.name, shims.len());
    for i in 0..o.containers {
        let id = format!("{tag}-c{i}");
        let _ = ctr(&c.ctr, daemon, &["tasks", "kill", "-s", "SIGKILL", &id]);
    }
    for i in 0..o.containers {
        let id = format!("{tag}-c{i}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while ctr(&c.ctr, daemon, &["tasks", "rm", &id]).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = ctr(&c.ctr, daemon, &["containers", "rm", &id]);
    }
    let anon_after = if c.memory {
        Some(memory_workload(c, daemon, image, o)?)
    } else {
        None
    };
    Ok(Row {
        name: c.name,
        tag: c.tag,
        median,
        p95,
        start_many,
        pss_per_shim,
        rss_at_start,
        anon_at_start,
        anon_after,
    })
}

/// `objects` blobs ingested and `objects` containers created (each with its
/// snapshot), all through Debian's ctr, four clients at a time; then all
/// removed, 100 per call as a user would; then the daemon's anonymous
/// memory once it has been idle for `settle` seconds.
fn memory_workload(
    c: &Candidate,
    daemon: &Daemon,
    image: &str,
    o: &Options,
) -> anyhow::Result<u64> {
    let debian_ctr = Path::new("/usr/bin/ctr");
    let tag = c.tag;
    // Distinct per blob, so each is stored; its digest names it for removal.
    let blob = |i: usize| format!("{tag} memory benchmark blob {i}\n");
    let workers = 4;
    let started = Instant::now();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                scope.spawn(move || -> anyhow::Result<()> {
                    for i in (w..o.objects).step_by(workers) {
                        let mut child = Command::new(debian_ctr)
                            .arg("--address")
                            .arg(&daemon.address)
                            .args(["-n", "bench", "content", "ingest"])
                            .arg(format!("{tag}-blob-{i}"))
                            .stdin(std::process::Stdio::piped())
                            .stdout(std::process::Stdio::null())
                            .spawn()?;
                        if let Some(mut stdin) = child.stdin.take() {
                            use std::io::Write as _;
                            stdin.write_all(blob(i).as_bytes())?;
                        }
                        if !child.wait()?.success() {
                            bail!("{}: content ingest {i} failed", daemon.name);
                        }
                        let id = format!("{tag}-m{i}");
                        ctr(debian_ctr, daemon, &["containers", "create", image, &id])?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
        }
        Ok(())
    })?;
    eprintln!(
        "{}: {} blobs and containers in {:.1?}",
        c.name,
        o.objects,
        started.elapsed()
    );
    let ids: Vec<String> = (0..o.objects).map(|i| format!("{tag}-m{i}")).collect();
    for chunk in ids.chunks(100) {
        let mut args = vec!["containers", "rm"];
        args.extend(chunk.iter().map(String::as_str));
        ctr(debian_ctr, daemon, &args)?;
    }
    let digests: Vec<String> = (0..o.objects)
        .map(|i| crated_core::digest::Digest::sha256(blob(i).as_bytes()).to_string())
        .collect();
    for chunk in digests.chunks(100) {
        let mut args = vec!["content", "rm"];
        args.extend(chunk.iter().map(String::as_str));
        ctr(debian_ctr, daemon, &args)?;
    }
    std::thread::sleep(Duration::from_secs(o.settle));
    Ok(daemon.status_kib("RssAnon"))
}

fn main() -> anyhow::Result<()> {
    let o = options()?;
    std::fs::create_dir_all(&o.dir)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let registry = crated_testimages::Registry::start(None)?;
    let image = format!("{}/bench/busybox:latest", registry.host);
    runtime.block_on(crated_testimages::push(
        &image,
        &crated_testimages::busybox()?,
    ))?;
    let candidates = [
        Candidate {
            name: "crated + our ctr + our shim",
            tag: "ours",
            daemon_name: "crated",
            binary: crated_binary()?,
            ctr: workspace_binary("ctr")?,
            shim: Some(workspace_binary("containerd-shim-runc-v2")?),
            memory: true,
        },
        Candidate {
            // The daemon alone against containerd: the same client for both.
            name: "crated + Debian's ctr + our shim",
            tag: "debctr",
            daemon_name: "crated",
            binary: crated_binary()?,
            ctr: "/usr/bin/ctr".into(),
            shim: None,
            memory: false,
        },
        Candidate {
            name: "crated + our ctr + Debian's shim",
            tag: "mixed",
            daemon_name: "crated",
            binary: crated_binary()?,
            ctr: workspace_binary("ctr")?,
            // By path: by name crated finds our shim beside itself first.
            shim: Some("/usr/bin/containerd-shim-runc-v2".into()),
            memory: false,
        },
        Candidate {
            name: "containerd 1.6 + its ctr + its shim",
            tag: "theirs",
            daemon_name: "containerd",
            binary: "/usr/bin/containerd".into(),
            ctr: "/usr/bin/ctr".into(),
            shim: None,
            memory: true,
        },
    ];
    let mut rows = Vec::new();
    for c in &candidates {
        if o.only.as_ref().is_some_and(|only| only != c.tag) {
            continue;
        }
        let daemon = Daemon::start(c.daemon_name, &c.binary, &o.dir)?;
        let row = measure(c, &daemon, &image, &o)?;
        eprintln!(
            "{}: run --rm median {:.1?}, p95 {:.1?}; {} containers in {:.2?}; {} KiB PSS per shim",
            c.name, row.median, row.p95, o.containers, row.start_many, row.pss_per_shim
        );
        rows.push(row);
        let _ = std::fs::remove_dir("/run/containerd/runc/bench");
    }
    println!();
    println!(
        "| daemon, its ctr, shim | `ctr run --rm … true` median | p95 | {} × `ctr run -d` until all running | PSS per idle shim ({} running) |",
        o.containers, o.containers
    );
    println!("| --- | --- | --- | --- | --- |");
    for r in &rows {
        println!(
            "| {} | {:.1?} | {:.1?} | {:.2?} | {} KiB |",
            r.name, r.median, r.p95, r.start_many, r.pss_per_shim
        );
    }
    println!();
    println!(
        "| daemon | RSS idle at start | of it anonymous | anonymous memory idle after the workload ({} blobs, {} containers, {} tasks, all removed, {} s idle) |",
        o.objects, o.objects, o.containers, o.settle
    );
    println!("| --- | --- | --- | --- |");
    for r in &rows {
        if let Some(anon) = r.anon_after {
            println!(
                "| {} | {} KiB | {} KiB | {} KiB |",
                r.name, r.rss_at_start, r.anon_at_start, anon
            );
        }
    }
    let row = |tag: &str| rows.iter().find(|r| r.tag == tag);
    if let (Some(a), Some(d), Some(b)) = (row("ours"), row("debctr"), row("theirs")) {
        let ratio = |x: f64, y: f64| if y > 0.0 { x / y } else { f64::NAN };
        println!(
            "\ncrated / containerd: run --rm median {:.2}× (both with Debian's ctr: {:.2}×), {} containers {:.2}× ({:.2}×), shim PSS {:.2}×, RSS at start {:.2}×, anonymous memory after {:.2}×",
            ratio(a.median.as_secs_f64(), b.median.as_secs_f64()),
            ratio(d.median.as_secs_f64(), b.median.as_secs_f64()),
            o.containers,
            ratio(a.start_many.as_secs_f64(), b.start_many.as_secs_f64()),
            ratio(d.start_many.as_secs_f64(), b.start_many.as_secs_f64()),
            ratio(a.pss_per_shim as f64, b.pss_per_shim as f64),
            ratio(a.rss_at_start as f64, b.rss_at_start as f64),
            ratio(
                a.anon_after.unwrap_or(0) as f64,
                b.anon_after.unwrap_or(0) as f64
            ),
        );
    }
    println!(
        "\n{} runs each; {} cores; roots under {}",
        o.runs,
        std::thread::available_parallelism().map_or(0, usize::from),
        o.dir.display()
    );
    Ok(())
}
