//! End-to-end tests of `ocistore-server` with real clients from Debian's packages:
//! `umoci` builds OCI image layouts on disk, `skopeo` (containers/image) copies them into the
//! server and back out, inspects, lists and deletes. Every copy out is compared with its source
//! blob by blob: the manifest, the config and every layer keep their digest and their bytes.
//!
//! The server runs in-process as in `tests/conformance.rs` (the crate's library, through
//! `tests/serving`) on a store whose clock is a `ManualClock`, so the collector's grace period
//! needs no waiting. Stores and layouts live on `/dev/shm` when the machine has it. skopeo runs
//! with `--insecure-policy` and with its configuration (auth file, registries.conf,
//! registries.d, home and temporary directories) in the test's own directory, so the host's
//! configuration plays no part.
//!
//! What skopeo has no words for goes over plain HTTP: the referrers API, a `DELETE` of a tag
//! (`skopeo delete` of a tag resolves it to a digest and deletes the manifest) and the
//! administrative API (soft delete policy, recycle bin, restore, collector, usage, fsck).
//!
//! A missing client fails the test with how to install it (`.ci/install-clients`, at the
//! workspace root); it never passes silently.

mod serving;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ocistore::manifest::{OCI_INDEX, OCI_MANIFEST};
use ocistore::{
    Algorithm, BlobStore, CollectOptions, Digest, FsckOptions, ObjectStoreBlobs, RegistryBuilder,
};
use ocistore_server::Config;
use ocistore_testkit::servers;
use serde_json::{Value, json};
use serving::{Resp, Served, read, tempdir};
use ureq::http;

/// The script lives at the workspace root, two levels above this crate (checked by
/// `the_install_hint_names_a_script_that_exists`).
const INSTALL_HINT: &str =
    "run .ci/install-clients at the workspace root (apt-get install skopeo umoci)";
const EMPTY_TYPE: &str = "application/vnd.oci.empty.v1+json";

/// Fails the test, with how to install it, when `tool` cannot be run.
#[track_caller]
fn require(tool: &str) {
    match Command::new(tool).arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "{tool} --version failed ({}): {}; {INSTALL_HINT}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("{tool} not found: {INSTALL_HINT} ({e})"),
    }
}

fn sha256(bytes: &[u8]) -> String {
    Algorithm::Sha256.digest(bytes).to_string()
}

/// `len` bytes that gzip cannot shrink (xorshift), different for each `seed`.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// Runs a command; gives its stdout, or fails with the command and its stderr.
#[track_caller]
fn run(command: &mut Command) -> Vec<u8> {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}; {INSTALL_HINT}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs a command that must fail; gives its stderr.
#[track_caller]
fn run_fails(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}; {INSTALL_HINT}"));
    assert!(
        !out.status.success(),
        "{command:?} succeeded, stdout:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn umoci(args: &[&str]) {
    run(Command::new("umoci").args(args));
}

// ---------------------------------------------------------------------------------------------
// OCI image layouts

/// An OCI image layout on disk.
struct Layout {
    path: PathBuf,
}

impl Layout {
    /// `oci:PATH:tag`, skopeo's name for an image of the layout.
    fn oci(&self, tag: &str) -> String {
        format!("oci:{}:{tag}", self.path.display())
    }

    fn umoci_image(&self, tag: &str) -> String {
        format!("{}:{tag}", self.path.display())
    }

