//! Locks (SPEC L1, L2): `delete_enabled` and `write_enabled` on repositories, manifests and
//! tags. A refused call answers `Locked`, naming the item and the flag, and writes nothing:
//! neither the store nor its recycle bin and tag histories change. Deletes are tested with the
//! soft delete policy off and on.

mod common;

use std::fmt::Debug;

use common::{
    Store, blob_file, deleted_manifest_digests, fails_writing_nothing, manifest_digests, policy_on,
    push_image, push_referrer, push_untagged, state, tag_names, upload_image,
};
use ocistore::manifest::OCI_MANIFEST;
use ocistore::{
    Algorithm, Digest, Error, Item, Locks, OnConflict, Page, Repository, Restore, Result,
};

/// `write_enabled` false only: the item cannot change (nor go), whatever `delete_enabled`.
const WRITE_LOCKED: Locks = Locks::UNLOCKED.with_write_enabled(false);

// ---------------------------------------------------------------------------------------------
// Helpers (the ones shared with the other test files are in `common`)

/// A store, with the soft delete policy on when `soft`, whose repository `app` holds manifest
/// `a` tagged `v1` and `latest`, and manifest `b` tagged `v2`. Returns the store, `app`, `a`
/// and `b`.
fn app(soft: bool) -> (Store, Repository, Digest, Digest) {
    let s = Store::new();
    if soft {
        policy_on(&s, 7);
    }
    let repo = s.repo("app");
    let a = push_image(&repo, "v1", "a");
    repo.tag("latest", &a).unwrap();
    let b = push_image(&repo, "v2", "b");
    (s, repo, a, b)
}

fn tag(name: &str) -> Item {
    Item::Tag(name.to_owned())
}

fn manifest(digest: &Digest) -> Item {
    Item::Manifest(digest.clone())
}

/// How `Error::Locked` names a manifest.
fn manifest_item(digest: &Digest) -> String {
    format!("manifest {digest}")
}

/// Runs `call`, which a lock of repository `app` must refuse: checks that the error names
/// `item` and `lock`, and that nothing changed, the recycle bin and tag histories included.
fn refused_by_lock<T: Debug>(s: &Store, item: &str, lock: &str, call: impl FnOnce() -> Result<T>) {
    let before = state(&s.registry, &["app"]);
    let err = fails_writing_nothing(&s.registry, call);
    assert!(
        matches!(&err, Error::Locked { repository, item: i, lock: l }
            if repository == "app" && i.to_string() == item && *l == lock),
        "expected {item} locked by {lock}, got {err:?}"
    );
    assert_eq!(
        state(&s.registry, &["app"]),
        before,
        "bin or history changed"
    );
}

/// The flag `Error::Locked` names for a delete refused by `locks`.
fn delete_flag(locks: Locks) -> &'static str {
    if locks.write_enabled {
        "delete_enabled"
    } else {
        "write_enabled"
    }
}

/// The three kinds of locks that refuse a delete.
const DELETE_REFUSING: [Locks; 3] = [Locks::NO_DELETE, WRITE_LOCKED, Locks::READ_ONLY];

// ---------------------------------------------------------------------------------------------
// L1 — the flags, and deletes of locked items

#[test]
fn l1_every_item_is_unlocked_by_default() {
    let (_s, repo, a, _) = app(false);
    let unlocked = Locks::default();
    assert!(unlocked.delete_enabled && unlocked.write_enabled);
    assert!(unlocked.is_unlocked() && !Locks::NO_DELETE.is_unlocked());
    for item in [Item::Repository, manifest(&a), tag("v1")] {
        assert_eq!(repo.locks(&item).unwrap(), unlocked, "{item}");
    }
    assert!(repo.locked_items().unwrap().is_empty());
}

#[test]
fn l1_locks_set_are_read_back_and_listed_with_the_repository_first() {
    let (_s, repo, a, b) = app(false);
    repo.set_locks(&tag("v2"), Locks::NO_DELETE).unwrap();
    repo.set_locks(&manifest(&a), Locks::READ_ONLY).unwrap();
    repo.set_locks(&Item::Repository, WRITE_LOCKED).unwrap();

    assert_eq!(repo.locks(&tag("v2")).unwrap(), Locks::NO_DELETE);
    assert_eq!(repo.locks(&manifest(&a)).unwrap(), Locks::READ_ONLY);
    assert_eq!(repo.locks(&Item::Repository).unwrap(), WRITE_LOCKED);
    // Only what was locked: `b` and `v1` are not.
    assert_eq!(repo.locks(&manifest(&b)).unwrap(), Locks::UNLOCKED);
    assert_eq!(repo.locks(&tag("v1")).unwrap(), Locks::UNLOCKED);
    assert_eq!(
        repo.locked_items().unwrap(),
        [
            (Item::Repository, WRITE_LOCKED),
            (manifest(&a), Locks::READ_ONLY),
            (tag("v2"), Locks::NO_DELETE),
        ]
    );
}

