//! The blob store on object storage (Azure Blob Storage, S3, GCS) through `object_store`:
//! `blobs/<algorithm>/<hex>` and `uploads/<session id>/data` under a prefix, the sessions'
//! unsent bytes and locks in the store's directory (docs/design.md, "A store in object storage").

mod remote;
mod session;
#[cfg(test)]
mod tests;

use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use object_store::multipart::MultipartStore;
use object_store::path::Path as Key;
use object_store::{GetRange, ObjectStore};

use super::{BlobStore, Entry, EntryKind, UploadCheckpoint, UploadLock, UploadMark};
use crate::values::{Digest, Error, IoContext, Result, verify};
use remote::Counters;
use session::{Mark, Session};

/// Bytes per multipart part unless [`ObjectStoreBlobs::with_part_size`] says otherwise.
const DEFAULT_PART_SIZE: usize = 8 << 20;

/// S3 and GCS refuse a part under this size, except an upload's last.
const MIN_CLOUD_PART_SIZE: usize = 5 << 20;

/// Entries per call of the `entries` visitor, and objects per page of a listing.
const PAGE: usize = 1000;

/// Chunks of a blob's body in flight between the runtime and its reader.
const READ_AHEAD: usize = 16;

/// The marker object naming the store that owns a prefix (O4).
const MARKER: &str = "ocistore-store.json";

/// Where the blob store remembers its own id, in the store's directory.
const STORE_ID_FILE: &str = "blob-store-id";

/// Upload sessions' local state, in the store's directory.
const SESSIONS_DIR: &str = "object-uploads";

/// Blobs in a container or bucket of object storage: one object per blob, written once with a
/// conditional PUT after its bytes were verified, and upload sessions sent as multipart
/// uploads, part by part, so that at most one part of a session waits on the local disk.
///
/// The ids of a session's parts go into the mark the core commits with the session's offset,
/// and its sha256 state with them: a session resumes after a restart from the mark and the
/// local tail alone. Everything sharing the store must run on one host: the sessions' locks
/// and unsent bytes are files in the store's directory. A marker object under the prefix
/// names the store that owns it, and a second store there is refused
/// ([`Error::BlobLocationTaken`]).
///
/// Calls block: the store runs its requests on a runtime of its own (two threads), so they
/// work from plain threads and from inside a caller's tokio runtime alike; async callers
/// should still call them from `spawn_blocking`, as they do for the database.
///
/// A session that ends in a multipart upload becomes its blob by a server-side copy: on S3 a
/// single `CopyObject`, which AWS limits to 5 GiB, so a larger blob pushed through a session
/// fails there at its finish.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use ocistore::{Algorithm, BlobStore, ObjectStoreBlobs};
/// use std::io::Read;
///
/// let blobs = ObjectStoreBlobs::in_memory("example");
/// blobs.open(dir.path(), true)?;
/// let digest = Algorithm::Sha256.digest(b"hello world");
/// blobs.put(&digest, b"hello world")?;
/// let mut text = String::new();
/// blobs.read(&digest, 6, 11)?.expect("stored").read_to_string(&mut text)?;
/// assert_eq!(text, "world");
/// assert_eq!(blobs.location(), "memory://example");
/// assert_eq!(blobs.requests().put, 2); // the marker and the blob
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ObjectStoreBlobs {
    inner: Arc<Inner>,
    part_size: usize,
}

struct Inner {
    location: String,
    /// Whether parts under [`MIN_CLOUD_PART_SIZE`] are refused (S3, GCS).
    large_parts: bool,
    store: Arc<dyn ObjectStore>,
    multipart: Arc<dyn MultipartStore>,
    prefix: Key,
    /// `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    counts: Counters,
    /// The store's directory, set by `open`.
    dir: RwLock<Option<PathBuf>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropping a runtime inside an async context panics; this does not wait.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl fmt::Debug for ObjectStoreBlobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStoreBlobs")
            .field("location", &self.inner.location)
            .field("part_size", &self.part_size)
            .finish_non_exhaustive()
    }
}

