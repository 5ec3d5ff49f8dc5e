//! `ocistore`: the administrative command line for an ocistore store, like `sqlite3` for
//! SQLite. It opens the store directory itself (the store must not be open elsewhere), and
//! mirrors the verbs of `az acr` where they fit. The `ocistore-cli` crate of the workspace.
//!
//! Every command prints a table by default and JSON with `--output json`; deleting commands
//! ask for confirmation on a terminal unless `--yes`; errors are one line on stderr and exit
//! code 1 (usage errors: 2).

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ocistore::{
    CollectOptions, Digest, FsckOptions, FsckReport, Item, Locks, ManifestQuery, OnConflict, Page,
    Phase, Problem, PurgeOptions, Registry, Repository, Restore, RetentionPolicy, SoftDeletePolicy,
    Timestamp, parse_ago,
};
use serde_json::{Value, json};

type Result<T, E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

/// The first line of `--help`: the library's description, as it was when this binary was built
/// from the library's own package (where `about` read `CARGO_PKG_DESCRIPTION`).
const ABOUT: &str = "The storage engine inside a container registry: repositories, manifests, \
                     tags and blobs on redb, with soft delete and an online collector";

/// Administer an ocistore store: inspect and clean a registry on its directory.
#[derive(Parser)]
#[command(name = "ocistore", version, about = ABOUT, long_about = None)]
struct Cli {
    /// The store's directory (it must hold a store already).
    #[arg(
        long,
        short = 's',
        global = true,
        env = "OCISTORE_STORE",
        value_name = "DIR"
    )]
    store: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Do not ask for confirmation before deleting.
    #[arg(long, short = 'y', global = true)]
    yes: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// A readable table.
    Table,
    /// JSON.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// List, delete and untag repositories.
    #[command(subcommand)]
    Repository(RepositoryCommand),
    /// List, delete and restore manifests; a tag's history.
    #[command(subcommand)]
    Manifest(ManifestCommand),
    /// The soft delete and retention policies.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Lock a repository (REPO), a manifest (REPO@DIGEST) or a tag (REPO:TAG) against deletes,
    /// or with --read-only against any change.
    Lock {
        /// REPO, REPO@DIGEST or REPO:TAG.
        target: String,
        /// Also refuse writes (tag moves, pushes), not only deletes.
        #[arg(long)]
        read_only: bool,
    },
    /// Unlock a repository (REPO), a manifest (REPO@DIGEST) or a tag (REPO:TAG).
    Unlock {
        /// REPO, REPO@DIGEST or REPO:TAG.
        target: String,
    },
    /// List the locked items of a repository.
    Locks {
        /// The repository.
        repository: String,
    },
    /// Untag old tags, and with --untagged delete untagged manifests, by filter and age.
    Purge(PurgeArgs),
    /// Collect garbage: remove blobs no manifest references and expired uploads.
    Gc {
        /// Report what would be removed without removing anything.
        #[arg(long)]
        dry_run: bool,
        /// Keep unreferenced blobs younger than this (e.g. 1h, 30m); the store's default otherwise.
        #[arg(long, value_parser = parse_duration)]
        grace: Option<Duration>,
    },
    /// Storage usage, per repository.
    Usage,
    /// Check the store; with --repair, remove stray files and dangling links.
    Fsck {
        /// Remove stray files and dangling links.
        #[arg(long)]
        repair: bool,
        /// Check sizes only, without hashing every blob.
        #[arg(long)]
        no_verify: bool,
        /// Repair only stray files older than this (e.g. 0s after a crash, 30m); the store's
        /// default (1h) otherwise. A file younger may belong to a write still in flight.
        #[arg(long, value_parser = parse_duration)]
        grace: Option<Duration>,
    },
    /// Run the retention clock: empty the expired recycle bin, apply the retention policy.
    #[command(subcommand)]
    Maintenance(MaintenanceCommand),
}

