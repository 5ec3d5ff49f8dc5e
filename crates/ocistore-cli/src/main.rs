//! `ocistore`: the administrative command line for an ocistore store, like `sqlite3` for
//! SQLite. It opens the store directory itself, beside a running `ocistore-server` or any other
//! process that has it open shared (M1), and mirrors the verbs of `az acr` where they fit. The
//! `ocistore-cli` crate of the workspace.
//!
//! Every command prints text by default and, with `--output json`, the library's own serde form
//! of what it read or did (an object around it only adds context); deleting commands ask for
//! confirmation on a terminal unless `--yes`; errors are one line on stderr and exit code 1
//! (usage errors: 2; a repository that is unknown, or in the recycle bin for a verb that needs it
//! live: 3). `--help` says so, with examples for every verb.
//!
//! Commands that only read open the store read-only, commands that write open it shared, each
//! for as long as the command runs (`--mode` forces one). A deleting command asks its question
//! with the store closed: it first opens the store to check what it would delete and to word
//! the question, closes it, asks, then opens it again to do it, and refuses if the answer to
//! the question would have changed in between.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ocistore::{
    CollectOptions, Digest, Error, FsckOptions, FsckReport, Item, Locks, ManifestQuery,
    ObjectStoreBlobs, OnConflict, OpenMode, Page, Phase, Problem, PurgeOptions, Registry,
    Repository, RepositoryState, Restore, Timestamp, parse_ago,
};
use serde::Serialize;
use serde_json::{Value, json};

type Result<T, E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

/// Exit code of a command whose repository is not live: unknown, or in the recycle bin where
/// the verb does not work there. Scripts test for a repository with it.
const EXIT_NOT_LIVE: u8 = 3;

const LONG_ABOUT: &str = "\
Administer an ocistore store: inspect and clean a container registry on its directory.

It opens the store directory itself, and works beside a running ocistore-server (which opens \
the store shared unless started with --mode exclusive): commands that only read open the \
store read-only, commands that write open it shared, each only while the command runs; \
--mode forces a mode. The verbs mirror those of `az acr` where they fit. Every command prints \
text by default and, with `--output json`, the library's own JSON form of what it read or did.

Deleting commands ask for confirmation on a terminal, and need `--yes` otherwise. The store \
is not held open while the question waits for an answer: the command checks what it would \
delete, closes the store, asks, then opens it again and deletes; if the answer to the question \
changed in between (a tag moved to another manifest, say), it deletes nothing and says so.";

const AFTER_HELP: &str = "\
Examples:
  $ export OCISTORE_STORE=/srv/registry
  $ ocistore repository list
  $ ocistore repository show team/app
  $ ocistore manifest show team/app:latest -o json
  $ ocistore purge --filter 'team/.*:.*' --ago 30d --untagged --dry-run
  $ ocistore --mode exclusive fsck --repair --grace 0s

Exit codes:
  0  success
  1  an error (one line on stderr); fsck: problems left unrepaired; the store held by a
     process that excludes this one (one that opened it exclusive, or any for --mode exclusive)
  2  bad usage: an unknown verb or flag, a value that does not parse
  3  the repository named is unknown, or in the recycle bin and the verb needs it live";

