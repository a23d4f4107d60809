//! crictl's streaming commands against crated as a person uses them at a
//! terminal (a pty the test makes): `exec -it` (a prompt, a resize that
//! `stty size` sees, Ctrl-D to leave), `exec -i` with piped input,
//! `attach` (and leaving without stopping the container), `port-forward`
//! with HTTP through it; and what a client doing it wrong is told. All
//! inside a private network namespace on a CNI bridge.

#![allow(clippy::unwrap_used)]

mod common;
mod cri_support;

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crated_cri::runtime::v1 as cri;
use cri_support::{bridge_conflist, container_config, pod_config, start_container, Crictl, Node};

/// A terminal a command runs in, and what it has printed.
struct Pty {
    master: File,
    output: Arc<Mutex<Vec<u8>>>,
}

fn winsize(rows: u16, cols: u16) -> libc::winsize {
    libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl Pty {
    /// Starts `command` as the session leader of a new terminal of
    /// `rows`×`cols`.
    fn spawn(mut command: Command, rows: u16, cols: u16) -> (Child, Pty) {
        let (mut master, mut slave) = (0, 0);
        let size = winsize(rows, cols);
        // SAFETY: openpty writes two descriptors; the size is read only.
        let made = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        assert_eq!(made, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened and are ours.
        let (master, slave) = unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let io = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
        command
            .stdin(io(&slave))
            .stdout(io(&slave))
            .stderr(io(&slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("start in a terminal");
        drop(slave);
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            // EIO once the last process of the terminal is gone.
            while let Ok(n @ 1..) = reader.read(&mut chunk) {
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        (child, Pty { master, output })
    }

    fn type_in(&self, bytes: &[u8]) {
        (&self.master).write_all(bytes).unwrap();
    }

    /// Resizes the terminal; the kernel tells its foreground process.
    fn resize(&self, rows: u16, cols: u16) {
        let size = winsize(rows, cols);
        // SAFETY: TIOCSWINSZ reads a winsize.
        let done = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        assert_eq!(done, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Whether `needle` shows within `limit`.
    fn shows(&self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.text().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn expect(&self, needle: &str) {
        assert!(
            self.shows(needle, Duration::from_secs(20)),
            "{needle:?} never showed on the terminal:\n{}",
            self.text()
        );
    }
}

/// Waits up to `limit` for `child`; kills it and panics if it runs on.
fn wait_for_exit(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /` on 127.0.0.1:`port`; the whole response.
fn http_get(port: u16) -> std::io::Result<String> {
    let mut conn = TcpStream::connect(("127.0.0.1", port))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    conn.write_all(b"GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut response = String::new();
    conn.read_to_string(&mut response)?;
    Ok(response)
}

/// A raw HTTP request to the streaming server; (status, body).
fn raw_request(url: &str, headers: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut conn = TcpStream::connect(host).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        conn,
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n{headers}\r\n"
    )
    .unwrap();
    let mut response = String::new();
    let _ = conn.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn crictl_streams_like_a_terminal_session() {
    crated_testimages::in_private_netns(|| async {
        let ipam = tempfile::tempdir().unwrap();
        let node = Node::start(&[(
            "10-stream.conflist",
            bridge_conflist("stream", "10.88.12.0/24", ipam.path()),
        )])
        .await;
        node.pull_busybox().await;
        let mut runtime = node.runtime().await;
        let pod_config = pod_config("stream", node.logs.path(), false);
        let pod = node.run_pod(&mut runtime, &pod_config).await;
        let web = start_container(
            &mut runtime,
            &pod,
            &pod_config,
            container_config(
                "web",
                &node.busybox,
                &[
                    "sh",
                    "-c",
                    "mkdir -p /www && echo hello-through-port-forward > /www/index.html \
                     && exec httpd -f -p 8080 -h /www",
                ],
            ),
        )
        .await;
        let mut shell = container_config("shell", &node.busybox, &["sh"]);
        shell.tty = true;
        shell.stdin = true;
        let shell = start_container(&mut runtime, &pod, &pod_config, shell).await;

        // What a client doing it wrong is told, on the RPC and on the URL.
        let both = runtime
            .exec(cri::ExecRequest {
                container_id: web.clone(),
                cmd: vec!["true".into()],
                tty: true,
                stderr: true,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(both.code(), tonic::Code::InvalidArgument, "{both:?}");
        let gone = runtime
            .exec(cri::ExecRequest {
                container_id: "no-such-container".into(),
                cmd: vec!["true".into()],
                stdout: true,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(gone.code(), tonic::Code::NotFound, "{gone:?}");
        let url = runtime
            .exec(cri::ExecRequest {
                container_id: web.clone(),
                cmd: vec!["true".into()],
                stdout: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .url;

        let work = tempfile::tempdir().unwrap();
        let crictl = Crictl::new(&node, work.path());
        let shell_log = std::path::PathBuf::from(&pod_config.log_directory).join("shell.log");
        let checks = tokio::task::spawn_blocking(move || {
            // A URL is for one upgrade: a plain request is refused, and
            // the token is spent; an unknown token is not found.
            let (status, body) = raw_request(&url, "");
            assert_eq!(status, 400, "{body}");
            assert!(body.contains("upgrade"), "{body}");
            let (status, body) = raw_request(&url, "");
            assert_eq!(status, 404, "{body}");
            assert!(body.contains("unknown, used or expired"), "{body}");
            let (base, _) = url.rsplit_once('/').unwrap();
            let (status, _) = raw_request(&format!("{base}/not-a-token"), "");
            assert_eq!(status, 404);

            // exec -it: a prompt, the terminal's size, a resize, Ctrl-D.
            let (mut child, tty) =
                Pty::spawn(crictl.command(&["exec", "-it", &web, "sh"]), 40, 100);
            tty.expect("# ");
            tty.type_in(b"stty size\n");
            tty.expect("40 100");
            tty.resize(50, 120);
            let resized = (0..20).any(|_| {
                tty.type_in(b"stty size\n");
                tty.shows("50 120", Duration::from_millis(500))
            });
            assert!(resized, "stty never saw the resize:\n{}", tty.text());
            tty.type_in(b"\x04");
            let status =
                wait_for_exit(&mut child, Duration::from_secs(20), "exec -it after Ctrl-D");
            assert!(status.success(), "{status}:\n{}", tty.text());

            // exec -i: piped input reaches the process, and its end too.
            let mut child = crictl
                .command(&["exec", "-i", &web, "sh", "-c", "cat; echo done-$?"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"piped input\n")
                .unwrap();
            wait_for_exit(
                &mut child,
                Duration::from_secs(20),
                "exec -i after end of input",
            );
            let out = child.wait_with_output().unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                "piped input\ndone-0\n",
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );

            // An exit code comes back.
            let failed = crictl.run(&["exec", &web, "sh", "-c", "exit 3"]);
            assert!(!failed.status.success());
            let said = String::from_utf8_lossy(&failed.stderr);
            assert!(said.contains("exit code 3"), "{said}");

            // A client that goes away takes its exec with it.
            let (mut child, tty) = Pty::spawn(
                crictl.command(&["exec", "-it", &web, "sleep", "4242"]),
                24,
                80,
            );
            let running = |c: &Crictl| c.ok(&["exec", "-s", &web, "ps"]).contains("sleep 4242");
            let deadline = Instant::now() + Duration::from_secs(20);
            while !running(&crictl) {
                assert!(
                    Instant::now() < deadline,
                    "the exec never ran:\n{}",
                    tty.text()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            child.kill().unwrap();
            child.wait().unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            while running(&crictl) {
                assert!(Instant::now() < deadline, "the exec outlived its client");
                std::thread::sleep(Duration::from_millis(100));
            }

            // attach: two clients at once on the container's terminal;
            // what one types, both see.
            let attach = || Pty::spawn(crictl.command(&["attach", "-it", &shell]), 30, 90);
            let (mut first, one) = attach();
            let (mut second, two) = attach();
            // Keystrokes wait in the terminal until its attach connects;
            // the other may connect later and miss earlier output.
            let both = (0..40).find(|i| {
                one.type_in(format!("echo both-{i}-$((6*7))\n").as_bytes());
                two.shows(&format!("both-{i}-42"), Duration::from_millis(500))
            });
            assert!(
                both.is_some_and(|i| one.shows(&format!("both-{i}-42"), Duration::from_secs(5))),
                "the attaches never both saw the output:\n--- first ---\n{}\n--- second ---\n{}\n--- container log ---\n{}",
                one.text(),
                two.text(),
                std::fs::read_to_string(&shell_log).unwrap_or_default()
            );
            // Leaving (the client killed) does not stop the container, and
            // a later attach finds it.
            for child in [&mut first, &mut second] {
                child.kill().unwrap();
                child.wait().unwrap();
            }
            let state: serde_json::Value =
                serde_json::from_str(&crictl.ok(&["inspect", &shell])).unwrap();
            assert_eq!(state["status"]["state"], "CONTAINER_RUNNING", "{state}");
            let (mut third, three) = attach();
            three.type_in(b"echo again-$((2+2))\n");
            three.expect("again-4");
            third.kill().unwrap();
            third.wait().unwrap();

            // port-forward: HTTP through it, several connections at once.
            let local = free_port();
            let mut forward = crictl
                .command(&["port-forward", &pod, &format!("{local}:8080")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match http_get(local) {
                    Ok(r) if r.contains("hello-through-port-forward") => break,
                    other => assert!(
                        Instant::now() < deadline,
                        "no page through the forward: {other:?}"
                    ),
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let parallel: Vec<_> = (0..4)
                .map(|_| std::thread::spawn(move || http_get(local)))
                .collect();
            for request in parallel {
                let response = request.join().unwrap().unwrap();
                assert!(
                    response.contains("hello-through-port-forward"),
                    "{response}"
                );
            }
            forward.kill().unwrap();
            forward.wait().unwrap();

            // A port nobody listens on: the client is told why.
            let local = free_port();
            let mut forward = crictl
                .command(&["port-forward", &pod, &format!("{local}:9")])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            while TcpStream::connect(("127.0.0.1", local)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "crictl port-forward never listened"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            let response = http_get(local).unwrap_or_default();
            assert!(!response.contains("200"), "{response}");
            // Give the error time to arrive before stopping the client.
            std::thread::sleep(Duration::from_secs(1));
            forward.kill().unwrap();
            let out = forward.wait_with_output().unwrap();
            let said = String::from_utf8_lossy(&out.stderr);
            assert!(said.contains("connect to port 9"), "{said}");
        });
        checks.await.unwrap();
    });
}

/// The streaming server over TLS (`enable_tls_streaming`), as containerd
/// serves it: with a self-signed certificate made at start-up, or with
/// the `x509_key_pair_streaming` the node's operator gives, which clients
/// can verify. crictl execs through either.
#[test]
fn streaming_over_tls_with_a_self_signed_or_a_given_certificate() {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = crated_testimages::TestCerts::new(certs_dir.path()).unwrap();
    let given = format!(
        "x509_key_pair_streaming = {{ tls_cert_file = {:?}, tls_key_file = {:?} }}",
        certs.cert.display().to_string(),
        certs.key.display().to_string()
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    for keys in [
        vec!["enable_tls_streaming = true".to_owned()],
        vec!["enable_tls_streaming = true".to_owned(), given],
    ] {
        let self_signed = keys.len() == 1;
        rt.block_on(async {
            let node = Node::start_with(cri_support::NodeOptions {
                cri_keys: keys,
                ..Default::default()
            })
            .await;
            node.pull_busybox().await;
            let mut runtime = node.runtime().await;
            let (_, pod, app) = node.run_sleeping_pod(&mut runtime, "tls").await;
            let url = runtime
                .exec(cri::ExecRequest {
                    container_id: app.clone(),
                    cmd: vec!["true".into()],
                    stdout: true,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .url;
            assert!(url.starts_with("https://127.0.0.1:"), "{url}");
            let authority = url
                .trim_start_matches("https://")
                .split('/')
                .next()
                .unwrap()
                .to_owned();
            let work = tempfile::tempdir().unwrap();
            let crictl = Crictl::new(&node, work.path());
            let ca = certs.ca.clone();
            tokio::task::spawn_blocking(move || {
                let out = crictl.ok(&["exec", &app, "echo", "over-tls"]);
                assert_eq!(out.trim(), "over-tls");
                // The given certificate is the one served: it verifies
                // against its CA (the self-signed one does not).
                let verified = Command::new("openssl")
                    .args([
                        "s_client",
                        "-connect",
                        &authority,
                        "-verify_return_error",
                        "-CAfile",
                    ])
                    .arg(&ca)
                    .stdin(Stdio::null())
                    .output()
                    .unwrap();
                assert_eq!(
                    verified.status.success(),
                    !self_signed,
                    "{}",
                    String::from_utf8_lossy(&verified.stdout)
                );
            })
            .await
            .unwrap();
            cri_support::stop_and_remove_pod(&mut runtime, &pod).await;
        });
    }
}
