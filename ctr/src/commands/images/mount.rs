//! `ctr images mount|unmount`, as containerd's: the mount is a snapshot
//! named after the target, held by a lease of the same name that expires in
//! a day, on the image's unpacked chain.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crated_core::leases::EXPIRE_LABEL;
use crated_core::mount::{mount_all, unmount_all};
use crated_core::platforms::Matcher;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::client::{user_error, Client};

/// How long the lease keeping a mounted image lives.
const MOUNT_LEASE: Duration = Duration::from_secs(24 * 60 * 60);

/// Unpacks `r#ref` into `snapshotter` and mounts it on `target`.
pub async fn mount(
    client: &Client,
    snapshotter: &str,
    matcher: &Matcher,
    r#ref: &str,
    target: &str,
    rw: bool,
) -> anyhow::Result<()> {
    let expires = OffsetDateTime::from(SystemTime::now() + MOUNT_LEASE)
        .format(&Rfc3339)
        .unwrap_or_default();
    let leases = &client.services().leases;
    let ns = client.namespace();
    let labels = [
        (EXPIRE_LABEL.to_owned(), expires),
        (
            format!("containerd.io/gc.ref.snapshot.{snapshotter}"),
            target.to_owned(),
        ),
    ]
    .into();
    match leases.create(ns, target, labels).await {
        Ok(_) => {}
        Err(e) if e.is_already_exists() => {}
        Err(e) => return Err(user_error(e)),
    }
    let mounted = mount_leased(client, snapshotter, matcher, r#ref, target, rw).await;
    if mounted.is_err() {
        // As containerd's: a failed mount does not leave its lease behind.
        let _ = leases.delete(ns, target, false).await;
    }
    mounted
}

async fn mount_leased(
    client: &Client,
    snapshotter: &str,
    matcher: &Matcher,
    r#ref: &str,
    target: &str,
    rw: bool,
) -> anyhow::Result<()> {
    let image = client
        .services()
        .images
        .get(client.namespace(), r#ref)
        .await
        .map_err(user_error)?;
    let node = super::node_of(&image)?;
    let chain = crated_client::unpack(client, &node, snapshotter, matcher)
        .await
        .map_err(|e| anyhow::anyhow!("error unpacking image: {e}"))?;
    println!("{chain}");

    let sn = client
        .snapshotter(snapshotter, Some(target))
        .map_err(user_error)?;
    let made = if rw {
        sn.prepare(target, chain.as_str(), Default::default()).await
    } else {
        sn.view(target, chain.as_str(), Default::default()).await
    };
    let mounts = match made {
        Ok(mounts) => mounts,
        Err(err) if err.is_already_exists() => sn.mounts(target).await?,
        Err(err) => return Err(err.into()),
    };
    match mount_all(&mounts, Path::new(target)) {
        Ok(guard) => guard.keep(),
        Err(err) => {
            if let Err(rerr) = sn.remove(target).await {
                if !rerr.is_not_found() {
                    eprintln!("Error cleaning up snapshot after mount error: {rerr}");
                }
            }
            return Err(err.into());
        }
    }
    println!("{target}");
    Ok(())
}

/// Unmounts `target`; with `rm`, also deletes its lease and snapshot.
pub async fn unmount(
    client: &Client,
    snapshotter: &str,
    target: &str,
    rm: bool,
) -> anyhow::Result<()> {
    unmount_all(Path::new(target))?;
    if rm {
        let deleted = client
            .services()
            .leases
            .delete(client.namespace(), target, false)
            .await;
        match deleted {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(user_error(e).context("error deleting lease")),
        }
        let sn = client.snapshotter(snapshotter, None).map_err(user_error)?;
        match sn.remove(target).await {
            Ok(()) => {}
            Err(err) if err.is_not_found() => {}
            Err(err) => return Err(anyhow::anyhow!("error removing snapshot: {err}")),
        }
    }
    println!("{target}");
    Ok(())
}
