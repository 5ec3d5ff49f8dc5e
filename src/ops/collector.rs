//! The collector: an online mark and sweep of layer blobs (docs/spec.md: G1–G6).
//!
//! Roots are every manifest not yet purged, live or in the recycle bin. A run:
//!
//! 1. **Journal on.** One write transaction sets `collecting` in `meta` and empties the journal
//!    `gc_touched`. From then on every batch that links a blob or pushes a manifest
//!    referencing one writes the blob's digest to the journal.
//! 2. **Mark**, from read snapshots taken after that commit, so it never waits for writers
//!    nor they for it: per repository, the blobs its manifests reference; its links that
//!    nothing there references and that are older than the grace period are doomed (G3); a
//!    blob is marked if a link that stays names it. The mark set holds a 128-bit prefix of
//!    each digest: a collision could only keep a garbage blob, never lose a live one. Each
//!    repository is read from one snapshot, and a snapshot is given up for a fresh one every
//!    [`SNAPSHOT_TIME`]: redb frees no page a live snapshot can see, and the first commit after
//!    a long one would free them all at once, stalling a writer. Any snapshot taken after the
//!    journal went on will do, since every use of a blob it misses is in the journal.
//! 3. **Sweep** in short write transactions, reading the blob records from short snapshots too,
//!    and leaving the write lock to waiting writers between two transactions. A doomed link goes
//!    if it is unchanged and its blob is not in the journal. A blob unmarked and older than the
//!    grace period loses its record if it is not in the journal; its file goes in the next
//!    transaction, once the record's removal is durable, and only if no record has come back for
//!    it meanwhile. Every write that could make a blob live again (a put, a mount, an upload, a
//!    push) journals it in a transaction ordered against the sweep's by redb's write lock, so the
//!    sweep either sees it and keeps the blob, or comes first and the write finds no record: a
//!    push then fails with `BlobUnknown` and a put writes the file again (G2).
//! 4. Upload sessions older than their timeout go (G4), and the journal is turned off.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Bound;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::Core;
use super::blobs::{Unnamed, remove_unnamed};
use crate::oci::ManifestKind;
use crate::store::Tx;
use crate::store::membership::{lock_file, try_lock};
use crate::store::tables::{Readable, Snapshot};
use crate::store::{meta, uploads};
use crate::values::{Digest, Error, IoContext, Result, Timestamp};

/// Links or upload sessions per sweep transaction: small enough that no writer waits long for
/// one.
const SWEEP_BATCH: usize = 256;

/// Blobs per sweep transaction. A blob costs more than a link: its record, then in the next
/// transaction the unlink of its file. On tmpfs, 256 of them held the lock for 6–8 ms, as long
/// as a writer's p99 while the collection ran; 128 hold it for about 4 ms.
const BLOB_BATCH: usize = 128;

/// How long the collection keeps a read snapshot, give or take a repository. redb frees no
/// page that a live snapshot can see, and the first commit after the snapshot ends, the
/// collection's or a writer's, frees all those that writers released meanwhile: a short
/// snapshot keeps that commit short.
const SNAPSHOT_TIME: Duration = Duration::from_millis(25);

/// How often, in items, the progress callback hears from a phase.
const PROGRESS_EVERY: u64 = 10_000;

/// The last report of a phase, with its total, unless the periodic one just gave it.
fn report_end(progress: &mut impl FnMut(Progress), phase: Phase, done: u64) {
    if !done.is_multiple_of(PROGRESS_EVERY) || done == 0 {
        progress(Progress { phase, done });
    }
}

/// How a collection runs; `CollectOptions::default()` is a real run with the registry's grace
/// period.
///
/// ```
/// use std::time::Duration;
/// use ocistore::CollectOptions;
/// let options = CollectOptions::default().dry_run(true).grace_period(Duration::ZERO);
/// assert!(options.dry_run);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct CollectOptions {
    /// Report what would be removed without removing anything (G5).
    pub dry_run: bool,
    /// Overrides the registry's grace period ([`RegistryBuilder::grace_period`](crate::RegistryBuilder::grace_period)).
    #[serde(with = "crate::values::seconds::option")]
    pub grace_period: Option<Duration>,
}

impl CollectOptions {
    /// A dry run (`true`), which removes nothing, or a real one.
    #[must_use]
    pub fn dry_run(mut self, dry_run: bool) -> CollectOptions {
        self.dry_run = dry_run;
        self
    }

    /// `grace` instead of the registry's grace period.
    #[must_use]
    pub fn grace_period(mut self, grace: Duration) -> CollectOptions {
        self.grace_period = Some(grace);
        self
    }
}

