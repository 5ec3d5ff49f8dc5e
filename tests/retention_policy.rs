//! The retention policy for untagged manifests (SPEC R1–R3): a manifest that became untagged
//! after the policy took effect is deleted by the retention clock (`run_now`, `run_due`) once
//! it has stayed untagged for the policy's days; children of a live index and referrers of a
//! live subject are held; with soft delete on, its deletes go to the recycle bin. Also the
//! upgrade of a version 1 store, which had no index of untagged manifests.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    START, Store, deleted_tag_pairs, event, fails_writing_nothing, manifest_digests, pairs,
    policy_on, push, push_image, push_index, push_referrer, push_untagged, report, set,
    untagged_manifests, upload_image,
};
use ocistore::manifest::OCI_MANIFEST;
use ocistore::{
    Algorithm, Digest, Error, FORMAT_VERSION, Item, Locks, OnConflict, Repository, Restore,
    RetentionPolicy, TagCause,
};
use redb::{ReadableDatabase, ReadableTableMetadata, TableDefinition};
use serde_json::json;

const DAY: u64 = 86_400;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const UNTAGGED: TableDefinition<(u64, &str, &str), ()> = TableDefinition::new("untagged");

// ---------------------------------------------------------------------------------------------
// Helpers (the ones shared with the other test files are in `common`)

fn retention_on(s: &Store, days: u32) {
    s.registry
        .set_retention_policy(RetentionPolicy::enabled(days).unwrap())
        .unwrap();
}

/// A store whose retention policy took effect at `START` with `days`, and its repository `app`.
fn store(days: u32) -> (Store, Repository) {
    let s = Store::new();
    retention_on(&s, days);
    let repo = s.repo("app");
    (s, repo)
}

/// Runs the retention clock now; checks that the policy deleted `untagged` manifests and that
/// nothing was purged (tag history older than its retention may have gone: T2).
fn run_deletes(s: &Store, untagged: usize) {
    let mut expected = report(s.registry.now(), 0, 0, 0);
    expected.untagged_deleted = untagged;
    let mut ran = s.registry.run_now().unwrap();
    ran.history_events = 0;
    assert_eq!(ran, expected);
}

/// Checks that a run one second before `secs` from now keeps manifest `digest` of `repo` and
/// the run at `secs` deletes it.
fn deleted_after_exactly(s: &Store, repo: &Repository, digest: &Digest, secs: u64) {
    s.advance(secs - 1);
    run_deletes(s, 0);
    assert!(is_live(repo, digest), "one second early");
    s.advance(1);
    run_deletes(s, 1);
    assert!(!is_live(repo, digest), "on the dot");
}

fn is_live(repo: &Repository, digest: &Digest) -> bool {
    manifest_digests(repo).contains(digest)
}

/// The ways a manifest becomes untagged.
#[derive(Debug, Clone, Copy)]
enum Way {
    Untag,
    MoveItsOnlyTag,
    PushByDigest,
}

const WAYS: [Way; 3] = [Way::Untag, Way::MoveItsOnlyTag, Way::PushByDigest];

/// Makes a new manifest of `repo` untagged now, the way given; `seed` names it and its tag.
fn untagged_now(repo: &Repository, way: Way, seed: &str) -> Digest {
    match way {
        Way::Untag => {
            let digest = push_image(repo, seed, seed);
            repo.untag(seed).unwrap();
            digest
        }
        Way::MoveItsOnlyTag => {
            let digest = push_image(repo, seed, seed);
            push_image(repo, seed, &format!("{seed} next"));
            digest
        }
        Way::PushByDigest => push_untagged(repo, seed),
    }
}

/// Pushes, untagged, a referrer of the manifest whose body is `subject` (pushed or not).
fn push_referrer_of(repo: &Repository, subject: &[u8], seed: &str) -> Digest {
    let config = repo.put_blob_sha256(b"{}").unwrap();
    let layer = format!("signature {seed}");
    let body = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": common::EMPTY_TYPE, "digest": config, "size": 2},
        "layers": [{"mediaType": common::SIG_TYPE, "digest": repo.put_blob_sha256(&layer).unwrap(), "size": layer.len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": Algorithm::Sha256.digest(subject), "size": subject.len()},
    });
    push(
        repo,
        None,
        OCI_MANIFEST,
        &serde_json::to_vec(&body).unwrap(),
    )
}

