//! `ctr leases ls|create|rm`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use clap::Subcommand;
use crated_core::leases::EXPIRE_LABEL;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use crate::client::{user_error, Client};
use crate::commands::labels_column;
use crate::duration;
use crate::tabwriter::TabWriter;

/// `ctr leases …`
#[derive(Subcommand)]
pub enum Command {
    /// List all active leases.
    #[command(alias = "list")]
    Ls {
        /// Print only the lease ids.
        #[arg(short, long)]
        quiet: bool,
        /// Filters, e.g. `labels."k"==v`.
        filters: Vec<String>,
    },
    /// Create a lease; prints its id.
    Create {
        /// The id of the lease; generated when not given.
        #[arg(long)]
        id: Option<String>,
        /// Expiration of the lease (Go duration; 0 never expires).
        #[arg(short = 'x', long, default_value = "24h", value_parser = duration::parse)]
        expires: Duration,
        /// Labels as key=value (a bare key has an empty value).
        labels: Vec<String>,
    },
    /// Delete leases.
    #[command(aliases = ["delete", "del", "remove"])]
    Rm {
        /// Remove the leases and what only they held before returning.
        #[arg(long)]
        sync: bool,
        /// Lease ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

/// A time as Go's `t.Local().Format(time.RFC3339)`.
fn rfc3339_local(t: SystemTime) -> String {
    let utc = OffsetDateTime::from(t);
    let offset = UtcOffset::current_local_offset().unwrap_or(UtcOffset::UTC);
    utc.to_offset(offset)
        .replace_nanosecond(0)
        .unwrap_or(utc)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// Runs `ctr leases …`.
pub async fn run(client: Client, command: Command) -> anyhow::Result<()> {
    let service = &client.services().leases;
    let ns = client.namespace();
    match command {
        Command::Ls { quiet, filters } => {
            let leases = service.list(ns, &filters).await.map_err(user_error)?;
            if quiet {
                for lease in &leases {
                    println!("{}", lease.id);
                }
                return Ok(());
            }
            let mut w = TabWriter::new(1, 1);
            w.line("ID\tCREATED AT\tLABELS\t");
            for lease in &leases {
                let labels = labels_column(&lease.labels);
                let created = rfc3339_local(lease.created_at);
                w.line(format!("{}\t{created}\t{labels}\t", lease.id));
            }
            print!("{}", w.render());
        }
        Command::Create {
            id,
            expires,
            labels,
        } => {
            let mut labels: BTreeMap<String, String> = labels
                .iter()
                .map(|l| match l.split_once('=') {
                    Some((k, v)) => (k.to_owned(), v.to_owned()),
                    None => (l.clone(), String::new()),
                })
                .collect();
            if !expires.is_zero() {
                labels.insert(
                    EXPIRE_LABEL.into(),
                    rfc3339_local(SystemTime::now() + expires),
                );
            }
            let lease = service
                .create(ns, &id.unwrap_or_default(), labels)
                .await
                .map_err(user_error)?;
            println!("{}", lease.id);
        }
        Command::Rm { sync, ids } => {
            let last = ids.len().saturating_sub(1);
            for (i, id) in ids.into_iter().enumerate() {
                service
                    .delete(ns, &id, sync && i == last)
                    .await
                    .map_err(user_error)?;
                println!("{id}");
            }
        }
    }
    Ok(())
}