#[test]
fn l1_untag_of_a_locked_tag_is_refused() {
    for soft in [false, true] {
        for locks in DELETE_REFUSING {
            let (s, repo, a, _) = app(soft);
            repo.set_locks(&tag("v1"), locks).unwrap();
            refused_by_lock(&s, "tag v1", delete_flag(locks), || repo.untag("v1"));
            assert_eq!(repo.resolve("v1").unwrap(), a);
            // Its neighbour is not locked.
            repo.untag("latest").unwrap();
        }
    }
}

#[test]
fn l1_the_error_names_the_repository_the_item_and_the_flag() {
    let (s, repo, _, _) = app(false);
    repo.set_locks(&tag("v1"), Locks::NO_DELETE).unwrap();
    let err = fails_writing_nothing(&s.registry, || repo.untag("v1"));
    assert_eq!(
        err.to_string(),
        "tag v1 of repository app is locked: delete_enabled is false"
    );
}

#[test]
fn l1_deleting_a_locked_manifest_by_tag_or_by_digest_is_refused() {
    for soft in [false, true] {
        for locks in DELETE_REFUSING {
            let (s, repo, a, b) = app(soft);
            repo.set_locks(&manifest(&a), locks).unwrap();
            let item = manifest_item(&a);
            for reference in ["v1", "latest", a.as_str()] {
                refused_by_lock(&s, &item, delete_flag(locks), || {
                    repo.delete_manifest(reference)
                });
            }
            // Another manifest of the repository is not locked.
            assert_eq!(repo.delete_manifest("v2").unwrap(), [b]);
        }
    }
}

#[test]
fn l1_deleting_a_manifest_one_of_whose_tags_is_locked_is_refused() {
    for soft in [false, true] {
        let (s, repo, a, _) = app(soft);
        repo.set_locks(&tag("latest"), Locks::NO_DELETE).unwrap();
        for reference in ["v1", a.as_str()] {
            refused_by_lock(&s, "tag latest", "delete_enabled", || {
                repo.delete_manifest(reference)
            });
        }
    }
}

#[test]
fn l1_deleting_a_manifest_whose_referrer_is_locked_is_refused() {
    for soft in [false, true] {
        let (s, repo, a, _) = app(soft);
        let sig = push_referrer(&repo, Some("a-sig"), &a, "sig");
        let sig_of_sig = push_referrer(&repo, None, &sig, "sig of sig");
        // The referrer of a referrer, then the referrer's tag, then the referrer itself.
        let locked = [
            (manifest(&sig_of_sig), manifest_item(&sig_of_sig)),
            (tag("a-sig"), "tag a-sig".to_owned()),
            (manifest(&sig), manifest_item(&sig)),
        ];
        for (item, named) in locked {
            repo.set_locks(&item, Locks::NO_DELETE).unwrap();
            refused_by_lock(&s, &named, "delete_enabled", || repo.delete_manifest("v1"));
            repo.set_locks(&item, Locks::UNLOCKED).unwrap();
        }
        repo.delete_manifest("v1").unwrap();
        assert!(!manifest_digests(&repo).contains(&sig_of_sig));
    }
}

#[test]
fn l1_deleting_a_repository_holding_a_locked_item_is_refused() {
    for soft in [false, true] {
        let (s, repo, a, _) = app(soft);
        let items = [
            (tag("v2"), "tag v2".to_owned()),
            (manifest(&a), manifest_item(&a)),
            (Item::Repository, "the repository".to_owned()),
        ];
        for (item, named) in items {
            for locks in DELETE_REFUSING {
                repo.set_locks(&item, locks).unwrap();
                refused_by_lock(&s, &named, delete_flag(locks), || {
                    s.registry.delete_repository("app")
                });
                repo.set_locks(&item, Locks::UNLOCKED).unwrap();
            }
        }
        s.registry.delete_repository("app").unwrap();
        assert!(s.registry.repositories(&Page::all()).unwrap().is_empty());
    }
}

