//! The reference model: a plain in-memory registry implementing `SPEC.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ocistore::{
    Descriptor, Digest, FsckReport, Item, Locks, RepositoryPurge, RepositoryUsage, RetentionPolicy,
    SoftDeletePolicy, TagCause, Timestamp, Usage,
};

use crate::expected::ExpectedManifest;

use super::*;
use super::{grammar::*, op::*, outcome::*, step::*};

/// The reference model: a plain in-memory registry (maps and vectors) that implements every
/// rule of `SPEC.md` — blobs, uploads, manifests and tags; deletes, the recycle bin with its
/// restores, purges by hand and the retention clock's autopurge; tag history and reverts; the
/// collector; locks; the retention policy for untagged manifests; purges by filter.
///
/// It predicts the [`Outcome`] of every [`Step`], errors included, and keeps the state that
/// [`System::check`] implementations compare with.
#[derive(Debug, Clone)]
pub struct Model {
    pub(crate) now: Timestamp,
    /// Every repository with a record: live, or soft-deleted (`deleted` set). A purged one is
    /// gone from here.
    pub(crate) repositories: BTreeMap<String, RepoModel>,
    /// Every session ever started, in order; closed ones stay (their ops are `UploadUnknown`).
    pub(crate) uploads: Vec<UploadModel>,
    /// S1: the soft delete policy.
    pub(crate) policy: SoftDeletePolicy,
    /// S4: when autopurge last ran.
    pub(crate) last_run: Option<Timestamp>,
    /// R1: the retention policy for untagged manifests, and since when it is enabled (`None`
    /// while it is not).
    pub(crate) retention: RetentionPolicy,
    pub(crate) retention_since: Option<Timestamp>,
    /// T2: days tag history is kept, 0 for ever.
    pub(crate) history_days: u32,
    /// G1: every blob record, digest → (size, created); a swept one is gone.
    pub(crate) blob_records: BTreeMap<String, (u64, Timestamp)>,
    /// C4: whether the blob store's disk is full. It is the disk's state, not the process's:
    /// a reopen keeps it.
    pub(crate) disk_full: bool,
    /// C2, C4: the blobs whose bytes the blob store holds, by digest: every blob record's, and
    /// those that the puts of a batch wrote before the batch failed (stray files no record
    /// names, which only `fsck`'s repair removes). A sweep of the collector removes a record's
    /// bytes. A write of bytes it holds writes nothing, so a full disk does not refuse it.
    pub(crate) files: BTreeSet<String>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct RepoModel {
    /// S2: set while the repository is in the recycle bin.
    pub(crate) deleted: Option<Timestamp>,
    /// Linked blobs: digest → bytes. A soft-deleted repository keeps them, unreadable.
    pub(crate) blobs: BTreeMap<String, Vec<u8>>,
    /// G3: when each blob was last linked (put, mounted or uploaded) here.
    pub(crate) linked: BTreeMap<String, Timestamp>,
    /// Live and soft-deleted manifests (`deleted` set); purged ones are gone.
    pub(crate) manifests: BTreeMap<String, ManifestModel>,
    /// Live tags.
    pub(crate) tags: BTreeMap<String, TagModel>,
    /// S5: the tags in the recycle bin, in deletion (`seq`) order.
    pub(crate) bin_tags: Vec<BinTag>,
    /// T1: every tag event, in `seq` order. T2: an event stays when the manifests it names
    /// are purged, and goes when older than the history retention, at an autopurge run.
    pub(crate) history: Vec<EventModel>,
    /// The last event number: orders events and deletions made at the same clock time. Only
    /// the order within one repository is ever observable.
    pub(crate) seq: u64,
    /// L1: the locks of locked items by key: "" for the repository itself, else a manifest's
    /// digest or a tag's name (digests hold a `:`, tags none). Only live items carry locks;
    /// `locked_items` lists them in key order.
    pub(crate) locks: BTreeMap<String, Locks>,
}

#[derive(Debug, Clone)]
pub(crate) struct ManifestModel {
    pub(crate) body: Vec<u8>,
    pub(crate) media_type: String,
    pub(crate) created: Timestamp,
    pub(crate) updated: Timestamp,
    pub(crate) spec: BodySpec,
    /// S2: set while the manifest is in the recycle bin.
    pub(crate) deleted: Option<Timestamp>,
}

impl ManifestModel {
    pub(crate) fn live(&self) -> bool {
        self.deleted.is_none()
    }
}

/// A tag in the bin: it pointed at `digest` when event `seq` deleted it.
#[derive(Debug, Clone)]
pub(crate) struct BinTag {
    pub(crate) tag: String,
    pub(crate) digest: String,
    pub(crate) deleted_at: Timestamp,
    pub(crate) seq: u64,
}

/// The end of time: when a manifest that a live index lists expires (S17).
pub(crate) const NEVER: Timestamp = Timestamp::from_nanos(u64::MAX);

/// S3, S17: the manifests of one repository in the bin, expired or not, with when each
/// expires: at `deleted_at + retention`, or at the expiry of an index in the bin that lists it
/// if later, and never while a live index lists it.
#[derive(Debug, Clone, Default)]
pub(crate) struct BinModel {
    pub(crate) expires: BTreeMap<String, Timestamp>,
    /// The indexes in the bin and what they list.
    pub(crate) indexes: BTreeMap<String, Vec<String>>,
    pub(crate) now: Timestamp,
}

impl BinModel {
    /// In the bin and not expired: expired is gone.
    pub(crate) fn holds(&self, digest: &str) -> bool {
        self.expires.get(digest).is_some_and(|at| self.now < *at)
    }

    /// In the bin and expired, though autopurge has not removed it yet.
    pub(crate) fn expired(&self, digest: &str) -> bool {
        self.expires.get(digest).is_some_and(|at| *at <= self.now)
    }

    /// The indexes in the bin, expired ones or the others, that list `digest`, by digest.
    pub(crate) fn indexes_listing(&self, digest: &str, expired: bool) -> Vec<String> {
        let listing = self.indexes.iter().filter(|(index, items)| {
            self.expired(index) == expired && items.iter().any(|c| c == digest)
        });
        listing.map(|(index, _)| index.clone()).collect()
    }
}

/// T1: the tag moved `from` one manifest `to` another.
#[derive(Debug, Clone)]
pub(crate) struct EventModel {
    pub(crate) tag: String,
    pub(crate) from: Option<String>,
    pub(crate) to: Option<String>,
    pub(crate) at: Timestamp,
    pub(crate) cause: TagCause,
}

#[derive(Debug, Clone)]
pub(crate) struct TagModel {
    pub(crate) digest: String,
    pub(crate) updated: Timestamp,
}

#[derive(Debug, Clone)]
pub(crate) struct UploadModel {
    pub(crate) repo: String,
    pub(crate) started: Timestamp,
    pub(crate) bytes: Vec<u8>,
    pub(crate) open: bool,
}

impl Default for Model {
    fn default() -> Model {
        Model::new()
    }
}

impl Model {
    /// An empty registry at 2026-01-01T00:00:00Z, both policies off.
    pub fn new() -> Model {
        Model {
            now: START,
            repositories: BTreeMap::new(),
            uploads: Vec::new(),
            policy: SoftDeletePolicy::default(),
            last_run: None,
            retention: RetentionPolicy::default(),
            retention_since: None,
            history_days: 90,
            blob_records: BTreeMap::new(),
            disk_full: false,
            files: BTreeSet::new(),
        }
    }

    /// The model's clock: a [`System`] that runs the same steps keeps its own clock at it.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// C4: whether the blob store's disk is full ([`Step::DiskFull`]): a [`System`] that runs
    /// the same steps keeps its disk so.
    pub fn disk_full(&self) -> bool {
        self.disk_full
    }

    /// C4: `StorageFull` while the disk is full: a write of bytes (an upload's start or
    /// append) is refused and changes nothing.
    pub(crate) fn room(&self) -> Result<(), ErrKind> {
        if self.disk_full {
            return Err(ErrKind::StorageFull);
        }
        Ok(())
    }

    /// C4: [`room`](Model::room) for the bytes of blob `digest`: a blob store that holds them
    /// already writes nothing, full disk or not.
    pub(crate) fn room_for(&self, digest: &str) -> Result<(), ErrKind> {
        if self.files.contains(digest) {
            return Ok(());
        }
        self.room()
    }

    /// Resolves `op`'s selectors ("the 3rd manifest of the repository by digest", "the 2nd
    /// upload session") against the model's state: the step every system runs next.
    pub fn resolve(&self, op: &Op) -> Step {
        resolve(op, self)
    }

    /// Runs a resolved step on the model and returns the outcome the SPEC prescribes.
    pub fn step(&mut self, step: &Step) -> Outcome {
        let outcome = model_step(self, step);
        let lost = lost_children(self);
        assert!(
            lost.is_empty(),
            "S17: indexes lost what they list: {lost:?}"
        );
        outcome
    }

