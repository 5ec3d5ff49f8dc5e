//! Streamed blob uploads: sessions that take chunks, report their offset, survive a restart
//! of the process, can be continued by another process (M3), and end in a verified blob
//! (docs/spec.md: P1, G4).
//!
//! The database is the only truth about a session: its row says it is open, and its
//! acknowledged offset is committed after each chunk is durable. Appends, finishes and cancels
//! of one session take turns under the blob store's lock on it ([`BlobStore::lock_upload`]),
//! across handles and processes, and check the row again once they hold it. What a process
//! keeps in memory (the running hash) is a cache of the bytes up to the stored offset.
//!
//! [`BlobStore::lock_upload`]: crate::BlobStore::lock_upload

use std::io::Read;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::Core;
use super::blobs::{ensure, untouched_since};
use crate::blobs::{UploadLock, UploadMark};
use crate::store::links::is_recorded;
use crate::store::locks::{Need, check_writable};
use crate::store::{Snapshot, meta, uploads};
use crate::values::{
    Algorithm, Digest, Error, Hasher, IoContext, Item, Result, Timestamp, hash_into,
};

/// The in-process state of a session: where it was last seen and the running hash of its
/// first bytes.
pub(crate) struct UploadState {
    repository: String,
    started: Timestamp,
    /// The stored offset when this process last looked.
    offset: u64,
    /// sha256 of the session's first `hashed` bytes: valid for a finish only while `hashed`
    /// is the stored offset, caught up from the bytes otherwise. A finish under another
    /// algorithm rereads them.
    hasher: Hasher,
    hashed: u64,
    /// Finished or cancelled: every further call answers `UploadUnknown`.
    closed: bool,
}

impl UploadState {
    fn new(repository: &str, started: Timestamp, offset: u64) -> UploadState {
        UploadState {
            repository: repository.to_owned(),
            started,
            offset,
            hasher: Algorithm::Sha256.hasher(),
            hashed: 0,
            closed: false,
        }
    }
}

/// A streamed upload into one repository. Chunks are durable as they are appended, so a
/// session can be resumed with [`Repository::resume_upload`](crate::Repository::resume_upload)
/// after the process restarts, or in another process sharing the store (M3), at the offset it
/// had reached. Handles of one session, in any processes, append in turn: each chunk goes at
/// the session's end as the store records it.
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
    core: Arc<Core>,
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

/// Starts an upload session into repository `repo`.
pub(crate) fn start(core: &Arc<Core>, repo: &str) -> Result<Upload> {
    core.check_no_batch()?;
    check_writable(&core.snapshot()?, repo)?;
    core.room()?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    core.space.watch(core.blobs.create_upload(&id))?;
    let started = core.now();
    let recorded = core.write(true, |tx| {
        tx.check_lock(repo, &Item::Repository, Need::Write)?;
        tx.open_upload(&id, repo, started)
    });
    if let Err(e) = recorded {
        core.blobs.delete_upload(&id)?;
        return Err(e);
    }
    let state = Arc::new(Mutex::new(UploadState::new(repo, started, 0)));
    lock(&core.uploads).insert(id.clone(), state.clone());
    Ok(Upload {
        core: core.clone(),
        id,
        state,
    })
}

/// Resumes upload session `id` of repository `repo`, in this process or another, or after a
/// restart, at the offset the store holds for it. Sessions older than the registry's upload
/// timeout are gone ([`Error::UploadUnknown`]).
pub(crate) fn resume(core: &Arc<Core>, repo: &str, id: &str) -> Result<Upload> {
    let unknown = || Error::UploadUnknown { id: id.to_owned() };
    let mut sessions = lock(&core.uploads);
    let state = if let Some(state) = sessions.get(id).cloned() {
        // The sessions' lock is released before the session's is taken: `finish` and
        // `cancel` hold the session's and then take the sessions' (in `close`).
        drop(sessions);
        if lock(&state).repository != repo {
            return Err(unknown());
        }
        state
    } else {
        let (repository, started) = uploads::session(&core.snapshot()?, id)?.ok_or_else(unknown)?;
        if repository != repo {
            return Err(unknown());
        }
        let state = Arc::new(Mutex::new(UploadState::new(repo, started, 0)));
        sessions.insert(id.to_owned(), state.clone());
        drop(sessions);
        state
    };
    let upload = Upload {
        core: core.clone(),
        id: id.to_owned(),
        state,
    };
    // Without the session's lock: a resume reads, and a thread with a batch open may call it.
    let mut state = upload.open_state()?;
    upload.refresh(&mut state, &core.snapshot()?)?;
    // No bytes: a finish made them a blob and then failed to commit.
    if !core.blobs.upload_exists(id)? {
        upload.close(&mut state);
        return Err(unknown());
    }
    drop(state);
    Ok(upload)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the state half-changed in a way that
    // matters: the blob store and the database are the truth.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A session as an append, finish or cancel sees it: its state, the blob store's lock on it
/// and the offset and mark the store holds, read once the lock was taken.
struct Locked<'a> {
    state: MutexGuard<'a, UploadState>,
    stored: u64,
    mark: Option<UploadMark>,
    /// Bound by name where the struct is taken apart: a field left to `..` would drop, and
    /// release the lock, at once.
    _held: UploadLock,
}

