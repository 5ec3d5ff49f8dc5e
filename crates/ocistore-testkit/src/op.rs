//! The operations a sequence is made of, and the pools and selectors they name things by.

use std::time::Duration;

use ocistore::{Algorithm, Locks};

use super::grammar::*;
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
/// Artifact types of referrers.
pub const ARTIFACT_TYPES: &[&str] = &[
    "application/vnd.example.sbom",
    "application/vnd.example.signature",
];
/// The config media type of Docker images.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// The layer media type of Docker images.
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
    /// The filter, as text.
    pub text: &'static str,
    /// The repository, by name.
    pub repo: fn(&str) -> bool,
    /// The tag.
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
    /// The content: an index into [`BLOBS`].
    pub content: usize,
    /// The digest algorithm.
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
    /// The `n`-th blob linked to the repository, by digest.
    Linked(usize),
    /// A blob of the pool, linked or not.
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
    /// The `n`-th manifest of the repository, by digest.
    Existing(usize),
    /// A manifest no repository holds.
    Unknown,
}

/// A manifest for the recycle bin's ops: the `n`-th live one of the repository by digest, the
/// `n`-th one in its bin (a live one when the bin holds none), or one that does not exist (also
/// when there is none to pick).
#[derive(Debug, Clone, Copy)]
pub enum AnySel {
    /// The `n`-th live manifest, by digest.
    Live(usize),
    /// The `n`-th manifest in the bin, by digest.
    Binned(usize),
    /// A manifest no repository holds.
    Unknown,
    /// The `n`-th manifest the repository's tag history names, by digest, whether it is live,
    /// in the bin or purged (T2); a live one when the history names none.
    Named(usize),
    /// For a revert, [`AnySel::Named`] of its tag's history, or of the repository's when that
    /// names none.
    NamedByTag(usize),
}

