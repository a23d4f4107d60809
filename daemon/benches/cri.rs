//! The CRI as a Kubernetes node drives it, crated beside Debian's
//! containerd 1.6.20 in the same run, both through cri-tools' crictl
//! (`cargo xtask deps` builds it): pod start (`crictl run`: RunPodSandbox +
//! CreateContainer + StartContainer) median and p95 over N pods on a CNI
//! bridge, daemon RSS with those pods running, the shims (count and total
//! PSS) and `crictl stats` (ListContainerStats) with M containers in those
//! pods, and removal of every pod (`crictl rmp -fa`).
//!
//! Everything runs inside a private network namespace the benchmark makes
//! (registry, daemons, pods), so no bridge or pod address reaches the
//! machine's own. Both daemons pull the same pause and busybox images from
//! a loopback registry (hosts.toml), use Debian's CNI plugins and runc,
//! and alternate for the given number of rounds.
//!
//! Options: `--pods N` (20), `--containers M` (50), `--rounds R` (2),
//! `--dir D` (a directory for the daemons' roots; default the temp dir),
//! `--logs L` (each daemon logs at debug level into `L/<daemon>-<round>.log`,
//! which crated's per-call and per-phase durations are in).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use common::{crated_binary, median, pss_kib, shims_of, Daemon};

struct Options {
    pods: usize,
    containers: usize,
    rounds: usize,
    dir: PathBuf,
    logs: Option<PathBuf>,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        pods: 20,
        containers: 50,
        rounds: 2,
        dir: std::env::temp_dir(),
        logs: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--pods" => o.pods = value()?.parse()?,
            "--containers" => o.containers = value()?.parse()?,
            "--rounds" => o.rounds = value()?.parse()?,
            "--dir" => o.dir = value()?.into(),
            "--logs" => o.logs = Some(value()?.into()),
            // cargo bench passes --bench.
            "--bench" => {}
            other => bail!("unknown option {other}"),
        }
    }
    if o.pods == 0 || o.containers < o.pods {
        bail!("--pods must be at least 1 and --containers at least --pods");
    }
    Ok(o)
}

/// crictl against one daemon.
struct Crictl {
    bin: PathBuf,
    endpoint: String,
}

