//! The retention clock (SPEC S3, S4): tombstones expire at `deleted_at + retention`, by the
//! retention in force when autopurge runs; autopurge runs on a persisted cadence
//! (`run_due`), on demand (`run_now`) or from a background thread (`start_maintenance`).

mod common;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{START, Store, push_image, report, snapshot};
use ocistore::{
    Clock, Error, ManualClock, OnConflict, OpenMode, Registry, Restore, SoftDeletePolicy, Timestamp,
};

const HOUR: u64 = 3_600;
const DAY: u64 = 86_400;

fn policy(s: &Store, days: u32) {
    s.registry
        .set_soft_delete_policy(SoftDeletePolicy::enabled(days).unwrap())
        .unwrap();
}

/// Whether everything in the recycle bin is gone: repositories, and the manifests and tags of
/// the given repositories.
fn bin_is_empty(registry: &Registry, repos: &[&str]) -> bool {
    registry.deleted_repositories().unwrap().is_empty()
        && repos.iter().all(|name| {
            let repo = registry.repository(name).unwrap();
            repo.deleted_manifests().unwrap().is_empty()
                && repo.deleted_tags(None).unwrap().is_empty()
        })
}

/// Waits, with short real sleeps, until `done` holds; ten seconds is only a failure detector.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// One manifest with two tags deleted by tag, one tag untagged off a live manifest, and a
/// repository with two tagged manifests and one untagged deleted: what the bin then holds is
/// 1 repository, 1 + 3 manifests and 3 + 3 tags.
fn fill_bin(s: &Store) {
    let app = s.repo("app");
    let a = push_image(&app, "v1", "a");
    app.tag("latest", &a).unwrap();
    push_image(&app, "keep", "k");
    app.tag("loose", &app.resolve("keep").unwrap()).unwrap();
    let gone = s.repo("gone");
    push_image(&gone, "x", "x");
    push_image(&gone, "y", "y");
    push_image(&gone, "sha-only", "z");
    gone.untag("sha-only").unwrap(); // with the policy on: a tag in the bin too
    app.delete_manifest("v1").unwrap();
    app.untag("loose").unwrap();
    s.registry.delete_repository("gone").unwrap();
}

// ---------------------------------------------------------------------------------------------
// S4: the cadence

#[test]
fn s4_run_due_runs_when_never_run_then_waits_for_the_interval() {
    let s = Store::new();
    assert_eq!(s.registry.autopurge_last_run().unwrap(), None);
    assert_eq!(s.registry.run_due().unwrap(), Some(report(START, 0, 0, 0)));
    assert_eq!(s.registry.autopurge_last_run().unwrap(), Some(START));
    assert_eq!(s.registry.run_due().unwrap(), None);
    s.advance(24 * HOUR - 1);
    assert_eq!(s.registry.run_due().unwrap(), None);
    // A run that was not due leaves the last run where it was.
    assert_eq!(s.registry.autopurge_last_run().unwrap(), Some(START));
    s.advance(1);
    let at = s.registry.now();
    assert_eq!(s.registry.run_due().unwrap(), Some(report(at, 0, 0, 0)));
    assert_eq!(s.registry.autopurge_last_run().unwrap(), Some(at));
    assert_eq!(s.registry.run_due().unwrap(), None);
}

#[test]
fn s4_run_due_purges_what_expired_when_it_runs() {
    let s = Store::new();
    policy(&s, 7);
    let repo = s.repo("app");
    push_image(&repo, "v1", "a");
    repo.delete_manifest("v1").unwrap();
    assert_eq!(s.registry.run_due().unwrap(), Some(report(START, 0, 0, 0)));
    s.advance(7 * DAY);
    let at = s.registry.now();
    assert_eq!(s.registry.run_due().unwrap(), Some(report(at, 0, 1, 1)));
    assert!(bin_is_empty(&s.registry, &["app"]));
}

#[test]
fn s4_the_last_run_persists_across_a_reopen() {
    let s = Store::new();
    s.advance(5 * HOUR);
    let ran = s.registry.now();
    assert!(s.registry.run_due().unwrap().is_some());
    s.advance(HOUR);
    let s = s.reopen();
    assert_eq!(s.registry.autopurge_last_run().unwrap(), Some(ran));
    // A restart does not reset the cadence.
    assert_eq!(s.registry.run_due().unwrap(), None);
    s.advance(23 * HOUR - 1);
    let s = s.reopen();
    assert_eq!(s.registry.run_due().unwrap(), None);
    s.advance(1);
    let s = s.reopen();
    assert!(s.registry.run_due().unwrap().is_some());
    assert_eq!(
        s.registry.autopurge_last_run().unwrap(),
        Some(ran.saturating_add(Duration::from_secs(24 * HOUR)))
    );
}

