//! `ctr snapshots ls|prepare|view|mounts|commit|rm|info|usage|label|tree`
//! (and `diff`, in `snapshot_diff`).

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use clap::{Args, Subcommand};
use crated_core::mount::Mount;
use crated_core::snapshots::{Info, Labels};
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::client::Client;
use crate::commands::{label_args, labels_line};
use crate::gojson;
use crate::tabwriter::TabWriter;
use crate::units::bytes_size;

/// `ctr snapshots [--snapshotter NAME] …`
#[derive(Args)]
pub struct Snapshots {
    /// Snapshotter name.
    #[arg(long, env = "CONTAINERD_SNAPSHOTTER", default_value = "overlayfs")]
    snapshotter: String,
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// List snapshots.
    #[command(alias = "list")]
    Ls,
    /// Prepare a snapshot from a committed snapshot.
    Prepare(CreateArgs),
    /// Create a read-only snapshot from a committed snapshot.
    View(CreateArgs),
    /// Print the mount commands of a snapshot.
    #[command(aliases = ["m", "mount"])]
    Mounts {
        /// Where the mount commands mount.
        target: String,
        /// The snapshot.
        key: String,
    },
    /// Commit an active snapshot into the provided name.
    Commit {
        /// The name of the committed snapshot.
        name: String,
        /// The active snapshot to commit.
        key: String,
    },
    /// Remove snapshots.
    #[command(aliases = ["delete", "del", "remove"])]
    Rm {
        /// Snapshot keys.
        keys: Vec<String>,
    },
    /// Get info about a snapshot, as JSON.
    Info {
        /// The snapshot.
        key: String,
    },
    /// Disk usage of snapshots (all when none are named).
    Usage {
        /// Display sizes in bytes.
        #[arg(short = 'b')]
        bytes: bool,
        /// Snapshot keys.
        keys: Vec<String>,
    },
    /// Add or clear labels of a snapshot (`key=` clears).
    Label {
        /// The snapshot.
        key: String,
        /// Labels as key=value.
        labels: Vec<String>,
    },
    /// Display a tree view of snapshot branches.
    Tree,
    /// Write the layer of a snapshot's changes (against its parent, or a
    /// second snapshot) to stdout.
    Diff(crate::commands::snapshot_diff::DiffArgs),
}

/// `prepare` and `view` arguments.
#[derive(Args)]
pub struct CreateArgs {
    /// Print the mount commands for this target.
    #[arg(short, long)]
    target: Option<String>,
    /// Print the mounts as JSON.
    #[arg(long)]
    mounts: bool,
    /// The new snapshot's key.
    key: String,
    /// The committed snapshot it is based on.
    parent: Option<String>,
}

/// `containerd.io/gc.root` set to now, as containerd's ctr marks the
/// snapshots it makes so the collector keeps them.
pub fn gc_root() -> Labels {
    let now = OffsetDateTime::from(SystemTime::now())
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default();
    [("containerd.io/gc.root".to_owned(), now)].into()
}

fn print_mounts(target: &str, mounts: &[Mount]) {
    for m in mounts {
        println!(
            "mount -t {} {} {target} -o {}",
            m.r#type,
            m.source,
            m.options.join(",")
        );
    }
}

