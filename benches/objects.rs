//! Blobs in object storage (`ObjectStoreBlobs`, feature `object-store`): what the blob paths
//! cost on three backends side by side in one run — the directory on the disk (the default),
//! Azurite (Azure Blob Storage's emulator) and moto's S3 server — and how many requests each
//! operation sends. Every section prints one table, one row per backend:
//!
//! 1. `ingest 64 MiB`: one blob of 64 MiB of random bytes, (a) in one `put_blob` and (b)
//!    streamed: `start_upload`, `append` in 4 MiB chunks, `finish`; MiB/s, and the requests of
//!    one operation (parts of 8 MiB on both object stores).
//! 2. `ingest 1,000 × 4 KiB`: 1,000 distinct small blobs by `put_blob_sha256`, one call (one
//!    transaction) each; blobs/s and requests per blob; then the same 1,000 blobs put again
//!    (known blobs: no request expected).
//! 3. `pulls`: the 64 MiB blob read whole by `blob` (MiB/s), and the 1,000 small blobs read
//!    whole (blobs/s); requests per pull.
//! 4. `collect`: a store of 10,000 image manifests in 10 repositories, built with one
//!    `Registry::batch` per repository: each manifest over a config and two layers of 1 KiB
//!    from its repository's pools of 9 configs and 150 layers, except every 10th manifest, which
//!    has a config of its own (2,590 blobs in all). Those 1,000 manifests are deleted (soft
//!    delete is off), and a full collection with a grace period of zero is timed once: seconds,
//!    blobs swept, the report's mark, sweep and longest write, and the requests it sent.
//!
//! Plain `Instant` timing, not criterion: each figure of sections 1–3 is the median of 3
//! repetitions (each on blobs of its own, so that every put writes), section 4 is one run. An
//! operation against the emulators takes milliseconds to seconds, and criterion's samples would
//! make the run far longer for no better figure. Requests are differences of
//! `ObjectStoreBlobs::requests()` around the operations (the directory sends none: `—`).
//!
//! Each figure stands beside its limit: for the disk, the machine's limits measured first
//! (sha256, one 4 KiB write + fsync, sequential write; `common::machine`), for an object server
//! its round trip, the median of 50 `BlobStore::contains` calls on a missing digest (one HEAD
//! each). A latency is printed as a multiple of its limit (`×fsync`, `×RTT`), a throughput as a
//! fraction of the sequential write (disk) or as round trips per operation (object stores).
//!
//! The emulators are not clouds: both run in memory on loopback, Azurite in Node.js and moto in
//! Python. The figures measure the crate's overhead around each request and, above all, the
//! number of requests per operation; a cloud adds its own latency (milliseconds) to every
//! request, and its bandwidth to every byte.
//!
//! The stores' metadata (and the directory backend's blobs) live on the disk: in a temp
//! directory under the current directory (the package's root), or under `OCISTORE_BENCH_DIR`
//! (`OCISTORE_BENCH_DIR=/dev/shm` for tmpfs). Both servers must be running (a bench whose
//! server does not answer fails, naming the command that starts them):
//!
//! ```text
//! .ci/object-servers start          # Azurite on :10000, moto on :5000 (once)
//! cargo bench --bench objects       # 61 to 105 s of measuring on two cores, after the build
//! ```
//!
//! `OCISTORE_AZURITE_URL` and `OCISTORE_S3_URL` point the bench at other servers. Without
//! `--bench` (`cargo test --benches`), a small pass of every section runs instead.

mod common;

use std::time::{Duration, Instant};

use common::machine::{Limits, scratch};
use common::{manifest_body, random_bytes};
use ocistore::manifest::OCI_MANIFEST;
use ocistore::{
    Algorithm, BlobStore, CollectOptions, CollectReport, Digest, ObjectStoreBlobs, Registry,
    RequestCounts,
};
use ocistore_testkit::servers;
use tempfile::TempDir;