/// Administer an ocistore store: inspect and clean a registry on its directory.
#[derive(Parser)]
#[command(name = "ocistore", version, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
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
    /// Where the store's blobs live, if not in its directory: az://CONTAINER/PREFIX,
    /// s3://BUCKET/PREFIX or gs://BUCKET/PREFIX, options after `?` (endpoint, allow_http,
    /// region…), credentials from the environment as each cloud's tools read them.
    #[arg(long, global = true, env = "OCISTORE_BLOBS", value_name = "URL")]
    blobs: Option<String>,
    /// How to open the store: by default read-only for commands that only read, shared for
    /// those that write, beside other processes; exclusive needs the store alone.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "OCISTORE_MODE",
        default_value_t = Mode::Auto
    )]
    mode: Mode,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Read-only for commands that only read (shared if the store must first be recovered
    /// after a crash or upgraded), shared for commands that write.
    Auto,
    /// Read-only: commands that write are refused.
    ReadOnly,
    /// Shared with other processes, such as a running ocistore-server.
    Shared,
    /// Alone: refused while any other process has the store open.
    Exclusive,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Readable text: tables and `key  value` lines.
    Table,
    /// The library's JSON form of each report and listing.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Repositories: list, show, delete, untag; the repositories in the recycle bin.
    #[command(
        subcommand,
        after_help = "Examples:\n  $ ocistore repository list\n  $ ocistore repository show team/app"
    )]
    Repository(RepositoryCommand),
    /// Manifests: list, show, delete, restore, purge from the recycle bin; a tag's history.
    #[command(
        subcommand,
        after_help = "Examples:\n  $ ocistore manifest list-metadata team/app\n  $ ocistore manifest show team/app:v1"
    )]
    Manifest(ManifestCommand),
    /// The soft delete, retention and tag history retention policies.
    #[command(
        subcommand,
        after_help = "Examples:\n  $ ocistore config soft-delete show\n  $ ocistore config retention update --status enabled --days 30\n  $ ocistore config history-retention update --days 365"
    )]
    Config(ConfigCommand),
    /// Lock a repository, a manifest or a tag against deletes, or against any change.
    ///
    /// TARGET is REPO for the repository, REPO@DIGEST for a manifest or REPO:TAG for a tag. A
    /// lock refuses deletes (and untags); with --read-only it also refuses writes: tag moves,
    /// pushes. Purge skips locked items unless --include-locked.
    #[command(
        after_help = "Examples:\n  $ ocistore lock team/app:v1\n  $ ocistore lock team/app --read-only"
    )]
    Lock {
        /// REPO, REPO@DIGEST or REPO:TAG.
        target: String,
        /// Also refuse writes (tag moves, pushes), not only deletes.
        #[arg(long)]
        read_only: bool,
    },
    /// Unlock a repository (REPO), a manifest (REPO@DIGEST) or a tag (REPO:TAG).
    #[command(after_help = "Examples:\n  $ ocistore unlock team/app:v1")]
    Unlock {
        /// REPO, REPO@DIGEST or REPO:TAG.
        target: String,
    },
    /// List the locked items of a repository, with their locks.
    #[command(after_help = "Examples:\n  $ ocistore locks team/app")]
    Locks {
        /// The repository.
        repository: String,
    },
    /// Untag old tags, and with --untagged delete untagged manifests, by filter and age.
    ///
    /// A filter is REPO-REGEX:TAG-REGEX, as `az acr purge` takes it; both regular expressions
    /// must match whole names. Deletes follow the soft delete policy. After a y/n question,
    /// the age counts from when the question was asked: a tag pushed or moved while the
    /// question waited is not purged. Even a --dry-run opens the store shared: it runs the
    /// purge and rolls it back.
    #[command(
        after_help = "Examples:\n  $ ocistore purge --filter 'team/app:v.*' --ago 30d --keep 5 --dry-run\n  $ ocistore purge --filter 'team/.*:.*' --ago 0 --untagged --yes"
    )]
    Purge(PurgeArgs),
    /// Collect garbage: remove blobs no manifest references and expired uploads.
    ///
    /// Blobs younger than the grace period are kept: a push may be about to reference them.
    /// Blobs that manifests in the recycle bin reference are kept until the bin lets them go.
    #[command(after_help = "Examples:\n  $ ocistore gc --dry-run\n  $ ocistore gc --grace 0s")]
    Gc {
        /// Report what would be removed without removing anything.
        #[arg(long)]
        dry_run: bool,
        /// Keep unreferenced blobs younger than this (e.g. 1h, 30m); the store's default otherwise.
        #[arg(long, value_parser = parse_duration)]
        grace: Option<Duration>,
    },
    /// Storage usage: the store's, the recycle bin's, the garbage's, and per repository.
    #[command(after_help = "Examples:\n  $ ocistore usage\n  $ ocistore usage -o json")]
    Usage,
    /// Check the store; with --repair, remove stray files and dangling links.
    ///
    /// Exits 1 when problems are left unrepaired, saying why on stderr.
    #[command(
        after_help = "Examples:\n  $ ocistore fsck --no-verify\n  $ ocistore fsck --repair --grace 0s"
    )]
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
    #[command(
        subcommand,
        after_help = "Examples:\n  $ ocistore maintenance run\n  $ ocistore maintenance run --due"
    )]
    Maintenance(MaintenanceCommand),
}

