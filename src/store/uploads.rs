//! The rows of upload sessions (SPEC P1, G4, M3): which sessions are open, for which
//! repository, since when, and the offset each acknowledged last. Their bytes are the blob
//! store's.

use std::collections::HashSet;

use redb::ReadableTable;

use super::Tx;
use super::tables::Readable;
use crate::values::{Result, Timestamp};

/// The repository and start of open session `id`.
pub(crate) fn session(r: &impl Readable, id: &str) -> Result<Option<(String, Timestamp)>> {
    Ok(r.uploads()?.get(id)?.map(|row| {
        let (repository, started) = row.value();
        (repository.to_owned(), Timestamp::from_nanos(started))
    }))
}

/// The offset session `id` acknowledged last; `None` for a session without the row (closed,
/// or started by a build that kept offsets only in memory: its bytes' length is its offset).
pub(crate) fn offset(r: &impl Readable, id: &str) -> Result<Option<u64>> {
    Ok(r.upload_offsets()?.get(id)?.map(|row| row.value()))
}

/// The blob store's mark for session `id` (the bytes of an `UploadMark`), if it returned one.
pub(crate) fn mark(r: &impl Readable, id: &str) -> Result<Option<Vec<u8>>> {
    Ok(r.upload_marks()?.get(id)?.map(|row| row.value().to_vec()))
}

/// Whether upload session `id` is open.
pub(crate) fn is_open(r: &impl Readable, id: &str) -> Result<bool> {
    Ok(r.uploads()?.get(id)?.is_some())
}

/// The sessions started before `cutoff`.
pub(crate) fn started_before(r: &impl Readable, cutoff: Timestamp) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for row in r.uploads()?.iter()? {
        let (id, value) = row?;
        if value.value().1 < cutoff.as_nanos() {
            out.push(id.value().to_owned());
        }
    }
    Ok(out)
}

impl Tx<'_> {
    /// Opens session `id` into `repo`, started at `started`.
    pub(crate) fn open_upload(&mut self, id: &str, repo: &str, started: Timestamp) -> Result<()> {
        self.t.uploads.insert(id, (repo, started.as_nanos()))?;
        self.t.upload_offsets.insert(id, 0)?;
        Ok(())
    }

    /// Records that open session `id` holds `offset` bytes, and the blob store's new `mark`
    /// for it if there is one; false if it is not open.
    pub(crate) fn set_upload_offset(
        &mut self,
        id: &str,
        offset: u64,
        mark: Option<&[u8]>,
    ) -> Result<bool> {
        if self.t.uploads.get(id)?.is_none() {
            return Ok(false);
        }
        self.t.upload_offsets.insert(id, offset)?;
        if let Some(mark) = mark {
            self.t.upload_marks.insert(id, mark)?;
        }
        Ok(true)
    }

    /// Closes session `id`; whether it was open.
    pub(crate) fn close_upload(&mut self, id: &str) -> Result<bool> {
        self.t.upload_offsets.remove(id)?;
        self.t.upload_marks.remove(id)?;
        Ok(self.t.uploads.remove(id)?.is_some())
    }

    /// Closes every session whose id is not in `held`, and takes the open ones out of it.
    pub(crate) fn keep_uploads(&mut self, held: &mut HashSet<String>) -> Result<()> {
        let mut open = HashSet::new();
        self.t.uploads.retain(|id, _| {
            let kept = held.remove(id);
            if kept {
                open.insert(id.to_owned());
            }
            kept
        })?;
        self.t.upload_offsets.retain(|id, _| open.contains(id))?;
        self.t.upload_marks.retain(|id, _| open.contains(id))?;
        Ok(())
    }
}
