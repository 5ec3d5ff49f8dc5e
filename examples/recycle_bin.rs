//! The soft delete story of Azure Container Registry, on a manual clock: enable the policy,
//! push, untag, delete by tag, delete a repository, list everything deleted, restore (plain
//! and forced), change the retention, let the clock pass the expiry, autopurge, and see the
//! bin empty. Months pass in microseconds.
//!
//! ```text
//! cargo run --example recycle_bin
//! ```

use std::error::Error;
use std::time::Duration;

use ocistore::manifest::OCI_MANIFEST;
use ocistore::{
    Digest, ManualClock, OnConflict, Registry, Repository, Restore, SoftDeletePolicy, Timestamp,
};

const DAY: Duration = Duration::from_secs(86_400);

fn main() -> Result<(), Box<dyn Error>> {
    let dir = tempfile_dir()?;
    // 2026-01-01T00:00:00Z.
    let clock = ManualClock::new(Timestamp::from_nanos(1_767_225_600_000_000_000));
    let registry = Registry::builder().clock(clock.clone()).open(&dir)?;

    registry.set_soft_delete_policy(SoftDeletePolicy::enabled(7)?)?;
    println!("policy: {:?}", registry.soft_delete_policy()?);

    let hello = registry.repository("hello-world")?;
    let v1 = push(&hello, "latest", "one")?;
    let v2 = push(&hello, "v2", "two")?;
    hello.tag("stable", &v2)?;
    let other = registry.repository("scratch")?;
    push(&other, "latest", "scratch")?;
    println!(
        "pushed hello-world:latest = {}, hello-world:v2 = stable = {}",
        short(&v1),
        short(&v2)
    );

    println!(
        "\nday 0: untag hello-world:stable, delete hello-world:latest by tag, delete repository scratch"
    );
    hello.untag("stable")?;
    hello.delete_manifest("latest")?;
    registry.delete_repository("scratch")?;
    show_bin(&registry, &hello)?;

    clock.advance(DAY);
    println!(
        "\nday 1: restore hello-world:latest (tag alone: the most recently deleted manifest with it)"
    );
    let restored = hello.restore(Restore::Tag("latest"), OnConflict::Refuse)?;
    println!(
        "  restored {} as latest; pull: {}",
        short(&restored),
        short(&hello.pull("latest")?.digest)
    );

    let v3 = push(&hello, "latest", "three")?;
    // v1 is live again: the bin holds nothing to restore, so it is a revert of the tag (T2).
    println!(
        "\nday 1: push a new latest ({}), then revert latest to {}",
        short(&v3),
        short(&v1)
    );
    match hello.revert_tag("latest", &v1, OnConflict::Refuse) {
        Err(e) => println!("  plain revert refused: {e}"),
        Ok(()) => return Err("a revert over a live tag must be refused".into()),
    }
    hello.revert_tag("latest", &v1, OnConflict::MoveTag)?;
    println!(
        "  forced: latest = {}; the overwritten latest (on {}) went to the bin",
        short(&hello.resolve("latest")?),
        short(&v3)
    );
    show_bin(&registry, &hello)?;

    clock.advance(4 * DAY);
    println!(
        "\nday 5: retention changed from 7 to 14 days: every expiry moves, by the retention now"
    );
    registry.set_soft_delete_policy(SoftDeletePolicy::enabled(14)?)?;
    show_bin(&registry, &hello)?;

    clock.advance(10 * DAY);
    let report = registry.run_due()?.ok_or("autopurge is due")?;
    println!("\nday 15: autopurge: {report:?}");
    show_bin(&registry, &hello)?;
    if registry.deleted_repositories()?.is_empty()
        && hello.deleted_manifests()?.is_empty()
        && hello.deleted_tags(None)?.is_empty()
    {
        println!("\nthe bin is empty");
    } else {
        return Err("the bin should be empty after the retention".into());
    }
    drop((hello, other, registry));
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn show_bin(registry: &Registry, repo: &Repository) -> Result<(), Box<dyn Error>> {
    println!("  recycle bin:");
    for r in registry.deleted_repositories()? {
        println!(
            "    repository {}  deleted {}  expires {}",
            r.name, r.deleted_at, r.expires_at
        );
    }
    for m in repo.deleted_manifests()? {
        println!(
            "    manifest {}:{}  deleted {}  expires {}",
            repo.name(),
            short(&m.digest),
            m.deleted_at,
            m.expires_at
        );
    }
    for t in repo.deleted_tags(None)? {
        println!(
            "    tag {}:{} -> {}  deleted {}  expires {}",
            repo.name(),
            t.tag,
            short(&t.digest),
            t.deleted_at,
            t.expires_at
        );
    }
    Ok(())
}

fn push(repo: &Repository, tag: &str, seed: &str) -> Result<Digest, ocistore::Error> {
    let config = repo.put_blob_sha256(format!(r#"{{"seed":"{seed}"}}"#))?;
    let layer = repo.put_blob_sha256(format!("layer of {seed}"))?;
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":{}}}]}}"#,
        seed.len() + 11,
        seed.len() + 9,
    );
    repo.push_manifest(tag, OCI_MANIFEST, body.as_bytes())
        .map(|pushed| pushed.digest)
}

fn short(d: &Digest) -> String {
    d.hex()[..12].to_owned()
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("ocistore-recycle-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
