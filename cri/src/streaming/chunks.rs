//! Byte streams made of the chunks a connection's reader hands over: one
//! per SPDY stream or WebSocket channel.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;

/// Reads the chunks sent on `rx` in order; end-of-file once every sender
/// is gone (the peer ended the stream, or the connection).
pub struct ChunkReader {
    rx: mpsc::Receiver<Vec<u8>>,
    pending: Vec<u8>,
    offset: usize,
}

impl ChunkReader {
    /// A reader of what arrives on `rx`.
    pub fn new(rx: mpsc::Receiver<Vec<u8>>) -> Self {
        Self {
            rx,
            pending: Vec::new(),
            offset: 0,
        }
    }
}

impl AsyncRead for ChunkReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        while self.offset >= self.pending.len() {
            match ready!(self.rx.poll_recv(cx)) {
                Some(data) => {
                    self.pending = data;
                    self.offset = 0;
                }
                None => return Poll::Ready(Ok(())),
            }
        }
        let this = &mut *self;
        let n = buf.remaining().min(this.pending.len() - this.offset);
        buf.put_slice(&this.pending[this.offset..this.offset + n]);
        this.offset += n;
        Poll::Ready(Ok(()))
    }
}
