//! Run benchmark: `ctr run --rm IMAGE id true` latency (median and p95),
//! the time for 50 containers to be running (`ctr run -d`, one after the
//! other), and the PSS of each idle shim with 50 running — crated with our
//! ctr beside containerd 1.6 with Debian's ctr, both running Debian's runc
//! shim (`containerd-shim-runc-v2`), on the same machine in the same run.
//!
//! Run it with `cargo xtask bench run`; options after `--`:
//!
//! ```text
//! --runs N        sequential run --rm (default 30)
//! --containers N  containers kept running (default 50)
//! --dir PATH      where the daemons' roots go (default /var/tmp)
//! ```

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use common::{crated_binary, workspace_binary, Daemon};

struct Options {
    runs: usize,
    containers: usize,
    dir: PathBuf,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        runs: 30,
        containers: 50,
        dir: "/var/tmp".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--runs" => o.runs = value()?.parse()?,
            "--containers" => o.containers = value()?.parse()?,
            "--dir" => o.dir = value()?.into(),
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

/// PSS of a process, in KiB.
fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Shims serving `daemon` (their command line names its socket).
fn shims_of(daemon: &Daemon) -> Vec<u32> {
    let address = daemon.address.display().to_string();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("containerd-shim") && cmdline.contains(&address) {
            out.push(pid);
        }
    }
    out
}

struct Row {
    name: &'static str,
    median: Duration,
    p95: Duration,
    start_many: Duration,
    pss_per_shim: u64,
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
}

fn measure(c: &Candidate, daemon: &Daemon, image: &str, o: &Options) -> anyhow::Result<Row> {
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
    Ok(Row {
        name: c.name,
        median,
        p95,
        start_many,
        pss_per_shim,
    })
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
        },
        Candidate {
            name: "crated + our ctr + Debian's shim",
            tag: "mixed",
            daemon_name: "crated",
            binary: crated_binary()?,
            ctr: workspace_binary("ctr")?,
            // By path: by name crated finds our shim beside itself first.
            shim: Some("/usr/bin/containerd-shim-runc-v2".into()),
        },
        Candidate {
            name: "containerd 1.6 + its ctr + its shim",
            tag: "theirs",
            daemon_name: "containerd",
            binary: "/usr/bin/containerd".into(),
            ctr: "/usr/bin/ctr".into(),
            shim: None,
        },
    ];
    let mut rows = Vec::new();
    for c in &candidates {
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
    println!(
        "\n{} runs each; {} cores; roots under {}",
        o.runs,
        std::thread::available_parallelism().map_or(0, usize::from),
        o.dir.display()
    );
    Ok(())
}
