//! Locks (docs/spec.md: L1, L2): `delete_enabled` and `write_enabled` on repositories, manifests and
//! tags, as Azure Container Registry has them.
//!
//! - An item is **deletable** when it and its repository have both flags true: either flag
//!   false protects it from deletion, and a repository's flags cover everything in it.
//! - An item is **writable** when it and its repository have `write_enabled` true: a
//!   write-locked tag cannot move, a write-locked repository takes no push (blob, manifest or
//!   tag) and no restore.
//! - A manifest's bytes never change (its digest names them), so its two flags both mean "not
//!   deletable".
//!
//! Only live items carry locks, and a locked item cannot be deleted, so every row of the
//! `locks` table names a live item. Tombstones in the recycle bin carry none: purging them,
//! by hand or by autopurge, is never refused.

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::Tx;
use super::manifests::record;
use super::repositories::is_live;
use super::tables::Readable;
use crate::values::{Digest, Error, Item, Result, validate_tag};

const DELETE_DISABLED: u8 = 1;
const WRITE_DISABLED: u8 = 2;

/// The locks of one item (L1). Both flags are true by default: the item is unlocked.
///
/// ```
/// use ocistore::Locks;
/// assert!(Locks::default().is_unlocked());
/// assert!(!Locks::READ_ONLY.write_enabled && !Locks::READ_ONLY.delete_enabled);
/// assert_eq!(Locks::UNLOCKED.with_delete_enabled(false), Locks::NO_DELETE);
/// ```
///
/// Its serde form is `{"delete_enabled": true, "write_enabled": false}`; a flag left out is
/// true.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Locks {
    /// Whether the item may be deleted (untagged, for a tag).
    pub delete_enabled: bool,
    /// Whether the item may change: a tag moved, a repository pushed to. False also forbids
    /// deleting it.
    pub write_enabled: bool,
}

impl Default for Locks {
    fn default() -> Self {
        Locks::UNLOCKED
    }
}

impl Locks {
    /// Both flags true: nothing is refused.
    pub const UNLOCKED: Locks = Locks {
        delete_enabled: true,
        write_enabled: true,
    };
    /// `delete_enabled` false: the item can change but not go.
    pub const NO_DELETE: Locks = Locks {
        delete_enabled: false,
        write_enabled: true,
    };
    /// Both flags false: the item can neither change nor go.
    pub const READ_ONLY: Locks = Locks {
        delete_enabled: false,
        write_enabled: false,
    };

    /// These locks with `delete_enabled` set to `enabled`.
    #[must_use]
    pub const fn with_delete_enabled(mut self, enabled: bool) -> Locks {
        self.delete_enabled = enabled;
        self
    }

    /// These locks with `write_enabled` set to `enabled`.
    #[must_use]
    pub const fn with_write_enabled(mut self, enabled: bool) -> Locks {
        self.write_enabled = enabled;
        self
    }

    /// Whether both flags are true.
    #[must_use]
    pub fn is_unlocked(&self) -> bool {
        *self == Locks::UNLOCKED
    }

    fn bits(self) -> u8 {
        (u8::from(!self.delete_enabled) * DELETE_DISABLED)
            | (u8::from(!self.write_enabled) * WRITE_DISABLED)
    }

    fn from_bits(bits: u8) -> Locks {
        Locks {
            delete_enabled: bits & DELETE_DISABLED == 0,
            write_enabled: bits & WRITE_DISABLED == 0,
        }
    }

    /// The flag that refuses `need`, if any.
    pub(crate) fn refuses(self, need: Need) -> Option<&'static str> {
        if !self.write_enabled {
            Some("write_enabled")
        } else if need == Need::Delete && !self.delete_enabled {
            Some("delete_enabled")
        } else {
            None
        }
    }
}

/// The second part of an item's key in the `locks` table: tags hold no `:` and digests always
/// do, so the two never clash, and the repository's own row sorts first.
fn key(item: &Item) -> &str {
    match item {
        Item::Repository => "",
        Item::Manifest(digest) => digest.as_str(),
        Item::Tag(tag) => tag,
    }
}

fn from_key(key: &str) -> Result<Item> {
    Ok(if key.is_empty() {
        Item::Repository
    } else if key.contains(':') {
        Item::Manifest(Digest::stored(key)?)
    } else {
        Item::Tag(key.to_owned())
    })
}

/// What an operation needs of an item's locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// To change it: push into a repository, move a tag.
    Write,
    /// To delete it, or untag it.
    Delete,
}

/// Fails unless `item` of `repo` is live: only live items carry locks. A live manifest or tag
/// is in a live repository.
pub(crate) fn check_live(r: &impl Readable, repo: &str, item: &Item) -> Result<()> {
    let live = match item {
        Item::Repository => {
            if !is_live(r, repo)? {
                return Err(Error::RepositoryUnknown {
                    name: repo.to_owned(),
                });
            }
            true
        }
        Item::Manifest(digest) => {
            record(r, repo, digest.as_str())?.is_some_and(|m| m.deleted.is_none())
        }
        Item::Tag(tag) => {
            validate_tag(tag)?;
            r.tags()?.get((repo, tag.as_str()))?.is_some()
        }
    };
    match item {
        _ if live => Ok(()),
        Item::Tag(tag) => Err(Error::TagUnknown {
            repository: repo.to_owned(),
            tag: tag.clone(),
        }),
        _ => Err(Error::ManifestUnknown {
            repository: repo.to_owned(),
            reference: key(item).to_owned(),
        }),
    }
}

