//! Repositories: their records, live or in the recycle bin (docs/spec.md: S11, S12).

use redb::ReadableTable;

use super::tables::{Readable, decode, encode, repository_tombstone};
use super::{Tx, meta};
use crate::values::{Page, Result, Timestamp};

/// What is kept of a repository. Times are stored as nanoseconds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct RepositoryRecord {
    #[serde(with = "crate::values::nanos")]
    pub created: Timestamp,
    /// Set while the repository is in the recycle bin.
    #[serde(default, with = "crate::values::nanos::option")]
    pub deleted: Option<Timestamp>,
}

/// The record of repository `name`, live or soft-deleted.
pub(crate) fn repository_record(r: &impl Readable, name: &str) -> Result<Option<RepositoryRecord>> {
    r.repositories()?
        .get(name)?
        .map(|v| decode("repositories", v.value()))
        .transpose()
}

/// Whether repository `name` exists and is not in the recycle bin.
pub(crate) fn is_live(r: &impl Readable, name: &str) -> Result<bool> {
    Ok(repository_record(r, name)?.is_some_and(|r| r.deleted.is_none()))
}

/// Whether a repository exists, and where (S5, S11): see
/// [`Repository::state`](crate::Repository::state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RepositoryState {
    /// The repository is live: pulls and listings see it.
    Live {
        /// When it was created.
        created: Timestamp,
    },
    /// The repository is in the recycle bin: a restore or a push brings it back.
    Deleted {
        /// When it was created.
        created: Timestamp,
        /// When it was deleted.
        deleted_at: Timestamp,
        /// When it expires, by the soft delete policy in force now (S3).
        expires_at: Timestamp,
    },
    /// No repository has this name, or its tombstone has expired.
    Unknown,
}

/// The state of repository `name` at time `now` (an expired tombstone is gone, S3).
pub(crate) fn state(r: &impl Readable, name: &str, now: Timestamp) -> Result<RepositoryState> {
    Ok(match repository_record(r, name)? {
        None => RepositoryState::Unknown,
        Some(RepositoryRecord {
            created,
            deleted: None,
        }) => RepositoryState::Live { created },
        Some(RepositoryRecord {
            created,
            deleted: Some(deleted_at),
        }) => {
            let expires_at = meta::soft_delete(r)?.expires_at(deleted_at);
            if expires_at <= now {
                RepositoryState::Unknown
            } else {
                RepositoryState::Deleted {
                    created,
                    deleted_at,
                    expires_at,
                }
            }
        }
    })
}

/// Live repository names in lexical order, paginated (P7).
pub(crate) fn live(r: &impl Readable, page: &Page) -> Result<Vec<String>> {
    let start = page.last.as_deref().unwrap_or("");
    let mut out = Vec::new();
    for row in r.repositories()?.range(start..)? {
        if out.len() == page.limit() {
            break;
        }
        let (name, record) = row?;
        let record: RepositoryRecord = decode("repositories", record.value())?;
        if record.deleted.is_none() && page.last.as_deref() != Some(name.value()) {
            out.push(name.value().to_owned());
        }
    }
    Ok(out)
}

impl Tx<'_> {
    /// Makes repository `name` live: creates it, or brings it back out of the recycle bin,
    /// holding only what is live in it (S11, S12); its tombstones stay in the bin.
    pub(crate) fn ensure_repository(&mut self, name: &str) -> Result<()> {
        let record = match repository_record(&self.t, name)? {
            Some(RepositoryRecord { deleted: None, .. }) => return Ok(()),
            Some(mut record) => {
                if let Some(deleted) = record.deleted.take() {
                    self.t
                        .tombstones
                        .remove(repository_tombstone(name, deleted))?;
                }
                record
            }
            None => RepositoryRecord {
                created: self.now,
                deleted: None,
            },
        };
        self.t
            .repositories
            .insert(name, encode(&record).as_slice())?;
        Ok(())
    }
}
