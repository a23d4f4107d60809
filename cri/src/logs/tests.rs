//! The log writer against real pipes, fifos and files.

use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crated_core::Kind;
use nix::sys::stat::Mode;
use time::{Date, Month, PrimitiveDateTime, Time};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;

use super::*;

/// Long enough for a loaded CI machine, short enough to fail a hang.
const PATIENCE: Duration = Duration::from_secs(20);

/// containerd's read buffer size, which its splitting cases are built on.
const GO_BUF: usize = 4096;

fn os_pipe() -> (pipe::Sender, LogReader) {
    let (read, write) = nix::unistd::pipe().expect("pipe");
    let sender = pipe::Sender::from_owned_fd(write).expect("sender of a pipe");
    let receiver = pipe::Receiver::from_owned_fd(read).expect("receiver of a pipe");
    (sender, Box::new(receiver))
}

/// A named fifo as the shim makes them: the read end opened first,
/// non-blocking, then the write end.
fn fifo(dir: &Path, name: &str) -> (pipe::Sender, LogReader) {
    let path = dir.join(name);
    nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let receiver = pipe::OpenOptions::new()
        .open_receiver(&path)
        .expect("open fifo for reading");
    let sender = pipe::OpenOptions::new()
        .open_sender(&path)
        .expect("open fifo for writing");
    (sender, Box::new(receiver))
}

#[derive(Debug, Clone, PartialEq)]
struct Record {
    time: OffsetDateTime,
    stream: String,
    tag: char,
    content: Vec<u8>,
}

impl Record {
    fn short(&self) -> (&str, char, &[u8]) {
        (&self.stream, self.tag, &self.content)
    }
}

/// Parses a CRI log strictly: every record whole, every field as the
/// kubelet expects it.
fn parse_log(bytes: &[u8]) -> Vec<Record> {
    if bytes.is_empty() {
        return Vec::new();
    }
    let body = bytes
        .strip_suffix(b"\n")
        .unwrap_or_else(|| panic!("log does not end with a newline: {bytes:?}"));
    body.split(|&b| b == b'\n')
        .map(|line| {
            let mut fields = line.splitn(4, |&b| b == b' ');
            let time = parse_timestamp(fields.next().expect("timestamp"));
            let stream = String::from_utf8(fields.next().expect("stream").to_vec()).expect("utf-8");
            assert!(stream == "stdout" || stream == "stderr", "{stream}");
            let tag = fields.next().expect("tag");
            assert!(tag == b"F" || tag == b"P", "{tag:?}");
            let content = fields.next().expect("content").to_vec();
            Record {
                time,
                stream,
                tag: char::from(tag[0]),
                content,
            }
        })
        .collect()
}

fn read_log(path: &Path) -> Vec<Record> {
    parse_log(&std::fs::read(path).expect("read log"))
}

/// `2016-10-06T00:17:09.669794202Z`, and nothing else, back to a time.
fn parse_timestamp(ts: &[u8]) -> OffsetDateTime {
    let text = std::str::from_utf8(ts).expect("utf-8 timestamp");
    assert_eq!(ts.len(), TIMESTAMP_LEN, "{text}");
    for (at, sep) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')] {
        assert_eq!(ts[at], sep, "{text}");
    }
    assert_eq!((ts[19], ts[29]), (b'.', b'Z'), "{text}");
    let num = |range: Range<usize>| -> u32 {
        assert!(ts[range.clone()].iter().all(u8::is_ascii_digit), "{text}");
        text[range].parse().expect("digits")
    };
    let month = Month::try_from(num(5..7) as u8).expect("month");
    let date = Date::from_calendar_date(num(0..4) as i32, month, num(8..10) as u8).expect("date");
    let time = Time::from_hms_nano(
        num(11..13) as u8,
        num(14..16) as u8,
        num(17..19) as u8,
        num(20..29),
    )
    .expect("time");
    PrimitiveDateTime::new(date, time).assume_utc()
}

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish in {PATIENCE:?}"))
}

