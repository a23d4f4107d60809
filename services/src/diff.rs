//! The diff service: the loaded differs, tried in load order until one
//! does not answer NotImplemented, as containerd's diff service does.

use std::sync::Arc;

use crated_core::descriptor::Descriptor;
use crated_core::diff::{Applier, ApplyOptions, CompareOptions, Comparer, Differ};
use crated_core::mount::Mount;
use crated_core::{Error, Kind, Namespace, Result};

/// The differs, in order.
pub struct DiffService {
    differs: Vec<Arc<dyn Differ>>,
}

impl DiffService {
    /// Tries `differs` in this order.
    pub fn new(differs: Vec<Arc<dyn Differ>>) -> Self {
        Self { differs }
    }
}

#[async_trait::async_trait]
impl Applier for DiffService {
    async fn apply(
        &self,
        ns: &Namespace,
        layer: &Descriptor,
        mounts: &[Mount],
        options: ApplyOptions,
    ) -> Result<Descriptor> {
        let mut last = Error::not_implemented("no differ is loaded");
        for differ in &self.differs {
            match differ.apply(ns, layer, mounts, options).await {
                Err(err) if err.kind() == Kind::NotImplemented => last = err,
                other => return other,
            }
        }
        Err(last)
    }
}

#[async_trait::async_trait]
impl Comparer for DiffService {
    async fn compare(
        &self,
        ns: &Namespace,
        lower: &[Mount],
        upper: &[Mount],
        options: CompareOptions,
    ) -> Result<Descriptor> {
        let mut last = Error::not_implemented("no differ is loaded");
        for differ in &self.differs {
            match differ.compare(ns, lower, upper, options.clone()).await {
                Err(err) if err.kind() == Kind::NotImplemented => last = err,
                other => return other,
            }
        }
        Err(last)
    }
}
