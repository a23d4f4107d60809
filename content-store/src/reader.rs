//! Positional reads of a committed blob.

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::Arc;

use crated_core::content::ReaderAt;
use crated_core::digest::Digest;
use crated_core::Result;

use crate::{blocking, Error};

/// A committed blob, open for reading. The file stays readable while open
/// even if the blob is deleted meanwhile.
pub(crate) struct FileReader {
    file: Arc<File>,
    size: u64,
    digest: Digest,
}

impl FileReader {
    /// Opens the blob of `digest` at `path`; NotFound if absent. Blocking.
    pub(crate) fn open(path: &Path, digest: &Digest) -> Result<Self, Error> {
        let not_found = || crate::not_found(digest);
        let file = File::open(path).map_err(|e| match e.kind() {
            ErrorKind::NotFound => not_found(),
            _ => Error::io("open blob", path, e),
        })?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io("stat blob", path, e))?;
        if !meta.is_file() {
            return Err(not_found());
        }
        Ok(Self {
            file: Arc::new(file),
            size: meta.len(),
            digest: digest.clone(),
        })
    }
}

#[async_trait::async_trait]
impl ReaderAt for FileReader {
    fn size(&self) -> u64 {
        self.size
    }

    async fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let left = self.size.saturating_sub(offset);
        let want = usize::try_from(left).map_or(buf.len(), |left| left.min(buf.len()));
        if want == 0 {
            return Ok(0);
        }
        let (file, digest) = (Arc::clone(&self.file), self.digest.clone());
        // The caller's buffer cannot go to another thread; read into ours.
        let data = blocking(move || {
            let mut data = vec![0u8; want];
            let mut filled = 0;
            while filled < want {
                match file.read_at(&mut data[filled..], offset + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(source) => {
                        return Err(Error::Read {
                            digest,
                            offset: offset + filled as u64,
                            source,
                        }
                        .into())
                    }
                }
            }
            data.truncate(filled);
            Ok(data)
        })
        .await?;
        buf[..data.len()].copy_from_slice(&data);
        Ok(data.len())
    }
}
