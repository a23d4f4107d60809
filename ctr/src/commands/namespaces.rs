//! `ctr namespaces create|ls|rm|label`.

use clap::{Args, Subcommand};
use crated_core::namespaces::NamespaceInfo;
use crated_core::Namespace;

use crate::client::{user_error, Client};
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
    let service = &client.services().namespaces;
    // containerd's ctr sends its own namespace with every call; the
    // namespace events are published there.
    let caller = Some(client.namespace());
    match command {
        Command::Create(args) => {
            let name = Namespace::new(args.name).map_err(user_error)?;
            service
                .create(caller, &name, label_args(&args.labels))
                .await
                .map_err(user_error)?;
        }
        Command::Ls { quiet } => {
            let namespaces = service.list(&[]).await.map_err(user_error)?;
            if quiet {
                for ns in &namespaces {
                    println!("{}", ns.name);
                }
                return Ok(());
            }
            let mut w = TabWriter::new(1, 1);
            w.line("NAME\tLABELS\t");
            for ns in &namespaces {
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
                let deleted = match Namespace::new(name.clone()) {
                    Ok(ns) => service.delete(caller, &ns).await,
                    Err(e) => Err(e),
                };
                match deleted {
                    Ok(()) => println!("{name}"),
                    Err(err) => {
                        failed += 1;
                        eprintln!("ctr: unable to delete {name}: {}", user_error(err));
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!("failed to delete {failed} namespace(s)");
            }
        }
        Command::Label(args) => {
            let labels = label_args(&args.labels);
            let paths: Vec<String> = labels.keys().map(|k| format!("labels.{k}")).collect();
            let info = NamespaceInfo {
                name: Namespace::new(args.name).map_err(user_error)?,
                labels,
            };
            service
                .update(caller, info, &paths)
                .await
                .map_err(user_error)?;
        }
    }
    Ok(())
}