#[test]
fn s4_a_host_restarting_every_hour_still_purges_once_a_day() {
    let mut s = Store::new();
    policy(&s, 1);
    let mut runs = 0;
    for hour in 0..72 {
        if hour == 1 {
            // Deleted one hour in: due at the first run a day after it.
            let repo = s.repo("app");
            push_image(&repo, "v1", "a");
            repo.delete_manifest("v1").unwrap();
        }
        if s.registry.run_due().unwrap().is_some() {
            runs += 1;
        }
        s.advance(HOUR);
        s = s.reopen();
    }
    assert_eq!(runs, 3);
    // The delete at hour 1 expired at hour 25 and was purged by the run at hour 48.
    assert!(bin_is_empty(&s.registry, &["app"]));
}

#[test]
fn s4_a_custom_interval() {
    let s = Store::new();
    let dir = s.dir.path().to_owned();
    drop(s.registry);
    let clock = ManualClock::new(START);
    let registry = Registry::builder()
        .clock(clock.clone())
        .autopurge_interval(Duration::from_secs(6 * HOUR))
        .open(&dir)
        .unwrap();
    assert!(registry.run_due().unwrap().is_some());
    clock.advance(Duration::from_secs(6 * HOUR - 1));
    assert_eq!(registry.run_due().unwrap(), None);
    clock.advance(Duration::from_secs(1));
    assert!(registry.run_due().unwrap().is_some());
    clock.advance(Duration::from_secs(6 * HOUR));
    assert!(registry.run_due().unwrap().is_some());
    drop(registry);

    // The interval is a setting of the host, not of the store: reopened with the default
    // (24 h), the persisted last run is measured against that.
    let ran = START.saturating_add(Duration::from_secs(12 * HOUR));
    let registry = common::open(&dir, &clock);
    assert_eq!(registry.autopurge_last_run().unwrap(), Some(ran));
    clock.advance(Duration::from_secs(12 * HOUR));
    assert_eq!(registry.run_due().unwrap(), None);
    clock.advance(Duration::from_secs(12 * HOUR));
    assert!(registry.run_due().unwrap().is_some());
}

#[test]
fn s4_an_interval_under_one_second_is_invalid_setting() {
    let dir = tempfile::tempdir().unwrap();
    for interval in [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_millis(999),
        Duration::from_nanos(999_999_999),
    ] {
        match Registry::builder()
            .clock(ManualClock::new(START))
            .autopurge_interval(interval)
            .open(dir.path())
        {
            Err(Error::InvalidSetting { setting, value, .. }) => {
                assert_eq!(setting, "autopurge_interval");
                assert_eq!(value, format!("{interval:?}"));
            }
            other => panic!("{interval:?}: {other:?}"),
        }
    }
    // Refused before anything is written: not even the directory was created.
    let missing = dir.path().join("never");
    assert!(
        Registry::builder()
            .autopurge_interval(Duration::from_millis(1))
            .open(&missing)
            .is_err()
    );
    assert!(!missing.exists());
    // One second is the least accepted.
    let registry = Registry::builder()
        .clock(ManualClock::new(START))
        .autopurge_interval(Duration::from_secs(1))
        .open(dir.path())
        .unwrap();
    assert!(registry.run_due().unwrap().is_some());
    assert_eq!(registry.run_due().unwrap(), None);
}

#[test]
fn s4_run_now_always_runs_and_records_the_run() {
    let s = Store::new();
    policy(&s, 7);
    for _ in 0..3 {
        let at = s.registry.now();
        assert_eq!(s.registry.run_now().unwrap(), report(at, 0, 0, 0));
        assert_eq!(s.registry.autopurge_last_run().unwrap(), Some(at));
        s.advance(1);
    }
    // A run on demand counts as the last run: the cadence starts again from it.
    let on_demand = s.registry.now();
    s.registry.run_now().unwrap();
    s.advance(24 * HOUR - 1);
    assert_eq!(s.registry.run_due().unwrap(), None);
    s.advance(1);
    assert!(s.registry.run_due().unwrap().is_some());
    assert!(s.registry.autopurge_last_run().unwrap() > Some(on_demand));
    // run_now purges whatever expired, due or not.
    let repo = s.repo("app");
    push_image(&repo, "v1", "a");
    repo.delete_manifest("v1").unwrap();
    s.advance(7 * DAY);
    let at = s.registry.now();
    s.registry.run_now().unwrap();
    assert!(bin_is_empty(&s.registry, &["app"]));
    assert_eq!(s.registry.run_now().unwrap(), report(at, 0, 0, 0));
}