    /// The repositories with a live record (not in the recycle bin), in lexical order.
    pub fn repositories(&self) -> Vec<String> {
        let live = self
            .repositories
            .iter()
            .filter(|(_, r)| r.deleted.is_none());
        live.map(|(name, _)| name.clone()).collect()
    }

    /// The live tags of repository `repo` with the digests they point at, by tag; none while
    /// the repository is in the bin.
    pub fn tags(&self, repo: &str) -> Vec<(String, String)> {
        let Some(r) = self.repositories.get(repo).filter(|r| r.deleted.is_none()) else {
            return Vec::new();
        };
        let tags = r.tags.iter();
        tags.map(|(tag, t)| (tag.clone(), t.digest.clone()))
            .collect()
    }

    /// The live manifests of `repo`: digest, media type and size, by digest.
    pub fn manifests(&self, repo: &str) -> Vec<(String, String, u64)> {
        self.manifests_of(repo)
    }

    /// The digests of the manifests of `repo` in the recycle bin that have not expired (S3),
    /// sorted.
    pub fn deleted_manifests(&self, repo: &str) -> Vec<String> {
        let bin = self.bin(repo);
        let held = bin.expires.keys().filter(|d| bin.holds(d));
        held.cloned().collect()
    }

    /// The blobs linked to `repo` with their sizes, by digest; none while it is in the bin.
    pub fn blobs(&self, repo: &str) -> Vec<(String, u64)> {
        self.blobs_of(repo)
    }

    /// [`resolve`](Model::resolve) then [`step`](Model::step).
    pub fn apply(&mut self, op: &Op) -> Outcome {
        let step = self.resolve(op);
        self.step(&step)
    }

    /// L1, L2: fails if a lock refuses `need` on item `key` of `repo` (see
    /// [`RepoModel::check_lock`]); a repository without a record has no locks.
    pub(crate) fn check_lock(&self, repo: &str, key: &str, need: Need) -> Result<(), ErrKind> {
        match self.repositories.get(repo) {
            Some(r) => r.check_lock(repo, key, need),
            None => Ok(()),
        }
    }

    /// L2: fails if pointing `tag` of `repo` at `digest` is refused.
    pub(crate) fn check_tag_move(
        &self,
        repo: &str,
        tag: &str,
        digest: &str,
    ) -> Result<(), ErrKind> {
        match self.repositories.get(repo) {
            Some(r) => r.check_tag_move(repo, tag, digest),
            None => Ok(()),
        }
    }

    /// S3: the retention in force now.
    pub(crate) fn retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.policy.retention_days) * 86_400)
    }

    /// S3: when a tombstone deleted at `at` expires, by the retention in force now.
    pub(crate) fn expires(&self, at: Timestamp) -> Timestamp {
        at.saturating_add(self.retention())
    }

    /// S3, S17: the bin of `repo` as it is now.
    pub(crate) fn bin(&self, repo: &str) -> BinModel {
        let r = self.repositories.get(repo);
        r.map_or_else(BinModel::default, |r| r.bin(self.retention(), self.now))
    }

    /// S17: the bin of `repo` when deletes purge (the policy is off), whose indexes keep what
    /// they list; `None` when deletes go to the bin.
    pub(crate) fn bin_if_purging(&self, repo: &str) -> Option<BinModel> {
        (!self.policy.enabled).then(|| self.bin(repo))
    }

    /// S3: whether a tag entry of the bin deleted at `at` has not expired.
    pub(crate) fn unexpired(&self, at: Timestamp) -> bool {
        self.now < self.expires(at)
    }

    /// Whether the repository has a record and is not in the bin.
    pub(crate) fn live_repo(&self, repo: &str) -> bool {
        self.repositories
            .get(repo)
            .is_some_and(|r| r.deleted.is_none())
    }

    /// Creates the repository or brings it back out of the bin (S11, S12); its tombstones stay.
    pub(crate) fn ensure_repo(&mut self, repo: &str) -> &mut RepoModel {
        let r = self.repositories.entry(repo.to_owned()).or_default();
        r.deleted = None;
        r
    }

    /// Whether blob `digest` is linked to `repo`, whatever the repository's state: a
    /// soft-deleted repository keeps its links, and a push into it may use them (S12).
    pub(crate) fn linked(&self, repo: &str, digest: &str) -> bool {
        self.repositories
            .get(repo)
            .is_some_and(|r| r.blobs.contains_key(digest))
    }

    /// Whether `digest` is a live manifest of `repo`.
    pub(crate) fn has_manifest(&self, repo: &str, digest: &str) -> bool {
        self.repositories
            .get(repo)
            .and_then(|r| r.manifests.get(digest))
            .is_some_and(ManifestModel::live)
    }

    /// A blob put, mount or upload: linked, and the repository live (S12).
    pub(crate) fn link(&mut self, repo: &str, digest: &str, bytes: &[u8]) {
        let now = self.now;
        let r = self.ensure_repo(repo);
        r.blobs.insert(digest.to_owned(), bytes.to_vec());
        r.linked.insert(digest.to_owned(), now);
        let record = (bytes.len() as u64, now);
        self.blob_records.entry(digest.to_owned()).or_insert(record);
        self.files.insert(digest.to_owned());
    }

    /// G1–G5: a collection with the default grace period.
    pub(crate) fn collect(&mut self, dry_run: bool) -> Value {
        let cutoff = self.now.saturating_sub(GRACE_PERIOD);
        let mut marked = BTreeSet::new();
        let mut doomed = Vec::new();
        for (name, r) in &self.repositories {
            let referenced: BTreeSet<String> = r
                .manifests
                .values()
                .filter(|m| !m.spec.index)
                .flat_map(|m| m.spec.references())
                .map(|d| d.digest.to_string())
                .collect();
            for (digest, linked) in &r.linked {
                if referenced.contains(digest) || *linked >= cutoff {
                    marked.insert(digest.clone());
                } else {
                    doomed.push((name.clone(), digest.clone()));
                }
            }
            marked.extend(referenced);
        }
        let mut v = Collected::default();
        let mut swept = Vec::new();
        for (digest, (size, created)) in &self.blob_records {
            let (count, bytes) = if marked.contains(digest) {
                (&mut v.marked, &mut v.bytes_marked)
            } else if *created >= cutoff {
                (&mut v.kept, &mut v.bytes_kept)
            } else {
                swept.push(digest.clone());
                (&mut v.swept, &mut v.bytes_swept)
            };
            *count += 1;
            *bytes += size;
        }
        let now = self.now;
        let expired: Vec<&mut UploadModel> = self
            .uploads
            .iter_mut()
            .filter(|s| s.open && now.since(s.started) > UPLOAD_TIMEOUT)
            .collect();
        v.links_removed = doomed.len() as u64;
        v.uploads_removed = expired.len() as u64;
        if !dry_run {
            for s in expired {
                s.open = false;
            }
            for (repo, digest) in doomed {
                let r = self.repositories.get_mut(&repo).unwrap();
                r.blobs.remove(&digest);
                r.linked.remove(&digest);
            }
            for digest in swept {
                self.blob_records.remove(&digest);
                self.files.remove(&digest);
            }
        }
        Value::Collected(v)
    }

    /// A1: blobs counted once; per repository (in the bin too) its links, those to blobs linked
    /// nowhere else, and the rest; the bytes only manifests in the bin reference, and those no
    /// manifest references.
    pub(crate) fn usage(&self) -> Usage {
        let links = |digest: &str| {
            let repos = self.repositories.values();
            repos.filter(|r| r.blobs.contains_key(digest)).count()
        };
        let mut live = BTreeSet::new();
        let mut binned = BTreeSet::new();
        for r in self.repositories.values() {
            for m in r.manifests.values().filter(|m| !m.spec.index) {
                let set = if m.live() { &mut live } else { &mut binned };
                set.extend(
                    m.spec
                        .references()
                        .into_iter()
                        .map(|d| d.digest.to_string()),
                );
            }
        }
        let mut usage = Usage::default();
        for (digest, (size, _)) in &self.blob_records {
            usage.blobs += 1;
            usage.bytes += size;
            match (live.contains(digest), binned.contains(digest)) {
                (false, true) => usage.soft_deleted_bytes += size,
                (false, false) => usage.garbage_bytes += size,
                (true, _) => {}
            }
        }
        for (name, r) in &self.repositories {
            let mut repo = RepositoryUsage::default();
            repo.name.clone_from(name);
            repo.deleted = r.deleted.is_some();
            for digest in r.blobs.keys() {
                let Some((size, _)) = self.blob_records.get(digest) else {
                    continue;
                };
                repo.blobs += 1;
                repo.bytes += size;
                if links(digest) == 1 {
                    repo.unique_bytes += size;
                } else {
                    repo.shared_bytes += size;
                }
            }
            usage.repositories.push(repo);
        }
        usage
    }

    /// An upload session that still answers: open and not older than the timeout (measured
    /// from its start, in use or not).
    pub(crate) fn live_session(&mut self, slot: usize) -> Result<&mut UploadModel, ErrKind> {
        let now = self.now;
        let s = &mut self.uploads[slot];
        if !s.open || now.since(s.started) > UPLOAD_TIMEOUT {
            return Err(ErrKind::UploadUnknown);
        }
        Ok(s)
    }
}

