//! `ctr containers ls|info|rm|label`.

use std::collections::BTreeMap;

use clap::Subcommand;
use crated_client::spec::SPEC_TYPE_URL;
use crated_core::containers::Container as Record;
use crated_core::descriptor::Any;
use crated_core::tasks::Status;
use serde_json::{json, Map, Value};

use crate::client::{user_error, Client};
use crate::commands::{label_args, labels_line};
use crate::gojson;
use crate::tabwriter::TabWriter;

/// `ctr containers …`
#[derive(Subcommand)]
pub enum Command {
    /// Create a container (record and snapshot) from an image.
    Create(crate::commands::run::ContainerArgs),
    /// List containers.
    #[command(alias = "list")]
    Ls {
        /// Print only the container ids.
        #[arg(short, long)]
        quiet: bool,
        /// Filters, e.g. `image~=busybox` or `labels."k"==v`.
        filters: Vec<String>,
    },
    /// Get info about a container, as JSON.
    Info {
        /// Only display the spec.
        #[arg(long)]
        spec: bool,
        /// The container id.
        id: Option<String>,
    },
    /// Delete one or more existing containers.
    #[command(aliases = ["delete", "del", "remove"])]
    Rm {
        /// Do not clean up the container's snapshot.
        #[arg(long)]
        keep_snapshot: bool,
        /// Container ids.
        ids: Vec<String>,
    },
    /// Checkpoint a container (its task through criu with --task) into a
    /// checkpoint image.
    Checkpoint(crate::commands::checkpoint::ContainerCheckpointArgs),
    /// Restore a container from a checkpoint image.
    Restore(crate::commands::checkpoint::RestoreArgs),
    /// Set and clear labels of a container (`key=` clears).
    Label {
        /// The container id.
        id: Option<String>,
        /// Labels as key=value (a bare key means `key=true`).
        labels: Vec<String>,
    },
}

/// Runs `ctr containers …`.
pub async fn run(client: Client, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Create(args) => return crate::commands::run::create(client, args).await,
        Command::Checkpoint(args) => {
            return crate::commands::checkpoint::container(&client, args).await
        }
        Command::Restore(args) => return crate::commands::checkpoint::restore(&client, args).await,
        Command::Ls { quiet, filters } => {
            let containers = client.containers(&filters).await.map_err(user_error)?;
            if quiet {
                for c in &containers {
                    println!("{}", c.id());
                }
                return Ok(());
            }
            let mut w = TabWriter::new(4, 4);
            w.line("CONTAINER\tIMAGE\tRUNTIME\t");
            for c in &containers {
                let c = c.record();
                let image = if c.image.is_empty() { "-" } else { &c.image };
                w.line(format!("{}\t{image}\t{}\t", c.id, c.runtime.name));
            }
            print!("{}", w.render());
        }
        Command::Info { spec, id } => {
            let id = required_id(id)?;
            let container = client.load_container(&id).await.map_err(user_error)?;
            let record = container.record();
            let decoded = match &record.spec {
                Some(any) if spec || !any.value.is_empty() => Some(decode_spec(any)?),
                None if spec => anyhow::bail!("container {id:?} has no spec"),
                _ => None,
            };
            let value = match decoded {
                Some(spec_json) if spec => spec_json,
                decoded => info_json(record, decoded),
            };
            println!("{}", gojson::to_string_indent(&value));
        }
        Command::Rm { keep_snapshot, ids } => {
            if ids.is_empty() {
                anyhow::bail!("must specify at least one container to delete: invalid argument");
            }
            let mut first_error = None;
            for id in ids {
                if let Err(err) = delete(&client, &id, keep_snapshot).await {
                    eprintln!("ctr: error: failed to delete container {id:?}: {err:#}");
                    first_error.get_or_insert(err);
                }
            }
            if let Some(err) = first_error {
                return Err(err);
            }
        }
        Command::Label { id, labels } => {
            let id = required_id(id)?;
            let mut container = client.load_container(&id).await.map_err(user_error)?;
            let updated = container
                .set_labels(label_args(&labels))
                .await
                .map_err(user_error)?;
            println!("{}", labels_line(&updated));
        }
    }
    Ok(())
}

fn required_id(id: Option<String>) -> anyhow::Result<String> {
    id.filter(|id| !id.is_empty())
        .ok_or_else(|| anyhow::anyhow!("container id must be provided: invalid argument"))
}

/// containerd's ctr delete: a container whose task has stopped (or never
/// started) goes with its task; a live task refuses. Unless kept, the
/// container's snapshot is removed first.
async fn delete(client: &Client, id: &str, keep_snapshot: bool) -> anyhow::Result<()> {
    let container = client.load_container(id).await.map_err(user_error)?;
    // Like containerd's client, any failure to load the task means there is
    // none (a daemon without a tasks service has no tasks).
    if let Ok(task) = container.task().await {
        let status = task.status().await.map_or(Status::Unknown, |p| p.status);
        if !matches!(status, Status::Stopped | Status::Created) {
            anyhow::bail!("cannot delete a non stopped container: {}", status.as_str());
        }
        task.delete().await.map_err(user_error)?;
    }
    container.delete(!keep_snapshot).await.map_err(user_error)
}

/// The spec of a container: JSON in an `Any` of the runtime-spec type.
fn decode_spec(any: &Any) -> anyhow::Result<Value> {
    if any.type_url != SPEC_TYPE_URL {
        anyhow::bail!("type with url {}: not found", any.type_url);
    }
    serde_json::from_slice(&any.value)
        .map_err(|err| anyhow::anyhow!("the container's spec is not valid JSON: {err}"))
}

/// The container as containerd's ctr prints it: Go's JSON of its
/// `containers.Container`, with the decoded spec, when there is one, after
/// the other fields in place of the raw `Any`.
fn info_json(c: &Record, spec: Option<Value>) -> Value {
    let mut out = Map::new();
    out.insert("ID".into(), json!(c.id));
    out.insert("Labels".into(), string_map(&c.labels));
    out.insert("Image".into(), json!(c.image));
    let runtime = c.runtime.clone();
    out.insert(
        "Runtime".into(),
        json!({"Name": runtime.name, "Options": runtime.options.as_ref().map(gojson::any)}),
    );
    if spec.is_none() {
        out.insert(
            "Spec".into(),
            c.spec.as_ref().map_or(Value::Null, gojson::any),
        );
    }
    out.insert("SnapshotKey".into(), json!(c.snapshot_key));
    out.insert("Snapshotter".into(), json!(c.snapshotter));
    out.insert("CreatedAt".into(), json!(gojson::system_time(c.created_at)));
    out.insert("UpdatedAt".into(), json!(gojson::system_time(c.updated_at)));
    let extensions = if c.extensions.is_empty() {
        Value::Null
    } else {
        let mut names: Vec<&String> = c.extensions.keys().collect();
        names.sort();
        Value::Object(
            names
                .into_iter()
                .map(|name| (name.clone(), gojson::any(&c.extensions[name])))
                .collect(),
        )
    };
    out.insert("Extensions".into(), extensions);
    if let Some(spec) = spec {
        out.insert("Spec".into(), spec);
    }
    Value::Object(out)
}

/// A Go `map[string]string`: keys sorted, `null` when nil.
fn string_map(map: &BTreeMap<String, String>) -> Value {
    if map.is_empty() {
        return Value::Null;
    }
    let mut pairs: Vec<(&String, &String)> = map.iter().collect();
    pairs.sort();
    Value::Object(
        pairs
            .into_iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect(),
    )
}
