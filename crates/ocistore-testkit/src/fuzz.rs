//! Fuzzing: fault injection ([`Faults`]) and the bodies of the `cargo fuzz` targets in `fuzz/`,
//! as plain functions so that a normal test can replay their corpus on a stable toolchain.
//!
//! Each target takes arbitrary bytes and panics when the crate breaks a rule of `SPEC.md`:
//!
//! - [`manifest`]: the bytes pushed as a manifest (P3, P4, P6, N5);
//! - [`names`]: the bytes as a repository name, tag, reference, digest, filter or age (N1–N3,
//!   N5, U1);
//! - [`ops`]: the bytes as a sequence of operations with injected write failures and crashes
//!   between and inside them, and a disk that fills up now and then, checked against the
//!   [`Model`] (C1, C2, C4 and every rule the model knows).

mod faults;

pub use faults::{Faults, FaultyStore, INJECTED, copy_dir, is_injected};

use std::cell::RefCell;
use std::path::Path;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::Value as Json;
use tempfile::TempDir;

use super::grammar::{ModelRef, hash, parse_reference, valid_digest, valid_repo_name, valid_tag};
use super::registry::tmpfs;
use super::{
    BLOBS, ErrKind, Mix, Model, Op, Outcome, RegistrySystem, START, Step, System, UPLOADABLE,
    op_mix, snapshot,
};
use ocistore::manifest::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use ocistore::{
    Algorithm, BlobStore, Digest, EntryKind, Error, Filter, ManualClock, Page, Reference, Registry,
    Repository, parse_ago,
};

// ---------------------------------------------------------------------------------------------
// A store shared by the executions of `manifest` and `names`
// ---------------------------------------------------------------------------------------------

/// How many executions share one store before it is replaced, so that what they leave (tag
/// history, pushed manifests) stays small.
const SHARED_USES: u32 = 2000;

/// A store for the targets that only touch metadata: its blobs are put and its base manifests
/// pushed once, then its directory is removed. redb keeps its open file, so pushes, pulls and
/// tag moves go on working, and nothing is left behind when the process ends, however it ends.
struct Shared {
    registry: Registry,
    /// Holds every blob of the pool, under every algorithm, and the base images.
    manifests: Repository,
    /// Holds the base image by digest only, and no tag.
    names: Repository,
    /// The base OCI image: its digest and body.
    base: (Digest, Vec<u8>),
    uses: u32,
}

thread_local! {
    static SHARED: RefCell<Option<Shared>> = const { RefCell::new(None) };
}

/// The base image of the [`manifest`] and [`names`] stores: an OCI image manifest of config
/// `BLOBS[0]` and one layer `BLOBS[1]`, tagged `base`. Spelled out, so that the seeds that
/// name its digest ([`BASE_IMAGE_DIGEST`]) stay valid.
pub const BASE_IMAGE: &str = concat!(
    r#"{"config":{"digest":"sha256:9d99a75171aea000c711b34c0e5e3f28d3d537dd99d110eafbfbc2bd8e52c2bf","#,
    r#""mediaType":"application/vnd.oci.image.config.v1+json","size":37},"layers":[{"digest":"#,
    r#""sha256:f191e625176e7514249870c60bc24622131b04927a418001d1969c9cecd260f1","mediaType":"#,
    r#""application/vnd.oci.image.layer.v1.tar+gzip","size":9}],"mediaType":"#,
    r#""application/vnd.oci.image.manifest.v1+json","schemaVersion":2}"#
);

/// The digest of [`BASE_IMAGE`].
pub const BASE_IMAGE_DIGEST: &str =
    "sha256:9c6cefb020143eb107dd3b9da7bccc095589ef99dc8c1db12b07f49e20213830";

/// The same image as a Docker schema 2 manifest, tagged `docker` in the [`manifest`] store.
pub const DOCKER_BASE_IMAGE: &str = concat!(
    r#"{"config":{"digest":"sha256:9d99a75171aea000c711b34c0e5e3f28d3d537dd99d110eafbfbc2bd8e52c2bf","#,
    r#""mediaType":"application/vnd.docker.container.image.v1+json","size":37},"layers":[{"digest":"#,
    r#""sha256:f191e625176e7514249870c60bc24622131b04927a418001d1969c9cecd260f1","mediaType":"#,
    r#""application/vnd.docker.image.rootfs.diff.tar.gzip","size":9}],"mediaType":"#,
    r#""application/vnd.docker.distribution.manifest.v2+json","schemaVersion":2}"#
);