const MIB: usize = 1 << 20;
/// The part size on both object stores (S3 takes 5 MiB and more).
const PART: usize = 8 * MIB;
/// The streamed upload's chunks.
const CHUNK: usize = 4 * MIB;
const SMALL_LEN: usize = 4 << 10;
/// Round trips timed per object server.
const ROUND_TRIPS: usize = 50;
/// Section 4: repositories, each repository's pools, the layers' size; one manifest in
/// `GC_OWN_EVERY` has a config of its own and is deleted.
const GC_REPOSITORIES: usize = 10;
const GC_CONFIGS: usize = 9;
const GC_LAYERS: usize = 150;
const GC_LAYER_LEN: usize = 1 << 10;
const GC_OWN_EVERY: usize = 10;

/// The sizes of one run: the full run, or a small pass under `cargo test --benches`.
struct Plan {
    reps: usize,
    big: usize,
    small: usize,
    manifests_per_repository: usize,
}

const FULL: Plan = Plan {
    reps: 3,
    big: 64 * MIB,
    small: 1_000,
    manifests_per_repository: 1_000,
};

const QUICK: Plan = Plan {
    reps: 1,
    big: 8 * MIB,
    small: 20,
    manifests_per_repository: 20,
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Directory,
    Azurite,
    S3,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Directory, Kind::Azurite, Kind::S3];

    fn name(self) -> &'static str {
        match self {
            Kind::Directory => "directory",
            Kind::Azurite => "azurite",
            Kind::S3 => "moto s3",
        }
    }
}

/// One backend's store: its metadata directory, the registry, and the object store if any.
struct Store {
    kind: Kind,
    _dir: TempDir,
    registry: Registry,
    blobs: Option<ObjectStoreBlobs>,
}

impl Store {
    /// A fresh store: a new directory, and for an object store a fresh prefix on its server.
    fn fresh(kind: Kind, what: &str) -> Store {
        let dir = scratch(&format!("objects-{what}"));
        let blobs = match kind {
            Kind::Directory => None,
            Kind::Azurite => Some(servers::azurite_blobs(PART)),
            Kind::S3 => Some(servers::s3_blobs(PART)),
        };
        let builder = Registry::builder();
        let builder = match &blobs {
            Some(blobs) => builder.blob_store(blobs.clone()),
            None => builder,
        };
        let registry = builder
            .open(dir.path())
            .unwrap_or_else(|e| panic!("open {} store: {e}", kind.name()));
        Store {
            kind,
            _dir: dir,
            registry,
            blobs,
        }
    }

    fn requests(&self) -> Option<RequestCounts> {
        self.blobs.as_ref().map(ObjectStoreBlobs::requests)
    }

    /// The requests sent since `before`, divided by `ops`.
    fn since(&self, before: Option<RequestCounts>, ops: usize) -> Requests {
        match (before, self.requests()) {
            (Some(before), Some(now)) => Requests(Some(diff(&before, &now, ops))),
            _ => Requests(None),
        }
    }
}

/// The request kinds, as `RequestCounts` names them.
const KINDS: [&str; 11] = [
    "put",
    "get",
    "head",
    "list",
    "delete",
    "bulk_delete",
    "multipart_create",
    "multipart_part",
    "multipart_complete",
    "multipart_abort",
    "copy",
];

fn fields(c: &RequestCounts) -> [u64; 11] {
    [
        c.put,
        c.get,
        c.head,
        c.list,
        c.delete,
        c.bulk_delete,
        c.multipart_create,
        c.multipart_part,
        c.multipart_complete,
        c.multipart_abort,
        c.copy,
    ]
}

/// `now - before`, kind by kind, per operation.
fn diff(before: &RequestCounts, now: &RequestCounts, ops: usize) -> [f64; 11] {
    let (a, b) = (fields(before), fields(now));
    std::array::from_fn(|i| (b[i] - a[i]) as f64 / ops.max(1) as f64)
}

/// Requests per operation, or `None` on the directory.
struct Requests(Option<[f64; 11]>);

impl std::fmt::Display for Requests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some(counts) = &self.0 else {
            return f.write_str("—");
        };
        let parts: Vec<String> = counts
            .iter()
            .zip(KINDS)
            .filter(|(n, _)| **n != 0.0)
            .map(|(n, kind)| {
                if n.fract() == 0.0 {
                    format!("{n} {kind}")
                } else {
                    format!("{n:.3} {kind}")
                }
            })
            .collect();
        if parts.is_empty() {
            f.write_str("0")
        } else {
            f.write_str(&parts.join(" + "))
        }
    }
}

