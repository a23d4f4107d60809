//! `ctr images pull|push` and `ctr content fetch`.

use std::time::Instant;

use anyhow::Context as _;
use crated_client::pull::{pull, PullOptions};
use crated_client::push::{push, PushOptions};
use crated_core::images::walk;
use crated_core::platforms::{self, Matcher, Platform};

use crate::client::{user_error, Client};
use crate::commands::label_args;
use crate::progress::Tracker;
use crate::registry::RegistryArgs;

/// What to fetch: `ctr content fetch`'s flags, shared by `images pull`.
#[derive(clap::Args, Debug, Clone)]
pub struct FetchArgs {
    /// Pull content for a specific platform (repeatable).
    #[arg(long)]
    platform: Vec<String>,
    /// Pull content and metadata for all platforms.
    #[arg(long)]
    all_platforms: bool,
    /// Pull metadata for all platforms (not built yet).
    #[arg(long)]
    all_metadata: bool,
    /// Set the max concurrent downloads for each pull.
    #[arg(long, default_value_t = 3)]
    max_concurrent_downloads: usize,
    /// Labels to attach to the image (key=value).
    #[arg(long)]
    label: Vec<String>,
    #[command(flatten)]
    registry: RegistryArgs,
    /// The image reference.
    r#ref: Option<String>,
}

/// `ctr images pull`'s flags.
#[derive(clap::Args, Debug, Clone)]
pub struct PullArgs {
    /// The snapshotter to unpack into.
    #[arg(long, env = "CONTAINERD_SNAPSHOTTER", default_value = "overlayfs")]
    snapshotter: String,
    /// Print the resulting image's chain ID.
    #[arg(long)]
    print_chainid: bool,
    #[command(flatten)]
    fetch: FetchArgs,
}

/// `ctr images push`'s flags.
#[derive(clap::Args, Debug, Clone)]
pub struct PushArgs {
    /// Push content from a specific platform.
    #[arg(long)]
    platform: Option<String>,
    /// Set the max concurrent uploaded layers for each push.
    #[arg(long, default_value_t = 3)]
    max_concurrent_uploaded_layers: usize,
    #[command(flatten)]
    registry: RegistryArgs,
    /// The remote reference to push to.
    remote: Option<String>,
    /// The local image to push (default: the remote reference).
    local: Option<String>,
}

