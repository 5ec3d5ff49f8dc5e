//! proptest strategies: names, digests, images, and sequences of operations.

use ocistore::{Algorithm, Locks};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::Union;

use super::op::*;

/// Mostly the first repository, so that state piles up where ops look for it.
pub(crate) fn repo() -> BoxedStrategy<&'static str> {
    prop_oneof![
        10 => Just(REPOS[0]),
        4 => Just(REPOS[1]),
        3 => Just(REPOS[2]),
        1 => select(BAD_REPOS),
    ]
    .boxed()
}

pub(crate) fn tag() -> BoxedStrategy<&'static str> {
    prop_oneof![12 => select(TAGS), 1 => select(BAD_TAGS)].boxed()
}

pub(crate) fn alg() -> BoxedStrategy<Algorithm> {
    prop_oneof![
        8 => Just(Algorithm::Sha256),
        1 => Just(Algorithm::Sha512),
        1 => Just(Algorithm::Blake3),
    ]
    .boxed()
}

/// A blob that may be uploaded.
pub(crate) fn uploadable_blob() -> BoxedStrategy<BlobSel> {
    (0..UPLOADABLE, alg())
        .prop_map(|(content, alg)| BlobSel { content, alg })
        .boxed()
}

/// A blob a manifest references: mostly one linked to the repository, sometimes any of the
/// pool, sometimes one never uploaded.
pub(crate) fn referenced_blob() -> BoxedStrategy<BlobRef> {
    prop_oneof![
        24 => (0..8usize).prop_map(BlobRef::Linked),
        2 => uploadable_blob().prop_map(BlobRef::Pool),
        1 => Just(BlobRef::Pool(BlobSel { content: UPLOADABLE, alg: Algorithm::Sha256 })),
    ]
    .boxed()
}

pub(crate) fn manifest_sel() -> BoxedStrategy<ManifestSel> {
    prop_oneof![10 => (0..16usize).prop_map(ManifestSel::Existing), 1 => Just(ManifestSel::Unknown)]
        .boxed()
}

pub(crate) fn reference() -> BoxedStrategy<RefChoice> {
    prop_oneof![
        12 => tag().prop_map(RefChoice::Tag),
        6 => alg().prop_map(RefChoice::Digest),
        1 => Just(RefChoice::WrongDigest),
        1 => select(BAD_DIGESTS).prop_map(RefChoice::BadDigest),
    ]
    .boxed()
}

pub(crate) fn image() -> BoxedStrategy<Image> {
    (
        any::<bool>(),
        prop::bool::weighted(0.05),
        referenced_blob(),
        prop::collection::vec(referenced_blob(), 0..3),
    )
        .prop_map(|(docker, mismatch, config, layers)| Image {
            docker,
            mismatch,
            config,
            layers,
        })
        .boxed()
}

pub(crate) fn put_blob() -> BoxedStrategy<Op> {
    let digest = prop_oneof![
        16 => Just(DigestChoice::Right),
        2 => Just(DigestChoice::Wrong),
        1 => select(BAD_DIGESTS).prop_map(DigestChoice::Invalid),
    ];
    (repo(), uploadable_blob(), digest)
        .prop_map(|(repo, blob, digest)| Op::PutBlob { repo, blob, digest })
        .boxed()
}

pub(crate) fn put_blob_sha256() -> BoxedStrategy<Op> {
    (repo(), 0..UPLOADABLE)
        .prop_map(|(repo, content)| Op::PutBlobSha256 { repo, content })
        .boxed()
}

pub(crate) fn mount_blob() -> BoxedStrategy<Op> {
    let blob = prop_oneof![
        4 => (0..8usize).prop_map(BlobRef::Linked),
        1 => uploadable_blob().prop_map(BlobRef::Pool),
    ];
    (repo(), repo(), blob)
        .prop_map(|(from, to, blob)| Op::MountBlob { from, to, blob })
        .boxed()
}

