//! SPEC N5 applied call by call: every public call of the crate, given bad input, fails with the
//! exact typed error naming what was wrong, writes nothing (the store's `snapshot` is
//! byte-identical before and after) and does not panic. Also C1 for a batch whose third of
//! four calls fails.

mod common;

use std::ops::Bound;
use std::time::Duration;

use common::{
    CONFIG_TYPE, START, Store, image_body, index_body, push_image, snapshot, upload_image,
};
use ocistore::manifest::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, MAX_MANIFEST_SIZE, OCI_INDEX, OCI_MANIFEST,
};
use ocistore::{
    Algorithm, Digest, ManifestKind, ManifestQuery, ManualClock, Page, Reference, Registry,
    Repository, Timestamp,
};
use serde_json::json;

/// Runs `$call` between two snapshots of `$registry`: the call must fail with an error matching
/// `$pattern` and the snapshots must be byte-identical.
macro_rules! refused {
    ($registry:expr, $call:expr, $pattern:pat $(if $guard:expr)? $(,)?) => {{
        let registry: &Registry = $registry;
        let before = snapshot(registry);
        let result = $call;
        let after = snapshot(registry);
        match result {
            Err($pattern) $(if $guard)? => {}
            other => panic!(
                "`{}`: expected Err({}), got {:?}",
                stringify!($call),
                stringify!($pattern),
                other
            ),
        }
        assert_same(&before, &after, stringify!($call));
    }};
}

/// Runs `$call` between two snapshots: it must succeed and change nothing; gives its value.
macro_rules! harmless {
    ($registry:expr, $call:expr $(,)?) => {{
        let registry: &Registry = $registry;
        let before = snapshot(registry);
        let value = $call.unwrap_or_else(|e| panic!("`{}`: {e:?}", stringify!($call)));
        assert_same(&before, &snapshot(registry), stringify!($call));
        value
    }};
}

/// Fails, showing only the lines that differ, unless two snapshots are byte-identical.
#[track_caller]
fn assert_same(before: &str, after: &str, what: &str) {
    if before != after {
        let gone: Vec<_> = before
            .lines()
            .filter(|l| !after.lines().any(|a| a == *l))
            .collect();
        let new: Vec<_> = after
            .lines()
            .filter(|l| !before.lines().any(|b| b == *l))
            .collect();
        panic!("`{what}` changed the store:\n  gone: {gone:#?}\n  new: {new:#?}");
    }
}

/// A store holding two repositories with blobs, manifests, tags, a referrer and an open
/// upload session, so that a stray write anywhere shows in the snapshot.
struct Fixture {
    store: Store,
    app: Repository,
    other: Repository,
    /// A fresh repository name: nothing in it, so a stray write would create it.
    fresh: Repository,
    config: (Digest, u64),
    layer: (Digest, u64),
    layer_bytes: Vec<u8>,
    /// Linked only into `other`.
    foreign_blob: Digest,
    /// Tagged `v1` in `app`.
    image: Digest,
    image_size: u64,
    /// A manifest of `other` only.
    foreign_image: Digest,
    /// An open session of `app` holding `b"12345"`.
    upload_id: String,
}

fn fixture() -> Fixture {
    let store = Store::new();
    let app = store.repo("team/app");
    let other = store.repo("team/other");
    let fresh = store.repo("fresh/repo");
    let config_bytes = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer_bytes = b"layer bytes 0123456789".to_vec();
    let config = (
        app.put_blob_sha256(config_bytes).unwrap(),
        config_bytes.len() as u64,
    );
    let layer = (
        app.put_blob_sha256(&layer_bytes).unwrap(),
        layer_bytes.len() as u64,
    );
    let body = serde_json::to_vec(&image_body(&config, std::slice::from_ref(&layer))).unwrap();
    let image = app.push_manifest("v1", OCI_MANIFEST, &body).unwrap().digest;
    let index = serde_json::to_vec(&index_body(&[(image.clone(), body.len() as u64)])).unwrap();
    app.push_manifest("multi", OCI_INDEX, &index).unwrap();
    let referrer = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": CONFIG_TYPE, "digest": config.0, "size": config.1},
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": image, "size": body.len()},
    });
    let referrer = serde_json::to_vec(&referrer).unwrap();
    let referrer_digest = Algorithm::Sha256.digest(&referrer);
    app.push_manifest(referrer_digest.as_str(), OCI_MANIFEST, &referrer)
        .unwrap();
    let foreign_image = push_image(&other, "v1", "foreign");
    let foreign_blob = other.put_blob_sha256(b"only in other").unwrap();
    let upload = app.start_upload().unwrap();
    upload.append(b"12345").unwrap();
    let upload_id = upload.id().to_owned();
    store.advance(60);
    Fixture {
        app,
        other,
        fresh,
        config,
        layer,
        layer_bytes,
        foreign_blob,
        image,
        image_size: body.len() as u64,
        foreign_image,
        upload_id,
        store,
    }
}

fn sha256(bytes: &[u8]) -> Digest {
    Algorithm::Sha256.digest(bytes)
}

fn to_vec(value: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Registry

#[test]
fn n5_open_refuses_an_upload_timeout_under_one_second_before_creating_anything() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("store");
    for timeout in [Duration::ZERO, Duration::from_millis(999)] {
        let err = Registry::builder()
            .upload_timeout(timeout)
            .open(&target)
            .unwrap_err();
        assert!(
            matches!(
                err,
                ocistore::Error::InvalidSetting {
                    setting: "upload_timeout",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!target.exists(), "a refused open created {target:?}");
    }
    // One second is the smallest accepted.
    Registry::builder()
        .upload_timeout(Duration::from_secs(1))
        .open(&target)
        .unwrap();
}

#[test]
fn n5_open_of_an_open_store_is_refused_and_touches_nothing() {
    let fx = fixture();
    let reg = &fx.store.registry;
    // Leftovers an open at this point would clean up if it went on: the stray files belong to
    // the live handle (a write in progress), so a refused open must leave them.
    std::fs::write(reg.path().join("tmp/in-progress"), b"half a blob").unwrap();
    std::fs::write(reg.path().join("uploads/not-yet-committed"), b"chunk").unwrap();
    refused!(
        reg,
        Registry::open(reg.path()),
        ocistore::Error::AlreadyOpen { path, held_by: ocistore::OpenMode::Exclusive } if path == reg.path()
    );
    refused!(
        reg,
        Registry::builder()
            .clock(ManualClock::new(START))
            .open(reg.path()),
        ocistore::Error::AlreadyOpen { path, held_by: ocistore::OpenMode::Exclusive } if path == reg.path()
    );
    // The setting is checked first: an invalid one is named even when the store is open.
    refused!(
        reg,
        Registry::builder()
            .upload_timeout(Duration::ZERO)
            .open(reg.path()),
        ocistore::Error::InvalidSetting {
            setting: "upload_timeout",
            ..
        }
    );
    // The live handle still works.
    assert_eq!(fx.app.resolve("v1").unwrap(), fx.image);
}

/// Walks the error's chain: no message repeats the one of its source, so a report printing the
/// whole chain shows each cause once.
fn assert_chain_repeats_nothing(err: &ocistore::Error) {
    let mut current: &dyn std::error::Error = err;
    while let Some(source) = current.source() {
        let (outer, inner) = (current.to_string(), source.to_string());
        assert!(
            !inner.is_empty() && !outer.contains(&inner),
            "{outer:?} repeats its source {inner:?}"
        );
        current = source;
    }
}

#[test]
fn n5_open_of_a_path_that_is_a_file_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let err = Registry::open(&file).unwrap_err();
    assert!(
        matches!(&err, ocistore::Error::Io { path, .. } if path == &file),
        "{err:?}"
    );
    assert!(std::error::Error::source(&err).is_some(), "{err:?}");
    assert_chain_repeats_nothing(&err);
    assert_eq!(std::fs::read(&file).unwrap(), b"not a directory");
    let below = file.join("store");
    let err = Registry::open(&below).unwrap_err();
    assert!(matches!(&err, ocistore::Error::Io { .. }), "{err:?}");
    assert_eq!(std::fs::read(&file).unwrap(), b"not a directory");
}

#[test]
fn n5_open_of_a_database_file_that_is_not_redb_fails_and_leaves_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    let garbage: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(dir.path().join("metadata.redb"), &garbage).unwrap();
    let err = Registry::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            ocistore::Error::Database(_) | ocistore::Error::Corrupt { .. }
        ),
        "{err:?}"
    );
    assert_chain_repeats_nothing(&err);
    assert_eq!(
        std::fs::read(dir.path().join("metadata.redb")).unwrap(),
        garbage
    );
}

