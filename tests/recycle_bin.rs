//! The soft delete policy and its recycle bin (SPEC S1–S16): tombstones, listing, restore,
//! the retention clock (`run_due`, `run_now`, the persisted last run; the background thread is
//! tested elsewhere), purge by hand, and the bin across a reopen. Time is a manual clock: days
//! pass in microseconds.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{
    SIG_TYPE, START, Store, blob_file, deleted_manifest_digests, deleted_tag_pairs, index_bytes,
    is_invalid_repository_name, is_invalid_tag, is_manifest_unknown, manifest_digests, pairs,
    policy_on, push, push_image, push_index, push_referrer, push_untagged, refused, report,
    seed_blobs, set, size_of, state, tag_names, untagged_manifests, upload_image,
};
use ocistore::manifest::{OCI_INDEX, OCI_MANIFEST};
use ocistore::{
    Algorithm, Digest, Error, FsckOptions, Item, ManifestQuery, ManualClock, OnConflict, Page,
    PurgeOptions, Registry, Repository, RepositoryState, Restore, RestoreOptions, SoftDeletePolicy,
    TagCause, Timestamp,
};
use serde_json::json;

const DAY: u64 = 86_400;

// ---------------------------------------------------------------------------------------------
// Helpers (the ones shared with the other test files are in `common`)

/// `days` days after the clocks' start.
fn day(days: f64) -> Timestamp {
    START.saturating_add(Duration::from_secs_f64(days * DAY as f64))
}

/// A store with the soft delete policy on and the given retention.
fn soft_delete_store(retention_days: u32) -> Store {
    let s = Store::new();
    policy_on(&s, retention_days);
    s
}

fn policy_off(s: &Store, retention_days: u32) {
    s.registry
        .set_soft_delete_policy(SoftDeletePolicy::disabled(retention_days).unwrap())
        .unwrap();
}

/// A store on a manual clock whose autopurge runs every `interval`.
fn store_with_interval(interval: Duration) -> Store {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let registry = open_with_interval(&dir, &clock, interval);
    Store {
        dir,
        registry,
        clock,
    }
}

fn open_with_interval(
    dir: &tempfile::TempDir,
    clock: &ManualClock,
    interval: Duration,
) -> Registry {
    Registry::builder()
        .clock(clock.clone())
        .cache_size(16 << 20)
        .autopurge_interval(interval)
        .open(dir.path())
        .expect("open store")
}

fn deleted_repository_names(registry: &Registry) -> Vec<String> {
    registry
        .deleted_repositories()
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect()
}

fn repositories(registry: &Registry) -> Vec<String> {
    registry.repositories(&Page::all()).unwrap()
}

fn referrer_digests(repo: &Repository, subject: &Digest) -> Vec<Digest> {
    repo.referrers(subject, None)
        .unwrap()
        .into_iter()
        .map(|d| d.digest)
        .collect()
}

fn is_manifest_soft_deleted(err: &Error, repo: &str, manifest: &Digest) -> bool {
    matches!(err, Error::ManifestSoftDeleted { repository, digest }
        if repository == repo && digest == manifest)
}

fn is_not_deleted(err: &Error, repo: &str, what: &Item) -> bool {
    matches!(err, Error::NotDeleted { repository, item } if repository == repo && item == what)
}

/// Restores `what` from `repo`, which the bin cannot answer: `NotDeleted` naming `item`.
fn restore_is_not_deleted(
    repo: &Repository,
    what: Restore<'_>,
    on_conflict: OnConflict,
    item: Item,
) {
    let err = repo.restore(what, on_conflict).unwrap_err();
    assert!(
        is_not_deleted(&err, repo.name(), &item),
        "{what:?}: {err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// S1 — the policy: on or off (off by default), 1 to 90 days (default 7), persisted.

#[test]
fn s1_the_policy_is_off_with_seven_days_by_default() {
    let s = Store::new();
    assert_eq!(
        s.registry.soft_delete_policy().unwrap(),
        SoftDeletePolicy::disabled(7).unwrap()
    );
    assert_eq!(
        SoftDeletePolicy::default(),
        s.registry.soft_delete_policy().unwrap()
    );
    // Off: a delete is permanent.
    let repo = s.repo("app");
    push_image(&repo, "latest", "a");
    repo.delete_manifest("latest").unwrap();
    assert!(repo.deleted_manifests().unwrap().is_empty());
    assert!(repo.deleted_tags(None).unwrap().is_empty());
}

#[test]
fn s1_retention_of_1_to_90_days_is_accepted() {
    let s = Store::new();
    for days in [1, 2, 7, 14, 89, 90] {
        let policy = SoftDeletePolicy::enabled(days).unwrap();
        assert_eq!(
            policy,
            SoftDeletePolicy::disabled(days).unwrap().with_enabled(true)
        );
        assert!(policy.enabled);
        assert_eq!(policy.retention_days, days);
        assert_eq!(
            policy.retention(),
            Duration::from_secs(u64::from(days) * DAY)
        );
        assert_eq!(
            policy.expires_at(START),
            START.saturating_add(Duration::from_secs(u64::from(days) * DAY))
        );
        s.registry.set_soft_delete_policy(policy).unwrap();
        assert_eq!(s.registry.soft_delete_policy().unwrap(), policy);
        policy_off(&s, days);
        assert_eq!(
            s.registry.soft_delete_policy().unwrap(),
            SoftDeletePolicy::disabled(days).unwrap()
        );
    }
}

#[test]
fn s1_retention_outside_1_to_90_days_is_refused_and_changes_nothing() {
    let s = soft_delete_store(14);
    push_image(&s.repo("app"), "latest", "a");
    for days in [0, 91, 365, u32::MAX] {
        let err = SoftDeletePolicy::enabled(days).unwrap_err();
        let value = days.to_string();
        let expected = |err: &Error| {
            matches!(err, Error::InvalidSetting { setting, value: v, reason }
                if *setting == "soft delete retention_days" && v == &value
                    && *reason == "must be 1 to 90 days")
        };
        assert!(expected(&err), "{err:?}");
        for enabled in [true, false] {
            let err = refused(&s, &["app"], || {
                let mut policy = SoftDeletePolicy::default().with_enabled(enabled);
                policy.retention_days = days;
                s.registry.set_soft_delete_policy(policy)
            });
            assert!(expected(&err), "{enabled} {days}: {err:?}");
        }
    }
    assert_eq!(
        s.registry.soft_delete_policy().unwrap(),
        SoftDeletePolicy::enabled(14).unwrap()
    );
}

#[test]
fn s1_the_policy_can_be_changed_at_any_time_and_applies_from_the_next_delete() {
    let s = Store::new();
    let repo = s.repo("app");
    let [a, b, c] = ["a", "b", "c"].map(|tag| push_image(&repo, tag, tag));

    repo.delete_manifest("a").unwrap(); // off: gone
    policy_on(&s, 7);
    repo.delete_manifest("b").unwrap(); // on: binned
    policy_off(&s, 7);
    repo.delete_manifest("c").unwrap(); // off again: gone

    assert_eq!(deleted_manifest_digests(&repo), set([&b]));
    for d in [&a, &c] {
        restore_is_not_deleted(
            &repo,
            Restore::Digest(d),
            OnConflict::Refuse,
            Item::Manifest(d.clone()),
        );
    }
}

#[test]
fn s1_the_policy_is_persisted_across_reopen() {
    let s = soft_delete_store(30);
    let s = s.reopen();
    assert_eq!(
        s.registry.soft_delete_policy().unwrap(),
        SoftDeletePolicy::enabled(30).unwrap()
    );
    // And it is in force: a delete after the reopen goes to the bin.
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    repo.delete_manifest("latest").unwrap();
    assert_eq!(deleted_manifest_digests(&repo), set([&a]));
    drop(repo);

    policy_off(&s, 3);
    let s = s.reopen();
    assert_eq!(
        s.registry.soft_delete_policy().unwrap(),
        SoftDeletePolicy::disabled(3).unwrap()
    );
}

#[test]
fn s1_switching_the_policy_off_and_on_keeps_its_retention_days() {
    let s = soft_delete_store(30);
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    repo.delete_manifest("latest").unwrap();

    let off = s.registry.set_soft_delete_enabled(false).unwrap();
    assert_eq!(off, SoftDeletePolicy::disabled(30).unwrap());
    assert_eq!(s.registry.soft_delete_policy().unwrap(), off);
    // The bin keeps its 30 days: on day 20 the manifest is still there (7 days would have
    // expired it).
    s.clock.set(day(20.0));
    assert_eq!(repo.deleted_manifests().unwrap()[0].expires_at, day(30.0));
    drop(repo);
    let s = s.reopen();
    assert_eq!(s.registry.soft_delete_policy().unwrap(), off);
    let on = s.registry.set_soft_delete_enabled(true).unwrap();
    assert_eq!(on, SoftDeletePolicy::enabled(30).unwrap());
    let repo = s.repo("app");
    assert_eq!(
        repo.restore(Restore::Digest(&a), OnConflict::Refuse)
            .unwrap(),
        a
    );
    // Switching to what is in force already changes nothing.
    assert_eq!(s.registry.set_soft_delete_enabled(true).unwrap(), on);
    assert_eq!(s.registry.soft_delete_policy().unwrap(), on);
}

// ---------------------------------------------------------------------------------------------
// S2 — deletes tombstone instead of removing, and tombstones vanish from every normal read.

#[test]
fn s2_untag_tombstones_the_tag_and_nothing_else() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    repo.tag("v1", &a).unwrap();

    repo.untag("latest").unwrap();

    assert_eq!(deleted_tag_pairs(&repo), pairs([("latest", &a)]));
    assert!(repo.deleted_manifests().unwrap().is_empty());
    assert!(s.registry.deleted_repositories().unwrap().is_empty());
    assert_eq!(tag_names(&repo), ["v1"]);
    let err = repo.resolve("latest").unwrap_err();
    assert!(is_manifest_unknown(&err, "app", "latest"), "{err:?}");
    let err = repo.pull("latest").unwrap_err();
    assert!(is_manifest_unknown(&err, "app", "latest"), "{err:?}");
    assert_eq!(repo.manifest(a.as_str()).unwrap().tags, ["v1"]);
}

#[test]
fn s2_deleting_a_manifest_tombstones_it_each_of_its_tags_and_its_referrers() {
    for by_digest in [false, true] {
        let s = soft_delete_store(7);
        let repo = s.repo("app");
        let a = push_image(&repo, "latest", "a");
        repo.tag("v1", &a).unwrap();
        let sig = push_referrer(&repo, Some("a-sig"), &a, "sig");
        let sig_of_sig = push_referrer(&repo, None, &sig, "sig of sig");
        let other = push_image(&repo, "other", "other");

        let reference = if by_digest {
            a.to_string()
        } else {
            "v1".to_owned()
        };
        repo.delete_manifest(&reference).unwrap();

        assert_eq!(
            deleted_manifest_digests(&repo),
            set([&a, &sig, &sig_of_sig])
        );
        assert_eq!(
            deleted_tag_pairs(&repo),
            pairs([("latest", &a), ("v1", &a), ("a-sig", &sig)])
        );
        let now = s.registry.now();
        for m in repo.deleted_manifests().unwrap() {
            assert_eq!(m.deleted_at, now);
        }
        for t in repo.deleted_tags(None).unwrap() {
            assert_eq!(t.deleted_at, now);
        }
        assert_eq!(manifest_digests(&repo), set([&other]));
        assert_eq!(tag_names(&repo), ["other"]);
    }
}

#[test]
fn s2_deleting_a_repository_tombstones_it_with_everything_in_it() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    repo.tag("v1", &a).unwrap();
    let b = push_untagged(&repo, "b");
    let sig = push_referrer(&repo, None, &a, "sig");
    let index = push_index(&repo, Some("multi"), &[&a, &b]);

    s.registry.delete_repository("app").unwrap();

    let deleted = s.registry.deleted_repositories().unwrap();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].name, "app");
    assert_eq!(deleted[0].deleted_at, s.registry.now());
    assert_eq!(deleted_manifest_digests(&repo), set([&a, &b, &sig, &index]));
    assert_eq!(
        deleted_tag_pairs(&repo),
        pairs([("latest", &a), ("v1", &a), ("multi", &index)])
    );
}

