//! SPDY/3.1 frames: the binary layout, and the zlib-compressed header
//! blocks each direction of a connection keeps one compression stream for.
//!
//! Only what Kubernetes' streaming clients (Go's spdystream) exchange is
//! modelled: SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY,
//! HEADERS, WINDOW_UPDATE and DATA. Unknown control frames are skipped,
//! as the specification asks.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::dictionary::dictionary;

/// The protocol version this codec speaks.
const VERSION: u16 = 3;
/// A frame's length field is 24 bits.
pub const MAX_FRAME_LEN: usize = 0x00ff_ffff;
/// Decompressed header blocks larger than this end the connection: a peer
/// cannot make us inflate without bound.
const MAX_HEADER_BLOCK: usize = 1 << 20;

/// Ends a stream in the direction of the frame (control and data frames).
pub const FLAG_FIN: u8 = 0x01;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status codes used here.
pub mod rst {
    /// The stream broke the protocol.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// The stream is refused (e.g. the server is shutting down).
    pub const REFUSED_STREAM: u32 = 3;
    /// The stream is cancelled.
    pub const CANCEL: u32 = 5;
    /// Something went wrong on our side.
    pub const INTERNAL_ERROR: u32 = 6;
}

/// Header name/value pairs; names are lower case on the wire.
pub type Headers = Vec<(String, String)>;

/// One SPDY frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Opens a stream.
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        flags: u8,
        headers: Headers,
    },
    /// Accepts a stream the peer opened.
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    /// Aborts a stream.
    RstStream { stream_id: u32, status: u32 },
    /// Connection settings as (flags, id, value).
    Settings {
        flags: u8,
        entries: Vec<(u8, u32, u32)>,
    },
    /// Liveness check, echoed by the receiver.
    Ping { id: u32 },
    /// The sender will open no more streams.
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    /// More headers for a stream.
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    /// Flow-control credit.
    WindowUpdate { stream_id: u32, delta: u32 },
    /// Stream payload.
    Data {
        stream_id: u32,
        flags: u8,
        data: Vec<u8>,
    },
}

/// What is wrong with what the peer sent.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The connection failed or closed mid-frame.
    #[error("read SPDY frame: {0}")]
    Io(#[from] std::io::Error),
    /// Not SPDY/3.
    #[error("SPDY version {0} is not supported (only 3)")]
    Version(u16),
    /// A frame whose fields do not fit its length.
    #[error("malformed SPDY {kind} frame: {reason}")]
    Malformed {
        kind: &'static str,
        reason: &'static str,
    },
    /// The header block does not inflate.
    #[error("SPDY header block: {0}")]
    Compression(String),
}

fn malformed(kind: &'static str, reason: &'static str) -> FrameError {
    FrameError::Malformed { kind, reason }
}

/// Compresses outgoing header blocks: one zlib stream per direction for
/// the whole connection, primed with the SPDY dictionary, flushed at the
/// end of every block.
pub struct HeaderEncoder {
    zlib: Compress,
}

impl Default for HeaderEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderEncoder {
    /// A fresh stream.
    pub fn new() -> Self {
        let mut zlib = Compress::new(Compression::default(), true);
        // A new zlib stream always accepts a dictionary.
        let _ = zlib.set_dictionary(dictionary());
        Self { zlib }
    }

    fn encode(&mut self, headers: &Headers) -> Vec<u8> {
        let mut plain = Vec::new();
        plain.extend_from_slice(&len32(headers.len()));
        for (name, value) in headers {
            plain.extend_from_slice(&len32(name.len()));
            plain.extend_from_slice(name.to_ascii_lowercase().as_bytes());
            plain.extend_from_slice(&len32(value.len()));
            plain.extend_from_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(plain.len() + 64);
        let mut consumed = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(plain.len() + 64);
            }
            let before = self.zlib.total_in();
            // Compressing into a Vec with room cannot fail.
            let _ = self
                .zlib
                .compress_vec(&plain[consumed..], &mut out, FlushCompress::Sync);
            consumed += usize::try_from(self.zlib.total_in() - before).unwrap_or(0);
            // Done once all input is in and the flush left spare room
            // (zlib fills the buffer completely while it has more).
            if consumed >= plain.len() && out.len() < out.capacity() {
                return out;
            }
        }
    }
}

/// Inflates incoming header blocks (the peer's zlib stream).
pub struct HeaderDecoder {
    zlib: Decompress,
}

impl Default for HeaderDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderDecoder {
    /// A fresh stream.
    pub fn new() -> Self {
        Self {
            zlib: Decompress::new(true),
        }
    }