impl RepoModel {
    pub(crate) fn tags_of(&self, digest: &str) -> Vec<String> {
        let tags = self.tags.iter().filter(|(_, t)| t.digest == digest);
        tags.map(|(name, _)| name.clone()).collect()
    }

    pub(crate) fn touch(&mut self, digest: &str, now: Timestamp) {
        if let Some(m) = self.manifests.get_mut(digest) {
            m.updated = now;
        }
    }

    /// P5: the tag moves; the manifest it left and the one it reaches count as updated. A tag
    /// already on the manifest changes nothing. T1: a move is an event.
    pub(crate) fn move_tag(&mut self, tag: &str, digest: &str, now: Timestamp, cause: TagCause) {
        if self.tags.get(tag).is_some_and(|t| t.digest == digest) {
            return;
        }
        let moved = TagModel {
            digest: digest.to_owned(),
            updated: now,
        };
        let previous = self.tags.insert(tag.to_owned(), moved).map(|p| p.digest);
        if let Some(previous) = &previous {
            self.touch(previous, now);
        }
        self.touch(digest, now);
        self.record(tag, previous, Some(digest.to_owned()), now, cause);
    }

    /// T1: appends an event and returns its number.
    pub(crate) fn record(
        &mut self,
        tag: &str,
        from: Option<String>,
        to: Option<String>,
        at: Timestamp,
        cause: TagCause,
    ) -> u64 {
        self.seq += 1;
        self.history.push(EventModel {
            tag: tag.to_owned(),
            from,
            to,
            at,
            cause,
        });
        self.seq
    }

    /// D1, S2: removes live tag `tag` (the manifest counts as updated), records it, and bins
    /// it if `bin`. Returns the manifest it pointed at.
    pub(crate) fn drop_tag(
        &mut self,
        tag: &str,
        now: Timestamp,
        cause: TagCause,
        bin: bool,
    ) -> String {
        let digest = self.tags.remove(tag).expect("a live tag").digest;
        self.touch(&digest, now);
        let seq = self.record(tag, Some(digest.clone()), None, now, cause);
        if bin {
            self.bin_tags.push(BinTag {
                tag: tag.to_owned(),
                digest: digest.clone(),
                deleted_at: now,
                seq,
            });
        }
        digest
    }

    /// S3, S17: this repository's bin with a retention of `retention`, at `now`.
    pub(crate) fn bin(&self, retention: Duration, now: Timestamp) -> BinModel {
        let mut bin = BinModel {
            now,
            ..BinModel::default()
        };
        for (digest, x) in &self.manifests {
            let Some(deleted) = x.deleted else {
                continue;
            };
            let own = deleted.saturating_add(retention);
            let at = if self.listed(digest, &[]).is_some() {
                NEVER
            } else {
                own
            };
            bin.expires.insert(digest.clone(), at);
            if x.spec.index {
                let items = x.spec.items.iter().map(|c| c.digest.to_string()).collect();
                bin.indexes.insert(digest.clone(), items);
            }
        }
        // An index hands its expiry down to what it lists, until nothing changes.
        loop {
            let mut changed = false;
            for (index, items) in &bin.indexes {
                let at = bin.expires[index];
                for item in items {
                    if let Some(c) = bin.expires.get_mut(item).filter(|c| **c < at) {
                        *c = at;
                        changed = true;
                    }
                }
            }
            if !changed {
                return bin;
            }
        }
    }

    /// S17: with deletes purging, the indexes in the bin that have expired go before the
    /// manifests `doomed` they list: they are gone already.
    pub(crate) fn purge_expired_indexes(&mut self, doomed: &[String], purging: Option<&BinModel>) {
        for digest in doomed {
            for index in purging
                .map(|b| b.indexes_listing(digest, true))
                .unwrap_or_default()
            {
                self.purge_manifest(&index);
            }
        }
    }

    /// Permanently removes a manifest with its tags in the bin; the history naming it stays
    /// (T2). Its live tags are gone already.
    pub(crate) fn purge_manifest(&mut self, digest: &str) {
        self.manifests.remove(digest);
        self.bin_tags.retain(|t| t.digest != digest);
    }

    /// T2: whether an event of `tag`'s history names `digest`.
    pub(crate) fn history_names(&self, tag: &str, digest: &str) -> bool {
        self.history.iter().any(|e| {
            e.tag == tag && (e.from.as_deref() == Some(digest) || e.to.as_deref() == Some(digest))
        })
    }

    /// D2–D4, S2: deletes a live manifest's tags (in lexical order), then the manifest: into
    /// the bin if `bin`, for good otherwise. L1: their locks go with them.
    pub(crate) fn delete_live_manifest(
        &mut self,
        digest: &str,
        now: Timestamp,
        bin: bool,
        cause: TagCause,
    ) {
        for tag in self.tags_of(digest) {
            self.locks.remove(&tag);
            self.drop_tag(&tag, now, cause, bin);
        }
        self.locks.remove(digest);
        let m = &self.manifests[digest];
        let children: Vec<String> = match m.spec.index {
            true => m.spec.items.iter().map(|d| d.digest.to_string()).collect(),
            false => Vec::new(),
        };
        if bin {
            self.manifests.get_mut(digest).unwrap().deleted = Some(now);
        } else {
            self.purge_manifest(digest);
        }
        // R2: the live children of an index that goes are no longer held: they count as
        // updated.
        for child in children {
            if self.manifests.get(&child).is_some_and(ManifestModel::live) {
                self.touch(&child, now);
            }
        }
    }

    /// Deletes live manifests `doomed` in order, each with its tags.
    pub(crate) fn remove_manifests(
        &mut self,
        doomed: &[String],
        now: Timestamp,
        bin: bool,
        cause: TagCause,
    ) {
        for digest in doomed {
            self.delete_live_manifest(digest, now, bin, cause);
        }
    }

    pub(crate) fn live_manifests(&self) -> impl Iterator<Item = (&String, &ManifestModel)> {
        self.manifests.iter().filter(|(_, m)| m.live())
    }

    /// Digests of the live manifests by (last update, digest), oldest first.
    pub(crate) fn live_by_time(&self) -> Vec<String> {
        let mut all: Vec<(Timestamp, &String)> =
            self.live_manifests().map(|(d, x)| (x.updated, d)).collect();
        all.sort();
        all.into_iter().map(|(_, d)| d.clone()).collect()
    }

    /// D5: live manifest `digest` and its live referrers, recursively: breadth first, each
    /// subject's referrers by digest.
    pub(crate) fn doomed_by(&self, digest: &str) -> Vec<String> {
        let mut doomed = vec![digest.to_owned()];
        let mut next = 0;
        while let Some(subject) = doomed.get(next).cloned() {
            for (d, x) in self.live_manifests() {
                let refers = x
                    .spec
                    .subject
                    .as_ref()
                    .is_some_and(|s| s.digest.as_str() == subject);
                if refers && !doomed.contains(d) {
                    doomed.push(d.clone());
                }
            }
            next += 1;
        }
        doomed
    }

    /// The first live index (by digest) that lists `digest`, other than those of `except`
    /// (R2, D5).
    pub(crate) fn listed(&self, digest: &str, except: &[String]) -> Option<String> {
        self.live_manifests()
            .find(|(index, x)| {
                x.spec.index
                    && x.spec.items.iter().any(|c| c.digest.as_str() == digest)
                    && !except.contains(index)
            })
            .map(|(index, _)| index.clone())
    }

    /// R2, U3: whether live manifest `digest` refers to a live manifest of this repository.
    pub(crate) fn refers_to_live(&self, digest: &str) -> bool {
        let subject = self.manifests[digest].spec.subject.as_ref();
        subject.is_some_and(|s| {
            self.manifests
                .get(s.digest.as_str())
                .is_some_and(ManifestModel::live)
        })
    }

    /// L1: the locked items among manifests `doomed` and their tags, by key, each manifest
    /// before its tags (lexical), with the flag that refuses deleting them.
    pub(crate) fn locked_among(&self, doomed: &[String]) -> Vec<(String, &'static str)> {
        let keys = doomed
            .iter()
            .flat_map(|d| std::iter::once(d.clone()).chain(self.tags_of(d)));
        keys.filter_map(|k| Some((k.clone(), refusing_flag(self.locks_of(&k), Need::Delete)?)))
            .collect()
    }

