//! `crated`: containerd, re-built in Rust.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use crated_daemon::config::Config;
use crated_daemon::{builtins, logging, memory, server};

#[derive(Parser)]
#[command(
    name = "crated",
    version,
    about = "crated: a container runtime daemon, wire-compatible with containerd"
)]
struct Cli {
    /// Path to the configuration file.
    #[arg(short, long, global = true)]
    config: Option<PathBuf>,
    /// Set the logging level [trace, debug, info, warn, error].
    #[arg(short, long)]
    log_level: Option<String>,
    /// Set the logging format [text, json].
    #[arg(long)]
    log_format: Option<String>,
    /// Address for crated's gRPC server.
    #[arg(short, long)]
    address: Option<PathBuf>,
    /// crated root directory.
    #[arg(long)]
    root: Option<PathBuf>,
    /// crated state directory.
    #[arg(long)]
    state: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Information on the crated config.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Check a stopped daemon's root and state against each other: records
    /// whose blobs or snapshots are gone, files and snapshots nothing
    /// records, bundles and mounts of no container. Exit status as
    /// fsck(8): 0 clean, 1 all repaired, 4 problems left, 8 failed.
    Fsck {
        /// Repair what is safe to repair, and say what was done.
        #[arg(long)]
        repair: bool,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the full default config, with every plugin's section.
    Default,
    /// Print the config crated would run with (file and flags merged).
    Dump,
}

fn default_config() -> Config {
    let mut config = Config::default();
    for reg in builtins::builtins() {
        if let Some(section) = reg.default_config() {
            config.plugins.insert(reg.uri(), section);
        }
    }
    for (key, value) in crated_runtime_v2::Timeouts::defaults() {
        config
            .timeouts
            .insert(key.to_owned(), crated_core::duration::format(value));
    }
    config
}

fn effective(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(root) = &cli.root {
        config.root = root.clone();
    }
    if let Some(state) = &cli.state {
        config.state = state.clone();
    }
    if let Some(address) = &cli.address {
        config.grpc.address = address.clone();
    }
    if let Some(level) = &cli.log_level {
        config.debug.level = level.clone();
    }
    if let Some(format) = &cli.log_format {
        config.debug.format = format.clone();
    }
    for (what, path) in [
        ("--root", &config.root),
        ("--state", &config.state),
        ("--address", &config.grpc.address),
    ] {
        if !path.is_absolute() {
            anyhow::bail!("{what} {} must be an absolute path", path.display());
        }
    }
    Ok(config)
}

fn print_toml(config: &Config) -> anyhow::Result<()> {
    print!("{}", toml::to_string(config).context("render config")?);
    Ok(())
}

/// How often the daemon looks whether freed memory is worth returning, and
/// how far its anonymous memory or the allocator's free bytes must grow
/// past the last trim for the next (see `crated_daemon::memory`).
const TRIM_INTERVAL_SECS: u64 = 5;
const TRIM_THRESHOLD: u64 = 2 << 20;
/// The allocator's arenas (see `crated_daemon::memory::limit_arenas`).
const MALLOC_ARENAS: i32 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = (|| -> anyhow::Result<()> {
        match &cli.command {
            Some(Command::Config {
                command: ConfigCommand::Default,
            }) => print_toml(&default_config()),
            Some(Command::Config {
                command: ConfigCommand::Dump,
            }) => print_toml(&effective(&cli)?),
            Some(Command::Fsck { repair }) => {
                let config = effective(&cli)?;
                let options = crated_fsck::Options {
                    root: config.root.clone(),
                    state: config.state.clone(),
                    repair: *repair,
                };
                match crated_fsck::check(&options) {
                    Ok(report) => {
                        print!("{report}");
                        std::process::exit(report.exit_code());
                    }
                    Err(err) => {
                        eprintln!("crated fsck: {err}");
                        std::process::exit(8);
                    }
                }
            }
            None => {
                // Before any thread of the daemon starts or allocates.
                memory::tune_allocator();
                memory::limit_arenas(MALLOC_ARENAS);
                let config = effective(&cli)?;
                let level = logging::parse_level(&config.debug.level)?;
                let format = logging::Format::parse(&config.debug.format)?;
                logging::init(level, format);
                // Runs as long as the daemon does.
                let _trimmer = memory::spawn_trimmer(memory::TrimPolicy {
                    interval: std::time::Duration::from_secs(TRIM_INTERVAL_SECS),
                    threshold: TRIM_THRESHOLD,
                    when_quiet: true,
                });
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .thread_name("crated")
                    .build()
                    .context("start async runtime")?;
                runtime.block_on(server::run(config))
            }
        }
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Logging may not be set up yet (bad config): say it plainly.
            eprintln!("crated: {err:#}");
            ExitCode::FAILURE
        }
    }
}
