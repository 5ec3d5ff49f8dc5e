//! Many handles and processes on one store (docs/spec.md: M1–M3): which open modes admit each
//! other, what a read-only handle refuses, that every commit is seen by the next read anywhere,
//! and that collections in different handles never overlap nor lose a blob another writes.
//! Two handles in one process hold separate file locks, as two processes do; the child-process
//! tests check that this stands for real processes too.

mod common;

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{child_test, image_body, push_image, snapshot};
use ocistore::manifest::OCI_MANIFEST;
use ocistore::{
    CollectOptions, Error, FsckOptions, Item, Locks, OnConflict, OpenMode, Page, Phase,
    PurgeOptions, Registry, Restore, RetentionPolicy,
};

const MODES: [OpenMode; 3] = [OpenMode::Exclusive, OpenMode::Shared, OpenMode::ReadOnly];

fn open(dir: &Path, mode: OpenMode) -> ocistore::Result<Registry> {
    Registry::builder()
        .mode(mode)
        .cache_size(4 << 20)
        .grace_period(Duration::ZERO)
        .open(dir)
}

/// A store with one image `app:v1`, closed again.
fn store() -> (tempfile::TempDir, ocistore::Digest) {
    let dir = tempfile::tempdir().unwrap();
    let registry = open(dir.path(), OpenMode::Exclusive).unwrap();
    let digest = push_image(&registry.repository("app").unwrap(), "v1", "one");
    (dir, digest)
}

/// How a second open in `second` fares beside a handle in `first`: `None` admitted, or the
/// mode the refusal names.
fn second_open(first: OpenMode, second: OpenMode) -> Option<OpenMode> {
    match (first, second) {
        (OpenMode::Exclusive, _) => Some(OpenMode::Exclusive),
        (_, OpenMode::Exclusive) => Some(OpenMode::Shared),
        _ => None,
    }
}

#[test]
fn m1_open_modes_admit_and_refuse_each_other() {
    let (dir, digest) = store();
    for first in MODES {
        let holder = open(dir.path(), first).unwrap();
        assert_eq!(holder.mode(), first);
        for second in MODES {
            let outcome = open(dir.path(), second);
            match (second_open(first, second), outcome) {
                (None, Ok(other)) => {
                    assert_eq!(
                        other.repository("app").unwrap().resolve("v1").unwrap(),
                        digest
                    );
                }
                (Some(held), Err(Error::AlreadyOpen { path, held_by })) => {
                    assert_eq!(
                        (path.as_path(), held_by),
                        (dir.path(), held),
                        "{first} then {second}"
                    );
                }
                (expected, outcome) => {
                    panic!("{first} then {second}: expected {expected:?}, got {outcome:?}")
                }
            }
        }
        // The holder goes on after the refusals.
        assert_eq!(
            holder.repository("app").unwrap().resolve("v1").unwrap(),
            digest
        );
    }
}

#[test]
fn m1_the_refusal_message_names_how_the_store_is_held() {
    let (dir, _) = store();
    let shared = open(dir.path(), OpenMode::Shared).unwrap();
    let err = open(dir.path(), OpenMode::Exclusive).unwrap_err();
    assert!(err.to_string().contains("already open shared"), "{err}");
    drop(shared);
    let exclusive = open(dir.path(), OpenMode::Exclusive).unwrap();
    let err = open(dir.path(), OpenMode::ReadOnly).unwrap_err();
    assert!(err.to_string().contains("already open exclusive"), "{err}");
    drop(exclusive);
}

#[test]
fn m1_a_refused_open_touches_nothing_not_even_the_space_reserve() {
    let (dir, _) = store();
    std::fs::remove_file(dir.path().join("space-reserve")).unwrap();
    let holder = Registry::builder()
        .space_reserve(0)
        .open(dir.path())
        .unwrap();
    std::fs::write(dir.path().join("tmp/in-flight"), b"half a blob").unwrap();
    let before = snapshot(&holder);
    for mode in MODES {
        assert!(matches!(
            open(dir.path(), mode),
            Err(Error::AlreadyOpen { .. })
        ));
    }
    assert!(!dir.path().join("space-reserve").exists());
    assert!(dir.path().join("tmp/in-flight").exists());
    assert_eq!(snapshot(&holder), before);
}

#[test]
fn m1_a_shared_open_beside_another_leaves_its_writes_in_flight() {
    let (dir, _) = store();
    let first = open(dir.path(), OpenMode::Shared).unwrap();
    // A put between its temporary file and its rename, and an upload between its file and
    // its session's commit: cleaned up only by an open that has the store alone.
    let temp = dir.path().join("tmp/in-flight");
    let unborn = dir.path().join("uploads/unborn");
    for path in [&temp, &unborn] {
        std::fs::write(path, b"bytes").unwrap();
    }
    let second = open(dir.path(), OpenMode::Shared).unwrap();
    assert!(temp.exists() && unborn.exists());
    drop((first, second));
    let alone = open(dir.path(), OpenMode::Shared).unwrap();
    assert!(!temp.exists() && !unborn.exists());
    drop(alone);
}

