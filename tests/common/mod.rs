//! Fixtures shared by the integration tests: a store on a manual clock, manifest bodies, and a
//! snapshot of everything a store holds, to prove that a failed call wrote nothing.
#![allow(dead_code)] // each test file uses its own subset

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ocistore::manifest::{OCI_INDEX, OCI_MANIFEST};
use ocistore::{
    Algorithm, Digest, Error, Manifest, ManifestQuery, ManualClock, Page, Registry, Repository,
    Result, SoftDeletePolicy, TagCause, TagEvent, Timestamp,
};
use serde_json::json;
use tempfile::TempDir;

pub mod kills;

pub const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const SIG_TYPE: &str = "application/vnd.example.signature.v1";
pub const EMPTY_TYPE: &str = "application/vnd.oci.empty.v1+json";

/// 2026-01-01T00:00:00Z, where every test clock starts.
pub const START: Timestamp = Timestamp::from_nanos(1_767_225_600 * 1_000_000_000);

pub struct Store {
    pub dir: TempDir,
    pub registry: Registry,
    pub clock: ManualClock,
}

impl Store {
    pub fn new() -> Store {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(START);
        let registry = open(dir.path(), &clock);
        Store {
            dir,
            registry,
            clock,
        }
    }

    /// Closes the store and opens it again on the same clock. Every other handle on the
    /// registry (a `Repository` keeps one) must be dropped first.
    pub fn reopen(self) -> Store {
        let Store {
            dir,
            registry,
            clock,
        } = self;
        drop(registry);
        let registry = open(dir.path(), &clock);
        Store {
            dir,
            registry,
            clock,
        }
    }

    pub fn repo(&self, name: &str) -> Repository {
        self.registry.repository(name).expect("valid name")
    }

    pub fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }
}

pub fn open(path: &Path, clock: &ManualClock) -> Registry {
    Registry::builder()
        .clock(clock.clone())
        .cache_size(16 << 20)
        .open(path)
        .expect("open store")
}

/// An OCI image manifest body over the given config and layers (digest, size).
pub fn image_body(config: &(Digest, u64), layers: &[(Digest, u64)]) -> serde_json::Value {
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": CONFIG_TYPE, "digest": config.0, "size": config.1},
        "layers": layers.iter().map(|(d, s)| json!({"mediaType": LAYER_TYPE, "digest": d, "size": s})).collect::<Vec<_>>(),
    })
}

/// An OCI image index body over the given child manifests (digest, size).
pub fn index_body(children: &[(Digest, u64)]) -> serde_json::Value {
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": children.iter().map(|(d, s)| json!({"mediaType": OCI_MANIFEST, "digest": d, "size": s})).collect::<Vec<_>>(),
    })
}

/// Uploads a config and one layer per entry of `layers` into `repo` and returns the body of an
/// image manifest over them.
pub fn upload_image(repo: &Repository, config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    let put = |bytes: &[u8]| {
        (
            repo.put_blob_sha256(bytes).expect("put blob"),
            bytes.len() as u64,
        )
    };
    let config = put(config);
    let layers: Vec<_> = layers.iter().map(|l| put(l)).collect();
    serde_json::to_vec(&image_body(&config, &layers)).unwrap()
}

/// Pushes an image of fresh blobs (named after `seed`) under `reference`; returns its digest.
pub fn push_image(repo: &Repository, reference: &str, seed: &str) -> Digest {
    let body = upload_image(
        repo,
        format!("config {seed}").as_bytes(),
        &[format!("layer {seed}").as_bytes()],
    );
    repo.push_manifest(reference, OCI_MANIFEST, &body)
        .expect("push image")
        .digest
}

pub use ocistore_testkit::snapshot;

// ---------------------------------------------------------------------------------------------
// Deletes and the recycle bin (`delete.rs`, `recycle_bin.rs`)

/// Turns the soft delete policy on with the given retention.
pub fn policy_on(s: &Store, retention_days: u32) {
    s.registry
        .set_soft_delete_policy(SoftDeletePolicy::enabled(retention_days).unwrap())
        .unwrap();
}

/// Pushes `body` by `tag`, or by its sha256 digest when `tag` is `None`.
pub fn push(repo: &Repository, tag: Option<&str>, media_type: &str, body: &[u8]) -> Digest {
    let reference = match tag {
        Some(tag) => tag.to_owned(),
        None => Algorithm::Sha256.digest(body).to_string(),
    };
    repo.push_manifest(&reference, media_type, body)
        .expect("push manifest")
        .digest
}

