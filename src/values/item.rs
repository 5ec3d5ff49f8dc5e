//! What a lock or a restore names inside a repository.

use std::fmt;

use super::Digest;

/// Something in a repository: the repository itself, a manifest or a tag. Locks are set on
/// items (L1); [`Error::Locked`](crate::Error::Locked) and
/// [`Error::NotDeleted`](crate::Error::NotDeleted) name the item they are about, and purge
/// reports the locked items it skipped.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Item {
    /// The repository.
    Repository,
    /// A manifest, by digest.
    Manifest(Digest),
    /// A tag, by name.
    Tag(String),
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Repository => f.write_str("the repository"),
            Item::Manifest(digest) => write!(f, "manifest {digest}"),
            Item::Tag(tag) => write!(f, "tag {tag}"),
        }
    }
}
