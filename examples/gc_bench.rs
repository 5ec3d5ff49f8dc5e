//! The collector on a synthetic store: builds a registry from parameters, runs a full
//! collection (mark and sweep) on it while another thread keeps writing, and prints what it
//! measured as JSON lines.
//!
//! ```text
//! cargo run --release --example gc_bench -- --repos 1000 --manifests 100 --layers 5 \
//!     --shared 0.3 --untagged 0.2 --unreferenced 0.02 --seed 1
//! cargo run --release --example gc_bench -- --scale-check      # 1/10 of the size, then all of it
//! ```
//!
//! The store has `--repos` repositories of `--manifests` image manifests each, every manifest
//! a config and `--layers` layers. A layer slot is drawn with probability `--shared` from a
//! pool of layers shared across repositories (`--pool` of them, one per repository by
//! default), else it is a layer of its own. A manifest is pushed by digest, so left untagged,
//! with probability `--untagged`, else by tag. Each repository also gets blobs that nothing
//! references, `--unreferenced` of all blobs: the garbage the run removes. Untagged manifests
//! are roots like the others (every manifest not purged is), so they are not garbage.
//!
//! Blobs are tiny (unique bytes each), and the store lives on tmpfs (`/dev/shm`) when there is
//! one: an fsync costs next to nothing there, so the build is quick and the figures measure
//! the collector's metadata work and its unlinks, not a disk.
//!
//! A run is three processes: this one, which only starts the others; one that builds the
//! store (`--build-only`); one that opens it and collects (`--collect-only`), so that the peak
//! resident memory (`VmHWM`) that process reports is that of opening the store and
//! collecting, not of building it. During the collection a second thread moves tags in a
//! small repository, one call (one transaction) every `--probe-interval-us`, and times each
//! call: the longest is how long a writer stalled. It runs alone for a second first, for a
//! baseline. Old blobs are old enough: the collection runs with a grace period of zero.
//!
//! Options: `--dir PATH` (the store; default a new directory under `/dev/shm` or the temp
//! directory; a run removes the store it built at the end unless `--keep`, `--build-only` and
//! `--collect-only` leave it), `--cache-mib N` (redb's page cache; default
//! the registry's), `--scale-check` (the run at a tenth of the size, then at full size, and
//! how time grows), `--scales 0.1,1,2` (any list of factors), `--dry-run` (a collection that
//! removes nothing: the mark and the reading half of the sweep, on a store it leaves as it is),
//! `--no-writer` (no probe: the collection alone).

use std::collections::HashSet;
use std::error::Error;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ocistore::manifest::OCI_MANIFEST;
use ocistore::{Algorithm, CollectOptions, Digest, Registry, Repository};
use serde_json::{Value, json};

type Res<T> = Result<T, Box<dyn Error>>;

/// The file in the store's directory where the build leaves what the collection should find.
const EXPECTED: &str = "gc_bench.json";
const PROBE_REPO: &str = "gc-bench-probe";
const PROBE_TAGS: usize = 64;
const BASELINE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
struct Params {
    repos: u64,
    manifests: u64,
    layers: u64,
    shared: f64,
    untagged: f64,
    unreferenced: f64,
    pool: Option<u64>,
    seed: u64,
    dir: Option<PathBuf>,
    cache_mib: Option<usize>,
    probe_interval: Duration,
    writer: bool,
    dry_run: bool,
    keep: bool,
    mode: Mode,
    scales: Vec<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Run,
    BuildOnly,
    CollectOnly,
}

