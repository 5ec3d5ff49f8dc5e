//! The `ocistore` binary on a real store: a store is built with the library, closed, and the
//! binary run on its directory, one scenario per verb group in both output forms, and bad input
//! for each. Stores live on `/dev/shm` when the machine has it.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use ocistore::{
    Digest, Item, Locks, ManualClock, Registry, SoftDeletePolicy, manifest::OCI_MANIFEST,
};
use serde_json::Value;
use tempfile::TempDir;

const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// A store with `team/app` (tags v1, v2 and latest on v2, one untagged manifest) and
/// `team/web` (tag stable), soft delete on.
struct Store {
    dir: TempDir,
    v1: Digest,
    v2: Digest,
    untagged: Digest,
}

/// `value`, an object, without `key`.
fn without(value: &Value, key: &str) -> Value {
    let mut value = value.clone();
    value
        .as_object_mut()
        .expect("an object")
        .remove(key)
        .expect("the key");
    value
}

/// The library's own JSON form of `value`, which the binary's JSON output must equal.
fn library(value: impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap()
}

fn push_image(repo: &ocistore::Repository, reference: &str, seed: &str) -> Digest {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#);
    let layer = format!("layer of {seed}");
    let c = repo.put_blob_sha256(config.as_bytes()).unwrap();
    let l = repo.put_blob_sha256(layer.as_bytes()).unwrap();
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{CONFIG_TYPE}","digest":"{c}","size":{}}},"layers":[{{"mediaType":"{LAYER_TYPE}","digest":"{l}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    );
    repo.push_manifest(reference, OCI_MANIFEST, body.as_bytes())
        .unwrap()
        .digest
}

impl Store {
    fn new() -> Store {
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        registry
            .set_soft_delete_policy(SoftDeletePolicy::enabled(7).unwrap())
            .unwrap();
        let app = registry.repository("team/app").unwrap();
        let v1 = push_image(&app, "v1", "one");
        let v2 = push_image(&app, "v2", "two");
        app.tag("latest", &v2).unwrap();
        let untagged = push_image(&app, "scratch", "three");
        app.untag("scratch").unwrap();
        let web = registry.repository("team/web").unwrap();
        push_image(&web, "stable", "web");
        drop(registry);
        Store {
            dir,
            v1,
            v2,
            untagged,
        }
    }

    /// Runs the binary on the store, stdin not a terminal.
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ocistore"))
            .arg("--store")
            .arg(self.dir.path())
            .args(args)
            .stdin(Stdio::null())
            .env_remove("OCISTORE_STORE")
            .env_remove("OCISTORE_MODE")
            .output()
            .unwrap()
    }

    /// Runs it and expects success; gives stdout.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs it with `--output json` and parses stdout.
    #[track_caller]
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// Runs it and expects an error with exit code `code`; gives stderr, checked to be one line.
    #[track_caller]
    fn err(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let stderr = String::from_utf8(out.stderr).unwrap();
        if code != 2 {
            assert!(out.stdout.is_empty(), "{args:?}");
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
            assert!(stderr.starts_with("error: "), "{stderr}");
        }
        stderr
    }

    fn registry(&self) -> Registry {
        Registry::open(self.dir.path()).unwrap()
    }
}

#[test]
fn repository_list_and_show_tags_table_and_json() {
    let s = Store::new();
    let table = s.ok(&["repository", "list"]);
    assert_eq!(table, "REPOSITORY\n----------\nteam/app\nteam/web\n");
    assert_eq!(
        s.json(&["repository", "list"]),
        serde_json::json!(["team/app", "team/web"])
    );

    let table = s.ok(&["repository", "show-tags", "team/app"]);
    let lines: Vec<_> = table.lines().collect();
    assert!(lines[0].starts_with("TAG"), "{table}");
    assert!(lines[2].starts_with("latest  ") && lines[2].contains(s.v2.as_str()));
    assert_eq!(lines.len(), 5, "{table}");
    let tags = s.json(&["repository", "show-tags", "team/app"]);
    let names: Vec<_> = tags
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["latest", "v1", "v2"]);
    assert_eq!(tags[1]["digest"], s.v1.as_str());
    let repo = s.registry().repository("team/app").unwrap();
    assert_eq!(tags, library(repo.tags(&ocistore::Page::all()).unwrap()));
    humantime::parse_rfc3339(tags[0]["updated"].as_str().unwrap()).unwrap();
}

#[test]
fn d1_repository_untag_delete_and_list_deleted() {
    let s = Store::new();
    assert_eq!(
        s.ok(&["repository", "untag", "team/app:v1", "--yes"]),
        "untagged  team/app:v1\n"
    );
    let v = s.json(&["--yes", "repository", "delete", "team/web"]);
    assert_eq!(v["deleted"], "team/web");
    assert_eq!(
        s.json(&["repository", "list"]),
        serde_json::json!(["team/app"])
    );
    let deleted = s.json(&["repository", "list-deleted"]);
    assert_eq!(deleted[0]["name"], "team/web");
    assert_eq!(
        deleted,
        library(s.registry().deleted_repositories().unwrap())
    );
    assert!(s.ok(&["repository", "list-deleted"]).contains("team/web"));
}

