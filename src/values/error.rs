//! The crate's one error type.

use std::path::PathBuf;

use super::{Digest, Item};

/// What went wrong. Every variant carries what the caller needs to act on it: the name, the
/// digest, the expected and the actual value.
///
/// A call that returns an error has written nothing (docs/spec.md: N5): validation happens before any
/// write, and every write happens in one redb transaction that an error aborts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A repository name does not match the OCI grammar or is longer than 255 bytes (N1).
    #[error("invalid repository name {name:?}: {reason}")]
    InvalidRepositoryName {
        /// The name as given.
        name: String,
        /// Which part of the grammar it breaks.
        reason: &'static str,
    },
    /// A tag does not match `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}` (N2).
    #[error("invalid tag {tag:?}: must match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")]
    InvalidTag {
        /// The tag as given.
        tag: String,
    },
    /// A reference (of a push, a pull or a delete) is neither a valid tag nor a valid digest
    /// (N2, N3): the error says why it is neither.
    #[error(
        "invalid reference {reference:?}: not a tag (must match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}) \
         and not a digest ({digest_reason})"
    )]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// Why it is not a digest.
        digest_reason: &'static str,
    },
    /// A digest is not `algorithm:hex` with a supported algorithm and lower-case hex of the
    /// right length (N3).
    #[error("invalid digest {digest:?}: {reason}")]
    InvalidDigest {
        /// The digest as given.
        digest: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A manifest body is larger than the limit; it was refused before parsing (N4).
    #[error("manifest of {size} bytes exceeds the limit of {limit} bytes")]
    ManifestTooLarge {
        /// Size of the body received.
        size: u64,
        /// The limit (4 MiB).
        limit: u64,
    },
    /// A manifest body is not a valid manifest of its kind (P3).
    #[error("invalid manifest: {reason}")]
    InvalidManifest {
        /// What the parser found wrong.
        reason: String,
    },
    /// The manifest media type is not one this store accepts, e.g. Docker schema 1 (P3).
    #[error("unsupported manifest media type {media_type:?}: {reason}")]
    UnsupportedMediaType {
        /// The media type declared or found.
        media_type: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The declared media type disagrees with the body's `mediaType` field (P3).
    #[error("declared media type {declared:?} disagrees with the body's {body:?}")]
    MediaTypeMismatch {
        /// The media type the caller declared.
        declared: String,
        /// The media type in the body.
        body: String,
    },
    /// The bytes received do not hash to the digest they were pushed under (P1, P3).
    #[error("digest mismatch: expected {expected}, computed {actual}")]
    DigestMismatch {
        /// The digest the caller named.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// A blob is not linked to the repository (P2, P4).
    #[error("blob {digest} unknown to repository {repository}")]
    BlobUnknown {
        /// The repository asked.
        repository: String,
        /// The blob's digest.
        digest: Digest,
    },
    /// No live manifest answers to this tag or digest in the repository (P4, P6).
    #[error("manifest {reference} unknown to repository {repository}")]
    ManifestUnknown {
        /// The repository asked.
        repository: String,
        /// The tag or digest asked for.
        reference: String,
    },
    /// The repository does not exist, or is in the recycle bin (D4).
    #[error("repository {name} unknown")]
    RepositoryUnknown {
        /// The repository's name.
        name: String,
    },
    /// The repository is in the recycle bin: blobs cannot be mounted out of it (S13).
    #[error("repository {name} is soft-deleted; restore something in it first")]
    RepositorySoftDeleted {
        /// The repository's name.
        name: String,
    },
    /// No live tag of this name in the repository (D1).
    #[error("tag {tag} unknown to repository {repository}")]
    TagUnknown {
        /// The repository asked.
        repository: String,
        /// The tag.
        tag: String,
    },
    /// A manifest cannot be deleted on its own while a live index of its repository lists it
    /// (D5), nor purged while an index in the recycle bin lists it (S17): delete or purge the
    /// index, or the repository, first.
    #[error("manifest {digest} of repository {repository} is referenced by index {index}")]
    ManifestReferenced {
        /// The repository.
        repository: String,
        /// The manifest that was to be deleted.
        digest: Digest,
        /// The index that lists it: a live one if there is one, else one in the bin.
        index: Digest,
    },
    /// A push named a manifest that is in the recycle bin: restore it instead (S13).
    #[error("manifest {digest} is soft-deleted in repository {repository}; restore it instead")]
    ManifestSoftDeleted {
        /// The repository.
        repository: String,
        /// The manifest's digest.
        digest: Digest,
    },
    /// A restore would move a tag that is live on another manifest; force it to (S6).
    #[error(
        "tag {tag} of repository {repository} is live on {digest}; restore with force to move it"
    )]
    TagConflict {
        /// The repository.
        repository: String,
        /// The tag.
        tag: String,
        /// The manifest it points at now.
        digest: Digest,
    },
    /// A referrer cannot be restored while its subject is in the recycle bin (S10).
    #[error(
        "subject {subject} of the referrer is soft-deleted in repository {repository}; restore it first"
    )]
    SubjectDeleted {
        /// The repository.
        repository: String,
        /// The referrer's subject.
        subject: Digest,
    },
    /// The recycle bin holds nothing for this restore or purge (S6, S16): the item is live,
    /// was never deleted, or has expired.
    #[error("{item} is not in the recycle bin of repository {repository}")]
    NotDeleted {
        /// The repository.
        repository: String,
        /// What was asked for: the repository, a manifest or a tag.
        item: Item,
    },
    /// A lock refuses the operation (L1, L2): the item, or the repository holding it, has
    /// `delete_enabled` or `write_enabled` set to false. Unlock it with
    /// [`Repository::set_locks`](crate::Repository::set_locks) first.
    #[error("{item} of repository {repository} is locked: {lock} is false")]
    Locked {
        /// The repository.
        repository: String,
        /// The locked item: the repository itself, a manifest or a tag.
        item: Item,
        /// The lock that refuses it: `delete_enabled` or `write_enabled`.
        lock: &'static str,
    },
    /// A purge filter is not `repository-regex:tag-regex`, or one of its regular expressions
    /// does not compile (U1).
    #[error("invalid purge filter {filter:?}: {reason}")]
    InvalidFilter {
        /// The filter as given.
        filter: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A tag cannot be reverted to a digest its history does not name (T2).
    #[error(
        "tag {tag} of repository {repository} never pointed at {digest} (or that history is purged)"
    )]
    NotInHistory {
        /// The repository.
        repository: String,
        /// The tag.
        tag: String,
        /// The digest asked for.
        digest: Digest,
    },
    /// No upload session has this id (never started, finished, cancelled or expired).
    #[error("upload session {id} unknown")]
    UploadUnknown {
        /// The session id asked for.
        id: String,
    },
    /// A chunk was appended at an offset other than the session's current one.
    #[error("upload session {id} is at offset {actual}, chunk was sent for offset {expected}")]
    UploadOffsetMismatch {
        /// The session id.
        id: String,
        /// The offset the caller sent the chunk for.
        expected: u64,
        /// The session's real offset: resume from here.
        actual: u64,
    },
    /// A byte range does not fit inside the blob.
    #[error("range {start}..{end} is outside the blob of {size} bytes")]
    InvalidRange {
        /// First byte asked for.
        start: u64,
        /// One past the last byte asked for.
        end: u64,
        /// The blob's size.
        size: u64,
    },
    /// Another handle, in this process or another, holds the store in a mode this open cannot
    /// join (M1): an exclusive handle excludes every other; shared and read-only handles
    /// exclude an exclusive one.
    #[error("store {path} is already open {held_by} by another handle or process")]
    AlreadyOpen {
        /// The store's directory.
        path: PathBuf,
        /// How the store is held: [`OpenMode::Exclusive`](crate::OpenMode::Exclusive) by one
        /// handle, or [`OpenMode::Shared`](crate::OpenMode::Shared) by shared or read-only ones.
        held_by: super::OpenMode,
    },
    /// The store was created with its blobs in one place and is opened with them in another
    /// (O4): nothing is written. Open it with the recorded location.
    #[error("the store's blobs live in {recorded}, not in {given}; open it with {recorded}")]
    BlobLocationMismatch {
        /// Where the store records its blobs live: `directory`, or a URL such as
        /// `az://container/prefix`.
        recorded: String,
        /// Where this open said they live.
        given: String,
    },
    /// A blob location (a URL such as `s3://bucket/prefix`) or one of its options could not be
    /// used: an unknown scheme, a missing bucket, a setting the storage refuses.
    #[error("blob location {location}: {reason}")]
    InvalidBlobLocation {
        /// The location as given.
        location: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Another store keeps its blobs in the same place (O4): two stores there would sweep each
    /// other's blobs.
    #[error("another store keeps its blobs in {location}")]
    BlobLocationTaken {
        /// The place, such as `s3://bucket/prefix`.
        location: String,
    },
    /// A write was asked of a handle opened [read-only](crate::OpenMode::ReadOnly) (M1).
    #[error("store {path} is open read-only; open it shared to write")]
    ReadOnly {
        /// The store's directory.
        path: PathBuf,
    },
    /// A read-only open found the store as a process that died while writing left it; it
    /// needs a writing open (shared or exclusive) to recover it first (M4).
    #[error("store {path} needs recovery by a writing open before it can be opened read-only")]
    NeedsRecovery {
        /// The store's directory.
        path: PathBuf,
    },
    /// A shared or read-only open found the store in an older on-disk format while other
    /// processes have it open: the upgrade runs only in a process that has the store alone.
    #[error(
        "store {path} is in on-disk format {found}; it is upgraded to {supported} by the next \
         open that has it alone"
    )]
    NeedsUpgrade {
        /// The store's directory.
        path: PathBuf,
        /// The version found in the store.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// A write was started on a thread that already has a batch open on this store: inside a
    /// [`Registry::batch`](crate::Registry::batch) closure, use the [`Batch`](crate::Batch)'s
    /// methods, not the `Repository`'s.
    #[error("a batch is already open on store {path} in this thread; write through the batch")]
    NestedWrite {
        /// The store's directory.
        path: PathBuf,
    },
    /// The store was written in an on-disk format this version cannot read.
    #[error("store {path} has format version {found}; this build reads version {supported}")]
    UnsupportedFormat {
        /// The store's directory.
        path: PathBuf,
        /// The version found on disk.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// A setting given to the builder is out of range.
    #[error("invalid setting {setting} = {value}: {reason}")]
    InvalidSetting {
        /// The setting's name.
        setting: &'static str,
        /// The value given.
        value: String,
        /// The accepted range.
        reason: &'static str,
    },
    /// Stored metadata could not be decoded: the database was changed by something else.
    #[error("corrupt record in table {table}: {reason}")]
    Corrupt {
        /// The redb table holding the record.
        table: &'static str,
        /// What failed to decode.
        reason: String,
    },
    /// A file of the blob store could not be read or written.
    #[error("I/O error on {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The metadata database failed; the source says how.
    #[error("metadata database error")]
    Database(#[source] DatabaseError),
    /// The disk has no space left for a write: the write was refused and changed nothing
    /// (C4). Reads go on, and so do the calls that free space — deletes, purges of the recycle
    /// bin, autopurge and the collector; other writes are refused with this error until there
    /// is space again, which they notice by themselves ([`Registry::health`](crate::Registry::health)).
    #[error("no space left on the storage of {path}")]
    StorageFull {
        /// The file, directory or store that could not grow.
        path: PathBuf,
    },
}

/// How the metadata database failed: its message, and the operating system's error beneath it
/// when there is one. Opaque, so that the database's own error types stay out of this crate's
/// API.
#[derive(Debug)]
pub struct DatabaseError(redb::Error);

impl std::fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            // The I/O error is the source: printing it here too would show it twice.
            redb::Error::Io(_) => f.write_str("I/O error"),
            e => e.fmt(f),
        }
    }
}

