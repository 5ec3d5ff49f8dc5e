//! The fuzz targets of `fuzz/` on a stable toolchain: every file of their seed corpus
//! (`fuzz/corpus/<target>/`) and every crash they found and that was kept
//! (`fuzz/artifacts/<target>/`) replays through the same `ocistore_testkit::fuzz` function
//! as under `cargo fuzz`; and a few random plans of the `ops` target run here too.
//!
//! `cargo test --test fuzz_corpus -- --ignored write_ops_seeds` rewrites the `ops` seeds.

use std::path::{Path, PathBuf};

use ocistore::manifest::OCI_MANIFEST;
use ocistore_testkit::fuzz::{self, Fault};
use ocistore_testkit::{BLOBS, DigestChoice, ErrKind, FinishDigest, Op, Value};
use proptest::prelude::*;

/// `fuzz/` at the root of the workspace.
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// Replays the corpus and the artifacts of `target`; the corpus must not be empty.
fn replay(target: &str, body: fn(&[u8])) {
    let corpus = fuzz::replay_dir(&fuzz_dir().join("corpus").join(target), body);
    assert!(corpus >= 3, "fuzz/corpus/{target} holds {corpus} files");
    fuzz::replay_dir(&fuzz_dir().join("artifacts").join(target), body);
}

#[test]
fn n1_n3_names_corpus_replays() {
    replay("names", fuzz::names);
}

#[test]
fn p3_p6_manifest_corpus_replays() {
    replay("manifest", |data| {
        fuzz::manifest(data);
    });
}

#[test]
fn p3_p4_manifest_seeds_are_accepted_and_refused() {
    let seed = |name: &str| {
        let data = std::fs::read(fuzz_dir().join("corpus/manifest").join(name)).unwrap();
        fuzz::manifest(&data).expect("not empty")
    };
    for accepted in [
        "oci-image",
        "docker-image",
        "oci-index",
        "docker-list",
        "referrer",
    ] {
        let digest = seed(accepted).unwrap_or_else(|e| panic!("{accepted}: {e:?}"));
        let _ = digest;
    }
    for refused in [
        "mismatch",
        "schema1",
        "array",
        "wrong-digest",
        "unknown-blob",
        "not-utf8",
    ] {
        assert!(seed(refused).is_err(), "{refused}");
    }
}

#[test]
fn c1_c2_ops_corpus_replays() {
    replay("ops", fuzz::ops);
}

#[test]
fn c2_ops_corpus_reaches_failures_and_crashes() {
    let dir = fuzz_dir().join("corpus/ops");
    let mut total = fuzz::Ran::default();
    for entry in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        let ran = fuzz::run_with_faults(&fuzz::plan_from(&data)).unwrap();
        total.failed += ran.failed;
        total.crashed_at_write += ran.crashed_at_write;
        total.crashed_after += ran.crashed_after;
        total.outcomes.extend(ran.outcomes);
    }
    assert!(total.failed >= 4, "{total:?}");
    assert!(total.crashed_at_write >= 2, "{total:?}");
    assert!(total.crashed_after >= 1, "{total:?}");
    assert!(
        total.outcomes.iter().filter(|o| o.is_ok()).count() >= 20,
        "{total:?}"
    );
}

#[test]
fn c2_ops_inputs_are_plans_chunk_by_chunk() {
    let data: Vec<u8> = (0..=255u8).cycle().take(5 * fuzz::CHUNK + 3).collect();
    let plan = fuzz::plan_from(&data);
    assert_eq!(plan.len(), 5, "a partial chunk is no op");
    assert_eq!(format!("{plan:?}"), format!("{:?}", fuzz::plan_from(&data)));
    // An op depends on its chunk alone.
    let second = fuzz::plan_from(&data[fuzz::CHUNK..2 * fuzz::CHUNK]);
    assert_eq!(format!("{:?}", plan[1]), format!("{:?}", second[0]));
    assert!(fuzz::plan_from(&[]).is_empty());
    let long = vec![7; 100 * fuzz::CHUNK];
    assert_eq!(fuzz::plan_from(&long).len(), fuzz::MAX_OPS);
}

