//! Conformance of `ocistore-server` to the OCI distribution spec v1.1 and to the SPEC rules it
//! serves, over HTTP.
//!
//! Each test starts the server in-process (the crate's library, through `tests/serving`) on a
//! store in a temporary directory, bound to 127.0.0.1:0 on a runtime of its own, and talks to
//! it with a blocking HTTP client. The store's clock is a `ManualClock`
//! the test holds, so ages (purge, grace periods, expiry) need no waiting. Stores live on
//! `/dev/shm` when the machine has it.

mod serving;

use std::time::Duration;

use ocistore::manifest::{OCI_INDEX, OCI_MANIFEST};
use ocistore::{
    Algorithm, CollectOptions, FsckOptions, Item, Locks, PurgeOptions, SoftDeletePolicy,
};
use ocistore_server::CHUNK;
use serde_json::{Value, json};
use serving::{Resp, read};
use ureq::http;

const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
const EMPTY_TYPE: &str = "application/vnd.oci.empty.v1+json";

/// A server on a fresh store, stopped (gracefully) when dropped.
type Server = serving::Served;

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The code of the first error of a spec-format error body.
    fn code(&self) -> String {
        let json = self.json();
        json["errors"][0]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {json}"))
            .to_owned()
    }

    /// Asserts the status and the error code.
    #[track_caller]
    fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.code().as_str()),
            (status, code),
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        let error = &self.json()["errors"][0];
        assert!(error["message"].is_string(), "{error}");
    }
}

/// The library's own JSON form of `value`, which the server's answers must equal.
fn library(value: impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap()
}

/// A blob: its bytes and digest.
struct Blob {
    bytes: Vec<u8>,
    digest: String,
}

impl Blob {
    fn new(bytes: impl Into<Vec<u8>>) -> Blob {
        let bytes = bytes.into();
        let digest = sha256(&bytes);
        Blob { bytes, digest }
    }

    fn descriptor(&self, media_type: &str) -> Value {
        json!({ "mediaType": media_type, "digest": self.digest, "size": self.bytes.len() })
    }
}

fn sha256(bytes: &[u8]) -> String {
    Algorithm::Sha256.digest(bytes).to_string()
}

impl Server {
    fn call(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Resp {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .agent
            .run(request.body(body).unwrap())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        read(response)
    }

    fn get(&self, path: &str) -> Resp {
        self.call("GET", path, &[], Vec::new())
    }

    fn head(&self, path: &str) -> Resp {
        self.call("HEAD", path, &[], Vec::new())
    }

    fn delete(&self, path: &str) -> Resp {
        self.call("DELETE", path, &[], Vec::new())
    }

    /// An administrative call with a JSON body.
    fn admin(&self, method: &str, path: &str, body: Value) -> Resp {
        self.call(
            method,
            path,
            &[("content-type", "application/json")],
            body.to_string().into_bytes(),
        )
    }

    /// Pushes a blob monolithically and checks the answer.
    #[track_caller]
    fn push_blob(&self, repo: &str, blob: &Blob) {
        let r = self.call(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/?digest={}", blob.digest),
            &[("content-type", "application/octet-stream")],
            blob.bytes.clone(),
        );
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }

    /// Pushes a config and a layer made from `seed` into `repo` and gives the body of an image
    /// manifest naming them (not pushed).
    fn image(&self, repo: &str, seed: &str) -> Vec<u8> {
        let config = Blob::new(format!(
            r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#
        ));
        let layer = Blob::new(format!("layer of {seed}"));
        self.push_blob(repo, &config);
        self.push_blob(repo, &layer);
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(CONFIG_TYPE),
            "layers": [layer.descriptor(LAYER_TYPE)],
        }))
        .unwrap()
    }

    fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> Resp {
        self.call(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("content-type", media_type)],
            body.to_vec(),
        )
    }

    /// Pushes an image under `tag` and gives its digest.
    #[track_caller]
    fn push_image(&self, repo: &str, tag: &str, seed: &str) -> String {
        let body = self.image(repo, seed);
        let r = self.put_manifest(repo, tag, OCI_MANIFEST, &body);
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        sha256(&body)
    }

    /// Pushes an artifact of `artifact_type` whose subject is `subject` (an image manifest of
    /// `subject_size` bytes); gives its digest.
    #[track_caller]
    fn push_referrer(
        &self,
        repo: &str,
        subject: &str,
        subject_size: usize,
        artifact_type: &str,
    ) -> String {
        let empty = Blob::new(&b"{}"[..]);
        self.push_blob(repo, &empty);
        let body = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": empty.descriptor(EMPTY_TYPE),
            "layers": [],
            "subject": { "mediaType": OCI_MANIFEST, "digest": subject, "size": subject_size },
            "annotations": { "org.example.kind": artifact_type },
        }))
        .unwrap();
        let digest = sha256(&body);
        let r = self.put_manifest(repo, &digest, OCI_MANIFEST, &body);
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("oci-subject"), Some(subject));
        digest
    }

    fn enable_soft_delete(&self) {
        let r = self.admin(
            "PUT",
            "/admin/policy/soft-delete",
            serde_json::to_value(SoftDeletePolicy::enabled(7).unwrap()).unwrap(),
        );
        assert_eq!(r.status, 200);
    }
}

/// Follows `Link: <…>; rel="next"` from `path`, collecting `key` of every page.
fn paginate(s: &Server, path: &str, key: &str) -> (Vec<String>, usize) {
    let mut all = Vec::new();
    let mut pages = 0;
    let mut next = Some(path.to_owned());
    while let Some(path) = next.take() {
        let r = s.get(&path);
        assert_eq!(r.status, 200);
        pages += 1;
        for item in r.json()[key].as_array().unwrap() {
            all.push(item.as_str().unwrap().to_owned());
        }
        if let Some(link) = r.header("link") {
            assert!(link.ends_with(r#">; rel="next""#), "{link}");
            let url = link.trim_start_matches('<').split('>').next().unwrap();
            next = Some(url.to_owned());
        }
        assert!(pages < 100, "pagination does not end");
    }
    (all, pages)
}

// ---------------------------------------------------------------------------------------------
// The API check

#[test]
fn p6_base_endpoint_answers_200_with_api_version() {
    let s = Server::start();
    for path in ["/v2/", "/v2"] {
        let r = s.get(path);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("docker-distribution-api-version"),
            Some("registry/2.0")
        );
    }
    let r = s.get("/v3/");
    r.assert_error(404, "UNSUPPORTED");
    let r = s.call("POST", "/v2/", &[], Vec::new());
    r.assert_error(405, "UNSUPPORTED");
    assert!(r.header("allow").is_some());
}

// ---------------------------------------------------------------------------------------------
// Blobs: uploads

#[test]
fn p1_monolithic_upload_then_head_and_get() {
    let s = Server::start();
    let blob = Blob::new(&b"hello, registry"[..]);
    let r = s.call(
        "POST",
        &format!("/v2/team/app/blobs/uploads/?digest={}", blob.digest),
        &[],
        blob.bytes.clone(),
    );
    assert_eq!(r.status, 201);
    let location = format!("/v2/team/app/blobs/{}", blob.digest);
    assert_eq!(r.header("location"), Some(location.as_str()));
    assert_eq!(
        r.header("docker-content-digest"),
        Some(blob.digest.as_str())
    );

    let r = s.head(&location);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("15"));
    assert_eq!(
        r.header("docker-content-digest"),
        Some(blob.digest.as_str())
    );
    assert!(r.body.is_empty());

    let r = s.get(&location);
    assert_eq!((r.status, &r.body), (200, &blob.bytes));
    assert_eq!(
        r.header("docker-content-digest"),
        Some(blob.digest.as_str())
    );
}

#[test]
fn p1_monolithic_upload_with_wrong_digest_is_digest_invalid_400() {
    let s = Server::start();
    let claimed = sha256(b"other bytes");
    let r = s.call(
        "POST",
        &format!("/v2/app/blobs/uploads/?digest={claimed}"),
        &[],
        b"these bytes".to_vec(),
    );
    r.assert_error(400, "DIGEST_INVALID");
    // Nothing stored under either digest.
    assert_eq!(s.head(&format!("/v2/app/blobs/{claimed}")).status, 404);
    assert_eq!(
        s.head(&format!("/v2/app/blobs/{}", sha256(b"these bytes")))
            .status,
        404
    );
}

