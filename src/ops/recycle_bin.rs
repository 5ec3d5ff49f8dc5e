//! Restoring from the recycle bin and emptying it by hand (docs/spec.md: S3, S6–S11, S13, S16,
//! S17). The bin's rows, and when what is in it expires, are `store::bin`; autopurge, the
//! retention clock, is in `retention`.

use crate::store::Tx;
use crate::store::bin::{BinnedManifests, deleted_tag_keys};
use crate::store::locks::Need;
use crate::store::manifests::Record;
use crate::store::repositories::repository_record;
use crate::store::tables::keys_under2;
use crate::store::tags::{TagCause, current};
use crate::values::{Digest, Error, Item, Result, validate_tag};

/// What a restore brings back (S6, S7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Restore<'a> {
    /// The most recently deleted manifest that carried this tag, with the tag.
    Tag(&'a str),
    /// This manifest, untagged.
    Digest(&'a Digest),
    /// This manifest with this tag.
    TagAndDigest(&'a str, &'a Digest),
}

/// What a restore or a revert does when its tag is live on another manifest (S6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OnConflict {
    /// Refuse with [`Error::TagConflict`](crate::Error::TagConflict); nothing changes.
    #[default]
    Refuse,
    /// Move the tag; the manifest it leaves keeps its other tags, and the overwritten tag goes
    /// to the recycle bin (with the soft delete policy off it is dropped).
    MoveTag,
}

/// How a restore goes (S6, S9, S17): what to do when its tag is live on another manifest, and
/// whether an index brings back the manifests it lists that are in the bin.
///
/// ```
/// use ocistore::{OnConflict, RestoreOptions};
/// let options = RestoreOptions::default()
///     .on_conflict(OnConflict::MoveTag)
///     .with_children(true);
/// assert_eq!(options.on_conflict, OnConflict::MoveTag);
/// assert!(options.with_children);
/// assert_eq!(RestoreOptions::default().on_conflict, OnConflict::Refuse);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RestoreOptions {
    /// What to do when the tag is live on another manifest; [`OnConflict::Refuse`] by default.
    pub on_conflict: OnConflict,
    /// Whether restoring an index also restores the manifests it lists that are in the bin,
    /// and theirs in turn, untagged. Off by default: S9, the children stay in the bin.
    pub with_children: bool,
}

impl RestoreOptions {
    /// These options with `on_conflict`.
    #[must_use]
    pub fn on_conflict(mut self, on_conflict: OnConflict) -> RestoreOptions {
        self.on_conflict = on_conflict;
        self
    }

    /// These options restoring an index's children in the bin with it, or not.
    #[must_use]
    pub fn with_children(mut self, with_children: bool) -> RestoreOptions {
        self.with_children = with_children;
        self
    }
}