impl Upload {
    /// The session's id, to resume it later.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// How many bytes the session held when this handle last looked (at its start, resume or
    /// last call): where the next chunk goes, unless another handle, perhaps in another
    /// process, appended since.
    #[must_use]
    pub fn offset(&self) -> u64 {
        lock(&self.state).offset
    }

    fn unknown(&self) -> Error {
        Error::UploadUnknown {
            id: self.id.clone(),
        }
    }

    /// Checks the session is open and not expired, as this process knows, and gives its state.
    fn open_state(&self) -> Result<MutexGuard<'_, UploadState>> {
        let state = lock(&self.state);
        let expired = self.core.now().since(state.started) > self.core.upload_timeout;
        if state.closed || expired {
            return Err(self.unknown());
        }
        Ok(state)
    }

    /// Takes the session's lock, then checks on a fresh snapshot that the session is still
    /// open: another handle or process may have finished or cancelled it, or a collection
    /// swept it, while this one waited.
    fn locked(&self) -> Result<Locked<'_>> {
        // Before the session's lock: a thread in a batch holds the database's writer, which
        // the lock's holder may be waiting for.
        self.core.check_no_batch()?;
        // Every caller writes: a read-only handle is refused before it touches the bytes.
        self.core.db.check_writable()?;
        let mut state = self.open_state()?;
        let Some(held) = self.core.blobs.lock_upload(&self.id)? else {
            self.close(&mut state);
            return Err(self.unknown());
        };
        let snapshot = self.core.snapshot()?;
        let stored = self.refresh(&mut state, &snapshot)?;
        let mark = uploads::mark(&snapshot, &self.id)?.map(UploadMark::new);
        Ok(Locked {
            state,
            stored,
            mark,
            _held: held,
        })
    }

    /// Reads the session's row and offset from `snapshot` into `state`; closes the session
    /// here if it is gone from the store.
    fn refresh(&self, state: &mut UploadState, snapshot: &Snapshot) -> Result<u64> {
        let open = uploads::session(snapshot, &self.id)?
            .is_some_and(|(repository, _)| repository == state.repository);
        if !open {
            self.close(state);
            return Err(self.unknown());
        }
        // No offset row: a session an older build started, whose bytes' length was its offset.
        let stored = if let Some(offset) = uploads::offset(snapshot, &self.id)? {
            offset
        } else {
            std::io::copy(&mut self.bytes(0)?, &mut std::io::sink()).at(self.path())?
        };
        state.offset = stored;
        Ok(stored)
    }

    fn path(&self) -> String {
        format!("uploads/{}", self.id)
    }

    /// The session's bytes from `start`.
    fn bytes(&self, start: u64) -> Result<Box<dyn Read + Send>> {
        self.core
            .blobs
            .read_upload(&self.id, start)?
            .ok_or_else(|| self.unknown())
    }

    /// Feeds `hasher` the session's bytes `start..end`, which must all be there.
    fn hash_range(&self, hasher: &mut Hasher, start: u64, end: u64) -> Result<()> {
        let read = hash_into(&mut self.bytes(start)?.take(end - start), hasher).at(self.path())?;
        if read != end - start {
            return Err(Error::Io {
                path: self.path().into(),
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "upload holds {} bytes, its acknowledged offset is {end}",
                        start + read
                    ),
                ),
            });
        }
        Ok(())
    }

    /// The sha256 of the session's first `stored` bytes, from the running hash brought there:
    /// from the blob store's checkpoint when the bytes it would need are no longer readable.
    fn sha256(
        &self,
        state: &mut UploadState,
        stored: u64,
        mark: Option<&UploadMark>,
    ) -> Result<Digest> {
        if state.hashed > stored {
            state.hasher = Algorithm::Sha256.hasher();
            state.hashed = 0;
        }
        if state.hashed < stored {
            let checkpoint = self.core.blobs.upload_checkpoint(&self.id, stored, mark)?;
            if state.hashed < checkpoint.offset {
                state.hasher = checkpoint
                    .hasher(Algorithm::Sha256)
                    .ok_or_else(|| Error::Io {
                        path: self.path().into(),
                        source: std::io::Error::other(
                            "the blob store keeps no sha256 of the upload",
                        ),
                    })?;
                state.hashed = checkpoint.offset;
            }
            self.hash_range(&mut state.hasher, state.hashed, stored)?;
            state.hashed = stored;
        }
        Ok(state.hasher.clone().finish())
    }

    /// Appends a chunk, makes it durable and returns the new offset: the end of the session,
    /// which another handle may have moved since this one last looked.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::UploadUnknown`] if the session is finished, cancelled or expired (by
    /// this handle or another, in any process), [`Error::StorageFull`] while the disk is full,
    /// [`Error::NestedWrite`] inside a [`Batch`](crate::Batch) of this store, and [`Error::Io`],
    /// [`Error::Database`] or [`Error::Corrupt`] when the disk or the database fails.
    pub fn append(&self, chunk: &[u8]) -> Result<u64> {
        self.append_checked(None, chunk)
    }

    /// Appends a chunk that the caller sends for `offset`, refused unless the session is
    /// exactly there ([`Error::UploadOffsetMismatch`] tells the real offset).
    ///
    /// # Errors
    ///
    /// Fails with [`Error::UploadOffsetMismatch`] if the session is not at `offset`; otherwise as
    /// [`append`](Upload::append).
    pub fn append_at(&self, offset: u64, chunk: &[u8]) -> Result<u64> {
        self.append_checked(Some(offset), chunk)
    }

    fn append_checked(&self, expected: Option<u64>, chunk: &[u8]) -> Result<u64> {
        let core = &*self.core;
        let Locked {
            mut state,
            stored,
            mark,
            _held,
        } = self.locked()?;
        if let Some(expected) = expected.filter(|&e| e != stored) {
            return Err(Error::UploadOffsetMismatch {
                id: self.id.clone(),
                expected,
                actual: stored,
            });
        }
        core.room()?;
        // Written at the stored offset, which drops a torn tail a failed append left.
        let new_mark =
            core.space.watch(
                core.blobs
                    .append_upload(&self.id, stored, chunk, mark.as_ref()),
            )?;
        let end = stored + chunk.len() as u64;
        // Committed after the chunk is durable: no process ever reads past durable bytes.
        let new_mark = new_mark.as_ref().map(UploadMark::as_bytes);
        if !core.write(true, |tx| tx.set_upload_offset(&self.id, end, new_mark))? {
            self.close(&mut state);
            return Err(self.unknown());
        }
        if state.hashed == stored {
            state.hasher.update(chunk);
            state.hashed = end;
        }
        state.offset = end;
        Ok(end)
    }

    /// Ends the session: the bytes received must hash to `digest` (P1). They become the blob,
    /// linked into the session's repository. On a mismatch, or if the repository is
    /// write-locked ([`Error::Locked`]), nothing is stored and the session stays open; once
    /// the digest matched and the lock let it through, the session is over even if the commit
    /// fails (the caller puts the blob again). The bytes are those the store acknowledged,
    /// whichever handle or process appended them.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::UploadUnknown`] if the session is finished, cancelled or expired (by
    /// this handle or another, in any process), or its bytes are gone; [`Error::DigestMismatch`]
    /// if they do not hash to `digest`; [`Error::Locked`] if the repository is write-locked;
    /// [`Error::StorageFull`] while the disk is full; [`Error::NestedWrite`] inside a
    /// [`Batch`](crate::Batch) of this store; and [`Error::Io`], [`Error::Database`] or
    /// [`Error::Corrupt`] when the disk or the database fails.
    pub fn finish(&self, digest: &Digest) -> Result<()> {
        let core = &*self.core;
        let Locked {
            mut state,
            stored,
            mark,
            _held,
        } = self.locked()?;
        let mark = mark.as_ref();
        let actual = if digest.algorithm() == Algorithm::Sha256 {
            Some(self.sha256(&mut state, stored, mark)?)
        } else {
            let checkpoint = core.blobs.upload_checkpoint(&self.id, stored, mark)?;
            // None: the bytes went away and no hasher of this algorithm was kept (blake3 on
            // object storage): the blob store checks them as it joins them.
            checkpoint
                .hasher(digest.algorithm())
                .map(|mut hasher| {
                    self.hash_range(&mut hasher, checkpoint.offset, stored)?;
                    Ok::<_, Error>(hasher.finish())
                })
                .transpose()?
        };
        let verified = actual.is_some();
        if let Some(actual) = actual.filter(|actual| actual != digest) {
            return Err(Error::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        // Refused before the bytes move into the blob store, so a refusal leaves the session
        // open and writes nothing (L2). The commit below checks again.
        let snapshot = core.snapshot()?;
        check_writable(&snapshot, &state.repository)?;
        core.room()?;
        let epoch = meta::blob_epoch(&snapshot)?;
        // A blob in place already (a recorded one is, C2) needs no bytes of the session's;
        // unless the bytes are still to be checked, which only the store can do as it takes
        // them (P1: never link a digest the bytes received were not checked against).
        let known = verified
            && if core.blobs.puts_known_blobs() {
                core.blobs.contains(digest)?
            } else {
                is_recorded(&snapshot, digest.as_str())?
            };
        drop(snapshot);
        if !known {
            let finished = core
                .blobs
                .finish_upload(&self.id, digest, stored, mark, verified);
            if let Err(Error::DigestMismatch { .. }) = &finished {
                // The store checked and found otherwise; the session's bytes are gone.
                core.write(true, |tx| tx.close_upload(&self.id))?;
                self.close(&mut state);
            }
            core.space.watch(finished)?;
        }
        let repository = state.repository.clone();
        let committed = core.write(true, |tx| {
            // A collection swept the expired session since the check under the lock.
            if !tx.close_upload(&self.id)? {
                return Err(self.unknown());
            }
            let untouched = untouched_since(tx, epoch)?;
            // A collection swept the blob since: a session that still has its bytes (the blob
            // was known) makes them the blob; one whose bytes went into it fails, and the
            // client pushes again.
            tx.link_blob(&repository, digest, stored, || {
                ensure(core, untouched, digest, || {
                    core.blobs
                        .finish_upload(&self.id, digest, stored, mark, verified)
                })
            })
        });
        // Committed or not, the session's bytes may now be the blob's: it takes no more.
        // A session row left behind has no bytes and goes at the next open.
        self.close(&mut state);
        committed?;
        if known {
            // After the commit, so a crash before this line leaves an orphan that the next
            // open removes.
            core.blobs.delete_upload(&self.id)?;
        }
        Ok(())
    }

    /// Abandons the session and deletes what it received.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::UploadUnknown`] if the session is finished, cancelled or expired (by
    /// this handle or another, in any process), [`Error::NestedWrite`] inside a
    /// [`Batch`](crate::Batch) of this store, and [`Error::Io`], [`Error::Database`] or
    /// [`Error::Corrupt`] when the disk or the database fails.
    pub fn cancel(&self) -> Result<()> {
        let Locked {
            mut state, _held, ..
        } = self.locked()?;
        let closed = self.core.write(true, |tx| tx.close_upload(&self.id))?;
        self.close(&mut state);
        if !closed {
            return Err(self.unknown());
        }
        // An `fsck` repair may have taken the bytes once the row was gone.
        self.core.blobs.delete_upload(&self.id).map(drop)
    }

    fn close(&self, state: &mut UploadState) {
        state.closed = true;
        lock(&self.core.uploads).remove(&self.id);
    }
}

/// Ends a session whose row a collection removed (G4): a handle still held answers
/// `UploadUnknown`, and the bytes go.
pub(crate) fn forget(core: &Core, id: &str) -> Result<()> {
    // The sessions' lock is released before the session's is taken: `finish` and `cancel`
    // hold the session's and then take the sessions' (in `close`).
    let session = lock(&core.uploads).remove(id);
    if let Some(state) = session {
        lock(&state).closed = true;
    }
    // After an append in progress in another process, which then finds the row gone.
    let _held = core.blobs.lock_upload(id)?;
    core.blobs.delete_upload(id).map(drop)
}

/// Makes upload bytes and session rows agree after a crash: bytes no row names (crash before
/// the session committed) are removed, and so is a row whose bytes are gone (crash after
/// `finish` made them a blob, before its commit).
pub(crate) fn reconcile(core: &Core) -> Result<()> {
    let mut held: std::collections::HashSet<String> = core.blobs.uploads()?.into_iter().collect();
    core.write(true, |tx| tx.keep_uploads(&mut held))?;
    for stray in held {
        core.blobs.delete_upload(&stray)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{Algorithm, Registry};

    #[test]
    fn p1_a_session_without_an_offset_row_goes_on_from_the_length_of_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        let upload = registry.repository("app").unwrap().start_upload().unwrap();
        upload.append(b"older ").unwrap();
        let id = upload.id().to_owned();
        // As a build that kept the offset in memory only left the session.
        let removed = registry
            .core
            .write(true, |tx| {
                Ok(tx.t.upload_offsets.remove(id.as_str())?.is_some())
            })
            .unwrap();
        assert!(removed);
        drop((upload, registry));
        let registry = Registry::open(dir.path()).unwrap();
        let resumed = registry
            .repository("app")
            .unwrap()
            .resume_upload(&id)
            .unwrap();
        assert_eq!(resumed.offset(), 6);
        assert_eq!(resumed.append(b"build").unwrap(), 11);
        resumed
            .finish(&Algorithm::Sha256.digest(b"older build"))
            .unwrap();
    }
}
