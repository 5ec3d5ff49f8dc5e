//! Small-blob pulls over one kept-alive connection: the latency of `GET /v2/<name>/blobs/<d>`
//! for a 1 KB blob (and, for comparison, 64 KiB, the largest blob sent with the response
//! head, and 1 MiB, streamed), with the machine's context.
//!
//! ```text
//! cargo run --release -p ocistore-server --example small_blob_pulls [-- --dir DIR] [--n N] [--no-nodelay]
//! cargo run --release -p ocistore-server --example small_blob_pulls -- --server HOST:PORT
//! ```
//!
//! The store is a fresh one in a temporary directory under `--dir` (default: the system's
//! temporary directory; the file system is printed: a benchmark of the disk path wants a disk,
//! not tmpfs). The server runs in-process on a multi-threaded tokio runtime, as the binary does;
//! the client is a plain blocking socket writing HTTP/1.1 by hand, one request at a time, and
//! reads each response whole before the next. `--no-nodelay` serves without `TCP_NODELAY`.
//! `--server` measures a server already running instead (an older build, say), after pushing
//! the blobs to it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ocistore::{Algorithm, Registry};
use ocistore_server::Config;

struct Args {
    dir: PathBuf,
    n: usize,
    nodelay: bool,
    server: Option<SocketAddr>,
}

fn args() -> Args {
    let mut args = Args {
        dir: std::env::temp_dir(),
        n: 10_000,
        nodelay: true,
        server: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--dir" => args.dir = it.next().expect("--dir DIR").into(),
            "--n" => args.n = it.next().expect("--n N").parse().expect("--n N"),
            "--no-nodelay" => args.nodelay = false,
            "--server" => {
                args.server = Some(it.next().expect("--server HOST:PORT").parse().unwrap());
            }
            other => panic!("unknown argument {other:?}"),
        }
    }
    args
}

/// The file system `dir` is on, by its magic number.
#[cfg(target_os = "linux")]
fn file_system(dir: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: statfs writes the struct it is given; the path is a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(path.as_ptr(), &raw mut st) } != 0 {
        return "unknown".to_owned();
    }
    #[allow(clippy::unnecessary_cast)]
    match st.f_type as i64 {
        0xEF53 => "ext4",
        0x0102_1994 => "tmpfs",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x794C_7630 => "overlayfs",
        0x0102_0304 => "ramfs",
        _ => "other",
    }
    .to_owned()
}

#[cfg(not(target_os = "linux"))]
fn file_system(_: &std::path::Path) -> String {
    "unknown".to_owned()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_owned())
        .unwrap_or_else(|_| std::env::consts::OS.to_owned());
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, kernel {kernel}, load average {load}")
}

/// Sends `request` and reads the response whole; its body length.
fn get(stream: &mut TcpStream, request: &[u8], buf: &mut Vec<u8>) -> usize {
    call(stream, request, buf, "HTTP/1.1 200")
}

fn call(stream: &mut TcpStream, request: &[u8], buf: &mut Vec<u8>, status: &str) -> usize {
    stream.write_all(request).unwrap();
    buf.clear();
    let mut chunk = [0; 64 << 10];
    loop {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "the server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).unwrap();
            assert!(head.starts_with(status), "{head}");
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().unwrap())
                })
                .unwrap();
            while buf.len() < end + 4 + length {
                let n = stream.read(&mut chunk).unwrap();
                assert!(n > 0, "the server closed the connection");
                buf.extend_from_slice(&chunk[..n]);
            }
            return length;
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let args = args();
    let sizes = [1000usize, 64 << 10, 1 << 20];
    let blobs: Vec<(Vec<u8>, String)> = sizes
        .iter()
        .map(|&size| {
            let bytes: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let digest = Algorithm::Sha256.digest(&bytes).to_string();
            (bytes, digest)
        })
        .collect();
    let digests: Vec<String> = blobs.iter().map(|(_, d)| d.clone()).collect();
    if let Some(addr) = args.server {
        // Someone else's server: push the blobs over HTTP, then measure.
        let mut stream = TcpStream::connect(addr).unwrap();
        let mut buf = Vec::new();
        for (bytes, digest) in &blobs {
            let mut request = format!(
                "POST /v2/bench/small/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: bench\r\n\
                 Content-Length: {}\r\n\r\n",
                bytes.len()
            )
            .into_bytes();
            request.extend_from_slice(bytes);
            call(&mut stream, &request, &mut buf, "HTTP/1.1 201");
        }
        println!("machine: {}", machine());
        println!("server: {addr}, already running");
        measure(addr, &sizes, &digests, args.n);
        return;
    }
    let dir = tempfile::tempdir_in(&args.dir).unwrap();
    let registry = Registry::open(dir.path()).unwrap();
    let repo = registry.repository("bench/small").unwrap();
    for (bytes, digest) in &blobs {
        repo.put_blob(&digest.parse().unwrap(), bytes).unwrap();
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut config = Config::default();
    config.tcp_nodelay = args.nodelay;
    let server = runtime.spawn(ocistore_server::serve_with(
        listener,
        registry.clone(),
        config,
        async {
            let _ = stopped.await;
        },
    ));

    println!("machine: {}", machine());
    println!(
        "store: {} ({}); server: in-process, {} build, TCP_NODELAY {}",
        dir.path().display(),
        file_system(dir.path()),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        if args.nodelay { "on" } else { "off" },
    );
    measure(addr, &sizes, &digests, args.n);
    let _ = stop.send(());
    runtime.block_on(server).unwrap().unwrap();
}

/// GETs of each blob over one kept-alive connection; prints a line of figures per size.
fn measure(addr: SocketAddr, sizes: &[usize], digests: &[String], n: usize) {
    println!("{n} GETs per size over one kept-alive loopback connection, after 200 to warm up\n");
    println!(
        "{:>9}  {:>9}  {:>9}  {:>9}  {:>9}  {:>11}",
        "blob", "p50", "p90", "p99", "max", "GETs/s"
    );
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut buf = Vec::new();
    for (size, digest) in sizes.iter().zip(digests) {
        let request = format!("GET /v2/bench/small/blobs/{digest} HTTP/1.1\r\nHost: bench\r\n\r\n");
        for _ in 0..200 {
            get(&mut stream, request.as_bytes(), &mut buf);
        }
        let mut times = Vec::with_capacity(n);
        let start = Instant::now();
        for _ in 0..n {
            let t = Instant::now();
            let length = get(&mut stream, request.as_bytes(), &mut buf);
            times.push(t.elapsed());
            assert_eq!(length, *size);
        }
        let total = start.elapsed();
        times.sort();
        println!(
            "{:>9}  {:>9.3?}  {:>9.3?}  {:>9.3?}  {:>9.3?}  {:>11.0}",
            match size {
                s if *s >= 1 << 20 => format!("{} MiB", s >> 20),
                s if *s >= 1 << 10 && s % 1024 == 0 => format!("{} KiB", s >> 10),
                s => format!("{s} B"),
            },
            percentile(&times, 0.5),
            percentile(&times, 0.9),
            percentile(&times, 0.99),
            times[times.len() - 1],
            n as f64 / total.as_secs_f64(),
        );
    }
}
