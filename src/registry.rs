//! The registry: opening a store, its settings, repositories and transactions (SPEC C1, C3).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable};

use crate::blob::BlobStore;
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::error::{Error, Result};
use crate::repository::{Repository, RepositoryRecord, validate_name};
use crate::tables::{self, REPOSITORIES};
use crate::upload::UploadState;

/// The on-disk format this build reads and writes; stored in the `meta` table. Version 1
/// stores are upgraded in place when opened: version 2 adds the `untagged` index.
pub const FORMAT_VERSION: u32 = 2;

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
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) db: Database,
    pub(crate) dir: PathBuf,
    pub(crate) blobs: BlobStore,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) upload_timeout: Duration,
    pub(crate) autopurge_interval: Duration,
    pub(crate) grace_period: Duration,
    /// Held by the collection running, so that two never overlap.
    pub(crate) collector: Mutex<()>,
    /// Upload sessions touched since open, with their running hash; others are rebuilt from
    /// their file on resume.
    pub(crate) uploads: Mutex<HashMap<String, Arc<Mutex<UploadState>>>>,
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
    #[cfg(feature = "testkit")]
    faults: crate::testkit::Faults,
}

impl Default for RegistryBuilder {
    fn default() -> Self {
        RegistryBuilder {
            clock: Arc::new(SystemClock),
            cache_size: 64 << 20,
            upload_timeout: Duration::from_secs(24 * 3600),
            autopurge_interval: Duration::from_secs(24 * 3600),
            grace_period: Duration::from_secs(3600),
            #[cfg(feature = "testkit")]
            faults: crate::testkit::Faults::default(),
        }
    }
}

impl RegistryBuilder {
    /// The clock every timestamp comes from (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The redb page cache in bytes (default 64 MiB: it bounds most of the memory a store uses, a collection included; a larger one speeds up reads of a big store).
    pub fn cache_size(mut self, bytes: usize) -> Self {
        self.cache_size = bytes;
        self
    }

    /// How long an upload session may live, from its start, before it can no longer be
    /// appended to, finished or resumed (default 24 hours). Must be at least one second.
    pub fn upload_timeout(mut self, timeout: Duration) -> Self {
        self.upload_timeout = timeout;
        self
    }

    /// How often autopurge runs on the retention clock (default 24 hours, at least one
    /// second); see [`Registry::run_due`] (S4).
    pub fn autopurge_interval(mut self, interval: Duration) -> Self {
        self.autopurge_interval = interval;
        self
    }

    /// How old an unreferenced blob or blob link must be before the collector removes it
    /// (default one hour; zero is allowed): a client that just uploaded a layer has not pushed
    /// its manifest yet (G1, G3). A [`CollectOptions`](crate::CollectOptions) can override it.
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace_period = grace;
        self
    }

    /// Fault injection for tests (feature `testkit`): the store's blob writes fail, or leave a
    /// crash image, when `faults` says so; see [`Faults`](crate::testkit::Faults).
    #[cfg(feature = "testkit")]
    pub fn faults(mut self, faults: crate::testkit::Faults) -> Self {
        self.faults = faults;
        self
    }

    /// Opens the store in `dir`, creating it if it does not exist.
    ///
    /// Fails with [`Error::AlreadyOpen`] if another handle or process has it open, and with
    /// [`Error::UnsupportedFormat`] if it was written in another on-disk format.
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
        fs::create_dir_all(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        let db = redb::Builder::new()
            .set_cache_size(self.cache_size)
            .create(dir.join(DATABASE_FILE))
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    Error::AlreadyOpen { path: dir.clone() }
                }
                e => e.into(),
            })?;
        check_format(&db, &dir)?;
        // Only the holder of the database lock gets here, so no other writer uses the files.
        let blobs = BlobStore::open(&dir)?;
        #[cfg(feature = "testkit")]
        let blobs = BlobStore {
            faults: self.faults,
            ..blobs
        };
        let registry = Registry {
            inner: Arc::new(Inner {
                db,
                dir,
                blobs,
                clock: self.clock,
                upload_timeout: self.upload_timeout,
                autopurge_interval: self.autopurge_interval,
                grace_period: self.grace_period,
                collector: Mutex::default(),
                uploads: Mutex::default(),
            }),
        };
        registry.reconcile_uploads()?;
        Ok(registry)
    }
}

/// Writes the format version into a new store, or checks the one an existing store has.
fn check_format(db: &Database, dir: &Path) -> Result<()> {
    let txn = db.begin_write()?;
    {
        let mut t = tables::Tables::open(&txn)?;
        // A collection the last process was running when it stopped is over.
        t.meta.remove(crate::collector::COLLECTING)?;
        t.gc_touched.retain(|_, _| false)?;
        let found = t
            .meta
            .get("format_version")?
            .map(|v| <[u8; 4]>::try_from(v.value()).map(u32::from_le_bytes));
        let current = FORMAT_VERSION.to_le_bytes();
        match found {
            None => {
                t.meta.insert("format_version", current.as_slice())?;
            }
            Some(Ok(FORMAT_VERSION)) => {}
            Some(Ok(1)) => {
                crate::retention::index_untagged_manifests(&mut t)?;
                t.meta.insert("format_version", current.as_slice())?;
            }
            Some(Ok(found)) => {
                return Err(Error::UnsupportedFormat {
                    path: dir.to_path_buf(),
                    found,
                    supported: FORMAT_VERSION,
                });
            }
            Some(Err(_)) => {
                return Err(Error::Corrupt {
                    table: "meta",
                    reason: "format_version is not 4 bytes".into(),
                });
            }
        }
    }
    txn.commit()?;
    Ok(())
}

impl Registry {
    /// Opens the store in `dir` with default settings, creating it if needed.
    pub fn open(dir: impl AsRef<Path>) -> Result<Registry> {
        RegistryBuilder::default().open(dir)
    }

    /// Settings for opening a store.
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// Now, by the registry's clock.
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// A handle on the repository `name` (N1). The repository comes into being with the first
    /// blob or manifest pushed or mounted into it.
    pub fn repository(&self, name: &str) -> Result<Repository> {
        validate_name(name)?;
        Ok(Repository::new(self.clone(), name.to_owned()))
    }

    /// Repository names in lexical order, paginated the OCI way (P7).
    pub fn repositories(&self, page: &Page) -> Result<Vec<String>> {
        if let Some(last) = &page.last {
            validate_name(last)?;
        }
        let txn = self.inner.db.begin_read()?;
        let table = txn.open_table(REPOSITORIES)?;
        let start = page.last.as_deref().unwrap_or("");
        let mut out = Vec::new();
        for row in table.range(start..)? {
            if out.len() == page.limit() {
                break;
            }
            let (name, record) = row?;
            let record: RepositoryRecord = tables::decode("repositories", record.value())?;
            if record.deleted.is_none() && page.last.as_deref() != Some(name.value()) {
                out.push(name.value().to_owned());
            }
        }
        Ok(out)
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("path", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

/// OCI-style pagination: at most `n` entries after `last`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// The most entries to return; `None` for all.
    pub n: Option<usize>,
    /// Return entries strictly after this one.
    pub last: Option<String>,
}

impl Page {
    /// Every entry.
    pub fn all() -> Page {
        Page::default()
    }

    /// The first `n` entries.
    pub fn first(n: usize) -> Page {
        Page {
            n: Some(n),
            last: None,
        }
    }

    /// At most `n` entries after `last`.
    pub fn after(last: impl Into<String>, n: usize) -> Page {
        Page {
            n: Some(n),
            last: Some(last.into()),
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.n.unwrap_or(usize::MAX)
    }
}