impl Params {
    fn parse() -> Res<Params> {
        let mut p = Params {
            repos: 1000,
            manifests: 100,
            layers: 5,
            shared: 0.3,
            untagged: 0.2,
            unreferenced: 0.02,
            pool: None,
            seed: 1,
            dir: None,
            cache_mib: None,
            probe_interval: Duration::from_micros(1000),
            writer: true,
            dry_run: false,
            keep: false,
            mode: Mode::Run,
            scales: vec![1.0],
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--repos" => p.repos = value()?.parse()?,
                "--manifests" => p.manifests = value()?.parse()?,
                "--layers" => p.layers = value()?.parse()?,
                "--shared" => p.shared = fraction(&value()?)?,
                "--untagged" => p.untagged = fraction(&value()?)?,
                "--unreferenced" => p.unreferenced = fraction(&value()?)?,
                "--pool" => p.pool = Some(value()?.parse()?),
                "--seed" => p.seed = value()?.parse()?,
                "--dir" => p.dir = Some(value()?.into()),
                "--cache-mib" => p.cache_mib = Some(value()?.parse()?),
                "--probe-interval-us" => {
                    p.probe_interval = Duration::from_micros(value()?.parse()?);
                }
                "--keep" => p.keep = true,
                "--dry-run" => p.dry_run = true,
                "--no-writer" => p.writer = false,
                "--build-only" => p.mode = Mode::BuildOnly,
                "--collect-only" => p.mode = Mode::CollectOnly,
                "--scale-check" => p.scales = vec![0.1, 1.0],
                "--scales" => {
                    p.scales = value()?
                        .split(',')
                        .map(str::parse)
                        .collect::<Result<_, _>>()?;
                }
                "-h" | "--help" => {
                    eprintln!("see the comment at the top of examples/gc_bench.rs");
                    std::process::exit(0);
                }
                other => return Err(format!("unknown argument {other}").into()),
            }
        }
        if p.unreferenced >= 1.0 {
            return Err("--unreferenced must be below 1".into());
        }
        Ok(p)
    }

    fn pool(&self) -> u64 {
        self.pool.unwrap_or(self.repos).max(1)
    }

    /// The arguments that make a child build or collect the same store.
    fn child_args(&self, repos: u64, dir: &Path) -> Vec<String> {
        let mut args = vec![
            "--repos".into(),
            repos.to_string(),
            "--manifests".into(),
            self.manifests.to_string(),
            "--layers".into(),
            self.layers.to_string(),
            "--shared".into(),
            self.shared.to_string(),
            "--untagged".into(),
            self.untagged.to_string(),
            "--unreferenced".into(),
            self.unreferenced.to_string(),
            "--seed".into(),
            self.seed.to_string(),
            "--probe-interval-us".into(),
            self.probe_interval.as_micros().to_string(),
            "--dir".into(),
            dir.display().to_string(),
        ];
        if let Some(pool) = self.pool {
            // A fixed pool stays fixed across scales; the default grows with the repositories.
            args.extend(["--pool".into(), pool.to_string()]);
        }
        if let Some(mib) = self.cache_mib {
            args.extend(["--cache-mib".into(), mib.to_string()]);
        }
        if self.dry_run {
            args.push("--dry-run".into());
        }
        if !self.writer {
            args.push("--no-writer".into());
        }
        args
    }

    fn open(&self, dir: &Path) -> Res<Registry> {
        let mut builder = Registry::builder();
        if let Some(mib) = self.cache_mib {
            builder = builder.cache_size(mib << 20);
        }
        Ok(builder.open(dir)?)
    }
}

fn fraction(s: &str) -> Res<f64> {
    let f: f64 = s.parse()?;
    if !(0.0..=1.0).contains(&f) {
        return Err(format!("{s} is not a fraction between 0 and 1").into());
    }
    Ok(f)
}

/// splitmix64: small, fast and good enough to draw a synthetic store.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn main() -> Res<()> {
    let p = Params::parse()?;
    match p.mode {
        Mode::BuildOnly => build(&p, store_dir(&p)?),
        Mode::CollectOnly => {
            let dir = p.dir.clone().ok_or("--collect-only needs --dir")?;
            collect(&p, &dir)
        }
        Mode::Run => run(&p),
    }
}

/// `--dir`, or a new directory on tmpfs if there is one, else in the temp directory.
fn store_dir(p: &Params) -> Res<PathBuf> {
    if let Some(dir) = &p.dir {
        return Ok(dir.clone());
    }
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    Ok(base.join(format!("ocistore-gc-bench-{}", std::process::id())))
}

