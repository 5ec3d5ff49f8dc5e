//! Every key of the `meta` table, with its encoding: settings and bookkeeping that are one
//! value per store. No other module names a key.

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::tables::{Readable, Tables, decode, encode};
use crate::values::{
    DEFAULT_HISTORY_RETENTION_DAYS, Error, Result, RetentionPolicy, SoftDeletePolicy, Timestamp,
};

/// u32 LE: the on-disk format the store is in.
const FORMAT_VERSION: &str = "format_version";
/// u64 LE: the last number of the event sequence given out.
const SEQ: &str = "seq";
/// JSON [`SoftDeletePolicy`]; absent means the default.
const SOFT_DELETE: &str = "soft_delete";
/// JSON [`StoredRetention`]; absent means the default.
const RETENTION: &str = "retention";
/// u32 LE: days tag history is kept, 0 for ever (T2); absent means the default.
const HISTORY_RETENTION_DAYS: &str = "history_retention_days";
/// u64 LE nanoseconds: when autopurge last ran (S4).
const AUTOPURGE_LAST_RUN: &str = "autopurge_last_run";
/// Present (one byte) while a collection runs: writers journal the blobs they use.
const COLLECTING: &str = "collecting";
/// u64 LE: how many transactions have deleted blob bytes; absent means 0. A write that put
/// bytes before its transaction and finds it unchanged there (and no deletion under way) knows
/// they are still in place.
const BLOB_EPOCH: &str = "blob_epoch";
/// Present (one byte) while a collection or a repair may delete blob bytes: committed before
/// the first deletion, removed after the last, so that a deletion that failed or was killed
/// half way, which no committed epoch counts, still keeps writers from trusting the epoch.
const DELETING_BLOBS: &str = "deleting_blobs";
/// UTF-8: where the store's blobs live ([`BlobStore::location`](crate::BlobStore::location),
/// O4); absent means the store's own directory.
const BLOB_LOCATION: &str = "blob_location";

fn fixed<const N: usize>(r: &impl Readable, key: &'static str) -> Result<Option<[u8; N]>> {
    r.meta()?
        .get(key)?
        .map(|v| {
            <[u8; N]>::try_from(v.value()).map_err(|_| Error::Corrupt {
                table: "meta",
                reason: format!("{key} is not {N} bytes"),
            })
        })
        .transpose()
}

fn json<T: serde::de::DeserializeOwned + Default>(r: &impl Readable, key: &str) -> Result<T> {
    r.meta()?
        .get(key)?
        .map_or(Ok(T::default()), |v| decode("meta", v.value()))
}

/// The number of transactions that deleted blob bytes so far.
pub(crate) fn blob_epoch(r: &impl Readable) -> Result<u64> {
    Ok(fixed(r, BLOB_EPOCH)?.map_or(0, u64::from_le_bytes))
}

/// Counts this transaction among those that delete blob bytes.
pub(crate) fn bump_blob_epoch(t: &mut Tables<'_>) -> Result<()> {
    let next = blob_epoch(t)? + 1;
    t.meta.insert(BLOB_EPOCH, next.to_le_bytes().as_slice())?;
    Ok(())
}

/// Whether the flag `key` (a row of one byte, or none) is up.
fn flag(r: &impl Readable, key: &str) -> Result<bool> {
    Ok(r.meta()?.get(key)?.is_some())
}

fn set_flag(t: &mut Tables<'_>, key: &'static str, on: bool) -> Result<()> {
    if on {
        t.meta.insert(key, [1u8].as_slice())?;
    } else {
        t.meta.remove(key)?;
    }
    Ok(())
}

/// Whether a collection or a repair may be deleting blob bytes.
pub(crate) fn deleting_blobs(r: &impl Readable) -> Result<bool> {
    flag(r, DELETING_BLOBS)
}

pub(crate) fn set_deleting_blobs(t: &mut Tables<'_>, on: bool) -> Result<()> {
    set_flag(t, DELETING_BLOBS, on)
}