#[test]
fn p1_chunked_upload_post_patch_put() {
    let s = Server::start();
    let blob = Blob::new((0..3000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    let r = s.call("POST", "/v2/team/app/blobs/uploads/", &[], Vec::new());
    assert_eq!(r.status, 202);
    let location = r.header("location").unwrap().to_owned();
    let uuid = r.header("docker-upload-uuid").unwrap().to_owned();
    assert_eq!(location, format!("/v2/team/app/blobs/uploads/{uuid}"));
    assert_eq!(r.header("range"), Some("0-0"));

    let r = s.call(
        "PATCH",
        &location,
        &[
            ("content-range", "0-999"),
            ("content-type", "application/octet-stream"),
        ],
        blob.bytes[..1000].to_vec(),
    );
    assert_eq!(r.status, 202);
    assert_eq!(r.header("range"), Some("0-999"));
    assert_eq!(r.header("docker-upload-uuid"), Some(uuid.as_str()));
    let location = r.header("location").unwrap().to_owned();

    let r = s.get(&location);
    assert_eq!(r.status, 204);
    assert_eq!(r.header("range"), Some("0-999"));
    assert_eq!(r.header("location"), Some(location.as_str()));

    let r = s.call(
        "PATCH",
        &location,
        &[("content-range", "1000-1999")],
        blob.bytes[1000..2000].to_vec(),
    );
    assert_eq!((r.status, r.header("range")), (202, Some("0-1999")));

    // The last chunk comes with the closing PUT.
    let r = s.call(
        "PUT",
        &format!("{location}?digest={}", blob.digest),
        &[("content-range", "2000-2999")],
        blob.bytes[2000..].to_vec(),
    );
    assert_eq!(r.status, 201);
    let blob_location = format!("/v2/team/app/blobs/{}", blob.digest);
    assert_eq!(r.header("location"), Some(blob_location.as_str()));
    assert_eq!(
        r.header("docker-content-digest"),
        Some(blob.digest.as_str())
    );
    assert_eq!(s.get(&blob_location).body, blob.bytes);
    // The session is over.
    s.get(&location).assert_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[test]
fn p1_patch_with_wrong_content_range_is_416() {
    let s = Server::start();
    let blob = Blob::new(vec![7u8; 200]);
    let r = s.call("POST", "/v2/app/blobs/uploads/", &[], Vec::new());
    let location = r.header("location").unwrap().to_owned();
    let r = s.call(
        "PATCH",
        &location,
        &[("content-range", "0-99")],
        blob.bytes[..100].to_vec(),
    );
    assert_eq!(r.status, 202);

    // Sent again from 0: out of order.
    let r = s.call(
        "PATCH",
        &location,
        &[("content-range", "0-99")],
        blob.bytes[100..].to_vec(),
    );
    r.assert_error(416, "BLOB_UPLOAD_INVALID");
    assert_eq!(r.header("range"), Some("0-99"));
    assert_eq!(r.header("location"), Some(location.as_str()));
    // A gap.
    let r = s.call(
        "PATCH",
        &location,
        &[("content-range", "150-249")],
        blob.bytes[100..].to_vec(),
    );
    r.assert_error(416, "BLOB_UPLOAD_INVALID");
    // A range that is not the body's length.
    let r = s.call(
        "PATCH",
        &location,
        &[("content-range", "100-109")],
        blob.bytes[100..].to_vec(),
    );
    r.assert_error(416, "BLOB_UPLOAD_INVALID");
    // Not a range.
    let r = s.call(
        "PATCH",
        &location,
        &[("content-range", "bytes=100-")],
        blob.bytes[100..].to_vec(),
    );
    r.assert_error(416, "BLOB_UPLOAD_INVALID");

    // Nothing was appended: the right chunk still fits.
    assert_eq!(s.get(&location).header("range"), Some("0-99"));
    let r = s.call(
        "PATCH",
        &location,
        &[("content-range", "100-199")],
        blob.bytes[100..].to_vec(),
    );
    assert_eq!(r.status, 202);
    let r = s.call(
        "PUT",
        &format!("{location}?digest={}", blob.digest),
        &[],
        Vec::new(),
    );
    assert_eq!(r.status, 201);
}

#[test]
fn p1_put_with_wrong_digest_is_digest_invalid_and_the_session_stays() {
    let s = Server::start();
    let r = s.call("POST", "/v2/app/blobs/uploads/", &[], Vec::new());
    let location = r.header("location").unwrap().to_owned();
    let r = s.call("PATCH", &location, &[], b"some bytes".to_vec());
    assert_eq!(r.status, 202);
    let wrong = sha256(b"other bytes");
    let r = s.call(
        "PUT",
        &format!("{location}?digest={wrong}"),
        &[],
        Vec::new(),
    );
    r.assert_error(400, "DIGEST_INVALID");
    assert_eq!(s.head(&format!("/v2/app/blobs/{wrong}")).status, 404);
    // No digest at all.
    let r = s.call("PUT", &location, &[], Vec::new());
    r.assert_error(400, "DIGEST_INVALID");
    // A malformed one.
    let r = s.call(
        "PUT",
        &format!("{location}?digest=sha256:abc"),
        &[],
        Vec::new(),
    );
    r.assert_error(400, "DIGEST_INVALID");

    assert_eq!(s.get(&location).status, 204);
    let right = sha256(b"some bytes");
    let r = s.call(
        "PUT",
        &format!("{location}?digest={right}"),
        &[],
        Vec::new(),
    );
    assert_eq!(r.status, 201);
}

#[test]
fn p1_unknown_upload_session_is_blob_upload_unknown_404() {
    let s = Server::start();
    let location = "/v2/app/blobs/uploads/0123456789abcdef0123456789abcdef";
    s.get(location).assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    s.call("PATCH", location, &[], b"x".to_vec())
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    s.call(
        "PUT",
        &format!("{location}?digest={}", sha256(b"x")),
        &[],
        Vec::new(),
    )
    .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    s.delete(location).assert_error(404, "BLOB_UPLOAD_UNKNOWN");

    // A session of another repository is unknown here too.
    let r = s.call("POST", "/v2/mine/blobs/uploads/", &[], Vec::new());
    let uuid = r.header("docker-upload-uuid").unwrap().to_owned();
    s.get(&format!("/v2/theirs/blobs/uploads/{uuid}"))
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[test]
fn p1_cancelled_upload_is_gone() {
    let s = Server::start();
    let r = s.call("POST", "/v2/app/blobs/uploads/", &[], Vec::new());
    let location = r.header("location").unwrap().to_owned();
    s.call("PATCH", &location, &[], b"abc".to_vec());
    assert_eq!(s.delete(&location).status, 204);
    s.get(&location).assert_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[test]
fn p1_large_blobs_stream_in_chunks() {
    let s = Server::start();
    // Over two chunks of the server's, and not a multiple of one.
    let size = 2 * CHUNK + 123_457;
    let mut bytes = vec![0u8; size];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for b in &mut bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let blob = Blob::new(bytes);

    // A PATCH without length (chunked transfer encoding), as docker and skopeo send a layer.
    let r = s.call("POST", "/v2/big/blobs/uploads/", &[], Vec::new());
    let location = r.header("location").unwrap().to_owned();
    let request = http::Request::builder()
        .method("PATCH")
        .uri(format!("{}{location}", s.base))
        .body(ureq::SendBody::from_owned_reader(std::io::Cursor::new(
            blob.bytes.clone(),
        )))
        .unwrap();
    let r = read(s.agent.run(request).unwrap());
    assert_eq!(r.status, 202);
    let range = format!("0-{}", size - 1);
    assert_eq!(r.header("range"), Some(range.as_str()));
    let r = s.call(
        "PUT",
        &format!("{location}?digest={}", blob.digest),
        &[],
        Vec::new(),
    );
    assert_eq!(r.status, 201);

    // A monolithic POST of more than a chunk goes through a session too.
    let other = Blob::new(blob.bytes[..CHUNK + 1].to_vec());
    s.push_blob("big2", &other);

    let r = s.get(&format!("/v2/big/blobs/{}", blob.digest));
    assert_eq!(r.status, 200);
    assert_eq!(sha256(&r.body), blob.digest);
    let r = s.get(&format!("/v2/big2/blobs/{}", other.digest));
    assert_eq!(sha256(&r.body), other.digest);
    // A range across the boundary of two of the server's reads.
    let r = s.call(
        "GET",
        &format!("/v2/big/blobs/{}", blob.digest),
        &[("range", "bytes=262100-262200")],
        Vec::new(),
    );
    assert_eq!(
        (r.status, &r.body[..]),
        (206, &blob.bytes[262_100..=262_200])
    );
}

// ---------------------------------------------------------------------------------------------
// Blobs: reads, mounts, names and digests

#[test]
fn p6_range_get_returns_206_with_content_range() {
    let s = Server::start();
    let blob = Blob::new(&b"0123456789"[..]);
    s.push_blob("app", &blob);
    let path = format!("/v2/app/blobs/{}", blob.digest);
    let get = |range: &str| s.call("GET", &path, &[("range", range)], Vec::new());

    let r = get("bytes=2-5");
    assert_eq!((r.status, &r.body[..]), (206, &b"2345"[..]));
    assert_eq!(r.header("content-range"), Some("bytes 2-5/10"));
    assert_eq!(r.header("content-length"), Some("4"));
    assert_eq!(
        r.header("docker-content-digest"),
        Some(blob.digest.as_str())
    );

    let r = get("bytes=7-");
    assert_eq!((r.status, &r.body[..]), (206, &b"789"[..]));
    assert_eq!(r.header("content-range"), Some("bytes 7-9/10"));

    let r = get("bytes=-3");
    assert_eq!((r.status, &r.body[..]), (206, &b"789"[..]));

    // An end past the blob is cut to the blob (RFC 9110).
    let r = get("bytes=8-100");
    assert_eq!((r.status, &r.body[..]), (206, &b"89"[..]));

    let r = get("bytes=10-20");
    r.assert_error(416, "SIZE_INVALID");
    assert_eq!(r.header("content-range"), Some("bytes */10"));

    // A header that is not a byte range is ignored.
    let r = get("lines=1-2");
    assert_eq!((r.status, &r.body[..]), (200, &blob.bytes[..]));
}

#[test]
fn p2_blob_of_another_repository_is_blob_unknown_404() {
    let s = Server::start();
    let blob = Blob::new(&b"private layer"[..]);
    s.push_blob("team/a", &blob);
    let path = format!("/v2/team/b/blobs/{}", blob.digest);
    s.get(&path).assert_error(404, "BLOB_UNKNOWN");
    assert_eq!(s.head(&path).status, 404);
    // Nor can a manifest of team/b name it.
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": blob.descriptor(CONFIG_TYPE),
        "layers": [],
    }))
    .unwrap();
    s.put_manifest("team/b", "v1", OCI_MANIFEST, &body)
        .assert_error(404, "MANIFEST_BLOB_UNKNOWN");
}

#[test]
fn p2_mount_from_a_repository_holding_the_blob_is_201() {
    let s = Server::start();
    let blob = Blob::new(&b"shared base layer"[..]);
    s.push_blob("team/a", &blob);
    let r = s.call(
        "POST",
        &format!(
            "/v2/team/b/blobs/uploads/?mount={}&from=team%2Fa",
            blob.digest.replace(':', "%3A")
        ),
        &[],
        Vec::new(),
    );
    assert_eq!(r.status, 201);
    let location = format!("/v2/team/b/blobs/{}", blob.digest);
    assert_eq!(r.header("location"), Some(location.as_str()));
    assert_eq!(
        r.header("docker-content-digest"),
        Some(blob.digest.as_str())
    );
    assert_eq!(s.get(&location).body, blob.bytes);
}

#[test]
fn p2_mount_that_cannot_be_done_falls_back_to_an_upload_session_202() {
    let s = Server::start();
    let blob = Blob::new(&b"a layer"[..]);
    s.push_blob("team/a", &blob);
    for from in ["team/c", "NOT-A-NAME", "team/a/missing"] {
        let r = s.call(
            "POST",
            &format!(
                "/v2/team/b/blobs/uploads/?mount={}&from={from}",
                blob.digest
            ),
            &[],
            Vec::new(),
        );
        assert_eq!(r.status, 202, "from {from}");
        assert!(r.header("docker-upload-uuid").is_some());
        assert_eq!(r.header("range"), Some("0-0"));
    }
    // Not mounted.
    s.get(&format!("/v2/team/b/blobs/{}", blob.digest))
        .assert_error(404, "BLOB_UNKNOWN");
    // The session (pending until its first PATCH or PUT) takes the upload instead.
    let r = s.call(
        "POST",
        &format!("/v2/team/b/blobs/uploads/?mount={}", blob.digest),
        &[],
        Vec::new(),
    );
    assert_eq!(r.status, 202);
    let location = r.header("location").unwrap().to_owned();
    let r = s.call(
        "PUT",
        &format!("{location}?digest={}", blob.digest),
        &[],
        blob.bytes.clone(),
    );
    assert_eq!(r.status, 201);
    assert_eq!(
        s.get(&format!("/v2/team/b/blobs/{}", blob.digest)).status,
        200
    );
}

#[test]
fn n3_bad_digest_is_digest_invalid_400() {
    let s = Server::start();
    let upper = format!("sha256:{}", "A".repeat(64));
    let short = "sha256:abc".to_owned();
    let md5 = format!("md5:{}", "a".repeat(32));
    for digest in [&upper, &short, &md5] {
        s.get(&format!("/v2/app/blobs/{digest}"))
            .assert_error(400, "DIGEST_INVALID");
        s.call(
            "POST",
            &format!("/v2/app/blobs/uploads/?digest={digest}"),
            &[],
            b"x".to_vec(),
        )
        .assert_error(400, "DIGEST_INVALID");
        s.get(&format!("/v2/app/manifests/{digest}"))
            .assert_error(400, "DIGEST_INVALID");
        s.get(&format!("/v2/app/referrers/{digest}"))
            .assert_error(400, "DIGEST_INVALID");
        s.call(
            "POST",
            &format!("/v2/app/blobs/uploads/?mount={digest}&from=other"),
            &[],
            Vec::new(),
        )
        .assert_error(400, "DIGEST_INVALID");
    }
}

#[test]
fn n1_bad_repository_name_is_name_invalid_400() {
    let s = Server::start();
    let digest = sha256(b"x");
    let long = "a".repeat(256);
    for name in ["Team/App", "team//app", "-app", "app-", long.as_str()] {
        s.get(&format!("/v2/{name}/blobs/{digest}"))
            .assert_error(400, "NAME_INVALID");
        s.get(&format!("/v2/{name}/manifests/latest"))
            .assert_error(400, "NAME_INVALID");
        s.get(&format!("/v2/{name}/tags/list"))
            .assert_error(400, "NAME_INVALID");
        s.call(
            "POST",
            &format!("/v2/{name}/blobs/uploads/"),
            &[],
            Vec::new(),
        )
        .assert_error(400, "NAME_INVALID");
    }
    // A name holding the words of the API is a name like another.
    let blob = Blob::new(&b"odd names"[..]);
    s.push_blob("blobs/manifests/uploads", &blob);
    let r = s.get(&format!(
        "/v2/blobs/manifests/uploads/blobs/{}",
        blob.digest
    ));
    assert_eq!(r.status, 200);
}

#[test]
fn d6_blob_delete_is_405_unsupported() {
    let s = Server::start();
    let blob = Blob::new(&b"stays"[..]);
    s.push_blob("app", &blob);
    let r = s.delete(&format!("/v2/app/blobs/{}", blob.digest));
    r.assert_error(405, "UNSUPPORTED");
    assert_eq!(s.get(&format!("/v2/app/blobs/{}", blob.digest)).status, 200);
}

// ---------------------------------------------------------------------------------------------
// Manifests

#[test]
fn p3_manifest_put_returns_201_location_and_digest_and_pulls_back_exactly() {
    let s = Server::start();
    let body = s.image("team/app", "one");
    let digest = sha256(&body);
    let r = s.put_manifest("team/app", "v1", OCI_MANIFEST, &body);
    assert_eq!(r.status, 201);
    let location = format!("/v2/team/app/manifests/{digest}");
    assert_eq!(r.header("location"), Some(location.as_str()));
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
    assert_eq!(r.header("oci-subject"), None);

    for path in ["/v2/team/app/manifests/v1", location.as_str()] {
        let r = s.get(path);
        assert_eq!((r.status, &r.body), (200, &body));
        assert_eq!(r.header("content-type"), Some(OCI_MANIFEST));
        assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
        let r = s.head(path);
        assert_eq!(r.status, 200);
        assert!(r.body.is_empty());
        assert_eq!(r.header("content-type"), Some(OCI_MANIFEST));
        let length = body.len().to_string();
        assert_eq!(r.header("content-length"), Some(length.as_str()));
        assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
    }
}

#[test]
fn p3_manifest_put_by_digest_must_match_the_body() {
    let s = Server::start();
    let body = s.image("app", "one");
    let wrong = sha256(b"not the body");
    s.put_manifest("app", &wrong, OCI_MANIFEST, &body)
        .assert_error(400, "DIGEST_INVALID");
    s.get(&format!("/v2/app/manifests/{wrong}"))
        .assert_error(404, "MANIFEST_UNKNOWN");
    let digest = sha256(&body);
    let r = s.put_manifest("app", &digest, OCI_MANIFEST, &body);
    assert_eq!(r.status, 201);
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
}

#[test]
fn p3_manifest_without_content_type_takes_the_body_media_type() {
    let s = Server::start();
    let body = s.image("app", "one");
    let r = s.call("PUT", "/v2/app/manifests/v1", &[], body.clone());
    assert_eq!(r.status, 201);
    assert_eq!(
        s.get("/v2/app/manifests/v1").header("content-type"),
        Some(OCI_MANIFEST)
    );
    // Parameters of the Content-Type are ignored.
    let r = s.put_manifest(
        "app",
        "v2",
        &format!("{OCI_MANIFEST}; charset=utf-8"),
        &body,
    );
    assert_eq!(r.status, 201);
}

#[test]
fn p3_invalid_manifest_is_manifest_invalid_400() {
    let s = Server::start();
    s.put_manifest("app", "v1", OCI_MANIFEST, b"not json")
        .assert_error(400, "MANIFEST_INVALID");
    s.put_manifest("app", "v1", OCI_MANIFEST, b"[1,2]")
        .assert_error(400, "MANIFEST_INVALID");
    // Declared an index, the body says image manifest.
    let body = s.image("app", "one");
    s.put_manifest("app", "v1", OCI_INDEX, &body)
        .assert_error(400, "MANIFEST_INVALID");
    // No media type anywhere.
    s.call(
        "PUT",
        "/v2/app/manifests/v1",
        &[],
        br#"{"schemaVersion":2}"#.to_vec(),
    )
    .assert_error(400, "MANIFEST_INVALID");
    s.get("/v2/app/manifests/v1")
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[test]
fn p3_schema1_and_unknown_media_types_are_unsupported_415() {
    let s = Server::start();
    for media_type in [
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/vnd.docker.distribution.manifest.v1+json",
        "text/plain",
    ] {
        s.put_manifest("app", "v1", media_type, br#"{"schemaVersion":1}"#)
            .assert_error(415, "UNSUPPORTED");
    }
}

#[test]
fn n4_oversize_manifest_is_413_manifest_invalid() {
    let s = Server::start();
    let limit = ocistore::manifest::MAX_MANIFEST_SIZE as usize;
    // Valid JSON, one byte over 4 MiB.
    let mut body = br#"{"schemaVersion":2,"annotations":{"pad":""#.to_vec();
    let tail = br#""}}"#;
    body.resize(limit + 1 - tail.len(), b'x');
    body.extend_from_slice(tail);
    assert_eq!(body.len(), limit + 1);
    let r = s.put_manifest("app", "big", OCI_MANIFEST, &body);
    r.assert_error(413, "MANIFEST_INVALID");
    assert_eq!(r.json()["errors"][0]["detail"]["limit"], limit);
    // Sent without a length, it is refused when the body passes the limit.
    let request = http::Request::builder()
        .method("PUT")
        .uri(format!("{}/v2/app/manifests/big", s.base))
        .header("content-type", OCI_MANIFEST)
        .body(ureq::SendBody::from_owned_reader(std::io::Cursor::new(
            body,
        )))
        .unwrap();
    read(s.agent.run(request).unwrap()).assert_error(413, "MANIFEST_INVALID");
    s.get("/v2/app/manifests/big")
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[test]
fn p4_manifest_naming_a_missing_blob_is_manifest_blob_unknown_404() {
    let s = Server::start();
    let config = Blob::new(&b"{}"[..]);
    s.push_blob("app", &config);
    let missing = Blob::new(&b"never pushed"[..]);
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(CONFIG_TYPE),
        "layers": [missing.descriptor(LAYER_TYPE)],
    }))
    .unwrap();
    let r = s.put_manifest("app", "v1", OCI_MANIFEST, &body);
    r.assert_error(404, "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(r.json()["errors"][0]["detail"]["digest"], missing.digest);

    // An index with a child that is not in the repository.
    let child = s.image("app", "child");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{ "mediaType": OCI_MANIFEST, "digest": sha256(&child), "size": child.len() }],
    }))
    .unwrap();
    s.put_manifest("app", "multi", OCI_INDEX, &index)
        .assert_error(404, "MANIFEST_BLOB_UNKNOWN");
    // Once the child is there, the index goes in.
    assert_eq!(
        s.put_manifest("app", &sha256(&child), OCI_MANIFEST, &child)
            .status,
        201
    );
    assert_eq!(
        s.put_manifest("app", "multi", OCI_INDEX, &index).status,
        201
    );
    assert_eq!(
        s.get("/v2/app/manifests/multi").header("content-type"),
        Some(OCI_INDEX)
    );
}

