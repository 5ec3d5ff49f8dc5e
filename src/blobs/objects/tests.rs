//! `ObjectStoreBlobs` on `object_store`'s `InMemory`, with parts of 16 bytes.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use futures_util::StreamExt;
use object_store::memory::InMemory;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::*;
use crate::values::Algorithm;

const PART: usize = 16;

fn store(memory: &Arc<InMemory>, dir: &Path) -> ObjectStoreBlobs {
    let blobs = ObjectStoreBlobs::over_memory("test", memory.clone())
        .with_part_size(PART)
        .unwrap();
    blobs.open(dir, true).unwrap();
    blobs
}

fn fresh() -> (tempfile::TempDir, Arc<InMemory>, ObjectStoreBlobs) {
    let dir = tempfile::tempdir().unwrap();
    let memory = Arc::new(InMemory::new());
    let blobs = store(&memory, dir.path());
    (dir, memory, blobs)
}

fn all(reader: Option<Box<dyn Read + Send>>) -> Vec<u8> {
    let mut bytes = Vec::new();
    reader.unwrap().read_to_end(&mut bytes).unwrap();
    bytes
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

/// Every object's key, sorted.
fn keys(memory: &InMemory) -> Vec<String> {
    let mut keys: Vec<String> = block_on(
        memory
            .list(None)
            .map(|m| m.unwrap().location.to_string())
            .collect(),
    );
    keys.sort();
    keys
}

fn put_object(memory: &InMemory, key: &str, bytes: &'static [u8]) {
    block_on(memory.put(&Key::from(key), PutPayload::from_static(bytes))).unwrap();
}

/// The session's tail files: (start, length).
fn tails(dir: &Path, id: &str) -> Vec<(u64, u64)> {
    let mut tails: Vec<(u64, u64)> = fs::read_dir(dir.join(SESSIONS_DIR).join(id))
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let start = e
                .file_name()
                .to_str()?
                .strip_prefix("tail.")?
                .parse()
                .ok()?;
            Some((start, e.metadata().unwrap().len()))
        })
        .collect();
    tails.sort_unstable();
    tails
}

fn session_dir(dir: &Path, id: &str) -> PathBuf {
    dir.join(SESSIONS_DIR).join(id)
}

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

#[test]
fn put_contains_size_and_ranged_reads() {
    let (_dir, _memory, blobs) = fresh();
    let digest = Algorithm::Sha256.digest(b"hello world");
    assert!(!blobs.contains(&digest).unwrap());
    assert_eq!(blobs.size(&digest).unwrap(), None);
    assert!(blobs.read(&digest, 0, 5).unwrap().is_none());
    blobs.put(&digest, b"hello world").unwrap();
    assert!(blobs.contains(&digest).unwrap());
    assert_eq!(blobs.size(&digest).unwrap(), Some(11));
    assert_eq!(all(blobs.read(&digest, 6, 11).unwrap()), b"world");
    assert_eq!(
        all(blobs.read(&digest, 0, u64::MAX).unwrap()),
        b"hello world"
    );
    assert_eq!(all(blobs.read(&digest, 3, u64::MAX).unwrap()), b"lo world");
    assert_eq!(all(blobs.read(&digest, 4, 4).unwrap()), b"");
    let empty = Algorithm::Sha256.digest(b"");
    blobs.put(&empty, b"").unwrap();
    assert_eq!(blobs.size(&empty).unwrap(), Some(0));
    assert_eq!(all(blobs.read(&empty, 0, 0).unwrap()), b"");
    assert_eq!(all(blobs.read(&empty, 0, u64::MAX).unwrap()), b"");
    assert_eq!(blobs.read_parallelism(), 8);
}

#[test]
fn a_large_blob_streams_through_a_reader() {
    let (_dir, _memory, blobs) = fresh();
    let big = bytes(3 << 20, 1);
    let digest = Algorithm::Sha256.digest(&big);
    blobs.put(&digest, &big).unwrap();
    let mut reader = blobs.read(&digest, 0, u64::MAX).unwrap().unwrap();
    let mut first = [0; 10];
    reader.read_exact(&mut first).unwrap();
    assert_eq!(first, big[..10]);
    // Dropped part way: the feeding task ends.
    drop(reader);
    assert_eq!(all(blobs.read(&digest, 1, 3 << 20).unwrap()), big[1..]);
}

#[test]
fn a_put_with_the_wrong_digest_sends_no_request() {
    let (_dir, memory, blobs) = fresh();
    let before = blobs.requests();
    let wrong = Algorithm::Sha256.digest(b"other");
    assert!(matches!(
        blobs.put(&wrong, b"bytes"),
        Err(Error::DigestMismatch { .. })
    ));
    assert_eq!(blobs.requests(), before);
    assert_eq!(keys(&memory), ["ocistore-store.json"]);
}

