//! `ctr plugins ls`.

use clap::{Args, Subcommand};
use crated_core::introspection::{PluginInfo, PluginStatus};

use crate::client::{user_error, Client};
use crate::tabwriter::TabWriter;

/// `ctr plugins …`
#[derive(Subcommand)]
pub enum Command {
    /// List crated plugins.
    #[command(alias = "list")]
    Ls(LsArgs),
}

/// `ctr plugins ls` arguments.
#[derive(Args)]
pub struct LsArgs {
    /// Print only the plugin ids.
    #[arg(short, long)]
    quiet: bool,
    /// Print detailed information about each plugin.
    #[arg(short, long)]
    detailed: bool,
    /// Filters, e.g. `type==io.containerd.grpc.v1` or `id~=^n`.
    filters: Vec<String>,
}

/// Go's `codes.Code.String()`.
fn code_name(code: i32) -> String {
    let name = match code {
        0 => "OK",
        1 => "Canceled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        other => return format!("Code({other})"),
    };
    name.to_owned()
}

/// A plugin's init error as containerd's ctr shows it: the gRPC code and
/// message (a skipped plugin's ends in "skip plugin").
fn init_error(plugin: &PluginInfo) -> Option<(i32, String)> {
    match &plugin.status {
        PluginStatus::Ok => None,
        PluginStatus::Skipped(reason) => Some((
            tonic::Code::Unknown as i32,
            format!(
                "{reason}: {}",
                crated_api::services::introspection::SKIP_PLUGIN
            ),
        )),
        PluginStatus::Failed(kind, message) => {
            Some((crated_api::status::grpc_code(*kind) as i32, message.clone()))
        }
    }
}

/// Runs `ctr plugins …`.
pub async fn run(client: Client, command: Command) -> anyhow::Result<()> {
    let Command::Ls(args) = command;
    let plugins: Vec<PluginInfo> = client
        .services()
        .introspection
        .plugins(&args.filters)
        .await
        .map_err(user_error)?;
    if args.quiet {
        for plugin in &plugins {
            println!("{}", plugin.id);
        }
        return Ok(());
    }
    let mut w = TabWriter::new(4, 4);
    if args.detailed {
        for (i, plugin) in plugins.iter().enumerate() {
            if i > 0 {
                w.line("\t\t\t");
            }
            w.line(format!("Type:\t {}", plugin.r#type));
            w.line(format!("ID:\t {}", plugin.id));
            if !plugin.requires.is_empty() {
                w.line("Requires:\t");
                for r in &plugin.requires {
                    w.line(format!("\t {r}"));
                }
            }
            if !plugin.exports.is_empty() {
                w.line("Exports:\t");
                let mut exports: Vec<_> = plugin.exports.iter().collect();
                exports.sort();
                for (k, v) in exports {
                    w.line(format!("\t {k} \t {v}"));
                }
            }
            if !plugin.capabilities.is_empty() {
                w.line(format!("Capabilities:\t {}", plugin.capabilities.join(",")));
            }
            if let Some((code, message)) = init_error(plugin) {
                w.line("Error:\t");
                w.line(format!("\t Code:\t {}", code_name(code)));
                w.line(format!("\t Message:\t {message}"));
            }
        }
    } else {
        w.line("TYPE\tID\tPLATFORMS\tSTATUS\t");
        for plugin in &plugins {
            let status = match &plugin.status {
                PluginStatus::Ok => "ok",
                PluginStatus::Skipped(_) => "skip",
                PluginStatus::Failed(..) => "error",
            };
            // crated's plugins run on the host's platform: none list one.
            w.line(format!("{}\t{}\t-\t{}\t", plugin.r#type, plugin.id, status));
        }
    }
    print!("{}", w.render());
    Ok(())
}