/// What a backend's figures are read against: the disk's limits, or a server's round trip.
#[derive(Clone, Copy)]
enum Limit {
    Disk { fsync: Duration, write: f64 },
    Server { rtt: Duration },
}

impl Limit {
    /// A latency against the limit: `×fsync` or `×RTT`.
    fn latency(self, per_op: Duration) -> String {
        match self {
            Limit::Disk { fsync, .. } => {
                format!("{:.2}×fsync", per_op.as_secs_f64() / fsync.as_secs_f64())
            }
            Limit::Server { rtt } => {
                format!("{:.1}×RTT", per_op.as_secs_f64() / rtt.as_secs_f64())
            }
        }
    }

    /// A throughput of `bytes` in `per_op` against the limit: a fraction of the sequential
    /// write, or round trips per operation.
    fn throughput(self, bytes: usize, per_op: Duration) -> String {
        match self {
            Limit::Disk { write, .. } => format!(
                "{:.2}×seq write",
                bytes as f64 / per_op.as_secs_f64() / write
            ),
            Limit::Server { .. } => self.latency(per_op),
        }
    }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn mib_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / MIB as f64 / d.as_secs_f64()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The big blob of variant `v`: the shared random bytes with `v` in their first 8 bytes.
fn variant(bytes: &mut [u8], v: u64) {
    bytes[..8].copy_from_slice(&v.to_le_bytes());
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let plan = if full { &FULL } else { &QUICK };
    let started = Instant::now();

    let base = scratch("limits");
    let limits = Limits::measure(base.path());
    drop(base);
    println!("machine: {limits}");

    // The servers first: a server that is down fails the run now, naming the command.
    let azurite = servers::azurite();
    let s3 = servers::s3();
    println!(
        "object servers: Azurite at {}, moto S3 at {} (container/bucket {}); parts of {} MiB",
        azurite.url,
        s3.url,
        azurite.container,
        PART / MIB
    );
    let mut stores: Vec<Store> = Kind::ALL
        .iter()
        .map(|&kind| Store::fresh(kind, "blobs"))
        .collect();
    let limit_of: Vec<Limit> = stores
        .iter()
        .map(|s| match &s.blobs {
            None => Limit::Disk {
                fsync: limits.fsync,
                write: limits.sequential_write,
            },
            Some(blobs) => Limit::Server {
                rtt: round_trip(blobs),
            },
        })
        .collect();

    println!("\n== limits: what each backend's figures are read against");
    for (store, limit) in stores.iter().zip(&limit_of) {
        match limit {
            Limit::Disk { fsync, write } => println!(
                "  {:<10} one 4 KiB write + fsync {:.3} ms; sequential write {:.0} MiB/s",
                store.kind.name(),
                ms(*fsync),
                write / MIB as f64
            ),
            Limit::Server { rtt } => println!(
                "  {:<10} round trip (contains on a missing digest: one HEAD) {:.3} ms, median of {ROUND_TRIPS}",
                store.kind.name(),
                ms(*rtt)
            ),
        }
    }

    let big = ingest_big(plan, &mut stores, &limit_of);
    let small = ingest_small(plan, &stores, &limit_of);
    pulls(plan, &stores, &limit_of, &big, &small);
    drop(stores);
    collect(plan, &limit_of);

    println!(
        "\ntotal: {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        if full {
            "full run"
        } else {
            "small pass, not a measurement"
        }
    );
}

/// The median of [`ROUND_TRIPS`] `contains` calls on a missing digest, after a few to warm the
/// connection up.
fn round_trip(blobs: &ObjectStoreBlobs) -> Duration {
    let missing = Algorithm::Sha256.digest(b"objects bench: a digest no store holds");
    for _ in 0..5 {
        assert!(!blobs.contains(&missing).expect("contains"));
    }
    let before = blobs.requests();
    let times: Vec<Duration> = (0..ROUND_TRIPS)
        .map(|_| {
            let start = Instant::now();
            let found = blobs.contains(&missing).expect("contains");
            let elapsed = start.elapsed();
            assert!(!found);
            elapsed
        })
        .collect();
    let sent = Requests(Some(diff(&before, &blobs.requests(), ROUND_TRIPS)));
    assert_eq!(sent.to_string(), "1 head", "one contains, one HEAD");
    median(times)
}

