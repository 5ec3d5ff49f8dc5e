//! SPEC C1 (atomic, durable calls and batches), C2 (crash consistency, stray files, the
//! on-disk format and its lock) and C3 (a shareable handle whose readers never wait for
//! writers), with reopening.
//!
//! Two tests re-execute this test binary as a child process: the child runs one of the
//! `c2_child_…` tests, which do nothing unless their environment variable is set.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::kills::{Kill, Rng, Worker, ack, check_manifest, run_crew};
use common::{
    START, Store, child_test, image_body, index_body, push_image, snapshot, upload_image,
};
use ocistore::manifest::{OCI_INDEX, OCI_MANIFEST};
use ocistore::{
    Algorithm, CollectOptions, Digest, Error, FORMAT_VERSION, FsckOptions, ManifestQuery,
    ManualClock, OnConflict, Page, Problem, Registry, Repository, Restore, SoftDeletePolicy,
    Timestamp,
};
use serde_json::json;

/// Set to a store directory: a `c2_child_…_worker` writes into it until killed.
const WORKER_DIR: &str = "OCISTORE_TEST_CRASH_WORKER_DIR";
/// The round number the worker is in, so every round writes new content.
const WORKER_ROUND: &str = "OCISTORE_TEST_CRASH_WORKER_ROUND";
/// Set to a store directory: `c2_child_open_probe` tries to open it and prints the result.
const PROBE_DIR: &str = "OCISTORE_TEST_OPEN_PROBE_DIR";

fn sha256(bytes: &[u8]) -> Digest {
    Algorithm::Sha256.digest(bytes)
}

fn to_vec(value: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

// =============================================================================================
// C1: atomic and durable

/// A store with something of every kind in it: blobs of every algorithm, a streamed upload, a
/// mount, an image, an index, a referrer, a moved tag and an open upload session.
fn populate(store: &Store) -> (Digest, String) {
    let app = store.repo("team/app");
    let other = store.repo("team/other");
    for alg in Algorithm::ALL {
        let bytes = format!("a {alg} blob");
        app.put_blob(&alg.digest(bytes.as_bytes()), bytes.as_bytes())
            .unwrap();
    }
    let upload = app.start_upload().unwrap();
    upload.append(b"streamed ").unwrap();
    upload.append(b"layer").unwrap();
    let streamed = sha256(b"streamed layer");
    upload.finish(&streamed).unwrap();
    other.mount_blob("team/app", &streamed).unwrap();
    store.advance(10);
    let v1 = push_image(&app, "v1", "one");
    store.advance(10);
    let v2 = push_image(&app, "v2", "two");
    let size = app.pull(v1.as_str()).unwrap().body.len() as u64;
    let index = to_vec(&index_body(&[(v1.clone(), size), (v2.clone(), size)]));
    app.push_manifest("multi", OCI_INDEX, &index).unwrap();
    let config = (app.put_blob_sha256(b"{}").unwrap(), 2);
    let referrer = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config.0, "size": 2},
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": v1, "size": size},
    });
    let referrer = to_vec(&referrer);
    app.push_manifest(sha256(&referrer).as_str(), OCI_MANIFEST, &referrer)
        .unwrap();
    store.advance(10);
    app.tag("v1", &v2).unwrap(); // moved: the first image stays, untagged
    let body = upload_image(
        &other,
        b"other config",
        &[b"other layer", b"streamed layer"],
    );
    other.push_manifest("latest", OCI_MANIFEST, &body).unwrap();
    let open = app.start_upload().unwrap();
    open.append(b"half an upload").unwrap();
    (v1, open.id().to_owned())
}

#[test]
fn c1_every_acknowledged_write_survives_reopen() {
    let store = Store::new();
    let (v1, session) = populate(&store);
    let before = snapshot(&store.registry);
    let referrers_before = store.repo("team/app").referrers(&v1, None).unwrap();
    let pulled_before = store.repo("team/app").pull("multi").unwrap();
    assert!(!referrers_before.is_empty());

    let store = store.reopen();
    assert_eq!(before, snapshot(&store.registry));
    let app = store.repo("team/app");
    assert_eq!(app.referrers(&v1, None).unwrap(), referrers_before);
    assert_eq!(app.pull("multi").unwrap(), pulled_before);
    assert_eq!(app.pull(v1.as_str()).unwrap().digest, v1);
    assert_eq!(app.resume_upload(&session).unwrap().offset(), 14);
    // And it takes writes again, which survive a second reopen.
    let v3 = push_image(&app, "v3", "three");
    drop(app);
    let before = snapshot(&store.registry);
    let store = store.reopen();
    assert_eq!(before, snapshot(&store.registry));
    assert_eq!(store.repo("team/app").resolve("v3").unwrap(), v3);
}

#[test]
fn c1_a_batch_of_many_pushes_commits_together() {
    const N: usize = 60;
    let store = Store::new();
    let app = store.repo("batch/app");
    let base = store.repo("base");
    let config = (base.put_blob_sha256(b"config").unwrap(), 6);
    let before = snapshot(&store.registry);
    let seen_inside = AtomicUsize::new(usize::MAX);
    let digests = store
        .registry
        .batch(|b| {
            b.mount_blob(&app, &base, &config.0)?;
            let mut digests = Vec::new();
            for i in 0..N {
                let mut body = image_body(&config, &[]);
                body["annotations"] = json!({"i": i.to_string()});
                let d = b
                    .push_manifest(&app, &format!("t{i}"), OCI_MANIFEST, &to_vec(&body))?
                    .digest;
                b.tag(&app, "latest", &d)?;
                digests.push(d);
                if i == N / 2 {
                    // Halfway, neither this thread nor another sees any of it.
                    assert!(app.tags(&Page::all()).unwrap().is_empty());
                    thread::scope(|s| {
                        s.spawn(|| {
                            let reg = &store.registry;
                            seen_inside.store(
                                app.tags(&Page::all()).unwrap().len()
                                    + app.manifests(&ManifestQuery::default()).unwrap().len()
                                    + reg.repositories(&Page::all()).unwrap().len(),
                                Ordering::SeqCst,
                            );
                        });
                    });
                }
            }
            Ok(digests)
        })
        .unwrap();
    // Only the repository `base` was visible while the batch ran.
    assert_eq!(seen_inside.load(Ordering::SeqCst), 1);
    assert_ne!(before, snapshot(&store.registry));
    let tags = app.tags(&Page::all()).unwrap();
    assert_eq!(tags.len(), N + 1);
    assert_eq!(app.resolve("latest").unwrap(), digests[N - 1]);
    // One transaction: every row carries the same time.
    assert!(tags.iter().all(|t| t.updated == tags[0].updated));
    drop((app, base));
    let after = snapshot(&store.registry);
    let store = store.reopen();
    assert_eq!(after, snapshot(&store.registry));
    let app = store.repo("batch/app");
    for (i, d) in digests.iter().enumerate() {
        assert_eq!(&app.resolve(&format!("t{i}")).unwrap(), d);
        assert_eq!(&app.pull(d.as_str()).unwrap().digest, d);
    }
}

