//! The on-disk format: the version a store is in, and the upgrade of older ones.

use redb::ReadableTable;

use super::tables::Tables;
use super::{meta, tags};
use crate::values::{Error, Result};

/// The on-disk format this build reads and writes; stored in the `meta` table. Version 1
/// stores are upgraded in place when opened: version 2 adds the `untagged` index.
pub const FORMAT_VERSION: u32 = 2;

/// Writes the format version into a new store, upgrades an older one, or refuses one it does
/// not know. A collection the last process was running when it stopped is over.
pub(crate) fn check(t: &mut Tables<'_>, store: &std::path::Path) -> Result<()> {
    meta::set_collecting(t, false)?;
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
        Some(found) => Err(Error::UnsupportedFormat {
            path: store.to_path_buf(),
            found,
            supported: FORMAT_VERSION,
        }),
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
