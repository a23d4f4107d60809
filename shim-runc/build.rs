//! Links the shim as a position-dependent executable, as Go links
//! containerd's own shim (Debian's `containerd-shim-runc-v2` is not a PIE).
//!
//! One shim runs per container. As a PIE, each shim process relocates its
//! ~48 KiB of pointer-holding read-only data (vtables, tables of
//! descriptors) at start, which makes those pages private to it; linked at
//! a fixed address, they are the binary's file pages, shared by every shim.
//! That is a seventh of an idle shim's memory. The cost is ASLR for the
//! shim's own code; libraries, stack and heap are still randomized, and
//! the shim's only peer is the daemon on a socket only root can reach.
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