/// Runs `input` through a writer as stdout and returns the records.
async fn through_writer(input: &[u8], max_len: i64) -> Vec<Short> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("0.log");
    let (mut tx, rx) = os_pipe();
    let writer = LogWriter::start(&path, rx, None, max_len)
        .await
        .expect("start");
    let input = input.to_vec();
    // The pipe holds 64 KiB: write while the writer drains.
    let feeder = tokio::spawn(async move {
        tx.write_all(&input).await.expect("write to pipe");
    });
    within("feeding", feeder).await.expect("feeder");
    within("writer", writer.wait()).await.expect("wait");
    read_log(&path)
        .into_iter()
        .map(|r| (r.stream, r.tag, r.content))
        .collect()
}

/// Waits until the log at `path` holds `n` records.
async fn until_records(path: &Path, n: usize) -> Vec<Record> {
    within("records to appear", async {
        loop {
            let records = read_log(path);
            if records.len() >= n {
                return records;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

fn a(n: usize) -> Vec<u8> {
    vec![b'a'; n]
}

/// `(stream, tag, content)` of a record.
type Short = (String, char, Vec<u8>);

fn full(c: &[u8]) -> Short {
    ("stdout".into(), 'F', c.to_vec())
}

fn part(c: &[u8]) -> Short {
    ("stdout".into(), 'P', c.to_vec())
}

#[test]
fn timestamps_are_utc_with_nine_fraction_digits() {
    let t = OffsetDateTime::from_unix_timestamp_nanos(1_475_713_029_669_794_202).expect("time");
    assert_eq!(&timestamp(t), b"2016-10-06T00:17:09.669794202Z");
    // Trailing and leading zeros are kept: fixed width sorts as text.
    let t = OffsetDateTime::from_unix_timestamp_nanos(1_475_713_029_000_000_050).expect("time");
    assert_eq!(&timestamp(t), b"2016-10-06T00:17:09.000000050Z");
    // A time in another zone is written in UTC.
    let east = t.to_offset(time::UtcOffset::from_hms(2, 0, 0).expect("offset"));
    assert_eq!(&timestamp(east), b"2016-10-06T00:17:09.000000050Z");
    assert_eq!(parse_timestamp(&timestamp(t)), t);
}

#[tokio::test]
async fn records_have_the_cri_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("0.log");
    let (mut out, out_rx) = fifo(dir.path(), "stdout");
    let (mut err, err_rx) = fifo(dir.path(), "stderr");
    let before = OffsetDateTime::now_utc();
    let writer = LogWriter::start(&path, out_rx, Some(err_rx), 16 * 1024)
        .await
        .expect("start");
    assert_eq!(writer.path(), path);
    out.write_all(b"hello world\n").await.expect("write");
    err.write_all(b"oops\n").await.expect("write");
    drop((out, err));
    within("writer", writer.wait()).await.expect("wait");
    let after = OffsetDateTime::now_utc();

    let bytes = std::fs::read(&path).expect("read log");
    let mut lines: Vec<&[u8]> = bytes.split_inclusive(|&b| b == b'\n').collect();
    lines.sort_by_key(|l| &l[TIMESTAMP_LEN..]);
    assert_eq!(lines.len(), 2, "{bytes:?}");
    assert_eq!(&lines[0][TIMESTAMP_LEN..], b" stderr F oops\n");
    assert_eq!(&lines[1][TIMESTAMP_LEN..], b" stdout F hello world\n");
    for record in read_log(&path) {
        assert!(
            before <= record.time && record.time <= after,
            "{:?} outside [{before}, {after}]",
            record.time
        );
    }
}

#[tokio::test]
async fn long_lines_are_split_as_containerd_splits_them() {
    // containerd's own cases (pkg/cri/io/logger_test.go), by their facts.
    let max = GO_BUF * 4;
    let cases: Vec<(&str, Vec<u8>, i64, Vec<Short>)> = vec![
        (
            "two lines",
            b"test stdout log 1\ntest stdout log 2\n".to_vec(),
            max as i64,
            vec![full(b"test stdout log 1"), full(b"test stdout log 2")],
        ),
        (
            "log length equal to max length",
            [a(max), b"\n".to_vec(), a(max), b"\n".to_vec()].concat(),
            max as i64,
            vec![full(&a(max)), full(&a(max))],
        ),
        (
            "log length exceeds max length by 1",
            [a(max + 1), b"\n".to_vec(), a(max + 1), b"\n".to_vec()].concat(),
            max as i64,
            vec![part(&a(max)), full(b"a"), part(&a(max)), full(b"a")],
        ),
        (
            "log length twice max length and more",
            [a(max * 2), b"\n".to_vec(), a(max * 2 + 1), b"\n".to_vec()].concat(),
            max as i64,
            vec![
                part(&a(max)),
                full(&a(max)),
                part(&a(max)),
                part(&a(max)),
                full(b"a"),
            ],
        ),
        (
            "max length shorter than the read buffer",
            [
                a(GO_BUF * 3 / 2 + 10),
                b"\n".to_vec(),
                a(GO_BUF * 3 / 2 + 20),
                b"\n".to_vec(),
            ]
            .concat(),
            (GO_BUF / 2) as i64,
            vec![
                part(&a(GO_BUF / 2)),
                part(&a(GO_BUF / 2)),
                part(&a(GO_BUF / 2)),
                full(&a(10)),
                part(&a(GO_BUF / 2)),
                part(&a(GO_BUF / 2)),
                part(&a(GO_BUF / 2)),
                full(&a(20)),
            ],
        ),
        (
            "max length not a multiple of the read buffer",
            [
                a(GO_BUF * 2 + 10),
                b"\n".to_vec(),
                a(GO_BUF * 2 + 20),
                b"\n".to_vec(),
            ]
            .concat(),
            (GO_BUF * 3 / 2) as i64,
            vec![
                part(&a(GO_BUF * 3 / 2)),
                full(&a(GO_BUF / 2 + 10)),
                part(&a(GO_BUF * 3 / 2)),
                full(&a(GO_BUF / 2 + 20)),
            ],
        ),
        (
            "no limit if max length is 0",
            [a(GO_BUF * 10 + 10), b"\n".to_vec()].concat(),
            0,
            vec![full(&a(GO_BUF * 10 + 10))],
        ),
        (
            "no limit if max length is negative",
            [a(GO_BUF * 10 + 20), b"\n".to_vec()].concat(),
            -1,
            vec![full(&a(GO_BUF * 10 + 20))],
        ),
        (
            "\\r\\n line ends are not content",
            [
                a(GO_BUF - 1),
                b"\r\n".to_vec(),
                a(GO_BUF - 1),
                b"\r\n".to_vec(),
            ]
            .concat(),
            -1,
            vec![full(&a(GO_BUF - 1)), full(&a(GO_BUF - 1))],
        ),
        (
            "a line of max length ending \\r\\n is one full record",
            [a(8), b"\r\n".to_vec(), a(9), b"\r\n".to_vec()].concat(),
            8,
            vec![full(&a(8)), part(&a(8)), full(b"a")],
        ),
        (
            "other carriage returns are content",
            b"progress 10%\rprogress 20%\r\r\n\rx\n".to_vec(),
            -1,
            vec![full(b"progress 10%\rprogress 20%\r"), full(b"\rx")],
        ),
        (
            "empty lines are full records with no content",
            b"\n\r\nx\n\n".to_vec(),
            4,
            vec![full(b""), full(b""), full(b"x"), full(b"")],
        ),
    ];
    for (name, input, max_len, expected) in cases {
        let got = through_writer(&input, max_len).await;
        assert_eq!(got, expected, "case {name:?}");
    }
}

#[test]
fn records_do_not_depend_on_how_reads_fall() {
    // Every way of cutting the input into reads, including between "\r"
    // and "\n" and at the limit, gives the records of one read.
    let inputs: [&[u8]; 4] = [
        b"aaaa\r\nbbbbbbbbb\r\r\ncc\rdd\n\r\n\nabcd\r",
        b"aaa\r\r\naaaa\raaaa\r\n",
        b"\r\r\r\r\r\r\r\r\r\n",
        b"abcdefghijklmnopqrstuvwxyz",
    ];
    let now = timestamp(OffsetDateTime::now_utc());
    for input in inputs {
        for max_len in [None, Some(1), Some(3), Some(4), Some(5)] {
            let records = |sizes: usize| {
                let mut splitter = LineSplitter::new(b"stdout", max_len);
                let mut out = Vec::new();
                for read in input.chunks(sizes) {
                    splitter.feed(read, &now, &mut out);
                }
                splitter.finish(&now, &mut out);
                out
            };
            let whole = records(input.len());
            for size in 1..input.len() {
                assert_eq!(
                    parse_log(&records(size)),
                    parse_log(&whole),
                    "input {input:?}, max_len {max_len:?}, reads of {size}"
                );
            }
            // No record holds more than the limit.
            for record in parse_log(&whole) {
                assert!(record.content.len() <= max_len.unwrap_or(usize::MAX));
            }
        }
    }
}

#[tokio::test]
async fn bytes_are_kept_exactly_even_inside_a_character() {
    let line: Vec<u8> = [
        "éé€".as_bytes(),
        b"\0\x1b[31m\xff\xfe\t".as_slice(),
        "日本".as_bytes(),
    ]
    .concat();
    let got = through_writer(&[line.as_slice(), b"\n"].concat(), 3).await;
    // The first cut falls inside the second "é" (0xc3 0xa9), as
    // containerd's byte-count cut does; the format allows it.
    assert_eq!(got[0], part(&[0xc3, 0xa9, 0xc3]));
    assert!(got[..got.len() - 1].iter().all(|r| r.1 == 'P'));
    assert_eq!(got.last().map(|r| r.1), Some('F'));
    let joined: Vec<u8> = got.into_iter().flat_map(|r| r.2).collect();
    assert_eq!(joined, line);
}

#[tokio::test]
async fn interleaved_streams_never_tear_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("0.log");
    let (mut out, out_rx) = os_pipe();
    let (mut err, err_rx) = os_pipe();
    let writer = LogWriter::start(&path, out_rx, Some(err_rx), -1)
        .await
        .expect("start");
    // Lines up to 10 KiB: longer than PIPE_BUF, so the kernel itself
    // splits their writes and a line arrives over several reads.
    let line = |stream: &str, i: usize| -> Vec<u8> {
        let body = format!("{stream}-{i}-").repeat(1 + (i * 37) % 700);
        format!("{body}\n").into_bytes()
    };
    const LINES: usize = 400;
    let stdout = tokio::spawn(async move {
        for i in 0..LINES {
            out.write_all(&line("out", i)).await.expect("write stdout");
        }
    });
    let stderr = tokio::spawn(async move {
        for i in 0..LINES {
            err.write_all(&line("err", i)).await.expect("write stderr");
        }
    });
    within("stdout", stdout).await.expect("stdout writer");
    within("stderr", stderr).await.expect("stderr writer");
    within("writer", writer.wait()).await.expect("wait");

    let records = read_log(&path);
    assert_eq!(records.len(), 2 * LINES);
    let (mut next_out, mut next_err) = (0, 0);
    for record in records {
        assert_eq!(record.tag, 'F');
        let (next, short) = match record.stream.as_str() {
            "stdout" => (&mut next_out, "out"),
            _ => (&mut next_err, "err"),
        };
        let mut expected = line(short, *next);
        expected.pop();
        assert_eq!(record.content, expected, "{} line {next}", record.stream);
        *next += 1;
    }
    assert_eq!((next_out, next_err), (LINES, LINES));
}

#[tokio::test]
async fn eof_writes_the_unfinished_line_as_partial() {
    assert_eq!(
        through_writer(b"one\ntwo", -1).await,
        vec![full(b"one"), part(b"two")]
    );
    // Only a "\r" followed by "\n" is a line end.
    assert_eq!(
        through_writer(b"a\r\nb\r", -1).await,
        vec![full(b"a"), part(b"b\r")]
    );
    // The rest is still cut at the limit, every piece partial.
    assert_eq!(
        through_writer(b"abcdefghij", 4).await,
        vec![part(b"abcd"), part(b"efgh"), part(b"ij")]
    );
    // Ending after a newline adds nothing.
    assert_eq!(through_writer(b"x\n", -1).await, vec![full(b"x")]);
    assert_eq!(through_writer(b"", -1).await, vec![]);
}

#[tokio::test]
async fn a_tty_has_only_stdout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("0.log");
    let (mut pty, rx) = os_pipe();
    let writer = LogWriter::start(&path, rx, None, 16 * 1024)
        .await
        .expect("start");
    // A pty turns "\n" into "\r\n".
    pty.write_all(b"$ ls\r\nbin etc\r\n").await.expect("write");
    drop(pty);
    within("writer", writer.wait()).await.expect("wait");
    let records: Vec<_> = read_log(&path)
        .into_iter()
        .map(|r| r.short().2.to_vec())
        .collect();
    assert_eq!(records, vec![b"$ ls".to_vec(), b"bin etc".to_vec()]);
}

#[tokio::test]
async fn reopen_after_rotation_switches_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("0.log");
    let rotated = dir.path().join("0.log.20240101-000000");
    let (mut out, out_rx) = os_pipe();
    let (mut err, err_rx) = os_pipe();
    let writer = LogWriter::start(&path, out_rx, Some(err_rx), -1)
        .await
        .expect("start");
    let reopener = writer.reopener();

    out.write_all(b"before 1\nbefore 2\n").await.expect("write");
    err.write_all(b"before 3\n").await.expect("write");
    until_records(&path, 3).await;
    // A line in progress at the rotation.
    out.write_all(b"spanning ").await.expect("write");
    tokio::time::sleep(Duration::from_millis(20)).await;

    // The kubelet renames, then asks for a reopen.
    std::fs::rename(&path, &rotated).expect("rotate");
    within("reopen", reopener.clone().reopen())
        .await
        .expect("reopen");
    assert!(path.exists(), "reopen made a new file");

    out.write_all(b"the rotation\nafter 1\n")
        .await
        .expect("write");
    err.write_all(b"after 2\n").await.expect("write");
    drop((out, err));
    within("writer", writer.wait()).await.expect("wait");

    let contents = |path: &Path| -> Vec<Vec<u8>> {
        let mut c: Vec<_> = read_log(path).into_iter().map(|r| r.content).collect();
        c.sort();
        c
    };
    assert_eq!(
        contents(&rotated),
        vec![
            b"before 1".to_vec(),
            b"before 2".to_vec(),
            b"before 3".to_vec()
        ]
    );
    // The line in progress went whole into the new file.
    assert_eq!(
        contents(&path),
        vec![
            b"after 1".to_vec(),
            b"after 2".to_vec(),
            b"spanning the rotation".to_vec()
        ]
    );
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, LOG_FILE_MODE & !umask(), "{mode:o}");
}

