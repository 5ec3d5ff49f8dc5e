//! Blobs in and out of a repository (docs/spec.md: P1, P2, G2): bytes verified into the blob store
//! before the record naming them commits (C2), reads of linked blobs, and the removal of bytes
//! no record names.

use std::io::Read;
use std::ops::{Bound, RangeBounds};
use std::path::PathBuf;

use bytes::Bytes;

use super::Core;
use redb::ReadableTable;

use crate::blobs::{BlobReader, DIRECTORY_LOCATION};
use crate::store::links::{is_recorded, linked, linked_size};
use crate::store::locks::{Need, check_writable};
use crate::store::repositories::is_live;
use crate::store::tables::Readable;
use crate::store::uploads;
use crate::store::{Tx, meta};
use crate::values::{Digest, Error, IoContext, Item, Page, Result, verify};

/// Bytes in the blob store that no row named when they were found.
pub(crate) enum Unnamed {
    /// The bytes of a blob without a record.
    Blob(Digest),
    /// The bytes of an upload session without a row.
    Upload(String),
    /// Something no row can come to name: a temporary file, or one badly named.
    Other(PathBuf),
}

/// O4: fails with [`Error::BlobLocationMismatch`] unless the blob store is where the store
/// recorded its blobs live. A store without the record keeps them in its directory, unless it
/// holds no blob yet: then the blob store's location is the one to record, and `true` says so
/// (a writing open records it, after the blob store opened).
pub(crate) fn check_location(core: &Core) -> Result<bool> {
    let snapshot = core.snapshot()?;
    let given = core.blobs.location();
    let recorded = match meta::blob_location(&snapshot)? {
        Some(recorded) => recorded,
        None if snapshot.blobs()?.first()?.is_none() => return Ok(given != DIRECTORY_LOCATION),
        None => DIRECTORY_LOCATION.to_owned(),
    };
    if recorded != given {
        return Err(Error::BlobLocationMismatch { recorded, given });
    }
    Ok(false)
}

/// Records where the blobs live, for a store [`check_location`] found without a blob.
pub(crate) fn record_location(core: &Core) -> Result<()> {
    let location = core.blobs.location();
    core.write(true, |tx| {
        // Another process recorded one meanwhile: the next open compares with it.
        if meta::blob_location(&tx.t)?.is_none() {
            meta::set_blob_location(&mut tx.t, &location)?;
        }
        Ok(())
    })
}

/// Whether blob bytes put (or found) after a snapshot whose blob epoch was `epoch` are surely
/// still in place at transaction `tx`: no transaction has deleted blob bytes since, and no
/// collection or repair is under way whose deletion may have failed or been killed half way
/// (its transaction, and its count, rolled back; `meta.deleting_blobs` stays).
pub(crate) fn untouched_since(tx: &Tx<'_>, epoch: u64) -> Result<bool> {
    Ok(meta::blob_epoch(&tx.t)? == epoch && !meta::deleting_blobs(&tx.t)?)
}

/// For [`Tx::link_blob`]: puts blob `digest` back with `put_again` if a collection took it
/// (G2). Unless `untouched` ([`untouched_since`]), only the blob store can tell.
pub(crate) fn ensure(
    core: &Core,
    untouched: bool,
    digest: &Digest,
    put_again: impl FnOnce() -> Result<()>,
) -> Result<()> {
    if untouched || core.blobs.contains(digest)? {
        return Ok(());
    }
    put_again()
}

/// Puts `bytes` into the blob store as blob `digest`, unless `r` has its record and the store
/// would rather not be asked ([`puts_known_blobs`](crate::BlobStore::puts_known_blobs)): the
/// bytes are there then (C2), and only their digest is checked (P1), so a known blob costs no
/// request on object storage. A collection that removes the record meanwhile is caught by
/// [`Tx::link_blob`], which puts them back.
fn store(core: &Core, r: &impl Readable, digest: &Digest, bytes: &[u8]) -> Result<()> {
    if !core.blobs.puts_known_blobs() && is_recorded(r, digest.as_str())? {
        return verify(digest, digest.algorithm().digest(bytes));
    }
    core.space.watch(core.blobs.put(digest, bytes))
}

/// Stores `bytes` as blob `digest` and links it into `repo`, inside transaction `tx`.
pub(crate) fn put_in(
    core: &Core,
    tx: &mut Tx<'_>,
    repo: &str,
    digest: &Digest,
    bytes: &[u8],
) -> Result<()> {
    tx.check_lock(repo, &Item::Repository, Need::Write)?;
    store(core, &tx.t, digest, bytes)?;
    // Put or found under this transaction's lock: no deletion can come between.
    tx.link_blob(repo, digest, bytes.len() as u64, || Ok(()))
}