#[test]
fn s2_a_tombstoned_manifest_vanishes_from_every_listing_at_once() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let subject = push_image(&repo, "base", "base");
    let a = push_referrer(&repo, Some("latest"), &subject, "a");
    repo.tag("v1", &a).unwrap();
    let a_sig = push_referrer(&repo, None, &a, "a sig");
    let keep = push_image(&repo, "keep", "keep");
    let untagged = push_untagged(&repo, "untagged");

    repo.delete_manifest("latest").unwrap();

    // Pull by tag, resolve, tags.
    for tag in ["latest", "v1"] {
        let err = repo.pull(tag).unwrap_err();
        assert!(is_manifest_unknown(&err, "app", tag), "{err:?}");
        let err = repo.resolve(tag).unwrap_err();
        assert!(is_manifest_unknown(&err, "app", tag), "{err:?}");
        let err = repo.manifest(tag).unwrap_err();
        assert!(is_manifest_unknown(&err, "app", tag), "{err:?}");
    }
    assert_eq!(tag_names(&repo), ["base", "keep"]);
    // Manifest listings, in both orders and with each filter.
    assert_eq!(manifest_digests(&repo), set([&subject, &keep, &untagged]));
    let listed = |q: ManifestQuery| -> BTreeSet<Digest> {
        repo.manifests(&q)
            .unwrap()
            .into_iter()
            .map(|m| m.digest)
            .collect()
    };
    assert_eq!(
        listed(ManifestQuery::default().descending(true)),
        set([&subject, &keep, &untagged])
    );
    assert_eq!(
        listed(ManifestQuery::default().untagged(true)),
        set([&untagged])
    );
    assert_eq!(
        listed(ManifestQuery::default().updated_before(day(1.0))),
        set([&subject, &keep, &untagged])
    );
    // Referrers: neither the deleted referrer nor the referrers of it.
    assert!(repo.referrers(&subject, None).unwrap().is_empty());
    assert!(repo.referrers(&subject, Some(SIG_TYPE)).unwrap().is_empty());
    assert!(repo.referrers(&a, None).unwrap().is_empty());
    // Deleting or untagging it again finds nothing.
    let err = repo.delete_manifest(a_sig.as_str()).unwrap_err();
    assert!(is_manifest_unknown(&err, "app", a_sig.as_str()), "{err:?}");
    let err = repo.untag("latest").unwrap_err();
    assert!(matches!(err, Error::TagUnknown { .. }), "{err:?}");
    let err = repo.tag("again", &a).unwrap_err();
    assert!(is_manifest_unknown(&err, "app", a.as_str()), "{err:?}");
}

#[test]
fn s2_a_tombstoned_manifest_cannot_be_pulled_or_looked_up_by_digest() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    let untagged = push_untagged(&repo, "untagged");

    repo.delete_manifest("latest").unwrap();
    repo.delete_manifest(untagged.as_str()).unwrap();

    for d in [&a, &untagged] {
        let err = repo.pull(d.as_str()).unwrap_err();
        assert!(
            is_manifest_unknown(&err, "app", d.as_str()),
            "pull {d}: {err:?}"
        );
        let err = repo.manifest(d.as_str()).unwrap_err();
        assert!(
            is_manifest_unknown(&err, "app", d.as_str()),
            "manifest {d}: {err:?}"
        );
    }
    // The same inside a soft-deleted repository.
    let other = s.repo("other");
    let b = push_image(&other, "latest", "b");
    s.registry.delete_repository("other").unwrap();
    let err = other.pull(b.as_str()).unwrap_err();
    assert!(is_manifest_unknown(&err, "other", b.as_str()), "{err:?}");
}

#[test]
fn s2_a_soft_deleted_repository_vanishes_from_every_read_at_once() {
    let s = soft_delete_store(7);
    for name in ["a", "b", "c"] {
        push_image(&s.repo(name), "latest", name);
    }
    let repo = s.repo("b");
    let subject = repo.resolve("latest").unwrap();
    repo.tag("stable", &subject).unwrap();
    push_referrer(&repo, None, &subject, "sig");

    s.registry.delete_repository("b").unwrap();

    assert_eq!(repositories(&s.registry), ["a", "c"]);
    assert_eq!(
        s.registry.repositories(&Page::first(2)).unwrap(),
        ["a", "c"]
    );
    assert_eq!(
        s.registry.repositories(&Page::after("a", 1)).unwrap(),
        ["c"]
    );
    assert_eq!(
        s.registry.repositories(&Page::after("b", 5)).unwrap(),
        ["c"]
    );
    assert!(tag_names(&repo).is_empty());
    assert!(manifest_digests(&repo).is_empty());
    assert!(repo.referrers(&subject, None).unwrap().is_empty());
    for tag in ["latest", "stable"] {
        let err = repo.resolve(tag).unwrap_err();
        assert!(is_manifest_unknown(&err, "b", tag), "{err:?}");
        let err = repo.pull(tag).unwrap_err();
        assert!(is_manifest_unknown(&err, "b", tag), "{err:?}");
    }
    let err = repo.untag("latest").unwrap_err();
    assert!(matches!(err, Error::TagUnknown { .. }), "{err:?}");
}

#[test]
fn s2_blob_reads_of_a_soft_deleted_repository_are_blob_unknown() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    push_image(&repo, "latest", "a");
    let loose = repo.put_blob_sha256(b"a blob no manifest names").unwrap();

    s.registry.delete_repository("app").unwrap();

    for blob in seed_blobs("a").iter().chain([&loose]) {
        let unknown = |err: &Error| {
            matches!(err, Error::BlobUnknown { repository, digest }
                if repository == "app" && digest == blob)
        };
        let err = repo.blob(blob).unwrap_err();
        assert!(unknown(&err), "{err:?}");
        let err = repo.blob_size(blob).unwrap_err();
        assert!(unknown(&err), "{err:?}");
        let err = repo.blob_reader(blob, ..).unwrap_err();
        assert!(unknown(&err), "{err:?}");
    }
}

#[test]
fn s2_a_soft_deleted_repository_lists_no_blobs() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    push_image(&repo, "latest", "a");
    assert_eq!(repo.blobs(&Page::all()).unwrap().len(), 2);

    s.registry.delete_repository("app").unwrap();

    assert!(repo.blobs(&Page::all()).unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// S3 — an item expires at deleted_at + the retention in force when the purge runs.

#[test]
fn s3_retention_raised_from_7_to_14_days_on_day_5_expires_on_day_14() {
    // The seed's example: "after five days from deleting an artifact, if you change the value
    // of retention days from 7 days to 14 days, the artifact will only expire after 14 days
    // from the initial soft delete".
    let s = soft_delete_store(7);
    let hello = s.repo("hello-world");
    let latest = push_image(&hello, "latest", "latest");
    let v2 = push_image(&hello, "v2", "v2");
    let stable = push_image(&hello, "stable", "stable");
    push_image(&s.repo("scratch"), "latest", "scratch");
    hello.delete_manifest("latest").unwrap();
    hello.delete_manifest("v2").unwrap();
    hello.untag("stable").unwrap();
    s.registry.delete_repository("scratch").unwrap();

    s.clock.set(day(5.0));
    policy_on(&s, 14);

    // expires_at is reported with the retention in force now: day 14, for every kind.
    let repos = s.registry.deleted_repositories().unwrap();
    assert_eq!(repos.len(), 1);
    assert_eq!(
        (repos[0].deleted_at, repos[0].expires_at),
        (day(0.0), day(14.0))
    );
    let manifests = hello.deleted_manifests().unwrap();
    assert_eq!(manifests.len(), 2);
    let tags = hello.deleted_tags(None).unwrap();
    assert_eq!(tags.len(), 3);
    let scratch = s.repo("scratch");
    let scratch_manifests = scratch.deleted_manifests().unwrap();
    let scratch_tags = scratch.deleted_tags(None).unwrap();
    let times: Vec<_> = manifests
        .iter()
        .chain(&scratch_manifests)
        .map(|m| (m.deleted_at, m.expires_at))
        .chain(
            tags.iter()
                .chain(&scratch_tags)
                .map(|t| (t.deleted_at, t.expires_at)),
        )
        .collect();
    assert_eq!(times.len(), 7);
    assert!(
        times.iter().all(|&t| t == (day(0.0), day(14.0))),
        "{times:?}"
    );

    // Day 8: expired under the old retention, not under the one in force.
    s.clock.set(day(8.0));
    assert_eq!(s.registry.run_now().unwrap(), report(day(8.0), 0, 0, 0));

    // Day 13.9: autopurge removes nothing, everything is still restorable.
    s.clock.set(day(13.9));
    assert_eq!(s.registry.run_now().unwrap(), report(day(13.9), 0, 0, 0));
    assert_eq!(deleted_repository_names(&s.registry), ["scratch"]);
    assert_eq!(deleted_manifest_digests(&hello), set([&latest, &v2]));
    assert_eq!(
        hello
            .restore(Restore::TagAndDigest("latest", &latest), OnConflict::Refuse)
            .unwrap(),
        latest
    );
    assert_eq!(hello.resolve("latest").unwrap(), latest);

    // Day 14: autopurge removes the rest.
    s.clock.set(day(14.0));
    let ran = s.registry.run_now().unwrap();
    assert_eq!(ran.ran_at, day(14.0));
    assert_eq!(ran.repositories, 1);
    assert!(s.registry.deleted_repositories().unwrap().is_empty());
    assert!(hello.deleted_manifests().unwrap().is_empty());
    assert!(hello.deleted_tags(None).unwrap().is_empty());
    assert!(scratch.deleted_manifests().unwrap().is_empty());
    restore_is_not_deleted(
        &hello,
        Restore::Digest(&v2),
        OnConflict::Refuse,
        Item::Manifest(v2.clone()),
    );
    restore_is_not_deleted(
        &hello,
        Restore::Tag("stable"),
        OnConflict::Refuse,
        Item::Tag("stable".into()),
    );
    // The untagged manifest of `stable` was never deleted: it stays.
    assert_eq!(hello.pull(stable.as_str()).unwrap().digest, stable);
    // What was restored on day 13.9 stays too.
    assert_eq!(hello.resolve("latest").unwrap(), latest);
}

#[test]
fn s3_retention_lowered_expires_items_by_the_new_retention() {
    let s = soft_delete_store(30);
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    repo.delete_manifest("latest").unwrap();
    assert_eq!(repo.deleted_manifests().unwrap()[0].expires_at, day(30.0));

    s.clock.set(day(1.0));
    policy_on(&s, 2);
    assert_eq!(repo.deleted_manifests().unwrap()[0].expires_at, day(2.0));
    assert_eq!(repo.deleted_tags(None).unwrap()[0].expires_at, day(2.0));

    // Expired on day 2 by the new retention: gone at once, reclaimed by the next run.
    s.clock.set(day(3.0));
    assert!(repo.deleted_manifests().unwrap().is_empty());
    assert!(repo.deleted_tags(None).unwrap().is_empty());
    assert_eq!(s.registry.run_now().unwrap(), report(day(3.0), 0, 1, 1));
    restore_is_not_deleted(
        &repo,
        Restore::Digest(&a),
        OnConflict::Refuse,
        Item::Manifest(a.clone()),
    );
}

#[test]
fn s3_an_item_expires_exactly_at_deleted_at_plus_retention() {
    let s = soft_delete_store(1);
    let repo = s.repo("app");
    push_image(&repo, "latest", "a");
    push_image(&repo, "tagged", "t");
    push_image(&s.repo("gone"), "latest", "g");
    s.advance(3600);
    let deleted_at = s.registry.now();
    repo.delete_manifest("latest").unwrap();
    repo.untag("tagged").unwrap();
    s.registry.delete_repository("gone").unwrap();
    let expiry = deleted_at.saturating_add(Duration::from_secs(DAY));

    s.clock.set(Timestamp::from_nanos(expiry.as_nanos() - 1));
    assert_eq!(
        s.registry.run_now().unwrap(),
        report(s.registry.now(), 0, 0, 0)
    );
    assert_eq!(repo.deleted_manifests().unwrap().len(), 1);
    assert_eq!(repo.deleted_tags(None).unwrap().len(), 2);
    assert_eq!(deleted_repository_names(&s.registry), ["gone"]);

    s.clock.set(expiry);
    let ran = s.registry.run_now().unwrap();
    assert_eq!(ran.repositories, 1);
    assert!(ran.manifests >= 1 && ran.tags >= 2, "{ran:?}");
    assert!(repo.deleted_manifests().unwrap().is_empty());
    assert!(repo.deleted_tags(None).unwrap().is_empty());
    assert!(s.registry.deleted_repositories().unwrap().is_empty());
}

#[test]
fn s3_items_deleted_at_different_times_expire_each_on_its_own_day() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let a = push_image(&repo, "a", "a");
    let b = push_image(&repo, "b", "b");
    repo.delete_manifest("a").unwrap();
    s.clock.set(day(2.0));
    repo.delete_manifest("b").unwrap();

    s.clock.set(day(7.0));
    assert_eq!(s.registry.run_now().unwrap(), report(day(7.0), 0, 1, 1));
    assert_eq!(deleted_manifest_digests(&repo), set([&b]));
    assert_eq!(deleted_tag_pairs(&repo), pairs([("b", &b)]));
    s.clock.set(day(9.0));
    assert_eq!(s.registry.run_now().unwrap(), report(day(9.0), 0, 1, 1));
    assert!(repo.deleted_manifests().unwrap().is_empty());
    restore_is_not_deleted(
        &repo,
        Restore::Digest(&a),
        OnConflict::Refuse,
        Item::Manifest(a.clone()),
    );
}

