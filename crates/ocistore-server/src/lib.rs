//! The HTTP side of `ocistore-server`: the OCI distribution API and the administrative JSON API
//! over one [`Registry`]. `main.rs` has the command line and the table of endpoints; the tests
//! (`tests/serving`) run the server in-process through [`serve`].
//!
//! Every route goes through one fallback handler that parses the path itself: repository names
//! hold `/`, so `/v2/<name>/<kind>/<rest>` is read from the end (digests, tags and upload ids
//! hold no `/`). Store calls block (redb, fsync), so each runs in `spawn_blocking`.
//!
//! The connections are hyper's HTTP/1, served by the accept loop of the `conn` module
//! ([`serve_with`], [`Config`]): header, body and idle timeouts, a bound on open connections,
//! `TCP_NODELAY`, and `Connection: close` on a response that leaves the request body unread.
//! A body whose declared `Content-Length` is over its endpoint's limit (a manifest: 4 MiB; an
//! administrative request: 1 MiB) is refused with 413 before any of it is read, so before hyper
//! sends `100 Continue`, which it does only once a handler reads the body.

mod conn;

use std::future::{Future, poll_fn};
use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
pub use conn::{
    BodyStalled, Config, default_max_connections, open_file_limit, raise_open_file_limit,
};
use http_body::Frame;
use ocistore::manifest::{MAX_MANIFEST_SIZE, OCI_INDEX};
use ocistore::{
    BlobReader, CollectOptions, Digest, Error, FsckOptions, FsckReport, Health, OnConflict, Page,
    PurgeOptions, Reference, Registry, Repository, RepositoryState, Restore, SoftDeletePolicy,
    Upload,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Request bodies of blobs are appended to their upload session this many bytes at a time, so
/// a layer is never held in memory whole.
pub const CHUNK: usize = 8 << 20;

/// Bytes read from a blob file per frame of a response.
const READ_BUF: usize = 256 << 10;

/// The largest JSON body the administrative API reads.
const MAX_ADMIN_BODY: usize = 1 << 20;

/// Blobs up to this size are read whole in the call that finds them, and sent with the response
/// head in one write; larger ones are streamed.
const SMALL_BLOB: u64 = 64 << 10;

/// The prefix of the id of an upload session that is not started yet: the 202 of a mount that
/// could not be done names one, and the first PATCH or PUT to it starts the session.
const PENDING_UPLOAD: &str = "pending-";

/// The header of `/v2/` that tells whether the store takes writes: `ok`, `storage-full` or
/// `not-writable` (the reason is on `GET /health`).
pub const HEALTH_HEADER: &str = "ocistore-health";

#[derive(Clone)]
struct App {
    registry: Registry,
    log: bool,
}

/// The router: every path goes to `dispatch`. With `log`, one line per request on stderr.
pub fn router(registry: Registry, log: bool) -> Router {
    Router::new()
        .fallback(dispatch)
        .layer(DefaultBodyLimit::disable())
        .with_state(App { registry, log })
}

/// Serves `registry` on `listener` with the default [`Config`] (and `log`) until `shutdown`
/// completes, then lets the requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Registry,
    log: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = Config {
        log,
        ..Config::default()
    };
    serve_with(listener, registry, config, shutdown).await
}

/// Serves `registry` on `listener` with `config` until `shutdown` completes, then stops
/// accepting, lets the requests in flight finish, and returns once every connection is closed.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    registry: Registry,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router(registry, config.log);
    conn::serve(listener, router, config, shutdown).await
}

// ---------------------------------------------------------------------------------------------
// Errors

