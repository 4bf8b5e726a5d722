//! Botbiz: messages are POSTed to `{api_base}/whatsapp/messages` with the API key as a bearer
//! token, one message a request: `content` is the text or, for media, its URL. Its plans limit
//! requests per key (the free plan's 60 a minute is a sender's default pace), and a `429`'s
//! `X-RateLimit-Reset` holds the lane until then. Webhooks carry `X-Botbiz-Signature`.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use reqwest::header::AUTHORIZATION;
use serde::Deserialize;
use serde_json::{Value, json};

use super::platform::{self, Problems};
use super::{
    Accepted, BoxFuture, CallbackError, CallbackRequest, CallbackSender, Capabilities, Outbound,
    Provider, ProviderConfigError, ProviderContext, ProviderModule, SendError,
};
use crate::domain::callback::{CallbackEvent, StatusKind};
use crate::domain::provider::ProviderKind;

const DEFAULT_API_BASE: &str = "https://api.botbiz.io/v1";
const SEND_PATH: &str = "/whatsapp/messages";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
/// The free plan's limit; a paid plan's sender raises its own `rate_per_minute`.
const FREE_PLAN_PER_MINUTE: u32 = 60;

pub struct BotbizModule;

impl ProviderModule for BotbizModule {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Botbiz
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            idempotency_keys: false,
            typing_indicator: false,
            templates: false,
            media: true,
            customer_service_window: false,
        }
    }

    fn secrets(&self) -> &'static [&'static str] {
        &["/api_key", "/webhook_secret"]
    }

    fn default_rate_per_minute(&self) -> Option<u32> {
        Some(FREE_PLAN_PER_MINUTE)
    }

    fn build(
        &self,
        config: &Value,
        context: &ProviderContext,
    ) -> Result<Arc<dyn Provider>, ProviderConfigError> {
        let input: ConfigInput = super::typed_config(config)?;
        let mut problems = Problems::default();
        let api_key = problems.required(
            "api_key",
            input.api_key,
            "an API key from Botbiz's dashboard",
        );
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
        let (Some(api_key), Some(base)) = (api_key, base) else {
            return Err(platform::incomplete());
        };
        Ok(Arc::new(Botbiz {
            client: context.http.clone(),
            send_url: platform::endpoint(&base, SEND_PATH),
            authorization: format!("Bearer {api_key}"),
            timeout: platform::timeout(input.timeout_ms, DEFAULT_TIMEOUT),
        }))
    }

    /// Botbiz names the header but not its encoding; this reads it the most common way, a hex
    /// HMAC-SHA256 of the raw body with the webhook's secret, with or without `sha256=`.
    fn verify_callback(
        &self,
        request: &CallbackRequest<'_>,
        sender: &CallbackSender<'_>,
    ) -> Result<(), CallbackError> {
        let secret = platform::callback_secret(sender.config, "webhook_secret")?;
        let claimed = platform::header(request.headers, "x-botbiz-signature")
            .ok_or_else(|| CallbackError::Unauthenticated("missing X-Botbiz-Signature".into()))?;
        if platform::hmac_sha256_matches(secret, &[request.body], claimed) {
            Ok(())
        } else {
            Err(CallbackError::Unauthenticated(
                "the signature does not match".into(),
            ))
        }
    }

    fn parse_callback(&self, body: &[u8]) -> Result<Vec<CallbackEvent>, CallbackError> {
        let event: Event = platform::json_body(body, "type")?;
        Ok(event.into_event().into_iter().collect())
    }
}

/// `provider_config` of a `botbiz` sender, as given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigInput {
    api_key: Option<String>,
    /// Signs Botbiz's webhooks to `/v1/callbacks/{sender_id}`; without it they are refused.
    webhook_secret: Option<String>,
    api_base: Option<String>,
    timeout_ms: Option<u64>,
}

struct Botbiz {
    client: reqwest::Client,
    send_url: reqwest::Url,
    authorization: String,
    timeout: Duration,
}

