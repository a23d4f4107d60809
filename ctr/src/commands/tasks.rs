//! `ctr tasks ls|start|kill|rm|ps|pause|resume|exec|metrics`, as
//! containerd's ctr.

use std::time::Duration;

use clap::Subcommand;
use crated_client::cio::{Fifos, FIFO_DIR};
use crated_core::tasks::Status;

use crate::client::{user_error, Client};
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
fn status_name(status: Status) -> String {
    status.as_str().to_ascii_uppercase()
}

/// Runs `ctr tasks …`.
pub async fn run(client: Client, command: Command) -> anyhow::Result<()> {
    let svc = &*client.services().tasks;
    let ns = client.namespace();
    match command {
        Command::Ls { quiet } => {
            let listed = svc.list(ns, &[]).await.map_err(user_error)?;
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
            let container = client.load_container(&id).await.map_err(user_error)?;
            let tty = container
                .spec()
                .ok()
                .and_then(|s| s.process().as_ref().and_then(|p| p.terminal()))
                .unwrap_or(false);
            let code = crate::commands::run::start_task(&container, tty, detach, None).await?;
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
            svc.kill(
                ns,
                &id,
                &exec_id.unwrap_or_default(),
                parse_signal(&signal)?,
                all,
            )
            .await
            .map_err(user_error)?;
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
            let processes = svc.pids(ns, &id).await.map_err(user_error)?;
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
        Command::Pause { id } => svc.pause(ns, &id).await.map_err(user_error)?,
        Command::Resume { id } => svc.resume(ns, &id).await.map_err(user_error)?,
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
fn go_time(t: std::time::SystemTime) -> String {
    let ts = prost_types::Timestamp::from(t);
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

    let metric = client
        .services()
        .tasks
        .metrics(client.namespace(), &[format!("id=={id}")])
        .await
        .map_err(user_error)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no metrics for task {id:?}"))?;
    let data = metric.data.unwrap_or_default();
    let mut w = TabWriter::new(1, 4);
    w.line("ID\tTIMESTAMP\t");
    w.line(format!("{}\t{}\t", metric.id, go_time(metric.timestamp)));
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
    let container = client.load_container(id).await.map_err(user_error)?;
    let task = container.task().await.map_err(user_error)?;
    let process = task.status().await.map_err(user_error)?;
    if process.stdio.stdout.is_empty() {
        anyhow::bail!("task {id:?} has no stdio to attach to (it was created without fifos)");
    }
    let fifos = Fifos::existing(&process.stdio);
    let attached = crate::commands::run::attach_terminal(&fifos, process.terminal);
    let code = crate::commands::run::interact(&task, process.terminal).await;
    attached.wait(Duration::from_secs(5)).await;
    code
}

async fn remove(
    client: &Client,
    id: &str,
    force: bool,
    exec_id: Option<&str>,
) -> anyhow::Result<()> {
    let container = client.load_container(id).await.map_err(user_error)?;
    let task = container.task().await.map_err(user_error)?;
    if let Some(exec_id) = exec_id {
        task.process(exec_id).delete().await.map_err(user_error)?;
        return Ok(());
    }
    let process = task.status().await.map_err(user_error)?;
    let stopped = matches!(process.status, Status::Stopped | Status::Created);
    if !stopped {
        if !force {
            anyhow::bail!(
                "task must be stopped before deletion: {}",
                process.status.as_str()
            );
        }
        task.kill(libc::SIGKILL as u32, true)
            .await
            .map_err(user_error)?;
        let _ = tokio::time::timeout(Duration::from_secs(10), task.wait()).await;
    }
    task.delete().await.map_err(user_error)?;
    // The fifos a detached run left for attach go with the task.
    let stdout = std::path::Path::new(&process.stdio.stdout);
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
    let container = client.load_container(id).await.map_err(user_error)?;
    let spec = container
        .spec()
        .map_err(|e| anyhow::anyhow!("container {id:?} has no valid spec: {e}"))?;
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(args));
    process.set_terminal(Some(tty));
    if let Some(cwd) = cwd {
        process.set_cwd(cwd.into());
    }
    let task = container.task().await.map_err(user_error)?;
    let fifos =
        Fifos::new(std::path::Path::new(FIFO_DIR), exec_id, true, tty).map_err(user_error)?;
    let attached = crate::commands::run::attach_terminal(&fifos, tty);
    let exec = task
        .exec(exec_id, &process, fifos.stdio())
        .await
        .map_err(user_error)?;
    exec.start().await.map_err(user_error)?;
    let code = crate::commands::run::interact(&exec, tty).await;
    attached.wait(Duration::from_secs(5)).await;
    let _ = exec.delete().await;
    code
}