#[test]
fn l1_a_repository_lock_covers_everything_in_it() {
    for soft in [false, true] {
        let (s, repo, a, _) = app(soft);
        let loose = push_untagged(&repo, "loose");
        repo.set_locks(&Item::Repository, Locks::NO_DELETE).unwrap();
        let named = "the repository";
        refused_by_lock(&s, named, "delete_enabled", || repo.untag("v2"));
        for reference in ["v1", a.as_str(), loose.as_str()] {
            refused_by_lock(&s, named, "delete_enabled", || {
                repo.delete_manifest(reference)
            });
        }
        // A delete lock does not stop pushes.
        push_image(&repo, "v3", "c");
        assert_eq!(tag_names(&repo), ["latest", "v1", "v2", "v3"]);
    }
}

#[test]
fn l1_unlocking_lets_the_delete_through() {
    for soft in [false, true] {
        let (s, repo, a, _) = app(soft);
        repo.set_locks(&manifest(&a), Locks::READ_ONLY).unwrap();
        refused_by_lock(&s, &manifest_item(&a), "write_enabled", || {
            repo.delete_manifest("v1")
        });

        repo.set_locks(&manifest(&a), Locks::UNLOCKED).unwrap();

        assert!(repo.locked_items().unwrap().is_empty());
        assert_eq!(
            repo.delete_manifest("v1").unwrap(),
            std::slice::from_ref(&a)
        );
        assert_eq!(deleted_manifest_digests(&repo).contains(&a), soft);
    }
}

#[test]
fn l1_locks_persist_across_reopen() {
    let (s, repo, a, _) = app(false);
    repo.set_locks(&tag("v2"), Locks::NO_DELETE).unwrap();
    repo.set_locks(&manifest(&a), WRITE_LOCKED).unwrap();
    let listed = repo.locked_items().unwrap();
    drop(repo);

    let s = s.reopen();

    let repo = s.repo("app");
    assert_eq!(repo.locked_items().unwrap(), listed);
    refused_by_lock(&s, "tag v2", "delete_enabled", || repo.untag("v2"));
    refused_by_lock(&s, &manifest_item(&a), "write_enabled", || {
        repo.delete_manifest("v1")
    });
}

#[test]
fn l1_locks_are_set_on_live_tags_only() {
    let (s, repo, _, _) = app(true);
    repo.untag("latest").unwrap(); // now in the bin
    for name in ["nope", "latest"] {
        let err =
            fails_writing_nothing(&s.registry, || repo.set_locks(&tag(name), Locks::NO_DELETE));
        assert!(
            matches!(&err, Error::TagUnknown { repository, tag }
                if repository == "app" && tag == name),
            "{name}: {err:?}"
        );
        // Nor are they read on anything else.
        assert!(matches!(
            repo.locks(&tag(name)),
            Err(Error::TagUnknown { .. })
        ));
    }
    let err = fails_writing_nothing(&s.registry, || {
        repo.set_locks(&tag("bad tag"), Locks::NO_DELETE)
    });
    assert!(
        matches!(&err, Error::InvalidTag { tag } if tag == "bad tag"),
        "{err:?}"
    );
}

#[test]
fn l1_locks_are_set_on_live_manifests_only() {
    let (s, repo, _, b) = app(true);
    repo.delete_manifest("v2").unwrap(); // `b` is in the bin
    let unknown = Algorithm::Sha256.digest(b"never pushed");
    for digest in [&unknown, &b] {
        let err = fails_writing_nothing(&s.registry, || {
            repo.set_locks(&manifest(digest), Locks::NO_DELETE)
        });
        assert!(
            matches!(&err, Error::ManifestUnknown { repository, reference }
                if repository == "app" && reference == digest.as_str()),
            "{err:?}"
        );
        assert!(matches!(
            repo.locks(&manifest(digest)),
            Err(Error::ManifestUnknown { .. })
        ));
    }
}

#[test]
fn l1_locks_are_set_on_live_repositories_only() {
    let (s, repo, _, _) = app(true);
    s.registry.delete_repository("app").unwrap(); // in the bin
    for name in ["app", "never-created"] {
        let repo = s.repo(name);
        let err = fails_writing_nothing(&s.registry, || {
            repo.set_locks(&Item::Repository, Locks::READ_ONLY)
        });
        assert!(
            matches!(&err, Error::RepositoryUnknown { name: n } if n == name),
            "{name}: {err:?}"
        );
        let err = repo.locks(&Item::Repository).unwrap_err();
        assert!(matches!(&err, Error::RepositoryUnknown { .. }), "{err:?}");
    }
    assert!(repo.locked_items().unwrap().is_empty());
}

