//! The object-store servers that the tests of blob storage on object stores run against: Azurite
//! (Azure Blob Storage's emulator) and moto's server (S3), both in memory on loopback, installed
//! and started by `.ci/object-servers start` (CI's `.ci/run` starts them before `cargo test`).
//!
//! [`azurite`] and [`s3`] return where they listen — `OCISTORE_AZURITE_URL` and
//! `OCISTORE_S3_URL`, by default `http://127.0.0.1:10000` and `http://127.0.0.1:5000` — after
//! checking that an HTTP server answers there, and **panic** otherwise, naming the command that
//! starts them: a test of an object store never passes by skipping. The check runs once per
//! process and server; every later call returns the same answer at once.
//!
//! Both servers have a container (Azurite) and a bucket (moto) named [`CONTAINER`], created by
//! the script; tests share it and keep apart by [`Endpoint::unique_prefix`].
//!
//! ```no_run
//! let azure = ocistore_testkit::servers::azurite();
//! let prefix = azure.unique_prefix(); // "test-3f2a…": this test's keys start with it
//! assert_eq!(azure.container, "ocistore");
//! ```

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::OnceLock;
use std::time::Duration;

/// The environment variable naming Azurite's URL (`http://HOST:PORT`).
pub const AZURITE_URL_VAR: &str = "OCISTORE_AZURITE_URL";
/// The environment variable naming moto's S3 URL (`http://HOST:PORT`).
pub const S3_URL_VAR: &str = "OCISTORE_S3_URL";
/// Azurite's URL when [`AZURITE_URL_VAR`] is unset or empty: its blob service's default port.
pub const DEFAULT_AZURITE_URL: &str = "http://127.0.0.1:10000";
/// moto's URL when [`S3_URL_VAR`] is unset or empty: moto_server's default port.
pub const DEFAULT_S3_URL: &str = "http://127.0.0.1:5000";
/// The container (Azurite) and the bucket (moto) that `.ci/object-servers start` creates.
pub const CONTAINER: &str = "ocistore";
/// The command that installs and starts both servers, from the workspace's root.
pub const START_COMMAND: &str = ".ci/object-servers start";
/// How long a probe waits to connect, and then for the first bytes of an answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// A server that answered: where it listens and the container or bucket to use there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The server's URL, `http://HOST:PORT` without a trailing slash, e.g.
    /// `http://127.0.0.1:10000`.
    pub url: String,
    /// The container (Azure) or bucket (S3) that exists there: [`CONTAINER`].
    pub container: String,
}

impl Endpoint {
    /// A fresh key prefix for one test, `test-` and 32 hex digits of a random UUID (no trailing
    /// slash): tests sharing the container keep apart by it.
    pub fn unique_prefix(&self) -> String {
        format!("test-{}", uuid::Uuid::new_v4().simple())
    }
}

/// Azurite's blob service: [`AZURITE_URL_VAR`] or [`DEFAULT_AZURITE_URL`], checked once per
/// process.
///
/// # Panics
///
/// When nothing answers HTTP there, with a message naming [`START_COMMAND`].
pub fn azurite() -> Endpoint {
    static AZURITE: OnceLock<Result<Endpoint, String>> = OnceLock::new();
    cached(&AZURITE, "Azurite", AZURITE_URL_VAR, DEFAULT_AZURITE_URL)
}

/// moto's S3 server: [`S3_URL_VAR`] or [`DEFAULT_S3_URL`], checked once per process.
///
/// # Panics
///
/// When nothing answers HTTP there, with a message naming [`START_COMMAND`].
pub fn s3() -> Endpoint {
    static S3: OnceLock<Result<Endpoint, String>> = OnceLock::new();
    cached(&S3, "moto (S3)", S3_URL_VAR, DEFAULT_S3_URL)
}

fn cached(
    cell: &OnceLock<Result<Endpoint, String>>,
    name: &str,
    var: &str,
    default: &str,
) -> Endpoint {
    let found = cell.get_or_init(|| {
        let url = std::env::var(var)
            .ok()
            .filter(|url| !url.is_empty())
            .unwrap_or_else(|| default.to_owned());
        probe(name, &url).map(|()| endpoint(&url))
    });
    match found {
        Ok(endpoint) => endpoint.clone(),
        Err(message) => panic!("{message}"),
    }
}

fn endpoint(url: &str) -> Endpoint {
    Endpoint {
        url: url.trim_end_matches('/').to_owned(),
        container: CONTAINER.to_owned(),
    }
}

/// The server `name` at `url`, checked now (not cached): [`azurite`] and [`s3`] for a URL of
/// your own.
///
/// # Panics
///
/// When [`probe`] fails, with its message.
pub fn require(name: &str, url: &str) -> Endpoint {
    match probe(name, url) {
        Ok(()) => endpoint(url),
        Err(message) => panic!("{message}"),
    }
}

