//! The operations a sequence is made of, and the pools and selectors they name things by.

#![allow(unused_imports)]
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use crate::manifest::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use crate::{
    Algorithm, Batch, CollectOptions, DeletedManifest, DeletedRepository, DeletedTag, Descriptor,
    Digest, Error, Item, Locks, Manifest, ManifestQuery, ManualClock, Page, PurgeOptions, Registry,
    RepositoryPurge, Restore, RetentionPolicy, SoftDeletePolicy, Tag, TagCause, TagEvent,
    Timestamp, Upload, parse_ago,
};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::Union;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde_json::json;
use tempfile::TempDir;

use super::{outcome::*, grammar::*, step::*, model::*, registry::*, strategies::*};
use super::*;

/// Valid repository names (N1).
pub const REPOS: &[&str] = &["team/app", "lib", "x.y_z--w/q9"];
/// Names outside the N1 grammar.
pub const BAD_REPOS: &[&str] = &["Team/App", "a//b", "lib-", "", "a___b"];
/// Valid tags (N2).
pub const TAGS: &[&str] = &["latest", "v1", "V1.0_rc-2", "_"];
/// Tags outside the N2 grammar; `v:1` holds a `:`, so push and pull read it as a digest.
pub const BAD_TAGS: &[&str] = &["-x", ".v", "a b", "v:1", ""];
/// Strings that are not digests (N3).
pub const BAD_DIGESTS: &[&str] = &[
    "sha256:abc",
    "md5:d41d8cd98f00b204e9800998ecf8427e",
    "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
    "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "sha256",
];
/// Blob contents. The last one is never uploaded: manifests naming it are `BlobUnknown`.
pub const BLOBS: &[&[u8]] = &[
    br#"{"architecture":"amd64","os":"linux"}"#,
    b"layer one",
    b"layer two",
    b"",
    b"\x00\x01\x02\xff",
    b"never uploaded",
];
/// How many of [`BLOBS`] are ever uploaded.
pub const UPLOADABLE: usize = BLOBS.len() - 1;
/// Upload chunks: `layer ` + `one` finishes as blob 1, already stored.
pub const CHUNKS: &[&[u8]] = &[b"layer ", b"one", b"layer one", b"", b"\x00\x01"];
/// Config media types of referrers; the first is the OCI 1.1 empty config.
pub const REFERRER_CONFIG_TYPES: &[&str] = &[
    "application/vnd.oci.empty.v1+json",
    "application/vnd.example.sbom.config+json",
];
pub const ARTIFACT_TYPES: &[&str] = &[
    "application/vnd.example.sbom",
    "application/vnd.example.signature",
];
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// The body of a manifest that is never pushed: a child or subject no repository holds.
pub const UNKNOWN_MANIFEST: &[u8] = b"no such manifest";
/// `RegistryBuilder::upload_timeout`'s default.
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The builder's default autopurge interval.
pub const AUTOPURGE_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// The builder's default grace period of the collector.
pub const GRACE_PERIOD: Duration = Duration::from_secs(3600);

/// A purge filter (U1) with what it selects, written without a regular expression: both parts
/// match whole names. The predicates are exact on the names of [`REPOS`] and [`TAGS`].
pub struct FilterCase {
    pub text: &'static str,
    pub repo: fn(&str) -> bool,
    pub tag: fn(&str) -> bool,
}

pub(crate) fn lower_alpha(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase())
}