#[test]
fn n5_open_with_a_tiny_cache_does_not_panic() {
    for bytes in [0, 1, 4096] {
        let dir = tempfile::tempdir().unwrap();
        match Registry::builder().cache_size(bytes).open(dir.path()) {
            Ok(registry) => {
                let repo = registry.repository("app").unwrap();
                let digest = repo.put_blob_sha256(b"works").unwrap();
                assert_eq!(repo.blob(&digest).unwrap(), &b"works"[..]);
            }
            Err(e) => assert!(
                matches!(
                    e,
                    ocistore::Error::InvalidSetting {
                        setting: "cache_size",
                        ..
                    }
                ),
                "{e:?}"
            ),
        }
    }
}

const BAD_NAMES: &[&str] = &[
    "",
    "Team/app",
    "team/App",
    "team//app",
    "/team",
    "team/",
    "-team",
    "team-",
    "team.",
    ".team",
    "team..app",
    "team___app",
    "team_-app",
    "team app",
    "team/app:latest",
    "team/app@sha256",
    "tëam",
    "team\0app",
    "team\\app",
];

#[test]
fn n5_repository_refuses_names_outside_the_grammar() {
    let fx = fixture();
    let reg = &fx.store.registry;
    for &bad in BAD_NAMES {
        refused!(
            reg,
            reg.repository(bad),
            ocistore::Error::InvalidRepositoryName { name, reason }
                if name == bad && !reason.is_empty()
        );
    }
    let long = "a".repeat(256);
    refused!(
        reg,
        reg.repository(&long),
        ocistore::Error::InvalidRepositoryName { name, reason }
            if name == long && reason.contains("255")
    );
    let long_components = format!("{}/{}", "a".repeat(127), "b".repeat(128));
    refused!(
        reg,
        reg.repository(&long_components),
        ocistore::Error::InvalidRepositoryName { name, .. } if name == long_components
    );
    // The boundaries are accepted, and getting a handle writes nothing.
    for good in [
        "a".repeat(255),
        "a__b".into(),
        "a--b".into(),
        "a.b_c-d/e0".into(),
    ] {
        harmless!(reg, reg.repository(&good));
    }
}

#[test]
fn n5_repositories_refuses_a_cursor_that_is_not_a_name() {
    let fx = fixture();
    let reg = &fx.store.registry;
    for &bad in &BAD_NAMES[1..] {
        refused!(
            reg,
            reg.repositories(&Page::after(bad, 10)),
            ocistore::Error::InvalidRepositoryName { name, .. } if name == bad
        );
    }
    let long = "z".repeat(256);
    refused!(
        reg,
        reg.repositories(&Page::after(long.as_str(), 10)),
        ocistore::Error::InvalidRepositoryName { name, .. } if name == long
    );
    // A valid cursor that names no repository, and n = 0, are fine.
    assert_eq!(
        harmless!(reg, reg.repositories(&Page::after("team/aaa", 10))),
        ["team/app", "team/other"]
    );
    assert!(harmless!(reg, reg.repositories(&Page::first(0))).is_empty());
}

#[test]
fn n5_digest_and_reference_parsing_name_what_is_wrong() {
    let fx = fixture();
    let reg = &fx.store.registry;
    let hex64 = "a".repeat(64);
    let bad_digests = [
        String::new(),
        "sha256".into(),
        format!("sha256{hex64}"),
        format!("sha256:{}", "a".repeat(63)),
        format!("sha256:{}", "a".repeat(65)),
        format!("sha256:{}", "A".repeat(64)),
        format!("sha256:{}g", "a".repeat(63)),
        format!("sha512:{hex64}"),
        format!("blake3:{}", "a".repeat(128)),
        format!("SHA256:{hex64}"),
        format!("md5:{}", "a".repeat(32)),
        format!("sha1:{}", "a".repeat(40)),
        format!(":{hex64}"),
        format!("sha256: {}", "a".repeat(63)),
        format!("sha256:{hex64}\n"),
    ];
    for bad in &bad_digests {
        refused!(
            reg,
            Digest::parse(bad),
            ocistore::Error::InvalidDigest { digest, reason } if &digest == bad && !reason.is_empty()
        );
        refused!(
            reg,
            bad.parse::<Digest>(),
            ocistore::Error::InvalidDigest { digest, .. } if &digest == bad
        );
    }
    for bad in bad_digests.iter().filter(|d| d.contains(':')) {
        refused!(
            reg,
            Reference::parse(bad),
            ocistore::Error::InvalidReference { reference, .. } if &reference == bad
        );
    }
    for bad in ["", "-v1", ".v1", "v 1", "v1/x", "ü", &"a".repeat(129)] {
        refused!(
            reg,
            Reference::parse(bad),
            ocistore::Error::InvalidReference { reference, .. } if reference == bad
        );
    }
    for bad in ["application/json", "text/plain", ""] {
        refused!(
            reg,
            ManifestKind::of_media_type(bad),
            ocistore::Error::UnsupportedMediaType { media_type, .. } if media_type == bad
        );
    }
    // Each algorithm's exact length is accepted.
    for alg in Algorithm::ALL {
        let good = format!("{alg}:{}", "0".repeat(alg.hex_len()));
        harmless!(reg, Digest::parse(&good));
    }
}

// ---------------------------------------------------------------------------------------------
// Blobs

#[test]
fn n5_put_blob_with_bytes_that_do_not_hash_to_the_digest_stores_nothing() {
    let fx = fixture();
    let reg = &fx.store.registry;
    for alg in Algorithm::ALL {
        let claimed = alg.digest(b"claimed bytes");
        refused!(
            reg,
            fx.app.put_blob(&claimed, b"other bytes"),
            ocistore::Error::DigestMismatch { expected, actual }
                if expected == claimed && actual == alg.digest(b"other bytes")
        );
        refused!(
            reg,
            fx.fresh.put_blob(&claimed, b""),
            ocistore::Error::DigestMismatch { expected, actual }
                if expected == claimed && actual == alg.digest(b"")
        );
    }
    // A blob the registry holds already: the bytes received are still verified, and the blob
    // is not linked into the repository.
    refused!(
        reg,
        fx.other.put_blob(&fx.config.0, b"not the config"),
        ocistore::Error::DigestMismatch { expected, .. } if expected == fx.config.0
    );
    refused!(
        reg,
        fx.fresh.put_blob(&fx.layer.0, &fx.layer_bytes[1..]),
        ocistore::Error::DigestMismatch { expected, .. } if expected == fx.layer.0
    );
    // Large enough to be hashed on a second thread while it is written.
    let big = vec![7u8; 3 << 20];
    let claimed = sha256(b"small");
    refused!(
        reg,
        fx.app.put_blob(&claimed, &big),
        ocistore::Error::DigestMismatch { expected, actual }
            if expected == claimed && actual == sha256(&big)
    );
    let claimed = Algorithm::Blake3.digest(b"small");
    refused!(
        reg,
        fx.fresh.put_blob(&claimed, &big),
        ocistore::Error::DigestMismatch { expected, .. } if expected == claimed
    );
}