/// The requests an [`ObjectStoreBlobs`] sent, by kind: one count per call into object storage
/// (a listing counts once however many pages it reads, a bulk delete once however many keys).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct RequestCounts {
    /// Whole-object PUTs (blobs and the marker).
    pub put: u64,
    /// GETs, whole or ranged.
    pub get: u64,
    /// HEADs.
    pub head: u64,
    /// Listings.
    pub list: u64,
    /// Single DELETEs.
    pub delete: u64,
    /// Bulk deletes.
    pub bulk_delete: u64,
    /// Multipart uploads created.
    pub multipart_create: u64,
    /// Parts sent.
    pub multipart_part: u64,
    /// Multipart uploads completed.
    pub multipart_complete: u64,
    /// Multipart uploads aborted.
    pub multipart_abort: u64,
    /// Server-side copies.
    pub copy: u64,
}

/// Which cloud a URL names.
#[derive(Clone, Copy)]
enum Cloud {
    Azure,
    S3,
    Gcs,
}

impl ObjectStoreBlobs {
    /// The store at `url`: `az://container/prefix` (or `azure://`), `s3://bucket/prefix` or
    /// `gs://bucket/prefix`, with credentials and settings from the environment as
    /// `object_store`'s builders read them (`AZURE_STORAGE_*`, `AWS_*`, `GOOGLE_*`), and
    /// options after a `?` as [`from_url_with`](ObjectStoreBlobs::from_url_with) takes them
    /// (`s3://bucket/prefix?endpoint=http://127.0.0.1:9000&allow_http=true&part_size=8388608`;
    /// values are taken as written, not percent-decoded). Nothing is sent until a registry
    /// opens on it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidBlobLocation`] if the URL is not one of those, or the store cannot be
    /// configured from it.
    pub fn from_url(url: &str) -> Result<Self> {
        Self::from_url_with(url, std::iter::empty::<(&str, String)>())
    }