impl Botbiz {
    async fn post(&self, body: &Value) -> Result<Accepted, SendError> {
        let request = self
            .client
            .post(self.send_url.clone())
            .header(AUTHORIZATION, &self.authorization);
        let answer = platform::post_json(request, body, self.timeout).await?;
        platform::accepted_or_refused(
            &answer,
            false,
            &["/id", "/message_id", "/data/id", "/data/message_id"],
            platform::coded_error,
        )
    }
}

impl Provider for Botbiz {
    fn send_timeout(&self) -> Duration {
        // A message with media is two requests.
        self.timeout * 2
    }

    /// Text is one request. Botbiz's `content` holds either text or a media URL, so a message
    /// with both is its media, then its text; the text's id is the message's.
    fn send<'a>(&'a self, message: &'a Outbound<'a>) -> BoxFuture<'a, Result<Accepted, SendError>> {
        Box::pin(async move {
            if let Some(link) = message.media_url {
                let media = json!({"to": message.to,
                                   "type": super::whatsapp_cloud::media_kind(link),
                                   "content": link});
                let sent = self.post(&media).await?;
                if message.body.is_empty() {
                    return Ok(sent);
                }
            }
            self.post(&json!({"to": message.to, "type": "text", "content": message.body}))
                .await
        })
    }
}

/// One webhook: `{"id", "type", "created", "data"}`.
#[derive(Debug, Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    created: Option<Value>,
    #[serde(default)]
    data: Value,
}

impl Event {
    /// Botbiz documents `whatsapp.message.received`; its message statuses are read from
    /// `whatsapp.message.{sent,delivered,read,failed}` with the message's `message_id`. Other
    /// events (accounts, subscribers) are ignored.
    fn into_event(self) -> Option<CallbackEvent> {
        let data = &self.data;
        let at = platform::instant(data.get("timestamp"))
            .or_else(|| platform::instant(self.created.as_ref()))
            .unwrap_or_else(Utc::now);
        let kind = match self.kind.as_str() {
            "whatsapp.message.received" => {
                let from = platform::id_at(data, &["/from"])?;
                return Some(CallbackEvent::Inbound {
                    from: platform::e164(&from),
                    body: platform::id_at(data, &["/content", "/text"]).unwrap_or_default(),
                    at,
                    name: platform::id_at(data, &["/name", "/profile/name"]),
                    id: platform::id_at(data, &["/message_id"]).or(self.id),
                });
            }
            "whatsapp.message.sent" => StatusKind::Sent,
            "whatsapp.message.delivered" => StatusKind::Delivered,
            "whatsapp.message.read" => StatusKind::Read,
            "whatsapp.message.failed" => StatusKind::Failed,
            _ => return None,
        };
        let reference = platform::id_at(data, &["/message_id", "/id"])?;
        let error = (kind == StatusKind::Failed).then(|| {
            platform::id_at(data, &["/error/message", "/error", "/reason"])
                .unwrap_or_else(|| "failed at Botbiz".to_owned())
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

    #[test]
    fn the_documented_inbound_message_becomes_herald_inbound() {
        let body = json!({"id": "evt_12345", "type": "whatsapp.message.received",
            "created": 1_681_036_800,
            "data": {"account_id": "wha_67890", "message_id": "msg_54321", "from": "+1234567890",
                     "type": "text", "content": "Hello, I need help with my order.",
                     "timestamp": "2023-04-09T10:00:00Z"}});
        let events = BotbizModule
            .parse_callback(body.to_string().as_bytes())
            .unwrap();
        assert_eq!(
            events,
            [CallbackEvent::Inbound {
                from: "+1234567890".into(),
                body: "Hello, I need help with my order.".into(),
                at: "2023-04-09T10:00:00Z".parse().unwrap(),
                name: None,
                id: Some("msg_54321".into()),
            }]
        );
        let unknown = json!({"id": "evt_2", "type": "subscriber.created", "data": {}});
        assert_eq!(
            BotbizModule
                .parse_callback(unknown.to_string().as_bytes())
                .unwrap(),
            []
        );
    }
}