#[test]
fn a_second_put_of_a_blob_is_one_put_that_finds_it() {
    let (_dir, memory, blobs) = fresh();
    let digest = Algorithm::Sha256.digest(b"abc");
    let before = blobs.requests();
    blobs.put(&digest, b"abc").unwrap();
    blobs.put(&digest, b"abc").unwrap();
    assert_eq!(
        blobs.requests(),
        RequestCounts {
            put: before.put + 2,
            ..before
        }
    );
    assert_eq!(
        keys(&memory),
        [format!("blobs/sha256/{}", digest.hex()).as_str(), MARKER]
    );
}

#[test]
fn appends_below_a_part_send_nothing() {
    let (dir, _memory, blobs) = fresh();
    let before = blobs.requests();
    blobs.create_upload("s1").unwrap();
    assert!(blobs.upload_exists("s1").unwrap());
    assert_eq!(
        blobs.append_upload("s1", 0, b"0123456789", None).unwrap(),
        None
    );
    assert_eq!(blobs.append_upload("s1", 10, b"abcde", None).unwrap(), None);
    assert_eq!(blobs.requests(), before);
    assert_eq!(tails(dir.path(), "s1"), [(0, 15)]);
    // A torn append is cut back to the acknowledged offset.
    assert_eq!(blobs.append_upload("s1", 12, b"X", None).unwrap(), None);
    assert_eq!(all(blobs.read_upload("s1", 0).unwrap()), b"0123456789abX");
    assert_eq!(all(blobs.read_upload("s1", 11).unwrap()), b"bX");
    assert!(matches!(
        blobs.upload_checkpoint("s1", 13, None).unwrap(),
        UploadCheckpoint { offset: 0, .. }
    ));
    // An offset past the bytes held is a failure naming the tail.
    let Err(Error::Io { path, .. }) = blobs.append_upload("s1", 20, b"Y", None) else {
        panic!("an append past the tail succeeded")
    };
    assert!(path.ends_with("tail.0"));
}

#[test]
fn appends_crossing_parts_send_them_and_keep_less_than_a_part() {
    let (dir, memory, blobs) = fresh();
    let data = bytes(43, 3);
    blobs.create_upload("s1").unwrap();
    let before = blobs.requests();
    assert_eq!(
        blobs.append_upload("s1", 0, &data[..10], None).unwrap(),
        None
    );
    let mark = blobs
        .append_upload("s1", 10, &data[10..40], None)
        .unwrap()
        .unwrap();
    assert_eq!(
        blobs.requests(),
        RequestCounts {
            multipart_create: before.multipart_create + 1,
            multipart_part: before.multipart_part + 2,
            ..before
        }
    );
    let parsed: serde_json::Value = serde_json::from_slice(mark.as_bytes()).unwrap();
    assert_eq!(parsed["parts"].as_array().unwrap().len(), 2);
    assert_eq!(parsed["parts"][1][0], 32);
    // The old tail stays until a call sees the mark committed.
    assert_eq!(tails(dir.path(), "s1"), [(0, 10), (32, 8)]);
    assert!(session_dir(dir.path(), "s1").join("multipart").exists());
    let before = blobs.requests();
    assert_eq!(
        blobs
            .append_upload("s1", 40, &data[40..], Some(&mark))
            .unwrap(),
        None
    );
    assert_eq!(blobs.requests(), before);
    assert_eq!(tails(dir.path(), "s1"), [(32, 11)]);
    let checkpoint = blobs.upload_checkpoint("s1", 43, Some(&mark)).unwrap();
    assert_eq!(checkpoint.offset, 32);
    assert_eq!(
        checkpoint.hasher(Algorithm::Sha256).unwrap().finish(),
        Algorithm::Sha256.digest(&data[..32])
    );
    assert_eq!(all(blobs.read_upload("s1", 32).unwrap()), data[32..]);
    assert_eq!(all(blobs.read_upload("s1", 35).unwrap()), data[35..]);
    assert!(blobs.read_upload("s1", 31).is_err());
    // Nothing is a whole object before the finish.
    assert_eq!(keys(&memory), [MARKER]);

    let digest = Algorithm::Sha256.digest(&data);
    let before = blobs.requests();
    blobs
        .finish_upload("s1", &digest, 43, Some(&mark), true)
        .unwrap();
    assert_eq!(
        blobs.requests(),
        RequestCounts {
            multipart_part: before.multipart_part + 1,
            multipart_complete: before.multipart_complete + 1,
            copy: before.copy + 1,
            head: before.head + 1,
            delete: before.delete + 1,
            ..before
        }
    );
    assert_eq!(all(blobs.read(&digest, 0, 43).unwrap()), data);
    assert!(!session_dir(dir.path(), "s1").exists());
    assert!(!blobs.upload_exists("s1").unwrap());
    assert_eq!(
        keys(&memory),
        [format!("blobs/sha256/{}", digest.hex()).as_str(), MARKER]
    );
}