/// Valid purge filters: some hit one repository, some all; `team:.*` hits none (`team/app` is
/// not a whole match), and `V1\.0.*` only the upper-case tag.
pub const FILTERS: &[FilterCase] = &[
    FilterCase {
        text: "team/app:.*",
        repo: |r| r == "team/app",
        tag: |_| true,
    },
    FilterCase {
        text: ".*:v1",
        repo: |_| true,
        tag: |t| t == "v1",
    },
    FilterCase {
        text: "team/.*:v.*",
        repo: |r| r.starts_with("team/"),
        tag: |t| t.starts_with('v'),
    },
    FilterCase {
        text: "lib:latest|_",
        repo: |r| r == "lib",
        tag: |t| t == "latest" || t == "_",
    },
    FilterCase {
        text: "(lib|x.y_z--w/q9):.*",
        repo: |r| r == "lib" || r == "x.y_z--w/q9",
        tag: |_| true,
    },
    FilterCase {
        text: "[a-z]+:[a-z]+",
        repo: lower_alpha,
        tag: lower_alpha,
    },
    FilterCase {
        text: ".*:V1\\.0.*",
        repo: |_| true,
        tag: |t| t.starts_with("V1.0"),
    },
    FilterCase {
        text: "team:.*",
        repo: |r| r == "team",
        tag: |_| true,
    },
];
/// Filters that are not `repository-regex:tag-regex`, or whose regex does not compile.
pub const BAD_FILTERS: &[&str] = &["no-colon", "lib:", ":v1", "(:x", "lib:(["];
/// Purge ages (U1) with their length in seconds; `None`: not an age.
pub const AGOS: &[(&str, Option<u64>)] = &[
    ("0", Some(0)),
    ("30m", Some(1800)),
    ("1h", Some(3600)),
    ("12h", Some(43_200)),
    ("1d", Some(86_400)),
    ("1d3h6m", Some(86_400 + 3 * 3600 + 6 * 60)),
    ("2d", Some(2 * 86_400)),
    ("1 day", None),
    ("5x", None),
];


/// A blob of the pool under one algorithm.
#[derive(Debug, Clone, Copy)]
pub struct BlobSel {
    pub content: usize,
    pub alg: Algorithm,
}

impl BlobSel {
    pub(crate) fn bytes(self) -> &'static [u8] {
        BLOBS[self.content]
    }

    pub(crate) fn digest(self) -> String {
        hash(self.alg, self.bytes())
    }
}

/// A blob a manifest references or a mount takes: the `n`-th blob linked to the repository
/// (by digest, modulo how many; `Pool(content n, sha256)` when it has none), or a blob of the
/// pool, linked or not.
#[derive(Debug, Clone, Copy)]
pub enum BlobRef {
    Linked(usize),
    Pool(BlobSel),
}

