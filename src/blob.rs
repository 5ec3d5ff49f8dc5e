//! The blob store: content-addressed files, written once per registry and linked into
//! repositories (SPEC P1, P2, C2).

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use redb::{ReadableDatabase, ReadableTable};

use crate::batch::{Batch, check_no_batch};
use crate::digest::{Algorithm, Digest};
use crate::error::{Error, IoContext, Result};
use crate::lock::{Item, Need};
use crate::registry::Page;
use crate::repository::{Repository, is_live, repository_record};
use crate::tables::{BLOB_LINKS, BLOBS, REPOSITORIES, page_under};

/// Below this size hashing on a second thread costs more than it saves.
const PARALLEL_HASH_MIN: usize = 1 << 20;

/// The files: `blobs/<algorithm>/<first two hex>/<hex>`, `uploads/<session id>` and `tmp/`.
pub(crate) struct BlobStore {
    pub(crate) blobs: PathBuf,
    pub(crate) uploads: PathBuf,
    pub(crate) tmp: PathBuf,
    /// Failures a test armed (feature `testkit`).
    #[cfg(feature = "testkit")]
    pub(crate) faults: crate::testkit::Faults,
}

impl BlobStore {
    /// Creates the directories a store needs and empties `tmp/`, whose files belong to writes
    /// that never finished.
    pub(crate) fn open(dir: &Path) -> Result<BlobStore> {
        let store = BlobStore {
            blobs: dir.join("blobs"),
            uploads: dir.join("uploads"),
            tmp: dir.join("tmp"),
            #[cfg(feature = "testkit")]
            faults: Default::default(),
        };
        for alg in Algorithm::ALL {
            let alg_dir = store.blobs.join(alg.name());
            if alg_dir.join("ff").is_dir() {
                continue;
            }
            for prefix in 0..=255u8 {
                let d = alg_dir.join(format!("{prefix:02x}"));
                fs::create_dir_all(&d).at(&d)?;
            }
            sync_dir(&alg_dir)?;
            sync_dir(&store.blobs)?;
        }
        for d in [&store.uploads, &store.tmp] {
            fs::create_dir_all(d).at(d)?;
        }
        sync_dir(dir)?;
        for entry in fs::read_dir(&store.tmp).at(&store.tmp)? {
            let path = entry.at(&store.tmp)?.path();
            fs::remove_file(&path).at(&path)?;
        }
        Ok(store)
    }

    /// Called before every write of blob or upload bytes, to `path`. With the feature
    /// `testkit` it fails here, before anything is written, when a test armed a failure.
    #[inline]
    pub(crate) fn before_write(&self, path: &Path) -> Result<()> {
        #[cfg(feature = "testkit")]
        if let Some(root) = self.blobs.parent() {
            self.faults.before_write(root, path)?;
        }
        let _ = path;
        Ok(())
    }

    pub(crate) fn path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.blobs
            .join(digest.algorithm().name())
            .join(&hex[..2])
            .join(hex)
    }

    /// The blob whose file `path` is, if it is a well-named file under `blobs/`.
    pub(crate) fn digest_of(&self, path: &Path) -> Option<Digest> {
        let algorithm = path
            .strip_prefix(&self.blobs)
            .ok()?
            .iter()
            .next()?
            .to_str()?;
        let hex = path.file_name()?.to_str()?;
        let digest = Digest::parse(&format!("{algorithm}:{hex}")).ok()?;
        (self.path(&digest) == path).then_some(digest)
    }

    /// Verifies that `bytes` hash to `digest` and makes them the blob's file: written to
    /// `tmp/`, fsynced, renamed into place, directory fsynced (C2). On a mismatch nothing stays.
    pub(crate) fn ingest(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        let target = self.path(digest);
        if target.exists() {
            // Files appear only by rename after verification, so one that exists is whole.
            return verify(digest, digest.algorithm().digest(bytes));
        }
        self.before_write(&target)?;
        let tmp = self.tmp.join(uuid::Uuid::new_v4().simple().to_string());
        let (written, actual) = std::thread::scope(|s| {
            let hashing = (bytes.len() >= PARALLEL_HASH_MIN)
                .then(|| s.spawn(|| digest.algorithm().digest(bytes)));
            let written = write_synced(&tmp, bytes);
            let actual = match hashing {
                Some(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                None => digest.algorithm().digest(bytes),
            };
            (written, actual)
        });
        if let Err(e) = written.and_then(|()| verify(digest, actual)) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        self.promote(&tmp, digest)
    }

    /// Renames a complete, fsynced file into the blob's place. Its modification time becomes
    /// now, so that `fsck` does not take it for an old stray before its record commits.
    pub(crate) fn promote(&self, from: &Path, digest: &Digest) -> Result<()> {
        let target = self.path(digest);
        File::options()
            .write(true)
            .open(from)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()))
            .at(from)?;
        fs::rename(from, &target).at(&target)?;
        sync_dir(target.parent().expect("blob paths have a parent"))
    }

    /// The blob's file; one a collection removed since the caller read its record is
    /// [`Error::BlobUnknown`] in `repo` (G2).
    fn open_file(&self, repo: &str, digest: &Digest) -> Result<File> {
        let path = self.path(digest);
        match File::open(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::BlobUnknown {
                repository: repo.to_owned(),
                digest: digest.clone(),
            }),
            opened => opened.at(path),
        }
    }
}

