//! SPEC M3 and M4 across processes: children of this test binary open one store shared with
//! the parent and push, delete, restore, purge and collect on it at once, while the parent
//! SIGKILLs one of them at a random acknowledgement. The parent's handle stays open through
//! every round, and the surviving children finish their work: neither restarts.
//!
//! The children are the `m…_child_…` tests, which do nothing unless `CHILD_DIR` is set.
//! `OCISTORE_KILL_ROUNDS` sets how many rounds the kill test runs (by hand: hundreds).

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use common::kills::{Kill, Rng, Worker, ack, check_manifest, run_crew};
use common::{child_test, deleted_manifest_digests, deleted_tag_pairs, image_body};
use ocistore::manifest::OCI_MANIFEST;
use ocistore::{
    Algorithm, BlobStore, CollectOptions, Digest, Error, FsckOptions, ManifestQuery,
    ObjectStoreBlobs, OnConflict, OpenMode, Page, Problem, Registry, Repository, Restore,
    SoftDeletePolicy,
};
use ocistore_testkit::servers;

/// Set to a store directory: the child opens it shared and works in it.
const CHILD_DIR: &str = "OCISTORE_TEST_PROCESS_DIR";
/// A name for the child, unique in the test, that its content carries.
const CHILD_NAME: &str = "OCISTORE_TEST_PROCESS_NAME";
/// How many steps a child that is not endless takes.
const CHILD_STEPS: &str = "OCISTORE_TEST_PROCESS_STEPS";
/// Set to an object store's location and part size (`az://… 1024`): the child's blobs live
/// there (O2), as the parent's do.
const CHILD_BLOBS: &str = "OCISTORE_TEST_PROCESS_BLOBS";
/// Rounds of the kill test; a few in `cargo test`.
const ROUNDS: &str = "OCISTORE_KILL_ROUNDS";

const REPO: &str = "kill/app";
/// How many old layers the G2 race reuses in turn.
const OLD_LAYERS: usize = 6;
/// How long the parent gives a write or a collection once its children are dead: the dead
/// ones' locks must have gone with them.
const BOUND: Duration = Duration::from_secs(30);

fn sha256(bytes: &[u8]) -> Digest {
    Algorithm::Sha256.digest(bytes)
}

/// Opens the store in `dir` shared, its blobs in the store directory or in the object store
/// `blobs` names (as [`CHILD_BLOBS`] does).
fn open_shared(dir: &Path, blobs: Option<&str>) -> Registry {
    let mut builder = Registry::builder().mode(OpenMode::Shared);
    if let Some(spec) = blobs {
        let (location, part) = spec.split_once(' ').unwrap();
        builder = builder.blob_store(servers::blobs_at(location, part.parse().unwrap()));
    }
    builder.open(dir).expect("open the store shared")
}

/// How a child names the object store `blobs` is on.
fn blobs_spec(blobs: &ObjectStoreBlobs) -> String {
    format!("{} {}", blobs.location(), blobs.part_size())
}

/// Grace 0: every blob nothing references is garbage at once, the harshest race for a push.
fn collect_now() -> CollectOptions {
    CollectOptions::default().grace_period(Duration::ZERO)
}

/// The child's store, name and steps, if this process is a child.
fn child_env() -> Option<(Registry, String, u64)> {
    let dir = std::env::var_os(CHILD_DIR)?;
    let name = std::env::var(CHILD_NAME).unwrap();
    let steps = std::env::var(CHILD_STEPS).map_or(0, |s| s.parse().unwrap());
    let blobs = std::env::var(CHILD_BLOBS).ok();
    Some((open_shared(Path::new(&dir), blobs.as_deref()), name, steps))
}

/// A child of the test binary running `test` as `name` on the store in `dir`.
fn worker(test: &str, dir: &Path, name: &str, steps: u64, endless: bool) -> Worker {
    let mut cmd = child_test(test);
    cmd.env(CHILD_DIR, dir)
        .env(CHILD_NAME, name)
        .env(CHILD_STEPS, steps.to_string());
    Worker { cmd, endless }
}

