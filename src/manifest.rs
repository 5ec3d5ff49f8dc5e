//! Manifests: parsing and validating the four accepted kinds (SPEC P3), the stored record and
//! the metadata readers get back (P6, P7).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use redb::{ReadTransaction, ReadableDatabase, ReadableTable};

use crate::batch::Batch;
use crate::blob::linked_size;
use crate::clock::Timestamp;
use crate::digest::{Algorithm, Digest};
use crate::error::{Error, Result};
use crate::lock::{Item, Need};
use crate::repository::Repository;
use crate::tables::{
    MANIFEST_BODIES, MANIFEST_TAGS, MANIFESTS, MANIFESTS_BY_TIME, REFERRERS, TAGS, decode, encode,
    keys_under2,
};
use crate::tag::{TagCause, resolve_in, validate_tag};

/// Media type of an OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of a Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Media type of a Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

const DOCKER_SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// The largest manifest body accepted (N4): 4 MiB.
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;

/// What a manifest is: an image (config and layers) or an index (child manifests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// OCI image manifest or Docker schema 2 manifest.
    Image,
    /// OCI image index or Docker manifest list.
    Index,
}

impl ManifestKind {
    /// The kind of an accepted manifest media type; schema 1 and unknown types are refused.
    pub fn of_media_type(media_type: &str) -> Result<ManifestKind> {
        match media_type {
            OCI_MANIFEST | DOCKER_MANIFEST => Ok(ManifestKind::Image),
            OCI_INDEX | DOCKER_MANIFEST_LIST => Ok(ManifestKind::Index),
            t if DOCKER_SCHEMA1.contains(&t) => Err(Error::UnsupportedMediaType {
                media_type: t.to_owned(),
                reason: "Docker schema 1 manifests are not accepted; push schema 2 or OCI",
            }),
            t => Err(Error::UnsupportedMediaType {
                media_type: t.to_owned(),
                reason: "accepted: OCI image manifest and index, Docker schema 2 manifest and list",
            }),
        }
    }
}

/// An OCI content descriptor: what a manifest says of a blob or another manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The media type of the referenced content.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// The artifact type, if any (OCI 1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The fields of any accepted manifest body; which ones must be present depends on the kind.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body {
    schema_version: Option<u64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// A manifest body that passed validation, with the references it makes.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    pub kind: ManifestKind,
    pub artifact_type: Option<String>,
    pub config: Option<Descriptor>,
    /// Config then layers for an image; child manifests for an index.
    pub references: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub annotations: BTreeMap<String, String>,
}

/// Validates a manifest body against its declared media type (N4, P3).
pub(crate) fn parse(media_type: &str, body: &[u8]) -> Result<Parsed> {
    let size = body.len() as u64;
    if size > MAX_MANIFEST_SIZE {
        return Err(Error::ManifestTooLarge {
            size,
            limit: MAX_MANIFEST_SIZE,
        });
    }
    let kind = ManifestKind::of_media_type(media_type)?;
    let invalid = |reason: String| Error::InvalidManifest { reason };
    // serde would also read a JSON array into `Body`, field by field.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(invalid("a manifest is a JSON object".into()));
    }
    // JSON is UTF-8 (RFC 8259 section 8.1), and serde checks it only in the fields it reads:
    // bytes that are not would pass in an annotation or a field it skips.
    let text =
        std::str::from_utf8(body).map_err(|e| invalid(format!("a manifest is UTF-8 JSON: {e}")))?;
    let b: Body = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
    if let Some(body_type) = &b.media_type {
        if body_type != media_type {
            // A schema 1 body is named as such even when declared otherwise.
            if DOCKER_SCHEMA1.contains(&body_type.as_str()) {
                ManifestKind::of_media_type(body_type)?;
            }
            return Err(Error::MediaTypeMismatch {
                declared: media_type.to_owned(),
                body: body_type.clone(),
            });
        }
    }
    match b.schema_version {
        Some(2) => {}
        Some(1) => {
            return Err(Error::UnsupportedMediaType {
                media_type: media_type.to_owned(),
                reason: "schemaVersion 1 is Docker schema 1, which is not accepted",
            });
        }
        Some(v) => return Err(invalid(format!("schemaVersion must be 2, found {v}"))),
        None => return Err(invalid("schemaVersion is missing".into())),
    }
    let references = match kind {
        ManifestKind::Image => {
            if b.manifests.is_some() {
                return Err(invalid("an image manifest has no \"manifests\"".into()));
            }
            let config = b
                .config
                .clone()
                .ok_or_else(|| invalid("an image manifest needs \"config\"".into()))?;
            let layers = b
                .layers
                .ok_or_else(|| invalid("an image manifest needs \"layers\"".into()))?;
            std::iter::once(config).chain(layers).collect()
        }
        ManifestKind::Index => {
            if b.config.is_some() || b.layers.is_some() {
                return Err(invalid("an index has no \"config\" or \"layers\"".into()));
            }
            b.manifests
                .ok_or_else(|| invalid("an index needs \"manifests\"".into()))?
        }
    };
    Ok(Parsed {
        kind,
        artifact_type: b.artifact_type,
        config: b.config,
        references,
        subject: b.subject,
        annotations: b.annotations,
    })
}

