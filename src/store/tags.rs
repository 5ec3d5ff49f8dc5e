//! Tags: moving a tag (docs/spec.md: P5), resolving and listing (P7), and the history of every move
//! and deletion (T1, T2).

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::Tx;
use super::tables::{Readable, Tables, decode, encode, page_under};
use crate::oci::Reference;
use crate::values::{Digest, Error, Page, Result, Timestamp, validate_tag};

/// A live tag: its name, the manifest it points at, and when it was last moved there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Tag {
    /// The tag's name.
    pub name: String,
    /// The manifest it points at.
    pub digest: Digest,
    /// When it was pushed or moved to that manifest.
    pub updated: Timestamp,
}

/// Why a tag moved or went (T1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TagCause {
    /// A push or a `tag` call pointed the tag at a manifest.
    Push,
    /// The tag was untagged.
    Untag,
    /// The manifest it pointed at, or its repository, was deleted.
    Delete,
    /// A restore or a revert pointed the tag at a manifest, or a forced one moved it away.
    Restore,
    /// A purge by filter untagged it, or deleted its manifest (U2, U3).
    Purge,
    /// The retention policy deleted its manifest, a referrer of an untagged one (R1).
    Retention,
}

/// One entry of a tag's history: the tag moved `from` one manifest `to` another; a new tag
/// has no `from`, a deleted one no `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TagEvent {
    /// The tag.
    pub tag: String,
    /// The manifest it pointed at before.
    pub from: Option<Digest>,
    /// The manifest it points at after.
    pub to: Option<Digest>,
    /// When.
    pub at: Timestamp,
    /// Why.
    pub cause: TagCause,
}

/// A [`TagEvent`] as the `tag_history` table stores it: its time in nanoseconds.
#[derive(Serialize, Deserialize)]
struct EventRecord {
    tag: String,
    from: Option<Digest>,
    to: Option<Digest>,
    #[serde(with = "crate::values::nanos")]
    at: Timestamp,
    cause: TagCause,
}

impl From<EventRecord> for TagEvent {
    fn from(e: EventRecord) -> TagEvent {
        TagEvent {
            tag: e.tag,
            from: e.from,
            to: e.to,
            at: e.at,
            cause: e.cause,
        }
    }
}

/// The manifest `tag` points at in `repo`.
pub(crate) fn resolve(r: &impl Readable, repo: &str, tag: &str) -> Result<Digest> {
    match r.tags()?.get((repo, tag))? {
        Some(row) => Digest::stored(row.value().0),
        None => Err(Error::ManifestUnknown {
            repository: repo.to_owned(),
            reference: tag.to_owned(),
        }),
    }
}

/// The digest a tag or digest names in `repo`; a digest names itself.
pub(crate) fn resolve_reference(
    r: &impl Readable,
    repo: &str,
    reference: &Reference,
) -> Result<Digest> {
    match reference {
        Reference::Tag(tag) => resolve(r, repo, tag),
        Reference::Digest(d) => Ok(d.clone()),
    }
}

/// The manifest live tag `tag` points at, if it is live.
pub(crate) fn current(r: &impl Readable, repo: &str, tag: &str) -> Result<Option<String>> {
    Ok(r.tags()?.get((repo, tag))?.map(|v| v.value().0.to_owned()))
}

/// Live tags of `repo` in lexical order, paginated (P7).
pub(crate) fn list(r: &impl Readable, repo: &str, page: &Page) -> Result<Vec<Tag>> {
    page_under(r.tags()?, repo, page, |name, (digest, updated)| {
        Ok(Tag {
            name: name.to_owned(),
            digest: Digest::stored(digest)?,
            updated: Timestamp::from_nanos(updated),
        })
    })
}