/// The digest of [`DOCKER_BASE_IMAGE`].
pub const DOCKER_BASE_IMAGE_DIGEST: &str =
    "sha256:6403e8cf7882ab9ad3840683806f54fc7f8e894d4871c04f3688b4e3b2fcc59a";

impl Shared {
    fn new() -> Shared {
        let dir = temp_dir();
        let registry = Registry::builder()
            .clock(ManualClock::new(START))
            .cache_size(4 << 20)
            // Its directory goes below: a reserve there would be missing, which reads as full.
            .space_reserve(0)
            .open(dir.path())
            .expect("open the shared store");
        let manifests = registry.repository("fuzz/manifests").expect("name");
        let names = registry.repository("fuzz/names").expect("name");
        for repo in [&manifests, &names] {
            for bytes in &BLOBS[..UPLOADABLE] {
                for alg in Algorithm::ALL {
                    repo.put_blob(&alg.digest(bytes), bytes)
                        .expect("put a blob");
                }
            }
        }
        let oci = BASE_IMAGE.as_bytes().to_vec();
        let digest = manifests
            .push_manifest("base", OCI_MANIFEST, &oci)
            .expect("push the base image")
            .digest;
        assert_eq!(digest.as_str(), BASE_IMAGE_DIGEST);
        let docker = manifests
            .push_manifest("docker", DOCKER_MANIFEST, DOCKER_BASE_IMAGE.as_bytes())
            .expect("push the Docker base image")
            .digest;
        assert_eq!(docker.as_str(), DOCKER_BASE_IMAGE_DIGEST);
        names
            .push_manifest(digest.as_str(), OCI_MANIFEST, &oci)
            .expect("push the base image");
        // The blobs' files go; their records stay, which is all a manifest push reads.
        drop(dir);
        Shared {
            registry,
            manifests,
            names,
            base: (digest, oci),
            uses: 0,
        }
    }
}

/// Runs `f` on this thread's shared store, a new one every [`SHARED_USES`] runs.
fn with_shared<T>(f: impl FnOnce(&Shared) -> T) -> T {
    SHARED.with_borrow_mut(|shared| {
        if shared.as_ref().is_none_or(|s| s.uses >= SHARED_USES) {
            *shared = None;
            *shared = Some(Shared::new());
        }
        let s = shared.as_mut().expect("just made");
        s.uses += 1;
        f(s)
    })
}

/// A temporary directory, on tmpfs when the host has one.
fn temp_dir() -> TempDir {
    match tmpfs() {
        Some(tmpfs) => tempfile::tempdir_in(tmpfs),
        None => tempfile::tempdir(),
    }
    .expect("tempdir")
}

// ---------------------------------------------------------------------------------------------
// manifest
// ---------------------------------------------------------------------------------------------

/// The media types a [`manifest`] input can declare, by its first byte (`% 8`); entry 0 stands
/// for the body's own `mediaType` (an OCI manifest when it has none).
pub const DECLARED: [&str; 8] = [
    "",
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/json",
    "text/plain; charset=utf-8",
];

/// Whether a push may fail with `e`: an error that names something wrong with the input, never
/// one of the store (I/O, database, corruption) nor a panic.
fn input_error(e: &Error) -> bool {
    matches!(
        e,
        Error::InvalidManifest { .. }
            | Error::UnsupportedMediaType { .. }
            | Error::MediaTypeMismatch { .. }
            | Error::DigestMismatch { .. }
            | Error::InvalidReference { .. }
            | Error::ManifestTooLarge { .. }
            | Error::BlobUnknown { .. }
            | Error::ManifestUnknown { .. }
            | Error::SubjectDeleted { .. }
    )
}

