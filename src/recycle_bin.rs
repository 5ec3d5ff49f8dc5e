//! The soft delete policy and its recycle bin: tombstones, listing, restore and purge by hand
//! (SPEC S1–S3, S5–S13, S15, S16). Autopurge, the retention clock, is in `retention`.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use crate::batch::Batch;
use crate::clock::Timestamp;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::lock::{Item, Need};
use crate::manifest::{Record, index_untagged, touch};
use crate::registry::{Page, Registry};
use crate::repository::{Repository, repository_record, repository_tombstone};
use crate::tables::{
    DELETED_MANIFESTS, DELETED_TAGS, MANIFESTS, META, REPOSITORIES, decode, encode, page_under,
};
use crate::tag::{TagCause, validate_tag};

/// A key of the `tombstones` table: (deleted at, kind, repository, digest, tag, seq).
pub(crate) type Tombstone<'a> = (u64, u8, &'a str, &'a str, &'a str, u64);

/// Tombstone kinds, in the order autopurge handles tombstones deleted at the same time.
pub(crate) const TOMBSTONE_TAG: u8 = 0;
pub(crate) const TOMBSTONE_MANIFEST: u8 = 1;
pub(crate) const TOMBSTONE_REPOSITORY: u8 = 2;

const DAY: Duration = Duration::from_secs(86_400);

/// The soft delete policy (S1): whether deletes go to the recycle bin, and how long
/// tombstones stay there before autopurge removes them.
///
/// ```
/// use ocistore::SoftDeletePolicy;
/// assert_eq!(SoftDeletePolicy::default(), SoftDeletePolicy { enabled: false, retention_days: 7 });
/// assert!(SoftDeletePolicy::enabled(14).is_ok());
/// assert!(SoftDeletePolicy::enabled(91).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoftDeletePolicy {
    /// Whether deletes tombstone instead of removing.
    pub enabled: bool,
    /// Days a tombstone stays restorable: 1 to 90.
    pub retention_days: u32,
}

impl Default for SoftDeletePolicy {
    fn default() -> Self {
        SoftDeletePolicy {
            enabled: false,
            retention_days: 7,
        }
    }
}

impl SoftDeletePolicy {
    /// The policy switched on with a retention of `retention_days` (1 to 90).
    pub fn enabled(retention_days: u32) -> Result<SoftDeletePolicy> {
        let policy = SoftDeletePolicy {
            enabled: true,
            retention_days,
        };
        policy.validate()?;
        Ok(policy)
    }

    fn validate(&self) -> Result<()> {
        if (1..=90).contains(&self.retention_days) {
            Ok(())
        } else {
            Err(Error::InvalidSetting {
                setting: "soft delete retention_days",
                value: self.retention_days.to_string(),
                reason: "must be 1 to 90 days",
            })
        }
    }

    /// The retention as a duration.
    pub fn retention(&self) -> Duration {
        DAY * self.retention_days
    }

    /// When a tombstone deleted at `deleted` expires under this policy (S3).
    pub fn expires_at(&self, deleted: Timestamp) -> Timestamp {
        deleted.saturating_add(self.retention())
    }
}

