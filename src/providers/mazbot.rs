//! MazBot, a WhatsApp Cloud reseller: every request carries the account's `apikey` header and,
//! but for the login, a JWT that the login returns and that lives 60 minutes. Herald keeps one
//! token per account in the process, logs in again shortly before it expires, and once more
//! when MazBot answers 401. Campaigns go out as MazBot's templates (`/whatsapp/send-template`,
//! variables in 1-based arrays, the number in digits); free-form text goes to an open
//! conversation (`/send-message`, by MazBot's contact id, found from the number), only inside
//! WhatsApp's 24-hour window. MazBot pushes nothing: its inbound messages are polled (chat rooms
//! changed since the last look, then each changed room's messages) with cursors stored per
//! sender.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::multipart::Form;
use serde::Deserialize;
use serde_json::{Value, json};

use super::platform::{self, Answer, Problems};
use super::{
    Accepted, BoxFuture, Capabilities, Outbound, Polled, Poller, Provider, ProviderConfigError,
    ProviderContext, ProviderModule, SendError,
};
use crate::domain::callback::CallbackEvent;
use crate::domain::provider::ProviderKind;
use crate::domain::whatsapp::RenderedWhatsApp;

const DEFAULT_API_BASE: &str = "https://mazbot.net/api";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
/// MazBot throttles every user to 60 requests a minute.
const PER_MINUTE: u32 = 60;
/// The JWT's documented lifespan.
const TOKEN_LIFETIME: chrono::TimeDelta = chrono::TimeDelta::minutes(60);
/// A token this close to its end is renewed before use.
const RENEW_BEFORE: chrono::TimeDelta = chrono::TimeDelta::minutes(5);
/// MazBot asks for a poll every 10 to 30 seconds, never more often than every 5.
const POLL_SECONDS: std::ops::RangeInclusive<u64> = 10..=30;
const DEFAULT_POLL_SECONDS: u64 = 15;
/// Chat-room pages read at most in one poll (newest first): 60 requests a minute are shared
/// with the sends.
const MAX_ROOM_PAGES: usize = 5;
/// MazBot's value of a message's `type` for one the customer wrote.
const INBOUND: i64 = 2;

pub struct MazbotModule;

impl ProviderModule for MazbotModule {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Mazbot
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            idempotency_keys: false,
            typing_indicator: false,
            templates: true,
            // Its session endpoint takes uploaded files, not links.
            media: false,
            customer_service_window: true,
        }
    }

    fn secrets(&self) -> &'static [&'static str] {
        &["/api_key", "/password"]
    }

    fn default_rate_per_minute(&self) -> Option<u32> {
        Some(PER_MINUTE)
    }

    fn build(
        &self,
        config: &Value,
        context: &ProviderContext,
    ) -> Result<Arc<dyn Provider>, ProviderConfigError> {
        Ok(Arc::new(read_config(config, context)?.0))
    }

    fn poller(
        &self,
        config: &Value,
        context: &ProviderContext,
    ) -> Result<Option<Arc<dyn Poller>>, ProviderConfigError> {
        let (api, every) = read_config(config, context)?;
        Ok(Some(Arc::new(RoomPoller { api, every })))
    }

    fn polls_inbound(&self) -> bool {
        true
    }
}

/// `provider_config` of a `mazbot` sender, as given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigInput {
    api_key: Option<String>,
    email: Option<String>,
    password: Option<String>,
    /// MazBot's `template_id` of each template Herald names (the `whatsapp` part's `name`).
    #[serde(default)]
    templates: HashMap<String, u64>,
    poll_interval_s: Option<u64>,
    api_base: Option<String>,
    timeout_ms: Option<u64>,
}

fn read_config(
    config: &Value,
    context: &ProviderContext,
) -> Result<(Mazbot, Duration), ProviderConfigError> {
    let input: ConfigInput = super::typed_config(config)?;
    let mut problems = Problems::default();
    let api_key = problems.required(
        "api_key",
        input.api_key,
        "the apikey from your MazBot profile",
    );
    let email = problems.required("email", input.email, "the MazBot account's login email");
    let password = problems.required("password", input.password, "the MazBot account's password");
    let every = input.poll_interval_s.unwrap_or(DEFAULT_POLL_SECONDS);
    if !POLL_SECONDS.contains(&every) {
        problems.push(
            "poll_interval_s",
            format!(
                "must be from {} to {} seconds (MazBot's advice)",
                POLL_SECONDS.start(),
                POLL_SECONDS.end()
            ),
        );
    }
    let base = problems.base_url(
        "api_base",
        input.api_base,
        Some(DEFAULT_API_BASE),
        context.url_guard,
    );
    problems.finish()?;
    let (Some(api_key), Some(email), Some(password), Some(base)) = (api_key, email, password, base)
    else {
        return Err(platform::incomplete());
    };
    let mazbot = Mazbot {
        client: context.http.clone(),
        base,
        api_key,
        email,
        password,
        templates: input.templates,
        timeout: platform::timeout(input.timeout_ms, DEFAULT_TIMEOUT),
    };
    Ok((mazbot, Duration::from_secs(every)))
}