#[test]
fn s3_an_expired_item_is_gone_at_once_though_autopurge_has_not_run() {
    let s = soft_delete_store(1);
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    let b = push_image(&repo, "b", "b");
    push_image(&s.repo("gone"), "latest", "g");
    repo.delete_manifest("latest").unwrap();
    repo.untag("b").unwrap();
    s.registry.delete_repository("gone").unwrap();
    s.clock.set(day(1.0));

    // No listing shows it.
    assert!(repo.deleted_manifests().unwrap().is_empty());
    assert!(repo.deleted_tags(None).unwrap().is_empty());
    assert!(repo.deleted_tags(Some("latest")).unwrap().is_empty());
    assert!(s.registry.deleted_repositories().unwrap().is_empty());
    assert_eq!(s.repo("gone").state().unwrap(), RepositoryState::Unknown);
    // No restore brings it back, no purge by hand finds it.
    let manifest_a = Item::Manifest(a.clone());
    for (what, item) in [
        (Restore::Digest(&a), manifest_a.clone()),
        (Restore::TagAndDigest("latest", &a), manifest_a.clone()),
        (Restore::Tag("latest"), Item::Tag("latest".into())),
        (Restore::Tag("b"), Item::Tag("b".into())),
    ] {
        let err = refused(&s, &["app"], || repo.restore(what, OnConflict::MoveTag));
        assert!(is_not_deleted(&err, "app", &item), "{what:?}: {err:?}");
    }
    let err = refused(&s, &["app"], || repo.purge_deleted_manifest(&a));
    assert!(is_not_deleted(&err, "app", &manifest_a), "{err:?}");
    let err = refused(&s, &["app"], || repo.purge_deleted_tags("b"));
    assert!(
        is_not_deleted(&err, "app", &Item::Tag("b".into())),
        "{err:?}"
    );
    let err = refused(&s, &["gone"], || {
        s.registry.purge_deleted_repository("gone")
    });
    assert!(is_not_deleted(&err, "gone", &Item::Repository), "{err:?}");
    // The refusals left the rows for autopurge, which reclaims them all.
    assert_eq!(s.registry.run_now().unwrap(), report(day(1.0), 1, 2, 3));
    assert_eq!(manifest_digests(&repo), set([&b]));
}

#[test]
fn s3_a_push_of_an_expired_manifest_is_a_new_manifest() {
    let s = soft_delete_store(1);
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    repo.delete_manifest("latest").unwrap();
    // Not expired: restore it instead.
    s.clock.set(day(0.5));
    let body = repo.pull(a.as_str()).map(drop).unwrap_err();
    assert!(is_manifest_unknown(&body, "app", a.as_str()), "{body:?}");
    s.clock.set(day(1.0));

    assert_eq!(push_image(&repo, "again", "a"), a);
    let m = repo.manifest(a.as_str()).unwrap();
    assert_eq!((m.created, m.updated), (day(1.0), day(1.0)));
    assert_eq!(m.tags, ["again"]);
    // Its old tag entry went with the expired tombstone; the history naming it stays (T2).
    let history = repo.tag_history("latest").unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    assert!(
        history
            .iter()
            .all(|e| e.from.as_ref().or(e.to.as_ref()) == Some(&a))
    );
    assert!(repo.deleted_tags(None).unwrap().is_empty());
    assert_eq!(s.registry.run_now().unwrap(), report(day(1.0), 0, 0, 0));
    assert_eq!(manifest_digests(&repo), set([&a]));
}

#[test]
fn s3_a_change_of_the_policy_first_purges_what_the_old_one_expired() {
    let s = soft_delete_store(1);
    let repo = s.repo("app");
    let a = push_image(&repo, "a", "a");
    repo.delete_manifest("a").unwrap();
    s.clock.set(day(1.5));
    let b = push_image(&repo, "b", "b");
    repo.delete_manifest("b").unwrap();
    s.clock.set(day(2.0));

    // Expired under 1 day, `a` does not come back under 30; `b` (deleted half a day ago) stays.
    policy_on(&s, 30);
    assert_eq!(deleted_manifest_digests(&repo), set([&b]));
    assert_eq!(deleted_tag_pairs(&repo), pairs([("b", &b)]));
    let err = refused(&s, &["app"], || {
        repo.restore(Restore::Digest(&a), OnConflict::Refuse)
    });
    assert!(
        is_not_deleted(&err, "app", &Item::Manifest(a.clone())),
        "{err:?}"
    );
    // It was purged by the change: autopurge finds nothing left.
    assert_eq!(s.registry.run_now().unwrap(), report(day(2.0), 0, 0, 0));

    // The same for a switch: back to 1 day, then off.
    policy_on(&s, 1);
    s.clock.set(day(3.0));
    s.registry.set_soft_delete_enabled(false).unwrap();
    assert_eq!(s.registry.run_now().unwrap(), report(day(3.0), 0, 0, 0));
    assert!(repo.deleted_manifests().unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// S4 — autopurge: run_due on the retention clock (24 h by default), run_now, the last run.

#[test]
fn s4_autopurge_removes_expired_tag_and_manifest_tombstones() {
    let s = soft_delete_store(1);
    let repo = s.repo("app");
    let x = push_image(&repo, "x", "x");
    let m = push_image(&repo, "m", "m");
    let sig = push_referrer(&repo, None, &m, "sig");
    repo.untag("x").unwrap();
    repo.delete_manifest("m").unwrap();

    s.advance(DAY);
    assert_eq!(
        s.registry.run_now().unwrap(),
        report(s.registry.now(), 0, 2, 2)
    );

    assert!(repo.deleted_manifests().unwrap().is_empty());
    assert!(repo.deleted_tags(None).unwrap().is_empty());
    // The untagged manifest was never deleted: it stays, untagged.
    assert_eq!(manifest_digests(&repo), set([&x]));
    restore_is_not_deleted(
        &repo,
        Restore::Tag("x"),
        OnConflict::Refuse,
        Item::Tag("x".into()),
    );
    for d in [&m, &sig] {
        restore_is_not_deleted(
            &repo,
            Restore::Digest(d),
            OnConflict::Refuse,
            Item::Manifest(d.clone()),
        );
    }
    // Purged manifests can be pushed again (they are no longer in the bin).
    assert_eq!(push_image(&repo, "m", "m"), m);
}

#[test]
fn s4_autopurge_removes_an_expired_repository_with_everything_in_it() {
    let s = soft_delete_store(1);
    let repo = s.repo("scratch");
    let a = push_image(&repo, "latest", "a");
    push_untagged(&repo, "b");
    s.registry.delete_repository("scratch").unwrap();

    s.advance(DAY);
    let ran = s.registry.run_now().unwrap();
    assert_eq!(ran.repositories, 1);

    assert!(s.registry.deleted_repositories().unwrap().is_empty());
    assert!(repo.deleted_manifests().unwrap().is_empty());
    assert!(repo.deleted_tags(None).unwrap().is_empty());
    assert!(
        repo.blobs(&Page::all()).unwrap().is_empty(),
        "blob links go"
    );
    restore_is_not_deleted(
        &repo,
        Restore::Tag("latest"),
        OnConflict::Refuse,
        Item::Tag("latest".into()),
    );
    restore_is_not_deleted(
        &repo,
        Restore::Digest(&a),
        OnConflict::Refuse,
        Item::Manifest(a.clone()),
    );
    let err = s.registry.purge_deleted_repository("scratch").unwrap_err();
    assert!(
        is_not_deleted(&err, "scratch", &Item::Repository),
        "{err:?}"
    );
    // The blob bytes stay (D6): the collector's job.
    for blob in seed_blobs("a") {
        assert!(blob_file(&s.registry, &blob).exists());
    }
    // The name is free: a push starts a new repository with an empty bin.
    push_image(&repo, "fresh", "fresh");
    assert_eq!(repositories(&s.registry), ["scratch"]);
    assert_eq!(tag_names(&repo), ["fresh"]);
}

#[test]
fn s4_autopurge_report_counts_what_a_purged_repository_held_among_tags_and_manifests() {
    let s = soft_delete_store(1);
    let repo = s.repo("scratch");
    push_image(&repo, "latest", "a");
    push_untagged(&repo, "b");
    s.registry.delete_repository("scratch").unwrap();

    s.advance(DAY);
    // One repository, its two manifests and the one tag, each counted once.
    assert_eq!(
        s.registry.run_now().unwrap(),
        report(s.registry.now(), 1, 2, 1)
    );
}

#[test]
fn s4_autopurge_keeps_tombstones_that_have_not_expired() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    repo.delete_manifest("latest").unwrap();
    s.registry.delete_repository("app").unwrap();
    let before = state(&s.registry, &["app"]);

    s.clock.set(day(6.9));
    assert_eq!(s.registry.run_now().unwrap(), report(day(6.9), 0, 0, 0));

    let after = state(&s.registry, &["app"]);
    assert_eq!(
        after.replace(&format!("{:?}", Some(day(6.9))), "X"),
        before.replace("last run None", "last run X"),
        "only the last run changed"
    );
    assert_eq!(
        repo.restore(Restore::Tag("latest"), OnConflict::Refuse)
            .unwrap(),
        a
    );
}

#[test]
fn s4_run_due_runs_when_it_never_ran_then_every_24_hours_by_default() {
    let s = Store::new();
    assert_eq!(s.registry.autopurge_last_run().unwrap(), None);

    assert_eq!(s.registry.run_due().unwrap(), Some(report(START, 0, 0, 0)));
    assert_eq!(s.registry.autopurge_last_run().unwrap(), Some(START));

    s.advance(DAY - 1);
    assert_eq!(s.registry.run_due().unwrap(), None);
    assert_eq!(s.registry.autopurge_last_run().unwrap(), Some(START));

    s.advance(1);
    assert_eq!(
        s.registry.run_due().unwrap(),
        Some(report(day(1.0), 0, 0, 0))
    );
    assert_eq!(s.registry.autopurge_last_run().unwrap(), Some(day(1.0)));
    assert_eq!(s.registry.run_due().unwrap(), None);
}

#[test]
fn s4_run_due_that_is_not_due_purges_nothing() {
    let s = store_with_interval(Duration::from_secs(3 * DAY));
    policy_on(&s, 1);
    assert!(s.registry.run_due().unwrap().is_some());
    let repo = s.repo("app");
    push_image(&repo, "latest", "a");
    repo.delete_manifest("latest").unwrap();

    // Expired on day 1, but autopurge is not due before day 3.
    s.clock.set(day(2.0));
    let before = state(&s.registry, &["app"]);
    assert_eq!(s.registry.run_due().unwrap(), None);
    assert_eq!(state(&s.registry, &["app"]), before);
    // S3: expired, it is gone from the bin's listing before autopurge reclaims it.
    assert!(repo.deleted_manifests().unwrap().is_empty());

    s.clock.set(day(3.0));
    assert_eq!(
        s.registry.run_due().unwrap(),
        Some(report(day(3.0), 0, 1, 1))
    );
    assert!(repo.deleted_manifests().unwrap().is_empty());
}

#[test]
fn s4_run_due_follows_a_configured_interval() {
    let s = store_with_interval(Duration::from_secs(3600));
    assert!(s.registry.run_due().unwrap().is_some());
    s.advance(3599);
    assert_eq!(s.registry.run_due().unwrap(), None);
    s.advance(1);
    let ran = s.registry.run_due().unwrap().expect("due after one hour");
    assert_eq!(ran.ran_at, START.saturating_add(Duration::from_secs(3600)));
    assert_eq!(s.registry.autopurge_last_run().unwrap(), Some(ran.ran_at));
}

#[test]
fn s4_an_autopurge_interval_under_a_second_is_refused() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("store");
    let err = Registry::builder()
        .clock(ManualClock::new(START))
        .autopurge_interval(Duration::from_millis(999))
        .open(&dir)
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidSetting { setting, value, reason }
            if *setting == "autopurge_interval" && value == "999ms"
                && *reason == "must be at least one second"),
        "{err:?}"
    );
    assert!(!dir.exists(), "a refused open creates nothing");
    // One second is accepted.
    Registry::builder()
        .clock(ManualClock::new(START))
        .autopurge_interval(Duration::from_secs(1))
        .open(&dir)
        .unwrap();
}

#[test]
fn s4_run_now_runs_whether_due_or_not_and_restarts_the_cadence() {
    let s = soft_delete_store(1);
    assert!(s.registry.run_due().unwrap().is_some());
    let repo = s.repo("app");
    push_image(&repo, "latest", "a");
    repo.delete_manifest("latest").unwrap();

    s.clock.set(day(1.0).saturating_sub(Duration::from_secs(1)));
    assert_eq!(s.registry.run_due().unwrap(), None);
    let now = s.registry.now();
    assert_eq!(s.registry.run_now().unwrap(), report(now, 0, 0, 0));
    assert_eq!(s.registry.run_now().unwrap(), report(now, 0, 0, 0));
    assert_eq!(s.registry.autopurge_last_run().unwrap(), Some(now));

    // The next due run is a full interval after run_now, not after the first run.
    s.clock.set(day(1.5));
    assert_eq!(s.registry.run_due().unwrap(), None);
    assert!(
        repo.deleted_manifests().unwrap().is_empty(),
        "expired, not yet purged: gone all the same (S3)"
    );
    s.clock.set(now.saturating_add(Duration::from_secs(DAY)));
    assert_eq!(
        s.registry.run_due().unwrap(),
        Some(report(s.registry.now(), 0, 1, 1))
    );
}

