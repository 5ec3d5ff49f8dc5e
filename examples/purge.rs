//! Purge by filter (`acr purge`) on four weeks of build-and-test history, on a manual clock
//! with the soft delete policy on.
//!
//! The history: `team/api` builds a multi-arch image every 6 hours (an OCI index over an
//! amd64 and an arm64 image, the children pushed by digest), `team/web` a single-arch image
//! every 4 hours; each build is tagged `build-<n>`, moves `latest` and is signed (a signature
//! artifact whose `subject` is the image). Every 7 days the current build becomes a `v1.x`
//! release; `team/api` also had three betas `v0.1`–`v0.3`, the last one locked read-only
//! because customers still pin it. `tools/ci` builds daily and no filter matches it.
//!
//! Then: a dry run of the purge, printed as a table; the real run, whose report must equal
//! the dry run's; checks that what was kept kept its children and signatures; and a purged
//! tag brought back from the recycle bin and pulled.
//!
//! ```text
//! cargo run --release --example purge
//! ```

use std::collections::BTreeMap;
use std::error::Error;
use std::time::{Duration, Instant};

use ocistore::manifest::{OCI_INDEX, OCI_MANIFEST};
use ocistore::{
    Algorithm, Batch, Digest, Item, Locks, ManualClock, OnConflict, Page, PurgeOptions,
    PurgeReport, Registry, Repository, Restore, SoftDeletePolicy, Timestamp, parse_ago,
};

const HOUR: Duration = Duration::from_secs(3_600);
const DAY: Duration = Duration::from_secs(86_400);
const WEEKS: u32 = 4;
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const EMPTY: &str = "application/vnd.oci.empty.v1+json";
const SIGNATURE: &str = "application/vnd.cncf.notary.signature";
/// 2026-01-01T00:00:00Z.
const START: Timestamp = Timestamp::from_nanos(1_767_225_600_000_000_000);

type Res<T> = Result<T, Box<dyn Error>>;

/// A repository's build pipeline.
struct Pipeline {
    repo: Repository,
    every: Duration,
    /// Architectures: one is a plain image, more are children of an index.
    arches: &'static [&'static str],
    signed: bool,
    releases: bool,
    builds: u32,
}

