//! `ctr images export` and `ctr images import`.

use std::io::Write as _;

use crated_client::export::{export, ExportOptions};
use crated_client::import::{import, ImportOptions};
use crated_core::images::walk::Node;
use crated_core::platforms::{self, Matcher};

use crate::client::{user_error, Client};

/// `ctr images export` arguments.
#[derive(clap::Args)]
pub struct ExportArgs {
    /// Do not add Docker compatible manifest.json to archive.
    #[arg(long)]
    skip_manifest_json: bool,
    /// Do not add non-distributable blobs such as Windows layers to archive.
    #[arg(long)]
    skip_non_distributable: bool,
    /// Export content for a specific platform (repeatable).
    #[arg(long)]
    platform: Vec<String>,
    /// Export content for all platforms.
    #[arg(long)]
    all_platforms: bool,
    /// The archive to write (`-` for stdout).
    out: Option<String>,
    /// The images.
    images: Vec<String>,
}

/// `ctr images import` arguments.
#[derive(clap::Args)]
pub struct ImportArgs {
    /// Base image name for added images; when given, only images under it
    /// are imported.
    #[arg(long)]
    base_name: Option<String>,
    /// Whether to create digest images.
    #[arg(long)]
    digests: bool,
    /// Skip --digests for images the archive names.
    #[arg(long)]
    skip_digest_for_named: bool,
    /// Image name to keep the archive's index as (by default it is not kept).
    #[arg(long)]
    index_name: Option<String>,
    /// Import content for all platforms.
    #[arg(long)]
    all_platforms: bool,
    /// Import content for a specific platform.
    #[arg(long)]
    platform: Option<String>,
    /// Skip unpacking the images.
    #[arg(long)]
    no_unpack: bool,
    /// Compress uncompressed blobs when creating the manifest (Docker
    /// format only).
    #[arg(long)]
    compress_blobs: bool,
    /// The snapshotter to unpack into.
    #[arg(long, env = "CONTAINERD_SNAPSHOTTER", default_value = "overlayfs")]
    snapshotter: String,
    /// The archive (`-` for stdin).
    input: Option<String>,
}

/// Runs `ctr images export`.
pub async fn run_export(client: &Client, args: ExportArgs) -> anyhow::Result<()> {
    let out = args.out.filter(|o| !o.is_empty());
    let (Some(out), false) = (out, args.images.is_empty()) else {
        anyhow::bail!("please provide both an output filename and an image reference to export");
    };
    // containerd's ctr: the host platform strictly, unless told.
    let matcher = if args.platform.is_empty() {
        Matcher::only_strict(&platforms::default_platform())
    } else {
        super::pull::matcher_of(&args.platform)?.0
    };
    let options = ExportOptions {
        matcher,
        all_platforms: args.all_platforms,
        skip_docker_manifest: args.skip_manifest_json,
        skip_non_distributable: args.skip_non_distributable,
    };
    let (writer, path): (Box<dyn std::io::Write + Send>, Option<String>) = if out == "-" {
        (Box::new(std::io::stdout()), None)
    } else {
        // Written beside, renamed into place once complete.
        let partial = format!("{out}.partial");
        let file = std::fs::File::create(&partial)
            .map_err(|e| anyhow::anyhow!("create {partial}: {e}"))?;
        (Box::new(std::io::BufWriter::new(file)), Some(partial))
    };
    let written = export(client, &args.images, writer, &options).await;
    match (written, path) {
        (Ok(()), Some(partial)) => {
            std::fs::File::open(&partial).and_then(|f| f.sync_all())?;
            std::fs::rename(&partial, &out)
                .map_err(|e| anyhow::anyhow!("rename {partial} to {out}: {e}"))?;
        }
        (Ok(()), None) => std::io::stdout().flush()?,
        (Err(e), partial) => {
            if let Some(partial) = partial {
                let _ = std::fs::remove_file(partial);
            }
            return Err(user_error(e));
        }
    }
    Ok(())
}

/// Runs `ctr images import`, then unpacks what it named.
pub async fn run_import(client: &Client, args: ImportArgs) -> anyhow::Result<()> {
    let input = args
        .input
        .filter(|i| !i.is_empty())
        .ok_or_else(|| anyhow::anyhow!("please provide the archive to import"))?;
    if args.skip_digest_for_named && !args.digests {
        anyhow::bail!("--skip-digest-for-named must be specified with --digests option");
    }
    let matcher = match &args.platform {
        Some(p) => Matcher::only_strict(
            &platforms::parse(p).map_err(|e| anyhow::anyhow!("invalid platform {p:?}: {e}"))?,
        ),
        None => platforms::default_matcher(),
    };
    let options = ImportOptions {
        base_name: args.base_name.filter(|b| !b.is_empty()),
        digests: args.digests,
        skip_digest_for_named: args.skip_digest_for_named,
        index_name: args.index_name.filter(|n| !n.is_empty()),
        all_platforms: args.all_platforms,
        matcher: matcher.clone(),
        compress_blobs: args.compress_blobs,
    };
    let reader: Box<dyn std::io::Read + Send> = if input == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(&input).map_err(|e| anyhow::anyhow!("open {input}: {e}"))?,
        ))
    };
    let images = import(client, reader, &options).await.map_err(user_error)?;
    if args.no_unpack {
        return Ok(());
    }
    for image in &images {
        print!("unpacking {} ({})...", image.name, image.target.digest);
        std::io::stdout().flush()?;
        crated_client::unpack(
            client,
            &Node::from(&image.target),
            &args.snapshotter,
            &matcher,
        )
        .await
        .map_err(user_error)?;
        println!("done");
    }
    Ok(())
}
