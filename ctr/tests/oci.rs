//! `ctr oci spec`: the default spec, as containerd's ctr prints it (the
//! same capabilities, mounts, namespaces and masked paths), with no daemon
//! running.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::process::Command;

fn spec(ctr: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(ctr).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{ctr} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn set(value: &serde_json::Value) -> BTreeSet<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect()
}

#[test]
fn the_default_spec_is_containerds() {
    let ours = spec(env!("CARGO_BIN_EXE_ctr"), &["oci", "spec"]);
    // Debian's containerd 1.6 ctr, which CI installs.
    let theirs = spec("/usr/bin/ctr", &["oci", "spec"]);
    for caps in ["bounding", "effective", "permitted"] {
        assert_eq!(
            set(&ours["process"]["capabilities"][caps]),
            set(&theirs["process"]["capabilities"][caps]),
            "{caps}"
        );
    }
    for key in ["rlimits", "noNewPrivileges", "user", "cwd"] {
        assert_eq!(ours["process"][key], theirs["process"][key], "{key}");
    }
    let destinations = |s: &serde_json::Value| {
        s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["destination"].clone(),
                    m["type"].clone(),
                    m["options"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(destinations(&ours), destinations(&theirs));
    for key in ["maskedPaths", "readonlyPaths", "namespaces", "cgroupsPath"] {
        assert_eq!(ours["linux"][key], theirs["linux"][key], "{key}");
    }
    assert_eq!(ours["linux"]["cgroupsPath"], "/default");
    let other = spec(env!("CARGO_BIN_EXE_ctr"), &["-n", "k8s.io", "oci", "spec"]);
    assert_eq!(other["linux"]["cgroupsPath"], "/k8s.io");

    let refused = Command::new(env!("CARGO_BIN_EXE_ctr"))
        .args(["oci", "spec", "--platform", "windows/amd64"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let says = String::from_utf8_lossy(&refused.stderr);
    assert!(
        says.contains("windows/amd64") && says.contains("only Linux"),
        "{says}"
    );
}