#[test]
fn n1_repository_bad_input_is_one_line_error_exit_1() {
    let s = Store::new();
    assert!(
        s.err(&["repository", "show-tags", "Team/App"], 1)
            .contains("invalid repository name")
    );
    assert!(
        s.err(&["repository", "untag", "team/app:nope", "-y"], 1)
            .contains("nope")
    );
    assert!(
        s.err(&["repository", "untag", "team/app", "-y"], 1)
            .contains("expected REPO:TAG")
    );
    s.err(&["repository", "frobnicate"], 2);
    s.err(&["repository", "delete"], 2);
}

#[test]
fn d2_repository_and_manifest_delete_need_yes_when_piped() {
    let s = Store::new();
    let e = s.err(&["manifest", "delete", "team/app:v1"], 1);
    assert_eq!(
        e,
        "error: refusing to delete without --yes when not on a terminal\n"
    );
    s.err(&["repository", "delete", "team/web"], 1);
    s.err(&["repository", "untag", "team/app:v1"], 1);
    s.err(&["purge", "--filter", "team/.*:.*", "--ago", "0"], 1);
    // Nothing went.
    let registry = s.registry();
    assert_eq!(
        registry
            .repository("team/app")
            .unwrap()
            .resolve("v1")
            .unwrap(),
        s.v1
    );
    assert_eq!(
        registry.repositories(&ocistore::Page::all()).unwrap().len(),
        2
    );
}

#[test]
fn p7_manifest_list_metadata_orderby_untagged_before() {
    let s = Store::new();
    let all = s.json(&[
        "manifest",
        "list-metadata",
        "team/app",
        "--orderby",
        "time_desc",
    ]);
    let digests: Vec<_> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    assert_eq!(digests, [s.untagged.as_str(), s.v2.as_str(), s.v1.as_str()]);
    let repo = s.registry().repository("team/app").unwrap();
    let query = ocistore::ManifestQuery::default().descending(true);
    assert_eq!(all, library(repo.manifests(&query).unwrap()));
    drop(repo);
    assert_eq!(all[1]["tags"], serde_json::json!(["latest", "v2"]));
    let untagged = s.json(&["manifest", "list-metadata", "team/app", "--untagged"]);
    assert_eq!(untagged.as_array().unwrap().len(), 1);
    assert_eq!(untagged[0]["digest"], s.untagged.as_str());
    let before = s.json(&[
        "manifest",
        "list-metadata",
        "team/app",
        "--before",
        "1970-01-02T00:00:00Z",
    ]);
    assert_eq!(before, serde_json::json!([]));
    let old = s.json(&["manifest", "list-metadata", "team/app", "--before", "1h"]);
    assert_eq!(old, serde_json::json!([]));
    let table = s.ok(&["manifest", "list-metadata", "team/app", "--top", "1"]);
    assert!(table.starts_with("DIGEST"), "{table}");
    assert!(table.lines().nth(2).unwrap().starts_with(s.v1.as_str()));
    assert!(table.contains("v1"));
}

#[test]
fn s6_manifest_delete_list_deleted_restore_and_history() {
    let s = Store::new();
    let deleted = s.json(&["manifest", "delete", "team/app:v1", "--yes"]);
    assert_eq!(deleted["deleted"], serde_json::json!([s.v1.as_str()]));
    let bin = s.json(&["manifest", "list-deleted", "team/app"]);
    assert_eq!(bin[0]["digest"], s.v1.as_str());
    let repo = s.registry().repository("team/app").unwrap();
    let (manifests, tags) = (
        repo.deleted_manifests().unwrap(),
        repo.deleted_tags(None).unwrap(),
    );
    drop(repo);
    assert_eq!(bin, library(manifests));
    assert_eq!(
        s.json(&["manifest", "list-deleted-tags", "team/app"]),
        library(tags)
    );
    assert_eq!(bin[0]["tags"], serde_json::json!(["v1"]));
    assert!(
        s.ok(&["manifest", "list-deleted", "team/app"])
            .contains(s.v1.as_str())
    );
    let tags = s.json(&["manifest", "list-deleted-tags", "team/app:v1"]);
    assert_eq!(tags[0]["tag"], "v1");
    assert_eq!(tags[0]["digest"], s.v1.as_str());
    assert!(
        s.ok(&["manifest", "list-deleted-tags", "team/app"])
            .contains("v1")
    );

    let restored = s.json(&["manifest", "restore", "team/app:v1"]);
    assert_eq!(restored["restored"], s.v1.as_str());
    assert_eq!(restored["tag"], "v1");

    // By digest, in table form.
    let table = s.ok(&[
        "manifest",
        "delete",
        &format!("team/app@{}", s.untagged),
        "-y",
    ]);
    assert!(table.contains(s.untagged.as_str()), "{table}");
    let table = s.ok(&["manifest", "restore", "team/app", "-d", s.untagged.as_str()]);
    assert!(
        table.contains(&format!("restored    {}", s.untagged)),
        "{table}"
    );

    let history = s.json(&["manifest", "history", "team/app:v1"]);
    let events = s
        .registry()
        .repository("team/app")
        .unwrap()
        .tag_history("v1")
        .unwrap();
    assert_eq!(history, library(events));
    let causes: Vec<_> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["cause"].as_str().unwrap())
        .collect();
    assert_eq!(causes, ["restore", "delete", "push"]);
    assert_eq!(history[2]["from"], Value::Null);
    assert_eq!(history[2]["to"], s.v1.as_str());
    let table = s.ok(&["manifest", "history", "team/app:v1"]);
    assert!(
        table.starts_with("AT") && table.contains("restore"),
        "{table}"
    );
}

