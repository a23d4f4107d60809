//! Images as the CRI sees them, kept as containerd's CRI keeps them in
//! namespace `k8s.io`: one image has up to three records — its tag
//! (`docker.io/library/busybox:latest`), its digest reference
//! (`docker.io/library/busybox@sha256:…`) and its id (the config's
//! digest, `sha256:…`) — all with the target of the pull and the label
//! `io.cri-containerd.image=managed`, so `ctr -n k8s.io images ls` shows
//! what kubelet pulled.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use crated_client::pull::{pull, NoProgress, PullOptions};
use crated_client::spec::ImageConfig;
use crated_client::Client;
use crated_core::descriptor::Descriptor;
use crated_core::digest::Digest;
use crated_core::images::walk::{self, Node};
use crated_core::images::Image as Record;
use crated_core::platforms::default_matcher;
use crated_core::reference::parse_docker_ref;
use crated_core::{Error, Result};
use crated_distribution::{Credentials, HostOptions, Resolver, TransportOptions};

use crate::config::Config;

/// The label containerd's CRI puts on the records it makes.
pub const IMAGE_LABEL: &str = "io.cri-containerd.image";
/// Its value.
pub const IMAGE_LABEL_MANAGED: &str = "managed";
/// The label of an image kubelet must not garbage collect (the sandbox
/// image).
pub const PINNED_LABEL: &str = "io.cri-containerd.pinned";
/// Its value.
pub const PINNED: &str = "pinned";

/// One image, however many records name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriImage {
    /// The config's digest, `sha256:…`.
    pub id: String,
    /// Its tag references.
    pub repo_tags: Vec<String>,
    /// Its digest references.
    pub repo_digests: Vec<String>,
    /// Content size for this platform (manifest, config, layers).
    pub size: u64,
    /// The config's user.
    pub user: String,
    /// The chain id of its layers: its unpacked snapshot.
    pub chain_id: String,
    /// The image config document.
    pub config: Vec<u8>,
    /// Whether kubelet must keep it.
    pub pinned: bool,
    /// The target the records point to.
    pub target: Descriptor,
}

impl CriImage {
    /// The config's user as a uid if numeric, else as a name (the user
    /// part of `user[:group]`); containerd's `getUserFromImage`.
    pub fn uid_or_username(&self) -> (Option<i64>, String) {
        let user = self.user.split(':').next().unwrap_or_default();
        if user.is_empty() {
            return (None, String::new());
        }
        match user.parse::<i64>() {
            Ok(uid) => (Some(uid), String::new()),
            Err(_) => (None, user.to_owned()),
        }
    }

    /// The parsed `config` of the image config.
    pub fn image_config(&self) -> Result<ImageConfig> {
        ImageConfig::parse(&self.config)
    }
}

/// Whether `name` is an image id (`sha256:` and 64 hex digits).
fn is_id(name: &str) -> bool {
    Digest::parse(name).is_ok()
}

/// Registry credentials from a CRI `AuthConfig`, for `host`.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
    /// Base64 `user:password`, when the parts are not given.
    pub auth: String,
    /// The registry these are for; empty: any.
    pub server_address: String,
    /// A token in place of a password.
    pub identity_token: String,
    /// A bearer token for the registry.
    pub registry_token: String,
}

impl Auth {
    /// The credentials to present to `host`, as containerd's `ParseAuth`.
    fn credentials(&self, host: &str) -> Result<Option<Credentials>> {
        if !self.server_address.is_empty() {
            let address = self
                .server_address
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/');
            if address != host && !(address == "index.docker.io" && host == "docker.io") {
                return Ok(None);
            }
        }
        if !self.username.is_empty() {
            return Ok(Some(Credentials {
                username: self.username.clone(),
                secret: self.password.clone(),
                registry_token: false,
            }));
        }
        if !self.identity_token.is_empty() {
            return Ok(Some(Credentials {
                username: String::new(),
                secret: self.identity_token.clone(),
                registry_token: false,
            }));
        }
        if !self.auth.is_empty() {
            let decoded = crated_core::base64::decode(&self.auth).ok_or_else(|| {
                Error::invalid_argument("auth of the pull is not valid base64 user:password")
            })?;
            let decoded = String::from_utf8(decoded)
                .map_err(|_| Error::invalid_argument("auth of the pull is not utf-8"))?;
            let (username, secret) = decoded
                .split_once(':')
                .ok_or_else(|| Error::invalid_argument("auth of the pull is not user:password"))?;
            return Ok(Some(Credentials {
                username: username.to_owned(),
                secret: secret.to_owned(),
                registry_token: false,
            }));
        }
        // containerd ignores it (an anonymous pull); Docker presents it to
        // the registry as its bearer token, and so does crated.
        if !self.registry_token.is_empty() {
            return Ok(Some(Credentials {
                username: String::new(),
                secret: self.registry_token.clone(),
                registry_token: true,
            }));
        }
        Ok(None)
    }
}

