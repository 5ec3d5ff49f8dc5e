//! The bottom layer: plain values every other layer uses — digests, names, time, pages,
//! policies and the one error type. Nothing here knows of a database or a file.

mod clock;
mod digest;
mod error;
mod forms;
mod item;
mod mode;
mod names;
mod page;
mod policy;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use digest::{Algorithm, Digest, Hasher};
pub(crate) use digest::{hash_into, hash_reader, verify};
pub use error::{DatabaseError, Error, Result};
pub(crate) use error::{IoContext, is_out_of_space};
pub(crate) use forms::{nanos, seconds, utf8};
pub use item::Item;
pub use mode::OpenMode;
pub use names::MAX_NAME_LEN;
pub(crate) use names::{validate_name, validate_tag};
pub use page::Page;
pub(crate) use policy::{
    DEFAULT_HISTORY_RETENTION_DAYS, history_retention, validate_history_retention_days,
};
pub use policy::{RetentionPolicy, SoftDeletePolicy};
