//! Deleting: untag, a manifest by tag or digest with its referrers, a repository (SPEC
//! D1–D6). With the soft delete policy on, what is deleted goes to the recycle bin; with it
//! off, it is gone. No delete touches blob bytes: that is the collector's job.

use redb::ReadableTable;

use crate::batch::Batch;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::Reference;
use crate::registry::Registry;
use crate::repository::{Repository, repository_record, repository_tombstone};
use crate::tables::{encode, keys_under2};
use crate::tag::{TagCause, resolve_in, validate_tag};

impl Batch<'_> {
    /// Removes a tag; the manifest stays (D1). See [`Repository::untag`].
    pub fn untag(&mut self, repo: &Repository, tag: &str) -> Result<()> {
        validate_tag(tag)?;
        self.drop_tag(repo.name(), tag, TagCause::Untag).map(drop)
    }

    /// Deletes a manifest by tag or digest; see [`Repository::delete_manifest`].
    pub fn delete_manifest(&mut self, repo: &Repository, reference: &str) -> Result<Vec<Digest>> {
        let name = repo.name();
        let digest = match Reference::parse(reference)? {
            Reference::Tag(tag) => resolve_in(&self.t.tags, name, &tag)?,
            Reference::Digest(digest) => digest,
        };
        self.live_record(name, &digest)?;
        // The manifest and its live referrers, recursively (D5).
        let mut doomed = vec![digest];
        let mut next = 0;
        while let Some(subject) = doomed.get(next) {
            let referrers = keys_under2(&self.t.referrers, name, subject.as_str())?;
            for referrer in referrers {
                let referrer = Digest::stored(&referrer)?;
                if !doomed.contains(&referrer) {
                    doomed.push(referrer);
                }
            }
            next += 1;
        }
        let children = &self.t.children;
        for digest in &doomed {
            for index in keys_under2(children, name, digest.as_str())? {
                if !doomed.iter().any(|d| d.as_str() == index) {
                    return Err(Error::ManifestReferenced {
                        repository: name.to_owned(),
                        digest: digest.clone(),
                        index: Digest::stored(&index)?,
                    });
                }
            }
        }
        for digest in &doomed {
            self.drop_tags_of(name, digest)?;
            self.delete_untagged_manifest(name, digest)?;
        }
        Ok(doomed)
    }

    /// Deletes a repository with all its manifests and tags (D4); see
    /// [`Registry::delete_repository`].
    pub fn delete_repository(&mut self, repo: &Repository) -> Result<()> {
        let name = repo.name();
        let Some(mut record) =
            repository_record(&self.t.repositories, name)?.filter(|r| r.deleted.is_none())
        else {
            return Err(Error::RepositoryUnknown {
                name: name.to_owned(),
            });
        };
        if !self.soft_delete_policy()?.enabled {
            return self.purge_repository(name);
        }
        let live: Vec<Digest> = {
            let by_time = &self.t.manifests_by_time;
            let mut out = Vec::new();
            for row in by_time.range((name, 0, "")..=(name, u64::MAX, "\u{10ffff}"))? {
                out.push(Digest::stored(row?.0.value().2)?);
            }
            out
        };
        for digest in &live {
            self.drop_tags_of(name, digest)?;
            self.delete_untagged_manifest(name, digest)?;
        }
        record.deleted = Some(self.now);
        self.t
            .repositories
            .insert(name, encode(&record).as_slice())?;
        self.t
            .tombstones
            .insert(repository_tombstone(name, self.now), ())?;
        Ok(())
    }

    /// Deletes every live tag of a manifest that is being deleted.
    fn drop_tags_of(&mut self, repo: &str, digest: &Digest) -> Result<()> {
        let tags = keys_under2(&self.t.manifest_tags, repo, digest.as_str())?;
        for tag in tags {
            self.drop_tag(repo, &tag, TagCause::Delete)?;
        }
        Ok(())
    }
}

impl Repository {
    /// Removes `tag`; the manifest and its blobs stay (D1). With the soft delete policy on,
    /// the tag goes to the recycle bin.
    pub fn untag(&self, tag: &str) -> Result<()> {
        self.registry().batch(|b| b.untag(self, tag))
    }

    /// Deletes the manifest `reference` names — a tag (D2) or a digest (D3) — with every tag
    /// of it and its referrers, recursively (D5), and returns the digests deleted.
    ///
    /// Refused with [`Error::ManifestReferenced`] while a live index of this repository lists
    /// the manifest. With the soft delete policy on, all of it goes to the recycle bin.
    pub fn delete_manifest(&self, reference: &str) -> Result<Vec<Digest>> {
        self.registry()
            .batch(|b| b.delete_manifest(self, reference))
    }
}

impl Registry {
    /// Deletes repository `name` with all its manifests and tags (D4). With the soft delete
    /// policy on, the repository and everything in it go to the recycle bin; with it off, they
    /// are gone, tombstones included.
    pub fn delete_repository(&self, name: &str) -> Result<()> {
        let repo = self.repository(name)?;
        self.batch(|b| b.delete_repository(&repo))
    }
}
