//! Repositories: the name grammar (SPEC N1) and the [`Repository`] handle through which
//! blobs, manifests and tags of one repository are read and written.

use std::sync::LazyLock;

use regex::Regex;

use redb::ReadableTable;

use crate::batch::Batch;
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::recycle_bin::{TOMBSTONE_REPOSITORY, Tombstone};
use crate::registry::Registry;
use crate::tables::{decode, encode};

/// The longest repository name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 255;

static NAME: LazyLock<Regex> = LazyLock::new(|| {
    let component = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*";
    Regex::new(&format!(r"\A{component}(?:/{component})*\z")).expect("valid regex")
});

/// Checks a repository name against the OCI distribution grammar (N1).
pub(crate) fn validate_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "must not be empty"
    } else if name.len() > MAX_NAME_LEN {
        "longer than 255 bytes"
    } else if !NAME.is_match(name) {
        "must be lower-case alphanumeric components separated by '/', each joined by '.', '_', '__' or '-'"
    } else {
        return Ok(());
    };
    Err(Error::InvalidRepositoryName {
        name: name.to_owned(),
        reason,
    })
}

/// A handle on one repository of a [`Registry`], by name. Cheap to clone.
///
/// Getting a handle writes nothing: the repository comes into being with the first blob or
/// manifest pushed or mounted into it. Its methods are documented with their concepts: blobs
/// ([`put_blob`](Repository::put_blob), [`blob`](Repository::blob), uploads), manifests
/// ([`push_manifest`](Repository::push_manifest), [`pull`](Repository::pull)) and tags
/// ([`tag`](Repository::tag), [`tags`](Repository::tags)).
#[derive(Clone, Debug)]
pub struct Repository {
    registry: Registry,
    name: String,
}

impl Repository {
    pub(crate) fn new(registry: Registry, name: String) -> Repository {
        Repository { registry, name }
    }

    /// The repository's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The registry holding it.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// What is kept of a repository.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct RepositoryRecord {
    pub created: Timestamp,
    /// Set while the repository is in the recycle bin.
    #[serde(default)]
    pub deleted: Option<Timestamp>,
}

/// The record of repository `name`, live or soft-deleted.
pub(crate) fn repository_record(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &str,
) -> Result<Option<RepositoryRecord>> {
    table
        .get(name)?
        .map(|v| decode("repositories", v.value()))
        .transpose()
}

/// Whether repository `name` exists and is not in the recycle bin.
pub(crate) fn is_live(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &str,
) -> Result<bool> {
    Ok(repository_record(table, name)?.is_some_and(|r| r.deleted.is_none()))
}

/// The key of a repository's tombstone in the `tombstones` table.
pub(crate) fn repository_tombstone(name: &str, deleted: Timestamp) -> Tombstone<'_> {
    (deleted.as_nanos(), TOMBSTONE_REPOSITORY, name, "", "", 0)
}

impl Batch<'_> {
    /// Makes repository `name` live: creates it, or brings it back out of the recycle bin,
    /// holding only what is live in it (S11, S12); its tombstones stay in the bin.
    pub(crate) fn ensure_repository(&mut self, name: &str) -> Result<()> {
        let repositories = &mut self.t.repositories;
        let record = match repository_record(repositories, name)? {
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
        repositories.insert(name, encode(&record).as_slice())?;
        Ok(())
    }
}