/// An error response in the distribution spec's format:
/// `{"errors":[{"code":…,"message":…,"detail":…}]}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    detail: Value,
    headers: Vec<(&'static str, String)>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            detail: Value::Null,
            headers: Vec::new(),
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> ApiError {
        self.headers.push((name, value.into()));
        self
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message)
    }

    fn no_route() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "UNSUPPORTED", "no such endpoint")
    }

    fn method(allow: &'static str) -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            format!("method not allowed here; allowed: {allow}"),
        )
        .header("allow", allow)
    }

    /// Maps a store error; `push` is set for a manifest push, where an unknown blob or child
    /// manifest is `MANIFEST_BLOB_UNKNOWN`.
    fn store(e: Error, push: bool) -> ApiError {
        use StatusCode as S;
        let (status, code, detail) = match &e {
            Error::InvalidRepositoryName { name, .. } => {
                (S::BAD_REQUEST, "NAME_INVALID", json!({ "name": name }))
            }
            Error::InvalidTag { tag } => (S::BAD_REQUEST, "TAG_INVALID", json!({ "tag": tag })),
            Error::InvalidDigest { digest, .. } => (
                S::BAD_REQUEST,
                "DIGEST_INVALID",
                json!({ "digest": digest }),
            ),
            // A reference with a `:` was meant as a digest: tags never hold one.
            Error::InvalidReference { reference, .. } if reference.contains(':') => (
                S::BAD_REQUEST,
                "DIGEST_INVALID",
                json!({ "digest": reference }),
            ),
            Error::InvalidReference { reference, .. } => {
                (S::BAD_REQUEST, "TAG_INVALID", json!({ "tag": reference }))
            }
            Error::ManifestTooLarge { size, limit } => (
                S::PAYLOAD_TOO_LARGE,
                "MANIFEST_INVALID",
                json!({ "size": size, "limit": limit }),
            ),
            Error::InvalidManifest { .. } | Error::MediaTypeMismatch { .. } => {
                (S::BAD_REQUEST, "MANIFEST_INVALID", Value::Null)
            }
            Error::UnsupportedMediaType { media_type, .. } => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED",
                json!({ "media_type": media_type }),
            ),
            Error::DigestMismatch { expected, actual } => (
                S::BAD_REQUEST,
                "DIGEST_INVALID",
                json!({ "expected": expected, "actual": actual }),
            ),
            Error::BlobUnknown { digest, .. } => (
                S::NOT_FOUND,
                if push {
                    "MANIFEST_BLOB_UNKNOWN"
                } else {
                    "BLOB_UNKNOWN"
                },
                json!({ "digest": digest }),
            ),
            Error::ManifestUnknown { reference, .. } => (
                S::NOT_FOUND,
                if push {
                    "MANIFEST_BLOB_UNKNOWN"
                } else {
                    "MANIFEST_UNKNOWN"
                },
                json!({ "reference": reference }),
            ),
            Error::TagUnknown { tag, .. } => {
                (S::NOT_FOUND, "MANIFEST_UNKNOWN", json!({ "tag": tag }))
            }
            Error::RepositoryUnknown { name } | Error::RepositorySoftDeleted { name } => {
                (S::NOT_FOUND, "NAME_UNKNOWN", json!({ "name": name }))
            }
            Error::ManifestReferenced { digest, index, .. } => (
                S::CONFLICT,
                "DENIED",
                json!({ "digest": digest, "index": index }),
            ),
            Error::ManifestSoftDeleted { digest, .. } => {
                (S::CONFLICT, "DENIED", json!({ "digest": digest }))
            }
            Error::Locked { item, lock, .. } => (
                S::FORBIDDEN,
                "DENIED",
                json!({ "item": item, "lock": lock }),
            ),
            Error::TagConflict { tag, digest, .. } => (
                S::CONFLICT,
                "TAG_CONFLICT",
                json!({ "tag": tag, "digest": digest }),
            ),
            Error::SubjectDeleted { subject, .. } => (
                S::CONFLICT,
                "SUBJECT_DELETED",
                json!({ "subject": subject }),
            ),
            Error::NotDeleted { item, .. } => {
                (S::NOT_FOUND, "NOT_DELETED", json!({ "item": item }))
            }
            Error::NotInHistory { tag, digest, .. } => (
                S::NOT_FOUND,
                "MANIFEST_UNKNOWN",
                json!({ "tag": tag, "digest": digest }),
            ),
            Error::InvalidFilter { filter, .. } => (
                S::BAD_REQUEST,
                "INVALID_REQUEST",
                json!({ "filter": filter }),
            ),
            Error::InvalidSetting { setting, value, .. } => (
                S::BAD_REQUEST,
                "INVALID_REQUEST",
                json!({ "setting": setting, "value": value }),
            ),
            Error::UploadUnknown { id } => {
                (S::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN", json!({ "id": id }))
            }
            Error::UploadOffsetMismatch { actual, .. } => (
                S::RANGE_NOT_SATISFIABLE,
                "BLOB_UPLOAD_INVALID",
                json!({ "offset": actual }),
            ),
            Error::InvalidRange { size, .. } => (
                S::RANGE_NOT_SATISFIABLE,
                "SIZE_INVALID",
                json!({ "size": size }),
            ),
            // C4: the write changed nothing; reads, deletes and the collector go on.
            Error::StorageFull { .. } => {
                eprintln!("ocistore-server: write refused: {e}");
                return ApiError::new(
                    S::INSUFFICIENT_STORAGE,
                    "STORAGE_FULL",
                    "the registry's storage is full: the write was refused and changed \
                     nothing; reads, deletes and garbage collection still work",
                );
            }
            // AlreadyOpen, NestedWrite, UnsupportedFormat, Corrupt, Io, Database, and whatever
            // a later version adds: the server's fault, not the client's.
            _ => (S::INTERNAL_SERVER_ERROR, "UNKNOWN", Value::Null),
        };
        if status.is_server_error() {
            eprintln!("ocistore-server: internal error: {e}");
        }
        let mut error = ApiError::new(status, code, e.to_string());
        error.detail = detail;
        if let Error::InvalidRange { size, .. } = e {
            error = error.header("content-range", format!("bytes */{size}"));
        }
        error
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        ApiError::store(e, false)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "errors": [{
            "code": self.code,
            "message": self.message,
            "detail": self.detail,
        }]});
        let mut response = (self.status, json_body(&body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        response
    }
}

type Result<T, E = ApiError> = std::result::Result<T, E>;

/// Runs a blocking store call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ocistore::Result<T> + Send + 'static,
) -> ocistore::Result<T> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(Error::Io {
            path: Default::default(),
            source: std::io::Error::other(format!("store task failed: {e}")),
        })
    })
}

// ---------------------------------------------------------------------------------------------
// Dispatch

/// The parsed query string: decoded pairs, in order.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: Option<&str>) -> Result<Query> {
        let mut pairs = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            pairs.push((decode(k, true)?, decode(v, true)?));
        }
        Ok(Query(pairs))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Percent-decodes a path segment or (with `plus`) a query component.
fn decode(s: &str, plus: bool) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        ApiError::bad_request(format!("bad percent-encoding in {s:?}"))
                    })?;
                out.push(hex);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| ApiError::bad_request(format!("{s:?} is not UTF-8")))
}

/// Percent-encodes a query component.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What a `/v2/` path names.
enum Route {
    Base,
    Catalog,
    Blob(String, String),
    Uploads(String),
    Upload(String, String),
    Manifest(String, String),
    Tags(String),
    Referrers(String, String),
}

fn v2_route(rest: &str) -> Result<Route> {
    if rest.is_empty() {
        return Ok(Route::Base);
    }
    let segs = rest
        .split('/')
        .map(|s| decode(s, false))
        .collect::<Result<Vec<_>>>()?;
    let n = segs.len();
    if segs == ["_catalog"] {
        return Ok(Route::Catalog);
    }
    if n < 3 {
        return Err(ApiError::no_route());
    }
    let seg = |i: usize| segs[n - i].as_str();
    let name = |k: usize| segs[..n - k].join("/");
    Ok(match (seg(3), seg(2), seg(1)) {
        ("blobs", "uploads", "") => Route::Uploads(name(3)),
        ("blobs", "uploads", id) => Route::Upload(name(3), id.to_owned()),
        (_, "blobs", "uploads") => Route::Uploads(name(2)),
        (_, "blobs", digest) => Route::Blob(name(2), digest.to_owned()),
        (_, "manifests", reference) => Route::Manifest(name(2), reference.to_owned()),
        (_, "tags", "list") => Route::Tags(name(2)),
        (_, "referrers", digest) => Route::Referrers(name(2), digest.to_owned()),
        _ => return Err(ApiError::no_route()),
    })
}

fn manifest_too_large(size: u64) -> ApiError {
    ApiError::store(
        Error::ManifestTooLarge {
            size,
            limit: MAX_MANIFEST_SIZE,
        },
        true,
    )
}