pub(crate) fn push_image() -> BoxedStrategy<Op> {
    (repo(), image(), reference())
        .prop_map(|(repo, image, reference)| Op::PushImage {
            repo,
            image,
            reference,
        })
        .boxed()
}

pub(crate) fn push_index() -> BoxedStrategy<Op> {
    (
        repo(),
        any::<bool>(),
        prop::collection::vec(manifest_sel(), 0..4),
        reference(),
    )
        .prop_map(|(repo, docker, children, reference)| Op::PushIndex {
            repo,
            docker,
            children,
            reference,
        })
        .boxed()
}

pub(crate) fn push_referrer() -> BoxedStrategy<Op> {
    (
        (repo(), manifest_sel(), referenced_blob()),
        (
            select(REFERRER_CONFIG_TYPES),
            prop::option::of(select(ARTIFACT_TYPES)),
            any::<bool>(),
        ),
        prop::collection::vec(referenced_blob(), 0..2),
        reference(),
    )
        .prop_map(
            |(
                (repo, subject, config),
                (config_type, artifact_type, annotated),
                layers,
                reference,
            )| Op::PushReferrer {
                repo,
                subject,
                config,
                config_type,
                artifact_type,
                annotated,
                layers,
                reference,
            },
        )
        .boxed()
}

pub(crate) fn tag_op() -> BoxedStrategy<Op> {
    (repo(), tag(), manifest_sel())
        .prop_map(|(repo, tag, manifest)| Op::Tag {
            repo,
            tag,
            manifest,
        })
        .boxed()
}

pub(crate) fn pull() -> BoxedStrategy<Op> {
    (repo(), manifest_ref_choice())
        .prop_map(|(repo, reference)| Op::Pull { repo, reference })
        .boxed()
}

/// Ops a batch can hold; `mix` weighs the deletes and restores among them (0: none).
pub(crate) fn batchable(mix: Mix) -> BoxedStrategy<Op> {
    weighted(vec![
        (4, put_blob()),
        (2, put_blob_sha256()),
        (2, mount_blob()),
        (5, push_image()),
        (2, push_index()),
        (2, push_referrer()),
        (3, tag_op()),
        (mix.deletes, untag()),
        (mix.deletes, delete_manifest()),
        (mix.deletes.min(1), delete_repository()),
        (mix.bin * 2, restore()),
        (mix.locks, set_locks()),
    ])
}

/// One of the strategies, by weight; those weighing 0 never run.
pub(crate) fn weighted(choices: Vec<(u32, BoxedStrategy<Op>)>) -> BoxedStrategy<Op> {
    Union::new_weighted(choices.into_iter().filter(|(w, _)| *w > 0).collect()).boxed()
}

/// An op that fails whatever the state: ending a batch with it aborts the batch.
pub fn failing() -> BoxedStrategy<Op> {
    prop_oneof![
        (repo(), uploadable_blob()).prop_map(|(repo, blob)| Op::PutBlob {
            repo,
            blob,
            digest: DigestChoice::Wrong,
        }),
        (select(REPOS), select(BAD_TAGS), manifest_sel()).prop_map(|(repo, tag, manifest)| {
            Op::Tag {
                repo,
                tag,
                manifest,
            }
        }),
        (select(REPOS), image(), reference()).prop_map(|(repo, mut image, reference)| {
            image.config = BlobRef::Pool(BlobSel {
                content: UPLOADABLE,
                alg: Algorithm::Sha256,
            });
            Op::PushImage {
                repo,
                image,
                reference,
            }
        }),
    ]
    .boxed()
}