#[test]
fn n3_manifest_bad_input() {
    let s = Store::new();
    assert!(
        s.err(&["manifest", "delete", "team/app@sha256:abc", "-y"], 1)
            .contains("invalid digest")
    );
    assert!(
        s.err(&["manifest", "delete", "team/app", "-y"], 1)
            .contains("expected REPO@DIGEST")
    );
    let unknown = format!("team/app@sha256:{}", "0".repeat(64));
    assert!(
        s.err(&["manifest", "delete", &unknown, "-y"], 1)
            .contains("unknown")
    );
    s.err(
        &["manifest", "list-metadata", "team/app", "--orderby", "size"],
        2,
    );
    s.err(
        &[
            "manifest",
            "list-metadata",
            "team/app",
            "--before",
            "yesterday",
        ],
        2,
    );
    assert!(
        s.err(&["manifest", "restore", "team/app"], 1)
            .contains("-d DIGEST")
    );
    s.err(&["manifest", "restore", "team/app:v1"], 1);
    assert!(
        s.err(&["manifest", "history", "team/app:bad tag"], 1)
            .contains("invalid tag")
    );
}

#[test]
fn s1_config_soft_delete_update_then_show_json_is_the_library_policy() {
    let s = Store::new();
    let v = s.json(&["config", "soft-delete", "update", "--days", "30"]);
    assert_eq!(v, library(s.registry().soft_delete_policy().unwrap()));
    assert_eq!(
        v,
        serde_json::json!({"enabled": true, "retention_days": 30})
    );
    s.ok(&["config", "soft-delete", "update", "--status", "disabled"]);
    let v = s.json(&["config", "soft-delete", "show"]);
    let policy = s.registry().soft_delete_policy().unwrap();
    assert_eq!((policy.enabled, policy.retention_days), (false, 30));
    assert_eq!(v, library(policy));
    assert_eq!(
        s.ok(&["config", "soft-delete", "show"]),
        "status          disabled\nretention days  30\n"
    );
}

#[test]
fn r1_config_retention_update_then_show_json_is_the_library_policy() {
    let s = Store::new();
    let table = s.ok(&["config", "retention", "show"]);
    assert!(table.starts_with("status      disabled\n"), "{table}");
    assert!(table.ends_with("enabled at  -\n"), "{table}");
    let v = s.json(&[
        "config",
        "retention",
        "update",
        "--status",
        "enabled",
        "--days",
        "0",
    ]);
    let registry = s.registry();
    assert_eq!(
        v,
        serde_json::json!({
            "policy": library(registry.retention_policy().unwrap()),
            "enabled_at": library(registry.retention_enabled_at().unwrap()),
        })
    );
    assert_eq!(v["policy"], serde_json::json!({"enabled": true, "days": 0}));
    assert!(v["enabled_at"].is_string());
}

#[test]
fn config_bad_days_and_status() {
    let s = Store::new();
    assert!(
        s.err(&["config", "soft-delete", "update", "--days", "91"], 1)
            .contains("1 to 90")
    );
    assert!(
        s.err(&["config", "retention", "update", "--days", "366"], 1)
            .contains("0 to 365")
    );
    s.err(&["config", "soft-delete", "update", "--days", "-1"], 2);
    s.err(&["config", "retention", "update", "--status", "on"], 2);
    assert_eq!(s.registry().soft_delete_policy().unwrap().retention_days, 7);
}

#[test]
fn t2_config_history_retention_show_default_update_and_json() {
    let s = Store::new();
    assert_eq!(s.ok(&["config", "history-retention", "show"]), "days  90\n");
    let json = |days: u32| serde_json::json!({ "days": days });
    assert_eq!(s.json(&["config", "history-retention", "show"]), json(90));
    let v = s.json(&["config", "history-retention", "update", "--days", "365"]);
    assert_eq!(v, json(365));
    assert_eq!(s.registry().history_retention_days().unwrap(), 365);
    assert_eq!(
        s.ok(&["config", "history-retention", "update", "--days", "0"]),
        "days  0 (kept for ever)\n"
    );
    assert_eq!(s.registry().history_retention_days().unwrap(), 0);
    assert_eq!(s.json(&["config", "history-retention", "show"]), json(0));
}