/// Refuses a request whose declared `Content-Length` is over the limit of its endpoint (a
/// manifest push: 4 MiB, N4; the administrative API: 1 MiB) with 413, before a byte of the body
/// is read: hyper sends `100 Continue` only once the body is read, so a client that asked for it
/// gets the 413 instead. Blob uploads have no limit.
fn check_declared_length(
    admin: bool,
    route: Option<&Route>,
    method: &Method,
    headers: &HeaderMap,
) -> Result<()> {
    let Some(size) = content_length(headers) else {
        return Ok(());
    };
    match route {
        Some(Route::Manifest(..)) if *method == Method::PUT && size > MAX_MANIFEST_SIZE => {
            Err(manifest_too_large(size))
        }
        None if admin && size > MAX_ADMIN_BODY as u64 => Err(admin_body_too_large()),
        _ => Ok(()),
    }
}

fn admin_body_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "INVALID_REQUEST",
        "request body over 1 MiB",
    )
}

/// The one handler: routes by path and method.
async fn dispatch(State(app): State<App>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_owned();
    let result = async {
        let query = Query::parse(parts.uri.query())?;
        let (method, headers) = (&parts.method, &parts.headers);
        if path == "/v2" {
            return v2(&app, Route::Base, method, headers, &query, body).await;
        }
        if let Some(rest) = path.strip_prefix("/v2/") {
            let route = v2_route(rest)?;
            check_declared_length(false, Some(&route), method, headers)?;
            return v2(&app, route, method, headers, &query, body).await;
        }
        if let Some(rest) = path.strip_prefix("/admin/") {
            check_declared_length(true, None, method, headers)?;
            return admin(&app, rest, method, &query, body).await;
        }
        if path == "/health" {
            return health(&app, method).await;
        }
        Err(ApiError::no_route())
    }
    .await;
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    response.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    if app.log {
        eprintln!("{method} {} -> {}", parts.uri, response.status().as_u16());
    }
    response
}

async fn v2(
    app: &App,
    route: Route,
    method: &Method,
    headers: &HeaderMap,
    query: &Query,
    body: Body,
) -> Result<Response> {
    let head = method == Method::HEAD;
    match route {
        // Reads work whatever the store's health: 200, with the health in a header.
        Route::Base => match *method {
            Method::GET | Method::HEAD => {
                let health = store_health(app).await.ok();
                let mut response = json_response(StatusCode::OK, &json!({}));
                let state = match health {
                    Some(h) if h.writable => "ok",
                    Some(h) if h.storage_full => "storage-full",
                    _ => "not-writable",
                };
                response
                    .headers_mut()
                    .insert(HEALTH_HEADER, HeaderValue::from_static(state));
                Ok(response)
            }
            _ => Err(ApiError::method("GET, HEAD")),
        },
        Route::Catalog => match *method {
            Method::GET => catalog(app, query).await,
            _ => Err(ApiError::method("GET")),
        },
        Route::Blob(name, digest) => match *method {
            Method::GET | Method::HEAD => blob_get(app, &name, &digest, headers, head).await,
            Method::DELETE => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                "blobs are not deleted one by one: delete manifests, then run the collector \
                 (POST /admin/gc)",
            )
            .header("allow", "GET, HEAD")),
            _ => Err(ApiError::method("GET, HEAD")),
        },
        Route::Uploads(name) => match *method {
            Method::POST => upload_start(app, &name, query, body).await,
            _ => Err(ApiError::method("POST")),
        },
        Route::Upload(name, id) => match *method {
            Method::GET => upload_status(app, &name, &id).await,
            Method::PATCH => upload_patch(app, &name, &id, headers, body).await,
            Method::PUT => upload_put(app, &name, &id, query, headers, body).await,
            Method::DELETE => upload_cancel(app, &name, &id).await,
            _ => Err(ApiError::method("GET, PATCH, PUT, DELETE")),
        },
        Route::Manifest(name, reference) => match *method {
            Method::GET | Method::HEAD => manifest_get(app, &name, &reference, head).await,
            Method::PUT => manifest_put(app, &name, &reference, headers, body).await,
            Method::DELETE => manifest_delete(app, &name, &reference).await,
            _ => Err(ApiError::method("GET, HEAD, PUT, DELETE")),
        },
        Route::Tags(name) => match *method {
            Method::GET => tags(app, &name, query).await,
            _ => Err(ApiError::method("GET")),
        },
        Route::Referrers(name, digest) => match *method {
            Method::GET => referrers(app, &name, &digest, query).await,
            _ => Err(ApiError::method("GET")),
        },
    }
}

/// The store's health, after what recovers it (C5): `Registry::health` reopens a database
/// closed by an I/O error and takes the space reserve back once there is room (C4).
async fn store_health(app: &App) -> Result<Health> {
    let registry = app.registry.clone();
    tokio::task::spawn_blocking(move || registry.health())
        .await
        .map_err(|e| {
            eprintln!("ocistore-server: health check failed: {e}");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN",
                "the health check failed",
            )
        })
}

