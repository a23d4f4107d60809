//! criu for the checkpoint tests. Debian 12's criu 3.17 cannot start on
//! kernels from 6.13 on ("Unexpected rt vDSO area bounds": the vDSO got a
//! second vvar mapping). Where it fails `criu check`, criu 4.1 is fetched
//! from Debian trixie with everything it links against (its own libc and
//! loader) into a private root beside the wrapper script
//! `crated_testimages::TRIXIE_CRIU`; nothing of the system is replaced.
//! Packages come through apt, verified with the Debian archive keyring.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

fn passes_check(criu: &Path) -> bool {
    Command::new(criu)
        .arg("check")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Makes a working criu available; a no-op when Debian's works.
pub fn install() -> anyhow::Result<()> {
    let wrapper = PathBuf::from(crated_testimages::TRIXIE_CRIU);
    if passes_check(Path::new("/usr/sbin/criu")) || passes_check(&wrapper) {
        return Ok(());
    }
    // <base>/bin/criu → <base>/root, <base>/apt.
    let base = wrapper
        .parent()
        .and_then(Path::parent)
        .context("criu wrapper path has no base directory")?
        .to_owned();
    let apt = base.join("apt");
    let root = base.join("root");
    let _ = std::fs::remove_dir_all(&apt);
    let _ = std::fs::remove_dir_all(&root);
    for dir in [
        "etc/apt/sources.list.d",
        "etc/apt/preferences.d",
        "var/lib/apt/lists/partial",
        "var/cache/apt/archives/partial",
        "var/lib/dpkg",
        "debs",
    ] {
        std::fs::create_dir_all(apt.join(dir))?;
    }
    std::fs::write(apt.join("var/lib/dpkg/status"), "")?;
    std::fs::write(
        apt.join("etc/apt/sources.list"),
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
         http://deb.debian.org/debian trixie main\n",
    )?;
    let options = [
        format!("-oDir={}", apt.display()),
        format!(
            "-oDir::State::status={}",
            apt.join("var/lib/dpkg/status").display()
        ),
        "-oDebug::NoLocking=1".to_owned(),
        "-oAPT::Sandbox::User=root".to_owned(),
    ];
    crate::run(
        Command::new("apt-get")
            .args(&options)
            .args(["update", "-qq"]),
    )?;
    let closure = Command::new("apt-cache")
        .args(&options)
        .args([
            "depends",
            "--recurse",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
            "criu",
        ])
        .output()
        .context("apt-cache depends criu")?;
    let packages: std::collections::BTreeSet<String> = String::from_utf8_lossy(&closure.stdout)
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('<'))
        .map(str::to_owned)
        .collect();
    if !packages.contains("criu") {
        bail!("trixie's criu not found by apt-cache");
    }
    crate::run(
        Command::new("apt-get")
            .args(&options)
            .arg("download")
            .args(&packages)
            .current_dir(apt.join("debs")),
    )?;
    std::fs::create_dir_all(&root)?;
    for deb in std::fs::read_dir(apt.join("debs"))? {
        let deb = deb?.path();
        crate::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    }
    let triplet = match std::env::consts::ARCH {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        other => bail!("no criu from trixie for {other}"),
    };
    let libs = root.join("usr/lib").join(triplet);
    let loader = std::fs::read_dir(&libs)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("ld-linux"))
        })
        .with_context(|| format!("no ld-linux loader in {}", libs.display()))?;
    let script = format!(
        "#!/bin/sh\n# criu 4.1 from Debian trixie with its own libraries (written by `cargo xtask deps`).\n\
         exec {loader:?} --library-path {libs:?} {criu:?} \"$@\"\n",
        loader = loader.display().to_string(),
        libs = libs.display().to_string(),
        criu = root.join("usr/sbin/criu").display().to_string(),
    );
    std::fs::create_dir_all(base.join("bin"))?;
    std::fs::write(&wrapper, script)?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
    let _ = std::fs::remove_dir_all(&apt);
    if !passes_check(&wrapper) {
        bail!("trixie's criu does not pass `criu check` here either");
    }
    eprintln!("xtask: criu from trixie installed at {}", wrapper.display());
    Ok(())
}
