//! One upload session used by several handles of a shared store (SPEC M3): two `Shared`
//! handles in this process hold separate file and database locks, so they behave as two
//! processes would; one test continues a session in a real child process.

mod common;

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::{START, child_test};
use ocistore::{
    Algorithm, BlobStore, CollectOptions, Digest, Error, FsckOptions, ManualClock,
    ObjectStoreBlobs, OpenMode, Registry, Upload,
};
use ocistore_testkit::servers;

/// Set to a store directory: `m3_child_upload_worker` continues a session there.
const CHILD_DIR: &str = "OCISTORE_TEST_UPLOAD_CHILD_DIR";
/// The session the child continues.
const CHILD_SESSION: &str = "OCISTORE_TEST_UPLOAD_CHILD_SESSION";
/// Set to a store directory: `m4_child_upload_appender` appends to a session there until
/// it is killed.
const APPENDER_DIR: &str = "OCISTORE_TEST_UPLOAD_APPENDER_DIR";
/// Set to an object store's location and part size (`az://… 1048576`): the child's blobs
/// live there, as the parent's do.
const CHILD_BLOBS: &str = "OCISTORE_TEST_UPLOAD_CHILD_BLOBS";
/// The size of the appender's chunks: large, so that a kill often lands inside an append.
const APPENDER_CHUNK: usize = 1 << 20;

fn sha256(bytes: &[u8]) -> Digest {
    Algorithm::Sha256.digest(bytes)
}

fn shared(dir: &Path, clock: &ManualClock, upload_timeout: Duration) -> Registry {
    Registry::builder()
        .mode(OpenMode::Shared)
        .clock(clock.clone())
        .upload_timeout(upload_timeout)
        .cache_size(16 << 20)
        .open(dir)
        .expect("a shared open")
}

const DAY: Duration = Duration::from_secs(24 * 3600);

/// Two shared handles, A and B, on one store and one clock.
struct Pair {
    dir: tempfile::TempDir,
    a: Registry,
    b: Registry,
}

impl Pair {
    fn new() -> Pair {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(START);
        let a = shared(dir.path(), &clock, DAY);
        let b = shared(dir.path(), &clock, DAY);
        Pair { dir, a, b }
    }

    /// A session started in A, and the same session resumed in B.
    fn session(&self) -> (Upload, Upload) {
        let started = self.a.repository("app").unwrap().start_upload().unwrap();
        let resumed = self
            .b
            .repository("app")
            .unwrap()
            .resume_upload(started.id())
            .unwrap();
        (started, resumed)
    }
}

fn assert_unknown(result: Result<impl std::fmt::Debug, Error>, id: &str) {
    match result {
        Err(Error::UploadUnknown { id: got }) => assert_eq!(got, id),
        other => panic!("expected UploadUnknown for {id}, got {other:?}"),
    }
}

