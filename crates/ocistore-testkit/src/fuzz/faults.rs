//! Fault injection: a blob store that fails its writes, or leaves a crash image, on command.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ocistore::{
    BlobStore, Digest, DirectoryStore, Entry, Error, Result, UploadCheckpoint, UploadLock,
    UploadMark,
};

/// The message of every injected failure's [`std::io::Error`].
pub const INJECTED: &str = "write failure injected by ocistore_testkit::Faults";

/// A switch that makes a store's blob writes fail, or photographs the store as a crash would
/// leave it, shared by a test and the [`FaultyStore`] it opens the registry with
/// ([`Faults::directory_store`], [`RegistryBuilder::blob_store`](ocistore::RegistryBuilder::blob_store)).
/// Clones share one state.
///
/// A *write* is one call that would put bytes into the blob store's files: a blob put that
/// writes a new file ([`Repository::put_blob`](ocistore::Repository::put_blob), the same in a
/// [`Batch`](ocistore::Batch), [`Repository::put_blob_sha256`](ocistore::Repository::put_blob_sha256)),
/// the creation of an upload session's file ([`Repository::start_upload`](ocistore::Repository::start_upload)),
/// an append to it ([`Upload::append`](ocistore::Upload::append), `append_at`), and the move of a
/// finished upload into the blob store ([`Upload::finish`](ocistore::Upload::finish)). A put of a
/// blob the store holds already, or a finish whose blob exists, writes no file and is no write.
///
/// An armed failure makes the write fail with [`Error::Io`] (its source's message is
/// [`INJECTED`]) before anything is written: the call fails as if the disk had refused, and
/// stores nothing. The store itself is not harmed: the next call works.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use ocistore::{Error, Registry};
/// use ocistore_testkit::Faults;
/// let faults = Faults::new();
/// let registry = Registry::builder()
///     .blob_store(faults.directory_store(dir.path()))
///     .open(dir.path())?;
/// let repo = registry.repository("app")?;
/// faults.fail_next_writes(1);
/// assert!(matches!(repo.put_blob_sha256(b"layer"), Err(Error::Io { .. })));
/// assert_eq!(faults.injected(), 1);
/// repo.put_blob_sha256(b"layer")?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Faults {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    /// Writes to let through before the failures start.
    skip: u64,
    /// Writes to fail once `skip` is spent.
    fail: u64,
    /// A crash image to take at the write after this many more: (writes to let by, where).
    image_at: Option<(u64, PathBuf)>,
    /// The crash image taken since the last arming.
    image: Option<PathBuf>,
    writes: u64,
    injected: u64,
    /// Every write fails as on a full disk.
    disk_full: bool,
}

impl Faults {
    /// A handle with nothing armed.
    #[must_use]
    pub fn new() -> Faults {
        Faults::default()
    }

    /// A [`DirectoryStore`] in `dir` whose writes obey this switch: give it to
    /// [`RegistryBuilder::blob_store`](ocistore::RegistryBuilder::blob_store) with the same `dir`.
    #[must_use]
    pub fn directory_store(&self, dir: impl Into<PathBuf>) -> FaultyStore {
        let root = dir.into();
        self.store(Arc::new(DirectoryStore::new(&root)), root)
    }

