//! Blob ingest throughput: one-shot `Repository::put_blob` of 64 MiB, the streamed upload path
//! in 8 MiB chunks, and raw sha256 over the same bytes for comparison.
//!
//! Every timed ingest stores a new blob: a few bytes of the buffer change before each one, and
//! its digest is computed outside the timed part. Each benchmark runs on its own store in a temp
//! directory.
//!
//! After each timed ingest the blob's file is removed (outside the timed part; the digest is
//! never used again). Besides bounding the disk use, this lets the next ingest write into page
//! cache pages that were just freed, as it would on a long-running server whose memory is full
//! of page cache. Keeping the files instead makes every ingest write into never-touched memory,
//! which on this VM (free page reporting to the host) costs ~250 ms per 64 MiB in first-touch
//! faults and would measure the hypervisor, not this crate.

mod common;

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::random_bytes;
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use ocistore::{Algorithm, Digest, Registry};

const SIZE: usize = 64 << 20;
const CHUNK: usize = 8 << 20;

/// Makes `bytes` a blob never stored before (its first 8 bytes count up) and returns its digest.
fn next_blob(bytes: &mut [u8], counter: &mut u64) -> Digest {
    *counter += 1;
    bytes[..8].copy_from_slice(&counter.to_le_bytes());
    Algorithm::Sha256.digest(bytes)
}

/// The file of blob `digest` (the layout of docs/design.md: `blobs/<alg>/<2 hex>/<hex>`).
fn blob_file(registry: &Registry, digest: &Digest) -> PathBuf {
    let hex = digest.hex();
    registry
        .path()
        .join("blobs")
        .join(digest.algorithm().name())
        .join(&hex[..2])
        .join(hex)
}

/// Times `ingest` over fresh blobs, each removed afterwards, outside the timing.
fn time_ingests(
    registry: &Registry,
    iters: u64,
    bytes: &mut [u8],
    counter: &mut u64,
    mut ingest: impl FnMut(&Digest, &[u8]),
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let digest = next_blob(bytes, counter);
        let start = Instant::now();
        ingest(&digest, bytes);
        total += start.elapsed();
        std::fs::remove_file(blob_file(registry, &digest)).unwrap();
    }
    total
}

fn ingest(c: &mut Criterion) {
    let mut bytes = random_bytes(SIZE, 0x9e37_79b9_7f4a_7c15);
    let mut counter = 0u64;

    let mut group = c.benchmark_group("ingest_64MiB");
    group
        .throughput(Throughput::Bytes(SIZE as u64))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));

    group.bench_function("sha256", |b| {
        b.iter(|| Algorithm::Sha256.digest(black_box(&bytes)))
    });

    group.bench_function("put_blob", |b| {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        let repo = registry.repository("bench/ingest").unwrap();
        b.iter_custom(|iters| {
            time_ingests(
                &registry,
                iters,
                &mut bytes,
                &mut counter,
                |digest, bytes| repo.put_blob(digest, bytes).unwrap(),
            )
        })
    });

    group.bench_function("upload_8MiB_chunks", |b| {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        let repo = registry.repository("bench/ingest").unwrap();
        b.iter_custom(|iters| {
            time_ingests(
                &registry,
                iters,
                &mut bytes,
                &mut counter,
                |digest, bytes| {
                    let upload = repo.start_upload().unwrap();
                    for chunk in bytes.chunks(CHUNK) {
                        upload.append(chunk).unwrap();
                    }
                    upload.finish(digest).unwrap();
                },
            )
        })
    });

    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
