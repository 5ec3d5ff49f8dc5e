//! Opens a store (in `./quickstart-registry`, or the directory given), pushes two images into
//! two repositories that share a layer, tags them, lists, pulls everything back and verifies
//! every digest. Running it again reuses the store: the pushes are idempotent.
//!
//! ```text
//! cargo run --release --example quickstart [DIR]
//! ```

use std::error::Error;

use ocistore::manifest::OCI_MANIFEST;
use ocistore::{Algorithm, Digest, ManifestQuery, Page, Registry, Repository};

const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

fn main() -> Result<(), Box<dyn Error>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "quickstart-registry".into());
    let registry = Registry::open(&dir)?;
    println!("store: {}", registry.path().display());

    // One base layer, shared by both images: stored once, linked into both repositories.
    let base = b"base layer: a root filesystem".repeat(1000);
    let web = registry.repository("demo/web")?;
    let worker = registry.repository("demo/worker")?;
    let web_digest = push_image(&web, "1.0", &base, b"web app layer", "web")?;
    let base_digest = Algorithm::Sha256.digest(&base);
    // The worker mounts the base layer from demo/web instead of uploading it again.
    worker.mount_blob(web.name(), &base_digest)?;
    let worker_digest = push_image(&worker, "1.0", &base, b"worker app layer", "worker")?;
    web.tag("latest", &web_digest)?;
    worker.tag("latest", &worker_digest)?;

    println!("\nrepositories:");
    for name in registry.repositories(&Page::all())? {
        let repo = registry.repository(&name)?;
        let tags: Vec<String> = repo
            .tags(&Page::all())?
            .into_iter()
            .map(|t| t.name)
            .collect();
        println!("  {name}  tags: {}", tags.join(", "));
        for m in repo.manifests(&ManifestQuery::default())? {
            println!(
                "    {}  {} bytes  updated {}  tags [{}]",
                short(&m.digest),
                m.size,
                m.updated,
                m.tags.join(", ")
            );
            // Pull back and verify every digest: the manifest's and each blob's.
            let pulled = repo.pull(m.digest.as_str())?;
            check(&m.digest, &pulled.body)?;
            for blob in &m.references {
                check(&blob.digest, &repo.blob(&blob.digest)?)?;
                println!(
                    "      {}  {:>6} bytes  verified",
                    short(&blob.digest),
                    blob.size
                );
            }
        }
    }
    println!(
        "\nshared layer {} readable from both: ok",
        short(&base_digest)
    );
    println!("every digest verified");
    Ok(())
}

/// Uploads a config and two layers (the shared base, then an app layer) and pushes an OCI
/// image manifest over them under `tag`.
fn push_image(
    repo: &Repository,
    tag: &str,
    base: &[u8],
    app: &[u8],
    name: &str,
) -> Result<Digest, Box<dyn Error>> {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","name":"{name}"}}"#);
    let descriptor = |media_type: &str, bytes: &[u8]| -> Result<String, ocistore::Error> {
        let digest = repo.put_blob_sha256(bytes)?;
        Ok(format!(
            r#"{{"mediaType":"{media_type}","digest":"{digest}","size":{}}}"#,
            bytes.len()
        ))
    };
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":[{},{}]}}"#,
        descriptor(CONFIG, config.as_bytes())?,
        descriptor(LAYER, base)?,
        descriptor(LAYER, app)?,
    );
    Ok(repo
        .push_manifest(tag, OCI_MANIFEST, body.as_bytes())?
        .digest)
}

fn check(digest: &Digest, bytes: &[u8]) -> Result<(), Box<dyn Error>> {
    let actual = digest.algorithm().digest(bytes);
    if &actual != digest {
        return Err(format!("digest mismatch: {digest} read back as {actual}").into());
    }
    Ok(())
}

fn short(d: &Digest) -> String {
    format!("{}:{}", d.algorithm(), &d.hex()[..12])
}
