//! How a process opens a store (docs/spec.md: M1).

use serde::{Deserialize, Serialize};

/// How a handle shares its store with other handles and processes (M1).
///
/// Every handle on one store at one time is either the one [`Exclusive`](OpenMode::Exclusive)
/// handle, or any number of [`Shared`](OpenMode::Shared) and [`ReadOnly`](OpenMode::ReadOnly)
/// ones; an open that would break this is refused with
/// [`Error::AlreadyOpen`](crate::Error::AlreadyOpen), naming how the store is held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OpenMode {
    /// This handle alone reads and writes the store: the fastest mode, one fsync per commit.
    #[default]
    Exclusive,
    /// Several processes read and write the store, one write transaction at a time across all
    /// of them; every call sees what any of them committed before it began. A commit costs one
    /// more fsync than in the exclusive mode, and a process's cache is dropped when another
    /// commits. Needs the byte-range locks of Linux, the Apple platforms or Windows.
    Shared,
    /// The handle reads and never writes, nor blocks a writer: every write is refused with
    /// [`Error::ReadOnly`](crate::Error::ReadOnly). It opens beside shared handles, or alone.
    ReadOnly,
}

impl OpenMode {
    /// The mode's name, as the JSON form and the messages spell it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            OpenMode::Exclusive => "exclusive",
            OpenMode::Shared => "shared",
            OpenMode::ReadOnly => "read_only",
        }
    }
}

impl std::fmt::Display for OpenMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
