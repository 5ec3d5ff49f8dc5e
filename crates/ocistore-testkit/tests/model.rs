//! SPEC P1–P8, N1–N3, C1, D1–D5, S1–S16, T1–T2, G1–G5, L1–L2, R1–R3 and U1–U6 as a
//! model-based property test, through the public kit (`ocistore_testkit`, `docs/testing.md`):
//! one model, not two.
//!
//! Random sequences of `Op`s run against the kit's `Model` and against a real store on a manual
//! clock (`RegistrySystem`); each op must have the same `Outcome` on both (the same value, or
//! the same error variant with the same names in it), and after every op the registry side reads
//! the whole store through the public API and checks it against the model.
//!
//! To extend the model with a rule (files of `crates/ocistore-testkit/src/`): add an `Op` (and
//! its strategy, in `strategies.rs`), the `Step` it resolves to (`step.rs`), its arm in the
//! model's and the registry's step functions (`model.rs`, `registry.rs`; the batch arm too if a
//! batch can hold it), and the reads that show its effect to the registry's comparison.
//!
//! `MODEL_STATS=1 cargo test --test model -- --nocapture` prints how often each op had each
//! outcome, to check that the strategies reach the success paths as well as the errors (a purge
//! by filter's outcome tells whether it untagged, deleted or skipped locked items; an autopurge
//! run's whether the retention policy deleted). A test run through [`check_model`] also fails
//! when its cases stop reaching the outcomes it lists.

use ocistore::{Algorithm, Locks};
use ocistore_testkit::*;
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};

/// Runs `ops` on a fresh model and a fresh store, comparing after every op.
fn run(ops: &[Op]) -> Result<Vec<Outcome>, TestCaseError> {
    check_registry(ops)
}

