//! Tags: the grammar (SPEC N2), moving a tag (P5), resolving and listing (P7).

use std::sync::LazyLock;

use redb::{ReadableDatabase, ReadableTable};
use regex::Regex;

use crate::batch::Batch;
use crate::clock::Timestamp;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::touch;
use crate::registry::Page;
use crate::repository::Repository;
use crate::tables::{MANIFEST_TAGS, MANIFESTS, TAGS, page_under};

static TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\A[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}\z").expect("valid regex"));

/// Checks a tag against the OCI grammar (N2).
pub(crate) fn validate_tag(tag: &str) -> Result<()> {
    if TAG.is_match(tag) {
        Ok(())
    } else {
        Err(Error::InvalidTag {
            tag: tag.to_owned(),
        })
    }
}

/// A live tag: its name, the manifest it points at, and when it was last moved there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// The tag's name.
    pub name: String,
    /// The manifest it points at.
    pub digest: Digest,
    /// When it was pushed or moved to that manifest.
    pub updated: Timestamp,
}

impl Batch<'_> {
    /// Points `tag` at manifest `digest` of `repo`, which must exist. A manifest the tag
    /// leaves stays, untagged if no other tag points at it (P5).
    pub fn tag(&mut self, repo: &Repository, tag: &str, digest: &Digest) -> Result<()> {
        validate_tag(tag)?;
        if self
            .txn
            .open_table(MANIFESTS)?
            .get((repo.name(), digest.as_str()))?
            .is_none()
        {
            return Err(Error::ManifestUnknown {
                repository: repo.name().to_owned(),
                reference: digest.to_string(),
            });
        }
        self.move_tag(repo.name(), tag, digest)
    }

    /// Moves a validated tag onto an existing manifest; both manifests count as updated.
    pub(crate) fn move_tag(&mut self, repo: &str, tag: &str, digest: &Digest) -> Result<()> {
        let previous = {
            let mut tags = self.txn.open_table(TAGS)?;
            let previous = tags.get((repo, tag))?.map(|v| v.value().0.to_owned());
            if previous.as_deref() == Some(digest.as_str()) {
                return Ok(());
            }
            tags.insert((repo, tag), (digest.as_str(), self.now.as_nanos()))?;
            previous
        };
        let mut manifest_tags = self.txn.open_table(MANIFEST_TAGS)?;
        if let Some(old) = &previous {
            manifest_tags.remove((repo, old.as_str(), tag))?;
        }
        manifest_tags.insert((repo, digest.as_str(), tag), ())?;
        drop(manifest_tags);
        if let Some(old) = previous {
            touch(self, repo, &old)?;
        }
        touch(self, repo, digest.as_str())
    }
}

impl Repository {
    /// Points `tag` at the manifest `digest`, which must already be in this repository (P5).
    pub fn tag(&self, tag: &str, digest: &Digest) -> Result<()> {
        self.registry().batch(|b| b.tag(self, tag, digest))
    }

    /// The manifest digest `tag` points at.
    pub fn resolve(&self, tag: &str) -> Result<Digest> {
        validate_tag(tag)?;
        let txn = self.registry().inner.db.begin_read()?;
        resolve_in(&txn.open_table(TAGS)?, self.name(), tag)
    }

    /// Live tags in lexical order, paginated the OCI way (P7).
    pub fn tags(&self, page: &Page) -> Result<Vec<Tag>> {
        if let Some(last) = &page.last {
            validate_tag(last)?;
        }
        let txn = self.registry().inner.db.begin_read()?;
        page_under(
            &txn.open_table(TAGS)?,
            self.name(),
            page,
            |name, (digest, updated)| {
                Ok(Tag {
                    name: name.to_owned(),
                    digest: Digest::stored(digest)?,
                    updated: Timestamp::from_nanos(updated),
                })
            },
        )
    }
}

pub(crate) fn resolve_in(
    tags: &impl ReadableTable<(&'static str, &'static str), (&'static str, u64)>,
    repo: &str,
    tag: &str,
) -> Result<Digest> {
    match tags.get((repo, tag))? {
        Some(row) => Digest::stored(row.value().0),
        None => Err(Error::ManifestUnknown {
            repository: repo.to_owned(),
            reference: tag.to_owned(),
        }),
    }
}
