//! SPEC P1–P8: blob writes and uploads, blob links and mounts, manifest push and pull, tags,
//! listings and referrers.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use common::{
    CONFIG_TYPE, START, Store, fails_writing_nothing, image_body, index_body, push_image, snapshot,
    upload_image,
};
use ocistore::manifest::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use ocistore::{Algorithm, Descriptor, Digest, Error, ManifestQuery, Page, Repository, Timestamp};
use serde_json::{Value, json};

const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn sha256(bytes: impl AsRef<[u8]>) -> Digest {
    Algorithm::Sha256.digest(bytes.as_ref())
}

fn to_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// Puts `bytes` as a blob of `repo`; returns (digest, size) for a descriptor.
fn put(repo: &Repository, bytes: &[u8]) -> (Digest, u64) {
    (repo.put_blob_sha256(bytes).unwrap(), bytes.len() as u64)
}

fn blob_unknown(err: &Error, repo: &str, blob: &Digest) -> bool {
    matches!(err, Error::BlobUnknown { repository, digest } if repository == repo && digest == blob)
}

fn manifest_unknown(err: &Error, repo: &str, reference: &str) -> bool {
    matches!(err, Error::ManifestUnknown { repository, reference: r } if repository == repo && r == reference)
}

fn invalid_manifest(err: &Error) -> bool {
    matches!(err, Error::InvalidManifest { reason } if !reason.is_empty())
}

/// Pushes an image of fresh blobs by its own digest, so that no tag points at it.
fn push_untagged(repo: &Repository, seed: &str) -> Digest {
    let body = upload_image(
        repo,
        format!("config {seed}").as_bytes(),
        &[format!("layer {seed}").as_bytes()],
    );
    let digest = sha256(&body);
    assert_eq!(
        repo.push_manifest(digest.as_str(), OCI_MANIFEST, &body)
            .unwrap()
            .digest,
        digest
    );
    digest
}

/// A Docker schema 2 image manifest body.
fn docker_image_body(config: &(Digest, u64), layers: &[(Digest, u64)]) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "digest": config.0, "size": config.1},
        "layers": layers.iter()
            .map(|(d, s)| json!({"mediaType": DOCKER_LAYER, "digest": d, "size": s}))
            .collect::<Vec<_>>(),
    })
}

/// A Docker manifest list body over Docker manifests.
fn docker_list_body(children: &[(Digest, u64)]) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST_LIST,
        "manifests": children.iter()
            .map(|(d, s)| json!({
                "mediaType": DOCKER_MANIFEST, "digest": d, "size": s,
                "platform": {"architecture": "amd64", "os": "linux"},
            }))
            .collect::<Vec<_>>(),
    })
}

/// The body of an OCI image manifest that refers to `subject`, with a fresh config blob of type
/// `config_type` and an annotation naming `seed`.
fn referrer_body(
    repo: &Repository,
    subject: &Digest,
    artifact_type: Option<&str>,
    config_type: &str,
    seed: &str,
) -> Vec<u8> {
    let config = put(repo, format!("config of {seed}").as_bytes());
    let mut body = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": config_type, "digest": config.0, "size": config.1},
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 123},
        "annotations": {"org.example.seed": seed},
    });
    if let Some(t) = artifact_type {
        body["artifactType"] = json!(t);
    }
    to_bytes(&body)
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out.sort();
    out
}

fn at(secs: u64) -> Timestamp {
    START.saturating_add(Duration::from_secs(secs))
}

fn digests(manifests: &[ocistore::Manifest]) -> Vec<Digest> {
    manifests.iter().map(|m| m.digest.clone()).collect()
}

fn tag_names(repo: &Repository, page: &Page) -> Vec<String> {
    repo.tags(page)
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect()
}

/// Bytes that are not all alike, so that chunk boundaries matter.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// P1 — verified blob writes, streamed and resumable uploads
// ---------------------------------------------------------------------------------------------

#[test]
fn p1_put_blob_stores_the_bytes_under_a_digest_of_each_algorithm() {
    let store = Store::new();
    let repo = store.repo("app");
    let mut expected = Vec::new();
    for alg in Algorithm::ALL {
        let bytes = format!("bytes for {alg}");
        let digest = alg.digest(bytes.as_bytes());
        repo.put_blob(&digest, &bytes).unwrap();
        assert_eq!(repo.blob(&digest).unwrap(), bytes.as_bytes());
        assert_eq!(repo.blob_size(&digest).unwrap(), bytes.len() as u64);
        expected.push(digest);
    }
    // Listed in lexical order of the digest text.
    expected.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    assert_eq!(repo.blobs(&Page::all()).unwrap(), expected);
    // put_blob_sha256 computes the digest itself.
    assert_eq!(repo.put_blob_sha256(b"abc").unwrap(), sha256(b"abc"));
}

#[test]
fn p1_put_blob_refuses_bytes_that_do_not_hash_to_the_digest() {
    let store = Store::new();
    let repo = store.repo("app");
    repo.put_blob_sha256(b"something already there").unwrap();
    for alg in Algorithm::ALL {
        // Small blobs, and blobs large enough to be hashed on a second thread.
        for actual_bytes in [b"actual".to_vec(), pattern(3 << 20, 7)] {
            let claimed = alg.digest(b"claimed");
            let err =
                fails_writing_nothing(&store.registry, || repo.put_blob(&claimed, &actual_bytes));
            assert!(
                matches!(err, Error::DigestMismatch { ref expected, ref actual }
                    if *expected == claimed && *actual == alg.digest(&actual_bytes)),
                "{alg}: {err:?}"
            );
            assert!(blob_unknown(
                &repo.blob(&claimed).unwrap_err(),
                "app",
                &claimed
            ));
        }
    }
    // Nothing is left behind in the blob store's scratch space either.
    assert!(files_under(&store.dir.path().join("tmp")).is_empty());
}

#[test]
fn p1_put_blob_verifies_the_bytes_even_when_the_registry_holds_the_blob() {
    let store = Store::new();
    let a = store.repo("a");
    let b = store.repo("b");
    let digest = a.put_blob_sha256(b"the real bytes").unwrap();
    let err = fails_writing_nothing(&store.registry, || b.put_blob(&digest, b"forged bytes"));
    assert!(
        matches!(err, Error::DigestMismatch { ref expected, ref actual }
            if *expected == digest && *actual == sha256(b"forged bytes")),
        "{err:?}"
    );
    assert!(blob_unknown(&b.blob(&digest).unwrap_err(), "b", &digest));
    // With the right bytes it is only linked: still one file in the blob store.
    let files = files_under(&store.dir.path().join("blobs"));
    b.put_blob(&digest, b"the real bytes").unwrap();
    assert_eq!(b.blob(&digest).unwrap(), &b"the real bytes"[..]);
    assert_eq!(files_under(&store.dir.path().join("blobs")), files);
}

#[test]
fn p1_an_upload_streams_chunks_and_reports_offsets() {
    let store = Store::new();
    let repo = store.repo("app");
    let data = pattern(2 << 20, 3);
    let upload = repo.start_upload().unwrap();
    assert_eq!(upload.offset(), 0);
    let mut sent = 0;
    for chunk in data.chunks(333_333) {
        sent += chunk.len() as u64;
        assert_eq!(upload.append(chunk).unwrap(), sent);
        assert_eq!(upload.offset(), sent);
    }
    let digest = sha256(&data);
    upload.finish(&digest).unwrap();
    assert_eq!(repo.blob(&digest).unwrap(), data);
    assert_eq!(repo.blob_size(&digest).unwrap(), data.len() as u64);
    assert!(files_under(&store.dir.path().join("uploads")).is_empty());
}

#[test]
fn p1_append_at_a_wrong_offset_is_refused_with_the_real_offset() {
    let store = Store::new();
    let repo = store.repo("app");
    let upload = repo.start_upload().unwrap();
    assert_eq!(upload.append_at(0, b"hello").unwrap(), 5);
    for wrong in [0, 4, 6, 1 << 40] {
        let err = fails_writing_nothing(&store.registry, || upload.append_at(wrong, b" world"));
        assert!(
            matches!(err, Error::UploadOffsetMismatch { ref id, expected, actual: 5 }
                if id == upload.id() && expected == wrong),
            "{err:?}"
        );
        assert_eq!(upload.offset(), 5);
    }
    assert_eq!(upload.append_at(5, b" world").unwrap(), 11);
    upload.finish(&sha256(b"hello world")).unwrap();
    assert_eq!(
        repo.blob(&sha256(b"hello world")).unwrap(),
        &b"hello world"[..]
    );
}

#[test]
fn p1_finish_with_a_wrong_digest_stores_nothing_and_keeps_the_session() {
    let store = Store::new();
    let repo = store.repo("app");
    let upload = repo.start_upload().unwrap();
    upload.append(b"hello ").unwrap();
    let whole = sha256(b"hello world");
    let err = fails_writing_nothing(&store.registry, || upload.finish(&whole));
    assert!(
        matches!(err, Error::DigestMismatch { ref expected, ref actual }
            if *expected == whole && *actual == sha256(b"hello ")),
        "{err:?}"
    );
    assert!(blob_unknown(&repo.blob(&whole).unwrap_err(), "app", &whole));
    assert!(
        store
            .registry
            .repositories(&Page::all())
            .unwrap()
            .is_empty()
    );
    // The session is still usable: send the rest and finish.
    assert_eq!(upload.offset(), 6);
    assert_eq!(upload.append(b"world").unwrap(), 11);
    upload.finish(&whole).unwrap();
    assert_eq!(repo.blob(&whole).unwrap(), &b"hello world"[..]);
}

