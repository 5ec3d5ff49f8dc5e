//! # ocistore
//!
//! The storage engine inside a container registry: one embedded store holds a registry's
//! repositories, manifests, tags and layer blobs. All metadata lives in a [redb] database;
//! blobs are content-addressed files, stored once per registry and linked into the
//! repositories that may read them.
//!
//! - Every write verifies the digest of the bytes actually received ([`Repository::put_blob`],
//!   [`Upload`], [`Repository::push_manifest`]).
//! - Every mutating call is atomic and durable when it returns; [`Registry::batch`] runs many in
//!   one transaction.
//! - [`Registry`] is `Clone + Send + Sync`; reads run on snapshots and never wait for writes.
//! - Time comes only from the registry's [`Clock`]; tests use a [`ManualClock`].
//! - Deletes go to a recycle bin ([`SoftDeletePolicy`], [`Repository::restore`]) that the retention
//!   clock empties ([`Registry::run_due`]); [`Registry::collect`] reclaims unreferenced blobs while
//!   the registry serves; [`Registry::usage`] and [`Registry::fsck`] account for and check the store.
//! - Clean-up as Azure Container Registry does it: [`Registry::purge`] by filter and age, a
//!   [`RetentionPolicy`] for untagged manifests, and [`Locks`] that protect what must stay.
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! use ocistore::{manifest::OCI_MANIFEST, Page, Registry};
//!
//! let registry = Registry::open(dir.path())?;
//! let repo = registry.repository("team/app")?;
//! let config = repo.put_blob_sha256(br#"{"architecture":"amd64","os":"linux"}"#)?;
//! let layer = repo.put_blob_sha256(b"layer bytes")?;
//! let body = format!(
//!     r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}",
//!     "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":37}},
//!     "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":11}}]}}"#
//! );
//! let digest = repo.push_manifest("latest", OCI_MANIFEST, body.as_bytes())?.digest;
//! assert_eq!(repo.resolve("latest")?, digest);
//! assert_eq!(registry.repositories(&Page::all())?, ["team/app"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Every report, listing and option is a `serde` type, with one JSON form for all of them
//! (`snake_case` fields, RFC 3339 times, digests as text, durations in seconds), described in
//! `docs/json.md`. They are `#[non_exhaustive]`: build options with their constructors and
//! builders ([`PurgeOptions::new`], `CollectOptions::default().dry_run(true)`), and expect
//! reports and listings to gain fields.
//!
//! The rules the crate is held to are in `docs/spec.md`; the layers, the tables and the crash
//! model are in `docs/design.md`.

// docs.rs builds with `--cfg docsrs` (Cargo.toml): items behind a feature say so there.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs, clippy::all)]
#![warn(
    clippy::pedantic,
    clippy::cast_lossless,
    clippy::unwrap_used,
    clippy::dbg_macro,
    clippy::todo,
    clippy::print_stdout,
    clippy::print_stderr
)]
// Pedantic lints the crate does not follow, each for a reason:
#![allow(
    // Names say what a thing is in its module (`ops::collector::collect`).
    clippy::module_name_repetitions,
    // Sizes and counts are u64 on disk and usize in memory; the conversions are checked
    // where a value can be out of range.
    clippy::cast_possible_truncation,
    // Panics are bugs: the few `expect`s document an invariant.
    clippy::missing_panics_doc,
    // Options and reports are plain data with public fields.
    clippy::struct_excessive_bools,
    clippy::too_many_lines
)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

// The layers, bottom up; each module imports only from the ones above it in this list
// (`docs/design.md`, "The map"; checked by `tests/layering.rs`).
mod values;
pub mod manifest {
    //! OCI manifests: the media types and parsed forms this store accepts (docs/spec.md: P3).
    pub use crate::oci::{
        DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, Descriptor, MAX_MANIFEST_SIZE, ManifestKind,
        OCI_INDEX, OCI_MANIFEST, Reference,
    };
    pub use crate::store::manifests::{Manifest, ManifestQuery, PulledManifest};
}
mod blobs;
mod handles;
mod oci;
mod ops;
mod store;

pub use blobs::{
    BlobReader, BlobStore, DirectoryStore, Entry, EntryKind, UploadCheckpoint, UploadLock,
    UploadMark,
};
#[cfg(feature = "object-store")]
#[cfg_attr(docsrs, doc(cfg(feature = "object-store")))]
pub use blobs::{ObjectStoreBlobs, RequestCounts};
pub use handles::{Batch, DEFAULT_SPACE_RESERVE, Registry, RegistryBuilder, Repository};
pub use oci::{Descriptor, ManifestKind, Reference};
pub use ops::collector::{CollectOptions, CollectReport, Phase, Progress};
pub use ops::fsck::{FsckOptions, FsckReport, Problem};
pub use ops::purge::{Filter, PurgeOptions, PurgeReport, RepositoryPurge, parse_ago};
pub use ops::push::Pushed;
pub use ops::recycle_bin::{OnConflict, Restore, RestoreOptions};
pub use ops::retention::{AutopurgeReport, Maintenance};
pub use ops::space::Health;
pub use ops::upload::Upload;
pub use ops::usage::{RepositoryUsage, Usage};
pub use store::bin::{DeletedManifest, DeletedRepository, DeletedTag};
pub use store::format::FORMAT_VERSION;
pub use store::locks::Locks;
pub use store::manifests::{Manifest, ManifestQuery, PulledManifest};
pub use store::repositories::RepositoryState;
pub use store::tags::{Tag, TagCause, TagEvent};
pub use values::{
    Algorithm, Clock, DatabaseError, Digest, Error, Hasher, Item, MAX_NAME_LEN, ManualClock,
    OpenMode, Page, Result, RetentionPolicy, SoftDeletePolicy, SystemClock, Timestamp,
};

/// The README's examples, run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