pub(crate) fn read_policy(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<SoftDeletePolicy> {
    meta.get("soft_delete")?
        .map_or(Ok(SoftDeletePolicy::default()), |v| {
            decode("meta", v.value())
        })
}

impl Registry {
    /// The soft delete policy in force.
    pub fn soft_delete_policy(&self) -> Result<SoftDeletePolicy> {
        let txn = self.inner.db.begin_read()?;
        read_policy(&txn.open_table(META)?)
    }

    /// Sets the soft delete policy; it is persisted and applies from the next call (S1).
    /// Turning it off leaves the tombstones in the bin restorable until they expire (S15).
    pub fn set_soft_delete_policy(&self, policy: SoftDeletePolicy) -> Result<()> {
        policy.validate()?;
        self.batch(|b| {
            b.t.meta.insert("soft_delete", encode(&policy).as_slice())?;
            b.soft_delete.set(Some(policy));
            Ok(())
        })
    }

    /// Soft-deleted repositories, most recently deleted first (S5).
    pub fn deleted_repositories(&self) -> Result<Vec<DeletedRepository>> {
        let txn = self.inner.db.begin_read()?;
        let policy = read_policy(&txn.open_table(META)?)?;
        let mut out = Vec::new();
        for row in txn.open_table(REPOSITORIES)?.iter()? {
            let (name, record) = row?;
            let record: crate::repository::RepositoryRecord =
                decode("repositories", record.value())?;
            if let Some(deleted) = record.deleted {
                out.push(DeletedRepository {
                    name: name.value().to_owned(),
                    deleted_at: deleted,
                    expires_at: policy.expires_at(deleted),
                });
            }
        }
        out.sort_by(|a, b| b.deleted_at.cmp(&a.deleted_at).then(a.name.cmp(&b.name)));
        Ok(out)
    }

    /// Permanently removes soft-deleted repository `name` with everything in it, before it
    /// expires (S16).
    pub fn purge_deleted_repository(&self, name: &str) -> Result<()> {
        let repo = self.repository(name)?;
        self.batch(|b| {
            let deleted =
                repository_record(&b.t.repositories, repo.name())?.and_then(|r| r.deleted);
            if deleted.is_none() {
                return Err(Error::NotDeleted {
                    repository: repo.name().to_owned(),
                    item: "the repository".into(),
                });
            }
            b.purge_repository(repo.name())
        })
    }
}

/// A repository in the recycle bin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedRepository {
    /// Its name.
    pub name: String,
    /// When it was deleted.
    pub deleted_at: Timestamp,
    /// When autopurge removes it, by the retention in force now (S3).
    pub expires_at: Timestamp,
}

/// A manifest in the recycle bin.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// When autopurge removes it, by the retention in force now (S3).
    pub expires_at: Timestamp,
}