/// The CRI's view of the image store.
#[derive(Clone)]
pub struct Images {
    client: Client,
    config: Arc<Config>,
    /// What each record target holds for this platform. Content is
    /// addressed by its digest, so this never changes; finding it means
    /// reading the index, manifest and config and stat'ing every layer —
    /// for every image on every ListImages, and for every image's id on
    /// every ImageStatus, without this.
    facts: Arc<Mutex<HashMap<Digest, Arc<Facts>>>>,
}

/// What a record target holds for this platform.
#[derive(Debug)]
struct Facts {
    /// The config's digest: the image id.
    id: String,
    /// The config document.
    config: Vec<u8>,
    /// Content size (manifest, config, layers).
    size: u64,
    /// The config's user.
    user: String,
    /// The chain id of its layers.
    chain_id: String,
}

/// The records of one image id.
struct Group {
    /// The target of the first record.
    target: Descriptor,
    /// What it holds.
    facts: Arc<Facts>,
    /// Every record whose target holds this image.
    records: Vec<Record>,
}

impl Images {
    /// Images of `client`'s namespace.
    pub fn new(client: Client, config: Arc<Config>) -> Self {
        Self {
            client,
            config,
            facts: Arc::default(),
        }
    }

    /// What `target` holds for this platform; an error if it is not an
    /// image of this platform or its content is gone.
    async fn facts(&self, target: &Descriptor) -> Result<Arc<Facts>> {
        if let Some(facts) = self
            .facts
            .lock()
            .ok()
            .and_then(|known| known.get(&target.digest).cloned())
        {
            return Ok(facts);
        }
        let store = &*self.client.services().content;
        let ns = self.client.namespace();
        let node = Node::from(target);
        let manifest = walk::manifest(store, ns, &node, &default_matcher()).await?;
        let config = walk::read_blob(store, ns, &manifest.config.digest).await?;
        let diff_ids = walk::rootfs(store, ns, &manifest.config).await?;
        let (size, _) = walk::size(store, ns, &node, &default_matcher()).await;
        let facts = Arc::new(Facts {
            id: manifest.config.digest.to_string(),
            user: ImageConfig::parse(&config)
                .map(|c| c.user)
                .unwrap_or_default(),
            chain_id: Digest::chain_id(&diff_ids)
                .map(|d| d.to_string())
                .unwrap_or_default(),
            config,
            size,
        });
        if let Ok(mut known) = self.facts.lock() {
            known.insert(target.digest.clone(), Arc::clone(&facts));
        }
        Ok(facts)
    }

