//! The store layer: the redb database, its tables and every `meta` key, and per-concept
//! functions over one write transaction ([`Tx`]) or any reader ([`Readable`]): repositories,
//! the manifest lifecycle, tags and their history, the recycle bin's rows, blob records and
//! links, locks. It knows no blob bytes and no handle: operations above it decide what to do,
//! this layer keeps the rows and their invariants (`docs/design.md`, "Tables").

pub(crate) mod bin;
pub(crate) mod format;
pub(crate) mod links;
pub(crate) mod locks;
pub(crate) mod manifests;
pub(crate) mod meta;
pub(crate) mod repositories;
pub(crate) mod tables;
pub(crate) mod tags;
pub(crate) mod uploads;

use std::cell::Cell;
use std::path::Path;

use redb::{Database, ReadableDatabase};

pub(crate) use tables::{Snapshot, Tables};

use crate::values::{Error, Result, SoftDeletePolicy, Timestamp};

/// The metadata database of one store.
pub(crate) struct Db {
    db: Database,
}

impl Db {
    /// Opens (creating if needed) the database file `path`, checks its format and upgrades an
    /// older one; [`Error::AlreadyOpen`] if another handle or process holds it.
    pub(crate) fn open(path: &Path, cache_size: usize, store: &Path) -> Result<Db> {
        let db = redb::Builder::new()
            .set_cache_size(cache_size)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => Error::AlreadyOpen {
                    path: store.to_path_buf(),
                },
                e => e.into(),
            })?;
        let db = Db { db };
        db.write(Timestamp::default(), true, |tx| {
            format::check(&mut tx.t, store)
        })?;
        Ok(db)
    }

    /// A consistent read of the store as it is now.
    pub(crate) fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot::new(self.db.begin_read()?))
    }

    /// Begins a write transaction; redb runs one at a time.
    pub(crate) fn begin(&self) -> Result<WriteTxn> {
        Ok(WriteTxn(self.db.begin_write()?))
    }

    /// Runs `f` in one write transaction at time `now`, and commits it if `commit` and `f`
    /// succeeded: a dry run is the real run, aborted.
    pub(crate) fn write<T>(
        &self,
        now: Timestamp,
        commit: bool,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T>,
    ) -> Result<T> {
        let txn = self.begin()?;
        let out = {
            let mut tx = txn.tx(now)?;
            let out = f(&mut tx)?;
            tx.finish()?;
            out
        };
        txn.end(commit)?;
        Ok(out)
    }
}

/// A write transaction begun, before its [`Tx`] opens its tables and after it finished.
pub(crate) struct WriteTxn(redb::WriteTransaction);

impl WriteTxn {
    /// The transaction's tables and state, every change at time `now`.
    pub(crate) fn tx(&self, now: Timestamp) -> Result<Tx<'_>> {
        let t = Tables::open(&self.0)?;
        let collecting = meta::collecting(&t)?;
        Ok(Tx {
            t,
            now,
            collecting,
            soft_delete: Cell::new(None),
            seq: None,
        })
    }

    /// Commits, or aborts if not `commit`. The [`Tx`] must be [finished](Tx::finish).
    pub(crate) fn end(self, commit: bool) -> Result<()> {
        if commit {
            self.0.commit()?;
        } else {
            self.0.abort()?;
        }
        Ok(())
    }
}

/// One write transaction: every table open, the time it runs at, and what it keeps in memory
/// until it commits. Every mutating call of the crate runs in one.
pub(crate) struct Tx<'t> {
    pub(crate) t: Tables<'t>,
    /// Every change in the transaction happens at this time.
    pub(crate) now: Timestamp,
    /// Whether a collection is running: blobs this transaction links or references go to its
    /// journal (`gc_touched`), so the sweep spares them.
    collecting: bool,
    /// The soft delete policy once read: deletes ask for it per tag and per manifest.
    soft_delete: Cell<Option<SoftDeletePolicy>>,
    /// The last number of the event sequence handed out, once read; written back to `meta`
    /// once, before the commit, rather than per event.
    seq: Option<u64>,
}

impl Tx<'_> {
    /// Tells a running collection that blob `digest` was just linked or referenced.
    pub(crate) fn journal_blob(&mut self, digest: &str) -> Result<()> {
        if self.collecting {
            self.t.gc_touched.insert(digest, ())?;
        }
        Ok(())
    }

    /// The next number of the store's event sequence: it orders tag events and deletions
    /// made at the same clock time.
    pub(crate) fn next_seq(&mut self) -> Result<u64> {
        let last = match self.seq {
            Some(last) => last,
            None => meta::seq(&self.t)?,
        };
        self.seq = Some(last + 1);
        Ok(last + 1)
    }

    /// The soft delete policy in force.
    pub(crate) fn soft_delete_policy(&self) -> Result<SoftDeletePolicy> {
        if let Some(policy) = self.soft_delete.get() {
            return Ok(policy);
        }
        let policy = meta::soft_delete(&self.t)?;
        self.soft_delete.set(Some(policy));
        Ok(policy)
    }

    /// Sets the soft delete policy for the rest of the transaction and after.
    pub(crate) fn set_soft_delete_policy(&mut self, policy: SoftDeletePolicy) -> Result<()> {
        meta::set_soft_delete(&mut self.t, policy)?;
        self.soft_delete.set(Some(policy));
        Ok(())
    }

    /// Writes back what the transaction keeps outside the tables while it runs.
    pub(crate) fn finish(&mut self) -> Result<()> {
        if let Some(seq) = self.seq {
            meta::set_seq(&mut self.t, seq)?;
        }
        Ok(())
    }
}