    /// As [`from_url`](ObjectStoreBlobs::from_url), with `options` on top of the environment
    /// and of the URL's: `object_store`'s configuration keys for that cloud, such as `endpoint`,
    /// `allow_http`, `use_emulator`, `access_key_id` or `region`, and `part_size` (bytes, as
    /// [`with_part_size`](ObjectStoreBlobs::with_part_size)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidBlobLocation`] if the URL is not one of those, a key is unknown to that
    /// cloud, or the store cannot be configured from them.
    pub fn from_url_with<K: AsRef<str>, V: Into<String>>(
        url: &str,
        options: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidBlobLocation {
            location: url.to_owned(),
            reason,
        };
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut pairs = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| invalid(format!("option {pair} has no value")))?;
            pairs.push((k.to_owned(), v.to_owned()));
        }
        pairs.extend(
            options
                .into_iter()
                .map(|(k, v)| (k.as_ref().to_owned(), v.into())),
        );
        let mut part_size = None;
        pairs.retain(|(k, v)| {
            let ours = k == "part_size";
            if ours {
                part_size = Some(v.clone());
            }
            !ours
        });
        let (cloud, location, prefix) = parse_location(base).map_err(invalid)?;
        let prefix = Key::parse(&prefix).map_err(|e| invalid(e.to_string()))?;
        // One body for the three builders, whose types differ only in name.
        macro_rules! build {
            ($builder:ty) => {{
                let mut b = <$builder>::from_env().with_url(base);
                for (k, v) in pairs {
                    let key = k.parse().map_err(|e| invalid(format!("option {k}: {e}")))?;
                    b = b.with_config(key, v);
                }
                let s = Arc::new(b.build().map_err(|e| invalid(e.to_string()))?);
                (
                    s.clone() as Arc<dyn ObjectStore>,
                    s as Arc<dyn MultipartStore>,
                )
            }};
        }
        let (store, multipart) = match cloud {
            Cloud::Azure => build!(object_store::azure::MicrosoftAzureBuilder),
            Cloud::S3 => build!(object_store::aws::AmazonS3Builder),
            Cloud::Gcs => build!(object_store::gcp::GoogleCloudStorageBuilder),
        };
        let large_parts = matches!(cloud, Cloud::S3 | Cloud::Gcs);
        let blobs = Self::new(location, large_parts, store, multipart, prefix);
        match part_size {
            None => Ok(blobs),
            Some(v) => blobs.with_part_size(
                v.parse()
                    .map_err(|e| invalid(format!("option part_size {v}: {e}")))?,
            ),
        }
    }

    /// A store in memory (`object_store`'s `InMemory`), at location `memory://<name>`: for
    /// tests and examples. Its objects go with it.
    #[must_use]
    pub fn in_memory(name: &str) -> Self {
        Self::over_memory(name, Arc::new(object_store::memory::InMemory::new()))
    }

    /// A store over objects in memory that another store may share (a restart, in tests).
    pub(crate) fn over_memory(name: &str, memory: Arc<object_store::memory::InMemory>) -> Self {
        Self::new(
            format!("memory://{name}"),
            false,
            memory.clone(),
            memory,
            Key::default(),
        )
    }

    fn new(
        location: String,
        large_parts: bool,
        store: Arc<dyn ObjectStore>,
        multipart: Arc<dyn MultipartStore>,
        prefix: Key,
    ) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ocistore-objects")
            .enable_all()
            .build()
            .expect("a tokio runtime of two threads can be built");
        ObjectStoreBlobs {
            inner: Arc::new(Inner {
                location,
                large_parts,
                store,
                multipart,
                prefix,
                runtime: Some(runtime),
                counts: Counters::default(),
                dir: RwLock::new(None),
            }),
            part_size: DEFAULT_PART_SIZE,
        }
    }

    /// Sends upload sessions in parts of `bytes` (8 MiB unless set): a session keeps up to
    /// that many bytes on the local disk, and costs a request per part.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidBlobLocation`] for 0, or under 5 MiB on S3 and GCS, which refuse
    /// smaller parts.
    pub fn with_part_size(mut self, bytes: usize) -> Result<Self> {
        let least = if self.inner.large_parts {
            MIN_CLOUD_PART_SIZE
        } else {
            1
        };
        if bytes < least {
            return Err(Error::InvalidBlobLocation {
                location: self.inner.location.clone(),
                reason: format!("a part of {bytes} bytes is under the least of {least}"),
            });
        }
        self.part_size = bytes;
        Ok(self)
    }

    /// The bytes per part of upload sessions.
    #[must_use]
    pub fn part_size(&self) -> usize {
        self.part_size
    }

    /// The requests sent so far, by kind, by this store and its clones.
    #[must_use]
    pub fn requests(&self) -> RequestCounts {
        let c = &self.inner.counts;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RequestCounts {
            put: get(&c.put),
            get: get(&c.get),
            head: get(&c.head),
            list: get(&c.list),
            delete: get(&c.delete),
            bulk_delete: get(&c.bulk_delete),
            multipart_create: get(&c.multipart_create),
            multipart_part: get(&c.multipart_part),
            multipart_complete: get(&c.multipart_complete),
            multipart_abort: get(&c.multipart_abort),
            copy: get(&c.copy),
        }
    }
}

