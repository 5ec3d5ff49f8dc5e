//! Pushing a manifest (docs/spec.md: P3–P5, S13, L2): the checks a parsed push must pass against what
//! the repository holds, then the manifest lifecycle's store.

use super::Core;
use crate::oci::{Descriptor, ManifestKind, Prepared};
use crate::store::Tx;
use crate::store::bin::BinnedManifests;
use crate::store::links::linked_size;
use crate::store::locks::Need;
use crate::store::manifests::Record;
use crate::store::tags::TagCause;
use crate::values::{Digest, Error, Item, Result};

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

/// What a manifest push did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Pushed {
    /// The manifest's digest.
    pub digest: Digest,
    /// Whether the manifest was new to the repository; false when it was stored already (a
    /// push is idempotent).
    pub created: bool,
    /// The manifest it refers to, its `subject` (P8): a registry answers with it in the
    /// `OCI-Subject` header.
    pub subject: Option<Digest>,
    /// For a push by tag, the manifest the tag pointed at before (the pushed one itself when
    /// the tag was already there); none for a new tag or a push by digest.
    pub previous: Option<Digest>,
}

impl Tx<'_> {
    /// Stores a prepared push into `repo` (P3–P5, S13), checking its references and locks.
    pub(crate) fn push_manifest(&mut self, repo: &str, p: Prepared<'_>) -> Result<Pushed> {
        let digest = p.digest.as_str();
        match &p.tag {
            Some(tag) => self.check_tag_move(repo, tag, &p.digest)?,
            None => self.check_lock(repo, &Item::Repository, Need::Write)?,
        }
        // The bin first: a push of a tombstone is answered "restore it" whatever it references.
        let mut existing = self.record(repo, digest)?;
        if existing.as_ref().is_some_and(|r| r.deleted.is_some()) {
            // S3: an expired tombstone is gone: purged here, and the push is of a new manifest.
            if !BinnedManifests::load(&self.t, repo, self.now)?.expired(digest) {
                return Err(Error::ManifestSoftDeleted {
                    repository: repo.to_owned(),
                    digest: p.digest,
                });
            }
            self.purge_binned_manifest(repo, digest)?;
            existing = None;
        }
        match p.parsed.kind {
            ManifestKind::Image => {
                for blob in &p.parsed.references {
                    let size = linked_size(&self.t, repo, &blob.digest)?;
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
        let subject = p.parsed.subject.as_ref().map(|s| s.digest.clone());
        if existing.is_some() {
            self.touch(repo, digest)?;
        } else {
            let record = Record::new(p.media_type, p.body.len() as u64, self.now, p.parsed);
            self.insert_manifest(repo, digest, p.body, &record)?;
        }
        self.ensure_repository(repo)?;
        let previous = match &p.tag {
            Some(tag) => self.move_tag(repo, tag, &p.digest, TagCause::Push)?,
            None => None,
        };
        Ok(Pushed {
            digest: p.digest,
            created: existing.is_none(),
            subject,
            previous,
        })
    }
}

/// Parses a push of `body` under `reference` outside any transaction, then stores it in one.
pub(crate) fn push(
    core: &Core,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> Result<Pushed> {
    let prepared = crate::oci::prepare(reference, media_type, body)?;
    core.write_adding(|tx| tx.push_manifest(repo, prepared))
}