/// `body` read as JSON by `serde_json` into a [`Json`] value, checking every string; but
/// `\uXXXX` escapes of UTF-16 surrogates, which JSON's grammar allows alone and `serde_json`
/// does not, read as spaces (only the contents of strings change).
fn independent_json(body: &[u8]) -> Option<Json> {
    if let Ok(json) = serde_json::from_slice(body) {
        return Some(json);
    }
    let text = std::str::from_utf8(body).ok()?;
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("\\u") {
        out.push_str(&rest[..i]);
        let escape = rest.get(i..i + 6).unwrap_or(&rest[i..]);
        let surrogate = escape.len() == 6
            && u16::from_str_radix(&escape[2..], 16).is_ok_and(|u| (0xd800..0xe000).contains(&u));
        out.push_str(if surrogate { "\\u0020" } else { "\\u" });
        rest = &rest[i + if surrogate { 6 } else { 2 }..];
    }
    out.push_str(rest);
    serde_json::from_str(&out).ok()
}

/// The `manifest` target (P3, P4, P6, N5): `data[1..]` pushed as a manifest into a repository
/// that holds every blob of [`BLOBS`] under every algorithm and the base images (tags `base`
/// and `docker`), declared as `DECLARED[data[0] % 8]`, by tag or by digest as `data[0] / 8 % 4`
/// says (`latest`; the body's sha256, sha512 or blake3 digest by turns; a digest of other bytes).
///
/// The push must succeed or fail with an error about the input, and never panic. An accepted
/// manifest is a JSON object of `schemaVersion` 2 whose `mediaType`, if any, is the declared
/// one, which is one of the four accepted; it pulls back by digest (and by tag) with the same
/// bytes, digest and media type, its metadata tells its size, and pushing it again gives the
/// same digest. Returns the push's result (`None` for an empty input).
pub fn manifest(data: &[u8]) -> Option<ocistore::Result<Digest>> {
    let (&selector, body) = data.split_first()?;
    let json = independent_json(body);
    let own_type = json
        .as_ref()
        .and_then(|j| j.get("mediaType"))
        .and_then(Json::as_str)
        .unwrap_or(OCI_MANIFEST)
        .to_owned();
    let declared = match usize::from(selector % 8) {
        0 => own_type.as_str(),
        i => DECLARED[i],
    };
    let alg =
        [Algorithm::Sha256, Algorithm::Sha512, Algorithm::Blake3][usize::from(selector / 32) % 3];
    let reference = match selector / 8 % 4 {
        0 => "latest".to_owned(),
        1 => hash(Algorithm::Sha256, body),
        2 => hash(alg, body),
        _ => hash(Algorithm::Sha256, b"other bytes"),
    };
    with_shared(|s| {
        let repo = &s.manifests;
        let digest = match repo.push_manifest(&reference, declared, body) {
            Ok(pushed) => pushed.digest,
            Err(e) => {
                assert!(input_error(&e), "push of {body:?} as {declared}: {e:?}");
                return Some(Err(e));
            }
        };
        // An independent look at what was accepted.
        let object = json.as_ref().and_then(Json::as_object);
        let object = object.unwrap_or_else(|| panic!("accepted a non-object: {body:?}"));
        assert_eq!(
            object.get("schemaVersion").and_then(Json::as_u64),
            Some(2),
            "accepted {body:?}"
        );
        if let Some(t) = object.get("mediaType") {
            assert_eq!(t.as_str(), Some(declared), "accepted {body:?}");
        }
        assert!(
            [
                OCI_MANIFEST,
                OCI_INDEX,
                DOCKER_MANIFEST,
                DOCKER_MANIFEST_LIST
            ]
            .contains(&declared),
            "accepted a manifest declared {declared}"
        );
        let expected = if reference.contains(':') {
            reference.clone()
        } else {
            hash(Algorithm::Sha256, body)
        };
        assert_eq!(digest.as_str(), expected, "the digest of {body:?}");
        let mut refs = vec![digest.to_string()];
        if !reference.contains(':') {
            assert_eq!(repo.resolve(&reference).expect("resolve"), digest);
            refs.push(reference.clone());
        }
        for r in &refs {
            let pulled = repo.pull(r).unwrap_or_else(|e| panic!("pull {r}: {e:?}"));
            assert_eq!(pulled.digest, digest, "pull {r}");
            assert_eq!(pulled.media_type, declared, "pull {r}");
            assert_eq!(&pulled.body[..], body, "pull {r}");
        }
        let m = repo.manifest(digest.as_str()).expect("manifest metadata");
        assert_eq!(m.size, body.len() as u64);
        assert_eq!(m.media_type, declared);
        let again = repo
            .push_manifest(&reference, declared, body)
            .expect("the same push again");
        assert_eq!(
            (again.digest.as_str(), again.created),
            (digest.as_str(), false)
        );
        repo.referrers(&digest, None).expect("referrers");
        Some(Ok(digest))
    })
}

