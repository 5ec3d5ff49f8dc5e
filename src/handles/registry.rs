//! [`Registry`]: opening a store, and every registry-wide call (docs/spec.md: C1, C3). Each forwards to
//! the layer that does the work.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Batch, Repository};
use crate::blobs::{BlobStore, DirectoryStore};
use crate::ops::collector::{CollectOptions, CollectReport, Progress};
use crate::ops::fsck::{FsckOptions, FsckReport};
use crate::ops::purge::{PurgeOptions, PurgeReport};
use crate::ops::retention::{AutopurgeReport, Maintenance};
use crate::ops::space::{Health, Space};
use crate::ops::usage::Usage;
use crate::ops::{self, Core, OpenMark};
use crate::store::bin::{self, DeletedRepository};
use crate::store::membership::Membership;
use crate::store::{Db, meta, repositories};
use crate::values::{
    Clock, Error, OpenMode, Page, Result, RetentionPolicy, SoftDeletePolicy, SystemClock,
    Timestamp, validate_name,
};

const DATABASE_FILE: &str = "metadata.redb";

/// One store: a redb database for all metadata and a content-addressed blob directory.
///
/// The handle is cheap to clone and `Send + Sync`: clones share one open store. Reads run on
/// redb snapshots and never wait for writes; writes are serialized by redb.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use ocistore::Registry;
/// let registry = Registry::open(dir.path())?;
/// let repo = registry.repository("team/app")?;
/// let digest = repo.put_blob_sha256(b"a layer")?;
/// assert_eq!(repo.blob(&digest)?, &b"a layer"[..]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Registry {
    pub(crate) core: Arc<Core>,
}

/// Settings for opening a store.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use ocistore::{ManualClock, Registry, Timestamp};
/// let clock = ManualClock::new(Timestamp::from_nanos(0));
/// let registry = Registry::builder()
///     .clock(clock.clone())
///     .cache_size(64 << 20)
///     .open(dir.path())?;
/// assert_eq!(registry.now(), Timestamp::from_nanos(0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct RegistryBuilder {
    clock: Arc<dyn Clock>,
    cache_size: usize,
    upload_timeout: Duration,
    autopurge_interval: Duration,
    grace_period: Duration,
    blob_store: Option<Box<dyn BlobStore>>,
    space_reserve: u64,
    mode: OpenMode,
}

/// The default reserve: room for thousands of the transactions that free space (a delete
/// rewrites a few dozen 4 KiB pages; a sweep transaction of the collector a few hundred).
pub const DEFAULT_SPACE_RESERVE: u64 = 16 << 20;

impl Default for RegistryBuilder {
    fn default() -> Self {
        RegistryBuilder {
            clock: Arc::new(SystemClock),
            cache_size: 64 << 20,
            upload_timeout: Duration::from_secs(24 * 3600),
            autopurge_interval: Duration::from_secs(24 * 3600),
            grace_period: Duration::from_secs(3600),
            blob_store: None,
            space_reserve: DEFAULT_SPACE_RESERVE,
            mode: OpenMode::Exclusive,
        }
    }
}

impl RegistryBuilder {
    /// The clock every timestamp comes from (default: the system clock).
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The redb page cache in bytes (default 64 MiB: it bounds most of the memory a store uses, a collection included; a larger one speeds up reads of a big store).
    #[must_use]
    pub fn cache_size(mut self, bytes: usize) -> Self {
        self.cache_size = bytes;
        self
    }

    /// How long an upload session may live, from its start, before it can no longer be
    /// appended to, finished or resumed (default 24 hours). Must be at least one second.
    /// Processes sharing a store must agree: a collector with a shorter timeout sweeps sessions
    /// another process still accepts.
    #[must_use]
    pub fn upload_timeout(mut self, timeout: Duration) -> Self {
        self.upload_timeout = timeout;
        self
    }

    /// How often autopurge runs on the retention clock (default 24 hours, at least one
    /// second); see [`Registry::run_due`] (S4). Processes sharing a store should agree: each
    /// runs it once the interval it was given has passed since the last run in any process, so
    /// the shortest interval among them sets the cadence (never two runs for one due time).
    #[must_use]
    pub fn autopurge_interval(mut self, interval: Duration) -> Self {
        self.autopurge_interval = interval;
        self
    }