#[derive(Subcommand)]
enum RepositoryCommand {
    /// List the live repositories.
    #[command(after_help = "Examples:\n  $ ocistore repository list")]
    List,
    /// List the repositories in the recycle bin, with when they expire.
    #[command(after_help = "Examples:\n  $ ocistore repository list-deleted")]
    ListDeleted,
    /// Show a repository: its state, tags, manifests, recycle bin, usage and locks.
    ///
    /// Works on a repository in the recycle bin too: its state says when it was deleted and
    /// when it expires.
    #[command(
        after_help = "Examples:\n  $ ocistore repository show team/app\n  $ ocistore repository show team/app -o json"
    )]
    Show {
        /// The repository.
        repository: String,
    },
    /// List the tags of a repository.
    #[command(after_help = "Examples:\n  $ ocistore repository show-tags team/app")]
    ShowTags {
        /// The repository.
        repository: String,
    },
    /// Delete a repository with its manifests and tags.
    ///
    /// With soft delete on, the repository goes to the recycle bin: a restore of anything in it
    /// brings it back. What was pushed into it while the y/n question waited goes with it.
    #[command(after_help = "Examples:\n  $ ocistore repository delete team/old --yes")]
    Delete {
        /// The repository.
        repository: String,
    },
    /// Remove a tag (REPO:TAG); the manifest stays.
    ///
    /// If the tag moved to another manifest while the y/n question waited, it is not removed.
    #[command(after_help = "Examples:\n  $ ocistore repository untag team/app:v1 --yes")]
    Untag {
        /// REPO:TAG.
        image: String,
    },
    /// Remove a repository from the recycle bin for good, before it expires.
    #[command(after_help = "Examples:\n  $ ocistore repository purge-deleted team/old --yes")]
    PurgeDeleted {
        /// The repository, in the recycle bin.
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
    /// List the manifests of a repository, with their tags.
    #[command(
        after_help = "Examples:\n  $ ocistore manifest list-metadata team/app --orderby time_desc --top 10\n  $ ocistore manifest list-metadata team/app --untagged --before 30d"
    )]
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
    /// Show a manifest (REPO:TAG or REPO@DIGEST): its metadata, tags, references and referrers.
    #[command(
        after_help = "Examples:\n  $ ocistore manifest show team/app:latest\n  $ ocistore manifest show team/app@sha256:2d11c501e5b69e60e18b0c3d8fee48c091691a97de41350c5cd604f7af8d52fc -o json"
    )]
    Show {
        /// REPO:TAG or REPO@DIGEST.
        image: String,
    },
    /// List the manifests of a repository in the recycle bin.
    ///
    /// Works inside a repository in the recycle bin too.
    #[command(after_help = "Examples:\n  $ ocistore manifest list-deleted team/app")]
    ListDeleted {
        /// The repository.
        repository: String,
    },
    /// List the tags in the recycle bin: of a repository (REPO) or one tag (REPO:TAG).
    ///
    /// Works inside a repository in the recycle bin too.
    #[command(
        after_help = "Examples:\n  $ ocistore manifest list-deleted-tags team/app\n  $ ocistore manifest list-deleted-tags team/app:v1"
    )]
    ListDeletedTags {
        /// REPO or REPO:TAG.
        target: String,
    },
    /// Restore a deleted manifest: REPO:TAG (its most recent), REPO:TAG -d DIGEST, or REPO -d DIGEST.
    ///
    /// Restoring into a repository in the recycle bin brings the repository back, holding only
    /// what was restored. A tag now on another manifest moves only with --force; the tag it
    /// overwrites goes to the recycle bin.
    #[command(
        after_help = "Examples:\n  $ ocistore manifest restore team/app:v1\n  $ ocistore manifest restore team/app -d sha256:2d11c501e5b69e60e18b0c3d8fee48c091691a97de41350c5cd604f7af8d52fc\n  $ ocistore manifest restore team/app:latest -d sha256:2d11c501e5b69e60e18b0c3d8fee48c091691a97de41350c5cd604f7af8d52fc --force"
    )]
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
    ///
    /// Its tags and its referrers go with it. With soft delete on, all of it goes to the
    /// recycle bin. If REPO:TAG moved to another manifest while the y/n question waited,
    /// nothing is deleted.
    #[command(after_help = "Examples:\n  $ ocistore manifest delete team/app:v1 --yes")]
    Delete {
        /// REPO@DIGEST or REPO:TAG.
        image: String,
    },
    /// Remove from the recycle bin for good: a manifest (REPO@DIGEST) or a tag's deletions (REPO:TAG).
    ///
    /// Works inside a repository in the recycle bin too.
    #[command(
        after_help = "Examples:\n  $ ocistore manifest purge-deleted team/app:v1 --yes\n  $ ocistore manifest purge-deleted team/app@sha256:2d11c501e5b69e60e18b0c3d8fee48c091691a97de41350c5cd604f7af8d52fc --yes"
    )]
    PurgeDeleted {
        /// REPO@DIGEST or REPO:TAG.
        image: String,
    },
    /// The history of a tag (REPO:TAG), newest first: every push, move, delete and restore.
    #[command(after_help = "Examples:\n  $ ocistore manifest history team/app:latest")]
    History {
        /// REPO:TAG.
        image: String,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// The soft delete policy: deletes go to a recycle bin for 1 to 90 days.
    #[command(
        subcommand,
        after_help = "Examples:\n  $ ocistore config soft-delete show\n  $ ocistore config soft-delete update --status enabled --days 14"
    )]
    SoftDelete(PolicyCommand),
    /// The retention policy: untagged manifests are deleted after 0 to 365 days.
    #[command(
        subcommand,
        after_help = "Examples:\n  $ ocistore config retention show\n  $ ocistore config retention update --status enabled --days 30"
    )]
    Retention(PolicyCommand),
    /// The tag history retention: history events are kept 0 (for ever) to 3650 days, 90 unless set.
    ///
    /// Maintenance runs remove the older events. With -o json it is `{"days": 90}`.
    #[command(
        subcommand,
        after_help = "Examples:\n  $ ocistore config history-retention show\n  $ ocistore config history-retention update --days 0\n  $ ocistore config history-retention show -o json\n  {\n    \"days\": 90\n  }"
    )]
    HistoryRetention(HistoryRetentionCommand),
}

/// The examples of `show` and `update`, which both policies share.
const POLICY_SHOW_EXAMPLES: &str =
    "Examples:\n  $ ocistore config soft-delete show\n  $ ocistore config retention show -o json";
const POLICY_UPDATE_EXAMPLES: &str = "Examples:\n  $ ocistore config soft-delete update --status enabled --days 14\n  $ ocistore config retention update --status disabled";

#[derive(Subcommand)]
enum PolicyCommand {
    /// Show the policy.
    #[command(after_help = POLICY_SHOW_EXAMPLES)]
    Show,
    /// Change the policy: what is not given stays as it is.
    #[command(after_help = POLICY_UPDATE_EXAMPLES)]
    Update(PolicyUpdate),
}

#[derive(Subcommand)]
enum HistoryRetentionCommand {
    /// Show how many days tag history is kept.
    #[command(
        after_help = "Examples:\n  $ ocistore config history-retention show\n  $ ocistore config history-retention show -o json"
    )]
    Show,
    /// Set how many days tag history is kept.
    #[command(
        after_help = "Examples:\n  $ ocistore config history-retention update --days 365\n  $ ocistore config history-retention update --days 0"
    )]
    Update {
        /// Days: 0 (keep for ever) to 3650.
        #[arg(long)]
        days: u32,
    },
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
    /// Report what would be purged without changing anything (the purge, rolled back).
    #[arg(long)]
    dry_run: bool,
    /// Unlock and delete locked tags and manifests instead of skipping them.
    #[arg(long)]
    include_locked: bool,
}

#[derive(Subcommand)]
enum MaintenanceCommand {
    /// Run autopurge and the retention policy now (with --due: only if its interval has passed).
    #[command(
        after_help = "Examples:\n  $ ocistore maintenance run\n  $ ocistore maintenance run --due"
    )]
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
            let not_live = matches!(
                e.downcast_ref::<Error>(),
                Some(Error::RepositoryUnknown { .. } | Error::RepositorySoftDeleted { .. })
            );
            ExitCode::from(if not_live { EXIT_NOT_LIVE } else { 1 })
        }
    }
}

/// A plain error with a message.
fn fail<T>(message: impl Into<String>) -> Result<T> {
    Err(message.into().into())
}