/// A phase of a collection, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Phase {
    /// Reading the manifests and links of every repository.
    Mark,
    /// Removing the links nothing references.
    Links,
    /// Reading every blob record and removing the unmarked ones.
    Blobs,
    /// Removing expired upload sessions.
    Uploads,
}

/// Where a collection is: `done` items of its phase so far. Each phase reports every 10,000
/// items (the links after each transaction) and once more when it ends, with its total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Progress {
    /// The phase.
    pub phase: Phase,
    /// Items handled in it: repositories, links, blob records or sessions.
    pub done: u64,
}

/// What a collection found and did (G6). In a dry run, what it would do (G5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CollectReport {
    /// Whether nothing was removed.
    pub dry_run: bool,
    /// Blobs referenced by a manifest, or linked within the grace period.
    pub blobs_marked: u64,
    /// Their bytes.
    pub bytes_marked: u64,
    /// Unmarked blobs removed, bytes and record.
    pub blobs_swept: u64,
    /// Their bytes.
    pub bytes_swept: u64,
    /// Unmarked blobs kept: younger than the grace period, or used while the run went on.
    pub blobs_kept: u64,
    /// Their bytes.
    pub bytes_kept: u64,
    /// Repository links removed (G3).
    pub links_removed: u64,
    /// Expired upload sessions removed (G4).
    pub uploads_removed: u64,
    /// Time spent marking.
    #[serde(with = "crate::values::seconds")]
    pub mark_time: Duration,
    /// Time spent sweeping links, blobs and uploads.
    #[serde(with = "crate::values::seconds")]
    pub sweep_time: Duration,
    /// The longest any write transaction of the run held the store's write lock: how long a
    /// writer could have waited for it.
    #[serde(with = "crate::values::seconds")]
    pub longest_write: Duration,
}

/// The fields of a manifest record the mark reads; the rest is skipped unparsed.
#[derive(Deserialize)]
struct MarkRecord<'a> {
    #[serde(borrow)]
    media_type: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    references: Vec<MarkReference<'a>>,
    #[serde(default, with = "crate::values::nanos::option")]
    deleted: Option<Timestamp>,
}

#[derive(Deserialize)]
struct MarkReference<'a> {
    #[serde(borrow)]
    digest: std::borrow::Cow<'a, str>,
}

/// A blob's place in the mark set: the first 128 bits of its hex digest. Digests are
/// cryptographic hashes, so the prefix is as good as a hash of the whole.
pub(crate) fn fingerprint(digest: &str) -> u128 {
    let hex = digest.split_once(':').map_or(digest, |(_, hex)| hex);
    let Some(hex) = hex.as_bytes().get(..32) else {
        return 0;
    };
    // Two halves of 64 bits, each digit through a table: cheaper than `from_str_radix` on the
    // 32 digits, in loops that run once per reference, link and blob.
    let half = |digits: &[u8]| {
        let (mut value, mut bad) = (0u64, 0u8);
        for &c in digits {
            let nibble = HEX_VALUE[usize::from(c)];
            bad |= nibble;
            value = value << 4 | u64::from(nibble & 0x0f);
        }
        (bad & 0xf0 == 0).then_some(value)
    };
    match (half(&hex[..16]), half(&hex[16..])) {
        (Some(high), Some(low)) => u128::from(high) << 64 | u128::from(low),
        _ => 0,
    }
}

/// The value of each hex digit; `0xff` for any other byte.
const HEX_VALUE: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// Hashes a fingerprint by folding it to 64 bits: its bits are already uniform, so `SipHash`
/// would only cost time.
#[derive(Default)]
pub(crate) struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used; anything else still hashes, if slowly.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u128(&mut self, fp: u128) {
        self.0 ^= (fp >> 64) as u64 ^ fp as u64;
    }
}

/// A set of fingerprints.
pub(crate) type FingerprintSet = HashSet<u128, BuildHasherDefault<FingerprintHasher>>;

/// A map keyed by fingerprints.
pub(crate) type FingerprintMap<V> = HashMap<u128, V, BuildHasherDefault<FingerprintHasher>>;

/// What [`scan_references`] visits.
pub(crate) enum Visit<'a> {
    /// A config or layer of image manifest `manifest` of `repository`, live or in the bin.
    Reference {
        repository: &'a str,
        manifest: &'a str,
        live: bool,
        blob: &'a str,
    },
    /// A child manifest of index `manifest` of `repository`, live or in the bin.
    Child {
        repository: &'a str,
        manifest: &'a str,
        child: &'a str,
    },
    /// The repository's manifests are all visited.
    EndOf(&'a str),
}