#[test]
fn p1_finish_verifies_sha512_and_blake3_digests_after_streaming() {
    let store = Store::new();
    let repo = store.repo("app");
    for (i, alg) in [Algorithm::Sha512, Algorithm::Blake3]
        .into_iter()
        .enumerate()
    {
        let data = pattern(1_500_000, i as u8);
        let upload = repo.start_upload().unwrap();
        for chunk in data.chunks(400_000) {
            upload.append(chunk).unwrap();
        }
        let wrong = alg.digest(b"not these bytes");
        let err = fails_writing_nothing(&store.registry, || upload.finish(&wrong));
        assert!(
            matches!(err, Error::DigestMismatch { ref expected, ref actual }
                if *expected == wrong && *actual == alg.digest(&data)),
            "{alg}: {err:?}"
        );
        // After the failed check rereads the file, appending still goes to the end.
        upload.append(b"tail").unwrap();
        let mut whole = data.clone();
        whole.extend_from_slice(b"tail");
        let digest = alg.digest(&whole);
        upload.finish(&digest).unwrap();
        assert_eq!(digest.algorithm(), alg);
        assert_eq!(repo.blob(&digest).unwrap(), whole);
        assert!(blob_unknown(
            &repo.blob(&sha256(&whole)).unwrap_err(),
            "app",
            &sha256(&whole)
        ));
    }
}

#[test]
fn p1_cancel_discards_the_session_and_its_bytes() {
    let store = Store::new();
    let repo = store.repo("app");
    let before = snapshot(&store.registry);
    let upload = repo.start_upload().unwrap();
    upload.append(b"abandoned").unwrap();
    assert_ne!(snapshot(&store.registry), before, "the session has a file");
    upload.cancel().unwrap();
    assert_eq!(snapshot(&store.registry), before);
    let id = upload.id().to_owned();
    let unknown = |e: Error| matches!(e, Error::UploadUnknown { id: ref i } if *i == id);
    assert!(unknown(upload.append(b"more").unwrap_err()));
    assert!(unknown(upload.append_at(9, b"more").unwrap_err()));
    assert!(unknown(upload.finish(&sha256(b"abandoned")).unwrap_err()));
    assert!(unknown(upload.cancel().unwrap_err()));
    assert!(unknown(repo.resume_upload(&id).unwrap_err()));
    assert!(blob_unknown(
        &repo.blob(&sha256(b"abandoned")).unwrap_err(),
        "app",
        &sha256(b"abandoned")
    ));
}

#[test]
fn p1_a_finished_session_is_closed() {
    let store = Store::new();
    let repo = store.repo("app");
    let upload = repo.start_upload().unwrap();
    upload.append(b"done").unwrap();
    upload.finish(&sha256(b"done")).unwrap();
    let id = upload.id().to_owned();
    let unknown = |e: Error| matches!(e, Error::UploadUnknown { id: ref i } if *i == id);
    assert!(unknown(upload.append(b"more").unwrap_err()));
    assert!(unknown(upload.finish(&sha256(b"done")).unwrap_err()));
    assert!(unknown(upload.cancel().unwrap_err()));
    assert!(unknown(repo.resume_upload(&id).unwrap_err()));
    assert_eq!(repo.blob(&sha256(b"done")).unwrap(), &b"done"[..]);
}

#[test]
fn p1_an_empty_upload_finishes_as_the_empty_blob() {
    let store = Store::new();
    let repo = store.repo("app");
    let upload = repo.start_upload().unwrap();
    upload.finish(&sha256(b"")).unwrap();
    assert_eq!(repo.blob_size(&sha256(b"")).unwrap(), 0);
    assert!(repo.blob(&sha256(b"")).unwrap().is_empty());
}

#[test]
fn p1_resume_upload_in_the_same_process() {
    let store = Store::new();
    let repo = store.repo("app");
    let first = repo.start_upload().unwrap();
    first.append(b"abc").unwrap();
    // Another handle on the same repository (as another request would have).
    let other_handle = store.repo("app");
    let resumed = other_handle.resume_upload(first.id()).unwrap();
    assert_eq!(resumed.id(), first.id());
    assert_eq!(resumed.offset(), 3);
    assert_eq!(resumed.append_at(3, b"def").unwrap(), 6);
    // Both handles see one session.
    assert_eq!(first.offset(), 6);
    assert!(matches!(
        first.append_at(3, b"x").unwrap_err(),
        Error::UploadOffsetMismatch {
            expected: 3,
            actual: 6,
            ..
        }
    ));
    resumed.finish(&sha256(b"abcdef")).unwrap();
    assert_eq!(repo.blob(&sha256(b"abcdef")).unwrap(), &b"abcdef"[..]);
    assert!(matches!(
        first.append(b"late").unwrap_err(),
        Error::UploadUnknown { .. }
    ));
}

#[test]
fn p1_an_append_torn_by_a_failed_write_is_dropped_by_the_next() {
    let store = Store::new();
    let repo = store.repo("app");
    let upload = repo.start_upload().unwrap();
    assert_eq!(upload.append(b"abc").unwrap(), 3);
    // An append that failed part way (a full disk) left half a chunk past the offset.
    let file = store.dir.path().join("uploads").join(upload.id());
    std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap()
        .write_all(b"torn")
        .unwrap();
    assert_eq!(upload.append(b"def").unwrap(), 6);
    upload.finish(&sha256(b"abcdef")).unwrap();
    assert_eq!(repo.blob(&sha256(b"abcdef")).unwrap(), &b"abcdef"[..]);
}

#[test]
fn p1_resume_upload_after_reopening_the_store() {
    let store = Store::new();
    let data = pattern(1 << 20, 9);
    let (head, tail) = data.split_at(700_001);
    let id = {
        let repo = store.repo("team/app");
        let upload = repo.start_upload().unwrap();
        for chunk in head.chunks(100_000) {
            upload.append(chunk).unwrap();
        }
        upload.id().to_owned()
    };
    let store = store.reopen();
    let digest = sha256(&data);
    {
        let repo = store.repo("team/app");
        let upload = repo.resume_upload(&id).unwrap();
        assert_eq!(upload.id(), id);
        assert_eq!(upload.offset(), head.len() as u64);
        let err = upload.append_at(0, tail).unwrap_err();
        assert!(
            matches!(err, Error::UploadOffsetMismatch { actual, .. } if actual == head.len() as u64),
            "{err:?}"
        );
        // A wrong digest after the restart is still refused and keeps the session.
        let err = fails_writing_nothing(&store.registry, || upload.finish(&digest));
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
        assert_eq!(
            upload.append_at(head.len() as u64, tail).unwrap(),
            data.len() as u64
        );
        upload.finish(&digest).unwrap();
        assert_eq!(repo.blob(&digest).unwrap(), data);
    }
    // The finished blob survives another restart; the session does not.
    let store = store.reopen();
    let repo = store.repo("team/app");
    assert_eq!(repo.blob(&digest).unwrap(), data);
    assert!(matches!(
        repo.resume_upload(&id).unwrap_err(),
        Error::UploadUnknown { .. }
    ));
    assert!(files_under(&store.dir.path().join("uploads")).is_empty());
}

#[test]
fn p1_resume_after_reopening_then_finish_with_sha512_and_blake3() {
    let store = Store::new();
    let data = pattern(300_000, 1);
    let (head, tail) = data.split_at(123_457);
    let ids: Vec<String> = {
        let repo = store.repo("app");
        (0..2)
            .map(|_| {
                let upload = repo.start_upload().unwrap();
                upload.append(head).unwrap();
                upload.id().to_owned()
            })
            .collect()
    };
    let store = store.reopen();
    let repo = store.repo("app");
    for (id, alg) in ids.iter().zip([Algorithm::Sha512, Algorithm::Blake3]) {
        let upload = repo.resume_upload(id).unwrap();
        assert_eq!(upload.offset(), head.len() as u64);
        upload.append(tail).unwrap();
        let digest = alg.digest(&data);
        upload.finish(&digest).unwrap();
        assert_eq!(repo.blob(&digest).unwrap(), data);
    }
}

#[test]
fn p1_resuming_an_unknown_session_is_upload_unknown() {
    let store = Store::new();
    let repo = store.repo("app");
    for id in [
        "",
        "nope",
        "../metadata.redb",
        "00000000000000000000000000000000",
    ] {
        let err = fails_writing_nothing(&store.registry, || repo.resume_upload(id));
        assert!(
            matches!(err, Error::UploadUnknown { id: ref i } if i == id),
            "{id:?}: {err:?}"
        );
    }
}

#[test]
fn p1_a_session_cannot_be_resumed_through_another_repository_after_a_restart() {
    let store = Store::new();
    let id = {
        let upload = store.repo("a").start_upload().unwrap();
        upload.append(b"for a").unwrap();
        upload.id().to_owned()
    };
    let store = store.reopen();
    let err = store.repo("b").resume_upload(&id).unwrap_err();
    assert!(
        matches!(err, Error::UploadUnknown { id: ref i } if *i == id),
        "{err:?}"
    );
    // It is still there for its own repository.
    let upload = store.repo("a").resume_upload(&id).unwrap();
    upload.finish(&sha256(b"for a")).unwrap();
    assert_eq!(
        store.repo("a").blob(&sha256(b"for a")).unwrap(),
        &b"for a"[..]
    );
}

