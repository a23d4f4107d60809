//! Pods in a user namespace of their own (`hostUsers: false`, KEP 127).
//!
//! The kubelet gives such a pod one range of 65536 host IDs (a multiple of
//! 65536, its root first), the same for users and groups, in the pod's and
//! each container's namespace options. The pod's network namespace is made
//! inside the pod's user namespace (so that it belongs to the pod, whose
//! root then may set its sysctls and mount its `/sys`), and the pause
//! container joins that user namespace through a bind mount pinning it;
//! the containers join the pause container's. Root filesystems are the
//! image's layers ID-mapped (snapshot labels, `crated_core::mount::idmap`),
//! volumes ID-mapped bind mounts (the OCI mounts' `uidMappings`, which the
//! shim performs for runc versions that cannot).

use std::collections::BTreeMap;

use crated_core::descriptor::Any;
use crated_core::mount::idmap::IdMap;
use crated_core::snapshots::{GID_MAPPING_LABEL, UID_MAPPING_LABEL};
use crated_core::{Error, Result};
use oci_spec::runtime::{LinuxIdMapping, LinuxIdMappingBuilder};

use crate::{pb, RUNC_OPTIONS};

/// The ID mappings of a pod's user namespace: one range each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodUserns {
    /// Its users.
    pub uids: IdMap,
    /// Its groups.
    pub gids: IdMap,
}

fn mode_name(mode: i32) -> &'static str {
    pb::NamespaceMode::try_from(mode)
        .map(|m| m.as_str_name())
        .unwrap_or("unknown")
}

/// The one range of a mapping list, as containerd takes it.
fn one_range(what: &str, list: &[pb::IdMapping]) -> Result<IdMap> {
    let [m] = list else {
        return Err(Error::invalid_argument(format!(
            "user namespace {what} mapping: only one mapping line is supported, got {}",
            list.len()
        )));
    };
    let map = IdMap {
        container: m.container_id,
        host: m.host_id,
        size: m.length,
    };
    map.check().map_err(|why| {
        Error::invalid_argument(format!("user namespace {what} mapping {map}: {why}"))
    })?;
    if map.to_host(0).is_none() {
        return Err(Error::invalid_argument(format!(
            "user namespace {what} mapping {map} leaves ID 0 (the pod's root) unmapped"
        )));
    }
    Ok(map)
}

impl PodUserns {
    /// The user namespace that namespace `options` ask for: None for the
    /// node's. Mode POD with one uid and one gid range mapping the root is
    /// the only other the kubelet sends; the rest are refused.
    pub fn from_options(options: &pb::NamespaceOption) -> Result<Option<Self>> {
        let Some(userns) = &options.userns_options else {
            return Ok(None);
        };
        let mode = userns.mode;
        let has_mappings = !userns.uids.is_empty() || !userns.gids.is_empty();
        if mode == pb::NamespaceMode::Node as i32 {
            if has_mappings {
                return Err(Error::invalid_argument(format!(
                    "user namespace mode NODE takes no mappings, got {} uid and {} gid mappings",
                    userns.uids.len(),
                    userns.gids.len()
                )));
            }
            return Ok(None);
        }
        if mode != pb::NamespaceMode::Pod as i32 {
            return Err(Error::invalid_argument(format!(
                "unsupported user namespace mode {}: only NODE and POD are",
                mode_name(mode)
            )));
        }
        if userns.uids.is_empty() || userns.gids.is_empty() {
            return Err(Error::invalid_argument(
                "user namespace mode POD needs a uid and a gid mapping",
            ));
        }
        Ok(Some(Self {
            uids: one_range("uid", &userns.uids)?,
            gids: one_range("gid", &userns.gids)?,
        }))
    }

    /// The task options of a container in this user namespace: the
    /// runtime's runc options with the stdio pipes given to the
    /// namespace's root (containerd's `IoUid` and `IoGid`, as containerd
    /// 2's CRI sets them), so that its processes can reopen their stdio by
    /// path — `/dev/stdout`, where images such as nginx's link their logs.
    /// None for a runtime whose options are not runc's.
    pub fn io_owner_options(&self, runtime_options: Option<&Any>) -> Result<Option<Any>> {
        use crated_api::containerd::runc::v1::Options;
        let (Some(uid), Some(gid)) = (self.uids.to_host(0), self.gids.to_host(0)) else {
            return Ok(None);
        };
        let mut options = match runtime_options {
            Some(any) if any.type_url.ends_with(RUNC_OPTIONS) => {
                <Options as prost::Message>::decode(any.value.as_slice()).map_err(|e| {
                    Error::invalid_argument(format!("decode runtime options {}: {e}", any.type_url))
                })?
            }
            Some(_) => return Ok(None),
            None => Options::default(),
        };
        options.io_uid = uid;
        options.io_gid = gid;
        Ok(Some(Any {
            type_url: RUNC_OPTIONS.to_owned(),
            value: prost::Message::encode_to_vec(&options),
        }))
    }