/// A logged-in session's token.
#[derive(Clone, Debug)]
struct Session {
    token: String,
    expires_at: DateTime<Utc>,
}

impl Session {
    /// Whether the token can still be used at `now`, with time to spare.
    fn fresh_at(&self, now: DateTime<Utc>) -> bool {
        now + RENEW_BEFORE < self.expires_at
    }
}

/// One token per MazBot account in this process, shared by its sender's sends and polls; the
/// lock also keeps concurrent sends from logging in at once.
static SESSIONS: LazyLock<tokio::sync::Mutex<HashMap<String, Session>>> =
    LazyLock::new(|| tokio::sync::Mutex::new(HashMap::new()));

#[derive(Clone)]
struct Mazbot {
    client: reqwest::Client,
    base: reqwest::Url,
    api_key: String,
    email: String,
    password: String,
    templates: HashMap<String, u64>,
    timeout: Duration,
}

impl Mazbot {
    fn account(&self) -> String {
        format!("{}|{}|{}", self.base, self.email, self.api_key)
    }

    /// A token to use: the cached one while fresh, unless it is `stale` (MazBot refused it).
    async fn token(&self, stale: Option<&str>) -> Result<String, SendError> {
        let mut sessions = SESSIONS.lock().await;
        let account = self.account();
        if let Some(session) = sessions.get(&account)
            && session.fresh_at(Utc::now())
            && Some(session.token.as_str()) != stale
        {
            return Ok(session.token.clone());
        }
        let session = self.login().await?;
        let token = session.token.clone();
        sessions.insert(account, session);
        Ok(token)
    }

    async fn login(&self) -> Result<Session, SendError> {
        let request = self
            .client
            .post(platform::endpoint(&self.base, "/login"))
            .header("apikey", &self.api_key);
        let credentials = json!({"email": self.email, "password": self.password});
        let answer = platform::post_json(request, &credentials, self.timeout).await?;
        let token = answer
            .body
            .pointer("/data/token")
            .and_then(Value::as_str)
            .filter(|token| !token.is_empty());
        match token {
            Some(token) if answer.status.is_success() => Ok(Session {
                token: token.to_owned(),
                expires_at: Utc::now() + TOKEN_LIFETIME,
            }),
            _ => {
                let reason = format!("MazBot refused the login: {}", reason_of(&answer.body));
                Err(match answer.status.as_u16() {
                    429 | 500..=599 => platform::refusal(&answer, reason, Utc::now()),
                    _ => SendError::PauseSender(reason),
                })
            }
        }
    }

