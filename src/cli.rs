//! The `herald` command line: thin clap subcommands over the library.

use std::path::PathBuf;

use anyhow::bail;
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};

use crate::app::{Application, open_database};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::domain::auth::Ability;
use crate::domain::ids::ApiKeyId;
use crate::eventlog::{EventLog, StartAt};
use crate::service::ServiceError;
use crate::service::api_keys;
use crate::store::Db;

#[derive(Debug, Parser)]
#[command(
    name = "herald",
    version,
    about = "Bulk campaign scheduler and sender engine"
)]
pub struct Cli {
    /// A TOML config file; HERALD_* environment variables override it.
    #[arg(long, global = true, env = "HERALD_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API (on HERALD_LISTEN, default 127.0.0.1:8080).
    Serve,
    /// Create or update the database schema, then exit.
    Migrate,
    /// Send a demo campaign through the sandbox provider and show it live.
    Demo(crate::demo::DemoArgs),
    /// The end-to-end load benchmark: a fresh database, every gate off, sandbox and http.
    Bench(crate::bench::BenchArgs),
    /// Manage API keys.
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
    /// Read the event log.
    #[command(subcommand)]
    Events(EventsCommand),
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Print events as one JSON object per line, as the named consumer: it resumes after the
    /// last batch it printed, so a tail that is stopped (or killed) and run again skips nothing.
    Tail(TailEvents),
}

#[derive(Debug, Args)]
pub struct TailEvents {
    /// The consumer's name: its position is kept in the database.
    #[arg(long)]
    pub consumer: String,
    /// A consumer new to this database starts at the oldest event kept, not at the newest.
    #[arg(long)]
    pub from_beginning: bool,
    /// Keep waiting for new events instead of exiting when none are left.
    #[arg(long)]
    pub follow: bool,
    /// Events read and recorded at a time.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key; its token is printed once, alone on the last line.
    Create(CreateKey),
    /// List keys (never their tokens): id, workspace, name, abilities, state.
    List {
        /// Only this workspace's keys.
        #[arg(long)]
        workspace: Option<String>,
    },
    /// Revoke a key: refused from its very next request, in every process.
    Revoke {
        /// The key's id, as `api-key list` shows it.
        id: ApiKeyId,
    },
}

#[derive(Debug, Args)]
pub struct CreateKey {
    /// A name to recognise the key by.
    #[arg(long)]
    pub name: String,
    /// Comma-separated abilities, e.g. contacts.read,campaigns.write (default: *).
    #[arg(long, default_value = "*")]
    pub abilities: String,
    /// The workspace the key acts in; created when new.
    #[arg(long, default_value = "default")]
    pub workspace: String,
    /// Requests per minute for this key (default: the server's setting).
    #[arg(long)]
    pub rate_per_minute: Option<u32>,
    /// Requests a UTC day, counted across every process (default: no quota).
    #[arg(long)]
    pub daily_quota: Option<u32>,
    /// Requests a UTC month, counted across every process (default: no quota).
    #[arg(long)]
    pub monthly_quota: Option<u32>,
    /// When the key stops working, in RFC 3339 (e.g. 2027-01-31T00:00:00Z); never by default.
    #[arg(long)]
    pub expires_at: Option<DateTime<Utc>>,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve => serve(config).await,
        Command::Demo(args) => crate::demo::run(config, args).await,
        Command::Bench(args) => crate::bench::run(config, args).await,
        Command::Migrate => {
            let db = open_database(&config).await?;
            db.close().await;
            println!("database is up to date");
            Ok(())
        }
        Command::ApiKey(ApiKeyCommand::Create(args)) => {
            let db = open_database(&config).await?;
            let created = create_api_key(&db, &SystemClock, &args).await;
            db.close().await;
            let (workspace, token) = created?;
            println!(
                "Created API key '{}' in workspace '{workspace}'.",
                args.name
            );
            println!("Store this token now; it cannot be shown again:");
            println!("{token}");
            Ok(())
        }
        Command::ApiKey(ApiKeyCommand::List { workspace }) => {
            let db = open_database(&config).await?;
            let listed = list_api_keys(&db, &SystemClock, workspace.as_deref()).await;
            db.close().await;
            for line in listed? {
                println!("{line}");
            }
            Ok(())
        }
        Command::Events(EventsCommand::Tail(args)) => {
            let db = open_database(&config).await?;
            let tailed = tokio::select! {
                tailed = tail_events(&db, &args) => tailed,
                () = shutdown_signal() => Ok(()),
            };
            db.close().await;
            tailed
        }
        Command::ApiKey(ApiKeyCommand::Revoke { id }) => {
            let db = open_database(&config).await?;
            let revoked = api_keys::revoke(&db, id, SystemClock.now()).await;
            db.close().await;
            if !revoked? {
                bail!("no active API key has the id {id}");
            }
            println!("Revoked API key {id}.");
            Ok(())
        }
    }
}

