//! OCI parsing: bytes in, a parsed manifest out (docs/spec.md: N4, P3). No tables, no files: what is
//! decided here depends on the bytes alone.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::values::{Algorithm, Digest, Error, Result, validate_tag};

/// Media type of an OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of a Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Media type of a Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

const DOCKER_SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// The largest manifest body accepted (N4): 4 MiB.
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;

/// What a manifest is: an image (config and layers) or an index (child manifests). Its serde
/// form is `"image"` or `"index"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ManifestKind {
    /// OCI image manifest or Docker schema 2 manifest.
    Image,
    /// OCI image index or Docker manifest list.
    Index,
}

impl ManifestKind {
    /// The kind of an accepted manifest media type; schema 1 and unknown types are refused.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::UnsupportedMediaType`] for Docker schema 1 and for any type other than
    /// an OCI image manifest or index or a Docker schema 2 manifest or manifest list.
    pub fn of_media_type(media_type: &str) -> Result<ManifestKind> {
        match media_type {
            OCI_MANIFEST | DOCKER_MANIFEST => Ok(ManifestKind::Image),
            OCI_INDEX | DOCKER_MANIFEST_LIST => Ok(ManifestKind::Index),
            t if DOCKER_SCHEMA1.contains(&t) => Err(Error::UnsupportedMediaType {
                media_type: t.to_owned(),
                reason: "Docker schema 1 manifests are not accepted; push schema 2 or OCI",
            }),
            t => Err(Error::UnsupportedMediaType {
                media_type: t.to_owned(),
                reason: "accepted: OCI image manifest and index, Docker schema 2 manifest and list",
            }),
        }
    }
}

/// An OCI content descriptor: what a manifest says of a blob or another manifest.
///
/// Its serde form is the OCI image spec's, camelCase (`mediaType`, `artifactType`), the one
/// exception to the crate's `snake_case` JSON: it is what manifests and the referrers API hold.
///
/// ```
/// use ocistore::{Algorithm, Descriptor};
/// let mut d = Descriptor::new("application/vnd.oci.image.layer.v1.tar", Algorithm::Sha256.digest(b"x"), 1);
/// d.artifact_type = Some("application/spdx+json".into());
/// assert!(serde_json::to_string(&d)?.contains(r#""artifactType":"application/spdx+json""#));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Descriptor {
    /// The media type of the referenced content.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// The artifact type, if any (OCI 1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// A descriptor of `size` bytes of `media_type` content named `digest`, with no artifact
    /// type and no annotations.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            artifact_type: None,
            annotations: BTreeMap::new(),
        }
    }
}

/// The fields of any accepted manifest body; which ones must be present depends on the kind.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body {
    schema_version: Option<u64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// A manifest body that passed validation, with the references it makes.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    pub kind: ManifestKind,
    pub artifact_type: Option<String>,
    pub config: Option<Descriptor>,
    /// Config then layers for an image; child manifests for an index.
    pub references: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub annotations: BTreeMap<String, String>,
}

