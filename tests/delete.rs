//! Deleting (SPEC D1–D6): untag, delete a manifest by tag or by digest, delete a repository,
//! referrers and index children, and blob bytes that no delete touches. Each rule is tested with
//! the soft delete policy off (deletes are permanent) and on (they go to the recycle bin) where
//! the two differ; the recycle bin itself is tested in `recycle_bin.rs`.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{
    Store, blob_file, deleted_manifest_digests, deleted_tag_pairs, image_body,
    is_invalid_repository_name, is_invalid_tag, is_manifest_unknown, manifest_digests, pairs,
    policy_on, push, push_image, push_index, push_referrer, push_untagged, refused, seed_blobs,
    set, size_of, tag_names, untagged_manifests, upload_image,
};
use ocistore::manifest::{OCI_INDEX, OCI_MANIFEST};
use ocistore::{Algorithm, Digest, Error, Page, Repository, RepositoryState, SoftDeletePolicy};
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// Helpers (the ones shared with the other test files are in `common`)

/// A fresh store, with the soft delete policy on (7 days) when `policy` is true.
fn store(policy: bool) -> Store {
    let s = Store::new();
    if policy {
        policy_on(&s, 7);
    }
    s
}

/// The ACR example: in `acr-helloworld`, `latest` and `v3` name one manifest, `v2` another.
/// Returns the repository and the digests of `v2` and `latest`.
fn acr_helloworld(s: &Store) -> (Repository, Digest, Digest) {
    let repo = s.repo("acr-helloworld");
    let v2 = push_image(&repo, "v2", "two");
    let latest = push_image(&repo, "latest", "three");
    repo.tag("v3", &latest).unwrap();
    (repo, v2, latest)
}