/// A batch: random ops, mostly without bad input (they may still fail, e.g. on an unlinked
/// blob), or an image pushed over blobs the same batch uploads (the push must see them); either
/// sometimes ends with an op that fails whatever the state.
pub fn batch(mix: Mix) -> BoxedStrategy<Op> {
    let clean = batchable(mix).prop_filter("bad input", |op| !op.has_bad_input());
    let random = prop::collection::vec(prop_oneof![4 => clean, 1 => batchable(mix)], 1..5);
    (
        prop_oneof![random, image_over_new_blobs(prop::option::of(select(TAGS)))],
        prop::option::weighted(0.25, failing()),
    )
        .prop_map(|(mut ops, fail)| {
            ops.extend(fail);
            Op::Batch(ops)
        })
        .boxed()
}

/// The blobs of an image put, then the image pushed over them (the push must see them), by
/// `tag` or else by digest: a batch that succeeds whatever the state.
pub fn image_over_new_blobs(
    tag: impl Strategy<Value = Option<&'static str>> + 'static,
) -> BoxedStrategy<Vec<Op>> {
    (
        select(REPOS),
        (0..UPLOADABLE, prop::collection::vec(0..UPLOADABLE, 0..3)),
        any::<bool>(),
        tag,
    )
        .prop_map(|(repo, (config, layers), docker, tag)| {
            let blob = |content| BlobSel {
                content,
                alg: Algorithm::Sha256,
            };
            let mut ops: Vec<Op> = std::iter::once(config)
                .chain(layers.iter().copied())
                .map(|content| Op::PutBlobSha256 { repo, content })
                .collect();
            ops.push(Op::PushImage {
                repo,
                image: Image {
                    docker,
                    mismatch: false,
                    config: BlobRef::Pool(blob(config)),
                    layers: layers.into_iter().map(|l| BlobRef::Pool(blob(l))).collect(),
                },
                reference: tag.map_or(RefChoice::Digest(Algorithm::Sha256), RefChoice::Tag),
            });
            ops
        })
        .boxed()
}

pub(crate) fn slot() -> BoxedStrategy<usize> {
    (0..8usize).boxed()
}

pub(crate) fn chunk() -> BoxedStrategy<usize> {
    (0..CHUNKS.len()).boxed()
}

/// The weights of the op groups beyond the P ops.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    /// The weight of batches.
    pub batches: u32,
    /// The weight of reopens.
    pub reopens: u32,
    /// Untag, delete manifest, delete repository (also inside batches).
    pub deletes: u32,
    /// Policy changes.
    pub policy: u32,
    /// Restores and reverts (also inside batches), purges by hand, autopurge runs.
    pub bin: u32,
    /// Upload sessions (1 for the P tests; 0 leaves room for the rest).
    pub uploads: u32,
    /// Collections, real or dry runs.
    pub collect: u32,
    /// Clock moves, of a second to three days.
    pub clock: u32,
    /// Lock changes (also inside batches).
    pub locks: u32,
    /// Retention policy changes and autopurge runs.
    pub retention: u32,
    /// Purges by filter.
    pub purge: u32,
    /// `usage` and `fsck` runs.
    pub reports: u32,
    /// T2: history retention changes, and reverts to any manifest the history names.
    pub history: u32,
    /// C4: the blob store's disk filling up ([`Op::DiskFull`]`(true)`, this weight) and
    /// getting room again (`DiskFull(false)`, twice this weight, so that runs spend most of
    /// their ops writable), and `health` checks ([`Op::Health`], weight 1 if this is not 0).
    /// 0 in [`Mix::P`] and [`Mix::ALL`]: only for systems that can fill their disk on
    /// command, as a [`RegistrySystem`](crate::RegistrySystem) does through its
    /// [`Faults`](crate::Faults).
    pub disk_full: u32,
}

impl Mix {
    /// The P ops alone: blob writes, mounts, uploads, pushes, tags, pulls and clock moves.
    pub const P: Mix = Mix {
        batches: 0,
        reopens: 0,
        deletes: 0,
        policy: 0,
        bin: 0,
        uploads: 1,
        collect: 0,
        clock: 3,
        locks: 0,
        retention: 0,
        purge: 0,
        reports: 1,
        history: 0,
        disk_full: 0,
    };