/// [`worker`], its blobs in the object store `blobs` names.
fn worker_on(blobs: Option<&str>, test: &str, dir: &Path, name: &str, steps: u64) -> Worker {
    let mut worker = worker(test, dir, name, steps, test == "m4_child_collector");
    if let Some(spec) = blobs {
        worker.cmd.env(CHILD_BLOBS, spec);
    }
    worker
}

/// Pushes `body` by `reference`, putting `blobs` again whenever a collection swept one between
/// its put and the push: a push racing a sweep may fail so (G2), and a client puts again.
fn push_putting_again(repo: &Repository, reference: &str, body: &[u8], blobs: &[&[u8]]) {
    for _ in 0..100 {
        match repo.push_manifest(reference, OCI_MANIFEST, body) {
            Ok(pushed) => return assert_eq!(pushed.digest, sha256(body)),
            Err(Error::BlobUnknown { .. }) => {
                for b in blobs {
                    repo.put_blob_sha256(b).unwrap();
                }
            }
            Err(e) => panic!("push {reference}: {e}"),
        }
    }
    panic!("push {reference}: its blobs were swept 100 times in a row");
}

/// The body of an image over `blobs`, config first, and the digests it references.
fn image(blobs: &[&[u8]]) -> (Vec<u8>, Vec<Digest>) {
    let entries: Vec<(Digest, u64)> = blobs.iter().map(|b| (sha256(b), b.len() as u64)).collect();
    let body = serde_json::to_vec(&image_body(&entries[0], &entries[1..])).unwrap();
    (body, entries.into_iter().map(|(d, _)| d).collect())
}

fn refs_field(refs: &[Digest]) -> String {
    refs.iter()
        .map(Digest::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

// =============================================================================================
// The children

/// A writer: pushes images (a fresh config, a fresh layer put one-shot or streamed, and one of
/// four layers every writer shares), deletes some into the bin, restores and purges some, for
/// its steps. Before each call it says what it tries, so that the parent knows which item the
/// kill may have left in either state.
#[test]
fn m4_child_writer() {
    let Some((registry, name, steps)) = child_env() else {
        return;
    };
    let repo = registry.repository(REPO).unwrap();
    let (_, mut rng) = Rng::from_time();
    let (mut live, mut binned) = (Vec::new(), Vec::new());
    for i in 0..steps {
        let config = format!("config {name} {i}").into_bytes();
        let mut unique = format!("layer {name} {i} ").into_bytes();
        let len = rng.below(64 * 1024) as usize;
        unique.extend(rng.bytes(len));
        let shared = format!("shared layer {}", i % 4).into_bytes();
        let blobs: [&[u8]; 3] = [&config, &unique, &shared];
        repo.put_blob_sha256(&config).unwrap();
        if i % 2 == 0 {
            let upload = repo.start_upload().unwrap();
            for chunk in unique.chunks(16 * 1024) {
                upload.append(chunk).unwrap();
            }
            upload.finish(&sha256(&unique)).unwrap();
        } else {
            repo.put_blob_sha256(&unique).unwrap();
        }
        repo.put_blob_sha256(&shared).unwrap();
        let (body, refs) = image(&blobs);
        let (digest, tag) = (sha256(&body), format!("{name}-{i}"));
        ack(format_args!(
            "try-push {digest} {tag} {}",
            refs_field(&refs)
        ));
        push_putting_again(&repo, &tag, &body, &blobs);
        ack(format_args!("pushed {digest}"));
        live.push((digest, tag));
        if i % 3 == 2 {
            let (d, tag) = live.remove(live.len() - 2);
            ack(format_args!("try-delete {d}"));
            repo.delete_manifest(d.as_str()).unwrap();
            ack(format_args!("deleted {d}"));
            binned.push((d, tag));
        }
        if i % 4 == 3 && !binned.is_empty() {
            let (d, tag) = binned.remove(0);
            ack(format_args!("try-restore {d}"));
            repo.restore(Restore::TagAndDigest(&tag, &d), OnConflict::Refuse)
                .unwrap();
            ack(format_args!("restored {d}"));
            live.push((d, tag));
        }
        if i % 5 == 4 && !binned.is_empty() {
            let (d, _) = binned.remove(0);
            ack(format_args!("try-purge {d}"));
            repo.purge_deleted_manifest(&d).unwrap();
            ack(format_args!("purged {d}"));
        }
    }
}

/// A collector: collects with grace 0 until its stdin closes, saying when each collection
/// starts, where it is and what it swept, so that a kill lands in any phase.
#[test]
fn m4_child_collector() {
    let Some((registry, _, _)) = child_env() else {
        return;
    };
    let closed = Arc::new(AtomicBool::new(false));
    let flag = closed.clone();
    thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        flag.store(true, Ordering::SeqCst);
    });
    while !closed.load(Ordering::SeqCst) {
        ack(format_args!("collecting"));
        let report = registry
            .collect_with_progress(&collect_now(), |p| {
                ack(format_args!("progress {:?} {}", p.phase, p.done));
            })
            .unwrap();
        ack(format_args!("collected {}", report.blobs_swept));
        // Leave the writers room: a collection of this small store is quick.
        thread::sleep(Duration::from_millis(2));
    }
}

