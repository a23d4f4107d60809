//! The streaming server: the URLs `Exec`, `Attach` and `PortForward`
//! answer with, and the HTTP server behind them that upgrades to SPDY/3.1
//! or WebSocket and carries a process's stdio or a pod's ports, as kubelet
//! and its clients (kubectl, crictl, critest) expect of a CRI runtime.
//!
//! Each RPC checks its request and stores it under a one-time token; the
//! client (or kubelet on its behalf) then connects to
//! `http://<stream_server_address>:<port>/{exec,attach,portforward}/<token>`.

mod chunks;
mod idle;
mod portforward;
pub mod remotecommand;
mod server;
mod sessions;
pub mod spdy;
mod tls;
pub mod tokens;
mod websocket;

use std::sync::OnceLock;

use crated_core::{Error, Result};

use crate::runtime::v1 as pb;
use crate::Cri;

pub(crate) use server::serve;

/// A request waiting for its client to connect.
#[derive(Debug)]
pub(crate) enum Pending {
    Exec(pb::ExecRequest),
    Attach(pb::AttachRequest),
    PortForward(pb::PortForwardRequest),
}

/// The streaming server's state the RPCs share.
#[derive(Default)]
pub(crate) struct Streaming {
    tokens: tokens::Tokens<Pending>,
    /// `http://host:port`, once the server listens.
    base_url: OnceLock<String>,
}

impl Streaming {
    fn url(&self, kind: &str, request: Pending) -> Result<String> {
        let base = self.base_url.get().ok_or_else(|| {
            Error::unavailable("the streaming server is not listening (yet)".to_owned())
        })?;
        let token = self.tokens.insert(request)?;
        Ok(format!("{base}/{kind}/{token}"))
    }
}

fn check_stdio(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Result<()> {
    if !(stdin || stdout || stderr) {
        return Err(Error::invalid_argument(
            "one of stdin, stdout or stderr must be set",
        ));
    }
    if tty && stderr {
        return Err(Error::invalid_argument(
            "tty and stderr cannot both be set: a terminal has one output",
        ));
    }
    Ok(())
}

impl Cri {
    /// `Exec`: the URL of a streamed exec in a running container.
    pub(crate) fn exec_url(&self, mut request: pb::ExecRequest) -> Result<pb::ExecResponse> {
        if request.cmd.is_empty() {
            return Err(Error::invalid_argument("exec command must not be empty"));
        }
        check_stdio(request.stdin, request.stdout, request.stderr, request.tty)?;
        // Any unique prefix names the container in the RPC; the session
        // uses its full id.
        request.container_id = self.running_container(&request.container_id)?.id.clone();
        let url = self.streaming.url("exec", Pending::Exec(request))?;
        Ok(pb::ExecResponse { url })
    }

    /// `Attach`: the URL of an attach to a running container.
    pub(crate) fn attach_url(&self, mut request: pb::AttachRequest) -> Result<pb::AttachResponse> {
        check_stdio(request.stdin, request.stdout, request.stderr, request.tty)?;
        request.container_id = self.running_container(&request.container_id)?.id.clone();
        let url = self.streaming.url("attach", Pending::Attach(request))?;
        Ok(pb::AttachResponse { url })
    }

    /// `PortForward`: the URL of a port-forward into a ready pod.
    pub(crate) fn port_forward_url(
        &self,
        mut request: pb::PortForwardRequest,
    ) -> Result<pb::PortForwardResponse> {
        let sandbox = self.sandboxes.get(&request.pod_sandbox_id)?;
        if sandbox.state() != crate::sandbox::SandboxState::Ready {
            return Err(Error::failed_precondition(format!(
                "sandbox {:?} is not ready",
                sandbox.id
            )));
        }
        if let Some(port) = request.port.iter().find(|p| !(1..=65535).contains(*p)) {
            return Err(Error::invalid_argument(format!(
                "port {port} is not a TCP port"
            )));
        }
        request.pod_sandbox_id = sandbox.id.clone();
        let url = self
            .streaming
            .url("portforward", Pending::PortForward(request))?;
        Ok(pb::PortForwardResponse { url })
    }
}
