//! The server's connections over real sockets: the header, body and idle timeouts, the bound
//! on connections with 300 stalled clients, 413 on a declared `Content-Length` before any body
//! (and before `100 Continue`), `Connection: close` on a refusal that leaves the body unread,
//! and the latency of small blob reads on a kept-alive connection (`TCP_NODELAY`).
//!
//! The clients are plain `std::net::TcpStream`s writing HTTP/1.1 by hand, so that a test can
//! stop in the middle of a request. Timeouts are a second in most tests, so the bounds checked
//! are coarse: "closed after about a second, well before the default".

mod serving;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ocistore_server::Config;
use serde_json::Value;
use serving::{Served, read};
use ureq::http;

/// Timeouts of a second, so that the tests are quick.
fn quick() -> Config {
    let mut config = Config::default();
    config.header_timeout = Duration::from_secs(1);
    config.body_timeout = Duration::from_secs(1);
    config.idle_timeout = Duration::from_secs(1);
    config
}

fn start(config: Config) -> Served {
    Served::start_with(config, |b| b)
}

/// A response read off a raw connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn code(&self) -> String {
        let json: Value = serde_json::from_slice(&self.body).unwrap();
        json["errors"][0]["code"].as_str().unwrap().to_owned()
    }
}

/// A hand-written HTTP/1.1 client on one connection.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).unwrap();
    }

    /// Reads more; false at the end of the connection (or a reset).
    fn fill(&mut self) -> bool {
        let mut chunk = [0; 64 << 10];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                panic!("nothing from the server for 10 s")
            }
            Err(_) => false,
        }
    }

    /// The next response (a `100 Continue` too), or `None` if the connection closed first.
    fn answer(&mut self) -> Option<Answer> {
        let end = loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            if !self.fill() {
                return None;
            }
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).unwrap();
        self.buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap()[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        while self.buf.len() < length {
            assert!(self.fill(), "the connection closed inside a body");
        }
        let body = self.buf.drain(..length).collect();
        Some(Answer {
            status,
            headers,
            body,
        })
    }

    /// Waits until the server closes the connection; how long that took. Panics if it sends
    /// anything.
    fn closed_after(&mut self) -> Duration {
        let start = Instant::now();
        let mut chunk = [0; 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => start.elapsed(),
            Ok(n) => panic!("the server sent {:?}", String::from_utf8_lossy(&chunk[..n])),
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                panic!("the connection is still open after 10 s")
            }
            Err(_) => start.elapsed(),
        }
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: registry\r\n\r\n")
}

#[track_caller]
/// A body that stalls is answered 408 `REQUEST_TIMEOUT` after the body timeout (1 s in
/// these tests), with `Connection: close`, and the connection is closed right after (the
/// lingering close ends once the client stays quiet).
fn assert_cut_off_with_408(c: &mut Raw) {
    let start = Instant::now();
    let answer = c.answer().expect("an answer");
    assert_about(start.elapsed(), Duration::from_secs(1));
    assert_eq!(answer.status, 408, "{answer:?}");
    assert_eq!(answer.code(), "REQUEST_TIMEOUT");
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(c.closed_after() < Duration::from_secs(2));
}