#[test]
fn p6_unknown_manifest_is_manifest_unknown_404() {
    let s = Server::start();
    s.push_image("app", "v1", "one");
    s.get("/v2/app/manifests/v2")
        .assert_error(404, "MANIFEST_UNKNOWN");
    s.get(&format!("/v2/app/manifests/{}", sha256(b"nothing")))
        .assert_error(404, "MANIFEST_UNKNOWN");
    assert_eq!(s.head("/v2/app/manifests/v2").status, 404);
    s.get("/v2/nowhere/manifests/v1")
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[test]
fn n2_bad_tag_is_tag_invalid_400() {
    let s = Server::start();
    let long = "t".repeat(129);
    for tag in ["-dash", ".dot", long.as_str()] {
        s.get(&format!("/v2/app/manifests/{tag}"))
            .assert_error(400, "TAG_INVALID");
        let body = s.image("app", "one");
        s.put_manifest("app", tag, OCI_MANIFEST, &body)
            .assert_error(400, "TAG_INVALID");
        s.delete(&format!("/v2/app/manifests/{tag}"))
            .assert_error(400, "TAG_INVALID");
    }
    s.get("/v2/app/tags/list?last=-dash")
        .assert_error(400, "TAG_INVALID");
}

#[test]
fn p5_push_by_tag_moves_the_tag_and_keeps_the_old_manifest() {
    let s = Server::start();
    let first = s.push_image("app", "latest", "one");
    let second = s.push_image("app", "latest", "two");
    let r = s.get("/v2/app/manifests/latest");
    assert_eq!(r.header("docker-content-digest"), Some(second.as_str()));
    assert_eq!(s.get(&format!("/v2/app/manifests/{first}")).status, 200);
}

#[test]
fn d1_delete_by_tag_removes_only_the_tag_202() {
    let s = Server::start();
    let digest = s.push_image("app", "v1", "one");
    s.push_image("app", "v1-copy", "one");
    assert_eq!(s.delete("/v2/app/manifests/v1").status, 202);
    s.get("/v2/app/manifests/v1")
        .assert_error(404, "MANIFEST_UNKNOWN");
    assert_eq!(s.get(&format!("/v2/app/manifests/{digest}")).status, 200);
    assert_eq!(s.get("/v2/app/manifests/v1-copy").status, 200);
    s.delete("/v2/app/manifests/v1")
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[test]
fn d3_delete_by_digest_removes_the_manifest_and_its_tags_202() {
    let s = Server::start();
    let digest = s.push_image("app", "v1", "one");
    s.push_image("app", "stable", "one");
    let keep = s.push_image("app", "v2", "two");
    assert_eq!(s.delete(&format!("/v2/app/manifests/{digest}")).status, 202);
    for path in [
        "/v2/app/manifests/v1".to_owned(),
        "/v2/app/manifests/stable".to_owned(),
        format!("/v2/app/manifests/{digest}"),
    ] {
        s.get(&path).assert_error(404, "MANIFEST_UNKNOWN");
    }
    assert_eq!(s.get(&format!("/v2/app/manifests/{keep}")).status, 200);
    let tags = s.get("/v2/app/tags/list").json();
    assert_eq!(tags["tags"], json!(["v2"]));
    s.delete(&format!("/v2/app/manifests/{digest}"))
        .assert_error(404, "MANIFEST_UNKNOWN");
    // The blobs stay (D6).
    let config = s.image("app", "one");
    let config: Value = serde_json::from_slice(&config).unwrap();
    let config = config["config"]["digest"].as_str().unwrap().to_owned();
    assert_eq!(s.head(&format!("/v2/app/blobs/{config}")).status, 200);
}

#[test]
fn d5_deleting_a_child_of_a_live_index_is_409_denied() {
    let s = Server::start();
    let child = s.image("app", "child");
    let child_digest = sha256(&child);
    assert_eq!(
        s.put_manifest("app", &child_digest, OCI_MANIFEST, &child)
            .status,
        201
    );
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{ "mediaType": OCI_MANIFEST, "digest": child_digest, "size": child.len() }],
    }))
    .unwrap();
    assert_eq!(
        s.put_manifest("app", "multi", OCI_INDEX, &index).status,
        201
    );
    let r = s.delete(&format!("/v2/app/manifests/{child_digest}"));
    r.assert_error(409, "DENIED");
    assert_eq!(r.json()["errors"][0]["detail"]["index"], sha256(&index));
    // The index first, then the child.
    assert_eq!(
        s.delete(&format!("/v2/app/manifests/{}", sha256(&index)))
            .status,
        202
    );
    assert_eq!(
        s.delete(&format!("/v2/app/manifests/{child_digest}"))
            .status,
        202
    );
}

