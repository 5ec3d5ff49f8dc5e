//! What an operation returned, in a form the model and any system can be compared by.

use ocistore::{Error, RepositoryPurge, Timestamp};

/// What an op returned, comparable between the model and the registry.
pub type Outcome = Result<Value, ErrKind>;

/// What a successful step returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `()`.
    Unit,
    /// A digest, as text.
    Digest(String),
    /// What a manifest push did (P3, P5, P8): its digest, whether it was new to the
    /// repository, its subject and the manifest its tag pointed at before.
    Pushed {
        /// The manifest's digest.
        digest: String,
        /// Whether it was new to the repository.
        created: bool,
        /// Its subject's digest.
        subject: Option<String>,
        /// For a push by tag, the manifest the tag pointed at before.
        previous: Option<String>,
    },
    /// An upload session's offset.
    Offset(u64),
    /// A new upload session (its id is random).
    Started,
    /// A pulled manifest.
    Pulled {
        /// The digest named.
        digest: String,
        /// The media type.
        media_type: String,
        /// The body.
        body: Body,
    },
    /// What each step of a batch returned.
    Batch(Vec<Value>),
    /// What a manifest delete deleted, in order.
    Digests(Vec<String>),
    /// An upload op when no session was ever started: nothing ran.
    NoSession,
    /// How many tombstones a purge by hand removed.
    Count(usize),
    /// What an autopurge run removed, and what the retention policy deleted.
    Purged {
        /// When it ran.
        at: Timestamp,
        /// Per repository, what the purge did.
        repositories: usize,
        /// Manifest tombstones removed.
        manifests: usize,
        /// Tag tombstones removed.
        tags: usize,
        /// Untagged manifests the retention policy deleted.
        untagged_deleted: usize,
        /// Tag history events older than the history retention (T2).
        history_events: usize,
    },
    /// What a purge by filter did, or would do.
    PurgeReport {
        /// Whether nothing was, or is to be, changed.
        dry_run: bool,
        /// When it ran.
        at: Timestamp,
        /// Per repository, what the purge did.
        repositories: Vec<RepositoryPurge>,
    },
    /// `run_due` before the interval has passed.
    NotDue,
    /// What `usage` reported.
    Usage(ocistore::Usage),
    /// What `fsck` reported, without the stray blob files that failed batches leave for the
    /// collector (C2).
    Fsck(ocistore::FsckReport),
    /// What a collection reported, but its times.
    Collected(Collected),
    /// What `Registry::health` reported (its `problem` is set exactly when it is not
    /// writable).
    Health {
        /// Every call can write.
        writable: bool,
        /// The store found its disk full.
        storage_full: bool,
    },
}

/// What a collection reports, but its times.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    /// As in [`CollectReport`](ocistore::CollectReport).
    pub marked: u64,
    /// As in [`CollectReport`](ocistore::CollectReport).
    pub bytes_marked: u64,
    /// As in [`CollectReport`](ocistore::CollectReport).
    pub swept: u64,
    /// As in [`CollectReport`](ocistore::CollectReport).
    pub bytes_swept: u64,
    /// As in [`CollectReport`](ocistore::CollectReport).
    pub kept: u64,
    /// As in [`CollectReport`](ocistore::CollectReport).
    pub bytes_kept: u64,
    /// As in [`CollectReport`](ocistore::CollectReport).
    pub links_removed: u64,
    /// As in [`CollectReport`](ocistore::CollectReport).
    pub uploads_removed: u64,
}

