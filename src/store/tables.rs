//! The redb tables: every piece of metadata lives in one of these, and this is the one place
//! they are defined. `docs/design.md` describes each one, its keys and values and the
//! invariants that tie them together.
//!
//! One list makes three things, so they cannot drift apart: the table definitions, [`Tables`]
//! (every table of a write transaction, opened once) and [`Snapshot`] (a read transaction that
//! opens a table the first time it is asked for). Both implement [`Readable`], so one function
//! reads the same rows from a snapshot or from inside a write (as fjall's `Readable` does).

use std::cell::OnceCell;

use redb::{
    ReadOnlyTable, ReadTransaction, ReadableTable, Table, TableDefinition, WriteTransaction,
};

use crate::values::{Error, Page, Result};

macro_rules! tables {
    ($( $(#[$doc:meta])* $field:ident, $def:ident, $ty:ident: $k:ty => $v:ty; )*) => {
        $(
            $(#[$doc])*
            pub(crate) const $def: TableDefinition<'static, $k, $v> =
                TableDefinition::new(stringify!($field));
        )*

        /// Every table, opened once for a whole write transaction: opening a redb table costs
        /// more than most single-row updates, and one transaction may make thousands of them.
        pub(crate) struct Tables<'t> {
            $( pub $field: Table<'t, $k, $v>, )*
        }

        impl<'t> Tables<'t> {
            /// Opens (and on first use creates) every table.
            pub(crate) fn open(txn: &'t WriteTransaction) -> Result<Tables<'t>> {
                Ok(Tables { $( $field: txn.open_table($def)?, )* })
            }
        }

        /// A consistent read of the store: a redb read transaction, whose tables open on first
        /// use. Readers never wait for writers (C3).
        // Not every table is read from a snapshot; all are, for one definition of each.
        #[allow(dead_code)]
        pub(crate) struct Snapshot {
            txn: ReadTransaction,
            $( $field: OnceCell<ReadOnlyTable<$k, $v>>, )*
        }

        impl Snapshot {
            pub(crate) fn new(txn: ReadTransaction) -> Snapshot {
                Snapshot { txn, $( $field: OnceCell::new(), )* }
            }
        }

        /// The tables, read from a [`Snapshot`] or from inside a write ([`Tables`]).
        #[allow(dead_code)]
        pub(crate) trait Readable {
            $(
                #[allow(missing_docs)]
                type $ty: ReadableTable<$k, $v>;
                #[allow(missing_docs)]
                fn $field(&self) -> Result<&Self::$ty>;
            )*
        }

        impl Readable for Snapshot {
            $(
                type $ty = ReadOnlyTable<$k, $v>;
                fn $field(&self) -> Result<&Self::$ty> {
                    if let Some(table) = self.$field.get() {
                        return Ok(table);
                    }
                    let table = self.txn.open_table($def)?;
                    Ok(self.$field.get_or_init(|| table))
                }
            )*
        }

        impl<'t> Readable for Tables<'t> {
            $(
                type $ty = Table<'t, $k, $v>;
                fn $field(&self) -> Result<&Self::$ty> {
                    Ok(&self.$field)
                }
            )*
        }
    };
}

tables! {
    /// Settings and bookkeeping, one row per key of [`meta`](super::meta).
    meta, META, Meta: &'static str => &'static [u8];
    /// Repository name → JSON record.
    repositories, REPOSITORIES, Repositories: &'static str => &'static [u8];
    /// Blob digest → (size, created): one row per blob file in the blob store.
    blobs, BLOBS, Blobs: &'static str => (u64, u64);
    /// (repository, blob digest) → linked at: which repository may read which blob (P2).
    blob_links, BLOB_LINKS, BlobLinks: (&'static str, &'static str) => u64;
    /// (repository, manifest digest) → JSON manifest record.
    manifests, MANIFESTS, Manifests: (&'static str, &'static str) => &'static [u8];
    /// (repository, manifest digest) → the exact bytes pushed.
    manifest_bodies, MANIFEST_BODIES, ManifestBodies: (&'static str, &'static str) => &'static [u8];
    /// (repository, updated, manifest digest) → (): manifests in time order (P7).
    manifests_by_time, MANIFESTS_BY_TIME, ManifestsByTime: (&'static str, u64, &'static str) => ();
    /// (repository, tag) → (manifest digest, updated): the live tags.
    tags, TAGS, Tags: (&'static str, &'static str) => (&'static str, u64);
    /// (repository, manifest digest, tag) → (): the tags of each manifest.
    manifest_tags, MANIFEST_TAGS, ManifestTags: (&'static str, &'static str, &'static str) => ();
    /// (repository, subject digest, referrer digest) → (): referrers of each subject (P8).
    referrers, REFERRERS, Referrers: (&'static str, &'static str, &'static str) => ();
    /// (repository, child digest, index digest) → (): the children of live indexes (D5).
    children, CHILDREN, Children: (&'static str, &'static str, &'static str) => ();
    /// (repository, manifest digest) → deleted at: the manifests in the recycle bin (S5).
    deleted_manifests, DELETED_MANIFESTS, DeletedManifests: (&'static str, &'static str) => u64;
    /// (repository, manifest digest, tag, seq) → deleted at: the tags in the recycle bin (S5).
    deleted_tags, DELETED_TAGS, DeletedTags: (&'static str, &'static str, &'static str, u64) => u64;
    /// (deleted at, kind, repository, digest, tag, seq) → (): every tombstone in deletion order,
    /// so autopurge finds the expired ones with one range scan (S3, S4).
    tombstones, TOMBSTONES, Tombstones: (u64, u8, &'static str, &'static str, &'static str, u64) => ();
    /// (repository, tag, seq) → JSON tag event: every move and deletion of a tag (T1).
    tag_history, TAG_HISTORY, TagHistory: (&'static str, &'static str, u64) => &'static [u8];
    /// (at, repository, tag, seq) → (): every history event by its time, so the retention
    /// clock finds the expired ones with one range scan (T2).
    history_by_time, HISTORY_BY_TIME, HistoryByTime: (u64, &'static str, &'static str, u64) => ();
    /// Upload session id → (repository, started): sessions that survive a restart (P1).
    uploads, UPLOADS, Uploads: &'static str => (&'static str, u64);
    /// Upload session id → the offset its last acknowledged append reached, committed after
    /// the chunk was durable: the truth every process continuing the session goes by (M3).
    upload_offsets, UPLOAD_OFFSETS, UploadOffsets: &'static str => u64;
    /// Upload session id → the blob store's mark for it ([`UploadMark`](crate::UploadMark)):
    /// what a store that sends parts away must find again, committed with the offset.
    upload_marks, UPLOAD_MARKS, UploadMarks: &'static str => &'static [u8];
    /// (repository, item) → lock bits (1: delete disabled, 2: write disabled): the locked items
    /// (L1). The item is "" for the repository, a digest for a manifest, a name for a tag; only
    /// locked items have a row.
    locks, LOCKS, Locks: (&'static str, &'static str) => u8;
    /// (untagged since, repository, manifest digest) → (): every live manifest that no tag points
    /// at, by the time it was last updated, which for these is when it lost its last tag or was
    /// pushed or restored untagged (R1).
    untagged, UNTAGGED, Untagged: (u64, &'static str, &'static str) => ();
    /// Blob digest → (): the blobs linked or referenced while a collection runs.
    gc_touched, GC_TOUCHED, GcTouched: &'static str => ();
}

/// A key of the `tombstones` table: (deleted at, kind, repository, digest, tag, seq).
pub(crate) type Tombstone<'a> = (u64, u8, &'a str, &'a str, &'a str, u64);

/// Tombstone kinds, in the order autopurge handles tombstones deleted at the same time.
pub(crate) const TOMBSTONE_TAG: u8 = 0;
pub(crate) const TOMBSTONE_MANIFEST: u8 = 1;
pub(crate) const TOMBSTONE_REPOSITORY: u8 = 2;

/// The key of a repository's tombstone in the `tombstones` table.
pub(crate) fn repository_tombstone(name: &str, deleted: crate::values::Timestamp) -> Tombstone<'_> {
    (deleted.as_nanos(), TOMBSTONE_REPOSITORY, name, "", "", 0)
}

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
