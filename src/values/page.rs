//! OCI-style pagination of listings (docs/spec.md: P7).

/// OCI-style pagination: at most `n` entries after `last`, the two query parameters of the OCI
/// distribution spec's listings (so not `#[non_exhaustive]`). Its serde form is
/// `{"n": 10, "last": "v1"}`, either field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Page {
    /// The most entries to return; `None` for all.
    pub n: Option<usize>,
    /// Return entries strictly after this one.
    pub last: Option<String>,
}

impl Page {
    /// Every entry.
    #[must_use]
    pub fn all() -> Page {
        Page::default()
    }

    /// The first `n` entries.
    #[must_use]
    pub fn first(n: usize) -> Page {
        Page {
            n: Some(n),
            last: None,
        }
    }

    /// At most `n` entries after `last`.
    pub fn after(last: impl Into<String>, n: usize) -> Page {
        Page {
            n: Some(n),
            last: Some(last.into()),
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.n.unwrap_or(usize::MAX)
    }
}
