//! A real [`Registry`] as a [`System`](super::System), and the comparison of its whole
//! state with the model.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ocistore::{
    Algorithm, Batch, BlobStore, CollectOptions, Descriptor, Digest, DirectoryStore, Error,
    FsckOptions, Item, Locks, ManifestQuery, ManualClock, OnConflict, OpenMode, Page, Problem,
    PurgeOptions, Pushed, Registry, Restore, RestoreOptions, SoftDeletePolicy, Timestamp, Upload,
    parse_ago,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use tempfile::TempDir;

use super::*;
use super::{grammar::*, model::*, op::*, outcome::*, step::*};
use crate::expected::{
    ExpectedDeletedManifest, ExpectedDeletedRepository, ExpectedDeletedTag, ExpectedTag,
    ExpectedTagEvent,
};

/// A [`Registry`] under test: a store in a temporary directory (on tmpfs when the host has
/// one), on a [`ManualClock`] that starts at 2026-01-01, with what a client knows of its
/// upload sessions (their ids and the bytes it sent), which a `Registry` alone cannot tell.
/// Its blobs go through a [`FaultyStore`](crate::FaultyStore) of a [`Faults`] handle (on every
/// reopen too), which [`Step::DiskFull`] switches.
///
/// As a [`System`] it runs every [`Step`] through the crate's public API, and checks its whole
/// state, read back through the public API, against the model after each one.
pub struct RegistrySystem {
    pub(crate) dir: TempDir,
    pub(crate) clock: ManualClock,
    pub(crate) faults: Faults,
    /// Where the blobs live, behind the faults; `None`: in the store's directory, whichever it
    /// is now (a crash image replaces it).
    pub(crate) blobs: Option<Arc<dyn BlobStore>>,
    /// `None` only while reopening.
    pub(crate) registry: Option<Registry>,
    /// More [shared](OpenMode::Shared) handles on the same store: [`registry`](Self::registry)
    /// hands out each in turn, so consecutive steps write through one and read through
    /// another (M2).
    pub(crate) peers: Vec<Registry>,
    turn: Cell<usize>,
    pub(crate) uploads: Vec<ClientUpload>,
}

/// An upload session as its client knows it.
pub(crate) struct ClientUpload {
    pub(crate) id: String,
    pub(crate) repo: String,
    /// The bytes appended successfully.
    pub(crate) sent: Vec<u8>,
    /// The handle; `None` after a reopen until the session is resumed.
    pub(crate) handle: Option<Upload>,
}

impl Default for RegistrySystem {
    fn default() -> RegistrySystem {
        RegistrySystem::new()
    }
}

impl RegistrySystem {
    /// A new, empty store, with nothing armed.
    pub fn new() -> RegistrySystem {
        RegistrySystem::with_faults(Faults::new())
    }

    /// A new, empty store whose blob writes obey `faults`.
    pub fn with_faults(faults: Faults) -> RegistrySystem {
        RegistrySystem::open_new(faults, None, 0)
    }

    /// A new, empty store opened [shared](OpenMode::Shared) by `handles` handles, which take
    /// turns: each holds its own locks on the store, as another process would (M1, M2).
    pub fn shared(handles: usize) -> RegistrySystem {
        RegistrySystem::open_new(Faults::new(), None, handles.saturating_sub(1).max(1))
    }

    /// A new, empty store whose blobs live in `blobs` (an empty place, such as a fresh prefix
    /// of a bucket: O1, O2), kept across reopens.
    pub fn on_blob_store(blobs: Arc<dyn BlobStore>) -> RegistrySystem {
        RegistrySystem::open_new(Faults::new(), Some(blobs), 0)
    }

    fn open_new(faults: Faults, blobs: Option<Arc<dyn BlobStore>>, peers: usize) -> RegistrySystem {
        let dir = match tmpfs() {
            Some(tmpfs) => tempfile::tempdir_in(tmpfs),
            None => tempfile::tempdir(),
        }
        .expect("tempdir");
        let mut system = RegistrySystem {
            dir,
            clock: ManualClock::new(START),
            faults,
            blobs,
            registry: None,
            peers: Vec::new(),
            turn: Cell::new(0),
            uploads: Vec::new(),
        };
        system.open_handles(peers);
        system
    }

    fn open_handles(&mut self, peers: usize) {
        let mode = if peers == 0 {
            OpenMode::Exclusive
        } else {
            OpenMode::Shared
        };
        let blobs = self.blob_store();
        let open = || {
            let store = self.faults.store(blobs.clone(), self.dir.path());
            open(self.dir.path(), &self.clock, store, mode)
        };
        let registry = open();
        let peers = (0..peers).map(|_| open()).collect();
        (self.registry, self.peers) = (Some(registry), peers);
    }

    /// The store: with shared handles, the next one in turn.
    pub fn registry(&self) -> &Registry {
        let turn = self.turn.get();
        self.turn.set(turn.wrapping_add(1));
        match turn % (self.peers.len() + 1) {
            0 => self.registry.as_ref().expect("open"),
            peer => &self.peers[peer - 1],
        }
    }

