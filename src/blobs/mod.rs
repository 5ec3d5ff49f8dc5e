//! Where blob bytes live: the [`BlobStore`] trait the core owns, and [`DirectoryStore`], its
//! implementation on a local directory (docs/spec.md: O1, P1, C2).
//!
//! The core never touches blob bytes except through this trait, so a store on object storage,
//! or one that fails and crashes on command for tests, plugs in without the core knowing
//! (as redb's `StorageBackend` does for its file). The metadata stays in the database: a store
//! holds bytes and nothing else, and what it holds counts only once a record names it.

mod directory;
#[cfg(feature = "object-store")]
mod objects;

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub(crate) use directory::DIRECTORY_LOCATION;
pub use directory::DirectoryStore;
#[cfg(feature = "object-store")]
pub use objects::{ObjectStoreBlobs, RequestCounts};

use crate::values::{Algorithm, Digest, Hasher, Result};

/// The bytes of blobs and of upload sessions in progress.
///
/// Every write is durable when it returns (C2): the core commits a record naming a blob only
/// after [`put`](BlobStore::put) or [`finish_upload`](BlobStore::finish_upload) returned `Ok`.
/// A blob, once stored, is whole and verified: readers never see part of one. Removals are
/// called by the core only for bytes no record names (the collector, fsck's repair, a
/// cancelled upload), from inside a write transaction that checked so.
///
/// Implementations must be safe to call from many threads at once.
pub trait BlobStore: Send + Sync + fmt::Debug + 'static {
    /// Called once when a registry opens a writing handle on the store in directory `dir`,
    /// after it holds its database: creates what the store needs (a store whose bytes live
    /// elsewhere may keep the state of its upload sessions under `dir`, which every process
    /// sharing the store sees). When `alone` (no other handle, in any process, has the store
    /// open) it also discards temporary bytes of writes that never finished; otherwise they
    /// may be another process's writes in flight, and stay.
    ///
    /// # Errors
    ///
    /// An implementation returns [`Error::StorageFull`](crate::Error::StorageFull) when the storage
    /// has no room left, [`Error::BlobLocationTaken`](crate::Error::BlobLocationTaken) when
    /// another store keeps its blobs in the same place, [`Error::Io`](crate::Error::Io) when it
    /// fails otherwise.
    fn open(&self, dir: &Path, alone: bool) -> Result<()>;

    /// Where the blobs live, as the store records it at creation and compares at every open
    /// (O4): `directory` for the store's own directory, or a URL such as
    /// `az://container/prefix` or `s3://bucket/prefix`, without credentials.
    fn location(&self) -> String;

    /// Stores `bytes` as blob `digest`, after checking that they hash to it
    /// ([`Error::DigestMismatch`](crate::Error::DigestMismatch) otherwise, and nothing stays).
    /// A blob already stored is left as it is.
    ///
    /// # Errors
    ///
    /// An implementation returns [`Error::DigestMismatch`](crate::Error::DigestMismatch) if `bytes`
    /// do not hash to `digest`, [`Error::StorageFull`](crate::Error::StorageFull) when the storage
    /// has no room left, [`Error::Io`](crate::Error::Io) when it fails otherwise.
    fn put(&self, digest: &Digest, bytes: &[u8]) -> Result<()>;

    /// Whether a put of a blob the database has a record of still comes to the store: `true`
    /// (the default) where that costs little, so that putting a blob again restores bytes lost
    /// under the store; `false` where every call is a request, so that a known blob costs none
    /// (O1) and only its digest is checked.
    fn puts_known_blobs(&self) -> bool {
        true
    }

    /// Whether blob `digest` is stored.
    ///
    /// # Errors
    ///
    /// An implementation returns [`Error::Io`](crate::Error::Io) when the storage fails.
    fn contains(&self, digest: &Digest) -> Result<bool>;

    /// The stored length of blob `digest`, or `None` if it is not stored.
    ///
    /// # Errors
    ///
    /// An implementation returns [`Error::Io`](crate::Error::Io) when the storage fails; a blob not
    /// stored is `Ok(None)`.
    fn size(&self, digest: &Digest) -> Result<Option<u64>>;

    /// The bytes `start..end` of blob `digest`, or `None` if it is not stored. The caller
    /// checked the range against the recorded size.
    ///
    /// # Errors
    ///
    /// An implementation returns [`Error::Io`](crate::Error::Io) when the storage fails; a blob not
    /// stored is `Ok(None)`.
    fn read(&self, digest: &Digest, start: u64, end: u64) -> Result<Option<Box<dyn Read + Send>>>;

    /// Removes blob `digest`; returns whether it was there.
    ///
    /// # Errors
    ///
    /// An implementation returns [`Error::Io`](crate::Error::Io) when the storage fails; a blob not
    /// stored is `Ok(false)`.
    fn delete(&self, digest: &Digest) -> Result<bool>;

    /// Removes every blob in `digests` that is stored, in as few requests as the storage
    /// allows: the collector's sweep and fsck's repair remove a batch at a time.
    ///
    /// # Errors
    ///
    /// An implementation returns [`Error::Io`](crate::Error::Io) when the storage fails; blobs
    /// not stored are no error.
    fn delete_many(&self, digests: &[Digest]) -> Result<()> {
        for digest in digests {
            self.delete(digest)?;
        }
        Ok(())
    }

    /// How many blobs fsck reads and hashes at once: 1 for a local disk, more for storage
    /// whose every read waits on a network.
    fn read_parallelism(&self) -> usize {
        1
    }

    /// Creates the empty bytes of upload session `id`.
    ///
    /// # Errors
    ///
    /// An implementation returns [`Error::StorageFull`](crate::Error::StorageFull) when the storage
    /// has no room left, [`Error::Io`](crate::Error::Io) when it fails otherwise.
    fn create_upload(&self, id: &str) -> Result<()>;

    /// Writes `chunk` at `offset` of session `id`, durably, and drops whatever the session held
    /// past `offset` (the torn end of an append that failed part way). `mark` is what the
    /// last acknowledged append returned, as the database holds it. Returns a new mark when
    /// the session's state changed in a way only the database may keep (the id of a part sent
    /// to object storage, say): the core commits it with the new offset, in one transaction,
    /// so a part is never recorded without the bytes that cover it, nor the other way round.
    ///
    /// # Errors
    ///
    /// An implementation returns [`Error::StorageFull`](crate::Error::StorageFull) when the storage
    /// has no room left, [`Error::Io`](crate::Error::Io) when it fails otherwise.
    fn append_upload(
        &self,
        id: &str,
        offset: u64,
        chunk: &[u8],
        mark: Option<&UploadMark>,
    ) -> Result<Option<UploadMark>>;

    /// Where [`read_upload`](BlobStore::read_upload) can start reading session `id`, whose
    /// acknowledged offset is `offset` and mark `mark`, and the hashes of the bytes before
    /// that point: a store that sends an upload's parts away keeps no copy of them. The default
    /// is the start, every byte readable.
    ///
    /// # Errors
    ///
    /// An implementation returns [`Error::Io`](crate::Error::Io) when the storage fails.
    fn upload_checkpoint(
        &self,
        id: &str,
        offset: u64,
        mark: Option<&UploadMark>,
    ) -> Result<UploadCheckpoint> {
        let _ = (id, offset, mark);
        Ok(UploadCheckpoint::start())
    }

    /// Whether session `id` has bytes (a finish made them a blob, then failed to commit).
    ///
    /// # Errors
    ///
    /// An implementation returns [`Error::Io`](crate::Error::Io) when the storage fails.
    fn upload_exists(&self, id: &str) -> Result<bool> {
        Ok(self.read_upload(id, 0)?.is_some())
    }

    /// The bytes session `id` holds from offset `start` (at or past its
    /// [checkpoint](BlobStore::upload_checkpoint)) to its end, or `None` if it has none.
    /// They may run past the session's acknowledged offset (the torn end of a failed append):
    /// the caller reads only up to it.
    ///
    /// # Errors
    ///
    /// An implementation returns [`Error::Io`](crate::Error::Io) when the storage fails; a session
    /// without bytes is `Ok(None)`.
    fn read_upload(&self, id: &str, start: u64) -> Result<Option<Box<dyn Read + Send>>>;

    /// Makes the first `len` bytes of session `id` (mark `mark`) blob `digest`; whatever the
    /// session held past them (a torn append) is dropped first. When `verified`, the caller
    /// checked that they hash to `digest`; otherwise it could not (the checkpoint was past the
    /// start and kept no hasher of `digest`'s algorithm) and the store checks them,
    /// answering [`Error::DigestMismatch`](crate::Error::DigestMismatch) if they do not, with no
    /// blob stored. The session's bytes are gone afterwards, in both cases.
    ///
    /// # Errors
    ///
    /// An implementation returns [`Error::DigestMismatch`](crate::Error::DigestMismatch) as said,
    /// [`Error::StorageFull`](crate::Error::StorageFull) when the storage has no room left,
    /// [`Error::Io`](crate::Error::Io) when it fails otherwise.
    fn finish_upload(
        &self,
        id: &str,
        digest: &Digest,
        len: u64,
        mark: Option<&UploadMark>,
        verified: bool,
    ) -> Result<()>;

    /// Locks session `id` against every other holder of the lock, in this process or another,
    /// waiting for it if need be, until the returned guard is dropped; `None` if the session
    /// has no bytes. The core appends to, finishes and cancels a session only under this
    /// lock, so two processes continuing one session (M3) take turns. A lock that outlives
    /// the session's bytes (finished or cancelled meanwhile) is harmless: the core checks the
    /// session's row once it holds the lock.
    ///
    /// # Errors
    ///
    /// An implementation returns [`Error::Io`](crate::Error::Io) when the storage fails; a session
    /// without bytes is `Ok(None)`.
    fn lock_upload(&self, id: &str) -> Result<Option<UploadLock>>;

    /// Removes the bytes of session `id`, wherever they went (a store that sends parts away
    /// keeps enough beside the session to remove them without its mark, whose row may be
    /// gone); returns whether they were there.
    ///
    /// # Errors
    ///
    /// An implementation returns [`Error::Io`](crate::Error::Io) when the storage fails; a session
    /// without bytes is `Ok(false)`.
    fn delete_upload(&self, id: &str) -> Result<bool>;

    /// The ids of the sessions whose bytes the store holds: at open, the registry reconciles
    /// them with its session rows after a crash.
    ///
    /// # Errors
    ///
    /// An implementation returns [`Error::Io`](crate::Error::Io) when the storage fails.
    fn uploads(&self) -> Result<Vec<String>>;

    /// Calls `visit` with everything the store holds, some entries at a time, each read once:
    /// for the consistency check (A2) and the reconciliation of sessions after a crash.
    ///
    /// # Errors
    ///
    /// An implementation returns [`Error::Io`](crate::Error::Io) when the storage fails, and passes
    /// on any error `visit` returns, stopping there.
    fn entries(&self, visit: &mut dyn FnMut(Vec<Entry>) -> Result<()>) -> Result<()>;

    /// Removes an entry of kind [`EntryKind::Temporary`] or [`EntryKind::Unknown`] that
    /// [`entries`](BlobStore::entries) found; returns whether it was there.
    ///
    /// # Errors
    ///
    /// An implementation returns [`Error::Io`](crate::Error::Io) when the storage fails; an entry
    /// already gone is `Ok(false)`.
    fn remove_entry(&self, location: &std::path::Path) -> Result<bool>;
}

