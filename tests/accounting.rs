//! SPEC A1 (usage) and A2 (fsck and its repair). That a store passes fsck once repaired after
//! a crash at any point (C2) is checked by the crash tests of `tests/durability.rs`.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::{
    Store, blob_file, image_body, policy_on, push_image, push_index, push_referrer, seed_blobs,
    snapshot,
};
use ocistore::manifest::OCI_MANIFEST;
use ocistore::{
    Algorithm, CollectOptions, Digest, Error, FsckOptions, FsckReport, OnConflict, Problem,
    Registry, Repository, RepositoryUsage, Usage,
};

fn sha256(bytes: &[u8]) -> Digest {
    Algorithm::Sha256.digest(bytes)
}

/// Puts `bytes` into `repo`; returns the digest and the size.
fn put(repo: &Repository, bytes: &[u8]) -> (Digest, u64) {
    (repo.put_blob_sha256(bytes).unwrap(), bytes.len() as u64)
}

/// Pushes an image of `config` and `layers` by `tag`.
fn push(repo: &Repository, tag: &str, config: &(Digest, u64), layers: &[(Digest, u64)]) -> Digest {
    let body = serde_json::to_vec(&image_body(config, layers)).unwrap();
    repo.push_manifest(tag, OCI_MANIFEST, &body).unwrap().digest
}

fn fsck(registry: &Registry, repair: bool) -> FsckReport {
    registry
        .fsck(&FsckOptions::default().repair(repair))
        .unwrap()
}

/// Problems in a fixed order, to compare lists regardless of the order they were found in.
fn sorted(mut problems: Vec<Problem>) -> Vec<Problem> {
    problems.sort_by_key(|p| format!("{p:?}"));
    problems
}

/// Makes a file look two hours old: past the default grace period of one hour.
fn backdate(path: &Path) {
    let two_hours_ago = SystemTime::now() - Duration::from_secs(2 * 3600);
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(two_hours_ago))
        .unwrap_or_else(|e| panic!("backdate {}: {e}", path.display()));
}

fn repo_usage(name: &str, deleted: bool, unique: &[u64], shared: &[u64]) -> RepositoryUsage {
    let mut usage = RepositoryUsage::default();
    usage.name = name.to_owned();
    usage.deleted = deleted;
    usage.blobs = (unique.len() + shared.len()) as u64;
    usage.unique_bytes = unique.iter().sum();
    usage.shared_bytes = shared.iter().sum();
    usage.bytes = usage.unique_bytes + usage.shared_bytes;
    usage
}

/// A registry's usage, field by field (the struct is `#[non_exhaustive]`).
fn usage(
    blobs: u64,
    bytes: u64,
    repositories: Vec<RepositoryUsage>,
    soft_deleted_bytes: u64,
    garbage_bytes: u64,
) -> Usage {
    let mut usage = Usage::default();
    usage.blobs = blobs;
    usage.bytes = bytes;
    usage.repositories = repositories;
    usage.soft_deleted_bytes = soft_deleted_bytes;
    usage.garbage_bytes = garbage_bytes;
    usage
}

/// The report of a check that found nothing wrong in `manifests` manifests and `blobs` blobs.
fn clean_report(manifests: u64, blobs: u64) -> FsckReport {
    let mut report = FsckReport::default();
    report.manifests_checked = manifests;
    report.blobs_checked = blobs;
    report
}

// =============================================================================================
// A1: usage

