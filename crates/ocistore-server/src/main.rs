//! # ocistore-server: an OCI registry on an ocistore store
//!
//! An [OCI Distribution Specification v1.1](https://github.com/opencontainers/distribution-spec)
//! server over one store, with a small administrative JSON API for what the distribution API
//! has no words for (the recycle bin, purge, usage, the collector, fsck), modelled on Azure
//! Container Registry's. It has no authentication and no TLS: it listens on the loopback
//! interface unless told otherwise.
//!
//! ```text
//! cargo run -p ocistore-server -- --store DIR [--blobs URL] [--listen ADDR] [--mode MODE] [--log] [limits]
//!
//!   --store DIR              the store's directory (created if missing)
//!   --blobs URL              where the blobs live: az://CONTAINER/PREFIX, s3://BUCKET/PREFIX or
//!                            gs://BUCKET/PREFIX (default: the store's directory); options after
//!                            `?`, e.g. s3://b/p?endpoint=http://127.0.0.1:9000&allow_http=true
//!   --mode MODE              shared (the default) or exclusive: how the store is opened
//!   --listen ADDR            address to listen on (default 127.0.0.1:5000; port 0 picks a free one)
//!   --log                    one line per request on stderr
//!   --header-timeout T       time to send a request head (default 10s)
//!   --body-timeout T         longest pause in a request body or in reading a response (default 30s)
//!   --idle-timeout T         how long a kept-alive connection may wait for a request (default 60s)
//!   --max-connections N      connections served at once (default from the descriptor limit)
//! ```
//!
//! On startup it prints one line on stdout, `listening on http://HOST:PORT`, with the address
//! actually bound. Ctrl-C or SIGTERM stops it gracefully: requests in flight finish, the
//! store closes. The retention clock (autopurge of expired tombstones, S4) runs in the
//! background, checked every minute.
//!
//! With `--blobs` the layers live in object storage (O1), credentials from the environment as
//! each cloud's tools read them (`AWS_ACCESS_KEY_ID`…, `AZURE_STORAGE_ACCOUNT_NAME`…,
//! `GOOGLE_APPLICATION_CREDENTIALS`…); the metadata stays in `--store`. A store remembers where
//! its blobs live and refuses to open with another `--blobs` (O4).
//!
//! The store is opened **shared** by default (M1): the `ocistore` command line can list,
//! delete, restore, purge and collect in it while the server serves, and several servers (behind
//! one load balancer) can serve one store. `--mode exclusive` keeps it to this process alone: a
//! commit costs one fsync less, and every other open, the command line's included, is refused
//! with "already open exclusive" until the server stops.
//!
//! ```text
//! skopeo copy --dest-tls-verify=false oci:layout:tag docker://127.0.0.1:5000/team/app:tag
//! curl -s localhost:5000/admin/usage
//! ```
//!
//! ## Limits and timeouts
//!
//! - A new connection has the **header timeout** (10 s) to send its first request head, and
//!   any request head that long from its first byte; a kept-alive connection that sends no
//!   next request for the **idle timeout** (60 s) is closed. Either closes without an answer.
//! - A request body that sends nothing for the **body timeout** (30 s) fails with 408
//!   `REQUEST_TIMEOUT` and the connection closes; what a PATCH appended before the stall stays
//!   in the session. A response the client does not read for as long closes the connection.
//! - At most **max connections** are served at once: by default, half the soft limit on open
//!   descriptors less 64 (a connection may hold a socket and a blob file), between 8 and 1024;
//!   the server raises its soft limit to the hard limit at start. With the bound reached, a new
//!   connection evicts the connection that has waited longest for its client between requests
//!   (idle, or still sending its request head), or else one whose body or response has been
//!   stalled for a second; with none such, it waits until a connection ends. So stalled
//!   clients cannot starve the others.
//! - A declared `Content-Length` over an endpoint's limit (manifests 4 MiB, the administrative
//!   API 1 MiB) is refused with 413 before the body is read, and before `100 Continue`.
//! - A response that leaves the request body unread (any refusal of an upload, say) carries
//!   `Connection: close`; the server then reads and drops what the client still sends for up to
//!   2 s (a lingering close), so the client reads the answer rather than a reset.
//! - Every accepted socket has `TCP_NODELAY`; blobs up to 64 KiB are read whole and sent with
//!   the response head.
//!
//! ## Health
//!
//! `GET /health` answers the store's health as JSON, `{"writable","storage_full","problem"}`:
//! 200 when it takes writes, 503 when it does not (a full disk, or a database that could not be
//! reopened after an I/O error); each call also tries what recovers the store (C5). `GET /v2/`
//! answers 200 whatever the health, since reads still work, with the header `OCIStore-Health:
//! ok`, `storage-full` or `not-writable`. A write refused on a full disk (C4) is 507
//! `STORAGE_FULL`; deletes, `POST /admin/purge`, `/admin/autopurge` and `/admin/gc` still work
//! to free space, and writes succeed again once there is room, without a restart.
//!
//! ## The distribution API
//!
//! `<name>` is a repository name and may hold `/`; `<reference>` is a tag or a digest.
//!
//! | Method | Path | Success | What |
//! |---|---|---|---|
//! | GET, HEAD | `/v2/` | 200 | API check |
//! | GET, HEAD | `/v2/<name>/blobs/<digest>` | 200, 206 | a blob; `Range: bytes=a-b` (also `a-`, `-n`) gives 206 with `Content-Range`, 416 if outside the blob |
//! | DELETE | `/v2/<name>/blobs/<digest>` | — | 405: blobs go through the collector (`POST /admin/gc`) |
//! | POST | `/v2/<name>/blobs/uploads/` | 202 | starts an upload session: `Location`, `Range`, `Docker-Upload-UUID` |
//! | POST | `/v2/<name>/blobs/uploads/?digest=<digest>` | 201 | monolithic upload, body streamed |
//! | POST | `/v2/<name>/blobs/uploads/?mount=<digest>&from=<other>` | 201, 202 | cross-repository mount; 202 with a *pending* session if the blob cannot be mounted from there: its id is `pending-<hex>`, nothing is stored until its first PATCH or PUT starts a real session (that answer's `Location` names it), and a DELETE of it is a no-op |
//! | GET | `/v2/<name>/blobs/uploads/<id>` | 204 | session status: `Range: 0-<offset-1>` (`0-0` while empty, as Docker Distribution answers) |
//! | PATCH | `/v2/<name>/blobs/uploads/<id>` | 202 | a chunk, streamed; with `Content-Range: a-b`, `a` must be the session's offset and `b-a+1` the `Content-Length` (416 otherwise) |
//! | PUT | `/v2/<name>/blobs/uploads/<id>?digest=<digest>` | 201 | closes the session, with an optional last chunk; the digest is verified |
//! | DELETE | `/v2/<name>/blobs/uploads/<id>` | 204 | cancels the session |
//! | GET, HEAD | `/v2/<name>/manifests/<reference>` | 200 | the exact bytes; `Content-Type` is the media type pushed |
//! | PUT | `/v2/<name>/manifests/<reference>` | 201 | push (`Content-Type` = media type, else the body's `mediaType`); `Location`, `Docker-Content-Digest`, `OCI-Subject` when the manifest has a subject; over 4 MiB: 413 |
//! | DELETE | `/v2/<name>/manifests/<tag>` | 202 | removes the tag; the manifest stays (D1) |
//! | DELETE | `/v2/<name>/manifests/<digest>` | 202 | deletes the manifest with its tags and referrers (D3, D5) |
//! | GET | `/v2/<name>/tags/list?n=&last=` | 200 | `{"name","tags"}`, lexical; `Link: <…>; rel="next"` when more follow |
//! | GET | `/v2/_catalog?n=&last=` | 200 | `{"repositories"}`, lexical, with `Link` likewise |
//! | GET | `/v2/<name>/referrers/<digest>?artifactType=` | 200 | an OCI image index of the referrers; `OCI-Filters-Applied: artifactType` when filtered |
//!
//! Blob and manifest responses carry `Docker-Content-Digest`; every response carries
//! `Docker-Distribution-API-Version: registry/2.0`. Request bodies of blobs are appended to
//! their session every 8 MiB, never held whole.
//!
//! Errors are `{"errors":[{"code","message","detail"}]}`:
//!
//! | ocistore::Error | Status | Code |
//! |---|---|---|
//! | `InvalidRepositoryName` | 400 | `NAME_INVALID` |
//! | `InvalidTag` | 400 | `TAG_INVALID` |
//! | `InvalidDigest`, `DigestMismatch` | 400 | `DIGEST_INVALID` |
//! | `ManifestTooLarge` | 413 | `MANIFEST_INVALID` |
//! | `InvalidManifest`, `MediaTypeMismatch` | 400 | `MANIFEST_INVALID` |
//! | `UnsupportedMediaType` (schema 1, unknown types) | 415 | `UNSUPPORTED` |
//! | `BlobUnknown` | 404 | `BLOB_UNKNOWN`; `MANIFEST_BLOB_UNKNOWN` for a manifest push |
//! | `ManifestUnknown` | 404 | `MANIFEST_UNKNOWN`; `MANIFEST_BLOB_UNKNOWN` for a push of an index with an unknown child |
//! | `TagUnknown`, `NotInHistory` | 404 | `MANIFEST_UNKNOWN` |
//! | `RepositoryUnknown`, `RepositorySoftDeleted` | 404 | `NAME_UNKNOWN` |
//! | `UploadUnknown` | 404 | `BLOB_UPLOAD_UNKNOWN` |
//! | `UploadOffsetMismatch` (and a bad `Content-Range`) | 416 | `BLOB_UPLOAD_INVALID` |
//! | `InvalidRange` | 416 | `SIZE_INVALID` |
//! | `StorageFull` (C4) | 507 | `STORAGE_FULL` (not a code of the spec: none fits) |
//! | a request body stalled for the body timeout | 408 | `REQUEST_TIMEOUT` |
//! | a declared `Content-Length` over the endpoint's limit | 413 | `MANIFEST_INVALID`, `INVALID_REQUEST` (admin API) |
//! | `Locked` | 403 | `DENIED` |
//! | `ManifestReferenced`, `ManifestSoftDeleted` | 409 | `DENIED` |
//! | `TagConflict` | 409 | `TAG_CONFLICT` (admin API) |
//! | `SubjectDeleted` | 409 | `SUBJECT_DELETED` (admin API) |
//! | `NotDeleted` | 404 | `NOT_DELETED` (admin API) |
//! | `InvalidFilter`, `InvalidSetting`, a bad JSON body | 400 | `INVALID_REQUEST` (admin API) |
//! | anything else (I/O, database, …) | 500 | `UNKNOWN` |
//!
//! A bad `n` is 400 `PAGINATION_NUMBER_INVALID`; an unknown path 404 `UNSUPPORTED`; a method a
//! path does not take 405 `UNSUPPORTED` with `Allow`.
//!
//! ## The administrative API
//!
//! JSON in, JSON out. Every report and listing is the library's own type in the serde form it
//! derives (`docs/json.md`: field names in snake_case, times in RFC 3339, durations in seconds),
//! the same as `ocistore -o json` prints; an object around one only adds context, such as the
//! repository it is of. The bodies of purge, the collector and fsck are the library's option
//! forms, `PurgeOptions`, `CollectOptions` and `FsckOptions`, durations in seconds and the
//! fields left out defaulted as the library reads them. Unknown request fields are refused (but
//! in a `SoftDeletePolicy`, read as the library reads it): a misspelt `dry_run` must not run a
//! real purge. A body that is not a JSON object is 400. Deletes there follow
//! the soft delete policy like any other.
//!
//! An endpoint naming a repository (here and `tags/list`) reads its state once
//! (`Repository::state`): an unknown repository is 404 `NAME_UNKNOWN` "repository NAME unknown";
//! one in the recycle bin is 404 `NAME_UNKNOWN` saying it is soft-deleted, except for the
//! recycle bin's own endpoints (`/admin/deleted/<name>`, `/admin/restore`), which work inside it
//! (S5, S11).
//!
//! | Method | Path | Body | Answer |
//! |---|---|---|---|
//! | GET | `/admin/deleted-repositories` | | `{"repositories":[DeletedRepository]}` |
//! | GET | `/admin/deleted/<name>?tag=` | | `{"repository","manifests":[DeletedManifest],"tags":[DeletedTag]}` (S5) |
//! | POST | `/admin/restore` | `{"repository","tag"?,"digest"?,"on_conflict"?}` | `{"repository","tag","digest"}` (S6–S11); `on_conflict` is `"refuse"` (the default: a tag live on another manifest is 409 `TAG_CONFLICT`) or `"move_tag"` (the tag moves, the overwritten one goes to the bin) |
//! | GET | `/admin/policy/soft-delete` | | the library's `SoftDeletePolicy`: `{"enabled","retention_days"}` |
//! | PUT | `/admin/policy/soft-delete` | a `SoftDeletePolicy`, `{"enabled","retention_days"}`, both required | the policy now (S1; retention_days 1–90) |
//! | GET | `/admin/policy/history-retention` | | `{"days"}`: the days tag history is kept, 0 for ever (T2; 90 unless set) |
//! | PUT | `/admin/policy/history-retention` | `{"days"}`, required, 0–3650 | `{"days"}` now; out of range: 400 `INVALID_REQUEST`, nothing changed |
//! | POST | `/admin/purge` | a `PurgeOptions`: `{"filters":["repo-regex:tag-regex"],"ago":86400.0,"keep":0,"untagged":false,"dry_run":false,"include_locked":false}`, only `filters` required | a `PurgeReport`: `{"dry_run","ran_at","repositories":[{"repository","tags_untagged","manifests_deleted","locked":[Item]}]}` (U) |
//! | GET | `/admin/usage` | | a `Usage`: `{"blobs","bytes","repositories":[RepositoryUsage],"soft_deleted_bytes","garbage_bytes"}` (A1) |
//! | GET, HEAD | `/health` | | `{"writable","storage_full","problem"}`: 200, or 503 when the store cannot write (C5) |
//! | POST | `/admin/gc` | a `CollectOptions`, `{"dry_run":false,"grace_period":3600.0}`, all optional (`grace_period` `null`: the store's) | a `CollectReport`: `{"dry_run","blobs_marked","bytes_marked","blobs_swept","bytes_swept","blobs_kept","bytes_kept","links_removed","uploads_removed","mark_time","sweep_time","longest_write"}`, times in seconds (G) |
//! | POST | `/admin/fsck` | an `FsckOptions`, `{"repair":false,"verify_digests":true,"grace_period":3600.0}`, all optional | `{"report":FsckReport,"notes":[…]}` (A2), the report `{"manifests_checked","blobs_checked","problems":[Problem],"repaired","too_recent","kept_named"}`: `too_recent` counts the stray files a repair kept for being younger than the grace period; `notes` say why what is left was not repaired |
//! | POST | `/admin/autopurge` | | runs autopurge now: an `AutopurgeReport`, `{"ran_at","repositories","manifests","tags","untagged_deleted","history_events"}` (S4, T2) |
//! | DELETE | `/admin/repositories/<name>` | | 202: deletes the repository (D4) |
//! | DELETE | `/admin/manifests/<name>/<reference>` | | 202 `{"deleted":[digests]}`: deletes the manifest a tag or digest names, with all its tags and referrers (D2, D3), as `az acr repository delete --image` does |

