//! Meta's WhatsApp Cloud API: messages are POSTed to
//! `{api_base}/{api_version}/{phone_number_id}/messages` with the sender's access token, and the
//! number's webhook (`/v1/callbacks/{sender_id}`) is verified with a `GET` challenge and signed
//! with the app secret (`X-Hub-Signature-256`). Meta's error codes decide what a failed send
//! means for the message, the recipient, the lane and the sender.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{
    Accepted, BoxFuture, CallbackError, CallbackRequest, CallbackSender, Capabilities, Outbound,
    Provider, ProviderConfigError, ProviderContext, ProviderModule, SendError,
};
use crate::domain::callback::{CallbackEvent, StatusKind};
use crate::domain::provider::ProviderKind;
use crate::domain::whatsapp::{HeaderKind, RenderedWhatsApp};
use crate::url_guard::UrlGuard;

const DEFAULT_API_BASE: &str = "https://graph.facebook.com";
const DEFAULT_API_VERSION: &str = "v23.0";
/// Meta answers within a few seconds or not at all.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
/// Meta's caption limit for media messages.
const MAX_CAPTION: usize = 1024;
/// How long one recipient waits after Meta's pair rate limit (`131056`) before the first retry;
/// it doubles with each further one (see `engine::retry`).
const PAIR_RATE_WAIT: Duration = Duration::from_secs(15);
/// How long the lane holds after a throughput limit (`130429`, HTTP 429) when Meta says nothing.
const THROUGHPUT_HOLD: Duration = Duration::from_secs(5);

pub struct WhatsAppCloudModule;

impl ProviderModule for WhatsAppCloudModule {
    fn kind(&self) -> ProviderKind {
        ProviderKind::WhatsappCloud
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // Meta has no idempotency key: a repeat is a second message on the phone.
            idempotency_keys: false,
            // Only in answer to a message the person sent (and it marks that message read).
            typing_indicator: true,
            templates: true,
            media: true,
            customer_service_window: true,
        }
    }

    fn secrets(&self) -> &'static [&'static str] {
        &["/access_token", "/app_secret", "/verify_token"]
    }

    /// Meta's default throughput: 80 messages a second per number.
    fn default_rate_per_minute(&self) -> Option<u32> {
        Some(80 * 60)
    }

    fn build(
        &self,
        config: &Value,
        context: &ProviderContext,
    ) -> Result<Arc<dyn Provider>, ProviderConfigError> {
        let config = CloudConfig::read(config, context.url_guard)?;
        Ok(Arc::new(WhatsAppCloud {
            client: context.http.clone(),
            messages_url: config.messages_url,
            authorization: format!("Bearer {}", config.access_token),
            timeout: config.timeout,
        }))
    }

    /// `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body with the app secret>`.
    fn verify_callback(
        &self,
        request: &CallbackRequest<'_>,
        sender: &CallbackSender<'_>,
    ) -> Result<(), CallbackError> {
        let app_secret = secret_of(sender.config, "app_secret")
            .ok_or_else(|| CallbackError::Unauthenticated("the sender has no app_secret".into()))?;
        let claimed = request
            .headers
            .get("x-hub-signature-256")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().strip_prefix("sha256="))
            .and_then(|digest| hex::decode(digest).ok())
            .ok_or_else(|| {
                CallbackError::Unauthenticated("missing or malformed X-Hub-Signature-256".into())
            })?;
        let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes())
            .map_err(|_| CallbackError::Unauthenticated("unusable app_secret".into()))?;
        mac.update(request.body);
        mac.verify_slice(&claimed)
            .map_err(|_| CallbackError::Unauthenticated("the signature does not match".into()))
    }

    fn parse_callback(&self, body: &[u8]) -> Result<Vec<CallbackEvent>, CallbackError> {
        let envelope: Envelope = serde_json::from_slice(body).map_err(|error| {
            if error.is_syntax() || error.is_eof() {
                CallbackError::Malformed(format!("the body is not valid JSON: {error}"))
            } else {
                CallbackError::Invalid {
                    field: "entry".into(),
                    message: error.to_string(),
                }
            }
        })?;
        Ok(envelope.events())
    }

    /// Meta's `GET ?hub.mode=subscribe&hub.verify_token=T&hub.challenge=C`: `C` when `T` is the
    /// sender's verify token (compared in constant time).
    fn challenge(
        &self,
        request: &CallbackRequest<'_>,
        sender: &CallbackSender<'_>,
    ) -> Result<String, CallbackError> {
        let forbidden = |reason: &str| CallbackError::Forbidden(reason.to_owned());
        let expected = secret_of(sender.config, "verify_token")
            .ok_or_else(|| forbidden("the sender has no verify_token"))?;
        let (mut mode, mut token, mut challenge) = (None, None, None);
        for (name, value) in form_urlencoded::parse(request.query.unwrap_or("").as_bytes()) {
            match name.as_ref() {
                "hub.mode" => mode = Some(value.into_owned()),
                "hub.verify_token" => token = Some(value.into_owned()),
                "hub.challenge" => challenge = Some(value.into_owned()),
                _ => {}
            }
        }
        if mode.as_deref() != Some("subscribe") {
            return Err(forbidden("hub.mode is not subscribe"));
        }
        let token = token.ok_or_else(|| forbidden("no hub.verify_token"))?;
        if !bool::from(token.as_bytes().ct_eq(expected.as_bytes())) {
            return Err(forbidden("hub.verify_token does not match"));
        }
        challenge.ok_or_else(|| forbidden("no hub.challenge"))
    }
}

