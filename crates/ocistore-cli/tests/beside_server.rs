//! The `ocistore` binary beside a running `ocistore-server` binary on one store (M1, M2): the
//! server opens the store shared by default, the command line opens it read-only to read and
//! shared to write, each only while a command runs. Images are pushed through the server over
//! HTTP while the command line lists, deletes, restores, purges and collects; at the end every
//! push the server acknowledged still pulls whole. A y/n question is asked with the store
//! closed: the test opens the store exclusive while the question waits.
//!
//! Every child process is spawned under [`SPAWN`]: a child forked while this process closes a
//! store would keep the store's lock files (`flock`s, held by the open file) until its `exec`.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use ocistore::manifest::OCI_MANIFEST;
use ocistore::{Algorithm, Error, OpenMode, Registry, SoftDeletePolicy};
use ocistore_testkit::servers;
use serde_json::{Value, json};
use tempfile::TempDir;
use ureq::http;

const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// Held while a child process is spawned, and while this process closes a store.
static SPAWN: Mutex<()> = Mutex::new(());

fn spawn_lock() -> MutexGuard<'static, ()> {
    SPAWN.lock().unwrap_or_else(PoisonError::into_inner)
}

fn spawn(command: &mut Command) -> Child {
    let _spawning = spawn_lock();
    command.spawn().unwrap()
}

/// A store directory, on tmpfs when there is one.
fn tempdir() -> TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .unwrap()
}

/// The server's binary, built beside this package's: `cargo test` at the root builds both,
/// but `cargo test -p ocistore-cli` alone would find an old one, or none.
fn server_binary() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = Path::new(env!("CARGO_BIN_EXE_ocistore")).parent().unwrap();
        let profile = match dir.file_name().unwrap().to_str().unwrap() {
            "debug" => "dev",
            other => other,
        };
        let out = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "ocistore-server", "--bin"])
            .args(["ocistore-server", "--profile", profile])
            .env("CARGO_TARGET_DIR", dir.parent().unwrap())
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir.join(format!("ocistore-server{}", std::env::consts::EXE_SUFFIX))
    })
}

fn sha256(bytes: &[u8]) -> String {
    Algorithm::Sha256.digest(bytes).to_string()
}