    /// D5, S17, L1: why live manifests `doomed` of repository `name` cannot be deleted
    /// together: a live index outside them lists one, or an index in the bin when deletes
    /// purge (`purging`); the repository's locks; a lock of one of them or of one of their
    /// tags.
    pub(crate) fn delete_refusal(
        &self,
        name: &str,
        doomed: &[String],
        purging: Option<&BinModel>,
    ) -> Result<(), ErrKind> {
        for digest in doomed {
            let binned = purging.and_then(|b| b.indexes_listing(digest, false).into_iter().next());
            if let Some(index) = self.listed(digest, doomed).or(binned) {
                return Err(ErrKind::ManifestReferenced {
                    repository: name.to_owned(),
                    digest: digest.clone(),
                    index,
                });
            }
        }
        self.check_lock(name, "", Need::Delete)?;
        match self.locked_among(doomed).into_iter().next() {
            Some((key, flag)) => Err(locked(name, &key, flag)),
            None => Ok(()),
        }
    }

    pub(crate) fn locks_of(&self, key: &str) -> Locks {
        self.locks.get(key).copied().unwrap_or(Locks::UNLOCKED)
    }

    /// L1, L2: fails if a lock refuses `need` on item `key` of this repository, `name`: the
    /// repository's own locks cover everything in it, then the item's.
    pub(crate) fn check_lock(&self, name: &str, key: &str, need: Need) -> Result<(), ErrKind> {
        for k in ["", key] {
            if let Some(flag) = refusing_flag(self.locks_of(k), need) {
                return Err(locked(name, k, flag));
            }
        }
        Ok(())
    }

    /// L2: pointing `tag` at `digest` moves the tag, unless it is there already; either way
    /// it writes into the repository.
    pub(crate) fn check_tag_move(
        &self,
        name: &str,
        tag: &str,
        digest: &str,
    ) -> Result<(), ErrKind> {
        let moves = self.tags.get(tag).is_none_or(|t| t.digest != digest);
        self.check_lock(name, if moves { tag } else { "" }, Need::Write)
    }

    /// P8: the descriptor a referrers listing shows.
    pub(crate) fn referrer_descriptor(&self, digest: &str) -> Descriptor {
        let m = &self.manifests[digest];
        let fallback = m.spec.config.as_ref().map(|c| c.media_type.clone());
        let mut d = descriptor(&m.media_type, digest, m.body.len() as u64);
        d.artifact_type = m.spec.artifact_type.clone().or(fallback);
        d.annotations.clone_from(&m.spec.annotations);
        d
    }

    pub(crate) fn expected_manifest(&self, digest: &str) -> ExpectedManifest {
        let m = &self.manifests[digest];
        ExpectedManifest {
            digest: Digest::parse(digest).unwrap(),
            media_type: m.media_type.clone(),
            size: m.body.len() as u64,
            created: m.created,
            updated: m.updated,
            tags: self.tags_of(digest),
            artifact_type: m.spec.artifact_type.clone(),
            references: m.spec.references(),
            subject: m.spec.subject.as_ref().map(|s| s.digest.clone()),
            annotations: m.spec.annotations.clone(),
        }
    }

    /// Manifests by (last update, digest), oldest first.
    pub(crate) fn by_time(&self) -> Vec<ExpectedManifest> {
        let all = self.live_by_time();
        all.iter().map(|d| self.expected_manifest(d)).collect()
    }
}

/// What an operation needs of an item's locks (L1, L2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// To change it: push into a repository, move a tag.
    Write,
    /// To delete it, or untag it.
    Delete,
}

/// L1, L2: the flag of `locks` that refuses `need`: `write_enabled` false refuses changes and
/// deletes alike (a manifest's two flags both mean "not deletable"), `delete_enabled` false
/// deletes.
pub(crate) fn refusing_flag(locks: Locks, need: Need) -> Option<&'static str> {
    if !locks.write_enabled {
        Some("write_enabled")
    } else if need == Need::Delete && !locks.delete_enabled {
        Some("delete_enabled")
    } else {
        None
    }
}

/// The key of an item among a repository's locks ([`RepoModel::locks`]).
pub(crate) fn lock_key(item: &Item) -> String {
    match item {
        Item::Repository => String::new(),
        Item::Manifest(digest) => digest.to_string(),
        Item::Tag(tag) => tag.clone(),
    }
}

pub(crate) fn lock_item(key: &str) -> Item {
    if key.is_empty() {
        Item::Repository
    } else if key.contains(':') {
        Item::Manifest(Digest::parse(key).unwrap())
    } else {
        Item::Tag(key.to_owned())
    }
}

/// `Locked`: `flag` of item `key` of `repo` refuses the operation.
pub(crate) fn locked(repo: &str, key: &str, flag: &str) -> ErrKind {
    let item = if key.is_empty() {
        "the repository".to_owned()
    } else if key.contains(':') {
        format!("manifest {key}")
    } else {
        format!("tag {key}")
    };
    ErrKind::Locked {
        repository: repo.to_owned(),
        item,
        lock: flag.to_owned(),
    }
}

impl View for Model {
    fn blobs_of(&self, repo: &str) -> Vec<(String, u64)> {
        // A soft-deleted repository lists no blobs.
        let Some(r) = self.repositories.get(repo).filter(|r| r.deleted.is_none()) else {
            return Vec::new();
        };
        let blobs = r.blobs.iter();
        blobs.map(|(d, b)| (d.clone(), b.len() as u64)).collect()
    }

    fn manifests_of(&self, repo: &str) -> Vec<(String, String, u64)> {
        let Some(r) = self.repositories.get(repo) else {
            return Vec::new();
        };
        r.live_manifests()
            .map(|(d, m)| (d.clone(), m.media_type.clone(), m.body.len() as u64))
            .collect()
    }

    fn binned_of(&self, repo: &str) -> Vec<String> {
        let Some(r) = self.repositories.get(repo) else {
            return Vec::new();
        };
        let binned = r.manifests.iter().filter(|(_, m)| !m.live());
        binned.map(|(d, _)| d.clone()).collect()
    }

    fn named_of(&self, repo: &str, tag: Option<&str>) -> Vec<String> {
        let Some(r) = self.repositories.get(repo) else {
            return Vec::new();
        };
        let events = r.history.iter().filter(|e| tag.is_none_or(|t| e.tag == t));
        let named = events.flat_map(|e| [&e.from, &e.to]).flatten();
        let named: BTreeSet<&String> = named.collect();
        named.into_iter().cloned().collect()
    }

    fn sessions(&self) -> usize {
        self.uploads.len()
    }

    fn sent(&self, slot: usize) -> Vec<u8> {
        self.uploads[slot].bytes.clone()
    }
}