#[derive(Subcommand)]
enum RepositoryCommand {
    /// List the live repositories.
    List,
    /// List the repositories in the recycle bin.
    ListDeleted,
    /// Delete a repository with its manifests and tags.
    Delete {
        /// The repository.
        repository: String,
    },
    /// Remove a tag (REPO:TAG); the manifest stays.
    Untag {
        /// REPO:TAG.
        image: String,
    },
    /// List the tags of a repository.
    ShowTags {
        /// The repository.
        repository: String,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OrderBy {
    /// Oldest update first.
    #[value(name = "time_asc")]
    TimeAsc,
    /// Newest update first.
    #[value(name = "time_desc")]
    TimeDesc,
}

#[derive(Subcommand)]
enum ManifestCommand {
    /// List the manifests of a repository.
    ListMetadata {
        /// The repository.
        repository: String,
        /// Order by last update.
        #[arg(long, value_enum, default_value_t = OrderBy::TimeAsc)]
        orderby: OrderBy,
        /// Only manifests no tag points at.
        #[arg(long)]
        untagged: bool,
        /// Only manifests last updated before this: an RFC 3339 time, or an age like 2d3h.
        #[arg(long, value_parser = parse_before)]
        before: Option<Before>,
        /// At most this many.
        #[arg(long)]
        top: Option<usize>,
    },
    /// List the manifests of a repository in the recycle bin.
    ListDeleted {
        /// The repository.
        repository: String,
    },
    /// List the tags in the recycle bin: of a repository (REPO) or one tag (REPO:TAG).
    ListDeletedTags {
        /// REPO or REPO:TAG.
        target: String,
    },
    /// Restore a deleted manifest: REPO:TAG (its most recent), REPO:TAG -d DIGEST, or REPO -d DIGEST.
    Restore {
        /// REPO:TAG or REPO.
        target: String,
        /// The digest of the manifest to restore.
        #[arg(long, short = 'd')]
        digest: Option<String>,
        /// Move the tag even if it points at another manifest now.
        #[arg(long)]
        force: bool,
    },
    /// Delete a manifest (REPO@DIGEST, or REPO:TAG for the manifest the tag points at).
    Delete {
        /// REPO@DIGEST or REPO:TAG.
        image: String,
    },
    /// The history of a tag (REPO:TAG), newest first.
    History {
        /// REPO:TAG.
        image: String,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// The soft delete policy: deletes go to a recycle bin.
    #[command(subcommand)]
    SoftDelete(PolicyCommand),
    /// The retention policy for untagged manifests.
    #[command(subcommand)]
    Retention(PolicyCommand),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Show the policy.
    Show,
    /// Change the policy.
    Update(PolicyUpdate),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Status {
    Enabled,
    Disabled,
}

#[derive(Args)]
struct PolicyUpdate {
    /// Days: 1 to 90 for soft delete, 0 to 365 for retention.
    #[arg(long)]
    days: Option<u32>,
    /// Switch the policy on or off.
    #[arg(long, value_enum)]
    status: Option<Status>,
}

#[derive(Args)]
struct PurgeArgs {
    /// REPO-REGEX:TAG-REGEX; repeat for several.
    #[arg(long, required = true)]
    filter: Vec<String>,
    /// Only tags and manifests last updated longer ago than this, e.g. 1d3h6m; 0 for all.
    #[arg(long, default_value = "1d")]
    ago: String,
    /// Keep this many of the most recently updated matching tags of each repository.
    #[arg(long, default_value_t = 0)]
    keep: usize,
    /// Also delete the untagged manifests of the matching repositories.
    #[arg(long)]
    untagged: bool,
    /// Report what would be purged without changing anything.
    #[arg(long)]
    dry_run: bool,
    /// Unlock and delete locked tags and manifests instead of skipping them.
    #[arg(long)]
    include_locked: bool,
}

#[derive(Subcommand)]
enum MaintenanceCommand {
    /// Run autopurge and the retention policy now (with --due: only if its interval has passed).
    Run {
        /// Only if due.
        #[arg(long)]
        due: bool,
    },
}

/// `--before`: a time, or an age measured from now when the command runs.
#[derive(Clone, Copy)]
enum Before {
    At(Timestamp),
    Ago(Duration),
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (expected e.g. 1h, 30m, 2d)"))
}

fn parse_before(s: &str) -> Result<Before, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(Before::At(t.into()));
    }
    humantime::parse_duration(s)
        .map(Before::Ago)
        .map_err(|_| "expected an RFC 3339 time like 2026-01-31T12:00:00Z or an age like 2d".into())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            let message = e.to_string().replace('\n', " ");
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}

/// A plain error with a message.
fn fail<T>(message: impl Into<String>) -> Result<T> {
    Err(message.into().into())
}

fn open(store: Option<&Path>) -> Result<Registry> {
    let Some(dir) = store else {
        return fail("no store given: pass --store DIR or set OCISTORE_STORE");
    };
    if !dir.join("metadata.redb").is_file() {
        return fail(format!("no ocistore store at {}", dir.display()));
    }
    Ok(Registry::open(dir)?)
}

fn run(cli: &Cli) -> Result<ExitCode> {
    let registry = open(cli.store.as_deref())?;
    let out = Out { format: cli.output };
    let confirm = |what: &str| confirm(cli.yes, what);
    match &cli.command {
        Command::Repository(cmd) => repository(&registry, &out, cmd, &confirm)?,
        Command::Manifest(cmd) => manifest(&registry, &out, cmd, &confirm)?,
        Command::Config(cmd) => config(&registry, &out, cmd)?,
        Command::Lock { target, read_only } => {
            let locks = if *read_only {
                Locks::READ_ONLY
            } else {
                Locks::NO_DELETE
            };
            set_lock(&registry, &out, target, locks)?;
        }
        Command::Unlock { target } => set_lock(&registry, &out, target, Locks::UNLOCKED)?,
        Command::Locks { repository } => {
            let repo = live_repository(&registry, repository)?;
            let items = repo.locked_items()?;
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|(item, locks)| {
                    vec![
                        item_kind(item).to_owned(),
                        item_name(repository, item),
                        locks.delete_enabled.to_string(),
                        locks.write_enabled.to_string(),
                    ]
                })
                .collect();
            out.emit(
                &["KIND", "ITEM", "DELETE ENABLED", "WRITE ENABLED"],
                rows,
                Value::Array(
                    items
                        .iter()
                        .map(|(item, locks)| {
                            json!({
                                "kind": item_kind(item),
                                "item": item_name(repository, item),
                                "delete_enabled": locks.delete_enabled,
                                "write_enabled": locks.write_enabled,
                            })
                        })
                        .collect(),
                ),
            );
        }
        Command::Purge(args) => purge(&registry, &out, args, &confirm)?,
        Command::Gc { dry_run, grace } => gc(&registry, &out, *dry_run, *grace)?,
        Command::Usage => usage(&registry, &out)?,
        Command::Fsck {
            repair,
            no_verify,
            grace,
        } => return fsck(&registry, &out, *repair, *no_verify, *grace),
        Command::Maintenance(MaintenanceCommand::Run { due }) => {
            let report = if *due {
                registry.run_due()?
            } else {
                Some(registry.run_now()?)
            };
            match report {
                None => out.pairs(vec![("ran", json!(false))]),
                Some(r) => out.pairs(vec![
                    ("ran", json!(true)),
                    ("ran_at", json!(r.ran_at.to_string())),
                    ("repositories_purged", json!(r.repositories)),
                    ("manifests_purged", json!(r.manifests)),
                    ("tags_purged", json!(r.tags)),
                    ("untagged_deleted", json!(r.untagged_deleted)),
                ]),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks before deleting: on a terminal, a y/n question; elsewhere, only `--yes` will do.
fn confirm(yes: bool, what: &str) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return fail("refusing to delete without --yes when not on a terminal");
    }
    eprint!("This will delete {what}. Are you sure you want to continue? (y/n): ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        fail("cancelled: nothing was deleted")
    }
}

/// How results are printed.
struct Out {
    format: Output,
}

impl Out {
    /// A list: a table with these headers, or the JSON value.
    fn emit(&self, headers: &[&str], rows: Vec<Vec<String>>, json: Value) {
        match self.format {
            Output::Json => self.json(&json),
            Output::Table => print_table(headers, &rows),
        }
    }

    /// A record: `key  value` lines, or a JSON object.
    fn pairs(&self, pairs: Vec<(&str, Value)>) {
        match self.format {
            Output::Json => {
                let object: serde_json::Map<String, Value> =
                    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                self.json(&Value::Object(object));
            }
            Output::Table => {
                let rows: Vec<Vec<String>> = pairs
                    .into_iter()
                    .map(|(k, v)| vec![k.replace('_', " "), plain(&v)])
                    .collect();
                print_table(&[], &rows);
            }
        }
    }

    fn json(&self, value: &Value) {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("a JSON value serializes")
        );
    }

    fn table(&self) -> bool {
        self.format == Output::Table
    }
}

/// A JSON value as a table cell.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(", "),
        v => v.to_string(),
    }
}

fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let columns = headers
        .len()
        .max(rows.iter().map(Vec::len).max().unwrap_or(0));
    let mut widths = vec![0; columns];
    for (i, h) in headers.iter().enumerate() {
        widths[i] = h.chars().count();
    }
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(cell);
            s.extend(std::iter::repeat_n(' ', widths[i] - cell.chars().count()));
        }
        println!("{}", s.trim_end());
    };
    if !headers.is_empty() {
        line(&mut headers.iter().copied());
        let rules: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        line(&mut rules.iter().map(String::as_str));
    }
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
}

/// What a target on the command line names.
enum Target {
    Repository(String),
    Tag(String, String),
    Manifest(String, Digest),
}

fn parse_target(s: &str) -> Result<Target> {
    if let Some((repo, digest)) = s.split_once('@') {
        return Ok(Target::Manifest(repo.to_owned(), Digest::parse(digest)?));
    }
    // Tags hold no '/' and repository names no ':'.
    match s.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => Ok(Target::Tag(repo.to_owned(), tag.to_owned())),
        _ => Ok(Target::Repository(s.to_owned())),
    }
}

fn tag_target(s: &str) -> Result<(String, String)> {
    match parse_target(s)? {
        Target::Tag(repo, tag) => Ok((repo, tag)),
        _ => fail(format!("expected REPO:TAG, got {s:?}")),
    }
}

