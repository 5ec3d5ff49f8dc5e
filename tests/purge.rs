//! Purge by filter (SPEC U1–U6), with the examples of `acr purge`'s documentation:
//! `--filter hello-world:.* --ago 1d`, `--untagged` and `--dry-run`.

mod common;

use std::time::Duration;

use common::*;
use ocistore::{
    Digest, Error, Filter, Item, Locks, OnConflict, PurgeOptions, PurgeReport, RepositoryPurge,
    Restore, TagCause, parse_ago,
};

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

fn options(filters: &[&str]) -> PurgeOptions {
    PurgeOptions::new(filters).expect("valid filters")
}

fn untagged(filters: &[&str]) -> PurgeOptions {
    options(filters).untagged(true)
}

fn purge(s: &Store, options: &PurgeOptions) -> PurgeReport {
    s.registry.purge(options).expect("purge")
}

/// Runs `options` as a dry run, checks that it changed nothing, then for real, checks that
/// both reports agree (U5), and returns the real run's report.
fn dry_then_real(s: &Store, names: &[&str], options: &PurgeOptions) -> PurgeReport {
    let before = state(&s.registry, names);
    let dry = purge(s, &options.clone().dry_run(true));
    assert!(dry.dry_run);
    assert_eq!(
        state(&s.registry, names),
        before,
        "a dry run changed the store"
    );
    let real = purge(s, &options.clone().dry_run(false));
    assert!(!real.dry_run);
    assert_eq!(dry.repositories, real.repositories);
    assert_eq!(dry.ran_at, real.ran_at);
    real
}

