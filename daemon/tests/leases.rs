//! Leases through `crated` with containerd's ctr and ours.

// Helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use common::{debian_ctr, fails, ok, rows, workspace_bin, Daemon};

#[test]
fn leases_create_list_and_remove_with_both_ctrs() {
    let daemon = Daemon::start();
    let (theirs, ours) = (debian_ctr(), workspace_bin("ctr"));

    assert_eq!(
        ok(daemon.ctr(
            &theirs,
            &["leases", "create", "--id", "build-1", "team=a", "flag"]
        ))
        .trim(),
        "build-1"
    );
    let generated = ok(daemon.ctr(&theirs, &["leases", "create", "-x", "0"]))
        .trim()
        .to_owned();
    assert!(!generated.is_empty());
    assert_eq!(
        ok(daemon.ctr(
            &ours,
            &["leases", "create", "--id", "ours", "--expires", "1h"]
        ))
        .trim(),
        "ours"
    );

    let table = ok(daemon.ctr(&theirs, &["leases", "ls"]));
    assert!(table.starts_with("ID "), "{table}");
    let listed = rows(&table);
    let build = listed.iter().find(|r| r[0] == "build-1").expect(&table);
    assert!(build[2].contains("containerd.io/gc.expire="), "{table}");
    assert!(
        build[2].contains("flag=,team=a") || build[2].ends_with("flag=,team=a"),
        "{table}"
    );
    let never = listed.iter().find(|r| r[0] == generated).expect(&table);
    assert_eq!(
        never[2], "-",
        "a lease made with -x 0 has no expiry: {table}"
    );
    assert_eq!(
        ok(daemon.ctr(&ours, &["leases", "ls"])),
        table,
        "same table from both ctrs"
    );

    let filtered = ok(daemon.ctr(&theirs, &["leases", "ls", "-q", "labels.team==a"]));
    assert_eq!(filtered.trim(), "build-1");

    let stderr = fails(daemon.ctr(&theirs, &["leases", "create", "--id", "build-1"]));
    assert!(stderr.contains("already exists"), "{stderr}");

    let stderr = fails(daemon.ctr(&theirs, &["namespaces", "rm", "default"]));
    assert!(
        stderr.contains("must be empty, but it still has leases"),
        "{stderr}"
    );

    assert_eq!(
        ok(daemon.ctr(&theirs, &["leases", "rm", "build-1", &generated])),
        format!("build-1\n{generated}\n")
    );
    assert_eq!(
        ok(daemon.ctr(&ours, &["leases", "rm", "--sync", "ours"])).trim(),
        "ours"
    );
    assert_eq!(ok(daemon.ctr(&theirs, &["leases", "ls", "-q"])), "");
    let stderr = fails(daemon.ctr(&ours, &["leases", "rm", "ghost"]));
    assert!(stderr.contains("lease \"ghost\" not found"), "{stderr}");
    ok(daemon.ctr(&theirs, &["namespaces", "rm", "default"]));
}