    /// Where the blobs live now.
    pub(crate) fn blob_store(&self) -> Arc<dyn BlobStore> {
        self.blobs
            .clone()
            .unwrap_or_else(|| Arc::new(DirectoryStore::new(self.dir.path())))
    }

    /// The handle the store's blob writes obey.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Drops every handle and opens the store again, with the same [`Faults`].
    pub(crate) fn reopen(&mut self) {
        for u in &mut self.uploads {
            u.handle = None;
        }
        let peers = self.peers.len();
        drop(self.registry.take());
        self.peers.clear();
        self.open_handles(peers);
    }

    /// The session's handle, resumed through its repository after a reopen.
    pub(crate) fn upload(&mut self, slot: usize) -> Result<&Upload, ErrKind> {
        let registry = self.registry.as_ref().expect("open");
        let u = &mut self.uploads[slot];
        if u.handle.is_none() {
            let repo = registry.repository(&u.repo).map_err(kind)?;
            u.handle = Some(repo.resume_upload(&u.id).map_err(kind)?);
        }
        Ok(u.handle.as_ref().unwrap())
    }
}

pub(crate) fn parse_digest(d: &str) -> Result<Digest, ErrKind> {
    Digest::parse(d).map_err(kind)
}

pub(crate) fn digests(deleted: &[Digest]) -> Value {
    Value::Digests(deleted.iter().map(Digest::to_string).collect())
}

pub(crate) fn restore_what<'a>(tag: Option<&'a str>, digest: Option<&'a Digest>) -> Restore<'a> {
    match (tag, digest) {
        (Some(tag), Some(digest)) => Restore::TagAndDigest(tag, digest),
        (Some(tag), None) => Restore::Tag(tag),
        (None, Some(digest)) => Restore::Digest(digest),
        (None, None) => unreachable!("a restore names a tag or a digest"),
    }
}

/// A push's result as the model predicts it.
fn pushed_value(pushed: Pushed) -> Value {
    let text = |d: Option<Digest>| d.as_ref().map(Digest::to_string);
    Value::Pushed {
        digest: pushed.digest.to_string(),
        created: pushed.created,
        subject: text(pushed.subject),
        previous: text(pushed.previous),
    }
}

/// The conflict choice of a step's `force` flag (S6).
pub(crate) fn on_conflict(force: bool) -> OnConflict {
    if force {
        OnConflict::MoveTag
    } else {
        OnConflict::Refuse
    }
}

impl System for RegistrySystem {
    fn step(&mut self, step: &Step) -> Outcome {
        registry_step(self, step)
    }

    fn check(&mut self, model: &Model) -> Result<(), TestCaseError> {
        prop_assert_eq!(self.registry().now(), model.now);
        compare(model, self.registry())?;
        compare_uploads(model, self)?;
        compare_files(model, self)
    }
}