#[test]
fn n5_mount_blob_refuses_bad_sources_and_unlinked_blobs() {
    let fx = fixture();
    let reg = &fx.store.registry;
    for &bad in BAD_NAMES {
        refused!(
            reg,
            fx.other.mount_blob(bad, &fx.config.0),
            ocistore::Error::InvalidRepositoryName { name, .. } if name == bad
        );
    }
    // The blob exists in the registry but is not linked into the source.
    refused!(
        reg,
        fx.other.mount_blob("team/app", &fx.foreign_blob),
        ocistore::Error::BlobUnknown { repository, digest }
            if repository == "team/app" && digest == fx.foreign_blob
    );
    refused!(
        reg,
        fx.fresh.mount_blob("team/app", &fx.foreign_blob),
        ocistore::Error::BlobUnknown { repository, .. } if repository == "team/app"
    );
    // The source does not exist.
    refused!(
        reg,
        fx.app.mount_blob("nobody/here", &fx.foreign_blob),
        ocistore::Error::BlobUnknown { repository, digest }
            if repository == "nobody/here" && digest == fx.foreign_blob
    );
    // The blob does not exist anywhere.
    let unknown = sha256(b"never stored");
    refused!(
        reg,
        fx.fresh.mount_blob("team/other", &unknown),
        ocistore::Error::BlobUnknown { repository, digest }
            if repository == "team/other" && digest == unknown
    );
    // A repository mounting from itself what it does not have.
    refused!(
        reg,
        fx.app.mount_blob("team/app", &fx.foreign_blob),
        ocistore::Error::BlobUnknown { .. }
    );
    refused!(
        reg,
        fx.fresh.mount_blob("fresh/repo", &fx.config.0),
        ocistore::Error::BlobUnknown { .. }
    );
}

#[test]
fn n5_blob_reads_of_unlinked_blobs_are_blob_unknown() {
    let fx = fixture();
    let reg = &fx.store.registry;
    let unknown = Algorithm::Sha512.digest(b"never stored");
    let cases = [
        (&fx.app, &fx.foreign_blob),
        (&fx.app, &unknown),
        (&fx.fresh, &fx.config.0),
        (&fx.other, &fx.layer.0),
    ];
    for (repo, blob) in cases {
        let expected_repo = repo.name();
        let unknown_here = |e: &ocistore::Error| {
            matches!(e, ocistore::Error::BlobUnknown { repository, digest }
                if repository == expected_repo && digest == blob)
        };
        refused!(reg, repo.blob_size(blob), e if unknown_here(&e));
        refused!(reg, repo.blob(blob), e if unknown_here(&e));
        refused!(reg, repo.blob_reader(blob, ..), e if unknown_here(&e));
        // An unlinked blob is unknown whatever the range, even a bad one.
        refused!(
            reg,
            repo.blob_reader(blob, (Bound::Included(5), Bound::Excluded(2))),
            e if unknown_here(&e)
        );
    }
    // The blob is linked to `other`, and readable there.
    assert_eq!(
        harmless!(reg, fx.other.blob(&fx.foreign_blob)),
        &b"only in other"[..]
    );
}

#[test]
fn n5_blob_reader_refuses_ranges_outside_the_blob() {
    let fx = fixture();
    let reg = &fx.store.registry;
    let size = fx.layer.1;
    let d = &fx.layer.0;
    use Bound::{Excluded, Included, Unbounded};
    type Case = ((Bound<u64>, Bound<u64>), (u64, u64));
    let bad: [Case; 9] = [
        ((Included(5), Excluded(3)), (5, 3)),
        ((Included(5), Included(3)), (5, 4)),
        ((Included(0), Excluded(size + 1)), (0, size + 1)),
        ((Unbounded, Included(size)), (0, size + 1)),
        ((Included(size + 1), Unbounded), (size + 1, size)),
        ((Excluded(size), Unbounded), (size + 1, size)),
        ((Included(0), Included(u64::MAX)), (0, u64::MAX)),
        ((Excluded(u64::MAX), Unbounded), (u64::MAX, size)),
        (
            (Included(u64::MAX), Excluded(u64::MAX)),
            (u64::MAX, u64::MAX),
        ),
    ];
    for (range, (s, e)) in bad {
        refused!(
            reg,
            fx.app.blob_reader(d, range),
            ocistore::Error::InvalidRange { start, end, size: sz }
                if (start, end, sz) == (s, e, size)
        );
    }
    // The edges that fit are accepted and read exactly those bytes.
    let read = |range: (Bound<u64>, Bound<u64>)| {
        let mut r = harmless!(reg, fx.app.blob_reader(d, range));
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut r, &mut buf).unwrap();
        assert_eq!(buf.len() as u64, r.len());
        buf
    };
    assert_eq!(read((Included(size), Excluded(size))), b"");
    assert_eq!(read((Included(0), Excluded(0))), b"");
    assert_eq!(read((Unbounded, Unbounded)), fx.layer_bytes);
    assert_eq!(
        read((Excluded(0), Included(size - 1))),
        &fx.layer_bytes[1..]
    );
    assert_eq!(read((Included(3), Excluded(7))), &fx.layer_bytes[3..7]);
}

