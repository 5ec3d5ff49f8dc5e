//! Purge by filter, as `acr purge` does it (SPEC U1–U6): untag the old tags that match a
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

use redb::{ReadableDatabase, ReadableTable};
use regex::{Regex, RegexBuilder};

use crate::batch::Batch;
use crate::clock::Timestamp;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::lock::{Item, Need};
use crate::manifest::has_tags;
use crate::registry::Registry;
use crate::repository::{RepositoryRecord, is_live};
use crate::tables::{REPOSITORIES, decode, keys_under2};
use crate::tag::TagCause;

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
            RegexBuilder::new(&format!(r"\A(?:{part})\z"))
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| invalid(format!("the {what} regex: {e}")))
        };
        Ok(Filter {
            text: filter.to_owned(),
            repository: compile(repository, "repository")?,
            tag: compile(tag, "tag")?,
        })
    }

    /// The filter as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the filter selects `tag` of `repository`.
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
/// ```
/// use std::time::Duration;
/// use ocistore::parse_ago;
/// assert_eq!(parse_ago("1d3h6m")?, Duration::from_secs(86_400 + 3 * 3600 + 6 * 60));
/// assert_eq!(parse_ago("30m")?, Duration::from_secs(1800));
/// assert!(parse_ago("1 day").is_err());
/// # Ok::<(), ocistore::Error>(())
/// ```
pub fn parse_ago(ago: &str) -> Result<Duration> {
    let invalid = |reason| Error::InvalidSetting {
        setting: "purge ago",
        value: ago.to_owned(),
        reason,
    };
    const FORM: &str = "must be whole numbers with units d, h, m, s, ms, us or ns, like 1d3h6m";
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
/// defaults: tags older than one day, none kept, untagged manifests left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeOptions {
    /// The filters; a tag is selected if any filter matches its repository and its name.
    pub filters: Vec<Filter>,
    /// Only tags, and manifests, last updated more than this long ago.
    pub ago: Duration,
    /// How many of the selected tags of each repository to keep: the most recently updated.
    pub keep: usize,
    /// Also delete the untagged manifests of the matching repositories (U3).
    pub untagged: bool,
    /// Report without changing anything (U5).
    pub dry_run: bool,
    /// Unlock and delete locked tags and manifests instead of skipping them (U4). A locked
    /// repository is skipped all the same: its lock is the operator's, not the purge's to lift.
    pub include_locked: bool,
}

impl PurgeOptions {
    /// Options with `filters` parsed, and the defaults for the rest.
    pub fn new<S: AsRef<str>>(filters: impl IntoIterator<Item = S>) -> Result<PurgeOptions> {
        Ok(PurgeOptions {
            filters: filters
                .into_iter()
                .map(|f| Filter::parse(f.as_ref()))
                .collect::<Result<_>>()?,
            ago: Duration::from_secs(86_400),
            keep: 0,
            untagged: false,
            dry_run: false,
            include_locked: false,
        })
    }
}

/// What a purge did, or in a dry run would do (U5), in one repository.
#[derive(Debug, Clone, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
    pub fn tags_untagged(&self) -> usize {
        self.repositories
            .iter()
            .map(|r| r.tags_untagged.len())
            .sum()
    }

    /// Manifests deleted in all repositories.
    pub fn manifests_deleted(&self) -> usize {
        self.repositories
            .iter()
            .map(|r| r.manifests_deleted.len())
            .sum()
    }

    /// Locked items skipped in all repositories.
    pub fn locked(&self) -> usize {
        self.repositories.iter().map(|r| r.locked.len()).sum()
    }
}