#[test]
fn l1_tombstones_carry_no_lock_so_purge_by_hand_is_not_refused() {
    let (_s, repo, a, b) = app(true);
    repo.untag("latest").unwrap();
    repo.tag("latest", &a).unwrap(); // live again, while its deletion is in the bin
    repo.delete_manifest("v2").unwrap();
    repo.set_locks(&tag("latest"), Locks::READ_ONLY).unwrap();
    repo.set_locks(&Item::Repository, Locks::READ_ONLY).unwrap();

    repo.purge_deleted_manifest(&b).unwrap();
    assert_eq!(repo.purge_deleted_tags("latest").unwrap(), 1);

    assert!(repo.deleted_manifests().unwrap().is_empty());
    assert!(repo.deleted_tags(None).unwrap().is_empty());
    assert_eq!(repo.resolve("latest").unwrap(), a);
    assert_eq!(repo.locks(&tag("latest")).unwrap(), Locks::READ_ONLY);
}

#[test]
fn l1_autopurge_is_not_refused_by_locks() {
    let (s, repo, a, _) = app(true);
    repo.untag("latest").unwrap();
    repo.delete_manifest("v2").unwrap();
    repo.set_locks(&Item::Repository, Locks::READ_ONLY).unwrap();
    repo.set_locks(&tag("v1"), Locks::READ_ONLY).unwrap();
    s.advance(7 * 86_400);

    let report = s.registry.run_now().unwrap();

    assert_eq!((report.manifests, report.tags), (1, 2)); // b, with v2; and latest
    assert!(repo.deleted_manifests().unwrap().is_empty());
    assert!(repo.deleted_tags(None).unwrap().is_empty());
    assert_eq!(manifest_digests(&repo).into_iter().collect::<Vec<_>>(), [a]);
}

// ---------------------------------------------------------------------------------------------
// L2 — write locks: tags that cannot move, repositories that take no push

#[test]
fn l2_a_write_locked_tag_cannot_be_moved_by_a_push() {
    let (s, repo, a, _) = app(false);
    repo.set_locks(&tag("v1"), WRITE_LOCKED).unwrap();
    let body = upload_image(&repo, b"config c", &[b"layer c"]);
    refused_by_lock(&s, "tag v1", "write_enabled", || {
        repo.push_manifest("v1", OCI_MANIFEST, &body)
    });
    assert_eq!(repo.resolve("v1").unwrap(), a);
    // The same push under an unlocked tag goes through.
    repo.push_manifest("v3", OCI_MANIFEST, &body).unwrap();
}

#[test]
fn l2_a_write_locked_tag_cannot_be_moved_by_tag() {
    let (s, repo, a, b) = app(false);
    repo.set_locks(&tag("v1"), Locks::READ_ONLY).unwrap();
    refused_by_lock(&s, "tag v1", "write_enabled", || repo.tag("v1", &b));
    assert_eq!(repo.resolve("v1").unwrap(), a);
}

#[test]
fn l2_a_write_locked_tag_cannot_be_moved_by_a_forced_restore_or_a_revert() {
    let (s, repo, old, _) = app(true);
    repo.untag("latest").unwrap();
    let new = push_image(&repo, "v1", "new"); // `old` is now untagged
    repo.delete_manifest(old.as_str()).unwrap(); // and in the bin
    repo.set_locks(&tag("v1"), WRITE_LOCKED).unwrap();

    refused_by_lock(&s, "tag v1", "write_enabled", || {
        repo.restore(Restore::TagAndDigest("v1", &old), OnConflict::MoveTag)
    });
    refused_by_lock(&s, "tag v1", "write_enabled", || {
        repo.revert_tag("v1", &old, OnConflict::MoveTag)
    });
    assert_eq!(repo.resolve("v1").unwrap(), new);
    // Restoring it under another tag is not refused.
    repo.restore(Restore::TagAndDigest("old", &old), OnConflict::Refuse)
        .unwrap();
}

#[test]
fn l2_a_write_locked_tag_cannot_be_deleted() {
    for soft in [false, true] {
        let (s, repo, a, _) = app(soft);
        repo.set_locks(&tag("v1"), WRITE_LOCKED).unwrap();
        refused_by_lock(&s, "tag v1", "write_enabled", || repo.untag("v1"));
        for reference in ["latest", a.as_str()] {
            refused_by_lock(&s, "tag v1", "write_enabled", || {
                repo.delete_manifest(reference)
            });
        }
    }
}

