//! The property-testing kit of `ocistore` (a crate of its own, to use as a dev-dependency: the
//! library's users pay nothing for it): the reference model of `SPEC.md`, proptest strategies
//! for everything that can happen to a registry, and the harness that applies one sequence of
//! operations to the model and to systems under test and compares them after every step.
//! `docs/testing.md` is the guide.
//!
//! - [`Op`]: one operation — blob writes, mounts, uploads, pushes (images, indexes, artifacts
//!   with a subject), tags, pulls, deletes, policy changes, restores, reverts, purges by hand
//!   and by filter, autopurge runs, collections, locks, clock moves, batches and reopens, and
//!   the disk of the blob store filling up and getting room again. Ops name things by small
//!   pools and by selectors, so that sequences collide with themselves.
//! - [`Model`]: a plain in-memory registry. [`Model::resolve`] turns an op into a concrete
//!   [`Step`] against its state; [`Model::step`] predicts the step's [`Outcome`].
//! - [`System`]: what a harness implements for its own registry; [`RegistrySystem`] is
//!   `ocistore`'s [`Registry`](ocistore::Registry) as one, with a deep comparison of its state.
//! - [`run`]: one sequence on the model and on every system, compared after each op and after
//!   a final reopen; [`check_registry`] for `ocistore` itself.
//! - Strategies: [`ops`] and [`op_mix`] for sequences (weighted by a [`Mix`]); for what a
//!   client sends, [`repository_name`], [`tag_name`], [`digest`] and their invalid
//!   counterparts, and [`image_content`], [`index_content`], [`artifact_content`].
//! - [`servers`]: the object-store servers (Azurite, moto's S3) that tests of blob storage on
//!   object stores run against, started by `.ci/object-servers start`; panics when they are down.
//!
//! ```
//! use ocistore_testkit::{Mix, RegistrySystem, config, op_mix, run};
//! use proptest::prelude::*;
//! use proptest::test_runner::TestRunner;
//!
//! let sequences = prop::collection::vec(op_mix(Mix::P), 1..10);
//! TestRunner::new(config(4))
//!     .run(&sequences, |ops| {
//!         // Two stores under the same sequence: each must do what the model does.
//!         let (mut a, mut b) = (RegistrySystem::new(), RegistrySystem::new());
//!         run(&ops, &mut [&mut a, &mut b]).map(drop)
//!     })
//!     .unwrap();
//! ```

// docs.rs builds with `--cfg docsrs` (Cargo.toml): items behind a feature say so there.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod content;
mod expected;
pub mod fuzz;
mod grammar;
mod model;
mod op;
mod outcome;
mod registry;
pub mod servers;
mod step;
mod strategies;

pub use content::*;
pub use fuzz::{Faults, FaultyStore};
pub use model::*;
pub use op::*;
pub use outcome::*;
pub use registry::*;
pub use step::*;
pub use strategies::*;

pub(crate) const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// When every model and [`RegistrySystem`] starts: 2026-01-01T00:00:00Z.
pub const START: ocistore::Timestamp =
    ocistore::Timestamp::from_nanos(1_767_225_600 * 1_000_000_000);

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// A system under test: anything that runs the [`Step`]s of a sequence and answers with
/// [`Outcome`]s comparable with the model's — a [`RegistrySystem`], a wrapper around one, or a
/// registry of your own behind an adapter.
pub trait System {
    /// Runs one step and returns its outcome. [`Step::Reopen`] drops every handle and opens
    /// the store again; [`Step::Advance`] moves the system's clock forward;
    /// [`Step::DiskFull`] makes its blob store's disk full or gives it room again.
    fn step(&mut self, step: &Step) -> Outcome;

    /// Checks the whole state of the system against the model, after each step has run on
    /// both. The default checks nothing beyond the outcomes.
    fn check(&mut self, model: &Model) -> Result<(), TestCaseError> {
        let _ = model;
        Ok(())
    }
}

/// How often each op had each outcome, across the sequences of this process.
static STATS: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());

thread_local! {
    /// The outcome labels reached on this thread since [`take_reached`] last ran.
    static REACHED: RefCell<BTreeSet<String>> = const { RefCell::new(BTreeSet::new()) };
}

