//! The registry server, in-process, for the HTTP tests (`conformance`, `e2e_skopeo`): the
//! crate's library ([`ocistore_server::serve`]) on a fresh store whose clock is a `ManualClock`
//! the test holds, bound to 127.0.0.1:0 on a runtime of its own, and a blocking HTTP client for
//! it. Stores live on `/dev/shm` when the machine has it.
#![allow(dead_code)] // each test file uses its own subset

use std::net::SocketAddr;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use ocistore::{ManualClock, Registry, RegistryBuilder, Timestamp};
use ocistore_server::Config;
use serde_json::Value;
use ureq::http;

/// A temporary directory, on tmpfs when there is one: these tests are about HTTP, not the
/// disk, and each store makes some 800 directories that a busy disk makes slow to create and
/// remove.
pub fn tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .unwrap()
}

/// A server on a fresh store, stopped (gracefully) when dropped.
pub struct Served {
    pub addr: SocketAddr,
    /// `http://ADDR`.
    pub base: String,
    pub registry: Registry,
    pub clock: ManualClock,
    /// Gives every status as a response, follows no redirect.
    pub agent: ureq::Agent,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Served {
    pub fn start() -> Served {
        Served::start_with(Config::default(), |b| b)
    }

    /// A server with `config`, on a store opened with the builder `store` makes of one that
    /// has the test's clock.
    pub fn start_with(
        config: Config,
        store: impl FnOnce(RegistryBuilder) -> RegistryBuilder,
    ) -> Served {
        Served::start_on(tempdir(), config, store)
    }

    /// The same on the store in `dir`, which may hold one already.
    pub fn start_on(
        dir: tempfile::TempDir,
        config: Config,
        store: impl FnOnce(RegistryBuilder) -> RegistryBuilder,
    ) -> Served {
        let clock = ManualClock::new(Timestamp::from(SystemTime::now()));
        let registry = store(Registry::builder().clock(clock.clone()))
            .open(dir.path())
            .unwrap();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SocketAddr>();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = registry.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let shutdown = async {
                    let _ = stopped.await;
                };
                ocistore_server::serve_with(listener, served, config, shutdown)
                    .await
                    .unwrap();
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Served {
            addr,
            base: format!("http://{addr}"),
            registry,
            clock,
            agent,
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A response, read whole.
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// Reads `response` whole (up to 256 MiB).
pub fn read(response: http::Response<ureq::Body>) -> Resp {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .with_config()
        .limit(256 << 20)
        .read_to_vec()
        .unwrap();
    Resp {
        status,
        headers,
        body,
    }
}