/// Splits `url` into its cloud, its normalized form and its prefix.
fn parse_location(url: &str) -> std::result::Result<(Cloud, String, String), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("not a URL such as az://container/prefix")?;
    let (cloud, scheme) = match scheme.to_ascii_lowercase().as_str() {
        "az" | "azure" => (Cloud::Azure, "az"),
        "s3" => (Cloud::S3, "s3"),
        "gs" => (Cloud::Gcs, "gs"),
        other => return Err(format!("unknown scheme {other}: use az, azure, s3 or gs")),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.contains(['@', ':']) {
        // `az://container@account.dfs.core.windows.net` names its container otherwise, and
        // credentials or a port have no place here: they go in the environment or options.
        return Err(format!(
            "{authority} is not a container or bucket name: give credentials, account and \
             endpoint in the environment or options"
        ));
    }
    let bucket = authority;
    if bucket.is_empty() {
        return Err("no container or bucket".to_owned());
    }
    let prefix = path.trim_matches('/').to_owned();
    if let Some(part) = prefix.split('/').find(|p| ["blobs", "uploads"].contains(p)) {
        // Under another store's `blobs/` or `uploads/`, its listing would take this store's
        // objects for strays of its own, and its repair would delete them.
        return Err(format!(
            "a prefix cannot have a part named {part}: another store's objects live under it"
        ));
    }
    let location = if prefix.is_empty() {
        format!("{scheme}://{bucket}")
    } else {
        format!("{scheme}://{bucket}/{prefix}")
    };
    Ok((cloud, location, prefix))
}

impl BlobStore for ObjectStoreBlobs {
    fn open(&self, dir: &Path, _alone: bool) -> Result<()> {
        // `alone` has nothing to clean here: a PUT is atomic, so no temporary objects exist.
        let inner = &self.inner;
        let sessions = dir.join(SESSIONS_DIR);
        fs::create_dir_all(&sessions).at(&sessions)?;
        session::sync_dir(dir)?;
        let id = store_id(dir)?;
        let marker = inner.key(MARKER);
        let taken = || Error::BlobLocationTaken {
            location: inner.location.clone(),
        };
        let ours = serde_json::to_vec(&serde_json::json!({ "store": id }))
            .expect("a JSON object serializes");
        for _ in 0..2 {
            if let Some(found) = self.read_all(&marker)? {
                let named: Option<String> = serde_json::from_slice::<serde_json::Value>(&found)
                    .ok()
                    .and_then(|v| v.get("store")?.as_str().map(str::to_owned));
                if named.as_deref() != Some(id.as_str()) {
                    return Err(taken());
                }
                self.set_dir(dir);
                return Ok(());
            }
            if inner.put_new(&marker, Bytes::from(ours.clone()))? {
                self.set_dir(dir);
                return Ok(());
            }
            // Another open wrote one meanwhile: read it again.
        }
        Err(taken())
    }

    fn location(&self) -> String {
        self.inner.location.clone()
    }

    fn put(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        verify(digest, digest.algorithm().digest(bytes))?;
        // Already there is fine: what is there was verified before it was written.
        self.inner
            .put_new(&self.inner.blob_key(digest), Bytes::copy_from_slice(bytes))
            .map(drop)
    }

    fn puts_known_blobs(&self) -> bool {
        false
    }

    fn contains(&self, digest: &Digest) -> Result<bool> {
        Ok(self.inner.head(&self.inner.blob_key(digest))?.is_some())
    }

    fn size(&self, digest: &Digest) -> Result<Option<u64>> {
        Ok(self
            .inner
            .head(&self.inner.blob_key(digest))?
            .map(|m| m.size))
    }

    fn read(&self, digest: &Digest, start: u64, end: u64) -> Result<Option<Box<dyn Read + Send>>> {
        let key = self.inner.blob_key(digest);
        if start >= end {
            // An empty range is no GET (object storage refuses one): only whether it is there.
            let empty: Box<dyn Read + Send> = Box::new(std::io::empty());
            return Ok(self.inner.head(&key)?.map(|_| empty));
        }
        let range = match (start, end) {
            (0, u64::MAX) => None,
            (start, u64::MAX) => Some(GetRange::Offset(start)),
            (start, end) => Some(GetRange::Bounded(start..end)),
        };
        self.inner.get(&key, range)
    }

    fn delete(&self, digest: &Digest) -> Result<bool> {
        // A DELETE on S3 does not say whether the object was there.
        let key = self.inner.blob_key(digest);
        if self.inner.head(&key)?.is_none() {
            return Ok(false);
        }
        self.inner.delete(&key)?;
        Ok(true)
    }

    fn delete_many(&self, digests: &[Digest]) -> Result<()> {
        self.inner
            .delete_keys(digests.iter().map(|d| self.inner.blob_key(d)).collect())
    }