#[test]
fn p1_a_session_cannot_be_resumed_through_another_repository_in_process() {
    let store = Store::new();
    let upload = store.repo("a").start_upload().unwrap();
    upload.append(b"for a").unwrap();
    let err = store.repo("b").resume_upload(upload.id()).unwrap_err();
    assert!(
        matches!(err, Error::UploadUnknown { ref id } if id == upload.id()),
        "{err:?}"
    );
}

#[test]
fn p1_uploading_a_blob_the_registry_holds_links_it_without_a_second_file() {
    let store = Store::new();
    let a = store.repo("a");
    let b = store.repo("b");
    let digest = a.put_blob_sha256(b"shared layer").unwrap();
    let blob_files = files_under(&store.dir.path().join("blobs"));
    let upload = b.start_upload().unwrap();
    upload.append(b"shared ").unwrap();
    upload.append(b"layer").unwrap();
    upload.finish(&digest).unwrap();
    assert_eq!(b.blob(&digest).unwrap(), &b"shared layer"[..]);
    assert_eq!(files_under(&store.dir.path().join("blobs")), blob_files);
    assert!(files_under(&store.dir.path().join("uploads")).is_empty());
}

// ---------------------------------------------------------------------------------------------
// P2 — blob links and mounts
// ---------------------------------------------------------------------------------------------

#[test]
fn p2_a_blob_is_readable_only_from_the_repository_it_was_put_into() {
    let store = Store::new();
    let a = store.repo("a");
    let b = store.repo("b");
    b.put_blob_sha256(b"b's own").unwrap();
    let digest = a.put_blob_sha256(b"a's layer").unwrap();
    assert_eq!(a.blob(&digest).unwrap(), &b"a's layer"[..]);
    assert!(blob_unknown(&b.blob(&digest).unwrap_err(), "b", &digest));
    assert!(blob_unknown(
        &b.blob_size(&digest).unwrap_err(),
        "b",
        &digest
    ));
    assert!(blob_unknown(
        &b.blob_reader(&digest, ..).unwrap_err(),
        "b",
        &digest
    ));
    // A repository that holds nothing cannot read it either.
    let c = store.repo("c");
    assert!(blob_unknown(&c.blob(&digest).unwrap_err(), "c", &digest));
    assert_eq!(a.blobs(&Page::all()).unwrap(), [digest]);
    assert_eq!(b.blobs(&Page::all()).unwrap(), [sha256(b"b's own")]);
}

#[test]
fn p2_an_uploaded_blob_is_linked_only_into_the_sessions_repository() {
    let store = Store::new();
    let a = store.repo("a");
    let b = store.repo("b");
    let upload = a.start_upload().unwrap();
    upload.append(b"streamed").unwrap();
    let digest = sha256(b"streamed");
    upload.finish(&digest).unwrap();
    assert_eq!(a.blob(&digest).unwrap(), &b"streamed"[..]);
    assert!(blob_unknown(&b.blob(&digest).unwrap_err(), "b", &digest));
}

#[test]
fn p2_a_linked_blob_reads_by_range() {
    let store = Store::new();
    let a = store.repo("a");
    let digest = a.put_blob_sha256(b"0123456789").unwrap();
    let mut buf = String::new();
    let mut reader = a.blob_reader(&digest, 2..5).unwrap();
    assert_eq!(reader.len(), 3);
    reader.read_to_string(&mut buf).unwrap();
    assert_eq!(buf, "234");
    assert!(matches!(
        a.blob_reader(&digest, 5..11).unwrap_err(),
        Error::InvalidRange {
            start: 5,
            end: 11,
            size: 10
        }
    ));
}

#[test]
fn p2_mount_links_the_blob_into_the_target_without_copying_it() {
    let store = Store::new();
    let a = store.repo("a");
    let b = store.repo("b");
    let digest = a.put_blob_sha256(b"mount me").unwrap();
    let blob_files = files_under(&store.dir.path().join("blobs"));
    b.mount_blob("a", &digest).unwrap();
    assert_eq!(b.blob(&digest).unwrap(), &b"mount me"[..]);
    assert_eq!(b.blob_size(&digest).unwrap(), 8);
    assert_eq!(
        b.blobs(&Page::all()).unwrap(),
        std::slice::from_ref(&digest)
    );
    // The source keeps it, and the registry still holds one file.
    assert_eq!(a.blob(&digest).unwrap(), &b"mount me"[..]);
    assert_eq!(files_under(&store.dir.path().join("blobs")), blob_files);
    assert_eq!(
        store.registry.repositories(&Page::all()).unwrap(),
        ["a", "b"]
    );
    // A mounted blob can be mounted onwards.
    let c = store.repo("c/d");
    c.mount_blob("b", &digest).unwrap();
    assert_eq!(c.blob(&digest).unwrap(), &b"mount me"[..]);
}

#[test]
fn p2_mount_requires_the_blob_to_be_linked_to_the_source() {
    let store = Store::new();
    let a = store.repo("a");
    let b = store.repo("b");
    let c = store.repo("c");
    let digest = a.put_blob_sha256(b"only in a").unwrap();
    b.put_blob_sha256(b"b has something else").unwrap();
    // The registry holds the blob, but not linked to b.
    let err = fails_writing_nothing(&store.registry, || c.mount_blob("b", &digest));
    assert!(blob_unknown(&err, "b", &digest), "{err:?}");
    assert!(blob_unknown(&c.blob(&digest).unwrap_err(), "c", &digest));
    // Nor can b mount it from itself.
    let err = fails_writing_nothing(&store.registry, || b.mount_blob("b", &digest));
    assert!(blob_unknown(&err, "b", &digest), "{err:?}");
}

#[test]
fn p2_mount_from_a_repository_that_never_had_the_blob_is_blob_unknown() {
    let store = Store::new();
    let a = store.repo("a");
    let target = store.repo("target");
    let digest = a.put_blob_sha256(b"layer").unwrap();
    let err = fails_writing_nothing(&store.registry, || target.mount_blob("ghost", &digest));
    assert!(blob_unknown(&err, "ghost", &digest), "{err:?}");
    // A blob no repository ever had.
    let never = sha256(b"never stored");
    let err = fails_writing_nothing(&store.registry, || target.mount_blob("a", &never));
    assert!(blob_unknown(&err, "a", &never), "{err:?}");
    assert_eq!(store.registry.repositories(&Page::all()).unwrap(), ["a"]);
}

// ---------------------------------------------------------------------------------------------
// P3 — manifest push: exact bytes, digest, media type, schema 1, validity
// ---------------------------------------------------------------------------------------------

#[test]
fn p3_a_push_stores_the_exact_bytes() {
    let store = Store::new();
    let repo = store.repo("app");
    let config = put(&repo, b"{}");
    let layer = put(&repo, b"layer");
    // Keys out of the usual order, odd whitespace, an escaped character, a trailing newline.
    let body = format!(
        "{{\n\t\"layers\" : [ {{\"size\":{}, \"digest\":\"{}\",\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\"}} ],\
         \r\n  \"annotations\": {{\"caf\\u00e9\": \"x\"}},\
         \"config\":{{\"digest\":\"{}\",\"size\":{},\"mediaType\":\"{CONFIG_TYPE}\"}},   \
         \"mediaType\":\"{OCI_MANIFEST}\", \"schemaVersion\" :2 }}\n",
        layer.1, layer.0, config.0, config.1,
    );
    let body = body.as_bytes();
    let digest = repo
        .push_manifest("odd", OCI_MANIFEST, body)
        .unwrap()
        .digest;
    assert_eq!(digest, sha256(body));
    let canonical = to_bytes(&serde_json::from_slice::<Value>(body).unwrap());
    assert_ne!(
        digest,
        sha256(&canonical),
        "the digest is of the bytes as sent"
    );
    for reference in ["odd", digest.as_str()] {
        let pulled = repo.pull(reference).unwrap();
        assert_eq!(pulled.body, body);
        assert_eq!(pulled.digest, digest);
    }
    assert_eq!(repo.manifest("odd").unwrap().size, body.len() as u64);
}

#[test]
fn p3_a_push_by_digest_must_name_the_digest_of_the_body() {
    let store = Store::new();
    let repo = store.repo("app");
    let body = upload_image(&repo, b"config p3", &[b"layer p3"]);
    for alg in Algorithm::ALL {
        let claimed = alg.digest(b"another body");
        let err = fails_writing_nothing(&store.registry, || {
            repo.push_manifest(claimed.as_str(), OCI_MANIFEST, &body)
        });
        assert!(
            matches!(err, Error::DigestMismatch { ref expected, ref actual }
                if *expected == claimed && *actual == alg.digest(&body)),
            "{alg}: {err:?}"
        );
        assert!(manifest_unknown(
            &repo.pull(claimed.as_str()).unwrap_err(),
            "app",
            claimed.as_str()
        ));
    }
    let digest = sha256(&body);
    assert_eq!(
        repo.push_manifest(digest.as_str(), OCI_MANIFEST, &body)
            .unwrap()
            .digest,
        digest
    );
    assert_eq!(repo.pull(digest.as_str()).unwrap().body, body);
    assert!(repo.tags(&Page::all()).unwrap().is_empty());
}

