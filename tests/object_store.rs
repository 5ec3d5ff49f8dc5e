//! Blobs in object storage (O1–O4): every test runs on object_store's in-memory store, on
//! Azurite (Azure) and on moto's S3 server, each on a fresh prefix. The servers come from
//! `.ci/object-servers start`; a test whose server is down fails with that command.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{START, files_in, push_image, seed_blobs, snapshot, upload_image};
use ocistore::manifest::OCI_MANIFEST;
use ocistore::{
    Algorithm, BlobStore, CollectOptions, Digest, Error, FsckOptions, ManualClock,
    ObjectStoreBlobs, Problem, Registry, RegistryBuilder, Repository, RequestCounts,
};
use ocistore_testkit::servers;
use tempfile::TempDir;

/// Parts of this many bytes on the stores that take any size; S3 wants 5 MiB.
const SMALL_PART: usize = 64;
const S3_PART: usize = 5 << 20;

/// The three stores, each on a fresh prefix, with the part size each allows: (name, store,
/// part size).
fn backends() -> Vec<(&'static str, ObjectStoreBlobs, usize)> {
    vec![
        (
            "memory",
            ObjectStoreBlobs::in_memory("tests")
                .with_part_size(SMALL_PART)
                .unwrap(),
            SMALL_PART,
        ),
        ("azurite", servers::azurite_blobs(SMALL_PART), SMALL_PART),
        ("s3", servers::s3_blobs(S3_PART), S3_PART),
    ]
}

fn builder(clock: &ManualClock, blobs: &ObjectStoreBlobs) -> RegistryBuilder {
    Registry::builder()
        .clock(clock.clone())
        .cache_size(16 << 20)
        .blob_store(blobs.clone())
}

fn open(dir: &Path, clock: &ManualClock, blobs: &ObjectStoreBlobs) -> Registry {
    builder(clock, blobs).open(dir).expect("open store")
}

/// A new store on `blobs`, its clock and its repository `app`.
fn fresh(blobs: &ObjectStoreBlobs) -> (TempDir, ManualClock, Registry, Repository) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let registry = open(dir.path(), &clock, blobs);
    let repo = registry.repository("app").unwrap();
    (dir, clock, registry, repo)
}

/// The requests `blobs` sent since `before`, kind by kind.
fn since(blobs: &ObjectStoreBlobs, before: RequestCounts) -> RequestCounts {
    let now = blobs.requests();
    let mut d = RequestCounts::default();
    d.put = now.put - before.put;
    d.get = now.get - before.get;
    d.head = now.head - before.head;
    d.list = now.list - before.list;
    d.delete = now.delete - before.delete;
    d.bulk_delete = now.bulk_delete - before.bulk_delete;
    d.multipart_create = now.multipart_create - before.multipart_create;
    d.multipart_part = now.multipart_part - before.multipart_part;
    d.multipart_complete = now.multipart_complete - before.multipart_complete;
    d.multipart_abort = now.multipart_abort - before.multipart_abort;
    d.copy = now.copy - before.copy;
    d
}

fn hex(digest: &Digest) -> &str {
    digest.as_str().split_once(':').unwrap().1
}

/// Every file under `dir` but the database, relative to it.
fn local_files(dir: &Path) -> Vec<String> {
    files_in(dir).into_iter().map(|(name, _)| name).collect()
}

#[test]
fn o1_blobs_live_in_the_object_store_and_metadata_in_redb() {
    for (name, blobs, _) in backends() {
        let (dir, clock, registry, repo) = fresh(&blobs);
        let digest = push_image(&repo, "v1", "o1");
        for blob in seed_blobs("o1") {
            assert!(
                blobs.contains(&blob).unwrap(),
                "{name}: {blob} is an object"
            );
        }
        let files = local_files(dir.path());
        assert!(
            files.iter().all(|f| !f.starts_with("blobs/")),
            "{name}: no blob file on the local disk: {files:?}"
        );
        assert_eq!(repo.pull("v1").unwrap().digest, digest, "{name}");
        drop((repo, registry));
        // Another handle on the same place, after a restart, reads the same bytes.
        let registry = open(dir.path(), &clock, &blobs);
        let repo = registry.repository("app").unwrap();
        for blob in seed_blobs("o1") {
            let bytes = repo.blob(&blob).unwrap();
            assert_eq!(Algorithm::Sha256.digest(&bytes), blob, "{name}");
        }
    }
}