/// Whether an HTTP server answers at `url` (`http://HOST:PORT`): a `GET /` that any HTTP
/// response satisfies, whatever its status. The error is the message [`azurite`] and [`s3`]
/// panic with, e.g. `Azurite is not answering at http://127.0.0.1:10000 (connection refused):
/// start it with .ci/object-servers start`.
pub fn probe(name: &str, url: &str) -> Result<(), String> {
    let root = format!("{}/", url.trim_end_matches('/'));
    status(&root).map(drop).map_err(|why| {
        format!("{name} is not answering at {url} ({why}): start it with {START_COMMAND}")
    })
}

/// The status code of an HTTP/1.1 `GET` of `url` (`http://HOST:PORT/PATH?QUERY`; no TLS), with
/// [`PROBE_TIMEOUT`] to connect and to read; the body is not read. The error says what went
/// wrong: `connection refused`, `timed out`, not an HTTP answer…
pub fn status(url: &str) -> Result<u16, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http:// URL: {url}"))?;
    let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let target = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let addrs: Vec<_> = target
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .collect();
    let mut last = String::from("no address");
    for addr in addrs {
        match get(addr, authority, &path) {
            Ok(code) => return Ok(code),
            Err(e) => last = describe(&e),
        }
    }
    Err(last)
}

fn get(addr: std::net::SocketAddr, authority: &str, path: &str) -> io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: ocistore-testkit\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n"
    )?;
    stream.flush()?;
    // The status line: "HTTP/1.1 200 OK".
    let mut head = Vec::new();
    let mut buf = [0; 256];
    while head.len() < 12 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let not_http = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "not an HTTP answer: {:?}",
                line.lines().next().unwrap_or("")
            ),
        )
    };
    if !line.starts_with("HTTP/1.") {
        return Err(not_http());
    }
    line.get(9..12)
        .and_then(|code| code.parse().ok())
        .ok_or_else(not_http)
}

fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::TimedOut => e.kind().to_string(),
        // A read timeout on Unix.
        io::ErrorKind::WouldBlock => format!("no answer within {PROBE_TIMEOUT:?}"),
        _ => e.to_string(),
    }
}

/// The well-known key of Azurite's account `devstoreaccount1` (Microsoft's documentation).
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The `--blobs` URL of a place on Azurite: container [`CONTAINER`], `prefix`, parts of
/// `part_size` bytes, with the account, key and endpoint as options (no environment needed, so
/// a child process takes it as it is).
pub fn azurite_url(prefix: &str, part_size: usize) -> String {
    let endpoint = azurite().url;
    format!(
        "az://{CONTAINER}/{prefix}?endpoint={endpoint}/devstoreaccount1&account_name=devstoreaccount1\
         &access_key={AZURITE_KEY}&allow_http=true&part_size={part_size}"
    )
}

/// The `--blobs` URL of a place on moto's S3: bucket [`CONTAINER`], `prefix`, parts of
/// `part_size` bytes (S3 takes 5 MiB and more), with the endpoint and a dummy key.
pub fn s3_url(prefix: &str, part_size: usize) -> String {
    let endpoint = s3().url;
    format!(
        "s3://{CONTAINER}/{prefix}?endpoint={endpoint}&allow_http=true&region=us-east-1\
         &access_key_id=test&secret_access_key=test&part_size={part_size}"
    )
}

/// An empty place on Azurite (a fresh prefix) for blobs, with parts of `part_size` bytes.
///
/// # Panics
///
/// When Azurite does not answer (see [`azurite`]).
pub fn azurite_blobs(part_size: usize) -> ocistore::ObjectStoreBlobs {
    open_url(&azurite_url(&azurite().unique_prefix(), part_size))
}

/// An empty place on moto's S3 (a fresh prefix) for blobs, with parts of `part_size` bytes.
///
/// # Panics
///
/// When moto does not answer (see [`s3`]).
pub fn s3_blobs(part_size: usize) -> ocistore::ObjectStoreBlobs {
    open_url(&s3_url(&s3().unique_prefix(), part_size))
}

/// A new client of the place `location` names (an `az://` or `s3://` location, as
/// [`BlobStore::location`](ocistore::BlobStore::location) gives it) on the test servers: what
/// another process, or the same after a restart, opens.
///
/// # Panics
///
/// For another kind of location, or when its server does not answer.
pub fn blobs_at(location: &str, part_size: usize) -> ocistore::ObjectStoreBlobs {
    let url = if let Some(rest) = location.strip_prefix(&format!("az://{CONTAINER}/")) {
        azurite_url(rest, part_size)
    } else if let Some(rest) = location.strip_prefix(&format!("s3://{CONTAINER}/")) {
        s3_url(rest, part_size)
    } else {
        panic!("not a location on the test servers: {location}")
    };
    open_url(&url)
}

/// A new client of the place `blobs` is on, as after a restart; for the in-memory store, whose
/// objects live only in it, `blobs` itself.
pub fn reopen(blobs: &ocistore::ObjectStoreBlobs) -> ocistore::ObjectStoreBlobs {
    use ocistore::BlobStore;
    let location = blobs.location();
    if location.starts_with("memory://") {
        return blobs.clone();
    }
    blobs_at(&location, blobs.part_size())
}

fn open_url(url: &str) -> ocistore::ObjectStoreBlobs {
    ocistore::ObjectStoreBlobs::from_url(url).unwrap_or_else(|e| panic!("{url}: {e}"))
}