/// Found by the `manifest` target: serde checks UTF-8 only in the fields it reads, so a body
/// with invalid UTF-8 in an annotation or an unknown field was stored as a manifest.
#[test]
fn p3_n5_a_manifest_that_is_not_utf8_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let repo = ocistore::Registry::open(dir.path())
        .unwrap()
        .repository("app")
        .unwrap();
    let config = repo.put_blob_sha256(b"{}").unwrap();
    let body = |value: &[u8]| {
        let mut body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[],"annotations":{{"a":""#
        )
        .into_bytes();
        body.extend_from_slice(value);
        body.extend_from_slice(br#""},"x-vendor":""#);
        body.extend_from_slice(value);
        body.extend_from_slice(br#""}"#);
        body
    };
    for bad in [&b"am\x9c\xcd4"[..], b"\xff", b"\xed\xa0\x80"] {
        let err = repo
            .push_manifest("v1", OCI_MANIFEST, &body(bad))
            .unwrap_err();
        assert!(
            matches!(&err, ocistore::Error::InvalidManifest { reason } if reason.contains("UTF-8")),
            "{err:?}"
        );
    }
    assert!(repo.tags(&ocistore::Page::all()).unwrap().is_empty());
    repo.push_manifest("v1", OCI_MANIFEST, &body("amd64 \u{e9}".as_bytes()))
        .unwrap();
}

/// C4 under the `ops` target's faults: a stray left by a failed batch is bytes the store
/// holds, which a full disk lets a put reuse; a failure armed for a write that the full disk
/// refuses first never comes; a crash at a refused write loses nothing; the disk stays full
/// across the crash, and a crash after it has room again leaves it so.
#[test]
fn c4_ops_plans_on_a_full_disk_agree_with_the_model_under_faults() {
    let put = |repo, content| Op::PutBlobSha256 { repo, content };
    let finish = Op::FinishUpload {
        slot: 0,
        digest: FinishDigest::Right(ocistore::Algorithm::Sha256),
    };
    let plan = [
        (put("team/app", 0), Fault::Clean),
        (Op::StartUpload { repo: "team/app" }, Fault::Clean),
        (Op::AppendChunk { slot: 0, chunk: 0 }, Fault::Clean),
        // Its second put fails: the first one's bytes stay, a stray.
        (
            Op::Batch(vec![put("team/app", 1), put("team/app", 2)]),
            Fault::FailWrite { skip: 1 },
        ),
        (Op::DiskFull(true), Fault::Clean),
        (put("lib", 1), Fault::FailWrite { skip: 0 }),
        (put("lib", 2), Fault::FailWrite { skip: 0 }),
        (
            Op::AppendChunk { slot: 0, chunk: 1 },
            Fault::CrashAtWrite { skip: 0 },
        ),
        (finish.clone(), Fault::Clean),
        (Op::Health, Fault::Clean),
        (Op::DiskFull(false), Fault::CrashAfter),
        (Op::AppendChunk { slot: 0, chunk: 1 }, Fault::Clean),
        (finish, Fault::Clean),
        (put("lib", 2), Fault::Clean),
    ];
    let ran = fuzz::run_with_faults(&plan).unwrap();
    assert_eq!(
        (ran.failed, ran.crashed_at_write, ran.crashed_after),
        (1, 1, 1),
        "{ran:?}"
    );
    let sha256 = |bytes: &[u8]| ocistore::Algorithm::Sha256.digest(bytes).to_string();
    // The outcomes of every op but the failed batch and the op that died at its write.
    let full = Err(ErrKind::StorageFull);
    assert_eq!(ran.outcomes[4], Ok(Value::Digest(sha256(BLOBS[1]))));
    assert_eq!(ran.outcomes[5], full);
    assert_eq!(ran.outcomes[6], full, "the finish after the crash");
    assert_eq!(ran.outcomes[9], Ok(Value::Offset(9)));
    assert_eq!(ran.outcomes[10], Ok(Value::Unit));
    assert_eq!(ran.outcomes[11], Ok(Value::Digest(sha256(BLOBS[2]))));
}

proptest! {
    #![proptest_config(ocistore_testkit::config(8))]

    /// C1, C2: random plans of the `ops` target, with their injected failures and crashes.
    #[test]
    fn c1_c2_random_plans_with_faults_agree_with_the_model(plan in fuzz::plan()) {
        fuzz::run_with_faults(&plan)?;
    }
}

/// The chunk after `from` whose op and fault `pick` accepts, and the one after it.
fn find(from: &mut u64, pick: impl Fn(&Op, Fault) -> bool) -> [u8; fuzz::CHUNK] {
    loop {
        *from += 1;
        let mut chunk = [0; fuzz::CHUNK];
        chunk[..8].copy_from_slice(&from.to_le_bytes());
        let (op, fault) = fuzz::step_from(&chunk);
        if pick(&op, fault) {
            return chunk;
        }
    }
}

/// Writes the `ops` seeds: `uploads` and `batches`, sessions and batches whose writes fail or
/// crash; `random-N`, random plans that hold at least three faults.
#[test]
#[ignore = "rewrites the ops seeds"]
fn write_ops_seeds() {
    let dir = fuzz_dir().join("corpus/ops");
    std::fs::create_dir_all(&dir).unwrap();
    let mut n = 0;
    let clean = |f: Fault| f == Fault::Clean;
    let fail = |f: Fault| f == Fault::FailWrite { skip: 0 };
    let crash = |f: Fault| f == Fault::CrashAtWrite { skip: 0 };
    let start = |op: &Op| matches!(op, Op::StartUpload { repo: "team/app" });
    let append = |op: &Op| matches!(op, Op::AppendChunk { slot: 0, .. });
    let finish = |op: &Op| {
        matches!(
            op,
            Op::FinishUpload {
                slot: 0,
                digest: FinishDigest::Right(_)
            }
        )
    };
    let uploads = [
        find(&mut n, |op, f| start(op) && clean(f)),
        find(&mut n, |op, f| append(op) && clean(f)),
        find(&mut n, |op, f| append(op) && fail(f)),
        find(&mut n, |op, f| append(op) && crash(f)),
        find(&mut n, |op, f| matches!(op, Op::Reopen) && clean(f)),
        find(&mut n, |op, f| finish(op) && fail(f)),
        find(&mut n, |op, f| finish(op) && crash(f)),
        find(&mut n, |op, f| finish(op) && f == Fault::CrashAfter),
        find(&mut n, |op, f| start(op) && fail(f)),
        find(&mut n, |op, f| {
            matches!(op, Op::Collect { dry_run: false }) && clean(f)
        }),
    ];
    let batch = |op: &Op| matches!(op, Op::Batch(ops) if ops.len() >= 3);
    let put = |op: &Op| {
        matches!(
            op,
            Op::PutBlob {
                digest: DigestChoice::Right,
                ..
            }
        )
    };
    let batches = [
        find(&mut n, |op, f| put(op) && clean(f)),
        find(&mut n, |op, f| batch(op) && fail(f)),
        find(&mut n, |op, f| {
            batch(op) && f == Fault::FailWrite { skip: 1 }
        }),
        find(&mut n, |op, f| {
            batch(op) && f == Fault::CrashAtWrite { skip: 1 }
        }),
        find(&mut n, |op, f| {
            matches!(op, Op::PushImage { .. }) && clean(f)
        }),
        find(&mut n, |op, f| put(op) && fail(f)),
        find(&mut n, |op, f| {
            matches!(op, Op::Collect { dry_run: false }) && clean(f)
        }),
        find(&mut n, |op, f| batch(op) && clean(f)),
    ];
    let write = |name: &str, chunks: &[[u8; fuzz::CHUNK]]| {
        let data = chunks.concat();
        fuzz::run_with_faults(&fuzz::plan_from(&data)).unwrap();
        std::fs::write(dir.join(name), &data).unwrap();
    };
    write("uploads", &uploads);
    write("batches", &batches);
    let mut kept = 0;
    let mut seed = 0u64;
    while kept < 4 {
        let chunks: Vec<[u8; fuzz::CHUNK]> =
            (0..24).map(|_| find(&mut seed, |_, _| true)).collect();
        let plan = fuzz::plan_from(&chunks.concat());
        if plan.iter().filter(|(_, f)| *f != Fault::Clean).count() >= 3 {
            write(&format!("random-{kept}"), &chunks);
            kept += 1;
        }
        seed = seed * 7 + 1_000_003;
    }
}