    /// Sends what `request` builds with a token, and once more with a new one if MazBot says
    /// the token is no longer good (401).
    async fn call(
        &self,
        request: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<Answer, SendError> {
        let token = self.token(None).await?;
        let answer = self.send(request(&token)).await?;
        if answer.status != reqwest::StatusCode::UNAUTHORIZED {
            return Ok(answer);
        }
        let renewed = self.token(Some(&token)).await?;
        self.send(request(&renewed)).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Answer, SendError> {
        let response = request
            .header("apikey", &self.api_key)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|error| super::http::request_failed(&error))?;
        Ok(Answer {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.json().await.unwrap_or(Value::Null),
        })
    }

    /// A template, its variables in MazBot's 1-based arrays.
    async fn send_template(
        &self,
        to: &str,
        template: &RenderedWhatsApp,
    ) -> Result<Accepted, SendError> {
        let Some(template_id) = self.templates.get(&template.name) else {
            return Err(SendError::PauseCampaign(format!(
                "the template '{}' has no MazBot template_id: add it to the sender's provider_config.templates",
                template.name
            )));
        };
        let url = platform::endpoint(&self.base, "/whatsapp/send-template");
        let answer = self
            .call(|token| {
                let mut form = Form::new()
                    .text("template_id", template_id.to_string())
                    .text("mobile", digits(to));
                for (index, value) in template.body_params.iter().enumerate() {
                    let n = index + 1;
                    form = form
                        .text(format!("body_matchs[{n}]"), "input_value")
                        .text(format!("body_values[{n}]"), value.clone());
                }
                self.client
                    .post(url.clone())
                    .bearer_auth(token)
                    .multipart(form)
            })
            .await?;
        accepted(&answer)
    }

    /// Free-form text to the conversation of `to` (MazBot's contact id comes from its chat
    /// rooms, found by the number's digits; a room names its contact by `contact_id`, else by
    /// its own `id`).
    async fn send_text(&self, to: &str, text: &str) -> Result<Accepted, SendError> {
        let number = digits(to);
        let mut rooms_url = platform::endpoint(&self.base, "/chat-rooms");
        rooms_url
            .query_pairs_mut()
            .append_pair("q", &number)
            .append_pair("type", "whatsapp");
        let rooms = self
            .call(|token| self.client.get(rooms_url.clone()).bearer_auth(token))
            .await?;
        if !rooms.status.is_success() {
            return Err(platform::refusal(
                &rooms,
                reason_of(&rooms.body),
                Utc::now(),
            ));
        }
        let receiver = chat_rooms(&rooms.body)
            .iter()
            .find(|room| room.get("phone").and_then(Value::as_str).map(digits) == Some(number.clone()))
            .and_then(|room| platform::id_at(room, &["/contact_id", "/id"]))
            .ok_or_else(|| {
                SendError::Fail(
                    "no MazBot conversation with this number: free-form text needs one (WhatsApp's 24-hour window); send a template".into(),
                )
            })?;
        let url = platform::endpoint(&self.base, "/send-message");
        let answer = self
            .call(|token| {
                let form = Form::new()
                    .text("receiver_id", receiver.clone())
                    .text("message", text.to_owned());
                self.client
                    .post(url.clone())
                    .bearer_auth(token)
                    .multipart(form)
            })
            .await?;
        accepted(&answer)
    }
}

/// The number as MazBot prefers it: international, digits only.
fn digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

/// MazBot's envelope: `{"success", "message", "data"}`, where `data` of a validation error holds
/// each field's messages.
fn reason_of(body: &Value) -> String {
    let message = platform::error_text(body, &["/message"]);
    let details: Vec<String> = body
        .get("data")
        .and_then(Value::as_object)
        .map(|fields| {
            fields
                .iter()
                .flat_map(|(_, messages)| messages.as_array().cloned().unwrap_or_default())
                .filter_map(|message| message.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if details.is_empty() {
        message
    } else {
        format!("{message}: {}", details.join("; "))
    }
}

/// Outside the 24-hour window MazBot answers 422: the message fails with its words.
fn accepted(answer: &Answer) -> Result<Accepted, SendError> {
    let refused_in_body = answer.body.get("success") == Some(&Value::Bool(false));
    platform::accepted_or_refused(answer, refused_in_body, &["/data/message_id"], reason_of)
}

fn chat_rooms(body: &Value) -> Vec<Value> {
    body.pointer("/data/chat_rooms")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

impl Provider for Mazbot {
    fn send_timeout(&self) -> Duration {
        // A login and a retried request at worst; text also looks its conversation up.
        self.timeout * 4
    }

    fn send<'a>(&'a self, message: &'a Outbound<'a>) -> BoxFuture<'a, Result<Accepted, SendError>> {
        Box::pin(async move {
            match message.template {
                Some(template) => self.send_template(message.to, template).await,
                None => self.send_text(message.to, message.body).await,
            }
        })
    }
}

/// Polls MazBot's chat rooms for what customers wrote. Cursors: `since` (nothing older is taken:
/// the sender's creation, set by the engine), `rooms_updated_at` (the newest room change seen)
/// and `room:<id>` (the last message id read in that room).
struct RoomPoller {
    api: Mazbot,
    every: Duration,
}

impl RoomPoller {
    async fn get(&self, url: reqwest::Url) -> Result<Value, SendError> {
        let answer = self
            .api
            .call(|token| self.api.client.get(url.clone()).bearer_auth(token))
            .await?;
        if answer.status.is_success() {
            Ok(answer.body)
        } else {
            Err(platform::refusal(
                &answer,
                reason_of(&answer.body),
                Utc::now(),
            ))
        }
    }

    async fn poll_rooms(
        &self,
        cursors: &HashMap<String, String>,
        now: DateTime<Utc>,
    ) -> Result<Polled, SendError> {
        let cursor_time = |name: &str| {
            cursors
                .get(name)
                .and_then(|value| platform::instant(Some(&Value::String(value.clone()))))
        };
        let since = cursor_time("since").unwrap_or(now);
        let seen_until = cursor_time("rooms_updated_at");
        // Rooms changed since the last look, newest first, page by page until an older one.
        let mut changed = Vec::new();
        let mut first = platform::endpoint(&self.api.base, "/chat-rooms");
        first.query_pairs_mut().append_pair("type", "whatsapp");
        let mut url = Some(first);
        let mut pages = 0;
        while let Some(page) = url.take() {
            pages += 1;
            let body = self.get(page).await?;
            let mut older_seen = false;
            for room in chat_rooms(&body) {
                let updated = platform::instant(room.get("updated_at"));
                match (updated, seen_until) {
                    (Some(updated), Some(seen)) if updated <= seen => older_seen = true,
                    (Some(updated), _) if updated < since => older_seen = true,
                    _ => changed.push((room, updated)),
                }
            }
            let next = body
                .pointer("/data/next_page_url")
                .and_then(Value::as_str)
                .and_then(|next| reqwest::Url::parse(next).ok());
            // The next page comes from MazBot's answer: only its own host is followed.
            url = next
                .filter(|next| next.host_str() == self.api.base.host_str())
                .filter(|_| !older_seen && pages < MAX_ROOM_PAGES);
        }
        // Oldest change first: when MazBot stops answering halfway (its 60 requests a minute),
        // what was read is kept, and the rooms' cursor stops before the first room not read.
        changed.sort_by_key(|(_, updated)| *updated);
        let mut polled = Polled::default();
        let mut newest = seen_until;
        for (room, updated) in changed {
            let Some(room_id) = platform::id_at(&room, &["/id"]) else {
                continue;
            };
            let Some(phone) = room.get("phone").and_then(Value::as_str) else {
                continue;
            };
            let name = room.get("name").and_then(Value::as_str).map(str::to_owned);
            let cursor = format!("room:{room_id}");
            let last_read: i64 = cursors
                .get(&cursor)
                .and_then(|value| value.parse().ok())
                .unwrap_or(0);
            let url = platform::endpoint(&self.api.base, &format!("/message/{room_id}"));
            let body = match self.get(url).await {
                Ok(body) => body,
                Err(error) if polled.cursors.is_empty() => return Err(error),
                Err(error) => {
                    tracing::warn!(%error, room_id, "MazBot stopped answering mid-poll; the rest waits for the next one");
                    // Rooms changed at this same instant and not read yet are read next time.
                    newest = newest.min(updated.map(|at| at - chrono::TimeDelta::microseconds(1)));
                    break;
                }
            };
            let mut read_until = last_read;
            for message in body
                .get("data")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(id) = message.get("id").and_then(Value::as_i64) else {
                    continue;
                };
                read_until = read_until.max(id);
                let at = platform::instant(message.get("created_at")).unwrap_or(now);
                let inbound = message.get("type").and_then(Value::as_i64) == Some(INBOUND);
                if id <= last_read || !inbound || at < since {
                    continue;
                }
                let text = ["/message", "/header_image", "/header_document"]
                    .iter()
                    .find_map(|pointer| message.pointer(pointer).and_then(Value::as_str))
                    .unwrap_or_default();
                polled.events.push(CallbackEvent::Inbound {
                    from: platform::e164(phone),
                    body: text.to_owned(),
                    at,
                    name: name.clone(),
                    id: Some(format!("mazbot:{id}")),
                });
            }
            polled.cursors.push((cursor, read_until.to_string()));
            newest = newest.max(updated);
        }
        polled.cursors.push(("since".into(), since.to_rfc3339()));
        if let Some(newest) = newest {
            polled
                .cursors
                .push(("rooms_updated_at".into(), newest.to_rfc3339()));
        }
        Ok(polled)
    }
}

impl Poller for RoomPoller {
    fn every(&self) -> Duration {
        self.every
    }

    fn poll<'a>(
        &'a self,
        cursors: &'a HashMap<String, String>,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Polled, SendError>> {
        Box::pin(self.poll_rooms(cursors, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_renewed_five_minutes_before_its_hour_ends() {
        let issued = Utc::now();
        let session = Session {
            token: "t".into(),
            expires_at: issued + TOKEN_LIFETIME,
        };
        assert!(session.fresh_at(issued));
        assert!(session.fresh_at(issued + chrono::TimeDelta::minutes(54)));
        assert!(!session.fresh_at(issued + chrono::TimeDelta::minutes(55)));
        assert!(!session.fresh_at(issued + chrono::TimeDelta::minutes(61)));
    }

    #[tokio::test]
    async fn an_expiring_token_is_renewed_by_a_new_login_before_it_is_used() {
        use wiremock::matchers::{method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let mazbot = MockServer::start().await;
        let login = json!({"success": true, "data": {"token": "renewed"}});
        Mock::given(method("POST"))
            .and(path("/api/login"))
            .respond_with(ResponseTemplate::new(200).set_body_json(login))
            .expect(1)
            .mount(&mazbot)
            .await;
        let config = json!({"api_key": format!("k-{}", uuid::Uuid::new_v4().simple()),
                            "email": "e@example.com", "password": "p",
                            "api_base": format!("{}/api", mazbot.uri())});
        let (events, _) = tokio::sync::mpsc::channel(1);
        let context = ProviderContext::new(reqwest::Client::new(), events, None)
            .with_url_guard(crate::url_guard::UrlGuard::ALLOW_PRIVATE);
        let (api, _) = read_config(&config, &context).unwrap();
        // A token logged in 56 minutes ago: four minutes left, under the five kept in hand.
        SESSIONS.lock().await.insert(
            api.account(),
            Session {
                token: "old".into(),
                expires_at: Utc::now() + chrono::TimeDelta::minutes(4),
            },
        );
        assert_eq!(api.token(None).await.unwrap(), "renewed");
        // Fresh now: used as it is, without another login (the mock expects one).
        assert_eq!(api.token(None).await.unwrap(), "renewed");
    }

    #[tokio::test]
    async fn a_poll_cut_short_by_a_rate_limit_keeps_what_it_read() {
        use wiremock::matchers::{method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let mazbot = MockServer::start().await;
        let login = json!({"success": true, "data": {"token": "t"}});
        Mock::given(method("POST"))
            .and(path("/api/login"))
            .respond_with(ResponseTemplate::new(200).set_body_json(login))
            .mount(&mazbot)
            .await;
        let rooms = json!({"success": true, "data": {"next_page_url": null, "chat_rooms": [
            {"id": 2, "name": "B", "phone": "201012345602", "updated_at": "2026-05-18T12:10:00.000000Z"},
            {"id": 1, "name": "A", "phone": "201012345601", "updated_at": "2026-05-18T12:05:00.000000Z"}]}});
        Mock::given(method("GET"))
            .and(path("/api/chat-rooms"))
            .respond_with(ResponseTemplate::new(200).set_body_json(rooms))
            .mount(&mazbot)
            .await;
        let first_room = json!({"success": true, "data": [
            {"id": 10, "type": 2, "message": "Hi", "created_at": "2026-05-18T12:05:00.000000Z"}]});
        Mock::given(method("GET"))
            .and(path("/api/message/1"))
            .respond_with(ResponseTemplate::new(200).set_body_json(first_room))
            .mount(&mazbot)
            .await;
        Mock::given(method("GET"))
            .and(path("/api/message/2"))
            .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "30"))
            .mount(&mazbot)
            .await;
        let config = json!({"api_key": format!("k-{}", uuid::Uuid::new_v4().simple()),
                            "email": "e@example.com", "password": "p",
                            "api_base": format!("{}/api", mazbot.uri())});
        let (events, _) = tokio::sync::mpsc::channel(1);
        let context = ProviderContext::new(reqwest::Client::new(), events, None)
            .with_url_guard(crate::url_guard::UrlGuard::ALLOW_PRIVATE);
        let poller = MazbotModule.poller(&config, &context).unwrap().unwrap();
        let cursors = HashMap::from([("since".to_owned(), "2026-05-18T12:00:00Z".to_owned())]);
        let polled = poller.poll(&cursors, Utc::now()).await.unwrap();
        assert!(
            matches!(&polled.events[..], [CallbackEvent::Inbound { from, body, .. }]
                if from == "+201012345601" && body == "Hi"),
            "{polled:?}"
        );
        let stored: HashMap<_, _> = polled.cursors.into_iter().collect();
        assert_eq!(stored.get("room:1").map(String::as_str), Some("10"));
        assert_eq!(stored.get("room:2"), None);
        assert_eq!(
            stored.get("rooms_updated_at").map(String::as_str),
            Some("2026-05-18T12:05:00+00:00"),
            "room 2 is read next time"
        );
    }

    #[test]
    fn mazbots_envelope_names_the_fields_it_refused() {
        let body = json!({"success": false, "message": "Validation failed",
                          "data": {"receiver_id": ["The receiver id field is required."]}});
        assert_eq!(
            reason_of(&body),
            "Validation failed: The receiver id field is required."
        );
        let body = json!({"success": false, "message": "Token is expired", "data": []});
        assert_eq!(reason_of(&body), "Token is expired");
    }
}