#[test]
fn n5_blobs_refuses_a_cursor_that_is_not_a_digest() {
    let fx = fixture();
    let reg = &fx.store.registry;
    for bad in [
        "latest",
        "sha256:abc",
        "sha256:ABCDEF",
        &format!("sha256:{}", "F".repeat(64)),
        &format!("md5:{}", "0".repeat(32)),
    ] {
        refused!(
            reg,
            fx.app.blobs(&Page::after(bad, 5)),
            ocistore::Error::InvalidDigest { digest, .. } if digest == bad
        );
    }
    assert!(harmless!(reg, fx.fresh.blobs(&Page::all())).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Uploads

#[test]
fn n5_resume_upload_of_an_unknown_id_is_upload_unknown() {
    let fx = fixture();
    let reg = &fx.store.registry;
    let upper = fx.upload_id.to_uppercase();
    let longer = format!("{}0", fx.upload_id);
    for bad in [
        "",
        "nope",
        "../metadata.redb",
        "../tmp",
        ".",
        "/etc/passwd",
        upper.as_str(),
        longer.as_str(),
        &fx.upload_id[1..],
    ] {
        refused!(
            reg,
            fx.app.resume_upload(bad),
            ocistore::Error::UploadUnknown { id } if id == bad
        );
    }
    // The real id resumes at its offset.
    assert_eq!(
        harmless!(reg, fx.app.resume_upload(&fx.upload_id)).offset(),
        5
    );
}

#[test]
fn n5_resume_upload_of_another_repositorys_session_after_reopen_is_upload_unknown() {
    let Fixture {
        store, upload_id, ..
    } = fixture();
    let store = store.reopen();
    let reg = &store.registry;
    for name in ["team/other", "fresh/repo", "team/app/sub", "team"] {
        let repo = store.repo(name);
        refused!(
            reg,
            repo.resume_upload(&upload_id),
            ocistore::Error::UploadUnknown { id } if id == upload_id
        );
    }
    assert_eq!(
        harmless!(reg, store.repo("team/app").resume_upload(&upload_id)).offset(),
        5
    );
}

#[test]
fn n5_resume_upload_of_another_repositorys_session_in_the_same_process_is_upload_unknown() {
    let fx = fixture();
    let reg = &fx.store.registry;
    // The session was started in this process, so it is in the in-memory table.
    for repo in [&fx.other, &fx.fresh] {
        refused!(
            reg,
            repo.resume_upload(&fx.upload_id),
            ocistore::Error::UploadUnknown { id } if id == fx.upload_id
        );
    }
}

#[test]
fn n5_a_finished_or_cancelled_upload_refuses_every_call_with_upload_unknown() {
    let fx = fixture();
    let reg = &fx.store.registry;
    let finished = fx.app.start_upload().unwrap();
    finished.append(b"abc").unwrap();
    let twin = fx.app.resume_upload(finished.id()).unwrap();
    let digest = sha256(b"abc");
    finished.finish(&digest).unwrap();

    let cancelled = fx.other.start_upload().unwrap();
    cancelled.append(b"xyz").unwrap();
    cancelled.cancel().unwrap();

    for (upload, repo) in [
        (&finished, &fx.app),
        (&twin, &fx.app),
        (&cancelled, &fx.other),
    ] {
        let gone = upload.id().to_owned();
        let is_gone =
            |e: &ocistore::Error| matches!(e, ocistore::Error::UploadUnknown { id } if *id == gone);
        refused!(reg, upload.append(b"more"), e if is_gone(&e));
        refused!(reg, upload.append(b""), e if is_gone(&e));
        refused!(reg, upload.append_at(3, b"more"), e if is_gone(&e));
        refused!(reg, upload.append_at(0, b"more"), e if is_gone(&e));
        refused!(reg, upload.finish(&digest), e if is_gone(&e));
        refused!(reg, upload.finish(&sha256(b"xyz")), e if is_gone(&e));
        refused!(reg, upload.cancel(), e if is_gone(&e));
        refused!(reg, repo.resume_upload(&gone), e if is_gone(&e));
    }
    assert_eq!(fx.app.blob(&digest).unwrap(), &b"abc"[..]);
    assert!(matches!(
        fx.other.blob(&sha256(b"xyz")),
        Err(ocistore::Error::BlobUnknown { .. })
    ));
}

#[test]
fn n5_append_at_the_wrong_offset_is_refused_with_the_real_offset() {
    let fx = fixture();
    let reg = &fx.store.registry;
    let upload = fx.app.resume_upload(&fx.upload_id).unwrap();
    for wrong in [0, 4, 6, 10, u64::MAX] {
        refused!(
            reg,
            upload.append_at(wrong, b"chunk"),
            ocistore::Error::UploadOffsetMismatch { id, expected, actual }
                if id == fx.upload_id && expected == wrong && actual == 5
        );
    }
    assert_eq!(upload.offset(), 5);
    assert_eq!(upload.append_at(5, b"678").unwrap(), 8);
    refused!(
        reg,
        upload.append_at(5, b"678"),
        ocistore::Error::UploadOffsetMismatch {
            expected: 5,
            actual: 8,
            ..
        }
    );
    upload.finish(&sha256(b"12345678")).unwrap();
    assert_eq!(fx.app.blob(&sha256(b"12345678")).unwrap(), &b"12345678"[..]);
}

#[test]
fn n5_finish_with_the_wrong_digest_stores_nothing_and_keeps_the_session() {
    let fx = fixture();
    let reg = &fx.store.registry;
    let upload = fx.app.resume_upload(&fx.upload_id).unwrap();
    for alg in Algorithm::ALL {
        for claimed in [alg.digest(b"1234"), alg.digest(b"123456"), alg.digest(b"")] {
            refused!(
                reg,
                upload.finish(&claimed),
                ocistore::Error::DigestMismatch { expected, actual }
                    if expected == claimed && actual == alg.digest(b"12345")
            );
        }
    }
    // A digest of a blob the registry holds, for other bytes.
    refused!(
        reg,
        upload.finish(&fx.config.0),
        ocistore::Error::DigestMismatch { expected, .. } if expected == fx.config.0
    );
    // The session is intact: it takes more bytes and finishes under the right digest.
    assert_eq!(upload.offset(), 5);
    upload.append(b"6").unwrap();
    let digest = Algorithm::Sha512.digest(b"123456");
    upload.finish(&digest).unwrap();
    assert_eq!(fx.app.blob(&digest).unwrap(), &b"123456"[..]);
}

#[test]
fn n5_an_expired_upload_session_is_upload_unknown_for_every_call() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let reg = Registry::builder()
        .clock(clock.clone())
        .upload_timeout(Duration::from_secs(60))
        .open(dir.path())
        .unwrap();
    let repo = reg.repository("app").unwrap();
    let upload = repo.start_upload().unwrap();
    upload.append(b"abc").unwrap();
    clock.advance(Duration::from_secs(61));
    let id = upload.id().to_owned();
    let expired =
        |e: &ocistore::Error| matches!(e, ocistore::Error::UploadUnknown { id: i } if *i == id);
    refused!(&reg, upload.append(b"d"), e if expired(&e));
    refused!(&reg, upload.append_at(3, b"d"), e if expired(&e));
    refused!(&reg, upload.finish(&sha256(b"abc")), e if expired(&e));
    refused!(&reg, upload.cancel(), e if expired(&e));
    refused!(&reg, repo.resume_upload(&id), e if expired(&e));
    assert!(matches!(
        repo.blob(&sha256(b"abc")),
        Err(ocistore::Error::BlobUnknown { .. })
    ));
}

#[test]
fn n5_an_upload_session_expires_upload_timeout_after_it_started() {
    // RegistryBuilder::upload_timeout: a session lives that long from its start, in use or not.
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let reg = Registry::builder()
        .clock(clock.clone())
        .upload_timeout(Duration::from_secs(60))
        .open(dir.path())
        .unwrap();
    let repo = reg.repository("app").unwrap();
    let upload = repo.start_upload().unwrap();
    clock.advance(Duration::from_secs(30));
    assert_eq!(upload.append(&[1; 100]).unwrap(), 100);
    clock.advance(Duration::from_secs(30));
    assert_eq!(upload.append(&[2; 100]).unwrap(), 200);
    clock.advance(Duration::from_secs(1));
    let expired = |e: ocistore::Error| matches!(e, ocistore::Error::UploadUnknown { ref id } if id == upload.id());
    assert!(expired(upload.append(&[3; 100]).unwrap_err()));
    assert!(expired(upload.finish(&sha256(&[1; 100])).unwrap_err()));
    assert!(expired(repo.resume_upload(upload.id()).unwrap_err()));
    assert!(repo.blobs(&Page::all()).unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Manifests

#[test]
fn n5_push_manifest_refuses_bad_references() {
    let fx = fixture();
    let reg = &fx.store.registry;
    let body = upload_image(&fx.app, b"cfg", &[b"l1"]);
    for bad in ["", "-v1", ".v1", "v 1", "v1/x", "ü", &"a".repeat(129)] {
        refused!(
            reg,
            fx.app.push_manifest(bad, OCI_MANIFEST, &body),
            ocistore::Error::InvalidReference { reference, .. } if reference == bad
        );
    }
    for bad in [
        "sha256:abc",
        "v1:latest",
        ":",
        &format!("sha256:{}", "A".repeat(64)),
        &format!("SHA256:{}", "a".repeat(64)),
        &format!("sha384:{}", "a".repeat(96)),
    ] {
        refused!(
            reg,
            fx.fresh.push_manifest(bad, OCI_MANIFEST, &body),
            ocistore::Error::InvalidReference { reference, .. } if reference == bad
        );
    }
    // The reference is checked before the body.
    refused!(
        reg,
        fx.app.push_manifest("bad tag", "text/plain", b"not json"),
        ocistore::Error::InvalidReference { .. }
    );
    // A 128-character tag is the longest accepted.
    harmless!(reg, Reference::parse(&"a".repeat(128)));
}

#[test]
fn n5_push_manifest_refuses_bodies_over_4_mib_before_parsing() {
    let fx = fixture();
    let reg = &fx.store.registry;
    let limit = MAX_MANIFEST_SIZE;
    assert_eq!(limit, 4 << 20);
    // A valid manifest padded with JSON whitespace to one byte over the limit.
    let mut body = to_vec(&image_body(&fx.config, std::slice::from_ref(&fx.layer)));
    body.resize(limit as usize + 1, b' ');
    for media_type in [OCI_MANIFEST, "text/plain"] {
        refused!(
            reg,
            fx.app.push_manifest("big", media_type, &body),
            ocistore::Error::ManifestTooLarge { size, limit: l } if size == limit + 1 && l == limit
        );
    }
    let garbage = vec![b'{'; 5 << 20];
    refused!(
        reg,
        fx.fresh.push_manifest("big", OCI_MANIFEST, &garbage),
        ocistore::Error::ManifestTooLarge { size, .. } if size == 5 << 20
    );
    let digest = sha256(&body).to_string();
    refused!(
        reg,
        fx.app.push_manifest(&digest, OCI_MANIFEST, &body),
        ocistore::Error::ManifestTooLarge { .. }
    );
}

#[test]
fn n5_push_manifest_refuses_unsupported_and_mismatched_media_types() {
    let fx = fixture();
    let reg = &fx.store.registry;
    let image = to_vec(&image_body(&fx.config, std::slice::from_ref(&fx.layer)));
    for bad in [
        "application/json",
        "",
        "application/vnd.oci.image.manifest.v1+json; charset=utf-8",
        "APPLICATION/VND.OCI.IMAGE.MANIFEST.V1+JSON",
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    ] {
        refused!(
            reg,
            fx.app.push_manifest("v2", bad, &image),
            ocistore::Error::UnsupportedMediaType { media_type, .. } if media_type == bad
        );
    }
    // Declared one kind, the body says another.
    for (declared, body_type) in [
        (OCI_INDEX, OCI_MANIFEST),
        (DOCKER_MANIFEST, OCI_MANIFEST),
        (DOCKER_MANIFEST_LIST, OCI_MANIFEST),
    ] {
        refused!(
            reg,
            fx.app.push_manifest("v2", declared, &image),
            ocistore::Error::MediaTypeMismatch { declared: d, body }
                if d == declared && body == body_type
        );
    }
    let mut unknown_in_body = image_body(&fx.config, std::slice::from_ref(&fx.layer));
    unknown_in_body["mediaType"] = json!("application/vnd.example+json");
    refused!(
        reg,
        fx.app.push_manifest("v2", OCI_MANIFEST, &to_vec(&unknown_in_body)),
        ocistore::Error::MediaTypeMismatch { declared, body }
            if declared == OCI_MANIFEST && body == "application/vnd.example+json"
    );
    // A Docker schema 1 body is named as such, whatever was declared.
    let schema1_type = "application/vnd.docker.distribution.manifest.v1+prettyjws";
    let schema1 = json!({
        "schemaVersion": 1,
        "mediaType": schema1_type,
        "name": "team/app",
        "tag": "v2",
        "fsLayers": [{"blobSum": fx.layer.0}],
        "history": [],
    });
    refused!(
        reg,
        fx.app.push_manifest("v2", OCI_MANIFEST, &to_vec(&schema1)),
        ocistore::Error::UnsupportedMediaType { media_type, .. } if media_type == schema1_type
    );
    let mut schema1_no_type = schema1.clone();
    schema1_no_type.as_object_mut().unwrap().remove("mediaType");
    refused!(
        reg,
        fx.app
            .push_manifest("v2", DOCKER_MANIFEST, &to_vec(&schema1_no_type)),
        ocistore::Error::UnsupportedMediaType { .. }
    );
}

#[test]
fn n5_push_manifest_refuses_malformed_bodies() {
    let fx = fixture();
    let reg = &fx.store.registry;
    let good = image_body(&fx.config, std::slice::from_ref(&fx.layer));
    let child = (fx.image.clone(), fx.image_size);
    let good_index = index_body(std::slice::from_ref(&child));
    let mut cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("not json", OCI_MANIFEST, b"not json".to_vec()),
        ("empty", OCI_MANIFEST, Vec::new()),
        ("array", OCI_MANIFEST, b"[]".to_vec()),
        ("null", OCI_INDEX, b"null".to_vec()),
        ("truncated", OCI_MANIFEST, to_vec(&good)[..40].to_vec()),
        (
            "trailing",
            OCI_MANIFEST,
            [to_vec(&good), b"}".to_vec()].concat(),
        ),
        ("not utf-8", OCI_MANIFEST, vec![0xff, 0xfe, b'{', b'}']),
    ];
    let mut edit = |name: &'static str,
                    media_type: &'static str,
                    base: &serde_json::Value,
                    f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = base.clone();
        f(&mut v);
        cases.push((name, media_type, to_vec(&v)));
    };
    edit("schemaVersion 3", OCI_MANIFEST, &good, &|v| {
        v["schemaVersion"] = json!(3)
    });
    edit("schemaVersion string", OCI_MANIFEST, &good, &|v| {
        v["schemaVersion"] = json!("2")
    });
    edit("schemaVersion missing", OCI_MANIFEST, &good, &|v| {
        v.as_object_mut().unwrap().remove("schemaVersion");
    });
    edit("image without config", OCI_MANIFEST, &good, &|v| {
        v.as_object_mut().unwrap().remove("config");
    });
    edit("image without layers", OCI_MANIFEST, &good, &|v| {
        v.as_object_mut().unwrap().remove("layers");
    });
    edit("image with manifests", OCI_MANIFEST, &good, &|v| {
        v["manifests"] = json!([])
    });
    edit("config digest upper-case", OCI_MANIFEST, &good, &|v| {
        v["config"]["digest"] = json!(v["config"]["digest"].as_str().unwrap().to_uppercase())
    });
    edit("layer digest short", OCI_MANIFEST, &good, &|v| {
        v["layers"][0]["digest"] = json!("sha256:abc")
    });
    edit("layer size negative", OCI_MANIFEST, &good, &|v| {
        v["layers"][0]["size"] = json!(-1)
    });
    edit("layer without media type", OCI_MANIFEST, &good, &|v| {
        v["layers"][0].as_object_mut().unwrap().remove("mediaType");
    });
    edit("layers not a list", OCI_MANIFEST, &good, &|v| {
        v["layers"] = json!({})
    });
    edit(
        "index with config",
        OCI_INDEX,
        &good_index,
        &|v| v["config"] = json!({"mediaType": CONFIG_TYPE, "digest": sha256(b"x"), "size": 1}),
    );
    edit("index with layers", OCI_INDEX, &good_index, &|v| {
        v["layers"] = json!([])
    });
    edit("index without manifests", OCI_INDEX, &good_index, &|v| {
        v.as_object_mut().unwrap().remove("manifests");
    });
    edit("index child digest bad", OCI_INDEX, &good_index, &|v| {
        v["manifests"][0]["digest"] = json!("sha256:zz")
    });
    edit(
        "subject digest bad",
        OCI_MANIFEST,
        &good,
        &|v| v["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": "latest", "size": 1}),
    );
    for (what, media_type, body) in &cases {
        for repo in [&fx.app, &fx.fresh] {
            let before = snapshot(reg);
            let err = repo.push_manifest("v2", media_type, body).unwrap_err();
            assert!(
                matches!(&err, ocistore::Error::InvalidManifest { reason } if !reason.is_empty()),
                "{what}: {err:?}"
            );
            assert_same(&before, &snapshot(reg), what);
        }
    }
    // For contrast, the unedited bodies are accepted.
    fx.app
        .push_manifest("v2", OCI_MANIFEST, &to_vec(&good))
        .unwrap();
    fx.app
        .push_manifest("v3", OCI_INDEX, &to_vec(&good_index))
        .unwrap();
}

