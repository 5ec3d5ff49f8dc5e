//! The recycle bin's rows: tombstones of tags, manifests and repositories, listing them, and
//! removing them for good (docs/spec.md: S2, S3, S5, S16). What a delete or a restore decides is in
//! `ops`; this keeps the rows and their indexes in step.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use redb::ReadableTable;

use super::Tx;
use super::manifests::{Record, record};
use super::meta;
use super::repositories::{RepositoryRecord, repository_record};
use super::tables::{
    Readable, TOMBSTONE_MANIFEST, TOMBSTONE_TAG, decode, encode, keys_under2, page_under,
    repository_tombstone,
};
use crate::values::{Digest, Page, Result, SoftDeletePolicy, Timestamp};

/// When a manifest that a live index lists expires: never, while the index is live (S17).
pub(crate) const NEVER: Timestamp = Timestamp::from_nanos(u64::MAX);

/// A repository in the recycle bin.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct DeletedRepository {
    /// Its name.
    pub name: String,
    /// When it was deleted.
    pub deleted_at: Timestamp,
    /// When autopurge removes it, by the retention in force now (S3).
    pub expires_at: Timestamp,
}

/// A manifest in the recycle bin.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct DeletedManifest {
    /// Its digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// The names of its tags in the bin, in lexical order.
    pub tags: Vec<String>,
    /// When it was deleted.
    pub deleted_at: Timestamp,
    /// When it expires, by the retention in force now (S3): `deleted_at + retention`, or later
    /// if an index in the bin that lists it expires later; `Timestamp::from_nanos(u64::MAX)`
    /// while a live index lists it (S17).
    pub expires_at: Timestamp,
}

/// A tag in the recycle bin: `tag` pointed at `digest` when it was deleted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct DeletedTag {
    /// The tag.
    pub tag: String,
    /// The manifest it pointed at.
    pub digest: Digest,
    /// When it was deleted.
    pub deleted_at: Timestamp,
    /// When autopurge removes it, by the retention in force now (S3).
    pub expires_at: Timestamp,
}

/// Soft-deleted repositories that have not expired at `now`, most recently deleted first
/// (S3, S5).
pub(crate) fn deleted_repositories(
    r: &impl Readable,
    now: Timestamp,
) -> Result<Vec<DeletedRepository>> {
    let policy = meta::soft_delete(r)?;
    let mut out = Vec::new();
    for row in r.repositories()?.iter()? {
        let (name, record) = row?;
        let record: RepositoryRecord = decode("repositories", record.value())?;
        if let Some(deleted) = record.deleted {
            let expires_at = policy.expires_at(deleted);
            if now < expires_at {
                out.push(DeletedRepository {
                    name: name.value().to_owned(),
                    deleted_at: deleted,
                    expires_at,
                });
            }
        }
    }
    out.sort_by(|a, b| b.deleted_at.cmp(&a.deleted_at).then(a.name.cmp(&b.name)));
    Ok(out)
}

/// The manifests of `repo` in the recycle bin that have not expired at `now`, most recently
/// deleted first (S3, S5, S17).
pub(crate) fn deleted_manifests(
    r: &impl Readable,
    name: &str,
    now: Timestamp,
) -> Result<Vec<DeletedManifest>> {
    let bin = BinnedManifests::load(r, name, now)?;
    let deleted_tags = r.deleted_tags()?;
    let policy = meta::soft_delete(r)?;
    let mut out = Vec::new();
    for (digest, (deleted_at, expires_at)) in &bin.manifests {
        if *expires_at <= now {
            continue;
        }
        let Some(record) = record(r, name, digest)? else {
            continue;
        };
        let mut tags = Vec::new();
        for row in deleted_tags.range(
            (name, digest.as_str(), "", 0)..=(name, digest.as_str(), "\u{10ffff}", u64::MAX),
        )? {
            let (key, deleted) = row?;
            if now < policy.expires_at(Timestamp::from_nanos(deleted.value())) {
                tags.push(key.value().2.to_owned());
            }
        }
        tags.dedup();
        out.push(DeletedManifest {
            digest: Digest::stored(digest)?,
            media_type: record.media_type,
            size: record.size,
            tags,
            deleted_at: *deleted_at,
            expires_at: *expires_at,
        });
    }
    out.sort_by(|a, b| {
        b.deleted_at
            .cmp(&a.deleted_at)
            .then(a.digest.cmp(&b.digest))
    });
    Ok(out)
}