fn verify(expected: &Digest, actual: Digest) -> Result<()> {
    if &actual == expected {
        Ok(())
    } else {
        Err(Error::DigestMismatch {
            expected: expected.clone(),
            actual,
        })
    }
}

/// Writes `bytes` to a new file and fsyncs it. Each chunk's writeback starts as soon as it is
/// copied, so the disk works while the next chunk is copied and the final fsync has little
/// left to wait for: the copy and the flush overlap instead of following each other.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).at(path)?;
    let mut offset = 0;
    for chunk in bytes.chunks(WRITEBACK_CHUNK) {
        f.write_all(chunk).at(path)?;
        start_writeback(&f, offset, chunk.len());
        offset += chunk.len();
    }
    f.sync_all().at(path)
}

const WRITEBACK_CHUNK: usize = 4 << 20;

#[cfg(target_os = "linux")]
fn start_writeback(f: &File, offset: usize, len: usize) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: the call only reads its integer arguments and the descriptor, which `f` keeps
    // open for its duration. A failure is harmless: the fsync that follows does the work.
    unsafe {
        libc::sync_file_range(f.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_: &File, _: usize, _: usize) {}

/// Removes a file; one already gone is no error. Returns whether it was there.
pub(crate) fn remove_if_present(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::Io {
            path: path.to_owned(),
            source: e,
        }),
    }
}

/// A file of the store that no row named when it was found.
pub(crate) enum Unnamed {
    /// The file of a blob without a record.
    Blob(Digest),
    /// The file of an upload session without a row.
    Upload(String),
    /// A file no row can come to name: in `tmp/`, or badly named.
    Other(PathBuf),
}

/// Makes a directory's entries (a rename, a new file) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

impl Batch<'_> {
    /// Removes `file` unless a row names it now; returns whether it was there. Inside the
    /// write transaction the check is final: no put or upload can commit a row for the file
    /// before it is gone.
    pub(crate) fn remove_unnamed(&self, file: &Unnamed) -> Result<bool> {
        let store = &self.inner.blobs;
        let path = match file {
            Unnamed::Blob(digest) if self.t.blobs.get(digest.as_str())?.is_none() => {
                store.path(digest)
            }
            Unnamed::Upload(id) if self.t.uploads.get(id.as_str())?.is_none() => {
                store.uploads.join(id)
            }
            Unnamed::Other(path) => path.clone(),
            _ => return Ok(false),
        };
        remove_if_present(&path)
    }

    /// Stores `bytes` as blob `digest` and links it into `repo`, after checking that they hash
    /// to `digest` (P1). A blob already in the registry is not written again.
    pub fn put_blob(
        &mut self,
        repo: &Repository,
        digest: &Digest,
        bytes: impl AsRef<[u8]>,
    ) -> Result<()> {
        let bytes = bytes.as_ref();
        self.check_lock(repo.name(), &Item::Repository, Need::Write)?;
        let store = &self.inner.blobs;
        store.ingest(digest, bytes)?;
        self.link_blob(repo.name(), digest, bytes.len() as u64, || {
            store.ingest(digest, bytes)
        })
    }

    /// Stores `bytes` as a blob under their sha256 digest, links it into `repo` and returns
    /// the digest.
    pub fn put_blob_sha256(
        &mut self,
        repo: &Repository,
        bytes: impl AsRef<[u8]>,
    ) -> Result<Digest> {
        let digest = Algorithm::Sha256.digest(bytes.as_ref());
        self.put_blob(repo, &digest, bytes)?;
        Ok(digest)
    }

    /// Links blob `digest` of repository `from` into `repo` without copying it (P2).
    pub fn mount_blob(
        &mut self,
        repo: &Repository,
        from: &Repository,
        digest: &Digest,
    ) -> Result<()> {
        let source = repository_record(&self.t.repositories, from.name())?;
        if source.is_some_and(|r| r.deleted.is_some()) {
            return Err(Error::RepositorySoftDeleted {
                name: from.name().to_owned(),
            });
        }
        let size = {
            let links = &self.t.blob_links;
            let blobs = &self.t.blobs;
            linked_size(links, blobs, from.name(), digest)?
        };
        // The blob has a record, so its file is in place.
        self.link_blob(repo.name(), digest, size, || Ok(()))
    }

    /// Records a blob whose file the caller put in place and links it into `repo`. If the
    /// blob has no record and its file is gone — a collection swept it after the caller found
    /// the file there (G2) — `make_file` puts it back first: the store's lock is held, so no
    /// collection can take it again before the record commits.
    pub(crate) fn link_blob(
        &mut self,
        repo: &str,
        digest: &Digest,
        size: u64,
        make_file: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        self.check_lock(repo, &Item::Repository, Need::Write)?;
        let now = self.now.as_nanos();
        let blobs = &mut self.t.blobs;
        if blobs.get(digest.as_str())?.is_none() {
            if !self.inner.blobs.path(digest).exists() {
                make_file()?;
            }
            blobs.insert(digest.as_str(), (size, now))?;
        }
        self.t.blob_links.insert((repo, digest.as_str()), now)?;
        self.journal_blob(digest.as_str())?;
        self.ensure_repository(repo)
    }
}