// ---------------------------------------------------------------------------------------------
// S4: what a run removes

#[test]
fn s4_the_report_counts_exactly_what_expired() {
    let s = Store::new();
    policy(&s, 7);
    fill_bin(&s);
    let at = s
        .registry
        .now()
        .saturating_add(Duration::from_secs(7 * DAY));
    s.clock.set(at);
    assert_eq!(s.registry.run_now().unwrap(), report(at, 1, 4, 6));
    assert!(bin_is_empty(&s.registry, &["app", "gone"]));
    // Nothing left to count.
    assert_eq!(s.registry.run_now().unwrap(), report(at, 0, 0, 0));
}

#[test]
fn s4_autopurge_touches_nothing_live_and_nothing_unexpired() {
    let s = Store::new();
    policy(&s, 7);
    let app = s.repo("app");
    let live = push_image(&app, "live", "l");
    let first = push_image(&app, "first", "f");
    let second = push_image(&app, "second", "s");
    let third = push_image(&app, "third", "t");
    app.tag("untagged-later", &live).unwrap();
    app.delete_manifest("first").unwrap(); // day 0
    s.advance(3 * DAY);
    app.delete_manifest("second").unwrap(); // day 3
    app.untag("untagged-later").unwrap(); // day 3, its manifest stays live
    s.advance(3 * DAY);
    app.delete_manifest("third").unwrap(); // day 6
    s.advance(DAY + HOUR); // day 7 + 1 h: only day 0 has expired

    let live_before = snapshot(&s.registry);
    let history_before = app.tag_history("live").unwrap();
    let at = s.registry.now();
    assert_eq!(s.registry.run_now().unwrap(), report(at, 0, 1, 1));
    assert_eq!(snapshot(&s.registry), live_before);
    assert_eq!(app.tag_history("live").unwrap(), history_before);

    let in_bin: Vec<_> = app
        .deleted_manifests()
        .unwrap()
        .into_iter()
        .map(|m| m.digest)
        .collect();
    assert_eq!(in_bin, [third.clone(), second.clone()]);
    let tags: Vec<_> = app
        .deleted_tags(None)
        .unwrap()
        .into_iter()
        .map(|t| t.tag)
        .collect();
    assert_eq!(tags, ["third", "untagged-later", "second"]);
    // T2: the history of what was purged stays.
    assert_eq!(
        app.tag_history("first").unwrap()[0].from.as_ref(),
        Some(&first)
    );
    assert!(!app.tag_history("second").unwrap().is_empty());

    // What is left can still be restored.
    app.restore(Restore::Tag("second"), OnConflict::Refuse)
        .unwrap();
    assert_eq!(app.resolve("second").unwrap(), second);
    app.restore(Restore::Tag("untagged-later"), OnConflict::Refuse)
        .unwrap();
    assert_eq!(app.resolve("untagged-later").unwrap(), live);
    assert!(matches!(
        app.restore(Restore::Digest(&first), OnConflict::Refuse),
        Err(Error::NotDeleted { .. })
    ));

    // Six days on, the day-6 deletion expires too.
    s.advance(6 * DAY);
    let at = s.registry.now();
    assert_eq!(s.registry.run_now().unwrap(), report(at, 0, 1, 1));
    assert!(bin_is_empty(&s.registry, &["app"]));
    assert_eq!(app.resolve("live").unwrap(), live);
}

