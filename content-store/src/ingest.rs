//! Ingests: writers, their on-disk state, resume and commit.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crated_core::content::{Labels, Status, Writer, WriterOptions};
use crated_core::digest::Digest;
use crated_core::{Error, Result};
use sha2::{Digest as _, Sha256};

use crate::layout::{sync_dir, write_atomic, Layout};
use crate::{blocking, io_error, RefLock};

fn nanos(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
        .to_string()
}

fn read_nanos(path: &Path) -> Option<SystemTime> {
    let text = std::fs::read_to_string(path).ok()?;
    let n: u128 = text.trim().parse().ok()?;
    let secs = u64::try_from(n / 1_000_000_000).ok()?;
    let sub = u32::try_from(n % 1_000_000_000).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, sub))
}

fn digest_of(hasher: &Sha256) -> Digest {
    let hex: String = hasher
        .clone()
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // A sha256 digest in lower-case hex is always valid.
    Digest::parse(&format!("sha256:{hex}")).expect("sha256 hex digests are valid")
}

fn not_found(r#ref: &str) -> Error {
    Error::not_found(format!("ingest ref {ref:?} not found"))
}

/// The status of the ingest of `ref`, read from disk.
pub(crate) fn status(layout: &Layout, r#ref: &str) -> Result<Status> {
    let dir = layout.ingest(r#ref);
    read_status(&dir).and_then(|s| s.ok_or_else(|| not_found(r#ref)))
}

fn read_status(dir: &Path) -> Result<Option<Status>> {
    let r#ref = match std::fs::read_to_string(dir.join("ref")) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("read ingest ref", dir, e)),
    };
    let data = dir.join("data");
    let meta = match std::fs::metadata(&data) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("stat ingest data", &data, e)),
    };
    let started_at = read_nanos(&dir.join("startedat")).unwrap_or(UNIX_EPOCH);
    Ok(Some(Status {
        r#ref,
        offset: meta.len(),
        total: std::fs::read_to_string(dir.join("total"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0),
        expected: std::fs::read_to_string(dir.join("expected"))
            .ok()
            .and_then(|d| Digest::parse(d.trim()).ok()),
        started_at,
        updated_at: meta.modified().unwrap_or(started_at),
    }))
}

/// Every ingest on disk.
pub(crate) fn list(layout: &Layout) -> Result<Vec<Status>> {
    let root = layout.ingests();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&root).map_err(|e| io_error("list", &root, e))? {
        let entry = entry.map_err(|e| io_error("list", &root, e))?;
        if let Some(status) = read_status(&entry.path())? {
            out.push(status);
        }
    }
    out.sort_by(|a, b| a.r#ref.cmp(&b.r#ref));
    Ok(out)
}

/// Removes the ingest of `ref`.
pub(crate) fn remove(layout: &Layout, r#ref: &str) -> Result<()> {
    let dir = layout.ingest(r#ref);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(not_found(r#ref)),
        Err(e) => Err(io_error("remove ingest", &dir, e)),
    }
}

/// An open ingest. File work runs on blocking threads: the file and hasher
/// move into the worker and back, so no lock is held across awaits.
pub(crate) struct LocalWriter {
    layout: Arc<Layout>,
    r#ref: String,
    state: Option<(File, Sha256)>,
    offset: u64,
    total: u64,
    expected: Option<Digest>,
    started_at: SystemTime,
    updated_at: SystemTime,
    _lock: RefLock,
}

impl LocalWriter {
    /// Opens the ingest, creating it or resuming it: existing data is
    /// re-hashed so the digest covers every byte.
    pub(crate) fn open(layout: Arc<Layout>, options: WriterOptions, lock: RefLock) -> Result<Self> {
        let dir = layout.ingest(&options.r#ref);
        let existing = read_status(&dir)?;
        if existing.is_none() {
            std::fs::create_dir_all(&dir).map_err(|e| io_error("create ingest", &dir, e))?;
            write_atomic(&dir.join("startedat"), nanos(SystemTime::now()).as_bytes())?;
            if options.total > 0 {
                write_atomic(&dir.join("total"), options.total.to_string().as_bytes())?;
            }
            if let Some(expected) = &options.expected {
                write_atomic(&dir.join("expected"), expected.as_str().as_bytes())?;
            }
            // The ref file last: an ingest without it is incomplete and not listed.
            write_atomic(&dir.join("ref"), options.r#ref.as_bytes())?;
        }
        let data = dir.join("data");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&data)
            .map_err(|e| io_error("open ingest data", &data, e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut offset = 0u64;
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| io_error("re-read ingest data", &data, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            offset += n as u64;
        }
        let now = SystemTime::now();
        let (started_at, total, expected) = match existing {
            Some(s) => (
                s.started_at,
                if options.total > 0 {
                    options.total
                } else {
                    s.total
                },
                options.expected.or(s.expected),
            ),
            None => (now, options.total, options.expected),
        };
        Ok(Self {
            layout,
            r#ref: options.r#ref,
            state: Some((file, hasher)),
            offset,
            total,
            expected,
            started_at,
            updated_at: now,
            _lock: lock,
        })
    }

    fn take_state(&mut self) -> Result<(File, Sha256)> {
        self.state.take().ok_or_else(|| {
            Error::failed_precondition(format!(
                "writer of ingest {:?} failed earlier and is unusable",
                self.r#ref
            ))
        })
    }
}

#[async_trait::async_trait]
impl Writer for LocalWriter {
    async fn write(&mut self, data: &[u8]) -> Result<()> {
        let (mut file, mut hasher) = self.take_state()?;
        let data = data.to_vec();
        let (file, hasher, len) = blocking(move || {
            file.write_all(&data)
                .map_err(|e| Error::unknown(format!("write ingest data: {e}")))?;
            hasher.update(&data);
            Ok((file, hasher, data.len() as u64))
        })
        .await?;
        self.state = Some((file, hasher));
        self.offset += len;
        self.updated_at = SystemTime::now();
        Ok(())
    }

    fn digest(&self) -> Digest {
        match &self.state {
            Some((_, hasher)) => digest_of(hasher),
            None => digest_of(&Sha256::new()),
        }
    }

    async fn status(&self) -> Result<Status> {
        Ok(Status {
            r#ref: self.r#ref.clone(),
            offset: self.offset,
            total: self.total,
            expected: self.expected.clone(),
            started_at: self.started_at,
            updated_at: self.updated_at,
        })
    }

    async fn truncate(&mut self, size: u64) -> Result<()> {
        if size != 0 {
            return Err(Error::not_implemented(format!(
                "truncate of ingest {:?} to {size} bytes: only 0 is supported",
                self.r#ref
            )));
        }
        let (file, _) = self.take_state()?;
        let file = blocking(move || {
            file.set_len(0)
                .map_err(|e| Error::unknown(format!("truncate ingest data: {e}")))?;
            let mut file = file;
            file.seek(SeekFrom::Start(0))
                .map_err(|e| Error::unknown(format!("seek ingest data: {e}")))?;
            Ok(file)
        })
        .await?;
        self.state = Some((file, Sha256::new()));
        self.offset = 0;
        self.updated_at = SystemTime::now();
        Ok(())
    }

    async fn commit(
        mut self: Box<Self>,
        size: u64,
        expected: Option<Digest>,
        labels: Labels,
    ) -> Result<()> {
        crated_core::labels::validate_all(&labels)?;
        let (file, hasher) = self.take_state()?;
        let digest = digest_of(&hasher);
        let offset = self.offset;
        let layout = Arc::clone(&self.layout);
        let r#ref = self.r#ref.clone();
        let expected = expected.or(self.expected.clone());
        let result = blocking(move || -> Result<std::result::Result<(), (File, Error)>> {
            if size > 0 && size != offset {
                return Ok(Err((
                    file,
                    Error::failed_precondition(format!(
                        "unexpected commit size {offset}, expected {size}"
                    )),
                )));
            }
            if let Some(expected) = &expected {
                if *expected != digest {
                    return Ok(Err((
                        file,
                        Error::failed_precondition(format!(
                            "unexpected commit digest {digest}, expected {expected}"
                        )),
                    )));
                }
            }
            file.sync_all()
                .map_err(|e| Error::unknown(format!("sync ingest data of {ref:?}: {e}")))?;
            drop(file);
            let dir = layout.ingest(&r#ref);
            let target = layout.blob(&digest);
            if target.exists() {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(Error::already_exists(format!(
                    "content {digest} already exists"
                )));
            }
            let data = dir.join("data");
            std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o444))
                .map_err(|e| io_error("chmod", &data, e))?;
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io_error("create", parent, e))?;
            }
            std::fs::rename(&data, &target).map_err(|e| io_error("commit blob to", &target, e))?;
            if let Some(parent) = target.parent() {
                sync_dir(parent)?;
            }
            if !labels.is_empty() {
                layout.write_labels(&digest, &labels)?;
            }
            std::fs::remove_dir_all(&dir).map_err(|e| io_error("remove ingest", &dir, e))?;
            Ok(Ok(()))
        })
        .await?;
        // A failed verification keeps the ingest, as containerd does, so the
        // client can look at it or abort it.
        result.map_err(|(_file, err)| err)
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        if let Ok((file, _)) = self.take_state() {
            blocking(move || {
                file.sync_data()
                    .map_err(|e| Error::unknown(format!("sync ingest data: {e}")))
            })
            .await?;
        }
        Ok(())
    }
}