/// The tags of `repo` in the recycle bin that have not expired at `now`, or only those named
/// `tag`, most recently deleted first (S3, S5).
pub(crate) fn deleted_tags(
    r: &impl Readable,
    name: &str,
    tag: Option<&str>,
    now: Timestamp,
) -> Result<Vec<DeletedTag>> {
    let policy = meta::soft_delete(r)?;
    let mut out = Vec::new();
    for row in r.deleted_tags()?.range((name, "", "", 0)..)? {
        let (key, deleted) = row?;
        let (repo, digest, t, seq) = key.value();
        if repo != name {
            break;
        }
        let deleted_at = Timestamp::from_nanos(deleted.value());
        if tag.is_none_or(|tag| tag == t) && now < policy.expires_at(deleted_at) {
            out.push((
                seq,
                DeletedTag {
                    tag: t.to_owned(),
                    digest: Digest::stored(digest)?,
                    deleted_at,
                    expires_at: policy.expires_at(deleted_at),
                },
            ));
        }
    }
    // Newest first; the sequence number orders deletions made at the same time.
    out.sort_by(|(sa, a), (sb, b)| b.deleted_at.cmp(&a.deleted_at).then(sb.cmp(sa)));
    Ok(out.into_iter().map(|(_, t)| t).collect())
}

/// The manifests of one repository in the recycle bin, expired or not, with when each
/// expires (S3, S17), and the indexes among them.
#[derive(Debug)]
pub(crate) struct BinnedManifests {
    /// Digest → (deleted at, expires at).
    pub manifests: BTreeMap<String, (Timestamp, Timestamp)>,
    /// The indexes in the bin → the manifests they list.
    indexes: BTreeMap<String, Vec<String>>,
    now: Timestamp,
}

impl BinnedManifests {
    /// Reads the bin of `repo`. A manifest expires at its `deleted_at + retention` (the
    /// retention in force), or at the expiry of an index in the bin that lists it if that is
    /// later, and never while a live index lists it: an index never loses a child (S17).
    pub(crate) fn load(r: &impl Readable, repo: &str, now: Timestamp) -> Result<Self> {
        let policy: SoftDeletePolicy = meta::soft_delete(r)?;
        let live_children = r.children()?;
        let mut manifests = BTreeMap::new();
        let mut indexes = BTreeMap::new();
        for row in r.deleted_manifests()?.range((repo, "")..)? {
            let (key, deleted) = row?;
            let (rp, digest) = key.value();
            if rp != repo {
                break;
            }
            let deleted_at = Timestamp::from_nanos(deleted.value());
            let held = !keys_under2(live_children, repo, digest)?.is_empty();
            let expires_at = if held {
                NEVER
            } else {
                policy.expires_at(deleted_at)
            };
            manifests.insert(digest.to_owned(), (deleted_at, expires_at));
            if let Some(record) = record(r, repo, digest)? {
                let children = record.children();
                if !children.is_empty() {
                    let children = children.iter().map(|c| c.digest.to_string()).collect();
                    indexes.insert(digest.to_owned(), children);
                }
            }
        }
        // An index hands its expiry down to the manifests it lists, and they to theirs: a
        // digest names its children, so there is no cycle, and this ends after as many rounds
        // as the deepest nesting.
        loop {
            let mut changed = false;
            for (index, children) in &indexes {
                let at = manifests[index].1;
                for child in children {
                    if let Some((_, child_at)) = manifests.get_mut(child)
                        && *child_at < at
                    {
                        *child_at = at;
                        changed = true;
                    }
                }
            }
            if !changed {
                return Ok(BinnedManifests {
                    manifests,
                    indexes,
                    now,
                });
            }
        }
    }

