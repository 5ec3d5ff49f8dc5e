//! Strategies for what a client sends: names, tags and digests, valid and invalid (N1–N3), and
//! consistent content to push (P3) — images over their blobs, indexes over their images,
//! artifacts over their subject — with every digest and size right by construction.

use proptest::prelude::*;
use proptest::string::string_regex;
use serde_json::json;

use super::grammar::{hash, valid_digest, valid_repo_name, valid_tag};
use ocistore::manifest::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use ocistore::{Algorithm, Digest, Repository, Result};

/// One path component of a repository name (N1): `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
const COMPONENT: &str = "[a-z0-9]{1,8}((\\.|_|__|-{1,3})[a-z0-9]{1,8}){0,2}";

/// Valid repository names (N1): one to four components, at most 255 bytes.
pub fn repository_name() -> BoxedStrategy<String> {
    string_regex(&format!("{COMPONENT}(/{COMPONENT}){{0,3}}"))
        .expect("a valid regex")
        .prop_filter("at most 255 bytes", |name| name.len() <= 255)
        .boxed()
}

/// Repository names outside N1: upper case, empty components, separators at the ends or
/// doubled, characters outside the grammar, too long.
pub fn invalid_repository_name() -> BoxedStrategy<String> {
    let mangled = repository_name().prop_flat_map(|name| {
        prop_oneof![
            Just(name.to_uppercase()),
            Just(format!("{name}/")),
            Just(format!("/{name}")),
            Just(format!("{name}//x")),
            Just(format!("{name}-")),
            Just(format!("{name}___x")),
            Just(format!("{name}:x")),
            Just(format!("{name} x")),
            Just(format!("{name}/{}", "a".repeat(256))),
        ]
    });
    prop_oneof![mangled, Just(String::new()), any::<String>()]
        .prop_filter("outside N1", |name| !valid_repo_name(name))
        .boxed()
}

/// Valid tags (N2): `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn tag_name() -> BoxedStrategy<String> {
    string_regex("[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
        .expect("a valid regex")
        .boxed()
}

/// Tags outside N2: a leading `.` or `-`, characters outside the grammar (a `:` makes it read
/// as a digest), empty, or longer than 128.
pub fn invalid_tag_name() -> BoxedStrategy<String> {
    let mangled = tag_name().prop_flat_map(|tag| {
        prop_oneof![
            Just(format!(".{tag}")),
            Just(format!("-{tag}")),
            Just(format!("{tag} x")),
            Just(format!("{tag}/x")),
            Just(format!("{tag}{}", "x".repeat(128))),
        ]
    });
    prop_oneof![mangled, Just(String::new()), any::<String>()]
        .prop_filter("outside N2", |tag| !valid_tag(tag))
        .boxed()
}

/// A digest algorithm the store accepts.
pub fn algorithm() -> BoxedStrategy<Algorithm> {
    prop::sample::select(Algorithm::ALL.to_vec()).boxed()
}

/// Valid digests (N3), of random bytes under each algorithm.
pub fn digest() -> BoxedStrategy<Digest> {
    (algorithm(), prop::collection::vec(any::<u8>(), 0..64))
        .prop_map(|(alg, bytes)| Digest::parse(&hash(alg, &bytes)).expect("a valid digest"))
        .boxed()
}

/// Strings that are not digests (N3): an unknown algorithm, upper-case or non-hex digits, the
/// wrong length, no `:`.
pub fn invalid_digest() -> BoxedStrategy<String> {
    let mangled = digest().prop_flat_map(|d| {
        let text = d.to_string();
        let (alg, hex) = text.split_once(':').expect("algorithm:hex");
        prop_oneof![
            Just(format!("{alg}:{}", hex.to_uppercase())),
            Just(format!("{alg}:{}", &hex[1..])),
            Just(format!("{alg}:{hex}0")),
            Just(format!("md5:{hex}")),
            Just(format!("{alg}{hex}")),
            Just(format!("{alg}:{}g", &hex[1..])),
        ]
    });
    prop_oneof![mangled, any::<String>()]
        .prop_filter("outside N3", |d| !valid_digest(d))
        .boxed()
}

/// A manifest to push, with what it references: the blobs to put and the manifests to push
/// before it. Every digest and size in it is right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// The blobs it references (an image's config and layers), to put first.
    pub blobs: Vec<Vec<u8>>,
    /// The manifests it references (an index's children, an artifact's subject), to push
    /// first, in order.
    pub manifests: Vec<Content>,
    /// Its media type.
    pub media_type: String,
    /// Its body.
    pub body: Vec<u8>,
    /// The digest of its body (sha256).
    pub digest: Digest,
}

impl Content {
    fn new(
        media_type: &str,
        body: serde_json::Value,
        blobs: Vec<Vec<u8>>,
        manifests: Vec<Content>,
    ) -> Content {
        let body = serde_json::to_vec(&body).expect("JSON serializes");
        let digest = Digest::parse(&hash(Algorithm::Sha256, &body)).expect("a valid digest");
        Content {
            blobs,
            manifests,
            media_type: media_type.to_owned(),
            body,
            digest,
        }
    }