/// Section 1. Returns the digest of a big blob that each store holds (for the pulls).
fn ingest_big(plan: &Plan, stores: &mut [Store], limits: &[Limit]) -> Digest {
    let mut bytes = random_bytes(plan.big, 64);
    // Variants 0..reps for put_blob, reps..2×reps for the streamed upload; the same on every
    // backend (each store is empty).
    let digests: Vec<Digest> = (0..2 * plan.reps as u64)
        .map(|v| {
            variant(&mut bytes, v);
            Algorithm::Sha256.digest(&bytes)
        })
        .collect();
    println!(
        "\n== 1. ingest of one {} MiB blob of random bytes: put_blob, and streamed \
         (start_upload + append of {} MiB chunks + finish); median of {}",
        plan.big / MIB,
        CHUNK / MIB,
        plan.reps
    );
    println!(
        "  {:<10} {:>9} {:>15} {:>9} {:>15}   requests per put_blob | per streamed upload",
        "backend", "put MiB/s", "vs limit", "str MiB/s", "vs limit"
    );
    for (store, limit) in stores.iter_mut().zip(limits) {
        let repo = store.registry.repository("bench/big").unwrap();
        let mut put_times = Vec::new();
        let before = store.requests();
        for (v, digest) in digests.iter().enumerate().take(plan.reps) {
            variant(&mut bytes, v as u64);
            let start = Instant::now();
            repo.put_blob(digest, &bytes).expect("put_blob");
            put_times.push(start.elapsed());
        }
        let put_requests = store.since(before, plan.reps);

        let mut streamed_times = Vec::new();
        let before = store.requests();
        for (v, digest) in digests.iter().enumerate().skip(plan.reps) {
            variant(&mut bytes, v as u64);
            let start = Instant::now();
            let upload = repo.start_upload().expect("start_upload");
            for chunk in bytes.chunks(CHUNK) {
                upload.append(chunk).expect("append");
            }
            upload.finish(digest).expect("finish");
            streamed_times.push(start.elapsed());
        }
        let streamed_requests = store.since(before, plan.reps);

        let (put, streamed) = (median(put_times), median(streamed_times));
        println!(
            "  {:<10} {:>9.1} {:>15} {:>9.1} {:>15}   {put_requests} | {streamed_requests}",
            store.kind.name(),
            mib_per_s(plan.big, put),
            limit.throughput(plan.big, put),
            mib_per_s(plan.big, streamed),
            limit.throughput(plan.big, streamed),
        );
    }
    digests[0].clone()
}

/// Section 2. Returns the digests of the first repetition's blobs (for the pulls).
fn ingest_small(plan: &Plan, stores: &[Store], limits: &[Limit]) -> Vec<Digest> {
    let sets: Vec<Vec<Vec<u8>>> = (0..plan.reps)
        .map(|r| {
            (0..plan.small)
                .map(|i| random_bytes(SMALL_LEN, 1_000_000 * (r as u64 + 1) + i as u64))
                .collect()
        })
        .collect();
    println!(
        "\n== 2. ingest of {} distinct blobs of {} KiB, put_blob_sha256 one at a time (one \
         transaction each); median of {} sets; then the first set put again (known blobs)",
        plan.small,
        SMALL_LEN >> 10,
        plan.reps
    );
    println!(
        "  {:<10} {:>8} {:>9} {:>10}   {:<22} {:>8} {:>9}   requests again",
        "backend", "blobs/s", "ms/blob", "vs limit", "requests per new blob", "again/s", "ms/blob"
    );
    let mut first = Vec::new();
    for (store, limit) in stores.iter().zip(limits) {
        let repo = store.registry.repository("bench/small").unwrap();
        let mut times = Vec::new();
        let before = store.requests();
        for set in &sets {
            let start = Instant::now();
            for bytes in set {
                repo.put_blob_sha256(bytes).expect("put_blob_sha256");
            }
            times.push(start.elapsed());
        }
        let requests = store.since(before, plan.reps * plan.small);

        let before = store.requests();
        let start = Instant::now();
        let digests: Vec<Digest> = sets[0]
            .iter()
            .map(|bytes| repo.put_blob_sha256(bytes).expect("put_blob_sha256 again"))
            .collect();
        let again = start.elapsed();
        let again_requests = store.since(before, plan.small);
        first = digests;

        let per_blob = median(times) / plan.small as u32;
        let again_per_blob = again / plan.small as u32;
        println!(
            "  {:<10} {:>8.0} {:>9.3} {:>10}   {:<22} {:>8.0} {:>9.3}   {again_requests}",
            store.kind.name(),
            1.0 / per_blob.as_secs_f64(),
            ms(per_blob),
            limit.latency(per_blob),
            requests.to_string(),
            1.0 / again_per_blob.as_secs_f64(),
            ms(again_per_blob),
        );
    }
    first
}

