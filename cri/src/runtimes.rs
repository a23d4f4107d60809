//! What a runtime handler's configuration adds to the OCI specs of its
//! pods and containers, as containerd's CRI does: a base spec containers
//! start from (`base_runtime_spec`; the pause container does not), pod and container annotations passed
//! through (`pod_annotations`, `container_annotations`, shell patterns of
//! keys), and whether privileged containers get the host's devices.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use crated_client::spec::{self, Opt};
use crated_core::{Error, Result};
use oci_spec::runtime::Spec;

use crate::config::{Config, RuntimeConfig};
use crate::Cri;

/// The `base_runtime_spec` of every runtime that names one, read and
/// parsed at start-up: a file that is missing or not an OCI spec stops
/// the plugin with the reason, as in containerd.
pub(crate) fn load_base_specs(config: &Config) -> Result<BTreeMap<String, Arc<Spec>>> {
    let mut specs = BTreeMap::new();
    for (name, runtime) in &config.containerd.runtimes {
        if runtime.base_runtime_spec.is_empty() {
            continue;
        }
        let path = Path::new(&runtime.base_runtime_spec);
        let what = || format!("base_runtime_spec {} of runtime {name:?}", path.display());
        let text = std::fs::read(path).map_err(|e| Error::io(what(), e))?;
        let spec: Spec = serde_json::from_slice(&text)
            .map_err(|e| Error::invalid_argument(format!("{}: not an OCI spec: {e}", what())))?;
        specs.insert(name.clone(), Arc::new(spec));
    }
    Ok(specs)
}

/// The entries of `annotations` whose key matches one of `patterns`.
pub(crate) fn passthrough(
    annotations: &HashMap<String, String>,
    patterns: &[String],
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = annotations
        .iter()
        .filter(|(key, _)| patterns.iter().any(|p| glob_match(p, key)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.sort();
    out
}

impl Cri {
    /// The configuration of runtime handler `handler` (the default runtime
    /// when empty).
    pub(crate) fn handler_config(&self, handler: &str) -> Result<&RuntimeConfig> {
        let name = self.handler_name(handler);
        self.config
            .containerd
            .runtimes
            .get(name)
            .ok_or_else(|| Error::not_found(format!("no runtime for {name:?} is configured")))
    }

    /// The snapshotter of `handler`'s pods: its runtime's own, else
    /// `containerd.snapshotter` (also for a handler not configured: its
    /// pods are refused elsewhere, naming it).
    pub(crate) fn snapshotter_for(&self, handler: &str) -> &str {
        self.handler_config(handler)
            .ok()
            .map(|runtime| runtime.snapshotter.as_str())
            .filter(|s| !s.is_empty())
            .unwrap_or(&self.config.containerd.snapshotter)
    }

    /// Every snapshotter pods may use: the default and the runtimes' own.
    pub(crate) fn snapshotters_in_use(&self) -> Vec<String> {
        let mut names = vec![self.config.containerd.snapshotter.clone()];
        for runtime in self.config.containerd.runtimes.values() {
            if !runtime.snapshotter.is_empty() && !names.contains(&runtime.snapshotter) {
                names.push(runtime.snapshotter.clone());
            }
        }
        names
    }

    /// The snapshotter of pod `sandbox_id`'s snapshots (its containers'
    /// writable layers, its image volumes): the one recorded when it was
    /// made, which a changed configuration does not move.
    pub(crate) fn snapshotter_of_pod(&self, sandbox_id: &str) -> String {
        match self.sandboxes.get(sandbox_id) {
            Ok(sandbox) if !sandbox.metadata.snapshotter.is_empty() => {
                sandbox.metadata.snapshotter.clone()
            }
            Ok(sandbox) => self
                .snapshotter_for(&sandbox.metadata.runtime_handler)
                .to_owned(),
            Err(_) => self.config.containerd.snapshotter.clone(),
        }
    }

    /// Makes sure `image` is unpacked into `snapshotter`, which may not be
    /// the one its pull unpacked into. Its layers must still be in the
    /// content store (not with `discard_unpacked_layers`).
    pub(crate) async fn unpacked_in(
        &self,
        image: &crate::images::CriImage,
        snapshotter: &str,
    ) -> Result<()> {
        // Also the default one: an image may have been pulled for a
        // runtime of its own snapshotter only. A stat when it is there.
        self.client
            .ensure_unpacked(&image.target, &image.chain_id, snapshotter)
            .await
            .map_err(|e| {
                e.context(format!(
                    "unpack {} into snapshotter {snapshotter:?}",
                    image.id
                ))
            })
    }

    /// The runtime a handler names: the default runtime for none.
    pub(crate) fn handler_name<'a>(&'a self, handler: &'a str) -> &'a str {
        if handler.is_empty() {
            &self.config.containerd.default_runtime_name
        } else {
            handler
        }
    }

    /// The first spec option of a container of `handler`: its base spec,
    /// whole, when the runtime names one.
    pub(crate) fn with_base_spec(&self, handler: &str) -> Option<Opt> {
        let base = Arc::clone(self.base_specs.get(self.handler_name(handler))?);
        Some(spec::opt(move |spec, ctx| {
            *spec = (*base).clone();
            // The container's own cgroup, as containerd fixes it up after
            // copying the base (a cgroup parent, if any, replaces it).
            spec::with_cgroup_path(format!("/{}/{}", ctx.namespace, ctx.id)).apply(spec, ctx)
        }))
    }
}

/// Whether `name` matches the shell pattern `pattern` as Go's
/// `filepath.Match` reads it (containerd matches pass-through annotation
/// keys with it): `*` any run of characters but `/`, `?` one such
/// character, `[…]` a class (ranges, `^` to negate), `\` escapes. A
/// malformed pattern matches nothing.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    matches_from(&p, &n).unwrap_or(false)
}

fn matches_from(p: &[char], n: &[char]) -> Option<bool> {
    let (mut pi, mut ni) = (0, 0);
    // Where to resume after the last `*`: pattern index, name index.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' if n[ni] != '/' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    let (matched, next) = class(&p[pi..], n[ni])?;
                    if matched {
                        pi += next;
                        ni += 1;
                        continue;
                    }
                }
                '\\' => {
                    let c = *p.get(pi + 1)?;
                    if c == n[ni] {
                        pi += 2;
                        ni += 1;
                        continue;
                    }
                }
                c if c != '?' && c == n[ni] => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        }
        // Backtrack: the last `*` takes one more character, never a `/`.
        match star {
            Some((sp, sn)) if n[sn] != '/' => {
                star = Some((sp, sn + 1));
                pi = sp + 1;
                ni = sn + 1;
            }
            _ => return Some(false),
        }
    }
    Some(p[pi..].iter().all(|c| *c == '*'))
}