    /// Everything the public API can do, in proportions that reach the success paths of each.
    pub const ALL: Mix = Mix {
        batches: 1,
        reopens: 1,
        deletes: 2,
        policy: 1,
        bin: 2,
        uploads: 1,
        collect: 2,
        clock: 8,
        locks: 2,
        retention: 2,
        purge: 2,
        reports: 1,
        history: 1,
        disk_full: 0,
    };

    /// [`Mix::ALL`] with the disk filling up and getting room again now and then (C4), and
    /// more of the ops that write blob bytes (uploads and batches), which a full disk refuses.
    pub const DISK_FULL: Mix = Mix {
        batches: 6,
        uploads: 4,
        disk_full: 4,
        ..Mix::ALL
    };
}

/// Sequences of up to `max_len` operations of every kind ([`Mix::ALL`]), after a soft delete
/// policy, a retention policy and a few tagged images: the strategy to start a harness with.
///
/// ```
/// use ocistore_testkit::{check_registry, ops};
/// use proptest::test_runner::TestRunner;
/// let mut runner = TestRunner::default();
/// runner.run(&ops(8), |ops| check_registry(&ops).map(drop)).unwrap();
/// ```
pub fn ops(max_len: usize) -> BoxedStrategy<Vec<Op>> {
    with_retention(prop::collection::vec(op_mix(Mix::ALL), 1..=max_len.max(1)))
}

/// A manifest, live or in the bin in the proportion `live` to `binned`, or sometimes unknown.
pub(crate) fn manifest_of(live: u32, binned: u32) -> BoxedStrategy<AnySel> {
    prop_oneof![
        live => (0..16usize).prop_map(AnySel::Live),
        binned => (0..16usize).prop_map(AnySel::Binned),
        1 => Just(AnySel::Unknown),
    ]
    .boxed()
}

pub(crate) fn any_sel() -> BoxedStrategy<AnySel> {
    manifest_of(6, 3)
}

pub(crate) fn untag() -> BoxedStrategy<Op> {
    (repo(), tag())
        .prop_map(|(repo, tag)| Op::Untag { repo, tag })
        .boxed()
}

pub(crate) fn delete_manifest() -> BoxedStrategy<Op> {
    (repo(), manifest_ref_choice())
        .prop_map(|(repo, reference)| Op::DeleteManifest { repo, reference })
        .boxed()
}

pub(crate) fn manifest_ref_choice() -> BoxedStrategy<ManifestRef> {
    prop_oneof![
        6 => tag().prop_map(ManifestRef::Tag),
        6 => any_sel().prop_map(ManifestRef::Digest),
        1 => select(BAD_DIGESTS).prop_map(ManifestRef::BadDigest),
    ]
    .boxed()
}

pub(crate) fn delete_repository() -> BoxedStrategy<Op> {
    repo()
        .prop_map(|repo| Op::DeleteRepository { repo })
        .boxed()
}

/// Mostly a manifest in the bin.
pub(crate) fn binned_sel() -> BoxedStrategy<AnySel> {
    manifest_of(2, 6)
}

pub(crate) fn restore() -> BoxedStrategy<Op> {
    let what = prop_oneof![
        3 => tag().prop_map(RestoreSel::Tag),
        2 => binned_sel().prop_map(RestoreSel::Digest),
        4 => (tag(), binned_sel()).prop_map(|(t, sel)| RestoreSel::TagAndDigest(t, sel)),
    ];
    let flags = (prop::bool::weighted(0.3), prop::bool::weighted(0.3));
    (repo(), what, flags)
        .prop_map(|(repo, what, (force, children))| Op::Restore {
            repo,
            what,
            force,
            children,
        })
        .boxed()
}

pub(crate) fn revert_tag() -> BoxedStrategy<Op> {
    revert_to(any_sel())
}

