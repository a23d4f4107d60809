//! `ctr run`: a container from an image (snapshot on its unpacked layers,
//! a spec from its config), its task started with stdio attached; waits
//! and exits with the task's exit status, as containerd's ctr.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use clap::Args;
use crated_api::containerd::services::containers::v1 as containers;
use crated_api::containerd::services::images::v1 as images;
use crated_api::containerd::services::tasks::v1 as tasks;
use crated_api::proxy::content::ContentProxy;
use crated_api::proxy::snapshots::SnapshotsProxy;
use crated_api::services::snapshots::mount_to_pb;
use crated_client::cio::{FifoSet, FIFO_DIR};
use crated_client::spec::{Spec, SPEC_TYPE_URL};
use crated_core::digest::Digest;
use crated_core::images::walk::{self, Node};
use crated_core::mount::mount_all;
use crated_core::platforms::default_matcher;
use crated_core::snapshots::{Labels, Snapshotter as _};

use crate::client::{status_error, Client};
use crate::commands::label_args;
use crate::commands::tasks::wait;

/// What a container is made of: `ctr run`'s and `ctr containers create`'s
/// flags.
#[derive(Args)]
pub struct ContainerArgs {
    /// Allocate a tty.
    #[arg(short, long)]
    tty: bool,
    /// Environment variables (KEY=value).
    #[arg(long)]
    env: Vec<String>,
    /// Mounts: `type=bind,src=/host,dst=/ctr,options=rbind:ro`.
    #[arg(long)]
    mount: Vec<String>,
    /// Use the host's network namespace.
    #[arg(long)]
    net_host: bool,
    /// Runtime name, or the absolute path of a shim binary.
    #[arg(long, default_value = "io.containerd.runc.v2")]
    runtime: String,
    /// Snapshotter for the container's root filesystem.
    #[arg(long, env = "CONTAINERD_SNAPSHOTTER", default_value = "overlayfs")]
    snapshotter: String,
    /// Working directory.
    #[arg(long)]
    cwd: Option<String>,
    /// User (`uid[:gid]` or `name[:group]` from the image).
    #[arg(short, long)]
    user: Option<String>,
    /// Container labels (key=value).
    #[arg(long)]
    label: Vec<String>,
    /// The image.
    image: Option<String>,
    /// The container id.
    id: Option<String>,
    /// Command and arguments (default: the image's).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// `ctr run` arguments.
#[derive(Args)]
pub struct RunArgs {
    /// Delete the task and container (and its snapshot) once it exits.
    #[arg(long)]
    rm: bool,
    /// Start the task and return, not waiting for it.
    #[arg(short, long)]
    detach: bool,
    /// Restore the task from this checkpoint image (its criu dump).
    #[arg(long)]
    checkpoint: Option<String>,
    #[command(flatten)]
    container: ContainerArgs,
}

impl ContainerArgs {
    fn image_and_id(&self) -> anyhow::Result<(String, String)> {
        let image = self
            .image
            .clone()
            .filter(|i| !i.is_empty())
            .ok_or_else(|| anyhow::anyhow!("image ref must be provided"))?;
        let id = self
            .id
            .clone()
            .filter(|i| !i.is_empty())
            .ok_or_else(|| anyhow::anyhow!("container id must be provided"))?;
        Ok((image, id))
    }
}

/// `ctr containers create`: the container record and its snapshot.
pub async fn create(client: Client, args: ContainerArgs) -> anyhow::Result<()> {
    let (image_ref, id) = args.image_and_id()?;
    let lease =
        crated_client::leases::Temporary::create(&client.channel, &client.namespace).await?;
    let created = create_container(&client, &args, &image_ref, &id, lease.id()).await;
    lease.release().await;
    created
}

/// Parses ctr's `--mount` (`type=…,src=…,dst=…,options=a:b`).
fn parse_mount(spec: &str) -> anyhow::Result<(String, String, String, Vec<String>)> {
    let (mut kind, mut src, mut dst, mut options) = (
        String::from("none"),
        String::new(),
        String::new(),
        Vec::new(),
    );
    for field in spec.split(',') {
        let (k, v) = field.split_once('=').ok_or_else(|| {
            anyhow::anyhow!("invalid mount specification: expected key=val in {field:?}")
        })?;
        match k {
            "type" => kind = v.to_owned(),
            "source" | "src" => src = v.to_owned(),
            "destination" | "dst" => dst = v.to_owned(),
            "options" => options = v.split(':').map(str::to_owned).collect(),
            other => anyhow::bail!("mount option {other:?} not supported"),
        }
    }
    if dst.is_empty() {
        anyhow::bail!("invalid mount specification {spec:?}: no destination");
    }
    Ok((kind, src, dst, options))
}

/// Runs `ctr run`.
pub async fn run(client: Client, args: RunArgs) -> anyhow::Result<()> {
    let (image_ref, id) = args.container.image_and_id()?;
    let lease =
        crated_client::leases::Temporary::create(&client.channel, &client.namespace).await?;
    let created = create_container(&client, &args.container, &image_ref, &id, lease.id()).await;
    lease.release().await;
    created?;
    let checkpoint = match &args.checkpoint {
        Some(name) => Some(
            crated_client::checkpoint::task_dump(&client.channel, &client.namespace, name)
                .await
                .map_err(crate::client::user_error)?,
        ),
        None => None,
    };
    let code = start_task(
        &client,
        &id,
        &args.container.snapshotter,
        args.container.tty,
        args.detach,
        checkpoint,
    )
    .await;
    let code = match code {
        Ok(code) => code,
        Err(e) => {
            if args.rm {
                remove_container(&client, &id, &args.container.snapshotter).await;
            }
            return Err(e);
        }
    };
    if args.detach {
        return Ok(());
    }
    if args.rm {
        let _ = tasks::tasks_client::TasksClient::new(client.channel.clone())
            .delete(client.request(tasks::DeleteTaskRequest {
                container_id: id.clone(),
            }))
            .await
            .map_err(status_error)?;
        remove_container(&client, &id, &args.container.snapshotter).await;
    }
    if code != 0 {
        std::process::exit(code as i32);
    }
    Ok(())
}

async fn remove_container(client: &Client, id: &str, snapshotter: &str) {
    let _ = containers::containers_client::ContainersClient::new(client.channel.clone())
        .delete(client.request(containers::DeleteContainerRequest { id: id.to_owned() }))
        .await;
    let sn = SnapshotsProxy::new(
        client.channel.clone(),
        snapshotter,
        client.namespace.clone(),
    );
    let _ = sn.remove(id).await;
}

/// The image's unpacked chain and config; unpacks it if needed.
async fn image_rootfs(
    client: &Client,
    image_ref: &str,
    snapshotter: &str,
) -> anyhow::Result<(Digest, Vec<u8>)> {
    let image = images::images_client::ImagesClient::new(client.channel.clone())
        .get(client.request(images::GetImageRequest {
            name: image_ref.to_owned(),
        }))
        .await
        .map_err(status_error)?
        .into_inner()
        .image
        .unwrap_or_default();
    let target = image.target.unwrap_or_default();
    let node = Node {
        media_type: target.media_type,
        digest: Digest::parse(&target.digest)?,
        size: target.size,
        platform: None,
    };
    let store = ContentProxy::new(client.channel.clone());
    let manifest = walk::manifest(&store, &client.namespace, &node, &default_matcher()).await?;
    let config = walk::read_blob(&store, &client.namespace, &manifest.config.digest).await?;
    let diff_ids = walk::rootfs(&store, &client.namespace, &manifest.config).await?;
    let chain = Digest::chain_id(&diff_ids)
        .ok_or_else(|| anyhow::anyhow!("image {image_ref} has no layers"))?;
    let sn = SnapshotsProxy::new(
        client.channel.clone(),
        snapshotter,
        client.namespace.clone(),
    );
    if sn.stat(chain.as_str()).await.is_err() {
        crated_client::unpack(
            &client.channel,
            &client.namespace,
            &node,
            snapshotter,
            &default_matcher(),
        )
        .await?;
    }
    Ok((chain, config))
}

async fn create_container(
    client: &Client,
    args: &ContainerArgs,
    image_ref: &str,
    id: &str,
    lease: &str,
) -> anyhow::Result<()> {
    let (chain, config) = image_rootfs(client, image_ref, &args.snapshotter).await?;
    let mut spec = Spec::default_unix(client.namespace.as_str(), id);
    let image_user = spec.with_image_config(&config, &args.args)?;
    let user = args.user.clone().unwrap_or(image_user);
    let sn = SnapshotsProxy::new(
        client.channel.clone(),
        &args.snapshotter,
        client.namespace.clone(),
    )
    .with_lease(lease);
    // A named user is looked up in the image's /etc/passwd and /etc/group.
    let numeric = user.is_empty() || user.split(':').all(|p| p.parse::<u32>().is_ok());
    if numeric {
        spec.with_user(&user, None)?;
    } else {
        let key = format!("{id}-user-view");
        let mounts = sn.view(&key, chain.as_str(), Labels::new()).await?;
        let dir = std::env::temp_dir().join(format!("ctr-run-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let looked_up = (|| -> anyhow::Result<()> {
            let guard = mount_all(&mounts, &dir)?;
            let result = spec.with_user(&user, Some(&dir));
            guard.unmount()?;
            Ok(result?)
        })();
        let _ = std::fs::remove_dir(&dir);
        let _ = sn.remove(&key).await;
        looked_up?;
    }
    if !args.env.is_empty() {
        spec.with_env(&args.env);
    }
    if args.tty {
        spec.with_tty();
    }
    if let Some(cwd) = &args.cwd {
        spec.with_cwd(cwd);
    }
    for m in &args.mount {
        let (kind, src, dst, options) = parse_mount(m)?;
        spec.with_mount(&kind, &src, &dst, &options);
    }
    if args.net_host {
        spec.with_host_network();
    }
    sn.prepare(id, chain.as_str(), Labels::new()).await?;
    let labels: HashMap<String, String> = label_args(&args.label).into_iter().collect();
    let created = containers::containers_client::ContainersClient::new(client.channel.clone())
        .create(client.request(containers::CreateContainerRequest {
            container: Some(containers::Container {
                id: id.to_owned(),
                labels,
                image: image_ref.to_owned(),
                runtime: Some(containers::container::Runtime {
                    name: args.runtime.clone(),
                    options: None,
                }),
                spec: Some(prost_types::Any {
                    type_url: SPEC_TYPE_URL.to_owned(),
                    value: spec.to_bytes()?,
                }),
                snapshotter: args.snapshotter.clone(),
                snapshot_key: id.to_owned(),
                ..Default::default()
            }),
        }))
        .await;
    if let Err(status) = created {
        let _ = sn.remove(id).await;
        return Err(status_error(status));
    }
    Ok(())
}

/// Creates and starts container `id`'s task; with stdio attached, waits
/// for it and returns its exit status (0 when detached).
pub async fn start_task(
    client: &Client,
    id: &str,
    snapshotter: &str,
    tty: bool,
    detach: bool,
    checkpoint: Option<crated_core::descriptor::Descriptor>,
) -> anyhow::Result<u32> {
    let sn = SnapshotsProxy::new(
        client.channel.clone(),
        snapshotter,
        client.namespace.clone(),
    );
    let rootfs = sn.mounts(id).await?;
    // Detached tasks get fifos too (kept after we exit), so `ctr tasks
    // attach` can take their stdio later, as containerd's ctr does.
    let fifos = Some(FifoSet::new(Path::new(FIFO_DIR), id, true, tty)?);
    let attached = if detach {
        None
    } else {
        fifos.as_ref().map(FifoSet::attach)
    };
    // Until the task has started (dropped on return).
    let _held = if detach {
        fifos.as_ref().map(FifoSet::hold_outputs)
    } else {
        None
    };
    let mut svc = tasks::tasks_client::TasksClient::new(client.channel.clone());
    svc.create(
        client.request(tasks::CreateTaskRequest {
            container_id: id.to_owned(),
            rootfs: rootfs.into_iter().map(mount_to_pb).collect(),
            stdin: fifos
                .as_ref()
                .map(|f| FifoSet::path(&f.stdin))
                .unwrap_or_default(),
            stdout: fifos
                .as_ref()
                .map(|f| f.stdout.display().to_string())
                .unwrap_or_default(),
            stderr: fifos
                .as_ref()
                .map(|f| FifoSet::path(&f.stderr))
                .unwrap_or_default(),
            terminal: tty,
            checkpoint: checkpoint.map(crated_api::services::images::descriptor_to_pb),
            ..Default::default()
        }),
    )
    .await
    .map_err(status_error)?;
    let waiting = wait(client, id, "");
    svc.start(client.request(tasks::StartRequest {
        container_id: id.to_owned(),
        exec_id: String::new(),
    }))
    .await
    .map_err(status_error)?;
    if detach {
        if let Some(fifos) = fifos {
            fifos.keep();
        }
        return Ok(0);
    }
    // With a tty: our terminal raw (the container's echoes), its size the
    // container's.
    let _raw = if tty { RawTerminal::enter() } else { None };
    if tty {
        if let Some((width, height)) = terminal_size() {
            let _ = svc
                .resize_pty(client.request(tasks::ResizePtyRequest {
                    container_id: id.to_owned(),
                    exec_id: String::new(),
                    width,
                    height,
                }))
                .await;
        }
    }
    // Signals to ctr go to the task, as containerd's ctr forwards them.
    let forward = {
        let (channel, namespace, id) = (
            client.channel.clone(),
            client.namespace.clone(),
            id.to_owned(),
        );
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            loop {
                let sig = tokio::select! {
                    _ = int.recv() => libc::SIGINT,
                    _ = term.recv() => libc::SIGTERM,
                };
                let mut request = tonic::Request::new(tasks::KillRequest {
                    container_id: id.clone(),
                    exec_id: String::new(),
                    signal: sig as u32,
                    all: false,
                });
                crated_api::metadata::set_grpc_namespace(&mut request, &namespace);
                let _ = tasks::tasks_client::TasksClient::new(channel.clone())
                    .kill(request)
                    .await;
            }
        })
    };
    let code = waiting.await;
    forward.abort();
    if let Some(attached) = attached {
        tokio::task::spawn_blocking(move || attached.wait(Duration::from_secs(5))).await?;
    }
    drop(fifos);
    code
}

/// Our stdin's terminal in raw mode, restored on drop.
struct RawTerminal(nix::sys::termios::Termios);

impl RawTerminal {
    fn enter() -> Option<Self> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(Self(saved))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.0,
        );
    }
}

/// Columns and rows of our stdout's terminal.
fn terminal_size() -> Option<(u32, u32)> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the pointer given, which
    // points to a live, writable `winsize`.
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    (rc == 0 && size.ws_col > 0).then(|| (u32::from(size.ws_col), u32::from(size.ws_row)))
}