#[test]
fn c1_a_failing_batch_leaves_nothing_even_after_reopen() {
    let store = Store::new();
    let (v1, _) = populate(&store);
    let before = snapshot(&store.registry);
    let app = store.repo("team/app");
    let fresh = store.repo("fresh");
    let err = store
        .registry
        .batch(|b| {
            for i in 0..40 {
                let bytes = format!("config {i}");
                let config = (sha256(bytes.as_bytes()), bytes.len() as u64);
                // The blob is in the registry already after the first round: only linked.
                b.put_blob(&fresh, &config.0, bytes.as_bytes())?;
                let body = to_vec(&image_body(&config, &[]));
                let d = b
                    .push_manifest(&fresh, &format!("t{i}"), OCI_MANIFEST, &body)?
                    .digest;
                b.tag(&app, "v1", &v1)?;
                b.tag(&fresh, "latest", &d)?;
            }
            b.tag(&fresh, "no good", &v1)
        })
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidTag { ref tag } if tag == "no good"),
        "{err:?}"
    );
    // Blob files the batch wrote stay behind unreferenced (Batch docs); nothing else changed.
    let without_blob_files = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with("file blobs/"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    };
    let after = snapshot(&store.registry);
    assert_eq!(without_blob_files(&before), without_blob_files(&after));
    assert!(matches!(
        fresh.blob(&sha256(b"config 0")),
        Err(Error::BlobUnknown { .. })
    ));
    drop((app, fresh));
    let store = store.reopen();
    assert_eq!(after, snapshot(&store.registry));
    assert_eq!(
        store.registry.repositories(&Page::all()).unwrap(),
        ["team/app", "team/other"]
    );
}

#[test]
fn c1_a_batch_that_panics_leaves_nothing_and_the_store_goes_on() {
    let store = Store::new();
    populate(&store);
    let app = store.repo("team/app");
    let before = snapshot(&store.registry);
    let v2 = app.resolve("v2").unwrap();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store.registry.batch(|b| {
            b.tag(&app, "moved", &v2)?;
            b.tag(&app, "v1", &v2)?;
            panic!("the host crashed mid-batch");
            #[allow(unreachable_code)]
            Ok(())
        })
    }));
    assert!(outcome.is_err());
    assert_eq!(before, snapshot(&store.registry));
    // The write lock was released and the thread holds no batch mark: plain writes work.
    app.tag("moved", &v2).unwrap();
    assert_eq!(app.resolve("moved").unwrap(), v2);
}

// =============================================================================================
// C2: crashes, stray files, the format and the lock

#[test]
fn c2_stray_files_in_tmp_and_uploads_are_removed_at_open_and_sessions_survive() {
    let store = Store::new();
    let app = store.repo("app");
    let kept = app.start_upload().unwrap();
    kept.append(b"abc").unwrap();
    kept.append(b"def").unwrap();
    let kept_id = kept.id().to_owned();
    let lost = app.start_upload().unwrap();
    lost.append(b"its file will vanish").unwrap();
    let lost_id = lost.id().to_owned();
    let digest = app.put_blob_sha256(b"committed").unwrap();
    drop((kept, lost, app));
    let dir = store.registry.path().to_path_buf();
    // What a crash leaves: a one-shot write that never got renamed, a session file whose row
    // never committed, and a session row whose file was renamed away by a finish that never
    // committed.
    std::fs::write(dir.join("tmp/0123456789abcdef"), b"half a blob").unwrap();
    std::fs::write(dir.join("tmp/another"), vec![1u8; 70_000]).unwrap();
    std::fs::write(
        dir.join("uploads/feedfacefeedfacefeedfacefeedface"),
        b"orphan",
    )
    .unwrap();
    std::fs::remove_file(dir.join("uploads").join(&lost_id)).unwrap();
    assert_eq!(files_in(&dir.join("tmp")).len(), 2);

    let store = store.reopen();
    assert!(files_in(&dir.join("tmp")).is_empty(), "tmp/ not emptied");
    assert_eq!(
        files_in(&dir.join("uploads")),
        std::slice::from_ref(&kept_id)
    );
    let app = store.repo("app");
    assert!(matches!(
        app.resume_upload(&lost_id),
        Err(Error::UploadUnknown { ref id }) if *id == lost_id
    ));
    assert!(matches!(
        app.resume_upload("feedfacefeedfacefeedfacefeedface"),
        Err(Error::UploadUnknown { .. })
    ));
    // The surviving session resumes at its offset, with its hash rebuilt from the file.
    let kept = app.resume_upload(&kept_id).unwrap();
    assert_eq!(kept.offset(), 6);
    assert!(matches!(
        kept.append_at(0, b"x"),
        Err(Error::UploadOffsetMismatch { actual: 6, .. })
    ));
    assert_eq!(kept.append_at(6, b"ghi").unwrap(), 9);
    kept.finish(&sha256(b"abcdefghi")).unwrap();
    assert_eq!(app.blob(&sha256(b"abcdefghi")).unwrap(), &b"abcdefghi"[..]);
    assert_eq!(app.blob(&digest).unwrap(), &b"committed"[..]);
    assert!(files_in(&dir.join("uploads")).is_empty());
}

