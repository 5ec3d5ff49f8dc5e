//! The top layer: the thin handles a user holds — [`Registry`], [`Repository`] and [`Batch`].
//! Every method validates its arguments and forwards to an operation or a store function.

mod batch;
mod registry;
mod repository;

pub use batch::Batch;
pub use registry::{DEFAULT_SPACE_RESERVE, Registry, RegistryBuilder};
pub use repository::Repository;