/// A handle on a live repository, or an error naming it.
fn live_repository(registry: &Registry, name: &str) -> Result<Repository> {
    let repo = registry.repository(name)?;
    if !registry
        .repositories(&Page::all())?
        .iter()
        .any(|r| r == name)
    {
        return fail(format!("repository {name} unknown"));
    }
    Ok(repo)
}

fn item_kind(item: &Item) -> &'static str {
    match item {
        Item::Repository => "repository",
        Item::Manifest(_) => "manifest",
        Item::Tag(_) => "tag",
    }
}

fn item_name(repository: &str, item: &Item) -> String {
    match item {
        Item::Repository => repository.to_owned(),
        Item::Manifest(d) => format!("{repository}@{d}"),
        Item::Tag(t) => format!("{repository}:{t}"),
    }
}

fn ts(t: Timestamp) -> String {
    t.to_string()
}

fn opt_digest(d: Option<&Digest>) -> Value {
    d.map_or(Value::Null, |d| json!(d.to_string()))
}

fn repository(
    registry: &Registry,
    out: &Out,
    cmd: &RepositoryCommand,
    confirm: &dyn Fn(&str) -> Result<()>,
) -> Result<()> {
    match cmd {
        RepositoryCommand::List => {
            let names = registry.repositories(&Page::all())?;
            out.emit(
                &["REPOSITORY"],
                names.iter().map(|n| vec![n.clone()]).collect(),
                json!(names),
            );
        }
        RepositoryCommand::ListDeleted => {
            let deleted = registry.deleted_repositories()?;
            out.emit(
                &["REPOSITORY", "DELETED", "EXPIRES"],
                deleted
                    .iter()
                    .map(|r| vec![r.name.clone(), ts(r.deleted_at), ts(r.expires_at)])
                    .collect(),
                deleted
                    .iter()
                    .map(|r| {
                        json!({"name": r.name, "deleted_at": ts(r.deleted_at), "expires_at": ts(r.expires_at)})
                    })
                    .collect(),
            );
        }
        RepositoryCommand::Delete { repository } => {
            live_repository(registry, repository)?;
            confirm(&format!(
                "repository {repository} with all its manifests and tags"
            ))?;
            registry.delete_repository(repository)?;
            out.pairs(vec![("deleted", json!(repository))]);
        }
        RepositoryCommand::Untag { image } => {
            let (name, tag) = tag_target(image)?;
            let repo = live_repository(registry, &name)?;
            repo.resolve(&tag)?;
            confirm(&format!("tag {name}:{tag}"))?;
            repo.untag(&tag)?;
            out.pairs(vec![("untagged", json!(format!("{name}:{tag}")))]);
        }
        RepositoryCommand::ShowTags { repository } => {
            let repo = live_repository(registry, repository)?;
            let tags = repo.tags(&Page::all())?;
            out.emit(
                &["TAG", "DIGEST", "UPDATED"],
                tags.iter()
                    .map(|t| vec![t.name.clone(), t.digest.to_string(), ts(t.updated)])
                    .collect(),
                tags.iter()
                    .map(|t| json!({"name": t.name, "digest": t.digest.to_string(), "updated": ts(t.updated)}))
                    .collect(),
            );
        }
    }
    Ok(())
}