/// Whether an event of the history of `tag` in `repo` names `digest`, as `from` or `to` (T2).
pub(crate) fn history_names(
    r: &impl Readable,
    repo: &str,
    tag: &str,
    digest: &Digest,
) -> Result<bool> {
    for row in r
        .tag_history()?
        .range((repo, tag, 0)..=(repo, tag, u64::MAX))?
    {
        let event: EventRecord = decode("tag_history", row?.1.value())?;
        if event.from.as_ref() == Some(digest) || event.to.as_ref() == Some(digest) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The history of `tag` in `repo`, newest first (T1).
pub(crate) fn history(r: &impl Readable, repo: &str, tag: &str) -> Result<Vec<TagEvent>> {
    let mut out = Vec::new();
    for row in r
        .tag_history()?
        .range((repo, tag, 0)..=(repo, tag, u64::MAX))?
        .rev()
    {
        let event: EventRecord = decode("tag_history", row?.1.value())?;
        out.push(event.into());
    }
    Ok(out)
}

impl Tx<'_> {
    /// Points `tag` at manifest `digest` of `repo`, which must be live. A manifest the tag
    /// leaves stays, untagged if no other tag points at it (P5).
    pub(crate) fn tag(&mut self, repo: &str, tag: &str, digest: &Digest) -> Result<()> {
        validate_tag(tag)?;
        self.live_record(repo, digest)?;
        self.check_tag_move(repo, tag, digest)?;
        self.move_tag(repo, tag, digest, TagCause::Push).map(drop)
    }

    /// Moves a validated tag onto a live manifest; both manifests count as updated. The caller
    /// has checked the locks. Returns the manifest the tag pointed at before, if any.
    pub(crate) fn move_tag(
        &mut self,
        repo: &str,
        tag: &str,
        digest: &Digest,
        cause: TagCause,
    ) -> Result<Option<Digest>> {
        let previous = {
            let tags = &mut self.t.tags;
            let previous = tags.get((repo, tag))?.map(|v| v.value().0.to_owned());
            if previous.as_deref() == Some(digest.as_str()) {
                return Ok(Some(digest.clone()));
            }
            tags.insert((repo, tag), (digest.as_str(), self.now.as_nanos()))?;
            previous
        };
        let manifest_tags = &mut self.t.manifest_tags;
        if let Some(old) = &previous {
            manifest_tags.remove((repo, old.as_str(), tag))?;
        }
        manifest_tags.insert((repo, digest.as_str(), tag), ())?;
        let previous = previous.as_deref().map(Digest::stored).transpose()?;
        if let Some(old) = &previous {
            self.touch(repo, old.as_str())?;
        }
        self.touch(repo, digest.as_str())?;
        self.record_event(repo, tag, previous.as_ref(), Some(digest), cause)?;
        Ok(previous)
    }

    /// Removes live tag `tag` and returns the manifest it pointed at. With the soft delete
    /// policy on, the tag goes to the recycle bin (S2).
    pub(crate) fn drop_tag(&mut self, repo: &str, tag: &str, cause: TagCause) -> Result<Digest> {
        let digest = self.remove_tag(repo, tag, cause)?;
        self.touch(repo, digest.as_str())?;
        Ok(digest)
    }

    /// [`drop_tag`](Tx::drop_tag) without marking the manifest as updated: for a caller
    /// that deletes the manifest next, or touches it once after removing many of its tags.
    pub(crate) fn remove_tag(&mut self, repo: &str, tag: &str, cause: TagCause) -> Result<Digest> {
        let digest = match self.t.tags.remove((repo, tag))? {
            Some(row) => Digest::stored(row.value().0)?,
            None => {
                return Err(Error::TagUnknown {
                    repository: repo.to_owned(),
                    tag: tag.to_owned(),
                });
            }
        };
        self.t.manifest_tags.remove((repo, digest.as_str(), tag))?;
        let seq = self.record_event(repo, tag, Some(&digest), None, cause)?;
        if self.soft_delete_policy()?.enabled {
            self.bin_tag(repo, &digest, tag, seq)?;
        }
        Ok(digest)
    }

    /// Appends an event to the tag's history and returns its sequence number.
    fn record_event(
        &mut self,
        repo: &str,
        tag: &str,
        from: Option<&Digest>,
        to: Option<&Digest>,
        cause: TagCause,
    ) -> Result<u64> {
        let seq = self.next_seq()?;
        let event = EventRecord {
            tag: tag.to_owned(),
            from: from.cloned(),
            to: to.cloned(),
            at: self.now,
            cause,
        };
        self.t
            .tag_history
            .insert((repo, tag, seq), encode(&event).as_slice())?;
        self.t
            .history_by_time
            .insert((self.now.as_nanos(), repo, tag, seq), ())?;
        Ok(seq)
    }

    /// Forgets the whole tag history of `repo`: a repository that is purged takes its history
    /// with it (T2), so a repository made again under its name starts with none.
    pub(crate) fn forget_repository_history(&mut self, repo: &str) -> Result<()> {
        let mut times = Vec::new();
        for row in self
            .t
            .tag_history
            .extract_from_if((repo, "", 0)..=(repo, MAX_TAG, u64::MAX), |_, _| true)?
        {
            let (key, event) = row?;
            let (_, tag, seq) = key.value();
            let event: EventRecord = decode("tag_history", event.value())?;
            times.push((event.at.as_nanos(), tag.to_owned(), seq));
        }
        for (at, tag, seq) in times {
            self.t
                .history_by_time
                .remove((at, repo, tag.as_str(), seq))?;
        }
        Ok(())
    }

    /// Removes every history event recorded at or before `cutoff` and returns how many there
    /// were (T2). One range of the time index, then one removal per event.
    pub(crate) fn forget_history_until(&mut self, cutoff: Timestamp) -> Result<usize> {
        let end = (cutoff.as_nanos().saturating_add(1), "", "", 0);
        let mut removed = 0;
        for row in self
            .t
            .history_by_time
            .extract_from_if(..end, |_, ()| true)?
        {
            let (key, _) = row?;
            let (_, repo, tag, seq) = key.value();
            if self.t.tag_history.remove((repo, tag, seq))?.is_some() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Above every tag in key order: tags are ASCII (N2).
const MAX_TAG: &str = "\u{10ffff}";

/// Builds the time index of the history when a store has events but no index: a store last
/// written by a version that did not keep one. Every event has an index row otherwise.
pub(crate) fn index_history_by_time(t: &mut Tables<'_>) -> Result<()> {
    if t.history_by_time.first()?.is_some() || t.tag_history.first()?.is_none() {
        return Ok(());
    }
    for row in t.tag_history.iter()? {
        let (key, event) = row?;
        let (repo, tag, seq) = key.value();
        let event: EventRecord = decode("tag_history", event.value())?;
        t.history_by_time
            .insert((event.at.as_nanos(), repo, tag, seq), ())?;
    }
    Ok(())
}
