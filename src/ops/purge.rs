//! Purge by filter, as `acr purge` does it (docs/spec.md: U1–U6): untag the old tags that match a
//! filter, keeping the newest few, then optionally delete the untagged manifests left over.
//!
//! Every delete goes through the soft delete policy (U6), so with it on a purge can be undone
//! from the recycle bin. Repositories are independent of each other: each one's purge is
//! atomic, and a run commits them a few thousand changes at a time so that other writers do
//! not wait long. A dry run runs exactly the same code and aborts its transactions instead of
//! committing them, so its report is what the real run would do (U5).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use redb::ReadableTable;
use regex::{Regex, RegexBuilder};

use super::Core;
use crate::store::Tx;
use crate::store::locks::{Need, locks_of};
use crate::store::manifests::has_tags;
use crate::store::repositories::{RepositoryRecord, is_live};
use crate::store::tables::{Readable, decode, keys_under2};
use crate::store::tags::TagCause;
use crate::values::{Digest, Error, Item, Result, Timestamp};

/// Changes (tags untagged, manifests deleted) after which a purge commits and starts a new
/// transaction; a repository always stays within one.
const CHANGES_PER_TRANSACTION: usize = 4096;

/// The longest compiled form a filter's regex may take: filters come from operators' command
/// lines, and this bounds what one can cost.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A purge filter, `repository-regex:tag-regex` (U1). Both regular expressions must match the
/// whole name. They are compiled once, by the `regex` crate, whose matching time is linear in
/// the input: no filter can backtrack catastrophically, so none needs a timeout.
///
/// The filter is split at its first `:`: repository names hold none, so a repository regex
/// needs none either (write `(a|b)`, not `(?:a|b)`).
///
/// ```
/// use ocistore::Filter;
/// let filter: Filter = "hello-world:.*".parse()?;
/// assert!(filter.matches("hello-world", "v1"));
/// assert!(!filter.matches("hello-world-2", "v1"));
/// let filter: Filter = "team/.*:v1\\..*".parse()?;
/// assert!(filter.matches("team/app", "v1.2") && !filter.matches("team/app", "v10"));
/// assert!("no-colon".parse::<Filter>().is_err());
/// // Unbalanced groups are refused, not allowed to escape the whole-string anchors.
/// assert!("team/app:v1)|(.*".parse::<Filter>().is_err());
/// # Ok::<(), ocistore::Error>(())
/// ```
#[derive(Clone)]
pub struct Filter {
    text: String,
    repository: Regex,
    tag: Regex,
}

impl Filter {
    /// Parses and compiles `repository-regex:tag-regex`.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::InvalidFilter`] if `filter` has no `:`, or either regular expression is
    /// empty, does not compile on its own or compiles too large.
    pub fn parse(filter: &str) -> Result<Filter> {
        let invalid = |reason: String| Error::InvalidFilter {
            filter: filter.to_owned(),
            reason,
        };
        let (repository, tag) = filter.split_once(':').ok_or_else(|| {
            invalid("must be repository-regex:tag-regex, with a ':' between the two".into())
        })?;
        let compile = |part: &str, what: &str| {
            if part.is_empty() {
                return Err(invalid(format!("the {what} regex is empty")));
            }
            let build = |pattern: &str| {
                RegexBuilder::new(pattern)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| invalid(format!("the {what} regex: {e}")))
            };
            // The part must be a regex on its own: wrapped, `v1)|(.*` would close the
            // anchoring group early and match every name.
            build(part)?;
            build(&format!(r"\A(?:{part})\z"))
        };
        Ok(Filter {
            text: filter.to_owned(),
            repository: compile(repository, "repository")?,
            tag: compile(tag, "tag")?,
        })
    }

    /// The filter as given.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the filter selects `tag` of `repository`.
    #[must_use]
    pub fn matches(&self, repository: &str, tag: &str) -> bool {
        self.repository.is_match(repository) && self.tag.is_match(tag)
    }
}

