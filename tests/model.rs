//! SPEC P1–P8, N1–N3, C1, D1–D5, S1–S16 and T1–T2 as a model-based property test.
//!
//! [`Model`] is a plain in-memory registry (BTreeMaps) implementing the SPEC's rules: blobs,
//! uploads, manifests and tags; deletes, the recycle bin with its restores, purges and the
//! retention clock's autopurge; tag history and reverts. It is the reference semantics that later
//! rules (purge policies, locks, the collector) extend.
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
//! outcome, to check that the strategies reach the success paths as well as the errors.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use common::{CONFIG_TYPE, LAYER_TYPE, START};
use ocistore::manifest::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use ocistore::{
    Algorithm, Batch, CollectOptions, DeletedManifest, DeletedRepository, DeletedTag, Descriptor,
    Digest, Error, Manifest, ManifestQuery, ManualClock, Page, Registry, Restore, SoftDeletePolicy,
    Tag, TagCause, TagEvent, Timestamp, Upload,
};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::Union;
use proptest::test_runner::TestCaseError;
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
    /// What an autopurge run removed.
    Purged {
        at: Timestamp,
        repositories: usize,
        manifests: usize,
        tags: usize,
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
            blob_records: BTreeMap::new(),
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
    /// the bin if `bin`, for good otherwise.
    fn delete_live_manifest(&mut self, digest: &str, now: Timestamp, bin: bool) {
        for tag in self.tags_of(digest) {
            self.drop_tag(&tag, now, TagCause::Delete, bin);
        }
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

    fn live_manifests(&self) -> impl Iterator<Item = (&String, &ManifestModel)> {
        self.manifests.iter().filter(|(_, m)| m.live())
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
        let mut all: Vec<_> = self
            .live_manifests()
            .map(|(d, _)| self.expected_manifest(d))
            .collect();
        all.sort_by(|a, b| (a.updated, a.digest.as_str()).cmp(&(b.updated, b.digest.as_str())));
        all
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
            let bytes = m.repositories[from.as_str()].blobs[digest].clone();
            m.link(to, digest, &bytes);
            Ok(Value::Unit)
        }
        Step::StartUpload { repo } => {
            check_repo(repo)?;
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
            s.open = false;
            let (repo, bytes) = (s.repo.clone(), s.bytes.clone());
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
            if !m.policy.enabled {
                m.repositories.remove(repo.as_str());
                return Ok(Value::Unit);
            }
            let now = m.now;
            let r = m.repositories.get_mut(repo.as_str()).unwrap();
            // In update order: the order of the deletions' events.
            let live: Vec<String> = r.by_time().iter().map(|x| x.digest.to_string()).collect();
            for digest in live {
                r.delete_live_manifest(&digest, now, true);
            }
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
/// outside them lists one of them.
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
    // Breadth first, each subject's referrers by digest.
    let mut doomed = vec![digest];
    let mut next = 0;
    while let Some(subject) = doomed.get(next).cloned() {
        for (d, x) in r.live_manifests() {
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
    for digest in &doomed {
        for (index, x) in r.live_manifests() {
            let lists = x.spec.index && x.spec.items.iter().any(|c| c.digest.as_str() == digest);
            if lists && !doomed.contains(index) {
                return Err(ErrKind::ManifestReferenced {
                    repository: repo.to_owned(),
                    digest: digest.clone(),
                    index: index.clone(),
                });
            }
        }
    }
    for digest in &doomed {
        r.delete_live_manifest(digest, now, bin);
    }
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
    m.last_run = Some(now);
    Value::Purged {
        at: now,
        repositories: before - m.repositories.len(),
        manifests,
        tags,
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
        Step::Advance(secs) => {
            sut.clock.advance(Duration::from_secs(*secs));
            Ok(Value::Unit)
        }
        Step::Batch(steps) => in_batch(&reg, steps).map(Value::Batch),
        Step::Reopen => unreachable!("handled above"),
        Step::NoSession => Ok(Value::NoSession),
    }
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

/// With `MODEL_STATS=1` in the environment, counts outcomes and prints the running totals after
/// each case (`cargo test --test model -- --nocapture`): a check that the strategies reach the
/// success paths as well as the error paths.
fn count(op: &Op, outcome: &Outcome) {
    if std::env::var_os("MODEL_STATS").is_none() {
        return;
    }
    let name = |debug: String| debug.split([' ', '(', '{']).next().unwrap().to_owned();
    let result = match outcome {
        Ok(v) => name(format!("{v:?}")),
        Err(e) => name(format!("{e:?}")),
    };
    let label = format!("{} -> {result}", name(format!("{op:?}")));
    *STATS.lock().unwrap().entry(label).or_default() += 1;
}

fn print_stats() {
    if std::env::var_os("MODEL_STATS").is_some() {
        eprintln!("{:#?}", STATS.lock().unwrap());
    }
}

/// Runs `ops` on a fresh model and a fresh store, comparing after every op.
fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model = Model::new();
    let mut sut = Sut::new();
    for (i, op) in ops.iter().enumerate() {
        let expected = apply_model(&mut model, op);
        let actual = apply_registry(&mut sut, op);
        count(op, &expected);
        prop_assert_eq!(actual, expected, "op #{}: {:?}", i, op);
        prop_assert_eq!(sut.registry().now(), model.now);
        compare(&model, sut.registry())?;
        compare_uploads(&model, &sut)?;
    }
    // Everything survives a final reopen.
    sut.reopen();
    compare(&model, sut.registry())?;
    compare_uploads(&model, &sut)?;
    print_stats();
    Ok(())
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
            bin * 2,
            prop::bool::weighted(0.3)
                .prop_map(|now| Op::Autopurge { now })
                .boxed(),
        ),
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

    /// D1–D5, S1, S2, S5, S12, S13, T1: the registry behaves as the model under random pushes,
    /// tags, untags, manifest and repository deletes (permanent or into the bin) and policy
    /// changes, mixed with the P ops.
    #[test]
    fn d1_d5_s2_model_matches_registry_under_deletes(
        ops in with_policy(prop::collection::vec(
            op_mix(Mix { deletes: 3, policy: 1, reopens: 1, ..Mix::P }),
            1..50,
        )),
    ) {
        run(&ops)?;
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// S3–S16, T1, T2, C1: the registry behaves as the model under restores (by tag, by digest,
    /// both, forced), reverts, purges by hand, autopurge runs (due or not) over clock moves of
    /// days, policy changes and reopens, mixed with deletes and the P ops; batches hold deletes
    /// and restores too.
    #[test]
    fn s3_s16_t2_model_matches_registry_under_restores_purges_and_autopurge(
        ops in seeded(prop::collection::vec(
            op_mix(Mix { batches: 2, reopens: 1, deletes: 3, policy: 1, bin: 3, uploads: 0, ..Mix::P }),
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