// ---------------------------------------------------------------------------------------------
// names
// ---------------------------------------------------------------------------------------------

/// The `names` target (N1–N3, N5, U1): `data`, read as UTF-8 (lossily), as a repository name
/// ([`Registry::repository`], [`Page::after`] for [`Registry::repositories`]), a digest
/// ([`Digest::parse`], [`Repository::blobs`] pages), a reference ([`Reference::parse`],
/// [`Repository::pull`]), a tag ([`Repository::tag`], `resolve`, `untag`, `tag_history`,
/// `deleted_tags`, [`Repository::tags`] pages), a purge filter ([`Filter::parse`]) and a purge
/// age ([`parse_ago`]).
///
/// Nothing may panic, every refusal is the typed error naming the input, and acceptance must
/// agree with the kit's own grammars, written independently of the crate's: a valid tag
/// really tags the base manifest, and untagging it leaves the repository as it was.
pub fn names(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let s = s.as_ref();
    let (repo_ok, tag_ok, digest_ok) = (valid_repo_name(s), valid_tag(s), valid_digest(s));

    match Digest::parse(s) {
        Ok(d) => {
            assert!(digest_ok, "Digest::parse accepted {s:?}");
            assert_eq!(d.as_str(), s);
            assert_eq!(d.to_string(), s);
            assert_eq!(s.parse::<Digest>().expect("FromStr"), d);
        }
        Err(Error::InvalidDigest { digest, .. }) => {
            assert!(!digest_ok, "Digest::parse refused {s:?}");
            assert_eq!(digest, s);
        }
        Err(e) => panic!("Digest::parse({s:?}): {e:?}"),
    }

    let reference = Reference::parse(s);
    match (&reference, parse_reference(s)) {
        (Ok(Reference::Tag(t)), Ok(ModelRef::Tag(m))) => assert!(t == s && m == s),
        (Ok(Reference::Digest(d)), Ok(ModelRef::Digest(m))) => {
            assert!(d.as_str() == s && m == s);
        }
        (Err(Error::InvalidReference { reference, .. }), Err(ErrKind::InvalidReference(m))) => {
            assert!(reference == s && m == s);
        }
        (crate_side, kit_side) => {
            let kit_side = match kit_side {
                Ok(ModelRef::Tag(_)) => "a tag".to_owned(),
                Ok(ModelRef::Digest(_)) => "a digest".to_owned(),
                Err(e) => format!("{e:?}"),
            };
            panic!("Reference::parse({s:?}) = {crate_side:?}, the kit says {kit_side}")
        }
    }
    if let Ok(r) = &reference {
        assert_eq!(r.to_string(), s);
    }

    match Filter::parse(s) {
        Ok(filter) => {
            let (repo, tag) = s.split_once(':').expect("a filter has a ':'");
            assert!(!repo.is_empty() && !tag.is_empty(), "filter {s:?}");
            for (r, t) in [("team/app", "latest"), ("lib", "v1"), ("", ""), (s, s)] {
                // Only that it answers, without panicking.
                let _ = filter.matches(r, t);
            }
        }
        Err(e) => assert!(
            matches!(e, Error::InvalidFilter { ref filter, .. } if filter == s),
            "{e:?}"
        ),
    }
    match parse_ago(s) {
        Ok(_) => assert!(
            s == "0" || s.chars().all(|c| c.is_ascii_alphanumeric() || c == 'µ'),
            "parse_ago accepted {s:?}"
        ),
        Err(e) => assert!(matches!(e, Error::InvalidSetting { .. }), "{e:?}"),
    }

    with_shared(|shared| {
        let registry = &shared.registry;
        match registry.repository(s) {
            Ok(r) => {
                assert!(repo_ok, "Registry::repository accepted {s:?}");
                assert_eq!(r.name(), s);
            }
            Err(Error::InvalidRepositoryName { name, .. }) => {
                assert!(!repo_ok, "Registry::repository refused {s:?}");
                assert_eq!(name, s);
            }
            Err(e) => panic!("Registry::repository({s:?}): {e:?}"),
        }
        let listed = registry.repositories(&Page::after(s, 2));
        assert_eq!(
            listed.is_ok(),
            repo_ok,
            "repositories after {s:?}: {listed:?}"
        );

        let repo = &shared.names;
        let (base, body) = &shared.base;
        let tags = repo.tags(&Page::after(s, 2));
        assert_eq!(tags.is_ok(), tag_ok, "tags after {s:?}: {tags:?}");
        let blobs = repo.blobs(&Page::after(s, 2));
        assert_eq!(blobs.is_ok(), digest_ok, "blobs after {s:?}: {blobs:?}");

        // The repository has no tag, and one manifest: the base image.
        let pulled = repo.pull(s);
        match (&reference, &pulled) {
            (Ok(Reference::Digest(d)), Ok(p)) => {
                assert!(d == base && &p.digest == base && &p.body[..] == body);
            }
            (Ok(_), Err(Error::ManifestUnknown { reference, .. })) => {
                assert_eq!(reference, s);
                assert_ne!(s, base.as_str());
            }
            (
                Err(Error::InvalidReference { .. }),
                Err(Error::InvalidReference { reference, .. }),
            ) => {
                assert_eq!(reference, s);
            }
            _ => panic!("pull({s:?}) = {pulled:?} for reference {reference:?}"),
        }

        let tagged = repo.tag(s, base);
        if !tag_ok {
            assert!(
                matches!(&tagged, Err(Error::InvalidTag { tag }) if tag == s),
                "tag({s:?}): {tagged:?}"
            );
            for refused in [
                repo.resolve(s).map(drop),
                repo.untag(s),
                repo.tag_history(s).map(drop),
                repo.deleted_tags(Some(s)).map(drop),
            ] {
                assert!(
                    matches!(&refused, Err(Error::InvalidTag { tag }) if tag == s),
                    "an op on tag {s:?}: {refused:?}"
                );
            }
            return;
        }
        tagged.unwrap_or_else(|e| panic!("tag({s:?}): {e:?}"));
        assert_eq!(&repo.resolve(s).expect("resolve"), base);
        let by_tag = repo.pull(s).expect("pull by tag");
        assert!(&by_tag.digest == base && &by_tag.body[..] == body);
        let listed = repo.tags(&Page::all()).expect("tags");
        assert!(listed.len() == 1 && listed[0].name == s, "tags: {listed:?}");
        assert!(!repo.tag_history(s).expect("history").is_empty());
        repo.untag(s)
            .unwrap_or_else(|e| panic!("untag({s:?}): {e:?}"));
        assert!(repo.tags(&Page::all()).expect("tags").is_empty());
        assert!(matches!(
            repo.resolve(s),
            Err(Error::ManifestUnknown { .. })
        ));
        repo.deleted_tags(Some(s)).expect("deleted tags");
    });
}

