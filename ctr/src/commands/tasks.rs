//! `ctr tasks ls|start|kill|rm|ps|pause|resume|exec|metrics`, as
//! containerd's ctr.

use std::time::Duration;

use clap::Subcommand;
use crated_api::containerd::services::tasks::v1 as pb;
use crated_api::containerd::v1::types::Status;
use crated_client::cio::{FifoSet, FIFO_DIR};
use tonic::transport::Channel;

use crate::client::{status_error, Client};
use crate::tabwriter::TabWriter;

/// `ctr tasks …`
#[derive(Subcommand)]
pub enum Command {
    /// List tasks.
    #[command(alias = "list")]
    Ls {
        /// Print only the task ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Create and start a container's task.
    Start {
        /// Detach from the task once started.
        #[arg(short, long)]
        detach: bool,
        /// The container id.
        id: String,
    },
    /// Attach to a running task's stdio (the fifos it was created with).
    Attach {
        /// The container id.
        id: String,
    },
    /// Signal a task (SIGTERM by default).
    Kill {
        /// The signal, by name or number.
        #[arg(short, long, default_value = "SIGTERM")]
        signal: String,
        /// Signal an exec process instead of the task.
        #[arg(long)]
        exec_id: Option<String>,
        /// Signal every process of the container (no `-a`: that is the
        /// global `--address` here).
        #[arg(long)]
        all: bool,
        /// The container id.
        id: String,
    },
    /// Delete tasks (they must have exited, unless forced).
    #[command(aliases = ["delete", "del", "remove"])]
    Rm {
        /// Kill a running task first.
        #[arg(short, long)]
        force: bool,
        /// Delete an exec process instead.
        #[arg(long)]
        exec_id: Option<String>,
        /// Container ids.
        ids: Vec<String>,
    },
    /// List a task's processes.
    Ps {
        /// The container id.
        id: String,
    },
    /// Checkpoint a task (criu) into a checkpoint image, whose name is
    /// printed.
    Checkpoint(crate::commands::checkpoint::TaskCheckpointArgs),
    /// Pause a task (cgroup freezer).
    Pause {
        /// The container id.
        id: String,
    },
    /// Resume a paused task.
    Resume {
        /// The container id.
        id: String,
    },
    /// Run another process in a task's container.
    Exec {
        /// The exec process id (required).
        #[arg(long)]
        exec_id: String,
        /// Allocate a tty.
        #[arg(short, long)]
        tty: bool,
        /// Working directory.
        #[arg(long)]
        cwd: Option<String>,
        /// The container id.
        id: String,
        /// Command and arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print a task's cgroup metrics (cgroups v1 or v2).
    #[command(alias = "metric")]
    Metrics {
        /// The container id.
        id: String,
    },
}

fn tasks(client: &Client) -> pb::tasks_client::TasksClient<Channel> {
    pb::tasks_client::TasksClient::new(client.channel.clone())
}

/// A signal by name (`SIGTERM`, `TERM`) or number.
pub fn parse_signal(s: &str) -> anyhow::Result<u32> {
    if let Ok(n) = s.parse::<u32>() {
        return Ok(n);
    }
    let name = s.to_ascii_uppercase();
    let name = if name.starts_with("SIG") {
        name
    } else {
        format!("SIG{name}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|sig| sig as u32)
        .map_err(|_| anyhow::anyhow!("unknown signal {s:?}"))
}

/// The name ctr prints for a status.
fn status_name(status: i32) -> &'static str {
    match Status::try_from(status).unwrap_or(Status::Unknown) {
        Status::Unknown => "UNKNOWN",
        Status::Created => "CREATED",
        Status::Running => "RUNNING",
        Status::Stopped => "STOPPED",
        Status::Paused => "PAUSED",
        Status::Pausing => "PAUSING",
    }
}

/// Runs `ctr tasks …`.
pub async fn run(client: Client, command: Command) -> anyhow::Result<()> {
    let mut svc = tasks(&client);
    match command {
        Command::Ls { quiet } => {
            let listed = svc
                .list(client.request(pb::ListTasksRequest::default()))
                .await
                .map_err(status_error)?
                .into_inner()
                .tasks;
            if quiet {
                for t in &listed {
                    println!("{}", t.id);
                }
                return Ok(());
            }
            let mut w = TabWriter::new(4, 4);
            w.line("TASK\tPID\tSTATUS\t");
            for t in &listed {
                w.line(format!("{}\t{}\t{}\t", t.id, t.pid, status_name(t.status)));
            }
            print!("{}", w.render());
        }
        Command::Start { detach, id } => {
            // As containerd's ctr: the container's task is created here,
            // with a tty if its spec asks for one.
            let (container, spec) = container_spec(&client, &id).await?;
            let tty = spec
                .and_then(|s| s["process"]["terminal"].as_bool())
                .unwrap_or(false);
            let code = crate::commands::run::start_task(
                &client,
                &id,
                &container.snapshotter,
                tty,
                detach,
                None,
            )
            .await?;
            if code != 0 {
                std::process::exit(code as i32);
            }
        }
        Command::Attach { id } => {
            let code = attach(&client, &id).await?;
            if code != 0 {
                std::process::exit(code as i32);
            }
        }
        Command::Kill {
            signal,
            exec_id,
            all,
            id,
        } => {
            svc.kill(client.request(pb::KillRequest {
                container_id: id,
                exec_id: exec_id.unwrap_or_default(),
                signal: parse_signal(&signal)?,
                all,
            }))
            .await
            .map_err(status_error)?;
        }
        Command::Rm {
            force,
            exec_id,
            ids,
        } => {
            let mut failed = None;
            for id in ids {
                let result = remove(&client, &id, force, exec_id.as_deref()).await;
                if let Err(e) = result {
                    eprintln!("ctr: failed to delete task {id:?}: {e}");
                    failed = Some(e);
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Command::Ps { id } => {
            let processes = svc
                .list_pids(client.request(pb::ListPidsRequest { container_id: id }))
                .await
                .map_err(status_error)?
                .into_inner()
                .processes;
            let mut w = TabWriter::new(1, 1);
            w.line("PID\tINFO");
            for p in processes {
                let info = if p.info.is_some() {
                    "&ProcessDetails{}"
                } else {
                    "-"
                };
                w.line(format!("{}\t{info}", p.pid));
            }
            print!("{}", w.render());
        }
        Command::Checkpoint(args) => crate::commands::checkpoint::task(&client, args).await?,
        Command::Pause { id } => {
            svc.pause(client.request(pb::PauseTaskRequest { container_id: id }))
                .await
                .map_err(status_error)?;
        }
        Command::Resume { id } => {
            svc.resume(client.request(pb::ResumeTaskRequest { container_id: id }))
                .await
                .map_err(status_error)?;
        }
        Command::Exec {
            exec_id,
            tty,
            cwd,
            id,
            args,
        } => {
            let code = exec(&client, &id, &exec_id, tty, cwd.as_deref(), args).await?;
            if code != 0 {
                std::process::exit(code as i32);
            }
        }
        Command::Metrics { id } => metrics(&client, &id).await?,
    }
    Ok(())
}

/// Go's `time.Time` `String()`: `2006-01-02 15:04:05.999999999 +0000 UTC`.
fn go_time(ts: &prost_types::Timestamp) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(ts.seconds) else {
        return String::new();
    };
    let mut fraction = format!("{:09}", ts.nanos.max(0));
    while fraction.ends_with('0') {
        fraction.pop();
    }
    let fraction = if fraction.is_empty() {
        String::new()
    } else {
        format!(".{fraction}")
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}{fraction} +0000 UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `tasks metrics`: the cgroup figures containerd's ctr prints, from the
/// shim's `io.containerd.cgroups.v1.Metrics` or `v2.Metrics`.
async fn metrics(client: &Client, id: &str) -> anyhow::Result<()> {
    use crated_api::cgroups::{v1, v2};
    use prost::Message as _;

    let metric = tasks(client)
        .metrics(client.request(pb::MetricsRequest {
            filters: vec![format!("id=={id}")],
        }))
        .await
        .map_err(status_error)?
        .into_inner()
        .metrics
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no metrics for task {id:?}"))?;
    let data = metric.data.unwrap_or_default();
    let mut w = TabWriter::new(1, 4);
    w.line("ID\tTIMESTAMP\t");
    w.line(format!(
        "{}\t{}\t",
        metric.id,
        metric.timestamp.as_ref().map(go_time).unwrap_or_default()
    ));
    w.line("");
    w.line("METRIC\tVALUE\t");
    let list = |v: &[u64]| {
        format!(
            "[{}]",
            v.iter().map(u64::to_string).collect::<Vec<_>>().join(" ")
        )
    };
    match data.type_url.trim_start_matches("type.googleapis.com/") {
        "io.containerd.cgroups.v1.Metrics" => {
            let m = v1::Metrics::decode(data.value.as_slice())?;
            if let Some(mem) = &m.memory {
                let usage = mem.usage.unwrap_or_default();
                w.line(format!("memory.usage_in_bytes\t{}\t", usage.usage));
                w.line(format!("memory.limit_in_bytes\t{}\t", usage.limit));
                w.line(format!("memory.stat.cache\t{}\t", mem.total_cache));
            }
            if let Some(cpu) = &m.cpu {
                let usage = cpu.usage.clone().unwrap_or_default();
                w.line(format!("cpuacct.usage\t{}\t", usage.total));
                w.line(format!("cpuacct.usage_percpu\t{}\t", list(&usage.per_cpu)));
            }
            if let Some(pids) = &m.pids {
                w.line(format!("pids.current\t{}\t", pids.current));
                w.line(format!("pids.limit\t{}\t", pids.limit));
            }
        }
        "io.containerd.cgroups.v2.Metrics" => {
            let m = v2::Metrics::decode(data.value.as_slice())?;
            if let Some(pids) = &m.pids {
                w.line(format!("pids.current\t{}\t", pids.current));
                w.line(format!("pids.limit\t{}\t", pids.limit));
            }
            if let Some(cpu) = &m.cpu {
                w.line(format!("cpu.usage_usec\t{}\t", cpu.usage_usec));
                w.line(format!("cpu.user_usec\t{}\t", cpu.user_usec));
                w.line(format!("cpu.system_usec\t{}\t", cpu.system_usec));
                w.line(format!("cpu.nr_periods\t{}\t", cpu.nr_periods));
                w.line(format!("cpu.nr_throttled\t{}\t", cpu.nr_throttled));
                w.line(format!("cpu.throttled_usec\t{}\t", cpu.throttled_usec));
            }
            if let Some(mem) = &m.memory {
                w.line(format!("memory.usage\t{}\t", mem.usage));
                w.line(format!("memory.usage_limit\t{}\t", mem.usage_limit));
                w.line(format!("memory.swap_usage\t{}\t", mem.swap_usage));
                w.line(format!("memory.swap_limit\t{}\t", mem.swap_limit));
            }
        }
        other => anyhow::bail!("cannot convert metric data of type {other:?} to cgroups metrics"),
    }
    print!("{}", w.render());
    Ok(())
}

/// `tasks attach`: our stdio on the task's fifos until it exits; its exit
/// status.
async fn attach(client: &Client, id: &str) -> anyhow::Result<u32> {
    let process = tasks(client)
        .get(client.request(pb::GetRequest {
            container_id: id.to_owned(),
            exec_id: String::new(),
        }))
        .await
        .map_err(status_error)?
        .into_inner()
        .process
        .unwrap_or_default();
    if process.stdout.is_empty() {
        anyhow::bail!("task {id:?} has no stdio to attach to (it was created without fifos)");
    }
    let fifos = FifoSet::existing(&process.stdin, &process.stdout, &process.stderr);
    let attached = fifos.attach();
    let code = wait(client, id, "").await?;
    tokio::task::spawn_blocking(move || attached.wait(Duration::from_secs(5))).await?;
    Ok(code)
}

/// Container `id`'s record and its spec (`None` if it holds no valid one).
async fn container_spec(
    client: &Client,
    id: &str,
) -> anyhow::Result<(
    crated_api::containerd::services::containers::v1::Container,
    Option<serde_json::Value>,
)> {
    use crated_api::containerd::services::containers::v1 as containers;
    let container = containers::containers_client::ContainersClient::new(client.channel.clone())
        .get(client.request(containers::GetContainerRequest { id: id.to_owned() }))
        .await
        .map_err(status_error)?
        .into_inner()
        .container
        .unwrap_or_default();
    let spec = container
        .spec
        .as_ref()
        .and_then(|s| serde_json::from_slice(&s.value).ok());
    Ok((container, spec))
}

/// Waits for a process to exit; its exit status.
pub async fn wait(client: &Client, id: &str, exec_id: &str) -> anyhow::Result<u32> {
    let mut request = tonic::Request::new(pb::WaitRequest {
        container_id: id.to_owned(),
        exec_id: exec_id.to_owned(),
    });
    crated_api::metadata::set_grpc_namespace(&mut request, &client.namespace);
    Ok(tasks(client)
        .wait(request)
        .await
        .map_err(status_error)?
        .into_inner()
        .exit_status)
}

async fn remove(
    client: &Client,
    id: &str,
    force: bool,
    exec_id: Option<&str>,
) -> anyhow::Result<()> {
    let mut svc = tasks(client);
    if let Some(exec_id) = exec_id {
        svc.delete_process(client.request(pb::DeleteProcessRequest {
            container_id: id.to_owned(),
            exec_id: exec_id.to_owned(),
        }))
        .await
        .map_err(status_error)?;
        return Ok(());
    }
    let process = svc
        .get(client.request(pb::GetRequest {
            container_id: id.to_owned(),
            exec_id: String::new(),
        }))
        .await
        .map_err(status_error)?
        .into_inner()
        .process
        .unwrap_or_default();
    let stopped = matches!(
        Status::try_from(process.status),
        Ok(Status::Stopped) | Ok(Status::Created)
    );
    if !stopped {
        if !force {
            anyhow::bail!(
                "task must be stopped before deletion: {}",
                status_name(process.status).to_lowercase()
            );
        }
        let waiting = wait(client, id, "");
        svc.kill(client.request(pb::KillRequest {
            container_id: id.to_owned(),
            exec_id: String::new(),
            signal: libc::SIGKILL as u32,
            all: true,
        }))
        .await
        .map_err(status_error)?;
        let _ = tokio::time::timeout(Duration::from_secs(10), waiting).await;
    }
    svc.delete(client.request(pb::DeleteTaskRequest {
        container_id: id.to_owned(),
    }))
    .await
    .map_err(status_error)?;
    // The fifos a detached run left for attach go with the task.
    let stdout = std::path::Path::new(&process.stdout);
    if let Some(dir) = stdout
        .parent()
        .filter(|d| d.starts_with(FIFO_DIR) && *d != std::path::Path::new(FIFO_DIR))
    {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}

/// `tasks exec`: the container's spec process with `args`, stdio attached;
/// returns the exit status.
async fn exec(
    client: &Client,
    id: &str,
    exec_id: &str,
    tty: bool,
    cwd: Option<&str>,
    args: Vec<String>,
) -> anyhow::Result<u32> {
    if exec_id.is_empty() {
        anyhow::bail!("exec-id must be provided");
    }
    let spec = container_spec(client, id)
        .await?
        .1
        .ok_or_else(|| anyhow::anyhow!("container {id:?} has no valid spec"))?;
    let mut process = spec["process"].clone();
    process["args"] = serde_json::json!(args);
    process["terminal"] = serde_json::json!(tty);
    if let Some(cwd) = cwd {
        process["cwd"] = serde_json::json!(cwd);
    }
    let fifos = FifoSet::new(std::path::Path::new(FIFO_DIR), exec_id, true, tty)?;
    let attached = fifos.attach();
    let mut svc = tasks(client);
    svc.exec(client.request(pb::ExecProcessRequest {
        container_id: id.to_owned(),
        stdin: FifoSet::path(&fifos.stdin),
        stdout: fifos.stdout.display().to_string(),
        stderr: FifoSet::path(&fifos.stderr),
        terminal: tty,
        spec: Some(prost_types::Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".to_owned(),
            value: serde_json::to_vec(&process)?,
        }),
        exec_id: exec_id.to_owned(),
    }))
    .await
    .map_err(status_error)?;
    let waiting = wait(client, id, exec_id);
    svc.start(client.request(pb::StartRequest {
        container_id: id.to_owned(),
        exec_id: exec_id.to_owned(),
    }))
    .await
    .map_err(status_error)?;
    let code = waiting.await?;
    tokio::task::spawn_blocking(move || attached.wait(Duration::from_secs(5))).await?;
    let _ = svc
        .delete_process(client.request(pb::DeleteProcessRequest {
            container_id: id.to_owned(),
            exec_id: exec_id.to_owned(),
        }))
        .await;
    Ok(code)
}