/// A tag or a digest: how a manifest is pushed and pulled.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    /// A tag (N2).
    Tag(String),
    /// A digest (N3).
    Digest(Digest),
}

impl Reference {
    /// Parses a reference: anything with a `:` is a digest, anything else a tag. Tags cannot
    /// hold a `:`, so the two never clash.
    pub fn parse(s: &str) -> Result<Reference> {
        if s.contains(':') {
            Digest::parse(s).map(Reference::Digest)
        } else {
            validate_tag(s)?;
            Ok(Reference::Tag(s.to_owned()))
        }
    }
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Reference> {
        Reference::parse(s)
    }
}

impl From<Digest> for Reference {
    fn from(d: Digest) -> Reference {
        Reference::Digest(d)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => f.write_str(t),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

/// What is kept of a manifest besides its bytes; one row of the `manifests` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub media_type: String,
    pub size: u64,
    pub created: Timestamp,
    pub updated: Timestamp,
    #[serde(default)]
    pub artifact_type: Option<String>,
    #[serde(default)]
    pub config_media_type: Option<String>,
    pub references: Vec<Descriptor>,
    #[serde(default)]
    pub subject: Option<Digest>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Set while the manifest is in the recycle bin.
    #[serde(default)]
    pub deleted: Option<Timestamp>,
}

impl Record {
    pub(crate) fn new(media_type: &str, size: u64, now: Timestamp, parsed: Parsed) -> Record {
        Record {
            media_type: media_type.to_owned(),
            size,
            created: now,
            updated: now,
            artifact_type: parsed.artifact_type,
            config_media_type: parsed.config.map(|c| c.media_type),
            references: parsed.references,
            subject: parsed.subject.map(|s| s.digest),
            annotations: parsed.annotations,
            deleted: None,
        }
    }

    /// The manifests an index lists; none for an image.
    pub(crate) fn children(&self) -> &[Descriptor] {
        match ManifestKind::of_media_type(&self.media_type) {
            Ok(ManifestKind::Index) => &self.references,
            _ => &[],
        }
    }

    /// The descriptor a referrers listing shows for this manifest (P8): the artifact type
    /// falls back to the config media type.
    pub(crate) fn descriptor(&self, digest: Digest) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest,
            size: self.size,
            artifact_type: self
                .artifact_type
                .clone()
                .or_else(|| self.config_media_type.clone()),
            annotations: self.annotations.clone(),
        }
    }

    pub(crate) fn into_manifest(self, digest: Digest, tags: Vec<String>) -> Manifest {
        Manifest {
            digest,
            media_type: self.media_type,
            size: self.size,
            created: self.created,
            updated: self.updated,
            tags,
            artifact_type: self.artifact_type,
            references: self.references,
            subject: self.subject,
            annotations: self.annotations,
        }
    }
}

/// A manifest's metadata, as listings and look-ups return it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The digest of the exact bytes.
    pub digest: Digest,
    /// The media type.
    pub media_type: String,
    /// The size of the body in bytes.
    pub size: u64,
    /// When it was first pushed into this repository.
    pub created: Timestamp,
    /// When it was last pushed, tagged or untagged.
    pub updated: Timestamp,
    /// Its tags, in lexical order.
    pub tags: Vec<String>,
    /// The `artifactType` of the body, if any.
    pub artifact_type: Option<String>,
    /// Config then layers for an image; child manifests for an index.
    pub references: Vec<Descriptor>,
    /// The manifest this one refers to (it is then a referrer).
    pub subject: Option<Digest>,
    /// The body's annotations.
    pub annotations: BTreeMap<String, String>,
}

