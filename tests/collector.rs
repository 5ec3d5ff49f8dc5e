//! The collector (SPEC G1–G6, S14): what a collection keeps, what it sweeps, what it reports,
//! and how it behaves while pushes, deletes and restores go on.
//!
//! The races of G2 are made deterministic with two hooks into a running collection: the
//! progress callback, which the collector calls on its own thread with no transaction open
//! (after each chunk of links it removes, and every 10,000 repositories it marks), and a clock
//! that runs a closure from inside a chosen call to `now` — the store reads its clock as each
//! write transaction begins, with the write lock held.

mod common;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::*;
use ocistore::manifest::OCI_MANIFEST;
use ocistore::{
    Algorithm, Clock, CollectOptions, CollectReport, Digest, Error, ManifestQuery, ManualClock,
    OnConflict, Page, Phase, Progress, Registry, RegistryBuilder, Repository, Restore,
    SoftDeletePolicy, Timestamp,
};
use ocistore_testkit::servers;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

fn collect(registry: &Registry) -> CollectReport {
    registry
        .collect(&CollectOptions::default())
        .expect("collect")
}

fn dry_run(registry: &Registry) -> CollectReport {
    registry
        .collect(&CollectOptions::default().dry_run(true))
        .expect("dry run")
}

fn with_grace(grace: Duration) -> CollectOptions {
    CollectOptions::default().grace_period(grace)
}

/// How many blob records the store holds, as a dry run counts them (G6).
fn blob_records(registry: &Registry) -> u64 {
    let r = dry_run(registry);
    r.blobs_marked + r.blobs_swept + r.blobs_kept
}

fn sha256(bytes: impl AsRef<[u8]>) -> Digest {
    Algorithm::Sha256.digest(bytes.as_ref())
}

/// The blob reads back from `repo`, its bytes hashing to its digest, and its file is there.
#[track_caller]
fn assert_readable(repo: &Repository, digest: &Digest) {
    let bytes = repo
        .blob(digest)
        .unwrap_or_else(|e| panic!("{digest} unreadable from {}: {e}", repo.name()));
    assert_eq!(
        &digest.algorithm().digest(&bytes),
        digest,
        "bytes of {digest}"
    );
    assert!(blob_file(repo.registry(), digest).exists());
}

/// The blob is gone from the store: no file, and `repo` has no link to it.
#[track_caller]
fn assert_swept(repo: &Repository, digest: &Digest) {
    assert!(
        matches!(repo.blob(digest), Err(Error::BlobUnknown { .. })),
        "{digest} still readable from {}",
        repo.name()
    );
    assert!(!repo.blobs(&Page::all()).unwrap().contains(digest));
    assert!(
        !blob_file(repo.registry(), digest).exists(),
        "the file of {digest} is still there"
    );
}

/// `repo` no longer links the blob, but its file is still in the store.
#[track_caller]
fn assert_unlinked_only(repo: &Repository, digest: &Digest) {
    assert!(matches!(repo.blob(digest), Err(Error::BlobUnknown { .. })));
    assert!(!repo.blobs(&Page::all()).unwrap().contains(digest));
    assert!(blob_file(repo.registry(), digest).exists());
}

/// The body of an image manifest over blobs already in `repo`.
fn body_over(repo: &Repository, config: &Digest, layers: &[&Digest]) -> Vec<u8> {
    let size = |d: &Digest| repo.blob_size(d).expect("blob linked");
    let layers: Vec<_> = layers.iter().map(|d| ((*d).clone(), size(d))).collect();
    serde_json::to_vec(&image_body(&(config.clone(), size(config)), &layers)).unwrap()
}

/// Links blob `bytes` into each repository named, in one transaction.
fn link_into_many(registry: &Registry, names: impl Iterator<Item = String>, bytes: &[u8]) {
    let digest = sha256(bytes);
    registry
        .batch(|b| {
            for name in names {
                b.put_blob(&registry.repository(&name)?, &digest, bytes)?;
            }
            Ok(())
        })
        .unwrap();
}

/// A report with its timings cleared, for comparing two runs.
fn untimed(r: &CollectReport) -> CollectReport {
    let mut r = r.clone();
    r.mark_time = Duration::ZERO;
    r.sweep_time = Duration::ZERO;
    r.longest_write = Duration::ZERO;
    r
}

// ---------------------------------------------------------------------------------------------
// A clock that can act from inside a transaction

type Hook = Box<dyn FnOnce() + Send>;

/// A manual clock that runs a hook once, inside the `n`th call to `now` after it is armed. The
/// call returns the time as it was before the hook ran, whatever the hook does to the clock.
#[derive(Clone)]
struct HookClock {
    time: ManualClock,
    calls: Arc<AtomicU64>,
    hook: Arc<Mutex<Option<(u64, Hook)>>>,
}

impl HookClock {
    fn new() -> HookClock {
        HookClock {
            time: ManualClock::new(START),
            calls: Arc::default(),
            hook: Arc::default(),
        }
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Runs `hook` inside the `n`th call to `now` from here on (1: the next one).
    fn arm(&self, n: u64, hook: impl FnOnce() + Send + 'static) {
        *self.hook.lock().unwrap() = Some((self.calls() + n, Box::new(hook)));
    }

    /// Waits until `now` has been called `n` times since `since` calls (or 5 s have passed).
    fn wait_calls(&self, since: u64, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.calls() < since + n && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
    }
}

impl fmt::Debug for HookClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HookClock")
            .field("time", &self.time)
            .finish()
    }
}

impl Clock for HookClock {
    fn now(&self) -> Timestamp {
        let t = self.time.now();
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let due = {
            let mut hook = self.hook.lock().unwrap();
            match &*hook {
                Some((at, _)) if *at == call => hook.take(),
                _ => None,
            }
        };
        if let Some((_, hook)) = due {
            hook();
        }
        t
    }
}

/// Bytes that say when a put starts reading them: `put_blob` takes them (`as_ref`) first of
/// all, before it looks for the blob's file.
struct Signalled {
    bytes: Vec<u8>,
    started: mpsc::Sender<()>,
}

impl AsRef<[u8]> for Signalled {
    fn as_ref(&self) -> &[u8] {
        let _ = self.started.send(());
        &self.bytes
    }
}

