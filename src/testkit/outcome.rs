//! What an operation returned, in a form the model and any system can be compared by.

#![allow(unused_imports)]
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use crate::manifest::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use crate::{
    Algorithm, Batch, CollectOptions, DeletedManifest, DeletedRepository, DeletedTag, Descriptor,
    Digest, Error, Item, Locks, Manifest, ManifestQuery, ManualClock, Page, PurgeOptions, Registry,
    RepositoryPurge, Restore, RetentionPolicy, SoftDeletePolicy, Tag, TagCause, TagEvent,
    Timestamp, Upload, parse_ago,
};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::Union;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde_json::json;
use tempfile::TempDir;

use super::{op::*, grammar::*, step::*, model::*, registry::*, strategies::*};
use super::*;

/// What an op returned, comparable between the model and the registry.
pub type Outcome = Result<Value, ErrKind>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Unit,
    Digest(String),
    /// An upload session's offset.
    Offset(u64),
    /// A new upload session (its id is random).
    Started,
    Pulled {
        digest: String,
        media_type: String,
        body: Vec<u8>,
    },
    Batch(Vec<Value>),
    /// What a manifest delete deleted, in order.
    Digests(Vec<String>),
    /// An upload op when no session was ever started: nothing ran.
    NoSession,
    /// How many tombstones a purge by hand removed.
    Count(usize),
    /// What an autopurge run removed, and what the retention policy deleted.
    Purged {
        at: Timestamp,
        repositories: usize,
        manifests: usize,
        tags: usize,
        untagged_deleted: usize,
    },
    /// What a purge by filter did, or would do.
    PurgeReport {
        dry_run: bool,
        at: Timestamp,
        repositories: Vec<RepositoryPurge>,
    },
    /// `run_due` before the interval has passed.
    NotDue,
    Collected(Collected),
}

/// What a collection reports, but its times.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    pub marked: u64,
    pub bytes_marked: u64,
    pub swept: u64,
    pub bytes_swept: u64,
    pub kept: u64,
    pub bytes_kept: u64,
    pub links_removed: u64,
    pub uploads_removed: u64,
}

/// An error variant with the fields the model can predict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrKind {
    InvalidRepositoryName(String),
    InvalidTag(String),
    InvalidDigest(String),
    MediaTypeMismatch {
        declared: String,
        body: String,
    },
    DigestMismatch {
        expected: String,
        actual: String,
    },
    BlobUnknown {
        repository: String,
        digest: String,
    },
    ManifestUnknown {
        repository: String,
        reference: String,
    },
    UploadUnknown,
    UploadOffsetMismatch {
        expected: u64,
        actual: u64,
    },
    RepositoryUnknown(String),
    RepositorySoftDeleted(String),
    TagUnknown {
        repository: String,
        tag: String,
    },
    ManifestReferenced {
        repository: String,
        digest: String,
        index: String,
    },
    ManifestSoftDeleted {
        repository: String,
        digest: String,
    },
    TagConflict {
        repository: String,
        tag: String,
        digest: String,
    },
    SubjectDeleted {
        repository: String,
        subject: String,
    },
    NotDeleted {
        repository: String,
        item: String,
    },
    NotInHistory {
        repository: String,
        tag: String,
        digest: String,
    },
    InvalidSetting {
        setting: String,
        value: String,
    },
    Locked {
        repository: String,
        item: String,
        lock: String,
    },
    InvalidFilter(String),
    /// Anything the model never predicts.
    Other(String),
}

pub(crate) fn kind(e: Error) -> ErrKind {
    match e {
        Error::InvalidRepositoryName { name, .. } => ErrKind::InvalidRepositoryName(name),
        Error::InvalidTag { tag } => ErrKind::InvalidTag(tag),
        Error::InvalidDigest { digest, .. } => ErrKind::InvalidDigest(digest),
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
        Error::NotDeleted { repository, item } => ErrKind::NotDeleted { repository, item },
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
            item,
            lock: lock.to_owned(),
        },
        Error::InvalidFilter { filter, .. } => ErrKind::InvalidFilter(filter),
        other => ErrKind::Other(format!("{other:?}")),
    }
}
