//! Namespaces: the tenant every containerd record lives in.
//!
//! containerd carries the namespace in a Go `context.Context`; here it is an
//! explicit [`Namespace`] value that service adapters extract from the
//! `containerd-namespace` gRPC header or `containerd-namespace-ttrpc` ttrpc
//! metadata and hand to every store call. A `Namespace` is always valid: the
//! only way to get one is through [`Namespace::new`], which validates it.

use std::fmt;

use crate::{identifiers, Result};

/// Environment variable clients read the namespace from (`CONTAINERD_NAMESPACE`).
pub const ENV: &str = "CONTAINERD_NAMESPACE";
/// The namespace used when a client names none.
pub const DEFAULT: &str = "default";
/// gRPC metadata key carrying the namespace.
pub const GRPC_HEADER: &str = "containerd-namespace";
/// ttrpc metadata key carrying the namespace.
pub const TTRPC_HEADER: &str = "containerd-namespace-ttrpc";

/// A validated namespace name.
///
/// ```
/// use crated_core::Namespace;
///
/// let ns = Namespace::new("k8s.io").unwrap();
/// assert_eq!(ns.as_str(), "k8s.io");
/// assert!(Namespace::new("Foo/../x").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(String);

impl Namespace {
    /// Validates `name` with containerd's identifier rules.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        identifiers::validate(&name).map_err(|e| e.context("namespace"))?;
        Ok(Self(name))
    }

    /// The `default` namespace.
    pub fn default_namespace() -> Self {
        Self(DEFAULT.to_owned())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Namespace {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A namespace and its labels, as stored and as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceInfo {
    /// The namespace.
    pub name: Namespace,
    /// Its labels; key + value of each at most 4096 bytes.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// Filter fields of a namespace: `name`, `labels.<key>` (a dotted key may
/// be left unquoted: the parser splits it into path components).
pub struct InfoFields<'a>(pub &'a NamespaceInfo);

impl crate::filters::Adaptor for InfoFields<'_> {
    fn field(&self, path: &[&str]) -> Option<String> {
        match path {
            ["name"] => Some(self.0.name.to_string()),
            ["labels", key @ ..] => crate::filters::map_value(&self.0.labels, key),
            _ => None,
        }
    }
}

/// The store of namespaces, implemented by the metadata database and served
/// by the namespaces gRPC service.
///
/// Every call is one transaction: it either applies whole and durably before
/// returning, or fails and changes nothing.
#[async_trait::async_trait]
pub trait NamespaceStore: Send + Sync {
    /// Creates `name` with `labels`; AlreadyExists if it exists.
    async fn create(
        &self,
        name: &Namespace,
        labels: std::collections::BTreeMap<String, String>,
    ) -> Result<NamespaceInfo>;

    /// The namespace `name`; NotFound if it does not exist.
    async fn get(&self, name: &Namespace) -> Result<NamespaceInfo>;

    /// The namespaces matching any of `filters` (fields `name`,
    /// `labels.<key>`; none = all), sorted by name.
    async fn list(&self, filters: &[String]) -> Result<Vec<NamespaceInfo>>;

    /// Updates labels of `info.name` as the field paths say: `labels.<key>`
    /// sets or (with an empty or missing value) removes one label; an empty
    /// list replaces them all. Any other path is InvalidArgument. As in
    /// containerd, a namespace that does not exist yet is created (namespaces
    /// come into being on first use).
    async fn update(&self, info: NamespaceInfo, fieldpaths: &[String]) -> Result<NamespaceInfo>;

    /// Deletes `name`: NotFound if it does not exist, FailedPrecondition
    /// (naming what it still holds) unless it is empty.
    async fn delete(&self, name: &Namespace) -> Result<()>;
}

/// The namespaces service: the store's calls as containerd's namespaces
/// service makes them. Mutations name the caller's own namespace, which is
/// where containerd publishes the `/namespaces/*` event (ctr sends
/// `default` while creating `foo`); `None` publishes in the namespace
/// acted on. `get` of a namespace that does not exist yet answers it with
/// no labels, as containerd's does: clients read a namespace's labels
/// (its default snapshotter) before their first call creates it.
#[async_trait::async_trait]
pub trait NamespaceService: Send + Sync {
    /// Creates `name` with `labels`; AlreadyExists if it exists.
    async fn create(
        &self,
        caller: Option<&Namespace>,
        name: &Namespace,
        labels: std::collections::BTreeMap<String, String>,
    ) -> Result<NamespaceInfo>;
    /// The namespace `name`, with no labels if it does not exist yet.
    async fn get(&self, name: &Namespace) -> Result<NamespaceInfo>;
    /// The namespaces matching `filters` (fields `name`, `labels.<key>`).
    async fn list(&self, filters: &[String]) -> Result<Vec<NamespaceInfo>>;
    /// Updates labels, as [`NamespaceStore::update`].
    async fn update(
        &self,
        caller: Option<&Namespace>,
        info: NamespaceInfo,
        fieldpaths: &[String],
    ) -> Result<NamespaceInfo>;
    /// Deletes an empty namespace, as [`NamespaceStore::delete`].
    async fn delete(&self, caller: Option<&Namespace>, name: &Namespace) -> Result<()>;
}