    fn index(&self) -> Value {
        let bytes = std::fs::read(self.path.join("index.json")).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// The descriptor of index.json named `tag` (`org.opencontainers.image.ref.name`).
    #[track_caller]
    fn descriptor(&self, tag: &str) -> Value {
        let index = self.index();
        let found: Vec<&Value> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .collect();
        assert_eq!(found.len(), 1, "{tag} in {}: {index}", self.path.display());
        found[0].clone()
    }

    #[track_caller]
    fn digest(&self, tag: &str) -> String {
        self.descriptor(tag)["digest"].as_str().unwrap().to_owned()
    }

    /// The bytes of a blob, checked against its digest.
    #[track_caller]
    fn blob(&self, digest: &str) -> Vec<u8> {
        let hex = digest.strip_prefix("sha256:").unwrap();
        let path = self.path.join("blobs/sha256").join(hex);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(sha256(&bytes), digest, "{}", path.display());
        bytes
    }

    fn json(&self, digest: &str) -> Value {
        serde_json::from_slice(&self.blob(digest)).unwrap()
    }

    /// Writes a blob; gives its digest and size.
    fn add_blob(&self, bytes: &[u8]) -> (String, usize) {
        let digest = sha256(bytes);
        let hex = digest.strip_prefix("sha256:").unwrap();
        std::fs::write(self.path.join("blobs/sha256").join(hex), bytes).unwrap();
        (digest, bytes.len())
    }

    /// Adds `descriptor` to index.json under `tag`.
    fn tag(&self, tag: &str, mut descriptor: Value) {
        descriptor["annotations"] = json!({ "org.opencontainers.image.ref.name": tag });
        let mut index = self.index();
        index["manifests"].as_array_mut().unwrap().push(descriptor);
        std::fs::write(
            self.path.join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
    }

    /// The digest of a manifest and of everything it holds: the images of an index, the
    /// config and layers of an image (not its subject, which it does not hold).
    fn closure(&self, digest: &str) -> BTreeSet<String> {
        let mut all = BTreeSet::from([digest.to_owned()]);
        let manifest = self.json(digest);
        for child in manifest["manifests"].as_array().into_iter().flatten() {
            all.extend(self.closure(child["digest"].as_str().unwrap()));
        }
        if let Some(config) = manifest["config"]["digest"].as_str() {
            all.insert(config.to_owned());
        }
        for layer in manifest["layers"].as_array().into_iter().flatten() {
            all.insert(layer["digest"].as_str().unwrap().to_owned());
        }
        all
    }

    /// The config and layer blobs of an image manifest (what the collector marks for it).
    fn layer_blobs(&self, digest: &str) -> BTreeSet<String> {
        let mut all = self.closure(digest);
        all.remove(digest);
        all
    }

    fn size(&self, digest: &str) -> u64 {
        self.blob(digest).len() as u64
    }

    /// Every blob file of the layout, each checked against its name.
    fn blob_files(&self) -> BTreeSet<String> {
        std::fs::read_dir(self.path.join("blobs/sha256"))
            .unwrap()
            .map(|entry| {
                let name = entry.unwrap().file_name().into_string().unwrap();
                let digest = format!("sha256:{name}");
                self.blob(&digest);
                digest
            })
            .collect()
    }

    /// Writes an image index of the images `children` (tag, architecture) and tags it.
    fn write_index(&self, tag: &str, children: &[(&str, &str)]) -> String {
        let manifests: Vec<Value> = children
            .iter()
            .map(|(child, arch)| {
                let d = self.descriptor(child);
                json!({
                    "mediaType": d["mediaType"],
                    "digest": d["digest"],
                    "size": d["size"],
                    "platform": { "architecture": arch, "os": "linux" },
                })
            })
            .collect();
        let body = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests,
        }))
        .unwrap();
        let (digest, size) = self.add_blob(&body);
        self.tag(
            tag,
            json!({ "mediaType": OCI_INDEX, "digest": digest, "size": size }),
        );
        digest
    }

    /// Writes an OCI 1.1 artifact (its `artifactType`, the empty config, one layer) whose
    /// subject is the image `subject` and tags it.
    fn write_artifact(
        &self,
        tag: &str,
        subject: &str,
        artifact_type: &str,
        payload: &[u8],
    ) -> String {
        let (empty, empty_size) = self.add_blob(b"{}");
        let (layer, layer_size) = self.add_blob(payload);
        let subject = self.descriptor(subject);
        let body = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": { "mediaType": EMPTY_TYPE, "digest": empty, "size": empty_size },
            "layers": [{
                "mediaType": format!("{artifact_type}.v1+json"),
                "digest": layer,
                "size": layer_size,
            }],
            "subject": {
                "mediaType": subject["mediaType"],
                "digest": subject["digest"],
                "size": subject["size"],
            },
            "annotations": { "org.example.kind": artifact_type },
        }))
        .unwrap();
        let (digest, size) = self.add_blob(&body);
        self.tag(
            tag,
            json!({ "mediaType": OCI_MANIFEST, "digest": digest, "size": size }),
        );
        digest
    }
}

/// Asserts that `out:out_tag` is `src:src_tag`: same manifest digest, media type and size,
/// the same blobs with the same bytes, and nothing else in `out` (a fresh layout).
#[track_caller]
fn assert_same_image(src: &Layout, src_tag: &str, out: &Layout, out_tag: &str) {
    let (want, got) = (src.descriptor(src_tag), out.descriptor(out_tag));
    for field in ["digest", "mediaType", "size"] {
        assert_eq!(got[field], want[field], "{field}: {got} vs {want}");
    }
    let digest = want["digest"].as_str().unwrap();
    let closure = src.closure(digest);
    assert_eq!(out.closure(digest), closure);
    for blob in &closure {
        assert!(out.blob(blob) == src.blob(blob), "{blob} differs");
    }
    assert_eq!(out.blob_files(), closure, "blobs of {}", out.path.display());
}

// ---------------------------------------------------------------------------------------------
// The server, skopeo and umoci

/// A server on a fresh store, a working directory for layouts and skopeo's configuration.
/// The server stops (gracefully) when dropped.
struct E2e {
    served: Served,
    host: String,
    work: PathBuf,
    _work: tempfile::TempDir,
}

impl Resp {
    /// Asserts the status and gives the JSON body.
    #[track_caller]
    fn ok(&self, status: u16) -> Value {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        if self.body.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }
}

impl E2e {
    #[track_caller]
    fn start() -> E2e {
        E2e::start_with(|b| b)
    }

