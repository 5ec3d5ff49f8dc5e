//! The rows of upload sessions (SPEC P1, G4): which sessions are open, for which repository,
//! since when. Their bytes are the blob store's.

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
        Ok(())
    }

    /// Closes session `id`; whether it was open.
    pub(crate) fn close_upload(&mut self, id: &str) -> Result<bool> {
        Ok(self.t.uploads.remove(id)?.is_some())
    }

    /// Closes every session whose id is not in `held`, and takes the open ones out of it.
    pub(crate) fn keep_uploads(&mut self, held: &mut HashSet<String>) -> Result<()> {
        self.t.uploads.retain(|id, _| held.remove(id))?;
        Ok(())
    }
}