#[test]
fn p3_the_declared_media_type_must_agree_with_the_body() {
    let store = Store::new();
    let repo = store.repo("app");
    let config = put(&repo, b"config");
    let child = push_image(&repo, "child", "child");
    let cases = [
        (OCI_INDEX, image_body(&config, &[])),
        (DOCKER_MANIFEST, image_body(&config, &[])),
        (OCI_MANIFEST, docker_image_body(&config, &[])),
        (OCI_MANIFEST, index_body(&[(child.clone(), 1)])),
        (DOCKER_MANIFEST_LIST, index_body(&[(child.clone(), 1)])),
        (OCI_INDEX, docker_list_body(&[(child, 1)])),
    ];
    for (declared, body) in cases {
        let body_type = body["mediaType"].as_str().unwrap().to_owned();
        let bytes = to_bytes(&body);
        let err = fails_writing_nothing(&store.registry, || {
            repo.push_manifest("v", declared, &bytes)
        });
        assert!(
            matches!(err, Error::MediaTypeMismatch { declared: ref d, body: ref b }
                if d == declared && *b == body_type),
            "{declared} / {body_type}: {err:?}"
        );
    }
}

#[test]
fn p3_a_body_without_a_media_type_is_taken_as_declared() {
    let store = Store::new();
    let repo = store.repo("app");
    let config = put(&repo, b"config");
    let mut image = image_body(&config, &[]);
    image.as_object_mut().unwrap().remove("mediaType");
    let image = to_bytes(&image);
    let digest = repo
        .push_manifest("oci", OCI_MANIFEST, &image)
        .unwrap()
        .digest;
    let pulled = repo.pull("oci").unwrap();
    assert_eq!(
        (pulled.media_type.as_str(), &pulled.body[..]),
        (OCI_MANIFEST, &image[..])
    );

    let mut index = index_body(&[(digest, image.len() as u64)]);
    index.as_object_mut().unwrap().remove("mediaType");
    let index = to_bytes(&index);
    repo.push_manifest("list", DOCKER_MANIFEST_LIST, &index)
        .unwrap();
    assert_eq!(repo.pull("list").unwrap().media_type, DOCKER_MANIFEST_LIST);
}

#[test]
fn p3_docker_schema_1_media_types_are_refused() {
    let store = Store::new();
    let repo = store.repo("app");
    let config = put(&repo, b"config");
    let schema1 = to_bytes(&json!({
        "schemaVersion": 1, "name": "app", "tag": "v1", "architecture": "amd64",
        "fsLayers": [{"blobSum": sha256(b"x")}], "history": [{"v1Compatibility": "{}"}],
    }));
    let mut v2 = docker_image_body(&config, &[]);
    v2.as_object_mut().unwrap().remove("mediaType");
    let v2 = to_bytes(&v2);
    for declared in [SCHEMA1, SCHEMA1_SIGNED] {
        for body in [&schema1, &v2] {
            let err =
                fails_writing_nothing(&store.registry, || repo.push_manifest("v1", declared, body));
            assert!(
                matches!(err, Error::UnsupportedMediaType { ref media_type, .. } if media_type == declared),
                "{declared}: {err:?}"
            );
        }
    }
}

#[test]
fn p3_a_schema_1_body_is_refused_whatever_is_declared() {
    let store = Store::new();
    let repo = store.repo("app");
    let schema1 = json!({
        "schemaVersion": 1, "name": "app", "tag": "v1", "architecture": "amd64",
        "fsLayers": [{"blobSum": sha256(b"x")}], "history": [{"v1Compatibility": "{}"}],
    });
    let bytes = to_bytes(&schema1);
    for declared in [OCI_MANIFEST, DOCKER_MANIFEST] {
        let err = fails_writing_nothing(&store.registry, || {
            repo.push_manifest("v1", declared, &bytes)
        });
        assert!(
            matches!(err, Error::UnsupportedMediaType { ref media_type, .. } if media_type == declared),
            "{declared}: {err:?}"
        );
    }
    // A body naming a schema 1 type is refused as schema 1, not as a mere mismatch.
    for body_type in [SCHEMA1, SCHEMA1_SIGNED] {
        let mut body = schema1.clone();
        body["mediaType"] = json!(body_type);
        let bytes = to_bytes(&body);
        let err = fails_writing_nothing(&store.registry, || {
            repo.push_manifest("v1", DOCKER_MANIFEST, &bytes)
        });
        assert!(
            matches!(err, Error::UnsupportedMediaType { ref media_type, .. } if media_type == body_type),
            "{body_type}: {err:?}"
        );
    }
}

#[test]
fn p3_unknown_media_types_are_refused() {
    let store = Store::new();
    let repo = store.repo("app");
    let body = upload_image(&repo, b"config", &[]);
    for declared in [
        "application/json",
        "",
        CONFIG_TYPE,
        "application/vnd.oci.artifact.manifest.v1+json",
        "APPLICATION/VND.OCI.IMAGE.MANIFEST.V1+JSON",
    ] {
        let err = fails_writing_nothing(&store.registry, || {
            repo.push_manifest("v1", declared, &body)
        });
        assert!(
            matches!(err, Error::UnsupportedMediaType { ref media_type, .. } if media_type == declared),
            "{declared:?}: {err:?}"
        );
    }
}

#[test]
fn p3_malformed_manifests_are_invalid() {
    let store = Store::new();
    let repo = store.repo("app");
    let config = put(&repo, b"config");
    let layer = put(&repo, b"layer");
    let child = push_image(&repo, "child", "child");
    let desc = |d: &(Digest, u64)| json!({"mediaType": CONFIG_TYPE, "digest": d.0, "size": d.1});
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "truncated JSON",
            OCI_MANIFEST,
            b"{\"schemaVersion\": 2,".to_vec(),
        ),
        ("not JSON", OCI_MANIFEST, b"schemaVersion: 2".to_vec()),
        ("empty body", OCI_INDEX, Vec::new()),
        ("trailing garbage", OCI_MANIFEST, {
            let mut b = to_bytes(&image_body(&config, &[]));
            b.extend_from_slice(b"}");
            b
        }),
        (
            "missing config",
            OCI_MANIFEST,
            to_bytes(
                &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [desc(&layer)]}),
            ),
        ),
        (
            "missing layers",
            DOCKER_MANIFEST,
            to_bytes(&json!({"schemaVersion": 2, "config": desc(&config)})),
        ),
        (
            "image with manifests",
            OCI_MANIFEST,
            to_bytes(
                &json!({"schemaVersion": 2, "config": desc(&config), "layers": [],
                "manifests": [desc(&(child.clone(), 1))]}),
            ),
        ),
        (
            "index with layers",
            OCI_INDEX,
            to_bytes(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
                "manifests": [desc(&(child.clone(), 1))], "layers": [desc(&layer)]})),
        ),
        (
            "index with config",
            DOCKER_MANIFEST_LIST,
            to_bytes(&json!({"schemaVersion": 2, "manifests": [], "config": desc(&config)})),
        ),
        (
            "index without manifests",
            OCI_INDEX,
            to_bytes(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX})),
        ),
        (
            "missing schemaVersion",
            OCI_MANIFEST,
            to_bytes(&json!({"mediaType": OCI_MANIFEST, "config": desc(&config), "layers": []})),
        ),
        (
            "schemaVersion 3",
            OCI_MANIFEST,
            to_bytes(&json!({"schemaVersion": 3, "config": desc(&config), "layers": []})),
        ),
        (
            "layers not a list",
            OCI_MANIFEST,
            to_bytes(&json!({"schemaVersion": 2, "config": desc(&config), "layers": desc(&layer)})),
        ),
        (
            "descriptor without digest",
            OCI_MANIFEST,
            to_bytes(
                &json!({"schemaVersion": 2, "config": {"mediaType": CONFIG_TYPE, "size": 6},
                "layers": []}),
            ),
        ),
    ];
    for (what, media_type, body) in cases {
        let err = fails_writing_nothing(&store.registry, || {
            repo.push_manifest("v1", media_type, &body)
        });
        assert!(invalid_manifest(&err), "{what}: {err:?}");
    }
}

#[test]
fn p3_a_json_array_is_not_a_manifest() {
    let store = Store::new();
    let repo = store.repo("app");
    let config = put(&repo, b"config");
    // The fields of an image manifest in declaration order, as an array instead of an object.
    let body = to_bytes(&json!([
        2,
        OCI_MANIFEST,
        null,
        {"mediaType": CONFIG_TYPE, "digest": config.0, "size": config.1},
        [],
        null,
        null,
        {}
    ]));
    let err = fails_writing_nothing(&store.registry, || {
        repo.push_manifest("v1", OCI_MANIFEST, &body)
    });
    assert!(invalid_manifest(&err), "{err:?}");
}

#[test]
fn p3_all_four_accepted_media_types_push_and_pull() {
    let store = Store::new();
    let repo = store.repo("app");
    let oci_config = put(&repo, b"oci config");
    let docker_config = put(&repo, b"docker config");
    let layer = put(&repo, b"layer");

    let oci = to_bytes(&image_body(&oci_config, std::slice::from_ref(&layer)));
    let docker = to_bytes(&docker_image_body(&docker_config, &[layer]));
    let oci_digest = repo
        .push_manifest("oci", OCI_MANIFEST, &oci)
        .unwrap()
        .digest;
    let docker_digest = repo
        .push_manifest("docker", DOCKER_MANIFEST, &docker)
        .unwrap()
        .digest;
    let oci_index = to_bytes(&index_body(&[
        (oci_digest.clone(), oci.len() as u64),
        (docker_digest.clone(), docker.len() as u64),
    ]));
    let docker_list = to_bytes(&docker_list_body(&[(docker_digest, docker.len() as u64)]));
    repo.push_manifest("oci-index", OCI_INDEX, &oci_index)
        .unwrap();
    repo.push_manifest("docker-list", DOCKER_MANIFEST_LIST, &docker_list)
        .unwrap();

    for (tag, media_type, body) in [
        ("oci", OCI_MANIFEST, &oci),
        ("docker", DOCKER_MANIFEST, &docker),
        ("oci-index", OCI_INDEX, &oci_index),
        ("docker-list", DOCKER_MANIFEST_LIST, &docker_list),
    ] {
        let pulled = repo.pull(tag).unwrap();
        assert_eq!(pulled.media_type, media_type, "{tag}");
        assert_eq!(pulled.body, *body, "{tag}");
        assert_eq!(pulled.digest, sha256(body), "{tag}");
        assert_eq!(repo.manifest(tag).unwrap().media_type, media_type);
    }
}

