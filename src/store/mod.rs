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
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase};

pub(crate) use tables::{Snapshot, Tables};

use crate::values::{Error, Result, SoftDeletePolicy, Timestamp};

/// How long a reopen waits for the other users of the failed database to let go of it.
const REOPEN_WAIT: Duration = Duration::from_secs(5);

/// The metadata database of one store. After an I/O error redb refuses every further
/// transaction until the database is reopened; this reopens it, inside the handle, for the next
/// call (C5), so no user of the store has to.
pub(crate) struct Db {
    path: PathBuf,
    store: PathBuf,
    cache_size: usize,
    /// `None` once an I/O error closed the database and no reopen has succeeded since.
    current: RwLock<Option<Arc<Database>>>,
}

impl Db {
    /// Opens (creating if needed) the database file `path`, checks its format and upgrades an
    /// older one; [`Error::AlreadyOpen`] if another handle or process holds it.
    pub(crate) fn open(path: &Path, cache_size: usize, store: &Path) -> Result<Db> {
        let db = Db {
            current: RwLock::new(Some(Arc::new(create(path, cache_size, store)?))),
            path: path.to_path_buf(),
            store: store.to_path_buf(),
            cache_size,
        };
        db.write(Timestamp::default(), true, |tx| {
            format::check(&mut tx.t, store)
        })?;
        Ok(db)
    }

    /// The open database, reopened first if an I/O error closed it.
    fn database(&self) -> Result<Arc<Database>> {
        if let Some(db) = &*self.current.read().unwrap_or_else(PoisonError::into_inner) {
            return Ok(db.clone());
        }
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(db) = &*current {
            return Ok(db.clone());
        }
        // Transactions begun on the failed database hold its file lock until they end.
        let deadline = Instant::now() + REOPEN_WAIT;
        let db = loop {
            match create(&self.path, self.cache_size, &self.store) {
                Err(Error::AlreadyOpen { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                opened => break Arc::new(opened?),
            }
        };
        *current = Some(db.clone());
        Ok(db)
    }

    /// Classifies the outcome of a use of `db`: after an I/O error the database is closed, to
    /// be reopened by the next call, and a lack of space is [`Error::StorageFull`].
    fn checked<T>(&self, db: &Arc<Database>, outcome: Result<T>) -> Result<T> {
        let Err(e) = outcome else { return outcome };
        let Some(full) = e.database_io() else {
            return Err(e);
        };
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, db)) {
            *current = None;
        }
        if full {
            return Err(Error::StorageFull {
                path: self.path.clone(),
            });
        }
        Err(e)
    }

    /// Gives the pages that deletes freed inside the database file back to the file system;
    /// false if it could not run now (a transaction is open) or had nothing to give.
    pub(crate) fn compact(&self) -> Result<bool> {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let Some(db) = current.as_mut().and_then(Arc::get_mut) else {
            return Ok(false);
        };
        let e: Error = match db.compact() {
            Ok(compacted) => return Ok(compacted),
            Err(redb::CompactionError::TransactionInProgress) => return Ok(false),
            Err(e) => redb::Error::from(e).into(),
        };
        if e.database_io().is_some() {
            *current = None;
        }
        Err(e)
    }

    /// Opens the database again if an I/O error closed it; the error if it cannot.
    pub(crate) fn reopen(&self) -> Result<()> {
        self.database().map(drop)
    }

    /// A consistent read of the store as it is now.
    pub(crate) fn snapshot(&self) -> Result<Snapshot> {
        let db = self.database()?;
        let txn = db.begin_read().map_err(Error::from);
        self.checked(&db, txn).map(Snapshot::new)
    }

    /// Begins a write transaction; redb runs one at a time.
    pub(crate) fn begin(&self) -> Result<WriteTxn<'_>> {
        let db = self.database()?;
        let txn = db.begin_write().map_err(Error::from);
        let txn = self.checked(&db, txn)?;
        Ok(WriteTxn {
            txn,
            db,
            owner: self,
        })
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
        let out = txn.tx(now).and_then(|mut tx| {
            let out = f(&mut tx)?;
            tx.finish()?;
            Ok(out)
        });
        txn.end(commit, out)
    }
}

fn create(path: &Path, cache_size: usize, store: &Path) -> Result<Database> {
    redb::Builder::new()
        .set_cache_size(cache_size)
        .create(path)
        .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::AlreadyOpen {
                path: store.to_path_buf(),
            },
            redb::DatabaseError::Storage(redb::StorageError::Io(e))
                if crate::values::is_out_of_space(&e) =>
            {
                Error::StorageFull {
                    path: path.to_path_buf(),
                }
            }
            e => e.into(),
        })
}

/// A write transaction begun, before its [`Tx`] opens its tables and after it finished.
pub(crate) struct WriteTxn<'d> {
    txn: redb::WriteTransaction,
    db: Arc<Database>,
    owner: &'d Db,
}

impl WriteTxn<'_> {
    /// The transaction's tables and state, every change at time `now`.
    pub(crate) fn tx(&self, now: Timestamp) -> Result<Tx<'_>> {
        let t = Tables::open(&self.txn)?;
        let collecting = meta::collecting(&t)?;
        Ok(Tx {
            t,
            now,
            collecting,
            soft_delete: Cell::new(None),
            seq: None,
        })
    }

    /// Ends the transaction with the outcome of the work done in it: commits if the work
    /// succeeded and `commit`, aborts otherwise. The [`Tx`] must be [finished](Tx::finish).
    pub(crate) fn end<T>(self, commit: bool, out: Result<T>) -> Result<T> {
        let WriteTxn { txn, db, owner } = self;
        let out = match out {
            Ok(value) if commit => txn.commit().map(|()| value).map_err(Error::from),
            Ok(value) => txn.abort().map(|()| value).map_err(Error::from),
            Err(e) => Err(e),
        };
        owner.checked(&db, out)
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
