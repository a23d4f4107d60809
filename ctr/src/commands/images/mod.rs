//! `ctr images ls|rm|label|check|tag|mount|unmount`.

mod archive;
mod mount;
pub mod pull;

use clap::Subcommand;
use crated_core::content::ContentStore;
use crated_core::digest::Digest;
use crated_core::images::walk::{self, Node};
use crated_core::images::Image;
use crated_core::platforms::default_matcher;
use crated_core::snapshots::Snapshotter;

use crate::client::{user_error, Client};
use crate::commands::{label_args, labels_column, labels_line};
use crate::tabwriter::TabWriter;
use crate::units::bytes_size;

/// `ctr images …`
#[derive(Subcommand)]
pub enum Command {
    /// List images known to crated.
    #[command(alias = "list")]
    Ls {
        /// Print only the image refs.
        #[arg(short, long)]
        quiet: bool,
        /// Filters, e.g. `name~=busybox` or `labels."k"==v`.
        filters: Vec<String>,
    },
    /// Remove one or more images by reference.
    #[command(aliases = ["delete", "del", "remove"])]
    Rm {
        /// Remove the image and what only it referenced before returning.
        #[arg(long)]
        sync: bool,
        /// Image references.
        refs: Vec<String>,
    },
    /// Check that images' content is available locally, and unpacked.
    Check {
        /// Print only the refs of complete images.
        #[arg(short, long)]
        quiet: bool,
        /// The snapshotter to check the unpacked layers in.
        #[arg(long, env = "CONTAINERD_SNAPSHOTTER", default_value = "overlayfs")]
        snapshotter: String,
        /// Filters, e.g. `name~=busybox`.
        filters: Vec<String>,
    },
    /// Tag an image: a new name for the same target and labels.
    Tag {
        /// Replace a target name that exists.
        #[arg(long)]
        force: bool,
        /// The image to tag.
        source: Option<String>,
        /// The new names.
        targets: Vec<String>,
    },
    /// Export images to an OCI tar archive (with a Docker manifest.json
    /// for the platform).
    Export(archive::ExportArgs),
    /// Import images from an OCI layout or `docker save` archive.
    Import(archive::ImportArgs),
    /// Pull an image from a registry and unpack it.
    Pull(pull::PullArgs),
    /// Push an image and all its content to a registry.
    Push(pull::PushArgs),
    /// Mount an image's root filesystem (unpacking it first) on a path.
    Mount {
        /// Mount read-write (an active snapshot) instead of a view.
        #[arg(long)]
        rw: bool,
        /// The snapshotter to unpack into.
        #[arg(long, env = "CONTAINERD_SNAPSHOTTER", default_value = "overlayfs")]
        snapshotter: String,
        /// The platform to mount.
        #[arg(long)]
        platform: Option<String>,
        /// The image.
        r#ref: Option<String>,
        /// Where to mount it.
        target: Option<String>,
    },
    /// Unmount an image mounted with `images mount`.
    Unmount {
        /// Also remove the snapshot (and its lease).
        #[arg(long)]
        rm: bool,
        /// The snapshotter the image was mounted from.
        #[arg(long, env = "CONTAINERD_SNAPSHOTTER", default_value = "overlayfs")]
        snapshotter: String,
        /// The mount point.
        target: Option<String>,
    },
    /// Set and clear labels of an image (`key=` clears).
    Label {
        /// Replace all labels.
        #[arg(short, long)]
        replace_all: bool,
        /// The image name.
        name: Option<String>,
        /// Labels as key=value (a bare key means `key=true`).
        labels: Vec<String>,
    },
}