/// The size of blob `digest` if it is linked into `repo`, else [`Error::BlobUnknown`].
pub(crate) fn linked_size(
    links: &impl ReadableTable<(&'static str, &'static str), u64>,
    blobs: &impl ReadableTable<&'static str, (u64, u64)>,
    repo: &str,
    digest: &Digest,
) -> Result<u64> {
    let unknown = || Error::BlobUnknown {
        repository: repo.to_owned(),
        digest: digest.clone(),
    };
    links.get((repo, digest.as_str()))?.ok_or_else(unknown)?;
    let size = blobs.get(digest.as_str())?.ok_or_else(unknown)?.value().0;
    Ok(size)
}

impl Repository {
    /// Stores `bytes` as blob `digest` in this repository after checking that they hash to
    /// `digest` (P1); a blob already in the registry is only linked.
    ///
    /// The bytes are written and fsynced before the write transaction begins, so other
    /// writers do not wait for the disk.
    pub fn put_blob(&self, digest: &Digest, bytes: impl AsRef<[u8]>) -> Result<()> {
        let bytes = bytes.as_ref();
        check_no_batch(self.registry())?;
        // Refused before the bytes are written, so a refusal leaves no file behind.
        self.check_writable()?;
        let store = &self.registry().inner.blobs;
        store.ingest(digest, bytes)?;
        self.registry().batch(|b| {
            b.link_blob(self.name(), digest, bytes.len() as u64, || {
                store.ingest(digest, bytes)
            })
        })
    }

    /// Stores `bytes` under their sha256 digest and returns it.
    pub fn put_blob_sha256(&self, bytes: impl AsRef<[u8]>) -> Result<Digest> {
        let digest = Algorithm::Sha256.digest(bytes.as_ref());
        self.put_blob(&digest, bytes)?;
        Ok(digest)
    }

    /// Links blob `digest` of repository `from` into this one (a cross-repository mount, P2).
    /// The blob must be linked to `from`.
    pub fn mount_blob(&self, from: &str, digest: &Digest) -> Result<()> {
        let from = self.registry().repository(from)?;
        self.registry().batch(|b| b.mount_blob(self, &from, digest))
    }

    /// The size of blob `digest`, if it is linked into this repository.
    pub fn blob_size(&self, digest: &Digest) -> Result<u64> {
        let txn = self.registry().inner.db.begin_read()?;
        // A soft-deleted repository's blobs are as gone as its manifests (S2).
        if !is_live(&txn.open_table(REPOSITORIES)?, self.name())? {
            return Err(Error::BlobUnknown {
                repository: self.name().to_owned(),
                digest: digest.clone(),
            });
        }
        linked_size(
            &txn.open_table(BLOB_LINKS)?,
            &txn.open_table(BLOBS)?,
            self.name(),
            digest,
        )
    }

    /// Digests of the blobs linked into this repository, in lexical order, paginated.
    pub fn blobs(&self, page: &Page) -> Result<Vec<Digest>> {
        if let Some(last) = &page.last {
            Digest::parse(last)?;
        }
        let txn = self.registry().inner.db.begin_read()?;
        if !is_live(&txn.open_table(REPOSITORIES)?, self.name())? {
            return Ok(Vec::new());
        }
        page_under(
            &txn.open_table(BLOB_LINKS)?,
            self.name(),
            page,
            |digest, _| Digest::stored(digest),
        )
    }

    /// The bytes of blob `digest`.
    pub fn blob(&self, digest: &Digest) -> Result<Bytes> {
        let mut reader = self.blob_reader(digest, ..)?;
        let mut buf = Vec::with_capacity(usize::try_from(reader.len()).unwrap_or(0));
        let path = self.registry().inner.blobs.path(digest);
        reader.read_to_end(&mut buf).at(path)?;
        Ok(buf.into())
    }

    /// A reader over `range` of blob `digest` (`..` for all of it).
    pub fn blob_reader(&self, digest: &Digest, range: impl RangeBounds<u64>) -> Result<BlobReader> {
        let size = self.blob_size(digest)?;
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => size,
        };
        if start > end || end > size {
            return Err(Error::InvalidRange { start, end, size });
        }
        let blobs = &self.registry().inner.blobs;
        let mut file = blobs.open_file(self.name(), digest)?;
        file.seek(SeekFrom::Start(start)).at(blobs.path(digest))?;
        Ok(BlobReader {
            file: file.take(end - start),
            len: end - start,
        })
    }
}

/// Reads a range of one blob.
#[derive(Debug)]
pub struct BlobReader {
    file: std::io::Take<File>,
    len: u64,
}

impl BlobReader {
    /// The number of bytes in the range.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.file.read(buf)
    }
}
