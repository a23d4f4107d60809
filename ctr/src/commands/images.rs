//! `ctr images ls|rm|label`.

use clap::Subcommand;
use crated_api::containerd::services::images::v1 as pb;
use crated_api::proxy::content::ContentProxy;
use crated_core::digest::Digest;
use crated_core::images::walk::{self, Node};
use crated_core::platforms::default_matcher;

use crate::client::{status_error, Client};
use crate::commands::{field_mask, label_args, labels_column, labels_line};
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
    let mut service = pb::images_client::ImagesClient::new(client.channel.clone());
    match command {
        Command::Ls { quiet, filters } => {
            let images = service
                .list(client.request(pb::ListImagesRequest { filters }))
                .await
                .map_err(|s| status_error(s).context("failed to list images"))?
                .into_inner()
                .images;
            if quiet {
                for image in &images {
                    println!("{}", image.name);
                }
                return Ok(());
            }
            let store = ContentProxy::new(client.channel.clone());
            let mut w = TabWriter::new(1, 1);
            w.line("REF\tTYPE\tDIGEST\tSIZE\tPLATFORMS\tLABELS\t");
            for image in &images {
                let target = image.target.clone().unwrap_or_default();
                let (size, platforms) = match Digest::parse(&target.digest) {
                    Ok(digest) => {
                        let node = Node {
                            media_type: target.media_type.clone(),
                            digest,
                            size: target.size,
                            platform: None,
                        };
                        let ns = &client.namespace;
                        let (size, complete) =
                            walk::size(&store, ns, &node, &default_matcher()).await;
                        if let Err(err) = complete {
                            log_error(
                                &format!("failed calculating size for image {}", image.name),
                                &err,
                            );
                        }
                        let platforms = match walk::platforms(&store, ns, &node).await {
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
                let request = pb::DeleteImageRequest {
                    name: name.clone(),
                    sync: sync && i == last,
                };
                match service.delete(client.request(request)).await {
                    Ok(_) => println!("{name}"),
                    Err(status) if status.code() == tonic::Code::NotFound => {
                        eprintln!("ctr: warning: {name}: image not found");
                    }
                    Err(status) => {
                        let err = status_error(status).context(format!("unable to delete {name}"));
                        eprintln!("ctr: {err:#}");
                        first_error.get_or_insert(err);
                    }
                }
            }
            if let Some(err) = first_error {
                return Err(err);
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
            let update_mask = labels
                .keys()
                .map(|k| {
                    if replace_all {
                        "labels".to_owned()
                    } else {
                        format!("labels.{k}")
                    }
                })
                .collect();
            let updated = service
                .update(client.request(pb::UpdateImageRequest {
                    image: Some(pb::Image {
                        name,
                        labels: labels.into_iter().collect(),
                        ..Default::default()
                    }),
                    update_mask: field_mask(update_mask),
                }))
                .await
                .map_err(status_error)?
                .into_inner()
                .image
                .unwrap_or_default();
            println!("{}", labels_line(&updated.labels));
        }
    }
    Ok(())
}

/// A failure that does not stop the listing, reported as ctr logs it.
fn log_error(what: &str, err: &crated_core::Error) {
    eprintln!("ctr: error: {what}: {err}");
}
