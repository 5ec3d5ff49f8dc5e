//! [`Repository`]: the handle through which blobs, uploads, manifests, tags, the recycle bin
//! and locks of one repository are read and written. Each call forwards to the layer that does
//! the work, reading from one snapshot or writing in one transaction.

use std::ops::RangeBounds;
use std::sync::Arc;

use bytes::Bytes;

use super::Registry;
use crate::blobs::BlobReader;
use crate::oci::{Descriptor, Reference};
use crate::ops::push::Pushed;
use crate::ops::recycle_bin::{OnConflict, Restore, RestoreOptions};
use crate::ops::upload::Upload;
use crate::ops::{self, Core};
use crate::store::bin::{self, DeletedManifest, DeletedTag};
use crate::store::locks::{self, Locks};
use crate::store::manifests::{self, Manifest, ManifestQuery, PulledManifest};
use crate::store::repositories::{self, RepositoryState};
use crate::store::tags::{self, Tag, TagEvent};
use crate::store::{Snapshot, Tx};
#[cfg(doc)]
use crate::values::Error;
use crate::values::{Algorithm, Digest, Item, Page, Result, validate_name, validate_tag};

/// A handle on one repository of a [`Registry`], by name. Cheap to clone.
///
/// Getting a handle writes nothing: the repository comes into being with the first blob or
/// manifest pushed or mounted into it. Its methods are documented with their concepts: blobs
/// ([`put_blob`](Repository::put_blob), [`blob`](Repository::blob), uploads), manifests
/// ([`push_manifest`](Repository::push_manifest), [`pull`](Repository::pull)) and tags
/// ([`tag`](Repository::tag), [`tags`](Repository::tags)).
#[derive(Clone, Debug)]
pub struct Repository {
    registry: Registry,
    name: String,
}

impl Repository {
    pub(crate) fn new(registry: Registry, name: String) -> Repository {
        Repository { registry, name }
    }

    /// The repository's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the repository is live, in the recycle bin (until its tombstone expires) or
    /// unknown, in one read.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use ocistore::{Registry, RepositoryState};
    /// let repo = Registry::open(dir.path())?.repository("app")?;
    /// assert_eq!(repo.state()?, RepositoryState::Unknown);
    /// repo.put_blob_sha256(b"bytes")?;
    /// assert!(matches!(repo.state()?, RepositoryState::Live { .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Fails only with [`Error::Io`], [`Error::Database`] or [`Error::Corrupt`], when the disk or
    /// the database fails.
    pub fn state(&self) -> Result<RepositoryState> {
        repositories::state(&self.snapshot()?, &self.name, self.registry.now())
    }

    /// The registry holding it.
    #[must_use]
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn core(&self) -> &Arc<Core> {
        &self.registry.core
    }

    fn snapshot(&self) -> Result<Snapshot> {
        self.core().snapshot()
    }

