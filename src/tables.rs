//! The redb tables: every piece of metadata lives in one of these. `docs/design.md` describes
//! each one, its keys and values and the invariants that tie them together.

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};

use crate::error::{Error, Result};
use crate::registry::Page;

/// Settings and bookkeeping: `format_version` (u32 LE), `seq` (u64 LE, the last event number
/// given out), `soft_delete` (JSON policy), `autopurge_last_run` (u64 LE nanoseconds).
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Repository name → JSON record.
pub(crate) const REPOSITORIES: TableDefinition<&str, &[u8]> = TableDefinition::new("repositories");
/// Blob digest → (size, created): one row per blob file in the blob store.
pub(crate) const BLOBS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("blobs");
/// (repository, blob digest) → linked at: which repository may read which blob (P2).
pub(crate) const BLOB_LINKS: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("blob_links");
/// (repository, manifest digest) → JSON manifest record.
pub(crate) const MANIFESTS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("manifests");
/// (repository, manifest digest) → the exact bytes pushed.
pub(crate) const MANIFEST_BODIES: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("manifest_bodies");
/// (repository, updated, manifest digest) → (): manifests in time order (P7).
pub(crate) const MANIFESTS_BY_TIME: TableDefinition<(&str, u64, &str), ()> =
    TableDefinition::new("manifests_by_time");
/// (repository, tag) → (manifest digest, updated): the live tags.
pub(crate) const TAGS: TableDefinition<(&str, &str), (&str, u64)> = TableDefinition::new("tags");
/// (repository, manifest digest, tag) → (): the tags of each manifest.
pub(crate) const MANIFEST_TAGS: TableDefinition<(&str, &str, &str), ()> =
    TableDefinition::new("manifest_tags");
/// (repository, subject digest, referrer digest) → (): referrers of each subject (P8).
pub(crate) const REFERRERS: TableDefinition<(&str, &str, &str), ()> =
    TableDefinition::new("referrers");
/// (repository, child digest, index digest) → (): the children of live indexes (D5).
pub(crate) const CHILDREN: TableDefinition<(&str, &str, &str), ()> =
    TableDefinition::new("children");
/// (repository, manifest digest) → deleted at: the manifests in the recycle bin (S5).
pub(crate) const DELETED_MANIFESTS: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("deleted_manifests");
/// (repository, manifest digest, tag, seq) → deleted at: the tags in the recycle bin (S5).
pub(crate) const DELETED_TAGS: TableDefinition<(&str, &str, &str, u64), u64> =
    TableDefinition::new("deleted_tags");
/// (deleted at, kind, repository, digest, tag, seq) → (): every tombstone in deletion order,
/// so autopurge finds the expired ones with one range scan (S3, S4).
pub(crate) const TOMBSTONES: TableDefinition<(u64, u8, &str, &str, &str, u64), ()> =
    TableDefinition::new("tombstones");
/// (repository, tag, seq) → JSON tag event: every move and deletion of a tag (T1).
pub(crate) const TAG_HISTORY: TableDefinition<(&str, &str, u64), &[u8]> =
    TableDefinition::new("tag_history");
/// (repository, manifest digest, seq) → tag: the history events naming each manifest (T2).
pub(crate) const HISTORY_BY_DIGEST: TableDefinition<(&str, &str, u64), &str> =
    TableDefinition::new("history_by_digest");
/// Upload session id → (repository, started): sessions that survive a restart (P1).
pub(crate) const UPLOADS: TableDefinition<&str, (&str, u64)> = TableDefinition::new("uploads");
/// (repository, item) → lock bits (1: delete disabled, 2: write disabled): the locked items
/// (L1). The item is "" for the repository, a digest for a manifest, a name for a tag; only
/// locked items have a row.
pub(crate) const LOCKS: TableDefinition<(&str, &str), u8> = TableDefinition::new("locks");
/// (untagged since, repository, manifest digest) → (): every live manifest that no tag points
/// at, by the time it was last updated, which for these is when it lost its last tag or was
/// pushed or restored untagged (R1).
pub(crate) const UNTAGGED: TableDefinition<(u64, &str, &str), ()> =
    TableDefinition::new("untagged");
/// Blob digest → (): the blobs linked or referenced while a collection runs.
pub(crate) const GC_TOUCHED: TableDefinition<&str, ()> = TableDefinition::new("gc_touched");

/// Decodes a JSON record read from `table`.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    table: &'static str,
    bytes: &[u8],
) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
        table,
        reason: e.to_string(),
    })
}

/// Encodes a record for storage. Records are plain data and always serialize.
pub(crate) fn encode<T: serde::Serialize>(record: &T) -> Vec<u8> {
    serde_json::to_vec(record).expect("records serialize to JSON")
}