/// The G2 race: for each step, purges the image that last used one of the old layers, which
/// leaves the layer garbage, and pushes a new image reusing it without putting it again, as a
/// client does for a layer the registry has. Says `pushed` for a push that returned Ok, and
/// `unknown` for one a sweep came first for (G2: then it puts the layer and pushes again).
#[test]
fn m3_child_reuser() {
    let Some((registry, name, steps)) = child_env() else {
        return;
    };
    let repo = registry.repository(REPO).unwrap();
    let mut last: Vec<Option<Digest>> = vec![None; OLD_LAYERS];
    for i in 0..steps {
        let k = i as usize % OLD_LAYERS;
        if let Some(d) = last[k].take() {
            repo.delete_manifest(d.as_str()).unwrap();
            repo.purge_deleted_manifest(&d).unwrap();
            ack(format_args!("purged {d}"));
        }
        let config = format!("config {name} {i}").into_bytes();
        let layer = old_layer(k);
        let (body, refs) = image(&[&config, &layer]);
        repo.put_blob_sha256(&config).unwrap();
        let digest = match repo.push_manifest(&format!("{name}-{i}"), OCI_MANIFEST, &body) {
            Ok(pushed) => pushed.digest,
            Err(Error::BlobUnknown { digest, .. }) => {
                ack(format_args!("unknown {digest}"));
                push_putting_again(&repo, &format!("{name}-{i}"), &body, &[&config, &layer]);
                sha256(&body)
            }
            Err(e) => panic!("push {i}: {e}"),
        };
        ack(format_args!("pushed {digest} {}", refs_field(&refs)));
        last[k] = Some(digest);
    }
}

fn old_layer(k: usize) -> Vec<u8> {
    format!("old layer {k}").into_bytes()
}

// =============================================================================================
// The parent's checks

/// Where a manifest is, or may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Where {
    Live,
    Binned,
    /// Purged, or never pushed.
    Gone,
}

/// A manifest a writer tried to push: its tag, what it references, where it may be, and
/// whether its blobs were read back whole already (once is enough: a blob file never changes,
/// and every round's fsck hashes them all; later rounds check they are still there).
#[derive(Debug)]
struct Entry {
    tag: String,
    refs: Vec<Digest>,
    places: Vec<Where>,
    hashed: bool,
}

/// Everything the writers said, over all rounds. Only one call of one child can be cut short
/// by a kill, so every other item has exactly one place.
#[derive(Default)]
struct Ledger {
    manifests: HashMap<Digest, Entry>,
    collections: u64,
    swept: u64,
}