    /// [`start`](E2e::start) on a store opened with the builder `store` makes.
    #[track_caller]
    fn start_with(store: impl FnOnce(RegistryBuilder) -> RegistryBuilder) -> E2e {
        require("skopeo");
        require("umoci");
        let served = Served::start_with(Config::default(), store);
        let work = tempdir();

        // skopeo's configuration, all of it here.
        let dir = work.path().to_owned();
        for sub in [
            "home",
            "config",
            "data",
            "runtime",
            "registries.d",
            "tmp",
            "files",
        ] {
            std::fs::create_dir(dir.join(sub)).unwrap();
        }
        std::fs::write(dir.join("auth.json"), r#"{"auths":{}}"#).unwrap();
        std::fs::write(
            dir.join("registries.conf"),
            "unqualified-search-registries = []\n",
        )
        .unwrap();
        E2e {
            host: served.addr.to_string(),
            served,
            work: dir,
            _work: work,
        }
    }

    // --- skopeo ---

    /// `skopeo` with its configuration in the working directory, then `args`.
    fn skopeo(&self, args: &[&str]) -> Command {
        let dir = &self.work;
        let mut command = Command::new("skopeo");
        command
            .env("HOME", dir.join("home"))
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .env("XDG_DATA_HOME", dir.join("data"))
            .env("XDG_RUNTIME_DIR", dir.join("runtime"))
            .env("TMPDIR", dir.join("tmp"))
            .env("REGISTRY_AUTH_FILE", dir.join("auth.json"))
            .env("CONTAINERS_REGISTRIES_CONF", dir.join("registries.conf"))
            .arg("--insecure-policy")
            .arg("--registries.d")
            .arg(dir.join("registries.d"))
            .arg("--tmpdir")
            .arg(dir.join("tmp"))
            .args(["--command-timeout", "60s"])
            .args(args);
        command
    }

    /// `docker://HOST/reference`, skopeo's name for an image of the server.
    fn docker(&self, reference: &str) -> String {
        format!("docker://{}/{reference}", self.host)
    }

    /// Copies `layout:tag` to `reference` on the server (with `--all`, an index with its
    /// images), failing if any digest would change.
    #[track_caller]
    fn push(&self, layout: &Layout, tag: &str, reference: &str, all: bool) {
        let (src, dest) = (layout.oci(tag), self.docker(reference));
        let mut args = vec!["copy", "--quiet", "--preserve-digests"];
        args.extend(["--dest-tls-verify=false", &src, &dest]);
        if all {
            args.insert(1, "--all");
        }
        run(&mut self.skopeo(&args));
    }

    /// Copies `reference` from the server into `layout:tag`.
    #[track_caller]
    fn pull(&self, reference: &str, layout: &Layout, tag: &str, all: bool) {
        let (src, dest) = (self.docker(reference), layout.oci(tag));
        let mut args = vec!["copy", "--quiet", "--preserve-digests"];
        args.extend(["--src-tls-verify=false", &src, &dest]);
        if all {
            args.insert(1, "--all");
        }
        run(&mut self.skopeo(&args));
    }

    /// A pull that must fail; gives skopeo's error.
    #[track_caller]
    fn pull_fails(&self, reference: &str) -> String {
        let out = self.layout_path("refused");
        let (src, dest) = (self.docker(reference), format!("oci:{}:x", out.display()));
        run_fails(&mut self.skopeo(&["copy", "--src-tls-verify=false", &src, &dest]))
    }

    /// `skopeo inspect --raw`: the manifest's bytes as served.
    #[track_caller]
    fn raw(&self, reference: &str) -> Vec<u8> {
        let image = self.docker(reference);
        run(&mut self.skopeo(&["inspect", "--raw", "--tls-verify=false", &image]))
    }

    /// `skopeo inspect --raw` that must fail; gives skopeo's error.
    #[track_caller]
    fn raw_fails(&self, reference: &str) -> String {
        let image = self.docker(reference);
        run_fails(&mut self.skopeo(&["inspect", "--raw", "--tls-verify=false", &image]))
    }

    /// `skopeo inspect` of the image for `arch`.
    #[track_caller]
    fn inspect(&self, reference: &str, arch: &str) -> Value {
        let image = self.docker(reference);
        let out = run(&mut self.skopeo(&[
            "--override-arch",
            arch,
            "--override-os",
            "linux",
            "inspect",
            "--tls-verify=false",
            &image,
        ]));
        serde_json::from_slice(&out).unwrap()
    }

    /// `skopeo list-tags`.
    #[track_caller]
    fn tags(&self, repository: &str) -> Vec<String> {
        let image = self.docker(repository);
        let out = run(&mut self.skopeo(&["list-tags", "--tls-verify=false", &image]));
        let listing: Value = serde_json::from_slice(&out).unwrap();
        listing["Tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect()
    }

    /// `skopeo delete`. Of a tag, skopeo reads the tag's digest and deletes by digest.
    #[track_caller]
    fn delete(&self, reference: &str) {
        let image = self.docker(reference);
        run(&mut self.skopeo(&["delete", "--tls-verify=false", &image]));
    }

    // --- umoci ---

    fn layout_path(&self, name: &str) -> PathBuf {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        self.work.join(format!("{name}-{n}"))
    }

    /// A new, empty OCI image layout.
    fn layout(&self, name: &str) -> Layout {
        let path = self.layout_path(name);
        umoci(&["init", "--layout", path.to_str().unwrap()]);
        Layout { path }
    }

    /// A layout for skopeo to copy into (it creates it).
    fn out(&self, name: &str) -> Layout {
        Layout {
            path: self.layout_path(name),
        }
    }

    /// Builds the image `tag` for linux/`arch` in `layout`, one layer per file.
    fn image(&self, layout: &Layout, tag: &str, arch: &str, files: &[(&str, &[u8])]) {
        let image = layout.umoci_image(tag);
        umoci(&["new", "--image", &image]);
        umoci(&[
            "config",
            "--image",
            &image,
            "--architecture",
            arch,
            "--os",
            "linux",
        ]);
        self.insert(&image, files);
    }

    /// Builds the image `to` in `layout`: the image `from` plus one layer per file.
    fn derive(&self, layout: &Layout, from: &str, to: &str, files: &[(&str, &[u8])]) {
        umoci(&["tag", "--image", &layout.umoci_image(from), to]);
        self.insert(&layout.umoci_image(to), files);
    }

    /// Adds one layer per file to `image` (`umoci insert --rootless`).
    fn insert(&self, image: &str, files: &[(&str, &[u8])]) {
        for (target, bytes) in files {
            let source = self.layout_path("files");
            std::fs::write(&source, bytes).unwrap();
            let source = source.to_str().unwrap();
            umoci(&["insert", "--rootless", "--image", image, source, target]);
        }
    }

    // --- HTTP ---

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.host));
        let body = match body {
            Some(json) => {
                request = request.header("content-type", "application/json");
                json.to_string().into_bytes()
            }
            None => Vec::new(),
        };
        let response = self
            .served
            .agent
            .run(request.body(body).unwrap())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        read(response)
    }

    fn get(&self, path: &str) -> Resp {
        self.call("GET", path, None)
    }

    /// An administrative call.
    fn admin(&self, method: &str, path: &str, body: Value) -> Resp {
        self.call(method, path, Some(body))
    }

    /// Runs the collector with no grace period, after letting a minute pass.
    #[track_caller]
    fn gc(&self, dry_run: bool) -> Value {
        self.served.clock.advance(Duration::from_secs(60));
        let options = CollectOptions::default()
            .dry_run(dry_run)
            .grace_period(Duration::ZERO);
        self.admin("POST", "/admin/gc", serde_json::to_value(&options).unwrap())
            .ok(200)
    }

    /// The status of a `HEAD` of a blob in `repository`.
    fn blob_status(&self, repository: &str, digest: &str) -> u16 {
        self.call("HEAD", &format!("/v2/{repository}/blobs/{digest}"), None)
            .status
    }
}

