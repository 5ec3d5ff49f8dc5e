//! SPEC P1, C1, C2 under injected faults: a blob store whose writes fail on command
//! (`ocistore_testkit::Faults`) refuses the call with an I/O error, stores nothing, panics
//! nowhere, and works normally afterwards and after a reopen; a crash image taken in the middle
//! of a batch reopens consistent.

use std::path::Path;
use std::time::Duration;

use ocistore::manifest::OCI_MANIFEST;
use ocistore::{
    Algorithm, CollectOptions, Digest, Error, FsckOptions, ManualClock, Problem, Registry, Result,
    Timestamp,
};
use ocistore_testkit::fuzz::{copy_dir, is_injected};
use ocistore_testkit::{Faults, snapshot};
use tempfile::TempDir;

const START: Timestamp = Timestamp::from_nanos(1_767_225_600 * 1_000_000_000);

fn open(dir: &Path, faults: &Faults) -> Registry {
    Registry::builder()
        .clock(ManualClock::new(START))
        .blob_store(faults.directory_store(dir))
        .open(dir)
        .expect("open")
}

fn image(config: &Digest, layer: &Digest) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": 5}],
    }))
    .unwrap()
}

fn assert_injected<T: std::fmt::Debug>(result: Result<T>) {
    match result {
        Err(e) if is_injected(&e) => {}
        other => panic!("expected the injected I/O error, got {other:?}"),
    }
}

/// The store after a reopen: what it held, nothing more.
fn reopened(dir: &TempDir, faults: &Faults, registry: Registry) -> Registry {
    let before = snapshot(&registry);
    drop(registry);
    let registry = open(dir.path(), faults);
    assert_eq!(snapshot(&registry), before, "the reopen changed the store");
    registry
}

#[test]
fn p1_c2_a_failed_blob_write_stores_nothing_and_the_store_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let registry = open(dir.path(), &faults);
    let repo = registry.repository("team/app").unwrap();
    repo.put_blob_sha256(b"kept").unwrap();
    let before = snapshot(&registry);

    faults.fail_next_writes(1);
    let digest = Algorithm::Sha256.digest(b"layer");
    assert_injected(repo.put_blob(&digest, b"layer"));
    assert_eq!(snapshot(&registry), before, "a failed put wrote something");
    assert!(!faults.armed());
    assert_eq!(faults.injected(), 1);
    assert!(matches!(repo.blob(&digest), Err(Error::BlobUnknown { .. })));

    // Two in a row: each put fails alone.
    faults.fail_next_writes(2);
    assert_injected(repo.put_blob_sha256(b"layer"));
    assert_injected(repo.put_blob(&Algorithm::Blake3.digest(b"layer"), b"layer"));
    assert_eq!(snapshot(&registry), before);

    // A put of a blob the store holds writes no file: nothing to fail.
    faults.fail_next_writes(1);
    registry
        .repository("lib")
        .unwrap()
        .put_blob_sha256(b"kept")
        .unwrap();
    assert!(faults.armed());
    faults.clear();

    assert_eq!(repo.put_blob_sha256(b"layer").unwrap(), digest);
    drop(repo);
    let registry = reopened(&dir, &faults, registry);
    let repo = registry.repository("team/app").unwrap();
    assert_eq!(repo.blob(&digest).unwrap(), &b"layer"[..]);
    assert_fsck_clean(&registry);
}

#[test]
fn p1_c1_a_failed_write_in_a_batch_fails_the_push_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let registry = open(dir.path(), &faults);
    let repo = registry.repository("team/app").unwrap();
    let push = |registry: &Registry| {
        registry.batch(|b| {
            let config = b.put_blob_sha256(&repo, b"{}")?;
            let layer = b.put_blob_sha256(&repo, b"layer")?;
            b.push_manifest(&repo, "v1", OCI_MANIFEST, &image(&config, &layer))
                .map(|pushed| pushed.digest)
        })
    };
    let before = snapshot(&registry);

    // The batch's first write fails: nothing at all is written.
    faults.fail_next_writes(1);
    assert_injected(push(&registry));
    assert_eq!(
        snapshot(&registry),
        before,
        "a failed batch wrote something"
    );

    // Its second write fails: the first blob's file stays, a stray that no record names,
    // which a repair reclaims.
    faults.fail_writes_after(1, 1);
    assert_injected(push(&registry));
    assert!(!faults.armed());
    let after = snapshot(&registry);
    let strays: Vec<&str> = after.lines().filter(|l| !before.contains(l)).collect();
    assert_eq!(strays.len(), 1, "{strays:?}");
    assert!(strays[0].starts_with("file blobs/sha256/"), "{strays:?}");
    let report = registry.fsck(&FsckOptions::default()).unwrap();
    assert!(
        matches!(&report.problems[..], [Problem::StrayBlobFile { .. }]),
        "{report:?}"
    );
    assert!(matches!(
        repo.pull("v1"),
        Err(Error::ManifestUnknown { .. })
    ));

    // The store goes on: the same batch succeeds, and reuses the stray file.
    let digest = push(&registry).unwrap();
    assert_eq!(repo.pull("v1").unwrap().digest, digest);
    assert_fsck_clean(&registry);
    drop(repo);
    let registry = reopened(&dir, &faults, registry);
    let repo = registry.repository("team/app").unwrap();
    assert_eq!(repo.pull("v1").unwrap().digest, digest);
}

