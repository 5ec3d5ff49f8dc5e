//! The grammars of repository names (docs/spec.md: N1) and tags (N2).

use std::sync::LazyLock;

use regex::Regex;

use super::{Error, Result};

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

static TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\A[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}\z").expect("valid regex"));

/// Checks a tag against the OCI grammar (N2).
pub(crate) fn validate_tag(tag: &str) -> Result<()> {
    if TAG.is_match(tag) {
        Ok(())
    } else {
        Err(Error::InvalidTag {
            tag: tag.to_owned(),
        })
    }
}
