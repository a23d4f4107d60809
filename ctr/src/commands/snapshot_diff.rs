//! `ctr snapshots diff`: a layer made by the daemon's diff service from a
//! snapshot and its parent (or from two snapshots), written to stdout, as
//! containerd's ctr (`rootfs.CreateDiff`).

use std::io::Write as _;

use clap::Args;
use crated_api::proxy::content::ContentProxy;
use crated_api::proxy::snapshots::SnapshotsProxy;
use crated_client::leases::Temporary;
use crated_core::content::ContentStore as _;
use crated_core::mount::Mount;
use crated_core::snapshots::{Kind, Labels, Snapshotter as _};

use crate::client::Client;
use crate::commands::label_args;

/// `ctr snapshots diff` arguments.
#[derive(Args)]
pub struct DiffArgs {
    /// Media type of the layer to make.
    #[arg(long, default_value = crated_core::diff::MEDIA_TYPE_LAYER_GZIP)]
    media_type: String,
    /// Content upload reference to use.
    #[arg(long = "ref")]
    reference: Option<String>,
    /// Keep the layer's content (a gc root); up to its creator to delete.
    #[arg(long)]
    keep: bool,
    /// Labels of the layer blob (key=value).
    #[arg(long)]
    label: Vec<String>,
    /// The snapshot (or, with a second one, the lower side).
    id_a: Option<String>,
    /// The upper side; the default compares the first with its parent.
    id_b: Option<String>,
}

/// Runs `ctr snapshots diff` on `snapshotter`.
pub async fn run(client: &Client, snapshotter: &str, args: DiffArgs) -> anyhow::Result<()> {
    let id_a = args
        .id_a
        .clone()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| anyhow::anyhow!("snapshot id must be provided"))?;
    let lease = Temporary::create(&client.channel, &client.namespace).await?;
    let sn = SnapshotsProxy::new(
        client.channel.clone(),
        snapshotter,
        client.namespace.clone(),
    )
    .with_lease(lease.id());
    let mut views = Vec::new();
    let result = diff(client, &sn, &id_a, &args, lease.id(), &mut views).await;
    for key in views {
        let _ = sn.remove(&key).await;
    }
    lease.release().await;
    result
}

/// The mounts of `key`: its own if active, else a view's (remembered in
/// `views` for removal).
async fn mounts_of(
    sn: &SnapshotsProxy,
    key: &str,
    views: &mut Vec<String>,
) -> anyhow::Result<Vec<Mount>> {
    let info = sn.stat(key).await?;
    if info.kind == Kind::Active {
        return Ok(sn.mounts(key).await?);
    }
    let view = format!("{key}-view-{}", crated_core::identifiers::unique_part());
    let mounts = sn.view(&view, key, Labels::new()).await?;
    views.push(view);
    Ok(mounts)
}

async fn diff(
    client: &Client,
    sn: &SnapshotsProxy,
    id_a: &str,
    args: &DiffArgs,
    lease: &str,
    views: &mut Vec<String>,
) -> anyhow::Result<()> {
    let (lower, upper) = match args.id_b.as_deref().filter(|b| !b.is_empty()) {
        None => {
            let info = sn.stat(id_a).await?;
            let key = format!(
                "{}-parent-view-{}",
                info.parent,
                crated_core::identifiers::unique_part()
            );
            let lower = sn.view(&key, &info.parent, Labels::new()).await?;
            views.push(key);
            (lower, mounts_of(sn, id_a, views).await?)
        }
        Some(id_b) => (
            mounts_of(sn, id_a, views).await?,
            mounts_of(sn, id_b, views).await?,
        ),
    };
    let mut labels = label_args(&args.label);
    if args.keep {
        labels.extend(crate::commands::snapshots::gc_root());
    }
    let options = crated_client::diff::CompareOptions {
        media_type: args.media_type.clone(),
        r#ref: args.reference.clone().unwrap_or_default(),
        labels,
    };
    let desc = crated_client::diff::compare(
        &client.channel,
        &client.namespace,
        lease,
        lower,
        upper,
        options,
    )
    .await
    .map_err(crate::client::user_error)?;
    let store = ContentProxy::new(client.channel.clone());
    let reader = store.reader_at(&client.namespace, &desc.digest).await?;
    let mut stdout = std::io::stdout().lock();
    let mut offset = 0;
    let mut buf = vec![0; 1 << 20];
    while offset < reader.size() {
        let n = reader.read_at(offset, &mut buf).await?;
        if n == 0 {
            break;
        }
        stdout.write_all(&buf[..n])?;
        offset += n as u64;
    }
    stdout.flush()?;
    Ok(())
}
