//! The JSON forms of the public types (`docs/json.md`): every report, listing and option built
//! for real on a store, serialized, its shape checked and read back equal. And the stored
//! forms, which the public ones must not change: records keep their times as integer
//! nanoseconds, so a store written by an older build reads back the same.

mod common;

use std::time::Duration;

use common::{START, Store, push_image};
use ocistore::{RepositoryState, RetentionPolicy, TagCause, Timestamp};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
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
