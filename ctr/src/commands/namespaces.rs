//! `ctr namespaces create|ls|rm|label`.

use clap::{Args, Subcommand};
use crated_api::containerd::services::namespaces::v1 as pb;

use crate::client::{status_error, Client};
use crate::commands::{label_args, labels_line};
use crate::tabwriter::TabWriter;

/// `ctr namespaces …`
#[derive(Subcommand)]
pub enum Command {
    /// Create a new namespace; it must be unique.
    #[command(alias = "c")]
    Create(NameAndLabels),
    /// List namespaces.
    #[command(alias = "list")]
    Ls {
        /// Print only the namespace name.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Remove one or more namespaces; each must be empty.
    #[command(alias = "remove")]
    Rm {
        /// Namespaces to remove.
        #[arg(required = true)]
        names: Vec<String>,
        /// Delete the namespace's cgroup (not supported yet).
        #[arg(short, long)]
        cgroup: bool,
    },
    /// Set and clear labels of a namespace; an empty value clears a label.
    Label(NameAndLabels),
}

/// `<name> [<key>=<value> …]`
#[derive(Args)]
pub struct NameAndLabels {
    /// The namespace.
    name: String,
    /// Labels as key=value.
    labels: Vec<String>,
}

/// Runs `ctr namespaces …`.
pub async fn run(client: Client, command: Command) -> anyhow::Result<()> {
    let mut service = pb::namespaces_client::NamespacesClient::new(client.channel.clone());
    match command {
        Command::Create(args) => {
            let namespace = pb::Namespace {
                name: args.name,
                labels: label_args(&args.labels).into_iter().collect(),
            };
            service
                .create(client.request(pb::CreateNamespaceRequest {
                    namespace: Some(namespace),
                }))
                .await
                .map_err(status_error)?;
        }
        Command::Ls { quiet } => {
            let list = service
                .list(client.request(pb::ListNamespacesRequest::default()))
                .await
                .map_err(status_error)?
                .into_inner();
            if quiet {
                for ns in &list.namespaces {
                    println!("{}", ns.name);
                }
                return Ok(());
            }
            let mut w = TabWriter::new(1, 1);
            w.line("NAME\tLABELS\t");
            for ns in &list.namespaces {
                w.line(format!("{}\t{}\t", ns.name, labels_line(&ns.labels)));
            }
            print!("{}", w.render());
        }
        Command::Rm { names, cgroup } => {
            if cgroup {
                anyhow::bail!(
                    "--cgroup is not implemented yet: crated does not create namespace cgroups"
                );
            }
            // Unlike containerd 1.6's ctr, a namespace that does not exist is
            // an error: the user asked for something that cannot be done.
            let mut failed = 0;
            for name in names {
                match service
                    .delete(client.request(pb::DeleteNamespaceRequest { name: name.clone() }))
                    .await
                {
                    Ok(_) => println!("{name}"),
                    Err(status) => {
                        failed += 1;
                        eprintln!("ctr: unable to delete {name}: {}", status_error(status));
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!("failed to delete {failed} namespace(s)");
            }
        }
        Command::Label(args) => {
            let labels = label_args(&args.labels);
            let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
            let namespace = pb::Namespace {
                name: args.name,
                labels: labels.into_iter().collect(),
            };
            service
                .update(client.request(pb::UpdateNamespaceRequest {
                    namespace: Some(namespace),
                    update_mask: Some(prost_types::FieldMask { paths }),
                }))
                .await
                .map_err(status_error)?;
        }
    }
    Ok(())
}