/// A label for an op and its outcome, `"PushImage -> Pushed new"`: the op's and the outcome's
/// variant names. Pushes tell whether the manifest was new, purges by filter tell what they did (`untag`, `delete`, `locked`, dry or
/// real), autopurge runs whether the retention policy deleted and history expired.
pub fn label(op: &Op, outcome: &Outcome) -> String {
    let name = |debug: String| debug.split([' ', '(', '{']).next().unwrap_or("").to_owned();
    let result = match outcome {
        Ok(Value::PurgeReport {
            dry_run,
            repositories,
            ..
        }) => {
            let did = |what: &str, any: fn(&ocistore::RepositoryPurge) -> bool| {
                repositories.iter().any(any).then(|| format!(" {what}"))
            };
            let mut label = format!("PurgeReport {}", if *dry_run { "dry" } else { "real" });
            label.extend(did("untag", |r| !r.tags_untagged.is_empty()));
            label.extend(did("delete", |r| !r.manifests_deleted.is_empty()));
            label.extend(did("locked", |r| !r.locked.is_empty()));
            label
        }
        Ok(Value::Pushed { created, .. }) => {
            format!("Pushed {}", if *created { "new" } else { "again" })
        }
        Ok(Value::Purged {
            untagged_deleted,
            history_events,
            ..
        }) => {
            let mut label = "Purged".to_owned();
            label.extend((*untagged_deleted > 0).then_some(" retention"));
            label.extend((*history_events > 0).then_some(" history"));
            label
        }
        Ok(v) => name(format!("{v:?}")),
        Err(e) => name(format!("{e:?}")),
    };
    format!("{} -> {result}", name(format!("{op:?}")))
}

/// The [`label`]s of every op run by [`run`] on this thread since the last call: to check that
/// strategies reach the success paths as well as the errors.
pub fn take_reached() -> BTreeSet<String> {
    REACHED.with(|r| std::mem::take(&mut *r.borrow_mut()))
}

fn count(op: &Op, outcome: &Outcome) {
    let label = label(op, outcome);
    if std::env::var_os("MODEL_STATS").is_some() {
        *STATS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(label.clone())
            .or_default() += 1;
    }
    REACHED.with(|r| r.borrow_mut().insert(label));
}

/// Runs `ops` on a fresh [`Model`] and on each of `systems`: every op is resolved against the
/// model, run on the model and on every system, and must have the same outcome on all; then
/// every system checks its state against the model. A final reopen is checked the same way.
/// Returns the outcomes, or the first difference, naming the op and the system (by index).
///
/// With `MODEL_STATS=1` in the environment it prints, after each sequence, how often each op
/// had each outcome ([`label`]).
pub fn run(ops: &[Op], systems: &mut [&mut dyn System]) -> Result<Vec<Outcome>, TestCaseError> {
    let mut model = Model::new();
    let mut outcomes = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().chain([&Op::Reopen]).enumerate() {
        let step = model.resolve(op);
        let expected = model.step(&step);
        for (s, system) in systems.iter_mut().enumerate() {
            let actual = system.step(&step);
            prop_assert_eq!(&actual, &expected, "op #{} on system #{}: {:?}", i, s, op);
            system.check(&model).map_err(|e| {
                TestCaseError::fail(format!("after op #{i} on system #{s}: {op:?}: {e}"))
            })?;
        }
        if i < ops.len() {
            count(op, &expected);
            outcomes.push(expected);
        }
    }
    if std::env::var_os("MODEL_STATS").is_some() {
        eprintln!("{:#?}", STATS.lock().unwrap_or_else(|e| e.into_inner()));
    }
    Ok(outcomes)
}

/// [`run`] with one [`RegistrySystem`]: the crate checked against its own model.
pub fn check_registry(ops: &[Op]) -> Result<Vec<Outcome>, TestCaseError> {
    run(ops, &mut [&mut RegistrySystem::new()])
}

/// A proptest configuration of `cases` cases: as many on a tmpfs, a quarter of them on a disk
/// (a new store creates hundreds of directories), or as many as `PROPTEST_CASES` says, for a
/// longer hunt. No failure persistence: a failing sequence is printed, shrunk.
pub fn config(cases: u32) -> ProptestConfig {
    let cases = match std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        Some(n) => n,
        None if registry::tmpfs().is_some() => cases,
        None => (cases / 4).max(1),
    };
    ProptestConfig {
        cases,
        max_shrink_iters: 2048,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}