    /// Pulls `reference` with `auth`, unpacked into `snapshotter`,
    /// and records it under its tag, digest and id; returns the image.
    pub async fn pull(
        &self,
        reference: &str,
        auth: Option<Auth>,
        pinned: bool,
        snapshotter: &str,
    ) -> Result<CriImage> {
        let parsed = parse_docker_ref(reference)
            .map_err(|e| e.context(format!("failed to parse image reference {reference:?}")))?;
        let name = parsed.to_string();
        let credentials = match auth {
            Some(auth) => {
                // Checked once up front: a bad auth is the caller's error.
                auth.credentials(parsed.domain())?;
                Some(
                    Arc::new(move |host: &str| auth.credentials(host).ok().flatten())
                        as crated_distribution::CredentialsFn,
                )
            }
            None => {
                // The configuration's credentials, per registry host.
                let configured = self.config.registry.auths_by_host();
                (!configured.is_empty()).then(|| {
                    Arc::new(move |host: &str| {
                        let auth = configured.get(host)?;
                        Auth {
                            username: auth.username.clone(),
                            password: auth.password.clone(),
                            auth: auth.auth.clone(),
                            identity_token: auth.identitytoken.clone(),
                            ..Auth::default()
                        }
                        .credentials(host)
                        .ok()
                        .flatten()
                    }) as crated_distribution::CredentialsFn
                })
            }
        };
        let registry = &self.config.registry;
        let hosts = HostOptions {
            hosts_dir: registry.hosts_dir(parsed.domain())?,
            configured: registry.configured_hosts()?.map(Arc::new),
            headers: registry.header_pairs(),
            ..HostOptions::default()
        };
        let mut transport = TransportOptions::default();
        if let Some(timeout) = self.config.pull_progress_timeout()? {
            transport.read_timeout = timeout;
        }
        let resolver = Resolver::new(hosts, credentials, transport);
        let mut labels = BTreeMap::from([(IMAGE_LABEL.to_owned(), IMAGE_LABEL_MANAGED.to_owned())]);
        if pinned {
            labels.insert(PINNED_LABEL.to_owned(), PINNED.to_owned());
        }
        let options = PullOptions {
            max_concurrent_downloads: self.config.max_concurrent_downloads.max(1) as usize,
            snapshotter: Some(snapshotter.to_owned()),
            labels: labels.clone(),
            keep_unchanged_record: true,
            discard_unpacked_layers: self.config.containerd.discard_unpacked_layers,
            snapshot_annotations: !self.config.containerd.disable_snapshot_annotations,
            sync_fs: self.config.image_pull_with_sync_fs,
            ..PullOptions::default()
        };
        let pulled = pull(
            &self.client,
            &resolver,
            &name,
            &options,
            Arc::new(NoProgress),
        )
        .await
        .map_err(|e| e.context(format!("failed to pull and unpack image {name:?}")))?;
        let id = self.facts(&pulled.target).await?.id.clone();
        let digest_ref = parsed
            .trim()
            .with_digest(pulled.target.digest.clone())
            .to_string();
        for record in [digest_ref.as_str(), id.as_str()] {
            if record != name {
                // containerd's CRI writes these only when they change.
                crated_client::images::put_if_changed(
                    &self.client,
                    record,
                    &pulled.target,
                    &labels,
                )
                .await?;
            }
        }
        self.get(&id)
            .await?
            .ok_or_else(|| Error::not_found(format!("image {id} vanished after its pull")))
    }

    /// Every record of the store made or adopted by the CRI, grouped by
    /// image id.
    async fn all(&self) -> Result<BTreeMap<String, Group>> {
        let records = self
            .client
            .services()
            .images
            .list(self.client.namespace(), &[])
            .await?;
        let mut by_id: BTreeMap<String, Group> = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for record in records {
            seen.insert(record.target.digest.clone());
            // Not for this platform, or its content is gone: not an image
            // the CRI can run.
            let Ok(facts) = self.facts(&record.target).await else {
                continue;
            };
            by_id
                .entry(facts.id.clone())
                .or_insert_with(|| Group {
                    target: record.target.clone(),
                    facts,
                    records: Vec::new(),
                })
                .records
                .push(record);
        }
        // Forget the targets no record points to any more.
        if let Ok(mut known) = self.facts.lock() {
            known.retain(|digest, _| seen.contains(digest));
        }
        Ok(by_id)
    }

    /// The image a group of records names.
    fn describe(group: &Group) -> CriImage {
        let Group {
            target,
            facts,
            records,
        } = group;
        let mut repo_tags = BTreeSet::new();
        let mut repo_digests = BTreeSet::new();
        for record in records {
            if is_id(&record.name) {
                continue;
            }
            match parse_docker_ref(&record.name) {
                Ok(r) if r.digest().is_some() => {
                    repo_digests.insert(record.name.clone());
                }
                Ok(r) => {
                    repo_tags.insert(record.name.clone());
                    // A tag's digest reference, as containerd reports it
                    // even when only the tag record exists.
                    repo_digests.insert(r.trim().with_digest(target.digest.clone()).to_string());
                }
                Err(_) => {}
            }
        }
        CriImage {
            id: facts.id.clone(),
            repo_tags: repo_tags.into_iter().collect(),
            repo_digests: repo_digests.into_iter().collect(),
            size: facts.size,
            user: facts.user.clone(),
            chain_id: facts.chain_id.clone(),
            config: facts.config.clone(),
            pinned: records
                .iter()
                .any(|r| r.labels.get(PINNED_LABEL).is_some_and(|v| v == PINNED)),
            target: target.clone(),
        }
    }

