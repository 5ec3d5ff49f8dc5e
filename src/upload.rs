//! Streamed blob uploads: sessions that take chunks, report their offset, survive a restart
//! of the process and end in a verified blob (SPEC P1).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use redb::ReadableDatabase;

use crate::batch::check_no_batch;
use crate::blob::{remove_if_present, sync_dir};
use crate::clock::Timestamp;
use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{Error, IoContext, Result};
use crate::lock::{Item, Need};
use crate::registry::Registry;
use crate::repository::Repository;
use crate::tables::UPLOADS;

/// The in-process state of a session: its file and the running hash of what it holds.
pub(crate) struct UploadState {
    repository: String,
    started: Timestamp,
    file: File,
    offset: u64,
    /// sha256 of the bytes so far; a finish under another algorithm rereads the file.
    hasher: Hasher,
    /// Finished or cancelled: every further call answers `UploadUnknown`.
    closed: bool,
}

/// A streamed upload into one repository. Chunks are fsynced as they are appended, so a
/// session can be resumed with [`Repository::resume_upload`] after the process restarts, at
/// the offset it had reached.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use ocistore::{Algorithm, Registry};
/// let repo = Registry::open(dir.path())?.repository("app")?;
/// let upload = repo.start_upload()?;
/// upload.append(b"hello ")?;
/// assert_eq!(upload.append(b"world")?, 11);
/// let digest = Algorithm::Sha256.digest(b"hello world");
/// upload.finish(&digest)?;
/// assert_eq!(repo.blob(&digest)?, &b"hello world"[..]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Upload {
    registry: Registry,
    id: String,
    state: Arc<Mutex<UploadState>>,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Repository {
    /// Starts an upload session into this repository.
    pub fn start_upload(&self) -> Result<Upload> {
        let registry = self.registry();
        let inner = &registry.inner;
        check_no_batch(registry)?;
        self.check_writable()?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let path = inner.blobs.uploads.join(&id);
        inner.blobs.before_write(&path)?;
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .read(true)
            .open(&path)
            .at(&path)?;
        sync_dir(&inner.blobs.uploads)?;
        let started = registry.now();
        let recorded = registry.batch(|b| {
            b.check_lock(self.name(), &Item::Repository, Need::Write)?;
            b.t.uploads
                .insert(id.as_str(), (self.name(), started.as_nanos()))?;
            Ok(())
        });
        if let Err(e) = recorded {
            drop(file);
            remove_if_present(&path)?;
            return Err(e);
        }
        let state = Arc::new(Mutex::new(UploadState {
            repository: self.name().to_owned(),
            started,
            file,
            offset: 0,
            hasher: Algorithm::Sha256.hasher(),
            closed: false,
        }));
        lock(&inner.uploads).insert(id.clone(), state.clone());
        Ok(Upload {
            registry: registry.clone(),
            id,
            state,
        })
    }

    /// Resumes the upload session `id` of this repository, in this process or after a
    /// restart; its [`offset`](Upload::offset) tells where the next chunk goes.
    ///
    /// Sessions older than the registry's upload timeout are gone ([`Error::UploadUnknown`]).
    pub fn resume_upload(&self, id: &str) -> Result<Upload> {
        let registry = self.registry();
        let inner = &registry.inner;
        let unknown = || Error::UploadUnknown { id: id.to_owned() };
        let mut sessions = lock(&inner.uploads);
        let state = match sessions.get(id).cloned() {
            Some(state) => {
                // The sessions' lock is released before the session's is taken: `finish` and
                // `cancel` hold the session's and then take the sessions' (in `close`).
                drop(sessions);
                if lock(&state).repository != self.name() {
                    return Err(unknown());
                }
                state
            }
            None => {
                let started = {
                    let txn = inner.db.begin_read()?;
                    let row = txn.open_table(UPLOADS)?.get(id)?.ok_or_else(unknown)?;
                    let (repository, started) = row.value();
                    if repository != self.name() {
                        return Err(unknown());
                    }
                    Timestamp::from_nanos(started)
                };
                let state = Arc::new(Mutex::new(reopen(registry, id, self.name(), started)?));
                sessions.insert(id.to_owned(), state.clone());
                drop(sessions);
                state
            }
        };
        let upload = Upload {
            registry: registry.clone(),
            id: id.to_owned(),
            state,
        };
        drop(upload.open_state()?);
        Ok(upload)
    }
}

/// Rebuilds a session's state from its file, after a restart.
fn reopen(
    registry: &Registry,
    id: &str,
    repository: &str,
    started: Timestamp,
) -> Result<UploadState> {
    let path = registry.inner.blobs.uploads.join(id);
    if !path.exists() {
        // Its finish moved the file into the blob store and then failed to commit.
        return Err(Error::UploadUnknown { id: id.to_owned() });
    }
    let mut file = OpenOptions::new()
        .append(true)
        .read(true)
        .open(&path)
        .at(&path)?;
    let (hasher, offset) = hash_file(&mut file, Algorithm::Sha256).at(&path)?;
    Ok(UploadState {
        repository: repository.to_owned(),
        started,
        file,
        offset,
        hasher,
        closed: false,
    })
}