impl Tx<'_> {
    /// Restores a manifest; see [`Repository::restore_with`](crate::Repository::restore_with).
    pub(crate) fn restore(
        &mut self,
        name: &str,
        what: Restore<'_>,
        options: &RestoreOptions,
    ) -> Result<Digest> {
        let (tag, digest) = match what {
            Restore::Tag(tag) => {
                validate_tag(tag)?;
                let newest = deleted_tag_keys(&self.t, name, tag, self.now)?;
                let (digest, _) = newest.into_iter().next().ok_or_else(|| Error::NotDeleted {
                    repository: name.to_owned(),
                    item: Item::Tag(tag.to_owned()),
                })?;
                (Some(tag), digest)
            }
            Restore::Digest(digest) => (None, digest.clone()),
            Restore::TagAndDigest(tag, digest) => {
                validate_tag(tag)?;
                (Some(tag), digest.clone())
            }
        };
        let bin = BinnedManifests::load(&self.t, name, self.now)?;
        // S6: the bin must hold something for this restore: the manifest, or the tag on it.
        let tag_binned = match tag {
            Some(tag) => deleted_tag_keys(&self.t, name, tag, self.now)?
                .iter()
                .any(|(d, _)| d == &digest),
            None => false,
        };
        let record = self.record(name, digest.as_str())?;
        let live = record.as_ref().is_some_and(|r| r.deleted.is_none());
        let record = match record {
            Some(record) if bin.holds(digest.as_str()) || (live && tag_binned) => record,
            _ => {
                let item = match tag {
                    Some(tag) if live => Item::Tag(tag.to_owned()),
                    _ => Item::Manifest(digest.clone()),
                };
                return Err(Error::NotDeleted {
                    repository: name.to_owned(),
                    item,
                });
            }
        };
        self.bring_back(name, tag, &digest, record, &bin, options)?;
        Ok(digest)
    }

    /// Brings manifest `digest`, live or in the bin (`bin`), back with `tag` (S6–S11, S17).
    pub(crate) fn bring_back(
        &mut self,
        name: &str,
        tag: Option<&str>,
        digest: &Digest,
        record: Record,
        bin: &BinnedManifests,
        options: &RestoreOptions,
    ) -> Result<()> {
        if record.deleted.is_some() {
            self.check_subject(name, &record, bin)?;
        }
        match tag {
            Some(tag) => self.check_tag_move(name, tag, digest)?,
            None => self.check_lock(name, &Item::Repository, Need::Write)?,
        }
        if let Some(tag) = tag {
            self.make_way(name, tag, digest, options.on_conflict)?;
        }
        self.ensure_repository(name)?;
        let children = options.with_children.then(|| record.children().to_vec());
        if record.deleted.is_some() {
            self.unbin_manifest(name, digest, record)?;
        }
        if let Some(tag) = tag {
            let restored: Vec<u64> = deleted_tag_keys(&self.t, name, tag, self.now)?
                .into_iter()
                .filter(|(d, _)| d == digest)
                .map(|(_, seq)| seq)
                .collect();
            for seq in restored {
                self.unbin_tag(name, digest.as_str(), tag, seq)?;
            }
            self.move_tag(name, tag, digest, TagCause::Restore)?;
        }
        for child in children.iter().flatten() {
            self.restore_child(name, &child.digest, bin)?;
        }
        Ok(())
    }

    /// Clears the way for `tag` to point at `digest` (S6): a tag live on another manifest is
    /// refused with `Refuse`, and with `MoveTag` leaves it, into the bin with the policy on.
    fn make_way(
        &mut self,
        name: &str,
        tag: &str,
        digest: &Digest,
        on_conflict: OnConflict,
    ) -> Result<()> {
        let current = current(&self.t, name, tag)?;
        if let Some(current) = current.filter(|c| c != digest.as_str()) {
            if on_conflict == OnConflict::Refuse {
                return Err(Error::TagConflict {
                    repository: name.to_owned(),
                    tag: tag.to_owned(),
                    digest: Digest::stored(&current)?,
                });
            }
            self.drop_tag(name, tag, TagCause::Restore)?;
        }
        Ok(())
    }

    /// S17: brings `digest`, listed by an index being restored, back untagged if it is in the
    /// bin, and the manifests it lists in turn, depth first in the order they are listed.
    fn restore_child(&mut self, name: &str, digest: &Digest, bin: &BinnedManifests) -> Result<()> {
        let Some(record) = self
            .record(name, digest.as_str())?
            .filter(|r| r.deleted.is_some() && bin.holds(digest.as_str()))
        else {
            return Ok(());
        };
        self.check_subject(name, &record, bin)?;
        let children = record.children().to_vec();
        self.unbin_manifest(name, digest, record)?;
        for child in &children {
            self.restore_child(name, &child.digest, bin)?;
        }
        Ok(())
    }

    /// S10: a referrer whose subject is in the bin (and has not expired) stays there.
    fn check_subject(&self, name: &str, record: &Record, bin: &BinnedManifests) -> Result<()> {
        let Some(subject) = &record.subject else {
            return Ok(());
        };
        let binned = self
            .record(name, subject.as_str())?
            .is_some_and(|s| s.deleted.is_some());
        if binned && bin.holds(subject.as_str()) {
            return Err(Error::SubjectDeleted {
                repository: name.to_owned(),
                subject: subject.clone(),
            });
        }
        Ok(())
    }

    /// Permanently removes soft-deleted repository `name` with everything in it (S16); an
    /// expired one is gone already (S3).
    pub(crate) fn purge_deleted_repository(&mut self, name: &str) -> Result<()> {
        let deleted = repository_record(&self.t, name)?.and_then(|r| r.deleted);
        let policy = self.soft_delete_policy()?;
        if deleted.is_none_or(|at| policy.expires_at(at) <= self.now) {
            return Err(Error::NotDeleted {
                repository: name.to_owned(),
                item: Item::Repository,
            });
        }
        self.purge_repository(name)
    }

    /// Permanently removes manifest `digest` from the recycle bin, with its tags in the bin
    /// (S16); the history naming it stays (T2). Refused while an index lists it (S17); an expired
    /// one is gone already (S3).
    pub(crate) fn purge_deleted_manifest(&mut self, name: &str, digest: &Digest) -> Result<()> {
        let bin = BinnedManifests::load(&self.t, name, self.now)?;
        if !bin.holds(digest.as_str()) {
            return Err(Error::NotDeleted {
                repository: name.to_owned(),
                item: Item::Manifest(digest.clone()),
            });
        }
        let live = keys_under2(&self.t.children, name, digest.as_str())?;
        let binned = bin.indexes_listing(digest.as_str(), false);
        if let Some(index) = live.first().map(String::as_str).or(binned.first().copied()) {
            return Err(Error::ManifestReferenced {
                repository: name.to_owned(),
                digest: digest.clone(),
                index: Digest::stored(index)?,
            });
        }
        self.purge_manifest(name, digest.as_str())
    }

    /// Permanently removes every deletion of `tag` from the recycle bin (S16); returns how
    /// many there were. Expired ones are gone already (S3).
    pub(crate) fn purge_deleted_tags(&mut self, name: &str, tag: &str) -> Result<usize> {
        validate_tag(tag)?;
        let doomed = deleted_tag_keys(&self.t, name, tag, self.now)?;
        if doomed.is_empty() {
            return Err(Error::NotDeleted {
                repository: name.to_owned(),
                item: Item::Tag(tag.to_owned()),
            });
        }
        for (digest, seq) in &doomed {
            self.unbin_tag(name, digest.as_str(), tag, *seq)?;
        }
        Ok(doomed.len())
    }
}