// ---------------------------------------------------------------------------------------------
// G1: roots, marks, the grace period

#[test]
fn g1_unreferenced_blobs_older_than_the_grace_period_lose_file_record_and_link() {
    let s = Store::new();
    let repo = s.repo("app");
    let image = push_image(&repo, "v1", "kept");
    let garbage = repo
        .put_blob_sha256(b"a layer no manifest references")
        .unwrap();
    assert_eq!(blob_records(&s.registry), 3);
    s.advance(2 * 3600);

    let report = collect(&s.registry);
    assert_eq!(
        (report.blobs_swept, report.bytes_swept, report.links_removed),
        (1, 30, 1)
    );
    assert_eq!((report.blobs_marked, report.blobs_kept), (2, 0));
    assert_swept(&repo, &garbage);
    assert_eq!(blob_records(&s.registry), 2, "the record went too");
    for d in seed_blobs("kept") {
        assert_readable(&repo, &d);
    }
    assert_eq!(repo.pull("v1").unwrap().digest, image);
    // Nothing left to do.
    let again = collect(&s.registry);
    assert_eq!((again.blobs_swept, again.links_removed), (0, 0));
}

#[test]
fn g1_blobs_no_older_than_the_grace_period_are_kept() {
    let s = Store::new(); // default grace period: one hour
    let repo = s.repo("app");
    let young = repo
        .put_blob_sha256(b"just uploaded, manifest not pushed yet")
        .unwrap();
    s.advance(59 * 60);
    let report = collect(&s.registry);
    assert_eq!((report.blobs_swept, report.blobs_kept), (0, 0));
    assert_eq!(report.blobs_marked, 1, "its young link marks it");
    assert_eq!(report.links_removed, 0);
    assert_readable(&repo, &young);

    // Exactly the grace period old: not older than it.
    s.advance(60);
    let report = collect(&s.registry);
    assert_eq!((report.blobs_swept, report.links_removed), (0, 0));
    assert_readable(&repo, &young);

    s.clock.advance(Duration::from_nanos(1));
    let report = collect(&s.registry);
    assert_eq!((report.blobs_swept, report.links_removed), (1, 1));
    assert_swept(&repo, &young);
}

#[test]
fn g1_roots_are_live_and_soft_deleted_manifests_with_their_configs_and_layers() {
    let s = Store::new();
    policy_on(&s, 7);
    let repo = s.repo("app");
    push_image(&repo, "live", "live");
    push_image(&repo, "binned", "binned");
    repo.delete_manifest("binned").unwrap();
    let untagged = push_image(&repo, "untagged", "untagged");
    repo.untag("untagged").unwrap();
    let gone = s.repo("gone");
    push_image(&gone, "v1", "in a deleted repository");
    s.registry.delete_repository("gone").unwrap();
    let garbage = repo.put_blob_sha256(b"garbage").unwrap();
    s.advance(2 * 3600);

    let report = collect(&s.registry);
    assert_eq!((report.blobs_swept, report.links_removed), (1, 1));
    assert_eq!(report.blobs_marked, 8);
    assert_swept(&repo, &garbage);
    for seed in ["live", "binned", "untagged"] {
        for d in seed_blobs(seed) {
            assert_readable(&repo, &d);
        }
    }
    // A soft-deleted repository reads nothing, but its blobs stay for a restore.
    for d in seed_blobs("in a deleted repository") {
        assert!(blob_file(&s.registry, &d).exists());
    }
    repo.restore(Restore::Tag("binned"), OnConflict::Refuse)
        .unwrap();
    assert_eq!(untagged_manifests(&repo)[0].digest, untagged);
    let restored = gone
        .restore(Restore::Tag("v1"), OnConflict::Refuse)
        .unwrap();
    assert_eq!(gone.pull("v1").unwrap().digest, restored);
    for d in seed_blobs("in a deleted repository") {
        assert_readable(&gone, &d);
    }
}

#[test]
fn g1_index_children_keep_their_layers_and_an_index_marks_no_blob() {
    let s = Store::new();
    let repo = s.repo("app");
    let amd = push_untagged(&repo, "amd64");
    let arm = push_untagged(&repo, "arm64");
    let index = push_index(&repo, Some("multi"), &[&amd, &arm]);
    // The bytes of a child manifest uploaded as a blob: the index references the manifest,
    // not this blob, which nothing references.
    let child_body = repo.pull(amd.as_str()).unwrap().body;
    let as_blob = repo.put_blob_sha256(&child_body).unwrap();
    assert_eq!(as_blob, amd);
    s.advance(2 * 3600);

    let report = collect(&s.registry);
    assert_eq!(report.blobs_marked, 4);
    assert_eq!((report.blobs_swept, report.links_removed), (1, 1));
    assert_eq!(report.bytes_swept, child_body.len() as u64);
    assert_swept(&repo, &as_blob);
    for seed in ["amd64", "arm64"] {
        for d in seed_blobs(seed) {
            assert_readable(&repo, &d);
        }
    }
    assert_eq!(repo.pull("multi").unwrap().digest, index);
    assert_eq!(repo.pull(amd.as_str()).unwrap().body, child_body);
}

#[test]
fn g1_a_purged_manifests_own_blobs_go_and_shared_ones_stay() {
    let s = Store::new();
    let repo = s.repo("app");
    let shared = repo.put_blob_sha256(b"base layer").unwrap();
    let mut images = Vec::new();
    for name in ["one", "two", "three"] {
        let config = repo.put_blob_sha256(format!("config {name}")).unwrap();
        let own = repo.put_blob_sha256(format!("layer {name}")).unwrap();
        let body = body_over(&repo, &config, &[&shared, &own]);
        repo.push_manifest(name, OCI_MANIFEST, &body).unwrap();
        images.push((config, own));
    }
    s.advance(2 * 3600);

    // Policy off: a delete purges.
    repo.delete_manifest("one").unwrap();
    let report = collect(&s.registry);
    assert_eq!((report.blobs_swept, report.links_removed), (2, 2));
    assert_swept(&repo, &images[0].0);
    assert_swept(&repo, &images[0].1);
    for d in [&shared, &images[1].0, &images[1].1] {
        assert_readable(&repo, d);
    }

    // Policy on: the bin keeps them until the manifest is purged from it by hand (S16).
    policy_on(&s, 7);
    let two = repo.delete_manifest("two").unwrap();
    assert_eq!(collect(&s.registry).blobs_swept, 0);
    repo.purge_deleted_manifest(&two[0]).unwrap();
    let report = collect(&s.registry);
    assert_eq!((report.blobs_swept, report.links_removed), (2, 2));
    assert_swept(&repo, &images[1].0);
    assert_swept(&repo, &images[1].1);
    assert_readable(&repo, &shared);

    // The last one referencing the shared layer goes: so does the layer.
    let three = repo.delete_manifest("three").unwrap();
    repo.purge_deleted_manifest(&three[0]).unwrap();
    let report = collect(&s.registry);
    assert_eq!((report.blobs_swept, report.links_removed), (3, 3));
    for d in [&shared, &images[2].0, &images[2].1] {
        assert_swept(&repo, d);
    }
    assert_eq!(blob_records(&s.registry), 0);
}