#[test]
fn c2_a_session_resumes_after_reopen_at_its_offset_under_every_algorithm() {
    let mut store = Store::new();
    let app = store.repo("app");
    let upload = app.start_upload().unwrap();
    let id = upload.id().to_owned();
    drop((upload, app));
    let mut all = Vec::new();
    for round in 0..3u8 {
        store = store.reopen();
        let upload = store.repo("app").resume_upload(&id).unwrap();
        assert_eq!(upload.offset(), all.len() as u64);
        let chunk = vec![round; 1000 + round as usize];
        upload.append(&chunk).unwrap();
        all.extend_from_slice(&chunk);
    }
    let store = store.reopen();
    let app = store.repo("app");
    let upload = app.resume_upload(&id).unwrap();
    // A wrong digest after a restart is still refused, and the session stays.
    assert!(matches!(
        upload.finish(&Algorithm::Blake3.digest(b"nope")),
        Err(Error::DigestMismatch { .. })
    ));
    let digest = Algorithm::Blake3.digest(&all);
    upload.finish(&digest).unwrap();
    assert_eq!(app.blob(&digest).unwrap(), all);
}

#[test]
fn c2_a_blob_file_left_by_a_crash_before_its_commit_is_reused() {
    let store = Store::new();
    let app = store.repo("app");
    app.put_blob_sha256(b"something").unwrap();
    drop(app);
    // The rename happened, the commit did not.
    let bytes = b"renamed but never committed";
    let digest = sha256(bytes);
    let path = store
        .registry
        .path()
        .join("blobs/sha256")
        .join(&digest.hex()[..2])
        .join(digest.hex());
    std::fs::write(&path, bytes).unwrap();
    let store = store.reopen();
    let app = store.repo("app");
    assert!(matches!(app.blob(&digest), Err(Error::BlobUnknown { .. })));
    // The received bytes are still verified against the digest.
    assert!(matches!(
        app.put_blob(&digest, b"other bytes"),
        Err(Error::DigestMismatch { .. })
    ));
    app.put_blob(&digest, bytes).unwrap();
    assert_eq!(app.blob(&digest).unwrap(), &bytes[..]);
}

