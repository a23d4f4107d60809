//! Containers, as containerd's Go client makes them: a record (spec,
//! runtime, labels) with a snapshot of its image as root filesystem, and
//! its task.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use crated_core::containers::{Container as Record, Runtime};
use crated_core::descriptor::{Any, Descriptor};
use crated_core::digest::Digest;
use crated_core::images::walk::{self, Node};
use crated_core::mount::mount_all;
use crated_core::platforms::default_matcher;
use crated_core::snapshots::Labels;
use crated_core::tasks::{CreateTask, Stdio};
use crated_core::Result;
use oci_spec::runtime::Spec;

use crate::task::Task;
use crate::{spec, Client, Error};

/// The runtime containers get unless told otherwise.
pub const DEFAULT_RUNTIME: &str = "io.containerd.runc.v2";

/// How a new container gets its root filesystem.
#[derive(Debug, Clone, Default)]
pub enum Rootfs {
    /// None (a container whose spec names its own root).
    #[default]
    None,
    /// A new active snapshot `key` on the unpacked image `parent` chain
    /// (containerd's `WithNewSnapshot`).
    NewSnapshot {
        /// The snapshot's key.
        key: String,
        /// The committed snapshot it is based on (an image's chain id).
        parent: String,
        /// Its labels.
        labels: Labels,
    },
    /// A new read-only view (containerd's `WithNewSnapshotView`).
    NewView {
        /// The view's key.
        key: String,
        /// The committed snapshot it shows.
        parent: String,
    },
    /// An existing snapshot (containerd's `WithSnapshot`).
    Existing {
        /// The snapshot's key.
        key: String,
    },
}

/// A container to create.
#[derive(Debug, Clone)]
pub struct NewContainer {
    /// The image it runs (recorded; its config is the caller's to apply).
    pub image: String,
    /// The snapshotter of its root filesystem.
    pub snapshotter: String,
    /// Its root filesystem.
    pub rootfs: Rootfs,
    /// Runtime name (or a shim's path) and options.
    pub runtime: Runtime,
    /// Its OCI spec.
    pub spec: Spec,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Client extensions.
    pub extensions: BTreeMap<String, Any>,
    /// The sandbox it belongs to.
    pub sandbox: String,
}

impl NewContainer {
    /// A container running `spec` with the default runtime and no root
    /// filesystem of its own.
    pub fn new(spec: Spec) -> Self {
        Self {
            image: String::new(),
            snapshotter: String::new(),
            rootfs: Rootfs::None,
            runtime: Runtime {
                name: DEFAULT_RUNTIME.to_owned(),
                options: None,
            },
            spec,
            labels: BTreeMap::new(),
            extensions: BTreeMap::new(),
            sandbox: String::new(),
        }
    }
}

/// An image unpacked into a snapshotter: what a container's root
/// filesystem is made from.
#[derive(Debug, Clone)]
pub struct ImageRootfs {
    /// The image's name.
    pub name: String,
    /// Its target.
    pub target: Descriptor,
    /// The chain id of its top layer, a committed snapshot.
    pub chain_id: Digest,
    /// Its config document.
    pub config: Vec<u8>,
}

impl Client {
    /// The image `name` for this host's platform unpacked into
    /// `snapshotter` (unpacking it if it is not yet), and its config.
    pub async fn image_rootfs(&self, name: &str, snapshotter: &str) -> Result<ImageRootfs> {
        let ns = self.namespace();
        let image = self
            .services()
            .images
            .get(ns, name)
            .await
            .map_err(|e| Error::Image {
                name: name.to_owned(),
                source: Box::new(e),
            })?;
        let node = Node::from(&image.target);
        let store = &*self.services().content;
        let manifest = walk::manifest(store, ns, &node, &default_matcher()).await?;
        let config = walk::read_blob(store, ns, &manifest.config.digest).await?;
        let diff_ids = walk::rootfs(store, ns, &manifest.config).await?;
        let chain_id = Digest::chain_id(&diff_ids).ok_or_else(|| Error::ImageHasNoLayers {
            name: name.to_owned(),
        })?;
        self.ensure_unpacked(&image.target, chain_id.as_str(), snapshotter)
            .await?;
        Ok(ImageRootfs {
            name: name.to_owned(),
            target: image.target,
            chain_id,
            config,
        })
    }

