//! Tag history over time (docs/spec.md: T2): reverting a tag to a manifest its history names,
//! and the history retention the retention clock applies. The events themselves are recorded
//! by `store::tags`.

use super::Core;
use crate::ops::recycle_bin::{OnConflict, RestoreOptions};
use crate::store::Tx;
use crate::store::bin::BinnedManifests;
use crate::store::meta;
use crate::store::tags::history_names;
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
        // Live, or in the bin and not expired (S3); anything else is gone.
        let bin = BinnedManifests::load(&self.t, name, self.now)?;
        let record = self
            .record(name, digest.as_str())?
            .filter(|r| r.deleted.is_none() || bin.holds(digest.as_str()))
            .ok_or_else(|| Error::ManifestUnknown {
                repository: name.to_owned(),
                reference: digest.to_string(),
            })?;
        let options = RestoreOptions::default().on_conflict(on_conflict);
        self.bring_back(name, Some(tag), digest, record, &bin, &options)
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
