//! Storage accounting (docs/spec.md: A1): the bytes of the registry, of each repository, of the recycle
//! bin and of the garbage the collector has yet to take, from one read snapshot.

use redb::ReadableTable;

use super::Core;
use super::collector::{FingerprintMap, Visit, fingerprint, scan_references};
use crate::store::repositories::RepositoryRecord;
use crate::store::tables::{Readable, decode};
use crate::values::Result;

/// How the registry's blob bytes are used (A1). Manifests are metadata and not counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Usage {
    /// Blobs stored.
    pub blobs: u64,
    /// Their bytes: what the blob store holds, each blob counted once however many
    /// repositories link it.
    pub bytes: u64,
    /// Every repository, live or soft-deleted, in name order.
    pub repositories: Vec<RepositoryUsage>,
    /// Bytes of the blobs that manifests in the recycle bin reference and no live manifest
    /// does: what purging the bin would let the collector reclaim (S14).
    pub soft_deleted_bytes: u64,
    /// Bytes of the blobs that no manifest references, live or in the bin: what the collector
    /// reclaims once they are older than its grace period, unless a manifest comes to
    /// reference them first (a layer uploaded for a manifest not pushed yet counts here).
    pub garbage_bytes: u64,
}

/// The blobs linked into one repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct RepositoryUsage {
    /// The repository's name.
    pub name: String,
    /// Whether the repository is in the recycle bin.
    pub deleted: bool,
    /// Blobs linked into it.
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Bytes of the blobs linked into no other repository: what deleting and purging this
    /// repository would let the collector reclaim.
    pub unique_bytes: u64,
    /// Bytes of the blobs linked into other repositories too (live or soft-deleted).
    pub shared_bytes: u64,
}

/// What the snapshot says of one blob.
#[derive(Default)]
struct BlobUse {
    size: u64,
    links: u32,
    /// Referenced by a live manifest.
    live: bool,
    /// Referenced by a manifest in the recycle bin.
    binned: bool,
}

/// Storage usage; see [`Registry::usage`](crate::Registry::usage).
pub(crate) fn usage(core: &Core) -> Result<Usage> {
    let snapshot = core.snapshot()?;
    let mut usage = Usage::default();
    let mut blobs = FingerprintMap::default();
    for row in snapshot.blobs()?.iter()? {
        let (digest, value) = row?;
        let size = value.value().0;
        usage.blobs += 1;
        usage.bytes += size;
        blobs.insert(
            fingerprint(digest.value()),
            BlobUse {
                size,
                ..BlobUse::default()
            },
        );
    }
    // A link or reference to a blob without a record counts nowhere: `fsck` reports it.
    let links = snapshot.blob_links()?;
    for row in links.iter()? {
        if let Some(blob) = blobs.get_mut(&fingerprint(row?.0.value().1)) {
            blob.links = blob.links.saturating_add(1);
        }
    }
    scan_references(&snapshot, None, None, |visit| {
        if let Visit::Reference { live, blob, .. } = visit
            && let Some(blob) = blobs.get_mut(&fingerprint(blob))
        {
            *if live {
                &mut blob.live
            } else {
                &mut blob.binned
            } = true;
        }
        Ok(())
    })?;
    for blob in blobs.values() {
        match (blob.live, blob.binned) {
            (false, true) => usage.soft_deleted_bytes += blob.size,
            (false, false) => usage.garbage_bytes += blob.size,
            (true, _) => {}
        }
    }
    for row in snapshot.repositories()?.iter()? {
        let (name, record) = row?;
        let record: RepositoryRecord = decode("repositories", record.value())?;
        let mut repo = RepositoryUsage {
            name: name.value().to_owned(),
            deleted: record.deleted.is_some(),
            ..RepositoryUsage::default()
        };
        for row in links.range((name.value(), "")..)? {
            let (key, _) = row?;
            let (r, digest) = key.value();
            if r != repo.name {
                break;
            }
            let Some(blob) = blobs.get(&fingerprint(digest)) else {
                continue;
            };
            repo.blobs += 1;
            repo.bytes += blob.size;
            if blob.links == 1 {
                repo.unique_bytes += blob.size;
            } else {
                repo.shared_bytes += blob.size;
            }
        }
        usage.repositories.push(repo);
    }
    Ok(usage)
}
