//! Which handles hold a store, and how (docs/spec.md: M1): lock files in the store's directory,
//! beside the database, whose own locks redb keeps.
//!
//! `store.lock` is held exclusively by an exclusive handle and shared by every shared or
//! read-only one, for the handle's life. `open.lock` is held while a handle opens, so that an
//! opener that found the store free can clean up what dead processes left (temporary files,
//! upload files no session names, the collector's journal, an older format) before anyone else
//! comes in: such cleanups would destroy the work in flight of a live process. Locks are
//! `flock`s, which belong to an open file, so two handles in one process exclude each other as
//! two processes do, and the system drops them with the process that held them.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::values::{Error, IoContext, OpenMode, Result};

const STORE_LOCK: &str = "store.lock";
const OPEN_LOCK: &str = "open.lock";

/// How long a refused open tries again before it reports the store as held. A process forking
/// a child shares its open files, locks included, with the child until the child runs its
/// program (which closes them): a store just closed can look held for that instant.
const FORK_WAIT: Duration = Duration::from_millis(200);

/// The lock file `path`, created if need be; read-only where the directory cannot be written.
pub(crate) fn lock_file(path: &Path) -> Result<File> {
    match OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
    {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => File::open(path).at(path),
        opened => opened.at(path),
    }
}

/// Takes `file`'s lock exclusively if it is free: `false` if another holds it.
pub(crate) fn try_lock(file: &File, path: &Path) -> Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(e)) => Err(e).at(path),
    }
}

/// A handle's place among the store's holders, kept for the handle's life. While the handle
/// opens, no other opener comes in, until [`Membership::admit`].
pub(crate) struct Membership {
    gate: Option<File>,
    store: File,
    path: PathBuf,
    mode: OpenMode,
    alone: bool,
}

impl Membership {
    /// Lets a handle of `mode` into the store in `dir`, or refuses it with
    /// [`Error::AlreadyOpen`] if the store is held in a mode it cannot join.
    pub(crate) fn begin(dir: &Path, mode: OpenMode) -> Result<Membership> {
        let gate_path = dir.join(OPEN_LOCK);
        let gate = lock_file(&gate_path)?;
        gate.lock().at(&gate_path)?;
        let path = dir.join(STORE_LOCK);
        let store = lock_file(&path)?;
        let deadline = Instant::now() + FORK_WAIT;
        let alone = loop {
            if try_lock(&store, &path)? {
                break true;
            }
            let refused = match mode {
                OpenMode::Exclusive => Some(held_by(&store, &path)?),
                OpenMode::Shared | OpenMode::ReadOnly => {
                    (!try_lock_shared(&store, &path)?).then_some(OpenMode::Exclusive)
                }
            };
            match refused {
                None => break false,
                Some(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(2)),
                Some(held_by) => {
                    return Err(Error::AlreadyOpen {
                        path: dir.to_path_buf(),
                        held_by,
                    });
                }
            }
        };
        Ok(Membership {
            gate: Some(gate),
            store,
            path,
            mode,
            alone,
        })
    }

    /// Whether no other handle has the store open: what dead processes left may be cleaned up.
    pub(crate) fn alone(&self) -> bool {
        self.alone
    }

    /// Ends the open: a shared or read-only handle that had the store alone now shares it, and
    /// the next opener may come in.
    pub(crate) fn admit(&mut self) -> Result<()> {
        if self.alone && self.mode != OpenMode::Exclusive {
            // Not atomic under flock, but no one can come in between: the gate is still held.
            self.store.lock_shared().at(&self.path)?;
        }
        self.gate = None;
        Ok(())
    }
}

/// Takes `file`'s lock shared if no one holds it exclusively: `false` if one does.
fn try_lock_shared(file: &File, path: &Path) -> Result<bool> {
    match file.try_lock_shared() {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(e)) => Err(e).at(path),
    }
}

/// How the holders of `store`, whose exclusive lock was refused, hold it.
fn held_by(store: &File, path: &Path) -> Result<OpenMode> {
    if try_lock_shared(store, path)? {
        store.unlock().at(path)?;
        return Ok(OpenMode::Shared);
    }
    Ok(OpenMode::Exclusive)
}
