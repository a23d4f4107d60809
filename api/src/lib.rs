#![doc = include_str!("../README.md")]
// tonic handlers return `Result<_, tonic::Status>`; helpers that build those
// replies share the shape, whatever the size of `Status`.
#![allow(clippy::result_large_err)]

// The generated modules mirror the protobuf package tree, because prost
// resolves cross-package references as relative `super::` paths.
#[allow(missing_docs, clippy::all, clippy::unwrap_used)]
mod generated {
    pub mod containerd {
        pub mod types {
            include!(concat!(env!("OUT_DIR"), "/containerd.types.rs"));
            pub mod transfer {
                include!(concat!(env!("OUT_DIR"), "/containerd.types.transfer.rs"));
            }
        }
        pub mod v1 {
            pub mod types {
                include!(concat!(env!("OUT_DIR"), "/containerd.v1.types.rs"));
            }
        }
        pub mod events {
            include!(concat!(env!("OUT_DIR"), "/containerd.events.rs"));
        }
        pub mod services {
            macro_rules! v1 {
                ($name:ident, $file:literal) => {
                    pub mod $name {
                        pub mod v1 {
                            include!(concat!(env!("OUT_DIR"), "/", $file));
                        }
                    }
                };
            }
            v1!(containers, "containerd.services.containers.v1.rs");
            v1!(content, "containerd.services.content.v1.rs");
            v1!(diff, "containerd.services.diff.v1.rs");
            v1!(images, "containerd.services.images.v1.rs");
            v1!(introspection, "containerd.services.introspection.v1.rs");
            v1!(leases, "containerd.services.leases.v1.rs");
            v1!(namespaces, "containerd.services.namespaces.v1.rs");
            v1!(snapshots, "containerd.services.snapshots.v1.rs");
            v1!(streaming, "containerd.services.streaming.v1.rs");
            v1!(tasks, "containerd.services.tasks.v1.rs");
            v1!(transfer, "containerd.services.transfer.v1.rs");
            v1!(version, "containerd.services.version.v1.rs");
            pub mod events {
                pub mod v1 {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/containerd.services.events.v1.rs"
                    ));
                }
                pub mod ttrpc {
                    pub mod v1 {
                        include!(concat!(
                            env!("OUT_DIR"),
                            "/containerd.services.events.ttrpc.v1.rs"
                        ));
                    }
                }
            }
        }
        pub mod task {
            pub mod v2 {
                include!(concat!(env!("OUT_DIR"), "/containerd.task.v2.rs"));
            }
        }
        pub mod runc {
            pub mod v1 {
                include!(concat!(env!("OUT_DIR"), "/containerd.runc.v1.rs"));
            }
        }
    }
    pub mod google {
        pub mod rpc {
            include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
        }
    }
    pub mod cgroups {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/io.containerd.cgroups.v1.rs"));
        }
        pub mod v2 {
            include!(concat!(env!("OUT_DIR"), "/io.containerd.cgroups.v2.rs"));
        }
    }
}

/// containerd's cgroups metrics (`io.containerd.cgroups.v1.Metrics`,
/// `io.containerd.cgroups.v2.Metrics`): what a runc shim's `Stats` returns.
pub use generated::cgroups;
pub use generated::{containerd, google};

pub mod convert;
pub mod dial;
pub mod error;
pub mod metadata;
pub mod plugins;
pub mod proxy;
pub mod services;
pub mod status;

pub use status::{from_grpc, from_ttrpc, to_grpc, to_ttrpc};