fn assert_about(elapsed: Duration, expected: Duration) {
    assert!(
        elapsed >= expected.mul_f64(0.8) && elapsed <= expected + Duration::from_millis(1500),
        "{elapsed:?}, expected about {expected:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Timeouts

#[test]
fn half_a_request_head_is_cut_off_at_the_header_timeout() {
    let s = start(quick());
    let mut c = Raw::connect(s.addr);
    c.send("GET /v2/ HTTP/1.1\r\nHost: registry\r\nUser-Agent: sl");
    assert_about(c.closed_after(), Duration::from_secs(1));

    // Nothing at all: the same.
    let mut c = Raw::connect(s.addr);
    assert_about(c.closed_after(), Duration::from_secs(1));

    // A head sent a byte at a time, slower than the timeout allows, is cut off at the timeout
    // from its first byte however often bytes come.
    let mut c = Raw::connect(s.addr);
    c.stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = Instant::now();
    let head =
        b"GET /v2/ HTTP/1.1\r\nHost: registry\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let mut closed = None;
    for byte in head {
        if c.stream.write_all(&[*byte]).is_err() {
            closed = Some(start.elapsed());
            break;
        }
        let mut chunk = [0; 64];
        match c.stream.read(&mut chunk) {
            Ok(0) => {
                closed = Some(start.elapsed());
                break;
            }
            Ok(n) => panic!("answered {:?}", String::from_utf8_lossy(&chunk[..n])),
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {}
            Err(_) => {
                closed = Some(start.elapsed());
                break;
            }
        }
    }
    let closed = closed.expect("a slow head was served");
    assert_about(closed, Duration::from_secs(1));
}

#[test]
fn a_stalled_manifest_body_is_cut_off_with_408() {
    let s = start(quick());
    let mut c = Raw::connect(s.addr);
    c.send(
        "PUT /v2/team/app/manifests/v1 HTTP/1.1\r\nHost: registry\r\n\
         Content-Type: application/vnd.oci.image.manifest.v1+json\r\n\
         Content-Length: 100\r\n\r\n{\"schemaVersion\":",
    );
    assert_cut_off_with_408(&mut c);
    assert!(
        s.registry
            .repository("team/app")
            .unwrap()
            .manifests(&Default::default())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_stalled_patch_body_is_cut_off_with_408_and_the_session_keeps_what_came() {
    let s = start(quick());
    let started = read(
        s.agent
            .post(format!("{}/v2/team/app/blobs/uploads/", s.base))
            .send_empty()
            .unwrap(),
    );
    assert_eq!(started.status, 202);
    let location = started.headers["location"].to_str().unwrap().to_owned();
    let mut c = Raw::connect(s.addr);
    c.send(format!(
        "PATCH {location} HTTP/1.1\r\nHost: registry\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n"
    ));
    c.send([7u8; 100]);
    assert_cut_off_with_408(&mut c);
    // The 100 bytes that came are in the session: the client can resume after them.
    let status = read(s.agent.get(format!("{}{location}", s.base)).call().unwrap());
    assert_eq!(status.status, 204);
    assert_eq!(status.headers["range"], "0-99");
}

#[test]
fn a_kept_alive_connection_is_closed_after_the_idle_timeout_not_the_header_timeout() {
    // Idle 1 s, header 3 s: closed after about 1 s of idleness.
    let mut config = quick();
    config.header_timeout = Duration::from_secs(3);
    let s = start(config);
    let mut c = Raw::connect(s.addr);
    c.send(get("/v2/"));
    assert_eq!(c.answer().unwrap().status, 200);
    assert_about(c.closed_after(), Duration::from_secs(1));

    // Header 1 s, idle 3 s: a connection idle for 1.5 s still serves its next request.
    let mut config = quick();
    config.idle_timeout = Duration::from_secs(3);
    let s = start(config);
    let mut c = Raw::connect(s.addr);
    c.send(get("/v2/"));
    assert_eq!(c.answer().unwrap().status, 200);
    std::thread::sleep(Duration::from_millis(1500));
    c.send(get("/v2/"));
    let answer = c
        .answer()
        .expect("the kept-alive connection was closed early");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("connection"), None);
    assert_about(c.closed_after(), Duration::from_secs(3));
}

// ---------------------------------------------------------------------------------------------
// The bound on connections

/// Opens 300 connections that stall: 100 that send nothing, 100 that send half a request head,
/// 100 that send a manifest PUT's head and half its body.
fn stall_300(addr: SocketAddr) -> Vec<TcpStream> {
    let mut stalled = Vec::new();
    for i in 0..300 {
        let mut c = TcpStream::connect(addr).unwrap();
        match i % 3 {
            0 => {}
            1 => c
                .write_all(b"GET /v2/ HTTP/1.1\r\nHost: registry\r\n")
                .unwrap(),
            _ => c
                .write_all(
                    b"PUT /v2/team/app/manifests/v1 HTTP/1.1\r\nHost: registry\r\n\
                      Content-Length: 1000\r\n\r\n{\"schemaVersion\":",
                )
                .unwrap(),
        }
        stalled.push(c);
    }
    stalled
}

/// Three `GET /v2/` on new connections, each answered within 2 s.
#[track_caller]
fn gets_go_through(addr: SocketAddr) {
    for _ in 0..3 {
        let start = Instant::now();
        let mut c = Raw::connect(addr);
        c.send(get("/v2/"));
        let answer = c.answer().expect("the GET was dropped");
        assert_eq!(answer.status, 200);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "GET /v2/ took {:?} beside 300 stalled clients",
            start.elapsed()
        );
    }
}

#[test]
fn three_hundred_stalled_clients_do_not_stop_a_get() {
    ocistore_server::raise_open_file_limit();
    // The default timeouts (10 s, 30 s): what lets the GET through is not that the stalled
    // clients time out.
    let s = start(Config::default());
    let _stalled = stall_300(s.addr);
    gets_go_through(s.addr);
}

#[test]
fn at_the_bound_on_connections_stalled_clients_are_evicted_for_new_ones() {
    ocistore_server::raise_open_file_limit();
    // 64 connections at most, as a low limit on descriptors gives: most of the 300 stalled
    // clients are evicted, the idle and half-headed ones first.
    let mut config = Config::default();
    config.max_connections = 64;
    let s = start(config);
    let mut stalled = stall_300(s.addr);
    gets_go_through(s.addr);
    // The evicted ones were closed: at least 300 - 64 of them.
    let mut closed = 0;
    for c in &mut stalled {
        c.set_nonblocking(true).unwrap();
        let mut chunk = [0; 1024];
        match c.read(&mut chunk) {
            Ok(0) => closed += 1,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Ok(_) | Err(_) => closed += 1,
        }
    }
    assert!(
        closed >= 300 - 64,
        "only {closed} stalled clients were closed"
    );
}

/// The server's binary under a limit of 256 open descriptors (soft and hard, so that it cannot
/// raise it), as the report of the problem had it: its default bound is then 96 connections.
#[cfg(target_os = "linux")]
#[test]
fn three_hundred_stalled_clients_do_not_stop_a_get_under_a_256_descriptor_limit() {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    ocistore_server::raise_open_file_limit();
    let dir = serving::tempdir();
    let mut command = Command::new(env!("CARGO_BIN_EXE_ocistore-server"));
    command
        .arg("--store")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 256,
                rlim_max: 256,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut server = command.spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("{line:?}"))
        .parse()
        .unwrap();
    let stalled = stall_300(addr);
    let outcome = std::panic::catch_unwind(|| gets_go_through(addr));
    drop(stalled);
    server.kill().unwrap();
    server.wait().unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

// ---------------------------------------------------------------------------------------------
// Declared lengths, 100 Continue, Connection: close

#[test]
fn n4_a_manifest_put_declaring_10_gib_is_413_at_once_and_gets_no_100_continue() {
    let s = start(Config::default());
    // With Expect: 100-continue the client sends the head only and waits.
    let mut c = Raw::connect(s.addr);
    let start = Instant::now();
    c.send(
        "PUT /v2/team/app/manifests/v1 HTTP/1.1\r\nHost: registry\r\n\
         Content-Type: application/vnd.oci.image.manifest.v1+json\r\n\
         Content-Length: 10737418240\r\nExpect: 100-continue\r\n\r\n",
    );
    let answer = c.answer().unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(answer.status, 413, "{answer:?}");
    assert_eq!(answer.code(), "MANIFEST_INVALID");
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(c.closed_after() < Duration::from_secs(3));

    // Without it, two bytes of the body sent: 413 at once all the same.
    let mut c = Raw::connect(s.addr);
    let start = Instant::now();
    c.send(
        "PUT /v2/team/app/manifests/v1 HTTP/1.1\r\nHost: registry\r\n\
         Content-Type: application/vnd.oci.image.manifest.v1+json\r\n\
         Content-Length: 10737418240\r\n\r\n{}",
    );
    let answer = c.answer().unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(answer.status, 413);

    // The administrative API's limit is 1 MiB.
    let mut c = Raw::connect(s.addr);
    c.send(
        "POST /admin/gc HTTP/1.1\r\nHost: registry\r\nContent-Type: application/json\r\n\
         Content-Length: 2097152\r\nExpect: 100-continue\r\n\r\n",
    );
    let answer = c.answer().unwrap();
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (413, "INVALID_REQUEST")
    );

    // Under the limit, Expect: 100-continue gets its 100 once the handler reads the body.
    let mut c = Raw::connect(s.addr);
    let body = br#"{"dry_run":true}"#;
    c.send(format!(
        "POST /admin/gc HTTP/1.1\r\nHost: registry\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    ));
    assert_eq!(c.answer().unwrap().status, 100);
    c.send(body);
    let answer = c.answer().unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("connection"), None);
}

#[test]
fn a_refusal_that_leaves_the_body_unread_says_connection_close_and_closes() {
    let s = start(Config::default());
    let started = read(
        s.agent
            .post(format!("{}/v2/team/app/blobs/uploads/", s.base))
            .send_empty()
            .unwrap(),
    );
    let location = started.headers["location"].to_str().unwrap().to_owned();
    let mut c = Raw::connect(s.addr);
    // A chunk that does not start at the session's offset: 416, body unread.
    c.send(format!(
        "PATCH {location} HTTP/1.1\r\nHost: registry\r\nContent-Range: 5-14\r\n\
         Content-Length: 10\r\n\r\n0123456789"
    ));
    let answer = c.answer().unwrap();
    assert_eq!(answer.status, 416);
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(c.closed_after() < Duration::from_secs(3));

    // A request whose body is read keeps its connection.
    let mut c = Raw::connect(s.addr);
    c.send(format!(
        "PATCH {location} HTTP/1.1\r\nHost: registry\r\nContent-Range: 0-9\r\n\
         Content-Length: 10\r\n\r\n0123456789"
    ));
    let answer = c.answer().unwrap();
    assert_eq!(answer.status, 202);
    assert_eq!(answer.header("connection"), None);
    c.send(get("/v2/"));
    assert_eq!(c.answer().unwrap().status, 200);
}

// ---------------------------------------------------------------------------------------------
// Latency

/// The median time of 20 GETs of `path` over one kept-alive connection.
fn median_get(addr: SocketAddr, path: &str, size: usize) -> Duration {
    let mut c = Raw::connect(addr);
    let mut times = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        c.send(get(path));
        let answer = c.answer().unwrap();
        times.push(start.elapsed());
        assert_eq!((answer.status, answer.body.len()), (200, size));
    }
    times.sort();
    times[times.len() / 2]
}

#[test]
fn small_blob_gets_on_a_kept_alive_connection_do_not_wait_for_delayed_acks() {
    let s = start(Config::default());
    // 1,000 bytes (read whole, sent with the head) and 100 KiB (streamed after the head).
    for size in [1000, 100 << 10] {
        let bytes: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let digest = ocistore::Algorithm::Sha256.digest(&bytes).to_string();
        let pushed = s
            .agent
            .run(
                http::Request::post(format!(
                    "{}/v2/team/app/blobs/uploads/?digest={digest}",
                    s.base
                ))
                .body(bytes)
                .unwrap(),
            )
            .unwrap();
        assert_eq!(pushed.status(), 201);
        let median = median_get(s.addr, &format!("/v2/team/app/blobs/{digest}"), size);
        // A delayed ACK costs some 40 ms; loopback without it well under 1 ms. A coarse bound,
        // for a busy machine: the figure is the benchmark's (examples/small_blob_pulls.rs).
        assert!(
            median < Duration::from_millis(20),
            "median GET of {size} bytes {median:?}"
        );
    }
}
