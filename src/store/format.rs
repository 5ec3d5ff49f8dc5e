//! The on-disk format: the version a store is in, and the upgrade of older ones.

use std::path::Path;

use redb::ReadableTable;

use super::tables::{Readable, Tables};
use super::{meta, tags};
use crate::values::{Error, Result};

/// The on-disk format this build reads and writes; stored in the `meta` table. Version 1
/// stores are upgraded in place when opened: version 2 adds the `untagged` index.
pub const FORMAT_VERSION: u32 = 2;

/// Writes the format version into a new store, upgrades an older one, or refuses one it does
/// not know. Run only by a handle that has the store alone (`membership`): an upgrade under a
/// live process of an older build would change its tables beneath it.
pub(crate) fn check(t: &mut Tables<'_>, store: &Path) -> Result<()> {
    // A table added within version 2, so built here rather than by an upgrade: an older build
    // still reads the store, which has only gained a table it does not know.
    tags::index_history_by_time(t)?;
    match meta::format_version(t)? {
        None => meta::set_format_version(t, FORMAT_VERSION),
        Some(FORMAT_VERSION) => Ok(()),
        Some(1) => {
            index_untagged_manifests(t)?;
            meta::set_format_version(t, FORMAT_VERSION)
        }
        Some(found) => Err(unsupported(store, found)),
    }
}

/// Checks, without writing, that a store others have open is in this build's format: a
/// handle that joins a store does not upgrade it.
pub(crate) fn check_current(r: &impl Readable, store: &Path) -> Result<()> {
    match meta::format_version(r)? {
        Some(FORMAT_VERSION) => Ok(()),
        Some(found) if found < FORMAT_VERSION => Err(Error::NeedsUpgrade {
            path: store.to_path_buf(),
            found,
            supported: FORMAT_VERSION,
        }),
        Some(found) => Err(unsupported(store, found)),
        None => Err(Error::Corrupt {
            table: "meta",
            reason: format!("store {} has no format version", store.display()),
        }),
    }
}

fn unsupported(store: &Path, found: u32) -> Error {
    Error::UnsupportedFormat {
        path: store.to_path_buf(),
        found,
        supported: FORMAT_VERSION,
    }
}

/// Builds the `untagged` index of a version 1 store: every live manifest without a tag, at
/// its last update.
fn index_untagged_manifests(t: &mut Tables<'_>) -> Result<()> {
    for row in t.manifests_by_time.iter()? {
        let (key, _) = row?;
        let (repo, updated, digest) = key.value();
        if !super::manifests::has_tags(t, repo, digest)? {
            t.untagged.insert((updated, repo, digest), ())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Db;
    use crate::store::tags::{TagCause, TagEvent, history};
    use crate::values::{Digest, OpenMode, Timestamp};

    #[test]
    fn t2_a_store_without_the_history_time_index_gets_it_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.redb");
        let open = || Db::open(&path, 1 << 20, dir.path(), OpenMode::Exclusive, true).unwrap();
        let digest = Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap();
        let event = |at: u64| TagEvent {
            tag: "v1".to_owned(),
            from: None,
            to: Some(digest.clone()),
            at: Timestamp::from_nanos(at),
            cause: TagCause::Push,
        };
        // Events as a build without the index wrote them.
        open()
            .write(Timestamp::default, true, |tx| {
                for (seq, at) in [(1, 10), (2, 20)] {
                    let row = serde_json::to_vec(&serde_json::json!({
                        "tag": "v1", "from": null, "to": digest, "at": at, "cause": "push",
                    }))
                    .unwrap();
                    tx.t.tag_history
                        .insert(("app", "v1", seq), row.as_slice())?;
                }
                Ok(())
            })
            .unwrap();
        // Opened twice: the index is built once, and finds the events by their time.
        drop(open());
        let db = open();
        let removed = db
            .write(Timestamp::default, true, |tx| {
                tx.forget_history_until(Timestamp::from_nanos(10))
            })
            .unwrap();
        assert_eq!(removed, 1);
        let left = history(&db.snapshot().unwrap(), "app", "v1").unwrap();
        assert_eq!(left, [event(20)]);
    }
}
