//! The retention clock and what it runs, on demand or from a background maintenance thread:
//! autopurge removes the tombstones whose retention has run out (SPEC S3, S4), and the
//! retention policy deletes manifests that stayed untagged too long (R1–R3).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::{ReadableDatabase, ReadableTable};

use serde::{Deserialize, Serialize};

use crate::batch::Batch;
use crate::clock::Timestamp;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{Record, has_tags};
use crate::recycle_bin::{TOMBSTONE_MANIFEST, TOMBSTONE_REPOSITORY, TOMBSTONE_TAG};
use crate::registry::Registry;
use crate::repository::repository_record;
use crate::tables::{META, Tables, keys_under2};
use crate::tag::TagCause;

const LAST_RUN: &str = "autopurge_last_run";

/// What one run of the retention clock did: every expired tombstone it removed, by kind (a
/// repository's tags and manifests deleted with it count among the tags and manifests), and
/// the manifests the retention policy deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutopurgeReport {
    /// When it ran, by the registry's clock.
    pub ran_at: Timestamp,
    /// Repositories purged.
    pub repositories: usize,
    /// Manifests purged.
    pub manifests: usize,
    /// Tags purged.
    pub tags: usize,
    /// Manifests the retention policy deleted for staying untagged too long, with the
    /// referrers that went with them (R1); into the recycle bin if soft delete is on (R3).
    pub untagged_deleted: usize,
}

const RETENTION: &str = "retention";

/// The retention policy for untagged manifests (R1): when enabled, a manifest that becomes
/// untagged after the policy took effect is deleted once it has stayed untagged for `days`.
/// Off by default.
///
/// Children of a live index and referrers of a live subject are never "untagged" for it (R2),
/// and it skips locked manifests. Its deletes follow the soft delete policy like any other: with
/// both on, they go to the recycle bin (R3). Azure Container Registry forbids having both; here
/// the retention policy decides when an untagged manifest goes, and the soft delete policy how
/// long it can still be restored.
///
/// ```
/// use ocistore::RetentionPolicy;
/// assert_eq!(RetentionPolicy::default(), RetentionPolicy { enabled: false, days: 7 });
/// assert!(RetentionPolicy::enabled(0).is_ok());
/// assert!(RetentionPolicy::enabled(366).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    /// Whether untagged manifests are deleted.
    pub enabled: bool,
    /// Days a manifest may stay untagged: 0 to 365.
    pub days: u32,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            enabled: false,
            days: 7,
        }
    }
}

impl RetentionPolicy {
    /// The policy switched on with `days` (0 to 365).
    pub fn enabled(days: u32) -> Result<RetentionPolicy> {
        let policy = RetentionPolicy {
            enabled: true,
            days,
        };
        policy.validate()?;
        Ok(policy)
    }

    fn validate(&self) -> Result<()> {
        if self.days <= 365 {
            Ok(())
        } else {
            Err(Error::InvalidSetting {
                setting: "retention days",
                value: self.days.to_string(),
                reason: "must be 0 to 365 days",
            })
        }
    }

    /// How long a manifest may stay untagged.
    pub fn period(&self) -> Duration {
        Duration::from_secs(86_400) * self.days
    }
}

/// The policy as stored, with the time it took effect (R1).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct StoredRetention {
    #[serde(flatten)]
    policy: RetentionPolicy,
    #[serde(default)]
    since: Option<Timestamp>,
}

