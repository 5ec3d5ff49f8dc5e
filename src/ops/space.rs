//! A full disk never wedges the store (SPEC C4). The store keeps a reserve: a file of
//! preallocated space in its directory. When a write fails for lack of space, the reserve is
//! released, and until it can be taken back only the calls that free space or keep the store —
//! deletes, purges of the recycle bin, autopurge, the collector, fsck's repair, settings and
//! locks — may write: they commit into the space the reserve gave back. Every other write is
//! refused with [`Error::StorageFull`] before it writes anything. The first such write that finds
//! room for the reserve again takes it back, and writes go on: no restart, no reopen.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::values::{Error, IoContext, Result};

/// The reserve's file in the store's directory.
const RESERVE: &str = "space-reserve";

/// The reserve of one store, and whether the disk is full.
pub(crate) struct Space {
    dir: PathBuf,
    size: u64,
    full: AtomicBool,
    /// A write committed while full: it may have freed pages that a compaction can give back.
    freed: AtomicBool,
    /// Held while the reserve is released or taken back.
    changing: Mutex<()>,
}

impl Space {
    /// Takes the reserve of `size` bytes in `dir` (0: none), or starts full if there is no
    /// room for it.
    pub(crate) fn open(dir: &Path, size: u64) -> Result<Space> {
        let space = Space {
            dir: dir.to_path_buf(),
            size,
            full: AtomicBool::new(false),
            freed: AtomicBool::new(false),
            changing: Mutex::default(),
        };
        match space.take_reserve() {
            Err(Error::StorageFull { .. }) => space.full.store(true, Ordering::Release),
            taken => taken?,
        }
        Ok(space)
    }

    /// Whether the disk was found full and the reserve is released.
    pub(crate) fn is_full(&self) -> bool {
        self.full.load(Ordering::Acquire)
    }

    /// `Ok` if a write that adds to the store may go: the disk is not full, or has room again
    /// for the reserve and as much besides (the reserve is then taken back), if need be after
    /// `compact` gave the database's free pages back to the file system. [`Error::StorageFull`]
    /// otherwise.
    pub(crate) fn check(&self, compact: impl FnOnce() -> Result<bool>) -> Result<()> {
        if !self.is_full() {
            return Ok(());
        }
        let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.is_full() {
            return Ok(());
        }
        if self.take_back().is_err() {
            // Deletes free pages inside the database file, which only a compaction returns: worth
            // its cost only once something was written since the last one.
            if !self.freed.swap(false, Ordering::AcqRel) || !compact().unwrap_or(false) {
                return Err(self.full_error());
            }
            self.take_back()?;
        }
        self.full.store(false, Ordering::Release);
        Ok(())
    }

    /// Takes the reserve back if the disk then still has as much free: writes resume only
    /// once real room was made, not at the first byte freed.
    fn take_back(&self) -> Result<()> {
        self.take_reserve()?;
        if free_bytes(&self.dir).at(&self.dir)? < self.size {
            let _ = fs::remove_file(self.dir.join(RESERVE));
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
    /// that free space can commit.
    pub(crate) fn watch<T>(&self, outcome: Result<T>) -> Result<T> {
        if outcome.is_ok() && self.is_full() {
            self.freed.store(true, Ordering::Release);
        }
        if matches!(outcome, Err(Error::StorageFull { .. })) && !self.is_full() {
            let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
            self.full.store(true, Ordering::Release);
            // Gone already is as good: the space is free.
            let _ = fs::remove_file(self.dir.join(RESERVE));
        }
        outcome
    }

    /// Makes the reserve file hold `size` bytes of allocated space.
    fn take_reserve(&self) -> Result<()> {
        let path = self.dir.join(RESERVE);
        if self.size == 0 {
            return Ok(());
        }
        if fs::metadata(&path).is_ok_and(|m| m.len() >= self.size) {
            return Ok(());
        }
        let taken = File::create(&path)
            .and_then(|file| {
                allocate(&file, self.size)?;
                file.sync_all()
            })
            .at(&path);
        if taken.is_err() {
            let _ = fs::remove_file(&path);
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
    /// The disk is full: reads, deletes, purges of the recycle bin and the collector run; other
    /// writes are refused until there is room for the reserve again.
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
        Err(e) => Health {
            writable: false,
            storage_full: true,
            problem: Some(e.to_string()),
        },
    }
}