/// The child side of the crash test: writes until it is killed, acknowledging on stdout each
/// call that returned Ok.
#[test]
fn c2_child_crash_worker() {
    let Some(dir) = std::env::var_os(WORKER_DIR) else {
        return;
    };
    let round: u64 = std::env::var(WORKER_ROUND).unwrap().parse().unwrap();
    let registry = Registry::open(&dir).expect("the worker opens the store");
    let repos = [
        registry.repository("crash/a").unwrap(),
        registry.repository("crash/b").unwrap(),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (round + 1).wrapping_mul(0x1234_5678_9abc));
    let mut images: [Vec<(Digest, u64)>; 2] = Default::default();
    for i in 0u64.. {
        let which = (i % 2) as usize;
        let repo = &repos[which];
        let name = repo.name();
        // A one-shot config, under a varying algorithm.
        let config_bytes = format!(r#"{{"round":{round},"i":{i}}}"#).into_bytes();
        let alg = Algorithm::ALL[(i % 3) as usize];
        let config = alg.digest(&config_bytes);
        repo.put_blob(&config, &config_bytes).unwrap();
        ack(format_args!("blob {name} {config} {}", config_bytes.len()));
        // A streamed layer.
        let mut layer_bytes = format!("layer {round} {i} ").into_bytes();
        let len = rng.below(96 * 1024) as usize;
        layer_bytes.extend(rng.bytes(len));
        let upload = repo.start_upload().unwrap();
        for chunk in layer_bytes.chunks(8 * 1024) {
            upload.append(chunk).unwrap();
        }
        let layer = sha256(&layer_bytes);
        upload.finish(&layer).unwrap();
        ack(format_args!("blob {name} {layer} {}", layer_bytes.len()));
        let mut layers = vec![(layer.clone(), layer_bytes.len() as u64)];
        // Now and then a large one-shot layer (hashed on a second thread).
        if i % 4 == 3 {
            let mut big = format!("big {round} {i} ").into_bytes();
            big.extend(rng.bytes((1 << 20) + 4096));
            let d = repo.put_blob_sha256(&big).unwrap();
            ack(format_args!("blob {name} {d} {}", big.len()));
            layers.push((d, big.len() as u64));
        }
        // Now and then a layer mounted from the other repository.
        if i % 5 == 4 {
            let from = &repos[1 - which];
            if let Some(d) = from.blobs(&Page::first(1)).unwrap().into_iter().next() {
                let size = from.blob_size(&d).unwrap();
                repo.mount_blob(from.name(), &d).unwrap();
                ack(format_args!("blob {name} {d} {size}"));
                layers.push((d, size));
            }
        }
        // Now and then a session left open, to be resumed after the crash.
        if i % 6 == 1 {
            let upload = repo.start_upload().unwrap();
            let len = 1 + rng.below(5000) as usize;
            let offset = upload.append(&rng.bytes(len)).unwrap();
            ack(format_args!("session {name} {} {offset}", upload.id()));
        }
        // The image, by a tag of its own, then `latest` moved onto it.
        let body = to_vec(&image_body(&(config, config_bytes.len() as u64), &layers));
        let tag = format!("r{round}-{i}");
        let digest = repo
            .push_manifest(&tag, OCI_MANIFEST, &body)
            .unwrap()
            .digest;
        ack(format_args!("manifest {name} {digest}"));
        ack(format_args!("tag {name} {tag} {digest}"));
        repo.tag("latest", &digest).unwrap();
        ack(format_args!("tag {name} latest {digest}"));
        images[which].push((digest, body.len() as u64));
        // Now and then an index over the last images, by digest, then tagged.
        if i % 3 == 2 {
            let children: Vec<_> = images[which].iter().rev().take(3).cloned().collect();
            let index = to_vec(&index_body(&children));
            let d = repo
                .push_manifest(sha256(&index).as_str(), OCI_INDEX, &index)
                .unwrap()
                .digest;
            ack(format_args!("manifest {name} {d}"));
            repo.tag("index", &d).unwrap();
            ack(format_args!("tag {name} index {d}"));
        }
        // Now and then a batch: a blob, an image over it and two tags in one transaction.
        if i % 7 == 5 {
            let bytes = format!("batch config {round} {i}").into_bytes();
            let tag = format!("batch-{round}-{i}");
            let (c, d) = registry
                .batch(|b| {
                    let c = b.put_blob_sha256(repo, &bytes)?;
                    let body = to_vec(&image_body(&(c.clone(), bytes.len() as u64), &[]));
                    let d = b.push_manifest(repo, &tag, OCI_MANIFEST, &body)?.digest;
                    b.tag(repo, "latest", &d)?;
                    Ok((c, d))
                })
                .unwrap();
            ack(format_args!("blob {name} {c} {}", bytes.len()));
            ack(format_args!("manifest {name} {d}"));
            ack(format_args!("tag {name} {tag} {d}"));
            ack(format_args!("tag {name} latest {d}"));
        }
    }
}

/// Everything the crash worker acknowledged, over all rounds.
#[derive(Default)]
struct Acked {
    blobs: HashMap<(String, Digest), u64>,
    manifests: Vec<(String, Digest)>,
    /// Every digest a tag was acknowledged at, oldest first.
    tags: HashMap<(String, String), Vec<Digest>>,
    sessions: HashMap<(String, String), u64>,
}

impl Acked {
    fn record(&mut self, line: &str) {
        let parts: Vec<&str> = line.split(' ').collect();
        let digest = |s: &str| Digest::parse(s).unwrap();
        match parts[..] {
            ["blob", repo, d, size] => {
                self.blobs
                    .insert((repo.into(), digest(d)), size.parse().unwrap());
            }
            ["manifest", repo, d] => self.manifests.push((repo.into(), digest(d))),
            ["tag", repo, tag, d] => self
                .tags
                .entry((repo.into(), tag.into()))
                .or_default()
                .push(digest(d)),
            ["session", repo, id, offset] => {
                self.sessions
                    .insert((repo.into(), id.into()), offset.parse().unwrap());
            }
            _ => panic!("unexpected acknowledgement {line:?}"),
        }
    }

    /// The store holds everything acknowledged, and nothing it holds is dangling.
    fn verify(&self, registry: &Registry, context: &str) {
        let repo = |name: &str| registry.repository(name).unwrap();
        for ((name, d), size) in &self.blobs {
            let bytes = repo(name)
                .blob(d)
                .unwrap_or_else(|e| panic!("{context}: acknowledged blob {d} in {name}: {e}"));
            assert_eq!(bytes.len() as u64, *size, "{context}: blob {d}");
            assert_eq!(&d.algorithm().digest(&bytes), d, "{context}: blob {d}");
        }
        for (name, d) in &self.manifests {
            check_manifest(&repo(name), d, context);
        }
        for ((name, tag), history) in &self.tags {
            let resolved = repo(name)
                .resolve(tag)
                .unwrap_or_else(|e| panic!("{context}: acknowledged tag {name}:{tag}: {e}"));
            let last = history.last().unwrap();
            // Either the last acknowledged digest, or a newer push the worker did not live
            // to acknowledge, never an older one.
            assert!(
                &resolved == last || !history.contains(&resolved),
                "{context}: {name}:{tag} went back to {resolved}, acknowledged at {last}"
            );
            check_manifest(&repo(name), &resolved, context);
        }
        for ((name, id), offset) in &self.sessions {
            let upload = repo(name)
                .resume_upload(id)
                .unwrap_or_else(|e| panic!("{context}: acknowledged session {id}: {e}"));
            assert_eq!(upload.offset(), *offset, "{context}: session {id}");
        }
        // Whatever else committed (acknowledged or not) is whole too.
        for name in registry.repositories(&Page::all()).unwrap() {
            let r = repo(&name);
            for m in r.manifests(&ManifestQuery::default()).unwrap() {
                check_manifest(&r, &m.digest, context);
            }
            for t in r.tags(&Page::all()).unwrap() {
                check_manifest(&r, &t.digest, context);
            }
            for d in r.blobs(&Page::all()).unwrap() {
                let bytes = r
                    .blob(&d)
                    .unwrap_or_else(|e| panic!("{context}: linked blob {d}: {e}"));
                assert_eq!(d.algorithm().digest(&bytes), d, "{context}: blob {d}");
            }
        }
    }
}

/// When a round of a worker starts, by its clock.
type RoundStart = fn(u64) -> Timestamp;

/// Runs the test `worker` as a child process on the store at `path` for `rounds` rounds, each
/// killed (SIGKILL) after a random number of acknowledgements up to `most`; `record` takes
/// each acknowledgement, `verify` checks the reopened store, on the clock `round_start` gives
/// the round if any (the system clock otherwise). Returns how many there were.
fn crash_rounds(
    worker: &str,
    path: &Path,
    (rounds, round_start): (u64, Option<RoundStart>),
    most: u64,
    mut record: impl FnMut(&str),
    mut verify: impl FnMut(&Registry, &str),
) -> usize {
    let (seed, mut rng) = Rng::from_time();
    let (mut total, mut strays) = (0, 0);
    for round in 0..rounds {
        // Early in a call, deep in a loop, in the middle of a batch's acknowledgements: the
        // kill lands wherever the worker is when its n-th line is read.
        let kill_after = 1 + rng.below(if round % 2 == 0 { 30 } else { most });
        let context = format!("{worker}: seed {seed}, round {round}, kill after {kill_after}");
        let mut cmd = child_test(worker);
        cmd.env(WORKER_DIR, path)
            .env(WORKER_ROUND, round.to_string());
        run_crew(
            vec![Worker { cmd, endless: true }],
            Some(Kill {
                worker: 0,
                after: kill_after,
            }),
            &mut rng,
            path.parent().unwrap(),
            &context,
            |_, line| record(line),
        );
        total += kill_after as usize;

        // No grace period: nothing else writes to the store while it is checked.
        let mut builder = Registry::builder().grace_period(Duration::ZERO);
        if let Some(start) = round_start {
            builder = builder.clock(ManualClock::new(start(round)));
        }
        let registry = builder
            .open(path)
            .unwrap_or_else(|e| panic!("{context}: the store does not reopen: {e:?}"));
        assert!(
            files_in(&path.join("tmp")).is_empty(),
            "{context}: tmp/ not emptied"
        );
        // Open reconciles uploads/; a blob file renamed into place before its commit, or left
        // by a sweep between its record and its file, is all a crash leaves, and repair takes it.
        let fsck = |repair| {
            let options = FsckOptions::default().repair(repair);
            registry.fsck(&options).unwrap()
        };
        let repaired = fsck(true);
        assert!(
            repaired
                .problems
                .iter()
                .all(|p| matches!(p, Problem::StrayBlobFile { .. })),
            "{context}: {:?}",
            repaired.problems
        );
        assert_eq!(
            repaired.repaired,
            repaired.problems.len() as u64,
            "{context}"
        );
        strays += repaired.repaired;
        assert_eq!(fsck(false).problems, [], "{context}");
        verify(&registry, &context);
    }
    println!("{worker}: seed {seed}, {total} acknowledgements, {strays} stray files repaired");
    total
}

#[test]
fn c2_a_killed_writer_loses_nothing_it_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let acked = std::cell::RefCell::new(Acked::default());
    let total = crash_rounds(
        "c2_child_crash_worker",
        &path,
        (5, None),
        200,
        |line| acked.borrow_mut().record(line),
        |registry, context| {
            // Only files of sessions that are resumable are left in uploads/.
            for id in files_in(&path.join("uploads")) {
                let found = ["crash/a", "crash/b"]
                    .iter()
                    .any(|r| registry.repository(r).unwrap().resume_upload(&id).is_ok());
                assert!(found, "{context}: uploads/{id} belongs to no session");
            }
            acked.borrow().verify(registry, context);
        },
    );
    let acked = acked.into_inner();
    println!(
        "{} blobs, {} manifests, {} tags, {} sessions",
        acked.blobs.len(),
        acked.manifests.len(),
        acked.tags.len(),
        acked.sessions.len()
    );
    assert!(total >= 5);
}