/// The config and layer digests of a live manifest.
fn blobs_of(repo: &Repository, digest: &Digest) -> Vec<Digest> {
    repo.manifest(digest.as_str())
        .unwrap()
        .references
        .into_iter()
        .map(|d| d.digest)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// D1 — untag removes the tag only; the manifest and its blobs stay.

#[test]
fn d1_untag_removes_the_tag_only_and_keeps_the_manifest_and_its_blobs() {
    let s = Store::new();
    let repo = s.repo("hello-world");
    let a = push_image(&repo, "latest", "a");
    repo.tag("v1", &a).unwrap();
    let body = repo.pull("latest").unwrap().body;
    let blobs = blobs_of(&repo, &a);

    repo.untag("latest").unwrap();

    assert_eq!(tag_names(&repo), ["v1"]);
    let err = repo.resolve("latest").unwrap_err();
    assert!(
        is_manifest_unknown(&err, "hello-world", "latest"),
        "{err:?}"
    );
    let err = repo.pull("latest").unwrap_err();
    assert!(
        is_manifest_unknown(&err, "hello-world", "latest"),
        "{err:?}"
    );
    // The manifest stays, with its other tag, pullable by digest and by its other tag.
    assert_eq!(repo.pull(a.as_str()).unwrap().body, body);
    assert_eq!(repo.pull("v1").unwrap().digest, a);
    assert_eq!(repo.manifest(a.as_str()).unwrap().tags, ["v1"]);
    assert_eq!(manifest_digests(&repo), set([&a]));
    for blob in &blobs {
        assert!(repo.blob(blob).is_ok(), "blob {blob} of the manifest stays");
    }
    // With the policy off nothing goes to the bin.
    assert!(repo.deleted_tags(None).unwrap().is_empty());
    assert!(repo.deleted_manifests().unwrap().is_empty());
}

#[test]
fn d1_untag_of_the_last_tag_leaves_the_manifest_untagged_and_updated() {
    let s = Store::new();
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    s.advance(60);

    repo.untag("latest").unwrap();

    assert!(tag_names(&repo).is_empty());
    let untagged = untagged_manifests(&repo);
    assert_eq!(untagged.len(), 1);
    assert_eq!(untagged[0].digest, a);
    assert!(untagged[0].tags.is_empty());
    // Decided in design.md: losing a tag counts as an update of the manifest.
    assert_eq!(untagged[0].updated, s.registry.now());
    assert_eq!(s.registry.repositories(&Page::all()).unwrap(), ["app"]);
}

#[test]
fn d1_untag_with_the_policy_on_bins_the_tag_and_keeps_the_manifest_live() {
    let s = Store::new();
    policy_on(&s, 7);
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");

    repo.untag("latest").unwrap();

    assert!(tag_names(&repo).is_empty());
    assert_eq!(repo.pull(a.as_str()).unwrap().digest, a);
    assert_eq!(manifest_digests(&repo), set([&a]));
    assert!(repo.deleted_manifests().unwrap().is_empty());
    assert_eq!(deleted_tag_pairs(&repo), pairs([("latest", &a)]));
}

#[test]
fn d1_untag_leaves_the_same_tag_of_another_repository() {
    let s = Store::new();
    let (one, two) = (s.repo("one"), s.repo("two"));
    push_image(&one, "latest", "a");
    let b = push_image(&two, "latest", "b");

    one.untag("latest").unwrap();

    assert_eq!(two.resolve("latest").unwrap(), b);
    assert!(tag_names(&one).is_empty());
}

#[test]
fn d1_untag_of_an_unknown_tag_is_tag_unknown_and_changes_nothing() {
    for policy in [false, true] {
        let s = store(policy);
        let repo = s.repo("app");
        push_image(&repo, "latest", "a");
        let err = refused(&s, &["app"], || repo.untag("v9"));
        assert!(
            matches!(&err, Error::TagUnknown { repository, tag } if repository == "app" && tag == "v9"),
            "{err:?}"
        );
        // A tag of another repository is unknown here too.
        let other = s.repo("other");
        let err = refused(&s, &["app", "other"], || other.untag("latest"));
        assert!(
            matches!(&err, Error::TagUnknown { repository, tag } if repository == "other" && tag == "latest"),
            "{err:?}"
        );
    }
}

#[test]
fn d1_untag_twice_is_tag_unknown_the_second_time() {
    for policy in [false, true] {
        let s = store(policy);
        let repo = s.repo("app");
        push_image(&repo, "latest", "a");
        repo.untag("latest").unwrap();
        let err = refused(&s, &["app"], || repo.untag("latest"));
        assert!(
            matches!(&err, Error::TagUnknown { repository, tag } if repository == "app" && tag == "latest"),
            "{err:?}"
        );
    }
}

#[test]
fn d1_untag_of_an_invalid_tag_is_invalid_tag_and_changes_nothing() {
    let s = Store::new();
    let repo = s.repo("app");
    push_image(&repo, "latest", "a");
    for bad in ["", ".latest", "-x", "a:b", "sp ace", &"t".repeat(129)] {
        let err = refused(&s, &["app"], || repo.untag(bad));
        assert!(is_invalid_tag(&err, bad), "{bad:?}: {err:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// D2 — delete by tag deletes the manifest the tag points at, with every tag of it.

#[test]
fn d2_delete_by_tag_deletes_the_manifest_with_every_tag_of_it() {
    // The ACR example: acr-helloworld:latest and :v3 name one manifest, :v2 another.
    let s = Store::new();
    let (repo, v2, latest) = acr_helloworld(&s);

    assert_eq!(
        repo.delete_manifest("latest").unwrap(),
        vec![latest.clone()]
    );

    assert_eq!(tag_names(&repo), ["v2"]);
    for tag in ["latest", "v3"] {
        let err = repo.pull(tag).unwrap_err();
        assert!(is_manifest_unknown(&err, "acr-helloworld", tag), "{err:?}");
    }
    let err = repo.pull(latest.as_str()).unwrap_err();
    assert!(
        is_manifest_unknown(&err, "acr-helloworld", latest.as_str()),
        "{err:?}"
    );
    assert_eq!(manifest_digests(&repo), set([&v2]));
    assert_eq!(repo.pull("v2").unwrap().digest, v2);
    // Policy off: gone for good, nothing in the bin.
    assert!(repo.deleted_manifests().unwrap().is_empty());
    assert!(repo.deleted_tags(None).unwrap().is_empty());
}

#[test]
fn d2_delete_by_tag_with_the_policy_on_bins_the_manifest_and_each_tag() {
    let s = Store::new();
    policy_on(&s, 7);
    let (repo, v2, latest) = acr_helloworld(&s);

    assert_eq!(
        repo.delete_manifest("latest").unwrap(),
        vec![latest.clone()]
    );

    assert_eq!(tag_names(&repo), ["v2"]);
    assert_eq!(manifest_digests(&repo), set([&v2]));
    assert_eq!(deleted_manifest_digests(&repo), set([&latest]));
    assert_eq!(
        deleted_tag_pairs(&repo),
        pairs([("latest", &latest), ("v3", &latest)])
    );
}

#[test]
fn d2_delete_by_tag_leaves_a_manifest_the_tag_pointed_at_before() {
    let s = Store::new();
    let repo = s.repo("app");
    let old = push_image(&repo, "latest", "old");
    let new = push_image(&repo, "latest", "new");

    assert_eq!(repo.delete_manifest("latest").unwrap(), vec![new.clone()]);

    assert_eq!(manifest_digests(&repo), set([&old]));
    assert!(tag_names(&repo).is_empty());
    assert_eq!(repo.pull(old.as_str()).unwrap().digest, old);
}

#[test]
fn d2_delete_by_an_unknown_tag_is_manifest_unknown_and_changes_nothing() {
    for policy in [false, true] {
        let s = store(policy);
        let repo = s.repo("app");
        push_image(&repo, "latest", "a");
        let err = refused(&s, &["app"], || repo.delete_manifest("v9"));
        assert!(is_manifest_unknown(&err, "app", "v9"), "{err:?}");
        // Deleted once, the tag is unknown the second time.
        repo.delete_manifest("latest").unwrap();
        let err = refused(&s, &["app"], || repo.delete_manifest("latest"));
        assert!(is_manifest_unknown(&err, "app", "latest"), "{err:?}");
    }
}

#[test]
fn d2_delete_by_an_invalid_tag_is_invalid_reference_and_changes_nothing() {
    let s = Store::new();
    let repo = s.repo("app");
    push_image(&repo, "latest", "a");
    for bad in ["", ".x", "sp ace", &"t".repeat(129)] {
        let err = refused(&s, &["app"], || repo.delete_manifest(bad));
        assert!(
            matches!(&err, Error::InvalidReference { reference, .. } if reference == bad),
            "{bad:?}: {err:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// D3 — delete by digest deletes the manifest with every tag of it.

#[test]
fn d3_delete_by_digest_deletes_the_manifest_with_every_tag_of_it() {
    let s = Store::new();
    let (repo, v2, latest) = acr_helloworld(&s);

    assert_eq!(repo.delete_manifest(v2.as_str()).unwrap(), vec![v2.clone()]);

    assert_eq!(tag_names(&repo), ["latest", "v3"]);
    assert_eq!(manifest_digests(&repo), set([&latest]));
    let err = repo.pull("v2").unwrap_err();
    assert!(is_manifest_unknown(&err, "acr-helloworld", "v2"), "{err:?}");

    // Several tags go with their manifest.
    assert_eq!(
        repo.delete_manifest(latest.as_str()).unwrap(),
        vec![latest.clone()]
    );
    assert!(tag_names(&repo).is_empty());
    assert!(manifest_digests(&repo).is_empty());
    assert!(repo.deleted_manifests().unwrap().is_empty());
    assert!(repo.deleted_tags(None).unwrap().is_empty());
}

#[test]
fn d3_delete_by_digest_of_an_untagged_manifest() {
    let s = Store::new();
    let repo = s.repo("app");
    let a = push_untagged(&repo, "a");
    let b = push_image(&repo, "latest", "b");

    assert_eq!(repo.delete_manifest(a.as_str()).unwrap(), vec![a.clone()]);

    assert_eq!(manifest_digests(&repo), set([&b]));
    let err = repo.pull(a.as_str()).unwrap_err();
    assert!(is_manifest_unknown(&err, "app", a.as_str()), "{err:?}");
}

#[test]
fn d3_delete_by_digest_with_the_policy_on_bins_the_manifest_and_each_tag() {
    let s = Store::new();
    policy_on(&s, 7);
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    repo.tag("v1", &a).unwrap();
    let b = push_image(&repo, "other", "b");

    assert_eq!(repo.delete_manifest(a.as_str()).unwrap(), vec![a.clone()]);

    assert_eq!(tag_names(&repo), ["other"]);
    assert_eq!(manifest_digests(&repo), set([&b]));
    assert_eq!(deleted_manifest_digests(&repo), set([&a]));
    assert_eq!(
        deleted_tag_pairs(&repo),
        pairs([("latest", &a), ("v1", &a)])
    );
}

#[test]
fn d3_delete_by_digest_leaves_the_same_manifest_in_another_repository() {
    let s = Store::new();
    let (one, two) = (s.repo("one"), s.repo("two"));
    let a = push_image(&one, "latest", "same");
    assert_eq!(push_image(&two, "latest", "same"), a);

    one.delete_manifest(a.as_str()).unwrap();

    assert_eq!(two.resolve("latest").unwrap(), a);
    assert_eq!(two.pull(a.as_str()).unwrap().digest, a);
    assert!(manifest_digests(&one).is_empty());
}

#[test]
fn d3_delete_of_an_unknown_digest_is_manifest_unknown_and_changes_nothing() {
    for policy in [false, true] {
        let s = store(policy);
        let repo = s.repo("app");
        let a = push_image(&repo, "latest", "a");
        let unknown = Algorithm::Sha256.digest(b"never pushed");
        let err = refused(&s, &["app"], || repo.delete_manifest(unknown.as_str()));
        assert!(
            is_manifest_unknown(&err, "app", unknown.as_str()),
            "{err:?}"
        );
        // A manifest of another repository is unknown here.
        let other = s.repo("other");
        let err = refused(&s, &["app", "other"], || other.delete_manifest(a.as_str()));
        assert!(is_manifest_unknown(&err, "other", a.as_str()), "{err:?}");
        // Deleted once (for good or into the bin), it is unknown the second time.
        repo.delete_manifest(a.as_str()).unwrap();
        let err = refused(&s, &["app"], || repo.delete_manifest(a.as_str()));
        assert!(is_manifest_unknown(&err, "app", a.as_str()), "{err:?}");
    }
}

#[test]
fn d3_delete_of_an_invalid_digest_is_invalid_reference_and_changes_nothing() {
    let s = Store::new();
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    let upper = a.as_str().to_uppercase().replace("SHA256", "sha256");
    for bad in ["sha256:abc", "md5:0123", "sha256:", upper.as_str()] {
        let err = refused(&s, &["app"], || repo.delete_manifest(bad));
        assert!(
            matches!(&err, Error::InvalidReference { reference, .. } if reference == bad),
            "{bad:?}: {err:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// D4 — deleting a repository deletes all its manifests and tags, and the repository.

#[test]
fn d4_delete_repository_deletes_all_its_manifests_and_tags_and_the_repository() {
    let s = Store::new();
    let repo = s.repo("acr-helloworld");
    let other = s.repo("other");
    let a = push_image(&repo, "latest", "a");
    push_image(&repo, "v2", "b");
    push_untagged(&repo, "c");
    let kept = push_image(&other, "latest", "o");
    let before_other = (tag_names(&other), manifest_digests(&other));

    s.registry.delete_repository("acr-helloworld").unwrap();

    assert_eq!(s.registry.repositories(&Page::all()).unwrap(), ["other"]);
    assert!(tag_names(&repo).is_empty());
    assert!(manifest_digests(&repo).is_empty());
    assert!(repo.blobs(&Page::all()).unwrap().is_empty());
    let err = repo.pull(a.as_str()).unwrap_err();
    assert!(
        is_manifest_unknown(&err, "acr-helloworld", a.as_str()),
        "{err:?}"
    );
    let err = repo.pull("latest").unwrap_err();
    assert!(
        is_manifest_unknown(&err, "acr-helloworld", "latest"),
        "{err:?}"
    );
    // Policy off: nothing in the bin.
    assert!(s.registry.deleted_repositories().unwrap().is_empty());
    assert!(repo.deleted_manifests().unwrap().is_empty());
    assert!(repo.deleted_tags(None).unwrap().is_empty());
    // Other repositories are untouched.
    assert_eq!((tag_names(&other), manifest_digests(&other)), before_other);
    assert_eq!(other.resolve("latest").unwrap(), kept);
}

#[test]
fn d4_a_deleted_repository_can_be_pushed_again_from_scratch() {
    let s = Store::new();
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    s.registry.delete_repository("app").unwrap();

    // The same image is new again: its blobs must be uploaded again (the links went).
    for blob in seed_blobs("a") {
        let err = repo.blob(&blob).unwrap_err();
        assert!(
            matches!(&err, Error::BlobUnknown { repository, digest } if repository == "app" && digest == &blob),
            "{err:?}"
        );
    }
    assert_eq!(push_image(&repo, "v1", "a"), a);
    assert_eq!(tag_names(&repo), ["v1"]);
    assert_eq!(manifest_digests(&repo), set([&a]));
    assert_eq!(s.registry.repositories(&Page::all()).unwrap(), ["app"]);
}

#[test]
fn d4_delete_repository_with_the_policy_on_bins_it_with_everything_in_it() {
    let s = Store::new();
    policy_on(&s, 7);
    let repo = s.repo("app");
    let a = push_image(&repo, "latest", "a");
    repo.tag("v1", &a).unwrap();
    let b = push_untagged(&repo, "b");

    s.registry.delete_repository("app").unwrap();

    assert!(s.registry.repositories(&Page::all()).unwrap().is_empty());
    assert!(tag_names(&repo).is_empty());
    assert!(manifest_digests(&repo).is_empty());
    let deleted = s.registry.deleted_repositories().unwrap();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].name, "app");
    assert_eq!(deleted_manifest_digests(&repo), set([&a, &b]));
    assert_eq!(
        deleted_tag_pairs(&repo),
        pairs([("latest", &a), ("v1", &a)])
    );
}

#[test]
fn d4_delete_repository_with_the_policy_off_takes_its_tombstones_along() {
    // Design: with the policy off, everything of the repository goes for good, its tombstones
    // too.
    let s = Store::new();
    policy_on(&s, 7);
    let repo = s.repo("app");
    push_image(&repo, "old", "old");
    repo.delete_manifest("old").unwrap();
    push_image(&repo, "latest", "a");
    assert_eq!(repo.deleted_manifests().unwrap().len(), 1);
    s.registry
        .set_soft_delete_policy(SoftDeletePolicy::default())
        .unwrap();

    s.registry.delete_repository("app").unwrap();

    assert!(s.registry.repositories(&Page::all()).unwrap().is_empty());
    assert!(s.registry.deleted_repositories().unwrap().is_empty());
    assert!(repo.deleted_manifests().unwrap().is_empty());
    assert!(repo.deleted_tags(None).unwrap().is_empty());
}

#[test]
fn d4_delete_of_an_unknown_repository_is_repository_unknown_and_changes_nothing() {
    for policy in [false, true] {
        let s = store(policy);
        push_image(&s.repo("app"), "latest", "a");
        let err = refused(&s, &["app"], || s.registry.delete_repository("nope"));
        assert!(
            matches!(&err, Error::RepositoryUnknown { name } if name == "nope"),
            "{err:?}"
        );
        // Deleted once, it is unknown the second time (gone, or in the bin).
        s.registry.delete_repository("app").unwrap();
        let err = refused(&s, &["app"], || s.registry.delete_repository("app"));
        assert!(
            matches!(&err, Error::RepositoryUnknown { name } if name == "app"),
            "{err:?}"
        );
    }
}

#[test]
fn d4_delete_of_an_invalid_repository_name_is_refused_and_changes_nothing() {
    let s = Store::new();
    push_image(&s.repo("app"), "latest", "a");
    let long = "a".repeat(256);
    for bad in ["", "App", "a//b", "-a", "a/", long.as_str()] {
        let err = refused(&s, &["app"], || s.registry.delete_repository(bad));
        assert!(is_invalid_repository_name(&err, bad), "{bad:?}: {err:?}");
    }
}

#[test]
fn d4_delete_repository_leaves_a_repository_whose_name_it_prefixes() {
    let s = Store::new();
    let (app, nested, longer) = (s.repo("app"), s.repo("app/web"), s.repo("app-x"));
    push_image(&app, "latest", "a");
    let n = push_image(&nested, "latest", "n");
    let l = push_image(&longer, "latest", "l");

    s.registry.delete_repository("app").unwrap();

    assert_eq!(
        s.registry.repositories(&Page::all()).unwrap(),
        ["app-x", "app/web"]
    );
    assert_eq!(nested.resolve("latest").unwrap(), n);
    assert_eq!(longer.resolve("latest").unwrap(), l);
}

#[test]
fn d4_s11_repository_state_is_live_in_the_bin_or_unknown_in_one_read() {
    for policy in [false, true] {
        let s = store(policy);
        let repo = s.repo("app");
        assert_eq!(repo.state().unwrap(), RepositoryState::Unknown);
        push_image(&repo, "v1", "a");
        let created = s.registry.now();
        assert_eq!(repo.state().unwrap(), RepositoryState::Live { created });
        // A repository whose name only prefixes it is another one.
        assert_eq!(s.repo("ap").state().unwrap(), RepositoryState::Unknown);

        s.advance(60);
        s.registry.delete_repository("app").unwrap();
        let deleted_at = s.registry.now();
        let expected = if policy {
            RepositoryState::Deleted {
                created,
                deleted_at,
                expires_at: deleted_at + Duration::from_secs(7 * 86_400),
            }
        } else {
            RepositoryState::Unknown
        };
        assert_eq!(repo.state().unwrap(), expected, "policy {policy}");
        if policy {
            // Expired is gone (S3), before autopurge has run.
            s.advance(7 * 86_400);
            assert_eq!(repo.state().unwrap(), RepositoryState::Unknown);
            s.registry.run_now().unwrap();
            assert_eq!(repo.state().unwrap(), RepositoryState::Unknown);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// D5 — referrers go with their subject, recursively; a child of a live index is refused.

#[test]
fn d5_deleting_a_manifest_deletes_its_referrers_recursively() {
    for policy in [false, true] {
        let s = store(policy);
        let repo = s.repo("app");
        let subject = push_image(&repo, "latest", "subject");
        let sig = push_referrer(&repo, None, &subject, "sig");
        let sbom = push_referrer(&repo, Some("sbom"), &subject, "sbom");
        // A referrer of a referrer: a signature of the signature.
        let sig_of_sig = push_referrer(&repo, None, &sig, "sig of sig");
        let unrelated = push_image(&repo, "other", "other");
        let unrelated_sig = push_referrer(&repo, None, &unrelated, "other sig");

        let deleted: BTreeSet<Digest> = repo
            .delete_manifest("latest")
            .unwrap()
            .into_iter()
            .collect();

        assert_eq!(
            deleted,
            set([&subject, &sig, &sbom, &sig_of_sig]),
            "policy {policy}"
        );
        assert_eq!(manifest_digests(&repo), set([&unrelated, &unrelated_sig]));
        assert_eq!(tag_names(&repo), ["other"]);
        for d in [&subject, &sig] {
            assert!(repo.referrers(d, None).unwrap().is_empty());
        }
        assert_eq!(repo.referrers(&unrelated, None).unwrap().len(), 1);
        if policy {
            assert_eq!(
                deleted_manifest_digests(&repo),
                set([&subject, &sig, &sbom, &sig_of_sig])
            );
            // The referrer's tag went to the bin with it.
            assert_eq!(
                deleted_tag_pairs(&repo),
                pairs([("latest", &subject), ("sbom", &sbom)])
            );
        } else {
            // Gone for good. (With the policy on, pull by digest is S2's: see recycle_bin.rs.)
            for d in [&subject, &sig, &sbom, &sig_of_sig] {
                let err = repo.pull(d.as_str()).unwrap_err();
                assert!(is_manifest_unknown(&err, "app", d.as_str()), "{d}: {err:?}");
            }
            assert!(repo.deleted_manifests().unwrap().is_empty());
            assert!(repo.deleted_tags(None).unwrap().is_empty());
        }
    }
}

#[test]
fn d5_deleting_a_referrer_leaves_its_subject_and_the_other_referrers() {
    for policy in [false, true] {
        let s = store(policy);
        let repo = s.repo("app");
        let subject = push_image(&repo, "latest", "subject");
        let sig = push_referrer(&repo, None, &subject, "sig");
        let sbom = push_referrer(&repo, None, &subject, "sbom");
        let sig_of_sig = push_referrer(&repo, None, &sig, "sig of sig");

        let deleted: BTreeSet<Digest> = repo
            .delete_manifest(sig.as_str())
            .unwrap()
            .into_iter()
            .collect();

        assert_eq!(deleted, set([&sig, &sig_of_sig]));
        assert_eq!(manifest_digests(&repo), set([&subject, &sbom]));
        let referrers: Vec<Digest> = repo
            .referrers(&subject, None)
            .unwrap()
            .into_iter()
            .map(|d| d.digest)
            .collect();
        assert_eq!(referrers, vec![sbom.clone()]);
    }
}

#[test]
fn d5_deleting_a_child_of_a_live_index_is_refused_naming_the_index() {
    for policy in [false, true] {
        let s = store(policy);
        let repo = s.repo("app");
        let amd64 = push_image(&repo, "amd64", "amd64");
        let arm64 = push_image(&repo, "arm64", "arm64");
        let index = push_index(&repo, Some("latest"), &[&amd64, &arm64]);

        for reference in [amd64.as_str(), "amd64"] {
            let err = refused(&s, &["app"], || repo.delete_manifest(reference));
            assert!(
                matches!(&err, Error::ManifestReferenced { repository, digest, index: i }
                    if repository == "app" && digest == &amd64 && i == &index),
                "{reference}: {err:?}"
            );
        }
        // Untagging the child is no delete of it: allowed.
        repo.untag("arm64").unwrap();
        assert_eq!(manifest_digests(&repo), set([&amd64, &arm64, &index]));
    }
}

#[test]
fn d5_deleting_the_index_first_then_the_child_works() {
    for policy in [false, true] {
        let s = store(policy);
        let repo = s.repo("app");
        let amd64 = push_image(&repo, "amd64", "amd64");
        let arm64 = push_image(&repo, "arm64", "arm64");
        let index = push_index(&repo, Some("latest"), &[&amd64, &arm64]);

        // Deleting the index leaves its children (and their tags).
        assert_eq!(repo.delete_manifest("latest").unwrap(), vec![index.clone()]);
        assert_eq!(manifest_digests(&repo), set([&amd64, &arm64]));
        assert_eq!(tag_names(&repo), ["amd64", "arm64"]);

        assert_eq!(
            repo.delete_manifest(amd64.as_str()).unwrap(),
            vec![amd64.clone()]
        );
        assert_eq!(repo.delete_manifest("arm64").unwrap(), vec![arm64.clone()]);
        assert!(manifest_digests(&repo).is_empty());
        if policy {
            assert_eq!(
                deleted_manifest_digests(&repo),
                set([&index, &amd64, &arm64])
            );
        }
    }
}

#[test]
fn d5_a_child_listed_by_two_indexes_is_refused_until_both_are_gone() {
    let s = Store::new();
    let repo = s.repo("app");
    let child = push_image(&repo, "child", "child");
    let one = push_index(&repo, Some("one"), &[&child]);
    let size = size_of(&repo, &child);
    let body = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": child, "size": size}],
        "annotations": {"org.example.name": "two"},
    });
    let two = push(
        &repo,
        Some("two"),
        OCI_INDEX,
        &serde_json::to_vec(&body).unwrap(),
    );
    assert_ne!(one, two);

    let err = refused(&s, &["app"], || repo.delete_manifest("child"));
    let Error::ManifestReferenced { index: first, .. } = err else {
        panic!("{err:?}")
    };
    assert!(first == one || first == two);
    repo.delete_manifest(first.as_str()).unwrap();
    let other = if first == one { &two } else { &one };
    let err = refused(&s, &["app"], || repo.delete_manifest("child"));
    assert!(
        matches!(&err, Error::ManifestReferenced { digest, index, .. } if digest == &child && index == other),
        "{err:?}"
    );
    repo.delete_manifest(other.as_str()).unwrap();
    assert_eq!(repo.delete_manifest("child").unwrap(), [child]);
}

#[test]
fn d5_deleting_the_repository_deletes_an_index_with_its_children() {
    for policy in [false, true] {
        let s = store(policy);
        let repo = s.repo("app");
        let amd64 = push_image(&repo, "amd64", "amd64");
        let arm64 = push_untagged(&repo, "arm64");
        let index = push_index(&repo, Some("latest"), &[&amd64, &arm64]);

        s.registry.delete_repository("app").unwrap();

        assert!(s.registry.repositories(&Page::all()).unwrap().is_empty());
        assert!(manifest_digests(&repo).is_empty());
        if policy {
            assert_eq!(
                deleted_manifest_digests(&repo),
                set([&index, &amd64, &arm64])
            );
        } else {
            assert!(repo.deleted_manifests().unwrap().is_empty());
        }
    }
}

#[test]
fn d5_a_referrer_listed_by_a_live_index_blocks_the_delete_of_its_subject() {
    let s = Store::new();
    let repo = s.repo("app");
    let subject = push_image(&repo, "latest", "subject");
    let sig = push_referrer(&repo, None, &subject, "sig");
    let index = push_index(&repo, Some("bundle"), &[&sig]);

    let err = refused(&s, &["app"], || repo.delete_manifest("latest"));
    assert!(
        matches!(&err, Error::ManifestReferenced { repository, digest, index: i }
            if repository == "app" && digest == &sig && i == &index),
        "{err:?}"
    );
    repo.delete_manifest("bundle").unwrap();
    let deleted: BTreeSet<Digest> = repo
        .delete_manifest("latest")
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(deleted, set([&subject, &sig]));
}

#[test]
fn d5_an_index_that_refers_to_its_own_child_goes_with_it() {
    // The index is a referrer of its child: deleting the child takes the index along, so the
    // index does not block the delete.
    let s = Store::new();
    let repo = s.repo("app");
    let child = push_image(&repo, "child", "child");
    let body = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": child, "size": size_of(&repo, &child)}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": child, "size": size_of(&repo, &child)},
    });
    let index = push(
        &repo,
        Some("latest"),
        OCI_INDEX,
        &serde_json::to_vec(&body).unwrap(),
    );

    let deleted: BTreeSet<Digest> = repo.delete_manifest("child").unwrap().into_iter().collect();

    assert_eq!(deleted, set([&child, &index]));
    assert!(manifest_digests(&repo).is_empty());
}

#[test]
fn d5_an_index_of_another_repository_does_not_block_a_delete() {
    let s = Store::new();
    let (one, two) = (s.repo("one"), s.repo("two"));
    let child = push_image(&one, "child", "child");
    assert_eq!(push_image(&two, "child", "child"), child);
    push_index(&two, Some("latest"), &[&child]);

    assert_eq!(one.delete_manifest("child").unwrap(), vec![child.clone()]);
    let err = refused(&s, &["one", "two"], || two.delete_manifest("child"));
    assert!(matches!(err, Error::ManifestReferenced { .. }), "{err:?}");
}

#[test]
fn d5_a_child_of_a_soft_deleted_index_can_be_deleted() {
    let s = Store::new();
    policy_on(&s, 7);
    let repo = s.repo("app");
    let child = push_image(&repo, "child", "child");
    let index = push_index(&repo, Some("latest"), &[&child]);
    repo.delete_manifest("latest").unwrap();
    assert_eq!(deleted_manifest_digests(&repo), set([&index]));

    assert_eq!(repo.delete_manifest("child").unwrap(), vec![child.clone()]);
    assert_eq!(deleted_manifest_digests(&repo), set([&index, &child]));
}

// ---------------------------------------------------------------------------------------------
// D6 — no delete removes blob bytes; shared layers stay readable.

#[test]
fn d6_no_delete_removes_blob_files() {
    for policy in [false, true] {
        let s = store(policy);
        let repo = s.repo("app");
        let mut blobs = Vec::new();
        for (tag, seed) in [("a", "a"), ("b", "b"), ("c", "c")] {
            let d = push_image(&repo, tag, seed);
            blobs.extend(blobs_of(&repo, &d));
        }
        let contents: Vec<Vec<u8>> = blobs
            .iter()
            .map(|d| std::fs::read(blob_file(&s.registry, d)).unwrap())
            .collect();

        repo.untag("a").unwrap();
        repo.delete_manifest("b").unwrap();
        let c = repo.resolve("c").unwrap();
        repo.delete_manifest(c.as_str()).unwrap();
        s.registry.delete_repository("app").unwrap();

        for (d, bytes) in blobs.iter().zip(&contents) {
            let path = blob_file(&s.registry, d);
            assert_eq!(
                &std::fs::read(&path).unwrap(),
                bytes,
                "policy {policy}: {} must stay",
                path.display()
            );
        }
    }
}

#[test]
fn d6_after_a_manifest_delete_its_blobs_stay_linked_and_readable() {
    for policy in [false, true] {
        let s = store(policy);
        let repo = s.repo("app");
        let a = push_image(&repo, "latest", "a");
        let blobs = blobs_of(&repo, &a);

        repo.delete_manifest("latest").unwrap();

        for blob in &blobs {
            assert!(repo.blob(blob).is_ok(), "policy {policy}: {blob}");
        }
        // So the same image can be pushed again without uploading anything.
        if !policy {
            assert_eq!(push_image(&repo, "again", "a"), a);
        }
    }
}

#[test]
fn d6_a_layer_shared_with_another_manifest_stays_readable() {
    for policy in [false, true] {
        let s = store(policy);
        let repo = s.repo("app");
        let one = upload_image(&repo, b"config one", &[b"shared base", b"layer one"]);
        let one = push(&repo, Some("one"), OCI_MANIFEST, &one);
        let two = upload_image(&repo, b"config two", &[b"shared base"]);
        let two = push(&repo, Some("two"), OCI_MANIFEST, &two);
        let shared = Algorithm::Sha256.digest(b"shared base");

        repo.delete_manifest(one.as_str()).unwrap();

        assert_eq!(repo.blob(&shared).unwrap(), &b"shared base"[..]);
        assert_eq!(repo.pull("two").unwrap().digest, two);
        assert!(blobs_of(&repo, &two).contains(&shared));
    }
}

#[test]
fn d6_a_layer_mounted_into_another_repository_stays_readable_after_the_repository_is_deleted() {
    for policy in [false, true] {
        let s = store(policy);
        let (base, app) = (s.repo("base"), s.repo("app"));
        let b = push_image(&base, "latest", "base");
        let layer = Algorithm::Sha256.digest(b"layer base");
        let config = s.repo("app").put_blob_sha256(b"config app").unwrap();
        app.mount_blob("base", &layer).unwrap();
        let body = serde_json::to_vec(&image_body(
            &(config, 10),
            &[(layer.clone(), "layer base".len() as u64)],
        ))
        .unwrap();
        push(&app, Some("latest"), OCI_MANIFEST, &body);

        base.delete_manifest(b.as_str()).unwrap();
        s.registry.delete_repository("base").unwrap();

        assert_eq!(
            app.blob(&layer).unwrap(),
            &b"layer base"[..],
            "policy {policy}"
        );
        assert!(blob_file(&s.registry, &layer).exists());
        // And the other way round: deleting the mounting repository leaves the source.
        let s2 = store(policy);
        let (base, app) = (s2.repo("base"), s2.repo("app"));
        push_image(&base, "latest", "base");
        app.mount_blob("base", &layer).unwrap();
        s2.registry.delete_repository("app").unwrap();
        assert_eq!(base.blob(&layer).unwrap(), &b"layer base"[..]);
    }
}
