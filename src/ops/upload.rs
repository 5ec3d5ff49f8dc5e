//! Streamed blob uploads: sessions that take chunks, report their offset, survive a restart
//! of the process and end in a verified blob (docs/spec.md: P1, G4).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::Core;
use crate::store::locks::{Need, check_writable};
use crate::store::uploads;
use crate::values::{
    Algorithm, Digest, Error, Hasher, IoContext, Item, Result, Timestamp, hash_reader,
};

/// The in-process state of a session: where it is and the running hash of what it holds.
pub(crate) struct UploadState {
    repository: String,
    started: Timestamp,
    offset: u64,
    /// sha256 of the bytes so far; a finish under another algorithm rereads them.
    hasher: Hasher,
    /// Finished or cancelled: every further call answers `UploadUnknown`.
    closed: bool,
}

/// A streamed upload into one repository. Chunks are durable as they are appended, so a
/// session can be resumed with [`Repository::resume_upload`](crate::Repository::resume_upload)
/// after the process restarts, at the offset it had reached.
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
    let state = Arc::new(Mutex::new(UploadState {
        repository: repo.to_owned(),
        started,
        offset: 0,
        hasher: Algorithm::Sha256.hasher(),
        closed: false,
    }));
    lock(&core.uploads).insert(id.clone(), state.clone());
    Ok(Upload {
        core: core.clone(),
        id,
        state,
    })
}

/// Resumes upload session `id` of repository `repo`, in this process or after a restart.
/// Sessions older than the registry's upload timeout are gone ([`Error::UploadUnknown`]).
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
        let started = {
            let (repository, started) =
                uploads::session(&core.snapshot()?, id)?.ok_or_else(unknown)?;
            if repository != repo {
                return Err(unknown());
            }
            started
        };
        let state = Arc::new(Mutex::new(reopen(core, id, repo, started)?));
        sessions.insert(id.to_owned(), state.clone());
        drop(sessions);
        state
    };
    let upload = Upload {
        core: core.clone(),
        id: id.to_owned(),
        state,
    };
    drop(upload.open_state()?);
    Ok(upload)
}

/// Rebuilds a session's state from its bytes, after a restart.
fn reopen(core: &Core, id: &str, repository: &str, started: Timestamp) -> Result<UploadState> {
    // No bytes: its finish made them a blob and then failed to commit.
    let mut bytes = core
        .blobs
        .read_upload(id)?
        .ok_or_else(|| Error::UploadUnknown { id: id.to_owned() })?;
    let (hasher, offset) =
        hash_reader(&mut bytes, Algorithm::Sha256).at(format!("uploads/{id}"))?;
    Ok(UploadState {
        repository: repository.to_owned(),
        started,
        offset,
        hasher,
        closed: false,
    })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the state half-changed in a way that
    // matters: the blob store and the database are the truth.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Upload {
    /// The session's id, to resume it later.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// How many bytes the session holds: where the next chunk goes.
    #[must_use]
    pub fn offset(&self) -> u64 {
        lock(&self.state).offset
    }

    /// Checks the session is open and not expired, and gives its state.
    fn open_state(&self) -> Result<MutexGuard<'_, UploadState>> {
        let state = lock(&self.state);
        let expired = self.core.now().since(state.started) > self.core.upload_timeout;
        if state.closed || expired {
            return Err(Error::UploadUnknown {
                id: self.id.clone(),
            });
        }
        Ok(state)
    }

    /// Appends a chunk, makes it durable and returns the new offset.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::UploadUnknown`] if the session is finished, cancelled or expired,
    /// [`Error::StorageFull`] while the disk is full, and [`Error::Io`] when the disk fails.
    pub fn append(&self, chunk: &[u8]) -> Result<u64> {
        let mut state = self.open_state()?;
        let core = &*self.core;
        core.room()?;
        core.space
            .watch(core.blobs.append_upload(&self.id, state.offset, chunk))?;
        state.hasher.update(chunk);
        state.offset += chunk.len() as u64;
        Ok(state.offset)
    }

    /// Appends a chunk that the caller sends for `offset`, refused unless the session is
    /// exactly there ([`Error::UploadOffsetMismatch`] tells the real offset).
    ///
    /// # Errors
    ///
    /// Fails with [`Error::UploadOffsetMismatch`] if the session is not at `offset`; otherwise as
    /// [`append`](Upload::append).
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
    ///
    /// # Errors
    ///
    /// Fails with [`Error::UploadUnknown`] if the session is finished, cancelled or expired, or its
    /// bytes are gone; [`Error::DigestMismatch`] if they do not hash to `digest`; [`Error::Locked`]
    /// if the repository is write-locked; [`Error::StorageFull`] while the disk is full;
    /// [`Error::NestedWrite`] inside a [`Batch`](crate::Batch) of this store; and [`Error::Io`],
    /// [`Error::Database`] or [`Error::Corrupt`] when the disk or the database fails.
    pub fn finish(&self, digest: &Digest) -> Result<()> {
        let mut state = self.open_state()?;
        let core = &*self.core;
        let actual = if digest.algorithm() == Algorithm::Sha256 {
            state.hasher.clone().finish()
        } else {
            let mut bytes =
                core.blobs
                    .read_upload(&self.id)?
                    .ok_or_else(|| Error::UploadUnknown {
                        id: self.id.clone(),
                    })?;
            hash_reader(&mut bytes, digest.algorithm())
                .at(format!("uploads/{}", self.id))?
                .0
                .finish()
        };
        if &actual != digest {
            return Err(Error::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        core.check_no_batch()?;
        // Refused before the bytes move into the blob store, so a refusal leaves the session
        // open and writes nothing (L2). The commit below checks again.
        check_writable(&core.snapshot()?, &state.repository)?;
        core.room()?;
        if !core.blobs.contains(digest)? {
            core.space
                .watch(core.blobs.finish_upload(&self.id, digest))?;
        }
        let size = state.offset;
        let repository = state.repository.clone();
        let committed = core.write(true, |tx| {
            tx.close_upload(&self.id)?;
            // The blob existed but a collection swept it since: the session's bytes become it.
            tx.link_blob(&repository, digest, size, || {
                if core.blobs.contains(digest)? {
                    return Ok(());
                }
                core.blobs.finish_upload(&self.id, digest)
            })
        });
        // Committed or not, the session's bytes may now be the blob's: it takes no more.
        // A session row left behind has no bytes and goes at the next open.
        self.close(&mut state);
        committed?;
        // The blob existed already: after the commit, so a crash before this line leaves an
        // orphan that the next open removes.
        core.blobs.delete_upload(&self.id).map(drop)
    }

    /// Abandons the session and deletes what it received.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::UploadUnknown`] if the session is finished, cancelled or expired,
    /// [`Error::NestedWrite`] inside a [`Batch`](crate::Batch) of this store, and [`Error::Io`],
    /// [`Error::Database`] or [`Error::Corrupt`] when the disk or the database fails.
    pub fn cancel(&self) -> Result<()> {
        let mut state = self.open_state()?;
        self.core.write(true, |tx| tx.close_upload(&self.id))?;
        self.close(&mut state);
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