#[test]
fn n5_push_manifest_by_digest_refuses_a_body_with_another_digest() {
    let fx = fixture();
    let reg = &fx.store.registry;
    let body = to_vec(&image_body(&fx.config, std::slice::from_ref(&fx.layer)));
    let mut other_body = body.clone();
    other_body.push(b'\n');
    for alg in Algorithm::ALL {
        let claimed = alg.digest(&other_body);
        refused!(
            reg,
            fx.app.push_manifest(claimed.as_str(), OCI_MANIFEST, &body),
            ocistore::Error::DigestMismatch { expected, actual }
                if expected == claimed && actual == alg.digest(&body)
        );
    }
    // The digest of a manifest the repository holds, for other bytes.
    refused!(
        reg,
        fx.app.push_manifest(fx.image.as_str(), OCI_MANIFEST, &other_body),
        ocistore::Error::DigestMismatch { expected, .. } if expected == fx.image
    );
}

#[test]
fn n5_push_manifest_refuses_references_the_repository_cannot_read() {
    let fx = fixture();
    let reg = &fx.store.registry;
    let unknown = (sha256(b"never uploaded"), 14);
    let foreign = (fx.foreign_blob.clone(), 13);
    type Blob = (Digest, u64);
    let cases: [(&Repository, Blob, Vec<Blob>, &Digest); 5] = [
        (&fx.app, unknown.clone(), vec![fx.layer.clone()], &unknown.0),
        (
            &fx.app,
            fx.config.clone(),
            vec![fx.layer.clone(), unknown.clone()],
            &unknown.0,
        ),
        (
            &fx.app,
            fx.config.clone(),
            vec![foreign.clone()],
            &foreign.0,
        ),
        (&fx.other, fx.config.clone(), vec![], &fx.config.0),
        (&fx.fresh, foreign.clone(), vec![], &foreign.0),
    ];
    for (repo, config, layers, missing) in cases {
        let body = to_vec(&image_body(&config, &layers));
        let digest = sha256(&body);
        for reference in ["v2", digest.as_str()] {
            refused!(
                reg,
                repo.push_manifest(reference, OCI_MANIFEST, &body),
                ocistore::Error::BlobUnknown { repository, digest }
                    if repository == repo.name() && &digest == missing
            );
        }
    }
    // Index children must be manifests of the same repository.
    let unknown_child = (sha256(b"no such manifest"), 10);
    let foreign_child = (fx.foreign_image.clone(), 100);
    let cases: [(&Repository, Vec<Blob>, &Digest); 4] = [
        (&fx.app, vec![unknown_child.clone()], &unknown_child.0),
        (
            &fx.app,
            vec![(fx.image.clone(), fx.image_size), foreign_child.clone()],
            &foreign_child.0,
        ),
        (
            &fx.other,
            vec![(fx.image.clone(), fx.image_size)],
            &fx.image,
        ),
        (&fx.fresh, vec![foreign_child.clone()], &foreign_child.0),
    ];
    for (repo, children, missing) in cases {
        let body = to_vec(&index_body(&children));
        refused!(
            reg,
            repo.push_manifest("multi", OCI_INDEX, &body),
            ocistore::Error::ManifestUnknown { repository, reference }
                if repository == repo.name() && reference == missing.as_str()
        );
    }
    // A blob digest is not a manifest.
    let body = to_vec(&index_body(std::slice::from_ref(&fx.config)));
    refused!(
        reg,
        fx.app.push_manifest("multi", OCI_INDEX, &body),
        ocistore::Error::ManifestUnknown { reference, .. } if reference == fx.config.0.as_str()
    );
}

