//! Zagely: messages are POSTed to `{api_base}/api/v1/messages/send` with the key pair
//! (`X-Public-Key`, `X-Secret-Key`) and Herald's message id as the `Idempotency-Key`, which
//! Zagely honours for 24 hours, so a send repeated after a crash does not reach the phone twice.
//! Its webhooks are signed like Herald's own: `X-Zagely-Signature: sha256=<hex HMAC-SHA256 of
//! "{X-Zagely-Timestamp}.{raw body}">` with the webhook's secret.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::platform::{self, Problems};
use super::{
    Accepted, BoxFuture, CallbackError, CallbackRequest, CallbackSender, Capabilities, Outbound,
    Provider, ProviderConfigError, ProviderContext, ProviderModule, SendError,
};
use crate::domain::callback::{self, CallbackEvent, StatusKind};
use crate::domain::provider::ProviderKind;

const DEFAULT_API_BASE: &str = "https://zagely.com";
const SEND_PATH: &str = "/api/v1/messages/send";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

pub struct ZagelyModule;

impl ProviderModule for ZagelyModule {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Zagely
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            idempotency_keys: true,
            typing_indicator: false,
            templates: false,
            media: true,
            customer_service_window: false,
        }
    }

    fn secrets(&self) -> &'static [&'static str] {
        &["/secret_key", "/webhook_secret"]
    }

    fn build(
        &self,
        config: &Value,
        context: &ProviderContext,
    ) -> Result<Arc<dyn Provider>, ProviderConfigError> {
        let input: ConfigInput = super::typed_config(config)?;
        let mut problems = Problems::default();
        let public_key = problems.required(
            "public_key",
            input.public_key,
            "the key pair's public key (pk_…), from Zagely's API keys page",
        );
        let secret_key = problems.required(
            "secret_key",
            input.secret_key,
            "the key pair's secret key (sk_…), shown once when the pair is made",
        );
        if public_key
            .as_deref()
            .is_some_and(|key| !key.starts_with("pk_"))
        {
            problems.push("public_key", "must start with pk_");
        }
        if secret_key
            .as_deref()
            .is_some_and(|key| !key.starts_with("sk_"))
        {
            problems.push("secret_key", "must start with sk_");
        }
        if let Some(session) = &input.session_id
            && uuid::Uuid::parse_str(session.trim()).is_err()
        {
            problems.push("session_id", "must be the WhatsApp session's UUID");
        }
        if input
            .webhook_secret
            .as_deref()
            .is_some_and(|secret| secret.trim().is_empty())
        {
            problems.push("webhook_secret", "must not be empty");
        }
        let base = problems.base_url(
            "api_base",
            input.api_base,
            Some(DEFAULT_API_BASE),
            context.url_guard,
        );
        problems.finish()?;
        let (Some(public_key), Some(secret_key), Some(base)) = (public_key, secret_key, base)
        else {
            return Err(platform::incomplete());
        };
        Ok(Arc::new(Zagely {
            client: context.http.clone(),
            send_url: platform::endpoint(&base, SEND_PATH),
            public_key,
            secret_key,
            session_id: input.session_id.map(|id| id.trim().to_owned()),
            timeout: platform::timeout(input.timeout_ms, DEFAULT_TIMEOUT),
        }))
    }

    fn verify_callback(
        &self,
        request: &CallbackRequest<'_>,
        sender: &CallbackSender<'_>,
    ) -> Result<(), CallbackError> {
        let secret = platform::callback_secret(sender.config, "webhook_secret")?;
        callback::verify_signature(
            secret,
            platform::header(request.headers, "x-zagely-timestamp"),
            platform::header(request.headers, "x-zagely-signature"),
            request.body,
            request.now,
        )
        .map_err(|error| match error {
            callback::SignatureError::Missing => CallbackError::Unauthenticated(
                "missing X-Zagely-Timestamp or X-Zagely-Signature".into(),
            ),
            other => CallbackError::Unauthenticated(other.to_string()),
        })
    }

    fn parse_callback(&self, body: &[u8]) -> Result<Vec<CallbackEvent>, CallbackError> {
        let event: Event = platform::json_body(body, "event")?;
        Ok(event.into_event().into_iter().collect())
    }
}