#[test]
fn m1_a_read_only_open_of_a_missing_store_is_a_clear_error_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    let err = open(&missing, OpenMode::ReadOnly).unwrap_err();
    assert!(
        matches!(&err, Error::Io { path, source } if source.kind() == std::io::ErrorKind::NotFound
            && path.starts_with(&missing)),
        "{err:?}"
    );
    assert!(!missing.exists());
}

#[test]
fn m1_a_read_only_handle_refuses_every_write_and_writes_nothing() {
    let (dir, digest) = store();
    let session = {
        let writer = open(dir.path(), OpenMode::Exclusive).unwrap();
        let upload = writer.repository("app").unwrap().start_upload().unwrap();
        upload.append(b"first").unwrap();
        upload.id().to_owned()
    };
    let registry = open(dir.path(), OpenMode::ReadOnly).unwrap();
    let repo = registry.repository("app").unwrap();
    let upload = repo.resume_upload(&session).unwrap();
    assert_eq!(upload.offset(), 5);
    let files = || {
        let mut names: Vec<_> = common::files_in(dir.path());
        names.sort();
        names
    };
    let (before, files_before) = (snapshot(&registry), files());
    let body = serde_json::to_vec(&image_body(&(digest.clone(), 1), &[])).unwrap();
    let refusals: Vec<(&str, ocistore::Result<()>)> = vec![
        ("put_blob", repo.put_blob_sha256(b"new").map(drop)),
        ("start_upload", repo.start_upload().map(drop)),
        ("append", upload.append(b"more").map(drop)),
        ("finish", upload.finish(&digest)),
        ("cancel", upload.cancel()),
        (
            "push",
            repo.push_manifest("v2", OCI_MANIFEST, &body).map(drop),
        ),
        ("tag", repo.tag("v2", &digest)),
        ("untag", repo.untag("v1")),
        ("delete_manifest", repo.delete_manifest("v1").map(drop)),
        ("delete_repository", registry.delete_repository("app")),
        (
            "restore",
            repo.restore(Restore::Tag("v1"), OnConflict::Refuse)
                .map(drop),
        ),
        (
            "set_locks",
            repo.set_locks(
                &Item::Tag("v1".into()),
                Locks::default().with_write_enabled(false),
            ),
        ),
        (
            "soft delete",
            registry.set_soft_delete_enabled(true).map(drop),
        ),
        (
            "retention",
            registry.set_retention_policy(RetentionPolicy::enabled(1).unwrap()),
        ),
        ("history retention", registry.set_history_retention_days(1)),
        ("run_now", registry.run_now().map(drop)),
        (
            "purge",
            registry
                .purge(&PurgeOptions::new(["app:.*"]).unwrap())
                .map(drop),
        ),
        (
            "collect",
            registry.collect(&CollectOptions::default()).map(drop),
        ),
        (
            "fsck repair",
            registry
                .fsck(&FsckOptions::default().repair(true))
                .map(drop),
        ),
        ("batch", registry.batch(|_| Ok(()))),
    ];
    for (call, outcome) in refusals {
        assert!(
            matches!(&outcome, Err(Error::ReadOnly { path }) if path == dir.path()),
            "{call}: {outcome:?}"
        );
    }
    // Reads, and the checks that only read, work.
    assert_eq!(repo.pull("v1").unwrap().digest, digest);
    assert!(
        registry
            .collect(&CollectOptions::default().dry_run(true))
            .is_ok()
    );
    assert!(
        registry
            .fsck(&FsckOptions::default())
            .unwrap()
            .problems
            .is_empty()
    );
    assert_eq!(registry.repositories(&Page::all()).unwrap(), ["app"]);
    assert_eq!((snapshot(&registry), files()), (before, files_before));
}

#[test]
fn m2_a_commit_in_one_handle_is_seen_by_the_next_read_in_every_other() {
    let (dir, _) = store();
    let a = open(dir.path(), OpenMode::Shared).unwrap();
    let b = open(dir.path(), OpenMode::Shared).unwrap();
    let reader = open(dir.path(), OpenMode::ReadOnly).unwrap();
    let repo = |r: &Registry| r.repository("app").unwrap();
    for round in 0..20 {
        let tag = format!("t{round}");
        let (writer, other) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let digest = push_image(&repo(writer), &tag, &format!("round {round}"));
        for r in [other, &reader] {
            assert_eq!(repo(r).resolve(&tag).unwrap(), digest, "round {round}");
        }
        repo(other).untag(&tag).unwrap();
        for r in [writer, &reader] {
            assert!(repo(r).resolve(&tag).is_err(), "round {round}");
        }
    }
}

const CHILD_DIR: &str = "OCISTORE_SHARED_CHILD_DIR";
const CHILD_MODE: &str = "OCISTORE_SHARED_CHILD_MODE";