fn only(report: &PurgeReport) -> &RepositoryPurge {
    assert_eq!(report.repositories.len(), 1, "{report:?}");
    &report.repositories[0]
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn sorted(mut digests: Vec<Digest>) -> Vec<Digest> {
    digests.sort();
    digests
}

/// Pushes one image per tag, `spacing` apart, oldest first, and returns their digests.
fn history(s: &Store, repo: &str, tags: &[&str], spacing: u64) -> Vec<Digest> {
    let r = s.repo(repo);
    tags.iter()
        .map(|tag| {
            let digest = push_image(&r, tag, &format!("{repo} {tag}"));
            s.advance(spacing);
            digest
        })
        .collect()
}

// =============================================================================================
// U1: filters, ago, defaults

#[test]
fn u1_filters_match_whole_names_and_are_repository_colon_tag() {
    let filter: Filter = "hello-world:.*".parse().unwrap();
    assert_eq!(filter.as_str(), "hello-world:.*");
    assert!(filter.matches("hello-world", "v1"));
    assert!(!filter.matches("hello-world-2", "v1"));
    assert!(!filter.matches("my/hello-world", "v1"));
    let filter = Filter::parse("team/.*:v1|v2").unwrap();
    assert!(filter.matches("team/app", "v1") && filter.matches("team/app", "v2"));
    assert!(!filter.matches("team/app", "v12") && !filter.matches("team/app", "xv1"));
    // Only the first ':' splits: the tag regex may hold more.
    let filter = Filter::parse("app:(?:dev|test)-.*").unwrap();
    assert!(filter.matches("app", "dev-1") && !filter.matches("app", "prod-1"));
}

#[test]
fn u1_bad_filters_are_invalid_filter_naming_the_filter() {
    for bad in ["no-colon", ":.*", "app:", "app:(", "app:[z-a]", "(a:b", ""] {
        match Filter::parse(bad) {
            Err(Error::InvalidFilter { filter, reason }) => {
                assert_eq!(filter, bad);
                assert!(!reason.is_empty());
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    // A regex too big to compile within the limit is refused, not built.
    assert!(matches!(
        Filter::parse("app:(a{100}){100}{100}"),
        Err(Error::InvalidFilter { .. })
    ));
    assert!(matches!(
        PurgeOptions::new(["app:.*", "bad"]),
        Err(Error::InvalidFilter { filter, .. }) if filter == "bad"
    ));
}

#[test]
fn u1_a_purge_without_filters_or_with_a_bad_one_writes_nothing() {
    let s = Store::new();
    history(&s, "app", &["a", "b"], DAY);
    s.advance(2 * DAY);
    let none: [&str; 0] = [];
    let err = refused(&s, &["app"], || {
        s.registry.purge(&PurgeOptions::new(none).unwrap())
    });
    assert!(matches!(err, Error::InvalidFilter { ref filter, .. } if filter.is_empty()));
    assert_eq!(tag_names(&s.repo("app")), ["a", "b"]);
}

#[test]
fn u1_ago_takes_the_acr_purge_form() {
    let secs = |s| Duration::from_secs(s);
    assert_eq!(parse_ago("1d3h6m").unwrap(), secs(DAY + 3 * HOUR + 6 * 60));
    assert_eq!(parse_ago("30m").unwrap(), secs(30 * 60));
    assert_eq!(parse_ago("2d").unwrap(), secs(2 * DAY));
    assert_eq!(parse_ago("0").unwrap(), Duration::ZERO);
    assert_eq!(parse_ago("1h30m15s").unwrap(), secs(5415));
    assert_eq!(parse_ago("1500ms").unwrap(), Duration::from_millis(1500));
    assert_eq!(parse_ago("3us2ns").unwrap(), Duration::from_nanos(3002));
    assert_eq!(parse_ago("3µs").unwrap(), Duration::from_nanos(3000));
    for bad in [
        "",
        "1",
        "d",
        "1x",
        "1 d",
        "-1h",
        "1.5h",
        "1d ",
        "h1",
        "1D",
        "99999999999d",
    ] {
        assert!(
            matches!(parse_ago(bad), Err(Error::InvalidSetting { setting: "purge ago", ref value, .. }) if value == bad),
            "{bad:?}"
        );
    }
}

#[test]
fn u1_defaults_are_acr_purge_defaults() {
    let o = options(&["app:.*"]);
    assert_eq!(o.ago, Duration::from_secs(DAY));
    assert_eq!(o.keep, 0);
    assert!(!o.untagged && !o.dry_run && !o.include_locked);
    assert_eq!(o.filters, [Filter::parse("app:.*").unwrap()]);
}

#[test]
fn u1_a_pathological_regex_matches_in_linear_time_and_correctly() {
    // (a+)+b backtracks exponentially in a backtracking engine on a long run of 'a's.
    let s = Store::new();
    let long = "a".repeat(120);
    let r = s.repo("app");
    push_image(&r, &long, "long");
    push_image(&r, &format!("{}b", "a".repeat(100)), "b");
    s.advance(2 * DAY);
    let report = purge(&s, &options(&["app:(a+)+b"]));
    assert_eq!(
        only(&report).tags_untagged,
        [format!("{}b", "a".repeat(100))]
    );
    assert_eq!(tag_names(&r), [long]);
}

// =============================================================================================
// U2: untag old matching tags, keep the newest N

#[test]
fn u2_seed_hello_world_ago_1d_untags_only_old_tags_of_that_repository() {
    let s = Store::new();
    let old = history(&s, "hello-world", &["v1", "v2"], HOUR);
    history(&s, "hello-world-2", &["v1"], HOUR);
    s.advance(DAY);
    let young = history(&s, "hello-world", &["v3"], HOUR);
    let report = dry_then_real(
        &s,
        &["hello-world", "hello-world-2"],
        &options(&["hello-world:.*"]),
    );
    let r = only(&report);
    assert_eq!(r.repository, "hello-world");
    assert_eq!(r.tags_untagged, names(&["v1", "v2"]));
    assert!(r.manifests_deleted.is_empty() && r.locked.is_empty());
    let repo = s.repo("hello-world");
    assert_eq!(tag_names(&repo), ["v3"]);
    // Only the tags went: without `untagged`, their manifests stay (D1).
    assert_eq!(manifest_digests(&repo), set([&old[0], &old[1], &young[0]]));
    assert_eq!(tag_names(&s.repo("hello-world-2")), ["v1"]);
}

#[test]
fn u2_ago_is_measured_strictly_before_now() {
    let s = Store::new();
    history(&s, "app", &["edge"], 0);
    s.advance(DAY);
    // Updated exactly a day ago: not before now − 1d.
    assert!(purge(&s, &options(&["app:.*"])).repositories.is_empty());
    s.clock.advance(Duration::from_nanos(1));
    assert_eq!(
        only(&purge(&s, &options(&["app:.*"]))).tags_untagged,
        ["edge"]
    );
}

#[test]
fn u2_keep_spares_the_most_recently_updated_of_the_selected_tags() {
    let s = Store::new();
    history(&s, "app", &["b1", "b2", "b3", "b4", "b5"], HOUR);
    history(&s, "app", &["release"], HOUR);
    s.advance(2 * DAY);
    history(&s, "app", &["b6"], HOUR);
    let o = options(&["app:b.*"]).keep(2);
    let report = dry_then_real(&s, &["app"], &o);
    // b6 is too young to be selected, so keep spares b5 and b4; release never matched.
    assert_eq!(only(&report).tags_untagged, names(&["b1", "b2", "b3"]));
    assert_eq!(tag_names(&s.repo("app")), ["b4", "b5", "b6", "release"]);
    // Tagging b1 again makes it the newest: two days on, a second purge keeps it and b6.
    let r = s.repo("app");
    let b4 = r.manifest("b4").unwrap().digest;
    r.tag("b1", &b4).unwrap();
    s.advance(2 * DAY);
    let report = purge(&s, &o);
    assert_eq!(only(&report).tags_untagged, names(&["b4", "b5"]));
}

#[test]
fn u2_several_filters_select_the_union_and_keep_counts_per_repository() {
    let s = Store::new();
    history(&s, "team/api", &["dev-1", "dev-2", "ci-1"], HOUR);
    history(&s, "team/web", &["dev-1", "ci-1", "ci-2"], HOUR);
    history(&s, "other", &["dev-1"], HOUR);
    s.advance(2 * DAY);
    let o = options(&["team/.*:dev-.*", "team/web:ci-.*"]).keep(1);
    let report = dry_then_real(&s, &["team/api", "team/web", "other"], &o);
    let by_repo: Vec<(&str, &[String])> = report
        .repositories
        .iter()
        .map(|r| (r.repository.as_str(), r.tags_untagged.as_slice()))
        .collect();
    assert_eq!(
        by_repo,
        [
            ("team/api", &names(&["dev-1"])[..]),
            ("team/web", &names(&["ci-1", "dev-1"])[..]),
        ]
    );
    assert_eq!(report.tags_untagged(), 3);
    assert_eq!(tag_names(&s.repo("other")), ["dev-1"]);
}

#[test]
fn u2_soft_deleted_repositories_are_not_purged() {
    let s = Store::new();
    policy_on(&s, 7);
    history(&s, "gone", &["a"], HOUR);
    history(&s, "kept", &["a"], HOUR);
    s.registry.delete_repository("gone").unwrap();
    s.advance(2 * DAY);
    let report = dry_then_real(&s, &["gone", "kept"], &untagged(&[".*:.*"]));
    assert_eq!(only(&report).repository, "kept");
    assert_eq!(s.registry.deleted_repositories().unwrap().len(), 1);
}

// =============================================================================================
// U3: untagged manifests

#[test]
fn u3_seed_untagged_deletes_the_images_of_purged_tags_and_old_untagged_ones() {
    let s = Store::new();
    let r = s.repo("hello-world");
    let orphan = push_untagged(&r, "orphan");
    let old = history(&s, "hello-world", &["v1", "v2"], HOUR);
    // v2 moves: its first image is left untagged, old by its last update.
    let moved = push_image(&r, "v2", "v2 rebuilt");
    s.advance(2 * DAY);
    let young_untagged = push_untagged(&r, "young");
    let report = dry_then_real(&s, &["hello-world"], &untagged(&["hello-world:.*"]));
    let purged = only(&report);
    assert_eq!(purged.tags_untagged, names(&["v1", "v2"]));
    assert_eq!(
        purged.manifests_deleted,
        sorted(vec![orphan, old[0].clone(), old[1].clone(), moved])
    );
    assert_eq!(manifest_digests(&r), set([&young_untagged]));
}

#[test]
fn u3_children_of_a_tagged_index_stay_acr_cli_131() {
    let s = Store::new();
    let r = s.repo("multi");
    let amd = push_untagged(&r, "amd64");
    let arm = push_untagged(&r, "arm64");
    let index = push_index(&r, Some("latest"), &[&amd, &arm]);
    let stray = push_untagged(&r, "stray");
    s.advance(2 * DAY);
    let report = dry_then_real(&s, &["multi"], &untagged(&["multi:nothing-matches"]));
    assert_eq!(only(&report).manifests_deleted, [stray]);
    assert_eq!(manifest_digests(&r), set([&amd, &arm, &index]));
    r.pull("latest").unwrap();
}

#[test]
fn u3_an_untagged_index_goes_with_its_children_unless_another_index_keeps_them() {
    let s = Store::new();
    let r = s.repo("multi");
    let amd = push_untagged(&r, "amd64");
    let arm = push_untagged(&r, "arm64");
    let shared = push_untagged(&r, "shared");
    let old_index = push_index(&r, Some("v1"), &[&amd, &shared]);
    s.advance(2 * DAY);
    // A young untagged index keeps its children, even old ones.
    let young_index = push_index(&r, None, &[&arm, &shared]);
    let report = dry_then_real(&s, &["multi"], &untagged(&["multi:v1"]));
    let purged = only(&report);
    assert_eq!(purged.tags_untagged, ["v1"]);
    assert_eq!(purged.manifests_deleted, sorted(vec![old_index, amd]));
    assert_eq!(manifest_digests(&r), set([&arm, &shared, &young_index]));
}

#[test]
fn u3_an_index_of_indexes_is_kept_whole_when_its_top_stays() {
    let s = Store::new();
    let r = s.repo("nested");
    let leaf = push_untagged(&r, "leaf");
    let inner = push_index(&r, None, &[&leaf]);
    let top = push_index(&r, None, &[&inner]);
    s.advance(2 * DAY);
    // The top is young: touching it by pushing it again keeps it, and so all below it.
    push(
        &r,
        None,
        ocistore::manifest::OCI_INDEX,
        &index_bytes(&r, &[&inner]),
    );
    assert!(purge(&s, &untagged(&["nested:.*"])).repositories.is_empty());
    s.advance(2 * DAY);
    let report = dry_then_real(&s, &["nested"], &untagged(&["nested:.*"]));
    assert_eq!(
        only(&report).manifests_deleted,
        sorted(vec![leaf, inner, top])
    );
}

#[test]
fn u3_referrers_of_a_live_subject_stay_acr_cli_133() {
    let s = Store::new();
    let r = s.repo("signed");
    let image = push_image(&r, "v1", "image");
    let signature = push_referrer(&r, None, &image, "sig");
    s.advance(2 * DAY);
    let report = purge(&s, &untagged(&["signed:nothing"]));
    assert!(report.repositories.is_empty(), "{report:?}");
    assert_eq!(manifest_digests(&r), set([&image, &signature]));
}

#[test]
fn u3_referrers_of_a_purged_image_go_with_it() {
    let s = Store::new();
    let r = s.repo("signed");
    let image = push_image(&r, "v1", "image");
    // A tagged referrer goes too: deleting a manifest deletes its referrers (D5).
    let signature = push_referrer(&r, Some("v1-sig"), &image, "sig");
    let attestation = push_referrer(&r, None, &signature, "att");
    s.advance(2 * DAY);
    let report = dry_then_real(&s, &["signed"], &untagged(&["signed:v1"]));
    let purged = only(&report);
    assert_eq!(purged.tags_untagged, ["v1"]);
    assert_eq!(
        purged.manifests_deleted,
        sorted(vec![image, signature, attestation])
    );
    assert!(manifest_digests(&r).is_empty());
    assert!(tag_names(&r).is_empty());
}

#[test]
fn u3_without_untagged_no_manifest_is_deleted_and_young_ones_always_stay() {
    let s = Store::new();
    let r = s.repo("app");
    let old_untagged = push_untagged(&r, "old");
    s.advance(2 * DAY);
    let young = history(&s, "app", &["v1"], 0);
    assert!(purge(&s, &options(&["app:.*"])).repositories.is_empty());
    // `untagged` only: v1 is young, its image stays tagged.
    let report = purge(&s, &untagged(&["app:.*"]));
    assert_eq!(only(&report).manifests_deleted, [old_untagged]);
    assert_eq!(manifest_digests(&r), set([&young[0]]));
}

// =============================================================================================
// U4: locks

#[test]
fn u4_locked_tags_and_manifests_are_skipped_and_reported() {
    let s = Store::new();
    let r = s.repo("app");
    let digests = history(&s, "app", &["keep-me", "plain", "frozen"], HOUR);
    let locked_untagged = push_untagged(&r, "locked");
    r.set_locks(&Item::Tag("keep-me".into()), Locks::NO_DELETE)
        .unwrap();
    r.set_locks(&Item::Tag("frozen".into()), Locks::READ_ONLY)
        .unwrap();
    r.set_locks(&Item::Manifest(locked_untagged.clone()), Locks::NO_DELETE)
        .unwrap();
    s.advance(2 * DAY);
    let report = dry_then_real(&s, &["app"], &untagged(&["app:.*"]));
    let purged = only(&report);
    assert_eq!(purged.tags_untagged, ["plain"]);
    assert_eq!(purged.manifests_deleted, [digests[1].clone()]);
    assert_eq!(
        purged.locked,
        [
            Item::Manifest(locked_untagged.clone()),
            Item::Tag("frozen".into()),
            Item::Tag("keep-me".into()),
        ]
    );
    assert_eq!(report.locked(), 3);
    assert_eq!(tag_names(&r), ["frozen", "keep-me"]);
    assert!(manifest_digests(&r).contains(&locked_untagged));
}

#[test]
fn u4_a_locked_referrer_keeps_its_subject() {
    let s = Store::new();
    let r = s.repo("app");
    let image = push_untagged(&r, "image");
    let signature = push_referrer(&r, None, &image, "sig");
    r.set_locks(&Item::Manifest(signature.clone()), Locks::READ_ONLY)
        .unwrap();
    s.advance(2 * DAY);
    let report = dry_then_real(&s, &["app"], &untagged(&["app:.*"]));
    let purged = only(&report);
    assert!(purged.manifests_deleted.is_empty());
    assert_eq!(purged.locked, [Item::Manifest(signature.clone())]);
    assert_eq!(manifest_digests(&r), set([&image, &signature]));
}

#[test]
fn u4_include_locked_unlocks_and_deletes_tags_and_manifests() {
    let s = Store::new();
    policy_on(&s, 7);
    let r = s.repo("app");
    let digests = history(&s, "app", &["frozen"], HOUR);
    let untagged_locked = push_untagged(&r, "locked");
    r.set_locks(&Item::Tag("frozen".into()), Locks::READ_ONLY)
        .unwrap();
    r.set_locks(&Item::Manifest(untagged_locked.clone()), Locks::READ_ONLY)
        .unwrap();
    s.advance(2 * DAY);
    let o = untagged(&["app:.*"]).include_locked(true);
    let report = dry_then_real(&s, &["app"], &o);
    let purged = only(&report);
    assert_eq!(purged.tags_untagged, ["frozen"]);
    assert_eq!(
        purged.manifests_deleted,
        sorted(vec![digests[0].clone(), untagged_locked.clone()])
    );
    assert!(purged.locked.is_empty());
    assert!(r.locked_items().unwrap().is_empty());
    // Restored from the bin, they come back unlocked.
    r.restore(Restore::Tag("frozen"), OnConflict::Refuse)
        .unwrap();
    assert!(r.locks(&Item::Tag("frozen".into())).unwrap().is_unlocked());
    r.untag("frozen").unwrap();
}

#[test]
fn u4_a_locked_repository_is_skipped_even_with_include_locked() {
    let s = Store::new();
    history(&s, "app", &["a", "b"], HOUR);
    history(&s, "quiet", &["a"], HOUR);
    let r = s.repo("app");
    for locks in [Locks::NO_DELETE, Locks::READ_ONLY] {
        r.set_locks(&Item::Repository, locks).unwrap();
        s.repo("quiet").set_locks(&Item::Repository, locks).unwrap();
        s.advance(2 * DAY);
        let o = untagged(&["app:.*", "quiet:nothing"]).include_locked(true);
        let report = dry_then_real(&s, &["app", "quiet"], &o);
        // quiet had nothing to purge, so it is not reported.
        assert_eq!(only(&report).locked, [Item::Repository]);
        assert!(only(&report).tags_untagged.is_empty());
        assert_eq!(tag_names(&r), ["a", "b"]);
    }
}

// =============================================================================================
// U5: dry run

#[test]
fn u5_seed_dry_run_reports_exactly_the_real_run_over_many_transactions() {
    let s = Store::new();
    let repos = ["r0", "r1", "r2", "r3", "r4"];
    // 5 × 2,000 tags: more changes than one purge transaction takes.
    for name in repos {
        let r = s.repo(name);
        let image = push_image(&r, "base", name);
        let tags: Vec<String> = (0..2000).map(|i| format!("t{i:04}")).collect();
        s.registry
            .batch(|b| {
                for tag in &tags {
                    b.tag(&r, tag, &image)?;
                }
                Ok(())
            })
            .unwrap();
    }
    s.advance(2 * DAY);
    let o = untagged(&["r.*:t0.*", "r[0-3]:t1.*"]).keep(10);
    let report = dry_then_real(&s, &repos, &o);
    // r0–r3: t0… and t1…, ten kept; r4: t0… only, ten kept.
    assert_eq!(report.tags_untagged(), 4 * 1990 + 990);
    // Every image keeps its "base" tag, so none goes.
    assert_eq!(report.manifests_deleted(), 0);
    let left = tag_names(&s.repo("r4"));
    assert_eq!(left.len(), 1 + 10 + 1000);
    assert_eq!(
        left[..11],
        names(&[
            "base", "t0000", "t0001", "t0002", "t0003", "t0004", "t0005", "t0006", "t0007",
            "t0008", "t0009"
        ])[..]
    );
}

#[test]
fn u5_a_second_real_run_finds_nothing_left() {
    let s = Store::new();
    history(&s, "app", &["a", "b", "c"], HOUR);
    s.advance(2 * DAY);
    let o = untagged(&["app:.*"]);
    assert_eq!(purge(&s, &o).tags_untagged(), 3);
    assert!(purge(&s, &o).repositories.is_empty());
}

// =============================================================================================
// U6: through the soft delete policy

#[test]
fn u6_with_soft_delete_a_purge_can_be_undone_from_the_bin() {
    let s = Store::new();
    policy_on(&s, 7);
    let r = s.repo("app");
    let digests = history(&s, "app", &["v1", "v2"], HOUR);
    s.advance(2 * DAY);
    let report = purge(&s, &untagged(&["app:.*"]));
    assert_eq!(report.manifests_deleted(), 2);
    assert_eq!(
        deleted_manifest_digests(&r),
        set([&digests[0], &digests[1]])
    );
    assert_eq!(
        deleted_tag_pairs(&r),
        pairs([("v1", &digests[0]), ("v2", &digests[1])])
    );
    assert_eq!(
        r.restore(Restore::Tag("v2"), OnConflict::Refuse).unwrap(),
        digests[1]
    );
    assert_eq!(r.pull("v2").unwrap().digest, digests[1]);
    let events = r.tag_history("v1").unwrap();
    assert_eq!(events[0].cause, TagCause::Purge);
    assert_eq!(events[0].to, None);
}

#[test]
fn u6_with_soft_delete_off_a_purge_is_final() {
    let s = Store::new();
    let r = s.repo("app");
    let digests = history(&s, "app", &["v1"], HOUR);
    s.advance(2 * DAY);
    purge(&s, &untagged(&["app:.*"]));
    assert!(deleted_manifest_digests(&r).is_empty());
    assert!(r.deleted_tags(None).unwrap().is_empty());
    assert!(matches!(
        r.restore(Restore::Digest(&digests[0]), OnConflict::Refuse),
        Err(Error::NotDeleted { .. })
    ));
    // Its history stays (T2): the purge's untag is the last entry, and names a purged manifest.
    let events = r.tag_history("v1").unwrap();
    assert_eq!(
        (
            events[0].cause,
            events[0].from.as_ref(),
            events[0].to.as_ref()
        ),
        (TagCause::Purge, Some(&digests[0]), None)
    );
}

#[test]
fn u4_only_locked_items_that_would_otherwise_go_are_reported() {
    let s = Store::new();
    let r = s.repo("multi");
    let child = push_untagged(&r, "child");
    push_index(&r, Some("latest"), &[&child]);
    let stray = push_untagged(&r, "stray");
    // The child stays for its tagged index anyway: its lock keeps nothing.
    r.set_locks(&Item::Manifest(child.clone()), Locks::READ_ONLY)
        .unwrap();
    r.set_locks(&Item::Manifest(stray.clone()), Locks::NO_DELETE)
        .unwrap();
    s.advance(2 * DAY);
    let report = dry_then_real(&s, &["multi"], &untagged(&["multi:none"]));
    assert_eq!(only(&report).locked, [Item::Manifest(stray)]);
    assert!(only(&report).manifests_deleted.is_empty());
}
