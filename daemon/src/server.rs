//! Starting, serving and stopping the daemon.

use std::collections::HashMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;

use crated_api::plugins::{GrpcLimits, GRPC};
use crated_services::introspection::{REVISION, VERSION};

use crate::config::Config;
use crate::{builtins, socket};

/// Creates the top-level directory `path` with `mode`, and narrows an
/// existing one to it: the root holds every image's content and every
/// snapshot, and (as Debian's containerd 1.6) nobody else walks into it;
/// the state dir stays searchable (0711) for the paths containers need.
fn create_dir(path: &Path, what: &str, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .with_context(|| format!("create {what} directory {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {what} directory {}", path.display()))
}

/// Sets the daemon's own OOM score adjustment, as containerd does.
fn set_oom_score(score: i32) -> anyhow::Result<()> {
    if score == 0 {
        return Ok(());
    }
    std::fs::write("/proc/self/oom_score_adj", score.to_string())
        .with_context(|| format!("set oom_score_adj to {score}"))
}

/// Marks descriptors the daemon inherited (a lock held by whoever started
/// it, a terminal) close-on-exec, so shims and their containers, which
/// outlive the daemon, do not keep them open.
fn close_inherited_on_exec() {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
                .filter(|fd| *fd > 2)
                .collect()
        })
        .unwrap_or_default();
    for fd in fds {
        let _ = nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
    }
}

fn warn_unsupported(config: &Config) {
    for key in &config.unknown {
        tracing::warn!(key = %key, "unknown key in config; ignored");
    }
    if !config.grpc.tcp_address.is_empty() {
        tracing::warn!(address = %config.grpc.tcp_address, "grpc tcp_address is not served by crated yet; ignored");
    }
    if !config.debug.address.is_empty() {
        tracing::warn!(address = %config.debug.address, "debug address is not served by crated yet; ignored");
    }
    if !config.metrics.address.is_empty() {
        tracing::warn!(address = %config.metrics.address, "metrics address is not served by crated yet; ignored");
    }
}

/// Tells systemd the daemon's state (`Type=notify` in
/// `contrib/crated.service`): `READY=1` once serving, `STOPPING=1` on the
/// way out, sent to `$NOTIFY_SOCKET` as containerd's `sd_notify`. Without
/// the variable this does nothing; a failure is logged and the daemon goes
/// on (systemd then times the start out itself).
fn notify_systemd(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = (|| -> std::io::Result<()> {
        use std::os::unix::ffi::OsStrExt as _;
        let socket = std::os::unix::net::UnixDatagram::unbound()?;
        let bytes = target.as_bytes();
        // `@name` is an abstract socket.
        if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt as _;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
        } else {
            socket.send_to(state.as_bytes(), std::path::Path::new(&target))?;
        }
        Ok(())
    })();
    if let Err(e) = sent {
        tracing::warn!(socket = ?target, error = %e, state, "notify systemd");
    }
}