pub fn matcher_of(specs: &[String]) -> anyhow::Result<(Matcher, Vec<Platform>)> {
    if specs.is_empty() {
        return Ok((
            platforms::default_matcher(),
            vec![platforms::default_platform()],
        ));
    }
    let parsed = specs
        .iter()
        .map(|p| {
            platforms::parse(p).map_err(|e| anyhow::anyhow!("unable to parse platform {p}: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((Matcher::ordered(parsed.clone()), parsed))
}

/// Fetches an image into content and records it (`ctr content fetch`, the
/// first half of `ctr images pull`). Returns the image and the platforms to
/// unpack.
pub async fn fetch(
    client: &Client,
    args: &FetchArgs,
    snapshotter: Option<&str>,
) -> anyhow::Result<(crated_client::pull::Pulled, Vec<Platform>)> {
    let reference = args
        .r#ref
        .clone()
        .filter(|r| !r.is_empty())
        .ok_or_else(|| anyhow::anyhow!("please provide an image reference to pull"))?;
    if args.all_metadata {
        anyhow::bail!("--all-metadata is not built yet: use --all-platforms");
    }
    let (matcher, wanted) = matcher_of(&args.platform)?;
    let options = PullOptions {
        matcher: if args.all_platforms {
            Matcher::all()
        } else {
            matcher
        },
        all_platforms: args.all_platforms,
        max_concurrent_downloads: args.max_concurrent_downloads,
        // Unpacking alongside the download: one platform only.
        snapshotter: snapshotter
            .filter(|_| !args.all_platforms)
            .map(str::to_owned),
        labels: label_args(&args.label),
        // As containerd's ctr: the record is written on every pull.
        keep_unchanged_record: false,
        record: true,
        discard_unpacked_layers: false,
        snapshot_annotations: false,
        // As containerd's ctr: the whole image is fetched, then unpacked.
        fetch_all_layers: true,
        sync_fs: false,
    };
    let resolver = args.registry.resolver()?;
    let tracker = Tracker::new();
    let redraw = tracker.spawn_redraw();
    let pulled = pull(client, &resolver, &reference, &options, tracker.clone()).await;
    if let Some(handle) = redraw {
        handle.abort();
    }
    tracker.draw(true);
    let pulled = pulled.map_err(|e| anyhow::anyhow!("{e}"))?;
    let platforms = if args.all_platforms {
        let store = &*client.services().content;
        let node = walk::Node {
            media_type: pulled.target.media_type.clone(),
            digest: pulled.target.digest.clone(),
            size: pulled.target.size as i64,
            platform: None,
        };
        let mut found = walk::platforms(store, client.namespace(), &node).await?;
        found.dedup_by(|a, b| platforms::format(a) == platforms::format(b));
        found
    } else {
        wanted
    };
    Ok((pulled, platforms))
}

/// `ctr images pull`: fetch and unpack (each layer as soon as it is
/// there); with `--all-platforms`, every platform after the fetch.
pub async fn run_pull(client: &Client, args: PullArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let (pulled, platforms) = fetch(client, &args.fetch, Some(&args.snapshotter)).await?;
    if let Some(chain_id) = &pulled.chain_id {
        if let Some(platform) = platforms.first() {
            println!(
                "unpacking {} {}...",
                platforms::format(platform),
                pulled.target.digest
            );
        }
        if args.print_chainid {
            println!("image chain ID: {chain_id}");
        }
        println!("done: {:?}\t", start.elapsed());
        return Ok(());
    }
    let node = walk::Node {
        media_type: pulled.target.media_type.clone(),
        digest: pulled.target.digest.clone(),
        size: pulled.target.size as i64,
        platform: None,
    };
    for platform in platforms {
        println!(
            "unpacking {} {}...",
            platforms::format(&platform),
            pulled.target.digest
        );
        let chain_id =
            crated_client::unpack(client, &node, &args.snapshotter, &Matcher::only(&platform))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        if args.print_chainid {
            println!("image chain ID: {chain_id}");
        }
    }
    println!("done: {:?}\t", start.elapsed());
    Ok(())
}

/// `ctr images push`.
pub async fn run_push(client: &Client, args: PushArgs) -> anyhow::Result<()> {
    let remote = args
        .remote
        .clone()
        .filter(|r| !r.is_empty())
        .ok_or_else(|| anyhow::anyhow!("please provide a remote image reference to push"))?;
    let local = args.local.clone().unwrap_or_else(|| remote.clone());
    let image = client
        .services()
        .images
        .get(client.namespace(), &local)
        .await
        .map_err(user_error)
        .with_context(|| format!("unable to resolve image to manifest: {local}"))?;
    let target = image.target;
    let matcher = match &args.platform {
        Some(p) => {
            Some(Matcher::only(&platforms::parse(p).map_err(|e| {
                anyhow::anyhow!("unable to parse platform {p}: {e}")
            })?))
        }
        None => None,
    };
    let resolver = args.registry.resolver()?;
    let tracker = Tracker::new();
    let redraw = tracker.spawn_redraw();
    let options = PushOptions {
        matcher,
        max_concurrent_uploads: args.max_concurrent_uploaded_layers,
    };
    let pushed = push(
        client,
        &resolver,
        &remote,
        &target,
        &options,
        tracker.clone(),
    )
    .await;
    if let Some(handle) = redraw {
        handle.abort();
    }
    tracker.draw(true);
    pushed.map_err(|e| anyhow::anyhow!("{e}"))
}