impl Registry {
    /// Purges by filter (U1–U6): in every live repository a filter matches, untags the tags
    /// it matches that were last updated before now − `ago`, except the `keep` most recently
    /// updated of them; with `untagged`, then deletes the untagged manifests last updated
    /// before now − `ago`, except children of an index that stays and referrers of a live
    /// subject. Locked items are skipped and reported unless `include_locked`.
    ///
    /// A manifest this purge untags is judged by when it was last updated before the purge,
    /// so one run removes old tags and the images they held.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use ocistore::{PurgeOptions, Registry};
    /// let registry = Registry::open(dir.path())?;
    /// let mut options = PurgeOptions::new(["hello-world:.*"])?;
    /// options.dry_run = true;
    /// let report = registry.purge(&options)?;
    /// assert_eq!(report.tags_untagged(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn purge(&self, options: &PurgeOptions) -> Result<PurgeReport> {
        if options.filters.is_empty() {
            return Err(Error::InvalidFilter {
                filter: String::new(),
                reason: "a purge needs at least one filter".into(),
            });
        }
        let ran_at = self.now();
        let cutoff = ran_at.saturating_sub(options.ago);
        let repositories = self.repositories_matching(&options.filters)?;
        let mut queue = repositories.iter().peekable();
        let mut report = PurgeReport {
            dry_run: options.dry_run,
            ran_at,
            repositories: Vec::new(),
        };
        while queue.peek().is_some() {
            let done = self.write(!options.dry_run, |b| {
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
    fn repositories_matching(&self, filters: &[Filter]) -> Result<Vec<String>> {
        let txn = self.inner.db.begin_read()?;
        let mut out = Vec::new();
        for row in txn.open_table(REPOSITORIES)?.iter()? {
            let (name, record) = row?;
            let record: RepositoryRecord = decode("repositories", record.value())?;
            let name = name.value();
            if record.deleted.is_none() && filters.iter().any(|f| f.repository.is_match(name)) {
                out.push(name.to_owned());
            }
        }
        Ok(out)
    }
}

impl Batch<'_> {
    /// Purges one repository; `None` if there was nothing to do or report.
    fn purge_repository_by_filter(
        &mut self,
        repo: &str,
        options: &PurgeOptions,
        cutoff: Timestamp,
    ) -> Result<Option<RepositoryPurge>> {
        if !is_live(&self.t.repositories, repo)? {
            return Ok(None);
        }
        let filters: Vec<&Filter> = options
            .filters
            .iter()
            .filter(|f| f.repository.is_match(repo))
            .collect();
        let tags = self.tags_to_purge(repo, &filters, options.keep, cutoff)?;
        // When each manifest was last updated before this purge touched it.
        let mut updated_before: HashMap<Digest, Timestamp> = HashMap::new();
        for (_, digest) in &tags {
            if let Some(record) = self.record(repo, digest.as_str())? {
                updated_before.insert(digest.clone(), record.updated);
            }
        }
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
            // Reported if the purge would change it but for the locks (U4).
            let busy = !tags.is_empty()
                || (options.untagged && {
                    let candidates = self.untagged_to_purge(repo, cutoff, &updated_before)?;
                    !self
                        .deletable(repo, candidates, true, &mut BTreeSet::new())?
                        .is_empty()
                });
            if !busy {
                return Ok(None);
            }
            report.locked.push(Item::Repository);
            return Ok(Some(report));
        }
        let mut locked = BTreeSet::new();
        for (tag, _) in tags {
            let item = Item::Tag(tag.clone());
            if self.locks_of(repo, &item)?.refuses(Need::Delete).is_some() {
                if !options.include_locked {
                    locked.insert(item);
                    continue;
                }
                self.unlock(repo, &item)?;
            }
            self.drop_tag(repo, &tag, TagCause::Purge)?;
            report.tags_untagged.push(tag);
        }
        if options.untagged {
            let candidates = self.untagged_to_purge(repo, cutoff, &updated_before)?;
            let doomed = self.deletable(repo, candidates, options.include_locked, &mut locked)?;
            self.remove_manifests(repo, &doomed, TagCause::Purge)?;
            report.manifests_deleted = doomed;
        }
        report.tags_untagged.sort();
        report.manifests_deleted.sort();
        report.locked = locked.into_iter().collect();
        let idle = report.tags_untagged.is_empty()
            && report.manifests_deleted.is_empty()
            && report.locked.is_empty();
        Ok((!idle).then_some(report))
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

    /// The live untagged manifests of `repo` last updated before `cutoff` (by their time
    /// before this purge) that do not refer to a live subject (U3), oldest first.
    fn untagged_to_purge(
        &self,
        repo: &str,
        cutoff: Timestamp,
        updated_before: &HashMap<Digest, Timestamp>,
    ) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for row in self
            .t
            .manifests_by_time
            .range((repo, 0, "")..=(repo, u64::MAX, "\u{10ffff}"))?
        {
            let (key, _) = row?;
            let (_, updated, digest) = key.value();
            if has_tags(&self.t.manifest_tags, repo, digest)? {
                continue;
            }
            let digest = Digest::stored(digest)?;
            let updated = updated_before
                .get(&digest)
                .copied()
                .unwrap_or(Timestamp::from_nanos(updated));
            if updated >= cutoff {
                continue;
            }
            let Some(record) = self.record(repo, digest.as_str())? else {
                continue;
            };
            let held_by_subject = match &record.subject {
                Some(subject) => self
                    .record(repo, subject.as_str())?
                    .is_some_and(|s| s.deleted.is_none()),
                None => false,
            };
            if !held_by_subject {
                out.push(digest);
            }
        }
        Ok(out)
    }

    /// Of `candidates`, what can be deleted together, with the referrers that go with them:
    /// a candidate stays if an index that stays lists it or one of its referrers (D5), or if
    /// a lock protects it, a referrer or one of their tags (the locked items go to `locked`).
    /// Only what would go but for a lock counts as locked: a locked child of an index that
    /// stays is not the purge's to delete, and is not reported (U4).
    fn deletable(
        &self,
        repo: &str,
        candidates: Vec<Digest>,
        include_locked: bool,
        locked: &mut BTreeSet<Item>,
    ) -> Result<Vec<Digest>> {
        let mut closures: Vec<(Digest, Vec<Digest>)> = Vec::new();
        for candidate in candidates {
            let closure = self.doomed_by(repo, vec![candidate.clone()])?;
            closures.push((candidate, closure));
        }
        self.keep_listed(repo, &mut closures)?;
        if !include_locked {
            let mut unlocked = Vec::with_capacity(closures.len());
            for (candidate, closure) in closures {
                let mut blocked = false;
                for digest in &closure {
                    let tags = keys_under2(&self.t.manifest_tags, repo, digest.as_str())?;
                    let items = std::iter::once(Item::Manifest(digest.clone()))
                        .chain(tags.into_iter().map(Item::Tag));
                    for item in items {
                        if self.locks_of(repo, &item)?.refuses(Need::Delete).is_some() {
                            locked.insert(item);
                            blocked = true;
                        }
                    }
                }
                if !blocked {
                    unlocked.push((candidate, closure));
                }
            }
            closures = unlocked;
            // What a locked index lists stays with it.
            self.keep_listed(repo, &mut closures)?;
        }
        let mut seen = HashSet::new();
        Ok(closures
            .into_iter()
            .flat_map(|(_, closure)| closure)
            .filter(|d| seen.insert(d.clone()))
            .collect())
    }

    /// Keeps (drops from `closures`) the candidates an index that stays lists, until there
    /// are none: keeping one can keep an index, and with it its children.
    fn keep_listed(&self, repo: &str, closures: &mut Vec<(Digest, Vec<Digest>)>) -> Result<()> {
        loop {
            let doomed: HashSet<&Digest> = closures.iter().flat_map(|(_, c)| c).collect();
            let mut listed = Vec::with_capacity(closures.len());
            for (_, closure) in closures.iter() {
                let mut by_one_that_stays = false;
                for digest in closure {
                    for index in keys_under2(&self.t.children, repo, digest.as_str())? {
                        by_one_that_stays |= !doomed.contains(&Digest::stored(&index)?);
                    }
                }
                listed.push(by_one_that_stays);
            }
            if !listed.contains(&true) {
                return Ok(());
            }
            let mut listed = listed.into_iter();
            closures.retain(|_| !listed.next().unwrap_or(false));
        }
    }
}