impl FromStr for Filter {
    type Err = Error;
    fn from_str(s: &str) -> Result<Filter> {
        Filter::parse(s)
    }
}

/// A filter's serde form is its text, `"repository-regex:tag-regex"`, parsed when read.
impl serde::Serialize for Filter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Filter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Filter::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Filter").field(&self.text).finish()
    }
}

impl PartialEq for Filter {
    fn eq(&self, other: &Filter) -> bool {
        self.text == other.text
    }
}

impl Eq for Filter {}

/// Parses an age in the form `acr purge --ago` takes: a sequence of whole numbers, each with a
/// unit `d`, `h`, `m`, `s`, `ms`, `us` (or `µs`) or `ns`, such as `1d3h6m` or `30m`; or `0`.
///
/// # Errors
///
/// Fails with [`Error::InvalidSetting`] if `ago` is not of that form, or is too long for a
/// [`Duration`].
///
/// ```
/// use std::time::Duration;
/// use ocistore::parse_ago;
/// assert_eq!(parse_ago("1d3h6m")?, Duration::from_secs(86_400 + 3 * 3600 + 6 * 60));
/// assert_eq!(parse_ago("30m")?, Duration::from_secs(1800));
/// assert!(parse_ago("1 day").is_err());
/// # Ok::<(), ocistore::Error>(())
/// ```
pub fn parse_ago(ago: &str) -> Result<Duration> {
    const FORM: &str = "must be whole numbers with units d, h, m, s, ms, us or ns, like 1d3h6m";
    let invalid = |reason| Error::InvalidSetting {
        setting: "purge ago",
        value: ago.to_owned(),
        reason,
    };
    if ago == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = ago;
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return Err(invalid(FORM));
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (number, tail) = rest.split_at(digits);
        let number: u64 = number.parse().map_err(|_| invalid(FORM))?;
        let units = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let units = if tail.starts_with("µs") {
            "µs".len()
        } else {
            units
        };
        let (unit, tail) = tail.split_at(units);
        let nanos_per: u64 = match unit {
            "d" => 86_400_000_000_000,
            "h" => 3_600_000_000_000,
            "m" => 60_000_000_000,
            "s" => 1_000_000_000,
            "ms" => 1_000_000,
            "us" | "µs" => 1_000,
            "ns" => 1,
            _ => return Err(invalid(FORM)),
        };
        let nanos = number
            .checked_mul(nanos_per)
            .ok_or_else(|| invalid("too long"))?;
        total = total
            .checked_add(Duration::from_nanos(nanos))
            .ok_or_else(|| invalid("too long"))?;
        rest = tail;
    }
    Ok(total)
}

/// What a purge selects and how it runs (U1). [`PurgeOptions::new`] gives `acr purge`'s
/// defaults: tags older than one day, none kept, untagged manifests left alone; so does its
/// serde form for the fields it leaves out (only `filters` is required).
///
/// ```
/// use std::time::Duration;
/// use ocistore::PurgeOptions;
/// let options = PurgeOptions::new(["team/.*:.*"])?
///     .ago(Duration::from_secs(7 * 86_400))
///     .keep(3)
///     .untagged(true)
///     .dry_run(true);
/// assert_eq!(options.keep, 3);
/// # Ok::<(), ocistore::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct PurgeOptions {
    /// The filters; a tag is selected if any filter matches its repository and its name.
    pub filters: Vec<Filter>,
    /// Only tags, and manifests, last updated more than this long ago.
    #[serde(with = "crate::values::seconds", default = "one_day")]
    pub ago: Duration,
    /// How many of the selected tags of each repository to keep: the most recently updated.
    #[serde(default)]
    pub keep: usize,
    /// Also delete the untagged manifests of the matching repositories (U3).
    #[serde(default)]
    pub untagged: bool,
    /// Report without changing anything (U5).
    #[serde(default)]
    pub dry_run: bool,
    /// Unlock and delete locked tags and manifests instead of skipping them (U4). A locked
    /// repository is skipped all the same: its lock is the operator's, not the purge's to lift.
    #[serde(default)]
    pub include_locked: bool,
}

