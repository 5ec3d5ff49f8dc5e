//! The retention clock and what it runs, on demand or from a background maintenance thread:
//! autopurge removes the tombstones whose retention has run out (docs/spec.md: S3, S4), the
//! retention policy deletes manifests that stayed untagged too long (R1–R3), and tag history
//! older than the history retention goes (T2).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::ReadableTable;

use super::{Core, OpenMark};
use crate::store::Tx;
use crate::store::bin::{BinnedManifests, ExpiredTombstone};
use crate::store::manifests::Record;
use crate::store::meta::{self, StoredRetention};
use crate::store::repositories::repository_record;
use crate::store::tables::{Readable, keys_under2};
use crate::store::tables::{TOMBSTONE_MANIFEST, TOMBSTONE_REPOSITORY, TOMBSTONE_TAG};
use crate::store::tags::TagCause;
use crate::values::{Digest, Error, Result, RetentionPolicy, SoftDeletePolicy, Timestamp};

/// What one run of the retention clock did: every expired tombstone it removed, by kind (a
/// repository's tags and manifests deleted with it count among the tags and manifests), the
/// manifests the retention policy deleted, and the tag history events that expired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
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
    /// Tag history events removed for being older than the history retention (T2); those of
    /// a repository purged in this run are not counted.
    pub history_events: usize,
}

impl Tx<'_> {
    /// Removes every expired tombstone (S3, S4, S17), applies the retention policy for untagged
    /// manifests (R1) and the history retention (T2), and records the run.
    pub(crate) fn autopurge(&mut self) -> Result<AutopurgeReport> {
        let mut report = self.purge_expired()?;
        // After the bin is emptied, so that what this run deletes is not purged at once.
        report.untagged_deleted = self.apply_retention()?;
        report.history_events = self.expire_history()?;
        meta::set_autopurge_last_run(&mut self.t, self.now)?;
        Ok(report)
    }

    /// Sets the soft delete policy to what `change` makes of the one in force (the caller has
    /// validated it), after purging what that one has expired, so that nothing expired comes
    /// back when the retention grows (S1, S3).
    pub(crate) fn change_soft_delete_policy(
        &mut self,
        change: impl FnOnce(SoftDeletePolicy) -> SoftDeletePolicy,
    ) -> Result<SoftDeletePolicy> {
        let policy = change(self.soft_delete_policy()?);
        self.purge_expired()?;
        self.set_soft_delete_policy(policy)?;
        Ok(policy)
    }

    /// Removes every tombstone that has expired, by the retention in force now (S3): deleted
    /// at least the retention ago, except the manifests an index that stays lists (S17).
    fn purge_expired(&mut self) -> Result<AutopurgeReport> {
        let cutoff = self
            .now
            .saturating_sub(self.soft_delete_policy()?.retention());
        let expired = self.tombstones_until(cutoff)?;
        let kept = self.kept_by_indexes(&expired)?;
        self.remove_tombstones_until(cutoff, &kept)?;
        let mut report = AutopurgeReport {
            ran_at: self.now,
            repositories: 0,
            manifests: 0,
            tags: 0,
            untagged_deleted: 0,
            history_events: 0,
        };
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
                TOMBSTONE_MANIFEST if !kept.contains(&(repo.clone(), digest.clone())) => {
                    manifests.entry(repo).or_default().insert(digest);
                }
                TOMBSTONE_MANIFEST => {}
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
            let record = repository_record(&self.t, &repo)?;
            if record.is_some_and(|r| r.deleted.is_some()) {
                self.purge_repository(&repo)?;
                report.repositories += 1;
            }
        }
        Ok(report)
    }

    /// Of the manifests among `expired` tombstones, those that stay because an index that
    /// stays lists them (S17), as (repository, digest). The bin of a repository is read only
    /// when something of it could stay: a live index lists one of them, or it holds manifests
    /// that are not expiring (the common autopurge of a whole day's deletions reads none).
    fn kept_by_indexes(&self, expired: &[ExpiredTombstone]) -> Result<HashSet<(String, String)>> {
        let mut by_repo: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (kind, repo, digest, ..) in expired {
            if *kind == TOMBSTONE_MANIFEST {
                by_repo.entry(repo).or_default().push(digest);
            }
        }
        let mut kept = HashSet::new();
        for (repo, digests) in by_repo {
            let mut binned = 0;
            for row in self.t.deleted_manifests.range((repo, "")..)? {
                if row?.0.value().0 != repo {
                    break;
                }
                binned += 1;
            }
            let mut listed = false;
            for digest in &digests {
                listed |= !keys_under2(&self.t.children, repo, digest)?.is_empty();
            }
            if binned == digests.len() && !listed {
                continue;
            }
            let bin = BinnedManifests::load(&self.t, repo, self.now)?;
            for digest in digests.into_iter().filter(|d| bin.holds(d)) {
                kept.insert((repo.to_owned(), digest.to_owned()));
            }
        }
        Ok(kept)
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
        } = meta::retention(&self.t)?
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

    /// One pass of [`apply_retention`](Tx::apply_retention) over the manifests untagged
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