/// The class at the start of `p` (`[` first) against `c`: whether it
/// matches and the class's length; `None` if it is malformed.
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = p.get(i) == Some(&'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        if p.get(i) == Some(&']') && !first {
            i += 1;
            break;
        }
        first = false;
        // As Go's getEsc: a bound may not be `]` or `-` unescaped.
        let (lo, next) = class_char(p, i)?;
        i = next;
        let mut hi = lo;
        if p.get(i) == Some(&'-') {
            let (h, next) = class_char(p, i + 1)?;
            hi = h;
            i = next;
        }
        if lo <= c && c <= hi {
            matched = true;
        }
    }
    Some((matched != negate, i))
}

/// One bound of a class at `p[i]` and where the class goes on; `None`
/// for a missing, `]` or `-` bound (Go's `ErrBadPattern`).
fn class_char(p: &[char], i: usize) -> Option<(char, usize)> {
    match *p.get(i)? {
        ']' | '-' => None,
        '\\' => Some((*p.get(i + 1)?, i + 2)),
        c => Some((c, i + 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_go_filepath_match() {
        for (pattern, name, expected) in [
            ("io.kubernetes.cri.*", "io.kubernetes.cri.x", true),
            ("*", "anything.at.all", true),
            ("*", "with/slash", false),
            (
                "io.katacontainers.*",
                "io.katacontainers.config.hypervisor",
                true,
            ),
            ("io.katacontainers.*", "io.kata", false),
            ("a?c", "abc", true),
            ("a?c", "a/c", false),
            ("[abc]x", "bx", true),
            ("[^abc]x", "bx", false),
            ("[a-c]x", "dx", false),
            ("[]]", "]", false),
            ("[a-]", "a", false),
            ("[\\]]", "]", true),
            ("a\\*", "a*", true),
            ("a\\*", "ab", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("*.gpu", "nvidia.com.gpu", true),
            ("[unclosed", "u", false),
        ] {
            assert_eq!(glob_match(pattern, name), expected, "{pattern} ~ {name}");
        }
        let notes: HashMap<String, String> = [
            ("io.katacontainers.config.x".to_owned(), "1".to_owned()),
            ("other".to_owned(), "2".to_owned()),
        ]
        .into();
        assert_eq!(
            passthrough(&notes, &["io.katacontainers.*".to_owned()]),
            [("io.katacontainers.config.x".to_owned(), "1".to_owned())]
        );
        assert!(passthrough(&notes, &[]).is_empty());
    }
}
