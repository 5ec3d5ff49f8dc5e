//! Helpers shared by the benchmarks that build a store once and measure on copies of it, and
//! [`machine`]: where the stores go and the machine's limits printed beside the figures. Each
//! benchmark uses some of them.
#![allow(dead_code)]

pub mod machine;

use std::path::Path;

use ocistore::{ManualClock, Registry, Timestamp};

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