#[test]
fn a_chunk_of_exactly_a_part_leaves_an_empty_tail() {
    let (dir, _memory, blobs) = fresh();
    let data = bytes(32, 5);
    blobs.create_upload("s").unwrap();
    let mark = blobs.append_upload("s", 0, &data, None).unwrap().unwrap();
    assert_eq!(tails(dir.path(), "s"), [(0, 0), (32, 0)]);
    let digest = Algorithm::Sha256.digest(&data);
    let before = blobs.requests();
    blobs
        .finish_upload("s", &digest, 32, Some(&mark), true)
        .unwrap();
    // No empty last part.
    assert_eq!(blobs.requests().multipart_part, before.multipart_part);
    assert_eq!(all(blobs.read(&digest, 0, u64::MAX).unwrap()), data);
}

#[test]
fn a_tail_longer_than_a_smaller_part_size_is_sent_a_part_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let memory = Arc::new(InMemory::new());
    let data = bytes(45, 8);
    let wide = ObjectStoreBlobs::over_memory("test", memory.clone())
        .with_part_size(40)
        .unwrap();
    wide.open(dir.path(), true).unwrap();
    wide.create_upload("s").unwrap();
    assert_eq!(wide.append_upload("s", 0, &data[..35], None).unwrap(), None);
    drop(wide);
    // Reopened with parts of 16: the 35 bytes held and 10 more make two parts and 13 left.
    let narrow = store(&memory, dir.path());
    let mark = narrow
        .append_upload("s", 35, &data[35..], None)
        .unwrap()
        .unwrap();
    assert_eq!(tails(dir.path(), "s"), [(0, 35), (32, 13)]);
    assert_eq!(narrow.requests().multipart_part, 2);
    let digest = Algorithm::Sha256.digest(&data);
    narrow
        .finish_upload("s", &digest, 45, Some(&mark), true)
        .unwrap();
    assert_eq!(all(narrow.read(&digest, 0, u64::MAX).unwrap()), data);
}

#[test]
fn a_reader_outlives_its_store() {
    let (_dir, _memory, blobs) = fresh();
    let big = bytes(1 << 20, 2);
    let digest = Algorithm::Sha256.digest(&big);
    blobs.put(&digest, &big).unwrap();
    let reader = blobs.read(&digest, 0, u64::MAX).unwrap();
    drop(blobs);
    assert_eq!(all(reader), big);
}

#[test]
fn a_session_resumes_after_a_restart_from_its_mark_and_local_tail() {
    let dir = tempfile::tempdir().unwrap();
    let memory = Arc::new(InMemory::new());
    let data = bytes(50, 9);
    let first = store(&memory, dir.path());
    first.create_upload("s").unwrap();
    let mark = first
        .append_upload("s", 0, &data[..20], None)
        .unwrap()
        .unwrap();
    drop(first);

    let second = store(&memory, dir.path());
    assert!(second.upload_exists("s").unwrap());
    assert_eq!(second.uploads().unwrap(), ["s"]);
    let checkpoint = second.upload_checkpoint("s", 20, Some(&mark)).unwrap();
    assert_eq!(checkpoint.offset, 16);
    let mut hasher = checkpoint.hasher(Algorithm::Sha256).unwrap();
    hasher.update(&all(second.read_upload("s", 16).unwrap()));
    hasher.update(&data[20..]);
    let digest = hasher.finish();
    assert_eq!(digest, Algorithm::Sha256.digest(&data));
    let mark = second
        .append_upload("s", 20, &data[20..], Some(&mark))
        .unwrap()
        .unwrap();
    assert_eq!(tails(dir.path(), "s"), [(16, 4), (48, 2)]);
    second
        .finish_upload("s", &digest, 50, Some(&mark), true)
        .unwrap();
    assert_eq!(all(second.read(&digest, 0, 50).unwrap()), data);
}