#[test]
fn s4_the_last_run_survives_reopen_and_keeps_the_cadence() {
    let s = soft_delete_store(1);
    assert!(s.registry.run_due().unwrap().is_some());
    {
        let repo = s.repo("app");
        push_image(&repo, "latest", "a");
        repo.delete_manifest("latest").unwrap();
    }

    // A host that restarts every hour still purges once a day: not every hour, not never.
    let mut s = s;
    let mut runs = Vec::new();
    for _ in 0..48 {
        s = s.reopen();
        s.advance(3600);
        if let Some(ran) = s.registry.run_due().unwrap() {
            runs.push(ran);
        }
        assert_eq!(
            s.registry.autopurge_last_run().unwrap(),
            runs.last().map_or(Some(START), |r| Some(r.ran_at))
        );
    }
    assert_eq!(runs, [report(day(1.0), 0, 1, 1), report(day(2.0), 0, 0, 0)]);
}

#[test]
fn s4_a_configured_interval_applies_to_the_persisted_last_run_after_reopen() {
    let s = store_with_interval(Duration::from_secs(7 * DAY));
    assert!(s.registry.run_due().unwrap().is_some());
    let Store {
        dir,
        registry,
        clock,
    } = s;
    drop(registry);
    clock.set(day(6.0));
    let registry = open_with_interval(&dir, &clock, Duration::from_secs(7 * DAY));
    assert_eq!(registry.autopurge_last_run().unwrap(), Some(START));
    assert_eq!(registry.run_due().unwrap(), None);
    drop(registry);
    // Reopened with a shorter interval, the persisted last run makes it due at once.
    let registry = open_with_interval(&dir, &clock, Duration::from_secs(DAY));
    assert_eq!(registry.run_due().unwrap(), Some(report(day(6.0), 0, 0, 0)));
}

#[test]
fn s4_autopurge_keeps_the_history_of_the_manifests_it_purges() {
    let s = soft_delete_store(1);
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    let b = push_image(&repo, "latest", "b");
    repo.delete_manifest(a.as_str()).unwrap();
    assert!(
        repo.tag_history("latest")
            .unwrap()
            .iter()
            .any(|e| e.from.as_ref() == Some(&a) || e.to.as_ref() == Some(&a))
    );

    let before = repo.tag_history("latest").unwrap();

    s.advance(DAY);
    assert_eq!(s.registry.run_now().unwrap().manifests, 1);

    // T2: the history stays, naming a manifest that is gone.
    assert_eq!(repo.tag_history("latest").unwrap(), before);
    assert!(repo.manifest(a.as_str()).is_err());
    assert_eq!(repo.resolve("latest").unwrap(), b);
}

// ---------------------------------------------------------------------------------------------
// S5 — the bin lists deleted repositories, manifests and tags with deleted_at and expires_at.

#[test]
fn s5_lists_deleted_repositories_newest_first() {
    let s = soft_delete_store(7);
    for name in ["a", "b", "c"] {
        push_image(&s.repo(name), "latest", name);
    }
    s.registry.delete_repository("a").unwrap();
    s.clock.set(day(1.0));
    s.registry.delete_repository("c").unwrap();

    let deleted = s.registry.deleted_repositories().unwrap();
    let listed: Vec<_> = deleted
        .iter()
        .map(|r| (r.name.as_str(), r.deleted_at, r.expires_at))
        .collect();
    assert_eq!(
        listed,
        [("c", day(1.0), day(8.0)), ("a", day(0.0), day(7.0))]
    );
    assert_eq!(repositories(&s.registry), ["b"]);
}

#[test]
fn s5_lists_the_deleted_manifests_of_one_repository_with_their_bin_tags() {
    let s = soft_delete_store(7);
    let repo = s.repo("hello-world");
    let other = s.repo("other");
    let a = push_image(&repo, "latest", "a");
    repo.tag("v1", &a).unwrap();
    repo.tag("early", &a).unwrap();
    let b = push_untagged(&repo, "b");
    let o = push_image(&other, "latest", "o");
    let a_size = size_of(&repo, &a);

    repo.untag("early").unwrap();
    s.clock.set(day(1.0));
    repo.delete_manifest("latest").unwrap();
    other.delete_manifest("latest").unwrap();
    s.clock.set(day(2.0));
    repo.delete_manifest(b.as_str()).unwrap();

    let deleted = repo.deleted_manifests().unwrap();
    assert_eq!(deleted.len(), 2);
    assert_eq!(deleted[0].digest, b);
    assert!(deleted[0].tags.is_empty());
    assert_eq!(
        (deleted[0].deleted_at, deleted[0].expires_at),
        (day(2.0), day(9.0))
    );
    assert_eq!(deleted[1].digest, a);
    assert_eq!(deleted[1].media_type, OCI_MANIFEST);
    assert_eq!(deleted[1].size, a_size);
    assert_eq!(deleted[1].tags, ["early", "latest", "v1"]);
    assert_eq!(
        (deleted[1].deleted_at, deleted[1].expires_at),
        (day(1.0), day(8.0))
    );
    assert_eq!(deleted_manifest_digests(&other), set([&o]));
}

#[test]
fn s5_lists_the_deleted_tags_of_a_repository_optionally_only_one_name() {
    let s = soft_delete_store(7);
    let repo = s.repo("hello-world");
    let a = push_image(&repo, "latest", "a");
    repo.untag("latest").unwrap();
    s.clock.set(day(1.0));
    let b = push_image(&repo, "latest", "b");
    repo.tag("v2", &b).unwrap();
    s.clock.set(day(2.0));
    repo.untag("v2").unwrap();
    s.clock.set(day(3.0));
    repo.delete_manifest("latest").unwrap();
    push_image(&s.repo("other"), "latest", "o");
    s.repo("other").untag("latest").unwrap();

    let listed = |tag| -> Vec<(String, Digest, Timestamp, Timestamp)> {
        repo.deleted_tags(tag)
            .unwrap()
            .into_iter()
            .map(|t| (t.tag, t.digest, t.deleted_at, t.expires_at))
            .collect()
    };
    let entry = |t: &str, d: &Digest, at: f64| (t.to_owned(), d.clone(), day(at), day(at + 7.0));
    assert_eq!(
        listed(None),
        [
            entry("latest", &b, 3.0),
            entry("v2", &b, 2.0),
            entry("latest", &a, 0.0)
        ]
    );
    assert_eq!(
        listed(Some("latest")),
        [entry("latest", &b, 3.0), entry("latest", &a, 0.0)]
    );
    assert_eq!(listed(Some("v2")), [entry("v2", &b, 2.0)]);
    assert!(listed(Some("v3")).is_empty());
}

#[test]
fn s5_the_same_tag_deleted_twice_from_one_manifest_is_listed_twice() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    repo.untag("latest").unwrap();
    s.clock.set(day(1.0));
    repo.tag("latest", &a).unwrap();
    repo.untag("latest").unwrap();

    let times: Vec<_> = repo
        .deleted_tags(Some("latest"))
        .unwrap()
        .into_iter()
        .map(|t| (t.digest, t.deleted_at))
        .collect();
    assert_eq!(times, [(a.clone(), day(1.0)), (a.clone(), day(0.0))]);
    // Restoring the tag takes both entries out of the bin: it is live again.
    repo.restore(Restore::Tag("latest"), OnConflict::Refuse)
        .unwrap();
    assert!(repo.deleted_tags(None).unwrap().is_empty());
}

#[test]
fn s5_deleted_tags_with_an_invalid_tag_filter_is_invalid_tag() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    push_image(&repo, "latest", "a");
    repo.untag("latest").unwrap();
    for bad in ["", ".x", "a:b", &"t".repeat(129)] {
        let err = repo.deleted_tags(Some(bad)).unwrap_err();
        assert!(is_invalid_tag(&err, bad), "{bad:?}: {err:?}");
    }
}

#[test]
fn s5_the_bin_works_inside_a_soft_deleted_repository() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    let b = push_image(&repo, "v2", "b");
    repo.delete_manifest("v2").unwrap();
    s.clock.set(day(1.0));
    s.registry.delete_repository("app").unwrap();

    assert_eq!(deleted_repository_names(&s.registry), ["app"]);
    let manifests: Vec<_> = repo
        .deleted_manifests()
        .unwrap()
        .into_iter()
        .map(|m| (m.digest, m.tags, m.deleted_at))
        .collect();
    assert_eq!(
        manifests,
        [
            (a.clone(), vec!["latest".to_owned()], day(1.0)),
            (b.clone(), vec!["v2".to_owned()], day(0.0))
        ]
    );
    assert_eq!(
        deleted_tag_pairs(&repo),
        pairs([("latest", &a), ("v2", &b)])
    );
    assert_eq!(
        repo.deleted_tags(Some("v2")).unwrap()[0].deleted_at,
        day(0.0)
    );
}

#[test]
fn s5_the_bin_of_a_repository_with_nothing_deleted_is_empty() {
    let s = soft_delete_store(7);
    let never = s.repo("never/existed");
    assert!(never.deleted_manifests().unwrap().is_empty());
    assert!(never.deleted_tags(None).unwrap().is_empty());
    assert!(s.registry.deleted_repositories().unwrap().is_empty());
    let live = s.repo("live");
    push_image(&live, "latest", "a");
    assert!(live.deleted_manifests().unwrap().is_empty());
    assert!(live.deleted_tags(Some("latest")).unwrap().is_empty());
    // A repository whose name extends another's has its own bin.
    let app = s.repo("app");
    push_image(&app, "latest", "app");
    app.delete_manifest("latest").unwrap();
    let app_x = s.repo("app-x");
    assert!(app_x.deleted_manifests().unwrap().is_empty());
    assert!(s.repo("app/x").deleted_tags(None).unwrap().is_empty());
}

#[test]
fn s5_the_bin_survives_reopen() {
    let s = soft_delete_store(14);
    let (a, b) = {
        let repo = s.repo("app");
        let a = push_image(&repo, "latest", "a");
        let b = push_image(&repo, "v2", "b");
        repo.delete_manifest("latest").unwrap();
        repo.untag("v2").unwrap();
        push_image(&s.repo("scratch"), "latest", "s");
        s.registry.delete_repository("scratch").unwrap();
        s.registry.run_now().unwrap();
        (a, b)
    };
    let before = state(&s.registry, &["app", "scratch"]);

    let s = s.reopen();

    assert_eq!(state(&s.registry, &["app", "scratch"]), before);
    assert_eq!(s.registry.autopurge_last_run().unwrap(), Some(START));
    let repo = s.repo("app");
    assert_eq!(
        repo.restore(Restore::Tag("latest"), OnConflict::Refuse)
            .unwrap(),
        a
    );
    assert_eq!(
        repo.restore(Restore::Tag("v2"), OnConflict::Refuse)
            .unwrap(),
        b
    );
    assert_eq!(
        s.repo("scratch")
            .restore(Restore::Tag("latest"), OnConflict::Refuse)
            .unwrap(),
        Algorithm::Sha256.digest(&s.repo("scratch").pull("latest").unwrap().body)
    );
    assert!(s.registry.deleted_repositories().unwrap().is_empty());
    // And it still expires on time after the reopen.
    drop(repo);
    let s = s.reopen();
    let repo = s.repo("app");
    repo.untag("latest").unwrap();
    s.clock.set(day(14.0));
    assert_eq!(
        s.registry.run_due().unwrap(),
        Some(report(day(14.0), 0, 0, 1))
    );
}

// ---------------------------------------------------------------------------------------------
// S6 — restore by tag and digest; TagConflict unless forced; a digest alone restores untagged.

#[test]
fn s6_restore_by_tag_and_digest_brings_back_the_manifest_with_the_tag() {
    // az acr manifest restore -r MyRegistry -n hello-world:latest -d sha256:…
    let s = soft_delete_store(7);
    let repo = s.repo("hello-world");
    let a = push_image(&repo, "latest", "a");
    let body = repo.pull("latest").unwrap().body;
    repo.delete_manifest("latest").unwrap();

    assert_eq!(
        repo.restore(Restore::TagAndDigest("latest", &a), OnConflict::Refuse)
            .unwrap(),
        a
    );

    assert_eq!(repo.resolve("latest").unwrap(), a);
    let pulled = repo.pull("latest").unwrap();
    assert_eq!((pulled.digest, pulled.body), (a.clone(), body));
    assert_eq!(manifest_digests(&repo), set([&a]));
    assert!(repo.deleted_manifests().unwrap().is_empty());
    assert!(repo.deleted_tags(None).unwrap().is_empty());
    let last = &repo.tag_history("latest").unwrap()[0];
    assert_eq!(
        (last.from.as_ref(), last.to.as_ref(), last.cause),
        (None, Some(&a), TagCause::Restore)
    );
}

#[test]
fn s6_restore_over_a_tag_live_on_another_manifest_is_tag_conflict_and_changes_nothing() {
    let s = soft_delete_store(7);
    let repo = s.repo("hello-world");
    let a = push_image(&repo, "latest", "a");
    repo.delete_manifest("latest").unwrap();
    let b = push_image(&repo, "latest", "b");

    for what in [Restore::TagAndDigest("latest", &a), Restore::Tag("latest")] {
        let err = refused(&s, &["hello-world"], || {
            repo.restore(what, OnConflict::Refuse)
        });
        assert!(
            matches!(&err, Error::TagConflict { repository, tag, digest }
                if repository == "hello-world" && tag == "latest" && digest == &b),
            "{what:?}: {err:?}"
        );
    }
    assert_eq!(deleted_manifest_digests(&repo), set([&a]));
}

