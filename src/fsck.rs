//! The check (SPEC A2, C2): every blob record has a file with its bytes, every link a blob,
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

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::PoisonError;
use std::time::SystemTime;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use crate::batch::{Batch, check_no_batch};
use crate::blob::Unnamed;
use crate::collector::{FingerprintSet, Visit, fingerprint, scan_references};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::registry::Registry;
use crate::tables::{BLOB_LINKS, BLOBS, MANIFESTS, UPLOADS};
use crate::upload::hash_file;

/// Blob records read per read transaction.
const RECORDS_PER_READ: usize = 1024;

/// Removals per write transaction: short enough that no writer waits long.
const REPAIR_BATCH: usize = 256;

/// What a check does. The default verifies digests and repairs nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsckOptions {
    /// Remove stray blob files, temporary files, stray upload files and dangling links (A2).
    /// Files go only once modified at least the registry's grace period ago
    /// ([`RegistryBuilder::grace_period`](crate::RegistryBuilder::grace_period)).
    pub repair: bool,
    /// Hash every blob file to check its digest (reads every byte of the store). Without it,
    /// only presence and size are checked.
    pub verify_digests: bool,
}

impl Default for FsckOptions {
    fn default() -> Self {
        FsckOptions {
            repair: false,
            verify_digests: true,
        }
    }
}

/// What a check found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
}

/// Something wrong in a store. Paths are under the store's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl Registry {
    /// Checks the store (A2): every blob record has its file, of the recorded size and (with
    /// `verify_digests`) the right digest; every blob link has a blob; every reference of
    /// every manifest, live or in the recycle bin, resolves; and no file lies under `blobs/`,
    /// `tmp/` or `uploads/` that nothing names. With `repair`, removes those files and the
    /// dangling links, safely while the registry is in use; missing and corrupt blobs are
    /// only reported.
    ///
    /// Pushes, pulls and deletes go on while it runs; a collection waits for it to finish.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use std::time::Duration;
    /// use ocistore::{FsckOptions, Problem, Registry};
    ///
    /// let registry = Registry::builder().grace_period(Duration::ZERO).open(dir.path())?;
    /// registry.repository("app")?.put_blob_sha256(b"a layer")?;
    /// let stray = registry.path().join("tmp/left-by-a-crash");
    /// std::fs::write(&stray, b"half a layer")?;
    /// let report = registry.fsck(&FsckOptions { repair: true, ..FsckOptions::default() })?;
    /// assert_eq!(report.problems, [Problem::TempFile { path: stray }]);
    /// assert_eq!((report.blobs_checked, report.repaired), (1, 1));
    /// assert!(registry.fsck(&FsckOptions::default())?.problems.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fsck(&self, options: &FsckOptions) -> Result<FsckReport> {
        check_no_batch(self)?;
        let _collector = self
            .inner
            .collector
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut check = Check {
            registry: self,
            options,
            // File ages are the file system's: it stamped them with its own clock.
            cutoff: SystemTime::now().checked_sub(self.inner.grace_period),
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
}