    fn read_parallelism(&self) -> usize {
        8
    }

    fn create_upload(&self, id: &str) -> Result<()> {
        Session::create(&self.inner.dir()?, id)
    }

    fn append_upload(
        &self,
        id: &str,
        offset: u64,
        chunk: &[u8],
        mark: Option<&UploadMark>,
    ) -> Result<Option<UploadMark>> {
        let session = Session::existing(&self.inner.dir()?, id)?;
        let mark = Mark::parse(mark, session.path())?;
        session.append(&self.inner, self.part_size, offset, chunk, mark)
    }

    fn upload_checkpoint(
        &self,
        id: &str,
        _offset: u64,
        mark: Option<&UploadMark>,
    ) -> Result<UploadCheckpoint> {
        let dir = self.inner.dir()?.join(SESSIONS_DIR).join(id);
        let mark = Mark::parse(mark, &dir)?;
        if mark.parts.is_empty() {
            return Ok(UploadCheckpoint::start());
        }
        Ok(UploadCheckpoint::at(mark.sent(), mark.hashers(&dir)?))
    }

    fn upload_exists(&self, id: &str) -> Result<bool> {
        Ok(Session::find(&self.inner.dir()?, id)?.is_some())
    }

    fn read_upload(&self, id: &str, start: u64) -> Result<Option<Box<dyn Read + Send>>> {
        match Session::find(&self.inner.dir()?, id)? {
            Some(session) => session.read_from(start).map(Some),
            None => Ok(None),
        }
    }

    fn finish_upload(
        &self,
        id: &str,
        digest: &Digest,
        len: u64,
        mark: Option<&UploadMark>,
        verified: bool,
    ) -> Result<()> {
        let session = Session::existing(&self.inner.dir()?, id)?;
        let mark = Mark::parse(mark, session.path())?;
        session.finish(&self.inner, digest, len, &mark, verified)
    }

    fn lock_upload(&self, id: &str) -> Result<Option<UploadLock>> {
        match Session::find(&self.inner.dir()?, id)? {
            Some(session) => session.lock(),
            None => Ok(None),
        }
    }

    fn delete_upload(&self, id: &str) -> Result<bool> {
        let inner = &self.inner;
        let data = inner.data_key(id);
        if let Some(session) = Session::find(&inner.dir()?, id)? {
            // Parts may have been sent only if a multipart upload was created.
            if let Some(upload) = session.multipart()? {
                inner.abort_multipart(&data, &upload);
                inner.delete(&data)?;
            }
            session.remove()?;
            return Ok(true);
        }
        // No local state: at most a completed upload's object, left by a crash.
        if !session::valid_id(id) || inner.head(&data)?.is_none() {
            return Ok(false);
        }
        inner.delete(&data)?;
        Ok(true)
    }

    fn uploads(&self) -> Result<Vec<String>> {
        let mut ids = session::local_ids(&self.inner.dir()?)?;
        self.inner.list("uploads", &mut |page| {
            for meta in page {
                if let Some(EntryKind::Upload(id)) = self.upload_kind(&meta.location) {
                    ids.push(id);
                }
            }
            Ok(())
        })?;
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    fn entries(&self, visit: &mut dyn FnMut(Vec<Entry>) -> Result<()>) -> Result<()> {
        let inner = &self.inner;
        let entry = |meta: object_store::ObjectMeta, kind: EntryKind| {
            let relative = inner.relative(&meta.location).unwrap_or_default().join("/");
            Entry::new(kind, PathBuf::from(relative), meta.last_modified.into())
        };
        inner.list("blobs", &mut |page| {
            visit(
                page.into_iter()
                    .map(|meta| {
                        let kind = self
                            .blob_digest(&meta.location)
                            .map_or(EntryKind::Unknown, EntryKind::Blob);
                        entry(meta, kind)
                    })
                    .collect(),
            )
        })?;
        inner.list("uploads", &mut |page| {
            visit(
                page.into_iter()
                    .map(|meta| {
                        let kind = self
                            .upload_kind(&meta.location)
                            .unwrap_or(EntryKind::UnknownUpload);
                        entry(meta, kind)
                    })
                    .collect(),
            )
        })?;
        // A read-only handle does not open its blob store: it has no sessions of its own to
        // list, and a check from it reports only what is remote.
        let Ok(dir) = inner.dir() else {
            return Ok(());
        };
        let sessions = dir.join(SESSIONS_DIR);
        let mut local = Vec::new();
        for id in session::local_ids(&dir)? {
            let path = sessions.join(&id);
            let modified = match fs::metadata(&path) {
                Ok(meta) => meta.modified().at(&path)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::Io { path, source: e }),
            };
            local.push(Entry::new(EntryKind::Upload(id), path, modified));
            if local.len() == PAGE {
                visit(std::mem::take(&mut local))?;
            }
        }
        if local.is_empty() {
            return Ok(());
        }
        visit(local)
    }

