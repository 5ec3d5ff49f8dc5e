//! Content digests: `algorithm:hex` (docs/spec.md: N3) and the hashers that compute them.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

use super::{Error, Result};

/// A hash algorithm a digest may use. Its serde form is its name, `"sha256"`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Algorithm {
    /// SHA-256, the default for everything this store computes itself.
    Sha256,
    /// SHA-512.
    Sha512,
    /// BLAKE3 with 256-bit output (registered in OCI image-spec main).
    Blake3,
}

impl Algorithm {
    /// Every supported algorithm.
    pub const ALL: [Algorithm; 3] = [Algorithm::Sha256, Algorithm::Sha512, Algorithm::Blake3];

    /// The name used in a digest string.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
            Algorithm::Blake3 => "blake3",
        }
    }

    /// The number of hex characters of an encoded digest.
    #[must_use]
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 | Algorithm::Blake3 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    /// A hasher for this algorithm.
    #[must_use]
    pub fn hasher(self) -> Hasher {
        Hasher(match self {
            Algorithm::Sha256 => HasherState::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => HasherState::Sha512(sha2::Sha512::new()),
            Algorithm::Blake3 => HasherState::Blake3(Box::new(blake3::Hasher::new())),
        })
    }

    /// The digest of `bytes` under this algorithm.
    #[must_use]
    pub fn digest(self, bytes: &[u8]) -> Digest {
        let mut h = self.hasher();
        h.update(bytes);
        h.finish()
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A validated content digest such as `sha256:2c26b4…`. Its serde form is that text.
///
/// ```
/// use ocistore::{Algorithm, Digest};
/// let d: Digest = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae".parse()?;
/// assert_eq!(d.algorithm(), Algorithm::Sha256);
/// assert_eq!(d, Algorithm::Sha256.digest(b"foo"));
/// assert!("sha256:ABC".parse::<Digest>().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest {
    algorithm: Algorithm,
    text: String,
}

impl Digest {
    /// Parses and validates `algorithm:hex` (N3).
    ///
    /// # Errors
    ///
    /// Fails with [`Error::InvalidDigest`] if `s` is not `algorithm:hex` with a supported algorithm
    /// (sha256, sha512, blake3) and lower-case hex of that algorithm's length.
    pub fn parse(s: &str) -> Result<Digest> {
        let invalid = |reason| Error::InvalidDigest {
            digest: s.to_owned(),
            reason,
        };
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| invalid("missing ':' between algorithm and hex"))?;
        let algorithm = Algorithm::ALL
            .into_iter()
            .find(|a| a.name() == alg)
            .ok_or_else(|| invalid("algorithm must be sha256, sha512 or blake3"))?;
        if hex.len() != algorithm.hex_len() {
            return Err(invalid("hex part has the wrong length for its algorithm"));
        }
        if !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid("hex part must be lower-case hexadecimal"));
        }
        Ok(Digest {
            algorithm,
            text: s.to_owned(),
        })
    }

    /// The algorithm.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex part, without the algorithm.
    #[must_use]
    pub fn hex(&self) -> &str {
        &self.text[self.algorithm.name().len() + 1..]
    }

    /// The whole digest as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Parses a digest read back from the database, where it was validated when written.
    pub(crate) fn stored(s: &str) -> Result<Digest> {
        Digest::parse(s).map_err(|e| Error::Corrupt {
            table: "digest column",
            reason: e.to_string(),
        })
    }
}

/// Digests order as their text, the order listings use.
impl Ord for Digest {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}

impl PartialOrd for Digest {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Digest> {
        Digest::parse(s)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl AsRef<str> for Digest {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An incremental hasher for one [`Algorithm`].
#[derive(Clone)]
pub struct Hasher(HasherState);

#[derive(Clone)]
enum HasherState {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
    Blake3(Box<blake3::Hasher>),
}

impl Hasher {
    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.0 {
            HasherState::Sha256(h) => h.update(bytes),
            HasherState::Sha512(h) => h.update(bytes),
            HasherState::Blake3(h) => {
                h.update(bytes);
            }
        }
    }

    /// The algorithm this hasher computes.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        match self.0 {
            HasherState::Sha256(_) => Algorithm::Sha256,
            HasherState::Sha512(_) => Algorithm::Sha512,
            HasherState::Blake3(_) => Algorithm::Blake3,
        }
    }

    /// The digest of everything fed so far.
    #[must_use]
    pub fn finish(self) -> Digest {
        let algorithm = self.algorithm();
        let hex = match self.0 {
            HasherState::Sha256(h) => hex::encode(h.finalize()),
            HasherState::Sha512(h) => hex::encode(h.finalize()),
            HasherState::Blake3(h) => h.finalize().to_hex().to_string(),
        };
        Digest {
            algorithm,
            text: format!("{algorithm}:{hex}"),
        }
    }

    /// The hasher's state as bytes, for a sha256 or sha512 hasher: a store that cannot read back
    /// what it already hashed (the parts of an upload sent to object storage) keeps it, and
    /// [`from_state`](Hasher::from_state) goes on from there after a restart. `None` for
    /// blake3, whose state cannot be saved.
    #[must_use]
    pub fn state(&self) -> Option<Vec<u8>> {
        use sha2::digest::common::hazmat::SerializableState;
        match &self.0 {
            HasherState::Sha256(h) => Some(h.serialize().to_vec()),
            HasherState::Sha512(h) => Some(h.serialize().to_vec()),
            HasherState::Blake3(_) => None,
        }
    }

    /// A hasher of `algorithm` in the state [`state`](Hasher::state) saved, or `None` if
    /// `bytes` are not such a state.
    #[must_use]
    pub fn from_state(algorithm: Algorithm, bytes: &[u8]) -> Option<Hasher> {
        use sha2::digest::common::hazmat::SerializableState;
        fn restore<H: SerializableState>(bytes: &[u8]) -> Option<H> {
            H::deserialize(bytes.try_into().ok()?).ok()
        }
        Some(Hasher(match algorithm {
            Algorithm::Sha256 => HasherState::Sha256(restore(bytes)?),
            Algorithm::Sha512 => HasherState::Sha512(restore(bytes)?),
            Algorithm::Blake3 => return None,
        }))
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hasher({})", self.algorithm())
    }
}

/// `Ok` if `actual` is the digest `expected`, else [`Error::DigestMismatch`].
pub(crate) fn verify(expected: &Digest, actual: Digest) -> Result<()> {
    if &actual == expected {
        Ok(())
    } else {
        Err(Error::DigestMismatch {
            expected: expected.clone(),
            actual,
        })
    }
}

/// Hashes everything `reader` gives, a buffer at a time; returns the hasher and the length.
pub(crate) fn hash_reader(
    reader: &mut dyn std::io::Read,
    algorithm: Algorithm,
) -> std::io::Result<(Hasher, u64)> {
    let mut hasher = algorithm.hasher();
    let total = hash_into(reader, &mut hasher)?;
    Ok((hasher, total))
}

/// Feeds `hasher` everything `reader` gives, a buffer at a time; returns the length.
pub(crate) fn hash_into(
    reader: &mut dyn std::io::Read,
    hasher: &mut Hasher,
) -> std::io::Result<u64> {
    let mut buf = vec![0; 1 << 20];
    let mut total = 0;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}
