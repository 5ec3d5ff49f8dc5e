//! Fuzzing: fault injection ([`Faults`]).

mod faults;

pub use faults::{Faults, INJECTED, copy_dir, is_injected};
