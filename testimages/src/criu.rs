//! criu for the checkpoint tests: Debian's, or, where that one cannot run
//! on the kernel (bookworm's 3.17 cannot read the vDSO of kernels from
//! 6.13 on), the newer one `cargo xtask deps` unpacks from Debian trixie
//! with its own libraries.

use std::path::PathBuf;
use std::process::Command;

/// Where `cargo xtask deps` puts the trixie criu's wrapper script.
pub const TRIXIE_CRIU: &str = "/var/cache/crated-ci/criu/bin/criu";

/// A criu whose `criu check` passes here, or why there is none (every
/// candidate's failure, for the test's skip message).
pub fn criu() -> Result<PathBuf, String> {
    if !std::path::Path::new("/usr/sbin/iptables-restore").exists() {
        return Err("iptables-restore is not installed (criu locks the network with it)".into());
    }
    let mut reasons = Vec::new();
    for candidate in ["/usr/sbin/criu", TRIXIE_CRIU] {
        match Command::new(candidate).arg("check").output() {
            Ok(out) if out.status.success() => return Ok(PathBuf::from(candidate)),
            Ok(out) => {
                let text = String::from_utf8_lossy(&out.stderr);
                let last = text.lines().rev().find(|l| !l.trim().is_empty());
                reasons.push(format!(
                    "`{candidate} check` failed: {}",
                    last.unwrap_or("no output")
                ));
            }
            Err(e) => reasons.push(format!("{candidate}: {e}")),
        }
    }
    Err(reasons.join("; "))
}