/// The locks of `item` of `repo`.
pub(crate) fn locks_of(r: &impl Readable, repo: &str, item: &Item) -> Result<Locks> {
    Ok(r.locks()?
        .get((repo, key(item)))?
        .map_or(Locks::UNLOCKED, |v| Locks::from_bits(v.value())))
}

impl Tx<'_> {
    /// Sets the locks of a live item; see [`Repository::set_locks`](crate::Repository::set_locks).
    pub(crate) fn set_locks(&mut self, repo: &str, item: &Item, locks: Locks) -> Result<()> {
        check_live(&self.t, repo, item)?;
        self.write_locks(repo, item, locks)
    }

    fn write_locks(&mut self, repo: &str, item: &Item, locks: Locks) -> Result<()> {
        if locks.is_unlocked() {
            self.t.locks.remove((repo, key(item)))?;
        } else {
            self.t.locks.insert((repo, key(item)), locks.bits())?;
        }
        Ok(())
    }

    /// Removes the locks of an item a purge with `include_locked` is about to delete.
    pub(crate) fn unlock(&mut self, repo: &str, item: &Item) -> Result<()> {
        self.write_locks(repo, item, Locks::UNLOCKED)
    }

    /// The item and flag that refuse `need` on `item` of `repo`: the repository's locks
    /// first, which cover everything in it, then the item's own.
    pub(crate) fn lock_blocking(
        &self,
        repo: &str,
        item: &Item,
        need: Need,
    ) -> Result<Option<(Item, &'static str)>> {
        if let Some(flag) = locks_of(&self.t, repo, &Item::Repository)?.refuses(need) {
            return Ok(Some((Item::Repository, flag)));
        }
        if *item != Item::Repository
            && let Some(flag) = locks_of(&self.t, repo, item)?.refuses(need)
        {
            return Ok(Some((item.clone(), flag)));
        }
        Ok(None)
    }

    /// Fails with [`Error::Locked`] if a lock refuses `need` on `item` of `repo`.
    pub(crate) fn check_lock(&self, repo: &str, item: &Item, need: Need) -> Result<()> {
        match self.lock_blocking(repo, item, need)? {
            None => Ok(()),
            Some((item, lock)) => Err(locked(repo, &item, lock)),
        }
    }

    /// Fails with [`Error::Locked`] if pointing `tag` at `digest` is refused: the repository
    /// is write-locked, or the tag is and points elsewhere (L2). Writing the same again is no
    /// change, and allowed.
    pub(crate) fn check_tag_move(&self, repo: &str, tag: &str, digest: &Digest) -> Result<()> {
        let unchanged = self
            .t
            .tags
            .get((repo, tag))?
            .is_some_and(|v| v.value().0 == digest.as_str());
        let item = if unchanged {
            Item::Repository
        } else {
            Item::Tag(tag.to_owned())
        };
        self.check_lock(repo, &item, Need::Write)
    }

    /// The first locked item of `repo`, the repository included, with the flag that locks it:
    /// a repository holding one cannot be deleted (L1).
    pub(crate) fn first_lock_in(&self, repo: &str) -> Result<Option<(Item, &'static str)>> {
        let Some(row) = self.t.locks.range((repo, "")..)?.next() else {
            return Ok(None);
        };
        let (key, bits) = row?;
        let (r, item) = key.value();
        if r != repo {
            return Ok(None);
        }
        match Locks::from_bits(bits.value()).refuses(Need::Delete) {
            Some(flag) => Ok(Some((from_key(item)?, flag))),
            None => Ok(None),
        }
    }
}

/// The error for an operation `lock` refuses on `item` of `repo`.
pub(crate) fn locked(repo: &str, item: &Item, lock: &'static str) -> Error {
    Error::Locked {
        repository: repo.to_owned(),
        item: item.clone(),
        lock,
    }
}

/// Fails with [`Error::Locked`] if repository `repo` is write-locked.
pub(crate) fn check_writable(r: &impl Readable, repo: &str) -> Result<()> {
    match locks_of(r, repo, &Item::Repository)?.refuses(Need::Write) {
        None => Ok(()),
        Some(flag) => Err(locked(repo, &Item::Repository, flag)),
    }
}

/// Every locked item of `repo` with its locks, the repository first, then manifests and tags
/// in key order.
pub(crate) fn locked_items(r: &impl Readable, name: &str) -> Result<Vec<(Item, Locks)>> {
    let mut out = Vec::new();
    for row in r.locks()?.range((name, "")..)? {
        let (key, bits) = row?;
        let (repo, item) = key.value();
        if repo != name {
            break;
        }
        out.push((from_key(item)?, Locks::from_bits(bits.value())));
    }
    Ok(out)
}
