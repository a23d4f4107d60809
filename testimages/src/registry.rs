//! Debian's `docker-registry` on loopback, and pushing test images to it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use crated_core::content::ReaderAt;
use crated_core::descriptor::Descriptor;
use crated_distribution::{HostOptions, Resolver, TransportOptions};

use crate::image::{Blob, Image};

/// A running registry, stopped (and its storage removed) on drop.
pub struct Registry {
    child: Child,
    _root: TempDir,
    /// `127.0.0.1:<port>`.
    pub host: String,
}

/// A temp dir removed on drop (for fixtures outliving a test's scope).
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(prefix: &str) -> std::io::Result<Self> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Registry {
    /// Starts `docker-registry` with a temp root on a free loopback port
    /// and waits until it answers `/v2/`. `htpasswd`, if given, turns on
    /// basic auth with that file.
    pub fn start(htpasswd: Option<&Path>) -> Result<Self> {
        Self::start_with(htpasswd, None)
    }

    /// [`Registry::start`], serving HTTPS with `tls` (certificate, key)
    /// if given.
    pub fn start_with(htpasswd: Option<&Path>, tls: Option<(&Path, &Path)>) -> Result<Self> {
        let mut last = None;
        // A free port can be taken between probing and binding: retry.
        for _ in 0..5 {
            match Self::try_start(htpasswd, tls) {
                Ok(registry) => return Ok(registry),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("could not start docker-registry")))
    }

    fn try_start(htpasswd: Option<&Path>, tls: Option<(&Path, &Path)>) -> Result<Self> {
        let root = TempDir::new("crated-registry")?;
        let host = format!("127.0.0.1:{}", free_port()?);
        let auth = match htpasswd {
            Some(file) => format!(
                "auth:\n  htpasswd:\n    realm: crated-test\n    path: {}\n",
                file.display()
            ),
            None => String::new(),
        };
        let tls = match tls {
            Some((cert, key)) => format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ),
            None => String::new(),
        };
        let config = root.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n{auth}http:\n  addr: {host}\n{tls}",
                root.path().join("data").display()
            ),
        )?;
        let log_path = root.path().join("registry.log");
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting docker-registry (apt-get install docker-registry)")?;
        let mut registry = Self {
            child,
            _root: root,
            host,
        };
        registry.wait_ready().with_context(|| {
            format!(
                "registry log: {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            )
        })?;
        Ok(registry)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("docker-registry exited with {status}");
            }
            if std::net::TcpStream::connect(&self.host).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("docker-registry did not listen on {} within 20s", self.host)
    }

    /// What the registry logged: errors, and a line per request in the
    /// combined log format (its user agent last).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._root.path().join("registry.log")).unwrap_or_default()
    }

    /// The registry's storage root (blobs under `docker/registry/v2`).
    pub fn storage(&self) -> PathBuf {
        self._root.path().join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct InMemory(Bytes);

#[async_trait::async_trait]
impl ReaderAt for InMemory {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }

    async fn read_at(&self, offset: u64, buf: &mut [u8]) -> crated_core::Result<usize> {
        let start = (offset as usize).min(self.0.len());
        let n = buf.len().min(self.0.len() - start);
        buf[..n].copy_from_slice(&self.0[start..start + n]);
        Ok(n)
    }
}

fn descriptor(blob: &Blob) -> Descriptor {
    Descriptor {
        media_type: blob.media_type.clone(),
        digest: blob.digest.clone(),
        size: blob.data.len() as u64,
        annotations: Default::default(),
    }
}

/// Pushes `image` as `reference` (`127.0.0.1:<port>/test/busybox:latest`):
/// layers and configs, then child manifests, then the root under its tag.
pub async fn push(reference: &str, image: &Image) -> Result<()> {
    let resolver = Resolver::new(HostOptions::default(), None, TransportOptions::default());
    push_with(&resolver, reference, image).await
}

/// [`push`] through a given resolver (credentials, TLS).
pub async fn push_with(resolver: &Resolver, reference: &str, image: &Image) -> Result<()> {
    let pusher = resolver.pusher(reference)?;
    let (manifests, others): (Vec<&Blob>, Vec<&Blob>) = image
        .blobs
        .iter()
        .partition(|b| crated_distribution::is_manifest_type(&b.media_type));
    for blob in others {
        pusher
            .push_blob(
                &descriptor(blob),
                Arc::new(InMemory(blob.data.clone())),
                None,
            )
            .await
            .with_context(|| format!("pushing {}", blob.digest))?;
    }
    for blob in manifests {
        pusher
            .push_manifest(&descriptor(blob), blob.data.clone(), false)
            .await?;
    }
    pusher
        .push_manifest(&descriptor(&image.root), image.root.data.clone(), true)
        .await?;
    Ok(())
}
