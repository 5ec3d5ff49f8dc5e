//! Connections: the accept loop on hyper's HTTP/1 connection, with what `axum::serve` does not
//! do — timeouts, a bound on open connections, `TCP_NODELAY`, `Connection: close` when a
//! request body is left unread, and a lingering close after it.
//!
//! - **Header timeout**: a new connection has `header_timeout` to send its first request head;
//!   on a kept-alive connection the clock starts at the next head's first byte.
//! - **Idle timeout**: a kept-alive connection that sends no byte of a next request for
//!   `idle_timeout` is closed.
//! - **Body timeout**: a request body that sends no byte for `body_timeout` fails the request
//!   with 408 (the handler sees a stalled body, see [`BodyStalled`]); a response that the
//!   client does not read for as long (its socket buffer full) closes the connection.
//! - **Bound**: at most `max_connections` connections are served at once. With the bound
//!   reached, a new connection evicts the one that has waited longest for the client between
//!   requests (an idle keep-alive connection, or one that has not sent a whole request head), or
//!   else one whose request body or response has been stalled for a second; if there is none,
//!   it waits (in the listener's backlog) until a connection ends.
//!
//! The clock of these timeouts is tokio's; every connection keeps its state in a [`Conn`] that
//! its socket ([`Io`]), its request body ([`RequestBody`]), its response body
//! ([`ResponseBody`]) and the accept loop (to pick whom to evict) share.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderValue, Request, header};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::{Instant, Sleep};

/// How the server treats its connections. [`Config::default`] has the defaults of the
/// `ocistore-server` command line.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// How long a new connection may take to send its first request head, and any connection
    /// a request head from its first byte (default 10 s).
    pub header_timeout: Duration,
    /// How long a request body may send nothing, and a response wait for the client to read
    /// it, before the request fails and the connection closes (default 30 s).
    pub body_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request (default 60 s).
    pub idle_timeout: Duration,
    /// The most connections served at once (default: [`default_max_connections`]).
    pub max_connections: usize,
    /// After a response that left the request body unread, how long the server goes on reading
    /// and dropping what the client still sends before it closes (default 2 s), so that the
    /// client reads the answer instead of a reset connection.
    pub linger: Duration,
    /// Set `TCP_NODELAY` on every accepted socket (default true): without it, a small response
    /// written in two parts waits for the client's delayed ACK (some 40 ms on Linux).
    pub tcp_nodelay: bool,
    /// One line per request on stderr.
    pub log: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: default_max_connections(),
            linger: Duration::from_secs(2),
            tcp_nodelay: true,
            log: false,
        }
    }
}

/// The bound on connections that the limit on open descriptors allows: each connection may
/// hold two (its socket and a blob file it reads or writes), and 64 are kept for the store
/// and the process; at least 8, at most 1024. 1024 when the limit is unknown or unlimited.
#[must_use]
pub fn default_max_connections() -> usize {
    const CAP: u64 = 1024;
    match open_file_limit() {
        Some(limit) => usize::try_from((limit.saturating_sub(64) / 2).clamp(8, CAP)).unwrap_or(8),
        None => CAP as usize,
    }
}

/// The soft limit on open descriptors, if there is one.
#[cfg(unix)]
#[must_use]
pub fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given, which lives for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return None;
    }
    // rlim_t is u32 on some targets.
    #[allow(clippy::useless_conversion)]
    (limit.rlim_cur != libc::RLIM_INFINITY).then(|| u64::from(limit.rlim_cur))
}

/// The soft limit on open descriptors, if there is one.
#[cfg(not(unix))]
#[must_use]
pub fn open_file_limit() -> Option<u64> {
    None
}

/// Raises the soft limit on open descriptors to the hard limit, as Go programs do at start;
/// returns the soft limit now. For a process's `main`, before [`Config::default`].
#[cfg(unix)]
pub fn raise_open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: as in `open_file_limit`; setrlimit reads the struct it is given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) == 0
            && limit.rlim_cur < limit.rlim_max
        {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised);
        }
    }
    open_file_limit()
}

/// Raises the soft limit on open descriptors (nothing to do here).
#[cfg(not(unix))]
pub fn raise_open_file_limit() -> Option<u64> {
    None
}

/// The error a request body gives when the client sent nothing of it for the body timeout;
/// the handlers answer 408.
#[derive(Debug)]
pub struct BodyStalled(pub Duration);

