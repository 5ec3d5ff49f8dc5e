//! SPEC N1–N5: repository names, tags, digests, the manifest size limit, and what an invalid
//! input does (a typed error naming it; nothing written; no panic).

mod common;

use common::{
    CONFIG_TYPE, Store, fails_writing_nothing, image_body, push_image, snapshot, upload_image,
};
use ocistore::manifest::{DOCKER_MANIFEST, MAX_MANIFEST_SIZE, OCI_INDEX, OCI_MANIFEST};
use ocistore::{Algorithm, Digest, Error, MAX_NAME_LEN, ManifestQuery, Page};

const MIB: usize = 1024 * 1024;

/// A store with one repository holding a tagged image, to show that bad calls leave it alone.
fn populated() -> (Store, Digest) {
    let store = Store::new();
    let digest = push_image(&store.repo("team/app"), "latest", "one");
    (store, digest)
}

fn invalid_name(err: &Error, expected: &str) -> bool {
    matches!(err, Error::InvalidRepositoryName { name, .. } if name == expected)
}

fn invalid_tag(err: &Error, expected: &str) -> bool {
    matches!(err, Error::InvalidTag { tag } if tag == expected)
}

fn invalid_digest(err: &Error, expected: &str) -> bool {
    matches!(err, Error::InvalidDigest { digest, .. } if digest == expected)
}

/// A reference of a push, pull or delete that is neither a tag nor a digest: the error names
/// both possibilities.
fn invalid_reference(err: &Error, expected: &str) -> bool {
    matches!(err, Error::InvalidReference { reference, digest_reason }
        if reference == expected && !digest_reason.is_empty())
        && err.to_string().contains("not a tag")
        && err.to_string().contains("not a digest")
}

// ---------------------------------------------------------------------------------------------
// N1 — repository names
// ---------------------------------------------------------------------------------------------

const VALID_NAMES: &[&str] = &[
    "a",
    "0",
    "app",
    "team/app",
    "a/b/c",
    "a__b",
    "a-----b",
    "a.b_c",
    "a-b/c--d/e__f/g.h",
    "a1.b2-c3__d4/e5",
    "0/1/2/3/4/5/6/7/8/9",
];

#[test]
fn n1_valid_names_are_accepted_and_usable() {
    let store = Store::new();
    for name in VALID_NAMES {
        let repo = store
            .registry
            .repository(name)
            .unwrap_or_else(|e| panic!("{name:?} refused: {e}"));
        assert_eq!(repo.name(), *name);
        let digest = repo.put_blob_sha256(name.as_bytes()).unwrap();
        assert_eq!(repo.blob(&digest).unwrap(), name.as_bytes());
    }
    let mut expected: Vec<String> = VALID_NAMES.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(store.registry.repositories(&Page::all()).unwrap(), expected);
}

#[test]
fn n1_upper_case_is_refused() {
    let store = Store::new();
    for name in ["A", "App", "team/App", "TEAM/app", "a/b/C", "aB"] {
        let err = store.registry.repository(name).unwrap_err();
        assert!(invalid_name(&err, name), "{name:?}: {err:?}");
    }
}

#[test]
fn n1_leading_and_trailing_separators_are_refused() {
    let store = Store::new();
    for name in [
        "-a", "a-", ".a", "a.", "_a", "a_", "__a", "a__", "/a", "a/", "a/b/", "/a/b", "a/-b",
        "a-/b", "a/.b", "a_/b",
    ] {
        let err = store.registry.repository(name).unwrap_err();
        assert!(invalid_name(&err, name), "{name:?}: {err:?}");
    }
}

#[test]
fn n1_doubled_or_mixed_separators_are_refused() {
    let store = Store::new();
    // `__` and any run of `-` are separators; `___`, `..`, `//` and mixes are not.
    for name in [
        "a//b", "a___b", "a____b", "a..b", "a._b", "a_.b", "a.-b", "a-.b", "a-_b", "a_-b", "a/./b",
        "a//", "//",
    ] {
        let err = store.registry.repository(name).unwrap_err();
        assert!(invalid_name(&err, name), "{name:?}: {err:?}");
    }
}

