//! Write transactions: every mutating call runs in a [`Batch`], alone or with others (SPEC C1).

use std::cell::RefCell;

use redb::{ReadableTable, WriteTransaction};

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::registry::{Inner, Registry};
use crate::tables::META;

thread_local! {
    /// The stores this thread has a batch open on. redb's `begin_write` would wait forever
    /// for the thread's own open transaction; this turns that deadlock into an error.
    static OPEN: RefCell<Vec<*const Inner>> = const { RefCell::new(Vec::new()) };
}

/// Marks a store as having a batch open on this thread while it lives.
struct OpenMark(*const Inner);

impl OpenMark {
    fn new(registry: &Registry) -> Result<OpenMark> {
        let key: *const Inner = &*registry.inner;
        OPEN.with_borrow_mut(|open| {
            if open.contains(&key) {
                return Err(Error::NestedWrite {
                    path: registry.path().to_path_buf(),
                });
            }
            open.push(key);
            Ok(OpenMark(key))
        })
    }
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
pub struct Batch<'r> {
    pub(crate) txn: WriteTransaction,
    pub(crate) inner: &'r Inner,
    pub(crate) now: Timestamp,
    _open: OpenMark,
}

impl<'r> Batch<'r> {
    pub(crate) fn begin(registry: &'r Registry) -> Result<Batch<'r>> {
        let open = OpenMark::new(registry)?;
        let inner = &*registry.inner;
        let txn = inner.db.begin_write()?;
        Ok(Batch {
            txn,
            now: inner.clock.now(),
            inner,
            _open: open,
        })
    }

    /// The next number of the store's event sequence: it orders tag events and deletions
    /// made at the same clock time.
    pub(crate) fn next_seq(&mut self) -> Result<u64> {
        let mut meta = self.txn.open_table(META)?;
        let last = match meta.get("seq")? {
            Some(v) => u64::from_le_bytes(v.value().try_into().map_err(|_| Error::Corrupt {
                table: "meta",
                reason: "seq is not 8 bytes".into(),
            })?),
            None => 0,
        };
        meta.insert("seq", (last + 1).to_le_bytes().as_slice())?;
        Ok(last + 1)
    }

    pub(crate) fn commit(self) -> Result<()> {
        self.txn.commit()?;
        Ok(())
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