    fn decode(&mut self, kind: &'static str, block: &[u8]) -> Result<Headers, FrameError> {
        let mut plain = Vec::with_capacity(block.len() * 4 + 64);
        let mut consumed = 0;
        loop {
            if plain.capacity() - plain.len() < 256 {
                plain.reserve(block.len() * 2 + 256);
            }
            let before = self.zlib.total_in();
            let status =
                self.zlib
                    .decompress_vec(&block[consumed..], &mut plain, FlushDecompress::Sync);
            consumed += usize::try_from(self.zlib.total_in() - before).unwrap_or(0);
            match status {
                Ok(Status::StreamEnd) => break,
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.zlib
                        .set_dictionary(dictionary())
                        .map_err(|e| FrameError::Compression(e.to_string()))?;
                    continue;
                }
                Err(e) => return Err(FrameError::Compression(e.to_string())),
            }
            if plain.len() > MAX_HEADER_BLOCK {
                return Err(malformed(kind, "header block inflates beyond 1 MiB"));
            }
            if consumed >= block.len() && plain.len() < plain.capacity() {
                break;
            }
        }
        parse_headers(kind, &plain)
    }
}

fn parse_headers(kind: &'static str, mut plain: &[u8]) -> Result<Headers, FrameError> {
    let count = take_u32(&mut plain).ok_or_else(|| malformed(kind, "no header count"))?;
    let mut headers = Vec::new();
    for _ in 0..count {
        let name = take_string(&mut plain).ok_or_else(|| malformed(kind, "truncated header"))?;
        let value = take_string(&mut plain).ok_or_else(|| malformed(kind, "truncated header"))?;
        if name.is_empty() {
            return Err(malformed(kind, "empty header name"));
        }
        headers.push((name.to_ascii_lowercase(), value));
    }
    Ok(headers)
}

fn take_u32(data: &mut &[u8]) -> Option<u32> {
    let (head, rest) = data.split_first_chunk::<4>()?;
    *data = rest;
    Some(u32::from_be_bytes(*head))
}

fn take_string(data: &mut &[u8]) -> Option<String> {
    let len = usize::try_from(take_u32(data)?).ok()?;
    if data.len() < len {
        return None;
    }
    let (head, rest) = data.split_at(len);
    *data = rest;
    Some(String::from_utf8_lossy(head).into_owned())
}

fn len32(len: usize) -> [u8; 4] {
    u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes()
}

fn stream_id(word: u32) -> u32 {
    word & 0x7fff_ffff
}

