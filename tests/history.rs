//! Tag history (SPEC T1, T2): every move and deletion of a tag is recorded with its cause,
//! listed newest first; a tag can be reverted to a manifest its history names while that
//! manifest is live or in the recycle bin. History stays when the manifests it names are
//! purged, and goes when older than the history retention, by the retention clock.

mod common;

use common::{START, Store, event, fails_writing_nothing, push_image, refused};
use ocistore::manifest::OCI_MANIFEST;
use ocistore::{
    Digest, Error, Item, Locks, OnConflict, Page, PurgeOptions, Repository, Restore,
    RetentionPolicy, SoftDeletePolicy, TagCause, TagEvent, Timestamp,
};
use serde_json::json;

const DAY: u64 = 86_400;

fn soft_delete(s: &Store) {
    s.registry
        .set_soft_delete_policy(SoftDeletePolicy::enabled(7).unwrap())
        .unwrap();
}

fn now(s: &Store) -> Timestamp {
    s.registry.now()
}

/// Whether any event of `tag`'s history names `digest`, as `from` or `to`.
fn names(repo: &Repository, tag: &str, digest: &Digest) -> bool {
    repo.tag_history(tag)
        .unwrap()
        .iter()
        .any(|e| e.from.as_ref() == Some(digest) || e.to.as_ref() == Some(digest))
}

/// Pushes a referrer of `subject` (an artifact with the given config) under `reference`.
fn push_referrer(repo: &Repository, reference: &str, subject: &Digest, seed: &str) -> Digest {
    let config = repo.put_blob_sha256(format!("sig config {seed}")).unwrap();
    let size = format!("sig config {seed}").len();
    let subject_size = repo.pull(subject.as_str()).unwrap().body.len();
    let body = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": size},
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_size},
    });
    repo.push_manifest(reference, OCI_MANIFEST, &serde_json::to_vec(&body).unwrap())
        .unwrap()
        .digest
}

// ---------------------------------------------------------------------------------------------
// T1: what is recorded

#[test]
fn t1_push_of_a_new_tag_records_push_from_nothing_at_the_clock_time() {
    let s = Store::new();
    let repo = s.repo("app");
    s.advance(90);
    let at = now(&s);
    let a = push_image(&repo, "v1", "a");
    assert_eq!(
        repo.tag_history("v1").unwrap(),
        [event("v1", None, Some(&a), at, TagCause::Push)]
    );
    assert_eq!(at, Timestamp::from_nanos(START.as_nanos() + 90_000_000_000));
}

#[test]
fn t1_push_that_moves_a_tag_records_from_and_to() {
    let s = Store::new();
    let repo = s.repo("app");
    let a = push_image(&repo, "v1", "a");
    s.advance(60);
    let moved = now(&s);
    let b = push_image(&repo, "v1", "b");
    assert_eq!(
        repo.tag_history("v1").unwrap(),
        [
            event("v1", Some(&a), Some(&b), moved, TagCause::Push),
            event("v1", None, Some(&a), START, TagCause::Push),
        ]
    );
}

#[test]
fn t1_repository_tag_records_push_for_a_new_tag_and_for_a_move() {
    let s = Store::new();
    let repo = s.repo("app");
    let a = push_image(&repo, "v1", "a");
    let b = push_image(&repo, "v2", "b");
    s.advance(10);
    let t1 = now(&s);
    repo.tag("stable", &a).unwrap();
    s.advance(10);
    let t2 = now(&s);
    repo.tag("stable", &b).unwrap();
    assert_eq!(
        repo.tag_history("stable").unwrap(),
        [
            event("stable", Some(&a), Some(&b), t2, TagCause::Push),
            event("stable", None, Some(&a), t1, TagCause::Push),
        ]
    );
    // The tags it did not touch have only their own push.
    assert_eq!(repo.tag_history("v1").unwrap().len(), 1);
    assert_eq!(repo.tag_history("v2").unwrap().len(), 1);
}

#[test]
fn t1_pointing_a_tag_at_the_manifest_it_already_names_records_nothing() {
    let s = Store::new();
    let repo = s.repo("app");
    let a = push_image(&repo, "v1", "a");
    s.advance(10);
    repo.tag("v1", &a).unwrap();
    push_image(&repo, "v1", "a"); // the same bytes again
    assert_eq!(repo.tag_history("v1").unwrap().len(), 1);
}

#[test]
fn t1_untag_records_untag_with_the_policy_off_and_on() {
    let s = Store::new();
    let repo = s.repo("app");
    let a = push_image(&repo, "off", "a");
    repo.tag("on", &a).unwrap();
    s.advance(5);
    let t_off = now(&s);
    repo.untag("off").unwrap();
    soft_delete(&s);
    s.advance(5);
    let t_on = now(&s);
    repo.untag("on").unwrap();
    assert_eq!(
        repo.tag_history("off").unwrap()[0],
        event("off", Some(&a), None, t_off, TagCause::Untag)
    );
    assert_eq!(
        repo.tag_history("on").unwrap()[0],
        event("on", Some(&a), None, t_on, TagCause::Untag)
    );
}

