//! `ctr run`: a container from an image (snapshot on its unpacked layers,
//! a spec from its config), its task started with stdio attached; waits
//! and exits with the task's exit status, as containerd's ctr.

use std::path::Path;
use std::time::Duration;

use clap::Args;
use crated_client::cio::{Fifos, FIFO_DIR};
use crated_client::spec::{self, ImageConfig, Opt, SpecContext};
use crated_client::{Container, NewContainer, NewTask, Rootfs};
use crated_core::containers::Runtime;
use crated_core::descriptor::Descriptor;

use crate::client::{user_error, Client};
use crate::commands::label_args;

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
    /// OCI annotations of the spec (key=value), e.g.
    /// `io.containerd.runc.v2.group=g` to run in one shim with the rest of
    /// group `g`.
    #[arg(long)]
    annotation: Vec<String>,
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
    create_container(&client, &args, &image_ref, &id).await?;
    Ok(())
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

/// Parses `--annotation`s: each must be `key=value` (a bare key is refused
/// as containerd's ctr does, unlike a bare `--label`).
fn annotation_args(args: &[String]) -> anyhow::Result<std::collections::HashMap<String, String>> {
    args.iter()
        .map(|arg| match arg.split_once('=') {
            Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
            None => anyhow::bail!("invalid key=value format annotation: {arg}"),
        })
        .collect()
}

/// Runs `ctr run`.
pub async fn run(client: Client, args: RunArgs) -> anyhow::Result<()> {
    let (image_ref, id) = args.container.image_and_id()?;
    let container = create_container(&client, &args.container, &image_ref, &id).await?;
    let checkpoint = match &args.checkpoint {
        Some(name) => Some(
            crated_client::checkpoint::task_dump(&client, name)
                .await
                .map_err(user_error)?,
        ),
        None => None,
    };
    let code = start_task(&container, args.container.tty, args.detach, checkpoint).await;
    let code = match code {
        Ok(code) => code,
        Err(e) => {
            if args.rm {
                remove_container(&container).await;
            }
            return Err(e);
        }
    };
    if args.detach {
        return Ok(());
    }
    if args.rm {
        container
            .task()
            .await
            .map_err(user_error)?
            .delete()
            .await
            .map_err(user_error)?;
        remove_container(&container).await;
    }
    if code != 0 {
        std::process::exit(code as i32);
    }
    Ok(())
}

/// Deletes a container that failed to run (its task first, if any).
async fn remove_container(container: &Container) {
    if let Ok(task) = container.task().await {
        let _ = task.delete().await;
    }
    let _ = container.clone().delete(true).await;
}

/// The spec options `ctr run`'s flags ask for, after the image's config.
fn spec_options(args: &ContainerArgs, config: ImageConfig) -> anyhow::Result<Vec<Opt>> {
    let user = args.user.clone().unwrap_or_else(|| config.user.clone());
    let mut opts = vec![
        spec::with_image_config_args(config, args.args.clone()),
        spec::with_user(user),
    ];
    if !args.env.is_empty() {
        opts.push(spec::with_env(args.env.clone()));
    }
    if args.tty {
        opts.push(spec::with_tty());
    }
    if let Some(cwd) = &args.cwd {
        opts.push(spec::with_process_cwd(cwd));
    }
    let mut mounts = Vec::new();
    for m in &args.mount {
        let (kind, src, dst, options) = parse_mount(m)?;
        mounts.push(spec::mount_of(&kind, &src, &dst, &options));
    }
    if !mounts.is_empty() {
        opts.push(spec::with_mounts(mounts));
    }
    if args.net_host {
        opts.push(spec::with_host_network());
    }
    if !args.annotation.is_empty() {
        opts.push(spec::with_annotations(annotation_args(&args.annotation)?));
    }
    Ok(opts)
}

