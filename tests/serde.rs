//! The JSON forms of the public types (`docs/json.md`): every report, listing and option built
//! for real on a store, serialized, its shape checked and read back equal. And the stored
//! forms, which the public ones must not change: records keep their times as integer
//! nanoseconds, so a store written by an older build reads back the same.

mod common;

use std::fmt::Debug;
use std::time::Duration;

use common::{START, Store, policy_on, push_image, push_index, push_referrer, push_untagged};
use ocistore::manifest::{OCI_INDEX, OCI_MANIFEST};
use ocistore::{
    Algorithm, CollectOptions, CollectReport, Digest, FsckOptions, Item, Locks, ManifestKind,
    ManifestQuery, Page, Phase, Problem, Progress, PurgeOptions, RepositoryState, RetentionPolicy,
    TagCause, Timestamp,
};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const REPOSITORIES: TableDefinition<&str, &[u8]> = TableDefinition::new("repositories");
const MANIFESTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("manifests");
const TAG_HISTORY: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("tag_history");

/// A time with nanoseconds, which only an integer or nine fractional digits keep.
fn odd_time() -> Timestamp {
    START + Duration::from_nanos(123_456_789)
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("stored records are JSON")
}

/// `value` as JSON, after checking that it reads back equal, from text and from a `Value`.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) -> Value {
    let text = serde_json::to_string(value).unwrap();
    let back: T = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(&back, value, "read back from {text}");
    let json = serde_json::to_value(value).unwrap();
    assert_eq!(&serde_json::from_value::<T>(json.clone()).unwrap(), value);
    json
}

/// The field names of a JSON object, sorted.
fn fields(json: &Value) -> Vec<&str> {
    let mut names: Vec<&str> = json
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {json}"))
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    names
}

/// The time `secs` seconds after `START`, as RFC 3339 text.
fn text_at(secs: u64) -> Value {
    json!(humantime::format_rfc3339_seconds((START + Duration::from_secs(secs)).into()).to_string())
}

const DAY: u64 = 86_400;

// =============================================================================================
// Values

#[test]
fn timestamps_are_rfc3339_text_with_as_many_fractional_digits_as_they_need() {
    let cases = [
        (Timestamp::EPOCH, "1970-01-01T00:00:00Z"),
        (START, "2026-01-01T00:00:00Z"),
        (
            START + Duration::from_millis(250),
            "2026-01-01T00:00:00.250Z",
        ),
        (
            START + Duration::from_micros(1),
            "2026-01-01T00:00:00.000001Z",
        ),
        (odd_time(), "2026-01-01T00:00:00.123456789Z"),
        (
            Timestamp::from_nanos(u64::MAX),
            "2554-07-21T23:34:33.709551615Z",
        ),
    ];
    for (t, text) in cases {
        assert_eq!(round_trip(&t), json!(text));
    }
    // Any number of fractional digits reads; so does the `Display` form.
    let read = |text: &str| serde_json::from_value::<Timestamp>(json!(text));
    assert_eq!(
        read("2026-01-01T00:00:00.1Z").unwrap(),
        START + Duration::from_millis(100)
    );
    assert_eq!(read(&START.to_string()).unwrap(), START);
    for bad in [
        json!(START.as_nanos()),
        json!("2026-01-01T01:00:00+01:00"),
        json!("1969-12-31T23:59:59Z"),
        json!("2554-07-21T23:34:34Z"),
        json!("yesterday"),
    ] {
        let err = serde_json::from_value::<Timestamp>(bad.clone());
        assert!(err.is_err(), "{bad} read as {err:?}");
    }
}

#[test]
fn digests_algorithms_and_kinds_are_their_names() {
    let digest = Algorithm::Sha256.digest(b"foo");
    assert_eq!(round_trip(&digest), json!(digest.as_str()));
    for (alg, name) in [
        (Algorithm::Sha256, "sha256"),
        (Algorithm::Sha512, "sha512"),
        (Algorithm::Blake3, "blake3"),
    ] {
        assert_eq!(round_trip(&alg), json!(name));
    }
    assert_eq!(round_trip(&ManifestKind::Image), json!("image"));
    assert_eq!(round_trip(&ManifestKind::Index), json!("index"));
    assert!(serde_json::from_value::<Digest>(json!("sha256:ABC")).is_err());
    for (item, expected) in [
        (Item::Repository, json!({"kind": "repository"})),
        (
            Item::Manifest(digest.clone()),
            json!({"kind": "manifest", "name": digest}),
        ),
        (Item::Tag("v1".into()), json!({"kind": "tag", "name": "v1"})),
    ] {
        assert_eq!(round_trip(&item), expected);
    }
}