/// The command line on `store`, stdin not a terminal; its output.
fn cli(store: &Path, args: &[&str]) -> Output {
    let child = spawn(
        Command::new(env!("CARGO_BIN_EXE_ocistore"))
            .arg("--store")
            .arg(store)
            .args(args)
            .env_remove("OCISTORE_STORE")
            .env_remove("OCISTORE_MODE")
            .env_remove("OCISTORE_BLOBS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    child.wait_with_output().unwrap()
}

/// The command line with `--output json`, expected to succeed; its parsed stdout.
#[track_caller]
fn cli_json(store: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let out = cli(store, &all);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// An `ocistore-server` process on a store, stopped with SIGTERM when dropped.
struct Server {
    child: Child,
    base: String,
    agent: ureq::Agent,
}

/// A response, read whole.
struct Resp {
    status: u16,
    body: Vec<u8>,
}

/// An image the server acknowledged: where, and the digests of its manifest and blobs.
#[derive(Clone, Debug)]
struct Pushed {
    repository: String,
    tag: String,
    digest: String,
}

impl Server {
    /// Starts the server on `store` with `args`; gives it and the line it logged on stderr.
    fn start(store: &Path, args: &[&str]) -> (Server, String) {
        let mut child = spawn(
            Command::new(server_binary())
                .arg("--store")
                .arg(store)
                .args(["--listen", "127.0.0.1:0"])
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let mut log = String::new();
        BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut log)
            .unwrap();
        let Some(base) = line.trim().strip_prefix("listening on ") else {
            panic!("the server did not start: {line:?} {log:?}");
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let server = Server {
            child,
            base: base.to_owned(),
            agent,
        };
        (server, log)
    }

    fn call(&self, method: &str, path: &str, content_type: &str, body: Vec<u8>) -> Resp {
        let request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body)
            .unwrap();
        let response = self
            .agent
            .run(request)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .unwrap();
        Resp { status, body }
    }

    fn get(&self, path: &str) -> Resp {
        self.call("GET", path, "application/octet-stream", Vec::new())
    }

    /// Pushes an image made from `seed` (a config, a layer of its own and a base layer every
    /// image shares) as `repository:tag`; the image if the server acknowledged the manifest.
    fn push(&self, repository: &str, tag: &str, seed: &str) -> Option<Pushed> {
        let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#);
        let layer = format!("layer of {seed}").repeat(50);
        let base = "the base layer every image shares".repeat(100);
        let mut layers = Vec::new();
        for (bytes, media_type) in [
            (config.as_bytes(), CONFIG_TYPE),
            (base.as_bytes(), LAYER_TYPE),
            (layer.as_bytes(), LAYER_TYPE),
        ] {
            let digest = sha256(bytes);
            let r = self.call(
                "POST",
                &format!("/v2/{repository}/blobs/uploads/?digest={digest}"),
                "application/octet-stream",
                bytes.to_vec(),
            );
            assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
            layers.push(json!({ "mediaType": media_type, "digest": digest, "size": bytes.len() }));
        }
        let config = layers.remove(0);
        let body = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config,
            "layers": layers,
        }))
        .unwrap();
        let r = self.call(
            "PUT",
            &format!("/v2/{repository}/manifests/{tag}"),
            OCI_MANIFEST,
            body.clone(),
        );
        // The collector may sweep a blob uploaded moments before (grace 0s): such a push is
        // refused, and not acknowledged.
        (r.status == 201).then(|| Pushed {
            repository: repository.to_owned(),
            tag: tag.to_owned(),
            digest: sha256(&body),
        })
    }

    /// Pulls `image` by tag: the manifest is the one pushed, and every blob it names reads
    /// back whole.
    #[track_caller]
    fn assert_pulls_whole(&self, image: &Pushed) {
        let Pushed {
            repository,
            tag,
            digest,
        } = image;
        let r = self.get(&format!("/v2/{repository}/manifests/{tag}"));
        assert_eq!(
            r.status,
            200,
            "{image:?}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(&sha256(&r.body), digest, "{image:?}");
        let manifest: Value = serde_json::from_slice(&r.body).unwrap();
        let layers = manifest["layers"].as_array().unwrap();
        for blob in layers.iter().chain([&manifest["config"]]) {
            let blob = blob["digest"].as_str().unwrap();
            let r = self.get(&format!("/v2/{repository}/blobs/{blob}"));
            assert_eq!(r.status, 200, "{image:?} {blob}");
            assert_eq!(sha256(&r.body), blob, "{image:?}");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = libc::pid_t::try_from(self.child.id()).unwrap();
            // SAFETY: a signal to our own child, running and not waited for.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let _ = self.child.wait();
        }
    }
}

/// Sets its flag when dropped.
struct Stop<'a>(&'a AtomicBool);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A fresh store with soft delete on, made with the library and closed.
fn store() -> TempDir {
    let dir = tempdir();
    let registry = Registry::open(dir.path()).unwrap();
    registry
        .set_soft_delete_policy(SoftDeletePolicy::enabled(7).unwrap())
        .unwrap();
    let _closing = spawn_lock();
    drop(registry);
    dir
}

