//! Operations: what the registry does, over the store layer and the blob store — blobs in and
//! out, uploads, deletes, the recycle bin, the retention clock, purge, the collector, usage and
//! fsck. Each works on a [`Core`]; the handles above (`Registry`, `Repository`, `Batch`) only
//! forward to them.

pub(crate) mod blobs;
pub(crate) mod collector;
pub(crate) mod delete;
pub(crate) mod fsck;
pub(crate) mod history;
pub(crate) mod purge;
pub(crate) mod push;
pub(crate) mod recycle_bin;
pub(crate) mod retention;
pub(crate) mod space;
pub(crate) mod upload;
pub(crate) mod usage;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::blobs::BlobStore;
use crate::store::membership::Membership;
use crate::store::{Db, Snapshot, Tx};
use crate::values::{Clock, Error, Result, Timestamp};

/// One open store: its database, its blob store, its clock and settings, and the state its
/// handles share.
pub(crate) struct Core {
    pub(crate) db: Db,
    pub(crate) dir: PathBuf,
    pub(crate) blobs: Box<dyn BlobStore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) upload_timeout: Duration,
    pub(crate) autopurge_interval: Duration,
    pub(crate) grace_period: Duration,
    /// The reserve that keeps the calls that free space able to commit on a full disk (C4).
    pub(crate) space: space::Space,
    /// Upload sessions touched since open, with their running hash; others are rebuilt from
    /// their bytes on resume.
    pub(crate) uploads: Mutex<HashMap<String, Arc<Mutex<upload::UploadState>>>>,
    /// This handle's hold on the store, for as long as it is open.
    pub(crate) membership: Membership,
}

thread_local! {
    /// The stores this thread has a write transaction open on. redb's `begin_write` would wait
    /// forever for the thread's own open transaction; this turns that deadlock into an error.
    static OPEN: RefCell<Vec<*const Core>> = const { RefCell::new(Vec::new()) };
}

/// Marks a store as having a write transaction open on this thread while it lives.
pub(crate) struct OpenMark(*const Core);

impl OpenMark {
    pub(crate) fn new(core: &Core) -> Result<OpenMark> {
        core.check_no_batch()?;
        let key: *const Core = core;
        OPEN.with_borrow_mut(|open| open.push(key));
        Ok(OpenMark(key))
    }
}

impl Drop for OpenMark {
    fn drop(&mut self) {
        OPEN.with_borrow_mut(|open| open.retain(|k| *k != self.0));
    }
}

impl Core {
    /// Now, by the registry's clock.
    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// A consistent read of the store as it is now.
    pub(crate) fn snapshot(&self) -> Result<Snapshot> {
        self.db.snapshot()
    }

    /// Fails with [`Error::NestedWrite`] if this thread has a write transaction open on the
    /// store. Calls that write bytes before their transaction check this first, so a call that
    /// cannot commit leaves no bytes behind.
    pub(crate) fn check_no_batch(&self) -> Result<()> {
        let key: *const Core = self;
        if OPEN.with_borrow(|open| open.contains(&key)) {
            return Err(Error::NestedWrite {
                path: self.dir.clone(),
            });
        }
        Ok(())
    }

    /// Runs `f` in one write transaction at the clock's now, committed if `commit` and `f`
    /// succeeded (a dry run is the real run, aborted). For the writes that free space or keep
    /// the store: they run on a full disk too (C4).
    pub(crate) fn write<T>(
        &self,
        commit: bool,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T>,
    ) -> Result<T> {
        let _open = OpenMark::new(self)?;
        self.space.watch(self.db.write(|| self.now(), commit, f))
    }

    /// `Ok` if a write that adds to the store may go; [`Error::StorageFull`](crate::Error::StorageFull)
    /// while the disk is full (C4).
    pub(crate) fn room(&self) -> Result<()> {
        self.db.check_writable()?;
        self.space.check(|| self.db.compact())
    }

    /// [`write`](Core::write) for a write that adds to the store: refused with
    /// [`Error::StorageFull`](crate::Error::StorageFull) while the disk is full.
    pub(crate) fn write_adding<T>(&self, f: impl FnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        self.room()?;
        self.write(true, f)
    }
}
