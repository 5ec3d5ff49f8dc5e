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
pub(crate) mod membership;
pub(crate) mod meta;
pub(crate) mod repositories;
pub(crate) mod tables;
pub(crate) mod tags;
pub(crate) mod uploads;

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redb::{Database, ReadOnlyDatabase, ReadableDatabase};

pub(crate) use tables::{Snapshot, Tables};

use crate::values::{Error, OpenMode, Result, SoftDeletePolicy, Timestamp};

/// How long a reopen waits for the other users of the failed database to let go of it.
const REOPEN_WAIT: Duration = Duration::from_secs(5);

/// The metadata database of one store, opened in one [`OpenMode`]. After an I/O error redb
/// refuses every further transaction until the database is reopened; this reopens it, inside
/// the handle, for the next call (C5), so no user of the store has to.
pub(crate) struct Db {
    path: PathBuf,
    store: PathBuf,
    cache_size: usize,
    mode: OpenMode,
    /// `None` once an I/O error closed the database and no reopen has succeeded since.
    current: RwLock<Option<Handle>>,
}

/// An open database: one that writes, or one opened read-only.
#[derive(Clone)]
enum Handle {
    Writes(Arc<Database>),
    Reads(Arc<ReadOnlyDatabase>),
}

impl Handle {
    fn same(&self, other: &Handle) -> bool {
        match (self, other) {
            (Handle::Writes(a), Handle::Writes(b)) => Arc::ptr_eq(a, b),
            (Handle::Reads(a), Handle::Reads(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Db {
    /// Opens the database file `path` in `mode` (creating it if need be, unless read-only) and
    /// checks its format. With the store `alone` (no other handle has it open) an older format
    /// is upgraded; otherwise it is refused with [`Error::NeedsUpgrade`].
    pub(crate) fn open(
        path: &Path,
        cache_size: usize,
        store: &Path,
        mode: OpenMode,
        alone: bool,
    ) -> Result<Db> {
        let db = Db {
            current: RwLock::new(Some(create(path, cache_size, store, mode)?)),
            path: path.to_path_buf(),
            store: store.to_path_buf(),
            cache_size,
            mode,
        };
        if alone && mode != OpenMode::ReadOnly {
            db.write(Timestamp::default, true, |tx| {
                format::check(&mut tx.t, store)
            })?;
        } else {
            format::check_current(&db.snapshot()?, store)?;
        }
        Ok(db)
    }

    /// How the database was opened.
    pub(crate) fn mode(&self) -> OpenMode {
        self.mode
    }

    /// The open database, reopened first if an I/O error closed it.
    fn database(&self) -> Result<Handle> {
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
            match create(&self.path, self.cache_size, &self.store, self.mode) {
                Err(Error::AlreadyOpen { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                opened => break opened?,
            }
        };
        *current = Some(db.clone());
        Ok(db)
    }

    /// Classifies the outcome of a use of `db`: after an I/O error the database is closed, to
    /// be reopened by the next call, and a lack of space is [`Error::StorageFull`].
    fn checked<T>(&self, db: &Handle, outcome: Result<T>) -> Result<T> {
        let Err(e) = outcome else { return outcome };
        let Some(full) = e.database_io() else {
            return Err(e);
        };
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|c| c.same(db)) {
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
    /// false if it could not run now (a transaction is open) or had nothing to give. Only an
    /// exclusive handle compacts: a shared one would stop every other process's reads while
    /// it runs (C3).
    pub(crate) fn compact(&self) -> Result<bool> {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let Some(Handle::Writes(db)) = current.as_mut() else {
            return Ok(false);
        };
        let Some(db) = Arc::get_mut(db).filter(|_| self.mode == OpenMode::Exclusive) else {
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

    /// A consistent read of the store as it is now: in a shared store, with every commit any
    /// process made before it began (M2).
    pub(crate) fn snapshot(&self) -> Result<Snapshot> {
        let db = self.database()?;
        let txn = match &db {
            Handle::Writes(d) => d.begin_read(),
            Handle::Reads(d) => d.begin_read(),
        };
        self.checked(&db, txn.map_err(Error::from))
            .map(Snapshot::new)
    }

    /// [`Error::ReadOnly`] on a read-only handle: checked before a call writes anything,
    /// blob bytes included.
    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.mode == OpenMode::ReadOnly {
            return Err(self.read_only());
        }
        Ok(())
    }

    fn read_only(&self) -> Error {
        Error::ReadOnly {
            path: self.store.clone(),
        }
    }

    /// Begins a write transaction; redb runs one at a time, across processes in a shared
    /// store. [`Error::ReadOnly`] on a read-only handle.
    pub(crate) fn begin(&self) -> Result<WriteTxn<'_>> {
        let handle = self.database()?;
        let Handle::Writes(db) = &handle else {
            return Err(self.read_only());
        };
        let txn = db.begin_write().map_err(Error::from);
        let txn = self.checked(&handle, txn)?;
        Ok(WriteTxn {
            txn,
            db: handle,
            owner: self,
        })
    }

    /// Runs `f` in one write transaction at time `now()`, and commits it if `commit` and `f`
    /// succeeded: a dry run is the real run, aborted. The time is read once the transaction
    /// began: a write that waited behind another process's is not stamped before it.
    pub(crate) fn write<T>(
        &self,
        now: impl FnOnce() -> Timestamp,
        commit: bool,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T>,
    ) -> Result<T> {
        let txn = self.begin()?;
        let out = txn.tx(now()).and_then(|mut tx| {
            let out = f(&mut tx)?;
            tx.finish()?;
            Ok(out)
        });
        txn.end(commit, out)
    }
}

fn create(path: &Path, cache_size: usize, store: &Path, mode: OpenMode) -> Result<Handle> {
    let mut builder = redb::Builder::new();
    builder.set_cache_size(cache_size);
    let opened = match mode {
        OpenMode::Exclusive => builder.create(path).map(|d| Handle::Writes(Arc::new(d))),
        OpenMode::Shared => builder
            .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
            .create(path)
            .map(|d| Handle::Writes(Arc::new(d))),
        OpenMode::ReadOnly => {
            if !path.exists() {
                return Err(Error::Io {
                    path: path.to_path_buf(),
                    source: std::io::ErrorKind::NotFound.into(),
                });
            }
            builder
                .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
                .open_read_only(path)
                .map(|d| Handle::Reads(Arc::new(d)))
        }
    };
    opened.map_err(|e| match e {
        // Only a handle outside the lock files' protocol (or the failed handle a reopen
        // replaces) gets here: one that holds the database's whole file.
        redb::DatabaseError::DatabaseAlreadyOpen | redb::DatabaseError::LockProtocolMismatch => {
            Error::AlreadyOpen {
                path: store.to_path_buf(),
                held_by: OpenMode::Exclusive,
            }
        }
        redb::DatabaseError::RepairAborted => Error::NeedsRecovery {
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
    db: Handle,
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