fn manifest(
    registry: &Registry,
    out: &Out,
    cmd: &ManifestCommand,
    confirm: &dyn Fn(&str) -> Result<()>,
) -> Result<()> {
    match cmd {
        ManifestCommand::ListMetadata {
            repository,
            orderby,
            untagged,
            before,
            top,
        } => {
            let repo = live_repository(registry, repository)?;
            let updated_before = before.map(|b| match b {
                Before::At(t) => t,
                Before::Ago(d) => Timestamp::from(SystemTime::now()).saturating_sub(d),
            });
            let manifests = repo.manifests(&ManifestQuery {
                descending: *orderby == OrderBy::TimeDesc,
                updated_before,
                untagged: *untagged,
                limit: *top,
            })?;
            out.emit(
                &["DIGEST", "TAGS", "SIZE", "CREATED", "UPDATED", "MEDIA TYPE"],
                manifests
                    .iter()
                    .map(|m| {
                        vec![
                            m.digest.to_string(),
                            m.tags.join(", "),
                            m.size.to_string(),
                            ts(m.created),
                            ts(m.updated),
                            m.media_type.clone(),
                        ]
                    })
                    .collect(),
                manifests
                    .iter()
                    .map(|m| {
                        json!({
                            "digest": m.digest.to_string(),
                            "tags": m.tags,
                            "size": m.size,
                            "created": ts(m.created),
                            "updated": ts(m.updated),
                            "media_type": m.media_type,
                            "artifact_type": m.artifact_type,
                            "subject": opt_digest(m.subject.as_ref()),
                        })
                    })
                    .collect(),
            );
        }
        ManifestCommand::ListDeleted { repository } => {
            let deleted = registry.repository(repository)?.deleted_manifests()?;
            out.emit(
                &["DIGEST", "TAGS", "SIZE", "DELETED", "EXPIRES"],
                deleted
                    .iter()
                    .map(|m| {
                        vec![
                            m.digest.to_string(),
                            m.tags.join(", "),
                            m.size.to_string(),
                            ts(m.deleted_at),
                            ts(m.expires_at),
                        ]
                    })
                    .collect(),
                deleted
                    .iter()
                    .map(|m| {
                        json!({
                            "digest": m.digest.to_string(),
                            "tags": m.tags,
                            "size": m.size,
                            "media_type": m.media_type,
                            "deleted_at": ts(m.deleted_at),
                            "expires_at": ts(m.expires_at),
                        })
                    })
                    .collect(),
            );
        }
        ManifestCommand::ListDeletedTags { target } => {
            let (name, tag) = match parse_target(target)? {
                Target::Repository(r) => (r, None),
                Target::Tag(r, t) => (r, Some(t)),
                Target::Manifest(..) => {
                    return fail(format!("expected REPO or REPO:TAG, got {target:?}"));
                }
            };
            let deleted = registry.repository(&name)?.deleted_tags(tag.as_deref())?;
            out.emit(
                &["TAG", "DIGEST", "DELETED", "EXPIRES"],
                deleted
                    .iter()
                    .map(|t| {
                        vec![
                            t.tag.clone(),
                            t.digest.to_string(),
                            ts(t.deleted_at),
                            ts(t.expires_at),
                        ]
                    })
                    .collect(),
                deleted
                    .iter()
                    .map(|t| {
                        json!({
                            "tag": t.tag,
                            "digest": t.digest.to_string(),
                            "deleted_at": ts(t.deleted_at),
                            "expires_at": ts(t.expires_at),
                        })
                    })
                    .collect(),
            );
        }
        ManifestCommand::Restore {
            target,
            digest,
            force,
        } => {
            let digest = digest.as_deref().map(Digest::parse).transpose()?;
            let (name, tag) = match parse_target(target)? {
                Target::Repository(r) => (r, None),
                Target::Tag(r, t) => (r, Some(t)),
                Target::Manifest(..) => {
                    return fail(format!(
                        "expected REPO:TAG or REPO with -d DIGEST, got {target:?}"
                    ));
                }
            };
            let what = match (&tag, &digest) {
                (Some(t), None) => Restore::Tag(t),
                (None, Some(d)) => Restore::Digest(d),
                (Some(t), Some(d)) => Restore::TagAndDigest(t, d),
                (None, None) => return fail("restore needs REPO:TAG, or -d DIGEST"),
            };
            let on_conflict = if *force {
                OnConflict::MoveTag
            } else {
                OnConflict::Refuse
            };
            let restored = registry.repository(&name)?.restore(what, on_conflict)?;
            out.pairs(vec![
                ("repository", json!(name)),
                ("tag", json!(tag)),
                ("restored", json!(restored.to_string())),
            ]);
        }
        ManifestCommand::Delete { image } => {
            let (name, reference) = match parse_target(image)? {
                Target::Manifest(r, d) => (r, d.to_string()),
                Target::Tag(r, t) => (r, t),
                Target::Repository(_) => {
                    return fail(format!("expected REPO@DIGEST or REPO:TAG, got {image:?}"));
                }
            };
            let repo = live_repository(registry, &name)?;
            let manifest = repo.manifest(&reference)?;
            confirm(&format!(
                "manifest {name}@{} and every tag pointing at it",
                manifest.digest
            ))?;
            let deleted = repo.delete_manifest(manifest.digest.as_str())?;
            let deleted: Vec<String> = deleted.iter().map(ToString::to_string).collect();
            out.emit(
                &["DELETED"],
                deleted
                    .iter()
                    .map(|d| vec![format!("{name}@{d}")])
                    .collect(),
                json!({"repository": name, "deleted": deleted}),
            );
        }
        ManifestCommand::History { image } => {
            let (name, tag) = tag_target(image)?;
            let events = registry.repository(&name)?.tag_history(&tag)?;
            let cause = |e: &ocistore::TagEvent| {
                serde_json::to_value(e.cause)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            };
            out.emit(
                &["AT", "CAUSE", "FROM", "TO"],
                events
                    .iter()
                    .map(|e| {
                        vec![
                            ts(e.at),
                            cause(e),
                            e.from.as_ref().map_or("-".into(), ToString::to_string),
                            e.to.as_ref().map_or("-".into(), ToString::to_string),
                        ]
                    })
                    .collect(),
                events
                    .iter()
                    .map(|e| {
                        json!({
                            "tag": e.tag,
                            "at": ts(e.at),
                            "cause": cause(e),
                            "from": opt_digest(e.from.as_ref()),
                            "to": opt_digest(e.to.as_ref()),
                        })
                    })
                    .collect(),
            );
        }
    }
    Ok(())
}