#[test]
fn s4_a_purged_repository_takes_everything_in_it_and_can_be_pushed_again() {
    let s = Store::new();
    policy(&s, 7);
    let gone = s.repo("gone");
    let x = push_image(&gone, "x", "x");
    s.registry.delete_repository("gone").unwrap();
    let kept = s.repo("kept");
    push_image(&kept, "v1", "k");
    s.advance(7 * DAY);
    let at = s.registry.now();
    assert_eq!(s.registry.run_now().unwrap(), report(at, 1, 1, 1));
    assert!(s.registry.deleted_repositories().unwrap().is_empty());
    assert_eq!(
        s.registry.repositories(&ocistore::Page::all()).unwrap(),
        ["kept"]
    );
    // Its blob links went with it: the same image must be uploaded again.
    assert!(gone.blobs(&ocistore::Page::all()).unwrap().is_empty());
    assert!(matches!(
        gone.restore(Restore::Digest(&x), OnConflict::Refuse),
        Err(Error::NotDeleted { .. })
    ));
    assert_eq!(push_image(&gone, "x", "x"), x);
    assert!(gone.deleted_manifests().unwrap().is_empty());
}

#[test]
fn s4_autopurge_runs_with_the_policy_off() {
    // Turning the policy off stops new tombstones, not expiry (S15).
    let s = Store::new();
    policy(&s, 3);
    let repo = s.repo("app");
    push_image(&repo, "v1", "a");
    repo.delete_manifest("v1").unwrap();
    s.registry
        .set_soft_delete_policy(SoftDeletePolicy::disabled(3).unwrap())
        .unwrap();
    s.advance(3 * DAY - 1);
    assert_eq!(s.registry.run_now().unwrap().manifests, 0);
    s.advance(1);
    assert_eq!(s.registry.run_now().unwrap().manifests, 1);
    assert!(bin_is_empty(&s.registry, &["app"]));
}

// ---------------------------------------------------------------------------------------------
// S3: expiry by the retention in force when autopurge runs

#[test]
fn s3_an_item_expires_exactly_at_deleted_at_plus_retention() {
    let s = Store::new();
    policy(&s, 7);
    let repo = s.repo("app");
    push_image(&repo, "v1", "a");
    s.advance(HOUR);
    let deleted = s.registry.now();
    repo.delete_manifest("v1").unwrap();
    let expires = deleted.saturating_add(Duration::from_secs(7 * DAY));
    assert_eq!(repo.deleted_manifests().unwrap()[0].expires_at, expires);
    assert_eq!(repo.deleted_tags(None).unwrap()[0].expires_at, expires);
    s.clock.set(Timestamp::from_nanos(expires.as_nanos() - 1));
    assert_eq!(s.registry.run_now().unwrap().manifests, 0);
    assert_eq!(repo.deleted_manifests().unwrap().len(), 1);
    s.clock.set(expires);
    assert_eq!(s.registry.run_now().unwrap(), report(expires, 0, 1, 1));
}

#[test]
fn s3_a_longer_retention_set_after_the_delete_applies() {
    // Deleted with 7 days, changed to 14 on day 5: it expires on day 14.
    let s = Store::new();
    policy(&s, 7);
    let repo = s.repo("app");
    push_image(&repo, "v1", "a");
    repo.delete_manifest("v1").unwrap();
    s.registry.delete_repository("app").unwrap();
    s.advance(5 * DAY);
    policy(&s, 14);
    let day14 = START.saturating_add(Duration::from_secs(14 * DAY));
    assert_eq!(repo.deleted_manifests().unwrap()[0].expires_at, day14);
    assert_eq!(
        s.registry.deleted_repositories().unwrap()[0].expires_at,
        day14
    );
    s.advance(3 * DAY); // day 8: expired under the old retention, not under the new one
    assert_eq!(
        s.registry.run_now().unwrap(),
        report(s.registry.now(), 0, 0, 0)
    );
    assert_eq!(repo.deleted_manifests().unwrap().len(), 1);
    s.clock.set(day14);
    assert_eq!(s.registry.run_now().unwrap(), report(day14, 1, 1, 1));
}

#[test]
fn s3_a_shorter_retention_set_after_the_delete_applies() {
    let s = Store::new();
    policy(&s, 30);
    let repo = s.repo("app");
    push_image(&repo, "v1", "a");
    push_image(&repo, "v2", "b");
    repo.delete_manifest("v1").unwrap();
    s.advance(2 * DAY);
    repo.delete_manifest("v2").unwrap();
    s.advance(DAY);
    // Day 3: down to 2 days. v1 (day 0) has expired, v2 (day 2) has not.
    policy(&s, 2);
    let at = s.registry.now();
    assert_eq!(s.registry.run_now().unwrap(), report(at, 0, 1, 1));
    let left: Vec<_> = repo
        .deleted_tags(None)
        .unwrap()
        .into_iter()
        .map(|t| t.tag)
        .collect();
    assert_eq!(left, ["v2"]);
}

