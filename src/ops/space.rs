//! A full disk never wedges the store (SPEC C4). The store keeps a reserve: a file of
//! preallocated space in its directory. When a write fails for lack of space, the reserve is
//! released, and until it can be taken back only the calls that free space or keep the store —
//! deletes, purges of the recycle bin, autopurge, the collector, fsck's repair, settings and
//! locks — may write: they commit into the space the reserve gave back. Every other write is
//! refused with [`Error::StorageFull`] before it writes anything. The first such write that finds
//! room for the reserve again takes it back, and writes go on: no restart, no reopen.
//!
//! The reserve file is the flag, so that every process sharing the store agrees (M3): the store
//! is full while the file is missing or shorter than the reserve. It is released and taken back
//! only under the lock on `space.lock`, so no process takes it back while another releases it,
//! and each release is taken back once.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::store::membership::lock_file;
use crate::values::{Error, IoContext, Result};

/// The reserve's file in the store's directory.
const RESERVE: &str = "space-reserve";
/// The lock file held while the reserve is released or taken back, in whichever process.
const LOCK: &str = "space.lock";

/// The reserve of one store, as one handle keeps it.
pub(crate) struct Space {
    dir: PathBuf,
    /// 0 for none: such a handle (a read-only one among them) never finds the store full and
    /// never touches the reserve.
    size: u64,
    /// A write committed while full, since the last compaction: it may have freed pages that
    /// a compaction can give back. Only an exclusive handle compacts, and then no other process
    /// commits, so this process's commits are all there are.
    freed: AtomicBool,
}

impl Space {
    /// Takes the reserve of `size` bytes in `dir` (0: none), or starts full if there is no
    /// room for it and as much besides: another process may have released it.
    pub(crate) fn open(dir: &Path, size: u64) -> Result<Space> {
        let space = Space {
            dir: dir.to_path_buf(),
            size,
            freed: AtomicBool::new(false),
        };
        if size > 0 {
            // Created at open, not at the first release: the store's files stay the same after.
            lock_file(&space.dir.join(LOCK))?;
            match space.take_back() {
                Err(Error::StorageFull { .. }) => {}
                taken => taken?,
            }
        }
        Ok(space)
    }

    /// Whether the disk was found full and the reserve is released, by this process or
    /// another.
    pub(crate) fn is_full(&self) -> bool {
        self.size > 0 && fs::metadata(self.dir.join(RESERVE)).map_or(true, |m| m.len() < self.size)
    }

    /// `Ok` if a write that adds to the store may go: the disk is not full, or has room again
    /// for the reserve and as much besides (the reserve is then taken back), if need be after
    /// `compact` gave the database's free pages back to the file system. [`Error::StorageFull`]
    /// otherwise.
    pub(crate) fn check(&self, compact: impl FnOnce() -> Result<bool>) -> Result<()> {
        if !self.is_full() {
            return Ok(());
        }
        match self.take_back() {
            // Deletes free pages inside the database file, which only a compaction returns: worth
            // its cost only once something was written since the last one.
            Err(Error::StorageFull { .. })
                if self.freed.swap(false, Ordering::AcqRel) && compact().unwrap_or(false) =>
            {
                self.take_back()
            }
            taken => taken,
        }
    }

    /// Takes the reserve back if the disk then still has as much free: writes resume only
    /// once real room was made, not at the first byte freed.
    fn take_back(&self) -> Result<()> {
        let _lock = self.lock()?;
        // Another handle may have taken it back while this one waited.
        if !self.is_full() {
            return Ok(());
        }
        let path = self.dir.join(RESERVE);
        let held = fs::metadata(&path).map_or(0, |m| m.len());
        // Every refused write comes here: while the file system plainly lacks the room, it is
        // not worth an allocation and a removal.
        let free = free_bytes(&self.dir).at(&self.dir)?;
        if free.saturating_add(held) < self.size.saturating_mul(2) {
            return Err(self.full_error());
        }
        self.take_reserve(&path)?;
        if free_bytes(&self.dir).at(&self.dir)? < self.size {
            let _ = fs::remove_file(&path);
            return Err(self.full_error());
        }
        Ok(())
    }