/// `GET /health`: the store's [`Health`] as JSON; 200 when it takes writes, 503 when not.
async fn health(app: &App, method: &Method) -> Result<Response> {
    if *method != Method::GET && *method != Method::HEAD {
        return Err(ApiError::method("GET, HEAD"));
    }
    let health = store_health(app).await?;
    let status = if health.writable {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let value =
        serde_json::to_value(&health).unwrap_or_else(|e| json!({ "problem": e.to_string() }));
    Ok(json_response(status, &value))
}

// ---------------------------------------------------------------------------------------------
// Responses and bodies

/// 200 with `value` in its serde form: a library type answers in the shape it derives (an
/// object around it only adds context, such as the repository it is of).
fn answer(value: &impl serde::Serialize) -> Result<Response> {
    let value = serde_json::to_value(value)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", e.to_string()))?;
    Ok(json_response(StatusCode::OK, &value))
}

fn json_body(value: &Value) -> Body {
    Body::from(serde_json::to_vec(value).expect("a JSON value serializes"))
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut response = (status, json_body(value)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A response with `headers` (names lower case) and `body`.
fn respond(status: StatusCode, headers: &[(&str, String)], body: Body) -> Response {
    let mut response = (status, body).into_response();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// The response to a blob that is now in the repository (201).
fn blob_created(name: &str, digest: &Digest) -> Response {
    respond(
        StatusCode::CREATED,
        &[
            ("location", format!("/v2/{name}/blobs/{digest}")),
            ("docker-content-digest", digest.to_string()),
        ],
        Body::empty(),
    )
}

/// The headers that tell a client where an upload session is.
fn upload_headers(name: &str, id: &str, offset: u64) -> Vec<(&'static str, String)> {
    vec![
        ("location", format!("/v2/{name}/blobs/uploads/{id}")),
        ("range", format!("0-{}", offset.saturating_sub(1))),
        ("docker-upload-uuid", id.to_owned()),
    ]
}

fn upload_response(status: StatusCode, name: &str, id: &str, offset: u64) -> Response {
    respond(status, &upload_headers(name, id, offset), Body::empty())
}

/// A request body read a chunk at a time.
struct BodyReader {
    body: Body,
    /// The body ended (not failed).
    done: bool,
    /// The body failed after bytes that a read gave: the next read gives the error.
    failed: Option<ApiError>,
}

impl BodyReader {
    fn new(body: Body) -> BodyReader {
        BodyReader {
            body,
            done: false,
            failed: None,
        }
    }

    /// The next [`CHUNK`] bytes or so (fewer only at the end); empty once the body is over. If
    /// the body fails part way (a stall, say), the bytes before come first, and the error with
    /// the next call: a PATCH keeps what the client sent before it stalled.
    async fn chunk(&mut self) -> Result<Vec<u8>> {
        self.fill(CHUNK, true).await
    }

    /// Reads until `want` bytes or the end. A body that stalls for the body timeout is 408.
    async fn read(&mut self, want: usize) -> Result<Vec<u8>> {
        self.fill(want, false).await
    }

    async fn fill(&mut self, want: usize, partial: bool) -> Result<Vec<u8>> {
        if let Some(error) = self.failed.take() {
            return Err(error);
        }
        let mut buf = Vec::new();
        while !self.done && buf.len() < want {
            match poll_fn(|cx| Pin::new(&mut self.body).poll_frame(cx)).await {
                None => self.done = true,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => {
                    let e = e.into_inner();
                    let error = match e.downcast_ref::<BodyStalled>() {
                        Some(stalled) => ApiError::new(
                            StatusCode::REQUEST_TIMEOUT,
                            "REQUEST_TIMEOUT",
                            stalled.to_string(),
                        ),
                        None => ApiError::new(
                            StatusCode::BAD_REQUEST,
                            "BLOB_UPLOAD_INVALID",
                            format!("reading the request body: {e}"),
                        ),
                    };
                    if partial && !buf.is_empty() {
                        self.failed = Some(error);
                        break;
                    }
                    return Err(error);
                }
            }
        }
        Ok(buf)
    }
}

/// Appends the rest of `reader` to `upload`, a chunk at a time; returns the session's offset.
async fn stream_into(upload: &Arc<Upload>, reader: &mut BodyReader) -> Result<u64> {
    let mut offset = upload.offset();
    loop {
        let chunk = reader.chunk().await?;
        if chunk.is_empty() {
            return Ok(offset);
        }
        let upload = upload.clone();
        offset = blocking(move || upload.append(&chunk)).await?;
    }
}

/// A response body fed from a blob file by a blocking task.
struct ReaderBody {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    remaining: u64,
}

impl HttpBody for ReaderBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.rx.poll_recv(cx).map(|chunk| {
            chunk.map(|chunk| {
                chunk.map(|bytes| {
                    self.remaining = self.remaining.saturating_sub(bytes.len() as u64);
                    Frame::data(bytes)
                })
            })
        })
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

fn reader_body(mut reader: BlobReader) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let remaining = reader.len();
    tokio::task::spawn_blocking(move || {
        loop {
            let mut buf = vec![0; READ_BUF];
            match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        return; // the client went away
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    Body::new(ReaderBody { rx, remaining })
}

/// The body of bytes `range` of a blob, in a blocking call: up to [`SMALL_BLOB`] read whole
/// (hyper then writes it with the response head), larger ones streamed.
fn open_blob(
    repo: &Repository,
    digest: &Digest,
    range: std::ops::Range<u64>,
) -> ocistore::Result<Body> {
    let mut reader = repo.blob_reader(digest, range)?;
    if reader.len() > SMALL_BLOB {
        return Ok(reader_body(reader));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(reader.len()).unwrap_or(0));
    reader.read_to_end(&mut bytes).map_err(|source| Error::Io {
        path: Default::default(),
        source,
    })?;
    Ok(Body::from(bytes))
}

fn repository(app: &App, name: &str) -> Result<Repository> {
    Ok(app.registry.repository(name)?)
}

// ---------------------------------------------------------------------------------------------
// Blobs

/// Parses `Range: bytes=a-b`, `bytes=a-` or `bytes=-n` against a blob of `size` bytes into
/// `start..end`. A header of another form is ignored (the whole blob is sent); a range that
/// does not fit is 416.
fn parse_range(value: &HeaderValue, size: u64) -> Result<Option<(u64, u64)>> {
    let Some(spec) = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None); // several ranges: answered with the whole blob
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let unsatisfiable = || {
        ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "SIZE_INVALID",
            format!("range {spec:?} is outside the blob of {size} bytes"),
        )
        .header("content-range", format!("bytes */{size}"))
    };
    let range = match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(start), Ok(last)) if start <= last => (start, last.saturating_add(1).min(size)),
        (Ok(start), Err(_)) if b.is_empty() => (start, size),
        (Err(_), Ok(suffix)) if a.is_empty() && suffix > 0 => (size.saturating_sub(suffix), size),
        _ => return Ok(None),
    };
    if range.0 >= size {
        return Err(unsatisfiable());
    }
    Ok(Some(range))
}

async fn blob_get(
    app: &App,
    name: &str,
    digest: &str,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response> {
    let repo = repository(app, name)?;
    let digest = Digest::parse(digest)?;
    // Without a range, one call finds the blob and reads it (a small one whole).
    let whole = !head && !headers.contains_key(header::RANGE);
    let (size, content) = {
        let (repo, digest) = (repo.clone(), digest.clone());
        blocking(move || {
            let size = repo.blob_size(&digest)?;
            let content = if whole {
                Some(open_blob(&repo, &digest, 0..size)?)
            } else {
                None
            };
            Ok((size, content))
        })
        .await?
    };
    let range = match headers.get(header::RANGE) {
        Some(value) => parse_range(value, size)?,
        None => None,
    };
    let (status, start, end) = match range {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end),
        None => (StatusCode::OK, 0, size),
    };
    let mut response_headers = vec![
        ("content-length", (end - start).to_string()),
        ("content-type", "application/octet-stream".to_owned()),
        ("docker-content-digest", digest.to_string()),
        ("accept-ranges", "bytes".to_owned()),
    ];
    if range.is_some() {
        response_headers.push(("content-range", format!("bytes {start}-{}/{size}", end - 1)));
    }
    let body = match content {
        _ if head => Body::empty(),
        Some(content) => content,
        None => blocking(move || open_blob(&repo, &digest, start..end)).await?,
    };
    Ok(respond(status, &response_headers, body))
}

/// `POST /v2/<name>/blobs/uploads/`: a mount, a monolithic upload, or a new session.
///
/// A mount that cannot be done answers 202 with a *pending* session (`pending-<hex>`): the spec
/// wants an upload URL, but the client may never use it (skopeo cancels it, as it uploads the
/// blob its own way), so nothing is stored until its first PATCH or PUT starts a real session,
/// whose own URL that answer gives.
async fn upload_start(app: &App, name: &str, query: &Query, body: Body) -> Result<Response> {
    let repo = repository(app, name)?;
    if let Some(mount) = query.get("mount") {
        let digest = Digest::parse(mount)?;
        if let Some(from) = query.get("from") {
            let (repo, from, d) = (repo.clone(), from.to_owned(), digest.clone());
            match blocking(move || repo.mount_blob(&from, &d)).await {
                Ok(()) => return Ok(blob_created(name, &digest)),
                // Not mountable from there: the client uploads it instead (202 below).
                Err(
                    Error::BlobUnknown { .. }
                    | Error::RepositoryUnknown { .. }
                    | Error::RepositorySoftDeleted { .. }
                    | Error::InvalidRepositoryName { .. },
                ) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let id = format!("{PENDING_UPLOAD}{}", uuid::Uuid::new_v4().simple());
        return Ok(upload_response(StatusCode::ACCEPTED, name, &id, 0));
    } else if let Some(digest) = query.get("digest") {
        let digest = Digest::parse(digest)?;
        return upload_monolithic(repo, name, digest, body).await;
    }
    let upload = blocking(move || repo.start_upload()).await?;
    Ok(upload_response(StatusCode::ACCEPTED, name, upload.id(), 0))
}

/// `POST …/blobs/uploads/?digest=`: a body of up to one chunk is put in one go; a larger one
/// is streamed into an upload session.
async fn upload_monolithic(
    repo: Repository,
    name: &str,
    digest: Digest,
    body: Body,
) -> Result<Response> {
    let mut reader = BodyReader::new(body);
    let first = reader.read(CHUNK).await?;
    if reader.done {
        let d = digest.clone();
        blocking(move || repo.put_blob(&d, &first)).await?;
        return Ok(blob_created(name, &digest));
    }
    let upload = Arc::new(blocking(move || repo.start_upload()).await?);
    let result = async {
        let up = upload.clone();
        blocking(move || up.append(&first)).await?;
        stream_into(&upload, &mut reader).await?;
        let (up, d) = (upload.clone(), digest.clone());
        blocking(move || up.finish(&d)).await?;
        Ok(())
    }
    .await;
    if result.is_err() {
        cancel(&upload).await;
    }
    result.map(|()| blob_created(name, &digest))
}

async fn cancel(upload: &Arc<Upload>) {
    let up = upload.clone();
    let _ = blocking(move || up.cancel()).await;
}

/// The upload session a request names.
enum Session {
    Started(Arc<Upload>),
    /// Not started yet ([`PENDING_UPLOAD`]): empty, and nothing stored.
    Pending(String),
}

impl Session {
    fn id(&self) -> &str {
        match self {
            Session::Started(upload) => upload.id(),
            Session::Pending(id) => id,
        }
    }

    fn offset(&self) -> u64 {
        match self {
            Session::Started(upload) => upload.offset(),
            Session::Pending(_) => 0,
        }
    }
}

async fn session(app: &App, name: &str, id: &str) -> Result<Session> {
    let repo = repository(app, name)?;
    if id
        .strip_prefix(PENDING_UPLOAD)
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Ok(Session::Pending(id.to_owned()));
    }
    let id = id.to_owned();
    Ok(Session::Started(Arc::new(
        blocking(move || repo.resume_upload(&id)).await?,
    )))
}

/// The session to append to, started now if it was pending (then `true`: a failure of this
/// request cancels it, as its client never learns its id).
async fn start(app: &App, name: &str, session: Session) -> Result<(Arc<Upload>, bool)> {
    match session {
        Session::Started(upload) => Ok((upload, false)),
        Session::Pending(_) => {
            let repo = repository(app, name)?;
            let upload = blocking(move || repo.start_upload()).await?;
            Ok((Arc::new(upload), true))
        }
    }
}

/// Checks a chunk's `Content-Range` (`a-b`, inclusive; `bytes a-b` and `bytes a-b/*` are
/// taken too) against the session's offset and the `Content-Length`: 416 on a mismatch, with
/// the session's headers so that the client can resume.
fn check_content_range(headers: &HeaderMap, name: &str, session: &Session) -> Result<()> {
    let Some(value) = headers.get(header::CONTENT_RANGE) else {
        return Ok(());
    };
    let offset = session.offset();
    let refuse = |message: String| {
        let mut error = ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "BLOB_UPLOAD_INVALID",
            message,
        );
        error.detail = json!({ "offset": offset });
        upload_headers(name, session.id(), offset)
            .into_iter()
            .fold(error, |e, (k, v)| e.header(k, v))
    };
    let text = value.to_str().unwrap_or("").trim();
    let spec = text.strip_prefix("bytes").map_or(text, str::trim_start);
    let spec = spec.split('/').next().unwrap_or("").trim();
    let parsed = spec
        .split_once('-')
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
    let Some((start, last)) = parsed.filter(|(a, b)| a <= b) else {
        return Err(refuse(format!(
            "Content-Range {text:?} is not <start>-<end>"
        )));
    };
    if start != offset {
        return Err(refuse(format!(
            "chunk starts at {start}; the upload is at offset {offset}"
        )));
    }
    if let Some(length) = content_length(headers)
        && length != last - start + 1
    {
        return Err(refuse(format!(
            "Content-Range {start}-{last} is {} bytes; Content-Length is {length}",
            last - start + 1
        )));
    }
    Ok(())
}

/// The declared `Content-Length`, if there is a valid one.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// `PATCH`: a chunk. A refusal leaves the body unread (the connection then closes).
async fn upload_patch(
    app: &App,
    name: &str,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let session = session(app, name, id).await?;
    check_content_range(headers, name, &session)?;
    let (upload, new) = start(app, name, session).await?;
    let mut reader = BodyReader::new(body);
    match stream_into(&upload, &mut reader).await {
        Ok(offset) => Ok(upload_response(
            StatusCode::ACCEPTED,
            name,
            upload.id(),
            offset,
        )),
        Err(e) => {
            if new {
                cancel(&upload).await;
            }
            Err(e)
        }
    }
}

/// The closing `PUT`, with an optional last chunk.
async fn upload_put(
    app: &App,
    name: &str,
    id: &str,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let Some(digest) = query.get("digest") else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            "the closing PUT names the digest of the whole blob: ?digest=<digest>",
        ));
    };
    let digest = Digest::parse(digest)?;
    let session = session(app, name, id).await?;
    check_content_range(headers, name, &session)?;
    let (upload, new) = start(app, name, session).await?;
    let mut reader = BodyReader::new(body);
    let result = async {
        stream_into(&upload, &mut reader).await?;
        let (up, d) = (upload.clone(), digest.clone());
        blocking(move || up.finish(&d)).await?;
        Ok(())
    }
    .await;
    if result.is_err() && new {
        cancel(&upload).await;
    }
    result.map(|()| blob_created(name, &digest))
}