/// A string setting of a stored configuration (a secret the webhook is checked with).
fn secret_of<'c>(config: &'c Value, name: &str) -> Option<&'c str> {
    config
        .get(name)
        .and_then(Value::as_str)
        .filter(|value| !value.is_empty())
}

/// `provider_config` of a `whatsapp_cloud` sender, as given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CloudConfigInput {
    phone_number_id: Option<String>,
    access_token: Option<String>,
    app_secret: Option<String>,
    verify_token: Option<String>,
    api_base: Option<String>,
    api_version: Option<String>,
    timeout_ms: Option<u64>,
}

/// A checked configuration.
struct CloudConfig {
    messages_url: reqwest::Url,
    access_token: String,
    timeout: Duration,
}

impl CloudConfig {
    /// Every missing or wrong field is named at once.
    fn read(config: &Value, guard: UrlGuard) -> Result<Self, ProviderConfigError> {
        let input: CloudConfigInput = super::typed_config(config)?;
        let mut problems = Vec::new();
        let mut required = |field: &str, value: Option<String>, what: &str| match value
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
        {
            Some(value) => Some(value),
            None => {
                problems.push((field.to_owned(), format!("is required: {what}")));
                None
            }
        };
        let phone_number_id = required(
            "phone_number_id",
            input.phone_number_id,
            "the number's id in Meta's WhatsApp Manager",
        );
        let access_token = required(
            "access_token",
            input.access_token,
            "a system user's token with whatsapp_business_messaging",
        );
        required(
            "app_secret",
            input.app_secret,
            "the app's secret, which signs Meta's webhooks",
        );
        required(
            "verify_token",
            input.verify_token,
            "the token Meta sends back when it verifies the webhook",
        );
        if let Some(id) = &phone_number_id
            && !id.chars().all(|c| c.is_ascii_digit())
        {
            problems.push(("phone_number_id".into(), "must be digits only".into()));
        }
        let version = input
            .api_version
            .unwrap_or_else(|| DEFAULT_API_VERSION.to_owned());
        let well_formed_version = version
            .strip_prefix('v')
            .and_then(|rest| rest.split_once('.'))
            .is_some_and(|(major, minor)| {
                !major.is_empty()
                    && !minor.is_empty()
                    && major.chars().all(|c| c.is_ascii_digit())
                    && minor.chars().all(|c| c.is_ascii_digit())
            });
        if !well_formed_version {
            problems.push((
                "api_version".into(),
                format!("must look like {DEFAULT_API_VERSION}"),
            ));
        }
        let base = input
            .api_base
            .unwrap_or_else(|| DEFAULT_API_BASE.to_owned());
        let base = match guard.parse(&base) {
            Ok(url) => Some(url),
            Err(refused) => {
                problems.push(("api_base".into(), refused.to_string()));
                None
            }
        };
        if !problems.is_empty() {
            return Err(ProviderConfigError::Fields(problems));
        }
        let (Some(base), Some(phone_number_id), Some(access_token)) =
            (base, phone_number_id, access_token)
        else {
            return Err(ProviderConfigError::Fields(vec![(
                String::new(),
                "is incomplete".into(),
            )]));
        };
        let path = format!(
            "{}/{version}/{phone_number_id}/messages",
            base.path().trim_end_matches('/')
        );
        let mut messages_url = base;
        messages_url.set_path(&path);
        Ok(Self {
            messages_url,
            access_token,
            timeout: input
                .timeout_ms
                .map_or(DEFAULT_TIMEOUT, Duration::from_millis)
                .max(Duration::from_millis(1)),
        })
    }
}