// ---------------------------------------------------------------------------------------------
// ops
// ---------------------------------------------------------------------------------------------

/// What befalls the blob store's writes during one op of a [`plan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing: the op runs as in [`run`](super::run).
    Clean,
    /// The op's write that follows `skip` of its writes fails ([`Faults::fail_writes_after`]).
    /// If the op comes that far, it must fail with the injected [`Error::Io`] and leave the store
    /// as it was, blob files of the same batch's earlier puts aside (strays the collector
    /// reclaims); the model does not run it. An op that writes less runs as usual, and so does
    /// one on a full disk, which refuses the write before the failure comes.
    FailWrite {
        /// Writes of the op that go through first.
        skip: u64,
    },
    /// The process is killed just before the op's write that follows `skip` of its writes
    /// ([`Faults::crash_image_at`]): the store is reopened from the crash image, which must
    /// hold exactly what the model held before the op (every write comes before the op's
    /// commit). An op that writes less runs as usual.
    CrashAtWrite {
        /// Writes of the op that go through first.
        skip: u64,
    },
    /// After the op the process is killed: the store is reopened from a copy of its directory
    /// taken while it was open (no clean shutdown), and must hold what the model holds.
    CrashAfter,
}

/// Mostly clean ops; injected failures and crashes now and then, mostly at an op's first write.
pub fn fault() -> BoxedStrategy<Fault> {
    let skip = prop_oneof![6 => Just(0u64), 2 => Just(1u64), 1 => 2..5u64];
    prop_oneof![
        14 => Just(Fault::Clean),
        4 => skip.clone().prop_map(|skip| Fault::FailWrite { skip }),
        2 => skip.prop_map(|skip| Fault::CrashAtWrite { skip }),
        1 => Just(Fault::CrashAfter),
    ]
    .boxed()
}