async fn upload_status(app: &App, name: &str, id: &str) -> Result<Response> {
    let session = session(app, name, id).await?;
    Ok(upload_response(
        StatusCode::NO_CONTENT,
        name,
        session.id(),
        session.offset(),
    ))
}

async fn upload_cancel(app: &App, name: &str, id: &str) -> Result<Response> {
    if let Session::Started(upload) = session(app, name, id).await? {
        blocking(move || upload.cancel()).await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------------------------------------
// Manifests

async fn manifest_get(app: &App, name: &str, reference: &str, head: bool) -> Result<Response> {
    let repo = repository(app, name)?;
    let reference = reference.to_owned();
    let pulled = blocking(move || repo.pull(&reference)).await?;
    let headers = [
        ("content-type", pulled.media_type.clone()),
        ("content-length", pulled.body.len().to_string()),
        ("docker-content-digest", pulled.digest.to_string()),
    ];
    let body = if head {
        Body::empty()
    } else {
        Body::from(pulled.body)
    };
    Ok(respond(StatusCode::OK, &headers, body))
}

async fn manifest_put(
    app: &App,
    name: &str,
    reference: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let repo = repository(app, name)?;
    // A declared length over the limit was refused by `dispatch`, before the body was read.
    // One byte past the limit is enough to know a body without one is too large; the rest is
    // left unread, and the connection closes.
    let limit = MAX_MANIFEST_SIZE;
    let body = BodyReader::new(body).read(limit as usize + 1).await?;
    if body.len() as u64 > limit {
        return Err(manifest_too_large(body.len() as u64));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    let media_type = match content_type {
        Some(t) => t,
        // No Content-Type: the body's own mediaType, as clients are to send the same.
        None => serde_json::from_slice::<Value>(&body)
            .ok()
            .as_ref()
            .and_then(|v| v["mediaType"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "MANIFEST_INVALID",
                    "no Content-Type and no mediaType in the body: the manifest's media type \
                     is unknown",
                )
            })?,
    };
    let reference = reference.to_owned();
    let pushed = blocking(move || repo.push_manifest(&reference, &media_type, &body))
        .await
        .map_err(|e| ApiError::store(e, true))?;
    let digest = &pushed.digest;
    let mut response_headers = vec![
        ("location", format!("/v2/{name}/manifests/{digest}")),
        ("docker-content-digest", digest.to_string()),
    ];
    if let Some(subject) = &pushed.subject {
        response_headers.push(("oci-subject", subject.to_string()));
    }
    Ok(respond(
        StatusCode::CREATED,
        &response_headers,
        Body::empty(),
    ))
}

/// `DELETE /v2/<name>/manifests/<reference>`: a tag is removed (the manifest stays, D1); a
/// digest deletes the manifest with its tags and referrers (D3, D5).
async fn manifest_delete(app: &App, name: &str, reference: &str) -> Result<Response> {
    let repo = repository(app, name)?;
    match Reference::parse(reference)? {
        Reference::Tag(tag) => blocking(move || repo.untag(&tag)).await?,
        Reference::Digest(digest) => {
            blocking(move || repo.delete_manifest(digest.as_str()).map(drop)).await?
        }
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

// ---------------------------------------------------------------------------------------------
// Listings

/// `n` and `last` of a listing. `n` = 0 asks for nothing.
fn page(query: &Query) -> Result<(Option<usize>, Option<String>)> {
    let n = match query.get("n") {
        None | Some("") => None,
        Some(n) => Some(n.parse::<usize>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "PAGINATION_NUMBER_INVALID",
                format!("n={n:?} is not a number"),
            )
        })?),
    };
    let last = query
        .get("last")
        .filter(|l| !l.is_empty())
        .map(str::to_owned);
    Ok((n, last))
}

/// Asks for one more than `n`, to know whether a next page exists without a spurious `Link`.
fn lookahead(n: Option<usize>, last: Option<String>) -> Page {
    Page {
        n: n.map(|n| n.saturating_add(1)),
        last,
    }
}

/// Trims `items` to `n` and gives the `Link` header to the next page, if there is one.
fn next_link<T>(
    items: &mut Vec<T>,
    n: Option<usize>,
    path: &str,
    key: impl Fn(&T) -> &str,
) -> Option<String> {
    let n = n?;
    if items.len() <= n {
        return None;
    }
    items.truncate(n);
    let last = key(items.last()?);
    Some(format!(
        "<{path}?n={n}&last={}>; rel=\"next\"",
        encode(last)
    ))
}

async fn catalog(app: &App, query: &Query) -> Result<Response> {
    let (n, last) = page(query)?;
    let mut names = if n == Some(0) {
        Vec::new()
    } else {
        let registry = app.registry.clone();
        blocking(move || registry.repositories(&lookahead(n, last))).await?
    };
    let link = next_link(&mut names, n, "/v2/_catalog", |s| s.as_str());
    let mut response = json_response(StatusCode::OK, &json!({ "repositories": names }));
    add_link(&mut response, link);
    Ok(response)
}

fn add_link(response: &mut Response, link: Option<String>) {
    if let Some(value) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LINK, value);
    }
}

