//! C4 and C5 on a real full file system: a size-limited tmpfs that each test mounts for its
//! store (mounting needs root; CI runs as root). The disk is filled through the API, every
//! refusal is checked to change nothing, space is freed through the API only, and writes must
//! resume without a reopen; nothing acknowledged may be lost.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{START, fails_writing_nothing, upload_image};
use ocistore::manifest::OCI_MANIFEST;
use ocistore::{
    CollectOptions, Digest, Error, FsckOptions, ManualClock, OnConflict, OpenMode, Registry,
    Repository, SoftDeletePolicy,
};
use tempfile::TempDir;

/// A tmpfs of `mib` MiB mounted on a new directory, unmounted when dropped.
struct SmallDisk {
    dir: TempDir,
}

impl SmallDisk {
    fn new(mib: u32) -> SmallDisk {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status();
        assert!(
            status.as_ref().is_ok_and(|s| s.success()),
            "mounting a {mib} MiB tmpfs on {} failed ({status:?}): the C4/C5 tests need root to \
             mount a small file system (CI runs as root); run them as root: \
             `sudo -E cargo test --test storage_full`",
            dir.path().display()
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily if a failed test left the store open on it.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A store on a small disk of its own of `mib` MiB, on a manual clock, with the soft delete
/// policy on (retention one day) if `soft_delete`. The disk is unmounted when dropped: keep it
/// until the store is closed.
fn full_store(mib: u32, soft_delete: bool) -> (SmallDisk, ManualClock, Registry) {
    let disk = SmallDisk::new(mib);
    let clock = ManualClock::new(START);
    let registry = open(disk.path(), &clock);
    if soft_delete {
        registry
            .set_soft_delete_policy(SoftDeletePolicy::enabled(1).unwrap())
            .unwrap();
    }
    (disk, clock, registry)
}

fn open(dir: &Path, clock: &ManualClock) -> Registry {
    open_in(dir, clock, OpenMode::Exclusive)
}

/// The reserve every store of these tests keeps.
const RESERVE: u64 = 2 << 20;

fn open_in(dir: &Path, clock: &ManualClock, mode: OpenMode) -> Registry {
    Registry::builder()
        .clock(clock.clone())
        .cache_size(4 << 20)
        .space_reserve(RESERVE)
        .grace_period(Duration::ZERO)
        .mode(mode)
        .open(dir)
        .expect("open store")
}

/// Bytes that do not repeat from one seed to the next, so no two layers share a blob.
fn layer(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

fn is_full(e: &Error) -> bool {
    matches!(e, Error::StorageFull { .. })
}

/// Pushes images of one 512 KiB layer each, tagged `t<n>`, until the disk refuses one;
/// returns the acknowledged ones (tag → digest). The refusal must be `StorageFull`.
fn fill(repo: &Repository) -> BTreeMap<String, Digest> {
    let mut acknowledged = BTreeMap::new();
    for n in 0.. {
        let push = || -> ocistore::Result<Digest> {
            let config = repo.put_blob_sha256(format!("{{\"n\":{n}}}"))?;
            let layer = layer(n, 512 << 10);
            let digest = repo.put_blob_sha256(&layer)?;
            let body = common::image_body(
                &(config, format!("{{\"n\":{n}}}").len() as u64),
                &[(digest, layer.len() as u64)],
            );
            repo.push_manifest(
                &format!("t{n}"),
                OCI_MANIFEST,
                &serde_json::to_vec(&body).unwrap(),
            )
            .map(|pushed| pushed.digest)
        };
        match push() {
            Ok(digest) => {
                acknowledged.insert(format!("t{n}"), digest);
            }
            Err(e) => {
                assert!(
                    is_full(&e),
                    "a full disk must refuse with StorageFull, got {e}"
                );
                assert!(n > 4, "the disk filled after only {n} images");
                return acknowledged;
            }
        }
    }
    unreachable!()
}

/// Every acknowledged image still pulls whole, every layer verified by its digest.
fn all_read_back(repo: &Repository, acknowledged: &BTreeMap<String, Digest>) {
    for (tag, digest) in acknowledged {
        let pulled = repo.pull(tag).unwrap_or_else(|e| panic!("pull {tag}: {e}"));
        assert_eq!(&pulled.digest, digest);
        for reference in repo.manifest(tag).unwrap().references {
            let bytes = repo.blob(&reference.digest).unwrap();
            assert_eq!(
                reference.digest.algorithm().digest(&bytes),
                reference.digest
            );
        }
    }
}

/// Collects every blob nothing references: a second later, so that the zero grace period has
/// passed for every link (the manual clock stands still otherwise).
fn collect(registry: &Registry, clock: &ManualClock) -> ocistore::CollectReport {
    clock.advance(Duration::from_secs(1));
    registry.collect(&CollectOptions::default()).unwrap()
}

fn fsck_is_clean(registry: &Registry) {
    let report = registry.fsck(&FsckOptions::default()).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn c4_a_full_disk_refuses_writes_then_frees_space_through_the_api_and_writes_resume() {
    let (_disk, clock, registry) = full_store(24, false);
    let repo = registry.repository("team/app").unwrap();
    let mut acknowledged = fill(&repo);
    let health = registry.health();
    assert!(health.storage_full && !health.writable, "{health:?}");
    assert!(health.problem.is_some());

    // Every write that adds is refused with StorageFull and changes nothing.
    let other = registry.repository("team/other").unwrap();
    let (first_tag, first) = acknowledged
        .iter()
        .next()
        .map(|(t, d)| (t.clone(), d.clone()))
        .unwrap();
    let config = repo.manifest(&first_tag).unwrap().references[0]
        .digest
        .clone();
    type Call<'a> = Box<dyn FnOnce() -> ocistore::Result<()> + 'a>;
    let refusals: Vec<(&str, Call<'_>)> = vec![
        (
            "put_blob",
            Box::new(|| repo.put_blob_sha256(b"one byte more").map(drop)),
        ),
        ("start_upload", Box::new(|| repo.start_upload().map(drop))),
        (
            "push_manifest",
            Box::new(|| {
                let body = common::image_body(&(config.clone(), repo.blob_size(&config)?), &[]);
                repo.push_manifest("new", OCI_MANIFEST, &serde_json::to_vec(&body).unwrap())
                    .map(drop)
            }),
        ),
        ("tag", Box::new(|| repo.tag("another", &first))),
        (
            "mount_blob",
            Box::new(|| other.mount_blob("team/app", &config)),
        ),
        (
            "batch",
            Box::new(|| registry.batch(|b| b.untag(&repo, &first_tag))),
        ),
    ];
    for (call, f) in refusals {
        let e = fails_writing_nothing(&registry, f);
        assert!(is_full(&e), "{call} on a full disk: {e}");
    }

    // Reads go on.
    all_read_back(&repo, &acknowledged);

    // Free space through the API only: delete half the images, collect their layers.
    let doomed: Vec<String> = acknowledged.keys().step_by(2).cloned().collect();
    for tag in &doomed {
        repo.delete_manifest(tag)
            .unwrap_or_else(|e| panic!("delete {tag} on a full disk: {e}"));
        acknowledged.remove(tag);
    }
    let report = collect(&registry, &clock);
    assert!(report.blobs_swept >= doomed.len() as u64, "{report:?}");

    // Writes resume without a reopen.
    assert!(registry.health().writable, "{:?}", registry.health());
    let body = upload_image(&repo, b"{\"after\":1}", &[&layer(1 << 40, 256 << 10)]);
    let digest = repo
        .push_manifest("after", OCI_MANIFEST, &body)
        .unwrap()
        .digest;
    acknowledged.insert("after".into(), digest);
    all_read_back(&repo, &acknowledged);
    fsck_is_clean(&registry);
}

#[test]
fn c4_with_soft_delete_on_the_bin_is_emptied_through_the_api_on_a_full_disk() {
    let (_disk, clock, registry) = full_store(24, true);
    let repo = registry.repository("app").unwrap();
    let acknowledged = fill(&repo);
    // Deleting a repository into the bin, then purging the bin, and collecting, all commit.
    registry.delete_repository("app").unwrap();
    assert_eq!(registry.deleted_repositories().unwrap().len(), 1);
    assert!(
        !registry.health().writable,
        "the bin still holds every layer"
    );
    registry.purge_deleted_repository("app").unwrap();
    collect(&registry, &clock);
    assert!(registry.health().writable, "{:?}", registry.health());
    let repo = registry.repository("app").unwrap();
    let body = upload_image(&repo, b"{}", &[b"a layer after the purge"]);
    repo.push_manifest("v2", OCI_MANIFEST, &body).unwrap();
    assert!(acknowledged.len() > 4);
    fsck_is_clean(&registry);
}

#[test]
fn c4_autopurge_runs_on_a_full_disk() {
    let (_disk, clock, registry) = full_store(24, true);
    let repo = registry.repository("app").unwrap();
    let acknowledged = fill(&repo);
    for tag in acknowledged.keys() {
        repo.delete_manifest(tag).unwrap();
    }
    clock.advance(Duration::from_secs(2 * 86_400));
    let report = registry.run_now().unwrap();
    assert_eq!(report.manifests, acknowledged.len());
    collect(&registry, &clock);
    assert!(registry.health().writable);
    fsck_is_clean(&registry);
}

/// Manifest bodies live in the database: filling the disk with them makes redb's commit fail
/// for lack of space, after which redb refuses every call until the database is reopened.
#[test]
fn c5_after_a_failed_commit_the_store_reopens_itself_and_the_next_call_works() {
    let (disk, clock, registry) = full_store(16, false);
    let repo = registry.repository("app").unwrap();
    let config = repo.put_blob_sha256(b"{}").unwrap();
    let mut acknowledged = BTreeMap::new();
    let failure = loop {
        let n = acknowledged.len();
        // A large annotation makes a body of about 1 MiB that no other body repeats.
        let note: String = layer(n as u64, 512 << 10)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": common::CONFIG_TYPE, "digest": config, "size": 2},
            "layers": [],
            "annotations": {"note": note},
        });
        match repo.push_manifest(
            &format!("m{n}"),
            OCI_MANIFEST,
            &serde_json::to_vec(&body).unwrap(),
        ) {
            Ok(pushed) => {
                acknowledged.insert(format!("m{n}"), pushed.digest);
            }
            Err(e) => break e,
        }
        assert!(n < 1000, "the disk never filled");
    };
    // The commit of the database failed, not a blob write: redb now refuses every call until the
    // database is reopened.
    assert!(
        matches!(&failure, Error::StorageFull { path } if path.ends_with("metadata.redb")),
        "{failure}"
    );
    // The next call works: a read, then deletes that free space.
    assert_eq!(
        repo.tags(&ocistore::Page::all()).unwrap().len(),
        acknowledged.len()
    );
    let doomed: Vec<String> = acknowledged
        .keys()
        .take(acknowledged.len() / 2 + 1)
        .cloned()
        .collect();
    for tag in &doomed {
        repo.delete_manifest(tag)
            .unwrap_or_else(|e| panic!("delete {tag}: {e}"));
        acknowledged.remove(tag);
    }
    // Give the store time to notice the room it has again; then writes resume.
    let health = registry.health();
    assert!(health.writable, "{health:?}");
    repo.put_blob_sha256(b"after").unwrap();
    all_read_back(&repo, &acknowledged);
    fsck_is_clean(&registry);
    // And what was acknowledged survives a reopen.
    drop((repo, registry));
    let registry = open(disk.path(), &clock);
    all_read_back(&registry.repository("app").unwrap(), &acknowledged);
}

#[test]
fn c4_a_store_opens_on_a_disk_full_to_the_last_byte() {
    let disk = SmallDisk::new(16);
    let clock = ManualClock::new(START);
    let acknowledged = {
        let registry = open(disk.path(), &clock);
        fill(&registry.repository("app").unwrap())
    };
    // Fill the last bytes with a file of someone else's.
    let hog = disk.path().join("hog");
    let mut chunk = vec![1u8; 4096];
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&hog).unwrap();
        while f.write_all(&chunk).is_ok() {}
        chunk.truncate(1);
        while f.write_all(&chunk).is_ok() {}
    }
    let registry = open(disk.path(), &clock);
    let repo = registry.repository("app").unwrap();
    all_read_back(&repo, &acknowledged);
    for tag in acknowledged.keys() {
        repo.delete_manifest(tag)
            .unwrap_or_else(|e| panic!("delete {tag}: {e}"));
    }
    collect(&registry, &clock);
    assert!(registry.health().writable, "{:?}", registry.health());
    repo.put_blob_sha256(b"after").unwrap();
}

#[test]
fn c4_binned_manifests_survive_a_full_disk_whole_and_restore_once_there_is_room() {
    let (_disk, clock, registry) = full_store(24, true);
    let repo = registry.repository("app").unwrap();
    let mut live = fill(&repo);
    // Into the bin: half of them; they keep their layers (S14), so the disk stays full.
    let mut binned = BTreeMap::new();
    for tag in live.keys().step_by(2).cloned().collect::<Vec<_>>() {
        repo.delete_manifest(&tag).unwrap();
        binned.insert(tag.clone(), live.remove(&tag).unwrap());
    }
    assert!(!registry.health().writable);
    // Restoring adds to the store: refused while full, and changes nothing.
    let (tag, digest) = binned
        .iter()
        .next()
        .map(|(t, d)| (t.clone(), d.clone()))
        .unwrap();
    let e = fails_writing_nothing(&registry, || {
        repo.restore(
            ocistore::Restore::TagAndDigest(&tag, &digest),
            OnConflict::Refuse,
        )
    });
    assert!(is_full(&e), "{e}");
    // Purge half of the bin by hand, collect: room again.
    for (_, digest) in binned.iter().step_by(2) {
        repo.purge_deleted_manifest(digest).unwrap();
    }
    binned = binned.into_iter().skip(1).step_by(2).collect();
    collect(&registry, &clock);
    assert!(registry.health().writable, "{:?}", registry.health());
    // Every manifest still in the bin comes back whole.
    for (tag, digest) in &binned {
        repo.restore(
            ocistore::Restore::TagAndDigest(tag, digest),
            OnConflict::Refuse,
        )
        .unwrap();
    }
    live.extend(binned);
    all_read_back(&repo, &live);
    fsck_is_clean(&registry);
}

/// The reserve file's identity and size, if it is there.
fn reserve(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(dir.join("space-reserve")).ok()?;
    Some((m.ino(), m.len()))
}

/// Two shared handles behave as two processes (their locks belong to their open files): the
/// full mode one of them enters holds for both, and the reserve is taken back once.
#[test]
fn c4_in_a_shared_store_a_full_disk_in_one_process_holds_back_every_other() {
    let disk = SmallDisk::new(24);
    let clock = ManualClock::new(START);
    let a = open_in(disk.path(), &clock, OpenMode::Shared);
    let b = open_in(disk.path(), &clock, OpenMode::Shared);
    assert_eq!(reserve(disk.path()).map(|r| r.1), Some(RESERVE));
    let mut acknowledged = fill(&a.repository("app").unwrap());
    // A released the reserve: B knows without having failed a write itself.
    assert_eq!(reserve(disk.path()), None);
    let health = b.health();
    assert!(health.storage_full && !health.writable, "{health:?}");

    // B's writes that add are refused before they write anything, the space A freed included.
    let repo = b.repository("app").unwrap();
    let (first_tag, first) = acknowledged.first_key_value().unwrap();
    let (first_tag, first) = (first_tag.clone(), first.clone());
    type Call<'a> = Box<dyn FnOnce() -> ocistore::Result<()> + 'a>;
    let refusals: Vec<(&str, Call<'_>)> = vec![
        (
            "put_blob",
            Box::new(|| repo.put_blob_sha256(layer(1 << 41, 64 << 10)).map(drop)),
        ),
        ("start_upload", Box::new(|| repo.start_upload().map(drop))),
        ("tag", Box::new(|| repo.tag("another", &first))),
        (
            "batch",
            Box::new(|| b.batch(|batch| batch.untag(&repo, &first_tag))),
        ),
    ];
    for (call, f) in refusals {
        let e = fails_writing_nothing(&b, f);
        assert!(is_full(&e), "{call} in B on a disk A found full: {e}");
    }
    assert_eq!(
        reserve(disk.path()),
        None,
        "a refusal took the reserve back"
    );

    // B's deletes and collector commit, in the room A's release gave.
    let doomed: Vec<String> = acknowledged.keys().step_by(2).cloned().collect();
    for tag in &doomed {
        repo.delete_manifest(tag)
            .unwrap_or_else(|e| panic!("delete {tag} in B: {e}"));
        acknowledged.remove(tag);
    }
    collect(&b, &clock);

    // Both handles race to take the reserve back: one does, once, and both then write.
    let (a_repo, b_repo) = (a.repository("app").unwrap(), repo.clone());
    std::thread::scope(|s| {
        for n in 0..8u64 {
            let repo = if n % 2 == 0 { &a_repo } else { &b_repo };
            s.spawn(move || repo.put_blob_sha256(layer(1 << 42 | n, 4 << 10)).unwrap());
        }
    });
    let taken = reserve(disk.path()).expect("the reserve was taken back");
    assert_eq!(taken.1, RESERVE);
    for registry in [&a, &b] {
        let health = registry.health();
        assert!(health.writable && !health.storage_full, "{health:?}");
    }
    a_repo.put_blob_sha256(b"after, in A").unwrap();
    b_repo.put_blob_sha256(b"after, in B").unwrap();
    assert_eq!(
        reserve(disk.path()),
        Some(taken),
        "the reserve was taken again"
    );
    all_read_back(&a_repo, &acknowledged);
    fsck_is_clean(&b);
}

/// A read-only handle keeps no reserve: it never takes it, and never releases it.
#[test]
fn c4_a_read_only_handle_never_touches_the_reserve() {
    let disk = SmallDisk::new(24);
    let clock = ManualClock::new(START);
    let writer = open_in(disk.path(), &clock, OpenMode::Shared);
    let held = reserve(disk.path()).expect("the writer's reserve");
    let reader = open_in(disk.path(), &clock, OpenMode::ReadOnly);
    let e = reader
        .repository("app")
        .unwrap()
        .put_blob_sha256(b"refused")
        .unwrap_err();
    assert!(matches!(e, Error::ReadOnly { .. }), "{e}");
    let health = reader.health();
    assert!(!health.writable && !health.storage_full, "{health:?}");
    assert!(health.problem.unwrap().contains("read-only"));
    drop(reader);
    assert_eq!(reserve(disk.path()), Some(held));
    // The writer fills the disk and releases it; a read-only open does not take it back.
    fill(&writer.repository("app").unwrap());
    assert_eq!(reserve(disk.path()), None);
    let reader = open_in(disk.path(), &clock, OpenMode::ReadOnly);
    let tags = reader
        .repository("app")
        .unwrap()
        .tags(&ocistore::Page::all());
    assert!(tags.unwrap().len() > 4);
    assert_eq!(reserve(disk.path()), None);
}