fn model_step(m: &mut Model, step: &Step) -> Outcome {
    match step {
        Step::PutBlob {
            repo,
            digest,
            bytes,
        } => {
            check_repo(repo)?;
            if !valid_digest(digest) {
                return Err(ErrKind::InvalidDigest(digest.clone()));
            }
            // L2: refused before the bytes are looked at.
            m.check_lock(repo, "", Need::Write)?;
            // C4: the bytes are verified as they are written, so a full disk refuses them
            // first, mismatched or not.
            m.room_for(digest)?;
            let actual = hash(algorithm_of(digest), bytes);
            if &actual != digest {
                return Err(ErrKind::DigestMismatch {
                    expected: digest.clone(),
                    actual,
                });
            }
            m.link(repo, digest, bytes);
            Ok(Value::Unit)
        }
        Step::PutBlobSha256 { repo, bytes } => {
            check_repo(repo)?;
            m.check_lock(repo, "", Need::Write)?;
            let digest = sha256(bytes);
            m.room_for(&digest)?;
            m.link(repo, &digest, bytes);
            Ok(Value::Digest(digest))
        }
        Step::Mount { from, to, digest } => {
            check_repo(to)?;
            check_repo(from)?;
            // S13: nothing is mounted out of the bin.
            if m.repositories
                .get(from)
                .is_some_and(|r| r.deleted.is_some())
            {
                return Err(ErrKind::RepositorySoftDeleted(from.clone()));
            }
            if !m.linked(from, digest) {
                return Err(ErrKind::BlobUnknown {
                    repository: from.clone(),
                    digest: digest.clone(),
                });
            }
            m.check_lock(to, "", Need::Write)?;
            let bytes = m.repositories[from.as_str()].blobs[digest].clone();
            m.link(to, digest, &bytes);
            Ok(Value::Unit)
        }
        Step::StartUpload { repo } => {
            check_repo(repo)?;
            m.check_lock(repo, "", Need::Write)?;
            // C4: the session's file is created before its record: nothing is started.
            m.room()?;
            m.uploads.push(UploadModel {
                repo: repo.clone(),
                started: m.now,
                bytes: Vec::new(),
                open: true,
            });
            Ok(Value::Started)
        }
        Step::Append { slot, chunk, at } => {
            let room = m.room();
            let s = m.live_session(*slot)?;
            let actual = s.bytes.len() as u64;
            if let Some(expected) = *at
                && expected != actual
            {
                return Err(ErrKind::UploadOffsetMismatch { expected, actual });
            }
            // C4: refused, an empty chunk too; the session stays at its offset.
            room?;
            s.bytes.extend_from_slice(chunk);
            Ok(Value::Offset(s.bytes.len() as u64))
        }
        Step::Finish { slot, digest } => {
            let s = m.live_session(*slot)?;
            let actual = hash(algorithm_of(digest), &s.bytes);
            if &actual != digest {
                // The session stays open.
                return Err(ErrKind::DigestMismatch {
                    expected: digest.clone(),
                    actual,
                });
            }
            let (repo, bytes) = (s.repo.clone(), s.bytes.clone());
            // L2: refused like a put; the session stays open, to finish once unlocked.
            m.check_lock(&repo, "", Need::Write)?;
            // C4: moving the bytes into the blob store is a write, unless it holds the blob;
            // refused, the session stays open, to finish once there is room.
            m.room_for(digest)?;
            m.uploads[*slot].open = false;
            m.link(&repo, digest, &bytes);
            Ok(Value::Unit)
        }
        Step::Cancel { slot } => {
            m.live_session(*slot)?.open = false;
            Ok(Value::Unit)
        }
        Step::Resume { slot, via } => {
            if let Some(via) = via {
                check_repo(via)?;
            }
            let s = m.live_session(*slot)?;
            if via.as_ref().is_some_and(|via| *via != s.repo) {
                return Err(ErrKind::UploadUnknown);
            }
            Ok(Value::Offset(s.bytes.len() as u64))
        }
        Step::Push {
            repo,
            reference,
            declared,
            spec,
            body,
        } => model_push(m, repo, reference, declared, spec, body),
        Step::Tag { repo, tag, digest } => {
            check_repo(repo)?;
            if !valid_tag(tag) {
                return Err(ErrKind::InvalidTag(tag.clone()));
            }
            if !m.has_manifest(repo, digest) {
                return Err(ErrKind::ManifestUnknown {
                    repository: repo.clone(),
                    reference: digest.clone(),
                });
            }
            m.check_tag_move(repo, tag, digest)?;
            let now = m.now;
            let r = m.repositories.get_mut(repo.as_str()).unwrap();
            r.move_tag(tag, digest, now, TagCause::Push);
            Ok(Value::Unit)
        }
        Step::Pull { repo, reference } => {
            check_repo(repo)?;
            let unknown = |reference: &str| ErrKind::ManifestUnknown {
                repository: repo.clone(),
                reference: reference.to_owned(),
            };
            let r = m.repositories.get(repo.as_str());
            let digest = match parse_reference(reference)? {
                ModelRef::Tag(t) => r
                    .and_then(|r| r.tags.get(&t))
                    .map(|t| t.digest.clone())
                    .ok_or_else(|| unknown(&t))?,
                ModelRef::Digest(d) => d,
            };
            let m = r
                .and_then(|r| r.manifests.get(&digest))
                .filter(|m| m.live())
                .ok_or_else(|| unknown(&digest))?;
            Ok(Value::Pulled {
                digest,
                media_type: m.media_type.clone(),
                body: Body(m.body.clone()),
            })
        }
        Step::Untag { repo, tag } => {
            check_repo(repo)?;
            if !valid_tag(tag) {
                return Err(ErrKind::InvalidTag(tag.clone()));
            }
            let (now, bin) = (m.now, m.policy.enabled);
            match m.repositories.get_mut(repo.as_str()) {
                Some(r) if r.tags.contains_key(tag) => {
                    r.check_lock(repo, tag, Need::Delete)?;
                    r.drop_tag(tag, now, TagCause::Untag, bin);
                    Ok(Value::Unit)
                }
                _ => Err(ErrKind::TagUnknown {
                    repository: repo.clone(),
                    tag: tag.clone(),
                }),
            }
        }
        Step::DeleteManifest { repo, reference } => model_delete_manifest(m, repo, reference),
        Step::DeleteRepository { repo } => {
            check_repo(repo)?;
            if !m.live_repo(repo) {
                return Err(ErrKind::RepositoryUnknown(repo.clone()));
            }
            // L1: the first locked item, the repository's own locks first.
            let r = &m.repositories[repo.as_str()];
            if let Some((key, locks)) = r.locks.iter().next() {
                let flag = refusing_flag(*locks, Need::Delete).expect("a lock refuses deletes");
                return Err(locked(repo, key, flag));
            }
            if !m.policy.enabled {
                m.repositories.remove(repo.as_str());
                return Ok(Value::Unit);
            }
            let now = m.now;
            let r = m.repositories.get_mut(repo.as_str()).unwrap();
            // In update order: the order of the deletions' events.
            let live = r.live_by_time();
            r.remove_manifests(&live, now, true, TagCause::Delete);
            r.deleted = Some(now);
            Ok(Value::Unit)
        }
        Step::SetPolicy { enabled, days } => {
            if !(1..=90).contains(days) {
                return Err(ErrKind::InvalidSetting {
                    setting: "soft delete retention_days".to_owned(),
                    value: days.to_string(),
                });
            }
            // S3: what the policy it replaces has expired goes first.
            model_purge_expired(m);
            m.policy = SoftDeletePolicy::disabled(*days)
                .expect("checked above")
                .with_enabled(*enabled);
            Ok(Value::Unit)
        }
        Step::Restore {
            repo,
            tag,
            digest,
            force,
            children,
        } => model_restore(
            m,
            repo,
            tag.as_deref(),
            digest.as_deref(),
            *force,
            *children,
        ),
        Step::Revert {
            repo,
            tag,
            digest,
            force,
        } => model_revert(m, repo, tag, digest, *force),
        Step::PurgeRepository { repo } => {
            check_repo(repo)?;
            // S3: an expired repository is gone.
            let deleted = m.repositories.get(repo.as_str()).and_then(|r| r.deleted);
            if !deleted.is_some_and(|at| m.unexpired(at)) {
                return Err(ErrKind::NotDeleted {
                    repository: repo.clone(),
                    item: "the repository".to_owned(),
                });
            }
            m.repositories.remove(repo.as_str());
            Ok(Value::Unit)
        }
        Step::PurgeManifest { repo, digest } => {
            check_repo(repo)?;
            let bin = m.bin(repo);
            if !bin.holds(digest) {
                return Err(ErrKind::NotDeleted {
                    repository: repo.clone(),
                    item: format!("manifest {digest}"),
                });
            }
            // S17: not before an index that lists it, live or in the bin.
            let r = m.repositories.get_mut(repo.as_str()).unwrap();
            let binned = bin.indexes_listing(digest, false).into_iter().next();
            if let Some(index) = r.listed(digest, &[]).or(binned) {
                return Err(ErrKind::ManifestReferenced {
                    repository: repo.clone(),
                    digest: digest.clone(),
                    index,
                });
            }
            r.purge_manifest(digest);
            Ok(Value::Unit)
        }
        Step::PurgeTags { repo, tag } => {
            check_repo(repo)?;
            if !valid_tag(tag) {
                return Err(ErrKind::InvalidTag(tag.clone()));
            }
            // S3: expired entries are gone; autopurge removes them.
            let (now, retention) = (m.now, m.retention());
            let r = m.repositories.get_mut(repo.as_str());
            let purged = r.map_or(0, |r| {
                let before = r.bin_tags.len();
                r.bin_tags
                    .retain(|t| t.tag != *tag || t.deleted_at.saturating_add(retention) <= now);
                before - r.bin_tags.len()
            });
            if purged == 0 {
                return Err(ErrKind::NotDeleted {
                    repository: repo.clone(),
                    item: format!("tag {tag}"),
                });
            }
            Ok(Value::Count(purged))
        }
        Step::Autopurge { now } => {
            // S4: due when it never ran, once the interval has passed, or when the clock went
            // back before the last run.
            let due = m.last_run.is_none_or(|last| {
                m.now < last || m.now >= last.saturating_add(AUTOPURGE_INTERVAL)
            });
            Ok(if *now || due {
                model_autopurge(m)
            } else {
                Value::NotDue
            })
        }
        Step::SetLocks { repo, item, locks } => {
            check_repo(repo)?;
            let r = m.repositories.get(repo.as_str());
            match item {
                Item::Repository if !m.live_repo(repo) => {
                    return Err(ErrKind::RepositoryUnknown(repo.clone()));
                }
                Item::Manifest(d) if !m.has_manifest(repo, d.as_str()) => {
                    return Err(ErrKind::ManifestUnknown {
                        repository: repo.clone(),
                        reference: d.to_string(),
                    });
                }
                Item::Tag(t) if !valid_tag(t) => return Err(ErrKind::InvalidTag(t.clone())),
                Item::Tag(t) if !r.is_some_and(|r| r.tags.contains_key(t)) => {
                    return Err(ErrKind::TagUnknown {
                        repository: repo.clone(),
                        tag: t.clone(),
                    });
                }
                _ => {}
            }
            let r = m.repositories.get_mut(repo.as_str()).unwrap();
            if locks.delete_enabled && locks.write_enabled {
                r.locks.remove(&lock_key(item));
            } else {
                r.locks.insert(lock_key(item), *locks);
            }
            Ok(Value::Unit)
        }
        Step::SetRetention(policy) => {
            if policy.days > 365 {
                return Err(ErrKind::InvalidSetting {
                    setting: "retention days".to_owned(),
                    value: policy.days.to_string(),
                });
            }
            // R1: enabling starts its clock; changing the days of an enabled policy keeps it.
            m.retention_since = match policy.enabled {
                true => m.retention_since.or(Some(m.now)),
                false => None,
            };
            m.retention = *policy;
            Ok(Value::Unit)
        }
        Step::SetHistoryRetention(days) => {
            if *days > 3650 {
                return Err(ErrKind::InvalidSetting {
                    setting: "history retention days".to_owned(),
                    value: days.to_string(),
                });
            }
            m.history_days = *days;
            Ok(Value::Unit)
        }
        Step::PurgeByFilter(p) => model_purge(m, p),
        Step::Advance(secs) => {
            m.now = m.now.saturating_add(Duration::from_secs(*secs));
            Ok(Value::Unit)
        }
        Step::Batch(steps) => {
            // C1: all or nothing.
            let mut scratch = m.clone();
            let mut values = Vec::new();
            for step in steps {
                match model_step(&mut scratch, step) {
                    Ok(value) => values.push(value),
                    Err(e) => {
                        // C2: the bytes its puts wrote stay, strays that no record names.
                        m.files = scratch.files;
                        return Err(e);
                    }
                }
            }
            *m = scratch;
            Ok(Value::Batch(values))
        }
        Step::Collect { dry_run } => Ok(m.collect(*dry_run)),
        Step::Usage => Ok(Value::Usage(m.usage())),
        // Every manifest record, live or in the bin, and every blob record is checked.
        Step::Fsck => {
            let mut report = FsckReport::default();
            report.manifests_checked = m
                .repositories
                .values()
                .map(|r| r.manifests.len() as u64)
                .sum();
            report.blobs_checked = m.blob_records.len() as u64;
            // S17: an index never loses what it lists, so no reference is missing.
            Ok(Value::Fsck(report))
        }
        // The disk stays as full as it was.
        Step::Reopen => Ok(Value::Unit),
        Step::DiskFull(full) => {
            m.disk_full = *full;
            Ok(Value::Unit)
        }
        // C4, C5: the store's own disk has room for its space reserve, and that is what
        // `health` looks at: a refusal by the blob store makes the store release the reserve,
        // and `health` takes it back. So it says writable even while the blob store is full;
        // a disk that is really full is for the library's `tests/storage_full.rs` (tmpfs).
        Step::Health => Ok(Value::Health {
            writable: true,
            storage_full: false,
        }),
        Step::NoSession => Ok(Value::NoSession),
    }
}