/// `provider_config` of a `zagely` sender, as given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigInput {
    public_key: Option<String>,
    secret_key: Option<String>,
    /// Optional when the key pair is bound to one session.
    session_id: Option<String>,
    /// Signs Zagely's webhooks to `/v1/callbacks/{sender_id}`; without it they are refused.
    webhook_secret: Option<String>,
    api_base: Option<String>,
    timeout_ms: Option<u64>,
}

struct Zagely {
    client: reqwest::Client,
    send_url: reqwest::Url,
    public_key: String,
    secret_key: String,
    session_id: Option<String>,
    timeout: Duration,
}

impl Zagely {
    /// Zagely's body: text, or media by URL with the text beside it.
    fn body(&self, message: &Outbound<'_>) -> Value {
        let mut body = json!({"channel": "whatsapp", "to": message.to});
        if let Some(session) = &self.session_id {
            body["session_id"] = json!(session);
        }
        if let Some(link) = message.media_url {
            body["type"] = json!(super::whatsapp_cloud::media_kind(link));
            body["media_url"] = json!(link);
        }
        if !message.body.is_empty() || message.media_url.is_none() {
            body["message"] = json!(message.body);
        }
        body
    }
}

impl Provider for Zagely {
    fn send_timeout(&self) -> Duration {
        self.timeout
    }

    fn send<'a>(&'a self, message: &'a Outbound<'a>) -> BoxFuture<'a, Result<Accepted, SendError>> {
        Box::pin(async move {
            let request = self
                .client
                .post(self.send_url.clone())
                .header("X-Public-Key", &self.public_key)
                .header("X-Secret-Key", &self.secret_key)
                .header("Idempotency-Key", message.id.to_string());
            let answer = platform::post_json(request, &self.body(message), self.timeout).await?;
            platform::accepted_or_refused(
                &answer,
                false,
                &["/message_id", "/data/message_id", "/id"],
                platform::coded_error,
            )
        })
    }
}

/// One webhook delivery: `{"event", "delivery_id", "occurred_at", "data"}`.
#[derive(Debug, Deserialize)]
struct Event {
    event: String,
    #[serde(default)]
    delivery_id: Option<String>,
    #[serde(default)]
    occurred_at: Option<Value>,
    #[serde(default)]
    data: Value,
}