impl Command {
    /// Whether the command writes to the store: it then opens it shared, else read-only.
    /// Every command that asks writes.
    fn writes(&self) -> bool {
        self.asks()
            || match self {
                Command::Manifest(c) => matches!(c, ManifestCommand::Restore { .. }),
                Command::Config(c) => matches!(
                    c,
                    ConfigCommand::SoftDelete(PolicyCommand::Update(_))
                        | ConfigCommand::Retention(PolicyCommand::Update(_))
                        | ConfigCommand::HistoryRetention(HistoryRetentionCommand::Update { .. })
                ),
                // A dry run too: the library runs the purge in a transaction it rolls back.
                Command::Lock { .. }
                | Command::Unlock { .. }
                | Command::Purge(_)
                | Command::Maintenance(_) => true,
                Command::Gc { dry_run, .. } => !dry_run,
                Command::Fsck { repair, .. } => *repair,
                Command::Repository(_) | Command::Locks { .. } | Command::Usage => false,
            }
    }

    /// Whether the command asks before it deletes (unless `--yes`).
    fn asks(&self) -> bool {
        match self {
            Command::Repository(c) => matches!(
                c,
                RepositoryCommand::Delete { .. }
                    | RepositoryCommand::Untag { .. }
                    | RepositoryCommand::PurgeDeleted { .. }
            ),
            Command::Manifest(c) => matches!(
                c,
                ManifestCommand::Delete { .. } | ManifestCommand::PurgeDeleted { .. }
            ),
            Command::Purge(args) => !args.dry_run,
            _ => false,
        }
    }
}

/// Opens the store for a command that `writes` or only reads, in the mode `--mode` says.
fn open(cli: &Cli, writes: bool) -> Result<Registry> {
    let Some(dir) = cli.store.as_deref() else {
        return fail("no store given: pass --store DIR or set OCISTORE_STORE");
    };
    if !dir.join("metadata.redb").is_file() {
        return fail(format!("no ocistore store at {}", dir.display()));
    }
    let mode = match cli.mode {
        Mode::Auto if writes => OpenMode::Shared,
        Mode::Auto | Mode::ReadOnly => OpenMode::ReadOnly,
        Mode::Shared => OpenMode::Shared,
        Mode::Exclusive => OpenMode::Exclusive,
    };
    let open = |mode| {
        let mut builder = Registry::builder().mode(mode);
        if let Some(url) = &cli.blobs {
            builder = builder.blob_store(ObjectStoreBlobs::from_url(url)?);
        }
        builder.open(dir)
    };
    let opened = match open(mode) {
        // Only a writing open recovers a store a crashed writer left, or upgrades an older
        // format; the shared one does it here, and does it only with the store alone.
        Err(Error::NeedsRecovery { .. } | Error::NeedsUpgrade { .. }) if cli.mode == Mode::Auto => {
            open(OpenMode::Shared)
        }
        opened => opened,
    };
    match opened {
        Err(e @ Error::AlreadyOpen { held_by, .. }) => {
            let advice = if held_by == OpenMode::Exclusive {
                "stop that process, or have it open the store shared (ocistore-server does \
                 unless started with --mode exclusive)"
            } else {
                "--mode exclusive needs the store alone: stop the processes sharing it, or \
                 leave --mode out"
            };
            fail(format!("{e}: {advice}"))
        }
        Err(e @ Error::BlobLocationMismatch { .. }) if cli.blobs.is_none() => fail(format!(
            "{e} (pass --blobs, with the options its URL needs)"
        )),
        opened => Ok(opened?),
    }
}

fn run(cli: &Cli) -> Result<ExitCode> {
    let out = Out { format: cli.output };
    let command = &cli.command;
    if cli.mode == Mode::ReadOnly && command.writes() {
        return fail("this command writes to the store: it cannot run with --mode read-only");
    }
    if cli.yes || !command.asks() {
        let registry = open(cli, command.writes())?;
        return dispatch(&registry, &out, command, &Consent::Yes);
    }
    // The verb's checks and its question, on an open that ends before anyone is asked: a
    // person may take minutes to answer, and the store is shared.
    let asked = {
        let registry = open(cli, false)?;
        let preview = Consent::Preview(registry.now());
        match dispatch(&registry, &out, command, &preview) {
            Err(e) => *e.downcast::<Asked>()?,
            done => return done,
        }
    };
    confirm(&asked.question)?;
    let registry = open(cli, true)?;
    dispatch(&registry, &out, command, &Consent::Agreed(asked))
}

