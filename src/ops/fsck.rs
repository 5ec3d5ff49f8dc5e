//! The check (docs/spec.md: A2, C2): every blob record has a file with its bytes, every link a blob,
//! every manifest reference resolves, and no file lies about that nothing names; `repair`
//! removes such files (and links) while the registry stays online.
//!
//! A check runs in four passes:
//!
//! 1. **Blob records**, a page per short read transaction (hashing a large store must not hold
//!    a snapshot for hours): each file exists, has the recorded size and, when verifying,
//!    hashes to its digest. The collector's lock is held for the whole check, and only the
//!    collector removes blob records, so a record seen stays: its file missing is a problem,
//!    never a sweep in progress.
//! 2. **Links and manifests**, from one snapshot: every link has a blob record, every config
//!    and layer is linked into its repository to a blob with no problem, every child of an
//!    index is a manifest of its repository (live or in the bin).
//! 3. **Files**: under `blobs/`, `tmp/` and `uploads/`, each directory is listed before a read
//!    transaction looks its files up, so a file whose row committed before the listing is found
//!    named. A write in flight (its file in place, its row not committed yet) is reported as a
//!    stray: it is one, for now.
//! 4. **Repair**: files go only if modified at least the registry's grace period ago (a
//!    write in flight is younger), each in a write transaction that first checks again that no
//!    row names it; a dangling link goes in a write transaction that checks again that its
//!    blob has no record. A stray blob file that a link or a manifest names stays: it holds
//!    the only copy of bytes whose record was lost.

use std::path::PathBuf;
use std::time::SystemTime;

use redb::{ReadableTable, ReadableTableMetadata};

use super::Core;
use super::blobs::{Unnamed, remove_unnamed};
use super::collector::{FingerprintSet, Visit, fingerprint, scan_references};
use crate::blobs::EntryKind;
use crate::store::Tx;
use crate::store::links::is_recorded;
use crate::store::tables::Readable;
use crate::store::{meta, uploads};
use crate::values::{Digest, IoContext, Result, hash_reader};

/// What fsck found stored for a blob: the digest of its bytes (when digests are verified) and
/// their length.
type Found = (Option<Digest>, u64);

/// Blob records read per read transaction.
const RECORDS_PER_READ: usize = 1024;

/// Removals per write transaction: short enough that no writer waits long.
const REPAIR_BATCH: usize = 256;

/// What a check does. The default verifies digests and repairs nothing.
///
/// ```
/// use ocistore::FsckOptions;
/// let quick_repair = FsckOptions::default().repair(true).verify_digests(false);
/// assert!(quick_repair.repair && !quick_repair.verify_digests);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct FsckOptions {
    /// Remove stray blob files, temporary files, stray upload files and dangling links (A2).
    /// Files go only once modified at least the grace period ago.
    pub repair: bool,
    /// Hash every blob file to check its digest (reads every byte of the store). Without it,
    /// only presence and size are checked.
    pub verify_digests: bool,
    /// How old a stray file must be before the repair removes it; `None` for the registry's
    /// ([`RegistryBuilder::grace_period`](crate::RegistryBuilder::grace_period), one hour by
    /// default). Zero removes them all — right after a crash, say — at the risk of taking the
    /// file of a write in flight, which then fails and is retried.
    #[serde(with = "crate::values::seconds::option")]
    pub grace_period: Option<std::time::Duration>,
}

impl FsckOptions {
    /// Repair what can be repaired (`true`), or only report.
    #[must_use]
    pub fn repair(mut self, repair: bool) -> FsckOptions {
        self.repair = repair;
        self
    }

    /// Hash every blob (`true`), or check only presence and size.
    #[must_use]
    pub fn verify_digests(mut self, verify: bool) -> FsckOptions {
        self.verify_digests = verify;
        self
    }

    /// `grace` instead of the registry's grace period for stray files.
    #[must_use]
    pub fn grace_period(mut self, grace: std::time::Duration) -> FsckOptions {
        self.grace_period = Some(grace);
        self
    }
}

impl Default for FsckOptions {
    fn default() -> Self {
        FsckOptions {
            repair: false,
            verify_digests: true,
            grace_period: None,
        }
    }
}

/// What a check found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct FsckReport {
    /// Manifests checked, live or in the recycle bin.
    pub manifests_checked: u64,
    /// Blob records checked.
    pub blobs_checked: u64,
    /// Every problem found, repaired or not, in the order checked: blob records, links,
    /// manifests, then files under `blobs/`, `tmp/` and `uploads/`.
    pub problems: Vec<Problem>,
    /// Files and links the repair removed.
    pub repaired: u64,
    /// Stray files the repair left because they were modified within the grace period: a
    /// write may still be about to commit a row naming them. Check again later, or with a
    /// shorter [`FsckOptions::grace_period`].
    pub too_recent: u64,
    /// Stray blob files the repair kept because a link or a manifest still names them: the only
    /// copy of those bytes, whose record was lost. Put the blobs again.
    pub kept_named: u64,
}