    /// Unpacks the image `target` (for this host's platform) into
    /// `snapshotter` unless its top layer, `chain_id`, is there already.
    pub async fn ensure_unpacked(
        &self,
        target: &Descriptor,
        chain_id: &str,
        snapshotter: &str,
    ) -> Result<()> {
        match self.snapshotter(snapshotter, None)?.stat(chain_id).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => {
                crate::unpack(self, &Node::from(target), snapshotter, &default_matcher())
                    .await
                    .map(|_| ())
            }
            Err(e) => Err(e),
        }
    }

    /// Runs `read` on a read-only view of the committed snapshot `parent`,
    /// mounted under `scratch` (for lookups in an image's files, such as
    /// its `/etc/passwd`); the view is unmounted and removed after.
    pub async fn with_view<T: Send + 'static>(
        &self,
        snapshotter: &str,
        parent: &str,
        scratch: &Path,
        read: impl FnOnce(&Path) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let lease = crate::leases::Temporary::create(self).await?;
        let sn = self.snapshotter(snapshotter, Some(lease.id()))?;
        let key = format!("view-{}", crated_core::identifiers::unique_part());
        let result = async {
            let mounts = sn.view(&key, parent, Labels::new()).await?;
            let dir = scratch.join(&key);
            tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::DirBuilderExt as _;
                // Owner-only: the image's files are the caller's to read.
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dir)
                    .map_err(|e| Error::io("create", &dir, e))?;
                let outcome = (|| {
                    let guard = mount_all(&mounts, &dir)?;
                    let result = read(&dir);
                    guard.unmount()?;
                    result
                })();
                let _ = std::fs::remove_dir(&dir);
                outcome
            })
            .await
            .map_err(|source| Error::Blocking {
                what: "read snapshot view".to_owned(),
                source,
            })?
        }
        .await;
        if let Err(e) = sn.remove(&key).await {
            if !e.is_not_found() {
                tracing::warn!(key, error = %e, "remove snapshot view");
            }
        }
        lease.release().await;
        result
    }

    /// Creates container `id`: its root filesystem snapshot, then its
    /// record, under a lease until the record holds the snapshot. A
    /// failure leaves neither.
    pub async fn create_container(&self, id: &str, new: NewContainer) -> Result<Container> {
        let lease = crate::leases::Temporary::create(self).await?;
        let created = self.create_container_leased(id, new, lease.id()).await;
        lease.release().await;
        created
    }

    async fn create_container_leased(
        &self,
        id: &str,
        new: NewContainer,
        lease: &str,
    ) -> Result<Container> {
        let ns = self.namespace();
        let snapshot_key = match &new.rootfs {
            Rootfs::None => String::new(),
            Rootfs::NewSnapshot {
                key,
                parent,
                labels,
            } => {
                self.snapshotter(&new.snapshotter, Some(lease))?
                    .prepare(key, parent, labels.clone())
                    .await?;
                key.clone()
            }
            Rootfs::NewView { key, parent } => {
                self.snapshotter(&new.snapshotter, Some(lease))?
                    .view(key, parent, Labels::new())
                    .await?;
                key.clone()
            }
            Rootfs::Existing { key } => key.clone(),
        };
        let made_snapshot = matches!(
            new.rootfs,
            Rootfs::NewSnapshot { .. } | Rootfs::NewView { .. }
        );
        let now = SystemTime::now();
        let record = Record {
            id: id.to_owned(),
            labels: new.labels,
            image: new.image,
            runtime: new.runtime,
            spec: Some(spec::to_any(&new.spec)?),
            snapshotter: new.snapshotter.clone(),
            snapshot_key: snapshot_key.clone(),
            created_at: now,
            updated_at: now,
            extensions: new.extensions,
            sandbox: new.sandbox,
        };
        match self.services().containers.create(ns, record).await {
            Ok(record) => Ok(Container {
                client: self.clone(),
                record,
            }),
            Err(e) => {
                if made_snapshot {
                    if let Ok(sn) = self.snapshotter(&new.snapshotter, None) {
                        let _ = sn.remove(&snapshot_key).await;
                    }
                }
                Err(e)
            }
        }
    }

    /// The container `id`.
    pub async fn load_container(&self, id: &str) -> Result<Container> {
        let record = self
            .services()
            .containers
            .get(self.namespace(), id)
            .await
            .map_err(|e| Error::Container {
                id: id.to_owned(),
                source: Box::new(e),
            })?;
        Ok(Container {
            client: self.clone(),
            record,
        })
    }

    /// The containers matching any of `filters`.
    pub async fn containers(&self, filters: &[String]) -> Result<Vec<Container>> {
        let records = self
            .services()
            .containers
            .list(self.namespace(), filters)
            .await?;
        Ok(records
            .into_iter()
            .map(|record| Container {
                client: self.clone(),
                record,
            })
            .collect())
    }
}