// ---------------------------------------------------------------------------------------------
// P4 — references must resolve in the repository
// ---------------------------------------------------------------------------------------------

#[test]
fn p4_a_missing_config_is_blob_unknown_naming_it() {
    let store = Store::new();
    let repo = store.repo("app");
    let layer = put(&repo, b"layer");
    let config = (sha256(b"never uploaded config"), 21);
    let body = to_bytes(&image_body(&config, &[layer]));
    let err = fails_writing_nothing(&store.registry, || {
        repo.push_manifest("v1", OCI_MANIFEST, &body)
    });
    assert!(blob_unknown(&err, "app", &config.0), "{err:?}");
}

#[test]
fn p4_a_missing_layer_is_blob_unknown_naming_it() {
    let store = Store::new();
    let repo = store.repo("app");
    let config = put(&repo, b"config");
    let first = put(&repo, b"first layer");
    let missing = (sha256(b"second layer"), 12);
    let body = to_bytes(&image_body(&config, &[first, missing.clone()]));
    let err = fails_writing_nothing(&store.registry, || {
        repo.push_manifest("v1", OCI_MANIFEST, &body)
    });
    assert!(blob_unknown(&err, "app", &missing.0), "{err:?}");
    // Once the layer is uploaded the same push goes through.
    repo.put_blob_sha256(b"second layer").unwrap();
    assert_eq!(
        repo.push_manifest("v1", OCI_MANIFEST, &body)
            .unwrap()
            .digest,
        sha256(&body)
    );
}

#[test]
fn p4_blobs_linked_only_to_another_repository_do_not_count() {
    let store = Store::new();
    let a = store.repo("a");
    let b = store.repo("b");
    let body = upload_image(&a, b"config", &[b"layer"]);
    let err = fails_writing_nothing(&store.registry, || {
        b.push_manifest("v1", OCI_MANIFEST, &body)
    });
    assert!(blob_unknown(&err, "b", &sha256(b"config")), "{err:?}");
    // Mounting both into b makes the push valid.
    b.mount_blob("a", &sha256(b"config")).unwrap();
    let err = fails_writing_nothing(&store.registry, || {
        b.push_manifest("v1", OCI_MANIFEST, &body)
    });
    assert!(blob_unknown(&err, "b", &sha256(b"layer")), "{err:?}");
    b.mount_blob("a", &sha256(b"layer")).unwrap();
    b.push_manifest("v1", OCI_MANIFEST, &body).unwrap();
    assert_eq!(b.pull("v1").unwrap().body, body);
}

#[test]
fn p4_a_blob_from_an_upload_session_counts() {
    let store = Store::new();
    let repo = store.repo("app");
    let config = put(&repo, b"config");
    let upload = repo.start_upload().unwrap();
    upload.append(b"streamed layer").unwrap();
    upload.finish(&sha256(b"streamed layer")).unwrap();
    let body = to_bytes(&image_body(&config, &[(sha256(b"streamed layer"), 14)]));
    repo.push_manifest("v1", OCI_MANIFEST, &body).unwrap();
}

#[test]
fn p4_a_missing_index_child_is_manifest_unknown_naming_it() {
    let store = Store::new();
    let a = store.repo("a");
    let b = store.repo("b");
    let present = push_image(&a, "present", "present");
    let elsewhere = push_image(&b, "elsewhere", "elsewhere");
    let never = sha256(b"no such manifest");
    let present_size = a.manifest(present.as_str()).unwrap().size;
    for missing in [&elsewhere, &never] {
        let body = to_bytes(&index_body(&[
            (present.clone(), present_size),
            (missing.clone(), 1),
        ]));
        let err =
            fails_writing_nothing(&store.registry, || a.push_manifest("idx", OCI_INDEX, &body));
        assert!(manifest_unknown(&err, "a", missing.as_str()), "{err:?}");
    }
    // A blob is not a manifest: a child naming a layer is unknown too.
    let layer = a.put_blob_sha256(b"a layer, not a manifest").unwrap();
    let body = to_bytes(&index_body(&[(layer.clone(), 1)]));
    let err = fails_writing_nothing(&store.registry, || a.push_manifest("idx", OCI_INDEX, &body));
    assert!(manifest_unknown(&err, "a", layer.as_str()), "{err:?}");
}

#[test]
fn p4_an_index_over_children_of_the_repository_is_accepted() {
    let store = Store::new();
    let repo = store.repo("app");
    let amd = push_image(&repo, "amd64", "amd64");
    let arm = push_untagged(&repo, "arm64");
    let size = |d: &Digest| repo.manifest(d.as_str()).unwrap().size;
    let (amd_size, arm_size) = (size(&amd), size(&arm));
    let body = to_bytes(&index_body(&[
        (amd.clone(), amd_size),
        (arm.clone(), arm_size),
    ]));
    let digest = repo
        .push_manifest("multi", OCI_INDEX, &body)
        .unwrap()
        .digest;
    let m = repo.manifest(digest.as_str()).unwrap();
    let children: Vec<Digest> = m.references.iter().map(|d| d.digest.clone()).collect();
    assert_eq!(children, [amd.clone(), arm]);
    // An index of indexes.
    let outer = to_bytes(&index_body(&[
        (digest, body.len() as u64),
        (amd.clone(), amd_size),
    ]));
    repo.push_manifest("outer", OCI_INDEX, &outer).unwrap();
}

#[test]
fn p4_a_descriptor_must_state_the_size_of_what_it_names() {
    let store = Store::new();
    let repo = store.repo("app");
    let config = repo.put_blob_sha256(b"{}").unwrap();
    let layer = repo.put_blob_sha256(b"layer").unwrap();
    // A layer stated one byte short.
    let body = to_bytes(&image_body(&(config.clone(), 2), &[(layer.clone(), 4)]));
    let err = fails_writing_nothing(&store.registry, || {
        repo.push_manifest("v1", OCI_MANIFEST, &body)
    });
    assert!(
        matches!(&err, Error::InvalidManifest { reason } if reason.contains(layer.as_str()) && reason.contains("4 bytes")),
        "{err:?}"
    );
    // A child manifest stated with the wrong size.
    let child = repo
        .push_manifest(
            "v1",
            OCI_MANIFEST,
            &to_bytes(&image_body(&(config, 2), &[(layer, 5)])),
        )
        .unwrap()
        .digest;
    let size = repo.manifest(child.as_str()).unwrap().size;
    let body = to_bytes(&index_body(&[(child.clone(), size + 1)]));
    let err = fails_writing_nothing(&store.registry, || {
        repo.push_manifest("idx", OCI_INDEX, &body)
    });
    assert!(
        matches!(&err, Error::InvalidManifest { reason } if reason.contains(child.as_str())),
        "{err:?}"
    );
    let body = to_bytes(&index_body(&[(child, size)]));
    repo.push_manifest("idx", OCI_INDEX, &body).unwrap();
}

#[test]
fn p4_the_subject_need_not_exist() {
    let store = Store::new();
    let repo = store.repo("app");
    let subject = sha256(b"a subject pushed later, or never");
    let body = referrer_body(
        &repo,
        &subject,
        Some("application/vnd.example.sig"),
        CONFIG_TYPE,
        "s",
    );
    let digest = repo
        .push_manifest(sha256(&body).as_str(), OCI_MANIFEST, &body)
        .unwrap()
        .digest;
    assert_eq!(
        repo.manifest(digest.as_str()).unwrap().subject,
        Some(subject.clone())
    );
    assert!(manifest_unknown(
        &repo.pull(subject.as_str()).unwrap_err(),
        "app",
        subject.as_str()
    ));
    let listed: Vec<Digest> = repo
        .referrers(&subject, None)
        .unwrap()
        .into_iter()
        .map(|d| d.digest)
        .collect();
    assert_eq!(listed, [digest]);
}

// ---------------------------------------------------------------------------------------------
// P5 — tags move; the manifest left behind stays
// ---------------------------------------------------------------------------------------------

#[test]
fn p5_pushing_a_tag_moves_it_and_the_old_manifest_stays_untagged() {
    let store = Store::new();
    let repo = store.repo("app");
    let old = push_image(&repo, "v1", "old");
    store.advance(10);
    let new = push_image(&repo, "v1", "new");
    assert_ne!(old, new);
    assert_eq!(repo.resolve("v1").unwrap(), new);
    let all = repo.manifests(&ManifestQuery::default()).unwrap();
    assert_eq!(digests(&all), [old.clone(), new.clone()]);
    assert!(all[0].tags.is_empty());
    assert_eq!(all[1].tags, ["v1"]);
    let untagged = ManifestQuery::default().untagged(true);
    assert_eq!(
        digests(&repo.manifests(&untagged).unwrap()),
        std::slice::from_ref(&old)
    );
    // The old manifest is still pullable by digest.
    assert_eq!(repo.pull(old.as_str()).unwrap().digest, old);
    let tags = repo.tags(&Page::all()).unwrap();
    assert_eq!(tags.len(), 1);
    assert_eq!((tags[0].name.as_str(), &tags[0].digest), ("v1", &new));
    assert_eq!(tags[0].updated, at(10));
}