/// `acr purge`'s default age.
fn one_day() -> Duration {
    Duration::from_secs(86_400)
}

impl PurgeOptions {
    /// Options with `filters` parsed, and the defaults for the rest.
    ///
    /// # Errors
    ///
    /// Fails with [`Error::InvalidFilter`] if a filter does not parse ([`Filter::parse`]).
    pub fn new<S: AsRef<str>>(filters: impl IntoIterator<Item = S>) -> Result<PurgeOptions> {
        Ok(PurgeOptions {
            filters: filters
                .into_iter()
                .map(|f| Filter::parse(f.as_ref()))
                .collect::<Result<_>>()?,
            ago: one_day(),
            keep: 0,
            untagged: false,
            dry_run: false,
            include_locked: false,
        })
    }

    /// Only tags and manifests last updated more than `ago` ago.
    #[must_use]
    pub fn ago(mut self, ago: Duration) -> PurgeOptions {
        self.ago = ago;
        self
    }

    /// Keep the `keep` most recently updated selected tags of each repository.
    #[must_use]
    pub fn keep(mut self, keep: usize) -> PurgeOptions {
        self.keep = keep;
        self
    }

    /// Also delete the untagged manifests of the matching repositories (`true`).
    #[must_use]
    pub fn untagged(mut self, untagged: bool) -> PurgeOptions {
        self.untagged = untagged;
        self
    }

    /// Report without changing anything (`true`).
    #[must_use]
    pub fn dry_run(mut self, dry_run: bool) -> PurgeOptions {
        self.dry_run = dry_run;
        self
    }

    /// Unlock and delete locked tags and manifests (`true`) instead of skipping them.
    #[must_use]
    pub fn include_locked(mut self, include_locked: bool) -> PurgeOptions {
        self.include_locked = include_locked;
        self
    }
}

/// What a purge is to do in one repository.
struct Plan {
    /// Tags to untag, with the manifests they point at.
    untag: Vec<(String, Digest)>,
    /// Manifests to delete, referrers included.
    doomed: Vec<Digest>,
    /// Locked items skipped.
    locked: BTreeSet<Item>,
}

/// What a purge did, or in a dry run would do (U5), in one repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct RepositoryPurge {
    /// The repository.
    pub repository: String,
    /// The tags untagged, by name.
    pub tags_untagged: Vec<String>,
    /// The manifests deleted, referrers that went with them included, by digest.
    pub manifests_deleted: Vec<Digest>,
    /// The locked items skipped: tags, manifests, or the repository itself (U4).
    pub locked: Vec<Item>,
}

/// What a purge did, or in a dry run would do: every repository where it found something.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct PurgeReport {
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// The time the ages were measured from.
    pub ran_at: Timestamp,
    /// Per repository, in name order.
    pub repositories: Vec<RepositoryPurge>,
}

impl PurgeReport {
    /// Tags untagged in all repositories.
    #[must_use]
    pub fn tags_untagged(&self) -> usize {
        self.repositories
            .iter()
            .map(|r| r.tags_untagged.len())
            .sum()
    }

    /// Manifests deleted in all repositories.
    #[must_use]
    pub fn manifests_deleted(&self) -> usize {
        self.repositories
            .iter()
            .map(|r| r.manifests_deleted.len())
            .sum()
    }

    /// Locked items skipped in all repositories.
    #[must_use]
    pub fn locked(&self) -> usize {
        self.repositories.iter().map(|r| r.locked.len()).sum()
    }
}