#[test]
fn n1_characters_outside_the_grammar_are_refused() {
    let store = Store::new();
    for name in [
        "a b", "a:b", "a@b", "a+b", "a\\b", "café", "a\n", "\0", "a/b\t", " a", "a*",
    ] {
        let err = store.registry.repository(name).unwrap_err();
        assert!(invalid_name(&err, name), "{name:?}: {err:?}");
    }
}

#[test]
fn n1_empty_name_is_refused() {
    let store = Store::new();
    let err = store.registry.repository("").unwrap_err();
    assert!(
        matches!(err, Error::InvalidRepositoryName { ref name, reason } if name.is_empty() && reason.contains("empty")),
        "{err:?}"
    );
}

#[test]
fn n1_255_bytes_is_accepted_and_256_is_refused() {
    assert_eq!(MAX_NAME_LEN, 255);
    let store = Store::new();
    let long_ok = [
        "a".repeat(255),
        format!("{}/{}", "a".repeat(127), "b".repeat(127)),
        format!("{}.{}", "a".repeat(200), "b".repeat(54)),
    ];
    for name in &long_ok {
        assert_eq!(name.len(), 255);
        let repo = store.registry.repository(name).unwrap();
        repo.put_blob_sha256(b"x").unwrap();
    }
    let mut expected = long_ok.to_vec();
    expected.sort();
    assert_eq!(store.registry.repositories(&Page::all()).unwrap(), expected);

    for name in [
        "a".repeat(256),
        format!("{}/{}", "a".repeat(128), "b".repeat(127)),
        "a".repeat(1000),
    ] {
        assert!(name.len() > 255);
        let err = store.registry.repository(&name).unwrap_err();
        assert!(
            matches!(err, Error::InvalidRepositoryName { name: ref n, reason } if *n == name && reason.contains("255")),
            "{err:?}"
        );
    }
}