/// Stores `bytes` as blob `digest` and links it into `repo`, in a transaction of its own.
/// The bytes are written and made durable before the transaction begins, so other writers do
/// not wait for the disk.
pub(crate) fn put(core: &Core, repo: &str, digest: &Digest, bytes: &[u8]) -> Result<()> {
    core.check_no_batch()?;
    // Refused before the bytes are written, so a refusal leaves none behind.
    let snapshot = core.snapshot()?;
    check_writable(&snapshot, repo)?;
    core.room()?;
    let epoch = meta::blob_epoch(&snapshot)?;
    store(core, &snapshot, digest, bytes)?;
    drop(snapshot);
    core.write(true, |tx| {
        let untouched = untouched_since(tx, epoch)?;
        tx.link_blob(repo, digest, bytes.len() as u64, || {
            ensure(core, untouched, digest, || core.blobs.put(digest, bytes))
        })
    })
}

/// The size of blob `digest` if it is linked into live repository `repo`.
pub(crate) fn size(core: &Core, repo: &str, digest: &Digest) -> Result<u64> {
    let snapshot = core.snapshot()?;
    // A soft-deleted repository's blobs are as gone as its manifests (S2).
    if !is_live(&snapshot, repo)? {
        return Err(Error::BlobUnknown {
            repository: repo.to_owned(),
            digest: digest.clone(),
        });
    }
    linked_size(&snapshot, repo, digest)
}

/// Digests of the blobs linked into live repository `repo`, paginated.
pub(crate) fn list(core: &Core, repo: &str, page: &Page) -> Result<Vec<Digest>> {
    if let Some(last) = &page.last {
        Digest::parse(last)?;
    }
    let snapshot = core.snapshot()?;
    if !is_live(&snapshot, repo)? {
        return Ok(Vec::new());
    }
    linked(&snapshot, repo, page)
}

/// A reader over `range` of blob `digest` of `repo`. Bytes a collection removed since the
/// record was read are [`Error::BlobUnknown`] (G2).
pub(crate) fn reader(
    core: &Core,
    repo: &str,
    digest: &Digest,
    range: impl RangeBounds<u64>,
) -> Result<BlobReader> {
    let size = size(core, repo, digest)?;
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => size,
    };
    if start > end || end > size {
        return Err(Error::InvalidRange { start, end, size });
    }
    let inner = core
        .blobs
        .read(digest, start, end)?
        .ok_or_else(|| Error::BlobUnknown {
            repository: repo.to_owned(),
            digest: digest.clone(),
        })?;
    Ok(BlobReader::new(inner, end - start))
}

/// The whole of blob `digest` of `repo`.
pub(crate) fn bytes(core: &Core, repo: &str, digest: &Digest) -> Result<Bytes> {
    let mut reader = reader(core, repo, digest, ..)?;
    let mut buf = Vec::with_capacity(usize::try_from(reader.len()).unwrap_or(0));
    reader.read_to_end(&mut buf).at(format!("blobs/{digest}"))?;
    Ok(buf.into())
}

/// Removes the entries of `files` that no row names now, the blobs among them with one
/// [`delete_many`](crate::BlobStore::delete_many); returns how many it removed (a blob counts
/// as removed when it was asked to go). Inside the write transaction the check is final: no
/// put or upload can commit a row for them before they are gone.
pub(crate) fn remove_unnamed(core: &Core, tx: &mut Tx<'_>, files: &[Unnamed]) -> Result<u64> {
    let mut blobs = Vec::new();
    let mut removed = 0;
    for file in files {
        let gone = match file {
            Unnamed::Blob(digest) => {
                if !is_recorded(&tx.t, digest.as_str())? {
                    blobs.push(digest.clone());
                }
                continue;
            }
            Unnamed::Upload(id) if !uploads::is_open(&tx.t, id)? => core.blobs.delete_upload(id)?,
            Unnamed::Other(path) => core.blobs.remove_entry(path)?,
            Unnamed::Upload(_) => false,
        };
        removed += u64::from(gone);
    }
    if !blobs.is_empty() {
        meta::bump_blob_epoch(&mut tx.t)?;
        core.blobs.delete_many(&blobs)?;
    }
    Ok(removed + blobs.len() as u64)
}
