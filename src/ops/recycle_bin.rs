//! Restoring from the recycle bin and emptying it by hand (docs/spec.md: S6–S11, S13, S16). The bin's
//! rows are `store::bin`; autopurge, the retention clock, is in `retention`.

use crate::store::Tx;
use crate::store::bin::{deleted_tag_keys, is_binned};
use crate::store::locks::Need;
use crate::store::repositories::repository_record;
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

impl Tx<'_> {
    /// Restores a manifest; see [`Repository::restore`](crate::Repository::restore).
    pub(crate) fn restore(
        &mut self,
        name: &str,
        what: Restore<'_>,
        on_conflict: OnConflict,
    ) -> Result<Digest> {
        let (tag, digest) = match what {
            Restore::Tag(tag) => {
                validate_tag(tag)?;
                let newest = deleted_tag_keys(&self.t, name, tag)?;
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
        let record = self
            .record(name, digest.as_str())?
            .ok_or_else(|| Error::ManifestUnknown {
                repository: name.to_owned(),
                reference: digest.to_string(),
            })?;
        if record.deleted.is_some() {
            if let Some(subject) = &record.subject {
                if self
                    .record(name, subject.as_str())?
                    .is_some_and(|s| s.deleted.is_some())
                {
                    return Err(Error::SubjectDeleted {
                        repository: name.to_owned(),
                        subject: subject.clone(),
                    });
                }
            }
        }
        match tag {
            Some(tag) => self.check_tag_move(name, tag, &digest)?,
            None => self.check_lock(name, &Item::Repository, Need::Write)?,
        }
        if let Some(tag) = tag {
            self.make_way(name, tag, &digest, on_conflict)?;
        }
        self.ensure_repository(name)?;
        if record.deleted.is_some() {
            self.unbin_manifest(name, &digest, record)?;
        }
        if let Some(tag) = tag {
            let restored: Vec<u64> = deleted_tag_keys(&self.t, name, tag)?
                .into_iter()
                .filter(|(d, _)| d == &digest)
                .map(|(_, seq)| seq)
                .collect();
            for seq in restored {
                self.unbin_tag(name, digest.as_str(), tag, seq)?;
            }
            self.move_tag(name, tag, &digest, TagCause::Restore)?;
        }
        Ok(digest)
    }

    /// Clears the way for `tag` to point at `digest` (S6): a tag live on another manifest is
    /// refused with `Refuse`, and with `MoveTag` leaves it, into the bin with the policy on.
    pub(crate) fn make_way(
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

    /// Permanently removes soft-deleted repository `name` with everything in it (S16).
    pub(crate) fn purge_deleted_repository(&mut self, name: &str) -> Result<()> {
        let deleted = repository_record(&self.t, name)?.and_then(|r| r.deleted);
        if deleted.is_none() {
            return Err(Error::NotDeleted {
                repository: name.to_owned(),
                item: Item::Repository,
            });
        }
        self.purge_repository(name)
    }

    /// Permanently removes manifest `digest` from the recycle bin, with its tags in the bin
    /// (S16); the history naming it stays (T2).
    pub(crate) fn purge_deleted_manifest(&mut self, name: &str, digest: &Digest) -> Result<()> {
        if !is_binned(&self.t, name, digest.as_str())? {
            return Err(Error::NotDeleted {
                repository: name.to_owned(),
                item: Item::Manifest(digest.clone()),
            });
        }
        self.purge_manifest(name, digest.as_str())
    }

    /// Permanently removes every deletion of `tag` from the recycle bin (S16); returns how
    /// many there were.
    pub(crate) fn purge_deleted_tags(&mut self, name: &str, tag: &str) -> Result<usize> {
        validate_tag(tag)?;
        let doomed = deleted_tag_keys(&self.t, name, tag)?;
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