    /// Of a pod's config.
    pub fn of_pod(config: &pb::PodSandboxConfig) -> Result<Option<Self>> {
        Self::from_options(&crate::sandbox::namespace_options(config))
    }

    /// Of a container's config, which must ask for the user namespace of its
    /// pod (the kubelet copies the pod's options into each container).
    pub fn of_container(
        config: &pb::ContainerConfig,
        pod: Option<&PodUserns>,
    ) -> Result<Option<Self>> {
        let options = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref());
        let own = match options {
            Some(options) => Self::from_options(options)?,
            None => None,
        };
        // A container that says nothing of user namespaces is in its pod's.
        let unset = options.is_none_or(|o| o.userns_options.is_none());
        if unset {
            return Ok(pod.cloned());
        }
        if own.as_ref() != pod {
            let show = |u: Option<&PodUserns>| match u {
                Some(u) => format!("uids {} gids {}", u.uids, u.gids),
                None => "the node's".to_owned(),
            };
            return Err(Error::invalid_argument(format!(
                "the container's user namespace ({}) is not its pod's ({})",
                show(own.as_ref()),
                show(pod)
            )));
        }
        Ok(own)
    }

    /// The snapshot labels that make a root filesystem show the image's
    /// files owned by the pod's IDs.
    pub fn snapshot_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (UID_MAPPING_LABEL.to_owned(), self.uids.to_string()),
            (GID_MAPPING_LABEL.to_owned(), self.gids.to_string()),
        ])
    }

    /// The mappings as CRI mounts carry them.
    pub fn cri_mappings(&self) -> (Vec<pb::IdMapping>, Vec<pb::IdMapping>) {
        let one = |m: &IdMap| {
            vec![pb::IdMapping {
                host_id: m.host,
                container_id: m.container,
                length: m.size,
            }]
        };
        (one(&self.uids), one(&self.gids))
    }

    /// The mappings as the OCI spec carries them.
    pub fn oci_mappings(&self) -> Result<(Vec<LinuxIdMapping>, Vec<LinuxIdMapping>)> {
        let one = |m: &IdMap| -> Result<Vec<LinuxIdMapping>> {
            let mapping = LinuxIdMappingBuilder::default()
                .container_id(m.container)
                .host_id(m.host)
                .size(m.size)
                .build()
                .map_err(|e| Error::unknown(format!("ID mapping {m}: {e}")))?;
            Ok(vec![mapping])
        };
        Ok((one(&self.uids)?, one(&self.gids)?))
    }
}

