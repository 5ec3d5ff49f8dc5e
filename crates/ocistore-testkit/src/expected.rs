//! What the model expects of a listing, field by field. The library's listings are
//! `#[non_exhaustive]`, so the kit cannot build them; it builds these instead, which compare
//! equal to a listing whose fields they all match (a field the library adds later is not
//! checked until one is added here).

use std::collections::BTreeMap;

use ocistore::{Descriptor, Digest, TagCause, Timestamp};

/// Defines `$name` with public `$field`s, comparable with `$real` in both directions.
macro_rules! expected {
    ($(#[$doc:meta])* $name:ident for $real:ty { $($field:ident: $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub(crate) struct $name {
            $(pub(crate) $field: $ty,)*
        }

        impl PartialEq<$real> for $name {
            fn eq(&self, real: &$real) -> bool {
                $(self.$field == real.$field)&&*
            }
        }

        impl PartialEq<$name> for $real {
            fn eq(&self, expected: &$name) -> bool {
                expected == self
            }
        }
    };
}

expected! {
    /// An [`ocistore::Manifest`].
    ExpectedManifest for ocistore::Manifest {
        digest: Digest,
        media_type: String,
        size: u64,
        created: Timestamp,
        updated: Timestamp,
        tags: Vec<String>,
        artifact_type: Option<String>,
        references: Vec<Descriptor>,
        subject: Option<Digest>,
        annotations: BTreeMap<String, String>,
    }
}

expected! {
    /// An [`ocistore::Tag`].
    ExpectedTag for ocistore::Tag { name: String, digest: Digest, updated: Timestamp }
}

expected! {
    /// An [`ocistore::TagEvent`].
    ExpectedTagEvent for ocistore::TagEvent {
        tag: String,
        from: Option<Digest>,
        to: Option<Digest>,
        at: Timestamp,
        cause: TagCause,
    }
}

expected! {
    /// An [`ocistore::DeletedRepository`].
    ExpectedDeletedRepository for ocistore::DeletedRepository {
        name: String,
        deleted_at: Timestamp,
        expires_at: Timestamp,
    }
}

expected! {
    /// An [`ocistore::DeletedManifest`].
    ExpectedDeletedManifest for ocistore::DeletedManifest {
        digest: Digest,
        media_type: String,
        size: u64,
        tags: Vec<String>,
        deleted_at: Timestamp,
        expires_at: Timestamp,
    }
}

expected! {
    /// An [`ocistore::DeletedTag`].
    ExpectedDeletedTag for ocistore::DeletedTag {
        tag: String,
        digest: Digest,
        deleted_at: Timestamp,
        expires_at: Timestamp,
    }
}