/// Section 3: the big blob and the small ones read whole.
fn pulls(plan: &Plan, stores: &[Store], limits: &[Limit], big: &Digest, small: &[Digest]) {
    println!(
        "\n== 3. pulls, blob() read whole: the {} MiB blob, and the {} small blobs; median of {}",
        plan.big / MIB,
        small.len(),
        plan.reps
    );
    println!(
        "  {:<10} {:>9} {:>10}   {:<14} {:>8} {:>9} {:>10}   requests per small pull",
        "backend", "big MiB/s", "vs limit", "requests", "blobs/s", "ms/blob", "vs limit"
    );
    for (store, limit) in stores.iter().zip(limits) {
        let repo = store.registry.repository("bench/big").unwrap();
        let mut times = Vec::new();
        let before = store.requests();
        for _ in 0..plan.reps {
            let start = Instant::now();
            let bytes = repo.blob(big).expect("blob");
            times.push(start.elapsed());
            assert_eq!(bytes.len(), plan.big);
        }
        let big_requests = store.since(before, plan.reps);
        let big_time = median(times);

        let repo = store.registry.repository("bench/small").unwrap();
        let mut times = Vec::new();
        let before = store.requests();
        for _ in 0..plan.reps {
            let start = Instant::now();
            for digest in small {
                let bytes = repo.blob(digest).expect("blob");
                assert_eq!(bytes.len(), SMALL_LEN);
            }
            times.push(start.elapsed());
        }
        let small_requests = store.since(before, plan.reps * small.len());
        let per_blob = median(times) / small.len() as u32;

        // The disk's limits are about writing: the directory's reads (from the page cache)
        // have none measured.
        let (big_limit, small_limit) = match limit {
            Limit::Disk { .. } => ("—".to_owned(), "—".to_owned()),
            Limit::Server { .. } => (
                limit.throughput(plan.big, big_time),
                limit.latency(per_blob),
            ),
        };
        println!(
            "  {:<10} {:>9.1} {:>10}   {:<14} {:>8.0} {:>9.3} {:>10}   {small_requests}",
            store.kind.name(),
            mib_per_s(plan.big, big_time),
            big_limit,
            big_requests.to_string(),
            1.0 / per_blob.as_secs_f64(),
            ms(per_blob),
            small_limit,
        );
    }
}