/// Visits every reference of every manifest, live or in the bin, repository by repository,
/// starting after repository `after` (at the first if `None`). With `until`, stops
/// at the end of the first repository finished at or after it and returns its name, for a
/// later call, on a later snapshot, to go on after it; returns `None` once the last repository
/// is visited.
pub(crate) fn scan_references(
    snapshot: &Snapshot,
    after: Option<&str>,
    until: Option<Instant>,
    mut visit: impl FnMut(Visit<'_>) -> Result<()>,
) -> Result<Option<String>> {
    let manifests = snapshot.manifests()?;
    let repositories = snapshot.repositories()?;
    let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
    for row in repositories.range::<&str>((lower, Bound::Unbounded))? {
        let (name, _) = row?;
        let repo = name.value();
        for row in manifests.range((repo, "")..)? {
            let (key, value) = row?;
            let (r, manifest) = key.value();
            if r != repo {
                break;
            }
            let record: MarkRecord<'_> =
                serde_json::from_slice(value.value()).map_err(|e| Error::Corrupt {
                    table: "manifests",
                    reason: e.to_string(),
                })?;
            let index = matches!(
                ManifestKind::of_media_type(&record.media_type),
                Ok(ManifestKind::Index)
            );
            for reference in &record.references {
                let target = &reference.digest;
                visit(if index {
                    Visit::Child {
                        repository: repo,
                        manifest,
                        child: target,
                    }
                } else {
                    Visit::Reference {
                        repository: repo,
                        manifest,
                        live: record.deleted.is_none(),
                        blob: target,
                    }
                })?;
            }
        }
        visit(Visit::EndOf(repo))?;
        if until.is_some_and(|until| Instant::now() >= until) {
            return Ok(Some(repo.to_owned()));
        }
    }
    Ok(None)
}

/// What the mark found.
struct Mark {
    marked: FingerprintSet,
    /// `(repository, digest, linked at)` of the links to remove.
    doomed_links: Vec<(String, String, u64)>,
}

/// Marks from a series of snapshots, each ending after [`SNAPSHOT_TIME`] at the end of a
/// repository: any snapshot taken after the journal went on is as good as another, as every
/// use of a blob since then is in the journal, and each repository's manifests and links are
/// read from one snapshot.
fn mark(core: &Core, cutoff: Timestamp, progress: &mut impl FnMut(Progress)) -> Result<Mark> {
    let mut marked = FingerprintSet::default();
    let mut doomed_links = Vec::new();
    let mut referenced = FingerprintSet::default();
    let mut repositories = 0;
    let mut after: Option<String> = None;
    loop {
        let snapshot = core.snapshot()?;
        let links = snapshot.blob_links()?;
        let until = Instant::now() + SNAPSHOT_TIME;
        after = scan_references(&snapshot, after.as_deref(), Some(until), |visit| {
            let repo = match visit {
                Visit::Reference { blob, .. } => {
                    referenced.insert(fingerprint(blob));
                    return Ok(());
                }
                Visit::Child { .. } => return Ok(()),
                Visit::EndOf(repo) => repo,
            };
            for row in links.range((repo, "")..)? {
                let (key, linked) = row?;
                let (r, digest) = key.value();
                if r != repo {
                    break;
                }
                let fp = fingerprint(digest);
                let linked = linked.value();
                // A link is unique in its repository: once seen, the reference is done with.
                if referenced.remove(&fp) || linked >= cutoff.as_nanos() {
                    marked.insert(fp);
                } else {
                    doomed_links.push((repo.to_owned(), digest.to_owned(), linked));
                }
            }
            // A reference with no link (which the push checks forbid) still marks its blob.
            marked.extend(referenced.drain());
            repositories += 1;
            if repositories % PROGRESS_EVERY == 0 {
                progress(Progress {
                    phase: Phase::Mark,
                    done: repositories,
                });
            }
            Ok(())
        })?;
        if after.is_none() {
            break;
        }
    }
    report_end(progress, Phase::Mark, repositories);
    Ok(Mark {
        marked,
        doomed_links,
    })
}

/// How long the collection leaves the store's write lock alone after each of its write
/// transactions. redb's lock is not fair: a writer woken by the end of one transaction would
/// otherwise, as often as not, find the collection's next one already begun, and could wait
/// out a whole run of them.
const WRITE_PAUSE: Duration = Duration::from_micros(200);

/// Runs write transactions for a collection and keeps the longest one.
struct Writer<'r> {
    core: &'r Core,
    longest: Duration,
}