/// An error variant with the fields the model can predict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrKind {
    /// The error variant of the same name, with the fields the model predicts.
    InvalidRepositoryName(String),
    /// The error variant of the same name, with the fields the model predicts.
    InvalidTag(String),
    /// The error variant of the same name, with the fields the model predicts.
    InvalidDigest(String),
    /// The error variant of the same name, with the reference refused.
    InvalidReference(String),
    /// The error variant of the same name, with the fields the model predicts.
    MediaTypeMismatch {
        /// The media type declared with the push.
        declared: String,
        /// The manifest body.
        body: String,
    },
    /// The error variant of the same name, with the fields the model predicts.
    DigestMismatch {
        /// What was expected.
        expected: String,
        /// What was found.
        actual: String,
    },
    /// The error variant of the same name, with the fields the model predicts.
    BlobUnknown {
        /// The repository, by name.
        repository: String,
        /// The digest, as text.
        digest: String,
    },
    /// The error variant of the same name, with the fields the model predicts.
    ManifestUnknown {
        /// The repository, by name.
        repository: String,
        /// A tag or a digest, as text.
        reference: String,
    },
    /// The error variant of the same name, with the fields the model predicts.
    UploadUnknown,
    /// The error variant of the same name, with the fields the model predicts.
    UploadOffsetMismatch {
        /// What was expected.
        expected: u64,
        /// What was found.
        actual: u64,
    },
    /// The error variant of the same name, with the fields the model predicts.
    RepositoryUnknown(String),
    /// The error variant of the same name, with the fields the model predicts.
    RepositorySoftDeleted(String),
    /// The error variant of the same name, with the fields the model predicts.
    TagUnknown {
        /// The repository, by name.
        repository: String,
        /// The tag.
        tag: String,
    },
    /// The error variant of the same name, with the fields the model predicts.
    ManifestReferenced {
        /// The repository, by name.
        repository: String,
        /// The digest, as text.
        digest: String,
        /// The index that lists it.
        index: String,
    },
    /// The error variant of the same name, with the fields the model predicts.
    ManifestSoftDeleted {
        /// The repository, by name.
        repository: String,
        /// The digest, as text.
        digest: String,
    },
    /// The error variant of the same name, with the fields the model predicts.
    TagConflict {
        /// The repository, by name.
        repository: String,
        /// The tag.
        tag: String,
        /// The digest, as text.
        digest: String,
    },
    /// The error variant of the same name, with the fields the model predicts.
    SubjectDeleted {
        /// The repository, by name.
        repository: String,
        /// The subject manifest.
        subject: String,
    },
    /// The error variant of the same name, with the fields the model predicts.
    NotDeleted {
        /// The repository, by name.
        repository: String,
        /// The item, as the error names it.
        item: String,
    },
    /// The error variant of the same name, with the fields the model predicts.
    NotInHistory {
        /// The repository, by name.
        repository: String,
        /// The tag.
        tag: String,
        /// The digest, as text.
        digest: String,
    },
    /// The error variant of the same name, with the fields the model predicts.
    InvalidSetting {
        /// The setting refused.
        setting: String,
        /// The value refused.
        value: String,
    },
    /// The error variant of the same name, with the fields the model predicts.
    Locked {
        /// The repository, by name.
        repository: String,
        /// The item, as the error names it.
        item: String,
        /// The flag that refused.
        lock: String,
    },
    /// The error variant of the same name, with the fields the model predicts.
    InvalidFilter(String),
    /// C4: a write of blob bytes refused for lack of space (the path it names is not
    /// compared).
    StorageFull,
    /// Anything the model never predicts.
    Other(String),
}

impl From<Error> for ErrKind {
    fn from(e: Error) -> ErrKind {
        kind(e)
    }
}

/// A manifest body, printed as text (lossy UTF-8) so that a failing sequence stays readable.
#[derive(Clone, PartialEq, Eq)]
pub struct Body(pub Vec<u8>);

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

/// The [`ErrKind`] of an error of the crate: what an adapter over this crate's API returns.
pub(crate) fn kind(e: Error) -> ErrKind {
    match e {
        Error::InvalidRepositoryName { name, .. } => ErrKind::InvalidRepositoryName(name),
        Error::InvalidTag { tag } => ErrKind::InvalidTag(tag),
        Error::InvalidDigest { digest, .. } => ErrKind::InvalidDigest(digest),
        Error::InvalidReference { reference, .. } => ErrKind::InvalidReference(reference),
        Error::MediaTypeMismatch { declared, body } => {
            ErrKind::MediaTypeMismatch { declared, body }
        }
        Error::DigestMismatch { expected, actual } => ErrKind::DigestMismatch {
            expected: expected.to_string(),
            actual: actual.to_string(),
        },
        Error::BlobUnknown { repository, digest } => ErrKind::BlobUnknown {
            repository,
            digest: digest.to_string(),
        },
        Error::ManifestUnknown {
            repository,
            reference,
        } => ErrKind::ManifestUnknown {
            repository,
            reference,
        },
        Error::UploadUnknown { .. } => ErrKind::UploadUnknown,
        Error::UploadOffsetMismatch {
            expected, actual, ..
        } => ErrKind::UploadOffsetMismatch { expected, actual },
        Error::RepositoryUnknown { name } => ErrKind::RepositoryUnknown(name),
        Error::RepositorySoftDeleted { name } => ErrKind::RepositorySoftDeleted(name),
        Error::TagUnknown { repository, tag } => ErrKind::TagUnknown { repository, tag },
        Error::ManifestReferenced {
            repository,
            digest,
            index,
        } => ErrKind::ManifestReferenced {
            repository,
            digest: digest.to_string(),
            index: index.to_string(),
        },
        Error::ManifestSoftDeleted { repository, digest } => ErrKind::ManifestSoftDeleted {
            repository,
            digest: digest.to_string(),
        },
        Error::TagConflict {
            repository,
            tag,
            digest,
        } => ErrKind::TagConflict {
            repository,
            tag,
            digest: digest.to_string(),
        },
        Error::SubjectDeleted {
            repository,
            subject,
        } => ErrKind::SubjectDeleted {
            repository,
            subject: subject.to_string(),
        },
        Error::NotDeleted { repository, item } => ErrKind::NotDeleted {
            repository,
            item: item.to_string(),
        },
        Error::NotInHistory {
            repository,
            tag,
            digest,
        } => ErrKind::NotInHistory {
            repository,
            tag,
            digest: digest.to_string(),
        },
        Error::InvalidSetting { setting, value, .. } => ErrKind::InvalidSetting {
            setting: setting.to_owned(),
            value,
        },
        Error::Locked {
            repository,
            item,
            lock,
        } => ErrKind::Locked {
            repository,
            item: item.to_string(),
            lock: lock.to_owned(),
        },
        Error::InvalidFilter { filter, .. } => ErrKind::InvalidFilter(filter),
        Error::StorageFull { .. } => ErrKind::StorageFull,
        other => ErrKind::Other(format!("{other:?}")),
    }
}