impl std::fmt::Display for BodyStalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the client sent no byte of the request body for {} s",
            self.0.as_secs_f64()
        )
    }
}

impl std::error::Error for BodyStalled {}

/// A response that the client does not read for this long, or a request body stalled this
/// long, makes its connection one that a new connection may evict at the bound.
const EVICTABLE_STALL: Duration = Duration::from_secs(1);

/// While a new connection waits for a slot, how often it looks again for one to evict.
const RETRY: Duration = Duration::from_millis(100);

/// A lingering close ends after this long without a byte from the client …
const LINGER_QUIET: Duration = Duration::from_millis(500);

/// … or once this much was read and dropped.
const LINGER_BYTES: usize = 64 << 20;

// ---------------------------------------------------------------------------------------------
// The state of a connection

/// Times are microseconds since the server's epoch, plus one; 0 is "none".
type Stamp = u64;

/// What a connection is doing, shared by its socket, its bodies and the accept loop.
struct Conn {
    epoch: Instant,
    header_timeout: Duration,
    body_timeout: Duration,
    idle_timeout: Duration,
    linger: Duration,
    /// A request is being answered: from its head until its response body is done.
    in_request: AtomicBool,
    /// A request was answered on this connection: it waits for the next one.
    served: AtomicBool,
    /// Since when it waits for a request: the accept, or the end of the last response.
    waiting_since: AtomicU64,
    /// When the first byte of the next request head came (0: none yet).
    head_since: AtomicU64,
    /// Since when the request body has given nothing while the handler waits for it.
    body_stalled_since: AtomicU64,
    /// Since when a write has waited for the client to read.
    write_stalled_since: AtomicU64,
    /// The current request's body was read to its end.
    body_done: AtomicBool,
    /// A response left the request body unread: read and drop what comes before closing.
    linger_on_close: AtomicBool,
    evicted: AtomicBool,
    evict: Notify,
    /// The task of a read that waits without a deadline (during a request): woken when the
    /// response ends, for the read to take the idle deadline.
    reader: Mutex<Option<Waker>>,
}

impl Conn {
    fn new(epoch: Instant, config: &Config) -> Conn {
        let conn = Conn {
            epoch,
            header_timeout: config.header_timeout,
            body_timeout: config.body_timeout,
            idle_timeout: config.idle_timeout,
            linger: config.linger,
            in_request: AtomicBool::new(false),
            served: AtomicBool::new(false),
            waiting_since: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            body_stalled_since: AtomicU64::new(0),
            write_stalled_since: AtomicU64::new(0),
            body_done: AtomicBool::new(true),
            linger_on_close: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
            reader: Mutex::new(None),
        };
        conn.waiting_since.store(conn.now(), Ordering::Release);
        conn
    }

    fn now(&self) -> Stamp {
        stamp(self.epoch, Instant::now())
    }

    fn instant(&self, stamp: Stamp) -> Instant {
        self.epoch + Duration::from_micros(stamp.saturating_sub(1))
    }

    fn begin_request(&self, body_done: bool) {
        self.body_done.store(body_done, Ordering::Release);
        self.body_stalled_since.store(0, Ordering::Release);
        self.in_request.store(true, Ordering::Release);
    }

    fn end_request(&self) {
        self.head_since.store(0, Ordering::Release);
        self.body_stalled_since.store(0, Ordering::Release);
        self.waiting_since.store(self.now(), Ordering::Release);
        self.served.store(true, Ordering::Release);
        self.in_request.store(false, Ordering::Release);
        let reader = self
            .reader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(reader) = reader {
            reader.wake();
        }
    }

    /// Bytes came from the client.
    fn received(&self) {
        if !self.in_request.load(Ordering::Acquire) && self.head_since.load(Ordering::Acquire) == 0
        {
            self.head_since.store(self.now(), Ordering::Release);
        }
    }

    /// When a read that waits for the client times out: between requests only (a request body
    /// has its own clock, in [`RequestBody`]).
    fn read_deadline(&self) -> Option<Instant> {
        if self.in_request.load(Ordering::Acquire) {
            return None;
        }
        let since = self.waiting_since.load(Ordering::Acquire);
        if !self.served.load(Ordering::Acquire) {
            return Some(self.instant(since) + self.header_timeout);
        }
        match self.head_since.load(Ordering::Acquire) {
            0 => Some(self.instant(since) + self.idle_timeout),
            head => Some(self.instant(head) + self.header_timeout),
        }
    }

