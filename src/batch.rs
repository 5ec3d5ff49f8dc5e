//! Write transactions: every mutating call runs in a [`Batch`], alone or with others (SPEC C1).

use redb::WriteTransaction;

use crate::clock::Timestamp;
use crate::error::Result;
use crate::registry::{Inner, Registry};

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
}

impl<'r> Batch<'r> {
    pub(crate) fn begin(registry: &'r Registry) -> Result<Batch<'r>> {
        let inner = &*registry.inner;
        let txn = inner.db.begin_write()?;
        Ok(Batch {
            txn,
            now: inner.clock.now(),
            inner,
        })
    }

    pub(crate) fn commit(self) -> Result<()> {
        self.txn.commit()?;
        Ok(())
    }
}