    fn remove_entry(&self, location: &Path) -> Result<bool> {
        let Some(relative) = location.to_str() else {
            return Ok(false);
        };
        let top = relative.split('/').next();
        if !matches!(top, Some("blobs" | "uploads"))
            || relative
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return Ok(false);
        }
        let key = self.inner.key(relative);
        if self.inner.head(&key)?.is_none() {
            return Ok(false);
        }
        self.inner.delete(&key)?;
        Ok(true)
    }
}

impl ObjectStoreBlobs {
    /// The blob whose object `key` is, if it is named `blobs/<algorithm>/<hex>`.
    fn blob_digest(&self, key: &Key) -> Option<Digest> {
        let parts = self.inner.relative(key)?;
        let [top, algorithm, hex] = parts.as_slice() else {
            return None;
        };
        if top != "blobs" {
            return None;
        }
        let digest = Digest::parse(&format!("{algorithm}:{hex}")).ok()?;
        (digest.algorithm().name() == algorithm && digest.hex() == hex).then_some(digest)
    }

    /// `Upload(id)` for a key named `uploads/<id>/data`, `UnknownUpload` for another one under
    /// `uploads/`.
    fn upload_kind(&self, key: &Key) -> Option<EntryKind> {
        let parts = self.inner.relative(key)?;
        match parts.as_slice() {
            [top, id, data] if top == "uploads" && data == "data" && session::valid_id(id) => {
                Some(EntryKind::Upload(id.clone()))
            }
            [top, ..] if top == "uploads" => Some(EntryKind::UnknownUpload),
            _ => None,
        }
    }

    /// Where the sessions' local state goes: set once the marker said the prefix is ours.
    fn set_dir(&self, dir: &Path) {
        *self
            .inner
            .dir
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(dir.to_owned());
    }

    /// A whole object, read into memory (the marker); `None` if absent.
    fn read_all(&self, key: &Key) -> Result<Option<Vec<u8>>> {
        let Some(mut reader) = self.inner.get(key, None)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        reader
            .read_to_end(&mut bytes)
            .at(PathBuf::from(key.as_ref()))?;
        Ok(Some(bytes))
    }
}

/// The id naming this blob store, read from the store's directory or created there at the
/// first open: written whole to a file of its own, then linked into place, so that two
/// first opens agree on one and a crash never leaves a torn one.
fn store_id(dir: &Path) -> Result<String> {
    let path = dir.join(STORE_ID_FILE);
    loop {
        match fs::read_to_string(&path) {
            Ok(id) => return Ok(id.trim().to_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Io { path, source: e }),
        }
        let id = uuid::Uuid::new_v4().to_string();
        let tmp = dir.join(format!("{STORE_ID_FILE}.{}", uuid::Uuid::new_v4().simple()));
        session::write_synced(&tmp, id.as_bytes())?;
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                session::sync_dir(dir)?;
                return Ok(id);
            }
            // Another first open won: read its id.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::Io { path, source: e }),
        }
    }
}