#[test]
fn n5_pull_and_manifest_refuse_bad_and_unknown_references() {
    let fx = fixture();
    let reg = &fx.store.registry;
    let unknown = sha256(b"no such manifest").to_string();
    for repo in [&fx.app, &fx.fresh] {
        for bad in ["", "-v1", "v 1", "ü", &"a".repeat(129)] {
            refused!(reg, repo.pull(bad), ocistore::Error::InvalidReference { reference, .. } if reference == bad);
            refused!(reg, repo.manifest(bad), ocistore::Error::InvalidReference { reference, .. } if reference == bad);
        }
        for bad in [
            "sha256:abc",
            "v1:latest",
            &format!("sha256:{}", "A".repeat(64)),
        ] {
            refused!(reg, repo.pull(bad), ocistore::Error::InvalidReference { reference, .. } if reference == bad);
            refused!(reg, repo.manifest(bad), ocistore::Error::InvalidReference { reference, .. } if reference == bad);
        }
        for missing in [
            "nope",
            "V1",
            unknown.as_str(),
            fx.foreign_image.as_str(),
            fx.config.0.as_str(),
        ] {
            let is_missing = |e: &ocistore::Error| {
                matches!(e, ocistore::Error::ManifestUnknown { repository, reference }
                    if repository == repo.name() && reference == missing)
            };
            refused!(reg, repo.pull(missing), e if is_missing(&e));
            refused!(reg, repo.manifest(missing), e if is_missing(&e));
        }
    }
    refused!(
        reg,
        fx.fresh.pull("v1"),
        ocistore::Error::ManifestUnknown { reference, .. } if reference == "v1"
    );
}

#[test]
fn n5_listings_with_nothing_to_list_are_empty_and_write_nothing() {
    let fx = fixture();
    let reg = &fx.store.registry;
    assert!(harmless!(reg, fx.fresh.manifests(&ManifestQuery::default())).is_empty());
    assert!(harmless!(reg, fx.fresh.tags(&Page::all())).is_empty());
    assert!(harmless!(reg, fx.fresh.blobs(&Page::all())).is_empty());
    assert!(harmless!(reg, fx.fresh.referrers(&fx.image, None)).is_empty());
    let epoch = ManifestQuery::default().updated_before(Timestamp::EPOCH);
    assert!(harmless!(reg, fx.app.manifests(&epoch)).is_empty());
    let none = ManifestQuery::default().limit(0).descending(true);
    assert!(harmless!(reg, fx.app.manifests(&none)).is_empty());
    assert!(harmless!(reg, fx.app.referrers(&sha256(b"no subject"), None)).is_empty());
    assert!(harmless!(reg, fx.app.referrers(&fx.image, Some("application/none"))).is_empty());
    assert!(harmless!(reg, fx.app.referrers(&fx.image, Some(""))).is_empty());
    assert!(harmless!(reg, fx.other.referrers(&fx.image, None)).is_empty());
    assert!(harmless!(reg, fx.app.tags(&Page::after("zzz", 10))).is_empty());
    assert!(harmless!(reg, fx.app.tags(&Page::first(0))).is_empty());
    // For contrast, the referrer is there.
    assert_eq!(harmless!(reg, fx.app.referrers(&fx.image, None)).len(), 1);
}