#[test]
fn g1_a_blob_shared_by_two_repositories_stays_while_one_references_it() {
    let s = Store::new();
    let (a, b) = (s.repo("team/a"), s.repo("team/b"));
    push_image(&a, "v1", "shared");
    b.mount_blob("team/a", &seed_blobs("shared")[1]).unwrap();
    let config_b = b.put_blob_sha256(b"config of b").unwrap();
    let body = body_over(&b, &config_b, &[&seed_blobs("shared")[1]]);
    b.push_manifest("v1", OCI_MANIFEST, &body).unwrap();
    s.advance(2 * 3600);

    a.delete_manifest("v1").unwrap();
    let report = collect(&s.registry);
    // a's config goes; a's link to the layer goes (G3); the layer stays for b.
    assert_eq!((report.blobs_swept, report.links_removed), (1, 2));
    let [config_a, layer] = seed_blobs("shared").try_into().unwrap();
    assert_swept(&a, &config_a);
    assert_unlinked_only(&a, &layer);
    assert_readable(&b, &layer);
    assert_readable(&b, &config_b);

    b.delete_manifest("v1").unwrap();
    let report = collect(&s.registry);
    assert_eq!((report.blobs_swept, report.links_removed), (2, 2));
    assert_swept(&b, &layer);
    assert_swept(&b, &config_b);
}

#[test]
fn g1_collect_options_grace_period_overrides_the_builders() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let registry = Registry::builder()
        .clock(clock.clone())
        .grace_period(Duration::from_secs(10 * 60))
        .open(dir.path())
        .unwrap();
    let repo = registry.repository("app").unwrap();
    let first = repo.put_blob_sha256(b"first").unwrap();
    clock.advance(Duration::from_secs(5 * 60));

    // Five minutes old: within the builder's ten, beyond an override of four.
    assert_eq!(collect(&registry).blobs_swept, 0);
    assert_readable(&repo, &first);
    let report = registry
        .collect(&with_grace(Duration::from_secs(4 * 60)))
        .unwrap();
    assert_eq!((report.blobs_swept, report.links_removed), (1, 1));
    assert_swept(&repo, &first);

    let second = repo.put_blob_sha256(b"second").unwrap();
    clock.advance(Duration::from_secs(11 * 60));
    // Eleven minutes old: within an override of a day, beyond the builder's ten minutes.
    let report = registry.collect(&with_grace(DAY)).unwrap();
    assert_eq!((report.blobs_swept, report.blobs_marked), (0, 1));
    assert_readable(&repo, &second);
    assert_eq!(collect(&registry).blobs_swept, 1);
    assert_swept(&repo, &second);
}

// ---------------------------------------------------------------------------------------------
// G2: online

#[test]
fn g2_a_push_after_its_link_was_swept_fails_and_a_put_again_during_the_run_keeps_the_blob() {
    let s = Store::new();
    let repo = s.repo("app");
    let config = repo.put_blob_sha256(b"{\"config\":true}").unwrap();
    let body = body_over(&repo, &config, &[]);
    s.advance(2 * 3600);

    let mut seen = Vec::new();
    let report = s
        .registry
        .collect_with_progress(&CollectOptions::default(), |p| {
            if p.phase != Phase::Links {
                return;
            }
            // The link is swept; the blob's record is not yet. A push does not see the blob.
            let err = fails_writing_nothing(&s.registry, || {
                repo.push_manifest("v1", OCI_MANIFEST, &body)
            });
            seen.push(format!("{err}"));
            assert!(matches!(err, Error::BlobUnknown { .. }), "{err}");
            // The client uploads it again, and the push goes through.
            repo.put_blob(&config, b"{\"config\":true}").unwrap();
            repo.push_manifest("v1", OCI_MANIFEST, &body).unwrap();
        })
        .unwrap();
    assert_eq!(
        seen.len(),
        1,
        "the callback ran once, after the links' sweep"
    );
    assert_eq!(report.links_removed, 1);
    assert_eq!(report.blobs_swept, 0, "the blob was used during the run");
    assert_eq!(report.blobs_kept, 1);
    assert_readable(&repo, &config);
    assert_eq!(&repo.pull("v1").unwrap().body[..], &body[..]);
    // Now referenced, it stays for good.
    s.advance(2 * 3600);
    assert_eq!(collect(&s.registry).blobs_swept, 0);
    assert_readable(&repo, &config);
}

#[test]
fn g2_a_manifest_pushed_while_links_are_swept_keeps_its_link_and_blob() {
    let s = Store::new();
    // 256 doomed links sort before ours, so the callback runs between two chunks of the sweep.
    link_into_many(
        &s.registry,
        (0..256).map(|i| format!("filler{i:03}")),
        b"filler",
    );
    let repo = s.repo("zz");
    let config = repo.put_blob_sha256(b"{\"late\":true}").unwrap();
    let body = body_over(&repo, &config, &[]);
    s.advance(2 * 3600);

    let mut pushed = None;
    let report = s
        .registry
        .collect_with_progress(&CollectOptions::default(), |p| {
            if (p.phase, p.done) == (Phase::Links, 256) {
                // The mark doomed zz's link; its turn in the sweep has not come.
                pushed = Some(
                    repo.push_manifest("v1", OCI_MANIFEST, &body)
                        .unwrap()
                        .digest,
                );
            }
        })
        .unwrap();
    assert!(pushed.is_some(), "the callback ran between the two chunks");
    assert_eq!(report.links_removed, 256);
    assert_eq!((report.blobs_swept, report.blobs_kept), (1, 1));
    assert_readable(&repo, &config);
    assert_eq!(&repo.pull("v1").unwrap().body[..], &body[..]);
    assert_swept(&s.repo("filler000"), &sha256(b"filler"));
}