#[test]
fn t1_delete_by_tag_records_delete_for_every_tag_of_the_manifest() {
    let s = Store::new();
    soft_delete(&s);
    let repo = s.repo("app");
    let a = push_image(&repo, "v1", "a");
    repo.tag("latest", &a).unwrap();
    let b = push_image(&repo, "other", "b");
    s.advance(30);
    let at = now(&s);
    repo.delete_manifest("v1").unwrap();
    for tag in ["v1", "latest"] {
        let history = repo.tag_history(tag).unwrap();
        assert_eq!(history[0], event(tag, Some(&a), None, at, TagCause::Delete));
        assert_eq!(history.len(), 2, "{tag}: {history:?}");
    }
    // A tag of another manifest is untouched.
    assert_eq!(
        repo.tag_history("other").unwrap(),
        [event("other", None, Some(&b), START, TagCause::Push)]
    );
}

#[test]
fn t1_delete_by_digest_records_delete() {
    let s = Store::new();
    soft_delete(&s);
    let repo = s.repo("app");
    let a = push_image(&repo, "v1", "a");
    s.advance(30);
    let at = now(&s);
    repo.delete_manifest(a.as_str()).unwrap();
    assert_eq!(
        repo.tag_history("v1").unwrap()[0],
        event("v1", Some(&a), None, at, TagCause::Delete)
    );
}

#[test]
fn t1_deleting_a_subject_records_delete_for_the_tags_of_its_referrers() {
    let s = Store::new();
    soft_delete(&s);
    let repo = s.repo("app");
    let subject = push_image(&repo, "v1", "a");
    let sig = push_referrer(&repo, "v1-sig", &subject, "a");
    s.advance(30);
    let at = now(&s);
    repo.delete_manifest("v1").unwrap();
    assert_eq!(
        repo.tag_history("v1-sig").unwrap()[0],
        event("v1-sig", Some(&sig), None, at, TagCause::Delete)
    );
}

#[test]
fn t1_delete_repository_records_delete_for_every_tag() {
    let s = Store::new();
    soft_delete(&s);
    let repo = s.repo("app");
    let a = push_image(&repo, "v1", "a");
    let b = push_image(&repo, "v2", "b");
    repo.tag("latest", &b).unwrap();
    s.advance(30);
    let at = now(&s);
    s.registry.delete_repository("app").unwrap();
    for (tag, digest) in [("v1", &a), ("v2", &b), ("latest", &b)] {
        assert_eq!(
            repo.tag_history(tag).unwrap()[0],
            event(tag, Some(digest), None, at, TagCause::Delete)
        );
    }
}

#[test]
fn t1_restore_with_a_tag_records_restore() {
    let s = Store::new();
    soft_delete(&s);
    let repo = s.repo("app");
    let a = push_image(&repo, "v1", "a");
    let b = push_image(&repo, "v2", "b");
    repo.delete_manifest("v1").unwrap();
    repo.delete_manifest("v2").unwrap();
    s.advance(60);
    let t1 = now(&s);
    repo.restore(Restore::Tag("v1"), OnConflict::Refuse)
        .unwrap();
    s.advance(60);
    let t2 = now(&s);
    // Restore of a digest under a tag it never carried.
    repo.restore(Restore::TagAndDigest("renamed", &b), OnConflict::Refuse)
        .unwrap();
    assert_eq!(
        repo.tag_history("v1").unwrap()[0],
        event("v1", None, Some(&a), t1, TagCause::Restore)
    );
    assert_eq!(
        repo.tag_history("renamed").unwrap(),
        [event("renamed", None, Some(&b), t2, TagCause::Restore)]
    );
    // An untagged restore moves no tag, so it records nothing.
    let c = push_image(&repo, "v3", "c");
    repo.delete_manifest("v3").unwrap();
    let before = repo.tag_history("v3").unwrap();
    repo.restore(Restore::Digest(&c), OnConflict::Refuse)
        .unwrap();
    assert_eq!(repo.tag_history("v3").unwrap(), before);
}