/// Builds and collects at each scale in a process of its own, then sums up how time grew.
fn run(p: &Params) -> Res<()> {
    let exe = std::env::current_exe()?;
    let base = store_dir(p)?;
    let mut points = Vec::new();
    for (i, scale) in p.scales.iter().enumerate() {
        let repos = ((p.repos as f64 * scale).round() as u64).max(1);
        let dir = if p.scales.len() == 1 {
            base.clone()
        } else {
            base.join(format!("scale-{i}"))
        };
        if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
            return Err(format!("{} is not empty", dir.display()).into());
        }
        let args = p.child_args(repos, &dir);
        let run_children = || -> Res<Vec<Value>> {
            let mut lines = Vec::new();
            for mode in ["--build-only", "--collect-only"] {
                let mut child = Command::new(&exe)
                    .args(&args)
                    .arg(mode)
                    .stdout(Stdio::piped())
                    .spawn()?;
                let out = child.stdout.take().ok_or("no stdout")?;
                for line in BufReader::new(out).lines() {
                    let line = line?;
                    println!("{line}");
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        lines.push(v);
                    }
                }
                if !child.wait()?.success() {
                    return Err(format!("{mode} failed").into());
                }
            }
            Ok(lines)
        };
        let lines = run_children();
        // A store is gigabytes of memory on tmpfs: it goes even after a failure.
        if !p.keep && dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        let lines = lines?;
        let collected = lines
            .iter()
            .find(|v| v["event"] == "collect")
            .ok_or("no collect line")?;
        points.push(json!({
            "scale": scale,
            "repos": repos,
            "blobs": collected["blobs_total"],
            "manifests": collected["manifests"],
            "collect_s": collected["collect_s"],
            "collect_cpu_s": collected["collect_cpu_s"],
            "mark_s": collected["mark_s"],
            "sweep_s": collected["sweep_s"],
            "us_per_blob": collected["collect_s"].as_f64().unwrap_or(0.0) * 1e6
                / collected["blobs_total"].as_f64().unwrap_or(1.0),
            "peak_rss_mib": collected["peak_rss_mib"],
        }));
    }
    if !p.keep && p.dir.is_none() && base.exists() {
        std::fs::remove_dir_all(&base)?;
    }
    if p.scales.len() == 1 {
        return Ok(());
    }
    let (first, last) = (&points[0], &points[points.len() - 1]);
    let size_ratio = last["blobs"].as_f64().unwrap_or(0.0) / first["blobs"].as_f64().unwrap_or(1.0);
    let time_ratio =
        last["collect_s"].as_f64().unwrap_or(0.0) / first["collect_s"].as_f64().unwrap_or(1.0);
    println!(
        "{}",
        json!({
            "event": "scaling",
            "points": points,
            "size_ratio": size_ratio,
            "time_ratio": time_ratio,
        })
    );
    Ok(())
}

/// What the build made, for the collection to check its report against.
#[derive(Default)]
struct Built {
    blobs: u64,
    unreferenced: u64,
    manifests: u64,
    untagged: u64,
}

fn build(p: &Params, dir: PathBuf) -> Res<()> {
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        return Err(format!("{} is not empty", dir.display()).into());
    }
    let began = Instant::now();
    let registry = p.open(&dir)?;
    let mut rng = Rng(p.seed);
    let mut built = Built::default();
    let mut next_blob = 0u64;
    let pool = p.pool();
    // The pool's layers are put into the registry by the first repository that draws them.
    let mut pool_created: Vec<bool> = vec![false; pool as usize];
    for r in 0..p.repos {
        let repo = registry.repository(&format!("bench/r{r:06}"))?;
        registry.batch(|b| {
            let mut linked_pool = HashSet::new();
            let mut new_blobs = 0u64;
            let mut put_new = |b: &mut ocistore::Batch<'_>, new_blobs: &mut u64| {
                next_blob += 1;
                *new_blobs += 1;
                let bytes = blob_bytes(p.seed, pool + next_blob);
                let digest = b.put_blob_sha256(&repo, &bytes)?;
                Ok::<_, ocistore::Error>((digest, bytes.len()))
            };
            for m in 0..p.manifests {
                let config = put_new(b, &mut new_blobs)?;
                let mut layers = Vec::new();
                for _ in 0..p.layers {
                    if rng.chance(p.shared) {
                        let i = rng.below(pool);
                        let bytes = blob_bytes(p.seed, i);
                        let digest = Algorithm::Sha256.digest(&bytes);
                        if linked_pool.insert(i) {
                            b.put_blob(&repo, &digest, &bytes)?;
                            if !std::mem::replace(&mut pool_created[i as usize], true) {
                                new_blobs += 1;
                            }
                        }
                        layers.push((digest, bytes.len()));
                    } else {
                        layers.push(put_new(b, &mut new_blobs)?);
                    }
                }
                let body = manifest_body(&config, &layers);
                if rng.chance(p.untagged) {
                    let digest = Algorithm::Sha256.digest(body.as_bytes());
                    b.push_manifest(&repo, digest.as_str(), OCI_MANIFEST, body.as_bytes())?;
                    built.untagged += 1;
                } else {
                    b.push_manifest(&repo, &format!("v{m}"), OCI_MANIFEST, body.as_bytes())?;
                }
                built.manifests += 1;
            }
            // Garbage: `unreferenced` of all blobs, so this many for each other new blob.
            let extra = new_blobs as f64 * p.unreferenced / (1.0 - p.unreferenced);
            let mut extra_n = extra.floor() as u64;
            if rng.chance(extra.fract()) {
                extra_n += 1;
            }
            for _ in 0..extra_n {
                put_new(b, &mut new_blobs)?;
            }
            built.blobs += new_blobs;
            built.unreferenced += extra_n;
            Ok(())
        })?;
    }
    // The repository the writer probe works in: two manifests for its tags to move between.
    let probe = registry.repository(PROBE_REPO)?;
    registry.batch(|b| {
        for i in 0..2 {
            let bytes = format!("gc_bench probe config {i}");
            let digest = b.put_blob_sha256(&probe, &bytes)?;
            let body = manifest_body(&(digest, bytes.len()), &[]);
            b.push_manifest(&probe, &format!("t{i}"), OCI_MANIFEST, body.as_bytes())?;
        }
        Ok(())
    })?;
    built.blobs += 2;
    built.manifests += 2;
    drop(registry);
    let elapsed = began.elapsed();
    let expected = json!({
        "blobs": built.blobs,
        "unreferenced": built.unreferenced,
        "manifests": built.manifests,
        "untagged": built.untagged,
    });
    std::fs::write(dir.join(EXPECTED), expected.to_string())?;
    println!(
        "{}",
        json!({
            "event": "build",
            "dir": dir,
            "repos": p.repos,
            "manifests_per_repo": p.manifests,
            "layers": p.layers,
            "shared": p.shared,
            "pool": pool,
            "untagged": p.untagged,
            "unreferenced": p.unreferenced,
            "seed": p.seed,
            "blobs_total": built.blobs,
            "blobs_unreferenced": built.unreferenced,
            "manifests_total": built.manifests,
            "manifests_untagged": built.untagged,
            "database_mib": mib(std::fs::metadata(dir.join("metadata.redb"))?.len()),
            "build_s": elapsed.as_secs_f64(),
        })
    );
    Ok(())
}

