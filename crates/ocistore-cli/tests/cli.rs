//! The `ocistore` binary on a real store: a store is built with the library, closed, and the
//! binary run on its directory, one scenario per verb group in both output forms, and bad input
//! for each. Stores live on `/dev/shm` when the machine has it.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use ocistore::{Digest, Registry, SoftDeletePolicy, manifest::OCI_MANIFEST};
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
        if code == 1 {
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
        s.err(&["repository", "show-tags", "team/nope"], 1)
            .contains("repository team/nope unknown")
    );
    assert!(
        s.err(&["repository", "untag", "team/app:nope", "-y"], 1)
            .contains("nope")
    );
    assert!(
        s.err(&["repository", "untag", "team/app", "-y"], 1)
            .contains("expected REPO:TAG")
    );
    assert!(
        s.err(&["repository", "delete", "team/nope", "-y"], 1)
            .contains("unknown")
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
    assert!(
        s.err(&["manifest", "list-metadata", "team/nope"], 1)
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
fn s1_config_soft_delete_update_then_show_json() {
    let s = Store::new();
    let v = s.json(&["config", "soft-delete", "update", "--days", "30"]);
    assert_eq!(
        v,
        serde_json::json!({"status": "enabled", "retention_days": 30})
    );
    s.ok(&["config", "soft-delete", "update", "--status", "disabled"]);
    let v = s.json(&["config", "soft-delete", "show"]);
    assert_eq!(
        v,
        serde_json::json!({"status": "disabled", "retention_days": 30})
    );
    assert_eq!(
        s.ok(&["config", "soft-delete", "show"]),
        "status          disabled\nretention days  30\n"
    );
    assert_eq!(
        s.registry().soft_delete_policy().unwrap(),
        SoftDeletePolicy::disabled(30).unwrap()
    );
}

#[test]
fn r1_config_retention_update_then_show() {
    let s = Store::new();
    let table = s.ok(&["config", "retention", "show"]);
    assert!(table.starts_with("status      disabled\n"), "{table}");
    let v = s.json(&[
        "config",
        "retention",
        "update",
        "--status",
        "enabled",
        "--days",
        "0",
    ]);
    assert_eq!(v["status"], "enabled");
    assert_eq!(v["days"], 0);
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
fn l1_lock_a_tag_then_untag_is_refused_until_unlocked() {
    let s = Store::new();
    let v = s.json(&["lock", "team/app:v1"]);
    assert_eq!(
        v,
        serde_json::json!({"kind": "tag", "item": "team/app:v1", "delete_enabled": false, "write_enabled": true})
    );
    let table = s.ok(&["lock", &format!("team/app@{}", s.v2), "--read-only"]);
    assert!(table.contains("write enabled   false"), "{table}");
    let locks = s.json(&["locks", "team/app"]);
    assert_eq!(locks.as_array().unwrap().len(), 2);
    assert!(s.ok(&["locks", "team/app"]).contains("team/app:v1"));

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
    assert!(s.err(&["lock", "team/nope:v1"], 1).contains("unknown"));
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
    assert_eq!(v["tags_untagged"], 1);
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
    assert_eq!(v["tags_untagged"], 2);
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
    assert_eq!(usage["garbage_bytes"], 6);
    assert_eq!(usage["repositories"][0]["name"], "team/app");
    let table = s.ok(&["usage"]);
    assert!(
        table.starts_with("REPOSITORY") && table.contains("6 bytes garbage"),
        "{table}"
    );

    let dry = s.json(&["gc", "--dry-run", "--grace", "0s"]);
    assert_eq!(
        (dry["dry_run"].clone(), dry["blobs_swept"].clone()),
        (true.into(), 1.into())
    );
    let table = s.ok(&["gc", "--grace", "0s"]);
    assert!(table.contains("blobs swept      1\n"), "{table}");
    assert_eq!(s.json(&["usage"])["garbage_bytes"], 0);

    let fsck = s.json(&["fsck"]);
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
    assert_eq!(run["ran"], true);
    assert_eq!(run["manifests_purged"], 0);
    let due = s.json(&["maintenance", "run", "--due"]);
    assert_eq!(due["ran"], false);
    assert!(s.ok(&["maintenance", "run"]).starts_with("ran "));
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

#[test]
fn help_everywhere() {
    let s = Store::new();
    for args in [
        &["--help"][..],
        &["repository", "--help"],
        &["repository", "untag", "--help"],
        &["manifest", "list-metadata", "--help"],
        &["manifest", "restore", "--help"],
        &["config", "soft-delete", "update", "--help"],
        &["config", "retention", "--help"],
        &["lock", "--help"],
        &["purge", "--help"],
        &["gc", "--help"],
        &["fsck", "--help"],
        &["maintenance", "run", "--help"],
    ] {
        let out = s.ok(args);
        assert!(out.contains("Usage: ocistore"), "{args:?}: {out}");
    }
}