/// One page of the rows of a `(prefix, _)` table, in key order, each mapped by `f` from the
/// second key part and the value.
pub(crate) fn page_under<V: redb::Value + 'static, T>(
    table: &impl ReadableTable<(&'static str, &'static str), V>,
    prefix: &str,
    page: &Page,
    mut f: impl FnMut(&str, V::SelfType<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let after = page.last.as_deref();
    let mut out = Vec::new();
    for row in table.range((prefix, after.unwrap_or(""))..)? {
        if out.len() == page.limit() {
            break;
        }
        let (key, value) = row?;
        let (p, k) = key.value();
        if p != prefix {
            break;
        }
        if after != Some(k) {
            out.push(f(k, value.value())?);
        }
    }
    Ok(out)
}

/// The third key parts of the rows of a `(a, b, _)` table under `(a, b)`, in key order.
pub(crate) fn keys_under2<V: redb::Value + 'static>(
    table: &impl ReadableTable<(&'static str, &'static str, &'static str), V>,
    a: &str,
    b: &str,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for row in table.range((a, b, "")..)? {
        let (key, _) = row?;
        let (ka, kb, kc) = key.value();
        if ka != a || kb != b {
            break;
        }
        out.push(kc.to_owned());
    }
    Ok(out)
}

/// Every table, opened once for a whole write transaction: opening a redb table costs more
/// than most single-row updates, and one transaction may make thousands of them.
pub(crate) struct Tables<'t> {
    pub meta: Table<'t, &'static str, &'static [u8]>,
    pub repositories: Table<'t, &'static str, &'static [u8]>,
    pub blobs: Table<'t, &'static str, (u64, u64)>,
    pub blob_links: Table<'t, (&'static str, &'static str), u64>,
    pub manifests: Table<'t, (&'static str, &'static str), &'static [u8]>,
    pub manifest_bodies: Table<'t, (&'static str, &'static str), &'static [u8]>,
    pub manifests_by_time: Table<'t, (&'static str, u64, &'static str), ()>,
    pub tags: Table<'t, (&'static str, &'static str), (&'static str, u64)>,
    pub manifest_tags: Table<'t, (&'static str, &'static str, &'static str), ()>,
    pub referrers: Table<'t, (&'static str, &'static str, &'static str), ()>,
    pub uploads: Table<'t, &'static str, (&'static str, u64)>,
    pub children: Table<'t, (&'static str, &'static str, &'static str), ()>,
    pub deleted_manifests: Table<'t, (&'static str, &'static str), u64>,
    pub deleted_tags: Table<'t, (&'static str, &'static str, &'static str, u64), u64>,
    pub tombstones: Table<'t, (u64, u8, &'static str, &'static str, &'static str, u64), ()>,
    pub tag_history: Table<'t, (&'static str, &'static str, u64), &'static [u8]>,
    pub history_by_digest: Table<'t, (&'static str, &'static str, u64), &'static str>,
    pub gc_touched: Table<'t, &'static str, ()>,
    pub locks: Table<'t, (&'static str, &'static str), u8>,
    pub untagged: Table<'t, (u64, &'static str, &'static str), ()>,
}

impl<'t> Tables<'t> {
    /// Opens (and on first use creates) every table.
    pub(crate) fn open(txn: &'t WriteTransaction) -> Result<Tables<'t>> {
        Ok(Tables {
            meta: txn.open_table(META)?,
            repositories: txn.open_table(REPOSITORIES)?,
            blobs: txn.open_table(BLOBS)?,
            blob_links: txn.open_table(BLOB_LINKS)?,
            manifests: txn.open_table(MANIFESTS)?,
            manifest_bodies: txn.open_table(MANIFEST_BODIES)?,
            manifests_by_time: txn.open_table(MANIFESTS_BY_TIME)?,
            tags: txn.open_table(TAGS)?,
            manifest_tags: txn.open_table(MANIFEST_TAGS)?,
            referrers: txn.open_table(REFERRERS)?,
            uploads: txn.open_table(UPLOADS)?,
            children: txn.open_table(CHILDREN)?,
            deleted_manifests: txn.open_table(DELETED_MANIFESTS)?,
            deleted_tags: txn.open_table(DELETED_TAGS)?,
            tombstones: txn.open_table(TOMBSTONES)?,
            tag_history: txn.open_table(TAG_HISTORY)?,
            history_by_digest: txn.open_table(HISTORY_BY_DIGEST)?,
            gc_touched: txn.open_table(GC_TOUCHED)?,
            locks: txn.open_table(LOCKS)?,
            untagged: txn.open_table(UNTAGGED)?,
        })
    }
}