/// One line per key, tab-separated under a header: id, workspace, name, abilities, created,
/// and its state (`active`, `active, expires <time>`, `expired <time>`, `revoked <time>`).
pub async fn list_api_keys(
    db: &Db,
    clock: &dyn Clock,
    workspace: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let keys = api_keys::list(db, workspace).await.map_err(as_flags)?;
    let now = clock.now();
    let mut lines = vec!["id\tworkspace\tname\tabilities\tcreated\tstate".to_owned()];
    for key in keys {
        let abilities: Vec<&str> = key.abilities.0.iter().map(|a| a.as_str()).collect();
        let state = match (key.revoked_at, key.expires_at) {
            (Some(at), _) => format!("revoked {}", at.to_rfc3339()),
            (None, Some(at)) if at <= now => format!("expired {}", at.to_rfc3339()),
            (None, Some(at)) => format!("active, expires {}", at.to_rfc3339()),
            (None, None) => "active".to_owned(),
        };
        lines.push(format!(
            "{}\t{}\t{}\t{}\t{}\t{state}",
            key.id,
            key.workspace,
            key.name,
            abilities.join(","),
            key.created_at.to_rfc3339(),
        ));
    }
    Ok(lines)
}

/// Prints the event log from the consumer's position; each batch is recorded once it is
/// printed, so an interrupted tail prints at most its last batch again.
async fn tail_events(db: &Db, args: &TailEvents) -> anyhow::Result<()> {
    use std::io::Write;

    let consumer = args.consumer.trim();
    if consumer.is_empty() {
        bail!("--consumer must not be empty");
    }
    let start = if args.from_beginning {
        StartAt::Beginning
    } else {
        StartAt::End
    };
    let log = EventLog::new(db.clone(), std::sync::Arc::new(SystemClock));
    let mut reader = log.reader(consumer, start).await?;
    loop {
        let events = if args.follow {
            reader.next_batch(args.batch).await?
        } else {
            reader.poll(args.batch).await?
        };
        let Some(last) = events.last().map(|event| event.position) else {
            if reader.waiting_on_gap() {
                tokio::time::sleep(crate::eventlog::IDLE_POLL).await;
                continue;
            }
            return Ok(());
        };
        let mut out = std::io::stdout().lock();
        for event in &events {
            let line = serde_json::json!({
                "position": event.position,
                "type": event.kind.as_str(),
                "workspace_id": event.workspace,
                "subject_id": event.subject,
                "occurred_at": event.occurred_at,
                "data": event.payload,
            });
            writeln!(out, "{line}")?;
        }
        out.flush()?;
        drop(out);
        reader.commit(last).await?;
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    tracing::info!(address = %app.local_addr()?, "Herald is listening");
    app.run_until(shutdown_signal()).await
}

/// Creates a key and returns its workspace's name and the token.
pub async fn create_api_key(
    db: &Db,
    clock: &dyn Clock,
    args: &CreateKey,
) -> anyhow::Result<(String, String)> {
    let key = api_keys::NewKey {
        workspace: &args.workspace,
        name: &args.name,
        abilities: Ability::parse_list(&args.abilities)?,
        rate_per_minute: args.rate_per_minute,
        daily_quota: args.daily_quota,
        monthly_quota: args.monthly_quota,
        expires_at: args.expires_at,
    };
    let minted = api_keys::create(db, key, clock.now())
        .await
        .map_err(as_flags)?;
    Ok((minted.workspace, minted.token))
}

/// A service's refusal in the command line's terms: a field is the flag that gave it.
fn as_flags(error: ServiceError) -> anyhow::Error {
    match error {
        ServiceError::Validation(errors) => {
            let lines: Vec<String> = errors
                .iter()
                .map(|(field, message)| format!("--{} {message}", field.replace('_', "-")))
                .collect();
            anyhow::anyhow!(lines.join("\n"))
        }
        other => other.into(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