    /// How old an unreferenced blob or blob link must be before the collector removes it
    /// (default one hour; zero is allowed): a client that just uploaded a layer has not pushed
    /// its manifest yet (G1, G3). A [`CollectOptions`](crate::CollectOptions) can override it.
    /// Processes sharing a store must agree: a collector's grace covers the uploads of every
    /// process.
    #[must_use]
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace_period = grace;
        self
    }

    /// How many bytes of disk the store keeps in reserve, in a preallocated file in its
    /// directory, so that deletes, purges of the recycle bin and the collector can still commit
    /// when the disk is full (C4); default [`DEFAULT_SPACE_RESERVE`], 0 for none. Processes
    /// sharing a store must agree: the store is full while the file is shorter than the reserve,
    /// and a handle with none never finds it full. A read-only handle keeps none.
    #[must_use]
    pub fn space_reserve(mut self, bytes: u64) -> Self {
        self.space_reserve = bytes;
        self
    }

    /// How this handle shares the store with other handles and processes (M1; default
    /// [`OpenMode::Exclusive`]). Every process on one store must use the same settings
    /// (clock aside): the upload timeout, the autopurge interval, the grace period and the
    /// space reserve.
    #[must_use]
    pub fn mode(mut self, mode: OpenMode) -> Self {
        self.mode = mode;
        self
    }

    /// Where the blob bytes live (O1): any [`BlobStore`], such as one that fails or crashes on
    /// command in tests. The default is a [`DirectoryStore`] in the store's own directory.
    #[must_use]
    pub fn blob_store(mut self, store: impl BlobStore) -> Self {
        self.blob_store = Some(Box::new(store));
        self
    }

    /// Opens the store in `dir` in the [mode](RegistryBuilder::mode) set, creating it if it
    /// does not exist (unless read-only).
    ///
    /// An open that finds no other handle on the store cleans up what dead processes left
    /// (temporary files, upload files no session names) and upgrades an older format; one that
    /// joins others does neither.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::InvalidSetting`] if the upload timeout or the autopurge interval is
    /// under one second, [`Error::AlreadyOpen`] if the store is held in a mode this one cannot
    /// join (M1), [`Error::UnsupportedFormat`] if it is in an on-disk format this build does not
    /// read, [`Error::NeedsUpgrade`] if it is in an older one and others have it open,
    /// [`Error::NeedsRecovery`] for a read-only open of a store a killed writer left,
    /// [`Error::StorageFull`] if the disk has no room to create it, and [`Error::Io`] (a
    /// read-only open of a store that does not exist: `NotFound`), [`Error::Database`] or
    /// [`Error::Corrupt`] when the disk or the database fails.
    pub fn open(self, dir: impl AsRef<Path>) -> Result<Registry> {
        for (setting, value) in [
            ("upload_timeout", self.upload_timeout),
            ("autopurge_interval", self.autopurge_interval),
        ] {
            if value < Duration::from_secs(1) {
                return Err(Error::InvalidSetting {
                    setting,
                    value: format!("{value:?}"),
                    reason: "must be at least one second",
                });
            }
        }
        let dir = dir.as_ref().to_path_buf();
        if self.mode != OpenMode::ReadOnly {
            std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
                path: dir.clone(),
                source,
            })?;
        }
        // Held and checked before anything is written: an open that is refused touches nothing.
        let membership = Membership::begin(&dir, self.mode)?;
        let alone = membership.alone();
        let open_db = || {
            Db::open(
                &dir.join(DATABASE_FILE),
                self.cache_size,
                &dir,
                self.mode,
                alone,
            )
        };
        // A read-only handle writes nothing, so it keeps no reserve.
        let reserve = if self.mode == OpenMode::ReadOnly {
            0
        } else {
            self.space_reserve
        };
        let space = Space::open(&dir, reserve)?;
        // On a disk full to the last byte, the reserve gives opening the room it needs.
        let db = match space.watch(open_db()) {
            Err(Error::StorageFull { .. }) => open_db()?,
            opened => opened?,
        };
        let blobs = self
            .blob_store
            .unwrap_or_else(|| Box::new(DirectoryStore::new(&dir)));
        let mut core = Core {
            db,
            dir,
            blobs,
            clock: self.clock,
            upload_timeout: self.upload_timeout,
            autopurge_interval: self.autopurge_interval,
            grace_period: self.grace_period,
            uploads: Mutex::default(),
            space,
            membership,
        };
        // Before the blob store opens: a refused open writes nothing, there either.
        let record_location = ops::blobs::check_location(&core)?;
        if self.mode != OpenMode::ReadOnly {
            core.blobs.open(&core.dir, alone)?;
            if record_location {
                ops::blobs::record_location(&core)?;
            }
            if alone {
                // Upload files no session names: no live process can be writing them.
                ops::upload::reconcile(&core)?;
            }
            ops::collector::end_dead_collection(&core)?;
        }
        core.membership.admit()?;
        let core = Arc::new(core);
        Ok(Registry { core })
    }
}