impl Crictl {
    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.bin)
            .arg(format!("--runtime-endpoint={}", self.endpoint))
            .arg(format!("--image-endpoint={}", self.endpoint))
            .arg("--timeout=120s")
            .args(args)
            .output()
            .with_context(|| format!("run crictl {args:?}"))?;
        if !out.status.success() {
            bail!(
                "crictl {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

struct Row {
    daemon: &'static str,
    start_median: Duration,
    start_p95: Duration,
    rss_kib: u64,
    /// Shim processes with every container running, and their PSS.
    shims: usize,
    shim_pss_kib: u64,
    stats: Duration,
    remove_all: Duration,
}

/// The CRI section both daemons run with.
fn cri_section(pause: &str, cni: &Path, hosts: &Path) -> String {
    format!(
        "[plugins.\"io.containerd.grpc.v1.cri\"]\n\
         sandbox_image = {pause:?}\n\
         restrict_oom_score_adj = true\n\
         [plugins.\"io.containerd.grpc.v1.cri\".cni]\n\
         bin_dir = \"/usr/lib/cni\"\n\
         conf_dir = {cni:?}\n\
         [plugins.\"io.containerd.grpc.v1.cri\".registry]\n\
         config_path = {hosts:?}\n",
        cni = cni.display().to_string(),
        hosts = hosts.display().to_string(),
    )
}

fn measure(
    name: &'static str,
    binary: &Path,
    work: &Path,
    registry_host: &str,
    o: &Options,
    round: usize,
) -> anyhow::Result<Row> {
    let dir = work.join(format!("{name}-{round}"));
    let cni = dir.join("net.d");
    let hosts = dir.join("certs.d").join(registry_host);
    let ipam = dir.join("ipam");
    let logs = dir.join("logs");
    for d in [&cni, &hosts, &ipam, &logs] {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(
        hosts.join("hosts.toml"),
        format!(
            "server = \"http://{registry_host}\"\n[host.\"http://{registry_host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        ),
    )?;
    std::fs::write(
        cni.join("10-bench.conflist"),
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "bench",
            "plugins": [
                {"type": "bridge", "bridge": "bench0", "isGateway": true,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.88.30.0/24"}]], "dataDir": ipam}},
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        })
        .to_string(),
    )?;
    let pause = format!("{registry_host}/bench/pause:3.9");
    let busybox = format!("{registry_host}/bench/busybox:latest");
    let sections = cri_section(&pause, &cni, &dir.join("certs.d"));
    let log = o
        .logs
        .as_ref()
        .map(|l| l.join(format!("{name}-{round}.log")));
    let daemon = Daemon::start_with(name, binary, &o.dir, &sections, log.as_deref())?;
    let crictl = Crictl {
        bin: crated_testimages::cri_tool("crictl")
            .context("crictl is not built: run `cargo xtask deps`")?,
        endpoint: format!("unix://{}", daemon.address.display()),
    };
    // Images in place first: pod start is what is measured, not the pull.
    crictl.run(&["pull", &busybox])?;
    crictl.run(&["pull", &pause])?;

    let container = |pod: usize, n: usize| -> anyhow::Result<(PathBuf, PathBuf)> {
        let pod_json = dir.join(format!("pod-{pod}.json"));
        std::fs::write(
            &pod_json,
            serde_json::json!({
                "metadata": {"name": format!("bench-{pod}"), "namespace": "bench", "uid": format!("uid-{pod}")},
                "log_directory": logs.join(format!("pod-{pod}")),
                "linux": {}
            })
            .to_string(),
        )?;
        std::fs::create_dir_all(logs.join(format!("pod-{pod}")))?;
        let container_json = dir.join(format!("container-{pod}-{n}.json"));
        std::fs::write(
            &container_json,
            serde_json::json!({
                "metadata": {"name": format!("sleeper-{n}")},
                "image": {"image": busybox},
                "command": ["sleep", "86400"],
                "log_path": format!("sleeper-{n}.log")
            })
            .to_string(),
        )?;
        Ok((pod_json, container_json))
    };

    let mut starts = Vec::new();
    let mut pod_ids = Vec::new();
    for pod in 0..o.pods {
        let (pod_json, container_json) = container(pod, 0)?;
        let started = Instant::now();
        crictl.run(&[
            "run",
            container_json.to_str().unwrap_or_default(),
            pod_json.to_str().unwrap_or_default(),
        ])?;
        starts.push(started.elapsed());
        pod_ids.push(pod);
    }
    // RSS with the pods running, after the daemon settles.
    std::thread::sleep(Duration::from_secs(2));
    let rss_kib = daemon.rss_kib();

    // More containers, spread over the pods, for ListContainerStats.
    let ids = crictl.run(&["pods", "-q"])?;
    let ids: Vec<&str> = ids.split_whitespace().collect();
    for n in o.pods..o.containers {
        let pod = n % ids.len();
        let (pod_json, container_json) = container(pod, n)?;
        let id = crictl.run(&[
            "create",
            ids[ids.len() - 1 - pod],
            container_json.to_str().unwrap_or_default(),
            pod_json.to_str().unwrap_or_default(),
        ])?;
        crictl.run(&["start", id.trim()])?;
    }
    // Shims with every container up: one per pod when they are grouped.
    std::thread::sleep(Duration::from_secs(1));
    let shim_pids = shims_of(&daemon);
    let shim_pss_kib = shim_pids.iter().map(|p| pss_kib(*p)).sum();
    let mut stats = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let out = crictl.run(&["stats"])?;
        stats.push(started.elapsed());
        let rows = out.lines().count().saturating_sub(1);
        if rows < o.containers {
            bail!(
                "{name}: crictl stats listed {rows} containers, not {}",
                o.containers
            );
        }
    }

    let started = Instant::now();
    crictl.run(&["rmp", "-fa"])?;
    let remove_all = started.elapsed();

    let mut sorted = starts.clone();
    sorted.sort();
    let p95 = sorted[(sorted.len() * 95 / 100).min(sorted.len() - 1)];
    Ok(Row {
        daemon: name,
        start_median: median(starts),
        start_p95: p95,
        rss_kib,
        shims: shim_pids.len(),
        shim_pss_kib,
        stats: median(stats),
        remove_all,
    })
}

fn main() -> anyhow::Result<()> {
    let o = options()?;
    if let Some(logs) = &o.logs {
        std::fs::create_dir_all(logs).with_context(|| format!("create {}", logs.display()))?;
    }
    // Everything from here on (registry, daemons, shims, plugins, pods)
    // lives in a network namespace of its own.
    crated_testimages::enter_private_netns().context("enter a private network namespace")?;
    let work = tempfile::Builder::new()
        .prefix("bench-cri-")
        .tempdir_in(&o.dir)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let registry = crated_testimages::Registry::start(None)?;
    runtime.block_on(async {
        crated_testimages::push(
            &format!("{}/bench/pause:3.9", registry.host),
            &crated_testimages::pause()?,
        )
        .await?;
        crated_testimages::push(
            &format!("{}/bench/busybox:latest", registry.host),
            &crated_testimages::busybox()?,
        )
        .await
    })?;
    let candidates: [(&'static str, PathBuf); 2] = [
        ("crated", crated_binary()?),
        ("containerd", "/usr/bin/containerd".into()),
    ];
    let mut rows = Vec::new();
    for round in 0..o.rounds {
        for (name, binary) in &candidates {
            let row = measure(name, binary, work.path(), &registry.host, &o, round)?;
            eprintln!(
                "round {round} {name}: pod start median {:.1?} p95 {:.1?}; RSS {} KiB; {} shims, {} KiB PSS; stats {:.1?}; rmp -fa {:.2?}",
                row.start_median, row.start_p95, row.rss_kib, row.shims, row.shim_pss_kib, row.stats, row.remove_all
            );
            rows.push(row);
        }
    }
    println!();
    println!(
        "| daemon | `crictl run` median ({} pods) | p95 | daemon RSS with {} pods | shims for {} containers, PSS | `crictl stats`, {} containers | `crictl rmp -fa` |",
        o.pods, o.pods, o.containers, o.containers
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for r in &rows {
        println!(
            "| {} | {:.1?} | {:.1?} | {} KiB | {}, {} KiB | {:.1?} | {:.2?} |",
            r.daemon,
            r.start_median,
            r.start_p95,
            r.rss_kib,
            r.shims,
            r.shim_pss_kib,
            r.stats,
            r.remove_all
        );
    }
    let of = |name: &str, f: &dyn Fn(&Row) -> f64| -> f64 {
        let v: Vec<f64> = rows.iter().filter(|r| r.daemon == name).map(f).collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let ratio = |f: &dyn Fn(&Row) -> f64| of("crated", f) / of("containerd", f).max(f64::EPSILON);
    println!(
        "\ncrated / containerd (mean over {} rounds): pod start median {:.2}×, p95 {:.2}×, RSS {:.2}×, shim PSS {:.2}×, stats {:.2}×, removal {:.2}×; {} cores",
        o.rounds,
        ratio(&|r| r.start_median.as_secs_f64()),
        ratio(&|r| r.start_p95.as_secs_f64()),
        ratio(&|r| r.rss_kib as f64),
        ratio(&|r| r.shim_pss_kib as f64),
        ratio(&|r| r.stats.as_secs_f64()),
        ratio(&|r| r.remove_all.as_secs_f64()),
        std::thread::available_parallelism().map_or(0, usize::from),
    );
    Ok(())
}