fn main() -> Res<()> {
    let dir = std::env::temp_dir().join(format!("ocistore-purge-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let clock = ManualClock::new(START);
    let registry = Registry::builder().clock(clock.clone()).open(&dir)?;
    registry.set_soft_delete_policy(SoftDeletePolicy::enabled(7)?)?;
    println!("store {} (soft delete on, 7 days)", dir.display());

    // --- The history: one transaction per build, the clock moving between them.
    let started = Instant::now();
    let mut pipelines = [
        Pipeline::new(&registry, "team/api", 6, &["amd64", "arm64"], true, true)?,
        Pipeline::new(&registry, "team/web", 4, &["amd64"], true, true)?,
        Pipeline::new(&registry, "tools/ci", 24, &["amd64"], false, false)?,
    ];
    let end = START.saturating_add(DAY * 7 * WEEKS);
    let api = pipelines[0].repo.clone();
    let web = pipelines[1].repo.clone();
    let ci = pipelines[2].repo.clone();
    let mut now = START;
    while now < end {
        clock.set(now);
        let since = now.since(START);
        for p in &mut pipelines {
            if since.as_nanos().is_multiple_of(p.every.as_nanos()) {
                p.build(&registry, since)?;
            }
        }
        // Betas on days 1, 3 and 5.
        for (day, beta) in [(1, "v0.1"), (3, "v0.2"), (5, "v0.3")] {
            if since == DAY * day {
                api.tag(beta, &api.resolve("latest")?)?;
            }
        }
        now = now.saturating_add(HOUR);
    }
    api.set_locks(&Item::Tag("v0.3".into()), Locks::READ_ONLY)?;
    let before = census(&registry)?;
    println!(
        "history: {WEEKS} weeks, {} manifests, {} tags, in {:.2?}",
        before.values().map(|c| c.1).sum::<usize>(),
        before.values().map(|c| c.0).sum::<usize>(),
        started.elapsed()
    );
    for p in &pipelines {
        let (tags, manifests) = before[p.repo.name()];
        println!(
            "  {:<9} {:>3} builds every {:>2}h{}{}{}: {tags} tags, {manifests} manifests",
            p.repo.name(),
            p.builds,
            p.every.as_secs() / 3_600,
            if p.arches.len() > 1 {
                format!(" ({} index)", p.arches.join("+"))
            } else {
                String::new()
            },
            if p.signed { ", signed" } else { "" },
            if p.releases { ", v1.0-v1.2" } else { "" },
        );
    }
    println!("  team/api  betas v0.1-v0.3, v0.3 locked read-only");

    // --- The purge, four weeks in.
    clock.set(end);
    let mut options = PurgeOptions::new(["team/.*:build-.*", r"team/.*:v0\..*"])?;
    options.ago = parse_ago("7d")?;
    options.keep = 3;
    options.untagged = true;
    println!(
        "\npurge at {end}: filters {}, ago 7d, keep 3, untagged",
        options
            .filters
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join("  ")
    );
    options.dry_run = true;
    let started = Instant::now();
    let dry = registry.purge(&options)?;
    let dry_took = started.elapsed();
    if census(&registry)? != before {
        return Err("a dry run must change nothing".into());
    }
    println!("dry run in {dry_took:.2?}, nothing changed:");
    print_table(&dry);

    options.dry_run = false;
    let started = Instant::now();
    let real = registry.purge(&options)?;
    let real_took = started.elapsed();
    assert_eq!(
        real.repositories, dry.repositories,
        "the real run must do exactly what the dry run reported (U5)"
    );
    assert!(!real.dry_run && real.ran_at == dry.ran_at);
    println!(
        "real run in {real_took:.2?}: {} tags untagged, {} manifests deleted, {} locked skipped; \
         its report equals the dry run's",
        real.tags_untagged(),
        real.manifests_deleted(),
        real.locked()
    );
    let after = census(&registry)?;
    for (name, (tags, manifests)) in &after {
        let (tags_before, manifests_before) = before[name];
        println!(
            "  {name:<9} tags {tags_before:>3} -> {tags:>3}   manifests {manifests_before:>3} -> {manifests:>3}   \
             in the bin: {} manifests, {} tags",
            registry.repository(name)?.deleted_manifests()?.len(),
            registry.repository(name)?.deleted_tags(None)?.len(),
        );
    }
    if after[ci.name()] != before[ci.name()] {
        return Err("no filter matches tools/ci".into());
    }

    // --- What was kept kept its children and its signatures.
    let started = Instant::now();
    println!("\nkept, with their multi-arch children and signatures:");
    let kept_build = newest_kept(&real, &web)?;
    for (repo, tag, why) in [
        (&api, "latest", "not matched"),
        (&api, "v1.0", "not matched"),
        (&api, "v0.3", "locked"),
        (&web, "latest", "not matched"),
        (&web, "v1.0", "not matched"),
        (&web, kept_build.as_str(), "keep 3"),
    ] {
        let digest = repo.resolve(tag)?;
        let manifest = repo.manifest(digest.as_str())?;
        let mut children = Vec::new();
        if manifest.media_type == OCI_INDEX {
            for child in &manifest.references {
                let pulled = repo.pull(child.digest.as_str())?;
                check(&child.digest, &pulled.body)?;
                children.push(short(&child.digest));
            }
        }
        let signatures = repo.referrers(&digest, Some(SIGNATURE))?;
        if signatures.is_empty() {
            return Err(format!("{}:{tag} lost its signature", repo.name()).into());
        }
        for s in &signatures {
            repo.pull(s.digest.as_str())?;
        }
        println!(
            "  {:<18} {:<13} {}  {}{} signature(s), pulled",
            format!("{}:{tag}", repo.name()),
            format!("({why})"),
            short(&digest),
            if children.is_empty() {
                String::new()
            } else {
                format!("children {} pulled, ", children.join(" "))
            },
            signatures.len()
        );
    }
    println!("every check passed in {:.2?}", started.elapsed());

    // --- A purged tag, back from the recycle bin.
    let started = Instant::now();
    let tag = "build-100";
    let was = web
        .deleted_tags(Some(tag))?
        .first()
        .map(|t| t.digest.clone())
        .ok_or("build-100 of team/web is in the bin")?;
    if web.resolve(tag).is_ok() {
        return Err("build-100 was purged".into());
    }
    let restored = web.restore(Restore::Tag(tag), OnConflict::Refuse)?;
    let pulled = web.pull(tag)?;
    check(&restored, &pulled.body)?;
    assert_eq!((&restored, &pulled.digest), (&was, &was));
    // Restoring a subject does not restore its referrers (S10): the signature stays binned.
    if !web.referrers(&restored, None)?.is_empty() {
        return Err("the signature of build-100 should have stayed in the bin".into());
    }
    println!(
        "\nrestored team/web:{tag} from the bin: {}, pulled {} bytes, digest verified, in {:.2?}; \
         its signature stays in the bin",
        short(&restored),
        pulled.body.len(),
        started.elapsed(),
    );

    drop((pipelines, api, web, ci, registry));
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

impl Pipeline {
    fn new(
        registry: &Registry,
        name: &str,
        every_hours: u64,
        arches: &'static [&'static str],
        signed: bool,
        releases: bool,
    ) -> Res<Pipeline> {
        Ok(Pipeline {
            repo: registry.repository(name)?,
            every: HOUR * every_hours as u32,
            arches,
            signed,
            releases,
            builds: 0,
        })
    }

    /// One CI build, `since` the start, in one transaction: the image (or the index over one
    /// image per architecture), tagged `build-<n>` and `latest`, its signature, and on every
    /// seventh day a release tag.
    fn build(&mut self, registry: &Registry, since: Duration) -> Res<()> {
        self.builds += 1;
        let n = self.builds;
        let repo = &self.repo;
        let release = (self.releases && since.as_secs().is_multiple_of(7 * 86_400) && since > DAY)
            .then(|| format!("v1.{}", since.as_secs() / (7 * 86_400) - 1));
        registry.batch(|b| {
            let tag = format!("build-{n}");
            let (digest, media_type, size) = if let [arch] = self.arches {
                let (digest, size) = image(b, repo, arch, n, Some(&tag))?;
                (digest, OCI_MANIFEST, size)
            } else {
                let mut children = Vec::new();
                for arch in self.arches {
                    let (digest, size) = image(b, repo, arch, n, None)?;
                    children.push(format!(
                        r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{digest}","size":{size},"platform":{{"architecture":"{arch}","os":"linux"}}}}"#
                    ));
                }
                let body = format!(
                    r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
                    children.join(",")
                );
                let digest = b.push_manifest(repo, &tag, OCI_INDEX, body.as_bytes())?.digest;
                (digest, OCI_INDEX, body.len())
            };
            b.tag(repo, "latest", &digest)?;
            if let Some(release) = &release {
                b.tag(repo, release, &digest)?;
            }
            if self.signed {
                sign(b, repo, &digest, media_type, size, n)?;
            }
            Ok(())
        })?;
        Ok(())
    }
}

/// Pushes one image of build `n`: a config and a layer of its own, on a base layer shared by
/// every build of the architecture. By digest when `tag` is `None` (a child of an index).
fn image(
    b: &mut Batch<'_>,
    repo: &Repository,
    arch: &str,
    n: u32,
    tag: Option<&str>,
) -> ocistore::Result<(Digest, usize)> {
    let config = format!(r#"{{"architecture":"{arch}","os":"linux","build":{n}}}"#);
    let base = format!("base layer, {arch}").repeat(64);
    let app = format!("{} app layer, build {n}, {arch}", repo.name());
    let mut descriptor = |media_type: &str, bytes: &str| -> ocistore::Result<String> {
        let digest = b.put_blob_sha256(repo, bytes)?;
        Ok(format!(
            r#"{{"mediaType":"{media_type}","digest":"{digest}","size":{}}}"#,
            bytes.len()
        ))
    };
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":[{},{}]}}"#,
        descriptor(CONFIG, &config)?,
        descriptor(LAYER, &base)?,
        descriptor(LAYER, &app)?,
    );
    let digest = Algorithm::Sha256.digest(body.as_bytes());
    let reference = tag.map_or_else(|| digest.to_string(), str::to_owned);
    b.push_manifest(repo, &reference, OCI_MANIFEST, body.as_bytes())?;
    Ok((digest, body.len()))
}

/// Pushes a signature of `subject` as a referrer (OCI 1.1), by digest: untagged.
fn sign(
    b: &mut Batch<'_>,
    repo: &Repository,
    subject: &Digest,
    media_type: &str,
    size: usize,
    n: u32,
) -> ocistore::Result<()> {
    let empty = b.put_blob_sha256(repo, "{}")?;
    let envelope = format!(r#"{{"payload":"{subject}","signature":"build {n}"}}"#);
    let signature = b.put_blob_sha256(repo, &envelope)?;
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"{SIGNATURE}","config":{{"mediaType":"{EMPTY}","digest":"{empty}","size":2}},"layers":[{{"mediaType":"application/jose+json","digest":"{signature}","size":{}}}],"subject":{{"mediaType":"{media_type}","digest":"{subject}","size":{size}}}}}"#,
        envelope.len()
    );
    let digest = Algorithm::Sha256.digest(body.as_bytes());
    b.push_manifest(repo, digest.as_str(), OCI_MANIFEST, body.as_bytes())?;
    Ok(())
}

