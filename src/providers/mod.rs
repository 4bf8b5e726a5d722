//! Providers: where messages leave Herald. Each platform is a [`ProviderModule`] that knows its
//! own language — its configuration and which of it is secret, what it can do, how it sends (a
//! [`Provider`] built from the configuration), and how its callbacks are verified and read into
//! Herald's events. The [`module_of`] registry names them; nothing else matches on a provider's
//! name.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::domain::ids::MessageId;
use crate::domain::provider::ProviderKind;
use crate::domain::whatsapp::RenderedWhatsApp;
use crate::url_guard::UrlGuard;

pub mod botbiz;
pub mod chattu;
pub mod http;
pub mod mavibot;
pub mod mazbot;
/// What the seed platforms' modules share.
mod platform;
pub mod sandbox;
/// Secrets in provider configurations: masked when shown, kept when the mask comes back.
pub mod secrets;
pub mod whatsapp_cloud;
pub mod zagely;

use crate::domain::callback::{self, CallbackEvent, CallbackPayload};

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
    /// The template approved at the platform (WhatsApp's), rendered for this recipient; sent
    /// instead of `body` by providers that send templates, ignored by the others.
    pub template: Option<&'a RenderedWhatsApp>,
}

/// The provider took the message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    pub provider_message_id: Option<String>,
}

/// What a failed send means, as the provider's module understands its platform's answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Try this message again later: a timeout, a 5xx; after `after` when the provider said.
    #[error("{reason}")]
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// The provider asked the whole sender to slow down (HTTP 429, a throughput limit): the
    /// lane holds for `after` (30 s when unsaid) and this message is tried again.
    #[error("{reason}")]
    HoldLane {
        after: Option<Duration>,
        reason: String,
    },
    /// This recipient cannot take more for now (a per-recipient rate limit): it is tried again
    /// after `after`, while the lane goes on with the others.
    #[error("{reason}")]
    HoldRecipient { after: Duration, reason: String },
    /// The sender cannot send at all (credentials revoked, an account blocked): its lane stops,
    /// its running campaigns are paused with the reason, and this message waits for the fix.
    #[error("{0}")]
    PauseSender(String),
    /// Another attempt would fail the same way (an invalid number, a rejected request).
    #[error("{0}")]
    Fail(String),
    /// The recipient refuses this sender's messages (WhatsApp's `131050`): the message fails
    /// and the contact is opted out in the same transaction.
    #[error("{0}")]
    RecipientOptedOut(String),
    /// What this campaign sends cannot go out as it is (its template is missing at the
    /// platform): the campaign is paused with the reason and the message waits for the fix,
    /// instead of failing every recipient one by one. A single message fails.
    #[error("{0}")]
    PauseCampaign(String),
}