#[test]
fn an_append_whose_commit_failed_is_rolled_back_by_the_next() {
    let (dir, _memory, blobs) = fresh();
    let (a, b) = (bytes(20, 1), bytes(20, 2));
    blobs.create_upload("s").unwrap();
    // Sent, never committed: the core calls again with the same offset and mark.
    let lost = blobs.append_upload("s", 0, &a, None).unwrap().unwrap();
    assert_eq!(tails(dir.path(), "s"), [(0, 0), (16, 4)]);
    let mark = blobs.append_upload("s", 0, &b, None).unwrap().unwrap();
    assert_ne!(lost, mark);
    assert_eq!(tails(dir.path(), "s"), [(0, 0), (16, 4)]);
    // The multipart upload the lost append created is used again.
    assert_eq!(blobs.requests().multipart_create, 1);

    // Again with a mark: a part sent, never committed, then a smaller append instead.
    let lost = blobs
        .append_upload("s", 20, &a, Some(&mark))
        .unwrap()
        .unwrap();
    assert_ne!(lost, mark);
    assert_eq!(tails(dir.path(), "s"), [(16, 4), (32, 8)]);
    assert_eq!(
        blobs.append_upload("s", 20, &b[..5], Some(&mark)).unwrap(),
        None,
        "4 + 5 bytes stay under a part"
    );
    assert_eq!(tails(dir.path(), "s"), [(16, 9)]);
    // An offset before the parts sent is refused, and changes nothing.
    assert!(blobs.append_upload("s", 3, b"x", Some(&mark)).is_err());
    assert_eq!(tails(dir.path(), "s"), [(16, 9)]);

    let mut whole = b.clone();
    whole.extend_from_slice(&b[..5]);
    let digest = Algorithm::Sha256.digest(&whole);
    blobs
        .finish_upload("s", &digest, 25, Some(&mark), true)
        .unwrap();
    assert_eq!(all(blobs.read(&digest, 0, u64::MAX).unwrap()), whole);
}

#[test]
fn a_finish_without_parts_is_one_put() {
    let (dir, memory, blobs) = fresh();
    blobs.create_upload("s").unwrap();
    blobs.append_upload("s", 0, b"hello", None).unwrap();
    // A torn end past the length is dropped.
    blobs.append_upload("s", 5, b" world!", None).unwrap();
    let digest = Algorithm::Sha256.digest(b"hello world");
    let before = blobs.requests();
    blobs.finish_upload("s", &digest, 11, None, true).unwrap();
    assert_eq!(
        blobs.requests(),
        RequestCounts {
            put: before.put + 1,
            ..before
        }
    );
    assert_eq!(all(blobs.read(&digest, 0, 11).unwrap()), b"hello world");
    assert!(!session_dir(dir.path(), "s").exists());
    assert_eq!(keys(&memory).len(), 2);
}

#[test]
fn an_unverified_finish_with_the_wrong_digest_stores_nothing() {
    let (dir, memory, blobs) = fresh();
    let data = bytes(40, 4);
    blobs.create_upload("s").unwrap();
    let mark = blobs.append_upload("s", 0, &data, None).unwrap().unwrap();
    let wrong = Algorithm::Sha512.digest(b"something else");
    assert!(matches!(
        blobs.finish_upload("s", &wrong, 40, Some(&mark), false),
        Err(Error::DigestMismatch { .. })
    ));
    assert!(!blobs.contains(&wrong).unwrap());
    assert!(!session_dir(dir.path(), "s").exists());
    assert_eq!(keys(&memory), [MARKER]);

    // Without parts too.
    blobs.create_upload("t").unwrap();
    blobs.append_upload("t", 0, b"short", None).unwrap();
    assert!(matches!(
        blobs.finish_upload("t", &wrong, 5, None, false),
        Err(Error::DigestMismatch { .. })
    ));
    assert!(!session_dir(dir.path(), "t").exists());
    assert_eq!(keys(&memory), [MARKER]);

    // The right digest, under an algorithm whose state is not kept: hashed by a GET.
    blobs.create_upload("u").unwrap();
    let mark = blobs.append_upload("u", 0, &data, None).unwrap().unwrap();
    let right = Algorithm::Sha512.digest(&data);
    let before = blobs.requests();
    blobs
        .finish_upload("u", &right, 40, Some(&mark), false)
        .unwrap();
    assert_eq!(blobs.requests().get, before.get + 1);
    assert_eq!(all(blobs.read(&right, 0, u64::MAX).unwrap()), data);
}

