//! `ctr snapshots diff`: a layer made by the daemon's diff service from a
//! snapshot and its parent (or from two snapshots), written to stdout, as
//! containerd's ctr (`rootfs.CreateDiff`).

use std::io::Write as _;

use clap::Args;
use crated_client::leases::Temporary;
use crated_core::diff::CompareOptions;
use crated_core::mount::Mount;
use crated_core::snapshots::{Kind, Labels, Snapshotter};

use crate::client::{user_error, Client};
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
    let lease = Temporary::create(client).await.map_err(user_error)?;
    let sn = client
        .snapshotter(snapshotter, Some(lease.id()))
        .map_err(user_error)?;
    let mut views = Vec::new();
    let result = diff(client, &*sn, &id_a, &args, lease.id(), &mut views).await;
    for key in views {
        let _ = sn.remove(&key).await;
    }
    lease.release().await;
    result
}

/// The mounts of `key`: its own if active, else a view's (remembered in
/// `views` for removal).
async fn mounts_of(
    sn: &dyn Snapshotter,
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
    sn: &dyn Snapshotter,
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
    let options = CompareOptions {
        media_type: args.media_type.clone(),
        reference: args.reference.clone().unwrap_or_default(),
        labels,
        lease: Some(lease.to_owned()),
        source_date_epoch: source_date_epoch()?,
    };
    let ns = client.namespace();
    let desc = client
        .services()
        .diff
        .compare(ns, &lower, &upper, options)
        .await
        .map_err(user_error)?;
    let reader = client
        .services()
        .content
        .reader_at(ns, &desc.digest)
        .await?;
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

/// `SOURCE_DATE_EPOCH` (seconds since 1970), as containerd 1.7's ctr reads
/// it for a reproducible layer; an unset or empty variable is none.
fn source_date_epoch() -> anyhow::Result<Option<std::time::SystemTime>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) if !value.is_empty() => {
            let seconds: u64 = value.parse().map_err(|_| {
                anyhow::anyhow!("SOURCE_DATE_EPOCH {value:?} is not a number of seconds since 1970")
            })?;
            Ok(Some(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds),
            ))
        }
        _ => Ok(None),
    }
}
