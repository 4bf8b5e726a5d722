//! Mavibot: every call is a `POST` to `{api_base}/api/{api_key}/{action}`, the key in the path.
//! A message goes through the `whatsapp_message` action, from the connected WhatsApp bot
//! (`whatsapp_bot_id`) to a number in digits, media as an attachment by URL. Its broadcasts keep
//! 0.2 s between messages, which is a sender's default pace here. Mavibot POSTs every message,
//! both ways, to the project's webhook, unsigned: the URL given to it carries the sender's
//! callback secret (`/v1/callbacks/{sender_id}?token=<callback_secret>`), checked in constant
//! time.

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

const DEFAULT_API_BASE: &str = "https://chatter.mavibot.ai";
const SEND_ACTION: &str = "whatsapp_message";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
/// Mavibot's broadcasts wait 0.2 s between messages by default: 300 a minute.
const BROADCAST_PER_MINUTE: u32 = 300;

pub struct MavibotModule;

impl ProviderModule for MavibotModule {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Mavibot
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
        &["/api_key"]
    }

    fn default_rate_per_minute(&self) -> Option<u32> {
        Some(BROADCAST_PER_MINUTE)
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
            "the project's API key, from its settings",
        );
        if api_key.as_deref().is_some_and(|key| {
            !key.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        }) {
            problems.push(
                "api_key",
                "must be letters, digits, '-' or '_' (it is a path segment)",
            );
        }
        let bot = match input.whatsapp_bot_id {
            Some(Value::Number(id)) if id.as_u64().is_some() => Some(Value::Number(id)),
            Some(Value::String(id)) if !id.trim().is_empty() => {
                Some(Value::String(id.trim().to_owned()))
            }
            Some(_) => {
                problems.push(
                    "whatsapp_bot_id",
                    "must be the bot's id from Messengers and chats",
                );
                None
            }
            None => {
                problems.push(
                    "whatsapp_bot_id",
                    "is required: the connected WhatsApp bot's id, from Messengers and chats",
                );
                None
            }
        };
        let base = problems.base_url(
            "api_base",
            input.api_base,
            Some(DEFAULT_API_BASE),
            context.url_guard,
        );
        problems.finish()?;
        let (Some(api_key), Some(bot), Some(base)) = (api_key, bot, base) else {
            return Err(platform::incomplete());
        };
        Ok(Arc::new(Mavibot {
            client: context.http.clone(),
            send_url: platform::endpoint(&base, &format!("/api/{api_key}/{SEND_ACTION}")),
            bot,
            timeout: platform::timeout(input.timeout_ms, DEFAULT_TIMEOUT),
        }))
    }

    fn verify_callback(
        &self,
        request: &CallbackRequest<'_>,
        sender: &CallbackSender<'_>,
    ) -> Result<(), CallbackError> {
        let token = form_urlencoded::parse(request.query.unwrap_or("").as_bytes())
            .find(|(name, _)| name == "token")
            .map(|(_, value)| value.into_owned())
            .ok_or_else(|| {
                CallbackError::Unauthenticated(
                    "missing ?token=<callback secret> in the webhook's URL".into(),
                )
            })?;
        if platform::same_secret(&token, sender.callback_secret) {
            Ok(())
        } else {
            Err(CallbackError::Unauthenticated(
                "the token is not the sender's callback secret".into(),
            ))
        }
    }

    fn parse_callback(&self, body: &[u8]) -> Result<Vec<CallbackEvent>, CallbackError> {
        let event: Event = platform::json_body(body, "is_input")?;
        Ok(event.into_event().into_iter().collect())
    }
}

/// `provider_config` of a `mavibot` sender, as given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigInput {
    api_key: Option<String>,
    /// A number or text: Mavibot shows it as a number.
    whatsapp_bot_id: Option<Value>,
    api_base: Option<String>,
    timeout_ms: Option<u64>,
}

struct Mavibot {
    client: reqwest::Client,
    /// Holds the API key: never shown, never in an error.
    send_url: reqwest::Url,
    bot: Value,
    timeout: Duration,
}

impl Mavibot {
    fn body(&self, message: &Outbound<'_>) -> Value {
        let phone: String = message.to.chars().filter(char::is_ascii_digit).collect();
        let mut body = json!({"phone": phone, "whatsapp_bot_id": self.bot});
        if !message.body.is_empty() || message.media_url.is_none() {
            body["message"] = json!(message.body);
        }
        if let Some(link) = message.media_url {
            let kind = match super::whatsapp_cloud::media_kind(link) {
                "document" => "file",
                other => other,
            };
            body["attachment_type"] = json!(kind);
            body["attachment_url"] = json!(link);
        }
        body
    }
}

