//! Blob records and links: which blobs the store holds, and which repository may read which
//! (docs/spec.md: P2). The bytes are the blob store's; a record names bytes that are in place (C2).

use redb::ReadableTable;

use super::Tx;
use super::locks::Need;
use super::tables::{Readable, page_under};
use crate::values::{Digest, Error, Item, Page, Result};

/// The size of blob `digest` if it is linked into `repo`, else [`Error::BlobUnknown`].
pub(crate) fn linked_size(r: &impl Readable, repo: &str, digest: &Digest) -> Result<u64> {
    let unknown = || Error::BlobUnknown {
        repository: repo.to_owned(),
        digest: digest.clone(),
    };
    r.blob_links()?
        .get((repo, digest.as_str()))?
        .ok_or_else(unknown)?;
    let size = r
        .blobs()?
        .get(digest.as_str())?
        .ok_or_else(unknown)?
        .value()
        .0;
    Ok(size)
}

/// Whether blob `digest` has a record.
pub(crate) fn is_recorded(r: &impl Readable, digest: &str) -> Result<bool> {
    Ok(r.blobs()?.get(digest)?.is_some())
}

/// Digests of the blobs linked into `repo`, in lexical order, paginated.
pub(crate) fn linked(r: &impl Readable, repo: &str, page: &Page) -> Result<Vec<Digest>> {
    page_under(r.blob_links()?, repo, page, |digest, _| {
        Digest::stored(digest)
    })
}

impl Tx<'_> {
    /// Records blob `digest` if it has no record, and links it into `repo`. Without a record,
    /// `ensure_bytes` runs first, inside this transaction: it puts the bytes back if a
    /// collection swept them after the caller stored them (G2). The store's write lock is held,
    /// so no collection can take them again before the record commits.
    pub(crate) fn link_blob(
        &mut self,
        repo: &str,
        digest: &Digest,
        size: u64,
        ensure_bytes: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        self.check_lock(repo, &Item::Repository, Need::Write)?;
        let now = self.now.as_nanos();
        if !is_recorded(&self.t, digest.as_str())? {
            ensure_bytes()?;
            self.t.blobs.insert(digest.as_str(), (size, now))?;
        }
        self.t.blob_links.insert((repo, digest.as_str()), now)?;
        self.journal_blob(digest.as_str())?;
        self.ensure_repository(repo)
    }

    /// Links blob `digest` of repository `from` into `repo` without copying it (P2, S13).
    pub(crate) fn mount_blob(&mut self, repo: &str, from: &str, digest: &Digest) -> Result<()> {
        let source = super::repositories::repository_record(&self.t, from)?;
        if source.is_some_and(|r| r.deleted.is_some()) {
            return Err(Error::RepositorySoftDeleted {
                name: from.to_owned(),
            });
        }
        let size = linked_size(&self.t, from, digest)?;
        // The blob has a record, so its bytes are in place.
        self.link_blob(repo, digest, size, || Ok(()))
    }

    /// Removes the link of blob `digest` into `repo` if it is still the one linked at
    /// `linked` and no write used the blob since the collection began (G3); whether it went.
    pub(crate) fn unlink_unused(&mut self, repo: &str, digest: &str, linked: u64) -> Result<bool> {
        let unchanged = self
            .t
            .blob_links
            .get((repo, digest))?
            .is_some_and(|v| v.value() == linked);
        if !unchanged || self.t.gc_touched.get(digest)?.is_some() {
            return Ok(false);
        }
        self.t.blob_links.remove((repo, digest))?;
        Ok(true)
    }

    /// Removes the record of blob `digest` unless a write used it since the collection began
    /// (G1, G2); whether it went. Its bytes are the caller's to remove, once this is durable.
    pub(crate) fn forget_unused_blob(&mut self, digest: &str) -> Result<bool> {
        if self.t.gc_touched.get(digest)?.is_some() {
            return Ok(false);
        }
        Ok(self.t.blobs.remove(digest)?.is_some())
    }

    /// Removes a link whose blob has no record (A2's repair); whether it went.
    pub(crate) fn remove_dangling_link(&mut self, repo: &str, digest: &str) -> Result<bool> {
        if is_recorded(&self.t, digest)? {
            return Ok(false);
        }
        Ok(self.t.blob_links.remove((repo, digest))?.is_some())
    }
}