/// Purges by filter; see [`Registry::purge`](crate::Registry::purge).
pub(crate) fn purge(core: &Core, options: &PurgeOptions) -> Result<PurgeReport> {
    if options.filters.is_empty() {
        return Err(Error::InvalidFilter {
            filter: String::new(),
            reason: "a purge needs at least one filter".into(),
        });
    }
    let ran_at = core.now();
    let cutoff = ran_at.saturating_sub(options.ago);
    let repositories = repositories_matching(core, &options.filters)?;
    let mut queue = repositories.iter().peekable();
    let mut report = PurgeReport {
        dry_run: options.dry_run,
        ran_at,
        repositories: Vec::new(),
    };
    while queue.peek().is_some() {
        let done = core.write(!options.dry_run, |b| {
            let mut done = Vec::new();
            let mut changes = 0;
            while changes < CHANGES_PER_TRANSACTION {
                let Some(repo) = queue.next() else { break };
                if let Some(purged) = b.purge_repository_by_filter(repo, options, cutoff)? {
                    changes += purged.tags_untagged.len() + purged.manifests_deleted.len();
                    done.push(purged);
                }
            }
            Ok(done)
        })?;
        report.repositories.extend(done);
    }
    Ok(report)
}

/// The live repositories that a filter's repository regex matches, in name order.
fn repositories_matching(core: &Core, filters: &[Filter]) -> Result<Vec<String>> {
    let snapshot = core.snapshot()?;
    let mut out = Vec::new();
    for row in snapshot.repositories()?.iter()? {
        let (name, record) = row?;
        let record: RepositoryRecord = decode("repositories", record.value())?;
        let name = name.value();
        if record.deleted.is_none() && filters.iter().any(|f| f.repository.is_match(name)) {
            out.push(name.to_owned());
        }
    }
    Ok(out)
}