impl std::error::Error for DatabaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            redb::Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Database(DatabaseError(e.into()))
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Attaches a path to an I/O error.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::from_io(path.into(), source))
    }
}

/// `ENOSPC` and `EDQUOT`: the file system, or the user's quota on it, is full.
pub(crate) fn is_out_of_space(e: &std::io::Error) -> bool {
    const EDQUOT: i32 = 122;
    e.kind() == std::io::ErrorKind::StorageFull
        || (cfg!(target_os = "linux") && e.raw_os_error() == Some(EDQUOT))
}

impl Error {
    /// The error for I/O error `source` on `path`: [`Error::StorageFull`] when the disk is
    /// full, else [`Error::Io`].
    pub(crate) fn from_io(path: PathBuf, source: std::io::Error) -> Error {
        if is_out_of_space(&source) {
            Error::StorageFull { path }
        } else {
            Error::Io { path, source }
        }
    }

    /// Whether the metadata database failed on I/O (and must be reopened before it works
    /// again), and whether for lack of space.
    pub(crate) fn database_io(&self) -> Option<bool> {
        match self {
            Error::Database(DatabaseError(redb::Error::Io(e))) => Some(is_out_of_space(e)),
            Error::Database(DatabaseError(redb::Error::PreviousIo)) => Some(false),
            _ => None,
        }
    }
}