#[test]
fn t2_config_history_retention_refuses_3651_and_changes_nothing() {
    let s = Store::new();
    let message = s.err(
        &["config", "history-retention", "update", "--days", "3651"],
        1,
    );
    assert_eq!(
        message,
        "error: invalid setting history retention days = 3651: must be 0 (keep forever) to \
         3650 days\n"
    );
    s.err(
        &["config", "history-retention", "update", "--days", "-1"],
        2,
    );
    s.err(&["config", "history-retention", "update"], 2);
    assert_eq!(s.registry().history_retention_days().unwrap(), 90);
}

#[test]
fn t2_maintenance_run_text_shows_the_history_events_removed() {
    let s = Store::new();
    // A tag pushed two days ago, under a history retention of one day.
    let two_days_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 86_400);
    let registry = Registry::builder()
        .clock(ManualClock::new(two_days_ago.into()))
        .open(s.dir.path())
        .unwrap();
    registry
        .repository("team/app")
        .unwrap()
        .tag("old", &s.v1)
        .unwrap();
    registry.set_history_retention_days(1).unwrap();
    drop(registry);
    let text = s.ok(&["maintenance", "run"]);
    assert!(text.contains("\nhistory events removed  1\n"), "{text}");
    assert!(
        s.registry()
            .repository("team/app")
            .unwrap()
            .tag_history("old")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn l1_lock_a_tag_then_untag_is_refused_until_unlocked() {
    let s = Store::new();
    let v = s.json(&["lock", "team/app:v1"]);
    let tag = Item::Tag("v1".into());
    assert_eq!(
        v,
        serde_json::json!({"repository": "team/app", "item": library(&tag), "locks": library(Locks::NO_DELETE)})
    );
    assert_eq!(v["item"], serde_json::json!({"kind": "tag", "name": "v1"}));
    let table = s.ok(&["lock", &format!("team/app@{}", s.v2), "--read-only"]);
    assert!(table.contains("lock  read-only\n"), "{table}");
    let locks = s.json(&["locks", "team/app"]);
    let items = s
        .registry()
        .repository("team/app")
        .unwrap()
        .locked_items()
        .unwrap();
    assert_eq!(items.len(), 2);
    let expected: Vec<Value> = items
        .iter()
        .map(|(item, locks)| serde_json::json!({"item": library(item), "locks": library(locks)}))
        .collect();
    assert_eq!(locks, Value::Array(expected));
    let table = s.ok(&["locks", "team/app"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("team/app:v1 ") && l.ends_with(" no delete")),
        "{table}"
    );

    assert!(
        s.err(&["repository", "untag", "team/app:v1", "-y"], 1)
            .contains("lock")
    );
    s.ok(&["unlock", "team/app:v1"]);
    s.ok(&["repository", "untag", "team/app:v1", "-y"]);
    // The repository itself.
    s.ok(&["lock", "team/web"]);
    assert!(
        s.err(&["repository", "delete", "team/web", "-y"], 1)
            .contains("lock")
    );
}

#[test]
fn lock_bad_input() {
    let s = Store::new();
    assert!(
        s.err(&["lock", "team/app@sha256:zz"], 1)
            .contains("invalid digest")
    );
    s.err(&["lock", "team/app:nope"], 1);
    s.err(&["lock"], 2);
    s.err(&["locks", "BAD"], 1);
}

#[test]
fn u1_purge_dry_run_table_and_json_then_for_real() {
    let s = Store::new();
    s.ok(&["lock", "team/app:v1"]);
    let args = [
        "purge",
        "--filter",
        "team/app:v.*",
        "--ago",
        "0",
        "--untagged",
        "--dry-run",
    ];
    let table = s.ok(&args);
    assert!(table.starts_with("ACTION"), "{table}");
    assert!(table.contains("untag   team/app:v2"), "{table}");
    assert!(table.contains("locked  team/app:v1"), "{table}");
    assert!(
        table.ends_with("dry run: 1 tags untagged, 1 manifests deleted, 1 locked items skipped\n"),
        "{table}"
    );
    let v = s.json(&args);
    assert_eq!(v["dry_run"], true);
    let mut options = ocistore::PurgeOptions::new(["team/app:v.*"]).unwrap();
    options.ago = std::time::Duration::ZERO;
    options.untagged = true;
    options.dry_run = true;
    let report = library(s.registry().purge(&options).unwrap());
    // The same report but for the time it ran.
    assert_eq!(without(&v, "ran_at"), without(&report, "ran_at"));
    humantime::parse_rfc3339(v["ran_at"].as_str().unwrap()).unwrap();
    assert_eq!(
        v["repositories"][0]["tags_untagged"],
        serde_json::json!(["v2"])
    );
    assert_eq!(
        v["repositories"][0]["manifests_deleted"],
        serde_json::json!([s.untagged.as_str()])
    );
    // A dry run changed nothing.
    assert_eq!(
        s.registry()
            .repository("team/app")
            .unwrap()
            .resolve("v2")
            .unwrap(),
        s.v2
    );

    let v = s.json(&[
        "purge",
        "--filter",
        "team/app:v.*",
        "--ago",
        "0",
        "--keep",
        "0",
        "--include-locked",
        "--yes",
    ]);
    assert_eq!(v["dry_run"], false);
    assert_eq!(
        v["repositories"][0]["tags_untagged"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let tags = s.json(&["repository", "show-tags", "team/app"]);
    assert_eq!(tags.as_array().unwrap().len(), 1);
}

#[test]
fn u1_purge_bad_input() {
    let s = Store::new();
    assert!(
        s.err(
            &[
                "purge",
                "--filter",
                "team/app:.*",
                "--ago",
                "1 day",
                "--dry-run"
            ],
            1
        )
        .contains("purge ago")
    );
    assert!(
        s.err(&["purge", "--filter", "team/app", "--dry-run"], 1)
            .contains("filter")
    );
    assert!(
        s.err(&["purge", "--filter", "team/(app:.*", "--dry-run"], 1)
            .contains("filter")
    );
    s.err(&["purge", "--dry-run"], 2);
    s.err(&["purge", "--filter", "a:b", "--keep", "-3"], 2);
}

#[test]
fn g5_gc_usage_fsck_and_maintenance() {
    let s = Store::new();
    // An orphan blob, old enough for a zero grace period.
    s.registry()
        .repository("team/app")
        .unwrap()
        .put_blob_sha256(b"orphan")
        .unwrap();
    let usage = s.json(&["usage"]);
    assert_eq!(usage, library(s.registry().usage().unwrap()));
    assert_eq!(usage["garbage_bytes"], 6);
    assert_eq!(usage["repositories"][0]["name"], "team/app");
    let table = s.ok(&["usage"]);
    assert!(
        table.starts_with("REPOSITORY") && table.contains("6 bytes garbage"),
        "{table}"
    );

    let dry = s.json(&["gc", "--dry-run", "--grace", "0s"]);
    let options = ocistore::CollectOptions::default()
        .dry_run(true)
        .grace_period(std::time::Duration::ZERO);
    let report = library(s.registry().collect(&options).unwrap());
    // The same report but for the times measured.
    let untimed = |v: &Value| {
        ["mark_time", "sweep_time", "longest_write"]
            .iter()
            .fold(v.clone(), |v, key| without(&v, key))
    };
    assert_eq!(untimed(&dry), untimed(&report));
    assert!(dry["mark_time"].is_number(), "{dry}");
    assert_eq!(
        (dry["dry_run"].clone(), dry["blobs_swept"].clone()),
        (true.into(), 1.into())
    );
    let table = s.ok(&["gc", "--grace", "0s"]);
    assert!(table.contains("blobs swept      1\n"), "{table}");
    assert_eq!(s.json(&["usage"])["garbage_bytes"], 0);

    let fsck = s.json(&["fsck"]);
    let report = s
        .registry()
        .fsck(&ocistore::FsckOptions::default())
        .unwrap();
    assert_eq!(fsck, library(report));
    assert_eq!(fsck["blobs_checked"], 8);
    assert_eq!(fsck["problems"], serde_json::json!([]));
    assert_eq!(
        s.ok(&["fsck", "--no-verify"]),
        "checked 4 manifests and 8 blobs: 0 problems, 0 repaired\n"
    );
    // A stray file is a problem: reported, exit code 1; repaired once older than the grace
    // period.
    let stray = s.dir.path().join("blobs/stray");
    std::fs::write(&stray, b"x").unwrap();
    let out = s.run(&["--output", "json", "fsck"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["problems"][0]["kind"], "stray_blob_file");
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "error: fsck found 1 problems not repaired:\n  \
         1 of them (stray files, dangling links) would be removed by fsck --repair\n"
    );
    std::fs::File::options()
        .write(true)
        .open(&stray)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(7200))
        .unwrap();
    let table = s.ok(&["fsck", "--repair"]);
    assert!(
        table.starts_with("PROBLEM") && table.contains("stray_blob_file"),
        "{table}"
    );
    assert!(table.ends_with("1 problems, 1 repaired\n"), "{table}");
    assert!(!stray.exists());

    let run = s.json(&["maintenance", "run"]);
    assert_eq!(
        without(&run, "ran_at"),
        without(&library(s.registry().run_now().unwrap()), "ran_at")
    );
    assert_eq!(run["manifests"], 0);
    let due = s.json(&["maintenance", "run", "--due"]);
    assert_eq!(due, Value::Null);
    assert!(s.ok(&["maintenance", "run"]).starts_with("ran at "));
    assert_eq!(
        s.ok(&["maintenance", "run", "--due"]),
        "not due: nothing ran\n"
    );
}

#[test]
fn a2_fsck_repair_says_why_it_left_a_fresh_stray_file_and_takes_a_grace() {
    let s = Store::new();
    // A stray file just written, as a crash leaves one.
    let stray = s.dir.path().join("blobs/stray");
    std::fs::write(&stray, b"x").unwrap();
    let out = s.run(&["fsck", "--repair"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.ends_with("1 problems, 0 repaired, 1 too recent to repair\n"),
        "{stdout}"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr,
        "error: fsck found 1 problems not repaired:\n  1 stray files kept: modified within \
         the grace period (the default, 1h), a write may still be about to commit them; run \
         again later, or with --grace 0s if nothing is writing to the store (as after a \
         crash)\n"
    );
    assert!(stray.exists());
    let out = s.run(&["--output", "json", "fsck", "--repair", "--grace", "30m"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["repaired"].clone(), v["too_recent"].clone()),
        (0.into(), 1.into())
    );
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("grace period (30m)")
    );
    // --grace 0s: repaired.
    let v = s.json(&["fsck", "--repair", "--grace", "0s"]);
    assert_eq!(
        (v["repaired"].clone(), v["too_recent"].clone()),
        (1.into(), 0.into())
    );
    assert!(!stray.exists());
    s.err(&["fsck", "--grace", "soon"], 2);
}

#[test]
fn gc_and_store_bad_input() {
    let s = Store::new();
    s.err(&["gc", "--grace", "soon"], 2);
    s.err(&["fsck", "--fix"], 2);
    s.err(&["maintenance"], 2);
    // No store, or not a store.
    let out = Command::new(env!("CARGO_BIN_EXE_ocistore"))
        .args(["usage"])
        .env_remove("OCISTORE_STORE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--store"));
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ocistore"))
        .args(["usage"])
        .env("OCISTORE_STORE", empty.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: no ocistore store at "));
    assert!(!empty.path().join("metadata.redb").exists());
    // A store open elsewhere, by a registry server say.
    let registry = s.registry();
    assert!(s.err(&["usage"], 1).contains("already open"));
    drop(registry);
    // The environment variable names the store.
    let out = Command::new(env!("CARGO_BIN_EXE_ocistore"))
        .args(["-o", "json", "repository", "list"])
        .env("OCISTORE_STORE", s.dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
}

/// Runs the binary with no store; gives stdout, after checking it succeeded.
fn run_bare(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ocistore"))
        .args(args)
        .env_remove("OCISTORE_STORE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands a `--help` lists under `Commands:`, `help` aside.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// Every verb of the binary, as found by walking `--help`: the leaves, each as its words.
fn verbs() -> Vec<Vec<String>> {
    let mut leaves = Vec::new();
    let mut todo = vec![Vec::<String>::new()];
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = run_bare(&args);
        let children = subcommands(&help);
        if children.is_empty() {
            leaves.push(path.clone());
        }
        todo.extend(children.into_iter().map(|c| {
            let mut child = path.clone();
            child.push(c);
            child
        }));
    }
    leaves.sort();
    leaves
}

#[test]
fn help_describes_every_verb_and_gives_examples_of_it() {
    let top = run_bare(&["--help"]);
    // Its own description, not the library's.
    assert!(top.starts_with("Administer an ocistore store"), "{top}");
    assert!(top.contains("\nExit codes:\n"), "{top}");
    assert!(
        top.contains("  3  the repository named is unknown"),
        "{top}"
    );
    let verbs = verbs();
    assert!(verbs.len() > 20, "{verbs:?}");
    let mut groups: Vec<Vec<String>> = verbs
        .iter()
        .flat_map(|v| (1..v.len()).map(|n| v[..n].to_vec()))
        .collect();
    groups.dedup();
    for path in groups.iter().chain(&verbs) {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = run_bare(&args);
        let description = help.lines().next().unwrap_or_default();
        assert!(
            description.len() > 10 && !description.starts_with("Usage:"),
            "{path:?}: {help}"
        );
        let command = format!("ocistore {}", path.join(" "));
        assert!(
            help.contains(&format!("Usage: {command}")),
            "{path:?}: {help}"
        );
        let examples: Vec<&str> = help
            .lines()
            .skip_while(|l| *l != "Examples:")
            .skip(1)
            .collect();
        assert!(
            examples
                .iter()
                .any(|l| l.starts_with("  $ ") && l.contains(&command)),
            "{path:?} has no example of itself: {help}"
        );
        // `-h` gives the short form, with the first sentence of the description.
        args.pop();
        args.push("-h");
        let short = run_bare(&args);
        let short = short.lines().next().unwrap_or_default();
        assert!(
            short.len() > 10 && description.starts_with(short),
            "{path:?}: {short}"
        );
    }
}

/// The verbs that name no repository.
const VERBS_WITHOUT_A_REPOSITORY: [&str; 13] = [
    "config history-retention show",
    "config history-retention update",
    "config retention show",
    "config retention update",
    "config soft-delete show",
    "config soft-delete update",
    "fsck",
    "gc",
    "maintenance run",
    "purge",
    "repository list",
    "repository list-deleted",
    "usage",
];

/// Every verb that names a repository, with its arguments naming `repo`, and whether it works
/// inside a repository in the recycle bin (the verbs of the bin itself: S5, S11, S16).
fn verbs_naming(repo: &str, digest: &Digest) -> Vec<(Vec<String>, bool)> {
    let d = format!("{repo}@{digest}");
    let t = format!("{repo}:v1");
    let rows: [(&[&str], bool); 20] = [
        (&["repository", "show", repo], true),
        (&["repository", "show-tags", repo], false),
        (&["repository", "delete", repo, "-y"], false),
        (&["repository", "untag", &t, "-y"], false),
        (&["manifest", "list-metadata", repo], false),
        (&["manifest", "show", &t], false),
        (&["manifest", "show", &d], false),
        (&["manifest", "list-deleted", repo], true),
        (&["manifest", "list-deleted-tags", repo], true),
        (&["manifest", "list-deleted-tags", &t], true),
        (&["manifest", "restore", &t], true),
        (&["manifest", "delete", &d, "-y"], false),
        (&["manifest", "purge-deleted", &t, "-y"], true),
        (&["manifest", "history", &t], true),
        (&["lock", repo], false),
        (&["lock", &t, "--read-only"], false),
        (&["unlock", &d], false),
        (&["locks", repo], false),
        (&["manifest", "purge-deleted", &d, "-y"], true),
        (&["repository", "purge-deleted", repo, "-y"], true),
    ];
    rows.iter()
        .map(|(args, in_bin)| (args.iter().map(|a| (*a).to_owned()).collect(), *in_bin))
        .collect()
}

#[test]
fn n5_an_unknown_repository_is_the_library_message_and_exit_3_in_every_verb() {
    let s = Store::new();
    let rows = verbs_naming("team/nope", &s.v1);
    // Every verb of the binary is here, or names no repository.
    let covered: std::collections::BTreeSet<String> = rows
        .iter()
        .map(|(args, _)| {
            let words = if args[0] == "repository" || args[0] == "manifest" {
                2
            } else {
                1
            };
            args[..words].join(" ")
        })
        .chain(VERBS_WITHOUT_A_REPOSITORY.map(String::from))
        .collect();
    let all: std::collections::BTreeSet<String> = verbs().iter().map(|v| v.join(" ")).collect();
    assert_eq!(covered, all);
    let message = ocistore::Error::RepositoryUnknown {
        name: "team/nope".into(),
    }
    .to_string();
    for (args, _) in &rows {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        for output in ["table", "json"] {
            let mut all = vec!["--output", output];
            all.extend_from_slice(&args);
            assert_eq!(s.err(&all, 3), format!("error: {message}\n"), "{args:?}");
        }
    }
    // A bad name is still a plain error.
    assert!(
        s.err(&["repository", "show", "Team/Nope"], 1)
            .contains("invalid repository name")
    );
}

#[test]
fn n5_a_repository_in_the_recycle_bin_is_named_so_and_only_the_bin_verbs_work_in_it() {
    let s = Store::new();
    s.ok(&["repository", "delete", "team/app", "-y"]);
    let message = ocistore::Error::RepositorySoftDeleted {
        name: "team/app".into(),
    }
    .to_string();
    assert!(message.contains("soft-deleted"), "{message}");
    let mut rows = verbs_naming("team/app", &s.v1);
    // The refused first, while the repository is in the bin; then the others, which may bring
    // it back or purge it.
    rows.sort_by_key(|(_, in_bin)| *in_bin);
    for (args, in_bin) in rows {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        if in_bin {
            // Each is checked to work on its own below; here, only that it is not refused.
            let out = s.run(&args);
            assert_ne!(out.status.code(), Some(3), "{args:?}");
        } else {
            assert_eq!(s.err(&args, 3), format!("error: {message}\n"), "{args:?}");
        }
    }
}

#[test]
fn s5_s11_s16_the_recycle_bin_verbs_work_inside_a_soft_deleted_repository() {
    let s = Store::new();
    s.ok(&["repository", "delete", "team/app", "-y"]);
    let show = s.ok(&["repository", "show", "team/app"]);
    let field = |name: &str| {
        show.lines()
            .find_map(|l| l.strip_prefix(name).filter(|v| v.starts_with(' ')))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name} in {show}"))
    };
    assert_eq!(field("state"), "in the recycle bin");
    assert_eq!((field("tags"), field("manifests")), ("0", "0"));
    // v1, v2, latest, and scratch untagged before.
    assert_eq!(field("recycle bin"), "3 manifests, 4 tags");
    humantime::parse_rfc3339(field("expires at")).unwrap();
    let state = s
        .registry()
        .repository("team/app")
        .unwrap()
        .state()
        .unwrap();
    let state = serde_json::to_value(state).unwrap();
    assert_eq!(state["state"], "deleted");
    assert_eq!(s.json(&["repository", "show", "team/app"])["state"], state);
    let bin = s.json(&["manifest", "list-deleted", "team/app"]);
    assert_eq!(bin.as_array().unwrap().len(), 3);
    let tags = s.json(&["manifest", "list-deleted-tags", "team/app:v1"]);
    assert_eq!(tags[0]["digest"], s.v1.as_str());
    assert!(
        s.ok(&["manifest", "history", "team/app:v1"])
            .contains("delete")
    );
    // Purging a tag's deletions for good, then restoring brings the repository back (S11).
    s.ok(&["manifest", "purge-deleted", "team/app:latest", "-y"]);
    s.err(&["manifest", "restore", "team/app:latest"], 1);
    s.ok(&["manifest", "restore", "team/app:v1"]);
    assert_eq!(
        s.json(&["repository", "list"]),
        serde_json::json!(["team/app", "team/web"])
    );
    // A manifest purged from the bin of a live repository.
    let untagged = format!("team/app@{}", s.untagged);
    s.ok(&["manifest", "purge-deleted", &untagged, "-y"]);
    assert!(
        s.err(&["manifest", "purge-deleted", &untagged, "-y"], 1)
            .contains("not in the recycle bin")
    );
    // A repository purged from the bin is unknown.
    s.ok(&["repository", "delete", "team/web", "-y"]);
    s.err(&["repository", "purge-deleted", "team/web"], 1);
    assert_eq!(
        s.ok(&["repository", "purge-deleted", "team/web", "-y"]),
        "purged  team/web\n"
    );
    s.err(&["repository", "show", "team/web"], 3);
}

/// The value of `key` in `key  value` text lines.
#[track_caller]
fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(key).filter(|v| v.starts_with("  ")))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in {text}"))
}

#[test]
fn repository_show_text_and_json_are_the_library_state_tags_usage_and_locks() {
    let s = Store::new();
    s.ok(&["lock", "team/app:v1"]);
    let text = s.ok(&["repository", "show", "team/app"]);
    assert_eq!(field(&text, "name"), "team/app");
    assert_eq!(field(&text, "state"), "live");
    humantime::parse_rfc3339(field(&text, "created")).unwrap();
    assert_eq!(field(&text, "tags"), "3");
    assert_eq!(field(&text, "manifests"), "3");
    assert_eq!(field(&text, "recycle bin"), "0 manifests, 1 tags");
    assert_eq!(field(&text, "blobs"), "6");
    assert_eq!(field(&text, "locks"), "team/app:v1 (no delete)");
    assert!(text.contains("\nTAG "), "{text}");
    assert!(!text.contains("deleted at"), "{text}");

    let v = s.json(&["repository", "show", "team/app"]);
    let registry = s.registry();
    let repo = registry.repository("team/app").unwrap();
    assert_eq!(v["name"], "team/app");
    assert_eq!(v["state"], library(repo.state().unwrap()));
    assert_eq!(v["state"]["state"], "live");
    assert_eq!(
        (v["manifests"].clone(), v["deleted_manifests"].clone()),
        (3.into(), 0.into())
    );
    assert_eq!(v["deleted_tags"], 1);
    let locks: Vec<Value> = repo
        .locked_items()
        .unwrap()
        .iter()
        .map(|(item, locks)| serde_json::json!({"item": library(item), "locks": library(locks)}))
        .collect();
    assert_eq!(v["locks"], Value::Array(locks));
    assert_eq!(
        v["tags"],
        library(repo.tags(&ocistore::Page::all()).unwrap())
    );
    let usage = registry
        .usage()
        .unwrap()
        .repositories
        .into_iter()
        .find(|r| r.name == "team/app");
    assert_eq!(v["usage"], library(usage.unwrap()));
}

#[test]
fn manifest_show_text_and_json_are_the_library_manifest_and_referrers() {
    let s = Store::new();
    // A referrer of v1: an artifact whose subject is v1.
    let referrer = {
        let registry = s.registry();
        let repo = registry.repository("team/app").unwrap();
        let config = repo.put_blob_sha256(b"{}").unwrap();
        let v1 = repo.manifest("v1").unwrap();
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/vnd.example.sbom","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{config}","size":2}},"layers":[],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":{}}},"annotations":{{"org.example.kind":"sbom"}}}}"#,
            v1.digest, v1.size
        );
        let digest = ocistore::Algorithm::Sha256.digest(body.as_bytes());
        repo.push_manifest(digest.as_str(), OCI_MANIFEST, body.as_bytes())
            .unwrap()
            .digest
    };
    for image in ["team/app:v1".to_owned(), format!("team/app@{}", s.v1)] {
        let text = s.ok(&["manifest", "show", &image]);
        assert_eq!(field(&text, "digest"), s.v1.as_str());
        assert_eq!(field(&text, "tags"), "v1");
        assert_eq!(field(&text, "subject"), "-");
        assert!(text.contains("\nREFERENCE "), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with(referrer.as_str())
                    && l.contains("application/vnd.example.sbom")),
            "{text}"
        );
        let v = s.json(&["manifest", "show", &image]);
        let registry = s.registry();
        let repo = registry.repository("team/app").unwrap();
        assert_eq!(v["repository"], "team/app");
        assert_eq!(
            v["referrers"],
            library(repo.referrers(&s.v1, None).unwrap())
        );
        assert_eq!(v["referrers"][0]["digest"], referrer.as_str());
        assert_eq!(v["manifest"], library(repo.manifest("v1").unwrap()));
    }
    // The referrer: its subject and annotations.
    let text = s.ok(&["manifest", "show", &format!("team/app@{referrer}")]);
    assert_eq!(field(&text, "subject"), s.v1.as_str());
    assert_eq!(
        field(&text, "artifact type"),
        "application/vnd.example.sbom"
    );
    assert_eq!(field(&text, "org.example.kind"), "sbom");
    assert_eq!(field(&text, "tags"), "-");
    // Bad references.
    assert!(
        s.err(&["manifest", "show", "team/app"], 1)
            .contains("expected REPO@DIGEST")
    );
    assert!(
        s.err(&["manifest", "show", "team/app:nope"], 1)
            .contains("unknown")
    );
}