#[test]
fn a_finish_retried_after_completion_goes_to_the_copy() {
    let (dir, memory, blobs) = fresh();
    let data = bytes(40, 6);
    blobs.create_upload("s").unwrap();
    let mark = blobs.append_upload("s", 0, &data, None).unwrap().unwrap();
    // A finish that completed the upload, then failed: as it leaves things.
    let inner = &blobs.inner;
    let parsed = Mark::parse(Some(&mark), dir.path()).unwrap();
    let key = inner.data_key("s");
    let mut ids: Vec<String> = parsed.parts.iter().map(|p| p.1.clone()).collect();
    ids.push(
        inner
            .put_part(
                &key,
                &parsed.multipart,
                2,
                Bytes::copy_from_slice(&data[32..]),
            )
            .unwrap(),
    );
    inner
        .complete_multipart(&key, &parsed.multipart, ids)
        .unwrap();
    let session = Session::existing(dir.path(), "s").unwrap();
    session.write_file("completed", b"").unwrap();
    assert_eq!(blobs.uploads().unwrap(), ["s"]);

    // No more appends to a completed upload.
    assert!(blobs.append_upload("s", 40, b"x", Some(&mark)).is_err());
    let digest = Algorithm::Sha256.digest(&data);
    let before = blobs.requests();
    blobs
        .finish_upload("s", &digest, 40, Some(&mark), true)
        .unwrap();
    let after = blobs.requests();
    assert_eq!(after.multipart_part, before.multipart_part);
    assert_eq!(after.multipart_complete, before.multipart_complete);
    assert_eq!(after.copy, before.copy + 1);
    assert_eq!(all(blobs.read(&digest, 0, u64::MAX).unwrap()), data);
    assert_eq!(
        keys(&memory),
        [format!("blobs/sha256/{}", digest.hex()).as_str(), MARKER]
    );
}

/// Session `s` of 40 bytes (two parts sent) whose finish under `digest` completed the upload
/// and then failed, as one killed (or whose answer was lost) before it noted so: `completed`
/// could not be written. Gives the session's mark.
fn completed_unnoted(
    dir: &Path,
    blobs: &ObjectStoreBlobs,
    data: &[u8],
    digest: &Digest,
) -> UploadMark {
    blobs.create_upload("s").unwrap();
    let mark = blobs.append_upload("s", 0, data, None).unwrap().unwrap();
    let blocked = session_dir(dir, "s").join("completed.tmp");
    std::fs::create_dir(&blocked).unwrap();
    let verified = digest.algorithm() == Algorithm::Sha256;
    let finished = blobs.finish_upload("s", digest, 40, Some(&mark), verified);
    assert!(finished.is_err());
    std::fs::remove_dir(&blocked).unwrap();
    mark
}

#[test]
fn o3_a_finish_killed_after_completing_but_before_noting_it_finishes_when_retried() {
    let (dir, memory, blobs) = fresh();
    let data = bytes(40, 7);
    let digest = Algorithm::Sha256.digest(&data);
    let mark = completed_unnoted(dir.path(), &blobs, &data, &digest);
    blobs
        .finish_upload("s", &digest, 40, Some(&mark), true)
        .unwrap();
    assert_eq!(all(blobs.read(&digest, 0, u64::MAX).unwrap()), data);
    assert_eq!(
        keys(&memory),
        [format!("blobs/sha256/{}", digest.hex()).as_str(), MARKER]
    );
}

#[test]
fn o3_an_unchecked_finish_whose_joined_upload_is_gone_stores_nothing() {
    let (dir, memory, blobs) = fresh();
    let data = bytes(40, 8);
    let mark = completed_unnoted(dir.path(), &blobs, &data, &Algorithm::Blake3.digest(&data));
    // Completed, and the joined object gone, as a finish that died after its copy leaves it:
    // what it held can no longer be checked against this digest.
    Session::existing(dir.path(), "s")
        .unwrap()
        .write_file("completed", b"")
        .unwrap();
    block_on(memory.delete(&blobs.inner.data_key("s"))).unwrap();
    let other = Algorithm::Blake3.digest(b"another blob of the same length, 40 bytes");
    assert!(
        blobs
            .finish_upload("s", &other, 40, Some(&mark), false)
            .is_err()
    );
    assert!(!blobs.contains(&other).unwrap());
    assert!(!blobs.upload_exists("s").unwrap(), "the session ended");
}

#[test]
fn a_cancel_aborts_the_multipart_upload() {
    let (dir, memory, blobs) = fresh();
    blobs.create_upload("s").unwrap();
    let mark = blobs
        .append_upload("s", 0, &bytes(20, 1), None)
        .unwrap()
        .unwrap();
    let upload = Mark::parse(Some(&mark), dir.path()).unwrap().multipart;
    let before = blobs.requests();
    assert!(blobs.delete_upload("s").unwrap());
    let after = blobs.requests();
    assert_eq!(after.multipart_abort, before.multipart_abort + 1);
    assert!(!session_dir(dir.path(), "s").exists());
    assert!(blobs.lock_upload("s").unwrap().is_none());
    // The upload is gone from the store.
    let key = blobs.inner.data_key("s");
    assert!(block_on(memory.put_part(&key, &upload, 1, PutPayload::from_static(b"x"))).is_err());
    assert!(!blobs.delete_upload("s").unwrap());

    // A session that never sent a part costs no request to cancel.
    blobs.create_upload("t").unwrap();
    let before = blobs.requests();
    assert!(blobs.delete_upload("t").unwrap());
    assert_eq!(blobs.requests(), before);

    // A completed upload's object left without local state is removed.
    put_object(&memory, "uploads/u/data", b"orphan");
    assert_eq!(blobs.uploads().unwrap(), ["u"]);
    assert!(blobs.delete_upload("u").unwrap());
    assert_eq!(keys(&memory), [MARKER]);
}