#[test]
fn o1_a_push_costs_one_put_per_new_blob_and_a_known_blob_none() {
    for (name, blobs, _) in backends() {
        let (_dir, _clock, registry, repo) = fresh(&blobs);
        let before = blobs.requests();
        let body = upload_image(&repo, b"config", &[b"layer one", b"layer two"]);
        repo.push_manifest("v1", OCI_MANIFEST, &body).unwrap();
        let pushed = since(&blobs, before);
        assert_eq!(pushed.put, 3, "{name}: one PUT per new blob: {pushed:?}");
        assert_eq!(
            pushed.get + pushed.head + pushed.list + pushed.copy,
            0,
            "{name}: {pushed:?}"
        );
        // The same blobs again, into another repository: no request at all.
        let other = registry.repository("other").unwrap();
        let before = blobs.requests();
        upload_image(&other, b"config", &[b"layer one", b"layer two"]);
        assert_eq!(since(&blobs, before), RequestCounts::default(), "{name}");
        // A pull of a blob: one GET.
        let before = blobs.requests();
        let layer = Algorithm::Sha256.digest(b"layer one");
        assert_eq!(repo.blob(&layer).unwrap(), &b"layer one"[..]);
        let pulled = since(&blobs, before);
        assert_eq!(
            (pulled.get, pulled.put + pulled.head),
            (1, 0),
            "{name}: {pulled:?}"
        );
    }
}

#[test]
fn o2_p1_a_put_with_the_wrong_digest_writes_no_object_and_sends_nothing() {
    for (name, blobs, _) in backends() {
        let (_dir, _clock, _registry, repo) = fresh(&blobs);
        let claimed = Algorithm::Sha256.digest(b"what the client said");
        let before = blobs.requests();
        let err = repo.put_blob(&claimed, b"what it sent").unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{name}: {err}");
        assert_eq!(since(&blobs, before), RequestCounts::default(), "{name}");
        assert!(!blobs.contains(&claimed).unwrap(), "{name}");
        assert!(repo.blob(&claimed).is_err(), "{name}");
    }
}

#[test]
fn o3_a_streamed_upload_sends_parts_and_keeps_less_than_a_part_locally() {
    for (name, blobs, part) in backends() {
        let (dir, _clock, _registry, repo) = fresh(&blobs);
        let bytes: Vec<u8> = (0..part * 2 + part / 2)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let upload = repo.start_upload().unwrap();
        let before = blobs.requests();
        let mut largest_local = 0;
        for chunk in bytes.chunks(part / 3 + 1) {
            upload.append(chunk).unwrap();
            let local: u64 = files_in(dir.path())
                .iter()
                .filter(|(f, _)| f.contains(upload.id()))
                .map(|(_, len)| len)
                .sum();
            largest_local = largest_local.max(local);
        }
        let sent = since(&blobs, before);
        assert_eq!(
            sent.multipart_part, 2,
            "{name}: two whole parts went: {sent:?}"
        );
        assert_eq!(sent.put, 0, "{name}: {sent:?}");
        assert!(
            largest_local < 2 * part as u64,
            "{name}: the local disk held {largest_local} bytes of a session with parts of {part}"
        );
        let digest = Algorithm::Sha256.digest(&bytes);
        upload.finish(&digest).unwrap();
        assert_eq!(repo.blob(&digest).unwrap(), bytes, "{name}");
        assert!(
            local_files(dir.path())
                .iter()
                .all(|f| !f.contains(upload.id())),
            "{name}: the session left nothing on the local disk"
        );
    }
}

#[test]
fn o3_a_session_resumes_after_a_restart_from_its_parts_in_redb() {
    for (name, blobs, part) in backends() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(START);
        let bytes: Vec<u8> = (0..part * 2 + 5).map(|i| (i * 13 % 241) as u8).collect();
        let (first, rest) = bytes.split_at(part + part / 2);
        let id = {
            let registry = open(dir.path(), &clock, &blobs);
            let upload = registry.repository("app").unwrap().start_upload().unwrap();
            upload.append(first).unwrap();
            upload.id().to_owned()
        };
        // A new process: a new client for the same place, the same store directory.
        let again = servers::reopen(&blobs);
        let registry = open(dir.path(), &clock, &again);
        let repo = registry.repository("app").unwrap();
        let upload = repo.resume_upload(&id).unwrap();
        assert_eq!(upload.offset(), first.len() as u64, "{name}");
        upload.append(rest).unwrap();
        let digest = Algorithm::Sha256.digest(&bytes);
        upload.finish(&digest).unwrap();
        assert_eq!(repo.blob(&digest).unwrap(), bytes, "{name}");
    }
}