/// Runs `ctr images …`.
pub async fn run(client: Client, command: Command) -> anyhow::Result<()> {
    let service = &*client.services().images;
    let ns = client.namespace();
    match command {
        Command::Ls { quiet, filters } => {
            let images = service
                .list(ns, &filters)
                .await
                .map_err(|e| user_error(e).context("failed to list images"))?;
            if quiet {
                for image in &images {
                    println!("{}", image.name);
                }
                return Ok(());
            }
            let store = &*client.services().content;
            let mut w = TabWriter::new(1, 1);
            w.line("REF\tTYPE\tDIGEST\tSIZE\tPLATFORMS\tLABELS\t");
            for image in &images {
                let target = &image.target;
                let (size, platforms) = match node_of(image) {
                    Ok(node) => {
                        let (size, complete) =
                            walk::size(store, ns, &node, &default_matcher()).await;
                        if let Err(err) = complete {
                            log_error(
                                &format!("failed calculating size for image {}", image.name),
                                &err,
                            );
                        }
                        let platforms = match walk::platforms(store, ns, &node).await {
                            Ok(found) => walk::platforms_column(&found),
                            Err(err) => {
                                log_error(
                                    &format!("failed resolving platform for image {}", image.name),
                                    &err,
                                );
                                "-".to_owned()
                            }
                        };
                        (size, platforms)
                    }
                    Err(err) => {
                        log_error(
                            &format!("failed calculating size for image {}", image.name),
                            &err,
                        );
                        (0, "-".to_owned())
                    }
                };
                w.line(format!(
                    "{}\t{}\t{}\t{}\t{platforms}\t{}\t",
                    image.name,
                    target.media_type,
                    target.digest,
                    bytes_size(size),
                    labels_column(&image.labels),
                ));
            }
            print!("{}", w.render());
        }
        Command::Rm { sync, refs } => {
            let last = refs.len().saturating_sub(1);
            let mut first_error = None;
            for (i, name) in refs.into_iter().enumerate() {
                match service.delete(ns, &name, sync && i == last).await {
                    Ok(()) => println!("{name}"),
                    Err(e) if e.is_not_found() => {
                        eprintln!("ctr: warning: {name}: image not found");
                    }
                    Err(e) => {
                        let err = user_error(e).context(format!("unable to delete {name}"));
                        eprintln!("ctr: {err:#}");
                        first_error.get_or_insert(err);
                    }
                }
            }
            if let Some(err) = first_error {
                return Err(err);
            }
        }
        Command::Export(args) => archive::run_export(&client, args).await?,
        Command::Import(args) => archive::run_import(&client, args).await?,
        Command::Pull(args) => pull::run_pull(&client, args).await?,
        Command::Push(args) => pull::run_push(&client, args).await?,
        Command::Mount {
            rw,
            snapshotter,
            platform,
            r#ref,
            target,
        } => {
            let r#ref = r#ref
                .filter(|r| !r.is_empty())
                .ok_or_else(|| anyhow::anyhow!("please provide an image reference to mount"))?;
            let target = target
                .filter(|t| !t.is_empty())
                .ok_or_else(|| anyhow::anyhow!("please provide a target path to mount to"))?;
            let matcher = match platform {
                Some(p) => crated_core::platforms::Matcher::only(
                    &crated_core::platforms::parse(&p)
                        .map_err(|e| anyhow::anyhow!("unable to parse platform {p}: {e}"))?,
                ),
                None => default_matcher(),
            };
            mount::mount(&client, &snapshotter, &matcher, &r#ref, &target, rw).await?;
        }
        Command::Unmount {
            rm,
            snapshotter,
            target,
        } => {
            let target = target
                .filter(|t| !t.is_empty())
                .ok_or_else(|| anyhow::anyhow!("please provide a target path to unmount from"))?;
            mount::unmount(&client, &snapshotter, &target, rm).await?;
        }
        Command::Check {
            quiet,
            snapshotter,
            filters,
        } => return check(&client, quiet, snapshotter, filters).await,
        Command::Tag {
            force,
            source,
            targets,
        } => {
            let source = source
                .filter(|s| !s.is_empty())
                .ok_or_else(|| anyhow::anyhow!("please provide an image reference to tag from"))?;
            if targets.is_empty() {
                anyhow::bail!("please provide an image reference to tag to");
            }
            let image = service.get(ns, &source).await.map_err(user_error)?;
            for target in targets {
                let create = |name: &str| Image {
                    name: name.to_owned(),
                    ..image.clone()
                };
                match service.create(ns, create(&target)).await {
                    Ok(_) => {}
                    Err(e) if e.is_already_exists() && force => {
                        service
                            .delete(ns, &target, false)
                            .await
                            .map_err(user_error)?;
                        service
                            .create(ns, create(&target))
                            .await
                            .map_err(user_error)?;
                    }
                    Err(e) => return Err(user_error(e)),
                }
                println!("{target}");
            }
        }
        Command::Label {
            replace_all,
            name,
            labels,
        } => {
            let name = name
                .filter(|n| !n.is_empty())
                .ok_or_else(|| anyhow::anyhow!("please specify an image"))?;
            let labels = label_args(&labels);
            let update_mask: Vec<String> = labels
                .keys()
                .map(|k| {
                    if replace_all {
                        "labels".to_owned()
                    } else {
                        format!("labels.{k}")
                    }
                })
                .collect();
            let image = Image {
                labels,
                ..service.get(ns, &name).await.map_err(user_error)?
            };
            let updated = service
                .update(ns, image, &update_mask)
                .await
                .map_err(user_error)?;
            println!("{}", labels_line(&updated.labels));
        }
    }
    Ok(())
}

/// The image's target as a walk node.
fn node_of(image: &Image) -> Result<Node, crated_core::Error> {
    Ok(Node::from(&image.target))
}

/// Whether the image's layers are unpacked in `snapshots`: its chain id is
/// a snapshot there (containerd's `image.IsUnpacked`).
async fn is_unpacked(
    store: &dyn ContentStore,
    snapshots: &dyn Snapshotter,
    ns: &crated_core::Namespace,
    image: &Image,
) -> Result<bool, crated_core::Error> {
    let manifest = walk::manifest(store, ns, &node_of(image)?, &default_matcher()).await?;
    let diff_ids = walk::rootfs(store, ns, &manifest.config).await?;
    let Some(chain) = Digest::chain_id(&diff_ids) else {
        return Ok(false);
    };
    match snapshots.stat(chain.as_str()).await {
        Ok(_) => Ok(true),
        Err(err) if err.is_not_found() => Ok(false),
        Err(err) => Err(err),
    }
}

/// `ctr images check`, as containerd's: a row per image, an error (after
/// the table) for the first image that could not be checked.
async fn check(
    client: &Client,
    quiet: bool,
    snapshotter: String,
    filters: Vec<String>,
) -> anyhow::Result<()> {
    let ns = client.namespace();
    let images = client
        .services()
        .images
        .list(ns, &filters)
        .await
        .map_err(|e| user_error(e).context("failed listing images"))?;
    let store = &*client.services().content;
    let snapshots = client.snapshotter(&snapshotter, None).map_err(user_error)?;
    let mut first_error: Option<anyhow::Error> = None;
    let mut w = TabWriter::new(1, 1);
    w.line("REF\tTYPE\tDIGEST\tSTATUS\tSIZE\tUNPACKED\t");
    for image in &images {
        let target = &image.target;
        let checked = match node_of(image) {
            Ok(node) => walk::check(store, ns, &node, &default_matcher()).await,
            Err(err) => Err(err),
        };
        let (status, size, complete) = match checked {
            Ok(c) => {
                let total = |nodes: &[Node]| {
                    nodes
                        .iter()
                        .map(|n| u64::try_from(n.size).unwrap_or(0))
                        .fold(0u64, u64::saturating_add)
                };
                let (have, want) = (total(&c.present), total(&c.required));
                if c.available {
                    let word = if c.missing.is_empty() {
                        "complete"
                    } else {
                        "incomplete"
                    };
                    (
                        format!("{word} ({}/{})", c.present.len(), c.required.len()),
                        format!("{}/{}", bytes_size(have), bytes_size(want)),
                        c.missing.is_empty(),
                    )
                } else {
                    (
                        format!("unavailable ({}/?)", c.present.len()),
                        format!("{}/?", bytes_size(have)),
                        false,
                    )
                }
            }
            Err(err) => {
                log_error(&format!("unable to check {}", image.name), &err);
                first_error.get_or_insert(anyhow::anyhow!("unable to check {}: {err}", image.name));
                ("error".to_owned(), "-".to_owned(), false)
            }
        };
        let unpacked = match is_unpacked(store, &*snapshots, ns, image).await {
            Ok(unpacked) => unpacked,
            Err(err) => {
                log_error(&format!("unable to check unpack for {}", image.name), &err);
                first_error.get_or_insert(anyhow::anyhow!(
                    "unable to check unpack for {}: {err}",
                    image.name
                ));
                false
            }
        };
        if quiet {
            if complete {
                println!("{}", image.name);
            }
        } else {
            w.line(format!(
                "{}\t{}\t{}\t{status}\t{size}\t{unpacked}",
                image.name, target.media_type, target.digest
            ));
        }
    }
    if !quiet && !images.is_empty() {
        print!("{}", w.render());
    }
    match first_error {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// A failure that does not stop the listing, reported as ctr logs it.
fn log_error(what: &str, err: &crated_core::Error) {
    eprintln!("ctr: error: {what}: {err}");
}
