//! Ingests on disk: what an ingest directory holds, read back as a
//! [`Status`], created fresh, and removed.
//!
//! Reading is lenient where containerd's is strict: a missing or garbled
//! `startedat`, `updatedat` or `total` (say, after a crash) falls back to
//! what the data file says instead of failing every listing. Only `ref` and
//! `data` make an ingest; a directory without them is not listed.

use std::fs::File;
use std::io::ErrorKind;
use std::path::Path;
use std::time::SystemTime;

use crated_core::content::Status;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::layout::write_replace;
use crate::Error;

type Result<T, E = Error> = std::result::Result<T, E>;

/// NotFound for the ingest of `ref`.
pub(crate) fn not_found(r#ref: &str) -> Error {
    Error::IngestNotFound {
        r#ref: r#ref.to_owned(),
    }
}

/// The status of the ingest in `dir`, or `None` if there is none (or it is
/// not complete). The offset is the data file's size.
pub(crate) fn read_status(dir: &Path) -> Result<Option<Status>> {
    let ref_path = dir.join("ref");
    let r#ref = match std::fs::read_to_string(&ref_path) {
        Ok(r) => r,
        Err(e) if is_absent(&e) => return Ok(None),
        Err(e) => return Err(Error::io("read", &ref_path, e)),
    };
    let data = dir.join("data");
    let meta = match std::fs::metadata(&data) {
        Ok(m) => m,
        Err(e) if is_absent(&e) => return Ok(None),
        Err(e) => return Err(Error::io("stat", &data, e)),
    };
    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let started_at = read_time(&dir.join("startedat")).unwrap_or(modified);
    // `updatedat` is written on close only; writes since then show in the
    // data file's mtime.
    let updated_at = read_time(&dir.join("updatedat")).map_or(modified, |t| t.max(modified));
    let total = std::fs::read_to_string(dir.join("total"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    // What the garbage collector must keep for this ingest; a garbled file
    // only loses that hint.
    let expected = std::fs::read_to_string(dir.join("expected"))
        .ok()
        .and_then(|d| crated_core::digest::Digest::parse(d.trim()).ok());
    Ok(Some(Status {
        r#ref,
        offset: meta.len(),
        total,
        expected,
        started_at,
        updated_at,
    }))
}

/// The status of the ingest of `ref` in `dir`; NotFound if there is none.
pub(crate) fn status(dir: &Path, r#ref: &str) -> Result<Status> {
    match read_status(dir)? {
        // A different ref would be a sha256 collision or a corrupt store;
        // either way this ingest is not the caller's.
        Some(status) if status.r#ref == r#ref => Ok(status),
        _ => Err(not_found(r#ref)),
    }
}

/// Makes `dir` a fresh, empty ingest of `ref`, discarding whatever was
/// there; returns its data file, open for reading and writing.
pub(crate) fn create(
    dir: &Path,
    r#ref: &str,
    total: u64,
    expected: Option<&crated_core::digest::Digest>,
    now: SystemTime,
) -> Result<File> {
    remove_dir(dir)?;
    std::fs::create_dir(dir).map_err(|e| Error::io("create ingest", dir, e))?;
    let data = dir.join("data");
    let file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&data)
        .map_err(|e| Error::io("create", &data, e))?;
    let now = format_time(now)?;
    write_replace(&dir.join("startedat"), now.as_bytes())?;
    write_replace(&dir.join("updatedat"), now.as_bytes())?;
    if total > 0 {
        write_replace(&dir.join("total"), total.to_string().as_bytes())?;
    }
    if let Some(expected) = expected {
        write_expected(dir, expected)?;
    }
    // Last: until the ref is there the ingest is not listed, so a crash
    // half-way leaves nothing that looks like an ingest.
    write_replace(&dir.join("ref"), r#ref.as_bytes())?;
    Ok(file)
}

/// Records the digest the writer expects.
pub(crate) fn write_expected(dir: &Path, expected: &crated_core::digest::Digest) -> Result<()> {
    write_replace(&dir.join("expected"), expected.as_str().as_bytes())
}

/// Records the time of the last write, as containerd does on close.
pub(crate) fn write_updated_at(dir: &Path, at: SystemTime) -> Result<()> {
    write_replace(&dir.join("updatedat"), format_time(at)?.as_bytes())
}

/// Removes the ingest directory `dir`; absent is fine.
pub(crate) fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if !is_absent(&e) => Err(Error::io("remove ingest", dir, e)),
        _ => Ok(()),
    }
}

fn is_absent(e: &std::io::Error) -> bool {
    // NotADirectory: a stray file where an ingest directory would be.
    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory)
}

/// `t` as Go's `time.Time.MarshalText` writes it (RFC 3339, nanoseconds
/// without trailing zeros), so containerd reads our ingests and we read its.
pub(crate) fn format_time(t: SystemTime) -> Result<String> {
    OffsetDateTime::from(t)
        .format(&Rfc3339)
        .map_err(|source| Error::FormatTime { time: t, source })
}

fn read_time(path: &Path) -> Option<SystemTime> {
    let text = std::fs::read_to_string(path).ok()?;
    OffsetDateTime::parse(text.trim(), &Rfc3339)
        .ok()
        .map(SystemTime::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_round_trip_in_go_format() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_400_000);
        assert_eq!(format_time(t).unwrap(), "2023-11-14T22:13:20.1234Z");
        let whole = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(format_time(whole).unwrap(), "2023-11-14T22:13:20Z");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        std::fs::write(&path, format_time(t).unwrap()).unwrap();
        assert_eq!(read_time(&path), Some(t));
        // What containerd writes in a local zone.
        std::fs::write(&path, "2023-11-14T23:13:20.1234+01:00").unwrap();
        assert_eq!(read_time(&path), Some(t));
        std::fs::write(&path, "garbage").unwrap();
        assert_eq!(read_time(&path), None);
    }

    #[test]
    fn incomplete_ingests_are_not_listed_and_garbled_times_fall_back() {
        let dir = tempfile::tempdir().unwrap();
        let ingest = dir.path().join("i");
        std::fs::create_dir(&ingest).unwrap();
        std::fs::write(ingest.join("data"), b"abc").unwrap();
        assert_eq!(read_status(&ingest).unwrap(), None, "no ref");
        std::fs::write(ingest.join("ref"), b"r").unwrap();
        std::fs::write(ingest.join("startedat"), b"").unwrap();
        std::fs::write(ingest.join("total"), b"x").unwrap();
        let st = read_status(&ingest).unwrap().unwrap();
        let mtime = std::fs::metadata(ingest.join("data"))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!((st.offset, st.total), (3, 0));
        assert_eq!((st.started_at, st.updated_at), (mtime, mtime));
        assert!(matches!(
            status(&ingest, "other"),
            Err(Error::IngestNotFound { r#ref }) if r#ref == "other"
        ));
        std::fs::remove_file(ingest.join("data")).unwrap();
        assert_eq!(read_status(&ingest).unwrap(), None, "no data");
    }
}
