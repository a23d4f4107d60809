//! `ctr content ls|get|ingest|rm|label|active`.

use std::io::{Read as _, Write as _};
use std::time::SystemTime;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use crated_core::content::{Info, WriterOptions};
use crated_core::digest::Digest;

use crate::client::Client;
use crate::commands::{label_args, labels_column, labels_line};
use crate::tabwriter::TabWriter;
use crate::units::{human_duration, human_size};

/// Bytes per write when ingesting, as containerd's ctr.
const CHUNK: usize = 1 << 20;

/// `ctr content …`
#[derive(Subcommand)]
pub enum Command {
    /// List all blobs in the store.
    #[command(alias = "list")]
    Ls {
        /// Print only the blob digest.
        #[arg(short, long)]
        quiet: bool,
        /// Filters, e.g. `labels."k"==v`.
        filters: Vec<String>,
    },
    /// Write the data of a blob to stdout.
    Get {
        /// The blob's digest.
        digest: String,
    },
    /// Accept content from stdin into the store.
    Ingest(IngestArgs),
    /// Permanently delete one or more blobs.
    #[command(aliases = ["delete", "del", "remove"])]
    Rm {
        /// Digests to delete.
        #[arg(required = true)]
        digests: Vec<String>,
    },
    /// Add or clear labels of a blob (`key=` clears).
    Label {
        /// The blob's digest.
        digest: String,
        /// Labels as key=value.
        labels: Vec<String>,
    },
    /// Display active transfers.
    Active {
        /// Filter on the ingest ref, e.g. `ref~=layer`.
        filters: Vec<String>,
    },
    /// Fetch all content of an image into the store (no unpack).
    Fetch(crate::commands::images::pull::FetchArgs),
}

/// `ctr content ingest` arguments.
#[derive(Args)]
pub struct IngestArgs {
    /// Validate against the provided size.
    #[arg(long, default_value_t = 0)]
    expected_size: u64,
    /// Verify content against the expected digest.
    #[arg(long)]
    expected_digest: Option<String>,
    /// The transaction reference.
    r#ref: String,
}

fn parse_digest(s: &str) -> anyhow::Result<Digest> {
    Ok(Digest::parse(s)?)
}

fn age(since: SystemTime) -> String {
    human_duration(SystemTime::now().duration_since(since).unwrap_or_default())
}