impl Ledger {
    fn record(&mut self, line: &str) {
        let parts: Vec<&str> = line.split(' ').collect();
        let digest = |s: &str| Digest::parse(s).unwrap();
        let mut set = |d: &str, places: &[Where]| {
            self.manifests.get_mut(&digest(d)).unwrap().places = places.to_vec();
        };
        match parts[..] {
            ["try-push", d, tag, refs] => {
                let entry = Entry {
                    tag: tag.to_owned(),
                    refs: refs.split(',').map(digest).collect(),
                    places: vec![Where::Gone, Where::Live],
                    hashed: false,
                };
                self.manifests.insert(digest(d), entry);
            }
            ["pushed", d] | ["restored", d] => set(d, &[Where::Live]),
            ["try-delete", d] | ["try-restore", d] => set(d, &[Where::Live, Where::Binned]),
            ["deleted", d] => set(d, &[Where::Binned]),
            ["try-purge", d] => set(d, &[Where::Binned, Where::Gone]),
            ["purged", d] => set(d, &[Where::Gone]),
            ["collecting"] | ["progress", ..] => {}
            ["collected", swept] => {
                self.collections += 1;
                self.swept += swept.parse::<u64>().unwrap();
            }
            _ => panic!("unexpected acknowledgement {line:?}"),
        }
    }

    /// Every manifest is where it was acknowledged, with its tag; one left in either place by
    /// the kill is settled where it is found. Every manifest the store holds was tried. The
    /// store is read in a few listings, since the ledger grows with the rounds; a manifest is
    /// pulled and its blobs hashed once settled, and only their links looked up after (fsck
    /// vouches for the bytes of every linked blob).
    fn verify(&mut self, repo: &Repository, context: &str) {
        let open: Vec<_> = self
            .manifests
            .values()
            .filter(|e| e.places.len() > 1)
            .collect();
        assert!(
            open.len() <= 1,
            "{context}: more than the kill left open: {open:?}"
        );
        let live: HashMap<Digest, Vec<String>> = repo
            .manifests(&ManifestQuery::default())
            .unwrap()
            .into_iter()
            .map(|m| (m.digest, m.tags))
            .collect();
        let live_tags: HashSet<&String> = live.values().flatten().collect();
        let binned = deleted_manifest_digests(repo);
        let binned_tags = deleted_tag_pairs(repo);
        let linked: HashSet<Digest> = repo.blobs(&Page::all()).unwrap().into_iter().collect();
        for (digest, entry) in &mut self.manifests {
            let found = if live.contains_key(digest) {
                Where::Live
            } else if binned.contains(digest) {
                Where::Binned
            } else {
                Where::Gone
            };
            assert!(
                entry.places.contains(&found),
                "{context}: {digest} is {found:?}, acknowledged {:?}",
                entry.places
            );
            entry.places = vec![found];
            let tagged = live.get(digest).is_some_and(|t| t.contains(&entry.tag));
            let in_bin = binned_tags.contains(&(entry.tag.clone(), digest.clone()));
            assert_eq!(
                (tagged, in_bin),
                (found == Where::Live, found == Where::Binned),
                "{context}: tag {} of {digest} ({found:?})",
                entry.tag
            );
            // Tags are never reused: one left live could only point at the wrong manifest.
            assert!(
                found == Where::Live || !live_tags.contains(&entry.tag),
                "{context}: tag {} of {digest} ({found:?}) is live",
                entry.tag
            );
            let context = format!("{context}: {digest} ({found:?})");
            match found {
                Where::Gone => {}
                _ if entry.hashed => {
                    for blob in &entry.refs {
                        assert!(linked.contains(blob), "{context}: {blob} is gone");
                    }
                }
                Where::Live => {
                    check_manifest(repo, digest, &context);
                    entry.hashed = true;
                }
                Where::Binned => {
                    blobs_whole(repo, &entry.refs, &context);
                    entry.hashed = true;
                }
            }
        }
        for digest in live.keys().chain(&binned) {
            assert!(
                self.manifests.contains_key(digest),
                "{context}: {digest} was never pushed"
            );
        }
    }
}