#[test]
fn l2_pushing_the_same_manifest_under_a_write_locked_tag_is_allowed() {
    let (s, repo, a, _) = app(false);
    repo.set_locks(&tag("v1"), Locks::READ_ONLY).unwrap();
    let body = repo.pull("v1").unwrap().body;
    s.advance(60);

    assert_eq!(
        repo.push_manifest("v1", OCI_MANIFEST, &body)
            .unwrap()
            .digest,
        a
    );
    repo.tag("v1", &a).unwrap();

    assert_eq!(repo.resolve("v1").unwrap(), a);
    // The push counts as an update of the manifest; the lock stays.
    assert_eq!(repo.manifest("v1").unwrap().updated, s.registry.now());
    assert_eq!(repo.locks(&tag("v1")).unwrap(), Locks::READ_ONLY);
}

#[test]
fn l2_a_delete_lock_alone_lets_the_tag_move_and_stays_on_the_tag_name() {
    let (s, repo, a, b) = app(false);
    repo.set_locks(&tag("v1"), Locks::NO_DELETE).unwrap();

    repo.tag("v1", &b).unwrap();

    assert_eq!(repo.resolve("v1").unwrap(), b);
    assert_eq!(repo.locks(&tag("v1")).unwrap(), Locks::NO_DELETE);
    refused_by_lock(&s, "tag v1", "delete_enabled", || repo.untag("v1"));
    refused_by_lock(&s, "tag v1", "delete_enabled", || {
        repo.delete_manifest(b.as_str())
    });
    // The manifest it left is not protected any more.
    assert_eq!(repo.delete_manifest("latest").unwrap(), [a]);
}

#[test]
fn l2_a_write_locked_manifest_cannot_be_deleted_but_its_tags_can_move() {
    for soft in [false, true] {
        let (s, repo, a, b) = app(soft);
        repo.set_locks(&manifest(&a), WRITE_LOCKED).unwrap();
        refused_by_lock(&s, &manifest_item(&a), "write_enabled", || {
            repo.delete_manifest(a.as_str())
        });
        // Its bytes cannot change anyway: the lock only keeps it.
        repo.untag("latest").unwrap();
        repo.tag("v1", &b).unwrap();
        repo.tag("again", &a).unwrap();
        assert_eq!(repo.manifest(a.as_str()).unwrap().tags, ["again"]);
    }
}

#[test]
fn l2_a_write_locked_repository_accepts_no_manifest_push_and_no_tag() {
    let (s, repo, a, b) = app(false);
    let body = upload_image(&repo, b"config c", &[b"layer c"]);
    repo.set_locks(&Item::Repository, WRITE_LOCKED).unwrap();
    let c = Algorithm::Sha256.digest(&body);
    let named = "the repository";
    for reference in ["v3", "v1", c.as_str()] {
        refused_by_lock(&s, named, "write_enabled", || {
            repo.push_manifest(reference, OCI_MANIFEST, &body)
        });
    }
    let same = repo.pull("v1").unwrap().body;
    refused_by_lock(&s, named, "write_enabled", || {
        repo.push_manifest("v1", OCI_MANIFEST, &same)
    });
    refused_by_lock(&s, named, "write_enabled", || repo.tag("new", &a));
    refused_by_lock(&s, named, "write_enabled", || repo.tag("v1", &b));
}

#[test]
fn l2_put_blob_into_a_write_locked_repository_is_refused_and_leaves_no_file() {
    let (s, repo, _, _) = app(false);
    repo.set_locks(&Item::Repository, Locks::READ_ONLY).unwrap();
    let digest = Algorithm::Sha256.digest(b"new layer");
    refused_by_lock(&s, "the repository", "write_enabled", || {
        repo.put_blob(&digest, b"new layer")
    });
    refused_by_lock(&s, "the repository", "write_enabled", || {
        s.registry
            .batch(|b| b.put_blob(&repo, &digest, b"new layer"))
    });
    assert!(!blob_file(&s.registry, &digest).exists());
}

#[test]
fn l2_mount_blob_into_a_write_locked_repository_is_refused() {
    let (s, repo, _, _) = app(false);
    let other = s.repo("other");
    let digest = other.put_blob_sha256(b"other layer").unwrap();
    repo.set_locks(&Item::Repository, WRITE_LOCKED).unwrap();
    refused_by_lock(&s, "the repository", "write_enabled", || {
        repo.mount_blob("other", &digest)
    });
    let err = repo.blob(&digest).unwrap_err();
    assert!(matches!(err, Error::BlobUnknown { .. }), "{err:?}");
}