/// Runs `ctr content …`.
pub async fn run(client: Client, command: Command) -> anyhow::Result<()> {
    let store = client.services().content.clone();
    let ns = client.namespace().clone();
    match command {
        Command::Fetch(args) => {
            crate::commands::images::pull::fetch(&client, &args, None).await?;
        }
        Command::Ls { quiet, filters } => {
            let infos = store.walk(&ns, &filters).await?;
            if quiet {
                for info in &infos {
                    println!("{}", info.digest);
                }
                return Ok(());
            }
            let mut w = TabWriter::with_tabs(1, 8, 1);
            w.line("DIGEST\tSIZE\tAGE\tLABELS");
            for info in &infos {
                w.line(format!(
                    "{}\t{}\t{}\t{}",
                    info.digest,
                    human_size(info.size),
                    age(info.created_at),
                    labels_column(&info.labels)
                ));
            }
            print!("{}", w.render());
        }
        Command::Get { digest } => {
            let digest = parse_digest(&digest)?;
            let reader = store.reader_at(&ns, &digest).await?;
            let mut buf = vec![0u8; CHUNK];
            let mut offset = 0u64;
            let mut stdout = std::io::stdout().lock();
            while offset < reader.size() {
                let n = reader.read_at(offset, &mut buf).await?;
                if n == 0 {
                    anyhow::bail!("{digest} ended at {offset} of {} bytes", reader.size());
                }
                stdout.write_all(&buf[..n]).context("write to stdout")?;
                offset += n as u64;
            }
            stdout.flush().context("write to stdout")?;
        }
        Command::Ingest(args) => ingest(&*store, &ns, args).await?,
        Command::Rm { digests } => {
            let mut failed = 0;
            for arg in digests {
                let result = match parse_digest(&arg) {
                    Ok(digest) => store
                        .delete(&ns, &digest)
                        .await
                        .map_err(anyhow::Error::from),
                    Err(e) => Err(e),
                };
                match result {
                    Ok(()) => println!("{arg}"),
                    Err(e) => {
                        failed += 1;
                        eprintln!("ctr: could not delete {arg}: {e}");
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!("failed to delete {failed} blob(s)");
            }
        }
        Command::Label { digest, labels } => {
            let digest = parse_digest(&digest)?;
            let labels = label_args(&labels);
            let info = if labels.is_empty() {
                store.info(&ns, &digest).await?
            } else {
                let paths: Vec<String> = labels.keys().map(|k| format!("labels.{k}")).collect();
                let now = SystemTime::now();
                let update = Info {
                    digest,
                    size: 0,
                    created_at: now,
                    updated_at: now,
                    labels: labels.into_iter().filter(|(_, v)| !v.is_empty()).collect(),
                };
                store.update(&ns, update, &paths).await?
            };
            println!("{}", labels_line(&info.labels));
        }
        Command::Active { filters } => {
            let statuses = store.list_statuses(&ns, &filters).await?;
            let mut w = TabWriter::with_tabs(1, 8, 1);
            w.line("REF\tSIZE\tAGE\t");
            for status in &statuses {
                w.line(format!(
                    "{}\t{}\t{}\t",
                    status.r#ref,
                    human_size(status.offset),
                    age(status.started_at)
                ));
            }
            print!("{}", w.render());
        }
    }
    Ok(())
}

/// `content.WriteBlob` from stdin: resumes an interrupted ingest of the same
/// ref by skipping what the store already has, then commits with the
/// expected size and digest. A blob the store already holds is success.
async fn ingest(
    store: &dyn crated_core::content::ContentStore,
    ns: &crated_core::Namespace,
    args: IngestArgs,
) -> anyhow::Result<()> {
    let expected = args
        .expected_digest
        .as_deref()
        .map(parse_digest)
        .transpose()?;
    if args.r#ref.is_empty() {
        anyhow::bail!("must specify a transaction reference");
    }
    let options = WriterOptions {
        r#ref: args.r#ref.clone(),
        total: args.expected_size,
        expected: expected.clone(),
        // containerd's ctr ingests without a lease too.
        lease: None,
    };
    // As containerd's `content.OpenWriter`: a ref locked by a writer that is
    // going away (a killed client the server has not reaped yet) is retried
    // with growing waits.
    let mut wait = std::time::Duration::from_millis(16);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut writer = loop {
        match store.writer(ns, options.clone()).await {
            Ok(w) => break w,
            Err(e) if e.is_already_exists() => return Ok(()),
            Err(e)
                if e.kind() == crated_core::Kind::Unavailable
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(2));
            }
            Err(e) => return Err(e.into()),
        }
    };
    let resume_at = writer.status().await?.offset;
    let mut stdin = std::io::stdin().lock();
    let mut buf = vec![0u8; CHUNK];
    // stdin cannot seek: skip what was already written.
    let mut skip = resume_at;
    while skip > 0 {
        let want = usize::try_from(skip).unwrap_or(CHUNK).min(CHUNK);
        let n = stdin.read(&mut buf[..want]).context("read stdin")?;
        if n == 0 {
            anyhow::bail!(
                "stdin ended at {} bytes, before the {resume_at} bytes already ingested",
                resume_at - skip
            );
        }
        skip -= n as u64;
    }
    loop {
        let n = read_full(&mut stdin, &mut buf).context("read stdin")?;
        if n == 0 {
            break;
        }
        writer.write(&buf[..n]).await?;
    }
    match writer
        .commit(args.expected_size, expected, Default::default())
        .await
    {
        Err(e) if !e.is_already_exists() => Err(e.into()),
        _ => Ok(()),
    }
}

/// Reads until `buf` is full or the input ends.
fn read_full(input: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