impl Writer<'_> {
    fn write<T>(&mut self, f: impl FnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        let mut began = None;
        let out = self.core.write(true, |b| {
            began = Some(Instant::now());
            f(b)
        });
        if let Some(began) = began {
            self.longest = self.longest.max(began.elapsed());
        }
        std::thread::sleep(WRITE_PAUSE);
        out
    }
}

/// The lock file a collection (and fsck) holds while it runs, in whichever process (M3).
const COLLECTOR_LOCK: &str = "collector.lock";

/// Waits until no collection or fsck runs on the store, in any process, and holds it so until
/// the returned lock is dropped: two sweeps at once would each empty the other's journal.
pub(crate) fn hold(core: &Core) -> Result<std::fs::File> {
    let path = core.dir.join(COLLECTOR_LOCK);
    let file = lock_file(&path)?;
    file.lock().at(&path)?;
    Ok(file)
}

/// Turns off the journal of a collection that is not running any more: its process died in
/// the middle. Writers would otherwise go on journaling for it until the next collection.
pub(crate) fn end_dead_collection(core: &Core) -> Result<()> {
    // Created at open, not at the first collection: the store's files stay the same after.
    let path = core.dir.join(COLLECTOR_LOCK);
    let file = lock_file(&path)?;
    let snapshot = core.snapshot()?;
    let dead = meta::collecting(&snapshot)? || meta::deleting_blobs(&snapshot)?;
    drop(snapshot);
    if dead && try_lock(&file, &path)? {
        core.write(true, |tx| {
            meta::set_deleting_blobs(&mut tx.t, false)?;
            meta::set_collecting(&mut tx.t, false)
        })?;
    }
    Ok(())
}

/// Runs the collector; see [`Registry::collect_with_progress`](crate::Registry::collect_with_progress).
pub(crate) fn collect(
    core: &Core,
    options: &CollectOptions,
    mut progress: impl FnMut(Progress),
) -> Result<CollectReport> {
    core.check_no_batch()?;
    let _running = hold(core)?;
    let grace = options.grace_period.unwrap_or(core.grace_period);
    let mut writer = Writer {
        core,
        longest: Duration::ZERO,
    };
    if !options.dry_run {
        writer.write(|b| {
            meta::set_deleting_blobs(&mut b.t, true)?;
            meta::set_collecting(&mut b.t, true)
        })?;
    }
    let outcome = collect_from_snapshot(core, options.dry_run, grace, &mut writer, &mut progress);
    if !options.dry_run {
        // Turn the journal off even after a failure; the next open would otherwise. After a
        // failed deletion, writers keep distrusting the epoch until a writing open or a
        // collection that ends well clears the flag.
        let ok = outcome.is_ok();
        let stopped = writer.write(|b| {
            if ok {
                meta::set_deleting_blobs(&mut b.t, false)?;
            }
            meta::set_collecting(&mut b.t, false)
        });
        if outcome.is_ok() {
            stopped?;
        }
    }
    let mut report = outcome?;
    report.longest_write = writer.longest;
    Ok(report)
}

fn collect_from_snapshot(
    core: &Core,
    dry_run: bool,
    grace: Duration,
    writer: &mut Writer<'_>,
    progress: &mut impl FnMut(Progress),
) -> Result<CollectReport> {
    let now = core.now();
    let cutoff = now.saturating_sub(grace);
    let mut report = CollectReport {
        dry_run,
        ..CollectReport::default()
    };
    let began = Instant::now();
    let Mark {
        marked,
        doomed_links,
    } = mark(core, cutoff, progress)?;
    report.mark_time = began.elapsed();

    let began = Instant::now();
    report.links_removed = if dry_run {
        doomed_links.len() as u64
    } else {
        sweep_links(writer, &doomed_links, progress)?
    };

    let mut sweeper = BlobSweeper {
        dry_run,
        pending: Vec::new(),
    };
    let mut done = 0;
    let mut batch = Vec::new();
    // The last blob record read, the next scan starting after it.
    let mut after: Option<String> = None;
    loop {
        // Short snapshots again, as in the mark.
        let snapshot = core.snapshot()?;
        let blobs = snapshot.blobs()?;
        let lower = after.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let until = Instant::now() + SNAPSHOT_TIME;
        let mut more = false;
        for row in blobs.range::<&str>((lower, Bound::Unbounded))? {
            let (digest, value) = row?;
            let (digest, (size, created)) = (digest.value(), value.value());
            if marked.contains(&fingerprint(digest)) {
                report.blobs_marked += 1;
                report.bytes_marked += size;
            } else if created >= cutoff.as_nanos() {
                report.blobs_kept += 1;
                report.bytes_kept += size;
            } else {
                batch.push((digest.to_owned(), size));
            }
            done += 1;
            if done % PROGRESS_EVERY == 0 {
                progress(Progress {
                    phase: Phase::Blobs,
                    done,
                });
            }
            if batch.len() == BLOB_BATCH || (done % 1024 == 0 && Instant::now() >= until) {
                after = Some(digest.to_owned());
                more = true;
                break;
            }
        }
        // No snapshot is held while the sweep writes.
        drop(snapshot);
        if batch.len() == BLOB_BATCH {
            sweeper.sweep(writer, &mut batch, &mut report)?;
        }
        if !more {
            break;
        }
    }
    sweeper.sweep(writer, &mut batch, &mut report)?;
    sweeper.finish(writer)?;
    report_end(progress, Phase::Blobs, done);

    report.uploads_removed = sweep_uploads(core, now, dry_run, writer)?;
    progress(Progress {
        phase: Phase::Uploads,
        done: report.uploads_removed,
    });
    report.sweep_time = began.elapsed();
    Ok(report)
}