    /// How much this connection deserves eviction: `Some((class, since))`, the lowest first;
    /// `None` if it is working for its client.
    fn eviction_rank(&self, now: Stamp) -> Option<(u8, Stamp)> {
        if self.evicted.load(Ordering::Acquire) {
            return None;
        }
        if !self.in_request.load(Ordering::Acquire) {
            return Some((0, self.waiting_since.load(Ordering::Acquire)));
        }
        let stalled = [
            self.body_stalled_since.load(Ordering::Acquire),
            self.write_stalled_since.load(Ordering::Acquire),
        ]
        .into_iter()
        .filter(|&s| s != 0)
        .min()?;
        let after = EVICTABLE_STALL.min(self.body_timeout);
        let after = u64::try_from(after.as_micros()).unwrap_or(u64::MAX);
        (now.saturating_sub(stalled) >= after).then_some((1, stalled))
    }
}

fn stamp(epoch: Instant, at: Instant) -> Stamp {
    u64::try_from(at.saturating_duration_since(epoch).as_micros())
        .unwrap_or(u64::MAX - 1)
        .saturating_add(1)
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_owned())
}

// ---------------------------------------------------------------------------------------------
// The socket

/// An accepted socket with the connection's read and write clocks and its lingering close.
struct Io {
    stream: TcpStream,
    conn: Arc<Conn>,
    read_timer: Pin<Box<Sleep>>,
    read_deadline: Option<Instant>,
    write_timer: Pin<Box<Sleep>>,
    write_deadline: Option<Instant>,
    lingering: Option<Lingering>,
}

struct Lingering {
    until: Instant,
    last: Instant,
    drained: usize,
    buf: Box<[u8]>,
}

impl Io {
    fn new(stream: TcpStream, conn: Arc<Conn>) -> Io {
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        Io {
            stream,
            conn,
            read_timer: Box::pin(tokio::time::sleep_until(far)),
            read_deadline: None,
            write_timer: Box::pin(tokio::time::sleep_until(far)),
            write_deadline: None,
            lingering: None,
        }
    }

    fn wrote(&mut self) {
        if self.write_deadline.take().is_some() {
            self.conn.write_stalled_since.store(0, Ordering::Release);
        }
    }