#[test]
fn s6_force_restore_moves_the_tag_and_soft_deletes_the_overwritten_tag() {
    // az acr manifest restore -r MyRegistry -n hello-world:latest -d sha256:… -f
    let s = soft_delete_store(7);
    let repo = s.repo("hello-world");
    let a = push_image(&repo, "latest", "a");
    repo.delete_manifest("latest").unwrap();
    s.clock.set(day(1.0));
    let b = push_image(&repo, "latest", "b");
    s.clock.set(day(2.0));

    assert_eq!(
        repo.restore(Restore::TagAndDigest("latest", &a), OnConflict::MoveTag)
            .unwrap(),
        a
    );

    assert_eq!(repo.resolve("latest").unwrap(), a);
    // The manifest the tag left stays live, untagged; the overwritten tag is in the bin.
    assert_eq!(manifest_digests(&repo), set([&a, &b]));
    assert!(repo.manifest(b.as_str()).unwrap().tags.is_empty());
    let binned = repo.deleted_tags(Some("latest")).unwrap();
    assert_eq!(binned.len(), 1);
    assert_eq!((&binned[0].digest, binned[0].deleted_at), (&b, day(2.0)));
    assert!(repo.deleted_manifests().unwrap().is_empty());
    let history = repo.tag_history("latest").unwrap();
    let newest: Vec<_> = history[..2]
        .iter()
        .map(|e| (e.from.clone(), e.to.clone(), e.cause))
        .collect();
    assert_eq!(
        newest,
        [
            (None, Some(a.clone()), TagCause::Restore),
            (Some(b.clone()), None, TagCause::Restore)
        ]
    );
    // The overwritten tag can be force-restored back the same way.
    assert_eq!(
        repo.restore(Restore::Tag("latest"), OnConflict::MoveTag)
            .unwrap(),
        b
    );
    assert_eq!(repo.resolve("latest").unwrap(), b);
    assert_eq!(deleted_tag_pairs(&repo), pairs([("latest", &a)]));
}

#[test]
fn s6_force_restore_with_the_policy_off_drops_the_overwritten_tag() {
    let s = soft_delete_store(7);
    let repo = s.repo("hello-world");
    let a = push_image(&repo, "latest", "a");
    repo.delete_manifest("latest").unwrap();
    policy_off(&s, 7);
    let b = push_image(&repo, "latest", "b");

    repo.restore(Restore::TagAndDigest("latest", &a), OnConflict::MoveTag)
        .unwrap();

    assert_eq!(repo.resolve("latest").unwrap(), a);
    assert!(repo.deleted_tags(None).unwrap().is_empty());
    assert!(repo.manifest(b.as_str()).unwrap().tags.is_empty());
    restore_is_not_deleted(
        &repo,
        Restore::Tag("latest"),
        OnConflict::MoveTag,
        Item::Tag("latest".into()),
    );
}

#[test]
fn s6_force_without_a_conflict_is_a_plain_restore() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    repo.delete_manifest("latest").unwrap();
    repo.restore(Restore::TagAndDigest("latest", &a), OnConflict::MoveTag)
        .unwrap();
    assert_eq!(repo.resolve("latest").unwrap(), a);
    assert!(repo.deleted_tags(None).unwrap().is_empty());
}

#[test]
fn s6_restore_with_a_digest_and_no_tag_brings_the_manifest_back_untagged() {
    let s = soft_delete_store(7);
    let repo = s.repo("hello-world");
    let a = push_image(&repo, "latest", "a");
    repo.delete_manifest("latest").unwrap();

    assert_eq!(
        repo.restore(Restore::Digest(&a), OnConflict::Refuse)
            .unwrap(),
        a
    );

    assert!(tag_names(&repo).is_empty());
    let untagged = untagged_manifests(&repo);
    assert_eq!(untagged.len(), 1);
    assert_eq!(untagged[0].digest, a);
    assert!(repo.deleted_manifests().unwrap().is_empty());
    // Its tag stays in the bin, and can be restored afterwards.
    assert_eq!(deleted_tag_pairs(&repo), pairs([("latest", &a)]));
    let err = repo.pull("latest").unwrap_err();
    assert!(
        is_manifest_unknown(&err, "hello-world", "latest"),
        "{err:?}"
    );
    assert_eq!(
        repo.restore(Restore::Tag("latest"), OnConflict::Refuse)
            .unwrap(),
        a
    );
    assert_eq!(repo.resolve("latest").unwrap(), a);
}

#[test]
fn s6_restore_may_name_a_tag_the_manifest_never_had() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    repo.delete_manifest("latest").unwrap();

    repo.restore(Restore::TagAndDigest("recovered", &a), OnConflict::Refuse)
        .unwrap();

    assert_eq!(tag_names(&repo), ["recovered"]);
    assert_eq!(repo.resolve("recovered").unwrap(), a);
    assert_eq!(deleted_tag_pairs(&repo), pairs([("latest", &a)]));
}

#[test]
fn s6_restore_of_a_manifest_not_in_the_bin_is_not_deleted_and_changes_nothing() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let live = push_image(&repo, "latest", "a");
    push_image(&repo, "other", "b");
    let o = push_image(&s.repo("other"), "latest", "o");
    s.repo("other").delete_manifest("latest").unwrap();
    let never = Algorithm::Sha256.digest(b"never pushed");
    // Unknown here (in another repository's bin, never pushed) or live: the bin holds nothing.
    for d in [&never, &o, &live] {
        for what in [Restore::Digest(d), Restore::TagAndDigest("v1", d)] {
            for on_conflict in [OnConflict::Refuse, OnConflict::MoveTag] {
                let err = refused(&s, &["app", "other"], || repo.restore(what, on_conflict));
                // A live manifest: it is the tag that is not in the bin.
                let item = match what {
                    Restore::TagAndDigest(..) if d == &live => Item::Tag("v1".into()),
                    _ => Item::Manifest(d.clone()),
                };
                assert!(is_not_deleted(&err, "app", &item), "{what:?}: {err:?}");
            }
        }
    }
    // A tag never deleted.
    let err = refused(&s, &["app"], || {
        repo.restore(Restore::Tag("other"), OnConflict::Refuse)
    });
    assert!(
        is_not_deleted(&err, "app", &Item::Tag("other".into())),
        "{err:?}"
    );
}

#[test]
fn s6_restore_with_an_invalid_tag_is_invalid_tag_and_changes_nothing() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    repo.delete_manifest("latest").unwrap();
    for bad in ["", ".x", "a:b", "sp ace", &"t".repeat(129)] {
        for what in [Restore::TagAndDigest(bad, &a), Restore::Tag(bad)] {
            let err = refused(&s, &["app"], || repo.restore(what, OnConflict::MoveTag));
            assert!(is_invalid_tag(&err, bad), "{bad:?}: {err:?}");
        }
    }
}

#[test]
fn s6_restoring_a_deleted_tag_onto_its_live_manifest_only_tags_it() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    let b = push_image(&repo, "other", "b");
    repo.tag("v1", &a).unwrap();
    repo.untag("v1").unwrap();

    // A tag in the bin on a live manifest: the tag comes back, the manifest is untouched.
    let created = repo.manifest(a.as_str()).unwrap().created;
    assert_eq!(
        repo.restore(Restore::TagAndDigest("v1", &a), OnConflict::Refuse)
            .unwrap(),
        a
    );
    assert_eq!(repo.resolve("v1").unwrap(), a);
    assert_eq!(repo.manifest(a.as_str()).unwrap().created, created);
    assert!(repo.deleted_tags(None).unwrap().is_empty());
    // A tag live elsewhere is still a conflict, when the bin holds the tag.
    repo.untag("v1").unwrap();
    repo.tag("v1", &b).unwrap();
    let err = refused(&s, &["app"], || {
        repo.restore(Restore::Tag("v1"), OnConflict::Refuse)
    });
    assert!(
        matches!(&err, Error::TagConflict { tag, digest, .. } if tag == "v1" && digest == &b),
        "{err:?}"
    );
    assert!(repo.deleted_manifests().unwrap().is_empty());
}

#[test]
fn s6_restore_with_options_is_restore_with_its_on_conflict() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    repo.delete_manifest("latest").unwrap();
    let b = push_image(&repo, "latest", "b");

    let refuse = RestoreOptions::default();
    let err = refused(&s, &["app"], || {
        repo.restore_with(Restore::Tag("latest"), &refuse)
    });
    assert!(
        matches!(&err, Error::TagConflict { repository, tag, digest }
            if repository == "app" && tag == "latest" && digest == &b),
        "{err:?}"
    );
    // In a batch, with MoveTag: the overwritten tag goes to the bin.
    let move_tag = RestoreOptions::default().on_conflict(OnConflict::MoveTag);
    let restored = s
        .registry
        .batch(|batch| batch.restore_with(&repo, Restore::Tag("latest"), &move_tag))
        .unwrap();
    assert_eq!(restored, a);
    assert_eq!(repo.resolve("latest").unwrap(), a);
    assert_eq!(deleted_tag_pairs(&repo), pairs([("latest", &b)]));
    // The options are plain data.
    let json = serde_json::to_value(&move_tag).unwrap();
    assert_eq!(
        json,
        json!({"on_conflict": "move_tag", "with_children": false})
    );
    let back: RestoreOptions = serde_json::from_value(json!({"with_children": true})).unwrap();
    assert_eq!(back, RestoreOptions::default().with_children(true));
}

#[test]
fn s6_a_restored_manifest_counts_as_updated_at_the_restore() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let a = push_image(&repo, "a", "a");
    let b = push_image(&repo, "b", "b");
    repo.delete_manifest("a").unwrap();
    s.clock.set(day(3.0));

    repo.restore(Restore::Digest(&a), OnConflict::Refuse)
        .unwrap();

    let m = repo.manifest(a.as_str()).unwrap();
    assert_eq!((m.created, m.updated), (START, day(3.0)));
    let newest_first: Vec<Digest> = repo
        .manifests(&ManifestQuery::default().descending(true))
        .unwrap()
        .into_iter()
        .map(|m| m.digest)
        .collect();
    assert_eq!(newest_first, [a.clone(), b]);
    let before: Vec<Digest> = repo
        .manifests(&ManifestQuery::default().updated_before(day(1.0)))
        .unwrap()
        .into_iter()
        .map(|m| m.digest)
        .collect();
    assert!(!before.contains(&a));
}

// ---------------------------------------------------------------------------------------------
// S7 — restore by tag alone: the most recently deleted manifest that carried the tag.

#[test]
fn s7_restore_by_tag_alone_brings_back_the_most_recently_deleted_manifest_with_that_tag() {
    // az acr manifest restore -r MyRegistry -n hello-world:latest
    let s = soft_delete_store(7);
    let repo = s.repo("hello-world");
    let a = push_image(&repo, "latest", "a");
    repo.delete_manifest("latest").unwrap();
    s.clock.set(day(1.0));
    let b = push_image(&repo, "latest", "b");
    repo.delete_manifest("latest").unwrap();
    s.clock.set(day(2.0));

    assert_eq!(
        repo.restore(Restore::Tag("latest"), OnConflict::Refuse)
            .unwrap(),
        b
    );

    assert_eq!(repo.resolve("latest").unwrap(), b);
    assert_eq!(deleted_manifest_digests(&repo), set([&a]));
    assert_eq!(deleted_tag_pairs(&repo), pairs([("latest", &a)]));
    // The next one by that tag is the older manifest, but the tag is live now.
    let err = refused(&s, &["hello-world"], || {
        repo.restore(Restore::Tag("latest"), OnConflict::Refuse)
    });
    assert!(
        matches!(&err, Error::TagConflict { tag, digest, .. } if tag == "latest" && digest == &b),
        "{err:?}"
    );
    assert_eq!(
        repo.restore(Restore::Tag("latest"), OnConflict::MoveTag)
            .unwrap(),
        a
    );
    assert_eq!(repo.resolve("latest").unwrap(), a);
    assert_eq!(deleted_tag_pairs(&repo), pairs([("latest", &b)]));
}

#[test]
fn s7_deletions_at_the_same_clock_time_keep_their_order() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    push_image(&repo, "latest", "a");
    repo.delete_manifest("latest").unwrap();
    let b = push_image(&repo, "latest", "b");
    repo.delete_manifest("latest").unwrap();
    let c = push_image(&repo, "latest", "c");
    repo.untag("latest").unwrap();

    let a = repo.deleted_tags(Some("latest")).unwrap()[2].digest.clone();

    assert_eq!(
        repo.restore(Restore::Tag("latest"), OnConflict::Refuse)
            .unwrap(),
        c
    );
    let binned = |repo: &Repository| -> Vec<Digest> {
        repo.deleted_tags(Some("latest"))
            .unwrap()
            .into_iter()
            .map(|t| t.digest)
            .collect()
    };
    assert_eq!(binned(&repo), [b.clone(), a.clone()]);
    // Forced, the next one is b; c's overwritten tag is now the newest entry.
    assert_eq!(
        repo.restore(Restore::Tag("latest"), OnConflict::MoveTag)
            .unwrap(),
        b
    );
    assert_eq!(binned(&repo), [c.clone(), a.clone()]);
    assert_eq!(
        repo.restore(Restore::Tag("latest"), OnConflict::MoveTag)
            .unwrap(),
        c
    );
    assert_eq!(binned(&repo), [b, a]);
}