    fn full_error(&self) -> Error {
        Error::StorageFull {
            path: self.dir.clone(),
        }
    }

    /// Passes `outcome` on; on [`Error::StorageFull`] releases the reserve, so that the calls
    /// that free space can commit, in every process.
    pub(crate) fn watch<T>(&self, outcome: Result<T>) -> Result<T> {
        match &outcome {
            Ok(_) if self.is_full() => self.freed.store(true, Ordering::Release),
            Err(Error::StorageFull { .. }) if self.size > 0 => {
                // Without the lock rather than not at all: freeing the room matters more.
                let _lock = self.lock();
                // Gone already is as good: the space is free.
                let _ = fs::remove_file(self.dir.join(RESERVE));
            }
            _ => {}
        }
        outcome
    }

    /// Holds the reserve's lock until the file is dropped. A file of its own per call: `flock`
    /// belongs to an open file, so this excludes the other threads of the process as well.
    fn lock(&self) -> Result<File> {
        let path = self.dir.join(LOCK);
        let file = lock_file(&path)?;
        file.lock().at(&path)?;
        Ok(file)
    }

    /// Makes the reserve file `path` hold `size` bytes of allocated space. It grows to its
    /// length only once allocated, so until then it reads as full.
    fn take_reserve(&self, path: &Path) -> Result<()> {
        let taken = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .and_then(|file| {
                allocate(&file, self.size)?;
                file.sync_all()
            })
            .at(path);
        if taken.is_err() {
            let _ = fs::remove_file(path);
        }
        taken
    }
}

/// The bytes an unprivileged user may still write on the file system of `dir`.
#[cfg(target_os = "linux")]
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string and `stat` is written by the call before it is
    // read, which happens only when the call succeeded.
    let stat = unsafe {
        if libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        stat.assume_init()
    };
    // Narrower than u64 on some targets.
    #[allow(clippy::useless_conversion)]
    Ok(u64::from(stat.f_bavail).saturating_mul(u64::from(stat.f_frsize)))
}

/// Without `statvfs`, the reserve taken back is the only sign of room.
#[cfg(not(target_os = "linux"))]
fn free_bytes(_: &Path) -> std::io::Result<u64> {
    Ok(u64::MAX)
}

/// Allocates `size` bytes of `file` on disk (not a sparse length).
#[cfg(target_os = "linux")]
fn allocate(file: &File, size: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = i64::try_from(size).map_err(std::io::Error::other)?;
    // SAFETY: the call reads its integer arguments and the descriptor, which `file` keeps open.
    match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) } {
        0 => Ok(()),
        errno => Err(std::io::Error::from_raw_os_error(errno)),
    }
}

/// Allocates `size` bytes of `file` on disk by writing them.
#[cfg(not(target_os = "linux"))]
fn allocate(mut file: &File, size: u64) -> std::io::Result<()> {
    use std::io::Write;
    let zeros = vec![0; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// What [`Registry::health`](crate::Registry::health) reports: whether the store can take
/// writes, and if not, why (C5). A server's health check reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Health {
    /// Every call can write.
    pub writable: bool,
    /// The disk is full, as any process sharing the store found it: reads, deletes, purges of
    /// the recycle bin and the collector run; other writes are refused until there is room for
    /// the reserve again.
    pub storage_full: bool,
    /// What keeps the store from writing, if anything: the disk is full, or the database
    /// could not be reopened after an I/O error (with the error).
    pub problem: Option<String>,
}

/// The store's health, after trying what recovers it: reopening the database, taking the
/// reserve back.
pub(crate) fn health(core: &super::Core) -> Health {
    if let Err(e) = core.db.reopen() {
        return Health {
            writable: false,
            storage_full: matches!(e, Error::StorageFull { .. }),
            problem: Some(format!("the database cannot be opened: {e}")),
        };
    }
    match core.room() {
        Ok(()) => Health {
            writable: true,
            storage_full: false,
            problem: None,
        },
        // Not only a full disk: a read-only handle, or a reserve that cannot be checked.
        Err(e) => Health {
            writable: false,
            storage_full: matches!(e, Error::StorageFull { .. }),
            problem: Some(e.to_string()),
        },
    }
}