#[test]
fn n5_tag_refuses_bad_tags_and_manifests_the_repository_does_not_hold() {
    let fx = fixture();
    let reg = &fx.store.registry;
    for bad in [
        "",
        "-v1",
        ".v1",
        "v 1",
        "v1:x",
        "v1/x",
        "ü",
        &"a".repeat(129),
    ] {
        refused!(reg, fx.app.tag(bad, &fx.image), ocistore::Error::InvalidTag { tag } if tag == bad);
        // The tag is checked even when the manifest is unknown too.
        refused!(reg, fx.fresh.tag(bad, &fx.image), ocistore::Error::InvalidTag { tag } if tag == bad);
    }
    let unknown = Algorithm::Blake3.digest(b"no such manifest");
    for (repo, digest) in [
        (&fx.app, &unknown),
        (&fx.app, &fx.foreign_image),
        (&fx.app, &fx.config.0),
        (&fx.other, &fx.image),
        (&fx.fresh, &fx.image),
    ] {
        refused!(
            reg,
            repo.tag("v9", digest),
            ocistore::Error::ManifestUnknown { repository, reference }
                if repository == repo.name() && reference == digest.as_str()
        );
        // Moving an existing tag onto an unknown manifest leaves the tag where it was.
        refused!(
            reg,
            repo.tag("v1", digest),
            ocistore::Error::ManifestUnknown { .. }
        );
    }
    assert_eq!(fx.app.resolve("v1").unwrap(), fx.image);
    // The longest tag is accepted.
    fx.app.tag(&"a".repeat(128), &fx.image).unwrap();
}