#[test]
fn p5_a_manifest_keeps_its_other_tags_when_one_moves() {
    let store = Store::new();
    let repo = store.repo("app");
    let old = push_image(&repo, "v1", "old");
    repo.tag("stable", &old).unwrap();
    assert_eq!(repo.manifest("v1").unwrap().tags, ["stable", "v1"]);
    let new = push_image(&repo, "v1", "new");
    assert_eq!(repo.manifest(old.as_str()).unwrap().tags, ["stable"]);
    assert_eq!(repo.manifest(new.as_str()).unwrap().tags, ["v1"]);
    assert_eq!(repo.resolve("stable").unwrap(), old);
    let untagged = ManifestQuery::default().untagged(true);
    assert!(repo.manifests(&untagged).unwrap().is_empty());
}

#[test]
fn p5_tag_moves_a_tag_onto_an_existing_manifest() {
    let store = Store::new();
    let repo = store.repo("app");
    let a = push_image(&repo, "latest", "a");
    let b = push_untagged(&repo, "b");
    repo.tag("latest", &b).unwrap();
    assert_eq!(repo.resolve("latest").unwrap(), b);
    assert!(repo.manifest(a.as_str()).unwrap().tags.is_empty());
    assert_eq!(repo.manifest(b.as_str()).unwrap().tags, ["latest"]);
    // Tagging with the tag it already has changes nothing.
    let before = snapshot(&store.registry);
    store.advance(5);
    repo.tag("latest", &b).unwrap();
    assert_eq!(snapshot(&store.registry), before);
}

#[test]
fn p5_tagging_an_unknown_manifest_is_refused() {
    let store = Store::new();
    let a = store.repo("a");
    let b = store.repo("b");
    let current = push_image(&a, "v1", "current");
    let in_b = push_image(&b, "v1", "in b");
    for unknown in [sha256(b"nothing"), in_b] {
        let err = fails_writing_nothing(&store.registry, || a.tag("v1", &unknown));
        assert!(manifest_unknown(&err, "a", unknown.as_str()), "{err:?}");
    }
    assert_eq!(a.resolve("v1").unwrap(), current);
}

#[test]
fn p5_pushing_the_same_bytes_under_a_second_tag_adds_the_tag() {
    let store = Store::new();
    let repo = store.repo("app");
    let body = upload_image(&repo, b"config", &[b"layer"]);
    let first = repo.push_manifest("a", OCI_MANIFEST, &body).unwrap().digest;
    store.advance(60);
    let second = repo.push_manifest("b", OCI_MANIFEST, &body).unwrap().digest;
    assert_eq!(first, second);
    let all = repo.manifests(&ManifestQuery::default()).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].tags, ["a", "b"]);
    assert_eq!((all[0].created, all[0].updated), (at(0), at(60)));
}

// ---------------------------------------------------------------------------------------------
// P6 — pull by tag or digest
// ---------------------------------------------------------------------------------------------

#[test]
fn p6_pull_by_tag_and_by_digest_returns_bytes_media_type_and_digest() {
    let store = Store::new();
    let repo = store.repo("team/app");
    let config = put(&repo, b"docker config");
    let body = to_bytes(&docker_image_body(&config, &[put(&repo, b"layer")]));
    let digest = repo
        .push_manifest("1.0", DOCKER_MANIFEST, &body)
        .unwrap()
        .digest;
    let by_tag = repo.pull("1.0").unwrap();
    let by_digest = repo.pull(digest.as_str()).unwrap();
    for pulled in [&by_tag, &by_digest] {
        assert_eq!(pulled.digest, digest);
        assert_eq!(pulled.digest, sha256(&pulled.body));
        assert_eq!(pulled.media_type, DOCKER_MANIFEST);
        assert_eq!(pulled.body, body);
    }
    assert_eq!(by_tag, by_digest);
}

#[test]
fn p6_a_manifest_pushed_by_sha512_pulls_by_its_sha512_digest() {
    let store = Store::new();
    let repo = store.repo("app");
    let body = upload_image(&repo, b"config", &[b"layer"]);
    for alg in [Algorithm::Sha512, Algorithm::Blake3] {
        let digest = alg.digest(&body);
        assert_eq!(
            repo.push_manifest(digest.as_str(), OCI_MANIFEST, &body)
                .unwrap()
                .digest,
            digest
        );
        let pulled = repo.pull(digest.as_str()).unwrap();
        assert_eq!((&pulled.digest, &pulled.body[..]), (&digest, &body[..]));
        assert_eq!(pulled.media_type, OCI_MANIFEST);
        assert_eq!(repo.manifest(digest.as_str()).unwrap().digest, digest);
        // Tagged, it pulls by tag with the same digest.
        let tag = format!("by-{alg}");
        repo.tag(&tag, &digest).unwrap();
        assert_eq!(repo.pull(&tag).unwrap().digest, digest);
    }
    // It was never pushed under sha256.
    let as_sha256 = sha256(&body);
    assert!(manifest_unknown(
        &repo.pull(as_sha256.as_str()).unwrap_err(),
        "app",
        as_sha256.as_str()
    ));
}

#[test]
fn p6_pulling_an_unknown_reference_is_manifest_unknown() {
    let store = Store::new();
    let a = store.repo("a");
    let b = store.repo("b");
    let digest = push_image(&a, "v1", "a");
    assert!(manifest_unknown(&a.pull("v2").unwrap_err(), "a", "v2"));
    let never = sha256(b"never");
    assert!(manifest_unknown(
        &a.pull(never.as_str()).unwrap_err(),
        "a",
        never.as_str()
    ));
    // Manifests belong to their repository.
    assert!(manifest_unknown(&b.pull("v1").unwrap_err(), "b", "v1"));
    assert!(manifest_unknown(
        &b.pull(digest.as_str()).unwrap_err(),
        "b",
        digest.as_str()
    ));
    assert!(manifest_unknown(
        &b.manifest(digest.as_str()).unwrap_err(),
        "b",
        digest.as_str()
    ));
}

#[test]
fn p6_a_pull_after_reopening_returns_the_same_manifest() {
    let store = Store::new();
    let (digest, pulled) = {
        let repo = store.repo("app");
        let digest = push_image(&repo, "v1", "x");
        (digest, repo.pull("v1").unwrap())
    };
    let store = store.reopen();
    let repo = store.repo("app");
    assert_eq!(repo.pull("v1").unwrap(), pulled);
    assert_eq!(repo.pull(digest.as_str()).unwrap(), pulled);
}

// ---------------------------------------------------------------------------------------------
// P7 — listings
// ---------------------------------------------------------------------------------------------

#[test]
fn p7_repositories_are_listed_in_lexical_order() {
    let store = Store::new();
    let names = [
        "b", "a_b", "ab", "a/b", "a", "a-b", "a.b", "0", "z/a", "a0", "a/a", "a__b",
    ];
    for name in names {
        store.repo(name).put_blob_sha256(name).unwrap();
    }
    assert_eq!(
        store.registry.repositories(&Page::all()).unwrap(),
        [
            "0", "a", "a-b", "a.b", "a/a", "a/b", "a0", "a__b", "a_b", "ab", "b", "z/a"
        ]
    );
}

/// Walks a listing page by page with `Page::first(n)` and `Page::after(last, n)`.
fn walk<T>(n: usize, list: impl Fn(&Page) -> Vec<T>, key: impl Fn(&T) -> String) -> Vec<Vec<T>> {
    let mut pages = Vec::new();
    let mut page = Page::first(n);
    loop {
        let got = list(&page);
        assert!(got.len() <= n);
        let Some(last) = got.last() else { break };
        page = Page::after(key(last), n);
        pages.push(got);
    }
    pages
}