#[test]
fn l1_locked_items_are_403_denied() {
    let s = Server::start();
    let digest = s.push_image("app", "v1", "one");
    let repo = s.registry.repository("app").unwrap();
    repo.set_locks(&Item::Tag("v1".into()), Locks::READ_ONLY)
        .unwrap();
    s.delete("/v2/app/manifests/v1").assert_error(403, "DENIED");
    s.delete(&format!("/v2/app/manifests/{digest}"))
        .assert_error(403, "DENIED");
    let other = s.image("app", "two");
    s.put_manifest("app", "v1", OCI_MANIFEST, &other)
        .assert_error(403, "DENIED");
    // A read-only repository takes no push.
    repo.set_locks(&Item::Repository, Locks::READ_ONLY).unwrap();
    s.call(
        "POST",
        &format!("/v2/app/blobs/uploads/?digest={}", sha256(b"x")),
        &[],
        b"x".to_vec(),
    )
    .assert_error(403, "DENIED");
    s.call("POST", "/v2/app/blobs/uploads/", &[], Vec::new())
        .assert_error(403, "DENIED");
    assert_eq!(s.get("/v2/app/manifests/v1").status, 200);
}

// ---------------------------------------------------------------------------------------------
// Referrers

#[test]
fn p8_referrers_list_is_an_image_index_filtered_by_artifact_type() {
    let s = Server::start();
    let subject = s.image("app", "subject");
    let subject_digest = s.push_image("app", "v1", "subject");
    let sbom = s.push_referrer(
        "app",
        &subject_digest,
        subject.len(),
        "application/vnd.example.sbom",
    );
    let sig = s.push_referrer(
        "app",
        &subject_digest,
        subject.len(),
        "application/vnd.example.sig",
    );

    let r = s.get(&format!("/v2/app/referrers/{subject_digest}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some(OCI_INDEX));
    assert_eq!(r.header("oci-filters-applied"), None);
    let index = r.json();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], OCI_INDEX);
    let mut found: Vec<(String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["mediaType"], OCI_MANIFEST);
            assert!(d["size"].as_u64().unwrap() > 0);
            assert_eq!(d["annotations"]["org.example.kind"], d["artifactType"]);
            (
                d["digest"].as_str().unwrap().to_owned(),
                d["artifactType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    found.sort();
    let mut expected = vec![
        (sbom.clone(), "application/vnd.example.sbom".to_owned()),
        (sig, "application/vnd.example.sig".to_owned()),
    ];
    expected.sort();
    assert_eq!(found, expected);

    let r = s.get(&format!(
        "/v2/app/referrers/{subject_digest}?artifactType=application%2Fvnd.example.sbom"
    ));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("oci-filters-applied"), Some("artifactType"));
    let manifests = r.json()["manifests"].clone();
    assert_eq!(manifests.as_array().unwrap().len(), 1);
    assert_eq!(manifests[0]["digest"], sbom);

    // No referrers, an unknown subject, an unknown repository: an empty index, never 404.
    for path in [
        format!("/v2/app/referrers/{subject_digest}?artifactType=application/none"),
        format!("/v2/app/referrers/{}", sha256(b"nothing")),
        format!("/v2/nowhere/referrers/{subject_digest}"),
    ] {
        let r = s.get(&path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.json()["manifests"], json!([]), "{path}");
    }
}

#[test]
fn p8_referrer_falls_back_to_the_config_media_type_and_can_precede_its_subject() {
    let s = Server::start();
    let config = Blob::new(&b"{\"signed\":true}"[..]);
    s.push_blob("app", &config);
    let subject = sha256(b"a subject pushed later");
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor("application/vnd.example.signature.config"),
        "layers": [],
        "subject": { "mediaType": OCI_MANIFEST, "digest": subject, "size": 10 },
    }))
    .unwrap();
    let r = s.put_manifest("app", &sha256(&body), OCI_MANIFEST, &body);
    assert_eq!(r.status, 201);
    assert_eq!(r.header("oci-subject"), Some(subject.as_str()));
    let index = s.get(&format!("/v2/app/referrers/{subject}")).json();
    assert_eq!(
        index["manifests"][0]["artifactType"],
        "application/vnd.example.signature.config"
    );
}