impl SendError {
    pub fn retry(reason: impl Into<String>) -> Self {
        Self::Retry {
            after: None,
            reason: reason.into(),
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

    /// Shows "typing…" to `to`, where the provider has such an indicator. `answering` is the
    /// platform's id of the person's last message, when they wrote within the customer-service
    /// window: WhatsApp shows the indicator only in answer to one (and marks it read).
    fn typing<'a>(
        &'a self,
        _to: &'a str,
        _answering: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async { Ok(()) })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderConfigError {
    #[error("unknown provider '{0}'; available: {list}", list = names().join(", "))]
    Unknown(String),
    /// `field` is a path within `provider_config`, empty for the whole of it.
    #[error("{}: {message}", self.field_path().unwrap_or_default())]
    Invalid { field: String, message: String },
    /// Several fields at once, each `(path within provider_config, message)`.
    #[error("{}", self.field_messages().iter().map(|(f, m)| format!("{f}: {m}")).collect::<Vec<_>>().join("; "))]
    Fields(Vec<(String, String)>),
}

/// Where providers report delivery and read events they learn of themselves (the sandbox);
/// real providers report through the callback endpoint, which takes the same ingestion path.
/// Bounded: a provider that reports faster than the database takes it waits.
pub type EventSink = tokio::sync::mpsc::Sender<crate::domain::callback::SenderEvents>;

impl ProviderConfigError {
    /// The request field a bad setting is in (`provider_config`, `provider_config.url`), or
    /// `None` when the provider itself is unknown.
    pub fn field_path(&self) -> Option<String> {
        match self {
            Self::Unknown(_) => None,
            Self::Invalid { field, .. } => Some(request_field(field)),
            Self::Fields(fields) => fields.first().map(|(field, _)| request_field(field)),
        }
    }

    /// Each bad setting as (request field, message); empty when the provider is unknown.
    pub fn field_messages(&self) -> Vec<(String, String)> {
        match self {
            Self::Unknown(_) => Vec::new(),
            Self::Invalid { field, message } => vec![(request_field(field), message.clone())],
            Self::Fields(fields) => fields
                .iter()
                .map(|(field, message)| (request_field(field), message.clone()))
                .collect(),
        }
    }
}

/// A path within `provider_config` as the request's field.
fn request_field(field: &str) -> String {
    if field.is_empty() {
        "provider_config".into()
    } else {
        format!("provider_config.{field}")
    }
}

/// What a provider can do beyond sending text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Honours Herald's message id as an idempotency key: a send repeated after a crash does
    /// not reach the phone twice.
    pub idempotency_keys: bool,
    /// Can show "typing…" during the typing delay (WhatsApp: to a person who wrote within the
    /// customer-service window).
    pub typing_indicator: bool,
    /// Sends the platform's approved templates (WhatsApp's).
    pub templates: bool,
    /// Sends media by URL.
    pub media: bool,
    /// Free-form messages reach a person only within 24 hours of their last message (WhatsApp's
    /// customer-service window); outside it only templates go out.
    pub customer_service_window: bool,
}

/// A request to `/v1/callbacks/{sender_id}`, as the sender's provider module reads it.
pub struct CallbackRequest<'a> {
    pub headers: &'a reqwest::header::HeaderMap,
    /// The query string, undecoded: a `GET`'s challenge, or the token in the URL of a platform
    /// that signs nothing.
    pub query: Option<&'a str>,
    pub body: &'a [u8],
    pub now: chrono::DateTime<chrono::Utc>,
}

/// The sender a callback is addressed to: what its signature is checked against.
pub struct CallbackSender<'a> {
    /// Herald's own per-sender secret (the `sandbox` and `http` providers sign with it).
    pub callback_secret: &'a str,
    /// The sender's provider configuration (a platform's app secret or verify token).
    pub config: &'a Value,
}

/// Why a callback was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// Not from the platform: a bad or stale signature. Answered 401.
    #[error("{0}")]
    Unauthenticated(String),
    /// A challenge with the wrong token. Answered 403.
    #[error("{0}")]
    Forbidden(String),
    /// Not JSON at all. Answered 400.
    #[error("{0}")]
    Malformed(String),
    /// JSON, but not the platform's shape. Answered 422 naming the field.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The platform verifies its webhook with no `GET`.
    #[error("this provider's callbacks are POSTed; there is no challenge to answer")]
    NoChallenge,
}

/// One platform: everything Herald knows of it.
pub trait ProviderModule: Send + Sync {
    /// The platform this module speaks for.
    fn kind(&self) -> ProviderKind;