/// T2: a revert to a manifest the history names, live, in the bin or purged.
pub(crate) fn revert_named() -> BoxedStrategy<Op> {
    revert_to(prop_oneof![
        (0..8usize).prop_map(AnySel::Named),
        (0..8usize).prop_map(AnySel::NamedByTag),
    ])
}

fn revert_to(manifest: impl Strategy<Value = AnySel> + 'static) -> BoxedStrategy<Op> {
    (repo(), tag(), manifest, prop::bool::weighted(0.3))
        .prop_map(|(repo, tag, manifest, force)| Op::RevertTag {
            repo,
            tag,
            manifest,
            force,
        })
        .boxed()
}

/// T2: the history retention: forever, days the clock moves reach, the default, the bound,
/// and one out of range.
pub(crate) fn set_history_retention() -> BoxedStrategy<Op> {
    prop_oneof![
        2 => Just(0u32),
        3 => Just(1u32),
        2 => Just(2u32),
        1 => Just(90u32),
        1 => Just(3650u32),
        1 => Just(3651u32),
    ]
    .prop_map(Op::SetHistoryRetention)
    .boxed()
}

pub(crate) fn purge() -> BoxedStrategy<Op> {
    prop_oneof![
        repo().prop_map(|repo| Op::PurgeRepository { repo }),
        (repo(), binned_sel()).prop_map(|(repo, manifest)| Op::PurgeManifest { repo, manifest }),
        (repo(), tag()).prop_map(|(repo, tag)| Op::PurgeTags { repo, tag }),
    ]
    .boxed()
}

/// L1, L2: locks of the repository (not too often: it refuses most ops), a manifest or a tag
/// name; unlocking as often as locking.
pub(crate) fn set_locks() -> BoxedStrategy<Op> {
    let item = prop_oneof![
        2 => Just(ItemSel::Repository),
        3 => manifest_sel().prop_map(ItemSel::Manifest),
        5 => tag().prop_map(ItemSel::Tag),
    ];
    let locks = prop_oneof![
        3 => Just(Locks::UNLOCKED),
        3 => Just(Locks::NO_DELETE),
        2 => Just(Locks::READ_ONLY),
        1 => Just(Locks::UNLOCKED.with_write_enabled(false)),
    ];
    (repo(), item, locks)
        .prop_map(|(repo, item, locks)| Op::SetLocks { repo, item, locks })
        .boxed()
}

/// R1: on or off, with days of 0 to 2 (which the clock moves reach), the default, the bound,
/// and one out of range.
pub(crate) fn set_retention() -> BoxedStrategy<Op> {
    let days = prop_oneof![
        3 => Just(0u32),
        3 => Just(1u32),
        2 => Just(2u32),
        1 => Just(7u32),
        1 => Just(365u32),
        1 => Just(366u32),
    ];
    (prop::bool::weighted(0.8), days)
        .prop_map(|(enabled, days)| Op::SetRetention { enabled, days })
        .boxed()
}

/// U1: one or two filters (sometimes none, sometimes a bad one), an age, `keep`, and the flags;
/// half of the runs dry, some of those followed by the real run (U5).
pub(crate) fn purge_by_filter() -> BoxedStrategy<Op> {
    let texts: Vec<&'static str> = FILTERS.iter().map(|f| f.text).collect();
    let filters = prop_oneof![
        40 => prop::collection::vec(select(texts.clone()), 1..3),
        1 => Just(Vec::new()),
        1 => (prop::collection::vec(select(texts), 0..2), select(BAD_FILTERS)).prop_map(
            |(mut filters, bad)| {
                filters.push(bad);
                filters
            }
        ),
    ];
    // Mostly short ages, which the clock moves pass.
    let valid_ago: Vec<&'static str> = AGOS
        .iter()
        .filter(|(_, secs)| secs.is_some_and(|s| s <= 3600))
        .map(|(text, _)| *text)
        .collect();
    let ago = prop_oneof![
        30 => select(valid_ago),
        10 => select(AGOS).prop_map(|(text, _)| text),
    ];
    let keep = prop_oneof![4 => Just(0usize), 2 => 1..3usize];
    let run = prop_oneof![
        4 => Just(PurgeRun::Real),
        3 => Just(PurgeRun::Dry),
        2 => Just(PurgeRun::DryThenReal),
    ];
    (
        filters,
        ago,
        keep,
        (prop::bool::weighted(0.6), prop::bool::weighted(0.25), run),
    )
        .prop_map(|(filters, ago, keep, (untagged, include_locked, run))| {
            Op::PurgeByFilter(PurgeSel {
                filters,
                ago,
                keep,
                untagged,
                include_locked,
                run,
            })
        })
        .boxed()
}