#[test]
fn locks_exist_only_with_the_session() {
    let (_dir, _memory, blobs) = fresh();
    assert!(blobs.lock_upload("s").unwrap().is_none());
    assert!(blobs.lock_upload("../x").unwrap().is_none());
    assert!(blobs.create_upload("../x").is_err());
    blobs.create_upload("s").unwrap();
    let held = blobs.lock_upload("s").unwrap().unwrap();
    let other = blobs.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let lock = other.lock_upload("s").unwrap();
        tx.send(()).unwrap();
        drop(lock);
    });
    assert!(
        rx.recv_timeout(std::time::Duration::from_millis(100))
            .is_err()
    );
    drop(held);
    rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
    waiter.join().unwrap();
}

#[test]
fn entries_uploads_and_removals() {
    let (dir, memory, blobs) = fresh();
    let digest = Algorithm::Sha256.digest(b"blob");
    blobs.put(&digest, b"blob").unwrap();
    put_object(&memory, "blobs/sha256/nothex", b"x");
    put_object(&memory, "blobs/elsewhere", b"x");
    put_object(&memory, "uploads/r/data", b"x");
    put_object(&memory, "uploads/r/other", b"x");
    blobs.create_upload("l").unwrap();
    for i in 0..1005 {
        block_on(memory.put(
            &Key::from(format!("blobs/sha512/stray{i}")),
            PutPayload::from_static(b"x"),
        ))
        .unwrap();
    }
    let before = blobs.requests();
    let mut found = Vec::new();
    let mut pages = 0;
    blobs
        .entries(&mut |page| {
            assert!(page.len() <= PAGE);
            pages += 1;
            found.extend(page);
            Ok(())
        })
        .unwrap();
    assert_eq!(blobs.requests().list, before.list + 2);
    assert!(pages >= 3);
    let kind = |location: &str| {
        found
            .iter()
            .find(|e| e.location == Path::new(location))
            .map(|e| e.kind.clone())
    };
    assert_eq!(
        kind(&format!("blobs/sha256/{}", digest.hex())),
        Some(EntryKind::Blob(digest.clone()))
    );
    assert_eq!(kind("blobs/sha256/nothex"), Some(EntryKind::Unknown));
    assert_eq!(kind("blobs/elsewhere"), Some(EntryKind::Unknown));
    assert_eq!(kind("uploads/r/data"), Some(EntryKind::Upload("r".into())));
    assert_eq!(kind("uploads/r/other"), Some(EntryKind::UnknownUpload));
    assert_eq!(kind(MARKER), None);
    let local = found
        .iter()
        .find(|e| e.location == session_dir(dir.path(), "l"))
        .unwrap();
    assert_eq!(local.kind, EntryKind::Upload("l".into()));
    assert_eq!(found.len(), 1 + 2 + 2 + 1 + 1005);

    assert_eq!(blobs.uploads().unwrap(), ["l", "r"]);
    assert!(
        blobs
            .remove_entry(Path::new("blobs/sha256/nothex"))
            .unwrap()
    );
    assert!(
        !blobs
            .remove_entry(Path::new("blobs/sha256/nothex"))
            .unwrap()
    );
    assert!(blobs.remove_entry(Path::new("uploads/r/other")).unwrap());
    assert!(!blobs.remove_entry(Path::new(MARKER)).unwrap());
    assert!(
        !blobs
            .remove_entry(Path::new("blobs/../ocistore-store.json"))
            .unwrap()
    );
    assert!(!blobs.remove_entry(&session_dir(dir.path(), "l")).unwrap());
    assert!(keys(&memory).contains(&MARKER.to_owned()));
}

#[test]
fn delete_and_delete_many() {
    let (_dir, _memory, blobs) = fresh();
    let digests: Vec<Digest> = (0..3u8)
        .map(|i| {
            let d = Algorithm::Sha256.digest(&[i]);
            blobs.put(&d, &[i]).unwrap();
            d
        })
        .collect();
    assert!(blobs.delete(&digests[0]).unwrap());
    assert!(!blobs.delete(&digests[0]).unwrap());
    let before = blobs.requests();
    blobs.delete_many(&digests).unwrap();
    assert_eq!(
        blobs.requests(),
        RequestCounts {
            bulk_delete: before.bulk_delete + 1,
            ..before
        }
    );
    assert!(digests.iter().all(|d| !blobs.contains(d).unwrap()));
    blobs.delete_many(&[]).unwrap();
}

