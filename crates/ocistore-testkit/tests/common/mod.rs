//! A store on a manual clock, as the library's own tests open one (`tests/common/mod.rs` at the
//! root of the workspace), for the kit's tests that run many cases on one store.
#![allow(dead_code)] // each test file uses its own subset

use ocistore::{ManualClock, Registry, Repository};
use ocistore_testkit::START;
use tempfile::TempDir;

pub struct Store {
    pub dir: TempDir,
    pub registry: Registry,
    pub clock: ManualClock,
}

impl Store {
    pub fn new() -> Store {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(START);
        let registry = Registry::builder()
            .clock(clock.clone())
            .cache_size(16 << 20)
            .open(dir.path())
            .expect("open store");
        Store {
            dir,
            registry,
            clock,
        }
    }

    pub fn repo(&self, name: &str) -> Repository {
        self.registry.repository(name).expect("valid name")
    }
}