#[test]
fn s7_restore_by_tag_alone_of_a_manifest_that_is_still_live_retags_it() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    repo.untag("latest").unwrap();

    assert_eq!(
        repo.restore(Restore::Tag("latest"), OnConflict::Refuse)
            .unwrap(),
        a
    );

    assert_eq!(repo.resolve("latest").unwrap(), a);
    assert!(repo.deleted_tags(None).unwrap().is_empty());
}

#[test]
fn s7_restore_by_a_tag_not_in_the_bin_is_not_deleted_and_changes_nothing() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    push_image(&repo, "latest", "a");
    let other = s.repo("other");
    push_image(&other, "gone", "o");
    other.untag("gone").unwrap();
    // Never deleted, live, or deleted in another repository.
    for tag in ["never", "latest", "gone"] {
        for force in [false, true] {
            let err = refused(&s, &["app", "other"], || {
                repo.restore(
                    Restore::Tag(tag),
                    if force {
                        OnConflict::MoveTag
                    } else {
                        OnConflict::Refuse
                    },
                )
            });
            assert!(
                is_not_deleted(&err, "app", &Item::Tag(tag.to_string())),
                "{err:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// S8 — a restore brings back exactly one tag.

#[test]
fn s8_a_restore_brings_back_exactly_one_tag_and_leaves_the_others_in_the_bin() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    repo.tag("v1", &a).unwrap();
    repo.tag("stable", &a).unwrap();
    repo.delete_manifest("latest").unwrap();

    repo.restore(Restore::TagAndDigest("v1", &a), OnConflict::Refuse)
        .unwrap();
    assert_eq!(tag_names(&repo), ["v1"]);
    assert_eq!(
        deleted_tag_pairs(&repo),
        pairs([("latest", &a), ("stable", &a)])
    );
    assert!(repo.deleted_manifests().unwrap().is_empty());

    // The others come back one restore at a time.
    repo.restore(Restore::Tag("stable"), OnConflict::Refuse)
        .unwrap();
    assert_eq!(tag_names(&repo), ["stable", "v1"]);
    assert_eq!(deleted_tag_pairs(&repo), pairs([("latest", &a)]));
    repo.restore(Restore::TagAndDigest("latest", &a), OnConflict::Refuse)
        .unwrap();
    assert_eq!(tag_names(&repo), ["latest", "stable", "v1"]);
    assert!(repo.deleted_tags(None).unwrap().is_empty());
}

#[test]
fn s8_restore_by_tag_alone_brings_back_only_that_tag() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    repo.tag("v1", &a).unwrap();
    s.registry.delete_repository("app").unwrap();

    assert_eq!(
        repo.restore(Restore::Tag("v1"), OnConflict::Refuse)
            .unwrap(),
        a
    );

    assert_eq!(tag_names(&repo), ["v1"]);
    assert_eq!(deleted_tag_pairs(&repo), pairs([("latest", &a)]));
}

// ---------------------------------------------------------------------------------------------
// S9 — restoring an index does not restore its soft-deleted children.

#[test]
fn s9_restoring_an_index_does_not_restore_its_soft_deleted_children() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let amd64 = push_image(&repo, "amd64", "amd64");
    let arm64 = push_image(&repo, "arm64", "arm64");
    let index = push_index(&repo, Some("latest"), &[&amd64, &arm64]);
    repo.delete_manifest("latest").unwrap();
    repo.delete_manifest("amd64").unwrap();

    assert_eq!(
        repo.restore(Restore::Tag("latest"), OnConflict::Refuse)
            .unwrap(),
        index
    );

    assert_eq!(manifest_digests(&repo), set([&index, &arm64]));
    assert_eq!(deleted_manifest_digests(&repo), set([&amd64]));
    assert_eq!(deleted_tag_pairs(&repo), pairs([("amd64", &amd64)]));
    assert_eq!(tag_names(&repo), ["arm64", "latest"]);
    // The child comes back on its own restore, and the index blocks its delete again (D5).
    repo.restore(Restore::Tag("amd64"), OnConflict::Refuse)
        .unwrap();
    assert_eq!(manifest_digests(&repo), set([&index, &arm64, &amd64]));
    let err = refused(&s, &["app"], || repo.delete_manifest("amd64"));
    assert!(
        matches!(&err, Error::ManifestReferenced { digest, index: i, .. } if digest == &amd64 && i == &index),
        "{err:?}"
    );
}

#[test]
fn s9_restoring_an_index_out_of_a_soft_deleted_repository_brings_back_only_the_index() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let amd64 = push_image(&repo, "amd64", "amd64");
    let arm64 = push_untagged(&repo, "arm64");
    let index = push_index(&repo, Some("latest"), &[&amd64, &arm64]);
    s.registry.delete_repository("app").unwrap();

    repo.restore(Restore::TagAndDigest("latest", &index), OnConflict::Refuse)
        .unwrap();

    assert_eq!(manifest_digests(&repo), set([&index]));
    assert_eq!(deleted_manifest_digests(&repo), set([&amd64, &arm64]));
    assert_eq!(tag_names(&repo), ["latest"]);
}

// ---------------------------------------------------------------------------------------------
// S10 — a referrer needs its subject restored first; a subject comes back without referrers.

#[test]
fn s10_restoring_a_referrer_whose_subject_is_soft_deleted_is_subject_deleted() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let subject = push_image(&repo, "latest", "subject");
    let sig = push_referrer(&repo, Some("sig"), &subject, "sig");
    repo.delete_manifest("latest").unwrap();

    for what in [
        Restore::Digest(&sig),
        Restore::Tag("sig"),
        Restore::TagAndDigest("sig", &sig),
        Restore::TagAndDigest("new", &sig),
    ] {
        for force in [false, true] {
            let err = refused(&s, &["app"], || {
                repo.restore(
                    what,
                    if force {
                        OnConflict::MoveTag
                    } else {
                        OnConflict::Refuse
                    },
                )
            });
            assert!(
                matches!(&err, Error::SubjectDeleted { repository, subject: d }
                    if repository == "app" && d == &subject),
                "{what:?}: {err:?}"
            );
        }
    }
}

#[test]
fn s10_restoring_a_subject_does_not_restore_its_referrers() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let subject = push_image(&repo, "latest", "subject");
    let sig = push_referrer(&repo, Some("sig"), &subject, "sig");
    let sbom = push_referrer(&repo, None, &subject, "sbom");
    repo.delete_manifest("latest").unwrap();

    assert_eq!(
        repo.restore(Restore::Tag("latest"), OnConflict::Refuse)
            .unwrap(),
        subject
    );

    assert!(repo.referrers(&subject, None).unwrap().is_empty());
    assert_eq!(manifest_digests(&repo), set([&subject]));
    assert_eq!(deleted_manifest_digests(&repo), set([&sig, &sbom]));
    // Now the referrers can be restored, one by one.
    repo.restore(Restore::Tag("sig"), OnConflict::Refuse)
        .unwrap();
    assert_eq!(referrer_digests(&repo, &subject), vec![sig.clone()]);
    repo.restore(Restore::Digest(&sbom), OnConflict::Refuse)
        .unwrap();
    let referrers: BTreeSet<Digest> = referrer_digests(&repo, &subject).into_iter().collect();
    assert_eq!(referrers, set([&sig, &sbom]));
}

#[test]
fn s10_a_chain_of_referrers_is_restored_from_the_subject_down() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let subject = push_image(&repo, "latest", "subject");
    let sig = push_referrer(&repo, None, &subject, "sig");
    let sig_of_sig = push_referrer(&repo, None, &sig, "sig of sig");
    repo.delete_manifest("latest").unwrap();
    repo.restore(Restore::Tag("latest"), OnConflict::Refuse)
        .unwrap();

    let err = refused(&s, &["app"], || {
        repo.restore(Restore::Digest(&sig_of_sig), OnConflict::Refuse)
    });
    assert!(
        matches!(&err, Error::SubjectDeleted { subject: d, .. } if d == &sig),
        "{err:?}"
    );
    repo.restore(Restore::Digest(&sig), OnConflict::Refuse)
        .unwrap();
    repo.restore(Restore::Digest(&sig_of_sig), OnConflict::Refuse)
        .unwrap();
    assert_eq!(referrer_digests(&repo, &sig), [sig_of_sig]);
}

#[test]
fn s10_a_referrer_whose_subject_was_purged_can_be_restored() {
    // The subject need not exist (P4): only a subject in the bin blocks the restore.
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let subject = push_image(&repo, "latest", "subject");
    let sig = push_referrer(&repo, None, &subject, "sig");
    repo.delete_manifest("latest").unwrap();
    repo.purge_deleted_manifest(&subject).unwrap();

    assert_eq!(
        repo.restore(Restore::Digest(&sig), OnConflict::Refuse)
            .unwrap(),
        sig
    );
    assert_eq!(referrer_digests(&repo, &subject), [sig]);
}

// ---------------------------------------------------------------------------------------------
// S11 — restoring inside a soft-deleted repository brings it back with only what was restored.

#[test]
fn s11_restoring_inside_a_soft_deleted_repository_brings_it_back_holding_only_that() {
    for by in ["tag", "digest", "tag and digest"] {
        let s = soft_delete_store(7);
        let repo = s.repo("app");
        let a = push_image(&repo, "latest", "a");
        let b = push_image(&repo, "v2", "b");
        let c = push_untagged(&repo, "c");
        push_image(&s.repo("other"), "latest", "o");
        s.clock.set(day(1.0));
        s.registry.delete_repository("app").unwrap();
        s.clock.set(day(2.0));

        let what = match by {
            "tag" => Restore::Tag("latest"),
            "digest" => Restore::Digest(&a),
            _ => Restore::TagAndDigest("latest", &a),
        };
        assert_eq!(repo.restore(what, OnConflict::Refuse).unwrap(), a);

        assert_eq!(repositories(&s.registry), ["app", "other"], "{by}");
        assert!(s.registry.deleted_repositories().unwrap().is_empty());
        assert_eq!(manifest_digests(&repo), set([&a]));
        let tags = if by == "digest" {
            vec![]
        } else {
            vec!["latest"]
        };
        assert_eq!(tag_names(&repo), tags);
        assert_eq!(deleted_manifest_digests(&repo), set([&b, &c]));
        let mut binned = pairs([("v2", &b)]);
        if by == "digest" {
            binned.insert(("latest".to_owned(), a.clone()));
        }
        assert_eq!(deleted_tag_pairs(&repo), binned);
        // Its blobs are readable again.
        for blob in seed_blobs("a") {
            assert!(repo.blob(&blob).is_ok());
        }
        // What stays in the bin keeps its deletion time and is restorable later.
        assert!(
            repo.deleted_manifests()
                .unwrap()
                .iter()
                .all(|m| m.deleted_at == day(1.0))
        );
        repo.restore(Restore::Tag("v2"), OnConflict::Refuse)
            .unwrap();
        assert_eq!(manifest_digests(&repo), set([&a, &b]));
    }
}

#[test]
fn s11_a_refused_restore_leaves_the_repository_in_the_bin() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let subject = push_image(&repo, "latest", "subject");
    let sig = push_referrer(&repo, None, &subject, "sig");
    s.registry.delete_repository("app").unwrap();

    let err = refused(&s, &["app"], || {
        repo.restore(Restore::Digest(&sig), OnConflict::Refuse)
    });
    assert!(matches!(err, Error::SubjectDeleted { .. }), "{err:?}");
    assert_eq!(deleted_repository_names(&s.registry), ["app"]);
    assert!(repositories(&s.registry).is_empty());
}

#[test]
fn s11_the_restored_repository_can_be_deleted_again_and_expires_from_then() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    s.registry.delete_repository("app").unwrap();
    s.clock.set(day(3.0));
    repo.restore(Restore::Tag("latest"), OnConflict::Refuse)
        .unwrap();
    s.clock.set(day(4.0));
    s.registry.delete_repository("app").unwrap();

    let deleted = s.registry.deleted_repositories().unwrap();
    assert_eq!(deleted.len(), 1);
    assert_eq!(
        (deleted[0].deleted_at, deleted[0].expires_at),
        (day(4.0), day(11.0))
    );
    // The first deletion's tombstone went with the restore: nothing expires on day 7.
    s.clock.set(day(7.0));
    assert_eq!(s.registry.run_now().unwrap(), report(day(7.0), 0, 0, 0));
    assert_eq!(
        repo.restore(Restore::Tag("latest"), OnConflict::Refuse)
            .unwrap(),
        a
    );
}

// ---------------------------------------------------------------------------------------------
// S12 — pushing to a soft-deleted repository brings it back; its tombstones stay.