#[test]
fn o3_a_wrong_sha256_after_parts_leaves_no_blob_and_the_session_open() {
    for (name, blobs, part) in backends() {
        let (_dir, _clock, _registry, repo) = fresh(&blobs);
        let bytes = vec![7u8; part * 2];
        let upload = repo.start_upload().unwrap();
        upload.append(&bytes).unwrap();
        let wrong = Algorithm::Sha256.digest(b"something else");
        let before = blobs.requests();
        let err = upload.finish(&wrong).unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{name}: {err}");
        assert_eq!(since(&blobs, before), RequestCounts::default(), "{name}");
        assert!(!blobs.contains(&wrong).unwrap(), "{name}");
        // Still open: more bytes, then the right digest.
        upload.append(b"tail").unwrap();
        let mut all = bytes.clone();
        all.extend_from_slice(b"tail");
        upload.finish(&Algorithm::Sha256.digest(&all)).unwrap();
        assert_eq!(
            repo.blob(&Algorithm::Sha256.digest(&all)).unwrap(),
            all,
            "{name}"
        );
    }
}

#[test]
fn o3_a_blake3_finish_after_parts_is_checked_as_the_parts_join() {
    for (name, blobs, part) in backends() {
        let (_dir, _clock, _registry, repo) = fresh(&blobs);
        let bytes = vec![3u8; part + 9];
        let upload = repo.start_upload().unwrap();
        upload.append(&bytes).unwrap();
        // Wrong: no blob, and the session is over (its parts were joined to be read back).
        let err = upload
            .finish(&Algorithm::Blake3.digest(b"not these"))
            .unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{name}: {err}");
        assert!(
            matches!(upload.append(b"x"), Err(Error::UploadUnknown { .. })),
            "{name}"
        );
        let upload = repo.start_upload().unwrap();
        upload.append(&bytes).unwrap();
        let digest = Algorithm::Blake3.digest(&bytes);
        upload.finish(&digest).unwrap();
        assert_eq!(repo.blob(&digest).unwrap(), bytes, "{name}");
    }
}

#[test]
fn o3_p2_a_blake3_finish_naming_another_repositorys_blob_is_checked_not_linked() {
    for (name, blobs, part) in backends() {
        let (_dir, _clock, registry, repo) = fresh(&blobs);
        let secret = b"a blob only the other repository holds";
        let other = registry.repository("other").unwrap();
        let digest = Algorithm::Blake3.digest(secret);
        other.put_blob(&digest, secret).unwrap();
        // Parts sent: blake3 cannot be checked from a saved state, only as the parts join.
        let upload = repo.start_upload().unwrap();
        upload.append(&vec![0u8; part + 1]).unwrap();
        let err = upload.finish(&digest).unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{name}: {err}");
        assert!(repo.blob(&digest).is_err(), "{name}: not linked into app");
        assert_eq!(other.blob(&digest).unwrap(), &secret[..], "{name}");
    }
}

#[test]
fn o2_g1_the_sweep_deletes_objects_online_in_bulk() {
    for (name, blobs, _) in backends() {
        let (_dir, clock, registry, repo) = fresh(&blobs);
        let kept = push_image(&repo, "v1", "kept");
        let doomed: Vec<Digest> = (0..300)
            .map(|i| repo.put_blob_sha256(format!("unreferenced {i}")).unwrap())
            .collect();
        clock.advance(Duration::from_secs(2 * 3600));
        let before = blobs.requests();
        let report = registry.collect(&CollectOptions::default()).unwrap();
        let swept = since(&blobs, before);
        assert_eq!(report.blobs_swept, 300, "{name}");
        assert!(
            (1..=3).contains(&swept.bulk_delete) && swept.delete == 0,
            "{name}: 300 blobs in batches of 128: {swept:?}"
        );
        for d in &doomed {
            assert!(!blobs.contains(d).unwrap(), "{name}: {d} swept");
        }
        assert_eq!(repo.pull("v1").unwrap().digest, kept, "{name}");
        for blob in seed_blobs("kept") {
            assert!(repo.blob(&blob).is_ok(), "{name}");
        }
    }
}

