//! A daemon and a namespace of its own, emptied when the test ends (pass
//! or fail), for tests that stop and restart the daemon.

use std::process::{Command, Output};

use super::{debian_ctr, empty_namespace, workspace_bin, Daemon};

/// A daemon whose namespace `ns` is emptied on drop: tasks killed and
/// removed, containers removed, runc's machine-wide state dir of the
/// namespace removed. A stopped daemon is started again for that.
pub struct OwnedDaemon {
    pub daemon: Daemon,
    pub ns: String,
}

impl OwnedDaemon {
    /// Debian's ctr in the namespace.
    pub fn ctr(&self, args: &[&str]) -> Output {
        let mut full = vec!["-n", self.ns.as_str()];
        full.extend_from_slice(args);
        self.daemon.ctr(&debian_ctr(), &full)
    }

    /// `crated fsck` on the daemon's config (stopped): exit code and
    /// output.
    pub fn fsck(&self, repair: bool) -> (i32, String) {
        let mut cmd = Command::new(workspace_bin("crated"));
        cmd.arg("--config").arg(&self.daemon.config).arg("fsck");
        if repair {
            cmd.arg("--repair");
        }
        let out = cmd.output().expect("run crated fsck");
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

impl Drop for OwnedDaemon {
    fn drop(&mut self) {
        if !self.daemon.is_running() {
            self.daemon.spawn(&[]);
        }
        empty_namespace(&self.daemon, &debian_ctr(), &self.ns);
        super::forget_namespace(&self.ns);
    }
}