#[test]
fn s12_pushing_to_a_soft_deleted_repository_brings_it_back_and_its_tombstones_stay() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    let old = push_untagged(&repo, "old");
    s.registry.delete_repository("app").unwrap();

    s.clock.set(day(1.0));
    let b = push_image(&repo, "latest", "b");

    assert_eq!(repositories(&s.registry), ["app"]);
    assert!(s.registry.deleted_repositories().unwrap().is_empty());
    assert_eq!(manifest_digests(&repo), set([&b]));
    assert_eq!(repo.resolve("latest").unwrap(), b);
    assert_eq!(deleted_manifest_digests(&repo), set([&a, &old]));
    assert_eq!(deleted_tag_pairs(&repo), pairs([("latest", &a)]));
    // The tombstones are still restorable, and still expire on their own day.
    repo.restore(Restore::TagAndDigest("old", &a), OnConflict::Refuse)
        .unwrap();
    assert_eq!(manifest_digests(&repo), set([&a, &b]));
    s.clock.set(day(7.0));
    assert_eq!(s.registry.run_now().unwrap(), report(day(7.0), 0, 1, 1));
    assert!(repo.deleted_manifests().unwrap().is_empty());
    assert_eq!(manifest_digests(&repo), set([&a, &b]));
}

#[test]
fn s12_a_manifest_over_the_repository_s_old_blobs_can_be_pushed_at_once() {
    // Blob links stay with a soft-deleted repository, so nothing needs uploading again.
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    push_image(&repo, "latest", "a");
    s.registry.delete_repository("app").unwrap();

    let [config, layer] = <[Digest; 2]>::try_from(seed_blobs("a")).unwrap();
    let mut body = common::image_body(
        &(config, "config a".len() as u64),
        &[(layer.clone(), "layer a".len() as u64)],
    );
    body["annotations"] = json!({"org.example.rebuilt": "yes"});
    let d = push(
        &repo,
        Some("rebuilt"),
        OCI_MANIFEST,
        &serde_json::to_vec(&body).unwrap(),
    );

    assert_eq!(repositories(&s.registry), ["app"]);
    assert_eq!(manifest_digests(&repo), set([&d]));
    assert_eq!(repo.blob(&layer).unwrap(), &b"layer a"[..]);
}

#[test]
fn s12_a_blob_upload_or_mount_into_a_soft_deleted_repository_brings_it_back() {
    for how in ["put", "upload", "mount"] {
        let s = soft_delete_store(7);
        let repo = s.repo("app");
        let a = push_image(&repo, "latest", "a");
        push_image(&s.repo("base"), "latest", "base");
        s.registry.delete_repository("app").unwrap();

        let blob = match how {
            "put" => repo.put_blob_sha256(b"new blob").unwrap(),
            "upload" => {
                let upload = repo.start_upload().unwrap();
                // Starting a session is no push yet.
                assert!(repositories(&s.registry).iter().all(|r| r != "app"));
                upload.append(b"new blob").unwrap();
                let d = Algorithm::Sha256.digest(b"new blob");
                upload.finish(&d).unwrap();
                d
            }
            _ => {
                let d = seed_blobs("base")[1].clone();
                repo.mount_blob("base", &d).unwrap();
                d
            }
        };

        assert_eq!(repositories(&s.registry), ["app", "base"], "{how}");
        assert!(s.registry.deleted_repositories().unwrap().is_empty());
        assert!(repo.blob(&blob).is_ok());
        assert!(manifest_digests(&repo).is_empty());
        assert_eq!(deleted_manifest_digests(&repo), set([&a]));
        assert_eq!(deleted_tag_pairs(&repo), pairs([("latest", &a)]));
    }
}

// ---------------------------------------------------------------------------------------------
// S13 — a soft-deleted digest cannot be pushed; nothing is mounted out of a deleted repository.

#[test]
fn s13_pushing_a_soft_deleted_digest_is_manifest_soft_deleted_and_changes_nothing() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let body = upload_image(&repo, b"config a", &[b"layer a"]);
    let a = push(&repo, Some("latest"), OCI_MANIFEST, &body);
    push_image(&repo, "other", "other");
    repo.delete_manifest("latest").unwrap();

    for reference in ["latest", "v2", a.as_str()] {
        let err = refused(&s, &["app"], || {
            repo.push_manifest(reference, OCI_MANIFEST, &body)
        });
        assert!(
            is_manifest_soft_deleted(&err, "app", &a),
            "{reference}: {err:?}"
        );
    }
    // Restore it instead.
    repo.restore(Restore::Tag("latest"), OnConflict::Refuse)
        .unwrap();
    assert_eq!(push(&repo, Some("v2"), OCI_MANIFEST, &body), a);
}

#[test]
fn s13_pushing_a_soft_deleted_digest_into_a_soft_deleted_repository_leaves_it_deleted() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let body = upload_image(&repo, b"config a", &[b"layer a"]);
    let a = push(&repo, Some("latest"), OCI_MANIFEST, &body);
    s.registry.delete_repository("app").unwrap();

    let err = refused(&s, &["app"], || {
        repo.push_manifest("latest", OCI_MANIFEST, &body)
    });
    assert!(is_manifest_soft_deleted(&err, "app", &a), "{err:?}");
    assert_eq!(deleted_repository_names(&s.registry), ["app"]);
}

#[test]
fn s13_the_same_bytes_are_accepted_in_another_repository_and_after_a_purge() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    repo.delete_manifest("latest").unwrap();

    assert_eq!(push_image(&s.repo("other"), "latest", "a"), a);

    repo.purge_deleted_manifest(&a).unwrap();
    assert_eq!(push_image(&repo, "latest", "a"), a);
    assert_eq!(manifest_digests(&repo), set([&a]));
}

#[test]
fn s13_tagging_a_soft_deleted_manifest_is_manifest_unknown_and_changes_nothing() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    repo.delete_manifest("latest").unwrap();

    for tag in ["latest", "v1"] {
        let err = refused(&s, &["app"], || repo.tag(tag, &a));
        assert!(is_manifest_unknown(&err, "app", a.as_str()), "{err:?}");
    }
}

#[test]
fn s13_an_index_listing_a_soft_deleted_child_is_manifest_unknown() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let child = push_image(&repo, "child", "child");
    let live = push_image(&repo, "live", "live");
    let body = index_bytes(&repo, &[&live, &child]);
    repo.delete_manifest("child").unwrap();

    let err = refused(&s, &["app"], || {
        repo.push_manifest("latest", OCI_INDEX, &body)
    });
    assert!(is_manifest_unknown(&err, "app", child.as_str()), "{err:?}");
}

/// Pushes an index tagged `latest` over one child, soft-deletes it with `delete`, and checks
/// that pushing the same index again is refused as soft-deleted and changes nothing.
fn pushing_a_soft_deleted_index_again_is_refused(delete: impl FnOnce(&Store, &Repository)) {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let child = push_image(&repo, "child", "child");
    let body = index_bytes(&repo, &[&child]);
    let index = push(&repo, Some("latest"), OCI_INDEX, &body);
    delete(&s, &repo);

    let err = refused(&s, &["app"], || {
        repo.push_manifest("latest", OCI_INDEX, &body)
    });
    assert!(is_manifest_soft_deleted(&err, "app", &index), "{err:?}");
}

#[test]
fn s13_pushing_a_soft_deleted_index_again_is_manifest_soft_deleted() {
    // The index goes to the bin with its repository, its child with it.
    pushing_a_soft_deleted_index_again_is_refused(|s, _| {
        s.registry.delete_repository("app").unwrap();
    });
}

#[test]
fn s13_pushing_a_soft_deleted_index_whose_children_are_live_is_manifest_soft_deleted() {
    // Only the index goes to the bin; its child stays live.
    pushing_a_soft_deleted_index_again_is_refused(|_, repo| {
        repo.delete_manifest("latest").unwrap();
    });
}

#[test]
fn s13_mounting_out_of_a_soft_deleted_repository_is_repository_soft_deleted() {
    let s = soft_delete_store(7);
    let base = s.repo("base");
    push_image(&base, "latest", "base");
    let app = s.repo("app");
    push_image(&app, "latest", "app");
    s.registry.delete_repository("base").unwrap();
    let layer = seed_blobs("base")[1].clone();

    let err = refused(&s, &["app", "base"], || app.mount_blob("base", &layer));
    assert!(
        matches!(&err, Error::RepositorySoftDeleted { name } if name == "base"),
        "{err:?}"
    );
    // Into a fresh repository too: nothing is created.
    let fresh = s.repo("fresh");
    let err = refused(&s, &["app", "base", "fresh"], || {
        fresh.mount_blob("base", &layer)
    });
    assert!(
        matches!(&err, Error::RepositorySoftDeleted { name } if name == "base"),
        "{err:?}"
    );
    // Once the repository is back, the mount works.
    base.restore(Restore::Tag("latest"), OnConflict::Refuse)
        .unwrap();
    app.mount_blob("base", &layer).unwrap();
    assert_eq!(app.blob(&layer).unwrap(), &b"layer base"[..]);
}

// ---------------------------------------------------------------------------------------------
// S14 — soft-deleted items keep their blobs.

#[test]
fn s14_a_soft_deleted_manifest_keeps_its_blobs_and_they_are_readable_after_restore() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    let body = repo.pull("latest").unwrap().body;
    repo.delete_manifest("latest").unwrap();

    for blob in seed_blobs("a") {
        assert!(blob_file(&s.registry, &blob).exists());
        assert!(
            repo.blob(&blob).is_ok(),
            "the repository is live: its links stay"
        );
    }
    repo.restore(Restore::Tag("latest"), OnConflict::Refuse)
        .unwrap();
    assert_eq!(repo.pull("latest").unwrap().body, body);
    for (blob, bytes) in seed_blobs("a").iter().zip(["config a", "layer a"]) {
        assert_eq!(repo.blob(blob).unwrap(), bytes.as_bytes());
    }
    assert_eq!(repo.manifest(a.as_str()).unwrap().references.len(), 2);
}

#[test]
fn s14_a_soft_deleted_repository_keeps_its_blobs_and_they_are_readable_after_restore() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    push_image(&repo, "latest", "a");
    s.registry.delete_repository("app").unwrap();

    for blob in seed_blobs("a") {
        assert!(blob_file(&s.registry, &blob).exists());
        assert!(matches!(repo.blob(&blob), Err(Error::BlobUnknown { .. })));
    }
    s.clock.set(day(6.0));
    assert_eq!(s.registry.run_now().unwrap(), report(day(6.0), 0, 0, 0));
    repo.restore(Restore::Tag("latest"), OnConflict::Refuse)
        .unwrap();
    for (blob, bytes) in seed_blobs("a").iter().zip(["config a", "layer a"]) {
        assert_eq!(repo.blob(blob).unwrap(), bytes.as_bytes());
        assert_eq!(repo.blob_size(blob).unwrap(), bytes.len() as u64);
    }
}

// ---------------------------------------------------------------------------------------------
// S15 — turning the policy off leaves existing tombstones restorable until they expire.

#[test]
fn s15_turning_the_policy_off_leaves_tombstones_restorable() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    let b = push_image(&repo, "v2", "b");
    let scratch = s.repo("scratch");
    let sc = push_image(&scratch, "latest", "scratch");
    repo.delete_manifest("latest").unwrap();
    repo.untag("v2").unwrap();
    s.registry.delete_repository("scratch").unwrap();
    let bin = state(&s.registry, &["app", "scratch"]);

    policy_off(&s, 7);

    let with_policy = |text: &str| text.replace("enabled: true", "enabled: false");
    assert_eq!(state(&s.registry, &["app", "scratch"]), with_policy(&bin));
    s.clock.set(day(6.0));
    assert_eq!(
        repo.restore(Restore::Tag("latest"), OnConflict::Refuse)
            .unwrap(),
        a
    );
    assert_eq!(
        repo.restore(Restore::Tag("v2"), OnConflict::Refuse)
            .unwrap(),
        b
    );
    assert_eq!(
        scratch
            .restore(Restore::Tag("latest"), OnConflict::Refuse)
            .unwrap(),
        sc
    );
    assert_eq!(repositories(&s.registry), ["app", "scratch"]);
}

#[test]
fn s15_with_the_policy_off_tombstones_still_expire_by_its_retention() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    push_image(&repo, "latest", "a");
    repo.delete_manifest("latest").unwrap();
    push_image(&s.repo("scratch"), "latest", "s");
    s.registry.delete_repository("scratch").unwrap();
    policy_off(&s, 3);

    assert_eq!(repo.deleted_manifests().unwrap()[0].expires_at, day(3.0));
    s.clock.set(day(2.9));
    assert_eq!(s.registry.run_now().unwrap(), report(day(2.9), 0, 0, 0));
    s.clock.set(day(3.0));
    let ran = s.registry.run_now().unwrap();
    assert_eq!(ran.repositories, 1);
    assert!(ran.manifests >= 1 && ran.tags >= 1, "{ran:?}");
    assert!(repo.deleted_manifests().unwrap().is_empty());
    assert!(s.registry.deleted_repositories().unwrap().is_empty());
}

#[test]
fn s15_deletes_after_the_policy_is_off_are_permanent() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let a = push_image(&repo, "a", "a");
    let b = push_image(&repo, "b", "b");
    repo.delete_manifest("a").unwrap();
    policy_off(&s, 7);

    repo.delete_manifest("b").unwrap();

    assert_eq!(deleted_manifest_digests(&repo), set([&a]));
    assert_eq!(deleted_tag_pairs(&repo), pairs([("a", &a)]));
    restore_is_not_deleted(
        &repo,
        Restore::Digest(&b),
        OnConflict::Refuse,
        Item::Manifest(b.clone()),
    );
}

