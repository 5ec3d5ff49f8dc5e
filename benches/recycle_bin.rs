//! The recycle bin at scale: 10 repositories × 10,000 soft-deleted manifests (100,000 manifest
//! tombstones, and 10,000 tag tombstones: every tenth manifest carried a tag).
//!
//! Measured: listing the bin (`deleted_manifests` of each repository, `deleted_tags`), and one
//! autopurge (`run_now` past the retention) that purges all of it. Each purge runs on a fresh
//! copy of a store prepared once, outside the timing.
//!
//! ```text
//! cargo bench --bench recycle_bin
//! ```

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{copy_dir, open};
use criterion::{BatchSize, Criterion, SamplingMode, criterion_group, criterion_main};
use ocistore::manifest::OCI_MANIFEST;
use ocistore::{Algorithm, Digest, SoftDeletePolicy, Timestamp};
use serde_json::json;
use tempfile::TempDir;

const REPOSITORIES: usize = 10;
const PER_REPOSITORY: usize = 10_000;
/// Every this many manifests one is pushed with a tag, so the bin holds tags too.
const TAGGED_EVERY: usize = 10;
/// Manifests pushed, and deleted, per transaction while preparing.
const CHUNK: usize = 1_000;
const RETENTION_DAYS: u32 = 7;

/// 2026-01-01T00:00:00Z.
const START: Timestamp = Timestamp::from_nanos(1_767_225_600 * 1_000_000_000);

fn repository(i: usize) -> String {
    format!("team/app-{i:02}")
}

/// A store holding 100,000 manifests in the recycle bin, deleted at `START`.
fn prepare() -> TempDir {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = open(dir.path(), START);
    registry
        .set_soft_delete_policy(SoftDeletePolicy::enabled(RETENTION_DAYS).unwrap())
        .unwrap();
    for r in 0..REPOSITORIES {
        let repo = registry.repository(&repository(r)).unwrap();
        let config_bytes = br#"{"architecture":"amd64","os":"linux"}"#;
        let config = repo.put_blob_sha256(config_bytes).unwrap();
        let mut digests: Vec<Digest> = Vec::with_capacity(PER_REPOSITORY);
        for chunk in (0..PER_REPOSITORY).collect::<Vec<_>>().chunks(CHUNK) {
            let bodies: Vec<(String, Vec<u8>)> = chunk
                .iter()
                .map(|&i| {
                    // One shared config; the annotation makes every manifest distinct.
                    let body = serde_json::to_vec(&json!({
                        "schemaVersion": 2,
                        "mediaType": OCI_MANIFEST,
                        "config": {
                            "mediaType": "application/vnd.oci.image.config.v1+json",
                            "digest": config,
                            "size": config_bytes.len(),
                        },
                        "layers": [],
                        "annotations": {"org.example.build": format!("{r}-{i}")},
                    }))
                    .unwrap();
                    let reference = if i % TAGGED_EVERY == 0 {
                        format!("build-{i}")
                    } else {
                        Algorithm::Sha256.digest(&body).to_string()
                    };
                    (reference, body)
                })
                .collect();
            let pushed = registry
                .batch(|b| {
                    bodies
                        .iter()
                        .map(|(reference, body)| {
                            b.push_manifest(&repo, reference, OCI_MANIFEST, body)
                                .map(|pushed| pushed.digest)
                        })
                        .collect::<ocistore::Result<Vec<_>>>()
                })
                .unwrap();
            digests.extend(pushed);
        }
        for chunk in digests.chunks(CHUNK) {
            registry
                .batch(|b| {
                    for digest in chunk {
                        b.delete_manifest(&repo, digest.as_str())?;
                    }
                    Ok(())
                })
                .unwrap();
        }
        assert_eq!(repo.deleted_manifests().unwrap().len(), PER_REPOSITORY);
    }
    drop(registry);
    let size = std::fs::metadata(dir.path().join("metadata.redb"))
        .unwrap()
        .len();
    eprintln!(
        "prepared {} tombstoned manifests ({} tags) in {:.1?}; metadata.redb is {:.1} MiB",
        REPOSITORIES * PER_REPOSITORY,
        REPOSITORIES * PER_REPOSITORY / TAGGED_EVERY,
        started.elapsed(),
        size as f64 / (1 << 20) as f64
    );
    dir
}

fn bench(c: &mut Criterion) {
    let template = prepare();
    let total = REPOSITORIES * PER_REPOSITORY;
    let tags = total / TAGGED_EVERY;

    {
        let registry = open(template.path(), START);
        let repos: Vec<_> = (0..REPOSITORIES)
            .map(|r| registry.repository(&repository(r)).unwrap())
            .collect();
        let mut group = c.benchmark_group("recycle_bin/list");
        group.sample_size(10);
        group.bench_function("deleted_manifests: 10 repositories x 10,000", |b| {
            b.iter(|| {
                let n: usize = repos
                    .iter()
                    .map(|repo| repo.deleted_manifests().unwrap().len())
                    .sum();
                assert_eq!(n, total);
                black_box(n)
            })
        });
        group.bench_function("deleted_manifests: one repository of 10,000", |b| {
            b.iter(|| black_box(repos[0].deleted_manifests().unwrap()))
        });
        group.bench_function("deleted_tags: 10 repositories x 1,000", |b| {
            b.iter(|| {
                let n: usize = repos
                    .iter()
                    .map(|repo| repo.deleted_tags(None).unwrap().len())
                    .sum();
                assert_eq!(n, tags);
                black_box(n)
            })
        });
        group.bench_function("deleted_tags(one name): one repository", |b| {
            b.iter(|| {
                let found = repos[0].deleted_tags(Some("build-5000")).unwrap();
                assert_eq!(found.len(), 1);
                black_box(found)
            })
        });
        group.finish();
    }

    let mut group = c.benchmark_group("recycle_bin/autopurge");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20));
    let expired = START.saturating_add(Duration::from_secs(
        u64::from(RETENTION_DAYS) * 86_400 + 3_600,
    ));
    group.bench_function("run_now: 100,000 manifests + 10,000 tags", |b| {
        b.iter_batched(
            || {
                let copy = tempfile::tempdir().unwrap();
                copy_dir(template.path(), copy.path());
                let registry = open(copy.path(), expired);
                (copy, registry)
            },
            |(copy, registry)| {
                let report = registry.run_now().unwrap();
                assert_eq!(
                    (report.manifests, report.tags, report.repositories),
                    (total, tags, 0)
                );
                // Dropped after the timing.
                (copy, registry)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
