//! Where a benchmark's stores live, and what the machine under them can do: the limits a
//! benchmark prints beside its figures (sha256 speed, one fsync, the disk's sequential write
//! speed), so that a figure can be read against the hardware it was taken on.
//!
//! Stores go on the disk by default: a temp directory under the current directory (the
//! package's root under `cargo bench`). `OCISTORE_BENCH_DIR=/some/dir` puts them there instead,
//! e.g. `/dev/shm` for tmpfs; the benchmark prints which file system it ran on.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ocistore::Algorithm;
use tempfile::TempDir;

/// The environment variable naming the directory the stores go in.
pub const DIR_VAR: &str = "OCISTORE_BENCH_DIR";

/// The directory the stores go in: `OCISTORE_BENCH_DIR`, else the current directory.
pub fn base_dir() -> PathBuf {
    std::env::var_os(DIR_VAR).map_or_else(|| PathBuf::from("."), PathBuf::from)
}

/// A fresh temp directory in [`base_dir`], removed when dropped.
pub fn scratch(prefix: &str) -> TempDir {
    let base = base_dir();
    std::fs::create_dir_all(&base).unwrap();
    tempfile::Builder::new()
        .prefix(&format!(".bench-{prefix}-"))
        .tempdir_in(&base)
        .unwrap_or_else(|e| panic!("temp dir in {}: {e}", base.display()))
}

/// The file system `dir` is on, as `/proc/self/mountinfo` names it: `ext4 /dev/vda on /`
/// (Linux; `unknown` elsewhere).
pub fn filesystem(dir: &Path) -> String {
    let Ok(dir) = dir.canonicalize() else {
        return "unknown".into();
    };
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return "unknown".into();
    };
    let mut best: Option<(usize, String)> = None;
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(point), Some(fstype), Some(source)) =
            (fields.get(4), fields.get(dash + 1), fields.get(dash + 2))
        else {
            continue;
        };
        if dir.starts_with(point) && best.as_ref().is_none_or(|(len, _)| point.len() >= *len) {
            best = Some((point.len(), format!("{fstype} {source} on {point}")));
        }
    }
    best.map_or_else(|| "unknown".into(), |(_, fs)| fs)
}

/// What the machine can do, measured in a directory on the file system under test.
pub struct Limits {
    /// Where it was measured, and on what file system.
    pub dir: PathBuf,
    pub filesystem: String,
    /// sha256 over 64 MiB, bytes per second (the best of three).
    pub sha256: f64,
    /// A 4 KiB write and its fsync: the median of 50.
    pub fsync: Duration,
    /// 256 MiB written in 8 MiB chunks, then fsynced, bytes per second.
    pub sequential_write: f64,
}

impl Limits {
    /// Measures the machine's limits in `dir` (about a second on a disk).
    pub fn measure(dir: &Path) -> Limits {
        let mut bytes = vec![0u8; 64 << 20];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (i.wrapping_mul(2_654_435_761) >> 13) as u8;
        }
        let sha256 = (0..3)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(Algorithm::Sha256.digest(std::hint::black_box(&bytes)));
                bytes.len() as f64 / start.elapsed().as_secs_f64()
            })
            .fold(0.0, f64::max);

        let probe = dir.join(".limits-probe");
        let mut file = File::create(&probe).unwrap();
        let mut fsyncs: Vec<Duration> = (0..50u8)
            .map(|i| {
                let page = [i; 4096];
                let start = Instant::now();
                file.write_all(&page).unwrap();
                file.sync_all().unwrap();
                start.elapsed()
            })
            .collect();
        fsyncs.sort();
        drop(file);

        let chunk = &bytes[..8 << 20];
        let mut file = File::create(&probe).unwrap();
        let total = 256usize << 20;
        let start = Instant::now();
        for _ in 0..total / chunk.len() {
            file.write_all(chunk).unwrap();
        }
        file.sync_all().unwrap();
        let sequential_write = total as f64 / start.elapsed().as_secs_f64();
        drop(file);
        std::fs::remove_file(&probe).unwrap();

        Limits {
            dir: dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()),
            filesystem: filesystem(dir),
            sha256,
            fsync: fsyncs[fsyncs.len() / 2],
            sequential_write,
        }
    }
}

impl std::fmt::Display for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stores in {} ({}); {} CPUs; sha256 {:.2} GB/s; one 4 KiB write + fsync {:.3} ms \
             (median of 50); sequential write {:.2} GB/s (256 MiB, fsync included)",
            self.dir.display(),
            self.filesystem,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            self.sha256 / 1e9,
            self.fsync.as_secs_f64() * 1e3,
            self.sequential_write / 1e9,
        )
    }
}