/// What a [`BlobStore`] needs the database to keep about an upload session, committed with
/// the session's offset; opaque to the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadMark(Vec<u8>);

impl UploadMark {
    /// A mark holding `bytes`.
    #[must_use]
    pub fn new(bytes: Vec<u8>) -> UploadMark {
        UploadMark(bytes)
    }

    /// The bytes the mark holds.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Where an upload session's bytes can be read back from, and the hashes of those before.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UploadCheckpoint {
    /// The first offset [`BlobStore::read_upload`] serves.
    pub offset: u64,
    /// The states of hashers fed the session's first `offset` bytes, one per algorithm the
    /// store keeps (sha256, and sha512 where it can); none at offset 0.
    pub hashers: Vec<Hasher>,
}

impl UploadCheckpoint {
    /// Every byte is readable.
    #[must_use]
    pub fn start() -> UploadCheckpoint {
        UploadCheckpoint {
            offset: 0,
            hashers: Vec::new(),
        }
    }

    /// Only bytes from `offset` are readable; `hashers` were fed those before.
    #[must_use]
    pub fn at(offset: u64, hashers: Vec<Hasher>) -> UploadCheckpoint {
        UploadCheckpoint { offset, hashers }
    }

    /// The hasher of `algorithm` brought to the checkpoint: a fresh one at offset 0, `None`
    /// if the store did not keep one.
    #[must_use]
    pub fn hasher(&self, algorithm: Algorithm) -> Option<Hasher> {
        if self.offset == 0 {
            return Some(algorithm.hasher());
        }
        self.hashers
            .iter()
            .find(|h| h.algorithm() == algorithm)
            .cloned()
    }
}