/// Converts CRI mount mappings into the OCI spec's, all or none: a mount
/// asking for either asks for both.
pub fn oci_mount_mappings(
    m: &pb::Mount,
) -> Result<Option<(Vec<LinuxIdMapping>, Vec<LinuxIdMapping>)>> {
    if m.uid_mappings.is_empty() && m.gid_mappings.is_empty() {
        return Ok(None);
    }
    let what = format!("mount on {:?}", m.container_path);
    if m.uid_mappings.is_empty() || m.gid_mappings.is_empty() {
        return Err(Error::invalid_argument(format!(
            "{what}: uid and gid mappings go together"
        )));
    }
    let convert = |list: &[pb::IdMapping]| -> Result<Vec<LinuxIdMapping>> {
        list.iter()
            .map(|m| {
                let map = IdMap {
                    container: m.container_id,
                    host: m.host_id,
                    size: m.length,
                };
                map.check()
                    .map_err(|why| Error::invalid_argument(format!("{what}: {why}")))?;
                LinuxIdMappingBuilder::default()
                    .container_id(map.container)
                    .host_id(map.host)
                    .size(map.size)
                    .build()
                    .map_err(|e| Error::unknown(format!("{what}: {e}")))
            })
            .collect()
    };
    Ok(Some((convert(&m.uid_mappings)?, convert(&m.gid_mappings)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(mode: pb::NamespaceMode, uids: &[(u32, u32, u32)]) -> pb::NamespaceOption {
        let list: Vec<pb::IdMapping> = uids
            .iter()
            .map(|&(container_id, host_id, length)| pb::IdMapping {
                host_id,
                container_id,
                length,
            })
            .collect();
        pb::NamespaceOption {
            userns_options: Some(pb::UserNamespace {
                mode: mode as i32,
                uids: list.clone(),
                gids: list,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_kubelets_pod_mode_is_taken_and_the_rest_refused() {
        use pb::NamespaceMode::*;
        let pod = PodUserns::from_options(&options(Pod, &[(0, 65536, 65536)]))
            .unwrap()
            .unwrap();
        assert_eq!(pod.uids.to_host(0), Some(65536));
        assert_eq!(
            pod.snapshot_labels()[UID_MAPPING_LABEL],
            "0:65536:65536".to_owned()
        );
        assert!(PodUserns::from_options(&options(Node, &[]))
            .unwrap()
            .is_none());
        assert!(PodUserns::from_options(&pb::NamespaceOption::default())
            .unwrap()
            .is_none());
        for (bad, says) in [
            (options(Node, &[(0, 65536, 65536)]), "takes no mappings"),
            (options(Pod, &[]), "needs a uid and a gid mapping"),
            (
                options(Pod, &[(0, 1000, 100000), (0, 2000, 100000)]),
                "only one mapping line",
            ),
            (options(Pod, &[(1, 1000, 100000)]), "leaves ID 0"),
            (options(Pod, &[(0, 1000, 0)]), "size 0"),
            (
                options(Container, &[]),
                "unsupported user namespace mode CONTAINER",
            ),
            (
                options(Target, &[]),
                "unsupported user namespace mode TARGET",
            ),
        ] {
            let err = PodUserns::from_options(&bad).unwrap_err();
            assert_eq!(err.kind(), crated_core::Kind::InvalidArgument);
            assert!(err.to_string().contains(says), "{err}");
        }
    }

    #[test]
    fn a_container_is_in_its_pods_user_namespace() {
        use pb::NamespaceMode::*;
        let pod = PodUserns::from_options(&options(Pod, &[(0, 65536, 65536)])).unwrap();
        let container = |o: Option<pb::NamespaceOption>| pb::ContainerConfig {
            linux: Some(pb::LinuxContainerConfig {
                security_context: Some(pb::LinuxContainerSecurityContext {
                    namespace_options: o,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let same = container(Some(options(Pod, &[(0, 65536, 65536)])));
        assert_eq!(PodUserns::of_container(&same, pod.as_ref()).unwrap(), pod);
        assert_eq!(
            PodUserns::of_container(&container(None), pod.as_ref()).unwrap(),
            pod
        );
        let other = container(Some(options(Pod, &[(0, 131072, 65536)])));
        let err = PodUserns::of_container(&other, pod.as_ref()).unwrap_err();
        assert!(err.to_string().contains("is not its pod's"), "{err}");
        let node = container(Some(options(Node, &[])));
        assert!(PodUserns::of_container(&node, pod.as_ref()).is_err());
        assert!(PodUserns::of_container(&node, None).unwrap().is_none());
    }

    /// The pod's root gets the stdio pipes, over the runtime's other
    /// options; another runtime's options are left alone.
    #[test]
    fn a_user_namespaced_container_owns_its_stdio() {
        use crated_api::containerd::runc::v1::Options;
        let decode = |any: Any| <Options as prost::Message>::decode(any.value.as_slice()).unwrap();
        let pod = PodUserns::from_options(&options(pb::NamespaceMode::Pod, &[(0, 196_608, 65536)]))
            .unwrap()
            .unwrap();
        let bare = decode(pod.io_owner_options(None).unwrap().unwrap());
        assert_eq!((bare.io_uid, bare.io_gid), (196_608, 196_608));
        let runtime = crate::runc_options(&crate::config::RuncOptions {
            binary_name: "crun".into(),
            io_uid: 5,
            ..Default::default()
        });
        let merged = decode(pod.io_owner_options(runtime.as_ref()).unwrap().unwrap());
        assert_eq!(merged.binary_name, "crun");
        assert_eq!(merged.io_uid, 196_608);

        let other = Any {
            type_url: "runtimeoptions.v1.Options".into(),
            value: vec![1, 2],
        };
        assert!(pod.io_owner_options(Some(&other)).unwrap().is_none());
        let garbled = Any {
            type_url: RUNC_OPTIONS.into(),
            value: vec![0x0a, 0xff],
        };
        let err = pod.io_owner_options(Some(&garbled)).unwrap_err();
        assert_eq!(err.kind(), crated_core::Kind::InvalidArgument);
    }
}