struct Check<'r> {
    registry: &'r Registry,
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
                let txn = self.registry.inner.db.begin_read()?;
                let blobs = txn.open_table(BLOBS)?;
                let mut page = Vec::new();
                for row in blobs.range(after.as_str()..)? {
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
            for (digest, size) in page {
                self.check_blob(digest, size)?;
            }
        }
    }

    fn check_blob(&mut self, digest: Digest, recorded: u64) -> Result<()> {
        self.report.blobs_checked += 1;
        let path = self.registry.inner.blobs.path(&digest);
        let mut file = match fs::File::open(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.blob_problem(Problem::MissingBlobFile { digest });
                return Ok(());
            }
            opened => opened.at(&path)?,
        };
        let (actual, len) = if self.options.verify_digests {
            let (hasher, len) = hash_file(&mut file, digest.algorithm()).at(&path)?;
            (Some(hasher.finish()), len)
        } else {
            (None, file.metadata().at(&path)?.len())
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
        Ok(())
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
        let txn = self.registry.inner.db.begin_read()?;
        let blobs = txn.open_table(BLOBS)?;
        let manifests = txn.open_table(MANIFESTS)?;
        let links = txn.open_table(BLOB_LINKS)?;
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
        scan_references(&txn, None, None, |visit| {
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
        let registry = self.registry;
        let store = &registry.inner.blobs;
        walk(&store.blobs, &mut |files| {
            let txn = registry.inner.db.begin_read()?;
            let blobs = txn.open_table(BLOBS)?;
            for (path, modified) in files {
                let file = match store.digest_of(&path) {
                    Some(digest) if blobs.get(digest.as_str())?.is_some() => continue,
                    // The only copy of a blob whose record is lost: kept, to be put again.
                    Some(digest) if self.wanted.contains(&fingerprint(digest.as_str())) => None,
                    Some(digest) => Some(Unnamed::Blob(digest)),
                    None => Some(Unnamed::Other(path.clone())),
                };
                self.stray(Problem::StrayBlobFile { path }, modified, file);
            }
            Ok(())
        })?;
        walk(&store.tmp, &mut |files| {
            for (path, modified) in files {
                let file = Some(Unnamed::Other(path.clone()));
                self.stray(Problem::TempFile { path }, modified, file);
            }
            Ok(())
        })?;
        walk(&store.uploads, &mut |files| {
            let txn = registry.inner.db.begin_read()?;
            let uploads = txn.open_table(UPLOADS)?;
            for (path, modified) in files {
                let id = (path.parent() == Some(&store.uploads))
                    .then(|| path.file_name()?.to_str())
                    .flatten();
                let file = match id {
                    Some(id) if uploads.get(id)?.is_some() => continue,
                    Some(id) => Some(Unnamed::Upload(id.to_owned())),
                    None => Some(Unnamed::Other(path.clone())),
                };
                self.stray(Problem::StrayUpload { path }, modified, file);
            }
            Ok(())
        })
    }

    /// Reports a stray file, and dooms it if it may go.
    fn stray(&mut self, problem: Problem, modified: SystemTime, file: Option<Unnamed>) {
        let old = self.cutoff.is_some_and(|cutoff| modified <= cutoff);
        if let Some(file) = file.filter(|_| self.options.repair && old) {
            self.doomed.push(file);
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
        let links = self.in_batches(&dangling, |b, (repository, digest)| {
            if b.t.blobs.get(digest.as_str())?.is_some() {
                return Ok(false);
            }
            Ok(b.t
                .blob_links
                .remove((repository.as_str(), digest.as_str()))?
                .is_some())
        })?;
        let files = self.in_batches(&self.doomed, |b, file| b.remove_unnamed(file))?;
        self.report.repaired = links + files;
        Ok(())
    }

    /// Runs `remove` on each item, in write transactions of [`REPAIR_BATCH`]; counts the
    /// removals.
    fn in_batches<T>(
        &self,
        items: &[T],
        remove: impl Fn(&mut Batch<'_>, &T) -> Result<bool>,
    ) -> Result<u64> {
        let mut removed = 0;
        for chunk in items.chunks(REPAIR_BATCH) {
            removed += self.registry.batch(|b| {
                let mut removed = 0;
                for item in chunk {
                    removed += u64::from(remove(b, item)?);
                }
                Ok(removed)
            })?;
        }
        Ok(removed)
    }
}

/// Calls `visit` with the files of `dir` and of every directory under it, a directory at a
/// time, in name order, each with its modification time. A file gone since the listing is
/// left out.
fn walk(
    dir: &Path,
    visit: &mut impl FnMut(Vec<(PathBuf, SystemTime)>) -> Result<()>,
) -> Result<()> {
    let mut entries = fs::read_dir(dir)
        .at(dir)?
        .collect::<std::io::Result<Vec<_>>>()
        .at(dir)?;
    entries.sort_by_key(|e| e.file_name());
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for entry in entries {
        let path = entry.path();
        match entry.metadata() {
            Ok(meta) if meta.is_dir() => dirs.push(path),
            Ok(meta) => files.push((path, meta.modified().at(entry.path())?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Io { path, source: e }),
        }
    }
    visit(files)?;
    for dir in dirs {
        walk(&dir, visit)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a2_repair_never_removes_a_file_a_row_names_at_its_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        let repo = registry.repository("app").unwrap();
        let digest = repo.put_blob_sha256(b"recorded").unwrap();
        let upload = repo.start_upload().unwrap();
        // As if found stray by a listing that ran before these rows committed.
        let files = [
            Unnamed::Blob(digest.clone()),
            Unnamed::Upload(upload.id().to_owned()),
        ];
        let removed = registry
            .batch(|b| {
                files
                    .iter()
                    .map(|f| b.remove_unnamed(f))
                    .collect::<Result<Vec<_>>>()
            })
            .unwrap();
        assert_eq!(removed, [false, false]);
        assert_eq!(repo.blob(&digest).unwrap(), &b"recorded"[..]);
        upload.append(b"more").unwrap();
        upload
            .finish(&crate::Algorithm::Sha256.digest(b"more"))
            .unwrap();
    }
}