    /// A descriptor of this manifest, as an index or a referrer names it.
    fn descriptor(&self) -> serde_json::Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.body.len()})
    }

    /// Puts the blobs, pushes the manifests it references, then pushes it by `tag`, or by
    /// digest without one; returns its digest.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use ocistore_testkit::index_content;
    /// use proptest::strategy::{Strategy, ValueTree};
    /// use proptest::test_runner::TestRunner;
    /// let index = index_content().new_tree(&mut TestRunner::default()).unwrap().current();
    /// let repo = ocistore::Registry::open(dir.path())?.repository("app")?;
    /// assert_eq!(index.push(&repo, Some("latest"))?, index.digest);
    /// assert_eq!(repo.pull("latest")?.body, &index.body[..]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn push(&self, repo: &Repository, tag: Option<&str>) -> Result<Digest> {
        for blob in &self.blobs {
            repo.put_blob_sha256(blob)?;
        }
        for manifest in &self.manifests {
            manifest.push(repo, None)?;
        }
        let reference = tag.map_or_else(|| self.digest.to_string(), str::to_owned);
        repo.push_manifest(&reference, &self.media_type, &self.body)
            .map(|pushed| pushed.digest)
    }
}

fn blob_descriptor(media_type: &str, bytes: &[u8]) -> serde_json::Value {
    json!({"mediaType": media_type, "digest": hash(Algorithm::Sha256, bytes), "size": bytes.len()})
}

/// Image manifests, OCI or Docker, over a config and zero to three layers of random bytes.
pub fn image_content() -> BoxedStrategy<Content> {
    let config = (
        prop::sample::select(vec!["amd64", "arm64", "s390x"]),
        prop::sample::select(vec!["linux", "windows"]),
    );
    let layers = prop::collection::vec(prop::collection::vec(any::<u8>(), 0..256), 0..4);
    (any::<bool>(), config, layers)
        .prop_map(|(docker, (architecture, os), layers)| {
            let (media_type, config_type, layer_type) = if docker {
                (
                    DOCKER_MANIFEST,
                    "application/vnd.docker.container.image.v1+json",
                    "application/vnd.docker.image.rootfs.diff.tar.gzip",
                )
            } else {
                (
                    OCI_MANIFEST,
                    "application/vnd.oci.image.config.v1+json",
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                )
            };
            let config = serde_json::to_vec(&json!({"architecture": architecture, "os": os}))
                .expect("JSON serializes");
            let body = json!({
                "schemaVersion": 2,
                "mediaType": media_type,
                "config": blob_descriptor(config_type, &config),
                "layers": layers.iter().map(|l| blob_descriptor(layer_type, l)).collect::<Vec<_>>(),
            });
            Content::new(
                media_type,
                body,
                std::iter::once(config).chain(layers).collect(),
                Vec::new(),
            )
        })
        .boxed()
}

/// Indexes (OCI, or Docker manifest lists of Docker images) over one to three images.
pub fn index_content() -> BoxedStrategy<Content> {
    (any::<bool>(), prop::collection::vec(image_content(), 1..4))
        .prop_map(|(docker, images)| {
            let docker = docker && images.iter().all(|i| i.media_type == DOCKER_MANIFEST);
            let media_type = if docker {
                DOCKER_MANIFEST_LIST
            } else {
                OCI_INDEX
            };
            let body = json!({
                "schemaVersion": 2,
                "mediaType": media_type,
                "manifests": images.iter().map(Content::descriptor).collect::<Vec<_>>(),
            });
            Content::new(media_type, body, Vec::new(), images)
        })
        .boxed()
}

/// The OCI 1.1 empty config of artifacts.
const EMPTY_CONFIG: &[u8] = b"{}";

/// Artifacts (OCI 1.1: an artifact type, the empty config, zero to two layers) whose subject is
/// an image or an index, pushed before them.
pub fn artifact_content() -> BoxedStrategy<Content> {
    let artifact_type = prop::sample::select(vec![
        "application/vnd.example.sbom",
        "application/vnd.example.signature",
    ]);
    let layers = prop::collection::vec(prop::collection::vec(any::<u8>(), 0..128), 0..3);
    let subject = prop_oneof![3 => image_content(), 1 => index_content()];
    (artifact_type, layers, subject)
        .prop_map(|(artifact_type, layers, subject)| {
            let body = json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": artifact_type,
                "config": blob_descriptor("application/vnd.oci.empty.v1+json", EMPTY_CONFIG),
                "layers": layers
                    .iter()
                    .map(|l| blob_descriptor("application/octet-stream", l))
                    .collect::<Vec<_>>(),
                "subject": subject.descriptor(),
            });
            let blobs = std::iter::once(EMPTY_CONFIG.to_vec())
                .chain(layers)
                .collect();
            Content::new(OCI_MANIFEST, body, blobs, vec![subject])
        })
        .boxed()
}