    /// A write waits for the client: pending until the body timeout, then an error.
    fn write_pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if self.write_deadline.is_none() {
            let now = Instant::now();
            let deadline = now + self.conn.body_timeout;
            self.write_timer.as_mut().reset(deadline);
            self.write_deadline = Some(deadline);
            self.conn
                .write_stalled_since
                .store(stamp(self.conn.epoch, now), Ordering::Release);
        }
        match self.write_timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(timed_out(
                "the client read nothing of the response for the body timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Reads and drops what the client still sends, until it closes, goes quiet, or the
    /// linger time or byte count is spent.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(l) = self.lingering.as_mut() else {
            return Poll::Ready(());
        };
        loop {
            let mut buf = ReadBuf::new(&mut l.buf);
            match Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(()),
                Poll::Ready(Ok(())) => {
                    l.drained += buf.filled().len();
                    l.last = Instant::now();
                    if l.drained >= LINGER_BYTES || l.last >= l.until {
                        return Poll::Ready(());
                    }
                }
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => {
                    let deadline = l.until.min(l.last + LINGER_QUIET);
                    if self.read_deadline != Some(deadline) {
                        self.read_timer.as_mut().reset(deadline);
                        self.read_deadline = Some(deadline);
                    }
                    return self.read_timer.as_mut().poll(cx);
                }
            }
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.conn.received();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let Some(deadline) = this.conn.read_deadline() else {
                    *this
                        .conn
                        .reader
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
                    // The response may have ended since the deadline was asked for.
                    if this.conn.read_deadline().is_some() {
                        cx.waker().wake_by_ref();
                    }
                    return Poll::Pending;
                };
                if this.read_deadline != Some(deadline) {
                    this.read_timer.as_mut().reset(deadline);
                    this.read_deadline = Some(deadline);
                }
                match this.read_timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(timed_out(
                        "no request from the client within the header or idle timeout",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write(cx, buf) {
            Poll::Ready(r) => {
                this.wrote();
                Poll::Ready(r)
            }
            Poll::Pending => this.write_pending(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                this.wrote();
                Poll::Ready(r)
            }
            Poll::Pending => this.write_pending(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.lingering.is_none() {
            ready!(Pin::new(&mut this.stream).poll_shutdown(cx))?;
            if !this.conn.linger_on_close.load(Ordering::Acquire) || this.conn.linger.is_zero() {
                return Poll::Ready(Ok(()));
            }
            let now = Instant::now();
            this.lingering = Some(Lingering {
                until: now + this.conn.linger,
                last: now,
                drained: 0,
                buf: vec![0; 64 << 10].into_boxed_slice(),
            });
            this.read_deadline = None;
        }
        ready!(this.poll_linger(cx));
        Poll::Ready(Ok(()))
    }
}

// ---------------------------------------------------------------------------------------------
// Bodies

/// A request body with the body timeout: a stall of that long is an error, [`BodyStalled`].
pub(crate) struct RequestBody {
    inner: Incoming,
    conn: Arc<Conn>,
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
    failed: bool,
}

impl RequestBody {
    fn new(inner: Incoming, conn: Arc<Conn>) -> RequestBody {
        RequestBody {
            inner,
            conn,
            timer: None,
            armed: false,
            failed: false,
        }
    }

    fn progressed(&mut self) {
        if self.armed {
            self.armed = false;
            self.conn.body_stalled_since.store(0, Ordering::Release);
        }
    }
}

impl HttpBody for RequestBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.progressed();
                this.conn.body_done.store(true, Ordering::Release);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                this.progressed();
                if this.inner.is_end_stream() {
                    this.conn.body_done.store(true, Ordering::Release);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.progressed();
                this.failed = true;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Pending => {
                let timeout = this.conn.body_timeout;
                if !this.armed {
                    this.armed = true;
                    let now = Instant::now();
                    this.conn
                        .body_stalled_since
                        .store(stamp(this.conn.epoch, now), Ordering::Release);
                    match this.timer.as_mut() {
                        Some(timer) => timer.as_mut().reset(now + timeout),
                        None => {
                            this.timer = Some(Box::pin(tokio::time::sleep_until(now + timeout)))
                        }
                    }
                }
                let timer = this.timer.as_mut().expect("armed above");
                if timer.as_mut().poll(cx).is_ready() {
                    this.failed = true;
                    return Poll::Ready(Some(Err(Box::new(BodyStalled(timeout)))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        if !self.failed && self.inner.is_end_stream() {
            self.conn.body_done.store(true, Ordering::Release);
        }
        self.progressed();
    }
}

/// A response body that tells the connection when the response is over.
pub(crate) struct ResponseBody {
    inner: axum::body::Body,
    conn: Arc<Conn>,
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.conn.end_request();
    }
}

// ---------------------------------------------------------------------------------------------
// Serving

/// The connections being served, for eviction.
struct Connections {
    epoch: Instant,
    next: AtomicU64,
    live: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Connections {
    fn add(&self, conn: Arc<Conn>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, conn);
        id
    }

    fn remove(&self, id: u64) {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    /// Tells the connection most deserving of it to close; whether there was one.
    fn evict_one(&self) -> bool {
        let now = stamp(self.epoch, Instant::now());
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let victim = live
            .values()
            .filter_map(|c| c.eviction_rank(now).map(|rank| (rank, c)))
            .min_by_key(|(rank, _)| *rank)
            .map(|(_, c)| c.clone());
        drop(live);
        victim.is_some_and(|c| {
            c.evicted.store(true, Ordering::Release);
            c.evict.notify_one();
            true
        })
    }
}

/// Serves `router` on `listener` with `config` until `shutdown` completes; then stops
/// accepting, lets the requests in flight finish (idle connections close at once) and
/// returns once every connection is closed.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let max = config
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let permits = Arc::new(Semaphore::new(max));
    let epoch = Instant::now();
    let connections = Arc::new(Connections {
        epoch,
        next: AtomicU64::new(0),
        live: Mutex::default(),
    });
    let (stop, stopping) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    'accept: loop {
        let stream = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
        };
        prepare(&stream, &config);
        let permit = loop {
            if let Ok(permit) = permits.clone().try_acquire_owned() {
                break permit;
            }
            connections.evict_one();
            tokio::select! {
                biased;
                () = &mut shutdown => break 'accept,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => break permit,
                    Err(_) => break 'accept,
                },
                () = tokio::time::sleep(RETRY) => {}
            }
        };
        let conn = Arc::new(Conn::new(epoch, &config));
        let id = connections.add(conn.clone());
        let (router, connections, stopping, log) = (
            router.clone(),
            connections.clone(),
            stopping.clone(),
            config.log,
        );
        tokio::spawn(async move {
            connection(stream, conn, router, stopping, log).await;
            connections.remove(id);
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a permit until it closes.
    let _all_closed = permits
        .acquire_many(u32::try_from(max).unwrap_or(u32::MAX))
        .await;
    Ok(())
}

/// Sets the options of an accepted socket: `TCP_NODELAY`.
fn prepare(stream: &TcpStream, config: &Config) {
    if config.tcp_nodelay
        && let Err(e) = stream.set_nodelay(true)
    {
        eprintln!("ocistore-server: TCP_NODELAY: {e}");
    }
}

/// An accept that failed: out of descriptors (or memory) waits a little for connections to
/// close; anything else (a connection reset before it was accepted) is skipped.
async fn accept_failed(e: &io::Error) {
    #[cfg(unix)]
    const EXHAUSTED: [i32; 4] = [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM];
    #[cfg(not(unix))]
    const EXHAUSTED: [i32; 0] = [];
    if e.raw_os_error()
        .is_some_and(|code| EXHAUSTED.contains(&code))
    {
        eprintln!("ocistore-server: accept: {e}; waiting for connections to close");
        tokio::time::sleep(RETRY).await;
    }
}

/// Serves one connection until it closes, is evicted, or the server stops.
async fn connection(
    stream: TcpStream,
    conn: Arc<Conn>,
    router: Router,
    mut stopping: watch::Receiver<bool>,
    log: bool,
) {
    let io = TokioIo::new(Io::new(stream, conn.clone()));
    let service = {
        let conn = conn.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let (mut router, conn) = (router.clone(), conn.clone());
            async move {
                conn.begin_request(request.body().is_end_stream());
                let request = request.map(|body| RequestBody::new(body, conn.clone()));
                let Ok(mut response) = tower_service::Service::call(&mut router, request).await;
                if !conn.body_done.load(Ordering::Acquire) {
                    // hyper closes a connection whose request body was left unread: say so.
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    conn.linger_on_close.store(true, Ordering::Release);
                }
                Ok::<_, Infallible>(response.map(|inner| ResponseBody { inner, conn }))
            }
        })
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    // The header and idle timeouts are the socket's (`Io`): hyper's header timeout would also
    // cut idle kept-alive connections at the header timeout.
    http.header_read_timeout(None).keep_alive(true);
    let mut served = pin!(http.serve_connection(io, service));
    let mut graceful = false;
    loop {
        tokio::select! {
            done = served.as_mut() => {
                if let Err(e) = done
                    && log {
                        eprintln!("ocistore-server: connection closed: {e}");
                    }
                return;
            }
            () = conn.evict.notified() => {
                if log {
                    eprintln!("ocistore-server: connection evicted: the bound on connections is reached");
                }
                return;
            }
            _ = stopping.changed(), if !graceful => {
                graceful = true;
                served.as_mut().graceful_shutdown();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_sockets_have_tcp_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (accepted, _) = accepted.unwrap();
        assert!(!accepted.nodelay().unwrap(), "off until set");
        prepare(&accepted, &Config::default());
        assert!(accepted.nodelay().unwrap());
        drop(client);
    }

    #[test]
    fn the_default_bound_follows_the_descriptor_limit() {
        let bound = default_max_connections();
        assert!((8..=1024).contains(&bound), "{bound}");
        if let Some(limit) = open_file_limit() {
            assert!(
                bound as u64 <= limit.saturating_sub(64).max(16),
                "{bound} for {limit}"
            );
        }
    }

    #[test]
    fn idle_connections_are_evicted_before_stalled_requests_and_working_ones_never() {
        let epoch = Instant::now();
        let config = Config::default();
        let at = |ms: u64| stamp(epoch, epoch + Duration::from_millis(ms));
        let idle = Conn::new(epoch, &config);
        idle.waiting_since.store(at(500), Ordering::Release);
        let working = Conn::new(epoch, &config);
        working.begin_request(true);
        let stalled = Conn::new(epoch, &config);
        stalled.begin_request(false);
        stalled.body_stalled_since.store(at(100), Ordering::Release);
        let now = at(3000);
        assert_eq!(idle.eviction_rank(now), Some((0, at(500))));
        assert_eq!(working.eviction_rank(now), None);
        assert_eq!(stalled.eviction_rank(now), Some((1, at(100))));
        // Stalled for less than a second: not yet.
        assert_eq!(stalled.eviction_rank(at(900)), None);
    }
}