/// The child side of the collector's crash test: pushes images sharing layers, deletes them
/// into the bin, restores and purges them, while a thread collects in a loop, until killed.
/// Before a delete, restore or purge it says what it tries, so the parent knows which
/// manifest may be in either state.
#[test]
fn c2_child_collecting_worker() {
    let Some(dir) = std::env::var_os(WORKER_DIR) else {
        return;
    };
    let round: u64 = std::env::var(WORKER_ROUND).unwrap().parse().unwrap();
    let clock = ManualClock::new(collecting_round_start(round));
    let registry = Registry::builder()
        .clock(clock.clone())
        .grace_period(Duration::from_secs(60))
        .open(&dir)
        .expect("the worker opens the store");
    registry
        .set_soft_delete_policy(SoftDeletePolicy::enabled(7).unwrap())
        .unwrap();
    let collector = registry.clone();
    thread::spawn(move || {
        loop {
            let report = collector.collect(&CollectOptions::default()).unwrap();
            ack(format_args!("collect {}", report.blobs_swept));
            // Leave the pushes room: a collection of this small store is quick.
            thread::sleep(Duration::from_millis(2));
        }
    });
    let repo = registry.repository("gc/app").unwrap();
    let (mut live, mut binned) = (Vec::new(), Vec::new());
    for i in 0u64.. {
        let config = format!("config {round} {i}").into_bytes();
        let unique = format!("layer {round} {i}").into_bytes();
        let shared = format!("shared layer {}", i % 4).into_bytes();
        let blobs: Vec<(Digest, u64)> = [&config, &unique, &shared]
            .iter()
            .map(|b| (repo.put_blob_sha256(b).unwrap(), b.len() as u64))
            .collect();
        let body = to_vec(&image_body(&blobs[0], &blobs[1..]));
        let digest = repo
            .push_manifest(&format!("t{round}-{i}"), OCI_MANIFEST, &body)
            .unwrap()
            .digest;
        let refs: Vec<String> = blobs.iter().map(|(d, _)| d.to_string()).collect();
        ack(format_args!("manifest {digest} {}", refs.join(",")));
        live.push(digest);
        if i % 3 == 2 {
            let d = live.remove(live.len() - 2);
            ack(format_args!("try-delete {d}"));
            repo.delete_manifest(d.as_str()).unwrap();
            ack(format_args!("deleted {d}"));
            binned.push(d);
        }
        if i % 4 == 3 && !binned.is_empty() {
            let d = binned.remove(0);
            ack(format_args!("try-restore {d}"));
            repo.restore(Restore::Digest(&d), OnConflict::Refuse)
                .unwrap();
            ack(format_args!("restored {d}"));
            live.push(d);
        }
        if i % 5 == 4 && !binned.is_empty() {
            let d = binned.remove(0);
            ack(format_args!("try-purge {d}"));
            repo.purge_deleted_manifest(&d).unwrap();
            ack(format_args!("purged {d}"));
        }
        // Blobs of purged manifests age past the grace period and become garbage.
        clock.advance(Duration::from_secs(20));
    }
}

/// When round `round` of the collecting worker starts: later than the last one could have
/// reached, so that times only go forward, and past the retention of its tombstones.
fn collecting_round_start(round: u64) -> Timestamp {
    START.saturating_add(Duration::from_secs(round * 30 * 86_400))
}

/// Where a manifest of the collecting worker may be after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Where {
    Live,
    Binned,
    Purged,
}