/// S1: short retentions (so that days of clock expire them), the default, the bounds, and
/// out-of-range ones.
pub(crate) fn retention_days() -> BoxedStrategy<u32> {
    prop_oneof![
        6 => 1..=3u32,
        2 => Just(7u32),
        1 => Just(90u32),
        1 => select(&[0u32, 91][..]),
    ]
    .boxed()
}

pub(crate) fn set_policy() -> BoxedStrategy<Op> {
    (prop::bool::weighted(0.75), retention_days())
        .prop_map(|(enabled, days)| Op::SetPolicy { enabled, days })
        .boxed()
}

/// Every op, with weights; `batches` and `reopens` weigh those two.
pub fn op(batches: u32, reopens: u32) -> BoxedStrategy<Op> {
    op_mix(Mix {
        batches,
        reopens,
        ..Mix::P
    })
}

/// Every op, with weights; `mix` weighs the groups beyond the P ops (0: never).
pub fn op_mix(mix: Mix) -> BoxedStrategy<Op> {
    let Mix {
        batches,
        reopens,
        deletes,
        policy,
        bin,
        uploads,
        collect,
        clock,
        locks,
        retention,
        purge: purges,
        reports,
        history,
        disk_full,
    } = mix;
    let offset = prop_oneof![
        6 => Just(OffsetChoice::Right),
        1 => (1..4u64).prop_map(OffsetChoice::Ahead),
        1 => Just(OffsetChoice::Behind),
    ];
    let finish = prop_oneof![
        4 => alg().prop_map(FinishDigest::Right),
        1 => alg().prop_map(FinishDigest::Wrong),
    ];
    let secs = prop_oneof![
        4 => Just(1u64),
        2 => Just(60),
        1 => Just(3600),
        1 => Just(43_200),
        1 => Just(86_401),
        1 => Just(3 * 86_400),
    ];
    weighted(vec![
        (8, put_blob()),
        (3, put_blob_sha256()),
        (4, mount_blob()),
        (
            uploads * 3,
            repo().prop_map(|repo| Op::StartUpload { repo }).boxed(),
        ),
        (
            uploads * 4,
            (slot(), chunk())
                .prop_map(|(slot, chunk)| Op::AppendChunk { slot, chunk })
                .boxed(),
        ),
        (
            uploads * 3,
            (slot(), chunk(), offset)
                .prop_map(|(slot, chunk, offset)| Op::AppendAt {
                    slot,
                    chunk,
                    offset,
                })
                .boxed(),
        ),
        (
            uploads * 3,
            (slot(), finish)
                .prop_map(|(slot, digest)| Op::FinishUpload { slot, digest })
                .boxed(),
        ),
        (
            uploads,
            slot().prop_map(|slot| Op::CancelUpload { slot }).boxed(),
        ),
        (
            uploads,
            (slot(), resume_via())
                .prop_map(|(slot, via)| Op::ResumeUpload { slot, via })
                .boxed(),
        ),
        (10, push_image()),
        (4, push_index()),
        (4, push_referrer()),
        (5, tag_op()),
        (2, pull()),
        (clock, secs.prop_map(Op::AdvanceClock).boxed()),
        (batches, batch(mix)),
        (reopens, Just(Op::Reopen).boxed()),
        (deletes * 3, untag()),
        (deletes * 4, delete_manifest()),
        (deletes, delete_repository()),
        (policy, set_policy()),
        (bin * 4, restore()),
        (bin, revert_tag()),
        (bin * 2, purge()),
        (
            bin * 2 + retention * 2,
            prop::bool::weighted(0.3 + 0.1 * f64::from(retention.min(4)))
                .prop_map(|now| Op::Autopurge { now })
                .boxed(),
        ),
        (locks * 3, set_locks()),
        (retention, set_retention()),
        (purges * 3, purge_by_filter()),
        (
            collect,
            prop::bool::weighted(0.3)
                .prop_map(|dry_run| Op::Collect { dry_run })
                .boxed(),
        ),
        (reports, Just(Op::Usage).boxed()),
        (reports, Just(Op::Fsck).boxed()),
        // Last: with weight 0 the other ops are drawn as they were without them.
        (disk_full, Just(Op::DiskFull(true)).boxed()),
        (disk_full * 2, Just(Op::DiskFull(false)).boxed()),
        (disk_full.min(1), Just(Op::Health).boxed()),
        (history * 2, revert_named()),
        (history, set_history_retention()),
    ])
}