/// The bytes of blob number `i`: unique to it and to the seed.
fn blob_bytes(seed: u64, i: u64) -> Vec<u8> {
    format!("gc_bench {seed} blob {i}").into_bytes()
}

fn manifest_body(config: &(Digest, usize), layers: &[(Digest, usize)]) -> String {
    let mut body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":["#,
        config.0, config.1
    );
    for (i, (digest, size)) in layers.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{digest}","size":{size}}}"#
        ));
    }
    body.push_str("]}");
    body
}

fn collect(p: &Params, dir: &Path) -> Res<()> {
    let expected: Value = serde_json::from_slice(&std::fs::read(dir.join(EXPECTED))?)?;
    let began = Instant::now();
    let registry = p.open(dir)?;
    let open_s = began.elapsed().as_secs_f64();
    let rss_open = proc_status_kib("VmRSS");
    let probe = registry.repository(PROBE_REPO)?;
    let targets = [probe.resolve("t0")?, probe.resolve("t1")?];

    let stop = Arc::new(AtomicBool::new(false));
    let writer = if p.writer {
        let (stop, interval) = (stop.clone(), p.probe_interval);
        let writer = std::thread::Builder::new()
            .name("probe".into())
            .spawn(move || probe_writes(&probe, &targets, &stop, interval))?;
        std::thread::sleep(BASELINE);
        Some(writer)
    } else {
        None
    };
    // Resets VmHWM to the current RSS (Linux 4.0+), so the peak below is the collection's.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let cpu_before = thread_cpu();
    let started = Instant::now();
    let report = registry.collect(
        &CollectOptions::default()
            .grace_period(Duration::ZERO)
            .dry_run(p.dry_run),
    )?;
    let ended = Instant::now();
    let cpu = thread_cpu()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let peak = proc_status_kib("VmHWM");
    stop.store(true, Ordering::Relaxed);
    let calls = match writer {
        Some(writer) => writer.join().map_err(|_| "probe panicked")??,
        None => Vec::new(),
    };

    let mut baseline = Vec::new();
    let mut during = Vec::new();
    // The slowest calls during the collection, each with when it began, in milliseconds after
    // the collection did (negative: before).
    let mut slowest = Vec::new();
    for call in calls {
        let Call { start, took, .. } = call;
        if start + took < started {
            baseline.push(took);
        } else if start < ended {
            during.push(took);
            let at = if start >= started {
                ms(start - started)
            } else {
                -ms(started - start)
            };
            slowest.push((took, at, call.wait, call.commit));
        }
    }
    slowest.sort_by_key(|call| std::cmp::Reverse(call.0));
    let slowest: Vec<Value> = slowest
        .iter()
        .take(5)
        .map(|(took, at, wait, commit)| {
            json!({"ms": ms(*took), "at_ms": at, "lock_wait_ms": ms(*wait), "commit_ms": ms(*commit)})
        })
        .collect();
    let blobs_total = report.blobs_marked + report.blobs_swept + report.blobs_kept;
    // Exactly the garbage went: every blob built is counted, the unreferenced ones swept with
    // their links, and the files left are the blobs that stay.
    let files = count_files(&dir.join("blobs"))?;
    let files_expected = if p.dry_run {
        blobs_total
    } else {
        blobs_total - report.blobs_swept
    };
    let ok = blobs_total == expected["blobs"].as_u64().unwrap_or(0)
        && report.blobs_swept == expected["unreferenced"].as_u64().unwrap_or(0)
        && report.links_removed == report.blobs_swept
        && report.blobs_kept == 0
        && files == files_expected;
    println!(
        "{}",
        json!({
            "event": "collect",
            "dir": dir,
            "blobs_total": blobs_total,
            "manifests": expected["manifests"],
            "open_s": open_s,
            "collect_s": (ended - started).as_secs_f64(),
            "collect_cpu_s": cpu,
            "mark_s": report.mark_time.as_secs_f64(),
            "sweep_s": report.sweep_time.as_secs_f64(),
            "longest_write_ms": ms(report.longest_write),
            "blobs_marked": report.blobs_marked,
            "blobs_swept": report.blobs_swept,
            "blobs_kept": report.blobs_kept,
            "links_removed": report.links_removed,
            "blob_files_left": files,
            "dry_run": p.dry_run,
            "matches_build": ok,
            "cache_mib": p.cache_mib,
            "rss_after_open_mib": rss_open.map(|k| k as f64 / 1024.0),
            "peak_rss_mib": peak.map(|k| k as f64 / 1024.0),
            "writer": p.writer.then(|| json!({
                "interval_us": p.probe_interval.as_micros() as u64,
                "during": latencies(&mut during),
                "slowest": slowest,
                "baseline": latencies(&mut baseline),
            })),
            "load_avg": std::fs::read_to_string("/proc/loadavg").ok()
                .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")),
        })
    );
    if !ok {
        return Err("the collection's report does not match the store built".into());
    }
    Ok(())
}