#[tokio::test]
async fn reopen_after_the_writer_ended_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("0.log");

    // The container's output ended.
    let (out, rx) = os_pipe();
    let writer = LogWriter::start(&path, rx, None, -1).await.expect("start");
    let reopener = writer.reopener();
    drop(out);
    within("writer", writer.wait()).await.expect("wait");
    let err = reopener
        .reopen()
        .await
        .expect_err("reopen of an ended writer");
    assert_eq!(err.kind(), Kind::FailedPrecondition);
    assert_eq!(
        err.to_string(),
        format!(
            "reopen container log {}: container is not running",
            path.display()
        )
    );

    // The writer was stopped, its output still open.
    let (_out, rx) = os_pipe();
    let writer = LogWriter::start(&path, rx, None, -1).await.expect("start");
    let reopener = writer.reopener();
    writer.stop();
    let err = reopener
        .reopen()
        .await
        .expect_err("reopen of a stopped writer");
    assert_eq!(err.kind(), Kind::FailedPrecondition);
    within("writer", writer.wait()).await.expect("wait");
}

#[tokio::test]
async fn a_failed_reopen_keeps_writing_the_old_file() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("pod_uid").join("app");
    std::fs::create_dir_all(&dir).expect("log dir");
    let path = dir.join("0.log");
    let (mut out, rx) = os_pipe();
    let writer = LogWriter::start(&path, rx, None, -1).await.expect("start");
    out.write_all(b"one\n").await.expect("write");
    until_records(&path, 1).await;

    // The pod's log dir goes away (it moves, so the open file survives).
    let moved = root.path().join("moved");
    std::fs::rename(dir.parent().expect("pod dir"), &moved).expect("move pod dir");
    let err = writer.reopener().reopen().await.expect_err("reopen");
    assert_eq!(err.kind(), Kind::FailedPrecondition);
    assert!(
        err.to_string().contains(&dir.display().to_string()),
        "{err}"
    );

    out.write_all(b"two\n").await.expect("write");
    drop(out);
    within("writer", writer.wait()).await.expect("wait");
    let records: Vec<_> = read_log(&moved.join("app").join("0.log"))
        .into_iter()
        .map(|r| r.content)
        .collect();
    assert_eq!(records, vec![b"one".to_vec(), b"two".to_vec()]);
}

