//! # ocistore-server: an OCI registry on an ocistore store
//!
//! An [OCI Distribution Specification v1.1](https://github.com/opencontainers/distribution-spec)
//! server over one store, with a small administrative JSON API for what the distribution API
//! has no words for (the recycle bin, purge, usage, the collector, fsck), modelled on Azure
//! Container Registry's. It has no authentication and no TLS: it listens on the loopback
//! interface unless told otherwise.
//!
//! ```text
//! cargo run -p ocistore-server -- --store DIR [--listen ADDR] [--log]
//!
//!   --store DIR     the store's directory (created if missing)
//!   --listen ADDR   address to listen on (default 127.0.0.1:5000; port 0 picks a free one)
//!   --log           one line per request on stderr
//! ```
//!
//! On startup it prints one line on stdout, `listening on http://HOST:PORT`, with the address
//! actually bound. Ctrl-C or SIGTERM stops it gracefully: requests in flight finish, the
//! store closes. The retention clock (autopurge of expired tombstones, S4) runs in the
//! background, checked every minute.
//!
//! ```text
//! skopeo copy --dest-tls-verify=false oci:layout:tag docker://127.0.0.1:5000/team/app:tag
//! curl -s localhost:5000/admin/usage
//! ```
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
//! | POST | `/v2/<name>/blobs/uploads/?mount=<digest>&from=<other>` | 201, 202 | cross-repository mount; 202 with a session if the blob cannot be mounted from there |
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
//! JSON in, JSON out (field names in snake_case, times in RFC 3339, unknown request fields
//! refused). Deletes there follow the soft delete policy like any other.
//!
//! | Method | Path | Body | Answer |
//! |---|---|---|---|
//! | GET | `/admin/deleted-repositories` | | `{"repositories":[{"name","deleted_at","expires_at"}]}` |
//! | GET | `/admin/deleted/<name>?tag=` | | `{"repository","manifests":[{"digest","media_type","size","tags","deleted_at","expires_at"}],"tags":[{"tag","digest","deleted_at","expires_at"}]}` (S5) |
//! | POST | `/admin/restore` | `{"repository","tag"?,"digest"?,"force"?}` | `{"repository","tag","digest"}` (S6–S11) |
//! | GET | `/admin/policy/soft-delete` | | `{"enabled","days"}` |
//! | PUT | `/admin/policy/soft-delete` | `{"enabled","days"?}` | the policy now (S1; days 1–90, kept if omitted) |
//! | POST | `/admin/purge` | `{"filters":["repo-regex:tag-regex"],"ago":"1d","keep":0,"untagged":false,"dry_run":false,"include_locked":false}` | the report: `{"dry_run","ran_at","tags_untagged","manifests_deleted","locked","repositories":[{"repository","tags_untagged","manifests_deleted","locked"}]}` (U) |
//! | GET | `/admin/usage` | | `{"blobs","bytes","soft_deleted_bytes","garbage_bytes","repositories":[{"name","deleted","blobs","bytes","unique_bytes","shared_bytes"}]}` (A1) |
//! | POST | `/admin/gc` | `{"dry_run":false,"grace":"1h"?}` | the collector's report: `{"dry_run","blobs_marked","bytes_marked","blobs_swept","bytes_swept","blobs_kept","bytes_kept","links_removed","uploads_removed","mark_ms","sweep_ms","longest_write_ms"}` (G) |
//! | POST | `/admin/fsck` | `{"repair":false,"verify_digests":true}` (optional) | `{"manifests_checked","blobs_checked","repaired","problems":[{"kind",…}]}` (A2) |
//! | POST | `/admin/autopurge` | | runs autopurge now: `{"ran_at","repositories","manifests","tags","untagged_deleted"}` (S4) |
//! | DELETE | `/admin/repositories/<name>` | | 202: deletes the repository (D4) |
//! | DELETE | `/admin/manifests/<name>/<reference>` | | 202 `{"deleted":[digests]}`: deletes the manifest a tag or digest names, with all its tags and referrers (D2, D3), as `az acr repository delete --image` does |
//!
//! `ago` and `grace` are durations such as `1d3h6m`, `30m` or `0`.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::pin;
use std::process::ExitCode;
use std::task::Poll;
use std::time::Duration;

use ocistore::Registry;

const USAGE: &str = "usage: ocistore-server --store DIR [--listen ADDR] [--log]

  --store DIR     the store's directory (created if missing)
  --listen ADDR   address to listen on (default 127.0.0.1:5000; port 0 picks a free one)
  --log           one line per request on stderr";

struct Args {
    store: PathBuf,
    listen: String,
    log: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut store = None;
    let mut listen = "127.0.0.1:5000".to_owned();
    let mut log = false;
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
            "--listen" => listen = value()?,
            "--log" => log = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let store = store.ok_or("--store DIR is required")?;
    Ok(Args { store, listen, log })
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
        if let Some(term) = term.as_mut() {
            if term.poll_recv(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await;
    eprintln!("ocistore-server: shutting down");
}

fn main() -> ExitCode {
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
    let registry = Registry::open(&args.store)?;
    let maintenance = registry.start_maintenance(Duration::from_secs(60));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen).await?;
        let addr: SocketAddr = listener.local_addr()?;
        println!("listening on http://{addr}");
        eprintln!("ocistore-server: store {}", registry.path().display());
        ocistore_server::serve(listener, registry.clone(), args.log, shutdown_signal()).await
    });
    // Store calls still running finish before the store closes.
    runtime.shutdown_timeout(Duration::from_secs(30));
    maintenance.shutdown();
    served?;
    Ok(())
}