/// G4: removes the sessions older than the upload timeout, rows first, then files.
fn sweep_uploads(
    core: &Core,
    now: Timestamp,
    dry_run: bool,
    writer: &mut Writer<'_>,
) -> Result<u64> {
    let expired =
        uploads::started_before(&core.snapshot()?, now.saturating_sub(core.upload_timeout))?;
    if dry_run {
        return Ok(expired.len() as u64);
    }
    let mut removed = 0;
    for chunk in expired.chunks(SWEEP_BATCH) {
        let gone = writer.write(|b| {
            let mut gone = Vec::new();
            for id in chunk {
                if b.close_upload(id)? {
                    gone.push(id.clone());
                }
            }
            Ok(gone)
        })?;
        for id in gone {
            super::upload::forget(core, &id)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// G3: removes each doomed link that is unchanged since the mark and whose blob nobody used
/// since; returns how many went.
fn sweep_links(
    writer: &mut Writer<'_>,
    doomed: &[(String, String, u64)],
    progress: &mut impl FnMut(Progress),
) -> Result<u64> {
    let mut removed = 0;
    for (i, chunk) in doomed.chunks(SWEEP_BATCH).enumerate() {
        removed += writer.write(|b| {
            let mut removed = 0;
            for (repo, digest, linked) in chunk {
                removed += u64::from(b.unlink_unused(repo, digest, *linked)?);
            }
            Ok(removed)
        })?;
        progress(Progress {
            phase: Phase::Links,
            done: ((i + 1) * SWEEP_BATCH).min(doomed.len()) as u64,
        });
    }
    Ok(removed)
}

/// G1: removes unmarked blobs, records first; each file goes one transaction later.
struct BlobSweeper {
    dry_run: bool,
    /// Blobs whose record removal has committed, their files still there.
    pending: Vec<Unnamed>,
}

impl BlobSweeper {
    fn sweep(
        &mut self,
        writer: &mut Writer<'_>,
        batch: &mut Vec<(String, u64)>,
        report: &mut CollectReport,
    ) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        if self.dry_run {
            report.blobs_swept += batch.len() as u64;
            report.bytes_swept += batch.iter().map(|(_, size)| size).sum::<u64>();
            batch.clear();
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let core = writer.core;
        self.pending = writer.write(|b| {
            remove_files(core, b, &pending)?;
            let mut swept = Vec::new();
            for (digest, size) in batch.iter() {
                if b.forget_unused_blob(digest)? {
                    report.blobs_swept += 1;
                    report.bytes_swept += size;
                    swept.push(Unnamed::Blob(Digest::stored(digest)?));
                } else {
                    report.blobs_kept += 1;
                    report.bytes_kept += size;
                }
            }
            Ok(swept)
        })?;
        batch.clear();
        Ok(())
    }

    /// Removes the files of the last batch, in a transaction of their own.
    fn finish(self, writer: &mut Writer<'_>) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let core = writer.core;
        writer.write(|b| remove_files(core, b, &self.pending))
    }
}

/// Removes the files of swept blobs that no put recorded again since.
fn remove_files(core: &Core, tx: &mut Tx<'_>, files: &[Unnamed]) -> Result<()> {
    remove_unnamed(core, tx, files).map(drop)
}
