//! Helpers shared by the benchmarks that build a store once and measure on copies of it, and
//! [`machine`]: where the stores go and the machine's limits printed beside the figures. Each
//! benchmark uses some of them.
#![allow(dead_code)]

pub mod machine;

use std::path::Path;

use ocistore::manifest::OCI_MANIFEST;
use ocistore::{Digest, ManualClock, Registry, Timestamp};

/// Opens the store in `dir` on a manual clock stopped at `now`.
pub fn open(dir: &Path, now: Timestamp) -> Registry {
    Registry::builder()
        .clock(ManualClock::new(now))
        .open(dir)
        .expect("open store")
}

/// Copies the directory tree `from` into `to`: a fresh store for a run that changes it.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// An image manifest over a config and layers, made distinct by an annotation.
pub fn manifest_body(config: (&Digest, usize), layers: &[(&Digest, usize)], note: &str) -> Vec<u8> {
    let layers: Vec<_> = layers
        .iter()
        .map(|(digest, size)| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest,
                "size": size,
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config.0,
            "size": config.1,
        },
        "layers": layers,
        "annotations": {"org.opencontainers.image.revision": note},
    }))
    .unwrap()
}

/// `len` pseudo-random, incompressible bytes (xorshift from `seed`).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