#[test]
fn a_second_store_on_the_same_prefix_is_refused() {
    let memory = Arc::new(InMemory::new());
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = ObjectStoreBlobs::over_memory("m", memory.clone());
    first.open(one.path(), true).unwrap();
    assert_eq!(
        first.requests(),
        RequestCounts {
            get: 1,
            put: 1,
            ..RequestCounts::default()
        }
    );
    // Reopened in its own directory: one GET.
    let again = ObjectStoreBlobs::over_memory("m", memory.clone());
    again.open(one.path(), false).unwrap();
    assert_eq!(
        again.requests(),
        RequestCounts {
            get: 1,
            ..RequestCounts::default()
        }
    );
    let second = ObjectStoreBlobs::over_memory("m", memory.clone());
    assert!(matches!(
        second.open(two.path(), true),
        Err(Error::BlobLocationTaken { location }) if location == "memory://m"
    ));
    // A marker that is not ours, whatever it holds.
    let other = Arc::new(InMemory::new());
    put_object(&other, MARKER, b"not json");
    let third = ObjectStoreBlobs::over_memory("o", other);
    assert!(matches!(
        third.open(one.path(), true),
        Err(Error::BlobLocationTaken { .. })
    ));
}

#[test]
fn calls_work_inside_a_tokio_runtime_and_a_drop_there_does_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    block_on(async move {
        let blobs = ObjectStoreBlobs::in_memory("rt")
            .with_part_size(PART)
            .unwrap();
        blobs.open(&path, true).unwrap();
        let digest = Algorithm::Sha256.digest(b"inside");
        blobs.put(&digest, b"inside").unwrap();
        assert_eq!(all(blobs.read(&digest, 0, 6).unwrap()), b"inside");
        blobs.create_upload("s").unwrap();
        let mark = blobs.append_upload("s", 0, &[7; 20], None).unwrap();
        blobs
            .finish_upload(
                "s",
                &Algorithm::Sha256.digest(&[7; 20]),
                20,
                mark.as_ref(),
                true,
            )
            .unwrap();
        drop(blobs);
    });
    // And on a multi-thread runtime, dropped inside a task.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let blobs = ObjectStoreBlobs::in_memory("rt2");
    runtime
        .block_on(runtime.spawn(async move {
            assert!(!blobs.contains(&Algorithm::Sha256.digest(b"x")).unwrap());
            drop(blobs);
        }))
        .unwrap();
}

#[test]
fn urls_and_options() {
    let azure = |url: &str| {
        ObjectStoreBlobs::from_url_with(url, [("use_emulator", "true")]).map(|b| b.location())
    };
    assert_eq!(azure("az://c/p/q").unwrap(), "az://c/p/q");
    assert_eq!(azure("azure://c/p/").unwrap(), "az://c/p");
    assert_eq!(azure("az://c").unwrap(), "az://c");
    for bad in [
        "http://c/p",
        "az:/c",
        "az:///p",
        "c/p",
        "az://c@account.dfs.core.windows.net/p",
        "s3://key:secret@bucket/p",
    ] {
        assert!(
            matches!(azure(bad), Err(Error::InvalidBlobLocation { .. })),
            "{bad}"
        );
    }
    assert!(matches!(
        ObjectStoreBlobs::from_url_with("az://c/p", [("use_emulator", "true"), ("nonsense", "1")]),
        Err(Error::InvalidBlobLocation { .. })
    ));
    let s3 = ObjectStoreBlobs::from_url_with(
        "s3://bucket/prefix",
        [
            ("region", "us-east-1"),
            ("access_key_id", "k"),
            ("secret_access_key", "s"),
        ],
    )
    .unwrap();
    assert_eq!(s3.location(), "s3://bucket/prefix");
    assert!(matches!(
        s3.clone().with_part_size(PART),
        Err(Error::InvalidBlobLocation { .. })
    ));
    assert!(s3.with_part_size(5 << 20).is_ok());
    assert!(matches!(
        ObjectStoreBlobs::in_memory("x").with_part_size(0),
        Err(Error::InvalidBlobLocation { .. })
    ));
}

/// The trait's calls one by one against Azurite (`.ci/object-servers start`), parts of 64
/// bytes.
#[test]
fn o1_o3_every_call_works_on_azurite() {
    let azurite = ocistore_testkit::servers::azurite();
    remote_smoke(
        &ocistore_testkit::servers::azurite_url(&azurite.unique_prefix(), PART),
        PART,
    );
}