fn registry_step(sut: &mut RegistrySystem, step: &Step) -> Outcome {
    if let Step::Reopen = step {
        // No handle may outlive the store it was opened on.
        sut.reopen();
        return Ok(Value::Unit);
    }
    let reg = sut.registry().clone();
    let repository = |name: &str| reg.repository(name).map_err(kind);
    match step {
        Step::PutBlob {
            repo,
            digest,
            bytes,
        } => {
            let repo = repository(repo)?;
            let digest = parse_digest(digest)?;
            repo.put_blob(&digest, bytes).map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::PutBlobSha256 { repo, bytes } => {
            let d = repository(repo)?.put_blob_sha256(bytes).map_err(kind)?;
            Ok(Value::Digest(d.to_string()))
        }
        Step::Mount { from, to, digest } => {
            let to = repository(to)?;
            to.mount_blob(from, &parse_digest(digest)?).map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::StartUpload { repo } => {
            let repo = repository(repo)?;
            let upload = repo.start_upload().map_err(kind)?;
            assert_eq!(upload.offset(), 0, "a new session is at offset 0");
            sut.uploads.push(ClientUpload {
                id: upload.id().to_owned(),
                repo: repo.name().to_owned(),
                sent: Vec::new(),
                handle: Some(upload),
            });
            Ok(Value::Started)
        }
        Step::Append { slot, chunk, at } => {
            let upload = sut.upload(*slot)?;
            let offset = match at {
                None => upload.append(chunk),
                Some(at) => upload.append_at(*at, chunk),
            }
            .map_err(kind)?;
            assert_eq!(upload.offset(), offset, "append returns the new offset");
            sut.uploads[*slot].sent.extend_from_slice(chunk);
            Ok(Value::Offset(offset))
        }
        Step::Finish { slot, digest } => {
            let digest = parse_digest(digest)?;
            sut.upload(*slot)?.finish(&digest).map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::Cancel { slot } => {
            sut.upload(*slot)?.cancel().map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::Resume { slot, via } => {
            let u = &sut.uploads[*slot];
            let repo = repository(via.as_deref().unwrap_or(&u.repo))?;
            let upload = repo.resume_upload(&u.id).map_err(kind)?;
            Ok(Value::Offset(upload.offset()))
        }
        Step::Push {
            repo,
            reference,
            declared,
            body,
            ..
        } => {
            let pushed = repository(repo)?
                .push_manifest(reference, declared, body)
                .map_err(kind)?;
            Ok(pushed_value(pushed))
        }
        Step::Tag { repo, tag, digest } => {
            let repo = repository(repo)?;
            repo.tag(tag, &parse_digest(digest)?).map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::Pull { repo, reference } => {
            let pulled = repository(repo)?.pull(reference).map_err(kind)?;
            Ok(Value::Pulled {
                digest: pulled.digest.to_string(),
                media_type: pulled.media_type,
                body: Body(pulled.body.to_vec()),
            })
        }
        // `Repository::untag` and the like are a batch of one such call each.
        Step::Untag { .. }
        | Step::DeleteManifest { .. }
        | Step::DeleteRepository { .. }
        | Step::Restore { .. } => {
            let mut values = in_batch(&reg, std::slice::from_ref(step))?;
            Ok(values.pop().expect("one value per step"))
        }
        Step::SetPolicy { enabled, days } => {
            let mut policy = SoftDeletePolicy::default().with_enabled(*enabled);
            policy.retention_days = *days;
            reg.set_soft_delete_policy(policy).map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::Revert {
            repo,
            tag,
            digest,
            force,
        } => {
            let repo = repository(repo)?;
            repo.revert_tag(tag, &parse_digest(digest)?, on_conflict(*force))
                .map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::PurgeRepository { repo } => {
            reg.purge_deleted_repository(repo).map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::PurgeManifest { repo, digest } => {
            let repo = repository(repo)?;
            repo.purge_deleted_manifest(&parse_digest(digest)?)
                .map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::PurgeTags { repo, tag } => {
            let purged = repository(repo)?.purge_deleted_tags(tag).map_err(kind)?;
            Ok(Value::Count(purged))
        }
        Step::Autopurge { now } => {
            let report = if *now {
                Some(reg.run_now().map_err(kind)?)
            } else {
                reg.run_due().map_err(kind)?
            };
            Ok(report.map_or(Value::NotDue, |r| Value::Purged {
                at: r.ran_at,
                repositories: r.repositories,
                manifests: r.manifests,
                tags: r.tags,
                untagged_deleted: r.untagged_deleted,
                history_events: r.history_events,
            }))
        }
        Step::Usage => Ok(Value::Usage(reg.usage().map_err(kind)?)),
        Step::Fsck => {
            let mut report = reg.fsck(&FsckOptions::default()).map_err(kind)?;
            report
                .problems
                .retain(|p| !matches!(p, Problem::StrayBlobFile { .. }));
            Ok(Value::Fsck(report))
        }
        Step::Collect { dry_run } => {
            let options = CollectOptions::default().dry_run(*dry_run);
            let r = reg.collect(&options).map_err(kind)?;
            assert_eq!(r.dry_run, *dry_run);
            Ok(Value::Collected(Collected {
                marked: r.blobs_marked,
                bytes_marked: r.bytes_marked,
                swept: r.blobs_swept,
                bytes_swept: r.bytes_swept,
                kept: r.blobs_kept,
                bytes_kept: r.bytes_kept,
                links_removed: r.links_removed,
                uploads_removed: r.uploads_removed,
            }))
        }
        Step::SetLocks { repo, item, locks } => {
            repository(repo)?.set_locks(item, *locks).map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::SetRetention(policy) => {
            reg.set_retention_policy(*policy).map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::SetHistoryRetention(days) => {
            reg.set_history_retention_days(*days).map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::PurgeByFilter(p) => registry_purge(&reg, p),
        Step::Advance(secs) => {
            sut.clock.advance(Duration::from_secs(*secs));
            Ok(Value::Unit)
        }
        Step::Batch(steps) => in_batch(&reg, steps).map(Value::Batch),
        Step::DiskFull(full) => {
            sut.faults.set_disk_full(*full);
            Ok(Value::Unit)
        }
        Step::Health => {
            let health = reg.health();
            assert_eq!(
                health.problem.is_none(),
                health.writable,
                "a store that cannot write says why: {health:?}"
            );
            Ok(Value::Health {
                writable: health.writable,
                storage_full: health.storage_full,
            })
        }
        Step::Reopen => unreachable!("handled above"),
        Step::NoSession => Ok(Value::NoSession),
    }
}

/// U1–U6: a purge by filter; for [`PurgeRun::DryThenReal`], a dry run that must change nothing
/// and report what the real run then does (U5).
pub(crate) fn registry_purge(reg: &Registry, p: &PurgeSel) -> Outcome {
    let mut options = PurgeOptions::new(&p.filters).map_err(kind)?;
    options.ago = parse_ago(p.ago).map_err(kind)?;
    options.keep = p.keep;
    options.untagged = p.untagged;
    options.include_locked = p.include_locked;
    options.dry_run = p.run == PurgeRun::Dry;
    let r = if p.run == PurgeRun::DryThenReal {
        let dry = options.clone().dry_run(true);
        let before = snapshot(reg);
        let dry = reg.purge(&dry).map_err(kind)?;
        assert!(dry.dry_run);
        assert_eq!(snapshot(reg), before, "U5: a dry run changed the store");
        let real = reg.purge(&options).map_err(kind)?;
        assert_eq!(dry.ran_at, real.ran_at);
        assert_eq!(
            dry.repositories, real.repositories,
            "U5: the dry run's report"
        );
        real
    } else {
        reg.purge(&options).map_err(kind)?
    };
    assert_eq!(r.dry_run, options.dry_run);
    Ok(Value::PurgeReport {
        dry_run: r.dry_run,
        at: r.ran_at,
        repositories: r.repositories,
    })
}

/// Runs `steps` in one batch: every value, or the first step's error and nothing written.
pub(crate) fn in_batch(reg: &Registry, steps: &[Step]) -> Result<Vec<Value>, ErrKind> {
    let mut failure = None;
    let result = reg.batch(|b| {
        let mut values = Vec::new();
        for step in steps {
            match batch_step(b, reg, step) {
                Ok(v) => values.push(v),
                Err(e) => {
                    // Keep the typed error; the batch aborts on any error.
                    failure = Some(e);
                    return Err(Error::InvalidSetting {
                        setting: "batch",
                        value: String::new(),
                        reason: "aborted by the test",
                    });
                }
            }
        }
        Ok(values)
    });
    match (result, failure) {
        (Ok(values), None) => Ok(values),
        (Err(_), Some(e)) => Err(e),
        (Err(e), None) => Err(kind(e)),
        (Ok(_), Some(e)) => panic!("a batch whose op failed ({e:?}) committed"),
    }
}

/// One op of a batch, through the [`Batch`]'s methods.
pub(crate) fn batch_step(b: &mut Batch<'_>, reg: &Registry, step: &Step) -> Result<Value, ErrKind> {
    let repository = |name: &str| reg.repository(name).map_err(kind);
    match step {
        Step::PutBlob {
            repo,
            digest,
            bytes,
        } => {
            let repo = repository(repo)?;
            let digest = parse_digest(digest)?;
            b.put_blob(&repo, &digest, bytes).map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::PutBlobSha256 { repo, bytes } => {
            let d = b.put_blob_sha256(&repository(repo)?, bytes).map_err(kind)?;
            Ok(Value::Digest(d.to_string()))
        }
        Step::Mount { from, to, digest } => {
            let to = repository(to)?;
            let from = repository(from)?;
            b.mount_blob(&to, &from, &parse_digest(digest)?)
                .map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::Push {
            repo,
            reference,
            declared,
            body,
            ..
        } => {
            let repo = repository(repo)?;
            let pushed = b
                .push_manifest(&repo, reference, declared, body)
                .map_err(kind)?;
            Ok(pushed_value(pushed))
        }
        Step::Tag { repo, tag, digest } => {
            let repo = repository(repo)?;
            b.tag(&repo, tag, &parse_digest(digest)?).map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::Untag { repo, tag } => {
            b.untag(&repository(repo)?, tag).map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::DeleteManifest { repo, reference } => {
            let deleted = b
                .delete_manifest(&repository(repo)?, reference)
                .map_err(kind)?;
            Ok(digests(&deleted))
        }
        Step::DeleteRepository { repo } => {
            b.delete_repository(&repository(repo)?).map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::SetLocks { repo, item, locks } => {
            b.set_locks(&repository(repo)?, item, *locks)
                .map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::Restore {
            repo,
            tag,
            digest,
            force,
            children,
        } => {
            let repo = repository(repo)?;
            let digest = digest.as_deref().map(parse_digest).transpose()?;
            let what = restore_what(tag.as_deref(), digest.as_ref());
            // The short form when it says it all, so both are exercised.
            let restored = if *children {
                let options = RestoreOptions::default()
                    .on_conflict(on_conflict(*force))
                    .with_children(true);
                b.restore_with(&repo, what, &options)
            } else {
                b.restore(&repo, what, on_conflict(*force))
            }
            .map_err(kind)?;
            Ok(Value::Digest(restored.to_string()))
        }
        other => panic!("not an op of a batch: {other:?}"),
    }
}

/// Every page of a listing of `n` at a time, concatenated.
pub(crate) fn paged<T>(
    n: usize,
    mut fetch: impl FnMut(&Page) -> Vec<T>,
    key: impl Fn(&T) -> String,
) -> Vec<T> {
    let mut out = Vec::new();
    let mut page = Page::first(n);
    loop {
        let batch = fetch(&page);
        assert!(batch.len() <= n, "a page of {n} held {}", batch.len());
        let Some(last) = batch.last() else {
            return out;
        };
        page = Page::after(key(last), n);
        out.extend(batch);
    }
}

/// Reads everything the registry holds through the public API and checks it against the model.
pub(crate) fn compare(model: &Model, registry: &Registry) -> Result<(), TestCaseError> {
    // S1, S4: the policy and the last autopurge run, persisted.
    prop_assert_eq!(registry.soft_delete_policy().unwrap(), model.policy);
    prop_assert_eq!(registry.autopurge_last_run().unwrap(), model.last_run);
    // R1: the retention policy, and since when it is in force.
    prop_assert_eq!(registry.retention_policy().unwrap(), model.retention);
    prop_assert_eq!(
        registry.retention_enabled_at().unwrap(),
        model.retention_since
    );
    // T2: the history retention, persisted.
    prop_assert_eq!(
        registry.history_retention_days().unwrap(),
        model.history_days
    );

    // P7, S2: live repositories in lexical order, paginated.
    let names: Vec<String> = model
        .repositories
        .iter()
        .filter(|(_, r)| r.deleted.is_none())
        .map(|(name, _)| name.clone())
        .collect();
    prop_assert_eq!(&registry.repositories(&Page::all()).unwrap(), &names);
    for n in [1, 2] {
        let pages = paged(n, |p| registry.repositories(p).unwrap(), String::clone);
        prop_assert_eq!(&pages, &names, "repositories {} at a time", n);
    }
    for last in REPOS {
        let after: Vec<_> = names
            .iter()
            .filter(|n| n.as_str() > *last)
            .cloned()
            .collect();
        let page = registry.repositories(&Page::after(*last, 5)).unwrap();
        prop_assert_eq!(page, after, "repositories after {}", last);
    }
    // S3, S5: soft-deleted repositories that have not expired, most recently deleted first.
    let mut deleted: Vec<ExpectedDeletedRepository> = model
        .repositories
        .iter()
        .filter_map(|(name, r)| {
            let at = r.deleted.filter(|at| model.unexpired(*at))?;
            Some(ExpectedDeletedRepository {
                name: name.clone(),
                deleted_at: at,
                expires_at: model.expires(at),
            })
        })
        .collect();
    deleted.sort_by(|a, b| b.deleted_at.cmp(&a.deleted_at).then(a.name.cmp(&b.name)));
    prop_assert_eq!(registry.deleted_repositories().unwrap(), deleted);

    for (name, r) in &model.repositories {
        if r.deleted.is_none() {
            compare_repository(model, registry, name, r)?;
        } else {
            compare_hidden_repository(registry, name, r)?;
        }
        compare_bin(model, registry, name, r)?;
    }
    // A name the model does not hold reads as empty, its bin and history too.
    for name in REPOS
        .iter()
        .filter(|n| !model.repositories.contains_key(**n))
    {
        let repo = registry.repository(name).unwrap();
        prop_assert!(repo.tags(&Page::all()).unwrap().is_empty());
        prop_assert!(repo.blobs(&Page::all()).unwrap().is_empty());
        prop_assert!(repo.locked_items().unwrap().is_empty());
        prop_assert!(
            repo.manifests(&ManifestQuery::default())
                .unwrap()
                .is_empty()
        );
        compare_bin(model, registry, name, &RepoModel::default())?;
    }
    Ok(())
}

/// S2: a soft-deleted repository reads as empty: no tags, manifests, referrers or blobs,
/// though it keeps them all for a restore.
pub(crate) fn compare_hidden_repository(
    registry: &Registry,
    name: &str,
    r: &RepoModel,
) -> Result<(), TestCaseError> {
    let repo = registry.repository(name).unwrap();
    prop_assert!(
        repo.tags(&Page::all()).unwrap().is_empty(),
        "tags of {}",
        name
    );
    // L1: only live items carry locks.
    prop_assert!(repo.locked_items().unwrap().is_empty());
    prop_assert_eq!(
        kind(repo.locks(&Item::Repository).unwrap_err()),
        ErrKind::RepositoryUnknown(name.to_owned())
    );
    prop_assert!(
        repo.manifests(&ManifestQuery::default())
            .unwrap()
            .is_empty()
    );
    prop_assert!(
        repo.blobs(&Page::all()).unwrap().is_empty(),
        "blobs of {}",
        name
    );
    for tag in TAGS {
        let err = kind(repo.pull(tag).unwrap_err());
        let expected = ErrKind::ManifestUnknown {
            repository: name.to_owned(),
            reference: tag.to_string(),
        };
        prop_assert_eq!(err, expected);
    }
    for digest in r.manifests.keys() {
        let err = kind(repo.pull(digest).unwrap_err());
        let expected = ErrKind::ManifestUnknown {
            repository: name.to_owned(),
            reference: digest.clone(),
        };
        prop_assert_eq!(err, expected, "pull {} of {}", digest, name);
        let d = Digest::parse(digest).unwrap();
        prop_assert!(repo.referrers(&d, None).unwrap().is_empty());
    }
    for digest in r.blobs.keys() {
        let err = kind(repo.blob(&Digest::parse(digest).unwrap()).unwrap_err());
        let expected = ErrKind::BlobUnknown {
            repository: name.to_owned(),
            digest: digest.clone(),
        };
        prop_assert_eq!(err, expected, "blob {} of {}", digest, name);
    }
    Ok(())
}

/// S5, T1: the repository's bin (deleted manifests, deleted tags, all and by name) and the
/// history of every tag name the model knows; in a live or a soft-deleted repository alike.
pub(crate) fn compare_bin(
    model: &Model,
    registry: &Registry,
    name: &str,
    r: &RepoModel,
) -> Result<(), TestCaseError> {
    let repo = registry.repository(name).unwrap();
    // S3, S17: what has expired is gone; a manifest expires with the indexes that list it.
    let expiries = r.bin(model.retention(), model.now());
    let mut manifests: Vec<ExpectedDeletedManifest> = r
        .manifests
        .iter()
        .filter_map(|(digest, m)| {
            let at = m.deleted.filter(|_| expiries.holds(digest))?;
            let tags: BTreeSet<String> = r
                .bin_tags
                .iter()
                .filter(|t| &t.digest == digest && model.unexpired(t.deleted_at))
                .map(|t| t.tag.clone())
                .collect();
            Some(ExpectedDeletedManifest {
                digest: Digest::parse(digest).unwrap(),
                media_type: m.media_type.clone(),
                size: m.body.len() as u64,
                tags: tags.into_iter().collect(),
                deleted_at: at,
                expires_at: expiries.expires[digest],
            })
        })
        .collect();
    manifests.sort_by(|a, b| {
        b.deleted_at
            .cmp(&a.deleted_at)
            .then(a.digest.as_str().cmp(b.digest.as_str()))
    });
    prop_assert_eq!(
        repo.deleted_manifests().unwrap(),
        manifests,
        "deleted manifests of {}",
        name
    );

    // Newest first; the event number orders deletions at the same time.
    let mut bin: Vec<&BinTag> = r
        .bin_tags
        .iter()
        .filter(|t| model.unexpired(t.deleted_at))
        .collect();
    bin.sort_by(|a, b| b.deleted_at.cmp(&a.deleted_at).then(b.seq.cmp(&a.seq)));
    let deleted_tag = |t: &&BinTag| ExpectedDeletedTag {
        tag: t.tag.clone(),
        digest: Digest::parse(&t.digest).unwrap(),
        deleted_at: t.deleted_at,
        expires_at: model.expires(t.deleted_at),
    };
    let all: Vec<ExpectedDeletedTag> = bin.iter().map(deleted_tag).collect();
    prop_assert_eq!(
        repo.deleted_tags(None).unwrap(),
        all,
        "deleted tags of {}",
        name
    );

    let mut names: BTreeSet<&str> = TAGS.iter().copied().filter(|t| valid_tag(t)).collect();
    names.extend(r.history.iter().map(|e| e.tag.as_str()));
    names.extend(r.tags.keys().map(String::as_str));
    for tag in names {
        let only: Vec<ExpectedDeletedTag> = bin
            .iter()
            .filter(|t| t.tag == tag)
            .map(deleted_tag)
            .collect();
        prop_assert_eq!(repo.deleted_tags(Some(tag)).unwrap(), only);
        let parse = |d: &Option<String>| d.as_deref().map(|d| Digest::parse(d).unwrap());
        let history: Vec<ExpectedTagEvent> = r
            .history
            .iter()
            .rev()
            .filter(|e| e.tag == tag)
            .map(|e| ExpectedTagEvent {
                tag: e.tag.clone(),
                from: parse(&e.from),
                to: parse(&e.to),
                at: e.at,
                cause: e.cause,
            })
            .collect();
        prop_assert_eq!(
            repo.tag_history(tag).unwrap(),
            history,
            "history of {} in {}",
            tag,
            name
        );
    }
    Ok(())
}

pub(crate) fn compare_repository(
    model: &Model,
    registry: &Registry,
    name: &str,
    r: &RepoModel,
) -> Result<(), TestCaseError> {
    let repo = registry.repository(name).unwrap();

    // P5, P7: tags with their targets and times, lexical, paginated.
    let tags: Vec<ExpectedTag> = r
        .tags
        .iter()
        .map(|(t, m)| ExpectedTag {
            name: t.clone(),
            digest: Digest::parse(&m.digest).unwrap(),
            updated: m.updated,
        })
        .collect();
    prop_assert_eq!(&repo.tags(&Page::all()).unwrap(), &tags, "tags of {}", name);
    let pages = paged(2, |p| repo.tags(p).unwrap(), |t| t.name.clone());
    prop_assert_eq!(&pages, &tags, "tags of {} two at a time", name);
    for last in TAGS {
        let after = tags.iter().filter(|t| t.name.as_str() > *last);
        let after: Vec<_> = after.take(2).cloned().collect();
        let page = repo.tags(&Page::after(*last, 2)).unwrap();
        prop_assert_eq!(page, after, "tags of {} after {}", name, last);
    }

    // P7: manifest metadata, ordered by last update, filtered.
    let asc = r.by_time();
    let query = |q: ManifestQuery| repo.manifests(&q).unwrap();
    prop_assert_eq!(
        &query(ManifestQuery::default()),
        &asc,
        "manifests of {}",
        name
    );
    let desc: Vec<_> = asc.iter().rev().cloned().collect();
    let q = ManifestQuery::default().descending(true);
    prop_assert_eq!(&query(q), &desc, "manifests of {} newest first", name);
    let untagged: Vec<_> = asc.iter().filter(|m| m.tags.is_empty()).cloned().collect();
    let q = ManifestQuery::default().untagged(true);
    prop_assert_eq!(&query(q), &untagged, "untagged manifests of {}", name);
    let q = ManifestQuery::default().limit(1).descending(true);
    prop_assert_eq!(&query(q), &desc[..desc.len().min(1)], "newest of {}", name);
    let q = ManifestQuery::default().untagged(true).limit(1);
    prop_assert_eq!(&query(q), &untagged[..untagged.len().min(1)]);
    let mut times: BTreeSet<Timestamp> = asc.iter().map(|m| m.updated).collect();
    times.insert(model.now.saturating_add(Duration::from_secs(1)));
    for t in times {
        let before: Vec<_> = asc.iter().filter(|m| m.updated < t).cloned().collect();
        let q = ManifestQuery::default().updated_before(t);
        prop_assert_eq!(&query(q), &before, "manifests of {} before {:?}", name, t);
        let q = ManifestQuery::default().updated_before(t).descending(true);
        let newest_first: Vec<_> = before.into_iter().rev().collect();
        prop_assert_eq!(&query(q), &newest_first);
    }

    // P6: pull by digest and by tag; `manifest` by both. S2: a tombstone is unknown.
    for (digest, m) in &r.manifests {
        if !m.live() {
            let expected = ErrKind::ManifestUnknown {
                repository: name.to_owned(),
                reference: digest.clone(),
            };
            prop_assert_eq!(kind(repo.pull(digest).unwrap_err()), expected.clone());
            prop_assert_eq!(kind(repo.manifest(digest).unwrap_err()), expected);
            continue;
        }
        let pulled = repo.pull(digest).unwrap();
        prop_assert_eq!(pulled.digest.as_str(), digest.as_str());
        prop_assert_eq!(&pulled.media_type, &m.media_type);
        prop_assert_eq!(&pulled.body[..], &m.body[..], "body of {}", digest);
        prop_assert_eq!(repo.manifest(digest).unwrap(), r.expected_manifest(digest));
    }
    for (tag, t) in &r.tags {
        let pulled = repo.pull(tag).unwrap();
        prop_assert_eq!(pulled.digest.as_str(), t.digest.as_str(), "pull {}", tag);
        prop_assert_eq!(&pulled.body[..], &r.manifests[&t.digest].body[..]);
        prop_assert_eq!(repo.resolve(tag).unwrap().to_string(), t.digest.clone());
        prop_assert_eq!(repo.manifest(tag).unwrap(), r.expected_manifest(&t.digest));
    }
    for tag in TAGS.iter().filter(|t| !r.tags.contains_key(**t)) {
        let err = kind(repo.pull(tag).unwrap_err());
        let expected = ErrKind::ManifestUnknown {
            repository: name.to_owned(),
            reference: tag.to_string(),
        };
        prop_assert_eq!(err, expected);
    }

    // L1: the locked items, the repository first, then manifests and tags by key; the locks
    // of the repository and of each locked item; a tag that is not live has none to read.
    let locked: Vec<(Item, Locks)> = r.locks.iter().map(|(k, l)| (lock_item(k), *l)).collect();
    prop_assert_eq!(
        repo.locked_items().unwrap(),
        locked,
        "locked items of {}",
        name
    );
    prop_assert!(
        matches!(
            repo.locks(&lock_item("unlocked")),
            Err(Error::TagUnknown { .. })
        ),
        "only live items have locks"
    );
    let items = [""].into_iter().chain(r.locks.keys().map(String::as_str));
    for key in items {
        let item = lock_item(key);
        prop_assert_eq!(
            repo.locks(&item).unwrap(),
            r.locks_of(key),
            "locks of {}",
            item
        );
    }

    // P1, P2: linked blobs, their bytes and sizes; others are unknown here.
    let linked: Vec<String> = r.blobs.keys().cloned().collect();
    let listed: Vec<String> = repo
        .blobs(&Page::all())
        .unwrap()
        .iter()
        .map(Digest::to_string)
        .collect();
    prop_assert_eq!(&listed, &linked, "blobs of {}", name);
    let pages = paged(2, |p| repo.blobs(p).unwrap(), Digest::to_string);
    let pages: Vec<String> = pages.iter().map(Digest::to_string).collect();
    prop_assert_eq!(&pages, &linked, "blobs of {} two at a time", name);
    for (digest, bytes) in &r.blobs {
        let d = Digest::parse(digest).unwrap();
        prop_assert_eq!(&repo.blob(&d).unwrap()[..], &bytes[..], "blob {}", digest);
        prop_assert_eq!(repo.blob_size(&d).unwrap(), bytes.len() as u64);
    }
    for content in BLOBS {
        for alg in Algorithm::ALL {
            let digest = hash(alg, content);
            if r.blobs.contains_key(&digest) {
                continue;
            }
            let err = kind(repo.blob(&Digest::parse(&digest).unwrap()).unwrap_err());
            let expected = ErrKind::BlobUnknown {
                repository: name.to_owned(),
                digest,
            };
            prop_assert_eq!(err, expected);
        }
    }

    // P8: referrers of every manifest, every subject named and one unknown digest, with and
    // without an artifact type filter.
    let mut subjects: BTreeSet<String> = r.manifests.keys().cloned().collect();
    subjects.extend(r.manifests.values().filter_map(|m| {
        let subject = m.spec.subject.as_ref()?;
        Some(subject.digest.to_string())
    }));
    subjects.insert(sha256(UNKNOWN_MANIFEST));
    let filters = ARTIFACT_TYPES
        .iter()
        .chain(REFERRER_CONFIG_TYPES)
        .chain(&[CONFIG_TYPE, "application/none"]);
    for subject in &subjects {
        let d = Digest::parse(subject).unwrap();
        let expected: Vec<Descriptor> = r
            .live_manifests()
            .filter(|(_, m)| {
                m.spec
                    .subject
                    .as_ref()
                    .is_some_and(|s| s.digest.as_str() == subject)
            })
            .map(|(digest, _)| r.referrer_descriptor(digest))
            .collect();
        let all = repo.referrers(&d, None).unwrap();
        prop_assert_eq!(&all, &expected, "referrers of {} in {}", subject, name);
        for filter in filters.clone() {
            let only: Vec<_> = expected
                .iter()
                .filter(|x| x.artifact_type.as_deref() == Some(*filter))
                .cloned()
                .collect();
            prop_assert_eq!(repo.referrers(&d, Some(filter)).unwrap(), only);
        }
    }
    Ok(())
}

/// P1: every session answers with its offset through its repository, or `UploadUnknown` once
/// finished, cancelled or expired; also after a reopen.
pub(crate) fn compare_uploads(model: &Model, sut: &RegistrySystem) -> Result<(), TestCaseError> {
    prop_assert_eq!(model.uploads.len(), sut.uploads.len());
    for (s, u) in model.uploads.iter().zip(&sut.uploads) {
        prop_assert_eq!(&s.repo, &u.repo);
        let live = s.open && model.now.since(s.started) <= UPLOAD_TIMEOUT;
        let expected = if live {
            Ok(s.bytes.len() as u64)
        } else {
            Err(ErrKind::UploadUnknown)
        };
        let repo = sut.registry().repository(&u.repo).unwrap();
        let actual = repo.resume_upload(&u.id).map(|u| u.offset()).map_err(kind);
        prop_assert_eq!(actual, expected, "session {}", u.id);
    }
    Ok(())
}

/// C2, C4: the blob store holds the bytes of exactly the blobs the model says (records' and
/// failed batches' strays), among every blob of the pool under every algorithm and every blob
/// the model knows (an upload's). What it holds decides what a full disk refuses.
pub(crate) fn compare_files(model: &Model, sut: &RegistrySystem) -> Result<(), TestCaseError> {
    let store = sut.blob_store();
    let mut digests: BTreeSet<String> = model.files.iter().cloned().collect();
    digests.extend(model.blob_records.keys().cloned());
    for content in BLOBS {
        digests.extend(Algorithm::ALL.iter().map(|alg| hash(*alg, content)));
    }
    for digest in digests {
        let held = store.contains(&Digest::parse(&digest).unwrap()).unwrap();
        prop_assert_eq!(
            held,
            model.files.contains(&digest),
            "the blob store holds {}",
            digest
        );
    }
    Ok(())
}

/// Where the stores go if the host has a tmpfs: a new store creates 768 blob directories, which
/// takes a few milliseconds there and up to half a second on some disks, most of a case's time.
pub(crate) fn tmpfs() -> Option<&'static std::path::Path> {
    let shm = std::path::Path::new("/dev/shm");
    shm.is_dir().then_some(shm)
}

/// Opens the store in `path` on `clock`, its blobs through `blobs`, with a small page cache:
/// the kit opens many stores.
fn open(
    path: &std::path::Path,
    clock: &ManualClock,
    blobs: FaultyStore,
    mode: OpenMode,
) -> Registry {
    Registry::builder()
        .mode(mode)
        .clock(clock.clone())
        .cache_size(16 << 20)
        .blob_store(blobs)
        .open(path)
        .expect("open store")
}

/// Everything a store holds, as text: its repositories with their tags, manifests, blobs and
/// locks, its policies, and its files with their sizes. Two snapshots are equal when a call
/// changed nothing a client can see (a dry run, a refused call).
pub fn snapshot(registry: &Registry) -> String {
    let mut out = String::new();
    for name in registry.repositories(&Page::all()).unwrap() {
        let repo = registry.repository(&name).unwrap();
        out += &format!("repository {name}\n");
        for tag in repo.tags(&Page::all()).unwrap() {
            out += &format!("  tag {tag:?}\n");
        }
        for m in repo.manifests(&ManifestQuery::default()).unwrap() {
            out += &format!("  manifest {m:?}\n");
        }
        for blob in repo.blobs(&Page::all()).unwrap() {
            out += &format!("  blob {blob}\n");
        }
        for (item, locks) in repo.locked_items().unwrap() {
            out += &format!("  locked {item} {locks:?}\n");
        }
    }
    out += &format!(
        "policies {:?} {:?} since {:?}, history kept {} days\n",
        registry.soft_delete_policy().unwrap(),
        registry.retention_policy().unwrap(),
        registry.retention_enabled_at().unwrap(),
        registry.history_retention_days().unwrap()
    );
    let mut files = Vec::new();
    list_files(registry.path(), registry.path(), &mut files);
    files.sort();
    for f in files {
        out += &format!("file {f}\n");
    }
    out
}

fn list_files(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            list_files(root, &path, out);
        } else if !["metadata.redb", "space-reserve"]
            .iter()
            .any(|f| path.file_name().unwrap() == *f)
        {
            // The database is read through the API; the space reserve is no content (C4).
            let size = path.metadata().unwrap().len();
            out.push(format!(
                "{} {size}",
                path.strip_prefix(root).unwrap().display()
            ));
        }
    }
}
