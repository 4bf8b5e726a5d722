//! Typed settings: defaults < a TOML file (`HERALD_CONFIG` or `--config`) < `HERALD_*`
//! environment variables.

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the HTTP API listens (`HERALD_LISTEN`).
    pub listen: SocketAddr,
    /// `sqlite://PATH` (created when missing) or `postgres://…` (`HERALD_DATABASE_URL`).
    pub database_url: String,
    /// Connections per pool (`HERALD_DATABASE_MAX_CONNECTIONS`).
    pub database_max_connections: u32,
    /// Requests per minute per API key unless the key says otherwise
    /// (`HERALD_API_RATE_PER_MINUTE`).
    pub api_rate_per_minute: u32,
    /// How long a claimed message waits, if its process dies, before another lane sends it
    /// again (`HERALD_CLAIM_LEASE_MS`).
    pub claim_lease_ms: u64,
    /// How often the engine looks for due launches and senders with work (`HERALD_ENGINE_TICK_MS`).
    pub engine_tick_ms: u64,
    /// How long a lane holds its sender without renewing; after a crash, another process takes
    /// the sender over once it runs out (`HERALD_LANE_LEASE_MS`).
    pub lane_lease_ms: u64,
    /// How long the event log keeps an event that every consumer has read
    /// (`HERALD_EVENT_RETENTION_HOURS`).
    pub event_retention_hours: u64,
    /// Lets webhook, gateway and API URLs reach loopback and private networks
    /// (`HERALD_ALLOW_PRIVATE_URLS`): off, a user's URL can never make Herald call an internal
    /// service or a cloud's metadata address.
    pub allow_private_urls: bool,
    /// How long a process holds a webhook delivery it claimed, or the fan-out of the event log,
    /// without renewing; after a crash, another takes over once it runs out
    /// (`HERALD_WEBHOOK_LEASE_MS`).
    pub webhook_lease_ms: u64,
    /// The bearer token `GET /metrics` asks for (`HERALD_METRICS_TOKEN`); unset, it is open.
    pub metrics_token: Option<MetricsToken>,
}

/// A token that never shows in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct MetricsToken(pub String);

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(***)")
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://herald.db".into(),
            database_max_connections: 10,
            api_rate_per_minute: 600,
            claim_lease_ms: 120_000,
            engine_tick_ms: 250,
            lane_lease_ms: 30_000,
            event_retention_hours: 7 * 24,
            allow_private_urls: false,
            webhook_lease_ms: 60_000,
            metrics_token: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {source}")]
    Parse {
        path: String,
        source: Box<toml::de::Error>,
    },
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Env {
        name: &'static str,
        value: String,
        reason: String,
    },
}

impl Config {
    /// Loads the file (if any) and then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("HERALD_CONFIG").map(Into::into));
        let base = match file {
            Some(path) => Self::from_file(&path)?,
            None => Self::default(),
        };
        base.with_env(|name| std::env::var(name).ok())
    }

    fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: display.clone(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: display,
            source: Box::new(source),
        })
    }

    /// Overrides fields from `HERALD_*` variables, read through `lookup`.
    pub fn with_env(
        mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        fn parsed<T: std::str::FromStr>(name: &'static str, value: String) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            value.parse().map_err(|error: T::Err| ConfigError::Env {
                name,
                reason: error.to_string(),
                value,
            })
        }
        if let Some(value) = lookup("HERALD_LISTEN") {
            self.listen = parsed("HERALD_LISTEN", value)?;
        }
        if let Some(value) = lookup("HERALD_DATABASE_URL") {
            self.database_url = value;
        }
        if let Some(value) = lookup("HERALD_DATABASE_MAX_CONNECTIONS") {
            self.database_max_connections = parsed("HERALD_DATABASE_MAX_CONNECTIONS", value)?;
        }
        if let Some(value) = lookup("HERALD_API_RATE_PER_MINUTE") {
            self.api_rate_per_minute = parsed("HERALD_API_RATE_PER_MINUTE", value)?;
        }
        if let Some(value) = lookup("HERALD_CLAIM_LEASE_MS") {
            self.claim_lease_ms = parsed("HERALD_CLAIM_LEASE_MS", value)?;
        }
        if let Some(value) = lookup("HERALD_ENGINE_TICK_MS") {
            self.engine_tick_ms = parsed("HERALD_ENGINE_TICK_MS", value)?;
        }
        if let Some(value) = lookup("HERALD_LANE_LEASE_MS") {
            self.lane_lease_ms = parsed("HERALD_LANE_LEASE_MS", value)?;
        }
        if let Some(value) = lookup("HERALD_EVENT_RETENTION_HOURS") {
            self.event_retention_hours = parsed("HERALD_EVENT_RETENTION_HOURS", value)?;
        }
        if let Some(value) = lookup("HERALD_ALLOW_PRIVATE_URLS") {
            self.allow_private_urls = parsed("HERALD_ALLOW_PRIVATE_URLS", value)?;
        }
        if let Some(value) = lookup("HERALD_WEBHOOK_LEASE_MS") {
            self.webhook_lease_ms = parsed("HERALD_WEBHOOK_LEASE_MS", value)?;
        }
        if let Some(value) = lookup("HERALD_METRICS_TOKEN") {
            self.metrics_token = Some(value.trim().to_owned())
                .filter(|token| !token.is_empty())
                .map(MetricsToken);
        }
        Ok(self)
    }

    /// The guard on users' URLs this configuration implies.
    pub fn url_guard(&self) -> crate::url_guard::UrlGuard {
        crate::url_guard::UrlGuard::new(self.allow_private_urls)
    }

    /// The engine settings this configuration implies.
    pub fn engine(&self) -> crate::engine::EngineConfig {
        let claim_lease = std::time::Duration::from_millis(self.claim_lease_ms.max(1));
        crate::engine::EngineConfig {
            tick: std::time::Duration::from_millis(self.engine_tick_ms.max(1)),
            claim_lease,
            lease: std::time::Duration::from_millis(self.lane_lease_ms.max(3)),
            requeue_every: claim_lease.min(std::time::Duration::from_secs(5)),
            event_retention: std::time::Duration::from_secs(self.event_retention_hours * 3600),
            url_guard: self.url_guard(),
            ..crate::engine::EngineConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn defaults_run_on_the_embedded_database() {
        let config = Config::default();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.database_url, "sqlite://herald.db");
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.toml");
        std::fs::write(
            &path,
            "listen = \"0.0.0.0:9000\"\ndatabase_url = \"sqlite://file.db\"\n",
        )
        .unwrap();
        let from_file = Config::from_file(&path).unwrap();
        assert_eq!(from_file.listen.to_string(), "0.0.0.0:9000");
        let config = from_file
            .with_env(env(&[(
                "HERALD_DATABASE_URL",
                "postgres://localhost/herald",
            )]))
            .unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(config.database_url, "postgres://localhost/herald");
    }

    #[test]
    fn bad_values_name_their_source() {
        let error = Config::default()
            .with_env(env(&[("HERALD_LISTEN", "localhost")]))
            .unwrap_err();
        assert!(error.to_string().contains("HERALD_LISTEN"), "{error}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "listn = 1").unwrap();
        assert!(matches!(
            Config::from_file(&path),
            Err(ConfigError::Parse { .. })
        ));
    }
}