/// Where the store's blobs live, if the store recorded it (O4).
pub(crate) fn blob_location(r: &impl Readable) -> Result<Option<String>> {
    r.meta()?
        .get(BLOB_LOCATION)?
        .map(|v| {
            String::from_utf8(v.value().to_vec()).map_err(|_| Error::Corrupt {
                table: "meta",
                reason: format!("{BLOB_LOCATION} is not UTF-8"),
            })
        })
        .transpose()
}

pub(crate) fn set_blob_location(t: &mut Tables<'_>, location: &str) -> Result<()> {
    t.meta.insert(BLOB_LOCATION, location.as_bytes())?;
    Ok(())
}

/// The store's format version; `None` for a new store.
pub(crate) fn format_version(r: &impl Readable) -> Result<Option<u32>> {
    Ok(fixed(r, FORMAT_VERSION)?.map(u32::from_le_bytes))
}

pub(crate) fn set_format_version(t: &mut Tables<'_>, version: u32) -> Result<()> {
    t.meta
        .insert(FORMAT_VERSION, version.to_le_bytes().as_slice())?;
    Ok(())
}

/// The last number of the event sequence given out (0 if none).
pub(crate) fn seq(r: &impl Readable) -> Result<u64> {
    Ok(fixed(r, SEQ)?.map_or(0, u64::from_le_bytes))
}

pub(crate) fn set_seq(t: &mut Tables<'_>, seq: u64) -> Result<()> {
    t.meta.insert(SEQ, seq.to_le_bytes().as_slice())?;
    Ok(())
}

/// The soft delete policy in force (S1).
pub(crate) fn soft_delete(r: &impl Readable) -> Result<SoftDeletePolicy> {
    json(r, SOFT_DELETE)
}

pub(crate) fn set_soft_delete(t: &mut Tables<'_>, policy: SoftDeletePolicy) -> Result<()> {
    t.meta.insert(SOFT_DELETE, encode(&policy).as_slice())?;
    Ok(())
}

/// The retention policy as stored, with the time it took effect (R1).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct StoredRetention {
    #[serde(flatten)]
    pub policy: RetentionPolicy,
    /// Nanoseconds, as every stored time.
    #[serde(default, with = "crate::values::nanos::option")]
    pub since: Option<Timestamp>,
}

pub(crate) fn retention(r: &impl Readable) -> Result<StoredRetention> {
    json(r, RETENTION)
}

pub(crate) fn set_retention(t: &mut Tables<'_>, stored: &StoredRetention) -> Result<()> {
    t.meta.insert(RETENTION, encode(stored).as_slice())?;
    Ok(())
}

/// Days tag history is kept, 0 for ever (T2).
pub(crate) fn history_retention_days(r: &impl Readable) -> Result<u32> {
    Ok(
        fixed(r, HISTORY_RETENTION_DAYS)?
            .map_or(DEFAULT_HISTORY_RETENTION_DAYS, u32::from_le_bytes),
    )
}

pub(crate) fn set_history_retention_days(t: &mut Tables<'_>, days: u32) -> Result<()> {
    t.meta
        .insert(HISTORY_RETENTION_DAYS, days.to_le_bytes().as_slice())?;
    Ok(())
}

/// When autopurge last ran (S4).
pub(crate) fn autopurge_last_run(r: &impl Readable) -> Result<Option<Timestamp>> {
    Ok(fixed(r, AUTOPURGE_LAST_RUN)?.map(|b| Timestamp::from_nanos(u64::from_le_bytes(b))))
}

pub(crate) fn set_autopurge_last_run(t: &mut Tables<'_>, at: Timestamp) -> Result<()> {
    t.meta
        .insert(AUTOPURGE_LAST_RUN, at.as_nanos().to_le_bytes().as_slice())?;
    Ok(())
}

/// Whether a collection is running.
pub(crate) fn collecting(r: &impl Readable) -> Result<bool> {
    flag(r, COLLECTING)
}

/// Switches the collector's journal on or off; either way it starts empty.
pub(crate) fn set_collecting(t: &mut Tables<'_>, on: bool) -> Result<()> {
    set_flag(t, COLLECTING, on)?;
    t.gc_touched.retain(|_, ()| false)?;
    Ok(())
}