#[test]
fn a1_every_figure_is_exact_on_a_hand_built_store() {
    let s = Store::new();
    assert_eq!(s.registry.usage().unwrap(), Usage::default());
    policy_on(&s, 7);
    let (a, b) = (s.repo("a"), s.repo("b"));
    // Sizes are distinct powers of ten plus a little, so every sum is unambiguous.
    let config_a = put(&a, &[1; 11]);
    let shared = put(&a, &[2; 1000]);
    let unique_a = put(&a, &[3; 200]);
    push(&a, "v1", &config_a, &[shared.clone(), unique_a.clone()]);
    b.mount_blob("a", &shared.0).unwrap();
    let config_b = put(&b, &[4; 19]);
    push(&b, "v1", &config_b, std::slice::from_ref(&shared));
    // In the bin: a manifest whose config and one layer only it uses, and the shared layer.
    let config_bin = put(&b, &[5; 30]);
    let layer_bin = put(&b, &[6; 4000]);
    push(&b, "old", &config_bin, &[shared.clone(), layer_bin.clone()]);
    b.delete_manifest("old").unwrap();
    // Referenced by no manifest at all.
    let garbage = put(&a, &[7; 50_000]);

    assert_eq!(
        s.registry.usage().unwrap(),
        usage(
            7,
            11 + 1000 + 200 + 19 + 30 + 4000 + 50_000,
            vec![
                repo_usage(
                    "a",
                    false,
                    &[config_a.1, unique_a.1, garbage.1],
                    &[shared.1]
                ),
                repo_usage(
                    "b",
                    false,
                    &[config_b.1, config_bin.1, layer_bin.1],
                    &[shared.1]
                ),
            ],
            30 + 4000,
            50_000
        )
    );
}

#[test]
fn a1_a_soft_deleted_repository_counts_until_purged_then_its_bytes_are_garbage_the_collector_frees()
{
    let s = Store::new();
    policy_on(&s, 7);
    let (app, old) = (s.repo("app"), s.repo("old"));
    let config_app = put(&app, &[1; 10]);
    let shared = put(&app, &[2; 100]);
    push(&app, "v1", &config_app, std::slice::from_ref(&shared));
    old.mount_blob("app", &shared.0).unwrap();
    let config_old = put(&old, &[3; 20]);
    let layer_old = put(&old, &[4; 300]);
    push(
        &old,
        "v1",
        &config_old,
        &[shared.clone(), layer_old.clone()],
    );
    s.registry.delete_repository("old").unwrap();

    let app_usage = repo_usage("app", false, &[10], &[100]);
    assert_eq!(
        s.registry.usage().unwrap(),
        usage(
            4,
            430,
            vec![
                app_usage.clone(),
                repo_usage("old", true, &[20, 300], &[100])
            ],
            320,
            0
        )
    );

    s.registry.purge_deleted_repository("old").unwrap();
    let purged = s.registry.usage().unwrap();
    assert_eq!(
        purged,
        usage(
            4,
            430,
            vec![repo_usage("app", false, &[10, 100], &[])],
            0,
            320
        )
    );
    // The garbage is exactly what the collector frees.
    s.advance(1);
    let collected = s
        .registry
        .collect(&CollectOptions::default().grace_period(Duration::ZERO))
        .unwrap();
    assert_eq!(
        (collected.blobs_swept, collected.bytes_swept),
        (2, purged.garbage_bytes)
    );
    let after = s.registry.usage().unwrap();
    assert_eq!((after.blobs, after.bytes, after.garbage_bytes), (2, 110, 0));
}

// =============================================================================================
// A2: fsck

#[test]
fn a2_a_clean_store_has_no_problems_and_repair_changes_nothing() {
    let s = Store::new();
    policy_on(&s, 7);
    let app = s.repo("app");
    let one = push_image(&app, "v1", "one");
    let two = push_image(&app, "v2", "two");
    push_index(&app, Some("multi"), &[&one, &two]);
    push_referrer(&app, None, &one, "sig");
    for alg in Algorithm::ALL {
        let bytes = format!("a {alg} blob");
        app.put_blob(&alg.digest(bytes.as_bytes()), &bytes).unwrap();
    }
    push_image(&app, "gone", "gone");
    app.delete_manifest("gone").unwrap();
    push_image(&s.repo("old"), "v1", "old");
    s.registry.delete_repository("old").unwrap();
    let upload = app.start_upload().unwrap();
    upload.append(b"partial").unwrap();

    // Six manifests (two images, an index, a referrer, one in the bin, one in a deleted
    // repository); thirteen blobs (two per image and referrer, three loose).
    let clean = clean_report(6, 13);
    for verify_digests in [true, false] {
        let options = FsckOptions::default().verify_digests(verify_digests);
        assert_eq!(s.registry.fsck(&options).unwrap(), clean);
    }
    let before = snapshot(&s.registry);
    assert_eq!(fsck(&s.registry, true), clean);
    assert_eq!(snapshot(&s.registry), before);
}

