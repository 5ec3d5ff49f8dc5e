//! Serde forms a field takes instead of its type's own: `#[serde(with = "…")]` adapters.
//!
//! - [`nanos`]: a [`Timestamp`] as integer nanoseconds, the form of every stored record (the
//!   on-disk format, which predates the public RFC 3339 form and must not change).
//! - [`seconds`]: a [`Duration`] as a number of seconds, fractional to the nanosecond, the
//!   public form of durations (`docs/json.md`).
//! - [`utf8`]: bytes known to be UTF-8 (a manifest body) as a JSON string.
//!
//! `nanos` and `seconds` have an `option` module for the same value in an `Option`.

// serde's `with` passes every field by reference, `Copy` and `Option` ones included.
#![allow(clippy::trivially_copy_pass_by_ref, clippy::ref_option)]

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Timestamp;

type Res<T, E> = std::result::Result<T, E>;

/// A [`Timestamp`] as integer nanoseconds since the epoch: the stored form.
pub(crate) mod nanos {
    use super::{Deserialize, Deserializer, Res, Serializer, Timestamp};

    pub(crate) fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Res<S::Ok, S::Error> {
        s.serialize_u64(t.as_nanos())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Res<Timestamp, D::Error> {
        u64::deserialize(d).map(Timestamp::from_nanos)
    }

    pub(crate) mod option {
        use super::super::{Deserialize, Deserializer, Res, Serialize, Serializer, Timestamp};

        pub(crate) fn serialize<S: Serializer>(
            t: &Option<Timestamp>,
            s: S,
        ) -> Res<S::Ok, S::Error> {
            t.map(Timestamp::as_nanos).serialize(s)
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Res<Option<Timestamp>, D::Error> {
            Ok(Option::<u64>::deserialize(d)?.map(Timestamp::from_nanos))
        }
    }
}

/// A [`Duration`] as seconds, a JSON number with up to nine fractional digits. Reading one
/// back is exact to the nanosecond for any duration under about 100 days (an `f64` holds 53
/// bits); longer ones may be off by a few nanoseconds.
pub(crate) mod seconds {
    use super::{Deserialize, Deserializer, Duration, Res, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Res<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Res<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(|e| {
            serde::de::Error::custom(format!("{secs} is not a duration in seconds: {e}"))
        })
    }

    pub(crate) mod option {
        use super::super::{Deserialize, Deserializer, Duration, Res, Serialize, Serializer};

        pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Res<S::Ok, S::Error> {
            d.map(|d| d.as_secs_f64()).serialize(s)
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Res<Option<Duration>, D::Error> {
            #[derive(Deserialize)]
            struct Secs(#[serde(with = "super")] Duration);
            Ok(Option::<Secs>::deserialize(d)?.map(|Secs(d)| d))
        }
    }
}

/// Bytes that are UTF-8 as a JSON string; serializing others fails.
pub(crate) mod utf8 {
    use super::{Deserialize, Deserializer, Res, Serializer};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Res<S::Ok, S::Error> {
        let text = std::str::from_utf8(bytes).map_err(serde::ser::Error::custom)?;
        s.serialize_str(text)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Res<bytes::Bytes, D::Error> {
        String::deserialize(d).map(bytes::Bytes::from)
    }
}