/// The one check of a repository an endpoint names, in one read of its state: an unknown
/// repository is `RepositoryUnknown`, one in the recycle bin `RepositorySoftDeleted` unless
/// `in_bin` (the recycle bin's endpoints work inside a soft-deleted repository: S5, S11), both
/// 404 `NAME_UNKNOWN`.
fn check_state(repo: &Repository, in_bin: bool) -> ocistore::Result<()> {
    let name = repo.name().to_owned();
    match repo.state()? {
        RepositoryState::Unknown => Err(Error::RepositoryUnknown { name }),
        RepositoryState::Deleted { .. } if !in_bin => Err(Error::RepositorySoftDeleted { name }),
        _ => Ok(()),
    }
}

async fn tags(app: &App, name: &str, query: &Query) -> Result<Response> {
    let repo = repository(app, name)?;
    let (n, last) = page(query)?;
    let mut tags = blocking(move || {
        check_state(&repo, false)?;
        if n == Some(0) {
            Ok(Vec::new())
        } else {
            repo.tags(&lookahead(n, last))
        }
    })
    .await?;
    let link = next_link(&mut tags, n, &format!("/v2/{name}/tags/list"), |t| {
        t.name.as_str()
    });
    let names: Vec<&str> = tags.iter().map(|t| t.name.as_str()).collect();
    let mut response = json_response(StatusCode::OK, &json!({ "name": name, "tags": names }));
    add_link(&mut response, link);
    Ok(response)
}