pub struct WhatsAppCloud {
    client: reqwest::Client,
    messages_url: reqwest::Url,
    authorization: String,
    timeout: Duration,
}

impl WhatsAppCloud {
    /// POSTs `body` to the number's messages endpoint: Meta's status, its `Retry-After`, and its
    /// answer (`null` when it is not JSON).
    async fn post(&self, body: &Value) -> Result<(StatusCode, Option<Duration>, Value), SendError> {
        let response = self
            .client
            .post(self.messages_url.clone())
            .header(AUTHORIZATION, &self.authorization)
            .header(CONTENT_TYPE, "application/json")
            .timeout(self.timeout)
            .body(body.to_string())
            .send()
            .await
            .map_err(|error| super::http::request_failed(&error))?;
        let status = response.status();
        let after = super::http::retry_after(response.headers());
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        Ok((status, after, answer))
    }

    /// Meta's request body for `message`: its approved template with the parameters rendered
    /// for this recipient, else media by link with the text as its caption, else text.
    fn body(message: &Outbound<'_>) -> Value {
        let to = message.to.trim_start_matches('+');
        let mut body = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
        });
        let fields = body.as_object_mut().expect("a JSON object literal");
        if let Some(template) = message.template {
            fields.insert("type".into(), json!("template"));
            fields.insert("template".into(), template_part(template));
            return body;
        }
        match message.media_url {
            Some(link) => {
                let kind = media_kind(link);
                let mut media = json!({ "link": link });
                if !message.body.is_empty() && kind != "audio" {
                    let caption: String = message.body.chars().take(MAX_CAPTION).collect();
                    media["caption"] = Value::String(caption);
                }
                fields.insert("type".into(), json!(kind));
                fields.insert(kind.into(), media);
            }
            None => {
                fields.insert("type".into(), json!("text"));
                fields.insert(
                    "text".into(),
                    json!({ "preview_url": false, "body": message.body }),
                );
            }
        }
        body
    }
}

/// Meta's `template` object: name, language and the components' parameters.
fn template_part(template: &RenderedWhatsApp) -> Value {
    let mut components = Vec::new();
    if let Some((kind, value)) = &template.header {
        let parameter = match kind {
            HeaderKind::Text => json!({"type": "text", "text": value}),
            media => json!({"type": media.as_str(), media.as_str(): {"link": value}}),
        };
        components.push(json!({"type": "header", "parameters": [parameter]}));
    }
    if !template.body_params.is_empty() {
        let parameters: Vec<Value> = template
            .body_params
            .iter()
            .map(|text| json!({"type": "text", "text": text}))
            .collect();
        components.push(json!({"type": "body", "parameters": parameters}));
    }
    let mut part = json!({"name": template.name, "language": {"code": template.language}});
    if !components.is_empty() {
        part["components"] = Value::Array(components);
    }
    part
}

/// The media type Meta (and the platforms on it) is told, from the link's file extension; a
/// document when unsure.
pub(super) fn media_kind(link: &str) -> &'static str {
    let path = link.split(['?', '#']).next().unwrap_or(link);
    let extension = path
        .rsplit_once('.')
        .map(|(_, extension)| extension.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "jpg" | "jpeg" | "png" => "image",
        "mp4" | "3gp" => "video",
        "aac" | "amr" | "mp3" | "m4a" | "ogg" | "opus" => "audio",
        _ => "document",
    }
}

impl Provider for WhatsAppCloud {
    fn send_timeout(&self) -> Duration {
        self.timeout
    }

