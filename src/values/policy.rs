//! The policies a registry keeps in its settings: soft delete (docs/spec.md: S1), retention of
//! untagged manifests (R1) and the retention of tag history (T2). Plain values: where they are
//! stored and what they do live above.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Error, Result, Timestamp};

const DAY: Duration = Duration::from_secs(86_400);

/// The soft delete policy (S1): whether deletes go to the recycle bin, and how long
/// tombstones stay there before autopurge removes them.
///
/// ```
/// use ocistore::SoftDeletePolicy;
/// assert_eq!(SoftDeletePolicy::default(), SoftDeletePolicy::disabled(7)?);
/// assert!(SoftDeletePolicy::enabled(14).is_ok());
/// assert!(SoftDeletePolicy::enabled(91).is_err());
/// // Switching it off keeps the days (S1).
/// assert_eq!(SoftDeletePolicy::enabled(30)?.with_enabled(false).retention_days, 30);
/// # Ok::<(), ocistore::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SoftDeletePolicy {
    /// Whether deletes tombstone instead of removing.
    pub enabled: bool,
    /// Days a tombstone stays restorable: 1 to 90.
    pub retention_days: u32,
}

impl Default for SoftDeletePolicy {
    fn default() -> Self {
        SoftDeletePolicy {
            enabled: false,
            retention_days: 7,
        }
    }
}

impl SoftDeletePolicy {
    /// The policy switched on with a retention of `retention_days` (1 to 90).
    ///
    /// # Errors
    ///
    /// Fails with [`Error::InvalidSetting`] unless `retention_days` is 1 to 90.
    pub fn enabled(retention_days: u32) -> Result<SoftDeletePolicy> {
        Self::new(true, retention_days)
    }

    /// The policy switched off, keeping a retention of `retention_days` (1 to 90) for the
    /// tombstones already in the bin (S15) and for when it is switched on again.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::InvalidSetting`] unless `retention_days` is 1 to 90.
    pub fn disabled(retention_days: u32) -> Result<SoftDeletePolicy> {
        Self::new(false, retention_days)
    }

    fn new(enabled: bool, retention_days: u32) -> Result<SoftDeletePolicy> {
        let policy = SoftDeletePolicy {
            enabled,
            retention_days,
        };
        policy.validate()?;
        Ok(policy)
    }

    /// This policy switched on or off, with the same retention (S1).
    #[must_use]
    pub fn with_enabled(self, enabled: bool) -> SoftDeletePolicy {
        SoftDeletePolicy { enabled, ..self }
    }

    pub(crate) fn validate(self) -> Result<()> {
        if (1..=90).contains(&self.retention_days) {
            Ok(())
        } else {
            Err(Error::InvalidSetting {
                setting: "soft delete retention_days",
                value: self.retention_days.to_string(),
                reason: "must be 1 to 90 days",
            })
        }
    }

    /// The retention as a duration.
    #[must_use]
    pub fn retention(&self) -> Duration {
        DAY * self.retention_days
    }

    /// When a tombstone deleted at `deleted` expires under this policy (S3).
    #[must_use]
    pub fn expires_at(&self, deleted: Timestamp) -> Timestamp {
        deleted.saturating_add(self.retention())
    }
}

/// The retention policy for untagged manifests (R1): when enabled, a manifest that becomes
/// untagged after the policy took effect is deleted once it has stayed untagged for `days`.
/// Off by default.
///
/// Children of a live index and referrers of a live subject are never "untagged" for it (R2),
/// and it skips locked manifests. Its deletes follow the soft delete policy like any other: with
/// both on, they go to the recycle bin (R3). Azure Container Registry forbids having both; here
/// the retention policy decides when an untagged manifest goes, and the soft delete policy how
/// long it can still be restored.
///
/// ```
/// use ocistore::RetentionPolicy;
/// assert_eq!(RetentionPolicy::default(), RetentionPolicy::disabled(7)?);
/// assert!(RetentionPolicy::enabled(0).is_ok());
/// assert!(RetentionPolicy::enabled(366).is_err());
/// assert_eq!(RetentionPolicy::enabled(30)?.with_enabled(false).days, 30);
/// # Ok::<(), ocistore::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RetentionPolicy {
    /// Whether untagged manifests are deleted.
    pub enabled: bool,
    /// Days a manifest may stay untagged: 0 to 365.
    pub days: u32,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            enabled: false,
            days: 7,
        }
    }
}

impl RetentionPolicy {
    /// The policy switched on with `days` (0 to 365).
    ///
    /// # Errors
    ///
    /// Fails with [`Error::InvalidSetting`] if `days` is over 365.
    pub fn enabled(days: u32) -> Result<RetentionPolicy> {
        Self::new(true, days)
    }

    /// The policy switched off, keeping `days` (0 to 365) for when it is switched on again.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::InvalidSetting`] if `days` is over 365.
    pub fn disabled(days: u32) -> Result<RetentionPolicy> {
        Self::new(false, days)
    }

    fn new(enabled: bool, days: u32) -> Result<RetentionPolicy> {
        let policy = RetentionPolicy { enabled, days };
        policy.validate()?;
        Ok(policy)
    }

    /// This policy switched on or off, with the same days.
    #[must_use]
    pub fn with_enabled(self, enabled: bool) -> RetentionPolicy {
        RetentionPolicy { enabled, ..self }
    }

    pub(crate) fn validate(self) -> Result<()> {
        if self.days <= 365 {
            Ok(())
        } else {
            Err(Error::InvalidSetting {
                setting: "retention days",
                value: self.days.to_string(),
                reason: "must be 0 to 365 days",
            })
        }
    }

    /// How long a manifest may stay untagged.
    #[must_use]
    pub fn period(&self) -> Duration {
        DAY * self.days
    }
}

/// Days a tag history entry is kept when no setting was made (T2).
pub(crate) const DEFAULT_HISTORY_RETENTION_DAYS: u32 = 90;

/// The longest history retention accepted, ten years: longer is surely a mistake, and 0
/// already keeps the history forever.
const MAX_HISTORY_RETENTION_DAYS: u32 = 3650;

/// Checks a history retention in days (T2): 0 (keep forever) to 3650.
pub(crate) fn validate_history_retention_days(days: u32) -> Result<()> {
    if days <= MAX_HISTORY_RETENTION_DAYS {
        Ok(())
    } else {
        Err(Error::InvalidSetting {
            setting: "history retention days",
            value: days.to_string(),
            reason: "must be 0 (keep forever) to 3650 days",
        })
    }
}

/// How long tag history entries are kept under a retention of `days`; `None` for 0, forever.
pub(crate) fn history_retention(days: u32) -> Option<Duration> {
    (days > 0).then(|| DAY * days)
}