fn config(registry: &Registry, out: &Out, cmd: &ConfigCommand) -> Result<()> {
    match cmd {
        ConfigCommand::SoftDelete(cmd) => {
            if let PolicyCommand::Update(u) = cmd {
                let mut policy = registry.soft_delete_policy()?;
                if let Some(days) = u.days {
                    policy.retention_days = days;
                }
                if let Some(status) = u.status {
                    policy.enabled = status == Status::Enabled;
                }
                registry.set_soft_delete_policy(policy)?;
            }
            let SoftDeletePolicy {
                enabled,
                retention_days,
                ..
            } = registry.soft_delete_policy()?;
            out.pairs(vec![
                ("status", json!(status_name(enabled))),
                ("retention_days", json!(retention_days)),
            ]);
        }
        ConfigCommand::Retention(cmd) => {
            if let PolicyCommand::Update(u) = cmd {
                let mut policy = registry.retention_policy()?;
                if let Some(days) = u.days {
                    policy.days = days;
                }
                if let Some(status) = u.status {
                    policy.enabled = status == Status::Enabled;
                }
                registry.set_retention_policy(policy)?;
            }
            let RetentionPolicy { enabled, days, .. } = registry.retention_policy()?;
            let since = registry.retention_enabled_at()?;
            out.pairs(vec![
                ("status", json!(status_name(enabled))),
                ("days", json!(days)),
                ("enabled_at", since.map_or(Value::Null, |t| json!(ts(t)))),
            ]);
        }
    }
    Ok(())
}

fn status_name(enabled: bool) -> &'static str {
    if enabled { "enabled" } else { "disabled" }
}

fn set_lock(registry: &Registry, out: &Out, target: &str, locks: Locks) -> Result<()> {
    let (name, item) = match parse_target(target)? {
        Target::Repository(r) => (r, Item::Repository),
        Target::Tag(r, t) => (r, Item::Tag(t)),
        Target::Manifest(r, d) => (r, Item::Manifest(d)),
    };
    let repo = live_repository(registry, &name)?;
    repo.set_locks(&item, locks)?;
    let locks = repo.locks(&item)?;
    out.pairs(vec![
        ("kind", json!(item_kind(&item))),
        ("item", json!(item_name(&name, &item))),
        ("delete_enabled", json!(locks.delete_enabled)),
        ("write_enabled", json!(locks.write_enabled)),
    ]);
    Ok(())
}

/// A spinner on stderr when it is a terminal; hidden otherwise.
fn spinner(message: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("a valid template"),
    );
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