/// The weights of the [`ops`] target's op groups: every group, uploads and batches (the ops
/// that write blobs) favoured. Its disk switches come from [`disk_switch`] instead.
pub const MIX: Mix = Mix {
    batches: 3,
    reopens: 1,
    deletes: 2,
    policy: 1,
    bin: 1,
    uploads: 2,
    collect: 1,
    clock: 3,
    locks: 1,
    retention: 1,
    purge: 1,
    reports: 1,
    // Not drawn, so that the corpus keeps meaning what it meant.
    history: 0,
    disk_full: 0,
};

/// C4: now and then (one op in 25) the disk fills up ([`Op::DiskFull`]`(true)`), has room
/// again (`DiskFull(false)`, twice as often), or `health` runs ([`Op::Health`]): the op that
/// replaces the one drawn from [`MIX`]. Drawn after the op and its fault rather than weighed
/// in [`MIX`], so that the chunks of the inputs written before it ([`step_from`]) still mean
/// the ops they meant, but for the few it replaces.
pub fn disk_switch() -> BoxedStrategy<Option<Op>> {
    prop_oneof![
        96 => Just(None),
        1 => Just(Some(Op::DiskFull(true))),
        2 => Just(Some(Op::DiskFull(false))),
        1 => Just(Some(Op::Health)),
    ]
    .boxed()
}

/// One op of [`MIX`] with its [`Fault`], the op replaced by a [`disk_switch`] if one comes.
fn planned() -> impl Strategy<Value = (Op, Fault)> {
    (op_mix(MIX), fault(), disk_switch())
        .prop_map(|(op, fault, switch)| (switch.unwrap_or(op), fault))
}

/// Up to 32 ops of [`MIX`] and [`disk_switch`]es, each with its [`Fault`]: the plans of
/// [`plan_from`], for a property test.
pub fn plan() -> BoxedStrategy<Vec<(Op, Fault)>> {
    prop::collection::vec(planned(), 0..32).boxed()
}

/// How many input bytes make one op of [`plan_from`].
pub const CHUNK: usize = 16;

/// The most ops [`plan_from`] makes of one input.
pub const MAX_OPS: usize = 48;

/// The op and fault that one chunk of [`CHUNK`] input bytes stands for: `(op_mix(MIX),
/// fault(), disk_switch())` drawn from a ChaCha RNG seeded with the chunk, the switch, if any,
/// in place of the op.
pub fn step_from(chunk: &[u8; CHUNK]) -> (Op, Fault) {
    let mut seed = [0x5a; 32];
    seed[..CHUNK].copy_from_slice(chunk);
    let config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed);
    let mut runner = TestRunner::new_with_rng(config, rng);
    planned()
        .new_tree(&mut runner)
        .expect("the op strategies always give an op")
        .current()
}

/// The plan that `data` encodes: one op per [`CHUNK`] bytes ([`step_from`]), at most
/// [`MAX_OPS`]; a trailing partial chunk is ignored. libFuzzer's mutations then act on whole
/// ops (a chunk inserted, removed, copied or changed changes that op alone).
///
/// Not proptest's pass-through RNG over the whole input: a union (`prop_oneof!`) gives each
/// option before the one it picks a child RNG, which for the pass-through RNG takes half of
/// the bytes left, so a few ops exhaust any input; past its end it reads zeros, and `rand`,
/// which draws an integer in a range by rejection, rejects zero forever for most ranges.
pub fn plan_from(data: &[u8]) -> Vec<(Op, Fault)> {
    data.chunks_exact(CHUNK)
        .take(MAX_OPS)
        .map(|chunk| step_from(chunk.try_into().expect("a whole chunk")))
        .collect()
}