    /// `inner` (any blob store, such as one on object storage), its writes obeying this
    /// switch; crash images copy `root`, the registry's directory.
    #[must_use]
    pub fn store(&self, inner: Arc<dyn BlobStore>, root: impl Into<PathBuf>) -> FaultyStore {
        FaultyStore {
            inner,
            root: root.into(),
            faults: self.clone(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock left the counters whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next `n` writes fail.
    pub fn fail_next_writes(&self, n: u64) {
        self.fail_writes_after(0, n);
    }

    /// The next `skip` writes go through, then `n` fail.
    pub fn fail_writes_after(&self, skip: u64, n: u64) {
        let mut s = self.state();
        s.skip = skip;
        s.fail = n;
    }

    /// Just before the write that follows the next `skip` writes, copies the store's whole
    /// directory to `into` (which must not exist or be empty), as a process killed at that
    /// moment would leave it: the database without a clean shutdown, a transaction maybe
    /// half-written, files of the call already in place. Then the write goes on. Open a store
    /// on `into` to see what a restart after such a crash finds ([`crash_image`](Faults::crash_image)
    /// tells whether the write came).
    pub fn crash_image_at(&self, skip: u64, into: impl Into<PathBuf>) {
        let mut s = self.state();
        s.image_at = Some((skip, into.into()));
        s.image = None;
    }

    /// Where the crash image armed by [`crash_image_at`](Faults::crash_image_at) was taken,
    /// once its write came.
    pub fn crash_image(&self) -> Option<PathBuf> {
        self.state().image.clone()
    }

    /// Disarms every failure and crash image still pending; the counters stay.
    pub fn clear(&self) {
        let mut s = self.state();
        s.skip = 0;
        s.fail = 0;
        s.image_at = None;
        s.image = None;
        s.disk_full = false;
    }

    /// While `full`, every write fails as on a full disk, with [`Error::StorageFull`] (C4);
    /// once off again, writes go through. [`clear`](Faults::clear) turns it off too.
    pub fn set_disk_full(&self, full: bool) {
        self.state().disk_full = full;
    }

    /// Whether a failure is still armed.
    pub fn armed(&self) -> bool {
        self.state().fail > 0
    }

    /// How many writes the stores opened with this handle have begun, failed ones included.
    pub fn writes(&self) -> u64 {
        self.state().writes
    }

    /// How many writes have failed by injection.
    pub fn injected(&self) -> u64 {
        self.state().injected
    }

    /// Called by the blob store before each write to `path` of the store in `root`: takes the
    /// armed crash image, and fails if a failure is due.
    fn before_write(&self, root: &Path, path: &Path) -> Result<()> {
        let mut s = self.state();
        s.writes += 1;
        if let Some((skip, into)) = s.image_at.take() {
            if skip == 0 {
                copy_dir(root, &into).unwrap_or_else(|e| {
                    panic!(
                        "taking a crash image of {} into {}: {e}",
                        root.display(),
                        into.display()
                    )
                });
                s.image = Some(into);
            } else {
                s.image_at = Some((skip - 1, into));
            }
        }
        if s.disk_full {
            s.injected += 1;
            return Err(Error::StorageFull {
                path: path.to_owned(),
            });
        }
        if s.fail == 0 {
            return Ok(());
        }
        if s.skip > 0 {
            s.skip -= 1;
            return Ok(());
        }
        s.fail -= 1;
        s.injected += 1;
        Err(Error::Io {
            path: path.to_owned(),
            source: std::io::Error::other(INJECTED),
        })
    }
}

/// Whether `error` is a failure injected by a [`Faults`] handle.
pub fn is_injected(error: &Error) -> bool {
    matches!(error, Error::Io { source, .. } if source.to_string() == INJECTED)
}

/// Copies the directory `from` into `to` (created if missing), recursively: a store's crash
/// image, or a copy of a closed store.
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// A blob store ([`DirectoryStore`] or any other) that fails, or leaves a crash image, when its
/// [`Faults`] say so: the test kit's implementation of the core's [`BlobStore`] trait, outside
/// the core.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn BlobStore>,
    root: PathBuf,
    faults: Faults,
}

impl FaultyStore {
    fn before_write(&self, what: String) -> Result<()> {
        self.faults.before_write(&self.root, &self.root.join(what))
    }
}

impl BlobStore for FaultyStore {
    fn open(&self, dir: &Path, alone: bool) -> Result<()> {
        self.inner.open(dir, alone)
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    fn put(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        // A blob already stored writes nothing, and is no write.
        if !self.inner.contains(digest)? {
            self.before_write(format!("blobs/{digest}"))?;
        }
        self.inner.put(digest, bytes)
    }

    fn puts_known_blobs(&self) -> bool {
        self.inner.puts_known_blobs()
    }

    fn contains(&self, digest: &Digest) -> Result<bool> {
        self.inner.contains(digest)
    }

    fn size(&self, digest: &Digest) -> Result<Option<u64>> {
        self.inner.size(digest)
    }

    fn read(&self, digest: &Digest, start: u64, end: u64) -> Result<Option<Box<dyn Read + Send>>> {
        self.inner.read(digest, start, end)
    }

    fn delete(&self, digest: &Digest) -> Result<bool> {
        self.inner.delete(digest)
    }

    fn delete_many(&self, digests: &[Digest]) -> Result<()> {
        self.inner.delete_many(digests)
    }

    fn read_parallelism(&self) -> usize {
        self.inner.read_parallelism()
    }

    fn create_upload(&self, id: &str) -> Result<()> {
        self.before_write(format!("uploads/{id}"))?;
        self.inner.create_upload(id)
    }

    fn append_upload(
        &self,
        id: &str,
        offset: u64,
        chunk: &[u8],
        mark: Option<&UploadMark>,
    ) -> Result<Option<UploadMark>> {
        self.before_write(format!("uploads/{id}"))?;
        self.inner.append_upload(id, offset, chunk, mark)
    }

    fn upload_checkpoint(
        &self,
        id: &str,
        offset: u64,
        mark: Option<&UploadMark>,
    ) -> Result<UploadCheckpoint> {
        self.inner.upload_checkpoint(id, offset, mark)
    }

    fn upload_exists(&self, id: &str) -> Result<bool> {
        self.inner.upload_exists(id)
    }

    fn read_upload(&self, id: &str, start: u64) -> Result<Option<Box<dyn Read + Send>>> {
        self.inner.read_upload(id, start)
    }

    fn finish_upload(
        &self,
        id: &str,
        digest: &Digest,
        len: u64,
        mark: Option<&UploadMark>,
        verified: bool,
    ) -> Result<()> {
        self.before_write(format!("blobs/{digest}"))?;
        self.inner.finish_upload(id, digest, len, mark, verified)
    }

    fn lock_upload(&self, id: &str) -> Result<Option<UploadLock>> {
        self.inner.lock_upload(id)
    }

    fn delete_upload(&self, id: &str) -> Result<bool> {
        self.inner.delete_upload(id)
    }

    fn uploads(&self) -> Result<Vec<String>> {
        self.inner.uploads()
    }

    fn entries(&self, visit: &mut dyn FnMut(Vec<Entry>) -> Result<()>) -> Result<()> {
        self.inner.entries(visit)
    }

    fn remove_entry(&self, location: &Path) -> Result<bool> {
        self.inner.remove_entry(location)
    }
}
