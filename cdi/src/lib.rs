//! The Container Device Interface (CDI) for crated's CRI: vendors describe
//! devices in spec files (`/etc/cdi`, `/var/run/cdi`), a container asks
//! for them by fully qualified name (`vendor.com/class=name`, from the
//! CRI's `CDI_devices` or `cdi.k8s.io/…` annotations), and the runtime
//! applies each device's edits — device nodes with cgroup access, mounts,
//! environment, hooks, groups — to the container's OCI spec.
//!
//! ```
//! use crated_cdi::Registry;
//!
//! let dir = tempfile::tempdir()?;
//! std::fs::write(
//!     dir.path().join("vendor.yaml"),
//!     "cdiVersion: 0.6.0\nkind: vendor.example/null\n\
//!      devices:\n- name: \"0\"\n  containerEdits:\n    env: [NULL_DEVICE=0]\n    \
//!      deviceNodes: [{path: /dev/vendor-null, hostPath: /dev/null}]\n",
//! )?;
//! let registry = Registry::load(&[dir.path()]);
//! let mut spec = oci_spec::runtime::Spec::default();
//! registry.inject(&mut spec, &["vendor.example/null=0".to_owned()])?;
//! let linux = spec.linux().as_ref().expect("linux section");
//! assert_eq!(linux.devices().as_ref().map(Vec::len), Some(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod edits;
pub mod error;
pub mod names;
mod registry;
pub mod spec;

pub use error::{Error, Result};
pub use names::{devices_from_annotations, parse_qualified, ANNOTATION_PREFIX};
pub use registry::Registry;
