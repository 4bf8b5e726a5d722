//! Building the application: the same `Application` runs in `herald serve` and in tests (on
//! port 0, with a fresh database).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::engine::{self, EngineHandle};
// Re-exported: what the application hands its tests; it is the HTTP layer's.
pub use crate::http::AppState;
use crate::store::{Db, DbOptions};
use crate::webhooks::{DispatcherConfig, WebhookDispatcher};

/// The API and the engine, sharing one database: what `herald serve` runs.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    engine: EngineHandle,
    webhooks: WebhookDispatcher,
}

impl Application {
    /// Connects to (and migrates) the database and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let db = open_database(&config).await?;
        say_connection_budget(&db, &config, clock.as_ref()).await;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        crate::metrics::start_upkeep();
        let engine = start_engine(&config, &db, clock.clone()).await?;
        let webhooks = WebhookDispatcher::start(
            db.clone(),
            clock.clone(),
            config.url_guard().client(),
            DispatcherConfig {
                url_guard: config.url_guard(),
                send_activity: engine.activity(),
                lease: std::time::Duration::from_millis(config.webhook_lease_ms.max(3)),
                ..DispatcherConfig::default()
            },
        );
        let state = AppState {
            ingestor: crate::service::callbacks::Ingestor::start(db.clone()),
            db,
            config: Arc::new(config),
            clock,
            wakeups: engine.wakeups(),
        };
        Ok(Self {
            listener,
            state,
            engine,
            webhooks,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then lets requests in progress finish and the engine
    /// record its sends in flight.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let db = self.state.db.clone();
        let router = crate::http::router(self.state);
        let served = axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
        // Sends in flight finish and are recorded before the database closes.
        self.engine.shutdown().await;
        self.webhooks.shutdown().await;
        db.close().await;
        served.context("HTTP server failed")
    }
}

/// Opens the configured database and brings its schema up to date.
pub async fn open_database(config: &Config) -> anyhow::Result<Db> {
    let options = DbOptions {
        max_connections: config.database_max_connections,
        ..DbOptions::default()
    };
    let db = Db::connect(&config.database_url, &options)
        .await
        .with_context(|| format!("cannot open database {}", redact(&config.database_url)))?;
    db.migrate().await.context("cannot migrate the database")?;
    Ok(db)
}

/// Says at start-up how many PostgreSQL connections this process may open, and loudly when the
/// server cannot give every live process its whole pool: past `max_connections` the server
/// refuses connections, and a process that cannot connect cannot record what it sent.
async fn say_connection_budget(db: &Db, config: &Config, clock: &dyn Clock) {
    let since = clock.now() - crate::engine::pacing::to_chrono(config.engine().lease);
    let budget = async {
        let mut conn = db.read().await?;
        // The pool, and the connection on which the engine hears of work other processes
        // announce.
        crate::store::processes::connection_budget(
            conn.conn(),
            config.database_max_connections.saturating_add(1),
            since,
        )
        .await
    };
    match budget.await {
        Ok(None) => {}
        Ok(Some(budget)) if budget.fits() => tracing::info!(
            per_process = budget.per_process,
            processes = budget.processes,
            server_allows = budget.available(),
            open_now = budget.open,
            "PostgreSQL connections: every process can open its whole pool"
        ),
        Ok(Some(budget)) => tracing::error!(
            "PostgreSQL allows {} connections ({} of max_connections, {} reserved for superusers) \
             but {} processes with pools of {} may open {}: lower HERALD_DATABASE_MAX_CONNECTIONS \
             or raise the server's max_connections, or processes will be refused connections \
             under load ({} open now)",
            budget.available(),
            budget.server_max,
            budget.reserved,
            budget.processes,
            budget.per_process,
            budget.needed(),
            budget.open
        ),
        Err(error) => tracing::warn!(%error, "could not read PostgreSQL's connection limit"),
    }
}

/// Starts the engine on `db` with the configuration's settings.
pub async fn start_engine(
    config: &Config,
    db: &Db,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<EngineHandle> {
    engine::start(
        db.clone(),
        clock,
        config.url_guard().client(),
        config.engine(),
    )
    .await
    .context("cannot start the engine")
}

/// A database URL fit for logs: any password replaced.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}://{user}:***{}", &url[..scheme_end], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_the_log() {
        assert_eq!(
            redact("postgres://herald:s3cret@db:5432/herald"),
            "postgres://herald:***@db:5432/herald"
        );
        assert_eq!(
            redact("postgres://herald@db/herald"),
            "postgres://herald@db/herald"
        );
        assert_eq!(redact("sqlite://herald.db"), "sqlite://herald.db");
    }
}