/// Loads every plugin the config enables, in dependency order; returns
/// once all inits are done (running tasks of a previous daemon included).
pub async fn load_plugins(config: &Config) -> anyhow::Result<crated_plugin::Registry> {
    let mut registrations = builtins::builtins();
    registrations.extend(builtins::proxies(config));
    let options = crated_plugin::LoadOptions {
        root: config.root.clone(),
        state: config.state.clone(),
        grpc_address: config.grpc.address.clone(),
        ttrpc_address: config.ttrpc_address(),
        sections: config.plugins.clone(),
        disabled: config.disabled_plugins.clone(),
        required: config.required_plugins.clone(),
        timeouts: config.timeouts()?,
    };
    crated_plugin::load(registrations, options)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// A daemon with every plugin loaded and the ttrpc socket shims publish
/// their events to served; without a gRPC socket it is a daemon embedded
/// in a program, driven in process through [`Loaded::client`].
pub struct Loaded {
    /// Every plugin's outcome and value.
    pub registry: crated_plugin::Registry,
    ttrpc: ttrpc::r#async::Server,
    ttrpc_path: PathBuf,
}

/// Prepares the daemon's directories and process, loads its plugins (every
/// running task of a previous daemon reconnected) and serves its ttrpc
/// socket.
pub async fn load(config: &Config) -> anyhow::Result<Loaded> {
    warn_unsupported(config);
    close_inherited_on_exec();
    create_dir(&config.root, "root", 0o700)?;
    create_dir(&config.state, "state", 0o711)?;
    set_oom_score(config.oom_score)?;
    // Not a child subreaper (as containerd): shims daemonise and are
    // reaped by init; the daemon only waits for the processes it spawns.
    let registry = load_plugins(config).await?;
    let mut ttrpc_services = HashMap::new();
    for (_, server) in registry.get_all(GRPC) {
        ttrpc_services.extend(server.ttrpc_services());
    }
    let ttrpc_path = config.ttrpc_address();
    let started = async {
        let listener = socket::bind(&ttrpc_path, config.ttrpc.uid, config.ttrpc.gid)?;
        let listener =
            tokio::net::UnixListener::from_std(listener).context("register ttrpc socket")?;
        let mut server = ttrpc::r#async::Server::new()
            .add_listener(listener.into())
            .register_service(ttrpc_services);
        server
            .start()
            .await
            .map_err(|e| anyhow::anyhow!("start ttrpc server on {}: {e}", ttrpc_path.display()))?;
        Ok::<_, anyhow::Error>(server)
    }
    .await;
    match started {
        Ok(ttrpc) => Ok(Loaded {
            registry,
            ttrpc,
            ttrpc_path,
        }),
        Err(e) => {
            let _ = std::fs::remove_file(&ttrpc_path);
            registry.close().await;
            Err(e)
        }
    }
}

impl Loaded {
    /// A client of this daemon's service layer, in process.
    pub fn client(&self) -> anyhow::Result<crated_client::Client> {
        let services = crated_client::Services::from_plugins(&self.registry)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(crated_client::Client::new(services))
    }

    /// Stops serving ttrpc and closes every plugin.
    pub async fn shutdown(mut self) {
        if let Err(e) = self.ttrpc.shutdown().await {
            tracing::warn!(error = %e, "ttrpc server shutdown");
        }
        if let Err(e) = std::fs::remove_file(&self.ttrpc_path) {
            tracing::warn!(path = %self.ttrpc_path.display(), error = %e, "remove socket");
        }
        self.registry.close().await;
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let started = Instant::now();
    // Before any socket exists: a client (a test, systemd) that finds the
    // socket may stop the daemon at once, and a SIGTERM that met the
    // default disposition killed it with its sockets left behind. One that
    // comes while the plugins load waits in the handler's pipe and stops
    // the daemon gracefully as soon as it serves. (Before the first log
    // line too, which the tests take as "handlers in place".)
    let mut stop = crated_core::signals::Signals::new(&[libc::SIGTERM, libc::SIGINT])
        .context("install the SIGTERM and SIGINT handlers")?;
    tracing::info!(version = VERSION, revision = REVISION, "starting crated");
    // Every plugin is ready (and every running task reconnected) before
    // the gRPC socket exists: a client that finds it finds the tasks.
    let loaded = load(&config).await?;
    let limits = GrpcLimits {
        max_recv: config.grpc.max_recv_message_size,
        max_send: config.grpc.max_send_message_size,
    };
    let mut routes = tonic::service::Routes::default();
    for (_, server) in loaded.registry.get_all(GRPC) {
        routes = server.add_routes(routes, limits);
    }
    let grpc_path = config.grpc.address.clone();
    let grpc_listener = match socket::bind(&grpc_path, config.grpc.uid, config.grpc.gid)
        .and_then(|l| tokio::net::UnixListener::from_std(l).context("register grpc socket"))
    {
        Ok(l) => l,
        Err(e) => {
            loaded.shutdown().await;
            return Err(e);
        }
    };

    let (stop_tx, grpc_stop) = tokio::sync::watch::channel(false);
    let mut grpc = tokio::spawn(crate::grpc_serve::serve(grpc_listener, routes, grpc_stop));
    tracing::info!(address = %grpc_path.display(), "serving...");
    tracing::info!(address = %loaded.ttrpc_path.display(), "serving...");
    tracing::info!(
        "crated successfully booted in {:.3}s",
        started.elapsed().as_secs_f64()
    );
    // Ready once a stop would be graceful.
    notify_systemd("READY=1");
    let served = tokio::select! {
        signal = stop.recv() => {
            let signal = if signal == Some(libc::SIGINT) { "interrupt" } else { "terminated" };
            tracing::info!(signal, "stopping crated");
            Ok(())
        }
        result = &mut grpc => Err(match result {
            Ok(Ok(())) => anyhow::anyhow!("grpc server stopped unexpectedly"),
            Ok(Err(e)) => anyhow::anyhow!("grpc server failed: {e}"),
            Err(e) => anyhow::anyhow!("grpc server task failed: {e}"),
        }),
    };

    notify_systemd("STOPPING=1");
    let _ = stop_tx.send(true);
    if served.is_ok() {
        // Graceful: in-flight calls finish, new connections are refused.
        match tokio::time::timeout(std::time::Duration::from_secs(10), &mut grpc).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "grpc server shutdown"),
            Err(_) => tracing::warn!("grpc server did not stop within 10s"),
            _ => {}
        }
    }
    if let Err(e) = std::fs::remove_file(&grpc_path) {
        tracing::warn!(path = %grpc_path.display(), error = %e, "remove socket");
    }
    loaded.shutdown().await;
    tracing::info!("crated stopped");
    served
}