/// A container of a client's namespace.
#[derive(Clone)]
pub struct Container {
    client: Client,
    record: Record,
}

impl Container {
    /// Its id.
    pub fn id(&self) -> &str {
        &self.record.id
    }

    /// Its record as it was loaded.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// Its OCI spec.
    pub fn spec(&self) -> Result<Spec> {
        let any = self
            .record
            .spec
            .as_ref()
            .ok_or_else(|| Error::ContainerHasNoSpec {
                id: self.record.id.clone(),
            })?;
        spec::from_any(any)
    }

    /// Sets (or, with an empty value, clears) labels; returns them all.
    pub async fn set_labels(
        &mut self,
        labels: BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>> {
        let paths: Vec<String> = labels.keys().map(|k| format!("labels.{k}")).collect();
        let mut update = self.record.clone();
        update.labels = labels;
        self.record = self
            .client
            .services()
            .containers
            .update(self.client.namespace(), update, &paths)
            .await?;
        Ok(self.record.labels.clone())
    }

    /// Sets extension `key` to `value`, keeping the others.
    pub async fn set_extension(&mut self, key: &str, value: Any) -> Result<()> {
        let mut update = self.record.clone();
        update.extensions.insert(key.to_owned(), value);
        self.record = self
            .client
            .services()
            .containers
            .update(
                self.client.namespace(),
                update,
                &[format!("extensions.{key}")],
            )
            .await?;
        Ok(())
    }

    /// Its task; NotFound if it has none.
    pub async fn task(&self) -> Result<Task> {
        let process = self
            .client
            .services()
            .tasks
            .get(self.client.namespace(), self.id(), "")
            .await?;
        Ok(Task::new(self.client.clone(), self.id(), process.pid))
    }

    /// Creates its task with the caller's `stdio` (fifo paths or URIs the
    /// shim opens), on the mounts of its snapshot.
    pub async fn new_task(&self, stdio: Stdio, terminal: bool, options: NewTask) -> Result<Task> {
        let rootfs = if self.record.snapshot_key.is_empty() {
            Vec::new()
        } else {
            self.client
                .snapshotter(&self.record.snapshotter, None)?
                .mounts(&self.record.snapshot_key)
                .await?
        };
        let request = CreateTask {
            container_id: self.id().to_owned(),
            rootfs,
            stdio,
            terminal,
            checkpoint: options.checkpoint,
            options: options.options,
            runtime_path: options.runtime_path,
        };
        let pid = self
            .client
            .services()
            .tasks
            .create(self.client.namespace(), request)
            .await?;
        Ok(Task::new(self.client.clone(), self.id(), pid))
    }

    /// Deletes the container, with its snapshot when `cleanup_snapshot`
    /// (a snapshot already gone is fine). FailedPrecondition while it has
    /// a task.
    pub async fn delete(self, cleanup_snapshot: bool) -> Result<()> {
        let ns = self.client.namespace();
        match self.client.services().tasks.get(ns, self.id(), "").await {
            Ok(_) => {
                return Err(Error::ContainerHasTask {
                    id: self.id().to_owned(),
                }
                .into())
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        if cleanup_snapshot && !self.record.snapshot_key.is_empty() {
            if self.record.snapshotter.is_empty() {
                return Err(Error::NoSnapshotter {
                    id: self.id().to_owned(),
                }
                .into());
            }
            let sn = self.client.snapshotter(&self.record.snapshotter, None)?;
            match sn.remove(&self.record.snapshot_key).await {
                Err(e) if !e.is_not_found() => return Err(e),
                _ => {}
            }
        }
        self.client
            .services()
            .containers
            .delete(ns, self.id())
            .await
    }
}

/// How a task is created besides its stdio.
#[derive(Debug, Clone, Default)]
pub struct NewTask {
    /// A checkpoint image's criu dump to restore from.
    pub checkpoint: Option<Descriptor>,
    /// Runtime options for this task (the container's otherwise).
    pub options: Option<Any>,
    /// A shim binary in place of the container's runtime.
    pub runtime_path: String,
}
