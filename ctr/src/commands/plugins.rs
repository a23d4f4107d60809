//! `ctr plugins ls`.

use std::collections::BTreeSet;

use clap::{Args, Subcommand};
use crated_api::containerd::services::introspection::v1 as pb;

use crate::client::{status_error, Client};
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

/// The suffix containerd puts on the init error of a skipped plugin.
const SKIP_PLUGIN: &str = "skip plugin";

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

fn platforms(plugin: &pb::Plugin) -> String {
    let set: BTreeSet<String> = plugin
        .platforms
        .iter()
        .map(|p| {
            let mut s = format!("{}/{}", p.os, p.architecture);
            if !p.variant.is_empty() {
                s.push('/');
                s.push_str(&p.variant);
            }
            s
        })
        .collect();
    set.into_iter().collect::<Vec<_>>().join(",")
}

/// Runs `ctr plugins …`.
pub async fn run(client: Client, command: Command) -> anyhow::Result<()> {
    let Command::Ls(args) = command;
    let mut service = pb::introspection_client::IntrospectionClient::new(client.channel.clone());
    let response = service
        .plugins(client.request(pb::PluginsRequest {
            filters: args.filters,
        }))
        .await
        .map_err(status_error)?
        .into_inner();
    if args.quiet {
        for plugin in &response.plugins {
            println!("{}", plugin.id);
        }
        return Ok(());
    }
    let mut w = TabWriter::new(4, 4);
    if args.detailed {
        for (i, plugin) in response.plugins.iter().enumerate() {
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
            if !plugin.platforms.is_empty() {
                w.line(format!("Platforms:\t {}", platforms(plugin)));
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
            if let Some(err) = &plugin.init_err {
                w.line("Error:\t");
                w.line(format!("\t Code:\t {}", code_name(err.code)));
                w.line(format!("\t Message:\t {}", err.message));
            }
        }
    } else {
        w.line("TYPE\tID\tPLATFORMS\tSTATUS\t");
        for plugin in &response.plugins {
            let status = match &plugin.init_err {
                None => "ok",
                Some(err) if err.message.contains(SKIP_PLUGIN) => "skip",
                Some(_) => "error",
            };
            let platforms = Some(platforms(plugin))
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "-".into());
            w.line(format!(
                "{}\t{}\t{}\t{}\t",
                plugin.r#type, plugin.id, platforms, status
            ));
        }
    }
    print!("{}", w.render());
    Ok(())
}