// =============================================================================================
// Options

#[test]
fn options_read_with_their_defaults_and_write_durations_in_seconds() {
    let read = |json: Value| serde_json::from_value::<CollectOptions>(json).unwrap();
    assert_eq!(read(json!({})), CollectOptions::default());
    let collect = CollectOptions::default()
        .dry_run(true)
        .grace_period(Duration::from_millis(1500));
    assert_eq!(
        round_trip(&collect),
        json!({"dry_run": true, "grace_period": 1.5})
    );
    assert_eq!(
        round_trip(&CollectOptions::default()),
        json!({"dry_run": false, "grace_period": null})
    );

    assert_eq!(
        serde_json::from_value::<FsckOptions>(json!({})).unwrap(),
        FsckOptions::default()
    );
    let fsck = FsckOptions::default()
        .repair(true)
        .verify_digests(false)
        .grace_period(Duration::ZERO);
    assert_eq!(
        round_trip(&fsck),
        json!({"repair": true, "verify_digests": false, "grace_period": 0.0})
    );

    assert_eq!(
        serde_json::from_value::<ManifestQuery>(json!({})).unwrap(),
        ManifestQuery::default()
    );
    let query = ManifestQuery::default()
        .descending(true)
        .untagged(true)
        .limit(10)
        .updated_before(START + Duration::from_secs(DAY));
    assert_eq!(
        round_trip(&query),
        json!({"descending": true, "updated_before": text_at(DAY), "untagged": true, "limit": 10})
    );

    assert_eq!(
        serde_json::from_value::<Page>(json!({})).unwrap(),
        Page::all()
    );
    assert_eq!(
        round_trip(&Page::after("v1", 2)),
        json!({"n": 2, "last": "v1"})
    );

    assert_eq!(
        serde_json::from_value::<Locks>(json!({"write_enabled": false})).unwrap(),
        Locks::UNLOCKED.with_write_enabled(false)
    );
    assert_eq!(
        round_trip(&Locks::READ_ONLY),
        json!({"delete_enabled": false, "write_enabled": false})
    );
}

#[test]
fn purge_options_need_only_filters_and_check_them_when_read() {
    let read = |json: Value| serde_json::from_value::<PurgeOptions>(json);
    assert_eq!(
        read(json!({"filters": ["app:.*"]})).unwrap(),
        PurgeOptions::new(["app:.*"]).unwrap()
    );
    let options = PurgeOptions::new(["team/.*:v1\\..*", "app:.*"])
        .unwrap()
        .ago(Duration::from_secs(7 * DAY))
        .keep(3)
        .untagged(true)
        .dry_run(true)
        .include_locked(true);
    assert_eq!(
        round_trip(&options),
        json!({
            "filters": ["team/.*:v1\\..*", "app:.*"],
            "ago": 604_800.0,
            "keep": 3,
            "untagged": true,
            "dry_run": true,
            "include_locked": true,
        })
    );
    let err = read(json!({"filters": ["no-colon"]})).unwrap_err();
    assert!(err.to_string().contains("no-colon"), "{err}");
    assert!(read(json!({"ago": 60})).is_err(), "filters are required");
    assert!(read(json!({"filters": [], "ago": -1})).is_err());
}

// =============================================================================================
// The stored forms

