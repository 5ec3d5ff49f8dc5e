//! The blob store on a local directory: `blobs/<algorithm>/<first two hex>/<hex>`,
//! `uploads/<session id>` and `tmp/`.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{BlobStore, Entry, EntryKind, UploadLock, UploadMark};
use crate::values::{Algorithm, Digest, Error, IoContext, Result, hash_reader, verify};

/// Below this size hashing on a second thread costs more than it saves.
/// What [`BlobStore::location`] says of a store in the registry's own directory.
pub(crate) const DIRECTORY_LOCATION: &str = "directory";

const PARALLEL_HASH_MIN: usize = 1 << 20;

/// A blob's writeback starts every this many bytes, while the rest is still being copied.
const WRITEBACK_CHUNK: usize = 4 << 20;

/// Blobs as files in a directory, each written to `tmp/`, fsynced and renamed into place.
#[derive(Debug, Clone)]
pub struct DirectoryStore {
    root: PathBuf,
    blobs: PathBuf,
    uploads: PathBuf,
    tmp: PathBuf,
}

impl DirectoryStore {
    /// The store in directory `root` (a registry's own directory by default). Nothing is
    /// touched on disk until a registry opens on it.
    #[must_use]
    pub fn new(root: impl Into<PathBuf>) -> DirectoryStore {
        let root = root.into();
        DirectoryStore {
            blobs: root.join("blobs"),
            uploads: root.join("uploads"),
            tmp: root.join("tmp"),
            root,
        }
    }

    /// The directory the store is in.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.blobs
            .join(digest.algorithm().name())
            .join(&hex[..2])
            .join(hex)
    }

    fn upload_path(&self, id: &str) -> PathBuf {
        self.uploads.join(id)
    }

    /// The blob whose file `path` is, if it is a well-named file under `blobs/`.
    fn digest_of(&self, path: &Path) -> Option<Digest> {
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

    /// Renames a complete, fsynced file into the blob's place. Its modification time becomes
    /// now, so that `fsck` does not take it for an old stray before its record commits.
    fn promote(&self, from: &Path, digest: &Digest) -> Result<()> {
        let target = self.path(digest);
        File::options()
            .write(true)
            .open(from)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()))
            .at(from)?;
        fs::rename(from, &target).at(&target)?;
        sync_dir(target.parent().unwrap_or(&self.blobs))
    }
}

impl BlobStore for DirectoryStore {
    fn open(&self, _dir: &Path, alone: bool) -> Result<()> {
        for alg in Algorithm::ALL {
            let alg_dir = self.blobs.join(alg.name());
            if alg_dir.join("ff").is_dir() {
                continue;
            }
            for prefix in 0..=255u8 {
                let d = alg_dir.join(format!("{prefix:02x}"));
                fs::create_dir_all(&d).at(&d)?;
            }
            sync_dir(&alg_dir)?;
            sync_dir(&self.blobs)?;
        }
        for d in [&self.uploads, &self.tmp] {
            fs::create_dir_all(d).at(d)?;
        }
        sync_dir(&self.root)?;
        if !alone {
            return Ok(());
        }
        for entry in fs::read_dir(&self.tmp).at(&self.tmp)? {
            let path = entry.at(&self.tmp)?.path();
            fs::remove_file(&path).at(&path)?;
        }
        Ok(())
    }

    fn put(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        let target = self.path(digest);
        if target.exists() {
            // Files appear only by rename after verification, so one that exists is whole.
            return verify(digest, digest.algorithm().digest(bytes));
        }
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

    fn location(&self) -> String {
        DIRECTORY_LOCATION.to_owned()
    }

    fn contains(&self, digest: &Digest) -> Result<bool> {
        Ok(self.path(digest).exists())
    }

    fn size(&self, digest: &Digest) -> Result<Option<u64>> {
        let path = self.path(digest);
        match fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            found => Ok(Some(found.at(path)?.len())),
        }
    }

    fn read(&self, digest: &Digest, start: u64, end: u64) -> Result<Option<Box<dyn Read + Send>>> {
        let path = self.path(digest);
        let mut file = match File::open(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            opened => opened.at(&path)?,
        };
        if start > 0 {
            file.seek(SeekFrom::Start(start)).at(&path)?;
        }
        Ok(Some(Box::new(file.take(end - start))))
    }

    fn delete(&self, digest: &Digest) -> Result<bool> {
        remove_if_present(&self.path(digest))
    }

    fn create_upload(&self, id: &str) -> Result<()> {
        let path = self.upload_path(id);
        OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .at(&path)?;
        sync_dir(&self.uploads)
    }

