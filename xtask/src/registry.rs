//! `cargo xtask registry`: Debian's docker-registry on 127.0.0.1 with the
//! test images pushed, until interrupted — the registry the tests start for
//! themselves, for trying pulls by hand.

use anyhow::Context as _;

/// Starts the registry, pushes the test images, prints their references
/// and waits for Ctrl-C.
pub fn run() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let registry = crated_testimages::Registry::start(None)?;
    let host = registry.host.clone();
    let marker = std::env::temp_dir().join("crated-hostile-escape");
    let mut images = vec![
        (
            "test/busybox:latest".to_owned(),
            crated_testimages::busybox()?,
        ),
        (
            "test/whiteouts:1".to_owned(),
            crated_testimages::whiteouts()?,
        ),
        (
            "test/multi:1".to_owned(),
            crated_testimages::multi_platform()?,
        ),
    ];
    for (i, (name, image)) in crated_testimages::hostile(&marker)?.into_iter().enumerate() {
        eprintln!("hostile {i}: {name}");
        images.push((format!("test/hostile{i}:1"), image));
    }
    runtime.block_on(async {
        for (name, image) in &images {
            let reference = format!("{host}/{name}");
            crated_testimages::push(&reference, image)
                .await
                .with_context(|| format!("pushing {reference}"))?;
            println!("{reference}");
        }
        eprintln!(
            "registry on {host} (storage {}); Ctrl-C stops it",
            registry.storage().display()
        );
        let mut interrupt = crated_core::signals::Signals::new(&[libc::SIGINT])?;
        interrupt.recv().await;
        anyhow::Ok(())
    })?;
    drop(registry);
    Ok(())
}
