//! A pod's network namespace, kept alive by a bind mount of its nsfs file
//! onto a path (as `ip netns` and containerd do), so that runc can join it
//! by path and it outlives the processes in it until the pod is stopped.

use std::io;
use std::path::{Path, PathBuf};

use crated_core::Result;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::Error;

/// A network namespace mounted at a path.
#[derive(Debug, Clone)]
pub struct NetNs {
    path: PathBuf,
}

fn netns_error(path: &Path, action: &'static str, source: io::Error) -> crated_core::Error {
    Error::Netns {
        path: path.to_owned(),
        action,
        source,
    }
    .into()
}

/// A name no other pod's namespace has: `cni-` and 16 random hex digits.
fn random_name() -> Result<String> {
    let mut bytes = [0u8; 8];
    getrandom(&mut bytes)?;
    Ok(format!(
        "cni-{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

fn getrandom(buf: &mut [u8]) -> Result<()> {
    // SAFETY: the kernel writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 || n as usize != buf.len() {
        return Err(crated_core::Error::io(
            "read random bytes for a network namespace name",
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

impl NetNs {
    /// `dir/cni-<random>` as an empty file to mount a namespace on
    /// (`dir` made 0711 if missing).
    fn create_mount_point(dir: &Path) -> Result<NetNs> {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| netns_error(dir, "create directory", e))?;
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
                .map_err(|e| netns_error(dir, "set the mode of", e))?;
        }
        let path = dir.join(random_name()?);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| netns_error(&path, "create mount point", e))?;
        Ok(NetNs { path })
    }

    /// A new network namespace, mounted at `dir/cni-<random>` (`dir` made
    /// 0711 if missing). The namespace is made on a thread of its own that
    /// ends right after, so no other thread of the daemon changes
    /// namespace. Nothing is left behind on failure.
    pub fn create(dir: &Path) -> Result<NetNs> {
        let NetNs { path } = NetNs::create_mount_point(dir)?;
        let target = path.clone();
        let made = std::thread::Builder::new()
            .name("netns".into())
            .spawn(move || -> io::Result<()> {
                // SAFETY: unshare only changes this thread's namespaces;
                // the thread ends right after.
                if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                let tid = nix::unistd::gettid();
                let source = format!("/proc/self/task/{tid}/ns/net");
                mount(
                    Some(source.as_str()),
                    &target,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(io::Error::from)
            })
            .map_err(|e| netns_error(&path, "start a thread to create", e))?
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")));
        if let Err(e) = made {
            let _ = std::fs::remove_file(&path);
            return Err(netns_error(&path, "create network namespace at", e));
        }
        Ok(NetNs { path })
    }

    /// A new network namespace owned by a new user namespace with the
    /// pod's mappings (`hostUsers: false`), mounted at `dir/cni-<random>`,
    /// and that user namespace pinned beside it ([`NetNs::userns_path`])
    /// for the pause container to join: the pod's root then owns its
    /// network namespace (its sysctls, its `/sys`). Nothing is left behind
    /// on failure.
    pub fn create_in_userns(dir: &Path, userns: &crate::userns::PodUserns) -> Result<NetNs> {
        let netns = NetNs::create_mount_point(dir)?;
        let made = (|| -> Result<()> {
            let holder = crated_core::mount::idmap::NamespaceHolder::spawn(
                &[userns.uids],
                &[userns.gids],
                libc::CLONE_NEWNET,
            )?;
            let pin = netns.userns_path();
            std::fs::File::create(&pin).map_err(|e| netns_error(&pin, "create mount point", e))?;
            for (kind, at) in [("net", &netns.path), ("user", &pin)] {
                let source = holder.path(kind);
                mount(
                    Some(&source),
                    at,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| netns_error(at, "bind the namespace onto", e.into()))?;
            }
            Ok(())
        })();
        if let Err(e) = made {
            let _ = netns.remove();
            return Err(e);
        }
        Ok(netns)
    }

    /// Where a pod's user namespace is pinned, when the network namespace
    /// was made in it ([`NetNs::create_in_userns`]).
    pub fn userns_path(&self) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(".userns");
        PathBuf::from(name)
    }

    /// [`NetNs::create`], or [`NetNs::create_in_userns`] for a pod with a
    /// user namespace of its own, on a blocking thread.
    pub async fn create_async(
        dir: PathBuf,
        userns: Option<crate::userns::PodUserns>,
    ) -> Result<NetNs> {
        tokio::task::spawn_blocking(move || match &userns {
            Some(userns) => NetNs::create_in_userns(&dir, userns),
            None => NetNs::create(&dir),
        })
        .await
        .map_err(|e| crated_core::Error::unknown(format!("create network namespace: {e}")))?
    }

    /// The namespace already mounted at `path` (as after a restart).
    pub fn from_path(path: PathBuf) -> NetNs {
        NetNs { path }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when no namespace is mounted at the path any more (the file is
    /// gone, or is a plain file, as after a reboot).
    pub fn is_closed(&self) -> Result<bool> {
        match nix::sys::statfs::statfs(&self.path) {
            Ok(fs) => Ok(fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC),
            Err(nix::errno::Errno::ENOENT) => Ok(true),
            Err(e) => Err(netns_error(&self.path, "inspect", e.into())),
        }
    }

    /// Unmounts and removes the path, and the pinned user namespace if
    /// there is one; what is already gone is fine.
    pub fn remove(&self) -> Result<()> {
        let remove = |path: &Path| -> Result<()> {
            match umount2(path, MntFlags::MNT_DETACH) {
                // Not mounted, or not there: nothing to undo.
                Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
                Err(e) => return Err(netns_error(path, "unmount", e.into())),
            }
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    Err(netns_error(path, "remove", e))
                }
                _ => Ok(()),
            }
        };
        // Both tried, whichever fails.
        let netns = remove(&self.path);
        let userns = remove(&self.userns_path());
        netns.and(userns)
    }

    /// A TCP connection to `port` on the namespace's loopback (127.0.0.1,
    /// then ::1), as port-forward makes: the socket is made on a thread of
    /// its own that joins the namespace and ends right after; a socket
    /// stays in the namespace it was made in.
    pub fn connect_tcp(&self, port: u16) -> io::Result<std::net::TcpStream> {
        let path = self.path.clone();
        std::thread::Builder::new()
            .name("netns-connect".into())
            .spawn(move || -> io::Result<std::net::TcpStream> {
                let ns = std::fs::File::open(&path)?;
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(io::Error::from)?;
                connect_loopback(port)
            })?
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the connecting thread panicked")))
    }

    /// [`NetNs::remove`] on a blocking thread.
    pub async fn remove_async(self) -> Result<()> {
        tokio::task::spawn_blocking(move || self.remove())
            .await
            .map_err(|e| crated_core::Error::unknown(format!("remove network namespace: {e}")))?
    }
}

/// A TCP connection to `port` on this namespace's loopback, IPv4 first.
pub fn connect_loopback(port: u16) -> io::Result<std::net::TcpStream> {
    let timeout = std::time::Duration::from_secs(10);
    let v4 = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    std::net::TcpStream::connect_timeout(&v4, timeout).or_else(|first| {
        let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
        std::net::TcpStream::connect_timeout(&v6, timeout).map_err(|_| first)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_is_made_mounted_and_removed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ns = NetNs::create(&dir.path().join("netns")).expect("create");
        assert!(!ns.is_closed().expect("inspect"));
        // It is a network namespace other than ours.
        let ours = std::fs::metadata("/proc/self/ns/net").expect("own netns");
        let theirs = std::fs::metadata(ns.path()).expect("mounted netns");
        use std::os::unix::fs::MetadataExt as _;
        assert_ne!(ours.ino(), theirs.ino());
        let again = NetNs::from_path(ns.path().to_owned());
        ns.remove().expect("remove");
        assert!(again.is_closed().expect("inspect"));
        assert!(!again.path().exists());
        again.remove().expect("removing twice is fine");
    }
}