/// The lock on one upload session that [`BlobStore::lock_upload`] took, held until dropped.
pub struct UploadLock {
    _held: Box<dyn Send>,
}

impl UploadLock {
    /// A lock held for as long as `held` lives: an open locked file, say, which drops its lock
    /// when closed.
    #[must_use]
    pub fn new(held: impl Send + 'static) -> UploadLock {
        UploadLock {
            _held: Box::new(held),
        }
    }
}

impl fmt::Debug for UploadLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UploadLock").finish_non_exhaustive()
    }
}

/// One thing a [`BlobStore`] holds, as [`BlobStore::entries`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Entry {
    /// What it is.
    pub kind: EntryKind,
    /// Where it is, for reports: a path under the store's directory, or an object's key.
    pub location: PathBuf,
    /// When it was last written.
    pub modified: SystemTime,
}

impl Entry {
    /// An entry of `kind` at `location`, last written at `modified`.
    #[must_use]
    pub fn new(kind: EntryKind, location: PathBuf, modified: SystemTime) -> Entry {
        Entry {
            kind,
            location,
            modified,
        }
    }
}

/// What an [`Entry`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryKind {
    /// The bytes of a blob.
    Blob(Digest),
    /// The bytes of an upload session.
    Upload(String),
    /// The bytes of a write in progress, or of one a crash interrupted.
    Temporary,
    /// Something among the blobs not named like a blob.
    Unknown,
    /// Something among the upload sessions not named like one.
    UnknownUpload,
}

/// Reads a range of one blob.
pub struct BlobReader {
    inner: Box<dyn Read + Send>,
    len: u64,
}

impl BlobReader {
    pub(crate) fn new(inner: Box<dyn Read + Send>, len: u64) -> BlobReader {
        BlobReader { inner, len }
    }

    /// The number of bytes in the range.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the range is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobReader")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}