#[test]
fn t1_forced_restore_records_the_overwritten_tag_as_restore_to_nothing() {
    for enabled in [true, false] {
        let s = Store::new();
        let repo = s.repo("app");
        let a = push_image(&repo, "latest", "a");
        soft_delete(&s);
        repo.delete_manifest("latest").unwrap();
        if !enabled {
            // Turning the policy off keeps the tombstone restorable (S15).
            s.registry
                .set_soft_delete_policy(SoftDeletePolicy::default())
                .unwrap();
        }
        let b = push_image(&repo, "latest", "b");
        s.advance(60);
        let at = now(&s);
        repo.restore(Restore::TagAndDigest("latest", &a), OnConflict::MoveTag)
            .unwrap();
        let history = repo.tag_history("latest").unwrap();
        assert_eq!(
            history[..2],
            [
                event("latest", None, Some(&a), at, TagCause::Restore),
                event("latest", Some(&b), None, at, TagCause::Restore),
            ],
            "policy enabled: {enabled}"
        );
        assert_eq!(repo.resolve("latest").unwrap(), a);
    }
}

#[test]
fn t1_history_is_newest_first_and_orders_events_at_the_same_time() {
    let s = Store::new();
    let repo = s.repo("app");
    let a = push_image(&repo, "x", "a");
    let b = push_image(&repo, "y", "b");
    let c = push_image(&repo, "z", "c");
    s.advance(1);
    let at = now(&s);
    // One batch reads the clock once: three moves at the same time.
    s.registry
        .batch(|batch| {
            batch.tag(&repo, "t", &a)?;
            batch.tag(&repo, "t", &b)?;
            batch.tag(&repo, "t", &c)?;
            batch.untag(&repo, "t")
        })
        .unwrap();
    s.advance(1);
    let later = now(&s);
    repo.tag("t", &b).unwrap();
    assert_eq!(
        repo.tag_history("t").unwrap(),
        [
            event("t", None, Some(&b), later, TagCause::Push),
            event("t", Some(&c), None, at, TagCause::Untag),
            event("t", Some(&b), Some(&c), at, TagCause::Push),
            event("t", Some(&a), Some(&b), at, TagCause::Push),
            event("t", None, Some(&a), at, TagCause::Push),
        ]
    );
}

#[test]
fn t1_history_of_a_tag_that_never_existed_is_empty() {
    let s = Store::new();
    let repo = s.repo("app");
    assert!(repo.tag_history("v1").unwrap().is_empty());
    push_image(&repo, "v1", "a");
    // Neither a name sharing a prefix, nor the same name in another repository.
    assert!(repo.tag_history("v").unwrap().is_empty());
    assert!(repo.tag_history("v10").unwrap().is_empty());
    assert!(s.repo("app2").tag_history("v1").unwrap().is_empty());
    assert!(s.repo("ap").tag_history("v1").unwrap().is_empty());
}

#[test]
fn t1_history_is_kept_per_repository() {
    let s = Store::new();
    let one = s.repo("one");
    let two = s.repo("two");
    let a = push_image(&one, "v1", "a");
    let b = push_image(&two, "v1", "b");
    one.untag("v1").unwrap();
    assert_eq!(
        two.tag_history("v1").unwrap(),
        [event("v1", None, Some(&b), START, TagCause::Push)]
    );
    assert_eq!(one.tag_history("v1").unwrap().len(), 2);
    assert!(names(&one, "v1", &a));
}

