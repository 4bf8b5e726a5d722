//! Chattu: messages are POSTed to `{api_base}/api/send-message` with the account's `x-api-key`,
//! the WhatsApp client that sends (`clientId`) and the number in digits without `+`; media by
//! URL goes beside the text. Chattu runs on each customer's own address, so `api_base` has no
//! default. Its webhooks carry the client's API key in `X-Api-Key`: that key is what they are
//! checked against.

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
use crate::domain::callback::{CallbackEvent, StatusKind};
use crate::domain::provider::ProviderKind;

const SEND_PATH: &str = "/api/send-message";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

pub struct ChattuModule;

impl ProviderModule for ChattuModule {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Chattu
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
        &["/api_key", "/client_api_key"]
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
            "the account's API key, from Chattu's account settings",
        );
        let client_id = problems.required(
            "client_id",
            input.client_id,
            "the WhatsApp client that sends, as GET /api/clients lists it",
        );
        if input
            .client_api_key
            .as_deref()
            .is_some_and(|key| key.trim().is_empty())
        {
            problems.push("client_api_key", "must not be empty");
        }
        let base = problems.base_url("api_base", input.api_base, None, context.url_guard);
        problems.finish()?;
        let (Some(api_key), Some(client_id), Some(base)) = (api_key, client_id, base) else {
            return Err(platform::incomplete());
        };
        Ok(Arc::new(Chattu {
            client: context.http.clone(),
            send_url: platform::endpoint(&base, SEND_PATH),
            api_key,
            client_id,
            timeout: platform::timeout(input.timeout_ms, DEFAULT_TIMEOUT),
        }))
    }

    /// Chattu signs nothing: its webhook carries the client's API key in `X-Api-Key`, compared
    /// in constant time with `client_api_key` (the account's `api_key` when unset).
    fn verify_callback(
        &self,
        request: &CallbackRequest<'_>,
        sender: &CallbackSender<'_>,
    ) -> Result<(), CallbackError> {
        let expected = ["client_api_key", "api_key"]
            .iter()
            .find_map(|name| {
                sender
                    .config
                    .get(*name)
                    .and_then(Value::as_str)
                    .filter(|key| !key.is_empty())
            })
            .ok_or_else(|| CallbackError::Unauthenticated("the sender has no API key".into()))?;
        let given = platform::header(request.headers, "x-api-key")
            .ok_or_else(|| CallbackError::Unauthenticated("missing X-Api-Key".into()))?;
        if platform::same_secret(given, expected) {
            Ok(())
        } else {
            Err(CallbackError::Unauthenticated(
                "X-Api-Key is not the client's key".into(),
            ))
        }
    }

    fn parse_callback(&self, body: &[u8]) -> Result<Vec<CallbackEvent>, CallbackError> {
        let event: Event = platform::json_body(body, "event")?;
        Ok(event.into_event().into_iter().collect())
    }
}

/// `provider_config` of a `chattu` sender, as given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigInput {
    api_key: Option<String>,
    client_id: Option<String>,
    /// The client's own key, which Chattu's webhooks carry; the account's when unset.
    client_api_key: Option<String>,
    api_base: Option<String>,
    timeout_ms: Option<u64>,
}

struct Chattu {
    client: reqwest::Client,
    send_url: reqwest::Url,
    api_key: String,
    client_id: String,
    timeout: Duration,
}

impl Chattu {
    fn body(&self, message: &Outbound<'_>) -> Value {
        let number: String = message.to.chars().filter(char::is_ascii_digit).collect();
        let mut body = json!({"clientId": self.client_id, "number": number,
                              "message": message.body});
        if let Some(link) = message.media_url {
            body["mediaUrl"] = json!(link);
        }
        body
    }
}

impl Provider for Chattu {
    fn send_timeout(&self) -> Duration {
        self.timeout
    }

    fn send<'a>(&'a self, message: &'a Outbound<'a>) -> BoxFuture<'a, Result<Accepted, SendError>> {
        Box::pin(async move {
            let request = self
                .client
                .post(self.send_url.clone())
                .header("x-api-key", &self.api_key);
            let answer = platform::post_json(request, &self.body(message), self.timeout).await?;
            // Chattu answers some failures with 200 and `"success": false`.
            let refused_in_body = answer.body.get("success") == Some(&Value::Bool(false));
            platform::accepted_or_refused(
                &answer,
                refused_in_body,
                &[
                    "/message/id/_serialized",
                    "/messageId",
                    "/id/_serialized",
                    "/id",
                ],
                |body| platform::error_text(body, &["/error", "/message", "/error/message"]),
            )
        })
    }
}

/// One webhook: `{"event", "data"}`.
#[derive(Debug, Deserialize)]
struct Event {
    event: String,
    #[serde(default)]
    data: Value,
}

impl Event {
    /// `message_received` is an inbound message; `message_sent` confirms a send, matched by its
    /// id where the event carries one (Chattu's example has none: the send's own answer already
    /// recorded it). `call_rejected` and the rest are ignored.
    fn into_event(self) -> Option<CallbackEvent> {
        let data = &self.data;
        let at = platform::instant(data.get("timestamp")).unwrap_or_else(Utc::now);
        match self.event.as_str() {
            "message_received" => {
                let from = platform::id_at(data, &["/from"])?;
                Some(CallbackEvent::Inbound {
                    from: platform::e164(&from),
                    body: platform::id_at(data, &["/body", "/message"]).unwrap_or_default(),
                    at,
                    name: platform::id_at(data, &["/name", "/notifyName"]),
                    id: platform::id_at(data, &["/id/_serialized", "/messageId", "/id"]),
                })
            }
            "message_sent" => Some(CallbackEvent::Status {
                reference: platform::id_at(data, &["/id/_serialized", "/messageId", "/id"])?,
                kind: StatusKind::Sent,
                at,
                error: None,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_events_become_herald_events() {
        let parse = |body: Value| ChattuModule.parse_callback(body.to_string().as_bytes());
        let received = parse(json!({"event": "message_received", "data": {
            "from": "1234567890", "to": "client-id", "body": "Hello, this is a test message",
            "message": "Hello, this is a test message", "timestamp": 1_699_123_456_789_i64,
            "type": "received_message"}}))
        .unwrap();
        assert_eq!(
            received,
            [CallbackEvent::Inbound {
                from: "+1234567890".into(),
                body: "Hello, this is a test message".into(),
                at: chrono::DateTime::from_timestamp_millis(1_699_123_456_789).unwrap(),
                name: None,
                id: None,
            }]
        );
        // The documented `message_sent` names no message: nothing to match, nothing to count.
        let sent = parse(
            json!({"event": "message_sent", "data": {"from": "client-id",
            "to": "1234567890", "body": "Hello from the API", "timestamp": 1_699_123_456_789_i64,
            "type": "sent_message"}}),
        )
        .unwrap();
        assert_eq!(sent, []);
        let call = parse(json!({"event": "call_rejected", "data": {"from": "1"}})).unwrap();
        assert_eq!(call, []);
    }
}
