//! `cargo xtask fuzz [SECONDS]`: every fuzz target of `fuzz/` (cargo-fuzz,
//! libFuzzer) for a bounded time each; `ci` runs them after the tests.
//!
//! cargo-fuzz is installed into the CI cache on first use. The toolchain
//! here is stable: libFuzzer's coverage flags are passed with
//! `RUSTC_BOOTSTRAP=1`, and without a sanitizer (`-s none`, which needs no
//! nightly runtime); the targets assert their own invariants (nothing
//! outside the root, round trips) and a panic is a crash.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Context as _;

use crate::{cargo, run};

/// The targets, by `[[bin]]` name in `fuzz/Cargo.toml`.
const TARGETS: &[&str] = &[
    "filters",
    "references",
    "platforms",
    "manifests",
    "hosts_toml",
    "tar_apply",
    "spdy_frames",
];

/// The cargo-fuzz release used.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

fn cache() -> PathBuf {
    std::env::var_os("CRATED_CI_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/crated-ci"))
}

/// The cargo-fuzz binary, installed into the cache if missing.
fn cargo_fuzz() -> anyhow::Result<PathBuf> {
    let root = cache().join("cargo-fuzz");
    let bin = root.join("bin/cargo-fuzz");
    if !bin.exists() {
        run(cargo()
            .args([
                "install",
                "cargo-fuzz",
                "--locked",
                "--version",
                CARGO_FUZZ_VERSION,
            ])
            .arg("--root")
            .arg(&root)
            .env("CARGO_TARGET_DIR", cache().join("cargo-fuzz-build")))
        .context("install cargo-fuzz")?;
    }
    Ok(bin)
}

/// Runs every target for `seconds`.
pub fn run_all(seconds: u64) -> anyhow::Result<()> {
    let bin = cargo_fuzz()?;
    for target in TARGETS {
        run(Command::new(&bin)
            .args([
                "fuzz",
                "run",
                "--fuzz-dir",
                "fuzz",
                "-s",
                "none",
                target,
                "--",
            ])
            .arg(format!("-max_total_time={seconds}"))
            // One input running this long is a hang: a crash, not a wait.
            .arg("-timeout=10")
            .arg("-rss_limit_mb=2048")
            .env("RUSTC_BOOTSTRAP", "1")
            .env("CARGO_TARGET_DIR", cache().join("fuzz-target")))
        .with_context(|| {
            format!("fuzz target {target} (its crash input is under fuzz/artifacts/{target})")
        })?;
    }
    Ok(())
}