impl Provider for Mavibot {
    fn send_timeout(&self) -> Duration {
        self.timeout
    }

    fn send<'a>(&'a self, message: &'a Outbound<'a>) -> BoxFuture<'a, Result<Accepted, SendError>> {
        Box::pin(async move {
            // The URL holds the key: `post_json`'s errors never name it.
            let request = self.client.post(self.send_url.clone());
            let answer = platform::post_json(request, &self.body(message), self.timeout).await?;
            let refused_in_body = answer.body.get("status").and_then(Value::as_str)
                == Some("error")
                || answer.body.get("success") == Some(&Value::Bool(false));
            platform::accepted_or_refused(
                &answer,
                refused_in_body,
                &["/id", "/message_id", "/data/id"],
                |body| {
                    platform::error_text(
                        body,
                        &["/error_message", "/error", "/message", "/description"],
                    )
                },
            )
        })
    }
}

/// One message, either way: `{"id", "client", "message", "is_input", "delivered",
/// "error_message", ...}`.
#[derive(Debug, Deserialize)]
struct Event {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    client: Value,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    is_input: Option<Value>,
    #[serde(default)]
    delivered: Option<Value>,
    #[serde(default)]
    error_message: Option<String>,
}

/// Mavibot's flags are `1`/`0`, as numbers or text.
fn flag(value: Option<&Value>) -> Option<bool> {
    match value? {
        Value::Bool(flag) => Some(*flag),
        Value::Number(number) => number.as_i64().map(|n| n != 0),
        Value::String(text) => text.trim().parse::<i64>().ok().map(|n| n != 0),
        _ => None,
    }
}

impl Event {
    /// A client's message (`is_input: 1`) is an inbound message from its `recepient` (Mavibot's
    /// spelling); the bot's own (`is_input: 0`) reports whether it was delivered, matched by
    /// its `id`.
    fn into_event(self) -> Option<CallbackEvent> {
        let id = self.id.as_ref().and_then(|id| platform::id_at(id, &[""]));
        if flag(self.is_input.as_ref())? {
            let from = platform::id_at(&self.client, &["/recepient", "/recipient", "/phone"])?;
            return Some(CallbackEvent::Inbound {
                from: platform::e164(&from),
                body: self.message.unwrap_or_default(),
                at: Utc::now(),
                name: platform::id_at(&self.client, &["/name"]),
                id,
            });
        }
        let delivered = flag(self.delivered.as_ref())?;
        Some(CallbackEvent::Status {
            reference: id?,
            kind: if delivered {
                StatusKind::Delivered
            } else {
                StatusKind::Failed
            },
            at: Utc::now(),
            error: (!delivered).then(|| {
                self.error_message
                    .filter(|text| !text.trim().is_empty())
                    .unwrap_or_else(|| "not delivered (Mavibot)".to_owned())
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clients_message_is_inbound_and_the_bots_own_reports_its_delivery() {
        let parse = |body: Value| MavibotModule.parse_callback(body.to_string().as_bytes());
        let inbound = parse(
            json!({"id": 901, "client": {"id": 7, "recepient": "201012345688@s.whatsapp.net",
            "client_type": 6, "name": "Layla"}, "message": "Hello", "attachments": [],
            "message_id": 3, "project_id": 1, "is_input": 1, "delivered": 1, "error_message": ""}),
        )
        .unwrap();
        assert!(
            matches!(&inbound[..], [CallbackEvent::Inbound { from, body, name, id, .. }]
                if from == "+201012345688" && body == "Hello" && name.as_deref() == Some("Layla")
                    && id.as_deref() == Some("901")),
            "{inbound:?}"
        );
        let failed = parse(json!({"id": "m-5", "client": {"recepient": "201012345611"},
            "message": "Hi", "is_input": 0, "delivered": 0, "error_message": "number is not on WhatsApp"}))
        .unwrap();
        assert!(
            matches!(&failed[..], [CallbackEvent::Status { reference, kind: StatusKind::Failed, error, .. }]
                if reference == "m-5" && error.as_deref() == Some("number is not on WhatsApp")),
            "{failed:?}"
        );
        assert_eq!(parse(json!({"project_id": 1})).unwrap(), []);
    }
}