/// The digest a blob write names.
#[derive(Debug, Clone, Copy)]
pub enum DigestChoice {
    /// The digest of the bytes.
    Right,
    /// The digest of other bytes: `DigestMismatch`.
    Wrong,
    /// Not a digest: `InvalidDigest`.
    Invalid(&'static str),
}

/// A manifest of the repository: the `n`-th by digest (modulo how many there are), or one that
/// does not exist (also when the repository holds none).
#[derive(Debug, Clone, Copy)]
pub enum ManifestSel {
    Existing(usize),
    Unknown,
}

/// A manifest for the recycle bin's ops: the `n`-th live one of the repository by digest, the
/// `n`-th one in its bin (a live one when the bin holds none), or one that does not exist (also
/// when there is none to pick).
#[derive(Debug, Clone, Copy)]
pub enum AnySel {
    Live(usize),
    Binned(usize),
    Unknown,
}

/// What a pull or a delete names: a tag, a manifest by digest (one in the bin is unknown to
/// both), or garbage.
#[derive(Debug, Clone, Copy)]
pub enum ManifestRef {
    Tag(&'static str),
    Digest(AnySel),
    BadDigest(&'static str),
}

/// What a restore names.
#[derive(Debug, Clone, Copy)]
pub enum RestoreSel {
    Tag(&'static str),
    Digest(AnySel),
    TagAndDigest(&'static str, AnySel),
}

/// What a push names: a tag, the body's digest, another digest, or garbage.
#[derive(Debug, Clone, Copy)]
pub enum RefChoice {
    Tag(&'static str),
    Digest(Algorithm),
    WrongDigest,
    BadDigest(&'static str),
}

/// The offset an `AppendAt` sends its chunk for.
#[derive(Debug, Clone, Copy)]
pub enum OffsetChoice {
    Right,
    /// The session's offset plus this (≥ 1).
    Ahead(u64),
    /// One before the session's offset (one after it when it is 0).
    Behind,
}

/// The digest a finish names.
#[derive(Debug, Clone, Copy)]
pub enum FinishDigest {
    Right(Algorithm),
    /// The digest of other bytes under this algorithm: `DigestMismatch`, the session stays.
    Wrong(Algorithm),
}

/// What a `SetLocks` locks: the repository, a manifest of it, or a tag name.
#[derive(Debug, Clone, Copy)]
pub enum ItemSel {
    Repository,
    Manifest(ManifestSel),
    Tag(&'static str),
}

/// How a purge by filter runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeRun {
    Real,
    Dry,
    /// U5: a dry run, then the real run with the same options at the same time; both must
    /// report the same, and the dry run must change nothing.
    DryThenReal,
}

/// A purge by filter's options (U1): filters of [`FILTERS`] or [`BAD_FILTERS`], an age of
/// [`AGOS`].
#[derive(Debug, Clone)]
pub struct PurgeSel {
    pub filters: Vec<&'static str>,
    pub ago: &'static str,
    pub keep: usize,
    pub untagged: bool,
    pub include_locked: bool,
    pub run: PurgeRun,
}

/// An image manifest of pool blobs.
#[derive(Debug, Clone)]
pub struct Image {
    pub docker: bool,
    /// Declare the other image media type than the body's: `MediaTypeMismatch`.
    pub mismatch: bool,
    pub config: BlobRef,
    pub layers: Vec<BlobRef>,
}

#[derive(Debug, Clone)]
pub enum Op {
    PutBlob {
        repo: &'static str,
        blob: BlobSel,
        digest: DigestChoice,
    },
    PutBlobSha256 {
        repo: &'static str,
        content: usize,
    },
    MountBlob {
        from: &'static str,
        to: &'static str,
        /// Resolved in `from`.
        blob: BlobRef,
    },
    StartUpload {
        repo: &'static str,
    },
    /// Upload ops name a session by its index (modulo the sessions started so far, finished,
    /// cancelled and expired ones included).
    AppendChunk {
        slot: usize,
        chunk: usize,
    },
    AppendAt {
        slot: usize,
        chunk: usize,
        offset: OffsetChoice,
    },
    FinishUpload {
        slot: usize,
        digest: FinishDigest,
    },
    CancelUpload {
        slot: usize,
    },
    /// `resume_upload` through the session's own repository (`via: None`) or another one.
    ResumeUpload {
        slot: usize,
        via: Option<&'static str>,
    },
    PushImage {
        repo: &'static str,
        image: Image,
        reference: RefChoice,
    },
    PushIndex {
        repo: &'static str,
        docker: bool,
        children: Vec<ManifestSel>,
        reference: RefChoice,
    },
    PushReferrer {
        repo: &'static str,
        subject: ManifestSel,
        config: BlobRef,
        config_type: &'static str,
        artifact_type: Option<&'static str>,
        annotated: bool,
        layers: Vec<BlobRef>,
        reference: RefChoice,
    },
    Tag {
        repo: &'static str,
        tag: &'static str,
        manifest: ManifestSel,
    },
    Pull {
        repo: &'static str,
        reference: ManifestRef,
    },
    /// D1.
    Untag {
        repo: &'static str,
        tag: &'static str,
    },
    /// D2, D3, D5.
    DeleteManifest {
        repo: &'static str,
        reference: ManifestRef,
    },
    /// D4.
    DeleteRepository {
        repo: &'static str,
    },
    /// S1.
    SetPolicy {
        enabled: bool,
        days: u32,
    },
    /// S6–S11: a restore, forced or not.
    Restore {
        repo: &'static str,
        what: RestoreSel,
        force: bool,
    },
    /// T2.
    RevertTag {
        repo: &'static str,
        tag: &'static str,
        manifest: AnySel,
        force: bool,
    },
    /// S16: purges by hand.
    PurgeRepository {
        repo: &'static str,
    },
    PurgeManifest {
        repo: &'static str,
        manifest: AnySel,
    },
    PurgeTags {
        repo: &'static str,
        tag: &'static str,
    },
    /// S4: `run_due` (`now: false`) or `run_now`.
    Autopurge {
        now: bool,
    },
    /// G1–G5.
    Collect {
        dry_run: bool,
    },
    /// L1, L2.
    SetLocks {
        repo: &'static str,
        item: ItemSel,
        locks: Locks,
    },
    /// R1.
    SetRetention {
        enabled: bool,
        days: u32,
    },
    /// U1–U6.
    PurgeByFilter(PurgeSel),
    AdvanceClock(u64),
    /// One transaction: the ops (blob writes, mounts, pushes, tags) all apply or none does.
    Batch(Vec<Op>),
    /// Drops every handle and opens the store again.
    Reopen,
}

impl Op {
    /// Whether the op names something invalid or mismatched by construction.
    pub(crate) fn has_bad_input(&self) -> bool {
        let bad_repo = |r: &str| BAD_REPOS.contains(&r);
        let bad_ref = |r: &RefChoice| match r {
            RefChoice::Tag(t) => BAD_TAGS.contains(t),
            RefChoice::Digest(_) => false,
            RefChoice::WrongDigest | RefChoice::BadDigest(_) => true,
        };
        match self {
            Op::PutBlob { repo, digest, .. } => {
                bad_repo(repo) || !matches!(digest, DigestChoice::Right)
            }
            Op::PutBlobSha256 { repo, .. } | Op::StartUpload { repo } => bad_repo(repo),
            Op::MountBlob { from, to, .. } => bad_repo(from) || bad_repo(to),
            Op::PushImage {
                repo,
                image,
                reference,
            } => bad_repo(repo) || image.mismatch || bad_ref(reference),
            Op::PushIndex {
                repo, reference, ..
            }
            | Op::PushReferrer {
                repo, reference, ..
            } => bad_repo(repo) || bad_ref(reference),
            Op::Tag { repo, tag, .. } => bad_repo(repo) || BAD_TAGS.contains(tag),
            Op::Batch(ops) => ops.iter().any(Op::has_bad_input),
            Op::Untag { repo, tag } => bad_repo(repo) || BAD_TAGS.contains(tag),
            Op::Pull { repo, reference } | Op::DeleteManifest { repo, reference } => {
                bad_repo(repo)
                    || match reference {
                        ManifestRef::Tag(t) => BAD_TAGS.contains(t),
                        ManifestRef::Digest(_) => false,
                        ManifestRef::BadDigest(_) => true,
                    }
            }
            Op::DeleteRepository { repo } | Op::PurgeRepository { repo } => bad_repo(repo),
            Op::Restore { repo, what, .. } => {
                bad_repo(repo)
                    || match what {
                        RestoreSel::Tag(t) | RestoreSel::TagAndDigest(t, _) => BAD_TAGS.contains(t),
                        RestoreSel::Digest(_) => false,
                    }
            }
            Op::RevertTag { repo, tag, .. } | Op::PurgeTags { repo, tag } => {
                bad_repo(repo) || BAD_TAGS.contains(tag)
            }
            Op::PurgeManifest { repo, .. } => bad_repo(repo),
            Op::SetPolicy { days, .. } => !(1..=90).contains(days),
            Op::SetLocks { repo, item, .. } => {
                bad_repo(repo) || matches!(item, ItemSel::Tag(t) if BAD_TAGS.contains(t))
            }
            Op::SetRetention { days, .. } => *days > 365,
            Op::PurgeByFilter(p) => {
                p.filters.is_empty()
                    || p.filters.iter().any(|f| BAD_FILTERS.contains(f))
                    || ago_secs(p.ago).is_none()
            }
            Op::AppendChunk { .. }
            | Op::AppendAt { .. }
            | Op::FinishUpload { .. }
            | Op::CancelUpload { .. }
            | Op::ResumeUpload { .. }
            | Op::Autopurge { .. }
            | Op::Collect { .. }
            | Op::AdvanceClock(_)
            | Op::Reopen => false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