#[test]
fn g2_a_manifest_pushed_during_the_mark_keeps_its_link_and_blob() {
    let s = Store::new();
    let repo = s.repo("zz");
    let config = repo.put_blob_sha256(b"{\"during the mark\":true}").unwrap();
    let body = body_over(&repo, &config, &[]);
    s.advance(2 * 3600);
    // 10,000 repositories before zz, their links young: the mark reports once, before zz.
    link_into_many(
        &s.registry,
        (0..10_000).map(|i| format!("r{i:05}")),
        b"young",
    );

    let mut pushed = None;
    let report = s
        .registry
        .collect_with_progress(&CollectOptions::default(), |p| {
            if p.phase == Phase::Mark && pushed.is_none() {
                pushed = Some(
                    repo.push_manifest("v1", OCI_MANIFEST, &body)
                        .unwrap()
                        .digest,
                );
            }
        })
        .unwrap();
    assert!(pushed.is_some(), "the mark reported");
    assert_eq!((report.links_removed, report.blobs_swept), (0, 0));
    assert_readable(&repo, &config);
    assert_eq!(&repo.pull("v1").unwrap().body[..], &body[..]);
}

#[test]
fn g2_put_blob_writes_a_swept_blob_again() {
    let s = Store::new();
    let repo = s.repo("app");
    let bytes = b"swept, then pushed again";
    let d = repo.put_blob_sha256(bytes).unwrap();
    s.advance(2 * 3600);
    assert_eq!(collect(&s.registry).blobs_swept, 1);
    assert_swept(&repo, &d);

    repo.put_blob(&d, bytes).unwrap();
    assert_readable(&repo, &d);
    let other = s.repo("other");
    other.put_blob(&d, bytes).unwrap();
    assert_readable(&other, &d);
}

/// A store on a [`HookClock`], with repository `app`.
fn hooked_store(upload_timeout: Duration) -> (tempfile::TempDir, HookClock, Registry, Repository) {
    let dir = tempfile::tempdir().unwrap();
    let clock = HookClock::new();
    let registry = Registry::builder()
        .clock(clock.clone())
        .upload_timeout(upload_timeout)
        .open(dir.path())
        .unwrap();
    let repo = registry.repository("app").unwrap();
    (dir, clock, registry, repo)
}

#[test]
fn g2_a_put_that_found_the_file_just_before_the_sweep_removed_it_writes_it_again() {
    let (_dir, clock, registry, repo) = hooked_store(DAY);
    let bytes = b"put again while it is swept".to_vec();
    let d = repo.put_blob_sha256(&bytes).unwrap();
    let file = blob_file(&registry, &d);
    clock.time.advance(2 * HOUR);

    let putter: Arc<Mutex<Option<JoinHandle<ocistore::Result<()>>>>> = Arc::default();
    let in_window = Arc::new(AtomicBool::new(false));
    let report = registry
        .collect_with_progress(&CollectOptions::default(), |p| {
            if p.phase != Phase::Links {
                return;
            }
            let (repo, d, bytes) = (repo.clone(), d.clone(), bytes.clone());
            let (putter, in_window, file) = (putter.clone(), in_window.clone(), file.clone());
            // Transaction 1 after the links removes the blob's record, transaction 2 its file.
            clock.arm(2, move || {
                in_window.store(file.exists(), Ordering::SeqCst);
                let (started, rx) = mpsc::channel();
                let handle = thread::spawn(move || repo.put_blob(&d, Signalled { bytes, started }));
                rx.recv().unwrap();
                // The put finds the file, then waits for the write lock this transaction holds.
                thread::sleep(Duration::from_millis(100));
                *putter.lock().unwrap() = Some(handle);
            });
        })
        .unwrap();
    let put = putter.lock().unwrap().take().expect("the hook ran");
    put.join().unwrap().unwrap();
    assert!(
        in_window.load(Ordering::SeqCst),
        "the hook no longer runs between the record's removal and the file's"
    );
    assert_eq!(
        report.blobs_swept, 1,
        "the record went before the put committed"
    );
    assert_eq!(repo.blob(&d).unwrap(), bytes);
    assert!(file.exists());
    assert_eq!(blob_records(&registry), 1);
}

#[test]
fn g2_an_upload_finished_across_the_sweep_of_its_blob_becomes_the_blob() {
    let (_dir, clock, registry, repo) = hooked_store(DAY);
    let bytes = b"uploaded again while it is swept";
    let d = repo.put_blob_sha256(bytes).unwrap();
    let upload = repo.start_upload().unwrap();
    upload.append(bytes).unwrap();
    clock.time.advance(2 * HOUR);

    let upload = Arc::new(upload);
    let finisher: Arc<Mutex<Option<JoinHandle<ocistore::Result<()>>>>> = Arc::default();
    let in_window = Arc::new(AtomicBool::new(false));
    let report = registry
        .collect_with_progress(&CollectOptions::default(), |p| {
            if p.phase != Phase::Links {
                return;
            }
            let (upload, d, clock2) = (upload.clone(), d.clone(), clock.clone());
            let (finisher, in_window) = (finisher.clone(), in_window.clone());
            let file = blob_file(&registry, &d);
            clock.arm(2, move || {
                in_window.store(file.exists(), Ordering::SeqCst);
                let before = clock2.calls();
                let handle = thread::spawn(move || upload.finish(&d));
                // `finish` reads the clock first, then finds the blob's file and waits for
                // the write lock this transaction holds.
                clock2.wait_calls(before, 1);
                thread::sleep(Duration::from_millis(100));
                *finisher.lock().unwrap() = Some(handle);
            });
        })
        .unwrap();
    let finish = finisher.lock().unwrap().take().expect("the hook ran");
    finish.join().unwrap().unwrap();
    assert!(in_window.load(Ordering::SeqCst));
    assert_eq!(report.blobs_swept, 1);
    assert_eq!(repo.blob(&d).unwrap(), &bytes[..]);
    assert_eq!(
        std::fs::read_dir(registry.path().join("uploads"))
            .unwrap()
            .count(),
        0,
        "the session's file became the blob"
    );
}