    fn append_upload(
        &self,
        id: &str,
        offset: u64,
        chunk: &[u8],
        _mark: Option<&UploadMark>,
    ) -> Result<Option<UploadMark>> {
        let path = self.upload_path(id);
        let file = OpenOptions::new().write(true).open(&path).at(&path)?;
        if file.metadata().at(&path)?.len() != offset {
            file.set_len(offset).at(&path)?;
        }
        file.write_all_at(chunk, offset).at(&path)?;
        file.sync_data().at(&path)?;
        Ok(None)
    }

    fn read_upload(&self, id: &str, start: u64) -> Result<Option<Box<dyn Read + Send>>> {
        let path = self.upload_path(id);
        let mut file = match File::open(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            opened => opened.at(&path)?,
        };
        if start > 0 {
            file.seek(SeekFrom::Start(start)).at(&path)?;
        }
        Ok(Some(Box::new(file)))
    }

    fn finish_upload(
        &self,
        id: &str,
        digest: &Digest,
        len: u64,
        _mark: Option<&UploadMark>,
        verified: bool,
    ) -> Result<()> {
        let path = self.upload_path(id);
        let file = OpenOptions::new().write(true).open(&path).at(&path)?;
        if !verified {
            let (hasher, _) = hash_reader(&mut (&file).take(len), digest.algorithm()).at(&path)?;
            verify(digest, hasher.finish())?;
        }
        if file.metadata().at(&path)?.len() > len {
            // Durable before the rename: a crash must not leave the torn tail in the blob.
            file.set_len(len).at(&path)?;
            file.sync_all().at(&path)?;
        }
        drop(file);
        self.promote(&path, digest)
    }

    fn lock_upload(&self, id: &str) -> Result<Option<UploadLock>> {
        let path = self.upload_path(id);
        let file = match File::open(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            opened => opened.at(&path)?,
        };
        // A flock: it belongs to this open file, so it excludes other handles of this process
        // as it does other processes, and goes with a process that dies holding it.
        file.lock().at(&path)?;
        Ok(Some(UploadLock::new(file)))
    }

    fn delete_upload(&self, id: &str) -> Result<bool> {
        remove_if_present(&self.upload_path(id))
    }

    fn uploads(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.uploads).at(&self.uploads)? {
            if let Some(id) = entry.at(&self.uploads)?.file_name().to_str() {
                ids.push(id.to_owned());
            }
        }
        Ok(ids)
    }

    fn entries(&self, visit: &mut dyn FnMut(Vec<Entry>) -> Result<()>) -> Result<()> {
        walk(&self.blobs, &mut |files| {
            visit(
                files
                    .into_iter()
                    .map(|(path, modified)| {
                        let kind = self
                            .digest_of(&path)
                            .map_or(EntryKind::Unknown, EntryKind::Blob);
                        Entry::new(kind, path, modified)
                    })
                    .collect(),
            )
        })?;
        walk(&self.tmp, &mut |files| {
            visit(
                files
                    .into_iter()
                    .map(|(path, modified)| Entry::new(EntryKind::Temporary, path, modified))
                    .collect(),
            )
        })?;
        walk(&self.uploads, &mut |files| {
            visit(
                files
                    .into_iter()
                    .map(|(path, modified)| {
                        let id = (path.parent() == Some(&self.uploads))
                            .then(|| path.file_name()?.to_str())
                            .flatten();
                        let kind = id.map_or(EntryKind::UnknownUpload, |id| {
                            EntryKind::Upload(id.to_owned())
                        });
                        Entry::new(kind, path, modified)
                    })
                    .collect(),
            )
        })
    }

    fn remove_entry(&self, location: &Path) -> Result<bool> {
        if !location.starts_with(&self.root) {
            return Ok(false);
        }
        remove_if_present(location)
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
fn remove_if_present(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::Io {
            path: path.to_owned(),
            source: e,
        }),
    }
}

/// Makes a directory's entries (a rename, a new file) durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Calls `visit` with the files of `dir` and of every directory under it, a directory at a
/// time, in name order, each with its modification time. A file gone since the listing is
/// left out.
fn walk(
    dir: &Path,
    visit: &mut impl FnMut(Vec<(PathBuf, std::time::SystemTime)>) -> Result<()>,
) -> Result<()> {
    let mut entries = fs::read_dir(dir)
        .at(dir)?
        .collect::<std::io::Result<Vec<_>>>()
        .at(dir)?;
    entries.sort_by_key(fs::DirEntry::file_name);
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for entry in entries {
        let path = entry.path();
        match entry.metadata() {
            Ok(meta) if meta.is_dir() => dirs.push(path),
            Ok(meta) => files.push((path, meta.modified().at(entry.path())?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Io { path, source: e }),
        }
    }
    visit(files)?;
    for dir in dirs {
        walk(&dir, visit)?;
    }
    Ok(())
}
