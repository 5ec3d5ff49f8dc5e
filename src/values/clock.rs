//! Time: the [`Clock`] trait, the only way the store learns what time it is.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time: nanoseconds since the Unix epoch.
///
/// Its serde form is RFC 3339 text in UTC, to the second when it is a whole second and with
/// as many fractional digits as it needs otherwise, so it reads back exactly (`docs/json.md`).
///
/// ```
/// use ocistore::Timestamp;
/// let t = Timestamp::from_nanos(1_767_225_600_000_000_001);
/// assert_eq!(serde_json::to_string(&t)?, r#""2026-01-01T00:00:00.000000001Z""#);
/// assert_eq!(serde_json::from_str::<Timestamp>(r#""2026-01-01T00:00:00.000000001Z""#)?, t);
/// assert_eq!(serde_json::to_string(&Timestamp::from_secs(1_767_225_600))?, r#""2026-01-01T00:00:00Z""#);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// A timestamp from nanoseconds since the epoch.
    #[must_use]
    pub const fn from_nanos(nanos: u64) -> Timestamp {
        Timestamp(nanos)
    }

    /// Nanoseconds since the epoch.
    #[must_use]
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// A timestamp from whole seconds since the epoch, saturating at the far future.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ocistore::Timestamp;
    /// let t = Timestamp::from_secs(1_767_225_600);
    /// assert_eq!(t.to_string(), "2026-01-01T00:00:00Z");
    /// assert_eq!((t + Duration::from_secs(86_400)).to_string(), "2026-01-02T00:00:00Z");
    /// assert_eq!(t - Duration::from_secs(1_767_225_601), Timestamp::EPOCH);
    /// assert_eq!((t + Duration::from_millis(1500)).as_secs(), 1_767_225_601);
    /// assert_eq!(Timestamp::from_secs(u64::MAX), Timestamp::from_nanos(u64::MAX));
    /// ```
    #[must_use]
    pub const fn from_secs(secs: u64) -> Timestamp {
        Timestamp(secs.saturating_mul(1_000_000_000))
    }

    /// Whole seconds since the epoch.
    #[must_use]
    pub const fn as_secs(self) -> u64 {
        self.0 / 1_000_000_000
    }

    /// This time plus `d`, saturating at the far future.
    #[must_use]
    pub fn saturating_add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(duration_nanos(d)))
    }

    /// This time minus `d`, saturating at the epoch.
    #[must_use]
    pub fn saturating_sub(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(duration_nanos(d)))
    }

    /// The time elapsed from `earlier` to `self`, zero if `earlier` is later.
    #[must_use]
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

/// `t + d`: [`Timestamp::saturating_add`].
impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        self.saturating_add(d)
    }
}

/// `t - d`: [`Timestamp::saturating_sub`].
impl std::ops::Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, d: Duration) -> Timestamp {
        self.saturating_sub(d)
    }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Timestamp {
        Timestamp(t.duration_since(UNIX_EPOCH).map_or(0, duration_nanos))
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(t.0)
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC, to the second.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_rfc3339_seconds((*self).into()))
    }
}

impl Timestamp {
    /// RFC 3339 with the fewest fractional digits (none, 3, 6 or 9) that keep every nanosecond.
    fn rfc3339_exact(self) -> humantime::Rfc3339Timestamp {
        let t = self.into();
        match self.0 % 1_000_000_000 {
            0 => humantime::format_rfc3339_seconds(t),
            n if n % 1_000_000 == 0 => humantime::format_rfc3339_millis(t),
            n if n % 1_000 == 0 => humantime::format_rfc3339_micros(t),
            _ => humantime::format_rfc3339_nanos(t),
        }
    }

    /// Reads RFC 3339 text in UTC (`Z`), with any number of fractional digits.
    fn parse_rfc3339(text: &str) -> std::result::Result<Timestamp, String> {
        let t = humantime::parse_rfc3339(text).map_err(|e| format!("{text:?}: {e}"))?;
        let since = t
            .duration_since(UNIX_EPOCH)
            .map_err(|_| format!("{text:?} is before the Unix epoch"))?;
        u64::try_from(since.as_nanos())
            .map(Timestamp)
            .map_err(|_| format!("{text:?} is past the year 2554"))
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(&self.rfc3339_exact())
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

/// Where the store reads the time. Nothing else in the crate reads the system time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The operating system's clock, the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        SystemTime::now().into()
    }
}

/// A clock that moves only when told: tests drive months in microseconds with it.
///
/// Clones share the same time, so a test keeps one clone and gives another to the registry.
///
/// ```
/// use ocistore::{Clock, ManualClock, Timestamp};
/// use std::time::Duration;
/// let clock = ManualClock::new(Timestamp::from_nanos(0));
/// clock.advance(Duration::from_secs(86_400));
/// assert_eq!(clock.now().as_nanos(), 86_400 * 1_000_000_000);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock showing `start`.
    #[must_use]
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock(Arc::new(AtomicU64::new(start.0)))
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(duration_nanos(d), Ordering::SeqCst);
    }

    /// Sets the clock to `t` (it may go backwards, as system clocks do).
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}