fn assert_clean(registry: &Registry) {
    let report = registry.fsck(&FsckOptions::default()).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn m3_a_session_started_in_one_process_is_finished_in_another() {
    let pair = Pair::new();
    let (in_a, in_b) = pair.session();
    let mut all = Vec::new();
    for i in 0..6u8 {
        let chunk = vec![i; 1000 + usize::from(i)];
        all.extend_from_slice(&chunk);
        let (appender, other) = if i % 2 == 0 {
            (&in_b, &in_a)
        } else {
            (&in_a, &in_b)
        };
        // Each append lands at the session's end, whoever appended last.
        assert_eq!(appender.append(&chunk).unwrap(), all.len() as u64);
        assert!(other.offset() < all.len() as u64);
    }
    let digest = sha256(&all);
    in_b.finish(&digest).unwrap();
    assert_eq!(
        pair.a.repository("app").unwrap().blob(&digest).unwrap(),
        all
    );
    assert_eq!(
        pair.b.repository("app").unwrap().blob(&digest).unwrap(),
        all
    );
    assert_unknown(in_a.append(b"late"), in_a.id());
    assert_clean(&pair.a);
}

#[test]
fn m3_a_session_continued_elsewhere_is_checked_in_full_under_any_algorithm() {
    let pair = Pair::new();
    let (in_a, in_b) = pair.session();
    in_a.append(b"from a, ").unwrap();
    // A resume in B reads the offset the store holds.
    let again = pair
        .b
        .repository("app")
        .unwrap()
        .resume_upload(in_a.id())
        .unwrap();
    assert_eq!(again.offset(), 8);
    in_b.append_at(8, b"from b").unwrap();
    // A's running hash stops at its own chunk: not what the session holds.
    assert!(matches!(
        in_a.finish(&sha256(b"from a, ")),
        Err(Error::DigestMismatch { .. })
    ));
    assert!(matches!(
        in_a.append_at(8, b"!"),
        Err(Error::UploadOffsetMismatch { actual: 14, .. })
    ));
    let digest = Algorithm::Sha512.digest(b"from a, from b");
    in_a.finish(&digest).unwrap();
    assert_eq!(
        pair.b.repository("app").unwrap().blob(&digest).unwrap(),
        &b"from a, from b"[..]
    );
    assert_clean(&pair.b);
}

#[test]
fn m3_a_session_finished_in_one_process_takes_no_more_bytes_in_another() {
    let pair = Pair::new();
    let (in_a, in_b) = pair.session();
    in_b.append(b"layer ").unwrap();
    in_a.append(b"bytes").unwrap();
    let digest = sha256(b"layer bytes");
    in_a.finish(&digest).unwrap();
    assert_unknown(in_b.append(b"more"), in_b.id());
    assert_unknown(in_b.append_at(11, b"more"), in_b.id());
    assert_unknown(in_b.finish(&digest), in_b.id());
    assert_unknown(in_b.cancel(), in_b.id());
    let repo = pair.b.repository("app").unwrap();
    assert_unknown(repo.resume_upload(in_b.id()), in_b.id());
    assert_eq!(repo.blob(&digest).unwrap(), &b"layer bytes"[..]);
    assert_clean(&pair.b);
}

#[test]
fn m3_a_session_cancelled_in_one_process_is_unknown_in_another() {
    let pair = Pair::new();
    let (in_a, in_b) = pair.session();
    in_a.append(b"abandoned").unwrap();
    in_b.cancel().unwrap();
    assert_unknown(in_a.append(b"more"), in_a.id());
    assert_unknown(in_a.finish(&sha256(b"abandoned")), in_a.id());
    assert_unknown(in_a.cancel(), in_a.id());
    let repo = pair.a.repository("app").unwrap();
    assert_unknown(repo.resume_upload(in_a.id()), in_a.id());
    assert_clean(&pair.a);
}

#[test]
fn m3_a_session_swept_in_one_process_is_unknown_in_another() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let a = shared(dir.path(), &clock, DAY);
    // B would still accept the session: only the store's row tells it the session is gone.
    let b = shared(dir.path(), &clock, 2 * DAY);
    let upload = b.repository("app").unwrap().start_upload().unwrap();
    upload.append(b"slow client").unwrap();
    clock.advance(DAY + Duration::from_secs(1));
    let report = a.collect(&CollectOptions::default()).unwrap();
    assert_eq!(report.uploads_removed, 1);
    assert_unknown(upload.append(b"more"), upload.id());
    assert_unknown(upload.finish(&sha256(b"slow client")), upload.id());
    assert_clean(&b);
}

