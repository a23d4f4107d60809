//! `hosts.toml` (containerd's registry host configuration): any file is
//! loaded or refused with an error naming it, never a panic.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use crated_distribution::hosts::configure;
use crated_distribution::HostOptions;

/// A hosts directory for `registry.test`, made once per fuzzing process.
fn hosts_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("crated-fuzz-hosts-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("registry.test")).expect("make the hosts dir");
        dir
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = hosts_dir();
    std::fs::write(dir.join("registry.test/hosts.toml"), data).expect("write hosts.toml");
    let options = HostOptions {
        hosts_dir: Some(dir.clone()),
        ..Default::default()
    };
    let _ = configure("registry.test", &options);
});