/// A store with every repairable and unrepairable kind of problem made by hand on disk.
struct Tampered {
    store: Store,
    missing: Digest,
    /// Same length, other bytes.
    corrupt: Digest,
    /// Longer than recorded.
    resized: Digest,
    /// Every file the repair may remove.
    strays: Vec<PathBuf>,
    unrepairable: Vec<Problem>,
    /// What a check with digests verified reports.
    problems: Vec<Problem>,
}

fn tampered() -> Tampered {
    let s = Store::new();
    let app = s.repo("app");
    let one = push_image(&app, "v1", "one");
    let two = push_image(&app, "v2", "two");
    let resized = app.put_blob_sha256(b"referenced by nothing").unwrap();
    let missing = seed_blobs("one")[1].clone();
    let corrupt = seed_blobs("two")[0].clone();
    let registry = &s.registry;
    let dir = registry.path();
    fs::remove_file(blob_file(registry, &missing)).unwrap();
    fs::write(blob_file(registry, &corrupt), b"config TWO").unwrap();
    fs::write(
        blob_file(registry, &resized),
        b"referenced by nothing, and longer",
    )
    .unwrap();
    let unrecorded = sha256(b"never recorded");
    let strays = vec![
        blob_file(registry, &unrecorded),
        dir.join("blobs/sha256/00/not-a-digest"),
        dir.join("blobs/stray-at-the-top"),
        // Named like a blob, in the wrong directory.
        dir.join("blobs/sha256/00").join(unrecorded.hex()),
        dir.join("tmp/half-written"),
        dir.join("uploads/0123456789abcdef0123456789abcdef"),
    ];
    for path in &strays {
        fs::write(path, b"never recorded").unwrap();
    }
    let unrepairable = vec![
        Problem::MissingBlobFile {
            digest: missing.clone(),
        },
        Problem::CorruptBlob {
            digest: corrupt.clone(),
            actual: sha256(b"config TWO"),
        },
        Problem::CorruptBlob {
            digest: resized.clone(),
            actual: sha256(b"referenced by nothing, and longer"),
        },
        Problem::MissingReference {
            repository: "app".into(),
            manifest: one,
            reference: missing.clone(),
        },
        Problem::MissingReference {
            repository: "app".into(),
            manifest: two,
            reference: corrupt.clone(),
        },
    ];
    let mut problems = unrepairable.clone();
    problems.extend(
        strays[..4]
            .iter()
            .map(|path| Problem::StrayBlobFile { path: path.clone() }),
    );
    problems.push(Problem::TempFile {
        path: strays[4].clone(),
    });
    problems.push(Problem::StrayUpload {
        path: strays[5].clone(),
    });
    Tampered {
        store: s,
        missing,
        corrupt,
        resized,
        strays,
        unrepairable,
        problems,
    }
}