/// Pushes an image of fresh blobs, untagged.
pub fn push_untagged(repo: &Repository, seed: &str) -> Digest {
    let body = upload_image(
        repo,
        format!("config {seed}").as_bytes(),
        &[format!("layer {seed}").as_bytes()],
    );
    push(repo, None, OCI_MANIFEST, &body)
}

/// The config and layer digests `push_image(_, _, seed)` uploads.
pub fn seed_blobs(seed: &str) -> Vec<Digest> {
    vec![
        Algorithm::Sha256.digest(format!("config {seed}").as_bytes()),
        Algorithm::Sha256.digest(format!("layer {seed}").as_bytes()),
    ]
}

pub fn size_of(repo: &Repository, digest: &Digest) -> u64 {
    repo.pull(digest.as_str()).expect("pull").body.len() as u64
}

/// Pushes a signature-like referrer of `subject` (which must be live in `repo`).
pub fn push_referrer(repo: &Repository, tag: Option<&str>, subject: &Digest, seed: &str) -> Digest {
    let config = repo.put_blob_sha256(b"{}").unwrap();
    let layer_bytes = format!("signature {seed}");
    let layer = repo.put_blob_sha256(&layer_bytes).unwrap();
    let body = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SIG_TYPE,
        "config": {"mediaType": EMPTY_TYPE, "digest": config, "size": 2},
        "layers": [{"mediaType": SIG_TYPE, "digest": layer, "size": layer_bytes.len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": size_of(repo, subject)},
    });
    push(repo, tag, OCI_MANIFEST, &serde_json::to_vec(&body).unwrap())
}

/// The body of an index over `children` (live manifests of `repo`).
pub fn index_bytes(repo: &Repository, children: &[&Digest]) -> Vec<u8> {
    let children: Vec<_> = children
        .iter()
        .map(|d| ((*d).clone(), size_of(repo, d)))
        .collect();
    serde_json::to_vec(&index_body(&children)).unwrap()
}

/// Pushes an index over `children` (live manifests of `repo`).
pub fn push_index(repo: &Repository, tag: Option<&str>, children: &[&Digest]) -> Digest {
    push(repo, tag, OCI_INDEX, &index_bytes(repo, children))
}

/// Where the store keeps the bytes of a blob.
pub fn blob_file(registry: &Registry, digest: &Digest) -> PathBuf {
    registry
        .path()
        .join("blobs")
        .join(digest.algorithm().name())
        .join(&digest.hex()[..2])
        .join(digest.hex())
}

pub fn tag_names(repo: &Repository) -> Vec<String> {
    repo.tags(&Page::all())
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect()
}

pub fn manifest_digests(repo: &Repository) -> BTreeSet<Digest> {
    repo.manifests(&ManifestQuery::default())
        .unwrap()
        .into_iter()
        .map(|m| m.digest)
        .collect()
}

/// The live manifests of `repo` that have no tag.
pub fn untagged_manifests(repo: &Repository) -> Vec<Manifest> {
    repo.manifests(&ManifestQuery::default().untagged(true))
        .unwrap()
}

pub fn deleted_manifest_digests(repo: &Repository) -> BTreeSet<Digest> {
    repo.deleted_manifests()
        .unwrap()
        .into_iter()
        .map(|m| m.digest)
        .collect()
}

pub fn deleted_tag_pairs(repo: &Repository) -> BTreeSet<(String, Digest)> {
    repo.deleted_tags(None)
        .unwrap()
        .into_iter()
        .map(|t| (t.tag, t.digest))
        .collect()
}

/// (tag, digest) pairs, as `deleted_tag_pairs` lists them.
pub fn pairs<const N: usize>(items: [(&str, &Digest); N]) -> BTreeSet<(String, Digest)> {
    items
        .into_iter()
        .map(|(t, d)| (t.to_owned(), d.clone()))
        .collect()
}

pub fn set<const N: usize>(digests: [&Digest; N]) -> BTreeSet<Digest> {
    digests.into_iter().cloned().collect()
}