/// Something wrong in a store. Paths are under the store's directory.
///
/// Its serde form is an object tagged by `kind`, the variant in `snake_case`, with the
/// variant's fields: `{"kind": "dangling_link", "repository": "app", "digest": "sha256:…"}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Problem {
    /// A config or layer of an image manifest that is not linked into the repository, has no
    /// blob record, or whose blob has a problem of its own (missing, corrupt, wrong size); or
    /// a child of an index that is not a manifest of the repository. Not repairable.
    MissingReference {
        /// The repository.
        repository: String,
        /// The manifest holding the reference.
        manifest: Digest,
        /// What it references.
        reference: Digest,
    },
    /// A blob link whose blob has no record. Repairable: the link goes.
    DanglingLink {
        /// The repository.
        repository: String,
        /// The blob.
        digest: Digest,
    },
    /// A blob record whose file is gone. Not repairable: put the blob again.
    MissingBlobFile {
        /// The blob.
        digest: Digest,
    },
    /// A blob file whose bytes do not hash to its digest. Not repairable: put the blob again
    /// after removing the file.
    CorruptBlob {
        /// The blob.
        digest: Digest,
        /// What its file hashes to.
        actual: Digest,
    },
    /// A blob file whose length is not the recorded size (and, if digests were verified,
    /// whose bytes do hash to its digest: the record is wrong). Not repairable.
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The size in the blob record.
        recorded: u64,
        /// The file's length.
        actual: u64,
    },
    /// A file under `blobs/` that no blob record names, or that is not named like a blob
    /// (left by a crash between a write's rename and its commit, or put there by hand).
    /// Repairable, except the file of a blob that a link or a manifest still names: it is
    /// kept, the only copy of bytes whose record was lost, to be put again.
    StrayBlobFile {
        /// The file.
        path: PathBuf,
    },
    /// A file in `tmp/`: a one-shot blob write in progress, or one a crash interrupted since
    /// the store was opened. Repairable.
    TempFile {
        /// The file.
        path: PathBuf,
    },
    /// A file in `uploads/` that no upload session owns. Repairable.
    StrayUpload {
        /// The file.
        path: PathBuf,
    },
}

impl Problem {
    /// Whether a repair removes it — a stray file or a dangling link — rather than only
    /// reporting it (missing or corrupt blobs, wrong sizes, missing references: put the blobs
    /// again, or delete the manifests naming them).
    #[must_use]
    pub fn is_repairable(&self) -> bool {
        matches!(
            self,
            Problem::DanglingLink { .. }
                | Problem::StrayBlobFile { .. }
                | Problem::TempFile { .. }
                | Problem::StrayUpload { .. }
        )
    }
}

/// Checks the store; see [`Registry::fsck`](crate::Registry::fsck).
pub(crate) fn fsck(core: &Core, options: &FsckOptions) -> Result<FsckReport> {
    core.check_no_batch()?;
    if options.repair {
        core.db.check_writable()?;
    }
    let _collector = super::collector::hold(core)?;
    let mut check = Check {
        core,
        options,
        // File ages are the file system's: it stamped them with its own clock.
        cutoff: SystemTime::now().checked_sub(options.grace_period.unwrap_or(core.grace_period)),
        report: FsckReport::default(),
        broken: FingerprintSet::default(),
        wanted: FingerprintSet::default(),
        doomed: Vec::new(),
    };
    check.blob_records()?;
    check.links_and_manifests()?;
    check.files()?;
    if options.repair {
        check.repair()?;
    }
    Ok(check.report)
}

struct Check<'r> {
    core: &'r Core,
    options: &'r FsckOptions,
    /// Files modified at or before this may be removed.
    cutoff: Option<SystemTime>,
    report: FsckReport,
    /// Fingerprints of the blobs with a problem.
    broken: FingerprintSet,
    /// Fingerprints of the blobs without a record that a link or a manifest names.
    wanted: FingerprintSet,
    /// The stray files old enough to remove.
    doomed: Vec<Unnamed>,
}