/// A pulled manifest: the exact bytes as pushed, with their media type and digest (P6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledManifest {
    /// The digest of `body`.
    pub digest: Digest,
    /// The media type it was pushed with.
    pub media_type: String,
    /// The exact bytes.
    pub body: Bytes,
}

/// Computes the digest a pushed body is stored under: with the algorithm of the digest the push
/// names, checked against it, or sha256 for a push by tag (P3).
pub(crate) fn body_digest(reference: &Reference, body: &[u8]) -> Result<Digest> {
    match reference {
        Reference::Digest(expected) => {
            let actual = expected.algorithm().digest(body);
            if &actual != expected {
                return Err(Error::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
            Ok(actual)
        }
        Reference::Tag(_) => Ok(Algorithm::Sha256.digest(body)),
    }
}

/// A validated push, ready to be stored: parsing and hashing happen before the write
/// transaction begins, so other writers do not wait for them.
struct Prepared<'a> {
    digest: Digest,
    tag: Option<String>,
    media_type: &'a str,
    body: &'a [u8],
    parsed: Parsed,
}

fn prepare<'a>(reference: &str, media_type: &'a str, body: &'a [u8]) -> Result<Prepared<'a>> {
    let reference = Reference::parse(reference)?;
    let parsed = parse(media_type, body)?;
    let digest = body_digest(&reference, body)?;
    let tag = match reference {
        Reference::Tag(t) => Some(t),
        Reference::Digest(_) => None,
    };
    Ok(Prepared {
        digest,
        tag,
        media_type,
        body,
        parsed,
    })
}

impl Batch<'_> {
    /// Pushes a manifest by tag or digest; see [`Repository::push_manifest`].
    pub fn push_manifest(
        &mut self,
        repo: &Repository,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Result<Digest> {
        let prepared = prepare(reference, media_type, body)?;
        self.store_manifest(repo.name(), prepared)
    }

    fn store_manifest(&mut self, repo: &str, p: Prepared<'_>) -> Result<Digest> {
        let digest = p.digest.as_str();
        match &p.tag {
            Some(tag) => self.check_tag_move(repo, tag, &p.digest)?,
            None => self.check_lock(repo, &Item::Repository, Need::Write)?,
        }
        // The bin first: a push of a tombstone is answered "restore it" whatever it references.
        let existing = self.record(repo, digest)?;
        if existing.as_ref().is_some_and(|r| r.deleted.is_some()) {
            return Err(Error::ManifestSoftDeleted {
                repository: repo.to_owned(),
                digest: p.digest,
            });
        }
        match p.parsed.kind {
            ManifestKind::Image => {
                for blob in &p.parsed.references {
                    let size = linked_size(&self.t.blob_links, &self.t.blobs, repo, &blob.digest)?;
                    check_size(blob, size)?;
                    self.journal_blob(blob.digest.as_str())?;
                }
            }
            ManifestKind::Index => {
                for child in &p.parsed.references {
                    check_size(child, self.live_record(repo, &child.digest)?.size)?;
                }
            }
        }
        if existing.is_some() {
            touch(self, repo, digest)?;
        } else {
            let record = Record::new(p.media_type, p.body.len() as u64, self.now, p.parsed);
            self.t.manifest_bodies.insert((repo, digest), p.body)?;
            self.put_record(repo, digest, &record)?;
            self.index_live(repo, digest, &record)?;
        }
        self.ensure_repository(repo)?;
        if let Some(tag) = &p.tag {
            self.move_tag(repo, tag, &p.digest, TagCause::Push)?;
        }
        Ok(p.digest)
    }

    /// The record of manifest `digest`, live or in the bin.
    pub(crate) fn record(&self, repo: &str, digest: &str) -> Result<Option<Record>> {
        self.t
            .manifests
            .get((repo, digest))?
            .map(|v| decode("manifests", v.value()))
            .transpose()
    }

    /// The record of live manifest `digest`, else [`Error::ManifestUnknown`].
    pub(crate) fn live_record(&self, repo: &str, digest: &Digest) -> Result<Record> {
        match self.record(repo, digest.as_str())? {
            Some(record) if record.deleted.is_none() => Ok(record),
            _ => Err(Error::ManifestUnknown {
                repository: repo.to_owned(),
                reference: digest.to_string(),
            }),
        }
    }

    pub(crate) fn put_record(&mut self, repo: &str, digest: &str, record: &Record) -> Result<()> {
        self.t
            .manifests
            .insert((repo, digest), encode(record).as_slice())?;
        Ok(())
    }
}

/// A descriptor must state the size of what it names (OCI image spec, "Descriptor").
fn check_size(descriptor: &Descriptor, stored: u64) -> Result<()> {
    if descriptor.size == stored {
        return Ok(());
    }
    Err(Error::InvalidManifest {
        reason: format!(
            "descriptor of {} states {} bytes; it has {stored}",
            descriptor.digest, descriptor.size
        ),
    })
}

/// Marks a live manifest as updated now, after a push or a change to its tags, keeping the
/// time index and the index of untagged manifests in step.
pub(crate) fn touch(batch: &mut Batch<'_>, repo: &str, digest: &str) -> Result<()> {
    let manifests = &mut batch.t.manifests;
    let mut record: Record = match manifests.get((repo, digest))? {
        Some(v) => decode("manifests", v.value())?,
        None => return Ok(()),
    };
    if record.deleted.is_some() {
        return Ok(());
    }
    let before = record.updated.as_nanos();
    if record.updated != batch.now {
        let by_time = &mut batch.t.manifests_by_time;
        by_time.remove((repo, before, digest))?;
        by_time.insert((repo, batch.now.as_nanos(), digest), ())?;
        record.updated = batch.now;
        manifests.insert((repo, digest), encode(&record).as_slice())?;
    }
    batch.t.untagged.remove((before, repo, digest))?;
    index_untagged(batch, repo, digest, &record)
}

/// Adds a live manifest to the index of untagged manifests if no tag points at it (R1).
pub(crate) fn index_untagged(
    batch: &mut Batch<'_>,
    repo: &str,
    digest: &str,
    record: &Record,
) -> Result<()> {
    if !has_tags(&batch.t.manifest_tags, repo, digest)? {
        batch
            .t
            .untagged
            .insert((record.updated.as_nanos(), repo, digest), ())?;
    }
    Ok(())
}

/// Whether any live tag points at manifest `digest`.
pub(crate) fn has_tags(
    manifest_tags: &impl ReadableTable<(&'static str, &'static str, &'static str), ()>,
    repo: &str,
    digest: &str,
) -> Result<bool> {
    match manifest_tags.range((repo, digest, "")..)?.next() {
        Some(row) => {
            let (key, _) = row?;
            let (r, d, _) = key.value();
            Ok(r == repo && d == digest)
        }
        None => Ok(false),
    }
}

/// Which manifests [`Repository::manifests`] lists, and in what order (P7).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManifestQuery {
    /// Newest first instead of oldest first (by last update).
    pub descending: bool,
    /// Only manifests last updated strictly before this time.
    pub updated_before: Option<Timestamp>,
    /// Only manifests that no tag points at.
    pub untagged: bool,
    /// At most this many.
    pub limit: Option<usize>,
}

impl Repository {
    /// Pushes a manifest under `reference`, a tag or a digest, with its declared media type
    /// (P3–P5), and returns its digest.
    ///
    /// The exact bytes are stored; the digest is computed over them (sha256, or the algorithm
    /// of the digest pushed by) and must equal the digest pushed by. Every config and layer
    /// must be linked to this repository and every child of an index must be a manifest of it;
    /// the `subject` need not exist. Pushing by tag moves the tag.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use ocistore::{Registry, manifest::OCI_MANIFEST};
    /// let repo = Registry::open(dir.path())?.repository("app")?;
    /// let config = repo.put_blob_sha256(b"{}")?;
    /// let body = format!(
    ///     r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[]}}"#
    /// );
    /// let digest = repo.push_manifest("v1", OCI_MANIFEST, body.as_bytes())?;
    /// let pulled = repo.pull("v1")?;
    /// assert_eq!((pulled.digest, &pulled.body[..]), (digest, body.as_bytes()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn push_manifest(&self, reference: &str, media_type: &str, body: &[u8]) -> Result<Digest> {
        let prepared = prepare(reference, media_type, body)?;
        self.registry()
            .batch(|b| b.store_manifest(self.name(), prepared))
    }

    /// Pulls a manifest by tag or digest: its exact bytes, media type and digest (P6).
    pub fn pull(&self, reference: &str) -> Result<PulledManifest> {
        let reference = Reference::parse(reference)?;
        let txn = self.registry().inner.db.begin_read()?;
        let digest = self.resolve_reference(&txn, &reference)?;
        let record = self.record(&txn, &digest)?;
        let body = txn
            .open_table(MANIFEST_BODIES)?
            .get((self.name(), digest.as_str()))?
            .map(|v| Bytes::copy_from_slice(v.value()))
            .ok_or_else(|| Error::Corrupt {
                table: "manifest_bodies",
                reason: format!("no body for {digest}"),
            })?;
        Ok(PulledManifest {
            digest,
            media_type: record.media_type,
            body,
        })
    }

    /// The metadata of a manifest, by tag or digest.
    pub fn manifest(&self, reference: &str) -> Result<Manifest> {
        let reference = Reference::parse(reference)?;
        let txn = self.registry().inner.db.begin_read()?;
        let digest = self.resolve_reference(&txn, &reference)?;
        let record = self.record(&txn, &digest)?;
        let tags = keys_under2(
            &txn.open_table(MANIFEST_TAGS)?,
            self.name(),
            digest.as_str(),
        )?;
        Ok(record.into_manifest(digest, tags))
    }

    /// Manifest metadata ordered by last update, filtered by `query` (P7).
    pub fn manifests(&self, query: &ManifestQuery) -> Result<Vec<Manifest>> {
        let txn = self.registry().inner.db.begin_read()?;
        let name = self.name();
        let by_time = txn.open_table(MANIFESTS_BY_TIME)?;
        let manifest_tags = txn.open_table(MANIFEST_TAGS)?;
        let end = query.updated_before.map_or(u64::MAX, Timestamp::as_nanos);
        let range = by_time.range((name, 0, "")..(name, end, ""))?;
        let rows: Box<dyn Iterator<Item = _>> = if query.descending {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        let mut out = Vec::new();
        for row in rows {
            if Some(out.len()) == query.limit {
                break;
            }
            let (key, _) = row?;
            let digest = Digest::stored(key.value().2)?;
            let tags = keys_under2(&manifest_tags, name, digest.as_str())?;
            if query.untagged && !tags.is_empty() {
                continue;
            }
            out.push(self.record(&txn, &digest)?.into_manifest(digest, tags));
        }
        Ok(out)
    }

    /// Descriptors of the manifests whose `subject` is `digest`, optionally only those of one
    /// artifact type (P8). The subject itself need not exist.
    pub fn referrers(
        &self,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let txn = self.registry().inner.db.begin_read()?;
        let referrers = keys_under2(&txn.open_table(REFERRERS)?, self.name(), digest.as_str())?;
        let mut out = Vec::new();
        for referrer in referrers {
            let referrer = Digest::stored(&referrer)?;
            let descriptor = self.record(&txn, &referrer)?.descriptor(referrer);
            if artifact_type.is_none() || descriptor.artifact_type.as_deref() == artifact_type {
                out.push(descriptor);
            }
        }
        Ok(out)
    }

    fn resolve_reference(&self, txn: &ReadTransaction, reference: &Reference) -> Result<Digest> {
        match reference {
            Reference::Tag(tag) => resolve_in(&txn.open_table(TAGS)?, self.name(), tag),
            Reference::Digest(d) => Ok(d.clone()),
        }
    }

    /// The record of live manifest `digest`: a tombstone is as unknown as a purged one (S2).
    fn record(&self, txn: &ReadTransaction, digest: &Digest) -> Result<Record> {
        let record: Option<Record> = txn
            .open_table(MANIFESTS)?
            .get((self.name(), digest.as_str()))?
            .map(|v| decode("manifests", v.value()))
            .transpose()?;
        match record {
            Some(record) if record.deleted.is_none() => Ok(record),
            _ => Err(Error::ManifestUnknown {
                repository: self.name().to_owned(),
                reference: digest.to_string(),
            }),
        }
    }
}