    fn send<'a>(&'a self, message: &'a Outbound<'a>) -> BoxFuture<'a, Result<Accepted, SendError>> {
        Box::pin(async move {
            let (status, after, answer) = self.post(&Self::body(message)).await?;
            if status.is_success() {
                let wamid = answer
                    .pointer("/messages/0/id")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                if wamid.is_none() {
                    tracing::warn!(%answer, "Meta accepted a message without its id");
                }
                return Ok(Accepted {
                    provider_message_id: wamid,
                });
            }
            Err(meaning_of(status, after, &answer))
        })
    }

    fn typing<'a>(
        &'a self,
        _to: &'a str,
        answering: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            // Someone who has not written has nothing to answer: no indicator.
            let Some(answering) = answering else {
                return Ok(());
            };
            let (status, after, answer) = self.post(&typing_body(answering)).await?;
            if status.is_success() {
                return Ok(());
            }
            Err(meaning_of(status, after, &answer))
        })
    }
}

/// Meta's typing indicator: it marks the person's message `answering` read and shows "typing…"
/// until the reply arrives or 25 seconds pass.
fn typing_body(answering: &str) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": answering,
        "typing_indicator": {"type": "text"},
    })
}

/// What Meta's refusal means, from its error code (API.md's list), else from the HTTP status.
fn meaning_of(status: StatusCode, after: Option<Duration>, answer: &Value) -> SendError {
    let error = &answer["error"];
    let code = error["code"].as_i64();
    let reason = describe(status, error);
    match code {
        // Throughput: the whole number slows down, then tries again.
        Some(130429) | Some(80007) => SendError::HoldLane {
            after: Some(after.unwrap_or(THROUGHPUT_HOLD)),
            reason,
        },
        // Pair rate: this recipient had enough for now; the others go on.
        Some(131056) => SendError::HoldRecipient {
            after: after.unwrap_or(PAIR_RATE_WAIT),
            reason,
        },
        // The number or the account cannot send: nothing more until someone acts.
        Some(131048) | Some(368) | Some(131031) | Some(190) => SendError::PauseSender(reason),
        // The person stopped marketing messages from this business.
        Some(131050) => SendError::RecipientOptedOut(reason),
        // The template does not exist at Meta (in this language): every send of it would fail.
        Some(132001) => SendError::PauseCampaign(reason),
        // Another attempt would fail the same way.
        Some(131026) | Some(131047) | Some(130472) | Some(132000) | Some(131051) | Some(131052)
        | Some(131053) | Some(100) | Some(131008) | Some(131009) | Some(131021) | Some(132005)
        | Some(132007) | Some(132012) | Some(132015) | Some(132016) => SendError::Fail(reason),
        _ if status == StatusCode::TOO_MANY_REQUESTS => SendError::HoldLane {
            after: Some(after.unwrap_or(THROUGHPUT_HOLD)),
            reason,
        },
        _ if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN => {
            SendError::PauseSender(reason)
        }
        // Unknown codes and server errors: retried a bounded number of times.
        _ => SendError::Retry { after, reason },
    }
}

/// `131026 Message undeliverable`: Meta's code and its words, without the `(#code)` prefix Meta
/// repeats in its message.
fn describe(status: StatusCode, error: &Value) -> String {
    let code = error["code"].as_i64();
    let words = error["error_user_title"]
        .as_str()
        .or_else(|| error["title"].as_str())
        .or_else(|| error["message"].as_str())
        .map(|text| strip_code_prefix(text).to_owned());
    let details = error["error_data"]["details"].as_str();
    match (code, words) {
        (Some(code), Some(words)) => match details {
            Some(details) if details != words => format!("{code} {words}: {details}"),
            _ => format!("{code} {words}"),
        },
        (Some(code), None) => format!("{code} (HTTP {})", status.as_u16()),
        (None, _) => format!("HTTP {} from Meta", status.as_u16()),
    }
}

fn strip_code_prefix(text: &str) -> &str {
    match text.strip_prefix("(#") {
        Some(rest) => rest
            .split_once(')')
            .map_or(text, |(_, after)| after.trim_start()),
        None => text,
    }
}