/// Moves tags in the probe repository, one transaction per call, until told to stop;
/// returns when each call began and how long it took.
/// One call of the probe: when it began, how long it took, and of that how long it waited
/// for the write lock (and opened the tables) and how long its commit took.
struct Call {
    start: Instant,
    took: Duration,
    wait: Duration,
    commit: Duration,
}

fn probe_writes(
    probe: &Repository,
    targets: &[Digest; 2],
    stop: &AtomicBool,
    interval: Duration,
) -> ocistore::Result<Vec<Call>> {
    let mut calls = Vec::with_capacity(1 << 16);
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let tag = format!("p{}", i % PROBE_TAGS);
        let target = &targets[(i / PROBE_TAGS) % 2];
        let start = Instant::now();
        // `Repository::tag` is this batch; opened by hand to see where the time goes.
        let (entered, done) = probe.registry().batch(|b| {
            let entered = Instant::now();
            b.tag(probe, &tag, target)?;
            Ok((entered, Instant::now()))
        })?;
        let end = Instant::now();
        calls.push(Call {
            start,
            took: end - start,
            wait: entered - start,
            commit: end - done,
        });
        i += 1;
        std::thread::sleep(interval);
    }
    Ok(calls)
}

fn latencies(v: &mut [Duration]) -> Value {
    if v.is_empty() {
        return json!({"calls": 0});
    }
    v.sort();
    let at = |q: f64| ms(v[((v.len() - 1) as f64 * q).round() as usize]);
    json!({
        "calls": v.len(),
        "p50_ms": at(0.5),
        "p99_ms": at(0.99),
        "max_ms": ms(v[v.len() - 1]),
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// The files under `dir`, recursively.
fn count_files(dir: &Path) -> Res<u64> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            n += count_files(&entry.path())?;
        } else {
            n += 1;
        }
    }
    Ok(n)
}

/// A `kB` field of `/proc/self/status`, on Linux.
fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// CPU time (user and system) of the calling thread so far, in seconds, on Linux: what the
/// collection itself used, whatever else the machine was doing. Counted in clock ticks of
/// 10 ms (`USER_HZ` is 100 on Linux).
fn thread_cpu() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    // utime and stime are fields 14 and 15 of the line; the state (field 3) is fields[0].
    Some((ticks(11)? + ticks(12)?) as f64 / 100.0)
}
