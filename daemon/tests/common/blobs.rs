//! Blobs for content tests: pseudo-random files with digests computed by
//! `sha256sum` (independent of our hashing), ingest through a ctr, and the
//! blob files on disk.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::Daemon;

/// A file of `len` pseudo-random bytes and its digest (via sha256sum, an
/// implementation independent of ours).
pub fn blob(dir: &Path, name: &str, len: usize, seed: u64) -> (PathBuf, String) {
    let path = dir.join(name);
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut x = seed | 1;
    let mut chunk = Vec::with_capacity(1 << 16);
    let mut written = 0;
    while written < len {
        chunk.clear();
        while chunk.len() < (1 << 16) && written + chunk.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.extend_from_slice(&x.to_le_bytes());
        }
        chunk.truncate(len - written);
        file.write_all(&chunk).unwrap();
        written += chunk.len();
    }
    file.flush().unwrap();
    (path.clone(), sha256sum(&path))
}

pub fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    format!("sha256:{}", text.split_whitespace().next().unwrap())
}

pub fn ctr_with_stdin(
    daemon: &Daemon,
    ctr: &Path,
    args: &[&str],
    stdin: &Path,
) -> std::process::Output {
    Command::new(ctr)
        .arg("--address")
        .arg(&daemon.address)
        .args(args)
        .stdin(std::fs::File::open(stdin).unwrap())
        .output()
        .unwrap()
}

/// Ingests `file` as `name` into namespace `ns` with Debian's ctr (under
/// its expected digest), then sets `labels` (`k=v`); returns the digest.
pub fn ingest_file(
    daemon: &Daemon,
    ns: &str,
    file: &Path,
    name: &str,
    labels: &[String],
) -> String {
    let ctr = super::debian_ctr();
    let digest = sha256sum(file);
    super::ok(ctr_with_stdin(
        daemon,
        &ctr,
        &[
            "-n",
            ns,
            "content",
            "ingest",
            "--expected-digest",
            &digest,
            name,
        ],
        file,
    ));
    if !labels.is_empty() {
        let mut args = vec!["-n", ns, "content", "label", &digest];
        args.extend(labels.iter().map(String::as_str));
        super::ok(daemon.ctr(&ctr, &args));
    }
    digest
}

/// Writes `data` to `dir/name` and ingests it as [`ingest_file`] does.
pub fn put(
    daemon: &Daemon,
    ns: &str,
    dir: &Path,
    name: &str,
    data: &[u8],
    labels: &[String],
) -> String {
    let file = dir.join(name);
    std::fs::write(&file, data).unwrap();
    ingest_file(daemon, ns, &file, name, labels)
}

pub fn blob_files(daemon: &Daemon) -> Vec<PathBuf> {
    let dir = daemon
        .dir
        .path()
        .join("root/io.containerd.content.v1.content/blobs/sha256");
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}