fn read_retention(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<StoredRetention> {
    meta.get(RETENTION)?
        .map_or(Ok(StoredRetention::default()), |v| {
            crate::tables::decode("meta", v.value())
        })
}

fn read_last_run(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Option<Timestamp>> {
    meta.get(LAST_RUN)?
        .map(|v| {
            <[u8; 8]>::try_from(v.value())
                .map(|b| Timestamp::from_nanos(u64::from_le_bytes(b)))
                .map_err(|_| Error::Corrupt {
                    table: "meta",
                    reason: "autopurge_last_run is not 8 bytes".into(),
                })
        })
        .transpose()
}

impl Registry {
    /// The retention policy for untagged manifests in force (R1).
    pub fn retention_policy(&self) -> Result<RetentionPolicy> {
        let txn = self.inner.db.begin_read()?;
        Ok(read_retention(&txn.open_table(META)?)?.policy)
    }

    /// When the retention policy took effect, if it is enabled: manifests untagged before
    /// then are not affected (R1).
    pub fn retention_enabled_at(&self) -> Result<Option<Timestamp>> {
        let txn = self.inner.db.begin_read()?;
        Ok(read_retention(&txn.open_table(META)?)?.since)
    }

    /// Sets the retention policy for untagged manifests; it is persisted, and the retention
    /// clock applies it ([`run_due`](Registry::run_due), [`run_now`](Registry::run_now)).
    /// Enabling it starts its clock now: manifests untagged before are not affected (R1).
    /// Changing the days of an enabled policy keeps its start; disabling it forgets it.
    pub fn set_retention_policy(&self, policy: RetentionPolicy) -> Result<()> {
        policy.validate()?;
        self.batch(|b| {
            let old = read_retention(&b.t.meta)?;
            let since = match (policy.enabled, old.since) {
                (false, _) => None,
                (true, Some(since)) => Some(since),
                (true, None) => Some(b.now),
            };
            let stored = StoredRetention { policy, since };
            b.t.meta
                .insert(RETENTION, crate::tables::encode(&stored).as_slice())?;
            Ok(())
        })
    }

    /// When autopurge last ran; persisted, so a restart keeps the cadence (S4).
    pub fn autopurge_last_run(&self) -> Result<Option<Timestamp>> {
        let txn = self.inner.db.begin_read()?;
        read_last_run(&txn.open_table(META)?)
    }

    /// Runs autopurge if the autopurge interval has passed since its last run (or it never
    /// ran), and returns its report; `None` if it was not due. A host calls this on a timer,
    /// or lets [`Registry::start_maintenance`] do it.
    pub fn run_due(&self) -> Result<Option<AutopurgeReport>> {
        let interval = self.inner.autopurge_interval;
        self.batch(|b| {
            let last = read_last_run(&b.t.meta)?;
            // A clock set back before the last run makes it due rather than stalled.
            if last.is_some_and(|last| last <= b.now && b.now < last.saturating_add(interval)) {
                return Ok(None);
            }
            b.autopurge().map(Some)
        })
    }

    /// Runs autopurge now, whether due or not (S4).
    pub fn run_now(&self) -> Result<AutopurgeReport> {
        self.batch(|b| b.autopurge())
    }

    /// Starts a background thread that calls [`run_due`](Registry::run_due) every `poll`
    /// of real time, until [`Maintenance::shutdown`] (or the handle is dropped).
    pub fn start_maintenance(&self, poll: Duration) -> Maintenance {
        let shared = Arc::new(Shared::default());
        let registry = self.clone();
        let state = shared.clone();
        let thread = std::thread::spawn(move || {
            let mut stopped = lock(&state.stop);
            while !*stopped {
                drop(stopped);
                let outcome = registry.run_due();
                *lock(&state.last_error) = outcome.err().map(|e| e.to_string());
                stopped = lock(&state.stop);
                stopped = state
                    .wake
                    .wait_timeout_while(stopped, poll, |stop| !*stop)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        });
        Maintenance {
            shared,
            thread: Some(thread),
        }
    }
}

/// Builds the `untagged` index of a version 1 store: every live manifest without a tag, at
/// its last update.
pub(crate) fn index_untagged_manifests(t: &mut Tables<'_>) -> Result<()> {
    for row in t.manifests_by_time.iter()? {
        let (key, _) = row?;
        let (repo, updated, digest) = key.value();
        if !has_tags(&t.manifest_tags, repo, digest)? {
            t.untagged.insert((updated, repo, digest), ())?;
        }
    }
    Ok(())
}

impl Batch<'_> {
    /// Removes every tombstone deleted at least the retention ago, by the retention in force
    /// now (S3), and records the run.
    fn autopurge(&mut self) -> Result<AutopurgeReport> {
        let cutoff = self
            .now
            .saturating_sub(self.soft_delete_policy()?.retention());
        let end = (cutoff.as_nanos().saturating_add(1), 0, "", "", "", 0);
        let expired: Vec<(u8, String, String, String, u64)> = {
            let tombstones = &self.t.tombstones;
            let mut out = Vec::new();
            for row in tombstones.range(..end)? {
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
            out
        };
        let mut report = AutopurgeReport {
            ran_at: self.now,
            repositories: 0,
            manifests: 0,
            tags: 0,
            untagged_deleted: 0,
        };
        // One pass over the expired range instead of a removal per tombstone; the purges
        // below then find their tombstone rows gone already.
        self.t.tombstones.retain_in(..end, |_, _| false)?;
        // Tags, then manifests in bulk per repository, then repositories: each purge takes
        // along what belongs to it, so each item is checked again.
        let mut manifests: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut repositories = Vec::new();
        for (kind, repo, digest, tag, seq) in expired {
            match kind {
                TOMBSTONE_TAG => {
                    if self.unbin_tag(&repo, &digest, &tag, seq)? {
                        report.tags += 1;
                    }
                }
                TOMBSTONE_MANIFEST => {
                    manifests.entry(repo).or_default().insert(digest);
                }
                TOMBSTONE_REPOSITORY => repositories.push(repo),
                _ => {
                    return Err(Error::Corrupt {
                        table: "tombstones",
                        reason: format!("unknown tombstone kind {kind}"),
                    });
                }
            }
        }
        for (repo, digests) in &manifests {
            report.manifests += self.purge_binned_manifests(repo, digests)?;
        }
        for repo in repositories {
            let record = repository_record(&self.t.repositories, &repo)?;
            if record.is_some_and(|r| r.deleted.is_some()) {
                self.purge_repository(&repo)?;
                report.repositories += 1;
            }
        }
        // After the bin is emptied, so that what this run deletes is not purged at once.
        report.untagged_deleted = self.apply_retention()?;
        self.t
            .meta
            .insert(LAST_RUN, self.now.as_nanos().to_le_bytes().as_slice())?;
        Ok(report)
    }

    /// Whether a live manifest stays whatever its tags (R2): a live index lists it, or it
    /// refers to a live subject.
    fn is_held(&self, repo: &str, digest: &Digest, record: &Record) -> Result<bool> {
        if !keys_under2(&self.t.children, repo, digest.as_str())?.is_empty() {
            return Ok(true);
        }
        match &record.subject {
            Some(subject) => Ok(self
                .record(repo, subject.as_str())?
                .is_some_and(|s| s.deleted.is_none())),
            None => Ok(false),
        }
    }

    /// Deletes the manifests that have stayed untagged for the policy's days since it took
    /// effect (R1), except children of a live index and referrers of a live subject (R2) and
    /// what a lock protects; and returns how many manifests went, referrers included.
    ///
    /// A run leaves nothing due behind: deleting an index frees its children, which are
    /// usually older than it and so were passed over while it was live. Passes repeat until
    /// one deletes nothing.
    fn apply_retention(&mut self) -> Result<usize> {
        let StoredRetention {
            policy,
            since: Some(since),
        } = read_retention(&self.t.meta)?
        else {
            return Ok(0);
        };
        let cutoff = self.now.saturating_sub(policy.period());
        if cutoff < since {
            return Ok(0);
        }
        let mut deleted = 0;
        loop {
            let pass = self.retention_pass(since, cutoff)?;
            deleted += pass;
            if pass == 0 {
                return Ok(deleted);
            }
        }
    }

    /// One pass of [`apply_retention`](Batch::apply_retention) over the manifests untagged
    /// from `since` to `cutoff`, oldest first.
    fn retention_pass(&mut self, since: Timestamp, cutoff: Timestamp) -> Result<usize> {
        let due: Vec<(String, Digest)> = {
            let mut out = Vec::new();
            let range = (since.as_nanos(), "", "")..(cutoff.as_nanos().saturating_add(1), "", "");
            for row in self.t.untagged.range(range)? {
                let (key, _) = row?;
                let (_, repo, digest) = key.value();
                out.push((repo.to_owned(), Digest::stored(digest)?));
            }
            out
        };
        let mut deleted = 0;
        for (repo, digest) in due {
            // An earlier deletion of this run may have taken it along as a referrer.
            let Some(record) = self.record(&repo, digest.as_str())? else {
                continue;
            };
            if record.deleted.is_some() || self.is_held(&repo, &digest, &record)? {
                continue;
            }
            let doomed = self.doomed_by(&repo, vec![digest])?;
            if self.refusal(&repo, &doomed)?.is_none() {
                self.remove_manifests(&repo, &doomed, TagCause::Retention)?;
                deleted += doomed.len();
            }
        }
        Ok(deleted)
    }
}

#[derive(Default)]
struct Shared {
    stop: Mutex<bool>,
    wake: Condvar,
    last_error: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The background maintenance thread started by [`Registry::start_maintenance`]. It holds a
/// handle on the registry until it is shut down; dropping it shuts it down too.
pub struct Maintenance {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Maintenance {
    /// The error of the last run, if it failed; the thread goes on and retries at the next
    /// poll.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.shared.last_error).clone()
    }

    /// Whether the thread has stopped (it stops only when told, or if it panicked).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops the thread after the run in progress, if any, and waits for it. A panic of the
    /// thread is raised again here.
    pub fn shutdown(mut self) {
        if let Err(panic) = self.stop() {
            std::panic::resume_unwind(panic);
        }
    }

    fn stop(&mut self) -> std::thread::Result<()> {
        *lock(&self.shared.stop) = true;
        self.shared.wake.notify_all();
        self.thread.take().map_or(Ok(()), JoinHandle::join)
    }
}

impl Drop for Maintenance {
    /// Stops the thread; a panic of the thread is dropped, not raised during an unwind.
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

impl std::fmt::Debug for Maintenance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Maintenance")
            .field("finished", &self.is_finished())
            .finish_non_exhaustive()
    }
}
