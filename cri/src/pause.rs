//! crated's own pause image, used when `sandbox_image = ""`: a node with
//! no registry access (or an air-gapped one whose operator would rather
//! not mirror `registry.k8s.io/pause`) still starts pods.
//!
//! The image is made in the content store on first use: one layer holding
//! `/pause`, a 295-byte static x86-64 ELF written out below, which does
//! what Kubernetes' pause does — exit 0 on SIGINT or SIGTERM (it is PID 1
//! of the pod, which ignores signals it has no handler for), let the
//! kernel reap orphans (SIGCHLD ignored with SA_NOCLDWAIT), and otherwise
//! sleep in pause(2) forever.

use std::collections::BTreeMap;

use crated_client::leases::Temporary;
use crated_client::Client;
use crated_core::content::WriterOptions;
use crated_core::descriptor::Descriptor;
use crated_core::digest::Digest;
use crated_core::images::walk::Node;
use crated_core::platforms::default_matcher;
use crated_core::{Error, Result};

/// The name the built-in pause image is recorded under.
pub const BUILTIN_PAUSE: &str = "crated.local/pause:builtin";

/// Where the ELF is loaded (a fixed, non-PIE address).
const BASE: u64 = 0x40_0000;
/// ELF header (64 bytes) and one program header (56 bytes) come first.
const CODE_OFFSET: u64 = 64 + 56;

/// The code, loaded at `BASE + CODE_OFFSET` (0x400078):
///
/// ```text
/// 400078: rt_sigaction(SIGINT,  &act_exit, NULL, 8)   mov eax,13; mov edi,2;  lea rsi,[act_exit]; xor edx,edx; mov r10d,8; syscall
/// 400093: rt_sigaction(SIGTERM, &act_exit, NULL, 8)   (edi = 15)
/// 4000ae: rt_sigaction(SIGCHLD, &act_chld, NULL, 8)   (edi = 17, rsi = act_chld)
/// 4000c9: loop: mov eax,34 (pause); syscall; jmp loop
/// 4000d2: handler: mov eax,231 (exit_group); xor edi,edi; syscall
/// 4000e0: act_exit: { handler = 0x4000d2, flags = SA_RESTORER, restorer = 0x400120, mask = 0 }
/// 400100: act_chld: { SIG_IGN, flags = SA_NOCLDWAIT, 0, 0 }
/// 400120: restorer: mov eax,15 (rt_sigreturn); syscall   (never reached: the handler exits)
/// ```
const CODE_AMD64: [u8; 175] = [
    0xb8, 0x0d, 0x00, 0x00, 0x00, 0xbf, 0x02, 0x00, 0x00, 0x00, 0x48, 0x8d, 0x35, 0x57, 0x00, 0x00,
    0x00, 0x31, 0xd2, 0x41, 0xba, 0x08, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xb8, 0x0d, 0x00, 0x00, 0x00,
    0xbf, 0x0f, 0x00, 0x00, 0x00, 0x48, 0x8d, 0x35, 0x3c, 0x00, 0x00, 0x00, 0x31, 0xd2, 0x41, 0xba,
    0x08, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xb8, 0x0d, 0x00, 0x00, 0x00, 0xbf, 0x11, 0x00, 0x00, 0x00,
    0x48, 0x8d, 0x35, 0x41, 0x00, 0x00, 0x00, 0x31, 0xd2, 0x41, 0xba, 0x08, 0x00, 0x00, 0x00, 0x0f,
    0x05, 0xb8, 0x22, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xf7, 0xb8, 0xe7, 0x00, 0x00, 0x00, 0x31,
    0xff, 0x0f, 0x05, 0x0f, 0x1f, 0x44, 0x00, 0x00, 0xd2, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x20, 0x01, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xb8, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05,
];

/// The pause program for this machine's architecture.
pub fn pause_binary() -> Result<Vec<u8>> {
    if std::env::consts::ARCH != "x86_64" {
        return Err(Error::not_implemented(format!(
            "crated's built-in pause image exists for x86_64 only, not {}: set sandbox_image",
            std::env::consts::ARCH
        )));
    }
    let total = CODE_OFFSET + CODE_AMD64.len() as u64;
    let mut elf = Vec::with_capacity(total as usize);
    // e_ident: ELF, 64-bit, little endian, version 1, System V ABI.
    elf.extend_from_slice(b"\x7fELF\x02\x01\x01\x00");
    elf.extend_from_slice(&[0; 8]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&0x3eu16.to_le_bytes()); // EM_X86_64
    elf.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    elf.extend_from_slice(&(BASE + CODE_OFFSET).to_le_bytes()); // e_entry
    elf.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    elf.extend_from_slice(&0u64.to_le_bytes()); // e_shoff: no sections
    elf.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    for half in [64u16, 56, 1, 0, 0, 0] {
        // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
        elf.extend_from_slice(&half.to_le_bytes());
    }
    // One PT_LOAD, read + execute, mapping the whole file at BASE.
    elf.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    elf.extend_from_slice(&5u32.to_le_bytes()); // PF_R | PF_X
    for word in [0u64, BASE, BASE, total, total, 0x1000] {
        // p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align
        elf.extend_from_slice(&word.to_le_bytes());
    }
    elf.extend_from_slice(&CODE_AMD64);
    Ok(elf)
}

