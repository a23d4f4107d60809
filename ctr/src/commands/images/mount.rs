//! `ctr images mount|unmount`, as containerd's: the mount is a snapshot
//! named after the target, held by a lease of the same name that expires in
//! a day, on the image's unpacked chain.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crated_api::containerd::services::images::v1 as pb;
use crated_api::containerd::services::leases::v1 as leases;
use crated_api::proxy::snapshots::SnapshotsProxy;
use crated_core::leases::EXPIRE_LABEL;
use crated_core::mount::{mount_all, unmount_all};
use crated_core::platforms::Matcher;
use crated_core::snapshots::Snapshotter;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::client::{status_error, Client};

/// How long the lease keeping a mounted image lives.
const MOUNT_LEASE: Duration = Duration::from_secs(24 * 60 * 60);

/// Unpacks `r#ref` into `snapshotter` and mounts it on `target`.
pub async fn mount(
    client: &Client,
    images: &mut pb::images_client::ImagesClient<tonic::transport::Channel>,
    snapshotter: &str,
    matcher: &Matcher,
    r#ref: &str,
    target: &str,
    rw: bool,
) -> anyhow::Result<()> {
    let expires = OffsetDateTime::from(SystemTime::now() + MOUNT_LEASE)
        .format(&Rfc3339)
        .unwrap_or_default();
    let created = leases::leases_client::LeasesClient::new(client.channel.clone())
        .create(
            client.request(leases::CreateRequest {
                id: target.to_owned(),
                labels: [
                    (EXPIRE_LABEL.to_owned(), expires),
                    (
                        format!("containerd.io/gc.ref.snapshot.{snapshotter}"),
                        target.to_owned(),
                    ),
                ]
                .into(),
            }),
        )
        .await;
    match created {
        Ok(_) => {}
        Err(status) if status.code() == tonic::Code::AlreadyExists => {}
        Err(status) => return Err(status_error(status)),
    }
    let mounted = mount_leased(client, images, snapshotter, matcher, r#ref, target, rw).await;
    if mounted.is_err() {
        // As containerd's: a failed mount does not leave its lease behind.
        let _ = leases::leases_client::LeasesClient::new(client.channel.clone())
            .delete(client.request(leases::DeleteRequest {
                id: target.to_owned(),
                sync: false,
            }))
            .await;
    }
    mounted
}

async fn mount_leased(
    client: &Client,
    images: &mut pb::images_client::ImagesClient<tonic::transport::Channel>,
    snapshotter: &str,
    matcher: &Matcher,
    r#ref: &str,
    target: &str,
    rw: bool,
) -> anyhow::Result<()> {
    let image = images
        .get(client.request(pb::GetImageRequest {
            name: r#ref.to_owned(),
        }))
        .await
        .map_err(status_error)?
        .into_inner()
        .image
        .unwrap_or_default();
    let node = super::node_of(&image)?;
    let chain = crated_client::unpack(
        &client.channel,
        &client.namespace,
        &node,
        snapshotter,
        matcher,
    )
    .await
    .map_err(|e| anyhow::anyhow!("error unpacking image: {e}"))?;
    println!("{chain}");

    let sn = SnapshotsProxy::new(
        client.channel.clone(),
        snapshotter,
        client.namespace.clone(),
    )
    .with_lease(target);
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
        let deleted = leases::leases_client::LeasesClient::new(client.channel.clone())
            .delete(client.request(leases::DeleteRequest {
                id: target.to_owned(),
                sync: false,
            }))
            .await;
        match deleted {
            Ok(_) => {}
            Err(status) if status.code() == tonic::Code::NotFound => {}
            Err(status) => {
                return Err(status_error(status).context("error deleting lease"));
            }
        }
        let sn = SnapshotsProxy::new(
            client.channel.clone(),
            snapshotter,
            client.namespace.clone(),
        );
        match sn.remove(target).await {
            Ok(()) => {}
            Err(err) if err.is_not_found() => {}
            Err(err) => return Err(anyhow::anyhow!("error removing snapshot: {err}")),
        }
    }
    println!("{target}");
    Ok(())
}