/// Go's JSON of `[]mount.Mount`.
fn mounts_json(mounts: &[Mount]) -> Value {
    Value::Array(
        mounts
            .iter()
            .map(|m| json!({"Type": m.r#type, "Source": m.source, "Options": m.options}))
            .collect(),
    )
}

/// Go's JSON of `snapshots.Info`: empty parent and labels left out.
fn info_json(info: &Info) -> Value {
    let mut out = Map::new();
    out.insert("Kind".into(), json!(info.kind.as_str()));
    out.insert("Name".into(), json!(info.name));
    if !info.parent.is_empty() {
        out.insert("Parent".into(), json!(info.parent));
    }
    if !info.labels.is_empty() {
        out.insert("Labels".into(), json!(info.labels));
    }
    let ts = gojson::system_time;
    out.insert("Created".into(), json!(ts(info.created_at)));
    out.insert("Updated".into(), json!(ts(info.updated_at)));
    Value::Object(out)
}

/// Prints branches from each snapshot without a parent, children indented
/// under `\_`, in walk order, as containerd's ctr.
fn print_tree(infos: &[Info]) {
    let mut order: Vec<String> = Vec::new();
    let mut parents: HashMap<String, String> = HashMap::new();
    let mut children: HashMap<String, Vec<String>> = HashMap::new();
    for info in infos {
        if !order.contains(&info.name) {
            order.push(info.name.clone());
        }
        parents.insert(info.name.clone(), info.parent.clone());
        if !info.parent.is_empty() {
            if !order.contains(&info.parent) {
                // A placeholder until the parent itself is walked.
                order.push(info.parent.clone());
            }
            children
                .entry(info.parent.clone())
                .or_default()
                .push(info.name.clone());
        }
    }
    fn node(name: &str, children: &HashMap<String, Vec<String>>, level: usize) {
        let mut prefix = "  ".repeat(level);
        if level > 0 {
            prefix.push_str("\\_");
        }
        println!("{prefix} {name}");
        for child in children.get(name).into_iter().flatten() {
            node(child, children, level + 1);
        }
    }
    for name in &order {
        if parents.get(name).is_none_or(String::is_empty) {
            node(name, &children, 0);
        }
    }
}

/// Runs `ctr snapshots …`.
pub async fn run(client: Client, args: Snapshots) -> anyhow::Result<()> {
    let sn = client
        .snapshotter(&args.snapshotter, None)
        .map_err(crate::client::user_error)?;
    match args.command {
        Command::Ls => {
            let mut w = TabWriter::new(1, 1);
            w.line("KEY\tPARENT\tKIND\t");
            for info in sn.walk(&[]).await? {
                w.line(format!("{}\t{}\t{}\t", info.name, info.parent, info.kind));
            }
            print!("{}", w.render());
        }
        Command::Prepare(a) => {
            let mounts = sn
                .prepare(&a.key, a.parent.as_deref().unwrap_or(""), gc_root())
                .await?;
            report(&a, &mounts);
        }
        Command::View(a) => {
            let mounts = sn
                .view(&a.key, a.parent.as_deref().unwrap_or(""), Labels::new())
                .await?;
            report(&a, &mounts);
        }
        Command::Mounts { target, key } => print_mounts(&target, &sn.mounts(&key).await?),
        Command::Commit { name, key } => sn.commit(&name, &key, gc_root()).await?,
        Command::Rm { keys } => {
            for key in keys {
                sn.remove(&key)
                    .await
                    .map_err(|e| anyhow::anyhow!("failed to remove {key:?}: {e}"))?;
            }
        }
        Command::Info { key } => {
            let info = sn.stat(&key).await?;
            println!("{}", gojson::to_string_indent(&info_json(&info)));
        }
        Command::Usage { bytes, keys } => {
            let size = |s: i64| {
                if bytes {
                    s.to_string()
                } else {
                    bytes_size(u64::try_from(s).unwrap_or(0))
                }
            };
            let keys = if keys.is_empty() {
                sn.walk(&[]).await?.into_iter().map(|i| i.name).collect()
            } else {
                keys
            };
            let mut w = TabWriter::new(1, 1);
            w.line("KEY\tSIZE\tINODES\t");
            for key in keys {
                let usage = sn.usage(&key).await?;
                w.line(format!("{key}\t{}\t{}\t", size(usage.size), usage.inodes));
            }
            print!("{}", w.render());
        }
        Command::Label { key, labels } => {
            let labels = label_args(&labels);
            let info = if labels.is_empty() {
                // Nothing to change: nothing is cleared either.
                sn.stat(&key).await?
            } else {
                let paths: Vec<String> = labels.keys().map(|k| format!("labels.{k}")).collect();
                let given: BTreeMap<String, String> =
                    labels.into_iter().filter(|(_, v)| !v.is_empty()).collect();
                let mut info = sn.stat(&key).await?;
                info.labels = given;
                sn.update(info, &paths).await?
            };
            println!("{}", labels_line(&info.labels));
        }
        Command::Tree => print_tree(&sn.walk(&[]).await?),
        Command::Diff(diff) => {
            crate::commands::snapshot_diff::run(&client, &args.snapshotter, diff).await?
        }
    }
    Ok(())
}

fn report(args: &CreateArgs, mounts: &[Mount]) {
    if let Some(target) = &args.target {
        print_mounts(target, mounts);
    }
    if args.mounts {
        println!("{}", gojson::to_string_indent(&mounts_json(mounts)));
    }
}