async fn referrers(app: &App, name: &str, digest: &str, query: &Query) -> Result<Response> {
    let repo = repository(app, name)?;
    let digest = Digest::parse(digest)?;
    let filter = query
        .get("artifactType")
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    let f = filter.clone();
    let manifests = blocking(move || repo.referrers(&digest, f.as_deref())).await?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    });
    let mut response = json_response(StatusCode::OK, &index);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(OCI_INDEX));
    if filter.is_some() {
        headers.insert(
            "oci-filters-applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(response)
}

// ---------------------------------------------------------------------------------------------
// The administrative API

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreRequest {
    repository: String,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    digest: Option<String>,
    /// Whether a tag live on another manifest moves: `"refuse"` (the default) or `"move_tag"`.
    #[serde(default)]
    on_conflict: OnConflict,
}

/// The history retention (T2), in days, 0 for ever: the body of a PUT and the answer. The
/// library has no type for it, only `u32`; this is the CLI's `-o json` form too.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryRetention {
    days: u32,
}

/// Reads a JSON request body, which must be an object; an empty body is `{}`.
async fn json_object(body: Body) -> Result<Value> {
    let bytes = BodyReader::new(body).read(MAX_ADMIN_BODY + 1).await?;
    if bytes.len() > MAX_ADMIN_BODY {
        return Err(admin_body_too_large());
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("request body: {e}")))?;
    // serde takes a JSON array for a struct, as its fields in order: refused here, so that
    // `[true]` is not `{"repair": true}`.
    if !value.is_object() {
        let kind = match value {
            Value::Array(_) => "an array",
            Value::String(_) => "a string",
            Value::Number(_) => "a number",
            Value::Bool(_) => "a boolean",
            _ => "null",
        };
        return Err(ApiError::bad_request(format!(
            "request body: expected a JSON object, found {kind}"
        )));
    }
    Ok(value)
}

fn from_object<T: DeserializeOwned>(value: Value) -> Result<T> {
    serde_json::from_value(value).map_err(|e| ApiError::bad_request(format!("request body: {e}")))
}

/// Reads a JSON request body; an empty body is `{}`.
async fn json_request<T: DeserializeOwned>(body: Body) -> Result<T> {
    from_object(json_object(body).await?)
}

/// Reads one of the library's option forms (`docs/json.md`). The library ignores the fields it
/// does not know; the server refuses them, since a misspelt `dry_run` would otherwise run a
/// real purge. The form writes every field it knows, so the unknown ones are those it does not
/// write back.
async fn options_request<T: DeserializeOwned + Serialize>(body: Body) -> Result<T> {
    let value = json_object(body).await?;
    let given: Vec<String> = value
        .as_object()
        .into_iter()
        .flat_map(|o| o.keys().cloned())
        .collect();
    let options: T = from_object(value)?;
    let known = serde_json::to_value(&options)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", e.to_string()))?;
    if let Some(field) = given.iter().find(|k| known.get(k.as_str()).is_none()) {
        return Err(ApiError::bad_request(format!(
            "request body: unknown field `{field}`"
        )));
    }
    Ok(options)
}

