//! Write transactions: every mutating call runs in a [`Batch`], alone or with others (SPEC C1).

use std::cell::{Cell, RefCell};

use redb::ReadableTable;

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::recycle_bin::SoftDeletePolicy;
use crate::registry::{Inner, Registry};
use crate::tables::Tables;

/// The `meta` key of the event sequence's last number.
const SEQ: &str = "seq";

thread_local! {
    /// The stores this thread has a batch open on. redb's `begin_write` would wait forever
    /// for the thread's own open transaction; this turns that deadlock into an error.
    static OPEN: RefCell<Vec<*const Inner>> = const { RefCell::new(Vec::new()) };
}

/// Marks a store as having a batch open on this thread while it lives.
struct OpenMark(*const Inner);

impl OpenMark {
    fn new(registry: &Registry) -> Result<OpenMark> {
        check_no_batch(registry)?;
        let key: *const Inner = &*registry.inner;
        OPEN.with_borrow_mut(|open| open.push(key));
        Ok(OpenMark(key))
    }
}

/// Fails with [`Error::NestedWrite`] if this thread has a batch open on the store. Calls that
/// write files before their transaction check this first, so a call that cannot commit
/// leaves no file behind.
pub(crate) fn check_no_batch(registry: &Registry) -> Result<()> {
    let key: *const Inner = &*registry.inner;
    if OPEN.with_borrow(|open| open.contains(&key)) {
        return Err(Error::NestedWrite {
            path: registry.path().to_path_buf(),
        });
    }
    Ok(())
}

impl Drop for OpenMark {
    fn drop(&mut self) {
        OPEN.with_borrow_mut(|open| open.retain(|k| *k != self.0));
    }
}

/// Many mutating calls in one redb transaction: they commit together, with one fsync, when
/// the closure given to [`Registry::batch`] returns `Ok`, and none of them does otherwise.
///
/// Blob bytes a batch writes are fsynced and renamed into place as each call runs, before the
/// transaction naming them commits (C2); if the batch fails they stay behind as unreferenced
/// files for the collector. Every call in a batch sees the time the batch began.
pub struct Batch<'t> {
    pub(crate) t: Tables<'t>,
    pub(crate) inner: &'t Inner,
    pub(crate) now: Timestamp,
    /// Whether a collection is running: blobs this batch links or references go to its
    /// journal (`gc_touched`), so the sweep spares them.
    pub(crate) collecting: bool,
    /// The soft delete policy once read: deletes ask for it per tag and per manifest.
    pub(crate) soft_delete: Cell<Option<SoftDeletePolicy>>,
    /// The last number of the event sequence handed out, once read; written back to `meta`
    /// once, before the commit, rather than per event.
    seq: Option<u64>,
}

impl Batch<'_> {
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
            None => match self.t.meta.get(SEQ)? {
                Some(v) => {
                    u64::from_le_bytes(v.value().try_into().map_err(|_| Error::Corrupt {
                        table: "meta",
                        reason: "seq is not 8 bytes".into(),
                    })?)
                }
                None => 0,
            },
        };
        self.seq = Some(last + 1);
        Ok(last + 1)
    }

    /// Writes back what the batch keeps outside the tables while it runs.
    fn finish(&mut self) -> Result<()> {
        if let Some(seq) = self.seq {
            self.t.meta.insert(SEQ, seq.to_le_bytes().as_slice())?;
        }
        Ok(())
    }
}

impl Registry {
    /// Runs `f` in one write transaction: every call made on the [`Batch`] commits together
    /// with one fsync, or not at all if `f` or any call fails (C1).
    ///
    /// Inside `f`, write through the batch: a write through a `Repository` of the same store
    /// fails with [`Error::NestedWrite`] (it would otherwise wait for this batch forever).
    /// Reads through a `Repository` see the store as it was before the batch.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let registry = ocistore::Registry::open(dir.path())?;
    /// let repo = registry.repository("app")?;
    /// let digests = registry.batch(|batch| {
    ///     let a = batch.put_blob_sha256(&repo, b"one")?;
    ///     let b = batch.put_blob_sha256(&repo, b"two")?;
    ///     Ok(vec![a, b])
    /// })?;
    /// assert_eq!(repo.blob(&digests[1])?, &b"two"[..]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn batch<T>(&self, f: impl FnOnce(&mut Batch<'_>) -> Result<T>) -> Result<T> {
        self.write(true, f)
    }

    /// Runs `f` in one write transaction, and commits it if `commit` and `f` succeeded: a dry
    /// run is the real run, aborted.
    pub(crate) fn write<T>(
        &self,
        commit: bool,
        f: impl FnOnce(&mut Batch<'_>) -> Result<T>,
    ) -> Result<T> {
        let _open = OpenMark::new(self)?;
        let txn = self.inner.db.begin_write()?;
        let out = {
            let t = Tables::open(&txn)?;
            let collecting = t.meta.get(crate::collector::COLLECTING)?.is_some();
            let mut batch = Batch {
                t,
                inner: &self.inner,
                now: self.inner.clock.now(),
                collecting,
                soft_delete: Cell::new(None),
                seq: None,
            };
            let out = f(&mut batch)?;
            batch.finish()?;
            out
        };
        if commit {
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c1_a_write_inside_a_batch_of_the_same_store_fails_instead_of_deadlocking() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        let repo = registry.repository("app").unwrap();
        let err = registry
            .batch(|b| {
                b.put_blob_sha256(&repo, b"kept")?;
                repo.put_blob_sha256(b"nested")
            })
            .unwrap_err();
        assert!(matches!(err, Error::NestedWrite { ref path } if path == dir.path()));
        // The failed batch wrote nothing, and the store takes writes again afterwards.
        assert!(repo.blobs(&crate::Page::all()).unwrap().is_empty());
        let digest = repo.put_blob_sha256(b"after").unwrap();
        assert_eq!(repo.blobs(&crate::Page::all()).unwrap(), [digest]);
    }

    #[test]
    fn c1_batches_on_two_stores_nest_on_one_thread() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (ra, rb) = (
            Registry::open(a.path()).unwrap(),
            Registry::open(b.path()).unwrap(),
        );
        let repo_b = rb.repository("app").unwrap();
        ra.batch(|_| repo_b.put_blob_sha256(b"into b").map(drop))
            .unwrap();
        assert_eq!(repo_b.blobs(&crate::Page::all()).unwrap().len(), 1);
    }
}