#[test]
fn o2_a2_fsck_finds_stray_and_missing_objects_and_repair_removes_strays_after_the_grace() {
    for (name, blobs, _) in backends() {
        let (_dir, _clock, registry, repo) = fresh(&blobs);
        push_image(&repo, "v1", "fsck");
        // An object no record names: as a crash between its PUT and the commit leaves it.
        let stray = Algorithm::Sha256.digest(b"stray object");
        blobs.put(&stray, b"stray object").unwrap();
        // A recorded blob whose object went.
        let layer = &seed_blobs("fsck")[1];
        assert!(blobs.delete(layer).unwrap());
        let report = registry.fsck(&FsckOptions::default()).unwrap();
        assert!(
            report.problems.iter().any(|p| matches!(p, Problem::StrayBlobFile { path } if path.to_string_lossy().contains(hex(&stray)))),
            "{name}: {:?}",
            report.problems
        );
        assert!(
            report
                .problems
                .iter()
                .any(|p| matches!(p, Problem::MissingBlobFile { digest } if digest == layer)),
            "{name}: {:?}",
            report.problems
        );
        let mut repair = FsckOptions::default().repair(true);
        // Objects carry the server's time, not the test clock's: a grace of zero takes them.
        repair.grace_period = Some(Duration::ZERO);
        registry.fsck(&repair).unwrap();
        assert!(
            !blobs.contains(&stray).unwrap(),
            "{name}: the stray object went"
        );
        // A put of a blob with a record sends nothing, so it cannot restore the object; the
        // bytes put back under the store (from a backup, say) mend it.
        let repo = registry.repository("app").unwrap();
        repo.put_blob(layer, b"layer fsck").unwrap();
        assert!(!blobs.contains(layer).unwrap(), "{name}");
        blobs.put(layer, b"layer fsck").unwrap();
        let report = registry.fsck(&FsckOptions::default()).unwrap();
        assert_eq!(report.problems, [], "{name}");
        assert_eq!(report.blobs_checked, 2, "{name}");
    }
}

#[test]
fn o2_g4_an_expired_session_goes_with_its_parts() {
    for (name, blobs, part) in backends() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(START);
        let registry = builder(&clock, &blobs)
            .upload_timeout(Duration::from_secs(60))
            .open(dir.path())
            .unwrap();
        let repo = registry.repository("app").unwrap();
        let upload = repo.start_upload().unwrap();
        upload.append(&vec![1u8; part + 1]).unwrap();
        let id = upload.id().to_owned();
        clock.advance(Duration::from_secs(120));
        let before = blobs.requests();
        let report = registry.collect(&CollectOptions::default()).unwrap();
        assert_eq!(report.uploads_removed, 1, "{name}");
        let sent = since(&blobs, before);
        assert!(
            sent.multipart_abort == 1 || name == "azurite",
            "{name}: the multipart upload is aborted: {sent:?}"
        );
        assert!(
            local_files(dir.path()).iter().all(|f| !f.contains(&id)),
            "{name}: the session's local tail went"
        );
        assert!(
            matches!(upload.append(b"x"), Err(Error::UploadUnknown { .. })),
            "{name}"
        );
    }
}

#[test]
fn o4_opening_with_another_blob_location_is_refused_and_writes_nothing() {
    for (name, blobs, _) in backends() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(START);
        {
            let registry = Registry::builder()
                .clock(clock.clone())
                .open(dir.path())
                .unwrap();
            push_image(&registry.repository("app").unwrap(), "v1", "o4");
        }
        let held = {
            let registry = Registry::builder()
                .clock(clock.clone())
                .open(dir.path())
                .unwrap();
            snapshot(&registry)
        };
        let files = local_files(dir.path());
        let before = blobs.requests();
        let err = builder(&clock, &blobs).open(dir.path()).unwrap_err();
        match &err {
            Error::BlobLocationMismatch { recorded, given } => {
                assert_eq!(recorded, "directory", "{name}");
                assert_eq!(given, &blobs.location(), "{name}");
            }
            other => panic!("{name}: {other}"),
        }
        assert!(err.to_string().contains("directory"), "{name}: {err}");
        assert_eq!(since(&blobs, before), RequestCounts::default(), "{name}");
        let registry = Registry::builder()
            .clock(clock.clone())
            .open(dir.path())
            .unwrap();
        assert_eq!(
            snapshot(&registry),
            held,
            "{name}: the store holds what it held"
        );
        drop(registry);
        assert_eq!(local_files(dir.path()), files, "{name}");

        // The other way round: a store on objects opened without them.
        let dir = tempfile::tempdir().unwrap();
        open(dir.path(), &clock, &blobs);
        let err = Registry::builder().open(dir.path()).unwrap_err();
        assert!(
            matches!(&err, Error::BlobLocationMismatch { recorded, given } if *recorded == blobs.location() && given == "directory"),
            "{name}: {err}"
        );
        assert!(
            !dir.path().join("blobs").exists(),
            "{name}: no blob directory made"
        );
    }
}

#[test]
fn o4_a_second_store_on_the_same_place_is_refused() {
    for (name, blobs, _) in backends() {
        let clock = ManualClock::new(START);
        let first = tempfile::tempdir().unwrap();
        open(first.path(), &clock, &blobs);
        let second = tempfile::tempdir().unwrap();
        let err = builder(&clock, &servers::reopen(&blobs))
            .open(second.path())
            .unwrap_err();
        assert!(
            matches!(&err, Error::BlobLocationTaken { location } if *location == blobs.location()),
            "{name}: {err}"
        );
        // The first store is untouched and opens again.
        open(first.path(), &clock, &blobs);
    }
}