async fn admin(
    app: &App,
    rest: &str,
    method: &Method,
    query: &Query,
    body: Body,
) -> Result<Response> {
    let segs = rest
        .split('/')
        .map(|s| decode(s, false))
        .collect::<Result<Vec<_>>>()?;
    let registry = app.registry.clone();
    match (segs[0].as_str(), &segs[1..]) {
        ("deleted-repositories", []) => {
            require(method, Method::GET)?;
            let deleted = blocking(move || registry.deleted_repositories()).await?;
            answer(&json!({ "repositories": deleted }))
        }
        ("deleted", name) if !name.is_empty() => {
            require(method, Method::GET)?;
            let name = name.join("/");
            let repo = repository(app, &name)?;
            let tag = query.get("tag").map(str::to_owned);
            let (manifests, tags) = blocking(move || {
                check_state(&repo, true)?;
                Ok((
                    repo.deleted_manifests()?,
                    repo.deleted_tags(tag.as_deref())?,
                ))
            })
            .await?;
            answer(&json!({ "repository": name, "manifests": manifests, "tags": tags }))
        }
        ("restore", []) => {
            require(method, Method::POST)?;
            let request: RestoreRequest = json_request(body).await?;
            let repo = repository(app, &request.repository)?;
            let digest = request.digest.as_deref().map(Digest::parse).transpose()?;
            let tag = request.tag.clone();
            let on_conflict = request.on_conflict;
            let restored = blocking(move || {
                let what = match (tag.as_deref(), digest.as_ref()) {
                    (Some(tag), Some(digest)) => Restore::TagAndDigest(tag, digest),
                    (Some(tag), None) => Restore::Tag(tag),
                    (None, Some(digest)) => Restore::Digest(digest),
                    (None, None) => {
                        return Ok(None);
                    }
                };
                check_state(&repo, true)?;
                repo.restore(what, on_conflict).map(Some)
            })
            .await?
            .ok_or_else(|| ApiError::bad_request("a restore names a tag, a digest or both"))?;
            answer(&json!({
                "repository": request.repository,
                "tag": request.tag,
                "digest": restored,
            }))
        }
        ("policy", [what]) if what == "soft-delete" => match *method {
            Method::GET => {
                let policy = blocking(move || registry.soft_delete_policy()).await?;
                answer(&policy)
            }
            // The body is the library's policy, in its serde form, as GET answers it.
            Method::PUT => {
                let policy: SoftDeletePolicy = json_request(body).await?;
                let policy = blocking(move || {
                    registry.set_soft_delete_policy(policy)?;
                    registry.soft_delete_policy()
                })
                .await?;
                answer(&policy)
            }
            _ => Err(ApiError::method("GET, PUT")),
        },
        ("policy", [what]) if what == "history-retention" => {
            let set = match *method {
                Method::GET => None,
                Method::PUT => Some(json_request::<HistoryRetention>(body).await?.days),
                _ => return Err(ApiError::method("GET, PUT")),
            };
            let days = blocking(move || {
                if let Some(days) = set {
                    registry.set_history_retention_days(days)?;
                }
                registry.history_retention_days()
            })
            .await?;
            answer(&HistoryRetention { days })
        }
        ("purge", []) => {
            require(method, Method::POST)?;
            let options: PurgeOptions = options_request(body).await?;
            let report = blocking(move || registry.purge(&options)).await?;
            answer(&report)
        }
        ("usage", []) => {
            require(method, Method::GET)?;
            let usage = blocking(move || registry.usage()).await?;
            answer(&usage)
        }
        ("gc", []) => {
            require(method, Method::POST)?;
            let options: CollectOptions = options_request(body).await?;
            let report = blocking(move || registry.collect(&options)).await?;
            answer(&report)
        }
        ("fsck", []) => {
            require(method, Method::POST)?;
            let options: FsckOptions = options_request(body).await?;
            let (repair, grace) = (options.repair, options.grace_period);
            let report = blocking(move || registry.fsck(&options)).await?;
            let notes = fsck_notes(&report, repair, grace);
            answer(&json!({ "report": report, "notes": notes }))
        }
        ("autopurge", []) => {
            require(method, Method::POST)?;
            let report = blocking(move || registry.run_now()).await?;
            answer(&report)
        }
        ("repositories", name) if !name.is_empty() => {
            require(method, Method::DELETE)?;
            let name = name.join("/");
            let repo = repository(app, &name)?;
            blocking(move || {
                check_state(&repo, false)?;
                registry.delete_repository(&name)
            })
            .await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        ("manifests", [name @ .., reference]) if !name.is_empty() => {
            require(method, Method::DELETE)?;
            let repo = repository(app, &name.join("/"))?;
            let reference = reference.clone();
            let deleted = blocking(move || {
                check_state(&repo, false)?;
                repo.delete_manifest(&reference)
            })
            .await?;
            Ok(json_response(
                StatusCode::ACCEPTED,
                &json!({ "deleted": deleted }),
            ))
        }
        _ => Err(ApiError::no_route()),
    }
}

fn require(method: &Method, allowed: Method) -> Result<()> {
    if *method == allowed {
        return Ok(());
    }
    Err(ApiError::method(match allowed {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        _ => "DELETE",
    }))
}

/// Why the problems a check leaves were not repaired, one sentence each.
fn fsck_notes(report: &FsckReport, repair: bool, grace: Option<Duration>) -> Vec<String> {
    let left = (report.problems.len() as u64).saturating_sub(report.repaired);
    let fixable = report.problems.iter().filter(|p| p.is_repairable()).count() as u64;
    let unfixable = report.problems.len() as u64 - fixable;
    let mut notes = Vec::new();
    if left == 0 {
        return notes;
    }
    if !repair && fixable > 0 {
        notes.push(format!(
            "{fixable} of them (stray files, dangling links) would be removed by a repair: \
             {{\"repair\": true}}"
        ));
    }
    if report.too_recent > 0 {
        let grace = match grace {
            Some(grace) => short_duration(grace),
            None => "the store's default".to_owned(),
        };
        notes.push(format!(
            "{} stray files kept: modified within the grace period ({grace}), a write may still \
             be about to commit them; check again later, or repair with a shorter \
             \"grace_period\" in seconds (0 when nothing is writing to the store, as after a \
             crash)",
            report.too_recent
        ));
    }
    if unfixable > 0 {
        notes.push(format!(
            "{unfixable} of them cannot be repaired by fsck (missing or corrupt blob files, \
             wrong sizes, missing references): push the blobs again, or delete the manifests \
             naming them"
        ));
    }
    let kept = report.kept_named;
    if kept > 0 {
        notes.push(format!(
            "{kept} stray blob files kept: a link or a manifest still names them, and they hold \
             the only copy of those blobs; push them again"
        ));
    }
    notes
}

/// `1h`, `30m`, `90s`.
fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".to_owned(),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_json(response: Response) -> Value {
        let mut reader = BodyReader::new(response.into_body());
        serde_json::from_slice(&reader.read(1 << 20).await.unwrap()).unwrap()
    }

    #[tokio::test]
    async fn c4_storage_full_is_507_storage_full_in_the_spec_error_format() {
        let error = Error::StorageFull {
            path: "/srv/registry/blobs".into(),
        };
        let response = ApiError::from(error).into_response();
        assert_eq!(response.status(), StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body = body_json(response).await;
        let errors = body["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0]["code"], "STORAGE_FULL");
        let message = errors[0]["message"].as_str().unwrap();
        assert!(message.contains("storage is full"), "{message}");
        // The server's paths stay on the server.
        assert!(!message.contains("/srv/registry"), "{message}");
        assert_eq!(errors[0]["detail"], Value::Null);
        // A manifest push maps it the same.
        let push = ApiError::store(Error::StorageFull { path: "x".into() }, true);
        assert_eq!(
            (push.status, push.code),
            (StatusCode::INSUFFICIENT_STORAGE, "STORAGE_FULL")
        );
    }
}
