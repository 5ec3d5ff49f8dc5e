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

use std::sync::Arc;

use ocistore::{Algorithm, Locks, ObjectStoreBlobs};
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

proptest! {
    #![proptest_config(config(96))]

    /// M1–M3: two shared handles on one store, taking turns op by op (a write through one, the
    /// next read through the other), behave as one store under every kind of op: pushes,
    /// uploads, deletes, the recycle bin, policies, batches, collections and reopens.
    #[test]
    fn m2_m3_model_matches_two_shared_handles_taking_turns(
        ops in seeded(prop::collection::vec(
            op_mix(Mix { batches: 1, reopens: 1, deletes: 2, policy: 1, bin: 2, collect: 2, clock: 3, ..Mix::P }),
            1..50,
        )),
    ) {
        run_on(&ops, &mut RegistrySystem::shared(2))?;
    }
}

proptest! {
    #![proptest_config(config(24))]

    /// O1–O3: with its blobs on object storage (object_store's in-memory store with parts of
    /// 16 bytes, so every upload sends parts; Azurite with the same; moto's S3 with its 5 MiB
    /// minimum), the registry behaves as the model under pushes, uploads, deletes, the bin,
    /// collections and reopens.
    #[test]
    fn o2_o3_model_matches_registry_with_blobs_in_memory_objects(
        ops in seeded(object_ops()),
    ) {
        let blobs = ObjectStoreBlobs::in_memory("model").with_part_size(16).unwrap();
        run_on(&ops, &mut RegistrySystem::on_blob_store(Arc::new(blobs)))?;
    }

    #[test]
    fn o2_o3_model_matches_registry_with_blobs_on_azurite(ops in seeded(object_ops())) {
        let blobs = Arc::new(servers::azurite_blobs(16));
        run_on(&ops, &mut RegistrySystem::on_blob_store(blobs))?;
    }

    #[test]
    fn o2_model_matches_registry_with_blobs_on_s3(ops in seeded(object_ops())) {
        let blobs = Arc::new(servers::s3_blobs(5 << 20));
        run_on(&ops, &mut RegistrySystem::on_blob_store(blobs))?;
    }
}

/// The ops of the object-store model tests: every kind that touches blob bytes. A wrong blake3
/// digest at a finish becomes a wrong sha256: after parts went to the object store no blake3
/// state was kept, so the store checks as it joins the parts and a mismatch ends the session
/// (docs/design.md, "A store in object storage"), where the model keeps it open.
fn object_ops() -> impl Strategy<Value = Vec<Op>> {
    let op = op_mix(Mix {
        batches: 1,
        reopens: 1,
        deletes: 2,
        bin: 1,
        collect: 3,
        clock: 4,
        ..Mix::P
    })
    .prop_map(|op| match op {
        Op::FinishUpload {
            slot,
            digest: FinishDigest::Wrong(Algorithm::Blake3),
        } => Op::FinishUpload {
            slot,
            digest: FinishDigest::Wrong(Algorithm::Sha256),
        },
        op => op,
    });
    prop::collection::vec(op, 1..40)
}

/// [`run`] on one given system.
fn run_on(ops: &[Op], system: &mut RegistrySystem) -> Result<Vec<Outcome>, TestCaseError> {
    ocistore_testkit::run(ops, &mut [system])
}

/// Runs `cases` cases of `ops` (or as many as [`config`] says), then checks that they reached
/// every outcome of `must_reach` at least once: a label of [`count`] for one of the ops named
/// whose outcome holds each of the words (`"PurgeByFilter -> PurgeReport real untag delete"`
/// for `(&["PurgeByFilter"], "real delete")`). The strategies must keep reaching the success
/// paths; the check is skipped when fewer cases run (`PROPTEST_CASES` below `cases`, or no
/// tmpfs).
fn check_model(cases: u32, ops: BoxedStrategy<Vec<Op>>, must_reach: &[(&[&str], &str)]) {
    check_model_observing(cases, ops, must_reach, |_, _| {});
}