/// Hashes a whole file from its start, a buffer at a time; returns the hasher and the length.
pub(crate) fn hash_file(file: &mut File, algorithm: Algorithm) -> std::io::Result<(Hasher, u64)> {
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(0))?;
    let mut hasher = algorithm.hasher();
    let mut buf = vec![0; 1 << 20];
    let mut total = 0;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok((hasher, total));
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the state half-changed in a way that
    // matters: the file and the database are the truth.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Upload {
    /// The session's id, to resume it later.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// How many bytes the session holds: where the next chunk goes.
    pub fn offset(&self) -> u64 {
        lock(&self.state).offset
    }

    /// Checks the session is open and not expired, and gives its state.
    fn open_state(&self) -> Result<MutexGuard<'_, UploadState>> {
        let state = lock(&self.state);
        let expired = self.registry.now().since(state.started) > self.registry.inner.upload_timeout;
        if state.closed || expired {
            return Err(Error::UploadUnknown {
                id: self.id.clone(),
            });
        }
        Ok(state)
    }

    /// Appends a chunk, fsyncs it and returns the new offset.
    pub fn append(&self, chunk: &[u8]) -> Result<u64> {
        let mut state = self.open_state()?;
        let path = self.registry.inner.blobs.uploads.join(&self.id);
        self.registry.inner.blobs.before_write(&path)?;
        state.file.write_all(chunk).at(&path)?;
        state.file.sync_data().at(&path)?;
        state.hasher.update(chunk);
        state.offset += chunk.len() as u64;
        Ok(state.offset)
    }

    /// Appends a chunk that the caller sends for `offset`, refused unless the session is
    /// exactly there ([`Error::UploadOffsetMismatch`] tells the real offset).
    pub fn append_at(&self, offset: u64, chunk: &[u8]) -> Result<u64> {
        let actual = self.open_state()?.offset;
        if actual != offset {
            return Err(Error::UploadOffsetMismatch {
                id: self.id.clone(),
                expected: offset,
                actual,
            });
        }
        self.append(chunk)
    }

    /// Ends the session: the bytes received must hash to `digest` (P1). They become the blob,
    /// linked into the session's repository. On a mismatch, or if the repository is
    /// write-locked ([`Error::Locked`]), nothing is stored and the session stays open; once
    /// the digest matched and the lock let it through, the session is over even if the commit
    /// fails (the caller puts the blob again).
    pub fn finish(&self, digest: &Digest) -> Result<()> {
        let mut state = self.open_state()?;
        let path = self.registry.inner.blobs.uploads.join(&self.id);
        let actual = if digest.algorithm() == Algorithm::Sha256 {
            state.hasher.clone().finish()
        } else {
            hash_file(&mut state.file, digest.algorithm())
                .at(&path)?
                .0
                .finish()
        };
        if &actual != digest {
            return Err(Error::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        check_no_batch(&self.registry)?;
        // Refused before the file moves into the blob store, so a refusal leaves the session
        // open and writes nothing (L2). The commit below checks again.
        self.registry
            .repository(&state.repository)?
            .check_writable()?;
        let blobs = &self.registry.inner.blobs;
        if !blobs.path(digest).exists() {
            blobs.before_write(&blobs.path(digest))?;
            blobs.promote(&path, digest)?;
        }
        let size = state.offset;
        let repository = state.repository.clone();
        let committed = self.registry.batch(|b| {
            b.t.uploads.remove(self.id.as_str())?;
            // The blob existed but a collection swept it since: the session's bytes become it.
            b.link_blob(&repository, digest, size, || {
                blobs.before_write(&blobs.path(digest))?;
                blobs.promote(&path, digest)
            })
        });
        // Committed or not, the session's file may now be the blob's: it takes no more bytes.
        // A session row left behind has no file and goes at the next open.
        self.close(&mut state);
        committed?;
        // The blob existed already: after the commit, so a crash before this line leaves an
        // orphan that the next open removes.
        remove_if_present(&path).map(drop)
    }

    /// Abandons the session and deletes what it received.
    pub fn cancel(&self) -> Result<()> {
        let mut state = self.open_state()?;
        self.registry.batch(|b| {
            b.t.uploads.remove(self.id.as_str())?;
            Ok(())
        })?;
        self.close(&mut state);
        // An `fsck` repair may have taken the file once the row was gone.
        remove_if_present(&self.registry.inner.blobs.uploads.join(&self.id)).map(drop)
    }

    fn close(&self, state: &mut UploadState) {
        state.closed = true;
        lock(&self.registry.inner.uploads).remove(&self.id);
    }
}

impl Registry {
    /// Ends a session whose row a collection removed (G4): a handle still held answers
    /// `UploadUnknown`, and the file goes.
    pub(crate) fn forget_upload(&self, id: &str) -> Result<()> {
        // The sessions' lock is released before the session's is taken: `finish` and `cancel`
        // hold the session's and then take the sessions' (in `close`).
        let session = lock(&self.inner.uploads).remove(id);
        if let Some(state) = session {
            lock(&state).closed = true;
        }
        remove_if_present(&self.inner.blobs.uploads.join(id)).map(drop)
    }

    /// Makes upload files and session rows agree after a crash: a file no row names (crash
    /// before the session committed) is removed, and so is a row whose file is gone (crash
    /// after `finish` renamed the file into the blob store, before its commit).
    pub(crate) fn reconcile_uploads(&self) -> Result<()> {
        let dir = &self.inner.blobs.uploads;
        let mut files = std::collections::HashSet::new();
        for entry in fs::read_dir(dir).at(dir)? {
            let path = entry.at(dir)?.path();
            match path.file_name().and_then(|n| n.to_str()) {
                Some(id) => files.insert(id.to_owned()),
                None => false,
            };
        }
        self.batch(|b| {
            let uploads = &mut b.t.uploads;
            uploads.retain(|id, _| files.remove(id))?;
            Ok(())
        })?;
        for stray in files {
            let path = dir.join(stray);
            fs::remove_file(&path).at(&path)?;
        }
        Ok(())
    }
}