/// Section 4: build the store on each backend, delete one manifest in ten, collect once.
fn collect(plan: &Plan, limits: &[Limit]) {
    let manifests = GC_REPOSITORIES * plan.manifests_per_repository;
    println!(
        "\n== 4. a full collection (grace 0) of {manifests} image manifests in \
         {GC_REPOSITORIES} repositories, after deleting the {} with a config of their own",
        manifests / GC_OWN_EVERY
    );
    let mut rows = Vec::new();
    for (&kind, limit) in Kind::ALL.iter().zip(limits) {
        let store = Store::fresh(kind, "collect");
        let start = Instant::now();
        let (blobs, deleted) = build_collectable(plan, &store.registry);
        let built = start.elapsed();
        let before = store.requests();
        let start = Instant::now();
        let report = store
            .registry
            .collect(&CollectOptions::default().grace_period(Duration::ZERO))
            .expect("collect");
        let took = start.elapsed();
        let requests = store.since(before, 1);
        assert_eq!(report.blobs_swept, deleted, "{}: swept", kind.name());
        rows.push((kind, *limit, blobs, built, took, report, requests));
    }
    println!(
        "  {:<10} {:>6} {:>8} {:>8} {:>6} {:>9} {:>9} {:>10} {:>13}   requests of the collection",
        "backend",
        "blobs",
        "build s",
        "collect",
        "swept",
        "mark ms",
        "sweep ms",
        "longest ms",
        "per swept"
    );
    for (kind, limit, blobs, built, took, report, requests) in rows {
        let CollectReport {
            blobs_swept,
            mark_time,
            sweep_time,
            longest_write,
            ..
        } = report;
        let per_swept = took / u32::try_from(blobs_swept.max(1)).unwrap();
        println!(
            "  {:<10} {:>6} {:>8.1} {:>7.2}s {:>6} {:>9.1} {:>9.1} {:>10.1} {:>13}   {requests}",
            kind.name(),
            blobs,
            built.as_secs_f64(),
            took.as_secs_f64(),
            blobs_swept,
            ms(mark_time),
            ms(sweep_time),
            ms(longest_write),
            limit.latency(per_swept),
        );
    }
    println!(
        "  (per swept: the collection's time divided by the blobs swept, against the limit; \
         expected requests: about one bulk delete per 128 swept blobs)"
    );
}

/// Fills `registry` with the collection's store: per repository one batch of its pools and
/// manifests, and one that deletes the manifests with a config of their own. Returns the
/// number of blobs and of deleted manifests (= the blobs a collection sweeps).
fn build_collectable(plan: &Plan, registry: &Registry) -> (u64, u64) {
    // Every layer of the pool is referenced (a smaller pool in the small pass).
    let pool = GC_LAYERS.min(plan.manifests_per_repository);
    let mut blobs = 0;
    let mut deleted = 0;
    for r in 0..GC_REPOSITORIES {
        let repo = registry.repository(&format!("team{r}/app")).unwrap();
        let doomed = registry
            .batch(|b| {
                let config = |seq: usize| {
                    format!(
                        r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"build":"gc{r}-{seq}"}}}}}}"#
                    )
                    .into_bytes()
                };
                let mut configs = Vec::new();
                for c in 0..GC_CONFIGS {
                    let bytes = config(1_000_000 + c);
                    configs.push((b.put_blob_sha256(&repo, &bytes)?, bytes.len()));
                }
                let mut layers = Vec::new();
                for l in 0..pool {
                    let bytes = random_bytes(GC_LAYER_LEN, ((r as u64) << 32) + l as u64);
                    layers.push((b.put_blob_sha256(&repo, &bytes)?, bytes.len()));
                }
                let mut doomed = Vec::new();
                for m in 0..plan.manifests_per_repository {
                    let own = m % GC_OWN_EVERY == 0;
                    let config = if own {
                        let bytes = config(m);
                        (b.put_blob_sha256(&repo, &bytes)?, bytes.len())
                    } else {
                        configs[m % GC_OWN_EVERY - 1].clone()
                    };
                    let a = &layers[m % pool];
                    let z = &layers[(m * 7 + 1) % pool];
                    let tag = format!("build-{m}");
                    let body = manifest_body((&config.0, config.1), &[(&a.0, a.1), (&z.0, z.1)], &tag);
                    let pushed = b.push_manifest(&repo, &tag, OCI_MANIFEST, &body)?;
                    if own {
                        doomed.push(pushed.digest);
                    }
                }
                Ok(doomed)
            })
            .expect("build batch");
        registry
            .batch(|b| {
                for digest in &doomed {
                    b.delete_manifest(&repo, digest.as_ref())?;
                }
                Ok(())
            })
            .expect("delete batch");
        blobs += (GC_CONFIGS + pool + doomed.len()) as u64;
        deleted += doomed.len() as u64;
    }
    (blobs, deleted)
}