use std::future::poll_fn;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::pin;
use std::process::ExitCode;
use std::task::Poll;
use std::time::Duration;

use ocistore::{ObjectStoreBlobs, OpenMode, Registry};
use ocistore_server::Config;

const USAGE: &str =
    "usage: ocistore-server --store DIR [--blobs URL] [--listen ADDR] [--mode MODE] [--log] [limits]

  --store DIR              the store's directory (created if missing)
  --blobs URL              where the blobs live: az://CONTAINER/PREFIX, s3://BUCKET/PREFIX or
                           gs://BUCKET/PREFIX, options after ?, credentials from the environment
                           (default: the store's directory; also OCISTORE_BLOBS)
  --mode MODE              shared (default): the ocistore command line and other servers may
                           open the store too; exclusive: this server alone, one fsync less a
                           commit
  --listen ADDR            address to listen on (default 127.0.0.1:5000; port 0 picks a free one)
  --log                    one line per request on stderr
  --header-timeout T       time to send a request head (default 10s)
  --body-timeout T         longest pause in a request body or in reading a response (default 30s)
  --idle-timeout T         how long a kept-alive connection may wait for a request (default 60s)
  --max-connections N      connections served at once (default: from the descriptor limit)

  T is a duration such as 10s, 1m or 500ms.";

struct Args {
    store: PathBuf,
    blobs: Option<String>,
    listen: String,
    mode: OpenMode,
    config: Config,
}

fn duration(flag: &str, value: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(value)
        .map_err(|e| format!("{flag}: {e} (expected e.g. 10s, 1m, 500ms)"))?;
    if d.is_zero() {
        return Err(format!("{flag} must be more than 0"));
    }
    Ok(d)
}

fn parse_args() -> Result<Args, String> {
    let mut store = None;
    let mut blobs = std::env::var("OCISTORE_BLOBS").ok();
    let mut listen = "127.0.0.1:5000".to_owned();
    let mut mode = OpenMode::Shared;
    let mut config = Config::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--store" => store = Some(PathBuf::from(value()?)),
            "--blobs" => blobs = Some(value()?),
            "--listen" => listen = value()?,
            "--mode" => {
                mode = match value()?.as_str() {
                    "shared" => OpenMode::Shared,
                    "exclusive" => OpenMode::Exclusive,
                    _ => return Err("--mode takes shared or exclusive".into()),
                };
            }
            "--log" => config.log = true,
            "--header-timeout" => config.header_timeout = duration(&flag, &value()?)?,
            "--body-timeout" => config.body_timeout = duration(&flag, &value()?)?,
            "--idle-timeout" => config.idle_timeout = duration(&flag, &value()?)?,
            "--max-connections" => {
                config.max_connections = value()?
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or("--max-connections takes a number above 0")?;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let store = store.ok_or("--store DIR is required")?;
    Ok(Args {
        store,
        blobs,
        listen,
        mode,
        config,
    })
}

/// Completes at Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut ctrl_c = pin!(tokio::signal::ctrl_c());
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    poll_fn(|cx| {
        if ctrl_c.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        #[cfg(unix)]
        if let Some(term) = term.as_mut()
            && term.poll_recv(cx).is_ready()
        {
            return Poll::Ready(());
        }
        Poll::Pending
    })
    .await;
    eprintln!("ocistore-server: shutting down");
}

fn main() -> ExitCode {
    // Before the defaults, which follow the limit on open descriptors.
    ocistore_server::raise_open_file_limit();
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("ocistore-server: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ocistore-server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut builder = Registry::builder().mode(args.mode);
    if let Some(url) = &args.blobs {
        builder = builder.blob_store(ObjectStoreBlobs::from_url(url)?);
    }
    let registry = builder.open(&args.store)?;
    let maintenance = registry.start_maintenance(Duration::from_secs(60));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen).await?;
        let addr: SocketAddr = listener.local_addr()?;
        println!("listening on http://{addr}");
        let c = &args.config;
        eprintln!(
            "ocistore-server: store {} ({}), blobs in {}; at most {} connections; timeouts: header {:?}, body {:?}, idle {:?}",
            registry.path().display(),
            registry.mode(),
            args.blobs.as_deref().unwrap_or("the store's directory"),
            c.max_connections,
            c.header_timeout,
            c.body_timeout,
            c.idle_timeout,
        );
        ocistore_server::serve_with(listener, registry.clone(), args.config, shutdown_signal())
            .await
    });
    // Store calls still running finish before the store closes.
    runtime.shutdown_timeout(Duration::from_secs(30));
    maintenance.shutdown();
    served?;
    Ok(())
}