#[test]
fn p7_repositories_paginate_page_by_page() {
    let store = Store::new();
    // 25 names, created in an order that is not the listing order.
    let mut names: Vec<String> = (0..25)
        .map(|i| format!("team{}/app{}", (i * 7) % 5, (i * 11) % 25))
        .collect();
    for name in &names {
        store.repo(name).put_blob_sha256(name).unwrap();
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 25);
    let registry = &store.registry;
    let pages = walk(4, |p| registry.repositories(p).unwrap(), String::clone);
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [4, 4, 4, 4, 4, 4, 1]);
    assert_eq!(pages.concat(), names);
    // The cursor need not be a listed name; `n` alone, `last` alone, and n = 0.
    assert_eq!(
        registry.repositories(&Page::after("team2", 3)).unwrap(),
        names[10..13]
    );
    assert_eq!(registry.repositories(&Page::first(25)).unwrap(), names);
    assert_eq!(registry.repositories(&Page::first(100)).unwrap(), names);
    assert!(registry.repositories(&Page::first(0)).unwrap().is_empty());
    let tail = Page {
        n: None,
        last: Some(names[20].clone()),
    };
    assert_eq!(registry.repositories(&tail).unwrap(), names[21..]);
    assert!(
        registry
            .repositories(&Page::after(names[24].clone(), 5))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn p7_a_repository_is_listed_once_something_is_put_into_it() {
    let store = Store::new();
    let registry = &store.registry;
    let a = store.repo("a");
    let _handle_only = store.repo("handle");
    let upload = store.repo("upload").start_upload().unwrap();
    upload.append(b"pending").unwrap();
    assert!(registry.repositories(&Page::all()).unwrap().is_empty());
    let digest = a.put_blob_sha256(b"x").unwrap();
    store.repo("mounted").mount_blob("a", &digest).unwrap();
    push_image(&store.repo("pushed"), "v1", "p");
    upload.finish(&sha256(b"pending")).unwrap();
    assert_eq!(
        registry.repositories(&Page::all()).unwrap(),
        ["a", "mounted", "pushed", "upload"]
    );
}

#[test]
fn p7_tags_are_listed_in_lexical_order_and_paginate() {
    let store = Store::new();
    let repo = store.repo("app");
    // Neighbouring repositories whose tags must not leak into the listing.
    push_image(&store.repo("ap"), "zzz", "ap");
    push_image(&store.repo("app-x"), "000", "app-x");
    push_image(&store.repo("app/sub"), "aaa", "app/sub");
    let digest = push_image(&repo, "latest", "app");
    let mut tags: Vec<String> = vec![
        "latest".into(),
        "Latest".into(),
        "_x".into(),
        "v1.0".into(),
        "v1-0".into(),
        "v1_0".into(),
        "v10".into(),
        "V2".into(),
        "1".into(),
        "10".into(),
        "2".into(),
    ];
    tags.extend((0..14).map(|i| format!("build-{:02}", (i * 5) % 14)));
    for (i, tag) in tags.iter().enumerate().skip(1) {
        store.advance(1);
        repo.tag(tag, &digest)
            .unwrap_or_else(|e| panic!("{i} {tag}: {e}"));
    }
    assert_eq!(tags.len(), 25);
    let mut expected = tags.clone();
    expected.sort();
    // Byte order: digits, then upper case, then `_`, then lower case.
    assert_eq!(&expected[..6], ["1", "10", "2", "Latest", "V2", "_x"]);
    assert_eq!(tag_names(&repo, &Page::all()), expected);

    let pages = walk(6, |p| repo.tags(p).unwrap(), |t| t.name.clone());
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [6, 6, 6, 6, 1]);
    let listed: Vec<String> = pages.concat().into_iter().map(|t| t.name).collect();
    assert_eq!(listed, expected);
    for tag in pages.concat() {
        assert_eq!(tag.digest, digest);
        let pos = tags.iter().position(|t| *t == tag.name).unwrap();
        assert_eq!(tag.updated, at(pos as u64), "{}", tag.name);
    }
    assert_eq!(tag_names(&repo, &Page::after("V", 2)), ["V2", "_x"]);
    assert!(tag_names(&repo, &Page::first(0)).is_empty());
    assert!(tag_names(&repo, &Page::after("v1_0", 3)).is_empty());
    assert!(tag_names(&store.repo("empty"), &Page::all()).is_empty());
}

/// Pushes three untagged manifests ten seconds apart, at 0 s, 10 s and 20 s.
fn three_manifests(store: &Store, repo: &Repository) -> [Digest; 3] {
    let m1 = push_untagged(repo, "m1");
    store.advance(10);
    let m2 = push_untagged(repo, "m2");
    store.advance(10);
    let m3 = push_untagged(repo, "m3");
    [m1, m2, m3]
}

#[test]
fn p7_manifests_are_ordered_by_last_update() {
    let store = Store::new();
    let repo = store.repo("app");
    let [m1, m2, m3] = three_manifests(&store, &repo);
    let asc = repo.manifests(&ManifestQuery::default()).unwrap();
    assert_eq!(digests(&asc), [m1.clone(), m2.clone(), m3.clone()]);
    let times: Vec<(Timestamp, Timestamp)> = asc.iter().map(|m| (m.created, m.updated)).collect();
    assert_eq!(times, [(at(0), at(0)), (at(10), at(10)), (at(20), at(20))]);
    let desc = ManifestQuery::default().descending(true);
    assert_eq!(
        digests(&repo.manifests(&desc).unwrap()),
        [m3.clone(), m2.clone(), m1.clone()]
    );
    // Tagging is an update: m1 moves to the end, keeping its creation time.
    store.advance(10);
    repo.tag("now", &m1).unwrap();
    let asc = repo.manifests(&ManifestQuery::default()).unwrap();
    assert_eq!(digests(&asc), [m2.clone(), m3.clone(), m1.clone()]);
    assert_eq!((asc[2].created, asc[2].updated), (at(0), at(30)));
    // So is pushing the same bytes again.
    store.advance(10);
    let body = repo.pull(m2.as_str()).unwrap().body;
    repo.push_manifest(m2.as_str(), OCI_MANIFEST, &body)
        .unwrap();
    assert_eq!(
        digests(&repo.manifests(&desc).unwrap()),
        [m2.clone(), m1.clone(), m3.clone()]
    );
    // And so is a tag leaving a manifest: moving `now` from m1 to m3 updates both.
    store.advance(10);
    repo.tag("now", &m3).unwrap();
    let asc = repo.manifests(&ManifestQuery::default()).unwrap();
    assert_eq!(asc[0].digest, m2);
    let mut last_two = digests(&asc[1..]);
    last_two.sort();
    let mut expected = vec![m1, m3];
    expected.sort();
    assert_eq!(last_two, expected);
    assert_eq!((asc[1].updated, asc[2].updated), (at(50), at(50)));
}

#[test]
fn p7_updated_before_is_a_strict_bound() {
    let store = Store::new();
    let repo = store.repo("app");
    let [m1, m2, m3] = three_manifests(&store, &repo);
    let before = |t: Timestamp, descending: bool| {
        digests(
            &repo
                .manifests(
                    &ManifestQuery::default()
                        .updated_before(t)
                        .descending(descending),
                )
                .unwrap(),
        )
    };
    assert!(before(at(0), false).is_empty());
    assert_eq!(before(at(10), false), std::slice::from_ref(&m1));
    let just_after_10 = Timestamp::from_nanos(at(10).as_nanos() + 1);
    assert_eq!(before(just_after_10, false), [m1.clone(), m2.clone()]);
    assert_eq!(before(just_after_10, true), [m2.clone(), m1.clone()]);
    assert_eq!(before(at(21), true), [m3, m2, m1]);
    assert!(before(Timestamp::EPOCH, true).is_empty());
}

#[test]
fn p7_the_untagged_filter_lists_manifests_no_tag_points_at() {
    let store = Store::new();
    let repo = store.repo("app");
    let tagged = push_image(&repo, "keep", "tagged");
    store.advance(1);
    let never_tagged = push_untagged(&repo, "never");
    store.advance(1);
    let left = push_image(&repo, "moving", "left");
    store.advance(1);
    let arrived = push_image(&repo, "moving", "arrived");
    let query = |descending| {
        ManifestQuery::default()
            .untagged(true)
            .descending(descending)
    };
    assert_eq!(
        digests(&repo.manifests(&query(false)).unwrap()),
        [never_tagged.clone(), left.clone()]
    );
    assert_eq!(
        digests(&repo.manifests(&query(true)).unwrap()),
        [left.clone(), never_tagged.clone()]
    );
    // The tag leaving `left` updated it at the time `arrived` was pushed.
    let all = repo.manifests(&ManifestQuery::default()).unwrap();
    assert_eq!(digests(&all[..2]), [tagged, never_tagged.clone()]);
    let (l, a) = if all[2].digest == left {
        (&all[2], &all[3])
    } else {
        (&all[3], &all[2])
    };
    assert_eq!(
        (&l.digest, l.updated, &a.digest, a.updated),
        (&left, at(3), &arrived, at(3))
    );
    // Combined with a time bound.
    let bounded = ManifestQuery::default()
        .untagged(true)
        .updated_before(at(2));
    assert_eq!(digests(&repo.manifests(&bounded).unwrap()), [never_tagged]);
}

#[test]
fn p7_limit_caps_the_listing_after_filtering() {
    let store = Store::new();
    let repo = store.repo("app");
    let [m1, m2, m3] = three_manifests(&store, &repo);
    store.advance(10);
    let m4 = push_image(&repo, "tagged", "m4");
    store.advance(10);
    let m5 = push_untagged(&repo, "m5");
    let q = |limit, descending, untagged| {
        ManifestQuery::default()
            .limit(limit)
            .descending(descending)
            .untagged(untagged)
    };
    let list = |q: ManifestQuery| digests(&repo.manifests(&q).unwrap());
    assert_eq!(list(q(2, false, false)), [m1.clone(), m2.clone()]);
    assert_eq!(list(q(2, true, false)), [m5.clone(), m4.clone()]);
    assert_eq!(list(q(2, true, true)), [m5.clone(), m3.clone()]);
    assert_eq!(
        list(q(4, true, true)),
        [m5.clone(), m3.clone(), m2.clone(), m1.clone()]
    );
    assert_eq!(list(q(10, false, false)), [m1, m2, m3, m4, m5]);
    assert!(list(q(0, false, false)).is_empty());
}

