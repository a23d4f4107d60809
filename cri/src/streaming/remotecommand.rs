//! Exec and attach sessions (Kubernetes' "remotecommand" protocols
//! `v4.channel.k8s.io` and `v5.channel.k8s.io`): which streams a session
//! has, the terminal sizes a client sends, and the status that ends it.

use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

/// The protocols we speak, best first. v5 differs from v4 only over
/// WebSocket (a channel to close stdin); over SPDY they are the same.
pub const PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// How long a client has to open its streams after the upgrade (the
/// kubelet streaming library's default).
pub const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Which streams a session has, from the Exec or Attach request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// The client sends input.
    pub stdin: bool,
    /// The client wants stdout.
    pub stdout: bool,
    /// The client wants stderr (never with a terminal).
    pub stderr: bool,
    /// The process has a terminal; the client sends its sizes.
    pub tty: bool,
}

impl Options {
    /// The request's streams; stderr goes with a terminal (one output).
    pub fn new(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Self {
        Self {
            stdin,
            stdout,
            stderr: stderr && !tty,
            tty,
        }
    }
}

/// How a session ended, as its error channel reports it.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The process exited with this status.
    Exited(u32),
    /// The session could not run the process (or attach).
    Failed(String),
}

/// `metav1.Status`, the fields the clients read.
#[derive(Serialize)]
struct Status<'a> {
    metadata: Empty,
    status: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct Details<'a> {
    causes: Vec<Cause<'a>>,
}

#[derive(Serialize)]
struct Cause<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'a str,
    message: &'a str,
}

impl Outcome {
    /// The JSON `metav1.Status` the error channel carries at the end: a
    /// success, a non-zero exit code (which clients turn into their own
    /// exit code), or an internal error with its message.
    pub fn status_json(&self) -> Vec<u8> {
        let code;
        let message;
        let status = match self {
            Outcome::Exited(0) => Status {
                metadata: Empty {},
                status: "Success",
                message: "",
                reason: "",
                details: None,
                code: None,
            },
            Outcome::Exited(exit) => {
                code = exit.to_string();
                message = format!("command terminated with non-zero exit code: exit status {exit}");
                Status {
                    metadata: Empty {},
                    status: "Failure",
                    message: &message,
                    reason: "NonZeroExitCode",
                    details: Some(Details {
                        causes: vec![Cause {
                            reason: "ExitCode",
                            message: &code,
                        }],
                    }),
                    code: None,
                }
            }
            Outcome::Failed(error) => {
                message = format!("Internal error occurred: {error}");
                Status {
                    metadata: Empty {},
                    status: "Failure",
                    message: &message,
                    reason: "InternalError",
                    details: Some(Details {
                        causes: vec![Cause {
                            reason: "",
                            message: error,
                        }],
                    }),
                    code: Some(500),
                }
            }
        };
        // Plain structs of strings always serialize.
        serde_json::to_vec(&status).unwrap_or_default()
    }
}

/// A terminal size as clients send it.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TerminalSize {
    width: u16,
    height: u16,
}

/// Decodes the JSON terminal sizes a client writes one after another
/// (`{"Width":80,"Height":24}`) into (width, height) pairs, until the
/// stream ends or sends something that is not a size.
pub fn decode_resizes<R>(mut stream: R) -> mpsc::Receiver<(u16, u16)>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let mut pending = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            let n = match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            pending.extend_from_slice(&chunk[..n]);
            let mut sizes = serde_json::Deserializer::from_slice(&pending).into_iter();
            let mut used = 0;
            while let Some(size) = sizes.next() {
                match size {
                    Ok(TerminalSize { width, height }) => {
                        used = sizes.byte_offset();
                        if tx.send((width, height)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) if e.is_eof() => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "bad terminal size from a streaming client");
                        return;
                    }
                }
            }
            pending.drain(..used);
            if pending.len() > 4096 {
                return;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_what_clients_decode() {
        assert_eq!(
            String::from_utf8(Outcome::Exited(0).status_json()).unwrap(),
            r#"{"metadata":{},"status":"Success"}"#
        );
        let failed: serde_json::Value =
            serde_json::from_slice(&Outcome::Exited(7).status_json()).unwrap();
        assert_eq!(failed["status"], "Failure");
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "7");
        let internal: serde_json::Value =
            serde_json::from_slice(&Outcome::Failed("no such container".into()).status_json())
                .unwrap();
        assert_eq!(internal["status"], "Failure");
        assert_eq!(internal["code"], 500);
        assert!(internal["message"]
            .as_str()
            .unwrap()
            .contains("no such container"));
    }

    #[tokio::test]
    async fn resizes_are_decoded_across_reads() {
        let (mut w, r) = tokio::io::duplex(64);
        let mut sizes = decode_resizes(r);
        use tokio::io::AsyncWriteExt as _;
        w.write_all(br#"{"Width":80,"Height":24}{"Wid"#)
            .await
            .unwrap();
        assert_eq!(sizes.recv().await, Some((80, 24)));
        w.write_all(br#"th":100,"Height":50}"#).await.unwrap();
        w.write_all(b"\n").await.unwrap();
        assert_eq!(sizes.recv().await, Some((100, 50)));
        drop(w);
        assert_eq!(sizes.recv().await, None);
    }
}