#[test]
fn c2_a_killed_collector_loses_nothing_it_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    // Every manifest with its references and the places it may be in.
    let manifests = std::cell::RefCell::new(HashMap::<Digest, (Vec<Digest>, Vec<Where>)>::new());
    // Collections acknowledged, and the blobs they swept.
    let collections = std::cell::Cell::new((0, 0));
    let total = crash_rounds(
        "c2_child_collecting_worker",
        &path,
        (6, Some(collecting_round_start)),
        300,
        |line| {
            let mut manifests = manifests.borrow_mut();
            let parts: Vec<&str> = line.split(' ').collect();
            let mut set = |d: &str, places: &[Where]| {
                manifests.get_mut(&Digest::parse(d).unwrap()).unwrap().1 = places.to_vec();
            };
            match parts[..] {
                ["manifest", d, refs] => {
                    let refs = refs.split(',').map(|r| Digest::parse(r).unwrap()).collect();
                    manifests.insert(Digest::parse(d).unwrap(), (refs, vec![Where::Live]));
                }
                ["try-delete", d] | ["try-restore", d] => set(d, &[Where::Live, Where::Binned]),
                ["deleted", d] => set(d, &[Where::Binned]),
                ["restored", d] => set(d, &[Where::Live]),
                ["try-purge", d] => set(d, &[Where::Binned, Where::Purged]),
                ["purged", d] => set(d, &[Where::Purged]),
                ["collect", swept] => {
                    let (runs, total) = collections.get();
                    collections.set((runs + 1, total + swept.parse::<u64>().unwrap()));
                }
                _ => panic!("unexpected acknowledgement {line:?}"),
            }
        },
        |registry, context| {
            let repo = registry.repository("gc/app").unwrap();
            let binned = common::deleted_manifest_digests(&repo);
            for (digest, (refs, places)) in manifests.borrow_mut().iter_mut() {
                let found = if repo.pull(digest.as_str()).is_ok() {
                    Where::Live
                } else if binned.contains(digest) {
                    Where::Binned
                } else {
                    Where::Purged
                };
                assert!(
                    places.contains(&found),
                    "{context}: {digest} is {found:?}, acknowledged {places:?}"
                );
                // Live and binned manifests are roots: every blob they reference stays.
                if found != Where::Purged {
                    for blob in refs.iter() {
                        let bytes = repo.blob(blob).unwrap_or_else(|e| {
                            panic!("{context}: {digest} ({found:?}) references {blob}: {e}")
                        });
                        assert_eq!(&blob.algorithm().digest(&bytes), blob, "{context}");
                    }
                }
                *places = vec![found];
                // Expired by the next round, which changes the policy and so purges it (S3).
                if found == Where::Binned {
                    places.push(Where::Purged);
                }
            }
        },
    );
    let (runs, swept) = collections.get();
    println!(
        "{} manifests, {runs} collections acknowledged, {swept} blobs swept",
        manifests.borrow().len(),
    );
    assert!(total >= 6);
}

/// The child side of the lock test: tries to open the store and prints what happened.
#[test]
fn c2_child_open_probe() {
    let Some(dir) = std::env::var_os(PROBE_DIR) else {
        return;
    };
    let result = Registry::open(&dir).map(drop);
    println!("PROBE {result:?}");
}

