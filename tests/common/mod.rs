//! Fixtures shared by the integration tests: a store on a manual clock, manifest bodies, and a
//! snapshot of everything a store holds, to prove that a failed call wrote nothing.
#![allow(dead_code)] // each test file uses its own subset

use std::path::Path;
use std::time::Duration;

use ocistore::manifest::{OCI_INDEX, OCI_MANIFEST};
use ocistore::{Digest, ManifestQuery, ManualClock, Page, Registry, Repository, Timestamp};
use serde_json::json;
use tempfile::TempDir;

pub const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// 2026-01-01T00:00:00Z, where every test clock starts.
pub const START: Timestamp = Timestamp::from_nanos(1_767_225_600 * 1_000_000_000);

pub struct Store {
    pub dir: TempDir,
    pub registry: Registry,
    pub clock: ManualClock,
}

impl Store {
    pub fn new() -> Store {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(START);
        let registry = open(dir.path(), &clock);
        Store {
            dir,
            registry,
            clock,
        }
    }

    /// Closes the store and opens it again on the same clock. Every other handle on the
    /// registry (a `Repository` keeps one) must be dropped first.
    pub fn reopen(self) -> Store {
        let Store {
            dir,
            registry,
            clock,
        } = self;
        drop(registry);
        let registry = open(dir.path(), &clock);
        Store {
            dir,
            registry,
            clock,
        }
    }

    pub fn repo(&self, name: &str) -> Repository {
        self.registry.repository(name).expect("valid name")
    }

    pub fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }
}

pub fn open(path: &Path, clock: &ManualClock) -> Registry {
    Registry::builder()
        .clock(clock.clone())
        .cache_size(16 << 20)
        .open(path)
        .expect("open store")
}

/// An OCI image manifest body over the given config and layers (digest, size).
pub fn image_body(config: &(Digest, u64), layers: &[(Digest, u64)]) -> serde_json::Value {
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": CONFIG_TYPE, "digest": config.0, "size": config.1},
        "layers": layers.iter().map(|(d, s)| json!({"mediaType": LAYER_TYPE, "digest": d, "size": s})).collect::<Vec<_>>(),
    })
}

/// An OCI image index body over the given child manifests (digest, size).
pub fn index_body(children: &[(Digest, u64)]) -> serde_json::Value {
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": children.iter().map(|(d, s)| json!({"mediaType": OCI_MANIFEST, "digest": d, "size": s})).collect::<Vec<_>>(),
    })
}

/// Uploads a config and one layer per entry of `layers` into `repo` and returns the body of an
/// image manifest over them.
pub fn upload_image(repo: &Repository, config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    let put = |bytes: &[u8]| {
        (
            repo.put_blob_sha256(bytes).expect("put blob"),
            bytes.len() as u64,
        )
    };
    let config = put(config);
    let layers: Vec<_> = layers.iter().map(|l| put(l)).collect();
    serde_json::to_vec(&image_body(&config, &layers)).unwrap()
}

/// Pushes an image of fresh blobs (named after `seed`) under `reference`; returns its digest.
pub fn push_image(repo: &Repository, reference: &str, seed: &str) -> Digest {
    let body = upload_image(
        repo,
        format!("config {seed}").as_bytes(),
        &[format!("layer {seed}").as_bytes()],
    );
    repo.push_manifest(reference, OCI_MANIFEST, &body)
        .expect("push image")
}

/// Everything a store holds, as text: every repository with its tags, manifests and blob
/// links (through the public API), and every file of the store with its size.
pub fn snapshot(registry: &Registry) -> String {
    let mut out = String::new();
    for name in registry.repositories(&Page::all()).unwrap() {
        let repo = registry.repository(&name).unwrap();
        out += &format!("repository {name}\n");
        for tag in repo.tags(&Page::all()).unwrap() {
            out += &format!("  tag {tag:?}\n");
        }
        for m in repo.manifests(&ManifestQuery::default()).unwrap() {
            out += &format!("  manifest {m:?}\n");
        }
        for blob in repo.blobs(&Page::all()).unwrap() {
            out += &format!("  blob {blob}\n");
        }
    }
    let mut files = Vec::new();
    list_files(registry.path(), registry.path(), &mut files);
    files.sort();
    for f in files {
        out += &format!("file {f}\n");
    }
    out
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            list_files(root, &path, out);
        } else if path.file_name().unwrap() != "metadata.redb" {
            let size = path.metadata().unwrap().len();
            out.push(format!(
                "{} {size}",
                path.strip_prefix(root).unwrap().display()
            ));
        }
    }
}
