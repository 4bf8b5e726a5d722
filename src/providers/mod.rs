//! Providers: where messages leave Herald. One trait — send, optionally show typing — and an
//! error that says, where it is understood, whether another attempt can succeed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::domain::ids::MessageId;

pub mod http;
pub mod sandbox;

/// The send timeout of a provider that does not say its own.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(10);

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One message to send.
#[derive(Clone, Debug)]
pub struct Outbound<'a> {
    /// Herald's id: the idempotency key, where the provider honours one.
    pub id: MessageId,
    pub to: &'a str,
    pub body: &'a str,
    pub media_url: Option<&'a str>,
}

/// The provider took the message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    pub provider_message_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Try again: a timeout, a 5xx, or a 429 (with the provider's `Retry-After` when it gave
    /// one; a 429 holds the whole sender for that long).
    #[error("{reason}")]
    Retryable {
        after: Option<Duration>,
        reason: String,
        /// The provider asked the whole sender to slow down (HTTP 429).
        throttled: bool,
    },
    /// Another attempt would fail the same way (an invalid number, a rejected request).
    #[error("{0}")]
    Fatal(String),
}

impl SendError {
    pub fn retryable(reason: impl Into<String>) -> Self {
        Self::Retryable {
            after: None,
            reason: reason.into(),
            throttled: false,
        }
    }
}

pub trait Provider: Send + Sync {
    fn send<'a>(&'a self, message: &'a Outbound<'a>) -> BoxFuture<'a, Result<Accepted, SendError>>;

    /// The longest one send can take before it is given up: lanes size their batches by it, so
    /// that a batch is sent before its claims expire.
    fn send_timeout(&self) -> Duration {
        DEFAULT_SEND_TIMEOUT
    }

    /// Shows "typing…" to `to`, where the provider has such an indicator.
    fn typing<'a>(&'a self, _to: &'a str) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async { Ok(()) })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderConfigError {
    #[error("unknown provider '{0}'; available: sandbox, http")]
    Unknown(String),
    #[error("provider_config.{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

/// Where providers report delivery and read events they learn of themselves (the sandbox);
/// real providers report through the callback endpoint, which takes the same ingestion path.
/// Bounded: a provider that reports faster than the database takes it waits.
pub type EventSink = tokio::sync::mpsc::Sender<crate::engine::callbacks::SenderEvents>;

/// Builds the provider a sender's settings describe.
pub fn build(
    provider: &str,
    config: &Value,
    context: &ProviderContext,
) -> Result<Arc<dyn Provider>, ProviderConfigError> {
    match provider {
        "sandbox" => Ok(Arc::new(sandbox::Sandbox::from_config(config, context)?)),
        "http" => Ok(Arc::new(http::HttpProvider::from_config(config, context)?)),
        other => Err(ProviderConfigError::Unknown(other.to_owned())),
    }
}

/// Checks a sender's provider settings without keeping the provider.
pub fn validate(provider: &str, config: &Value) -> Result<(), ProviderConfigError> {
    let (events, _) = tokio::sync::mpsc::channel(1);
    build(
        provider,
        config,
        &ProviderContext::new(reqwest::Client::new(), events, None),
    )
    .map(drop)
}

/// What providers share in one process.
#[derive(Clone)]
pub struct ProviderContext {
    /// One HTTP client: its connection pool serves every http sender.
    pub http: reqwest::Client,
    pub events: EventSink,
    /// The sender a provider is built for, so that self-reported events name it.
    pub sender: Option<crate::domain::ids::SenderId>,
}

impl ProviderContext {
    pub fn new(
        http: reqwest::Client,
        events: EventSink,
        sender: Option<crate::domain::ids::SenderId>,
    ) -> Self {
        Self {
            http,
            events,
            sender,
        }
    }

    pub fn for_sender(&self, sender: crate::domain::ids::SenderId) -> Self {
        Self {
            sender: Some(sender),
            ..self.clone()
        }
    }
}

/// Reads an optional non-negative number from a provider config.
fn number(config: &Value, field: &'static str) -> Result<Option<f64>, ProviderConfigError> {
    match config.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => {
            value
                .as_f64()
                .filter(|n| *n >= 0.0)
                .map(Some)
                .ok_or(ProviderConfigError::Invalid {
                    field,
                    message: "must be a non-negative number".into(),
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_providers_and_bad_settings_are_named() {
        assert_eq!(
            validate("carrier-pigeon", &Value::Null).unwrap_err(),
            ProviderConfigError::Unknown("carrier-pigeon".into())
        );
        let error = validate("sandbox", &serde_json::json!({"fail_rate": -1})).unwrap_err();
        assert!(
            error.to_string().contains("provider_config.fail_rate"),
            "{error}"
        );
    }
}