/// Every blob in `refs` reads back whole through `repo`.
fn blobs_whole(repo: &Repository, refs: &[Digest], context: &str) {
    for blob in refs {
        let bytes = repo
            .blob(blob)
            .unwrap_or_else(|e| panic!("{context}: references {blob}: {e}"));
        assert_eq!(&sha256(&bytes), blob, "{context}: {blob} is not whole");
    }
}

/// Runs `call` on another thread and gives it `BOUND` to return.
fn within_bound<T: Send + 'static>(
    what: &str,
    context: &str,
    call: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(call()));
    rx.recv_timeout(BOUND)
        .unwrap_or_else(|_| panic!("{context}: {what} did not return within {BOUND:?}"))
}

/// What the parent checks after a round, on its handle: a write of its own goes through;
/// repair finds only the stray files a killed process leaves (a put's temporary file, a blob
/// renamed into place or a session's file created before the commit naming it), and a second
/// check finds nothing; a new collection runs, the dead collector's lock gone with it.
fn survivor_goes_on(registry: &Registry, round: u64, context: &str) -> u64 {
    let repo = registry.repository("kill/parent").unwrap();
    let config = format!("parent config {round}");
    let (body, _) = image(&[config.as_bytes()]);
    let digest = within_bound("a parent write", context, move || {
        repo.put_blob_sha256(config).unwrap();
        repo.push_manifest(&format!("p{round}"), OCI_MANIFEST, &body)
            .unwrap()
            .digest
    });
    let repo = registry.repository("kill/parent").unwrap();
    assert_eq!(
        repo.resolve(&format!("p{round}")).unwrap(),
        digest,
        "{context}"
    );
    // The parent's images of every round so far, its own acknowledged writes.
    for m in repo.manifests(&ManifestQuery::default()).unwrap() {
        check_manifest(&repo, &m.digest, context);
    }
    let repair = FsckOptions::default()
        .repair(true)
        .grace_period(Duration::ZERO);
    let repaired = registry.fsck(&repair).unwrap();
    assert!(
        repaired.problems.iter().all(|p| matches!(
            p,
            Problem::StrayBlobFile { .. } | Problem::TempFile { .. } | Problem::StrayUpload { .. }
        )),
        "{context}: {:?}",
        repaired.problems
    );
    assert_eq!(
        repaired.repaired,
        repaired.problems.len() as u64,
        "{context}: {repaired:?}"
    );
    // Without hashing again: the repair did a moment ago.
    let again = FsckOptions::default().verify_digests(false);
    assert_eq!(registry.fsck(&again).unwrap().problems, [], "{context}");
    let collector = registry.clone();
    within_bound("a new collection", context, move || {
        collector.collect(&collect_now()).unwrap()
    });
    repaired.repaired
}

/// Every live manifest of every repository pulls, with every blob it references whole.
fn all_whole(registry: &Registry, context: &str) {
    for name in registry.repositories(&Page::all()).unwrap() {
        let repo = registry.repository(&name).unwrap();
        for m in repo.manifests(&ManifestQuery::default()).unwrap() {
            check_manifest(&repo, &m.digest, context);
        }
    }
}

/// The soft delete policy on, for deletes to go to the bin.
fn shared_store(dir: &Path, blobs: Option<&str>) -> Registry {
    let registry = open_shared(dir, blobs);
    registry
        .set_soft_delete_policy(SoftDeletePolicy::enabled(7).unwrap())
        .unwrap();
    registry
}

// =============================================================================================
// The tests

#[test]
fn m4_killed_processes_lose_nothing_any_process_acknowledged() {
    kill_rounds(None, 16);
}

#[test]
fn o2_m4_killed_processes_lose_nothing_with_blobs_on_azurite() {
    kill_rounds(Some(&blobs_spec(&servers::azurite_blobs(1 << 10))), 6);
}