    /// The name senders use in `provider`.
    fn name(&self) -> &'static str {
        self.kind().as_str()
    }

    fn capabilities(&self) -> Capabilities;

    /// The platform's documented throughput per sender, in sends a minute: a sender's pace
    /// when its own pacing sets none.
    fn default_rate_per_minute(&self) -> Option<u32> {
        None
    }

    /// Where the configuration's secrets are, as JSON pointers whose `*` matches every key or
    /// index at its level (`/headers/*`, `/auth/token`): they are shown as `"***"`, never as
    /// themselves.
    fn secrets(&self) -> &'static [&'static str] {
        &[]
    }

    /// Reads and checks a configuration and builds the sending side of one sender.
    fn build(
        &self,
        config: &Value,
        context: &ProviderContext,
    ) -> Result<Arc<dyn Provider>, ProviderConfigError>;

    /// Checks that a callback comes from the platform, for this sender. Herald's own scheme
    /// unless the platform has its own.
    fn verify_callback(
        &self,
        request: &CallbackRequest<'_>,
        sender: &CallbackSender<'_>,
    ) -> Result<(), CallbackError> {
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|value| value.to_str().ok())
        };
        callback::verify_signature(
            sender.callback_secret,
            header("x-herald-timestamp"),
            header("x-herald-signature"),
            request.body,
            request.now,
        )
        .map_err(|error| CallbackError::Unauthenticated(error.to_string()))
    }

    /// Reads a verified callback's body into Herald's events. Herald's own format unless the
    /// platform has its own.
    fn parse_callback(&self, body: &[u8]) -> Result<Vec<CallbackEvent>, CallbackError> {
        serde_json::from_slice::<CallbackPayload>(body)
            .map(|payload| payload.events)
            .map_err(|error| {
                if error.is_syntax() || error.is_eof() {
                    CallbackError::Malformed(format!("the body is not valid JSON: {error}"))
                } else {
                    CallbackError::Invalid {
                        field: "events".into(),
                        message: error.to_string(),
                    }
                }
            })
    }

    /// The poller of a platform whose inbound messages are fetched, not pushed; `None` for
    /// those that call Herald back.
    fn poller(
        &self,
        _config: &Value,
        _context: &ProviderContext,
    ) -> Result<Option<Arc<dyn Poller>>, ProviderConfigError> {
        Ok(None)
    }

    /// Whether [`ProviderModule::poller`] gives one.
    fn polls_inbound(&self) -> bool {
        false
    }

    /// Answers a platform's `GET` verification of the webhook (Meta's `hub.challenge`) with the
    /// body to return.
    fn challenge(
        &self,
        _request: &CallbackRequest<'_>,
        _sender: &CallbackSender<'_>,
    ) -> Result<String, CallbackError> {
        Err(CallbackError::NoChallenge)
    }
}

/// The inbound side of a platform that pushes nothing (MazBot): the engine asks it every
/// [`Poller::every`] what happened since the sender's stored cursors.
pub trait Poller: Send + Sync {
    /// How long between two polls of one sender.
    fn every(&self) -> Duration;

    /// The events since `cursors`, with the cursors to store in the same transaction.
    fn poll<'a>(
        &'a self,
        cursors: &'a std::collections::HashMap<String, String>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> BoxFuture<'a, Result<Polled, SendError>>;
}

/// What one poll brought.
#[derive(Debug, Default, PartialEq)]
pub struct Polled {
    pub events: Vec<CallbackEvent>,
    /// `(name, value)`, stored with the events.
    pub cursors: Vec<(String, String)>,
}

/// Every provider Herald has, one per kind.
pub fn modules() -> impl Iterator<Item = &'static dyn ProviderModule> {
    ProviderKind::ALL.iter().map(|kind| module_of(*kind))
}

/// The names senders may use in `provider`.
pub fn names() -> Vec<&'static str> {
    modules().map(|module| module.name()).collect()
}

/// The module called `name`.
pub fn module(name: &str) -> Result<&'static dyn ProviderModule, ProviderConfigError> {
    modules()
        .find(|module| module.name() == name)
        .ok_or_else(|| ProviderConfigError::Unknown(name.to_owned()))
}

/// The module of `kind`: the match is exhaustive, so a kind without a module does not compile.
pub fn module_of(kind: ProviderKind) -> &'static dyn ProviderModule {
    match kind {
        ProviderKind::Sandbox => &sandbox::SandboxModule,
        ProviderKind::Http => &http::HttpModule,
        ProviderKind::WhatsappCloud => &whatsapp_cloud::WhatsAppCloudModule,
        ProviderKind::Zagely => &zagely::ZagelyModule,
        ProviderKind::Botbiz => &botbiz::BotbizModule,
        ProviderKind::Chattu => &chattu::ChattuModule,
        ProviderKind::Mavibot => &mavibot::MavibotModule,
        ProviderKind::Mazbot => &mazbot::MazbotModule,
    }
}

/// Builds the provider a sender's settings describe.
pub fn build(
    provider: ProviderKind,
    config: &Value,
    context: &ProviderContext,
) -> Result<Arc<dyn Provider>, ProviderConfigError> {
    module_of(provider).build(config, context)
}

