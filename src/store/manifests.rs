//! Manifests as stored: the record kept beside the exact bytes, the manifest lifecycle (stored,
//! touched, into the bin and out, purged) and the indexes that only hold live manifests
//! (docs/spec.md: P3–P8, R1). Parsing is `oci`'s.

use std::collections::BTreeMap;

use bytes::Bytes;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::Tx;
use super::tables::{Readable, decode, encode, keys_under2};
use crate::oci::{Descriptor, ManifestKind, Parsed};
use crate::values::{Digest, Error, Result, Timestamp};

/// What is kept of a manifest besides its bytes; one row of the `manifests` table. Times are
/// stored as nanoseconds, whatever the public form of a `Timestamp`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub media_type: String,
    pub size: u64,
    #[serde(with = "crate::values::nanos")]
    pub created: Timestamp,
    #[serde(with = "crate::values::nanos")]
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
    #[serde(default, with = "crate::values::nanos::option")]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
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
///
/// Its serde form holds the body as a JSON string: a manifest is UTF-8 JSON (N4), and the
/// string decodes back to the exact bytes, so the digest still holds. To serve a manifest,
/// send `body` itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PulledManifest {
    /// The digest of `body`.
    pub digest: Digest,
    /// The media type it was pushed with.
    pub media_type: String,
    /// The exact bytes.
    #[serde(with = "crate::values::utf8")]
    pub body: Bytes,
}

/// Which manifests [`Repository::manifests`](crate::Repository::manifests) lists, and in what order (P7).
/// The default lists them all, oldest first.
///
/// ```
/// use ocistore::ManifestQuery;
/// let newest_untagged = ManifestQuery::default().descending(true).untagged(true).limit(10);
/// assert_eq!(newest_untagged.limit, Some(10));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
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

impl ManifestQuery {
    /// Newest first (`true`) or oldest first.
    #[must_use]
    pub fn descending(mut self, descending: bool) -> ManifestQuery {
        self.descending = descending;
        self
    }

    /// Only manifests last updated strictly before `t`.
    #[must_use]
    pub fn updated_before(mut self, t: Timestamp) -> ManifestQuery {
        self.updated_before = Some(t);
        self
    }

    /// Only manifests that no tag points at (`true`), or all.
    #[must_use]
    pub fn untagged(mut self, untagged: bool) -> ManifestQuery {
        self.untagged = untagged;
        self
    }

    /// At most `n` manifests.
    #[must_use]
    pub fn limit(mut self, n: usize) -> ManifestQuery {
        self.limit = Some(n);
        self
    }
}

/// The record of manifest `digest` of `repo`, live or in the bin.
pub(crate) fn record(r: &impl Readable, repo: &str, digest: &str) -> Result<Option<Record>> {
    r.manifests()?
        .get((repo, digest))?
        .map(|v| decode("manifests", v.value()))
        .transpose()
}

/// The record of live manifest `digest`: a tombstone is as unknown as a purged one (S2).
pub(crate) fn live_record(r: &impl Readable, repo: &str, digest: &Digest) -> Result<Record> {
    match record(r, repo, digest.as_str())? {
        Some(record) if record.deleted.is_none() => Ok(record),
        _ => Err(Error::ManifestUnknown {
            repository: repo.to_owned(),
            reference: digest.to_string(),
        }),
    }
}

/// The exact bytes of manifest `digest`, which has a record.
pub(crate) fn body(r: &impl Readable, repo: &str, digest: &Digest) -> Result<Bytes> {
    r.manifest_bodies()?
        .get((repo, digest.as_str()))?
        .map(|v| Bytes::copy_from_slice(v.value()))
        .ok_or_else(|| Error::Corrupt {
            table: "manifest_bodies",
            reason: format!("no body for {digest}"),
        })
}

/// The metadata of live manifest `digest`, with its tags.
pub(crate) fn manifest(r: &impl Readable, repo: &str, digest: Digest) -> Result<Manifest> {
    let record = live_record(r, repo, &digest)?;
    let tags = keys_under2(r.manifest_tags()?, repo, digest.as_str())?;
    Ok(record.into_manifest(digest, tags))
}

/// Live manifests of `repo` ordered by last update, filtered by `query` (P7).
pub(crate) fn list(r: &impl Readable, name: &str, query: &ManifestQuery) -> Result<Vec<Manifest>> {
    let manifest_tags = r.manifest_tags()?;
    let end = query.updated_before.map_or(u64::MAX, Timestamp::as_nanos);
    let range = r
        .manifests_by_time()?
        .range((name, 0, "")..(name, end, ""))?;
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
        let tags = keys_under2(manifest_tags, name, digest.as_str())?;
        if query.untagged && !tags.is_empty() {
            continue;
        }
        out.push(live_record(r, name, &digest)?.into_manifest(digest, tags));
    }
    Ok(out)
}