/// A small seeded random generator (xorshift64*): each client draws its own operations.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

#[derive(Default)]
struct Counts {
    pushes: AtomicU64,
    retried: AtomicU64,
    refused_binned: AtomicU64,
    mounts: AtomicU64,
    untags: AtomicU64,
    deletes: AtomicU64,
    restores: AtomicU64,
    purges: AtomicU64,
    pulls: AtomicU64,
    misses: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Every config and layer of manifest `digest` of `repo` reads back with its digest.
#[track_caller]
fn assert_complete(repo: &Repository, digest: &Digest, context: &str) {
    let manifest = repo.manifest(digest.as_str()).unwrap();
    for r in &manifest.references {
        let bytes = repo.blob(&r.digest).unwrap_or_else(|e| {
            panic!(
                "{context}: {} of {digest} in {}: {e}",
                r.digest,
                repo.name()
            )
        });
        assert_eq!(r.digest.algorithm().digest(&bytes), r.digest, "{context}");
    }
}

const STRESS_REPOS: [&str; 2] = ["stress/a", "stress/b"];

/// One client: pushes images sharing layers with the other clients', untags, deletes,
/// restores, purges from the bin and pulls, on its own tags, until `deadline`. What it just
/// pushed, restored or pulled is live and only it deletes its tags, so it must read whole.
fn client(registry: &Registry, id: usize, deadline: Instant, counts: &Counts) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let repos = STRESS_REPOS.map(|n| registry.repository(n).unwrap());
    while Instant::now() < deadline {
        let which = rng.below(2);
        let (repo, other) = (&repos[which], &repos[1 - which]);
        let tag = format!("c{id}-{}", rng.below(3));
        match rng.below(12) {
            0..=4 => {
                let image = rng.below(6);
                let blobs = [
                    format!("config {id}-{image}"),
                    format!("shared layer {}", image % 3),
                    format!("own layer {id}-{image}"),
                ];
                let mount = rng.below(2) == 0;
                for attempt in 0.. {
                    assert!(attempt < 100, "client {id} never got its push through");
                    let mut descriptors = Vec::new();
                    for bytes in &blobs {
                        let d = sha256(bytes);
                        let mounted = mount
                            && match repo.mount_blob(other.name(), &d) {
                                Ok(()) => true,
                                Err(Error::BlobUnknown { .. }) => false,
                                Err(e) => panic!("mount: {e}"),
                            };
                        if mounted {
                            bump(&counts.mounts);
                        } else {
                            // A put never fails, whatever the collector is doing.
                            repo.put_blob(&d, bytes).unwrap();
                        }
                        descriptors.push((d, bytes.len() as u64));
                    }
                    let body = serde_json::to_vec(&image_body(&descriptors[0], &descriptors[1..]))
                        .unwrap();
                    match repo.push_manifest(&tag, OCI_MANIFEST, &body) {
                        Ok(pushed) => {
                            bump(&counts.pushes);
                            assert_complete(repo, &pushed.digest, "just pushed");
                            break;
                        }
                        // Swept between the put and the push: the client uploads again (G2).
                        Err(Error::BlobUnknown { .. }) => bump(&counts.retried),
                        // It is in the bin: the client restores it instead (S13).
                        Err(Error::ManifestSoftDeleted { digest, .. }) => {
                            bump(&counts.refused_binned);
                            match repo
                                .restore(Restore::TagAndDigest(&tag, &digest), OnConflict::Refuse)
                            {
                                Ok(d) => {
                                    bump(&counts.restores);
                                    assert_complete(repo, &d, "restored instead of pushed");
                                }
                                // Purged meanwhile (S6), or its tag is live on another manifest.
                                Err(Error::NotDeleted { .. } | Error::TagConflict { .. }) => {}
                                Err(e) => panic!("restore instead of push: {e}"),
                            }
                            break;
                        }
                        Err(e) => panic!("push: {e}"),
                    }
                }
            }
            5 => match repo.untag(&tag) {
                Ok(()) => bump(&counts.untags),
                Err(Error::TagUnknown { .. } | Error::ManifestUnknown { .. }) => {}
                Err(e) => panic!("untag: {e}"),
            },
            6 | 7 => match repo.delete_manifest(&tag) {
                Ok(_) => bump(&counts.deletes),
                Err(Error::TagUnknown { .. } | Error::ManifestUnknown { .. }) => {}
                Err(e) => panic!("delete: {e}"),
            },
            8 | 9 => match repo.restore(Restore::Tag(&tag), OnConflict::Refuse) {
                Ok(d) => {
                    bump(&counts.restores);
                    assert_complete(repo, &d, "just restored");
                }
                Err(
                    Error::NotDeleted { .. }
                    | Error::TagConflict { .. }
                    | Error::ManifestUnknown { .. },
                ) => {}
                Err(e) => panic!("restore: {e}"),
            },
            10 => {
                let binned = repo.deleted_manifests().unwrap();
                if binned.is_empty() {
                    continue;
                }
                let victim = &binned[rng.below(binned.len())].digest;
                match repo.purge_deleted_manifest(victim) {
                    Ok(()) => bump(&counts.purges),
                    Err(Error::NotDeleted { .. }) => {}
                    Err(e) => panic!("purge: {e}"),
                }
            }
            _ => match repo.pull(&tag) {
                Ok(m) => {
                    bump(&counts.pulls);
                    assert_complete(repo, &m.digest, "just pulled");
                }
                Err(Error::ManifestUnknown { .. } | Error::TagUnknown { .. }) => {
                    bump(&counts.misses)
                }
                Err(e) => panic!("pull: {e}"),
            },
        }
    }
}