/// Sets the retention policy; see [`Registry::set_retention_policy`](crate::Registry::set_retention_policy).
pub(crate) fn set_policy(core: &Core, policy: RetentionPolicy) -> Result<()> {
    policy.validate()?;
    core.write(true, |tx| {
        let old = meta::retention(&tx.t)?;
        let since = match (policy.enabled, old.since) {
            (false, _) => None,
            (true, Some(since)) => Some(since),
            (true, None) => Some(tx.now),
        };
        meta::set_retention(&mut tx.t, &StoredRetention { policy, since })
    })
}

/// Runs autopurge if due; see [`Registry::run_due`](crate::Registry::run_due).
///
/// A host polls this (the server every minute), so when nothing is due it commits nothing: in
/// a shared store an empty commit still costs a two-phase fsync and empties every other
/// process's cache. The check on a snapshot spares the transaction; the check again in it
/// keeps a run once per due time across processes (S4, M3).
pub(crate) fn run_due(core: &Core) -> Result<Option<AutopurgeReport>> {
    let _open = OpenMark::new(core)?;
    // Refused even when not due, as every write of a read-only handle.
    core.db.check_writable()?;
    let interval = core.autopurge_interval;
    if !is_due(&core.snapshot()?, core.now(), interval)? {
        return Ok(None);
    }
    let txn = core.db.begin()?;
    // The time once the store is ours: a run that waited behind another's runs at its own time.
    let now = core.now();
    let out = txn.tx(now).and_then(|mut tx| {
        if !is_due(&tx.t, now, interval)? {
            return Ok(None);
        }
        let report = tx.autopurge()?;
        tx.finish()?;
        Ok(Some(report))
    });
    let due = matches!(out, Ok(Some(_)));
    core.space.watch(txn.end(due, out))
}

/// Whether autopurge is due at `now` (S4): it never ran, `interval` has passed since its last
/// run, or the clock was set back before that run (due rather than stalled).
fn is_due(r: &impl Readable, now: Timestamp, interval: Duration) -> Result<bool> {
    let last = meta::autopurge_last_run(r)?;
    Ok(!last.is_some_and(|last| last <= now && now < last.saturating_add(interval)))
}

/// Starts the maintenance thread; see
/// [`Registry::start_maintenance`](crate::Registry::start_maintenance).
pub(crate) fn start_maintenance(core: Arc<Core>, poll: Duration) -> Maintenance {
    let shared = Arc::new(Shared::default());
    let state = shared.clone();
    let thread = std::thread::spawn(move || {
        let mut stopped = lock(&state.stop);
        while !*stopped {
            drop(stopped);
            let outcome = run_due(&core);
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

#[derive(Default)]
struct Shared {
    stop: Mutex<bool>,
    wake: Condvar,
    last_error: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The background maintenance thread started by [`Registry::start_maintenance`](crate::Registry::start_maintenance). It holds a
/// handle on the registry until it is shut down; dropping it shuts it down too.
pub struct Maintenance {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Maintenance {
    /// The error of the last run, if it failed; the thread goes on and retries at the next
    /// poll.
    #[must_use]
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