/// The `ops` target (C1, C2, C4, and every rule of the model): `data` as a plan of ops with
/// their faults ([`plan_from`]) run by [`run_with_faults`]; panics on the first difference.
pub fn ops(data: &[u8]) {
    let plan = plan_from(data);
    if let Err(e) = run_with_faults(&plan) {
        panic!("{e}\nthe plan: {plan:#?}");
    }
}

/// A [`RegistrySystem`] (whose store is opened with a [`Faults`] handle, also after reopens)
/// that can crash.
struct FaultySystem {
    sut: RegistrySystem,
}

impl FaultySystem {
    fn new(faults: Faults) -> FaultySystem {
        FaultySystem {
            sut: RegistrySystem::with_faults(faults),
        }
    }

    fn registry(&self) -> &Registry {
        self.sut.registry()
    }

    /// Drops every handle and the store, and opens the store again: in `dir` if given (a
    /// crash image), else where it was.
    fn reopen(&mut self, dir: Option<TempDir>) {
        if let Some(dir) = dir {
            // The store goes before its directory does.
            drop(self.sut.registry.take());
            self.sut.dir = dir;
        }
        self.sut.reopen();
    }

    /// The digests of the blobs whose bytes the blob store holds.
    fn blob_files(&self) -> Vec<String> {
        let mut digests = Vec::new();
        let store = self.sut.faults().directory_store(self.sut.dir.path());
        store
            .entries(&mut |entries| {
                for entry in entries {
                    if let EntryKind::Blob(digest) = entry.kind {
                        digests.push(digest.to_string());
                    }
                }
                Ok(())
            })
            .expect("list the blob store");
        digests
    }

    /// The process dies now: the store is reopened from a copy of its directory taken while it
    /// is open.
    fn crash(&mut self) {
        let image = temp_dir();
        copy_dir(self.sut.dir.path(), image.path()).expect("copy the store");
        self.reopen(Some(image));
    }

    /// How many bytes the client sent to each session: what a crash rolls back to.
    fn sent(&self) -> Vec<usize> {
        self.sut.uploads.iter().map(|u| u.sent.len()).collect()
    }

    /// Forgets what the client did since [`sent`](FaultySystem::sent) said `sent`.
    fn roll_back(&mut self, sent: &[usize]) {
        self.sut.uploads.truncate(sent.len());
        for (u, &n) in self.sut.uploads.iter_mut().zip(sent) {
            u.sent.truncate(n);
        }
    }
}

impl System for FaultySystem {
    fn step(&mut self, step: &Step) -> Outcome {
        if let Step::Reopen = step {
            self.reopen(None);
            return Ok(super::Value::Unit);
        }
        self.sut.step(step)
    }

    fn check(&mut self, model: &Model) -> Result<(), TestCaseError> {
        self.sut.check(model)
    }
}

/// Checks that a store is as `before` says, but for blob files of a failed batch's puts.
fn unchanged_but_strays(before: &str, after: &str) -> Result<(), TestCaseError> {
    let is_file = |l: &&str| l.starts_with("file ");
    let (b_files, b_rest): (Vec<&str>, Vec<&str>) = before.lines().partition(is_file);
    let (a_files, a_rest): (Vec<&str>, Vec<&str>) = after.lines().partition(is_file);
    prop_assert_eq!(b_rest, a_rest, "a failed op changed the store");
    for f in &b_files {
        prop_assert!(a_files.contains(f), "a failed op changed or removed {}", f);
    }
    for f in &a_files {
        prop_assert!(
            b_files.contains(f) || f.starts_with("file blobs/"),
            "a failed op left {}",
            f
        );
    }
    Ok(())
}

/// What [`run_with_faults`] saw.
#[derive(Debug, Clone, Default)]
pub struct Ran {
    /// The outcome of each op the model ran: all but those that failed by injection or died
    /// in a crash at a write.
    pub outcomes: Vec<Outcome>,
    /// Ops that reached their injected failure.
    pub failed: usize,
    /// Ops killed at a write.
    pub crashed_at_write: usize,
    /// Crashes after an op.
    pub crashed_after: usize,
}

