//! `ctr containers checkpoint|restore` and `ctr tasks checkpoint`: criu
//! dumps through the daemon, gathered into a checkpoint image.

use clap::Args;
use crated_client::checkpoint::{self, CheckpointOptions, RestoreOptions};
use crated_client::pull::{pull, NoProgress, PullOptions};

use crate::client::{user_error, Client};
use crate::registry::RegistryArgs;

/// `ctr containers checkpoint` arguments.
#[derive(Args)]
pub struct ContainerCheckpointArgs {
    /// Include the rw layer in the checkpoint.
    #[arg(long)]
    rw: bool,
    /// Include the image in the checkpoint.
    #[arg(long)]
    image: bool,
    /// Checkpoint the container's task (its processes, through criu).
    #[arg(long)]
    task: bool,
    /// The container id.
    container: Option<String>,
    /// The name of the checkpoint image.
    r#ref: Option<String>,
}

/// `ctr containers restore` arguments.
#[derive(Args)]
pub struct RestoreArgs {
    /// Restore the rw layer from the checkpoint.
    #[arg(long)]
    rw: bool,
    /// Restore the runtime and memory data from the checkpoint.
    #[arg(long)]
    live: bool,
    /// How to reach the registry when the checkpoint is not here yet.
    #[command(flatten)]
    registry: RegistryArgs,
    /// The id of the container to create.
    container: Option<String>,
    /// The checkpoint image.
    r#ref: Option<String>,
}

/// `ctr tasks checkpoint` arguments.
#[derive(Args)]
pub struct TaskCheckpointArgs {
    /// Stop the container after the checkpoint.
    #[arg(long)]
    exit: bool,
    /// Path to criu image files (kept there; no checkpoint image).
    #[arg(long)]
    image_path: Option<String>,
    /// Path to criu work files and logs.
    #[arg(long)]
    work_path: Option<String>,
    /// The container id.
    container: Option<String>,
}

fn required(value: Option<String>, what: &str) -> anyhow::Result<String> {
    value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| anyhow::anyhow!("{what} must be provided"))
}

/// `ctr containers checkpoint CONTAINER REF`.
pub async fn container(client: &Client, args: ContainerCheckpointArgs) -> anyhow::Result<()> {
    let id = required(args.container, "container id")?;
    let name = required(args.r#ref, "ref")?;
    let options = CheckpointOptions {
        task: args.task,
        image: args.image,
        rw: args.rw,
        ..Default::default()
    };
    checkpoint::checkpoint(client, &id, &name, &options)
        .await
        .map_err(user_error)?;
    Ok(())
}

/// `ctr tasks checkpoint CONTAINER`: prints the checkpoint image's name
/// (`containerd.io/checkpoint/<id>:<date>`, as containerd's).
pub async fn task(client: &Client, args: TaskCheckpointArgs) -> anyhow::Result<()> {
    let id = required(args.container, "container id")?;
    let date = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[month]-[day]-[year]-[hour]:[minute]:[second]"
        ))
        .unwrap_or_default();
    let name = format!("containerd.io/checkpoint/{id}:{date}");
    let options = CheckpointOptions {
        task: true,
        image: true,
        rw: true,
        exit: args.exit,
        image_path: args.image_path,
        work_path: args.work_path,
        labels: [("containerd.io/checkpoint".to_owned(), "true".to_owned())].into(),
        when_present: true,
    };
    let written = checkpoint::checkpoint(client, &id, &name, &options)
        .await
        .map_err(user_error)?;
    if written.is_some() {
        println!("{name}");
    }
    Ok(())
}

/// `ctr containers restore CONTAINER REF`: the checkpoint is fetched
/// first when it is not in the store.
pub async fn restore(client: &Client, args: RestoreArgs) -> anyhow::Result<()> {
    let id = required(args.container, "container id")?;
    let name = required(args.r#ref, "ref")?;
    if let Err(e) = crated_client::images::target(client, &name).await {
        if !e.is_not_found() {
            return Err(user_error(e));
        }
        let resolver = args.registry.resolver()?;
        pull(
            client,
            &resolver,
            &name,
            &PullOptions::default(),
            std::sync::Arc::new(NoProgress),
        )
        .await
        .map_err(user_error)?;
    }
    let options = RestoreOptions {
        live: args.live,
        rw: args.rw,
        ..Default::default()
    };
    checkpoint::restore(client, &id, &name, &options)
        .await
        .map_err(user_error)?;
    Ok(())
}