/// Meta's webhook envelope, as far as Herald reads it; every other field is ignored.
#[derive(Debug, Default, Deserialize)]
struct Envelope {
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Debug, Default, Deserialize)]
struct Entry {
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Debug, Default, Deserialize)]
struct Change {
    #[serde(default)]
    field: String,
    #[serde(default)]
    value: ChangeValue,
}

#[derive(Debug, Default, Deserialize)]
struct ChangeValue {
    #[serde(default)]
    statuses: Vec<StatusReport>,
    #[serde(default)]
    messages: Vec<InboundMessage>,
    #[serde(default)]
    contacts: Vec<Contact>,
    #[serde(default)]
    user_preferences: Vec<UserPreference>,
}

#[derive(Debug, Deserialize)]
struct StatusReport {
    id: String,
    status: String,
    timestamp: Option<Timestamp>,
    #[serde(default)]
    errors: Vec<MetaError>,
}

#[derive(Debug, Deserialize)]
struct MetaError {
    code: Option<i64>,
    title: Option<String>,
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct InboundMessage {
    from: String,
    #[serde(default)]
    id: Option<String>,
    timestamp: Option<Timestamp>,
    #[serde(rename = "type", default)]
    kind: String,
    text: Option<TextPart>,
    button: Option<ButtonPart>,
    interactive: Option<Value>,
    image: Option<MediaPart>,
    video: Option<MediaPart>,
    audio: Option<MediaPart>,
    document: Option<MediaPart>,
    sticker: Option<MediaPart>,
}

#[derive(Debug, Deserialize)]
struct TextPart {
    body: String,
}

#[derive(Debug, Deserialize)]
struct ButtonPart {
    text: Option<String>,
    payload: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MediaPart {
    id: Option<String>,
    caption: Option<String>,
    filename: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Contact {
    wa_id: Option<String>,
    profile: Option<Profile>,
}

#[derive(Debug, Deserialize)]
struct Profile {
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct UserPreference {
    wa_id: String,
    value: String,
    timestamp: Option<Timestamp>,
}

/// Meta sends unix seconds as a string, and sometimes as a number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Timestamp {
    Text(String),
    Number(i64),
}

impl Timestamp {
    fn instant(timestamp: Option<&Timestamp>) -> DateTime<Utc> {
        let seconds = match timestamp {
            Some(Timestamp::Text(text)) => text.trim().parse().ok(),
            Some(Timestamp::Number(seconds)) => Some(*seconds),
            None => None,
        };
        seconds
            .and_then(|seconds| DateTime::from_timestamp(seconds, 0))
            .unwrap_or_else(Utc::now)
    }
}

/// A WhatsApp id (`15551234567`) as the phone Herald stores.
fn phone_of(wa_id: &str) -> String {
    let digits = wa_id.trim().trim_start_matches('+');
    format!("+{digits}")
}

impl Envelope {
    fn events(self) -> Vec<CallbackEvent> {
        let mut events = Vec::new();
        for change in self.entry.into_iter().flat_map(|entry| entry.changes) {
            let value = change.value;
            match change.field.as_str() {
                "messages" => {
                    let names: Vec<(String, String)> = value
                        .contacts
                        .iter()
                        .filter_map(|contact| {
                            let name = contact.profile.as_ref()?.name.clone()?;
                            Some((contact.wa_id.clone()?, name))
                        })
                        .collect();
                    for status in value.statuses {
                        if let Some(event) = status.event() {
                            events.push(event);
                        }
                    }
                    for message in value.messages {
                        let name = names
                            .iter()
                            .find(|(wa_id, _)| *wa_id == message.from)
                            .map(|(_, name)| name.clone());
                        if let Some(event) = message.event(name) {
                            events.push(event);
                        }
                    }
                }
                "user_preferences" => {
                    for preference in value.user_preferences {
                        let at = Timestamp::instant(preference.timestamp.as_ref());
                        let from = phone_of(&preference.wa_id);
                        match preference.value.as_str() {
                            "stop" => events.push(CallbackEvent::OptOut { from, at }),
                            "resume" => events.push(CallbackEvent::OptIn { from, at }),
                            _ => {}
                        }
                    }
                }
                // Template reviews, quality ratings, account updates: not Herald's to act on.
                _ => {}
            }
        }
        events
    }
}

impl StatusReport {
    fn event(self) -> Option<CallbackEvent> {
        let kind = match self.status.as_str() {
            "sent" => StatusKind::Sent,
            "delivered" => StatusKind::Delivered,
            "read" => StatusKind::Read,
            "failed" => StatusKind::Failed,
            // `deleted`, `warning` and kinds Meta adds later change nothing Herald counts.
            _ => return None,
        };
        let error = self.errors.first().map(|error| {
            let words = error
                .title
                .as_deref()
                .or(error.message.as_deref())
                .unwrap_or("failed");
            match error.code {
                Some(code) => format!("{code} {words}"),
                None => words.to_owned(),
            }
        });
        Some(CallbackEvent::Status {
            reference: self.id,
            kind,
            at: Timestamp::instant(self.timestamp.as_ref()),
            error,
        })
    }
}

impl InboundMessage {
    /// The text Herald records: what was typed, the button or list item chosen, or a media
    /// item's caption with its reference at Meta (its media id).
    fn body(&self) -> Option<String> {
        let media = |kind: &str, part: &Option<MediaPart>| {
            let part = part.as_ref()?;
            let reference = part.id.as_deref().unwrap_or("?");
            let label = part
                .caption
                .as_deref()
                .or(part.filename.as_deref())
                .unwrap_or("");
            Some(
                format!("[{kind} {reference}] {label}")
                    .trim_end()
                    .to_owned(),
            )
        };
        match self.kind.as_str() {
            "text" => self.text.as_ref().map(|text| text.body.clone()),
            "button" => self
                .button
                .as_ref()
                .and_then(|button| button.text.clone().or_else(|| button.payload.clone())),
            "interactive" => {
                let reply = self.interactive.as_ref()?;
                [
                    "/button_reply/title",
                    "/list_reply/title",
                    "/nfm_reply/body",
                ]
                .iter()
                .find_map(|pointer| reply.pointer(pointer).and_then(Value::as_str))
                .map(str::to_owned)
            }
            "image" => media("image", &self.image),
            "video" => media("video", &self.video),
            "audio" => media("audio", &self.audio),
            "document" => media("document", &self.document),
            "sticker" => media("sticker", &self.sticker),
            // Reactions, system notices, unsupported kinds: nothing a person wrote.
            _ => None,
        }
    }

    fn event(self, name: Option<String>) -> Option<CallbackEvent> {
        let body = self.body()?;
        Some(CallbackEvent::Inbound {
            from: phone_of(&self.from),
            body,
            at: Timestamp::instant(self.timestamp.as_ref()),
            name,
            id: self.id,
        })
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderMap;

    use super::*;

    fn config() -> Value {
        json!({"phone_number_id": "1122334455667", "access_token": "EAAG-token",
               "app_secret": "app-secret", "verify_token": "verify-me",
               "api_base": "http://127.0.0.1:9", "api_version": "v23.0"})
    }

    #[test]
    fn a_configuration_names_every_missing_or_wrong_field() {
        let Err(ProviderConfigError::Fields(problems)) = CloudConfig::read(
            &json!({
                "phone_number_id": "12ab", "api_version": "23", "api_base": "ftp://meta"
            }),
            UrlGuard::ALLOW_PRIVATE,
        ) else {
            panic!("a bad configuration was accepted");
        };
        let fields: Vec<&str> = problems.iter().map(|(field, _)| field.as_str()).collect();
        for field in [
            "access_token",
            "app_secret",
            "verify_token",
            "phone_number_id",
            "api_version",
            "api_base",
        ] {
            assert!(fields.contains(&field), "{field} missing from {problems:?}");
        }
        let read = CloudConfig::read(&config(), UrlGuard::ALLOW_PRIVATE).unwrap();
        assert_eq!(
            read.messages_url.as_str(),
            "http://127.0.0.1:9/v23.0/1122334455667/messages"
        );
    }

    #[test]
    fn text_and_media_are_sent_in_metas_shapes() {
        let id = crate::domain::ids::MessageId::generate();
        let text = Outbound {
            id,
            to: "+15551234567",
            body: "Hi Jane",
            media_url: None,
            template: None,
        };
        assert_eq!(
            WhatsAppCloud::body(&text),
            json!({"messaging_product": "whatsapp", "recipient_type": "individual",
                   "to": "15551234567", "type": "text",
                   "text": {"preview_url": false, "body": "Hi Jane"}})
        );
        let image = Outbound {
            media_url: Some("https://cdn.example.com/sale.JPG?v=2"),
            ..text.clone()
        };
        assert_eq!(
            WhatsAppCloud::body(&image)["image"],
            json!({"link": "https://cdn.example.com/sale.JPG?v=2", "caption": "Hi Jane"})
        );
        let document = Outbound {
            media_url: Some("https://cdn.example.com/price-list.pdf"),
            ..text.clone()
        };
        assert_eq!(WhatsAppCloud::body(&document)["type"], "document");
        let spring = RenderedWhatsApp {
            name: "spring_sale".into(),
            language: "en_US".into(),
            body_params: vec!["Jane".into(), "SPRING".into()],
            header: Some((HeaderKind::Image, "https://cdn.example.com/sale.jpg".into())),
        };
        let templated = Outbound {
            template: Some(&spring),
            ..text
        };
        assert_eq!(
            WhatsAppCloud::body(&templated),
            json!({"messaging_product": "whatsapp", "recipient_type": "individual",
                   "to": "15551234567", "type": "template",
                   "template": {"name": "spring_sale", "language": {"code": "en_US"},
                                "components": [
                                    {"type": "header", "parameters": [
                                        {"type": "image",
                                         "image": {"link": "https://cdn.example.com/sale.jpg"}}]},
                                    {"type": "body", "parameters": [
                                        {"type": "text", "text": "Jane"},
                                        {"type": "text", "text": "SPRING"}]}]}})
        );
    }

    #[test]
    fn metas_error_codes_decide_what_a_refusal_means() {
        let refusal = |code: i64| {
            json!({"error": {"message": format!("(#{code}) Something"), "type": "OAuthException",
                             "code": code, "error_data": {"details": "More words"}}})
        };
        let bad = StatusCode::BAD_REQUEST;
        assert!(matches!(
            meaning_of(bad, None, &refusal(130429)),
            SendError::HoldLane { .. }
        ));
        assert!(matches!(
            meaning_of(bad, None, &refusal(131056)),
            SendError::HoldRecipient { after, .. } if after == PAIR_RATE_WAIT
        ));
        for code in [131048, 368] {
            assert!(matches!(
                meaning_of(bad, None, &refusal(code)),
                SendError::PauseSender(_)
            ));
        }
        assert!(matches!(
            meaning_of(bad, None, &refusal(131050)),
            SendError::RecipientOptedOut(reason) if reason.starts_with("131050")
        ));
        assert!(matches!(
            meaning_of(bad, None, &refusal(132001)),
            SendError::PauseCampaign(reason) if reason.starts_with("132001")
        ));
        for code in [131026, 131047, 130472, 132000] {
            assert!(matches!(
                meaning_of(bad, None, &refusal(code)),
                SendError::Fail(reason) if reason.starts_with(&format!("{code} Something"))
            ));
        }
        assert!(matches!(
            meaning_of(StatusCode::INTERNAL_SERVER_ERROR, None, &refusal(999_999)),
            SendError::Retry { .. }
        ));
        assert!(matches!(
            meaning_of(StatusCode::TOO_MANY_REQUESTS, Some(Duration::from_secs(9)), &Value::Null),
            SendError::HoldLane { after: Some(after), .. } if after == Duration::from_secs(9)
        ));
    }

    #[test]
    fn the_webhook_envelope_becomes_herald_events_and_unknown_parts_are_ignored() {
        let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [
            {"field": "messages", "value": {
                "messaging_product": "whatsapp", "brand_new_field": {"x": 1},
                "metadata": {"display_phone_number": "15550001111", "phone_number_id": "1122334455667"},
                "contacts": [{"profile": {"name": "Jane"}, "wa_id": "15551234567"}],
                "messages": [
                    {"from": "15551234567", "id": "wamid.in1", "timestamp": "1767000000",
                     "type": "text", "text": {"body": "price?"}},
                    {"from": "15551234567", "id": "wamid.in2", "timestamp": "1767000001",
                     "type": "button", "button": {"text": "Yes please", "payload": "YES"}},
                    {"from": "15551234567", "id": "wamid.in3", "timestamp": "1767000002",
                     "type": "interactive", "interactive": {"type": "list_reply",
                        "list_reply": {"id": "l1", "title": "Large"}}},
                    {"from": "15551234567", "id": "wamid.in4", "timestamp": "1767000003",
                     "type": "reaction", "reaction": {"message_id": "wamid.x", "emoji": "👍"}}],
                "statuses": [
                    {"id": "wamid.out1", "status": "read", "timestamp": "1767000010",
                     "recipient_id": "15551234567"},
                    {"id": "wamid.out2", "status": "failed", "timestamp": "1767000011",
                     "recipient_id": "15551234567",
                     "errors": [{"code": 131026, "title": "Message undeliverable"}]},
                    {"id": "wamid.out3", "status": "deleted", "timestamp": "1767000012"}]}},
            {"field": "user_preferences", "value": {"user_preferences": [
                {"wa_id": "15557654321", "category": "marketing_messages", "value": "stop",
                 "timestamp": 1767000020}]}},
            {"field": "message_template_status_update", "value": {"event": "APPROVED"}}]}]});
        let events = WhatsAppCloudModule
            .parse_callback(body.to_string().as_bytes())
            .unwrap();
        let at = |seconds| DateTime::from_timestamp(seconds, 0).unwrap();
        let jane = || Some("Jane".to_owned());
        assert_eq!(
            events,
            [
                CallbackEvent::Status {
                    reference: "wamid.out1".into(),
                    kind: StatusKind::Read,
                    at: at(1767000010),
                    error: None
                },
                CallbackEvent::Status {
                    reference: "wamid.out2".into(),
                    kind: StatusKind::Failed,
                    at: at(1767000011),
                    error: Some("131026 Message undeliverable".into())
                },
                CallbackEvent::Inbound {
                    from: "+15551234567".into(),
                    body: "price?".into(),
                    at: at(1767000000),
                    name: jane(),
                    id: Some("wamid.in1".into())
                },
                CallbackEvent::Inbound {
                    from: "+15551234567".into(),
                    body: "Yes please".into(),
                    at: at(1767000001),
                    name: jane(),
                    id: Some("wamid.in2".into())
                },
                CallbackEvent::Inbound {
                    from: "+15551234567".into(),
                    body: "Large".into(),
                    at: at(1767000002),
                    name: jane(),
                    id: Some("wamid.in3".into())
                },
                CallbackEvent::OptOut {
                    from: "+15557654321".into(),
                    at: at(1767000020)
                },
            ]
        );
        assert!(matches!(
            WhatsAppCloudModule.parse_callback(b"{not json"),
            Err(CallbackError::Malformed(_))
        ));
    }