/// Runs `plan` on a fresh [`Model`] and a store opened with a [`Faults`] handle, op by op as
/// [`run`](super::run) does, each op under its [`Fault`] and on a disk as full as the model
/// says ([`Op::DiskFull`]: it stays so across crashes), and a final reopen; checks every
/// outcome and, after each op, the whole store against the model. After an injected failure
/// or a crash at a write, the model learns the strays the op left in the blob store (C2),
/// which a full disk does not refuse to reuse. Returns what it saw, or the first difference.
pub fn run_with_faults(plan: &[(Op, Fault)]) -> Result<Ran, TestCaseError> {
    let faults = Faults::new();
    let mut system = FaultySystem::new(faults.clone());
    let mut model = Model::new();
    let mut ran = Ran::default();
    let last = (Op::Reopen, Fault::Clean);
    for (i, (op, fault)) in plan.iter().chain([&last]).enumerate() {
        let step = model.resolve(op);
        let sent = system.sent();
        let before = model.clone();
        let snapshot_before = match fault {
            Fault::FailWrite { .. } => Some(snapshot(system.registry())),
            _ => None,
        };
        let image = match fault {
            Fault::FailWrite { skip } => {
                faults.fail_writes_after(*skip, 1);
                None
            }
            Fault::CrashAtWrite { skip } => {
                let image = temp_dir();
                faults.crash_image_at(*skip, image.path());
                Some(image)
            }
            Fault::Clean | Fault::CrashAfter => None,
        };
        let actual = system.step(&step);
        let crashed = faults.crash_image().is_some();
        // Armed failures are spent only when reached: a full disk refuses a write before.
        let failed = matches!(fault, Fault::FailWrite { .. }) && !faults.armed();
        faults.clear();
        if failed {
            // The op reached the failing write: an I/O error, and nothing it did stays.
            prop_assert!(
                matches!(&actual, Err(ErrKind::Other(e)) if e.contains(INJECTED)),
                "op #{}: {:?} under {:?} returned {:?}",
                i,
                op,
                fault,
                actual
            );
            let before = snapshot_before.expect("taken for a failure");
            unchanged_but_strays(&before, &snapshot(system.registry()))?;
            // The strays are bytes the blob store holds: a full disk does not refuse them.
            model.files.extend(system.blob_files());
            ran.failed += 1;
        } else if crashed {
            // The process died at the write, before the op's commit: the op never happened.
            system.roll_back(&sent);
            system.reopen(image);
            model = before;
            model.step(&Step::Reopen).expect("the model reopens");
            // But for the bytes of its earlier writes, strays the blob store holds (C2).
            model.files.extend(system.blob_files());
            ran.crashed_at_write += 1;
        } else {
            let expected = model.step(&step);
            prop_assert_eq!(&actual, &expected, "op #{}: {:?} under {:?}", i, op, fault);
            if *fault == Fault::CrashAfter {
                system.crash();
                model.step(&Step::Reopen).expect("the model reopens");
                ran.crashed_after += 1;
            }
            if i < plan.len() {
                ran.outcomes.push(expected);
            }
        }
        // `clear` emptied the disk too; it is as full as the model says (C4).
        faults.set_disk_full(model.disk_full());
        system.check(&model).map_err(|e| {
            TestCaseError::fail(format!("after op #{i}: {op:?} under {fault:?}: {e}"))
        })?;
    }
    Ok(ran)
}

/// Replays every file of `dir` (if it exists) through `target`, in name order; returns how
/// many it replayed. For the corpus test: `fuzz/corpus/<target>/` and `fuzz/artifacts/<target>/`.
pub fn replay_dir(dir: &Path, target: fn(&[u8])) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut files: Vec<_> = entries
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for file in &files {
        let data = std::fs::read(file).expect("read a corpus file");
        let outcome = std::panic::catch_unwind(|| target(&data));
        if let Err(panic) = outcome {
            eprintln!("input {} failed", file.display());
            std::panic::resume_unwind(panic);
        }
    }
    files.len()
}