/// Every live manifest of the stress repositories pulls and reads whole.
fn assert_all_complete(registry: &Registry, context: &str) -> usize {
    let mut n = 0;
    for name in STRESS_REPOS {
        let repo = registry.repository(name).unwrap();
        for m in repo.manifests(&ManifestQuery::default()).unwrap() {
            assert_eq!(repo.pull(m.digest.as_str()).unwrap().digest, m.digest);
            assert_complete(&repo, &m.digest, context);
            n += 1;
        }
    }
    n
}

#[test]
fn g2_stress_clients_racing_collections_with_no_grace_never_lose_a_layer() {
    stress(Registry::builder());
}

#[test]
fn o2_g2_stress_on_azurite_never_loses_a_layer() {
    stress(Registry::builder().blob_store(servers::azurite_blobs(1 << 10)));
}

#[test]
fn o2_g2_stress_on_s3_never_loses_a_layer() {
    stress(Registry::builder().blob_store(servers::s3_blobs(5 << 20)));
}

/// Three clients push, delete, restore, purge and pull for three seconds while collections
/// with no grace period run back to back on the store `builder` opens; then every manifest,
/// live or restored from the bin, reads back whole.
fn stress(builder: RegistryBuilder) {
    let dir = tempfile::tempdir().unwrap();
    // The system clock, and no grace period: every blob not yet referenced is fair game.
    let registry = builder.cache_size(16 << 20).open(dir.path()).unwrap();
    registry
        .set_soft_delete_policy(SoftDeletePolicy::enabled(7).unwrap())
        .unwrap();
    let zero = with_grace(Duration::ZERO);
    let began = Instant::now();
    let deadline = began + Duration::from_secs(3);
    let counts = Counts::default();
    let (runs, swept, links) = thread::scope(|s| {
        let collector = s.spawn(|| {
            let (mut runs, mut swept, mut links) = (0, 0, 0);
            while Instant::now() < deadline {
                let report = registry.collect(&zero).unwrap();
                runs += 1;
                swept += report.blobs_swept;
                links += report.links_removed;
            }
            (runs, swept, links)
        });
        for id in 0..3 {
            let (registry, counts) = (&registry, &counts);
            s.spawn(move || client(registry, id, deadline, counts));
        }
        collector.join().unwrap()
    });

    let live = assert_all_complete(&registry, "live at the end");
    // Everything still in the bin restores whole.
    let mut binned = 0;
    for name in STRESS_REPOS {
        let repo = registry.repository(name).unwrap();
        for m in repo.deleted_manifests().unwrap() {
            repo.restore(Restore::Digest(&m.digest), OnConflict::Refuse)
                .unwrap();
            binned += 1;
        }
    }
    assert_eq!(assert_all_complete(&registry, "restored"), live + binned);
    // A last collection with nothing running beside it takes nothing any manifest needs.
    registry.collect(&zero).unwrap();
    assert_all_complete(&registry, "after the last collection");
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    eprintln!(
        "stress: {:?}; {runs} collections swept {swept} blobs and {links} links; \
         {} pushes ({} retried after a sweep, {} refused as binned and restored instead, \
         {} blobs mounted), {} untags, {} deletes, {} restores, {} purges, {} pulls \
         ({} missed); at the end {live} live and {binned} binned manifests",
        began.elapsed(),
        load(&counts.pushes),
        load(&counts.retried),
        load(&counts.refused_binned),
        load(&counts.mounts),
        load(&counts.untags),
        load(&counts.deletes),
        load(&counts.restores),
        load(&counts.purges),
        load(&counts.pulls),
        load(&counts.misses),
    );
    assert!(runs > 1 && load(&counts.pushes) > 0, "the test ran nothing");
}

#[test]
fn c1_collect_inside_a_batch_is_a_nested_write() {
    let s = Store::new();
    let repo = s.repo("app");
    let garbage = repo.put_blob_sha256(b"garbage").unwrap();
    s.advance(2 * 3600);
    let err = s
        .registry
        .batch(|_| s.registry.collect(&CollectOptions::default()))
        .unwrap_err();
    assert!(matches!(err, Error::NestedWrite { .. }), "{err}");
    assert_readable(&repo, &garbage);
    // Nothing was left half-done: the store collects normally afterwards.
    assert_eq!(collect(&s.registry).blobs_swept, 1);
}

// ---------------------------------------------------------------------------------------------
// G3: links

#[test]
fn g3_a_link_its_repository_does_not_reference_goes_after_the_grace_period() {
    let s = Store::new();
    let (a, b, c) = (s.repo("a"), s.repo("b"), s.repo("c"));
    push_image(&a, "v1", "base");
    let [config, layer] = seed_blobs("base").try_into().unwrap();
    b.mount_blob("a", &layer).unwrap();
    s.advance(2 * 3600);
    // c links the old blob afresh: its link is young.
    c.put_blob(&layer, b"layer base").unwrap();

    let report = collect(&s.registry);
    assert_eq!((report.links_removed, report.blobs_swept), (1, 0));
    assert_unlinked_only(&b, &layer);
    assert_readable(&a, &layer);
    assert_readable(&c, &layer);

    // With a's manifest purged, c's young link alone keeps the (old) blob.
    a.delete_manifest("v1").unwrap();
    let report = collect(&s.registry);
    assert_eq!((report.links_removed, report.blobs_swept), (2, 1));
    assert_swept(&a, &config);
    assert_unlinked_only(&a, &layer);
    assert_readable(&c, &layer);

    s.advance(2 * 3600);
    let report = collect(&s.registry);
    assert_eq!((report.links_removed, report.blobs_swept), (1, 1));
    assert_swept(&c, &layer);
}

// ---------------------------------------------------------------------------------------------
// G4: upload sessions