fn dispatch(
    registry: &Registry,
    out: &Out,
    command: &Command,
    consent: &Consent,
) -> Result<ExitCode> {
    match command {
        Command::Repository(cmd) => repository(registry, out, cmd, consent)?,
        Command::Manifest(cmd) => manifest(registry, out, cmd, consent)?,
        Command::Config(cmd) => config(registry, out, cmd)?,
        Command::Lock { target, read_only } => {
            let locks = if *read_only {
                Locks::READ_ONLY
            } else {
                Locks::NO_DELETE
            };
            set_lock(registry, out, target, locks)?;
        }
        Command::Unlock { target } => set_lock(registry, out, target, Locks::UNLOCKED)?,
        Command::Locks { repository } => {
            let items = live_repository(registry, repository)?.locked_items()?;
            out.print(&locked(&items), || {
                print_table(
                    &["ITEM", "LOCK"],
                    &items
                        .iter()
                        .map(|(item, locks)| {
                            vec![item_name(repository, item), lock_name(*locks).to_owned()]
                        })
                        .collect::<Vec<_>>(),
                );
            })?;
        }
        Command::Purge(args) => purge(registry, out, args, consent)?,
        Command::Gc { dry_run, grace } => gc(registry, out, *dry_run, *grace)?,
        Command::Usage => usage(registry, out)?,
        Command::Fsck {
            repair,
            no_verify,
            grace,
        } => return fsck(registry, out, *repair, *no_verify, *grace),
        Command::Maintenance(MaintenanceCommand::Run { due }) => {
            let report = if *due {
                registry.run_due()?
            } else {
                Some(registry.run_now()?)
            };
            out.print(&report, || match report {
                None => println!("not due: nothing ran"),
                Some(r) => print_pairs(&[
                    ("ran at", ts(r.ran_at)),
                    ("repositories purged", r.repositories.to_string()),
                    ("manifests purged", r.manifests.to_string()),
                    ("tags purged", r.tags.to_string()),
                    ("untagged deleted", r.untagged_deleted.to_string()),
                    ("history events removed", r.history_events.to_string()),
                ]),
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The question a deleting command asked, and when, by the registry's clock.
#[derive(Debug)]
struct Asked {
    question: String,
    at: Timestamp,
}

impl std::fmt::Display for Asked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not confirmed: {}", self.question)
    }
}

impl std::error::Error for Asked {}

/// Whether a deleting verb may go ahead.
enum Consent {
    /// `--yes`.
    Yes,
    /// Not yet: the verb stops at its question, with [`Asked`] as its error. The time is now
    /// at the preview.
    Preview(Timestamp),
    /// The person said yes to this question: the verb goes ahead if it would ask the same.
    Agreed(Asked),
}

impl Consent {
    /// When the question was (or is being) asked: what it describes is as of then.
    fn asked_at(&self) -> Option<Timestamp> {
        match self {
            Consent::Yes => None,
            Consent::Preview(at) => Some(*at),
            Consent::Agreed(asked) => Some(asked.at),
        }
    }

    /// Whether the verb may delete `what`.
    fn ask(&self, what: String) -> Result<()> {
        match self {
            Consent::Yes => Ok(()),
            Consent::Preview(at) => Err(Box::new(Asked {
                question: what,
                at: *at,
            })),
            Consent::Agreed(asked) if asked.question == what => Ok(()),
            Consent::Agreed(asked) => fail(format!(
                "the store changed while the question waited: it would now delete {what}, not \
                 {}; nothing was deleted, run the command again",
                asked.question
            )),
        }
    }
}

/// Asks before deleting: on a terminal, a y/n question; elsewhere, only `--yes` will do.
fn confirm(what: &str) -> Result<()> {
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
    /// Prints what a verb read or did: with `--output json`, `value`, whose library types keep
    /// their own serde form (an object around them only adds context, such as the repository
    /// they are of); otherwise `text` prints it for people.
    fn print(&self, value: &impl Serialize, text: impl FnOnce()) -> Result<()> {
        match self.format {
            Output::Json => println!("{}", serde_json::to_string_pretty(value)?),
            Output::Table => text(),
        }
        Ok(())
    }
}

/// A record as `key  value` lines.
fn print_pairs(pairs: &[(&str, String)]) {
    let rows: Vec<Vec<String>> = pairs
        .iter()
        .map(|(k, v)| vec![(*k).to_owned(), v.clone()])
        .collect();
    print_table(&[], &rows);
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

/// REPO@DIGEST or REPO:TAG: the repository and the reference, a digest or a tag.
fn manifest_target(s: &str) -> Result<(String, String)> {
    match parse_target(s)? {
        Target::Manifest(r, d) => Ok((r, d.to_string())),
        Target::Tag(r, t) => Ok((r, t)),
        Target::Repository(_) => fail(format!("expected REPO@DIGEST or REPO:TAG, got {s:?}")),
    }
}

/// The one check of every verb that names a repository, in one read of its state: an unknown
/// repository is the library's `RepositoryUnknown`; one in the recycle bin is
/// `RepositorySoftDeleted`, unless `in_bin` (the verbs of the bin work inside a soft-deleted
/// repository: S5, S11, S16).
fn repository_in(
    registry: &Registry,
    name: &str,
    in_bin: bool,
) -> Result<(Repository, RepositoryState)> {
    let repo = registry.repository(name)?;
    let state = repo.state()?;
    let name = name.to_owned();
    match state {
        RepositoryState::Unknown => Err(Error::RepositoryUnknown { name }.into()),
        RepositoryState::Deleted { .. } if !in_bin => {
            Err(Error::RepositorySoftDeleted { name }.into())
        }
        _ => Ok((repo, state)),
    }
}

/// A live repository: see [`repository_in`].
fn live_repository(registry: &Registry, name: &str) -> Result<Repository> {
    Ok(repository_in(registry, name, false)?.0)
}

/// A repository live or in the recycle bin: see [`repository_in`].
fn known_repository(registry: &Registry, name: &str) -> Result<Repository> {
    Ok(repository_in(registry, name, true)?.0)
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

/// An optional value in text: `-` for none.
fn or_dash(v: Option<impl ToString>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// Locked items, each an object of the library's `Item` and `Locks` (it lists them as pairs).
fn locked(items: &[(Item, Locks)]) -> Vec<Value> {
    items
        .iter()
        .map(|(item, locks)| json!({ "item": item, "locks": locks }))
        .collect()
}

/// How a lock reads in text.
fn lock_name(locks: Locks) -> &'static str {
    match (locks.write_enabled, locks.delete_enabled) {
        (false, _) => "read-only",
        (true, false) => "no delete",
        (true, true) => "unlocked",
    }
}

fn repository(
    registry: &Registry,
    out: &Out,
    cmd: &RepositoryCommand,
    consent: &Consent,
) -> Result<()> {
    match cmd {
        RepositoryCommand::List => {
            let names = registry.repositories(&Page::all())?;
            out.print(&names, || {
                print_table(
                    &["REPOSITORY"],
                    &names.iter().map(|n| vec![n.clone()]).collect::<Vec<_>>(),
                );
            })?;
        }
        RepositoryCommand::ListDeleted => {
            let deleted = registry.deleted_repositories()?;
            out.print(&deleted, || {
                print_table(
                    &["REPOSITORY", "DELETED", "EXPIRES"],
                    &deleted
                        .iter()
                        .map(|r| vec![r.name.clone(), ts(r.deleted_at), ts(r.expires_at)])
                        .collect::<Vec<_>>(),
                );
            })?;
        }
        RepositoryCommand::Show { repository } => show_repository(registry, out, repository)?,
        RepositoryCommand::ShowTags { repository } => {
            let tags = live_repository(registry, repository)?.tags(&Page::all())?;
            out.print(&tags, || print_tags(&tags))?;
        }
        RepositoryCommand::Delete { repository } => {
            live_repository(registry, repository)?;
            consent.ask(format!(
                "repository {repository} with all its manifests and tags"
            ))?;
            registry.delete_repository(repository)?;
            let value = json!({ "deleted": repository });
            out.print(&value, || print_pairs(&[("deleted", repository.clone())]))?;
        }
        RepositoryCommand::Untag { image } => {
            let (name, tag) = tag_target(image)?;
            let repo = live_repository(registry, &name)?;
            let digest = repo.resolve(&tag)?;
            consent.ask(format!("tag {name}:{tag} (on {digest})"))?;
            repo.untag(&tag)?;
            let value = json!({ "repository": name, "untagged": tag });
            out.print(&value, || print_pairs(&[("untagged", image.clone())]))?;
        }
        RepositoryCommand::PurgeDeleted { repository } => {
            known_repository(registry, repository)?;
            consent.ask(format!(
                "repository {repository} from the recycle bin, for good"
            ))?;
            registry.purge_deleted_repository(repository)?;
            let value = json!({ "purged": repository });
            out.print(&value, || print_pairs(&[("purged", repository.clone())]))?;
        }
    }
    Ok(())
}

fn print_tags(tags: &[ocistore::Tag]) {
    print_table(
        &["TAG", "DIGEST", "UPDATED"],
        &tags
            .iter()
            .map(|t| vec![t.name.clone(), t.digest.to_string(), ts(t.updated)])
            .collect::<Vec<_>>(),
    );
}

/// `repository show`: the repository's state, what it holds, its recycle bin, usage and locks.
fn show_repository(registry: &Registry, out: &Out, name: &str) -> Result<()> {
    let (repo, state) = repository_in(registry, name, true)?;
    let tags = repo.tags(&Page::all())?;
    let manifests = repo.manifests(&ManifestQuery::default())?.len();
    let deleted_manifests = repo.deleted_manifests()?.len();
    let deleted_tags = repo.deleted_tags(None)?.len();
    // The registry's accounting, of which this repository's is one row.
    let usage = registry
        .usage()?
        .repositories
        .into_iter()
        .find(|r| r.name == name);
    let locks = repo.locked_items()?;
    let value = json!({
        "name": name,
        "state": state,
        "tags": tags,
        "manifests": manifests,
        "deleted_manifests": deleted_manifests,
        "deleted_tags": deleted_tags,
        "usage": usage,
        "locks": locked(&locks),
    });
    out.print(&value, || {
        let mut pairs = vec![("name", name.to_owned())];
        match state {
            RepositoryState::Live { created } => {
                pairs.extend([("state", "live".to_owned()), ("created", ts(created))]);
            }
            RepositoryState::Deleted {
                created,
                deleted_at,
                expires_at,
            } => pairs.extend([
                ("state", "in the recycle bin".to_owned()),
                ("created", ts(created)),
                ("deleted at", ts(deleted_at)),
                ("expires at", ts(expires_at)),
            ]),
            _ => pairs.push(("state", format!("{state:?}"))),
        }
        pairs.extend([
            ("tags", tags.len().to_string()),
            ("manifests", manifests.to_string()),
            (
                "recycle bin",
                format!("{deleted_manifests} manifests, {deleted_tags} tags"),
            ),
        ]);
        if let Some(u) = &usage {
            pairs.extend([
                ("blobs", u.blobs.to_string()),
                ("bytes", u.bytes.to_string()),
                ("unique bytes", u.unique_bytes.to_string()),
                ("shared bytes", u.shared_bytes.to_string()),
            ]);
        }
        let locked: Vec<String> = locks
            .iter()
            .map(|(item, l)| format!("{} ({})", item_name(name, item), lock_name(*l)))
            .collect();
        pairs.push((
            "locks",
            or_dash(Some(locked.join(", ")).filter(|l| !l.is_empty())),
        ));
        print_pairs(&pairs);
        if !tags.is_empty() {
            println!();
            print_tags(&tags);
        }
    })
}

/// `manifest show`: a manifest's metadata, tags, references and referrers.
fn show_manifest(registry: &Registry, out: &Out, image: &str) -> Result<()> {
    let (name, reference) = manifest_target(image)?;
    let repo = live_repository(registry, &name)?;
    let m = repo.manifest(&reference)?;
    let referrers = repo.referrers(&m.digest, None)?;
    let value = json!({
        "repository": name,
        "manifest": m,
        "referrers": referrers,
    });
    out.print(&value, || {
        let mut pairs = vec![
            ("repository", name.clone()),
            ("digest", m.digest.to_string()),
            ("media type", m.media_type.clone()),
            ("artifact type", or_dash(m.artifact_type.as_ref())),
            ("size", m.size.to_string()),
            ("created", ts(m.created)),
            ("updated", ts(m.updated)),
            (
                "tags",
                or_dash(Some(m.tags.join(", ")).filter(|t| !t.is_empty())),
            ),
            ("subject", or_dash(m.subject.as_ref())),
        ];
        pairs.extend(m.annotations.iter().map(|(k, v)| (k.as_str(), v.clone())));
        print_pairs(&pairs);
        for (heading, list) in [("REFERENCE", &m.references), ("REFERRER", &referrers)] {
            if list.is_empty() {
                continue;
            }
            println!();
            print_table(
                &[heading, "MEDIA TYPE", "ARTIFACT TYPE", "SIZE"],
                &list
                    .iter()
                    .map(|d| {
                        vec![
                            d.digest.to_string(),
                            d.media_type.clone(),
                            or_dash(d.artifact_type.as_ref()),
                            d.size.to_string(),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
        }
    })
}

fn manifest(
    registry: &Registry,
    out: &Out,
    cmd: &ManifestCommand,
    consent: &Consent,
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
            let mut query = ManifestQuery::default()
                .descending(*orderby == OrderBy::TimeDesc)
                .untagged(*untagged);
            query.updated_before = updated_before;
            query.limit = *top;
            let manifests = repo.manifests(&query)?;
            out.print(&manifests, || {
                print_table(
                    &["DIGEST", "TAGS", "SIZE", "CREATED", "UPDATED", "MEDIA TYPE"],
                    &manifests
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
                        .collect::<Vec<_>>(),
                );
            })?;
        }
        ManifestCommand::Show { image } => show_manifest(registry, out, image)?,
        ManifestCommand::ListDeleted { repository } => {
            let deleted = known_repository(registry, repository)?.deleted_manifests()?;
            out.print(&deleted, || {
                print_table(
                    &["DIGEST", "TAGS", "SIZE", "DELETED", "EXPIRES"],
                    &deleted
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
                        .collect::<Vec<_>>(),
                );
            })?;
        }
        ManifestCommand::ListDeletedTags { target } => {
            let (name, tag) = match parse_target(target)? {
                Target::Repository(r) => (r, None),
                Target::Tag(r, t) => (r, Some(t)),
                Target::Manifest(..) => {
                    return fail(format!("expected REPO or REPO:TAG, got {target:?}"));
                }
            };
            let deleted = known_repository(registry, &name)?.deleted_tags(tag.as_deref())?;
            out.print(&deleted, || {
                print_table(
                    &["TAG", "DIGEST", "DELETED", "EXPIRES"],
                    &deleted
                        .iter()
                        .map(|t| {
                            vec![
                                t.tag.clone(),
                                t.digest.to_string(),
                                ts(t.deleted_at),
                                ts(t.expires_at),
                            ]
                        })
                        .collect::<Vec<_>>(),
                );
            })?;
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
            let restored = known_repository(registry, &name)?.restore(what, on_conflict)?;
            let value = json!({ "repository": name, "tag": tag, "restored": restored });
            out.print(&value, || {
                print_pairs(&[
                    ("repository", name.clone()),
                    ("tag", or_dash(tag.as_ref())),
                    ("restored", restored.to_string()),
                ]);
            })?;
        }
        ManifestCommand::Delete { image } => {
            let (name, reference) = manifest_target(image)?;
            let repo = live_repository(registry, &name)?;
            let manifest = repo.manifest(&reference)?;
            consent.ask(format!(
                "manifest {name}@{} and every tag pointing at it",
                manifest.digest
            ))?;
            let deleted = repo.delete_manifest(manifest.digest.as_str())?;
            let value = json!({ "repository": name, "deleted": deleted });
            out.print(&value, || {
                print_table(
                    &["DELETED"],
                    &deleted
                        .iter()
                        .map(|d| vec![format!("{name}@{d}")])
                        .collect::<Vec<_>>(),
                );
            })?;
        }
        ManifestCommand::PurgeDeleted { image } => {
            let bin_of = |name: &str| -> Result<Repository> {
                let repo = known_repository(registry, name)?;
                consent.ask(format!("{image} from the recycle bin, for good"))?;
                Ok(repo)
            };
            match parse_target(image)? {
                Target::Manifest(name, digest) => bin_of(&name)?.purge_deleted_manifest(&digest)?,
                Target::Tag(name, tag) => {
                    bin_of(&name)?.purge_deleted_tags(&tag)?;
                }
                Target::Repository(_) => {
                    return fail(format!("expected REPO@DIGEST or REPO:TAG, got {image:?}"));
                }
            }
            let value = json!({ "purged": image });
            out.print(&value, || print_pairs(&[("purged", image.clone())]))?;
        }
        ManifestCommand::History { image } => {
            let (name, tag) = tag_target(image)?;
            let events = known_repository(registry, &name)?.tag_history(&tag)?;
            out.print(&events, || {
                print_table(
                    &["AT", "CAUSE", "FROM", "TO"],
                    &events
                        .iter()
                        .map(|e| {
                            let cause = variant_name(&e.cause);
                            vec![
                                ts(e.at),
                                cause,
                                or_dash(e.from.as_ref()),
                                or_dash(e.to.as_ref()),
                            ]
                        })
                        .collect::<Vec<_>>(),
                );
            })?;
        }
    }
    Ok(())
}

fn config(registry: &Registry, out: &Out, cmd: &ConfigCommand) -> Result<()> {
    let status = |enabled: bool| if enabled { "enabled" } else { "disabled" }.to_owned();
    match cmd {
        ConfigCommand::SoftDelete(cmd) => {
            if let PolicyCommand::Update(u) = cmd {
                let mut policy = registry.soft_delete_policy()?;
                if let Some(days) = u.days {
                    policy.retention_days = days;
                }
                if let Some(s) = u.status {
                    policy.enabled = s == Status::Enabled;
                }
                registry.set_soft_delete_policy(policy)?;
            }
            let policy = registry.soft_delete_policy()?;
            out.print(&policy, || {
                print_pairs(&[
                    ("status", status(policy.enabled)),
                    ("retention days", policy.retention_days.to_string()),
                ]);
            })?;
        }
        ConfigCommand::Retention(cmd) => {
            if let PolicyCommand::Update(u) = cmd {
                let mut policy = registry.retention_policy()?;
                if let Some(days) = u.days {
                    policy.days = days;
                }
                if let Some(s) = u.status {
                    policy.enabled = s == Status::Enabled;
                }
                registry.set_retention_policy(policy)?;
            }
            let policy = registry.retention_policy()?;
            let since = registry.retention_enabled_at()?;
            let value = json!({ "policy": policy, "enabled_at": since });
            out.print(&value, || {
                print_pairs(&[
                    ("status", status(policy.enabled)),
                    ("days", policy.days.to_string()),
                    ("enabled at", or_dash(since)),
                ]);
            })?;
        }
        ConfigCommand::HistoryRetention(cmd) => {
            if let HistoryRetentionCommand::Update { days } = cmd {
                registry.set_history_retention_days(*days)?;
            }
            let days = registry.history_retention_days()?;
            out.print(&json!({ "days": days }), || {
                let forever = if days == 0 { " (kept for ever)" } else { "" };
                print_pairs(&[("days", format!("{days}{forever}"))]);
            })?;
        }
    }
    Ok(())
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
    let value = json!({ "repository": name, "item": item, "locks": locks });
    out.print(&value, || {
        print_pairs(&[
            ("item", item_name(&name, &item)),
            ("lock", lock_name(locks).to_owned()),
        ]);
    })
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

fn purge(registry: &Registry, out: &Out, args: &PurgeArgs, consent: &Consent) -> Result<()> {
    let mut options = PurgeOptions::new(&args.filter)?;
    options.ago = parse_ago(&args.ago)?;
    options.keep = args.keep;
    options.untagged = args.untagged;
    options.dry_run = args.dry_run;
    options.include_locked = args.include_locked;
    if !args.dry_run {
        let mut before = String::new();
        if let Some(asked) = consent.asked_at() {
            // The age counts from the question: a tag pushed or moved while it waited for an
            // answer was not in what the person agreed to.
            let cutoff = asked.saturating_sub(options.ago);
            options.ago = registry.now().since(cutoff);
            before = format!(" (before {cutoff})");
        }
        consent.ask(format!(
            "the tags{} matching {} last updated more than {} ago{before}",
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
    out.print(&report, || {
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
    })
}

fn gc(registry: &Registry, out: &Out, dry_run: bool, grace: Option<Duration>) -> Result<()> {
    let bar = spinner("collecting");
    let mut options = CollectOptions::default().dry_run(dry_run);
    options.grace_period = grace;
    let report = registry.collect_with_progress(&options, |p| {
        let phase = match p.phase {
            Phase::Mark => "marking: repositories",
            Phase::Links => "sweeping: links",
            Phase::Blobs => "sweeping: blobs",
            Phase::Uploads => "sweeping: uploads",
            _ => "collecting",
        };
        bar.set_message(format!("{phase} {}", p.done));
    });
    bar.finish_and_clear();
    let r = report?;
    let duration = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    out.print(&r, || {
        print_pairs(&[
            ("dry run", r.dry_run.to_string()),
            ("blobs marked", r.blobs_marked.to_string()),
            ("bytes marked", r.bytes_marked.to_string()),
            ("blobs swept", r.blobs_swept.to_string()),
            ("bytes swept", r.bytes_swept.to_string()),
            ("blobs kept", r.blobs_kept.to_string()),
            ("bytes kept", r.bytes_kept.to_string()),
            ("links removed", r.links_removed.to_string()),
            ("uploads removed", r.uploads_removed.to_string()),
            ("mark time", duration(r.mark_time)),
            ("sweep time", duration(r.sweep_time)),
            ("longest write", duration(r.longest_write)),
        ]);
    })
}

fn usage(registry: &Registry, out: &Out) -> Result<()> {
    let u = registry.usage()?;
    out.print(&u, || {
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
    })
}

/// The name the library's serde form gives a variant: a unit variant's string, or the `kind`
/// tag of a variant with data; so text and JSON name it alike.
fn variant_name(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(name)) => name,
        Ok(value) => value["kind"].as_str().unwrap_or_default().to_owned(),
        Err(_) => String::new(),
    }
}

/// A problem in text: its kind, the thing it is about, and details.
fn problem(p: &Problem) -> Vec<String> {
    let (at, detail) = match p {
        Problem::MissingReference {
            repository,
            manifest,
            reference,
        } => (
            format!("{repository}@{manifest}"),
            format!("references {reference}"),
        ),
        Problem::DanglingLink { repository, digest } => (
            format!("{repository}@{digest}"),
            "link without a blob".into(),
        ),
        Problem::MissingBlobFile { digest } => (digest.to_string(), "file gone".into()),
        Problem::CorruptBlob { digest, actual } => {
            (digest.to_string(), format!("hashes to {actual}"))
        }
        Problem::SizeMismatch {
            digest,
            recorded,
            actual,
        } => (
            digest.to_string(),
            format!("recorded {recorded} bytes, file has {actual}"),
        ),
        Problem::StrayBlobFile { path }
        | Problem::TempFile { path }
        | Problem::StrayUpload { path } => (path.display().to_string(), String::new()),
        p => (format!("{p:?}"), String::new()),
    };
    vec![variant_name(p), at, detail]
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
    let mut options = FsckOptions::default()
        .repair(repair)
        .verify_digests(!no_verify);
    options.grace_period = grace;
    let report = registry.fsck(&options);
    bar.finish_and_clear();
    let r = report?;
    out.print(&r, || {
        if !r.problems.is_empty() {
            print_table(
                &["PROBLEM", "WHERE", "DETAIL"],
                &r.problems.iter().map(problem).collect::<Vec<_>>(),
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
    })?;
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
