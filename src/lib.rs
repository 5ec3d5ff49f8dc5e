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
//! let digest = repo.push_manifest("latest", OCI_MANIFEST, body.as_bytes())?;
//! assert_eq!(repo.resolve("latest")?, digest);
//! assert_eq!(registry.repositories(&Page::all())?, ["team/app"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The rules the crate is held to are in `SPEC.md`; the tables and the crash model are in
//! `docs/design.md`.

#![warn(missing_docs)]

mod batch;
mod blob;
mod clock;
mod collector;
mod delete;
mod digest;
mod error;
mod fsck;
mod lock;
pub mod manifest;
mod purge;
mod recycle_bin;
mod registry;
mod repository;
mod retention;
mod tables;
mod tag;
#[cfg(feature = "testkit")]
pub mod testkit;
mod upload;
mod usage;

pub use batch::Batch;
pub use blob::BlobReader;
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use collector::{CollectOptions, CollectReport, Phase, Progress};
pub use digest::{Algorithm, Digest, Hasher};
pub use error::{Error, Result};
pub use fsck::{FsckOptions, FsckReport, Problem};
pub use lock::{Item, Locks};
pub use manifest::{Descriptor, Manifest, ManifestKind, ManifestQuery, PulledManifest, Reference};
pub use purge::{Filter, PurgeOptions, PurgeReport, RepositoryPurge, parse_ago};
pub use recycle_bin::{DeletedManifest, DeletedRepository, DeletedTag, Restore, SoftDeletePolicy};
pub use registry::{FORMAT_VERSION, Page, Registry, RegistryBuilder};
pub use repository::{MAX_NAME_LEN, Repository};
pub use retention::{AutopurgeReport, Maintenance, RetentionPolicy};
pub use tag::{Tag, TagCause, TagEvent};
pub use upload::Upload;
pub use usage::{RepositoryUsage, Usage};

/// The README's examples, run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