    /// Whether `digest` is in the bin and has not expired: expired is gone (S3).
    pub(crate) fn holds(&self, digest: &str) -> bool {
        self.manifests
            .get(digest)
            .is_some_and(|&(_, at)| self.now < at)
    }

    /// Whether `digest` is in the bin and has expired, though autopurge has not removed it yet.
    pub(crate) fn expired(&self, digest: &str) -> bool {
        self.manifests
            .get(digest)
            .is_some_and(|&(_, at)| at <= self.now)
    }

    /// The indexes in the bin that list `digest`, expired ones or the others, by digest.
    pub(crate) fn indexes_listing(&self, digest: &str, expired: bool) -> Vec<&str> {
        let listing = self.indexes.iter().filter(|(index, children)| {
            self.expired(index) == expired && children.iter().any(|c| c == digest)
        });
        listing.map(|(index, _)| index.as_str()).collect()
    }
}

/// (digest, seq) of the bin's entries for `tag` in `repo` that have not expired at `now`,
/// newest first (S3).
pub(crate) fn deleted_tag_keys(
    r: &impl Readable,
    repo: &str,
    tag: &str,
    now: Timestamp,
) -> Result<Vec<(Digest, u64)>> {
    let policy = meta::soft_delete(r)?;
    let mut out = Vec::new();
    for row in r.deleted_tags()?.range((repo, "", "", 0)..)? {
        let (key, deleted) = row?;
        let (r, digest, t, seq) = key.value();
        if r != repo {
            break;
        }
        if t == tag && now < policy.expires_at(Timestamp::from_nanos(deleted.value())) {
            out.push((Digest::stored(digest)?, seq));
        }
    }
    out.sort_by_key(|&(_, seq)| std::cmp::Reverse(seq));
    Ok(out)
}

/// A tombstone taken out of the table: (kind, repository, digest, tag, seq).
pub(crate) type ExpiredTombstone = (u8, String, String, String, u64);