#[tokio::test]
async fn a_missing_log_dir_is_an_error_naming_it() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("ns_pod_uid").join("app");
    let path = dir.join("0.log");
    let (_out, rx) = os_pipe();
    let err = LogWriter::start(&path, rx, None, -1)
        .await
        .expect_err("start without a log dir");
    assert_eq!(err.kind(), Kind::FailedPrecondition);
    assert_eq!(
        err.to_string(),
        format!(
            "container log directory {} of {} does not exist",
            dir.display(),
            path.display()
        )
    );
    assert!(!dir.exists(), "the writer does not make the kubelet's dir");
}

#[tokio::test]
async fn a_relative_log_path_is_rejected() {
    let (_out, rx) = os_pipe();
    let err = LogWriter::start("pods/0.log", rx, None, -1)
        .await
        .expect_err("relative path");
    assert_eq!(err.kind(), Kind::InvalidArgument);
    assert!(err.to_string().contains("pods/0.log"), "{err}");
}

/// The process's umask, read without changing it (Linux 4.7+).
fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .expect("Umask in /proc/self/status");
    u32::from_str_radix(line.trim(), 8).expect("octal umask")
}

#[tokio::test]
async fn the_log_is_created_0640_and_appended_to() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("0.log");
    for (n, line) in [b"first\n", b"again\n"].into_iter().enumerate() {
        let (mut out, rx) = os_pipe();
        let writer = LogWriter::start(&path, rx, None, -1).await.expect("start");
        out.write_all(line).await.expect("write");
        drop(out);
        within("writer", writer.wait()).await.expect("wait");
        assert_eq!(read_log(&path).len(), n + 1, "existing records are kept");
    }
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, LOG_FILE_MODE & !umask(), "{mode:o}");
    assert_eq!(LOG_FILE_MODE, 0o640);
}