/// Everything the store holds, the recycle bin of `names`, the tag histories and the settings
/// included.
pub fn state(registry: &Registry, names: &[&str]) -> String {
    let mut out = snapshot(registry);
    out += &format!(
        "policy {:?}\nlast run {:?}\nhistory retention {:?}\n",
        registry.soft_delete_policy().unwrap(),
        registry.autopurge_last_run().unwrap(),
        registry.history_retention_days().unwrap()
    );
    for r in registry.deleted_repositories().unwrap() {
        out += &format!("deleted repository {r:?}\n");
    }
    for name in names {
        let repo = registry.repository(name).unwrap();
        let mut tags = BTreeSet::new();
        for m in repo.deleted_manifests().unwrap() {
            out += &format!("{name}: deleted manifest {m:?}\n");
        }
        for t in repo.deleted_tags(None).unwrap() {
            out += &format!("{name}: deleted tag {t:?}\n");
            tags.insert(t.tag);
        }
        tags.extend(tag_names(&repo));
        for tag in tags {
            out += &format!(
                "{name}: history {tag} {:?}\n",
                repo.tag_history(&tag).unwrap()
            );
        }
    }
    out
}

/// Runs a call that must be refused, checks that the store is unchanged (N5) and returns the
/// error.
pub fn refused<T: Debug>(s: &Store, names: &[&str], call: impl FnOnce() -> Result<T>) -> Error {
    let before = state(&s.registry, names);
    let err = match call() {
        Ok(v) => panic!("expected a refusal, got Ok({v:?})"),
        Err(e) => e,
    };
    assert_eq!(
        state(&s.registry, names),
        before,
        "a refused call ({err}) changed the store"
    );
    err
}

pub fn is_manifest_unknown(err: &Error, repo: &str, reference: &str) -> bool {
    matches!(err, Error::ManifestUnknown { repository, reference: r }
        if repository == repo && r == reference)
}

pub fn is_invalid_tag(err: &Error, tag: &str) -> bool {
    matches!(err, Error::InvalidTag { tag: t } if t == tag)
}

pub fn is_invalid_repository_name(err: &Error, name: &str) -> bool {
    matches!(err, Error::InvalidRepositoryName { name: n, .. } if n == name)
}

/// An event of a tag's history as a test expects it: it compares equal to a [`TagEvent`] with
/// the same fields (which the tests cannot build: it is `#[non_exhaustive]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub tag: String,
    pub from: Option<Digest>,
    pub to: Option<Digest>,
    pub at: Timestamp,
    pub cause: TagCause,
}

impl PartialEq<Event> for TagEvent {
    fn eq(&self, e: &Event) -> bool {
        (&self.tag, &self.from, &self.to, self.at, self.cause)
            == (&e.tag, &e.from, &e.to, e.at, e.cause)
    }
}

pub fn event(
    tag: &str,
    from: Option<&Digest>,
    to: Option<&Digest>,
    at: Timestamp,
    cause: TagCause,
) -> Event {
    Event {
        tag: tag.to_owned(),
        from: from.cloned(),
        to: to.cloned(),
        at,
        cause,
    }
}

/// An autopurge report, for comparing with what a run returned.
pub fn report(
    ran_at: Timestamp,
    repositories: usize,
    manifests: usize,
    tags: usize,
) -> ocistore::AutopurgeReport {
    let mut report = ocistore::AutopurgeReport::default();
    report.ran_at = ran_at;
    report.repositories = repositories;
    report.manifests = manifests;
    report.tags = tags;
    report
}

/// Runs `call`, which must fail, and checks that the store is exactly as it was before.
pub fn fails_writing_nothing<T: std::fmt::Debug>(
    registry: &Registry,
    call: impl FnOnce() -> ocistore::Result<T>,
) -> ocistore::Error {
    let before = snapshot(registry);
    let err = call().expect_err("the call should have failed");
    assert_eq!(
        snapshot(registry),
        before,
        "a failed call wrote something: {err}"
    );
    err
}

// ---------------------------------------------------------------------------------------------
// Child processes (`durability.rs`, `accounting.rs`)

/// Runs this test binary as a child process running only the test `name`.
pub fn child_test(name: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("test binary path"));
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"]);
    cmd
}

/// Every file under `dir` but the database, relative to it, with its length, in name order.
pub fn files_in(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if !path.ends_with("metadata.redb") {
                let len = path.metadata().unwrap().len();
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                out.push((name, len));
            }
        }
    }
    out.sort();
    out
}