    /// Runs `f` in a transaction of its own: a write that frees space or keeps the store,
    /// allowed on a full disk (C4).
    fn write<T>(&self, f: impl FnOnce(&mut Tx<'_>, &str) -> Result<T>) -> Result<T> {
        self.core().write(true, |tx| f(tx, &self.name))
    }

    /// Runs `f` in a transaction of its own: a write that adds to the store.
    fn write_adding<T>(&self, f: impl FnOnce(&mut Tx<'_>, &str) -> Result<T>) -> Result<T> {
        self.core().write_adding(|tx| f(tx, &self.name))
    }

    /// Stores `bytes` as blob `digest` in this repository after checking that they hash to
    /// `digest` (P1); a blob already in the registry is only linked.
    ///
    /// The bytes are written and fsynced before the write transaction begins, so other
    /// writers do not wait for the disk.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::DigestMismatch`] if `bytes` do not hash to `digest`, [`Error::Locked`]
    /// if the repository is write-locked, [`Error::StorageFull`] while the disk is full,
    /// [`Error::NestedWrite`] inside a [`Batch`](crate::Batch) of this store, and [`Error::Io`],
    /// [`Error::Database`] or [`Error::Corrupt`] when the disk or the database fails.
    pub fn put_blob(&self, digest: &Digest, bytes: impl AsRef<[u8]>) -> Result<()> {
        ops::blobs::put(self.core(), &self.name, digest, bytes.as_ref())
    }

    /// Stores `bytes` under their sha256 digest and returns it.
    ///
    /// # Errors
    ///
    /// As [`put_blob`](Repository::put_blob), without a mismatch.
    pub fn put_blob_sha256(&self, bytes: impl AsRef<[u8]>) -> Result<Digest> {
        let digest = Algorithm::Sha256.digest(bytes.as_ref());
        self.put_blob(&digest, bytes)?;
        Ok(digest)
    }

    /// Links blob `digest` of repository `from` into this one (a cross-repository mount, P2).
    /// The blob must be linked to `from`.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::InvalidRepositoryName`] if `from` is invalid,
    /// [`Error::RepositorySoftDeleted`] if `from` is in the recycle bin, [`Error::BlobUnknown`] if
    /// the blob is not linked to `from`, [`Error::Locked`] if this repository is write-locked,
    /// [`Error::StorageFull`] while the disk is full, [`Error::NestedWrite`] inside a
    /// [`Batch`](crate::Batch) of this store, and [`Error::Io`], [`Error::Database`] or
    /// [`Error::Corrupt`] when the disk or the database fails.
    pub fn mount_blob(&self, from: &str, digest: &Digest) -> Result<()> {
        validate_name(from)?;
        self.write_adding(|tx, name| tx.mount_blob(name, from, digest))
    }

    /// The size of blob `digest`, if it is linked into this repository.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::BlobUnknown`] if the blob is not linked into this repository or the
    /// repository is not live, and [`Error::Io`], [`Error::Database`] or [`Error::Corrupt`] when
    /// the disk or the database fails.
    pub fn blob_size(&self, digest: &Digest) -> Result<u64> {
        ops::blobs::size(self.core(), &self.name, digest)
    }

    /// Digests of the blobs linked into this repository, in lexical order, paginated.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::InvalidDigest`] if `page.last` is not a digest, and [`Error::Io`],
    /// [`Error::Database`] or [`Error::Corrupt`] when the disk or the database fails.
    pub fn blobs(&self, page: &Page) -> Result<Vec<Digest>> {
        ops::blobs::list(self.core(), &self.name, page)
    }

    /// The bytes of blob `digest`.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::BlobUnknown`] if the blob is not linked into this live repository (or a
    /// collection removed its bytes meanwhile), and [`Error::Io`], [`Error::Database`] or
    /// [`Error::Corrupt`] when the disk or the database fails.
    pub fn blob(&self, digest: &Digest) -> Result<Bytes> {
        ops::blobs::bytes(self.core(), &self.name, digest)
    }

    /// A reader over `range` of blob `digest` (`..` for all of it).
    ///
    /// # Errors
    ///
    /// Fails with [`Error::BlobUnknown`] as for [`blob`](Repository::blob), [`Error::InvalidRange`]
    /// if `range` does not fit inside the blob, and [`Error::Io`], [`Error::Database`] or
    /// [`Error::Corrupt`] when the disk or the database fails.
    pub fn blob_reader(&self, digest: &Digest, range: impl RangeBounds<u64>) -> Result<BlobReader> {
        ops::blobs::reader(self.core(), &self.name, digest, range)
    }

    /// Starts an upload session into this repository.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::Locked`] if the repository is write-locked, [`Error::StorageFull`] while
    /// the disk is full, [`Error::NestedWrite`] inside a [`Batch`](crate::Batch) of this store, and
    /// [`Error::Io`], [`Error::Database`] or [`Error::Corrupt`] when the disk or the database
    /// fails.
    pub fn start_upload(&self) -> Result<Upload> {
        ops::upload::start(self.core(), &self.name)
    }

    /// Resumes the upload session `id` of this repository, in this process, in another one
    /// sharing the store, or after a restart; its [`offset`](Upload::offset) tells where the
    /// next chunk goes.
    ///
    /// Sessions older than the registry's upload timeout are gone ([`Error::UploadUnknown`]).
    ///
    /// # Errors
    ///
    /// Fails with [`Error::UploadUnknown`] if no open session `id` of this repository exists: never
    /// started, started in another repository, finished, cancelled or expired; and [`Error::Io`],
    /// [`Error::Database`] or [`Error::Corrupt`] when the disk or the database fails.
    pub fn resume_upload(&self, id: &str) -> Result<Upload> {
        ops::upload::resume(self.core(), &self.name, id)
    }

    /// Pushes a manifest under `reference`, a tag or a digest, with its declared media type
    /// (P3–P5), and returns its digest.
    ///
    /// The exact bytes are stored; the digest is computed over them (sha256, or the algorithm
    /// of the digest pushed by) and must equal the digest pushed by. Every config and layer
    /// must be linked to this repository and every child of an index must be a manifest of it;
    /// the `subject` need not exist. Pushing by tag moves the tag.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::InvalidReference`] if `reference` is neither a tag
    /// nor a digest; [`Error::ManifestTooLarge`], [`Error::UnsupportedMediaType`],
    /// [`Error::MediaTypeMismatch`] or [`Error::InvalidManifest`] if the body is refused (a
    /// descriptor that misstates the size of what it names is invalid); [`Error::DigestMismatch`]
    /// if the body does not hash to the digest pushed by; [`Error::Locked`] if the repository is
    /// write-locked, or the tag is and points elsewhere; [`Error::ManifestSoftDeleted`] if the
    /// manifest is in the recycle bin; [`Error::BlobUnknown`] if a config or layer is not linked to
    /// this repository; [`Error::ManifestUnknown`] if a child of an index is not a live manifest of
    /// it; [`Error::StorageFull`] while the disk is full; [`Error::NestedWrite`] inside a
    /// [`Batch`](crate::Batch) of this store; and [`Error::Io`], [`Error::Database`] or
    /// [`Error::Corrupt`] when the disk or the database fails.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use ocistore::{Registry, manifest::OCI_MANIFEST};
    /// let repo = Registry::open(dir.path())?.repository("app")?;
    /// let config = repo.put_blob_sha256(b"{}")?;
    /// let body = format!(
    ///     r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[]}}"#
    /// );
    /// let pushed = repo.push_manifest("v1", OCI_MANIFEST, body.as_bytes())?;
    /// assert!(pushed.created && pushed.previous.is_none());
    /// let pulled = repo.pull("v1")?;
    /// assert_eq!((pulled.digest, &pulled.body[..]), (pushed.digest, body.as_bytes()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn push_manifest(&self, reference: &str, media_type: &str, body: &[u8]) -> Result<Pushed> {
        ops::push::push(self.core(), &self.name, reference, media_type, body)
    }

    /// Pulls a manifest by tag or digest: its exact bytes, media type and digest (P6).
    ///
    /// # Errors
    ///
    /// Fails with [`Error::InvalidReference`] if `reference` is neither a tag
    /// nor a digest, [`Error::ManifestUnknown`] if no live manifest answers to it, and
    /// [`Error::Io`], [`Error::Database`] or [`Error::Corrupt`] when the disk or the database
    /// fails.
    pub fn pull(&self, reference: &str) -> Result<PulledManifest> {
        let reference = Reference::parse(reference)?;
        let snapshot = self.snapshot()?;
        let digest = tags::resolve_reference(&snapshot, &self.name, &reference)?;
        let record = manifests::live_record(&snapshot, &self.name, &digest)?;
        let body = manifests::body(&snapshot, &self.name, &digest)?;
        Ok(PulledManifest {
            digest,
            media_type: record.media_type,
            body,
        })
    }

    /// The metadata of a manifest, by tag or digest.
    ///
    /// # Errors
    ///
    /// As [`pull`](Repository::pull).
    pub fn manifest(&self, reference: &str) -> Result<Manifest> {
        let reference = Reference::parse(reference)?;
        let snapshot = self.snapshot()?;
        let digest = tags::resolve_reference(&snapshot, &self.name, &reference)?;
        manifests::manifest(&snapshot, &self.name, digest)
    }

    /// Manifest metadata ordered by last update, filtered by `query` (P7).
    ///
    /// # Errors
    ///
    /// Fails only with [`Error::Io`], [`Error::Database`] or [`Error::Corrupt`], when the disk or
    /// the database fails.
    pub fn manifests(&self, query: &ManifestQuery) -> Result<Vec<Manifest>> {
        manifests::list(&self.snapshot()?, &self.name, query)
    }

    /// Descriptors of the manifests whose `subject` is `digest`, optionally only those of one
    /// artifact type (P8). The subject itself need not exist.
    ///
    /// # Errors
    ///
    /// Fails only with [`Error::Io`], [`Error::Database`] or [`Error::Corrupt`], when the disk or
    /// the database fails.
    pub fn referrers(
        &self,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        manifests::referrers(&self.snapshot()?, &self.name, digest, artifact_type)
    }

    /// Points `tag` at the manifest `digest`, which must already be in this repository (P5).
    ///
    /// # Errors
    ///
    /// Fails with [`Error::InvalidTag`] if `tag` is invalid, [`Error::ManifestUnknown`] if `digest`
    /// is not a live manifest of this repository, [`Error::Locked`] if the repository is
    /// write-locked, or the tag is and points elsewhere; [`Error::StorageFull`] while the disk is
    /// full, [`Error::NestedWrite`] inside a [`Batch`](crate::Batch) of this store, and
    /// [`Error::Io`], [`Error::Database`] or [`Error::Corrupt`] when the disk or the database
    /// fails.
    pub fn tag(&self, tag: &str, digest: &Digest) -> Result<()> {
        self.write_adding(|tx, name| tx.tag(name, tag, digest))
    }

    /// The manifest digest `tag` points at.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::InvalidTag`] if `tag` is invalid, [`Error::ManifestUnknown`] if no live
    /// tag has that name, and [`Error::Io`], [`Error::Database`] or [`Error::Corrupt`] when the
    /// disk or the database fails.
    pub fn resolve(&self, tag: &str) -> Result<Digest> {
        validate_tag(tag)?;
        tags::resolve(&self.snapshot()?, &self.name, tag)
    }

    /// Live tags in lexical order, paginated the OCI way (P7).
    ///
    /// # Errors
    ///
    /// Fails with [`Error::InvalidTag`] if `page.last` is not a tag, and [`Error::Io`],
    /// [`Error::Database`] or [`Error::Corrupt`] when the disk or the database fails.
    pub fn tags(&self, page: &Page) -> Result<Vec<Tag>> {
        if let Some(last) = &page.last {
            validate_tag(last)?;
        }
        tags::list(&self.snapshot()?, &self.name, page)
    }

    /// The history of `tag`, newest first (T1).
    ///
    /// # Errors
    ///
    /// Fails with [`Error::InvalidTag`] if `tag` is invalid, and [`Error::Io`], [`Error::Database`]
    /// or [`Error::Corrupt`] when the disk or the database fails.
    pub fn tag_history(&self, tag: &str) -> Result<Vec<TagEvent>> {
        validate_tag(tag)?;
        tags::history(&self.snapshot()?, &self.name, tag)
    }

    /// Points `tag` back at `digest`, a manifest its history names (T2). A live manifest gets
    /// the tag; one in the recycle bin is restored with it, as
    /// [`restore`](Repository::restore) of `tag` with `digest` would (S6–S11). Either way a tag
    /// now on another manifest moves only with [`OnConflict::MoveTag`], and the move is
    /// recorded with [`TagCause::Restore`](crate::TagCause::Restore). Reverting to where the
    /// tag points already changes nothing.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::InvalidTag`] if `tag` is invalid; [`Error::NotInHistory`] if the
    /// history of `tag` does not name `digest` (never, or no longer: the history retention
    /// removed those entries); [`Error::ManifestUnknown`] if the manifest is purged or expired;
    /// [`Error::Locked`] if the repository is write-locked, or the tag is and would move;
    /// [`Error::TagConflict`] if the tag is live on another manifest and `on_conflict` is
    /// [`OnConflict::Refuse`]; [`Error::SubjectDeleted`] if the manifest is in the bin and is a
    /// referrer whose subject is there too; [`Error::StorageFull`] while the disk is full;
    /// [`Error::NestedWrite`] inside a [`Batch`](crate::Batch) of this store; and
    /// [`Error::Io`], [`Error::Database`] or [`Error::Corrupt`] when the disk or the database
    /// fails.
    pub fn revert_tag(&self, tag: &str, digest: &Digest, on_conflict: OnConflict) -> Result<()> {
        self.write_adding(|tx, name| tx.revert_tag(name, tag, digest, on_conflict))
    }

    /// Removes `tag`; the manifest and its blobs stay (D1). With the soft delete policy on,
    /// the tag goes to the recycle bin.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::InvalidTag`] if `tag` is invalid, [`Error::TagUnknown`] if no live tag
    /// has that name, [`Error::Locked`] if the tag or the repository is delete-locked,
    /// [`Error::NestedWrite`] inside a [`Batch`](crate::Batch) of this store, and [`Error::Io`],
    /// [`Error::Database`] or [`Error::Corrupt`] when the disk or the database fails.
    pub fn untag(&self, tag: &str) -> Result<()> {
        self.write(|tx, name| tx.untag(name, tag))
    }

    /// Deletes the manifest `reference` names — a tag (D2) or a digest (D3) — with every tag
    /// of it and its referrers, recursively (D5), and returns the digests deleted.
    ///
    /// Refused with [`Error::ManifestReferenced`] while a live index of this repository lists
    /// the manifest, or, with the soft delete policy off (the delete would purge it), an
    /// unexpired index in the recycle bin (S17); and with [`Error::Locked`] if a lock protects the repository, one of the
    /// manifests or one of their tags (L1). With the soft delete policy on, all of it goes to the recycle bin.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::InvalidReference`] if `reference` is neither a tag
    /// nor a digest, [`Error::ManifestUnknown`] if no live manifest answers to it,
    /// [`Error::ManifestReferenced`] and [`Error::Locked`] as above, [`Error::NestedWrite`] inside
    /// a [`Batch`](crate::Batch) of this store, and [`Error::Io`], [`Error::Database`] or
    /// [`Error::Corrupt`] when the disk or the database fails.
    pub fn delete_manifest(&self, reference: &str) -> Result<Vec<Digest>> {
        self.write(|tx, name| tx.delete_manifest(name, reference))
    }

    /// The manifests of this repository in the recycle bin, most recently deleted first (S5).
    /// Works inside a soft-deleted repository too. Expired ones are gone (S3); a manifest an
    /// index lists expires with it (S17).
    ///
    /// # Errors
    ///
    /// Fails only with [`Error::Io`], [`Error::Database`] or [`Error::Corrupt`], when the disk or
    /// the database fails.
    pub fn deleted_manifests(&self) -> Result<Vec<DeletedManifest>> {
        bin::deleted_manifests(&self.snapshot()?, &self.name, self.registry.now())
    }

    /// The tags of this repository in the recycle bin, or only those named `tag`, most
    /// recently deleted first (S5). Expired ones are gone (S3).
    ///
    /// # Errors
    ///
    /// Fails with [`Error::InvalidTag`] if `tag` is invalid, and [`Error::Io`], [`Error::Database`]
    /// or [`Error::Corrupt`] when the disk or the database fails.
    pub fn deleted_tags(&self, tag: Option<&str>) -> Result<Vec<DeletedTag>> {
        if let Some(tag) = tag {
            validate_tag(tag)?;
        }
        bin::deleted_tags(&self.snapshot()?, &self.name, tag, self.registry.now())
    }

    /// Brings a manifest back out of the recycle bin, with at most one tag (S6–S11), and
    /// returns its digest: [`restore_with`](Repository::restore_with) with `on_conflict` and
    /// the other options at their defaults (an index comes back without its children).
    ///
    /// # Errors
    ///
    /// As [`restore_with`](Repository::restore_with).
    pub fn restore(&self, what: Restore<'_>, on_conflict: OnConflict) -> Result<Digest> {
        self.restore_with(what, &RestoreOptions::default().on_conflict(on_conflict))
    }

    /// Brings a manifest back out of the recycle bin, with at most one tag (S6–S11, S17), and
    /// returns its digest. [`OnConflict::MoveTag`] lets a restore move a tag that is live on
    /// another manifest; the overwritten tag goes to the bin. With
    /// [`RestoreOptions::with_children`], an index brings back the manifests it lists that are
    /// in the bin, untagged (and theirs in turn).
    ///
    /// The bin must hold something for the restore: the manifest, or the tag it names on a
    /// live manifest (which is then only tagged). Restoring into a soft-deleted repository
    /// brings the repository back, holding only what was restored. Expired items are gone
    /// (S3), whether or not autopurge has removed them yet.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::InvalidTag`] if the tag in `what` is invalid; [`Error::NotDeleted`] if
    /// the bin holds nothing for the restore (naming the tag if the manifest is live, else the
    /// manifest): a tag with no deletion in the bin, a live manifest without that tag in the
    /// bin, a manifest neither live nor in the bin, an expired one;
    /// [`Error::SubjectDeleted`] if it, or a child it brings back, is a referrer whose subject
    /// is in the bin; [`Error::Locked`] if the repository is write-locked, or the tag is and
    /// would move; [`Error::TagConflict`] if the tag is live on another manifest and
    /// `on_conflict` is [`OnConflict::Refuse`]; [`Error::StorageFull`] while the disk is full;
    /// [`Error::NestedWrite`] inside a [`Batch`](crate::Batch) of this store; and [`Error::Io`],
    /// [`Error::Database`] or [`Error::Corrupt`] when the disk or the database fails.
    pub fn restore_with(&self, what: Restore<'_>, options: &RestoreOptions) -> Result<Digest> {
        self.write_adding(|tx, name| tx.restore(name, what, options))
    }

    /// Permanently removes manifest `digest` from the recycle bin before it expires, with its
    /// tags in the bin and its history (S16); not while an index lists it (S17).
    ///
    /// # Errors
    ///
    /// Fails with [`Error::NotDeleted`] if the manifest is not in the recycle bin or has
    /// expired (S3), [`Error::ManifestReferenced`] if an index, live or in the bin, lists it
    /// (naming a live one first), [`Error::NestedWrite`] inside a [`Batch`](crate::Batch) of this store, and [`Error::Io`],
    /// [`Error::Database`] or [`Error::Corrupt`] when the disk or the database fails.
    pub fn purge_deleted_manifest(&self, digest: &Digest) -> Result<()> {
        self.write(|tx, name| tx.purge_deleted_manifest(name, digest))
    }

    /// Permanently removes every deletion of `tag` from the recycle bin before it expires
    /// (S16), and returns how many there were.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::InvalidTag`] if `tag` is invalid, [`Error::NotDeleted`] if the bin holds
    /// no unexpired deletion of it, [`Error::NestedWrite`] inside a [`Batch`](crate::Batch) of this store,
    /// and [`Error::Io`], [`Error::Database`] or [`Error::Corrupt`] when the disk or the database
    /// fails.
    pub fn purge_deleted_tags(&self, tag: &str) -> Result<usize> {
        self.write(|tx, name| tx.purge_deleted_tags(name, tag))
    }

    /// The locks of an item of this repository, which must be live (L1).
    ///
    /// # Errors
    ///
    /// Fails with [`Error::RepositoryUnknown`] if the item is the repository and it is not live,
    /// [`Error::ManifestUnknown`] if it is a manifest that is not live, [`Error::InvalidTag`] or
    /// [`Error::TagUnknown`] if it is a tag that is invalid or not live; and [`Error::Io`],
    /// [`Error::Database`] or [`Error::Corrupt`] when the disk or the database fails.
    pub fn locks(&self, item: &Item) -> Result<Locks> {
        let snapshot = self.snapshot()?;
        locks::check_live(&snapshot, &self.name, item)?;
        locks::locks_of(&snapshot, &self.name, item)
    }

    /// Sets the locks of a live item of this repository: the repository itself, a live
    /// manifest or a live tag (L1, L2). Locks are persisted; [`Locks::UNLOCKED`] removes
    /// them.
    ///
    /// # Errors
    ///
    /// Fails as [`locks`](Repository::locks) does for an item that is not live, with
    /// [`Error::NestedWrite`] inside a [`Batch`](crate::Batch) of this store, and with
    /// [`Error::Io`], [`Error::Database`] or [`Error::Corrupt`] when the disk or the database
    /// fails.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use ocistore::{Error, Item, Locks, Registry};
    /// let repo = Registry::open(dir.path())?.repository("app")?;
    /// repo.put_blob_sha256(b"layer")?;
    /// repo.set_locks(&Item::Repository, Locks::READ_ONLY)?;
    /// assert!(matches!(repo.put_blob_sha256(b"more"), Err(Error::Locked { .. })));
    /// repo.set_locks(&Item::Repository, Locks::UNLOCKED)?;
    /// repo.put_blob_sha256(b"more")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_locks(&self, item: &Item, locks: Locks) -> Result<()> {
        self.write(|tx, name| tx.set_locks(name, item, locks))
    }

    /// Every locked item of this repository with its locks, the repository first, then
    /// manifests and tags in key order.
    ///
    /// # Errors
    ///
    /// Fails only with [`Error::Io`], [`Error::Database`] or [`Error::Corrupt`], when the disk or
    /// the database fails.
    pub fn locked_items(&self) -> Result<Vec<(Item, Locks)>> {
        locks::locked_items(&self.snapshot()?, &self.name)
    }
}