fn probe_from_another_process(dir: &Path) -> String {
    let out = child_test("c2_child_open_probe")
        .env(PROBE_DIR, dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout
        .lines()
        .find_map(|l| l.split_once("PROBE ").map(|(_, rest)| rest))
        .unwrap_or_else(|| {
            panic!(
                "no probe line: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_owned()
}

#[test]
fn c2_format_version_a_second_open_in_this_process_is_already_open() {
    let store = Store::new();
    let digest = store.repo("app").put_blob_sha256(b"kept").unwrap();
    let dir = store.registry.path().to_path_buf();
    // A write in progress of the live handle: a second open must not clean it up.
    std::fs::write(dir.join("tmp/in-flight"), b"bytes").unwrap();
    let clone = store.registry.clone();
    for _ in 0..2 {
        let err = Registry::open(&dir).unwrap_err();
        assert!(
            matches!(err, Error::AlreadyOpen { ref path, held_by: ocistore::OpenMode::Exclusive } if *path == dir),
            "{err:?}"
        );
    }
    assert_eq!(files_in(&dir.join("tmp")), ["in-flight"]);
    // A clone keeps the store open after the original is gone.
    let Store {
        dir: tmp,
        registry,
        clock,
    } = store;
    drop(registry);
    assert!(matches!(
        Registry::open(&dir),
        Err(Error::AlreadyOpen { .. })
    ));
    drop(clone);
    let store = Store {
        registry: common::open(&dir, &clock),
        dir: tmp,
        clock,
    };
    assert!(files_in(&dir.join("tmp")).is_empty());
    assert_eq!(store.repo("app").blob(&digest).unwrap(), &b"kept"[..]);
}

#[test]
fn c2_format_version_a_second_process_is_already_open() {
    let store = Store::new();
    let digest = store.repo("app").put_blob_sha256(b"kept").unwrap();
    let dir = store.registry.path().to_path_buf();
    std::fs::write(dir.join("tmp/in-flight"), b"bytes").unwrap();
    let line = probe_from_another_process(&dir);
    assert_eq!(
        line,
        format!("Err(AlreadyOpen {{ path: {dir:?}, held_by: Exclusive }})")
    );
    assert_eq!(files_in(&dir.join("tmp")), ["in-flight"]);
    // The parent's handle is unharmed.
    assert_eq!(store.repo("app").blob(&digest).unwrap(), &b"kept"[..]);
    store.repo("app").put_blob_sha256(b"more").unwrap();
    // Once the parent lets go, the other process opens it (and the probe can tell).
    let Store {
        dir: tmp, registry, ..
    } = store;
    drop(registry);
    assert_eq!(probe_from_another_process(&dir), "Ok(())");
    assert!(files_in(&dir.join("tmp")).is_empty());
    drop(tmp);
}

const META: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");

fn write_format_version(dir: &Path, value: &[u8]) {
    let db = redb::Database::create(dir.join("metadata.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(META)
        .unwrap()
        .insert("format_version", value)
        .unwrap();
    txn.commit().unwrap();
}

fn read_format_version(dir: &Path) -> Vec<u8> {
    use redb::ReadableDatabase;
    let db = redb::Database::create(dir.join("metadata.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(META).unwrap();
    table
        .get("format_version")
        .unwrap()
        .unwrap()
        .value()
        .to_vec()
}

fn closed_store() -> (tempfile::TempDir, PathBuf, String) {
    let store = Store::new();
    populate(&store);
    let snap = snapshot(&store.registry);
    let Store { dir, registry, .. } = store;
    drop(registry);
    let path = dir.path().to_path_buf();
    assert_eq!(read_format_version(&path), FORMAT_VERSION.to_le_bytes());
    (dir, path, snap)
}

#[test]
fn c2_format_version_from_a_newer_build_is_unsupported_format() {
    assert_eq!(FORMAT_VERSION, 2);
    let (_tmp, dir, snap) = closed_store();
    write_format_version(&dir, &99u32.to_le_bytes());
    std::fs::write(dir.join("tmp/left-by-the-newer-build"), b"x").unwrap();
    for _ in 0..2 {
        let err = Registry::open(&dir).unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnsupportedFormat { ref path, found: 99, supported: 2 } if *path == dir
            ),
            "{err:?}"
        );
    }
    // The refused open changed nothing: not the version, not the files.
    assert_eq!(read_format_version(&dir), 99u32.to_le_bytes());
    assert_eq!(files_in(&dir.join("tmp")), ["left-by-the-newer-build"]);
    // Put back, the store opens with everything in it.
    write_format_version(&dir, &FORMAT_VERSION.to_le_bytes());
    let registry = Registry::builder()
        .clock(ocistore::ManualClock::new(common::START))
        .open(&dir)
        .unwrap();
    assert_eq!(snap, snapshot(&registry));
}

#[test]
fn c2_format_version_of_the_wrong_width_is_corrupt_not_a_panic() {
    let (_tmp, dir, _) = closed_store();
    for bad in [&[1u8][..], &[], &[1, 0, 0, 0, 0]] {
        write_format_version(&dir, bad);
        let err = Registry::open(&dir).unwrap_err();
        assert!(
            matches!(err, Error::Corrupt { table: "meta", .. }),
            "{err:?}"
        );
        assert_eq!(read_format_version(&dir), bad);
    }
    for old in [0u32, 3, u32::MAX] {
        write_format_version(&dir, &old.to_le_bytes());
        let err = Registry::open(&dir).unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedFormat { found, supported: 2, .. } if found == old),
            "{err:?}"
        );
    }
}

// =============================================================================================
// C3: shared handles; readers never wait for writers

fn shareable<T: Send + Sync + Clone + 'static>() {}

#[test]
fn c3_registry_and_repository_are_send_sync_and_clone() {
    shareable::<Registry>();
    shareable::<Repository>();
    // Clones share the one open store: a write through one is read through the other, from
    // another thread.
    let store = Store::new();
    let clone = store.registry.clone();
    let digest = thread::spawn(move || {
        clone
            .repository("app")
            .unwrap()
            .put_blob_sha256(b"from a thread")
            .unwrap()
    })
    .join()
    .unwrap();
    let repo = store.repo("app");
    let repo_clone = repo.clone();
    assert_eq!(
        thread::spawn(move || repo_clone.blob(&digest).unwrap())
            .join()
            .unwrap(),
        &b"from a thread"[..]
    );
    // An upload started on one thread is appended to and finished on others.
    let upload = repo.start_upload().unwrap();
    let id = upload.id().to_owned();
    thread::scope(|s| {
        s.spawn(|| upload.append(b"one ").unwrap());
    });
    let repo_clone = repo.clone();
    thread::spawn(move || {
        let upload = repo_clone.resume_upload(&id).unwrap();
        upload.append(b"two").unwrap();
        upload.finish(&sha256(b"one two")).unwrap();
    })
    .join()
    .unwrap();
    assert_eq!(repo.blob(&sha256(b"one two")).unwrap(), &b"one two"[..]);
}

#[test]
fn c3_readers_see_consistent_snapshots_while_a_writer_pushes() {
    const PUSHES: usize = 40;
    let store = Store::new();
    let repo = store.repo("app");
    let config = (repo.put_blob_sha256(b"config").unwrap(), 6);
    let first = repo
        .push_manifest("latest", OCI_MANIFEST, &to_vec(&image_body(&config, &[])))
        .unwrap()
        .digest;
    repo.tag("a-0", &first).unwrap();
    repo.tag("b-0", &first).unwrap();
    let done = AtomicBool::new(false);
    let reads = AtomicUsize::new(0);
    thread::scope(|s| {
        let writer = s.spawn(|| {
            for i in 1..=PUSHES {
                let layer = format!("layer {i}").into_bytes();
                // Each step is one batch: a blob, an image over it, and three tags.
                store
                    .registry
                    .batch(|b| {
                        let l = b.put_blob_sha256(&repo, &layer)?;
                        let body = image_body(&config, &[(l, layer.len() as u64)]);
                        let d = b
                            .push_manifest(&repo, &format!("a-{i}"), OCI_MANIFEST, &to_vec(&body))?
                            .digest;
                        b.tag(&repo, &format!("b-{i}"), &d)?;
                        b.tag(&repo, "latest", &d)
                    })
                    .unwrap();
            }
            done.store(true, Ordering::SeqCst);
        });
        let readers: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    let mut last_count = 0;
                    let mut last_manifests = 0;
                    loop {
                        let finished = done.load(Ordering::SeqCst);
                        // One listing is one snapshot: a step's tags appear together.
                        let tags = repo.tags(&Page::all()).unwrap();
                        let by_name: HashMap<_, _> =
                            tags.iter().map(|t| (t.name.as_str(), &t.digest)).collect();
                        for i in 0..=PUSHES {
                            let (a, b) = (format!("a-{i}"), format!("b-{i}"));
                            assert_eq!(
                                by_name.get(a.as_str()),
                                by_name.get(b.as_str()),
                                "half a batch visible"
                            );
                        }
                        let steps = (0..=PUSHES)
                            .filter(|i| by_name.contains_key(format!("a-{i}").as_str()))
                            .count();
                        assert_eq!(
                            by_name["latest"],
                            by_name[format!("a-{}", steps - 1).as_str()],
                            "latest is not on the newest step of this snapshot"
                        );
                        assert!(steps >= last_count, "a reader went back in time");
                        last_count = steps;
                        // A tag always resolves to a manifest that can be pulled, whose blobs
                        // can be read.
                        let d = repo.resolve("latest").unwrap();
                        let pulled = repo.pull(d.as_str()).unwrap();
                        assert_eq!(sha256(&pulled.body), d);
                        let body: serde_json::Value = serde_json::from_slice(&pulled.body).unwrap();
                        for layer in body["layers"].as_array().unwrap() {
                            let l: Digest = layer["digest"].as_str().unwrap().parse().unwrap();
                            repo.blob(&l).unwrap();
                        }
                        let p = repo.pull("latest").unwrap();
                        assert_eq!(sha256(&p.body), p.digest);
                        let manifests = repo.manifests(&ManifestQuery::default()).unwrap().len();
                        assert!(manifests >= last_manifests);
                        last_manifests = manifests;
                        reads.fetch_add(1, Ordering::SeqCst);
                        if finished {
                            return last_count;
                        }
                    }
                })
            })
            .collect();
        writer.join().unwrap();
        for r in readers {
            // Each reader's last pass started after the writer finished: it saw everything.
            assert_eq!(r.join().unwrap(), PUSHES + 1);
        }
    });
    assert!(reads.load(Ordering::SeqCst) >= 3);
}