#[test]
fn d5_deleting_a_subject_deletes_its_referrers() {
    let s = Server::start();
    let subject = s.image("app", "subject");
    let subject_digest = s.push_image("app", "v1", "subject");
    let sbom = s.push_referrer(
        "app",
        &subject_digest,
        subject.len(),
        "application/vnd.example.sbom",
    );
    assert_eq!(
        s.delete(&format!("/v2/app/manifests/{subject_digest}"))
            .status,
        202
    );
    s.get(&format!("/v2/app/manifests/{sbom}"))
        .assert_error(404, "MANIFEST_UNKNOWN");
    let r = s.get(&format!("/v2/app/referrers/{subject_digest}"));
    assert_eq!((r.status, r.json()["manifests"].clone()), (200, json!([])));
}

// ---------------------------------------------------------------------------------------------
// Listings

#[test]
fn p7_tags_list_paginates_with_link() {
    let s = Server::start();
    let body = s.image("team/app", "one");
    let tags = ["a", "B", "c", "d1", "d2", "e"];
    for tag in tags {
        assert_eq!(
            s.put_manifest("team/app", tag, OCI_MANIFEST, &body).status,
            201
        );
    }
    let mut sorted: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    sorted.sort();

    let r = s.get("/v2/team/app/tags/list");
    assert_eq!(r.json(), json!({ "name": "team/app", "tags": sorted }));
    assert_eq!(r.header("link"), None);

    let r = s.get("/v2/team/app/tags/list?n=2");
    assert_eq!(r.json()["tags"], json!(["B", "a"]));
    assert_eq!(
        r.header("link"),
        Some(r#"</v2/team/app/tags/list?n=2&last=a>; rel="next""#)
    );
    let (all, pages) = paginate(&s, "/v2/team/app/tags/list?n=2", "tags");
    assert_eq!((all, pages), (sorted.clone(), 3));
    let (all, pages) = paginate(&s, "/v2/team/app/tags/list?n=4", "tags");
    assert_eq!((all, pages), (sorted.clone(), 2));
    // Exactly n left: no Link to an empty page.
    let r = s.get("/v2/team/app/tags/list?n=2&last=d1");
    assert_eq!(r.json()["tags"], json!(["d2", "e"]));
    assert_eq!(r.header("link"), None);
    let r = s.get("/v2/team/app/tags/list?last=d1");
    assert_eq!(r.json()["tags"], json!(["d2", "e"]));
    let r = s.get("/v2/team/app/tags/list?n=0");
    assert_eq!(
        (r.json()["tags"].clone(), r.header("link")),
        (json!([]), None)
    );
    let r = s.get("/v2/team/app/tags/list?n=5&last=e");
    assert_eq!((r.status, r.json()["tags"].clone()), (200, json!([])));
}

#[test]
fn p7_tags_list_of_an_unknown_repository_is_name_unknown_404() {
    let s = Server::start();
    s.get("/v2/nowhere/tags/list")
        .assert_error(404, "NAME_UNKNOWN");
    // A repository with blobs but no tags exists, with no tags.
    s.push_blob("blobs-only", &Blob::new(&b"x"[..]));
    let r = s.get("/v2/blobs-only/tags/list");
    assert_eq!((r.status, r.json()["tags"].clone()), (200, json!([])));
}

#[test]
fn n5_unknown_and_soft_deleted_repositories_are_name_unknown_404_on_every_endpoint_naming_one() {
    let s = Server::start();
    s.enable_soft_delete();
    let digest = s.push_image("team/old", "v1", "one");
    assert_eq!(s.delete("/admin/repositories/team/old").status, 202);
    let unknown = |r: Resp, name: &str| {
        r.assert_error(404, "NAME_UNKNOWN");
        assert_eq!(
            r.json()["errors"][0]["message"],
            format!("repository {name} unknown")
        );
    };
    let binned = |r: Resp| {
        r.assert_error(404, "NAME_UNKNOWN");
        assert_eq!(
            r.json()["errors"][0]["message"],
            "repository team/old is soft-deleted; restore something in it first"
        );
    };
    unknown(s.get("/v2/nowhere/tags/list"), "nowhere");
    binned(s.get("/v2/team/old/tags/list"));
    unknown(s.get("/admin/deleted/nowhere"), "nowhere");
    unknown(s.delete("/admin/repositories/nowhere"), "nowhere");
    binned(s.delete("/admin/repositories/team/old"));
    unknown(s.delete("/admin/manifests/nowhere/v1"), "nowhere");
    binned(s.delete("/admin/manifests/team/old/v1"));
    unknown(
        s.admin(
            "POST",
            "/admin/restore",
            json!({ "repository": "nowhere", "tag": "v1" }),
        ),
        "nowhere",
    );
    // The recycle bin's endpoints work inside a soft-deleted repository (S5, S11).
    assert_eq!(
        s.get("/admin/deleted/team/old").json()["manifests"][0]["digest"],
        digest
    );
    let r = s.admin(
        "POST",
        "/admin/restore",
        json!({ "repository": "team/old", "tag": "v1" }),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        s.get("/v2/team/old/tags/list").json()["tags"],
        json!(["v1"])
    );
}

#[test]
fn p7_catalog_paginates_with_link() {
    let s = Server::start();
    let names = ["alpha", "beta/one", "beta/two", "gamma", "team/app"];
    for name in names {
        s.push_blob(name, &Blob::new(name.as_bytes().to_vec()));
    }
    let r = s.get("/v2/_catalog");
    assert_eq!(r.json(), json!({ "repositories": names }));
    assert_eq!(r.header("link"), None);
    let r = s.get("/v2/_catalog?n=2");
    assert_eq!(r.json()["repositories"], json!(["alpha", "beta/one"]));
    assert_eq!(
        r.header("link"),
        Some(r#"</v2/_catalog?n=2&last=beta/one>; rel="next""#)
    );
    let (all, pages) = paginate(&s, "/v2/_catalog?n=2", "repositories");
    assert_eq!((all, pages), (names.map(String::from).to_vec(), 3));
    let r = s.get("/v2/_catalog?n=0");
    assert_eq!(
        (r.json()["repositories"].clone(), r.header("link")),
        (json!([]), None)
    );
    s.get("/v2/_catalog?last=Not-A-Name")
        .assert_error(400, "NAME_INVALID");
}

#[test]
fn p7_bad_page_size_is_400() {
    let s = Server::start();
    s.push_image("app", "v1", "one");
    s.get("/v2/_catalog?n=many")
        .assert_error(400, "PAGINATION_NUMBER_INVALID");
    s.get("/v2/app/tags/list?n=-1")
        .assert_error(400, "PAGINATION_NUMBER_INVALID");
}

// ---------------------------------------------------------------------------------------------
// The administrative API: the recycle bin

#[test]
fn s1_soft_delete_policy_get_and_put_are_the_library_policy() {
    let s = Server::start();
    let r = s.get("/admin/policy/soft-delete");
    let library = |p: SoftDeletePolicy| serde_json::to_value(p).unwrap();
    assert_eq!(
        (r.status, r.json()),
        (200, library(SoftDeletePolicy::default()))
    );
    assert_eq!(r.json(), json!({ "enabled": false, "retention_days": 7 }));
    let policy = SoftDeletePolicy::enabled(3).unwrap();
    let r = s.admin("PUT", "/admin/policy/soft-delete", library(policy));
    assert_eq!((r.status, r.json()), (200, library(policy)));
    assert_eq!(s.registry.soft_delete_policy().unwrap(), policy);
    for bad in [
        json!({ "enabled": true, "retention_days": 0 }),
        json!({ "enabled": true, "retention_days": 91 }),
        json!({ "enabled": true, "days": 3 }),
        json!({ "retention_days": 3 }),
        json!({ "enabled": "yes", "retention_days": 3 }),
    ] {
        s.admin("PUT", "/admin/policy/soft-delete", bad.clone())
            .assert_error(400, "INVALID_REQUEST");
    }
    s.call(
        "PUT",
        "/admin/policy/soft-delete",
        &[],
        b"{not json".to_vec(),
    )
    .assert_error(400, "INVALID_REQUEST");
    s.admin("POST", "/admin/policy/soft-delete", json!({}))
        .assert_error(405, "UNSUPPORTED");
    assert_eq!(s.get("/admin/policy/soft-delete").json(), library(policy));
}

#[test]
fn t2_history_retention_get_and_put() {
    let s = Server::start();
    let path = "/admin/policy/history-retention";
    let r = s.get(path);
    assert_eq!((r.status, r.json()), (200, json!({ "days": 90 })));
    for days in [0, 3650, 30] {
        let r = s.admin("PUT", path, json!({ "days": days }));
        assert_eq!((r.status, r.json()), (200, json!({ "days": days })));
        assert_eq!(s.registry.history_retention_days().unwrap(), days);
    }
    // Out of range or malformed: 400, and nothing changed.
    for bad in [
        json!({ "days": 3651 }),
        json!({ "days": -1 }),
        json!({ "days": "30" }),
        json!({ "days": 30, "dayz": 7 }),
        json!({}),
    ] {
        s.admin("PUT", path, bad.clone())
            .assert_error(400, "INVALID_REQUEST");
    }
    let message = s.admin("PUT", path, json!({ "days": 3651 })).json();
    assert!(
        message["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("0 (keep forever) to 3650 days"),
        "{message}"
    );
    assert_eq!(s.get(path).json(), json!({ "days": 30 }));
    assert_eq!(s.registry.history_retention_days().unwrap(), 30);
    s.admin("POST", path, json!({ "days": 1 }))
        .assert_error(405, "UNSUPPORTED");
}

#[test]
fn t2_autopurge_via_admin_reports_the_history_events_removed() {
    let s = Server::start();
    s.push_image("app", "v1", "one");
    s.admin(
        "PUT",
        "/admin/policy/history-retention",
        json!({ "days": 1 }),
    );
    s.clock.advance(Duration::from_secs(2 * 86_400));
    let r = s.admin("POST", "/admin/autopurge", json!({}));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["history_events"], 1);
    let history = s.registry.repository("app").unwrap().tag_history("v1");
    assert!(history.unwrap().is_empty());
}

#[test]
fn s6_soft_delete_then_restore_via_admin() {
    let s = Server::start();
    s.enable_soft_delete();
    let digest = s.push_image("team/app", "v1", "one");
    s.push_image("team/app", "stable", "one");
    assert_eq!(
        s.delete(&format!("/v2/team/app/manifests/{digest}")).status,
        202
    );
    s.get("/v2/team/app/manifests/v1")
        .assert_error(404, "MANIFEST_UNKNOWN");

    let r = s.get("/admin/deleted/team/app");
    assert_eq!(r.status, 200);
    let bin = r.json();
    assert_eq!(bin["repository"], "team/app");
    // The library's own listings, in their serde form.
    let repo = s.registry.repository("team/app").unwrap();
    assert_eq!(bin["manifests"], library(repo.deleted_manifests().unwrap()));
    assert_eq!(bin["tags"], library(repo.deleted_tags(None).unwrap()));
    let manifests = bin["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    assert_eq!(manifests[0]["digest"], digest);
    assert_eq!(manifests[0]["media_type"], OCI_MANIFEST);
    assert_eq!(manifests[0]["tags"], json!(["stable", "v1"]));
    let deleted_at =
        humantime::parse_rfc3339(manifests[0]["deleted_at"].as_str().unwrap()).unwrap();
    let expires_at =
        humantime::parse_rfc3339(manifests[0]["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(
        expires_at.duration_since(deleted_at).unwrap(),
        Duration::from_secs(7 * 86_400)
    );
    let mut tags: Vec<&str> = bin["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert_eq!(t["digest"], digest);
            t["tag"].as_str().unwrap()
        })
        .collect();
    tags.sort();
    assert_eq!(tags, ["stable", "v1"]);
    let only = s.get("/admin/deleted/team/app?tag=v1").json();
    assert_eq!(only["tags"].as_array().unwrap().len(), 1);

    let r = s.admin(
        "POST",
        "/admin/restore",
        json!({ "repository": "team/app", "tag": "v1" }),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({ "repository": "team/app", "tag": "v1", "digest": digest })
    );
    let r = s.get("/v2/team/app/manifests/v1");
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
    // One tag comes back (S8); the other stays in the bin.
    s.get("/v2/team/app/manifests/stable")
        .assert_error(404, "MANIFEST_UNKNOWN");
    let bin = s.get("/admin/deleted/team/app").json();
    assert_eq!(bin["manifests"], json!([]));
    assert_eq!(bin["tags"].as_array().unwrap().len(), 1);
    assert_eq!(bin["tags"][0]["tag"], "stable");
}

#[test]
fn s6_restore_onto_a_live_tag_is_409_unless_on_conflict_move_tag() {
    let s = Server::start();
    s.enable_soft_delete();
    let old = s.push_image("app", "latest", "one");
    assert_eq!(s.delete(&format!("/v2/app/manifests/{old}")).status, 202);
    let new = s.push_image("app", "latest", "two");
    let restore = json!({ "repository": "app", "tag": "latest", "digest": old });
    let r = s.admin("POST", "/admin/restore", restore.clone());
    r.assert_error(409, "TAG_CONFLICT");
    assert_eq!(r.json()["errors"][0]["detail"]["digest"], new);
    // `on_conflict` is the library's `OnConflict` in its serde form; `force` is gone.
    let mut refuse = restore.clone();
    refuse["on_conflict"] = serde_json::to_value(ocistore::OnConflict::Refuse).unwrap();
    assert_eq!(refuse["on_conflict"], "refuse");
    s.admin("POST", "/admin/restore", refuse)
        .assert_error(409, "TAG_CONFLICT");
    let mut forced = restore.clone();
    forced["force"] = json!(true);
    s.admin("POST", "/admin/restore", forced)
        .assert_error(400, "INVALID_REQUEST");
    let mut bad = restore.clone();
    bad["on_conflict"] = json!("overwrite");
    s.admin("POST", "/admin/restore", bad)
        .assert_error(400, "INVALID_REQUEST");
    let mut move_tag = restore;
    move_tag["on_conflict"] = serde_json::to_value(ocistore::OnConflict::MoveTag).unwrap();
    assert_eq!(move_tag["on_conflict"], "move_tag");
    let r = s.admin("POST", "/admin/restore", move_tag);
    assert_eq!((r.status, r.json()["digest"].clone()), (200, json!(old)));
    let r = s.get("/v2/app/manifests/latest");
    assert_eq!(r.header("docker-content-digest"), Some(old.as_str()));
    // The overwritten tag went to the bin.
    let bin = s.get("/admin/deleted/app?tag=latest").json();
    assert_eq!(bin["tags"][0]["digest"], new);
}

#[test]
fn s6_restore_errors() {
    let s = Server::start();
    s.enable_soft_delete();
    s.push_image("app", "v1", "one");
    s.admin(
        "POST",
        "/admin/restore",
        json!({ "repository": "app", "tag": "v1" }),
    )
    .assert_error(404, "NOT_DELETED");
    let unknown = sha256(b"never pushed");
    s.admin(
        "POST",
        "/admin/restore",
        json!({ "repository": "app", "digest": unknown }),
    )
    .assert_error(404, "NOT_DELETED");
    s.admin("POST", "/admin/restore", json!({ "repository": "app" }))
        .assert_error(400, "INVALID_REQUEST");
    s.admin(
        "POST",
        "/admin/restore",
        json!({ "repository": "App", "tag": "v1" }),
    )
    .assert_error(400, "NAME_INVALID");
    s.admin(
        "POST",
        "/admin/restore",
        json!({ "repository": "app", "digest": "sha256:xyz" }),
    )
    .assert_error(400, "DIGEST_INVALID");
    s.admin(
        "POST",
        "/admin/restore",
        json!({ "repository": "app", "tag": "v1", "forse": true }),
    )
    .assert_error(400, "INVALID_REQUEST");
    s.get("/admin/restore").assert_error(405, "UNSUPPORTED");
}

#[test]
fn s10_restoring_a_referrer_whose_subject_is_deleted_is_409() {
    let s = Server::start();
    s.enable_soft_delete();
    let subject = s.image("app", "subject");
    let subject_digest = s.push_image("app", "v1", "subject");
    let sbom = s.push_referrer(
        "app",
        &subject_digest,
        subject.len(),
        "application/vnd.example.sbom",
    );
    assert_eq!(
        s.delete(&format!("/v2/app/manifests/{subject_digest}"))
            .status,
        202
    );
    s.admin(
        "POST",
        "/admin/restore",
        json!({ "repository": "app", "digest": sbom }),
    )
    .assert_error(409, "SUBJECT_DELETED");
    let r = s.admin(
        "POST",
        "/admin/restore",
        json!({ "repository": "app", "digest": subject_digest }),
    );
    assert_eq!(r.status, 200);
    let r = s.admin(
        "POST",
        "/admin/restore",
        json!({ "repository": "app", "digest": sbom }),
    );
    assert_eq!(r.status, 200);
    let index = s.get(&format!("/v2/app/referrers/{subject_digest}")).json();
    assert_eq!(index["manifests"][0]["digest"], sbom);
}

#[test]
fn s5_deleted_repositories_are_listed_and_come_back_with_a_restore() {
    let s = Server::start();
    s.enable_soft_delete();
    let digest = s.push_image("team/old", "v1", "one");
    s.push_image("team/new", "v1", "two");
    assert_eq!(s.delete("/admin/repositories/team/old").status, 202);
    assert_eq!(
        s.get("/v2/_catalog").json()["repositories"],
        json!(["team/new"])
    );
    s.get("/v2/team/old/tags/list")
        .assert_error(404, "NAME_UNKNOWN");
    let r = s.get("/admin/deleted-repositories");
    assert_eq!(r.status, 200);
    let repos = r.json()["repositories"].clone();
    assert_eq!(repos, library(s.registry.deleted_repositories().unwrap()));
    assert_eq!(repos.as_array().unwrap().len(), 1);
    assert_eq!(repos[0]["name"], "team/old");
    assert!(repos[0]["expires_at"].is_string());
    // The bin of a deleted repository is readable (S5).
    let bin = s.get("/admin/deleted/team/old").json();
    assert_eq!(bin["manifests"][0]["digest"], digest);

    let r = s.admin(
        "POST",
        "/admin/restore",
        json!({ "repository": "team/old", "digest": digest }),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        s.get("/v2/_catalog").json()["repositories"],
        json!(["team/new", "team/old"])
    );
    assert_eq!(
        s.get(&format!("/v2/team/old/manifests/{digest}")).status,
        200
    );
    assert_eq!(
        s.get("/admin/deleted-repositories").json()["repositories"],
        json!([])
    );
    s.delete("/admin/repositories/Bad-Name")
        .assert_error(400, "NAME_INVALID");
}

#[test]
fn d2_admin_delete_by_tag_deletes_the_manifest_with_all_its_tags() {
    let s = Server::start();
    let digest = s.push_image("team/app", "v1", "one");
    s.push_image("team/app", "stable", "one");
    let r = s.delete("/admin/manifests/team/app/v1");
    assert_eq!((r.status, r.json()), (202, json!({ "deleted": [digest] })));
    s.get("/v2/team/app/manifests/stable")
        .assert_error(404, "MANIFEST_UNKNOWN");
    s.delete("/admin/manifests/team/app/v1")
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[test]
fn s4_autopurge_via_admin_empties_expired_tombstones() {
    let s = Server::start();
    s.enable_soft_delete();
    let digest = s.push_image("app", "v1", "one");
    assert_eq!(s.delete(&format!("/v2/app/manifests/{digest}")).status, 202);
    let r = s.call("POST", "/admin/autopurge", &[], Vec::new());
    assert_eq!((r.status, r.json()["manifests"].clone()), (200, json!(0)));
    s.clock.advance(Duration::from_secs(8 * 86_400));
    let r = s.call("POST", "/admin/autopurge", &[], Vec::new());
    assert_eq!(r.json()["manifests"], 1);
    // The library's report, as a second run at the same time gives it but for the counts.
    let again = library(s.registry.run_now().unwrap());
    assert_eq!(r.json()["ran_at"], again["ran_at"]);
    assert_eq!(again["manifests"], 0);
    assert_eq!(s.get("/admin/deleted/app").json()["manifests"], json!([]));
}

// ---------------------------------------------------------------------------------------------
// The administrative API: purge, the collector, usage, fsck

#[test]
fn u5_purge_dry_run_via_admin_reports_and_changes_nothing() {
    let s = Server::start();
    for tag in ["build-1", "build-2", "build-3", "release"] {
        s.push_image("team/app", tag, tag);
        s.clock.advance(Duration::from_secs(60));
    }
    s.clock.advance(Duration::from_secs(2 * 86_400));
    s.push_image("team/app", "build-4", "build-4"); // too young
    // The body is the library's own `PurgeOptions`.
    let options = PurgeOptions::new(["team/.*:build-.*"])
        .unwrap()
        .keep(1)
        .untagged(true)
        .dry_run(true);
    let r = s.admin("POST", "/admin/purge", library(&options));
    assert_eq!(r.status, 200);
    let report = r.json();
    assert_eq!(report, library(s.registry.purge(&options).unwrap()));
    // Fields left out are the library's defaults (`ago` one day).
    let short =
        json!({ "filters": ["team/.*:build-.*"], "keep": 1, "untagged": true, "dry_run": true });
    assert_eq!(s.admin("POST", "/admin/purge", short).json(), report);
    assert_eq!(report["dry_run"], true);
    assert_eq!(
        report["repositories"][0]["manifests_deleted"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(report["repositories"][0]["locked"], json!([]));
    let repo = &report["repositories"][0];
    assert_eq!(repo["repository"], "team/app");
    let mut untagged: Vec<&str> = repo["tags_untagged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    untagged.sort();
    // build-3 is the newest of the old ones: kept.
    assert_eq!(untagged, ["build-1", "build-2"]);
    let all = ["build-1", "build-2", "build-3", "build-4", "release"];
    assert_eq!(s.get("/v2/team/app/tags/list").json()["tags"], json!(all));

    // The real run does what the dry run said (U5).
    let r = s.admin("POST", "/admin/purge", library(options.dry_run(false)));
    assert_eq!(
        r.json()["repositories"][0]["manifests_deleted"],
        repo["manifests_deleted"]
    );
    assert_eq!(
        s.get("/v2/team/app/tags/list").json()["tags"],
        json!(["build-3", "build-4", "release"])
    );

    for bad in [
        json!({ "filters": [] }),
        json!({ "filters": ["no-colon"] }),
        json!({ "filters": ["a:("] }),
        json!({ "filters": ["a:b"], "ago": -1 }),
        // The form before the library's: `ago` a duration text.
        json!({ "filters": ["a:b"], "ago": "1d" }),
        // A misspelt flag is refused, not ignored: this must not purge for real.
        json!({ "filters": [".*:.*"], "ago": 0, "dryrun": true }),
        json!({}),
    ] {
        s.admin("POST", "/admin/purge", bad.clone())
            .assert_error(400, "INVALID_REQUEST");
    }
}

#[test]
fn g5_gc_via_admin_dry_run_then_sweep() {
    let s = Server::start();
    s.push_image("app", "v1", "one");
    let garbage = Blob::new(&b"referenced by nothing"[..]);
    s.push_blob("app", &garbage);
    let path = format!("/v2/app/blobs/{}", garbage.digest);

    // Within the default grace period of an hour, nothing goes.
    let r = s.admin("POST", "/admin/gc", library(CollectOptions::default()));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["blobs_swept"], 0);
    assert_eq!(s.head(&path).status, 200);

    s.clock.advance(Duration::from_secs(10 * 60));
    let options = CollectOptions::default()
        .dry_run(true)
        .grace_period(Duration::from_secs(300));
    let r = s.admin("POST", "/admin/gc", library(&options));
    let report = r.json();
    let library_report = library(s.registry.collect(&options).unwrap());
    // The library's report but for the times measured.
    for (key, value) in library_report.as_object().unwrap() {
        if !["mark_time", "sweep_time", "longest_write"].contains(&key.as_str()) {
            assert_eq!(&report[key], value, "{key}");
        }
    }
    assert_eq!(
        report.as_object().unwrap().len(),
        library_report.as_object().unwrap().len()
    );
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["blobs_swept"], 1);
    assert_eq!(report["bytes_swept"], garbage.bytes.len());
    assert_eq!(report["blobs_marked"], 2);
    assert!(report["mark_time"].is_number());
    assert_eq!(s.head(&path).status, 200);

    s.clock.advance(Duration::from_secs(2 * 3600));
    let r = s.call("POST", "/admin/gc", &[], Vec::new()); // no body: the defaults
    assert_eq!((r.status, r.json()["blobs_swept"].clone()), (200, json!(1)));
    s.get(&path).assert_error(404, "BLOB_UNKNOWN");
    assert_eq!(s.get("/v2/app/manifests/v1").status, 200);

    for bad in [
        json!({ "grace_period": "soon" }),
        // The form before the library's.
        json!({ "grace": "5m" }),
    ] {
        s.admin("POST", "/admin/gc", bad)
            .assert_error(400, "INVALID_REQUEST");
    }
}

#[test]
fn a1_usage_via_admin() {
    let s = Server::start();
    let shared = Blob::new(vec![1u8; 1000]);
    let own = Blob::new(vec![2u8; 300]);
    s.push_blob("team/a", &shared);
    s.push_blob("team/a", &own);
    let r = s.call(
        "POST",
        &format!(
            "/v2/team/b/blobs/uploads/?mount={}&from=team/a",
            shared.digest
        ),
        &[],
        Vec::new(),
    );
    assert_eq!(r.status, 201);
    let usage = s.get("/admin/usage").json();
    assert_eq!(usage, library(s.registry.usage().unwrap()));
    assert_eq!(usage["blobs"], 2);
    assert_eq!(usage["bytes"], 1300);
    let repos = usage["repositories"].as_array().unwrap();
    let a = repos.iter().find(|r| r["name"] == "team/a").unwrap();
    assert_eq!(
        (
            a["bytes"].clone(),
            a["unique_bytes"].clone(),
            a["shared_bytes"].clone()
        ),
        (json!(1300), json!(300), json!(1000))
    );
    let b = repos.iter().find(|r| r["name"] == "team/b").unwrap();
    assert_eq!(b["bytes"], 1000);
    s.call("POST", "/admin/usage", &[], Vec::new())
        .assert_error(405, "UNSUPPORTED");
}

#[test]
fn a2_fsck_via_admin() {
    let s = Server::start();
    s.push_image("app", "v1", "one");
    let r = s.call("POST", "/admin/fsck", &[], Vec::new());
    assert_eq!(r.status, 200);
    let answer = r.json();
    let library_report = s.registry.fsck(&FsckOptions::default()).unwrap();
    assert_eq!(
        answer,
        json!({ "report": library(library_report), "notes": [] })
    );
    let report = &answer["report"];
    assert_eq!(report["manifests_checked"], 1);
    assert_eq!(report["blobs_checked"], 2);
    assert_eq!(report["problems"], json!([]));
    // A file left in tmp/ by a crash is found, and repaired once older than the grace period.
    std::fs::write(s.registry.path().join("tmp/left-behind"), b"half").unwrap();
    let options = FsckOptions::default().verify_digests(false);
    let answer = s.admin("POST", "/admin/fsck", library(&options)).json();
    assert_eq!(
        answer["report"],
        library(s.registry.fsck(&options).unwrap())
    );
    assert_eq!(answer["report"]["problems"][0]["kind"], "temp_file");
    s.admin("POST", "/admin/fsck", json!({ "repair": "yes" }))
        .assert_error(400, "INVALID_REQUEST");
    s.get("/admin/nothing-here")
        .assert_error(404, "UNSUPPORTED");
}

// ---------------------------------------------------------------------------------------------
// A full disk, health, the administrative API's bodies, pending upload sessions

/// The files of the store's upload sessions.
fn upload_files(s: &Server) -> usize {
    std::fs::read_dir(s.registry.path().join("uploads"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn c4_writes_on_a_full_disk_are_507_storage_full_while_reads_and_deletes_go_on() {
    // A store whose space reserve cannot be had opens "full", as on a full disk: tmpfs refuses
    // a 1 PiB fallocate at once with ENOSPC.
    assert!(
        std::path::Path::new("/dev/shm").is_dir(),
        "this test makes its full disk on the tmpfs /dev/shm, which this machine lacks: \
         mount one with `mount -t tmpfs tmpfs /dev/shm` (as root)"
    );
    let dir = serving::tempdir();
    let (layer, manifest) = {
        let registry = ocistore::Registry::open(dir.path()).unwrap();
        let repo = registry.repository("team/app").unwrap();
        let config = repo.put_blob_sha256(b"{}").unwrap();
        let layer = repo.put_blob_sha256(b"a layer").unwrap();
        let body = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": CONFIG_TYPE, "digest": config.to_string(), "size": 2 },
            "layers": [{ "mediaType": LAYER_TYPE, "digest": layer.to_string(), "size": 7 }],
        });
        let manifest = repo
            .push_manifest("v1", OCI_MANIFEST, &serde_json::to_vec(&body).unwrap())
            .unwrap()
            .digest;
        (layer.to_string(), manifest.to_string())
    };
    let s = serving::Served::start_on(dir, ocistore_server::Config::default(), |b| {
        b.space_reserve(1 << 50)
    });

    // The API check answers, and says the store cannot write; the health check says why.
    let base = s.get("/v2/");
    assert_eq!(base.status, 200);
    assert_eq!(base.header("ocistore-health"), Some("storage-full"));
    let health = s.get("/health");
    assert_eq!(health.status, 503);
    let health = health.json();
    assert_eq!(
        (health["writable"].clone(), health["storage_full"].clone()),
        (json!(false), json!(true))
    );
    assert!(
        health["problem"].as_str().unwrap().contains("space"),
        "{health}"
    );

    // Writes: 507 STORAGE_FULL, and nothing written.
    let blob = Blob::new(&b"another layer"[..]);
    s.call(
        "POST",
        &format!("/v2/team/app/blobs/uploads/?digest={}", blob.digest),
        &[],
        blob.bytes.clone(),
    )
    .assert_error(507, "STORAGE_FULL");
    s.call("POST", "/v2/team/app/blobs/uploads/", &[], Vec::new())
        .assert_error(507, "STORAGE_FULL");
    assert_eq!(upload_files(&s), 0);
    s.get(&format!("/v2/team/app/blobs/{}", blob.digest))
        .assert_error(404, "BLOB_UNKNOWN");

    // Reads go on; deletes and the collector free space.
    assert_eq!(
        s.get(&format!("/v2/team/app/blobs/{layer}")).body,
        b"a layer"
    );
    assert_eq!(s.get("/v2/team/app/manifests/v1").status, 200);
    assert_eq!(
        s.delete(&format!("/v2/team/app/manifests/{manifest}"))
            .status,
        202
    );
    let gc = s.admin(
        "POST",
        "/admin/gc",
        library(CollectOptions::default().grace_period(Duration::ZERO)),
    );
    assert_eq!(gc.status, 200, "{}", String::from_utf8_lossy(&gc.body));
    assert_eq!(gc.json()["blobs_swept"], 2);
}

#[test]
fn c5_the_health_endpoint_and_the_api_check_report_a_writable_store() {
    let s = Server::start();
    let r = s.get("/health");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({ "writable": true, "storage_full": false, "problem": null })
    );
    assert_eq!(s.head("/health").status, 200);
    s.call("POST", "/health", &[], Vec::new())
        .assert_error(405, "UNSUPPORTED");
    let base = s.get("/v2/");
    assert_eq!(base.header("ocistore-health"), Some("ok"));
    assert_eq!(s.head("/v2/").header("ocistore-health"), Some("ok"));
}

#[test]
fn a2_fsck_via_admin_takes_a_grace_period_and_says_why_files_were_left() {
    let s = Server::start();
    s.push_image("app", "v1", "one");
    std::fs::write(s.registry.path().join("tmp/left-by-a-crash"), b"half").unwrap();
    // A fresh file is younger than the default grace period (1 h): kept, and said so.
    let repair = FsckOptions::default().repair(true);
    let r = s.admin("POST", "/admin/fsck", library(&repair));
    assert_eq!(r.status, 200);
    let answer = r.json();
    let report = &answer["report"];
    assert_eq!(report["problems"][0]["kind"], "temp_file");
    assert_eq!(
        (report["repaired"].clone(), report["too_recent"].clone()),
        (json!(0), json!(1))
    );
    let notes = answer["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    let note = notes[0].as_str().unwrap();
    assert!(
        note.contains("grace period") && note.contains("\"grace_period\""),
        "{note}"
    );
    // Without repair, the note says a repair removes it.
    let answer = s.admin("POST", "/admin/fsck", json!({})).json();
    assert_eq!(answer["report"]["too_recent"], 0);
    assert!(
        answer["notes"][0].as_str().unwrap().contains("repair"),
        "{answer}"
    );
    // With a zero grace, as after a crash, it goes; whole seconds are taken too.
    for body in [
        library(repair.clone().grace_period(Duration::from_secs(3600))),
        json!({ "repair": true, "grace_period": 3600 }),
    ] {
        let answer = s.admin("POST", "/admin/fsck", body).json();
        assert_eq!(answer["report"]["too_recent"], 1);
        assert!(
            answer["notes"][0].as_str().unwrap().contains("(1h)"),
            "{answer}"
        );
    }
    let answer = s
        .admin(
            "POST",
            "/admin/fsck",
            library(repair.grace_period(Duration::ZERO)),
        )
        .json();
    assert_eq!(
        (
            answer["report"]["repaired"].clone(),
            answer["report"]["too_recent"].clone()
        ),
        (json!(1), json!(0))
    );
    assert_eq!(answer["notes"], json!([]));
    let answer = s
        .admin("POST", "/admin/fsck", json!({ "grace_period": 0 }))
        .json();
    assert_eq!(answer["report"]["problems"], json!([]));
    for (path, bad) in [
        ("/admin/fsck", json!({ "grace_period": "soon" })),
        ("/admin/fsck", json!({ "grace": "0s" })),
        ("/admin/gc", json!({ "grace_period": -5 })),
    ] {
        s.admin("POST", path, bad)
            .assert_error(400, "INVALID_REQUEST");
    }
}

#[test]
fn admin_bodies_must_be_json_objects_not_arrays() {
    let s = Server::start();
    for (method, path, body) in [
        ("POST", "/admin/fsck", json!([true, false])),
        ("POST", "/admin/gc", json!([true])),
        ("POST", "/admin/purge", json!([["app:.*"], "1d"])),
        ("POST", "/admin/restore", json!(["app", "v1"])),
        ("PUT", "/admin/policy/soft-delete", json!([true, 7])),
        ("PUT", "/admin/policy/history-retention", json!([30])),
        ("POST", "/admin/fsck", json!("repair")),
        ("POST", "/admin/fsck", json!(1)),
        ("POST", "/admin/fsck", json!(null)),
    ] {
        let r = s.admin(method, path, body.clone());
        r.assert_error(400, "INVALID_REQUEST");
        let message = r.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            message.contains("expected a JSON object"),
            "{path} {body}: {message}"
        );
    }
    // The policy did not change; an empty body is still {}.
    assert_eq!(s.get("/admin/policy/soft-delete").json()["enabled"], false);
    assert_eq!(s.call("POST", "/admin/fsck", &[], Vec::new()).status, 200);
}

#[test]
fn p2_a_mount_that_falls_back_to_202_stores_nothing_until_the_client_uploads() {
    let s = Server::start();
    let blob = Blob::new(&b"a layer to upload in chunks"[..]);
    let mount = |s: &Server| {
        let r = s.call(
            "POST",
            &format!(
                "/v2/team/b/blobs/uploads/?mount={}&from=team/a",
                blob.digest
            ),
            &[],
            Vec::new(),
        );
        assert_eq!(r.status, 202);
        r.header("location").unwrap().to_owned()
    };
    let location = mount(&s);
    let id = location.rsplit('/').next().unwrap().to_owned();
    assert!(id.starts_with("pending-"), "{id}");
    // No session file, no session: nothing for the collector to time out in 24 h.
    assert_eq!(upload_files(&s), 0);
    let r = s.get(&location);
    assert_eq!((r.status, r.header("range")), (204, Some("0-0")));
    assert_eq!(r.header("location"), Some(location.as_str()));
    // A client that gives up (skopeo deletes the session) leaves nothing.
    assert_eq!(s.delete(&location).status, 204);
    assert_eq!(upload_files(&s), 0);
    // Another that uploads: its first PATCH starts a real session, which the answer names.
    let location = mount(&s);
    let (first, rest) = blob.bytes.split_at(10);
    let r = s.call(
        "PATCH",
        &location,
        &[
            ("content-range", "0-9"),
            ("content-type", "application/octet-stream"),
        ],
        first.to_vec(),
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let started = r.header("location").unwrap().to_owned();
    assert_ne!(started, location);
    assert!(!started.contains("pending-"), "{started}");
    assert_eq!(r.header("range"), Some("0-9"));
    assert_eq!(upload_files(&s), 1);
    let r = s.call(
        "PUT",
        &format!("{started}?digest={}", blob.digest),
        &[],
        rest.to_vec(),
    );
    assert_eq!(r.status, 201);
    assert_eq!(
        s.get(&format!("/v2/team/b/blobs/{}", blob.digest)).body,
        blob.bytes
    );
    // A pending session whose closing PUT fails leaves nothing either; a wrong offset is 416.
    let location = mount(&s);
    let r = s.call(
        "PUT",
        &format!("{location}?digest={}", sha256(b"other")),
        &[],
        b"bytes".to_vec(),
    );
    r.assert_error(400, "DIGEST_INVALID");
    let r = s.call(
        "PATCH",
        &location,
        &[("content-range", "5-9")],
        b"12345".to_vec(),
    );
    r.assert_error(416, "BLOB_UPLOAD_INVALID");
    assert_eq!(upload_files(&s), 0);
    // An id that merely looks pending in another shape is unknown.
    s.get("/v2/team/b/blobs/uploads/pending-xyz")
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
}