#[test]
fn n5_resolve_and_tags_refuse_bad_tags_and_unknown_ones() {
    let fx = fixture();
    let reg = &fx.store.registry;
    for bad in [
        "",
        "-v1",
        ".v1",
        "v 1",
        "sha256:abc",
        "v1/x",
        "ü",
        &"a".repeat(129),
    ] {
        refused!(reg, fx.app.resolve(bad), ocistore::Error::InvalidTag { tag } if tag == bad);
        refused!(
            reg,
            fx.app.tags(&Page::after(bad, 10)),
            ocistore::Error::InvalidTag { tag } if tag == bad
        );
    }
    for (repo, missing) in [
        (&fx.app, "nope"),
        (&fx.app, "V1"),
        (&fx.fresh, "v1"),
        (&fx.other, "multi"),
    ] {
        refused!(
            reg,
            repo.resolve(missing),
            ocistore::Error::ManifestUnknown { repository, reference }
                if repository == repo.name() && reference == missing
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Batches

#[test]
fn n5_batch_calls_with_bad_input_write_nothing_even_when_the_batch_commits() {
    let fx = fixture();
    let reg = &fx.store.registry;
    let before = snapshot(reg);
    let good_body = to_vec(&image_body(&fx.config, std::slice::from_ref(&fx.layer)));
    let unknown_blob_body = to_vec(&image_body(&(fx.foreign_blob.clone(), 13), &[]));
    reg.batch(|b| {
        let claimed = sha256(b"claimed");
        let e = b.put_blob(&fx.app, &claimed, b"other").unwrap_err();
        assert!(matches!(e, ocistore::Error::DigestMismatch { ref expected, .. } if *expected == claimed), "{e:?}");
        let e = b.put_blob(&fx.fresh, &fx.config.0, b"not it").unwrap_err();
        assert!(matches!(e, ocistore::Error::DigestMismatch { .. }), "{e:?}");
        let e = b.put_blob(&fx.app, &claimed, vec![1u8; 2 << 20]).unwrap_err();
        assert!(matches!(e, ocistore::Error::DigestMismatch { .. }), "{e:?}");

        let e = b.mount_blob(&fx.fresh, &fx.app, &fx.foreign_blob).unwrap_err();
        assert!(matches!(e, ocistore::Error::BlobUnknown { ref repository, .. } if repository == "team/app"), "{e:?}");
        let e = b.mount_blob(&fx.app, &fx.fresh, &fx.config.0).unwrap_err();
        assert!(matches!(e, ocistore::Error::BlobUnknown { ref repository, .. } if repository == "fresh/repo"), "{e:?}");

        let e = b.push_manifest(&fx.app, "bad tag", OCI_MANIFEST, &good_body).unwrap_err();
        assert!(matches!(e, ocistore::Error::InvalidReference { .. }), "{e:?}");
        let e = b.push_manifest(&fx.app, "sha256:abc", OCI_MANIFEST, &good_body).unwrap_err();
        assert!(matches!(e, ocistore::Error::InvalidReference { .. }), "{e:?}");
        let e = b.push_manifest(&fx.app, "v2", "application/json", &good_body).unwrap_err();
        assert!(matches!(e, ocistore::Error::UnsupportedMediaType { .. }), "{e:?}");
        let e = b.push_manifest(&fx.app, "v2", OCI_INDEX, &good_body).unwrap_err();
        assert!(matches!(e, ocistore::Error::MediaTypeMismatch { .. }), "{e:?}");
        let e = b.push_manifest(&fx.app, "v2", OCI_MANIFEST, b"{").unwrap_err();
        assert!(matches!(e, ocistore::Error::InvalidManifest { .. }), "{e:?}");
        let e = b
            .push_manifest(&fx.app, "v2", OCI_MANIFEST, &vec![b' '; (4 << 20) + 1])
            .unwrap_err();
        assert!(matches!(e, ocistore::Error::ManifestTooLarge { .. }), "{e:?}");
        let wrong = sha256(b"wrong").to_string();
        let e = b.push_manifest(&fx.app, &wrong, OCI_MANIFEST, &good_body).unwrap_err();
        assert!(matches!(e, ocistore::Error::DigestMismatch { .. }), "{e:?}");
        let e = b.push_manifest(&fx.app, "v2", OCI_MANIFEST, &unknown_blob_body).unwrap_err();
        assert!(matches!(e, ocistore::Error::BlobUnknown { .. }), "{e:?}");
        let e = b.push_manifest(&fx.fresh, "v2", OCI_MANIFEST, &good_body).unwrap_err();
        assert!(matches!(e, ocistore::Error::BlobUnknown { ref repository, .. } if repository == "fresh/repo"), "{e:?}");
        let index = to_vec(&index_body(&[(fx.foreign_image.clone(), 1)]));
        let e = b.push_manifest(&fx.app, "v2", OCI_INDEX, &index).unwrap_err();
        assert!(matches!(e, ocistore::Error::ManifestUnknown { .. }), "{e:?}");

        let e = b.tag(&fx.app, "bad tag", &fx.image).unwrap_err();
        assert!(matches!(e, ocistore::Error::InvalidTag { .. }), "{e:?}");
        let e = b.tag(&fx.app, "v1", &fx.foreign_image).unwrap_err();
        assert!(matches!(e, ocistore::Error::ManifestUnknown { .. }), "{e:?}");
        let e = b.tag(&fx.fresh, "v1", &fx.image).unwrap_err();
        assert!(matches!(e, ocistore::Error::ManifestUnknown { ref repository, .. } if repository == "fresh/repo"), "{e:?}");
        Ok(())
    })
    .unwrap();
    assert_same(&before, &snapshot(reg), "the batch");
}

#[test]
fn n5_a_failed_call_inside_a_batch_does_not_undo_or_leak_into_the_good_ones() {
    let fx = fixture();
    let reg = &fx.store.registry;
    let body = to_vec(&image_body(&fx.config, &[]));
    let bad_body = to_vec(&image_body(&fx.config, &[(fx.foreign_blob.clone(), 13)]));
    let pushed = reg
        .batch(|b| {
            let d = b
                .push_manifest(&fx.app, "good", OCI_MANIFEST, &body)?
                .digest;
            assert!(
                b.push_manifest(&fx.app, "bad", OCI_MANIFEST, &bad_body)
                    .is_err()
            );
            assert!(b.tag(&fx.app, "good", &fx.foreign_image).is_err());
            assert!(b.mount_blob(&fx.fresh, &fx.app, &fx.foreign_blob).is_err());
            Ok(d)
        })
        .unwrap();
    assert_eq!(fx.app.resolve("good").unwrap(), pushed);
    assert!(matches!(
        fx.app.resolve("bad"),
        Err(ocistore::Error::ManifestUnknown { .. })
    ));
    assert!(matches!(
        fx.app.pull(sha256(&bad_body).as_str()),
        Err(ocistore::Error::ManifestUnknown { .. })
    ));
    assert_eq!(
        reg.repositories(&Page::all()).unwrap(),
        ["team/app", "team/other"]
    );
}

#[test]
fn n5_writes_through_a_repository_inside_a_batch_are_nested_write_and_write_nothing() {
    let fx = fixture();
    let reg = &fx.store.registry;
    let body = to_vec(&image_body(&fx.config, std::slice::from_ref(&fx.layer)));
    let upload = fx.app.resume_upload(&fx.upload_id).unwrap();
    let before = snapshot(reg);
    let nested = |e: &ocistore::Error| matches!(e, ocistore::Error::NestedWrite { path } if path == reg.path());
    reg.batch(|_| {
        refused!(reg, fx.app.push_manifest("v2", OCI_MANIFEST, &body), e if nested(&e));
        refused!(reg, fx.app.tag("v2", &fx.image), e if nested(&e));
        refused!(reg, fx.fresh.mount_blob("team/app", &fx.config.0), e if nested(&e));
        // A blob the registry holds already: only a link would be written.
        refused!(reg, fx.fresh.put_blob(&fx.config.0, br#"{"architecture":"amd64","os":"linux"}"#), e if nested(&e));
        refused!(reg, upload.cancel(), e if nested(&e));
        Ok(())
    })
    .unwrap();
    assert_same(&before, &snapshot(reg), "the batch");
    // The session survived the refused cancel.
    assert_eq!(upload.offset(), 5);
    assert_eq!(upload.append(b"6").unwrap(), 6);
}

#[test]
fn n5_put_blob_through_a_repository_inside_a_batch_writes_no_file() {
    let fx = fixture();
    let reg = &fx.store.registry;
    reg.batch(|_| {
        refused!(
            reg,
            fx.app.put_blob_sha256(b"new bytes"),
            ocistore::Error::NestedWrite { .. }
        );
        Ok(())
    })
    .unwrap();
}

#[test]
fn n5_start_upload_inside_a_batch_writes_no_file() {
    let fx = fixture();
    let reg = &fx.store.registry;
    reg.batch(|_| {
        refused!(
            reg,
            fx.app.start_upload(),
            ocistore::Error::NestedWrite { .. }
        );
        Ok(())
    })
    .unwrap();
}

#[test]
fn n5_finish_inside_a_batch_is_nested_write_and_keeps_the_session_whole() {
    let fx = fixture();
    let reg = &fx.store.registry;
    let upload = fx.app.resume_upload(&fx.upload_id).unwrap();
    let digest = sha256(b"12345");
    reg.batch(|_| {
        refused!(
            reg,
            upload.finish(&digest),
            ocistore::Error::NestedWrite { .. }
        );
        Ok(())
    })
    .unwrap();
    // Refused before any file moved: the session goes on as if the call had not happened.
    assert_eq!(upload.append(b"6").unwrap(), 6);
    upload.finish(&sha256(b"123456")).unwrap();
    assert_eq!(fx.app.blob(&sha256(b"123456")).unwrap(), &b"123456"[..]);
    assert!(matches!(
        fx.app.blob(&digest),
        Err(ocistore::Error::BlobUnknown { .. })
    ));
}

#[test]
fn c1_a_batch_whose_third_of_four_calls_fails_leaves_nothing() {
    let fx = fixture();
    let reg = &fx.store.registry;
    let body = to_vec(&image_body(&fx.config, std::slice::from_ref(&fx.layer)));
    let bad = to_vec(&image_body(&fx.config, &[(sha256(b"missing layer"), 13)]));
    let before = snapshot(reg);
    let mut ran = Vec::new();
    let err = reg
        .batch(|b| {
            ran.push(1);
            b.mount_blob(&fx.fresh, &fx.other, &fx.foreign_blob)?;
            ran.push(2);
            let d = b.push_manifest(&fx.app, "v2", OCI_MANIFEST, &body)?.digest;
            ran.push(3);
            b.push_manifest(&fx.app, "broken", OCI_MANIFEST, &bad)?;
            ran.push(4);
            b.tag(&fx.app, "v3", &d)
        })
        .unwrap_err();
    assert!(
        matches!(&err, ocistore::Error::BlobUnknown { repository, .. } if repository == "team/app"),
        "{err:?}"
    );
    assert_eq!(ran, [1, 2, 3], "the fourth call ran after the third failed");
    assert_same(&before, &snapshot(reg), "the batch");
    assert!(matches!(
        fx.fresh.blob(&fx.foreign_blob),
        Err(ocistore::Error::BlobUnknown { .. })
    ));
    assert!(matches!(
        fx.app.resolve("v2"),
        Err(ocistore::Error::ManifestUnknown { .. })
    ));
    // The store takes the same batch once the third call is fixed.
    let good = to_vec(&image_body(&fx.config, &[]));
    reg.batch(|b| {
        b.mount_blob(&fx.fresh, &fx.other, &fx.foreign_blob)?;
        let d = b.push_manifest(&fx.app, "v2", OCI_MANIFEST, &body)?.digest;
        b.push_manifest(&fx.app, "broken", OCI_MANIFEST, &good)?;
        b.tag(&fx.app, "v3", &d)
    })
    .unwrap();
    assert_eq!(fx.app.resolve("v3").unwrap(), fx.app.resolve("v2").unwrap());
    assert_eq!(
        fx.fresh.blob(&fx.foreign_blob).unwrap(),
        &b"only in other"[..]
    );
}

#[test]
fn c1_a_failed_batch_that_put_blobs_leaves_no_readable_trace() {
    let fx = fixture();
    let reg = &fx.store.registry;
    let before = snapshot(reg);
    let err = reg
        .batch(|b| {
            let a = b.put_blob_sha256(&fx.fresh, b"batch blob a")?;
            let c = b.put_blob_sha256(&fx.app, b"batch blob c")?;
            let body = to_vec(&image_body(&(a, 12), &[(c, 12)]));
            b.push_manifest(&fx.fresh, "v1", OCI_MANIFEST, &body)?;
            Ok(())
        })
        .unwrap_err();
    assert!(
        matches!(err, ocistore::Error::BlobUnknown { .. }),
        "{err:?}"
    );
    // Everything but the blob files the batch wrote is as it was; those files are named by no
    // record (Batch docs: they stay behind for the collector).
    let after = snapshot(reg);
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with("file blobs/"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&before), strip(&after));
    let new_files: Vec<_> = after.lines().filter(|l| !before.contains(l)).collect();
    assert_eq!(new_files.len(), 2, "{new_files:?}");
    for bytes in [&b"batch blob a"[..], b"batch blob c"] {
        for repo in [&fx.app, &fx.fresh, &fx.other] {
            assert!(matches!(
                repo.blob(&sha256(bytes)),
                Err(ocistore::Error::BlobUnknown { .. })
            ));
        }
    }
}