/// S17: the (repository, index, child) of every manifest an index (live or in the bin) lists
/// that is gone. The model checks after every step that there is none: it is what lets fsck
/// (A2) expect no `MissingReference`.
pub(crate) fn lost_children(m: &Model) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (name, repo) in &m.repositories {
        for (digest, manifest) in &repo.manifests {
            if !manifest.spec.index {
                continue;
            }
            for child in &manifest.spec.items {
                if !repo.manifests.contains_key(child.digest.as_str()) {
                    out.push((name.clone(), digest.clone(), child.digest.to_string()));
                }
            }
        }
    }
    out
}

/// D2, D3, D5: the manifest and its live referrers, recursively; refused while a live index
/// outside them lists one of them, or a lock protects them (L1).
pub(crate) fn model_delete_manifest(m: &mut Model, repo: &str, reference: &str) -> Outcome {
    check_repo(repo)?;
    let unknown = |reference: &str| ErrKind::ManifestUnknown {
        repository: repo.to_owned(),
        reference: reference.to_owned(),
    };
    let r = m.repositories.get(repo);
    let digest = match parse_reference(reference)? {
        ModelRef::Tag(t) => r
            .and_then(|r| r.tags.get(&t))
            .map(|t| t.digest.clone())
            .ok_or_else(|| unknown(&t))?,
        ModelRef::Digest(d) => d,
    };
    if !m.has_manifest(repo, &digest) {
        return Err(unknown(&digest));
    }
    let (now, bin) = (m.now, m.policy.enabled);
    let purging = m.bin_if_purging(repo);
    let r = m.repositories.get_mut(repo).unwrap();
    let doomed = r.doomed_by(&digest);
    r.delete_refusal(repo, &doomed, purging.as_ref())?;
    r.purge_expired_indexes(&doomed, purging.as_ref());
    r.remove_manifests(&doomed, now, bin, TagCause::Delete);
    Ok(Value::Digests(doomed))
}

/// S6–S11, S17: brings `digest` (or the manifest `tag` was most recently deleted from) back
/// with at most `tag`; a forced restore moves `tag` off another manifest, into the bin. The bin
/// must hold something for it (S6): the manifest, or that tag on the live manifest. With
/// `children`, an index brings back what it lists from the bin. Expired items are gone (S3).
pub(crate) fn model_restore(
    m: &mut Model,
    repo: &str,
    tag: Option<&str>,
    digest: Option<&str>,
    force: bool,
    children: bool,
) -> Outcome {
    check_repo(repo)?;
    if let Some(tag) = tag.filter(|t| !valid_tag(t)) {
        return Err(ErrKind::InvalidTag(tag.to_owned()));
    }
    let r = m.repositories.get(repo);
    let binned_tag = |t: &&BinTag, tag: &str| t.tag == tag && m.unexpired(t.deleted_at);
    let digest = match (tag, digest) {
        (_, Some(digest)) => digest.to_owned(),
        (Some(tag), None) => r
            .and_then(|r| {
                r.bin_tags
                    .iter()
                    .filter(|t| binned_tag(t, tag))
                    .max_by_key(|t| t.seq)
            })
            .map(|t| t.digest.clone())
            .ok_or_else(|| ErrKind::NotDeleted {
                repository: repo.to_owned(),
                item: format!("tag {tag}"),
            })?,
        (None, None) => unreachable!("a restore names a tag or a digest"),
    };
    let bin = m.bin(repo);
    let live = m.has_manifest(repo, &digest);
    let tag_binned = tag.is_some_and(|tag| {
        r.is_some_and(|r| {
            r.bin_tags
                .iter()
                .any(|t| binned_tag(&t, tag) && t.digest == digest)
        })
    });
    let restorable = bin.holds(&digest) || (live && tag_binned);
    if !restorable {
        let item = match tag {
            Some(tag) if live => format!("tag {tag}"),
            _ => format!("manifest {digest}"),
        };
        return Err(ErrKind::NotDeleted {
            repository: repo.to_owned(),
            item,
        });
    }
    // All or nothing: a child's subject may refuse the restore half way.
    let mut scratch = m.clone();
    bring_back(&mut scratch, repo, tag, &digest, force, children, &bin)?;
    *m = scratch;
    Ok(Value::Digest(digest))
}

/// T2: points `tag` back at `digest`, which its history must name, live or in the bin (not
/// expired), as a restore would; a purged or expired one is unknown.
pub(crate) fn model_revert(
    m: &mut Model,
    repo: &str,
    tag: &str,
    digest: &str,
    force: bool,
) -> Outcome {
    check_repo(repo)?;
    if !valid_tag(tag) {
        return Err(ErrKind::InvalidTag(tag.to_owned()));
    }
    if !m
        .repositories
        .get(repo)
        .is_some_and(|r| r.history_names(tag, digest))
    {
        return Err(ErrKind::NotInHistory {
            repository: repo.to_owned(),
            tag: tag.to_owned(),
            digest: digest.to_owned(),
        });
    }
    let bin = m.bin(repo);
    if !m.has_manifest(repo, digest) && !bin.holds(digest) {
        return Err(ErrKind::ManifestUnknown {
            repository: repo.to_owned(),
            reference: digest.to_owned(),
        });
    }
    bring_back(m, repo, Some(tag), digest, force, false, &bin)?;
    Ok(Value::Unit)
}