#[test]
fn o2_m4_killed_processes_lose_nothing_with_blobs_on_s3() {
    kill_rounds(Some(&blobs_spec(&servers::s3_blobs(5 << 20))), 6);
}

/// Rounds of children killed at random on one store (`OCISTORE_KILL_ROUNDS`, else
/// `default_rounds`), its blobs in the directory or in the object store `blobs` names.
fn kill_rounds(blobs: Option<&str>, default_rounds: u64) {
    let rounds = std::env::var(ROUNDS).map_or(default_rounds, |r| r.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let registry = shared_store(&path, blobs);
    let (seed, mut rng) = Rng::from_time();
    let mut ledger = Ledger::default();
    let (began, mut strays, mut mid_collection) = (Instant::now(), 0, 0);
    for round in 0..rounds {
        let writers = 1 + rng.below(2);
        let steps = 12;
        let mut workers = vec![worker_on(
            blobs,
            "m4_child_collector",
            &path,
            &format!("r{round}c"),
            0,
        )];
        for w in 0..writers {
            let name = format!("r{round}w{w}");
            workers.push(worker_on(blobs, "m4_child_writer", &path, &name, steps));
        }
        // The collector one round in three, at any of its lines; a writer at any of its calls;
        // one round in five, either while it starts.
        let kill = if round % 5 == 4 {
            Kill {
                worker: rng.below(1 + writers) as usize,
                after: 0,
            }
        } else if round % 3 == 0 {
            Kill {
                worker: 0,
                after: 1 + rng.below(40),
            }
        } else {
            Kill {
                worker: 1 + rng.below(writers) as usize,
                after: 1 + rng.below(2 * steps),
            }
        };
        let context = format!("seed {seed}, round {round}, {writers} writers, kill {kill:?}");
        // Whether the collector's last line was inside a collection.
        let mut collecting = false;
        run_crew(
            workers,
            Some(kill),
            &mut rng,
            dir.path(),
            &context,
            |i, line| {
                if i == 0 {
                    collecting = !line.starts_with("collected");
                }
                ledger.record(line);
            },
        );
        if kill.worker == 0 && collecting {
            mid_collection += 1;
        }
        strays += survivor_goes_on(&registry, round, &context);
        ledger.verify(&registry.repository(REPO).unwrap(), &context);
        println!("{context}: passed at {:?}", began.elapsed());
    }
    println!(
        "seed {seed}: {rounds} rounds in {:?}, {} manifests, {} collections sweeping {} blobs, \
         {mid_collection} kills mid-collection, {strays} stray files repaired",
        began.elapsed(),
        ledger.manifests.len(),
        ledger.collections,
        ledger.swept,
    );
}

#[test]
fn m3_a_collector_in_one_process_never_sweeps_a_blob_a_push_in_another_uses() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let registry = shared_store(&path, None);
    let repo = registry.repository(REPO).unwrap();
    // The old layers, each under an image deleted and purged: garbage, linked still.
    for k in 0..OLD_LAYERS {
        let (body, _) = image(&[format!("old config {k}").as_bytes(), &old_layer(k)]);
        repo.put_blob_sha256(format!("old config {k}")).unwrap();
        repo.put_blob_sha256(old_layer(k)).unwrap();
        let d = repo
            .push_manifest(&format!("old-{k}"), OCI_MANIFEST, &body)
            .unwrap()
            .digest;
        repo.delete_manifest(d.as_str()).unwrap();
        repo.purge_deleted_manifest(&d).unwrap();
    }
    let (seed, mut rng) = Rng::from_time();
    let old: Vec<Digest> = (0..OLD_LAYERS).map(|k| sha256(&old_layer(k))).collect();
    // Pushes that a sweep came first for, and how many of those for an old layer.
    let (mut pushed, mut unknown, mut swept) = (HashMap::new(), (0, 0), 0);
    for round in 0..3 {
        let context = format!("seed {seed}, round {round}");
        let workers = vec![
            worker("m4_child_collector", &path, "collector", 0, true),
            worker("m3_child_reuser", &path, &format!("r{round}"), 60, false),
        ];
        run_crew(workers, None, &mut rng, dir.path(), &context, |_, line| {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts[..] {
                ["pushed", d, refs] => {
                    let refs: Vec<Digest> =
                        refs.split(',').map(|r| Digest::parse(r).unwrap()).collect();
                    pushed.insert(Digest::parse(d).unwrap(), refs);
                }
                ["purged", d] => {
                    pushed.remove(&Digest::parse(d).unwrap());
                }
                ["unknown", d] => {
                    let d = Digest::parse(d).unwrap();
                    unknown.0 += 1;
                    unknown.1 += usize::from(old.contains(&d));
                }
                ["collected", n] => swept += n.parse::<u64>().unwrap(),
                ["collecting"] | ["progress", ..] => {}
                _ => panic!("unexpected acknowledgement {line:?}"),
            }
        });
        // Every push acknowledged and not purged since pulls, its blobs whole.
        for (digest, refs) in &pushed {
            repo.pull(digest.as_str())
                .unwrap_or_else(|e| panic!("{context}: acknowledged {digest}: {e}"));
            blobs_whole(&repo, refs, &format!("{context}: {digest}"));
        }
        let report = registry.fsck(&FsckOptions::default()).unwrap();
        assert_eq!(report.problems, [], "{context}");
        all_whole(&registry, &context);
    }
    println!(
        "seed {seed}: {} images live, {} pushes that a sweep came first for ({} for an old \
         layer), {swept} blobs swept",
        pushed.len(),
        unknown.0,
        unknown.1
    );
}