/// `ResumeUpload` goes through a repository chosen at random: the session's own, or another.
pub(crate) fn resume_via() -> BoxedStrategy<Option<&'static str>> {
    prop::option::of(select(REPOS)).boxed()
}

/// A policy to start with: mostly on with a short retention, sometimes left off.
fn initial_policy() -> BoxedStrategy<Option<Op>> {
    prop::option::weighted(
        0.8,
        (1..=3u32).prop_map(|days| Op::SetPolicy {
            enabled: true,
            days,
        }),
    )
    .boxed()
}

/// Ops after an initial policy and a few tagged images pushed, so that deletes find something
/// to put in the bin.
pub fn seeded(ops: impl Strategy<Value = Vec<Op>> + 'static) -> BoxedStrategy<Vec<Op>> {
    let images = prop::collection::vec(image_over_new_blobs(select(TAGS).prop_map(Some)), 2..6);
    let images = images.prop_map(|batches| batches.into_iter().map(Op::Batch).collect());
    with_policy((images, ops).prop_map(|(images, ops): (Vec<Op>, Vec<Op>)| [images, ops].concat()))
}

/// Ops after an initial policy.
pub fn with_policy(ops: impl Strategy<Value = Vec<Op>> + 'static) -> BoxedStrategy<Vec<Op>> {
    (initial_policy(), ops)
        .prop_map(|(policy, ops)| policy.into_iter().chain(ops).collect())
        .boxed()
}

/// `ops` with a stretch of them on a full disk (C4): an [`Op::DiskFull`]`(true)` and, at or
/// after it, a `DiskFull(false)`, inserted at random places (the end included), besides the
/// switches the ops may hold. Every case then has a full period, and most of them ops after
/// it.
pub fn with_disk_full(ops: impl Strategy<Value = Vec<Op>> + 'static) -> BoxedStrategy<Vec<Op>> {
    (
        ops,
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(mut ops, a, b)| {
            let (a, b) = (a.index(ops.len() + 1), b.index(ops.len() + 1));
            ops.insert(a.max(b), Op::DiskFull(false));
            ops.insert(a.min(b), Op::DiskFull(true));
            ops
        })
        .boxed()
}

/// Ops after a retention policy (half the time, with 0 to 2 days), a soft delete policy and a
/// few tagged images.
pub fn with_retention(ops: impl Strategy<Value = Vec<Op>> + 'static) -> BoxedStrategy<Vec<Op>> {
    let retention = prop::option::weighted(
        0.5,
        (0..=2u32).prop_map(|days| Op::SetRetention {
            enabled: true,
            days,
        }),
    );
    (retention, seeded(ops))
        .prop_map(|(retention, ops)| retention.into_iter().chain(ops).collect())
        .boxed()
}
