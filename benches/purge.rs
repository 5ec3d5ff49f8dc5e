//! Purge by filter at scale: 1,000 repositories × 100 tags (100,000 tags), each tag on an
//! image manifest of its own, all of them older than the purge's `ago`.
//!
//! Measured, with the soft delete policy off and on: a dry run over all of it (with
//! `untagged`), and real runs that untag every tag ("tags only"), or also delete every
//! manifest ("untagged too": 100,000 untags and 100,000 manifest deletes). The store is built once (one config blob, mounted into every
//! repository; 1,000 manifests per transaction) on tmpfs (`/dev/shm`) when there is one, so
//! the figures measure the purge's metadata work rather than a disk; each real run works on a
//! fresh copy of it, made outside the timing.
//!
//! ```text
//! cargo bench --bench purge
//! ```

mod common;

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{copy_dir, open};
use criterion::{BatchSize, Criterion, SamplingMode, criterion_group, criterion_main};
use ocistore::manifest::OCI_MANIFEST;
use ocistore::{PurgeOptions, PurgeReport, SoftDeletePolicy, Timestamp, parse_ago};
use serde_json::json;
use tempfile::TempDir;

const REPOSITORIES: usize = 1_000;
const TAGS_PER_REPOSITORY: usize = 100;
const TAGS: usize = REPOSITORIES * TAGS_PER_REPOSITORY;
/// Repositories pushed per transaction while building: 1,000 manifests.
const REPOSITORIES_PER_BATCH: usize = 10;

/// 2026-01-01T00:00:00Z: when everything is pushed.
const START: Timestamp = Timestamp::from_nanos(1_767_225_600 * 1_000_000_000);
/// The purge runs two days later, with `ago` one day: every tag and manifest is old enough.
const PURGE_AT: Timestamp = Timestamp::from_nanos((1_767_225_600 + 2 * 86_400) * 1_000_000_000);

fn repository(i: usize) -> String {
    format!("team/app-{i:04}")
}

/// A directory on tmpfs if there is one, else in the temp directory.
fn scratch_dir() -> TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).expect("tempdir in /dev/shm")
    } else {
        tempfile::tempdir().expect("tempdir")
    }
}

/// The store: 1,000 repositories of 100 tagged image manifests, pushed at `START`.
fn prepare() -> TempDir {
    let started = Instant::now();
    let dir = scratch_dir();
    let registry = open(dir.path(), START);
    let config_bytes = br#"{"architecture":"amd64","os":"linux"}"#;
    let first = registry.repository(&repository(0)).unwrap();
    let config = first.put_blob_sha256(config_bytes).unwrap();
    for chunk in (0..REPOSITORIES)
        .collect::<Vec<_>>()
        .chunks(REPOSITORIES_PER_BATCH)
    {
        let repos: Vec<_> = chunk
            .iter()
            .map(|&r| registry.repository(&repository(r)).unwrap())
            .collect();
        registry
            .batch(|b| {
                for (repo, &r) in repos.iter().zip(chunk) {
                    if r != 0 {
                        b.mount_blob(repo, &first, &config)?;
                    }
                    for t in 0..TAGS_PER_REPOSITORY {
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
                            "annotations": {"org.example.build": format!("{r}-{t}")},
                        }))
                        .unwrap();
                        b.push_manifest(repo, &format!("build-{t}"), OCI_MANIFEST, &body)?;
                    }
                }
                Ok(())
            })
            .unwrap();
    }
    drop(registry);
    let size = std::fs::metadata(dir.path().join("metadata.redb"))
        .unwrap()
        .len();
    eprintln!(
        "prepared {TAGS} tags on {TAGS} manifests in {REPOSITORIES} repositories under {} in \
         {:.1?}; metadata.redb is {:.1} MiB",
        dir.path().display(),
        started.elapsed(),
        size as f64 / (1 << 20) as f64
    );
    dir
}

fn options(dry_run: bool, untagged: bool) -> PurgeOptions {
    let mut options = PurgeOptions::new(["team/.*:.*"]).unwrap();
    options.ago = parse_ago("1d").unwrap();
    options.untagged = untagged;
    options.dry_run = dry_run;
    options
}

fn check(report: &PurgeReport, untagged: bool) {
    assert_eq!(
        (
            report.repositories.len(),
            report.tags_untagged(),
            report.manifests_deleted(),
            report.locked()
        ),
        (REPOSITORIES, TAGS, if untagged { TAGS } else { 0 }, 0)
    );
}

fn policy(soft_delete: bool) -> SoftDeletePolicy {
    if soft_delete {
        SoftDeletePolicy::enabled(7).unwrap()
    } else {
        SoftDeletePolicy::disabled(7).unwrap()
    }
}

fn bench(c: &mut Criterion) {
    let template = prepare();

    let mut group = c.benchmark_group("purge/dry_run");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    for soft_delete in [false, true] {
        // A dry run changes nothing: it runs on the template itself.
        let registry = open(template.path(), PURGE_AT);
        registry
            .set_soft_delete_policy(policy(soft_delete))
            .unwrap();
        let name = format!(
            "100,000 tags in 1,000 repositories, soft delete {}",
            if soft_delete { "on" } else { "off" }
        );
        let options = options(true, true);
        group.bench_function(name, |b| {
            b.iter(|| {
                let report = registry.purge(&options).unwrap();
                check(&report, true);
                black_box(report)
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("purge/real");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20));
    for (untagged, soft_delete) in [(false, false), (false, true), (true, false), (true, true)] {
        let name = format!(
            "100,000 tags in 1,000 repositories, {}, soft delete {}",
            if untagged {
                "untagged too"
            } else {
                "tags only"
            },
            if soft_delete { "on" } else { "off" }
        );
        let options = options(false, untagged);
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let copy = scratch_dir();
                    copy_dir(template.path(), copy.path());
                    let registry = open(copy.path(), PURGE_AT);
                    registry
                        .set_soft_delete_policy(policy(soft_delete))
                        .unwrap();
                    (copy, registry)
                },
                |(copy, registry)| {
                    let report = registry.purge(&options).unwrap();
                    check(&report, untagged);
                    // Dropped after the timing.
                    (copy, registry, report)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