#[test]
fn m3_a_torn_tail_past_the_stored_offset_is_never_part_of_the_blob() {
    let pair = Pair::new();
    let (in_a, in_b) = pair.session();
    in_a.append(b"acknowledged").unwrap();
    // What an append that failed part way, in either process, leaves behind.
    let file = pair.dir.path().join("uploads").join(in_a.id());
    let mut torn = std::fs::read(&file).unwrap();
    torn.extend_from_slice(b" torn");
    std::fs::write(&file, &torn).unwrap();
    let digest = sha256(b"acknowledged");
    in_b.finish(&digest).unwrap();
    assert_eq!(
        pair.a.repository("app").unwrap().blob(&digest).unwrap(),
        &b"acknowledged"[..]
    );
    assert_clean(&pair.a);
    // A torn tail is dropped by the next append too.
    let (in_a, in_b) = pair.session();
    in_a.append(b"one").unwrap();
    std::fs::write(pair.dir.path().join("uploads").join(in_a.id()), b"one torn").unwrap();
    assert_eq!(in_b.append(b" two").unwrap(), 7);
    in_a.finish(&sha256(b"one two")).unwrap();
}

#[test]
fn m3_racing_appends_and_finishes_never_store_a_blob_that_mismatches_its_digest() {
    let pair = Pair::new();
    let mut finished = Vec::new();
    for round in 0..20u8 {
        let (in_a, in_b) = pair.session();
        let barrier = Arc::new(Barrier::new(2));
        let race = |upload: Upload, who: u8| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                // What this handle appended, as if it were the session's only writer: the
                // digest an in-memory hash would have vouched for.
                let mut own = Vec::new();
                let mut done = None;
                for i in 0..8u8 {
                    let chunk = vec![round ^ who ^ i; 512 + 97 * usize::from(i)];
                    match upload.append(&chunk) {
                        Ok(_) => own.extend_from_slice(&chunk),
                        Err(Error::UploadUnknown { .. }) => break,
                        Err(e) => panic!("append: {e}"),
                    }
                    if i % 3 == who {
                        let digest = sha256(&own);
                        match upload.finish(&digest) {
                            Ok(()) => {
                                done = Some((digest, own.clone()));
                                break;
                            }
                            Err(Error::DigestMismatch { .. } | Error::UploadUnknown { .. }) => {}
                            Err(e) => panic!("finish: {e}"),
                        }
                    }
                }
                done
            })
        };
        let a = race(in_a, 0);
        let b = race(in_b, 1);
        for outcome in [a.join().unwrap(), b.join().unwrap()].into_iter().flatten() {
            finished.push(outcome);
        }
    }
    let repo = pair.a.repository("app").unwrap();
    for (digest, bytes) in &finished {
        assert_eq!(&repo.blob(digest).unwrap(), bytes);
    }
    assert_clean(&pair.a);
    assert_clean(&pair.b);
}

/// In a child: joins the store in `dir` shared and resumes the parent's session.
fn join_session(dir: &std::ffi::OsStr) -> ocistore::Upload {
    let id = std::env::var(CHILD_SESSION).unwrap();
    let mut builder = Registry::builder().mode(OpenMode::Shared);
    if let Ok(spec) = std::env::var(CHILD_BLOBS) {
        let (location, part) = spec.split_once(' ').unwrap();
        builder = builder.blob_store(servers::blobs_at(location, part.parse().unwrap()));
    }
    let registry = builder.open(dir).expect("the child joins the store");
    registry
        .repository("app")
        .unwrap()
        .resume_upload(&id)
        .unwrap()
}

/// Run as a child by `m3_a_child_process_continues_a_session_the_parent_started`: resumes
/// the parent's session, checks its offset and appends to it.
#[test]
fn m3_child_upload_worker() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let upload = join_session(&dir);
    let end = upload.append_at(upload.offset(), b" child").unwrap();
    println!("CHILD {end}");
}

