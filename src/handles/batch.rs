//! [`Batch`]: many mutating calls in one write transaction (docs/spec.md: C1).

use crate::ops::push::Pushed;
use crate::ops::recycle_bin::{OnConflict, Restore, RestoreOptions};
use crate::ops::{self, Core};
use crate::store::Tx;
use crate::store::locks::Locks;
use crate::values::{Algorithm, Digest, Item, Result};

use super::Repository;

/// Many mutating calls in one redb transaction: they commit together, with one fsync, when
/// the closure given to [`Registry::batch`](crate::Registry::batch) returns `Ok`, and none of them does otherwise.
///
/// Blob bytes a batch writes are made durable and put in place as each call runs, before the
/// transaction naming them commits (C2); if the batch fails they stay behind as unreferenced
/// bytes for the collector. Every call in a batch sees the time the batch began.
pub struct Batch<'t> {
    tx: Tx<'t>,
    core: &'t Core,
}

impl<'t> Batch<'t> {
    pub(crate) fn new(tx: Tx<'t>, core: &'t Core) -> Batch<'t> {
        Batch { tx, core }
    }

    /// The transaction the batch writes in.
    pub(crate) fn tx(&mut self) -> &mut Tx<'t> {
        &mut self.tx
    }

    /// Stores `bytes` as blob `digest` and links it into `repo`, after checking that they hash
    /// to `digest` (P1). A blob already in the registry is not written again.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::DigestMismatch`](crate::Error::DigestMismatch) if `bytes` do not hash to
    /// `digest`, [`Error::Locked`](crate::Error::Locked) if `repo` is write-locked,
    /// [`Error::StorageFull`](crate::Error::StorageFull) if the disk fills while the bytes are
    /// written, and [`Error::Io`](crate::Error::Io), [`Error::Database`](crate::Error::Database) or
    /// [`Error::Corrupt`](crate::Error::Corrupt) when the disk or the database fails.
    pub fn put_blob(
        &mut self,
        repo: &Repository,
        digest: &Digest,
        bytes: impl AsRef<[u8]>,
    ) -> Result<()> {
        ops::blobs::put_in(self.core, &mut self.tx, repo.name(), digest, bytes.as_ref())
    }

    /// Stores `bytes` as a blob under their sha256 digest, links it into `repo` and returns
    /// the digest.
    ///
    /// # Errors
    ///
    /// As [`put_blob`](Batch::put_blob), without a mismatch.
    pub fn put_blob_sha256(
        &mut self,
        repo: &Repository,
        bytes: impl AsRef<[u8]>,
    ) -> Result<Digest> {
        let digest = Algorithm::Sha256.digest(bytes.as_ref());
        self.put_blob(repo, &digest, bytes)?;
        Ok(digest)
    }

    /// Links blob `digest` of repository `from` into `repo` without copying it (P2).
    ///
    /// # Errors
    ///
    /// As [`Repository::mount_blob`](crate::Repository::mount_blob); a full disk and a nested write
    /// are refused once for the whole batch, by [`Registry::batch`](crate::Registry::batch).
    pub fn mount_blob(
        &mut self,
        repo: &Repository,
        from: &Repository,
        digest: &Digest,
    ) -> Result<()> {
        self.tx.mount_blob(repo.name(), from.name(), digest)
    }

    /// Pushes a manifest by tag or digest; see [`Repository::push_manifest`].
    ///
    /// # Errors
    ///
    /// As [`Repository::push_manifest`](crate::Repository::push_manifest); a full disk and a nested
    /// write are refused once for the whole batch, by [`Registry::batch`](crate::Registry::batch).
    pub fn push_manifest(
        &mut self,
        repo: &Repository,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Result<Pushed> {
        let prepared = crate::oci::prepare(reference, media_type, body)?;
        self.tx.push_manifest(repo.name(), prepared)
    }

    /// Points `tag` at manifest `digest` of `repo`, which must be live. A manifest the tag
    /// leaves stays, untagged if no other tag points at it (P5).
    ///
    /// # Errors
    ///
    /// As [`Repository::tag`](crate::Repository::tag); a full disk and a nested write are refused
    /// once for the whole batch, by [`Registry::batch`](crate::Registry::batch).
    pub fn tag(&mut self, repo: &Repository, tag: &str, digest: &Digest) -> Result<()> {
        self.tx.tag(repo.name(), tag, digest)
    }

    /// Removes a tag; the manifest stays (D1). See [`Repository::untag`].
    ///
    /// # Errors
    ///
    /// As [`Repository::untag`](crate::Repository::untag); a full disk and a nested write are
    /// refused once for the whole batch, by [`Registry::batch`](crate::Registry::batch).
    pub fn untag(&mut self, repo: &Repository, tag: &str) -> Result<()> {
        self.tx.untag(repo.name(), tag)
    }

    /// Deletes a manifest by tag or digest; see [`Repository::delete_manifest`].
    ///
    /// # Errors
    ///
    /// As [`Repository::delete_manifest`](crate::Repository::delete_manifest); a full disk and a
    /// nested write are refused once for the whole batch, by
    /// [`Registry::batch`](crate::Registry::batch).
    pub fn delete_manifest(&mut self, repo: &Repository, reference: &str) -> Result<Vec<Digest>> {
        self.tx.delete_manifest(repo.name(), reference)
    }

    /// Deletes a repository with all its manifests and tags (D4); see
    /// [`Registry::delete_repository`](crate::Registry::delete_repository).
    ///
    /// # Errors
    ///
    /// As [`Registry::delete_repository`](crate::Registry::delete_repository); a full disk and a
    /// nested write are refused once for the whole batch, by
    /// [`Registry::batch`](crate::Registry::batch).
    pub fn delete_repository(&mut self, repo: &Repository) -> Result<()> {
        self.tx.delete_repository(repo.name())
    }

    /// Restores a manifest; see [`Repository::restore`].
    ///
    /// # Errors
    ///
    /// As [`Repository::restore`](crate::Repository::restore); a full disk and a nested write are
    /// refused once for the whole batch, by [`Registry::batch`](crate::Registry::batch).
    pub fn restore(
        &mut self,
        repo: &Repository,
        what: Restore<'_>,
        on_conflict: OnConflict,
    ) -> Result<Digest> {
        self.restore_with(
            repo,
            what,
            &RestoreOptions::default().on_conflict(on_conflict),
        )
    }

    /// Restores a manifest with options; see [`Repository::restore_with`].
    ///
    /// # Errors
    ///
    /// As [`Repository::restore_with`](crate::Repository::restore_with); a full disk and a
    /// nested write are refused once for the whole batch, by
    /// [`Registry::batch`](crate::Registry::batch).
    pub fn restore_with(
        &mut self,
        repo: &Repository,
        what: Restore<'_>,
        options: &RestoreOptions,
    ) -> Result<Digest> {
        self.tx.restore(repo.name(), what, options)
    }

    /// Points a tag back at a manifest its history names; see [`Repository::revert_tag`].
    ///
    /// # Errors
    ///
    /// As [`Repository::revert_tag`](crate::Repository::revert_tag); a full disk and a nested
    /// write are refused once for the whole batch, by [`Registry::batch`](crate::Registry::batch).
    pub fn revert_tag(
        &mut self,
        repo: &Repository,
        tag: &str,
        digest: &Digest,
        on_conflict: OnConflict,
    ) -> Result<()> {
        self.tx.revert_tag(repo.name(), tag, digest, on_conflict)
    }

    /// Sets the locks of a live item; see [`Repository::set_locks`].
    ///
    /// # Errors
    ///
    /// As [`Repository::set_locks`](crate::Repository::set_locks); a full disk and a nested write
    /// are refused once for the whole batch, by [`Registry::batch`](crate::Registry::batch).
    pub fn set_locks(&mut self, repo: &Repository, item: &Item, locks: Locks) -> Result<()> {
        self.tx.set_locks(repo.name(), item, locks)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Error, Registry};

    #[test]
    fn c1_a_write_inside_a_batch_of_the_same_store_fails_instead_of_deadlocking() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        let repo = registry.repository("app").unwrap();
        let err = registry
            .batch(|b| {
                b.put_blob_sha256(&repo, b"kept")?;
                repo.put_blob_sha256(b"nested")
            })
            .unwrap_err();
        assert!(matches!(err, Error::NestedWrite { ref path } if path == dir.path()));
        // The failed batch wrote nothing, and the store takes writes again afterwards.
        assert!(repo.blobs(&crate::Page::all()).unwrap().is_empty());
        let digest = repo.put_blob_sha256(b"after").unwrap();
        assert_eq!(repo.blobs(&crate::Page::all()).unwrap(), [digest]);
    }

    #[test]
    fn c1_batches_on_two_stores_nest_on_one_thread() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (ra, rb) = (
            Registry::open(a.path()).unwrap(),
            Registry::open(b.path()).unwrap(),
        );
        let repo_b = rb.repository("app").unwrap();
        ra.batch(|_| repo_b.put_blob_sha256(b"into b").map(drop))
            .unwrap();
        assert_eq!(repo_b.blobs(&crate::Page::all()).unwrap().len(), 1);
    }
}
