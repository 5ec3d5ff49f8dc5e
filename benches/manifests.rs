//! Manifest pushes: one by one (each its own transaction, one commit each) and 10,000 in one
//! `Registry::batch`. Blobs are uploaded and bodies built before the timed part; every body is
//! distinct (its own annotation and a layer pair picked from a pool) and pushed by its own tag.

use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use ocistore::manifest::OCI_MANIFEST;
use ocistore::{Digest, Registry, Repository};

const LAYERS: usize = 16;
const BATCH: usize = 10_000;

struct Fixture {
    _dir: tempfile::TempDir,
    registry: Registry,
    repo: Repository,
    config: (Digest, usize),
    layers: Vec<(Digest, usize)>,
}

/// A fresh store with one config blob and `LAYERS` layer blobs linked into one repository.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).unwrap();
    let repo = registry.repository("team/app").unwrap();
    let (config, layers) = registry
        .batch(|b| {
            let config = br#"{"architecture":"amd64","os":"linux"}"#;
            let config = (b.put_blob_sha256(&repo, config)?, config.len());
            let mut layers = Vec::new();
            for i in 0..LAYERS {
                let layer = format!("layer {i} ").repeat(100 + i);
                layers.push((b.put_blob_sha256(&repo, &layer)?, layer.len()));
            }
            Ok((config, layers))
        })
        .unwrap();
    Fixture {
        _dir: dir,
        registry,
        repo,
        config,
        layers,
    }
}

impl Fixture {
    /// The tag and body of manifest number `seq`: the config, two layers chosen by `seq`, and
    /// an annotation naming `seq`.
    fn manifest(&self, seq: u64) -> (String, Vec<u8>) {
        let layer = |i: u64| {
            let (digest, size) = &self.layers[i as usize % LAYERS];
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest,
                "size": size,
            })
        };
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": self.config.0,
                "size": self.config.1,
            },
            "layers": [layer(seq), layer(seq / LAYERS as u64 + 1)],
            "annotations": {"org.opencontainers.image.revision": seq.to_string()},
        });
        (format!("build-{seq}"), serde_json::to_vec(&body).unwrap())
    }

    fn manifests(&self, seq: &mut u64, n: usize) -> Vec<(String, Vec<u8>)> {
        (0..n)
            .map(|_| {
                *seq += 1;
                self.manifest(*seq)
            })
            .collect()
    }
}

fn push(c: &mut Criterion) {
    let mut group = c.benchmark_group("manifests");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));

    group.throughput(Throughput::Elements(1));
    group.bench_function("push_one_per_transaction", |b| {
        b.iter_custom(|iters| {
            let f = fixture();
            let mut seq = 0;
            let manifests = f.manifests(&mut seq, iters as usize);
            let start = Instant::now();
            for (tag, body) in &manifests {
                f.repo.push_manifest(tag, OCI_MANIFEST, body).unwrap();
            }
            start.elapsed()
        })
    });

    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("push_10000_in_one_batch", |b| {
        b.iter_custom(|iters| {
            let f = fixture();
            let mut seq = 0;
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let manifests = f.manifests(&mut seq, BATCH);
                let start = Instant::now();
                f.registry
                    .batch(|b| {
                        for (tag, body) in &manifests {
                            b.push_manifest(&f.repo, tag, OCI_MANIFEST, body)?;
                        }
                        Ok(())
                    })
                    .unwrap();
                total += start.elapsed();
            }
            total
        })
    });

    group.finish();
}

criterion_group!(benches, push);
criterion_main!(benches);