/// The same against moto's S3, parts of 5 MiB, the least S3 takes.
#[test]
fn o1_o3_every_call_works_on_s3() {
    let s3 = ocistore_testkit::servers::s3();
    remote_smoke(
        &ocistore_testkit::servers::s3_url(&s3.unique_prefix(), 5 << 20),
        5 << 20,
    );
}

fn remote_smoke(url: &str, part: usize) {
    let connect = || ObjectStoreBlobs::from_url(url).unwrap();
    let (dir, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let blobs = connect();
    blobs.open(dir.path(), true).unwrap();
    assert_eq!(blobs.part_size(), part);
    assert_eq!(Some(blobs.location().as_str()), url.split('?').next());
    assert!(matches!(
        connect().open(other.path(), true),
        Err(Error::BlobLocationTaken { .. })
    ));

    let digest = Algorithm::Sha256.digest(b"hello world");
    let before = blobs.requests();
    blobs.put(&digest, b"hello world").unwrap();
    blobs.put(&digest, b"hello world").unwrap();
    assert_eq!(blobs.requests().put, before.put + 2);
    assert_eq!(blobs.size(&digest).unwrap(), Some(11));
    assert_eq!(all(blobs.read(&digest, 6, 11).unwrap()), b"world");
    assert_eq!(
        all(blobs.read(&digest, 0, u64::MAX).unwrap()),
        b"hello world"
    );
    assert!(
        blobs
            .read(&Algorithm::Sha256.digest(b"no"), 0, 2)
            .unwrap()
            .is_none()
    );

    // A session across a restart, finished verified.
    let (n, first) = (part * 6 + part / 4, part * 2 + part / 2);
    let data = bytes(n, 11);
    blobs.create_upload("s").unwrap();
    let mark = blobs
        .append_upload("s", 0, &data[..first], None)
        .unwrap()
        .unwrap();
    drop(blobs);
    let blobs = connect();
    blobs.open(dir.path(), false).unwrap();
    let mark = blobs
        .append_upload("s", first as u64, &data[first..], Some(&mark))
        .unwrap()
        .unwrap();
    let whole = Algorithm::Sha256.digest(&data);
    let before = blobs.requests();
    blobs
        .finish_upload("s", &whole, n as u64, Some(&mark), true)
        .unwrap();
    let after = blobs.requests();
    assert_eq!(all(blobs.read(&whole, 0, u64::MAX).unwrap()), data);
    assert_eq!(after.copy, before.copy + 1);

    // Unverified: right and wrong.
    blobs.create_upload("u").unwrap();
    let mark = blobs.append_upload("u", 0, &data, None).unwrap().unwrap();
    let wrong = Algorithm::Sha512.digest(b"x");
    assert!(matches!(
        blobs.finish_upload("u", &wrong, n as u64, Some(&mark), false),
        Err(Error::DigestMismatch { .. })
    ));
    blobs.create_upload("v").unwrap();
    let mark = blobs.append_upload("v", 0, &data, None).unwrap().unwrap();
    let right = Algorithm::Sha512.digest(&data);
    blobs
        .finish_upload("v", &right, n as u64, Some(&mark), false)
        .unwrap();
    assert_eq!(blobs.size(&right).unwrap(), Some(n as u64));

    // A cancel after parts.
    blobs.create_upload("c").unwrap();
    blobs.append_upload("c", 0, &data, None).unwrap().unwrap();
    assert!(blobs.delete_upload("c").unwrap());

    let mut found = Vec::new();
    blobs
        .entries(&mut |page| {
            found.extend(page);
            Ok(())
        })
        .unwrap();
    let blobs_found = found
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::Blob(_)))
        .count();
    assert_eq!(blobs_found, 3, "{found:?}");
    assert_eq!(blobs.uploads().unwrap(), Vec::<String>::new());
    blobs
        .delete_many(&[digest.clone(), whole, Algorithm::Sha256.digest(b"absent")])
        .unwrap();
    assert!(!blobs.contains(&digest).unwrap());
    assert!(
        blobs
            .remove_entry(Path::new(&format!("blobs/sha512/{}", right.hex())))
            .unwrap()
    );
    // Shown with --nocapture: what the smoke run cost.
    #[allow(clippy::print_stderr)]
    {
        eprintln!("{:?}", blobs.requests());
    }
}

#[test]
fn o4_a_prefix_inside_another_stores_blobs_or_uploads_is_refused() {
    for url in ["s3://b/p/blobs", "az://c/uploads/x", "gs://b/blobs"] {
        assert!(
            matches!(
                ObjectStoreBlobs::from_url(url),
                Err(Error::InvalidBlobLocation { .. })
            ),
            "{url}"
        );
    }
}
