//! SPEC P1–P8, N1–N3, C1, D1–D5, S1–S16, T1–T2, G1–G5, L1–L2, R1–R3 and U1–U6 as a
//! model-based property test.
//!
//! [`Model`] is a plain in-memory registry (BTreeMaps) implementing the SPEC's rules: blobs,
//! uploads, manifests and tags; deletes, the recycle bin with its restores, purges and the
//! retention clock's autopurge; tag history and reverts; the collector; locks on repositories,
//! manifests and tags; the retention policy for untagged manifests; purges by filter. It is the
//! reference semantics that later rules extend.
//! Random sequences of [`Op`]s run against the model ([`apply_model`]) and against a real store on
//! a manual clock ([`apply_registry`]); each op must have the same [`Outcome`] on both (the same
//! value, or the same error variant with the same names in it), and after every op
//! [`compare`] reads the whole store through the public API and checks it against the model.
//!
//! Ops name things by small pools (repository names, tags, blob contents, bad inputs) and by
//! selectors that each side resolves against its own state before running the op ([`resolve`]):
//! "the 3rd manifest of the repository by digest", "the 2nd upload session". The two states are
//! equal whenever an op starts (the previous `compare` checked it), so both resolve alike.
//!
//! The registry side is a [`Sut`]: the store, its clock and directory, and what a client knows
//! of its upload sessions (their ids and the bytes it sent), which a `Registry` alone cannot
//! tell. To extend the model with a rule: add an [`Op`] (and its strategy), the [`Step`] it
//! resolves to, its arm in [`model_step`] and [`registry_step`] (and [`batch_step`] if a batch
//! can hold it), and the reads that show its effect to [`compare`].
//!
//! `MODEL_STATS=1 cargo test --test model -- --nocapture` prints how often each op had each
//! outcome, to check that the strategies reach the success paths as well as the errors (a purge
//! by filter's outcome tells whether it untagged, deleted or skipped locked items; an autopurge
//! run's whether the retention policy deleted). A test run through [`check_model`] also fails
//! when its cases stop reaching the outcomes it lists.

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use common::{CONFIG_TYPE, LAYER_TYPE, START};
use ocistore::manifest::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use ocistore::{
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

// ---------------------------------------------------------------------------------------------
// Pools
// ---------------------------------------------------------------------------------------------

/// Valid repository names (N1).
const REPOS: &[&str] = &["team/app", "lib", "x.y_z--w/q9"];
/// Names outside the N1 grammar.
const BAD_REPOS: &[&str] = &["Team/App", "a//b", "lib-", "", "a___b"];
/// Valid tags (N2).
const TAGS: &[&str] = &["latest", "v1", "V1.0_rc-2", "_"];
/// Tags outside the N2 grammar; `v:1` holds a `:`, so push and pull read it as a digest.
const BAD_TAGS: &[&str] = &["-x", ".v", "a b", "v:1", ""];
/// Strings that are not digests (N3).
const BAD_DIGESTS: &[&str] = &[
    "sha256:abc",
    "md5:d41d8cd98f00b204e9800998ecf8427e",
    "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
    "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "sha256",
];
/// Blob contents. The last one is never uploaded: manifests naming it are `BlobUnknown`.
const BLOBS: &[&[u8]] = &[
    br#"{"architecture":"amd64","os":"linux"}"#,
    b"layer one",
    b"layer two",
    b"",
    b"\x00\x01\x02\xff",
    b"never uploaded",
];
/// How many of [`BLOBS`] are ever uploaded.
const UPLOADABLE: usize = BLOBS.len() - 1;
/// Upload chunks: `layer ` + `one` finishes as blob 1, already stored.
const CHUNKS: &[&[u8]] = &[b"layer ", b"one", b"layer one", b"", b"\x00\x01"];
/// Config media types of referrers; the first is the OCI 1.1 empty config.
const REFERRER_CONFIG_TYPES: &[&str] = &[
    "application/vnd.oci.empty.v1+json",
    "application/vnd.example.sbom.config+json",
];
const ARTIFACT_TYPES: &[&str] = &[
    "application/vnd.example.sbom",
    "application/vnd.example.signature",
];
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// The body of a manifest that is never pushed: a child or subject no repository holds.
const UNKNOWN_MANIFEST: &[u8] = b"no such manifest";
/// `RegistryBuilder::upload_timeout`'s default.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The builder's default autopurge interval.
const AUTOPURGE_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// The builder's default grace period of the collector.
const GRACE_PERIOD: Duration = Duration::from_secs(3600);

/// A purge filter (U1) with what it selects, written without a regular expression: both parts
/// match whole names. The predicates are exact on the names of [`REPOS`] and [`TAGS`].
struct FilterCase {
    text: &'static str,
    repo: fn(&str) -> bool,
    tag: fn(&str) -> bool,
}

fn lower_alpha(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase())
}