/// [`check_model`], which also shows `observe` every passing case's ops and their outcomes;
/// returns whether enough cases ran for the reach check.
fn check_model_observing(
    cases: u32,
    ops: BoxedStrategy<Vec<Op>>,
    must_reach: &[(&[&str], &str)],
    observe: impl Fn(&[Op], &[Outcome]),
) -> bool {
    let config = config(cases);
    let enough = config.cases >= cases;
    take_reached();
    let mut runner = TestRunner::new(config);
    let result = runner.run(&ops, |ops| {
        let outcomes = run(&ops)?;
        observe(&ops, &outcomes);
        Ok(())
    });
    if let Err(e) = result {
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
    enough
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

/// T1, T2: the registry behaves as the model under reverts to every manifest the history
/// names (live, in the bin, purged or never named by that tag), history retention changes and
/// autopurge runs over clock moves of days, mixed with pushes, tags, deletes with the policy on
/// and off, restores, purges by hand and by filter, locks and reopens. The cases must reach
/// each kind of revert but the locked one (rare here: `tests/history.rs` has it) and history
/// expiring.
#[test]
fn t2_model_matches_registry_under_reverts_and_history_retention() {
    let mix = Mix {
        batches: 1,
        reopens: 1,
        deletes: 3,
        policy: 1,
        bin: 2,
        uploads: 0,
        clock: 8,
        locks: 2,
        purge: 1,
        history: 4,
        ..Mix::P
    };
    let ops = with_retention(prop::collection::vec(op_mix(mix), 1..60));
    check_model(
        192,
        ops,
        &[
            (&["RevertTag"], "Unit"),
            (&["RevertTag"], "ManifestUnknown"),
            (&["RevertTag"], "NotInHistory"),
            (&["RevertTag"], "TagConflict"),
            (&["Autopurge"], "history"),
            (&["SetHistoryRetention"], "InvalidSetting"),
        ],
    );
}

/// What the cases of the C4 test did while the disk was full, and after.
#[derive(Debug, Default)]
struct DiskFullStats {
    /// Cases run, and those in which the disk filled up.
    cases: usize,
    cases_full: usize,
    /// Ops run while the disk was full (but the switches), and of those: refused with
    /// `StorageFull`, and successful (writing no bytes, or bytes the store held), with their
    /// labels.
    full: usize,
    refused: usize,
    went_on: usize,
    went_on_as: std::collections::BTreeSet<String>,
    /// Successful ops that a full disk would have refused (they wrote bytes), after a full
    /// period ended and without a reopen since.
    resumed: usize,
}

/// C4: the registry behaves as the model while the blob store's disk fills up and gets room
/// again (`Op::DiskFull`, drawn by `Mix::DISK_FULL`), with every other op and reopens. Every
/// write of blob bytes while it is full — puts of a blob the store does not hold, in batches
/// too, upload starts, appends, finishes — is `StorageFull` and changes nothing (the store is
/// compared whole after it, and an upload stays at its offset); reads, mounts, pushes, tags,
/// deletes, purges, autopurge and the collector go on; the disk stays full across a reopen;
/// `health` answers. The cases must reach a refusal of each kind of write, and writes of bytes
/// that succeed once the disk has room again, without a reopen.
#[test]
fn c4_model_matches_registry_while_the_blob_store_disk_fills_up_and_gets_room_again() {
    // An upload in progress first, so that full periods find sessions to append to and finish.
    let upload = (0..CHUNKS.len()).prop_map(|chunk| {
        vec![
            Op::StartUpload { repo: REPOS[0] },
            Op::AppendChunk { slot: 0, chunk },
        ]
    });
    let ops = (
        upload,
        with_disk_full(prop::collection::vec(op_mix(Mix::DISK_FULL), 1..80)),
    )
        .prop_map(|(upload, ops)| [upload, ops].concat());
    let ops = with_retention(ops);
    let stats = std::cell::RefCell::new(DiskFullStats::default());
    let enough = check_model_observing(
        128,
        ops,
        &[
            (&["PutBlob", "PutBlobSha256"], "StorageFull"),
            (&["StartUpload"], "StorageFull"),
            (&["AppendChunk", "AppendAt"], "StorageFull"),
            (&["FinishUpload"], "StorageFull"),
            (&["Batch"], "StorageFull"),
            (&["Health"], "Health"),
        ],
        |ops, outcomes| {
            let mut s = stats.borrow_mut();
            s.cases += 1;
            // The model again, to ask what a full disk would have said.
            let mut model = Model::new();
            // Whether a full period ended since the last reopen.
            let mut room_again = false;
            let mut was_full = false;
            let mut filled = false;
            for (op, outcome) in ops.iter().zip(outcomes) {
                let step = model.resolve(op);
                let full = model.disk_full();
                let would_refuse = {
                    let mut full_model = model.clone();
                    full_model.step(&Step::DiskFull(true)).unwrap();
                    full_model.step(&step) == Err(ErrKind::StorageFull)
                };
                assert_eq!(&model.step(&step), outcome, "the model replays");
                match op {
                    Op::DiskFull(_) | Op::Health => {}
                    Op::Reopen => room_again = false,
                    _ if full => {
                        s.full += 1;
                        match outcome {
                            Err(ErrKind::StorageFull) => s.refused += 1,
                            Ok(_) => {
                                s.went_on += 1;
                                s.went_on_as.insert(label(op, outcome));
                            }
                            Err(_) => {}
                        }
                    }
                    _ if room_again && would_refuse && outcome.is_ok() => s.resumed += 1,
                    _ => {}
                }
                if was_full && !model.disk_full() {
                    room_again = true;
                }
                was_full = model.disk_full();
                filled |= was_full;
            }
            s.cases_full += usize::from(filled);
        },
    );
    let stats = stats.into_inner();
    eprintln!(
        "cases {} (with a full disk: {}); ops on a full disk {}: refused {}, went on {}; \
         writes of bytes after a full period {}",
        stats.cases, stats.cases_full, stats.full, stats.refused, stats.went_on, stats.resumed
    );
    if enough {
        // What goes on while the disk is full, the writes of bytes the store holds included.
        let went_on: &[&[&str]] = &[
            &["PutBlob -> Unit", "PutBlobSha256 -> Digest"],
            &["MountBlob -> Unit"],
            &["PushImage -> Pushed new", "PushImage -> Pushed again"],
            &["Tag -> Unit"],
            &["Batch -> Batch"],
            &[
                "Untag -> Unit",
                "DeleteManifest -> Digests",
                "DeleteRepository -> Unit",
            ],
            &["Autopurge -> Purged", "Autopurge -> Purged retention"],
            &["Collect -> Collected"],
        ];
        let missed: Vec<_> = went_on
            .iter()
            .filter(|labels| !labels.iter().any(|l| stats.went_on_as.contains(*l)))
            .collect();
        assert!(
            missed.is_empty(),
            "nothing went on on a full disk as {missed:?}"
        );
        assert!(
            stats.resumed > 0,
            "no write of bytes succeeded after a full period: {stats:?}"
        );
    }
}

/// C4: a full disk refuses each kind of write of blob bytes, and nothing else: a put or a
/// finish of a blob the store holds goes on; a batch whose put is refused writes nothing; a
/// refused append leaves the session at its offset and a refused finish leaves it open; the
/// disk stays full across a reopen, and `health` says writable (the store's own disk has room
/// for its reserve); once there is room again, the same writes succeed, without a reopen.
#[test]
fn c4_a_full_disk_refuses_each_write_of_bytes_and_the_same_writes_succeed_once_there_is_room() {
    let repo = REPOS[0];
    let put = |content| Op::PutBlobSha256 { repo, content };
    let finish = |slot| Op::FinishUpload {
        slot,
        digest: FinishDigest::Right(Algorithm::Sha256),
    };
    let append = |slot, chunk| Op::AppendChunk { slot, chunk };
    let digest = |content: usize| Ok(Value::Digest(sha256(BLOBS[content])));
    let (full, unit) = (Err(ErrKind::StorageFull), Ok(Value::Unit));
    let mut ops: Vec<(Op, Option<Outcome>)> = untagged_image(repo)
        .into_iter()
        .map(|op| (op, None))
        .collect();
    ops.extend([
        (put(1), None),
        // Session 0 holds bytes no blob has; session 1 those of blob 1, which the store holds.
        (Op::StartUpload { repo }, Some(Ok(Value::Started))),
        (append(0, 4), Some(Ok(Value::Offset(2)))),
        (Op::StartUpload { repo }, None),
        (append(1, 2), None),
        (Op::DiskFull(true), Some(unit.clone())),
        (put(2), Some(full.clone())),
        (put(0), Some(digest(0))),
        (Op::StartUpload { repo }, Some(full.clone())),
        (append(0, 0), Some(full.clone())),
        (finish(0), Some(full.clone())),
        (finish(1), Some(unit.clone())),
        (Op::Batch(vec![put(0), put(2)]), Some(full.clone())),
        (Op::Reopen, None),
        (
            Op::Health,
            Some(Ok(Value::Health {
                writable: true,
                storage_full: false,
            })),
        ),
        (put(2), Some(full.clone())),
        (
            Op::MountBlob {
                from: repo,
                to: "lib",
                blob: BlobRef::Linked(0),
            },
            Some(unit.clone()),
        ),
        (
            Op::Tag {
                repo,
                tag: "v1",
                manifest: ManifestSel::Existing(0),
            },
            Some(unit.clone()),
        ),
        (Op::DiskFull(false), None),
        (append(0, 0), Some(Ok(Value::Offset(2 + 6)))),
        (finish(0), Some(unit.clone())),
        (Op::StartUpload { repo }, Some(Ok(Value::Started))),
        (
            Op::Batch(vec![put(0), put(2)]),
            Some(Ok(Value::Batch(vec![
                digest(0).unwrap(),
                digest(2).unwrap(),
            ]))),
        ),
    ]);
    let (ops, expected): (Vec<Op>, Vec<Option<Outcome>>) = ops.into_iter().unzip();
    let outcomes = run(&ops).unwrap();
    for (i, expected) in expected.iter().enumerate() {
        if let Some(expected) = expected {
            assert_eq!(&outcomes[i], expected, "op #{i}: {:?}", ops[i]);
        }
    }
}

/// The sha256 digest of `bytes`, as text.
fn sha256(bytes: &[u8]) -> String {
    Algorithm::Sha256.digest(bytes).to_string()
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

/// S17 (and A2, S9), found by the model test: an index and then its child deleted into the bin.
/// The child cannot be purged by hand while the index is in the bin (it was: the index then
/// came back without it and fsck reported the child missing); a restore of the index with its
/// children brings both back, and fsck finds nothing.
#[test]
fn s17_a_child_in_the_bin_outlives_its_index_and_fsck_stays_clean() {
    let (app, lib) = ("team/app", "lib");
    let config = BlobSel {
        content: 0,
        alg: Algorithm::Sha256,
    };
    let image_in = |repo| {
        Op::Batch(vec![
            Op::PutBlobSha256 { repo, content: 0 },
            Op::PushImage {
                repo,
                image: Image {
                    docker: false,
                    mismatch: false,
                    config: BlobRef::Pool(config),
                    layers: vec![],
                },
                reference: RefChoice::Tag("latest"),
            },
        ])
    };
    let ops = [
        Op::SetPolicy {
            enabled: true,
            days: 1,
        },
        image_in(lib),
        image_in(lib),
        Op::PutBlob {
            repo: app,
            blob: config,
            digest: DigestChoice::Right,
        },
        Op::PushReferrer {
            repo: app,
            subject: ManifestSel::Existing(0),
            config: BlobRef::Linked(0),
            config_type: "application/vnd.oci.empty.v1+json",
            artifact_type: None,
            annotated: false,
            layers: vec![],
            reference: RefChoice::Tag("latest"),
        },
        Op::PushIndex {
            repo: app,
            docker: false,
            children: vec![ManifestSel::Existing(0)],
            reference: RefChoice::Tag("latest"),
        },
        Op::DeleteManifest {
            repo: app,
            reference: ManifestRef::Digest(AnySel::Live(2)),
        },
        Op::DeleteManifest {
            repo: app,
            reference: ManifestRef::Digest(AnySel::Live(0)),
        },
        Op::PurgeManifest {
            repo: app,
            manifest: AnySel::Binned(1),
        },
        Op::Fsck,
        Op::Restore {
            repo: app,
            what: RestoreSel::Digest(AnySel::Binned(0)),
            force: false,
            children: true,
        },
        Op::Fsck,
    ];
    let outcomes = run(&ops).unwrap();
    let n = outcomes.len();
    assert!(
        matches!(&outcomes[n - 4], Err(ErrKind::ManifestReferenced { repository, .. }) if repository == app),
        "{:?}",
        outcomes[n - 4]
    );
    for fsck in [&outcomes[n - 3], &outcomes[n - 1]] {
        match fsck {
            Ok(Value::Fsck(report)) => assert!(report.problems.is_empty(), "{report:?}"),
            other => panic!("{other:?}"),
        }
    }
    assert!(
        matches!(&outcomes[n - 2], Ok(Value::Digest(_))),
        "{:?}",
        outcomes[n - 2]
    );
}