#[tokio::test]
async fn stop_ends_without_eof_and_keeps_the_cut_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("0.log");
    let (mut out, out_rx) = os_pipe();
    let (_err, err_rx) = os_pipe();
    let writer = LogWriter::start(&path, out_rx, Some(err_rx), -1)
        .await
        .expect("start");
    out.write_all(b"done\ncut sh").await.expect("write");
    until_records(&path, 1).await;
    writer.stop();
    within("writer", writer.wait()).await.expect("wait");
    let records: Vec<_> = read_log(&path)
        .iter()
        .map(|r| (r.tag, r.content.clone()))
        .collect();
    assert_eq!(
        records,
        vec![('F', b"done".to_vec()), ('P', b"cut sh".to_vec())]
    );
    // The writer dropped its read ends: the container would get EPIPE.
    let err = out
        .write_all(b"more\n")
        .await
        .expect_err("write after stop");
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
}

#[tokio::test]
async fn write_failures_do_not_stop_the_draining() {
    // Every write to /dev/full fails with ENOSPC, like a full disk.
    let (mut out, rx) = os_pipe();
    let writer = LogWriter::start("/dev/full", rx, None, -1)
        .await
        .expect("start");
    // Far more than a pipe holds: this only finishes if the writer keeps
    // reading after its writes fail.
    let line = [a(1023), b"\n".to_vec()].concat();
    within("feeding 4 MiB", async {
        for _ in 0..4096 {
            out.write_all(&line).await.expect("write to pipe");
        }
    })
    .await;
    drop(out);
    let err = within("writer", writer.wait())
        .await
        .expect_err("writes to /dev/full");
    assert_eq!(err.kind(), Kind::Unavailable);
    assert!(
        err.to_string()
            .starts_with("write container log /dev/full: "),
        "{err}"
    );
}