/// Validates a manifest body against its declared media type (N4, P3).
pub(crate) fn parse(media_type: &str, body: &[u8]) -> Result<Parsed> {
    let size = body.len() as u64;
    if size > MAX_MANIFEST_SIZE {
        return Err(Error::ManifestTooLarge {
            size,
            limit: MAX_MANIFEST_SIZE,
        });
    }
    let kind = ManifestKind::of_media_type(media_type)?;
    let invalid = |reason: String| Error::InvalidManifest { reason };
    // serde would also read a JSON array into `Body`, field by field.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(invalid("a manifest is a JSON object".into()));
    }
    // JSON is UTF-8 (RFC 8259 section 8.1), and serde checks it only in the fields it reads:
    // bytes that are not would pass in an annotation or a field it skips.
    let text =
        std::str::from_utf8(body).map_err(|e| invalid(format!("a manifest is UTF-8 JSON: {e}")))?;
    let b: Body = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
    if let Some(body_type) = &b.media_type
        && body_type != media_type
    {
        // A schema 1 body is named as such even when declared otherwise.
        if DOCKER_SCHEMA1.contains(&body_type.as_str()) {
            ManifestKind::of_media_type(body_type)?;
        }
        return Err(Error::MediaTypeMismatch {
            declared: media_type.to_owned(),
            body: body_type.clone(),
        });
    }
    match b.schema_version {
        Some(2) => {}
        Some(1) => {
            return Err(Error::UnsupportedMediaType {
                media_type: media_type.to_owned(),
                reason: "schemaVersion 1 is Docker schema 1, which is not accepted",
            });
        }
        Some(v) => return Err(invalid(format!("schemaVersion must be 2, found {v}"))),
        None => return Err(invalid("schemaVersion is missing".into())),
    }
    let references = match kind {
        ManifestKind::Image => {
            if b.manifests.is_some() {
                return Err(invalid("an image manifest has no \"manifests\"".into()));
            }
            let config = b
                .config
                .clone()
                .ok_or_else(|| invalid("an image manifest needs \"config\"".into()))?;
            let layers = b
                .layers
                .ok_or_else(|| invalid("an image manifest needs \"layers\"".into()))?;
            std::iter::once(config).chain(layers).collect()
        }
        ManifestKind::Index => {
            if b.config.is_some() || b.layers.is_some() {
                return Err(invalid("an index has no \"config\" or \"layers\"".into()));
            }
            b.manifests
                .ok_or_else(|| invalid("an index needs \"manifests\"".into()))?
        }
    };
    Ok(Parsed {
        kind,
        artifact_type: b.artifact_type,
        config: b.config,
        references,
        subject: b.subject,
        annotations: b.annotations,
    })
}

/// A tag or a digest: how a manifest is pushed and pulled.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    /// A tag (N2).
    Tag(String),
    /// A digest (N3).
    Digest(Digest),
}

impl Reference {
    /// Parses a reference: a valid tag is a tag, anything else must be a digest. Tags cannot
    /// hold a `:` and digests always do, so the two never clash.
    ///
    /// ```
    /// use ocistore::{Error, Reference};
    /// assert!(matches!(Reference::parse("v1")?, Reference::Tag(_)));
    /// assert!(matches!(Reference::parse("v1:beta"), Err(Error::InvalidReference { .. })));
    /// # Ok::<(), Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Fails with [`Error::InvalidReference`], which says why `s` is neither, if it is neither
    /// a valid tag nor a valid digest.
    pub fn parse(s: &str) -> Result<Reference> {
        if validate_tag(s).is_ok() {
            return Ok(Reference::Tag(s.to_owned()));
        }
        Digest::parse(s)
            .map(Reference::Digest)
            .map_err(|e| match e {
                Error::InvalidDigest { reason, .. } => Error::InvalidReference {
                    reference: s.to_owned(),
                    digest_reason: reason,
                },
                e => e,
            })
    }
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Reference> {
        Reference::parse(s)
    }
}

impl From<Digest> for Reference {
    fn from(d: Digest) -> Reference {
        Reference::Digest(d)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => f.write_str(t),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

/// Computes the digest a pushed body is stored under: with the algorithm of the digest the push
/// names, checked against it, or sha256 for a push by tag (P3).
pub(crate) fn body_digest(reference: &Reference, body: &[u8]) -> Result<Digest> {
    match reference {
        Reference::Digest(expected) => {
            let actual = expected.algorithm().digest(body);
            if &actual != expected {
                return Err(Error::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
            Ok(actual)
        }
        Reference::Tag(_) => Ok(Algorithm::Sha256.digest(body)),
    }
}

/// A validated push, ready to be stored: parsing and hashing happen before the write
/// transaction begins, so other writers do not wait for them.
pub(crate) struct Prepared<'a> {
    pub digest: Digest,
    pub tag: Option<String>,
    pub media_type: &'a str,
    pub body: &'a [u8],
    pub parsed: Parsed,
}

/// Parses and hashes a push of `body` under `reference`, before any transaction.
pub(crate) fn prepare<'a>(
    reference: &str,
    media_type: &'a str,
    body: &'a [u8],
) -> Result<Prepared<'a>> {
    let reference = Reference::parse(reference)?;
    let parsed = parse(media_type, body)?;
    let digest = body_digest(&reference, body)?;
    let tag = match reference {
        Reference::Tag(t) => Some(t),
        Reference::Digest(_) => None,
    };
    Ok(Prepared {
        digest,
        tag,
        media_type,
        body,
        parsed,
    })
}