fn purge(
    registry: &Registry,
    out: &Out,
    args: &PurgeArgs,
    confirm: &dyn Fn(&str) -> Result<()>,
) -> Result<()> {
    let mut options = PurgeOptions::new(&args.filter)?;
    options.ago = parse_ago(&args.ago)?;
    options.keep = args.keep;
    options.untagged = args.untagged;
    options.dry_run = args.dry_run;
    options.include_locked = args.include_locked;
    if !args.dry_run {
        confirm(&format!(
            "the tags{} matching {} older than {}",
            if args.untagged {
                " and untagged manifests"
            } else {
                ""
            },
            args.filter.join(" "),
            args.ago
        ))?;
    }
    let bar = spinner("purging");
    let report = registry.purge(&options);
    bar.finish_and_clear();
    let report = report?;
    if out.table() {
        let mut rows = Vec::new();
        for r in &report.repositories {
            for t in &r.tags_untagged {
                rows.push(vec!["untag".into(), format!("{}:{t}", r.repository)]);
            }
            for d in &r.manifests_deleted {
                rows.push(vec!["delete".into(), format!("{}@{d}", r.repository)]);
            }
            for i in &r.locked {
                rows.push(vec!["locked".into(), item_name(&r.repository, i)]);
            }
        }
        print_table(&["ACTION", "ITEM"], &rows);
        println!(
            "{}{} tags untagged, {} manifests deleted, {} locked items skipped",
            if report.dry_run { "dry run: " } else { "" },
            report.tags_untagged(),
            report.manifests_deleted(),
            report.locked()
        );
    } else {
        out.json(&json!({
            "dry_run": report.dry_run,
            "ran_at": ts(report.ran_at),
            "tags_untagged": report.tags_untagged(),
            "manifests_deleted": report.manifests_deleted(),
            "locked": report.locked(),
            "repositories": report.repositories.iter().map(|r| json!({
                "repository": r.repository,
                "tags_untagged": r.tags_untagged,
                "manifests_deleted": r.manifests_deleted.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "locked": r.locked.iter().map(|i| item_name(&r.repository, i)).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }));
    }
    Ok(())
}

fn gc(registry: &Registry, out: &Out, dry_run: bool, grace: Option<Duration>) -> Result<()> {
    let bar = spinner("collecting");
    let report = registry.collect_with_progress(
        &CollectOptions {
            dry_run,
            grace_period: grace,
        },
        |p| {
            let phase = match p.phase {
                Phase::Mark => "marking: repositories",
                Phase::Links => "sweeping: links",
                Phase::Blobs => "sweeping: blobs",
                Phase::Uploads => "sweeping: uploads",
                _ => "collecting",
            };
            bar.set_message(format!("{phase} {}", p.done));
        },
    );
    bar.finish_and_clear();
    let r = report?;
    out.pairs(vec![
        ("dry_run", json!(r.dry_run)),
        ("blobs_marked", json!(r.blobs_marked)),
        ("bytes_marked", json!(r.bytes_marked)),
        ("blobs_swept", json!(r.blobs_swept)),
        ("bytes_swept", json!(r.bytes_swept)),
        ("blobs_kept", json!(r.blobs_kept)),
        ("bytes_kept", json!(r.bytes_kept)),
        ("links_removed", json!(r.links_removed)),
        ("uploads_removed", json!(r.uploads_removed)),
        ("mark_ms", json!(r.mark_time.as_millis() as u64)),
        ("sweep_ms", json!(r.sweep_time.as_millis() as u64)),
    ]);
    Ok(())
}

fn usage(registry: &Registry, out: &Out) -> Result<()> {
    let u = registry.usage()?;
    if out.table() {
        print_table(
            &[
                "REPOSITORY",
                "DELETED",
                "BLOBS",
                "BYTES",
                "UNIQUE",
                "SHARED",
            ],
            &u.repositories
                .iter()
                .map(|r| {
                    vec![
                        r.name.clone(),
                        r.deleted.to_string(),
                        r.blobs.to_string(),
                        r.bytes.to_string(),
                        r.unique_bytes.to_string(),
                        r.shared_bytes.to_string(),
                    ]
                })
                .collect::<Vec<_>>(),
        );
        println!(
            "total: {} blobs, {} bytes; {} bytes held by the recycle bin, {} bytes garbage",
            u.blobs, u.bytes, u.soft_deleted_bytes, u.garbage_bytes
        );
    } else {
        out.json(&json!({
            "blobs": u.blobs,
            "bytes": u.bytes,
            "soft_deleted_bytes": u.soft_deleted_bytes,
            "garbage_bytes": u.garbage_bytes,
            "repositories": u.repositories.iter().map(|r| json!({
                "name": r.name,
                "deleted": r.deleted,
                "blobs": r.blobs,
                "bytes": r.bytes,
                "unique_bytes": r.unique_bytes,
                "shared_bytes": r.shared_bytes,
            })).collect::<Vec<_>>(),
        }));
    }
    Ok(())
}

/// A problem as a kind, the thing it is about, and details.
fn problem(p: &Problem) -> (&'static str, String, String) {
    match p {
        Problem::MissingReference {
            repository,
            manifest,
            reference,
        } => (
            "missing_reference",
            format!("{repository}@{manifest}"),
            format!("references {reference}"),
        ),
        Problem::DanglingLink { repository, digest } => (
            "dangling_link",
            format!("{repository}@{digest}"),
            "link without a blob".into(),
        ),
        Problem::MissingBlobFile { digest } => {
            ("missing_blob_file", digest.to_string(), "file gone".into())
        }
        Problem::CorruptBlob { digest, actual } => (
            "corrupt_blob",
            digest.to_string(),
            format!("hashes to {actual}"),
        ),
        Problem::SizeMismatch {
            digest,
            recorded,
            actual,
        } => (
            "size_mismatch",
            digest.to_string(),
            format!("recorded {recorded} bytes, file has {actual}"),
        ),
        Problem::StrayBlobFile { path } => {
            ("stray_blob_file", path.display().to_string(), String::new())
        }
        Problem::TempFile { path } => ("temp_file", path.display().to_string(), String::new()),
        Problem::StrayUpload { path } => {
            ("stray_upload", path.display().to_string(), String::new())
        }
        p => ("other", format!("{p:?}"), String::new()),
    }
}

/// Why the problems a check leaves were not repaired, one line each.
fn not_repaired_reasons(r: &FsckReport, repair: bool, grace: Option<Duration>) -> Vec<String> {
    let fixable = r.problems.iter().filter(|p| p.is_repairable()).count() as u64;
    let unfixable = r.problems.len() as u64 - fixable;
    let mut reasons = Vec::new();
    if !repair && fixable > 0 {
        reasons.push(format!(
            "{fixable} of them (stray files, dangling links) would be removed by fsck --repair"
        ));
    }
    if r.too_recent > 0 {
        let grace = grace.map_or_else(
            || "the default, 1h".to_owned(),
            |g| humantime::format_duration(g).to_string(),
        );
        reasons.push(format!(
            "{} stray files kept: modified within the grace period ({grace}), a write may \
             still be about to commit them; run again later, or with --grace 0s if nothing is \
             writing to the store (as after a crash)",
            r.too_recent
        ));
    }
    if unfixable > 0 {
        reasons.push(format!(
            "{unfixable} of them cannot be repaired by fsck (missing or corrupt blob files, \
             wrong sizes, missing references): push the blobs again, or delete the manifests \
             naming them"
        ));
    }
    let kept = r.kept_named;
    if kept > 0 {
        reasons.push(format!(
            "{kept} stray blob files kept: a link or a manifest still names them, and they hold \
             the only copy of those blobs; push them again"
        ));
    }
    reasons
}

fn fsck(
    registry: &Registry,
    out: &Out,
    repair: bool,
    no_verify: bool,
    grace: Option<Duration>,
) -> Result<ExitCode> {
    let bar = spinner("checking");
    let report = registry.fsck(&FsckOptions {
        repair,
        verify_digests: !no_verify,
        grace_period: grace,
    });
    bar.finish_and_clear();
    let r = report?;
    let problems: Vec<_> = r.problems.iter().map(problem).collect();
    if out.table() {
        if !problems.is_empty() {
            print_table(
                &["PROBLEM", "WHERE", "DETAIL"],
                &problems
                    .iter()
                    .map(|(k, w, d)| vec![(*k).to_owned(), w.clone(), d.clone()])
                    .collect::<Vec<_>>(),
            );
        }
        let too_recent = if r.too_recent > 0 {
            format!(", {} too recent to repair", r.too_recent)
        } else {
            String::new()
        };
        println!(
            "checked {} manifests and {} blobs: {} problems, {} repaired{too_recent}",
            r.manifests_checked,
            r.blobs_checked,
            r.problems.len(),
            r.repaired
        );
    } else {
        out.json(&json!({
            "manifests_checked": r.manifests_checked,
            "blobs_checked": r.blobs_checked,
            "repaired": r.repaired,
            "too_recent": r.too_recent,
            "problems": problems.iter().map(|(k, w, d)| json!({"kind": k, "where": w, "detail": d})).collect::<Vec<_>>(),
        }));
    }
    let left = (r.problems.len() as u64).saturating_sub(r.repaired);
    if left > 0 {
        eprintln!("error: fsck found {left} problems not repaired:");
        for reason in not_repaired_reasons(&r, repair, grace) {
            eprintln!("  {reason}");
        }
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
