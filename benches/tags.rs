//! Tag resolution: `Repository::resolve` on a store of 1,000 tags in 10 repositories, one
//! thread, reported as resolutions per second.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ocistore::manifest::OCI_MANIFEST;
use ocistore::{Registry, Repository};

const REPOSITORIES: usize = 10;
const TAGS_PER_REPOSITORY: usize = 100;

/// An image manifest over one config blob, made distinct by an annotation.
fn image_body(config: &ocistore::Digest, config_size: usize, seq: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config,
            "size": config_size,
        },
        "layers": [],
        "annotations": {"org.opencontainers.image.revision": seq.to_string()},
    }))
    .unwrap()
}

/// Fills a store with `REPOSITORIES` × `TAGS_PER_REPOSITORY` tags, each on its own manifest,
/// and returns every (repository, tag) pair.
fn populate(registry: &Registry) -> Vec<(Repository, String)> {
    let mut pairs = Vec::new();
    for r in 0..REPOSITORIES {
        let repo = registry.repository(&format!("team{r}/app")).unwrap();
        let config = br#"{"architecture":"amd64","os":"linux"}"#;
        registry
            .batch(|b| {
                let digest = b.put_blob_sha256(&repo, config)?;
                for t in 0..TAGS_PER_REPOSITORY {
                    let body = image_body(&digest, config.len(), r * TAGS_PER_REPOSITORY + t);
                    b.push_manifest(&repo, &format!("v1.{t}"), OCI_MANIFEST, &body)?;
                }
                Ok(())
            })
            .unwrap();
        for t in 0..TAGS_PER_REPOSITORY {
            pairs.push((repo.clone(), format!("v1.{t}")));
        }
    }
    pairs
}

fn resolve(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).unwrap();
    let pairs = populate(&registry);
    // Visit the tags in a scattered order, not in key order.
    let order: Vec<usize> = (0..pairs.len()).map(|i| (i * 617) % pairs.len()).collect();

    let mut group = c.benchmark_group("tags_1000_in_10_repositories");
    group
        .throughput(Throughput::Elements(1))
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("resolve", |b| {
        let mut i = 0;
        b.iter(|| {
            let (repo, tag) = &pairs[order[i]];
            i = (i + 1) % order.len();
            repo.resolve(black_box(tag)).unwrap()
        })
    });
    group.bench_function("resolve_unknown_tag", |b| {
        let mut i = 0;
        b.iter(|| {
            let (repo, _) = &pairs[order[i]];
            i = (i + 1) % order.len();
            repo.resolve(black_box("no-such-tag")).unwrap_err()
        })
    });
    group.finish();
}

criterion_group!(benches, resolve);
criterion_main!(benches);