impl Frame {
    /// Appends the frame's wire form to `out`, compressing its headers
    /// with `encoder` (which must see every header block of the
    /// connection's direction, in order).
    pub fn encode(&self, encoder: &mut HeaderEncoder, out: &mut Vec<u8>) {
        let (kind, flags, body): (u16, u8, Vec<u8>) = match self {
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                out.push(*flags);
                out.extend_from_slice(&len32(data.len()).as_slice()[1..]);
                out.extend_from_slice(data);
                return;
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                flags,
                headers,
            } => {
                let mut body = Vec::new();
                body.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                body.extend_from_slice(&(associated_to & 0x7fff_ffff).to_be_bytes());
                body.push((priority & 0x07) << 5);
                body.push(0);
                body.extend_from_slice(&encoder.encode(headers));
                (TYPE_SYN_STREAM, *flags, body)
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            }
            | Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                let kind = match self {
                    Frame::SynReply { .. } => TYPE_SYN_REPLY,
                    _ => TYPE_HEADERS,
                };
                let mut body = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                body.extend_from_slice(&encoder.encode(headers));
                (kind, *flags, body)
            }
            Frame::RstStream { stream_id, status } => {
                let mut body = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                body.extend_from_slice(&status.to_be_bytes());
                (TYPE_RST_STREAM, 0, body)
            }
            Frame::Settings { flags, entries } => {
                let mut body = len32(entries.len()).to_vec();
                for (entry_flags, id, value) in entries {
                    body.push(*entry_flags);
                    body.extend_from_slice(&id.to_be_bytes()[1..]);
                    body.extend_from_slice(&value.to_be_bytes());
                }
                (TYPE_SETTINGS, *flags, body)
            }
            Frame::Ping { id } => (TYPE_PING, 0, id.to_be_bytes().to_vec()),
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                let mut body = (last_good_stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                body.extend_from_slice(&status.to_be_bytes());
                (TYPE_GOAWAY, 0, body)
            }
            Frame::WindowUpdate { stream_id, delta } => {
                let mut body = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                body.extend_from_slice(&(delta & 0x7fff_ffff).to_be_bytes());
                (TYPE_WINDOW_UPDATE, 0, body)
            }
        };
        out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
        out.extend_from_slice(&kind.to_be_bytes());
        out.push(flags);
        out.extend_from_slice(&len32(body.len()).as_slice()[1..]);
        out.extend_from_slice(&body);
    }

    /// Reads the next frame; `None` at a clean end of the connection
    /// (between frames). Unknown control frames are skipped.
    pub async fn read<R: AsyncRead + Unpin>(
        reader: &mut R,
        decoder: &mut HeaderDecoder,
    ) -> Result<Option<Frame>, FrameError> {
        loop {
            let mut head = [0u8; 8];
            match reader.read(&mut head[..1]).await? {
                0 => return Ok(None),
                _ => reader.read_exact(&mut head[1..]).await?,
            };
            let len = usize::from(head[5]) << 16 | usize::from(head[6]) << 8 | usize::from(head[7]);
            let flags = head[4];
            let mut body = vec![0u8; len];
            reader.read_exact(&mut body).await?;
            let first = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            if first & 0x8000_0000 == 0 {
                return Ok(Some(Frame::Data {
                    stream_id: first,
                    flags,
                    data: body,
                }));
            }
            let version = u16::from_be_bytes([head[0], head[1]]) & 0x7fff;
            if version != VERSION {
                return Err(FrameError::Version(version));
            }
            let kind = u16::from_be_bytes([head[2], head[3]]);
            if let Some(frame) = Self::control(kind, flags, &body, decoder)? {
                return Ok(Some(frame));
            }
        }
    }

    fn control(
        kind: u16,
        flags: u8,
        body: &[u8],
        decoder: &mut HeaderDecoder,
    ) -> Result<Option<Frame>, FrameError> {
        let mut rest = body;
        let frame = match kind {
            TYPE_SYN_STREAM => {
                const K: &str = "SYN_STREAM";
                if body.len() < 10 {
                    return Err(malformed(K, "shorter than 10 bytes"));
                }
                let id = take_u32(&mut rest).map(stream_id).unwrap_or(0);
                let associated_to = take_u32(&mut rest).map(stream_id).unwrap_or(0);
                let priority = rest[0] >> 5;
                Frame::SynStream {
                    stream_id: id,
                    associated_to,
                    priority,
                    flags,
                    headers: decoder.decode(K, &rest[2..])?,
                }
            }
            TYPE_SYN_REPLY | TYPE_HEADERS => {
                let k = if kind == TYPE_SYN_REPLY {
                    "SYN_REPLY"
                } else {
                    "HEADERS"
                };
                let id = take_u32(&mut rest)
                    .map(stream_id)
                    .ok_or_else(|| malformed(k, "no stream id"))?;
                let headers = decoder.decode(k, rest)?;
                if kind == TYPE_SYN_REPLY {
                    Frame::SynReply {
                        stream_id: id,
                        flags,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id: id,
                        flags,
                        headers,
                    }
                }
            }
            TYPE_RST_STREAM => {
                const K: &str = "RST_STREAM";
                let id = take_u32(&mut rest).ok_or_else(|| malformed(K, "too short"))?;
                let status = take_u32(&mut rest).ok_or_else(|| malformed(K, "too short"))?;
                Frame::RstStream {
                    stream_id: stream_id(id),
                    status,
                }
            }
            TYPE_SETTINGS => {
                const K: &str = "SETTINGS";
                let count = take_u32(&mut rest).ok_or_else(|| malformed(K, "too short"))?;
                let mut entries = Vec::new();
                for _ in 0..count {
                    let word = take_u32(&mut rest).ok_or_else(|| malformed(K, "truncated"))?;
                    let value = take_u32(&mut rest).ok_or_else(|| malformed(K, "truncated"))?;
                    entries.push(((word >> 24) as u8, word & 0x00ff_ffff, value));
                }
                Frame::Settings { flags, entries }
            }
            TYPE_PING => Frame::Ping {
                id: take_u32(&mut rest).ok_or_else(|| malformed("PING", "too short"))?,
            },
            TYPE_GOAWAY => {
                const K: &str = "GOAWAY";
                let last = take_u32(&mut rest).ok_or_else(|| malformed(K, "too short"))?;
                Frame::GoAway {
                    last_good_stream_id: stream_id(last),
                    // SPDY/2-style GOAWAYs carry no status.
                    status: take_u32(&mut rest).unwrap_or(0),
                }
            }
            TYPE_WINDOW_UPDATE => {
                const K: &str = "WINDOW_UPDATE";
                let id = take_u32(&mut rest).ok_or_else(|| malformed(K, "too short"))?;
                let delta = take_u32(&mut rest).ok_or_else(|| malformed(K, "too short"))?;
                Frame::WindowUpdate {
                    stream_id: stream_id(id),
                    delta: delta & 0x7fff_ffff,
                }
            }
            _ => return Ok(None),
        };
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests;