#[test]
fn p7_manifest_metadata_carries_digest_type_size_tags_and_times() {
    let store = Store::new();
    let repo = store.repo("app");
    let config = put(&repo, b"config");
    let layer = put(&repo, b"layer");
    let mut body = image_body(&config, std::slice::from_ref(&layer));
    body["annotations"] = json!({"org.opencontainers.image.version": "1.0"});
    body["artifactType"] = json!("application/vnd.example.thing");
    let body = to_bytes(&body);
    store.advance(3);
    let digest = repo.push_manifest("b", OCI_MANIFEST, &body).unwrap().digest;
    store.advance(4);
    repo.tag("a", &digest).unwrap();
    let listed = repo.manifests(&ManifestQuery::default()).unwrap();
    assert_eq!(listed.len(), 1);
    let m = &listed[0];
    assert_eq!(*m, repo.manifest("a").unwrap());
    assert_eq!(m.digest, digest);
    assert_eq!(m.media_type, OCI_MANIFEST);
    assert_eq!(m.size, body.len() as u64);
    assert_eq!(m.tags, ["a", "b"]);
    assert_eq!((m.created, m.updated), (at(3), at(7)));
    assert_eq!(
        m.artifact_type.as_deref(),
        Some("application/vnd.example.thing")
    );
    assert_eq!(m.subject, None);
    assert_eq!(
        m.annotations,
        BTreeMap::from([(
            "org.opencontainers.image.version".to_owned(),
            "1.0".to_owned()
        )])
    );
    let refs: Vec<(&str, &Digest, u64)> = m
        .references
        .iter()
        .map(|d| (d.media_type.as_str(), &d.digest, d.size))
        .collect();
    assert_eq!(
        refs,
        [
            (CONFIG_TYPE, &config.0, config.1),
            (common::LAYER_TYPE, &layer.0, layer.1)
        ]
    );
    assert!(
        store
            .repo("empty")
            .manifests(&ManifestQuery::default())
            .unwrap()
            .is_empty()
    );
}

// ---------------------------------------------------------------------------------------------
// P8 — referrers
// ---------------------------------------------------------------------------------------------

const SBOM: &str = "application/vnd.example.sbom.v1+json";
const SIG_CONFIG: &str = "application/vnd.example.signature.config.v1+json";
const BUNDLE: &str = "application/vnd.example.bundle.v1";
const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";

struct Referrers {
    subject: Digest,
    sbom: Descriptor,
    signature: Descriptor,
    bundle: Descriptor,
}

/// A subject with three referrers: an SBOM (artifactType, empty config), a signature (no
/// artifactType, a typed config) and an index with an artifactType; plus a manifest referring
/// to another subject.
fn referrers_fixture(store: &Store) -> Referrers {
    let repo = store.repo("app");
    let subject = push_image(&repo, "v1", "subject");
    let annotations =
        |seed: &str| BTreeMap::from([("org.example.seed".to_owned(), seed.to_owned())]);

    let body = referrer_body(&repo, &subject, Some(SBOM), EMPTY_CONFIG, "sbom");
    let pushed = repo
        .push_manifest(sha256(&body).as_str(), OCI_MANIFEST, &body)
        .unwrap();
    let mut sbom = Descriptor::new(OCI_MANIFEST, pushed.digest, body.len() as u64);
    sbom.artifact_type = Some(SBOM.into());
    sbom.annotations = annotations("sbom");
    let body = referrer_body(&repo, &subject, None, SIG_CONFIG, "signature");
    let pushed = repo
        .push_manifest(sha256(&body).as_str(), OCI_MANIFEST, &body)
        .unwrap();
    let mut signature = Descriptor::new(OCI_MANIFEST, pushed.digest, body.len() as u64);
    signature.artifact_type = Some(SIG_CONFIG.into());
    signature.annotations = annotations("signature");
    let body = to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "artifactType": BUNDLE,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sbom.digest, "size": sbom.size}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1},
    }));
    let pushed = repo
        .push_manifest(sha256(&body).as_str(), OCI_INDEX, &body)
        .unwrap();
    let mut bundle = Descriptor::new(OCI_INDEX, pushed.digest, body.len() as u64);
    bundle.artifact_type = Some(BUNDLE.into());
    // Refers to the SBOM, not to the subject.
    let body = referrer_body(&repo, &sbom.digest, Some(SBOM), EMPTY_CONFIG, "nested");
    repo.push_manifest("nested", OCI_MANIFEST, &body).unwrap();
    Referrers {
        subject,
        sbom,
        signature,
        bundle,
    }
}

fn sorted(mut v: Vec<Descriptor>) -> Vec<Descriptor> {
    v.sort_by(|a, b| a.digest.cmp(&b.digest));
    v
}

#[test]
fn p8_referrers_are_descriptors_of_the_manifests_naming_the_subject() {
    let store = Store::new();
    let r = referrers_fixture(&store);
    let repo = store.repo("app");
    let listed = repo.referrers(&r.subject, None).unwrap();
    assert_eq!(
        sorted(listed.clone()),
        sorted(vec![r.sbom.clone(), r.signature.clone(), r.bundle.clone()])
    );
    // Each referrer is listed once, even when pushed again.
    let body = repo.pull(r.sbom.digest.as_str()).unwrap().body;
    repo.push_manifest("again", OCI_MANIFEST, &body).unwrap();
    assert_eq!(repo.referrers(&r.subject, None).unwrap().len(), 3);
}

#[test]
fn p8_the_artifact_type_filter_falls_back_to_the_config_media_type() {
    let store = Store::new();
    let r = referrers_fixture(&store);
    let repo = store.repo("app");
    assert_eq!(repo.referrers(&r.subject, Some(SBOM)).unwrap(), [r.sbom]);
    assert_eq!(
        repo.referrers(&r.subject, Some(BUNDLE)).unwrap(),
        [r.bundle]
    );
    // No artifactType: the config media type stands in.
    assert_eq!(
        repo.referrers(&r.subject, Some(SIG_CONFIG)).unwrap(),
        [r.signature]
    );
    // An artifactType hides the config media type.
    assert!(
        repo.referrers(&r.subject, Some(EMPTY_CONFIG))
            .unwrap()
            .is_empty()
    );
    assert!(
        repo.referrers(&r.subject, Some("application/vnd.other"))
            .unwrap()
            .is_empty()
    );
    assert!(repo.referrers(&r.subject, Some("")).unwrap().is_empty());
}

#[test]
fn p8_referrers_of_a_digest_with_none_are_empty() {
    let store = Store::new();
    let r = referrers_fixture(&store);
    let repo = store.repo("app");
    let plain = push_image(&repo, "plain", "plain");
    assert!(repo.referrers(&plain, None).unwrap().is_empty());
    assert!(
        repo.referrers(&r.signature.digest, None)
            .unwrap()
            .is_empty()
    );
    assert!(
        repo.referrers(&sha256(b"nothing at all"), None)
            .unwrap()
            .is_empty()
    );
    assert!(
        repo.referrers(&Algorithm::Sha512.digest(b"nothing"), Some(SBOM))
            .unwrap()
            .is_empty()
    );
    // The SBOM has one referrer of its own.
    assert_eq!(repo.referrers(&r.sbom.digest, None).unwrap().len(), 1);
}

#[test]
fn p8_referrers_are_listed_per_repository() {
    let store = Store::new();
    let r = referrers_fixture(&store);
    let other = store.repo("other");
    let body = referrer_body(&other, &r.subject, Some(SBOM), EMPTY_CONFIG, "other");
    let digest = other
        .push_manifest("sbom", OCI_MANIFEST, &body)
        .unwrap()
        .digest;
    let in_other: Vec<Digest> = other
        .referrers(&r.subject, None)
        .unwrap()
        .into_iter()
        .map(|d| d.digest)
        .collect();
    assert_eq!(in_other, std::slice::from_ref(&digest));
    let in_app = store.repo("app").referrers(&r.subject, None).unwrap();
    assert_eq!(in_app.len(), 3);
    assert!(in_app.iter().all(|d| d.digest != digest));
}

// ---------------------------------------------------------------------------------------------
// What a push reports
// ---------------------------------------------------------------------------------------------

#[test]
fn p3_p5_p8_a_push_reports_whether_it_was_new_its_subject_and_where_the_tag_was() {
    let s = Store::new();
    let repo = s.repo("app");
    let first = upload_image(&repo, b"config one", &[b"layer one"]);
    let second = upload_image(&repo, b"config two", &[b"layer two"]);

    let pushed = repo.push_manifest("v1", OCI_MANIFEST, &first).unwrap();
    assert_eq!(pushed.digest, sha256(&first));
    assert!(pushed.created, "{pushed:?}");
    assert_eq!((pushed.subject, pushed.previous), (None, None));

    // The same push again: stored already, the tag was already there.
    let again = repo.push_manifest("v1", OCI_MANIFEST, &first).unwrap();
    assert!(!again.created, "{again:?}");
    assert_eq!(again.previous, Some(sha256(&first)));

    // The tag moves: the push names the manifest it left.
    let moved = repo.push_manifest("v1", OCI_MANIFEST, &second).unwrap();
    assert!(moved.created, "{moved:?}");
    assert_eq!(moved.previous, Some(sha256(&first)));
    assert_eq!(repo.resolve("v1").unwrap(), sha256(&second));

    // By digest: no tag, so no previous target, even for a manifest stored already.
    let by_digest = repo
        .push_manifest(sha256(&first).as_str(), OCI_MANIFEST, &first)
        .unwrap();
    assert_eq!((by_digest.created, by_digest.previous), (false, None));

    // A referrer names its subject, whether or not the subject exists (P8).
    let config = put(&repo, b"{}");
    let absent = sha256(b"a subject never pushed");
    for subject in [sha256(&second), absent] {
        let mut body = image_body(&config, &[]);
        body["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": subject, "size": 10});
        let pushed = repo
            .push_manifest("sig", OCI_MANIFEST, &to_bytes(&body))
            .unwrap();
        assert_eq!(pushed.subject, Some(subject));
    }

    // A batch reports the same.
    let third = upload_image(&repo, b"config three", &[b"layer three"]);
    let in_batch = s
        .registry
        .batch(|b| b.push_manifest(&repo, "v1", OCI_MANIFEST, &third))
        .unwrap();
    assert!(in_batch.created);
    assert_eq!(in_batch.previous, Some(sha256(&second)));
}