/// A tag in the recycle bin: `tag` pointed at `digest` when it was deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// What a restore brings back (S6, S7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restore<'a> {
    /// The most recently deleted manifest that carried this tag, with the tag.
    Tag(&'a str),
    /// This manifest, untagged.
    Digest(&'a Digest),
    /// This manifest with this tag.
    TagAndDigest(&'a str, &'a Digest),
}

impl Repository {
    /// The manifests of this repository in the recycle bin, most recently deleted first (S5).
    /// Works inside a soft-deleted repository too.
    pub fn deleted_manifests(&self) -> Result<Vec<DeletedManifest>> {
        let txn = self.registry().inner.db.begin_read()?;
        let policy = read_policy(&txn.open_table(META)?)?;
        let manifests = txn.open_table(MANIFESTS)?;
        let deleted_tags = txn.open_table(DELETED_TAGS)?;
        let mut out = Vec::new();
        let name = self.name();
        for row in txn.open_table(DELETED_MANIFESTS)?.range((name, "")..)? {
            let (key, deleted) = row?;
            let (r, digest) = key.value();
            if r != name {
                break;
            }
            let record: Record = match manifests.get((name, digest))? {
                Some(v) => decode("manifests", v.value())?,
                None => continue,
            };
            let mut tags = Vec::new();
            for row in deleted_tags
                .range((name, digest, "", 0)..=(name, digest, "\u{10ffff}", u64::MAX))?
            {
                tags.push(row?.0.value().2.to_owned());
            }
            tags.dedup();
            let deleted_at = Timestamp::from_nanos(deleted.value());
            out.push(DeletedManifest {
                digest: Digest::stored(digest)?,
                media_type: record.media_type,
                size: record.size,
                tags,
                deleted_at,
                expires_at: policy.expires_at(deleted_at),
            });
        }
        out.sort_by(|a, b| {
            b.deleted_at
                .cmp(&a.deleted_at)
                .then(a.digest.cmp(&b.digest))
        });
        Ok(out)
    }

    /// The tags of this repository in the recycle bin, or only those named `tag`, most
    /// recently deleted first (S5).
    pub fn deleted_tags(&self, tag: Option<&str>) -> Result<Vec<DeletedTag>> {
        if let Some(tag) = tag {
            validate_tag(tag)?;
        }
        let txn = self.registry().inner.db.begin_read()?;
        let policy = read_policy(&txn.open_table(META)?)?;
        let mut out = Vec::new();
        let name = self.name();
        for row in txn.open_table(DELETED_TAGS)?.range((name, "", "", 0)..)? {
            let (key, deleted) = row?;
            let (r, digest, t, _) = key.value();
            if r != name {
                break;
            }
            if tag.is_none_or(|tag| tag == t) {
                let deleted_at = Timestamp::from_nanos(deleted.value());
                out.push((
                    key.value().3,
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

    /// Brings a manifest back out of the recycle bin, with at most one tag (S6–S11), and
    /// returns its digest. `force` lets a restore move a tag that is live on another
    /// manifest; the overwritten tag goes to the bin.
    ///
    /// Restoring into a soft-deleted repository brings the repository back, holding only what
    /// was restored. A manifest that is live is only tagged.
    pub fn restore(&self, what: Restore<'_>, force: bool) -> Result<Digest> {
        self.registry().batch(|b| b.restore(self, what, force))
    }

    /// Permanently removes manifest `digest` from the recycle bin before it expires, with its
    /// tags in the bin and its history (S16).
    pub fn purge_deleted_manifest(&self, digest: &Digest) -> Result<()> {
        self.registry().batch(|b| {
            let in_bin =
                b.t.deleted_manifests
                    .get((self.name(), digest.as_str()))?
                    .is_some();
            if !in_bin {
                return Err(Error::NotDeleted {
                    repository: self.name().to_owned(),
                    item: format!("manifest {digest}"),
                });
            }
            b.purge_manifest(self.name(), digest.as_str())
        })
    }

    /// Permanently removes every deletion of `tag` from the recycle bin before it expires
    /// (S16), and returns how many there were.
    pub fn purge_deleted_tags(&self, tag: &str) -> Result<usize> {
        let doomed = self.deleted_tag_keys(tag)?;
        if doomed.is_empty() {
            return Err(Error::NotDeleted {
                repository: self.name().to_owned(),
                item: format!("tag {tag}"),
            });
        }
        self.registry().batch(|b| {
            for (digest, seq) in &doomed {
                b.unbin_tag(self.name(), digest.as_str(), tag, *seq)?;
            }
            Ok(doomed.len())
        })
    }

    /// (digest, seq) of the bin's entries for `tag`, newest first.
    fn deleted_tag_keys(&self, tag: &str) -> Result<Vec<(Digest, u64)>> {
        validate_tag(tag)?;
        let txn = self.registry().inner.db.begin_read()?;
        deleted_tag_keys(&txn.open_table(DELETED_TAGS)?, self.name(), tag)
    }
}

/// (digest, seq) of the bin's entries for `tag` in `repo`, newest first.
fn deleted_tag_keys(
    table: &impl ReadableTable<(&'static str, &'static str, &'static str, u64), u64>,
    repo: &str,
    tag: &str,
) -> Result<Vec<(Digest, u64)>> {
    let mut out = Vec::new();
    for row in table.range((repo, "", "", 0)..)? {
        let (key, _) = row?;
        let (r, digest, t, seq) = key.value();
        if r != repo {
            break;
        }
        if t == tag {
            out.push((Digest::stored(digest)?, seq));
        }
    }
    out.sort_by_key(|&(_, seq)| std::cmp::Reverse(seq));
    Ok(out)
}

impl Batch<'_> {
    /// The soft delete policy, as this transaction sees it.
    pub(crate) fn soft_delete_policy(&self) -> Result<SoftDeletePolicy> {
        if let Some(policy) = self.soft_delete.get() {
            return Ok(policy);
        }
        let policy = read_policy(&self.t.meta)?;
        self.soft_delete.set(Some(policy));
        Ok(policy)
    }

    /// Restores a manifest; see [`Repository::restore`].
    pub fn restore(&mut self, repo: &Repository, what: Restore<'_>, force: bool) -> Result<Digest> {
        let name = repo.name();
        let (tag, digest) = match what {
            Restore::Tag(tag) => {
                validate_tag(tag)?;
                let newest = deleted_tag_keys(&self.t.deleted_tags, name, tag)?;
                let (digest, _) = newest.into_iter().next().ok_or_else(|| Error::NotDeleted {
                    repository: name.to_owned(),
                    item: format!("tag {tag}"),
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
            let current = self
                .t
                .tags
                .get((name, tag))?
                .map(|v| v.value().0.to_owned());
            if let Some(current) = current.filter(|c| c != digest.as_str()) {
                if !force {
                    return Err(Error::TagConflict {
                        repository: name.to_owned(),
                        tag: tag.to_owned(),
                        digest: Digest::stored(&current)?,
                    });
                }
                self.drop_tag(name, tag, TagCause::Restore)?;
            }
        }
        self.ensure_repository(name)?;
        if record.deleted.is_some() {
            self.unbin_manifest(name, &digest, record)?;
        }
        if let Some(tag) = tag {
            let restored: Vec<u64> = deleted_tag_keys(&self.t.deleted_tags, name, tag)?
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
    fn unbin_manifest(&mut self, repo: &str, digest: &Digest, mut record: Record) -> Result<()> {
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

    /// Permanently removes a manifest, live or tombstoned, with its tags in the bin and its
    /// history. Its live tags must be gone already.
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
            self.forget_tags_and_history(repo, digest)?;
        }
        Ok(binned.len())
    }

    /// Removes a live tag whose manifest is purged next: no event, no bin, as the manifest's
    /// history goes with it (T2).
    pub(crate) fn forget_tag(&mut self, repo: &str, tag: &str) -> Result<()> {
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

    /// Removes a manifest's record, body, tags in the bin and history.
    fn forget_manifest(&mut self, repo: &str, digest: &str) -> Result<()> {
        self.forget_tags_and_history(repo, digest)?;
        self.t.manifests.remove((repo, digest))?;
        self.t.manifest_bodies.remove((repo, digest))?;
        Ok(())
    }

    /// Removes a manifest's tags in the bin and its history.
    fn forget_tags_and_history(&mut self, repo: &str, digest: &str) -> Result<()> {
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
        self.forget_history(repo, digest)
    }

    /// Permanently removes a repository with everything in it, live or tombstoned, and its
    /// blob links (the blobs themselves are the collector's).
    pub(crate) fn purge_repository(&mut self, repo: &str) -> Result<()> {
        let tags = page_under(
            &self.t.tags,
            repo,
            &Page::all(),
            |tag, _| Ok(tag.to_owned()),
        )?;
        for tag in tags {
            // The history goes with the manifests below.
            self.forget_tag(repo, &tag)?;
        }
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
        if let Some(record) = repository_record(&self.t.repositories, repo)? {
            if let Some(deleted) = record.deleted {
                self.t
                    .tombstones
                    .remove(repository_tombstone(repo, deleted))?;
            }
        }
        self.t.repositories.remove(repo)?;
        Ok(())
    }

    /// Adds a live manifest to the indexes that only hold live ones: time order, referrers,
    /// children and untagged manifests.
    pub(crate) fn index_live(&mut self, repo: &str, digest: &str, record: &Record) -> Result<()> {
        self.t
            .manifests_by_time
            .insert((repo, record.updated.as_nanos(), digest), ())?;
        if let Some(subject) = &record.subject {
            self.t
                .referrers
                .insert((repo, subject.as_str(), digest), ())?;
        }
        let children = &mut self.t.children;
        for child in record.children() {
            children.insert((repo, child.digest.as_str(), digest), ())?;
        }
        index_untagged(self, repo, digest, record)
    }

    /// Takes a manifest out of the live-only indexes. The children of an index count as
    /// updated: they are no longer held by it (R2), so the retention policy's count of their
    /// untagged time starts now.
    fn unindex_live(&mut self, repo: &str, digest: &str, record: &Record) -> Result<()> {
        self.t
            .manifests_by_time
            .remove((repo, record.updated.as_nanos(), digest))?;
        if let Some(subject) = &record.subject {
            self.t.referrers.remove((repo, subject.as_str(), digest))?;
        }
        for child in record.children() {
            self.t
                .children
                .remove((repo, child.digest.as_str(), digest))?;
            touch(self, repo, child.digest.as_str())?;
        }
        self.t
            .untagged
            .remove((record.updated.as_nanos(), repo, digest))?;
        Ok(())
    }
}