/// Creates container `id` from `image_ref` (unpacked if needed) with the
/// spec `args` ask for; a user named by name is looked up in the image's
/// own `/etc/passwd` and `/etc/group`.
async fn create_container(
    client: &Client,
    args: &ContainerArgs,
    image_ref: &str,
    id: &str,
) -> anyhow::Result<Container> {
    let rootfs = client
        .image_rootfs(image_ref, &args.snapshotter)
        .await
        .map_err(user_error)?;
    let config = ImageConfig::parse(&rootfs.config).map_err(user_error)?;
    let user = args.user.clone().unwrap_or_else(|| config.user.clone());
    let opts = spec_options(args, config)?;
    let ns = client.namespace().clone();
    let numeric = user.is_empty() || user.split(':').all(|p| p.parse::<u32>().is_ok());
    let spec = if numeric {
        spec::generate(&SpecContext::new(&ns, id), &opts).map_err(user_error)?
    } else {
        let owned_id = id.to_owned();
        client
            .with_view(
                &args.snapshotter,
                rootfs.chain_id.as_str(),
                &std::env::temp_dir(),
                move |root| {
                    spec::generate(&SpecContext::new(&ns, &owned_id).with_rootfs(root), &opts)
                },
            )
            .await
            .map_err(user_error)?
    };
    let new = NewContainer {
        image: image_ref.to_owned(),
        snapshotter: args.snapshotter.clone(),
        rootfs: Rootfs::NewSnapshot {
            key: id.to_owned(),
            parent: rootfs.chain_id.to_string(),
            labels: Default::default(),
        },
        runtime: Runtime {
            name: args.runtime.clone(),
            options: None,
        },
        labels: label_args(&args.label),
        ..NewContainer::new(spec)
    };
    client.create_container(id, new).await.map_err(user_error)
}

/// Creates and starts `container`'s task; with stdio attached, waits for
/// it and returns its exit status (0 when detached).
pub async fn start_task(
    container: &Container,
    tty: bool,
    detach: bool,
    checkpoint: Option<Descriptor>,
) -> anyhow::Result<u32> {
    let id = container.id();
    // Detached tasks get fifos too (kept after we exit), so `ctr tasks
    // attach` can take their stdio later, as containerd's ctr does.
    let fifos = Fifos::new(Path::new(FIFO_DIR), id, true, tty).map_err(user_error)?;
    let attached = (!detach).then(|| attach_terminal(&fifos, tty));
    // Until the task has started (dropped on return).
    let _held = detach.then(|| fifos.hold_outputs());
    let options = NewTask {
        checkpoint,
        ..NewTask::default()
    };
    let task = container
        .new_task(fifos.stdio(), tty, options)
        .await
        .map_err(user_error)?;
    task.start().await.map_err(user_error)?;
    if detach {
        fifos.keep();
        return Ok(0);
    }
    let code = interact(&task, tty).await;
    if let Some(attached) = attached {
        attached.wait(Duration::from_secs(5)).await;
    }
    drop(fifos);
    code
}

/// Copies between our stdio and `fifos` (stderr joins stdout with a tty).
pub fn attach_terminal(fifos: &Fifos, tty: bool) -> crated_client::cio::Attached {
    let stderr: Option<crated_client::cio::Output> = if tty {
        None
    } else {
        Some(Box::new(tokio::io::stderr()))
    };
    fifos.attach(
        Some(Box::new(tokio::io::stdin())),
        Some(Box::new(tokio::io::stdout())),
        stderr,
    )
}

/// Waits for `process` to exit while our terminal is its (raw, resized)
/// and the signals we get are forwarded to it, as containerd's ctr does;
/// its exit status.
pub async fn interact(process: &crated_client::Process, tty: bool) -> anyhow::Result<u32> {
    let _raw = if tty { RawTerminal::enter() } else { None };
    if tty {
        if let Some((width, height)) = terminal_size() {
            let _ = process.resize(width, height).await;
        }
    }
    let forward = {
        let process = process.clone();
        tokio::spawn(async move {
            let Ok(mut signals) =
                crated_core::signals::Signals::new(&[libc::SIGINT, libc::SIGTERM])
            else {
                return;
            };
            while let Some(sig) = signals.recv().await {
                let _ = process.kill(sig as u32, false).await;
            }
        })
    };
    let exit = process.wait().await;
    forward.abort();
    Ok(exit.map_err(user_error)?.exit_status)
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