/// What a pull or a delete names: a tag, a manifest by digest (one in the bin is unknown to
/// both), or garbage.
#[derive(Debug, Clone, Copy)]
pub enum ManifestRef {
    /// A tag.
    Tag(&'static str),
    /// A manifest by digest.
    Digest(AnySel),
    /// Not a digest.
    BadDigest(&'static str),
}

/// What a restore names.
#[derive(Debug, Clone, Copy)]
pub enum RestoreSel {
    /// By tag.
    Tag(&'static str),
    /// By digest.
    Digest(AnySel),
    /// By tag and digest.
    TagAndDigest(&'static str, AnySel),
}

/// What a push names: a tag, the body's digest, another digest, or garbage.
#[derive(Debug, Clone, Copy)]
pub enum RefChoice {
    /// A tag.
    Tag(&'static str),
    /// The body's digest under this algorithm.
    Digest(Algorithm),
    /// The digest of other bytes: `DigestMismatch`.
    WrongDigest,
    /// Not a digest.
    BadDigest(&'static str),
}

/// The offset an `AppendAt` sends its chunk for.
#[derive(Debug, Clone, Copy)]
pub enum OffsetChoice {
    /// The session's offset.
    Right,
    /// The session's offset plus this (≥ 1).
    Ahead(u64),
    /// One before the session's offset (one after it when it is 0).
    Behind,
}

/// The digest a finish names.
#[derive(Debug, Clone, Copy)]
pub enum FinishDigest {
    /// The digest of the bytes sent, under this algorithm.
    Right(Algorithm),
    /// The digest of other bytes under this algorithm: `DigestMismatch`, the session stays.
    Wrong(Algorithm),
}

/// What a `SetLocks` locks: the repository, a manifest of it, or a tag name.
#[derive(Debug, Clone, Copy)]
pub enum ItemSel {
    /// The repository.
    Repository,
    /// A manifest of it.
    Manifest(ManifestSel),
    /// A tag name.
    Tag(&'static str),
}

/// How a purge by filter runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeRun {
    /// The real run.
    Real,
    /// A dry run.
    Dry,
    /// U5: a dry run, then the real run with the same options at the same time; both must
    /// report the same, and the dry run must change nothing.
    DryThenReal,
}

/// A purge by filter's options (U1): filters of [`FILTERS`] or [`BAD_FILTERS`], an age of
/// [`AGOS`].
#[derive(Debug, Clone)]
pub struct PurgeSel {
    /// The filters, as text.
    pub filters: Vec<&'static str>,
    /// The age, in `acr purge --ago` form.
    pub ago: &'static str,
    /// How many of the selected tags to keep, the newest.
    pub keep: usize,
    /// Also delete untagged manifests.
    pub untagged: bool,
    /// Delete locked items too.
    pub include_locked: bool,
    /// How it runs.
    pub run: PurgeRun,
}

/// An image manifest of pool blobs.
#[derive(Debug, Clone)]
pub struct Image {
    /// Docker media types instead of OCI ones.
    pub docker: bool,
    /// Declare the other image media type than the body's: `MediaTypeMismatch`.
    pub mismatch: bool,
    /// The config blob.
    pub config: BlobRef,
    /// The layer blobs.
    pub layers: Vec<BlobRef>,
}

/// One operation on a registry: everything the public API can do, clock moves and reopens
/// included. Ops name things by small pools ([`REPOS`], [`TAGS`], [`BLOBS`], bad inputs) so
/// that a sequence collides with itself, and by selectors ("the 3rd manifest of the repository
/// by digest") that [`Model::resolve`] turns into a concrete [`Step`] against the state the
/// sequence has built. Their `Debug` form is what a shrunk failing sequence prints.
#[derive(Debug, Clone)]
pub enum Op {
    /// `put_blob` of a pool blob under a digest.
    PutBlob {
        /// The repository, by name.
        repo: &'static str,
        /// The blob.
        blob: BlobSel,
        /// The digest the call names.
        digest: DigestChoice,
    },
    /// `put_blob_sha256` of a pool blob.
    PutBlobSha256 {
        /// The repository, by name.
        repo: &'static str,
        /// The content: an index into [`BLOBS`].
        content: usize,
    },
    /// `mount_blob` from another repository (or the same).
    MountBlob {
        /// The repository mounted from.
        from: &'static str,
        /// The repository mounted into.
        to: &'static str,
        /// Resolved in `from`.
        blob: BlobRef,
    },
    /// `start_upload`.
    StartUpload {
        /// The repository, by name.
        repo: &'static str,
    },
    /// Upload ops name a session by its index (modulo the sessions started so far, finished,
    /// cancelled and expired ones included).
    AppendChunk {
        /// The upload session: its index among those started, modulo their number.
        slot: usize,
        /// The chunk: an index into [`CHUNKS`].
        chunk: usize,
    },
    /// `append_at` an offset.
    AppendAt {
        /// The upload session: its index among those started, modulo their number.
        slot: usize,
        /// The chunk: an index into [`CHUNKS`].
        chunk: usize,
        /// The offset the append names.
        offset: OffsetChoice,
    },
    /// `Upload::finish` with a digest.
    FinishUpload {
        /// The upload session: its index among those started, modulo their number.
        slot: usize,
        /// The digest the call names.
        digest: FinishDigest,
    },
    /// `Upload::cancel`.
    CancelUpload {
        /// The upload session: its index among those started, modulo their number.
        slot: usize,
    },
    /// `resume_upload` through the session's own repository (`via: None`) or another one.
    ResumeUpload {
        /// The upload session: its index among those started, modulo their number.
        slot: usize,
        /// The repository it goes through; `None`: the session's own.
        via: Option<&'static str>,
    },
    /// Pushes an image manifest.
    PushImage {
        /// The repository, by name.
        repo: &'static str,
        /// The image.
        image: Image,
        /// A tag or a digest, as text.
        reference: RefChoice,
    },
    /// Pushes an index of manifests of the repository.
    PushIndex {
        /// The repository, by name.
        repo: &'static str,
        /// Docker media types instead of OCI ones.
        docker: bool,
        /// The child manifests.
        children: Vec<ManifestSel>,
        /// A tag or a digest, as text.
        reference: RefChoice,
    },
    /// Pushes an artifact whose subject is a manifest of the repository (OCI 1.1 referrers).
    PushReferrer {
        /// The repository, by name.
        repo: &'static str,
        /// The subject manifest.
        subject: ManifestSel,
        /// The config blob.
        config: BlobRef,
        /// The config's media type.
        config_type: &'static str,
        /// The artifact type.
        artifact_type: Option<&'static str>,
        /// Whether it carries an annotation.
        annotated: bool,
        /// The layer blobs.
        layers: Vec<BlobRef>,
        /// A tag or a digest, as text.
        reference: RefChoice,
    },
    /// `tag`: points a tag at a manifest (P5).
    Tag {
        /// The repository, by name.
        repo: &'static str,
        /// The tag.
        tag: &'static str,
        /// The manifest.
        manifest: ManifestSel,
    },
    /// Pulls a manifest by tag or digest.
    Pull {
        /// The repository, by name.
        repo: &'static str,
        /// A tag or a digest, as text.
        reference: ManifestRef,
    },
    /// D1.
    Untag {
        /// The repository, by name.
        repo: &'static str,
        /// The tag.
        tag: &'static str,
    },
    /// D2, D3, D5.
    DeleteManifest {
        /// The repository, by name.
        repo: &'static str,
        /// A tag or a digest, as text.
        reference: ManifestRef,
    },
    /// D4.
    DeleteRepository {
        /// The repository, by name.
        repo: &'static str,
    },
    /// S1.
    SetPolicy {
        /// Whether the policy is on.
        enabled: bool,
        /// The retention, in days.
        days: u32,
    },
    /// S6–S11, S17: a restore, forced or not, an index with its children or not.
    Restore {
        /// The repository, by name.
        repo: &'static str,
        /// What to restore.
        what: RestoreSel,
        /// Whether a tag now on another manifest moves anyway (S7).
        force: bool,
        /// Whether an index brings back what it lists from the bin (S17).
        children: bool,
    },
    /// T2.
    RevertTag {
        /// The repository, by name.
        repo: &'static str,
        /// The tag.
        tag: &'static str,
        /// The manifest.
        manifest: AnySel,
        /// Whether a tag now on another manifest moves anyway (S7).
        force: bool,
    },
    /// S16: purges by hand.
    PurgeRepository {
        /// The repository, by name.
        repo: &'static str,
    },
    /// S16: purges a manifest by hand.
    PurgeManifest {
        /// The repository, by name.
        repo: &'static str,
        /// The manifest.
        manifest: AnySel,
    },
    /// S16: purges a tag's entries from the bin.
    PurgeTags {
        /// The repository, by name.
        repo: &'static str,
        /// The tag.
        tag: &'static str,
    },
    /// S4: `run_due` (`now: false`) or `run_now`.
    Autopurge {
        /// `run_now` instead of `run_due`.
        now: bool,
    },
    /// G1–G5.
    Collect {
        /// Whether nothing was, or is to be, changed.
        dry_run: bool,
    },
    /// A1: `usage`, predicted whole.
    Usage,
    /// A2: `fsck`, digests verified, without repair: a store the API built has no problem to
    /// find, but for the blob files of failed batches (C2: they are the collector's to sweep),
    /// which the outcome leaves out.
    Fsck,
    /// L1, L2.
    SetLocks {
        /// The repository, by name.
        repo: &'static str,
        /// The item, as the error names it.
        item: ItemSel,
        /// The locks to set.
        locks: Locks,
    },
    /// R1.
    SetRetention {
        /// Whether the policy is on.
        enabled: bool,
        /// The retention, in days.
        days: u32,
    },
    /// T2: the history retention, in days.
    SetHistoryRetention(u32),
    /// U1–U6.
    PurgeByFilter(PurgeSel),
    /// Moves the clock forward by this many seconds.
    AdvanceClock(u64),
    /// One transaction: the ops (blob writes, mounts, pushes, tags) all apply or none does.
    Batch(Vec<Op>),
    /// Drops every handle and opens the store again.
    Reopen,
    /// C4: the disk of the blob store fills up (`true`) or has room again (`false`). While it
    /// is full, every write of blob bytes is refused with `StorageFull` and changes nothing: a
    /// put of a blob the store does not hold (in a batch too), the start of an upload, an
    /// append, and the finish of an upload whose blob the store does not hold. Everything else
    /// goes on. It is the disk's state, not the process's: it survives a reopen.
    DiskFull(bool),
    /// C4, C5: `Registry::health`.
    Health,
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
            Op::SetHistoryRetention(days) => *days > 3650,
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
            | Op::Usage
            | Op::Fsck
            | Op::AdvanceClock(_)
            | Op::Reopen
            | Op::DiskFull(_)
            | Op::Health => false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