impl Event {
    /// Herald's event for Zagely's, or nothing for events Herald has no use for (campaigns,
    /// sessions, contacts). Zagely documents `message.received`'s data (`contact`, `content`);
    /// its status events are read the same way, the message by `message_id` (or `id`).
    fn into_event(self) -> Option<CallbackEvent> {
        let at = platform::instant(self.occurred_at.as_ref()).unwrap_or_else(Utc::now);
        let data = &self.data;
        let kind = match self.event.as_str() {
            "message.received" => {
                let from = platform::id_at(
                    data,
                    &["/contact/phone_number", "/from", "/phone_number", "/to"],
                )?;
                let body =
                    platform::id_at(data, &["/content", "/message", "/body"]).unwrap_or_default();
                return Some(CallbackEvent::Inbound {
                    from: platform::e164(&from),
                    body,
                    at,
                    name: platform::id_at(data, &["/contact/name"]),
                    id: platform::id_at(data, &["/message_id", "/id"]).or(self.delivery_id),
                });
            }
            "message.sent" => StatusKind::Sent,
            "message.delivered" => StatusKind::Delivered,
            "message.read" => StatusKind::Read,
            "message.failed" => StatusKind::Failed,
            _ => return None,
        };
        let reference = platform::id_at(data, &["/message_id", "/id", "/message/id"])?;
        let error = (kind == StatusKind::Failed).then(|| {
            platform::id_at(data, &["/error", "/error/message", "/reason"])
                .unwrap_or_else(|| "failed at Zagely".to_owned())
        });
        Some(CallbackEvent::Status {
            reference,
            kind,
            at,
            error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url_guard::UrlGuard;

    fn build(config: Value) -> Result<Arc<dyn Provider>, ProviderConfigError> {
        super::super::validate(ProviderKind::Zagely, &config, UrlGuard::STRICT)
            .map(|()| ZagelyModule.build(&config, &context()).unwrap())
    }

    fn context() -> ProviderContext {
        let (events, _) = tokio::sync::mpsc::channel(1);
        ProviderContext::new(reqwest::Client::new(), events, None)
    }

    #[test]
    fn a_configuration_names_every_missing_or_wrong_field() {
        let error = build(json!({"public_key": "xx", "session_id": "main"}))
            .err()
            .unwrap();
        let fields: Vec<String> = error.field_messages().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "provider_config.secret_key",
                "provider_config.public_key",
                "provider_config.session_id"
            ]
        );
        assert!(build(json!({"public_key": "pk_1", "secret_key": "sk_1"})).is_ok());
    }

    #[test]
    fn text_and_media_go_in_zagelys_body() {
        let zagely = Zagely {
            client: reqwest::Client::new(),
            send_url: reqwest::Url::parse("https://zagely.com/api/v1/messages/send").unwrap(),
            public_key: "pk_1".into(),
            secret_key: "sk_1".into(),
            session_id: Some("11111111-2222-3333-4444-555555555555".into()),
            timeout: DEFAULT_TIMEOUT,
        };
        let id = crate::domain::ids::MessageId::generate();
        let text = Outbound {
            id,
            to: "+15551234567",
            body: "Hello",
            media_url: None,
            template: None,
        };
        assert_eq!(
            zagely.body(&text),
            json!({"channel": "whatsapp", "to": "+15551234567", "message": "Hello",
                   "session_id": "11111111-2222-3333-4444-555555555555"})
        );
        let image = Outbound {
            media_url: Some("https://example.com/promo.jpg?v=2"),
            ..text
        };
        assert_eq!(
            zagely.body(&image),
            json!({"channel": "whatsapp", "to": "+15551234567", "message": "Hello",
                   "session_id": "11111111-2222-3333-4444-555555555555",
                   "type": "image", "media_url": "https://example.com/promo.jpg?v=2"})
        );
    }

    #[test]
    fn webhook_events_become_herald_events_and_others_are_ignored() {
        let parse = |body: Value| ZagelyModule.parse_callback(body.to_string().as_bytes());
        let received = parse(json!({"event": "message.received", "tenant_id": "t",
            "delivery_id": "d-1", "occurred_at": "2026-04-21T10:30:00Z",
            "data": {"contact": {"id": "c", "name": "Jane Doe", "phone_number": "+15551234567",
                                 "email": null},
                     "channel": "whatsapp", "content": "Hello, I need help with my order."}}))
        .unwrap();
        assert_eq!(
            received,
            [CallbackEvent::Inbound {
                from: "+15551234567".into(),
                body: "Hello, I need help with my order.".into(),
                at: "2026-04-21T10:30:00Z".parse().unwrap(),
                name: Some("Jane Doe".into()),
                id: Some("d-1".into()),
            }]
        );
        let failed = parse(
            json!({"event": "message.failed", "occurred_at": "2026-04-21T10:31:00Z",
            "data": {"message_id": "m-9", "error": "number not on WhatsApp"}}),
        )
        .unwrap();
        assert_eq!(
            failed,
            [CallbackEvent::Status {
                reference: "m-9".into(),
                kind: StatusKind::Failed,
                at: "2026-04-21T10:31:00Z".parse().unwrap(),
                error: Some("number not on WhatsApp".into()),
            }]
        );
        assert_eq!(
            parse(json!({"event": "session.connected", "data": {}})).unwrap(),
            []
        );
        assert!(matches!(
            ZagelyModule.parse_callback(b"{"),
            Err(CallbackError::Malformed(_))
        ));
    }
}
