//! The SPEC's grammars and digests, written again independently of `ocistore`: the model
//! must not share the code it checks.

use ocistore::Algorithm;

use super::outcome::*;

pub(crate) fn hash(alg: Algorithm, bytes: &[u8]) -> String {
    use sha2::Digest as _;
    match alg {
        Algorithm::Sha256 => format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes))),
        Algorithm::Sha512 => format!("sha512:{}", hex::encode(sha2::Sha512::digest(bytes))),
        Algorithm::Blake3 => format!("blake3:{}", blake3::hash(bytes).to_hex()),
        other => panic!("the model knows no algorithm {other}"),
    }
}

pub(crate) fn sha256(bytes: &[u8]) -> String {
    hash(Algorithm::Sha256, bytes)
}

/// The algorithm of a valid digest (N3).
pub(crate) fn algorithm_of(digest: &str) -> Algorithm {
    match digest.split_once(':') {
        Some(("sha256", _)) => Algorithm::Sha256,
        Some(("sha512", _)) => Algorithm::Sha512,
        Some(("blake3", _)) => Algorithm::Blake3,
        _ => panic!("not a valid digest: {digest}"),
    }
}

/// N1.
pub(crate) fn valid_repo_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && name.split('/').all(valid_component)
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
pub(crate) fn valid_component(component: &str) -> bool {
    let c = component.as_bytes();
    let mut i = 0;
    let alnum_run = |i: &mut usize| {
        let start = *i;
        while *i < c.len() && (c[*i].is_ascii_lowercase() || c[*i].is_ascii_digit()) {
            *i += 1;
        }
        *i > start
    };
    if !alnum_run(&mut i) {
        return false;
    }
    while i < c.len() {
        match c[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if c.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while c.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
        if !alnum_run(&mut i) {
            return false;
        }
    }
    true
}

/// N2.
pub(crate) fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    let first = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    (1..=128).contains(&b.len())
        && first(b[0])
        && b[1..].iter().all(|&c| first(c) || c == b'.' || c == b'-')
}

/// N3.
pub(crate) fn valid_digest(digest: &str) -> bool {
    let Some((alg, hex)) = digest.split_once(':') else {
        return false;
    };
    let len = match alg {
        "sha256" | "blake3" => 64,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == len && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

pub(crate) fn check_repo(name: &str) -> Result<(), ErrKind> {
    if valid_repo_name(name) {
        Ok(())
    } else {
        Err(ErrKind::InvalidRepositoryName(name.to_owned()))
    }
}

/// A push or pull reference: a valid tag is a tag, anything else must be a digest.
pub(crate) enum ModelRef {
    Tag(String),
    Digest(String),
}

pub(crate) fn parse_reference(reference: &str) -> Result<ModelRef, ErrKind> {
    if valid_tag(reference) {
        Ok(ModelRef::Tag(reference.to_owned()))
    } else if valid_digest(reference) {
        Ok(ModelRef::Digest(reference.to_owned()))
    } else {
        Err(ErrKind::InvalidReference(reference.to_owned()))
    }
}
