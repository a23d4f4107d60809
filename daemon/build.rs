//! Release builds of `crated` on x86-64 Linux ask the linker to place the
//! functions the daemon runs at start-up (`startup.order`, written by
//! `cargo xtask order-file`) first in `.text`, together, and to pack its
//! relative relocations.
//!
//! The kernel maps a binary's pages around each one a process touches, 64
//! KiB at a time, so start-up code spread over 14 MB of text made ~9 MB of
//! it resident in every daemon; packed, the start-up code is ~1.5 MB and
//! the rest is mapped only when a request needs it.
//!
//! The option is lld's, the linker rustc uses on this target since 1.90.
//! A build that picks another linker (RUSTFLAGS naming one) goes without.
//! Names the file lists that a build no longer has are skipped silently:
//! a stale file costs layout, never the build.
fn main() {
    println!("cargo:rerun-if-changed=startup.order");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let target = std::env::var("TARGET").unwrap_or_default();
    let profile = std::env::var("PROFILE").unwrap_or_default();
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let own_linker = flags.contains("linker");
    if target != "x86_64-unknown-linux-gnu" || profile != "release" || own_linker {
        return;
    }
    // The loader applies every relative relocation of a position-
    // independent binary at start, reading the whole table: 24 bytes each
    // as RELA (670 KB here), a few KB packed as RELR (glibc 2.36+, which
    // the binary then requires by symbol version, so an older glibc
    // refuses it by name).
    println!("cargo:rustc-link-arg-bin=crated=-Wl,-z,pack-relative-relocs");
    let Ok(dir) = std::env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let order = std::path::Path::new(&dir).join("startup.order");
    if order.is_file() {
        println!(
            "cargo:rustc-link-arg-bin=crated=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bin=crated=-Wl,--no-warn-symbol-ordering");
    }
}