    #[test]
    fn the_challenge_and_the_signature_are_checked_in_metas_way() {
        let config = config();
        let sender = CallbackSender {
            callback_secret: "unused",
            config: &config,
        };
        let headers = HeaderMap::new();
        let request = |query: &'static str| CallbackRequest {
            headers: &headers,
            query: Some(query),
            body: b"",
            now: Utc::now(),
        };
        assert_eq!(
            WhatsAppCloudModule.challenge(
                &request("hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1158201444"),
                &sender
            ),
            Ok("1158201444".into())
        );
        assert!(matches!(
            WhatsAppCloudModule.challenge(
                &request("hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1"),
                &sender
            ),
            Err(CallbackError::Forbidden(_))
        ));

        let body = br#"{"entry": []}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"app-secret").unwrap();
        mac.update(body);
        let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let mut signed = HeaderMap::new();
        signed.insert("x-hub-signature-256", signature.parse().unwrap());
        let post = |headers: &HeaderMap, body: &'static [u8]| {
            WhatsAppCloudModule.verify_callback(
                &CallbackRequest {
                    headers,
                    query: None,
                    body,
                    now: Utc::now(),
                },
                &sender,
            )
        };
        assert_eq!(post(&signed, body), Ok(()));
        assert!(matches!(
            post(&signed, br#"{"entry": [1]}"#),
            Err(CallbackError::Unauthenticated(_))
        ));
        assert!(matches!(
            post(&HeaderMap::new(), body),
            Err(CallbackError::Unauthenticated(_))
        ));
    }
}