impl Tx<'_> {
    /// Puts a tag that was just removed into the bin, under the sequence number of its event.
    pub(crate) fn bin_tag(
        &mut self,
        repo: &str,
        digest: &Digest,
        tag: &str,
        seq: u64,
    ) -> Result<()> {
        let now = self.now.as_nanos();
        self.t
            .deleted_tags
            .insert((repo, digest.as_str(), tag, seq), now)?;
        self.t
            .tombstones
            .insert((now, TOMBSTONE_TAG, repo, digest.as_str(), tag, seq), ())?;
        Ok(())
    }

    /// Takes one tag entry out of the bin (restored or purged); false if it was not there.
    pub(crate) fn unbin_tag(
        &mut self,
        repo: &str,
        digest: &str,
        tag: &str,
        seq: u64,
    ) -> Result<bool> {
        let Some(deleted) = self
            .t
            .deleted_tags
            .remove((repo, digest, tag, seq))?
            .map(|v| v.value())
        else {
            return Ok(false);
        };
        self.t
            .tombstones
            .remove((deleted, TOMBSTONE_TAG, repo, digest, tag, seq))?;
        Ok(true)
    }

    /// Deletes a live manifest whose tags are gone: into the bin with the policy on, for good
    /// with it off (S2, D2–D4).
    pub(crate) fn delete_untagged_manifest(&mut self, repo: &str, digest: &Digest) -> Result<()> {
        if !self.soft_delete_policy()?.enabled {
            return self.purge_manifest(repo, digest.as_str());
        }
        let mut record = self.live_record(repo, digest)?;
        self.unindex_live(repo, digest.as_str(), &record)?;
        record.deleted = Some(self.now);
        self.put_record(repo, digest.as_str(), &record)?;
        let now = self.now.as_nanos();
        self.t
            .deleted_manifests
            .insert((repo, digest.as_str()), now)?;
        self.t
            .tombstones
            .insert((now, TOMBSTONE_MANIFEST, repo, digest.as_str(), "", 0), ())?;
        Ok(())
    }

    /// Brings a tombstoned manifest back to life; it counts as updated now.
    pub(crate) fn unbin_manifest(
        &mut self,
        repo: &str,
        digest: &Digest,
        mut record: Record,
    ) -> Result<()> {
        let Some(deleted) = record.deleted.take() else {
            return Ok(());
        };
        self.t.deleted_manifests.remove((repo, digest.as_str()))?;
        self.t.tombstones.remove((
            deleted.as_nanos(),
            TOMBSTONE_MANIFEST,
            repo,
            digest.as_str(),
            "",
            0,
        ))?;
        record.updated = self.now;
        self.put_record(repo, digest.as_str(), &record)?;
        self.index_live(repo, digest.as_str(), &record)
    }

    /// Permanently removes a manifest, live or tombstoned, with its tags in the bin; the
    /// history naming it stays (T2). Its live tags must be gone already.
    pub(crate) fn purge_manifest(&mut self, repo: &str, digest: &str) -> Result<()> {
        if self.purge_binned_manifest(repo, digest)? {
            return Ok(());
        }
        let Some(record) = self.record(repo, digest)? else {
            return Ok(());
        };
        self.unindex_live(repo, digest, &record)?;
        self.forget_manifest(repo, digest)
    }

    /// Permanently removes a manifest if it is in the bin, and tells whether it was. Its
    /// record is not read: a tombstone is in no live index (invariant 6), which keeps
    /// autopurge to a few row removals per manifest.
    pub(crate) fn purge_binned_manifest(&mut self, repo: &str, digest: &str) -> Result<bool> {
        let Some(deleted) = self
            .t
            .deleted_manifests
            .remove((repo, digest))?
            .map(|v| v.value())
        else {
            return Ok(false);
        };
        self.t
            .tombstones
            .remove((deleted, TOMBSTONE_MANIFEST, repo, digest, "", 0))?;
        self.forget_manifest(repo, digest)?;
        Ok(true)
    }

    /// Permanently removes, of `digests`, the manifests of `repo` that are in the bin, and
    /// returns how many there were. Autopurge's bulk path: each table is swept once per
    /// repository instead of taking a removal per row. The caller has removed their
    /// tombstone rows.
    pub(crate) fn purge_binned_manifests(
        &mut self,
        repo: &str,
        digests: &BTreeSet<String>,
    ) -> Result<usize> {
        let (Some(first), Some(last)) = (digests.first(), digests.last()) else {
            return Ok(0);
        };
        let range = (repo, first.as_str())..=(repo, last.as_str());
        let mut binned = HashSet::new();
        for row in self
            .t
            .deleted_manifests
            .extract_from_if(range.clone(), |(_, d), _| digests.contains(d))?
        {
            binned.insert(row?.0.value().1.to_owned());
        }
        self.t
            .manifests
            .retain_in(range.clone(), |(_, d), _| !binned.contains(d))?;
        self.t
            .manifest_bodies
            .retain_in(range, |(_, d), _| !binned.contains(d))?;
        for digest in &binned {
            self.forget_binned_tags(repo, digest)?;
        }
        Ok(binned.len())
    }

    /// Removes a live tag of a repository that is purged next: no event, no bin, as the
    /// repository's history goes with it (T2).
    fn forget_tag(&mut self, repo: &str, tag: &str) -> Result<()> {
        let digest = self
            .t
            .tags
            .remove((repo, tag))?
            .map(|v| v.value().0.to_owned());
        if let Some(digest) = digest {
            self.t.manifest_tags.remove((repo, digest.as_str(), tag))?;
        }
        Ok(())
    }

    /// Removes a manifest's record, body and tags in the bin. Its history stays (T2).
    pub(crate) fn forget_manifest(&mut self, repo: &str, digest: &str) -> Result<()> {
        self.forget_binned_tags(repo, digest)?;
        self.t.manifests.remove((repo, digest))?;
        self.t.manifest_bodies.remove((repo, digest))?;
        Ok(())
    }

    /// Removes a manifest's tags in the bin.
    fn forget_binned_tags(&mut self, repo: &str, digest: &str) -> Result<()> {
        let binned_tags: Vec<(String, u64)> = {
            let mut out = Vec::new();
            for row in self
                .t
                .deleted_tags
                .range((repo, digest, "", 0)..=(repo, digest, "\u{10ffff}", u64::MAX))?
            {
                let (key, _) = row?;
                let (_, _, tag, seq) = key.value();
                out.push((tag.to_owned(), seq));
            }
            out
        };
        for (tag, seq) in binned_tags {
            self.unbin_tag(repo, digest, &tag, seq)?;
        }
        Ok(())
    }

    /// Permanently removes a repository with everything in it, live or tombstoned, its tag
    /// history and its blob links (the blobs themselves are the collector's).
    pub(crate) fn purge_repository(&mut self, repo: &str) -> Result<()> {
        let tags = page_under(
            &self.t.tags,
            repo,
            &Page::all(),
            |tag, _| Ok(tag.to_owned()),
        )?;
        for tag in tags {
            self.forget_tag(repo, &tag)?;
        }
        self.forget_repository_history(repo)?;
        let digests = page_under(&self.t.manifests, repo, &Page::all(), |d, _| {
            Ok(d.to_owned())
        })?;
        for digest in digests {
            self.purge_manifest(repo, &digest)?;
        }
        let blob_links = &mut self.t.blob_links;
        let links = page_under(blob_links, repo, &Page::all(), |d, _| Ok(d.to_owned()))?;
        for digest in links {
            blob_links.remove((repo, digest.as_str()))?;
        }
        if let Some(record) = repository_record(&self.t, repo)?
            && let Some(deleted) = record.deleted
        {
            self.t
                .tombstones
                .remove(repository_tombstone(repo, deleted))?;
        }
        self.t.repositories.remove(repo)?;
        Ok(())
    }

    /// Puts live repository `name` into the bin; what it holds went there before.
    pub(crate) fn bin_repository(
        &mut self,
        name: &str,
        mut record: RepositoryRecord,
    ) -> Result<()> {
        record.deleted = Some(self.now);
        self.t
            .repositories
            .insert(name, encode(&record).as_slice())?;
        self.t
            .tombstones
            .insert(repository_tombstone(name, self.now), ())?;
        Ok(())
    }

    /// The tombstones deleted at or before `cutoff`, as (kind, repository, digest, tag, seq),
    /// in deletion order.
    pub(crate) fn tombstones_until(&self, cutoff: Timestamp) -> Result<Vec<ExpiredTombstone>> {
        let end = (cutoff.as_nanos().saturating_add(1), 0, "", "", "", 0);
        let mut out = Vec::new();
        for row in self.t.tombstones.range(..end)? {
            let (key, _) = row?;
            let (_, kind, repo, digest, tag, seq) = key.value();
            out.push((
                kind,
                repo.to_owned(),
                digest.to_owned(),
                tag.to_owned(),
                seq,
            ));
        }
        Ok(out)
    }

    /// Removes the tombstones deleted at or before `cutoff`, except those of the manifests
    /// `kept` ((repository, digest)). One pass over the range instead of a removal per row:
    /// the purges that follow find their tombstone rows gone already.
    pub(crate) fn remove_tombstones_until(
        &mut self,
        cutoff: Timestamp,
        kept: &HashSet<(String, String)>,
    ) -> Result<()> {
        let end = (cutoff.as_nanos().saturating_add(1), 0, "", "", "", 0);
        self.t
            .tombstones
            .retain_in(..end, |(_, kind, repo, digest, _, _), ()| {
                kind == TOMBSTONE_MANIFEST
                    && !kept.is_empty()
                    && kept.contains(&(repo.to_owned(), digest.to_owned()))
            })?;
        Ok(())
    }
}
