//! The `herald` command line: thin clap subcommands over the library.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::app::{Application, open_database};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::domain::auth::{Ability, NewToken};
use crate::store::{self, Db};

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
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key; its token is printed once, alone on the last line.
    Create(CreateKey),
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
    let name = args.name.trim();
    if name.is_empty() {
        bail!("--name must not be empty");
    }
    let workspace_name = args.workspace.trim();
    if workspace_name.is_empty() {
        bail!("--workspace must not be empty");
    }
    let abilities = Ability::parse_list(&args.abilities)?;
    if abilities.is_empty() {
        bail!("--abilities must name at least one ability");
    }
    let now = clock.now();
    let minted = NewToken::generate();
    let mut tx = db.begin().await?;
    let workspace = store::workspaces::ensure(tx.conn(), workspace_name, now).await?;
    let key = store::api_keys::NewApiKey {
        id: minted.key_id,
        workspace_id: workspace.id,
        name,
        secret_digest: &minted.secret_digest,
        abilities: &abilities,
        rate_per_minute: args.rate_per_minute,
    };
    store::api_keys::insert(tx.conn(), &key, now).await?;
    tx.commit().await.context("cannot save the API key")?;
    Ok((workspace.name, minted.token))
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