/// Two images pushed untagged and an index over them tagged `multi`: (index, children).
fn index_of_two(repo: &Repository) -> (Digest, [Digest; 2]) {
    let children = ["x", "y"].map(|seed| push_untagged(repo, seed));
    let index = push_index(repo, Some("multi"), &[&children[0], &children[1]]);
    (index, children)
}

/// Closes the store, runs `f` on its directory, and opens it again on the same clock.
fn while_closed(s: Store, f: impl FnOnce(&Path)) -> Store {
    let Store {
        dir,
        registry,
        clock,
    } = s;
    drop(registry);
    f(dir.path());
    let registry = common::open(dir.path(), &clock);
    Store {
        dir,
        registry,
        clock,
    }
}

/// Makes a closed store look like version 1: no `untagged` index. Returns how many rows the
/// index had.
fn downgrade_to_version_1(dir: &Path) -> u64 {
    let db = redb::Database::create(dir.join("metadata.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    let emptied = {
        let mut untagged = txn.open_table(UNTAGGED).unwrap();
        let rows = untagged.len().unwrap();
        untagged.retain(|_, _| false).unwrap();
        rows
    };
    txn.open_table(META)
        .unwrap()
        .insert("format_version", 1u32.to_le_bytes().as_slice())
        .unwrap();
    txn.commit().unwrap();
    emptied
}

fn stored_format_version(dir: &Path) -> Vec<u8> {
    let db = redb::Database::create(dir.join("metadata.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(META).unwrap();
    meta.get("format_version")
        .unwrap()
        .unwrap()
        .value()
        .to_vec()
}

// ---------------------------------------------------------------------------------------------
// R1 — the policy

#[test]
fn r1_the_policy_is_off_with_seven_days_by_default_and_deletes_nothing() {
    let s = Store::new();
    let default = RetentionPolicy::disabled(7).unwrap();
    assert!(!default.enabled);
    assert_eq!(default.days, 7);
    assert_eq!(RetentionPolicy::default(), default);
    assert_eq!(s.registry.retention_policy().unwrap(), default);
    assert_eq!(s.registry.retention_enabled_at().unwrap(), None);
    let repo = s.repo("app");
    let a = untagged_now(&repo, Way::Untag, "a");
    s.advance(400 * DAY);
    run_deletes(&s, 0);
    assert!(is_live(&repo, &a));
}

#[test]
fn r1_days_of_0_to_365_are_accepted() {
    let s = Store::new();
    for days in [0, 1, 7, 365] {
        let policy = RetentionPolicy::enabled(days).unwrap();
        assert_eq!(
            policy,
            RetentionPolicy::disabled(days).unwrap().with_enabled(true)
        );
        assert!(policy.enabled);
        assert_eq!(policy.days, days);
        assert_eq!(policy.period(), Duration::from_secs(u64::from(days) * DAY));
        s.registry.set_retention_policy(policy).unwrap();
        assert_eq!(s.registry.retention_policy().unwrap(), policy);
    }
}

#[test]
fn r1_days_over_365_are_invalid_setting_and_change_nothing() {
    let (s, _repo) = store(7);
    for days in [366, u32::MAX] {
        let value = days.to_string();
        let expected = |err: &Error| {
            matches!(err, Error::InvalidSetting { setting, value: v, reason }
                if *setting == "retention days" && *v == value && *reason == "must be 0 to 365 days")
        };
        let err = RetentionPolicy::enabled(days).unwrap_err();
        assert!(expected(&err), "{err:?}");
        for enabled in [true, false] {
            let mut policy = RetentionPolicy::default().with_enabled(enabled);
            policy.days = days;
            let err =
                fails_writing_nothing(&s.registry, || s.registry.set_retention_policy(policy));
            assert!(expected(&err), "{enabled} {days}: {err:?}");
        }
    }
}

#[test]
fn r1_the_policy_and_its_start_persist_across_reopen() {
    let s = Store::new();
    s.advance(3_600);
    retention_on(&s, 30);
    let s = s.reopen();
    let enabled_at = START.saturating_add(Duration::from_secs(3_600));
    assert_eq!(
        s.registry.retention_policy().unwrap(),
        RetentionPolicy::enabled(30).unwrap()
    );
    assert_eq!(s.registry.retention_enabled_at().unwrap(), Some(enabled_at));
    // And in force.
    let a = untagged_now(&s.repo("app"), Way::PushByDigest, "a");
    s.advance(30 * DAY);
    run_deletes(&s, 1);
    assert!(!is_live(&s.repo("app"), &a));
}

#[test]
fn r1_an_untagged_manifest_goes_once_untagged_for_exactly_days() {
    for way in WAYS {
        let (s, repo) = store(3);
        s.advance(60);
        let a = untagged_now(&repo, way, "a");
        deleted_after_exactly(&s, &repo, &a, 3 * DAY);
    }
}

#[test]
fn r1_tagged_manifests_are_never_deleted_by_it() {
    let (s, repo) = store(1);
    let a = push_image(&repo, "a", "a");
    let moved = untagged_now(&repo, Way::MoveItsOnlyTag, "b");
    s.advance(400 * DAY);
    run_deletes(&s, 1);
    assert_eq!(
        manifest_digests(&repo),
        set([&a, &repo.resolve("b").unwrap()])
    );
    assert!(!is_live(&repo, &moved));
}

#[test]
fn r1_a_manifest_untagged_before_the_policy_took_effect_stays() {
    let s = Store::new();
    let repo = s.repo("app");
    let before = untagged_now(&repo, Way::Untag, "a");
    s.advance(1);
    retention_on(&s, 1);
    let after = untagged_now(&repo, Way::Untag, "b");
    s.advance(400 * DAY);
    run_deletes(&s, 1);
    assert_eq!(manifest_digests(&repo), set([&before]));
    assert!(!is_live(&repo, &after));
}

#[test]
fn r1_disabling_then_enabling_again_restarts_its_start() {
    let (s, repo) = store(1);
    assert_eq!(s.registry.retention_enabled_at().unwrap(), Some(START));
    s.advance(60);
    let a = untagged_now(&repo, Way::Untag, "a");
    s.advance(60);
    let off = RetentionPolicy::disabled(1).unwrap();
    s.registry.set_retention_policy(off).unwrap();
    assert_eq!(s.registry.retention_enabled_at().unwrap(), None);
    s.advance(2 * DAY);
    run_deletes(&s, 0); // off

    retention_on(&s, 1);

    assert_eq!(
        s.registry.retention_enabled_at().unwrap(),
        Some(s.registry.now())
    );
    s.advance(2 * DAY);
    run_deletes(&s, 0); // untagged before this start
    assert!(is_live(&repo, &a));
}

#[test]
fn r1_changing_the_days_of_an_enabled_policy_keeps_its_start() {
    let (s, repo) = store(7);
    s.advance(60);
    let a = untagged_now(&repo, Way::Untag, "a");
    s.advance(DAY);

    retention_on(&s, 3);

    assert_eq!(s.registry.retention_enabled_at().unwrap(), Some(START));
    // The new days count from when it was untagged.
    deleted_after_exactly(&s, &repo, &a, 2 * DAY);
}

#[test]
fn r1_with_zero_days_the_next_run_deletes_it() {
    let (s, repo) = store(0);
    s.advance(60);
    let a = untagged_now(&repo, Way::PushByDigest, "a");
    run_deletes(&s, 1);
    assert!(!is_live(&repo, &a));
}

#[test]
fn r1_tagging_again_before_the_deadline_saves_it_and_untagging_restarts_the_count() {
    let (s, repo) = store(2);
    let a = untagged_now(&repo, Way::Untag, "a");
    s.advance(2 * DAY - 1);
    repo.tag("a", &a).unwrap();
    s.advance(DAY);
    run_deletes(&s, 0);

    repo.untag("a").unwrap();

    deleted_after_exactly(&s, &repo, &a, 2 * DAY);
}

#[test]
fn r1_a_locked_manifest_is_skipped_until_unlocked() {
    for lock_repository in [false, true] {
        let (s, repo) = store(1);
        let a = untagged_now(&repo, Way::PushByDigest, "a");
        let item = if lock_repository {
            Item::Repository
        } else {
            Item::Manifest(a.clone())
        };
        repo.set_locks(&item, Locks::NO_DELETE).unwrap();
        s.advance(DAY);
        run_deletes(&s, 0);
        assert!(is_live(&repo, &a), "{item}");

        repo.set_locks(&item, Locks::UNLOCKED).unwrap();

        run_deletes(&s, 1);
        assert!(!is_live(&repo, &a), "{item}");
    }
}

#[test]
fn r1_a_manifest_with_a_locked_referrer_is_skipped() {
    let (s, repo) = store(1);
    let a = untagged_now(&repo, Way::PushByDigest, "a");
    let sig = push_referrer(&repo, None, &a, "sig");
    repo.set_locks(&Item::Manifest(sig.clone()), Locks::NO_DELETE)
        .unwrap();
    s.advance(DAY);
    run_deletes(&s, 0);
    assert_eq!(manifest_digests(&repo), set([&a, &sig]));
}

#[test]
fn r1_a_tagged_referrer_goes_with_its_subject_and_its_history_says_retention() {
    let (s, repo) = store(1);
    policy_on(&s, 7); // so that the history of what it deletes is kept
    let a = untagged_now(&repo, Way::PushByDigest, "a");
    let sig = push_referrer(&repo, Some("sig"), &a, "sig");
    s.advance(DAY);

    run_deletes(&s, 2);

    let event = event(
        "sig",
        Some(&sig),
        None,
        s.registry.now(),
        TagCause::Retention,
    );
    assert_eq!(repo.tag_history("sig").unwrap()[0], event);
    assert_eq!(deleted_tag_pairs(&repo), pairs([("sig", &sig)]));
}

#[test]
fn r1_run_due_applies_it_too() {
    let (s, repo) = store(1);
    assert_eq!(s.registry.run_due().unwrap(), Some(report(START, 0, 0, 0)));
    let a = untagged_now(&repo, Way::PushByDigest, "a");
    s.advance(DAY);
    let ran = s
        .registry
        .run_due()
        .unwrap()
        .expect("a day later it is due");
    assert_eq!(ran.untagged_deleted, 1);
    assert!(!is_live(&repo, &a));
}

#[test]
fn r1_a_version_1_store_is_upgraded_with_its_untagged_manifests_indexed() {
    assert_eq!(FORMAT_VERSION, 2);
    let (s, repo) = store(1);
    let a = untagged_now(&repo, Way::Untag, "a");
    let b = untagged_now(&repo, Way::PushByDigest, "b");
    let kept = push_image(&repo, "kept", "kept");
    drop(repo);
    let s = while_closed(s, |dir| assert_eq!(downgrade_to_version_1(dir), 2));

    s.advance(DAY);
    run_deletes(&s, 2);

    let repo = s.repo("app");
    assert_eq!(manifest_digests(&repo), set([&kept]));
    assert!(!is_live(&repo, &a) && !is_live(&repo, &b));
    drop(repo);
    while_closed(s, |dir| {
        assert_eq!(stored_format_version(dir), FORMAT_VERSION.to_le_bytes());
    });
}

// ---------------------------------------------------------------------------------------------
// R2 — children of a live index and referrers of a live subject are held

#[test]
fn r2_a_child_of_a_live_index_is_never_deleted_by_it() {
    let (s, repo) = store(1);
    let (index, [x, y]) = index_of_two(&repo);
    s.advance(400 * DAY);
    run_deletes(&s, 0);
    assert_eq!(manifest_digests(&repo), set([&index, &x, &y]));
}

#[test]
fn r2_the_children_of_a_deleted_index_become_eligible() {
    let (s, repo) = store(1);
    let (index, [x, y]) = index_of_two(&repo);
    s.advance(DAY);
    assert_eq!(repo.delete_manifest("multi").unwrap(), [index]);
    assert_eq!(manifest_digests(&repo), set([&x, &y]));
    s.advance(DAY);
    run_deletes(&s, 2);
    assert!(manifest_digests(&repo).is_empty());
}

#[test]
fn r2_a_child_counts_as_untagged_from_when_its_index_goes_not_from_its_push() {
    let s = Store::new();
    let repo = s.repo("app");
    // Pushed, with their index, long before the policy took effect.
    let (_, [x, y]) = index_of_two(&repo);
    s.advance(30 * DAY);
    retention_on(&s, 7);
    s.advance(30 * DAY);
    repo.delete_manifest("multi").unwrap();
    // Untagged for R1 only now: a run a moment before the 7 days keeps them…
    s.advance(7 * DAY - 1);
    run_deletes(&s, 0);
    assert_eq!(manifest_digests(&repo), set([&x, &y]));
    // … and the run at 7 days deletes them.
    s.advance(1);
    run_deletes(&s, 2);
    assert!(manifest_digests(&repo).is_empty());
}

#[test]
fn r2_a_referrer_of_a_live_subject_is_never_deleted_by_it() {
    let (s, repo) = store(1);
    let subject = push_image(&repo, "base", "base");
    let sig = push_referrer(&repo, None, &subject, "sig");
    s.advance(400 * DAY);
    run_deletes(&s, 0);
    assert_eq!(manifest_digests(&repo), set([&subject, &sig]));
}

#[test]
fn r2_a_referrer_of_a_subject_that_is_not_live_is_deleted_by_it() {
    let (s, repo) = store(1);
    let absent = upload_image(&repo, b"config absent", &[b"layer absent"]);
    let sig = push_referrer_of(&repo, &absent, "sig");
    s.advance(DAY);
    run_deletes(&s, 1);
    assert!(!is_live(&repo, &sig));
}

#[test]
fn r2_a_referrer_is_held_from_when_its_subject_is_pushed_and_goes_with_it() {
    let (s, repo) = store(1);
    let body = upload_image(&repo, b"config base", &[b"layer base"]);
    let sig = push_referrer_of(&repo, &body, "sig");
    s.advance(DAY - 1);
    let subject = push(&repo, Some("base"), OCI_MANIFEST, &body);
    s.advance(400 * DAY);
    run_deletes(&s, 0);
    assert_eq!(manifest_digests(&repo), set([&subject, &sig]));

    repo.untag("base").unwrap();

    s.advance(DAY);
    run_deletes(&s, 2);
    assert!(manifest_digests(&repo).is_empty());
}

// ---------------------------------------------------------------------------------------------
// R3 — with soft delete on too, its deletes go to the recycle bin

#[test]
fn r3_with_soft_delete_on_its_deletes_go_to_the_bin_and_can_be_restored() {
    let (s, repo) = store(1);
    policy_on(&s, 7);
    let a = untagged_now(&repo, Way::Untag, "a");
    s.advance(DAY);

    run_deletes(&s, 1);

    let binned = repo.deleted_manifests().unwrap();
    assert_eq!(binned.len(), 1);
    assert_eq!(binned[0].digest, a);
    assert_eq!(binned[0].deleted_at, s.registry.now());
    assert!(!is_live(&repo, &a));
    assert_eq!(
        repo.restore(Restore::Digest(&a), OnConflict::Refuse)
            .unwrap(),
        a
    );
    // Restored untagged, it is untagged from now on.
    assert_eq!(untagged_manifests(&repo)[0].digest, a);
    run_deletes(&s, 0);
    assert!(is_live(&repo, &a));
}

#[test]
fn r3_autopurge_purges_them_later_by_the_soft_delete_retention() {
    let (s, repo) = store(1);
    policy_on(&s, 3);
    let a = untagged_now(&repo, Way::PushByDigest, "a");
    s.advance(DAY);
    run_deletes(&s, 1);
    s.advance(3 * DAY - 1);
    run_deletes(&s, 0);
    assert_eq!(repo.deleted_manifests().unwrap()[0].digest, a);

    s.advance(1);

    assert_eq!(
        s.registry.run_now().unwrap(),
        report(s.registry.now(), 0, 1, 0)
    );
    assert!(repo.deleted_manifests().unwrap().is_empty());
}