/// Valid purge filters: some hit one repository, some all; `team:.*` hits none (`team/app` is
/// not a whole match), and `V1\.0.*` only the upper-case tag.
const FILTERS: &[FilterCase] = &[
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
const BAD_FILTERS: &[&str] = &["no-colon", "lib:", ":v1", "(:x", "lib:(["];
/// Purge ages (U1) with their length in seconds; `None`: not an age.
const AGOS: &[(&str, Option<u64>)] = &[
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

// ---------------------------------------------------------------------------------------------
// Ops
// ---------------------------------------------------------------------------------------------

/// A blob of the pool under one algorithm.
#[derive(Debug, Clone, Copy)]
struct BlobSel {
    content: usize,
    alg: Algorithm,
}

impl BlobSel {
    fn bytes(self) -> &'static [u8] {
        BLOBS[self.content]
    }

    fn digest(self) -> String {
        hash(self.alg, self.bytes())
    }
}

/// A blob a manifest references or a mount takes: the `n`-th blob linked to the repository
/// (by digest, modulo how many; `Pool(content n, sha256)` when it has none), or a blob of the
/// pool, linked or not.
#[derive(Debug, Clone, Copy)]
enum BlobRef {
    Linked(usize),
    Pool(BlobSel),
}

/// The digest a blob write names.
#[derive(Debug, Clone, Copy)]
enum DigestChoice {
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
enum ManifestSel {
    Existing(usize),
    Unknown,
}

/// A manifest for the recycle bin's ops: the `n`-th live one of the repository by digest, the
/// `n`-th one in its bin (a live one when the bin holds none), or one that does not exist (also
/// when there is none to pick).
#[derive(Debug, Clone, Copy)]
enum AnySel {
    Live(usize),
    Binned(usize),
    Unknown,
}

/// What a pull or a delete names: a tag, a manifest by digest (one in the bin is unknown to
/// both), or garbage.
#[derive(Debug, Clone, Copy)]
enum ManifestRef {
    Tag(&'static str),
    Digest(AnySel),
    BadDigest(&'static str),
}

/// What a restore names.
#[derive(Debug, Clone, Copy)]
enum RestoreSel {
    Tag(&'static str),
    Digest(AnySel),
    TagAndDigest(&'static str, AnySel),
}

/// What a push names: a tag, the body's digest, another digest, or garbage.
#[derive(Debug, Clone, Copy)]
enum RefChoice {
    Tag(&'static str),
    Digest(Algorithm),
    WrongDigest,
    BadDigest(&'static str),
}

/// The offset an `AppendAt` sends its chunk for.
#[derive(Debug, Clone, Copy)]
enum OffsetChoice {
    Right,
    /// The session's offset plus this (≥ 1).
    Ahead(u64),
    /// One before the session's offset (one after it when it is 0).
    Behind,
}

/// The digest a finish names.
#[derive(Debug, Clone, Copy)]
enum FinishDigest {
    Right(Algorithm),
    /// The digest of other bytes under this algorithm: `DigestMismatch`, the session stays.
    Wrong(Algorithm),
}

/// What a `SetLocks` locks: the repository, a manifest of it, or a tag name.
#[derive(Debug, Clone, Copy)]
enum ItemSel {
    Repository,
    Manifest(ManifestSel),
    Tag(&'static str),
}

/// How a purge by filter runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PurgeRun {
    Real,
    Dry,
    /// U5: a dry run, then the real run with the same options at the same time; both must
    /// report the same, and the dry run must change nothing.
    DryThenReal,
}

/// A purge by filter's options (U1): filters of [`FILTERS`] or [`BAD_FILTERS`], an age of
/// [`AGOS`].
#[derive(Debug, Clone)]
struct PurgeSel {
    filters: Vec<&'static str>,
    ago: &'static str,
    keep: usize,
    untagged: bool,
    include_locked: bool,
    run: PurgeRun,
}

/// An image manifest of pool blobs.
#[derive(Debug, Clone)]
struct Image {
    docker: bool,
    /// Declare the other image media type than the body's: `MediaTypeMismatch`.
    mismatch: bool,
    config: BlobRef,
    layers: Vec<BlobRef>,
}

#[derive(Debug, Clone)]
enum Op {
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
    fn has_bad_input(&self) -> bool {
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
// Outcomes
// ---------------------------------------------------------------------------------------------

/// What an op returned, comparable between the model and the registry.
type Outcome = Result<Value, ErrKind>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Unit,
    Digest(String),
    /// An upload session's offset.
    Offset(u64),
    /// A new upload session (its id is random).
    Started,
    Pulled {
        digest: String,
        media_type: String,
        body: Vec<u8>,
    },
    Batch(Vec<Value>),
    /// What a manifest delete deleted, in order.
    Digests(Vec<String>),
    /// An upload op when no session was ever started: nothing ran.
    NoSession,
    /// How many tombstones a purge by hand removed.
    Count(usize),
    /// What an autopurge run removed, and what the retention policy deleted.
    Purged {
        at: Timestamp,
        repositories: usize,
        manifests: usize,
        tags: usize,
        untagged_deleted: usize,
    },
    /// What a purge by filter did, or would do.
    PurgeReport {
        dry_run: bool,
        at: Timestamp,
        repositories: Vec<RepositoryPurge>,
    },
    /// `run_due` before the interval has passed.
    NotDue,
    Collected(Collected),
}

/// What a collection reports, but its times.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Collected {
    marked: u64,
    bytes_marked: u64,
    swept: u64,
    bytes_swept: u64,
    kept: u64,
    bytes_kept: u64,
    links_removed: u64,
    uploads_removed: u64,
}

/// An error variant with the fields the model can predict.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ErrKind {
    InvalidRepositoryName(String),
    InvalidTag(String),
    InvalidDigest(String),
    MediaTypeMismatch {
        declared: String,
        body: String,
    },
    DigestMismatch {
        expected: String,
        actual: String,
    },
    BlobUnknown {
        repository: String,
        digest: String,
    },
    ManifestUnknown {
        repository: String,
        reference: String,
    },
    UploadUnknown,
    UploadOffsetMismatch {
        expected: u64,
        actual: u64,
    },
    RepositoryUnknown(String),
    RepositorySoftDeleted(String),
    TagUnknown {
        repository: String,
        tag: String,
    },
    ManifestReferenced {
        repository: String,
        digest: String,
        index: String,
    },
    ManifestSoftDeleted {
        repository: String,
        digest: String,
    },
    TagConflict {
        repository: String,
        tag: String,
        digest: String,
    },
    SubjectDeleted {
        repository: String,
        subject: String,
    },
    NotDeleted {
        repository: String,
        item: String,
    },
    NotInHistory {
        repository: String,
        tag: String,
        digest: String,
    },
    InvalidSetting {
        setting: String,
        value: String,
    },
    Locked {
        repository: String,
        item: String,
        lock: String,
    },
    InvalidFilter(String),
    /// Anything the model never predicts.
    Other(String),
}

fn kind(e: Error) -> ErrKind {
    match e {
        Error::InvalidRepositoryName { name, .. } => ErrKind::InvalidRepositoryName(name),
        Error::InvalidTag { tag } => ErrKind::InvalidTag(tag),
        Error::InvalidDigest { digest, .. } => ErrKind::InvalidDigest(digest),
        Error::MediaTypeMismatch { declared, body } => {
            ErrKind::MediaTypeMismatch { declared, body }
        }
        Error::DigestMismatch { expected, actual } => ErrKind::DigestMismatch {
            expected: expected.to_string(),
            actual: actual.to_string(),
        },
        Error::BlobUnknown { repository, digest } => ErrKind::BlobUnknown {
            repository,
            digest: digest.to_string(),
        },
        Error::ManifestUnknown {
            repository,
            reference,
        } => ErrKind::ManifestUnknown {
            repository,
            reference,
        },
        Error::UploadUnknown { .. } => ErrKind::UploadUnknown,
        Error::UploadOffsetMismatch {
            expected, actual, ..
        } => ErrKind::UploadOffsetMismatch { expected, actual },
        Error::RepositoryUnknown { name } => ErrKind::RepositoryUnknown(name),
        Error::RepositorySoftDeleted { name } => ErrKind::RepositorySoftDeleted(name),
        Error::TagUnknown { repository, tag } => ErrKind::TagUnknown { repository, tag },
        Error::ManifestReferenced {
            repository,
            digest,
            index,
        } => ErrKind::ManifestReferenced {
            repository,
            digest: digest.to_string(),
            index: index.to_string(),
        },
        Error::ManifestSoftDeleted { repository, digest } => ErrKind::ManifestSoftDeleted {
            repository,
            digest: digest.to_string(),
        },
        Error::TagConflict {
            repository,
            tag,
            digest,
        } => ErrKind::TagConflict {
            repository,
            tag,
            digest: digest.to_string(),
        },
        Error::SubjectDeleted {
            repository,
            subject,
        } => ErrKind::SubjectDeleted {
            repository,
            subject: subject.to_string(),
        },
        Error::NotDeleted { repository, item } => ErrKind::NotDeleted { repository, item },
        Error::NotInHistory {
            repository,
            tag,
            digest,
        } => ErrKind::NotInHistory {
            repository,
            tag,
            digest: digest.to_string(),
        },
        Error::InvalidSetting { setting, value, .. } => ErrKind::InvalidSetting {
            setting: setting.to_owned(),
            value,
        },
        Error::Locked {
            repository,
            item,
            lock,
        } => ErrKind::Locked {
            repository,
            item,
            lock: lock.to_owned(),
        },
        Error::InvalidFilter { filter, .. } => ErrKind::InvalidFilter(filter),
        other => ErrKind::Other(format!("{other:?}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Hashes and grammars, written independently of the crate
// ---------------------------------------------------------------------------------------------

fn hash(alg: Algorithm, bytes: &[u8]) -> String {
    use sha2::Digest as _;
    match alg {
        Algorithm::Sha256 => format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes))),
        Algorithm::Sha512 => format!("sha512:{}", hex::encode(sha2::Sha512::digest(bytes))),
        Algorithm::Blake3 => format!("blake3:{}", blake3::hash(bytes).to_hex()),
    }
}

fn sha256(bytes: &[u8]) -> String {
    hash(Algorithm::Sha256, bytes)
}

/// The algorithm of a valid digest (N3).
fn algorithm_of(digest: &str) -> Algorithm {
    match digest.split_once(':') {
        Some(("sha256", _)) => Algorithm::Sha256,
        Some(("sha512", _)) => Algorithm::Sha512,
        Some(("blake3", _)) => Algorithm::Blake3,
        _ => panic!("not a valid digest: {digest}"),
    }
}

/// N1.
fn valid_repo_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && name.split('/').all(valid_component)
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(component: &str) -> bool {
    let c = component.as_bytes();
    let mut i = 0;
    let alnum_run = |i: &mut usize| {
        let start = *i;
        while *i < c.len() && (c[*i].is_ascii_lowercase() || c[*i].is_ascii_digit()) {
            *i += 1;
        }
        *i > start
    };
    if !alnum_run(&mut i) {
        return false;
    }
    while i < c.len() {
        match c[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if c.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while c.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
        if !alnum_run(&mut i) {
            return false;
        }
    }
    true
}

/// N2.
fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    let first = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    (1..=128).contains(&b.len())
        && first(b[0])
        && b[1..].iter().all(|&c| first(c) || c == b'.' || c == b'-')
}

/// N3.
fn valid_digest(digest: &str) -> bool {
    let Some((alg, hex)) = digest.split_once(':') else {
        return false;
    };
    let len = match alg {
        "sha256" | "blake3" => 64,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == len && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn check_repo(name: &str) -> Result<(), ErrKind> {
    if valid_repo_name(name) {
        Ok(())
    } else {
        Err(ErrKind::InvalidRepositoryName(name.to_owned()))
    }
}

/// A push or pull reference: anything with a `:` is a digest, anything else a tag.
enum ModelRef {
    Tag(String),
    Digest(String),
}

fn parse_reference(reference: &str) -> Result<ModelRef, ErrKind> {
    if reference.contains(':') {
        if valid_digest(reference) {
            Ok(ModelRef::Digest(reference.to_owned()))
        } else {
            Err(ErrKind::InvalidDigest(reference.to_owned()))
        }
    } else if valid_tag(reference) {
        Ok(ModelRef::Tag(reference.to_owned()))
    } else {
        Err(ErrKind::InvalidTag(reference.to_owned()))
    }
}

// ---------------------------------------------------------------------------------------------
// Manifest bodies
// ---------------------------------------------------------------------------------------------

fn descriptor(media_type: &str, digest: &str, size: u64) -> Descriptor {
    Descriptor {
        media_type: media_type.to_owned(),
        digest: Digest::parse(digest).expect("descriptors name valid digests"),
        size,
        artifact_type: None,
        annotations: BTreeMap::new(),
    }
}

/// A manifest body, structured: the model keeps these fields, the registry gets the bytes.
#[derive(Debug, Clone)]
struct BodySpec {
    /// The body's `mediaType`.
    media_type: &'static str,
    index: bool,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    /// Layers of an image, children of an index.
    items: Vec<Descriptor>,
    subject: Option<Descriptor>,
    annotations: BTreeMap<String, String>,
}

impl BodySpec {
    fn render(&self) -> Vec<u8> {
        let mut v = json!({"schemaVersion": 2, "mediaType": self.media_type});
        if self.index {
            v["manifests"] = json!(self.items);
        } else {
            v["config"] = json!(self.config.as_ref().expect("an image has a config"));
            v["layers"] = json!(self.items);
        }
        if let Some(subject) = &self.subject {
            v["subject"] = json!(subject);
        }
        if let Some(t) = &self.artifact_type {
            v["artifactType"] = json!(t);
        }
        if !self.annotations.is_empty() {
            v["annotations"] = json!(self.annotations);
        }
        serde_json::to_vec(&v).unwrap()
    }

    /// What `Manifest::references` holds: config then layers, or the children.
    fn references(&self) -> Vec<Descriptor> {
        self.config.iter().chain(&self.items).cloned().collect()
    }
}

fn image_spec(image: &Image, view: &impl View, repo: &str) -> BodySpec {
    let (config_type, layer_type) = if image.docker {
        (DOCKER_CONFIG, DOCKER_LAYER)
    } else {
        (CONFIG_TYPE, LAYER_TYPE)
    };
    let blob = |b: &BlobRef, t: &str| {
        let (digest, size) = pick_blob(view, repo, *b);
        descriptor(t, &digest, size)
    };
    BodySpec {
        media_type: if image.docker {
            DOCKER_MANIFEST
        } else {
            OCI_MANIFEST
        },
        index: false,
        artifact_type: None,
        config: Some(blob(&image.config, config_type)),
        items: image.layers.iter().map(|l| blob(l, layer_type)).collect(),
        subject: None,
        annotations: BTreeMap::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Resolution: selectors → concrete steps
// ---------------------------------------------------------------------------------------------

/// What resolving an op needs to know of a side's state.
trait View {
    /// (digest, size) of the blobs linked to `repo`, by digest.
    fn blobs_of(&self, repo: &str) -> Vec<(String, u64)>;
    /// (digest, media type, size) of the manifests of `repo`, by digest.
    fn manifests_of(&self, repo: &str) -> Vec<(String, String, u64)>;
    /// Digests of the manifests of `repo` in the recycle bin, sorted.
    fn binned_of(&self, repo: &str) -> Vec<String>;
    /// How many upload sessions were started.
    fn sessions(&self) -> usize;
    /// The bytes a session holds, as its client knows them.
    fn sent(&self, slot: usize) -> Vec<u8>;
}

/// An op with every selector resolved.
#[derive(Debug, Clone)]
enum Step {
    PutBlob {
        repo: String,
        digest: String,
        bytes: Vec<u8>,
    },
    PutBlobSha256 {
        repo: String,
        bytes: Vec<u8>,
    },
    Mount {
        from: String,
        to: String,
        digest: String,
    },
    StartUpload {
        repo: String,
    },
    Append {
        slot: usize,
        chunk: Vec<u8>,
        /// `None`: plain `append`; `Some`: `append_at` this offset.
        at: Option<u64>,
    },
    Finish {
        slot: usize,
        digest: String,
    },
    Cancel {
        slot: usize,
    },
    Resume {
        slot: usize,
        via: Option<String>,
    },
    Push {
        repo: String,
        reference: String,
        declared: String,
        spec: Box<BodySpec>,
        body: Vec<u8>,
    },
    Tag {
        repo: String,
        tag: String,
        digest: String,
    },
    Pull {
        repo: String,
        reference: String,
    },
    Untag {
        repo: String,
        tag: String,
    },
    DeleteManifest {
        repo: String,
        reference: String,
    },
    DeleteRepository {
        repo: String,
    },
    SetPolicy {
        enabled: bool,
        days: u32,
    },
    Restore {
        repo: String,
        tag: Option<String>,
        digest: Option<String>,
        force: bool,
    },
    Revert {
        repo: String,
        tag: String,
        digest: String,
        force: bool,
    },
    PurgeRepository {
        repo: String,
    },
    PurgeManifest {
        repo: String,
        digest: String,
    },
    PurgeTags {
        repo: String,
        tag: String,
    },
    Autopurge {
        now: bool,
    },
    Collect {
        dry_run: bool,
    },
    SetLocks {
        repo: String,
        item: Item,
        locks: Locks,
    },
    SetRetention(RetentionPolicy),
    PurgeByFilter(PurgeSel),
    Advance(u64),
    Batch(Vec<Step>),
    Reopen,
    NoSession,
}

fn unknown_manifest() -> (String, String, u64) {
    (
        sha256(UNKNOWN_MANIFEST),
        OCI_MANIFEST.to_owned(),
        UNKNOWN_MANIFEST.len() as u64,
    )
}

fn pick(view: &impl View, repo: &str, sel: ManifestSel) -> (String, String, u64) {
    let all = view.manifests_of(repo);
    match sel {
        ManifestSel::Existing(i) if !all.is_empty() => all[i % all.len()].clone(),
        _ => unknown_manifest(),
    }
}

fn pick_any(view: &impl View, repo: &str, sel: AnySel) -> String {
    let live = |i: usize| pick(view, repo, ManifestSel::Existing(i)).0;
    match sel {
        AnySel::Live(i) => live(i),
        AnySel::Binned(i) => {
            let binned = view.binned_of(repo);
            if binned.is_empty() {
                live(i)
            } else {
                binned[i % binned.len()].clone()
            }
        }
        AnySel::Unknown => unknown_manifest().0,
    }
}

fn pick_blob(view: &impl View, repo: &str, sel: BlobRef) -> (String, u64) {
    let pool = |b: BlobSel| (b.digest(), b.bytes().len() as u64);
    match sel {
        BlobRef::Pool(b) => pool(b),
        BlobRef::Linked(i) => {
            let all = view.blobs_of(repo);
            if all.is_empty() {
                pool(BlobSel {
                    content: i % UPLOADABLE,
                    alg: Algorithm::Sha256,
                })
            } else {
                all[i % all.len()].clone()
            }
        }
    }
}

fn manifest_ref(view: &impl View, repo: &str, reference: ManifestRef) -> String {
    match reference {
        ManifestRef::Tag(t) => t.to_owned(),
        ManifestRef::Digest(sel) => pick_any(view, repo, sel),
        ManifestRef::BadDigest(d) => d.to_owned(),
    }
}

fn push_step(repo: &str, spec: BodySpec, declared: &str, reference: RefChoice) -> Step {
    let body = spec.render();
    let reference = match reference {
        RefChoice::Tag(t) => t.to_owned(),
        RefChoice::Digest(alg) => hash(alg, &body),
        RefChoice::WrongDigest => sha256(&[&body[..], b"x"].concat()),
        RefChoice::BadDigest(d) => d.to_owned(),
    };
    Step::Push {
        repo: repo.to_owned(),
        reference,
        declared: declared.to_owned(),
        spec: Box::new(spec),
        body,
    }
}

fn resolve(op: &Op, view: &impl View) -> Step {
    let slot = |slot: usize| {
        let n = view.sessions();
        (n > 0).then(|| slot % n)
    };
    match op {
        Op::PutBlob { repo, blob, digest } => Step::PutBlob {
            repo: repo.to_string(),
            digest: match digest {
                DigestChoice::Right => blob.digest(),
                DigestChoice::Wrong => hash(blob.alg, &[blob.bytes(), b"x"].concat()),
                DigestChoice::Invalid(d) => d.to_string(),
            },
            bytes: blob.bytes().to_vec(),
        },
        Op::PutBlobSha256 { repo, content } => Step::PutBlobSha256 {
            repo: repo.to_string(),
            bytes: BLOBS[*content].to_vec(),
        },
        Op::MountBlob { from, to, blob } => Step::Mount {
            from: from.to_string(),
            to: to.to_string(),
            digest: pick_blob(view, from, *blob).0,
        },
        Op::StartUpload { repo } => Step::StartUpload {
            repo: repo.to_string(),
        },
        Op::AppendChunk { slot: s, chunk } => match slot(*s) {
            Some(slot) => Step::Append {
                slot,
                chunk: CHUNKS[*chunk].to_vec(),
                at: None,
            },
            None => Step::NoSession,
        },
        Op::AppendAt {
            slot: s,
            chunk,
            offset,
        } => match slot(*s) {
            Some(slot) => {
                let len = view.sent(slot).len() as u64;
                let at = match offset {
                    OffsetChoice::Right => len,
                    OffsetChoice::Ahead(k) => len + k,
                    OffsetChoice::Behind => len.checked_sub(1).unwrap_or(1),
                };
                Step::Append {
                    slot,
                    chunk: CHUNKS[*chunk].to_vec(),
                    at: Some(at),
                }
            }
            None => Step::NoSession,
        },
        Op::FinishUpload { slot: s, digest } => match slot(*s) {
            Some(slot) => {
                let sent = view.sent(slot);
                let digest = match digest {
                    FinishDigest::Right(alg) => hash(*alg, &sent),
                    FinishDigest::Wrong(alg) => hash(*alg, &[&sent[..], b"!"].concat()),
                };
                Step::Finish { slot, digest }
            }
            None => Step::NoSession,
        },
        Op::CancelUpload { slot: s } => match slot(*s) {
            Some(slot) => Step::Cancel { slot },
            None => Step::NoSession,
        },
        Op::ResumeUpload { slot: s, via } => match slot(*s) {
            Some(slot) => Step::Resume {
                slot,
                via: via.map(str::to_owned),
            },
            None => Step::NoSession,
        },
        Op::PushImage {
            repo,
            image,
            reference,
        } => {
            let spec = image_spec(image, view, repo);
            let declared = match (image.docker, image.mismatch) {
                (true, false) | (false, true) => DOCKER_MANIFEST,
                (false, false) | (true, true) => OCI_MANIFEST,
            };
            push_step(repo, spec, declared, *reference)
        }
        Op::PushIndex {
            repo,
            docker,
            children,
            reference,
        } => {
            let items = children
                .iter()
                .map(|c| {
                    let (digest, media_type, size) = pick(view, repo, *c);
                    descriptor(&media_type, &digest, size)
                })
                .collect();
            let media_type = if *docker {
                DOCKER_MANIFEST_LIST
            } else {
                OCI_INDEX
            };
            let spec = BodySpec {
                media_type,
                index: true,
                artifact_type: None,
                config: None,
                items,
                subject: None,
                annotations: BTreeMap::new(),
            };
            push_step(repo, spec, media_type, *reference)
        }
        Op::PushReferrer {
            repo,
            subject,
            config,
            config_type,
            artifact_type,
            annotated,
            layers,
            reference,
        } => {
            let (digest, media_type, size) = pick(view, repo, *subject);
            let blob = |b: &BlobRef, t: &str| {
                let (digest, size) = pick_blob(view, repo, *b);
                descriptor(t, &digest, size)
            };
            let spec = BodySpec {
                media_type: OCI_MANIFEST,
                index: false,
                artifact_type: artifact_type.map(str::to_owned),
                config: Some(blob(config, config_type)),
                items: layers.iter().map(|l| blob(l, LAYER_TYPE)).collect(),
                subject: Some(descriptor(&media_type, &digest, size)),
                annotations: if *annotated {
                    BTreeMap::from([("org.example.note".to_owned(), repo.to_string())])
                } else {
                    BTreeMap::new()
                },
            };
            push_step(repo, spec, OCI_MANIFEST, *reference)
        }
        Op::Tag {
            repo,
            tag,
            manifest,
        } => Step::Tag {
            repo: repo.to_string(),
            tag: tag.to_string(),
            digest: pick(view, repo, *manifest).0,
        },
        Op::Pull { repo, reference } => Step::Pull {
            repo: repo.to_string(),
            reference: manifest_ref(view, repo, *reference),
        },
        Op::Untag { repo, tag } => Step::Untag {
            repo: repo.to_string(),
            tag: tag.to_string(),
        },
        Op::DeleteManifest { repo, reference } => Step::DeleteManifest {
            repo: repo.to_string(),
            reference: manifest_ref(view, repo, *reference),
        },
        Op::DeleteRepository { repo } => Step::DeleteRepository {
            repo: repo.to_string(),
        },
        Op::SetPolicy { enabled, days } => Step::SetPolicy {
            enabled: *enabled,
            days: *days,
        },
        Op::Restore { repo, what, force } => {
            let (tag, digest) = match what {
                RestoreSel::Tag(t) => (Some(t), None),
                RestoreSel::Digest(sel) => (None, Some(*sel)),
                RestoreSel::TagAndDigest(t, sel) => (Some(t), Some(*sel)),
            };
            Step::Restore {
                repo: repo.to_string(),
                tag: tag.map(|t| t.to_string()),
                digest: digest.map(|sel| pick_any(view, repo, sel)),
                force: *force,
            }
        }
        Op::RevertTag {
            repo,
            tag,
            manifest,
            force,
        } => Step::Revert {
            repo: repo.to_string(),
            tag: tag.to_string(),
            digest: pick_any(view, repo, *manifest),
            force: *force,
        },
        Op::PurgeRepository { repo } => Step::PurgeRepository {
            repo: repo.to_string(),
        },
        Op::PurgeManifest { repo, manifest } => Step::PurgeManifest {
            repo: repo.to_string(),
            digest: pick_any(view, repo, *manifest),
        },
        Op::PurgeTags { repo, tag } => Step::PurgeTags {
            repo: repo.to_string(),
            tag: tag.to_string(),
        },
        Op::Autopurge { now } => Step::Autopurge { now: *now },
        Op::Collect { dry_run } => Step::Collect { dry_run: *dry_run },
        Op::SetLocks { repo, item, locks } => Step::SetLocks {
            repo: repo.to_string(),
            item: match item {
                ItemSel::Repository => Item::Repository,
                ItemSel::Manifest(sel) => {
                    Item::Manifest(Digest::parse(&pick(view, repo, *sel).0).unwrap())
                }
                ItemSel::Tag(t) => Item::Tag(t.to_string()),
            },
            locks: *locks,
        },
        Op::SetRetention { enabled, days } => Step::SetRetention(RetentionPolicy {
            enabled: *enabled,
            days: *days,
        }),
        Op::PurgeByFilter(p) => Step::PurgeByFilter(p.clone()),
        Op::AdvanceClock(secs) => Step::Advance(*secs),
        // Every op of a batch is resolved against the state before the batch.
        Op::Batch(ops) => Step::Batch(ops.iter().map(|o| resolve(o, view)).collect()),
        Op::Reopen => Step::Reopen,
    }
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Model {
    now: Timestamp,
    /// Every repository with a record: live, or soft-deleted (`deleted` set). A purged one is
    /// gone from here.
    repositories: BTreeMap<String, RepoModel>,
    /// Every session ever started, in order; closed ones stay (their ops are `UploadUnknown`).
    uploads: Vec<UploadModel>,
    /// S1: the soft delete policy.
    policy: SoftDeletePolicy,
    /// S4: when autopurge last ran.
    last_run: Option<Timestamp>,
    /// R1: the retention policy for untagged manifests, and since when it is enabled (`None`
    /// while it is not).
    retention: RetentionPolicy,
    retention_since: Option<Timestamp>,
    /// G1: every blob record, digest → (size, created); a swept one is gone.
    blob_records: BTreeMap<String, (u64, Timestamp)>,
}

#[derive(Debug, Clone, Default)]
struct RepoModel {
    /// S2: set while the repository is in the recycle bin.
    deleted: Option<Timestamp>,
    /// Linked blobs: digest → bytes. A soft-deleted repository keeps them, unreadable.
    blobs: BTreeMap<String, Vec<u8>>,
    /// G3: when each blob was last linked (put, mounted or uploaded) here.
    linked: BTreeMap<String, Timestamp>,
    /// Live and soft-deleted manifests (`deleted` set); purged ones are gone.
    manifests: BTreeMap<String, ManifestModel>,
    /// Live tags.
    tags: BTreeMap<String, TagModel>,
    /// S5: the tags in the recycle bin, in deletion (`seq`) order.
    bin_tags: Vec<BinTag>,
    /// T1: every tag event, in `seq` order.
    history: Vec<EventModel>,
    /// The last event number: orders events and deletions made at the same clock time. Only
    /// the order within one repository is ever observable.
    seq: u64,
    /// L1: the locks of locked items by key: "" for the repository itself, else a manifest's
    /// digest or a tag's name (digests hold a `:`, tags none). Only live items carry locks;
    /// `locked_items` lists them in key order.
    locks: BTreeMap<String, Locks>,
}

#[derive(Debug, Clone)]
struct ManifestModel {
    body: Vec<u8>,
    media_type: String,
    created: Timestamp,
    updated: Timestamp,
    spec: BodySpec,
    /// S2: set while the manifest is in the recycle bin.
    deleted: Option<Timestamp>,
}

impl ManifestModel {
    fn live(&self) -> bool {
        self.deleted.is_none()
    }
}

/// A tag in the bin: it pointed at `digest` when event `seq` deleted it.
#[derive(Debug, Clone)]
struct BinTag {
    tag: String,
    digest: String,
    deleted_at: Timestamp,
    seq: u64,
}

/// T1: the tag moved `from` one manifest `to` another.
#[derive(Debug, Clone)]
struct EventModel {
    tag: String,
    from: Option<String>,
    to: Option<String>,
    at: Timestamp,
    cause: TagCause,
}

#[derive(Debug, Clone)]
struct TagModel {
    digest: String,
    updated: Timestamp,
}

#[derive(Debug, Clone)]
struct UploadModel {
    repo: String,
    started: Timestamp,
    bytes: Vec<u8>,
    open: bool,
}

impl Model {
    fn new() -> Model {
        Model {
            now: START,
            repositories: BTreeMap::new(),
            uploads: Vec::new(),
            policy: SoftDeletePolicy::default(),
            last_run: None,
            retention: RetentionPolicy {
                enabled: false,
                days: 7,
            },
            retention_since: None,
            blob_records: BTreeMap::new(),
        }
    }

    /// L1, L2: fails if a lock refuses `need` on item `key` of `repo` (see
    /// [`RepoModel::check_lock`]); a repository without a record has no locks.
    fn check_lock(&self, repo: &str, key: &str, need: Need) -> Result<(), ErrKind> {
        match self.repositories.get(repo) {
            Some(r) => r.check_lock(repo, key, need),
            None => Ok(()),
        }
    }

    /// L2: fails if pointing `tag` of `repo` at `digest` is refused.
    fn check_tag_move(&self, repo: &str, tag: &str, digest: &str) -> Result<(), ErrKind> {
        match self.repositories.get(repo) {
            Some(r) => r.check_tag_move(repo, tag, digest),
            None => Ok(()),
        }
    }

    /// S3: the retention in force now.
    fn retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.policy.retention_days) * 86_400)
    }

    /// S3: when a tombstone deleted at `at` expires, by the retention in force now.
    fn expires(&self, at: Timestamp) -> Timestamp {
        at.saturating_add(self.retention())
    }

    /// Whether the repository has a record and is not in the bin.
    fn live_repo(&self, repo: &str) -> bool {
        self.repositories
            .get(repo)
            .is_some_and(|r| r.deleted.is_none())
    }

    /// Creates the repository or brings it back out of the bin (S11, S12); its tombstones stay.
    fn ensure_repo(&mut self, repo: &str) -> &mut RepoModel {
        let r = self.repositories.entry(repo.to_owned()).or_default();
        r.deleted = None;
        r
    }

    /// Whether blob `digest` is linked to `repo`, whatever the repository's state: a
    /// soft-deleted repository keeps its links, and a push into it may use them (S12).
    fn linked(&self, repo: &str, digest: &str) -> bool {
        self.repositories
            .get(repo)
            .is_some_and(|r| r.blobs.contains_key(digest))
    }

    /// Whether `digest` is a live manifest of `repo`.
    fn has_manifest(&self, repo: &str, digest: &str) -> bool {
        self.repositories
            .get(repo)
            .and_then(|r| r.manifests.get(digest))
            .is_some_and(ManifestModel::live)
    }

    /// A blob put, mount or upload: linked, and the repository live (S12).
    fn link(&mut self, repo: &str, digest: &str, bytes: &[u8]) {
        let now = self.now;
        let r = self.ensure_repo(repo);
        r.blobs.insert(digest.to_owned(), bytes.to_vec());
        r.linked.insert(digest.to_owned(), now);
        let record = (bytes.len() as u64, now);
        self.blob_records.entry(digest.to_owned()).or_insert(record);
    }

    /// G1–G5: a collection with the default grace period.
    fn collect(&mut self, dry_run: bool) -> Value {
        let cutoff = self.now.saturating_sub(GRACE_PERIOD);
        let mut marked = BTreeSet::new();
        let mut doomed = Vec::new();
        for (name, r) in &self.repositories {
            let referenced: BTreeSet<String> = r
                .manifests
                .values()
                .filter(|m| !m.spec.index)
                .flat_map(|m| m.spec.references())
                .map(|d| d.digest.to_string())
                .collect();
            for (digest, linked) in &r.linked {
                if referenced.contains(digest) || *linked >= cutoff {
                    marked.insert(digest.clone());
                } else {
                    doomed.push((name.clone(), digest.clone()));
                }
            }
            marked.extend(referenced);
        }
        let mut v = Collected::default();
        let mut swept = Vec::new();
        for (digest, (size, created)) in &self.blob_records {
            let (count, bytes) = if marked.contains(digest) {
                (&mut v.marked, &mut v.bytes_marked)
            } else if *created >= cutoff {
                (&mut v.kept, &mut v.bytes_kept)
            } else {
                swept.push(digest.clone());
                (&mut v.swept, &mut v.bytes_swept)
            };
            *count += 1;
            *bytes += size;
        }
        let now = self.now;
        let expired: Vec<&mut UploadModel> = self
            .uploads
            .iter_mut()
            .filter(|s| s.open && now.since(s.started) > UPLOAD_TIMEOUT)
            .collect();
        v.links_removed = doomed.len() as u64;
        v.uploads_removed = expired.len() as u64;
        if !dry_run {
            for s in expired {
                s.open = false;
            }
            for (repo, digest) in doomed {
                let r = self.repositories.get_mut(&repo).unwrap();
                r.blobs.remove(&digest);
                r.linked.remove(&digest);
            }
            for digest in swept {
                self.blob_records.remove(&digest);
            }
        }
        Value::Collected(v)
    }

    /// An upload session that still answers: open and not older than the timeout (measured
    /// from its start, in use or not).
    fn live_session(&mut self, slot: usize) -> Result<&mut UploadModel, ErrKind> {
        let now = self.now;
        let s = &mut self.uploads[slot];
        if !s.open || now.since(s.started) > UPLOAD_TIMEOUT {
            return Err(ErrKind::UploadUnknown);
        }
        Ok(s)
    }
}

impl RepoModel {
    fn tags_of(&self, digest: &str) -> Vec<String> {
        let tags = self.tags.iter().filter(|(_, t)| t.digest == digest);
        tags.map(|(name, _)| name.clone()).collect()
    }

    fn touch(&mut self, digest: &str, now: Timestamp) {
        if let Some(m) = self.manifests.get_mut(digest) {
            m.updated = now;
        }
    }

    /// P5: the tag moves; the manifest it left and the one it reaches count as updated. A tag
    /// already on the manifest changes nothing. T1: a move is an event.
    fn move_tag(&mut self, tag: &str, digest: &str, now: Timestamp, cause: TagCause) {
        if self.tags.get(tag).is_some_and(|t| t.digest == digest) {
            return;
        }
        let moved = TagModel {
            digest: digest.to_owned(),
            updated: now,
        };
        let previous = self.tags.insert(tag.to_owned(), moved).map(|p| p.digest);
        if let Some(previous) = &previous {
            self.touch(previous, now);
        }
        self.touch(digest, now);
        self.record(tag, previous, Some(digest.to_owned()), now, cause);
    }

    /// T1: appends an event and returns its number.
    fn record(
        &mut self,
        tag: &str,
        from: Option<String>,
        to: Option<String>,
        at: Timestamp,
        cause: TagCause,
    ) -> u64 {
        self.seq += 1;
        self.history.push(EventModel {
            tag: tag.to_owned(),
            from,
            to,
            at,
            cause,
        });
        self.seq
    }

    /// D1, S2: removes live tag `tag` (the manifest counts as updated), records it, and bins
    /// it if `bin`. Returns the manifest it pointed at.
    fn drop_tag(&mut self, tag: &str, now: Timestamp, cause: TagCause, bin: bool) -> String {
        let digest = self.tags.remove(tag).expect("a live tag").digest;
        self.touch(&digest, now);
        let seq = self.record(tag, Some(digest.clone()), None, now, cause);
        if bin {
            self.bin_tags.push(BinTag {
                tag: tag.to_owned(),
                digest: digest.clone(),
                deleted_at: now,
                seq,
            });
        }
        digest
    }

    /// Permanently removes a manifest with its tags in the bin and the history events naming
    /// it (T2). Its live tags are gone already.
    fn purge_manifest(&mut self, digest: &str) {
        self.manifests.remove(digest);
        self.bin_tags.retain(|t| t.digest != digest);
        self.history
            .retain(|e| e.from.as_deref() != Some(digest) && e.to.as_deref() != Some(digest));
    }

    /// D2–D4, S2: deletes a live manifest's tags (in lexical order), then the manifest: into
    /// the bin if `bin`, for good otherwise. L1: their locks go with them.
    fn delete_live_manifest(&mut self, digest: &str, now: Timestamp, bin: bool, cause: TagCause) {
        for tag in self.tags_of(digest) {
            self.locks.remove(&tag);
            self.drop_tag(&tag, now, cause, bin);
        }
        self.locks.remove(digest);
        let m = &self.manifests[digest];
        let children: Vec<String> = match m.spec.index {
            true => m.spec.items.iter().map(|d| d.digest.to_string()).collect(),
            false => Vec::new(),
        };
        if bin {
            self.manifests.get_mut(digest).unwrap().deleted = Some(now);
        } else {
            self.purge_manifest(digest);
        }
        // R2: the live children of an index that goes are no longer held: they count as
        // updated.
        for child in children {
            if self.manifests.get(&child).is_some_and(ManifestModel::live) {
                self.touch(&child, now);
            }
        }
    }

    /// Deletes live manifests `doomed` in order, each with its tags.
    fn remove_manifests(&mut self, doomed: &[String], now: Timestamp, bin: bool, cause: TagCause) {
        for digest in doomed {
            self.delete_live_manifest(digest, now, bin, cause);
        }
    }

    fn live_manifests(&self) -> impl Iterator<Item = (&String, &ManifestModel)> {
        self.manifests.iter().filter(|(_, m)| m.live())
    }

    /// Digests of the live manifests by (last update, digest), oldest first.
    fn live_by_time(&self) -> Vec<String> {
        let mut all: Vec<(Timestamp, &String)> =
            self.live_manifests().map(|(d, x)| (x.updated, d)).collect();
        all.sort();
        all.into_iter().map(|(_, d)| d.clone()).collect()
    }

    /// D5: live manifest `digest` and its live referrers, recursively: breadth first, each
    /// subject's referrers by digest.
    fn doomed_by(&self, digest: &str) -> Vec<String> {
        let mut doomed = vec![digest.to_owned()];
        let mut next = 0;
        while let Some(subject) = doomed.get(next).cloned() {
            for (d, x) in self.live_manifests() {
                let refers = x
                    .spec
                    .subject
                    .as_ref()
                    .is_some_and(|s| s.digest.as_str() == subject);
                if refers && !doomed.contains(d) {
                    doomed.push(d.clone());
                }
            }
            next += 1;
        }
        doomed
    }

    /// The first live index (by digest) that lists `digest`, other than those of `except`
    /// (R2, D5).
    fn listed(&self, digest: &str, except: &[String]) -> Option<String> {
        self.live_manifests()
            .find(|(index, x)| {
                x.spec.index
                    && x.spec.items.iter().any(|c| c.digest.as_str() == digest)
                    && !except.contains(index)
            })
            .map(|(index, _)| index.clone())
    }

    /// R2, U3: whether live manifest `digest` refers to a live manifest of this repository.
    fn refers_to_live(&self, digest: &str) -> bool {
        let subject = self.manifests[digest].spec.subject.as_ref();
        subject.is_some_and(|s| {
            self.manifests
                .get(s.digest.as_str())
                .is_some_and(ManifestModel::live)
        })
    }

    /// L1: the locked items among manifests `doomed` and their tags, by key, each manifest
    /// before its tags (lexical), with the flag that refuses deleting them.
    fn locked_among(&self, doomed: &[String]) -> Vec<(String, &'static str)> {
        let keys = doomed
            .iter()
            .flat_map(|d| std::iter::once(d.clone()).chain(self.tags_of(d)));
        keys.filter_map(|k| Some((k.clone(), refusing_flag(self.locks_of(&k), Need::Delete)?)))
            .collect()
    }

    /// D5, L1: why live manifests `doomed` of repository `name` cannot be deleted together: a
    /// live index outside them lists one; the repository's locks; a lock of one of them or of
    /// one of their tags.
    fn delete_refusal(&self, name: &str, doomed: &[String]) -> Result<(), ErrKind> {
        for digest in doomed {
            if let Some(index) = self.listed(digest, doomed) {
                return Err(ErrKind::ManifestReferenced {
                    repository: name.to_owned(),
                    digest: digest.clone(),
                    index,
                });
            }
        }
        self.check_lock(name, "", Need::Delete)?;
        match self.locked_among(doomed).into_iter().next() {
            Some((key, flag)) => Err(locked(name, &key, flag)),
            None => Ok(()),
        }
    }

    fn locks_of(&self, key: &str) -> Locks {
        self.locks.get(key).copied().unwrap_or(Locks::UNLOCKED)
    }

    /// L1, L2: fails if a lock refuses `need` on item `key` of this repository, `name`: the
    /// repository's own locks cover everything in it, then the item's.
    fn check_lock(&self, name: &str, key: &str, need: Need) -> Result<(), ErrKind> {
        for k in ["", key] {
            if let Some(flag) = refusing_flag(self.locks_of(k), need) {
                return Err(locked(name, k, flag));
            }
        }
        Ok(())
    }

    /// L2: pointing `tag` at `digest` moves the tag, unless it is there already; either way
    /// it writes into the repository.
    fn check_tag_move(&self, name: &str, tag: &str, digest: &str) -> Result<(), ErrKind> {
        let moves = self.tags.get(tag).is_none_or(|t| t.digest != digest);
        self.check_lock(name, if moves { tag } else { "" }, Need::Write)
    }

    /// P8: the descriptor a referrers listing shows.
    fn referrer_descriptor(&self, digest: &str) -> Descriptor {
        let m = &self.manifests[digest];
        let fallback = m.spec.config.as_ref().map(|c| c.media_type.clone());
        Descriptor {
            artifact_type: m.spec.artifact_type.clone().or(fallback),
            annotations: m.spec.annotations.clone(),
            ..descriptor(&m.media_type, digest, m.body.len() as u64)
        }
    }

    fn expected_manifest(&self, digest: &str) -> Manifest {
        let m = &self.manifests[digest];
        Manifest {
            digest: Digest::parse(digest).unwrap(),
            media_type: m.media_type.clone(),
            size: m.body.len() as u64,
            created: m.created,
            updated: m.updated,
            tags: self.tags_of(digest),
            artifact_type: m.spec.artifact_type.clone(),
            references: m.spec.references(),
            subject: m.spec.subject.as_ref().map(|s| s.digest.clone()),
            annotations: m.spec.annotations.clone(),
        }
    }

    /// Manifests by (last update, digest), oldest first.
    fn by_time(&self) -> Vec<Manifest> {
        let all = self.live_by_time();
        all.iter().map(|d| self.expected_manifest(d)).collect()
    }
}

/// What an operation needs of an item's locks (L1, L2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// To change it: push into a repository, move a tag.
    Write,
    /// To delete it, or untag it.
    Delete,
}

/// L1, L2: the flag of `locks` that refuses `need`: `write_enabled` false refuses changes and
/// deletes alike (a manifest's two flags both mean "not deletable"), `delete_enabled` false
/// deletes.
fn refusing_flag(locks: Locks, need: Need) -> Option<&'static str> {
    if !locks.write_enabled {
        Some("write_enabled")
    } else if need == Need::Delete && !locks.delete_enabled {
        Some("delete_enabled")
    } else {
        None
    }
}

/// The key of an item among a repository's locks ([`RepoModel::locks`]).
fn lock_key(item: &Item) -> String {
    match item {
        Item::Repository => String::new(),
        Item::Manifest(digest) => digest.to_string(),
        Item::Tag(tag) => tag.clone(),
    }
}

fn lock_item(key: &str) -> Item {
    if key.is_empty() {
        Item::Repository
    } else if key.contains(':') {
        Item::Manifest(Digest::parse(key).unwrap())
    } else {
        Item::Tag(key.to_owned())
    }
}

/// `Locked`: `flag` of item `key` of `repo` refuses the operation.
fn locked(repo: &str, key: &str, flag: &str) -> ErrKind {
    let item = if key.is_empty() {
        "the repository".to_owned()
    } else if key.contains(':') {
        format!("manifest {key}")
    } else {
        format!("tag {key}")
    };
    ErrKind::Locked {
        repository: repo.to_owned(),
        item,
        lock: flag.to_owned(),
    }
}

impl View for Model {
    fn blobs_of(&self, repo: &str) -> Vec<(String, u64)> {
        // A soft-deleted repository lists no blobs.
        let Some(r) = self.repositories.get(repo).filter(|r| r.deleted.is_none()) else {
            return Vec::new();
        };
        let blobs = r.blobs.iter();
        blobs.map(|(d, b)| (d.clone(), b.len() as u64)).collect()
    }

    fn manifests_of(&self, repo: &str) -> Vec<(String, String, u64)> {
        let Some(r) = self.repositories.get(repo) else {
            return Vec::new();
        };
        r.live_manifests()
            .map(|(d, m)| (d.clone(), m.media_type.clone(), m.body.len() as u64))
            .collect()
    }

    fn binned_of(&self, repo: &str) -> Vec<String> {
        let Some(r) = self.repositories.get(repo) else {
            return Vec::new();
        };
        let binned = r.manifests.iter().filter(|(_, m)| !m.live());
        binned.map(|(d, _)| d.clone()).collect()
    }

    fn sessions(&self) -> usize {
        self.uploads.len()
    }

    fn sent(&self, slot: usize) -> Vec<u8> {
        self.uploads[slot].bytes.clone()
    }
}

/// Runs `op` on the model and predicts its outcome.
fn apply_model(model: &mut Model, op: &Op) -> Outcome {
    let step = resolve(op, model);
    model_step(model, &step)
}

fn model_step(m: &mut Model, step: &Step) -> Outcome {
    match step {
        Step::PutBlob {
            repo,
            digest,
            bytes,
        } => {
            check_repo(repo)?;
            if !valid_digest(digest) {
                return Err(ErrKind::InvalidDigest(digest.clone()));
            }
            // L2: refused before the bytes are looked at.
            m.check_lock(repo, "", Need::Write)?;
            let actual = hash(algorithm_of(digest), bytes);
            if &actual != digest {
                return Err(ErrKind::DigestMismatch {
                    expected: digest.clone(),
                    actual,
                });
            }
            m.link(repo, digest, bytes);
            Ok(Value::Unit)
        }
        Step::PutBlobSha256 { repo, bytes } => {
            check_repo(repo)?;
            m.check_lock(repo, "", Need::Write)?;
            let digest = sha256(bytes);
            m.link(repo, &digest, bytes);
            Ok(Value::Digest(digest))
        }
        Step::Mount { from, to, digest } => {
            check_repo(to)?;
            check_repo(from)?;
            // S13: nothing is mounted out of the bin.
            if m.repositories
                .get(from)
                .is_some_and(|r| r.deleted.is_some())
            {
                return Err(ErrKind::RepositorySoftDeleted(from.clone()));
            }
            if !m.linked(from, digest) {
                return Err(ErrKind::BlobUnknown {
                    repository: from.clone(),
                    digest: digest.clone(),
                });
            }
            m.check_lock(to, "", Need::Write)?;
            let bytes = m.repositories[from.as_str()].blobs[digest].clone();
            m.link(to, digest, &bytes);
            Ok(Value::Unit)
        }
        Step::StartUpload { repo } => {
            check_repo(repo)?;
            m.check_lock(repo, "", Need::Write)?;
            m.uploads.push(UploadModel {
                repo: repo.clone(),
                started: m.now,
                bytes: Vec::new(),
                open: true,
            });
            Ok(Value::Started)
        }
        Step::Append { slot, chunk, at } => {
            let s = m.live_session(*slot)?;
            let actual = s.bytes.len() as u64;
            if let Some(expected) = *at {
                if expected != actual {
                    return Err(ErrKind::UploadOffsetMismatch { expected, actual });
                }
            }
            s.bytes.extend_from_slice(chunk);
            Ok(Value::Offset(s.bytes.len() as u64))
        }
        Step::Finish { slot, digest } => {
            let s = m.live_session(*slot)?;
            let actual = hash(algorithm_of(digest), &s.bytes);
            if &actual != digest {
                // The session stays open.
                return Err(ErrKind::DigestMismatch {
                    expected: digest.clone(),
                    actual,
                });
            }
            let (repo, bytes) = (s.repo.clone(), s.bytes.clone());
            // L2: refused like a put; the session stays open, to finish once unlocked.
            m.check_lock(&repo, "", Need::Write)?;
            m.uploads[*slot].open = false;
            m.link(&repo, digest, &bytes);
            Ok(Value::Unit)
        }
        Step::Cancel { slot } => {
            m.live_session(*slot)?.open = false;
            Ok(Value::Unit)
        }
        Step::Resume { slot, via } => {
            if let Some(via) = via {
                check_repo(via)?;
            }
            let s = m.live_session(*slot)?;
            if via.as_ref().is_some_and(|via| *via != s.repo) {
                return Err(ErrKind::UploadUnknown);
            }
            Ok(Value::Offset(s.bytes.len() as u64))
        }
        Step::Push {
            repo,
            reference,
            declared,
            spec,
            body,
        } => model_push(m, repo, reference, declared, spec, body),
        Step::Tag { repo, tag, digest } => {
            check_repo(repo)?;
            if !valid_tag(tag) {
                return Err(ErrKind::InvalidTag(tag.clone()));
            }
            if !m.has_manifest(repo, digest) {
                return Err(ErrKind::ManifestUnknown {
                    repository: repo.clone(),
                    reference: digest.clone(),
                });
            }
            m.check_tag_move(repo, tag, digest)?;
            let now = m.now;
            let r = m.repositories.get_mut(repo.as_str()).unwrap();
            r.move_tag(tag, digest, now, TagCause::Push);
            Ok(Value::Unit)
        }
        Step::Pull { repo, reference } => {
            check_repo(repo)?;
            let unknown = |reference: &str| ErrKind::ManifestUnknown {
                repository: repo.clone(),
                reference: reference.to_owned(),
            };
            let r = m.repositories.get(repo.as_str());
            let digest = match parse_reference(reference)? {
                ModelRef::Tag(t) => r
                    .and_then(|r| r.tags.get(&t))
                    .map(|t| t.digest.clone())
                    .ok_or_else(|| unknown(&t))?,
                ModelRef::Digest(d) => d,
            };
            let m = r
                .and_then(|r| r.manifests.get(&digest))
                .filter(|m| m.live())
                .ok_or_else(|| unknown(&digest))?;
            Ok(Value::Pulled {
                digest,
                media_type: m.media_type.clone(),
                body: m.body.clone(),
            })
        }
        Step::Untag { repo, tag } => {
            check_repo(repo)?;
            if !valid_tag(tag) {
                return Err(ErrKind::InvalidTag(tag.clone()));
            }
            let (now, bin) = (m.now, m.policy.enabled);
            match m.repositories.get_mut(repo.as_str()) {
                Some(r) if r.tags.contains_key(tag) => {
                    r.check_lock(repo, tag, Need::Delete)?;
                    r.drop_tag(tag, now, TagCause::Untag, bin);
                    Ok(Value::Unit)
                }
                _ => Err(ErrKind::TagUnknown {
                    repository: repo.clone(),
                    tag: tag.clone(),
                }),
            }
        }
        Step::DeleteManifest { repo, reference } => model_delete_manifest(m, repo, reference),
        Step::DeleteRepository { repo } => {
            check_repo(repo)?;
            if !m.live_repo(repo) {
                return Err(ErrKind::RepositoryUnknown(repo.clone()));
            }
            // L1: the first locked item, the repository's own locks first.
            let r = &m.repositories[repo.as_str()];
            if let Some((key, locks)) = r.locks.iter().next() {
                let flag = refusing_flag(*locks, Need::Delete).expect("a lock refuses deletes");
                return Err(locked(repo, key, flag));
            }
            if !m.policy.enabled {
                m.repositories.remove(repo.as_str());
                return Ok(Value::Unit);
            }
            let now = m.now;
            let r = m.repositories.get_mut(repo.as_str()).unwrap();
            // In update order: the order of the deletions' events.
            let live = r.live_by_time();
            r.remove_manifests(&live, now, true, TagCause::Delete);
            r.deleted = Some(now);
            Ok(Value::Unit)
        }
        Step::SetPolicy { enabled, days } => {
            if !(1..=90).contains(days) {
                return Err(ErrKind::InvalidSetting {
                    setting: "soft delete retention_days".to_owned(),
                    value: days.to_string(),
                });
            }
            m.policy = SoftDeletePolicy {
                enabled: *enabled,
                retention_days: *days,
            };
            Ok(Value::Unit)
        }
        Step::Restore {
            repo,
            tag,
            digest,
            force,
        } => model_restore(m, repo, tag.as_deref(), digest.as_deref(), *force),
        Step::Revert {
            repo,
            tag,
            digest,
            force,
        } => {
            check_repo(repo)?;
            if !valid_tag(tag) {
                return Err(ErrKind::InvalidTag(tag.clone()));
            }
            let r = m.repositories.get(repo.as_str());
            let held = r.is_some_and(|r| {
                r.history.iter().any(|e| {
                    e.tag == *tag
                        && (e.from.as_ref() == Some(digest) || e.to.as_ref() == Some(digest))
                })
            });
            if !held {
                return Err(ErrKind::NotInHistory {
                    repository: repo.clone(),
                    tag: tag.clone(),
                    digest: digest.clone(),
                });
            }
            model_restore(m, repo, Some(tag), Some(digest), *force).map(|_| Value::Unit)
        }
        Step::PurgeRepository { repo } => {
            check_repo(repo)?;
            if m.live_repo(repo) || !m.repositories.contains_key(repo.as_str()) {
                return Err(ErrKind::NotDeleted {
                    repository: repo.clone(),
                    item: "the repository".to_owned(),
                });
            }
            m.repositories.remove(repo.as_str());
            Ok(Value::Unit)
        }
        Step::PurgeManifest { repo, digest } => {
            check_repo(repo)?;
            let binned = m
                .repositories
                .get(repo.as_str())
                .and_then(|r| r.manifests.get(digest));
            if binned.is_none_or(ManifestModel::live) {
                return Err(ErrKind::NotDeleted {
                    repository: repo.clone(),
                    item: format!("manifest {digest}"),
                });
            }
            m.repositories
                .get_mut(repo.as_str())
                .unwrap()
                .purge_manifest(digest);
            Ok(Value::Unit)
        }
        Step::PurgeTags { repo, tag } => {
            check_repo(repo)?;
            if !valid_tag(tag) {
                return Err(ErrKind::InvalidTag(tag.clone()));
            }
            let r = m.repositories.get_mut(repo.as_str());
            let purged = r.map_or(0, |r| {
                let before = r.bin_tags.len();
                r.bin_tags.retain(|t| t.tag != *tag);
                before - r.bin_tags.len()
            });
            if purged == 0 {
                return Err(ErrKind::NotDeleted {
                    repository: repo.clone(),
                    item: format!("tag {tag}"),
                });
            }
            Ok(Value::Count(purged))
        }
        Step::Autopurge { now } => {
            // S4: due when it never ran, once the interval has passed, or when the clock went
            // back before the last run.
            let due = m.last_run.is_none_or(|last| {
                m.now < last || m.now >= last.saturating_add(AUTOPURGE_INTERVAL)
            });
            Ok(if *now || due {
                model_autopurge(m)
            } else {
                Value::NotDue
            })
        }
        Step::SetLocks { repo, item, locks } => {
            check_repo(repo)?;
            let r = m.repositories.get(repo.as_str());
            match item {
                Item::Repository if !m.live_repo(repo) => {
                    return Err(ErrKind::RepositoryUnknown(repo.clone()));
                }
                Item::Manifest(d) if !m.has_manifest(repo, d.as_str()) => {
                    return Err(ErrKind::ManifestUnknown {
                        repository: repo.clone(),
                        reference: d.to_string(),
                    });
                }
                Item::Tag(t) if !valid_tag(t) => return Err(ErrKind::InvalidTag(t.clone())),
                Item::Tag(t) if !r.is_some_and(|r| r.tags.contains_key(t)) => {
                    return Err(ErrKind::TagUnknown {
                        repository: repo.clone(),
                        tag: t.clone(),
                    });
                }
                _ => {}
            }
            let r = m.repositories.get_mut(repo.as_str()).unwrap();
            if locks.delete_enabled && locks.write_enabled {
                r.locks.remove(&lock_key(item));
            } else {
                r.locks.insert(lock_key(item), *locks);
            }
            Ok(Value::Unit)
        }
        Step::SetRetention(policy) => {
            if policy.days > 365 {
                return Err(ErrKind::InvalidSetting {
                    setting: "retention days".to_owned(),
                    value: policy.days.to_string(),
                });
            }
            // R1: enabling starts its clock; changing the days of an enabled policy keeps it.
            m.retention_since = match policy.enabled {
                true => m.retention_since.or(Some(m.now)),
                false => None,
            };
            m.retention = *policy;
            Ok(Value::Unit)
        }
        Step::PurgeByFilter(p) => model_purge(m, p),
        Step::Advance(secs) => {
            m.now = m.now.saturating_add(Duration::from_secs(*secs));
            Ok(Value::Unit)
        }
        Step::Batch(steps) => {
            // C1: all or nothing.
            let mut scratch = m.clone();
            let mut values = Vec::new();
            for step in steps {
                values.push(model_step(&mut scratch, step)?);
            }
            *m = scratch;
            Ok(Value::Batch(values))
        }
        Step::Collect { dry_run } => Ok(m.collect(*dry_run)),
        Step::Reopen => Ok(Value::Unit),
        Step::NoSession => Ok(Value::NoSession),
    }
}

/// D2, D3, D5: the manifest and its live referrers, recursively; refused while a live index
/// outside them lists one of them, or a lock protects them (L1).
fn model_delete_manifest(m: &mut Model, repo: &str, reference: &str) -> Outcome {
    check_repo(repo)?;
    let unknown = |reference: &str| ErrKind::ManifestUnknown {
        repository: repo.to_owned(),
        reference: reference.to_owned(),
    };
    let r = m.repositories.get(repo);
    let digest = match parse_reference(reference)? {
        ModelRef::Tag(t) => r
            .and_then(|r| r.tags.get(&t))
            .map(|t| t.digest.clone())
            .ok_or_else(|| unknown(&t))?,
        ModelRef::Digest(d) => d,
    };
    if !m.has_manifest(repo, &digest) {
        return Err(unknown(&digest));
    }
    let (now, bin) = (m.now, m.policy.enabled);
    let r = m.repositories.get_mut(repo).unwrap();
    let doomed = r.doomed_by(&digest);
    r.delete_refusal(repo, &doomed)?;
    r.remove_manifests(&doomed, now, bin, TagCause::Delete);
    Ok(Value::Digests(doomed))
}

/// S6–S11: brings `digest` (or the manifest `tag` was most recently deleted from) back with at
/// most `tag`; a forced restore moves `tag` off another manifest, into the bin.
fn model_restore(
    m: &mut Model,
    repo: &str,
    tag: Option<&str>,
    digest: Option<&str>,
    force: bool,
) -> Outcome {
    check_repo(repo)?;
    if let Some(tag) = tag.filter(|t| !valid_tag(t)) {
        return Err(ErrKind::InvalidTag(tag.to_owned()));
    }
    let r = m.repositories.get(repo);
    let digest = match (tag, digest) {
        (_, Some(digest)) => digest.to_owned(),
        (Some(tag), None) => r
            .and_then(|r| {
                r.bin_tags
                    .iter()
                    .filter(|t| t.tag == tag)
                    .max_by_key(|t| t.seq)
            })
            .map(|t| t.digest.clone())
            .ok_or_else(|| ErrKind::NotDeleted {
                repository: repo.to_owned(),
                item: format!("tag {tag}"),
            })?,
        (None, None) => unreachable!("a restore names a tag or a digest"),
    };
    let Some(x) = r.and_then(|r| r.manifests.get(&digest)) else {
        return Err(ErrKind::ManifestUnknown {
            repository: repo.to_owned(),
            reference: digest,
        });
    };
    let binned = !x.live();
    if let Some(subject) = x.spec.subject.as_ref().filter(|_| binned) {
        let subject = subject.digest.to_string();
        if r.and_then(|r| r.manifests.get(&subject))
            .is_some_and(|s| !s.live())
        {
            return Err(ErrKind::SubjectDeleted {
                repository: repo.to_owned(),
                subject,
            });
        }
    }
    // L2: a restore writes into the repository, and moves its tag.
    match tag {
        Some(tag) => m.check_tag_move(repo, tag, &digest)?,
        None => m.check_lock(repo, "", Need::Write)?,
    }
    let (now, bin) = (m.now, m.policy.enabled);
    if let Some(tag) = tag {
        let current = r.and_then(|r| r.tags.get(tag)).map(|t| t.digest.clone());
        if let Some(current) = current.filter(|c| *c != digest) {
            if !force {
                return Err(ErrKind::TagConflict {
                    repository: repo.to_owned(),
                    tag: tag.to_owned(),
                    digest: current,
                });
            }
            let r = m.repositories.get_mut(repo).unwrap();
            r.drop_tag(tag, now, TagCause::Restore, bin);
        }
    }
    let r = m.ensure_repo(repo);
    let x = r.manifests.get_mut(&digest).unwrap();
    if binned {
        x.deleted = None;
        x.updated = now;
    }
    if let Some(tag) = tag {
        r.bin_tags.retain(|t| !(t.tag == tag && t.digest == digest));
        r.move_tag(tag, &digest, now, TagCause::Restore);
    }
    Ok(Value::Digest(digest))
}

/// S3, S4: removes every tombstone whose retention, as it is now, has run out: tags, then
/// manifests (with what belongs to them), then repositories (with everything in them).
fn model_autopurge(m: &mut Model) -> Value {
    let (now, retention) = (m.now, m.retention());
    let expired = move |at: Timestamp| at.saturating_add(retention) <= now;
    let (mut tags, mut manifests) = (0, 0);
    for r in m.repositories.values_mut() {
        let before = r.bin_tags.len();
        r.bin_tags.retain(|t| !expired(t.deleted_at));
        tags += before - r.bin_tags.len();
    }
    for r in m.repositories.values_mut() {
        let doomed: Vec<String> = r
            .manifests
            .iter()
            .filter(|(_, x)| x.deleted.is_some_and(expired))
            .map(|(d, _)| d.clone())
            .collect();
        manifests += doomed.len();
        for digest in doomed {
            r.purge_manifest(&digest);
        }
    }
    let before = m.repositories.len();
    m.repositories
        .retain(|_, r| !r.deleted.is_some_and(expired));
    let repositories = before - m.repositories.len();
    // After the bin is emptied: what the policy deletes now stays in the bin.
    let untagged_deleted = model_retention(m);
    m.last_run = Some(now);
    Value::Purged {
        at: now,
        repositories,
        manifests,
        tags,
        untagged_deleted,
    }
}

/// R1–R3: deletes every live manifest that has stayed untagged for the policy's days since a
/// time at or after the policy took effect, and returns how many manifests went, referrers
/// included. R2 spares children of a live index and referrers of a live subject; a manifest
/// whose deletion is refused (D5, L1) stays. A run leaves nothing due behind: a deletion can
/// free what it held (an index its children), so passes repeat until one deletes nothing. Each
/// pass goes oldest first (by untagged since, repository, digest), each manifest judged as the
/// ones before it left the registry.
fn model_retention(m: &mut Model) -> usize {
    let mut deleted = 0;
    loop {
        let pass = retention_pass(m);
        deleted += pass;
        if pass == 0 {
            return deleted;
        }
    }
}

/// One pass of [`model_retention`].
fn retention_pass(m: &mut Model) -> usize {
    let Some(since) = m.retention_since else {
        return 0;
    };
    let period = Duration::from_secs(u64::from(m.retention.days) * 86_400);
    let cutoff = m.now.saturating_sub(period);
    // An untagged manifest's last update is when it lost its last tag, or was pushed or
    // restored untagged.
    let mut due: Vec<(Timestamp, String, String)> = Vec::new();
    for (name, r) in &m.repositories {
        for (digest, x) in r.live_manifests() {
            if r.tags_of(digest).is_empty() && since <= x.updated && x.updated <= cutoff {
                due.push((x.updated, name.clone(), digest.clone()));
            }
        }
    }
    due.sort();
    let (now, bin) = (m.now, m.policy.enabled);
    let mut deleted = 0;
    for (_, name, digest) in due {
        let r = m.repositories.get_mut(&name).unwrap();
        // An earlier deletion may have taken it along as a referrer.
        let live = r.manifests.get(&digest).is_some_and(ManifestModel::live);
        if !live || r.listed(&digest, &[]).is_some() || r.refers_to_live(&digest) {
            continue;
        }
        let doomed = r.doomed_by(&digest);
        if r.delete_refusal(&name, &doomed).is_ok() {
            r.remove_manifests(&doomed, now, bin, TagCause::Retention);
            deleted += doomed.len();
        }
    }
    deleted
}

/// The length of a purge age of [`AGOS`], if it is one.
fn ago_secs(ago: &str) -> Option<u64> {
    AGOS.iter()
        .find(|(text, _)| *text == ago)
        .and_then(|(_, secs)| *secs)
}

/// U1–U6: a purge by filter, on the model (on a copy of it for a dry run).
fn model_purge(m: &mut Model, p: &PurgeSel) -> Outcome {
    let filters = p
        .filters
        .iter()
        .map(|text| {
            let case = FILTERS.iter().find(|f| f.text == *text);
            case.ok_or_else(|| ErrKind::InvalidFilter(text.to_string()))
        })
        .collect::<Result<Vec<&FilterCase>, ErrKind>>()?;
    let ago = ago_secs(p.ago).ok_or_else(|| ErrKind::InvalidSetting {
        setting: "purge ago".to_owned(),
        value: p.ago.to_owned(),
    })?;
    if filters.is_empty() {
        return Err(ErrKind::InvalidFilter(String::new()));
    }
    let dry_run = p.run == PurgeRun::Dry;
    let mut work = m.clone();
    let (now, bin) = (work.now, work.policy.enabled);
    let cutoff = now.saturating_sub(Duration::from_secs(ago));
    let mut repositories = Vec::new();
    // Live repositories a filter's repository part matches, in name order.
    for (name, r) in work.repositories.iter_mut() {
        let here: Vec<&FilterCase> = filters.iter().copied().filter(|f| (f.repo)(name)).collect();
        if r.deleted.is_some() || here.is_empty() {
            continue;
        }
        repositories.extend(r.purge_by_filter(name, &here, p, cutoff, now, bin));
    }
    if !dry_run {
        *m = work;
    }
    Ok(Value::PurgeReport {
        dry_run,
        at: now,
        repositories,
    })
}

impl RepoModel {
    /// U2–U4, U6: purges this repository, `name`, by the filters that match its name; `None`
    /// if there was nothing to do or report.
    fn purge_by_filter(
        &mut self,
        name: &str,
        filters: &[&FilterCase],
        p: &PurgeSel,
        cutoff: Timestamp,
        now: Timestamp,
        bin: bool,
    ) -> Option<RepositoryPurge> {
        // U2: matching tags last updated before the cutoff, newest first (names break ties),
        // without the `keep` first.
        let mut selected: Vec<(Timestamp, String)> = self
            .tags
            .iter()
            .filter(|(t, x)| x.updated < cutoff && filters.iter().any(|f| (f.tag)(t)))
            .map(|(t, x)| (x.updated, t.clone()))
            .collect();
        selected.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let tags: Vec<String> = selected.into_iter().skip(p.keep).map(|(_, t)| t).collect();
        // U3: manifests are judged by their last update before this purge.
        let before: BTreeMap<String, Timestamp> = self
            .manifests
            .iter()
            .map(|(d, x)| (d.clone(), x.updated))
            .collect();
        let mut report = RepositoryPurge {
            repository: name.to_owned(),
            tags_untagged: Vec::new(),
            manifests_deleted: Vec::new(),
            locked: Vec::new(),
        };
        // U4: a locked repository is skipped whole, with or without `include_locked`, and
        // reported if the purge would change it but for the locks.
        if self.check_lock(name, "", Need::Delete).is_err() {
            let busy =
                !tags.is_empty() || (p.untagged && !self.unlisted(cutoff, &before).is_empty());
            report.locked.push(Item::Repository);
            return busy.then_some(report);
        }
        let mut locked: BTreeSet<Item> = BTreeSet::new();
        let mut untag = Vec::new();
        for tag in tags {
            if refusing_flag(self.locks_of(&tag), Need::Delete).is_some() {
                if !p.include_locked {
                    locked.insert(Item::Tag(tag));
                    continue;
                }
                self.locks.remove(&tag);
            }
            untag.push(tag);
        }
        let mut doomed: Vec<String> = Vec::new();
        if p.untagged {
            // Judged as if the tags were gone.
            let mut trial = self.clone();
            for tag in &untag {
                trial.drop_tag(tag, now, TagCause::Purge, bin);
            }
            let mut closures = trial.unlisted(cutoff, &before);
            // U4: of what would go, what a lock keeps, and then what it lists.
            if !p.include_locked {
                closures.retain(|closure| {
                    let held = trial.locked_among(closure);
                    locked.extend(held.iter().map(|(key, _)| lock_item(key)));
                    held.is_empty()
                });
                trial.keep_listed(&mut closures);
            }
            doomed = closures.concat();
        }
        // The tags of what stays go first; what goes takes its tags with it (T1 order).
        for tag in &untag {
            if !doomed.contains(&self.tags[tag].digest) {
                self.drop_tag(tag, now, TagCause::Purge, bin);
            }
        }
        self.remove_manifests(&doomed, now, bin, TagCause::Purge);
        report.tags_untagged = untag;
        report.tags_untagged.sort();
        doomed.sort();
        report.manifests_deleted = doomed.iter().map(|d| Digest::parse(d).unwrap()).collect();
        report.locked = locked.into_iter().collect();
        let idle = report.tags_untagged.is_empty()
            && report.manifests_deleted.is_empty()
            && report.locked.is_empty();
        (!idle).then_some(report)
    }

    /// U3: the candidates with their referrers (D5) that would go, locks aside: all but what
    /// an index that stays lists.
    fn unlisted(
        &self,
        cutoff: Timestamp,
        before: &BTreeMap<String, Timestamp>,
    ) -> Vec<Vec<String>> {
        let candidates = self.purge_candidates(cutoff, before).into_iter();
        let mut closures: Vec<Vec<String>> = candidates.map(|c| self.doomed_by(&c)).collect();
        self.keep_listed(&mut closures);
        closures
    }

    /// D5: keeps (drops from `closures`) what a live index outside them lists, which may keep
    /// that index's children too; until nothing changes.
    fn keep_listed(&self, closures: &mut Vec<Vec<String>>) {
        while let Some(kept) = closures.iter().position(|closure| {
            let all: Vec<String> = closures.concat();
            closure.iter().any(|d| self.listed(d, &all).is_some())
        }) {
            closures.remove(kept);
        }
    }

    /// U3: the live untagged manifests last updated before `cutoff` by their times `before`
    /// the purge, but referrers of a live subject; oldest first by those times (the purge
    /// plans before it changes anything).
    fn purge_candidates(
        &self,
        cutoff: Timestamp,
        before: &BTreeMap<String, Timestamp>,
    ) -> Vec<String> {
        let mut candidates: Vec<String> = self
            .live_by_time()
            .into_iter()
            .filter(|d| self.tags_of(d).is_empty() && before[d] < cutoff && !self.refers_to_live(d))
            .collect();
        candidates.sort_by(|a, b| (before[a], a).cmp(&(before[b], b)));
        candidates
    }
}

/// P3–P5: validate in order (name, reference, media type, digest, references), then store.
fn model_push(
    m: &mut Model,
    repo: &str,
    reference: &str,
    declared: &str,
    spec: &BodySpec,
    body: &[u8],
) -> Outcome {
    check_repo(repo)?;
    let reference = parse_reference(reference)?;
    if declared != spec.media_type {
        return Err(ErrKind::MediaTypeMismatch {
            declared: declared.to_owned(),
            body: spec.media_type.to_owned(),
        });
    }
    let (digest, tag) = match reference {
        ModelRef::Tag(t) => (sha256(body), Some(t)),
        ModelRef::Digest(expected) => {
            let actual = hash(algorithm_of(&expected), body);
            if actual != expected {
                return Err(ErrKind::DigestMismatch { expected, actual });
            }
            (actual, None)
        }
    };
    // L2: a write into the repository, moving the tag if any.
    match &tag {
        Some(tag) => m.check_tag_move(repo, tag, &digest)?,
        None => m.check_lock(repo, "", Need::Write)?,
    }
    // S13: the bin first, whatever the manifest references.
    let binned = m
        .repositories
        .get(repo)
        .and_then(|r| r.manifests.get(&digest));
    if binned.is_some_and(|x| !x.live()) {
        return Err(ErrKind::ManifestSoftDeleted {
            repository: repo.to_owned(),
            digest,
        });
    }
    for r in spec.references() {
        let d = r.digest.as_str();
        if spec.index && !m.has_manifest(repo, d) {
            return Err(ErrKind::ManifestUnknown {
                repository: repo.to_owned(),
                reference: d.to_owned(),
            });
        }
        if !spec.index && !m.linked(repo, d) {
            return Err(ErrKind::BlobUnknown {
                repository: repo.to_owned(),
                digest: d.to_owned(),
            });
        }
    }
    let now = m.now;
    let r = m.ensure_repo(repo);
    match r.manifests.get_mut(&digest) {
        Some(existing) => existing.updated = now,
        None => {
            let record = ManifestModel {
                body: body.to_vec(),
                media_type: declared.to_owned(),
                created: now,
                updated: now,
                spec: spec.clone(),
                deleted: None,
            };
            r.manifests.insert(digest.clone(), record);
        }
    }
    if let Some(tag) = tag {
        r.move_tag(&tag, &digest, now, TagCause::Push);
    }
    Ok(Value::Digest(digest))
}

// ---------------------------------------------------------------------------------------------
// The registry under test
// ---------------------------------------------------------------------------------------------

struct Sut {
    dir: TempDir,
    clock: ManualClock,
    /// `None` only while reopening.
    registry: Option<Registry>,
    uploads: Vec<SutUpload>,
}

/// An upload session as its client knows it.
struct SutUpload {
    id: String,
    repo: String,
    /// The bytes appended successfully.
    sent: Vec<u8>,
    /// The handle; `None` after a reopen until the session is resumed.
    handle: Option<Upload>,
}

impl Sut {
    fn new() -> Sut {
        let dir = match tmpfs() {
            Some(tmpfs) => tempfile::tempdir_in(tmpfs),
            None => tempfile::tempdir(),
        }
        .expect("tempdir");
        let clock = ManualClock::new(START);
        let registry = common::open(dir.path(), &clock);
        Sut {
            dir,
            clock,
            registry: Some(registry),
            uploads: Vec::new(),
        }
    }

    fn registry(&self) -> &Registry {
        self.registry.as_ref().expect("open")
    }

    fn reopen(&mut self) {
        for u in &mut self.uploads {
            u.handle = None;
        }
        drop(self.registry.take());
        self.registry = Some(common::open(self.dir.path(), &self.clock));
    }

    /// The session's handle, resumed through its repository after a reopen.
    fn upload(&mut self, slot: usize) -> Result<&Upload, ErrKind> {
        let registry = self.registry.as_ref().expect("open");
        let u = &mut self.uploads[slot];
        if u.handle.is_none() {
            let repo = registry.repository(&u.repo).map_err(kind)?;
            u.handle = Some(repo.resume_upload(&u.id).map_err(kind)?);
        }
        Ok(u.handle.as_ref().unwrap())
    }
}

impl View for Sut {
    fn blobs_of(&self, repo: &str) -> Vec<(String, u64)> {
        let Ok(repo) = self.registry().repository(repo) else {
            return Vec::new();
        };
        let blobs = repo.blobs(&Page::all()).expect("list blobs");
        let mut all: Vec<_> = blobs
            .iter()
            .map(|d| (d.to_string(), repo.blob_size(d).expect("blob size")))
            .collect();
        all.sort();
        all
    }

    fn manifests_of(&self, repo: &str) -> Vec<(String, String, u64)> {
        let Ok(repo) = self.registry().repository(repo) else {
            return Vec::new();
        };
        let mut all: Vec<_> = repo
            .manifests(&ManifestQuery::default())
            .expect("list manifests")
            .into_iter()
            .map(|m| (m.digest.to_string(), m.media_type, m.size))
            .collect();
        all.sort();
        all
    }

    fn binned_of(&self, repo: &str) -> Vec<String> {
        let Ok(repo) = self.registry().repository(repo) else {
            return Vec::new();
        };
        let binned = repo.deleted_manifests().expect("list deleted manifests");
        let mut all: Vec<String> = binned.iter().map(|m| m.digest.to_string()).collect();
        all.sort();
        all
    }

    fn sessions(&self) -> usize {
        self.uploads.len()
    }

    fn sent(&self, slot: usize) -> Vec<u8> {
        self.uploads[slot].sent.clone()
    }
}

/// Runs `op` on the registry.
fn apply_registry(sut: &mut Sut, op: &Op) -> Outcome {
    let step = resolve(op, &*sut);
    registry_step(sut, &step)
}

fn parse_digest(d: &str) -> Result<Digest, ErrKind> {
    Digest::parse(d).map_err(kind)
}

fn digests(deleted: &[Digest]) -> Value {
    Value::Digests(deleted.iter().map(Digest::to_string).collect())
}

fn restore_what<'a>(tag: Option<&'a str>, digest: Option<&'a Digest>) -> Restore<'a> {
    match (tag, digest) {
        (Some(tag), Some(digest)) => Restore::TagAndDigest(tag, digest),
        (Some(tag), None) => Restore::Tag(tag),
        (None, Some(digest)) => Restore::Digest(digest),
        (None, None) => unreachable!("a restore names a tag or a digest"),
    }
}

fn registry_step(sut: &mut Sut, step: &Step) -> Outcome {
    if let Step::Reopen = step {
        // No handle may outlive the store it was opened on.
        sut.reopen();
        return Ok(Value::Unit);
    }
    let reg = sut.registry().clone();
    let repository = |name: &str| reg.repository(name).map_err(kind);
    match step {
        Step::PutBlob {
            repo,
            digest,
            bytes,
        } => {
            let repo = repository(repo)?;
            let digest = parse_digest(digest)?;
            repo.put_blob(&digest, bytes).map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::PutBlobSha256 { repo, bytes } => {
            let d = repository(repo)?.put_blob_sha256(bytes).map_err(kind)?;
            Ok(Value::Digest(d.to_string()))
        }
        Step::Mount { from, to, digest } => {
            let to = repository(to)?;
            to.mount_blob(from, &parse_digest(digest)?).map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::StartUpload { repo } => {
            let repo = repository(repo)?;
            let upload = repo.start_upload().map_err(kind)?;
            assert_eq!(upload.offset(), 0, "a new session is at offset 0");
            sut.uploads.push(SutUpload {
                id: upload.id().to_owned(),
                repo: repo.name().to_owned(),
                sent: Vec::new(),
                handle: Some(upload),
            });
            Ok(Value::Started)
        }
        Step::Append { slot, chunk, at } => {
            let upload = sut.upload(*slot)?;
            let offset = match at {
                None => upload.append(chunk),
                Some(at) => upload.append_at(*at, chunk),
            }
            .map_err(kind)?;
            assert_eq!(upload.offset(), offset, "append returns the new offset");
            sut.uploads[*slot].sent.extend_from_slice(chunk);
            Ok(Value::Offset(offset))
        }
        Step::Finish { slot, digest } => {
            let digest = parse_digest(digest)?;
            sut.upload(*slot)?.finish(&digest).map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::Cancel { slot } => {
            sut.upload(*slot)?.cancel().map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::Resume { slot, via } => {
            let u = &sut.uploads[*slot];
            let repo = repository(via.as_deref().unwrap_or(&u.repo))?;
            let upload = repo.resume_upload(&u.id).map_err(kind)?;
            Ok(Value::Offset(upload.offset()))
        }
        Step::Push {
            repo,
            reference,
            declared,
            body,
            ..
        } => {
            let d = repository(repo)?
                .push_manifest(reference, declared, body)
                .map_err(kind)?;
            Ok(Value::Digest(d.to_string()))
        }
        Step::Tag { repo, tag, digest } => {
            let repo = repository(repo)?;
            repo.tag(tag, &parse_digest(digest)?).map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::Pull { repo, reference } => {
            let pulled = repository(repo)?.pull(reference).map_err(kind)?;
            Ok(Value::Pulled {
                digest: pulled.digest.to_string(),
                media_type: pulled.media_type,
                body: pulled.body.to_vec(),
            })
        }
        // `Repository::untag` and the like are a batch of one such call each.
        Step::Untag { .. }
        | Step::DeleteManifest { .. }
        | Step::DeleteRepository { .. }
        | Step::Restore { .. } => {
            let mut values = in_batch(&reg, std::slice::from_ref(step))?;
            Ok(values.pop().expect("one value per step"))
        }
        Step::SetPolicy { enabled, days } => {
            reg.set_soft_delete_policy(SoftDeletePolicy {
                enabled: *enabled,
                retention_days: *days,
            })
            .map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::Revert {
            repo,
            tag,
            digest,
            force,
        } => {
            let repo = repository(repo)?;
            repo.revert_tag(tag, &parse_digest(digest)?, *force)
                .map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::PurgeRepository { repo } => {
            reg.purge_deleted_repository(repo).map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::PurgeManifest { repo, digest } => {
            let repo = repository(repo)?;
            repo.purge_deleted_manifest(&parse_digest(digest)?)
                .map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::PurgeTags { repo, tag } => {
            let purged = repository(repo)?.purge_deleted_tags(tag).map_err(kind)?;
            Ok(Value::Count(purged))
        }
        Step::Autopurge { now } => {
            let report = if *now {
                Some(reg.run_now().map_err(kind)?)
            } else {
                reg.run_due().map_err(kind)?
            };
            Ok(report.map_or(Value::NotDue, |r| Value::Purged {
                at: r.ran_at,
                repositories: r.repositories,
                manifests: r.manifests,
                tags: r.tags,
                untagged_deleted: r.untagged_deleted,
            }))
        }
        Step::Collect { dry_run } => {
            let options = CollectOptions {
                dry_run: *dry_run,
                grace_period: None,
            };
            let r = reg.collect(&options).map_err(kind)?;
            assert_eq!(r.dry_run, *dry_run);
            Ok(Value::Collected(Collected {
                marked: r.blobs_marked,
                bytes_marked: r.bytes_marked,
                swept: r.blobs_swept,
                bytes_swept: r.bytes_swept,
                kept: r.blobs_kept,
                bytes_kept: r.bytes_kept,
                links_removed: r.links_removed,
                uploads_removed: r.uploads_removed,
            }))
        }
        Step::SetLocks { repo, item, locks } => {
            repository(repo)?.set_locks(item, *locks).map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::SetRetention(policy) => {
            reg.set_retention_policy(*policy).map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::PurgeByFilter(p) => registry_purge(&reg, p),
        Step::Advance(secs) => {
            sut.clock.advance(Duration::from_secs(*secs));
            Ok(Value::Unit)
        }
        Step::Batch(steps) => in_batch(&reg, steps).map(Value::Batch),
        Step::Reopen => unreachable!("handled above"),
        Step::NoSession => Ok(Value::NoSession),
    }
}

/// U1–U6: a purge by filter; for [`PurgeRun::DryThenReal`], a dry run that must change nothing
/// and report what the real run then does (U5).
fn registry_purge(reg: &Registry, p: &PurgeSel) -> Outcome {
    let mut options = PurgeOptions::new(&p.filters).map_err(kind)?;
    options.ago = parse_ago(p.ago).map_err(kind)?;
    options.keep = p.keep;
    options.untagged = p.untagged;
    options.include_locked = p.include_locked;
    options.dry_run = p.run == PurgeRun::Dry;
    let r = if p.run == PurgeRun::DryThenReal {
        let dry = PurgeOptions {
            dry_run: true,
            ..options.clone()
        };
        let before = common::snapshot(reg);
        let dry = reg.purge(&dry).map_err(kind)?;
        assert!(dry.dry_run);
        assert_eq!(
            common::snapshot(reg),
            before,
            "U5: a dry run changed the store"
        );
        let real = reg.purge(&options).map_err(kind)?;
        assert_eq!(dry.ran_at, real.ran_at);
        assert_eq!(
            dry.repositories, real.repositories,
            "U5: the dry run's report"
        );
        real
    } else {
        reg.purge(&options).map_err(kind)?
    };
    assert_eq!(r.dry_run, options.dry_run);
    Ok(Value::PurgeReport {
        dry_run: r.dry_run,
        at: r.ran_at,
        repositories: r.repositories,
    })
}

/// Runs `steps` in one batch: every value, or the first step's error and nothing written.
fn in_batch(reg: &Registry, steps: &[Step]) -> Result<Vec<Value>, ErrKind> {
    let mut failure = None;
    let result = reg.batch(|b| {
        let mut values = Vec::new();
        for step in steps {
            match batch_step(b, reg, step) {
                Ok(v) => values.push(v),
                Err(e) => {
                    // Keep the typed error; the batch aborts on any error.
                    failure = Some(e);
                    return Err(Error::InvalidSetting {
                        setting: "batch",
                        value: String::new(),
                        reason: "aborted by the test",
                    });
                }
            }
        }
        Ok(values)
    });
    match (result, failure) {
        (Ok(values), None) => Ok(values),
        (Err(_), Some(e)) => Err(e),
        (Err(e), None) => Err(kind(e)),
        (Ok(_), Some(e)) => panic!("a batch whose op failed ({e:?}) committed"),
    }
}

/// One op of a batch, through the [`Batch`]'s methods.
fn batch_step(b: &mut Batch<'_>, reg: &Registry, step: &Step) -> Result<Value, ErrKind> {
    let repository = |name: &str| reg.repository(name).map_err(kind);
    match step {
        Step::PutBlob {
            repo,
            digest,
            bytes,
        } => {
            let repo = repository(repo)?;
            let digest = parse_digest(digest)?;
            b.put_blob(&repo, &digest, bytes).map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::PutBlobSha256 { repo, bytes } => {
            let d = b.put_blob_sha256(&repository(repo)?, bytes).map_err(kind)?;
            Ok(Value::Digest(d.to_string()))
        }
        Step::Mount { from, to, digest } => {
            let to = repository(to)?;
            let from = repository(from)?;
            b.mount_blob(&to, &from, &parse_digest(digest)?)
                .map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::Push {
            repo,
            reference,
            declared,
            body,
            ..
        } => {
            let repo = repository(repo)?;
            let d = b
                .push_manifest(&repo, reference, declared, body)
                .map_err(kind)?;
            Ok(Value::Digest(d.to_string()))
        }
        Step::Tag { repo, tag, digest } => {
            let repo = repository(repo)?;
            b.tag(&repo, tag, &parse_digest(digest)?).map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::Untag { repo, tag } => {
            b.untag(&repository(repo)?, tag).map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::DeleteManifest { repo, reference } => {
            let deleted = b
                .delete_manifest(&repository(repo)?, reference)
                .map_err(kind)?;
            Ok(digests(&deleted))
        }
        Step::DeleteRepository { repo } => {
            b.delete_repository(&repository(repo)?).map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::SetLocks { repo, item, locks } => {
            b.set_locks(&repository(repo)?, item, *locks)
                .map_err(kind)?;
            Ok(Value::Unit)
        }
        Step::Restore {
            repo,
            tag,
            digest,
            force,
        } => {
            let repo = repository(repo)?;
            let digest = digest.as_deref().map(parse_digest).transpose()?;
            let restored = b
                .restore(&repo, restore_what(tag.as_deref(), digest.as_ref()), *force)
                .map_err(kind)?;
            Ok(Value::Digest(restored.to_string()))
        }
        other => panic!("not an op of a batch: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Comparing the registry with the model
// ---------------------------------------------------------------------------------------------

/// Every page of a listing of `n` at a time, concatenated.
fn paged<T>(
    n: usize,
    mut fetch: impl FnMut(&Page) -> Vec<T>,
    key: impl Fn(&T) -> String,
) -> Vec<T> {
    let mut out = Vec::new();
    let mut page = Page::first(n);
    loop {
        let batch = fetch(&page);
        assert!(batch.len() <= n, "a page of {n} held {}", batch.len());
        let Some(last) = batch.last() else {
            return out;
        };
        page = Page::after(key(last), n);
        out.extend(batch);
    }
}

/// Reads everything the registry holds through the public API and checks it against the model.
fn compare(model: &Model, registry: &Registry) -> Result<(), TestCaseError> {
    // S1, S4: the policy and the last autopurge run, persisted.
    prop_assert_eq!(registry.soft_delete_policy().unwrap(), model.policy);
    prop_assert_eq!(registry.autopurge_last_run().unwrap(), model.last_run);
    // R1: the retention policy, and since when it is in force.
    prop_assert_eq!(registry.retention_policy().unwrap(), model.retention);
    prop_assert_eq!(
        registry.retention_enabled_at().unwrap(),
        model.retention_since
    );

    // P7, S2: live repositories in lexical order, paginated.
    let names: Vec<String> = model
        .repositories
        .iter()
        .filter(|(_, r)| r.deleted.is_none())
        .map(|(name, _)| name.clone())
        .collect();
    prop_assert_eq!(&registry.repositories(&Page::all()).unwrap(), &names);
    for n in [1, 2] {
        let pages = paged(n, |p| registry.repositories(p).unwrap(), String::clone);
        prop_assert_eq!(&pages, &names, "repositories {} at a time", n);
    }
    for last in REPOS {
        let after: Vec<_> = names
            .iter()
            .filter(|n| n.as_str() > *last)
            .cloned()
            .collect();
        let page = registry.repositories(&Page::after(*last, 5)).unwrap();
        prop_assert_eq!(page, after, "repositories after {}", last);
    }
    // S5: soft-deleted repositories, most recently deleted first.
    let mut deleted: Vec<DeletedRepository> = model
        .repositories
        .iter()
        .filter_map(|(name, r)| {
            let at = r.deleted?;
            Some(DeletedRepository {
                name: name.clone(),
                deleted_at: at,
                expires_at: model.expires(at),
            })
        })
        .collect();
    deleted.sort_by(|a, b| b.deleted_at.cmp(&a.deleted_at).then(a.name.cmp(&b.name)));
    prop_assert_eq!(registry.deleted_repositories().unwrap(), deleted);

    for (name, r) in &model.repositories {
        if r.deleted.is_none() {
            compare_repository(model, registry, name, r)?;
        } else {
            compare_hidden_repository(registry, name, r)?;
        }
        compare_bin(model, registry, name, r)?;
    }
    // A name the model does not hold reads as empty, its bin and history too.
    for name in REPOS
        .iter()
        .filter(|n| !model.repositories.contains_key(**n))
    {
        let repo = registry.repository(name).unwrap();
        prop_assert!(repo.tags(&Page::all()).unwrap().is_empty());
        prop_assert!(repo.blobs(&Page::all()).unwrap().is_empty());
        prop_assert!(repo.locked_items().unwrap().is_empty());
        prop_assert!(
            repo.manifests(&ManifestQuery::default())
                .unwrap()
                .is_empty()
        );
        compare_bin(model, registry, name, &RepoModel::default())?;
    }
    Ok(())
}

/// S2: a soft-deleted repository reads as empty: no tags, manifests, referrers or blobs,
/// though it keeps them all for a restore.
fn compare_hidden_repository(
    registry: &Registry,
    name: &str,
    r: &RepoModel,
) -> Result<(), TestCaseError> {
    let repo = registry.repository(name).unwrap();
    prop_assert!(
        repo.tags(&Page::all()).unwrap().is_empty(),
        "tags of {}",
        name
    );
    // L1: only live items carry locks.
    prop_assert!(repo.locked_items().unwrap().is_empty());
    prop_assert_eq!(
        kind(repo.locks(&Item::Repository).unwrap_err()),
        ErrKind::RepositoryUnknown(name.to_owned())
    );
    prop_assert!(
        repo.manifests(&ManifestQuery::default())
            .unwrap()
            .is_empty()
    );
    prop_assert!(
        repo.blobs(&Page::all()).unwrap().is_empty(),
        "blobs of {}",
        name
    );
    for tag in TAGS {
        let err = kind(repo.pull(tag).unwrap_err());
        let expected = ErrKind::ManifestUnknown {
            repository: name.to_owned(),
            reference: tag.to_string(),
        };
        prop_assert_eq!(err, expected);
    }
    for digest in r.manifests.keys() {
        let err = kind(repo.pull(digest).unwrap_err());
        let expected = ErrKind::ManifestUnknown {
            repository: name.to_owned(),
            reference: digest.clone(),
        };
        prop_assert_eq!(err, expected, "pull {} of {}", digest, name);
        let d = Digest::parse(digest).unwrap();
        prop_assert!(repo.referrers(&d, None).unwrap().is_empty());
    }
    for digest in r.blobs.keys() {
        let err = kind(repo.blob(&Digest::parse(digest).unwrap()).unwrap_err());
        let expected = ErrKind::BlobUnknown {
            repository: name.to_owned(),
            digest: digest.clone(),
        };
        prop_assert_eq!(err, expected, "blob {} of {}", digest, name);
    }
    Ok(())
}

/// S5, T1: the repository's bin (deleted manifests, deleted tags, all and by name) and the
/// history of every tag name the model knows; in a live or a soft-deleted repository alike.
fn compare_bin(
    model: &Model,
    registry: &Registry,
    name: &str,
    r: &RepoModel,
) -> Result<(), TestCaseError> {
    let repo = registry.repository(name).unwrap();
    let mut manifests: Vec<DeletedManifest> = r
        .manifests
        .iter()
        .filter_map(|(digest, m)| {
            let at = m.deleted?;
            let tags: BTreeSet<String> = r
                .bin_tags
                .iter()
                .filter(|t| &t.digest == digest)
                .map(|t| t.tag.clone())
                .collect();
            Some(DeletedManifest {
                digest: Digest::parse(digest).unwrap(),
                media_type: m.media_type.clone(),
                size: m.body.len() as u64,
                tags: tags.into_iter().collect(),
                deleted_at: at,
                expires_at: model.expires(at),
            })
        })
        .collect();
    manifests.sort_by(|a, b| {
        b.deleted_at
            .cmp(&a.deleted_at)
            .then(a.digest.as_str().cmp(b.digest.as_str()))
    });
    prop_assert_eq!(
        repo.deleted_manifests().unwrap(),
        manifests,
        "deleted manifests of {}",
        name
    );

    // Newest first; the event number orders deletions at the same time.
    let mut bin: Vec<&BinTag> = r.bin_tags.iter().collect();
    bin.sort_by(|a, b| b.deleted_at.cmp(&a.deleted_at).then(b.seq.cmp(&a.seq)));
    let deleted_tag = |t: &&BinTag| DeletedTag {
        tag: t.tag.clone(),
        digest: Digest::parse(&t.digest).unwrap(),
        deleted_at: t.deleted_at,
        expires_at: model.expires(t.deleted_at),
    };
    let all: Vec<DeletedTag> = bin.iter().map(deleted_tag).collect();
    prop_assert_eq!(
        repo.deleted_tags(None).unwrap(),
        all,
        "deleted tags of {}",
        name
    );

    let mut names: BTreeSet<&str> = TAGS.iter().copied().filter(|t| valid_tag(t)).collect();
    names.extend(r.history.iter().map(|e| e.tag.as_str()));
    names.extend(r.tags.keys().map(String::as_str));
    for tag in names {
        let only: Vec<DeletedTag> = bin
            .iter()
            .filter(|t| t.tag == tag)
            .map(deleted_tag)
            .collect();
        prop_assert_eq!(repo.deleted_tags(Some(tag)).unwrap(), only);
        let parse = |d: &Option<String>| d.as_deref().map(|d| Digest::parse(d).unwrap());
        let history: Vec<TagEvent> = r
            .history
            .iter()
            .rev()
            .filter(|e| e.tag == tag)
            .map(|e| TagEvent {
                tag: e.tag.clone(),
                from: parse(&e.from),
                to: parse(&e.to),
                at: e.at,
                cause: e.cause,
            })
            .collect();
        prop_assert_eq!(
            repo.tag_history(tag).unwrap(),
            history,
            "history of {} in {}",
            tag,
            name
        );
    }
    Ok(())
}

fn compare_repository(
    model: &Model,
    registry: &Registry,
    name: &str,
    r: &RepoModel,
) -> Result<(), TestCaseError> {
    let repo = registry.repository(name).unwrap();

    // P5, P7: tags with their targets and times, lexical, paginated.
    let tags: Vec<Tag> = r
        .tags
        .iter()
        .map(|(t, m)| Tag {
            name: t.clone(),
            digest: Digest::parse(&m.digest).unwrap(),
            updated: m.updated,
        })
        .collect();
    prop_assert_eq!(&repo.tags(&Page::all()).unwrap(), &tags, "tags of {}", name);
    let pages = paged(2, |p| repo.tags(p).unwrap(), |t| t.name.clone());
    prop_assert_eq!(&pages, &tags, "tags of {} two at a time", name);
    for last in TAGS {
        let after = tags.iter().filter(|t| t.name.as_str() > *last);
        let after: Vec<_> = after.take(2).cloned().collect();
        let page = repo.tags(&Page::after(*last, 2)).unwrap();
        prop_assert_eq!(page, after, "tags of {} after {}", name, last);
    }

    // P7: manifest metadata, ordered by last update, filtered.
    let asc = r.by_time();
    let query = |q: ManifestQuery| repo.manifests(&q).unwrap();
    prop_assert_eq!(
        &query(ManifestQuery::default()),
        &asc,
        "manifests of {}",
        name
    );
    let desc: Vec<_> = asc.iter().rev().cloned().collect();
    let q = ManifestQuery {
        descending: true,
        ..Default::default()
    };
    prop_assert_eq!(&query(q), &desc, "manifests of {} newest first", name);
    let untagged: Vec<_> = asc.iter().filter(|m| m.tags.is_empty()).cloned().collect();
    let q = ManifestQuery {
        untagged: true,
        ..Default::default()
    };
    prop_assert_eq!(&query(q), &untagged, "untagged manifests of {}", name);
    let q = ManifestQuery {
        limit: Some(1),
        descending: true,
        ..Default::default()
    };
    prop_assert_eq!(&query(q), &desc[..desc.len().min(1)], "newest of {}", name);
    let q = ManifestQuery {
        untagged: true,
        limit: Some(1),
        ..Default::default()
    };
    prop_assert_eq!(&query(q), &untagged[..untagged.len().min(1)]);
    let mut times: BTreeSet<Timestamp> = asc.iter().map(|m| m.updated).collect();
    times.insert(model.now.saturating_add(Duration::from_secs(1)));
    for t in times {
        let before: Vec<_> = asc.iter().filter(|m| m.updated < t).cloned().collect();
        let q = ManifestQuery {
            updated_before: Some(t),
            ..Default::default()
        };
        prop_assert_eq!(&query(q), &before, "manifests of {} before {:?}", name, t);
        let q = ManifestQuery {
            updated_before: Some(t),
            descending: true,
            ..Default::default()
        };
        let newest_first: Vec<_> = before.into_iter().rev().collect();
        prop_assert_eq!(&query(q), &newest_first);
    }

    // P6: pull by digest and by tag; `manifest` by both. S2: a tombstone is unknown.
    for (digest, m) in &r.manifests {
        if !m.live() {
            let expected = ErrKind::ManifestUnknown {
                repository: name.to_owned(),
                reference: digest.clone(),
            };
            prop_assert_eq!(kind(repo.pull(digest).unwrap_err()), expected.clone());
            prop_assert_eq!(kind(repo.manifest(digest).unwrap_err()), expected);
            continue;
        }
        let pulled = repo.pull(digest).unwrap();
        prop_assert_eq!(pulled.digest.as_str(), digest.as_str());
        prop_assert_eq!(&pulled.media_type, &m.media_type);
        prop_assert_eq!(&pulled.body[..], &m.body[..], "body of {}", digest);
        prop_assert_eq!(repo.manifest(digest).unwrap(), r.expected_manifest(digest));
    }
    for (tag, t) in &r.tags {
        let pulled = repo.pull(tag).unwrap();
        prop_assert_eq!(pulled.digest.as_str(), t.digest.as_str(), "pull {}", tag);
        prop_assert_eq!(&pulled.body[..], &r.manifests[&t.digest].body[..]);
        prop_assert_eq!(repo.resolve(tag).unwrap().to_string(), t.digest.clone());
        prop_assert_eq!(repo.manifest(tag).unwrap(), r.expected_manifest(&t.digest));
    }
    for tag in TAGS.iter().filter(|t| !r.tags.contains_key(**t)) {
        let err = kind(repo.pull(tag).unwrap_err());
        let expected = ErrKind::ManifestUnknown {
            repository: name.to_owned(),
            reference: tag.to_string(),
        };
        prop_assert_eq!(err, expected);
    }

    // L1: the locked items, the repository first, then manifests and tags by key; the locks
    // of the repository and of each locked item; a tag that is not live has none to read.
    let locked: Vec<(Item, Locks)> = r.locks.iter().map(|(k, l)| (lock_item(k), *l)).collect();
    prop_assert_eq!(
        repo.locked_items().unwrap(),
        locked,
        "locked items of {}",
        name
    );
    prop_assert!(
        matches!(
            repo.locks(&lock_item("unlocked")),
            Err(Error::TagUnknown { .. })
        ),
        "only live items have locks"
    );
    let items = [""].into_iter().chain(r.locks.keys().map(String::as_str));
    for key in items {
        let item = lock_item(key);
        prop_assert_eq!(
            repo.locks(&item).unwrap(),
            r.locks_of(key),
            "locks of {}",
            item
        );
    }

    // P1, P2: linked blobs, their bytes and sizes; others are unknown here.
    let linked: Vec<String> = r.blobs.keys().cloned().collect();
    let listed: Vec<String> = repo
        .blobs(&Page::all())
        .unwrap()
        .iter()
        .map(Digest::to_string)
        .collect();
    prop_assert_eq!(&listed, &linked, "blobs of {}", name);
    let pages = paged(2, |p| repo.blobs(p).unwrap(), Digest::to_string);
    let pages: Vec<String> = pages.iter().map(Digest::to_string).collect();
    prop_assert_eq!(&pages, &linked, "blobs of {} two at a time", name);
    for (digest, bytes) in &r.blobs {
        let d = Digest::parse(digest).unwrap();
        prop_assert_eq!(&repo.blob(&d).unwrap()[..], &bytes[..], "blob {}", digest);
        prop_assert_eq!(repo.blob_size(&d).unwrap(), bytes.len() as u64);
    }
    for content in BLOBS {
        for alg in Algorithm::ALL {
            let digest = hash(alg, content);
            if r.blobs.contains_key(&digest) {
                continue;
            }
            let err = kind(repo.blob(&Digest::parse(&digest).unwrap()).unwrap_err());
            let expected = ErrKind::BlobUnknown {
                repository: name.to_owned(),
                digest,
            };
            prop_assert_eq!(err, expected);
        }
    }

    // P8: referrers of every manifest, every subject named and one unknown digest, with and
    // without an artifact type filter.
    let mut subjects: BTreeSet<String> = r.manifests.keys().cloned().collect();
    subjects.extend(r.manifests.values().filter_map(|m| {
        let subject = m.spec.subject.as_ref()?;
        Some(subject.digest.to_string())
    }));
    subjects.insert(sha256(UNKNOWN_MANIFEST));
    let filters = ARTIFACT_TYPES
        .iter()
        .chain(REFERRER_CONFIG_TYPES)
        .chain(&[CONFIG_TYPE, "application/none"]);
    for subject in &subjects {
        let d = Digest::parse(subject).unwrap();
        let expected: Vec<Descriptor> = r
            .live_manifests()
            .filter(|(_, m)| {
                m.spec
                    .subject
                    .as_ref()
                    .is_some_and(|s| s.digest.as_str() == subject)
            })
            .map(|(digest, _)| r.referrer_descriptor(digest))
            .collect();
        let all = repo.referrers(&d, None).unwrap();
        prop_assert_eq!(&all, &expected, "referrers of {} in {}", subject, name);
        for filter in filters.clone() {
            let only: Vec<_> = expected
                .iter()
                .filter(|x| x.artifact_type.as_deref() == Some(*filter))
                .cloned()
                .collect();
            prop_assert_eq!(repo.referrers(&d, Some(filter)).unwrap(), only);
        }
    }
    Ok(())
}

/// P1: every session answers with its offset through its repository, or `UploadUnknown` once
/// finished, cancelled or expired; also after a reopen.
fn compare_uploads(model: &Model, sut: &Sut) -> Result<(), TestCaseError> {
    prop_assert_eq!(model.uploads.len(), sut.uploads.len());
    for (s, u) in model.uploads.iter().zip(&sut.uploads) {
        prop_assert_eq!(&s.repo, &u.repo);
        let live = s.open && model.now.since(s.started) <= UPLOAD_TIMEOUT;
        let expected = if live {
            Ok(s.bytes.len() as u64)
        } else {
            Err(ErrKind::UploadUnknown)
        };
        let repo = sut.registry().repository(&u.repo).unwrap();
        let actual = repo.resume_upload(&u.id).map(|u| u.offset()).map_err(kind);
        prop_assert_eq!(actual, expected, "session {}", u.id);
    }
    Ok(())
}

/// How often each op had each outcome, across the cases of this process.
static STATS: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());

thread_local! {
    /// The outcomes reached by the cases of the test running on this thread, for
    /// [`check_model`] to check.
    static REACHED: RefCell<BTreeSet<String>> = const { RefCell::new(BTreeSet::new()) };
}

/// Counts outcomes, with `MODEL_STATS=1` in the environment, and prints the running totals after
/// each case (`cargo test --test model -- --nocapture`): a check that the strategies reach the
/// success paths as well as the error paths. Purges by filter tell what they did (`untag`,
/// `delete`, `locked`, dry or not), autopurge runs whether the retention policy deleted.
fn count(op: &Op, outcome: &Outcome) {
    let name = |debug: String| debug.split([' ', '(', '{']).next().unwrap().to_owned();
    let result = match outcome {
        Ok(Value::PurgeReport {
            dry_run,
            repositories,
            ..
        }) => {
            let did = |what: &str, any: fn(&RepositoryPurge) -> bool| {
                repositories.iter().any(any).then(|| format!(" {what}"))
            };
            let mut label = format!("PurgeReport {}", if *dry_run { "dry" } else { "real" });
            label.extend(did("untag", |r| !r.tags_untagged.is_empty()));
            label.extend(did("delete", |r| !r.manifests_deleted.is_empty()));
            label.extend(did("locked", |r| !r.locked.is_empty()));
            label
        }
        Ok(Value::Purged {
            untagged_deleted, ..
        }) if *untagged_deleted > 0 => "Purged retention".to_owned(),
        Ok(v) => name(format!("{v:?}")),
        Err(e) => name(format!("{e:?}")),
    };
    let label = format!("{} -> {result}", name(format!("{op:?}")));
    if std::env::var_os("MODEL_STATS").is_some() {
        *STATS.lock().unwrap().entry(label.clone()).or_default() += 1;
    }
    REACHED.with(|r| r.borrow_mut().insert(label));
}

fn print_stats() {
    if std::env::var_os("MODEL_STATS").is_some() {
        eprintln!("{:#?}", STATS.lock().unwrap());
    }
}

/// Runs `ops` on a fresh model and a fresh store, comparing after every op.
fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    run_outcomes(ops).map(drop)
}

/// [`run`], returning the outcome of each op.
fn run_outcomes(ops: &[Op]) -> Result<Vec<Outcome>, TestCaseError> {
    let mut model = Model::new();
    let mut sut = Sut::new();
    let mut outcomes = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let expected = apply_model(&mut model, op);
        let actual = apply_registry(&mut sut, op);
        count(op, &expected);
        prop_assert_eq!(actual, expected.clone(), "op #{}: {:?}", i, op);
        prop_assert_eq!(sut.registry().now(), model.now);
        compare(&model, sut.registry())?;
        compare_uploads(&model, &sut)?;
        outcomes.push(expected);
    }
    // Everything survives a final reopen.
    sut.reopen();
    compare(&model, sut.registry())?;
    compare_uploads(&model, &sut)?;
    print_stats();
    Ok(outcomes)
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// Mostly the first repository, so that state piles up where ops look for it.
fn repo() -> BoxedStrategy<&'static str> {
    prop_oneof![
        10 => Just(REPOS[0]),
        4 => Just(REPOS[1]),
        3 => Just(REPOS[2]),
        1 => select(BAD_REPOS),
    ]
    .boxed()
}

fn tag() -> BoxedStrategy<&'static str> {
    prop_oneof![12 => select(TAGS), 1 => select(BAD_TAGS)].boxed()
}

fn alg() -> BoxedStrategy<Algorithm> {
    prop_oneof![
        8 => Just(Algorithm::Sha256),
        1 => Just(Algorithm::Sha512),
        1 => Just(Algorithm::Blake3),
    ]
    .boxed()
}

/// A blob that may be uploaded.
fn uploadable_blob() -> BoxedStrategy<BlobSel> {
    (0..UPLOADABLE, alg())
        .prop_map(|(content, alg)| BlobSel { content, alg })
        .boxed()
}

/// A blob a manifest references: mostly one linked to the repository, sometimes any of the
/// pool, sometimes one never uploaded.
fn referenced_blob() -> BoxedStrategy<BlobRef> {
    prop_oneof![
        24 => (0..8usize).prop_map(BlobRef::Linked),
        2 => uploadable_blob().prop_map(BlobRef::Pool),
        1 => Just(BlobRef::Pool(BlobSel { content: UPLOADABLE, alg: Algorithm::Sha256 })),
    ]
    .boxed()
}

fn manifest_sel() -> BoxedStrategy<ManifestSel> {
    prop_oneof![10 => (0..16usize).prop_map(ManifestSel::Existing), 1 => Just(ManifestSel::Unknown)]
        .boxed()
}

fn reference() -> BoxedStrategy<RefChoice> {
    prop_oneof![
        12 => tag().prop_map(RefChoice::Tag),
        6 => alg().prop_map(RefChoice::Digest),
        1 => Just(RefChoice::WrongDigest),
        1 => select(BAD_DIGESTS).prop_map(RefChoice::BadDigest),
    ]
    .boxed()
}

fn image() -> BoxedStrategy<Image> {
    (
        any::<bool>(),
        prop::bool::weighted(0.05),
        referenced_blob(),
        prop::collection::vec(referenced_blob(), 0..3),
    )
        .prop_map(|(docker, mismatch, config, layers)| Image {
            docker,
            mismatch,
            config,
            layers,
        })
        .boxed()
}

fn put_blob() -> BoxedStrategy<Op> {
    let digest = prop_oneof![
        16 => Just(DigestChoice::Right),
        2 => Just(DigestChoice::Wrong),
        1 => select(BAD_DIGESTS).prop_map(DigestChoice::Invalid),
    ];
    (repo(), uploadable_blob(), digest)
        .prop_map(|(repo, blob, digest)| Op::PutBlob { repo, blob, digest })
        .boxed()
}

fn put_blob_sha256() -> BoxedStrategy<Op> {
    (repo(), 0..UPLOADABLE)
        .prop_map(|(repo, content)| Op::PutBlobSha256 { repo, content })
        .boxed()
}

fn mount_blob() -> BoxedStrategy<Op> {
    let blob = prop_oneof![
        4 => (0..8usize).prop_map(BlobRef::Linked),
        1 => uploadable_blob().prop_map(BlobRef::Pool),
    ];
    (repo(), repo(), blob)
        .prop_map(|(from, to, blob)| Op::MountBlob { from, to, blob })
        .boxed()
}

fn push_image() -> BoxedStrategy<Op> {
    (repo(), image(), reference())
        .prop_map(|(repo, image, reference)| Op::PushImage {
            repo,
            image,
            reference,
        })
        .boxed()
}

fn push_index() -> BoxedStrategy<Op> {
    (
        repo(),
        any::<bool>(),
        prop::collection::vec(manifest_sel(), 0..4),
        reference(),
    )
        .prop_map(|(repo, docker, children, reference)| Op::PushIndex {
            repo,
            docker,
            children,
            reference,
        })
        .boxed()
}

fn push_referrer() -> BoxedStrategy<Op> {
    (
        (repo(), manifest_sel(), referenced_blob()),
        (
            select(REFERRER_CONFIG_TYPES),
            prop::option::of(select(ARTIFACT_TYPES)),
            any::<bool>(),
        ),
        prop::collection::vec(referenced_blob(), 0..2),
        reference(),
    )
        .prop_map(
            |(
                (repo, subject, config),
                (config_type, artifact_type, annotated),
                layers,
                reference,
            )| Op::PushReferrer {
                repo,
                subject,
                config,
                config_type,
                artifact_type,
                annotated,
                layers,
                reference,
            },
        )
        .boxed()
}

fn tag_op() -> BoxedStrategy<Op> {
    (repo(), tag(), manifest_sel())
        .prop_map(|(repo, tag, manifest)| Op::Tag {
            repo,
            tag,
            manifest,
        })
        .boxed()
}

fn pull() -> BoxedStrategy<Op> {
    (repo(), manifest_ref_choice())
        .prop_map(|(repo, reference)| Op::Pull { repo, reference })
        .boxed()
}

/// Ops a batch can hold; `mix` weighs the deletes and restores among them (0: none).
fn batchable(mix: Mix) -> BoxedStrategy<Op> {
    weighted(vec![
        (4, put_blob()),
        (2, put_blob_sha256()),
        (2, mount_blob()),
        (5, push_image()),
        (2, push_index()),
        (2, push_referrer()),
        (3, tag_op()),
        (mix.deletes, untag()),
        (mix.deletes, delete_manifest()),
        (mix.deletes.min(1), delete_repository()),
        (mix.bin * 2, restore()),
        (mix.locks, set_locks()),
    ])
}

/// One of the strategies, by weight; those weighing 0 never run.
fn weighted(choices: Vec<(u32, BoxedStrategy<Op>)>) -> BoxedStrategy<Op> {
    Union::new_weighted(choices.into_iter().filter(|(w, _)| *w > 0).collect()).boxed()
}

/// An op that fails whatever the state: ending a batch with it aborts the batch.
fn failing() -> BoxedStrategy<Op> {
    prop_oneof![
        (repo(), uploadable_blob()).prop_map(|(repo, blob)| Op::PutBlob {
            repo,
            blob,
            digest: DigestChoice::Wrong,
        }),
        (select(REPOS), select(BAD_TAGS), manifest_sel()).prop_map(|(repo, tag, manifest)| {
            Op::Tag {
                repo,
                tag,
                manifest,
            }
        }),
        (select(REPOS), image(), reference()).prop_map(|(repo, mut image, reference)| {
            image.config = BlobRef::Pool(BlobSel {
                content: UPLOADABLE,
                alg: Algorithm::Sha256,
            });
            Op::PushImage {
                repo,
                image,
                reference,
            }
        }),
    ]
    .boxed()
}

/// A batch: random ops, mostly without bad input (they may still fail, e.g. on an unlinked
/// blob), or an image pushed over blobs the same batch uploads (the push must see them); either
/// sometimes ends with an op that fails whatever the state.
fn batch(mix: Mix) -> BoxedStrategy<Op> {
    let clean = batchable(mix).prop_filter("bad input", |op| !op.has_bad_input());
    let random = prop::collection::vec(prop_oneof![4 => clean, 1 => batchable(mix)], 1..5);
    (
        prop_oneof![random, image_over_new_blobs(prop::option::of(select(TAGS)))],
        prop::option::weighted(0.25, failing()),
    )
        .prop_map(|(mut ops, fail)| {
            ops.extend(fail);
            Op::Batch(ops)
        })
        .boxed()
}

/// The blobs of an image put, then the image pushed over them (the push must see them), by
/// `tag` or else by digest: a batch that succeeds whatever the state.
fn image_over_new_blobs(
    tag: impl Strategy<Value = Option<&'static str>> + 'static,
) -> BoxedStrategy<Vec<Op>> {
    (
        select(REPOS),
        (0..UPLOADABLE, prop::collection::vec(0..UPLOADABLE, 0..3)),
        any::<bool>(),
        tag,
    )
        .prop_map(|(repo, (config, layers), docker, tag)| {
            let blob = |content| BlobSel {
                content,
                alg: Algorithm::Sha256,
            };
            let mut ops: Vec<Op> = std::iter::once(config)
                .chain(layers.iter().copied())
                .map(|content| Op::PutBlobSha256 { repo, content })
                .collect();
            ops.push(Op::PushImage {
                repo,
                image: Image {
                    docker,
                    mismatch: false,
                    config: BlobRef::Pool(blob(config)),
                    layers: layers.into_iter().map(|l| BlobRef::Pool(blob(l))).collect(),
                },
                reference: tag.map_or(RefChoice::Digest(Algorithm::Sha256), RefChoice::Tag),
            });
            ops
        })
        .boxed()
}

fn slot() -> BoxedStrategy<usize> {
    (0..8usize).boxed()
}

fn chunk() -> BoxedStrategy<usize> {
    (0..CHUNKS.len()).boxed()
}

/// The weights of the op groups beyond the P ops.
#[derive(Debug, Clone, Copy)]
struct Mix {
    batches: u32,
    reopens: u32,
    /// Untag, delete manifest, delete repository (also inside batches).
    deletes: u32,
    /// Policy changes.
    policy: u32,
    /// Restores and reverts (also inside batches), purges by hand, autopurge runs.
    bin: u32,
    /// Upload sessions (1 for the P tests; 0 leaves room for the rest).
    uploads: u32,
    /// Collections, real or dry runs.
    collect: u32,
    /// Clock moves, of a second to three days.
    clock: u32,
    /// Lock changes (also inside batches).
    locks: u32,
    /// Retention policy changes and autopurge runs.
    retention: u32,
    /// Purges by filter.
    purge: u32,
}

impl Mix {
    const P: Mix = Mix {
        batches: 0,
        reopens: 0,
        deletes: 0,
        policy: 0,
        bin: 0,
        uploads: 1,
        collect: 0,
        clock: 3,
        locks: 0,
        retention: 0,
        purge: 0,
    };
}

/// A manifest, live or in the bin in the proportion `live` to `binned`, or sometimes unknown.
fn manifest_of(live: u32, binned: u32) -> BoxedStrategy<AnySel> {
    prop_oneof![
        live => (0..16usize).prop_map(AnySel::Live),
        binned => (0..16usize).prop_map(AnySel::Binned),
        1 => Just(AnySel::Unknown),
    ]
    .boxed()
}

fn any_sel() -> BoxedStrategy<AnySel> {
    manifest_of(6, 3)
}

fn untag() -> BoxedStrategy<Op> {
    (repo(), tag())
        .prop_map(|(repo, tag)| Op::Untag { repo, tag })
        .boxed()
}

fn delete_manifest() -> BoxedStrategy<Op> {
    (repo(), manifest_ref_choice())
        .prop_map(|(repo, reference)| Op::DeleteManifest { repo, reference })
        .boxed()
}

fn manifest_ref_choice() -> BoxedStrategy<ManifestRef> {
    prop_oneof![
        6 => tag().prop_map(ManifestRef::Tag),
        6 => any_sel().prop_map(ManifestRef::Digest),
        1 => select(BAD_DIGESTS).prop_map(ManifestRef::BadDigest),
    ]
    .boxed()
}

fn delete_repository() -> BoxedStrategy<Op> {
    repo()
        .prop_map(|repo| Op::DeleteRepository { repo })
        .boxed()
}

/// Mostly a manifest in the bin.
fn binned_sel() -> BoxedStrategy<AnySel> {
    manifest_of(2, 6)
}

fn restore() -> BoxedStrategy<Op> {
    let what = prop_oneof![
        3 => tag().prop_map(RestoreSel::Tag),
        2 => binned_sel().prop_map(RestoreSel::Digest),
        4 => (tag(), binned_sel()).prop_map(|(t, sel)| RestoreSel::TagAndDigest(t, sel)),
    ];
    (repo(), what, prop::bool::weighted(0.3))
        .prop_map(|(repo, what, force)| Op::Restore { repo, what, force })
        .boxed()
}

fn revert_tag() -> BoxedStrategy<Op> {
    (repo(), tag(), any_sel(), prop::bool::weighted(0.3))
        .prop_map(|(repo, tag, manifest, force)| Op::RevertTag {
            repo,
            tag,
            manifest,
            force,
        })
        .boxed()
}

fn purge() -> BoxedStrategy<Op> {
    prop_oneof![
        repo().prop_map(|repo| Op::PurgeRepository { repo }),
        (repo(), binned_sel()).prop_map(|(repo, manifest)| Op::PurgeManifest { repo, manifest }),
        (repo(), tag()).prop_map(|(repo, tag)| Op::PurgeTags { repo, tag }),
    ]
    .boxed()
}

/// L1, L2: locks of the repository (not too often: it refuses most ops), a manifest or a tag
/// name; unlocking as often as locking.
fn set_locks() -> BoxedStrategy<Op> {
    let item = prop_oneof![
        2 => Just(ItemSel::Repository),
        3 => manifest_sel().prop_map(ItemSel::Manifest),
        5 => tag().prop_map(ItemSel::Tag),
    ];
    let locks = prop_oneof![
        3 => Just(Locks::UNLOCKED),
        3 => Just(Locks::NO_DELETE),
        2 => Just(Locks::READ_ONLY),
        1 => Just(Locks { delete_enabled: true, write_enabled: false }),
    ];
    (repo(), item, locks)
        .prop_map(|(repo, item, locks)| Op::SetLocks { repo, item, locks })
        .boxed()
}

/// R1: on or off, with days of 0 to 2 (which the clock moves reach), the default, the bound,
/// and one out of range.
fn set_retention() -> BoxedStrategy<Op> {
    let days = prop_oneof![
        3 => Just(0u32),
        3 => Just(1u32),
        2 => Just(2u32),
        1 => Just(7u32),
        1 => Just(365u32),
        1 => Just(366u32),
    ];
    (prop::bool::weighted(0.8), days)
        .prop_map(|(enabled, days)| Op::SetRetention { enabled, days })
        .boxed()
}

/// U1: one or two filters (sometimes none, sometimes a bad one), an age, `keep`, and the flags;
/// half of the runs dry, some of those followed by the real run (U5).
fn purge_by_filter() -> BoxedStrategy<Op> {
    let texts: Vec<&'static str> = FILTERS.iter().map(|f| f.text).collect();
    let filters = prop_oneof![
        40 => prop::collection::vec(select(texts.clone()), 1..3),
        1 => Just(Vec::new()),
        1 => (prop::collection::vec(select(texts), 0..2), select(BAD_FILTERS)).prop_map(
            |(mut filters, bad)| {
                filters.push(bad);
                filters
            }
        ),
    ];
    // Mostly short ages, which the clock moves pass.
    let valid_ago: Vec<&'static str> = AGOS
        .iter()
        .filter(|(_, secs)| secs.is_some_and(|s| s <= 3600))
        .map(|(text, _)| *text)
        .collect();
    let ago = prop_oneof![
        30 => select(valid_ago),
        10 => select(AGOS).prop_map(|(text, _)| text),
    ];
    let keep = prop_oneof![4 => Just(0usize), 2 => 1..3usize];
    let run = prop_oneof![
        4 => Just(PurgeRun::Real),
        3 => Just(PurgeRun::Dry),
        2 => Just(PurgeRun::DryThenReal),
    ];
    (
        filters,
        ago,
        keep,
        (prop::bool::weighted(0.6), prop::bool::weighted(0.25), run),
    )
        .prop_map(|(filters, ago, keep, (untagged, include_locked, run))| {
            Op::PurgeByFilter(PurgeSel {
                filters,
                ago,
                keep,
                untagged,
                include_locked,
                run,
            })
        })
        .boxed()
}

/// S1: short retentions (so that days of clock expire them), the default, the bounds, and
/// out-of-range ones.
fn retention_days() -> BoxedStrategy<u32> {
    prop_oneof![
        6 => 1..=3u32,
        2 => Just(7u32),
        1 => Just(90u32),
        1 => select(&[0u32, 91][..]),
    ]
    .boxed()
}

fn set_policy() -> BoxedStrategy<Op> {
    (prop::bool::weighted(0.75), retention_days())
        .prop_map(|(enabled, days)| Op::SetPolicy { enabled, days })
        .boxed()
}

/// Every op, with weights; `batches` and `reopens` weigh those two.
fn op(batches: u32, reopens: u32) -> BoxedStrategy<Op> {
    op_mix(Mix {
        batches,
        reopens,
        ..Mix::P
    })
}

/// Every op, with weights; `mix` weighs the groups beyond the P ops (0: never).
fn op_mix(mix: Mix) -> BoxedStrategy<Op> {
    let Mix {
        batches,
        reopens,
        deletes,
        policy,
        bin,
        uploads,
        collect,
        clock,
        locks,
        retention,
        purge: purges,
    } = mix;
    let offset = prop_oneof![
        6 => Just(OffsetChoice::Right),
        1 => (1..4u64).prop_map(OffsetChoice::Ahead),
        1 => Just(OffsetChoice::Behind),
    ];
    let finish = prop_oneof![
        4 => alg().prop_map(FinishDigest::Right),
        1 => alg().prop_map(FinishDigest::Wrong),
    ];
    let secs = prop_oneof![
        4 => Just(1u64),
        2 => Just(60),
        1 => Just(3600),
        1 => Just(43_200),
        1 => Just(86_401),
        1 => Just(3 * 86_400),
    ];
    weighted(vec![
        (8, put_blob()),
        (3, put_blob_sha256()),
        (4, mount_blob()),
        (
            uploads * 3,
            repo().prop_map(|repo| Op::StartUpload { repo }).boxed(),
        ),
        (
            uploads * 4,
            (slot(), chunk())
                .prop_map(|(slot, chunk)| Op::AppendChunk { slot, chunk })
                .boxed(),
        ),
        (
            uploads * 3,
            (slot(), chunk(), offset)
                .prop_map(|(slot, chunk, offset)| Op::AppendAt {
                    slot,
                    chunk,
                    offset,
                })
                .boxed(),
        ),
        (
            uploads * 3,
            (slot(), finish)
                .prop_map(|(slot, digest)| Op::FinishUpload { slot, digest })
                .boxed(),
        ),
        (
            uploads,
            slot().prop_map(|slot| Op::CancelUpload { slot }).boxed(),
        ),
        (
            uploads,
            (slot(), resume_via())
                .prop_map(|(slot, via)| Op::ResumeUpload { slot, via })
                .boxed(),
        ),
        (10, push_image()),
        (4, push_index()),
        (4, push_referrer()),
        (5, tag_op()),
        (2, pull()),
        (clock, secs.prop_map(Op::AdvanceClock).boxed()),
        (batches, batch(mix)),
        (reopens, Just(Op::Reopen).boxed()),
        (deletes * 3, untag()),
        (deletes * 4, delete_manifest()),
        (deletes, delete_repository()),
        (policy, set_policy()),
        (bin * 4, restore()),
        (bin, revert_tag()),
        (bin * 2, purge()),
        (
            bin * 2 + retention * 2,
            prop::bool::weighted(0.3 + 0.1 * f64::from(retention.min(4)))
                .prop_map(|now| Op::Autopurge { now })
                .boxed(),
        ),
        (locks * 3, set_locks()),
        (retention, set_retention()),
        (purges * 3, purge_by_filter()),
        (
            collect,
            prop::bool::weighted(0.3)
                .prop_map(|dry_run| Op::Collect { dry_run })
                .boxed(),
        ),
    ])
}

/// `ResumeUpload` goes through a repository chosen at random: the session's own, or another.
fn resume_via() -> BoxedStrategy<Option<&'static str>> {
    prop::option::of(select(REPOS)).boxed()
}

/// Where the stores go if the host has a tmpfs: a new store creates 768 blob directories, which
/// takes a few milliseconds there and up to half a second on some disks, most of a case's time.
/// Durability is not what this test is about (see `tests/durability.rs`).
fn tmpfs() -> Option<&'static std::path::Path> {
    let shm = std::path::Path::new("/dev/shm");
    shm.is_dir().then_some(shm)
}

/// `cases` on a tmpfs, a quarter of them on a disk, to keep the test within seconds; or as many
/// as `PROPTEST_CASES` says, for a longer hunt (`PROPTEST_CASES=20000 cargo test --release
/// --test model`).
fn config(cases: u32) -> ProptestConfig {
    let cases = match std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        Some(n) => n,
        None if tmpfs().is_some() => cases,
        None => cases / 4,
    };
    ProptestConfig {
        cases,
        max_shrink_iters: 2048,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(192))]

    /// P1–P8 (with N1–N3 on the error paths): the registry behaves as the model under random
    /// blob writes, mounts, uploads, pushes, tags, pulls and clock moves.
    #[test]
    fn p1_p8_model_matches_registry_under_random_operations(
        ops in prop::collection::vec(op(3, 1), 1..40),
    ) {
        run(&ops)?;
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// C1: batches apply all their ops or none, and everything (upload sessions with their
    /// offsets too) survives reopening the store.
    #[test]
    fn c1_model_matches_registry_across_batches_and_reopens(
        ops in prop::collection::vec(op(12, 6), 1..40),
    ) {
        run(&ops)?;
    }
}

/// A policy to start with: mostly on with a short retention, sometimes left off.
fn initial_policy() -> BoxedStrategy<Option<Op>> {
    prop::option::weighted(
        0.8,
        (1..=3u32).prop_map(|days| Op::SetPolicy {
            enabled: true,
            days,
        }),
    )
    .boxed()
}

/// Ops after an initial policy and a few tagged images pushed, so that deletes find something
/// to put in the bin.
fn seeded(ops: impl Strategy<Value = Vec<Op>> + 'static) -> BoxedStrategy<Vec<Op>> {
    let images = prop::collection::vec(image_over_new_blobs(select(TAGS).prop_map(Some)), 2..6);
    let images = images.prop_map(|batches| batches.into_iter().map(Op::Batch).collect());
    with_policy((images, ops).prop_map(|(images, ops): (Vec<Op>, Vec<Op>)| [images, ops].concat()))
}

/// Ops after an initial policy.
fn with_policy(ops: impl Strategy<Value = Vec<Op>> + 'static) -> BoxedStrategy<Vec<Op>> {
    (initial_policy(), ops)
        .prop_map(|(policy, ops)| policy.into_iter().chain(ops).collect())
        .boxed()
}

proptest! {
    #![proptest_config(config(96))]

    /// D1–D5, S1, S2, S5, S12, S13, T1, L1: the registry behaves as the model under random
    /// pushes, tags, untags, manifest and repository deletes (permanent or into the bin, or
    /// refused by a lock) and policy changes, mixed with the P ops.
    #[test]
    fn d1_d5_s2_l1_model_matches_registry_under_deletes(
        ops in with_policy(prop::collection::vec(
            op_mix(Mix { deletes: 3, policy: 1, reopens: 1, locks: 1, ..Mix::P }),
            1..50,
        )),
    ) {
        run(&ops)?;
    }
}

proptest! {
    #![proptest_config(config(224))]

    /// S3–S16, T1, T2, C1, L2: the registry behaves as the model under restores (by tag, by
    /// digest, both, forced; or refused by a lock), reverts, purges by hand, autopurge runs (due
    /// or not) over clock moves of days, policy changes and reopens, mixed with deletes and the
    /// P ops; batches hold deletes, restores and lock changes too.
    #[test]
    fn s3_s16_t2_l2_model_matches_registry_under_restores_purges_and_autopurge(
        ops in seeded(prop::collection::vec(
            op_mix(Mix { batches: 2, reopens: 1, deletes: 3, policy: 1, bin: 3, uploads: 0, locks: 1, ..Mix::P }),
            1..60,
        )),
    ) {
        run(&ops)?;
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// G1–G5, S14: the registry behaves as the model under collections (real and dry runs)
    /// mixed with every other op: blob writes, uploads left to expire, pushes, deletes,
    /// restores, purges, clock moves past the grace period and reopens. A blob the model holds
    /// live is never swept: every later read and push finds it.
    #[test]
    fn g1_g5_model_matches_registry_under_collections(
        ops in seeded(prop::collection::vec(
            op_mix(Mix { batches: 1, reopens: 1, deletes: 2, policy: 1, bin: 1, collect: 6, clock: 8, ..Mix::P }),
            1..60,
        )),
    ) {
        run(&ops)?;
    }
}

/// Ops after a retention policy (half the time, with 0 to 2 days), a soft delete policy and a
/// few tagged images.
fn with_retention(ops: impl Strategy<Value = Vec<Op>> + 'static) -> BoxedStrategy<Vec<Op>> {
    let retention = prop::option::weighted(
        0.5,
        (0..=2u32).prop_map(|days| Op::SetRetention {
            enabled: true,
            days,
        }),
    );
    (retention, seeded(ops))
        .prop_map(|(retention, ops)| retention.into_iter().chain(ops).collect())
        .boxed()
}

/// Runs `cases` cases of `ops` (or as many as [`config`] says), then checks that they reached
/// every outcome of `must_reach` at least once: a label of [`count`] for one of the ops named
/// whose outcome holds each of the words (`"PurgeByFilter -> PurgeReport real untag delete"`
/// for `(&["PurgeByFilter"], "real delete")`). The strategies must keep reaching the success
/// paths; the check is skipped when fewer cases run (`PROPTEST_CASES` below `cases`, or no
/// tmpfs).
fn check_model(cases: u32, ops: BoxedStrategy<Vec<Op>>, must_reach: &[(&[&str], &str)]) {
    let config = config(cases);
    let enough = config.cases >= cases;
    REACHED.with(|r| r.borrow_mut().clear());
    let mut runner = TestRunner::new(config);
    if let Err(e) = runner.run(&ops, |ops| run(&ops)) {
        panic!("{e}");
    }
    if enough {
        let reached = REACHED.with(|r| r.borrow().clone());
        let missed: Vec<_> = must_reach
            .iter()
            .filter(|(ops, holds)| {
                !reached.iter().any(|label| {
                    let (op, outcome) = label.split_once(" -> ").unwrap();
                    let words: Vec<&str> = outcome.split(' ').collect();
                    ops.contains(&op) && holds.split(' ').all(|w| words.contains(&w))
                })
            })
            .collect();
        assert!(missed.is_empty(), "no case reached {missed:?}");
    }
}

/// The ops that write into a repository (L2).
const WRITES: &[&str] = &[
    "PutBlob",
    "PutBlobSha256",
    "MountBlob",
    "PushImage",
    "PushIndex",
    "PushReferrer",
    "Tag",
    "Restore",
    "RevertTag",
];

/// L1, L2, R1–R3, U1–U6, T1: the registry behaves as the model under locks set and lifted
/// (in batches too) with every op they refuse, retention policy changes with autopurge runs
/// over clock moves of days, and purges by filter (real, dry, a dry run then the real one),
/// mixed with deletes, restores, policy changes, reopens and the P ops. The cases must reach
/// purges that untag and delete, locked items skipped, retention deletes and `Locked` refusals.
#[test]
fn l1_l2_r1_r3_u1_u6_t1_model_matches_registry_under_locks_retention_and_purges() {
    let mix = Mix {
        batches: 1,
        reopens: 1,
        deletes: 2,
        policy: 1,
        bin: 2,
        uploads: 0,
        clock: 10,
        locks: 4,
        retention: 2,
        purge: 4,
        ..Mix::P
    };
    let ops = with_retention(prop::collection::vec(op_mix(mix), 1..60));
    check_model(
        128,
        ops,
        &[
            (&["PurgeByFilter"], "real untag"),
            (&["PurgeByFilter"], "real delete"),
            (&["PurgeByFilter"], "locked"),
            (&["PurgeByFilter"], "dry untag"),
            (&["Autopurge"], "retention"),
            (&["Untag", "DeleteManifest", "DeleteRepository"], "Locked"),
            (WRITES, "Locked"),
        ],
    );
}

/// P1, P2: an upload session belongs to the repository it was started in; resuming it through
/// another one is `UploadUnknown`, as it already is after a reopen.
#[test]
fn p1_resume_upload_through_another_repository_is_upload_unknown_in_the_same_process() {
    run(&[
        Op::StartUpload { repo: "team/app" },
        Op::ResumeUpload {
            slot: 0,
            via: Some("lib"),
        },
    ])
    .unwrap();
}

/// L2: finishing an upload into a repository write-locked since the session started is
/// refused like a put, and leaves the session open: it finishes once the lock is lifted.
#[test]
fn l2_finish_upload_into_a_write_locked_repository_is_refused_and_the_session_stays() {
    let lock = |locks| Op::SetLocks {
        repo: "team/app",
        item: ItemSel::Repository,
        locks,
    };
    let finish = Op::FinishUpload {
        slot: 0,
        digest: FinishDigest::Right(Algorithm::Sha256),
    };
    let outcomes = run_outcomes(&[
        Op::PutBlobSha256 {
            repo: "team/app",
            content: 0,
        },
        Op::StartUpload { repo: "team/app" },
        Op::AppendChunk { slot: 0, chunk: 0 },
        Op::AppendChunk { slot: 0, chunk: 1 },
        lock(Locks::READ_ONLY),
        finish.clone(),
        lock(Locks::UNLOCKED),
        finish,
    ])
    .unwrap();
    let refused = ErrKind::Locked {
        repository: "team/app".to_owned(),
        item: "the repository".to_owned(),
        lock: "write_enabled".to_owned(),
    };
    assert_eq!(outcomes[5], Err(refused));
    assert_eq!(outcomes[7], Ok(Value::Unit));
}

/// A blob, and an image of it pushed by digest: the first manifest of `repo`, untagged.
fn untagged_image(repo: &'static str) -> Vec<Op> {
    let config = BlobSel {
        content: 0,
        alg: Algorithm::Sha256,
    };
    vec![
        Op::PutBlobSha256 { repo, content: 0 },
        Op::PushImage {
            repo,
            image: Image {
                docker: false,
                mismatch: false,
                config: BlobRef::Pool(config),
                layers: Vec::new(),
            },
            reference: RefChoice::Digest(Algorithm::Sha256),
        },
    ]
}

/// R1, R2: an untagged index and its untagged children, older than the index as children are,
/// all go in one autopurge run: the index going frees its children.
#[test]
fn r1_r2_retention_deletes_an_untagged_index_and_its_older_children_in_one_run() {
    let repo = REPOS[0];
    let mut ops = vec![Op::SetRetention {
        enabled: true,
        days: 0,
    }];
    ops.extend(untagged_image(repo));
    ops.extend([
        Op::AdvanceClock(1),
        Op::PushIndex {
            repo,
            docker: false,
            children: vec![ManifestSel::Existing(0)],
            reference: RefChoice::Digest(Algorithm::Sha256),
        },
        Op::AdvanceClock(1),
        Op::Autopurge { now: true },
    ]);
    let outcomes = run_outcomes(&ops);
    let Ok(Value::Purged {
        untagged_deleted, ..
    }) = outcomes.unwrap()[6]
    else {
        panic!("autopurge failed");
    };
    assert_eq!(untagged_deleted, 2, "the index and its child");
}

/// U3, U4: a locked untagged child of a tagged index is not a purge's to delete, lock or no
/// lock: the purge does not report it as a locked item it skipped, nor its repository once
/// that is locked.
#[test]
fn u3_u4_purge_reports_no_lock_on_what_it_would_not_delete() {
    let repo = REPOS[0];
    let purge = Op::PurgeByFilter(PurgeSel {
        filters: vec!["team/.*:v.*"],
        ago: "0",
        keep: 0,
        untagged: true,
        include_locked: false,
        run: PurgeRun::DryThenReal,
    });
    let mut ops = untagged_image(repo);
    ops.extend([
        Op::PushIndex {
            repo,
            docker: false,
            children: vec![ManifestSel::Existing(0)],
            reference: RefChoice::Tag("latest"),
        },
        Op::SetLocks {
            repo,
            item: ItemSel::Manifest(ManifestSel::Existing(0)),
            locks: Locks::NO_DELETE,
        },
        Op::SetLocks {
            repo,
            item: ItemSel::Manifest(ManifestSel::Existing(1)),
            locks: Locks::NO_DELETE,
        },
        Op::AdvanceClock(60),
        purge.clone(),
        Op::SetLocks {
            repo,
            item: ItemSel::Repository,
            locks: Locks::NO_DELETE,
        },
        purge,
    ]);
    let outcomes = run_outcomes(&ops).unwrap();
    for i in [6, 8] {
        let Ok(Value::PurgeReport { repositories, .. }) = &outcomes[i] else {
            panic!("purge failed: {:?}", outcomes[i]);
        };
        assert_eq!(repositories, &[], "nothing to do, nothing skipped");
    }
}