/// Run as a child by `m4_a_writer_killed_alone_leaves_read_only_opens_waiting_for_a_writer`:
/// pushes `NAME:v1`, says so, and waits to be killed.
#[test]
fn m4_child_lone_writer() {
    let Some((registry, name, _)) = child_env() else {
        return;
    };
    let repo = registry.repository(REPO).unwrap();
    let body = serde_json::to_vec(&image_body(
        &(
            repo.put_blob_sha256(name.as_bytes()).unwrap(),
            name.len() as u64,
        ),
        &[],
    ))
    .unwrap();
    let digest = repo
        .push_manifest(&name, OCI_MANIFEST, &body)
        .unwrap()
        .digest;
    println!("PUSHED {digest}");
    thread::sleep(Duration::from_secs(60));
}

#[test]
fn m4_a_writer_killed_alone_leaves_read_only_opens_waiting_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    drop(open_shared(&path, None));
    let mut child = child_test("m4_child_lone_writer")
        .env(CHILD_DIR, &path)
        .env(CHILD_NAME, "lone")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = String::new();
    let mut stdout = child.stdout.take().unwrap();
    while !out.contains("PUSHED ") || !out.ends_with('\n') {
        let mut buf = [0; 256];
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "the child ended before it pushed: {out}");
        out.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let acked = out
        .split_once("PUSHED ")
        .and_then(|(_, rest)| rest.lines().next())
        .map(|d| Digest::parse(d.trim()).unwrap())
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    // No writer is left to repair what the killed one left: a read-only open cannot, and says so.
    let read_only = || Registry::builder().mode(OpenMode::ReadOnly).open(&path);
    match read_only() {
        Err(Error::NeedsRecovery { path: p }) => assert_eq!(p, path),
        other => panic!("expected NeedsRecovery, got {:?}", other.map(drop)),
    }
    // A writing open recovers it, and the acknowledged push is there for every mode after.
    let writer = open_shared(&path, None);
    assert_eq!(
        writer.repository(REPO).unwrap().resolve("lone").unwrap(),
        acked
    );
    let reader = read_only().unwrap();
    assert_eq!(
        reader.repository(REPO).unwrap().resolve("lone").unwrap(),
        acked
    );
}
