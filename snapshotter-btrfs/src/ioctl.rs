//! The btrfs ioctls the snapshotter needs, as in linux/btrfs.h, with safe
//! wrappers taking paths.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use crate::Error;

type Result<T, E = Error> = std::result::Result<T, E>;

const BTRFS_IOCTL_MAGIC: u8 = 0x94;
const BTRFS_PATH_NAME_MAX: usize = 4087;
const BTRFS_SUBVOL_NAME_MAX: usize = 4039;
const BTRFS_INO_LOOKUP_PATH_MAX: usize = 4080;
const BTRFS_SUBVOL_RDONLY: u64 = 1 << 1;
/// The inode number of every subvolume's root directory.
const BTRFS_FIRST_FREE_OBJECTID: u64 = 256;

#[repr(C)]
struct VolArgs {
    fd: i64,
    name: [u8; BTRFS_PATH_NAME_MAX + 1],
}

#[repr(C)]
struct VolArgsV2 {
    fd: i64,
    transid: u64,
    flags: u64,
    unused: [u64; 4],
    name: [u8; BTRFS_SUBVOL_NAME_MAX + 1],
}

#[repr(C)]
struct InoLookupArgs {
    treeid: u64,
    objectid: u64,
    name: [u8; BTRFS_INO_LOOKUP_PATH_MAX],
}

nix::ioctl_write_ptr!(btrfs_subvol_create, BTRFS_IOCTL_MAGIC, 14, VolArgs);
nix::ioctl_write_ptr!(btrfs_snap_destroy, BTRFS_IOCTL_MAGIC, 15, VolArgs);
nix::ioctl_readwrite!(btrfs_ino_lookup, BTRFS_IOCTL_MAGIC, 18, InoLookupArgs);
nix::ioctl_write_ptr!(btrfs_snap_create_v2, BTRFS_IOCTL_MAGIC, 23, VolArgsV2);
nix::ioctl_read!(btrfs_subvol_getflags, BTRFS_IOCTL_MAGIC, 25, u64);
nix::ioctl_write_ptr!(btrfs_subvol_setflags, BTRFS_IOCTL_MAGIC, 26, u64);

/// The error of ioctl `op` on `path`.
fn failed<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(nix::errno::Errno) -> Error + 'a {
    move |source| Error::Ioctl {
        op,
        path: path.to_owned(),
        source,
    }
}

fn open_dir(path: &Path) -> Result<File> {
    File::open(path).map_err(|source| Error::Io {
        op: "btrfs open",
        path: path.to_owned(),
        source,
    })
}

/// Splits `path` into its parent directory (opened) and final name, checked
/// to fit `N` bytes with a terminating NUL.
fn parent_and_name<const N: usize>(path: &Path) -> Result<(File, [u8; N])> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::NoParent {
            path: path.to_owned(),
        });
    };
    Ok((open_dir(parent)?, name_buf(name, path)?))
}

fn name_buf<const N: usize>(name: &OsStr, path: &Path) -> Result<[u8; N]> {
    let bytes = name.as_bytes();
    if bytes.len() >= N {
        return Err(Error::NameTooLong {
            path: path.to_owned(),
            max: N - 1,
        });
    }
    let mut buf = [0u8; N];
    buf[..bytes.len()].copy_from_slice(bytes);
    Ok(buf)
}

/// Creates an empty subvolume at `path`.
pub fn subvol_create(path: &Path) -> Result<()> {
    let (parent, name) = parent_and_name(path)?;
    let args = VolArgs { fd: 0, name };
    // SAFETY: `parent` is an open directory for the call's duration and
    // `args` is a valid, NUL-terminated btrfs_ioctl_vol_args.
    unsafe { btrfs_subvol_create(parent.as_raw_fd(), &args) }
        .map_err(failed("create subvolume", path))?;
    Ok(())
}

/// Snapshots the subvolume `source` as a new subvolume at `path`.
pub fn subvol_snapshot(source: &Path, path: &Path, read_only: bool) -> Result<()> {
    let src = open_dir(source)?;
    let (parent, name) = parent_and_name(path)?;
    let args = VolArgsV2 {
        fd: i64::from(src.as_raw_fd()),
        transid: 0,
        flags: if read_only { BTRFS_SUBVOL_RDONLY } else { 0 },
        unused: [0; 4],
        name,
    };
    // SAFETY: both files stay open for the call and `args` is a valid,
    // NUL-terminated btrfs_ioctl_vol_args_v2.
    unsafe { btrfs_snap_create_v2(parent.as_raw_fd(), &args) }.map_err(|errno| {
        Error::Snapshot {
            from: source.to_owned(),
            path: path.to_owned(),
            source: errno,
        }
    })?;
    Ok(())
}

/// Deletes the subvolume at `path` (read-only ones too).
pub fn subvol_delete(path: &Path) -> Result<()> {
    let (parent, name) = parent_and_name(path)?;
    let args = VolArgs { fd: 0, name };
    // SAFETY: `parent` is an open directory for the call's duration and
    // `args` is a valid, NUL-terminated btrfs_ioctl_vol_args.
    unsafe { btrfs_snap_destroy(parent.as_raw_fd(), &args) }
        .map_err(failed("delete subvolume", path))?;
    Ok(())
}

/// The id of the subvolume `path` is the root of, for `subvolid=` mounts.
pub fn subvol_id(path: &Path) -> Result<u64> {
    let dir = open_dir(path)?;
    let mut args = InoLookupArgs {
        treeid: 0,
        objectid: BTRFS_FIRST_FREE_OBJECTID,
        name: [0; BTRFS_INO_LOOKUP_PATH_MAX],
    };
    // SAFETY: `dir` is open for the call and `args` is a valid
    // btrfs_ioctl_ino_lookup_args the kernel fills in.
    unsafe { btrfs_ino_lookup(dir.as_raw_fd(), &mut args) }
        .map_err(failed("look up the subvolume id of", path))?;
    Ok(args.treeid)
}

/// Makes the subvolume at `path` read-only or writable.
pub fn set_read_only(path: &Path, read_only: bool) -> Result<()> {
    let dir = open_dir(path)?;
    let mut flags = 0u64;
    // SAFETY: `dir` is open for the call and `flags` a valid u64 to fill.
    unsafe { btrfs_subvol_getflags(dir.as_raw_fd(), &mut flags) }
        .map_err(failed("read the flags of", path))?;
    flags = if read_only {
        flags | BTRFS_SUBVOL_RDONLY
    } else {
        flags & !BTRFS_SUBVOL_RDONLY
    };
    // SAFETY: as above; the kernel only reads `flags`.
    unsafe { btrfs_subvol_setflags(dir.as_raw_fd(), &flags) }
        .map_err(failed("set the flags of", path))?;
    Ok(())
}

/// Whether `path` is the root of a subvolume.
pub fn is_subvolume(path: &Path) -> bool {
    std::fs::symlink_metadata(path)
        .is_ok_and(|m| m.is_dir() && m.ino() == BTRFS_FIRST_FREE_OBJECTID)
}