#[test]
fn a2_each_kind_of_damage_on_disk_is_reported_exactly() {
    let t = tampered();
    let registry = &t.store.registry;
    let report = fsck(registry, false);
    assert_eq!((report.manifests_checked, report.blobs_checked), (2, 5));
    assert_eq!(sorted(report.problems), sorted(t.problems.clone()));

    // Without hashing, the corrupt blob of the right length goes unnoticed (and so does the
    // manifest that references it); the one of the wrong length is a size mismatch.
    let quick = registry
        .fsck(&FsckOptions::default().verify_digests(false))
        .unwrap();
    let expected: Vec<Problem> = t
        .problems
        .iter()
        .filter(|p| {
            !matches!(p, Problem::CorruptBlob { .. })
                && !matches!(p, Problem::MissingReference { reference, .. } if *reference == t.corrupt)
        })
        .cloned()
        .chain([Problem::SizeMismatch {
            digest: t.resized.clone(),
            recorded: 21,
            actual: 33,
        }])
        .collect();
    assert_eq!(sorted(quick.problems), sorted(expected));
    assert_eq!(quick.repaired, 0);
}

#[test]
fn a2_repair_removes_strays_only_once_older_than_the_grace_period_never_a_named_file() {
    let t = tampered();
    let registry = &t.store.registry;
    let app = t.store.repo("app");
    let session = app.start_upload().unwrap();
    session.append(b"an open session").unwrap();
    let mut named: Vec<PathBuf> = app
        .blobs(&ocistore::Page::all())
        .unwrap()
        .iter()
        .filter(|d| **d != t.missing)
        .map(|d| blob_file(registry, d))
        .collect();
    named.push(registry.path().join("uploads").join(session.id()));

    // Everything is younger than the grace period (one hour): reported, nothing removed.
    let young = fsck(registry, true);
    assert_eq!(sorted(young.problems.clone()), sorted(t.problems.clone()));
    assert_eq!(young.repaired, 0);
    assert_eq!(
        young.too_recent,
        t.strays.len() as u64,
        "each kept stray is counted"
    );
    assert!(t.strays.iter().all(|p| p.exists()));
    // A grace period given to the call overrides the registry's: nothing is that young.
    let none_younger = registry
        .fsck(
            &FsckOptions::default()
                .repair(false)
                .grace_period(Duration::ZERO),
        )
        .unwrap();
    assert_eq!(
        none_younger.too_recent, 0,
        "without repair nothing is kept or counted"
    );

    for path in t.strays.iter().chain(&named) {
        backdate(path);
    }
    let old = fsck(registry, true);
    assert_eq!(sorted(old.problems.clone()), sorted(t.problems.clone()));
    assert_eq!(old.repaired, t.strays.len() as u64);
    assert_eq!(old.too_recent, 0);
    for path in &t.strays {
        assert!(!path.exists(), "{} was not removed", path.display());
    }
    for path in &named {
        assert!(path.exists(), "{} was removed", path.display());
    }
    // Missing and corrupt blobs are reported, not repaired.
    let after = fsck(registry, true);
    assert_eq!(sorted(after.problems), sorted(t.unrepairable.clone()));
    assert_eq!(after.repaired, 0);
    // The session goes on.
    session.append(b", finished").unwrap();
    session
        .finish(&sha256(b"an open session, finished"))
        .unwrap();
}

#[test]
fn a2_with_no_grace_period_repair_removes_fresh_strays_but_no_named_file() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::builder()
        .grace_period(Duration::ZERO)
        .open(dir.path())
        .unwrap();
    let app = registry.repository("app").unwrap();
    let manifest = push_image(&app, "v1", "one");
    let session = app.start_upload().unwrap();
    let before = snapshot(&registry);
    let stray = blob_file(&registry, &sha256(b"stray"));
    let temp = registry.path().join("tmp/fresh");
    for path in [&stray, &temp] {
        fs::write(path, b"stray").unwrap();
    }
    let report = fsck(&registry, true);
    assert_eq!(
        report.problems,
        [
            Problem::StrayBlobFile {
                path: stray.clone()
            },
            Problem::TempFile { path: temp.clone() },
        ]
    );
    assert_eq!(report.repaired, 2);
    assert_eq!(snapshot(&registry), before);
    assert_eq!(app.pull("v1").unwrap().digest, manifest);
    session.append(b"still open").unwrap();
}