/// An uncompressed tar holding `/pause` (root-owned, 0755).
fn layer(binary: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    let field = |header: &mut [u8; 512], at: usize, text: &[u8]| {
        header[at..at + text.len()].copy_from_slice(text);
    };
    field(&mut header, 0, b"pause");
    field(&mut header, 100, b"0000755\0"); // mode
    field(&mut header, 108, b"0000000\0"); // uid
    field(&mut header, 116, b"0000000\0"); // gid
    field(
        &mut header,
        124,
        format!("{:011o}\0", binary.len()).as_bytes(),
    ); // size
    field(&mut header, 136, b"00000000000\0"); // mtime
    field(&mut header, 156, b"0"); // regular file
    field(&mut header, 257, b"ustar\x0000"); // POSIX ustar
                                             // The checksum is summed with its own field as spaces.
    field(&mut header, 148, b"        ");
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    field(&mut header, 148, format!("{sum:06o}\0 ").as_bytes());
    let mut tar = header.to_vec();
    tar.extend_from_slice(binary);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
    // Two zero blocks end the archive.
    tar.extend_from_slice(&[0; 1024]);
    tar
}

/// Commits `data` as one blob with `labels` under `lease`.
async fn put_blob(
    client: &Client,
    lease: &str,
    media_type: &str,
    data: &[u8],
    labels: BTreeMap<String, String>,
) -> Result<Descriptor> {
    let digest = Digest::sha256(data);
    let store = &*client.services().content;
    let mut writer = store
        .writer(
            client.namespace(),
            WriterOptions {
                r#ref: format!("crated-pause-{digest}"),
                total: data.len() as u64,
                expected: Some(digest.clone()),
                lease: Some(lease.to_owned()),
            },
        )
        .await?;
    writer.truncate(0).await?;
    writer.write(data).await?;
    match writer
        .commit(
            data.len() as u64,
            Some(digest.clone()),
            labels.into_iter().collect(),
        )
        .await
    {
        Ok(()) => {}
        Err(e) if e.is_already_exists() => {}
        Err(e) => return Err(e),
    }
    Ok(Descriptor {
        media_type: media_type.to_owned(),
        digest,
        size: data.len() as u64,
        annotations: BTreeMap::new(),
    })
}

/// Writes the built-in pause image into the content store, records it as
/// [`BUILTIN_PAUSE`] with `labels` and unpacks it into `snapshotter`.
pub async fn create(
    client: &Client,
    snapshotter: &str,
    labels: &BTreeMap<String, String>,
) -> Result<()> {
    let binary = pause_binary()?;
    let lease = Temporary::create(client).await?;
    let result = async {
        let layer = layer(&binary);
        let layer_desc = put_blob(
            client,
            lease.id(),
            "application/vnd.oci.image.layer.v1.tar",
            &layer,
            BTreeMap::new(),
        )
        .await?;
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": ["/pause"]},
            "rootfs": {"type": "layers", "diff_ids": [layer_desc.digest.to_string()]},
        });
        let config = serde_json::to_vec(&config)
            .map_err(|e| Error::unknown(format!("encode pause config: {e}")))?;
        let config_desc = put_blob(
            client,
            lease.id(),
            "application/vnd.oci.image.config.v1+json",
            &config,
            BTreeMap::new(),
        )
        .await?;
        let descriptor = |d: &Descriptor| {
            serde_json::json!({"mediaType": d.media_type, "digest": d.digest.to_string(), "size": d.size})
        };
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptor(&config_desc),
            "layers": [descriptor(&layer_desc)],
        });
        let manifest = serde_json::to_vec(&manifest)
            .map_err(|e| Error::unknown(format!("encode pause manifest: {e}")))?;
        // The manifest holds its config and layer against the collector.
        let refs = BTreeMap::from([
            (
                "containerd.io/gc.ref.content.config".to_owned(),
                config_desc.digest.to_string(),
            ),
            (
                "containerd.io/gc.ref.content.l.0".to_owned(),
                layer_desc.digest.to_string(),
            ),
        ]);
        let target = put_blob(
            client,
            lease.id(),
            "application/vnd.oci.image.manifest.v1+json",
            &manifest,
            refs,
        )
        .await?;
        crated_client::images::put(client, BUILTIN_PAUSE, &target, labels).await?;
        crated_client::unpack(client, &Node::from(&target), snapshotter, &default_matcher())
            .await?;
        Ok(())
    }
    .await;
    lease.release().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_pause_binary_runs_and_exits_0_on_sigterm() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("pause");
        std::fs::write(&path, pause_binary().expect("binary")).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut child = std::process::Command::new(&path)
            .spawn()
            .expect("run pause");
        // It keeps running until told to stop…
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(
            child.try_wait().expect("wait").is_none(),
            "pause exited early"
        );
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().expect("wait");
        assert_eq!(status.code(), Some(0), "{status}");
    }

    #[test]
    fn the_layer_is_a_tar_with_the_binary() {
        let tar = layer(b"\x7fELF-ish");
        assert_eq!(tar.len() % 512, 0);
        assert_eq!(&tar[..5], b"pause");
        assert_eq!(&tar[512..520], b"\x7fELF-ish");
        // The checksum field matches the header's bytes.
        let mut header = tar[..512].to_vec();
        let stored = u32::from_str_radix(std::str::from_utf8(&header[148..154]).expect("octal"), 8)
            .expect("checksum");
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
        assert_eq!(stored, sum);
    }
}