impl Check<'_> {
    fn blob_records(&mut self) -> Result<()> {
        let mut after = String::new();
        loop {
            let page = {
                let snapshot = self.core.snapshot()?;
                let mut page = Vec::new();
                for row in snapshot.blobs()?.range(after.as_str()..)? {
                    let (digest, value) = row?;
                    if digest.value() != after {
                        page.push((Digest::stored(digest.value())?, value.value().0));
                    }
                    if page.len() == RECORDS_PER_READ {
                        break;
                    }
                }
                page
            };
            let Some((last, _)) = page.last() else {
                return Ok(());
            };
            after = last.to_string();
            let found = self.inspect_all(&page)?;
            for ((digest, recorded), found) in page.into_iter().zip(found) {
                self.check_blob(digest, recorded, found);
            }
        }
    }

    /// What the blob store holds for each blob of `page`: several blobs at a time, as many as
    /// the store reads at once (A2 over object storage waits on the network, not the disk).
    fn inspect_all(&self, page: &[(Digest, u64)]) -> Result<Vec<Option<Found>>> {
        let threads = self.core.blobs.read_parallelism().max(1);
        if threads == 1 {
            return page
                .iter()
                .map(|(digest, _)| self.inspect(digest))
                .collect();
        }
        let per_thread = page.len().div_ceil(threads);
        std::thread::scope(|s| {
            let workers: Vec<_> = page
                .chunks(per_thread)
                .map(|chunk| {
                    s.spawn(move || {
                        chunk
                            .iter()
                            .map(|(digest, _)| self.inspect(digest))
                            .collect::<Result<Vec<_>>>()
                    })
                })
                .collect();
            let mut found = Vec::with_capacity(page.len());
            for worker in workers {
                found.extend(
                    worker
                        .join()
                        .unwrap_or_else(|p| std::panic::resume_unwind(p))?,
                );
            }
            Ok(found)
        })
    }

    /// The digest (when digests are verified) and length of the bytes stored for `digest`.
    fn inspect(&self, digest: &Digest) -> Result<Option<Found>> {
        let blobs = &self.core.blobs;
        if !self.options.verify_digests {
            return Ok(blobs.size(digest)?.map(|len| (None, len)));
        }
        let Some(mut bytes) = blobs.read(digest, 0, u64::MAX)? else {
            return Ok(None);
        };
        let (hasher, len) =
            hash_reader(&mut bytes, digest.algorithm()).at(format!("blobs/{digest}"))?;
        Ok(Some((Some(hasher.finish()), len)))
    }

    fn check_blob(&mut self, digest: Digest, recorded: u64, found: Option<Found>) {
        self.report.blobs_checked += 1;
        let Some((actual, len)) = found else {
            self.blob_problem(Problem::MissingBlobFile { digest });
            return;
        };
        match actual {
            Some(actual) if actual != digest => {
                self.blob_problem(Problem::CorruptBlob { digest, actual });
            }
            _ if len != recorded => self.blob_problem(Problem::SizeMismatch {
                digest,
                recorded,
                actual: len,
            }),
            _ => {}
        }
    }

    fn blob_problem(&mut self, problem: Problem) {
        if let Problem::MissingBlobFile { digest }
        | Problem::CorruptBlob { digest, .. }
        | Problem::SizeMismatch { digest, .. } = &problem
        {
            self.broken.insert(fingerprint(digest.as_str()));
        }
        self.report.problems.push(problem);
    }

    fn links_and_manifests(&mut self) -> Result<()> {
        let snapshot = self.core.snapshot()?;
        let blobs = snapshot.blobs()?;
        let manifests = snapshot.manifests()?;
        let links = snapshot.blob_links()?;
        let problems = &mut self.report.problems;
        let wanted = &mut self.wanted;
        for row in links.iter()? {
            let (key, _) = row?;
            let (repository, digest) = key.value();
            if blobs.get(digest)?.is_none() {
                wanted.insert(fingerprint(digest));
                problems.push(Problem::DanglingLink {
                    repository: repository.to_owned(),
                    digest: Digest::stored(digest)?,
                });
            }
        }
        self.report.manifests_checked = manifests.len()?;
        let broken = &self.broken;
        scan_references(&snapshot, None, None, |visit| {
            let (repository, manifest, reference) = match visit {
                Visit::Reference {
                    repository,
                    manifest,
                    blob,
                    ..
                } => {
                    let recorded = blobs.get(blob)?.is_some();
                    if !recorded {
                        wanted.insert(fingerprint(blob));
                    }
                    let resolves = recorded
                        && links.get((repository, blob))?.is_some()
                        && !broken.contains(&fingerprint(blob));
                    if resolves {
                        return Ok(());
                    }
                    (repository, manifest, blob)
                }
                Visit::Child {
                    repository,
                    manifest,
                    child,
                } => {
                    if manifests.get((repository, child))?.is_some() {
                        return Ok(());
                    }
                    (repository, manifest, child)
                }
                Visit::EndOf(_) => return Ok(()),
            };
            problems.push(Problem::MissingReference {
                repository: repository.to_owned(),
                manifest: Digest::stored(manifest)?,
                reference: Digest::stored(reference)?,
            });
            Ok(())
        })
        .map(drop)
    }

    fn files(&mut self) -> Result<()> {
        let core = self.core;
        core.blobs.entries(&mut |entries| {
            let snapshot = core.snapshot()?;
            for entry in entries {
                let path = entry.location;
                let (problem, file) = match entry.kind {
                    EntryKind::Blob(digest) if is_recorded(&snapshot, digest.as_str())? => continue,
                    // The only copy of a blob whose record is lost: kept, to be put again.
                    EntryKind::Blob(digest)
                        if self.wanted.contains(&fingerprint(digest.as_str())) =>
                    {
                        (Problem::StrayBlobFile { path }, None)
                    }
                    EntryKind::Blob(digest) => {
                        (Problem::StrayBlobFile { path }, Some(Unnamed::Blob(digest)))
                    }
                    EntryKind::Upload(id) if uploads::is_open(&snapshot, &id)? => continue,
                    EntryKind::Upload(id) => {
                        (Problem::StrayUpload { path }, Some(Unnamed::Upload(id)))
                    }
                    EntryKind::Temporary => (
                        Problem::TempFile { path: path.clone() },
                        Some(Unnamed::Other(path)),
                    ),
                    EntryKind::UnknownUpload => (
                        Problem::StrayUpload { path: path.clone() },
                        Some(Unnamed::Other(path)),
                    ),
                    EntryKind::Unknown => (
                        Problem::StrayBlobFile { path: path.clone() },
                        Some(Unnamed::Other(path)),
                    ),
                };
                self.stray(problem, entry.modified, file);
            }
            Ok(())
        })
    }

    /// Reports a stray file, and dooms it if it may go.
    fn stray(&mut self, problem: Problem, modified: SystemTime, file: Option<Unnamed>) {
        let old = self.cutoff.is_some_and(|cutoff| modified <= cutoff);
        if self.options.repair {
            match file {
                None => self.report.kept_named += 1,
                Some(file) if old => self.doomed.push(file),
                Some(_) => self.report.too_recent += 1,
            }
        }
        self.report.problems.push(problem);
    }

    fn repair(&mut self) -> Result<()> {
        let dangling: Vec<_> = self
            .report
            .problems
            .iter()
            .filter_map(|p| match p {
                Problem::DanglingLink { repository, digest } => Some((repository, digest)),
                _ => None,
            })
            .collect();
        let links = self.in_batches(&dangling, |tx, chunk| {
            let mut removed = 0;
            for (repository, digest) in chunk {
                removed += u64::from(tx.remove_dangling_link(repository, digest.as_str())?);
            }
            Ok(removed)
        })?;
        let core = self.core;
        let deletes_blobs = self.doomed.iter().any(|f| matches!(f, Unnamed::Blob(_)));
        if deletes_blobs {
            core.write(true, |tx| meta::set_deleting_blobs(&mut tx.t, true))?;
        }
        let files = self.in_batches(&self.doomed, |tx, chunk| remove_unnamed(core, tx, chunk))?;
        // Left set after a failure (the `?` above): a writing open clears it.
        if deletes_blobs {
            core.write(true, |tx| meta::set_deleting_blobs(&mut tx.t, false))?;
        }
        self.report.repaired = links + files;
        Ok(())
    }

    /// Runs `remove` on the items, [`REPAIR_BATCH`] per write transaction; adds up the
    /// removals it counts.
    fn in_batches<T>(
        &self,
        items: &[T],
        remove: impl Fn(&mut Tx<'_>, &[T]) -> Result<u64>,
    ) -> Result<u64> {
        let mut removed = 0;
        for chunk in items.chunks(REPAIR_BATCH) {
            removed += self.core.write(true, |tx| remove(tx, chunk))?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a2_repair_never_removes_a_file_a_row_names_at_its_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let registry = crate::Registry::open(dir.path()).unwrap();
        let repo = registry.repository("app").unwrap();
        let digest = repo.put_blob_sha256(b"recorded").unwrap();
        let upload = repo.start_upload().unwrap();
        // As if found stray by a listing that ran before these rows committed.
        let files = [
            Unnamed::Blob(digest.clone()),
            Unnamed::Upload(upload.id().to_owned()),
        ];
        let core = &registry.core;
        let removed = core
            .write(true, |tx| remove_unnamed(core, tx, &files))
            .unwrap();
        assert_eq!(removed, 0);
        assert_eq!(repo.blob(&digest).unwrap(), &b"recorded"[..]);
        upload.append(b"more").unwrap();
        upload
            .finish(&crate::Algorithm::Sha256.digest(b"more"))
            .unwrap();
    }
}
