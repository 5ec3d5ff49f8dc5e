//! Tag history over time (docs/spec.md: T2): reverting a tag to a manifest its history names,
//! and the history retention the retention clock applies. The events themselves are recorded
//! by `store::tags`.

use super::Core;
use crate::ops::recycle_bin::{OnConflict, Restore};
use crate::store::Tx;
use crate::store::meta;
use crate::store::tags::{TagCause, history_names};
use crate::values::{
    Digest, Error, Result, history_retention, validate_history_retention_days, validate_tag,
};

impl Tx<'_> {
    /// Points `tag` of `name` back at `digest`, which its history names; see
    /// [`Repository::revert_tag`](crate::Repository::revert_tag).
    pub(crate) fn revert_tag(
        &mut self,
        name: &str,
        tag: &str,
        digest: &Digest,
        on_conflict: OnConflict,
    ) -> Result<()> {
        validate_tag(tag)?;
        if !history_names(&self.t, name, tag, digest)? {
            return Err(Error::NotInHistory {
                repository: name.to_owned(),
                tag: tag.to_owned(),
                digest: digest.clone(),
            });
        }
        let record = self
            .record(name, digest.as_str())?
            .ok_or_else(|| Error::ManifestUnknown {
                repository: name.to_owned(),
                reference: digest.to_string(),
            })?;
        if record.deleted.is_some() {
            return self
                .restore(name, Restore::TagAndDigest(tag, digest), on_conflict)
                .map(drop);
        }
        // A live manifest is in a live repository: only the tag moves.
        self.check_tag_move(name, tag, digest)?;
        self.make_way(name, tag, digest, on_conflict)?;
        self.move_tag(name, tag, digest, TagCause::Restore)
            .map(drop)
    }

    /// Removes the history events older than the history retention, by the retention clock;
    /// returns how many went (T2).
    pub(crate) fn expire_history(&mut self) -> Result<usize> {
        match history_retention(meta::history_retention_days(&self.t)?) {
            Some(retention) => self.forget_history_until(self.now.saturating_sub(retention)),
            None => Ok(0),
        }
    }
}

/// Sets the history retention; see
/// [`Registry::set_history_retention_days`](crate::Registry::set_history_retention_days).
pub(crate) fn set_retention_days(core: &Core, days: u32) -> Result<()> {
    validate_history_retention_days(days)?;
    core.write(true, |tx| meta::set_history_retention_days(&mut tx.t, days))
}