// ---------------------------------------------------------------------------------------------
// S4: the maintenance thread

fn deleted_store() -> Store {
    let s = Store::new();
    policy(&s, 7);
    fill_bin(&s);
    s
}

#[test]
fn s4_the_maintenance_thread_purges_on_the_retention_clock() {
    let s = deleted_store();
    let maintenance = s.registry.start_maintenance(Duration::from_millis(5));
    // Its first run (never run before) happens at once; nothing has expired yet.
    wait_until("the first run", || {
        s.registry.autopurge_last_run().unwrap().is_some()
    });
    assert!(!bin_is_empty(&s.registry, &["app", "gone"]));
    s.advance(7 * DAY);
    // Expired, the bin lists nothing at once (S3); the run reclaims it.
    assert!(bin_is_empty(&s.registry, &["app", "gone"]));
    wait_until("a run after the expiry", || {
        s.registry.autopurge_last_run().unwrap() == Some(s.registry.now())
    });
    assert_eq!(s.registry.usage().unwrap().soft_deleted_bytes, 0);
    assert_eq!(maintenance.last_error(), None);
    assert!(!maintenance.is_finished());
    assert_eq!(
        s.registry.autopurge_last_run().unwrap(),
        Some(s.registry.now())
    );
    maintenance.shutdown();
    // Nothing runs after shutdown: a run now would be due, and the last run stays put.
    s.advance(2 * DAY);
    let last = s.registry.autopurge_last_run().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(s.registry.autopurge_last_run().unwrap(), last);
}

#[test]
fn s4_shutdown_wakes_the_thread_instead_of_waiting_out_the_poll() {
    let s = Store::new();
    // A poll of an hour of real time: shutdown must not wait for it.
    let maintenance = s.registry.start_maintenance(Duration::from_secs(HOUR));
    wait_until("the first run", || {
        s.registry.autopurge_last_run().unwrap().is_some()
    });
    assert!(!maintenance.is_finished());
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        maintenance.shutdown();
        done.send(()).unwrap();
    });
    finished
        .recv_timeout(Duration::from_secs(10))
        .expect("shutdown returns without waiting out the poll");
    // The thread let go of its registry handle: the store can be opened again.
    let s = s.reopen();
    assert!(s.registry.autopurge_last_run().unwrap().is_some());
}

#[test]
fn s4_dropping_the_handle_stops_the_thread_and_releases_the_store() {
    let s = deleted_store();
    let maintenance = s.registry.start_maintenance(Duration::from_millis(5));
    wait_until("the first run", || {
        s.registry.autopurge_last_run().unwrap().is_some()
    });
    drop(maintenance);
    // With the thread still holding a clone of the registry, this reopen would fail with
    // AlreadyOpen (the fixture panics then).
    let s = s.reopen();
    // And it no longer purges: what expired stays unreclaimed (S3: hidden, not purged).
    s.advance(7 * DAY);
    std::thread::sleep(Duration::from_millis(50));
    assert!(s.registry.usage().unwrap().soft_deleted_bytes > 0);
    let at = s.registry.now();
    assert_eq!(s.registry.run_due().unwrap(), Some(report(at, 1, 4, 6)));
}

#[test]
fn s4_the_maintenance_thread_keeps_the_cadence() {
    let s = Store::new();
    s.registry.run_now().unwrap();
    let ran = s.registry.now();
    s.advance(HOUR);
    // Started an hour after a run: it must not run again until 24 h after it.
    let maintenance = s.registry.start_maintenance(Duration::from_millis(1));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(s.registry.autopurge_last_run().unwrap(), Some(ran));
    s.advance(23 * HOUR);
    let due = s.registry.now();
    wait_until("the next due run", || {
        s.registry.autopurge_last_run().unwrap() == Some(due)
    });
    maintenance.shutdown();
}

/// A manual clock that panics when told to, to make a run of the maintenance thread fail.
#[derive(Debug, Clone)]
struct PanickingClock {
    inner: ManualClock,
    panic: Arc<AtomicBool>,
}

impl Clock for PanickingClock {
    fn now(&self) -> Timestamp {
        assert!(!self.panic.load(Ordering::SeqCst), "clock told to panic");
        self.inner.now()
    }
}

