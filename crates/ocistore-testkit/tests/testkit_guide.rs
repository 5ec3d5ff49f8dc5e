//! D1: the worked example of `docs/testing.md` — a second implementation checked against the
//! model with the public testkit, as a harness outside the crate would write it.
//!
//! [`Wrapper`] forwards every step to a real store (a [`RegistrySystem`]) but is broken in one
//! small way: untagging `latest` answers `Ok` and does nothing. The hunts below find that with
//! three kinds of [`System::check`] and shrink the failure to the ops that matter: the images
//! the strategy starts with, the untag, and (when only outcomes are compared) the op that reads
//! `latest` back. The same hunts pass on an unbroken wrapper, so they cannot pass vacuously.
//! The last test shows a system that lacks a feature leaving its ops out of the strategy.
//!
//! `cargo test --test testkit_guide -- --nocapture` prints the shrunk sequences.

use ocistore_testkit::*;
use proptest::prelude::*;
use proptest::test_runner::{RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

/// How a [`Wrapper`] checks its state after each step.
#[derive(Debug, Clone, Copy)]
enum Check {
    /// Nothing beyond the outcomes: the default of [`System::check`].
    Outcomes,
    /// Pulls every tag of the pools, on the system and on a clone of the model: reads any
    /// harness can compare, through its own API.
    Pulls,
    /// Delegates to the inner [`RegistrySystem`], which reads its whole store back.
    Inner,
}

/// A second implementation: forwards every step to a real registry, except that with `broken`
/// an untag of `latest` that exists answers `Ok` and changes nothing (a front-end that "keeps
/// `latest` pullable").
struct Wrapper {
    inner: RegistrySystem,
    broken: bool,
    check: Check,
}

impl Wrapper {
    fn new(broken: bool, check: Check) -> Wrapper {
        Wrapper {
            inner: RegistrySystem::new(),
            broken,
            check,
        }
    }
}

impl System for Wrapper {
    fn step(&mut self, step: &Step) -> Outcome {
        if let Step::Untag { repo, tag } = step
            && self.broken
            && tag == "latest"
        {
            // The bug: when the tag exists (so that the untag would succeed), pretend.
            let pull = Step::Pull {
                repo: repo.clone(),
                reference: tag.clone(),
            };
            if self.inner.step(&pull).is_ok() {
                return Ok(Value::Unit);
            }
        }
        self.inner.step(step)
    }

    fn check(&mut self, model: &Model) -> Result<(), TestCaseError> {
        match self.check {
            Check::Outcomes => Ok(()),
            Check::Pulls => {
                // `Model::step` on a clone answers any read without touching the real model.
                let mut model = model.clone();
                for repo in REPOS {
                    for tag in TAGS {
                        let pull = Step::Pull {
                            repo: repo.to_string(),
                            reference: tag.to_string(),
                        };
                        let expected = model.step(&pull);
                        let actual = self.step(&pull);
                        prop_assert_eq!(actual, expected, "pull {}:{}", repo, tag);
                    }
                }
                Ok(())
            }
            Check::Inner => self.inner.check(model),
        }
    }
}

/// The hunt: a few tagged images ([`seeded`]), then up to 8 ops, half of them P ops and
/// deletes of every kind ([`op_mix`]), half aimed at `latest` in the first repository: tag it,
/// untag it, pull it. Without the aimed ops a bug on one tag name is a needle in a haystack:
/// an untag of a `latest` that exists, then an op that reads it, are rare in [`ops`].
fn hunt() -> BoxedStrategy<Vec<Op>> {
    let mix = Mix {
        deletes: 4,
        ..Mix::P
    };
    let repo = REPOS[0];
    let latest = prop_oneof![
        (0..4usize).prop_map(move |n| Op::Tag {
            repo,
            tag: "latest",
            manifest: ManifestSel::Existing(n),
        }),
        Just(Op::Untag {
            repo,
            tag: "latest"
        }),
        Just(Op::Pull {
            repo,
            reference: ManifestRef::Tag("latest"),
        }),
    ];
    seeded(prop::collection::vec(
        prop_oneof![1 => op_mix(mix), 1 => latest],
        1..=8,
    ))
}

/// How many cases a hunt runs: few, and always as many (not `PROPTEST_CASES`), so that the
/// failing hunts fail and the passing ones mean something.
const CASES: u32 = 48;

/// Runs the cases of [`hunt`] through `systems` (which runs a case on fresh systems), with the
/// kit's settings ([`config`]) but a fixed number of cases and a fixed seed: the same cases,
/// and the same shrunk failure, on every run.
fn run_hunt<F>(systems: F) -> Result<(), TestError<Vec<Op>>>
where
    F: Fn(&[Op]) -> Result<Vec<Outcome>, TestCaseError>,
{
    let config = ProptestConfig {
        cases: CASES,
        ..config(CASES)
    };
    let rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
    let mut runner = TestRunner::new_with_rng(config, rng);
    runner.run(&hunt(), |ops| systems(&ops).map(drop))
}

/// The shrunk sequence and the reason of a hunt that must fail.
fn shrunk(result: Result<(), TestError<Vec<Op>>>) -> (Vec<Op>, String) {
    match result {
        Err(TestError::Fail(reason, ops)) => {
            eprintln!("{reason}\nminimal failing input: {ops:#?}");
            (ops, reason.message().to_owned())
        }
        Err(TestError::Abort(reason)) => panic!("the hunt aborted: {reason}"),
        Ok(()) => panic!("the hunt passed: {CASES} cases never untagged an existing `latest`"),
    }
}

/// Whether `op` pushes or tags a manifest as `latest` in `repo`, in a batch or not.
fn tags_latest(op: &Op, repo: &str) -> bool {
    match op {
        Op::PushImage {
            repo: r,
            reference: RefChoice::Tag("latest"),
            ..
        }
        | Op::PushIndex {
            repo: r,
            reference: RefChoice::Tag("latest"),
            ..
        }
        | Op::PushReferrer {
            repo: r,
            reference: RefChoice::Tag("latest"),
            ..
        }
        | Op::Tag {
            repo: r,
            tag: "latest",
            ..
        } => *r == repo,
        Op::Batch(ops) => ops.iter().any(|op| tags_latest(op, repo)),
        _ => false,
    }
}

/// Checks the shape of a shrunk failure: at most `max_len` ops, an untag of `latest` in a
/// repository that an earlier op tagged `latest` in, then (`then_read`) an op naming `latest`
/// there once more, the last one.
fn assert_shrunk(ops: &[Op], max_len: usize, then_read: bool) {
    assert!(ops.len() <= max_len, "{} ops: {ops:#?}", ops.len());
    let untag = ops.len() - 1 - usize::from(then_read);
    let Op::Untag {
        repo,
        tag: "latest",
    } = ops[untag]
    else {
        panic!("op #{untag} is not an untag of latest: {ops:#?}");
    };
    assert!(
        ops[..untag].iter().any(|op| tags_latest(op, repo)),
        "nothing tagged latest in {repo} first: {ops:#?}"
    );
    if then_read {
        let reads_latest = match &ops[untag + 1] {
            Op::Pull {
                repo: r,
                reference: ManifestRef::Tag("latest"),
            }
            | Op::DeleteManifest {
                repo: r,
                reference: ManifestRef::Tag("latest"),
            }
            | Op::Untag {
                repo: r,
                tag: "latest",
            } => *r == repo,
            _ => false,
        };
        assert!(reads_latest, "the last op does not read latest: {ops:#?}");
    }
}

/// D1: the wrapper's untag of `latest` leaves the tag in its store; the inner registry's own
/// check sees it right after the untag, and the kit shrinks the case to the images of the
/// seed and that untag.
#[test]
fn d1_the_kit_finds_and_shrinks_a_wrapper_that_ignores_untag_of_latest() {
    let result = run_hunt(|ops| run(ops, &mut [&mut Wrapper::new(true, Check::Inner)]));
    let (ops, reason) = shrunk(result);
    assert_shrunk(&ops, 3, false);
    assert!(reason.contains("tags of"), "{reason}");
}

/// D1: a check written with the public API only — pulls on the system and on a clone of the
/// model — also finds the bug right after the untag.
#[test]
fn d1_a_check_by_pulls_against_a_clone_of_the_model_finds_it_at_the_untag() {
    let result = run_hunt(|ops| run(ops, &mut [&mut Wrapper::new(true, Check::Pulls)]));
    let (ops, reason) = shrunk(result);
    assert_shrunk(&ops, 3, false);
    assert!(reason.contains("pull "), "{reason}");
}

/// D1: comparing outcomes alone, the untag looks right; the failure is the next op that names
/// `latest`, and the shrunk case keeps it.
#[test]
fn d1_outcomes_alone_find_it_when_a_later_op_reads_latest() {
    let result = run_hunt(|ops| run(ops, &mut [&mut Wrapper::new(true, Check::Outcomes)]));
    let (ops, reason) = shrunk(result);
    assert_shrunk(&ops, 4, true);
    assert!(reason.contains("on system #0"), "{reason}");
}

/// D1, the control: the same hunts, with the same cases, pass on an unbroken wrapper, with
/// each kind of check.
#[test]
fn d1_the_same_hunts_pass_on_an_unbroken_wrapper() {
    for check in [Check::Outcomes, Check::Pulls, Check::Inner] {
        if let Err(e) = run_hunt(|ops| run(ops, &mut [&mut Wrapper::new(false, check)])) {
            panic!("{check:?}: {e}");
        }
    }
}

/// D1: the shrunk case, written out as a regression test (the seed's second image dropped), run
/// on the wrapper and a plain [`RegistrySystem`] side by side: the failure names the op and the
/// system that differed from the model, by index.
#[test]
fn d1_the_shrunk_case_as_a_regression_test_side_by_side_with_a_registry() {
    let repo = REPOS[0];
    let ops = [
        Op::PutBlobSha256 { repo, content: 0 },
        Op::PushImage {
            repo,
            image: Image {
                docker: false,
                mismatch: false,
                config: BlobRef::Linked(0),
                layers: Vec::new(),
            },
            reference: RefChoice::Tag("latest"),
        },
        Op::Untag {
            repo,
            tag: "latest",
        },
        Op::Pull {
            repo,
            reference: ManifestRef::Tag("latest"),
        },
    ];
    let outcomes = check_registry(&ops).expect("the registry itself is right");
    assert!(matches!(outcomes[3], Err(ErrKind::ManifestUnknown { .. })));

    let mut wrapper = Wrapper::new(true, Check::Outcomes);
    let err = run(&ops, &mut [&mut wrapper, &mut RegistrySystem::new()]).unwrap_err();
    eprintln!("{err}");
    assert!(
        err.to_string().contains("op #3 on system #0: Pull"),
        "{err}"
    );

    let mut wrapper = Wrapper::new(true, Check::Outcomes);
    let err = run(&ops, &mut [&mut RegistrySystem::new(), &mut wrapper]).unwrap_err();
    assert!(
        err.to_string().contains("op #3 on system #1: Pull"),
        "{err}"
    );
}

/// Whether a system without referrers can run `op`, in a batch or not.
fn without_referrers(op: &Op) -> bool {
    match op {
        Op::PushReferrer { .. } => false,
        Op::Batch(ops) => ops.iter().all(without_referrers),
        _ => true,
    }
}

/// P8: a system that lacks a feature leaves its ops out of the strategy (answering them with
/// the model's outcome would test nothing); [`take_reached`] shows what the cases did run.
#[test]
fn p8_a_system_without_referrers_leaves_them_out_of_the_strategy() {
    let ops = seeded(prop::collection::vec(
        op_mix(Mix::ALL).prop_filter("no referrers", without_referrers),
        1..=8,
    ));
    let config = ProptestConfig {
        cases: 32,
        ..config(16)
    };
    let rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
    let mut runner = TestRunner::new_with_rng(config, rng);
    take_reached();
    runner
        .run(&ops, |ops| {
            run(&ops, &mut [&mut Wrapper::new(false, Check::Outcomes)]).map(drop)
        })
        .unwrap();
    let reached = take_reached();
    eprintln!("{reached:#?}");
    assert!(!reached.iter().any(|l| l.starts_with("PushReferrer")));
    for label in [
        "PushImage -> Pushed new",
        "Tag -> Unit",
        "DeleteManifest -> Digests",
    ] {
        assert!(reached.contains(label), "no case reached {label}");
    }
}