#[test]
fn t1_an_invalid_tag_is_invalid_tag() {
    let s = Store::new();
    let repo = s.repo("app");
    let a = push_image(&repo, "v1", "a");
    let long = "a".repeat(129);
    for bad in ["", "-v1", ".v1", "v1:latest", "v 1", "ü", long.as_str()] {
        match repo.tag_history(bad) {
            Err(Error::InvalidTag { tag }) => assert_eq!(tag, bad),
            other => panic!("tag_history({bad:?}): {other:?}"),
        }
        match repo.revert_tag(bad, &a, OnConflict::MoveTag) {
            Err(Error::InvalidTag { tag }) => assert_eq!(tag, bad),
            other => panic!("revert_tag({bad:?}): {other:?}"),
        }
    }
    // The longest valid tag works.
    assert!(repo.tag_history(&"a".repeat(128)).unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// T2: revert

#[test]
fn t2_revert_to_a_live_manifest() {
    let s = Store::new();
    let repo = s.repo("app");
    let a = push_image(&repo, "v1", "a");
    push_image(&repo, "v1", "b");
    repo.untag("v1").unwrap();
    s.advance(60);
    let at = now(&s);
    repo.revert_tag("v1", &a, OnConflict::Refuse).unwrap();
    assert_eq!(repo.resolve("v1").unwrap(), a);
    assert_eq!(
        repo.tag_history("v1").unwrap()[0],
        event("v1", None, Some(&a), at, TagCause::Restore)
    );
    // Reverting to where it points already changes nothing.
    let before = repo.tag_history("v1").unwrap();
    repo.revert_tag("v1", &a, OnConflict::Refuse).unwrap();
    assert_eq!(repo.tag_history("v1").unwrap(), before);
}

#[test]
fn t2_revert_to_a_manifest_in_the_recycle_bin_restores_it() {
    let s = Store::new();
    soft_delete(&s);
    let repo = s.repo("app");
    let a = push_image(&repo, "v1", "a");
    repo.tag("other", &a).unwrap();
    repo.delete_manifest("v1").unwrap();
    assert_eq!(repo.deleted_manifests().unwrap().len(), 1);
    s.advance(DAY);
    repo.revert_tag("v1", &a, OnConflict::Refuse).unwrap();
    assert_eq!(repo.resolve("v1").unwrap(), a);
    assert_eq!(repo.pull("v1").unwrap().digest, a);
    assert!(repo.deleted_manifests().unwrap().is_empty());
    // Exactly one tag comes back (S8): v1 left the bin, "other" stays there.
    let binned: Vec<_> = repo
        .deleted_tags(None)
        .unwrap()
        .into_iter()
        .map(|t| t.tag)
        .collect();
    assert_eq!(binned, ["other"]);
    assert!(repo.resolve("other").is_err());
}

#[test]
fn t2_revert_to_a_digest_the_tag_never_held_is_not_in_history() {
    let s = Store::new();
    let repo = s.repo("app");
    let a = push_image(&repo, "v1", "a");
    let b = push_image(&repo, "v2", "b");
    let nowhere = Digest::parse(&format!("sha256:{}", "0".repeat(64))).unwrap();
    for (tag, digest) in [("v1", &b), ("v1", &nowhere), ("never", &a)] {
        match repo.revert_tag(tag, digest, OnConflict::MoveTag) {
            Err(Error::NotInHistory {
                repository,
                tag: t,
                digest: d,
            }) => {
                assert_eq!((repository.as_str(), t.as_str(), &d), ("app", tag, digest));
            }
            other => panic!("revert_tag({tag}, {digest}): {other:?}"),
        }
    }
    assert_eq!(repo.resolve("v1").unwrap(), a);
    assert_eq!(repo.resolve("v2").unwrap(), b);
    assert!(repo.resolve("never").is_err());
    assert_eq!(repo.tag_history("v1").unwrap().len(), 1);
}

#[test]
fn t2_revert_onto_a_tag_live_elsewhere_is_a_conflict_without_force() {
    let s = Store::new();
    soft_delete(&s);
    let repo = s.repo("app");
    let a = push_image(&repo, "v1", "a");
    let b = push_image(&repo, "v1", "b");
    let before = repo.tag_history("v1").unwrap();
    match repo.revert_tag("v1", &a, OnConflict::Refuse) {
        Err(Error::TagConflict { tag, digest, .. }) => {
            assert_eq!((tag.as_str(), &digest), ("v1", &b));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(repo.resolve("v1").unwrap(), b);
    assert_eq!(repo.tag_history("v1").unwrap(), before);
    assert!(repo.deleted_tags(None).unwrap().is_empty());

    // Also when the manifest to revert to is in the bin: it stays there.
    repo.delete_manifest(a.as_str()).unwrap();
    assert!(matches!(
        repo.revert_tag("v1", &a, OnConflict::Refuse),
        Err(Error::TagConflict { .. })
    ));
    assert_eq!(repo.deleted_manifests().unwrap()[0].digest, a);
}

#[test]
fn t2_forced_revert_moves_the_tag_and_bins_the_overwritten_one() {
    let s = Store::new();
    soft_delete(&s);
    let repo = s.repo("app");
    let a = push_image(&repo, "v1", "a");
    let b = push_image(&repo, "v1", "b");
    s.advance(60);
    let at = now(&s);
    repo.revert_tag("v1", &a, OnConflict::MoveTag).unwrap();
    assert_eq!(repo.resolve("v1").unwrap(), a);
    // b stays live, untagged; the tag it lost is in the bin.
    assert!(repo.manifest(b.as_str()).unwrap().tags.is_empty());
    let binned = repo.deleted_tags(Some("v1")).unwrap();
    assert_eq!(binned.len(), 1);
    assert_eq!((&binned[0].digest, binned[0].deleted_at), (&b, at));
    assert_eq!(
        repo.tag_history("v1").unwrap()[..2],
        [
            event("v1", None, Some(&a), at, TagCause::Restore),
            event("v1", Some(&b), None, at, TagCause::Restore),
        ]
    );
    // And back again, out of the recycle bin's point of view the same.
    repo.revert_tag("v1", &b, OnConflict::MoveTag).unwrap();
    assert_eq!(repo.resolve("v1").unwrap(), b);
}

#[test]
fn t2_forced_revert_to_a_manifest_in_the_bin_over_a_live_tag() {
    let s = Store::new();
    soft_delete(&s);
    let repo = s.repo("app");
    let a = push_image(&repo, "v1", "a");
    repo.delete_manifest("v1").unwrap();
    let b = push_image(&repo, "v1", "b");
    repo.revert_tag("v1", &a, OnConflict::MoveTag).unwrap();
    assert_eq!(repo.resolve("v1").unwrap(), a);
    assert!(repo.deleted_manifests().unwrap().is_empty());
    let binned = repo.deleted_tags(Some("v1")).unwrap();
    assert_eq!(binned.len(), 1);
    assert_eq!(binned[0].digest, b);
}

#[test]
fn t2_revert_follows_the_restore_rules_for_referrers() {
    let s = Store::new();
    soft_delete(&s);
    let repo = s.repo("app");
    let subject = push_image(&repo, "v1", "a");
    let sig = push_referrer(&repo, "v1-sig", &subject, "a");
    repo.delete_manifest("v1").unwrap(); // takes the referrer along (D5)
    match repo.revert_tag("v1-sig", &sig, OnConflict::Refuse) {
        Err(Error::SubjectDeleted { subject: d, .. }) => assert_eq!(d, subject),
        other => panic!("{other:?}"),
    }
    assert_eq!(repo.deleted_manifests().unwrap().len(), 2);
    repo.revert_tag("v1", &subject, OnConflict::Refuse).unwrap();
    repo.revert_tag("v1-sig", &sig, OnConflict::Refuse).unwrap();
    assert_eq!(repo.resolve("v1-sig").unwrap(), sig);
}

#[test]
fn t2_revert_inside_a_deleted_repository_brings_it_back() {
    let s = Store::new();
    soft_delete(&s);
    let repo = s.repo("app");
    let a = push_image(&repo, "v1", "a");
    push_image(&repo, "v2", "b");
    s.registry.delete_repository("app").unwrap();
    assert!(s.registry.repositories(&Page::all()).unwrap().is_empty());
    repo.revert_tag("v1", &a, OnConflict::Refuse).unwrap();
    assert_eq!(s.registry.repositories(&Page::all()).unwrap(), ["app"]);
    let tags: Vec<_> = repo
        .tags(&Page::all())
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(tags, ["v1"]);
}

/// Builds: v1 pushed onto a, moved to b, then to c; a deleted by digest (untagged). Returns
/// (a, b, c).
fn moved_twice(s: &Store, repo: &Repository) -> (Digest, Digest, Digest) {
    let a = push_image(repo, "v1", "a");
    s.advance(1);
    let b = push_image(repo, "v1", "b");
    s.advance(1);
    let c = push_image(repo, "v1", "c");
    s.advance(1);
    repo.delete_manifest(a.as_str()).unwrap();
    (a, b, c)
}

/// Checks that the history of v1 (built by [`moved_twice`]) still names purged manifest
/// `gone`, unchanged by its purge, and that a revert to it is `ManifestUnknown`, writing nothing.
fn assert_history_kept(s: &Store, repo: &Repository, gone: &Digest, before: &[TagEvent]) {
    assert!(repo.manifest(gone.as_str()).is_err());
    assert!(repo.deleted_manifests().unwrap().is_empty());
    assert_eq!(repo.tag_history("v1").unwrap(), before);
    assert!(names(repo, "v1", gone));
    let err = refused(s, &["app"], || {
        repo.revert_tag("v1", gone, OnConflict::MoveTag)
    });
    assert!(
        common::is_manifest_unknown(&err, "app", gone.as_str()),
        "{err:?}"
    );
}

#[test]
fn t2_revert_to_a_purged_manifest_is_manifest_unknown() {
    let s = Store::new();
    let repo = s.repo("app");
    let a = push_image(&repo, "v1", "a");
    push_image(&repo, "v1", "b");
    // With the policy off, the delete purges a at once; the event naming it stays.
    repo.delete_manifest(a.as_str()).unwrap();
    let before = repo.tag_history("v1").unwrap();
    assert_history_kept(&s, &repo, &a, &before);
    // Pushed again, it is live again: the revert works.
    let again = push_image(&repo, "other", "a");
    assert_eq!(again, a);
    repo.revert_tag("v1", &a, OnConflict::MoveTag).unwrap();
    assert_eq!(repo.resolve("v1").unwrap(), a);
}

#[test]
fn t2_purge_by_hand_keeps_the_history() {
    let s = Store::new();
    soft_delete(&s);
    let repo = s.repo("app");
    let (a, _, _) = moved_twice(&s, &repo);
    let before = repo.tag_history("v1").unwrap();
    repo.purge_deleted_manifest(&a).unwrap();
    assert_history_kept(&s, &repo, &a, &before);
}

#[test]
fn t2_autopurge_keeps_the_history_of_the_manifests_it_purges() {
    let s = Store::new();
    soft_delete(&s);
    let repo = s.repo("app");
    let (a, _, _) = moved_twice(&s, &repo);
    let before = repo.tag_history("v1").unwrap();
    s.advance(7 * DAY - 1);
    assert_eq!(s.registry.run_now().unwrap().manifests, 0);
    s.advance(1);
    let report = s.registry.run_now().unwrap();
    assert_eq!((report.manifests, report.history_events), (1, 0));
    assert_history_kept(&s, &repo, &a, &before);
}

#[test]
fn t2_a_delete_with_the_policy_off_keeps_the_history() {
    let s = Store::new();
    let repo = s.repo("app");
    let (a, b, c) = moved_twice(&s, &repo);
    let before = repo.tag_history("v1").unwrap();
    assert_history_kept(&s, &repo, &a, &before);
    // Deleting by tag with the policy off records the deletion; c is purged, its events stay.
    let at = now(&s);
    repo.delete_manifest("v1").unwrap();
    let history = repo.tag_history("v1").unwrap();
    assert_eq!(
        history[0],
        event("v1", Some(&c), None, at, TagCause::Delete)
    );
    assert_eq!(history[1..], before[..]);
    assert_history_kept(&s, &repo, &c, &history);
    // b, which the tag left, is still live: the tag can go back to it.
    repo.revert_tag("v1", &b, OnConflict::Refuse).unwrap();
    assert_eq!(repo.resolve("v1").unwrap(), b);
}

#[test]
fn t2_purge_by_filter_keeps_the_history() {
    for enabled in [false, true] {
        let s = Store::new();
        if enabled {
            soft_delete(&s);
        }
        let repo = s.repo("app");
        let a = push_image(&repo, "v1", "a");
        s.advance(2 * DAY);
        let mut options = PurgeOptions::new(["app:.*"]).unwrap();
        options.untagged = true;
        let at = now(&s);
        s.registry.purge(&options).unwrap();
        assert!(repo.manifest(a.as_str()).is_err());
        if enabled {
            repo.purge_deleted_manifest(&a).unwrap();
        }
        assert_eq!(
            repo.tag_history("v1").unwrap(),
            [
                event("v1", Some(&a), None, at, TagCause::Purge),
                event("v1", None, Some(&a), START, TagCause::Push),
            ],
            "{enabled}"
        );
        assert!(matches!(
            repo.revert_tag("v1", &a, OnConflict::Refuse),
            Err(Error::ManifestUnknown { .. })
        ));
    }
}

#[test]
fn t2_the_retention_policy_keeps_the_history() {
    let s = Store::new();
    s.registry
        .set_retention_policy(RetentionPolicy::enabled(1).unwrap())
        .unwrap();
    let repo = s.repo("app");
    let a = push_image(&repo, "v1", "a");
    repo.untag("v1").unwrap();
    s.advance(DAY);
    assert_eq!(s.registry.run_now().unwrap().untagged_deleted, 1);
    assert!(repo.manifest(a.as_str()).is_err());
    assert_eq!(repo.tag_history("v1").unwrap().len(), 2);
    assert!(matches!(
        repo.revert_tag("v1", &a, OnConflict::Refuse),
        Err(Error::ManifestUnknown { .. })
    ));
}

#[test]
fn t2_purging_a_repository_takes_its_history() {
    // With the policy off (delete_repository purges) and on (autopurge of the repository).
    for enabled in [false, true] {
        let s = Store::new();
        if enabled {
            soft_delete(&s);
        }
        let repo = s.repo("app");
        let a = push_image(&repo, "v1", "a");
        let other = s.repo("other");
        push_image(&other, "v1", "o");
        s.registry.delete_repository("app").unwrap();
        if enabled {
            assert!(names(&repo, "v1", &a));
            s.advance(7 * DAY);
            assert_eq!(s.registry.run_now().unwrap().repositories, 1);
        }
        assert!(repo.tag_history("v1").unwrap().is_empty(), "{enabled}");
        assert!(matches!(
            repo.revert_tag("v1", &a, OnConflict::MoveTag),
            Err(Error::NotInHistory { .. })
        ));
        // Another repository's history of the same tag name stays.
        assert_eq!(other.tag_history("v1").unwrap().len(), 1);
    }
}

#[test]
fn t2_purging_bin_tags_keeps_the_history() {
    let s = Store::new();
    soft_delete(&s);
    let repo = s.repo("app");
    let a = push_image(&repo, "v1", "a");
    repo.untag("v1").unwrap();
    assert_eq!(repo.purge_deleted_tags("v1").unwrap(), 1);
    // The manifest is live, so its history stays and the tag can be reverted to it.
    assert_eq!(repo.tag_history("v1").unwrap().len(), 2);
    repo.revert_tag("v1", &a, OnConflict::Refuse).unwrap();
    assert_eq!(repo.resolve("v1").unwrap(), a);
}

#[test]
fn t2_history_survives_reopen() {
    let s = Store::new();
    soft_delete(&s);
    let (a, history) = {
        let repo = s.repo("app");
        let a = push_image(&repo, "v1", "a");
        s.advance(10);
        push_image(&repo, "v1", "b");
        s.advance(10);
        repo.delete_manifest("v1").unwrap();
        (a, repo.tag_history("v1").unwrap())
    };
    assert_eq!(history.len(), 3);
    let s = s.reopen();
    let repo = s.repo("app");
    assert_eq!(repo.tag_history("v1").unwrap(), history);
    s.advance(10);
    repo.revert_tag("v1", &a, OnConflict::Refuse).unwrap();
    assert_eq!(repo.resolve("v1").unwrap(), a);
    assert_eq!(repo.tag_history("v1").unwrap().len(), 4);
    // The event sequence carries on after a reopen: newest is still first.
    assert_eq!(repo.tag_history("v1").unwrap()[0].to.as_ref(), Some(&a));
}

#[test]
fn t2_revert_is_refused_by_locks() {
    let s = Store::new();
    soft_delete(&s);
    let repo = s.repo("app");
    let a = push_image(&repo, "v1", "a");
    let b = push_image(&repo, "v1", "b");
    let c = push_image(&repo, "v2", "c");
    repo.tag("v2", &a).unwrap();
    repo.delete_manifest(c.as_str()).unwrap();
    // A write-locked tag does not move, to a live manifest or out of the bin, forced or not.
    repo.set_locks(&Item::Tag("v1".into()), Locks::READ_ONLY)
        .unwrap();
    repo.set_locks(&Item::Tag("v2".into()), Locks::READ_ONLY)
        .unwrap();
    for (tag, digest) in [("v1", &a), ("v2", &c)] {
        for on_conflict in [OnConflict::Refuse, OnConflict::MoveTag] {
            let err = refused(&s, &["app"], || repo.revert_tag(tag, digest, on_conflict));
            assert!(
                matches!(&err, Error::Locked { item: Item::Tag(t), .. } if t == tag),
                "{err:?}"
            );
        }
    }
    repo.set_locks(&Item::Tag("v1".into()), Locks::UNLOCKED)
        .unwrap();
    repo.set_locks(&Item::Tag("v2".into()), Locks::UNLOCKED)
        .unwrap();
    // A write-locked repository takes no revert either.
    repo.set_locks(&Item::Repository, Locks::READ_ONLY).unwrap();
    for (tag, digest) in [("v1", &a), ("v2", &c)] {
        let err = refused(&s, &["app"], || {
            repo.revert_tag(tag, digest, OnConflict::MoveTag)
        });
        assert!(
            matches!(
                &err,
                Error::Locked {
                    item: Item::Repository,
                    ..
                }
            ),
            "{err:?}"
        );
    }
    repo.set_locks(&Item::Repository, Locks::UNLOCKED).unwrap();
    repo.revert_tag("v1", &a, OnConflict::MoveTag).unwrap();
    repo.revert_tag("v2", &c, OnConflict::MoveTag).unwrap();
    assert_eq!(
        (repo.resolve("v1").unwrap(), repo.resolve("v2").unwrap()),
        (a, c)
    );
    // b, which v1 left, keeps no tag; v1's overwritten entry is in the bin.
    assert!(repo.manifest(b.as_str()).unwrap().tags.is_empty());
    assert_eq!(repo.deleted_tags(Some("v1")).unwrap()[0].digest, b);
}

#[test]
fn t2_revert_in_a_batch_commits_with_the_batch() {
    let s = Store::new();
    let repo = s.repo("app");
    let a = push_image(&repo, "v1", "a");
    let b = push_image(&repo, "v1", "b");
    // A failing batch reverts nothing.
    let err = s
        .registry
        .batch(|batch| {
            batch.revert_tag(&repo, "v1", &a, OnConflict::MoveTag)?;
            batch.untag(&repo, "never")
        })
        .unwrap_err();
    assert!(matches!(err, Error::TagUnknown { .. }), "{err:?}");
    assert_eq!(repo.resolve("v1").unwrap(), b);
    s.registry
        .batch(|batch| {
            batch.revert_tag(&repo, "v1", &a, OnConflict::MoveTag)?;
            batch.revert_tag(&repo, "v1", &b, OnConflict::MoveTag)
        })
        .unwrap();
    assert_eq!(repo.resolve("v1").unwrap(), b);
    assert_eq!(repo.tag_history("v1").unwrap().len(), 6);
}

// ---------------------------------------------------------------------------------------------
// T2: the history retention

/// The history of `tag` as (from, to) pairs, newest first.
fn moves(repo: &Repository, tag: &str) -> Vec<(Option<Digest>, Option<Digest>)> {
    let history = repo.tag_history(tag).unwrap();
    history.into_iter().map(|e| (e.from, e.to)).collect()
}

#[test]
fn t2_history_retention_is_90_days_by_default_and_removes_older_events_by_the_retention_clock() {
    let s = Store::new();
    assert_eq!(s.registry.history_retention_days().unwrap(), 90);
    let repo = s.repo("app");
    let a = push_image(&repo, "v1", "a");
    s.advance(DAY);
    let b = push_image(&repo, "v1", "b");
    push_image(&repo, "old", "c");
    // One day before the first event is 90 days old: nothing goes.
    s.advance(89 * DAY - 1);
    let report = s.registry.run_due().unwrap().expect("due");
    assert_eq!(report.history_events, 0);
    // At 90 days: the two events of that time go, the later one stays.
    s.advance(1);
    assert_eq!(s.registry.run_now().unwrap().history_events, 1);
    assert_eq!(moves(&repo, "v1"), [(Some(a.clone()), Some(b.clone()))]);
    assert_eq!(repo.tag_history("old").unwrap().len(), 1);
    // An entry gone from the history can no longer be reverted to.
    s.advance(DAY);
    let report = s.registry.run_due().unwrap().expect("due");
    assert_eq!(report.history_events, 2);
    assert!(repo.tag_history("v1").unwrap().is_empty());
    assert!(repo.tag_history("old").unwrap().is_empty());
    // The tags themselves stay.
    assert_eq!(repo.resolve("v1").unwrap(), b);
    assert!(matches!(
        repo.revert_tag("v1", &a, OnConflict::MoveTag),
        Err(Error::NotInHistory { .. })
    ));
}

#[test]
fn t2_history_retention_counts_from_each_event_whatever_its_manifest() {
    let s = Store::new();
    soft_delete(&s);
    s.registry.set_history_retention_days(1).unwrap();
    let repo = s.repo("app");
    let a = push_image(&repo, "v1", "a");
    let other = s.repo("other");
    push_image(&other, "v1", "o");
    s.advance(DAY / 2);
    repo.delete_manifest("v1").unwrap();
    s.advance(DAY / 2);
    // The pushes are a day old; the deletion and the bin are younger.
    assert_eq!(s.registry.run_now().unwrap().history_events, 2);
    assert_eq!(moves(&repo, "v1"), [(Some(a.clone()), None)]);
    assert!(other.tag_history("v1").unwrap().is_empty());
    // The revert goes by the history, the restore by the bin.
    repo.revert_tag("v1", &a, OnConflict::Refuse).unwrap();
    assert_eq!(repo.resolve("v1").unwrap(), a);
    s.advance(DAY);
    assert_eq!(s.registry.run_now().unwrap().history_events, 2);
    assert!(repo.tag_history("v1").unwrap().is_empty());
}

#[test]
fn t2_history_retention_of_zero_keeps_history_forever() {
    let s = Store::new();
    s.registry.set_history_retention_days(0).unwrap();
    let repo = s.repo("app");
    push_image(&repo, "v1", "a");
    push_image(&repo, "v1", "b");
    s.advance(3650 * DAY);
    assert_eq!(s.registry.run_now().unwrap().history_events, 0);
    assert_eq!(repo.tag_history("v1").unwrap().len(), 2);
    // Set back to a retention, the next run removes what is older.
    s.registry.set_history_retention_days(3650).unwrap();
    assert_eq!(s.registry.run_now().unwrap().history_events, 2);
}

#[test]
fn t2_an_invalid_history_retention_is_refused_writing_nothing() {
    let s = Store::new();
    s.registry.set_history_retention_days(30).unwrap();
    push_image(&s.repo("app"), "v1", "a");
    for days in [3651, u32::MAX] {
        match fails_writing_nothing(&s.registry, || s.registry.set_history_retention_days(days)) {
            Error::InvalidSetting { setting, value, .. } => {
                assert_eq!(
                    (setting, value),
                    ("history retention days", days.to_string())
                );
            }
            other => panic!("{days}: {other:?}"),
        }
        let err = refused(&s, &["app"], || s.registry.set_history_retention_days(days));
        assert!(matches!(err, Error::InvalidSetting { .. }));
    }
    assert_eq!(s.registry.history_retention_days().unwrap(), 30);
    s.registry.set_history_retention_days(3650).unwrap();
    assert_eq!(s.registry.history_retention_days().unwrap(), 3650);
}

#[test]
fn t2_history_retention_is_persisted_across_reopen() {
    let s = Store::new();
    s.registry.set_history_retention_days(2).unwrap();
    push_image(&s.repo("app"), "v1", "a");
    let s = s.reopen();
    assert_eq!(s.registry.history_retention_days().unwrap(), 2);
    s.advance(2 * DAY);
    // The time index of the history survives the reopen too.
    assert_eq!(s.registry.run_now().unwrap().history_events, 1);
    let s = s.reopen();
    assert!(s.repo("app").tag_history("v1").unwrap().is_empty());
    s.registry.set_history_retention_days(0).unwrap();
    let s = s.reopen();
    assert_eq!(s.registry.history_retention_days().unwrap(), 0);
}