#[test]
fn m3_a_child_process_continues_a_session_the_parent_started() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::builder()
        .mode(OpenMode::Shared)
        .open(dir.path())
        .unwrap();
    let upload = registry.repository("app").unwrap().start_upload().unwrap();
    upload.append(b"parent").unwrap();
    let out = child_test("m3_child_upload_worker")
        .env(CHILD_DIR, dir.path())
        .env(CHILD_SESSION, upload.id())
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let reported = stdout
        .lines()
        .find_map(|l| l.split_once("CHILD ").map(|(_, end)| end));
    assert_eq!(
        reported,
        Some("12"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(upload.append(b" again").unwrap(), 18);
    let digest = sha256(b"parent child again");
    upload.finish(&digest).unwrap();
    assert_eq!(
        registry.repository("app").unwrap().blob(&digest).unwrap(),
        &b"parent child again"[..]
    );
    assert_clean(&registry);
}

/// Run as a child by `m4_a_process_killed_while_appending_leaves_the_session_to_the_others`:
/// appends chunk after chunk (chunk `i` is `APPENDER_CHUNK` bytes of `i`) and prints each new
/// offset, until killed.
#[test]
fn m4_child_upload_appender() {
    let Some(dir) = std::env::var_os(APPENDER_DIR) else {
        return;
    };
    let upload = join_session(&dir);
    for i in 0u8.. {
        let end = upload.append(&vec![i; APPENDER_CHUNK]).unwrap();
        println!("ACK {end}");
    }
}

#[test]
fn m4_a_process_killed_while_appending_leaves_the_session_to_the_others() {
    killed_while_appending(None);
}

/// O3 with a crash: parts of 2 MiB, so a kill lands before, in or after a part's PUT, or
/// between it and the commit of its mark; the parent goes on from what redb holds.
#[test]
fn o3_m4_a_process_killed_while_sending_parts_to_azurite_leaves_the_session_to_the_others() {
    killed_while_appending(Some(servers::azurite_blobs(2 << 20)));
}

/// The same on S3, whose parts are 5 MiB at least.
#[test]
fn o3_m4_a_process_killed_while_sending_parts_to_s3_leaves_the_session_to_the_others() {
    killed_while_appending(Some(servers::s3_blobs(5 << 20)));
}

/// A child appends to the parent's session until it is killed; the parent then finishes the
/// session from the offset the store holds. Blobs in the directory, or in `blobs`.
fn killed_while_appending(blobs: Option<ObjectStoreBlobs>) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    let mut builder = Registry::builder().mode(OpenMode::Shared);
    let mut child = child_test("m4_child_upload_appender");
    if let Some(blobs) = blobs {
        child.env(
            CHILD_BLOBS,
            format!("{} {}", blobs.location(), blobs.part_size()),
        );
        builder = builder.blob_store(blobs);
    }
    let registry = builder.open(dir.path()).unwrap();
    let repo = registry.repository("app").unwrap();
    let upload = repo.start_upload().unwrap();
    let mut child = child
        .env(APPENDER_DIR, dir.path())
        .env(CHILD_SESSION, upload.id())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = 0;
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines {
        if let Some((_, end)) = line.unwrap().split_once("ACK ") {
            acked = end.parse().unwrap();
            if acked >= 12 * APPENDER_CHUNK as u64 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL, perhaps inside an append, holding the session's lock
    child.wait().unwrap();
    // The dead child's lock went with it; its last chunk counts only if its offset committed.
    let end = upload.append(b"tail").unwrap();
    let whole = end - 4;
    assert!(
        whole >= acked && whole.is_multiple_of(APPENDER_CHUNK as u64),
        "{whole} after {acked}"
    );
    let mut bytes = Vec::new();
    for i in 0..whole / APPENDER_CHUNK as u64 {
        bytes.extend(std::iter::repeat_n(
            u8::try_from(i).unwrap(),
            APPENDER_CHUNK,
        ));
    }
    bytes.extend_from_slice(b"tail");
    let digest = sha256(&bytes);
    upload.finish(&digest).unwrap();
    assert_eq!(repo.blob(&digest).unwrap(), bytes);
    assert_clean(&registry);
}