impl Registry {
    /// Opens the store in `dir` with default settings, creating it if needed.
    ///
    /// # Errors
    ///
    /// As [`RegistryBuilder::open`], whose default settings are valid.
    pub fn open(dir: impl AsRef<Path>) -> Result<Registry> {
        RegistryBuilder::default().open(dir)
    }

    /// Settings for opening a store.
    #[must_use]
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    /// The store's directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.core.dir
    }

    /// How this handle shares the store (M1).
    #[must_use]
    pub fn mode(&self) -> OpenMode {
        self.core.db.mode()
    }

    /// Now, by the registry's clock.
    #[must_use]
    pub fn now(&self) -> Timestamp {
        self.core.now()
    }

    /// A handle on the repository `name` (N1). The repository comes into being with the first
    /// blob or manifest pushed or mounted into it.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::InvalidRepositoryName`] if `name` breaks the OCI grammar or is over 255
    /// bytes.
    pub fn repository(&self, name: &str) -> Result<Repository> {
        validate_name(name)?;
        Ok(Repository::new(self.clone(), name.to_owned()))
    }

    /// Repository names in lexical order, paginated the OCI way (P7).
    ///
    /// # Errors
    ///
    /// Fails with [`Error::InvalidRepositoryName`] if `page.last` is not a repository name, and
    /// [`Error::Io`], [`Error::Database`] or [`Error::Corrupt`] when the disk or the database
    /// fails.
    pub fn repositories(&self, page: &Page) -> Result<Vec<String>> {
        if let Some(last) = &page.last {
            validate_name(last)?;
        }
        repositories::live(&self.core.snapshot()?, page)
    }

    /// Deletes repository `name` with all its manifests and tags (D4). With the soft delete
    /// policy on, the repository and everything in it go to the recycle bin; with it off, they
    /// are gone, tombstones included.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::InvalidRepositoryName`] if `name` is invalid,
    /// [`Error::RepositoryUnknown`] if no live repository has that name, [`Error::Locked`] if the
    /// repository or anything in it has `delete_enabled` false, [`Error::NestedWrite`] inside a
    /// [`Batch`](crate::Batch) of this store, and [`Error::Io`], [`Error::Database`] or
    /// [`Error::Corrupt`] when the disk or the database fails.
    pub fn delete_repository(&self, name: &str) -> Result<()> {
        validate_name(name)?;
        self.core.write(true, |tx| tx.delete_repository(name))
    }

    /// The soft delete policy in force.
    ///
    /// # Errors
    ///
    /// Fails only with [`Error::Io`], [`Error::Database`] or [`Error::Corrupt`], when the disk or
    /// the database fails.
    pub fn soft_delete_policy(&self) -> Result<SoftDeletePolicy> {
        meta::soft_delete(&self.core.snapshot()?)
    }

    /// Sets the soft delete policy; it is persisted and applies from the next call (S1).
    /// Turning it off leaves the tombstones in the bin restorable until they expire (S15).
    /// What the policy it replaces has expired is purged first, in the same transaction, so
    /// that a longer retention brings nothing expired back (S3).
    ///
    /// # Errors
    ///
    /// Fails with [`Error::InvalidSetting`] unless the policy's `retention_days` is 1 to 90,
    /// [`Error::NestedWrite`] inside a [`Batch`](crate::Batch) of this store, and [`Error::Io`],
    /// [`Error::Database`] or [`Error::Corrupt`] when the disk or the database fails.
    pub fn set_soft_delete_policy(&self, policy: SoftDeletePolicy) -> Result<()> {
        policy.validate()?;
        self.core
            .write(true, |tx| tx.change_soft_delete_policy(|_| policy))
            .map(drop)
    }

    /// Switches the soft delete policy on or off, keeping its retention days (S1), and returns
    /// the policy now in force. Like [`set_soft_delete_policy`](Registry::set_soft_delete_policy),
    /// it first purges what has expired.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::NestedWrite`] inside a [`Batch`](crate::Batch) of this store, and
    /// [`Error::Io`], [`Error::Database`] or [`Error::Corrupt`] when the disk or the database
    /// fails.
    pub fn set_soft_delete_enabled(&self, enabled: bool) -> Result<SoftDeletePolicy> {
        self.core.write(true, |tx| {
            tx.change_soft_delete_policy(|policy| policy.with_enabled(enabled))
        })
    }

    /// Soft-deleted repositories that have not expired, most recently deleted first (S3, S5).
    ///
    /// # Errors
    ///
    /// Fails only with [`Error::Io`], [`Error::Database`] or [`Error::Corrupt`], when the disk or
    /// the database fails.
    pub fn deleted_repositories(&self) -> Result<Vec<DeletedRepository>> {
        bin::deleted_repositories(&self.core.snapshot()?, self.core.now())
    }

    /// Permanently removes soft-deleted repository `name` with everything in it, before it
    /// expires (S16).
    ///
    /// # Errors
    ///
    /// Fails with [`Error::InvalidRepositoryName`] if `name` is invalid, [`Error::NotDeleted`] if
    /// the repository is not in the recycle bin or has expired (S3), [`Error::NestedWrite`] inside a
    /// [`Batch`](crate::Batch) of this store, and [`Error::Io`], [`Error::Database`] or
    /// [`Error::Corrupt`] when the disk or the database fails.
    pub fn purge_deleted_repository(&self, name: &str) -> Result<()> {
        validate_name(name)?;
        self.core
            .write(true, |tx| tx.purge_deleted_repository(name))
    }

    /// The retention policy for untagged manifests in force (R1).
    ///
    /// # Errors
    ///
    /// Fails only with [`Error::Io`], [`Error::Database`] or [`Error::Corrupt`], when the disk or
    /// the database fails.
    pub fn retention_policy(&self) -> Result<RetentionPolicy> {
        Ok(meta::retention(&self.core.snapshot()?)?.policy)
    }

    /// When the retention policy took effect, if it is enabled: manifests untagged before
    /// then are not affected (R1).
    ///
    /// # Errors
    ///
    /// Fails only with [`Error::Io`], [`Error::Database`] or [`Error::Corrupt`], when the disk or
    /// the database fails.
    pub fn retention_enabled_at(&self) -> Result<Option<Timestamp>> {
        Ok(meta::retention(&self.core.snapshot()?)?.since)
    }

    /// Sets the retention policy for untagged manifests; it is persisted, and the retention
    /// clock applies it ([`run_due`](Registry::run_due), [`run_now`](Registry::run_now)).
    /// Enabling it starts its clock now: manifests untagged before are not affected (R1).
    /// Changing the days of an enabled policy keeps its start; disabling it forgets it.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::InvalidSetting`] if the policy's `days` is over 365,
    /// [`Error::NestedWrite`] inside a [`Batch`](crate::Batch) of this store, and [`Error::Io`],
    /// [`Error::Database`] or [`Error::Corrupt`] when the disk or the database fails.
    pub fn set_retention_policy(&self, policy: RetentionPolicy) -> Result<()> {
        ops::retention::set_policy(&self.core, policy)
    }

    /// Days tag history is kept (T2): 90 unless set, 0 for ever.
    ///
    /// # Errors
    ///
    /// Fails only with [`Error::Io`], [`Error::Database`] or [`Error::Corrupt`], when the disk or
    /// the database fails.
    pub fn history_retention_days(&self) -> Result<u32> {
        meta::history_retention_days(&self.core.snapshot()?)
    }

    /// Sets how many days tag history is kept, 0 for ever (T2); it is persisted. The retention
    /// clock ([`run_due`](Registry::run_due), [`run_now`](Registry::run_now)) removes the
    /// entries older than that, whether or not the manifests they name still exist.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::InvalidSetting`] if `days` is over 3650, [`Error::NestedWrite`]
    /// inside a [`Batch`](crate::Batch) of this store, and [`Error::Io`], [`Error::Database`] or
    /// [`Error::Corrupt`] when the disk or the database fails.
    pub fn set_history_retention_days(&self, days: u32) -> Result<()> {
        ops::history::set_retention_days(&self.core, days)
    }

    /// When autopurge last ran; persisted, so a restart keeps the cadence (S4).
    ///
    /// # Errors
    ///
    /// Fails only with [`Error::Io`], [`Error::Database`] or [`Error::Corrupt`], when the disk or
    /// the database fails.
    pub fn autopurge_last_run(&self) -> Result<Option<Timestamp>> {
        meta::autopurge_last_run(&self.core.snapshot()?)
    }

    /// Runs autopurge if the autopurge interval has passed since its last run (or it never
    /// ran), and returns its report; `None` if it was not due. A host calls this on a timer,
    /// or lets [`Registry::start_maintenance`] do it.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::NestedWrite`] inside a [`Batch`](crate::Batch) of this store,
    /// [`Error::ReadOnly`] on a read-only handle (due or not), and [`Error::Io`],
    /// [`Error::Database`] or [`Error::Corrupt`] when the disk or the database fails.
    pub fn run_due(&self) -> Result<Option<AutopurgeReport>> {
        ops::retention::run_due(&self.core)
    }

    /// Runs autopurge now, whether due or not (S4).
    ///
    /// # Errors
    ///
    /// Fails with [`Error::NestedWrite`] inside a [`Batch`](crate::Batch) of this store,
    /// [`Error::ReadOnly`] on a read-only handle, and [`Error::Io`], [`Error::Database`] or
    /// [`Error::Corrupt`] when the disk or the database fails.
    pub fn run_now(&self) -> Result<AutopurgeReport> {
        #[allow(clippy::redundant_closure_for_method_calls)]
        // `Tx::autopurge` is not general enough over `Tx`'s lifetime
        self.core.write(true, |tx| tx.autopurge())
    }

    /// Starts a background thread that calls [`run_due`](Registry::run_due) every `poll`
    /// of real time, until [`Maintenance::shutdown`] (or the handle is dropped). On a
    /// read-only handle each run fails with [`Error::ReadOnly`], which
    /// [`Maintenance::last_error`] reports.
    #[must_use]
    pub fn start_maintenance(&self, poll: Duration) -> Maintenance {
        ops::retention::start_maintenance(self.core.clone(), poll)
    }

    /// Purges by filter (U1–U6): in every live repository a filter matches, untags the tags
    /// it matches that were last updated before now − `ago`, except the `keep` most recently
    /// updated of them; with `untagged`, then deletes the untagged manifests last updated
    /// before now − `ago`, except children of an index that stays and referrers of a live
    /// subject. Locked items are skipped and reported unless `include_locked`.
    ///
    /// A manifest this purge untags is judged by when it was last updated before the purge,
    /// so one run removes old tags and the images they held.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::InvalidFilter`] if `options` has no filter, [`Error::NestedWrite`]
    /// inside a [`Batch`](crate::Batch) of this store, and [`Error::Io`], [`Error::Database`] or
    /// [`Error::Corrupt`] when the disk or the database fails. Locked items are skipped and
    /// reported, not an error.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use ocistore::{PurgeOptions, Registry};
    /// let registry = Registry::open(dir.path())?;
    /// let mut options = PurgeOptions::new(["hello-world:.*"])?;
    /// options.dry_run = true;
    /// let report = registry.purge(&options)?;
    /// assert_eq!(report.tags_untagged(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn purge(&self, options: &PurgeOptions) -> Result<PurgeReport> {
        ops::purge::purge(&self.core, options)
    }

    /// Runs the collector: removes the blobs that no manifest references (live or in the
    /// recycle bin) and that are older than the grace period, with the repository links
    /// nothing references and the expired upload sessions (G1–G6). Pushes, pulls and deletes
    /// go on while it runs; a blob that a manifest committed before or during the run
    /// references is never removed.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::NestedWrite`] inside a [`Batch`](crate::Batch) of this store, and
    /// [`Error::Io`], [`Error::Database`] or [`Error::Corrupt`] when the disk or the database
    /// fails.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use std::time::Duration;
    /// use ocistore::{CollectOptions, Registry};
    ///
    /// let registry = Registry::builder().grace_period(Duration::ZERO).open(dir.path())?;
    /// let repo = registry.repository("app")?;
    /// repo.put_blob_sha256(b"a layer no manifest will reference")?;
    /// let dry = registry.collect(&CollectOptions::default().dry_run(true))?;
    /// let report = registry.collect(&CollectOptions::default())?;
    /// assert_eq!((dry.blobs_swept, report.blobs_swept, report.links_removed), (1, 1, 1));
    /// assert!(repo.blobs(&ocistore::Page::all())?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn collect(&self, options: &CollectOptions) -> Result<CollectReport> {
        self.collect_with_progress(options, |_| {})
    }

    /// [`collect`](Registry::collect), telling `progress` where it is every so often.
    ///
    /// # Errors
    ///
    /// As [`collect`](Registry::collect).
    pub fn collect_with_progress(
        &self,
        options: &CollectOptions,
        progress: impl FnMut(Progress),
    ) -> Result<CollectReport> {
        ops::collector::collect(&self.core, options, progress)
    }

    /// Storage usage (A1), from one read snapshot: it never waits for writers nor they for it.
    ///
    /// Memory grows with the number of blobs (a few dozen bytes each), not with manifests.
    ///
    /// # Errors
    ///
    /// Fails only with [`Error::Io`], [`Error::Database`] or [`Error::Corrupt`], when the disk or
    /// the database fails.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let registry = ocistore::Registry::open(dir.path())?;
    /// let (a, b) = (registry.repository("a")?, registry.repository("b")?);
    /// let layer = a.put_blob_sha256(b"shared layer")?; // 12 bytes
    /// b.mount_blob("a", &layer)?;
    /// b.put_blob_sha256(b"only in b")?; // 9 bytes
    /// let usage = registry.usage()?;
    /// assert_eq!((usage.blobs, usage.bytes), (2, 21));
    /// let in_b = &usage.repositories[1];
    /// assert_eq!((in_b.bytes, in_b.unique_bytes, in_b.shared_bytes), (21, 9, 12));
    /// // No manifest references either blob yet.
    /// assert_eq!(usage.garbage_bytes, 21);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn usage(&self) -> Result<Usage> {
        ops::usage::usage(&self.core)
    }

    /// Checks the store (A2): every blob record has its file, of the recorded size and (with
    /// `verify_digests`) the right digest; every blob link has a blob; every reference of
    /// every manifest, live or in the recycle bin, resolves; and no file lies under `blobs/`,
    /// `tmp/` or `uploads/` that nothing names. With `repair`, removes those files and the
    /// dangling links, safely while the registry is in use; missing and corrupt blobs are
    /// only reported.
    ///
    /// Pushes, pulls and deletes go on while it runs; a collection waits for it to finish.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::NestedWrite`] inside a [`Batch`](crate::Batch) of this store, and
    /// [`Error::Io`], [`Error::Database`] or [`Error::Corrupt`] when the disk or the database
    /// fails. Problems found are in the report, not errors.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use std::time::Duration;
    /// use ocistore::{FsckOptions, Problem, Registry};
    ///
    /// let registry = Registry::builder().grace_period(Duration::ZERO).open(dir.path())?;
    /// registry.repository("app")?.put_blob_sha256(b"a layer")?;
    /// let stray = registry.path().join("tmp/left-by-a-crash");
    /// std::fs::write(&stray, b"half a layer")?;
    /// let report = registry.fsck(&FsckOptions::default().repair(true))?;
    /// assert_eq!(report.problems, [Problem::TempFile { path: stray }]);
    /// assert_eq!((report.blobs_checked, report.repaired), (1, 1));
    /// assert!(registry.fsck(&FsckOptions::default())?.problems.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fsck(&self, options: &FsckOptions) -> Result<FsckReport> {
        ops::fsck::fsck(&self.core, options)
    }

    /// Whether the store can take writes, and if not why (C4, C5), after trying what recovers
    /// it: a database closed by an I/O error is reopened, and a reserve released on a full disk
    /// is taken back if there is room again. Cheap enough for a health check to call often.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let registry = ocistore::Registry::open(dir.path())?;
    /// let health = registry.health();
    /// assert!(health.writable && !health.storage_full && health.problem.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn health(&self) -> Health {
        ops::space::health(&self.core)
    }

    /// Runs `f` in one write transaction: every call made on the [`Batch`] commits together
    /// with one fsync, or not at all if `f` or any call fails (C1).
    ///
    /// Inside `f`, write through the batch: a write through a `Repository` of the same store
    /// fails with [`Error::NestedWrite`](crate::Error::NestedWrite) (it would otherwise wait
    /// for this batch forever). Reads through a `Repository` see the store as it was before
    /// the batch.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::NestedWrite`] if this thread already has a batch open on this store,
    /// [`Error::StorageFull`] while the disk is full, any error `f` returns (such as one of a call
    /// on the batch), and [`Error::Io`], [`Error::Database`] or [`Error::Corrupt`] when the disk or
    /// the database fails.
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
        let core = &*self.core;
        let _open = OpenMark::new(core)?;
        // A batch may add anything: refused on a full disk, where the single calls that free
        // space still run.
        core.room()?;
        let txn = core.db.begin()?;
        let out = txn.tx(core.now()).and_then(|tx| {
            let mut batch = Batch::new(tx, core);
            let out = f(&mut batch)?;
            batch.tx().finish()?;
            Ok(out)
        });
        core.space.watch(txn.end(true, out))
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("path", &self.core.dir)
            .finish_non_exhaustive()
    }
}
