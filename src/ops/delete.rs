//! Deleting: untag, a manifest by tag or digest with its referrers, a repository (docs/spec.md:
//! D1–D6). With the soft delete policy on, what is deleted goes to the recycle bin; with it
//! off, it is gone. No delete touches blob bytes: that is the collector's job.

use std::collections::HashSet;

use redb::ReadableTable;

use crate::oci::Reference;
use crate::store::Tx;
use crate::store::bin::BinnedManifests;
use crate::store::locks::{Need, locked, locks_of};
use crate::store::repositories::repository_record;
use crate::store::tables::keys_under2;
use crate::store::tags::{TagCause, current, resolve};
use crate::values::{Digest, Error, Item, Result, validate_tag};

impl Tx<'_> {
    /// Removes a tag; the manifest stays (D1). See [`Repository::untag`](crate::Repository::untag).
    pub(crate) fn untag(&mut self, name: &str, tag: &str) -> Result<()> {
        validate_tag(tag)?;
        if current(&self.t, name, tag)?.is_some() {
            self.check_lock(name, &Item::Tag(tag.to_owned()), Need::Delete)?;
        }
        self.drop_tag(name, tag, TagCause::Untag).map(drop)
    }

    /// Deletes a manifest by tag or digest; see
    /// [`Repository::delete_manifest`](crate::Repository::delete_manifest).
    pub(crate) fn delete_manifest(&mut self, name: &str, reference: &str) -> Result<Vec<Digest>> {
        let digest = match Reference::parse(reference)? {
            Reference::Tag(tag) => resolve(&self.t, name, &tag)?,
            Reference::Digest(digest) => digest,
        };
        self.live_record(name, &digest)?;
        let doomed = self.doomed_by(name, vec![digest])?;
        if let Some(refusal) = self.refusal(name, &doomed)? {
            return Err(refusal);
        }
        self.remove_manifests(name, &doomed, TagCause::Delete)?;
        Ok(doomed)
    }

    /// What deleting live manifests `roots` takes along: them and their live referrers,
    /// recursively (D5), roots first.
    pub(crate) fn doomed_by(&self, repo: &str, roots: Vec<Digest>) -> Result<Vec<Digest>> {
        let mut doomed = roots;
        let mut seen: HashSet<Digest> = doomed.iter().cloned().collect();
        let mut next = 0;
        while let Some(subject) = doomed.get(next) {
            for referrer in keys_under2(&self.t.referrers, repo, subject.as_str())? {
                let referrer = Digest::stored(&referrer)?;
                if seen.insert(referrer.clone()) {
                    doomed.push(referrer);
                }
            }
            next += 1;
        }
        Ok(doomed)
    }

    /// The bin of `repo` when deletes purge (the soft delete policy is off): an index in the
    /// bin must keep what it lists (S17). `None` when deletes go to the bin.
    pub(crate) fn bin_if_purging(&self, repo: &str) -> Result<Option<BinnedManifests>> {
        if self.soft_delete_policy()?.enabled {
            return Ok(None);
        }
        BinnedManifests::load(&self.t, repo, self.now).map(Some)
    }

    /// Why manifests `doomed` cannot be deleted together, if they cannot: a live index outside
    /// them lists one (D5) or, when deletes purge, an index in the bin (S17); or a lock
    /// protects the repository, one of them or one of their tags (L1).
    pub(crate) fn refusal(&self, repo: &str, doomed: &[Digest]) -> Result<Option<Error>> {
        let bin = self.bin_if_purging(repo)?;
        for digest in doomed {
            let live = keys_under2(&self.t.children, repo, digest.as_str())?;
            let live = live
                .iter()
                .find(|index| !doomed.iter().any(|d| d.as_str() == index.as_str()));
            let binned = bin
                .as_ref()
                .and_then(|bin| bin.indexes_listing(digest.as_str(), false).first().copied());
            if let Some(index) = live.map(String::as_str).or(binned) {
                return Ok(Some(Error::ManifestReferenced {
                    repository: repo.to_owned(),
                    digest: digest.clone(),
                    index: Digest::stored(index)?,
                }));
            }
        }
        if let Some((item, lock)) = self.lock_blocking(repo, &Item::Repository, Need::Delete)? {
            return Ok(Some(locked(repo, &item, lock)));
        }
        let first = self.locked_among(repo, doomed)?.into_iter().next();
        Ok(first.map(|(item, lock)| locked(repo, &item, lock)))
    }

    /// The locked ones of manifests `doomed` and their tags, with the flag that locks each.
    pub(crate) fn locked_among(
        &self,
        repo: &str,
        doomed: &[Digest],
    ) -> Result<Vec<(Item, &'static str)>> {
        let mut out = Vec::new();
        for digest in doomed {
            let tags = keys_under2(&self.t.manifest_tags, repo, digest.as_str())?;
            let items = std::iter::once(Item::Manifest(digest.clone()))
                .chain(tags.into_iter().map(Item::Tag));
            for item in items {
                if let Some(lock) = locks_of(&self.t, repo, &item)?.refuses(Need::Delete) {
                    out.push((item, lock));
                }
            }
        }
        Ok(out)
    }

    /// Deletes live manifests that [`refusal`](Tx::refusal) accepts, with their tags:
    /// into the bin with the soft delete policy on, for good with it off. Any locks they or
    /// their tags had go with them.
    pub(crate) fn remove_manifests(
        &mut self,
        repo: &str,
        doomed: &[Digest],
        cause: TagCause,
    ) -> Result<()> {
        // S17: an expired index in the bin is gone already; it goes before what it lists.
        if let Some(bin) = self.bin_if_purging(repo)? {
            for digest in doomed {
                for index in bin.indexes_listing(digest.as_str(), true) {
                    self.purge_binned_manifest(repo, index)?;
                }
            }
        }
        for digest in doomed {
            for tag in keys_under2(&self.t.manifest_tags, repo, digest.as_str())? {
                self.unlock(repo, &Item::Tag(tag.clone()))?;
                // Recorded even when the manifest is purged next: its history stays (T2).
                self.remove_tag(repo, &tag, cause)?;
            }
            self.unlock(repo, &Item::Manifest(digest.clone()))?;
            self.delete_untagged_manifest(repo, digest)?;
        }
        Ok(())
    }

    /// Deletes a repository with all its manifests and tags (D4); see
    /// [`Registry::delete_repository`](crate::Registry::delete_repository).
    pub(crate) fn delete_repository(&mut self, name: &str) -> Result<()> {
        let Some(record) = repository_record(&self.t, name)?.filter(|r| r.deleted.is_none()) else {
            return Err(Error::RepositoryUnknown {
                name: name.to_owned(),
            });
        };
        if let Some((item, lock)) = self.first_lock_in(name)? {
            return Err(locked(name, &item, lock));
        }
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
        self.remove_manifests(name, &live, TagCause::Delete)?;
        self.bin_repository(name, record)
    }
}