#[test]
fn p1_a_failed_upload_append_keeps_the_session_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let registry = open(dir.path(), &faults);
    let repo = registry.repository("team/app").unwrap();
    let upload = repo.start_upload().unwrap();
    assert_eq!(upload.append(b"hello ").unwrap(), 6);
    let before = snapshot(&registry);

    faults.fail_next_writes(1);
    assert_injected(upload.append(b"world"));
    assert_eq!(upload.offset(), 6);
    assert_eq!(
        snapshot(&registry),
        before,
        "a failed append wrote something"
    );
    faults.fail_next_writes(1);
    assert_injected(upload.append_at(6, b"world"));
    assert_eq!(snapshot(&registry), before);
    assert_eq!(repo.resume_upload(upload.id()).unwrap().offset(), 6);

    // The client sends the chunk again.
    assert_eq!(upload.append_at(6, b"world").unwrap(), 11);
    let id = upload.id().to_owned();
    drop((upload, repo));
    let registry = reopened(&dir, &faults, registry);
    let repo = registry.repository("team/app").unwrap();
    let upload = repo.resume_upload(&id).unwrap();
    assert_eq!(upload.offset(), 11);
    let digest = Algorithm::Sha256.digest(b"hello world");
    upload.finish(&digest).unwrap();
    assert_eq!(repo.blob(&digest).unwrap(), &b"hello world"[..]);
}

#[test]
fn p1_c2_a_failed_upload_finish_stores_nothing_and_the_session_stays() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let registry = open(dir.path(), &faults);
    let repo = registry.repository("team/app").unwrap();
    let upload = repo.start_upload().unwrap();
    upload.append(b"a layer").unwrap();
    let before = snapshot(&registry);

    let digest = Algorithm::Sha512.digest(b"a layer");
    faults.fail_next_writes(1);
    assert_injected(upload.finish(&digest));
    assert_eq!(
        snapshot(&registry),
        before,
        "a failed finish wrote something"
    );
    assert!(matches!(repo.blob(&digest), Err(Error::BlobUnknown { .. })));
    assert_eq!(repo.resume_upload(upload.id()).unwrap().offset(), 7);

    // After a reopen too, the session is whole and finishes.
    let id = upload.id().to_owned();
    drop((upload, repo));
    let registry = reopened(&dir, &faults, registry);
    let repo = registry.repository("team/app").unwrap();
    let upload = repo.resume_upload(&id).unwrap();
    faults.fail_next_writes(1);
    assert_injected(upload.finish(&digest));
    upload.finish(&digest).unwrap();
    assert_eq!(repo.blob(&digest).unwrap(), &b"a layer"[..]);
    assert!(matches!(
        repo.resume_upload(&id),
        Err(Error::UploadUnknown { .. })
    ));
    drop((upload, repo));
    let registry = reopened(&dir, &faults, registry);
    assert_fsck_clean(&registry);
}

#[test]
fn p1_a_failed_upload_start_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let registry = open(dir.path(), &faults);
    let repo = registry.repository("team/app").unwrap();
    let before = snapshot(&registry);
    faults.fail_next_writes(1);
    assert_injected(repo.start_upload());
    assert_eq!(snapshot(&registry), before);
    let upload = repo.start_upload().unwrap();
    upload.append(b"x").unwrap();
    upload.finish(&Algorithm::Sha256.digest(b"x")).unwrap();
    assert_eq!(faults.injected(), 1);
    // start, append, finish: three writes, and the failed one.
    assert_eq!(faults.writes(), 4);
}