/// In a child process: opens the store in the given mode and, if it may write, pushes
/// `child:v1`; prints the outcome.
#[test]
fn m1_child_shared_probe() {
    let (Some(dir), Some(mode)) = (std::env::var_os(CHILD_DIR), std::env::var(CHILD_MODE).ok())
    else {
        return;
    };
    let mode: OpenMode = serde_json::from_value(serde_json::json!(mode)).unwrap();
    let outcome = open(Path::new(&dir), mode).map(|registry| {
        if mode == OpenMode::ReadOnly {
            registry.repository("app").unwrap().resolve("v1").unwrap()
        } else {
            push_image(&registry.repository("child").unwrap(), "v1", "child")
        }
    });
    println!(
        "CHILD {}",
        outcome.map_or_else(|e| format!("{e:?}"), |d| d.to_string())
    );
}

fn child(dir: &Path, mode: OpenMode) -> String {
    let out = child_test("m1_child_shared_probe")
        .env(CHILD_DIR, dir)
        .env(CHILD_MODE, mode.as_str())
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout
        .lines()
        .find_map(|l| l.split_once("CHILD ").map(|(_, rest)| rest))
        .unwrap_or_else(|| {
            panic!(
                "no child line: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_owned()
}

#[test]
fn m1_m2_another_process_opens_beside_a_shared_handle_and_its_push_is_seen_at_once() {
    let (dir, digest) = store();
    let parent = open(dir.path(), OpenMode::Shared).unwrap();
    let reader = open(dir.path(), OpenMode::ReadOnly).unwrap();
    assert_eq!(child(dir.path(), OpenMode::ReadOnly), digest.to_string());
    let pushed = child(dir.path(), OpenMode::Shared);
    for r in [&parent, &reader] {
        assert_eq!(
            r.repository("child")
                .unwrap()
                .resolve("v1")
                .unwrap()
                .to_string(),
            pushed
        );
    }
    assert!(
        child(dir.path(), OpenMode::Exclusive).starts_with("AlreadyOpen"),
        "an exclusive open beside shared ones is refused"
    );
    drop((parent, reader));
    let exclusive = open(dir.path(), OpenMode::Exclusive).unwrap();
    let refused = child(dir.path(), OpenMode::Shared);
    assert!(refused.contains("held_by: Exclusive"), "{refused}");
    drop(exclusive);
}

#[test]
fn m3_collections_in_two_handles_never_overlap() {
    let (dir, _) = store();
    let a = open(dir.path(), OpenMode::Shared).unwrap();
    let b = open(dir.path(), OpenMode::Shared).unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    let mut other = None;
    a.collect_with_progress(&CollectOptions::default(), |p| {
        if p.phase == Phase::Mark && other.is_none() {
            let (b, done_tx) = (b.clone(), done_tx.clone());
            other = Some(std::thread::spawn(move || {
                let report = b.collect(&CollectOptions::default());
                done_tx.send(Instant::now()).unwrap();
                report
            }));
            // Given time to run, the other collection would finish: it must wait.
            assert!(done_rx.recv_timeout(Duration::from_millis(300)).is_err());
        }
    })
    .unwrap();
    let a_done = Instant::now();
    other.unwrap().join().unwrap().unwrap();
    assert!(done_rx.recv().unwrap() >= a_done);
}

#[test]
fn m3_g2_a_push_in_another_handle_during_a_collection_keeps_the_blobs_it_uses() {
    let (dir, _) = store();
    let a = open(dir.path(), OpenMode::Shared).unwrap();
    // A layer no manifest references, older than the (zero) grace period: the mark leaves it
    // out, so only the journal of the push below can save it.
    let layer = a
        .repository("app")
        .unwrap()
        .put_blob_sha256(b"an old layer")
        .unwrap();
    let mut pushed = None;
    a.collect_with_progress(&CollectOptions::default(), |p| {
        if p.phase != Phase::Mark || pushed.is_some() {
            return;
        }
        // A handle opened while the collection runs: its open must not end the collection's
        // journal, and its push must be journaled.
        let b = open(dir.path(), OpenMode::Shared).unwrap();
        let repo = b.repository("app").unwrap();
        let config = repo.put_blob_sha256(b"{}").unwrap();
        let body = image_body(&(config, 2), &[(layer.clone(), 12)]);
        let body = serde_json::to_vec(&body).unwrap();
        pushed = Some(
            repo.push_manifest("v2", OCI_MANIFEST, &body)
                .unwrap()
                .digest,
        );
    })
    .unwrap();
    let repo = a.repository("app").unwrap();
    assert_eq!(repo.resolve("v2").unwrap(), pushed.unwrap());
    assert_eq!(repo.blob(&layer).unwrap(), &b"an old layer"[..]);
    let report = a
        .fsck(&FsckOptions::default().verify_digests(true))
        .unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}