#[test]
fn m1_the_command_line_deletes_restores_purges_and_collects_while_the_server_takes_pushes() {
    let dir = store();
    let s = dir.path();
    let (server, log) = Server::start(s, &[]);
    assert!(log.contains("(shared)"), "{log}");
    let mine: Vec<Pushed> = (0..3)
        .map(|i| server.push("team/cli", &format!("v{i}"), &format!("cli {i}")))
        .map(Option::unwrap)
        .collect();

    let stop = AtomicBool::new(false);
    let acknowledged = Mutex::new(Vec::new());
    let refused = Mutex::new(0);
    std::thread::scope(|scope| {
        for t in 0..3 {
            let (server, stop, acknowledged, refused) = (&server, &stop, &acknowledged, &refused);
            scope.spawn(move || {
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let pushed = server.push(
                        &format!("team/push{t}"),
                        &format!("i{n}"),
                        &format!("push {t} {n}"),
                    );
                    match pushed {
                        Some(p) => acknowledged.lock().unwrap().push(p),
                        None => *refused.lock().unwrap() += 1,
                    }
                }
            });
        }
        // The pushers stop when the command line is done, or failed.
        let _stop = Stop(&stop);
        for round in 0..8 {
            let scratch = server.push(
                "team/scratch",
                &format!("s{round}"),
                &format!("scratch {round}"),
            );
            let repositories = cli_json(s, &["repository", "list"]);
            assert!(
                repositories
                    .as_array()
                    .unwrap()
                    .contains(&json!("team/cli")),
                "{repositories}"
            );

            // Delete and restore one of our images: the server sees each at once (M2).
            let victim = &mine[round % mine.len()];
            let target = format!("team/cli:{}", victim.tag);
            let deleted = cli_json(s, &["manifest", "delete", &target, "--yes"]);
            assert_eq!(deleted["deleted"], json!([victim.digest]));
            let r = server.get(&format!("/v2/team/cli/manifests/{}", victim.tag));
            assert_eq!(r.status, 404);
            let bin = cli_json(s, &["manifest", "list-deleted", "team/cli"]);
            assert_eq!(bin[0]["digest"], victim.digest.as_str(), "{bin}");
            cli_json(s, &["gc", "--grace", "0s"]);
            let restored = cli_json(s, &["manifest", "restore", &target]);
            assert_eq!(restored["restored"], victim.digest.as_str(), "{restored}");
            server.assert_pulls_whole(victim);

            // Purge the scratch repository's images, empty the bin, collect.
            let purged = cli_json(
                s,
                &[
                    "purge",
                    "--filter",
                    "team/scratch:.*",
                    "--ago",
                    "0",
                    "--untagged",
                    "--yes",
                ],
            );
            if let Some(scratch) = &scratch {
                assert_eq!(
                    purged["repositories"][0]["manifests_deleted"],
                    json!([scratch.digest]),
                    "{purged}"
                );
                let image = format!("team/scratch@{}", scratch.digest);
                cli_json(s, &["manifest", "purge-deleted", &image, "--yes"]);
            }
            if round % 2 == 1 {
                cli_json(s, &["repository", "delete", "team/scratch", "--yes"]);
                cli_json(s, &["repository", "purge-deleted", "team/scratch", "--yes"]);
            }
            let collected = cli_json(s, &["gc", "--grace", "0s"]);
            assert_eq!(collected["dry_run"], false);
            cli_json(s, &["usage"]);
            cli_json(s, &["manifest", "history", &target]);
            cli_json(s, &["gc", "--dry-run"]);
        }
    });

    let acknowledged = acknowledged.into_inner().unwrap();
    assert!(
        acknowledged.len() >= 10,
        "{} acknowledged, {} refused",
        acknowledged.len(),
        refused.into_inner().unwrap()
    );
    for image in acknowledged.iter().chain(&mine) {
        server.assert_pulls_whole(image);
    }
    // What the server pushed is there for the command line, and nothing is wrong but for
    // files a refused push may have left.
    let listed = cli_json(s, &["repository", "list"]);
    assert_eq!(
        listed,
        json!(["team/cli", "team/push0", "team/push1", "team/push2"])
    );
    let out = cli(s, &["-o", "json", "fsck"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    for problem in report["problems"].as_array().unwrap() {
        let kind = problem["kind"].as_str().unwrap();
        assert!(kind.starts_with("stray") || kind == "temp_file", "{report}");
    }
    // The store is the server's to share, not the command line's to have alone.
    let out = cli(s, &["--mode", "exclusive", "usage"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("already open shared")
            && stderr.contains("--mode exclusive needs the store alone"),
        "{stderr}"
    );
    drop(server);
    cli_json(s, &["--mode", "exclusive", "usage"]);
}

#[test]
fn m1_a_server_started_exclusive_refuses_the_command_line_with_a_clear_error() {
    let dir = store();
    let s = dir.path();
    let (server, log) = Server::start(s, &["--mode", "exclusive"]);
    assert!(log.contains("(exclusive)"), "{log}");
    let out = cli(s, &["repository", "list"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: store ")
            && stderr.contains("is already open exclusive")
            && stderr.contains("unless started with --mode exclusive"),
        "{stderr}"
    );
    drop(server);
    cli_json(s, &["repository", "list"]);
    let out = spawn(
        Command::new(server_binary())
            .args(["--mode", "alone", "--store"])
            .arg(s)
            .stderr(Stdio::piped()),
    )
    .wait_with_output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--mode takes shared or exclusive"));
}

#[test]
fn m2_a_push_through_the_server_is_in_the_next_read_of_the_command_line_and_its_untag_in_the_next_pull()
 {
    let dir = store();
    let s = dir.path();
    let (server, _) = Server::start(s, &[]);
    let image = server.push("team/a", "v1", "a").unwrap();
    let shown = cli_json(s, &["manifest", "show", "team/a:v1"]);
    assert_eq!(shown["manifest"]["digest"], image.digest.as_str());
    cli_json(s, &["repository", "untag", "team/a:v1", "--yes"]);
    assert_eq!(server.get("/v2/team/a/manifests/v1").status, 404);
    let r = server.get(&format!("/v2/team/a/manifests/{}", image.digest));
    assert_eq!(r.status, 200);
    let restored = cli_json(s, &["manifest", "restore", "team/a:v1"]);
    assert_eq!(restored["restored"], image.digest.as_str());
    server.assert_pulls_whole(&image);
}

#[test]
fn o1_o4_the_server_and_the_command_line_keep_the_blobs_in_azurite() {
    // A new store: the server creates it, its blobs in Azurite from the start.
    let dir = tempdir();
    let s = dir.path();
    let url = servers::azurite_url(&servers::azurite().unique_prefix(), 1 << 20);
    let (server, log) = Server::start(s, &["--blobs", &url]);
    assert!(log.contains("blobs in az://ocistore/test-"), "{log}");
    let image = server.push("team/a", "v1", "a").unwrap();
    server.assert_pulls_whole(&image);
    assert!(!s.join("blobs").exists(), "no blob file on the local disk");
    // The command line beside it, on the same blobs: usage, fsck over the objects, a collection.
    let usage = cli_json(s, &["--blobs", &url, "usage"]);
    assert_eq!(usage["blobs"], 3, "{usage}");
    let fsck = cli_json(s, &["--blobs", &url, "fsck"]);
    assert_eq!(fsck["problems"], json!([]), "{fsck}");
    assert_eq!(fsck["blobs_checked"], 3, "{fsck}");
    cli_json(s, &["--blobs", &url, "gc", "--yes"]);
    server.assert_pulls_whole(&image);
    // Without --blobs, or with other blobs, the store refuses to open, and says where they are.
    let elsewhere = servers::azurite_url("elsewhere", 1 << 20);
    for args in [&[][..], &["--blobs", elsewhere.as_str()][..]] {
        let mut all = args.to_vec();
        all.extend(["repository", "list"]);
        let out = cli(s, &all);
        assert_eq!(out.status.code(), Some(1), "{all:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            stderr.contains("blobs live in az://ocistore/test-"),
            "{all:?}: {stderr}"
        );
    }
    drop(server);
    let out = spawn(
        Command::new(server_binary())
            .arg("--store")
            .arg(s)
            .stderr(Stdio::piped()),
    )
    .wait_with_output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not in directory"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A pseudo-terminal: its controlling side, to type answers into, and the path of the
/// terminal a child reads them from.
fn pty() -> (File, PathBuf) {
    // SAFETY: calls on a descriptor this function opened and owns; `name` outlives its use.
    unsafe {
        let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(fd >= 0, "{}", std::io::Error::last_os_error());
        let controller = File::from_raw_fd(fd);
        assert_eq!(libc::grantpt(fd), 0);
        assert_eq!(libc::unlockpt(fd), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(fd, name.as_mut_ptr(), name.len()), 0);
        let path = std::ffi::CStr::from_ptr(name.as_ptr()).to_str().unwrap();
        (controller, PathBuf::from(path))
    }
}

/// Pushes an image made from `seed` as `team/app:TAG` with the library; gives its digest.
fn push_tag(registry: &Registry, tag: &str, seed: &str) -> String {
    let repo = registry.repository("team/app").unwrap();
    let config = repo.put_blob_sha256(seed.as_bytes()).unwrap();
    let body = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": CONFIG_TYPE, "digest": config, "size": seed.len() },
        "layers": [],
    });
    let pushed = repo
        .push_manifest(tag, OCI_MANIFEST, body.to_string().as_bytes())
        .unwrap();
    pushed.digest.to_string()
}

/// Runs `ocistore -o json ARGS` on a terminal, on `store`; while its question waits, runs
/// `meanwhile` on the store opened exclusive (which only succeeds if nothing else has it open),
/// then answers yes. Gives the exit code, stdout and stderr.
fn answering_yes(
    store: &Path,
    args: &[&str],
    meanwhile: impl FnOnce(&Registry),
) -> (i32, Value, String) {
    let (mut controller, terminal) = pty();
    let stdin = File::options()
        .read(true)
        .write(true)
        .open(terminal)
        .unwrap();
    let mut child = spawn(
        Command::new(env!("CARGO_BIN_EXE_ocistore"))
            .arg("--store")
            .arg(store)
            .args(["-o", "json"])
            .args(args)
            .env_remove("OCISTORE_MODE")
            .env_remove("OCISTORE_BLOBS")
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let mut stderr = child.stderr.take().unwrap();
    let mut said = Vec::new();
    while !String::from_utf8_lossy(&said).ends_with("(y/n): ") {
        let mut chunk = [0; 512];
        let n = stderr.read(&mut chunk).unwrap();
        assert!(n > 0, "no question: {}", String::from_utf8_lossy(&said));
        said.extend_from_slice(&chunk[..n]);
    }
    let registry = Registry::open(store).unwrap();
    meanwhile(&registry);
    {
        let _closing = spawn_lock();
        drop(registry);
    }
    controller.write_all(b"y\n").unwrap();
    stderr.read_to_end(&mut said).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap(),
        stdout,
        String::from_utf8(said).unwrap(),
    )
}

#[test]
fn m1_the_y_n_question_waits_with_the_store_closed_and_yes_deletes_what_it_named() {
    let dir = store();
    let registry = Registry::open(dir.path()).unwrap();
    let v1 = push_tag(&registry, "v1", "one");
    {
        let _closing = spawn_lock();
        drop(registry);
    }
    let (code, out, said) =
        answering_yes(dir.path(), &["manifest", "delete", "team/app:v1"], |_| ());
    assert_eq!(code, 0, "{said}");
    assert!(
        said.contains(&format!("delete manifest team/app@{v1}")),
        "{said}"
    );
    assert_eq!(out["deleted"], json!([v1]));
}

#[test]
fn m1_a_tag_moved_while_the_question_waited_deletes_nothing() {
    let dir = store();
    let registry = Registry::open(dir.path()).unwrap();
    let v1 = push_tag(&registry, "v1", "one");
    {
        let _closing = spawn_lock();
        drop(registry);
    }
    let mut moved = String::new();
    let (code, _, said) = answering_yes(dir.path(), &["manifest", "delete", "team/app:v1"], |r| {
        moved = push_tag(r, "v1", "two")
    });
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains(&format!(
            "error: the store changed while the question waited: it would now delete manifest team/app@{moved}"
        )) && said.contains("nothing was deleted"),
        "{said}"
    );
    let registry = Registry::open(dir.path()).unwrap();
    let repo = registry.repository("team/app").unwrap();
    assert_eq!(repo.manifest("v1").unwrap().digest.as_str(), moved);
    assert!(repo.manifest(&v1).is_ok());
    let _closing = spawn_lock();
    drop(registry);
}

#[test]
fn m1_a_purge_spares_what_was_pushed_while_its_question_waited() {
    let dir = store();
    let registry = Registry::open(dir.path()).unwrap();
    let v1 = push_tag(&registry, "v1", "one");
    {
        let _closing = spawn_lock();
        drop(registry);
    }
    let mut v2 = String::new();
    let purge = [
        "purge",
        "--filter",
        "team/app:.*",
        "--ago",
        "0",
        "--untagged",
    ];
    let (code, out, said) = answering_yes(dir.path(), &purge, |r| {
        v2 = push_tag(r, "v2", "two");
    });
    assert_eq!(code, 0, "{said}");
    assert!(
        said.contains("last updated more than 0 ago (before "),
        "{said}"
    );
    let report = &out["repositories"][0];
    assert_eq!(report["tags_untagged"], json!(["v1"]), "{out}");
    assert_eq!(report["manifests_deleted"], json!([v1]), "{out}");
    let registry = Registry::open(dir.path()).unwrap();
    let repo = registry.repository("team/app").unwrap();
    assert_eq!(repo.manifest("v2").unwrap().digest.as_str(), v2);
    let _closing = spawn_lock();
    drop(registry);
}

#[test]
fn m1_a_read_command_opens_shared_to_recover_a_store_a_killed_server_left() {
    let dir = store();
    let s = dir.path();
    let (mut server, _) = Server::start(s, &[]);
    let images: Vec<Pushed> = (0..3)
        .map(|i| server.push("team/app", &format!("v{i}"), &format!("app {i}")))
        .map(Option::unwrap)
        .collect();
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let read_only = || {
        Registry::builder()
            .mode(OpenMode::ReadOnly)
            .open(s)
            .map(drop)
    };
    {
        let _closing = spawn_lock();
        assert!(matches!(read_only(), Err(Error::NeedsRecovery { .. })));
    }
    let tags = cli_json(s, &["repository", "show-tags", "team/app"]);
    let digests: Vec<&str> = tags
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["digest"].as_str().unwrap())
        .collect();
    let pushed: Vec<&str> = images.iter().map(|i| i.digest.as_str()).collect();
    assert_eq!(digests, pushed);
    read_only().unwrap();
}
