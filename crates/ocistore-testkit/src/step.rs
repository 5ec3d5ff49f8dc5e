//! Resolving an operation's selectors against the model's state: the concrete [`Step`] every
//! system runs.

use std::collections::BTreeMap;

use ocistore::manifest::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use ocistore::{Algorithm, Descriptor, Digest, Item, Locks, RetentionPolicy};
use serde_json::json;

use super::*;
use super::{grammar::*, op::*};

pub(crate) fn descriptor(media_type: &str, digest: &str, size: u64) -> Descriptor {
    Descriptor::new(
        media_type,
        Digest::parse(digest).expect("descriptors name valid digests"),
        size,
    )
}

/// A manifest body, structured: the model keeps these fields, the registry gets the bytes.
#[derive(Debug, Clone)]
pub struct BodySpec {
    /// The body's `mediaType`.
    pub media_type: &'static str,
    /// The index that lists it.
    pub index: bool,
    /// The artifact type.
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: Option<Descriptor>,
    /// Layers of an image, children of an index.
    pub items: Vec<Descriptor>,
    /// The subject manifest.
    pub subject: Option<Descriptor>,
    /// The annotations.
    pub annotations: BTreeMap<String, String>,
}

impl BodySpec {
    pub(crate) fn render(&self) -> Vec<u8> {
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
    pub(crate) fn references(&self) -> Vec<Descriptor> {
        self.config.iter().chain(&self.items).cloned().collect()
    }
}

pub(crate) fn image_spec(image: &Image, view: &impl View, repo: &str) -> BodySpec {
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

/// What resolving an op needs to know of a side's state.
pub(crate) trait View {
    /// (digest, size) of the blobs linked to `repo`, by digest.
    fn blobs_of(&self, repo: &str) -> Vec<(String, u64)>;
    /// (digest, media type, size) of the manifests of `repo`, by digest.
    fn manifests_of(&self, repo: &str) -> Vec<(String, String, u64)>;
    /// Digests of the manifests of `repo` in the recycle bin, sorted.
    fn binned_of(&self, repo: &str) -> Vec<String>;
    /// Digests the tag history of `repo` names, of `tag` only if given, sorted (T2).
    fn named_of(&self, repo: &str, tag: Option<&str>) -> Vec<String>;
    /// How many upload sessions were started.
    fn sessions(&self) -> usize;
    /// The bytes a session holds, as its client knows them.
    fn sent(&self, slot: usize) -> Vec<u8>;
}

/// An op with every selector resolved.
#[derive(Debug, Clone)]
pub enum Step {
    /// `put_blob`.
    PutBlob {
        /// The repository, by name.
        repo: String,
        /// The digest, as text.
        digest: String,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// `put_blob_sha256`.
    PutBlobSha256 {
        /// The repository, by name.
        repo: String,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// `mount_blob`.
    Mount {
        /// The repository mounted from.
        from: String,
        /// The repository mounted into.
        to: String,
        /// The digest, as text.
        digest: String,
    },
    /// `start_upload`.
    StartUpload {
        /// The repository, by name.
        repo: String,
    },
    /// `append` or `append_at`.
    Append {
        /// The upload session: its index among those started, modulo their number.
        slot: usize,
        /// The bytes to append.
        chunk: Vec<u8>,
        /// `None`: plain `append`; `Some`: `append_at` this offset.
        at: Option<u64>,
    },
    /// `Upload::finish`.
    Finish {
        /// The upload session: its index among those started, modulo their number.
        slot: usize,
        /// The digest, as text.
        digest: String,
    },
    /// `Upload::cancel`.
    Cancel {
        /// The upload session: its index among those started, modulo their number.
        slot: usize,
    },
    /// `resume_upload`.
    Resume {
        /// The upload session: its index among those started, modulo their number.
        slot: usize,
        /// The repository it goes through; `None`: the session's own.
        via: Option<String>,
    },
    /// `push_manifest`.
    Push {
        /// The repository, by name.
        repo: String,
        /// A tag or a digest, as text.
        reference: String,
        /// The media type declared with the push.
        declared: String,
        /// The body's structure, as the model keeps it.
        spec: Box<BodySpec>,
        /// The manifest body.
        body: Vec<u8>,
    },
    /// `tag`.
    Tag {
        /// The repository, by name.
        repo: String,
        /// The tag, as text.
        tag: String,
        /// The digest, as text.
        digest: String,
    },
    /// `pull_manifest`.
    Pull {
        /// The repository, by name.
        repo: String,
        /// A tag or a digest, as text.
        reference: String,
    },
    /// `untag`.
    Untag {
        /// The repository, by name.
        repo: String,
        /// The tag, as text.
        tag: String,
    },
    /// `delete_manifest`.
    DeleteManifest {
        /// The repository, by name.
        repo: String,
        /// A tag or a digest, as text.
        reference: String,
    },
    /// `delete_repository`.
    DeleteRepository {
        /// The repository, by name.
        repo: String,
    },
    /// `set_soft_delete_policy`.
    SetPolicy {
        /// Whether the policy is on.
        enabled: bool,
        /// The retention, in days.
        days: u32,
    },
    /// `restore` by tag, digest or both.
    Restore {
        /// The repository, by name.
        repo: String,
        /// The tag, as text.
        tag: Option<String>,
        /// The digest, as text.
        digest: Option<String>,
        /// Whether a tag now on another manifest moves anyway (S7).
        force: bool,
        /// Whether an index brings back what it lists from the bin (S17).
        children: bool,
    },
    /// `revert_tag`.
    Revert {
        /// The repository, by name.
        repo: String,
        /// The tag, as text.
        tag: String,
        /// The digest, as text.
        digest: String,
        /// Whether a tag now on another manifest moves anyway (S7).
        force: bool,
    },
    /// `purge_deleted_repository`.
    PurgeRepository {
        /// The repository, by name.
        repo: String,
    },
    /// `purge_deleted_manifest`.
    PurgeManifest {
        /// The repository, by name.
        repo: String,
        /// The digest, as text.
        digest: String,
    },
    /// `purge_deleted_tags`.
    PurgeTags {
        /// The repository, by name.
        repo: String,
        /// The tag, as text.
        tag: String,
    },
    /// `run_due` or `run_now`.
    Autopurge {
        /// `run_now` instead of `run_due`.
        now: bool,
    },
    /// `collect`, real or dry.
    Collect {
        /// Whether nothing was, or is to be, changed.
        dry_run: bool,
    },
    /// `usage`.
    Usage,
    /// `fsck`, digests verified, without repair.
    Fsck,
    /// `set_locks`.
    SetLocks {
        /// The repository, by name.
        repo: String,
        /// The item, as the error names it.
        item: Item,
        /// The locks to set.
        locks: Locks,
    },
    /// `set_retention_policy`.
    SetRetention(RetentionPolicy),
    /// `set_history_retention_days`.
    SetHistoryRetention(u32),
    /// `purge`.
    PurgeByFilter(PurgeSel),
    /// Moves the clock forward by this many seconds.
    Advance(u64),
    /// One `batch` of steps.
    Batch(Vec<Step>),
    /// Drops every handle and opens the store again.
    Reopen,
    /// C4: the blob store's disk is full (`true`) or has room again (`false`) from now on.
    DiskFull(bool),
    /// `Registry::health`.
    Health,
    /// An upload op before any session was started: nothing runs.
    NoSession,
}

pub(crate) fn unknown_manifest() -> (String, String, u64) {
    (
        sha256(UNKNOWN_MANIFEST),
        OCI_MANIFEST.to_owned(),
        UNKNOWN_MANIFEST.len() as u64,
    )
}

pub(crate) fn pick(view: &impl View, repo: &str, sel: ManifestSel) -> (String, String, u64) {
    let all = view.manifests_of(repo);
    match sel {
        ManifestSel::Existing(i) if !all.is_empty() => all[i % all.len()].clone(),
        _ => unknown_manifest(),
    }
}

pub(crate) fn pick_any(view: &impl View, repo: &str, sel: AnySel) -> String {
    pick_for(view, repo, None, sel)
}

/// [`pick_any`] for an op on `tag`, which [`AnySel::NamedByTag`] needs.
pub(crate) fn pick_for(view: &impl View, repo: &str, tag: Option<&str>, sel: AnySel) -> String {
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
        AnySel::Named(i) | AnySel::NamedByTag(i) => {
            let by_tag = tag.filter(|_| matches!(sel, AnySel::NamedByTag(_)));
            let mut named = view.named_of(repo, by_tag);
            if named.is_empty() {
                named = view.named_of(repo, None);
            }
            if named.is_empty() {
                live(i)
            } else {
                named[i % named.len()].clone()
            }
        }
    }
}

pub(crate) fn pick_blob(view: &impl View, repo: &str, sel: BlobRef) -> (String, u64) {
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

pub(crate) fn manifest_ref(view: &impl View, repo: &str, reference: ManifestRef) -> String {
    match reference {
        ManifestRef::Tag(t) => t.to_owned(),
        ManifestRef::Digest(sel) => pick_any(view, repo, sel),
        ManifestRef::BadDigest(d) => d.to_owned(),
    }
}

pub(crate) fn push_step(repo: &str, spec: BodySpec, declared: &str, reference: RefChoice) -> Step {
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

pub(crate) fn resolve(op: &Op, view: &impl View) -> Step {
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
        Op::Restore {
            repo,
            what,
            force,
            children,
        } => {
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
                children: *children,
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
            digest: pick_for(view, repo, Some(tag), *manifest),
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
        Op::Usage => Step::Usage,
        Op::Fsck => Step::Fsck,
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
        Op::SetRetention { enabled, days } => {
            // Built field by field: the days may be out of range, to be refused.
            let mut policy = RetentionPolicy::default().with_enabled(*enabled);
            policy.days = *days;
            Step::SetRetention(policy)
        }
        Op::SetHistoryRetention(days) => Step::SetHistoryRetention(*days),
        Op::PurgeByFilter(p) => Step::PurgeByFilter(p.clone()),
        Op::AdvanceClock(secs) => Step::Advance(*secs),
        // Every op of a batch is resolved against the state before the batch.
        Op::Batch(ops) => Step::Batch(ops.iter().map(|o| resolve(o, view)).collect()),
        Op::Reopen => Step::Reopen,
        Op::DiskFull(full) => Step::DiskFull(*full),
        Op::Health => Step::Health,
    }
}