#[test]
fn n1_every_call_taking_a_repository_name_checks_it() {
    let (store, _) = populated();
    let repo = store.repo("team/app");
    let layer = repo.put_blob_sha256(b"mountable").unwrap();
    let target = store.repo("other");

    let err = fails_writing_nothing(&store.registry, || target.mount_blob("Team/App", &layer));
    assert!(invalid_name(&err, "Team/App"), "{err:?}");

    let err = fails_writing_nothing(&store.registry, || {
        store.registry.repositories(&Page::after("a//b", 10))
    });
    assert!(invalid_name(&err, "a//b"), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// N2 — tags
// ---------------------------------------------------------------------------------------------

const VALID_TAGS: &[&str] = &[
    "latest", "v1.0.0", "V1", "UPPER", "_", "_x", "0", "1.2", "a-b_c.d", "a..b", "a--", "a.", "a_",
    "Z-9",
];

const INVALID_TAGS: &[&str] = &[
    "", ".a", "-a", ".", "-", "a/b", "a b", "a@b", "a+b", "é", "tag\n", " a", "a*", "a\\b",
];

#[test]
fn n2_valid_tags_are_accepted() {
    let (store, digest) = populated();
    let repo = store.repo("team/app");
    for tag in VALID_TAGS {
        repo.tag(tag, &digest)
            .unwrap_or_else(|e| panic!("{tag:?} refused: {e}"));
        assert_eq!(repo.resolve(tag).unwrap(), digest);
        assert_eq!(repo.pull(tag).unwrap().digest, digest);
    }
    let mut expected: Vec<&str> = VALID_TAGS.to_vec();
    expected.push("latest");
    expected.sort();
    expected.dedup();
    let listed: Vec<String> = repo
        .tags(&Page::all())
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(listed, expected);
}

#[test]
fn n2_valid_tags_can_be_pushed_to() {
    let store = Store::new();
    let repo = store.repo("app");
    for (i, tag) in ["_", "V1", "a-b_c.d", "9"].into_iter().enumerate() {
        let digest = push_image(&repo, tag, &i.to_string());
        assert_eq!(repo.resolve(tag).unwrap(), digest);
    }
}

#[test]
fn n2_128_characters_is_accepted_and_129_is_refused() {
    let (store, digest) = populated();
    let repo = store.repo("team/app");
    let longest = format!("_{}", "x".repeat(127));
    assert_eq!(longest.len(), 128);
    repo.tag(&longest, &digest).unwrap();
    assert_eq!(repo.resolve(&longest).unwrap(), digest);

    let too_long = "x".repeat(129);
    let err = fails_writing_nothing(&store.registry, || repo.tag(&too_long, &digest));
    assert!(invalid_tag(&err, &too_long), "{err:?}");
    let err = fails_writing_nothing(&store.registry, || repo.resolve(&too_long));
    assert!(invalid_tag(&err, &too_long), "{err:?}");
}

#[test]
fn n2_invalid_tags_are_refused_by_every_call_taking_a_tag() {
    let (store, digest) = populated();
    let repo = store.repo("team/app");
    let body = upload_image(&repo, b"config n2", &[b"layer n2"]);
    for tag in INVALID_TAGS {
        let err = fails_writing_nothing(&store.registry, || repo.tag(tag, &digest));
        assert!(invalid_tag(&err, tag), "tag({tag:?}): {err:?}");
        let err = fails_writing_nothing(&store.registry, || repo.resolve(tag));
        assert!(invalid_tag(&err, tag), "resolve({tag:?}): {err:?}");
        let err = fails_writing_nothing(&store.registry, || repo.pull(tag));
        assert!(invalid_reference(&err, tag), "pull({tag:?}): {err:?}");
        let err = fails_writing_nothing(&store.registry, || repo.manifest(tag));
        assert!(invalid_reference(&err, tag), "manifest({tag:?}): {err:?}");
        let err = fails_writing_nothing(&store.registry, || {
            repo.push_manifest(tag, OCI_MANIFEST, &body)
        });
        assert!(
            invalid_reference(&err, tag),
            "push_manifest({tag:?}): {err:?}"
        );
        if !tag.is_empty() {
            let err = fails_writing_nothing(&store.registry, || repo.tags(&Page::after(*tag, 5)));
            assert!(invalid_tag(&err, tag), "tags(after {tag:?}): {err:?}");
        }
    }
    assert_eq!(repo.tags(&Page::all()).unwrap().len(), 1);
}

#[test]
fn n2_n3_a_reference_neither_tag_nor_digest_names_both() {
    let (store, digest) = populated();
    let repo = store.repo("team/app");
    // As a tag, `v1:x` breaks the grammar.
    let err = fails_writing_nothing(&store.registry, || repo.tag("v1:x", &digest));
    assert!(invalid_tag(&err, "v1:x"), "{err:?}");
    // As a push or pull reference it is neither a tag nor a valid digest, and the error says
    // why it is neither.
    let body = upload_image(&repo, b"config colon", &[]);
    let err = fails_writing_nothing(&store.registry, || {
        repo.push_manifest("v1:x", OCI_MANIFEST, &body)
    });
    assert!(invalid_reference(&err, "v1:x"), "{err:?}");
    assert!(
        matches!(&err, Error::InvalidReference { digest_reason, .. } if digest_reason.contains("algorithm")),
        "{err:?}"
    );
    let err = fails_writing_nothing(&store.registry, || repo.pull("v1:x"));
    assert!(invalid_reference(&err, "v1:x"), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// N3 — digests
// ---------------------------------------------------------------------------------------------

const SHA256_EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const SHA512_EMPTY: &str = "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce\
                            47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e";
const BLAKE3_EMPTY: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

#[test]
fn n3_each_algorithm_at_its_length_is_accepted() {
    for (alg, hex) in [
        (Algorithm::Sha256, SHA256_EMPTY),
        (Algorithm::Sha512, SHA512_EMPTY),
        (Algorithm::Blake3, BLAKE3_EMPTY),
    ] {
        let text = format!("{}:{hex}", alg.name());
        let d = Digest::parse(&text).unwrap();
        assert_eq!(d.algorithm(), alg);
        assert_eq!(d.hex(), hex);
        assert_eq!(d.as_str(), text);
        assert_eq!(d.to_string(), text);
        assert_eq!(text.parse::<Digest>().unwrap(), d);
        assert_eq!(hex.len(), alg.hex_len());
        // The digest the store computes for the empty input is the known value.
        assert_eq!(alg.digest(b""), d);
    }
    // Any lower-case hex of the right length, not only real digests.
    Digest::parse(&format!("sha256:{}", "0123456789abcdef".repeat(4))).unwrap();
    Digest::parse(&format!("sha512:{}", "f".repeat(128))).unwrap();
    Digest::parse(&format!("blake3:{}", "0".repeat(64))).unwrap();
}

fn assert_invalid_digests(cases: &[String]) {
    for text in cases {
        let err = Digest::parse(text).unwrap_err();
        assert!(invalid_digest(&err, text), "{text:?}: {err:?}");
        let err = text.parse::<Digest>().unwrap_err();
        assert!(invalid_digest(&err, text), "{text:?}: {err:?}");
        // Deserializing (as a manifest body does) refuses it too.
        let json = serde_json::to_string(text).unwrap();
        assert!(serde_json::from_str::<Digest>(&json).is_err(), "{text:?}");
    }
}

#[test]
fn n3_upper_case_hex_is_refused() {
    assert_invalid_digests(&[
        format!("sha256:{}", SHA256_EMPTY.to_uppercase()),
        format!("sha256:E{}", &SHA256_EMPTY[1..]),
        format!("sha256:{}F", &SHA256_EMPTY[..63]),
        format!("sha512:{}", SHA512_EMPTY.to_uppercase()),
        format!("blake3:{}", BLAKE3_EMPTY.to_uppercase()),
    ]);
}

#[test]
fn n3_wrong_length_is_refused() {
    assert_invalid_digests(&[
        "sha256:".to_owned(),
        format!("sha256:{}", &SHA256_EMPTY[..63]),
        format!("sha256:{SHA256_EMPTY}0"),
        format!("sha256:{SHA512_EMPTY}"),
        format!("sha512:{SHA256_EMPTY}"),
        format!("sha512:{}", &SHA512_EMPTY[..127]),
        format!("sha512:{SHA512_EMPTY}0"),
        format!("blake3:{SHA512_EMPTY}"),
        format!("blake3:{}", &BLAKE3_EMPTY[..63]),
        format!("sha256:{SHA256_EMPTY}\n"),
        format!("sha256: {SHA256_EMPTY}"),
    ]);
}

#[test]
fn n3_unknown_algorithm_is_refused() {
    assert_invalid_digests(&[
        format!("md5:{}", &SHA256_EMPTY[..32]),
        format!("sha384:{}", &SHA512_EMPTY[..96]),
        format!("sha1:{}", &SHA256_EMPTY[..40]),
        format!("SHA256:{SHA256_EMPTY}"),
        format!("Sha256:{SHA256_EMPTY}"),
        format!("sha256+b64u:{SHA256_EMPTY}"),
        format!("blake2b:{SHA512_EMPTY}"),
        format!(":{SHA256_EMPTY}"),
        format!(" sha256:{SHA256_EMPTY}"),
    ]);
}

#[test]
fn n3_missing_colon_is_refused() {
    assert_invalid_digests(&[
        String::new(),
        "sha256".to_owned(),
        SHA256_EMPTY.to_owned(),
        format!("sha256{SHA256_EMPTY}"),
        format!("sha256-{SHA256_EMPTY}"),
        format!("sha256;{SHA256_EMPTY}"),
    ]);
}

#[test]
fn n3_non_hex_characters_are_refused() {
    assert_invalid_digests(&[
        format!("sha256:g{}", &SHA256_EMPTY[1..]),
        format!("sha256:{} ", &SHA256_EMPTY[..63]),
        format!("sha256:{}:", &SHA256_EMPTY[..63]),
        format!("sha256:-{}", &SHA256_EMPTY[1..]),
        format!("sha512:z{}", &SHA512_EMPTY[1..]),
        format!("blake3:{}é", &BLAKE3_EMPTY[..62]),
    ]);
}

#[test]
fn n3_calls_taking_a_digest_as_text_refuse_invalid_ones() {
    let (store, _) = populated();
    let repo = store.repo("team/app");
    let upper = format!("sha256:{}", SHA256_EMPTY.to_uppercase());
    let body = upload_image(&repo, b"config n3", &[]);

    let err = fails_writing_nothing(&store.registry, || repo.pull(&upper));
    assert!(invalid_reference(&err, &upper), "{err:?}");
    let err = fails_writing_nothing(&store.registry, || repo.manifest(&upper));
    assert!(invalid_reference(&err, &upper), "{err:?}");
    let err = fails_writing_nothing(&store.registry, || {
        repo.push_manifest(&upper, OCI_MANIFEST, &body)
    });
    assert!(invalid_reference(&err, &upper), "{err:?}");
    let err = fails_writing_nothing(&store.registry, || repo.blobs(&Page::after("md5:00", 3)));
    assert!(invalid_digest(&err, "md5:00"), "{err:?}");
}

#[test]
fn n3_a_manifest_naming_an_invalid_digest_is_an_invalid_manifest() {
    let (store, _) = populated();
    let repo = store.repo("team/app");
    let bad = format!("sha256:{}", SHA256_EMPTY.to_uppercase());
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": CONFIG_TYPE, "digest": bad, "size": 0},
        "layers": [],
    });
    let body = serde_json::to_vec(&body).unwrap();
    let err = fails_writing_nothing(&store.registry, || {
        repo.push_manifest("v", OCI_MANIFEST, &body)
    });
    assert!(
        matches!(err, Error::InvalidManifest { ref reason } if reason.contains(&bad)),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// N4 — manifest size limit
// ---------------------------------------------------------------------------------------------

/// A valid image manifest over a config blob of `repo`, padded with spaces to `size` bytes.
fn padded_manifest(repo: &ocistore::Repository, size: usize) -> Vec<u8> {
    let config = repo.put_blob_sha256(b"{}").unwrap();
    let body = serde_json::to_vec(&image_body(&(config, 2), &[])).unwrap();
    assert_eq!(body[0], b'{');
    let mut out = Vec::with_capacity(size);
    out.push(b'{');
    out.resize(size - (body.len() - 1), b' ');
    out.extend_from_slice(&body[1..]);
    assert_eq!(out.len(), size);
    out
}

#[test]
fn n4_a_body_of_exactly_4_mib_is_accepted() {
    assert_eq!(MAX_MANIFEST_SIZE, 4 * MIB as u64);
    let store = Store::new();
    let repo = store.repo("app");
    let body = padded_manifest(&repo, 4 * MIB);
    let digest = repo
        .push_manifest("big", OCI_MANIFEST, &body)
        .unwrap()
        .digest;
    assert_eq!(digest, Algorithm::Sha256.digest(&body));
    let pulled = repo.pull("big").unwrap();
    assert_eq!(pulled.body, body);
    assert_eq!(repo.manifest("big").unwrap().size, 4 * MIB as u64);
}

#[test]
fn n4_a_body_of_exactly_4_mib_is_parsed_not_refused_for_its_size() {
    let store = Store::new();
    let repo = store.repo("app");
    let garbage = vec![b'x'; 4 * MIB];
    let err = fails_writing_nothing(&store.registry, || {
        repo.push_manifest("big", OCI_MANIFEST, &garbage)
    });
    assert!(matches!(err, Error::InvalidManifest { .. }), "{err:?}");
}

#[test]
fn n4_a_valid_manifest_one_byte_over_4_mib_is_refused() {
    let store = Store::new();
    let repo = store.repo("app");
    let body = padded_manifest(&repo, 4 * MIB + 1);
    let err = fails_writing_nothing(&store.registry, || {
        repo.push_manifest("big", OCI_MANIFEST, &body)
    });
    assert!(
        matches!(err, Error::ManifestTooLarge { size, limit } if size == 4 * MIB as u64 + 1 && limit == 4 * MIB as u64),
        "{err:?}"
    );
    assert!(matches!(
        repo.resolve("big"),
        Err(Error::ManifestUnknown { .. })
    ));
}

#[test]
fn n4_an_oversized_body_is_refused_before_it_is_parsed() {
    let store = Store::new();
    let repo = store.repo("app");
    // Not JSON at all: a parser would say InvalidManifest; the size check comes first.
    for (size, media_type) in [
        (4 * MIB + 1, OCI_MANIFEST),
        (4 * MIB + 1, OCI_INDEX),
        (4 * MIB + 1, DOCKER_MANIFEST),
        (5 * MIB, OCI_MANIFEST),
    ] {
        let body = vec![0xff_u8; size];
        let err = fails_writing_nothing(&store.registry, || {
            repo.push_manifest("big", media_type, &body)
        });
        assert!(
            matches!(err, Error::ManifestTooLarge { size: s, limit } if s == size as u64 && limit == MAX_MANIFEST_SIZE),
            "{size} {media_type}: {err:?}"
        );
    }
    // Pushed by digest, the size check still comes before any hashing or comparison.
    let body = vec![b'{'; 4 * MIB + 1];
    let digest = Algorithm::Sha256.digest(b"something else");
    let err = fails_writing_nothing(&store.registry, || {
        repo.push_manifest(digest.as_str(), OCI_MANIFEST, &body)
    });
    assert!(matches!(err, Error::ManifestTooLarge { .. }), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// N5 — typed errors, nothing written, no panic
// ---------------------------------------------------------------------------------------------

#[test]
fn n5_invalid_names_tags_and_digests_write_nothing() {
    let (store, digest) = populated();
    let repo = store.repo("team/app");

    let err = fails_writing_nothing(&store.registry, || store.registry.repository("Bad"));
    assert!(invalid_name(&err, "Bad"));
    let err = fails_writing_nothing(&store.registry, || repo.tag("-bad", &digest));
    assert!(invalid_tag(&err, "-bad"));
    let err = fails_writing_nothing(&store.registry, || repo.pull("sha256:00"));
    assert!(invalid_reference(&err, "sha256:00"));
    let err = fails_writing_nothing(&store.registry, || repo.mount_blob("a___b", &digest));
    assert!(invalid_name(&err, "a___b"));
}

#[test]
fn n5_refused_blob_writes_write_nothing() {
    let (store, _) = populated();
    let repo = store.repo("team/app");
    let fresh = store.repo("fresh");
    let claimed = Algorithm::Sha256.digest(b"claimed");

    // A fresh repository: a refused put must not even create it.
    let err = fails_writing_nothing(&store.registry, || fresh.put_blob(&claimed, b"actual"));
    assert!(
        matches!(err, Error::DigestMismatch { ref expected, ref actual }
            if *expected == claimed && *actual == Algorithm::Sha256.digest(b"actual")),
        "{err:?}"
    );
    assert_eq!(
        store.registry.repositories(&Page::all()).unwrap(),
        ["team/app"]
    );

    // A blob the registry does not hold cannot be mounted.
    let err = fails_writing_nothing(&store.registry, || fresh.mount_blob("team/app", &claimed));
    assert!(
        matches!(err, Error::BlobUnknown { ref repository, ref digest } if repository == "team/app" && *digest == claimed),
        "{err:?}"
    );

    // Upload sessions: a bad offset and a bad digest leave the session file and rows alone.
    let upload = repo.start_upload().unwrap();
    upload.append(b"some bytes").unwrap();
    let err = fails_writing_nothing(&store.registry, || upload.append_at(3, b"more"));
    assert!(
        matches!(
            err,
            Error::UploadOffsetMismatch {
                expected: 3,
                actual: 10,
                ..
            }
        ),
        "{err:?}"
    );
    let err = fails_writing_nothing(&store.registry, || upload.finish(&claimed));
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
    let err = fails_writing_nothing(&store.registry, || repo.resume_upload("no-such-session"));
    assert!(
        matches!(err, Error::UploadUnknown { ref id } if id == "no-such-session"),
        "{err:?}"
    );
    upload.cancel().unwrap();
    let err = fails_writing_nothing(&store.registry, || upload.append(b"late"));
    assert!(
        matches!(err, Error::UploadUnknown { ref id } if id == upload.id()),
        "{err:?}"
    );
    let err = fails_writing_nothing(&store.registry, || upload.cancel());
    assert!(matches!(err, Error::UploadUnknown { .. }), "{err:?}");
}

/// A push (reference, media type, body) and the check its error must pass.
type PushCase = (&'static str, &'static str, Vec<u8>, fn(&Error) -> bool);

#[test]
fn n5_refused_manifest_pushes_write_nothing() {
    let (store, tagged) = populated();
    let repo = store.repo("team/app");
    let missing = Algorithm::Sha256.digest(b"never uploaded");
    let config = repo.put_blob_sha256(b"config n5").unwrap();
    let good = serde_json::to_vec(&image_body(&(config.clone(), 9), &[])).unwrap();
    let dangling = serde_json::to_vec(&image_body(&(config, 9), &[(missing.clone(), 14)])).unwrap();

    // Pushed under the existing tag: a refused push must not move it.
    let cases: Vec<PushCase> = vec![
        ("latest", OCI_MANIFEST, b"{not json".to_vec(), |e| {
            matches!(e, Error::InvalidManifest { .. })
        }),
        ("latest", OCI_MANIFEST, Vec::new(), |e| {
            matches!(e, Error::InvalidManifest { .. })
        }),
        (
            "latest",
            "application/json",
            good.clone(),
            |e| matches!(e, Error::UnsupportedMediaType { media_type, .. } if media_type == "application/json"),
        ),
        (
            "latest",
            OCI_INDEX,
            good.clone(),
            |e| matches!(e, Error::MediaTypeMismatch { declared, body } if declared == OCI_INDEX && body == OCI_MANIFEST),
        ),
        (
            "latest",
            OCI_MANIFEST,
            dangling.clone(),
            |e| matches!(e, Error::BlobUnknown { repository, .. } if repository == "team/app"),
        ),
        (
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            OCI_MANIFEST,
            good.clone(),
            |e| matches!(e, Error::DigestMismatch { .. }),
        ),
        ("latest", OCI_MANIFEST, vec![b' '; 4 * MIB + 1], |e| {
            matches!(e, Error::ManifestTooLarge { .. })
        }),
    ];
    for (reference, media_type, body, check) in cases {
        let err = fails_writing_nothing(&store.registry, || {
            repo.push_manifest(reference, media_type, &body)
        });
        assert!(check(&err), "{reference} {media_type}: {err:?}");
    }
    assert_eq!(repo.resolve("latest").unwrap(), tagged);

    // The same bad pushes into a repository that does not exist yet do not create it.
    let fresh = store.repo("fresh");
    let err = fails_writing_nothing(&store.registry, || {
        fresh.push_manifest("v1", OCI_MANIFEST, &good)
    });
    assert!(matches!(err, Error::BlobUnknown { ref repository, .. } if repository == "fresh"));
    let index = serde_json::to_vec(&common::index_body(&[(tagged.clone(), 1)])).unwrap();
    let err = fails_writing_nothing(&store.registry, || {
        fresh.push_manifest("v1", OCI_INDEX, &index)
    });
    assert!(
        matches!(err, Error::ManifestUnknown { ref repository, ref reference } if repository == "fresh" && *reference == tagged.to_string()),
        "{err:?}"
    );
    // Tagging an unknown manifest writes nothing either.
    let err = fails_writing_nothing(&store.registry, || fresh.tag("v1", &tagged));
    assert!(matches!(err, Error::ManifestUnknown { .. }), "{err:?}");
}

#[test]
fn n5_hostile_bodies_are_refused_without_panicking() {
    let (store, _) = populated();
    let repo = store.repo("team/app");
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_object = format!("{}1{}", r#"{"a":"#.repeat(50_000), "}".repeat(50_000));
    let bodies: Vec<Vec<u8>> = vec![
        vec![0xff, 0xfe, 0x00, 0x80],
        b"\xef\xbb\xbf{}".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"\"manifest\"".to_vec(),
        b"42".to_vec(),
        b"{}".to_vec(),
        br#"{"schemaVersion":2}"#.to_vec(),
        br#"{"schemaVersion":"2","config":{},"layers":[]}"#.to_vec(),
        br#"{"schemaVersion":2e400}"#.to_vec(),
        br#"{"schemaVersion":-1}"#.to_vec(),
        br#"{"schemaVersion":18446744073709551616}"#.to_vec(),
        br#"{"schemaVersion":2,"config":null,"layers":null}"#.to_vec(),
        br#"{"schemaVersion":2,"config":{"digest":"sha256:00"},"layers":[]}"#.to_vec(),
        br#"{"schemaVersion":2,"layers":[{"size":-1}]}"#.to_vec(),
        br#"{"schemaVersion":2,"schemaVersion":2}"#.to_vec(),
        br#"{"schemaVersion":2} trailing"#.to_vec(),
        deep.into_bytes(),
        deep_object.into_bytes(),
    ];
    for body in &bodies {
        for media_type in [OCI_MANIFEST, OCI_INDEX] {
            let err = fails_writing_nothing(&store.registry, || {
                repo.push_manifest("latest", media_type, body)
            });
            assert!(
                matches!(err, Error::InvalidManifest { ref reason } if !reason.is_empty()),
                "{:?}: {err:?}",
                String::from_utf8_lossy(&body[..body.len().min(40)])
            );
        }
    }
}

#[test]
fn n5_errors_name_the_offending_input() {
    let (store, digest) = populated();
    let repo = store.repo("team/app");
    let wrong = Algorithm::Sha256.digest(b"claimed");

    let msg = store
        .registry
        .repository("Bad__Name")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("Bad__Name"), "{msg}");
    let msg = repo.tag("-bad", &digest).unwrap_err().to_string();
    assert!(msg.contains("-bad"), "{msg}");
    let msg = Digest::parse("sha256:XYZ").unwrap_err().to_string();
    assert!(msg.contains("sha256:XYZ"), "{msg}");
    let msg = repo.put_blob(&wrong, b"actual").unwrap_err().to_string();
    assert!(
        msg.contains(wrong.as_str()) && msg.contains(Algorithm::Sha256.digest(b"actual").as_str()),
        "{msg}"
    );
    let msg = repo.blob(&wrong).unwrap_err().to_string();
    assert!(
        msg.contains(wrong.as_str()) && msg.contains("team/app"),
        "{msg}"
    );
    let msg = repo.pull("nope").unwrap_err().to_string();
    assert!(msg.contains("nope") && msg.contains("team/app"), "{msg}");
    let msg = repo
        .push_manifest("v", DOCKER_MANIFEST, &vec![b' '; 4 * MIB + 7])
        .unwrap_err()
        .to_string();
    assert!(msg.contains(&(4 * MIB + 7).to_string()), "{msg}");
}

#[test]
fn n5_a_store_reopened_after_refused_calls_holds_what_it_held() {
    let (store, digest) = populated();
    let before = snapshot(&store.registry);
    {
        let repo = store.repo("team/app");
        let _ = repo.put_blob(&Algorithm::Sha256.digest(b"a"), b"b");
        let _ = repo.push_manifest("latest", OCI_MANIFEST, b"{");
        let _ = repo.tag("x", &Algorithm::Sha256.digest(b"none"));
        let _ = store
            .repo("other")
            .mount_blob("team/app", &Algorithm::Sha256.digest(b"none"));
    }
    let store = store.reopen();
    assert_eq!(snapshot(&store.registry), before);
    assert_eq!(store.repo("team/app").resolve("latest").unwrap(), digest);
    let listed = store
        .repo("team/app")
        .manifests(&ManifestQuery::default())
        .unwrap();
    assert_eq!(listed.len(), 1);
}
