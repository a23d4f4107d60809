//! The daemon's unix sockets: created with tight modes, never stolen.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context as _};

/// Binds a unix socket at `path` for a server.
///
/// The parent directory is created with mode 0711 when missing (an existing
/// one is left as it is). A stale socket file left by a crashed daemon is
/// replaced; a socket that answers is another live daemon's and is refused,
/// as is any path that is not a socket. The socket is chmod 0660 and chowned
/// to `uid:gid`, so only root and the configured group can talk to it.
pub fn bind(path: &Path, uid: u32, gid: u32) -> anyhow::Result<std::os::unix::net::UnixListener> {
    if let Some(parent) = path.parent() {
        if !parent.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o711)
                .create(parent)
                .with_context(|| format!("create socket directory {}", parent.display()))?;
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => bail!(
                "address {} is in use by another live server: is another crated running? stop it or choose another --address",
                path.display()
            ),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused || e.kind() == io::ErrorKind::NotFound => {
                tracing::info!(path = %path.display(), "removing stale socket");
                std::fs::remove_file(path).with_context(|| format!("remove stale socket {}", path.display()))?;
            }
            Err(e) => return Err(e).with_context(|| format!("probe existing socket {}", path.display())),
        },
        Ok(_) => bail!("address {} exists and is not a socket; refusing to replace it", path.display()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("stat {}", path.display())),
    }
    let listener = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod 0660 {}", path.display()))?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {uid}:{gid} {}", path.display()))?;
    listener
        .set_nonblocking(true)
        .context("set socket non-blocking")?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn creates_with_modes_and_replaces_stale() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/crated.sock");
        let listener = bind(&path, 0, 0).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o660);
        assert_eq!(
            std::fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777,
            0o711
        );
        // Live: refused.
        let err = bind(&path, 0, 0).unwrap_err();
        assert!(
            err.to_string().contains("in use by another live server"),
            "{err}"
        );
        // Stale (listener closed, file left behind): replaced.
        drop(listener);
        assert!(path.exists());
        bind(&path, 0, 0).unwrap();
    }

    #[test]
    fn refuses_to_replace_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-a-socket");
        std::fs::write(&path, "precious").unwrap();
        assert!(bind(&path, 0, 0).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    }
}