#[test]
fn g4_upload_sessions_older_than_the_timeout_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let registry = Registry::builder()
        .clock(clock.clone())
        .upload_timeout(HOUR)
        .open(dir.path())
        .unwrap();
    let repo = registry.repository("app").unwrap();
    let uploads = registry.path().join("uploads");
    let old = repo.start_upload().unwrap();
    old.append(b"abandoned").unwrap();
    clock.advance(HOUR / 2);
    let young = repo.start_upload().unwrap();
    young.append(b"still ").unwrap();
    clock.advance(HOUR / 2);

    // Exactly the timeout old: not older.
    assert_eq!(collect(&registry).uploads_removed, 0);
    clock.advance(Duration::from_secs(1));
    assert_eq!(dry_run(&registry).uploads_removed, 1);
    assert!(uploads.join(old.id()).exists(), "a dry run removes nothing");
    let report = collect(&registry);
    assert_eq!(report.uploads_removed, 1);
    assert!(!uploads.join(old.id()).exists());
    assert!(uploads.join(young.id()).exists());

    // Even with the clock set back within the timeout, the session is gone.
    clock.set(START.saturating_add(Duration::from_secs(60)));
    assert!(matches!(
        old.append(b"more"),
        Err(Error::UploadUnknown { ref id }) if id == old.id()
    ));
    assert!(matches!(
        repo.resume_upload(old.id()),
        Err(Error::UploadUnknown { .. })
    ));
    clock.set(START.saturating_add(HOUR));
    young.append(b"going").unwrap();
    let d = sha256(b"still going");
    young.finish(&d).unwrap();
    assert_readable(&repo, &d);
    assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 0);
}

#[test]
fn g4_a_session_finished_as_the_collector_removes_it_does_not_deadlock() {
    let (_dir, clock, registry, repo) = hooked_store(HOUR);
    let bytes = b"the last chunk, just in time";
    let d = sha256(bytes);
    let upload = repo.start_upload().unwrap();
    upload.append(bytes).unwrap();
    clock.time.advance(HOUR - Duration::from_secs(1));

    // Runs in `finish` as it checks the session's age, holding the session: the session
    // expires, and a collection removes it.
    let (clock2, registry2) = (clock.clone(), registry.clone());
    let (finished, report) = finish_racing(&clock, upload, d.clone(), move || {
        expire_and_collect(&clock2, registry2)
    });
    match finished {
        Ok(()) => assert_eq!(repo.blob(&d).unwrap(), &bytes[..]),
        Err(Error::UploadUnknown { .. }) => {}
        Err(e) => panic!("finish: {e}"),
    }
    assert_eq!(
        report.unwrap().uploads_removed,
        1,
        "the collection removed the session while finish held it"
    );
}

/// Expires the session and starts a collection, returning once it has removed the session's
/// row (its transactions: journal on, the mark's clock, the sessions' removal).
fn expire_and_collect(
    clock: &HookClock,
    registry: Registry,
) -> JoinHandle<ocistore::Result<CollectReport>> {
    clock.time.advance(Duration::from_secs(2));
    let before = clock.calls();
    let handle = thread::spawn(move || registry.collect(&CollectOptions::default()));
    clock.wait_calls(before, 3);
    handle
}

/// Finishes `upload` while `start` runs another call on another thread, started from inside
/// `finish` (as it checks the session's age, holding the session); fails if the two
/// deadlock. Returns both results.
fn finish_racing<T: Send + 'static>(
    clock: &HookClock,
    upload: ocistore::Upload,
    digest: Digest,
    start: impl FnOnce() -> JoinHandle<T> + Send + 'static,
) -> (ocistore::Result<()>, T) {
    let (done, finished) = mpsc::channel();
    let other: Arc<Mutex<Option<JoinHandle<T>>>> = Arc::default();
    {
        let (other, done) = (other.clone(), done.clone());
        clock.arm(1, move || {
            let handle = start();
            // Give it time to block on what `finish` holds, if it is going to.
            thread::sleep(Duration::from_millis(200));
            *other.lock().unwrap() = Some(handle);
            let _ = done.send(());
        });
    }
    let finisher = thread::spawn(move || {
        let finished = upload.finish(&digest);
        let _ = done.send(());
        finished
    });
    for _ in 0..2 {
        finished
            .recv_timeout(Duration::from_secs(10))
            .expect("finish and the other call deadlocked");
    }
    let finished = finisher.join().unwrap();
    let other = other.lock().unwrap().take().unwrap().join().unwrap();
    (finished, other)
}

/// Not the collector's, but the same lock order as above: a resume of a session whose finish
/// is under way.
#[test]
fn c3_resuming_an_upload_while_it_finishes_does_not_deadlock() {
    let (_dir, clock, _registry, repo) = hooked_store(DAY);
    let bytes = b"resumed while it finishes";
    let d = sha256(bytes);
    let upload = repo.start_upload().unwrap();
    upload.append(bytes).unwrap();

    let (id, repo2) = (upload.id().to_owned(), repo.clone());
    let (finished, resumed) = finish_racing(&clock, upload, d.clone(), move || {
        thread::spawn(move || repo2.resume_upload(&id))
    });
    finished.unwrap();
    assert_eq!(repo.blob(&d).unwrap(), &bytes[..]);
    assert!(matches!(resumed, Err(Error::UploadUnknown { .. })));
}

// ---------------------------------------------------------------------------------------------
// G5, G6: reports

/// A store with something of everything: live and binned images, a doomed link, garbage old
/// and young, a young blob no link names (its repository was purged), an expired upload
/// session. Returns the store and every blob with its size.
fn mixed_store() -> (Store, Vec<(Digest, u64)>) {
    let s = Store::new(); // grace one hour, uploads time out after a day
    policy_on(&s, 7);
    let (app, other, scratch) = (s.repo("app"), s.repo("other"), s.repo("scratch"));
    push_image(&app, "v1", "live");
    push_image(&app, "v2", "binned");
    app.delete_manifest("v2").unwrap();
    app.put_blob_sha256(b"old garbage").unwrap();
    other.mount_blob("app", &seed_blobs("live")[1]).unwrap();
    other.start_upload().unwrap().append(b"abandoned").unwrap();
    s.advance(25 * 3600);
    // Its young link marks it.
    other.put_blob_sha256(b"young garbage").unwrap();
    // No link names it, but it is young: kept.
    scratch.put_blob_sha256(b"young, unlinked").unwrap();
    s.registry.delete_repository("scratch").unwrap();
    s.registry.purge_deleted_repository("scratch").unwrap();
    let blobs = [
        "config live",
        "layer live",
        "config binned",
        "layer binned",
        "old garbage",
        "young garbage",
        "young, unlinked",
    ]
    .map(|b| (sha256(b), b.len() as u64))
    .to_vec();
    (s, blobs)
}