#[test]
fn l2_start_upload_into_a_write_locked_repository_is_refused() {
    let (s, repo, _, _) = app(false);
    repo.set_locks(&Item::Repository, WRITE_LOCKED).unwrap();
    refused_by_lock(&s, "the repository", "write_enabled", || {
        repo.start_upload()
    });
}

#[test]
fn l2_finishing_an_upload_into_a_repository_locked_since_is_refused() {
    let (s, repo, _, _) = app(false);
    let upload = repo.start_upload().unwrap();
    upload.append(b"late layer").unwrap();
    let digest = Algorithm::Sha256.digest(b"late layer");
    repo.set_locks(&Item::Repository, WRITE_LOCKED).unwrap();

    refused_by_lock(&s, "the repository", "write_enabled", || {
        upload.finish(&digest)
    });

    // The session is still open: once unlocked, it finishes.
    repo.set_locks(&Item::Repository, Locks::UNLOCKED).unwrap();
    upload.finish(&digest).unwrap();
    assert_eq!(repo.blob(&digest).unwrap(), &b"late layer"[..]);
}

#[test]
fn l2_restore_into_a_write_locked_repository_is_refused() {
    let (s, repo, _, b) = app(true);
    repo.delete_manifest("v2").unwrap();
    repo.set_locks(&Item::Repository, WRITE_LOCKED).unwrap();
    let restores = [
        Restore::Digest(&b),
        Restore::Tag("v2"),
        Restore::TagAndDigest("v2", &b),
    ];
    for what in restores {
        refused_by_lock(&s, "the repository", "write_enabled", || {
            repo.restore(what, OnConflict::MoveTag)
        });
    }
    assert_eq!(deleted_manifest_digests(&repo).len(), 1);
}

#[test]
fn l2_a_write_locked_repository_refuses_deletes_inside_it() {
    for soft in [false, true] {
        let (s, repo, a, _) = app(soft);
        repo.set_locks(&Item::Repository, WRITE_LOCKED).unwrap();
        let named = "the repository";
        refused_by_lock(&s, named, "write_enabled", || repo.untag("latest"));
        for reference in ["v2", a.as_str()] {
            refused_by_lock(&s, named, "write_enabled", || {
                repo.delete_manifest(reference)
            });
        }
        refused_by_lock(&s, named, "write_enabled", || {
            s.registry.delete_repository("app")
        });
    }
}

#[test]
fn l2_a_write_locked_repository_can_still_be_read() {
    let (s, repo, a, _) = app(false);
    let sig = push_referrer(&repo, None, &a, "sig");
    let layer = repo.manifest("v1").unwrap().references[1].digest.clone();
    repo.set_locks(&Item::Repository, Locks::READ_ONLY).unwrap();

    assert_eq!(repo.pull("v1").unwrap().digest, a);
    assert_eq!(repo.pull(a.as_str()).unwrap().digest, a);
    assert_eq!(tag_names(&repo), ["latest", "v1", "v2"]);
    assert_eq!(manifest_digests(&repo).len(), 3);
    assert_eq!(repo.referrers(&a, None).unwrap()[0].digest, sig);
    assert_eq!(repo.blob(&layer).unwrap(), &b"layer a"[..]);
    // Mounting out of it writes only into the other repository.
    s.repo("other").mount_blob("app", &layer).unwrap();
    assert_eq!(s.repo("other").blob(&layer).unwrap(), &b"layer a"[..]);
}

#[test]
fn l2_a_refused_call_inside_a_batch_lets_the_batch_go_on() {
    let (s, repo, a, b) = app(false);
    let refused = s
        .registry
        .batch(|batch| {
            batch.set_locks(&repo, &tag("v1"), WRITE_LOCKED)?;
            let refused = [batch.untag(&repo, "v1"), batch.tag(&repo, "v1", &b)];
            batch.untag(&repo, "latest")?;
            batch.tag(&repo, "v3", &a)?;
            Ok(refused)
        })
        .unwrap();

    for err in refused {
        assert!(
            matches!(&err, Err(Error::Locked { item, lock, .. })
                if *item == Item::Tag("v1".into()) && *lock == "write_enabled"),
            "{err:?}"
        );
    }
    assert_eq!(tag_names(&repo), ["v1", "v2", "v3"]);
    assert_eq!(repo.resolve("v1").unwrap(), a);
    assert_eq!(repo.locks(&tag("v1")).unwrap(), WRITE_LOCKED);
}