/// Live (tags, manifests) of every repository.
fn census(registry: &Registry) -> Res<BTreeMap<String, (usize, usize)>> {
    let mut out = BTreeMap::new();
    for name in registry.repositories(&Page::all())? {
        let repo = registry.repository(&name)?;
        let tags = repo.tags(&Page::all())?.len();
        let manifests = repo.manifests(&Default::default())?.len();
        out.insert(name, (tags, manifests));
    }
    Ok(out)
}

fn print_table(report: &PurgeReport) {
    println!(
        "  {:<10} {:>13} {:>17} {:>14}",
        "repository", "tags untagged", "manifests deleted", "locked skipped"
    );
    for r in &report.repositories {
        println!(
            "  {:<10} {:>13} {:>17} {:>14}",
            r.repository,
            r.tags_untagged.len(),
            r.manifests_deleted.len(),
            r.locked.len()
        );
    }
    println!(
        "  {:<10} {:>13} {:>17} {:>14}",
        "total",
        report.tags_untagged(),
        report.manifests_deleted(),
        report.locked()
    );
    for r in &report.repositories {
        let mut tags: Vec<&str> = r.tags_untagged.iter().map(String::as_str).collect();
        tags.sort_by_key(|t| natural(t));
        let few = |names: Vec<String>| match names.len() {
            0..=4 => names.join(", "),
            n => format!("{}, … {} ({n})", names[..3].join(", "), names[n - 1]),
        };
        println!(
            "  {}: untags {}",
            r.repository,
            few(tags.iter().map(|t| t.to_string()).collect())
        );
        println!(
            "  {:w$}  deletes {}",
            "",
            few(r.manifests_deleted.iter().map(short).collect()),
            w = r.repository.len()
        );
        if !r.locked.is_empty() {
            println!(
                "  {:w$}  skips {} (locked)",
                "",
                few(r.locked.iter().map(|i| i.to_string()).collect()),
                w = r.repository.len()
            );
        }
    }
}