#[test]
fn stored_records_keep_their_times_as_integer_nanoseconds() {
    let s = Store::new();
    s.clock.set(odd_time());
    s.registry
        .set_retention_policy(RetentionPolicy::enabled(7).unwrap())
        .unwrap();
    let digest = push_image(&s.repo("app"), "v1", "one");
    let Store { dir, registry, .. } = s;
    drop(registry);

    let nanos = json!(odd_time().as_nanos());
    let db = redb::Database::create(dir.path().join("metadata.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    let repository = txn.open_table(REPOSITORIES).unwrap();
    let repository = json_of(repository.get("app").unwrap().unwrap().value());
    assert_eq!(repository, json!({"created": nanos, "deleted": null}));
    let manifests = txn.open_table(MANIFESTS).unwrap();
    let manifest = json_of(
        manifests
            .get(("app", digest.as_str()))
            .unwrap()
            .unwrap()
            .value(),
    );
    assert_eq!(
        (&manifest["created"], &manifest["updated"]),
        (&nanos, &nanos)
    );
    assert_eq!(manifest["deleted"], Value::Null);
    let history = txn.open_table(TAG_HISTORY).unwrap();
    let (_, event) = history.first().unwrap().unwrap();
    assert_eq!(
        json_of(event.value()),
        json!({"tag": "v1", "from": null, "to": digest, "at": nanos, "cause": "push"})
    );
    let meta = txn.open_table(META).unwrap();
    let retention = json_of(meta.get("retention").unwrap().unwrap().value());
    assert_eq!(retention["since"], nanos);
}

#[test]
fn records_written_with_integer_times_by_an_older_build_read_back_the_same() {
    let s = Store::new();
    s.clock.set(odd_time());
    let digest = push_image(&s.repo("app"), "v1", "one");
    let Store {
        dir,
        registry,
        clock,
    } = s;
    drop(registry);

    // Rows as every build before the RFC 3339 form wrote them (a repository record from
    // before `deleted` existed), at times of their own.
    let created = odd_time() - Duration::from_nanos(1);
    let moved = odd_time() + Duration::from_nanos(7);
    let db = redb::Database::create(dir.path().join("metadata.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut repositories = txn.open_table(REPOSITORIES).unwrap();
        let row = format!(r#"{{"created":{}}}"#, created.as_nanos());
        repositories.insert("app", row.as_bytes()).unwrap();
        let mut history = txn.open_table(TAG_HISTORY).unwrap();
        let row = format!(
            r#"{{"tag":"v1","from":null,"to":"{digest}","at":{},"cause":"push"}}"#,
            moved.as_nanos()
        );
        let (key, _) = history.first().unwrap().unwrap();
        let (repo, tag, seq) = key.value();
        let (repo, tag) = (repo.to_owned(), tag.to_owned());
        drop(key);
        history
            .insert((repo.as_str(), tag.as_str(), seq), row.as_bytes())
            .unwrap();
    }
    txn.commit().unwrap();
    drop(db);

    let registry = common::open(dir.path(), &clock);
    let repo = registry.repository("app").unwrap();
    assert_eq!(repo.state().unwrap(), RepositoryState::Live { created });
    let history = repo.tag_history("v1").unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!((history[0].at, history[0].cause), (moved, TagCause::Push));
    let manifest = repo.manifest("v1").unwrap();
    assert_eq!(
        (manifest.created, manifest.updated),
        (odd_time(), odd_time())
    );
}

// =============================================================================================
// Reports, from real runs

#[test]
fn usage_and_health_read_back_equal() {
    let s = Store::new();
    policy_on(&s, 7);
    let app = s.repo("app");
    push_image(&app, "v1", "one");
    push_image(&s.repo("old"), "v1", "old");
    s.registry.delete_repository("old").unwrap();

    let usage = s.registry.usage().unwrap();
    let json = round_trip(&usage);
    assert_eq!(
        fields(&json),
        [
            "blobs",
            "bytes",
            "garbage_bytes",
            "repositories",
            "soft_deleted_bytes"
        ]
    );
    assert_eq!(json["blobs"], 4);
    assert_eq!(
        json["repositories"][1],
        json!({
            "name": "old",
            "deleted": true,
            "blobs": 2,
            "bytes": usage.repositories[1].bytes,
            "unique_bytes": usage.repositories[1].bytes,
            "shared_bytes": 0,
        })
    );

    let health = s.registry.health();
    assert_eq!(
        round_trip(&health),
        json!({"writable": true, "storage_full": false, "problem": null})
    );
}

#[test]
fn a_collection_report_and_its_progress_read_back_equal() {
    let s = Store::new();
    let app = s.repo("app");
    push_image(&app, "v1", "one");
    app.put_blob_sha256(b"garbage").unwrap();
    s.advance(2 * 3600);

    let mut progress: Vec<Progress> = Vec::new();
    let report = s
        .registry
        .collect_with_progress(&CollectOptions::default(), |p| progress.push(p))
        .unwrap();
    let json = round_trip(&report);
    assert_eq!(
        (json["blobs_marked"].clone(), json["blobs_swept"].clone()),
        (json!(2), json!(1))
    );
    for time in ["mark_time", "sweep_time", "longest_write"] {
        assert!(json[time].is_f64(), "{time} in seconds: {json}");
    }
    let secs = |d: Duration| json!(d.as_secs_f64());
    assert_eq!(json["sweep_time"], secs(report.sweep_time));
    assert_eq!(
        fields(&json),
        [
            "blobs_kept",
            "blobs_marked",
            "blobs_swept",
            "bytes_kept",
            "bytes_marked",
            "bytes_swept",
            "dry_run",
            "links_removed",
            "longest_write",
            "mark_time",
            "sweep_time",
            "uploads_removed",
        ]
    );
    let phases: Vec<Value> = progress
        .iter()
        .map(|p| round_trip(p)["phase"].clone())
        .collect();
    assert_eq!(phases, ["mark", "links", "blobs", "uploads"]);
    assert_eq!(
        round_trip(&progress[0]),
        json!({"phase": "mark", "done": 1})
    );
    assert_eq!(round_trip(&Phase::Uploads), json!("uploads"));
    assert_eq!(round_trip(&CollectReport::default())["dry_run"], false);
}

#[test]
fn a_check_report_tags_each_problem_by_kind() {
    let s = Store::new();
    let app = s.repo("app");
    push_image(&app, "v1", "one");
    std::fs::write(s.dir.path().join("tmp").join("left-by-a-crash"), b"x").unwrap();

    let report = s.registry.fsck(&FsckOptions::default()).unwrap();
    assert_eq!(report.problems.len(), 1);
    let json = round_trip(&report);
    assert_eq!(
        fields(&json),
        [
            "blobs_checked",
            "kept_named",
            "manifests_checked",
            "problems",
            "repaired",
            "too_recent"
        ]
    );
    let Problem::TempFile { path } = &report.problems[0] else {
        panic!("{:?}", report.problems);
    };
    assert_eq!(
        json["problems"][0],
        json!({"kind": "temp_file", "path": path.to_str().unwrap()})
    );
    let digest = Algorithm::Sha256.digest(b"x");
    let mismatch = Problem::SizeMismatch {
        digest: digest.clone(),
        recorded: 4,
        actual: 3,
    };
    assert_eq!(
        round_trip(&mismatch),
        json!({"kind": "size_mismatch", "digest": digest, "recorded": 4, "actual": 3})
    );
}

#[test]
fn a_purge_report_names_times_digests_and_locked_items_as_documented() {
    let s = Store::new();
    let app = s.repo("app");
    let old = push_image(&app, "old", "old");
    push_image(&app, "stable", "stable");
    app.set_locks(&Item::Tag("stable".into()), Locks::READ_ONLY)
        .unwrap();
    s.advance(2 * DAY);

    let options = PurgeOptions::new(["app:.*"]).unwrap().untagged(true);
    let report = s.registry.purge(&options).unwrap();
    let json = round_trip(&report);
    assert_eq!(
        json,
        json!({
            "dry_run": false,
            "ran_at": text_at(2 * DAY),
            "repositories": [{
                "repository": "app",
                "tags_untagged": ["old"],
                "manifests_deleted": [old],
                "locked": [{"kind": "tag", "name": "stable"}],
            }],
        })
    );
}

#[test]
fn an_autopurge_report_reads_back_equal() {
    let s = Store::new();
    policy_on(&s, 1);
    let app = s.repo("app");
    push_image(&app, "v1", "one");
    app.delete_manifest("v1").unwrap();
    s.advance(2 * DAY);

    let report = s.registry.run_now().unwrap();
    assert_eq!(
        round_trip(&report),
        json!({
            "history_events": 0,
            "ran_at": text_at(2 * DAY),
            "repositories": 0,
            "manifests": 1,
            "tags": 1,
            "untagged_deleted": 0,
        })
    );
}

// =============================================================================================
// Listings, from a real store

#[test]
fn manifests_and_their_descriptors_read_back_equal() {
    let s = Store::new();
    let app = s.repo("app");
    let image = push_image(&app, "v1", "one");
    s.clock.set(odd_time());
    let index = push_index(&app, Some("multi"), &[&image]);
    let signature = push_referrer(&app, None, &image, "sig");

    let manifests = app.manifests(&ManifestQuery::default()).unwrap();
    assert_eq!(manifests.len(), 3);
    let json = round_trip(&manifests);
    assert_eq!(
        fields(&json[0]),
        [
            "annotations",
            "artifact_type",
            "created",
            "digest",
            "media_type",
            "references",
            "size",
            "subject",
            "tags",
            "updated",
        ]
    );
    assert_eq!(json[0]["digest"], json!(image));
    assert_eq!(json[0]["created"], "2026-01-01T00:00:00Z");
    assert_eq!(
        json[0]["references"][0]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let by_digest = |digest: &Digest| {
        let mut listed = json.as_array().unwrap().iter();
        listed.find(|m| m["digest"] == json!(digest)).unwrap()
    };
    assert_eq!(by_digest(&index)["media_type"], OCI_INDEX);
    assert_eq!(
        by_digest(&index)["updated"],
        "2026-01-01T00:00:00.123456789Z"
    );
    assert_eq!(by_digest(&index)["tags"], json!(["multi"]));
    assert_eq!(by_digest(&signature)["subject"], json!(image));

    // Referrers are OCI descriptors, in OCI's camelCase, without the fields they lack.
    let referrers = app.referrers(&image, None).unwrap();
    let descriptor = &round_trip(&referrers)[0];
    assert_eq!(
        fields(descriptor),
        ["artifactType", "digest", "mediaType", "size"]
    );
    assert_eq!(descriptor["digest"], json!(signature));

    // A pulled manifest carries its exact bytes as a string, which decode to the same digest.
    let pulled = app.pull("v1").unwrap();
    let json = round_trip(&pulled);
    assert_eq!(fields(&json), ["body", "digest", "media_type"]);
    assert_eq!(json["media_type"], OCI_MANIFEST);
    let body = json["body"].as_str().unwrap();
    assert_eq!(Algorithm::Sha256.digest(body.as_bytes()), image);

    let pushed = app
        .push_manifest("again", OCI_MANIFEST, &pulled.body)
        .unwrap();
    assert_eq!(
        round_trip(&pushed),
        json!({"digest": image, "created": false, "subject": null, "previous": null})
    );
}

#[test]
fn tags_history_and_state_read_back_equal() {
    let s = Store::new();
    policy_on(&s, 7);
    let app = s.repo("app");
    let one = push_image(&app, "v1", "one");
    s.advance(DAY);
    app.untag("v1").unwrap();
    push_untagged(&app, "two");
    app.tag("latest", &one).unwrap();

    assert_eq!(
        round_trip(&app.tags(&Page::all()).unwrap()),
        json!([{"name": "latest", "digest": one, "updated": text_at(DAY)}])
    );
    assert_eq!(
        round_trip(&app.tag_history("v1").unwrap()),
        json!([
            {"tag": "v1", "from": one, "to": null, "at": text_at(DAY), "cause": "untag"},
            {"tag": "v1", "from": null, "to": one, "at": text_at(0), "cause": "push"},
        ])
    );
    assert_eq!(round_trip(&TagCause::Retention), json!("retention"));
    assert_eq!(
        round_trip(&app.state().unwrap()),
        json!({"state": "live", "created": text_at(0)})
    );
}

#[test]
fn the_recycle_bin_reads_back_equal() {
    let s = Store::new();
    policy_on(&s, 7);
    let app = s.repo("app");
    let one = push_image(&app, "v1", "one");
    app.delete_manifest("v1").unwrap();
    push_image(&s.repo("old"), "v1", "old");
    s.advance(DAY);
    s.registry.delete_repository("old").unwrap();

    let deleted_at = text_at(0);
    let expires_at = text_at(7 * DAY);
    assert_eq!(
        round_trip(&app.deleted_manifests().unwrap()),
        json!([{
            "digest": one,
            "media_type": OCI_MANIFEST,
            "size": app.deleted_manifests().unwrap()[0].size,
            "tags": ["v1"],
            "deleted_at": deleted_at,
            "expires_at": expires_at,
        }])
    );
    assert_eq!(
        round_trip(&app.deleted_tags(None).unwrap()),
        json!([{"tag": "v1", "digest": one, "deleted_at": deleted_at, "expires_at": expires_at}])
    );
    assert_eq!(
        round_trip(&s.registry.deleted_repositories().unwrap()),
        json!([{"name": "old", "deleted_at": text_at(DAY), "expires_at": text_at(8 * DAY)}])
    );
    assert_eq!(
        round_trip(&s.repo("old").state().unwrap()),
        json!({
            "state": "deleted",
            "created": text_at(0),
            "deleted_at": text_at(DAY),
            "expires_at": text_at(8 * DAY),
        })
    );
}
