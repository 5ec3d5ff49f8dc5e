//! Repositories: the name grammar (SPEC N1) and the [`Repository`] handle through which
//! blobs, manifests and tags of one repository are read and written.

use std::sync::LazyLock;

use regex::Regex;

use crate::error::{Error, Result};
use crate::registry::Registry;

/// The longest repository name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 255;

static NAME: LazyLock<Regex> = LazyLock::new(|| {
    let component = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*";
    Regex::new(&format!(r"\A{component}(?:/{component})*\z")).expect("valid regex")
});

/// Checks a repository name against the OCI distribution grammar (N1).
pub(crate) fn validate_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "must not be empty"
    } else if name.len() > MAX_NAME_LEN {
        "longer than 255 bytes"
    } else if !NAME.is_match(name) {
        "must be lower-case alphanumeric components separated by '/', each joined by '.', '_', '__' or '-'"
    } else {
        return Ok(());
    };
    Err(Error::InvalidRepositoryName {
        name: name.to_owned(),
        reason,
    })
}

/// A handle on one repository of a [`Registry`], by name. Cheap to clone.
///
/// Getting a handle writes nothing: the repository comes into being with the first blob or
/// manifest pushed or mounted into it. Its methods are documented with their concepts: blobs
/// ([`put_blob`](Repository::put_blob), [`blob`](Repository::blob), uploads), manifests
/// ([`push_manifest`](Repository::push_manifest), [`pull`](Repository::pull)) and tags
/// ([`tag`](Repository::tag), [`tags`](Repository::tags)).
#[derive(Clone, Debug)]
pub struct Repository {
    registry: Registry,
    name: String,
}

impl Repository {
    pub(crate) fn new(registry: Registry, name: String) -> Repository {
        Repository { registry, name }
    }

    /// The repository's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The registry holding it.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}