#[test]
fn c2_a_crash_in_the_middle_of_a_batch_reopens_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let registry = open(dir.path(), &faults);
    let repo = registry.repository("team/app").unwrap();
    let kept = repo.put_blob_sha256(b"kept").unwrap();
    let committed = snapshot(&registry);

    // Killed just before the batch's second write: the first blob's file is in place, the
    // transaction naming it open.
    let crash = tempfile::tempdir().unwrap();
    faults.crash_image_at(1, crash.path().join("store"));
    let digest = registry
        .batch(|b| {
            let config = b.put_blob_sha256(&repo, b"{}")?;
            let layer = b.put_blob_sha256(&repo, b"layer")?;
            b.push_manifest(&repo, "v1", OCI_MANIFEST, &image(&config, &layer))
                .map(|pushed| pushed.digest)
        })
        .unwrap();
    let image_dir = faults.crash_image().expect("the second write came");
    assert_eq!(image_dir, crash.path().join("store"));
    faults.clear();
    assert!(faults.crash_image().is_none());
    assert_eq!(repo.pull("v1").unwrap().digest, digest);

    // The restart finds the store as the last commit left it, and a stray file the repair
    // reclaims once the grace period has passed.
    let clock = ManualClock::new(START);
    let restarted = Registry::builder()
        .clock(clock.clone())
        .grace_period(Duration::ZERO)
        .open(&image_dir)
        .unwrap();
    let strays: Vec<String> = snapshot(&restarted)
        .lines()
        .filter(|l| !committed.contains(l))
        .map(str::to_owned)
        .collect();
    assert_eq!(strays.len(), 1, "{strays:?}");
    assert!(strays[0].starts_with("file blobs/"), "{strays:?}");
    let restarted_repo = restarted.repository("team/app").unwrap();
    assert!(matches!(
        restarted_repo.pull("v1"),
        Err(Error::ManifestUnknown { .. })
    ));
    assert_eq!(restarted_repo.blob(&kept).unwrap(), &b"kept"[..]);
    let repair = FsckOptions::default().repair(true);
    let report = restarted.fsck(&repair).unwrap();
    assert_eq!(report.repaired, 1, "{report:?}");
    assert_eq!(snapshot(&restarted), committed);
    restarted.collect(&CollectOptions::default()).unwrap();

    // A copy of an open store is a crash image as well: it opens with everything committed.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(registry.path(), copy.path()).unwrap();
    let before = snapshot(&registry);
    let copied = open(copy.path(), &faults);
    assert_eq!(snapshot(&copied), before);
}

/// `fsck` with digests verified finds nothing wrong.
fn assert_fsck_clean(registry: &Registry) {
    let problems = registry.fsck(&FsckOptions::default()).unwrap().problems;
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn c4_a_blob_store_that_is_full_refuses_every_write_of_bytes_and_the_rest_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let registry = open(dir.path(), &faults);
    let repo = registry.repository("team/app").unwrap();
    let config = repo.put_blob_sha256(b"{}").unwrap();
    let layer = repo.put_blob_sha256(b"layer").unwrap();
    let v1 = repo
        .push_manifest("v1", OCI_MANIFEST, &image(&config, &layer))
        .unwrap()
        .digest;
    let upload = repo.start_upload().unwrap();
    upload.append(b"half").unwrap();

    faults.set_disk_full(true);
    let full = |result: Result<()>| match result {
        Err(Error::StorageFull { .. }) => {}
        other => panic!("expected StorageFull, got {other:?}"),
    };
    // Every call that writes bytes is refused, writes nothing and leaves the session as it was.
    let before = snapshot(&registry);
    full(repo.put_blob_sha256(b"new layer").map(drop));
    full(repo.start_upload().map(drop));
    full(upload.append(b" more").map(drop));
    full(upload.finish(&Algorithm::Sha256.digest(b"half")));
    full(registry.batch(|b| b.put_blob_sha256(&repo, b"in a batch").map(drop)));
    assert_eq!(
        snapshot(&registry),
        before,
        "a refused write wrote something"
    );
    assert_eq!(upload.offset(), 4);
    assert!(faults.injected() >= 5);

    // Reads, and the calls that write no bytes, go on; so do deletes and the collector.
    assert_eq!(repo.blob(&layer).unwrap(), &b"layer"[..]);
    repo.put_blob_sha256(b"layer").unwrap(); // held already: no bytes to write
    repo.tag("latest", &v1).unwrap();
    repo.untag("v1").unwrap();
    registry.collect(&CollectOptions::default()).unwrap();

    // Room again: the same calls succeed, without a reopen.
    faults.set_disk_full(false);
    assert!(registry.health().writable);
    upload.append(b" more").unwrap();
    upload
        .finish(&Algorithm::Sha256.digest(b"half more"))
        .unwrap();
    repo.put_blob_sha256(b"new layer").unwrap();
    assert_eq!(repo.resolve("latest").unwrap(), v1);
    assert_fsck_clean(&registry);
}