/// Checks a sender's provider settings without keeping the provider; the URLs in them pass
/// `url_guard`.
pub fn validate(
    provider: ProviderKind,
    config: &Value,
    url_guard: UrlGuard,
) -> Result<(), ProviderConfigError> {
    let (events, _) = tokio::sync::mpsc::channel(1);
    build(
        provider,
        config,
        &ProviderContext::new(reqwest::Client::new(), events, None).with_url_guard(url_guard),
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
    /// What a configuration's URLs must pass: strict unless the operator allows private ones.
    pub url_guard: UrlGuard,
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
            url_guard: UrlGuard::STRICT,
        }
    }

    pub fn with_url_guard(self, url_guard: UrlGuard) -> Self {
        Self { url_guard, ..self }
    }

    pub fn for_sender(&self, sender: crate::domain::ids::SenderId) -> Self {
        Self {
            sender: Some(sender),
            ..self.clone()
        }
    }
}

/// Reads a provider configuration into the module's typed form: a wrong type or an unknown
/// field (a typo would otherwise be ignored in silence) is an error naming its path.
pub fn typed_config<T: serde::de::DeserializeOwned>(
    config: &Value,
) -> Result<T, ProviderConfigError> {
    let config = match config {
        Value::Null => Value::Object(serde_json::Map::new()),
        Value::Object(_) => config.clone(),
        _ => {
            return Err(ProviderConfigError::Invalid {
                field: "".into(),
                message: "must be an object".into(),
            });
        }
    };
    serde_path_to_error::deserialize(config).map_err(|error| {
        let field = error.path().to_string();
        let message = error.into_inner().to_string();
        ProviderConfigError::Invalid {
            // An unknown field is named by serde's message; the path is then the object's.
            field: if field == "." { String::new() } else { field },
            message,
        }
    })
}

/// A field's check: `Ok` or the error naming it.
fn invalid(field: &str, message: impl Into<String>) -> ProviderConfigError {
    ProviderConfigError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_names_each_module_once() {
        let names = names();
        assert_eq!(
            names,
            [
                "sandbox",
                "http",
                "whatsapp_cloud",
                "zagely",
                "botbiz",
                "chattu",
                "mavibot",
                "mazbot"
            ]
        );
        for name in &names {
            assert_eq!(module(name).map(|m| m.name()), Ok(*name));
        }
        for kind in ProviderKind::ALL {
            assert_eq!(
                module_of(*kind).kind(),
                *kind,
                "{kind}'s module speaks for it"
            );
        }
        assert!(module("http").unwrap().capabilities().idempotency_keys);
        assert!(!module("sandbox").unwrap().capabilities().typing_indicator);
        let unknown = module("fax").map(|m| m.name()).unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "unknown provider 'fax'; available: sandbox, http, whatsapp_cloud, zagely, botbiz, chattu, mavibot, mazbot"
        );
    }

    #[test]
    fn configurations_are_typed_and_a_typo_is_refused() {
        let typo = validate(
            ProviderKind::Sandbox,
            &serde_json::json!({"deliver_rat": 0.5}),
            UrlGuard::STRICT,
        )
        .unwrap_err();
        assert!(
            typo.to_string()
                .starts_with("provider_config.deliver_rat: unknown field `deliver_rat`"),
            "{typo}"
        );
        let nested = validate(
            ProviderKind::Http,
            &serde_json::json!({"url": "http://gateway", "headers": {"X-Key": 7}}),
            UrlGuard::STRICT,
        )
        .unwrap_err();
        assert!(
            matches!(&nested, ProviderConfigError::Invalid { field, .. } if field == "headers.X-Key"),
            "{nested:?}"
        );
        let not_an_object = validate(
            ProviderKind::Sandbox,
            &serde_json::json!([1]),
            UrlGuard::STRICT,
        )
        .unwrap_err();
        assert_eq!(
            not_an_object.to_string(),
            "provider_config: must be an object"
        );
    }

    #[test]
    fn unknown_providers_and_bad_settings_are_named() {
        assert_eq!(
            module("carrier-pigeon").map(|m| m.name()).unwrap_err(),
            ProviderConfigError::Unknown("carrier-pigeon".into())
        );
        let error = validate(
            ProviderKind::Sandbox,
            &serde_json::json!({"fail_rate": -1}),
            UrlGuard::STRICT,
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("provider_config.fail_rate"),
            "{error}"
        );
    }
}