#[test]
fn s4_is_finished_reports_a_thread_that_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let panic = Arc::new(AtomicBool::new(false));
    let clock = PanickingClock {
        inner: ManualClock::new(START),
        panic: panic.clone(),
    };
    let registry = Registry::builder().clock(clock).open(dir.path()).unwrap();
    let maintenance = registry.start_maintenance(Duration::from_millis(1));
    wait_until("the first run", || {
        registry.autopurge_last_run().unwrap().is_some()
    });
    assert!(!maintenance.is_finished());
    panic.store(true, Ordering::SeqCst);
    // Not `wait_until`: a failed assertion here would drop the handle while unwinding, and its
    // drop hands the thread's panic on, which would abort the test binary.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !maintenance.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    let finished = maintenance.is_finished();
    // shutdown hands the thread's panic on.
    let joined = std::panic::catch_unwind(AssertUnwindSafe(|| maintenance.shutdown()));
    assert!(joined.is_err(), "shutdown passes the thread's panic on");
    assert!(finished, "is_finished() after the thread died");
}

#[test]
fn s4_two_timers_racing_run_it_once() {
    // The check and the run are one transaction: of two timers firing together, one runs.
    let s = Store::new();
    for round in 0..20 {
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let runs: Vec<_> = (0..2)
            .map(|_| {
                let registry = s.registry.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    registry.run_due().unwrap().is_some()
                })
            })
            .collect();
        let ran = runs
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|&ran| ran)
            .count();
        assert_eq!(ran, 1, "round {round}");
        s.advance(24 * HOUR);
    }
}

#[test]
fn s4_a_clock_set_back_does_not_stall_autopurge() {
    // A host whose clock ran 30 days ahead once (and autopurge ran then) must not go without
    // autopurge for 30 days after the clock is corrected.
    let s = Store::new();
    policy(&s, 1);
    s.advance(30 * DAY);
    assert!(s.registry.run_due().unwrap().is_some());
    s.clock.set(START); // corrected
    let repo = s.repo("app");
    push_image(&repo, "v1", "a");
    repo.delete_manifest("v1").unwrap();
    s.advance(2 * DAY);
    let at = s.registry.now();
    assert_eq!(s.registry.run_due().unwrap(), Some(report(at, 0, 1, 1)));
}

// ---------------------------------------------------------------------------------------------
// S4 across processes (M3)

/// A shared handle on the store in `dir`. Two of them behave as two processes: redb's locks and
/// the store's lock files belong to open files, not to processes.
fn open_shared(dir: &std::path::Path, clock: &ManualClock, mode: OpenMode) -> Registry {
    Registry::builder()
        .clock(clock.clone())
        .cache_size(16 << 20)
        .mode(mode)
        .open(dir)
        .expect("open store")
}

/// The database file's modification time and length: every commit writes the file, so while
/// they stay put nothing committed.
fn database_stamp(dir: &std::path::Path) -> (std::time::SystemTime, u64) {
    let meta = std::fs::metadata(dir.join("metadata.redb")).unwrap();
    (meta.modified().unwrap(), meta.len())
}

/// Pushes `v<n>` to `app` and deletes it into the bin (retention one day).
fn bin_one(registry: &Registry, n: u64) {
    let repo = registry.repository("app").unwrap();
    push_image(&repo, &format!("v{n}"), &format!("seed {n}"));
    repo.delete_manifest(&format!("v{n}")).unwrap();
}

#[test]
fn m3_two_processes_polling_together_run_autopurge_once_per_due_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let a = open_shared(dir.path(), &clock, OpenMode::Shared);
    let b = open_shared(dir.path(), &clock, OpenMode::Shared);
    a.set_soft_delete_policy(SoftDeletePolicy::enabled(1).unwrap())
        .unwrap();
    for day in 0..10 {
        bin_one(if day % 2 == 0 { &a } else { &b }, day);
        clock.advance(Duration::from_secs(DAY));
        let barrier = std::sync::Barrier::new(2);
        let reports: Vec<_> = std::thread::scope(|s| {
            let runs: Vec<_> = [&a, &b]
                .into_iter()
                .map(|registry| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        registry.run_due().unwrap()
                    })
                })
                .collect();
            runs.into_iter().filter_map(|t| t.join().unwrap()).collect()
        });
        // One run, which purged what expired: the manifest of a day ago and its tag.
        assert_eq!(reports, [report(clock.now(), 0, 1, 1)], "day {day}");
        for registry in [&a, &b] {
            assert_eq!(registry.autopurge_last_run().unwrap(), Some(clock.now()));
            assert_eq!(registry.usage().unwrap().soft_deleted_bytes, 0);
            assert_eq!(registry.run_due().unwrap(), None);
        }
    }
}

