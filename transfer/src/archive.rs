//! Image archives over a stream (`ImageImportStream`,
//! `ImageExportStream`): the bytes travel as `Data` messages, and the
//! receiver paces the sender with `WindowUpdate`s, each granting it that
//! many more bytes, as containerd's transfer streams do.

use std::io::{self, Read, Write};

use crated_api::containerd::types::transfer::{Data, WindowUpdate};
use crated_core::{Error, Result};
use tokio::sync::mpsc;

use crate::any;
use crate::streams::Stream;

/// The largest `Data` message sent.
const CHUNK: usize = 32 * 1024;
/// What a receiver grants at a time, and keeps granted.
const WINDOW: i32 = 2 * CHUNK as i32;
/// How long an export waits for the client to take the archive's end.
const CLIENT_DONE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A blocking reader of the archive the client sends on `stream`: grants
/// the client [`WINDOW`] bytes whenever less is outstanding, and reads
/// until the client closes its side. Read it off the runtime's worker
/// threads (a blocking task, inside its `block_on` or not).
pub fn receive(mut stream: Stream) -> impl Read + Send {
    let (chunks, received) = mpsc::channel::<io::Result<Vec<u8>>>(4);
    tokio::spawn(async move {
        let mut window: i64 = 0;
        loop {
            if window < i64::from(WINDOW) {
                let grant = any::pack(&WindowUpdate { update: WINDOW });
                if stream.send(grant).await.is_ok() {
                    window += i64::from(WINDOW);
                }
            }
            let data = match stream.recv().await {
                Ok(None) => return,
                Ok(Some(message)) if any::is::<Data>(&message) => any::unpack::<Data>(&message),
                Ok(Some(message)) => {
                    tracing::warn!(type_url = message.type_url, "ignored on an import stream");
                    continue;
                }
                Err(err) => Err(err),
            };
            let item = match data {
                Ok(data) => {
                    window -= data.data.len() as i64;
                    Ok(data.data)
                }
                Err(err) => Err(io::Error::other(err)),
            };
            let failed = item.is_err();
            if chunks.send(item).await.is_err() || failed {
                // The import stopped reading, or the stream broke.
                return;
            }
        }
    });
    ChannelReader {
        received,
        current: Vec::new(),
        at: 0,
    }
}

struct ChannelReader {
    received: mpsc::Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    at: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            // Not tokio's blocking_recv: the import reads inside its
            // runtime's block_on, where that would panic.
            match futures::executor::block_on(self.received.recv()) {
                None => return Ok(0),
                Some(chunk) => {
                    self.current = chunk?;
                    self.at = 0;
                }
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The task sending an export's bytes, as the client's window allows.
pub struct Sending(tokio::task::JoinHandle<Result<()>>);

impl Sending {
    /// Once the writer is dropped: waits until every byte written was
    /// sent and the client closed its side (it has the whole archive), or
    /// a minute more at most (then logged, and Ok all the same).
    pub async fn finish(self) -> Result<()> {
        self.0
            .await
            .map_err(|e| Error::unknown(format!("export stream task: {e}")))?
    }
}

/// A blocking writer (write it off the runtime's threads, and flush it at
/// the end) whose bytes go to the client on `stream`, and the task sending
/// them.
pub fn send(stream: Stream) -> (Box<dyn Write + Send>, Sending) {
    let (chunks, mut written) = mpsc::channel::<Vec<u8>>(4);
    let done = tokio::spawn(async move {
        let Stream {
            id,
            to_client,
            mut from_client,
        } = stream;
        let closed = || Error::unavailable(format!("the client closed the export stream {id:?}"));
        let mut window: i64 = 0;
        let mut client_done = false;
        while let Some(mut chunk) = written.recv().await {
            while !chunk.is_empty() {
                while window <= 0 {
                    match from_client.message().await {
                        Ok(Some(message)) if any::is::<WindowUpdate>(&message) => {
                            window += i64::from(any::unpack::<WindowUpdate>(&message)?.update);
                        }
                        Ok(Some(message)) => {
                            tracing::warn!(
                                type_url = message.type_url,
                                "ignored on an export stream"
                            );
                        }
                        Ok(None) | Err(_) => return Err(closed()),
                    }
                }
                let n = chunk
                    .len()
                    .min(usize::try_from(window).unwrap_or(CHUNK))
                    .min(CHUNK);
                let rest = chunk.split_off(n);
                window -= n as i64;
                let data = any::pack(&Data { data: chunk });
                to_client.send(Ok(data)).await.map_err(|_| closed())?;
                chunk = rest;
            }
        }
        // The end of the archive is the end of our side; the client closes
        // its own once it has written everything.
        drop(to_client);
        let drained = async {
            while !client_done {
                match from_client.message().await {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => client_done = true,
                }
            }
        };
        if tokio::time::timeout(CLIENT_DONE_TIMEOUT, drained)
            .await
            .is_err()
        {
            tracing::warn!(stream = id, "the client did not close the export stream");
        }
        Ok(())
    });
    (
        Box::new(crated_core::blocking::ChannelWriter::new(chunks, CHUNK)),
        Sending(done),
    )
}