proptest! {
    #![proptest_config(config(192))]

    /// P1–P8 (with N1–N3 on the error paths): the registry behaves as the model under random
    /// blob writes, mounts, uploads, pushes, tags, pulls and clock moves.
    #[test]
    fn p1_p8_model_matches_registry_under_random_operations(
        ops in prop::collection::vec(op(3, 1), 1..40),
    ) {
        run(&ops)?;
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// C1: batches apply all their ops or none, and everything (upload sessions with their
    /// offsets too) survives reopening the store.
    #[test]
    fn c1_model_matches_registry_across_batches_and_reopens(
        ops in prop::collection::vec(op(12, 6), 1..40),
    ) {
        run(&ops)?;
    }
}

proptest! {
    #![proptest_config(config(96))]

    /// D1–D5, S1, S2, S5, S12, S13, T1, L1: the registry behaves as the model under random
    /// pushes, tags, untags, manifest and repository deletes (permanent or into the bin, or
    /// refused by a lock) and policy changes, mixed with the P ops.
    #[test]
    fn d1_d5_s2_l1_model_matches_registry_under_deletes(
        ops in with_policy(prop::collection::vec(
            op_mix(Mix { deletes: 3, policy: 1, reopens: 1, locks: 1, ..Mix::P }),
            1..50,
        )),
    ) {
        run(&ops)?;
    }
}

proptest! {
    #![proptest_config(config(224))]

    /// S3–S16, T1, T2, C1, L2: the registry behaves as the model under restores (by tag, by
    /// digest, both, forced; or refused by a lock), reverts, purges by hand, autopurge runs (due
    /// or not) over clock moves of days, policy changes and reopens, mixed with deletes and the
    /// P ops; batches hold deletes, restores and lock changes too.
    #[test]
    fn s3_s16_t2_l2_model_matches_registry_under_restores_purges_and_autopurge(
        ops in seeded(prop::collection::vec(
            op_mix(Mix { batches: 2, reopens: 1, deletes: 3, policy: 1, bin: 3, uploads: 0, locks: 1, ..Mix::P }),
            1..60,
        )),
    ) {
        run(&ops)?;
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// G1–G5, S14: the registry behaves as the model under collections (real and dry runs)
    /// mixed with every other op: blob writes, uploads left to expire, pushes, deletes,
    /// restores, purges, clock moves past the grace period and reopens. A blob the model holds
    /// live is never swept: every later read and push finds it.
    #[test]
    fn g1_g5_model_matches_registry_under_collections(
        ops in seeded(prop::collection::vec(
            op_mix(Mix { batches: 1, reopens: 1, deletes: 2, policy: 1, bin: 1, collect: 6, clock: 8, ..Mix::P }),
            1..60,
        )),
    ) {
        run(&ops)?;
    }
}

/// Runs `cases` cases of `ops` (or as many as [`config`] says), then checks that they reached
/// every outcome of `must_reach` at least once: a label of [`count`] for one of the ops named
/// whose outcome holds each of the words (`"PurgeByFilter -> PurgeReport real untag delete"`
/// for `(&["PurgeByFilter"], "real delete")`). The strategies must keep reaching the success
/// paths; the check is skipped when fewer cases run (`PROPTEST_CASES` below `cases`, or no
/// tmpfs).
fn check_model(cases: u32, ops: BoxedStrategy<Vec<Op>>, must_reach: &[(&[&str], &str)]) {
    let config = config(cases);
    let enough = config.cases >= cases;
    take_reached();
    let mut runner = TestRunner::new(config);
    if let Err(e) = runner.run(&ops, |ops| run(&ops).map(drop)) {
        panic!("{e}");
    }
    if enough {
        let reached = take_reached();
        let missed: Vec<_> = must_reach
            .iter()
            .filter(|(ops, holds)| {
                !reached.iter().any(|label| {
                    let (op, outcome) = label.split_once(" -> ").unwrap();
                    let words: Vec<&str> = outcome.split(' ').collect();
                    ops.contains(&op) && holds.split(' ').all(|w| words.contains(&w))
                })
            })
            .collect();
        assert!(missed.is_empty(), "no case reached {missed:?}");
    }
}

/// The ops that write into a repository (L2).
const WRITES: &[&str] = &[
    "PutBlob",
    "PutBlobSha256",
    "MountBlob",
    "PushImage",
    "PushIndex",
    "PushReferrer",
    "Tag",
    "Restore",
    "RevertTag",
];

/// L1, L2, R1–R3, U1–U6, T1: the registry behaves as the model under locks set and lifted
/// (in batches too) with every op they refuse, retention policy changes with autopurge runs
/// over clock moves of days, and purges by filter (real, dry, a dry run then the real one),
/// mixed with deletes, restores, policy changes, reopens and the P ops. The cases must reach
/// purges that untag and delete, locked items skipped, retention deletes and `Locked` refusals.
#[test]
fn l1_l2_r1_r3_u1_u6_t1_model_matches_registry_under_locks_retention_and_purges() {
    let mix = Mix {
        batches: 1,
        reopens: 1,
        deletes: 2,
        policy: 1,
        bin: 2,
        uploads: 0,
        clock: 10,
        locks: 4,
        retention: 2,
        purge: 4,
        ..Mix::P
    };
    let ops = with_retention(prop::collection::vec(op_mix(mix), 1..60));
    check_model(
        128,
        ops,
        &[
            (&["PurgeByFilter"], "real untag"),
            (&["PurgeByFilter"], "real delete"),
            (&["PurgeByFilter"], "locked"),
            (&["PurgeByFilter"], "dry untag"),
            (&["Autopurge"], "retention"),
            (&["Untag", "DeleteManifest", "DeleteRepository"], "Locked"),
            (WRITES, "Locked"),
        ],
    );
}

/// P1, P2: an upload session belongs to the repository it was started in; resuming it through
/// another one is `UploadUnknown`, as it already is after a reopen.
#[test]
fn p1_resume_upload_through_another_repository_is_upload_unknown_in_the_same_process() {
    run(&[
        Op::StartUpload { repo: "team/app" },
        Op::ResumeUpload {
            slot: 0,
            via: Some("lib"),
        },
    ])
    .unwrap();
}

/// L2: finishing an upload into a repository write-locked since the session started is
/// refused like a put, and leaves the session open: it finishes once the lock is lifted.
#[test]
fn l2_finish_upload_into_a_write_locked_repository_is_refused_and_the_session_stays() {
    let lock = |locks| Op::SetLocks {
        repo: "team/app",
        item: ItemSel::Repository,
        locks,
    };
    let finish = Op::FinishUpload {
        slot: 0,
        digest: FinishDigest::Right(Algorithm::Sha256),
    };
    let outcomes = run(&[
        Op::PutBlobSha256 {
            repo: "team/app",
            content: 0,
        },
        Op::StartUpload { repo: "team/app" },
        Op::AppendChunk { slot: 0, chunk: 0 },
        Op::AppendChunk { slot: 0, chunk: 1 },
        lock(Locks::READ_ONLY),
        finish.clone(),
        lock(Locks::UNLOCKED),
        finish,
    ])
    .unwrap();
    let refused = ErrKind::Locked {
        repository: "team/app".to_owned(),
        item: "the repository".to_owned(),
        lock: "write_enabled".to_owned(),
    };
    assert_eq!(outcomes[5], Err(refused));
    assert_eq!(outcomes[7], Ok(Value::Unit));
}

/// A blob, and an image of it pushed by digest: the first manifest of `repo`, untagged.
fn untagged_image(repo: &'static str) -> Vec<Op> {
    let config = BlobSel {
        content: 0,
        alg: Algorithm::Sha256,
    };
    vec![
        Op::PutBlobSha256 { repo, content: 0 },
        Op::PushImage {
            repo,
            image: Image {
                docker: false,
                mismatch: false,
                config: BlobRef::Pool(config),
                layers: Vec::new(),
            },
            reference: RefChoice::Digest(Algorithm::Sha256),
        },
    ]
}

/// R1, R2: an untagged index and its untagged children, older than the index as children are,
/// all go in one autopurge run: the index going frees its children.
#[test]
fn r1_r2_retention_deletes_an_untagged_index_and_its_older_children_in_one_run() {
    let repo = REPOS[0];
    let mut ops = vec![Op::SetRetention {
        enabled: true,
        days: 0,
    }];
    ops.extend(untagged_image(repo));
    ops.extend([
        Op::AdvanceClock(1),
        Op::PushIndex {
            repo,
            docker: false,
            children: vec![ManifestSel::Existing(0)],
            reference: RefChoice::Digest(Algorithm::Sha256),
        },
        Op::AdvanceClock(1),
        Op::Autopurge { now: true },
    ]);
    let outcomes = run(&ops);
    let Ok(Value::Purged {
        untagged_deleted, ..
    }) = outcomes.unwrap()[6]
    else {
        panic!("autopurge failed");
    };
    assert_eq!(untagged_deleted, 2, "the index and its child");
}

/// U3, U4: a locked untagged child of a tagged index is not a purge's to delete, lock or no
/// lock: the purge does not report it as a locked item it skipped, nor its repository once
/// that is locked.
#[test]
fn u3_u4_purge_reports_no_lock_on_what_it_would_not_delete() {
    let repo = REPOS[0];
    let purge = Op::PurgeByFilter(PurgeSel {
        filters: vec!["team/.*:v.*"],
        ago: "0",
        keep: 0,
        untagged: true,
        include_locked: false,
        run: PurgeRun::DryThenReal,
    });
    let mut ops = untagged_image(repo);
    ops.extend([
        Op::PushIndex {
            repo,
            docker: false,
            children: vec![ManifestSel::Existing(0)],
            reference: RefChoice::Tag("latest"),
        },
        Op::SetLocks {
            repo,
            item: ItemSel::Manifest(ManifestSel::Existing(0)),
            locks: Locks::NO_DELETE,
        },
        Op::SetLocks {
            repo,
            item: ItemSel::Manifest(ManifestSel::Existing(1)),
            locks: Locks::NO_DELETE,
        },
        Op::AdvanceClock(60),
        purge.clone(),
        Op::SetLocks {
            repo,
            item: ItemSel::Repository,
            locks: Locks::NO_DELETE,
        },
        purge,
    ]);
    let outcomes = run(&ops).unwrap();
    for i in [6, 8] {
        let Ok(Value::PurgeReport { repositories, .. }) = &outcomes[i] else {
            panic!("purge failed: {:?}", outcomes[i]);
        };
        assert_eq!(repositories, &[], "nothing to do, nothing skipped");
    }
}