#[test]
fn m3_two_processes_maintenance_threads_run_autopurge_once_per_due_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let a = open_shared(dir.path(), &clock, OpenMode::Shared);
    let b = open_shared(dir.path(), &clock, OpenMode::Shared);
    a.set_soft_delete_policy(SoftDeletePolicy::enabled(1).unwrap())
        .unwrap();
    let threads = [
        a.start_maintenance(Duration::from_millis(1)),
        b.start_maintenance(Duration::from_millis(1)),
    ];
    wait_until("the first run", || {
        a.autopurge_last_run().unwrap() == Some(START)
    });
    for day in 0..5 {
        bin_one(&a, day);
        clock.advance(Duration::from_secs(DAY));
        let due = clock.now();
        wait_until("the due run", || {
            b.autopurge_last_run().unwrap() == Some(due)
        });
        assert_eq!(a.usage().unwrap().soft_deleted_bytes, 0, "day {day}");
        // Both threads go on polling, hundreds of times: no second run, and no empty commit.
        let stamp = database_stamp(dir.path());
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(database_stamp(dir.path()), stamp, "day {day}");
    }
    for thread in threads {
        assert_eq!(thread.last_error(), None);
        thread.shutdown();
    }
}

#[test]
fn m3_with_different_intervals_the_shortest_sets_the_cadence_once_per_due_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let open = |interval| {
        Registry::builder()
            .clock(clock.clone())
            .mode(OpenMode::Shared)
            .autopurge_interval(Duration::from_secs(interval))
            .open(dir.path())
            .unwrap()
    };
    let (hourly, daily) = (open(HOUR), open(DAY));
    assert!(daily.run_due().unwrap().is_some());
    for hour in 1..=48 {
        clock.advance(Duration::from_secs(HOUR));
        let runs = [&daily, &hourly, &daily]
            .iter()
            .filter_map(|r| r.run_due().unwrap())
            .count();
        assert_eq!(runs, 1, "hour {hour}");
    }
}

#[test]
fn s4_run_due_when_not_due_commits_nothing() {
    for mode in [OpenMode::Exclusive, OpenMode::Shared] {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(START);
        let registry = open_shared(dir.path(), &clock, mode);
        assert!(registry.run_due().unwrap().is_some());
        clock.advance(Duration::from_secs(DAY - 1));
        let stamp = database_stamp(dir.path());
        // Past the file system's timestamp granularity, so a commit would show.
        std::thread::sleep(Duration::from_millis(50));
        for _ in 0..10 {
            assert_eq!(registry.run_due().unwrap(), None, "{mode:?}");
        }
        assert_eq!(database_stamp(dir.path()), stamp, "{mode:?}");
        // The same stamp does move with a commit: the run once due.
        clock.advance(Duration::from_secs(1));
        assert!(registry.run_due().unwrap().is_some());
        assert_ne!(database_stamp(dir.path()), stamp, "{mode:?}");
    }
}

#[test]
fn s4_a_read_only_handle_runs_no_autopurge() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let writer = open_shared(dir.path(), &clock, OpenMode::Shared);
    let reader = open_shared(dir.path(), &clock, OpenMode::ReadOnly);
    let is_read_only = |e: Error| matches!(e, Error::ReadOnly { .. });
    // Due (it never ran), and still refused, not skipped.
    assert!(is_read_only(reader.run_due().unwrap_err()));
    assert!(is_read_only(reader.run_now().unwrap_err()));
    let maintenance = reader.start_maintenance(Duration::from_millis(1));
    wait_until("the thread's first run", || {
        maintenance.last_error().is_some()
    });
    assert!(maintenance.last_error().unwrap().contains("read-only"));
    maintenance.shutdown();
    // And when not due, too.
    assert!(writer.run_due().unwrap().is_some());
    assert!(is_read_only(reader.run_due().unwrap_err()));
    assert_eq!(reader.autopurge_last_run().unwrap(), Some(START));
}