fn strings(values: &Value) -> Vec<String> {
    values
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {values}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The tests

#[test]
#[should_panic(
    expected = "skopeo-missing-for-this-test not found: run .ci/install-clients at the workspace root (apt-get install skopeo umoci)"
)]
fn a_missing_client_fails_the_test_with_how_to_install_it() {
    require("skopeo-missing-for-this-test");
}

#[test]
fn the_install_hint_names_a_script_that_exists() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    assert!(root.join("Cargo.toml").is_file() && root.join("crates").is_dir());
    let script = root.join(".ci/install-clients");
    assert!(script.is_file(), "{} is missing", script.display());
}

#[test]
fn p1_p3_p6_skopeo_copies_an_image_in_and_out_with_every_digest_equal() {
    let e = E2e::start();
    let src = e.layout("src");
    // A 9 MiB layer that gzip cannot shrink: more than one of the server's 8 MiB chunks.
    let big = noise(9 << 20, 1);
    e.image(
        &src,
        "v1",
        "amd64",
        &[("/etc/motd", b"hello\n"), ("/opt/big.bin", &big)],
    );
    e.derive(&src, "v1", "v2", &[("/etc/motd", b"hello again\n")]);
    let (v1, v2) = (src.digest("v1"), src.digest("v2"));
    assert_eq!(src.layer_blobs(&v1).len(), 3, "a config and two layers");

    e.push(&src, "v1", "team/app:v1", false);
    e.push(&src, "v2", "team/app:v2", false);

    // The exact bytes, by tag and by digest (P3, P6).
    for (tag, digest) in [("v1", &v1), ("v2", &v2)] {
        let bytes = src.blob(digest);
        assert!(e.raw(&format!("team/app:{tag}")) == bytes, "{tag}");
        assert!(e.raw(&format!("team/app@{digest}")) == bytes, "{digest}");
    }
    let info = e.inspect("team/app:v2", "amd64");
    assert_eq!(info["Digest"], v2);
    assert_eq!(info["Architecture"], "amd64");
    assert_eq!(info["Os"], "linux");
    let layers: Vec<Value> = src.json(&v2)["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].clone())
        .collect();
    assert_eq!(info["Layers"], json!(layers));
    assert_eq!(e.tags("team/app"), ["v1", "v2"]);

    // Out again, by tag and by digest: every blob as it went in.
    let out = e.out("out");
    e.pull("team/app:v1", &out, "v1", false);
    assert_same_image(&src, "v1", &out, "v1");
    let out = e.out("out");
    e.pull(&format!("team/app@{v2}"), &out, "v2", false);
    assert_same_image(&src, "v2", &out, "v2");

    // Registry to registry: skopeo mounts the blobs it knows from team/app (or uploads them).
    let (from, to) = (e.docker("team/app:v2"), e.docker("team/mirror:v2"));
    run(&mut e.skopeo(&[
        "copy",
        "--quiet",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &from,
        &to,
    ]));
    let out = e.out("out");
    e.pull("team/mirror:v2", &out, "v2", false);
    assert_same_image(&src, "v2", &out, "v2");
    let catalog = e.get("/v2/_catalog").ok(200);
    assert_eq!(catalog["repositories"], json!(["team/app", "team/mirror"]));

    // Each blob is stored once (the layers of v1 are v2's too, and the mirror's).
    let blobs: BTreeSet<String> = src
        .layer_blobs(&v1)
        .union(&src.layer_blobs(&v2))
        .cloned()
        .collect();
    let usage = e.get("/admin/usage").ok(200);
    assert_eq!(usage["blobs"], blobs.len());
    let bytes: u64 = blobs.iter().map(|b| src.size(b)).sum();
    assert_eq!(usage["bytes"], bytes);
}

#[test]
fn o1_o2_skopeo_round_trips_images_through_the_server_with_blobs_in_azurite() {
    // Parts of 1 MiB: the 3 MiB layer goes as a multipart upload whatever chunks skopeo sends.
    let blobs: ObjectStoreBlobs = servers::azurite_blobs(1 << 20);
    let e = E2e::start_with(|b| b.blob_store(blobs.clone()));
    let src = e.layout("src");
    let big = noise(3 << 20, 7);
    e.image(
        &src,
        "v1",
        "amd64",
        &[("/etc/motd", b"on azurite\n"), ("/opt/big.bin", &big)],
    );
    e.derive(&src, "v1", "v2", &[("/etc/motd", b"still on azurite\n")]);
    let before = blobs.requests();
    e.push(&src, "v1", "team/app:v1", false);
    e.push(&src, "v2", "team/app:v2", false);
    let pushed = blobs.requests();
    assert!(
        pushed.multipart_part > before.multipart_part,
        "the big layer went in parts: {pushed:?}"
    );
    for tag in ["v1", "v2"] {
        let out = e.out("out");
        e.pull(&format!("team/app:{tag}"), &out, tag, false);
        assert_same_image(&src, tag, &out, tag);
    }
    // Every layer and config is an object, and none is a file of the store.
    let all: BTreeSet<String> = src
        .layer_blobs(&src.digest("v1"))
        .union(&src.layer_blobs(&src.digest("v2")))
        .cloned()
        .collect();
    for digest in &all {
        let digest = Digest::parse(digest).unwrap();
        assert!(blobs.contains(&digest).unwrap(), "{digest} is in Azurite");
    }
    assert!(
        !e.served.registry.path().join("blobs").exists(),
        "no blob directory"
    );
    // A collection and fsck over the objects: nothing to sweep, nothing wrong.
    let report = e.gc(false);
    assert_eq!(report["blobs_swept"], 0, "{report}");
    let fsck = e.admin("POST", "/admin/fsck", json!({})).ok(200);
    assert_eq!(fsck["report"]["problems"], json!([]), "{fsck}");
    assert_eq!(fsck["report"]["blobs_checked"], all.len(), "{fsck}");
}

#[test]
fn p4_p6_skopeo_copies_a_multi_arch_index_with_all_its_images() {
    let e = E2e::start();
    let src = e.layout("src");
    e.image(&src, "amd64", "amd64", &[("/bin/tool", b"tool for amd64")]);
    e.image(&src, "arm64", "arm64", &[("/bin/tool", b"tool for arm64")]);
    let index = src.write_index("multi", &[("amd64", "amd64"), ("arm64", "arm64")]);

    // An index whose images are not in the repository is refused (P4): skopeo's index-only
    // copy fails, as an OCI index and then converted to a Docker manifest list.
    let (from, to) = (src.oci("multi"), e.docker("team/partial:multi"));
    let err = run_fails(&mut e.skopeo(&[
        "copy",
        "--multi-arch",
        "index-only",
        "--dest-tls-verify=false",
        &from,
        &to,
    ]));
    assert!(err.contains("manifest blob unknown"), "{err}");

    e.push(&src, "multi", "team/app:multi", true);
    assert!(e.raw("team/app:multi") == src.blob(&index));
    for arch in ["amd64", "arm64"] {
        let image = src.digest(arch);
        assert!(
            e.raw(&format!("team/app@{image}")) == src.blob(&image),
            "{arch}"
        );
        // skopeo picks the image of the platform from the index.
        let info = e.inspect("team/app:multi", arch);
        assert_eq!(info["Architecture"], arch);
        let layers = &src.json(&image)["layers"];
        assert_eq!(info["Layers"], json!([layers[0]["digest"]]), "{arch}");
    }
    // The images went in by digest: the only tag is the index's.
    assert_eq!(e.tags("team/app"), ["multi"]);

    // Out with --all: the index and both images, every blob equal.
    let out = e.out("out");
    e.pull("team/app:multi", &out, "multi", true);
    assert_same_image(&src, "multi", &out, "multi");
    assert_eq!(out.closure(&index).len(), 1 + 2 * 3);

    // Out without --all: only the arm64 image.
    let out = e.out("out");
    let (from, to) = (e.docker("team/app:multi"), out.oci("arm"));
    run(&mut e.skopeo(&[
        "--override-arch",
        "arm64",
        "--override-os",
        "linux",
        "copy",
        "--quiet",
        "--preserve-digests",
        "--src-tls-verify=false",
        &from,
        &to,
    ]));
    assert_same_image(&src, "arm64", &out, "arm");

    // An image of a live index cannot be deleted on its own (D5).
    let image = src.digest("amd64");
    let err = run_fails(&mut e.skopeo(&[
        "delete",
        "--tls-verify=false",
        &e.docker(&format!("team/app@{image}")),
    ]));
    assert!(err.contains("409 Conflict"), "{err}");
    assert!(
        err.contains(&format!("referenced by index {index}")),
        "{err}"
    );
    assert!(e.raw(&format!("team/app@{image}")) == src.blob(&image));
}

#[test]
fn p4_p8_d5_skopeo_copies_an_artifact_with_a_subject_and_the_referrers_api_lists_it() {
    let e = E2e::start();
    let src = e.layout("src");
    e.image(&src, "v1", "amd64", &[("/app", b"the app")]);
    let subject = src.digest("v1");
    let sbom_type = "application/vnd.example.sbom";
    let sbom = src.write_artifact("sbom", "v1", sbom_type, br#"{"packages":[]}"#);

    e.push(&src, "v1", "team/app:v1", false);
    // By digest, untagged, as signing and SBOM tools push their referrers.
    e.push(&src, "sbom", &format!("team/app@{sbom}"), false);
    assert!(e.raw(&format!("team/app@{sbom}")) == src.blob(&sbom));
    assert_eq!(e.tags("team/app"), ["v1"]);

    // skopeo has no referrers API; it is plain HTTP (P8).
    let path = format!("/v2/team/app/referrers/{subject}");
    let referrers = e.get(&path).ok(200);
    assert_eq!(referrers["mediaType"], OCI_INDEX);
    let found = &referrers["manifests"];
    assert_eq!(found.as_array().unwrap().len(), 1, "{referrers}");
    assert_eq!(found[0]["digest"], sbom);
    assert_eq!(found[0]["artifactType"], sbom_type);
    assert_eq!(found[0]["mediaType"], OCI_MANIFEST);
    assert_eq!(found[0]["size"], src.size(&sbom));
    let filtered = e.get(&format!("{path}?artifactType={sbom_type}")).ok(200);
    assert_eq!(filtered["manifests"], *found);
    let filtered = e
        .get(&format!("{path}?artifactType=application/x-other"))
        .ok(200);
    assert_eq!(filtered["manifests"], json!([]));

    // Out again, by digest: the artifact's manifest, empty config and layer as they went in.
    let out = e.out("out");
    e.pull(&format!("team/app@{sbom}"), &out, "sbom", false);
    assert_same_image(&src, "sbom", &out, "sbom");

    // The subject need not be there (P4): the artifact alone, by tag, into another repository.
    e.push(&src, "sbom", "team/lonely:sbom", false);
    assert!(e.raw("team/lonely:sbom") == src.blob(&sbom));

    // Deleting the subject deletes its referrers (D5); the other repository keeps its copy.
    e.delete(&format!("team/app@{subject}"));
    let err = e.raw_fails(&format!("team/app@{sbom}"));
    assert!(err.contains("manifest unknown"), "{err}");
    assert_eq!(e.get(&path).ok(200)["manifests"], json!([]));
    assert!(e.raw("team/lonely:sbom") == src.blob(&sbom));
}

#[test]
fn d1_d3_a_tag_delete_untags_and_skopeo_delete_removes_the_manifest() {
    let e = E2e::start();
    let src = e.layout("src");
    e.image(&src, "v1", "amd64", &[("/one", b"one")]);
    e.image(&src, "other", "amd64", &[("/two", b"two")]);
    let (v1, other) = (src.digest("v1"), src.digest("other"));
    for tag in ["v1", "latest", "stable"] {
        e.push(&src, "v1", &format!("team/app:{tag}"), false);
    }
    e.push(&src, "other", "team/app:other", false);
    assert_eq!(e.tags("team/app"), ["latest", "other", "stable", "v1"]);

    // D1: a DELETE of a tag (plain HTTP: skopeo has no untag) removes the tag only.
    let r = e.call("DELETE", "/v2/team/app/manifests/stable", None);
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(e.tags("team/app"), ["latest", "other", "v1"]);
    let err = e.raw_fails("team/app:stable");
    assert!(err.contains("manifest unknown"), "{err}");
    assert!(e.raw(&format!("team/app@{v1}")) == src.blob(&v1));
    let out = e.out("out");
    e.pull("team/app:latest", &out, "latest", false);
    assert_same_image(&src, "v1", &out, "latest");

    // skopeo delete of a tag reads the tag's digest and deletes by digest: the manifest goes
    // with every tag of it (D3).
    e.delete("team/app:latest");
    assert_eq!(e.tags("team/app"), ["other"]);
    for reference in ["team/app:v1".to_owned(), format!("team/app@{v1}")] {
        let err = e.raw_fails(&reference);
        assert!(err.contains("manifest unknown"), "{err}");
    }
    let err = e.pull_fails("team/app:v1");
    assert!(err.contains("manifest unknown"), "{err}");

    // By digest (D3).
    e.delete(&format!("team/app@{other}"));
    assert_eq!(e.tags("team/app"), Vec::<String>::new());
    let err = run_fails(&mut e.skopeo(&[
        "delete",
        "--tls-verify=false",
        &e.docker(&format!("team/app@{other}")),
    ]));
    assert!(err.contains("may not exist"), "{err}");

    // No delete removes blob bytes (D6): the layers wait for the collector.
    for blob in src.layer_blobs(&v1).union(&src.layer_blobs(&other)) {
        assert_eq!(e.blob_status("team/app", blob), 200, "{blob}");
    }
}

#[test]
fn s2_s6_s7_s14_soft_deleted_images_stop_pulling_and_pull_again_after_restore() {
    let e = E2e::start();
    let policy = serde_json::to_value(ocistore::SoftDeletePolicy::enabled(7).unwrap()).unwrap();
    let answer = e.admin("PUT", "/admin/policy/soft-delete", policy.clone());
    assert_eq!(answer.ok(200), policy);

    let src = e.layout("src");
    e.image(&src, "v1", "amd64", &[("/app", b"app v1")]);
    e.image(&src, "amd64", "amd64", &[("/bin/tool", b"tool for amd64")]);
    e.image(&src, "arm64", "arm64", &[("/bin/tool", b"tool for arm64")]);
    let index = src.write_index("multi", &[("amd64", "amd64"), ("arm64", "arm64")]);
    let v1 = src.digest("v1");
    e.push(&src, "v1", "team/app:v1", false);
    e.push(&src, "v1", "team/app:stable", false);
    e.push(&src, "multi", "team/app:multi", true);

    // S2: a delete tombstones the manifest and its tags; pulls fail at once.
    e.delete(&format!("team/app@{v1}"));
    for reference in ["team/app:v1".to_owned(), format!("team/app@{v1}")] {
        let err = e.pull_fails(&reference);
        assert!(err.contains("manifest unknown"), "{err}");
    }
    assert_eq!(e.tags("team/app"), ["multi"]);
    let bin = e.get("/admin/deleted/team/app").ok(200);
    let manifests = bin["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{bin}");
    assert_eq!(manifests[0]["digest"], v1);
    let mut tags = strings(&manifests[0]["tags"]);
    tags.sort();
    assert_eq!(tags, ["stable", "v1"]);
    assert_eq!(bin["tags"].as_array().unwrap().len(), 2, "{bin}");

    // S14: the collector keeps what the bin holds.
    let report = e.gc(false);
    assert_eq!(report["blobs_swept"], 0, "{report}");

    // S6, S8: restore by tag and digest brings back that tag only.
    let request = json!({ "repository": "team/app", "tag": "v1", "digest": v1 });
    let restored = e.admin("POST", "/admin/restore", request).ok(200);
    assert_eq!(
        restored,
        json!({ "repository": "team/app", "tag": "v1", "digest": v1 })
    );
    assert_eq!(e.tags("team/app"), ["multi", "v1"]);
    let out = e.out("out");
    e.pull("team/app:v1", &out, "v1", false);
    assert_same_image(&src, "v1", &out, "v1");

    // S7: restore by tag alone.
    let request = json!({ "repository": "team/app", "tag": "stable" });
    let restored = e.admin("POST", "/admin/restore", request).ok(200);
    assert_eq!(restored["digest"], v1);
    assert_eq!(e.tags("team/app"), ["multi", "stable", "v1"]);

    // An index: deleted, its images stay; restored by digest alone it comes back untagged and
    // pulls whole by digest.
    e.delete("team/app:multi");
    let err = e.raw_fails(&format!("team/app@{index}"));
    assert!(err.contains("manifest unknown"), "{err}");
    for arch in ["amd64", "arm64"] {
        let image = src.digest(arch);
        assert!(
            e.raw(&format!("team/app@{image}")) == src.blob(&image),
            "{arch}"
        );
    }
    let request = json!({ "repository": "team/app", "digest": index });
    let restored = e.admin("POST", "/admin/restore", request.clone()).ok(200);
    assert_eq!(restored["tag"], Value::Null, "{restored}");
    assert_eq!(e.tags("team/app"), ["stable", "v1"]);
    let out = e.out("out");
    e.pull(&format!("team/app@{index}"), &out, "multi", true);
    assert_same_image(&src, "multi", &out, "multi");
    // Restoring a live manifest is refused (the bin holds nothing for it) and changes nothing.
    let refused = e.admin("POST", "/admin/restore", request).ok(404);
    assert_eq!(refused["errors"][0]["code"], "NOT_DELETED", "{refused}");
    assert_eq!(e.tags("team/app"), ["stable", "v1"]);

    // S11: a deleted repository comes back with what is restored, and only that.
    let r = e.call("DELETE", "/admin/repositories/team/app", None);
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let err = e.pull_fails("team/app:v1");
    assert!(err.contains("unknown"), "{err}");
    let deleted = e.get("/admin/deleted-repositories").ok(200);
    assert_eq!(deleted["repositories"][0]["name"], "team/app", "{deleted}");
    let request = json!({ "repository": "team/app", "tag": "v1" });
    e.admin("POST", "/admin/restore", request).ok(200);
    assert_eq!(e.tags("team/app"), ["v1"]);
    let out = e.out("out");
    e.pull("team/app:v1", &out, "v1", false);
    assert_same_image(&src, "v1", &out, "v1");
}

#[test]
fn g1_g5_d6_the_collector_sweeps_dead_layers_and_every_live_image_still_pulls() {
    let e = E2e::start();
    let src = e.layout("src");
    e.image(
        &src,
        "base",
        "amd64",
        &[("/usr/lib/shared.so", &noise(256 << 10, 2))],
    );
    e.derive(&src, "base", "a", &[("/app/a", &noise(64 << 10, 3))]);
    e.derive(&src, "base", "b", &[("/app/b", &noise(64 << 10, 4))]);
    let sig = src.write_artifact("sig", "a", "application/vnd.example.signature", b"signed a");
    let (a, b) = (src.digest("a"), src.digest("b"));

    e.push(&src, "a", "team/app:a", false);
    e.push(&src, "sig", &format!("team/app@{sig}"), false);
    e.push(&src, "b", "team/app:b", false);
    let (from, to) = (e.docker("team/app:b"), e.docker("team/mirror:b"));
    run(&mut e.skopeo(&[
        "copy",
        "--quiet",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &from,
        &to,
    ]));

    // Nothing is garbage yet: a dry run with no grace period sweeps nothing.
    let report = e.gc(true);
    assert_eq!(report["blobs_swept"], 0, "{report}");

    // skopeo deletes a (by the tag's digest), and its signature with it (D5).
    e.delete("team/app:a");
    let err = e.raw_fails(&format!("team/app@{sig}"));
    assert!(err.contains("manifest unknown"), "{err}");
    assert_eq!(e.tags("team/app"), ["b"]);

    // The dead blobs: a's config and own layer, the signature's empty config and layer; the
    // base layer a shares with b lives on.
    let live = src.layer_blobs(&b);
    let dead: BTreeSet<String> = src
        .layer_blobs(&a)
        .union(&src.layer_blobs(&sig))
        .filter(|blob| !live.contains(*blob))
        .cloned()
        .collect();
    assert_eq!(dead.len(), 4, "{dead:?}");
    let dead_bytes: u64 = dead.iter().map(|d| src.size(d)).sum();
    for blob in &dead {
        assert_eq!(e.blob_status("team/app", blob), 200, "D6: {blob} waits");
    }
    let usage = e.get("/admin/usage").ok(200);
    assert_eq!(usage["garbage_bytes"], dead_bytes, "{usage}");

    // G5: the dry run says exactly what the real run does.
    let dry = e.gc(true);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        (dry["blobs_swept"].clone(), dry["bytes_swept"].clone()),
        (json!(dead.len()), json!(dead_bytes)),
        "{dry}"
    );
    for blob in &dead {
        assert_eq!(
            e.blob_status("team/app", blob),
            200,
            "dry run: {blob} stays"
        );
    }
    let report = e.gc(false);
    assert_eq!(
        (report["blobs_swept"].clone(), report["bytes_swept"].clone()),
        (json!(dead.len()), json!(dead_bytes)),
        "{report}"
    );
    assert_eq!(report["blobs_marked"], live.len(), "{report}");
    for blob in &dead {
        assert_eq!(e.blob_status("team/app", blob), 404, "{blob} is swept");
    }

    // Every blob of the live image still pulls, from both repositories, as it went in.
    for repository in ["team/app", "team/mirror"] {
        for blob in &live {
            assert_eq!(e.blob_status(repository, blob), 200, "{repository} {blob}");
        }
        let out = e.out("out");
        e.pull(&format!("{repository}:b"), &out, "b", false);
        assert_same_image(&src, "b", &out, "b");
    }
    let usage = e.get("/admin/usage").ok(200);
    assert_eq!(usage["garbage_bytes"], 0, "{usage}");
    let live_bytes: u64 = live.iter().map(|d| src.size(d)).sum();
    assert_eq!(usage["bytes"], live_bytes, "{usage}");
    let fsck = e
        .admin(
            "POST",
            "/admin/fsck",
            serde_json::to_value(FsckOptions::default()).unwrap(),
        )
        .ok(200);
    assert_eq!(fsck["report"]["problems"], json!([]), "{fsck}");
    let report = e.gc(false);
    assert_eq!(report["blobs_swept"], 0, "{report}");

    // The store takes a's layers back after the sweep.
    e.push(&src, "a", "team/app:a", false);
    let out = e.out("out");
    e.pull("team/app:a", &out, "a", false);
    assert_same_image(&src, "a", &out, "a");
}