/// S6–S11, S17: the restore of `digest`, live or in `bin`, with `tag`, once it is known the
/// bin holds something for it.
fn bring_back(
    m: &mut Model,
    repo: &str,
    tag: Option<&str>,
    digest: &str,
    force: bool,
    children: bool,
    bin: &BinModel,
) -> Result<(), ErrKind> {
    let binned = !m.has_manifest(repo, digest);
    if binned {
        check_subject(m, repo, digest, bin)?;
    }
    // L2: a restore writes into the repository, and moves its tag.
    match tag {
        Some(tag) => m.check_tag_move(repo, tag, digest)?,
        None => m.check_lock(repo, "", Need::Write)?,
    }
    let (now, policy_on) = (m.now, m.policy.enabled);
    let r = m.repositories.get(repo);
    if let Some(tag) = tag {
        let current = r.and_then(|r| r.tags.get(tag)).map(|t| t.digest.clone());
        if let Some(current) = current.filter(|c| *c != digest) {
            if !force {
                return Err(ErrKind::TagConflict {
                    repository: repo.to_owned(),
                    tag: tag.to_owned(),
                    digest: current,
                });
            }
            let r = m.repositories.get_mut(repo).unwrap();
            r.drop_tag(tag, now, TagCause::Restore, policy_on);
        }
    }
    let retention = m.retention();
    let r = m.ensure_repo(repo);
    let x = r.manifests.get_mut(digest).unwrap();
    if binned {
        x.deleted = None;
        x.updated = now;
    }
    let items: Vec<String> = x.spec.items.iter().map(|c| c.digest.to_string()).collect();
    let items = if children && x.spec.index {
        items
    } else {
        Vec::new()
    };
    if let Some(tag) = tag {
        // S3: an expired entry of the tag stays for autopurge.
        r.bin_tags.retain(|t| {
            !(t.tag == tag && t.digest == digest && now < t.deleted_at.saturating_add(retention))
        });
        r.move_tag(tag, digest, now, TagCause::Restore);
    }
    for item in items {
        restore_child(m, repo, &item, bin)?;
    }
    Ok(())
}

/// S17: brings `digest`, listed by an index being restored, back untagged if it is in the
/// bin, and what it lists in turn, depth first in list order.
fn restore_child(m: &mut Model, repo: &str, digest: &str, bin: &BinModel) -> Result<(), ErrKind> {
    let r = &m.repositories[repo];
    let in_bin = r.manifests.get(digest).is_some_and(|x| !x.live());
    if !in_bin || !bin.holds(digest) {
        return Ok(());
    }
    check_subject(m, repo, digest, bin)?;
    let now = m.now;
    let x = m.ensure_repo(repo).manifests.get_mut(digest).unwrap();
    x.deleted = None;
    x.updated = now;
    let items: Vec<String> = match x.spec.index {
        true => x.spec.items.iter().map(|c| c.digest.to_string()).collect(),
        false => Vec::new(),
    };
    for item in items {
        restore_child(m, repo, &item, bin)?;
    }
    Ok(())
}

/// S10: a referrer whose subject is in the bin, and not expired, stays there.
fn check_subject(m: &Model, repo: &str, digest: &str, bin: &BinModel) -> Result<(), ErrKind> {
    let r = &m.repositories[repo];
    let Some(subject) = r.manifests[digest].spec.subject.as_ref() else {
        return Ok(());
    };
    let subject = subject.digest.to_string();
    let binned = r.manifests.get(&subject).is_some_and(|s| !s.live());
    if binned && bin.holds(&subject) {
        return Err(ErrKind::SubjectDeleted {
            repository: repo.to_owned(),
            subject,
        });
    }
    Ok(())
}

/// S3, S4: removes every expired tombstone, then applies the retention policy (R1). T2: then
/// the history events older than the history retention.
pub(crate) fn model_autopurge(m: &mut Model) -> Value {
    let now = m.now;
    let (repositories, manifests, tags) = model_purge_expired(m);
    // After the bin is emptied: what the policy deletes now stays in the bin.
    let untagged_deleted = model_retention(m);
    let mut history_events = 0;
    if m.history_days > 0 {
        let kept = Duration::from_secs(u64::from(m.history_days) * 86_400);
        for r in m.repositories.values_mut() {
            let before = r.history.len();
            r.history.retain(|e| now < e.at.saturating_add(kept));
            history_events += before - r.history.len();
        }
    }
    m.last_run = Some(now);
    Value::Purged {
        at: now,
        repositories,
        manifests,
        tags,
        untagged_deleted,
        history_events,
    }
}

/// S3, S17: removes every tombstone whose retention, as it is now, has run out: tags, then
/// manifests (with what belongs to them) but those an index that stays lists, then
/// repositories (with everything in them). Returns how many repositories, manifests and
/// tags.
pub(crate) fn model_purge_expired(m: &mut Model) -> (usize, usize, usize) {
    let (now, retention) = (m.now, m.retention());
    let expired = move |at: Timestamp| at.saturating_add(retention) <= now;
    let (mut tags, mut manifests) = (0, 0);
    for r in m.repositories.values_mut() {
        let before = r.bin_tags.len();
        r.bin_tags.retain(|t| !expired(t.deleted_at));
        tags += before - r.bin_tags.len();
    }
    for r in m.repositories.values_mut() {
        let bin = r.bin(retention, now);
        let doomed: Vec<String> = bin
            .expires
            .keys()
            .filter(|d| bin.expired(d))
            .cloned()
            .collect();
        manifests += doomed.len();
        for digest in doomed {
            r.purge_manifest(&digest);
        }
    }
    let before = m.repositories.len();
    m.repositories
        .retain(|_, r| !r.deleted.is_some_and(expired));
    let repositories = before - m.repositories.len();
    (repositories, manifests, tags)
}

/// R1–R3: deletes every live manifest that has stayed untagged for the policy's days since a
/// time at or after the policy took effect, and returns how many manifests went, referrers
/// included. R2 spares children of a live index and referrers of a live subject; a manifest
/// whose deletion is refused (D5, L1) stays. A run leaves nothing due behind: a deletion can
/// free what it held (an index its children), so passes repeat until one deletes nothing. Each
/// pass goes oldest first (by untagged since, repository, digest), each manifest judged as the
/// ones before it left the registry.
pub(crate) fn model_retention(m: &mut Model) -> usize {
    let mut deleted = 0;
    loop {
        let pass = retention_pass(m);
        deleted += pass;
        if pass == 0 {
            return deleted;
        }
    }
}

/// One pass of [`model_retention`].
pub(crate) fn retention_pass(m: &mut Model) -> usize {
    let Some(since) = m.retention_since else {
        return 0;
    };
    let period = Duration::from_secs(u64::from(m.retention.days) * 86_400);
    let cutoff = m.now.saturating_sub(period);
    // An untagged manifest's last update is when it lost its last tag, or was pushed or
    // restored untagged.
    let mut due: Vec<(Timestamp, String, String)> = Vec::new();
    for (name, r) in &m.repositories {
        for (digest, x) in r.live_manifests() {
            if r.tags_of(digest).is_empty() && since <= x.updated && x.updated <= cutoff {
                due.push((x.updated, name.clone(), digest.clone()));
            }
        }
    }
    due.sort();
    let (now, bin) = (m.now, m.policy.enabled);
    let mut deleted = 0;
    for (_, name, digest) in due {
        let purging = m.bin_if_purging(&name);
        let r = m.repositories.get_mut(&name).unwrap();
        // An earlier deletion may have taken it along as a referrer.
        let live = r.manifests.get(&digest).is_some_and(ManifestModel::live);
        if !live || r.listed(&digest, &[]).is_some() || r.refers_to_live(&digest) {
            continue;
        }
        let doomed = r.doomed_by(&digest);
        if r.delete_refusal(&name, &doomed, purging.as_ref()).is_ok() {
            r.purge_expired_indexes(&doomed, purging.as_ref());
            r.remove_manifests(&doomed, now, bin, TagCause::Retention);
            deleted += doomed.len();
        }
    }
    deleted
}

/// The length of a purge age of [`AGOS`], if it is one.
pub(crate) fn ago_secs(ago: &str) -> Option<u64> {
    AGOS.iter()
        .find(|(text, _)| *text == ago)
        .and_then(|(_, secs)| *secs)
}

/// U1–U6: a purge by filter, on the model (on a copy of it for a dry run).
pub(crate) fn model_purge(m: &mut Model, p: &PurgeSel) -> Outcome {
    let filters = p
        .filters
        .iter()
        .map(|text| {
            let case = FILTERS.iter().find(|f| f.text == *text);
            case.ok_or_else(|| ErrKind::InvalidFilter(text.to_string()))
        })
        .collect::<Result<Vec<&FilterCase>, ErrKind>>()?;
    let ago = ago_secs(p.ago).ok_or_else(|| ErrKind::InvalidSetting {
        setting: "purge ago".to_owned(),
        value: p.ago.to_owned(),
    })?;
    if filters.is_empty() {
        return Err(ErrKind::InvalidFilter(String::new()));
    }
    let dry_run = p.run == PurgeRun::Dry;
    let mut work = m.clone();
    let (now, bin, retention) = (work.now, work.policy.enabled, work.retention());
    let cutoff = now.saturating_sub(Duration::from_secs(ago));
    let mut repositories = Vec::new();
    // Live repositories a filter's repository part matches, in name order.
    for (name, r) in work.repositories.iter_mut() {
        let here: Vec<&FilterCase> = filters.iter().copied().filter(|f| (f.repo)(name)).collect();
        if r.deleted.is_some() || here.is_empty() {
            continue;
        }
        let purging = (!bin).then(|| r.bin(retention, now));
        let purging = purging.as_ref();
        repositories.extend(r.purge_by_filter(name, &here, p, cutoff, now, purging));
    }
    if !dry_run {
        *m = work;
    }
    Ok(Value::PurgeReport {
        dry_run,
        at: now,
        repositories,
    })
}

