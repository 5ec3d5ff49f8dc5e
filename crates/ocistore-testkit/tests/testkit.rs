//! The public kit's content strategies against the store: what they call valid the store
//! accepts, what they call invalid it refuses with the error that names the problem (N1–N3),
//! and the content they build pushes and pulls back byte for byte (P3, P8).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::Store;
use ocistore::{Algorithm, Digest, Error, Reference, Repository};
use ocistore_testkit::{
    Content, artifact_content, config, digest, image_content, index_content, invalid_digest,
    invalid_repository_name, invalid_tag_name, repository_name, tag_name,
};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

/// Runs `test` on 64 values of `strategy`, all on one store: opening one per case would cost
/// more than the checks.
fn on_one_store<S: Strategy>(
    strategy: S,
    test: impl Fn(&Store, S::Value) -> Result<(), TestCaseError>,
) {
    let store = Store::new();
    TestRunner::new(config(64))
        .run(&strategy, |value| test(&store, value))
        .unwrap();
}

#[test]
fn n1_repository_name_strategy_yields_names_the_store_accepts() {
    on_one_store(repository_name(), |s, name| {
        prop_assert!(s.registry.repository(&name).is_ok(), "{name:?} refused");
        Ok(())
    });
}

#[test]
fn n1_invalid_repository_names_are_refused_by_name() {
    on_one_store(invalid_repository_name(), |s, name| {
        match s.registry.repository(&name) {
            Err(Error::InvalidRepositoryName { name: refused, .. }) => {
                prop_assert_eq!(refused, name)
            }
            other => prop_assert!(false, "{name:?}: {other:?}"),
        }
        Ok(())
    });
}

#[test]
fn n2_tag_strategies_split_tags_as_the_store_does() {
    on_one_store((tag_name(), invalid_tag_name()), |_, (tag, bad)| {
        prop_assert_eq!(Reference::parse(&tag).unwrap(), Reference::Tag(tag.clone()));
        match Reference::parse(&bad) {
            // An invalid tag is no digest either.
            Err(Error::InvalidReference { reference, .. }) => prop_assert_eq!(reference, bad),
            other => prop_assert!(false, "{bad:?}: {other:?}"),
        }
        Ok(())
    });
}

#[test]
fn n3_digest_strategies_split_digests_as_the_store_does() {
    on_one_store((digest(), invalid_digest()), |_, (good, bad)| {
        prop_assert_eq!(Digest::parse(good.as_str()).unwrap(), good);
        match Digest::parse(&bad) {
            Err(Error::InvalidDigest { digest, .. }) => prop_assert_eq!(digest, bad),
            other => prop_assert!(false, "{bad:?}: {other:?}"),
        }
        Ok(())
    });
}

#[test]
fn p3_p8_content_strategies_push_and_pull_back_byte_for_byte() {
    let content = prop_oneof![image_content(), index_content(), artifact_content()];
    // A repository per case, so that each starts empty.
    let cases = AtomicUsize::new(0);
    on_one_store((content, tag_name()), |s, (content, tag)| {
        let repo = s.repo(&format!("app{}", cases.fetch_add(1, Ordering::Relaxed)));
        prop_assert_eq!(
            content.push(&repo, Some(&tag)).unwrap(),
            content.digest.clone()
        );
        check_pulls(&repo, &content)?;
        prop_assert_eq!(&repo.pull(&tag).unwrap().body[..], &content.body[..]);
        // An artifact is listed among the referrers of its subject, and only there.
        let referrers = |c: &Content| repo.referrers(&c.digest, None).unwrap().len();
        let is_artifact = content.body.windows(9).any(|w| w == b"\"subject\"");
        prop_assert_eq!(
            content.manifests.iter().map(referrers).sum::<usize>(),
            usize::from(is_artifact)
        );
        Ok(())
    });
}

/// Every manifest of `content`, the referenced ones too, pulls back by digest as pushed, and
/// every blob it references is stored.
fn check_pulls(repo: &Repository, content: &Content) -> Result<(), TestCaseError> {
    let pulled = repo.pull(content.digest.as_str()).unwrap();
    prop_assert_eq!(&pulled.body[..], &content.body[..]);
    prop_assert_eq!(&pulled.media_type, &content.media_type);
    for blob in &content.blobs {
        let digest = Algorithm::Sha256.digest(blob);
        prop_assert_eq!(&repo.blob(&digest).unwrap()[..], &blob[..]);
    }
    for manifest in &content.manifests {
        check_pulls(repo, manifest)?;
    }
    Ok(())
}