impl Tx<'_> {
    /// Purges one repository; `None` if there was nothing to do or report.
    fn purge_repository_by_filter(
        &mut self,
        repo: &str,
        options: &PurgeOptions,
        cutoff: Timestamp,
    ) -> Result<Option<RepositoryPurge>> {
        if !is_live(&self.t, repo)? {
            return Ok(None);
        }
        let filters: Vec<&Filter> = options
            .filters
            .iter()
            .filter(|f| f.repository.is_match(repo))
            .collect();
        let tags = self.tags_to_purge(repo, &filters, options.keep, cutoff)?;
        // When each live manifest was last updated before this purge touched it.
        let updated_before = self.live_manifests(repo)?;
        // Whether the repository has a lock row at all: without one, no lock needs looking up.
        let has_locks = self.has_lock_rows(repo)?;
        let mut report = RepositoryPurge {
            repository: repo.to_owned(),
            tags_untagged: Vec::new(),
            manifests_deleted: Vec::new(),
            locked: Vec::new(),
        };
        if self
            .lock_blocking(repo, &Item::Repository, Need::Delete)?
            .is_some()
        {
            // Reported if the purge would change the repository but for the locks.
            let plan = self.plan(repo, tags, options.untagged, cutoff, &updated_before, false)?;
            if plan.untag.is_empty() && plan.doomed.is_empty() {
                return Ok(None);
            }
            report.locked.push(Item::Repository);
            return Ok(Some(report));
        }
        let check_locks = has_locks && !options.include_locked;
        let Plan {
            untag,
            doomed,
            locked,
        } = self.plan(
            repo,
            tags,
            options.untagged,
            cutoff,
            &updated_before,
            check_locks,
        )?;
        if has_locks {
            // With `include_locked`; the manifests' locks go with them.
            for (tag, _) in &untag {
                self.unlock(repo, &Item::Tag(tag.clone()))?;
            }
        }
        let going: HashSet<&Digest> = doomed.iter().collect();
        let mut untouched = BTreeSet::new();
        for (tag, digest) in &untag {
            if !going.contains(digest) {
                self.remove_tag(repo, tag, TagCause::Purge)?;
                untouched.insert(digest);
            }
        }
        self.remove_manifests(repo, &doomed, TagCause::Purge)?;
        // What lost a tag and stays counts as updated now, as after any untag.
        for digest in untouched {
            self.touch(repo, digest.as_str())?;
        }
        report.tags_untagged = untag.into_iter().map(|(tag, _)| tag).collect();
        report.manifests_deleted = doomed;
        report.tags_untagged.sort();
        report.manifests_deleted.sort();
        report.locked = locked.into_iter().collect();
        let idle = report.tags_untagged.is_empty()
            && report.manifests_deleted.is_empty()
            && report.locked.is_empty();
        Ok((!idle).then_some(report))
    }

    /// What a purge of `repo` does, planned before anything is changed so that the tags of a
    /// manifest that goes are removed with it rather than first: of the selected `tags`, those
    /// to untag; with `untagged`, the manifests to delete; and, with `check_locks`, the locked
    /// items skipped.
    fn plan(
        &self,
        repo: &str,
        tags: Vec<(String, Digest)>,
        untagged: bool,
        cutoff: Timestamp,
        updated_before: &HashMap<String, u64>,
        check_locks: bool,
    ) -> Result<Plan> {
        let mut locked = BTreeSet::new();
        let mut untag = Vec::new();
        for (tag, digest) in tags {
            let item = Item::Tag(tag.clone());
            if check_locks
                && locks_of(&self.t, repo, &item)?
                    .refuses(Need::Delete)
                    .is_some()
            {
                locked.insert(item);
            } else {
                untag.push((tag, digest));
            }
        }
        let mut doomed = Vec::new();
        if untagged {
            let mut losing: HashMap<&str, usize> = HashMap::new();
            for (_, digest) in &untag {
                *losing.entry(digest.as_str()).or_default() += 1;
            }
            let candidates = self.untagged_to_purge(repo, cutoff, updated_before, &losing)?;
            doomed = self.deletable(repo, candidates, check_locks, &mut locked)?;
        }
        Ok(Plan {
            untag,
            doomed,
            locked,
        })
    }

    /// The tags of `repo` a filter selects that were last updated before `cutoff`, without the
    /// `keep` most recently updated of them (U2), with the manifests they point at.
    fn tags_to_purge(
        &self,
        repo: &str,
        filters: &[&Filter],
        keep: usize,
        cutoff: Timestamp,
    ) -> Result<Vec<(String, Digest)>> {
        let mut selected = Vec::new();
        for row in self.t.tags.range((repo, "")..)? {
            let (key, value) = row?;
            let (r, tag) = key.value();
            if r != repo {
                break;
            }
            let (digest, updated) = value.value();
            if updated < cutoff.as_nanos() && filters.iter().any(|f| f.tag.is_match(tag)) {
                selected.push((updated, tag.to_owned(), Digest::stored(digest)?));
            }
        }
        // Newest first, so that the ones kept come first; names break ties.
        selected.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        Ok(selected
            .into_iter()
            .skip(keep)
            .map(|(_, tag, digest)| (tag, digest))
            .collect())
    }

    /// Every live manifest of `repo` with the time it was last updated (its
    /// `manifests_by_time` key), from one scan of the repository's rows.
    fn live_manifests(&self, repo: &str) -> Result<HashMap<String, u64>> {
        let mut out = HashMap::new();
        for row in self
            .t
            .manifests_by_time
            .range((repo, 0, "")..=(repo, u64::MAX, "\u{10ffff}"))?
        {
            let (key, _) = row?;
            let (_, updated, digest) = key.value();
            out.insert(digest.to_owned(), updated);
        }
        Ok(out)
    }

    /// Whether `repo` has any row in the `locks` table.
    fn has_lock_rows(&self, repo: &str) -> Result<bool> {
        match self.t.locks.range((repo, "")..)?.next() {
            Some(row) => Ok(row?.0.value().0 == repo),
            None => Ok(false),
        }
    }

    /// The subject of every live referrer of `repo`, from one scan of the repository's
    /// `referrers` rows (which hold exactly the live referrers and their subjects).
    fn subjects(&self, repo: &str) -> Result<HashMap<String, String>> {
        let mut out = HashMap::new();
        for row in self.t.referrers.range((repo, "", "")..)? {
            let (key, _) = row?;
            let (r, subject, referrer) = key.value();
            if r != repo {
                break;
            }
            out.insert(referrer.to_owned(), subject.to_owned());
        }
        Ok(out)
    }

    /// The live manifests of `repo` that are untagged once each loses `losing` of its tags,
    /// last updated before `cutoff` (by their time before this purge, `updated_before`, which
    /// holds every manifest live before it), that do not refer to a live subject (U3), oldest
    /// first.
    fn untagged_to_purge(
        &self,
        repo: &str,
        cutoff: Timestamp,
        updated_before: &HashMap<String, u64>,
        losing: &HashMap<&str, usize>,
    ) -> Result<Vec<Digest>> {
        // This purge has deleted no manifest yet: the live ones are those live before it.
        let subjects = self.subjects(repo)?;
        let mut out = Vec::new();
        for row in self
            .t
            .manifests_by_time
            .range((repo, 0, "")..=(repo, u64::MAX, "\u{10ffff}"))?
        {
            let (key, _) = row?;
            let (_, updated, digest) = key.value();
            let updated = updated_before.get(digest).copied().unwrap_or(updated);
            if updated >= cutoff.as_nanos() {
                continue;
            }
            let tagged = match losing.get(digest) {
                None => has_tags(&self.t, repo, digest)?,
                Some(&lost) => keys_under2(&self.t.manifest_tags, repo, digest)?.len() > lost,
            };
            if tagged {
                continue;
            }
            let held_by_subject = subjects
                .get(digest)
                .is_some_and(|subject| updated_before.contains_key(subject));
            if !held_by_subject {
                out.push(Digest::stored(digest)?);
            }
        }
        Ok(out)
    }

    /// Of `candidates`, what can be deleted together, with the referrers that go with them.
    /// A candidate stays if an index that stays lists it or one of its referrers (D5), or if
    /// a lock protects it, a referrer or one of their tags; those locked items go to `locked`.
    /// Keeping one candidate can keep an index, and with it more, so both rules apply until
    /// nothing changes; locks, with `check_locks`, are looked at only among what would
    /// otherwise go.
    fn deletable(
        &self,
        repo: &str,
        candidates: Vec<Digest>,
        check_locks: bool,
        locked: &mut BTreeSet<Item>,
    ) -> Result<Vec<Digest>> {
        let mut closures = Vec::with_capacity(candidates.len());
        for candidate in candidates {
            closures.push(self.doomed_by(repo, vec![candidate])?);
        }
        loop {
            while self.keep_listed(repo, &mut closures)? {}
            if !check_locks {
                break;
            }
            let before = closures.len();
            let mut free = Vec::with_capacity(before);
            for closure in closures {
                let in_the_way = self.locked_among(repo, &closure)?;
                if in_the_way.is_empty() {
                    free.push(closure);
                }
                locked.extend(in_the_way.into_iter().map(|(item, _)| item));
            }
            closures = free;
            if closures.len() == before {
                break;
            }
        }
        let mut seen = HashSet::new();
        Ok(closures
            .into_iter()
            .flatten()
            .filter(|d| seen.insert(d.clone()))
            .collect())
    }

    /// Drops the candidates (with their referrers) that an index outside all of them lists,
    /// live or, when deletes purge, in the bin (S17); tells whether it dropped any.
    fn keep_listed(&self, repo: &str, closures: &mut Vec<Vec<Digest>>) -> Result<bool> {
        let doomed: HashSet<&Digest> = closures.iter().flatten().collect();
        let bin = self.bin_if_purging(repo)?;
        let mut listed = Vec::with_capacity(closures.len());
        for closure in closures.iter() {
            let mut by_one_that_stays = false;
            for digest in closure {
                for index in keys_under2(&self.t.children, repo, digest.as_str())? {
                    by_one_that_stays |= !doomed.contains(&Digest::stored(&index)?);
                }
                by_one_that_stays |= bin
                    .as_ref()
                    .is_some_and(|bin| !bin.indexes_listing(digest.as_str(), false).is_empty());
            }
            listed.push(by_one_that_stays);
        }
        let dropped = listed.contains(&true);
        let mut listed = listed.into_iter();
        closures.retain(|_| !listed.next().unwrap_or(false));
        Ok(dropped)
    }
}