    /// Every image.
    pub async fn list(&self) -> Result<Vec<CriImage>> {
        Ok(self.all().await?.values().map(Self::describe).collect())
    }

    /// The image `name` means — a reference (normalized as docker does), a
    /// full id, or an unambiguous id prefix; `None` if there is none.
    pub async fn get(&self, name: &str) -> Result<Option<CriImage>> {
        Ok(self.snapshot().await?.get(name))
    }

    /// Every image as the store holds them now, for a call that looks up
    /// the images of many containers: one listing of the records instead
    /// of one per container.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot(self.all().await?))
    }

    /// Removes every record of the image `name` means; an image that is
    /// not there is not an error (kubelet retries removals).
    pub async fn remove(&self, name: &str) -> Result<()> {
        let all = self.all().await?;
        let Some(group) = find(&all, name) else {
            return Ok(());
        };
        let service = &self.client.services().images;
        let last = group.records.len().saturating_sub(1);
        for (i, record) in group.records.iter().enumerate() {
            // The last removal waits for a collection, as containerd's.
            match service
                .delete(self.client.namespace(), &record.name, i == last)
                .await
            {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The images at one moment: see [`Images::snapshot`].
#[derive(Default)]
pub struct Snapshot(BTreeMap<String, Group>);

impl Snapshot {
    /// As [`Images::get`], without going to the store.
    pub fn get(&self, name: &str) -> Option<CriImage> {
        find(&self.0, name).map(Images::describe)
    }
}

/// The group of `all` that `name` means: an image id, an unambiguous id
/// prefix (hex), or a reference normalized as docker does.
fn find<'a>(all: &'a BTreeMap<String, Group>, name: &str) -> Option<&'a Group> {
    if is_id(name) {
        return all.get(name);
    }
    if !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        let full = format!("sha256:{name}");
        let mut matching = all.iter().filter(|(id, _)| id.starts_with(&full));
        if let (Some((_, group)), None) = (matching.next(), matching.next()) {
            return Some(group);
        }
    }
    let normalized = parse_docker_ref(name).ok()?.to_string();
    all.values()
        .find(|group| group.records.iter().any(|r| r.name == normalized))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_decodes_like_kubelet_sends_it() {
        let auth = Auth {
            auth: "dXNlcjpwYXNz".into(),
            ..Auth::default()
        };
        let creds = auth.credentials("registry.example").unwrap().unwrap();
        assert_eq!(
            (creds.username.as_str(), creds.secret.as_str()),
            ("user", "pass")
        );
        let scoped = Auth {
            username: "u".into(),
            password: "p".into(),
            server_address: "https://other.example/".into(),
            ..Auth::default()
        };
        assert!(scoped.credentials("registry.example").unwrap().is_none());
        assert!(scoped.credentials("other.example").unwrap().is_some());
        let bad = Auth {
            auth: "!!!".into(),
            ..Auth::default()
        };
        assert!(bad.credentials("x").is_err());
        let token = Auth {
            registry_token: "reg-t0ken".into(),
            ..Auth::default()
        };
        let creds = token.credentials("registry.example").unwrap().unwrap();
        assert!(creds.registry_token);
        assert_eq!(creds.secret, "reg-t0ken");
        assert!(Auth::default().credentials("x").unwrap().is_none());
    }

    #[test]
    fn users_are_uids_or_names() {
        let image = |user: &str| CriImage {
            id: String::new(),
            repo_tags: vec![],
            repo_digests: vec![],
            size: 0,
            user: user.into(),
            chain_id: String::new(),
            config: vec![],
            pinned: false,
            target: Descriptor {
                media_type: String::new(),
                digest: Digest::parse(&format!("sha256:{}", "0".repeat(64))).unwrap(),
                size: 0,
                annotations: Default::default(),
            },
        };
        assert_eq!(image("1002").uid_or_username(), (Some(1002), String::new()));
        assert_eq!(
            image("www-data:1004").uid_or_username(),
            (None, "www-data".into())
        );
        assert_eq!(image("").uid_or_username(), (None, String::new()));
    }
}