// ---------------------------------------------------------------------------------------------
// S16 — tombstones purged by hand before they expire.

#[test]
fn s16_purge_deleted_repository_removes_it_with_everything_in_it() {
    let s = soft_delete_store(7);
    let repo = s.repo("scratch");
    let a = push_image(&repo, "latest", "a");
    push_untagged(&repo, "b");
    let keep = s.repo("keep");
    push_image(&keep, "latest", "k");
    keep.untag("latest").unwrap();
    s.registry.delete_repository("scratch").unwrap();

    s.registry.purge_deleted_repository("scratch").unwrap();

    assert!(s.registry.deleted_repositories().unwrap().is_empty());
    assert!(repo.deleted_manifests().unwrap().is_empty());
    assert!(repo.deleted_tags(None).unwrap().is_empty());
    assert!(repo.blobs(&Page::all()).unwrap().is_empty());
    restore_is_not_deleted(
        &repo,
        Restore::Digest(&a),
        OnConflict::Refuse,
        Item::Manifest(a.clone()),
    );
    for blob in seed_blobs("a") {
        assert!(
            blob_file(&s.registry, &blob).exists(),
            "bytes are the collector's"
        );
    }
    // Other bins are untouched; nothing is left for autopurge.
    assert_eq!(keep.deleted_tags(None).unwrap().len(), 1);
    s.clock.set(day(7.0));
    assert_eq!(s.registry.run_now().unwrap(), report(day(7.0), 0, 0, 1));
}

#[test]
fn s16_purge_deleted_manifest_removes_it_with_its_bin_tags_but_not_its_history() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    repo.tag("v1", &a).unwrap();
    let b = push_image(&repo, "b", "b");
    repo.delete_manifest("latest").unwrap();
    repo.delete_manifest("b").unwrap();

    repo.purge_deleted_manifest(&a).unwrap();

    assert_eq!(deleted_manifest_digests(&repo), set([&b]));
    assert_eq!(deleted_tag_pairs(&repo), pairs([("b", &b)]));
    for tag in ["latest", "v1"] {
        // T2: the history stays, naming a manifest that is gone.
        let history = repo.tag_history(tag).unwrap();
        assert_eq!(history[0].from.as_ref(), Some(&a), "{tag}: {history:?}");
        restore_is_not_deleted(
            &repo,
            Restore::Tag(tag),
            OnConflict::Refuse,
            Item::Tag(tag.to_string()),
        );
    }
    restore_is_not_deleted(
        &repo,
        Restore::Digest(&a),
        OnConflict::Refuse,
        Item::Manifest(a.clone()),
    );
    // Purging it again: it is no longer in the bin.
    let err = refused(&s, &["app"], || repo.purge_deleted_manifest(&a));
    assert!(
        is_not_deleted(&err, "app", &Item::Manifest(a.clone())),
        "{err:?}"
    );
}

#[test]
fn s16_purge_deleted_manifest_works_inside_a_soft_deleted_repository() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    let b = push_image(&repo, "v2", "b");
    s.registry.delete_repository("app").unwrap();

    repo.purge_deleted_manifest(&a).unwrap();

    assert_eq!(deleted_repository_names(&s.registry), ["app"]);
    assert_eq!(deleted_manifest_digests(&repo), set([&b]));
    assert_eq!(
        repo.restore(Restore::Tag("v2"), OnConflict::Refuse)
            .unwrap(),
        b
    );
    assert_eq!(manifest_digests(&repo), set([&b]));
}

#[test]
fn s16_purge_deleted_tags_removes_every_deletion_of_that_tag() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    repo.tag("v1", &a).unwrap();
    repo.untag("latest").unwrap();
    let b = push_image(&repo, "latest", "b");
    repo.delete_manifest("latest").unwrap();
    let other = s.repo("other");
    push_image(&other, "latest", "o");
    other.untag("latest").unwrap();

    assert_eq!(repo.purge_deleted_tags("latest").unwrap(), 2);

    assert!(repo.deleted_tags(Some("latest")).unwrap().is_empty());
    // The manifest stays in the bin, restorable by digest; the other repository's bin stays.
    assert_eq!(deleted_manifest_digests(&repo), set([&b]));
    assert_eq!(other.deleted_tags(None).unwrap().len(), 1);
    assert_eq!(repo.resolve("v1").unwrap(), a);
    restore_is_not_deleted(
        &repo,
        Restore::Tag("latest"),
        OnConflict::Refuse,
        Item::Tag("latest".into()),
    );
    assert_eq!(
        repo.restore(Restore::Digest(&b), OnConflict::Refuse)
            .unwrap(),
        b
    );
}

#[test]
fn s16_purging_a_repository_not_in_the_bin_is_not_deleted_and_changes_nothing() {
    let s = soft_delete_store(7);
    push_image(&s.repo("live"), "latest", "a");
    for name in ["live", "never"] {
        let err = refused(&s, &["live", "never"], || {
            s.registry.purge_deleted_repository(name)
        });
        assert!(is_not_deleted(&err, name, &Item::Repository), "{err:?}");
    }
    for bad in ["", "Live", "a//b"] {
        let err = refused(&s, &["live"], || s.registry.purge_deleted_repository(bad));
        assert!(is_invalid_repository_name(&err, bad), "{err:?}");
    }
}

#[test]
fn s16_purging_a_manifest_not_in_the_bin_is_not_deleted_and_changes_nothing() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let live = push_image(&repo, "latest", "a");
    let other = s.repo("other");
    let elsewhere = push_image(&other, "latest", "o");
    other.delete_manifest("latest").unwrap();
    let never = Algorithm::Sha256.digest(b"never pushed");
    for d in [&live, &elsewhere, &never] {
        let err = refused(&s, &["app", "other"], || repo.purge_deleted_manifest(d));
        assert!(
            is_not_deleted(&err, "app", &Item::Manifest(d.clone())),
            "{err:?}"
        );
    }
}

#[test]
fn s16_purging_a_tag_not_in_the_bin_is_not_deleted_and_changes_nothing() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    push_image(&repo, "latest", "a");
    let other = s.repo("other");
    push_image(&other, "gone", "o");
    other.untag("gone").unwrap();
    for tag in ["latest", "never", "gone"] {
        let err = refused(&s, &["app", "other"], || repo.purge_deleted_tags(tag));
        assert!(
            is_not_deleted(&err, "app", &Item::Tag(tag.to_string())),
            "{err:?}"
        );
    }
    for bad in ["", ".x", "a:b"] {
        let err = refused(&s, &["app"], || repo.purge_deleted_tags(bad));
        assert!(is_invalid_tag(&err, bad), "{bad:?}: {err:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// S17 — while an index exists, live or in the bin, every manifest it lists exists.

fn is_referenced(err: &Error, repo: &str, manifest: &Digest, by: &Digest) -> bool {
    matches!(err, Error::ManifestReferenced { repository, digest, index }
        if repository == repo && digest == manifest && index == by)
}

fn fsck_problems(registry: &Registry) -> Vec<ocistore::Problem> {
    registry.fsck(&FsckOptions::default()).unwrap().problems
}

#[test]
fn s17_a_child_in_the_bin_is_not_purged_by_hand_before_its_index() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let amd64 = push_image(&repo, "amd64", "amd64");
    let index = push_index(&repo, Some("latest"), &[&amd64]);
    repo.delete_manifest("latest").unwrap();
    repo.delete_manifest("amd64").unwrap();

    let err = refused(&s, &["app"], || repo.purge_deleted_manifest(&amd64));
    assert!(is_referenced(&err, "app", &amd64, &index), "{err:?}");
    // The index comes back (S9: without its child), and still the child stays.
    repo.restore(Restore::Tag("latest"), OnConflict::Refuse)
        .unwrap();
    assert!(fsck_problems(&s.registry).is_empty());
    let err = refused(&s, &["app"], || repo.purge_deleted_manifest(&amd64));
    assert!(is_referenced(&err, "app", &amd64, &index), "{err:?}");
    // While a live index lists it, it does not expire.
    assert_eq!(
        repo.deleted_manifests().unwrap()[0].expires_at,
        Timestamp::from_nanos(u64::MAX)
    );
    s.clock.set(day(100.0));
    let mut ran = s.registry.run_now().unwrap();
    ran.history_events = 0; // T2: the history retention (90 days) has passed too.
    assert_eq!(ran, report(day(100.0), 0, 0, 1));
    assert_eq!(deleted_manifest_digests(&repo), set([&amd64]));
    // Once the index is gone for good, the child expires on its own day, long past: at once.
    policy_off(&s, 7);
    repo.delete_manifest("latest").unwrap();
    assert!(repo.deleted_manifests().unwrap().is_empty());
    assert!(fsck_problems(&s.registry).is_empty());
    assert_eq!(s.registry.run_now().unwrap(), report(day(100.0), 0, 1, 0));
}

#[test]
fn s17_a_restore_of_an_index_can_bring_its_children_back_with_it() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let amd64 = push_image(&repo, "amd64", "amd64");
    let arm64 = push_image(&repo, "arm64", "arm64");
    let inner = push_index(&repo, None, &[&arm64]);
    let index = push_index(&repo, Some("latest"), &[&amd64, &inner]);
    repo.delete_manifest("latest").unwrap();
    for child in [amd64.as_str(), inner.as_str(), "arm64"] {
        repo.delete_manifest(child).unwrap();
    }
    s.clock.set(day(1.0));

    let options = RestoreOptions::default().with_children(true);
    assert_eq!(
        repo.restore_with(Restore::Tag("latest"), &options).unwrap(),
        index
    );
    // Every manifest it lists, and what they list in turn, untagged; their tags stay binned.
    assert_eq!(
        manifest_digests(&repo),
        set([&index, &amd64, &inner, &arm64])
    );
    assert!(repo.deleted_manifests().unwrap().is_empty());
    assert_eq!(
        deleted_tag_pairs(&repo),
        pairs([("amd64", &amd64), ("arm64", &arm64)])
    );
    assert_eq!(tag_names(&repo), ["latest"]);
    assert_eq!(repo.manifest(arm64.as_str()).unwrap().updated, day(1.0));
    assert!(fsck_problems(&s.registry).is_empty());
}

#[test]
fn s17_a_child_in_the_bin_expires_with_the_index_that_lists_it() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let amd64 = push_image(&repo, "amd64", "amd64");
    let index = push_index(&repo, Some("latest"), &[&amd64]);
    repo.delete_manifest("latest").unwrap();
    repo.delete_manifest("amd64").unwrap();
    // The index back on day 2 and deleted again on day 3: the child (own expiry day 7) waits
    // for it (day 10).
    s.clock.set(day(2.0));
    repo.restore(Restore::Tag("latest"), OnConflict::Refuse)
        .unwrap();
    s.clock.set(day(3.0));
    repo.delete_manifest("latest").unwrap();
    let expiries: Vec<(Digest, Timestamp)> = repo
        .deleted_manifests()
        .unwrap()
        .into_iter()
        .map(|m| (m.digest, m.expires_at))
        .collect();
    assert_eq!(
        expiries,
        [(index.clone(), day(10.0)), (amd64.clone(), day(10.0))]
    );
    // Its tag entry expires on its own day.
    assert_eq!(
        repo.deleted_tags(Some("amd64")).unwrap()[0].expires_at,
        day(7.0)
    );

    s.clock.set(day(9.0));
    assert_eq!(s.registry.run_now().unwrap(), report(day(9.0), 0, 0, 1));
    assert_eq!(deleted_manifest_digests(&repo), set([&index, &amd64]));
    s.clock.set(day(10.0));
    assert!(repo.deleted_manifests().unwrap().is_empty());
    assert_eq!(s.registry.run_now().unwrap(), report(day(10.0), 0, 2, 1));
    assert!(fsck_problems(&s.registry).is_empty());
}

#[test]
fn s17_with_the_policy_off_a_manifest_an_index_in_the_bin_lists_stays() {
    let s = soft_delete_store(7);
    let repo = s.repo("app");
    let amd64 = push_image(&repo, "amd64", "amd64");
    let index = push_index(&repo, Some("latest"), &[&amd64]);
    repo.delete_manifest("latest").unwrap();
    policy_off(&s, 7);

    // A delete would purge it: refused, naming the index in the bin.
    let err = refused(&s, &["app"], || repo.delete_manifest("amd64"));
    assert!(is_referenced(&err, "app", &amd64, &index), "{err:?}");
    // Purge by filter leaves it too, untagged and old as it is.
    repo.untag("amd64").unwrap();
    s.clock.set(day(2.0));
    let mut purge = PurgeOptions::new(["app:.*"]).unwrap();
    purge.untagged = true;
    let purged = s.registry.purge(&purge).unwrap();
    assert!(purged.repositories.is_empty(), "{purged:?}");
    assert_eq!(manifest_digests(&repo), set([&amd64]));
    // Once the index has expired it is gone, and the manifest can go.
    s.clock.set(day(7.0));
    assert_eq!(repo.delete_manifest(amd64.as_str()).unwrap(), [amd64]);
    assert!(fsck_problems(&s.registry).is_empty());
    // The expired index went before it, with its tag in the bin.
    assert_eq!(s.registry.run_now().unwrap(), report(day(7.0), 0, 0, 0));
}