impl RepoModel {
    /// U2–U4, U6: purges this repository, `name`, by the filters that match its name; `None`
    /// if there was nothing to do or report. `purging` is its bin when deletes purge (S17).
    pub(crate) fn purge_by_filter(
        &mut self,
        name: &str,
        filters: &[&FilterCase],
        p: &PurgeSel,
        cutoff: Timestamp,
        now: Timestamp,
        purging: Option<&BinModel>,
    ) -> Option<RepositoryPurge> {
        let bin = purging.is_none();
        // U2: matching tags last updated before the cutoff, newest first (names break ties),
        // without the `keep` first.
        let mut selected: Vec<(Timestamp, String)> = self
            .tags
            .iter()
            .filter(|(t, x)| x.updated < cutoff && filters.iter().any(|f| (f.tag)(t)))
            .map(|(t, x)| (x.updated, t.clone()))
            .collect();
        selected.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let tags: Vec<String> = selected.into_iter().skip(p.keep).map(|(_, t)| t).collect();
        // U3: manifests are judged by their last update before this purge.
        let before: BTreeMap<String, Timestamp> = self
            .manifests
            .iter()
            .map(|(d, x)| (d.clone(), x.updated))
            .collect();
        let mut report = RepositoryPurge::default();
        report.repository = name.to_owned();
        // U4: a locked repository is skipped whole, with or without `include_locked`, and
        // reported if the purge would change it but for the locks.
        if self.check_lock(name, "", Need::Delete).is_err() {
            let busy = !tags.is_empty()
                || (p.untagged && !self.unlisted(cutoff, &before, purging).is_empty());
            report.locked.push(Item::Repository);
            return busy.then_some(report);
        }
        let mut locked: BTreeSet<Item> = BTreeSet::new();
        let mut untag = Vec::new();
        for tag in tags {
            if refusing_flag(self.locks_of(&tag), Need::Delete).is_some() {
                if !p.include_locked {
                    locked.insert(Item::Tag(tag));
                    continue;
                }
                self.locks.remove(&tag);
            }
            untag.push(tag);
        }
        let mut doomed: Vec<String> = Vec::new();
        if p.untagged {
            // Judged as if the tags were gone.
            let mut trial = self.clone();
            for tag in &untag {
                trial.drop_tag(tag, now, TagCause::Purge, bin);
            }
            let mut closures = trial.unlisted(cutoff, &before, purging);
            // U4: of what would go, what a lock keeps, and then what it lists.
            if !p.include_locked {
                closures.retain(|closure| {
                    let held = trial.locked_among(closure);
                    locked.extend(held.iter().map(|(key, _)| lock_item(key)));
                    held.is_empty()
                });
                trial.keep_listed(&mut closures, purging);
            }
            doomed = closures.concat();
        }
        // The tags of what stays go first; what goes takes its tags with it (T1 order).
        for tag in &untag {
            if !doomed.contains(&self.tags[tag].digest) {
                self.drop_tag(tag, now, TagCause::Purge, bin);
            }
        }
        self.purge_expired_indexes(&doomed, purging);
        self.remove_manifests(&doomed, now, bin, TagCause::Purge);
        report.tags_untagged = untag;
        report.tags_untagged.sort();
        doomed.sort();
        report.manifests_deleted = doomed.iter().map(|d| Digest::parse(d).unwrap()).collect();
        report.locked = locked.into_iter().collect();
        let idle = report.tags_untagged.is_empty()
            && report.manifests_deleted.is_empty()
            && report.locked.is_empty();
        (!idle).then_some(report)
    }

    /// U3: the candidates with their referrers (D5) that would go, locks aside: all but what
    /// an index that stays lists.
    pub(crate) fn unlisted(
        &self,
        cutoff: Timestamp,
        before: &BTreeMap<String, Timestamp>,
        purging: Option<&BinModel>,
    ) -> Vec<Vec<String>> {
        let candidates = self.purge_candidates(cutoff, before).into_iter();
        let mut closures: Vec<Vec<String>> = candidates.map(|c| self.doomed_by(&c)).collect();
        self.keep_listed(&mut closures, purging);
        closures
    }

    /// D5, S17: keeps (drops from `closures`) what a live index outside them lists, or an
    /// index in the bin when deletes purge, which may keep that index's children too; until
    /// nothing changes.
    pub(crate) fn keep_listed(&self, closures: &mut Vec<Vec<String>>, purging: Option<&BinModel>) {
        let in_bin = |d: &str| purging.is_some_and(|b| !b.indexes_listing(d, false).is_empty());
        while let Some(kept) = closures.iter().position(|closure| {
            let all: Vec<String> = closures.concat();
            closure
                .iter()
                .any(|d| self.listed(d, &all).is_some() || in_bin(d))
        }) {
            closures.remove(kept);
        }
    }

    /// U3: the live untagged manifests last updated before `cutoff` by their times `before`
    /// the purge, but referrers of a live subject; oldest first by those times (the purge
    /// plans before it changes anything).
    pub(crate) fn purge_candidates(
        &self,
        cutoff: Timestamp,
        before: &BTreeMap<String, Timestamp>,
    ) -> Vec<String> {
        let mut candidates: Vec<String> = self
            .live_by_time()
            .into_iter()
            .filter(|d| self.tags_of(d).is_empty() && before[d] < cutoff && !self.refers_to_live(d))
            .collect();
        candidates.sort_by(|a, b| (before[a], a).cmp(&(before[b], b)));
        candidates
    }
}

/// P3–P5: validate in order (name, reference, media type, digest, references), then store.
pub(crate) fn model_push(
    m: &mut Model,
    repo: &str,
    reference: &str,
    declared: &str,
    spec: &BodySpec,
    body: &[u8],
) -> Outcome {
    check_repo(repo)?;
    let reference = parse_reference(reference)?;
    if declared != spec.media_type {
        return Err(ErrKind::MediaTypeMismatch {
            declared: declared.to_owned(),
            body: spec.media_type.to_owned(),
        });
    }
    let (digest, tag) = match reference {
        ModelRef::Tag(t) => (sha256(body), Some(t)),
        ModelRef::Digest(expected) => {
            let actual = hash(algorithm_of(&expected), body);
            if actual != expected {
                return Err(ErrKind::DigestMismatch { expected, actual });
            }
            (actual, None)
        }
    };
    // L2: a write into the repository, moving the tag if any.
    match &tag {
        Some(tag) => m.check_tag_move(repo, tag, &digest)?,
        None => m.check_lock(repo, "", Need::Write)?,
    }
    // S13: the bin first, whatever the manifest references. S3: an expired tombstone is
    // gone: purged, and the push is of a new manifest.
    let expired = m.bin(repo).expired(&digest);
    let binned = m
        .repositories
        .get(repo)
        .and_then(|r| r.manifests.get(&digest));
    if binned.is_some_and(|x| !x.live()) && !expired {
        return Err(ErrKind::ManifestSoftDeleted {
            repository: repo.to_owned(),
            digest,
        });
    }
    for r in spec.references() {
        let d = r.digest.as_str();
        if spec.index && !m.has_manifest(repo, d) {
            return Err(ErrKind::ManifestUnknown {
                repository: repo.to_owned(),
                reference: d.to_owned(),
            });
        }
        if !spec.index && !m.linked(repo, d) {
            return Err(ErrKind::BlobUnknown {
                repository: repo.to_owned(),
                digest: d.to_owned(),
            });
        }
    }
    let now = m.now;
    let r = m.ensure_repo(repo);
    if expired {
        r.purge_manifest(&digest);
    }
    let created = !r.manifests.contains_key(&digest);
    let previous = tag
        .as_ref()
        .and_then(|tag| r.tags.get(tag))
        .map(|t| t.digest.clone());
    match r.manifests.get_mut(&digest) {
        Some(existing) => existing.updated = now,
        None => {
            let record = ManifestModel {
                body: body.to_vec(),
                media_type: declared.to_owned(),
                created: now,
                updated: now,
                spec: spec.clone(),
                deleted: None,
            };
            r.manifests.insert(digest.clone(), record);
        }
    }
    if let Some(tag) = tag {
        r.move_tag(&tag, &digest, now, TagCause::Push);
    }
    Ok(Value::Pushed {
        digest,
        created,
        subject: spec.subject.as_ref().map(|s| s.digest.to_string()),
        previous,
    })
}
