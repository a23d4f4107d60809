//! `ctr`: the command-line client of crated, command-compatible with
//! containerd's ctr.

mod client;
mod commands;
mod duration;
mod gojson;
mod progress;
mod registry;
mod tabwriter;
mod units;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use crated_core::Namespace;

/// The daemon socket when neither `--address` nor `CONTAINERD_ADDRESS` says.
const DEFAULT_ADDRESS: &str = "/run/crated/crated.sock";

#[derive(Parser)]
#[command(
    name = "ctr",
    version,
    about = "ctr: the command-line client of crated (containerd's ctr, in Rust)"
)]
struct Cli {
    /// Address of crated's gRPC server.
    #[arg(short, long, global = true, env = "CONTAINERD_ADDRESS", default_value = DEFAULT_ADDRESS)]
    address: String,
    /// Namespace to use.
    #[arg(short, long, global = true, env = "CONTAINERD_NAMESPACE", default_value = crated_core::namespaces::DEFAULT)]
    namespace: String,
    /// Total timeout for ctr commands (Go duration, e.g. 10s; 0 = none).
    #[arg(long, global = true, default_value = "0", value_parser = duration::parse)]
    timeout: Duration,
    /// Timeout for connecting to crated (Go duration; 0 = none).
    #[arg(long, global = true, default_value = "0", value_parser = duration::parse)]
    connect_timeout: Duration,
    /// Enable debug output in logs.
    #[arg(long, global = true)]
    debug: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the client and server versions.
    Version,
    /// Provides information about crated plugins.
    #[command(alias = "plugin", subcommand)]
    Plugins(commands::plugins::Command),
    /// Manage content.
    #[command(subcommand)]
    Content(commands::content::Command),
    /// Display crated events.
    #[command(aliases = ["event"])]
    Events {
        /// Filters, e.g. `topic=="/namespaces/create"` or `namespace==default`.
        filters: Vec<String>,
    },
    /// Manage images.
    #[command(aliases = ["image", "i"], subcommand)]
    Images(commands::images::Command),
    /// Manage containers.
    #[command(aliases = ["container", "c"], subcommand)]
    Containers(commands::containers::Command),
    /// Install a new package: an image's bin/ (and lib/) files into the
    /// opt directory.
    Install(commands::install::InstallArgs),
    /// Run a container from an image.
    Run(commands::run::RunArgs),
    /// Manage tasks (running containers).
    #[command(aliases = ["task", "t"], subcommand)]
    Tasks(commands::tasks::Command),
    /// Manage snapshots.
    #[command(alias = "snapshot")]
    Snapshots(commands::snapshots::Snapshots),
    /// Manage leases.
    #[command(alias = "lease", subcommand)]
    Leases(commands::leases::Command),
    /// Manage namespaces.
    #[command(aliases = ["namespace", "ns"], subcommand)]
    Namespaces(commands::namespaces::Command),
    /// OCI tools.
    #[command(subcommand)]
    Oci(commands::oci::Command),
    /// Print a shell completion script (`source <(ctr completion bash)`;
    /// the same scripts are under contrib/autocomplete/).
    Completion {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

fn nonzero(d: Duration) -> Option<Duration> {
    Some(d).filter(|d| !d.is_zero())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // containerd's ctr bounds the whole command by --timeout.
    match nonzero(cli.timeout) {
        Some(limit) => tokio::time::timeout(limit, command(cli))
            .await
            .map_err(|_| anyhow::anyhow!("context deadline exceeded (--timeout {limit:?})"))?,
        None => command(cli).await,
    }
}

async fn command(cli: Cli) -> anyhow::Result<()> {
    let namespace = Namespace::new(cli.namespace.clone())?;
    let connect = client::connect(
        &cli.address,
        namespace.clone(),
        nonzero(cli.connect_timeout),
    );
    match cli.command {
        Command::Version => commands::version::run(connect.await).await,
        Command::Plugins(cmd) => commands::plugins::run(connect.await?, cmd).await,
        Command::Namespaces(cmd) => commands::namespaces::run(connect.await?, cmd).await,
        Command::Content(cmd) => commands::content::run(connect.await?, cmd).await,
        Command::Images(cmd) => commands::images::run(connect.await?, cmd).await,
        Command::Containers(cmd) => commands::containers::run(connect.await?, cmd).await,
        Command::Install(args) => commands::install::run(connect.await?, args).await,
        Command::Run(args) => commands::run::run(connect.await?, args).await,
        Command::Tasks(cmd) => commands::tasks::run(connect.await?, cmd).await,
        Command::Snapshots(cmd) => commands::snapshots::run(connect.await?, cmd).await,
        Command::Leases(cmd) => commands::leases::run(connect.await?, cmd).await,
        Command::Events { filters } => commands::events::run(connect.await?, filters).await,
        // These need no daemon: `connect` is never awaited.
        Command::Oci(cmd) => commands::oci::run(&namespace, cmd),
        Command::Completion { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(shell, &mut Cli::command(), "ctr", &mut std::io::stdout());
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = cli.debug;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("ctr: start async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // A copy of our stdin may still be blocked reading it: not waited for.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ctr: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    /// clap checks flag clashes (a subcommand's `-a` against the global
    /// `--address`) only when a command is parsed: check them all here.
    #[test]
    fn every_command_line_definition_is_consistent() {
        use clap::CommandFactory as _;
        super::Cli::command().debug_assert();
    }
}