#[test]
fn c3_a_reader_completes_while_a_batch_is_open() {
    let store = Store::new();
    let repo = store.repo("app");
    let v1 = push_image(&repo, "v1", "one");
    let layer = repo.put_blob_sha256(b"a layer").unwrap();
    let (opened_tx, opened_rx) = mpsc::channel::<()>();
    let (read_tx, read_rx) = mpsc::channel();
    // Generous: a failure detector for a reader stuck behind the writer, not a speed limit.
    let patience = Duration::from_secs(120);
    let (store, repo, layer) = (&store, &repo, &layer);
    thread::scope(|s| {
        let writer = s.spawn(move || {
            store.registry.batch(|b| {
                // The batch has written (and holds redb's write lock) before the reader starts.
                let v2 = push_image_in(b, repo, "v2");
                b.tag(repo, "v1", &v2)?;
                opened_tx.send(()).unwrap();
                let outcome = read_rx.recv_timeout(patience);
                assert!(
                    outcome.is_ok(),
                    "the reader did not finish while the batch was open"
                );
                Ok(outcome.unwrap())
            })
        });
        let reader = s.spawn(move || {
            opened_rx.recv_timeout(patience).expect("the batch opened");
            // Every kind of read, while the batch is open; none sees its uncommitted writes.
            let seen = (
                repo.pull("v1").unwrap().digest,
                repo.resolve("v1").unwrap(),
                repo.tags(&Page::all()).unwrap().len(),
                repo.manifest("v1").unwrap().digest,
                repo.manifests(&ManifestQuery::default()).unwrap().len(),
                repo.blob(layer).unwrap().len(),
                store.registry.repositories(&Page::all()).unwrap(),
                matches!(repo.resolve("v2"), Err(Error::ManifestUnknown { .. })),
            );
            read_tx.send(seen).unwrap();
        });
        reader.join().unwrap();
        let seen = writer.join().unwrap().unwrap();
        assert_eq!(
            seen,
            (
                v1.clone(),
                v1.clone(),
                1,
                v1.clone(),
                1,
                7,
                vec!["app".to_owned()],
                true
            )
        );
    });
    // After the commit the writes are there.
    assert_ne!(repo.resolve("v1").unwrap(), v1);
    assert_eq!(repo.resolve("v1").unwrap(), repo.resolve("v2").unwrap());
}

/// `push_image` through a batch: a config, a layer and the image, tagged.
fn push_image_in(b: &mut ocistore::Batch<'_>, repo: &Repository, tag: &str) -> Digest {
    let config = format!("config {tag}").into_bytes();
    let layer = format!("layer {tag}").into_bytes();
    let c = b.put_blob_sha256(repo, &config).unwrap();
    let l = b.put_blob_sha256(repo, &layer).unwrap();
    let body = image_body(&(c, config.len() as u64), &[(l, layer.len() as u64)]);
    b.push_manifest(repo, tag, OCI_MANIFEST, &to_vec(&body))
        .unwrap()
        .digest
}

#[test]
fn c3_a_write_from_another_thread_waits_for_an_open_batch_instead_of_failing() {
    let store = Store::new();
    let repo = store.repo("app");
    let v1 = push_image(&repo, "v1", "one");
    let (opened_tx, opened_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let patience = Duration::from_secs(120);
    let (store_ref, repo_ref, v1_ref) = (&store, &repo, &v1);
    thread::scope(|s| {
        let batch = s.spawn(move || {
            store_ref.registry.batch(|b| {
                b.tag(repo_ref, "from-batch", v1_ref)?;
                opened_tx.send(()).unwrap();
                go_rx.recv_timeout(patience).unwrap();
                Ok(())
            })
        });
        opened_rx.recv_timeout(patience).unwrap();
        // Another thread is not nested: its write queues behind the batch and then succeeds.
        let other = s.spawn(|| repo.tag("from-thread", &v1));
        go_tx.send(()).unwrap();
        batch.join().unwrap().unwrap();
        other.join().unwrap().unwrap();
    });
    assert_eq!(repo.resolve("from-batch").unwrap(), v1);
    assert_eq!(repo.resolve("from-thread").unwrap(), v1);
}