#[test]
fn a2_a_blob_record_lost_leaves_dangling_links_repaired_and_its_file_kept_to_be_put_again() {
    let Store {
        dir,
        registry,
        clock,
    } = Store::new();
    let (app, other) = (
        registry.repository("app").unwrap(),
        registry.repository("other").unwrap(),
    );
    let manifest = push_image(&app, "v1", "one");
    let layer = seed_blobs("one")[1].clone();
    other.mount_blob("app", &layer).unwrap();
    drop((app, other, registry));
    // Damage the database itself: the layer's record goes.
    {
        let db = redb::Database::create(dir.path().join("metadata.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(redb::TableDefinition::<&str, (u64, u64)>::new("blobs"))
            .unwrap()
            .remove(layer.as_str())
            .unwrap();
        txn.commit().unwrap();
    }
    let registry = common::open(dir.path(), &clock);
    let file = blob_file(&registry, &layer);
    backdate(&file);
    let dangling = |repository: &str| Problem::DanglingLink {
        repository: repository.into(),
        digest: layer.clone(),
    };
    let unresolved = Problem::MissingReference {
        repository: "app".into(),
        manifest,
        reference: layer.clone(),
    };
    let stray = Problem::StrayBlobFile { path: file.clone() };

    let report = fsck(&registry, true);
    assert_eq!(
        report.problems,
        [
            dangling("app"),
            dangling("other"),
            unresolved.clone(),
            stray.clone()
        ]
    );
    assert_eq!(report.repaired, 2, "the links go, the file stays");
    assert_eq!((report.kept_named, report.too_recent), (1, 0));
    assert_eq!(fsck(&registry, true).problems, [unresolved, stray]);
    // The kept file lets the blob be put again from its own bytes.
    let app = registry.repository("app").unwrap();
    app.put_blob(&layer, fs::read(&file).unwrap()).unwrap();
    assert_eq!(fsck(&registry, false), clean_report(1, 2));
}

/// S17 closed the gap this reported: the child of an index in the bin cannot be purged by hand,
/// so the index comes back with its child and fsck finds nothing.
#[test]
fn a2_an_index_and_its_child_in_the_bin_leave_nothing_for_fsck_to_report() {
    let s = Store::new();
    policy_on(&s, 7);
    let app = s.repo("app");
    let child = push_image(&app, "v1", "one");
    let index = push_index(&app, Some("multi"), &[&child]);
    app.delete_manifest("multi").unwrap();
    app.delete_manifest("v1").unwrap();
    let err = app.purge_deleted_manifest(&child).unwrap_err();
    assert!(
        matches!(&err, Error::ManifestReferenced { digest, index: i, .. } if digest == &child && i == &index),
        "{err:?}"
    );
    assert_eq!(fsck(&s.registry, false).problems, []);
    app.restore(ocistore::Restore::Digest(&index), OnConflict::Refuse)
        .unwrap();
    assert_eq!(fsck(&s.registry, false).problems, []);
}

#[test]
fn a2_a_grace_period_given_to_the_call_overrides_the_registrys() {
    // The registry's grace period is the default hour: a fresh stray stays, and is counted.
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).unwrap();
    let app = registry.repository("app").unwrap();
    push_image(&app, "v1", "one");
    let stray = blob_file(&registry, &sha256(b"stray"));
    fs::write(&stray, b"stray").unwrap();
    let kept = fsck(&registry, true);
    assert_eq!((kept.repaired, kept.too_recent), (0, 1));
    assert!(stray.exists());
    // The same check with no grace period for this call removes it (after a crash, say).
    let repaired = registry
        .fsck(
            &FsckOptions::default()
                .repair(true)
                .grace_period(Duration::ZERO),
        )
        .unwrap();
    assert_eq!((repaired.repaired, repaired.too_recent), (1, 0));
    assert!(!stray.exists());
    assert!(fsck(&registry, false).problems.is_empty());
}