#[test]
fn g5_a_dry_run_reports_exactly_what_the_run_then_does_and_changes_nothing() {
    let (s, _) = mixed_store();
    let names = ["app", "other"];
    let before = state(&s.registry, &names);
    let dry = dry_run(&s.registry);
    assert_eq!(
        state(&s.registry, &names),
        before,
        "a dry run changed the store"
    );
    assert!(dry.dry_run);
    assert_eq!(
        dry.longest_write,
        Duration::ZERO,
        "a dry run writes nothing"
    );
    assert_eq!(
        (
            dry.blobs_swept,
            dry.bytes_swept,
            dry.links_removed,
            dry.uploads_removed
        ),
        (1, 11, 2, 1)
    );
    assert_eq!((dry.blobs_marked, dry.blobs_kept), (5, 1));

    let real = collect(&s.registry);
    assert!(!real.dry_run);
    let mut expected = untimed(&dry);
    expected.dry_run = false;
    assert_eq!(untimed(&real), expected);
    assert_ne!(state(&s.registry, &names), before);
    let after = dry_run(&s.registry);
    assert_eq!(
        (
            after.blobs_swept,
            after.links_removed,
            after.uploads_removed
        ),
        (0, 0, 0)
    );
}

#[test]
fn g6_marked_swept_and_kept_add_up_to_every_blob() {
    let (s, blobs) = mixed_store();
    assert_eq!(blobs.len(), 7);
    let total: u64 = blobs.iter().map(|(_, size)| size).sum();
    let report = collect(&s.registry);
    assert_eq!(
        (report.blobs_marked, report.blobs_swept, report.blobs_kept),
        (5, 1, 1)
    );
    assert_eq!(report.bytes_swept, 11);
    assert_eq!(report.bytes_kept, 15);
    assert_eq!(
        report.bytes_marked + report.bytes_swept + report.bytes_kept,
        total
    );
    // The run wrote (journal, sweep), and the sweep's transactions took some time.
    assert!(report.longest_write > Duration::ZERO);
    assert!(report.sweep_time > Duration::ZERO);

    let again = collect(&s.registry);
    assert_eq!(
        (again.blobs_marked, again.blobs_swept, again.blobs_kept),
        (5, 0, 1)
    );
    assert_eq!(again.bytes_marked + again.bytes_kept, total - 11);
}

#[test]
fn g6_an_empty_store_collects_to_an_empty_report() {
    let s = Store::new();
    let before = snapshot(&s.registry);
    for options in [
        CollectOptions::default(),
        CollectOptions::default()
            .dry_run(true)
            .grace_period(Duration::ZERO),
    ] {
        let report = s.registry.collect(&options).unwrap();
        let mut empty = CollectReport::default();
        empty.dry_run = options.dry_run;
        assert_eq!(untimed(&report), empty);
    }
    assert_eq!(snapshot(&s.registry), before);
}

#[test]
fn g6_progress_reports_come_phase_after_phase() {
    let s = Store::new();
    link_into_many(&s.registry, (0..300).map(|i| format!("p{i:03}")), b"doomed");
    let upload = s.repo("p000").start_upload().unwrap();
    upload.append(b"abandoned").unwrap();
    s.advance(25 * 3600);

    let mut seen: Vec<Progress> = Vec::new();
    let report = s
        .registry
        .collect_with_progress(&CollectOptions::default(), |p| seen.push(p))
        .unwrap();
    assert_eq!(
        (
            report.links_removed,
            report.blobs_swept,
            report.uploads_removed
        ),
        (300, 1, 1)
    );
    let rank = |p: &Progress| match p.phase {
        Phase::Mark => 0,
        Phase::Links => 1,
        Phase::Blobs => 2,
        Phase::Uploads => 3,
        _ => 4,
    };
    for pair in seen.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(
            rank(a) < rank(b) || (rank(a) == rank(b) && a.done <= b.done),
            "{seen:?}"
        );
    }
    let last = |phase| seen.iter().rev().find(|p| p.phase == phase).map(|p| p.done);
    // Every phase ends with its total, a small store's too.
    assert_eq!(last(Phase::Mark), Some(300), "{seen:?}");
    assert_eq!(last(Phase::Links), Some(300), "{seen:?}");
    assert_eq!(last(Phase::Blobs), Some(1), "{seen:?}");
    assert_eq!(last(Phase::Uploads), Some(1), "{seen:?}");
    assert!(seen.iter().filter(|p| p.phase == Phase::Links).count() >= 2);
}

// ---------------------------------------------------------------------------------------------
// S14: the recycle bin keeps its blobs

#[test]
fn s14_soft_deleted_items_keep_their_blobs_until_autopurge_purges_them() {
    let s = Store::new();
    policy_on(&s, 7);
    let app = s.repo("app");
    push_image(&app, "v1", "binned manifest");
    app.delete_manifest("v1").unwrap();
    push_image(&app, "v2", "untagged");
    app.untag("v2").unwrap();
    push_image(&s.repo("gone"), "v1", "binned repository");
    s.registry.delete_repository("gone").unwrap();
    s.advance(2 * 3600);

    let report = collect(&s.registry);
    assert_eq!(
        (
            report.blobs_swept,
            report.links_removed,
            report.blobs_marked
        ),
        (0, 0, 6)
    );
    for seed in ["binned manifest", "untagged"] {
        for d in seed_blobs(seed) {
            assert_readable(&app, &d);
        }
    }
    for d in seed_blobs("binned repository") {
        assert!(blob_file(&s.registry, &d).exists());
    }

    s.advance(8 * 24 * 3600);
    let purged = s.registry.run_now().unwrap();
    assert_eq!(purged.repositories, 1);
    let report = collect(&s.registry);
    // The binned manifest's two blobs and their links in app; the repository's two blobs
    // (its links went with it).
    assert_eq!((report.blobs_swept, report.links_removed), (4, 2));
    for d in seed_blobs("binned manifest") {
        assert_swept(&app, &d);
    }
    for d in seed_blobs("binned repository") {
        assert!(!blob_file(&s.registry, &d).exists());
    }
    // The untagged manifest is live: it keeps its blobs.
    for d in seed_blobs("untagged") {
        assert_readable(&app, &d);
    }
}