/// `build-9` before `build-10`.
fn natural(tag: &str) -> (String, u64) {
    match tag.rsplit_once(['-', '.']) {
        Some((prefix, n)) => match n.parse() {
            Ok(n) => (prefix.to_owned(), n),
            Err(_) => (tag.to_owned(), 0),
        },
        None => (tag.to_owned(), 0),
    }
}

/// The newest `build-<n>` tag of `repo` that the purge kept because of `keep`.
fn newest_kept(report: &PurgeReport, repo: &Repository) -> Res<String> {
    let untagged = &report
        .repositories
        .iter()
        .find(|r| r.repository == repo.name())
        .ok_or("the purge touched the repository")?
        .tags_untagged;
    let newest_untagged = untagged
        .iter()
        .filter_map(|t| t.strip_prefix("build-")?.parse::<u32>().ok())
        .max()
        .ok_or("some build tag was untagged")?;
    Ok(format!("build-{}", newest_untagged + 1))
}

fn check(digest: &Digest, bytes: &[u8]) -> Res<()> {
    let actual = digest.algorithm().digest(bytes);
    if &actual != digest {
        return Err(format!("digest mismatch: {digest} read back as {actual}").into());
    }
    Ok(())
}

fn short(d: &Digest) -> String {
    d.hex()[..12].to_owned()
}