/// Descriptors of the live manifests of `repo` whose `subject` is `digest`, optionally only
/// those of one artifact type (P8).
pub(crate) fn referrers(
    r: &impl Readable,
    repo: &str,
    digest: &Digest,
    artifact_type: Option<&str>,
) -> Result<Vec<Descriptor>> {
    let mut out = Vec::new();
    for referrer in keys_under2(r.referrers()?, repo, digest.as_str())? {
        let referrer = Digest::stored(&referrer)?;
        let descriptor = live_record(r, repo, &referrer)?.descriptor(referrer);
        if artifact_type.is_none() || descriptor.artifact_type.as_deref() == artifact_type {
            out.push(descriptor);
        }
    }
    Ok(out)
}

/// Whether any live tag points at manifest `digest`.
pub(crate) fn has_tags(r: &impl Readable, repo: &str, digest: &str) -> Result<bool> {
    match r.manifest_tags()?.range((repo, digest, "")..)?.next() {
        Some(row) => {
            let (key, _) = row?;
            let (r, d, _) = key.value();
            Ok(r == repo && d == digest)
        }
        None => Ok(false),
    }
}

impl Tx<'_> {
    /// The record of manifest `digest`, live or in the bin.
    pub(crate) fn record(&self, repo: &str, digest: &str) -> Result<Option<Record>> {
        record(&self.t, repo, digest)
    }

    /// The record of live manifest `digest`, else [`Error::ManifestUnknown`].
    pub(crate) fn live_record(&self, repo: &str, digest: &Digest) -> Result<Record> {
        live_record(&self.t, repo, digest)
    }

    /// Stores a new live manifest: its exact bytes, its record, its place in the indexes.
    pub(crate) fn insert_manifest(
        &mut self,
        repo: &str,
        digest: &str,
        body: &[u8],
        record: &Record,
    ) -> Result<()> {
        self.t.manifest_bodies.insert((repo, digest), body)?;
        self.put_record(repo, digest, record)?;
        self.index_live(repo, digest, record)
    }

    pub(crate) fn put_record(&mut self, repo: &str, digest: &str, record: &Record) -> Result<()> {
        self.t
            .manifests
            .insert((repo, digest), encode(record).as_slice())?;
        Ok(())
    }

    /// Marks a live manifest as updated now, after a push or a change to its tags, keeping the
    /// time index and the index of untagged manifests in step.
    pub(crate) fn touch(&mut self, repo: &str, digest: &str) -> Result<()> {
        let manifests = &mut self.t.manifests;
        let mut record: Record = match manifests.get((repo, digest))? {
            Some(v) => decode("manifests", v.value())?,
            None => return Ok(()),
        };
        if record.deleted.is_some() {
            return Ok(());
        }
        let before = record.updated.as_nanos();
        if record.updated != self.now {
            let by_time = &mut self.t.manifests_by_time;
            by_time.remove((repo, before, digest))?;
            by_time.insert((repo, self.now.as_nanos(), digest), ())?;
            record.updated = self.now;
            manifests.insert((repo, digest), encode(&record).as_slice())?;
        }
        self.t.untagged.remove((before, repo, digest))?;
        self.index_untagged(repo, digest, &record)
    }

    /// Adds a live manifest to the index of untagged manifests if no tag points at it (R1).
    pub(crate) fn index_untagged(
        &mut self,
        repo: &str,
        digest: &str,
        record: &Record,
    ) -> Result<()> {
        if !has_tags(&self.t, repo, digest)? {
            self.t
                .untagged
                .insert((record.updated.as_nanos(), repo, digest), ())?;
        }
        Ok(())
    }

    /// Adds a live manifest to the indexes that only hold live ones: time order, referrers,
    /// children and untagged manifests.
    pub(crate) fn index_live(&mut self, repo: &str, digest: &str, record: &Record) -> Result<()> {
        self.t
            .manifests_by_time
            .insert((repo, record.updated.as_nanos(), digest), ())?;
        if let Some(subject) = &record.subject {
            self.t
                .referrers
                .insert((repo, subject.as_str(), digest), ())?;
        }
        let children = &mut self.t.children;
        for child in record.children() {
            children.insert((repo, child.digest.as_str(), digest), ())?;
        }
        self.index_untagged(repo, digest, record)
    }

    /// Takes a manifest out of the live-only indexes. The children of an index count as
    /// updated: they are no longer held by it (R2), so the retention policy's count of their
    /// untagged time starts now.
    pub(crate) fn unindex_live(&mut self, repo: &str, digest: &str, record: &Record) -> Result<()> {
        self.t
            .manifests_by_time
            .remove((repo, record.updated.as_nanos(), digest))?;
        if let Some(subject) = &record.subject {
            self.t.referrers.remove((repo, subject.as_str(), digest))?;
        }
        for child in record.children() {
            self.t
                .children
                .remove((repo, child.digest.as_str(), digest))?;
            self.touch(repo, child.digest.as_str())?;
        }
        self.t
            .untagged
            .remove((record.updated.as_nanos(), repo, digest))?;
        Ok(())
    }
}
