//! The retention clock: autopurge removes the tombstones whose retention has run out
//! (SPEC S3, S4), on demand or from a background maintenance thread.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::{ReadableDatabase, ReadableTable};

use crate::batch::Batch;
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::recycle_bin::{TOMBSTONE_MANIFEST, TOMBSTONE_REPOSITORY, TOMBSTONE_TAG};
use crate::registry::Registry;
use crate::repository::repository_record;
use crate::tables::META;

const LAST_RUN: &str = "autopurge_last_run";

/// What one autopurge run removed: every expired tombstone, by kind. A repository's tags and
/// manifests deleted with it count among the tags and manifests.
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
        self.t
            .meta
            .insert(LAST_RUN, self.now.as_nanos().to_le_bytes().as_slice())?;
        Ok(report)
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
